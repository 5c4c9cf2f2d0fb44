/*
 * test_base.c - number, duration and size parsing, JSON string escaping and
 * logfmt values, the loopback-URL rule (config/base.h).
 */
#include "t.h"

#include "config/base.h"

#include <stdint.h>
#include <stdlib.h>

static int dur(const char *s, uint64_t *out)
{
    *out = 0xdeadbeef;
    return fg_parse_duration_ms(s, out);
}

static int size_of(const char *s, uint64_t *out)
{
    *out = 0xdeadbeef;
    return fg_parse_size(s, out);
}

static int u64(const char *s, uint64_t max, uint64_t *out)
{
    *out = 0xdeadbeef;
    return fg_parse_u64(s, strlen(s), max, out);
}

/* JSON-escapes n bytes and returns the result (caller frees). */
static char *json(const char *s, size_t n)
{
    struct fg_buf b = {0};
    fg_buf_json_str(&b, s, n);
    return fg_buf_take(&b);
}

static char *logval(const char *s, size_t n)
{
    struct fg_buf b = {0};
    fg_buf_logval(&b, s, n);
    return fg_buf_take(&b);
}

static void duration_units(void)
{
    uint64_t v;
    CHECK(dur("250ms", &v) == 0 && v == 250);
    CHECK(dur("10s", &v) == 0 && v == 10000);
    CHECK(dur("5m", &v) == 0 && v == 300000);
    CHECK(dur("2h", &v) == 0 && v == 7200000);
    CHECK(dur("0s", &v) == 0 && v == 0);
    CHECK(dur("0ms", &v) == 0 && v == 0);
}

static void duration_compound(void)
{
    uint64_t v;
    CHECK(dur("1h30m", &v) == 0 && v == 5400000);
    CHECK(dur("1m30s", &v) == 0 && v == 90000);
    CHECK(dur("1s500ms", &v) == 0 && v == 1500);
    CHECK(dur("1h1m1s1ms", &v) == 0 && v == 3661001);
}

/* A number needs a unit ("timeout: 5": seconds or milliseconds?); only 0 does not, as in Go. */
static void duration_bare_seconds(void)
{
    uint64_t v;
    CHECK(dur("10", &v) == -1);
    CHECK(dur("1", &v) == -1);
    CHECK(dur("00", &v) == 0 && v == 0);
    CHECK(dur("0", &v) == 0 && v == 0);
}

static void duration_junk(void)
{
    uint64_t v;
    const char *bad[] = {"",     "s",    "ms",  "h",  "10x",   "1.5s", "-1s", "10 s", " 10s",
                         "10s ", "1h30", "10S", "1d", "10sec", "+5s",  "1e3", "m5"};
    for (size_t i = 0; i < FG_ARRAY_LEN(bad); i++) {
        if (dur(bad[i], &v) != -1) {
            printf("#   accepted duration \"%s\" as %llu\n", bad[i], (unsigned long long)v);
            CHECK(0);
        }
    }
    CHECK(v == 0xdeadbeef); /* out untouched on failure */
}

static void duration_overflow(void)
{
    uint64_t v;
    /* One component past UINT64_MAX/3600000 hours. */
    CHECK(dur("5124095576031h", &v) == -1);
    CHECK(dur("99999999999999999999999s", &v) == -1);
    /* The largest component is fine on its own, and so is a sum of exactly UINT64_MAX... */
    CHECK(dur("5124095576030h", &v) == 0 && v == 5124095576030ULL * 3600000ULL);
    CHECK(dur("5124095576030h1551615ms", &v) == 0 && v == UINT64_MAX);
    /* ...but a sum past UINT64_MAX must not wrap around to a small value. */
    CHECK(dur("5124095576030h1551616ms", &v) == -1);
    CHECK(dur("5124095576030h5124095576030h", &v) == -1);
}

static void size_plain_and_suffixes(void)
{
    uint64_t v;
    CHECK(size_of("65536", &v) == 0 && v == 65536);
    CHECK(size_of("0", &v) == 0 && v == 0);
    CHECK(size_of("64Ki", &v) == 0 && v == 65536);
    CHECK(size_of("1Mi", &v) == 0 && v == 1048576);
    CHECK(size_of("2Gi", &v) == 0 && v == 2147483648ULL);
    CHECK(size_of("10k", &v) == 0 && v == 10000);
    CHECK(size_of("3M", &v) == 0 && v == 3000000);
    CHECK(size_of("4G", &v) == 0 && v == 4000000000ULL);
}

static void size_junk(void)
{
    uint64_t v;
    const char *bad[] = {"",    "Ki",  "1KB", "1 Ki", "-1",   "1.5Mi", "1ki", "1K",
                         "1mi", "1Ti", " 1",  "1 ",   "0x10", "1Kii",  "Mi1"};
    for (size_t i = 0; i < FG_ARRAY_LEN(bad); i++) {
        if (size_of(bad[i], &v) != -1) {
            printf("#   accepted size \"%s\" as %llu\n", bad[i], (unsigned long long)v);
            CHECK(0);
        }
    }
}

/* Huge numbers are refused rather than wrapped, with or without a suffix. */
static void size_overflow(void)
{
    uint64_t v;
    CHECK(size_of("99999999999999999999999", &v) == -1);
    CHECK(size_of("99999999999999999999Gi", &v) == -1);
    CHECK(size_of("8Gi", &v) == 0 && v == 8589934592ULL);
}

static void u64_basic(void)
{
    uint64_t v;
    CHECK(u64("0", 100, &v) == 0 && v == 0);
    CHECK(u64("42", 100, &v) == 0 && v == 42);
    CHECK(u64("007", 100, &v) == 0 && v == 7);
    CHECK(u64("18446744073709551615", UINT64_MAX, &v) == 0 && v == UINT64_MAX);
    /* Only the first n bytes are read. */
    CHECK(fg_parse_u64("123abc", 3, 1000, &v) == 0 && v == 123);
}

static void u64_junk(void)
{
    uint64_t v;
    const char *bad[] = {"", "+1", "-1", " 1", "1 ", "1a", "0x1", "1.0"};
    for (size_t i = 0; i < FG_ARRAY_LEN(bad); i++)
        CHECK(u64(bad[i], UINT64_MAX, &v) == -1);
    CHECK(v == 0xdeadbeef);
}

static void u64_max_boundaries(void)
{
    uint64_t v;
    CHECK(u64("65535", 65535, &v) == 0 && v == 65535);
    CHECK(u64("65536", 65535, &v) == -1);
    CHECK(u64("65540", 65535, &v) == -1);
    CHECK(u64("100000", 65535, &v) == -1);
    CHECK(u64("18446744073709551616", UINT64_MAX, &v) == -1);
    CHECK(u64("256", 256, &v) == 0 && v == 256);
    CHECK(u64("257", 256, &v) == -1);
}

/* A max below 9 must still bound single digits: (max - d) must not underflow. */
static void u64_small_max(void)
{
    uint64_t v;
    CHECK(u64("5", 5, &v) == 0 && v == 5);
    CHECK(u64("6", 5, &v) == -1);
    CHECK(u64("9", 5, &v) == -1);
    CHECK(u64("09", 5, &v) == -1);
    CHECK(u64("1", 0, &v) == -1);
    CHECK(u64("0", 0, &v) == 0 && v == 0);
}

static void json_plain(void)
{
    char *s = json("hello world", 11);
    CHECK_STR(s, "\"hello world\"");
    free(s);
    s = json("", 0);
    CHECK_STR(s, "\"\"");
    free(s);
}

static void json_quotes_and_backslash(void)
{
    char *s = json("say \"hi\" \\o/", 12);
    CHECK_STR(s, "\"say \\\"hi\\\" \\\\o/\"");
    free(s);
}

static void json_control_chars(void)
{
    char *s = json("a\nb\rc\td\x01"
                   "e\x1f"
                   "f\x7f",
                   12);
    CHECK_STR(s, "\"a\\u000ab\\u000dc\\u0009d\\u0001e\\u001ff\\u007f\"");
    free(s);
}

/* A NUL inside the length is escaped, not a terminator. */
static void json_embedded_nul(void)
{
    char *s = json("a\0b", 3);
    CHECK_STR(s, "\"a\\u0000b\"");
    free(s);
}

/* Bytes >= 0x80 (UTF-8) pass through unchanged. */
static void json_utf8_passthrough(void)
{
    char *s = json("caf\xc3\xa9", 5);
    CHECK_STR(s, "\"caf\xc3\xa9\"");
    free(s);
}

static void json_appends(void)
{
    struct fg_buf b = {0};
    fg_buf_adds(&b, "x=");
    fg_buf_json_str(&b, "y", 1);
    CHECK_STR(b.data, "x=\"y\"");
    CHECK(b.len == 5);
    fg_buf_free(&b);
}

static void logval_bare(void)
{
    char *s = logval("GET", 3);
    CHECK_STR(s, "GET");
    free(s);
    s = logval("/api/v1/pods?watch=1", 12); /* only the first 12 bytes */
    CHECK_STR(s, "/api/v1/pods");
    free(s);
}

static void logval_quoted(void)
{
    char *s = logval("", 0);
    CHECK_STR(s, "\"\"");
    free(s);
    s = logval("a b", 3);
    CHECK_STR(s, "\"a b\"");
    free(s);
    s = logval("k=v", 3);
    CHECK_STR(s, "\"k=v\"");
    free(s);
    s = logval("say \"x\"", 7);
    CHECK_STR(s, "\"say \\\"x\\\"\"");
    free(s);
    s = logval("back\\slash", 10);
    CHECK_STR(s, "\"back\\\\slash\"");
    free(s);
}

/* A value can never start a new log line or carry raw control bytes. */
static void logval_controls(void)
{
    char *s = logval("a\nlevel=error", 13);
    CHECK_STR(s, "\"a\\u000alevel=error\"");
    CHECK(strchr(s, '\n') == NULL);
    free(s);
    s = logval("x\x7f", 2);
    CHECK_STR(s, "\"x\\u007f\"");
    free(s);
    s = logval("\xc3\xa9", 2);
    CHECK_STR(s, "\"\xc3\xa9\"");
    free(s);
}

/* Lines without their "\n" or "\r\n", numbered from 1; a last line without "\n" counts. */
static void next_line_splits_and_counts(void)
{
    static const char text[] = "a:1\r\n\n# c\nlast";
    struct fg_lines it = {text, sizeof(text) - 1, 0, 0};
    const char *l;
    size_t n;
    static const char *const want[] = {"a:1", "", "# c", "last"};
    for (size_t i = 0; i < FG_ARRAY_LEN(want); i++) {
        CHECK(fg_next_line(&it, &l, &n) == 1);
        CHECK(n == strlen(want[i]) && memcmp(l, want[i], n) == 0);
        CHECK(it.lineno == (int)i + 1);
    }
    CHECK(fg_next_line(&it, &l, &n) == 0);
    CHECK(fg_next_line(&it, &l, &n) == 0);
    struct fg_lines empty = {"", 0, 0, 0};
    CHECK(fg_next_line(&empty, &l, &n) == 0 && empty.lineno == 0);
    struct fg_lines one = {"x\n", 2, 0, 0}; /* a final "\n" does not open another line */
    CHECK(fg_next_line(&one, &l, &n) == 1 && n == 1 && fg_next_line(&one, &l, &n) == 0);
    struct fg_lines nul = {"a\0b\nc", 5, 0, 0}; /* NUL bytes stay in the line for the caller */
    CHECK(fg_next_line(&nul, &l, &n) == 1 && n == 3 && l[1] == '\0');
}

/* One rule for "http:// is fine here because it is loopback": an exact host, a real port. */
static void loopback_http_urls(void)
{
    static const char *const yes[] = {
        "http://127.0.0.1",        "http://127.0.0.1/",      "http://127.0.0.1:8080",
        "http://127.0.0.1:1/keys", "http://localhost/",      "http://localhost:65535/x",
        "http://LOCALHOST/",       "http://LocalHost:80",    "http://[::1]",
        "http://[::1]:8080/x",     "http://localhost/a?b#c", "http://[::1]/",
    };
    static const char *const no[] = {
        "http://localhost.evil.example/",
        "http://127.0.0.1.evil/",
        "http://127.0.0.10/",
        "http://127.0.0.1evil/",
        "http://localhost@evil/",
        "http://127.0.0.1@evil/",
        "http://evil@localhost/",
        "http://localhost:99999",
        "http://localhost:0/",
        "http://localhost:/",
        "http://localhost:80x/",
        "http://localhost:-1/",
        "http://localhost:8080@evil/",
        "http://localhost?x",
        "http://localhost#x",
        "http://localhost\\@evil/",
        "http://[::1",
        "http://[::1]x/",
        "http://[::2]/",
        "http://[::1/x]",
        "http://::1/",
        "http://127.1/",
        "http://0x7f000001/",
        "http:///",
        "http://",
        "http:",
        "https://localhost/",
        "https://127.0.0.1:8443/",
        "HTTP://localhost/",
        "ftp://localhost/",
        "localhost",
        "//localhost/",
        " http://localhost/",
        "",
    };
    for (size_t i = 0; i < FG_ARRAY_LEN(yes); i++) {
        if (!fg_url_is_loopback_http(yes[i]))
            printf("#   want loopback: %s\n", yes[i]);
        CHECK(fg_url_is_loopback_http(yes[i]) == 1);
    }
    for (size_t i = 0; i < FG_ARRAY_LEN(no); i++) {
        if (fg_url_is_loopback_http(no[i]))
            printf("#   want not loopback: %s\n", no[i]);
        CHECK(fg_url_is_loopback_http(no[i]) == 0);
    }
    CHECK(fg_url_is_loopback_http(NULL) == 0);
}

/* Small tables come from calloc, large ones from 2 MiB-aligned mappings: zeroed either way. */
static void calloc_huge(void)
{
    size_t sizes[] = {64, (2u << 20) - 8, 2u << 20, (5u << 20) + 24};
    for (size_t i = 0; i < FG_ARRAY_LEN(sizes); i++) {
        unsigned char *p = fg_calloc_huge(sizes[i] / 8, 8);
        size_t nonzero = 0;
        for (size_t j = 0; j < sizes[i]; j += 4096)
            nonzero += p[j] != 0;
        CHECK(nonzero == 0 && p[sizes[i] - 1] == 0);
        memset(p, 0xab, sizes[i]);
        if (sizes[i] >= (2u << 20))
            CHECK(((uintptr_t)p & ((2u << 20) - 1)) == 0);
        fg_free_huge(p, sizes[i] / 8, 8);
    }
    fg_free_huge(NULL, 0, 8);
}

int main(void)
{
    RUN(next_line_splits_and_counts);
    RUN(calloc_huge);
    RUN(loopback_http_urls);
    RUN(duration_units);
    RUN(duration_compound);
    RUN(duration_bare_seconds);
    RUN(duration_junk);
    RUN(duration_overflow);
    RUN(size_plain_and_suffixes);
    RUN(size_junk);
    RUN(size_overflow);
    RUN(u64_basic);
    RUN(u64_junk);
    RUN(u64_max_boundaries);
    RUN(u64_small_max);
    RUN(json_plain);
    RUN(json_quotes_and_backslash);
    RUN(json_control_chars);
    RUN(json_embedded_nul);
    RUN(json_utf8_passthrough);
    RUN(json_appends);
    RUN(logval_bare);
    RUN(logval_quoted);
    RUN(logval_controls);
    DONE();
}
