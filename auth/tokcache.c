#include "tokcache.h"

#include "fetch.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define STRIPES 16

struct entry {
    unsigned char key[FG_TOKCACHE_KEY];
    struct fg_identity *id;
    uint64_t expires_ms;
    struct entry *hnext;               /* hash chain */
    struct entry *lru_prev, *lru_next; /* most recent at head */
};

struct stripe {
    pthread_mutex_t lock;
    struct entry **buckets;
    size_t nbuckets; /* power of two */
    size_t n, cap;
    struct entry *head, *tail;
};

struct fg_tokcache {
    unsigned char secret[32];
    EVP_MD_CTX *inner, *outer; /* SHA-256 midstates after secret^ipad, secret^opad */
    uint64_t ttl_ms;
    struct stripe stripes[STRIPES];
};

/* Every cache's counts, for /metrics: relaxed atomics, taken inside a stripe's lock anyway. */
static uint64_t stat_hits, stat_misses, stat_evictions;
static int64_t stat_entries;

static void stat_add(uint64_t *c)
{
    __atomic_add_fetch(c, 1, __ATOMIC_RELAXED);
}

void fg_tokcache_stats(uint64_t *hits, uint64_t *misses, uint64_t *evictions, int64_t *entries)
{
    *hits = __atomic_load_n(&stat_hits, __ATOMIC_RELAXED);
    *misses = __atomic_load_n(&stat_misses, __ATOMIC_RELAXED);
    *evictions = __atomic_load_n(&stat_evictions, __ATOMIC_RELAXED);
    *entries = __atomic_load_n(&stat_entries, __ATOMIC_RELAXED);
}

static uint64_t key_hash(const unsigned char *key)
{
    uint64_t h;
    memcpy(&h, key, sizeof(h)); /* an HMAC output is uniformly distributed */
    return h;
}

/* HMAC's two keyed blocks, hashed once per cache (RFC 2104: the key is shorter than a block). */
static EVP_MD_CTX *midstate(const unsigned char *secret, unsigned char pad)
{
    unsigned char block[64];
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    memset(block, pad, sizeof(block));
    for (size_t i = 0; i < 32; i++)
        block[i] ^= secret[i];
    if (m == NULL || EVP_DigestInit_ex(m, fg_sha256_md(), NULL) != 1 ||
        EVP_DigestUpdate(m, block, sizeof(block)) != 1)
        abort();
    OPENSSL_cleanse(block, sizeof(block));
    return m;
}

struct fg_tokcache *fg_tokcache_new(size_t capacity, uint64_t ttl_ms)
{
    struct fg_tokcache *c = fg_calloc(1, sizeof(*c));
    fg_random(c->secret, sizeof(c->secret));
    c->inner = midstate(c->secret, 0x36);
    c->outer = midstate(c->secret, 0x5c);
    c->ttl_ms = ttl_ms;
    size_t per = capacity / STRIPES + 1;
    size_t nb = 16;
    size_t extra = capacity % STRIPES;
    while (nb < per)
        nb *= 2;
    for (int i = 0; i < STRIPES; i++) {
        struct stripe *s = &c->stripes[i];
        pthread_mutex_init(&s->lock, NULL);
        s->nbuckets = nb;
        s->buckets = fg_calloc(nb, sizeof(struct entry *));
        s->cap = capacity / STRIPES + ((size_t)i < extra);
    }
    return c;
}

static void entry_free(struct entry *e)
{
    fg_identity_unref(e->id);
    OPENSSL_cleanse(e->key, sizeof(e->key));
    free(e);
}

/* Frees up to budget entries (all when budget is 0); returns 1 once the cache is empty. */
static int drop_entries(struct fg_tokcache *c, size_t budget)
{
    size_t done = 0;
    for (int i = 0; i < STRIPES; i++) {
        struct stripe *s = &c->stripes[i];
        while (s->head) {
            if (budget && done == budget)
                return 0;
            struct entry *e = s->head;
            s->head = e->lru_next;
            entry_free(e);
            s->n--;
            __atomic_sub_fetch(&stat_entries, 1, __ATOMIC_RELAXED);
            done++;
        }
        s->tail = NULL;
    }
    return 1;
}

static void free_empty(struct fg_tokcache *c)
{
    for (int i = 0; i < STRIPES; i++) {
        free(c->stripes[i].buckets);
        pthread_mutex_destroy(&c->stripes[i].lock);
    }
    OPENSSL_cleanse(c->secret, sizeof(c->secret));
    EVP_MD_CTX_free(c->inner);
    EVP_MD_CTX_free(c->outer);
    free(c);
}

void fg_tokcache_free(struct fg_tokcache *c)
{
    if (c == NULL)
        return;
    drop_entries(c, 0);
    free_empty(c);
}

/* Caches being freed in slices; fg_tokcache_retire_finish frees what a shutdown left. */
struct retiring {
    struct fg_tokcache *c;
    struct fg_fetcher *f;
    struct retiring *next;
};
static struct retiring *retiring;
static pthread_mutex_t retiring_lock = PTHREAD_MUTEX_INITIALIZER;

static void retire_unlink(struct retiring *r)
{
    pthread_mutex_lock(&retiring_lock);
    struct retiring **pp = &retiring;
    while (*pp != r)
        pp = &(*pp)->next;
    *pp = r->next;
    pthread_mutex_unlock(&retiring_lock);
}

static void retire_step(void *arg)
{
    struct retiring *r = arg;
    if (drop_entries(r->c, FG_TOKCACHE_RETIRE_BATCH)) {
        retire_unlink(r);
        free_empty(r->c);
        free(r);
        return;
    }
    r->f->after(r->f, FG_TOKCACHE_RETIRE_PAUSE_MS, retire_step, r);
}

void fg_tokcache_retire(struct fg_tokcache *c, struct fg_fetcher *f)
{
    if (c == NULL)
        return;
    if (f == NULL || fg_tokcache_size(c) <= FG_TOKCACHE_RETIRE_BATCH) {
        fg_tokcache_free(c);
        return;
    }
    struct retiring *r = fg_calloc(1, sizeof(*r));
    r->c = c;
    r->f = f;
    pthread_mutex_lock(&retiring_lock);
    r->next = retiring;
    retiring = r;
    pthread_mutex_unlock(&retiring_lock);
    f->post(f, retire_step, r);
}

void fg_tokcache_retire_finish(void)
{
    pthread_mutex_lock(&retiring_lock);
    struct retiring *r = retiring;
    retiring = NULL;
    pthread_mutex_unlock(&retiring_lock);
    while (r) {
        struct retiring *next = r->next;
        fg_tokcache_free(r->c);
        free(r);
        r = next;
    }
}

static void add_u32(EVP_MD_CTX *m, size_t n)
{
    unsigned char len[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                            (unsigned char)(n >> 8), (unsigned char)n};
    EVP_DigestUpdate(m, len, 4);
}

static void add_len_prefixed(EVP_MD_CTX *m, const void *p, size_t n)
{
    add_u32(m, n);
    EVP_DigestUpdate(m, p, n);
}

/* HMAC-SHA256 from the cache's midstates: no MAC object, no fetch, no allocation per call. */
void fg_tokcache_key(const struct fg_tokcache *c, const char *authn, const char *token,
                     size_t token_len, char *const *audiences, size_t naudiences,
                     unsigned char key[FG_TOKCACHE_KEY])
{
    unsigned char inner[32];
    EVP_MD_CTX *m = fg_md_scratch();
    EVP_MD_CTX_copy_ex(m, c->inner);
    add_len_prefixed(m, authn, strlen(authn));
    add_len_prefixed(m, token, token_len);
    add_u32(m, naudiences);
    for (size_t i = 0; i < naudiences; i++)
        add_len_prefixed(m, audiences[i], strlen(audiences[i]));
    EVP_DigestFinal_ex(m, inner, NULL);
    EVP_MD_CTX_copy_ex(m, c->outer);
    EVP_DigestUpdate(m, inner, sizeof(inner));
    EVP_DigestFinal_ex(m, key, NULL);
    OPENSSL_cleanse(inner, sizeof(inner));
}

static struct stripe *stripe_of(struct fg_tokcache *c, const unsigned char *key)
{
    return &c->stripes[key[31] % STRIPES];
}

static struct entry **slot_of(struct stripe *s, const unsigned char *key)
{
    struct entry **pp = &s->buckets[key_hash(key) & (s->nbuckets - 1)];
    while (*pp && CRYPTO_memcmp((*pp)->key, key, FG_TOKCACHE_KEY) != 0)
        pp = &(*pp)->hnext;
    return pp;
}

static void lru_unlink(struct stripe *s, struct entry *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        s->head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        s->tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push(struct stripe *s, struct entry *e)
{
    e->lru_next = s->head;
    e->lru_prev = NULL;
    if (s->head)
        s->head->lru_prev = e;
    s->head = e;
    if (s->tail == NULL)
        s->tail = e;
}

/* Unlinks e from its chain and the LRU list and frees it. Stripe locked. */
static void remove_entry(struct stripe *s, struct entry *e)
{
    struct entry **pp = slot_of(s, e->key);
    *pp = e->hnext;
    lru_unlink(s, e);
    s->n--;
    __atomic_sub_fetch(&stat_entries, 1, __ATOMIC_RELAXED);
    entry_free(e);
}

struct fg_identity *fg_tokcache_get(struct fg_tokcache *c, const unsigned char *key,
                                    uint64_t now_ms)
{
    uint64_t until;
    return fg_tokcache_get_until(c, key, now_ms, &until);
}

struct fg_identity *fg_tokcache_get_until(struct fg_tokcache *c, const unsigned char *key,
                                          uint64_t now_ms, uint64_t *until)
{
    struct stripe *s = stripe_of(c, key);
    *until = 0;
    struct fg_identity *id = NULL;
    pthread_mutex_lock(&s->lock);
    struct entry *e = *slot_of(s, key);
    if (e && e->expires_ms <= now_ms) {
        remove_entry(s, e);
        stat_add(&stat_misses);
    } else if (e == NULL) {
        stat_add(&stat_misses);
    } else {
        stat_add(&stat_hits);
        id = fg_identity_ref(e->id);
        *until = e->expires_ms;
        if (s->head != e) {
            lru_unlink(s, e);
            lru_push(s, e);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return id;
}

uint64_t fg_tokcache_put(struct fg_tokcache *c, const unsigned char *key, struct fg_identity *id,
                         uint64_t expires_ms, uint64_t now_ms)
{
    uint64_t until = now_ms + c->ttl_ms;
    if (expires_ms && expires_ms < until)
        until = expires_ms;
    if (until <= now_ms)
        return 0;
    struct stripe *s = stripe_of(c, key);
    pthread_mutex_lock(&s->lock);
    struct entry **pp = slot_of(s, key);
    struct entry *e = *pp;
    if (e == NULL) {
        e = fg_calloc(1, sizeof(*e));
        memcpy(e->key, key, FG_TOKCACHE_KEY);
        e->hnext = NULL;
        *pp = e;
        s->n++;
        __atomic_add_fetch(&stat_entries, 1, __ATOMIC_RELAXED);
    } else {
        fg_identity_unref(e->id);
        lru_unlink(s, e);
    }
    e->id = fg_identity_ref(id);
    e->expires_ms = until;
    lru_push(s, e);
    while (s->n > s->cap && s->tail) {
        remove_entry(s, s->tail);
        stat_add(&stat_evictions);
    }
    if (s->cap == 0)
        until = 0; /* kept nowhere: nobody may reuse it either */
    pthread_mutex_unlock(&s->lock);
    return until;
}

size_t fg_tokcache_size(struct fg_tokcache *c)
{
    size_t n = 0;
    for (int i = 0; i < STRIPES; i++) {
        pthread_mutex_lock(&c->stripes[i].lock);
        n += c->stripes[i].n;
        pthread_mutex_unlock(&c->stripes[i].lock);
    }
    return n;
}
