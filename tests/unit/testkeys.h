/*
 * testkeys.h - keys, JWKs and signed tokens made on the spot with OpenSSL,
 * for the tests of auth/jwks, auth/oidc and auth/jwtauthn (and the JWT
 * benchmark). Header-only: each user includes it once.
 */
#ifndef FG_TESTKEYS_H
#define FG_TESTKEYS_H

#include "auth/jwt.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <stdlib.h>
#include <string.h>

static inline EVP_PKEY *tk_rsa(unsigned bits)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
    if (k == NULL)
        abort();
    return k;
}

/* curve: "P-256", "P-384", "P-521". */
static inline EVP_PKEY *tk_ec(const char *curve)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);
    if (k == NULL)
        abort();
    return k;
}

static inline EVP_PKEY *tk_ed25519(void)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (k == NULL)
        abort();
    return k;
}

static inline void tk_add_b64(struct fg_buf *b, const void *p, size_t n)
{
    char *enc = fg_malloc(n / 3 * 4 + 5);
    fg_buf_add(b, enc, fg_b64url_encode(p, n, enc));
    free(enc);
}

static inline void tk_add_bn(struct fg_buf *b, EVP_PKEY *k, const char *param, size_t pad)
{
    BIGNUM *bn = NULL;
    unsigned char raw[1024];
    if (EVP_PKEY_get_bn_param(k, param, &bn) != 1)
        abort();
    int n = pad ? BN_bn2binpad(bn, raw, (int)pad) : BN_bn2bin(bn, raw);
    if (n <= 0)
        abort();
    tk_add_b64(b, raw, (size_t)n);
    BN_free(bn);
}

static inline const char *tk_crv(EVP_PKEY *k)
{
    switch (EVP_PKEY_get_bits(k)) {
    case 256:
        return "P-256";
    case 384:
        return "P-384";
    default:
        return "P-521";
    }
}

/* The public-key members of k's JWK, without braces: "kty":...,"n":... */
static inline void tk_jwk_members(struct fg_buf *b, EVP_PKEY *k)
{
    if (EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA) {
        fg_buf_adds(b, "\"kty\":\"RSA\",\"n\":\"");
        tk_add_bn(b, k, OSSL_PKEY_PARAM_RSA_N, 0);
        fg_buf_adds(b, "\",\"e\":\"");
        tk_add_bn(b, k, OSSL_PKEY_PARAM_RSA_E, 0);
        fg_buf_adds(b, "\"");
    } else if (EVP_PKEY_get_base_id(k) == EVP_PKEY_EC) {
        size_t field = ((size_t)EVP_PKEY_get_bits(k) + 7) / 8;
        fg_buf_printf(b, "\"kty\":\"EC\",\"crv\":\"%s\",\"x\":\"", tk_crv(k));
        tk_add_bn(b, k, OSSL_PKEY_PARAM_EC_PUB_X, field);
        fg_buf_adds(b, "\",\"y\":\"");
        tk_add_bn(b, k, OSSL_PKEY_PARAM_EC_PUB_Y, field);
        fg_buf_adds(b, "\"");
    } else {
        unsigned char raw[32];
        size_t n = sizeof(raw);
        if (EVP_PKEY_get_raw_public_key(k, raw, &n) != 1)
            abort();
        fg_buf_adds(b, "\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"");
        tk_add_b64(b, raw, n);
        fg_buf_adds(b, "\"");
    }
}

/* Appends k's public JWK: {"kid":kid (when not NULL), <extra members>, key members}. */
static inline void tk_jwk(struct fg_buf *b, EVP_PKEY *k, const char *kid, const char *extra)
{
    fg_buf_addc(b, '{');
    if (kid != NULL)
        fg_buf_printf(b, "\"kid\":\"%s\",", kid);
    if (extra != NULL)
        fg_buf_printf(b, "%s,", extra);
    tk_jwk_members(b, k);
    fg_buf_addc(b, '}');
}

/* A JWKS of n keys with kids[i] (NULL: no kid). Caller frees. */
static inline char *tk_jwks(EVP_PKEY *const *keys, const char *const *kids, size_t n)
{
    struct fg_buf b = {0};
    fg_buf_adds(&b, "{\"keys\":[");
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            fg_buf_addc(&b, ',');
        tk_jwk(&b, keys[i], kids[i], NULL);
    }
    fg_buf_adds(&b, "]}");
    return fg_buf_take(&b);
}

static inline const EVP_MD *tk_md(enum fg_jwt_alg alg)
{
    static const char *const names[] = {"SHA256", "SHA384", "SHA512"};
    return alg == FG_JWT_EDDSA ? NULL : EVP_get_digestbyname(names[alg % 3]);
}

/* Signs in with key as alg wants, in JWS form (ECDSA as raw r||s). */
static inline void tk_add_sig(struct fg_buf *b, enum fg_jwt_alg alg, EVP_PKEY *key, const char *in,
                              size_t len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    unsigned char sig[1024], raw[132];
    size_t n = sizeof(sig);

    if (EVP_DigestSignInit(ctx, &pctx, tk_md(alg), NULL, key) != 1)
        abort();
    if (alg >= FG_JWT_PS256 && alg <= FG_JWT_PS512) {
        EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
        EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
    }
    if (EVP_DigestSign(ctx, sig, &n, (const unsigned char *)in, len) != 1)
        abort();
    if (alg >= FG_JWT_ES256 && alg <= FG_JWT_ES512) {
        int half = alg == FG_JWT_ES256 ? 32 : alg == FG_JWT_ES384 ? 48 : 66;
        const unsigned char *p = sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)n);
        BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, half);
        BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + half, half);
        ECDSA_SIG_free(es);
        tk_add_b64(b, raw, (size_t)(2 * half));
    } else {
        tk_add_b64(b, sig, n);
    }
    EVP_MD_CTX_free(ctx);
}

/* A compact JWS of header and claims (JSON text) signed with key. Caller frees. */
static inline char *tk_mint(const char *header, const char *claims, enum fg_jwt_alg alg,
                            EVP_PKEY *key)
{
    struct fg_buf b = {0};
    tk_add_b64(&b, header, strlen(header));
    fg_buf_addc(&b, '.');
    tk_add_b64(&b, claims, strlen(claims));
    size_t input_len = b.len;
    fg_buf_addc(&b, '.');
    tk_add_sig(&b, alg, key, b.data, input_len);
    return fg_buf_take(&b);
}

/* A JWS header {"alg":...,"typ":"JWT"[,"kid":kid]} in buf. */
static inline const char *tk_header(char *buf, size_t n, enum fg_jwt_alg alg, const char *kid)
{
    if (kid != NULL)
        snprintf(buf, n, "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"%s\"}", fg_jwt_alg_name(alg),
                 kid);
    else
        snprintf(buf, n, "{\"alg\":\"%s\",\"typ\":\"JWT\"}", fg_jwt_alg_name(alg));
    return buf;
}

#endif
