/*
 * test_oidc.c - one issuer's keys (auth/oidc.h) over a hand-driven fetcher
 * (fakefetch.h): discovery and JWKS fetches, backoff, periodic refresh from
 * Cache-Control, failed refreshes, parked waiters (single flight, the
 * per-issuer and global limits, cancel), provider sharing and release.
 * Everything runs on this thread; time moves only when a test moves it.
 */
#include "t.h"

#include "auth/oidc.h"
#include "fakefetch.h"
#include "testkeys.h"

#include <openssl/ssl.h>
#include <stdlib.h>

#define ISSUER    "https://idp.example"
#define JWKS_URI  "https://idp.example/keys"
#define DISCOVERY ISSUER "/.well-known/openid-configuration"

#define SECOND 1000
#define MINUTE (60 * SECOND)

static EVP_PKEY *k1, *k2;
static char *jwks1, *jwks2; /* {k1}, {k1, k2} */
static char *disco;         /* ISSUER's discovery document */
static uint64_t epoch = 5 * MINUTE;

/* A fresh fake fetcher whose clock is an hour past the previous test's. */
static void fresh(struct fake *fk)
{
    epoch += 60 * MINUTE;
    fake_init(fk, epoch);
}

static struct fg_jwt_cfg cfg_of(const char *issuer)
{
    struct fg_jwt_cfg c = {0};
    c.issuer_url = (char *)issuer;
    c.username.claim = (char *)"sub";
    return c;
}

static char *discovery_doc(const char *issuer, const char *jwks_uri)
{
    struct fg_buf b = {0};
    fg_buf_printf(&b,
                  "{\"issuer\":\"%s\",\"jwks_uri\":\"%s\",\"id_token_signing_alg_values_"
                  "supported\":[\"RS256\"]}",
                  issuer, jwks_uri);
    return fg_buf_take(&b);
}

/* The pending fetch 0 is for url (printing what it was otherwise). */
static int fetching(const struct fake *fk, const char *url)
{
    int ok = fk->nfetches == 1 && strcmp(fk->fetches[0].url, url) == 0;
    if (!ok)
        printf("#   want one fetch of %s, have %zu (first: %s)\n", url, fk->nfetches,
               fake_url(fk, 0));
    return ok;
}

/* A provider for ISSUER with jwks1 installed. */
static struct fg_oidc *ready_provider(struct fake *fk, const struct fg_jwt_cfg *cfg)
{
    struct fg_oidc *o = fg_oidc_acquire(&fk->f, cfg, "test");
    fake_run(fk);
    fake_answer0(fk, 200, disco, NULL);
    fake_answer0(fk, 200, jwks1, NULL);
    if (!fg_oidc_ready(o))
        abort();
    return o;
}

static void teardown(struct fake *fk, struct fg_oidc *o)
{
    fg_oidc_release(o);
    fake_drain(fk);
}

/* ---- discovery and the first key set ---- */

static void discovery_url_from_issuer(void)
{
    struct fake fk;
    fresh(&fk);
    struct fg_jwt_cfg cfg = cfg_of(ISSUER);
    struct fg_oidc *o = fg_oidc_acquire(&fk.f, &cfg, "test");
    CHECK(fk.nfetches == 0); /* started on the fetcher's thread, not the caller's */
    fake_run(&fk);
    CHECK(fetching(&fk, DISCOVERY));
    if (fk.nfetches == 1) {
        CHECK_STR(fk.fetches[0].method, "GET");
        CHECK_STR(fk.fetches[0].accept, "application/json");
        CHECK(fk.fetches[0].tls == NULL); /* no CA configured: the system roots */
        CHECK(fk.fetches[0].timeout_ms > 0 && fk.fetches[0].max_response > 0);
    }
    CHECK(fg_oidc_fetch_count(o) == 1);
    CHECK(!fg_oidc_ready(o));
    CHECK(fg_oidc_keys(o) == NULL);
    teardown(&fk, o);

    /* A trailing slash on the issuer does not double. */
    fresh(&fk);
    cfg = cfg_of(ISSUER "/");
    o = fg_oidc_acquire(&fk.f, &cfg, "test");
    fake_run(&fk);
    CHECK(fetching(&fk, DISCOVERY));
    teardown(&fk, o);
    fresh(&fk);
    cfg = cfg_of(ISSUER "/tenant/v2.0");
    o = fg_oidc_acquire(&fk.f, &cfg, "test");
    fake_run(&fk);
    CHECK(fetching(&fk, ISSUER "/tenant/v2.0/.well-known/openid-configuration"));
    teardown(&fk, o);
}

static void discovery_url_exactly(void)
{
    struct fake fk;
    fresh(&fk);
    struct fg_jwt_cfg cfg = cfg_of(ISSUER);
    cfg.discovery_url = (char *)"https://internal.example/idp/discovery?realm=a";
    struct fg_oidc *o = fg_oidc_acquire(&fk.f, &cfg, "test");
    fake_run(&fk);
    CHECK(fetching(&fk, "https://internal.example/idp/discovery?realm=a"));
    /* The document still names the configured issuer; its jwks_uri is used. */
    char *doc = discovery_doc(ISSUER, "https://internal.example/idp/keys");
    fake_answer0(&fk, 200, doc, NULL);
    CHECK(fetching(&fk, "https://internal.example/idp/keys"));
    free(doc);
    teardown(&fk, o);
}

static void discovery_then_jwks_then_ready(void)
{
    struct fake fk;
    fresh(&fk);
    struct fg_jwt_cfg cfg = cfg_of(ISSUER);
    struct fg_oidc *o = fg_oidc_acquire(&fk.f, &cfg, "test");
    fake_run(&fk);
    fake_answer0(&fk, 200, disco, NULL);
    CHECK(fetching(&fk, JWKS_URI));
    CHECK(!fg_oidc_ready(o));
    CHECK(fg_oidc_fetch_count(o) == 2);
    fake_answer0(&fk, 200, jwks1, NULL);
    CHECK(fg_oidc_ready(o));
    CHECK(fk.nfetches == 0);
    struct fg_keyset *ks = fg_oidc_keys(o);
    CHECK(ks != NULL && ks->n == 1 && fg_keyset_has_kid(ks, "k1"));
    if (ks != NULL)
        CHECK(ks->refs == 2); /* the provider's and ours */
    fg_keyset_unref(ks);
    CHECK(fake_timers(&fk) == 1 && fake_last_delay(&fk) == 300 * SECOND);
    /* A loopback http jwks_uri is fine (tests, sidecars). */
    teardown(&fk, o);
    fresh(&fk);
    cfg = cfg_of("http://127.0.0.1:8080");
    o = fg_oidc_acquire(&fk.f, &cfg, "test");
    fake_run(&fk);
    CHECK(fetching(&fk, "http://127.0.0.1:8080/.well-known/openid-configuration"));
    char *doc = discovery_doc("http://127.0.0.1:8080", "http://127.0.0.1:8080/keys");
    fake_answer0(&fk, 200, doc, NULL);
    CHECK(fetching(&fk, "http://127.0.0.1:8080/keys"));
    free(doc);
    teardown(&fk, o);
}

/* Every refusal of a discovery document is retried, backing off 0.5 s doubling to 10 s. */
static void discovery_failures_back_off(void)
{
    struct fake fk;
    fresh(&fk);
    struct fg_jwt_cfg cfg = cfg_of(ISSUER);
    char *other = discovery_doc("https://evil.example", JWKS_URI);
    char *plain = discovery_doc(ISSUER, "http://idp.example/keys");
    char *lookalike = discovery_doc(ISSUER, "http://localhost.evil.example/keys");
    char *userinfo = discovery_doc(ISSUER, "http://127.0.0.1@evil.example/keys");
    static const uint64_t want[] = {500, 1000, 2000, 4000, 8000, 10000, 10000, 10000, 10000, 10000};
    const struct {
        int status;
        const char *body;
    } answers[] = {
        {200, other},                         /* issuer mismatch */
        {404, "{}"},                          /* not found */
        {0, "connection refused"},            /* no answer */
        {200, "<html>"},                      /* not JSON */
        {200, "[]"},                          /* not an object */
        {200, "{\"issuer\":\"" ISSUER "\"}"}, /* no jwks_uri */
        {200, plain},                         /* jwks_uri over plain http */
        {200, lookalike},                     /* a host that only starts like loopback */
        {200, userinfo},                      /* loopback as user information */
        {503, ""},
    };
    struct fg_oidc *o = fg_oidc_acquire(&fk.f, &cfg, "test");
    fake_run(&fk);
    for (size_t i = 0; i < FG_ARRAY_LEN(answers); i++) {
        CHECK(fetching(&fk, DISCOVERY));
        fake_answer0(&fk, answers[i].status, answers[i].body, NULL);
        CHECK(fk.nfetches == 0); /* no JWKS fetch after a refused document */
        CHECK(!fg_oidc_ready(o));
        CHECK(fake_last_delay(&fk) == want[i]);
        if (fake_last_delay(&fk) != want[i])
            printf("#   failure %zu: retry in %llu ms, want %llu\n", i,
                   (unsigned long long)fake_last_delay(&fk), (unsigned long long)want[i]);
        fake_advance(&fk, want[i] - 1);
        CHECK(fk.nfetches == 0);
        fake_advance(&fk, 1);
    }
    CHECK(fetching(&fk, DISCOVERY));
    fake_answer0(&fk, 200, disco, NULL);
    fake_answer0(&fk, 200, jwks1, NULL);
    CHECK(fg_oidc_ready(o));
    /* Success resets the backoff: a failed refresh retries in 0.5 s again. */
    fake_advance(&fk, 300 * SECOND);
    CHECK(fetching(&fk, JWKS_URI));
    fake_answer0(&fk, 500, "", NULL);
    CHECK(fake_last_delay(&fk) == 500);
    free(other);
    free(plain);
    free(lookalike);
    free(userinfo);
    teardown(&fk, o);
}

/* Two JWKS failures in a row: the IdP may have moved its keys, so discover again. */
static void jwks_failures_rediscover(void)
{
    struct fake fk;
    fresh(&fk);
    struct fg_jwt_cfg cfg = cfg_of(ISSUER);
    struct fg_oidc *o = fg_oidc_acquire(&fk.f, &cfg, "test");
    fake_run(&fk);
    fake_answer0(&fk, 200, disco, NULL);
    fake_answer0(&fk, 500, "", NULL);
    CHECK(fake_last_delay(&fk) == 500);
    fake_advance(&fk, 500);
    CHECK(fetching(&fk, JWKS_URI));
    fake_answer0(&fk, 200, "{\"keys\":[]}", NULL); /* no usable key: a failure too */
    CHECK(fake_last_delay(&fk) == 1000);
    CHECK(!fg_oidc_ready(o));
    fake_advance(&fk, 1000);
    CHECK(fetching(&fk, DISCOVERY));
    teardown(&fk, o);
}

/* ---- refresh ---- */

static void refresh_from_cache_control(void)
{
    static const struct {
        const char *cc;
        uint64_t want_s;
    } cases[] = {
        {"max-age=120", 120},
        {"public, max-age=900, must-revalidate", 900},
        {"max-age=60", 60},
        {"max-age=59", 60},
        {"max-age=5", 60},
        {"max-age=0", 60},
        {"max-age=3600", 3600},
        {"max-age=3601", 3600},
        {"max-age=86400", 3600},
        {NULL, 300},
        {"no-cache", 300},
        {"max-age=", 300},
        {"max-age=abc", 300},
        {"max-age=99999999999", 3600}, /* still "at most 1 h", however large */
    };
    struct fake fk;
    fresh(&fk);
    struct fg_jwt_cfg cfg = cfg_of(ISSUER);
    struct fg_oidc *o = fg_oidc_acquire(&fk.f, &cfg, "test");
    fake_run(&fk);
    fake_answer0(&fk, 200, disco, NULL);
    for (size_t i = 0; i < FG_ARRAY_LEN(cases); i++) {
        CHECK(fetching(&fk, JWKS_URI)); /* refreshes skip discovery */
        fake_answer0(&fk, 200, jwks1, cases[i].cc);
        uint64_t got = fake_last_delay(&fk);
        if (got != cases[i].want_s * SECOND) {
            printf("#   Cache-Control: %s -> refresh in %llu ms, want %llu s\n",
                   cases[i].cc ? cases[i].cc : "(none)", (unsigned long long)got,
                   (unsigned long long)cases[i].want_s);
            CHECK(got == cases[i].want_s * SECOND);
        }
        fake_advance(&fk, got - 1);
        CHECK(fk.nfetches == 0);
        fake_advance(&fk, 1);
    }
    teardown(&fk, o);
}

static void failed_refresh_keeps_keys(void)
{
    struct fake fk;
    fresh(&fk);
    struct fg_jwt_cfg cfg = cfg_of(ISSUER);
    struct fg_oidc *o = ready_provider(&fk, &cfg);
    struct fg_keyset *before = fg_oidc_keys(o);
    static const struct {
        int status;
        const char *body;
    } failures[] = {{500, ""}, {0, "timeout"}, {200, "{\"keys\":[]}"}, {200, "garbage"}};
    uint64_t wait = 300 * SECOND;
    for (size_t i = 0; i < FG_ARRAY_LEN(failures); i++) {
        fake_advance(&fk, wait);
        CHECK(fk.nfetches == 1);
        if (fk.nfetches != 1)
            break;
        fake_answer0(&fk, failures[i].status, failures[i].body, NULL);
        struct fg_keyset *now = fg_oidc_keys(o);
        CHECK(now == before);
        CHECK(fg_oidc_ready(o));
        fg_keyset_unref(now);
        wait = fake_last_delay(&fk);
    }
    fg_keyset_unref(before);
    teardown(&fk, o);
}

/* A refresh swaps the set; requests holding the old one keep using it. */
static void refresh_replaces_keys(void)
{
    struct fake fk;
    fresh(&fk);
    struct fg_jwt_cfg cfg = cfg_of(ISSUER);
    struct fg_oidc *o = ready_provider(&fk, &cfg);
    struct fg_keyset *old = fg_oidc_keys(o);
    fake_advance(&fk, 300 * SECOND);
    CHECK(fetching(&fk, JWKS_URI));
    fake_answer0(&fk, 200, jwks2, NULL);
    struct fg_keyset *cur = fg_oidc_keys(o);
    CHECK(cur != NULL && cur != old && cur->n == 2 && fg_keyset_has_kid(cur, "k2"));
    CHECK(old != NULL && old->refs == 1 && old->n == 1 && fg_keyset_has_kid(old, "k1"));
    CHECK(old != NULL && cur != NULL && strcmp(old->digest, cur->digest) != 0);
    fg_keyset_unref(old);
    fg_keyset_unref(cur);
    teardown(&fk, o);
}

/* ---- parked requests ---- */

static void park_single_flight(void)
{
    struct fake fk;
    fresh(&fk);
    struct fg_jwt_cfg cfg = cfg_of(ISSUER);
    struct fg_oidc *o = ready_provider(&fk, &cfg);
    unsigned long before = fg_oidc_fetch_count(o);
    struct fake_waiter a, b, c;
    fake_waiter_init(&a, 0), fake_waiter_init(&b, 0), fake_waiter_init(&c, 0);
    CHECK(fg_oidc_park(o, &a.w, fk.now) == 1);
    CHECK(a.w.cancel != NULL);
    fake_run(&fk);
    CHECK(fetching(&fk, JWKS_URI)); /* the JWKS directly: discovery is known */
    CHECK(fg_oidc_park(o, &b.w, fk.now + 1) == 1);
    CHECK(fg_oidc_park(o, &c.w, fk.now + 2) == 1);
    fake_run(&fk);
    CHECK(fk.nfetches == 1);
    CHECK(fg_oidc_fetch_count(o) == before + 1);
    /* The periodic refresh coming due meanwhile does not start a second fetch. */
    fake_advance(&fk, 300 * SECOND);
    CHECK(fk.nfetches == 1);
    CHECK(a.posts == 0 && b.posts == 0 && c.posts == 0);
    fake_answer0(&fk, 200, jwks2, NULL);
    CHECK(a.posts == 1 && b.posts == 1 && c.posts == 1);
    CHECK(a.status == FG_AUTHN_RETRY && b.status == FG_AUTHN_RETRY && c.status == FG_AUTHN_RETRY);
    struct fg_keyset *ks = fg_oidc_keys(o);
    CHECK(ks != NULL && fg_keyset_has_kid(ks, "k2"));
    fg_keyset_unref(ks);
    CHECK(fg_oidc_fetch_count(o) == before + 1);
    fake_run(&fk);
    CHECK(a.posts == 1 && b.posts == 1 && c.posts == 1); /* exactly one post each */
    teardown(&fk, o);
}

/* A failed forced fetch wakes its waiters too (they answer from the old keys). */
static void park_failed_fetch_still_posts(void)
{
    struct fake fk;
    fresh(&fk);
    struct fg_jwt_cfg cfg = cfg_of(ISSUER);
    struct fg_oidc *o = ready_provider(&fk, &cfg);
    struct fake_waiter a;
    fake_waiter_init(&a, 0);
    CHECK(fg_oidc_park(o, &a.w, fk.now) == 1);
    fake_run(&fk);
    fake_answer0(&fk, 0, "connection reset", NULL);
    CHECK(a.posts == 1 && a.status == FG_AUTHN_RETRY);
    CHECK(fg_oidc_ready(o));
    teardown(&fk, o);
}

static void park_rate_limited_per_issuer(void)
{
    struct fake fk;
    fresh(&fk);
    struct fg_jwt_cfg cfg = cfg_of(ISSUER);
    struct fg_oidc *o = ready_provider(&fk, &cfg);
    uint64_t t0 = fk.now;
    struct fake_waiter a, b;
    fake_waiter_init(&a, 0), fake_waiter_init(&b, 0);
    CHECK(fg_oidc_park(o, &a.w, t0) == 1);
    fake_run(&fk);
    fake_answer0(&fk, 200, jwks1, NULL);
    unsigned long n = fg_oidc_fetch_count(o);
    /* Within 10 s of the last forced fetch: refused, nothing parked, nothing fetched. */
    CHECK(fg_oidc_park(o, &b.w, t0 + FG_OIDC_FORCED_INTERVAL_MS - 1) == 0);
    CHECK(b.w.cancel == NULL);
    fake_run(&fk);
    CHECK(fk.nfetches == 0 && fg_oidc_fetch_count(o) == n);
    CHECK(b.posts == 0);
    /* At 10 s: allowed again. */
    CHECK(fg_oidc_park(o, &b.w, t0 + FG_OIDC_FORCED_INTERVAL_MS) == 1);
    fake_run(&fk);
    CHECK(fk.nfetches == 1);
    fake_answer0(&fk, 200, jwks1, NULL);
    CHECK(b.posts == 1 && a.posts == 1);
    teardown(&fk, o);
}

/* Before the first key set, requests park on the start-up fetch: no forced fetch. */
static void park_joins_startup_fetch(void)
{
    struct fake fk;
    fresh(&fk);
    struct fg_jwt_cfg cfg = cfg_of(ISSUER);
    struct fg_oidc *o = fg_oidc_acquire(&fk.f, &cfg, "test");
    struct fake_waiter a, b;
    fake_waiter_init(&a, 0), fake_waiter_init(&b, 0);
    CHECK(fg_oidc_park(o, &a.w, fk.now) == 1);
    fake_run(&fk);
    CHECK(fetching(&fk, DISCOVERY));
    fake_answer0(&fk, 200, disco, NULL);
    CHECK(a.posts == 0); /* discovery alone is not the end of the fetch */
    CHECK(fg_oidc_park(o, &b.w, fk.now) == 1);
    fake_run(&fk);
    CHECK(fetching(&fk, JWKS_URI));
    fake_answer0(&fk, 200, jwks1, NULL);
    CHECK(a.posts == 1 && b.posts == 1 && a.status == FG_AUTHN_RETRY);
    CHECK(fg_oidc_fetch_count(o) == 2);
    /* No forced fetch was spent: one may start right away. */
    fake_waiter_init(&a, 0);
    CHECK(fg_oidc_park(o, &a.w, fk.now) == 1);
    fake_run(&fk);
    CHECK(fetching(&fk, JWKS_URI));
    /* Start-up failure wakes the waiters as well. */
    teardown(&fk, o);
    fresh(&fk);
    o = fg_oidc_acquire(&fk.f, &cfg, "test");
    fake_waiter_init(&a, 0);
    CHECK(fg_oidc_park(o, &a.w, fk.now) == 1);
    fake_run(&fk);
    fake_answer0(&fk, 404, "", NULL);
    CHECK(a.posts == 1 && a.status == FG_AUTHN_RETRY);
    CHECK(!fg_oidc_ready(o));
    teardown(&fk, o);
}

static void park_without_fetcher(void)
{
    struct fg_jwt_cfg cfg = cfg_of(ISSUER);
    struct fg_oidc *o = fg_oidc_acquire(NULL, &cfg, "check");
    struct fake_waiter a;
    fake_waiter_init(&a, 0);
    CHECK(fg_oidc_park(o, &a.w, epoch) == 0);
    CHECK(!fg_oidc_ready(o) && fg_oidc_keys(o) == NULL && fg_oidc_fetch_count(o) == 0);
    fg_oidc_release(o); /* freed at once: nothing runs on a fetcher */
}

#define NPROV (FG_OIDC_FORCED_PER_MINUTE + 1)

/* At most 30 forced fetches a minute, whatever the issuers. */
static void park_global_budget(void)
{
    struct fake fk;
    fresh(&fk);
    struct fg_jwt_cfg cfgs[NPROV];
    char issuers[NPROV][64];
    struct fg_oidc *o[NPROV];
    struct fake_waiter w[NPROV], join;
    for (int i = 0; i < NPROV; i++) {
        snprintf(issuers[i], sizeof(issuers[i]), "https://idp%d.example", i);
        cfgs[i] = cfg_of(issuers[i]);
        o[i] = fg_oidc_acquire(&fk.f, &cfgs[i], "test");
        fake_waiter_init(&w[i], 0);
    }
    fake_run(&fk);
    CHECK(fk.nfetches == NPROV);
    while (fk.nfetches)
        fake_answer0(&fk, 500, "", NULL); /* each idle, with a retry timer pending */
    uint64_t t = fk.now;
    for (int i = 0; i < NPROV - 1; i++)
        CHECK(fg_oidc_park(o[i], &w[i].w, t) == 1);
    CHECK(fg_oidc_park(o[NPROV - 1], &w[NPROV - 1].w, t) == 0);
    CHECK(fg_oidc_park(o[NPROV - 1], &w[NPROV - 1].w, t + MINUTE - 1) == 0);
    /* Joining a fetch in flight costs nothing. */
    fake_waiter_init(&join, 0);
    CHECK(fg_oidc_park(o[0], &join.w, t + 1) == 1);
    fake_run(&fk);
    CHECK(fk.nfetches == NPROV - 1);
    while (fk.nfetches)
        fake_answer0(&fk, 500, "", NULL);
    for (int i = 0; i < NPROV - 1; i++)
        CHECK(w[i].posts == 1);
    CHECK(join.posts == 1 && w[NPROV - 1].posts == 0);
    /* A minute later the budget is back. */
    CHECK(fg_oidc_park(o[NPROV - 1], &w[NPROV - 1].w, t + MINUTE) == 1);
    fake_run(&fk);
    CHECK(fk.nfetches == 1);
    for (int i = 0; i < NPROV; i++)
        fg_oidc_release(o[i]);
    fake_drain(&fk);
    CHECK(w[NPROV - 1].posts <= 1);
}

static void cancel_before_completion(void)
{
    struct fake fk;
    fresh(&fk);
    struct fg_jwt_cfg cfg = cfg_of(ISSUER);
    struct fg_oidc *o = ready_provider(&fk, &cfg);
    struct fake_waiter a, b, c;
    fake_waiter_init(&a, 0), fake_waiter_init(&b, 0), fake_waiter_init(&c, 0);
    CHECK(fg_authn_cancel(&c.w) == 1); /* nothing pending */
    CHECK(fg_oidc_park(o, &a.w, fk.now) == 1);
    CHECK(fg_oidc_park(o, &b.w, fk.now) == 1);
    fake_run(&fk);
    CHECK(fg_authn_cancel(&a.w) == 1);
    CHECK(fg_authn_cancel(&a.w) == 1); /* twice is harmless */
    fake_answer0(&fk, 200, jwks1, NULL);
    fake_run(&fk);
    CHECK(a.posts == 0);
    CHECK(b.posts == 1 && b.status == FG_AUTHN_RETRY);
    teardown(&fk, o);
}

/* ---- sharing and release ---- */

static void same_issuer_shares_provider(void)
{
    struct fake fk, other;
    fresh(&fk);
    fake_init(&other, fk.now);
    char issuer_copy[] = ISSUER;
    struct fg_jwt_cfg a = cfg_of(ISSUER), b = cfg_of(issuer_copy), d = cfg_of(ISSUER),
                      ca = cfg_of(ISSUER);
    d.discovery_url = (char *)"https://idp.example/other-discovery";
    ca.ca_pem = (char *)"a CA bundle";
    struct fg_oidc *oa = fg_oidc_acquire(&fk.f, &a, "one");
    struct fg_oidc *ob = fg_oidc_acquire(&fk.f, &b, "two");
    struct fg_oidc *od = fg_oidc_acquire(&fk.f, &d, "three");
    struct fg_oidc *oca = fg_oidc_acquire(&fk.f, &ca, "four");
    struct fg_oidc *oo = fg_oidc_acquire(&other.f, &a, "five");
    CHECK(oa == ob);
    CHECK(od != oa && oca != oa && oca != od && oo != oa);
    fake_run(&fk);
    CHECK(fk.nfetches == 3); /* one start-up fetch per provider */
    fg_oidc_release(ob);     /* one user left: still running */
    fake_run(&fk);
    for (size_t i = 0; i < fk.nfetches; i++)
        if (strcmp(fk.fetches[i].url, DISCOVERY) == 0 && fk.fetches[i].tls == NULL)
            fake_answer(&fk, i, 200, disco, NULL);
    CHECK(fk.nfetches == 3 && strcmp(fk.fetches[2].url, JWKS_URI) == 0);
    fake_answer(&fk, 2, 200, jwks1, NULL);
    CHECK(fg_oidc_ready(oa));
    /* After the last release, the same configuration gets a new provider. */
    fg_oidc_release(oa);
    fake_run(&fk);
    struct fg_oidc *again = fg_oidc_acquire(&fk.f, &a, "six");
    CHECK(!fg_oidc_ready(again));
    fg_oidc_release(again);
    fg_oidc_release(od);
    fg_oidc_release(oca);
    fg_oidc_release(oo);
    fake_drain(&fk);
    fake_drain(&other);
}

/* ex_data on the provider's SSL_CTX: its free callback says the provider is gone. */
static int ctx_index = -1;

static void ctx_gone(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    if (ptr != NULL)
        *(int *)ptr = 1;
}

/* A provider with a CA (so it owns an SSL_CTX), started; *gone turns 1 when it is freed. */
static struct fg_oidc *watched(struct fake *fk, struct fg_jwt_cfg *cfg, int *gone)
{
    if (ctx_index < 0)
        ctx_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, ctx_gone);
    *cfg = cfg_of(ISSUER);
    cfg->ca_pem = (char *)"the test CA";
    struct fg_oidc *o = fg_oidc_acquire(&fk->f, cfg, "test");
    fake_run(fk);
    *gone = 0;
    if (fk->nfetches != 1 || fk->fetches[0].tls == NULL)
        abort();
    SSL_CTX_set_ex_data(fk->fetches[0].tls, ctx_index, gone);
    return o;
}

static void release_waits_for_callbacks(void)
{
    struct fake fk;
    struct fg_jwt_cfg cfg;
    int gone;

    /* A fetch in flight: freed when its answer comes, and nothing more is fetched. */
    fresh(&fk);
    struct fg_oidc *o = watched(&fk, &cfg, &gone);
    fg_oidc_release(o);
    fake_run(&fk);
    CHECK(gone == 0);
    size_t delays = fk.ndelays;
    fake_answer0(&fk, 200, disco, NULL);
    CHECK(gone == 1);
    CHECK(fk.nfetches == 0 && fk.ntasks == 0 && fk.ndelays == delays);
    fake_drain(&fk);

    /* A retry timer pending: freed when it fires. */
    fresh(&fk);
    o = watched(&fk, &cfg, &gone);
    fake_answer0(&fk, 500, "", NULL);
    CHECK(fake_timers(&fk) == 1);
    fg_oidc_release(o);
    fake_run(&fk);
    CHECK(gone == 0);
    fake_advance(&fk, 500);
    CHECK(gone == 1);
    CHECK(fk.nfetches == 0 && fk.ntasks == 0);
    fake_drain(&fk);

    /* Keys installed, refresh timer pending. */
    fresh(&fk);
    o = watched(&fk, &cfg, &gone);
    fake_answer0(&fk, 200, disco, NULL);
    fake_answer0(&fk, 200, jwks1, NULL);
    struct fg_keyset *ks = fg_oidc_keys(o);
    fg_oidc_release(o);
    fake_run(&fk);
    CHECK(gone == 0);
    fake_advance(&fk, 300 * SECOND);
    CHECK(gone == 1 && fk.nfetches == 0);
    CHECK(ks != NULL && ks->refs == 1 && ks->n == 1); /* ours outlives the provider */
    fg_keyset_unref(ks);
    fake_drain(&fk);

    /* Released before its first task ran. */
    fresh(&fk);
    cfg = cfg_of(ISSUER);
    o = fg_oidc_acquire(&fk.f, &cfg, "test");
    fg_oidc_release(o);
    fake_drain(&fk);
}

int main(void)
{
    const char *kids1[] = {"k1"}, *kids2[] = {"k1", "k2"};
    fg_log_set_level(FG_LOG_ERROR);
    k1 = tk_rsa(2048);
    k2 = tk_ec("P-256");
    EVP_PKEY *set2[] = {k1, k2};
    jwks1 = tk_jwks(&k1, kids1, 1);
    jwks2 = tk_jwks(set2, kids2, 2);
    disco = discovery_doc(ISSUER, JWKS_URI);

    RUN(discovery_url_from_issuer);
    RUN(discovery_url_exactly);
    RUN(discovery_then_jwks_then_ready);
    RUN(discovery_failures_back_off);
    RUN(jwks_failures_rediscover);
    RUN(refresh_from_cache_control);
    RUN(failed_refresh_keeps_keys);
    RUN(refresh_replaces_keys);
    RUN(park_single_flight);
    RUN(park_failed_fetch_still_posts);
    RUN(park_rate_limited_per_issuer);
    RUN(park_joins_startup_fetch);
    RUN(park_without_fetcher);
    RUN(park_global_budget);
    RUN(cancel_before_completion);
    RUN(same_issuer_shares_provider);
    RUN(release_waits_for_callbacks);

    fg_oidc_shutdown();
    free(jwks1);
    free(jwks2);
    free(disco);
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);
    DONE();
}
