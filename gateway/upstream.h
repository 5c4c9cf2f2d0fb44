/*
 * upstream.h - an exchange's way to its shard.
 *
 * An fg_upconn is what an exchange holds while a shard serves it. It is
 * either an HTTP/1.1 connection from the worker's keep-alive pool
 * (upstream.c), or one stream of an HTTP/2 connection that many exchanges
 * share (h2up.c; shards[].protocol h2 or auto). The exchange sees one
 * interface: it sends the request head (fg_up_send_head), writes the body
 * (fg_up_write*, fg_up_body_end), and hears of the response through the
 * fg_ex_up_* functions (exchange.h); neither kind ever touches a client
 * connection. Every libevent callback is deferred (BEV_OPT_DEFER_CALLBACKS),
 * so callbacks never nest; an fg_upconn closed inside a callback chain is
 * freed when the last hold goes.
 */
#ifndef FG_UPSTREAM_H
#define FG_UPSTREAM_H

#include <event2/bufferevent.h>
#include <http_parser.h>
#include <sys/queue.h>

#include "h1.h"
#include "worker.h"

struct fg_exchange;

enum up_state { UP_CONNECTING, UP_ACTIVE, UP_IDLE };

struct fg_h2up;

struct fg_upconn {
    struct fg_worker *w;
    struct bufferevent *bev;
    uint16_t mlabel; /* its shard's metrics label; counted: in frontgate_upstream_connections */
    int counted;
    struct fg_exchange *ex; /* the exchange it serves while active */
    uint32_t shard;
    struct fg_snapshot *snap; /* the snapshot whose SSL_CTX made it */
    enum up_state state;
    TAILQ_ENTRY(fg_upconn) link;
    http_parser parser;
    struct fg_msg msg;
    int reused;
    int got_bytes; /* any response byte arrived */
    int head_done;
    int msg_done;    /* a final response completed */
    int throttled;   /* reading paused until the client drains */
    int client_full; /* the exchange said the client's output is full */
    int upgraded;
    int eager; /* plaintext: output is written at once (fg_io_flush) */
    struct fg_reader rd;
    int holds;
    int dead;
    /* HTTP/2 (h2up.c): u is one stream of h2 (bev is NULL), or waits for room on one */
    struct fg_h2up *h2;
    TAILQ_ENTRY(fg_upconn) slink; /* h2's streams, or the worker's h2wait queue */
    int32_t sid;                  /* the stream id once the head was submitted */
    int live;                     /* nghttp2 knows the stream: it is freed on its close */
    int waiting;                  /* in the worker's h2wait queue */
    struct event *wait_ev;        /* ... for at most limits.connectTimeout */
    int status;
    struct evbuffer *body; /* request body bytes not yet framed */
    int body_end;          /* the request body is complete */
    int deferred;          /* the DATA source waits for body bytes */
    int want_drained;      /* fg_up_full said full: fg_ex_up_drained once half of it went */
    int drained;           /* ... and it did (reported after the send loop) */
    size_t unconsumed;     /* response bytes not yet returned to the flow-control window */
};

/* Finds or opens a connection to shard for ex; then fg_ex_up_ready or fg_ex_up_failed. */
void fg_up_acquire(struct fg_exchange *ex, uint32_t shard);
/* Forgets its exchange (the exchange already dropped its pointer). */
void fg_up_detach(struct fg_upconn *u);
/* Back to the pool when reusable (a complete response, keep-alive, same snapshot), else closed. */
void fg_up_release(struct fg_upconn *u, int reusable);
void fg_up_close(struct fg_upconn *u);
/* The client side of a tunnel closed: write out what is buffered, then close. */
void fg_up_tunnel_closed(struct fg_upconn *u);

/* The request head frontgate built (HTTP/1.1 text, fg_proxy_build_head); HTTP/2 sends the
 * same fields as a HEADERS frame (names lowercased, connection-specific ones dropped, the
 * request line and Host as pseudo-headers). -1 when it cannot be sent. */
int fg_up_send_head(struct fg_upconn *u, const char *head, size_t len);
/* Request body bytes for the shard. */
void fg_up_write(struct fg_upconn *u, const void *p, size_t n);
/* The request body ended (HTTP/1.1 chunked: the last chunk; HTTP/2: END_STREAM). */
void fg_up_body_end(struct fg_upconn *u, int chunked);
/* n bytes as one chunk of a chunked body. */
void fg_up_write_chunk(struct fg_upconn *u, const void *p, size_t n);
/* Moves n bytes of src. */
void fg_up_write_buffer(struct fg_upconn *u, struct evbuffer *src, size_t n);
/* 1 when what is buffered for the shard reached max_buffer_bytes: fg_ex_up_drained follows
 * once it is down to half. */
int fg_up_full(struct fg_upconn *u);
/* Writes out pending output now (plaintext); 1 when it wrote and nothing is left. */
int fg_up_flush(struct fg_upconn *u);
/* Reading is paused on the client; fg_up_unthrottle resumes it. */
int fg_up_throttled(const struct fg_upconn *u);
void fg_up_unthrottle(struct fg_upconn *u);

/* Why a connect to a shard failed, in words (DNS, refused, the TLS verdict, timeout). */
const char *fg_up_connect_error(struct bufferevent *bev, short what, int tls);
/* For h2up.c: a bufferevent connecting to shard of snap, offering ALPN alpn (may be NULL). */
struct bufferevent *fg_up_new_bev(struct fg_worker *w, struct fg_snapshot *snap, uint32_t shard,
                                  const unsigned char *alpn, unsigned alpn_len);

#endif
