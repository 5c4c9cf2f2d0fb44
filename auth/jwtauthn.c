#include "jwtauthn.h"

#include "jwks.h"
#include "jwt.h"
#include "oidc.h"

#include <stdlib.h>
#include <string.h>

struct issuer {
    const struct fg_jwt_cfg *cfg;
    struct fg_oidc *oidc;
};

struct jwt_authn {
    struct fg_authn base;
    struct issuer *iss;
    size_t n;
    struct fg_tokcache *cache;
    char **audiences; /* every entry's audiences: part of the cache key */
    size_t naudiences;
    int require_ready;
};

static const struct issuer *issuer_of(const struct jwt_authn *j, const char *iss)
{
    for (size_t i = 0; iss && i < j->n; i++)
        if (strcmp(j->iss[i].cfg->issuer_url, iss) == 0)
            return &j->iss[i];
    return NULL;
}

/* Verifies t with the issuer's keys. 0, 1 (parked on a key fetch) or -1 with *why. */
static int check_signature(const struct issuer *is, const struct fg_jwt *t,
                           struct fg_authn_waiter *w, const char **why)
{
    struct fg_keyset *ks = fg_oidc_keys(is->oidc);
    int rc = -1;
    if (ks == NULL) {
        if (!w->no_park && fg_oidc_park(is->oidc, w, fg_now_ms()))
            return 1;
        *why = "the issuer's signing keys are not available yet";
        return -1;
    }
    size_t pos = 0, tried = 0;
    const struct fg_jwk *k;
    const char *last = "no key of the token's algorithm";
    while ((k = fg_keyset_next(ks, t->kid, t->alg, &pos)) != NULL) {
        tried++;
        if (fg_jwt_verify(t, k->pkey, &last) == 0) {
            rc = 0;
            break;
        }
    }
    if (rc != 0) {
        /* A kid we do not know, or (no kid) no key for its algorithm: maybe the issuer
         * rotated. A known key that does not verify is just a bad signature. */
        int unknown = t->kid ? !fg_keyset_has_kid(ks, t->kid) : tried == 0;
        if (unknown && !w->no_park && fg_oidc_park(is->oidc, w, fg_now_ms())) {
            rc = 1; /* maybe the issuer rotated: wait for its current keys */
        } else {
            *why = unknown ? "the signing key is not in the issuer's key set" : last;
        }
    }
    fg_keyset_unref(ks);
    return rc;
}

static enum fg_authn_status jwt_authenticate(struct fg_authn *a, const struct fg_credential *cred,
                                             struct fg_authn_result *res, struct fg_authn_waiter *w)
{
    struct jwt_authn *j = (struct jwt_authn *)a;
    if (cred->bearer == NULL || memchr(cred->bearer, '.', cred->bearer_len) == NULL)
        return FG_AUTHN_NOT_MINE; /* not even shaped like a JWT (an API key, say) */
    unsigned char key[FG_TOKCACHE_KEY];
    if (j->cache) {
        fg_tokcache_key(j->cache, a->name, cred->bearer, cred->bearer_len, j->audiences,
                        j->naudiences, key);
        res->identity = fg_tokcache_get_until(j->cache, key, fg_now_ms(), &res->reuse_until_ms);
        if (res->identity)
            return FG_AUTHN_OK;
    }
    struct fg_jwt t;
    const char *why = NULL;
    enum fg_jwt_parse_result pr = fg_jwt_parse(cred->bearer, cred->bearer_len, &t, &why);
    if (pr != FG_JWT_PARSED) {
        /* Not attributable to an issuer: someone else's, but say why for the log. */
        res->reason = pr == FG_JWT_INVALID ? why : NULL;
        return FG_AUTHN_NOT_MINE;
    }
    enum fg_authn_status st = FG_AUTHN_REJECTED;
    const struct issuer *is = issuer_of(j, t.iss);
    if (is == NULL) {
        res->reason = "the token's issuer is not configured"; /* a hint, if nobody takes it */
        st = FG_AUTHN_NOT_MINE;
        goto out;
    }
    int sig = check_signature(is, &t, w, &why);
    if (sig == 1) {
        st = FG_AUTHN_PENDING;
        goto out;
    }
    if (sig != 0) {
        res->reason = why;
        goto out;
    }
    int64_t exp = 0, now = fg_wall_s();
    struct fg_identity *id = fg_jwt_identity(&t, is->cfg, now, a->name, &exp, &why);
    if (id == NULL) {
        res->reason = why;
        goto out;
    }
    if (j->cache && exp > now) {
        uint64_t now_ms = fg_now_ms();
        res->reuse_until_ms =
            fg_tokcache_put(j->cache, key, id, now_ms + (uint64_t)(exp - now) * 1000, now_ms);
    }
    res->identity = id;
    st = FG_AUTHN_OK;
out:
    fg_jwt_clear(&t);
    return st;
}

static int jwt_ready(struct fg_authn *a)
{
    struct jwt_authn *j = (struct jwt_authn *)a;
    for (size_t i = 0; j->require_ready && i < j->n; i++)
        if (!fg_oidc_ready(j->iss[i].oidc))
            return 0;
    return 1;
}

static void jwt_free(struct fg_authn *a)
{
    struct jwt_authn *j = (struct jwt_authn *)a;
    for (size_t i = 0; i < j->n; i++)
        fg_oidc_release(j->iss[i].oidc);
    free(j->iss);
    free(j->audiences);
    free(a->name);
    free(j);
}

static const struct fg_authn_ops jwt_ops = {jwt_authenticate, jwt_free, jwt_ready};

struct fg_authn *fg_jwtauthn_new(const char *name, struct fg_jwt_cfg *const *cfgs, size_t n,
                                 struct fg_fetcher *f, struct fg_tokcache *cache, int require_ready)
{
    struct jwt_authn *j = fg_calloc(1, sizeof(*j));
    j->base.ops = &jwt_ops;
    j->base.name = fg_strdup(name);
    j->base.refs = 1;
    j->cache = cache;
    j->require_ready = require_ready;
    j->iss = fg_calloc(n, sizeof(struct issuer));
    size_t cap = 0;
    for (size_t i = 0; i < n; i++) {
        j->iss[i].cfg = cfgs[i];
        j->iss[i].oidc = fg_oidc_acquire(f, cfgs[i], name);
        for (size_t k = 0; k < cfgs[i]->naudiences; k++) {
            fg_grow(&j->audiences, &cap, j->naudiences + 1, sizeof(char *));
            j->audiences[j->naudiences++] = cfgs[i]->audiences[k];
        }
    }
    j->n = n;
    return &j->base;
}
