/*
 * worker.h - one worker thread: its own event_base, its own SO_REUSEPORT
 * listening sockets, its own upstream pools. A connection lives and dies on
 * the worker that accepted it; workers share only the config snapshot (by
 * reference) and a few atomic counters.
 */
#ifndef FG_WORKER_H
#define FG_WORKER_H

#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <pthread.h>
#include <sys/queue.h>

#include "snapshot.h"

struct fg_conn;
struct fg_upconn;

struct fg_h2up;

struct fg_pool {
    TAILQ_HEAD(fg_upconn_list, fg_upconn) idle; /* HTTP/1.1 connections between requests */
    size_t nidle;
    int auto_h1; /* protocol auto: the shard chose HTTP/1.1 by ALPN (for this snapshot) */
};

struct fg_listen_arg {
    struct fg_worker *w;
    size_t index;         /* into the snapshot's listeners */
    int port;             /* as bound, for X-Forwarded-Port */
    struct event *resume; /* re-enables accepting after the process ran out of descriptors */
};

struct fg_worker {
    int id;
    pthread_t thread;
    struct event_base *base;
    struct evdns_base *dns;
    struct evconnlistener **listeners;
    struct fg_listen_arg *listen_args;
    size_t nlisteners;
    /*
     * Other threads reach a worker only through its mailbox, an eventfd: a new
     * snapshot, shutdown, or parked authentications coming back. Everything
     * else stays on the worker, so its event_base runs without locks.
     */
    int mailbox_fd;
    struct event *mailbox;
    struct fg_snapshot *snap; /* what new requests pin */
    struct fg_live *live;     /* the kcp index generation new requests pin (index.fromKcp) */
    struct fg_pool *pools;    /* per shard of snap */
    size_t npools;
    TAILQ_HEAD(fg_h2up_list, fg_h2up) h2conns; /* every HTTP/2 shard connection (h2up.c) */
    struct fg_upconn_list h2wait;              /* streams waiting for room on one */
    pthread_mutex_t authq_lock; /* parked authentications coming back from other threads */
    struct fg_authn_waiter *authq;
    TAILQ_HEAD(fg_conn_list, fg_conn) conns;
    size_t nconns;
    int draining;
    struct fg_buf access;        /* access-log lines of this loop pass (accesslog.h) */
    struct fg_wmetrics *metrics; /* this worker's counters (metrics.h) */
    struct event *access_flush;  /* writes them out at the end of the pass */
};

/* Process-wide state the workers read. */
struct fg_server_state {
    long conns;    /* atomic: open client connections, all workers */
    long requests; /* atomic: requests in flight, all workers */
    int draining;  /* atomic: SIGTERM received: stop accepting, finish in-flight */
    int ready;     /* atomic: listeners up and config loaded */
};

extern struct fg_server_state fg_state;

/* Accept callback for a worker's listeners (conn.c). */
void fg_conn_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int slen,
                    void *arg);
/* Closes connections with no request in flight; the rest close after their response. */
void fg_conn_drain_all(struct fg_worker *w);

struct fg_authn_waiter;
/* fg_authn_waiter.post for requests on a worker (owner = the worker): thread-safe. */
void fg_worker_post_waiter(struct fg_authn_waiter *w);
/* Runs the posted waiters' done callbacks (on the worker's thread). */
void fg_worker_run_waiters(struct fg_worker *w);
/* Wakes the worker's mailbox from any thread. */
void fg_worker_notify(struct fg_worker *w);

/* A reload changed what an HTTP/2 client connection announced in its SETTINGS (the
 * listener's http2, limits.maxConcurrentStreams or maxHeaderBytes): such connections get
 * GOAWAY(NO_ERROR), finish their streams and close, so clients reconnect under the new ones. */
void fg_conn_settings_changed(struct fg_worker *w, const struct fg_config *old,
                              const struct fg_config *cur);
/* Closes every connection of w now (shutdown after the grace period). */
void fg_conn_close_all(struct fg_worker *w);

/*
 * Moves the worker to the installed snapshot if it changed (one atomic load
 * when it did not). Called before each request pins a snapshot, so a request
 * that starts after a reload was logged always sees the new config.
 */
void fg_worker_sync_snapshot(struct fg_worker *w);
/* Takes the current kcp index generation when it changed: one atomic load when it did not. */
void fg_worker_sync_live(struct fg_worker *w);

/* Upstream pool (upstream.c). */
void fg_pools_reset(struct fg_worker *w, size_t nshards);
void fg_pools_free(struct fg_worker *w);

/* CLOCK_MONOTONIC in microseconds. */
uint64_t fg_now_us(void);

/* Appends a chunk-size line ("<hex>\r\n") to out. */
void fg_chunk_head(struct evbuffer *out, size_t n);
/*
 * Writes what bev's output holds straight to its (plaintext) socket; arms
 * EV_WRITE for whatever the socket did not take, so the bufferevent finishes
 * (and reports errors) as usual. Returns 1 when the output is empty. This
 * saves the epoll_ctl pair a bufferevent spends on every write.
 */
int fg_io_flush(struct bufferevent *bev);

/*
 * fg_reader: reads for a plaintext socket done by frontgate rather than its
 * bufferevent: one readv into the bufferevent's input buffer, without the
 * FIONREAD ioctl libevent issues before every read (a syscall per read that
 * costs more than the parse). The bufferevent still writes, and is never
 * enabled for EV_READ. Reading pauses while the input holds `high` bytes.
 */
struct fg_reader {
    struct event *ev;
    struct bufferevent *bev;
    void (*on_data)(void *arg);
    void (*on_close)(void *arg, short what); /* BEV_EVENT_EOF / _ERROR / _TIMEOUT | _READING */
    void *arg;
    size_t high;
    uint64_t timeout_ms; /* 0: none */
    int timeout_dropped; /* a timeout was set and must come off the armed event */
    int want;            /* the owner wants reads */
};

void fg_reader_init(struct fg_reader *r, struct event_base *base, struct bufferevent *bev,
                    void (*on_data)(void *), void (*on_close)(void *, short), void *arg,
                    size_t high);
/* Wants (or stops wanting) reads; re-arms after the input drained below high. */
void fg_reader_set(struct fg_reader *r, int want);
/* A read inactivity timeout (0 for none), applied from the next fg_reader_set. */
void fg_reader_timeout(struct fg_reader *r, uint64_t ms);
void fg_reader_free(struct fg_reader *r);

#endif
