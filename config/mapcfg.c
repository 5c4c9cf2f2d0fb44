/*
 * mapcfg.c - kcp's front-proxy mapping file (`--mapping-file`) as frontgate's routes.
 *
 * `mappingFile: FILE` replaces `routes:`. Each entry of kcp's list
 *   {path, backend, backend_server_ca, proxy_client_cert, proxy_client_key,
 *    user_header, group_header, extra_header_prefix}
 * becomes a route, kcp's way:
 *   - path /clusters/ (or /clusters): the workspace route (`workspace: path`); its backend is
 *     not used (each workspace goes to its shard) and its TLS files fill what
 *     index.fromKcp.shards leaves unset;
 *   - path /: the default route, to a shard made of its backend;
 *   - any other path: a prefix (trailing '/' trimmed, {name} placeholders allowed) to a shard
 *     made of its backend, with resolveCluster (the {cluster} segment, or the segment after the
 *     first /clusters/ in the path, is looked up for authentication only).
 * Routes are ordered most specific first, as Go's ServeMux picks them: more segments first,
 * then a literal segment before a placeholder at the first place they differ; ties keep the
 * file's order. The shards are named "mapping:<path>". Relative file names resolve against the
 * mapping file's directory.
 */
#include "config.h"

#include "base.h"
#include "cfgread.h"
#include "reader.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const ENTRY_KEYS = "path, backend, backend_server_ca, proxy_client_cert, "
                                      "proxy_client_key, user_header, group_header, "
                                      "extra_header_prefix";

/* A file name of the mapping, relative to the config's directory as the config's are. */
static char *map_file(struct fg_cfgrd *mr, struct fg_ynode *n, const char *key, const char *dir,
                      struct fg_mark *m)
{
    const char *s = fg_rd_str(&mr->rd, n, key, 0, "mapping");
    if (s == NULL)
        return NULL;
    struct fg_ynode *v = fg_yaml_get(n, key)->val;
    *m = (struct fg_mark){mr->rd.file, v->line, v->col};
    if (s[0] == '/' || dir == NULL)
        return fg_strdup(s);
    struct fg_buf b = {0};
    fg_buf_printf(&b, "%s/%s", dir, s);
    return fg_buf_take(&b);
}

/* frontgate speaks kube's request-header names; another spelling would not reach the shard. */
static void check_header(struct fg_cfgrd *mr, struct fg_ynode *n, const char *key, const char *want)
{
    const char *s = fg_rd_str(&mr->rd, n, key, 0, "mapping");
    if (s && !fg_strn_eqi(s, strlen(s), want))
        fg_rd_err(&mr->rd, fg_yaml_get(n, key)->val,
                  "%s \"%s\" is not supported: frontgate's requestHeader identity is sent as "
                  "X-Remote-User, X-Remote-Group and X-Remote-Extra-* (omit the key, or write %s)",
                  key, s, want);
}

/* The TLS files of an entry into s (ca, cert, key), checked to go together. */
static void read_tls(struct fg_cfgrd *mr, struct fg_ynode *n, const char *dir,
                     struct fg_shard_cfg *s)
{
    s->ca_file = map_file(mr, n, "backend_server_ca", dir, &s->ca_mark);
    s->client_cert_file = map_file(mr, n, "proxy_client_cert", dir, &s->client_cert_mark);
    s->client_key_file = map_file(mr, n, "proxy_client_key", dir, &s->client_key_mark);
    if (!s->client_cert_file != !s->client_key_file)
        fg_rd_err(&mr->rd, n, "proxy_client_cert and proxy_client_key go together");
}

static int rt_is_clusters(size_t plen, const char *path)
{
    return plen == 9 && memcmp(path, "/clusters", 9) == 0;
}

static void read_entry(struct fg_cfgrd *mr, struct fg_ynode *n, const char *dir)
{
    struct fg_config *cfg = mr->cfg;
    if (fg_rd_expect(&mr->rd, n, FG_Y_MAP, "a mapping entry") != 0)
        return;
    check_header(mr, n, "user_header", "X-Remote-User");
    check_header(mr, n, "group_header", "X-Remote-Group");
    check_header(mr, n, "extra_header_prefix", "X-Remote-Extra-");
    const char *path = fg_rd_str(&mr->rd, n, "path", 1, "mapping entry");
    const char *url = fg_rd_str(&mr->rd, n, "backend", 0, "mapping entry");
    struct fg_shard_cfg *s = fg_calloc(1, sizeof(*s));
    read_tls(mr, n, dir, s);
    fg_rd_unknown(&mr->rd, n, "mapping entry", ENTRY_KEYS);
    struct fg_ynode *pv = path ? fg_yaml_get(n, "path")->val : NULL;
    if (path && (path[0] != '/' || strpbrk(path, "?# \t") != NULL)) {
        fg_rd_err(&mr->rd, pv, "mapping path \"%s\" must be a path starting with '/'", path);
        path = NULL;
    }
    size_t plen = path ? strlen(path) : 0;
    while (plen > 1 && path[plen - 1] == '/')
        plen--;
    if (path && rt_is_clusters(plen, path)) {
        /* kcp ignores its backend too: each workspace goes to its Shard's baseURL */
        if (mr->map_clusters)
            fg_rd_err(&mr->rd, pv, "a second /clusters/ mapping");
        struct fg_route_cfg *rt = &cfg->routes[cfg->nroutes++];
        rt->mark = (struct fg_mark){mr->rd.file, n->line, n->col};
        rt->cluster_seg = -1;
        rt->prefix = fg_strdup("/clusters/");
        rt->prefix_len = 10;
        rt->kind = FG_ROUTE_WORKSPACE_PATH;
        if (mr->map_clusters == NULL) {
            mr->map_clusters = s;
            return;
        }
    }
    if (path == NULL || rt_is_clusters(plen, path)) {
        fg_cfg_shard_free(s);
        free(s);
        return;
    }
    if (url == NULL)
        fg_rd_err(&mr->rd, n, "mapping entry \"%s\" needs a backend", path);
    struct fg_route_cfg *rt = &cfg->routes[cfg->nroutes++];
    rt->mark = (struct fg_mark){mr->rd.file, n->line, n->col};
    rt->prefix = fg_strndup(path, plen);
    rt->prefix_len = plen;
    rt->kind = FG_ROUTE_SHARD;
    fg_cfg_read_placeholders(mr, pv, rt);
    rt->resolve_cluster = plen > 1; /* kcp looks no cluster up for its default backend */
    struct fg_buf name = {0};
    fg_buf_printf(&name, "mapping:%s", rt->prefix);
    s->name = fg_buf_take(&name);
    s->mark = rt->mark;
    s->identity = FG_IDENTITY_REQUEST_HEADER;
    s->protocol = FG_PROTO_HTTP1;
    s->max_streams = 250;
    if (url) {
        const char *why = NULL;
        s->url = fg_strdup(url);
        if (fg_cfg_parse_url(url, s, &why) != 0)
            fg_rd_err(&mr->rd, fg_yaml_get(n, "backend")->val, "backend \"%s\" %s", url, why);
        else if (!s->https && (s->ca_file || s->client_cert_file))
            fg_rd_err(&mr->rd, n,
                      "backend_server_ca and proxy_client_cert need an https:// backend");
    }
    for (size_t j = 0; j < cfg->nshards; j++)
        if (strcmp(cfg->shards[j].name, s->name) == 0)
            fg_rd_err(&mr->rd, pv, "mapping path \"%s\" is there twice", rt->prefix);
    cfg->shards = fg_realloc(cfg->shards, (cfg->nshards + 1) * sizeof(*cfg->shards));
    cfg->shards[cfg->nshards] = *s;
    free(s);
    rt->shard = (uint32_t)cfg->nshards++;
}

/* Segment k of a prefix ("" past its end) and whether it is a placeholder. */
static size_t segment(const char *p, size_t k, const char **seg, int *ph)
{
    const char *s = p + 1;
    for (; k > 0 && *s; k--) {
        const char *slash = strchr(s, '/');
        s = slash ? slash + 1 : s + strlen(s);
    }
    const char *end = strchr(s, '/');
    size_t n = end ? (size_t)(end - s) : strlen(s);
    *seg = s;
    *ph = n > 0 && s[0] == '{';
    return n;
}

static size_t nsegments(const struct fg_route_cfg *rt)
{
    size_t n = 0;
    for (size_t i = 1; i < rt->prefix_len; i++)
        n += rt->prefix[i] == '/';
    return rt->prefix_len > 1 ? n + 1 : 0;
}

/* <0 when a is tried before b: more segments, then a literal before a placeholder. */
static int more_specific(const struct fg_route_cfg *a, const struct fg_route_cfg *b)
{
    size_t na = nsegments(a), nb = nsegments(b);
    if (na != nb)
        return na > nb ? -1 : 1;
    for (size_t k = 0; k < na; k++) {
        const char *sa, *sb;
        int pa, pb;
        segment(a->prefix, k, &sa, &pa);
        segment(b->prefix, k, &sb, &pb);
        if (pa != pb)
            return pa ? 1 : -1;
    }
    return 0;
}

void fg_cfg_read_mapping(struct fg_cfgrd *r, struct fg_ynode *root)
{
    struct fg_config *cfg = r->cfg;
    struct fg_ypair *p = fg_yaml_get(root, "mappingFile");
    if (p == NULL || fg_yaml_is_null(p->val))
        return;
    struct fg_mark at;
    char *written = fg_cfg_file(r, root, "mappingFile", 0, "config", &at);
    if (written == NULL)
        return;
    struct fg_ypair *routes = fg_yaml_get(root, "routes");
    if (routes && !fg_yaml_is_null(routes->val)) {
        fg_rd_err(&r->rd, p->key,
                  "mappingFile and routes are two ways to write the routes: use one of them");
        free(written);
        return;
    }
    cfg->mapping_file = fg_config_path(cfg, written);
    const char *slash = strrchr(written, '/');
    char *dir = slash ? fg_strndup(written, (size_t)(slash - written) + (slash == written)) : NULL;
    free(written);
    size_t len;
    char *text = fg_read_file(cfg->mapping_file, &len);
    if (text == NULL) {
        fg_cfg_file_err(r->rd.errs, &at, cfg->mapping_file, "cannot read the mapping file",
                        fg_file_reason(errno));
        free(dir);
        return;
    }
    struct fg_ynode *doc = fg_yaml_parse(cfg->mapping_file, text, len, r->rd.errs);
    free(text);
    struct fg_cfgrd mr = {{r->rd.errs, cfg->mapping_file, 0}, cfg, NULL};
    if (doc && fg_yaml_is_null(doc))
        fg_rd_err(&mr.rd, doc, "the mapping file has no entries");
    else if (doc &&
             fg_rd_expect(&mr.rd, doc, FG_Y_SEQ, "the mapping file (a list of entries)") == 0) {
        if (doc->nitems == 0)
            fg_rd_err(&mr.rd, doc, "the mapping file has no entries");
        cfg->routes = fg_calloc(doc->nitems ? doc->nitems : 1, sizeof(struct fg_route_cfg));
        for (size_t i = 0; i < doc->nitems; i++)
            read_entry(&mr, doc->items[i], dir);
        /* insertion sort: stable, and a mapping file has a handful of entries */
        for (size_t i = 1; i < cfg->nroutes; i++) {
            struct fg_route_cfg t = cfg->routes[i];
            size_t j = i;
            for (; j > 0 && more_specific(&t, &cfg->routes[j - 1]) < 0; j--)
                cfg->routes[j] = cfg->routes[j - 1];
            cfg->routes[j] = t;
        }
    }
    r->map_clusters = mr.map_clusters;
    fg_yaml_free(doc);
    free(dir);
}

static void fill(char **dst, struct fg_mark *dm, char **src, const struct fg_mark *sm)
{
    if (*dst == NULL && *src != NULL) {
        *dst = *src;
        *dm = *sm;
        *src = NULL;
    }
}

void fg_cfg_mapping_tls(struct fg_cfgrd *r)
{
    struct fg_shard_cfg *m = r->map_clusters;
    if (m == NULL)
        return;
    struct fg_shard_cfg *t = r->cfg->kcp ? &r->cfg->kcp->shards : NULL;
    if (t && t->client_cert_file == NULL) {
        fill(&t->client_cert_file, &t->client_cert_mark, &m->client_cert_file,
             &m->client_cert_mark);
        fill(&t->client_key_file, &t->client_key_mark, &m->client_key_file, &m->client_key_mark);
    }
    if (t)
        fill(&t->ca_file, &t->ca_mark, &m->ca_file, &m->ca_mark);
    fg_cfg_shard_free(m);
    free(m);
    r->map_clusters = NULL;
}
