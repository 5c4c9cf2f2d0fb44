#include "chunked.h"

#include "../config/base.h"

#define MAX_DIGITS   15 /* 2^60: larger sizes are not real bodies */
#define MAX_TRAILERS 8192
#define MAX_EXT      4096 /* per chunk: Node.js CVE-2024-22019 was an unbounded one */

enum state {
    S_SIZE_FIRST, /* first hex digit of a size */
    S_SIZE,       /* more hex digits, BWS, ';' or CR */
    S_SIZE_BWS,   /* whitespace after the size: only ';' may follow */
    S_EXT,        /* chunk extension, until CR */
    S_SIZE_LF,    /* LF after the size line */
    S_DATA,
    S_DATA_CR,
    S_DATA_LF,
    S_TRAILER_START, /* CR (end) or the first byte of a trailer line */
    S_TRAILER,       /* inside a trailer line, until CR */
    S_TRAILER_LF,
    S_END_LF, /* LF of the final empty line */
};

void fg_chunked_init(struct fg_chunked *c)
{
    c->state = S_SIZE_FIRST;
    c->remaining = 0;
    c->digits = 0;
    c->trailer_bytes = 0;
    c->line_len = 0;
}

static int ext_char(unsigned char ch)
{
    return ch == '\t' || (ch >= 0x20 && ch != 0x7f);
}

enum fg_chunked_result fg_chunked_feed(struct fg_chunked *c, const char *in, size_t len,
                                       size_t *used, fg_chunked_data_fn data, void *arg)
{
    size_t i = 0;
    enum fg_chunked_result res = FG_CHUNKED_MORE;
    while (i < len) {
        unsigned char ch = (unsigned char)in[i];
        if (c->state == S_DATA) {
            size_t n = len - i;
            if (n > c->remaining)
                n = (size_t)c->remaining;
            data(arg, in + i, n);
            c->remaining -= n;
            i += n;
            if (c->remaining == 0)
                c->state = S_DATA_CR;
            continue;
        }
        i++;
        switch (c->state) {
        case S_SIZE_FIRST:
        case S_SIZE: {
            int h = fg_hexval(ch);
            if (h >= 0) {
                if (++c->digits > MAX_DIGITS)
                    goto bad;
                c->remaining = c->remaining << 4 | (uint64_t)h;
                c->state = S_SIZE;
            } else if (c->state == S_SIZE && ch == ';') {
                c->state = S_EXT;
                c->ext_bytes = 0;
            } else if (c->state == S_SIZE && (ch == ' ' || ch == '\t')) {
                c->state = S_SIZE_BWS;
            } else if (c->state == S_SIZE && ch == '\r') {
                c->state = S_SIZE_LF;
            } else {
                goto bad;
            }
            break;
        }
        case S_SIZE_BWS:
            if (ch == ';') {
                c->state = S_EXT;
                c->ext_bytes = 0;
            } else if (ch != ' ' && ch != '\t') {
                goto bad;
            }
            break;
        case S_EXT:
            if (++c->ext_bytes > MAX_EXT)
                goto bad;
            if (ch == '\r')
                c->state = S_SIZE_LF;
            else if (!ext_char(ch))
                goto bad;
            break;
        case S_SIZE_LF:
            if (ch != '\n')
                goto bad;
            c->digits = 0;
            c->state = c->remaining ? S_DATA : S_TRAILER_START;
            break;
        case S_DATA_CR:
            if (ch != '\r')
                goto bad;
            c->state = S_DATA_LF;
            break;
        case S_DATA_LF:
            if (ch != '\n')
                goto bad;
            c->state = S_SIZE_FIRST;
            break;
        case S_TRAILER_START:
            if (ch == '\r') {
                c->state = S_END_LF;
                break;
            }
            c->line_len = 0;
            c->state = S_TRAILER;
            __attribute__((fallthrough)); /* the byte belongs to the trailer line */
        case S_TRAILER:
            if (++c->trailer_bytes > MAX_TRAILERS)
                goto bad;
            if (ch == '\r')
                c->state = S_TRAILER_LF;
            else if (!ext_char(ch))
                goto bad;
            break;
        case S_TRAILER_LF:
            if (ch != '\n')
                goto bad;
            c->state = S_TRAILER_START;
            break;
        case S_END_LF:
            if (ch != '\n')
                goto bad;
            res = FG_CHUNKED_DONE;
            goto out;
        default:
            goto bad;
        }
    }
out:
    *used = i;
    return res;
bad:
    *used = i;
    return FG_CHUNKED_ERROR;
}
