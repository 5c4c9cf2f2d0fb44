/*
 * route.h - from a request target to a shard and a workspace.
 *
 * Routes are tried in config order; the first prefix that matches wins. A
 * prefix ending in '/' matches any path that starts with it; otherwise it
 * matches the exact path or the path followed by '/'. The part after the
 * prefix (the routed part) must be clean: no empty segments (except a
 * trailing '/'), no "." or ".." segments, and no percent-encoded
 * unreserved characters, '/', '\' or NUL anywhere in the path (they would
 * let a client smuggle a dot segment or a route prefix past frontgate and
 * have the shard decode it). Pure functions; no I/O.
 */
#ifndef FG_ROUTE_H
#define FG_ROUTE_H

#include <stddef.h>

#include "../config/base.h"
#include "../config/config.h"

enum fg_route_outcome {
    FG_ROUTE_OK,
    FG_ROUTE_NO_MATCH,       /* 404 */
    FG_ROUTE_BAD_PATH,       /* 400: not origin-form, dot/empty segments, hostile encodings */
    FG_ROUTE_UNKNOWN_WS,     /* 403: malformed or unknown workspace (or warehouse) */
    FG_ROUTE_UNAVAILABLE,    /* 503: workspace phase Unavailable */
    FG_ROUTE_NO_WAREHOUSE,   /* 400: an Iceberg /config without ?warehouse= */
    FG_ROUTE_TOKEN_ENDPOINT, /* the route's own OAuth2 token endpoint (served locally) */
};

struct fg_route_match {
    const struct fg_route_cfg *route;
    const struct fg_workspace *ws;    /* NULL for shard routes; in cfg->index or the live index */
    uint32_t shard;                   /* into the config's shards */
    uint32_t wstype;                  /* into the config's workspace types, or FG_WS_NO_TYPE */
    const struct fg_live_type *ltype; /* kcp's WorkspaceType, when the config has no such type */
    const char *path;                 /* the request path (no query) */
    size_t path_len;
    const char *query; /* after '?', or NULL */
    size_t query_len;
    const char *ws_name; /* the workspace segment as written in the URL */
    size_t ws_name_len;
    const char *rest; /* workspace routes: what follows the workspace segment ("" or "/...") */
    size_t rest_len;
    char warehouse[256]; /* Iceberg /config: the decoded ?warehouse= value */
};

/*
 * Iceberg routes (`workspace: iceberg`, prefix e.g. /catalog/v1/):
 *   <prefix>config?warehouse=NAME   the warehouse by name (the index's `warehouse`)
 *   <prefix>{id}/...                the warehouse by id, the catalog's `prefix` (the
 *                                   index's `cluster`); every request, not only /config
 *   tokenEndpoint.path              served by frontgate (FG_ROUTE_TOKEN_ENDPOINT)
 * Iceberg requests are forwarded with their path unchanged (after the shard's base path).
 */

struct fg_live;
/*
 * Resolves target (the raw request-target) against cfg. Workspace paths are looked up in
 * cfg's own index first, then in live (the index fed from kcp; may be NULL), whose workspaces
 * name their shard and type: a shard cfg does not have (yet) makes the workspace unknown, a
 * type it does not configure is kcp's WorkspaceType (m->ltype, with
 * index.fromKcp.workspaceAuthentication) or else no workspace authenticators.
 */
enum fg_route_outcome fg_route_resolve(const struct fg_config *cfg, const struct fg_live *live,
                                       const char *target, size_t target_len,
                                       struct fg_route_match *m);

/* True when a path passes the checks described above for its routed part starting at `from`. */
int fg_route_path_ok(const char *path, size_t len, size_t from);

/* Appends the path (and ?query) to send to the shard. */
void fg_route_upstream_target(struct fg_buf *b, const struct fg_shard_cfg *shard,
                              const struct fg_route_match *m);

#endif
