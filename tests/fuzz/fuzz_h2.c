/*
 * libFuzzer: arbitrary bytes as a client's HTTP/2 frames into a downstream session (gateway/h2.c)
 * hosted by a real client connection (gateway/conn.c) over a bufferevent pair: nghttp2's
 * callbacks, the request-head checks, streams and their exchanges, the limits (header list,
 * CONTINUATION, rapid reset), request bodies read by the token endpoint, and the close paths.
 *
 * The first input byte steers the harness, the rest is what the client sends:
 *   bit 0     the rest is sent as it is; otherwise the client preface and an empty SETTINGS
 *             frame go first
 *   bit 1     the client reads nothing of what frontgate writes until the end
 *   bit 2     the client goes away at the end (EOF) instead of frontgate closing with GOAWAY
 *   bit 3     no event-loop pass between pieces (several reads land in one pass)
 *   bits 4-6  piece size: 0 sends everything at once, k gives pieces of 1 to 4^(k-1) bytes
 *   bit 7     the worker drains (SIGTERM) once half of it was sent
 *
 * The connection is built here as conn.c's accept and start_h2 build one (conn.c takes a socket,
 * and its read, write, timer and kick callbacks are static): input goes through fg_h2_input, and
 * fg_conn_flush writes out (fg_h2_send) and closes as the callbacks would. Timers never fire
 * here; the end of the input plays the idle timeout (fg_h2_goaway), then fg_conn_close (which
 * closes the session) and the last release (which frees it).
 *
 * Nothing reaches a shard: the only authenticator is a key set whose one key nobody knows, so
 * every routed request is answered 401 (or 403, 404, 400, ...) by frontgate; connect() aborts to
 * prove it. Oracles besides ASan, UBSan and LeakSanitizer: after each input the connection is
 * closed and gone from its worker, and no request is left counted or holding a snapshot.
 */
#include "../../auth/statickeys.h"
#include "../../gateway/conn.h"
#include "../../gateway/h2.h"
#include "../../gateway/snapshot.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define F_RAW     0x01
#define F_STALL   0x02
#define F_EOF     0x04
#define F_NO_LOOP 0x08
#define F_DRAIN   0x80

static const char yaml[] =
    "listeners: [{address: '127.0.0.1:0', http2: true}]\n"
    "shards:\n"
    "  - {name: a, url: 'http://127.0.0.1:1/base'}\n"
    "  - {name: lake, url: 'http://127.0.0.1:2'}\n"
    "routes:\n"
    "  - {prefix: /clusters/, workspace: path}\n"
    "  - {prefix: /catalog/v1/, workspace: iceberg, tokenEndpoint: {authenticator: keys}}\n"
    "  - {prefix: /api, shard: a}\n"
    "workspaces:\n"
    "  - {cluster: root, path: root, shard: a}\n"
    "  - {cluster: gone, path: 'root:gone', shard: a, phase: Unavailable}\n"
    "  - {cluster: 550e8400-e29b-41d4-a716-446655440000, warehouse: demo, shard: lake}\n"
    "authenticators:\n"
    "  - {name: keys, staticKeys: {file: keys.txt}}\n"
    "authentication: {global: [keys]}\n"
    "limits: {maxHeaderBytes: 1Ki, maxConcurrentStreams: 4, maxBufferBytes: 16Ki}\n"
    "log: {accessLog: true}\n";

static struct event_base *base;
static struct fg_snapshot *snap;
static struct fg_worker w;

/* The tripwire: a request got past authentication and is dialling a shard. */
int connect(int fd, __CONST_SOCKADDR_ARG addr, socklen_t len)
{
    (void)fd;
    (void)addr;
    (void)len;
    fprintf(stderr, "fuzz_h2: connect() called: a request reached a shard\n");
    abort();
}

static int contains(const char *p, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    for (size_t i = 0; i + l <= n; i++)
        if (memcmp(p + i, lit, l) == 0)
            return 1;
    return 0;
}

/*
 * The worker's access-log flush at the end of a loop pass, except that the lines are checked and
 * dropped, not written: each is one line, whatever the request carried (no log injection).
 */
static void access_check(void)
{
    if (w.access.data == NULL)
        return; /* nothing logged yet (and NULL + 0 is undefined) */
    const char *p = w.access.data, *end = p + w.access.len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL || !contains(p, (size_t)(nl - p), " info access method="))
            abort();
        for (; p < nl; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                abort();
        p = nl + 1;
    }
    fg_buf_reset(&w.access);
}

static void access_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    access_check();
}

/* keys.txt holds one freshly made key, so the key set is not empty and no client knows it. */
static void setup(void)
{
    const char *tmp = getenv("TMPDIR");
    char dir[512], path[600], key[64], hex[65];
    snprintf(dir, sizeof(dir), "%s/fuzz_h2.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL)
        abort();
    snprintf(path, sizeof(path), "%s/keys.txt", dir);
    fg_statickeys_generate(key, sizeof(key), hex, sizeof(hex));
    OPENSSL_cleanse(key, sizeof(key));
    FILE *f = fopen(path, "w");
    if (f == NULL || fprintf(f, "# nobody holds this key\nci:%s:dev\n", hex) < 0 || fclose(f) != 0)
        abort();
    char yaml_path[600];
    snprintf(yaml_path, sizeof(yaml_path), "%s/fuzz.yaml", dir);
    struct fg_errs errs = {0};
    struct fg_config *cfg = fg_config_parse(yaml_path, yaml, sizeof(yaml) - 1, &errs);
    if (cfg)
        snap = fg_snapshot_build(cfg, 0, NULL, &errs); /* generation 0: never synced away */
    unlink(path);
    rmdir(dir);
    if (snap == NULL) {
        fg_errs_print(&errs, 0);
        abort();
    }
    fg_errs_free(&errs);
    /* the worker as server.c's worker_init makes it, without listeners, DNS or a mailbox */
    struct event_config *ec = event_config_new();
    event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
    base = event_base_new_with_config(ec);
    event_config_free(ec);
    if (base == NULL)
        abort();
    w.base = base;
    w.mailbox_fd = -1;
    pthread_mutex_init(&w.authq_lock, NULL);
    TAILQ_INIT(&w.conns);
    TAILQ_INIT(&w.h2conns);
    TAILQ_INIT(&w.h2wait);
    w.access_flush = event_new(base, -1, 0, access_cb, NULL);
    w.snap = snap; /* the snapshot's one reference is the worker's */
    fg_pools_reset(&w, snap->cfg->nshards);
}

/* Runs what is due now (deferred bufferevent callbacks, kicks, finalizers), never waiting. */
static void spin(void)
{
    for (int i = 0; i < 8; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        if (event_base_get_num_events(base, EVENT_BASE_COUNT_ACTIVE) == 0)
            break;
    }
}

/* conn.c's process_input for an HTTP/2 connection. */
static void process(struct fg_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (c->state == CS_CLOSING)
        evbuffer_drain(in, evbuffer_get_length(in));
    else if (!c->dead && fg_h2_input(c->h2, in) < 0)
        c->linger = 1; /* the session is closed: the next fg_conn_flush starts closing */
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fg_conn *c = arg;
    fg_conn_hold(c);
    process(c);
    fg_conn_flush(c);
    fg_conn_release(c);
}

/* Timeouts (header, idle, linger) are seconds away: the end of the input plays them. */
static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* The connection's own exchange serves HTTP/1.1 only: any call through it crashes here. */
static const struct fg_client_ops no_ops;

static struct fg_conn *conn_new(struct bufferevent *bev)
{
    struct fg_conn *c = fg_calloc(1, sizeof(*c));
    c->w = &w;
    c->bev = bev;
    c->h2_ok = 1;
    c->ci.port = 8080;
    memcpy(c->ci.peer, "192.0.2.7", 10);
    memcpy(c->ci.local, "192.0.2.1:8080", 15);
    fg_ex_init(&c->ex, &no_ops, c, &c->ci, &w, &c->memo);
    c->timer = evtimer_new(base, timer_cb, c);
    c->kick = event_new(base, -1, 0, kick_cb, c);
    TAILQ_INSERT_TAIL(&w.conns, c, link);
    w.nconns++;
    __atomic_add_fetch(&fg_state.conns, 1, __ATOMIC_RELAXED);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    /* start_h2 */
    c->proto_known = 1;
    c->h2 = fg_h2_new(c);
    if (c->h2 == NULL)
        abort();
    c->ci.h2 = 1;
    c->state = CS_EXCHANGE;
    bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
    return c;
}

/* The client (the pair's other end) reads what frontgate wrote; write_cb would report the drain. */
static void client_reads(struct fg_conn *c, struct bufferevent *client)
{
    bufferevent_enable(client, EV_READ); /* the pair moves the output over */
    struct evbuffer *in = bufferevent_get_input(client);
    size_t n = evbuffer_get_length(in);
    evbuffer_drain(in, n);
    bufferevent_disable(client, EV_READ);
    if (n == 0 || c->dead)
        return;
    if (c->state != CS_CLOSING)
        fg_h2_drained(c->h2);
    fg_conn_flush(c);
}

static size_t piece_size(const uint8_t *p, size_t left, unsigned k)
{
    if (k == 0)
        return left;
    size_t max = (size_t)1 << (2 * (k - 1)), v = p[0];
    if (left > 1)
        v |= (size_t)p[1] << 8;
    size_t n = 1 + v % max;
    return n < left ? n : left;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                                     "\x00\x00\x00\x04\x00\x00\x00\x00\x00"; /* SETTINGS */
    if (size == 0 || size > (1 << 16))
        return 0;
    if (base == NULL)
        setup();
    unsigned flags = data[0], k = (flags >> 4) & 7;
    size_t pre = flags & F_RAW ? 0 : sizeof(preface) - 1, len = pre + size - 1;
    uint8_t *stream = malloc(len ? len : 1);
    memcpy(stream, preface, pre);
    memcpy(stream + pre, data + 1, size - 1);

    struct bufferevent *pair[2];
    if (bufferevent_pair_new(base, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS, pair) != 0)
        abort();
    struct fg_conn *c = conn_new(pair[0]);
    fg_conn_hold(c);
    for (size_t off = 0; off < len && !c->dead;) {
        size_t n = piece_size(stream + off, len - off, k);
        struct evbuffer *in = bufferevent_get_input(c->bev);
        size_t had = evbuffer_get_length(in);
        bufferevent_write(pair[1], stream + off, n);
        if (evbuffer_get_length(in) != had + n)
            abort(); /* the harness: the pair did not deliver */
        off += n;
        process(c);
        fg_conn_flush(c);
        if ((flags & F_DRAIN) && !w.draining && off >= len / 2) {
            w.draining = 1; /* as the worker's mailbox does on SIGTERM */
            fg_conn_drain_all(&w);
        }
        if (!(flags & F_NO_LOOP))
            spin();
        if (!(flags & F_STALL))
            client_reads(c, pair[1]);
    }
    spin();
    client_reads(c, pair[1]);
    if (!(flags & F_EOF) && !c->dead && c->state != CS_CLOSING) {
        fg_h2_goaway(c->h2); /* as the idle timer does */
        fg_conn_flush(c);
        spin();
        client_reads(c, pair[1]);
    }
    fg_conn_close(c);
    fg_conn_release(c);
    bufferevent_free(pair[1]);
    spin();
    free(stream);
    w.draining = 0;

    if (w.nconns != 0 || !TAILQ_EMPTY(&w.conns) || fg_state.conns != 0)
        abort(); /* the connection was not closed */
    if (fg_state.requests != 0 || snap->refs != 1)
        abort(); /* a request kept its snapshot (or the counter drifted) */
    access_check();
    return 0;
}
