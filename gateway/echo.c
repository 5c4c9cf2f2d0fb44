#include "echo.h"

#include "../config/base.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fg_echo {
    struct event_base *base;
    struct evhttp *http;
    pthread_t thread;
};

/* kube's requestheader parsing: lowercase, then percent-decode (a bad escape keeps the raw key). */
static char *unescape_key(const char *s)
{
    size_t n = strlen(s);
    char *out = fg_malloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c + 32);
        if (c == '%' && i + 2 < n && fg_hexval((unsigned char)s[i + 1]) >= 0 &&
            fg_hexval((unsigned char)s[i + 2]) >= 0) {
            c = (char)(fg_hexval((unsigned char)s[i + 1]) << 4 |
                       fg_hexval((unsigned char)s[i + 2]));
            i += 2;
        }
        *o++ = c;
    }
    *o = '\0';
    return out;
}

static json_t *user_info(struct evkeyvalq *hdrs)
{
    json_t *groups = json_array(), *extra = json_object(), *info = json_object();
    const char *user = NULL, *uid = NULL;
    for (struct evkeyval *kv = hdrs->tqh_first; kv; kv = kv->next.tqe_next) {
        if (evutil_ascii_strcasecmp(kv->key, "X-Remote-User") == 0) {
            user = kv->value;
        } else if (evutil_ascii_strcasecmp(kv->key, "X-Remote-Uid") == 0) {
            uid = kv->value;
        } else if (evutil_ascii_strcasecmp(kv->key, "X-Remote-Group") == 0) {
            json_array_append_new(groups, json_string(kv->value));
        } else if (evutil_ascii_strncasecmp(kv->key, "X-Remote-Extra-", 15) == 0) {
            char *key = unescape_key(kv->key + 15);
            json_t *vals = json_object_get(extra, key);
            if (vals == NULL) {
                vals = json_array();
                json_object_set_new(extra, key, vals);
            }
            json_array_append_new(vals, json_string(kv->value));
            free(key);
        }
    }
    if (user)
        json_object_set_new(info, "username", json_string(user));
    if (uid)
        json_object_set_new(info, "uid", json_string(uid));
    json_object_set_new(info, "groups", groups);
    json_object_set_new(info, "extra", extra);
    return info;
}

static void reply(struct evhttp_request *req, int code, json_t *doc)
{
    char *text = json_dumps(doc, JSON_COMPACT);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "%s\n", text);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, code, code == 201 ? "Created" : "OK", b);
    evbuffer_free(b);
    free(text);
    json_decref(doc);
}

static void handle(struct evhttp_request *req, void *arg)
{
    (void)arg;
    struct evkeyvalq *hdrs = evhttp_request_get_input_headers(req);
    const char *uri = evhttp_request_get_uri(req);
    const char *q = strchr(uri, '?');
    size_t plen = q ? (size_t)(q - uri) : strlen(uri);
    static const char ssr[] = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
    size_t slen = sizeof(ssr) - 1;
    if (evhttp_request_get_command(req) == EVHTTP_REQ_POST && plen >= slen &&
        memcmp(uri + plen - slen, ssr, slen) == 0) {
        json_t *doc = json_pack("{s:s, s:s, s:{s:n}, s:{s:o}}", "kind", "SelfSubjectReview",
                                "apiVersion", "authentication.k8s.io/v1", "metadata",
                                "creationTimestamp", "status", "userInfo", user_info(hdrs));
        reply(req, 201, doc);
        return;
    }
    json_t *headers = json_object();
    for (struct evkeyval *kv = hdrs->tqh_first; kv; kv = kv->next.tqe_next) {
        char *lower = fg_strdup(kv->key);
        for (char *p = lower; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p + 32);
        /* Never echo a credential back. */
        const char *v = strcmp(lower, "authorization") == 0 ? "<redacted>" : kv->value;
        json_t *arr = json_object_get(headers, lower);
        if (arr == NULL) {
            arr = json_array();
            json_object_set_new(headers, lower, arr);
        }
        json_array_append_new(arr, json_string(v));
        free(lower);
    }
    static const char *const methods[] = {"GET",     "POST",  "HEAD",    "PUT",  "DELETE",
                                          "OPTIONS", "TRACE", "CONNECT", "PATCH"};
    int cmd = evhttp_request_get_command(req);
    const char *method = "OTHER";
    for (size_t i = 0; i < FG_ARRAY_LEN(methods); i++)
        if (cmd == (1 << i))
            method = methods[i];
    size_t body = evbuffer_get_length(evhttp_request_get_input_buffer(req));
    json_t *doc = json_pack("{s:s, s:s%, s:s?, s:o, s:o, s:I}", "method", method, "path", uri, plen,
                            "query", q ? q + 1 : NULL, "user", user_info(hdrs), "headers", headers,
                            "bodyBytes", (json_int_t)body);
    reply(req, 200, doc);
}

static void *run(void *arg)
{
    struct fg_echo *e = arg;
    event_base_loop(e->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

static struct fg_echo *echo_new(const char *host, int port, int *bound_port)
{
    struct fg_echo *e = fg_calloc(1, sizeof(*e));
    e->base = event_base_new();
    e->http = evhttp_new(e->base);
    evhttp_set_gencb(e->http, handle, e);
    evhttp_set_allowed_methods(e->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH |
                                            EVHTTP_REQ_OPTIONS);
    struct evhttp_bound_socket *s = evhttp_bind_socket_with_handle(e->http, host, (uint16_t)port);
    if (s == NULL) {
        evhttp_free(e->http);
        event_base_free(e->base);
        free(e);
        return NULL;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&ss, &sl);
    *bound_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return e;
}

struct fg_echo *fg_echo_start(const char *host, int port, int *bound_port)
{
    struct fg_echo *e = echo_new(host, port, bound_port);
    if (e == NULL)
        return NULL;
    /* The thread starts with every signal blocked: SIGHUP, SIGTERM and SIGINT are the main
     * loop's (read from its signalfd), and one taken here would take the default action. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&e->thread, NULL, run, e);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        fg_echo_stop(e);
        return NULL;
    }
    return e;
}

void fg_echo_stop(struct fg_echo *e)
{
    if (e == NULL)
        return;
    if (e->thread) {
        event_base_loopexit(e->base, NULL);
        pthread_join(e->thread, NULL);
    }
    evhttp_free(e->http);
    event_base_free(e->base);
    free(e);
}

static void on_stop(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    event_base_loopexit(arg, NULL);
}

int fg_echo_main(int argc, char **argv)
{
    const char *listen = "127.0.0.1:8081";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("Usage: frontgate echo-shard [--listen HOST:PORT]\n\n"
                   "Runs the built-in echo shard (what `frontgate demo` forwards to). It answers\n"
                   "with the method, path and identity headers it received and serves\n"
                   "SelfSubjectReview for `kubectl auth whoami`. Loopback demos only: it trusts\n"
                   "X-Remote-* headers from anyone.\n");
            return 0;
        } else {
            fprintf(stderr, "frontgate echo-shard: unknown argument \"%s\" (try --help)\n",
                    argv[i]);
            return 2;
        }
    }
    const char *colon = strrchr(listen, ':');
    uint64_t port;
    if (colon == NULL || fg_parse_u64(colon + 1, strlen(colon + 1), 65535, &port) != 0) {
        fprintf(stderr, "frontgate echo-shard: --listen must be HOST:PORT\n");
        return 2;
    }
    char *host = fg_strndup(listen, (size_t)(colon - listen));
    int bound;
    struct fg_echo *e = echo_new(host, (int)port, &bound);
    free(host);
    if (e == NULL) {
        fprintf(stderr, "frontgate echo-shard: cannot listen on %s\n", listen);
        return 1;
    }
    struct event *s1 = evsignal_new(e->base, SIGINT, on_stop, e->base);
    struct event *s2 = evsignal_new(e->base, SIGTERM, on_stop, e->base);
    evsignal_add(s1, NULL);
    evsignal_add(s2, NULL);
    fg_log(FG_LOG_INFO, "echo shard listening on http://%.*s:%d", (int)(colon - listen), listen,
           bound);
    event_base_dispatch(e->base);
    event_free(s1);
    event_free(s2);
    fg_echo_stop(e);
    return 0;
}
