/*
 * h2.h - the HTTP/2 framing of a client connection (RFC 9113, nghttp2).
 *
 * A client connection (conn.c) that negotiated h2 by ALPN, or sent the
 * prior-knowledge preface on a plaintext listener with `http2: true`, hands
 * its input to a session here. Every stream is an exchange (exchange.h) with
 * these client ops; the shard side is the same as for HTTP/1.1.
 *
 * Limits: SETTINGS_MAX_CONCURRENT_STREAMS is limits.maxConcurrentStreams, a
 * stream's header list (decoded, as RFC 9113 counts it) is at most
 * limits.maxHeaderBytes (431 beyond; past 4x the connection is closed, so an
 * HPACK bomb or an endless CONTINUATION chain costs no memory), request bodies
 * are read only as fast as the shard takes them (the stream's window is
 * returned as its bytes leave for the shard), responses are buffered up to
 * limits.maxBufferBytes per stream before the shard is paused. Client resets
 * of unfinished streams are rate-limited (rapid reset, CVE-2023-44487):
 * beyond a burst of 2x maxConcurrentStreams, refilled at maxConcurrentStreams
 * a second, the connection gets GOAWAY(ENHANCE_YOUR_CALM) and closes.
 */
#ifndef FG_H2_H
#define FG_H2_H

#include <event2/buffer.h>
#include <stddef.h>

struct fg_conn;
struct fg_h2;

/* The 24-byte client preface: 1 when buf starts with it, 0 when it cannot, -1 when too short. */
int fg_h2_is_preface(const char *buf, size_t len);
/* Starts the session on c (sends our SETTINGS); NULL when nghttp2 refused. */
struct fg_h2 *fg_h2_new(struct fg_conn *c);
/* Feeds the client's bytes (all of in); -1 when the connection must close after the GOAWAY
 * written for it, -2 when it must close at once (not HTTP/2, or flooding: no GOAWAY). */
int fg_h2_input(struct fg_h2 *s, struct evbuffer *in);
/* Writes frames into the client's output while it has room; -1 when the session is over. */
int fg_h2_send(struct fg_h2 *s);
/* The client's output drained: write more, let paused shards go on. */
void fg_h2_drained(struct fg_h2 *s);
/* Flushes the upstreams of every stream (end of a client callback). */
void fg_h2_flush_upstreams(struct fg_h2 *s);
/* Streams not yet complete. */
size_t fg_h2_active(const struct fg_h2 *s);
/* Graceful shutdown: GOAWAY with the last stream we processed; close when the rest finished. */
void fg_h2_goaway(struct fg_h2 *s);
/* 1 when the session has nothing left to do (closing, or GOAWAY sent and no stream left). */
int fg_h2_finished(const struct fg_h2 *s);
/* The connection closes: every stream's exchange goes. */
void fg_h2_close(struct fg_h2 *s);
/* Frees the session (after fg_h2_close, when the connection is freed). */
void fg_h2_free(struct fg_h2 *s);

#endif
