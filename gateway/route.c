#include "route.h"

#include "kcp.h"

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

/*
 * The length of path that r's prefix matches, or 0. A {name} segment of the prefix matches one
 * non-empty segment; *cl and *cln get the one {cluster} matched (or stay as they are).
 */
static size_t prefix_matches(const struct fg_route_cfg *r, const char *path, size_t len,
                             const char **cl, size_t *cln)
{
    size_t j = r->prefix_len;
    if (!r->placeholders) {
        if (len < r->prefix_len || memcmp(path, r->prefix, r->prefix_len) != 0)
            return 0;
    } else {
        int seg = -1;
        j = 0;
        for (size_t i = 0; i < r->prefix_len;) {
            if (r->prefix[i] == '{') {
                size_t k = j;
                while (k < len && path[k] != '/')
                    k++;
                if (k == j)
                    return 0;
                if (seg == r->cluster_seg) {
                    *cl = path + j;
                    *cln = k - j;
                }
                i = (size_t)((const char *)memchr(r->prefix + i, '}', r->prefix_len - i) -
                             r->prefix) +
                    1;
                j = k;
                continue;
            }
            if (j >= len || path[j] != r->prefix[i])
                return 0;
            seg += r->prefix[i] == '/';
            i++;
            j++;
        }
    }
    if (r->prefix[r->prefix_len - 1] == '/' || len == j)
        return j;
    return path[j] == '/' ? j : 0;
}

/* kcp's extractClusterFromPath: the segment after the first "/clusters/" of the path, or "". */
static void cluster_in_path(const char *path, size_t len, const char **cl, size_t *cln)
{
    for (size_t i = 0; i + 10 <= len; i++) {
        if (memcmp(path + i, "/clusters/", 10) != 0)
            continue;
        const char *s = path + i + 10, *end = path + len;
        const char *slash = memchr(s, '/', (size_t)(end - s));
        *cl = s;
        *cln = (size_t)((slash ? slash : end) - s);
        return;
    }
}

/* Form-decodes q[0..n) into out (NUL-terminated); its length, or -1 (bad escape, control, room). */
static long decode(const char *q, size_t n, char *out, size_t outsz)
{
    size_t o = 0;
    for (size_t k = 0; k < n; k++) {
        int c = (unsigned char)q[k];
        if (c == '%') {
            int hi = k + 2 < n ? fg_hexval((unsigned char)q[k + 1]) : -1;
            int lo = k + 2 < n ? fg_hexval((unsigned char)q[k + 2]) : -1;
            if (hi < 0 || lo < 0)
                return -1;
            c = hi << 4 | lo;
            k += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (c < 0x20 || c == 0x7f || o + 1 >= outsz)
            return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return (long)o;
}

/*
 * The decoded value of the one query parameter whose decoded name is `name`.
 * 0, or -1 when it is absent, empty, malformed or given more than once
 * (`warehouse=a&%77arehouse=b` must not let the catalog pick another value
 * than the one frontgate authorized).
 */
static int query_param(const char *q, size_t qlen, const char *name, char *out, size_t outsz)
{
    int found = 0;
    for (size_t i = 0; q && i < qlen;) {
        size_t end = i;
        while (end < qlen && q[end] != '&')
            end++;
        const char *eq = memchr(q + i, '=', end - i);
        size_t nlen = (size_t)((eq ? eq : q + end) - (q + i));
        char pname[64];
        if (decode(q + i, nlen, pname, sizeof(pname)) >= 0 && strcmp(pname, name) == 0) {
            if (found++ || eq == NULL ||
                decode(eq + 1, (size_t)(q + end - eq - 1), out, outsz) <= 0)
                return -1;
        }
        i = end + 1;
    }
    return found ? 0 : -1;
}

static enum fg_route_outcome resolve_iceberg(const struct fg_config *cfg, struct fg_route_match *m)
{
    const char *seg = m->path + m->route->prefix_len;
    const char *end = m->path + m->path_len;
    const char *slash = memchr(seg, '/', (size_t)(end - seg));
    size_t seglen = (size_t)((slash ? slash : end) - seg);
    if (seglen == 6 && memcmp(seg, "config", 6) == 0 && slash == NULL) {
        if (query_param(m->query, m->query_len, "warehouse", m->warehouse, sizeof(m->warehouse)) !=
            0)
            return FG_ROUTE_NO_WAREHOUSE;
        m->ws_name = m->warehouse;
        m->ws_name_len = strlen(m->warehouse);
        m->ws = fg_index_by_warehouse(cfg->index, m->ws_name, m->ws_name_len);
    } else {
        m->ws_name = seg;
        m->ws_name_len = seglen;
        m->ws =
            fg_index_valid_name(seg, seglen) ? fg_index_by_cluster(cfg->index, seg, seglen) : NULL;
    }
    if (m->ws == NULL)
        return FG_ROUTE_UNKNOWN_WS;
    m->shard = m->ws->shard;
    m->wstype = m->ws->type;
    return m->ws->phase == FG_WS_UNAVAILABLE ? FG_ROUTE_UNAVAILABLE : FG_ROUTE_OK;
}

/* A workspace of the live index, with its shard and type mapped to cfg's. NULL when unknown. */
static const struct fg_workspace *live_find(const struct fg_config *cfg, const struct fg_live *l,
                                            const char *name, size_t n, struct fg_route_match *m)
{
    const struct fg_workspace *ws = fg_index_find(l->ix, name, n);
    if (ws == NULL || ws->shard >= l->nshards ||
        fg_config_shard_index(cfg, l->shards[ws->shard], cfg->nstatic_shards, &m->shard) != 0)
        return NULL;
    if (ws->type == FG_WS_NO_TYPE || ws->type >= l->ntypes ||
        fg_config_wstype_index(cfg, l->types[ws->type], &m->wstype) != 0) {
        m->wstype = FG_WS_NO_TYPE;
        /* not in the config: kcp's own WorkspaceType, when frontgate watches them */
        if (ws->type != FG_WS_NO_TYPE && ws->type < l->ntypes && l->ltypes &&
            l->ltypes[ws->type].known)
            m->ltype = &l->ltypes[ws->type];
    }
    return ws;
}

/* The workspace named[0..n) into m (ws, shard, type): cfg's index first, then the live one. */
static enum fg_route_outcome lookup(const struct fg_config *cfg, const struct fg_live *live,
                                    const char *name, size_t n, struct fg_route_match *m)
{
    m->ws = fg_index_find(cfg->index, name, n);
    if (m->ws) {
        m->shard = m->ws->shard;
        m->wstype = m->ws->type;
    } else if (live) {
        m->ws = live_find(cfg, live, name, n, m);
    }
    if (m->ws == NULL)
        return FG_ROUTE_UNKNOWN_WS;
    return m->ws->phase == FG_WS_UNAVAILABLE ? FG_ROUTE_UNAVAILABLE : FG_ROUTE_OK;
}

/*
 * A shard route with resolveCluster (kcp's virtual-workspace mappings): the {cluster} segment,
 * else the one after the first /clusters/ in the path, is looked up so that authentication has
 * the workspace (its type's authenticators, the scope); the request still goes to the route's
 * shard, path unchanged. No cluster, or "*", is no lookup.
 */
static enum fg_route_outcome resolve_cluster(const struct fg_config *cfg,
                                             const struct fg_live *live, const char *cl, size_t cln,
                                             struct fg_route_match *m)
{
    if (cl == NULL)
        cluster_in_path(m->path, m->path_len, &cl, &cln);
    if (cln == 0 || (cln == 1 && cl[0] == '*'))
        return FG_ROUTE_OK;
    m->ws_name = cl;
    m->ws_name_len = cln;
    if (!fg_index_valid_name(cl, cln))
        return FG_ROUTE_UNKNOWN_WS;
    uint32_t shard = m->shard;
    enum fg_route_outcome o = lookup(cfg, live, cl, cln, m);
    m->shard = shard; /* the route's, whatever the workspace's is */
    return o;
}

enum fg_route_outcome fg_route_resolve(const struct fg_config *cfg, const struct fg_live *live,
                                       const char *target, size_t target_len,
                                       struct fg_route_match *m)
{
    memset(m, 0, sizeof(*m));
    m->wstype = FG_WS_NO_TYPE;
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
    const char *cl = NULL;
    size_t cln = 0, matched = 0;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct fg_token_endpoint_cfg *te = cfg->routes[i].token_endpoint;
        if (te && strlen(te->path) == m->path_len && memcmp(te->path, m->path, m->path_len) == 0) {
            m->route = &cfg->routes[i];
            return FG_ROUTE_TOKEN_ENDPOINT;
        }
    }
    for (size_t i = 0; i < cfg->nroutes; i++) {
        if ((matched = prefix_matches(&cfg->routes[i], m->path, m->path_len, &cl, &cln)) != 0) {
            r = &cfg->routes[i];
            break;
        }
    }
    m->route = r; /* even for a 400: the answer speaks the route's dialect */
    /* Checked before "no route": a hostile path gets 400 whatever the config. */
    size_t from = r ? matched : 1;
    if (r && r->prefix[r->prefix_len - 1] != '/')
        from = matched < m->path_len ? matched + 1 : m->path_len;
    if (!fg_route_path_ok(m->path, m->path_len, r && r->placeholders ? 1 : from))
        return FG_ROUTE_BAD_PATH;
    if (r == NULL)
        return FG_ROUTE_NO_MATCH;
    m->route = r;
    if (r->kind == FG_ROUTE_SHARD) {
        m->shard = r->shard;
        return r->resolve_cluster ? resolve_cluster(cfg, live, cl, cln, m) : FG_ROUTE_OK;
    }
    if (r->kind == FG_ROUTE_WORKSPACE_ICEBERG)
        return resolve_iceberg(cfg, m);
    const char *seg = m->path + r->prefix_len;
    const char *end = m->path + m->path_len;
    const char *slash = memchr(seg, '/', (size_t)(end - seg));
    m->ws_name = seg;
    m->ws_name_len = (size_t)((slash ? slash : end) - seg);
    m->rest = slash ? slash : end;
    m->rest_len = (size_t)(end - m->rest);
    if (!fg_index_valid_name(m->ws_name, m->ws_name_len))
        return FG_ROUTE_UNKNOWN_WS;
    return lookup(cfg, live, m->ws_name, m->ws_name_len, m);
}

void fg_route_upstream_target(struct fg_buf *b, const struct fg_shard_cfg *shard,
                              const struct fg_route_match *m)
{
    fg_buf_adds(b, shard->base_path);
    if (m->ws && m->route->kind == FG_ROUTE_WORKSPACE_PATH) {
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
