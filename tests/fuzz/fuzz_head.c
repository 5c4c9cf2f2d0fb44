/*
 * libFuzzer: raw bytes -> the strict head parser -> the header rules -> the head frontgate
 * would send upstream, as gateway/proxy.c builds it. Oracles (written apart from the code
 * under test: names are compared here by a plain lower-case, '_'-as-'-' rule):
 *   - scanning in network-sized pieces finds the same end (or the same refusal) as at once;
 *   - the upstream head re-parses strictly and passes the rules again;
 *   - it carries exactly one Host and exactly the framing the request had (one of
 *     Content-Length or Transfer-Encoding, never both);
 *   - no inbound identity, forwarding or hop-by-hop header survives in any spelling, and the
 *     only X-Remote-* lines are the ones frontgate stamped, each once.
 */
#include "../../auth/identity.h"
#include "../../gateway/h1.h"
#include "../../gateway/sanitize.h"

#include <http_parser.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_HEAD 8192

/* name, lower-cased and with '_' as '-', into out (at most 64 bytes); 0 when longer. */
static size_t norm(const char *name, size_t len, char *out)
{
    if (len > 64)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c + 32);
        out[i] = c == '_' ? '-' : c;
    }
    return len;
}

static int is(const char *n, size_t len, const char *lit)
{
    return strlen(lit) == len && memcmp(n, lit, len) == 0;
}

static int starts(const char *n, size_t len, const char *lit)
{
    size_t l = strlen(lit);
    return len >= l && memcmp(n, lit, l) == 0;
}

static enum fg_h1_result scan_pieces(const uint8_t *data, size_t size, struct fg_h1_scan *s,
                                     size_t *end)
{
    enum fg_h1_result r = FG_H1_MORE;
    for (size_t off = 0; off < size && r == FG_H1_MORE;) {
        size_t piece = 1 + (data[off] % 5);
        if (piece > size - off)
            piece = size - off;
        r = fg_h1_scan(s, (const char *)data + off, piece, end);
        off += piece;
    }
    return r;
}

/* The upstream head for a sanitized request, built as proxy.c's build_head does. */
static void build(struct fg_buf *b, const struct fg_msg *m, const struct fg_req_frame *f,
                  const struct fg_h1_request *rq, int keep_auth, const struct fg_identity *id)
{
    fg_buf_adds(b, http_method_str((enum http_method)rq->method));
    fg_buf_addc(b, ' ');
    fg_buf_add(b, m->raw.data, m->first_len);
    fg_buf_adds(b, " HTTP/1.1\r\n");
    if (f->host_idx >= 0)
        fg_sanitize_add(b, "Host", m->raw.data + m->hdrs[f->host_idx].value,
                        m->hdrs[f->host_idx].value_len);
    else
        fg_sanitize_add(b, "Host", "shard:1", 7);
    char *strip[] = {"x-project-id"};
    struct fg_copy_rules rules = {
        .keep_auth = keep_auth, .keep_upgrade = f->upgrade, .strip = strip, .nstrip = 1};
    fg_sanitize_copy_headers(b, m, &rules);
    fg_sanitize_add(b, "X-Forwarded-For", "127.0.0.1", 9);
    fg_sanitize_stamp_identity(b, id);
    fg_sanitize_framing(b, f);
    fg_buf_add(b, "\r\n", 2);
}

static void check_upstream(const struct fg_buf *b, const struct fg_req_frame *in)
{
    struct fg_h1_scan s = {0};
    size_t end = 0;
    if (fg_h1_scan(&s, b->data, b->len, &end) != FG_H1_DONE || end != b->len || s.start != 0)
        abort(); /* the upstream head is not exactly one strict head */
    struct fg_msg m = {0};
    struct fg_h1_request rq;
    struct fg_req_frame f;
    if (fg_h1_parse_request(b->data, b->len, 1 << 20, &m, &rq) != 0 ||
        fg_sanitize_request(&m, &rq, &f) != 0)
        abort();
    int hosts = 0, cl = 0, te = 0, user = 0, group = 0, extra = 0, conn = 0, fwd = 0;
    for (size_t i = 0; i < m.nhdrs; i++) {
        char n[64];
        size_t len = norm(m.raw.data + m.hdrs[i].name, m.hdrs[i].name_len, n);
        if (len == 0)
            continue;
        hosts += is(n, len, "host");
        cl += is(n, len, "content-length");
        te += is(n, len, "transfer-encoding");
        user += is(n, len, "x-remote-user");
        group += is(n, len, "x-remote-group");
        extra += starts(n, len, "x-remote-extra-");
        if (starts(n, len, "x-remote-") && !is(n, len, "x-remote-user") &&
            !is(n, len, "x-remote-group") && !starts(n, len, "x-remote-extra-"))
            abort(); /* an inbound identity header survived */
        if (is(n, len, "connection")) {
            conn++;
            if (!in->upgrade)
                abort();
        }
        fwd += starts(n, len, "x-forwarded-") || is(n, len, "forwarded") || is(n, len, "x-real-ip");
        if (is(n, len, "keep-alive") || is(n, len, "te") || is(n, len, "trailer") ||
            is(n, len, "proxy-connection") || is(n, len, "proxy-authorization") ||
            is(n, len, "proxy-authenticate") || is(n, len, "x-project-id") ||
            (is(n, len, "upgrade") && !in->upgrade) || is(n, len, "expect"))
            abort(); /* hop-by-hop, stripped or ours alone */
    }
    if (hosts != 1 || user != 1 || group != 1 || extra != 1 || fwd != 1 || conn > 1)
        abort();
    if (cl + te > 1 || te != in->chunked || cl != (in->has_cl && !in->chunked) || f.cl != in->cl)
        abort(); /* framing changed on the way */
    fg_msg_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_HEAD)
        return 0;
    struct fg_h1_scan whole = {0}, pieces = {0};
    size_t end_whole = 0, end_pieces = 0;
    enum fg_h1_result r = fg_h1_scan(&whole, (const char *)data, size, &end_whole);
    enum fg_h1_result rp = scan_pieces(data, size, &pieces, &end_pieces);
    if (r != rp || (r == FG_H1_DONE && (end_whole != end_pieces || whole.start != pieces.start)))
        abort();
    if (r != FG_H1_DONE)
        return 0;
    struct fg_msg m = {0};
    struct fg_h1_request rq;
    struct fg_req_frame f;
    int st = fg_h1_parse_request((const char *)data + whole.start, end_whole - whole.start,
                                 MAX_HEAD, &m, &rq);
    if (st == 0)
        st = fg_sanitize_request(&m, &rq, &f);
    if (st == 0) {
        if (m.first_len == 0 || m.raw.data[0] != '/')
            abort(); /* the routed target is always a path */
        for (size_t i = 0; i < m.first_len; i++)
            if ((unsigned char)m.raw.data[i] <= 0x20 || (unsigned char)m.raw.data[i] >= 0x7f)
                abort();
        struct fg_identity *id = fg_identity_new("alice", "fuzz");
        fg_identity_add_group(id, "dev");
        fg_identity_add_extra(id, "example.org/k", "v");
        struct fg_buf b = {0};
        build(&b, &m, &f, &rq, size > 0 && (data[0] & 1), id);
        check_upstream(&b, &f);
        fg_buf_free(&b);
        fg_identity_unref(id);
    }
    fg_msg_free(&m);
    return 0;
}
