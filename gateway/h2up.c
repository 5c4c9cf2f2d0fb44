/*
 * h2up.c - HTTP/2 client connections to shards (nghttp2), shared by the
 * exchanges of one worker: placement of streams on connections, the
 * request head as a HEADERS frame, request bodies as DATA as the window
 * allows, responses back through fg_ex_up_*, flow control tied to the
 * client's drain, GOAWAY and refused streams. See h2up.h.
 *
 * nghttp2 is not reentrant: nothing here calls nghttp2_session_mem_send
 * while a session callback runs (c->busy); exchanges reached from callbacks
 * may submit (a retry, a reset), and the send loop after the callbacks
 * writes it out.
 */
#include "h2up.h"

#include "exchange.h"
#include "metrics.h"
#include "sanitize.h"
#include "upstream.h"

#include <event2/bufferevent_ssl.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>

#define STREAM_WINDOW    (256 * 1024)
#define CONN_WINDOW      (16 * 1024 * 1024)
#define PEER_MAX_DEFAULT 100 /* streams assumed before the shard's SETTINGS arrive */

struct fg_h2up {
    struct fg_worker *w;
    uint16_t mlabel; /* its shard's metrics label */
    struct bufferevent *bev;
    nghttp2_session *ng;
    struct fg_snapshot *snap; /* the snapshot whose requests it carries */
    uint32_t shard;
    int connected;
    int ready;  /* the shard's SETTINGS arrived: streams go out (no more than it allows) */
    int start;  /* ... and the attached streams are to be started (start_streams) */
    int goaway; /* takes no new stream: the shard's GOAWAY, or retiring */
    int dead;
    int busy; /* inside nghttp2: no send now */
    int holds;
    int served;     /* a response head arrived on it (it is no longer fresh) */
    int terminated; /* our GOAWAY is submitted */
    char ended[80]; /* why the session ended: the GOAWAY either side sent */
    int depth;      /* inside one of its libevent callbacks */
    int drained;    /* some stream's body drained below half (read_body): tell them */
    int idle_armed; /* 1: the idle timeout is set (no stream); 0: none; -1: the connect's */
    /* exchanges given something during this callback: each writes out once, at its end */
    struct fg_exchange **touched;
    size_t ntouched, ctouched;
    uint32_t peer_max;
    size_t nstreams; /* attached: waiting for the connect, or known to nghttp2 */
    TAILQ_HEAD(, fg_upconn) streams;
    TAILQ_ENTRY(fg_h2up) link;
    struct event
        *kick; /* runs the send loop on the next pass (after a reset from the client side) */
};

static void conn_send(struct fg_h2up *c);
static void conn_close(struct fg_h2up *c, const char *why);
static void wait_expired(evutil_socket_t fd, short what, void *arg);
static void wake(struct fg_worker *w);

/* The send loop runs from the worker's next pass: safe from any callback chain. */
static void kick(struct fg_h2up *c)
{
    if (c && !c->dead && c->kick)
        event_active(c->kick, EV_TIMEOUT, 1);
}

static const struct fg_shard_cfg *shard_of(const struct fg_h2up *c)
{
    return &c->snap->cfg->shards[c->shard];
}

static const struct fg_limits *lim(const struct fg_h2up *c)
{
    return &c->snap->cfg->limits;
}

static uint32_t cap(const struct fg_h2up *c)
{
    uint32_t ours = shard_of(c)->max_streams;
    return c->peer_max < ours ? c->peer_max : ours;
}

/* ---- streams ---------------------------------------------------------------- */

static void stream_maybe_free(struct fg_upconn *u)
{
    if (u->ex || u->live || u->h2 || u->waiting || u->holds)
        return;
    if (u->wait_ev)
        event_free(u->wait_ev);
    if (u->body)
        evbuffer_free(u->body);
    fg_msg_free(&u->msg);
    free(u);
}

/* Takes u off its connection (it is not, or no longer, known to nghttp2). */
static void stream_unlink(struct fg_upconn *u)
{
    struct fg_h2up *c = u->h2;
    if (c == NULL)
        return;
    TAILQ_REMOVE(&c->streams, u, slink);
    c->nstreams--;
    u->h2 = NULL;
}

/* u cannot complete: its exchange retries it (unprocessed: any method) or answers 502. */
static void stream_fail(struct fg_upconn *u, const char *why, int may_retry, int unprocessed)
{
    struct fg_exchange *ex = u->ex;
    if (ex == NULL) {
        stream_maybe_free(u);
        return;
    }
    u->holds++;
    u->ex = NULL;
    u->dead = 1;
    fg_ex_hold(ex);
    if (ex->req.resp_started && !ex->gone)
        fg_ex_up_flush(ex); /* what it relayed before the failure goes out first */
    if (!(may_retry && !u->got_bytes && fg_ex_up_retry(ex, unprocessed)))
        fg_ex_up_failed(ex, why);
    fg_ex_up_flush(ex);
    fg_ex_release(ex);
    u->holds--;
    stream_maybe_free(u);
}

/* ---- the request ------------------------------------------------------------ */

static ssize_t read_body(nghttp2_session *ng, int32_t sid, uint8_t *buf, size_t len,
                         uint32_t *flags, nghttp2_data_source *src, void *arg)
{
    (void)ng;
    (void)sid;
    struct fg_h2up *c = arg;
    struct fg_upconn *u = src->ptr;
    size_t have = evbuffer_get_length(u->body);
    if (have == 0 && !u->body_end) {
        u->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = have < len ? have : len;
    evbuffer_remove(u->body, buf, n);
    if (u->body_end && evbuffer_get_length(u->body) == 0)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (u->want_drained && evbuffer_get_length(u->body) < lim(c)->max_buffer_bytes / 2) {
        u->want_drained = 0;
        u->drained = c->drained = 1; /* told after the send loop (conn_send) */
    }
    return (ssize_t)n;
}

/* Fields HTTP/2 does not carry (RFC 9113 8.2.2), by the sanitizer's own classification. */
static int connection_specific(enum fg_hdr_kind k)
{
    return k == FG_HDR_CONNECTION || k == FG_HDR_HOP || k == FG_HDR_TRANSFER_ENCODING ||
           k == FG_HDR_UPGRADE;
}

static void nv_set(nghttp2_nv *nv, const char *n, size_t nl, const char *v, size_t vl,
                   uint8_t flags)
{
    nv->name = (uint8_t *)n;
    nv->namelen = nl;
    nv->value = (uint8_t *)v;
    nv->valuelen = vl;
    nv->flags = flags;
}

/*
 * The head fg_proxy_build_head wrote, field for field: the request line and Host become
 * :method, :path and :authority, names are lowercased, connection-specific fields go
 * (RFC 9113 8.2.2), values are passed as they are. Credentials are never entered into the
 * HPACK dynamic table (NO_INDEX), so requests of different callers sharing a connection
 * cannot learn about each other's through compression.
 */
int fg_h2up_send_head(struct fg_upconn *u, const char *head, size_t len)
{
    struct fg_h2up *c = u->h2;
    struct fg_exchange *ex = u->ex;
    if (c == NULL || ex == NULL || c->dead)
        return -1;
    struct fg_buf b = {0};
    fg_buf_add(&b, head, len);
    char *p = b.data, *end = b.data + b.len;
    size_t cap_nv = 8;
    for (size_t i = 0; i < b.len; i++)
        cap_nv += b.data[i] == '\n';
    nghttp2_nv *nv = fg_calloc(cap_nv, sizeof(*nv));
    size_t n = 4;
    const char *authority = shard_of(c)->hostport;
    size_t alen = strlen(authority);
    /* request line: METHOD SP target SP HTTP/1.1 CRLF */
    char *sp1 = memchr(p, ' ', (size_t)(end - p));
    char *eol = memchr(p, '\n', (size_t)(end - p));
    char *sp2 = sp1 && eol ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (sp2 == NULL) {
        free(nv);
        fg_buf_free(&b);
        return -1;
    }
    nv_set(&nv[0], ":method", 7, p, (size_t)(sp1 - p), NGHTTP2_NV_FLAG_NONE);
    nv_set(&nv[3], ":path", 5, sp1 + 1, (size_t)(sp2 - sp1 - 1), NGHTTP2_NV_FLAG_NONE);
    nv_set(&nv[1], ":scheme", 7, shard_of(c)->https ? "https" : "http", shard_of(c)->https ? 5 : 4,
           NGHTTP2_NV_FLAG_NONE);
    for (p = eol + 1; p < end;) {
        eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL || eol - p <= 1)
            break; /* the empty line */
        char *colon = memchr(p, ':', (size_t)(eol - p));
        if (colon == NULL)
            break;
        size_t nl = (size_t)(colon - p);
        char *v = colon + 1;
        while (v < eol && (*v == ' ' || *v == '\t'))
            v++;
        size_t vl = (size_t)(eol - v);
        if (vl > 0 && v[vl - 1] == '\r')
            vl--;
        for (size_t k = 0; k < nl; k++)
            if (p[k] >= 'A' && p[k] <= 'Z')
                p[k] = (char)(p[k] + 32);
        enum fg_hdr_kind kind = fg_hdr_classify(p, nl);
        if (kind == FG_HDR_HOST) {
            authority = v;
            alen = vl;
        } else if (!connection_specific(kind)) {
            int secret = kind == FG_HDR_AUTHORIZATION || fg_strn_eqi(p, nl, "cookie");
            nv_set(&nv[n++], p, nl, v, vl,
                   secret ? NGHTTP2_NV_FLAG_NO_INDEX : NGHTTP2_NV_FLAG_NONE);
        }
        p = eol + 1;
    }
    nv_set(&nv[2], ":authority", 10, authority, alen, NGHTTP2_NV_FLAG_NONE);
    nghttp2_data_provider prd = {.source.ptr = u, .read_callback = read_body};
    int32_t sid =
        nghttp2_submit_request(c->ng, NULL, nv, n, fg_req_has_body(&ex->req) ? &prd : NULL, u);
    OPENSSL_cleanse(b.data, b.len); /* may hold a credential */
    fg_buf_free(&b);
    free(nv);
    if (sid < 0) {
        fg_log(FG_LOG_DEBUG, "shard %s: HTTP/2: %s", shard_of(c)->name, nghttp2_strerror(sid));
        return -1;
    }
    u->sid = sid;
    u->live = 1;
    return 0;
}

void fg_h2up_write(struct fg_upconn *u, const void *p, size_t n)
{
    evbuffer_add(u->body, p, n);
    if (u->deferred && u->live && u->h2) {
        u->deferred = 0;
        nghttp2_session_resume_data(u->h2->ng, u->sid);
    }
}

void fg_h2up_write_buffer(struct fg_upconn *u, struct evbuffer *src, size_t n)
{
    evbuffer_remove_buffer(src, u->body, n);
    if (u->deferred && u->live && u->h2) {
        u->deferred = 0;
        nghttp2_session_resume_data(u->h2->ng, u->sid);
    }
}

void fg_h2up_body_end(struct fg_upconn *u)
{
    u->body_end = 1;
    fg_h2up_write(u, "", 0);
}

int fg_h2up_full(struct fg_upconn *u)
{
    const struct fg_limits *l = fg_ex_limits(u->ex);
    if (evbuffer_get_length(u->body) < l->max_buffer_bytes)
        return 0;
    u->want_drained = 1;
    return 1;
}

void fg_h2up_flush(struct fg_upconn *u)
{
    if (u->h2)
        conn_send(u->h2);
}

void fg_h2up_unthrottle(struct fg_upconn *u)
{
    if (!u->throttled)
        return;
    u->throttled = 0;
    struct fg_h2up *c = u->h2;
    if (u->unconsumed && c && u->live) {
        nghttp2_session_consume(c->ng, u->sid, u->unconsumed);
        u->unconsumed = 0;
        conn_send(c);
    }
}

static void unwait(struct fg_upconn *u)
{
    TAILQ_REMOVE(&u->w->h2wait, u, slink);
    u->waiting = 0;
    if (u->wait_ev)
        event_del(u->wait_ev);
}

void fg_h2up_release(struct fg_upconn *u, int completed)
{
    u->ex = NULL;
    if (u->waiting) {
        unwait(u);
    } else if (u->h2 && !u->live) {
        struct fg_h2up *c = u->h2;
        stream_unlink(u); /* never submitted: its connection is still connecting */
        kick(c);          /* room for a waiting one */
    } else if (u->h2 && u->live && !(completed && u->msg_done)) {
        /* nghttp2 closes it once the RST_STREAM is out; on_stream_close frees it */
        nghttp2_submit_rst_stream(u->h2->ng, NGHTTP2_FLAG_NONE, u->sid, NGHTTP2_CANCEL);
        kick(u->h2);
    }
    stream_maybe_free(u);
}

/* ---- the response ----------------------------------------------------------- */

static struct fg_upconn *stream_of(nghttp2_session *ng, int32_t sid)
{
    return nghttp2_session_get_stream_user_data(ng, sid);
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *arg)
{
    (void)arg;
    struct fg_upconn *u = stream_of(ng, f->hd.stream_id);
    if (u && !u->head_done) {
        fg_msg_reset(&u->msg);
        u->status = 0;
    }
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *arg)
{
    (void)flags;
    struct fg_h2up *c = arg;
    struct fg_upconn *u = stream_of(ng, f->hd.stream_id);
    if (u == NULL || u->ex == NULL || u->head_done)
        return 0; /* trailers, or nobody is listening */
    struct fg_msg *m = &u->msg;
    m->bytes += (uint32_t)(namelen + valuelen + 32);
    if (m->bytes > 4 * lim(c)->max_header_bytes)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        int s = 0;
        for (size_t i = 0; i < valuelen && i < 3; i++)
            s = s * 10 + (value[i] - '0');
        u->status = s;
        return 0;
    }
    if (namelen > 0 && name[0] == ':')
        return 0;
    fg_grow(&m->hdrs, &m->hcap, m->nhdrs + 1, sizeof(struct fg_hdr));
    struct fg_hdr *h = &m->hdrs[m->nhdrs++];
    memset(h, 0, sizeof(*h));
    h->name = (uint32_t)m->raw.len;
    h->name_len = (uint32_t)namelen;
    fg_buf_add(&m->raw, name, namelen);
    h->value = (uint32_t)m->raw.len;
    h->value_len = (uint32_t)valuelen;
    fg_buf_add(&m->raw, value, valuelen);
    return 0;
}

/*
 * Inside one of c's callbacks, the exchanges it gave something write out once at its end
 * (one write for a response's HEADERS, DATA and end, and for every stream of one read)
 * rather than after each frame. Each is held until then.
 */
static int defer_flush(struct fg_h2up *c, struct fg_exchange *ex)
{
    if (c == NULL || c->depth == 0 || c->dead)
        return 0;
    for (size_t i = c->ntouched; i > 0; i--)
        if (c->touched[i - 1] == ex)
            return 1;
    fg_grow(&c->touched, &c->ctouched, c->ntouched + 1, sizeof(*c->touched));
    fg_ex_hold(ex);
    c->touched[c->ntouched++] = ex;
    return 1;
}

static void flush_touched(struct fg_h2up *c)
{
    for (size_t i = 0; i < c->ntouched; i++) {
        struct fg_exchange *ex = c->touched[i];
        if (!ex->gone)
            fg_ex_up_flush(ex);
        fg_ex_release(ex);
    }
    c->ntouched = 0;
}

static void enter(struct fg_h2up *c)
{
    c->holds++;
    c->depth++;
}

static void conn_release(struct fg_h2up *c);

static void leave(struct fg_h2up *c)
{
    if (--c->depth == 0)
        flush_touched(c);
    conn_release(c);
}

/* Runs body for u's exchange (as var) with both held; the client writes out after (at the end
 * of the connection's callback when inside one). */
#define WITH_EX(u, var, body)                                                                      \
    do {                                                                                           \
        struct fg_exchange *var = (u)->ex;                                                         \
        struct fg_h2up *wc_ = (u)->h2;                                                             \
        if (var == NULL)                                                                           \
            break;                                                                                 \
        (u)->holds++;                                                                              \
        fg_ex_hold(var);                                                                           \
        body;                                                                                      \
        if (!var->gone && !defer_flush(wc_, var))                                                  \
            fg_ex_up_flush(var);                                                                   \
        fg_ex_release(var);                                                                        \
        (u)->holds--;                                                                              \
    } while (0)

static void deliver_end(struct fg_upconn *u)
{
    if (u->msg_done)
        return;
    u->msg_done = 1;
    WITH_EX(u, ex, fg_ex_up_end(ex));
}

static int deliver_head(struct fg_h2up *c, struct fg_upconn *u, int end_stream)
{
    struct fg_exchange *ex = u->ex;
    struct fg_resp_head h = {.status = u->status, .msg = &u->msg};
    fg_sanitize_response(&u->msg, &h.upgrade_idx);
    h.upgrade_idx = -1; /* HTTP/2 has no upgrade */
    int method = ex->req.line.method;
    h.body = !(method == HTTP_HEAD || h.status == 204 || h.status == 304);
    for (size_t i = 0; i < u->msg.nhdrs; i++)
        if (u->msg.hdrs[i].kind == FG_HDR_CONTENT_LENGTH)
            h.length_known = 1;
    u->head_done = u->got_bytes = 1;
    c->served = 1;
    int refused = 0;
    WITH_EX(u, e, refused = fg_ex_up_head(e, &h) != 0);
    if (refused)
        return -1;
    if (end_stream)
        deliver_end(u);
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *arg)
{
    struct fg_h2up *c = arg;
    struct fg_upconn *u;
    switch (f->hd.type) {
    case NGHTTP2_HEADERS:
        u = stream_of(ng, f->hd.stream_id);
        if (u == NULL || u->ex == NULL)
            break;
        if (!u->head_done) {
            if (u->status >= 100 && u->status < 200)
                break; /* interim (100, 103): the final head follows */
            if (u->status < 200 || deliver_head(c, u, f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0)
                nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id,
                                          NGHTTP2_PROTOCOL_ERROR);
        } else if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
            deliver_end(u); /* after trailers, which are not forwarded */
        }
        break;
    case NGHTTP2_DATA:
        u = stream_of(ng, f->hd.stream_id);
        if (u && u->head_done && (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
            deliver_end(u);
        break;
    case NGHTTP2_GOAWAY:
        c->goaway = 1; /* streams above its last id close with REFUSED_STREAM */
        snprintf(c->ended, sizeof(c->ended), "HTTP/2: the shard sent GOAWAY(%s)",
                 nghttp2_http2_strerror(f->goaway.error_code));
        break;
    case NGHTTP2_SETTINGS:
        if (!(f->hd.flags & NGHTTP2_FLAG_ACK)) {
            c->peer_max =
                nghttp2_session_get_remote_settings(ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
            if (!c->ready)
                c->ready = c->start = 1; /* start_streams, after this input */
        }
        break;
    default:
        break;
    }
    return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *arg)
{
    (void)ng;
    struct fg_h2up *c = arg;
    if (f->hd.type == NGHTTP2_GOAWAY && f->goaway.error_code != NGHTTP2_NO_ERROR)
        snprintf(c->ended, sizeof(c->ended), "HTTP/2: the shard broke the protocol (GOAWAY %s)",
                 nghttp2_http2_strerror(f->goaway.error_code));
    return 0;
}

static int on_data(nghttp2_session *ng, uint8_t flags, int32_t sid, const uint8_t *data, size_t len,
                   void *arg)
{
    (void)flags;
    (void)arg;
    struct fg_upconn *u = stream_of(ng, sid);
    if (u == NULL || u->ex == NULL || !u->head_done) {
        nghttp2_session_consume(ng, sid, len);
        return 0;
    }
    int full = 0;
    WITH_EX(u, ex, full = fg_ex_up_body(ex, (const char *)data, len));
    if (u->ex && (u->throttled || full)) {
        u->throttled = 1; /* the window stays closed by len until the client drains */
        u->unconsumed += len;
    } else {
        nghttp2_session_consume(ng, sid, len);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t sid, uint32_t err, void *arg)
{
    struct fg_h2up *c = arg;
    struct fg_upconn *u = stream_of(ng, sid);
    if (u == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(ng, sid, NULL);
    if (u->unconsumed) {
        nghttp2_session_consume_connection(ng, u->unconsumed);
        u->unconsumed = 0;
    }
    u->live = 0;
    stream_unlink(u);
    if (u->ex && !u->msg_done) {
        char why[96];
        snprintf(why, sizeof(why), "HTTP/2 stream closed before the response completed (%s)",
                 nghttp2_http2_strerror(err));
        /* a stream the shard refused, or closed under its GOAWAY, was never processed */
        stream_fail(u, why, err == NGHTTP2_REFUSED_STREAM, err == NGHTTP2_REFUSED_STREAM);
    } else {
        stream_maybe_free(u);
    }
    (void)c;
    return 0;
}

/* ---- connections ------------------------------------------------------------ */

static void conn_free(struct fg_h2up *c)
{
    fg_metrics_upconn(c->w->metrics, c->mlabel, 1, -1);
    free(c->touched);
    if (c->kick)
        event_free(c->kick);
    nghttp2_session_del(c->ng);
    free(c);
}

static void conn_release(struct fg_h2up *c)
{
    if (--c->holds == 0 && c->dead)
        conn_free(c);
}

static int retiring(const struct fg_h2up *c)
{
    return c->goaway || c->snap != c->w->snap || c->w->draining;
}

/* Streams with no byte of response fail; a connection that served before may be stale, so an
 * idempotent request is tried once more on another (as for HTTP/1.1 keep-alive). */
static void conn_close(struct fg_h2up *c, const char *why)
{
    if (c->dead)
        return;
    c->dead = 1;
    c->holds++;
    TAILQ_REMOVE(&c->w->h2conns, c, link);
    if (c->kick)
        event_del(c->kick);
    bufferevent_free(c->bev);
    c->bev = NULL;
    struct fg_upconn *u;
    while ((u = TAILQ_FIRST(&c->streams)) != NULL) {
        stream_unlink(u);
        if (u->live) {
            nghttp2_session_set_stream_user_data(c->ng, u->sid, NULL);
            u->live = 0;
        }
        if (u->ex && !u->msg_done)
            stream_fail(u, why, c->served, 0);
        else
            stream_maybe_free(u);
    }
    fg_snapshot_unref(c->snap);
    c->snap = NULL;
    if (!TAILQ_EMPTY(&c->w->h2wait))
        wake(c->w);
    conn_release(c);
}

static void set_idle_timer(struct fg_h2up *c)
{
    if (!c->ready)
        return; /* the connect timeout still runs */
    int idle = c->nstreams == 0;
    if (idle == c->idle_armed)
        return;
    if (idle) {
        uint64_t ms = lim(c)->upstream_idle_timeout_ms;
        struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
        bufferevent_set_timeouts(c->bev, &tv, NULL);
    } else {
        bufferevent_set_timeouts(c->bev, NULL, NULL); /* streams (watches) have no deadline */
    }
    c->idle_armed = idle;
}

/* Frames out while the socket takes them; then the streams whose body drained hear of it. */
static void conn_send(struct fg_h2up *c)
{
    if (c->dead || !c->connected || c->busy)
        return;
    c->holds++;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t max = lim(c)->max_buffer_bytes;
    for (int round = 0; round < 8 && !c->dead; round++) {
        if (retiring(c) && c->nstreams == 0 && !c->terminated) {
            c->terminated = c->goaway = 1; /* and it takes no new stream */
            nghttp2_session_terminate_session(c->ng, NGHTTP2_NO_ERROR);
        }
        c->busy = 1;
        while (evbuffer_get_length(out) < max) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(c->ng, &data);
            if (n < 0) {
                c->busy = 0;
                conn_close(c, nghttp2_strerror((int)n));
                goto out;
            }
            if (n == 0)
                break;
            evbuffer_add(out, data, (size_t)n);
        }
        c->busy = 0;
        if (!c->drained)
            break;
        c->drained = 0;
        int again = 0;
        struct fg_upconn *u, *next;
        for (u = TAILQ_FIRST(&c->streams); u && !c->dead; u = next) {
            u->holds++;
            if (u->drained) {
                u->drained = 0;
                WITH_EX(u, ex, fg_ex_up_drained(ex));
                again = 1;
            }
            next = TAILQ_NEXT(u, slink);
            u->holds--;
            stream_maybe_free(u);
        }
        if (!again)
            break;
    }
    if (c->dead)
        goto out;
    bufferevent_setwatermark(c->bev, EV_WRITE, evbuffer_get_length(out) >= max ? max / 2 : 0, 0);
    if (!nghttp2_session_want_read(c->ng) && !nghttp2_session_want_write(c->ng) &&
        evbuffer_get_length(out) == 0)
        conn_close(c, c->ended[0] ? c->ended : "HTTP/2 session ended");
    else
        set_idle_timer(c);
out:
    conn_release(c);
}

/*
 * The shard's SETTINGS arrived: the streams attached while connecting start, as many as it
 * allows; the rest go back to the front of the queue, in order, for another connection.
 */
static void start_streams(struct fg_h2up *c)
{
    c->start = 0;
    uint32_t room = cap(c), n = 0;
    struct fg_upconn *u, *next, *back = NULL;
    for (u = TAILQ_FIRST(&c->streams); u && !c->dead; u = next) {
        next = TAILQ_NEXT(u, slink);
        if (u->live)
            continue;
        if (n < room) {
            n++;
            u->holds++;
            WITH_EX(u, ex, fg_ex_up_ready(ex));
            next = TAILQ_NEXT(u, slink);
            u->holds--;
            stream_maybe_free(u);
            continue;
        }
        stream_unlink(u);
        u->waiting = 1; /* its connect-time deadline is gone: it waits no longer than one more */
        if (!u->wait_ev)
            u->wait_ev = evtimer_new(c->w->base, wait_expired, u);
        if (u->wait_ev) {
            uint64_t ms = lim(c)->connect_timeout_ms;
            struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
            evtimer_add(u->wait_ev, &tv);
        }
        if (back)
            TAILQ_INSERT_AFTER(&c->w->h2wait, back, u, slink);
        else
            TAILQ_INSERT_HEAD(&c->w->h2wait, u, slink);
        back = u;
    }
}

static void conn_read(struct bufferevent *bev, void *arg)
{
    struct fg_h2up *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    enter(c);
    while (!c->dead && evbuffer_get_length(in) > 0) {
        size_t n = evbuffer_get_contiguous_space(in);
        const uint8_t *data = evbuffer_pullup(in, (ssize_t)n);
        c->busy = 1;
        ssize_t used = nghttp2_session_mem_recv(c->ng, data, n);
        c->busy = 0;
        if (used < 0) {
            char why[96];
            snprintf(why, sizeof(why), "HTTP/2: %s", nghttp2_strerror((int)used));
            conn_close(c, why);
            break;
        }
        if (!c->dead)
            evbuffer_drain(in, (size_t)used);
    }
    if (c->start && !c->dead)
        start_streams(c);
    conn_send(c);
    if (!TAILQ_EMPTY(&c->w->h2wait))
        wake(c->w);
    leave(c);
}

static void conn_write(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct fg_h2up *c = arg;
    enter(c);
    conn_send(c);
    leave(c);
}

/* Puts u on c: sent at once when c is up, else when it connects. */
static void attach(struct fg_h2up *c, struct fg_upconn *u)
{
    u->h2 = c;
    TAILQ_INSERT_TAIL(&c->streams, u, slink);
    c->nstreams++;
    if (c->ready) {
        set_idle_timer(c);
        WITH_EX(u, ex, fg_ex_up_ready(ex));
    }
}

static void connected(struct fg_h2up *c)
{
    const struct fg_shard_cfg *s = shard_of(c);
    if (s->https) {
        const unsigned char *p = NULL;
        unsigned plen = 0;
        SSL_get0_alpn_selected(bufferevent_openssl_get_ssl(c->bev), &p, &plen);
        if (!(plen == 2 && memcmp(p, "h2", 2) == 0)) {
            if (s->protocol != FG_PROTO_AUTO) {
                conn_close(c, "the shard did not select h2 by ALPN (protocol: h2)");
                return;
            }
            /* auto: the shard speaks HTTP/1.1; this worker asks it so until the next config */
            struct fg_worker *w = c->w;
            if (c->snap == w->snap && c->shard < w->npools)
                w->pools[c->shard].auto_h1 = 1;
            c->goaway = 1;
            struct fg_upconn *u;
            while ((u = TAILQ_FIRST(&c->streams)) != NULL) {
                stream_unlink(u);
                struct fg_exchange *ex = u->ex;
                u->ex = NULL;
                stream_maybe_free(u);
                if (ex) {
                    fg_ex_hold(ex);
                    ex->up = NULL;
                    ex->req.up_h1 = 1;
                    fg_up_acquire(ex, c->shard);
                    fg_ex_up_flush(ex);
                    fg_ex_release(ex);
                }
            }
            conn_close(c, "not used");
            return;
        }
    }
    /* the connect timeout goes on until the shard's SETTINGS, which start the streams */
    c->connected = 1;
}

static void conn_event(struct bufferevent *bev, short what, void *arg)
{
    struct fg_h2up *c = arg;
    enter(c);
    if (what & BEV_EVENT_CONNECTED) {
        connected(c);
        conn_send(c);
    } else if (!c->connected) {
        conn_close(c, fg_up_connect_error(bev, what, shard_of(c)->https));
    } else if (what & BEV_EVENT_TIMEOUT) {
        /* the connect timeout runs until the shard's SETTINGS; the idle one only without streams */
        conn_close(c, c->ready ? "idle" : "connect timed out (no HTTP/2 SETTINGS from the shard)");
    } else {
        conn_close(c, (what & BEV_EVENT_EOF) ? "connection closed before the response completed"
                                             : "connection error");
    }
    if (!TAILQ_EMPTY(&c->w->h2wait))
        wake(c->w);
    leave(c);
}

static void conn_kicked(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fg_h2up *c = arg;
    enter(c);
    conn_send(c);
    if (!c->dead && !TAILQ_EMPTY(&c->w->h2wait))
        wake(c->w);
    leave(c);
}

static struct fg_h2up *conn_new(struct fg_worker *w, struct fg_snapshot *snap, uint32_t shard)
{
    static const unsigned char alpn_h2[] = "\x02h2", alpn_auto[] = "\x02h2\x08http/1.1";
    const struct fg_shard_cfg *s = &snap->cfg->shards[shard];
    int auto_ = s->protocol == FG_PROTO_AUTO;
    struct bufferevent *bev = fg_up_new_bev(w, snap, shard, auto_ ? alpn_auto : alpn_h2,
                                            auto_ ? sizeof(alpn_auto) - 1 : sizeof(alpn_h2) - 1);
    if (bev == NULL)
        return NULL;
    nghttp2_session_callbacks *cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_option *opt;
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_peer_max_concurrent_streams(opt, PEER_MAX_DEFAULT);
    nghttp2_option_set_max_send_header_block_length(opt,
                                                    4 * snap->cfg->limits.max_header_bytes + 16384);
    struct fg_h2up *c = fg_calloc(1, sizeof(*c));
    int rc = nghttp2_session_client_new2(&c->ng, cbs, c, opt);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    if (rc != 0) {
        bufferevent_free(bev);
        free(c);
        return NULL;
    }
    c->w = w;
    c->mlabel = snap->shard_label[shard];
    fg_metrics_upconn(w->metrics, c->mlabel, 1, 1);
    c->bev = bev;
    c->snap = fg_snapshot_ref(snap);
    c->shard = shard;
    c->peer_max = PEER_MAX_DEFAULT;
    c->idle_armed = -1;
    TAILQ_INIT(&c->streams);
    TAILQ_INSERT_TAIL(&w->h2conns, c, link);
    c->kick = event_new(w->base, -1, 0, conn_kicked, c);
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 4 * snap->cfg->limits.max_header_bytes},
    };
    nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
    nghttp2_session_set_local_window_size(c->ng, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
    bufferevent_setcb(bev, conn_read, conn_write, conn_event, c);
    uint64_t ms = snap->cfg->limits.connect_timeout_ms;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    bufferevent_set_timeouts(bev, &tv, &tv);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect_hostname(bev, w->dns, AF_UNSPEC, s->host, s->port) != 0) {
        c->holds++;
        conn_close(c, "connect failed");
        conn_release(c);
        return NULL;
    }
    return c;
}

/* ---- placement -------------------------------------------------------------- */

/* A connection to shard under snap with room, else a new one within maxConnections. */
static struct fg_h2up *find_room(struct fg_worker *w, struct fg_snapshot *snap, uint32_t shard,
                                 int *opened)
{
    size_t n = 0;
    int unsettled = 0;
    struct fg_h2up *c;
    *opened = 0;
    TAILQ_FOREACH(c, &w->h2conns, link)
    {
        if (c->dead || c->goaway || c->snap != snap || c->shard != shard)
            continue;
        if (c->nstreams < cap(c))
            return c;
        unsettled |= !c->ready;
        n++;
    }
    /* A connection full at the guess made before the shard's SETTINGS (100 streams) is not full
     * yet: its SETTINGS, usually allowing far more, wake the waiters. Opening another one here
     * would make a burst of watches spread over connections a single one could carry. */
    if (unsettled)
        return NULL;
    uint32_t max = snap->cfg->shards[shard].max_conns;
    if (max && n >= max)
        return NULL;
    *opened = 1;
    return conn_new(w, snap, shard);
}

static void wait_expired(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fg_upconn *u = arg;
    if (!u->waiting)
        return;
    unwait(u);
    stream_fail(u,
                "no HTTP/2 stream free within connectTimeout (every connection full, "
                "maxConnections reached)",
                0, 0);
}

void fg_h2up_acquire(struct fg_exchange *ex, uint32_t shard)
{
    struct fg_worker *w = ex->w;
    struct fg_upconn *u = fg_calloc(1, sizeof(*u));
    u->w = w;
    u->shard = shard;
    u->state = UP_ACTIVE;
    u->body = evbuffer_new();
    u->ex = ex;
    ex->up = u;
    int opened;
    struct fg_h2up *c = find_room(w, ex->req.snap, shard, &opened);
    if (c) {
        attach(c, u);
    } else if (opened) {
        ex->up = NULL;
        u->ex = NULL;
        stream_maybe_free(u);
        fg_ex_up_failed(ex, "cannot create a connection");
    } else {
        /* every connection is full and maxConnections reached: the next stream to end makes
         * room; a request never waits longer than it would for a connect */
        u->waiting = 1;
        TAILQ_INSERT_TAIL(&w->h2wait, u, slink);
        u->wait_ev = evtimer_new(w->base, wait_expired, u);
        uint64_t ms = fg_ex_limits(ex)->connect_timeout_ms;
        struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
        evtimer_add(u->wait_ev, &tv);
    }
}

static void wake(struct fg_worker *w)
{
    struct fg_upconn *u, *next;
    for (u = TAILQ_FIRST(&w->h2wait); u; u = next) {
        next = TAILQ_NEXT(u, slink);
        struct fg_exchange *ex = u->ex;
        int opened;
        struct fg_h2up *c = find_room(w, ex->req.snap, u->shard, &opened);
        if (c == NULL) {
            if (opened) {
                unwait(u);
                stream_fail(u, "cannot create a connection", 0, 0);
            }
            continue;
        }
        unwait(u);
        u->holds++;
        attach(c, u);
        next = TAILQ_FIRST(&w->h2wait); /* the exchange may have changed the queue */
        u->holds--;
        stream_maybe_free(u);
        if (c->connected)
            conn_send(c);
    }
}

void fg_h2up_sweep(struct fg_worker *w)
{
    /* an idle connection has no exchange to call back: closing it touches no other one */
    struct fg_h2up *c, *next;
    for (c = TAILQ_FIRST(&w->h2conns); c; c = next) {
        next = TAILQ_NEXT(c, link);
        if (c->nstreams > 0 || !retiring(c) || c->terminated)
            continue;
        if (c->connected)
            conn_send(c); /* GOAWAY(NO_ERROR); it closes once that is written */
        else
            conn_close(c, "retired");
    }
}

void fg_h2up_close_all(struct fg_worker *w)
{
    struct fg_h2up *c;
    while ((c = TAILQ_FIRST(&w->h2conns)) != NULL)
        conn_close(c, "shutting down");
}
