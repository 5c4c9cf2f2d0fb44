/*
 * h1.h - HTTP/1.1 message heads, and frontgate's strict request-head parser.
 *
 * The request head is the security boundary: a shard trusts the identity
 * headers frontgate writes, so frontgate must read every byte of the head
 * exactly as the strictest recipient would. Debian's http-parser is built
 * lenient (bare CR, spaces in names, obs-fold are accepted), so requests are
 * parsed here, by RFC 9112's grammar and nothing looser:
 *
 *   request-line = method SP request-target SP "HTTP/" DIGIT "." DIGIT CRLF
 *   field-line   = 1*tchar ":" OWS field-value OWS CRLF
 *
 * Lines end in CRLF only (bare CR or bare LF: 400); a field line starting
 * with SP or HTAB (obs-fold, or whitespace after the request line) is 400;
 * field values hold VCHAR, obs-text, and SP/HTAB between them; the
 * request-target holds no control, space, DEL, '#' or byte >= 0x80, and '%'
 * is followed by two hex digits. Empty lines before the request line are
 * skipped (RFC 9112 2.2). An absolute-form target is split into its path and
 * query (routed as usual) and its authority (which replaces Host, RFC 9112
 * 3.2.2). Pure functions; unit-tested and fuzzed (tests/fuzz/fuzz_head.c).
 */
#ifndef FG_H1_H
#define FG_H1_H

#include <stddef.h>
#include <stdint.h>

#include "../config/base.h"

struct fg_hdr {
    uint32_t name, name_len; /* offsets into fg_msg.raw */
    uint32_t value, value_len;
    uint8_t kind; /* enum fg_hdr_kind (sanitize.h) */
    uint8_t drop; /* listed in Connection: hop-by-hop */
};

/*
 * A message head: raw holds the first line's variable part at raw[0..first_len)
 * (the request-target's path and query, or a response's reason phrase), then the
 * bytes the headers point into.
 */
struct fg_msg {
    struct fg_buf raw;
    struct fg_hdr *hdrs;
    size_t nhdrs, hcap;
    uint32_t first_len;
    int in_value;   /* response parser: the last callback was a header value */
    uint32_t bytes; /* counted against the header limit */
};

/* Empties m, keeping its memory. */
void fg_msg_reset(struct fg_msg *m);
void fg_msg_free(struct fg_msg *m);

/* Where the end of a request head is, found piece by piece as bytes arrive. */
struct fg_h1_scan {
    size_t pos;   /* bytes examined so far */
    size_t start; /* where the request line starts (after skipped empty lines) */
    size_t line;  /* where the current line starts */
    int cr;       /* the last byte examined was a CR */
};

enum fg_h1_result {
    FG_H1_MORE = 0, /* no complete head yet */
    FG_H1_DONE = 1, /* a complete head */
    FG_H1_BAD = -1, /* malformed; *status says how to answer */
};

/*
 * Examines the next n bytes of a request's input, p being where the last call
 * stopped (s->pos bytes in; s starts zeroed). DONE sets *end to the offset just
 * after the head's final CRLF; BAD on a bare CR or a bare LF. The caller bounds
 * the total (header limit).
 */
enum fg_h1_result fg_h1_scan(struct fg_h1_scan *s, const char *p, size_t n, size_t *end);

/* What the request line and the target's form say. */
struct fg_h1_request {
    int method; /* enum http_method (http_parser.h) */
    int minor;  /* HTTP/1.<minor> (0 or 1; higher minors are served as 1.1) */
    int absolute;
    uint32_t authority, authority_len; /* absolute-form: offsets into msg->raw */
};

/*
 * Parses the complete head in[0..len) (from fg_h1_scan: start to end) into m
 * and rq. max_target bounds the request-target (414). Returns 0, or an HTTP
 * status to answer with: 400 (malformed), 414, 501 (unknown method),
 * 505 (HTTP major version other than 1).
 */
int fg_h1_parse_request(const char *in, size_t len, size_t max_target, struct fg_msg *m,
                        struct fg_h1_request *rq);

/* The enum http_method of a method name (exact, case-sensitive), or -1. */
int fg_h1_method_of(const char *p, size_t n);
/* A request-target's bytes: no control, space, DEL, '#' or non-ASCII; '%' then two hex digits. */
int fg_h1_target_ok(const char *t, size_t n);
/* Character classes of RFC 9110 5.6.2 and 5.5. */
int fg_h1_tchar(unsigned char c);
/* A field value as the shard will read it: VCHAR/obs-text, inner SP/HTAB, no OWS at the ends. */
int fg_h1_value_clean(const char *v, size_t n);

#endif
