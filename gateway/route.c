#include "route.h"

#include <string.h>

static int unreserved(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* Percent-encodings a shard could decode into something routing never saw. */
static int encodings_ok(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\\' || c < 0x21 || c == 0x7f)
            return 0;
        if (c != '%')
            continue;
        if (i + 2 >= n)
            return 0;
        int hi = fg_hexval((unsigned char)p[i + 1]), lo = fg_hexval((unsigned char)p[i + 2]);
        if (hi < 0 || lo < 0)
            return 0;
        int d = hi << 4 | lo;
        if (unreserved(d) || d == '/' || d == '\\' || d == 0)
            return 0;
        i += 2;
    }
    return 1;
}

int fg_route_path_ok(const char *path, size_t len, size_t from)
{
    if (len == 0 || path[0] != '/' || !encodings_ok(path, len))
        return 0;
    /* Segments of path[from..len); a trailing '/' (empty last segment) is fine. */
    for (size_t i = from; i < len;) {
        size_t start = i;
        while (i < len && path[i] != '/')
            i++;
        size_t seg = i - start;
        if (seg == 0)
            return 0;
        if (path[start] == '.' && (seg == 1 || (seg == 2 && path[start + 1] == '.')))
            return 0;
        if (i < len)
            i++;
    }
    return 1;
}

static int prefix_matches(const struct fg_route_cfg *r, const char *path, size_t len)
{
    if (len < r->prefix_len || memcmp(path, r->prefix, r->prefix_len) != 0)
        return 0;
    if (r->prefix[r->prefix_len - 1] == '/' || len == r->prefix_len)
        return 1;
    return path[r->prefix_len] == '/';
}

enum fg_route_outcome fg_route_resolve(const struct fg_config *cfg, const char *target,
                                       size_t target_len, struct fg_route_match *m)
{
    memset(m, 0, sizeof(*m));
    if (target_len == 0 || target[0] != '/' || memchr(target, '#', target_len) != NULL)
        return FG_ROUTE_BAD_PATH;
    const char *q = memchr(target, '?', target_len);
    m->path = target;
    m->path_len = q ? (size_t)(q - target) : target_len;
    if (q) {
        m->query = q + 1;
        m->query_len = target_len - m->path_len - 1;
    }
    const struct fg_route_cfg *r = NULL;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        if (prefix_matches(&cfg->routes[i], m->path, m->path_len)) {
            r = &cfg->routes[i];
            break;
        }
    }
    /* Checked before "no route": a hostile path gets 400 whatever the config. */
    size_t from = r ? r->prefix_len : 1;
    if (r && r->prefix[r->prefix_len - 1] != '/')
        from = r->prefix_len < m->path_len ? r->prefix_len + 1 : m->path_len;
    if (!fg_route_path_ok(m->path, m->path_len, from))
        return FG_ROUTE_BAD_PATH;
    if (r == NULL)
        return FG_ROUTE_NO_MATCH;
    m->route = r;
    if (r->kind == FG_ROUTE_SHARD) {
        m->shard = r->shard;
        return FG_ROUTE_OK;
    }
    const char *seg = m->path + r->prefix_len;
    const char *end = m->path + m->path_len;
    const char *slash = memchr(seg, '/', (size_t)(end - seg));
    m->ws_name = seg;
    m->ws_name_len = (size_t)((slash ? slash : end) - seg);
    m->rest = slash ? slash : end;
    m->rest_len = (size_t)(end - m->rest);
    if (!fg_index_valid_name(m->ws_name, m->ws_name_len))
        return FG_ROUTE_UNKNOWN_WS;
    m->ws = fg_index_find(cfg->index, m->ws_name, m->ws_name_len);
    if (m->ws == NULL)
        return FG_ROUTE_UNKNOWN_WS;
    m->shard = m->ws->shard;
    if (m->ws->phase == FG_WS_UNAVAILABLE)
        return FG_ROUTE_UNAVAILABLE;
    return FG_ROUTE_OK;
}

void fg_route_upstream_target(struct fg_buf *b, const struct fg_shard_cfg *shard,
                              const struct fg_route_match *m)
{
    fg_buf_adds(b, shard->base_path);
    if (m->ws) {
        fg_buf_adds(b, "/clusters/");
        fg_buf_adds(b, m->ws->cluster);
        fg_buf_add(b, m->rest, m->rest_len);
    } else {
        fg_buf_add(b, m->path, m->path_len);
    }
    if (m->query) {
        fg_buf_addc(b, '?');
        fg_buf_add(b, m->query, m->query_len);
    }
}
