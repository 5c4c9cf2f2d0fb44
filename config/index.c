#include "index.h"

#include "base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Each workspace is one record: its struct fg_workspace, the lengths of its
 * names, then the names themselves, so a lookup that finds the slot reads
 * one place in memory for the compare and for what the caller reads next
 * (cluster, shard, type, phase). Records live in chunks of up to 2 MiB (huge
 * pages, as the tables: a random lookup in a million entries then costs cache
 * misses without page walks), so a million entries cost a few dozen
 * allocations, and records never move: a returned workspace stays valid
 * while the index lives.
 *
 * Each table is open addressing with linear probing, a power-of-two size
 * kept at most half full. A slot holds a 32-bit reference to a record (chunk
 * number and offset in 8-byte units; 0 = empty) and the low 32 bits of the
 * name's hash, which skip most compares and place the slot again when the
 * table grows.
 */
#define FIRST_CHUNK (64u << 10) /* chunks double up to CHUNK: a small index stays small */
#define CHUNK       (2u << 20)  /* a huge page (fg_calloc_huge) */
#define UNIT        8u
#define UNIT_BITS   18u /* offsets in a CHUNK, in units */
#define MAX_CHUNKS  (1u << (32 - UNIT_BITS))

struct chunk {
    size_t used, size;
    char data[];
};

struct rec {
    struct fg_workspace w;
    uint32_t cluster_len, path_len, warehouse_len;
    char names[]; /* cluster, path, warehouse: each NUL-terminated */
};

struct slot {
    uint32_t ref;  /* record reference; 0 = empty */
    uint32_t hash; /* low bits of hash_bytes() of the name */
};

struct table {
    struct slot *slots;
    size_t mask; /* size - 1 */
    size_t n;
};

enum key { KEY_CLUSTER, KEY_PATH, KEY_WAREHOUSE };

/* Past what a 32-bit reference or length can name (tens of GiB of names): as out of memory. */
static void too_big(const char *what)
{
    fprintf(stderr, "frontgate: workspace index: %s\n", what);
    abort();
}

struct fg_index {
    size_t n;
    struct chunk **chunks;
    size_t nchunks, cap;
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

static struct rec *rec_of(const struct fg_index *ix, uint32_t ref)
{
    /* ref 0 is never a record: the first chunk starts with a unit left unused */
    return (struct rec *)(ix->chunks[ref >> UNIT_BITS]->data +
                          (size_t)(ref & ((1u << UNIT_BITS) - 1)) * UNIT);
}

/* Room for a record of size bytes; its reference in *ref. */
static struct rec *rec_alloc(struct fg_index *ix, size_t size, uint32_t *ref)
{
    struct chunk *c = ix->nchunks ? ix->chunks[ix->nchunks - 1] : NULL;
    size = (size + UNIT - 1) & ~(size_t)(UNIT - 1);
    if (c == NULL || c->size - c->used < size) {
        if (ix->nchunks == MAX_CHUNKS)
            too_big("more names than 32-bit references reach");
        size_t csize = ix->nchunks < 5 ? FIRST_CHUNK << ix->nchunks : CHUNK;
        if (size + UNIT > csize - sizeof(*c))
            csize = sizeof(*c) + size + UNIT;
        c = fg_calloc_huge(1, csize);
        c->size = csize - sizeof(*c);
        c->used = ix->nchunks == 0 ? UNIT : 0;
        fg_grow(&ix->chunks, &ix->cap, ix->nchunks + 1, sizeof(*ix->chunks));
        ix->chunks[ix->nchunks++] = c;
    }
    *ref = (uint32_t)((ix->nchunks - 1) << UNIT_BITS | c->used / UNIT);
    struct rec *r = (struct rec *)(c->data + c->used);
    c->used += size;
    return r;
}

static const char *rec_key(const struct rec *r, enum key k, uint32_t *len)
{
    switch (k) {
    case KEY_CLUSTER:
        *len = r->cluster_len;
        return r->w.cluster;
    case KEY_PATH:
        *len = r->path_len;
        return r->w.path;
    default:
        *len = r->warehouse_len;
        return r->w.warehouse;
    }
}

static const struct fg_workspace *table_get(const struct fg_index *ix, const struct table *t,
                                            enum key k, const char *s, size_t n)
{
    if (t->slots == NULL)
        return NULL;
    uint64_t h = hash_bytes(s, n);
    for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
        const struct slot *sl = &t->slots[i];
        if (sl->ref == 0)
            return NULL;
        if (sl->hash != (uint32_t)h)
            continue;
        const struct rec *r = rec_of(ix, sl->ref);
        uint32_t len;
        const char *key = rec_key(r, k, &len);
        if (len == n && memcmp(key, s, n) == 0)
            return &r->w;
    }
}

static void table_put_raw(struct table *t, uint32_t ref, uint32_t h)
{
    for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
        if (t->slots[i].ref == 0) {
            t->slots[i] = (struct slot){ref, h};
            t->n++;
            return;
        }
    }
}

static void table_put(struct table *t, uint32_t ref, const char *key, size_t len)
{
    if (t->slots == NULL || (t->n + 1) * 2 > t->mask + 1) {
        /* the stored low hash bits place a slot again: no record is read */
        size_t oldsize = t->slots ? t->mask + 1 : 0;
        struct slot *old = t->slots;
        t->slots = fg_calloc_huge(oldsize ? oldsize * 2 : 64, sizeof(struct slot));
        t->mask = (oldsize ? oldsize * 2 : 64) - 1;
        t->n = 0;
        for (size_t i = 0; i < oldsize; i++)
            if (old[i].ref != 0)
                table_put_raw(t, old[i].ref, old[i].hash);
        fg_free_huge(old, oldsize, sizeof(struct slot));
    }
    table_put_raw(t, ref, (uint32_t)hash_bytes(key, len));
}

static void table_free(struct table *t)
{
    fg_free_huge(t->slots, t->slots ? t->mask + 1 : 0, sizeof(struct slot));
}

struct fg_index *fg_index_new(void)
{
    return fg_calloc(1, sizeof(struct fg_index));
}

void fg_index_free(struct fg_index *ix)
{
    if (ix == NULL)
        return;
    for (size_t i = 0; i < ix->nchunks; i++)
        fg_free_huge(ix->chunks[i], 1, sizeof(struct chunk) + ix->chunks[i]->size);
    free(ix->chunks);
    table_free(&ix->by_cluster);
    table_free(&ix->by_path);
    table_free(&ix->by_warehouse);
    free(ix);
}

static const char *put_name(char **at, const char *s, size_t n)
{
    char *p = *at;
    memcpy(p, s, n);
    p[n] = '\0';
    *at = p + n + 1;
    return p;
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
    if (cluster_len > UINT32_MAX || path_len > UINT32_MAX || warehouse_len > UINT32_MAX)
        too_big("a name longer than 4 GiB");
    size_t names =
        cluster_len + 1 + (path ? path_len + 1 : 0) + (warehouse ? warehouse_len + 1 : 0);
    uint32_t ref;
    struct rec *r = rec_alloc(ix, sizeof(struct rec) + names, &ref);
    char *at = r->names;
    r->w.cluster = put_name(&at, cluster, cluster_len);
    r->w.path = path ? put_name(&at, path, path_len) : NULL;
    r->w.warehouse = warehouse ? put_name(&at, warehouse, warehouse_len) : NULL;
    r->w.shard = shard;
    r->w.type = type;
    r->w.phase = phase;
    r->cluster_len = (uint32_t)cluster_len;
    r->path_len = path ? (uint32_t)path_len : 0;
    r->warehouse_len = warehouse ? (uint32_t)warehouse_len : 0;
    ix->n++;
    table_put(&ix->by_cluster, ref, cluster, cluster_len);
    if (path)
        table_put(&ix->by_path, ref, path, path_len);
    if (warehouse)
        table_put(&ix->by_warehouse, ref, warehouse, warehouse_len);
    return FG_INDEX_ADDED;
}

const struct fg_workspace *fg_index_by_cluster(const struct fg_index *ix, const char *s, size_t n)
{
    return table_get(ix, &ix->by_cluster, KEY_CLUSTER, s, n);
}

const struct fg_workspace *fg_index_by_path(const struct fg_index *ix, const char *s, size_t n)
{
    return table_get(ix, &ix->by_path, KEY_PATH, s, n);
}

const struct fg_workspace *fg_index_by_warehouse(const struct fg_index *ix, const char *s, size_t n)
{
    return table_get(ix, &ix->by_warehouse, KEY_WAREHOUSE, s, n);
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
