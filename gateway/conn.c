/*
 * conn.c - the HTTP/1.1 client connection: accept, TLS, requests (heads by
 * the strict parser in h1.c, bodies by Content-Length or fg_chunked),
 * keep-alive and pipelining (one request at a time, answered in order),
 * timeouts, response framing, backpressure and the close paths. An HTTP/2
 * connection hands its bytes to h2.c.
 */
#include "conn.h"

#include "../auth/authn.h"
#include "accesslog.h"
#include "h2.h"
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
    return fg_ex_limits(&c->ex);
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

static void fg_conn_unthrottle(struct fg_conn *c);
static void start_closing(struct fg_conn *c);

/* ---- request heads -------------------------------------------------------- */

static void parse_error(struct fg_conn *c, int status);

/*
 * Looks for the end of the request head in the bytes that arrived since the
 * last look (without copying them), then parses and checks the whole head.
 * 1: a head is ready in c->req; 0: more is needed; -1: answered with an error.
 */
static int read_head(struct fg_conn *c, struct evbuffer *in)
{
    struct fg_req *r = &c->ex.req;
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
    c->body_left = r->f.has_cl ? r->f.cl : 0;
    if (r->f.chunked)
        fg_chunked_init(&c->chunked);
    r->body_done = !r->f.chunked && c->body_left == 0;
    return 1;
}

/* Hands up to the rest of a Content-Length body to the exchange; 1 when the shard is full. */
static int read_cl_body(struct fg_conn *c, struct evbuffer *in)
{
    size_t n = evbuffer_get_length(in);
    if (n > c->body_left)
        n = (size_t)c->body_left;
    c->body_left -= n;
    int full = fg_ex_body_move(&c->ex, in, n);
    if (c->body_left == 0)
        fg_ex_body_end(&c->ex);
    return full;
}

/* ---- lifecycle ------------------------------------------------------------ */

static void conn_free(struct fg_conn *c)
{
    if (c->h2)
        fg_h2_free(c->h2);
    fg_ex_free(&c->ex);
    fg_union_memo_clear(&c->memo);
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
    if (c->h2)
        return fg_h2_active(c->h2) > 0;
    return c->state != CS_HEAD || c->ex.req.t_start_us != 0; /* a head has begun to arrive */
}

void fg_conn_close(struct fg_conn *c)
{
    if (c->dead)
        return;
    c->dead = 1;
    fg_conn_hold(c);
    if (c->h2)
        fg_h2_close(c->h2); /* every stream's exchange goes */
    else
        fg_ex_client_gone(&c->ex);
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
    fg_conn_release(c);
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
    /* the end of our side, so the client reads EOF after the response rather than waiting out
     * the linger: a FIN on plaintext, close_notify on TLS (written directly: our output is empty)
     */
    if (!c->ci.tls) {
        shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    } else {
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        if (ssl && SSL_is_init_finished(ssl))
            SSL_shutdown(ssl);
    }
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

/* ---- responses (struct fg_client_ops) ------------------------------------- */

static struct fg_conn *conn_of(struct fg_exchange *ex)
{
    return ex->client;
}

static void h1_respond(struct fg_exchange *ex, int status, const char *content_type,
                       const char *body, size_t body_len)
{
    struct fg_conn *c = conn_of(ex);
    struct fg_req *r = &ex->req;
    if (c->state == CS_HEAD || (!r->body_done && fg_req_has_body(r)) || !r->f.keepalive ||
        c->w->draining)
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
    if (c->state == CS_HEAD) {
        /* A malformed head: nothing more will be parsed on this connection. */
        c->linger = 1;
        fg_access_log(ex);
        start_closing(c);
        return;
    }
    if (!r->body_done)
        c->linger = 1; /* not read: the connection closes after this response */
}

static void add_header(struct fg_buf *b, const struct fg_msg *m, const struct fg_hdr *h)
{
    fg_buf_add(b, m->raw.data + h->name, h->name_len);
    fg_buf_add(b, ": ", 2);
    fg_buf_add(b, m->raw.data + h->value, h->value_len);
    fg_buf_add(b, "\r\n", 2);
}

/* The shard's response head, framed for this client. */
static void h1_head(struct fg_exchange *ex, const struct fg_resp_head *h)
{
    struct fg_conn *c = conn_of(ex);
    struct fg_req *r = &ex->req;
    const struct fg_msg *m = h->msg;
    int status = h->status;
    struct fg_buf b = {0};
    fg_buf_adds(&b, "HTTP/1.1 ");
    fg_buf_add_dec(&b, (uint64_t)status);
    fg_buf_addc(&b, ' ');
    if (h->reason)
        fg_buf_add(&b, h->reason, h->reason_len);
    else
        fg_buf_adds(&b, fg_http_reason(status));
    fg_buf_add(&b, "\r\n", 2);
    for (size_t i = 0; i < m->nhdrs; i++) {
        const struct fg_hdr *hd = &m->hdrs[i];
        if (hd->drop)
            continue;
        switch (hd->kind) {
        case FG_HDR_CONNECTION:
        case FG_HDR_HOP:
        case FG_HDR_TRANSFER_ENCODING:
        case FG_HDR_UPGRADE:
            continue;
        case FG_HDR_CONTENT_LENGTH:
            if (status == 204 || (h->body && !h->length_known))
                continue;
            break;
        default:
            break;
        }
        add_header(&b, m, hd);
    }
    c->resp_chunked = 0;
    if (status == 101) {
        fg_buf_adds(&b, "Connection: Upgrade\r\n");
        if (h->upgrade_idx >= 0)
            add_header(&b, m, &m->hdrs[h->upgrade_idx]);
    } else {
        if (h->body && !h->length_known) {
            if (r->line.minor >= 1) {
                fg_buf_adds(&b, "Transfer-Encoding: chunked\r\n");
                c->resp_chunked = 1;
            } else {
                c->close_after = 1; /* an HTTP/1.0 client reads until close */
            }
        }
        if (!r->f.keepalive || c->w->draining)
            c->close_after = 1;
        if (c->close_after)
            fg_buf_adds(&b, "Connection: close\r\n");
        else if (r->line.minor == 0)
            fg_buf_adds(&b, "Connection: keep-alive\r\n");
    }
    fg_buf_add(&b, "\r\n", 2);
    bufferevent_write(c->bev, b.data, b.len);
    fg_buf_free(&b);
}

/* 1 when the client's output is full; write_cb then fires once half of it went. */
static int output_full(struct fg_conn *c)
{
    size_t max = limits(c)->max_buffer_bytes;
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) < max)
        return 0;
    bufferevent_setwatermark(c->bev, EV_WRITE, max / 2, 0);
    return 1;
}

static int h1_body(struct fg_exchange *ex, const char *p, size_t n)
{
    struct fg_conn *c = conn_of(ex);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (c->resp_chunked) {
        fg_chunk_head(out, n);
        evbuffer_add(out, p, n);
        evbuffer_add(out, "\r\n", 2);
    } else {
        evbuffer_add(out, p, n);
    }
    return output_full(c);
}

static void h1_end(struct fg_exchange *ex)
{
    struct fg_conn *c = conn_of(ex);
    if (c->resp_chunked)
        evbuffer_add(bufferevent_get_output(c->bev), "0\r\n\r\n", 5);
    c->resp_chunked = 0;
}

static void h1_read_body(struct fg_exchange *ex)
{
    struct fg_conn *c = conn_of(ex);
    struct fg_req *r = &ex->req;
    if (r->f.expect_continue && fg_req_has_body(r) && r->line.minor >= 1 && !r->retried &&
        !c->body_open)
        bufferevent_write(c->bev, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    c->body_open = 1;
    if (!r->body_done)
        fg_conn_kick(c);
}

static void h1_resume(struct fg_exchange *ex)
{
    fg_conn_unthrottle(conn_of(ex));
}

static void process_input(struct fg_conn *c);

static void h1_tunnel(struct fg_exchange *ex)
{
    struct fg_conn *c = conn_of(ex);
    if (!ex->req.body_done)
        process_input(c); /* consume the end of the request head first */
    if (c->dead)
        return;
    c->state = CS_TUNNEL;
    timer_clear(c);
    fg_access_log(ex);
    read_on(c, 1);
    fg_conn_kick(c); /* bytes the client sent after its request head */
}

static int h1_tunnel_data(struct fg_exchange *ex, struct evbuffer *src)
{
    struct fg_conn *c = conn_of(ex);
    evbuffer_add_buffer(bufferevent_get_output(c->bev), src);
    return output_full(c);
}

static void h1_tunnel_end(struct fg_exchange *ex)
{
    struct fg_conn *c = conn_of(ex);
    c->linger = 0;
    start_closing(c);
}

/* Both halves are done: the next request, or the close. */
static void h1_finish(struct fg_exchange *ex)
{
    struct fg_conn *c = conn_of(ex);
    struct fg_req *r = &ex->req;
    if (r->body_abandoned) {
        /* The client did not finish sending: its next bytes are not a request head. */
        c->close_after = 1;
        c->linger = 1;
    }
    c->requests++;
    c->body_open = 0;
    if (c->close_after || c->w->draining) {
        start_closing(c);
        return;
    }
    fg_ex_reset(ex);
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

static void h1_abort(struct fg_exchange *ex)
{
    fg_conn_close(conn_of(ex));
}

static void h1_flush(struct fg_exchange *ex)
{
    fg_conn_flush(conn_of(ex));
}

static void h1_hold(struct fg_exchange *ex)
{
    fg_conn_hold(conn_of(ex));
}

static void h1_release(struct fg_exchange *ex)
{
    fg_conn_release(conn_of(ex));
}

static const struct fg_client_ops h1_ops = {
    .respond = h1_respond,
    .head = h1_head,
    .body = h1_body,
    .end = h1_end,
    .read_body = h1_read_body,
    .resume = h1_resume,
    .tunnel = h1_tunnel,
    .tunnel_data = h1_tunnel_data,
    .tunnel_end = h1_tunnel_end,
    .finish = h1_finish,
    .abort = h1_abort,
    .flush = h1_flush,
    .hold = h1_hold,
    .release = h1_release,
};

/* A malformed head or body: answer status (400, 413, 414, 417, 431, 501, 505) and close. */
static void parse_error(struct fg_conn *c, int status)
{
    fg_log(FG_LOG_DEBUG, "client %s: malformed request: %s", c->ci.peer, fg_http_reason(status));
    if (c->state == CS_EXCHANGE) {
        fg_ex_client_error(&c->ex, status); /* a body: the exchange answers or aborts */
        return;
    }
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
    fg_ex_respond_status(&c->ex, status, reason, msg);
}

/* ---- input ---------------------------------------------------------------- */

static void pause_reading(struct fg_conn *c)
{
    c->throttled = 1;
    read_on(c, 0);
}

static void chunk_data(void *arg, const char *p, size_t n)
{
    struct fg_conn *c = arg;
    if (fg_ex_body(&c->ex, p, n))
        c->throttled = 1; /* after this feed: read_on(c, 0) */
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
    if (res == FG_CHUNKED_DONE)
        fg_ex_body_end(&c->ex); /* a pipelined request waits until this one is answered */
    return 0;
}

/*
 * Before the first request: HTTP/2 when TLS negotiated h2, or when a plaintext
 * listener with `http2: true` sees the client preface. 1: HTTP/2 from here on;
 * 0: HTTP/1.1; -1: not known yet (a preface prefix) or failed (closed).
 */
static int start_h2(struct fg_conn *c, struct evbuffer *in)
{
    int h2 = 0;
    c->proto_known = 1;
    if (c->ci.tls) {
        const unsigned char *alpn = NULL;
        unsigned int alen = 0;
        SSL_get0_alpn_selected(bufferevent_openssl_get_ssl(c->bev), &alpn, &alen);
        h2 = alen == 2 && memcmp(alpn, "h2", 2) == 0;
    } else if (c->h2_ok) {
        size_t n = evbuffer_get_length(in);
        if (n > 24)
            n = 24;
        h2 = fg_h2_is_preface((const char *)evbuffer_pullup(in, (ssize_t)n), n);
        if (h2 < 0) {
            c->proto_known = 0; /* wait for the rest of the preface */
            return -1;
        }
    }
    if (!h2)
        return 0;
    c->h2 = fg_h2_new(c);
    if (c->h2 == NULL) {
        fg_conn_close(c);
        return -1;
    }
    c->ci.h2 = 1;
    c->state = CS_EXCHANGE;
    timer_clear(c);
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    return 1;
}

static void process_input(struct fg_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (!c->proto_known && !c->dead && evbuffer_get_length(in) > 0 && start_h2(c, in) < 0)
        return;
    if (c->h2) {
        int rc;
        if (c->state == CS_CLOSING)
            evbuffer_drain(in, evbuffer_get_length(in));
        else if (!c->dead && (rc = fg_h2_input(c->h2, in)) < 0) {
            /* a GOAWAY was written: the client may still be sending, let it read that; a
             * peer that does not speak HTTP/2 (or floods) got none and goes now */
            c->linger = rc == -1;
            start_closing(c);
        }
        return;
    }
    while (!c->dead) {
        if (c->state == CS_TUNNEL) {
            if (!c->throttled && fg_ex_tunnel_data(&c->ex, in))
                pause_reading(c);
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
            if (c->ex.req.t_start_us == 0) {
                c->ex.req.t_start_us = fg_now_us();
                timer_set(c, limits(c)->header_timeout_ms); /* idle -> reading a head */
            }
            if (read_head(c, in) <= 0)
                return;
            c->state = CS_EXCHANGE;
            timer_clear(c);
            __atomic_add_fetch(&fg_state.requests, 1, __ATOMIC_RELAXED);
            fg_ex_dispatch(&c->ex);
            continue;
        }
        if (!c->body_open || c->ex.req.body_done)
            return; /* routing or authenticating, or a pipelined request waiting its turn */
        int full;
        if (c->ex.req.f.chunked) {
            size_t n = evbuffer_get_contiguous_space(in), used;
            if (n > FEED_MAX)
                n = FEED_MAX;
            int stop = feed_chunked(c, (const char *)evbuffer_pullup(in, (ssize_t)n), n, &used);
            if (!c->dead)
                evbuffer_drain(in, used);
            if (stop)
                return;
            full = c->throttled;
        } else {
            full = read_cl_body(c, in);
        }
        if (c->dead || c->state != CS_EXCHANGE || c->ex.req.body_done)
            return; /* answered, or a pipelined request waits until this one is */
        if (full) {
            pause_reading(c); /* the shard reads slower than the client sends */
            return;
        }
    }
}

static void fg_conn_unthrottle(struct fg_conn *c)
{
    if (!c->throttled || c->dead)
        return;
    c->throttled = 0;
    read_on(c, 1);
    fg_conn_kick(c);
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
    else if (c->h2)
        fg_h2_drained(c->h2);
    else
        fg_ex_client_drained(&c->ex);
}

/* HTTP/2: frames out, the idle timer while no stream is open, the close once it is over. */
static void flush_h2(struct fg_conn *c)
{
    fg_h2_flush_upstreams(c->h2);
    if (c->dead || c->state == CS_CLOSING)
        return;
    if (fg_h2_send(c->h2) < 0 || fg_h2_finished(c->h2)) {
        c->linger = 1; /* a GOAWAY went out: read (and drop) until the client closes */
        start_closing(c);
        return;
    }
    if (fg_h2_active(c->h2) == 0)
        timer_set(c, limits(c)->idle_timeout_ms);
    else
        timer_clear(c);
}

void fg_conn_flush(struct fg_conn *c)
{
    for (int round = 0; round < 4 && !c->dead; round++) {
        int again = 0;
        if (c->h2)
            flush_h2(c);
        else
            fg_ex_flush_upstream(&c->ex);
        if (c->dead)
            break;
        if (c->eager && evbuffer_get_length(bufferevent_get_output(c->bev)) > 0 &&
            fg_io_flush(c->bev) &&
            (c->state == CS_CLOSING || c->h2 || fg_ex_upstream_throttled(&c->ex))) {
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
    } else if (c->state != CS_CLOSING) {
        drained(c); /* below the low watermark */
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
        if (c->state == CS_TUNNEL) {
            /* Pass on what arrived, then close both sides once it is written. */
            fg_ex_tunnel_data(&c->ex, bufferevent_get_input(c->bev));
            fg_ex_client_tunnel_closed(&c->ex);
        }
        if ((what & BEV_EVENT_ERROR) && c->ci.tls)
            fg_log(FG_LOG_DEBUG, "client %s: TLS: %s", c->ci.peer, fg_tls_bev_error(bev));
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
    if (c->h2 && c->state != CS_CLOSING && fg_h2_active(c->h2) == 0) {
        /* idle: say so with GOAWAY(NO_ERROR), then close once it is written */
        fg_h2_goaway(c->h2);
        fg_h2_send(c->h2);
        c->linger = 1;
        start_closing(c);
    } else if (c->state == CS_HEAD || c->state == CS_CLOSING) {
        fg_conn_close(c);
    }
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
    c->ci.tls = ctx != NULL;
    c->eager = ctx == NULL;
    c->h2_ok = w->snap->cfg->listeners[la->index].http2;
    c->listener = la->index;
    c->ci.port = la->port;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, c->ci.peer, sizeof(c->ci.peer));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, c->ci.peer,
                  sizeof(c->ci.peer));
    else
        memcpy(c->ci.peer, "unknown", 8);
    local_address(fd, c->ci.local, sizeof(c->ci.local));
    fg_ex_init(&c->ex, &h1_ops, c, &c->ci, w, &c->memo);
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
        if (!req_in_flight(c)) {
            fg_conn_close(c);
        } else if (c->h2) {
            fg_h2_goaway(c->h2); /* no new streams; close once the open ones finish */
            fg_conn_flush(c);
        }
    }
    if (w->nconns == 0)
        event_base_loopexit(w->base, NULL);
}

void fg_conn_settings_changed(struct fg_worker *w, const struct fg_config *old,
                              const struct fg_config *cur)
{
    if (old == NULL || old->nlisteners != cur->nlisteners)
        return;
    const struct fg_limits *a = &old->limits, *b = &cur->limits;
    int limits = a->max_concurrent_streams != b->max_concurrent_streams ||
                 a->max_header_bytes != b->max_header_bytes;
    struct fg_conn *c, *next;
    for (c = TAILQ_FIRST(&w->conns); c; c = next) {
        next = TAILQ_NEXT(c, link);
        if (c->h2 == NULL || c->dead || c->listener >= cur->nlisteners)
            continue;
        if (limits || old->listeners[c->listener].http2 != cur->listeners[c->listener].http2) {
            /* SETTINGS were announced from the old values: the client reconnects for the new.
             * Written from the loop's top level: this may run inside any connection's callback. */
            fg_h2_goaway(c->h2);
            fg_conn_kick(c);
        }
    }
}

void fg_conn_close_all(struct fg_worker *w)
{
    struct fg_conn *c;
    while ((c = TAILQ_FIRST(&w->conns)) != NULL)
        fg_conn_close(c);
}
