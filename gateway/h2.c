/*
 * h2.c - HTTP/2 on a client connection: an nghttp2 server session fed from
 * the connection's input and written into its output, every stream an
 * exchange. See h2.h for the limits and what they defend against.
 */
#include "h2.h"

#include "accesslog.h"
#include "conn.h"
#include "exchange.h"
#include "http.h"
#include "metrics.h"
#include "sanitize.h"

#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STREAM_WINDOW (256 * 1024)
#define CONN_WINDOW   (4 * 1024 * 1024)

struct h2_stream {
    struct fg_exchange ex;
    struct fg_h2 *s;
    int32_t id;
    TAILQ_ENTRY(h2_stream) link;
    struct evbuffer *in;  /* request body not yet handed to the exchange */
    struct evbuffer *out; /* response body not yet framed */
    struct fg_buf path, authority;
    int method;       /* enum http_method, or -1 */
    size_t hdr_bytes; /* the header list as RFC 9113 6.5.2 counts it */
    int pseudo_done;  /* a regular header came: the target and host are in msg */
    int too_big;      /* over maxHeaderBytes: answered 431 */
    int bad;          /* malformed: answered 400 */
    int in_ended;     /* END_STREAM from the client */
    int body_open;    /* the exchange asked for the body */
    int throttled;    /* the shard is full: hold the body (and the window) */
    int out_end;      /* the response body is complete in out */
    int deferred;     /* nghttp2 waits for out to fill */
    int notify_drain; /* the shard is paused on out */
    int dispatched;   /* the exchange runs */
    int finished;     /* the exchange finished or went */
    int closed;       /* nghttp2 closed the stream */
    int holds;
};

struct fg_h2 {
    struct fg_conn *c;
    nghttp2_session *ng;
    TAILQ_HEAD(, h2_stream) streams;
    size_t nactive; /* dispatched or being received, not finished */
    int goaway;
    int closed;
    int pending; /* some stream has body to feed or wants its body */
};

static const struct fg_client_ops h2_ops;

static struct h2_stream *stream_of(struct fg_exchange *ex)
{
    return ex->client;
}

static const struct fg_limits *lim(const struct fg_h2 *s)
{
    return &s->c->w->snap->cfg->limits;
}

int fg_h2_is_preface(const char *buf, size_t len)
{
    static const char pri[] = NGHTTP2_CLIENT_MAGIC;
    size_t n = len < sizeof(pri) - 1 ? len : sizeof(pri) - 1;
    if (memcmp(buf, pri, n) != 0)
        return 0;
    return len >= sizeof(pri) - 1 ? 1 : -1;
}

/* ---- streams ------------------------------------------------------------------ */

static void maybe_free(struct h2_stream *st)
{
    if (st->holds > 0 || !st->closed || !st->finished)
        return;
    TAILQ_REMOVE(&st->s->streams, st, link);
    fg_metrics_h2_stream(st->ex.w->metrics, -1);
    evbuffer_free(st->in);
    evbuffer_free(st->out);
    fg_buf_free(&st->path);
    fg_buf_free(&st->authority);
    fg_ex_free(&st->ex);
    free(st);
}

static void finish_stream(struct h2_stream *st)
{
    if (st->finished)
        return;
    st->finished = 1;
    st->s->nactive--;
    size_t n = evbuffer_get_length(st->in);
    if (n) {
        evbuffer_drain(st->in, n);
        if (!st->closed && !st->s->closed)
            nghttp2_session_consume(st->s->ng, st->id, n);
    }
}

/* The client reset the stream, or the connection went: the exchange goes. */
static void stream_gone(struct h2_stream *st)
{
    if (st->finished)
        return;
    if (st->dispatched)
        fg_ex_client_gone(&st->ex);
    finish_stream(st);
}

static void resume_data(struct h2_stream *st)
{
    if (st->deferred && !st->closed && !st->s->closed) {
        st->deferred = 0;
        nghttp2_session_resume_data(st->s->ng, st->id);
    }
}

/* ---- client ops ------------------------------------------------------------- */

static ssize_t read_body_cb(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *src, void *arg)
{
    (void)ng;
    (void)id;
    struct fg_h2 *s = arg;
    struct h2_stream *st = src->ptr;
    size_t n = evbuffer_get_length(st->out);
    if (n == 0 && !st->out_end) {
        st->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    if (n > length)
        n = length;
    evbuffer_remove(st->out, buf, n);
    if (st->out_end && evbuffer_get_length(st->out) == 0)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (st->notify_drain && evbuffer_get_length(st->out) < lim(s)->max_buffer_bytes / 2)
        s->pending = 1; /* fg_h2_send lets the shard go on, outside this callback */
    return (ssize_t)n;
}

static void nv_add(nghttp2_nv *nv, const char *name, size_t nlen, const char *value, size_t vlen)
{
    nv->name = (uint8_t *)name;
    nv->namelen = nlen;
    nv->value = (uint8_t *)value;
    nv->valuelen = vlen;
    nv->flags = NGHTTP2_NV_FLAG_NONE;
}

static void submit(struct h2_stream *st, nghttp2_nv *nv, size_t n, int body)
{
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = read_body_cb};
    if (!st->closed && !st->s->closed)
        nghttp2_submit_response(st->s->ng, st->id, nv, n, body ? &prd : NULL);
}

static void h2_respond(struct fg_exchange *ex, int status, const char *content_type,
                       const char *body, size_t len)
{
    struct h2_stream *st = stream_of(ex);
    char code[4], clen[24];
    snprintf(code, sizeof(code), "%03d", status);
    int cl = snprintf(clen, sizeof(clen), "%zu", len);
    nghttp2_nv nv[6];
    nv_add(&nv[0], ":status", 7, code, 3);
    nv_add(&nv[1], "content-type", 12, content_type, strlen(content_type));
    nv_add(&nv[2], "content-length", 14, clen, (size_t)cl);
    nv_add(&nv[3], "cache-control", 13, "no-store", 8);
    nv_add(&nv[4], "pragma", 6, "no-cache", 8);
    nv_add(&nv[5], "x-content-type-options", 22, "nosniff", 7);
    int with_body = len > 0 && ex->req.line.method != HTTP_HEAD;
    if (with_body)
        evbuffer_add(st->out, body, len);
    st->out_end = 1;
    submit(st, nv, 6, with_body);
}

/* Response headers a shard may send that mean nothing (or harm) in HTTP/2. */
static int connection_specific(const struct fg_hdr *h)
{
    switch (h->kind) {
    case FG_HDR_CONNECTION:
    case FG_HDR_HOP:
    case FG_HDR_TRANSFER_ENCODING:
    case FG_HDR_UPGRADE:
        return 1;
    default:
        return 0;
    }
}

static void h2_head(struct fg_exchange *ex, const struct fg_resp_head *h)
{
    struct h2_stream *st = stream_of(ex);
    const struct fg_msg *m = h->msg;
    char code[4];
    snprintf(code, sizeof(code), "%03d", h->status);
    nghttp2_nv *nv = fg_calloc(m->nhdrs + 1, sizeof(*nv));
    /* names are lowercased into a copy: HTTP/2 field names must be */
    struct fg_buf names = {0};
    fg_buf_add(&names, m->raw.data, m->raw.len);
    size_t n = 0;
    nv_add(&nv[n++], ":status", 7, code, 3);
    for (size_t i = 0; i < m->nhdrs; i++) {
        const struct fg_hdr *hd = &m->hdrs[i];
        if (hd->drop || connection_specific(hd))
            continue;
        if (hd->kind == FG_HDR_CONTENT_LENGTH &&
            (h->status == 204 || (h->body && !h->length_known)))
            continue;
        char *name = names.data + hd->name;
        for (uint32_t k = 0; k < hd->name_len; k++)
            if (name[k] >= 'A' && name[k] <= 'Z')
                name[k] = (char)(name[k] + 32);
        nv_add(&nv[n++], name, hd->name_len, m->raw.data + hd->value, hd->value_len);
    }
    if (!h->body)
        st->out_end = 1;
    submit(st, nv, n, h->body); /* nghttp2 copies the header block */
    free(nv);
    fg_buf_free(&names);
}

static int h2_body(struct fg_exchange *ex, const char *p, size_t n)
{
    struct h2_stream *st = stream_of(ex);
    evbuffer_add(st->out, p, n);
    resume_data(st);
    if (evbuffer_get_length(st->out) < lim(st->s)->max_buffer_bytes)
        return 0;
    st->notify_drain = 1;
    return 1;
}

static void h2_end(struct fg_exchange *ex)
{
    struct h2_stream *st = stream_of(ex);
    st->out_end = 1;
    resume_data(st);
}

static void h2_read_body(struct fg_exchange *ex)
{
    struct h2_stream *st = stream_of(ex);
    st->body_open = 1;
    st->s->pending = 1;
    fg_conn_kick(st->s->c); /* fed from the loop's top level, not from inside this call */
}

static void h2_resume(struct fg_exchange *ex)
{
    struct h2_stream *st = stream_of(ex);
    st->throttled = 0;
    st->s->pending = 1;
    fg_conn_kick(st->s->c);
}

static void h2_abort(struct fg_exchange *ex)
{
    struct h2_stream *st = stream_of(ex);
    if (!st->closed && !st->s->closed)
        nghttp2_submit_rst_stream(st->s->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    stream_gone(st);
}

/* Upgrades are HTTP/1.1 only: an HTTP/2 request never asks for one (f.upgrade is 0). */
static void h2_tunnel(struct fg_exchange *ex)
{
    h2_abort(ex);
}

static int h2_tunnel_data(struct fg_exchange *ex, struct evbuffer *src)
{
    (void)ex;
    evbuffer_drain(src, evbuffer_get_length(src));
    return 0;
}

static void h2_tunnel_end(struct fg_exchange *ex)
{
    h2_abort(ex);
}

static void h2_finish(struct fg_exchange *ex)
{
    struct h2_stream *st = stream_of(ex);
    st->s->c->requests++;
    finish_stream(st);
}

static void h2_flush(struct fg_exchange *ex)
{
    fg_conn_flush(stream_of(ex)->s->c);
}

static void h2_hold(struct fg_exchange *ex)
{
    struct h2_stream *st = stream_of(ex);
    st->holds++;
    fg_conn_hold(st->s->c);
}

static void h2_release(struct fg_exchange *ex)
{
    struct h2_stream *st = stream_of(ex);
    struct fg_conn *c = st->s->c;
    st->holds--;
    maybe_free(st);
    fg_conn_release(c);
}

static const struct fg_client_ops h2_ops = {
    .respond = h2_respond,
    .head = h2_head,
    .body = h2_body,
    .end = h2_end,
    .read_body = h2_read_body,
    .resume = h2_resume,
    .tunnel = h2_tunnel,
    .tunnel_data = h2_tunnel_data,
    .tunnel_end = h2_tunnel_end,
    .finish = h2_finish,
    .abort = h2_abort,
    .flush = h2_flush,
    .hold = h2_hold,
    .release = h2_release,
};

/* ---- request heads -------------------------------------------------------------- */

static void add_field(struct fg_msg *m, const char *name, size_t nlen, const char *value,
                      size_t vlen)
{
    fg_grow(&m->hdrs, &m->hcap, m->nhdrs + 1, sizeof(struct fg_hdr));
    struct fg_hdr *h = &m->hdrs[m->nhdrs++];
    memset(h, 0, sizeof(*h));
    h->name = (uint32_t)m->raw.len;
    h->name_len = (uint32_t)nlen;
    fg_buf_add(&m->raw, name, nlen);
    h->value = (uint32_t)m->raw.len;
    h->value_len = (uint32_t)vlen;
    fg_buf_add(&m->raw, value, vlen);
}

/* The pseudo-headers are all in (RFC 9113 8.3: they come first): target, then Host. */
static void commit_pseudo(struct h2_stream *st)
{
    struct fg_msg *m = &st->ex.req.msg;
    if (st->pseudo_done)
        return;
    st->pseudo_done = 1;
    fg_buf_add(&m->raw, st->path.data ? st->path.data : "", st->path.len);
    m->first_len = (uint32_t)st->path.len;
    if (st->authority.len)
        add_field(m, "host", 4, st->authority.data, st->authority.len);
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *arg)
{
    struct fg_h2 *s = arg;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct h2_stream *st = fg_calloc(1, sizeof(*st));
    st->s = s;
    st->id = frame->hd.stream_id;
    st->method = -1;
    st->in = evbuffer_new();
    st->out = evbuffer_new();
    fg_ex_init(&st->ex, &h2_ops, st, &s->c->ci, s->c->w, &s->c->memo);
    fg_metrics_h2_stream(s->c->w->metrics, 1);
    st->ex.req.t_start_us = fg_now_us();
    TAILQ_INSERT_TAIL(&s->streams, st, link);
    s->nactive++;
    nghttp2_session_set_stream_user_data(ng, st->id, st);
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
                     size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *arg)
{
    (void)flags;
    struct fg_h2 *s = arg;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    if (st == NULL || frame->hd.type != NGHTTP2_HEADERS || st->pseudo_done > 1)
        return 0; /* trailers (pseudo_done 2) are not forwarded */
    size_t max = lim(s)->max_header_bytes;
    st->hdr_bytes += nlen + vlen + 32;
    if (st->hdr_bytes > 4 * max)
        return NGHTTP2_ERR_CALLBACK_FAILURE; /* a bomb: the connection goes */
    if (st->hdr_bytes > max)
        st->too_big = 1;
    if (st->too_big || st->bad)
        return 0;
    const char *n = (const char *)name, *v = (const char *)value;
    if (nlen > 0 && n[0] == ':') {
        if (nlen == 7 && memcmp(n, ":method", 7) == 0)
            st->method = fg_h1_method_of(v, vlen);
        else if (nlen == 5 && memcmp(n, ":path", 5) == 0)
            fg_buf_add(&st->path, v, vlen);
        else if (nlen == 10 && memcmp(n, ":authority", 10) == 0)
            fg_buf_add(&st->authority, v, vlen);
        else if (!(nlen == 7 && memcmp(n, ":scheme", 7) == 0))
            st->bad = 1; /* :protocol (extended CONNECT) is not offered */
        return 0;
    }
    commit_pseudo(st);
    if (nlen == 4 && memcmp(n, "host", 4) == 0 && st->authority.len) {
        /* RFC 9113 8.3.1: both present must agree; :authority is already the Host */
        if (vlen != st->authority.len || memcmp(v, st->authority.data, vlen) != 0)
            st->bad = 1;
        return 0;
    }
    add_field(&st->ex.req.msg, n, nlen, v, vlen);
    return 0;
}

/* A complete request head: check it as HTTP/1.1 heads are checked, then dispatch. */
static void request_ready(struct h2_stream *st, int end_stream)
{
    struct fg_req *r = &st->ex.req;
    commit_pseudo(st);
    st->pseudo_done = 2;
    st->in_ended = end_stream;
    r->line.method = st->method;
    r->line.minor = 1;
    int status = 0;
    if (st->too_big)
        status = 431;
    else if (st->bad || st->method < 0)
        status = st->method < 0 && !st->bad ? 501 : 400;
    else if (st->method == HTTP_CONNECT)
        status = 405;
    else if (st->path.len == 0 || st->path.data[0] != '/' ||
             !fg_h1_target_ok(st->path.data, st->path.len))
        status = 400;
    if (status == 0)
        status = fg_sanitize_request(&r->msg, &r->line, &r->f);
    /* framing is HTTP/2's: no Transfer-Encoding, Connection or Upgrade came (nghttp2
     * refuses them); a body of unknown length goes to the shard chunked */
    r->f.keepalive = 1;
    r->f.upgrade = 0;
    r->f.expect_continue = 0;
    r->f.chunked = !end_stream && !r->f.has_cl;
    r->body_done = !r->f.chunked && !(r->f.has_cl && r->f.cl > 0);
    st->dispatched = 1;
    __atomic_add_fetch(&fg_state.requests, 1, __ATOMIC_RELAXED);
    if (status != 0) {
        /* answered before routing: the exchange pins a snapshot for the log */
        st->ex.state = EX_ROUTING;
        r->snap = fg_snapshot_ref(st->s->c->w->snap);
        fg_ex_respond_status(&st->ex, status,
                             status == 431   ? "RequestHeaderFieldsTooLarge"
                             : status == 405 ? "MethodNotAllowed"
                             : status == 501 ? "NotImplemented"
                                             : "BadRequest",
                             status == 431   ? "request header fields too large"
                             : status == 405 ? "method not allowed"
                             : status == 501 ? "method not implemented"
                                             : "bad request");
        return;
    }
    fg_ex_dispatch(&st->ex);
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *arg)
{
    struct fg_h2 *s = arg;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    if (st == NULL)
        return 0;
    int end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (frame->hd.type == NGHTTP2_HEADERS && st->pseudo_done < 2) {
        if (s->goaway) {
            nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_REFUSED_STREAM);
            finish_stream(st);
            return 0;
        }
        st->holds++;
        request_ready(st, end);
        st->holds--;
        return 0;
    }
    if ((frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) && end) {
        st->in_ended = 1;
        s->pending = 1;
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *arg)
{
    (void)flags;
    struct fg_h2 *s = arg;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, id);
    if (st == NULL || st->finished || st->ex.req.body_done) {
        nghttp2_session_consume(ng, id, len); /* nobody reads it: give the window back */
        return 0;
    }
    evbuffer_add(st->in, data, len);
    s->pending = 1;
    return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *arg)
{
    (void)arg;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    if (st && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && !st->in_ended &&
        (frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS))
        /* answered before the client finished sending: it may stop (RFC 9113 8.1) */
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *arg)
{
    (void)code;
    (void)arg;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, id);
    if (st == NULL)
        return 0;
    st->holds++;
    st->closed = 1;
    stream_gone(st); /* a reset before the exchange finished: 499 */
    st->holds--;
    maybe_free(st);
    return 0;
}

/* ---- the session -------------------------------------------------------------- */

struct fg_h2 *fg_h2_new(struct fg_conn *c)
{
    const struct fg_limits *l = &c->w->snap->cfg->limits;
    nghttp2_session_callbacks *cbs;
    nghttp2_option *opt;
    if (nghttp2_session_callbacks_new(&cbs) != 0)
        return NULL;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_window_update(opt, 1); /* windows follow the shard's pace */
    nghttp2_option_set_max_continuations(opt, 8);
    /* rapid reset: a burst of 2x the stream limit, then that many a second */
    nghttp2_option_set_stream_reset_rate_limit(opt, 2 * (uint64_t)l->max_concurrent_streams,
                                               l->max_concurrent_streams);
    struct fg_h2 *s = fg_calloc(1, sizeof(*s));
    s->c = c;
    TAILQ_INIT(&s->streams);
    int rc = nghttp2_session_server_new2(&s->ng, cbs, s, opt);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    if (rc != 0) {
        free(s);
        return NULL;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, l->max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, l->max_header_bytes},
    };
    nghttp2_submit_settings(s->ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
    nghttp2_session_set_local_window_size(s->ng, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
    return s;
}

/* Hands buffered request bodies to exchanges that want them, as fast as their shards take. */
static void feed(struct fg_h2 *s)
{
    struct h2_stream *st, *next;
    s->pending = 0;
    for (st = TAILQ_FIRST(&s->streams); st && !s->closed; st = next) {
        st->holds++;
        struct fg_exchange *ex = &st->ex;
        if (st->dispatched && !st->finished && st->body_open && !st->throttled) {
            size_t n = evbuffer_get_length(st->in);
            if (n) {
                int full = fg_ex_body_move(ex, st->in, n);
                if (!st->closed && !s->closed)
                    nghttp2_session_consume(s->ng, st->id, n);
                st->throttled = full;
            }
            if (st->in_ended && !st->finished && !ex->req.body_done &&
                evbuffer_get_length(st->in) == 0)
                fg_ex_body_end(ex);
        }
        if (st->notify_drain && !st->finished &&
            evbuffer_get_length(st->out) < lim(s)->max_buffer_bytes / 2) {
            st->notify_drain = 0;
            fg_ex_client_drained(ex);
        }
        next = TAILQ_NEXT(st, link);
        st->holds--;
        maybe_free(st);
    }
}

/*
 * A fatal input error (a header list past 4x the limit, a CONTINUATION flood, a callback
 * refusing a frame): the streams go, and the client is told why in a GOAWAY written here,
 * after the whole frames nghttp2 already gave us, since the session itself is not used
 * again. A peer that is not speaking HTTP/2, or that does not read, gets no frame.
 */
static int fatal_goaway(struct fg_h2 *s, int err)
{
    uint32_t last = (uint32_t)nghttp2_session_get_last_proc_stream_id(s->ng);
    fg_h2_close(s);
    if (err == NGHTTP2_ERR_BAD_CLIENT_MAGIC || err == NGHTTP2_ERR_FLOODED)
        return -2;
    uint32_t code = err == NGHTTP2_ERR_CALLBACK_FAILURE || err == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS
                        ? NGHTTP2_ENHANCE_YOUR_CALM
                        : NGHTTP2_PROTOCOL_ERROR;
    uint8_t f[17] = {0, 0, 8, NGHTTP2_GOAWAY, 0, 0, 0, 0, 0};
    for (int i = 0; i < 4; i++) {
        f[9 + i] = (uint8_t)(last >> (24 - 8 * i));
        f[13 + i] = (uint8_t)(code >> (24 - 8 * i));
    }
    evbuffer_add(bufferevent_get_output(s->c->bev), f, sizeof(f));
    return -1;
}

int fg_h2_input(struct fg_h2 *s, struct evbuffer *in)
{
    while (!s->closed && evbuffer_get_length(in) > 0) {
        size_t n = evbuffer_get_contiguous_space(in);
        const uint8_t *data = evbuffer_pullup(in, (ssize_t)n);
        ssize_t used = nghttp2_session_mem_recv(s->ng, data, n);
        if (used < 0) {
            fg_log(FG_LOG_DEBUG, "client %s: HTTP/2: %s", s->c->ci.peer,
                   nghttp2_strerror((int)used));
            return fatal_goaway(s, (int)used);
        }
        evbuffer_drain(in, (size_t)used);
    }
    if (s->pending && !s->closed)
        feed(s);
    return 0;
}

int fg_h2_send(struct fg_h2 *s)
{
    if (s->closed)
        return -1;
    struct evbuffer *out = bufferevent_get_output(s->c->bev);
    size_t max = lim(s)->max_buffer_bytes;
    for (int round = 0; round < 8; round++) {
        while (evbuffer_get_length(out) < max) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(s->ng, &data);
            if (n < 0)
                return -1;
            if (n == 0)
                break;
            evbuffer_add(out, data, (size_t)n);
        }
        if (!s->pending)
            break;
        feed(s); /* paused shards whose stream drained go on, and may give more to send */
    }
    if (evbuffer_get_length(out) >= max)
        bufferevent_setwatermark(s->c->bev, EV_WRITE, max / 2, 0);
    return 0;
}

void fg_h2_drained(struct fg_h2 *s)
{
    fg_h2_send(s);
}

void fg_h2_flush_upstreams(struct fg_h2 *s)
{
    struct h2_stream *st;
    TAILQ_FOREACH(st, &s->streams, link)
    {
        if (st->dispatched && !st->finished)
            fg_ex_flush_upstream(&st->ex);
    }
}

size_t fg_h2_active(const struct fg_h2 *s)
{
    return s->nactive;
}

void fg_h2_goaway(struct fg_h2 *s)
{
    if (s->goaway || s->closed)
        return;
    s->goaway = 1;
    nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(s->ng),
                          NGHTTP2_NO_ERROR, NULL, 0);
}

int fg_h2_finished(const struct fg_h2 *s)
{
    if (s->closed)
        return 1;
    if (nghttp2_session_want_write(s->ng))
        return 0;
    return !nghttp2_session_want_read(s->ng) || (s->goaway && s->nactive == 0);
}

void fg_h2_close(struct fg_h2 *s)
{
    if (s->closed)
        return;
    s->closed = 1;
    struct h2_stream *st, *next;
    for (st = TAILQ_FIRST(&s->streams); st; st = next) {
        st->holds++;
        st->closed = 1;
        stream_gone(st);
        next = TAILQ_NEXT(st, link);
        st->holds--;
        maybe_free(st);
    }
}

void fg_h2_free(struct fg_h2 *s)
{
    struct h2_stream *st;
    while ((st = TAILQ_FIRST(&s->streams)) != NULL) {
        st->holds = 0;
        st->closed = st->finished = 1;
        maybe_free(st);
    }
    nghttp2_session_del(s->ng);
    free(s);
}
