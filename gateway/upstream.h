/*
 * upstream.h - a connection to a shard, from the worker's keep-alive pool.
 *
 * Owned by upstream.c. While it serves an exchange it writes what the
 * exchange gives it (fg_up_write*) and reports the response through the
 * fg_ex_up_* functions (exchange.h); it never touches a client connection.
 * Every libevent callback is deferred (BEV_OPT_DEFER_CALLBACKS), so callbacks
 * never nest; a connection closed inside a callback chain is freed when the
 * last hold goes.
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

struct fg_upconn {
    struct fg_worker *w;
    struct bufferevent *bev;
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

/* Request bytes for the shard. */
void fg_up_write(struct fg_upconn *u, const void *p, size_t n);
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

#endif
