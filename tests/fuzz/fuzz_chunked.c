/* libFuzzer: the strict chunked decoder never reads out of bounds and consumes what it says. */
#include "../../gateway/chunked.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

static void sink(void *arg, const char *p, size_t n)
{
    size_t *total = arg;
    for (size_t i = 0; i < n; i++)
        *total += (unsigned char)p[i] != 0xff; /* touch every byte handed out */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fg_chunked c;
    fg_chunked_init(&c);
    size_t total = 0, off = 0;
    /* Feed in uneven pieces, as a network would. */
    while (off < size) {
        size_t piece = 1 + (data[off] % 7);
        if (piece > size - off)
            piece = size - off;
        size_t used = 0;
        enum fg_chunked_result r =
            fg_chunked_feed(&c, (const char *)data + off, piece, &used, sink, &total);
        if (used > piece)
            abort();
        off += used;
        if (r != FG_CHUNKED_MORE)
            break;
        if (used < piece)
            abort(); /* MORE means everything given was consumed */
    }
    return 0;
}
