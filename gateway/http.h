/*
 * http.h - pure HTTP/1.1 helpers: which headers a proxy must drop or may
 * pass, framing checks, status lines and the Kubernetes Status body.
 * No I/O; unit-tested in tests/unit/test_http.c.
 */
#ifndef FG_HTTP_H
#define FG_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "../config/base.h"

enum fg_hdr_kind {
    FG_HDR_OTHER, /* passed through */
    FG_HDR_HOST,
    FG_HDR_CONTENT_LENGTH, /* framing: frontgate writes its own */
    FG_HDR_TRANSFER_ENCODING,
    FG_HDR_CONNECTION, /* hop-by-hop */
    FG_HDR_UPGRADE,    /* hop-by-hop, kept for upgrade requests */
    FG_HDR_HOP,        /* other hop-by-hop: Keep-Alive, TE, Trailer, Proxy-* */
    FG_HDR_IDENTITY,   /* X-Remote-*: never trusted from a client */
    FG_HDR_FORWARDED,  /* X-Forwarded-*, Forwarded, X-Real-IP: set by frontgate */
    FG_HDR_AUTHORIZATION,
    FG_HDR_EXPECT,
};

/* Classifies a header name (case-insensitive). */
enum fg_hdr_kind fg_hdr_classify(const char *name, size_t len);

/* True when name is one of the comma-separated tokens of a Connection value. */
int fg_conn_token_lists(const char *value, size_t vlen, const char *name, size_t nlen);

/* Calls fn for each comma-separated, trimmed, non-empty token of value. */
void fg_each_token(const char *value, size_t vlen, void (*fn)(void *arg, const char *tok, size_t n),
                   void *arg);

/* True when a Transfer-Encoding value is exactly "chunked" (any case, optional spaces). */
int fg_te_is_chunked(const char *value, size_t vlen);

/* The reason phrase for a status code ("OK", "Not Found", ...). */
const char *fg_http_reason(int status);

/*
 * Appends a Kubernetes metav1.Status JSON body, e.g. for 401:
 * {"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
 *  "message":"Unauthorized","reason":"Unauthorized","code":401}
 */
void fg_status_json(struct fg_buf *b, int code, const char *reason, const char *message);

/*
 * The value of `name` in an application/x-www-form-urlencoded body, decoded
 * ('+' is a space, %XX a byte) into out (NUL-terminated). 0, or -1 when the
 * field is absent, malformed, repeated, holds a NUL or does not fit.
 */
int fg_form_get(const char *body, size_t len, const char *name, char *out, size_t outsz);

/*
 * "Basic base64(id:secret)" -> id and secret, each form-decoded as RFC 6749
 * 2.3.1 asks. 0, or -1 when malformed or too long.
 */
int fg_basic_credentials(const char *value, size_t len, char *id, size_t idsz, char *secret,
                         size_t secretsz);

/* Appends the Iceberg REST error model: {"error":{"message":..,"type":..,"code":N}}. */
void fg_iceberg_error_json(struct fg_buf *b, int code, const char *type, const char *message);

#endif
