/*
 * test_jwtauthn.c - the jwt authenticator (auth/jwtauthn.h) over a provider
 * fed by a hand-driven fetcher (fakefetch.h): tokens that are not its own,
 * good and bad tokens, the verified-token cache, unknown kids that park the
 * request on a key fetch, and the answer before any key has arrived.
 *
 * The authenticator reads the real clock (fg_now_ms for the cache and the
 * forced-fetch limits, fg_wall_s for exp), so tokens here expire relative to
 * the wall clock and no test needs two forced fetches of one issuer.
 */
#include "t.h"

#include "auth/jwtauthn.h"
#include "auth/oidc.h"
#include "fakefetch.h"
#include "testkeys.h"

#include <stdlib.h>

#define ISSUER     "https://issuer.example"
#define JWKS_URI   "https://issuer.example/jwks"
#define NOT_IN_SET "the signing key is not in the issuer's key set"

static EVP_PKEY *k1, *k2, *kec, *stranger;
static char *jwks_k1, *jwks_k1k2, *jwks_k2, *jwks_k1ec, *disco;

static char *auds[] = {"kube"};

struct env {
    struct fake fk;
    struct fg_jwt_cfg cfg;
    struct fg_jwt_cfg *cfgs[1];
    struct fg_tokcache *cache;
    struct fg_authn *a;
};

static void env_start(struct env *e, int with_cache)
{
    memset(e, 0, sizeof(*e));
    fake_init(&e->fk, 1000000);
    e->cfg.issuer_url = (char *)ISSUER;
    e->cfg.audiences = auds;
    e->cfg.naudiences = 1;
    e->cfg.username.claim = (char *)"sub";
    e->cfg.username.prefix = (char *)"oidc:";
    e->cfg.groups.claim = (char *)"groups";
    e->cfg.groups.prefix = (char *)"oidc:";
    e->cfgs[0] = &e->cfg;
    e->cache = with_cache ? fg_tokcache_new(1000, 60000) : NULL;
    e->a = fg_jwtauthn_new("oidc", e->cfgs, 1, &e->fk.f, e->cache, 1);
}

/* Runs discovery and the first JWKS fetch, answered with jwks. */
static void env_keys(struct env *e, const char *jwks)
{
    fake_run(&e->fk);
    fake_answer0(&e->fk, 200, disco, NULL);
    fake_answer0(&e->fk, 200, jwks, NULL);
}

static void env_ready(struct env *e, int with_cache, const char *jwks)
{
    env_start(e, with_cache);
    env_keys(e, jwks);
    if (!fg_authn_ready(e->a))
        abort();
}

static void env_end(struct env *e)
{
    fg_authn_unref(e->a);
    fake_drain(&e->fk);
    fg_tokcache_free(e->cache);
}

static enum fg_authn_status authn(struct env *e, const char *tok, struct fake_waiter *w,
                                  struct fg_authn_result *res)
{
    struct fg_credential cred = {tok, tok ? strlen(tok) : 0};
    return fg_authn_run(e->a, &cred, res, &w->w);
}

/* A token of key (alg, kid) for iss, expiring exp_in seconds from now. */
static char *token(EVP_PKEY *key, enum fg_jwt_alg alg, const char *kid, const char *iss,
                   const char *sub, long exp_in)
{
    char hdr[128];
    struct fg_buf c = {0};
    long now = (long)fg_wall_s();
    fg_buf_printf(&c,
                  "{\"iss\":\"%s\",\"sub\":\"%s\",\"aud\":\"kube\",\"exp\":%ld,\"iat\":%ld,"
                  "\"groups\":[\"dev\",\"ops\"],\"email\":\"%s@example.com\"}",
                  iss, sub, now + exp_in, now, sub);
    char *tok = tk_mint(tk_header(hdr, sizeof(hdr), alg, kid), c.data, alg, key);
    fg_buf_free(&c);
    return tok;
}

static char *good(EVP_PKEY *key, const char *kid)
{
    return token(key, EVP_PKEY_get_base_id(key) == EVP_PKEY_EC ? FG_JWT_ES256 : FG_JWT_RS256, kid,
                 ISSUER, "alice", 3600);
}

static int rejected(enum fg_authn_status st, const struct fg_authn_result *res, const char *want)
{
    int ok = st == FG_AUTHN_REJECTED && res->reason != NULL && strcmp(res->reason, want) == 0 &&
             res->identity == NULL;
    if (!ok)
        printf("#   want REJECTED \"%s\", got status %d \"%s\"\n", want, (int)st,
               res->reason ? res->reason : "");
    return ok;
}

/* ---- not mine ---- */

static void not_mine(void)
{
    struct env e;
    env_ready(&e, 1, jwks_k1);
    struct fake_waiter w;
    struct fg_authn_result res;
    unsigned long started = e.fk.started;

    fake_waiter_init(&w, 0);
    CHECK(authn(&e, NULL, &w, &res) == FG_AUTHN_NOT_MINE);
    CHECK(authn(&e, "opaque-api-key-123", &w, &res) == FG_AUTHN_NOT_MINE);
    CHECK(res.reason == NULL && res.identity == NULL);
    CHECK(authn(&e, "abc.def.ghi", &w, &res) ==
          FG_AUTHN_NOT_MINE); /* its first segment opens no JSON object */

    /* JWT-shaped but unacceptable: not attributable to an issuer, with a reason for the log. */
    struct fg_buf b = {0};
    tk_add_b64(&b, "{\"alg\":\"none\"}", 14);
    fg_buf_addc(&b, '.');
    tk_add_b64(&b, "{\"iss\":\"" ISSUER "\"}", strlen("{\"iss\":\"" ISSUER "\"}"));
    fg_buf_addc(&b, '.');
    CHECK(authn(&e, b.data, &w, &res) == FG_AUTHN_NOT_MINE);
    CHECK_STR(res.reason, "unsigned tokens (alg none) are not accepted");
    fg_buf_free(&b);

    /* Another issuer's (validly signed) token. */
    char *other = token(k1, FG_JWT_RS256, "k1", "https://other.example", "alice", 3600);
    CHECK(authn(&e, other, &w, &res) == FG_AUTHN_NOT_MINE);
    CHECK_STR(res.reason, "the token's issuer is not configured");
    CHECK(res.identity == NULL);
    free(other);

    CHECK(fg_tokcache_size(e.cache) == 0);
    fake_run(&e.fk);
    CHECK(e.fk.started == started && w.w.cancel == NULL);
    env_end(&e);
}

/* ---- verified tokens ---- */

static void valid_tokens_ok(void)
{
    struct env e;
    env_ready(&e, 1, jwks_k1ec);
    struct fake_waiter w;
    struct fg_authn_result res;
    fake_waiter_init(&w, 0);

    char *rs = good(k1, "k1");
    CHECK(authn(&e, rs, &w, &res) == FG_AUTHN_OK);
    struct fg_identity *id = res.identity;
    CHECK(id != NULL);
    if (id != NULL) {
        CHECK_STR(id->user, "oidc:alice");
        CHECK(id->ngroups == 2 && fg_identity_has_group(id, "oidc:dev") &&
              fg_identity_has_group(id, "oidc:ops"));
        CHECK_STR(id->authn, "oidc");
        CHECK(id->refs == 2); /* ours and the cache's */
    }
    CHECK(fg_tokcache_size(e.cache) == 1);
    fg_identity_unref(id);

    char *es = token(kec, FG_JWT_ES256, "e1", ISSUER, "bob", 3600);
    CHECK(authn(&e, es, &w, &res) == FG_AUTHN_OK);
    CHECK(res.identity != NULL && strcmp(res.identity->user, "oidc:bob") == 0);
    fg_identity_unref(res.identity);

    /* No kid: every key of the alg is tried. */
    char *nokid = token(k1, FG_JWT_RS256, NULL, ISSUER, "carol", 3600);
    CHECK(authn(&e, nokid, &w, &res) == FG_AUTHN_OK);
    fg_identity_unref(res.identity);
    CHECK(fg_tokcache_size(e.cache) == 3);
    free(rs);
    free(es);
    free(nokid);
    env_end(&e);
}

static void refused_tokens(void)
{
    struct env e;
    env_ready(&e, 1, jwks_k1);
    struct fake_waiter w;
    struct fg_authn_result res;
    unsigned long fetches = e.fk.started;
    fake_waiter_init(&w, 0);

    char *forged = good(stranger, "k1"); /* known kid, wrong key */
    CHECK(rejected(authn(&e, forged, &w, &res), &res, "token signature does not verify"));
    CHECK(w.w.cancel == NULL); /* a known kid is not a reason to fetch */
    char *expired = token(k1, FG_JWT_RS256, "k1", ISSUER, "alice", -10);
    CHECK(rejected(authn(&e, expired, &w, &res), &res, "token expired"));
    char *es_on_rsa = token(kec, FG_JWT_ES256, "k1", ISSUER, "alice", 3600);
    CHECK(rejected(authn(&e, es_on_rsa, &w, &res), &res, "no key of the token's algorithm"));
    fake_run(&e.fk);
    CHECK(e.fk.started == fetches);
    CHECK(fg_tokcache_size(e.cache) == 0); /* only successes are cached */
    free(forged);
    free(expired);
    free(es_on_rsa);
    env_end(&e);
}

/*
 * A hit returns the cached identity itself, without verifying: after the
 * issuer drops the key, the cached token still passes while a new token of
 * that key is refused.
 */
static void second_authenticate_is_a_cache_hit(void)
{
    struct env e;
    env_ready(&e, 1, jwks_k1);
    struct fake_waiter w;
    struct fg_authn_result res;
    fake_waiter_init(&w, 1);

    char *tok = good(k1, "k1");
    CHECK(authn(&e, tok, &w, &res) == FG_AUTHN_OK);
    struct fg_identity *first = res.identity;
    CHECK(authn(&e, tok, &w, &res) == FG_AUTHN_OK);
    CHECK(res.identity == first);
    fg_identity_unref(res.identity);

    /* The periodic refresh replaces the key set with one that lacks k1. */
    fake_advance(&e.fk, 300 * 1000);
    CHECK(e.fk.nfetches == 1);
    fake_answer0(&e.fk, 200, jwks_k2, NULL);
    struct fg_oidc *o = fg_oidc_acquire(&e.fk.f, &e.cfg, "probe"); /* the shared provider */
    struct fg_keyset *ks = fg_oidc_keys(o);
    CHECK(ks != NULL && !fg_keyset_has_kid(ks, "k1"));
    fg_keyset_unref(ks);
    fg_oidc_release(o);

    CHECK(authn(&e, tok, &w, &res) == FG_AUTHN_OK);
    CHECK(res.identity == first);
    fg_identity_unref(res.identity);
    char *fresh_tok = token(k1, FG_JWT_RS256, "k1", ISSUER, "alice", 3599);
    CHECK(rejected(authn(&e, fresh_tok, &w, &res), &res, NOT_IN_SET));

    /* And with the provider failing outright. */
    fake_advance(&e.fk, 300 * 1000);
    while (e.fk.nfetches)
        fake_answer0(&e.fk, 0, "connection refused", NULL);
    CHECK(authn(&e, tok, &w, &res) == FG_AUTHN_OK && res.identity == first);
    fg_identity_unref(res.identity);
    fg_identity_unref(first);
    free(tok);
    free(fresh_tok);
    env_end(&e);

    /* Without a cache every call verifies and builds a new identity. */
    env_ready(&e, 0, jwks_k1);
    tok = good(k1, "k1");
    CHECK(authn(&e, tok, &w, &res) == FG_AUTHN_OK);
    first = res.identity;
    CHECK(authn(&e, tok, &w, &res) == FG_AUTHN_OK);
    CHECK(res.identity != NULL && res.identity != first);
    fg_identity_unref(res.identity);
    fg_identity_unref(first);
    free(tok);
    env_end(&e);
}

/* Two authenticators on one cache and one issuer: entries are per authenticator. */
static void cache_entries_per_authenticator(void)
{
    struct env e;
    env_ready(&e, 1, jwks_k1);
    struct fg_authn *b = fg_jwtauthn_new("oidc2", e.cfgs, 1, &e.fk.f, e.cache, 1);
    CHECK(fg_authn_ready(b)); /* it shares the provider, keys included */
    struct fake_waiter w;
    struct fg_authn_result ra, rb;
    fake_waiter_init(&w, 1);
    char *tok = good(k1, "k1");
    struct fg_credential cred = {tok, strlen(tok)};
    CHECK(authn(&e, tok, &w, &ra) == FG_AUTHN_OK);
    CHECK(fg_authn_run(b, &cred, &rb, &w.w) == FG_AUTHN_OK);
    CHECK(ra.identity != NULL && rb.identity != NULL && ra.identity != rb.identity);
    if (rb.identity != NULL)
        CHECK_STR(rb.identity->authn, "oidc2");
    CHECK(fg_tokcache_size(e.cache) == 2);
    fg_identity_unref(ra.identity);
    fg_identity_unref(rb.identity);
    fg_authn_unref(b);
    free(tok);
    env_end(&e);
}

/* ---- unknown keys ---- */

static void unknown_kid_parks_then_verifies(void)
{
    struct env e;
    env_ready(&e, 1, jwks_k1);
    struct fake_waiter w;
    struct fg_authn_result res;
    fake_waiter_init(&w, 0);

    char *tok = good(k2, "k2");
    CHECK(authn(&e, tok, &w, &res) == FG_AUTHN_PENDING);
    CHECK(w.w.cancel != NULL && w.posts == 0);
    fake_run(&e.fk);
    CHECK(e.fk.nfetches == 1 && strcmp(fake_url(&e.fk, 0), JWKS_URI) == 0);
    fake_answer0(&e.fk, 200, jwks_k1k2, NULL);
    CHECK(w.posts == 1 && w.status == FG_AUTHN_RETRY);

    /* The caller runs it again, without parking. */
    fake_waiter_init(&w, 1);
    CHECK(authn(&e, tok, &w, &res) == FG_AUTHN_OK);
    CHECK(res.identity != NULL && strcmp(res.identity->user, "oidc:alice") == 0);
    fg_identity_unref(res.identity);
    free(tok);
    env_end(&e);
}

static void unknown_kid_still_unknown(void)
{
    struct env e;
    env_ready(&e, 1, jwks_k1);
    struct fake_waiter w;
    struct fg_authn_result res;
    fake_waiter_init(&w, 0);

    char *tok = good(k2, "k2");
    CHECK(authn(&e, tok, &w, &res) == FG_AUTHN_PENDING);
    fake_run(&e.fk);
    fake_answer0(&e.fk, 200, jwks_k1, NULL);
    CHECK(w.posts == 1 && w.status == FG_AUTHN_RETRY);
    fake_waiter_init(&w, 1);
    CHECK(rejected(authn(&e, tok, &w, &res), &res, NOT_IN_SET));

    /* Asked again at once, parking allowed: the issuer was fetched < 10 s ago. */
    fake_waiter_init(&w, 0);
    unsigned long fetches = e.fk.started;
    CHECK(rejected(authn(&e, tok, &w, &res), &res, NOT_IN_SET));
    fake_run(&e.fk);
    CHECK(e.fk.started == fetches && w.posts == 0);
    CHECK(fg_tokcache_size(e.cache) == 0);
    free(tok);
    env_end(&e);
}

static void parked_request_cancelled(void)
{
    struct env e;
    env_ready(&e, 1, jwks_k1);
    struct fake_waiter w, other;
    struct fg_authn_result res;
    fake_waiter_init(&w, 0);
    fake_waiter_init(&other, 0);
    char *tok = good(k2, "k2");
    CHECK(authn(&e, tok, &w, &res) == FG_AUTHN_PENDING);
    CHECK(authn(&e, tok, &other, &res) == FG_AUTHN_PENDING); /* joins the same fetch */
    fake_run(&e.fk);
    CHECK(e.fk.nfetches == 1);
    CHECK(fg_authn_cancel(&w.w) == 1);
    fake_answer0(&e.fk, 200, jwks_k1k2, NULL);
    CHECK(w.posts == 0 && other.posts == 1);
    free(tok);
    env_end(&e);
}

/*
 * A token without a kid whose algorithm no key in the set can verify (the
 * issuer moved from RS256 to ES256, say): jwtauthn.c's check_signature means
 * to treat it as an unknown key ("t->kid ? ... : pos == 0") and fetch, but
 * pos always ends at ks->n, so it is refused without a fetch.
 */
static void kidless_token_of_new_alg_parks(void)
{
    struct env e;
    env_ready(&e, 1, jwks_k1);
    struct fake_waiter w;
    struct fg_authn_result res;
    fake_waiter_init(&w, 0);
    char *tok = token(kec, FG_JWT_ES256, NULL, ISSUER, "alice", 3600);
    enum fg_authn_status st = authn(&e, tok, &w, &res);
    if (st != FG_AUTHN_PENDING)
        printf("#   got status %d \"%s\", want PENDING (a key fetch)\n", (int)st,
               res.reason ? res.reason : "");
    CHECK(st == FG_AUTHN_PENDING);
    fake_run(&e.fk);
    if (st == FG_AUTHN_PENDING && e.fk.nfetches == 1) {
        fake_answer0(&e.fk, 200, jwks_k1ec, NULL);
        CHECK(w.posts == 1);
        fake_waiter_init(&w, 1);
        CHECK(authn(&e, tok, &w, &res) == FG_AUTHN_OK);
        fg_identity_unref(res.identity);
    }
    free(tok);
    env_end(&e);
}

/* ---- before the first key set ---- */

static void no_keys_yet(void)
{
    struct env e;
    env_start(&e, 1);
    struct fake_waiter w;
    struct fg_authn_result res;
    char *tok = good(k1, "k1");
    CHECK(!fg_authn_ready(e.a));

    fake_waiter_init(&w, 1);
    CHECK(rejected(authn(&e, tok, &w, &res), &res,
                   "the issuer's signing keys are not available yet"));
    CHECK(w.w.cancel == NULL);

    fake_waiter_init(&w, 0);
    CHECK(authn(&e, tok, &w, &res) == FG_AUTHN_PENDING); /* waits for the start-up fetch */
    env_keys(&e, jwks_k1);
    CHECK(w.posts == 1 && w.status == FG_AUTHN_RETRY);
    CHECK(fg_authn_ready(e.a));
    CHECK(e.fk.started == 2); /* discovery and JWKS: no forced fetch */
    fake_waiter_init(&w, 1);
    CHECK(authn(&e, tok, &w, &res) == FG_AUTHN_OK);
    fg_identity_unref(res.identity);
    free(tok);
    env_end(&e);

    /* With require_ready off, the authenticator is ready at once. */
    struct fake fk;
    fake_init(&fk, 0);
    struct fg_jwt_cfg cfg = {0};
    struct fg_jwt_cfg *cfgs[] = {&cfg};
    cfg.issuer_url = (char *)ISSUER;
    cfg.username.claim = (char *)"sub";
    struct fg_authn *a = fg_jwtauthn_new("lazy", cfgs, 1, &fk.f, NULL, 0);
    CHECK(fg_authn_ready(a));
    fg_authn_unref(a);
    fake_drain(&fk);
}

int main(void)
{
    fg_log_set_level(FG_LOG_ERROR);
    k1 = tk_rsa(2048);
    k2 = tk_rsa(2048);
    kec = tk_ec("P-256");
    stranger = tk_rsa(2048);
    EVP_PKEY *s1[] = {k1}, *s12[] = {k1, k2}, *s2[] = {k2}, *s1ec[] = {k1, kec};
    const char *n1[] = {"k1"}, *n12[] = {"k1", "k2"}, *n2[] = {"k2"}, *n1ec[] = {"k1", "e1"};
    jwks_k1 = tk_jwks(s1, n1, 1);
    jwks_k1k2 = tk_jwks(s12, n12, 2);
    jwks_k2 = tk_jwks(s2, n2, 1);
    jwks_k1ec = tk_jwks(s1ec, n1ec, 2);
    struct fg_buf b = {0};
    fg_buf_printf(&b, "{\"issuer\":\"%s\",\"jwks_uri\":\"%s\"}", ISSUER, JWKS_URI);
    disco = fg_buf_take(&b);

    RUN(not_mine);
    RUN(valid_tokens_ok);
    RUN(refused_tokens);
    RUN(second_authenticate_is_a_cache_hit);
    RUN(cache_entries_per_authenticator);
    RUN(unknown_kid_parks_then_verifies);
    RUN(unknown_kid_still_unknown);
    RUN(parked_request_cancelled);
    RUN(kidless_token_of_new_alg_parks);
    RUN(no_keys_yet);

    fg_oidc_shutdown();
    free(jwks_k1);
    free(jwks_k1k2);
    free(jwks_k2);
    free(jwks_k1ec);
    free(disco);
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);
    EVP_PKEY_free(kec);
    EVP_PKEY_free(stranger);
    DONE();
}
