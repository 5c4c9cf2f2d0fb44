#include "h1.h"

#include <http_parser.h>
#include <stdlib.h>
#include <string.h>

void fg_msg_reset(struct fg_msg *m)
{
    fg_buf_reset(&m->raw);
    m->nhdrs = 0;
    m->first_len = 0;
    m->in_value = 0;
    m->bytes = 0;
}

void fg_msg_free(struct fg_msg *m)
{
    fg_buf_free(&m->raw);
    free(m->hdrs);
    m->hdrs = NULL;
    m->nhdrs = m->hcap = 0;
}

int fg_h1_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int vchar_or_obs(unsigned char c)
{
    return (c > 0x20 && c != 0x7f);
}

int fg_h1_value_clean(const char *v, size_t n)
{
    if (n == 0)
        return 1;
    if (!vchar_or_obs((unsigned char)v[0]) || !vchar_or_obs((unsigned char)v[n - 1]))
        return 0;
    for (size_t i = 1; i + 1 < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (!vchar_or_obs(c) && c != ' ' && c != '\t')
            return 0;
    }
    return 1;
}

enum fg_h1_result fg_h1_scan(struct fg_h1_scan *s, const char *p, size_t n, size_t *end)
{
    for (size_t i = 0; i < n; i++) {
        size_t at = s->pos + i;
        if (s->cr) {
            s->cr = 0;
            if (p[i] != '\n')
                return FG_H1_BAD; /* bare CR */
            size_t line_len = at - 1 - s->line;
            s->line = at + 1;
            if (line_len > 0)
                continue;
            if (s->start == at - 1) {
                s->start = at + 1; /* an empty line before the request line: skipped */
                continue;
            }
            s->pos = at + 1;
            *end = at + 1;
            return FG_H1_DONE;
        }
        if (p[i] == '\r')
            s->cr = 1;
        else if (p[i] == '\n')
            return FG_H1_BAD; /* bare LF */
    }
    s->pos += n;
    return FG_H1_MORE;
}

/* ---- the request line ----------------------------------------------------- */

int fg_h1_method_of(const char *p, size_t n)
{
    for (int m = 0;; m++) {
        const char *name = http_method_str((enum http_method)m);
        if (strcmp(name, "<unknown>") == 0)
            return -1;
        if (strlen(name) == n && memcmp(name, p, n) == 0)
            return m;
    }
}

/* A byte allowed in a request-target (origin or absolute form). */
static int target_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '#';
}

/* Checks the target's bytes: no control, space, DEL, '#', non-ASCII; '%' then two hex digits. */
int fg_h1_target_ok(const char *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t[i];
        if (!target_char(c))
            return 0;
        if (c == '%' && (i + 2 >= n || fg_hexval((unsigned char)t[i + 1]) < 0 ||
                         fg_hexval((unsigned char)t[i + 2]) < 0))
            return 0;
    }
    return 1;
}

/*
 * Stores the target: origin-form as it is; absolute-form ("http://authority/path?q")
 * as its path and query ("/" when the path is empty), with the authority after it.
 */
static int store_target(const char *t, size_t n, struct fg_msg *m, struct fg_h1_request *rq)
{
    if (n > 0 && t[0] == '/') {
        fg_buf_add(&m->raw, t, n);
        m->first_len = (uint32_t)n;
        return 0;
    }
    size_t scheme = fg_strn_prefixi(t, n, "http://")    ? 7
                    : fg_strn_prefixi(t, n, "https://") ? 8
                                                        : 0;
    if (scheme == 0)
        return 400; /* asterisk-form and authority-form are not served */
    size_t a = scheme, e = a;
    while (e < n && t[e] != '/' && t[e] != '?')
        e++;
    const char *path = t + e;
    size_t plen = n - e;
    if (plen == 0 || path[0] == '?') {
        fg_buf_addc(&m->raw, '/');
        m->first_len = 1;
    }
    fg_buf_add(&m->raw, path, plen);
    m->first_len += (uint32_t)plen;
    rq->absolute = 1;
    rq->authority = (uint32_t)m->raw.len;
    rq->authority_len = (uint32_t)(e - a);
    fg_buf_add(&m->raw, t + a, e - a);
    return 0;
}

static int request_line(const char *p, size_t n, size_t max_target, struct fg_msg *m,
                        struct fg_h1_request *rq)
{
    const char *sp1 = memchr(p, ' ', n);
    if (sp1 == NULL || sp1 == p)
        return 400;
    for (const char *q = p; q < sp1; q++)
        if (!fg_h1_tchar((unsigned char)*q))
            return 400;
    const char *t = sp1 + 1;
    const char *sp2 = memchr(t, ' ', n - (size_t)(t - p));
    if (sp2 == NULL || sp2 == t)
        return 400;
    size_t tlen = (size_t)(sp2 - t);
    const char *v = sp2 + 1;
    size_t vlen = n - (size_t)(v - p);
    if (vlen != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' ||
        v[7] < '0' || v[7] > '9')
        return 400; /* HTTP-name is case-sensitive "HTTP" (RFC 9112 2.3) */
    if (v[5] != '1')
        return 505;
    if (tlen > max_target)
        return 414;
    if (!fg_h1_target_ok(t, tlen))
        return 400;
    rq->minor = v[7] - '0';
    if (rq->minor > 1)
        rq->minor = 1;
    rq->method = fg_h1_method_of(p, (size_t)(sp1 - p));
    if (rq->method < 0)
        return 501;
    return store_target(t, tlen, m, rq);
}

/* ---- field lines ---------------------------------------------------------- */

static int field_line(const char *p, size_t n, struct fg_msg *m)
{
    size_t i = 0;
    while (i < n && fg_h1_tchar((unsigned char)p[i]))
        i++;
    if (i == 0 || i == n || p[i] != ':')
        return 400; /* empty name, a non-tchar in it, or whitespace before the colon */
    size_t vs = i + 1, ve = n;
    while (vs < ve && (p[vs] == ' ' || p[vs] == '\t'))
        vs++;
    while (ve > vs && (p[ve - 1] == ' ' || p[ve - 1] == '\t'))
        ve--;
    if (!fg_h1_value_clean(p + vs, ve - vs))
        return 400;
    fg_grow(&m->hdrs, &m->hcap, m->nhdrs + 1, sizeof(struct fg_hdr));
    struct fg_hdr *h = &m->hdrs[m->nhdrs++];
    memset(h, 0, sizeof(*h));
    h->name = (uint32_t)m->raw.len;
    h->name_len = (uint32_t)i;
    fg_buf_add(&m->raw, p, i);
    h->value = (uint32_t)m->raw.len;
    h->value_len = (uint32_t)(ve - vs);
    fg_buf_add(&m->raw, p + vs, ve - vs);
    return 0;
}

int fg_h1_parse_request(const char *in, size_t len, size_t max_target, struct fg_msg *m,
                        struct fg_h1_request *rq)
{
    memset(rq, 0, sizeof(*rq));
    fg_msg_reset(m);
    m->bytes = (uint32_t)len;
    size_t pos = 0;
    int first = 1, st = 0;
    while (st == 0) {
        const char *lf = memchr(in + pos, '\n', len - pos);
        if (lf == NULL || lf == in + pos || lf[-1] != '\r') {
            st = 400; /* not a head fg_h1_scan accepted */
            break;
        }
        size_t n = (size_t)(lf - (in + pos)) - 1;
        const char *line = in + pos;
        pos = (size_t)(lf - in) + 1;
        if (n == 0)
            break; /* the empty line: end of the head */
        if (memchr(line, '\r', n) || memchr(line, '\0', n) != NULL) {
            st = 400;
            break;
        }
        if (first) {
            st = request_line(line, n, max_target, m, rq);
            first = 0;
        } else {
            st = field_line(line, n, m); /* a line starting with SP/HTAB fails the tchar test */
        }
    }
    if (st == 0 && (first || pos != len))
        st = 400;
    return st;
}
