/*
 * proxy.c - what happens between a complete request head and the shard:
 * local endpoints, route and workspace resolution, authentication with
 * union(global, workspace type) (which may park the request), the identity
 * policy, and the request head frontgate sends upstream.
 */
#include "conn.h"
#include "http.h"
#include "sanitize.h"
#include "tokenep.h"

#include "../auth/identity.h"
#include "../auth/mint.h"

#include <event2/buffer.h>
#include <openssl/crypto.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static const char unauthorized_msg[] = "Unauthorized";

/* ---- local endpoints ------------------------------------------------------ */

/* The discovery document and JWKS of an identity-translation issuer. */
static int mint_endpoint(struct fg_conn *c, const char *path, size_t len)
{
    const struct fg_snapshot *s = c->req.snap;
    static const char disc[] = "/.well-known/openid-configuration", jwks[] = "/jwks";
    for (size_t i = 0; i < s->cfg->nshards; i++) {
        const struct fg_mint *m = s->mints[i];
        if (m == NULL)
            continue;
        const char *base = fg_mint_issuer_path(m);
        size_t bl = strlen(base);
        if (len <= bl || memcmp(path, base, bl) != 0)
            continue;
        const char *rest = path + bl;
        size_t rl = len - bl;
        struct fg_buf b = {0};
        if (rl == sizeof(disc) - 1 && memcmp(rest, disc, rl) == 0)
            fg_mint_discovery(m, &b);
        else if (rl == sizeof(jwks) - 1 && memcmp(rest, jwks, rl) == 0)
            fg_mint_jwks(m, fg_wall_s(), &b);
        else
            continue;
        fg_conn_respond(c, 200, "application/json", b.data, b.len);
        fg_buf_free(&b);
        return 1;
    }
    return 0;
}

static int local_endpoint(struct fg_conn *c, const char *path, size_t len)
{
    int ready;
    if (mint_endpoint(c, path, len))
        return 1;
    if (fg_strn_eqi(path, len, "/healthz") || fg_strn_eqi(path, len, "/livez")) {
        ready = 1;
    } else if (fg_strn_eqi(path, len, "/readyz")) {
        ready = __atomic_load_n(&fg_state.ready, __ATOMIC_RELAXED) &&
                !__atomic_load_n(&fg_state.draining, __ATOMIC_RELAXED) &&
                fg_snapshot_ready(c->req.snap);
    } else {
        return 0;
    }
    if (ready)
        fg_conn_respond(c, 200, "text/plain; charset=utf-8", "ok\n", 3);
    else
        fg_conn_respond(c, 503, "text/plain; charset=utf-8", "not ready\n", 10);
    return 1;
}

/* ---- authentication ------------------------------------------------------- */

static size_t nmembers(const struct fg_req *r)
{
    size_t n = r->snap->nglobal;
    if (!r->unknown_ws && r->match.ws && r->match.ws->type != FG_WS_NO_TYPE)
        n += r->snap->wstypes[r->match.ws->type].nauthns;
    return n;
}

static struct fg_authn *member(const struct fg_req *r, size_t i)
{
    if (i < r->snap->nglobal)
        return r->snap->global[i];
    return r->snap->wstypes[r->match.ws->type].authns[i - r->snap->nglobal];
}

static int required(const struct fg_req *r)
{
    return nmembers(r) > 0;
}

static void unauthorized(struct fg_conn *c)
{
    fg_conn_respond_status(c, 401, "Unauthorized", unauthorized_msg);
}

static void forbidden_ws(struct fg_conn *c)
{
    const struct fg_route_cfg *rt = c->req.match.route;
    fg_conn_respond_status(c, 403, "Forbidden",
                           rt && rt->kind == FG_ROUTE_WORKSPACE_ICEBERG
                               ? "warehouse access not permitted"
                               : "forbidden: workspace access not permitted");
}

/* Applies the identity policy for the member that admitted it. 0, or -1 with r->reason. */
static int apply_policy(struct fg_req *r, struct fg_identity *raw, size_t member_idx)
{
    const struct fg_config *cfg = r->snap->cfg;
    struct fg_identity *id;
    if (!fg_identity_header_safe(raw)) {
        /* the policy must judge the very bytes the shard will read */
        r->reason = "identity contains characters not allowed in a header";
        return -1;
    }
    if (member_idx < r->snap->nglobal) {
        id = fg_identity_global_view(raw, cfg->drop_groups, cfg->ndrop_groups);
    } else {
        const char *why = NULL;
        id = fg_identity_policy_workspace(raw, r->match.ws->cluster, &why);
        if (id == NULL) {
            r->reason = why;
            return -1;
        }
    }
    if (!fg_identity_header_safe(id)) {
        fg_identity_unref(id);
        r->reason = "identity contains characters not allowed in a header";
        return -1;
    }
    r->identity = id;
    return 0;
}

static void forward(struct fg_conn *c);

/* After the union: answer, or go on to the shard. */
static void auth_done(struct fg_conn *c)
{
    struct fg_req *r = &c->req;
    if (r->unknown_ws) {
        /* Only an authenticated caller may learn that a workspace does not exist. */
        if (r->identity)
            forbidden_ws(c);
        else
            unauthorized(c);
        return;
    }
    if (r->identity == NULL && required(r)) {
        if (r->reason == NULL)
            r->reason =
                r->f.auth_idx < 0 ? "no credentials" : "no authenticator accepted the credentials";
        unauthorized(c);
        return;
    }
    forward(c);
}

static void credential(const struct fg_req *r, struct fg_credential *cred)
{
    memset(cred, 0, sizeof(*cred));
    if (r->f.auth_idx >= 0) {
        size_t len;
        const char *v = fg_req_header(r, r->f.auth_idx, &len);
        fg_bearer_from_header(v, len, &cred->bearer, &cred->bearer_len);
    }
}

/* The member list a request's union runs: the global one, or with a workspace type's. */
static uint32_t union_ctx(const struct fg_req *r)
{
    if (r->unknown_ws || r->match.ws == NULL || r->match.ws->type == FG_WS_NO_TYPE)
        return UINT32_MAX;
    return r->match.ws->type;
}

void fg_proxy_forget(struct fg_conn *c)
{
    if (c->memo.token) {
        OPENSSL_cleanse(c->memo.token, c->memo.len);
        free(c->memo.token);
    }
    fg_identity_unref(c->memo.raw);
    memset(&c->memo, 0, sizeof(c->memo));
}

static void remember(struct fg_conn *c, const struct fg_credential *cred, struct fg_identity *raw,
                     size_t member, uint64_t until)
{
    fg_proxy_forget(c);
    c->memo.token = fg_strndup(cred->bearer, cred->bearer_len);
    c->memo.len = cred->bearer_len;
    c->memo.raw = fg_identity_ref(raw);
    c->memo.member = member;
    c->memo.ctx = union_ctx(&c->req);
    c->memo.generation = c->req.snap->generation;
    c->memo.until_ms = until;
}

/* The remembered identity for this credential, or NULL. */
static struct fg_identity *recall(struct fg_conn *c, const struct fg_credential *cred,
                                  size_t *member)
{
    if (c->memo.raw == NULL || cred->bearer_len != c->memo.len ||
        c->memo.generation != c->req.snap->generation || c->memo.ctx != union_ctx(&c->req) ||
        fg_now_ms() >= c->memo.until_ms ||
        CRYPTO_memcmp(cred->bearer, c->memo.token, c->memo.len) != 0)
        return NULL;
    *member = c->memo.member;
    return fg_identity_ref(c->memo.raw);
}

/* Handles one member's answer; returns 1 when the union is finished. */
static int auth_result(struct fg_conn *c, struct fg_authn_result *res, size_t i)
{
    struct fg_req *r = &c->req;
    struct fg_authn *a = member(r, i);
    switch (res->status) {
    case FG_AUTHN_OK: {
        if (res->reuse_until_ms > fg_now_ms()) {
            struct fg_credential cred;
            credential(r, &cred);
            if (cred.bearer)
                remember(c, &cred, res->identity, i, res->reuse_until_ms);
        }
        int rc = apply_policy(r, res->identity, i);
        fg_identity_unref(res->identity);
        if (rc == 0) {
            r->reason = NULL;
            r->authn = a->name;
            r->bearer_validated = 1;
        }
        return 1; /* an admitted identity the policy rejects is a failure, not "next" */
    }
    case FG_AUTHN_REJECTED:
        r->reason = res->reason;
        return 0;
    case FG_AUTHN_NOT_MINE:
        if (r->reason == NULL)
            r->reason = res->reason; /* e.g. a malformed JWT: nobody's, but say why */
        return 0;
    default:
        return 0;
    }
}

static void auth_step(struct fg_conn *c)
{
    struct fg_req *r = &c->req;
    struct fg_credential cred;
    credential(r, &cred);
    size_t n = nmembers(r);
    if (cred.bearer == NULL && n > 0) {
        auth_done(c);
        return;
    }
    size_t m;
    struct fg_authn_result hit = {0};
    if (r->authn_next == 0 && (hit.identity = recall(c, &cred, &m)) != NULL) {
        hit.status = FG_AUTHN_OK; /* this connection presented the same token before */
        r->authn_next = m + 1;
        auth_result(c, &hit, m);
        auth_done(c);
        return;
    }
    while (r->authn_next < n) {
        size_t i = r->authn_next;
        struct fg_authn_result res;
        enum fg_authn_status st = fg_authn_run(member(r, i), &cred, &res, &r->waiter);
        if (st == FG_AUTHN_PENDING) {
            r->auth_parked = 1;
            fg_conn_hold(c); /* released when the answer comes back (auth_resume) */
            return;
        }
        r->waiter.no_park = 0;
        r->authn_next++;
        if (auth_result(c, &res, i))
            break;
    }
    auth_done(c);
}

/* A parked authentication answered; runs on the connection's worker. */
static void auth_resume(struct fg_authn_waiter *w)
{
    struct fg_conn *c = (struct fg_conn *)((char *)w - offsetof(struct fg_conn, req.waiter));
    struct fg_req *r = &c->req;
    struct fg_authn_result res = w->result;
    memset(&w->result, 0, sizeof(w->result));
    w->cancel = NULL;
    r->auth_parked = 0;
    if (c->dead) {
        fg_identity_unref(res.identity);
        fg_conn_release(c);
        return;
    }
    if (res.status == FG_AUTHN_RETRY) {
        w->no_park = 1; /* e.g. fresh keys arrived: verify again, but do not wait again */
        auth_step(c);
    } else {
        size_t i = r->authn_next++;
        if (auth_result(c, &res, i))
            auth_done(c);
        else
            auth_step(c);
    }
    fg_conn_flush(c);
    fg_conn_release(c);
}

/* ---- dispatch ------------------------------------------------------------- */

void fg_proxy_dispatch(struct fg_conn *c)
{
    struct fg_req *r = &c->req;
    fg_worker_sync_snapshot(c->w);
    r->snap = fg_snapshot_ref(c->w->snap);
    r->waiter.done = auth_resume;
    r->waiter.post = fg_worker_post_waiter;
    r->waiter.owner = c->w;
    const char *target = r->msg.raw.data;
    size_t tlen = r->msg.first_len;
    const char *q = memchr(target, '?', tlen);
    if (local_endpoint(c, target, q ? (size_t)(q - target) : tlen))
        return;
    switch (fg_route_resolve(r->snap->cfg, target, tlen, &r->match)) {
    case FG_ROUTE_OK:
        break;
    case FG_ROUTE_BAD_PATH:
        fg_conn_respond_status(c, 400, "BadRequest", "invalid request path");
        return;
    case FG_ROUTE_NO_MATCH:
        fg_conn_respond_status(c, 404, "NotFound",
                               "the server could not find the requested resource");
        return;
    case FG_ROUTE_UNKNOWN_WS:
        /*
         * Only a caller a global authenticator admits may learn that a workspace does
         * not exist. With no authenticator anywhere, requests pass through unchecked
         * and existence is no secret: say 403 as kcp does.
         */
        if (!r->snap->any_authn) {
            forbidden_ws(c);
            return;
        }
        r->unknown_ws = 1;
        break;
    case FG_ROUTE_UNAVAILABLE:
        /* Authenticated first, like an existing workspace, so existence does not leak. */
        break;
    case FG_ROUTE_NO_WAREHOUSE:
        fg_conn_respond_status(c, 400, "BadRequest", "the warehouse query parameter is required");
        return;
    case FG_ROUTE_TOKEN_ENDPOINT:
        fg_token_endpoint(c);
        return;
    }
    auth_step(c);
}

/*
 * An upgrade tunnels only when the route allows every protocol it names; any
 * other (h2c above all) is ignored as RFC 9110 7.8 lets a server do: the
 * request goes on as plain HTTP/1.1, without its Upgrade header.
 */
static void check_upgrade(struct fg_req *r)
{
    const struct fg_route_cfg *rt = r->match.route;
    if (!r->f.upgrade)
        return;
    size_t vlen;
    const char *v = fg_req_header(r, r->f.upgrade_idx, &vlen);
    char *const *allowed = rt->upgrades_set ? rt->upgrades : fg_sanitize_default_upgrades;
    size_t n = rt->upgrades_set ? rt->nupgrades : fg_sanitize_ndefault_upgrades;
    if (!fg_sanitize_upgrade_allowed(v, vlen, allowed, n)) {
        fg_log(FG_LOG_DEBUG, "upgrade not allowed on route %s: served as HTTP/1.1", rt->prefix);
        r->f.upgrade = 0;
    }
}

static void forward(struct fg_conn *c)
{
    struct fg_req *r = &c->req;
    check_upgrade(r);
    if (r->match.ws && r->match.ws->phase == FG_WS_UNAVAILABLE) {
        fg_conn_respond_status(c, 503, "ServiceUnavailable", "workspace is not available");
        return;
    }
    fg_up_acquire(c, r->match.shard);
}

/* ---- the upstream request head -------------------------------------------- */

static void build_head(struct fg_conn *c, struct fg_buf *b)
{
    struct fg_req *r = &c->req;
    const struct fg_route_cfg *rt = r->match.route;
    const struct fg_shard_cfg *shard = &r->snap->cfg->shards[r->match.shard];
    fg_buf_adds(b, http_method_str(r->line.method));
    fg_buf_addc(b, ' ');
    fg_route_upstream_target(b, shard, &r->match);
    fg_buf_adds(b, " HTTP/1.1\r\n");
    const char *host = shard->hostport;
    size_t hlen = strlen(host);
    if (r->f.host_idx >= 0)
        host = fg_req_header(r, r->f.host_idx, &hlen);
    fg_sanitize_add(b, "Host", host, hlen);
    struct fg_copy_rules rules = {
        .keep_upgrade = r->f.upgrade, .strip = rt->strip_headers, .nstrip = rt->nstrip_headers};
    switch (shard->identity) {
    case FG_IDENTITY_PASSTHROUGH:
        rules.keep_auth = 1;
        break;
    case FG_IDENTITY_NONE:
    case FG_IDENTITY_MINT:
        rules.keep_auth = 0;
        break;
    default:
        rules.keep_auth = !r->bearer_validated; /* the shard checks what frontgate did not */
        break;
    }
    fg_sanitize_copy_headers(b, &r->msg, &rules);
    fg_sanitize_add(b, "X-Forwarded-For", c->peer, strlen(c->peer));
    fg_sanitize_add(b, "X-Forwarded-Proto", c->tls ? "https" : "http", c->tls ? 5 : 4);
    /* Without a Host (HTTP/1.0), the address the client dialled: a catalog builds the
     * URLs it hands out from X-Forwarded-Host, and they must lead back through us. */
    if (r->f.host_idx >= 0)
        fg_sanitize_add(b, "X-Forwarded-Host", host, hlen);
    else
        fg_sanitize_add(b, "X-Forwarded-Host", c->local, strlen(c->local));
    fg_buf_adds(b, "X-Forwarded-Port: ");
    fg_buf_add_dec(b, (uint64_t)c->port);
    fg_buf_add(b, "\r\n", 2);
    if (rt->forwarded_prefix)
        fg_sanitize_add(b, "X-Forwarded-Prefix", rt->forwarded_prefix,
                        strlen(rt->forwarded_prefix));
    if (r->identity && shard->identity == FG_IDENTITY_REQUEST_HEADER)
        fg_sanitize_stamp_identity(b, r->identity);
    if (r->identity && shard->identity == FG_IDENTITY_MINT) {
        char *tok = fg_mint_token(r->snap->mints[r->match.shard], r->identity, fg_wall_s());
        if (tok) {
            fg_buf_adds(b, "Authorization: Bearer ");
            fg_buf_adds(b, tok);
            fg_buf_add(b, "\r\n", 2);
            OPENSSL_cleanse(tok, strlen(tok));
            free(tok);
        }
    }
    fg_sanitize_framing(b, &r->f);
    fg_buf_add(b, "\r\n", 2);
}

void fg_proxy_send_head(struct fg_conn *c)
{
    struct fg_req *r = &c->req;
    if (r->up_head.len == 0)
        build_head(c, &r->up_head);
    bufferevent_write(c->up->bev, r->up_head.data, r->up_head.len);
    int has_body = r->f.chunked || (r->f.has_cl && r->f.cl > 0);
    if (r->f.expect_continue && has_body && r->line.minor >= 1 && !r->retried)
        bufferevent_write(c->bev, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    fg_conn_start_body(c);
}
