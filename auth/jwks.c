#include "jwks.h"

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <stdlib.h>
#include <string.h>

#define MIN_RSA_BITS 2048
#define MAX_KEYS     256

/* A base64url member decoded into buf; returns its length or -1. */
static long member_bytes(json_t *jwk, const char *name, unsigned char *buf, size_t bufsz)
{
    const char *s = json_string_value(json_object_get(jwk, name));
    if (s == NULL)
        return -1;
    return fg_b64url_decode(s, strlen(s), buf, bufsz);
}

static EVP_PKEY *from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *pkey = NULL;
    if (params && ctx && EVP_PKEY_fromdata_init(ctx) == 1)
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

static EVP_PKEY *rsa_key(json_t *jwk)
{
    unsigned char n[1024], e[16];
    long nl = member_bytes(jwk, "n", n, sizeof(n)), el = member_bytes(jwk, "e", e, sizeof(e));
    if (nl <= 0 || el <= 0)
        return NULL;
    BIGNUM *bn = BN_bin2bn(n, (int)nl, NULL), *be = BN_bin2bn(e, (int)el, NULL);
    EVP_PKEY *pkey = NULL;
    if (bn && be && BN_num_bits(bn) >= MIN_RSA_BITS && BN_is_odd(be)) {
        OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn);
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be);
        pkey = from_params("RSA", bld);
        OSSL_PARAM_BLD_free(bld);
    }
    BN_free(bn);
    BN_free(be);
    return pkey;
}

static EVP_PKEY *ec_key(json_t *jwk, int *nid)
{
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    const char *group;
    size_t field;
    if (crv && strcmp(crv, "P-256") == 0)
        group = "prime256v1", field = 32, *nid = NID_X9_62_prime256v1;
    else if (crv && strcmp(crv, "P-384") == 0)
        group = "secp384r1", field = 48, *nid = NID_secp384r1;
    else if (crv && strcmp(crv, "P-521") == 0)
        group = "secp521r1", field = 66, *nid = NID_secp521r1;
    else
        return NULL;
    unsigned char x[66], y[66], point[1 + 2 * 66];
    long xl = member_bytes(jwk, "x", x, sizeof(x)), yl = member_bytes(jwk, "y", y, sizeof(y));
    if (xl != (long)field || yl != (long)field)
        return NULL; /* RFC 7518: coordinates are exactly the field size */
    point[0] = 0x04;
    memcpy(point + 1, x, field);
    memcpy(point + 1 + field, y, field);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * field);
    EVP_PKEY *pkey = from_params("EC", bld);
    OSSL_PARAM_BLD_free(bld);
    if (pkey) {
        /* A point off the curve would make every signature check meaningless. */
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        int ok = ctx && EVP_PKEY_public_check(ctx) == 1;
        EVP_PKEY_CTX_free(ctx);
        if (!ok) {
            EVP_PKEY_free(pkey);
            pkey = NULL;
        }
    }
    return pkey;
}

static EVP_PKEY *okp_key(json_t *jwk)
{
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    unsigned char x[32];
    if (crv == NULL || strcmp(crv, "Ed25519") != 0 || member_bytes(jwk, "x", x, sizeof(x)) != 32)
        return NULL;
    return EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x, sizeof(x));
}

/* Builds k from one JWK; 0 when usable. */
static int parse_key(json_t *jwk, struct fg_jwk *k)
{
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    json_t *usev = json_object_get(jwk, "use");
    const char *use = json_string_value(usev);
    json_t *kid = json_object_get(jwk, "kid"), *alg = json_object_get(jwk, "alg");
    if (!json_is_object(jwk) || kty == NULL || (usev && !json_is_string(usev)) ||
        (use && strcmp(use, "sig") != 0))
        return -1; /* like go-jose: a malformed "use" makes the key unusable */
    if ((kid && !json_is_string(kid)) || (alg && !json_is_string(alg)))
        return -1;
    memset(k, 0, sizeof(*k));
    if (strcmp(kty, "RSA") == 0) {
        k->type = FG_JWK_RSA;
        k->pkey = rsa_key(jwk);
    } else if (strcmp(kty, "EC") == 0) {
        k->type = FG_JWK_EC;
        k->pkey = ec_key(jwk, &k->curve_nid);
    } else if (strcmp(kty, "OKP") == 0) {
        k->type = FG_JWK_OKP;
        k->pkey = okp_key(jwk);
    }
    if (k->pkey == NULL)
        return -1;
    k->kid = kid ? fg_strdup(json_string_value(kid)) : NULL;
    k->alg = alg ? fg_strdup(json_string_value(alg)) : NULL;
    return 0;
}

struct fg_keyset *fg_keyset_parse(const char *json, size_t len, const char **why)
{
    json_error_t jerr;
    json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *keys = json_object_get(doc, "keys");
    struct fg_keyset *ks = NULL;
    if (!json_is_array(keys)) {
        *why = "not a JWKS document (no \"keys\" array)";
        goto out;
    }
    size_t count = json_array_size(keys);
    if (count > MAX_KEYS) {
        *why = "too many keys in the JWKS";
        goto out;
    }
    ks = fg_calloc(1, sizeof(*ks));
    ks->refs = 1;
    ks->keys = fg_calloc(count ? count : 1, sizeof(struct fg_jwk));
    for (size_t i = 0; i < count; i++) {
        if (parse_key(json_array_get(keys, i), &ks->keys[ks->n]) == 0)
            ks->n++;
        else
            ks->skipped++;
    }
    if (ks->n == 0) {
        *why = "the JWKS has no usable signing key";
        fg_keyset_unref(ks);
        ks = NULL;
        goto out;
    }
    unsigned char h[32];
    fg_sha256(json, len, h);
    for (int i = 0; i < 8; i++)
        snprintf(ks->digest + 2 * i, 3, "%02x", h[i]);
out:
    json_decref(doc);
    return ks;
}

struct fg_keyset *fg_keyset_ref(struct fg_keyset *ks)
{
    __atomic_add_fetch(&ks->refs, 1, __ATOMIC_RELAXED);
    return ks;
}

void fg_keyset_unref(struct fg_keyset *ks)
{
    if (ks == NULL || __atomic_sub_fetch(&ks->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    for (size_t i = 0; i < ks->n; i++) {
        EVP_PKEY_free(ks->keys[i].pkey);
        free(ks->keys[i].kid);
        free(ks->keys[i].alg);
    }
    free(ks->keys);
    free(ks);
}

static int fits(const struct fg_jwk *k, enum fg_jwt_alg alg)
{
    int nid = 0;
    if (fg_jwt_alg_key_type(alg, &nid) != k->type)
        return 0;
    if (k->type == FG_JWK_EC && nid != k->curve_nid)
        return 0;
    return k->alg == NULL || strcmp(k->alg, fg_jwt_alg_name(alg)) == 0;
}

const struct fg_jwk *fg_keyset_next(const struct fg_keyset *ks, const char *kid,
                                    enum fg_jwt_alg alg, size_t *pos)
{
    while (*pos < ks->n) {
        const struct fg_jwk *k = &ks->keys[(*pos)++];
        if (kid && (k->kid == NULL || strcmp(k->kid, kid) != 0))
            continue;
        if (fits(k, alg))
            return k;
    }
    return NULL;
}

int fg_keyset_has_kid(const struct fg_keyset *ks, const char *kid)
{
    for (size_t i = 0; i < ks->n; i++)
        if (ks->keys[i].kid && strcmp(ks->keys[i].kid, kid) == 0)
            return 1;
    return 0;
}
