/*
 * test_jwks.c - JWK sets (auth/jwks.h): every accepted key type from keys
 * made here and exported as raw JWK parameters, every skipped or refused
 * key, documents that are not key sets, key selection by kid, alg and
 * curve, and reference counting.
 */
#include "t.h"

#include "auth/jwks.h"
#include "testkeys.h"

#include <stdlib.h>

enum { RSA2048, RSA3072, RSA1024, EC256, EC384, EC521, ED, NKEYS };
static EVP_PKEY *keys[NKEYS];

static void make_keys(void)
{
    keys[RSA2048] = tk_rsa(2048);
    keys[RSA3072] = tk_rsa(3072);
    keys[RSA1024] = tk_rsa(1024);
    keys[EC256] = tk_ec("P-256");
    keys[EC384] = tk_ec("P-384");
    keys[EC521] = tk_ec("P-521");
    keys[ED] = tk_ed25519();
}

/* {"keys":[<jwks>]} parsed; *why receives the refusal. */
static struct fg_keyset *parse(const char *members, const char **why)
{
    struct fg_buf b = {0};
    fg_buf_printf(&b, "{\"keys\":[%s]}", members);
    *why = NULL;
    struct fg_keyset *ks = fg_keyset_parse(b.data, b.len, why);
    fg_buf_free(&b);
    return ks;
}

static char *jwk(int k, const char *kid, const char *extra)
{
    struct fg_buf b = {0};
    tk_jwk(&b, keys[k], kid, extra);
    return fg_buf_take(&b);
}

/* A one-key set of keys[k] (plus extra members): parsed, or NULL. */
static struct fg_keyset *one(int k, const char *kid, const char *extra, const char **why)
{
    char *j = jwk(k, kid, extra);
    struct fg_keyset *ks = parse(j, why);
    free(j);
    return ks;
}

/* A JWK whose members are given as text. */
static struct fg_keyset *raw(const char *jwk_text, const char **why)
{
    return parse(jwk_text, why);
}

/* why is read after ks is made: the caller's argument order does not matter. */
static int refused(struct fg_keyset *ks, const char *const *whyp, const char *want)
{
    const char *why = *whyp;
    int ok = ks == NULL && why != NULL && strcmp(why, want) == 0;
    if (!ok)
        printf("#   want refusal \"%s\", got %s \"%s\"\n", want, ks ? "a key set" : "refusal",
               why ? why : "");
    fg_keyset_unref(ks);
    return ok;
}

#define NO_USABLE "the JWKS has no usable signing key"
#define NOT_JWKS  "not a JWKS document (no \"keys\" array)"

/* The base64url of keys[k]'s coordinate param, padded to pad bytes, changed by edit. */
static char *coord(int k, const char *param, size_t pad, int edit)
{
    unsigned char buf[80];
    BIGNUM *bn = NULL;
    EVP_PKEY_get_bn_param(keys[k], param, &bn);
    BN_bn2binpad(bn, buf + 1, (int)pad);
    BN_free(bn);
    buf[0] = 0;
    size_t n = pad;
    const unsigned char *p = buf + 1;
    if (edit == 1)
        buf[pad] ^= 1; /* flip the last bit: another number */
    else if (edit == 2)
        n--, p++; /* one byte short */
    else if (edit == 3)
        n++, p = buf; /* one leading zero byte too many */
    struct fg_buf b = {0};
    tk_add_b64(&b, p, n);
    return fg_buf_take(&b);
}

static struct fg_keyset *ec_with(int k, const char *crv, size_t field, int xedit, int yedit,
                                 const char **why)
{
    char *x = coord(k, OSSL_PKEY_PARAM_EC_PUB_X, field, xedit);
    char *y = coord(k, OSSL_PKEY_PARAM_EC_PUB_Y, field, yedit);
    struct fg_buf b = {0};
    fg_buf_printf(&b, "{\"kty\":\"EC\",\"crv\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"}", crv, x, y);
    struct fg_keyset *ks = raw(b.data, why);
    fg_buf_free(&b);
    free(x);
    free(y);
    return ks;
}

/* ---- accepted keys ---- */

static void rsa_parses(void)
{
    const char *why;
    for (int k = RSA2048; k <= RSA3072; k++) {
        struct fg_keyset *ks = one(k, "r1", NULL, &why);
        CHECK(ks != NULL);
        if (ks == NULL)
            continue;
        CHECK(ks->n == 1 && ks->skipped == 0);
        CHECK(ks->keys[0].type == FG_JWK_RSA);
        CHECK_STR(ks->keys[0].kid, "r1");
        CHECK(ks->keys[0].alg == NULL);
        CHECK(EVP_PKEY_eq(ks->keys[0].pkey, keys[k]) == 1);
        CHECK(EVP_PKEY_get_bits(ks->keys[0].pkey) == (k == RSA2048 ? 2048 : 3072));
        CHECK(strlen(ks->digest) == 16 && strspn(ks->digest, "0123456789abcdef") == 16);
        fg_keyset_unref(ks);
    }
}

static void ec_curves_parse(void)
{
    static const struct {
        int k;
        int nid;
    } cases[] = {{EC256, NID_X9_62_prime256v1}, {EC384, NID_secp384r1}, {EC521, NID_secp521r1}};
    for (size_t i = 0; i < FG_ARRAY_LEN(cases); i++) {
        const char *why;
        struct fg_keyset *ks = one(cases[i].k, "e1", NULL, &why);
        CHECK(ks != NULL);
        if (ks == NULL) {
            printf("#   %s: %s\n", tk_crv(keys[cases[i].k]), why);
            continue;
        }
        CHECK(ks->n == 1);
        CHECK(ks->keys[0].type == FG_JWK_EC);
        CHECK(ks->keys[0].curve_nid == cases[i].nid);
        CHECK(EVP_PKEY_eq(ks->keys[0].pkey, keys[cases[i].k]) == 1);
        fg_keyset_unref(ks);
    }
}

static void ed25519_parses(void)
{
    const char *why;
    struct fg_keyset *ks = one(ED, NULL, NULL, &why);
    CHECK(ks != NULL && ks->n == 1);
    if (ks != NULL) {
        CHECK(ks->keys[0].type == FG_JWK_OKP);
        CHECK(ks->keys[0].kid == NULL);
        CHECK(EVP_PKEY_eq(ks->keys[0].pkey, keys[ED]) == 1);
    }
    fg_keyset_unref(ks);
}

/* A parsed key verifies what its private half signed. */
static void parsed_keys_verify_tokens(void)
{
    static const struct {
        int k;
        enum fg_jwt_alg alg;
    } cases[] = {{RSA2048, FG_JWT_RS256}, {RSA2048, FG_JWT_PS384}, {EC256, FG_JWT_ES256},
                 {EC384, FG_JWT_ES384},   {EC521, FG_JWT_ES512},   {ED, FG_JWT_EDDSA}};
    for (size_t i = 0; i < FG_ARRAY_LEN(cases); i++) {
        const char *why;
        char hdr[128];
        struct fg_keyset *ks = one(cases[i].k, "k", NULL, &why);
        char *tok = tk_mint(tk_header(hdr, sizeof(hdr), cases[i].alg, "k"), "{\"sub\":\"a\"}",
                            cases[i].alg, keys[cases[i].k]);
        struct fg_jwt t;
        CHECK(ks != NULL && fg_jwt_parse(tok, strlen(tok), &t, &why) == FG_JWT_PARSED);
        size_t pos = 0;
        const struct fg_jwk *k = ks ? fg_keyset_next(ks, t.kid, t.alg, &pos) : NULL;
        CHECK(k != NULL && fg_jwt_verify(&t, k->pkey, &why) == 0);
        fg_jwt_clear(&t);
        free(tok);
        fg_keyset_unref(ks);
    }
}

static void use_sig_kept_enc_skipped(void)
{
    const char *why;
    char *a = jwk(RSA2048, "enc", "\"use\":\"enc\""), *b = jwk(EC256, "sig", "\"use\":\"sig\"");
    struct fg_buf doc = {0};
    fg_buf_printf(&doc, "%s,%s", a, b);
    struct fg_keyset *ks = parse(doc.data, &why);
    CHECK(ks != NULL && ks->n == 1 && ks->skipped == 1);
    CHECK(ks != NULL && fg_keyset_has_kid(ks, "sig") && !fg_keyset_has_kid(ks, "enc"));
    fg_keyset_unref(ks);
    CHECK(refused(one(RSA2048, "enc", "\"use\":\"enc\"", &why), &why, NO_USABLE));
    CHECK(refused(one(RSA2048, "x", "\"use\":\"other\"", &why), &why, NO_USABLE));
    fg_buf_free(&doc);
    free(a);
    free(b);
}

static void unknown_types_skipped(void)
{
    const char *why;
    char *good = jwk(RSA2048, "good", NULL);
    static const char *const odd[] = {
        "{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}",
        "{\"kty\":\"OKP\",\"crv\":\"Ed448\",\"x\":\"AAAA\"}",
        ("{\"kty\":\"OKP\",\"crv\":\"X25519\",\"x\":"
         "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}"),
        "{\"kty\":\"EC\",\"crv\":\"secp256k1\",\"x\":\"AA\",\"y\":\"AA\"}",
        "{\"kty\":\"rsa\",\"n\":\"AQAB\",\"e\":\"AQAB\"}",
        "{\"n\":\"AQAB\",\"e\":\"AQAB\"}",
        "{\"kty\":7}",
        "\"a string\"",
        "[]",
        "null",
    };
    for (size_t i = 0; i < FG_ARRAY_LEN(odd); i++) {
        struct fg_buf doc = {0};
        fg_buf_printf(&doc, "%s,%s", odd[i], good);
        struct fg_keyset *ks = parse(doc.data, &why);
        CHECK(ks != NULL && ks->n == 1 && ks->skipped == 1);
        if (ks == NULL || ks->n != 1)
            printf("#   with %s\n", odd[i]);
        fg_keyset_unref(ks);
        CHECK(refused(raw(odd[i], &why), &why, NO_USABLE));
        fg_buf_free(&doc);
    }
    free(good);
}

static void small_rsa_skipped(void)
{
    const char *why;
    CHECK(refused(one(RSA1024, "small", NULL, &why), &why, NO_USABLE));
    /* An even exponent, a zero or missing member, a non-canonical one: skipped. */
    struct fg_buf b = {0};
    tk_jwk(&b, keys[RSA2048], NULL, NULL);
    char *text = fg_buf_take(&b);
    char *e = strstr(text, "\"e\":\"AQAB\"");
    CHECK(e != NULL);
    if (e != NULL) {
        memcpy(e, "\"e\":\"AQAC\"", 10); /* 65538 */
        CHECK(refused(raw(text, &why), &why, NO_USABLE));
        memcpy(e, "\"e\":\"AQA=\"", 10); /* padding */
        CHECK(refused(raw(text, &why), &why, NO_USABLE));
        memcpy(e, "\"f\":\"AQAB\"", 10); /* no e */
        CHECK(refused(raw(text, &why), &why, NO_USABLE));
    }
    free(text);
}

static void ec_point_must_be_on_curve(void)
{
    const char *why;
    struct fg_keyset *ks = ec_with(EC256, "P-256", 32, 0, 0, &why);
    CHECK(ks != NULL); /* the unedited coordinates pass */
    fg_keyset_unref(ks);
    CHECK(refused(ec_with(EC256, "P-256", 32, 0, 1, &why), &why, NO_USABLE));
    CHECK(refused(ec_with(EC384, "P-384", 48, 1, 0, &why), &why, NO_USABLE));
    CHECK(refused(ec_with(EC521, "P-521", 66, 0, 1, &why), &why, NO_USABLE));
    /* a P-256 point presented as a P-384 one */
    CHECK(refused(ec_with(EC256, "P-384", 48, 0, 0, &why), &why, NO_USABLE));
}

static void coordinates_must_be_field_size(void)
{
    const char *why;
    CHECK(refused(ec_with(EC256, "P-256", 32, 2, 0, &why), &why, NO_USABLE));
    CHECK(refused(ec_with(EC256, "P-256", 32, 0, 2, &why), &why, NO_USABLE));
    CHECK(refused(ec_with(EC256, "P-256", 32, 3, 0, &why), &why, NO_USABLE));
    CHECK(refused(ec_with(EC384, "P-384", 48, 0, 3, &why), &why, NO_USABLE));
    CHECK(refused(ec_with(EC521, "P-521", 66, 2, 0, &why), &why, NO_USABLE));
    CHECK(refused(ec_with(EC521, "P-521", 66, 0, 3, &why), &why, NO_USABLE));
    /* Ed25519: exactly 32 bytes */
    unsigned char x[33] = {0};
    size_t n = 32;
    EVP_PKEY_get_raw_public_key(keys[ED], x, &n);
    for (size_t len = 31; len <= 33; len += 2) {
        struct fg_buf b = {0};
        fg_buf_adds(&b, "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"");
        tk_add_b64(&b, x, len);
        fg_buf_adds(&b, "\"}");
        CHECK(refused(raw(b.data, &why), &why, NO_USABLE));
        fg_buf_free(&b);
    }
}

static void no_usable_key(void)
{
    const char *why;
    CHECK(refused(parse("", &why), &why, NO_USABLE));
    char *a = jwk(RSA1024, "a", NULL), *b = jwk(RSA2048, "b", "\"use\":\"enc\"");
    struct fg_buf doc = {0};
    fg_buf_printf(&doc, "%s,%s", a, b);
    CHECK(refused(parse(doc.data, &why), &why, NO_USABLE));
    fg_buf_free(&doc);
    free(a);
    free(b);
}

static void not_a_jwks(void)
{
    static const char *const docs[] = {
        "",
        "not json",
        "[]",
        "{}",
        "{\"keys\":{}}",
        "{\"keys\":\"a\"}",
        "{\"Keys\":[]}",
        "null",
        "{\"keys\":[],\"keys\":[]}", /* duplicate members are refused */
    };
    for (size_t i = 0; i < FG_ARRAY_LEN(docs); i++) {
        const char *why = NULL;
        struct fg_keyset *ks = fg_keyset_parse(docs[i], strlen(docs[i]), &why);
        CHECK(refused(ks, &why, NOT_JWKS));
    }
    /* Length-delimited: what follows len is not read. */
    char *k = jwk(RSA2048, "a", NULL);
    struct fg_buf doc = {0};
    fg_buf_printf(&doc, "{\"keys\":[%s]}trailing", k);
    const char *why = NULL;
    struct fg_keyset *ks = fg_keyset_parse(doc.data, doc.len - 8, &why);
    CHECK(ks != NULL);
    fg_keyset_unref(ks);
    fg_buf_free(&doc);
    free(k);
}

static void too_many_keys(void)
{
    struct fg_buf doc = {0};
    char *k = jwk(EC256, NULL, NULL);
    fg_buf_adds(&doc, "{\"keys\":[");
    for (int i = 0; i < 257; i++)
        fg_buf_printf(&doc, "%s%s", i ? "," : "", k);
    fg_buf_adds(&doc, "]}");
    const char *why = NULL;
    CHECK(refused(fg_keyset_parse(doc.data, doc.len, &why), &why, "too many keys in the JWKS"));
    free(k);
    fg_buf_free(&doc);
}

/* Members of the wrong JSON type make the JWK malformed: it is skipped. */
static void kid_and_alg_must_be_strings(void)
{
    const char *why;
    CHECK(refused(one(RSA2048, NULL, "\"kid\":7", &why), &why, NO_USABLE));
    CHECK(refused(one(RSA2048, NULL, "\"alg\":[\"RS256\"]", &why), &why, NO_USABLE));
}

/* Like kid and alg: go-jose refuses a JWK whose "use" is not a string. */
static void use_must_be_a_string(void)
{
    const char *why;
    CHECK(refused(one(RSA2048, "x", "\"use\":7", &why), &why, NO_USABLE));
    CHECK(refused(one(RSA2048, "x", "\"use\":[\"sig\"]", &why), &why, NO_USABLE));
}

/* ---- selection ---- */

enum { S_A, S_B, S_C, S_D, S_E, S_NOKID, S_N };

static struct fg_keyset *selection_set(void)
{
    EVP_PKEY *k[] = {keys[RSA2048], keys[RSA3072], keys[EC256],
                     keys[EC384],   keys[ED],      keys[RSA2048]};
    const char *kids[] = {"a", "b", "c", "d", "e", NULL};
    char *doc = tk_jwks(k, kids, S_N);
    const char *why;
    struct fg_keyset *ks = fg_keyset_parse(doc, strlen(doc), &why);
    free(doc);
    if (ks == NULL || ks->n != S_N)
        abort();
    return ks;
}

/* The indexes fg_keyset_next yields for (kid, alg), as a string like "015". */
static const char *walk(const struct fg_keyset *ks, const char *kid, enum fg_jwt_alg alg, char *out)
{
    size_t pos = 0, n = 0;
    const struct fg_jwk *k;
    while ((k = fg_keyset_next(ks, kid, alg, &pos)) != NULL && n < 15)
        out[n++] = (char)('0' + (k - ks->keys));
    out[n] = '\0';
    return out;
}

static void next_by_kid_and_alg(void)
{
    struct fg_keyset *ks = selection_set();
    char buf[16];
    CHECK_STR(walk(ks, "b", FG_JWT_RS256, buf), "1");
    CHECK_STR(walk(ks, "b", FG_JWT_PS512, buf), "1");
    CHECK_STR(walk(ks, "b", FG_JWT_ES256, buf), ""); /* the kid's key is of another type */
    CHECK_STR(walk(ks, "c", FG_JWT_ES256, buf), "2");
    CHECK_STR(walk(ks, "c", FG_JWT_ES384, buf), ""); /* other curve */
    CHECK_STR(walk(ks, "d", FG_JWT_ES384, buf), "3");
    CHECK_STR(walk(ks, "e", FG_JWT_EDDSA, buf), "4");
    CHECK_STR(walk(ks, "zzz", FG_JWT_RS256, buf), "");
    CHECK_STR(walk(ks, "", FG_JWT_RS256, buf), "");
    /* Without a kid: every key that fits, in document order (kid-less keys too). */
    CHECK_STR(walk(ks, NULL, FG_JWT_RS256, buf), "015");
    CHECK_STR(walk(ks, NULL, FG_JWT_PS256, buf), "015");
    CHECK_STR(walk(ks, NULL, FG_JWT_ES256, buf), "2");
    CHECK_STR(walk(ks, NULL, FG_JWT_ES384, buf), "3");
    CHECK_STR(walk(ks, NULL, FG_JWT_ES512, buf), "");
    CHECK_STR(walk(ks, NULL, FG_JWT_EDDSA, buf), "4");
    /* With a kid, kid-less keys are not candidates. */
    CHECK_STR(walk(ks, "a", FG_JWT_RS256, buf), "0");
    fg_keyset_unref(ks);
}

static void jwk_alg_restricts_use(void)
{
    const char *why;
    char buf[16];
    struct fg_keyset *ks = one(RSA2048, "r", "\"alg\":\"RS256\"", &why);
    CHECK(ks != NULL);
    if (ks != NULL) {
        CHECK_STR(ks->keys[0].alg, "RS256");
        CHECK_STR(walk(ks, "r", FG_JWT_RS256, buf), "0");
        CHECK_STR(walk(ks, NULL, FG_JWT_RS256, buf), "0");
        CHECK_STR(walk(ks, "r", FG_JWT_RS384, buf), "");
        CHECK_STR(walk(ks, "r", FG_JWT_PS256, buf), "");
        CHECK(fg_keyset_has_kid(ks, "r"));
    }
    fg_keyset_unref(ks);
    ks = one(EC256, "p", "\"alg\":\"ES256\"", &why);
    CHECK(ks != NULL && strcmp(walk(ks, "p", FG_JWT_ES256, buf), "0") == 0);
    fg_keyset_unref(ks);
    /* An alg that does not match the key's type: kept, but never a candidate. */
    ks = one(EC256, "q", "\"alg\":\"RS256\"", &why);
    CHECK(ks != NULL);
    if (ks != NULL) {
        CHECK_STR(walk(ks, "q", FG_JWT_ES256, buf), "");
        CHECK_STR(walk(ks, "q", FG_JWT_RS256, buf), "");
    }
    fg_keyset_unref(ks);
}

static void has_kid(void)
{
    struct fg_keyset *ks = selection_set();
    static const char *const kids[] = {"a", "b", "c", "d", "e"};
    for (size_t i = 0; i < FG_ARRAY_LEN(kids); i++)
        CHECK(fg_keyset_has_kid(ks, kids[i]));
    CHECK(!fg_keyset_has_kid(ks, "f"));
    CHECK(!fg_keyset_has_kid(ks, ""));
    CHECK(!fg_keyset_has_kid(ks, "A"));
    fg_keyset_unref(ks);
}

static void refcounting(void)
{
    struct fg_keyset *ks = selection_set();
    CHECK(ks->refs == 1);
    CHECK(fg_keyset_ref(ks) == ks);
    CHECK(ks->refs == 2);
    fg_keyset_unref(ks);
    CHECK(ks->refs == 1);
    /* A key handed out stays usable while a reference is held. */
    EVP_PKEY *pk = ks->keys[0].pkey;
    CHECK(EVP_PKEY_eq(pk, keys[RSA2048]) == 1);
    fg_keyset_unref(ks); /* freed: ASan reports any later use */
    fg_keyset_unref(NULL);
}

static void digest_identifies_document(void)
{
    const char *why;
    char *a = jwk(RSA2048, "a", NULL), *b = jwk(RSA2048, "b", NULL);
    struct fg_keyset *ka = parse(a, &why), *ka2 = parse(a, &why), *kb = parse(b, &why);
    CHECK(ka && ka2 && kb);
    if (ka && ka2 && kb) {
        CHECK_STR(ka->digest, ka2->digest);
        CHECK(strcmp(ka->digest, kb->digest) != 0);
    }
    fg_keyset_unref(ka);
    fg_keyset_unref(ka2);
    fg_keyset_unref(kb);
    free(a);
    free(b);
}

int main(void)
{
    make_keys();
    RUN(rsa_parses);
    RUN(ec_curves_parse);
    RUN(ed25519_parses);
    RUN(parsed_keys_verify_tokens);
    RUN(use_sig_kept_enc_skipped);
    RUN(unknown_types_skipped);
    RUN(small_rsa_skipped);
    RUN(ec_point_must_be_on_curve);
    RUN(coordinates_must_be_field_size);
    RUN(no_usable_key);
    RUN(not_a_jwks);
    RUN(too_many_keys);
    RUN(kid_and_alg_must_be_strings);
    RUN(use_must_be_a_string);
    RUN(next_by_kid_and_alg);
    RUN(jwk_alg_restricts_use);
    RUN(has_kid);
    RUN(refcounting);
    RUN(digest_identifies_document);
    for (int i = 0; i < NKEYS; i++)
        EVP_PKEY_free(keys[i]);
    DONE();
}
