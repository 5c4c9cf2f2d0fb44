/*
 * fetch.h - how authenticators reach the network without owning a socket.
 *
 * gateway/ implements this interface on its control thread (one event loop
 * that runs discovery, JWKS and TokenReview calls for every worker); unit
 * tests implement it with canned answers and a hand-driven clock. All
 * callbacks of one fetcher run on that fetcher's thread, one at a time.
 */
#ifndef FG_FETCH_H
#define FG_FETCH_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

struct fg_fetch_req {
    const char *method;        /* "GET" or "POST" */
    const char *url;           /* http:// or https:// */
    const char *content_type;  /* for a body, or NULL */
    const char *authorization; /* whole header value ("Bearer ..."), or NULL */
    const char *accept;        /* or NULL */
    const void *body;
    size_t body_len;
    SSL_CTX *tls;        /* verifies https:// peers; NULL = the system roots */
    uint64_t timeout_ms; /* whole exchange */
    size_t max_response; /* larger bodies fail the fetch */
    /*
     * Streaming (watches): with on_data set, a 2xx body is handed over piece by piece as it
     * arrives instead of being buffered (max_response does not bound it; the caller bounds
     * what it keeps) and done then gets no body. Any other status is buffered and given to
     * done as usual. on_data runs on the fetcher's thread; it may call cancel.
     */
    void (*on_data)(void *arg, int status, const char *p, size_t n);
};

struct fg_fetch_resp {
    int status;        /* HTTP status, or 0 when the exchange failed */
    const char *error; /* why it failed (status 0), for the log */
    const char *body;  /* NUL-terminated; valid only during the callback */
    size_t body_len;
    const char *cache_control; /* the response header, or NULL */
    const char *retry_after;   /* the response header, or NULL */
};

typedef void (*fg_fetch_done)(void *arg, const struct fg_fetch_resp *resp);
typedef void (*fg_task_fn)(void *arg);

struct fg_fetcher {
    /* Starts an exchange; done runs exactly once, later, on the fetcher's thread. */
    void (*fetch)(struct fg_fetcher *f, const struct fg_fetch_req *req, fg_fetch_done done,
                  void *arg);
    /* Runs fn(arg) on the fetcher's thread after ms milliseconds. */
    void (*after)(struct fg_fetcher *f, uint64_t ms, fg_task_fn fn, void *arg);
    /* Runs fn(arg) on the fetcher's thread soon; callable from any thread. */
    void (*post)(struct fg_fetcher *f, fg_task_fn fn, void *arg);
    /* Ends every exchange started with arg, at once: its done does not run. May be NULL
     * (fetchers for tests that never stream). */
    void (*cancel)(struct fg_fetcher *f, void *arg);
    /* Monotonic milliseconds. */
    uint64_t (*now_ms)(struct fg_fetcher *f);
};

#endif
