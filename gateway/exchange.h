/*
 * exchange.h - one request, from its complete head to the end of its response.
 *
 * Three objects carry a request, each owned by one file, and calls go one way:
 *
 *   client connection (conn.c: HTTP/1.1; h2.c: HTTP/2)
 *       accepts, terminates TLS, frames requests and responses, keeps the
 *       connection alive or closes it. It hosts exchanges (HTTP/1.1: one at a
 *       time; HTTP/2: one per stream) and is reached by them only through its
 *       struct fg_client_ops.
 *   exchange (exchange.c, proxy.c)
 *       the request: routing, authentication (which may park), the identity
 *       policy, the upstream head, and the relay between the two sides. It
 *       reads everything, limits included, from the snapshot it pinned at
 *       dispatch. Its state is enum fg_ex_state.
 *   upstream (upstream.h: upstream.c for HTTP/1.1, h2up.c for HTTP/2)
 *       a connection to a shard from the worker's pool, or a stream on an
 *       HTTP/2 connection the worker's exchanges share. It writes what the
 *       exchange gives it and reports the response (head, body, end, error,
 *       drained) through fg_ex_up_*; it never touches a client connection.
 *
 * An exchange is freed by its client (ops->release) only when nothing holds
 * it: a parked authentication holds it until its answer comes back.
 */
#ifndef FG_EXCHANGE_H
#define FG_EXCHANGE_H

#include <event2/buffer.h>
#include <http_parser.h>
#include <netinet/in.h>

#include "h1.h"
#include "route.h"
#include "sanitize.h"
#include "worker.h"

#include "../auth/union.h"

enum fg_ex_state {
    EX_IDLE,           /* the client is reading a request head (or between requests) */
    EX_ROUTING,        /* head complete: local endpoints, route and workspace */
    EX_AUTHENTICATING, /* the union runs; parked while an authenticator fetches */
    EX_CONNECTING,     /* waiting for a shard connection (pooled, or connecting) */
    EX_FORWARDING,     /* request head sent: the request body streams to the shard */
    EX_STREAMING,      /* the response head reached the client: its body streams */
    EX_TUNNEL,         /* after 101: bytes both ways until either side closes */
    EX_DONE,           /* answered, and the request read (or given up on) */
};

const char *fg_ex_state_name(enum fg_ex_state s);

/* What the exchange knows of the connection hosting it (read-only to it). */
struct fg_client_info {
    char peer[INET6_ADDRSTRLEN];
    char local[INET6_ADDRSTRLEN + 8]; /* our address as the client dialled it: host:port */
    int port;                         /* listener port */
    int tls;
    int h2;
};

struct fg_req {
    struct fg_msg msg;
    struct fg_h1_request line; /* method, version, target form */
    struct fg_req_frame f;     /* framing, Host, Authorization, keep-alive, upgrade */
    int body_started;          /* body bytes were sent upstream */
    int body_done;             /* the client finished sending the request (or we gave up on it) */
    int body_abandoned;        /* answered before the body was read: not reusable */

    struct fg_snapshot *snap;
    struct fg_live *live; /* the kcp index generation match.ws is in (index.fromKcp), or NULL */
    struct fg_route_match match;
    int local;                    /* answered by frontgate itself */
    struct fg_identity *identity; /* the policy's identity; NULL when nobody authenticated */
    const char *authn;            /* name of the admitting authenticator */
    const char *reason;           /* why authentication failed, for the log */
    struct fg_union un;           /* union(global, workspace type) for this request */

    int status; /* response status, for the log */
    int logged;
    int resp_started; /* response head handed to the client */
    int resp_done;
    uint64_t bytes_out;
    uint64_t t_start_us;
    uint64_t t_up_us;   /* the head went to the shard */
    uint64_t up_us;     /* ... until the shard's response head */
    uint64_t t_auth_us; /* authentication began; then how long it took (auth_us) */
    uint64_t auth_us;
    uint64_t bytes_in;   /* request body bytes from the client */
    int stream_kind;     /* counted in frontgate_open_streams: 1 a watch, 2 a tunnel */
    char request_id[65]; /* the client's X-Request-Id when it is a short token, else ours */
    int retried;
    int up_h1;             /* protocol auto: the shard chose HTTP/1.1 by ALPN */
    struct fg_buf up_head; /* the request head sent upstream, kept for one retry */
};

struct fg_exchange;

/* A response head as the exchange hands it to the client connection. */
struct fg_resp_head {
    int status;
    const char *reason; /* the shard's reason phrase (reason_len bytes), or NULL */
    size_t reason_len;
    const struct fg_msg *msg; /* the shard's headers after fg_sanitize_response; NULL: local */
    int upgrade_idx;          /* 101: the Upgrade header in msg */
    int body;                 /* a body follows */
    int length_known;         /* the shard framed it with Content-Length (kept in msg) */
};

/*
 * What a client connection does for its exchanges. Every function is called
 * on the worker's thread, from within a callback of either side.
 */
struct fg_client_ops {
    /* A complete local response (Status JSON unless content_type says otherwise). */
    void (*respond)(struct fg_exchange *ex, int status, const char *content_type, const char *body,
                    size_t len);
    /* The shard's response head; body and end follow. */
    void (*head)(struct fg_exchange *ex, const struct fg_resp_head *h);
    /* Response body bytes; returns 1 when the client's output is full (the upstream stops
     * reading until fg_ex_client_drained). */
    int (*body)(struct fg_exchange *ex, const char *p, size_t n);
    /* The response is complete. */
    void (*end)(struct fg_exchange *ex);
    /* The request head reached the shard (or a local handler wants the body): read it. */
    void (*read_body)(struct fg_exchange *ex);
    /* The shard took what was buffered for it: read more of the request body. */
    void (*resume)(struct fg_exchange *ex);
    /* 101 reached the client: from here on raw bytes (HTTP/1.1 only). */
    void (*tunnel)(struct fg_exchange *ex);
    /* Tunnel bytes from the shard; returns 1 when the client's output is full. */
    int (*tunnel_data)(struct fg_exchange *ex, struct evbuffer *src);
    /* The shard closed the tunnel: flush, then close. */
    void (*tunnel_end)(struct fg_exchange *ex);
    /* Both halves are complete: the client goes on (keep-alive, next stream) or closes. */
    void (*finish)(struct fg_exchange *ex);
    /* The response cannot complete after its head went out: reset the stream or close. */
    void (*abort)(struct fg_exchange *ex);
    /* End of a callback chain on the shard's side: write out what it produced. */
    void (*flush)(struct fg_exchange *ex);
    /* Keep the exchange (and its client) alive across a callback; release may free it. */
    void (*hold)(struct fg_exchange *ex);
    void (*release)(struct fg_exchange *ex);
};

struct fg_upconn;

struct fg_exchange {
    const struct fg_client_ops *ops;
    void *client; /* the connection hosting it, for ops */
    const struct fg_client_info *ci;
    struct fg_worker *w;
    struct fg_union_memo *memo; /* the client connection's remembered bearer (union.h) */
    enum fg_ex_state state;
    struct fg_req req;
    struct fg_upconn *up; /* the shard connection serving it (EX_CONNECTING .. EX_TUNNEL) */
    int throttled;        /* the client stopped reading its body until the shard drains */
    int gone;             /* the client went away (fg_ex_client_gone) */
    /* a request frontgate answers itself after reading its (small) body */
    void (*local_done)(struct fg_exchange *ex, const char *body, size_t len);
    struct fg_buf local_body;
    size_t local_max;
    int local_too_big;
};

/* Sets up ex for a new request on a client connection (req zeroed, no snapshot yet). */
void fg_ex_init(struct fg_exchange *ex, const struct fg_client_ops *ops, void *client,
                const struct fg_client_info *ci, struct fg_worker *w, struct fg_union_memo *memo);
/* Frees what ex owns. */
void fg_ex_free(struct fg_exchange *ex);
/* Empties ex for the next request of an HTTP/1.1 connection, keeping small buffers. */
void fg_ex_reset(struct fg_exchange *ex);

/* The limits ex works under: its pinned snapshot's, else the worker's current ones. */
const struct fg_limits *fg_ex_limits(const struct fg_exchange *ex);
const char *fg_req_header(const struct fg_req *r, int idx, size_t *len);
static inline int fg_req_has_body(const struct fg_req *r)
{
    return r->f.chunked || (r->f.has_cl && r->f.cl > 0);
}

/* ---- from the client connection ------------------------------------------ */

/* The head is complete and checked: pin a snapshot, route, authenticate, forward. */
void fg_ex_dispatch(struct fg_exchange *ex);
/*
 * Request body bytes, in order. Return 1 when the shard's buffer is full: the
 * client stops reading until ops->resume.
 */
int fg_ex_body(struct fg_exchange *ex, const char *p, size_t n);
int fg_ex_body_move(struct fg_exchange *ex, struct evbuffer *src, size_t n);
/* The request body ended. */
void fg_ex_body_end(struct fg_exchange *ex);
/* Tunnel bytes from the client (all of src); 1 when the shard's buffer is full. */
int fg_ex_tunnel_data(struct fg_exchange *ex, struct evbuffer *src);
/* The client's output drained below its mark: let the shard send more. */
void fg_ex_client_drained(struct fg_exchange *ex);
/* The client side of a tunnel closed: the upstream flushes and closes. */
void fg_ex_client_tunnel_closed(struct fg_exchange *ex);
/* The client went away or gave up on ex (logs 499 when unanswered); ex may then be freed. */
void fg_ex_client_gone(struct fg_exchange *ex);
/* A malformed request body (or head continuation): answer status unless the response began. */
void fg_ex_client_error(struct fg_exchange *ex, int status);
/* Writes out the upstream's pending output (end of a client callback). */
void fg_ex_flush_upstream(struct fg_exchange *ex);
/* The upstream is paused on the client's output. */
int fg_ex_upstream_throttled(const struct fg_exchange *ex);

/* ---- answering (proxy.c, tokenep.c) -------------------------------------- */

void fg_ex_respond(struct fg_exchange *ex, int status, const char *content_type, const char *body,
                   size_t len);
/* An error in the client's dialect: a Kubernetes Status, or Iceberg's error model. */
void fg_ex_respond_status(struct fg_exchange *ex, int status, const char *reason,
                          const char *message);
/*
 * Reads the request body (at most max bytes) and then calls done, which must
 * answer with fg_ex_respond*; body is NULL when it was larger than max. For
 * endpoints frontgate serves itself (the token endpoint).
 */
void fg_ex_read_body(struct fg_exchange *ex, size_t max,
                     void (*done)(struct fg_exchange *ex, const char *body, size_t len));
/* The response is complete: finish when the request is too. */
void fg_ex_response_done(struct fg_exchange *ex);

/* ---- from the upstream (upstream.c) -------------------------------------- */

/* A connection is ready: send the request head (and then the body). */
void fg_ex_up_ready(struct fg_exchange *ex);
/* The response head; returns 0, or -1 to refuse it (a 101 nobody asked for). */
int fg_ex_up_head(struct fg_exchange *ex, const struct fg_resp_head *h);
/* Response body bytes; 1 when the client is full (stop reading; fg_up_unthrottle follows). */
int fg_ex_up_body(struct fg_exchange *ex, const char *p, size_t n);
void fg_ex_up_end(struct fg_exchange *ex);
/* 101 relayed: tunnel from here on. */
void fg_ex_up_upgraded(struct fg_exchange *ex);
int fg_ex_up_tunnel_data(struct fg_exchange *ex, struct evbuffer *src);
void fg_ex_up_tunnel_end(struct fg_exchange *ex);
/* The upstream failed (and is closed, detached): 502 if nothing reached the client. */
void fg_ex_up_failed(struct fg_exchange *ex, const char *why);
/* A reused connection was found closed before any response byte: retried once when
 * the request allows it (returns 1), else the caller fails. unprocessed: the shard said it
 * never processed the request (HTTP/2 REFUSED_STREAM, GOAWAY), so any method may go again. */
int fg_ex_up_retry(struct fg_exchange *ex, int unprocessed);
/* The upstream's output drained below its mark. */
void fg_ex_up_drained(struct fg_exchange *ex);
/* End of an upstream callback: the client writes out what it was given. */
void fg_ex_up_flush(struct fg_exchange *ex);
void fg_ex_hold(struct fg_exchange *ex);
void fg_ex_release(struct fg_exchange *ex);

/* ---- proxy.c ---------------------------------------------------------------- */

/* Builds the HTTP/1.1 request head for the shard. */
void fg_proxy_build_head(struct fg_exchange *ex, struct fg_buf *b);

#endif
