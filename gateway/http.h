/*
 * http.h - pure HTTP helpers: reason phrases, the Kubernetes Status and
 * Iceberg error bodies, form and Basic credentials (header rules: sanitize.h).
 * No I/O; unit-tested in tests/unit/test_http.c.
 */
#ifndef FG_HTTP_H
#define FG_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "../config/base.h"

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
