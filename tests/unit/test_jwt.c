/*
 * test_jwt.c - JWS tokens (auth/jwt.h): base64url, strict parsing and every
 * refusal, signatures for every algorithm with keys made here, wrong keys
 * and key types, and kube's claim checks and mappings. Time is a parameter.
 */
#include "t.h"

#include "auth/jwt.h"
#include "testkeys.h"

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <pthread.h>
#include <stdlib.h>

#define NOW    1700000000
#define ISSUER "https://issuer.example"

#define ISS  "\"iss\":\"" ISSUER "\""
#define AUD  "\"aud\":\"kube\""
#define EXP  "\"exp\":1700003600"
#define SUB  "\"sub\":\"alice\""
#define BASE ISS "," AUD "," EXP "," SUB /* a claims set fg_jwt_identity accepts */

#define CREDENTIAL_ID "authentication.kubernetes.io/credential-id"
#define RS256_HDR     "{\"alg\":\"RS256\",\"kid\":\"k1\"}"

enum { RSA_A, RSA_B, EC256_A, EC256_B, EC384, EC521, ED_A, ED_B, NKEYS };
static EVP_PKEY *keys[NKEYS];

static const int alg_key[] = {
    [FG_JWT_RS256] = RSA_A,   [FG_JWT_RS384] = RSA_A, [FG_JWT_RS512] = RSA_A,
    [FG_JWT_PS256] = RSA_A,   [FG_JWT_PS384] = RSA_A, [FG_JWT_PS512] = RSA_A,
    [FG_JWT_ES256] = EC256_A, [FG_JWT_ES384] = EC384, [FG_JWT_ES512] = EC521,
    [FG_JWT_EDDSA] = ED_A,
};

static void make_keys(void)
{
    keys[RSA_A] = tk_rsa(2048);
    keys[RSA_B] = tk_rsa(2048);
    keys[EC256_A] = tk_ec("P-256");
    keys[EC256_B] = tk_ec("P-256");
    keys[EC384] = tk_ec("P-384");
    keys[EC521] = tk_ec("P-521");
    keys[ED_A] = tk_ed25519();
    keys[ED_B] = tk_ed25519();
}

/* A compact JWS of header and claims (JSON text), signed with key; unsigned ("h.c.") without. */
static char *mint(const char *header, const char *claims, enum fg_jwt_alg alg, EVP_PKEY *key)
{
    if (key != NULL)
        return tk_mint(header, claims, alg, key);
    struct fg_buf b = {0};
    tk_add_b64(&b, header, strlen(header));
    fg_buf_addc(&b, '.');
    tk_add_b64(&b, claims, strlen(claims));
    fg_buf_addc(&b, '.');
    return fg_buf_take(&b);
}

static char *mint_alg(enum fg_jwt_alg alg, const char *claims)
{
    char header[64];
    snprintf(header, sizeof(header), "{\"alg\":\"%s\",\"typ\":\"JWT\"}", fg_jwt_alg_name(alg));
    return mint(header, claims, alg, keys[alg_key[alg]]);
}

static enum fg_jwt_parse_result parse_str(const char *tok, const char **why)
{
    struct fg_jwt t;
    enum fg_jwt_parse_result r = fg_jwt_parse(tok, strlen(tok), &t, why);
    fg_jwt_clear(&t);
    return r;
}

/* Parses tok (which must parse) and verifies it with key: fg_jwt_verify's result. */
static int verify_with(const char *tok, EVP_PKEY *key, const char **why)
{
    struct fg_jwt t;
    int rc = -2;
    if (fg_jwt_parse(tok, strlen(tok), &t, why) == FG_JWT_PARSED)
        rc = fg_jwt_verify(&t, key, why);
    fg_jwt_clear(&t);
    return rc;
}

/* Copies tok with segment seg (0..2) replaced by text. */
static char *with_segment(const char *tok, int seg, const char *text)
{
    struct fg_buf b = {0};
    const char *p = tok;
    for (int i = 0; i < 3; i++) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (i > 0)
            fg_buf_addc(&b, '.');
        if (i == seg)
            fg_buf_adds(&b, text);
        else
            fg_buf_add(&b, p, n);
        p += n + (dot != NULL);
    }
    return fg_buf_take(&b);
}

static char *b64_of(const char *s)
{
    struct fg_buf b = {0};
    tk_add_b64(&b, s, strlen(s));
    return fg_buf_take(&b);
}

static char *auds[] = {"kube", "other"};

static struct fg_jwt_cfg base_cfg(void)
{
    struct fg_jwt_cfg c = {0};
    c.issuer_url = ISSUER;
    c.audiences = auds;
    c.naudiences = 2;
    c.username.claim = "sub";
    c.username.prefix = "oidc:";
    return c;
}

static const char authn_name[] = "oidc-test";

/* Mints an RS256 token for claims and runs it through parse, verify and fg_jwt_identity. */
static struct fg_identity *ident_at(const char *claims, const struct fg_jwt_cfg *cfg, int64_t now,
                                    int64_t *exp, const char **why)
{
    char *tok = mint(RS256_HDR, claims, FG_JWT_RS256, keys[RSA_A]);
    struct fg_jwt t;
    struct fg_identity *id = NULL;
    *why = NULL;
    if (fg_jwt_parse(tok, strlen(tok), &t, why) == FG_JWT_PARSED &&
        fg_jwt_verify(&t, keys[RSA_A], why) == 0)
        id = fg_jwt_identity(&t, cfg, now, authn_name, exp, why);
    fg_jwt_clear(&t);
    free(tok);
    return id;
}

static struct fg_identity *ident(const char *claims, const struct fg_jwt_cfg *cfg, const char **why)
{
    int64_t exp;
    return ident_at(claims, cfg, NOW, &exp, why);
}

/* True when claims are admitted under cfg at NOW. */
static int admitted(const char *claims, const struct fg_jwt_cfg *cfg)
{
    const char *why;
    struct fg_identity *id = ident(claims, cfg, &why);
    int ok = id != NULL;
    fg_identity_unref(id);
    return ok;
}

/* True when claims are refused under cfg at now with exactly want. */
static int refused_at(const char *claims, const struct fg_jwt_cfg *cfg, int64_t now,
                      const char *want)
{
    const char *why = NULL;
    int64_t exp;
    struct fg_identity *id = ident_at(claims, cfg, now, &exp, &why);
    int ok = id == NULL && why != NULL && strcmp(why, want) == 0;
    if (!ok)
        printf("#   want refusal \"%s\", got %s \"%s\"\n", want, id ? "identity" : "refusal",
               why ? why : "");
    fg_identity_unref(id);
    return ok;
}

#define REFUSED(claims, cfg, want) CHECK(refused_at((claims), (cfg), NOW, (want)))

/* ---- base64url ---- */

static void b64_known_vectors(void)
{
    char out[16];
    unsigned char dec[16];
    CHECK(fg_b64url_encode((const unsigned char *)"", 0, out) == 0 && out[0] == '\0');
    fg_b64url_encode((const unsigned char *)"f", 1, out);
    CHECK_STR(out, "Zg");
    fg_b64url_encode((const unsigned char *)"fo", 2, out);
    CHECK_STR(out, "Zm8");
    fg_b64url_encode((const unsigned char *)"foo", 3, out);
    CHECK_STR(out, "Zm9v");
    fg_b64url_encode((const unsigned char *)"foob", 4, out);
    CHECK_STR(out, "Zm9vYg");
    fg_b64url_encode((const unsigned char *)"\xfb\xff\xfe", 3, out);
    CHECK_STR(out, "-__-");
    CHECK(fg_b64url_decode("Zm9vYmFy", 8, dec, sizeof(dec)) == 6 && memcmp(dec, "foobar", 6) == 0);
    CHECK(fg_b64url_decode("-__-", 4, dec, sizeof(dec)) == 3 &&
          memcmp(dec, "\xfb\xff\xfe", 3) == 0);
    CHECK(fg_b64url_decode("", 0, dec, sizeof(dec)) == 0);
}

static void b64_round_trips(void)
{
    unsigned char in[64], dec[64];
    char enc[100];
    for (size_t n = 0; n <= sizeof(in); n++) {
        for (size_t i = 0; i < n; i++)
            in[i] = (unsigned char)(i * 37 + n * 11);
        size_t m = fg_b64url_encode(in, n, enc);
        CHECK(m == strlen(enc) && m == (n * 4 + 2) / 3);
        CHECK(fg_b64url_decode(enc, m, dec, sizeof(dec)) == (long)n);
        CHECK(memcmp(in, dec, n) == 0);
    }
}

static void b64_rejections(void)
{
    unsigned char dec[16];
    CHECK(fg_b64url_decode("Zg==", 4, dec, sizeof(dec)) == -1);  /* padding */
    CHECK(fg_b64url_decode("Zm8=", 4, dec, sizeof(dec)) == -1);  /* padding */
    CHECK(fg_b64url_decode("ab+/", 4, dec, sizeof(dec)) == -1);  /* standard alphabet */
    CHECK(fg_b64url_decode("ab c", 4, dec, sizeof(dec)) == -1);  /* space */
    CHECK(fg_b64url_decode("ab\0c", 4, dec, sizeof(dec)) == -1); /* NUL */
    CHECK(fg_b64url_decode("Zm9vY", 5, dec, sizeof(dec)) == -1); /* length % 4 == 1 */
    CHECK(fg_b64url_decode("Zh", 2, dec, sizeof(dec)) == -1);    /* non-zero trailing bits */
    CHECK(fg_b64url_decode("Zm9", 3, dec, sizeof(dec)) == -1);   /* canonical is Zm8 */
    CHECK(fg_b64url_decode("Zm9vYmFy", 8, dec, 5) == -1);        /* out too small */
    CHECK(fg_b64url_decode("Zm9vYmFy", 8, dec, 6) == 6);         /* exactly enough */
    CHECK(fg_b64url_decode("Zg", 2, dec, sizeof(dec)) == 1 && dec[0] == 'f');
}

/* ---- signatures ---- */

static void every_alg_verifies(void)
{
    for (int alg = FG_JWT_RS256; alg <= FG_JWT_EDDSA; alg++) {
        char *tok = mint_alg((enum fg_jwt_alg)alg, "{" BASE "}");
        struct fg_jwt t;
        const char *why = NULL;
        CHECK(fg_jwt_parse(tok, strlen(tok), &t, &why) == FG_JWT_PARSED);
        CHECK((int)t.alg == alg);
        CHECK(t.kid == NULL);
        CHECK_STR(t.iss, ISSUER);
        if (fg_jwt_verify(&t, keys[alg_key[alg]], &why) != 0) {
            printf("#   %s: %s\n", fg_jwt_alg_name((enum fg_jwt_alg)alg), why);
            CHECK(0);
        }
        fg_jwt_clear(&t);
        free(tok);
    }
}

/* Production keys come from JWKs as public-only keys; check those verify too. */
static EVP_PKEY *public_copy(EVP_PKEY *key, char **pem)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data;
    PEM_write_bio_PUBKEY(bio, key);
    long n = BIO_get_mem_data(bio, &data);
    if (pem != NULL)
        *pem = fg_strndup(data, (size_t)n);
    EVP_PKEY *pub = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    return pub;
}

static void public_keys_verify(void)
{
    const enum fg_jwt_alg algs[] = {FG_JWT_RS256, FG_JWT_PS512, FG_JWT_ES256,
                                    FG_JWT_ES384, FG_JWT_ES512, FG_JWT_EDDSA};
    for (size_t i = 0; i < FG_ARRAY_LEN(algs); i++) {
        EVP_PKEY *pub = public_copy(keys[alg_key[algs[i]]], NULL);
        char *tok = mint_alg(algs[i], "{" BASE "}");
        const char *why;
        CHECK(pub != NULL && verify_with(tok, pub, &why) == 0);
        EVP_PKEY_free(pub);
        free(tok);
    }
}

static void wrong_key_fails(void)
{
    static const int other[] = {
        [RSA_A] = RSA_B, [EC256_A] = EC256_B, [ED_A] = ED_B,
        [EC384] = EC384, [EC521] = EC521, /* tampered below instead */
    };
    for (int alg = FG_JWT_RS256; alg <= FG_JWT_EDDSA; alg++) {
        char *tok = mint_alg((enum fg_jwt_alg)alg, "{" BASE "}");
        int k = alg_key[alg];
        const char *why = NULL;
        if (other[k] != k) {
            CHECK(verify_with(tok, keys[other[k]], &why) == -1);
            CHECK_STR(why, "token signature does not verify");
        }
        /* Same key, other claims under the same signature. */
        char *claims = b64_of("{" BASE ",\"admin\":true}");
        char *forged = with_segment(tok, 1, claims);
        why = NULL;
        CHECK(verify_with(forged, keys[k], &why) == -1);
        CHECK_STR(why, "token signature does not verify");
        free(tok), free(claims), free(forged);
    }
}

static void wrong_key_type_fails(void)
{
    static const struct {
        enum fg_jwt_alg alg;
        int key;
    } cases[] = {
        {FG_JWT_ES256, RSA_A}, {FG_JWT_RS256, EC256_A}, {FG_JWT_ES384, EC256_A},
        {FG_JWT_ES256, EC384}, {FG_JWT_ES512, EC384},   {FG_JWT_EDDSA, EC256_A},
        {FG_JWT_PS256, ED_A},  {FG_JWT_RS512, ED_A},    {FG_JWT_ES256, ED_A},
    };
    for (size_t i = 0; i < FG_ARRAY_LEN(cases); i++) {
        char *tok = mint_alg(cases[i].alg, "{" BASE "}");
        const char *why = NULL;
        CHECK(verify_with(tok, keys[cases[i].key], &why) == -1);
        CHECK_STR(why, "key type or curve does not fit the token alg");
        free(tok);
    }
}

/* An RS256 header on a PS256 signature (and back) must not verify. */
static void padding_mode_is_bound_to_alg(void)
{
    char *ps = mint("{\"alg\":\"PS256\"}", "{" BASE "}", FG_JWT_PS256, keys[RSA_A]);
    char *rs = mint("{\"alg\":\"RS256\"}", "{" BASE "}", FG_JWT_RS256, keys[RSA_A]);
    char *hdr_rs = b64_of("{\"alg\":\"RS256\"}"), *hdr_ps = b64_of("{\"alg\":\"PS256\"}");
    char *a = with_segment(ps, 0, hdr_rs), *b = with_segment(rs, 0, hdr_ps);
    const char *why;
    CHECK(verify_with(a, keys[RSA_A], &why) == -1);
    CHECK(verify_with(b, keys[RSA_A], &why) == -1);
    free(ps), free(rs), free(hdr_rs), free(hdr_ps), free(a), free(b);
}

/* tok (ending in '.') with a signature of n zero bytes. */
static char *with_zero_sig(const char *tok, size_t n)
{
    unsigned char zero[600] = {0};
    struct fg_buf b = {0};
    fg_buf_adds(&b, tok);
    tk_add_b64(&b, zero, n);
    return fg_buf_take(&b);
}

static void signature_length_checked(void)
{
    char *rs = mint("{\"alg\":\"RS256\"}", "{" BASE "}", FG_JWT_RS256, NULL);
    char *es = mint("{\"alg\":\"ES256\"}", "{" BASE "}", FG_JWT_ES256, NULL);
    char *ed = mint("{\"alg\":\"EdDSA\"}", "{" BASE "}", FG_JWT_EDDSA, NULL);
    static const struct {
        int which, key;
        size_t len;
    } cases[] = {
        {0, RSA_A, 255},  {0, RSA_A, 257},  {0, RSA_A, 512}, {1, EC256_A, 63},
        {1, EC256_A, 65}, {1, EC256_A, 72}, /* the size of a DER ECDSA signature */
        {2, ED_A, 63},    {2, ED_A, 65},
    };
    for (size_t i = 0; i < FG_ARRAY_LEN(cases); i++) {
        const char *base = cases[i].which == 0 ? rs : cases[i].which == 1 ? es : ed;
        char *tok = with_zero_sig(base, cases[i].len);
        const char *why = NULL;
        CHECK(verify_with(tok, keys[cases[i].key], &why) == -1);
        CHECK_STR(why, "token signature has the wrong length");
        free(tok);
    }
    free(rs), free(es), free(ed);
}

/* A DER ECDSA signature (what OpenSSL emits) is not a JWS signature. */
static void ecdsa_der_signature_refused(void)
{
    const char *in = "eyJhbGciOiJFUzI1NiJ9.e30";
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char der[80];
    size_t n = sizeof(der);
    struct fg_buf b = {0};
    CHECK(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, keys[EC256_A]) == 1);
    CHECK(EVP_DigestSign(ctx, der, &n, (const unsigned char *)in, strlen(in)) == 1);
    fg_buf_printf(&b, "%s.", in);
    tk_add_b64(&b, der, n);
    const char *why = NULL;
    CHECK(verify_with(b.data, keys[EC256_A], &why) == -1);
    fg_buf_free(&b);
    EVP_MD_CTX_free(ctx);
}

/* An all-zero r||s is well-formed but must fail, not crash. */
static void ecdsa_zero_signature_fails(void)
{
    unsigned char zero[64] = {0};
    struct fg_buf b = {0};
    char *tok = mint("{\"alg\":\"ES256\"}", "{" BASE "}", FG_JWT_ES256, NULL);
    fg_buf_adds(&b, tok);
    tk_add_b64(&b, zero, sizeof(zero));
    const char *why = NULL;
    CHECK(verify_with(b.data, keys[EC256_A], &why) == -1);
    CHECK(why != NULL);
    fg_buf_free(&b);
    free(tok);
}

/*
 * Verification contexts are cached per thread by key address; a cached
 * context holds its key, so a freed key's address cannot come back as another
 * key and meet the old context. More keys than cache slots, each freed after use.
 */
static void freed_keys_do_not_alias(void)
{
    for (int i = 0; i < 12; i++) {
        EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        char *tok = mint("{\"alg\":\"ES256\"}", "{" BASE "}", FG_JWT_ES256, k);
        const char *why = NULL;
        CHECK(verify_with(tok, k, &why) == 0);
        CHECK(verify_with(tok, keys[EC256_A], &why) == -1);
        EVP_PKEY_free(k);
        free(tok);
    }
    /* The same key under two algorithms gets two contexts. */
    char *rs = mint_alg(FG_JWT_RS256, "{" BASE "}"), *ps = mint_alg(FG_JWT_PS256, "{" BASE "}");
    const char *why;
    for (int i = 0; i < 3; i++) {
        CHECK(verify_with(rs, keys[RSA_A], &why) == 0);
        CHECK(verify_with(ps, keys[RSA_A], &why) == 0);
    }
    free(rs), free(ps);
}

static void *verify_thread(void *arg)
{
    int *failures = arg;
    for (int alg = FG_JWT_RS256; alg <= FG_JWT_EDDSA; alg++) {
        char *tok = mint_alg((enum fg_jwt_alg)alg, "{" BASE "}");
        const char *why;
        for (int i = 0; i < 3; i++)
            *failures += verify_with(tok, keys[alg_key[alg]], &why) != 0;
        free(tok);
    }
    return NULL;
}

/* Threads verify side by side, and their caches go when they exit (LSan checks). */
static void threads_verify(void)
{
    pthread_t th[3];
    int failures[3] = {0};
    for (int i = 0; i < 3; i++)
        CHECK(pthread_create(&th[i], NULL, verify_thread, &failures[i]) == 0);
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        CHECK(failures[i] == 0);
    }
}

/* A P-256 key as a JWKS module builds it: group "P-256" and the public point. */
static void jwk_style_ec_key(void)
{
    unsigned char pub[65];
    size_t n = 0;
    CHECK(EVP_PKEY_get_octet_string_param(keys[EC256_A], OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub),
                                          &n) == 1);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pub, n),
        OSSL_PARAM_construct_end(),
    };
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *k = NULL;
    CHECK(EVP_PKEY_fromdata_init(ctx) == 1 &&
          EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params) == 1);
    char *tok = mint_alg(FG_JWT_ES256, "{" BASE "}");
    const char *why = NULL;
    CHECK(k != NULL && verify_with(tok, k, &why) == 0);
    free(tok);
    tok = mint_alg(FG_JWT_ES384, "{" BASE "}");
    CHECK(k != NULL && verify_with(tok, k, &why) == -1);
    free(tok);
    EVP_PKEY_free(k);
    EVP_PKEY_CTX_free(ctx);
}

/* ---- parsing ---- */

/* A thread's tokens with the same header share its parsed form; each holds a reference. */
static void header_shared_read_only(void)
{
    char *a = mint(RS256_HDR, "{\"sub\":\"a\"}", FG_JWT_RS256, keys[RSA_A]);
    char *b = mint(RS256_HDR, "{\"sub\":\"b\"}", FG_JWT_RS256, keys[RSA_A]);
    char *c = mint("{\"alg\":\"RS256\",\"kid\":\"k2\"}", "{}", FG_JWT_RS256, keys[RSA_A]);
    struct fg_jwt ta, tb, tc;
    const char *why;
    CHECK(fg_jwt_parse(a, strlen(a), &ta, &why) == FG_JWT_PARSED);
    CHECK(fg_jwt_parse(b, strlen(b), &tb, &why) == FG_JWT_PARSED);
    CHECK(ta.header == tb.header);
    fg_jwt_clear(&ta);
    CHECK(fg_jwt_parse(c, strlen(c), &tc, &why) == FG_JWT_PARSED);
    CHECK(tc.header != tb.header);
    CHECK_STR(tb.kid, "k1");
    CHECK_STR(tc.kid, "k2");
    CHECK(fg_jwt_verify(&tb, keys[RSA_A], &why) == 0);
    fg_jwt_clear(&tb);
    fg_jwt_clear(&tc);
    /* A refused header is not remembered in place of a good one. */
    char *bad = mint("{\"alg\":\"HS256\"}", "{}", FG_JWT_RS256, keys[RSA_A]);
    CHECK(parse_str(bad, &why) == FG_JWT_INVALID);
    CHECK(parse_str(bad, &why) == FG_JWT_INVALID);
    CHECK_STR(why, "HMAC tokens (HS*) are not accepted");
    free(a), free(b), free(c), free(bad);
}

static void alg_none_refused(void)
{
    char *bare = mint("{\"alg\":\"none\"}", "{" BASE "}", FG_JWT_RS256, NULL);
    char *fake = with_segment(bare, 2, "c2lnbmF0dXJl");
    const char *why = NULL;
    CHECK(parse_str(bare, &why) == FG_JWT_INVALID);
    CHECK_STR(why, "unsigned tokens (alg none) are not accepted");
    why = NULL;
    CHECK(parse_str(fake, &why) == FG_JWT_INVALID);
    CHECK_STR(why, "unsigned tokens (alg none) are not accepted");
    free(bare), free(fake);
    /* An RS256 header with an empty signature is the other shape of an unsigned token. */
    bare = mint(RS256_HDR, "{" BASE "}", FG_JWT_RS256, NULL);
    why = NULL;
    CHECK(parse_str(bare, &why) == FG_JWT_INVALID);
    CHECK_STR(why, "token has no signature");
    free(bare);
    /* "None" is not "none", and not a known alg either. */
    bare = mint("{\"alg\":\"None\"}", "{" BASE "}", FG_JWT_RS256, keys[RSA_A]);
    CHECK(parse_str(bare, &why) == FG_JWT_INVALID);
    CHECK_STR(why, "unsupported token alg");
    free(bare);
}

/* The classic confusion: HS256 with the RSA public key's PEM as the HMAC secret. */
static void hmac_refused(void)
{
    char *pem = NULL;
    EVP_PKEY *pub = public_copy(keys[RSA_A], &pem);
    struct fg_buf b = {0};
    unsigned char mac[64];
    size_t maclen = 0;
    tk_add_b64(&b, "{\"alg\":\"HS256\"}", 15);
    fg_buf_addc(&b, '.');
    tk_add_b64(&b, "{" BASE "}", strlen("{" BASE "}"));
    CHECK(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, pem, strlen(pem),
                    (const unsigned char *)b.data, b.len, mac, sizeof(mac), &maclen) != NULL);
    fg_buf_addc(&b, '.');
    tk_add_b64(&b, mac, maclen);
    const char *why = NULL;
    struct fg_jwt t;
    CHECK(fg_jwt_parse(b.data, b.len, &t, &why) == FG_JWT_INVALID);
    CHECK_STR(why, "HMAC tokens (HS*) are not accepted");
    CHECK(t.header == NULL && t.claims == NULL && t.sig == NULL);
    fg_buf_free(&b);
    for (int i = 0; i < 3; i++) {
        static const char *const hs[] = {"{\"alg\":\"HS256\"}", "{\"alg\":\"HS384\"}",
                                         "{\"alg\":\"HS512\"}"};
        char *tok = mint(hs[i], "{" BASE "}", FG_JWT_RS256, keys[RSA_A]);
        CHECK(parse_str(tok, &why) == FG_JWT_INVALID);
        free(tok);
    }
    EVP_PKEY_free(pub);
    free(pem);
}

static void header_checks(void)
{
    static const struct {
        const char *header, *why;
    } cases[] = {
        {"{\"alg\":\"RS256\",\"crit\":[\"exp\"]}",
         "critical token header extensions are not supported"},
        {"{\"alg\":\"RS1\"}", "unsupported token alg"},
        {"{\"alg\":\"rs256\"}", "unsupported token alg"},
        {"{\"typ\":\"JWT\"}", "token alg missing or not a string"},
        {"{\"alg\":256}", "token alg missing or not a string"},
        {"{\"alg\":\"RS256\",\"kid\":7}", "token kid is not a string"},
        {"{\"alg\":\"RS256\",\"alg\":\"RS256\"}", "token header is not a JSON object"},
        {"{\"alg\":\"RS256\"", "token header is not a JSON object"},
        {"{\"alg\":\"RS256\"} {}", "token header is not a JSON object"},
        {"{\"alg\":\"RS256\",\"x\":\"\\u0000\"}", "token header is not a JSON object"},
    };
    for (size_t i = 0; i < FG_ARRAY_LEN(cases); i++) {
        char *tok = mint(cases[i].header, "{" BASE "}", FG_JWT_RS256, keys[RSA_A]);
        const char *why = NULL;
        CHECK(parse_str(tok, &why) == FG_JWT_INVALID);
        CHECK_STR(why, cases[i].why);
        free(tok);
    }
    char *tok = mint(RS256_HDR, "{" BASE "}", FG_JWT_RS256, keys[RSA_A]);
    struct fg_jwt t;
    const char *why;
    CHECK(fg_jwt_parse(tok, strlen(tok), &t, &why) == FG_JWT_PARSED);
    CHECK_STR(t.kid, "k1");
    CHECK(t.signing_input == tok && t.signing_len == (size_t)(strrchr(tok, '.') - tok));
    CHECK(t.sig_len == 256);
    fg_jwt_clear(&t);
    fg_jwt_clear(&t); /* idempotent */
    free(tok);
}

static void claims_checks(void)
{
    static const struct {
        const char *claims, *why;
    } cases[] = {
        {"[1,2]", "token claims are not a JSON object"},
        {"\"str\"", "token claims are not a JSON object"},
        {"{\"a\":1,\"a\":2}", "token claims are not a JSON object"},
        {"{\"a\":1", "token claims are not a JSON object"},
        {"", "token claims are not a JSON object"},
        {"{\"iss\":5}", "token iss is not a string"},
        {"{\"iss\":[\"" ISSUER "\"]}", "token iss is not a string"},
    };
    for (size_t i = 0; i < FG_ARRAY_LEN(cases); i++) {
        char *tok = mint(RS256_HDR, cases[i].claims, FG_JWT_RS256, keys[RSA_A]);
        const char *why = NULL;
        CHECK(parse_str(tok, &why) == FG_JWT_INVALID);
        CHECK_STR(why, cases[i].why);
        free(tok);
    }
    char *tok = mint(RS256_HDR, "{\"sub\":\"x\"}", FG_JWT_RS256, keys[RSA_A]);
    struct fg_jwt t;
    const char *why;
    CHECK(fg_jwt_parse(tok, strlen(tok), &t, &why) == FG_JWT_PARSED);
    CHECK(t.iss == NULL);
    fg_jwt_clear(&t);
    free(tok);
}

/* The rule in jwt.c's opening comment: what is not a JWT at all. */
static void not_jwt_shapes(void)
{
    static const char *const cases[] = {
        "",
        "fgk_abcdefghijklmnopqrstuvwxyz012345",
        "abcdef.0123456789abcdef", /* bootstrap token */
        "abc.def.ghi",             /* first byte not '{' */
        "fgk_abc.def.ghi",
        "eyJhbGciOiJSUzI1NiJ9.e30",        /* two segments */
        "eyJhbGciOiJSUzI1NiJ9.e30.c2ln.x", /* four segments */
        "eyJhbGciOiJSUzI1NiJ9.a.b.c.d.e",  /* six segments */
        "eyJhbGc!OiJSUzI1NiJ9.e30.c2ln",   /* bad character in the first segment */
        "eyJhbGc OiJSUzI1NiJ9.e30.c2ln",
        "e.e30.c2ln",     /* one character cannot hold a byte */
        "eyJhb.e30.c2ln", /* length % 4 == 1 */
        ".e30.c2ln",
        "W10.e30.c2ln",                    /* "[]": an array header */
        "ImFiYyI.e30.c2ln",                /* "abc": a string header */
        "IHsiYWxnIjoiUlMyNTYifQ.e30.c2ln", /* leading whitespace */
    };
    for (size_t i = 0; i < FG_ARRAY_LEN(cases); i++) {
        const char *why = NULL;
        if (parse_str(cases[i], &why) != FG_JWT_NOT_JWT) {
            printf("#   case %zu not NOT_JWT: %s\n", i, why ? why : "");
            CHECK(0);
        }
    }
}

static void jwe_refused(void)
{
    const char *why = NULL;
    char *hdr = b64_of("{\"alg\":\"RSA-OAEP\",\"enc\":\"A256GCM\"}");
    struct fg_buf b = {0};
    fg_buf_printf(&b, "%s.a2V5.aXY.Y2lwaGVy.dGFn", hdr);
    CHECK(parse_str(b.data, &why) == FG_JWT_INVALID);
    CHECK_STR(why, "encrypted tokens (JWE) are not supported");
    fg_buf_free(&b);
    free(hdr);
}

static void malformed_tokens(void)
{
    char *tok = mint(RS256_HDR, "{" BASE "}", FG_JWT_RS256, keys[RSA_A]);
    size_t hlen = (size_t)(strchr(tok, '.') - tok);
    const char *why = NULL;
    struct fg_jwt t;

    /* Truncated: inside the signature, right after the second dot, inside the claims. */
    CHECK(fg_jwt_parse(tok, strlen(tok) - 1, &t, &why) == FG_JWT_INVALID);
    /* 340 signature characters still decode (255 bytes): verification refuses them. */
    CHECK(fg_jwt_parse(tok, strlen(tok) - 2, &t, &why) == FG_JWT_PARSED);
    CHECK(fg_jwt_verify(&t, keys[RSA_A], &why) == -1);
    CHECK_STR(why, "token signature has the wrong length");
    fg_jwt_clear(&t);
    CHECK(fg_jwt_parse(tok, (size_t)(strrchr(tok, '.') - tok) + 1, &t, &why) == FG_JWT_INVALID);
    CHECK_STR(why, "token has no signature");
    CHECK(fg_jwt_parse(tok, hlen + 5, &t, &why) == FG_JWT_NOT_JWT); /* two segments */
    CHECK(fg_jwt_parse(tok, hlen, &t, &why) == FG_JWT_NOT_JWT);

    static const struct {
        int seg;
        const char *text, *why;
    } cases[] = {
        {1, "eyJzdWIiOiJ4In0=", "token claims are not canonical base64url"}, /* padding */
        {1, "eyJzdWIiOiJ4In0+", "token claims are not canonical base64url"},
        {1, "eyJzdWIiOiJ4In1", "token claims are not canonical base64url"}, /* trailing bits */
        {2, "c2lnbmF0dXJl=", "token signature is not canonical base64url"},
        {2, "c2lnbmF0dXJl/", "token signature is not canonical base64url"},
        {2, "Zm9", "token signature is not canonical base64url"}, /* canonical: Zm8 */
        {2, "c2lnbmF0dXJlZ", "token signature is not canonical base64url"},
        {2, "c2ln bmF0dXJl", "token signature is not canonical base64url"},
        {0, "eyJhbGciOiJSUzI1NiJ9=", "token header is not canonical base64url"},
        {0, "eyJhbGciOiJSUzI1NiIsInh5IjoxfR", "token header is not canonical base64url"},
        {0, "eyJhbGciOiJSUzI1NiIsInh5IjoxfQ==", "token header is not canonical base64url"},
        {1, "", "token claims are not a JSON object"},
    };
    for (size_t i = 0; i < FG_ARRAY_LEN(cases); i++) {
        char *bad = with_segment(tok, cases[i].seg, cases[i].text);
        why = NULL;
        CHECK(parse_str(bad, &why) == FG_JWT_INVALID);
        CHECK_STR(why, cases[i].why);
        free(bad);
    }
    free(tok);
}

static void oversized_refused(void)
{
    size_t n = 100 * 1024;
    char *big = fg_malloc(n + 1);
    char *tok = mint(RS256_HDR, "{" BASE "}", FG_JWT_RS256, keys[RSA_A]);
    memset(big, 'A', n);
    memcpy(big, tok, strlen(tok)); /* a real token followed by junk */
    big[n] = '\0';
    const char *why = NULL;
    CHECK(parse_str(big, &why) == FG_JWT_INVALID);
    CHECK_STR(why, "token too large");
    /* At exactly the cap the size is not what refuses it. */
    struct fg_jwt t;
    CHECK(fg_jwt_parse(big, FG_JWT_MAX_BYTES, &t, &why) == FG_JWT_INVALID);
    CHECK(strcmp(why, "token too large") != 0);
    free(big);
    free(tok);
}

static char *nested_claims(int depth, char open, char close)
{
    struct fg_buf b = {0};
    fg_buf_adds(&b, "{\"a\":");
    for (int i = 0; i < depth - 1; i++)
        fg_buf_addc(&b, open);
    for (int i = 0; i < depth - 1; i++)
        fg_buf_addc(&b, close);
    fg_buf_addc(&b, '}');
    return fg_buf_take(&b);
}

static void nesting_bomb_refused(void)
{
    char *deep = nested_claims(1000, '[', ']');
    char *tok = mint(RS256_HDR, deep, FG_JWT_RS256, keys[RSA_A]);
    const char *why = NULL;
    CHECK(parse_str(tok, &why) == FG_JWT_INVALID);
    CHECK_STR(why, "token claims are nested too deeply");
    free(deep), free(tok);

    /* The limit: FG_JWT_MAX_DEPTH levels parse, one more does not (objects count too). */
    deep = nested_claims(FG_JWT_MAX_DEPTH, '[', ']');
    tok = mint(RS256_HDR, deep, FG_JWT_RS256, keys[RSA_A]);
    CHECK(parse_str(tok, &why) == FG_JWT_PARSED);
    free(deep), free(tok);
    struct fg_buf b = {0};
    fg_buf_adds(&b, "{\"a\":");
    for (int i = 0; i < FG_JWT_MAX_DEPTH; i++)
        fg_buf_adds(&b, "{\"b\":");
    fg_buf_addc(&b, '1');
    for (int i = 0; i <= FG_JWT_MAX_DEPTH; i++)
        fg_buf_addc(&b, '}');
    tok = mint(RS256_HDR, b.data, FG_JWT_RS256, keys[RSA_A]);
    CHECK(parse_str(tok, &why) == FG_JWT_INVALID);
    CHECK_STR(why, "token claims are nested too deeply");
    free(tok);
    fg_buf_free(&b);

    /* Brackets inside strings (escaped quotes too) are not nesting. */
    fg_buf_adds(&b, "{\"a\":\"\\\"");
    for (int i = 0; i < 1000; i++)
        fg_buf_addc(&b, '[');
    fg_buf_adds(&b, "\"}");
    tok = mint(RS256_HDR, b.data, FG_JWT_RS256, keys[RSA_A]);
    CHECK(parse_str(tok, &why) == FG_JWT_PARSED);
    free(tok);
    fg_buf_free(&b);

    /* And in the header. */
    fg_buf_adds(&b, "{\"alg\":\"RS256\",\"x\":");
    for (int i = 0; i < FG_JWT_MAX_DEPTH; i++)
        fg_buf_addc(&b, '[');
    for (int i = 0; i < FG_JWT_MAX_DEPTH; i++)
        fg_buf_addc(&b, ']');
    fg_buf_addc(&b, '}');
    tok = mint(b.data, "{" BASE "}", FG_JWT_RS256, keys[RSA_A]);
    CHECK(parse_str(tok, &why) == FG_JWT_INVALID);
    CHECK_STR(why, "token header is nested too deeply");
    free(tok);
    fg_buf_free(&b);
}

static void alg_table(void)
{
    int nid = -1;
    CHECK(fg_jwt_alg_key_type(FG_JWT_RS256, &nid) == FG_JWK_RSA && nid == 0);
    CHECK(fg_jwt_alg_key_type(FG_JWT_PS384, &nid) == FG_JWK_RSA && nid == 0);
    CHECK(fg_jwt_alg_key_type(FG_JWT_ES256, &nid) == FG_JWK_EC && nid == NID_X9_62_prime256v1);
    CHECK(fg_jwt_alg_key_type(FG_JWT_ES384, &nid) == FG_JWK_EC && nid == NID_secp384r1);
    CHECK(fg_jwt_alg_key_type(FG_JWT_ES512, &nid) == FG_JWK_EC && nid == NID_secp521r1);
    CHECK(fg_jwt_alg_key_type(FG_JWT_EDDSA, &nid) == FG_JWK_OKP && nid == 0);
    CHECK(fg_jwt_alg_key_type(FG_JWT_RS512, NULL) == FG_JWK_RSA);
    CHECK_STR(fg_jwt_alg_name(FG_JWT_PS512), "PS512");
    CHECK_STR(fg_jwt_alg_name(FG_JWT_EDDSA), "EdDSA");
}

/* ---- claims ---- */

static void issuer_checked(void)
{
    struct fg_jwt_cfg cfg = base_cfg();
    REFUSED("{\"iss\":\"https://evil.example\"," AUD "," EXP "," SUB "}", &cfg,
            "token issuer does not match");
    REFUSED("{" AUD "," EXP "," SUB "}", &cfg, "token issuer does not match");
    cfg.issuer_url = "https://accounts.google.com";
    CHECK(admitted("{\"iss\":\"accounts.google.com\"," AUD "," EXP "," SUB "}", &cfg));
}

static void exp_checked(void)
{
    struct fg_jwt_cfg cfg = base_cfg();
    const char *why;
    int64_t exp = 0;
    REFUSED("{" ISS "," AUD "," SUB "}", &cfg, "token exp missing or not a number");
    REFUSED("{" ISS "," AUD "," SUB ",\"exp\":\"1700003600\"}", &cfg,
            "token exp missing or not a number");
    REFUSED("{" ISS "," AUD "," SUB ",\"exp\":null}", &cfg, "token exp missing or not a number");
    REFUSED("{" ISS "," AUD "," SUB ",\"exp\":1699999999}", &cfg, "token expired");
    REFUSED("{" ISS "," AUD "," SUB ",\"exp\":1699999999.5}", &cfg, "token expired");
    CHECK(refused_at("{" BASE "}", &cfg, 1700003601, "token expired"));
    /* No leeway, but expiry is strictly after exp. */
    struct fg_identity *id = ident_at("{" BASE "}", &cfg, 1700003600, &exp, &why);
    CHECK(id != NULL && exp == 1700003600);
    fg_identity_unref(id);
    id = ident_at("{" ISS "," AUD "," SUB ",\"exp\":1700000000.75}", &cfg, NOW, &exp, &why);
    CHECK(id != NULL && exp == 1700000000);
    fg_identity_unref(id);
    id = ident_at("{" ISS "," AUD "," SUB ",\"exp\":1e300}", &cfg, NOW, &exp, &why);
    CHECK(id != NULL && exp == INT64_MAX);
    fg_identity_unref(id);
}

static void nbf_checked(void)
{
    struct fg_jwt_cfg cfg = base_cfg();
    CHECK(admitted("{" BASE ",\"nbf\":1700000060}", &cfg)); /* within the leeway */
    CHECK(admitted("{" BASE ",\"nbf\":1690000000}", &cfg));
    CHECK(admitted("{" BASE ",\"nbf\":null}", &cfg));
    CHECK(admitted("{" BASE ",\"nbf\":1700000060.0}", &cfg));
    REFUSED("{" BASE ",\"nbf\":1700000061}", &cfg, "token not valid yet");
    REFUSED("{" BASE ",\"nbf\":1700000060.5}", &cfg, "token not valid yet");
    REFUSED("{" BASE ",\"nbf\":\"1700000000\"}", &cfg, "token nbf is not a number");
}

static void aud_checked(void)
{
    struct fg_jwt_cfg cfg = base_cfg();
    CHECK(admitted("{" ISS "," EXP "," SUB ",\"aud\":\"other\"}", &cfg));
    CHECK(admitted("{" ISS "," EXP "," SUB ",\"aud\":[\"x\",\"kube\"]}", &cfg));
    REFUSED("{" ISS "," EXP "," SUB ",\"aud\":\"kubex\"}", &cfg, "token audience does not match");
    REFUSED("{" ISS "," EXP "," SUB ",\"aud\":[\"x\",\"y\"]}", &cfg,
            "token audience does not match");
    REFUSED("{" ISS "," EXP "," SUB ",\"aud\":[]}", &cfg, "token audience does not match");
    REFUSED("{" ISS "," EXP "," SUB "}", &cfg, "token audience does not match");
    REFUSED("{" ISS "," EXP "," SUB ",\"aud\":7}", &cfg, "token aud has the wrong type");
    REFUSED("{" ISS "," EXP "," SUB ",\"aud\":[\"kube\",7]}", &cfg, "token aud has the wrong type");
}

static void claim_rules_checked(void)
{
    struct fg_claim_rule rules[] = {{"hd", "example.com"}, {"tier", ""}};
    struct fg_jwt_cfg cfg = base_cfg();
    cfg.rules = rules;
    cfg.nrules = 2;
    CHECK(admitted("{" BASE ",\"hd\":\"example.com\",\"tier\":\"\"}", &cfg));
    REFUSED("{" BASE ",\"hd\":\"example.org\",\"tier\":\"\"}", &cfg,
            "required claim has the wrong value");
    REFUSED("{" BASE ",\"tier\":\"\"}", &cfg, "required claim missing");
    REFUSED("{" BASE ",\"hd\":\"example.com\"}", &cfg, "required claim missing");
    REFUSED("{" BASE ",\"hd\":\"example.com\",\"tier\":\"gold\"}", &cfg,
            "required claim has the wrong value");
    REFUSED("{" BASE ",\"hd\":[\"example.com\"],\"tier\":\"\"}", &cfg,
            "required claim is not a string");
    REFUSED("{" BASE ",\"hd\":\"example.com\",\"tier\":null}", &cfg,
            "required claim is not a string");
}

/* go-oidc unmarshals iat into a time and sub, nonce and at_hash into strings: a claim of another
 * type fails the token there, whatever the username claim is. */
static void claim_types_checked(void)
{
    struct fg_jwt_cfg cfg = base_cfg();
    static const char *const good[] = {
        "{" BASE ",\"iat\":1699999000}",
        "{" BASE ",\"iat\":1699999000.25}",
        "{" BASE ",\"iat\":0}",
        "{" BASE ",\"iat\":1800000000}", /* in the future: kube does not check it */
        "{" BASE ",\"nonce\":\"n-0S6_WzA2Mj\"}",
        "{" BASE ",\"nonce\":\"\"}",
        "{" BASE ",\"nonce\":null}",
        "{" BASE ",\"at_hash\":\"77QmUPtjPfzWtF2AnpK9RQ\"}",
        "{" BASE ",\"at_hash\":null}",
        "{" BASE ",\"iat\":1699999000,\"nonce\":\"n\",\"at_hash\":\"h\"}",
    };
    static const struct {
        const char *claims, *why;
    } bad[] = {
        {"{" BASE ",\"iat\":\"1699999000\"}", "token iat is not a number"},
        {"{" BASE ",\"iat\":null}", "token iat is not a number"},
        {"{" BASE ",\"iat\":true}", "token iat is not a number"},
        {"{" BASE ",\"iat\":[1699999000]}", "token iat is not a number"},
        {"{" BASE ",\"iat\":{}}", "token iat is not a number"},
        {"{" BASE ",\"nonce\":42}", "token nonce is not a string"},
        {"{" BASE ",\"nonce\":[\"n\"]}", "token nonce is not a string"},
        {"{" BASE ",\"nonce\":false}", "token nonce is not a string"},
        {"{" BASE ",\"nonce\":{\"v\":\"n\"}}", "token nonce is not a string"},
        {"{" ISS "," AUD "," EXP ",\"sub\":42}", "token sub is not a string"},
        {"{" ISS "," AUD "," EXP ",\"sub\":[\"alice\"]}", "token sub is not a string"},
        {"{" ISS "," AUD "," EXP ",\"sub\":true}", "token sub is not a string"},
        {"{" ISS "," AUD "," EXP ",\"sub\":{}}", "token sub is not a string"},
        {"{" BASE ",\"at_hash\":1}", "token at_hash is not a string"},
    };
    for (size_t i = 0; i < FG_ARRAY_LEN(good); i++) {
        if (!admitted(good[i], &cfg))
            printf("#   refused: %s\n", good[i]);
        CHECK(admitted(good[i], &cfg));
    }
    for (size_t i = 0; i < FG_ARRAY_LEN(bad); i++)
        REFUSED(bad[i].claims, &cfg, bad[i].why);
    /* With another username claim, sub is still typed; an absent or null sub is fine. */
    cfg.username.claim = "email";
    CHECK(admitted("{" ISS "," AUD "," EXP ",\"email\":\"a@example.org\"}", &cfg));
    CHECK(admitted("{" ISS "," AUD "," EXP ",\"sub\":null,\"email\":\"a@example.org\"}", &cfg));
    REFUSED("{" ISS "," AUD "," EXP ",\"sub\":7,\"email\":\"a@example.org\"}", &cfg,
            "token sub is not a string");
    /* A null sub as the username claim is a missing username, as before. */
    cfg.username.claim = "sub";
    REFUSED("{" ISS "," AUD "," EXP ",\"sub\":null}", &cfg,
            "username claim missing or not a string");
    /* The issuer is checked first: a wrong issuer is not blamed on a type. */
    REFUSED("{\"iss\":\"https://evil.example\"," AUD "," EXP ",\"iat\":\"x\"}", &cfg,
            "token issuer does not match");
}

static void username_mapped(void)
{
    struct fg_jwt_cfg cfg = base_cfg();
    const char *why;
    struct fg_identity *id = ident("{" BASE "}", &cfg, &why);
    CHECK(id != NULL);
    if (id != NULL) {
        CHECK_STR(id->user, "oidc:alice");
        CHECK(id->authn == authn_name);
        CHECK(id->uid == NULL && id->ngroups == 0 && id->nextra == 0);
    }
    fg_identity_unref(id);
    cfg.username.prefix = "";
    id = ident("{" BASE "}", &cfg, &why);
    CHECK(id != NULL && strcmp(id->user, "alice") == 0);
    fg_identity_unref(id);
    cfg.username.claim = "preferred_username";
    REFUSED("{" BASE "}", &cfg, "username claim missing or not a string");
    REFUSED("{" BASE ",\"preferred_username\":5}", &cfg, "username claim missing or not a string");
    REFUSED("{" BASE ",\"preferred_username\":[\"a\"]}", &cfg,
            "username claim missing or not a string");
    REFUSED("{" BASE ",\"preferred_username\":\"\"}", &cfg, "username claim is empty");
}

static void email_verified_checked(void)
{
    struct fg_jwt_cfg cfg = base_cfg();
    const char *why;
    cfg.username.claim = "email";
    cfg.username.prefix = "";
#define EMAIL ",\"email\":\"a@example.com\""
    struct fg_identity *id = ident("{" BASE EMAIL ",\"email_verified\":true}", &cfg, &why);
    CHECK(id != NULL && strcmp(id->user, "a@example.com") == 0);
    fg_identity_unref(id);
    CHECK(admitted("{" BASE EMAIL "}", &cfg));
    REFUSED("{" BASE EMAIL ",\"email_verified\":false}", &cfg, "email not verified");
    REFUSED("{" BASE EMAIL ",\"email_verified\":\"true\"}", &cfg, "email not verified");
    REFUSED("{" BASE EMAIL ",\"email_verified\":null}", &cfg, "email not verified");
    REFUSED("{" BASE EMAIL ",\"email_verified\":1}", &cfg, "email not verified");
    /* Only the email claim as username is bound to email_verified. */
    cfg.username.claim = "sub";
    CHECK(admitted("{" BASE EMAIL ",\"email_verified\":false}", &cfg));
#undef EMAIL
}

static void groups_mapped(void)
{
    struct fg_jwt_cfg cfg = base_cfg();
    const char *why;
    cfg.groups.claim = "groups";
    cfg.groups.prefix = "oidc:";
    struct fg_identity *id = ident("{" BASE ",\"groups\":[\"dev\",\"ops\",\"dev\"]}", &cfg, &why);
    CHECK(id != NULL && id->ngroups == 2);
    if (id != NULL && id->ngroups == 2) {
        CHECK_STR(id->groups[0], "oidc:dev");
        CHECK_STR(id->groups[1], "oidc:ops");
    }
    fg_identity_unref(id);
    id = ident("{" BASE ",\"groups\":\"admins\"}", &cfg, &why);
    CHECK(id != NULL && id->ngroups == 1 && strcmp(id->groups[0], "oidc:admins") == 0);
    fg_identity_unref(id);
    id = ident("{" BASE "}", &cfg, &why);
    CHECK(id != NULL && id->ngroups == 0);
    fg_identity_unref(id);
    REFUSED("{" BASE ",\"groups\":7}", &cfg, "groups claim has the wrong type");
    REFUSED("{" BASE ",\"groups\":[\"dev\",7]}", &cfg, "groups claim has the wrong type");
    REFUSED("{" BASE ",\"groups\":{\"a\":\"b\"}}", &cfg, "groups claim has the wrong type");
    REFUSED("{" BASE ",\"groups\":null}", &cfg, "groups claim has the wrong type");
    /* Without a groups mapping the claim is ignored, whatever its type. */
    cfg.groups.claim = NULL;
    id = ident("{" BASE ",\"groups\":7}", &cfg, &why);
    CHECK(id != NULL && id->ngroups == 0);
    fg_identity_unref(id);
}

static void uid_mapped(void)
{
    struct fg_jwt_cfg cfg = base_cfg();
    const char *why;
    cfg.uid.claim = "oid";
    struct fg_identity *id = ident("{" BASE ",\"oid\":\"u-123\"}", &cfg, &why);
    CHECK(id != NULL && id->uid != NULL && strcmp(id->uid, "u-123") == 0);
    fg_identity_unref(id);
    id = ident("{" BASE "}", &cfg, &why);
    CHECK(id != NULL && id->uid == NULL);
    fg_identity_unref(id);
    REFUSED("{" BASE ",\"oid\":123}", &cfg, "uid claim is not a string");
}

static void extra_mapped(void)
{
    struct fg_extra_map extra[] = {{"example.org/tenant", "tenant"},
                                   {"example.org/roles", "roles"}};
    struct fg_jwt_cfg cfg = base_cfg();
    const char *why;
    cfg.extra = extra;
    cfg.nextra = 2;
    struct fg_identity *id =
        ident("{" BASE ",\"tenant\":\"acme\",\"roles\":[\"a\",\"\",\"b\"]}", &cfg, &why);
    CHECK(id != NULL);
    if (id != NULL) {
        const struct fg_extra *t = fg_identity_get_extra(id, "example.org/tenant");
        const struct fg_extra *r = fg_identity_get_extra(id, "example.org/roles");
        CHECK(t != NULL && t->nvalues == 1 && strcmp(t->values[0], "acme") == 0);
        CHECK(r != NULL && r->nvalues == 2);
        if (r != NULL && r->nvalues == 2) {
            CHECK_STR(r->values[0], "a");
            CHECK_STR(r->values[1], "b");
        }
    }
    fg_identity_unref(id);
    id = ident("{" BASE ",\"tenant\":\"\",\"roles\":null}", &cfg, &why);
    CHECK(id != NULL && id->nextra == 0);
    fg_identity_unref(id);
    id = ident("{" BASE "}", &cfg, &why);
    CHECK(id != NULL && id->nextra == 0);
    fg_identity_unref(id);
    REFUSED("{" BASE ",\"tenant\":5}", &cfg, "extra claim has the wrong type");
    REFUSED("{" BASE ",\"roles\":[\"a\",true]}", &cfg, "extra claim has the wrong type");
    REFUSED("{" BASE ",\"roles\":{}}", &cfg, "extra claim has the wrong type");
}

static void jti_extra(void)
{
    struct fg_jwt_cfg cfg = base_cfg();
    const char *why;
    struct fg_identity *id = ident("{" BASE ",\"jti\":\"abc-123\"}", &cfg, &why);
    const struct fg_extra *e = id ? fg_identity_get_extra(id, CREDENTIAL_ID) : NULL;
    CHECK(e != NULL && e->nvalues == 1 && strcmp(e->values[0], "JTI=abc-123") == 0);
    fg_identity_unref(id);
    id = ident("{" BASE ",\"jti\":42}", &cfg, &why);
    CHECK(id != NULL && id->nextra == 0);
    fg_identity_unref(id);
    id = ident("{" BASE ",\"jti\":\"\"}", &cfg, &why);
    CHECK(id != NULL && id->nextra == 0);
    fg_identity_unref(id);
}

/*
 * Claim bytes are kept as they are (jwt.h): a sub with CR/LF maps to a user
 * with CR/LF, which fg_identity_header_safe then refuses.
 */
static void control_bytes_kept_for_caller(void)
{
    struct fg_jwt_cfg cfg = base_cfg();
    const char *why;
    cfg.groups.claim = "groups";
    cfg.groups.prefix = "";
    struct fg_identity *id =
        ident("{" ISS "," AUD "," EXP ",\"sub\":\"ali\\r\\nce\",\"groups\":[\"ok\"]}", &cfg, &why);
    CHECK(id != NULL && strcmp(id->user, "oidc:ali\r\nce") == 0);
    CHECK(id != NULL && !fg_identity_header_safe(id));
    fg_identity_unref(id);
    id = ident("{" BASE ",\"groups\":[\"a\\u0001b\"]}", &cfg, &why);
    CHECK(id != NULL && !fg_identity_header_safe(id));
    fg_identity_unref(id);
    id = ident("{" BASE ",\"groups\":[\"ok\"]}", &cfg, &why);
    CHECK(id != NULL && fg_identity_header_safe(id));
    fg_identity_unref(id);
    /* NUL cannot hide in a claim: JSON "\u0000" is refused at parse. */
    REFUSED("{" ISS "," AUD "," EXP ",\"sub\":\"a\\u0000b\"}", &cfg,
            "token claims are not a JSON object");
}

/* No refusal reason carries token text: every why is one of jwt.c's fixed strings. */
static void why_is_static(void)
{
    char *tok = mint("{\"alg\":\"RS256\",\"kid\":\"SECRETKID\"}", "{\"sub\":\"SECRETSUB\"}",
                     FG_JWT_RS256, keys[RSA_B]);
    struct fg_jwt t;
    const char *why = NULL;
    struct fg_jwt_cfg cfg = base_cfg();
    CHECK(fg_jwt_parse(tok, strlen(tok), &t, &why) == FG_JWT_PARSED);
    CHECK(fg_jwt_verify(&t, keys[RSA_A], &why) == -1);
    CHECK(strstr(why, "SECRET") == NULL);
    CHECK(fg_jwt_identity(&t, &cfg, NOW, authn_name, NULL, &why) == NULL);
    CHECK(strstr(why, "SECRET") == NULL);
    fg_jwt_clear(&t);
    free(tok);
}

int main(void)
{
    make_keys();
    RUN(b64_known_vectors);
    RUN(b64_round_trips);
    RUN(b64_rejections);
    RUN(every_alg_verifies);
    RUN(public_keys_verify);
    RUN(wrong_key_fails);
    RUN(wrong_key_type_fails);
    RUN(padding_mode_is_bound_to_alg);
    RUN(signature_length_checked);
    RUN(ecdsa_der_signature_refused);
    RUN(ecdsa_zero_signature_fails);
    RUN(jwk_style_ec_key);
    RUN(freed_keys_do_not_alias);
    RUN(threads_verify);
    RUN(header_shared_read_only);
    RUN(alg_none_refused);
    RUN(hmac_refused);
    RUN(header_checks);
    RUN(claims_checks);
    RUN(not_jwt_shapes);
    RUN(jwe_refused);
    RUN(malformed_tokens);
    RUN(oversized_refused);
    RUN(nesting_bomb_refused);
    RUN(alg_table);
    RUN(issuer_checked);
    RUN(exp_checked);
    RUN(nbf_checked);
    RUN(aud_checked);
    RUN(claim_rules_checked);
    RUN(claim_types_checked);
    RUN(username_mapped);
    RUN(email_verified_checked);
    RUN(groups_mapped);
    RUN(uid_mapped);
    RUN(extra_mapped);
    RUN(jti_extra);
    RUN(control_bytes_kept_for_caller);
    RUN(why_is_static);
    for (int i = 0; i < NKEYS; i++)
        EVP_PKEY_free(keys[i]);
    DONE();
}
