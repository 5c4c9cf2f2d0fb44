/*
 * test_route.c - request target -> route, workspace and shard
 * (gateway/route.h), the upstream path, and every hostile path form that
 * must be refused before a shard could decode it into something else.
 */
#include "t.h"

#include "gateway/route.h"

#include <stdlib.h>

static const char CONFIG[] = "listeners:\n"
                             "  - address: 127.0.0.1:8080\n"
                             "shards:\n"
                             "  - name: a\n"
                             "    url: http://a.internal:1/base/\n"
                             "  - name: b\n"
                             "    url: http://b.internal:2\n"
                             "routes:\n"
                             "  - prefix: /clusters/\n"
                             "    workspace: path\n"
                             "  - prefix: /api\n"
                             "    shard: a\n"
                             "  - prefix: /\n"
                             "    shard: b\n"
                             "workspaces:\n"
                             "  - cluster: 2x8ab3xq\n"
                             "    path: root:org:team\n"
                             "    shard: a\n"
                             "  - cluster: root\n"
                             "    path: root\n"
                             "    shard: b\n"
                             "  - cluster: d0wn\n"
                             "    path: root:down\n"
                             "    shard: b\n"
                             "    phase: Unavailable\n";

/* The same, without a catch-all "/" route. */
static const char NO_ROOT_CONFIG[] = "listeners: [{address: ':8080'}]\n"
                                     "shards: [{name: a, url: 'http://a:1'}]\n"
                                     "routes:\n"
                                     "  - {prefix: /clusters/, workspace: path}\n"
                                     "  - {prefix: /api, shard: a}\n"
                                     "workspaces: [{cluster: c1, shard: a}]\n";

/* Virtual-workspace routes (kcp's /services/... mappings) before the workspace route. */
static const char VW_CONFIG[] =
    "listeners: [{address: ':8080'}]\n"
    "shards:\n"
    "  - {name: a, url: 'http://a:1'}\n"
    "  - {name: vw, url: 'http://vw:2/vw'}\n"
    "routes:\n"
    "  - {prefix: '/services/apiexport/{cluster}/{export}', shard: vw}\n"
    "  - {prefix: /services/initializingworkspaces/, shard: vw,\n"
    "     resolveCluster: true}\n"
    "  - {prefix: '/services/plain/{x}/', shard: vw}\n"
    "  - {prefix: /clusters/, workspace: path}\n"
    "workspaces:\n"
    "  - {cluster: c1, path: 'root:org', shard: a}\n"
    "  - {cluster: d0wn, path: 'root:down', shard: a, phase: Unavailable}\n";

static struct fg_config *cfg, *no_root_cfg, *vw_cfg;

static struct fg_config *load(const char *text)
{
    struct fg_errs errs = {0};
    struct fg_config *c = fg_config_parse("route.yaml", text, strlen(text), &errs);
    for (size_t i = 0; i < errs.n; i++)
        printf("#   config: %s\n", errs.msgs[i]);
    fg_errs_free(&errs);
    return c;
}

static enum fg_route_outcome resolve_in(const struct fg_config *c, const char *target,
                                        struct fg_route_match *m)
{
    return fg_route_resolve(c, NULL, target, strlen(target), m);
}

static enum fg_route_outcome resolve(const char *target, struct fg_route_match *m)
{
    return resolve_in(cfg, target, m);
}

/* The upstream target for a resolved match (caller frees). */
static char *upstream(const struct fg_route_match *m)
{
    struct fg_buf b = {0};
    fg_route_upstream_target(&b, &cfg->shards[m->shard], m);
    return fg_buf_take(&b);
}

/* True when target resolves OK and goes to want on the shard named shard. */
static int forwards(const char *target, const char *shard, const char *want)
{
    struct fg_route_match m;
    enum fg_route_outcome o = resolve(target, &m);
    char *got = o == FG_ROUTE_OK ? upstream(&m) : NULL;
    int ok =
        o == FG_ROUTE_OK && strcmp(cfg->shards[m.shard].name, shard) == 0 && strcmp(got, want) == 0;
    if (!ok)
        printf("#   %s: outcome %d, shard %s, upstream %s; want %s on %s\n", target, (int)o,
               o == FG_ROUTE_OK ? cfg->shards[m.shard].name : "-", got ? got : "-", want, shard);
    free(got);
    return ok;
}

/* True when every target gets the outcome want. */
static int all_outcome(const char *const *targets, size_t n, enum fg_route_outcome want)
{
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        struct fg_route_match m;
        enum fg_route_outcome o = resolve(targets[i], &m);
        if (o != want) {
            printf("#   \"%s\": outcome %d, want %d\n", targets[i], (int)o, (int)want);
            ok = 0;
        }
    }
    return ok;
}

#define ALL_OUTCOME(want, ...)                                                                     \
    do {                                                                                           \
        const char *const targets_[] = {__VA_ARGS__};                                              \
        CHECK(all_outcome(targets_, FG_ARRAY_LEN(targets_), (want)));                              \
    } while (0)

static void config_loaded(void)
{
    CHECK(cfg != NULL && no_root_cfg != NULL);
    CHECK(cfg && cfg->nshards == 2 && strcmp(cfg->shards[0].base_path, "/base") == 0);
    CHECK(cfg && strcmp(cfg->shards[1].base_path, "") == 0);
}

static void workspace_by_path(void)
{
    struct fg_route_match m;
    const char *t = "/clusters/root:org:team/api/v1/pods?watch=1&rv=5";
    CHECK(resolve(t, &m) == FG_ROUTE_OK);
    CHECK(m.ws != NULL && strcmp(m.ws->cluster, "2x8ab3xq") == 0);
    CHECK(m.route == &cfg->routes[0]);
    CHECK_STR(cfg->shards[m.shard].name, "a");
    CHECK(m.ws_name_len == 13 && strncmp(m.ws_name, "root:org:team", 13) == 0);
    CHECK(m.rest_len == 12 && strncmp(m.rest, "/api/v1/pods", 12) == 0);
    CHECK(m.query_len == 12 && strncmp(m.query, "watch=1&rv=5", 12) == 0);
    CHECK(m.path == t && m.path_len == strlen(t) - 13);
    char *up = upstream(&m);
    CHECK_STR(up, "/base/clusters/2x8ab3xq/api/v1/pods?watch=1&rv=5");
    free(up);
}

static void workspace_by_cluster(void)
{
    struct fg_route_match m;
    CHECK(resolve("/clusters/2x8ab3xq/api", &m) == FG_ROUTE_OK);
    CHECK(m.ws != NULL && strcmp(m.ws->path, "root:org:team") == 0);
    CHECK(m.query == NULL);
    CHECK(forwards("/clusters/2x8ab3xq/api", "a", "/base/clusters/2x8ab3xq/api"));
}

/* The shard sees the logical cluster name, never the path the client wrote. */
static void workspace_upstream_forms(void)
{
    CHECK(forwards("/clusters/root:org:team", "a", "/base/clusters/2x8ab3xq"));
    CHECK(forwards("/clusters/root:org:team/", "a", "/base/clusters/2x8ab3xq/"));
    CHECK(forwards("/clusters/root:org:team?x=1", "a", "/base/clusters/2x8ab3xq?x=1"));
    CHECK(forwards("/clusters/root/apis/x/v1?", "b", "/clusters/root/apis/x/v1?"));
    CHECK(forwards("/clusters/root:org:team/api/v1/namespaces/a%20b", "a",
                   "/base/clusters/2x8ab3xq/api/v1/namespaces/a%20b"));
}

static void trailing_slash_ok(void)
{
    struct fg_route_match m;
    CHECK(resolve("/clusters/root:org:team/api/", &m) == FG_ROUTE_OK);
    CHECK(m.rest_len == 5 && strncmp(m.rest, "/api/", 5) == 0);
}

static void shard_route_forwards_unchanged(void)
{
    CHECK(forwards("/api", "a", "/base/api"));
    CHECK(forwards("/api/v1/pods?limit=5", "a", "/base/api/v1/pods?limit=5"));
    CHECK(forwards("/healthz", "b", "/healthz"));
    CHECK(forwards("/", "b", "/"));
    struct fg_route_match m;
    CHECK(resolve("/api/v1", &m) == FG_ROUTE_OK && m.ws == NULL && m.route == &cfg->routes[1]);
}

/* "/api" is a path prefix, not a string prefix. */
static void prefix_is_segment_aware(void)
{
    CHECK(forwards("/api", "a", "/base/api"));
    CHECK(forwards("/api/", "a", "/base/api/"));
    CHECK(forwards("/api/x", "a", "/base/api/x"));
    CHECK(forwards("/apix", "b", "/apix"));
    CHECK(forwards("/api-v2/x", "b", "/api-v2/x"));
    CHECK(forwards("/api?x=1", "a", "/base/api?x=1"));
    /* "/clusters" (no slash) is not under the "/clusters/" route. */
    CHECK(forwards("/clusters", "b", "/clusters"));
}

static void unknown_workspace(void)
{
    ALL_OUTCOME(FG_ROUTE_UNKNOWN_WS, "/clusters/root:org:nope/api", "/clusters/zzz",
                "/clusters/root:org/api", "/clusters/", "/clusters/?x=1");
}

/* Malformed names never reach the index, and answer like unknown ones. */
static void malformed_workspace_names(void)
{
    ALL_OUTCOME(FG_ROUTE_UNKNOWN_WS, "/clusters/Root:org:team/api", "/clusters/ROOT/api",
                "/clusters/*/api", "/clusters/a::b/api", "/clusters/root:/api",
                "/clusters/:root/api", "/clusters/-a/api", "/clusters/a_b/api",
                "/clusters/root:org:team:/api",
                "/clusters/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/api",
                "/clusters/root%3aorg%3ateam/api");
}

static void unavailable_workspace(void)
{
    struct fg_route_match m;
    CHECK(resolve("/clusters/root:down/api", &m) == FG_ROUTE_UNAVAILABLE);
    CHECK(m.ws != NULL && strcmp(m.ws->cluster, "d0wn") == 0);
    CHECK(resolve("/clusters/d0wn", &m) == FG_ROUTE_UNAVAILABLE);
}

static void dot_and_empty_segments(void)
{
    ALL_OUTCOME(FG_ROUTE_BAD_PATH, "/clusters/a/../b/api", "/clusters/a/./api", "/clusters//api",
                "/clusters/a//api", "/clusters/root:org:team/api/..", "/clusters/root/.",
                "/clusters/..", "/clusters/./x", "/api/../clusters/x", "/api//x", "/..",
                "/x/../../etc/passwd", "//", "/api/./v1");
}

/* Encoded dots, slashes and backslashes would be decoded by the shard only. */
static void encoded_dot_segments(void)
{
    ALL_OUTCOME(FG_ROUTE_BAD_PATH, "/clusters/a/%2e%2e/b", "/clusters/a/%2E%2e/b",
                "/clusters/a/.%2e/b", "/clusters/a/%2e./b", "/clusters/a/%2e/b",
                "/clusters/a%2f..%2fb/api", "/clusters/a%2F..%2Fb/api", "/clusters/a/x%5cy",
                "/clusters/a/x%5Cy", "/api%2f..%2fclusters/x", "/clusters/a/%00/b");
}

/* Encoding an unreserved character has no legitimate use and can hide a route prefix. */
static void encoded_unreserved(void)
{
    ALL_OUTCOME(FG_ROUTE_BAD_PATH, "/%63lusters/a/api", "/clusters/%72oot/api", "/%61pi/x",
                "/x%2dy", "/x%5fy", "/x%7ey", "/x%30", "/x%41");
}

static void bad_escapes(void)
{
    ALL_OUTCOME(FG_ROUTE_BAD_PATH, "/clusters/a/%zz", "/clusters/a/%4", "/clusters/a/%", "/x%g1",
                "/x%1g", "/x%%41", "/api/%4");
}

/* Escapes of reserved or non-ASCII bytes are legitimate and forwarded as written. */
static void good_escapes(void)
{
    CHECK(forwards("/x%20y", "b", "/x%20y"));
    CHECK(forwards("/x%3Ay%40z", "b", "/x%3Ay%40z"));
    CHECK(forwards("/caf%C3%A9", "b", "/caf%C3%A9"));
    CHECK(forwards("/x%25", "b", "/x%25"));
}

static void not_origin_form(void)
{
    struct fg_route_match m;
    ALL_OUTCOME(FG_ROUTE_BAD_PATH, "*", "", "api/v1", "http://evil/clusters/a/api", "/x#frag",
                "/clusters/root/api?x=1#frag", "/x\\y", "/x y", "/x\ty", "/x\x7f");
    CHECK(fg_route_resolve(cfg, NULL, "/x\0y", 4, &m) == FG_ROUTE_BAD_PATH);
}

/* A hostile path is refused even when no route would match it. */
static void bad_path_before_no_match(void)
{
    struct fg_route_match m;
    CHECK(resolve_in(no_root_cfg, "/x/../api", &m) == FG_ROUTE_BAD_PATH);
    CHECK(resolve_in(no_root_cfg, "/%61pi", &m) == FG_ROUTE_BAD_PATH);
}

static void no_match(void)
{
    struct fg_route_match m;
    CHECK(resolve_in(no_root_cfg, "/healthz", &m) == FG_ROUTE_NO_MATCH);
    CHECK(resolve_in(no_root_cfg, "/", &m) == FG_ROUTE_NO_MATCH);
    CHECK(resolve_in(no_root_cfg, "/apix", &m) == FG_ROUTE_NO_MATCH);
    CHECK(resolve_in(no_root_cfg, "/clusters", &m) == FG_ROUTE_NO_MATCH);
    CHECK(resolve_in(no_root_cfg, "/api/x", &m) == FG_ROUTE_OK);
    CHECK(resolve_in(no_root_cfg, "/clusters/c1/x", &m) == FG_ROUTE_OK);
}

static void path_ok_direct(void)
{
    CHECK(fg_route_path_ok("/a/b", 4, 1));
    CHECK(fg_route_path_ok("/a/b/", 5, 1));
    CHECK(!fg_route_path_ok("", 0, 0));
    CHECK(!fg_route_path_ok("a/b", 3, 0));
    CHECK(!fg_route_path_ok("/a//b", 5, 1));
    /* Segments before `from` are the matched prefix; encodings are checked everywhere. */
    CHECK(fg_route_path_ok("/a//b", 5, 4));
    CHECK(!fg_route_path_ok("/%61/b", 6, 4));
    /* Only the first len bytes count. */
    CHECK(fg_route_path_ok("/a/../b", 2, 1));
}

/* resolve against vw_cfg: outcome, the route's index, the cluster looked up (or NULL) */
static int vw(const char *target, enum fg_route_outcome want, size_t route, const char *cluster)
{
    struct fg_route_match m;
    enum fg_route_outcome o = resolve_in(vw_cfg, target, &m);
    const char *got = m.ws ? m.ws->cluster : NULL;
    int ok = o == want && (o == FG_ROUTE_NO_MATCH || o == FG_ROUTE_BAD_PATH ||
                           m.route == &vw_cfg->routes[route]);
    if (o == FG_ROUTE_OK || o == FG_ROUTE_UNAVAILABLE)
        ok = ok && (cluster ? got && strcmp(got, cluster) == 0 : got == NULL);
    if (ok && o == FG_ROUTE_OK) {
        /* forwarded to the route's shard with the path unchanged */
        struct fg_buf b = {0};
        fg_route_upstream_target(&b, &vw_cfg->shards[m.shard], &m);
        char *up = fg_buf_take(&b);
        struct fg_buf w = {0};
        fg_buf_adds(&w, route == 3 ? "/clusters/" : "/vw");
        if (route == 3)
            fg_buf_adds(&w, got);
        fg_buf_adds(&w, route == 3 ? strchr(target + 10, '/') : target);
        char *want_up = fg_buf_take(&w);
        ok = strcmp(up, want_up) == 0 &&
             strcmp(vw_cfg->shards[m.shard].name, route == 3 ? "a" : "vw") == 0;
        if (!ok)
            printf("#   %s: upstream %s on %s, want %s\n", target, up, vw_cfg->shards[m.shard].name,
                   want_up);
        free(up);
        free(want_up);
    } else if (!ok) {
        printf("#   %s: outcome %d (want %d), route %ld (want %zu), cluster %s (want %s)\n", target,
               (int)o, (int)want, m.route ? (long)(m.route - vw_cfg->routes) : -1L, route,
               got ? got : "-", cluster ? cluster : "-");
    }
    return ok;
}

/* {cluster} is looked up for authentication; the shard gets the path as sent (kcp §1.3). */
static void vw_cluster_placeholder(void)
{
    CHECK(vw_cfg && vw_cfg->routes[0].placeholders && vw_cfg->routes[0].cluster_seg == 2);
    CHECK(vw_cfg && vw_cfg->routes[0].resolve_cluster && !vw_cfg->routes[2].resolve_cluster);
    CHECK(vw("/services/apiexport/root:org/exp/clusters/*/apis/x/v1/things", FG_ROUTE_OK, 0, "c1"));
    CHECK(vw("/services/apiexport/c1/exp", FG_ROUTE_OK, 0, "c1"));
    CHECK(vw("/services/apiexport/c1/exp/", FG_ROUTE_OK, 0, "c1"));
    CHECK(vw("/services/apiexport/c1/exp?watch=1", FG_ROUTE_OK, 0, "c1"));
    /* * and an unknown or malformed cluster */
    CHECK(vw("/services/apiexport/*/exp/clusters/*/apis", FG_ROUTE_OK, 0, NULL));
    CHECK(vw("/services/apiexport/root:nope/exp/api", FG_ROUTE_UNKNOWN_WS, 0, NULL));
    CHECK(vw("/services/apiexport/Root/exp/api", FG_ROUTE_UNKNOWN_WS, 0, NULL));
    CHECK(vw("/services/apiexport/system:admin/exp/api", FG_ROUTE_UNKNOWN_WS, 0, NULL));
    CHECK(vw("/services/apiexport/root:down/exp", FG_ROUTE_UNAVAILABLE, 0, "d0wn"));
    /* a placeholder is one non-empty segment: too short a path is no match */
    CHECK(vw("/services/apiexport/c1", FG_ROUTE_NO_MATCH, 0, NULL));
    CHECK(vw("/services/apiexport//exp", FG_ROUTE_BAD_PATH, 0, NULL)); /* an empty segment */
    CHECK(vw("/services/apiexport/c1/expx/../y", FG_ROUTE_BAD_PATH, 0, NULL));
    CHECK(vw("/services/apiexport/c1/exp/%2e%2e/x", FG_ROUTE_BAD_PATH, 0, NULL));
}

/* Without {cluster}: the segment after the first /clusters/ of the path; none, no lookup. */
static void vw_cluster_in_path(void)
{
    CHECK(vw("/services/initializingworkspaces/root:ini/clusters/root:org/apis", FG_ROUTE_OK, 1,
             "c1"));
    CHECK(vw("/services/initializingworkspaces/root:ini/clusters/c1", FG_ROUTE_OK, 1, "c1"));
    CHECK(vw("/services/initializingworkspaces/x/clusters/*/apis", FG_ROUTE_OK, 1, NULL));
    CHECK(vw("/services/initializingworkspaces/x/clusters/", FG_ROUTE_OK, 1, NULL));
    CHECK(vw("/services/initializingworkspaces/x/apis", FG_ROUTE_OK, 1, NULL));
    CHECK(
        vw("/services/initializingworkspaces/x/clusters/nope/apis", FG_ROUTE_UNKNOWN_WS, 1, NULL));
    CHECK(vw("/services/initializingworkspaces/x/myclusters/nope/apis", FG_ROUTE_OK, 1, NULL));
    /* a route without resolveCluster looks nothing up */
    CHECK(vw("/services/plain/p/clusters/nope/apis", FG_ROUTE_OK, 2, NULL));
    /* the workspace route is unchanged behind them */
    CHECK(vw("/clusters/root:org/api", FG_ROUTE_OK, 3, "c1"));
}

/* Placeholders and resolveCluster that the config refuses, each with its position. */
static void vw_config_errors(void)
{
    static const struct {
        const char *routes, *want;
    } bad[] = {
        {"[{prefix: '/s/{cluster}/', workspace: path}]", "route.yaml:3:"},
        {"[{prefix: '/s/x{cluster}', shard: a}]", "a placeholder is a whole segment"},
        {"[{prefix: '/s/{cl-uster}', shard: a}]", "a placeholder is a whole segment"},
        {"[{prefix: '/s/{}', shard: a}]", "a placeholder is a whole segment"},
        {"[{prefix: '/s/}', shard: a}]", "a placeholder is a whole segment"},
        {"[{prefix: '/s/{trail...}', shard: a}]", "is not needed"},
        {"[{prefix: '/s/{cluster}/{cluster}', shard: a}]", "{cluster} appears twice"},
        {"[{prefix: /clusters/, workspace: path, resolveCluster: true}]", "resolveCluster is for"},
        {"[{prefix: /s/, shard: a, resolveCluster: maybe}]", "resolveCluster"},
    };
    for (size_t i = 0; i < FG_ARRAY_LEN(bad); i++) {
        struct fg_buf b = {0};
        fg_buf_printf(&b,
                      "listeners: [{address: ':8080'}]\nshards: [{name: a, url: 'http://a:1'}]\n"
                      "routes: %s\nworkspaces: [{cluster: c1, shard: a}]\n",
                      bad[i].routes);
        char *text = fg_buf_take(&b);
        struct fg_errs errs = {0};
        struct fg_config *c = fg_config_parse("route.yaml", text, strlen(text), &errs);
        int found = 0;
        for (size_t k = 0; k < errs.n; k++)
            found |= strstr(errs.msgs[k], bad[i].want) != NULL;
        if (c != NULL || !found)
            printf("#   %s: %s\n", bad[i].routes, errs.n ? errs.msgs[0] : "accepted");
        CHECK(c == NULL && found);
        fg_config_free(c);
        fg_errs_free(&errs);
        free(text);
    }
}

int main(void)
{
    cfg = load(CONFIG);
    no_root_cfg = load(NO_ROOT_CONFIG);
    vw_cfg = load(VW_CONFIG);
    if (cfg == NULL || no_root_cfg == NULL || vw_cfg == NULL) {
        RUN(config_loaded);
        fg_config_free(cfg);
        fg_config_free(no_root_cfg);
        fg_config_free(vw_cfg);
        DONE();
    }
    RUN(config_loaded);
    RUN(workspace_by_path);
    RUN(workspace_by_cluster);
    RUN(workspace_upstream_forms);
    RUN(trailing_slash_ok);
    RUN(shard_route_forwards_unchanged);
    RUN(prefix_is_segment_aware);
    RUN(unknown_workspace);
    RUN(malformed_workspace_names);
    RUN(unavailable_workspace);
    RUN(dot_and_empty_segments);
    RUN(encoded_dot_segments);
    RUN(encoded_unreserved);
    RUN(bad_escapes);
    RUN(good_escapes);
    RUN(not_origin_form);
    RUN(bad_path_before_no_match);
    RUN(no_match);
    RUN(path_ok_direct);
    RUN(vw_cluster_placeholder);
    RUN(vw_cluster_in_path);
    RUN(vw_config_errors);
    fg_config_free(cfg);
    fg_config_free(no_root_cfg);
    fg_config_free(vw_cfg);
    DONE();
}
