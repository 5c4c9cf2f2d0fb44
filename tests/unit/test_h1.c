/*
 * test_h1.c - the strict request-head parser (gateway/h1.c), the header rules
 * (gateway/sanitize.c) and the chunked decoder (gateway/chunked.c): every byte
 * a hostile client may send, and what reaches a shard.
 */
#include "t.h"

#include "auth/identity.h"
#include "gateway/chunked.h"
#include "gateway/h1.h"
#include "gateway/sanitize.h"

#include <http_parser.h>
#include <stdlib.h>

/* Scans then parses head (one piece at a time, split at every byte when split is set). */
static int parse(const char *head, int split, struct fg_msg *m, struct fg_h1_request *rq)
{
    struct fg_h1_scan s = {0};
    size_t len = strlen(head), end = 0;
    enum fg_h1_result res = FG_H1_MORE;
    for (size_t i = 0; i < len && res == FG_H1_MORE;) {
        size_t n = split ? 1 : len;
        res = fg_h1_scan(&s, head + i, n, &end);
        i += n;
    }
    if (res == FG_H1_BAD)
        return -400;
    if (res == FG_H1_MORE)
        return -1;
    return fg_h1_parse_request(head + s.start, end - s.start, 8192, m, rq);
}

/* The status fg_h1 and fg_sanitize answer for head (0 when it is served). */
static int status_of(const char *head)
{
    struct fg_msg m = {0};
    struct fg_h1_request rq;
    struct fg_req_frame f;
    int st = parse(head, 0, &m, &rq), st1;
    struct fg_msg m1 = {0};
    struct fg_h1_request rq1;
    st1 = parse(head, 1, &m1, &rq1);
    if (st != st1) {
        printf("#   split parse differs: %d vs %d\n", st, st1);
        st = 999;
    }
    if (st == 0)
        st = fg_sanitize_request(&m, &rq, &f);
    fg_msg_free(&m);
    fg_msg_free(&m1);
    return st < 0 ? -st : st;
}

#define EXPECT(head, want)                                                                         \
    do {                                                                                           \
        int got_ = status_of(head);                                                                \
        if (got_ != (want)) {                                                                      \
            printf("#   %s:%d: status %d, want %d\n", __FILE__, __LINE__, got_, (want));           \
            t_cur_failed++;                                                                        \
        }                                                                                          \
    } while (0)

static void well_formed_heads(void)
{
    EXPECT("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0);
    EXPECT("GET /x?y=%2F HTTP/1.1\r\nHost: a:80\r\nX-Empty:\r\nA:  b c \t\r\n\r\n", 0);
    EXPECT("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 0); /* empty lines first */
    EXPECT("GET / HTTP/1.0\r\n\r\n", 0);
    EXPECT("POST / HTTP/1.1\r\nHost: [::1]:8443\r\nContent-Length: 5\r\n\r\n", 0);
    EXPECT("GET / HTTP/1.1\r\nHost: \r\n\r\n", 0); /* empty Host is allowed (RFC 9112 3.2) */
    EXPECT("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  chunked \r\n\r\n", 0);
    EXPECT("GET / HTTP/1.1\r\nHost: a\r\nX:\xc3\xa9\r\n\r\n", 0); /* obs-text in a value */
}

static void incomplete_heads(void)
{
    EXPECT("GET / HTTP/1.1\r\nHost: a\r\n", 1);
    EXPECT("GET / HTTP/1.1\r\nHost: a\r\n\r", 1);
    EXPECT("", 1);
}

static void bare_cr_and_lf(void)
{
    EXPECT("GET / HTTP/1.1\r\nHost: a\r\nX-A:\rX-Remote-User: evil\r\n\r\n", 400);
    EXPECT("GET / HTTP/1.1\nHost: a\r\n\r\n", 400);
    EXPECT("GET / HTTP/1.1\r\nHost: a\n\n", 400);
    EXPECT("GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", 400);
    EXPECT("GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", 400);
}

static void field_names(void)
{
    EXPECT("GET / HTTP/1.1\r\nHost: a\r\nX-Remote-User : evil\r\n\r\n", 400); /* SP before ':' */
    EXPECT("GET / HTTP/1.1\r\nHost: a\r\nX Remote-User: evil\r\n\r\n", 400);
    EXPECT("GET / HTTP/1.1\r\n X-Remote-User: evil\r\nHost: a\r\n\r\n", 400); /* after req line */
    EXPECT("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400);         /* obs-fold */
    EXPECT("GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", 400);
    EXPECT("GET / HTTP/1.1\r\nHost: a\r\nX-\x01: b\r\n\r\n", 400);
    EXPECT("GET / HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n", 400);
    EXPECT("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400);
}

static void field_values(void)
{
    EXPECT("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x01\r\n\r\n", 400);
    EXPECT("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x7f\r\n\r\n", 400);
    EXPECT("GET / HTTP/1.1\r\nHost: a\r\nX-A: \x0b\r\n\r\n", 400);
    EXPECT("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\tb\r\n\r\n", 0);
}

static void request_lines(void)
{
    EXPECT("GET / HZZZ/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET / http/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
    EXPECT("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400);
    EXPECT("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET /\tx HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET /\x0cx HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET /a?q=\x80 HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET /a% HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("get / HTTP/1.1\r\nHost: a\r\n\r\n", 501);
    EXPECT("BREW / HTTP/1.1\r\nHost: a\r\n\r\n", 501);
    EXPECT("G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET a.example:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400);
}

static void hosts(void)
{
    EXPECT("GET / HTTP/1.1\r\n\r\n", 400);
    EXPECT("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", 400);
    EXPECT("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400);
    EXPECT("GET / HTTP/1.1\r\nHost: a,b\r\n\r\n", 400);
    EXPECT("GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n", 400);
    EXPECT("GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", 400);
    EXPECT("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400);
    EXPECT("GET / HTTP/1.1\r\nHost: [zz]\r\n\r\n", 400);
    CHECK(fg_sanitize_host_ok("a.example-1.com:6443", 20));
    CHECK(fg_sanitize_host_ok("[2001:db8::1]:1", 15));
    CHECK(fg_sanitize_host_ok("xn--caf-dma.example", 19));
    CHECK(!fg_sanitize_host_ok("a/b", 3));
}

/* Absolute-form: routed on its path, its authority replaces Host (RFC 9112 3.2.2). */
static void absolute_form(void)
{
    struct fg_msg m = {0};
    struct fg_h1_request rq;
    struct fg_req_frame f;
    CHECK(parse("GET http://shard.example:8080/clusters/x?a=1 HTTP/1.1\r\nHost: other\r\n\r\n", 0,
                &m, &rq) == 0);
    CHECK(rq.absolute);
    CHECK(m.first_len == 15 && memcmp(m.raw.data, "/clusters/x?a=1", 15) == 0);
    CHECK(fg_sanitize_request(&m, &rq, &f) == 0);
    CHECK(f.host_idx >= 0);
    const struct fg_hdr *h = &m.hdrs[f.host_idx];
    CHECK(h->value_len == 18 && memcmp(m.raw.data + h->value, "shard.example:8080", 18) == 0);
    CHECK(parse("GET HTTP://a HTTP/1.0\r\n\r\n", 0, &m, &rq) == 0);
    CHECK(m.first_len == 1 && m.raw.data[0] == '/');
    CHECK(fg_sanitize_request(&m, &rq, &f) == 0 && f.host_idx >= 0); /* a Host from the target */
    fg_msg_free(&m);
    EXPECT("GET http://user@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET ftp://a/x HTTP/1.1\r\nHost: a\r\n\r\n", 400);
}

static void framing(void)
{
    EXPECT("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400);
    EXPECT("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\n", 400);
    EXPECT("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", 400);
    EXPECT("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
           400);
    EXPECT("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400);
    EXPECT("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
           "chunked\r\n\r\n",
           400);
    EXPECT("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400); /* RFC 9112 6.1 */
    EXPECT("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n", 0);
    EXPECT("GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", 417);
    EXPECT("GET / HTTP/1.1\r\nHost: a\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n", 400);
}

/* The kinds and drops a head ends up with after fg_sanitize_request. */
static struct fg_msg sanitized(const char *head, struct fg_req_frame *f)
{
    struct fg_msg m = {0};
    struct fg_h1_request rq;
    CHECK(parse(head, 0, &m, &rq) == 0);
    CHECK(fg_sanitize_request(&m, &rq, f) == 0);
    return m;
}

/* What fg_sanitize_copy_headers forwards of head. */
static char *forwarded(const char *head, int keep_auth)
{
    struct fg_req_frame f;
    struct fg_msg m = sanitized(head, &f);
    char *strip[] = {"x-project-id"};
    struct fg_copy_rules rules = {.keep_auth = keep_auth, .strip = strip, .nstrip = 1};
    struct fg_buf b = {0};
    fg_sanitize_copy_headers(&b, &m, &rules);
    fg_buf_addc(&b, '\0');
    fg_msg_free(&m);
    return fg_buf_take(&b);
}

static void connection_lists_every_line(void)
{
    struct fg_buf h = {0};
    fg_buf_adds(&h, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < 12; i++)
        fg_buf_printf(&h, "Connection: x-%d\r\nX-%d: v\r\n", i, i);
    fg_buf_adds(&h, "X-Keep: k\r\n\r\n");
    char *out = forwarded(h.data, 0);
    CHECK_STR(out, "X-Keep: k\r\n");
    free(out);
    fg_buf_free(&h);
    /* more than 64 options: refused rather than spending quadratic time */
    struct fg_buf big = {0};
    fg_buf_adds(&big, "GET / HTTP/1.1\r\nHost: a\r\nConnection: ");
    for (int i = 0; i < 65; i++)
        fg_buf_printf(&big, "o%d,", i);
    fg_buf_adds(&big, "\r\n\r\n");
    EXPECT(big.data, 400);
    fg_buf_free(&big);
}

static void reserved_names_in_any_spelling(void)
{
    char *out =
        forwarded("GET / HTTP/1.1\r\nHost: a\r\nX_Remote_User: evil\r\nX-Remote_Group: g\r\n"
                  "x-remote-extra-a: b\r\nX_Forwarded_For: 1.2.3.4\r\nForwarded: for=x\r\n"
                  "X-Real-IP: 1\r\nContent_Length: 5\r\nTransfer_Encoding: chunked\r\n"
                  "Keep-Alive: 1\r\nProxy-Authorization: p\r\nX_Project_Id: 7\r\n"
                  "Authorization: Bearer t\r\nX-Ok_Name: fine\r\n\r\n",
                  0);
    CHECK_STR(out, "X-Ok_Name: fine\r\n");
    free(out);
    out = forwarded("GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer t\r\n\r\n", 1);
    CHECK_STR(out, "Authorization: Bearer t\r\n");
    free(out);
    CHECK(fg_hdr_classify("X_Remote_User", 13) == FG_HDR_SPOOF);
    CHECK(fg_hdr_classify("x_forwarded_host", 16) == FG_HDR_SPOOF);
    CHECK(fg_hdr_classify("Impersonate_User", 16) == FG_HDR_OTHER);
    CHECK(fg_hdr_name_eq("X_Project-ID", 12, "x-project-id"));
    CHECK(!fg_hdr_name_eq("X_Project-ID2", 13, "x-project-id"));
}

static void keepalive_and_upgrade(void)
{
    struct fg_req_frame f;
    struct fg_msg m = sanitized("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", &f);
    CHECK(!f.keepalive);
    fg_msg_free(&m);
    m = sanitized("GET / HTTP/1.0\r\n\r\n", &f);
    CHECK(!f.keepalive);
    fg_msg_free(&m);
    m = sanitized("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &f);
    CHECK(f.keepalive);
    fg_msg_free(&m);
    m = sanitized("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                  "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
                  &f);
    CHECK(f.upgrade && f.upgrade_idx >= 0);
    CHECK(m.hdrs[3].drop); /* HTTP2-Settings is Connection-listed */
    fg_msg_free(&m);
    m = sanitized("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", &f);
    CHECK(!f.upgrade); /* no Connection: upgrade */
    fg_msg_free(&m);
    char *const allowed[] = {"websocket", "SPDY/3.1"};
    CHECK(fg_sanitize_upgrade_allowed("WebSocket", 9, allowed, 2));
    CHECK(fg_sanitize_upgrade_allowed("SPDY/3.1", 8, allowed, 2));
    CHECK(!fg_sanitize_upgrade_allowed("h2c", 3, allowed, 2));
    CHECK(!fg_sanitize_upgrade_allowed("websocket, h2c", 14, allowed, 2));
    CHECK(!fg_sanitize_upgrade_allowed("SPDY/3", 6, allowed, 2));
    CHECK(!fg_sanitize_upgrade_allowed("", 0, allowed, 2));
    char *const h2c[] = {"h2c"};
    CHECK(!fg_sanitize_upgrade_allowed("h2c", 3, h2c, 1));
}

static void response_connection_lists(void)
{
    struct fg_msg m = {0};
    const char *names[] = {"Connection", "X-A", "Connection", "X-B", "Content-Length", "X-C"};
    const char *values[] = {"x-a", "1", "x-b, content-length", "2", "5", "3"};
    for (size_t i = 0; i < 6; i++) {
        fg_grow(&m.hdrs, &m.hcap, m.nhdrs + 1, sizeof(struct fg_hdr));
        struct fg_hdr *h = &m.hdrs[m.nhdrs++];
        memset(h, 0, sizeof(*h));
        h->name = (uint32_t)m.raw.len;
        h->name_len = (uint32_t)strlen(names[i]);
        fg_buf_adds(&m.raw, names[i]);
        h->value = (uint32_t)m.raw.len;
        h->value_len = (uint32_t)strlen(values[i]);
        fg_buf_adds(&m.raw, values[i]);
    }
    int up;
    fg_sanitize_response(&m, &up);
    CHECK(up == -1);
    CHECK(m.hdrs[1].drop && m.hdrs[3].drop && !m.hdrs[4].drop && !m.hdrs[5].drop);
    fg_msg_free(&m);
}

static void stamp_identity(void)
{
    struct fg_identity *id = fg_identity_new("alice", "t");
    fg_identity_add_group(id, "dev");
    fg_identity_add_extra(id, "example.org/k", "v");
    struct fg_buf b = {0};
    fg_sanitize_stamp_identity(&b, id);
    CHECK_STR(b.data, "X-Remote-User: alice\r\nX-Remote-Group: dev\r\n"
                      "X-Remote-Extra-Example.org%2fk: v\r\n");
    fg_buf_free(&b);
    fg_identity_unref(id);
}

static void value_clean(void)
{
    CHECK(fg_h1_value_clean("", 0));
    CHECK(fg_h1_value_clean("a b", 3));
    CHECK(!fg_h1_value_clean(" a", 2));
    CHECK(!fg_h1_value_clean("a\t", 2));
    CHECK(!fg_h1_value_clean("a\rb", 3));
    CHECK(!fg_h1_value_clean("a\0b", 3));
}

/* ---- chunked bodies ------------------------------------------------------- */

static void count_data(void *arg, const char *p, size_t n)
{
    (void)p;
    *(size_t *)arg += n;
}

static enum fg_chunked_result chunked(const char *body, size_t len, size_t *data)
{
    struct fg_chunked c;
    fg_chunked_init(&c);
    size_t used;
    *data = 0;
    return fg_chunked_feed(&c, body, len, &used, count_data, data);
}

#define CHUNKED(s, want)                                                                           \
    do {                                                                                           \
        size_t d_;                                                                                 \
        CHECK(chunked(s, sizeof(s) - 1, &d_) == (want));                                           \
    } while (0)

static void chunk_extensions(void)
{
    CHUNKED("5;a=b\r\nhello\r\n0\r\n\r\n", FG_CHUNKED_DONE);
    CHUNKED("5 ;a=b\r\nhello\r\n0\r\n\r\n", FG_CHUNKED_DONE); /* BWS before ';' */
    CHUNKED("5\t \t;a\r\nhello\r\n0\r\n\r\n", FG_CHUNKED_DONE);
    CHUNKED("5 \r\nhello\r\n0\r\n\r\n", FG_CHUNKED_ERROR); /* whitespace without ';' */
    CHUNKED("5 5\r\nhello\r\n0\r\n\r\n", FG_CHUNKED_ERROR);
    CHUNKED(" 5\r\nhello\r\n0\r\n\r\n", FG_CHUNKED_ERROR);
    /* extensions: 4 KiB per chunk, not more */
    struct fg_buf b = {0};
    fg_buf_adds(&b, "1;");
    for (int i = 0; i < 4095; i++)
        fg_buf_addc(&b, 'x');
    fg_buf_adds(&b, "\r\na\r\n0\r\n\r\n");
    size_t d;
    CHECK(chunked(b.data, b.len, &d) == FG_CHUNKED_DONE && d == 1);
    fg_buf_reset(&b);
    fg_buf_adds(&b, "1;");
    for (int i = 0; i < 4097; i++)
        fg_buf_addc(&b, 'x');
    fg_buf_adds(&b, "\r\na\r\n0\r\n\r\n");
    CHECK(chunked(b.data, b.len, &d) == FG_CHUNKED_ERROR);
    /* the bound is per chunk: many chunks each with 3 KiB pass */
    fg_buf_reset(&b);
    for (int k = 0; k < 4; k++) {
        fg_buf_adds(&b, "1;");
        for (int i = 0; i < 3000; i++)
            fg_buf_addc(&b, 'x');
        fg_buf_adds(&b, "\r\na\r\n");
    }
    fg_buf_adds(&b, "0\r\n\r\n");
    CHECK(chunked(b.data, b.len, &d) == FG_CHUNKED_DONE && d == 4);
    fg_buf_free(&b);
    CHUNKED("5\nhello\r\n0\r\n\r\n", FG_CHUNKED_ERROR);
    CHUNKED("5\r\nhelloX\r\n0\r\n\r\n", FG_CHUNKED_ERROR);
}

int main(void)
{
    RUN(well_formed_heads);
    RUN(incomplete_heads);
    RUN(bare_cr_and_lf);
    RUN(field_names);
    RUN(field_values);
    RUN(request_lines);
    RUN(hosts);
    RUN(absolute_form);
    RUN(framing);
    RUN(connection_lists_every_line);
    RUN(reserved_names_in_any_spelling);
    RUN(keepalive_and_upgrade);
    RUN(response_connection_lists);
    RUN(stamp_identity);
    RUN(value_clean);
    RUN(chunk_extensions);
    DONE();
}
