/*
 * admin.c - the admin listener (see admin.h).
 */
#include "admin.h"

#include "metrics.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/util.h>
#include <netdb.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>

struct fg_admin {
    struct evhttp *http;
    fg_admin_ready_fn ready;
    void *arg;
};

static void reply(struct evhttp_request *req, int code, const char *reason, const char *type,
                  const char *body, size_t len)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", type);
    evhttp_add_header(h, "Cache-Control", "no-store");
    struct evbuffer *out = evbuffer_new();
    evbuffer_add(out, body, len);
    evhttp_send_reply(req, code, reason, out);
    evbuffer_free(out);
}

static void handle(struct evhttp_request *req, void *arg)
{
    struct fg_admin *a = arg;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    const char *uri = evhttp_request_get_uri(req);
    size_t plen = strcspn(uri, "?");
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        reply(req, 405, "Method Not Allowed", "text/plain; charset=utf-8", "GET or HEAD\n", 12);
        return;
    }
    if (plen == 8 && memcmp(uri, "/metrics", 8) == 0) {
        struct fg_buf b = {0};
        fg_metrics_render(&b);
        reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", b.data ? b.data : "",
              b.len);
        fg_buf_free(&b);
    } else if ((plen == 8 && memcmp(uri, "/healthz", 8) == 0) ||
               (plen == 6 && memcmp(uri, "/livez", 6) == 0)) {
        reply(req, 200, "OK", "text/plain; charset=utf-8", "ok\n", 3);
    } else if (plen == 7 && memcmp(uri, "/readyz", 7) == 0) {
        if (a->ready(a->arg))
            reply(req, 200, "OK", "text/plain; charset=utf-8", "ok\n", 3);
        else
            reply(req, 503, "Service Unavailable", "text/plain; charset=utf-8", "not ready\n", 10);
    } else {
        reply(req, 404, "Not Found", "text/plain; charset=utf-8", "not found\n", 10);
    }
}

struct fg_admin *fg_admin_start(struct event_base *base, const struct fg_config *cfg,
                                fg_admin_ready_fn ready, void *arg, int *failed)
{
    *failed = 0;
    if (cfg->admin_address == NULL)
        return NULL;
    struct fg_admin *a = fg_calloc(1, sizeof(*a));
    a->ready = ready;
    a->arg = arg;
    a->http = evhttp_new(base);
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH |
                                            EVHTTP_REQ_OPTIONS);
    evhttp_set_max_headers_size(a->http, 16384);
    evhttp_set_max_body_size(a->http, 4096); /* read and ignored: no endpoint takes a body */
    evhttp_set_timeout(a->http, 10);
    evhttp_set_gencb(a->http, handle, a);
    const char *host = cfg->admin_host && *cfg->admin_host ? cfg->admin_host : "0.0.0.0";
    uint64_t port = 0;
    fg_parse_u64(cfg->admin_port, strlen(cfg->admin_port), 65535, &port);
    struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(a->http, host, (uint16_t)port);
    if (bs == NULL) {
        int explicit = !cfg->admin_default;
        fg_log(explicit ? FG_LOG_ERROR : FG_LOG_WARN, "admin: cannot listen on %s: %s%s",
               cfg->admin_address, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()),
               explicit ? "" : " (the default address; set admin.address, or \"\" to turn it off)");
        evhttp_free(a->http);
        free(a);
        *failed = explicit;
        return NULL;
    }
    /* the port it got (the address may ask for :0) */
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char h[NI_MAXHOST] = "?", serv[NI_MAXSERV] = "?";
    if (getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss, &sl) == 0)
        getnameinfo((struct sockaddr *)&ss, sl, h, sizeof(h), serv, sizeof(serv),
                    NI_NUMERICHOST | NI_NUMERICSERV);
    fg_log(FG_LOG_INFO,
           ss.ss_family == AF_INET6 ? "admin: listening on http://[%s]:%s (/metrics, /healthz, "
                                      "/livez, /readyz)"
                                    : "admin: listening on http://%s:%s (/metrics, /healthz, "
                                      "/livez, /readyz)",
           h, serv);
    return a;
}

void fg_admin_stop(struct fg_admin *a)
{
    if (a == NULL)
        return;
    evhttp_free(a->http);
    free(a);
}
