#include "mint.h"

#include "../config/config.h"
#include "jwt.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_SLOTS 1024 /* direct-mapped: a collision just mints again */

/*
 * Every public key an issuer has signed with, with when it last signed: a
 * key stays in the JWKS while a token it signed may still be alive.
 */
struct hkey {
    struct hkey *next;
    char kid[48];
    char *jwk;         /* the public JWK, JSON text */
    int64_t last_used; /* Unix seconds; 0 = never */
    int refs;
};

struct issuer_hist {
    struct issuer_hist *next;
    char *issuer;
    uint64_t ttl_s;
    struct hkey *keys;
};

static pthread_mutex_t hist_lock = PTHREAD_MUTEX_INITIALIZER;
static struct issuer_hist *hists;

struct slot {
    unsigned char who[32]; /* SHA-256 of the claims that depend on the identity */
    char *token;
    int64_t expires;
};

struct fg_mint {
    char *issuer, *audience, *path;
    uint64_t ttl_s;
    EVP_PKEY *key;
    int es256;
    struct hkey *hk;
    struct issuer_hist *hist;
    pthread_mutex_t lock; /* guards cache */
    struct slot cache[CACHE_SLOTS];
};

/* ---- keys ----------------------------------------------------------------- */

static void b64_bn(struct fg_buf *b, const BIGNUM *bn, int pad)
{
    unsigned char raw[1024];
    int n = pad ? BN_bn2binpad(bn, raw, pad) : BN_bn2bin(bn, raw);
    char out[1400];
    size_t len = fg_b64url_encode(raw, (size_t)n, out);
    fg_buf_add(b, out, len);
}

/* The RFC 7638 members of the public key, in the thumbprint's canonical order. */
static int canonical_jwk(EVP_PKEY *key, int es256, struct fg_buf *b)
{
    BIGNUM *x = NULL, *y = NULL;
    int rc = -1;
    if (es256) {
        if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &x) == 1 &&
            EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &y) == 1) {
            fg_buf_adds(b, "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"");
            b64_bn(b, x, 32);
            fg_buf_adds(b, "\",\"y\":\"");
            b64_bn(b, y, 32);
            fg_buf_adds(b, "\"}");
            rc = 0;
        }
    } else if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_E, &x) == 1 &&
               EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &y) == 1) {
        fg_buf_adds(b, "{\"e\":\"");
        b64_bn(b, x, 0);
        fg_buf_adds(b, "\",\"kty\":\"RSA\",\"n\":\"");
        b64_bn(b, y, 0);
        fg_buf_adds(b, "\"}");
        rc = 0;
    }
    BN_free(x);
    BN_free(y);
    return rc;
}

static const char *load_key(struct fg_mint *m, const char *path)
{
    FILE *f = fg_file_check(path) == 0 ? fopen(path, "r") : NULL;
    if (f == NULL)
        return fg_file_reason(errno);
    m->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (m->key == NULL)
        return "not a PEM private key";
    if (EVP_PKEY_is_a(m->key, "RSA")) {
        if (EVP_PKEY_get_bits(m->key) < 2048)
            return "RSA keys must have at least 2048 bits";
    } else if (EVP_PKEY_is_a(m->key, "EC")) {
        char group[32];
        size_t gl;
        if (EVP_PKEY_get_utf8_string_param(m->key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                           &gl) != 1 ||
            strcmp(group, "prime256v1") != 0)
            return "EC keys must be on P-256 (ES256)";
        m->es256 = 1;
    } else {
        return "the key must be RSA (RS256) or EC P-256 (ES256)";
    }
    return NULL;
}

/* Registers the key with its issuer's history (shared across reloads). */
static void register_key(struct fg_mint *m, const char *canon)
{
    unsigned char h[32];
    char kid[48];
    fg_sha256(canon, strlen(canon), h);
    fg_b64url_encode(h, sizeof(h), kid);
    struct fg_buf jwk = {0};
    fg_buf_add(&jwk, canon, strlen(canon) - 1); /* drop '}' to add members */
    fg_buf_printf(&jwk, ",\"kid\":\"%s\",\"use\":\"sig\",\"alg\":\"%s\"}", kid,
                  m->es256 ? "ES256" : "RS256");
    pthread_mutex_lock(&hist_lock);
    struct issuer_hist *ih;
    for (ih = hists; ih && strcmp(ih->issuer, m->issuer) != 0; ih = ih->next)
        ;
    if (ih == NULL) {
        ih = fg_calloc(1, sizeof(*ih));
        ih->issuer = fg_strdup(m->issuer);
        ih->next = hists;
        hists = ih;
    }
    if (m->ttl_s > ih->ttl_s)
        ih->ttl_s = m->ttl_s;
    struct hkey *k;
    for (k = ih->keys; k && strcmp(k->kid, kid) != 0; k = k->next)
        ;
    if (k == NULL) {
        k = fg_calloc(1, sizeof(*k));
        memcpy(k->kid, kid, sizeof(kid));
        k->jwk = fg_buf_take(&jwk);
        k->next = ih->keys;
        ih->keys = k;
    }
    k->refs++;
    m->hk = k;
    m->hist = ih;
    pthread_mutex_unlock(&hist_lock);
    fg_buf_free(&jwk);
}

struct fg_mint *fg_mint_new(const char *issuer, const char *audience, uint64_t ttl_s,
                            const char *key_file, struct fg_errs *errs, const char *file, int line,
                            int col)
{
    struct fg_mint *m = fg_calloc(1, sizeof(*m));
    m->issuer = fg_strdup(issuer);
    m->audience = fg_strdup(audience);
    m->ttl_s = ttl_s;
    const char *hostpart = strstr(issuer, "://");
    const char *slash = hostpart ? strchr(hostpart + 3, '/') : NULL;
    size_t pl = slash ? strlen(slash) : 0;
    while (pl > 0 && slash[pl - 1] == '/')
        pl--;
    m->path = slash ? fg_strndup(slash, pl) : fg_strdup("");
    pthread_mutex_init(&m->lock, NULL);
    const char *why = load_key(m, key_file);
    struct fg_buf canon = {0};
    if (why == NULL && canonical_jwk(m->key, m->es256, &canon) != 0)
        why = "cannot read the public key";
    if (why) {
        fg_errs_add(errs, file, line, col, "%s: cannot load mint.keyFile: %s", key_file, why);
        fg_buf_free(&canon);
        fg_mint_free(m);
        return NULL;
    }
    register_key(m, canon.data);
    fg_buf_free(&canon);
    return m;
}

/* Drops keys nobody signs with and whose tokens have all expired. Locked. */
static void prune(struct issuer_hist *ih, int64_t now)
{
    for (struct hkey **pp = &ih->keys; *pp;) {
        struct hkey *k = *pp;
        if (k->refs == 0 && k->last_used + (int64_t)ih->ttl_s < now) {
            *pp = k->next;
            free(k->jwk);
            free(k);
        } else {
            pp = &k->next;
        }
    }
}

void fg_mint_free(struct fg_mint *m)
{
    if (m == NULL)
        return;
    if (m->hk) {
        pthread_mutex_lock(&hist_lock);
        m->hk->refs--;
        prune(m->hist, fg_wall_s());
        pthread_mutex_unlock(&hist_lock);
    }
    for (size_t i = 0; i < CACHE_SLOTS; i++) {
        if (m->cache[i].token) {
            OPENSSL_cleanse(m->cache[i].token, strlen(m->cache[i].token));
            free(m->cache[i].token);
        }
    }
    EVP_PKEY_free(m->key);
    pthread_mutex_destroy(&m->lock);
    free(m->issuer);
    free(m->audience);
    free(m->path);
    free(m);
}

void fg_mint_shutdown(void)
{
    pthread_mutex_lock(&hist_lock);
    while (hists) {
        struct issuer_hist *ih = hists;
        hists = ih->next;
        while (ih->keys) {
            struct hkey *k = ih->keys;
            ih->keys = k->next;
            free(k->jwk);
            free(k);
        }
        free(ih->issuer);
        free(ih);
    }
    pthread_mutex_unlock(&hist_lock);
}

/* ---- tokens --------------------------------------------------------------- */

/* ECDSA signatures come out DER; JWS wants r||s, 32 bytes each for P-256. */
static int der_to_raw(const unsigned char *der, size_t len, unsigned char raw[64])
{
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &der, (long)len);
    if (sig == NULL)
        return -1;
    const BIGNUM *r, *s;
    ECDSA_SIG_get0(sig, &r, &s);
    int ok = BN_bn2binpad(r, raw, 32) == 32 && BN_bn2binpad(s, raw + 32, 32) == 32;
    ECDSA_SIG_free(sig);
    return ok ? 0 : -1;
}

static char *sign(struct fg_mint *m, const char *claims)
{
    struct fg_buf tok = {0};
    char enc[2048];
    char header[160];
    snprintf(header, sizeof(header), "{\"alg\":\"%s\",\"kid\":\"%s\",\"typ\":\"JWT\"}",
             m->es256 ? "ES256" : "RS256", m->hk->kid);
    fg_buf_add(&tok, enc, fg_b64url_encode((const unsigned char *)header, strlen(header), enc));
    fg_buf_addc(&tok, '.');
    size_t cl = strlen(claims);
    char *cenc = fg_malloc(cl * 4 / 3 + 8);
    fg_buf_add(&tok, cenc, fg_b64url_encode((const unsigned char *)claims, cl, cenc));
    free(cenc);
    unsigned char sig[512];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, m->key) == 1 &&
             EVP_DigestSign(md, sig, &siglen, (const unsigned char *)tok.data, tok.len) == 1;
    EVP_MD_CTX_free(md);
    unsigned char raw[64];
    if (ok && m->es256) {
        ok = der_to_raw(sig, siglen, raw) == 0;
        memcpy(sig, raw, sizeof(raw));
        siglen = sizeof(raw);
    }
    if (!ok) {
        fg_buf_free(&tok);
        return NULL;
    }
    fg_buf_addc(&tok, '.');
    fg_buf_add(&tok, enc, fg_b64url_encode(sig, siglen, enc));
    return fg_buf_take(&tok);
}

/* What the minted claims depend on: user and groups, NUL-separated. */
static void identity_digest(const struct fg_identity *id, unsigned char out[32])
{
    struct fg_buf b = {0};
    fg_buf_add(&b, id->user, strlen(id->user) + 1);
    for (size_t i = 0; i < id->ngroups; i++)
        fg_buf_add(&b, id->groups[i], strlen(id->groups[i]) + 1);
    fg_sha256(b.data, b.len, out);
    fg_buf_free(&b);
}

char *fg_mint_token(struct fg_mint *m, const struct fg_identity *id, int64_t now)
{
    unsigned char who[32];
    identity_digest(id, who);
    uint32_t idx;
    memcpy(&idx, who, sizeof(idx));
    struct slot *sl = &m->cache[idx % CACHE_SLOTS];
    char *out = NULL;
    pthread_mutex_lock(&m->lock);
    if (sl->token && memcmp(sl->who, who, 32) == 0 && sl->expires - now > (int64_t)(m->ttl_s / 5))
        out = fg_strdup(sl->token);
    pthread_mutex_unlock(&m->lock);
    if (out)
        return out;
    unsigned char jti[12];
    fg_random(jti, sizeof(jti));
    char jtis[24];
    fg_b64url_encode(jti, sizeof(jti), jtis);
    json_t *groups = json_array();
    for (size_t i = 0; i < id->ngroups; i++)
        json_array_append_new(groups, json_string(id->groups[i]));
    json_t *c =
        json_pack("{s:s, s:s, s:s, s:o, s:I, s:I, s:I, s:s}", "iss", m->issuer, "sub", id->user,
                  "aud", m->audience, "groups", groups, "iat", (json_int_t)now, "nbf",
                  (json_int_t)now, "exp", (json_int_t)(now + (int64_t)m->ttl_s), "jti", jtis);
    char *claims = json_dumps(c, JSON_COMPACT);
    json_decref(c);
    out = claims ? sign(m, claims) : NULL;
    free(claims);
    if (out == NULL)
        return NULL;
    __atomic_store_n(&m->hk->last_used, now, __ATOMIC_RELAXED);
    pthread_mutex_lock(&m->lock);
    if (sl->token) {
        OPENSSL_cleanse(sl->token, strlen(sl->token));
        free(sl->token);
    }
    memcpy(sl->who, who, 32);
    sl->token = fg_strdup(out);
    sl->expires = now + (int64_t)m->ttl_s;
    pthread_mutex_unlock(&m->lock);
    return out;
}

/* ---- publishing ----------------------------------------------------------- */

const char *fg_mint_issuer_path(const struct fg_mint *m)
{
    return m->path;
}

void fg_mint_discovery(const struct fg_mint *m, struct fg_buf *b)
{
    size_t il = strlen(m->issuer);
    while (il > 0 && m->issuer[il - 1] == '/')
        il--;
    struct fg_buf u = {0};
    fg_buf_add(&u, m->issuer, il);
    fg_buf_adds(&u, "/jwks");
    json_t *d =
        json_pack("{s:s, s:s, s:[s], s:[s], s:[s]}", "issuer", m->issuer, "jwks_uri", u.data,
                  "id_token_signing_alg_values_supported", m->es256 ? "ES256" : "RS256",
                  "response_types_supported", "id_token", "subject_types_supported", "public");
    fg_buf_free(&u);
    char *text = json_dumps(d, JSON_COMPACT);
    fg_buf_adds(b, text);
    fg_buf_addc(b, '\n');
    free(text);
    json_decref(d);
}

void fg_mint_jwks(const struct fg_mint *m, int64_t now, struct fg_buf *b)
{
    int first = 1;
    fg_buf_adds(b, "{\"keys\":[");
    pthread_mutex_lock(&hist_lock);
    for (struct hkey *k = m->hist->keys; k; k = k->next) {
        int64_t used = __atomic_load_n(&k->last_used, __ATOMIC_RELAXED);
        if (k != m->hk && (used == 0 || used + (int64_t)m->hist->ttl_s < now))
            continue; /* retired, and every token it signed has expired */
        if (!first)
            fg_buf_addc(b, ',');
        fg_buf_adds(b, k->jwk);
        first = 0;
    }
    pthread_mutex_unlock(&hist_lock);
    fg_buf_adds(b, "]}\n");
}
