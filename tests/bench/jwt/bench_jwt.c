/*
 * bench_jwt.c - how fast frontgate verifies JWTs on one thread (issue 3,
 * item 7). Mints N distinct RS256 and ES256 tokens with realistic claims,
 * then measures, for each algorithm:
 *   - core:  fg_jwt_parse + key lookup (fg_keyset_next) + fg_jwt_verify +
 *            fg_jwt_identity, the work behind every unique token;
 *   - authn: the same token through the jwt authenticator (auth/jwtauthn.h)
 *            over a provider whose key set came in through a fake fetcher,
 *            with a fresh verified-token cache: cache key, miss, verify,
 *            identity, cache put - what a request with a new token costs;
 * and the verified-token cache hit: fg_tokcache_key + fg_tokcache_get (and,
 * for reference, each half and a whole authenticator call that hits).
 *
 *   bench_jwt [-n tokens] [-r rounds] [-w]
 *
 * Results are "name value" lines, one set per round ("round N" ... "end_round
 * N"), for tests/bench/jwt/run; lines starting with '#' are commentary. With
 * -w, before each round it prints "waiting N" and reads a line from stdin:
 * the run script measures OpenSSL in between, so each round has a baseline
 * taken under the same load (EOF ends the rounds).
 */
#include "auth/jwks.h"
#include "auth/jwtauthn.h"
#include "auth/oidc.h"
#include "auth/tokcache.h"
#include "tests/unit/fakefetch.h"
#include "tests/unit/testkeys.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define ISSUER   "https://idp.bench.example"
#define JWKS_URI ISSUER "/keys"
#define AUTHN    "jwt"

static char *audiences[] = {"kubernetes", "frontgate"};

struct tokens {
    char **tok;
    size_t *len;
    size_t n;
    enum fg_jwt_alg alg;
    EVP_PKEY *key;
    const char *kid;
    long now;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Claims an OIDC provider would issue to a Kubernetes user; each token differs. */
static char *claims_for(size_t i, long now)
{
    struct fg_buf b = {0};
    fg_buf_printf(&b,
                  "{\"iss\":\"" ISSUER "\",\"sub\":\"user-%06zu\",\"aud\":[\"kubernetes\"],"
                  "\"exp\":%ld,\"iat\":%ld,\"nbf\":%ld,\"auth_time\":%ld,"
                  "\"jti\":\"%08zx-4b1e-9c2d-%012zx\",\"azp\":\"kubectl\","
                  "\"email\":\"user-%06zu@corp.example\",\"email_verified\":true,"
                  "\"name\":\"User %zu\",\"preferred_username\":\"user%zu\","
                  "\"groups\":[\"system:authenticated\",\"team-%zu\",\"developers\","
                  "\"k8s-readers\",\"oncall-%zu\"]}",
                  i, now + 3600, now, now, now - 60, i * 2654435761u, i, i, i, i, i % 37, i % 5);
    return fg_buf_take(&b);
}

struct mint_job {
    struct tokens *t;
    size_t from, to;
};

static void *mint_range(void *p)
{
    struct mint_job *j = p;
    char hdr[128];
    tk_header(hdr, sizeof(hdr), j->t->alg, j->t->kid);
    for (size_t i = j->from; i < j->to; i++) {
        char *claims = claims_for(i, j->t->now);
        j->t->tok[i] = tk_mint(hdr, claims, j->t->alg, j->t->key);
        j->t->len[i] = strlen(j->t->tok[i]);
        free(claims);
    }
    return NULL;
}

/* Signing is the slow part of setting up (RSA): spread it over the CPUs. */
static void mint_all(struct tokens *t, size_t n, enum fg_jwt_alg alg, EVP_PKEY *key,
                     const char *kid)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    size_t nth = ncpu > 0 && ncpu < 64 ? (size_t)ncpu : 1;
    pthread_t th[64];
    struct mint_job jobs[64];
    t->tok = fg_calloc(n, sizeof(char *));
    t->len = fg_calloc(n, sizeof(size_t));
    t->n = n;
    t->alg = alg;
    t->key = key;
    t->kid = kid;
    t->now = (long)fg_wall_s();
    for (size_t i = 0; i < nth; i++) {
        jobs[i] = (struct mint_job){t, n * i / nth, n * (i + 1) / nth};
        if (pthread_create(&th[i], NULL, mint_range, &jobs[i]) != 0)
            abort();
    }
    for (size_t i = 0; i < nth; i++)
        pthread_join(th[i], NULL);
}

static void free_tokens(struct tokens *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->tok[i]);
    free(t->tok);
    free(t->len);
}

static struct fg_jwt_cfg make_cfg(void)
{
    struct fg_jwt_cfg c = {0};
    c.issuer_url = (char *)ISSUER;
    c.audiences = audiences;
    c.naudiences = FG_ARRAY_LEN(audiences);
    c.username.claim = (char *)"email";
    c.username.prefix = (char *)"oidc:";
    c.groups.claim = (char *)"groups";
    c.groups.prefix = (char *)"oidc:";
    c.uid.claim = (char *)"sub";
    return c;
}

/* ---- core: parse, key lookup, verify, identity ---- */

static double core_rate(const struct tokens *t, size_t from, size_t to, const struct fg_keyset *ks,
                        const struct fg_jwt_cfg *cfg)
{
    size_t bad = 0;
    double t0 = now_s();
    for (size_t i = from; i < to; i++) {
        struct fg_jwt jwt;
        const char *why = NULL;
        struct fg_identity *id = NULL;
        if (fg_jwt_parse(t->tok[i], t->len[i], &jwt, &why) == FG_JWT_PARSED) {
            size_t pos = 0;
            const struct fg_jwk *k;
            while ((k = fg_keyset_next(ks, jwt.kid, jwt.alg, &pos)) != NULL)
                if (fg_jwt_verify(&jwt, k->pkey, &why) == 0)
                    break;
            int64_t exp;
            if (k != NULL)
                id = fg_jwt_identity(&jwt, cfg, fg_wall_s(), AUTHN, &exp, &why);
        }
        bad += id == NULL;
        fg_identity_unref(id);
        fg_jwt_clear(&jwt);
    }
    double dt = now_s() - t0;
    if (bad) {
        fprintf(stderr, "bench_jwt: %zu of %zu %s tokens failed\n", bad, to - from,
                fg_jwt_alg_name(t->alg));
        exit(1);
    }
    return (double)(to - from) / dt;
}

/* ---- the authenticator, over a provider fed by a fake fetcher ---- */

struct bench_env {
    struct fake fk;
    struct fg_jwt_cfg cfg;
    struct fg_jwt_cfg *cfgs[1];
    struct fg_oidc *provider; /* keeps the provider (and its keys) across authenticators */
};

static void env_start(struct bench_env *e, const char *jwks)
{
    fake_init(&e->fk, 1);
    e->cfg = make_cfg();
    e->cfgs[0] = &e->cfg;
    e->provider = fg_oidc_acquire(&e->fk.f, &e->cfg, "bench");
    fake_run(&e->fk);
    struct fg_buf d = {0};
    fg_buf_printf(&d, "{\"issuer\":\"%s\",\"jwks_uri\":\"%s\"}", ISSUER, JWKS_URI);
    fake_answer0(&e->fk, 200, d.data, NULL);
    fake_answer0(&e->fk, 200, jwks, "max-age=3600");
    fg_buf_free(&d);
    if (!fg_oidc_ready(e->provider)) {
        fprintf(stderr, "bench_jwt: the key set was not installed\n");
        exit(1);
    }
}

static void env_end(struct bench_env *e)
{
    fg_oidc_release(e->provider);
    fake_drain(&e->fk);
}

static void no_post(struct fg_authn_waiter *w)
{
    (void)w;
    fprintf(stderr, "bench_jwt: unexpected park\n");
    abort();
}

/* Runs tokens [from, to) through a; returns calls per second; every one must be OK. */
static double authn_rate(struct fg_authn *a, const struct tokens *t, size_t from, size_t to)
{
    struct fg_authn_waiter w = {0};
    w.post = no_post;
    w.no_park = 1;
    size_t bad = 0;
    double t0 = now_s();
    for (size_t i = from; i < to; i++) {
        struct fg_credential cred = {t->tok[i], t->len[i]};
        struct fg_authn_result res;
        if (fg_authn_run(a, &cred, &res, &w) != FG_AUTHN_OK)
            bad++;
        fg_identity_unref(res.identity);
    }
    double dt = now_s() - t0;
    if (bad) {
        fprintf(stderr, "bench_jwt: %zu of %zu %s tokens refused\n", bad, to - from,
                fg_jwt_alg_name(t->alg));
        exit(1);
    }
    return (double)(to - from) / dt;
}

/* Unique tokens through a new authenticator with an empty cache. */
static double authn_unique_rate(struct bench_env *e, const struct tokens *t, size_t warm)
{
    struct fg_tokcache *cache = fg_tokcache_new(t->n * 2, 600000);
    struct fg_authn *a = fg_jwtauthn_new(AUTHN, e->cfgs, 1, &e->fk.f, cache, 1);
    authn_rate(a, t, 0, warm);
    double r = authn_rate(a, t, warm, t->n);
    fg_authn_unref(a);
    fg_tokcache_free(cache);
    fake_run(&e->fk);
    return r;
}

/* ---- cache hits ---- */

struct hit_times {
    double key_us, get_us, hit_us, authn_hit_us;
};

static void cache_hits(struct bench_env *e, const struct tokens *t, struct hit_times *out)
{
    struct fg_tokcache *c = fg_tokcache_new(t->n * 2, 600000);
    unsigned char(*keys)[FG_TOKCACHE_KEY] = fg_malloc(t->n * FG_TOKCACHE_KEY);
    struct fg_identity *id = fg_identity_new("oidc:someone@corp.example", AUTHN);
    uint64_t now = fg_now_ms();
    const size_t reps = 5;
    size_t misses = 0;

    for (size_t i = 0; i < t->n; i++) {
        fg_tokcache_key(c, AUTHN, t->tok[i], t->len[i], audiences, FG_ARRAY_LEN(audiences),
                        keys[i]);
        fg_tokcache_put(c, keys[i], id, 0, now);
    }
    /* key alone */
    unsigned char k[FG_TOKCACHE_KEY];
    double t0 = now_s();
    for (size_t r = 0; r < reps; r++)
        for (size_t i = 0; i < t->n; i++)
            fg_tokcache_key(c, AUTHN, t->tok[i], t->len[i], audiences, FG_ARRAY_LEN(audiences), k);
    out->key_us = (now_s() - t0) * 1e6 / (double)(reps * t->n);
    /* get alone */
    t0 = now_s();
    for (size_t r = 0; r < reps; r++)
        for (size_t i = 0; i < t->n; i++) {
            struct fg_identity *got = fg_tokcache_get(c, keys[i], now);
            misses += got == NULL;
            fg_identity_unref(got);
        }
    out->get_us = (now_s() - t0) * 1e6 / (double)(reps * t->n);
    /* key + get: what a hit costs the jwt authenticator */
    t0 = now_s();
    for (size_t r = 0; r < reps; r++)
        for (size_t i = 0; i < t->n; i++) {
            fg_tokcache_key(c, AUTHN, t->tok[i], t->len[i], audiences, FG_ARRAY_LEN(audiences), k);
            struct fg_identity *got = fg_tokcache_get(c, k, now);
            misses += got == NULL;
            fg_identity_unref(got);
        }
    out->hit_us = (now_s() - t0) * 1e6 / (double)(reps * t->n);
    if (misses) {
        fprintf(stderr, "bench_jwt: %zu cache misses\n", misses);
        exit(1);
    }
    free(keys);
    fg_identity_unref(id);
    fg_tokcache_free(c);

    /* A whole authenticator call that hits (fills a cache first). */
    c = fg_tokcache_new(t->n * 2, 600000);
    struct fg_authn *a = fg_jwtauthn_new(AUTHN, e->cfgs, 1, &e->fk.f, c, 1);
    authn_rate(a, t, 0, t->n);
    double rate = 0;
    for (size_t r = 0; r < reps; r++)
        rate += authn_rate(a, t, 0, t->n);
    out->authn_hit_us = 1e6 / (rate / (double)reps);
    if (fg_tokcache_size(c) != t->n) {
        fprintf(stderr, "bench_jwt: the cache holds %zu of %zu tokens\n", fg_tokcache_size(c),
                t->n);
        exit(1);
    }
    fg_authn_unref(a);
    fg_tokcache_free(c);
    fake_run(&e->fk);
}

/* -w: tells the driver this process is idle, then waits for its go-ahead; 0 on EOF. */
static int wait_turn(size_t round)
{
    char line[64];
    printf("waiting %zu\n", round);
    fflush(stdout);
    return fgets(line, sizeof(line), stdin) != NULL;
}

static size_t arg_size(const char *s, size_t min, size_t max)
{
    uint64_t v;
    if (fg_parse_u64(s, strlen(s), max, &v) != 0 || v < min) {
        fprintf(stderr, "bench_jwt: bad number %s\n", s);
        exit(2);
    }
    return (size_t)v;
}

int main(int argc, char **argv)
{
    size_t n = 20000, rounds = 3;
    int wait = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-w") == 0)
            wait = 1;
        else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            n = arg_size(argv[++i], 2000, 10000000);
        else if (strcmp(argv[i], "-r") == 0 && i + 1 < argc)
            rounds = arg_size(argv[++i], 1, 100);
    }
    fg_log_set_level(FG_LOG_ERROR);

    EVP_PKEY *rsa = tk_rsa(2048), *ec = tk_ec("P-256");
    /* A realistic key set: the current and the next key of each type. */
    EVP_PKEY *rsa_next = tk_rsa(2048), *ec_next = tk_ec("P-256");
    EVP_PKEY *set[] = {rsa_next, rsa, ec_next, ec};
    const char *kids[] = {"rsa-2", "rsa-1", "ec-2", "ec-1"};
    char *jwks = tk_jwks(set, kids, FG_ARRAY_LEN(set));

    double t0 = now_s();
    struct tokens rs, es;
    mint_all(&rs, n, FG_JWT_RS256, rsa, "rsa-1");
    mint_all(&es, n, FG_JWT_ES256, ec, "ec-1");
    printf("# minted %zu RS256 (%zu bytes) and %zu ES256 (%zu bytes) tokens in %.1f s\n", n,
           rs.len[0], n, es.len[0], now_s() - t0);

    const char *why = NULL;
    struct fg_keyset *ks = fg_keyset_parse(jwks, strlen(jwks), &why);
    if (ks == NULL) {
        fprintf(stderr, "bench_jwt: %s\n", why);
        return 1;
    }
    struct fg_jwt_cfg cfg = make_cfg();
    struct bench_env env;
    env_start(&env, jwks);

    size_t warm = n / 20; /* the first tokens warm the per-thread contexts; not timed */
    for (size_t r = 1; r <= rounds && (!wait || wait_turn(r)); r++) {
        core_rate(&rs, 0, warm, ks, &cfg);
        double rs_core = core_rate(&rs, warm, n, ks, &cfg);
        core_rate(&es, 0, warm, ks, &cfg);
        double es_core = core_rate(&es, warm, n, ks, &cfg);
        double rs_authn = authn_unique_rate(&env, &rs, warm);
        double es_authn = authn_unique_rate(&env, &es, warm);
        struct hit_times h;
        cache_hits(&env, &rs, &h);
        printf("round %zu\n", r);
        printf("rs256_core_per_s %.0f\n", rs_core);
        printf("rs256_authn_per_s %.0f\n", rs_authn);
        printf("es256_core_per_s %.0f\n", es_core);
        printf("es256_authn_per_s %.0f\n", es_authn);
        printf("cache_key_us %.3f\n", h.key_us);
        printf("cache_get_us %.3f\n", h.get_us);
        printf("cache_hit_us %.3f\n", h.hit_us);
        printf("authn_hit_us %.3f\n", h.authn_hit_us);
        printf("end_round %zu\n", r);
        fflush(stdout);
    }

    env_end(&env);
    fg_oidc_shutdown();
    fg_keyset_unref(ks);
    free_tokens(&rs);
    free_tokens(&es);
    free(jwks);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(rsa_next);
    EVP_PKEY_free(ec_next);
    return 0;
}
