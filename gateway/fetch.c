/*
 * fetch.c - evhttp as a client, with TLS through bufferevent_openssl (SNI
 * and hostname verification), a deadline per exchange and a response cap.
 * evhttp buffers whole bodies, which is right for these small documents and
 * wrong for proxying (the proxy has its own HTTP engine in conn.c/upstream.c).
 */
#include "fetch.h"

#include "../config/base.h"
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <openssl/x509v3.h>
#include <event2/util.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

struct task {
    fg_task_fn fn;
    void *arg;
    struct event *ev; /* timers only */
    struct gw_fetcher *owner;
    TAILQ_ENTRY(task) link;
};

TAILQ_HEAD(task_list, task);

struct exchange {
    struct gw_fetcher *owner;
    struct evhttp_connection *conn;
    struct bufferevent *bev;
    struct evhttp_request *req; /* until answered or cancelled */
    struct event *deadline;     /* the whole exchange: a trickling server cannot extend it */
    fg_fetch_done done;
    void *arg;
    size_t max;
    void (*on_data)(void *arg, int status, const char *p, size_t n); /* streaming, or NULL */
    struct evbuffer *errbody; /* streaming: a non-2xx body, kept for done */
    struct event *teardown;   /* cancelled: runs teardown_cancelled on the next turn */
    int error;                /* enum evhttp_request_error + 1, or 0 */
    int sock_err; /* errno of a socket error evhttp reported (or ECONNREFUSED, see on_response) */
    int finished;
    char *shown_url; /* scheme://host[:port]/path: what errors name (no credentials, no query) */
    char why[512];   /* error_text's words, valid until the exchange is freed */
    TAILQ_ENTRY(exchange) link;
};

struct gw_fetcher {
    struct fg_fetcher base; /* first: the interface */
    struct event_base *evbase;
    struct evdns_base *dns;
    pthread_mutex_t lock; /* guards posted */
    struct task_list posted;
    struct event *post_ev;
    struct task_list timers;
    TAILQ_HEAD(, exchange) exchanges;
    TAILQ_HEAD(, exchange) cancelled; /* cancelled, torn down on the next turn */
};

/* ---- tasks ---------------------------------------------------------------- */

static void run_posted(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct gw_fetcher *g = arg;
    struct task_list todo;
    TAILQ_INIT(&todo);
    pthread_mutex_lock(&g->lock);
    TAILQ_CONCAT(&todo, &g->posted, link);
    pthread_mutex_unlock(&g->lock);
    struct task *t;
    while ((t = TAILQ_FIRST(&todo)) != NULL) {
        TAILQ_REMOVE(&todo, t, link);
        t->fn(t->arg);
        free(t);
    }
}

static void g_post(struct fg_fetcher *f, fg_task_fn fn, void *arg)
{
    struct gw_fetcher *g = (struct gw_fetcher *)f;
    struct task *t = fg_calloc(1, sizeof(*t));
    t->fn = fn;
    t->arg = arg;
    pthread_mutex_lock(&g->lock);
    TAILQ_INSERT_TAIL(&g->posted, t, link);
    pthread_mutex_unlock(&g->lock);
    event_active(g->post_ev, EV_TIMEOUT, 1);
}

static void run_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct task *t = arg;
    TAILQ_REMOVE(&t->owner->timers, t, link);
    event_free(t->ev);
    fg_task_fn fn = t->fn;
    void *targ = t->arg;
    free(t);
    fn(targ);
}

static void g_after(struct fg_fetcher *f, uint64_t ms, fg_task_fn fn, void *arg)
{
    struct gw_fetcher *g = (struct gw_fetcher *)f;
    struct task *t = fg_calloc(1, sizeof(*t));
    t->fn = fn;
    t->arg = arg;
    t->owner = g;
    t->ev = evtimer_new(g->evbase, run_timer, t);
    TAILQ_INSERT_TAIL(&g->timers, t, link);
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(t->ev, &tv);
}

static uint64_t g_now(struct fg_fetcher *f)
{
    (void)f;
    return fg_now_ms();
}

/* ---- exchanges ------------------------------------------------------------ */

static void free_exchange(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct exchange *x = arg;
    if (x->deadline)
        event_free(x->deadline);
    if (x->teardown)
        event_free(x->teardown);
    evhttp_connection_free(x->conn); /* also frees x->bev */
    if (x->errbody)
        evbuffer_free(x->errbody);
    free(x->shown_url);
    free(x);
}

/* evhttp must not free a connection from inside its own callback: finish on the next turn. */
static void finish(struct exchange *x, const struct fg_fetch_resp *resp)
{
    if (x->finished)
        return; /* already answered (by the teardown) */
    x->finished = 1;
    if (x->deadline)
        event_del(x->deadline);
    TAILQ_REMOVE(&x->owner->exchanges, x, link);
    x->done(x->arg, resp);
    event_base_once(x->owner->evbase, -1, EV_TIMEOUT, free_exchange, x, NULL);
}

/* Words for a failed exchange, naming the URL (without credentials or query). */
static const char *error_text(struct exchange *x)
{
    const char *u = x->shown_url;
    int dns = x->bev ? bufferevent_socket_get_dns_error(x->bev) : 0;
    switch (x->error - 1) {
    case EVREQ_HTTP_TIMEOUT:
        snprintf(x->why, sizeof(x->why), "timed out waiting for %s", u);
        return x->why;
    case EVREQ_HTTP_INVALID_HEADER:
        snprintf(x->why, sizeof(x->why), "invalid response header from %s", u);
        return x->why;
    case EVREQ_HTTP_DATA_TOO_LONG:
        snprintf(x->why, sizeof(x->why), "response too large from %s", u);
        return x->why;
    default:
        break;
    }
    if (dns != 0)
        snprintf(x->why, sizeof(x->why), "cannot resolve the host of %s: %s", u,
                 evutil_gai_strerror(dns));
    else if (x->sock_err == ECONNREFUSED)
        snprintf(x->why, sizeof(x->why), "connection refused to %s", u);
    else if (x->sock_err == ETIMEDOUT || x->sock_err == EHOSTUNREACH || x->sock_err == ENETUNREACH)
        snprintf(x->why, sizeof(x->why), "cannot connect to %s: %s", u, strerror(x->sock_err));
    else if (x->bev && bufferevent_get_openssl_error(x->bev))
        snprintf(x->why, sizeof(x->why), "%s (%s)", fg_tls_bev_error(x->bev), u);
    else if (x->error - 1 == EVREQ_HTTP_EOF)
        snprintf(x->why, sizeof(x->why), "connection closed by %s", u);
    else if (x->error - 1 == EVREQ_HTTP_BUFFER_ERROR)
        snprintf(x->why, sizeof(x->why), "connection error with %s", u);
    else
        snprintf(x->why, sizeof(x->why), "connection to %s failed", u);
    return x->why;
}

/*
 * evhttp's timeout is per read: a server that sends a byte now and then never trips it.
 * The deadline bounds the exchange as a whole; the answer is "timed out".
 */
static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct exchange *x = arg;
    struct fg_fetch_resp resp = {0};
    struct evhttp_request *req = x->req;
    snprintf(x->why, sizeof(x->why), "timed out waiting for %s", x->shown_url);
    resp.error = x->why;
    finish(x, &resp); /* first: whatever the cancel reports finds x finished */
    x->req = NULL;
    if (req)
        evhttp_cancel_request(req);
}

static void on_error(enum evhttp_request_error err, void *arg)
{
    struct exchange *x = arg;
    x->error = (int)err + 1;
    if (err == EVREQ_HTTP_BUFFER_ERROR)
        x->sock_err = EVUTIL_SOCKET_ERROR(); /* what connect() or read() said, for error_text */
}

static void on_response(struct evhttp_request *req, void *arg)
{
    struct exchange *x = arg;
    struct fg_fetch_resp resp = {0};
    x->req = NULL; /* evhttp frees it after this callback */
    if (x->finished)
        return;
    int code = req ? evhttp_request_get_response_code(req) : 0;
    if (code == 0) {
        /* No error callback: evhttp's connect cleanup, which it enters when connect() was
         * refused (ECONNREFUSED, or SO_ERROR on a plain socket). */
        if (x->error == 0)
            x->sock_err = ECONNREFUSED;
        resp.error = error_text(x);
        finish(x, &resp);
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    if (x->on_data && code / 100 == 2) {
        resp.status = code; /* the body went to on_data */
        finish(x, &resp);
        return;
    }
    if (x->errbody)
        in = x->errbody; /* streaming: what on_chunk kept of a non-2xx body */
    size_t len = evbuffer_get_length(in);
    if (len > x->max) {
        resp.error = "response too large";
        finish(x, &resp);
        return;
    }
    char *body = fg_malloc(len + 1);
    evbuffer_copyout(in, body, len);
    body[len] = '\0';
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    resp.status = code;
    resp.body = body;
    resp.body_len = len;
    resp.cache_control = evhttp_find_header(h, "Cache-Control");
    resp.retry_after = evhttp_find_header(h, "Retry-After");
    finish(x, &resp);
    free(body);
}

/* Streaming: a piece of the body arrived (evhttp drains the buffer after this returns). */
static void on_chunk(struct evhttp_request *req, void *arg)
{
    struct exchange *x = arg;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    if (x->finished)
        return;
    int code = evhttp_request_get_response_code(req);
    if (code / 100 != 2) {
        if (evbuffer_get_length(x->errbody) < x->max)
            evbuffer_add_buffer(x->errbody, in);
        return;
    }
    struct evbuffer_iovec v[8];
    int n = evbuffer_peek(in, -1, NULL, v, 8);
    if (n > 8) {
        evbuffer_pullup(in, -1);
        n = evbuffer_peek(in, -1, NULL, v, 1);
    }
    for (int i = 0; i < n && !x->finished; i++)
        x->on_data(x->arg, code, v[i].iov_base, v[i].iov_len);
}

/* A cancelled exchange, on the turn after cancel: outside evhttp's callbacks. */
static void teardown_cancelled(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct exchange *x = arg;
    TAILQ_REMOVE(&x->owner->cancelled, x, link);
    struct evhttp_request *req = x->req;
    x->req = NULL;
    if (req)
        evhttp_cancel_request(req); /* on_response finds x finished */
    free_exchange(-1, 0, x);
}

static void g_cancel(struct fg_fetcher *f, void *arg)
{
    struct gw_fetcher *g = (struct gw_fetcher *)f;
    struct exchange *x, *next;
    for (x = TAILQ_FIRST(&g->exchanges); x; x = next) {
        next = TAILQ_NEXT(x, link);
        if (x->arg != arg || x->finished)
            continue;
        x->finished = 1;
        if (x->deadline)
            event_del(x->deadline);
        TAILQ_REMOVE(&g->exchanges, x, link);
        TAILQ_INSERT_TAIL(&g->cancelled, x, link);
        x->teardown = evtimer_new(g->evbase, teardown_cancelled, x);
        struct timeval now = {0, 0};
        evtimer_add(x->teardown, &now);
    }
}

static int is_ip(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

struct failure {
    fg_fetch_done done;
    void *arg;
    const char *why;
};

static void report_failure(void *p)
{
    struct failure *fl = p;
    struct fg_fetch_resp resp = {0};
    resp.error = fl->why;
    fl->done(fl->arg, &resp);
    free(fl);
}

/* Callbacks never run inside fetch(): an immediate failure is reported from a posted task. */
static void fail_later(struct gw_fetcher *g, fg_fetch_done done, void *arg, const char *why)
{
    struct failure *fl = fg_malloc(sizeof(*fl));
    *fl = (struct failure){done, arg, why};
    g_post(&g->base, report_failure, fl);
}

static struct bufferevent *tls_bev(struct gw_fetcher *g, SSL_CTX *ctx, const char *host)
{
    SSL *ssl = SSL_new(ctx);
    if (is_ip(host)) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
    } else {
        SSL_set_tlsext_host_name(ssl, host);
        SSL_set1_host(ssl, host);
    }
    /*
     * Deferred callbacks, as conn.c and upstream.c have. libevent 2.1's bufferevent_openssl
     * (do_read) runs the event callback for a close_notify read in the same pass as the
     * answer's last record before it commits that record's bytes and runs the read callback
     * (fixed only in libevent 2.2). Called at once, evhttp failed a complete answer as EOF
     * ("connection closed") when a server's last record and close_notify were read together,
     * as with Go's net/http answering `Connection: close`: whether that happens depends on
     * where the record lands in the read buffer, so on the answer's size, and a retry of the
     * same list page fared the same. Deferred, the read callback runs first (bufferevent.c
     * runs read, write, then event): evhttp completes the answer and resets the connection,
     * which drops the EOF; a body that truly ends early still fails as before.
     */
    struct bufferevent *bev =
        bufferevent_openssl_socket_new(g->evbase, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                       BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (bev)
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

static SSL_CTX *default_ctx(void)
{
    static SSL_CTX *ctx;
    if (ctx == NULL) {
        ctx = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_default_verify_paths(ctx);
    }
    return ctx;
}

static void g_fetch(struct fg_fetcher *f, const struct fg_fetch_req *r, fg_fetch_done done,
                    void *arg)
{
    struct gw_fetcher *g = (struct gw_fetcher *)f;
    struct evhttp_uri *uri = evhttp_uri_parse(r->url);
    const char *scheme = uri ? evhttp_uri_get_scheme(uri) : NULL;
    const char *host = uri ? evhttp_uri_get_host(uri) : NULL;
    if (uri == NULL || scheme == NULL || host == NULL ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
        if (uri)
            evhttp_uri_free(uri);
        fail_later(g, done, arg, "invalid URL");
        return;
    }
    int https = strcmp(scheme, "https") == 0;
    int port = evhttp_uri_get_port(uri);
    if (port < 0)
        port = https ? 443 : 80;
    struct exchange *x = fg_calloc(1, sizeof(*x));
    x->owner = g;
    x->done = done;
    x->arg = arg;
    x->max = r->max_response ? r->max_response : (1u << 20);
    struct fg_buf shown = {0};
    const char *upath = evhttp_uri_get_path(uri);
    fg_buf_printf(&shown, "%s://%s%s", scheme, strchr(host, ':') ? "[" : "", host);
    if (strchr(host, ':'))
        fg_buf_addc(&shown, ']');
    if (evhttp_uri_get_port(uri) >= 0)
        fg_buf_printf(&shown, ":%d", port);
    fg_buf_adds(&shown, upath && *upath ? upath : "/");
    x->shown_url = fg_buf_take(&shown);
    x->bev = https ? tls_bev(g, r->tls ? r->tls : default_ctx(), host)
                   : bufferevent_socket_new(g->evbase, -1, BEV_OPT_CLOSE_ON_FREE);
    x->conn = evhttp_connection_base_bufferevent_new(g->evbase, g->dns, x->bev, host,
                                                     (unsigned short)port);
    uint64_t ms = r->timeout_ms ? r->timeout_ms : 10000;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evhttp_connection_set_timeout_tv(x->conn, &tv);
    evhttp_connection_set_retries(x->conn, 0);
    struct evhttp_request *req = evhttp_request_new(on_response, x);
    evhttp_request_set_error_cb(req, on_error);
    if (r->on_data) {
        x->on_data = r->on_data;
        x->errbody = evbuffer_new();
        evhttp_request_set_chunked_cb(req, on_chunk); /* no body cap: on_chunk keeps none */
    } else {
        evhttp_connection_set_max_body_size(x->conn, (ev_ssize_t)x->max);
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    struct fg_buf hosthdr = {0};
    fg_buf_adds(&hosthdr, host);
    if (evhttp_uri_get_port(uri) >= 0)
        fg_buf_printf(&hosthdr, ":%d", port);
    evhttp_add_header(h, "Host", hosthdr.data);
    fg_buf_free(&hosthdr);
    evhttp_add_header(h, "User-Agent", "frontgate");
    evhttp_add_header(h, "Connection", "close");
    if (r->accept)
        evhttp_add_header(h, "Accept", r->accept);
    if (r->authorization)
        evhttp_add_header(h, "Authorization", r->authorization);
    if (r->content_type)
        evhttp_add_header(h, "Content-Type", r->content_type);
    if (r->body_len)
        evbuffer_add(evhttp_request_get_output_buffer(req), r->body, r->body_len);
    struct fg_buf target = {0};
    const char *path = evhttp_uri_get_path(uri), *query = evhttp_uri_get_query(uri);
    fg_buf_adds(&target, path && *path ? path : "/");
    if (query)
        fg_buf_printf(&target, "?%s", query);
    enum evhttp_cmd_type cmd = strcmp(r->method, "POST") == 0 ? EVHTTP_REQ_POST : EVHTTP_REQ_GET;
    TAILQ_INSERT_TAIL(&g->exchanges, x, link);
    if (evhttp_make_request(x->conn, req, cmd, target.data) != 0) {
        /* evhttp freed req; report from the loop like any other failure */
        x->error = EVREQ_HTTP_BUFFER_ERROR + 1;
        struct fg_fetch_resp resp = {0};
        resp.error = "cannot send the request";
        TAILQ_REMOVE(&g->exchanges, x, link);
        free_exchange(-1, 0, x);
        fail_later(g, done, arg, resp.error);
    } else {
        x->req = req;
        x->deadline = evtimer_new(g->evbase, deadline_cb, x);
        evtimer_add(x->deadline, &tv);
    }
    fg_buf_free(&target);
    evhttp_uri_free(uri);
}

struct fg_fetcher *fg_fetcher_new(struct event_base *base, struct evdns_base *dns)
{
    struct gw_fetcher *g = fg_calloc(1, sizeof(*g));
    g->base.fetch = g_fetch;
    g->base.after = g_after;
    g->base.post = g_post;
    g->base.now_ms = g_now;
    g->base.cancel = g_cancel;
    g->evbase = base;
    g->dns = dns;
    pthread_mutex_init(&g->lock, NULL);
    TAILQ_INIT(&g->posted);
    TAILQ_INIT(&g->timers);
    TAILQ_INIT(&g->exchanges);
    TAILQ_INIT(&g->cancelled);
    g->post_ev = event_new(base, -1, 0, run_posted, g);
    return &g->base;
}

void fg_fetcher_free(struct fg_fetcher *f)
{
    struct gw_fetcher *g = (struct gw_fetcher *)f;
    if (g == NULL)
        return;
    /*
     * Everything pending gets its callback, so owners release what they hold:
     * posted tasks run, timers fire early, exchanges fail. Owners that were
     * released stop there; a few rounds settle what those callbacks start.
     */
    for (int round = 0; round < 8; round++) {
        int progress = !TAILQ_EMPTY(&g->posted);
        while (!TAILQ_EMPTY(&g->posted))
            run_posted(-1, 0, g);
        struct task *t;
        while ((t = TAILQ_FIRST(&g->timers)) != NULL) {
            progress = 1;
            TAILQ_REMOVE(&g->timers, t, link);
            event_free(t->ev);
            fg_task_fn fn = t->fn;
            void *arg = t->arg;
            free(t);
            fn(arg);
        }
        struct exchange *x;
        while ((x = TAILQ_FIRST(&g->exchanges)) != NULL) {
            progress = 1;
            struct fg_fetch_resp resp = {0};
            resp.error = "shutting down";
            TAILQ_REMOVE(&g->exchanges, x, link);
            x->finished = 1;
            x->done(x->arg, &resp);
            free_exchange(-1, 0, x);
        }
        while ((x = TAILQ_FIRST(&g->cancelled)) != NULL)
            teardown_cancelled(-1, 0, x);
        if (!progress)
            break;
    }
    struct task *t;
    while ((t = TAILQ_FIRST(&g->timers)) != NULL) {
        TAILQ_REMOVE(&g->timers, t, link);
        event_free(t->ev);
        free(t);
    }
    while ((t = TAILQ_FIRST(&g->posted)) != NULL) {
        TAILQ_REMOVE(&g->posted, t, link);
        free(t);
    }
    event_free(g->post_ev);
    pthread_mutex_destroy(&g->lock);
    free(g);
}
