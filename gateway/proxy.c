/*
 * proxy.c - what happens between a complete request head and the shard:
 * local endpoints, route and workspace resolution, authentication with
 * union(global, workspace type) (which may park the request), the identity
 * policy, and the request head frontgate sends upstream.
 */
#include "exchange.h"
#include "kcp.h"
#include "metrics.h"
#include "http.h"
#include "sanitize.h"
#include "tokenep.h"
#include "upstream.h"

#include "../auth/identity.h"
#include "../auth/union.h"
#include "../auth/mint.h"

#include <event2/buffer.h>
#include <openssl/crypto.h>
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static const char unauthorized_msg[] = "Unauthorized";

/* ---- local endpoints ------------------------------------------------------ */

/* The discovery document and JWKS of an identity-translation issuer. */
static int mint_endpoint(struct fg_exchange *ex, const char *path, size_t len)
{
    const struct fg_snapshot *s = ex->req.snap;
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
        fg_ex_respond(ex, 200, "application/json", b.data, b.len);
        fg_buf_free(&b);
        return 1;
    }
    return 0;
}

static int local_endpoint(struct fg_exchange *ex, const char *path, size_t len)
{
    int ready;
    if (mint_endpoint(ex, path, len))
        return 1;
    if (fg_strn_eqi(path, len, "/healthz") || fg_strn_eqi(path, len, "/livez")) {
        ready = 1;
    } else if (fg_strn_eqi(path, len, "/readyz")) {
        ready = __atomic_load_n(&fg_state.ready, __ATOMIC_RELAXED) &&
                !__atomic_load_n(&fg_state.draining, __ATOMIC_RELAXED) &&
                fg_snapshot_ready(ex->req.snap) && fg_live_ready();
    } else {
        return 0;
    }
    if (ready)
        fg_ex_respond(ex, 200, "text/plain; charset=utf-8", "ok\n", 3);
    else
        fg_ex_respond(ex, 503, "text/plain; charset=utf-8", "not ready\n", 10);
    return 1;
}

/* ---- authentication ------------------------------------------------------- */

static void unauthorized(struct fg_exchange *ex)
{
    fg_ex_respond_status(ex, 401, "Unauthorized", unauthorized_msg);
}

static void forbidden_ws(struct fg_exchange *ex)
{
    const struct fg_route_cfg *rt = ex->req.match.route;
    fg_ex_respond_status(ex, 403, "Forbidden",
                         rt && rt->kind == FG_ROUTE_WORKSPACE_ICEBERG
                             ? "warehouse access not permitted"
                             : "forbidden: workspace access not permitted");
}

static void forward(struct fg_exchange *ex);

/* The union's final verdict: answer, or go on to the shard. */
static void auth_done(struct fg_exchange *ex, enum fg_union_verdict v)
{
    struct fg_req *r = &ex->req;
    r->identity = r->un.identity; /* the request owns it from here (req_cleanup) */
    r->un.identity = NULL;
    r->authn = r->un.authn;
    r->reason = r->un.reason;
    r->auth_us = fg_now_us() - r->t_auth_us;
    /* counted when some authenticator could have decided (not for pass-through requests) */
    if (r->identity || v != FG_UNION_ADMIT)
        fg_metrics_authn(ex->w->metrics, r->un.decider ? r->un.decider->label : 0,
                         r->identity ? FG_REASON_NONE : fg_reason_of(r->reason));
    switch (v) {
    case FG_UNION_ADMIT:
        forward(ex);
        break;
    case FG_UNION_FORBIDDEN:
        forbidden_ws(ex);
        break;
    default:
        unauthorized(ex);
        break;
    }
}

static void auth_verdict(struct fg_exchange *ex, enum fg_union_verdict v)
{
    if (v == FG_UNION_PENDING)
        fg_ex_hold(ex); /* released when the answer comes back (auth_resume) */
    else
        auth_done(ex, v);
}

/* Runs union(global, workspace type) for the request. */
static void auth_start(struct fg_exchange *ex)
{
    struct fg_req *r = &ex->req;
    const struct fg_snapshot *s = r->snap;
    struct fg_union_spec *sp = &r->un.spec;
    sp->global = s->global;
    sp->nglobal = s->nglobal;
    sp->ctx = UINT32_MAX; /* the global list alone */
    if (!sp->unknown_ws && r->match.ws && r->match.wstype != FG_WS_NO_TYPE) {
        const struct fg_wstype_rt *t = &s->wstypes[r->match.wstype];
        sp->ws = t->authns;
        sp->nws = t->nauthns;
        sp->ctx = r->match.wstype;
        sp->cluster = r->match.ws->cluster;
    } else if (!sp->unknown_ws && r->match.ws && r->match.ltype) {
        /* kcp's WorkspaceType: its WACs, pinned by the request's index generation */
        sp->ws = r->match.ltype->authns;
        sp->nws = r->match.ltype->nauthns;
        sp->ctx = r->match.ltype->ctx;
        sp->cluster = r->match.ws->cluster;
    }
    sp->drop_groups = s->cfg->drop_groups;
    sp->ndrop_groups = s->cfg->ndrop_groups;
    sp->authorization_present = r->f.auth_idx >= 0;
    if (r->f.auth_idx >= 0) {
        size_t len;
        const char *v = fg_req_header(r, r->f.auth_idx, &len);
        fg_bearer_from_header(v, len, &sp->cred.bearer, &sp->cred.bearer_len);
    }
    sp->memo = ex->memo;
    sp->generation = s->generation;
    r->t_auth_us = fg_now_us();
    ex->state = EX_AUTHENTICATING;
    auth_verdict(ex, fg_union_start(&r->un));
}

/* A parked authentication answered; runs on the connection's worker. */
static void auth_resume(struct fg_authn_waiter *w)
{
    struct fg_exchange *ex =
        (struct fg_exchange *)((char *)w - offsetof(struct fg_exchange, req.un.waiter));
    if (ex->gone) {
        fg_union_abandon(&ex->req.un);
        fg_ex_release(ex);
        return;
    }
    auth_verdict(ex, fg_union_resume(&ex->req.un));
    fg_ex_up_flush(ex); /* write out what the verdict produced */
    fg_ex_release(ex);
}

/* ---- dispatch ------------------------------------------------------------- */

/* A client's request id is kept when it is a short token, else frontgate makes one. */
static int request_id_ok(const char *v, size_t n)
{
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == ':'))
            return 0;
    }
    return 1;
}

static void set_request_id(struct fg_req *r)
{
    for (size_t i = 0; i < r->msg.nhdrs; i++) {
        const struct fg_hdr *h = &r->msg.hdrs[i];
        if (h->name_len == 12 && fg_strn_eqi(r->msg.raw.data + h->name, 12, "x-request-id")) {
            if (request_id_ok(r->msg.raw.data + h->value, h->value_len)) {
                memcpy(r->request_id, r->msg.raw.data + h->value, h->value_len);
                r->request_id[h->value_len] = '\0';
                return;
            }
            break; /* one that is not a short token: ours instead */
        }
    }
    static const char hex[] = "0123456789abcdef";
    unsigned char rnd[12];
    fg_random(rnd, sizeof(rnd));
    for (size_t i = 0; i < sizeof(rnd); i++) {
        r->request_id[2 * i] = hex[rnd[i] >> 4];
        r->request_id[2 * i + 1] = hex[rnd[i] & 15];
    }
    r->request_id[2 * sizeof(rnd)] = '\0';
}

void fg_ex_dispatch(struct fg_exchange *ex)
{
    struct fg_req *r = &ex->req;
    ex->state = EX_ROUTING;
    fg_worker_sync_snapshot(ex->w);
    r->snap = fg_snapshot_ref(ex->w->snap);
    set_request_id(r);
    r->un.waiter.done = auth_resume;
    r->un.waiter.post = fg_worker_post_waiter;
    r->un.waiter.owner = ex->w;
    const char *target = r->msg.raw.data;
    size_t tlen = r->msg.first_len;
    const char *q = memchr(target, '?', tlen);
    if (local_endpoint(ex, target, q ? (size_t)(q - target) : tlen))
        return;
    if (r->snap->cfg->kcp) {
        fg_worker_sync_live(ex->w);
        r->live = ex->w->live ? fg_live_ref(ex->w->live) : NULL;
    }
    switch (fg_route_resolve(r->snap->cfg, r->live, target, tlen, &r->match)) {
    case FG_ROUTE_OK:
        break;
    case FG_ROUTE_BAD_PATH:
        fg_ex_respond_status(ex, 400, "BadRequest", "invalid request path");
        return;
    case FG_ROUTE_NO_MATCH:
        fg_ex_respond_status(ex, 404, "NotFound",
                             "the server could not find the requested resource");
        return;
    case FG_ROUTE_UNKNOWN_WS:
        /*
         * Only a caller a global authenticator admits may learn that a workspace does
         * not exist. With no authenticator anywhere, requests pass through unchecked
         * and existence is no secret: say 403 as kcp does.
         */
        if (!r->snap->any_authn) {
            forbidden_ws(ex);
            return;
        }
        r->un.spec.unknown_ws = 1;
        break;
    case FG_ROUTE_UNAVAILABLE:
        /* Authenticated first, like an existing workspace, so existence does not leak. */
        break;
    case FG_ROUTE_NO_WAREHOUSE:
        fg_ex_respond_status(ex, 400, "BadRequest", "the warehouse query parameter is required");
        return;
    case FG_ROUTE_TOKEN_ENDPOINT:
        fg_token_endpoint(ex);
        return;
    }
    auth_start(ex);
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

static void forward(struct fg_exchange *ex)
{
    struct fg_req *r = &ex->req;
    check_upgrade(r);
    if (r->match.ws && r->match.ws->phase == FG_WS_UNAVAILABLE) {
        fg_ex_respond_status(ex, 503, "ServiceUnavailable", "workspace is not available");
        return;
    }
    ex->state = EX_CONNECTING;
    fg_up_acquire(ex, r->match.shard);
}

/* ---- the upstream request head -------------------------------------------- */

void fg_proxy_build_head(struct fg_exchange *ex, struct fg_buf *b)
{
    struct fg_req *r = &ex->req;
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
        rules.keep_auth = r->identity == NULL; /* the shard checks what frontgate did not */
        break;
    }
    fg_sanitize_copy_headers(b, &r->msg, &rules);
    fg_sanitize_add(b, "X-Forwarded-For", ex->ci->peer, strlen(ex->ci->peer));
    fg_sanitize_add(b, "X-Forwarded-Proto", ex->ci->tls ? "https" : "http", ex->ci->tls ? 5 : 4);
    /* Without a Host (HTTP/1.0), the address the client dialled: a catalog builds the
     * URLs it hands out from X-Forwarded-Host, and they must lead back through us. */
    if (r->f.host_idx >= 0)
        fg_sanitize_add(b, "X-Forwarded-Host", host, hlen);
    else
        fg_sanitize_add(b, "X-Forwarded-Host", ex->ci->local, strlen(ex->ci->local));
    fg_buf_adds(b, "X-Forwarded-Port: ");
    fg_buf_add_dec(b, (uint64_t)ex->ci->port);
    fg_buf_add(b, "\r\n", 2);
    if (rt->forwarded_prefix)
        fg_sanitize_add(b, "X-Forwarded-Prefix", rt->forwarded_prefix,
                        strlen(rt->forwarded_prefix));
    if (r->request_id[0])
        fg_sanitize_add(b, "X-Request-Id", r->request_id, strlen(r->request_id));
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
