/*
 * accesslog.h - one line per request on stderr, in logfmt:
 *   ... info access method=GET path=/clusters/root:org/api status=200
 *       workspace=root:org cluster=2x8ab3xq user=alice authn=ops-keys
 *       dur_ms=0.412 bytes=1234 peer=127.0.0.1
 * The path is logged without its query; no header value, and so no token,
 * is ever logged. A request is logged once, when it completes or aborts.
 */
#ifndef FG_ACCESSLOG_H
#define FG_ACCESSLOG_H

struct fg_conn;

void fg_access_log(struct fg_conn *c);

#endif
