/*
 * conn.c - the client side: accept, TLS, HTTP/1.1 requests (heads by the
 * strict parser in h1.c, bodies by Content-Length or fg_chunked), keep-alive
 * and pipelining (one request at a time, answered in
 * order), timeouts, local responses, backpressure and the close paths.
 */
#include "conn.h"

#include "../auth/authn.h"
#include "accesslog.h"
#include "http.h"
#include "sanitize.h"
#include "tls.h"

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FEED_MAX     (64 * 1024)
#define LINGER_MS    2000
#define READ_HIGH_WM (256 * 1024)

struct fg_server_state fg_state;

uint64_t fg_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/*
 * The limits a connection works under: those of the snapshot its request pinned at
 * dispatch while one is in flight (a reload never changes them under a request), else the
 * worker's current ones (between requests, and while the next head is read).
 */
static const struct fg_limits *limits(const struct fg_conn *c)
{
    return c->req.snap ? &c->req.snap->cfg->limits : &c->w->snap->cfg->limits;
}

static void timer_set(struct fg_conn *c, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    /* Every connection of a worker uses the same few durations: libevent's common
     * timeout queues make adding and removing them O(1) instead of heap operations. */
    const struct timeval *common = event_base_init_common_timeout(c->w->base, &tv);
    evtimer_add(c->timer, common ? common : &tv);
}

static void timer_clear(struct fg_conn *c)
{
    evtimer_del(c->timer);
}

/* Reads on or off: our reader for plaintext, the bufferevent for TLS. */
static void read_on(struct fg_conn *c, int on)
{
    if (c->eager)
        fg_reader_set(&c->rd, on);
    else if (on)
        bufferevent_enable(c->bev, EV_READ);
    else
        bufferevent_disable(c->bev, EV_READ);
}

/* ---- request heads -------------------------------------------------------- */

static void parse_error(struct fg_conn *c, int status);

const char *fg_req_header(const struct fg_req *r, int idx, size_t *len)
{
    const struct fg_hdr *h = &r->msg.hdrs[idx];
    *len = h->value_len;
    return r->msg.raw.data + h->value;
}

/*
 * Looks for the end of the request head in the bytes that arrived since the
 * last look (without copying them), then parses and checks the whole head.
 * 1: a head is ready in c->req; 0: more is needed; -1: answered with an error.
 */
static int read_head(struct fg_conn *c, struct evbuffer *in)
{
    struct fg_req *r = &c->req;
    size_t max = limits(c)->max_header_bytes, avail = evbuffer_get_length(in), end = 0;
    if (avail > max)
        avail = max;
    enum fg_h1_result res = FG_H1_MORE;
    while (res == FG_H1_MORE && c->scan.pos < avail) {
        struct evbuffer_ptr at;
        struct evbuffer_iovec v;
        if (evbuffer_ptr_set(in, &at, c->scan.pos, EVBUFFER_PTR_SET) != 0 ||
            evbuffer_peek(in, (ssize_t)(avail - c->scan.pos), &at, &v, 1) < 1)
            break;
        size_t n = v.iov_len < avail - c->scan.pos ? v.iov_len : avail - c->scan.pos;
        res = fg_h1_scan(&c->scan, v.iov_base, n, &end);
    }
    if (res == FG_H1_MORE) {
        if (c->scan.pos < max)
            return 0;
        parse_error(c, c->scan.line == c->scan.start ? 414 : 431);
        return -1;
    }
    int st = 400; /* a bare CR or LF */
    if (res == FG_H1_DONE) {
        const char *head = (const char *)evbuffer_pullup(in, (ssize_t)end);
        st = fg_h1_parse_request(head + c->scan.start, end - c->scan.start, max, &r->msg, &r->line);
        if (st == 0)
            st = fg_sanitize_request(&r->msg, &r->line, &r->f);
        if (st == 0 && r->line.method == HTTP_CONNECT)
            st = 405;
        evbuffer_drain(in, end);
    }
    memset(&c->scan, 0, sizeof(c->scan));
    if (st != 0) {
        parse_error(c, st);
        return -1;
    }
    r->body_left = r->f.has_cl ? r->f.cl : 0;
    if (r->f.chunked)
        fg_chunked_init(&c->chunked);
    r->body_done = !r->f.chunked && r->body_left == 0;
    return 1;
}

static void local_body_add(struct fg_conn *c, const char *at, size_t len)
{
    if (c->local_body.len + len > c->local_max)
        c->local_too_big = 1;
    else
        fg_buf_add(&c->local_body, at, len);
}

/* Moves up to the rest of a Content-Length body: to the shard, a local handler, or away. */
static void read_cl_body(struct fg_conn *c, struct evbuffer *in)
{
    struct fg_req *r = &c->req;
    size_t n = evbuffer_get_length(in);
    if (n > r->body_left)
        n = (size_t)r->body_left;
    if (c->local_done) {
        local_body_add(c, (const char *)evbuffer_pullup(in, (ssize_t)n), n);
        evbuffer_drain(in, n);
    } else if (c->up) {
        evbuffer_remove_buffer(in, bufferevent_get_output(c->up->bev), n);
        r->body_started = 1;
    } else {
        evbuffer_drain(in, n); /* answered locally: the body is discarded */
    }
    r->body_left -= n;
    r->body_done = r->body_left == 0;
}

/* ---- lifecycle ------------------------------------------------------------ */

static void conn_free(struct fg_conn *c)
{
    fg_buf_free(&c->req.msg.raw);
    free(c->req.msg.hdrs);
    fg_buf_free(&c->req.up_head);
    fg_buf_free(&c->local_body);
    fg_proxy_forget(c);
    free(c);
}

void fg_conn_hold(struct fg_conn *c)
{
    c->holds++;
}

void fg_conn_release(struct fg_conn *c)
{
    if (--c->holds == 0 && c->dead)
        conn_free(c);
}

static int req_in_flight(const struct fg_conn *c)
{
    return c->state != CS_HEAD || c->req.t_start_us != 0; /* a head has begun to arrive */
}

static void req_cleanup(struct fg_conn *c)
{
    struct fg_req *r = &c->req;
    fg_identity_unref(r->identity);
    r->identity = NULL;
    fg_union_clear(&r->un);
    if (r->snap) {
        fg_snapshot_unref(r->snap);
        r->snap = NULL;
        __atomic_sub_fetch(&fg_state.requests, 1, __ATOMIC_RELAXED);
    }
}

static void req_reset(struct fg_conn *c)
{
    struct fg_req *r = &c->req;
    struct fg_msg msg = r->msg;
    struct fg_buf up_head = r->up_head;
    fg_msg_reset(&msg);
    fg_buf_reset(&up_head);
    /* Give back memory a big request needed; idle connections stay small. */
    if (msg.raw.cap > 8192)
        fg_buf_free(&msg.raw);
    if (up_head.cap > 8192)
        fg_buf_free(&up_head);
    memset(r, 0, sizeof(*r));
    r->msg = msg;
    r->up_head = up_head;
    r->f.host_idx = r->f.auth_idx = -1;
}

void fg_conn_close(struct fg_conn *c)
{
    if (c->dead)
        return;
    c->dead = 1;
    if (c->state != CS_TUNNEL && c->req.snap && !c->req.resp_done) {
        if (c->req.status == 0)
            c->req.status = c->req.resp_started ? 0 : 499; /* the client went away */
        fg_access_log(c);
    }
    if (fg_union_cancel(&c->req.un))
        c->holds--; /* withdrawn: no post will come back for it */
    req_cleanup(c);
    if (c->up) {
        struct fg_upconn *u = c->up;
        c->up = NULL;
        u->conn = NULL;
        fg_up_close(u);
    }
    event_free(c->timer);
    event_free(c->kick);
    if (c->eager)
        fg_reader_free(&c->rd);
    bufferevent_free(c->bev);
    TAILQ_REMOVE(&c->w->conns, c, link);
    c->w->nconns--;
    __atomic_sub_fetch(&fg_state.conns, 1, __ATOMIC_RELAXED);
    if (c->w->draining && c->w->nconns == 0)
        event_base_loopexit(c->w->base, NULL);
    if (c->holds == 0)
        conn_free(c);
}

/*
 * After the last response: flush it, then close. When the client may still be
 * sending (a body we did not read, a malformed head), keep reading and
 * discarding for a moment after a half-close, so the client sees the response
 * instead of a reset.
 */
static void flushed(struct fg_conn *c)
{
    if (!c->linger) {
        fg_conn_close(c);
        return;
    }
    if (!c->tls)
        shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    read_on(c, 1);
}

static void start_closing(struct fg_conn *c)
{
    c->state = CS_CLOSING;
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    if (!c->eager)
        bufferevent_enable(c->bev, EV_WRITE);
    timer_set(c, LINGER_MS);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        flushed(c);
}

/* ---- responses ------------------------------------------------------------ */

void fg_conn_respond(struct fg_conn *c, int status, const char *content_type, const char *body,
                     size_t body_len)
{
    struct fg_req *r = &c->req;
    int has_body = r->f.chunked || (r->f.has_cl && r->f.cl > 0);
    if (c->state == CS_HEAD || (!r->body_done && has_body) || !r->f.keepalive || c->w->draining)
        c->close_after = 1;
    struct fg_buf b = {0};
    fg_buf_printf(&b,
                  "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                  "Cache-Control: no-store\r\nPragma: no-cache\r\n"
                  "X-Content-Type-Options: nosniff\r\n",
                  status, fg_http_reason(status), content_type, body_len);
    if (c->close_after)
        fg_buf_adds(&b, "Connection: close\r\n");
    fg_buf_adds(&b, "\r\n");
    if (r->line.method != HTTP_HEAD || c->state == CS_HEAD)
        fg_buf_add(&b, body, body_len);
    bufferevent_write(c->bev, b.data, b.len);
    fg_buf_free(&b);
    r->status = status;
    r->resp_started = r->resp_done = 1;
    r->bytes_out += body_len;
    r->local = 1;
    if (c->state == CS_HEAD) {
        /* A malformed head: nothing more will be parsed on this connection. */
        c->linger = 1;
        fg_access_log(c);
        req_cleanup(c);
        start_closing(c);
        return;
    }
    if (!r->body_done) {
        /* Not read: the connection closes after this response. */
        r->body_done = r->body_abandoned = 1;
        c->linger = 1;
    }
    fg_conn_maybe_finish(c);
}

/* A malformed head or body: answer status (400, 413, 414, 417, 431, 501, 505) and close. */
static void parse_error(struct fg_conn *c, int status)
{
    fg_log(FG_LOG_DEBUG, "client %s: malformed request: %s", c->peer, fg_http_reason(status));
    if (c->state == CS_FORWARD && c->req.resp_started) {
        fg_conn_close(c);
        return;
    }
    if (c->up) {
        struct fg_upconn *u = c->up;
        c->up = NULL;
        u->conn = NULL;
        fg_up_close(u);
    }
    c->state = CS_HEAD;
    const char *msg = status == 431   ? "request header fields too large"
                      : status == 414 ? "request URI too long"
                      : status == 505 ? "HTTP version not supported"
                      : status == 405 ? "method not allowed"
                      : status == 417 ? "expectation failed"
                      : status == 501 ? "method not implemented"
                                      : "bad request";
    const char *reason = status == 431   ? "RequestHeaderFieldsTooLarge"
                         : status == 405 ? "MethodNotAllowed"
                                         : "BadRequest";
    fg_conn_respond_status(c, status, reason, msg);
}

/* ---- request completion --------------------------------------------------- */

void fg_conn_maybe_finish(struct fg_conn *c)
{
    struct fg_req *r = &c->req;
    if (c->dead || c->state == CS_TUNNEL || c->state == CS_CLOSING)
        return;
    if (r->resp_done && !r->body_done && c->state == CS_FORWARD) {
        /* The shard answered before the client finished sending: close after. */
        r->body_done = r->body_abandoned = 1;
        c->close_after = 1;
        c->linger = 1;
    }
    if (!r->resp_done || !r->body_done)
        return;
    fg_access_log(c);
    if (c->up) {
        struct fg_upconn *u = c->up;
        c->up = NULL;
        u->conn = NULL;
        fg_up_release(u, !r->body_abandoned);
    }
    int close = c->close_after || c->w->draining;
    req_cleanup(c);
    c->requests++;
    if (close) {
        start_closing(c);
        return;
    }
    req_reset(c);
    c->state = CS_HEAD;
    c->throttled = 0;
    read_on(c, 1);
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
        timer_set(c, limits(c)->header_timeout_ms);
        fg_conn_kick(c);
    } else {
        timer_set(c, limits(c)->idle_timeout_ms);
    }
}

void fg_conn_upstream_failed(struct fg_conn *c, const char *why)
{
    if (c->dead)
        return;
    fg_log(FG_LOG_WARN, "shard %s: %s",
           c->req.snap ? c->req.snap->cfg->shards[c->req.match.shard].name : "?", why);
    if (c->req.resp_started) {
        fg_conn_close(c);
        return;
    }
    if (c->up) {
        struct fg_upconn *u = c->up;
        c->up = NULL;
        u->conn = NULL;
        fg_up_close(u);
    }
    c->close_after = c->close_after || c->req.body_started;
    fg_conn_respond_status(c, 502, "ServiceUnavailable", "the shard is unavailable");
}

/* ---- input ---------------------------------------------------------------- */

static void relay_tunnel(struct fg_conn *c)
{
    if (c->up == NULL)
        return;
    struct evbuffer *out = bufferevent_get_output(c->up->bev);
    evbuffer_add_buffer(out, bufferevent_get_input(c->bev));
    if (evbuffer_get_length(out) >= limits(c)->max_buffer_bytes) {
        c->throttled = 1;
        read_on(c, 0);
        bufferevent_setwatermark(c->up->bev, EV_WRITE, limits(c)->max_buffer_bytes / 2, 0);
    }
}

static void chunk_data(void *arg, const char *p, size_t n)
{
    struct fg_conn *c = arg;
    if (c->local_done) {
        local_body_add(c, p, n);
        return;
    }
    if (c->up == NULL || c->state != CS_FORWARD)
        return;
    struct evbuffer *out = bufferevent_get_output(c->up->bev);
    fg_chunk_head(out, n);
    evbuffer_add(out, p, n);
    evbuffer_add(out, "\r\n", 2);
    c->req.body_started = 1;
}

/* A chunked request body, decoded strictly by fg_chunked. Returns 0 to go on reading, -1 to stop.
 */
static int feed_chunked(struct fg_conn *c, const char *data, size_t n, size_t *used)
{
    enum fg_chunked_result res = fg_chunked_feed(&c->chunked, data, n, used, chunk_data, c);
    if (res == FG_CHUNKED_ERROR) {
        parse_error(c, 400);
        return -1;
    }
    if (res == FG_CHUNKED_DONE) {
        if (c->up && c->state == CS_FORWARD)
            evbuffer_add(bufferevent_get_output(c->up->bev), "0\r\n\r\n", 5);
        c->req.body_done = 1; /* a pipelined request waits until this one is answered */
    }
    return 0;
}

static void local_answer(struct fg_conn *c)
{
    void (*done)(struct fg_conn *, const char *, size_t) = c->local_done;
    c->local_done = NULL;
    if (c->local_too_big)
        done(c, NULL, 0); /* the handler answers in its own dialect */
    else
        done(c, c->local_body.data ? c->local_body.data : "", c->local_body.len);
    if (c->local_body.data)
        OPENSSL_cleanse(c->local_body.data, c->local_body.len); /* may hold a client secret */
    fg_buf_free(&c->local_body);
    c->local_too_big = 0;
}

void fg_conn_read_body(struct fg_conn *c, size_t max,
                       void (*done)(struct fg_conn *c, const char *body, size_t len))
{
    struct fg_req *r = &c->req;
    int has_body = r->f.chunked || (r->f.has_cl && r->f.cl > 0);
    if (!has_body) {
        done(c, "", 0);
        return;
    }
    if (r->f.has_cl && r->f.cl > max) {
        done(c, NULL, 0);
        return;
    }
    c->local_done = done;
    c->local_max = max;
    if (r->f.expect_continue && r->line.minor >= 1)
        bufferevent_write(c->bev, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    fg_conn_start_body(c);
}

static void process_input(struct fg_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    while (!c->dead) {
        if (c->state == CS_TUNNEL) {
            if (!c->throttled)
                relay_tunnel(c);
            return;
        }
        if (c->state == CS_CLOSING) {
            evbuffer_drain(in, evbuffer_get_length(in));
            return;
        }
        size_t len = evbuffer_get_length(in);
        if (c->throttled || len == 0)
            return;
        if (c->state == CS_HEAD) {
            if (c->req.t_start_us == 0) {
                c->req.t_start_us = fg_now_us();
                timer_set(c, limits(c)->header_timeout_ms); /* idle -> reading a head */
            }
            if (read_head(c, in) <= 0)
                return;
            c->state = CS_DISPATCH;
            timer_clear(c);
            __atomic_add_fetch(&fg_state.requests, 1, __ATOMIC_RELAXED);
            fg_proxy_dispatch(c);
            continue;
        }
        if (c->state != CS_FORWARD || c->req.body_done)
            return; /* routing or authenticating, or a pipelined request waiting its turn */
        if (c->req.f.chunked) {
            size_t n = evbuffer_get_contiguous_space(in), used;
            if (n > FEED_MAX)
                n = FEED_MAX;
            int stop = feed_chunked(c, (const char *)evbuffer_pullup(in, (ssize_t)n), n, &used);
            if (!c->dead)
                evbuffer_drain(in, used);
            if (stop)
                return;
        } else {
            read_cl_body(c, in);
        }
        if (c->req.body_done) {
            if (c->local_done)
                local_answer(c);
            fg_conn_maybe_finish(c);
            return;
        }
        if (c->up && evbuffer_get_length(bufferevent_get_output(c->up->bev)) >=
                         limits(c)->max_buffer_bytes) {
            /* The shard reads slower than the client sends: stop reading the client. */
            c->throttled = 1;
            read_on(c, 0);
            bufferevent_setwatermark(c->up->bev, EV_WRITE, limits(c)->max_buffer_bytes / 2, 0);
            return;
        }
    }
}

void fg_conn_unthrottle(struct fg_conn *c)
{
    if (!c->throttled || c->dead)
        return;
    c->throttled = 0;
    read_on(c, 1);
    fg_conn_kick(c);
}

void fg_conn_start_body(struct fg_conn *c)
{
    c->state = CS_FORWARD;
    if (c->req.body_done)
        return; /* no body, or a retry: the request was already read */
    fg_conn_kick(c);
}

void fg_conn_tunnel(struct fg_conn *c)
{
    if (!c->req.body_done)
        process_input(c); /* consume the end of the request head first */
    if (c->dead)
        return;
    c->state = CS_TUNNEL;
    timer_clear(c);
    fg_access_log(c);
    read_on(c, 1);
    fg_conn_kick(c); /* bytes the client sent after its request head */
}

void fg_conn_end_tunnel(struct fg_conn *c)
{
    c->up = NULL;
    c->linger = 0;
    start_closing(c);
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fg_conn *c = arg;
    fg_conn_hold(c);
    process_input(c);
    if (c->eager && !c->dead && c->rd.want)
        fg_reader_set(&c->rd, 1);
    fg_conn_flush(c);
    fg_conn_release(c);
}

void fg_conn_kick(struct fg_conn *c)
{
    if (!c->dead)
        event_active(c->kick, EV_TIMEOUT, 1);
}

/* ---- bufferevent callbacks ------------------------------------------------ */

static void read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct fg_conn *c = arg;
    fg_conn_hold(c);
    process_input(c);
    fg_conn_flush(c);
    fg_conn_release(c);
}

static void event_cb(struct bufferevent *bev, short what, void *arg);

static void reader_data(void *arg)
{
    struct fg_conn *c = arg;
    fg_conn_hold(c);
    process_input(c);
    if (!c->dead && c->rd.want)
        fg_reader_set(&c->rd, 1); /* re-arm if a full input paused it and we drained it */
    fg_conn_flush(c);
    fg_conn_release(c);
}

static void reader_closed(void *arg, short what)
{
    struct fg_conn *c = arg;
    event_cb(c->bev, what, c);
}

/* The client's output is written out: finish a close, or let the shard send more. */
static void drained(struct fg_conn *c)
{
    if (c->state == CS_CLOSING)
        flushed(c);
    else if (c->up && c->up->throttled)
        fg_up_unthrottle(c->up);
}

void fg_conn_flush(struct fg_conn *c)
{
    for (int round = 0; round < 4 && !c->dead; round++) {
        int again = 0;
        struct fg_upconn *u = c->up;
        if (u && u->eager && !u->dead && u->state != UP_CONNECTING &&
            evbuffer_get_length(bufferevent_get_output(u->bev)) > 0 && fg_io_flush(u->bev) &&
            c->throttled)
            fg_conn_unthrottle(c);
        if (c->eager && evbuffer_get_length(bufferevent_get_output(c->bev)) > 0 &&
            fg_io_flush(c->bev) && (c->state == CS_CLOSING || (c->up && c->up->throttled))) {
            drained(c);
            again = 1; /* the shard may have sent more, or we closed */
        }
        if (!again)
            break;
    }
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct fg_conn *c = arg;
    fg_conn_hold(c);
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        if (c->eager)
            bufferevent_disable(bev, EV_WRITE); /* until the socket is full again */
        drained(c);
    } else if (c->state != CS_CLOSING && c->up && c->up->throttled) {
        fg_up_unthrottle(c->up); /* below the low watermark */
    }
    fg_conn_flush(c);
    fg_conn_release(c);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct fg_conn *c = arg;
    fg_conn_hold(c);
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        if (c->state == CS_TUNNEL && c->up) {
            /* Pass on what arrived, then close both sides once it is written. */
            relay_tunnel(c);
            struct fg_upconn *u = c->up;
            c->up = NULL;
            u->conn = NULL;
            fg_up_tunnel(u); /* the upstream flushes and closes itself */
        }
        if ((what & BEV_EVENT_ERROR) && c->tls)
            fg_log(FG_LOG_DEBUG, "client %s: TLS: %s", c->peer, fg_tls_bev_error(bev));
        fg_conn_close(c);
    }
    fg_conn_flush(c);
    fg_conn_release(c);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fg_conn *c = arg;
    fg_conn_hold(c);
    if (c->state == CS_HEAD || c->state == CS_CLOSING)
        fg_conn_close(c);
    fg_conn_release(c);
}

/* ---- accept --------------------------------------------------------------- */

/* "ip:port" ("[ip]:port" for IPv6) of our end of fd. */
static void local_address(evutil_socket_t fd, char *out, size_t outsz)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "";
    int port = 0, v6 = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
            port = ntohs(a->sin6_port);
            v6 = 1;
        } else {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
            port = ntohs(a->sin_port);
        }
    }
    snprintf(out, outsz, v6 ? "[%s]:%d" : "%s:%d", ip, port);
}

void fg_conn_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int slen,
                    void *arg)
{
    (void)l;
    (void)slen;
    struct fg_listen_arg *la = arg;
    struct fg_worker *w = la->w;
    const struct fg_limits *lim = &w->snap->cfg->limits;
    if (__atomic_load_n(&fg_state.conns, __ATOMIC_RELAXED) >= (long)lim->max_connections ||
        w->draining) {
        evutil_closesocket(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    SSL_CTX *ctx = w->snap->listener_ctx[la->index];
    struct bufferevent *bev;
    int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
    if (ctx) {
        SSL *ssl = SSL_new(ctx);
        bev = bufferevent_openssl_socket_new(w->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, opts);
        if (bev)
            bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    } else {
        bev = bufferevent_socket_new(w->base, fd, opts);
    }
    if (bev == NULL) {
        evutil_closesocket(fd);
        return;
    }
    struct fg_conn *c = fg_calloc(1, sizeof(*c));
    c->w = w;
    c->bev = bev;
    c->tls = ctx != NULL;
    c->eager = ctx == NULL;
    c->port = la->port;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, c->peer, sizeof(c->peer));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, c->peer, sizeof(c->peer));
    else
        memcpy(c->peer, "unknown", 8);
    local_address(fd, c->local, sizeof(c->local));
    c->req.f.host_idx = c->req.f.auth_idx = -1;
    c->timer = evtimer_new(w->base, timer_cb, c);
    c->kick = event_new(w->base, -1, 0, kick_cb, c);
    TAILQ_INSERT_TAIL(&w->conns, c, link);
    w->nconns++;
    __atomic_add_fetch(&fg_state.conns, 1, __ATOMIC_RELAXED);
    bufferevent_setcb(bev, read_cb, write_cb, event_cb, c);
    bufferevent_setwatermark(bev, EV_READ, 0, READ_HIGH_WM);
    if (c->eager) {
        bufferevent_disable(bev, EV_READ | EV_WRITE); /* we read; writes arm EV_WRITE as needed */
        fg_reader_init(&c->rd, w->base, bev, reader_data, reader_closed, c, READ_HIGH_WM);
        fg_reader_set(&c->rd, 1);
    } else {
        bufferevent_enable(bev, EV_READ | EV_WRITE);
    }
    timer_set(c, lim->header_timeout_ms);
}

void fg_conn_drain_all(struct fg_worker *w)
{
    struct fg_conn *c, *next;
    for (c = TAILQ_FIRST(&w->conns); c; c = next) {
        next = TAILQ_NEXT(c, link);
        if (!req_in_flight(c))
            fg_conn_close(c);
    }
    if (w->nconns == 0)
        event_base_loopexit(w->base, NULL);
}

void fg_conn_close_all(struct fg_worker *w)
{
    struct fg_conn *c;
    while ((c = TAILQ_FIRST(&w->conns)) != NULL)
        fg_conn_close(c);
}
