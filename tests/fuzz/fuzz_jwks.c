/*
 * libFuzzer: a fetched document as a JWKS (fg_keyset_parse) and as an OpenID Provider
 * configuration (fg_oidc_parse_discovery).
 *
 * Oracles, written apart from jwks.c and oidc.c; the document is read again with frontgate's
 * strict JSON parser (auth/json.c, not the jansson that jwks.c uses):
 *  - a key set has at least one key, keys + skipped = the entries of "keys", at most 256;
 *  - the keys come from the entries in order, each from an entry that is an object with "kty"
 *    RSA, EC or OKP, "use" absent or "sig", "kid" and "alg" absent or strings (kept as given),
 *    and each holds that entry's own material: RSA n and e (n of 2048 bits or more), EC x and y
 *    of the field size on P-256/384/521 (a point on the curve), Ed25519 x: no key of an
 *    unsupported type or curve;
 *  - fg_keyset_next hands out only keys that fit the algorithm (type, curve, the JWK's alg);
 *  - discovery yields the document's own jwks_uri, only when "issuer" is exactly the
 *    configured one and the URI is https:// or plain http to an exact loopback host.
 * A refusal always has a reason.
 */
#include "../../auth/jwks.h"
#include "../../auth/json.h"
#include "../../auth/oidc.h"

#include <openssl/core_names.h>
#include <openssl/obj_mac.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ISSUER "https://issuer.example"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Lenient base64url (RFC 4648 5, padding ignored): the decoded length, or -1. */
static long b64u(const char *s, unsigned char *out, size_t outsz)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned acc = 0, bits = 0;
    size_t o = 0;
    for (; *s && *s != '='; s++) {
        const char *p = strchr(abc, *s);
        if (p == NULL)
            return -1;
        acc = acc << 6 | (unsigned)(p - abc);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == outsz)
                return -1;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return (long)o;
}

/* The member as bytes without leading zeros (a big-endian integer), into out; its length. */
static long b64u_int(const struct fg_json *jwk, const char *name, unsigned char *out, size_t sz)
{
    const char *s = fg_json_string(fg_json_get(jwk, name), NULL);
    long n = s ? b64u(s, out, sz) : -1;
    long z = 0;
    while (z < n && out[z] == 0)
        z++;
    if (n > 0)
        memmove(out, out + z, (size_t)(n - z));
    return n < 0 ? -1 : n - z;
}

static int bn_is(EVP_PKEY *pk, const char *param, const unsigned char *want, long wlen)
{
    BIGNUM *bn = NULL;
    unsigned char got[1100];
    int ok = EVP_PKEY_get_bn_param(pk, param, &bn) == 1 && BN_num_bytes(bn) == wlen &&
             wlen <= (long)sizeof(got) && BN_bn2bin(bn, got) == wlen &&
             memcmp(got, want, (size_t)wlen) == 0;
    BN_free(bn);
    return ok;
}

/* OpenSSL's own public-key check: an EC point off its curve would verify forged signatures. */
static int on_curve(EVP_PKEY *pk)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
    int ok = ctx != NULL && EVP_PKEY_public_check(ctx) == 1;
    EVP_PKEY_CTX_free(ctx);
    return ok;
}

static const char *str_member(const struct fg_json *o, const char *k)
{
    return fg_json_string(fg_json_get(o, k), NULL);
}

static int same_opt(const char *a, const char *b)
{
    return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

/* 1 when key k was built from entry e. */
static int from_entry(const struct fg_jwk *k, const struct fg_json *e)
{
    const char *kty = str_member(e, "kty"), *use = str_member(e, "use");
    const struct fg_json *kid = fg_json_get(e, "kid"), *alg = fg_json_get(e, "alg");
    if (!fg_json_is(e, FG_JSON_OBJECT) || kty == NULL ||
        (fg_json_get(e, "use") != NULL && (use == NULL || strcmp(use, "sig") != 0)) ||
        (kid != NULL && !fg_json_is(kid, FG_JSON_STRING)) ||
        (alg != NULL && !fg_json_is(alg, FG_JSON_STRING)) ||
        !same_opt(k->kid, fg_json_string(kid, NULL)) ||
        !same_opt(k->alg, fg_json_string(alg, NULL)))
        return 0;
    unsigned char a[1100], b[1100];
    if (strcmp(kty, "RSA") == 0) {
        long n = b64u_int(e, "n", a, sizeof(a)), x = b64u_int(e, "e", b, sizeof(b));
        return k->type == FG_JWK_RSA && EVP_PKEY_get_base_id(k->pkey) == EVP_PKEY_RSA &&
               EVP_PKEY_get_bits(k->pkey) >= 2048 && n > 0 && x > 0 &&
               bn_is(k->pkey, OSSL_PKEY_PARAM_RSA_N, a, n) &&
               bn_is(k->pkey, OSSL_PKEY_PARAM_RSA_E, b, x);
    }
    if (strcmp(kty, "EC") == 0) {
        static const struct {
            const char *crv;
            int nid;
            long field;
        } curves[] = {{"P-256", NID_X9_62_prime256v1, 32},
                      {"P-384", NID_secp384r1, 48},
                      {"P-521", NID_secp521r1, 66}};
        const char *crv = str_member(e, "crv"), *x = str_member(e, "x"), *y = str_member(e, "y");
        size_t c = FG_ARRAY_LEN(curves), plen = 0;
        for (size_t i = 0; crv != NULL && i < FG_ARRAY_LEN(curves); i++)
            if (strcmp(crv, curves[i].crv) == 0)
                c = i;
        if (c == FG_ARRAY_LEN(curves) || x == NULL || y == NULL)
            return 0;
        a[0] = 4;
        if (b64u(x, a + 1, 200) != curves[c].field ||
            b64u(y, a + 1 + curves[c].field, 200) != curves[c].field)
            return 0;
        return k->type == FG_JWK_EC && k->curve_nid == curves[c].nid &&
               EVP_PKEY_get_base_id(k->pkey) == EVP_PKEY_EC &&
               EVP_PKEY_get_octet_string_param(k->pkey, OSSL_PKEY_PARAM_PUB_KEY, b, sizeof(b),
                                               &plen) == 1 &&
               plen == (size_t)(1 + 2 * curves[c].field) && memcmp(a, b, plen) == 0 &&
               on_curve(k->pkey);
    }
    if (strcmp(kty, "OKP") == 0) {
        const char *crv = str_member(e, "crv"), *x = str_member(e, "x");
        size_t len = sizeof(b);
        return k->type == FG_JWK_OKP && crv != NULL && strcmp(crv, "Ed25519") == 0 && x != NULL &&
               b64u(x, a, sizeof(a)) == 32 && EVP_PKEY_get_base_id(k->pkey) == EVP_PKEY_ED25519 &&
               EVP_PKEY_get_raw_public_key(k->pkey, b, &len) == 1 && len == 32 &&
               memcmp(a, b, 32) == 0;
    }
    return 0;
}

/* The key type and curve each algorithm needs, from RFC 7518 and RFC 8037. */
static int fits(const struct fg_jwk *k, enum fg_jwt_alg alg)
{
    static const struct {
        const char *name;
        enum fg_jwk_type type;
        int nid;
    } need[] = {
        [FG_JWT_RS256] = {"RS256", FG_JWK_RSA, 0},
        [FG_JWT_RS384] = {"RS384", FG_JWK_RSA, 0},
        [FG_JWT_RS512] = {"RS512", FG_JWK_RSA, 0},
        [FG_JWT_PS256] = {"PS256", FG_JWK_RSA, 0},
        [FG_JWT_PS384] = {"PS384", FG_JWK_RSA, 0},
        [FG_JWT_PS512] = {"PS512", FG_JWK_RSA, 0},
        [FG_JWT_ES256] = {"ES256", FG_JWK_EC, NID_X9_62_prime256v1},
        [FG_JWT_ES384] = {"ES384", FG_JWK_EC, NID_secp384r1},
        [FG_JWT_ES512] = {"ES512", FG_JWK_EC, NID_secp521r1},
        [FG_JWT_EDDSA] = {"EdDSA", FG_JWK_OKP, 0},
    };
    return k->type == need[alg].type && (need[alg].nid == 0 || k->curve_nid == need[alg].nid) &&
           (k->alg == NULL || strcmp(k->alg, need[alg].name) == 0);
}

static void check_keyset(const struct fg_keyset *ks, const struct fg_json *doc)
{
    const struct fg_json *entries = fg_json_get(doc, "keys");
    size_t j = 0;
    if (ks->n == 0 || ks->n + ks->skipped != fg_json_len(entries) || ks->n > 256 ||
        !fg_json_is(entries, FG_JSON_ARRAY))
        abort();
    /* Keys appear in entry order: match greedily on the material itself. */
    for (size_t i = 0; i < fg_json_len(entries) && j < ks->n; i++)
        if (from_entry(&ks->keys[j], fg_json_at(entries, i)))
            j++;
    if (j != ks->n)
        abort();
    for (int alg = FG_JWT_RS256; alg <= FG_JWT_EDDSA; alg++) {
        size_t pos = 0;
        const struct fg_jwk *k;
        while ((k = fg_keyset_next(ks, NULL, (enum fg_jwt_alg)alg, &pos)) != NULL)
            if (!fits(k, (enum fg_jwt_alg)alg))
                abort();
        pos = 0;
        if (ks->keys[0].kid != NULL)
            while ((k = fg_keyset_next(ks, ks->keys[0].kid, (enum fg_jwt_alg)alg, &pos)) != NULL)
                if (!fits(k, (enum fg_jwt_alg)alg) || strcmp(k->kid, ks->keys[0].kid) != 0)
                    abort();
    }
}

/* https://..., or http:// to 127.0.0.1, localhost or [::1] with an optional port and a path. */
static int fetchable(const char *u)
{
    static const char *const hosts[] = {"http://127.0.0.1", "http://localhost", "http://[::1]"};
    if (strncmp(u, "https://", 8) == 0)
        return 1;
    for (size_t i = 0; i < FG_ARRAY_LEN(hosts); i++) {
        size_t n = strlen(hosts[i]);
        if (strncasecmp(u, hosts[i], n) != 0 || strncmp(u, "http://", 7) != 0)
            continue;
        const char *p = u + n;
        if (*p == ':') {
            unsigned long port = 0;
            int digits = 0;
            for (p++; *p >= '0' && *p <= '9' && digits < 6; p++, digits++)
                port = port * 10 + (unsigned long)(*p - '0');
            if (digits == 0 || port == 0 || port > 65535)
                return 0;
        }
        return *p == '\0' || *p == '/';
    }
    return 0;
}

static void check_discovery(const struct fg_json *doc, const char *uri)
{
    const char *iss = str_member(doc, "issuer"), *jwks = str_member(doc, "jwks_uri");
    int want = fg_json_is(doc, FG_JSON_OBJECT) && iss != NULL && strcmp(iss, ISSUER) == 0 &&
               jwks != NULL && fetchable(jwks);
    if (want != (uri != NULL) || (uri != NULL && strcmp(uri, jwks) != 0))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data, *why = NULL, *jwhy = NULL;
    struct fg_json_doc *doc = NULL;
    int strict = fg_json_parse(text, size, 64, &doc, &jwhy) == FG_JSON_OK;

    struct fg_keyset *ks = fg_keyset_parse(text, size, &why);
    if (ks == NULL && why == NULL)
        abort();
    if (ks != NULL && strict)
        check_keyset(ks, fg_json_root(doc));
    fg_keyset_unref(ks);

    why = NULL;
    char *uri = fg_oidc_parse_discovery(text, size, ISSUER, &why);
    if (uri == NULL && why == NULL)
        abort();
    if (strict)
        check_discovery(fg_json_root(doc), uri);
    free(uri);
    fg_json_free(doc);
    return 0;
}
