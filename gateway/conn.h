/*
 * conn.h - a client connection: accept, TLS, the HTTP/1.1 framing of its
 * requests and responses, keep-alive, pipelining (one request at a time,
 * answered in order), timeouts, and the close paths. It hosts one exchange
 * (exchange.h) at a time and implements struct fg_client_ops for it; it
 * never touches the exchange's upstream.
 *
 * Every libevent callback is deferred (BEV_OPT_DEFER_CALLBACKS), so callbacks
 * never nest. A connection is never freed inside a callback chain that still
 * uses it: fg_conn_close() releases resources and marks it dead; the struct
 * goes when the last hold is released.
 */
#ifndef FG_CONN_H
#define FG_CONN_H

#include <event2/bufferevent.h>
#include <sys/queue.h>

#include "chunked.h"
#include "exchange.h"
#include "h1.h"
#include "worker.h"

enum conn_state {
    CS_HEAD,     /* reading a request head (or idle between requests) */
    CS_EXCHANGE, /* head complete: the exchange runs; its body is read when it asks */
    CS_TUNNEL,   /* after 101: bytes both ways until either side closes */
    CS_CLOSING,  /* flushing the last response, then closing */
};

struct fg_conn {
    struct fg_worker *w;
    struct bufferevent *bev;
    TAILQ_ENTRY(fg_conn) link;
    enum conn_state state;
    struct fg_client_info ci;
    int eager; /* plaintext: output is written at once, EV_WRITE armed only when the socket is full
                */
    struct fg_reader rd;       /* plaintext: our reads (see fg_reader) */
    struct fg_h1_scan scan;    /* where the next request head ends */
    struct fg_chunked chunked; /* our own strict decoder for chunked request bodies */
    uint64_t body_left;        /* Content-Length bytes still to read */
    int body_open;             /* the exchange asked for the request body */
    int resp_chunked;          /* we chunk-encode the response body */
    int throttled;             /* reading paused until the shard drains what we sent */
    int close_after;
    int linger; /* the client may still be sending when we close */
    struct event *timer;
    struct event *kick; /* resumes parsing from the loop's top level */
    struct fg_exchange ex;
    struct fg_union_memo memo; /* the bearer last admitted on this connection (union.h) */
    struct fg_h2 *h2;          /* HTTP/2: the session (h2.c), hosting one exchange per stream */
    int h2_ok;                 /* plaintext listener with http2: true (prior knowledge) */
    int proto_known;           /* HTTP/1.1 or HTTP/2 was decided */
    size_t listener;           /* index of its listener in the config */
    int holds;
    int dead;
    uint64_t requests;
};

void fg_conn_hold(struct fg_conn *c);
void fg_conn_release(struct fg_conn *c);
void fg_conn_close(struct fg_conn *c);
/* Runs the connection's input processing from the loop's top level. */
void fg_conn_kick(struct fg_conn *c);
/* Flushes c's eager output (and its exchange's upstream); call at the end of every callback. */
void fg_conn_flush(struct fg_conn *c);

#endif
