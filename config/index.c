#include "index.h"

#include "base.h"

#include <stdlib.h>
#include <string.h>

/*
 * Strings live in large chunks so a million entries cost a few hundred
 * allocations, not millions. Each table is open addressing with linear
 * probing, a power-of-two size kept at most half full; slots hold entry
 * numbers + 1 (0 = empty) and the low bits of the hash to skip most compares.
 */
#define CHUNK (1u << 20)

struct chunk {
    struct chunk *next;
    size_t used, size;
    char data[];
};

struct slot {
    uint32_t entry; /* entry index + 1; 0 = empty */
    uint32_t hash;
};

struct table {
    struct slot *slots;
    size_t mask; /* size - 1 */
    size_t n;
};

struct fg_index {
    struct fg_workspace *ws;
    size_t n, cap;
    struct chunk *chunks;
    struct table by_cluster, by_path, by_warehouse;
};

static uint64_t hash_bytes(const char *s, size_t n)
{
    /* FNV-1a, then a final mix: keys come from the operator, not the client. */
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 32;
    return h;
}

static const char *intern(struct fg_index *ix, const char *s, size_t n)
{
    struct chunk *c = ix->chunks;
    if (c == NULL || c->size - c->used < n + 1) {
        size_t size = n + 1 > CHUNK ? n + 1 : CHUNK;
        c = fg_malloc(sizeof(*c) + size);
        c->used = 0;
        c->size = size;
        c->next = ix->chunks;
        ix->chunks = c;
    }
    char *p = c->data + c->used;
    memcpy(p, s, n);
    p[n] = '\0';
    c->used += n + 1;
    return p;
}

typedef const char *(*key_fn)(const struct fg_workspace *);

static const char *key_cluster(const struct fg_workspace *w)
{
    return w->cluster;
}

static const char *key_path(const struct fg_workspace *w)
{
    return w->path;
}

static const char *key_warehouse(const struct fg_workspace *w)
{
    return w->warehouse;
}

static const struct fg_workspace *table_get(const struct fg_index *ix, const struct table *t,
                                            key_fn key, const char *s, size_t n)
{
    if (t->slots == NULL)
        return NULL;
    uint64_t h = hash_bytes(s, n);
    for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
        const struct slot *sl = &t->slots[i];
        if (sl->entry == 0)
            return NULL;
        if (sl->hash != (uint32_t)h)
            continue;
        const struct fg_workspace *w = &ix->ws[sl->entry - 1];
        const char *k = key(w);
        if (strlen(k) == n && memcmp(k, s, n) == 0)
            return w;
    }
}

static void table_put_raw(struct table *t, uint32_t entry, uint64_t h)
{
    for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
        if (t->slots[i].entry == 0) {
            t->slots[i] = (struct slot){entry, (uint32_t)h};
            t->n++;
            return;
        }
    }
}

static void table_grow(struct fg_index *ix, struct table *t, key_fn key)
{
    size_t size = t->slots ? (t->mask + 1) * 2 : 64;
    struct slot *old = t->slots;
    size_t oldsize = t->slots ? t->mask + 1 : 0;
    t->slots = fg_calloc(size, sizeof(struct slot));
    t->mask = size - 1;
    t->n = 0;
    for (size_t i = 0; i < oldsize; i++) {
        if (old[i].entry == 0)
            continue;
        const char *k = key(&ix->ws[old[i].entry - 1]);
        table_put_raw(t, old[i].entry, hash_bytes(k, strlen(k)));
    }
    free(old);
}

static void table_put(struct fg_index *ix, struct table *t, key_fn key, uint32_t entry)
{
    if (t->slots == NULL || (t->n + 1) * 2 > t->mask + 1)
        table_grow(ix, t, key);
    const char *k = key(&ix->ws[entry - 1]);
    table_put_raw(t, entry, hash_bytes(k, strlen(k)));
}

struct fg_index *fg_index_new(void)
{
    return fg_calloc(1, sizeof(struct fg_index));
}

void fg_index_free(struct fg_index *ix)
{
    if (ix == NULL)
        return;
    while (ix->chunks) {
        struct chunk *c = ix->chunks;
        ix->chunks = c->next;
        free(c);
    }
    free(ix->ws);
    free(ix->by_cluster.slots);
    free(ix->by_path.slots);
    free(ix->by_warehouse.slots);
    free(ix);
}

enum fg_index_add_result fg_index_add(struct fg_index *ix, const char *cluster, size_t cluster_len,
                                      const char *path, size_t path_len, const char *warehouse,
                                      size_t warehouse_len, uint32_t shard, uint32_t type,
                                      uint8_t phase)
{
    if (fg_index_by_cluster(ix, cluster, cluster_len))
        return FG_INDEX_DUP_CLUSTER;
    if (path && fg_index_by_path(ix, path, path_len))
        return FG_INDEX_DUP_PATH;
    if (warehouse && fg_index_by_warehouse(ix, warehouse, warehouse_len))
        return FG_INDEX_DUP_WAREHOUSE;
    fg_grow(&ix->ws, &ix->cap, ix->n + 1, sizeof(struct fg_workspace));
    struct fg_workspace *w = &ix->ws[ix->n++];
    w->cluster = intern(ix, cluster, cluster_len);
    w->path = path ? intern(ix, path, path_len) : NULL;
    w->warehouse = warehouse ? intern(ix, warehouse, warehouse_len) : NULL;
    w->shard = shard;
    w->type = type;
    w->phase = phase;
    uint32_t entry = (uint32_t)ix->n;
    table_put(ix, &ix->by_cluster, key_cluster, entry);
    if (w->path)
        table_put(ix, &ix->by_path, key_path, entry);
    if (w->warehouse)
        table_put(ix, &ix->by_warehouse, key_warehouse, entry);
    return FG_INDEX_ADDED;
}

const struct fg_workspace *fg_index_by_cluster(const struct fg_index *ix, const char *s, size_t n)
{
    return table_get(ix, &ix->by_cluster, key_cluster, s, n);
}

const struct fg_workspace *fg_index_by_path(const struct fg_index *ix, const char *s, size_t n)
{
    return table_get(ix, &ix->by_path, key_path, s, n);
}

const struct fg_workspace *fg_index_by_warehouse(const struct fg_index *ix, const char *s, size_t n)
{
    return table_get(ix, &ix->by_warehouse, key_warehouse, s, n);
}

const struct fg_workspace *fg_index_find(const struct fg_index *ix, const char *s, size_t n)
{
    const struct fg_workspace *w = fg_index_by_path(ix, s, n);
    return w ? w : fg_index_by_cluster(ix, s, n);
}

size_t fg_index_count(const struct fg_index *ix)
{
    return ix->n;
}

static int name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

int fg_index_valid_name(const char *s, size_t n)
{
    size_t i = 0;
    if (n == 0)
        return 0;
    while (i < n) {
        size_t start = i;
        while (i < n && s[i] != ':')
            i++;
        size_t len = i - start;
        if (len == 0 || len > 63)
            return 0;
        if (!name_char(s[start]) || !name_char(s[i - 1]))
            return 0;
        for (size_t j = start; j < i; j++)
            if (!name_char(s[j]) && s[j] != '-')
                return 0;
        if (i < n) {
            i++; /* skip ':' */
            if (i == n)
                return 0;
        }
    }
    return 1;
}
