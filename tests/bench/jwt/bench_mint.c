/*
 * bench_mint.c - minting (`identity: mint`) through frontgate's own code next to
 * libjwt 1.x, on one thread. For RS256 (2048-bit RSA) and ES256 (P-256), the
 * claims set auth/mint.c signs ({"iss","sub","aud","groups":[3 groups],"iat",
 * "nbf","exp","jti"}, kid header) is minted for N distinct identities (so the
 * mint cache never hits) by:
 *   - fg:     fg_mint_token (auth/mint.c: jansson claims, EVP_DigestSign with
 *             the EVP_PKEY parsed once by fg_mint_new, cache put);
 *   - libjwt: what a port of fg_mint_token to libjwt would do per token:
 *             jwt_new, jwt_set_alg with the PEM key bytes, jwt_add_header
 *             (kid), jwt_add_grant / jwt_add_grant_int / jwt_add_grants_json
 *             (groups), jwt_encode_str, jwt_free;
 * and, to attribute the difference:
 *   - libjwt_reuse: one jwt_t for every token (jwt_set_alg and kid once,
 *             jwt_del_grants then the grants again per token), the cheapest
 *             libjwt 1.x can do: its jwt_encode_str still reads the PEM key
 *             (BIO_new_mem_buf + PEM_read_bio_PrivateKey) on every call;
 *   - pem:    that PEM read alone (BIO_new_mem_buf, PEM_read_bio_PrivateKey,
 *             EVP_PKEY_free).
 * The paths run in interleaved slices (order rotating), so a burst of load on
 * this shared machine falls on all of them. Every token of each path must then
 * verify, untimed, with frontgate's own verifier against the key set the mint
 * publishes (fg_mint_jwks -> fg_keyset_parse, fg_jwt_parse, fg_jwt_verify,
 * fg_jwt_identity: iss, aud, times, sub and groups as minted), and a sample of
 * each path's tokens must verify with libjwt's jwt_decode and the public PEM.
 *
 *   bench_mint [-e es256_tokens] [-n rs256_tokens] [-r rounds] [-s slices]
 *
 * Results are "name value" lines per round ("round N" ... "end_round N"), for
 * tests/bench/jwt/run; lines starting with '#' are commentary.
 */
#include "auth/jwks.h"
#include "auth/jwt.h"
#include "auth/mint.h"
#include "tests/unit/testkeys.h"

#include <errno.h>
#include <jansson.h>
#include <jwt.h> /* libjwt's */
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ISSUER   "https://frontgate.bench.example/mint"
#define AUDIENCE "lakekeeper"
#define TTL_S    300
#define AUTHN    "mint-bench"
#define SAMPLE   50 /* tokens per path checked with libjwt's jwt_decode */

enum path { P_FG, P_LJ, P_LJ_REUSE, P_PEM, NPATHS };
static const char *path_names[NPATHS] = {"fg", "libjwt", "libjwt_reuse", "pem"};

struct alg {
    const char *name; /* "rs256", "es256" */
    enum fg_jwt_alg fg_alg;
    jwt_alg_t lj_alg;
    EVP_PKEY *key;
    char *pem; /* PKCS#8 private key, what mint.keyFile holds */
    size_t pem_len;
    char *pub_pem;
    size_t pub_len;
    struct fg_mint *mint;
    char *kid; /* the mint's (RFC 7638 thumbprint), read back from its JWKS */
    struct fg_keyset *jwks;
    size_t n;
    struct fg_identity **ids;
    char **tok[NPATHS]; /* tokens of the last round, for the checks */
    jwt_t *reuse;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_mint: %s\n", what);
    exit(1);
}

static char *bio_text(BIO *b, size_t *len)
{
    char *p;
    long n = BIO_get_mem_data(b, &p);
    char *out = fg_malloc((size_t)n + 1);
    memcpy(out, p, (size_t)n);
    out[n] = '\0';
    *len = (size_t)n;
    return out;
}

static void setup_alg(struct alg *a, const char *name, size_t n)
{
    a->name = name;
    a->n = n;
    int es = strcmp(name, "es256") == 0;
    a->fg_alg = es ? FG_JWT_ES256 : FG_JWT_RS256;
    a->lj_alg = es ? JWT_ALG_ES256 : JWT_ALG_RS256;
    a->key = es ? tk_ec("P-256") : tk_rsa(2048);

    BIO *b = BIO_new(BIO_s_mem());
    if (PEM_write_bio_PrivateKey(b, a->key, NULL, NULL, 0, NULL, NULL) != 1)
        die("cannot write the private key");
    a->pem = bio_text(b, &a->pem_len);
    BIO_free(b);
    b = BIO_new(BIO_s_mem());
    if (PEM_write_bio_PUBKEY(b, a->key) != 1)
        die("cannot write the public key");
    a->pub_pem = bio_text(b, &a->pub_len);
    BIO_free(b);

    /* fg_mint_new reads mint.keyFile: give it one, for as long as it takes to load. */
    const char *tmp = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof(path), "%s/bench_mint.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, a->pem, a->pem_len) != (ssize_t)a->pem_len || close(fd) != 0)
        die("cannot write the key file");
    struct fg_errs errs = {0};
    a->mint = fg_mint_new(ISSUER, AUDIENCE, TTL_S, path, &errs, "bench", 0, 0);
    unlink(path);
    if (a->mint == NULL) {
        fg_errs_print(&errs, 0);
        die("fg_mint_new failed");
    }
    fg_errs_free(&errs);

    struct fg_buf jwks = {0};
    fg_mint_jwks(a->mint, fg_wall_s(), &jwks);
    json_t *doc = json_loads(jwks.data, 0, NULL);
    const char *kid =
        json_string_value(json_object_get(json_array_get(json_object_get(doc, "keys"), 0), "kid"));
    if (kid == NULL)
        die("no kid in the mint's JWKS");
    a->kid = fg_strdup(kid);
    json_decref(doc);
    const char *why = NULL;
    a->jwks = fg_keyset_parse(jwks.data, jwks.len, &why);
    if (a->jwks == NULL)
        die(why);
    fg_buf_free(&jwks);

    /* Distinct identities, three groups each, as a Keycloak user would bring. */
    a->ids = fg_calloc(n, sizeof(*a->ids));
    for (size_t i = 0; i < n; i++) {
        char s[64];
        snprintf(s, sizeof(s), "oidc:user-%06zu@corp.example", i);
        a->ids[i] = fg_identity_new(s, "bench");
        fg_identity_add_group(a->ids[i], "system:authenticated");
        snprintf(s, sizeof(s), "oidc:team-%zu", i % 37);
        fg_identity_add_group(a->ids[i], s);
        fg_identity_add_group(a->ids[i], "oidc:developers");
    }
    for (int p = 0; p < NPATHS; p++)
        a->tok[p] = fg_calloc(n, sizeof(char *));

    if (jwt_new(&a->reuse) != 0 ||
        jwt_set_alg(a->reuse, a->lj_alg, (const unsigned char *)a->pem, (int)a->pem_len) != 0 ||
        jwt_add_header(a->reuse, "kid", a->kid) != 0)
        die("libjwt: cannot set up a jwt_t");
}

static void free_alg(struct alg *a)
{
    for (int p = 0; p < NPATHS; p++) {
        for (size_t i = 0; i < a->n; i++)
            free(a->tok[p][i]);
        free(a->tok[p]);
    }
    for (size_t i = 0; i < a->n; i++)
        fg_identity_unref(a->ids[i]);
    free(a->ids);
    jwt_free(a->reuse);
    fg_keyset_unref(a->jwks);
    fg_mint_free(a->mint);
    EVP_PKEY_free(a->key);
    free(a->kid);
    free(a->pem);
    free(a->pub_pem);
}

/* The claims fg_mint_token signs, as libjwt grants. 0 on success. */
static int lj_grants(jwt_t *j, const struct fg_identity *id, int64_t now)
{
    unsigned char jti[12];
    char jtis[24];
    fg_random(jti, sizeof(jti));
    fg_b64url_encode(jti, sizeof(jti), jtis);
    /* groups need JSON (libjwt has no array setter): escaped by jansson, as mint.c does */
    json_t *groups = json_array();
    for (size_t i = 0; i < id->ngroups; i++)
        json_array_append_new(groups, json_string(id->groups[i]));
    json_t *g = json_pack("{s:o}", "groups", groups);
    char *gj = json_dumps(g, JSON_COMPACT);
    json_decref(g);
    int rc = gj == NULL || jwt_add_grant(j, "iss", ISSUER) || jwt_add_grant(j, "sub", id->user) ||
             jwt_add_grant(j, "aud", AUDIENCE) || jwt_add_grants_json(j, gj) ||
             jwt_add_grant_int(j, "iat", (long)now) || jwt_add_grant_int(j, "nbf", (long)now) ||
             jwt_add_grant_int(j, "exp", (long)(now + TTL_S)) || jwt_add_grant(j, "jti", jtis);
    free(gj);
    return rc;
}

/* A straight port of fg_mint_token's signing to libjwt 1.x. */
static char *lj_mint(const struct alg *a, const struct fg_identity *id, int64_t now)
{
    jwt_t *j = NULL;
    if (jwt_new(&j) != 0)
        return NULL;
    char *tok = NULL;
    if (jwt_set_alg(j, a->lj_alg, (const unsigned char *)a->pem, (int)a->pem_len) == 0 &&
        jwt_add_header(j, "kid", a->kid) == 0 && lj_grants(j, id, now) == 0)
        tok = jwt_encode_str(j);
    jwt_free(j);
    return tok;
}

static char *lj_mint_reuse(const struct alg *a, const struct fg_identity *id, int64_t now)
{
    if (jwt_del_grants(a->reuse, NULL) != 0 || lj_grants(a->reuse, id, now) != 0)
        return NULL;
    return jwt_encode_str(a->reuse);
}

static char *pem_read(const struct alg *a)
{
    BIO *b = BIO_new_mem_buf(a->pem, (int)a->pem_len);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    char *ok = k ? fg_strdup("ok") : NULL;
    EVP_PKEY_free(k);
    return ok;
}

static char *mint_one(struct alg *a, enum path p, size_t i, int64_t now)
{
    switch (p) {
    case P_FG:
        return fg_mint_token(a->mint, a->ids[i], now);
    case P_LJ:
        return lj_mint(a, a->ids[i], now);
    case P_LJ_REUSE:
        return lj_mint_reuse(a, a->ids[i], now);
    default:
        return pem_read(a);
    }
}

/* Tokens [from, to) through path p; seconds taken. */
static double run_range(struct alg *a, enum path p, size_t from, size_t to, int64_t now)
{
    double t0 = now_s();
    for (size_t i = from; i < to; i++) {
        free(a->tok[p][i]);
        a->tok[p][i] = mint_one(a, p, i, now);
        if (a->tok[p][i] == NULL) {
            fprintf(stderr, "bench_mint: %s %s: minting failed (errno %d)\n", a->name,
                    path_names[p], errno);
            exit(1);
        }
    }
    return now_s() - t0;
}

/* µs per token of each path, over the whole set in interleaved slices. */
static void round_times(struct alg *a, size_t slices, int64_t now, double us[NPATHS])
{
    double secs[NPATHS] = {0};
    size_t warm = a->n / 20 + 1; /* per-path warm-up, not timed */
    for (int p = 0; p < NPATHS; p++)
        run_range(a, (enum path)p, 0, warm, now);
    for (size_t s = 0; s < slices; s++) {
        size_t from = warm + (a->n - warm) * s / slices,
               to = warm + (a->n - warm) * (s + 1) / slices;
        for (int k = 0; k < NPATHS; k++) {
            enum path p = (enum path)((k + s) % NPATHS);
            secs[p] += run_range(a, p, from, to, now);
        }
    }
    for (int p = 0; p < NPATHS; p++)
        us[p] = secs[p] * 1e6 / (double)(a->n - warm);
}

/* Every token of path p through frontgate's verifier, against the mint's own JWKS. */
static void check_fg(const struct alg *a, enum path p, int64_t now)
{
    struct fg_jwt_cfg cfg = {0};
    char *auds[] = {(char *)AUDIENCE};
    cfg.issuer_url = (char *)ISSUER;
    cfg.audiences = auds;
    cfg.naudiences = 1;
    cfg.username.claim = (char *)"sub";
    cfg.username.prefix = (char *)"";
    cfg.groups.claim = (char *)"groups";
    cfg.groups.prefix = (char *)"";
    for (size_t i = 0; i < a->n; i++) {
        const char *tok = a->tok[p][i], *why = "wrong alg or kid";
        struct fg_jwt jwt;
        struct fg_identity *got = NULL;
        if (fg_jwt_parse(tok, strlen(tok), &jwt, &why) != FG_JWT_PARSED)
            goto bad;
        size_t pos = 0;
        const struct fg_jwk *k;
        if (jwt.alg == a->fg_alg && jwt.kid && strcmp(jwt.kid, a->kid) == 0 &&
            (k = fg_keyset_next(a->jwks, jwt.kid, jwt.alg, &pos)) != NULL &&
            fg_jwt_verify(&jwt, k->pkey, &why) == 0) {
            int64_t exp = 0;
            got = fg_jwt_identity(&jwt, &cfg, now, AUTHN, &exp, &why);
            const struct fg_identity *want = a->ids[i];
            int same = got && exp == now + TTL_S && strcmp(got->user, want->user) == 0 &&
                       got->ngroups == want->ngroups;
            for (size_t g = 0; same && g < want->ngroups; g++)
                same = strcmp(got->groups[g], want->groups[g]) == 0;
            if (got && !same)
                why = "claims differ from the identity minted";
            fg_identity_unref(got);
            if (same) {
                fg_jwt_clear(&jwt);
                continue;
            }
        }
        fg_jwt_clear(&jwt);
    bad:
        fprintf(stderr, "bench_mint: %s %s token %zu does not verify: %s\n  %s\n", a->name,
                path_names[p], i, why, tok);
        exit(1);
    }
}

/* A sample of path p's tokens through libjwt's own verifier, with the public PEM. */
static void check_lj(const struct alg *a, enum path p)
{
    for (size_t i = 0; i < a->n && i < SAMPLE; i++) {
        jwt_t *j = NULL;
        int rc = jwt_decode(&j, a->tok[p][i], (const unsigned char *)a->pub_pem, (int)a->pub_len);
        const char *sub = rc == 0 ? jwt_get_grant(j, "sub") : NULL;
        const char *kid = rc == 0 ? jwt_get_header(j, "kid") : NULL;
        if (rc != 0 || jwt_get_alg(j) != a->lj_alg || sub == NULL ||
            strcmp(sub, a->ids[i]->user) != 0 || kid == NULL || strcmp(kid, a->kid) != 0) {
            fprintf(stderr, "bench_mint: %s %s token %zu fails libjwt's jwt_decode (%d)\n", a->name,
                    path_names[p], i, rc);
            exit(1);
        }
        jwt_free(j);
    }
}

static size_t arg_size(const char *s, size_t min, size_t max)
{
    uint64_t v;
    if (fg_parse_u64(s, strlen(s), max, &v) != 0 || v < min) {
        fprintf(stderr, "bench_mint: bad number %s\n", s);
        exit(2);
    }
    return (size_t)v;
}

int main(int argc, char **argv)
{
    size_t n_es = 20000, n_rs = 5000, rounds = 3, slices = 10;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-e") == 0 && i + 1 < argc)
            n_es = arg_size(argv[++i], 200, 10000000);
        else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            n_rs = arg_size(argv[++i], 200, 10000000);
        else if (strcmp(argv[i], "-r") == 0 && i + 1 < argc)
            rounds = arg_size(argv[++i], 1, 100);
        else if (strcmp(argv[i], "-s") == 0 && i + 1 < argc)
            slices = arg_size(argv[++i], 1, 1000);
        else {
            fprintf(stderr, "usage: bench_mint [-e es256_tokens] [-n rs256_tokens] [-r rounds] "
                            "[-s slices]\n");
            return 2;
        }
    }
    fg_log_set_level(FG_LOG_ERROR);
    struct alg algs[2];
    setup_alg(&algs[0], "rs256", n_rs);
    setup_alg(&algs[1], "es256", n_es);
    printf("# libjwt %s, OpenSSL %s; %zu RS256 and %zu ES256 tokens per round, %zu slices\n",
           FG_LIBJWT_VERSION, OpenSSL_version(OPENSSL_VERSION_STRING), n_rs, n_es, slices);

    for (size_t r = 1; r <= rounds; r++) {
        int64_t now = fg_wall_s();
        double us[2][NPATHS];
        for (int k = 0; k < 2; k++)
            round_times(&algs[k], slices, now, us[k]);
        for (int k = 0; k < 2; k++) {
            for (int p = 0; p < NPATHS; p++)
                if (p != P_PEM)
                    check_fg(&algs[k], (enum path)p, now);
            check_lj(&algs[k], P_FG);
            check_lj(&algs[k], P_LJ);
        }
        printf("round %zu\n", r);
        for (int k = 0; k < 2; k++) {
            for (int p = 0; p < NPATHS; p++)
                printf("%s_%s_us %.2f\n", algs[k].name, path_names[p], us[k][p]);
            printf("%s_ratio %.3f\n", algs[k].name, us[k][P_LJ] / us[k][P_FG]);
        }
        printf("end_round %zu\n", r);
        fflush(stdout);
    }
    printf("# every token of fg, libjwt and libjwt_reuse verified with fg_jwt_verify against the "
           "mint's JWKS (claims as minted); %d of each of fg and libjwt with libjwt's jwt_decode\n",
           SAMPLE);
    for (int k = 0; k < 2; k++)
        free_alg(&algs[k]);
    fg_mint_shutdown();
    return 0;
}
