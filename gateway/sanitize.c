#include "sanitize.h"

#include "../auth/identity.h"

#include <string.h>

#define MAX_CONN_OPTIONS 64

char *const fg_sanitize_default_upgrades[] = {"websocket", "SPDY/3.1"};
const size_t fg_sanitize_ndefault_upgrades = FG_ARRAY_LEN(fg_sanitize_default_upgrades);

/* ---- names ---------------------------------------------------------------- */

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

int fg_hdr_name_eq(const char *name, size_t len, const char *lit)
{
    size_t i = 0;
    for (; i < len && lit[i]; i++) {
        int a = lower((unsigned char)name[i]), b = lower((unsigned char)lit[i]);
        if (a == '_')
            a = '-';
        if (b == '_')
            b = '-';
        if (a != b)
            return 0;
    }
    return i == len && lit[i] == '\0';
}

static enum fg_hdr_kind classify_exact(const char *name, size_t len)
{
    switch (len) {
    case 2:
        if (fg_strn_eqi(name, len, "te"))
            return FG_HDR_HOP;
        break;
    case 4:
        if (fg_strn_eqi(name, len, "host"))
            return FG_HDR_HOST;
        break;
    case 6:
        if (fg_strn_eqi(name, len, "expect"))
            return FG_HDR_EXPECT;
        break;
    case 7:
        if (fg_strn_eqi(name, len, "upgrade"))
            return FG_HDR_UPGRADE;
        if (fg_strn_eqi(name, len, "trailer"))
            return FG_HDR_HOP;
        break;
    case 9:
        if (fg_strn_eqi(name, len, "forwarded"))
            return FG_HDR_FORWARDED;
        if (fg_strn_eqi(name, len, "x-real-ip"))
            return FG_HDR_FORWARDED;
        break;
    case 10:
        if (fg_strn_eqi(name, len, "connection"))
            return FG_HDR_CONNECTION;
        if (fg_strn_eqi(name, len, "keep-alive"))
            return FG_HDR_HOP;
        break;
    case 12:
        if (fg_strn_eqi(name, len, "x-request-id"))
            return FG_HDR_FORWARDED; /* frontgate sends its own (the client's, when it is sane) */
        break;
    case 13:
        if (fg_strn_eqi(name, len, "authorization"))
            return FG_HDR_AUTHORIZATION;
        break;
    case 14:
        if (fg_strn_eqi(name, len, "content-length"))
            return FG_HDR_CONTENT_LENGTH;
        break;
    case 16:
        if (fg_strn_eqi(name, len, "proxy-connection"))
            return FG_HDR_HOP;
        break;
    case 17:
        if (fg_strn_eqi(name, len, "transfer-encoding"))
            return FG_HDR_TRANSFER_ENCODING;
        break;
    case 18:
        if (fg_strn_eqi(name, len, "proxy-authenticate"))
            return FG_HDR_HOP;
        break;
    case 19:
        if (fg_strn_eqi(name, len, "proxy-authorization"))
            return FG_HDR_HOP;
        break;
    default:
        break;
    }
    if (fg_strn_prefixi(name, len, "x-remote-"))
        return FG_HDR_IDENTITY;
    if (fg_strn_prefixi(name, len, "x-forwarded-"))
        return FG_HDR_FORWARDED;
    return FG_HDR_OTHER;
}

enum fg_hdr_kind fg_hdr_classify(const char *name, size_t len)
{
    enum fg_hdr_kind k = classify_exact(name, len);
    if (k != FG_HDR_OTHER || memchr(name, '_', len) == NULL || len > 64)
        return k;
    /* X_Remote_User, Content_Length, ...: what a CGI-style shard reads as the reserved name. */
    char mapped[64];
    for (size_t i = 0; i < len; i++)
        mapped[i] = name[i] == '_' ? '-' : name[i];
    return classify_exact(mapped, len) != FG_HDR_OTHER ? FG_HDR_SPOOF : FG_HDR_OTHER;
}

/* ---- tokens --------------------------------------------------------------- */

void fg_each_token(const char *value, size_t vlen, void (*fn)(void *arg, const char *tok, size_t n),
                   void *arg)
{
    size_t i = 0;
    while (i < vlen) {
        while (i < vlen && (value[i] == ' ' || value[i] == '\t' || value[i] == ','))
            i++;
        size_t start = i;
        while (i < vlen && value[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t'))
            end--;
        if (end > start)
            fn(arg, value + start, end - start);
    }
}

struct token_match {
    const char *name;
    size_t nlen;
    int found;
};

static int same_ci(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return 0;
    return 1;
}

static void match_token(void *arg, const char *tok, size_t n)
{
    struct token_match *m = arg;
    if (n == m->nlen && same_ci(tok, m->name, n))
        m->found = 1;
}

int fg_conn_token_lists(const char *value, size_t vlen, const char *name, size_t nlen)
{
    struct token_match m = {name, nlen, 0};
    fg_each_token(value, vlen, match_token, &m);
    return m.found;
}

int fg_te_is_chunked(const char *value, size_t vlen)
{
    while (vlen > 0 && (value[0] == ' ' || value[0] == '\t'))
        value++, vlen--;
    while (vlen > 0 && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
        vlen--;
    return fg_strn_eqi(value, vlen, "chunked");
}

static void count_token(void *arg, const char *tok, size_t n)
{
    (void)tok;
    (void)n;
    (*(size_t *)arg)++;
}

/* ---- Host ----------------------------------------------------------------- */

static int reg_name_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

int fg_sanitize_host_ok(const char *v, size_t n)
{
    size_t i = 0;
    if (n > 0 && v[0] == '[') {
        /* IPv6 literal: hex digits, ':' and '.' (an embedded IPv4) */
        for (i = 1; i < n && v[i] != ']'; i++)
            if (fg_hexval((unsigned char)v[i]) < 0 && v[i] != ':' && v[i] != '.')
                return 0;
        if (i == n || i < 3)
            return 0;
        i++;
    } else {
        for (; i < n && v[i] != ':'; i++) {
            if (v[i] == '%') {
                if (i + 2 >= n || fg_hexval((unsigned char)v[i + 1]) < 0 ||
                    fg_hexval((unsigned char)v[i + 2]) < 0)
                    return 0;
                i += 2;
            } else if (!reg_name_char((unsigned char)v[i])) {
                return 0; /* userinfo '@', spaces, lists, anything else */
            }
        }
    }
    if (i == n)
        return 1;
    if (v[i] != ':' || n - i - 1 > 5)
        return 0;
    uint64_t port = 0;
    for (i++; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return 0;
        port = port * 10 + (uint64_t)(v[i] - '0');
    }
    return port <= 65535;
}

/* ---- requests ------------------------------------------------------------- */

static const char *value_of(const struct fg_msg *m, const struct fg_hdr *h)
{
    return m->raw.data + h->value;
}

/* An absolute-form target's authority becomes the Host the shard sees (RFC 9112 3.2.2). */
static int take_authority(struct fg_msg *m, const struct fg_h1_request *rq, struct fg_req_frame *f)
{
    if (!fg_sanitize_host_ok(m->raw.data + rq->authority, rq->authority_len) ||
        rq->authority_len == 0)
        return 400;
    if (f->host_idx < 0) {
        fg_grow(&m->hdrs, &m->hcap, m->nhdrs + 1, sizeof(struct fg_hdr));
        struct fg_hdr *h = &m->hdrs[m->nhdrs];
        memset(h, 0, sizeof(*h));
        h->name = (uint32_t)m->raw.len;
        h->name_len = 4;
        h->kind = FG_HDR_HOST;
        fg_buf_add(&m->raw, "Host", 4);
        f->host_idx = (int)m->nhdrs++;
    }
    m->hdrs[f->host_idx].value = rq->authority;
    m->hdrs[f->host_idx].value_len = rq->authority_len;
    return 0;
}

/* Marks what the Connection lines name as hop-by-hop (framing and Upgrade stay ours). */
static void drop_listed(struct fg_msg *m, int request)
{
    for (size_t k = 0; k < m->nhdrs; k++) {
        const struct fg_hdr *ch = &m->hdrs[k];
        if (ch->kind != FG_HDR_CONNECTION)
            continue;
        for (size_t i = 0; i < m->nhdrs; i++) {
            struct fg_hdr *h = &m->hdrs[i];
            int keep = request ? (h->kind == FG_HDR_HOST || h->kind == FG_HDR_CONTENT_LENGTH ||
                                  h->kind == FG_HDR_TRANSFER_ENCODING || h->kind == FG_HDR_UPGRADE)
                               : h->kind != FG_HDR_OTHER;
            if (!keep && !h->drop &&
                fg_conn_token_lists(value_of(m, ch), ch->value_len, m->raw.data + h->name,
                                    h->name_len))
                h->drop = 1;
        }
    }
}

int fg_sanitize_request(struct fg_msg *m, const struct fg_h1_request *rq, struct fg_req_frame *f)
{
    int te = -1, cl = -1, hosts = 0, close = 0, keep = 0, conn_upgrade = 0;
    size_t options = 0;
    memset(f, 0, sizeof(*f));
    f->host_idx = f->auth_idx = f->upgrade_idx = -1;
    for (size_t i = 0; i < m->nhdrs; i++) {
        struct fg_hdr *h = &m->hdrs[i];
        const char *v = value_of(m, h);
        h->kind = (uint8_t)fg_hdr_classify(m->raw.data + h->name, h->name_len);
        h->drop = 0;
        switch (h->kind) {
        case FG_HDR_HOST:
            hosts++;
            f->host_idx = (int)i;
            if (!fg_sanitize_host_ok(v, h->value_len))
                return 400;
            break;
        case FG_HDR_CONTENT_LENGTH:
            if (cl >= 0 || fg_parse_u64(v, h->value_len, (uint64_t)1 << 62, &f->cl) != 0)
                return 400; /* repeated (even if equal) or not just digits */
            cl = (int)i;
            break;
        case FG_HDR_TRANSFER_ENCODING:
            if (te >= 0 || !fg_te_is_chunked(v, h->value_len))
                return 400;
            te = (int)i;
            break;
        case FG_HDR_AUTHORIZATION:
            if (f->auth_idx >= 0)
                return 400; /* two credentials: refuse to guess which one counts */
            f->auth_idx = (int)i;
            break;
        case FG_HDR_UPGRADE:
            if (f->upgrade_idx >= 0)
                return 400;
            f->upgrade_idx = (int)i;
            break;
        case FG_HDR_CONNECTION:
            fg_each_token(v, h->value_len, count_token, &options);
            if (options > MAX_CONN_OPTIONS)
                return 400;
            close |= fg_conn_token_lists(v, h->value_len, "close", 5);
            keep |= fg_conn_token_lists(v, h->value_len, "keep-alive", 10);
            conn_upgrade |= fg_conn_token_lists(v, h->value_len, "upgrade", 7);
            break;
        case FG_HDR_EXPECT:
            if (!fg_strn_eqi(v, h->value_len, "100-continue"))
                return 417;
            f->expect_continue = 1;
            break;
        default:
            break;
        }
    }
    if (hosts > 1 || (hosts == 0 && rq->minor >= 1))
        return 400;
    if (rq->absolute && take_authority(m, rq, f) != 0)
        return 400;
    if (te >= 0 && (cl >= 0 || rq->minor == 0))
        return 400; /* RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding is faulty */
    f->chunked = te >= 0;
    f->has_cl = cl >= 0;
    f->keepalive = rq->minor >= 1 ? !close : keep && !close;
    f->upgrade = f->upgrade_idx >= 0 && conn_upgrade;
    drop_listed(m, 1);
    return 0;
}

struct allowed {
    char *const *list;
    size_t n;
    int all;
};

static void check_protocol(void *arg, const char *tok, size_t n)
{
    struct allowed *a = arg;
    size_t i = 0;
    while (i < a->n && !fg_strn_eqi(tok, n, a->list[i]))
        i++;
    if (i == a->n || fg_strn_eqi(tok, n, "h2c"))
        a->all = 0;
}

int fg_sanitize_upgrade_allowed(const char *value, size_t n, char *const *allowed, size_t nallowed)
{
    struct allowed a = {allowed, nallowed, 1};
    size_t tokens = 0;
    fg_each_token(value, n, count_token, &tokens);
    fg_each_token(value, n, check_protocol, &a);
    return tokens > 0 && a.all;
}

/* ---- what goes upstream --------------------------------------------------- */

void fg_sanitize_add(struct fg_buf *b, const char *name, const char *value, size_t vlen)
{
    fg_buf_adds(b, name);
    fg_buf_add(b, ": ", 2);
    fg_buf_add(b, value, vlen);
    fg_buf_add(b, "\r\n", 2);
}

static int stripped(const struct fg_copy_rules *rules, const char *name, size_t len)
{
    for (size_t i = 0; i < rules->nstrip; i++)
        if (fg_hdr_name_eq(name, len, rules->strip[i]))
            return 1;
    return 0;
}

void fg_sanitize_copy_headers(struct fg_buf *b, const struct fg_msg *m,
                              const struct fg_copy_rules *rules)
{
    for (size_t i = 0; i < m->nhdrs; i++) {
        const struct fg_hdr *h = &m->hdrs[i];
        const char *name = m->raw.data + h->name;
        if (h->drop)
            continue;
        switch (h->kind) {
        case FG_HDR_OTHER:
            if (stripped(rules, name, h->name_len))
                continue;
            break;
        case FG_HDR_AUTHORIZATION:
            if (!rules->keep_auth)
                continue;
            break;
        case FG_HDR_UPGRADE:
            if (!rules->keep_upgrade)
                continue;
            break;
        default:
            continue; /* framing, hop-by-hop, identity, forwarded, Host, Expect, spoofs */
        }
        fg_buf_add(b, name, h->name_len);
        fg_buf_add(b, ": ", 2);
        fg_buf_add(b, value_of(m, h), h->value_len);
        fg_buf_add(b, "\r\n", 2);
    }
}

void fg_sanitize_stamp_identity(struct fg_buf *b, const struct fg_identity *id)
{
    fg_sanitize_add(b, "X-Remote-User", id->user, strlen(id->user));
    if (id->uid)
        fg_sanitize_add(b, "X-Remote-Uid", id->uid, strlen(id->uid));
    for (size_t i = 0; i < id->ngroups; i++)
        fg_sanitize_add(b, "X-Remote-Group", id->groups[i], strlen(id->groups[i]));
    for (size_t i = 0; i < id->nextra; i++) {
        for (size_t j = 0; j < id->extra[i].nvalues; j++) {
            fg_buf_adds(b, "X-Remote-Extra-");
            fg_identity_escape_extra_key(b, id->extra[i].key);
            fg_buf_add(b, ": ", 2);
            fg_buf_adds(b, id->extra[i].values[j]);
            fg_buf_add(b, "\r\n", 2);
        }
    }
}

void fg_sanitize_framing(struct fg_buf *b, const struct fg_req_frame *f)
{
    if (f->chunked) {
        fg_buf_adds(b, "Transfer-Encoding: chunked\r\n");
    } else if (f->has_cl) {
        fg_buf_adds(b, "Content-Length: ");
        fg_buf_add_dec(b, f->cl);
        fg_buf_add(b, "\r\n", 2);
    }
    if (f->upgrade)
        fg_buf_adds(b, "Connection: Upgrade\r\n");
}

/* ---- responses ------------------------------------------------------------ */

void fg_sanitize_response(struct fg_msg *m, int *upgrade_idx)
{
    *upgrade_idx = -1;
    for (size_t i = 0; i < m->nhdrs; i++) {
        struct fg_hdr *h = &m->hdrs[i];
        h->kind = (uint8_t)fg_hdr_classify(m->raw.data + h->name, h->name_len);
        h->drop = 0;
        if (h->kind == FG_HDR_UPGRADE)
            *upgrade_idx = (int)i;
    }
    drop_listed(m, 0);
}
