/*
 * upstream.c - the shard side: a keep-alive pool per worker and shard,
 * non-blocking connect (async DNS, TLS with SNI and hostname checks), the
 * response parser, and the relay of response heads and bodies to the client
 * with backpressure. Watches and other long responses stream as they arrive;
 * nothing here puts a deadline on a response.
 */
#include "upstream.h"

#include "exchange.h"
#include "h2up.h"
#include "metrics.h"
#include "sanitize.h"
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

#define FEED_MAX (64 * 1024)

/* Serving a request: the limits of the snapshot it pinned (as conn.c reads them); idle in
 * the pool: those of the snapshot that made the connection. */
static const struct fg_limits *up_limits(const struct fg_upconn *u)
{
    if (u->ex && u->ex->req.snap)
        return &u->ex->req.snap->cfg->limits;
    return &u->snap->cfg->limits;
}

/* Reads on or off: our reader for plaintext, the bufferevent for TLS. */
static void up_read_on(struct fg_upconn *u, int on)
{
    if (u->eager)
        fg_reader_set(&u->rd, on);
    else if (on)
        bufferevent_enable(u->bev, EV_READ);
    else
        bufferevent_disable(u->bev, EV_READ);
}

/* ---- response parser callbacks -------------------------------------------- */

static int count(struct fg_upconn *u, size_t len)
{
    u->msg.bytes += (uint32_t)len;
    return u->msg.bytes > 4 * up_limits(u)->max_header_bytes ? -1 : 0;
}

static int on_message_begin(http_parser *p)
{
    struct fg_upconn *u = p->data;
    fg_msg_reset(&u->msg);
    u->got_bytes = 1;
    return 0;
}

static int on_status(http_parser *p, const char *at, size_t len)
{
    struct fg_upconn *u = p->data;
    if (count(u, len) != 0)
        return -1;
    fg_buf_add(&u->msg.raw, at, len);
    u->msg.first_len += (uint32_t)len;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct fg_upconn *u = p->data;
    struct fg_msg *m = &u->msg;
    if (u->head_done)
        return 0; /* trailers */
    if (count(u, len + 4) != 0)
        return -1;
    if (m->nhdrs == 0 || m->in_value) {
        fg_grow(&m->hdrs, &m->hcap, m->nhdrs + 1, sizeof(struct fg_hdr));
        struct fg_hdr *h = &m->hdrs[m->nhdrs++];
        memset(h, 0, sizeof(*h));
        h->name = h->value = (uint32_t)m->raw.len;
        m->in_value = 0;
    }
    fg_buf_add(&m->raw, at, len);
    m->hdrs[m->nhdrs - 1].name_len += (uint32_t)len;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct fg_upconn *u = p->data;
    struct fg_msg *m = &u->msg;
    if (u->head_done)
        return 0;
    if (count(u, len) != 0)
        return -1;
    struct fg_hdr *h = &m->hdrs[m->nhdrs - 1];
    if (!m->in_value) {
        h->value = (uint32_t)m->raw.len;
        h->value_len = 0;
        m->in_value = 1;
    }
    fg_buf_add(&m->raw, at, len);
    h->value_len += (uint32_t)len;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct fg_upconn *u = p->data;
    struct fg_exchange *ex = u->ex;
    int status = p->status_code;
    if (ex == NULL)
        return -1;
    if (status >= 100 && status < 200 && status != 101)
        return 0; /* interim (100, 103): not forwarded; the final response follows */
    struct fg_msg *m = &u->msg;
    struct fg_resp_head h = {.status = status, .msg = m};
    fg_sanitize_response(m, &h.upgrade_idx);
    if (m->first_len > 0) {
        h.reason = m->raw.data;
        h.reason_len = m->first_len;
    }
    h.body = !(ex->req.line.method == HTTP_HEAD || status == 204 || status == 304 || status == 101);
    h.length_known = !(p->flags & F_CHUNKED) && p->content_length != ULLONG_MAX;
    if (fg_ex_up_head(ex, &h) != 0)
        return -1;
    u->head_done = 1;
    if (status == 101)
        u->upgraded = 1;
    return h.body ? 0 : 1;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct fg_upconn *u = p->data;
    if (u->ex == NULL)
        return -1;
    if (fg_ex_up_body(u->ex, at, len))
        u->client_full = 1;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct fg_upconn *u = p->data;
    if (!u->head_done) {
        /* The end of an interim response: parse the next one. */
        fg_msg_reset(&u->msg);
        return 0;
    }
    u->msg_done = 1;
    http_parser_pause(p, 1);
    return 0;
}

/* Read-only and shared by every worker: initialised at compile time, never written. */
static const http_parser_settings resp_settings = {
    .on_message_begin = on_message_begin,
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- lifecycle ------------------------------------------------------------ */

static void up_free(struct fg_upconn *u)
{
    if (u->counted)
        fg_metrics_upconn(u->w->metrics, u->mlabel, 0, -1);
    fg_buf_free(&u->msg.raw);
    free(u->msg.hdrs);
    free(u);
}

static void up_hold(struct fg_upconn *u)
{
    u->holds++;
}

static void up_release(struct fg_upconn *u)
{
    if (--u->holds == 0 && u->dead)
        up_free(u);
}

/* An HTTP/2 stream (h2up.c) rather than a connection of its own. */
static int is_stream(const struct fg_upconn *u)
{
    return u->bev == NULL;
}

void fg_up_close(struct fg_upconn *u)
{
    if (is_stream(u)) {
        fg_h2up_release(u, 0);
        return;
    }
    if (u->dead)
        return;
    u->dead = 1;
    if (u->state == UP_IDLE && u->snap == u->w->snap && u->shard < u->w->npools) {
        struct fg_pool *pool = &u->w->pools[u->shard];
        TAILQ_REMOVE(&pool->idle, u, link);
        pool->nidle--;
    }
    if (u->eager)
        fg_reader_free(&u->rd);
    bufferevent_free(u->bev);
    fg_snapshot_unref(u->snap);
    if (u->holds == 0)
        up_free(u);
}

void fg_up_detach(struct fg_upconn *u)
{
    u->ex = NULL;
}

void fg_up_release(struct fg_upconn *u, int reusable)
{
    struct fg_worker *w = u->w;
    if (is_stream(u)) {
        fg_h2up_release(u, reusable);
        return;
    }
    reusable = reusable && u->msg_done && !u->upgraded && http_should_keep_alive(&u->parser) &&
               u->snap == w->snap && !w->draining && u->shard < w->npools &&
               evbuffer_get_length(bufferevent_get_input(u->bev)) == 0;
    u->ex = NULL;
    if (!reusable) {
        fg_up_close(u);
        return;
    }
    struct fg_pool *pool = &w->pools[u->shard];
    u->state = UP_IDLE;
    http_parser_init(&u->parser, HTTP_RESPONSE);
    u->parser.data = u;
    fg_msg_reset(&u->msg);
    u->got_bytes = u->head_done = u->msg_done = u->throttled = u->client_full = 0;
    u->reused = 1;
    bufferevent_setwatermark(u->bev, EV_WRITE, 0, 0);
    if (u->eager) {
        fg_reader_timeout(&u->rd, up_limits(u)->upstream_idle_timeout_ms);
    } else {
        uint64_t ms = up_limits(u)->upstream_idle_timeout_ms;
        struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
        bufferevent_set_timeouts(u->bev, &tv, NULL);
    }
    up_read_on(u, 1);
    TAILQ_INSERT_HEAD(&pool->idle, u, link);
    if (++pool->nidle > up_limits(u)->upstream_max_idle)
        fg_up_close(TAILQ_LAST(&pool->idle, fg_upconn_list));
}

void fg_pools_reset(struct fg_worker *w, size_t nshards)
{
    fg_pools_free(w);
    w->pools = fg_calloc(nshards ? nshards : 1, sizeof(struct fg_pool));
    w->npools = nshards;
    for (size_t i = 0; i < nshards; i++)
        TAILQ_INIT(&w->pools[i].idle);
}

void fg_pools_free(struct fg_worker *w)
{
    for (size_t i = 0; i < w->npools; i++) {
        struct fg_pool *pool = &w->pools[i];
        struct fg_upconn *u;
        while ((u = TAILQ_FIRST(&pool->idle)) != NULL)
            fg_up_close(u);
    }
    free(w->pools);
    w->pools = NULL;
    w->npools = 0;
}

/* ---- writing -------------------------------------------------------------- */

int fg_up_send_head(struct fg_upconn *u, const char *head, size_t len)
{
    if (is_stream(u))
        return fg_h2up_send_head(u, head, len);
    evbuffer_add(bufferevent_get_output(u->bev), head, len);
    return 0;
}

void fg_up_write(struct fg_upconn *u, const void *p, size_t n)
{
    if (is_stream(u))
        fg_h2up_write(u, p, n);
    else
        evbuffer_add(bufferevent_get_output(u->bev), p, n);
}

void fg_up_body_end(struct fg_upconn *u, int chunked)
{
    if (is_stream(u))
        fg_h2up_body_end(u);
    else if (chunked)
        evbuffer_add(bufferevent_get_output(u->bev), "0\r\n\r\n", 5);
}

void fg_up_write_chunk(struct fg_upconn *u, const void *p, size_t n)
{
    if (is_stream(u)) {
        fg_h2up_write(u, p, n); /* HTTP/2 frames the body itself */
        return;
    }
    struct evbuffer *out = bufferevent_get_output(u->bev);
    fg_chunk_head(out, n);
    evbuffer_add(out, p, n);
    evbuffer_add(out, "\r\n", 2);
}

void fg_up_write_buffer(struct fg_upconn *u, struct evbuffer *src, size_t n)
{
    if (is_stream(u)) {
        fg_h2up_write_buffer(u, src, n);
        return;
    }
    evbuffer_remove_buffer(src, bufferevent_get_output(u->bev), n);
}

int fg_up_full(struct fg_upconn *u)
{
    if (is_stream(u))
        return fg_h2up_full(u);
    size_t max = up_limits(u)->max_buffer_bytes;
    if (evbuffer_get_length(bufferevent_get_output(u->bev)) < max)
        return 0;
    /* write_cb runs once the shard took half of it: the exchange resumes its client */
    bufferevent_setwatermark(u->bev, EV_WRITE, max / 2, 0);
    return 1;
}

int fg_up_flush(struct fg_upconn *u)
{
    if (is_stream(u)) {
        fg_h2up_flush(u);
        return 0; /* a stream's body drains as the shard's window opens: fg_ex_up_drained */
    }
    return u->eager && !u->dead && u->state != UP_CONNECTING &&
           evbuffer_get_length(bufferevent_get_output(u->bev)) > 0 && fg_io_flush(u->bev);
}

int fg_up_throttled(const struct fg_upconn *u)
{
    return u->throttled;
}

/* ---- relaying ------------------------------------------------------------- */

/* Closes u and tells its exchange (if any) why. */
static void fail(struct fg_upconn *u, const char *why)
{
    struct fg_exchange *ex = u->ex;
    u->ex = NULL;
    fg_up_close(u);
    if (ex)
        fg_ex_up_failed(ex, why);
}

/* The client reads slower than the shard sends: stop reading the shard. */
static void throttle(struct fg_upconn *u)
{
    u->client_full = 0;
    u->throttled = 1;
    up_read_on(u, 0);
}

static void relay_tunnel(struct fg_upconn *u)
{
    if (u->ex && fg_ex_up_tunnel_data(u->ex, bufferevent_get_input(u->bev)))
        throttle(u);
}

static void process_input(struct fg_upconn *u)
{
    struct evbuffer *in = bufferevent_get_input(u->bev);
    struct fg_exchange *ex = u->ex;
    if (u->state == UP_IDLE || ex == NULL) {
        fg_up_close(u); /* an idle shard connection must not talk */
        return;
    }
    if (u->upgraded && ex->state == EX_TUNNEL) {
        if (!u->throttled)
            relay_tunnel(u);
        return;
    }
    while (!u->dead && !u->throttled && !u->msg_done && evbuffer_get_length(in) > 0) {
        size_t n = evbuffer_get_contiguous_space(in);
        if (n > FEED_MAX)
            n = FEED_MAX;
        const char *data = (const char *)evbuffer_pullup(in, (ssize_t)n);
        size_t used = http_parser_execute(&u->parser, &resp_settings, data, n);
        enum http_errno e = HTTP_PARSER_ERRNO(&u->parser);
        evbuffer_drain(in, used);
        if (e != HPE_OK && e != HPE_PAUSED) {
            fail(u, "malformed response");
            return;
        }
        if (u->upgraded) {
            /* 101: from here on both connections carry raw bytes. */
            fg_ex_up_upgraded(ex);
            if (u->ex)
                relay_tunnel(u);
            return;
        }
        if (u->client_full)
            throttle(u);
    }
    if (u->msg_done && !u->dead && u->ex)
        fg_ex_up_end(ex);
}

void fg_up_unthrottle(struct fg_upconn *u)
{
    if (is_stream(u)) {
        fg_h2up_unthrottle(u);
        return;
    }
    if (!u->throttled || u->dead)
        return;
    u->throttled = 0;
    up_read_on(u, 1);
    up_hold(u);
    process_input(u);
    up_release(u);
}

void fg_up_tunnel_closed(struct fg_upconn *u)
{
    if (is_stream(u)) {
        fg_h2up_release(u, 0); /* upgrades never ride HTTP/2; nothing to flush */
        return;
    }
    u->ex = NULL;
    if (evbuffer_get_length(bufferevent_get_output(u->bev)) == 0) {
        fg_up_close(u);
        return;
    }
    up_read_on(u, 0);
    bufferevent_setwatermark(u->bev, EV_WRITE, 0, 0);
    bufferevent_enable(u->bev, EV_WRITE);
}

/* ---- callbacks ------------------------------------------------------------ */

/* The end of a callback: the client writes out what it was given (and our output with it). */
static void flush_out(struct fg_upconn *u, struct fg_exchange *ex)
{
    if (ex && !ex->gone)
        fg_ex_up_flush(ex);
    else if (!u->dead)
        fg_up_flush(u);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct fg_upconn *u = arg;
    struct fg_exchange *ex = u->ex;
    if (ex)
        fg_ex_hold(ex);
    up_hold(u);
    process_input(u);
    flush_out(u, ex);
    up_release(u);
    if (ex)
        fg_ex_release(ex);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct fg_upconn *u = arg;
    struct fg_exchange *ex = u->ex;
    if (ex)
        fg_ex_hold(ex);
    up_hold(u);
    if (u->eager && u->state != UP_CONNECTING &&
        evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_disable(bev, EV_WRITE); /* until the socket is full again */
    if (ex == NULL && u->state == UP_ACTIVE) {
        /* A tunnel's client left; we were flushing its last bytes. */
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            fg_up_close(u);
    } else if (ex) {
        fg_ex_up_drained(ex);
    }
    up_release(u);
    if (ex)
        fg_ex_release(ex);
}

static void up_reader_data(void *arg);
static void up_reader_closed(void *arg, short what);

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct fg_upconn *u = arg;
    struct fg_exchange *ex = u->ex;
    if (ex)
        fg_ex_hold(ex);
    up_hold(u);
    if (what & BEV_EVENT_CONNECTED) {
        bufferevent_set_timeouts(bev, NULL, NULL);
        u->state = UP_ACTIVE;
        if (u->eager) {
            bufferevent_disable(bev, EV_READ | EV_WRITE); /* we read; writes arm as needed */
            fg_reader_init(&u->rd, u->w->base, bev, up_reader_data, up_reader_closed, u,
                           (size_t)4 << 20);
            fg_reader_set(&u->rd, 1);
        }
        if (ex)
            fg_ex_up_ready(ex);
        else
            fg_up_close(u);
        goto out;
    }
    if (u->state == UP_IDLE || ex == NULL) {
        fg_up_close(u);
        goto out;
    }
    if (u->state == UP_CONNECTING) {
        fail(u, fg_up_connect_error(bev, what, u->snap->shard_ctx[u->shard] != NULL));
        goto out;
    }
    if (u->upgraded && ex->state == EX_TUNNEL) {
        relay_tunnel(u);
        u->ex = NULL;
        fg_up_close(u);
        fg_ex_up_tunnel_end(ex); /* closes the client once our last bytes are written */
        goto out;
    }
    if ((what & BEV_EVENT_EOF) && u->head_done && !u->msg_done) {
        /* A body delimited by the close of the connection ends here. */
        http_parser_execute(&u->parser, &resp_settings, NULL, 0);
        if (u->msg_done) {
            fg_ex_up_end(ex);
            goto out;
        }
    }
    if (!u->got_bytes && u->reused) {
        /* A kept-alive connection the shard had already closed: the exchange may retry. */
        u->ex = NULL;
        fg_up_close(u);
        if (!fg_ex_up_retry(ex, 0))
            fg_ex_up_failed(ex, (what & BEV_EVENT_EOF)
                                    ? "connection closed before the response completed"
                                    : "connection error");
        goto out;
    }
    fail(u, (what & BEV_EVENT_EOF) ? "connection closed before the response completed"
                                   : "connection error");
out:
    flush_out(u, ex);
    up_release(u);
    if (ex)
        fg_ex_release(ex);
}

static void up_reader_data(void *arg)
{
    struct fg_upconn *u = arg;
    up_hold(u);
    read_cb(u->bev, u);
    if (!u->dead && u->rd.want)
        fg_reader_set(&u->rd, 1);
    up_release(u);
}

static void up_reader_closed(void *arg, short what)
{
    struct fg_upconn *u = arg;
    event_cb(u->bev, what, u);
}

/* ---- acquire -------------------------------------------------------------- */

const char *fg_up_connect_error(struct bufferevent *bev, short what, int tls)
{
    const char *why = (what & BEV_EVENT_TIMEOUT) ? "connect timed out" : "connect failed";
    if (what & BEV_EVENT_ERROR) {
        int dns = bufferevent_socket_get_dns_error(bev), err = EVUTIL_SOCKET_ERROR();
        if (dns)
            why = evutil_gai_strerror(dns);
        else if (err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH)
            why = evutil_socket_error_to_string(err);
        else if (tls)
            why = fg_tls_bev_error(bev); /* names a refused certificate */
        else if (err)
            why = evutil_socket_error_to_string(err);
    }
    return why;
}

static int is_ip_literal(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

struct bufferevent *fg_up_new_bev(struct fg_worker *w, struct fg_snapshot *snap, uint32_t shard,
                                  const unsigned char *alpn, unsigned alpn_len)
{
    const struct fg_shard_cfg *s = &snap->cfg->shards[shard];
    SSL_CTX *ctx = snap->shard_ctx[shard];
    int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
    if (ctx == NULL)
        return bufferevent_socket_new(w->base, -1, opts);
    SSL *ssl = SSL_new(ctx);
    const char *name = s->server_name ? s->server_name : s->host;
    if (is_ip_literal(name)) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name);
    } else {
        SSL_set_tlsext_host_name(ssl, name);
        SSL_set1_host(ssl, name);
    }
    if (alpn)
        SSL_set_alpn_protos(ssl, alpn, alpn_len);
    struct bufferevent *bev =
        bufferevent_openssl_socket_new(w->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, opts);
    if (bev)
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

/* HTTP/2 for this request: the shard's protocol says so, and it is no upgrade (those are
 * HTTP/1.1, as kubectl sends them). */
static int wants_h2(const struct fg_exchange *ex, uint32_t shard)
{
    const struct fg_req *r = &ex->req;
    const struct fg_shard_cfg *s = &r->snap->cfg->shards[shard];
    const struct fg_worker *w = ex->w;
    if (r->f.upgrade || r->up_h1)
        return 0;
    if (s->protocol == FG_PROTO_H2)
        return 1;
    return s->protocol == FG_PROTO_AUTO && s->https &&
           !(r->snap == w->snap && shard < w->npools && w->pools[shard].auto_h1);
}

void fg_up_acquire(struct fg_exchange *ex, uint32_t shard)
{
    struct fg_worker *w = ex->w;
    struct fg_snapshot *snap = ex->req.snap;
    if (wants_h2(ex, shard)) {
        fg_h2up_acquire(ex, shard);
        return;
    }
    if (snap == w->snap && shard < w->npools && !ex->req.retried) {
        struct fg_pool *pool = &w->pools[shard];
        struct fg_upconn *u = TAILQ_FIRST(&pool->idle);
        if (u) {
            TAILQ_REMOVE(&pool->idle, u, link);
            pool->nidle--;
            u->state = UP_ACTIVE;
            u->ex = ex;
            ex->up = u;
            if (u->eager) {
                fg_reader_timeout(&u->rd, 0);
                fg_reader_set(&u->rd, 1);
            } else {
                bufferevent_set_timeouts(u->bev, NULL, NULL);
            }
            fg_ex_up_ready(ex);
            return;
        }
    }
    const struct fg_shard_cfg *s = &snap->cfg->shards[shard];
    struct bufferevent *bev = fg_up_new_bev(w, snap, shard, NULL, 0);
    if (bev == NULL) {
        fg_ex_up_failed(ex, "cannot create a connection");
        return;
    }
    struct fg_upconn *u = fg_calloc(1, sizeof(*u));
    u->w = w;
    u->bev = bev;
    u->shard = shard;
    u->mlabel = snap->shard_label[shard];
    u->counted = 1;
    fg_metrics_upconn(w->metrics, u->mlabel, 0, 1);
    u->snap = fg_snapshot_ref(snap);
    u->state = UP_CONNECTING;
    u->eager = snap->shard_ctx[shard] == NULL;
    u->ex = ex;
    ex->up = u;
    http_parser_init(&u->parser, HTTP_RESPONSE);
    u->parser.data = u;
    bufferevent_setcb(bev, read_cb, write_cb, event_cb, u);
    uint64_t ms = snap->cfg->limits.connect_timeout_ms;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    bufferevent_set_timeouts(bev, &tv, &tv);
    /* plaintext: EV_WRITE alone sees the connect finish; our reader starts after it */
    bufferevent_enable(bev, u->eager ? EV_WRITE : EV_READ | EV_WRITE);
    if (bufferevent_socket_connect_hostname(bev, w->dns, AF_UNSPEC, s->host, s->port) != 0) {
        ex->up = NULL;
        fail(u, "connect failed");
    }
}
