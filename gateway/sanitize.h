/*
 * sanitize.h - every header rule, in one place, for both directions.
 *
 * What a client sends is classified here; what frontgate forwards is decided
 * here: framing (frontgate writes its own), hop-by-hop headers and every
 * header a Connection line names (RFC 9110 7.6.1), inbound identity and
 * forwarding headers in any spelling, '_' for '-' included (CGI, WSGI, Rack
 * and PHP read X_Remote_User as X-Remote-User), Host (RFC 3986 3.2.2), and
 * which upgrades may become tunnels. The shard trusts what frontgate stamps,
 * so the identity headers are written here too, after everything inbound of
 * their kind is gone. Pure functions; unit-tested in tests/unit/test_http.c
 * and fuzzed from raw bytes to the upstream head (tests/fuzz/fuzz_head.c).
 */
#ifndef FG_SANITIZE_H
#define FG_SANITIZE_H

#include "h1.h"

struct fg_identity;

enum fg_hdr_kind {
    FG_HDR_OTHER, /* passed through */
    FG_HDR_HOST,
    FG_HDR_CONTENT_LENGTH, /* framing: frontgate writes its own */
    FG_HDR_TRANSFER_ENCODING,
    FG_HDR_CONNECTION, /* hop-by-hop */
    FG_HDR_UPGRADE,    /* hop-by-hop, kept for upgrade requests a route allows */
    FG_HDR_HOP,        /* other hop-by-hop: Keep-Alive, TE, Trailer, Proxy-* */
    FG_HDR_IDENTITY,   /* X-Remote-*: never trusted from a client */
    FG_HDR_FORWARDED,  /* X-Forwarded-*, Forwarded, X-Real-IP: set by frontgate */
    FG_HDR_AUTHORIZATION,
    FG_HDR_EXPECT,
    FG_HDR_SPOOF, /* a reserved name spelled with '_' for '-': dropped */
};

/* Classifies a header name (case-insensitive; '_' variants of reserved names are SPOOF). */
enum fg_hdr_kind fg_hdr_classify(const char *name, size_t len);

/* True when name equals lit, ASCII case-insensitively, with '_' and '-' the same. */
int fg_hdr_name_eq(const char *name, size_t len, const char *lit);

/* True when name is one of the comma-separated tokens of a Connection value. */
int fg_conn_token_lists(const char *value, size_t vlen, const char *name, size_t nlen);

/* Calls fn for each comma-separated, trimmed, non-empty token of value. */
void fg_each_token(const char *value, size_t vlen, void (*fn)(void *arg, const char *tok, size_t n),
                   void *arg);

/* True when a Transfer-Encoding value is exactly "chunked" (any case; OWS around it). */
int fg_te_is_chunked(const char *value, size_t vlen);

/* A Host value (or an absolute-form authority): host [":" port], RFC 3986 3.2.2. */
int fg_sanitize_host_ok(const char *v, size_t n);

/* What a request head says about its framing and its connection. */
struct fg_req_frame {
    int host_idx; /* header index, or -1 */
    int auth_idx; /* Authorization header index, or -1 */
    int chunked;  /* Transfer-Encoding: chunked */
    int has_cl;   /* Content-Length */
    uint64_t cl;
    int keepalive; /* the connection may serve another request after this one */
    int upgrade;   /* Upgrade with Connection: upgrade (the route decides whether it tunnels) */
    int upgrade_idx;
    int expect_continue;
};

/*
 * Classifies m's headers, marks the ones that must not be forwarded (hop-by-hop,
 * Connection-listed), and checks framing: one Host (valid; an absolute-form
 * authority replaces it), at most one Content-Length (digits only) and never
 * with Transfer-Encoding, Transfer-Encoding only "chunked" and only in HTTP/1.1,
 * one Authorization, Expect only 100-continue, at most 64 Connection options.
 * Returns 0, or the status to answer with (400, 417).
 */
int fg_sanitize_request(struct fg_msg *m, const struct fg_h1_request *rq, struct fg_req_frame *f);

/*
 * True when every protocol an Upgrade value lists is one of allowed (compared
 * case-insensitively, "SPDY/3.1" with its version). h2c is never allowed: a
 * client speaking its own HTTP/2 over frontgate's shard connection would carry
 * its own identity headers.
 */
int fg_sanitize_upgrade_allowed(const char *value, size_t n, char *const *allowed, size_t nallowed);

/* The protocols a route tunnels when it names none: WebSocket (kube's channel protocols ride it)
 * and SPDY/3.1 (kubectl exec, attach, port-forward). */
extern char *const fg_sanitize_default_upgrades[];
extern const size_t fg_sanitize_ndefault_upgrades;

/* How the inbound headers of one request are copied upstream. */
struct fg_copy_rules {
    int keep_auth;      /* forward Authorization */
    int keep_upgrade;   /* forward Upgrade (an allowed upgrade) */
    char *const *strip; /* names the route removes (any case, '_' = '-') */
    size_t nstrip;
};

/*
 * Appends to b every header of m (after fg_sanitize_request) that may reach a
 * shard: only FG_HDR_OTHER (less the route's strip list), Authorization and
 * Upgrade as rules say. Never framing, hop-by-hop, identity, forwarding, Host
 * or Expect: frontgate writes those itself.
 */
void fg_sanitize_copy_headers(struct fg_buf *b, const struct fg_msg *m,
                              const struct fg_copy_rules *rules);

/* Appends X-Remote-User, -Uid, one -Group per group and -Extra-<escaped key> per value. */
void fg_sanitize_stamp_identity(struct fg_buf *b, const struct fg_identity *id);

/* Appends the framing headers frontgate writes itself (Transfer-Encoding or Content-Length,
 * Connection: Upgrade). */
void fg_sanitize_framing(struct fg_buf *b, const struct fg_req_frame *f);

/* Appends "name: value\r\n". */
void fg_sanitize_add(struct fg_buf *b, const char *name, const char *value, size_t vlen);

/*
 * A response head from a shard: classifies its headers and marks the ones every
 * Connection line names (RFC 9110 7.6.1). *upgrade_idx is the Upgrade header or -1.
 */
void fg_sanitize_response(struct fg_msg *m, int *upgrade_idx);

#endif
