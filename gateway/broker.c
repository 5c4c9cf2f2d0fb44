/*
 * broker.c - `frontgate broker`: a loopback OAuth2 token endpoint that hands
 * out the contents of a token file (a projected service-account token that
 * kubelet rotates in place), for clients such as DuckDB's Iceberg extension
 * that only obtain bearer tokens through a client-credentials POST.
 *
 * POST /token re-reads the file on every request (no caching, so a rotated
 * token is served at once) and answers
 * {"access_token":..,"token_type":"Bearer","expires_in":N} with
 * Cache-Control: no-store and Pragma: no-cache. Form bodies and Basic
 * credentials are accepted and ignored: anyone who can reach a loopback port
 * on this host gets the token, which is why the broker refuses to listen on
 * anything but loopback. Other methods: 405; a missing or empty file: 503
 * with an OAuth2 error. GET /healthz: 200 when the file is readable.
 */
#include "broker.h"

#include "../config/base.h"
#include "../config/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct broker {
    const char *token_file;
    uint64_t expires_in;
};

static void send_json(struct evhttp_request *req, int code, const char *reason, const char *json)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "Pragma", "no-cache");
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, json, strlen(json));
    evhttp_send_reply(req, code, reason, b);
    evbuffer_free(b);
}

static void oauth_error(struct evhttp_request *req, int code, const char *reason, const char *error,
                        const char *desc)
{
    struct fg_buf b = {0};
    fg_buf_printf(&b, "{\"error\":\"%s\",\"error_description\":", error);
    fg_buf_json_str(&b, desc, strlen(desc));
    fg_buf_adds(&b, "}\n");
    send_json(req, code, reason, b.data);
    fg_buf_free(&b);
}

/* The token file's contents without surrounding whitespace, or NULL. */
static char *read_token(const char *path)
{
    size_t len;
    char *t = fg_read_file(path, &len);
    if (t == NULL)
        return NULL;
    size_t start = 0;
    while (start < len &&
           (t[start] == ' ' || t[start] == '\n' || t[start] == '\r' || t[start] == '\t'))
        start++;
    while (len > start &&
           (t[len - 1] == ' ' || t[len - 1] == '\n' || t[len - 1] == '\r' || t[len - 1] == '\t'))
        len--;
    if (len == start) {
        free(t);
        return NULL;
    }
    memmove(t, t + start, len - start);
    t[len - start] = '\0';
    return t;
}

static void handle(struct evhttp_request *req, void *arg)
{
    struct broker *br = arg;
    const char *uri = evhttp_request_get_uri(req);
    size_t plen = strcspn(uri, "?");
    int is_token = plen == 6 && memcmp(uri, "/token", 6) == 0;
    int is_health = (plen == 8 && memcmp(uri, "/healthz", 8) == 0) ||
                    (plen == 7 && memcmp(uri, "/health", 7) == 0);
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (is_health) {
        char *t = read_token(br->token_file);
        struct evbuffer *b = evbuffer_new();
        evbuffer_add_printf(b, t ? "ok\n" : "token file missing or empty\n");
        evhttp_send_reply(req, t ? 200 : 503, t ? "OK" : "Service Unavailable", b);
        evbuffer_free(b);
        if (t) {
            OPENSSL_cleanse(t, strlen(t));
            free(t);
        }
        return;
    }
    if (!is_token) {
        oauth_error(req, 404, "Not Found", "invalid_request", "POST /token");
        return;
    }
    if (cmd != EVHTTP_REQ_POST) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
        oauth_error(req, 405, "Method Not Allowed", "invalid_request", "POST only");
        return;
    }
    char *t = read_token(br->token_file);
    if (t == NULL) {
        fg_log(FG_LOG_WARN, "broker: cannot serve a token: %s is missing or empty", br->token_file);
        oauth_error(req, 503, "Service Unavailable", "server_error",
                    "the token file is missing or empty");
        return;
    }
    struct fg_buf b = {0};
    fg_buf_adds(&b, "{\"access_token\":");
    fg_buf_json_str(&b, t, strlen(t));
    fg_buf_printf(&b, ",\"token_type\":\"Bearer\",\"expires_in\":%llu}\n",
                  (unsigned long long)br->expires_in);
    send_json(req, 200, "OK", b.data);
    OPENSSL_cleanse(b.data, b.len);
    OPENSSL_cleanse(t, strlen(t));
    fg_buf_free(&b);
    free(t);
}

static void on_stop(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    event_base_loopexit(arg, NULL);
}

static const char usage[] =
    "Usage: frontgate broker --token-file PATH [--listen 127.0.0.1:9876] [--expires-in 60]\n"
    "\n"
    "A loopback OAuth2 token endpoint: POST /token answers with the contents of PATH\n"
    "(re-read on every request, so a rotated token is served at once) as\n"
    "{\"access_token\":...,\"token_type\":\"Bearer\",\"expires_in\":N}. Form bodies and Basic\n"
    "credentials are accepted and ignored. GET /healthz is 200 while PATH is readable.\n"
    "Only loopback addresses are accepted: the token is handed to anyone who can connect.\n";

/* A numeric loopback address or "localhost": "127.evil.example" is a name, resolved at bind. */
static int loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return strcmp(host, "localhost") == 0;
}

int fg_broker_main(int argc, char **argv)
{
    struct broker br = {NULL, 60};
    const char *listen = "127.0.0.1:9876";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--token-file") == 0 && i + 1 < argc) {
            br.token_file = argv[++i];
        } else if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen = argv[++i];
        } else if (strcmp(argv[i], "--expires-in") == 0 && i + 1 < argc) {
            const char *v = argv[++i];
            if (fg_parse_u64(v, strlen(v), 86400 * 365, &br.expires_in) != 0 ||
                br.expires_in == 0) {
                fprintf(stderr, "frontgate broker: --expires-in must be a number of seconds\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        } else {
            fprintf(stderr, "frontgate broker: unknown argument \"%s\" (try --help)\n", argv[i]);
            return 2;
        }
    }
    if (br.token_file == NULL) {
        fprintf(stderr, "frontgate broker: --token-file is required\n");
        return 2;
    }
    const char *colon = strrchr(listen, ':');
    uint64_t port;
    if (colon == NULL || fg_parse_u64(colon + 1, strlen(colon + 1), 65535, &port) != 0) {
        fprintf(stderr, "frontgate broker: --listen must be HOST:PORT\n");
        return 2;
    }
    char *host = listen[0] == '['
                     ? fg_strndup(listen + 1, (size_t)(colon - listen) - (colon[-1] == ']' ? 2 : 1))
                     : fg_strndup(listen, (size_t)(colon - listen));
    if (!loopback(host)) {
        fprintf(stderr,
                "frontgate broker: refusing to listen on %s: the broker hands out a credential, "
                "so it only listens on loopback (127.0.0.1 or [::1])\n",
                listen);
        free(host);
        return 2;
    }
    struct event_base *base = event_base_new();
    struct evhttp *http = evhttp_new(base);
    evhttp_set_timeout(http, 10);
    evhttp_set_max_body_size(http, 64 * 1024);
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                         EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH |
                                         EVHTTP_REQ_OPTIONS);
    evhttp_set_gencb(http, handle, &br);
    int rc = 0;
    if (evhttp_bind_socket(http, host, (uint16_t)port) != 0) {
        fprintf(stderr, "frontgate broker: cannot listen on %s: %s%s\n", listen, strerror(errno),
                errno == EADDRINUSE ? " (is another broker already running on this port?)" : "");
        rc = 1;
    } else {
        struct event *s1 = evsignal_new(base, SIGINT, on_stop, base);
        struct event *s2 = evsignal_new(base, SIGTERM, on_stop, base);
        evsignal_add(s1, NULL);
        evsignal_add(s2, NULL);
        fg_log(FG_LOG_INFO, "broker listening on http://%s, serving %s", listen, br.token_file);
        event_base_dispatch(base);
        event_free(s1);
        event_free(s2);
    }
    evhttp_free(http);
    event_base_free(base);
    free(host);
    return rc;
}
