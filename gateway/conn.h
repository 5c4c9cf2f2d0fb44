/*
 * conn.h - a client connection and the request it is serving, and the
 * upstream connection paired with it. Internal to gateway/: conn.c owns the
 * client side (HTTP/1.1 parsing, local responses, lifecycle), upstream.c the
 * shard side (pool, connect, response relay), proxy.c the pipeline between
 * them (route, authenticate, forward).
 *
 * Every libevent callback is deferred (BEV_OPT_DEFER_CALLBACKS), so callbacks
 * never nest. A connection is never freed inside a callback chain that still
 * uses it: fg_conn_close() releases resources and marks it dead; the struct
 * goes when the last hold is released.
 */
#ifndef FG_CONN_H
#define FG_CONN_H

#include <event2/bufferevent.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <sys/queue.h>

#include "chunked.h"
#include "h1.h"
#include "route.h"
#include "sanitize.h"
#include "worker.h"

#include "../auth/union.h"

enum conn_state {
    CS_HEAD,     /* reading a request head (or idle between requests) */
    CS_DISPATCH, /* head complete: routing, authenticating, waiting for a shard */
    CS_FORWARD,  /* request sent to the shard: bodies stream both ways */
    CS_TUNNEL,   /* after 101: bytes both ways until either side closes */
    CS_CLOSING,  /* flushing the last response, then closing */
};

struct fg_req {
    struct fg_msg msg;
    struct fg_h1_request line; /* method, version, target form */
    struct fg_req_frame f;     /* framing, Host, Authorization, keep-alive, upgrade */
    uint64_t body_left;        /* Content-Length bytes still to read */
    int body_started;          /* body bytes were sent upstream */
    int body_done;             /* the client finished sending the request (or we gave up on it) */
    int body_abandoned;        /* answered before the body was read: the connection closes */

    struct fg_snapshot *snap;
    struct fg_route_match match;
    int local;                    /* answered by frontgate itself */
    struct fg_identity *identity; /* the policy's identity; NULL when nobody authenticated */
    const char *authn;            /* name of the admitting authenticator */
    const char *reason;           /* why authentication failed, for the log */
    struct fg_union un;           /* union(global, workspace type) for this request */

    int status; /* response status, for the log */
    int logged;
    int resp_started; /* response head written to the client */
    int resp_done;
    int resp_chunked; /* we chunk-encode the body to the client */
    uint64_t bytes_out;
    uint64_t t_start_us;
    int retried;
    struct fg_buf up_head; /* the request head sent upstream, kept for one retry */
};

struct fg_conn {
    struct fg_worker *w;
    struct bufferevent *bev;
    TAILQ_ENTRY(fg_conn) link;
    enum conn_state state;
    int tls;
    int eager; /* plaintext: output is written at once, EV_WRITE armed only when the socket is full
                */
    struct fg_reader rd; /* plaintext: our reads (see fg_reader) */
    int port;            /* listener port */
    char peer[INET6_ADDRSTRLEN];
    char local[INET6_ADDRSTRLEN + 8]; /* our address as the client dialled it: host:port */
    struct fg_h1_scan scan;           /* where the next request head ends */
    struct fg_chunked chunked;        /* our own strict decoder for chunked request bodies */
    int throttled;                    /* reading paused until the shard drains what we sent */
    int close_after;
    int linger; /* the client may still be sending when we close */
    struct event *timer;
    struct event *kick; /* resumes parsing from the loop's top level */
    struct fg_upconn *up;
    struct fg_req req;
    struct fg_union_memo memo; /* the bearer last admitted on this connection (union.h) */
    /* a request frontgate answers itself after reading its (small) body */
    void (*local_done)(struct fg_conn *c, const char *body, size_t len);
    struct fg_buf local_body;
    size_t local_max;
    int local_too_big;
    int holds;
    int dead;
    uint64_t requests;
};

enum up_state { UP_CONNECTING, UP_ACTIVE, UP_IDLE };

struct fg_upconn {
    struct fg_worker *w;
    struct bufferevent *bev;
    struct fg_conn *conn; /* owner while active */
    uint32_t shard;
    struct fg_snapshot *snap; /* the snapshot whose SSL_CTX made it */
    enum up_state state;
    TAILQ_ENTRY(fg_upconn) link;
    http_parser parser;
    struct fg_msg msg;
    int reused;
    int got_bytes; /* any response byte arrived */
    int head_done;
    int msg_done; /* a final response completed */
    int throttled;
    int upgraded;
    int eager; /* see fg_conn.eager */
    struct fg_reader rd;
    int holds;
    int dead;
};

/*
 * Writes what bev's output holds straight to its (plaintext) socket; arms
 * EV_WRITE for whatever the socket did not take, so the bufferevent finishes
 * (and reports errors) as usual. Returns 1 when the output is empty. This
 * saves the epoll_ctl pair a bufferevent spends on every write.
 */
int fg_io_flush(struct bufferevent *bev);
/* Flushes c's and its upstream's eager outputs; call at the end of every callback. */
void fg_conn_flush(struct fg_conn *c);

/* Appends a chunk-size line ("<hex>\r\n") to out. */
void fg_chunk_head(struct evbuffer *out, size_t n);

/* conn.c */
void fg_conn_hold(struct fg_conn *c);
void fg_conn_release(struct fg_conn *c);
void fg_conn_close(struct fg_conn *c);
/* Writes a complete local response (Status JSON unless content_type given). */
void fg_conn_respond(struct fg_conn *c, int status, const char *content_type, const char *body,
                     size_t body_len);
void fg_conn_respond_status(struct fg_conn *c, int status, const char *reason, const char *message);
/*
 * Reads the request body (at most max bytes) and then calls done, which must
 * answer with fg_conn_respond*; body is NULL when it was larger than max. For
 * endpoints frontgate serves itself (the token endpoint).
 */
void fg_conn_read_body(struct fg_conn *c, size_t max,
                       void (*done)(struct fg_conn *c, const char *body, size_t len));
/* The shard is ready for the body: resume parsing the client's request. */
void fg_conn_start_body(struct fg_conn *c);
/* Called when either half of an exchange completes; finishes the request when both have. */
void fg_conn_maybe_finish(struct fg_conn *c);
/* The upstream failed: 502 if nothing was sent to the client, else close. */
void fg_conn_upstream_failed(struct fg_conn *c, const char *why);
/* Re-reads buffered client input from the loop's top level. */
void fg_conn_kick(struct fg_conn *c);
/* Moves the connection into a byte tunnel with its upstream. */
void fg_conn_tunnel(struct fg_conn *c);
/* The shard closed the tunnel: flush to the client, then close. */
void fg_conn_end_tunnel(struct fg_conn *c);
/* The upstream drained: resume reading the client. */
void fg_conn_unthrottle(struct fg_conn *c);
const char *fg_req_header(const struct fg_req *r, int idx, size_t *len);
uint64_t fg_now_us(void);

/* proxy.c */
/* Forgets c's remembered bearer (on close). */
void fg_proxy_forget(struct fg_conn *c);
void fg_proxy_dispatch(struct fg_conn *c);
/* An upstream connection is ready: send the request head. */
void fg_proxy_send_head(struct fg_conn *c);

/* upstream.c */
/* Finds or opens a connection to shard for c; calls fg_proxy_send_head or fails c. */
void fg_up_acquire(struct fg_conn *c, uint32_t shard);
/* Detaches u from its conn: pooled when reusable, else closed. */
void fg_up_release(struct fg_upconn *u, int reusable);
void fg_up_close(struct fg_upconn *u);
void fg_up_unthrottle(struct fg_upconn *u);
void fg_up_tunnel(struct fg_upconn *u);

#endif
