/*
 * accesslog.h - one line per request on stderr, in logfmt:
 *   ... info access method=GET path=/clusters/root:org/api status=200
 *       workspace=root:org cluster=2x8ab3xq user=alice authn=ops-keys
 *       dur_ms=0.412 bytes=1234 peer=127.0.0.1
 * The path is logged without its query; no header value, and so no token,
 * is ever logged. A request is logged once, when it completes or aborts.
 *
 * Lines are batched per worker: the lines of one event-loop pass leave in one
 * write(2) at the end of that pass, in chunks of whole lines of at most
 * PIPE_BUF bytes, so lines of different workers never interleave even on a
 * pipe. One write per line cost ~5 us a request (make bench: 0.82-0.87x of
 * the log-off rate).
 */
#ifndef FG_ACCESSLOG_H
#define FG_ACCESSLOG_H

struct fg_exchange;
struct fg_worker;

void fg_access_log(struct fg_exchange *ex);
struct fg_req;
/* A watch: ?watch=true or =1 (kept out of the request duration, counted as an open stream). */
int fg_req_is_watch(const struct fg_req *r);
/* The worker's batch: set up before its loop runs; flushed and freed after it stops. */
void fg_access_log_init(struct fg_worker *w);
void fg_access_log_free(struct fg_worker *w);

#endif
