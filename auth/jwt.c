/*
 * jwt.c - JWS compact tokens: strict parsing, EVP signature verification and
 * kube's claim checks and mappings (contract in jwt.h).
 *
 * What counts as a JWT: a token is JWT-shaped when it has exactly three (or
 * five, JWE) '.'-separated segments and its first segment is base64url text
 * (at least two alphabet characters, at most two trailing '=') whose first
 * decoded byte is '{', i.e. it opens a JSON object. Anything else (an API key,
 * a bootstrap token, random junk) is FG_JWT_NOT_JWT so other authenticators
 * may try it. Every defect of a JWT-shaped token, including '=' padding and
 * bad characters in later segments, is FG_JWT_INVALID.
 */
#include "jwt.h"

#include <limits.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define CREDENTIAL_ID_KEY "authentication.kubernetes.io/credential-id"
#define DECODED_MAX       (FG_JWT_MAX_BYTES / 4 * 3)
#define ECDSA_DER_MAX     160 /* DER of a P-521 signature is at most 141 bytes */

enum digest { SHA256, SHA384, SHA512, NO_DIGEST };

static const struct alg_info {
    const char *name;
    enum fg_jwk_type kty;
    int curve;      /* EC only: the curve's NID */
    enum digest md; /* EdDSA hashes internally */
    int pss;
    size_t sig_half; /* EC only: bytes of r (and of s) in the raw signature */
} algs[] = {
    [FG_JWT_RS256] = {"RS256", FG_JWK_RSA, 0, SHA256, 0, 0},
    [FG_JWT_RS384] = {"RS384", FG_JWK_RSA, 0, SHA384, 0, 0},
    [FG_JWT_RS512] = {"RS512", FG_JWK_RSA, 0, SHA512, 0, 0},
    [FG_JWT_PS256] = {"PS256", FG_JWK_RSA, 0, SHA256, 1, 0},
    [FG_JWT_PS384] = {"PS384", FG_JWK_RSA, 0, SHA384, 1, 0},
    [FG_JWT_PS512] = {"PS512", FG_JWK_RSA, 0, SHA512, 1, 0},
    [FG_JWT_ES256] = {"ES256", FG_JWK_EC, NID_X9_62_prime256v1, SHA256, 0, 32},
    [FG_JWT_ES384] = {"ES384", FG_JWK_EC, NID_secp384r1, SHA384, 0, 48},
    [FG_JWT_ES512] = {"ES512", FG_JWK_EC, NID_secp521r1, SHA512, 0, 66},
    [FG_JWT_EDDSA] = {"EdDSA", FG_JWK_OKP, 0, NO_DIGEST, 0, 0},
};

/*
 * Per-thread caches, because the request path repeats two costly steps on the
 * same inputs:
 * - the header: an issuer's tokens share a handful of headers, so the last
 *   header segment that passed the header checks is kept with its parsed
 *   document, shared read-only by (atomic) reference: a token keeps its
 *   header alive wherever it is cleared, and the thread's exit only drops the
 *   cache's reference (tokens from other issuers simply parse);
 * - verification contexts for the last few (key, alg) pairs: with OpenSSL 3.0
 *   a new EVP_PKEY_CTX costs a provider fetch, about a fifth of an RSA-2048
 *   verification. A cached context holds a reference on its key, so the key
 *   cannot be freed (and its address reused by another key) while cached.
 * Entries are released when replaced and when their thread exits.
 */
#define NCTX           4
#define HEADER_SEG_MAX 512

struct vctx {
    EVP_PKEY *key;
    const struct alg_info *alg;
    EVP_PKEY_CTX *ctx;
    uint64_t used;
};

struct tcache {
    struct vctx vctxs[NCTX];
    uint64_t clock;
    struct fg_json_doc *header;
    size_t header_len;
    char header_seg[HEADER_SEG_MAX];
};

static __thread struct tcache tc;
static pthread_key_t tc_key;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
/* Fetched once: an implicit fetch per verification costs a locked lookup. */
static EVP_MD *digests[NO_DIGEST];

static void drop_vctx(struct vctx *v)
{
    EVP_PKEY_CTX_free(v->ctx);
    memset(v, 0, sizeof(*v));
}

static void drop_tcache(void *p)
{
    struct tcache *c = p;

    for (int i = 0; i < NCTX; i++)
        drop_vctx(&c->vctxs[i]);
    fg_json_free(c->header);
    c->header = NULL;
    c->header_len = 0;
}

static void init(void)
{
    digests[SHA256] = EVP_MD_fetch(NULL, "SHA2-256", NULL);
    digests[SHA384] = EVP_MD_fetch(NULL, "SHA2-384", NULL);
    digests[SHA512] = EVP_MD_fetch(NULL, "SHA2-512", NULL);
    if (pthread_key_create(&tc_key, drop_tcache) != 0)
        abort();
}

/* Called before this thread caches anything: its cache is released when it exits. */
static void arm_tcache(void)
{
    pthread_once(&init_once, init);
    pthread_setspecific(tc_key, &tc);
}

/* ---- base64url ---- */

/* base64url digit values of bytes; -1 for bytes outside the alphabet. */
static const signed char b64vals[256] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, /* 0x00 */
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, /* 0x10 */
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62, -1, -1, /* 0x20 '-' */
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -1, -1, -1, /* 0x30 0-9 */
    -1, 0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, /* 0x40 A-O */
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, -1, -1, -1, -1, 63, /* 0x50 P-Z '_' */
    -1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, /* 0x60 a-o */
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, -1, -1, -1, -1, -1, /* 0x70 p-z */
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, /* 0x80 */
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, /* 0x90 */
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, /* 0xa0 */
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, /* 0xb0 */
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, /* 0xc0 */
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, /* 0xd0 */
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, /* 0xe0 */
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, /* 0xf0 */
};

static int b64val(unsigned char c)
{
    return b64vals[c];
}

/* Four characters as 24 bits, or -1 when one is outside the alphabet. */
static int32_t b64quad(const unsigned char *s)
{
    int32_t a = b64vals[s[0]], b = b64vals[s[1]], c = b64vals[s[2]], d = b64vals[s[3]];

    return (a | b | c | d) < 0 ? -1 : a << 18 | b << 12 | c << 6 | d;
}

/* Whole quads first (the claims and the signature of every token pass here), then the tail. */
long fg_b64url_decode(const char *in, size_t len, unsigned char *out, size_t outsz)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t rem = len % 4, n = len / 4 * 3 + (rem ? rem - 1 : 0), o = 0, i = 0;
    uint32_t acc = 0;
    int ok = rem != 1 && n <= outsz && n <= LONG_MAX;

    for (; ok && i + 4 <= len; i += 4, o += 3) {
        int32_t v = b64quad(s + i);
        ok = v >= 0;
        out[o] = (unsigned char)(v >> 16);
        out[o + 1] = (unsigned char)(v >> 8);
        out[o + 2] = (unsigned char)v;
    }
    for (; ok && i < len; i++) {
        int v = b64val(s[i]);
        ok = v >= 0;
        acc = acc << 6 | (uint32_t)(v & 63);
    }
    /* The unused low bits of the last character must be zero: one encoding per value. */
    if (ok && rem == 2) {
        ok = (acc & 0xf) == 0;
        out[o++] = (unsigned char)(acc >> 4);
    } else if (ok && rem == 3) {
        ok = (acc & 0x3) == 0;
        out[o++] = (unsigned char)(acc >> 10);
        out[o++] = (unsigned char)(acc >> 2);
    }
    return ok ? (long)o : -1;
}

size_t fg_b64url_encode(const unsigned char *in, size_t len, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t i = 0, o = 0;

    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = abc[v >> 18];
        out[o++] = abc[(v >> 12) & 63];
        out[o++] = abc[(v >> 6) & 63];
        out[o++] = abc[v & 63];
    }
    if (len - i == 1) {
        out[o++] = abc[in[i] >> 2];
        out[o++] = abc[(in[i] & 3) << 4];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 8 | in[i + 1];
        out[o++] = abc[v >> 10];
        out[o++] = abc[(v >> 4) & 63];
        out[o++] = abc[(v << 2) & 63];
    }
    out[o] = '\0';
    return o;
}

/* ---- parsing ---- */

struct segs {
    const char *p[5];
    size_t len[5];
    int n;
};

/* Splits at '.' into at most five segments; 0 when there are more. */
static int split(const char *tok, size_t len, struct segs *s)
{
    const char *p = tok, *end = tok + len, *dot;

    s->n = 0;
    while (s->n < 5) {
        dot = memchr(p, '.', (size_t)(end - p));
        s->p[s->n] = p;
        s->len[s->n++] = (size_t)((dot ? dot : end) - p);
        if (dot == NULL)
            return 1;
        p = dot + 1;
    }
    return 0;
}

/* The rule in this file's opening comment. */
static int jwt_shaped(const char *tok, size_t len, struct segs *s)
{
    size_t n;
    int ok = split(tok, len, s) && (s->n == 3 || s->n == 5);

    n = ok ? s->len[0] : 0;
    for (int pad = 0; pad < 2 && n > 0 && s->p[0][n - 1] == '='; pad++)
        n--;
    ok = ok && n >= 2 && n % 4 != 1;
    for (size_t i = 0; ok && i < n; i++)
        ok = b64val((unsigned char)s->p[0][i]) >= 0;
    return ok &&
           (b64val((unsigned char)s->p[0][0]) << 2 | b64val((unsigned char)s->p[0][1]) >> 4) == '{';
}

/* Decodes segment seg and parses it as a JSON object; NULL with *why otherwise. */
static struct fg_json_doc *load_segment(const char *seg, size_t len, int claims, const char **why)
{
    unsigned char buf[DECODED_MAX];
    long n = fg_b64url_decode(seg, len, buf, sizeof(buf));
    struct fg_json_doc *doc = NULL;
    enum fg_json_status st = FG_JSON_INVALID;
    const char *json_why;

    if (n >= 0)
        st = fg_json_parse((const char *)buf, (size_t)n, FG_JWT_MAX_DEPTH, &doc, &json_why);
    if (st == FG_JSON_OK && !fg_json_is(fg_json_root(doc), FG_JSON_OBJECT)) {
        fg_json_free(doc);
        doc = NULL;
        st = FG_JSON_INVALID;
    }
    if (n < 0)
        *why = claims ? "token claims are not canonical base64url"
                      : "token header is not canonical base64url";
    else if (st == FG_JSON_TOO_DEEP)
        *why = claims ? "token claims are nested too deeply" : "token header is nested too deeply";
    else if (st != FG_JSON_OK)
        *why = claims ? "token claims are not a JSON object" : "token header is not a JSON object";
    return doc;
}

static int alg_by_name(const char *name, enum fg_jwt_alg *alg)
{
    int rc = -1;

    for (size_t i = 0; rc < 0 && i < FG_ARRAY_LEN(algs); i++) {
        if (strcmp(algs[i].name, name) == 0) {
            *alg = (enum fg_jwt_alg)i;
            rc = 0;
        }
    }
    return rc;
}

static int check_header(struct fg_jwt *t, const char **why)
{
    const struct fg_json *h = fg_json_root(t->header), *kid = fg_json_get(h, "kid");
    const char *alg = fg_json_string(fg_json_get(h, "alg"), NULL);
    int rc = -1;

    if (alg == NULL)
        *why = "token alg missing or not a string";
    else if (strcmp(alg, "none") == 0)
        *why = "unsigned tokens (alg none) are not accepted";
    else if (strncmp(alg, "HS", 2) == 0)
        *why = "HMAC tokens (HS*) are not accepted";
    else if (alg_by_name(alg, &t->alg) < 0)
        *why = "unsupported token alg";
    else if (fg_json_get(h, "crit") != NULL)
        *why = "critical token header extensions are not supported";
    else if (kid != NULL && !fg_json_is(kid, FG_JSON_STRING))
        *why = "token kid is not a string";
    else
        rc = 0;
    t->kid = fg_json_string(kid, NULL);
    return rc;
}

/* The header for segment seg: this thread's cached one, or freshly loaded. */
static struct fg_json_doc *get_header(const char *seg, size_t len, const char **why)
{
    if (tc.header != NULL && len == tc.header_len && memcmp(seg, tc.header_seg, len) == 0)
        return fg_json_ref(tc.header);
    return load_segment(seg, len, 0, why);
}

static void keep_header(const char *seg, size_t len, struct fg_json_doc *header)
{
    if (header != tc.header && len <= sizeof(tc.header_seg)) {
        arm_tcache();
        fg_json_free(tc.header);
        tc.header = fg_json_ref(header);
        memcpy(tc.header_seg, seg, len);
        tc.header_len = len;
    }
}

static int decode_sig(struct fg_jwt *t, const char *seg, size_t len, const char **why)
{
    size_t cap = len / 4 * 3 + 2;
    long n;
    int rc = -1;

    if (len == 0) {
        *why = "token has no signature";
    } else {
        t->sig = fg_malloc(cap);
        n = fg_b64url_decode(seg, len, t->sig, cap);
        if (n < 0) {
            *why = "token signature is not canonical base64url";
        } else {
            t->sig_len = (size_t)n;
            rc = 0;
        }
    }
    return rc;
}

/* Header, claims and signature of a three-segment token into t; the caller clears t on -1. */
static int parse_segments(struct fg_jwt *t, const struct segs *s, const char **why)
{
    const struct fg_json *iss;
    int rc = -1;

    t->header = get_header(s->p[0], s->len[0], why);
    if (t->header != NULL && check_header(t, why) == 0) {
        keep_header(s->p[0], s->len[0], t->header);
        t->claims = load_segment(s->p[1], s->len[1], 1, why);
    }
    if (t->claims != NULL && decode_sig(t, s->p[2], s->len[2], why) == 0) {
        iss = fg_json_get(fg_json_root(t->claims), "iss");
        t->iss = fg_json_string(iss, NULL);
        if (iss != NULL && t->iss == NULL)
            *why = "token iss is not a string";
        else
            rc = 0;
    }
    return rc;
}

enum fg_jwt_parse_result fg_jwt_parse(const char *tok, size_t len, struct fg_jwt *out,
                                      const char **why)
{
    enum fg_jwt_parse_result r = FG_JWT_INVALID;
    struct segs s;

    memset(out, 0, sizeof(*out));
    if (len > FG_JWT_MAX_BYTES) {
        *why = "token too large";
    } else if (!jwt_shaped(tok, len, &s)) {
        *why = "not a JWT";
        r = FG_JWT_NOT_JWT;
    } else if (s.n == 5) {
        *why = "encrypted tokens (JWE) are not supported";
    } else if (parse_segments(out, &s, why) == 0) {
        out->signing_input = tok;
        out->signing_len = s.len[0] + 1 + s.len[1];
        r = FG_JWT_PARSED;
    }
    if (r != FG_JWT_PARSED)
        fg_jwt_clear(out);
    return r;
}

void fg_jwt_clear(struct fg_jwt *t)
{
    fg_json_free(t->header);
    fg_json_free(t->claims);
    if (t->sig != NULL)
        OPENSSL_cleanse(t->sig, t->sig_len);
    free(t->sig);
    memset(t, 0, sizeof(*t));
}

enum fg_jwk_type fg_jwt_alg_key_type(enum fg_jwt_alg alg, int *curve_nid)
{
    if (curve_nid != NULL)
        *curve_nid = algs[alg].curve;
    return algs[alg].kty;
}

const char *fg_jwt_alg_name(enum fg_jwt_alg alg)
{
    return (size_t)alg < FG_ARRAY_LEN(algs) ? algs[alg].name : "unknown";
}

/* ---- verification ---- */

static int ec_curve(EVP_PKEY *key)
{
    char name[64];
    int nid = NID_undef;

    if (EVP_PKEY_get_group_name(key, name, sizeof(name), NULL) == 1) {
        nid = OBJ_sn2nid(name);
        if (nid == NID_undef)
            nid = EC_curve_nist2nid(name);
    }
    return nid;
}

static int key_fits(const struct alg_info *a, EVP_PKEY *key)
{
    switch (a->kty) {
    case FG_JWK_RSA:
        return EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA;
    case FG_JWK_EC:
        return EVP_PKEY_get_base_id(key) == EVP_PKEY_EC && ec_curve(key) == a->curve;
    case FG_JWK_OKP:
        return EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519;
    }
    return 0;
}

static int sig_len_fits(const struct alg_info *a, EVP_PKEY *key, size_t len)
{
    switch (a->kty) {
    case FG_JWK_RSA:
        return len == (size_t)EVP_PKEY_get_size(key);
    case FG_JWK_EC:
        return len == 2 * a->sig_half;
    case FG_JWK_OKP:
        return len == 64;
    }
    return 0;
}

/* Converts raw r||s (JWS) to DER (OpenSSL); the DER length, or 0. */
static size_t ecdsa_der(const unsigned char *raw, size_t half, unsigned char *der, size_t dersz)
{
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, (int)half, NULL), *s = BN_bin2bn(raw + half, (int)half, NULL);
    unsigned char *p = der;
    size_t n = 0;

    if (sig != NULL && r != NULL && s != NULL && ECDSA_SIG_set0(sig, r, s) == 1) {
        r = s = NULL; /* now owned by sig */
        int len = i2d_ECDSA_SIG(sig, NULL);
        if (len > 0 && (size_t)len <= dersz)
            n = (size_t)i2d_ECDSA_SIG(sig, &p);
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return n;
}

static EVP_PKEY_CTX *new_vctx(const struct alg_info *a, EVP_PKEY *key)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
    int ok = ctx != NULL && digests[a->md] != NULL && EVP_PKEY_verify_init(ctx) == 1 &&
             EVP_PKEY_CTX_set_signature_md(ctx, digests[a->md]) == 1;

    if (ok && a->kty == FG_JWK_RSA)
        ok = EVP_PKEY_CTX_set_rsa_padding(ctx, a->pss ? RSA_PKCS1_PSS_PADDING
                                                      : RSA_PKCS1_PADDING) == 1 &&
             (!a->pss || EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST) == 1);
    if (!ok) {
        EVP_PKEY_CTX_free(ctx);
        ctx = NULL;
    }
    return ctx;
}

/* This thread's context for (a, key): cached, or made in the least recently used slot. */
static struct vctx *get_vctx(const struct alg_info *a, EVP_PKEY *key)
{
    struct vctx *v = NULL, *lru = &tc.vctxs[0];

    for (int i = 0; i < NCTX && v == NULL; i++) {
        if (tc.vctxs[i].key == key && tc.vctxs[i].alg == a)
            v = &tc.vctxs[i];
        else if (tc.vctxs[i].used < lru->used)
            lru = &tc.vctxs[i];
    }
    if (v == NULL) {
        v = lru;
        drop_vctx(v);
        if ((v->ctx = new_vctx(a, key)) != NULL) {
            v->key = key;
            v->alg = a;
        }
    }
    v->used = ++tc.clock;
    return v;
}

/* Hash, then verify the digest with a cached context (RSA and ECDSA). */
static int digest_verify(const struct alg_info *a, EVP_PKEY *key, const unsigned char *sig,
                         size_t sig_len, const struct fg_jwt *t)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    struct vctx *v = get_vctx(a, key);
    int rc = -1;

    if (v->ctx != NULL &&
        EVP_Digest(t->signing_input, t->signing_len, md, &md_len, digests[a->md], NULL) == 1)
        rc = EVP_PKEY_verify(v->ctx, sig, sig_len, md, md_len);
    /* A mismatch (0) leaves the context reusable; after an error start afresh. */
    if (rc < 0)
        drop_vctx(v);
    return rc == 1;
}

/* Ed25519 signs the message itself: one-shot, no digest. */
static int eddsa_verify(EVP_PKEY *key, const unsigned char *sig, size_t sig_len,
                        const struct fg_jwt *t)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key) == 1 &&
             EVP_DigestVerify(ctx, sig, sig_len, (const unsigned char *)t->signing_input,
                              t->signing_len) == 1;

    EVP_MD_CTX_free(ctx);
    return ok;
}

static int evp_verify(const struct alg_info *a, EVP_PKEY *key, const unsigned char *sig,
                      size_t sig_len, const struct fg_jwt *t)
{
    arm_tcache();
    return a->md == NO_DIGEST ? eddsa_verify(key, sig, sig_len, t)
                              : digest_verify(a, key, sig, sig_len, t);
}

int fg_jwt_verify(const struct fg_jwt *t, EVP_PKEY *key, const char **why)
{
    const struct alg_info *a = &algs[t->alg];
    unsigned char der[ECDSA_DER_MAX];
    size_t sig_len = t->sig_len;
    int rc = -1;

    if (!key_fits(a, key))
        *why = "key type or curve does not fit the token alg";
    else if (!sig_len_fits(a, key, t->sig_len))
        *why = "token signature has the wrong length";
    else if (a->kty == FG_JWK_EC &&
             (sig_len = ecdsa_der(t->sig, a->sig_half, der, sizeof(der))) == 0)
        *why = "token signature is malformed";
    else if (!evp_verify(a, key, a->kty == FG_JWK_EC ? der : t->sig, sig_len, t))
        *why = "token signature does not verify";
    else
        rc = 0;
    if (rc < 0)
        ERR_clear_error();
    return rc;
}

/* ---- claims ---- */

/* A string claim, or an array claim, seen as a list of values. */
static size_t nvalues(const struct fg_json *v)
{
    return fg_json_is(v, FG_JSON_ARRAY) ? fg_json_len(v) : 1;
}

static const char *value_at(const struct fg_json *v, size_t i)
{
    return fg_json_string(fg_json_is(v, FG_JSON_ARRAY) ? fg_json_at(v, i) : v, NULL);
}

/* True for a string or an array of strings. */
static int is_strings(const struct fg_json *v)
{
    int arr = fg_json_is(v, FG_JSON_ARRAY), ok = arr || fg_json_is(v, FG_JSON_STRING);

    for (size_t i = 0; ok && arr && i < fg_json_len(v); i++)
        ok = fg_json_is(fg_json_at(v, i), FG_JSON_STRING);
    return ok;
}

/* v < t for a JSON number; fractional seconds compare as such. */
static int num_before(const struct fg_json *v, int64_t t)
{
    return fg_json_is(v, FG_JSON_INT) ? fg_json_int(v) < t : fg_json_real(v) < (double)t;
}

static int check_issuer(const struct fg_jwt *t, const struct fg_jwt_cfg *cfg, const char **why)
{
    /* go-oidc accepts Google's scheme-less issuer for https://accounts.google.com. */
    int google = t->iss != NULL && strcmp(t->iss, "accounts.google.com") == 0 &&
                 strcmp(cfg->issuer_url, "https://accounts.google.com") == 0;
    int ok = t->iss != NULL && (strcmp(t->iss, cfg->issuer_url) == 0 || google);

    if (!ok)
        *why = "token issuer does not match";
    return ok ? 0 : -1;
}

/*
 * Registered claims go-oidc unmarshals into typed fields, so a token whose field does not fit is
 * refused before any claim is read: iat is a NumericDate (RFC 7519 4.1.6; null fails there too),
 * sub, nonce and at_hash are strings (4.1.2; null leaves a Go string empty, so it passes).
 */
static int check_types(const struct fg_json *c, const char **why)
{
    static const struct {
        const char *claim, *why;
    } strings[] = {
        {"sub", "token sub is not a string"},
        {"nonce", "token nonce is not a string"},
        {"at_hash", "token at_hash is not a string"},
    };
    const struct fg_json *iat = fg_json_get(c, "iat");
    int rc = 0;

    if (iat != NULL && !fg_json_is_number(iat)) {
        *why = "token iat is not a number";
        rc = -1;
    }
    for (size_t i = 0; rc == 0 && i < FG_ARRAY_LEN(strings); i++) {
        const struct fg_json *v = fg_json_get(c, strings[i].claim);
        if (v != NULL && !fg_json_is(v, FG_JSON_STRING) && !fg_json_is(v, FG_JSON_NULL)) {
            *why = strings[i].why;
            rc = -1;
        }
    }
    return rc;
}

static int check_time(const struct fg_json *c, int64_t now, int64_t *exp, const char **why)
{
    const struct fg_json *e = fg_json_get(c, "exp"), *nbf = fg_json_get(c, "nbf");
    int64_t late = now > INT64_MAX - FG_JWT_NBF_LEEWAY ? INT64_MAX : now + FG_JWT_NBF_LEEWAY;
    int rc = -1;

    if (exp != NULL)
        fg_json_seconds(e, exp); /* left alone when e is not a number */
    if (!fg_json_is_number(e))
        *why = "token exp missing or not a number";
    else if (num_before(e, now))
        *why = "token expired";
    else if (nbf != NULL && !fg_json_is(nbf, FG_JSON_NULL) && !fg_json_is_number(nbf))
        *why = "token nbf is not a number";
    else if (fg_json_is(nbf, FG_JSON_REAL) && (double)late < fg_json_real(nbf))
        *why = "token not valid yet";
    else if (fg_json_is(nbf, FG_JSON_INT) && late < fg_json_int(nbf))
        *why = "token not valid yet";
    else
        rc = 0;
    return rc;
}

static int check_aud(const struct fg_json *c, const struct fg_jwt_cfg *cfg, const char **why)
{
    const struct fg_json *aud = fg_json_get(c, "aud");
    int typed = aud == NULL || is_strings(aud), match = 0;

    for (size_t i = 0; aud != NULL && typed && !match && i < nvalues(aud); i++)
        for (size_t j = 0; !match && j < cfg->naudiences; j++)
            match = strcmp(value_at(aud, i), cfg->audiences[j]) == 0;
    if (!match)
        *why = typed ? "token audience does not match" : "token aud has the wrong type";
    return match ? 0 : -1;
}

/* claimValidationRules of the claim form: the claim is a string equal to the required value. */
static int check_rules(const struct fg_json *c, const struct fg_jwt_cfg *cfg, const char **why)
{
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < cfg->nrules; i++) {
        const struct fg_json *v = fg_json_get(c, cfg->rules[i].claim);
        rc = -1;
        if (v == NULL)
            *why = "required claim missing";
        else if (!fg_json_is(v, FG_JSON_STRING))
            *why = "required claim is not a string";
        else if (strcmp(fg_json_string(v, NULL), cfg->rules[i].required_value) != 0)
            *why = "required claim has the wrong value";
        else
            rc = 0;
    }
    return rc;
}

/* prefix + v, in tmp when a prefix is set. */
static const char *prefixed(struct fg_buf *tmp, const char *prefix, const char *v)
{
    if (prefix == NULL || *prefix == '\0')
        return v;
    fg_buf_reset(tmp);
    fg_buf_adds(tmp, prefix);
    fg_buf_adds(tmp, v);
    return tmp->data;
}

static int map_groups(struct fg_identity *id, const struct fg_json *c, const struct fg_jwt_cfg *cfg,
                      struct fg_buf *tmp, const char **why)
{
    const struct fg_json *v = cfg->groups.claim ? fg_json_get(c, cfg->groups.claim) : NULL;
    int ok = v == NULL || is_strings(v);

    if (!ok)
        *why = "groups claim has the wrong type";
    /* Empty strings stay, prefixed, as kube's claim form keeps them. */
    for (size_t i = 0; ok && v != NULL && i < nvalues(v); i++)
        fg_identity_add_group(id, prefixed(tmp, cfg->groups.prefix, value_at(v, i)));
    return ok ? 0 : -1;
}

static int map_uid(struct fg_identity *id, const struct fg_json *c, const struct fg_jwt_cfg *cfg,
                   const char **why)
{
    const struct fg_json *v = cfg->uid.claim ? fg_json_get(c, cfg->uid.claim) : NULL;
    int ok = v == NULL || fg_json_is(v, FG_JSON_STRING);
    size_t len = 0;
    const char *uid = fg_json_string(v, &len);

    if (!ok)
        *why = "uid claim is not a string";
    else if (len > 0)
        fg_identity_set_uid(id, uid);
    return ok ? 0 : -1;
}

/* Extra mappings are CEL expressions in kube: null and "" mean absent. */
static int map_extra(struct fg_identity *id, const struct fg_json *c, const struct fg_jwt_cfg *cfg,
                     const char **why)
{
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < cfg->nextra; i++) {
        const struct fg_json *v = fg_json_get(c, cfg->extra[i].claim);
        if (v == NULL || fg_json_is(v, FG_JSON_NULL))
            continue;
        if (!is_strings(v)) {
            *why = "extra claim has the wrong type";
            rc = -1;
        }
        for (size_t j = 0; rc == 0 && j < nvalues(v); j++)
            if (*value_at(v, j) != '\0')
                fg_identity_add_extra(id, cfg->extra[i].key, value_at(v, j));
    }
    return rc;
}

static void map_jti(struct fg_identity *id, const struct fg_json *c, struct fg_buf *tmp)
{
    const char *jti = fg_json_string(fg_json_get(c, "jti"), NULL);

    if (jti != NULL && *jti != '\0')
        fg_identity_add_extra(id, CREDENTIAL_ID_KEY, prefixed(tmp, "JTI=", jti));
}

/* kube's getUsername: with claim "email", a present email_verified must be true. */
static int email_verified(const struct fg_json *c, const struct fg_jwt_cfg *cfg)
{
    const struct fg_json *v = fg_json_get(c, "email_verified");

    return strcmp(cfg->username.claim, "email") != 0 || v == NULL || fg_json_is(v, FG_JSON_TRUE);
}

static struct fg_identity *map_identity(const struct fg_json *c, const struct fg_jwt_cfg *cfg,
                                        const char *authn, struct fg_buf *tmp, const char **why)
{
    const char *user = fg_json_string(fg_json_get(c, cfg->username.claim), NULL);
    struct fg_identity *id = NULL;

    if (user == NULL)
        *why = "username claim missing or not a string";
    else if (*user == '\0')
        *why = "username claim is empty";
    else if (!email_verified(c, cfg))
        *why = "email not verified";
    else {
        id = fg_identity_new(prefixed(tmp, cfg->username.prefix, user), authn);
        if (map_groups(id, c, cfg, tmp, why) < 0 || map_uid(id, c, cfg, why) < 0 ||
            map_extra(id, c, cfg, why) < 0) {
            fg_identity_unref(id);
            id = NULL;
        } else {
            map_jti(id, c, tmp);
        }
    }
    return id;
}

struct fg_identity *fg_jwt_identity(const struct fg_jwt *t, const struct fg_jwt_cfg *cfg,
                                    int64_t now, const char *authn, int64_t *exp, const char **why)
{
    const struct fg_json *c = fg_json_root(t->claims);
    struct fg_identity *id = NULL;
    struct fg_buf tmp = {0};

    if (check_issuer(t, cfg, why) == 0 && check_types(c, why) == 0 &&
        check_time(c, now, exp, why) == 0 && check_aud(c, cfg, why) == 0 &&
        check_rules(c, cfg, why) == 0)
        id = map_identity(c, cfg, authn, &tmp, why);
    fg_buf_free(&tmp);
    return id;
}
