/*
 * test_http.c - the pure HTTP/1.1 helpers (gateway/http.h): header
 * classification, Connection and Transfer-Encoding tokens, and the exact
 * bytes of the error bodies clients see.
 */
#include "t.h"

#include "gateway/http.h"
#include "gateway/sanitize.h"

#include <stdlib.h>

static enum fg_hdr_kind kind(const char *name)
{
    return fg_hdr_classify(name, strlen(name));
}

/* Every spelling must classify as want; prints the first one that does not. */
static int all_kind(const char *const *names, size_t n, enum fg_hdr_kind want)
{
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        if (kind(names[i]) != want) {
            printf("#   %s: kind %d, want %d\n", names[i], (int)kind(names[i]), (int)want);
            ok = 0;
        }
    }
    return ok;
}

#define ALL_KIND(want, ...)                                                                        \
    do {                                                                                           \
        const char *const names_[] = {__VA_ARGS__};                                                \
        CHECK(all_kind(names_, FG_ARRAY_LEN(names_), (want)));                                     \
    } while (0)

static int lists(const char *value, const char *name)
{
    return fg_conn_token_lists(value, strlen(value), name, strlen(name));
}

static int chunked(const char *value)
{
    return fg_te_is_chunked(value, strlen(value));
}

static void collect(void *arg, const char *tok, size_t n)
{
    struct fg_buf *b = arg;
    fg_buf_addc(b, '[');
    fg_buf_add(b, tok, n);
    fg_buf_addc(b, ']');
}

static char *tokens(const char *value)
{
    struct fg_buf b = {0};
    fg_each_token(value, strlen(value), collect, &b);
    return fg_buf_take(&b);
}

static char *status(int code, const char *reason, const char *message)
{
    struct fg_buf b = {0};
    fg_status_json(&b, code, reason, message);
    return fg_buf_take(&b);
}

static void classify_identity(void)
{
    ALL_KIND(FG_HDR_IDENTITY, "X-Remote-User", "x-remote-user", "X-REMOTE-GROUP", "X-Remote-Group",
             "X-Remote-Extra-Foo", "x-remote-extra-authentication.kcp.io%2fscopes", "X-Remote-Uid",
             "X-Remote-");
}

static void classify_forwarded(void)
{
    ALL_KIND(FG_HDR_FORWARDED, "X-Forwarded-For", "x-forwarded-host", "X-Forwarded-Proto",
             "X-FORWARDED-PORT", "X-Forwarded-Prefix", "Forwarded", "forwarded", "X-Real-IP",
             "x-real-ip", "X-Forwarded-Anything");
}

static void classify_hop_by_hop(void)
{
    ALL_KIND(FG_HDR_CONNECTION, "Connection", "connection", "CONNECTION");
    ALL_KIND(FG_HDR_UPGRADE, "Upgrade", "upgrade");
    ALL_KIND(FG_HDR_HOP, "Keep-Alive", "keep-alive", "Proxy-Connection", "TE", "te", "Trailer",
             "trailer", "Proxy-Authorization", "proxy-authorization", "Proxy-Authenticate");
}

static void classify_framing_and_auth(void)
{
    ALL_KIND(FG_HDR_TRANSFER_ENCODING, "Transfer-Encoding", "transfer-encoding");
    ALL_KIND(FG_HDR_CONTENT_LENGTH, "Content-Length", "CONTENT-LENGTH");
    ALL_KIND(FG_HDR_HOST, "Host", "HOST", "host");
    ALL_KIND(FG_HDR_AUTHORIZATION, "Authorization", "authorization");
    ALL_KIND(FG_HDR_EXPECT, "Expect", "expect");
}

/* Near misses and headers a proxy must pass untouched. */
static void classify_other(void)
{
    ALL_KIND(FG_HDR_OTHER, "Content-Type", "Accept", "Impersonate-User", "Impersonate-Group",
             "Impersonate-Extra-Scopes", "X-Remote", "X-Remot-User", "X-Forwarded", "Trailers",
             "TEE", "T", "Hosts", "Authorizations", "Content-Lengths", "Connections", "Keep-Alive2",
             "Proxy", "Real-IP", "X-Real-IPv6", "", "Upgrade-Insecure-Requests",
             "Sec-WebSocket-Key", "User-Agent", "Cookie");
}

/* The name is length-delimited: a header line's value must not leak into it. */
static void classify_length_delimited(void)
{
    CHECK(fg_hdr_classify("Host: example", 4) == FG_HDR_HOST);
    CHECK(fg_hdr_classify("TEST", 2) == FG_HDR_HOP);
    CHECK(fg_hdr_classify("Hostname", 4) == FG_HDR_HOST);
    CHECK(fg_hdr_classify("X-Remote-User", 8) == FG_HDR_OTHER);
}

static void connection_tokens(void)
{
    CHECK(lists("close", "close"));
    CHECK(lists("Keep-Alive, Upgrade", "upgrade"));
    CHECK(lists("keep-alive,upgrade", "Keep-Alive"));
    CHECK(lists(" , ,  close ,", "close"));
    CHECK(lists("x-foo,\tX-Bar\t", "x-bar"));
    CHECK(lists("Upgrade, HTTP2-Settings", "http2-settings"));
    CHECK(!lists("closed", "close"));
    CHECK(!lists("close", "closed"));
    CHECK(!lists("clo se", "close"));
    CHECK(!lists("", "close"));
    CHECK(!lists(",,,", "close"));
    CHECK(!lists("keep-alive", "alive"));
}

static void each_token_split(void)
{
    char *s = tokens(" a , b,,c\t,\t d e ,");
    CHECK_STR(s, "[a][b][c][d e]");
    free(s);
    s = tokens("");
    CHECK_STR(s, "");
    free(s);
    s = tokens(" , \t,");
    CHECK_STR(s, "");
    free(s);
    s = tokens("single");
    CHECK_STR(s, "[single]");
    free(s);
}

static void te_chunked(void)
{
    CHECK(chunked("chunked"));
    CHECK(chunked(" Chunked "));
    CHECK(chunked("CHUNKED"));
    CHECK(chunked("\tchunked\t"));
}

/* Only a lone "chunked" is acceptable framing; anything else is a smuggling risk. */
static void te_not_chunked(void)
{
    const char *bad[] = {
        "gzip, chunked", "chunked, gzip", "xchunked", "chunkedx", "chunk",      "", " ",
        "chunked,",      ",chunked",      "chun ked", "identity", "chunked;q=1"};
    for (size_t i = 0; i < FG_ARRAY_LEN(bad); i++) {
        if (chunked(bad[i])) {
            printf("#   \"%s\" taken as chunked\n", bad[i]);
            CHECK(0);
        }
    }
}

static void reason_phrases(void)
{
    CHECK_STR(fg_http_reason(200), "OK");
    CHECK_STR(fg_http_reason(101), "Switching Protocols");
    CHECK_STR(fg_http_reason(400), "Bad Request");
    CHECK_STR(fg_http_reason(401), "Unauthorized");
    CHECK_STR(fg_http_reason(403), "Forbidden");
    CHECK_STR(fg_http_reason(404), "Not Found");
    CHECK_STR(fg_http_reason(431), "Request Header Fields Too Large");
    CHECK_STR(fg_http_reason(502), "Bad Gateway");
    CHECK_STR(fg_http_reason(503), "Service Unavailable");
    CHECK(fg_http_reason(299) != NULL);
}

static void status_401_exact(void)
{
    char *s = status(401, "Unauthorized", "Unauthorized");
    CHECK_STR(s,
              "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\","
              "\"message\":\"Unauthorized\",\"reason\":\"Unauthorized\",\"code\":401}\n");
    free(s);
}

static void status_403_exact(void)
{
    char *s = status(403, "Forbidden",
                     "forbidden: User \"\" cannot get path \"/\": workspace access not permitted");
    CHECK_STR(s,
              "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\","
              "\"message\":\"forbidden: User \\\"\\\" cannot get path \\\"/\\\": workspace "
              "access not permitted\",\"reason\":\"Forbidden\",\"code\":403}\n");
    free(s);
}

/* A message built from a request (a path, a name) can never break out of its string. */
static void status_escapes_message(void)
{
    char *s = status(400, "BadRequest", "bad \"x\"\\\n\r\x01\x7f");
    CHECK_CONTAINS(s, "\"message\":\"bad \\\"x\\\"\\\\\\u000a\\u000d\\u0001\\u007f\",");
    CHECK(strchr(s, '\r') == NULL);
    CHECK(strchr(s, '\n') == s + strlen(s) - 1);
    free(s);
    s = status(500, "a\"b", "m");
    CHECK_CONTAINS(s, "\"reason\":\"a\\\"b\"");
    free(s);
}

static void status_appends(void)
{
    struct fg_buf b = {0};
    fg_buf_adds(&b, "X");
    fg_status_json(&b, 502, "ServiceUnavailable", "m");
    CHECK(b.data[0] == 'X' && b.data[1] == '{');
    CHECK_CONTAINS(b.data, ",\"code\":502}\n");
    CHECK(b.len == strlen(b.data));
    fg_buf_free(&b);
}

static void iceberg_error_exact(void)
{
    struct fg_buf b = {0};
    fg_iceberg_error_json(&b, 401, "NotAuthorizedException", "Not authorized");
    CHECK_STR(b.data,
              "{\"error\":{\"message\":\"Not authorized\",\"type\":\"NotAuthorizedException\","
              "\"code\":401}}\n");
    fg_buf_reset(&b);
    fg_iceberg_error_json(&b, 403, "Forbidden\"X", "a\nb");
    CHECK_STR(b.data, "{\"error\":{\"message\":\"a\\u000ab\",\"type\":\"Forbidden\\\"X\","
                      "\"code\":403}}\n");
    fg_buf_free(&b);
}

int main(void)
{
    RUN(classify_identity);
    RUN(classify_forwarded);
    RUN(classify_hop_by_hop);
    RUN(classify_framing_and_auth);
    RUN(classify_other);
    RUN(classify_length_delimited);
    RUN(connection_tokens);
    RUN(each_token_split);
    RUN(te_chunked);
    RUN(te_not_chunked);
    RUN(reason_phrases);
    RUN(status_401_exact);
    RUN(status_403_exact);
    RUN(status_escapes_message);
    RUN(status_appends);
    RUN(iceberg_error_exact);
    DONE();
}
