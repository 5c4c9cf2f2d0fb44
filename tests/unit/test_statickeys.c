/*
 * test_statickeys.c - the static key file (auth/statickeys.h): its grammar
 * and every malformed form, lookup by token, key generation, and the
 * authenticator interface over it (auth/authn.h), including bearer parsing.
 */
#include "t.h"

#include "auth/authn.h"
#include "auth/statickeys.h"
#include "config/config.h"

#include <stdlib.h>
#include <unistd.h>

/* sha256("abc"), FIPS 180-2 appendix B.1. */
#define ABC_HEX "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/* Two distinct valid hashes for lines whose token does not matter. */
#define H1 "1111111111111111111111111111111111111111111111111111111111111111"
#define H2 "2222222222222222222222222222222222222222222222222222222222222222"

static struct fg_statickeys *parse(const char *text, struct fg_errs *errs)
{
    return fg_statickeys_parse("keys.txt", text, strlen(text), NULL, "ops-keys", errs);
}

/* Parses text that must be refused; true when an error starts with want. */
static int refused_at(const char *text, size_t len, const char *want)
{
    struct fg_errs errs = {0};
    struct fg_statickeys *ks = fg_statickeys_parse("keys.txt", text, len, NULL, "k", &errs);
    int found = 0;
    for (size_t i = 0; i < errs.n; i++)
        found |= strncmp(errs.msgs[i], want, strlen(want)) == 0;
    if (ks != NULL || !found) {
        printf("#   want error \"%s\"; %s, errors:\n", want, ks ? "parsed" : "refused");
        for (size_t i = 0; i < errs.n; i++)
            printf("#     %s\n", errs.msgs[i]);
    }
    fg_statickeys_free(ks);
    fg_errs_free(&errs);
    return ks == NULL && found;
}

#define REFUSED(text, want) CHECK(refused_at((text), strlen(text), (want)))

/* A key-file line for token: "<id>:<sha256(token)><tail>\n". */
static void add_line(struct fg_buf *b, const char *id, const char *token, const char *tail)
{
    char hex[65];
    fg_sha256_hex(token, strlen(token), hex);
    fg_buf_printf(b, "%s:%s%s\n", id, hex, tail);
}

static const struct fg_identity *lookup(const struct fg_statickeys *ks, const char *token)
{
    return fg_statickeys_lookup(ks, token, strlen(token));
}

static void sha256_known_vectors(void)
{
    char hex[65];
    fg_sha256_hex("abc", 3, hex);
    CHECK_STR(hex, ABC_HEX);
    fg_sha256_hex("", 0, hex);
    CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void parse_good_file(void)
{
    struct fg_buf b = {0};
    fg_buf_adds(&b, "# ops keys\n\n");
    add_line(&b, "alice", "tok-alice", ":admins,dev");
    fg_buf_adds(&b, "   \n\t\n  # indented comment\n");
    add_line(&b, "bob@example.com", "tok-bob", "");
    add_line(&b, "svc.ci_1-2+x/y", "tok-ci", ":system:masters");
    struct fg_errs errs = {0};
    struct fg_statickeys *ks = parse(b.data, &errs);
    CHECK(ks != NULL && errs.n == 0);
    CHECK(ks && fg_statickeys_count(ks) == 3);
    fg_statickeys_free(ks);
    fg_errs_free(&errs);
    fg_buf_free(&b);
}

static void empty_and_comment_only_files(void)
{
    struct fg_errs errs = {0};
    struct fg_statickeys *ks = parse("", &errs);
    CHECK(ks != NULL && fg_statickeys_count(ks) == 0);
    CHECK(ks && lookup(ks, "anything") == NULL);
    fg_statickeys_free(ks);
    ks = parse("# nothing\n\n#" H1 "\n", &errs);
    CHECK(ks != NULL && fg_statickeys_count(ks) == 0);
    fg_statickeys_free(ks);
    CHECK(errs.n == 0);
    fg_errs_free(&errs);
}

static void lookup_by_token(void)
{
    struct fg_buf b = {0};
    add_line(&b, "alice", "tok-alice", ":admins,dev");
    add_line(&b, "bob", "tok-bob", "");
    struct fg_errs errs = {0};
    struct fg_statickeys *ks = parse(b.data, &errs);
    CHECK(ks != NULL);
    const struct fg_identity *id = ks ? lookup(ks, "tok-alice") : NULL;
    CHECK(id != NULL);
    if (id) {
        CHECK_STR(id->user, "alice");
        CHECK(id->ngroups == 2);
        CHECK(fg_identity_has_group(id, "admins"));
        CHECK(fg_identity_has_group(id, "dev"));
        CHECK_STR(id->authn, "ops-keys");
        CHECK(id->uid == NULL);
    }
    id = ks ? lookup(ks, "tok-bob") : NULL;
    CHECK(id != NULL && strcmp(id->user, "bob") == 0 && id->ngroups == 0);
    if (ks) {
        CHECK(lookup(ks, "tok-carol") == NULL);
        CHECK(lookup(ks, "tok-alic") == NULL);
        CHECK(lookup(ks, "tok-alicee") == NULL);
        CHECK(lookup(ks, "") == NULL);
        /* The hash itself is not a credential. */
        char hex[65];
        fg_sha256_hex("tok-alice", 9, hex);
        CHECK(lookup(ks, hex) == NULL);
    }
    fg_statickeys_free(ks);
    fg_errs_free(&errs);
    fg_buf_free(&b);
}

/* The lookup hashes exactly token_len bytes. */
static void lookup_length_delimited(void)
{
    struct fg_errs errs = {0};
    struct fg_statickeys *ks = parse("k:" ABC_HEX "\n", &errs);
    CHECK(ks != NULL);
    if (ks) {
        CHECK(fg_statickeys_lookup(ks, "abcdef", 3) != NULL);
        CHECK(fg_statickeys_lookup(ks, "abcdef", 4) == NULL);
    }
    fg_statickeys_free(ks);
    fg_errs_free(&errs);
}

static void uppercase_hex_accepted(void)
{
    char upper[65];
    for (int i = 0; i < 65; i++)
        upper[i] = (char)((ABC_HEX[i] >= 'a' && ABC_HEX[i] <= 'f') ? ABC_HEX[i] - 32 : ABC_HEX[i]);
    struct fg_buf b = {0};
    fg_buf_printf(&b, "k:%s\n", upper);
    struct fg_errs errs = {0};
    struct fg_statickeys *ks = parse(b.data, &errs);
    CHECK(ks != NULL && lookup(ks, "abc") != NULL);
    fg_statickeys_free(ks);
    fg_errs_free(&errs);
    fg_buf_free(&b);
}

static void username_prefix(void)
{
    struct fg_errs errs = {0};
    const char *text = "alice:" ABC_HEX ":g\n";
    struct fg_statickeys *ks =
        fg_statickeys_parse("keys.txt", text, strlen(text), "apikey:", "ops", &errs);
    const struct fg_identity *id = ks ? lookup(ks, "abc") : NULL;
    CHECK(id != NULL && strcmp(id->user, "apikey:alice") == 0);
    CHECK(id != NULL && strcmp(id->authn, "ops") == 0);
    fg_statickeys_free(ks);
    fg_errs_free(&errs);
}

/* Duplicate ids are found by the id without the prefix. */
static void username_prefix_duplicate_id(void)
{
    struct fg_errs errs = {0};
    const char *text = "alice:" H1 "\nalice:" H2 "\n";
    struct fg_statickeys *ks =
        fg_statickeys_parse("keys.txt", text, strlen(text), "p:", "ops", &errs);
    CHECK(ks == NULL);
    CHECK(errs.n == 1);
    CHECK(errs.n && strncmp(errs.msgs[0], "keys.txt:2:1: ", 14) == 0);
    fg_errs_free(&errs);
}

/* Groups may contain ':' (kube groups do) and repeated groups collapse. */
static void groups_with_colons(void)
{
    struct fg_errs errs = {0};
    struct fg_statickeys *ks =
        parse("k:" ABC_HEX ":system:masters,oidc:team-a,oidc:team-a\n", &errs);
    const struct fg_identity *id = ks ? lookup(ks, "abc") : NULL;
    CHECK(id != NULL && id->ngroups == 2);
    CHECK(id && fg_identity_has_group(id, "system:masters"));
    CHECK(id && fg_identity_has_group(id, "oidc:team-a"));
    fg_statickeys_free(ks);
    fg_errs_free(&errs);
}

static void crlf_line_endings(void)
{
    struct fg_errs errs = {0};
    struct fg_statickeys *ks = parse("# c\r\n\r\nk:" ABC_HEX ":a,b\r\nj:" H1 "\r\n", &errs);
    CHECK(ks != NULL && fg_statickeys_count(ks) == 2);
    const struct fg_identity *id = ks ? lookup(ks, "abc") : NULL;
    CHECK(id && id->ngroups == 2 && fg_identity_has_group(id, "b"));
    fg_statickeys_free(ks);
    fg_errs_free(&errs);
}

/* The last line needs no newline. */
static void no_final_newline(void)
{
    struct fg_errs errs = {0};
    struct fg_statickeys *ks = parse("j:" H1 "\nk:" ABC_HEX, &errs);
    CHECK(ks != NULL && lookup(ks, "abc") != NULL);
    fg_statickeys_free(ks);
    fg_errs_free(&errs);
}

/* Enough keys to regrow both tables several times; every one still found. */
/* Enough keys for a lookup table past 2 MiB (fg_calloc_huge); every third has groups. */
static void many_keys(void)
{
    enum { N = 60000 };
    struct fg_buf b = {0};
    char id[32], tok[32];
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "key-%d", i);
        snprintf(tok, sizeof(tok), "token-%d", i);
        add_line(&b, id, tok, i % 3 ? "" : ":dev,ops");
    }
    struct fg_errs errs = {0};
    struct fg_statickeys *ks = parse(b.data, &errs);
    CHECK(ks != NULL && fg_statickeys_count(ks) == N);
    int missing = 0;
    for (int i = 0; ks && i < N; i++) {
        snprintf(id, sizeof(id), "key-%d", i);
        snprintf(tok, sizeof(tok), "token-%d", i);
        const struct fg_identity *x = lookup(ks, tok);
        missing += x == NULL || strcmp(x->user, id) != 0 || x->ngroups != (i % 3 ? 0u : 2u) ||
                   (x->ngroups && strcmp(x->groups[1], "ops") != 0);
    }
    CHECK(missing == 0);
    CHECK(ks && lookup(ks, "token-60000") == NULL);
    fg_statickeys_free(ks);
    fg_errs_free(&errs);
    fg_buf_free(&b);
}

static void malformed_no_colon(void)
{
    REFUSED("justakey\n", "keys.txt:1:1: ");
    REFUSED("# ok\n" ABC_HEX "\n", "keys.txt:2:1: ");
}

static void malformed_empty_id(void)
{
    REFUSED(":" ABC_HEX "\n", "keys.txt:1:1: empty key id");
}

static void malformed_id_chars(void)
{
    REFUSED("a b:" ABC_HEX "\n", "keys.txt:1:2: key id");
    REFUSED("ali!ce:" ABC_HEX "\n", "keys.txt:1:4: key id");
    REFUSED("al\x01:" ABC_HEX "\n", "keys.txt:1:3: key id");
    REFUSED("caf\xc3\xa9:" ABC_HEX "\n", "keys.txt:1:4: key id");
    REFUSED("a#b:" ABC_HEX "\n", "keys.txt:1:2: key id");
}

static void malformed_hash_length(void)
{
    /* 63 and 65 digits; the column is where the hash starts. */
    REFUSED("k:"
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a"
            "\n",
            "keys.txt:1:3: the hash must be 64 hex digits");
    REFUSED("k:" ABC_HEX "0\n", "keys.txt:1:3: the hash must be 64 hex digits");
    REFUSED("k:\n", "keys.txt:1:3: the hash must be 64 hex digits");
    REFUSED("k::g\n", "keys.txt:1:3: the hash must be 64 hex digits");
}

static void malformed_hex_digit(void)
{
    /* 'g' as the first digit of the hash, then in a low nibble further on. */
    REFUSED("k:g"
            "a7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n",
            "keys.txt:1:3: invalid hex digit");
    REFUSED("k:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015aZ\n",
            "keys.txt:1:66: invalid hex digit");
    REFUSED("k:ba7816bf8f01cfea414140de5dae2223 00361a396177a9cb410ff61f20015ad\n",
            "keys.txt:1:35: invalid hex digit");
}

static void malformed_duplicate_id(void)
{
    REFUSED("alice:" H1 "\nbob:" H2 "\nalice:" ABC_HEX "\n", "keys.txt:3:1: key id \"alice\"");
}

/* The same secret under two ids is refused, whatever the hex case. */
static void malformed_duplicate_hash(void)
{
    REFUSED("a:" H1 "\nb:" H1 "\n", "keys.txt:2:3: this hash is listed twice");
    REFUSED("a:" ABC_HEX "\nb:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD\n",
            "keys.txt:2:3: this hash is listed twice");
}

static void malformed_empty_group(void)
{
    REFUSED("k:" ABC_HEX ":a,,b\n", "keys.txt:1:70: empty group name");
    REFUSED("k:" ABC_HEX ":,a\n", "keys.txt:1:68: empty group name");
}

/* "id:hash:" has a group separator but no group: the grammar wants at least one. */
static void malformed_empty_group_list(void)
{
    REFUSED("k:" ABC_HEX ":\n", "keys.txt:1:");
}

static void malformed_trailing_comma(void)
{
    REFUSED("k:" ABC_HEX ":a,b,\n", "keys.txt:1:71: trailing comma");
}

static void malformed_group_chars(void)
{
    REFUSED("k:" ABC_HEX ":a,b c\n", "keys.txt:1:71: group names may not");
    REFUSED("k:" ABC_HEX ":a\x01\n", "keys.txt:1:69: group names may not");
    REFUSED("k:" ABC_HEX ":a\tb\n", "keys.txt:1:69: group names may not");
    REFUSED("k:" ABC_HEX ":a\x7f\n", "keys.txt:1:69: group names may not");
    REFUSED("k:" ABC_HEX ":a\rb\n", "keys.txt:1:69: group names may not");
}

static void malformed_nul_byte(void)
{
    static const char text[] = "ok:" H1 "\nk\0x:" ABC_HEX "\n";
    CHECK(refused_at(text, sizeof(text) - 1, "keys.txt:2:"));
    static const char tail[] = "k:" ABC_HEX ":g\0\n";
    CHECK(refused_at(tail, sizeof(tail) - 1, "keys.txt:1:"));
}

/* Indentation is tolerated, but columns still count from the start of the line. */
static void columns_count_indentation(void)
{
    REFUSED("  a!b:" ABC_HEX "\n", "keys.txt:1:4: key id");
    REFUSED("\tk:" ABC_HEX "0\n", "keys.txt:1:4: the hash must be 64 hex digits");
}

/* One bad line rejects the whole file, and every bad line is reported. */
static void every_error_reported(void)
{
    struct fg_errs errs = {0};
    struct fg_statickeys *ks =
        parse("good:" H1 "\nbad\nalso bad:" H2 "\nfine:" ABC_HEX "\n", &errs);
    CHECK(ks == NULL);
    CHECK(errs.n == 2);
    CHECK(errs.n == 2 && strncmp(errs.msgs[0], "keys.txt:2:1: ", 14) == 0);
    CHECK(errs.n == 2 && strncmp(errs.msgs[1], "keys.txt:3:5: ", 14) == 0);
    fg_errs_free(&errs);
}

/* Errors describe the line, never echo a secret: only hashes are in the file anyway. */
static void load_from_file(void)
{
    char dir[] = "/tmp/fg-keys-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[64];
    snprintf(path, sizeof(path), "%s/keys.txt", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs("# file\nk:" ABC_HEX ":g\n", f);
        fclose(f);
    }
    struct fg_errs errs = {0};
    struct fg_statickeys *ks = fg_statickeys_load(path, NULL, "u:", "file-keys", &errs);
    const struct fg_identity *id = ks ? lookup(ks, "abc") : NULL;
    CHECK(id != NULL && strcmp(id->user, "u:k") == 0);
    fg_statickeys_free(ks);
    unlink(path);
    ks = fg_statickeys_load(path, NULL, NULL, "file-keys", &errs);
    CHECK(ks == NULL && errs.n == 1);
    CHECK_CONTAINS(errs.n ? errs.msgs[0] : NULL, path);
    fg_errs_free(&errs);
    rmdir(dir);
}

static int b64url_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

static void generate_key_format(void)
{
    char key[64], hex[65], want[65];
    fg_statickeys_generate(key, sizeof(key), hex, sizeof(hex));
    CHECK(strlen(key) == 47);
    CHECK(strncmp(key, "fgk_", 4) == 0);
    int bad = 0;
    for (size_t i = 4; i < strlen(key); i++)
        bad += !b64url_char(key[i]);
    CHECK(bad == 0);
    fg_sha256_hex(key, strlen(key), want);
    CHECK_STR(hex, want);
}

static void generate_keys_differ(void)
{
    char k1[48], k2[48], h1[65], h2[65];
    fg_statickeys_generate(k1, sizeof(k1), h1, sizeof(h1));
    fg_statickeys_generate(k2, sizeof(k2), h2, sizeof(h2));
    CHECK(strcmp(k1, k2) != 0);
    CHECK(strcmp(h1, h2) != 0);
}

/* What `frontgate hash-key` prints must be a line the parser accepts for that key. */
static void generate_round_trip(void)
{
    char key[48], hex[65];
    fg_statickeys_generate(key, sizeof(key), hex, sizeof(hex));
    struct fg_buf b = {0};
    fg_buf_printf(&b, "new-key:%s:team\n", hex);
    struct fg_errs errs = {0};
    struct fg_statickeys *ks = parse(b.data, &errs);
    const struct fg_identity *id = ks ? lookup(ks, key) : NULL;
    CHECK(id != NULL && strcmp(id->user, "new-key") == 0);
    fg_statickeys_free(ks);
    fg_errs_free(&errs);
    fg_buf_free(&b);
}

static struct fg_authn *keys_authn(void)
{
    struct fg_errs errs = {0};
    struct fg_statickeys *ks = parse("k:" ABC_HEX ":g1\n", &errs);
    fg_errs_free(&errs);
    return ks ? fg_statickeys_authn("ops-keys", ks) : NULL;
}

static enum fg_authn_status run(struct fg_authn *a, const char *bearer, struct fg_authn_result *res)
{
    struct fg_credential cred = {bearer, bearer ? strlen(bearer) : 0};
    struct fg_authn_waiter w = {0};
    return fg_authn_run(a, &cred, res, &w);
}

static void authn_known_key(void)
{
    struct fg_authn *a = keys_authn();
    CHECK(a != NULL);
    if (a == NULL)
        return;
    CHECK_STR(a->name, "ops-keys");
    struct fg_authn_result res;
    CHECK(run(a, "abc", &res) == FG_AUTHN_OK);
    CHECK(res.status == FG_AUTHN_OK);
    CHECK(res.identity != NULL);
    if (res.identity) {
        CHECK_STR(res.identity->user, "k");
        CHECK(fg_identity_has_group(res.identity, "g1"));
        /* One reference for the caller, one still held by the key set. */
        CHECK(res.identity->refs == 2);
        fg_identity_unref(res.identity);
    }
    fg_authn_unref(a);
}

/* The identity outlives the authenticator while the caller holds its reference. */
static void authn_identity_outlives_authn(void)
{
    struct fg_authn *a = keys_authn();
    struct fg_authn_result res = {0};
    if (a)
        run(a, "abc", &res);
    fg_authn_unref(a);
    CHECK(res.identity != NULL && strcmp(res.identity->user, "k") == 0);
    fg_identity_unref(res.identity);
}

static void authn_not_mine(void)
{
    struct fg_authn *a = keys_authn();
    CHECK(a != NULL);
    if (a == NULL)
        return;
    struct fg_authn_result res;
    CHECK(run(a, "not-a-key", &res) == FG_AUTHN_NOT_MINE);
    CHECK(res.identity == NULL);
    CHECK(run(a, NULL, &res) == FG_AUTHN_NOT_MINE);
    CHECK(res.identity == NULL);
    fg_authn_unref(a);
}

static void authn_refcount(void)
{
    struct fg_authn *a = keys_authn();
    CHECK(a != NULL && a->refs == 1);
    if (a == NULL)
        return;
    CHECK(fg_authn_ref(a) == a && a->refs == 2);
    fg_authn_unref(a);
    CHECK(a->refs == 1);
    fg_authn_unref(a); /* frees; LSan reports a leak otherwise */
    fg_authn_unref(NULL);
}

/* Returns the token of an Authorization value, or NULL (caller frees). */
static char *bearer(const char *value)
{
    const char *tok = NULL;
    size_t n = 0;
    if (fg_bearer_from_header(value, strlen(value), &tok, &n) != 0)
        return NULL;
    return fg_strndup(tok, n);
}

static void bearer_accepted(void)
{
    const char *cases[][2] = {
        {"Bearer x", "x"},
        {"bearer  x ", "x"},
        {"BEARER x", "x"},
        {"Bearer\tx", "x"},
        {" Bearer abc.def", "abc.def"},
        {"bEaReR tok\t", "tok"},
    };
    for (size_t i = 0; i < FG_ARRAY_LEN(cases); i++) {
        char *t = bearer(cases[i][0]);
        CHECK_STR(t, cases[i][1]);
        free(t);
    }
}

static void bearer_refused(void)
{
    const char *bad[] = {"Basic x",  "Bearer", "Bearer ", "Bearer   ", "Bearer a b", "Bearerx",
                         "Bearer:x", "",       "   ",     "Bear x",    "Token x",    "Bearer a\tb"};
    for (size_t i = 0; i < FG_ARRAY_LEN(bad); i++) {
        char *t = bearer(bad[i]);
        if (t != NULL) {
            printf("#   \"%s\" gave token \"%s\"\n", bad[i], t);
            CHECK(0);
        }
        free(t);
    }
}

/* The value is length-delimited: bytes past len are not read. */
static void bearer_length_delimited(void)
{
    const char *tok = NULL;
    size_t n = 0;
    CHECK(fg_bearer_from_header("Bearer abc def", 10, &tok, &n) == 0 && n == 3);
    CHECK(fg_bearer_from_header("Bearer xyz", 6, &tok, &n) == -1);
}

int main(void)
{
    RUN(sha256_known_vectors);
    RUN(parse_good_file);
    RUN(empty_and_comment_only_files);
    RUN(lookup_by_token);
    RUN(lookup_length_delimited);
    RUN(uppercase_hex_accepted);
    RUN(username_prefix);
    RUN(username_prefix_duplicate_id);
    RUN(groups_with_colons);
    RUN(crlf_line_endings);
    RUN(no_final_newline);
    RUN(many_keys);
    RUN(malformed_no_colon);
    RUN(malformed_empty_id);
    RUN(malformed_id_chars);
    RUN(malformed_hash_length);
    RUN(malformed_hex_digit);
    RUN(malformed_duplicate_id);
    RUN(malformed_duplicate_hash);
    RUN(malformed_empty_group);
    RUN(malformed_empty_group_list);
    RUN(malformed_trailing_comma);
    RUN(malformed_group_chars);
    RUN(malformed_nul_byte);
    RUN(columns_count_indentation);
    RUN(every_error_reported);
    RUN(load_from_file);
    RUN(generate_key_format);
    RUN(generate_keys_differ);
    RUN(generate_round_trip);
    RUN(authn_known_key);
    RUN(authn_identity_outlives_authn);
    RUN(authn_not_mine);
    RUN(authn_refcount);
    RUN(bearer_accepted);
    RUN(bearer_refused);
    RUN(bearer_length_delimited);
    DONE();
}
