/*
 * exchange.c - an exchange's lifecycle and the relay between its client
 * connection and its upstream: request bodies to the shard (or to a local
 * handler), responses to the client, backpressure both ways, completion,
 * failure and the one retry RFC 9110 allows. Routing and authentication are
 * in proxy.c.
 */
#include "exchange.h"

#include "accesslog.h"
#include "http.h"
#include "kcp.h"
#include "metrics.h"
#include "upstream.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

const char *fg_ex_state_name(enum fg_ex_state s)
{
    static const char *const names[] = {"idle",       "routing",   "authenticating", "connecting",
                                        "forwarding", "streaming", "tunnel",         "done"};
    return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

void fg_ex_init(struct fg_exchange *ex, const struct fg_client_ops *ops, void *client,
                const struct fg_client_info *ci, struct fg_worker *w, struct fg_union_memo *memo)
{
    memset(ex, 0, sizeof(*ex));
    ex->ops = ops;
    ex->client = client;
    ex->ci = ci;
    ex->w = w;
    ex->memo = memo;
    ex->state = EX_IDLE;
    ex->req.f.host_idx = ex->req.f.auth_idx = -1;
}

const struct fg_limits *fg_ex_limits(const struct fg_exchange *ex)
{
    return ex->req.snap ? &ex->req.snap->cfg->limits : &ex->w->snap->cfg->limits;
}

const char *fg_req_header(const struct fg_req *r, int idx, size_t *len)
{
    const struct fg_hdr *h = &r->msg.hdrs[idx];
    *len = h->value_len;
    return r->msg.raw.data + h->value;
}

/* Drops what the request pinned: identity, union state, snapshot. */
static void cleanup(struct fg_exchange *ex)
{
    struct fg_req *r = &ex->req;
    fg_identity_unref(r->identity);
    r->identity = NULL;
    fg_union_clear(&r->un);
    if (r->live) {
        fg_live_unref(r->live);
        r->live = NULL;
    }
    if (r->snap) {
        fg_snapshot_unref(r->snap);
        r->snap = NULL;
        __atomic_sub_fetch(&fg_state.requests, 1, __ATOMIC_RELAXED);
    }
}

static void local_body_free(struct fg_exchange *ex)
{
    if (ex->local_body.data)
        OPENSSL_cleanse(ex->local_body.data, ex->local_body.len); /* may hold a client secret */
    fg_buf_free(&ex->local_body);
    ex->local_too_big = 0;
    ex->local_done = NULL;
}

void fg_ex_free(struct fg_exchange *ex)
{
    cleanup(ex);
    local_body_free(ex);
    fg_buf_free(&ex->req.msg.raw);
    free(ex->req.msg.hdrs);
    fg_buf_free(&ex->req.up_head);
}

void fg_ex_reset(struct fg_exchange *ex)
{
    struct fg_req *r = &ex->req;
    struct fg_msg msg = r->msg;
    struct fg_buf up_head = r->up_head;
    fg_msg_reset(&msg);
    fg_buf_reset(&up_head);
    /* Give back memory a big request needed; idle connections stay small. */
    if (msg.raw.cap > 8192)
        fg_buf_free(&msg.raw);
    if (up_head.cap > 8192)
        fg_buf_free(&up_head);
    local_body_free(ex);
    memset(r, 0, sizeof(*r));
    r->msg = msg;
    r->up_head = up_head;
    r->f.host_idx = r->f.auth_idx = -1;
    ex->state = EX_IDLE;
    ex->up = NULL;
    ex->throttled = 0;
}

void fg_ex_hold(struct fg_exchange *ex)
{
    ex->ops->hold(ex);
}

void fg_ex_release(struct fg_exchange *ex)
{
    ex->ops->release(ex);
}

/* Detaches ex's upstream and returns it (or NULL). */
static struct fg_upconn *take_up(struct fg_exchange *ex)
{
    struct fg_upconn *u = ex->up;
    if (u) {
        ex->up = NULL;
        fg_up_detach(u);
    }
    return u;
}

static void close_up(struct fg_exchange *ex)
{
    struct fg_upconn *u = take_up(ex);
    if (u)
        fg_up_close(u);
}

static int forwarding(const struct fg_exchange *ex)
{
    return ex->state == EX_FORWARDING || ex->state == EX_STREAMING;
}

/* ---- answering -------------------------------------------------------------- */

void fg_ex_respond(struct fg_exchange *ex, int status, const char *content_type, const char *body,
                   size_t len)
{
    struct fg_req *r = &ex->req;
    r->status = status;
    r->resp_started = r->resp_done = 1;
    r->bytes_out += len;
    r->local = 1;
    ex->ops->respond(ex, status, content_type, body, len);
    if (ex->state == EX_IDLE)
        return; /* a malformed head: the client answered and closes */
    if (!r->body_done)
        r->body_done = r->body_abandoned = 1; /* not read: the client closes after this */
    fg_ex_response_done(ex);
}

void fg_ex_response_done(struct fg_exchange *ex)
{
    struct fg_req *r = &ex->req;
    if (ex->state == EX_TUNNEL || ex->state == EX_DONE || ex->state == EX_IDLE)
        return;
    if (r->resp_done && !r->body_done && forwarding(ex))
        r->body_done = r->body_abandoned = 1; /* the shard answered before the client finished */
    if (!r->resp_done || !r->body_done)
        return;
    fg_access_log(ex);
    struct fg_upconn *u = take_up(ex);
    if (u)
        fg_up_release(u, !r->body_abandoned);
    ex->state = EX_DONE;
    ex->throttled = 0;
    cleanup(ex);
    ex->ops->finish(ex);
}

void fg_ex_read_body(struct fg_exchange *ex, size_t max,
                     void (*done)(struct fg_exchange *ex, const char *body, size_t len))
{
    struct fg_req *r = &ex->req;
    if (!fg_req_has_body(r)) {
        done(ex, "", 0);
        return;
    }
    if (r->f.has_cl && r->f.cl > max) {
        done(ex, NULL, 0);
        return;
    }
    ex->local_done = done;
    ex->local_max = max;
    ex->ops->read_body(ex);
}

static void local_answer(struct fg_exchange *ex)
{
    void (*done)(struct fg_exchange *, const char *, size_t) = ex->local_done;
    ex->local_done = NULL;
    if (ex->local_too_big)
        done(ex, NULL, 0); /* the handler answers in its own dialect */
    else
        done(ex, ex->local_body.data ? ex->local_body.data : "", ex->local_body.len);
    local_body_free(ex);
}

/* ---- from the client -------------------------------------------------------- */

int fg_ex_body(struct fg_exchange *ex, const char *p, size_t n)
{
    ex->req.bytes_in += n;
    if (ex->local_done) {
        if (ex->local_body.len + n > ex->local_max)
            ex->local_too_big = 1;
        else
            fg_buf_add(&ex->local_body, p, n);
        return 0;
    }
    if (ex->up == NULL || !forwarding(ex) || n == 0)
        return 0; /* answered already: the body is discarded */
    ex->req.body_started = 1;
    if (ex->req.f.chunked)
        fg_up_write_chunk(ex->up, p, n);
    else
        fg_up_write(ex->up, p, n);
    return ex->throttled = fg_up_full(ex->up);
}

int fg_ex_body_move(struct fg_exchange *ex, struct evbuffer *src, size_t n)
{
    if (ex->local_done || ex->req.f.chunked) {
        int full = fg_ex_body(ex, (const char *)evbuffer_pullup(src, (ssize_t)n), n); /* counts */
        evbuffer_drain(src, n);
        return full;
    }
    ex->req.bytes_in += n;
    if (ex->up == NULL || !forwarding(ex) || n == 0) {
        evbuffer_drain(src, n);
        return 0;
    }
    ex->req.body_started = 1;
    fg_up_write_buffer(ex->up, src, n);
    return ex->throttled = fg_up_full(ex->up);
}

void fg_ex_body_end(struct fg_exchange *ex)
{
    struct fg_req *r = &ex->req;
    r->body_done = 1;
    if (ex->local_done) {
        local_answer(ex);
        return;
    }
    if (ex->up && forwarding(ex))
        fg_up_body_end(ex->up, r->f.chunked);
    fg_ex_response_done(ex);
}

int fg_ex_tunnel_data(struct fg_exchange *ex, struct evbuffer *src)
{
    if (ex->up == NULL) {
        evbuffer_drain(src, evbuffer_get_length(src));
        return 0;
    }
    fg_up_write_buffer(ex->up, src, evbuffer_get_length(src));
    return ex->throttled = fg_up_full(ex->up);
}

void fg_ex_client_drained(struct fg_exchange *ex)
{
    if (ex->up && fg_up_throttled(ex->up))
        fg_up_unthrottle(ex->up);
}

int fg_ex_upstream_throttled(const struct fg_exchange *ex)
{
    return ex->up && fg_up_throttled(ex->up);
}

void fg_ex_flush_upstream(struct fg_exchange *ex)
{
    if (ex->up && fg_up_flush(ex->up) && ex->throttled)
        fg_ex_up_drained(ex);
}

void fg_ex_client_tunnel_closed(struct fg_exchange *ex)
{
    struct fg_upconn *u = take_up(ex);
    if (u)
        fg_up_tunnel_closed(u); /* flushes and closes itself */
}

void fg_ex_client_gone(struct fg_exchange *ex)
{
    struct fg_req *r = &ex->req;
    if (ex->state != EX_TUNNEL && r->snap && !r->resp_done) {
        if (r->status == 0)
            r->status = r->resp_started ? 0 : 499; /* the client went away */
        fg_access_log(ex);
    }
    if (fg_union_cancel(&r->un))
        fg_ex_release(ex); /* withdrawn: no post will come back for it */
    cleanup(ex);
    close_up(ex);
    local_body_free(ex);
    ex->state = EX_DONE;
    ex->gone = 1;
}

void fg_ex_client_error(struct fg_exchange *ex, int status)
{
    struct fg_req *r = &ex->req;
    if (r->resp_started) {
        ex->ops->abort(ex);
        return;
    }
    close_up(ex);
    local_body_free(ex);
    fg_ex_respond_status(ex, status, "BadRequest",
                         status == 413 ? "request entity too large" : "bad request");
}

/* ---- from the upstream ------------------------------------------------------ */

void fg_ex_up_ready(struct fg_exchange *ex)
{
    struct fg_req *r = &ex->req;
    if (r->up_head.len == 0)
        fg_proxy_build_head(ex, &r->up_head);
    if (fg_up_send_head(ex->up, r->up_head.data, r->up_head.len) != 0) {
        close_up(ex);
        fg_ex_up_failed(ex, "cannot send the request");
        return;
    }
    r->t_up_us = fg_now_us();
    ex->state = EX_FORWARDING;
    ex->ops->read_body(ex);
}

int fg_ex_up_head(struct fg_exchange *ex, const struct fg_resp_head *h)
{
    struct fg_req *r = &ex->req;
    if (h->status == 101 && !r->f.upgrade)
        return -1; /* a switch nobody asked for */
    r->status = h->status;
    r->resp_started = 1;
    if (h->status == 101 || fg_req_is_watch(r)) {
        r->stream_kind = h->status == 101 ? 2 : 1;
        fg_metrics_stream(ex->w->metrics, r->stream_kind - 1, 1);
    }
    if (r->t_up_us) {
        r->up_us = fg_now_us() - r->t_up_us;
        fg_metrics_upstream(ex->w->metrics, r->snap->shard_label[r->match.shard], r->up_us);
    }
    ex->state = EX_STREAMING;
    ex->ops->head(ex, h);
    return 0;
}

int fg_ex_up_body(struct fg_exchange *ex, const char *p, size_t n)
{
    ex->req.bytes_out += n;
    return ex->ops->body(ex, p, n);
}

void fg_ex_up_end(struct fg_exchange *ex)
{
    ex->ops->end(ex);
    ex->req.resp_done = 1;
    fg_ex_response_done(ex);
}

void fg_ex_up_upgraded(struct fg_exchange *ex)
{
    ex->state = EX_TUNNEL;
    ex->ops->tunnel(ex);
}

int fg_ex_up_tunnel_data(struct fg_exchange *ex, struct evbuffer *src)
{
    return ex->ops->tunnel_data(ex, src);
}

void fg_ex_up_tunnel_end(struct fg_exchange *ex)
{
    take_up(ex);
    ex->ops->tunnel_end(ex);
}

void fg_ex_up_failed(struct fg_exchange *ex, const char *why)
{
    struct fg_req *r = &ex->req;
    take_up(ex);
    fg_log(FG_LOG_WARN, "shard %s: %s", r->snap ? r->snap->cfg->shards[r->match.shard].name : "?",
           why);
    if (r->resp_started) {
        ex->ops->abort(ex);
        return;
    }
    fg_ex_respond_status(ex, 502, "ServiceUnavailable", "the shard is unavailable");
}

static int idempotent(int method)
{
    return method == HTTP_GET || method == HTTP_HEAD || method == HTTP_OPTIONS ||
           method == HTTP_TRACE || method == HTTP_PUT || method == HTTP_DELETE;
}

int fg_ex_up_retry(struct fg_exchange *ex, int unprocessed)
{
    struct fg_req *r = &ex->req;
    /*
     * A kept-alive connection the shard had already closed: try a fresh one. Only an
     * idempotent request (RFC 9110 9.2.2) may go twice: a POST the shard read and then
     * dropped may have taken effect. A stream the shard refused (RFC 9113 8.7) was not
     * processed, whatever its method.
     */
    if (r->body_started || r->retried || (!unprocessed && !idempotent(r->line.method)))
        return 0;
    take_up(ex);
    r->retried = 1;
    ex->state = EX_CONNECTING;
    fg_up_acquire(ex, r->match.shard);
    return 1;
}

void fg_ex_up_drained(struct fg_exchange *ex)
{
    if (!ex->throttled)
        return;
    ex->throttled = 0;
    ex->ops->resume(ex);
}

void fg_ex_up_flush(struct fg_exchange *ex)
{
    ex->ops->hold(ex);
    ex->ops->flush(ex);
    ex->ops->release(ex);
}

/* ---- error bodies ----------------------------------------------------------- */

static const char *iceberg_type(int status)
{
    switch (status) {
    case 400:
        return "BadRequestException";
    case 401:
        return "NotAuthorizedException";
    case 403:
        return "ForbiddenException";
    case 404:
        return "NoSuchWarehouseException";
    case 405:
        return "MethodNotAllowedException";
    default:
        return status >= 500 ? "ServiceUnavailableException" : "BadRequestException";
    }
}

void fg_ex_respond_status(struct fg_exchange *ex, int status, const char *reason,
                          const char *message)
{
    struct fg_buf body = {0};
    const struct fg_route_cfg *rt = ex->req.match.route;
    if (rt && rt->kind == FG_ROUTE_WORKSPACE_ICEBERG) {
        /* Iceberg clients parse {"error":{...}}; 401 makes them refresh their token. */
        if (status == 401)
            message = "Not authorized to make this request";
        fg_iceberg_error_json(&body, status, iceberg_type(status), message);
    } else {
        fg_status_json(&body, status, reason, message);
    }
    fg_ex_respond(ex, status, "application/json", body.data, body.len);
    fg_buf_free(&body);
}
