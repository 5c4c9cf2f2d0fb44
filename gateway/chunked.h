/*
 * chunked.h - a strict decoder for chunked request bodies (RFC 9112 7.1).
 *
 * Debian's http-parser is built without HTTP_PARSER_STRICT: it accepts a
 * space inside a chunk size ("5 5") and chunk data not followed by CRLF.
 * Two parsers that disagree on where a body ends are how requests are
 * smuggled, so frontgate decodes chunked request bodies itself and refuses
 * anything but: 1*HEXDIG [ BWS ";" ext ] CRLF, data, CRLF, ..., "0" [ext]
 * CRLF, trailer lines, CRLF (RFC 9112 7.1.1; BWS is RFC 9110 5.6.3). Bare LF,
 * whitespace before the size or after it without ';', sizes over 2^60, over
 * 4 KiB of extensions on one chunk and trailers over 8 KiB are errors. Pure;
 * unit-tested.
 */
#ifndef FG_CHUNKED_H
#define FG_CHUNKED_H

#include <stddef.h>
#include <stdint.h>

struct fg_chunked {
    int state;
    uint64_t remaining; /* bytes of chunk data still to come */
    unsigned digits;
    unsigned trailer_bytes;
    unsigned line_len;  /* bytes in the current trailer line */
    unsigned ext_bytes; /* bytes of the current chunk's extensions */
};

enum fg_chunked_result {
    FG_CHUNKED_MORE,  /* everything given was consumed; more is needed */
    FG_CHUNKED_DONE,  /* the body ended; *used stops right after it */
    FG_CHUNKED_ERROR, /* malformed */
};

typedef void (*fg_chunked_data_fn)(void *arg, const char *p, size_t n);

void fg_chunked_init(struct fg_chunked *c);

/* Decodes in[0..len), handing chunk data to data(); *used = bytes consumed. */
enum fg_chunked_result fg_chunked_feed(struct fg_chunked *c, const char *in, size_t len,
                                       size_t *used, fg_chunked_data_fn data, void *arg);

#endif
