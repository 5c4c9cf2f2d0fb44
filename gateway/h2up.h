/*
 * h2up.h - HTTP/2 to shards (shards[].protocol h2, or auto when the shard
 * picks h2 by ALPN): many exchanges multiplexed on few connections.
 *
 * A worker keeps, per shard and config snapshot, at most maxConnections
 * connections of at most min(maxStreamsPerConnection, the shard's
 * SETTINGS_MAX_CONCURRENT_STREAMS) streams each; an exchange that finds no
 * room waits in the worker's queue (no deadline: it holds no shard
 * resource) until a stream ends. Each exchange is one stream with its own
 * request head, identity headers included; upgrades (exec, port-forward)
 * always take an HTTP/1.1 connection (upstream.c).
 *
 * Flow control follows the client: a stream's received bytes are returned
 * to the shard's window only once the client connection took them, so a
 * slow reader holds at most one stream window (256 KiB) here. Request bodies
 * are framed as fast as the shard's window opens, and the client is paused
 * while limits.maxBufferBytes wait. A connection with no stream closes after
 * limits.upstreamIdleTimeout; streams (watches) have no deadline. The
 * shard's GOAWAY stops new streams on that connection; the streams it did
 * not process (REFUSED_STREAM, or above its last stream id) are retried on
 * another connection when their body had not started, any method, since the
 * shard never saw them (RFC 9113 8.7). A connection made under an older
 * snapshot takes only requests that pinned that snapshot and closes when
 * its last stream ends.
 */
#ifndef FG_H2UP_H
#define FG_H2UP_H

#include <event2/buffer.h>
#include <stddef.h>
#include <stdint.h>

struct fg_exchange;
struct fg_upconn;
struct fg_worker;

/* A stream for ex to shard: fg_ex_up_ready (now or once connected) or fg_ex_up_failed. */
void fg_h2up_acquire(struct fg_exchange *ex, uint32_t shard);

/* The fg_up_* functions of upstream.h for a stream. */
int fg_h2up_send_head(struct fg_upconn *u, const char *head, size_t len);
void fg_h2up_write(struct fg_upconn *u, const void *p, size_t n);
void fg_h2up_write_buffer(struct fg_upconn *u, struct evbuffer *src, size_t n);
void fg_h2up_body_end(struct fg_upconn *u);
int fg_h2up_full(struct fg_upconn *u);
void fg_h2up_flush(struct fg_upconn *u);
void fg_h2up_unthrottle(struct fg_upconn *u);
/* The exchange lets go: a stream still open is reset (CANCEL) unless it completed. */
void fg_h2up_release(struct fg_upconn *u, int completed);

/* Idle connections that can no longer serve (another snapshot, draining) close. */
void fg_h2up_sweep(struct fg_worker *w);
/* Closes every HTTP/2 shard connection of w (worker shutdown). */
void fg_h2up_close_all(struct fg_worker *w);

#endif
