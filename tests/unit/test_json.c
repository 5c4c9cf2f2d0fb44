/*
 * test_json.c - the strict JSON parser (auth/json.h): every acceptance and
 * refusal it documents, escapes and surrogate pairs, UTF-8, numbers at and
 * past the int64 and double limits, nesting limits and bombs, duplicate
 * keys, the accessors, arenas that outgrow their first block, and a
 * differential test against jansson on generated and mutated documents (the
 * seed is a parameter). Every document is parsed from a buffer of exactly its
 * length, so a read past the end shows under AddressSanitizer.
 */
#include "t.h"

#include "auth/json.h"
#include "config/base.h"

#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#define DEPTH 32

/* Parses text[0..len) from an exact-size heap copy; the status, and the document on success. */
static enum fg_json_status parse_n(const char *text, size_t len, int max_depth,
                                   struct fg_json_doc **doc, const char **why)
{
    char *copy = fg_malloc(len ? len : 1);
    memcpy(copy, text, len);
    *why = NULL;
    enum fg_json_status st = fg_json_parse(copy, len, max_depth, doc, why);
    free(copy);
    return st;
}

static enum fg_json_status parse_st(const char *text, const char **why)
{
    struct fg_json_doc *doc;
    enum fg_json_status st = parse_n(text, strlen(text), DEPTH, &doc, why);
    fg_json_free(doc);
    return st;
}

static int accepted(const char *text)
{
    const char *why;
    return parse_st(text, &why) == FG_JSON_OK;
}

/* Refused as invalid with a reason: prints the case when not. */
#define REFUSED(text)                                                                              \
    do {                                                                                           \
        const char *r_why = NULL;                                                                  \
        enum fg_json_status r_st = parse_st((text), &r_why);                                       \
        if (r_st != FG_JSON_INVALID || r_why == NULL) {                                            \
            printf("#   not refused: %s\n", (text));                                               \
            CHECK(0);                                                                              \
        }                                                                                          \
    } while (0)

/* The document for text, which must parse; the caller frees it. */
static struct fg_json_doc *must(const char *text)
{
    struct fg_json_doc *doc = NULL;
    const char *why;
    if (parse_n(text, strlen(text), DEPTH, &doc, &why) != FG_JSON_OK) {
        printf("#   refused (%s): %s\n", why, text);
        CHECK(0);
    }
    return doc;
}

/* ---- acceptance and refusal ---- */

static void accepts_rfc8259(void)
{
    static const char *const ok[] = {
        "{}",
        "[]",
        "\"\"",
        "0",
        "-0",
        "true",
        "false",
        "null",
        " \t\r\n{ \"a\" : [ 1 , 2.5 , \"x\" , true , false , null , { } , [ ] ] } \n\t\r ",
        "{\"a\":{\"b\":{\"c\":[[[]]]}}}",
        "[\"\\u007f\",\"\x7f\"]",
        "1E+2",
        "1e-2",
        "-0.0e0",
        "0.5",
        "[0,1,-1]",
    };
    for (size_t i = 0; i < FG_ARRAY_LEN(ok); i++)
        if (!accepted(ok[i])) {
            printf("#   refused: %s\n", ok[i]);
            CHECK(0);
        }
}

static void refuses_bad_syntax(void)
{
    static const char *const bad[] = {
        "",          " ",         "{",           "}",          "[",        "]",
        "[1,]",      "[,1]",      "[1 2]",       "{\"a\":1,}", "{,}",      "{\"a\"}",
        "{\"a\" 1}", "{a:1}",     "{'a':1}",     "{1:1}",      "{\"a\":}", "[\"a\":1]",
        "tru",       "TRUE",      "nul",         "nulll",      "NaN",      "Infinity",
        "-Infinity", "+1",        ".5",          "1.",         "1.e5",     "1e",
        "1e+",       "-",         "--1",         "0x10",       "01",       "-01",
        "00",        "00.5",      "012e3",       "1 2",        "{} x",     "{}{}",
        "[1]]",      "[1] ,",     "\"a\" \"b\"", "/*c*/1",     "[1]//c",   "\xef\xbb\xbf{}",
        "\f[]",      "[\v1]",     "[\xc2\xa0]",  "'a'",        "\"abc",    "\"abc\\\"",
        "\"\\",      "[\"a\\\"]", "1\x01",
    };
    for (size_t i = 0; i < FG_ARRAY_LEN(bad); i++)
        REFUSED(bad[i]);
    /* A NUL inside the buffer counts: trailing garbage, or a bad token (jansson skips a NUL
     * after a number or literal: see agree()). */
    const char *why;
    struct fg_json_doc *doc;
    CHECK(parse_n("[1]\0", 4, DEPTH, &doc, &why) == FG_JSON_INVALID && doc == NULL);
    CHECK(parse_n("[\0]", 3, DEPTH, &doc, &why) == FG_JSON_INVALID && doc == NULL);
    CHECK(parse_n("[1\0]", 4, DEPTH, &doc, &why) == FG_JSON_INVALID && doc == NULL);
    CHECK(parse_n("{\"exp\":1\0}", 10, DEPTH, &doc, &why) == FG_JSON_INVALID && doc == NULL);
    CHECK(parse_n("true\0", 5, DEPTH, &doc, &why) == FG_JSON_INVALID && doc == NULL);
    /* Only len bytes are read: what follows does not matter. */
    CHECK(parse_n("[1]xyz", 3, DEPTH, &doc, &why) == FG_JSON_OK);
    fg_json_free(doc);
    CHECK(parse_n("12", 1, DEPTH, &doc, &why) == FG_JSON_OK);
    CHECK(fg_json_int(fg_json_root(doc)) == 1);
    fg_json_free(doc);
}

static void refuses_control_characters(void)
{
    char s[8];
    for (int c = 1; c < 0x20; c++) {
        snprintf(s, sizeof(s), "\"a%cb\"", c);
        REFUSED(s);
    }
    const char *why;
    struct fg_json_doc *doc;
    CHECK(parse_n("\"a\0b\"", 5, DEPTH, &doc, &why) == FG_JSON_INVALID);
    CHECK(accepted("\"a\x7f"
                   "b\""));
    CHECK(accepted("\"\\u0001\\u001f\\u007F\""));
}

static void refuses_nul_escape(void)
{
    REFUSED("\"\\u0000\"");
    REFUSED("{\"a\\u0000\":1}");
    REFUSED("[\"x\\u0000y\"]");
    CHECK(accepted("\"\\u0100\""));
}

static void refuses_invalid_utf8(void)
{
    static const char *const bad[] = {
        "\"\x80\"",                /* stray continuation */
        "\"\xbf\"",                /* stray continuation */
        "\"\xc0\x80\"",            /* overlong NUL */
        "\"\xc1\xbf\"",            /* overlong */
        "\"\xe0\x80\x80\"",        /* overlong 3-byte */
        "\"\xe0\x9f\xbf\"",        /* overlong 3-byte */
        "\"\xf0\x80\x80\x80\"",    /* overlong 4-byte */
        "\"\xf0\x8f\xbf\xbf\"",    /* overlong 4-byte */
        "\"\xed\xa0\x80\"",        /* U+D800 encoded */
        "\"\xed\xbf\xbf\"",        /* U+DFFF encoded */
        "\"\xf4\x90\x80\x80\"",    /* U+110000 */
        "\"\xf5\x80\x80\x80\"",    /* lead byte past F4 */
        "\"\xff\"",                /* never valid */
        "\"\xfe\"",                /* never valid */
        "\"\xc3\"",                /* truncated by the quote */
        "\"\xe2\x82\"",            /* truncated */
        "\"\xf0\x9f\x98\"",        /* truncated */
        "\"\xc3\x28\"",            /* bad continuation */
        "\"\xe2\x28\xa1\"",        /* bad continuation */
        "\"a\\n\xc3\"",            /* after an escape (slow path) */
        "\"\\u00e9\xed\xa0\x80\"", /* after an escape */
        "{\"\xc3\":1}",            /* in a key */
        "\"\xc3",                  /* at the end of the buffer */
        "\"\xf0\x9f\x98\x80",      /* valid, but unterminated */
    };
    for (size_t i = 0; i < FG_ARRAY_LEN(bad); i++)
        REFUSED(bad[i]);
    static const char *const good[] = {
        "\"\xc2\x80\"",
        "\"\xdf\xbf\"",
        "\"\xe0\xa0\x80\"",
        "\"\xed\x9f\xbf\"",
        "\"\xee\x80\x80\"",
        "\"\xef\xbf\xbf\"",
        "\"\xf0\x90\x80\x80\"",
        "\"\xf4\x8f\xbf\xbf\"",
        "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"",
    };
    for (size_t i = 0; i < FG_ARRAY_LEN(good); i++)
        CHECK(accepted(good[i]));
}

/* ---- strings and escapes ---- */

/* text parses to a string of exactly want[0..wlen). */
static void string_is(const char *text, const char *want, size_t wlen)
{
    struct fg_json_doc *doc = must(text);
    size_t n = 99;
    const char *s = fg_json_string(fg_json_root(doc), &n);
    if (s == NULL || n != wlen || memcmp(s, want, wlen) != 0 || s[n] != '\0') {
        printf("#   %s: wrong string\n", text);
        CHECK(0);
    }
    fg_json_free(doc);
}

static void escapes_decoded(void)
{
    string_is("\"\"", "", 0);
    string_is("\"plain\"", "plain", 5);
    string_is("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t", 8);
    string_is("\"a\\u0041b\"", "aAb", 3);
    string_is("\"\\u00e9\\u00E9\"", "\xc3\xa9\xc3\xa9", 4);
    string_is("\"\\u20ac\"", "\xe2\x82\xac", 3);
    string_is("\"\\uffff\"", "\xef\xbf\xbf", 3);
    string_is("\"\\u07ff\\u0800\"", "\xdf\xbf\xe0\xa0\x80", 5);
    string_is("\"x\\u001fy\"", "x\x1fy", 3);
    /* Plain text, then escapes, then plain UTF-8 again. */
    string_is("\"caf\xc3\xa9\\tok\xe2\x82\xac\"", "caf\xc3\xa9\tok\xe2\x82\xac", 11);
    /* A long string past any small buffer. */
    struct fg_buf b = {0}, want = {0};
    fg_buf_addc(&b, '"');
    for (int i = 0; i < 5000; i++) {
        fg_buf_adds(&b, "ab\\n\\u00e9");
        fg_buf_adds(&want, "ab\n\xc3\xa9");
    }
    fg_buf_addc(&b, '"');
    string_is(b.data, want.data, want.len);
    fg_buf_free(&b);
    fg_buf_free(&want);
    REFUSED("\"\\a\"");
    REFUSED("\"\\x41\"");
    REFUSED("\"\\U0041\"");
    REFUSED("\"\\u004\"");
    REFUSED("\"\\u004g\"");
    REFUSED("\"\\u\"");
    REFUSED("\"\\'\"");
    REFUSED("\"\\\n\"");
}

static void surrogate_pairs(void)
{
    string_is("\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80", 4);
    string_is("\"\\uD800\\uDC00\"", "\xf0\x90\x80\x80", 4);
    string_is("\"\\uDBFF\\uDFFF\"", "\xf4\x8f\xbf\xbf", 4);
    string_is("\"a\\uD834\\uDD1Eb\"",
              "a\xf0\x9d\x84\x9e"
              "b",
              6);
    static const char *const bad[] = {
        "\"\\ud800\"",               /* lone high */
        "\"\\udc00\"",               /* lone low */
        "\"\\udfff\"",               /* lone low */
        "\"\\ude00\\ud83d\"",        /* misordered */
        "\"\\ud83d\\ud83d\"",        /* high, high */
        "\"\\ud83dx\"",              /* high, then text */
        "\"\\ud83d\\u0041\"",        /* high, then a BMP escape */
        "\"\\ud83d\\n\"",            /* high, then another escape */
        "\"\\ud83d\\ude0\"",         /* truncated low */
        "\"\\ud83d\\",               /* at the end */
        "\"\\ud83d\\ude00\\udc00\"", /* a pair, then a lone low */
    };
    for (size_t i = 0; i < FG_ARRAY_LEN(bad); i++)
        REFUSED(bad[i]);
}

/* ---- numbers ---- */

static void integers(void)
{
    static const struct {
        const char *text;
        int64_t v;
    } cases[] = {
        {"0", 0},
        {"-0", 0},
        {"7", 7},
        {"-7", -7},
        {"1700000000", 1700000000},
        {"9223372036854775807", INT64_MAX},
        {"-9223372036854775808", INT64_MIN},
        {"-9223372036854775807", -INT64_MAX},
    };
    for (size_t i = 0; i < FG_ARRAY_LEN(cases); i++) {
        struct fg_json_doc *doc = must(cases[i].text);
        const struct fg_json *v = fg_json_root(doc);
        CHECK(fg_json_type(v) == FG_JSON_INT && fg_json_is_number(v));
        CHECK(fg_json_int(v) == cases[i].v);
        CHECK(fg_json_real(v) == (double)cases[i].v);
        fg_json_free(doc);
    }
    /* Past int64 is an error, as in jansson (not a real). */
    REFUSED("9223372036854775808");
    REFUSED("-9223372036854775809");
    REFUSED("18446744073709551616");
    REFUSED("99999999999999999999999999999999999999999999999999");
    REFUSED("{\"exp\":99999999999999999999}");
}

/* text parses to the real strtod makes of it, bit for bit. */
static void real_is_strtod(const char *text)
{
    struct fg_json_doc *doc = must(text);
    const struct fg_json *v = fg_json_root(doc);
    double want = strtod(text, NULL), got = fg_json_real(v);
    if (fg_json_type(v) != FG_JSON_REAL || memcmp(&got, &want, sizeof(got)) != 0) {
        printf("#   %s: %.17g, not %.17g\n", text, got, want);
        CHECK(0);
    }
    fg_json_free(doc);
}

static void reals(void)
{
    static const char *const cases[] = {
        "0.0",
        "-0.0",
        "0e0",
        "1.5",
        "-2.25",
        "1e3",
        "1E3",
        "1e+3",
        "1e-3",
        "3.141592653589793",
        "0.1",
        "0.30000000000000004",
        "1.7976931348623157e308",  /* DBL_MAX */
        "-1.7976931348623157e308", /* -DBL_MAX */
        "2.2250738585072014e-308", /* DBL_MIN */
        "4.9406564584124654e-324", /* smallest subnormal */
        "1e-400",                  /* underflows to 0, as strtod (and jansson) allow */
        "2.4703282292062328e-324", /* rounds to the smallest subnormal */
        "1700000000.999",
        "123456789012345678901234567890.5",
        "0.00000000000000000000000000000000000000000000000000000000000000000000000000001",
        "1000000000000000000000000000000000000000000000000000000000000000000000000000e-70",
    };
    for (size_t i = 0; i < FG_ARRAY_LEN(cases); i++)
        real_is_strtod(cases[i]);
    REFUSED("1e309");
    REFUSED("-1e309");
    REFUSED("1.8e308");
    REFUSED("1e99999999999999999999");
    REFUSED("[1.7976931348623159e308]");
}

static void seconds_helper(void)
{
    static const struct {
        const char *text;
        int64_t secs;
    } cases[] = {
        {"1700000000", 1700000000},
        {"1700000000.9", 1700000000},
        {"-1.9", -1},
        {"1e300", INT64_MAX},
        {"-1e300", INT64_MIN},
        {"9223372036854775807", INT64_MAX},
        {"-9223372036854775808", INT64_MIN},
    };
    for (size_t i = 0; i < FG_ARRAY_LEN(cases); i++) {
        struct fg_json_doc *doc = must(cases[i].text);
        int64_t s = 42;
        CHECK(fg_json_seconds(fg_json_root(doc), &s) == 0);
        CHECK(s == cases[i].secs);
        fg_json_free(doc);
    }
    struct fg_json_doc *doc = must("[\"1\",null,true]");
    int64_t s;
    for (size_t i = 0; i < 3; i++) {
        s = 42;
        CHECK(fg_json_seconds(fg_json_at(fg_json_root(doc), i), &s) == -1 && s == 42);
    }
    CHECK(fg_json_seconds(NULL, &s) == -1);
    fg_json_free(doc);
}

/* ---- nesting ---- */

static char *nested(size_t depth, const char *open, const char *close)
{
    struct fg_buf b = {0};
    for (size_t i = 0; i < depth; i++)
        fg_buf_adds(&b, open);
    fg_buf_addc(&b, '1');
    for (size_t i = 0; i < depth; i++)
        fg_buf_adds(&b, close);
    return fg_buf_take(&b);
}

static enum fg_json_status parse_depth(const char *text, int max_depth)
{
    struct fg_json_doc *doc;
    const char *why;
    enum fg_json_status st = parse_n(text, strlen(text), max_depth, &doc, &why);
    CHECK((st == FG_JSON_OK) == (doc != NULL));
    fg_json_free(doc);
    return st;
}

static void depth_limit(void)
{
    for (int d = 0; d <= 40; d++) {
        char *arr = nested((size_t)d, "[", "]"), *obj = nested((size_t)d, "{\"k\":", "}");
        enum fg_json_status want = d <= DEPTH ? FG_JSON_OK : FG_JSON_TOO_DEEP;
        CHECK(parse_depth(arr, DEPTH) == want);
        CHECK(parse_depth(obj, DEPTH) == want);
        free(arr), free(obj);
    }
    /* Mixed: the outermost counts, siblings do not add up. */
    CHECK(parse_depth("[[1],[2],{\"a\":[3]}]", 3) == FG_JSON_OK);
    CHECK(parse_depth("[[1],[2],{\"a\":[3]}]", 2) == FG_JSON_TOO_DEEP);
    /* 0 allows scalars only. */
    CHECK(parse_depth("1", 0) == FG_JSON_OK);
    CHECK(parse_depth("[]", 0) == FG_JSON_TOO_DEEP);
    CHECK(parse_depth("{}", -5) == FG_JSON_TOO_DEEP);
    /* Brackets inside strings are not nesting. */
    CHECK(parse_depth("[\"[[[[[[[[[[\\\"[[[[[[[[[\"]", 1) == FG_JSON_OK);
}

/* A bomb is refused at the first level too many: nothing past it is looked at. */
static void depth_bomb(void)
{
    size_t n = 100000;
    char *open = fg_malloc(n);
    memset(open, '[', n);
    struct fg_json_doc *doc;
    const char *why = NULL;
    CHECK(fg_json_parse(open, n, DEPTH, &doc, &why) == FG_JSON_TOO_DEEP);
    CHECK(doc == NULL && why != NULL);
    /* Even when the caller allows more than the parser ever recurses. */
    CHECK(fg_json_parse(open, n, INT_MAX, &doc, &why) == FG_JSON_TOO_DEEP);
    free(open);
    char *obj = nested(100000, "{\"a\":", "}");
    CHECK(parse_depth(obj, DEPTH) == FG_JSON_TOO_DEEP);
    free(obj);
    /* The bound within which a large max_depth is honoured. */
    char *ok = nested(1000, "[", "]");
    CHECK(parse_depth(ok, INT_MAX) == FG_JSON_OK);
    free(ok);
    /* Too deep is reported even when the text goes wrong later. */
    char *bad = nested(40, "[", "]");
    bad[strlen(bad) - 1] = 'x';
    CHECK(parse_depth(bad, DEPTH) == FG_JSON_TOO_DEEP);
    CHECK(parse_depth(bad, 64) == FG_JSON_INVALID);
    free(bad);
}

/* ---- objects ---- */

static void duplicate_keys(void)
{
    REFUSED("{\"a\":1,\"a\":1}");
    REFUSED("{\"a\":1,\"b\":2,\"a\":3}");
    REFUSED("{\"a\":1,\"\\u0061\":2}"); /* equal once unescaped */
    REFUSED("{\"\":1,\"\":2}");
    REFUSED("{\"x\":{\"a\":1,\"a\":2}}");
    REFUSED("[{\"k\":1},{\"k\":1,\"k\":1}]");
    CHECK(accepted("{\"a\":1,\"ab\":2,\"b\":3,\"A\":4,\"\":5}"));
    CHECK(accepted("{\"a\":{\"a\":{\"a\":1}},\"b\":{\"a\":2}}"));
    CHECK(accepted("[{\"k\":1},{\"k\":1}]"));
    /* Keys alike in length, first and last byte (one filter bit) are still told apart. */
    CHECK(accepted("{\"a0a\":1,\"a1a\":2,\"a2a\":3,\"a\":4,\"aa\":5}"));
    REFUSED("{\"a0a\":1,\"a1a\":2,\"a2a\":3,\"a1a\":4}");
    /* Every object size around the switch from filtered pairs to sorting, duplicate or not. */
    for (int n = 1; n <= 70; n++) {
        for (int dup = -1; dup < n - 1; dup++) {
            struct fg_buf b = {0};
            fg_buf_addc(&b, '{');
            for (int i = 0; i < n; i++)
                fg_buf_printf(&b, "%s\"k%d\":0", i ? "," : "", i == n - 1 && dup >= 0 ? dup : i);
            fg_buf_addc(&b, '}');
            const char *why;
            if ((parse_st(b.data, &why) == FG_JSON_OK) != (dup < 0)) {
                printf("#   %d members, duplicate of %d: wrong answer\n", n, dup);
                CHECK(0);
            }
            fg_buf_free(&b);
        }
    }
    /* Objects large enough to be sorted for the check. */
    for (int dup_at = -1; dup_at < 200; dup_at += 37) {
        struct fg_buf b = {0};
        fg_buf_addc(&b, '{');
        for (int i = 0; i < 200; i++)
            fg_buf_printf(&b, "%s\"key-%d\":%d", i ? "," : "", i == dup_at ? 150 : i, i);
        fg_buf_addc(&b, '}');
        const char *why = NULL;
        enum fg_json_status st = parse_st(b.data, &why);
        CHECK(st == (dup_at < 0 || dup_at == 150 ? FG_JSON_OK : FG_JSON_INVALID));
        if (st == FG_JSON_INVALID)
            CHECK_STR(why, "duplicate object key");
        fg_buf_free(&b);
    }
}

static void accessors(void)
{
    struct fg_json_doc *doc =
        must("{\"iss\":\"https://i\",\"aud\":[\"a\",\"b\\u00e9\"],\"n\":null,\"t\":true,"
             "\"f\":false,\"exp\":17,\"r\":1.5,\"o\":{\"x\":[]}}");
    const struct fg_json *root = fg_json_root(doc), *aud = fg_json_get(root, "aud");
    size_t n;
    CHECK(fg_json_type(root) == FG_JSON_OBJECT && fg_json_len(root) == 8);
    CHECK_STR(fg_json_string(fg_json_get(root, "iss"), &n), "https://i");
    CHECK(n == 9);
    CHECK(fg_json_is(aud, FG_JSON_ARRAY) && fg_json_len(aud) == 2);
    CHECK_STR(fg_json_string(fg_json_at(aud, 0), NULL), "a");
    CHECK_STR(fg_json_string(fg_json_at(aud, 1), &n), "b\xc3\xa9");
    CHECK(n == 3);
    CHECK(fg_json_at(aud, 2) == NULL);
    CHECK(fg_json_is(fg_json_get(root, "n"), FG_JSON_NULL));
    CHECK(fg_json_is(fg_json_get(root, "t"), FG_JSON_TRUE));
    CHECK(fg_json_is(fg_json_get(root, "f"), FG_JSON_FALSE));
    CHECK(fg_json_int(fg_json_get(root, "exp")) == 17);
    CHECK(fg_json_is(fg_json_get(root, "r"), FG_JSON_REAL) &&
          fg_json_real(fg_json_get(root, "r")) == 1.5);
    CHECK(fg_json_int(fg_json_get(root, "r")) == 0);
    CHECK(fg_json_len(fg_json_get(fg_json_get(root, "o"), "x")) == 0);
    /* Missing members and wrong types answer NULL or 0, and chain. */
    CHECK(fg_json_get(root, "missing") == NULL);
    CHECK(fg_json_get(root, "is") == NULL && fg_json_get(root, "isss") == NULL);
    CHECK(fg_json_get(fg_json_get(root, "missing"), "x") == NULL);
    CHECK(fg_json_get(aud, "a") == NULL);
    CHECK(fg_json_string(aud, &n) == NULL && n == 0);
    CHECK(fg_json_string(NULL, NULL) == NULL);
    CHECK(fg_json_int(NULL) == 0 && fg_json_real(NULL) == 0 && fg_json_len(NULL) == 0);
    CHECK(fg_json_at(root, 0) == NULL && fg_json_at(NULL, 0) == NULL);
    CHECK(!fg_json_is(NULL, FG_JSON_NULL) && fg_json_type(NULL) == FG_JSON_NULL);
    CHECK(!fg_json_is_number(fg_json_get(root, "iss")) && !fg_json_is_number(NULL));
    CHECK(fg_json_root(NULL) == NULL);
    /* Members in document order. */
    static const char *const keys[] = {"iss", "aud", "n", "t", "f", "exp", "r", "o"};
    for (size_t i = 0; i < FG_ARRAY_LEN(keys); i++) {
        const char *k = NULL;
        size_t klen = 0;
        const struct fg_json *v = fg_json_member(root, i, &k, &klen);
        CHECK_STR(k, keys[i]);
        CHECK(klen == strlen(keys[i]) && v == fg_json_get(root, keys[i]));
    }
    const char *k = "x";
    CHECK(fg_json_member(root, 8, &k, &n) == NULL && k == NULL && n == 0);
    CHECK(fg_json_member(aud, 0, NULL, NULL) == NULL);
    fg_json_free(doc);
    fg_json_free(NULL);
}

static void references(void)
{
    struct fg_json_doc *doc = must("{\"a\":\"b\"}");
    CHECK(fg_json_ref(doc) == doc);
    fg_json_free(doc);
    CHECK_STR(fg_json_string(fg_json_get(fg_json_root(doc), "a"), NULL), "b");
    fg_json_free(doc); /* the last reference: LeakSanitizer checks it is gone */
}

static void *ref_churn(void *arg)
{
    struct fg_json_doc *doc = arg;
    for (int i = 0; i < 100000; i++) {
        struct fg_json_doc *mine = fg_json_ref(doc);
        if (fg_json_int(fg_json_get(fg_json_root(mine), "n")) != 7)
            abort();
        fg_json_free(mine);
    }
    fg_json_free(doc); /* each thread was handed one reference */
    return NULL;
}

/* A document shared by threads (jwt.c's header cache) lives until its last reference goes. */
static void references_across_threads(void)
{
    struct fg_json_doc *doc = must("{\"n\":7}");
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&th[i], NULL, ref_churn, fg_json_ref(doc)) == 0);
    fg_json_free(doc);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
}

/* Documents far past the first arena block keep every value intact. */
static void big_documents(void)
{
    struct fg_buf b = {0};
    fg_buf_addc(&b, '[');
    for (int i = 0; i < 20000; i++)
        fg_buf_printf(&b, "%s{\"i\":%d,\"s\":\"v%d\\n\",\"a\":[%d,%d.5]}", i ? "," : "", i, i, i,
                      i);
    fg_buf_addc(&b, ']');
    struct fg_json_doc *doc = must(b.data);
    const struct fg_json *root = fg_json_root(doc);
    int bad = fg_json_len(root) != 20000;
    for (size_t i = 0; !bad && i < 20000; i++) {
        const struct fg_json *o = fg_json_at(root, i), *a = fg_json_get(o, "a");
        char want[32];
        snprintf(want, sizeof(want), "v%zu\n", i);
        bad = fg_json_int(fg_json_get(o, "i")) != (int64_t)i ||
              strcmp(fg_json_string(fg_json_get(o, "s"), NULL), want) != 0 ||
              fg_json_int(fg_json_at(a, 0)) != (int64_t)i ||
              fg_json_real(fg_json_at(a, 1)) != (double)i + 0.5;
    }
    CHECK(!bad);
    fg_json_free(doc);
    fg_buf_free(&b);
    /* Many members in one object, and very long numbers. */
    fg_buf_addc(&b, '{');
    for (int i = 0; i < 5000; i++)
        fg_buf_printf(&b, "%s\"k%d\":0.%0200d1", i ? "," : "", i, 0);
    fg_buf_addc(&b, '}');
    doc = must(b.data);
    CHECK(fg_json_len(fg_json_root(doc)) == 5000);
    CHECK(fg_json_real(fg_json_get(fg_json_root(doc), "k4999")) == 1e-201);
    fg_json_free(doc);
    fg_buf_free(&b);
}

static void why_is_static(void)
{
    static const char *const bad[] = {
        "{\"SECRET\":1,\"SECRET\":2}",
        "[\"SECRET\\q\"]",
        "SECRET",
        "[1,SECRET]",
        "\"SECRET\xff\"",
        "{\"SECRET\"}",
    };
    for (size_t i = 0; i < FG_ARRAY_LEN(bad); i++) {
        const char *why = NULL;
        CHECK(parse_st(bad[i], &why) == FG_JSON_INVALID);
        CHECK(why != NULL && strstr(why, "SECRET") == NULL);
    }
}

/* ---- differential test against jansson ---- */

static uint64_t rnd_state;

static uint64_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return rnd_state;
}

static size_t pick(size_t n)
{
    return (size_t)(rnd() % n);
}

static void gen_ws(struct fg_buf *b)
{
    static const char ws[] = " \t\r\n";
    for (size_t n = pick(4) == 0 ? pick(3) : 0; n > 0; n--)
        fg_buf_addc(b, ws[pick(4)]);
}

/* One character of a string: plain, escaped, raw UTF-8, \u (pairs too). */
static void gen_char(struct fg_buf *b)
{
    static const char *const raw[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\x7f"};
    static const char *const esc[] = {"\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t"};
    static const unsigned cps[] = {0x1, 0x1f, 0x41, 0xe9, 0x7ff, 0x800, 0x20ac, 0xfffd, 0xffff};
    switch (pick(8)) {
    case 0:
        fg_buf_adds(b, raw[pick(FG_ARRAY_LEN(raw))]);
        break;
    case 1:
        fg_buf_adds(b, esc[pick(FG_ARRAY_LEN(esc))]);
        break;
    case 2:
        fg_buf_printf(b, pick(2) ? "\\u%04x" : "\\u%04X", cps[pick(FG_ARRAY_LEN(cps))]);
        break;
    case 3:
        fg_buf_printf(b, "\\u%04x\\u%04x", 0xd800 + (unsigned)pick(0x400),
                      0xdc00 + (unsigned)pick(0x400));
        break;
    default: {
        char c = (char)(' ' + pick(95));
        fg_buf_addc(b, c == '"' || c == '\\' ? 'q' : c);
    }
    }
}

static void gen_string(struct fg_buf *b, size_t max)
{
    fg_buf_addc(b, '"');
    for (size_t n = pick(max + 1); n > 0; n--)
        gen_char(b);
    fg_buf_addc(b, '"');
}

static void gen_number(struct fg_buf *b)
{
    static const char *const fixed[] = {
        "0",      "-0",       "9223372036854775807",     "-9223372036854775808",
        "1e308",  "1.5e-320", "2.2250738585072014e-308", "0.1",
        "-0.0",   "1E+2",     "12345678901234567890123", "1e400",
        "100e-2", "5e-324",   "-9223372036854775809",    "9223372036854775808",
    };
    uint64_t r = rnd();
    switch (pick(5)) {
    case 0:
        fg_buf_adds(b, fixed[pick(FG_ARRAY_LEN(fixed))]);
        break;
    case 1:
        fg_buf_printf(b, "%" PRId64, (int64_t)r);
        break;
    case 2: {
        double d;
        memcpy(&d, &r, sizeof(d));
        if (isfinite(d))
            fg_buf_printf(b, "%.17g", d);
        else
            fg_buf_adds(b, "1.5");
        break;
    }
    case 3:
        fg_buf_printf(b, "%d.%03de%s%d", (int)pick(1000), (int)pick(1000), pick(2) ? "-" : "+",
                      (int)pick(330));
        break;
    default:
        fg_buf_printf(b, "%d", (int)pick(2000000) - 1000000);
    }
}

static void gen_value(struct fg_buf *b, int depth);

static void gen_container(struct fg_buf *b, int depth, int object)
{
    size_t n = pick(6);
    fg_buf_addc(b, object ? '{' : '[');
    for (size_t i = 0; i < n; i++) {
        gen_ws(b);
        if (i)
            fg_buf_addc(b, ',');
        gen_ws(b);
        if (object) {
            /* Short keys from a small alphabet: now and then a duplicate. */
            fg_buf_addc(b, '"');
            fg_buf_addc(b, (char)('a' + pick(2 + i * 3)));
            if (pick(2))
                gen_char(b);
            fg_buf_addc(b, '"');
            gen_ws(b);
            fg_buf_addc(b, ':');
            gen_ws(b);
        }
        gen_value(b, depth + 1);
    }
    gen_ws(b);
    fg_buf_addc(b, object ? '}' : ']');
}

static void gen_value(struct fg_buf *b, int depth)
{
    static const char *const lits[] = {"true", "false", "null"};
    size_t k = depth > 6 ? pick(3) : pick(6);
    if (k == 0)
        gen_string(b, 12);
    else if (k == 1)
        gen_number(b);
    else if (k == 2)
        fg_buf_adds(b, lits[pick(3)]);
    else
        gen_container(b, depth, k > 3);
}

/* Random bytes into, over or out of b: what a fuzzer would try. */
static void mutate(struct fg_buf *b)
{
    static const unsigned char bytes[] = {'"',  '\\', '{',  '}',  '[',  ']',  ',',  ':',  '0',
                                          '-',  'e',  '.',  ' ',  'u',  'd',  '8',  0x00, 0x01,
                                          0x1f, 0x7f, 0x80, 0xc3, 0xed, 0xf4, 0xff, 'x'};
    for (size_t n = 1 + pick(3); n > 0 && b->len > 0; n--) {
        size_t at = pick(b->len);
        switch (pick(4)) {
        case 0:
            b->data[at] = (char)bytes[pick(sizeof(bytes))];
            break;
        case 1:
            memmove(b->data + at, b->data + at + 1, b->len - at - 1);
            b->len--;
            break;
        case 2:
            fg_buf_addc(b, 0);
            memmove(b->data + at + 1, b->data + at, b->len - at - 1);
            b->data[at] = (char)bytes[pick(sizeof(bytes))];
            break;
        default:
            b->len = at;
        }
    }
}

/* 1 when our tree and jansson's hold the same values. */
static int same_tree(const struct fg_json *v, json_t *j)
{
    size_t n = 0;
    const char *s;
    double a, b;
    int same = 1;

    switch (fg_json_type(v)) {
    case FG_JSON_NULL:
        return json_is_null(j);
    case FG_JSON_TRUE:
        return json_is_true(j);
    case FG_JSON_FALSE:
        return json_is_false(j);
    case FG_JSON_INT:
        return json_is_integer(j) && json_integer_value(j) == fg_json_int(v);
    case FG_JSON_REAL:
        a = fg_json_real(v), b = json_real_value(j);
        return json_is_real(j) && memcmp(&a, &b, sizeof(a)) == 0;
    case FG_JSON_STRING:
        s = fg_json_string(v, &n);
        return json_is_string(j) && json_string_length(j) == n &&
               memcmp(json_string_value(j), s, n) == 0;
    case FG_JSON_ARRAY:
        same = json_is_array(j) && json_array_size(j) == fg_json_len(v);
        for (size_t i = 0; same && i < fg_json_len(v); i++)
            same = same_tree(fg_json_at(v, i), json_array_get(j, i));
        return same;
    case FG_JSON_OBJECT:
        same = json_is_object(j) && json_object_size(j) == fg_json_len(v);
        for (size_t i = 0; same && i < fg_json_len(v); i++) {
            size_t klen;
            const struct fg_json *m = fg_json_member(v, i, &s, &klen);
            same = same_tree(m, json_object_getn(j, s, klen)) && fg_json_get(v, s) == m;
        }
        return same;
    }
    return 0;
}

static void print_case(const char *label, const struct fg_buf *b)
{
    printf("#   %s (%zu bytes): ", label, b->len);
    for (size_t i = 0; i < b->len && i < 400; i++) {
        unsigned char c = (unsigned char)b->data[i];
        printf(c >= 0x20 && c < 0x7f ? "%c" : "\\x%02x", c);
    }
    printf("\n");
}

/*
 * Both parsers on b: they must agree on acceptance and, when both accept, on
 * the tree. One known difference: jansson 2.14 drops a NUL byte that follows
 * a number or a literal ("[1\0]" loads as [1]); a NUL outside a string is
 * never JSON, and fg_json refuses it.
 */
static int agree(const struct fg_buf *b)
{
    struct fg_json_doc *doc;
    const char *why;
    json_error_t err;
    enum fg_json_status st = parse_n(b->data, b->len, 64, &doc, &why);
    json_t *j = json_loadb(b->data, b->len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
    int nul_quirk = j != NULL && st != FG_JSON_OK && memchr(b->data, 0, b->len) != NULL;
    int ok = nul_quirk ||
             ((st == FG_JSON_OK) == (j != NULL) && (j == NULL || same_tree(fg_json_root(doc), j)));
    if (!ok)
        printf("#   fg_json: %s, jansson: %s\n", st == FG_JSON_OK ? "ok" : why,
               j ? "ok" : err.text);
    json_decref(j);
    fg_json_free(doc);
    return ok;
}

static void differential(uint64_t seed, size_t ndocs, size_t nmutants)
{
    size_t accepted_docs = 0, accepted_mutants = 0, failures = 0;
    rnd_state = seed;
    for (size_t i = 0; i < ndocs && failures < 5; i++) {
        struct fg_buf b = {0};
        gen_ws(&b);
        gen_value(&b, 0);
        gen_ws(&b);
        if (!agree(&b)) {
            print_case("generated", &b);
            failures++;
        }
        accepted_docs += accepted(b.data);
        for (size_t m = 0; m < nmutants && failures < 5; m++) {
            struct fg_buf c = {0};
            fg_buf_add(&c, b.data, b.len);
            mutate(&c);
            if (!agree(&c)) {
                print_case("mutated", &c);
                failures++;
            }
            const char *why;
            struct fg_json_doc *doc;
            accepted_mutants += parse_n(c.data, c.len, 64, &doc, &why) == FG_JSON_OK;
            fg_json_free(doc);
            fg_buf_free(&c);
        }
        fg_buf_free(&b);
    }
    CHECK(failures == 0);
    /* The generator makes both kinds: mostly good documents, mostly bad mutants. */
    printf("#   %zu documents (%zu accepted), %zu mutants (%zu accepted)\n", ndocs, accepted_docs,
           ndocs * nmutants, accepted_mutants);
    CHECK(accepted_docs > ndocs / 2 && accepted_docs < ndocs);
    CHECK(accepted_mutants > 0 && accepted_mutants < ndocs * nmutants / 2);
}

static uint64_t seed = 0x9e3779b97f4a7c15u; /* test_json [seed] tries another */

static void differential_vs_jansson(void)
{
    differential(seed, 600, 10);
}

/* Hand-picked documents on the edges, through both parsers. */
static void differential_edges(void)
{
    static const char *const cases[] = {
        "{\"a\":1,\"a\":1}",
        "[1e308,1e309]",
        "[-1e-400]",
        "\"\\ud800\\udc00\"",
        "\"\\udc00\"",
        "\"\\u0000\"",
        "0",
        "-0",
        "-0.0",
        "[01]",
        "9223372036854775807",
        "9223372036854775808",
        "\"\xed\xa0\x80\"",
        "\"\xf4\x90\x80\x80\"",
        "  [ ]  ",
        "[1,]",
        "{\"\":0}",
        "\"\x7f\"",
        "[\"\\/\"]",
        "1.0e+0",
        "[true,false,null]",
    };
    for (size_t i = 0; i < FG_ARRAY_LEN(cases); i++) {
        struct fg_buf b = {0};
        fg_buf_adds(&b, cases[i]);
        if (!agree(&b)) {
            print_case("edge", &b);
            CHECK(0);
        }
        fg_buf_free(&b);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1 && (fg_parse_u64(argv[1], strlen(argv[1]), UINT64_MAX, &seed) != 0 || seed == 0))
        return 2;
    printf("# seed %" PRIu64 "\n", seed);
    RUN(accepts_rfc8259);
    RUN(refuses_bad_syntax);
    RUN(refuses_control_characters);
    RUN(refuses_nul_escape);
    RUN(refuses_invalid_utf8);
    RUN(escapes_decoded);
    RUN(surrogate_pairs);
    RUN(integers);
    RUN(reals);
    RUN(seconds_helper);
    RUN(depth_limit);
    RUN(depth_bomb);
    RUN(duplicate_keys);
    RUN(accessors);
    RUN(references);
    RUN(references_across_threads);
    RUN(big_documents);
    RUN(why_is_static);
    RUN(differential_edges);
    RUN(differential_vs_jansson);
    DONE();
}
