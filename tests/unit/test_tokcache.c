/*
 * test_tokcache.c - the verified-token cache (auth/tokcache.h): keys
 * (HMAC over length-prefixed fields, per-cache secret), references handed
 * out, expiry at min(token expiry, TTL), the capacity bound and LRU order,
 * replacement, and four threads at once. Time is a parameter.
 */
#include "t.h"

#include "auth/tokcache.h"
#include "fakefetch.h"

#include <pthread.h>
#include <stdlib.h>

#define NOW    1000000 /* ms; any value, the cache never reads a clock */
#define STRIPE 0       /* the stripe chosen by key[31] in crafted keys */

static char *auds_a[] = {"kube", "other"};

static void key_of(const struct fg_tokcache *c, const char *authn, const char *tok,
                   char *const *auds, size_t n, unsigned char *key)
{
    fg_tokcache_key(c, authn, tok, strlen(tok), auds, n, key);
}

static int same_key(const struct fg_tokcache *c, const char *a1, const char *t1, char *const *au1,
                    size_t n1, const char *a2, const char *t2, char *const *au2, size_t n2)
{
    unsigned char k1[FG_TOKCACHE_KEY], k2[FG_TOKCACHE_KEY];
    key_of(c, a1, t1, au1, n1, k1);
    key_of(c, a2, t2, au2, n2, k2);
    return memcmp(k1, k2, sizeof(k1)) == 0;
}

/* A raw key whose stripe is fixed and whose hash is i. */
static void crafted(unsigned char *key, unsigned i)
{
    memset(key, 0, FG_TOKCACHE_KEY);
    memcpy(key, &i, sizeof(i));
    key[8] = 0x5a;
    key[31] = STRIPE;
}

/* Distinct, well-spread keys (as HMAC outputs are). */
static void spread(const struct fg_tokcache *c, unsigned i, unsigned char *key)
{
    char tok[32];
    snprintf(tok, sizeof(tok), "token-%u", i);
    key_of(c, "jwt", tok, NULL, 0, key);
}

static int cached(struct fg_tokcache *c, const unsigned char *key, uint64_t now)
{
    struct fg_identity *id = fg_tokcache_get(c, key, now);
    fg_identity_unref(id);
    return id != NULL;
}

/* ---- keys ---- */

static void key_depends_on_every_input(void)
{
    struct fg_tokcache *c = fg_tokcache_new(100, 10000);
    char *auds_b[] = {"other", "kube"}, *auds_c[] = {"kube"};
    CHECK(same_key(c, "jwt", "tok", auds_a, 2, "jwt", "tok", auds_a, 2));
    CHECK(!same_key(c, "jwt", "tok", auds_a, 2, "jwt2", "tok", auds_a, 2));
    CHECK(!same_key(c, "jwt", "tok", auds_a, 2, "jwt", "tok2", auds_a, 2));
    CHECK(!same_key(c, "jwt", "tok", auds_a, 2, "jwt", "tok", auds_b, 2)); /* order counts */
    CHECK(!same_key(c, "jwt", "tok", auds_a, 2, "jwt", "tok", auds_c, 1));
    CHECK(!same_key(c, "jwt", "tok", auds_a, 2, "jwt", "tok", NULL, 0));
    /* token_len is honoured: "tok" and the first two bytes of it differ */
    unsigned char k1[FG_TOKCACHE_KEY], k2[FG_TOKCACHE_KEY];
    fg_tokcache_key(c, "jwt", "tok", 2, NULL, 0, k1);
    key_of(c, "jwt", "to", NULL, 0, k2);
    CHECK(memcmp(k1, k2, sizeof(k1)) == 0);
    key_of(c, "jwt", "tok", NULL, 0, k2);
    CHECK(memcmp(k1, k2, sizeof(k1)) != 0);
    fg_tokcache_free(c);
}

/* Field boundaries cannot be moved: every field is length-prefixed. */
static void key_fields_length_prefixed(void)
{
    struct fg_tokcache *c = fg_tokcache_new(100, 10000);
    char *ab_c[] = {"ab", "c"}, *a_bc[] = {"a", "bc"}, *abc[] = {"abc"}, *c_[] = {"c"};
    char *empty[] = {""}, *two_empty[] = {"", ""};
    CHECK(!same_key(c, "jwt", "t", ab_c, 2, "jwt", "t", a_bc, 2));
    CHECK(!same_key(c, "jwt", "t", ab_c, 2, "jwt", "t", abc, 1));
    CHECK(!same_key(c, "ab", "c", NULL, 0, "a", "bc", NULL, 0));    /* authn | token */
    CHECK(!same_key(c, "jwt", "ab", c_, 1, "jwt", "abc", NULL, 0)); /* token | audience */
    CHECK(!same_key(c, "jwt", "t", empty, 1, "jwt", "t", NULL, 0));
    CHECK(!same_key(c, "jwt", "t", empty, 1, "jwt", "t", two_empty, 2));
    fg_tokcache_free(c);
}

static void caches_have_their_own_secret(void)
{
    struct fg_tokcache *a = fg_tokcache_new(100, 10000), *b = fg_tokcache_new(100, 10000);
    unsigned char ka[FG_TOKCACHE_KEY], kb[FG_TOKCACHE_KEY], zero[FG_TOKCACHE_KEY] = {0};
    key_of(a, "jwt", "tok", auds_a, 2, ka);
    key_of(b, "jwt", "tok", auds_a, 2, kb);
    CHECK(memcmp(ka, kb, sizeof(ka)) != 0);
    CHECK(memcmp(ka, zero, sizeof(ka)) != 0);
    /* A key from one cache finds nothing in the other. */
    struct fg_identity *id = fg_identity_new("alice", "jwt");
    fg_tokcache_put(a, ka, id, 0, NOW);
    CHECK(cached(a, ka, NOW));
    CHECK(!cached(b, ka, NOW));
    fg_identity_unref(id);
    fg_tokcache_free(a);
    fg_tokcache_free(b);
}

/* ---- entries ---- */

static void get_after_put_is_a_reference(void)
{
    struct fg_tokcache *c = fg_tokcache_new(100, 10000);
    unsigned char key[FG_TOKCACHE_KEY], other[FG_TOKCACHE_KEY];
    key_of(c, "jwt", "tok", auds_a, 2, key);
    key_of(c, "jwt", "tok2", auds_a, 2, other);
    struct fg_identity *id = fg_identity_new("alice", "jwt");
    CHECK(fg_tokcache_get(c, key, NOW) == NULL);
    fg_tokcache_put(c, key, id, 0, NOW);
    CHECK(id->refs == 2); /* ours and the cache's */
    struct fg_identity *got = fg_tokcache_get(c, key, NOW + 1);
    CHECK(got == id);
    CHECK(id->refs == 3);
    CHECK(got != NULL && strcmp(got->user, "alice") == 0);
    CHECK(fg_tokcache_get(c, other, NOW + 1) == NULL);
    fg_identity_unref(got);
    fg_tokcache_free(c);
    CHECK(id->refs == 1); /* the cache let go of its reference */
    fg_identity_unref(id);
}

static void expiry_is_min_of_token_and_ttl(void)
{
    struct fg_tokcache *c = fg_tokcache_new(100, 10000);
    unsigned char k1[FG_TOKCACHE_KEY], k2[FG_TOKCACHE_KEY], k3[FG_TOKCACHE_KEY];
    struct fg_identity *id = fg_identity_new("alice", "jwt");
    spread(c, 1, k1);
    spread(c, 2, k2);
    spread(c, 3, k3);
    fg_tokcache_put(c, k1, id, NOW + 4000, NOW);  /* token expires first */
    fg_tokcache_put(c, k2, id, NOW + 50000, NOW); /* TTL ends first */
    fg_tokcache_put(c, k3, id, 0, NOW);           /* no expiry of its own: TTL */
    CHECK(cached(c, k1, NOW + 3999));
    CHECK(!cached(c, k1, NOW + 4000));
    CHECK(cached(c, k2, NOW + 9999));
    CHECK(!cached(c, k2, NOW + 10000));
    CHECK(cached(c, k3, NOW + 9999));
    CHECK(!cached(c, k3, NOW + 10000));
    fg_identity_unref(id);
    fg_tokcache_free(c);
}

static void expired_entries_not_returned(void)
{
    struct fg_tokcache *c = fg_tokcache_new(100, 10000);
    unsigned char key[FG_TOKCACHE_KEY];
    struct fg_identity *id = fg_identity_new("alice", "jwt");
    spread(c, 1, key);
    /* Already expired, or expiring right now: not stored. */
    fg_tokcache_put(c, key, id, NOW, NOW);
    fg_tokcache_put(c, key, id, NOW - 1, NOW);
    CHECK(fg_tokcache_size(c) == 0);
    CHECK(!cached(c, key, NOW));
    /* An expired entry is dropped when looked up; a later lookup stays empty. */
    fg_tokcache_put(c, key, id, NOW + 100, NOW);
    CHECK(fg_tokcache_size(c) == 1);
    CHECK(!cached(c, key, NOW + 100));
    CHECK(fg_tokcache_size(c) == 0);
    CHECK(!cached(c, key, NOW + 50)); /* even with a clock read earlier */
    CHECK(id->refs == 1);
    /* A TTL of zero caches nothing. */
    struct fg_tokcache *z = fg_tokcache_new(100, 0);
    fg_tokcache_put(z, key, id, 0, NOW);
    CHECK(fg_tokcache_size(z) == 0);
    fg_tokcache_free(z);
    fg_identity_unref(id);
    fg_tokcache_free(c);
}

static void put_over_a_key_replaces(void)
{
    struct fg_tokcache *c = fg_tokcache_new(100, 10000);
    unsigned char key[FG_TOKCACHE_KEY];
    struct fg_identity *a = fg_identity_new("alice", "jwt"), *b = fg_identity_new("bob", "jwt");
    spread(c, 1, key);
    fg_tokcache_put(c, key, a, NOW + 1000, NOW);
    fg_tokcache_put(c, key, b, NOW + 5000, NOW);
    CHECK(fg_tokcache_size(c) == 1);
    CHECK(a->refs == 1); /* the replaced identity was released */
    struct fg_identity *got = fg_tokcache_get(c, key, NOW + 2000); /* past a's expiry */
    CHECK(got == b);
    fg_identity_unref(got);
    fg_identity_unref(a);
    fg_identity_unref(b);
    fg_tokcache_free(c);
}

static void size_counts_entries(void)
{
    struct fg_tokcache *c = fg_tokcache_new(1000, 10000);
    unsigned char key[FG_TOKCACHE_KEY];
    struct fg_identity *id = fg_identity_new("alice", "jwt");
    CHECK(fg_tokcache_size(c) == 0);
    for (unsigned i = 0; i < 50; i++) {
        spread(c, i, key);
        fg_tokcache_put(c, key, id, 0, NOW);
    }
    CHECK(fg_tokcache_size(c) == 50);
    spread(c, 7, key);
    fg_tokcache_put(c, key, id, 0, NOW); /* the same key again */
    CHECK(fg_tokcache_size(c) == 50);
    CHECK(!cached(c, key, NOW + 10000));
    CHECK(fg_tokcache_size(c) == 49);
    CHECK(id->refs == 50);
    fg_identity_unref(id);
    fg_tokcache_free(c);
}

/* ---- bounds ---- */

/*
 * "capacity: most entries kept" (tokcache.h): whatever the keys, the cache
 * never holds more, including capacity 0 (tokenCacheSize: 0 in the config).
 */
static void capacity_is_a_bound(void)
{
    static const size_t caps[] = {0, 1, 4, 16, 32, 100, 1000};
    struct fg_identity *id = fg_identity_new("alice", "jwt");
    unsigned char key[FG_TOKCACHE_KEY];
    for (size_t i = 0; i < FG_ARRAY_LEN(caps); i++) {
        struct fg_tokcache *c = fg_tokcache_new(caps[i], 10000);
        for (unsigned k = 0; k < 4 * caps[i] + 200; k++) {
            spread(c, k, key);
            fg_tokcache_put(c, key, id, 0, NOW);
        }
        size_t n = fg_tokcache_size(c);
        if (n > caps[i]) {
            printf("#   capacity %zu holds %zu entries\n", caps[i], n);
            CHECK(n <= caps[i]);
        }
        fg_tokcache_free(c);
    }
    CHECK(id->refs == 1);
    fg_identity_unref(id);
}

/* Entries a stripe keeps: crafted keys of one stripe, put until one falls out. */
static unsigned stripe_room(struct fg_tokcache *c, struct fg_identity *id)
{
    unsigned char key[FG_TOKCACHE_KEY];
    unsigned n = 0;
    while (n < 10000) {
        crafted(key, n);
        fg_tokcache_put(c, key, id, 0, NOW);
        n++;
        if (fg_tokcache_size(c) < n)
            return n - 1;
    }
    return n;
}

/* Least recently used goes first; a get counts as a use. (LRU is kept per stripe.) */
static void lru_evicts_least_recently_used(void)
{
    struct fg_identity *id = fg_identity_new("alice", "jwt");
    struct fg_tokcache *probe = fg_tokcache_new(64, 10000);
    unsigned room = stripe_room(probe, id);
    fg_tokcache_free(probe);
    CHECK(room >= 2);

    struct fg_tokcache *c = fg_tokcache_new(64, 10000);
    unsigned char key[FG_TOKCACHE_KEY];
    for (unsigned i = 0; i < room; i++) {
        crafted(key, i);
        fg_tokcache_put(c, key, id, 0, NOW + i);
    }
    crafted(key, 0);
    CHECK(cached(c, key, NOW + room)); /* 0 is now the most recent; 1 the least */
    crafted(key, room);
    fg_tokcache_put(c, key, id, 0, NOW + room);
    CHECK(fg_tokcache_size(c) == room);
    crafted(key, 0);
    CHECK(cached(c, key, NOW + room));
    crafted(key, 1);
    CHECK(!cached(c, key, NOW + room));
    for (unsigned i = 2; i <= room; i++) {
        crafted(key, i);
        CHECK(cached(c, key, NOW + room));
    }
    /* The loop's gets left 0 least recent; a put is a use too: re-putting 0 leaves 2 to go. */
    crafted(key, 0);
    fg_tokcache_put(c, key, id, 0, NOW + room);
    crafted(key, room + 1);
    fg_tokcache_put(c, key, id, 0, NOW + room);
    crafted(key, 0);
    CHECK(cached(c, key, NOW + room));
    crafted(key, 2);
    CHECK(!cached(c, key, NOW + room));
    fg_tokcache_free(c);
    CHECK(id->refs == 1);
    fg_identity_unref(id);
}

/* ---- threads ---- */

#define THREADS 4
#define OPS     20000
#define POOL    256

struct shared {
    struct fg_tokcache *c;
    struct fg_identity *ids[POOL];
    unsigned char keys[POOL][FG_TOKCACHE_KEY];
    int wrong[THREADS];
};

struct arg {
    struct shared *s;
    int n;
};

static void *worker(void *p)
{
    struct arg *a = p;
    struct shared *s = a->s;
    unsigned seed = (unsigned)a->n * 7919u + 1;
    for (int i = 0; i < OPS; i++) {
        seed = seed * 1103515245u + 12345u;
        unsigned k = (seed >> 8) % POOL;
        uint64_t now = NOW + (uint64_t)i;
        if (seed & 1) {
            fg_tokcache_put(s->c, s->keys[k], s->ids[k], now + 5000, now);
        } else {
            struct fg_identity *id = fg_tokcache_get(s->c, s->keys[k], now);
            if (id != NULL && id != s->ids[k])
                s->wrong[a->n]++;
            fg_identity_unref(id);
        }
        if (i % 1000 == 0) {
            unsigned char key[FG_TOKCACHE_KEY];
            fg_tokcache_key(s->c, "jwt", "token", 5, auds_a, 2, key); /* racing the HMAC setup */
            fg_tokcache_size(s->c);
        }
    }
    return NULL;
}

static void threads_put_and_get(void)
{
    struct shared *s = fg_calloc(1, sizeof(*s));
    s->c = fg_tokcache_new(64, 10000); /* smaller than the pool: evictions race lookups */
    for (unsigned i = 0; i < POOL; i++) {
        char name[32];
        snprintf(name, sizeof(name), "user-%u", i);
        s->ids[i] = fg_identity_new(name, "jwt");
        spread(s->c, i, s->keys[i]);
    }
    pthread_t th[THREADS];
    struct arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (struct arg){s, i};
        CHECK(pthread_create(&th[i], NULL, worker, &args[i]) == 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        CHECK(s->wrong[i] == 0);
    }
    CHECK(fg_tokcache_size(s->c) <= 64 + 16); /* see capacity_is_a_bound for the exact bound */
    fg_tokcache_free(s->c);
    for (unsigned i = 0; i < POOL; i++) {
        CHECK(s->ids[i]->refs == 1);
        fg_identity_unref(s->ids[i]);
    }
    free(s);
}

/* ---- retiring a dropped cache ---- */

#define RETIRED 5000 /* 2.5 batches */

/* A cache of RETIRED entries that all hold one identity: its refs count the entries left. */
static struct fg_tokcache *full_cache(struct fg_identity **id)
{
    struct fg_tokcache *c = fg_tokcache_new(2 * RETIRED, 60000);
    *id = fg_identity_new("alice", "jwt");
    for (unsigned i = 0; i < RETIRED; i++) {
        unsigned char key[FG_TOKCACHE_KEY];
        spread(c, i, key);
        fg_tokcache_put(c, key, *id, 0, NOW);
    }
    return c;
}

/* A reload's dropped cache is freed on the fetcher's thread a batch at a time, never inline. */
static void retire_frees_in_slices(void)
{
    struct fake fk;
    fake_init(&fk, NOW);
    struct fg_identity *id;
    struct fg_tokcache *c = full_cache(&id);
    CHECK(fg_tokcache_size(c) == RETIRED);
    fg_tokcache_retire(c, &fk.f);
    CHECK(id->refs == 1 + RETIRED); /* nothing freed by the caller */
    CHECK(fk.ntasks == 1 && fake_timers(&fk) == 0);
    CHECK(fake_step(&fk, 0));
    CHECK(id->refs == 1 + RETIRED - FG_TOKCACHE_RETIRE_BATCH);
    CHECK(fake_timers(&fk) == 1);
    CHECK(fk.ndelays == 1 && fk.delays[0] == FG_TOKCACHE_RETIRE_PAUSE_MS);
    CHECK(!fake_step(&fk, 0)); /* the next batch waits for the pause */
    fake_advance(&fk, FG_TOKCACHE_RETIRE_PAUSE_MS);
    CHECK(id->refs == 1 + RETIRED - 2 * FG_TOKCACHE_RETIRE_BATCH);
    fake_advance(&fk, 10 * FG_TOKCACHE_RETIRE_PAUSE_MS);
    CHECK(id->refs == 1);
    CHECK(fk.ntasks == 0);
    fg_identity_unref(id);
    fake_drain(&fk);
}

/* Small caches, and callers without a fetcher, free at once. */
static void retire_small_or_without_fetcher_is_inline(void)
{
    struct fake fk;
    fake_init(&fk, NOW);
    struct fg_identity *id = fg_identity_new("bob", "jwt");
    struct fg_tokcache *c = fg_tokcache_new(100, 60000);
    unsigned char key[FG_TOKCACHE_KEY];
    spread(c, 1, key);
    fg_tokcache_put(c, key, id, 0, NOW);
    fg_tokcache_retire(c, &fk.f);
    CHECK(id->refs == 1 && fk.ntasks == 0);
    fg_identity_unref(id);
    c = full_cache(&id);
    fg_tokcache_retire(c, NULL);
    CHECK(id->refs == 1);
    fg_identity_unref(id);
    fg_tokcache_retire(NULL, &fk.f); /* nothing to do */
    CHECK(fk.ntasks == 0);
    fake_drain(&fk);
}

/* At shutdown the fetcher goes with batches pending: retire_finish frees the rest. */
static void retire_finish_frees_what_shutdown_left(void)
{
    struct fake fk;
    fake_init(&fk, NOW);
    struct fg_identity *id;
    struct fg_tokcache *c = full_cache(&id);
    fg_tokcache_retire(c, &fk.f);
    CHECK(fake_step(&fk, 0));
    CHECK(id->refs > 1);
    free(fk.tasks); /* the fetcher is gone: its timers never run */
    fk.tasks = NULL;
    fk.ntasks = fk.tcap = 0;
    fg_tokcache_retire_finish();
    CHECK(id->refs == 1);
    fg_identity_unref(id);
    fake_drain(&fk);
}

int main(void)
{
    RUN(key_depends_on_every_input);
    RUN(key_fields_length_prefixed);
    RUN(caches_have_their_own_secret);
    RUN(get_after_put_is_a_reference);
    RUN(expiry_is_min_of_token_and_ttl);
    RUN(expired_entries_not_returned);
    RUN(put_over_a_key_replaces);
    RUN(size_counts_entries);
    RUN(capacity_is_a_bound);
    RUN(lru_evicts_least_recently_used);
    RUN(threads_put_and_get);
    RUN(retire_frees_in_slices);
    RUN(retire_small_or_without_fetcher_is_inline);
    RUN(retire_finish_frees_what_shutdown_left);
    DONE();
}
