/* libFuzzer: the static key file parser on arbitrary files. */
#include "../../auth/statickeys.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fg_errs errs = {0};
    struct fg_statickeys *ks =
        fg_statickeys_parse("keys.txt", (const char *)data, size, "p:", "fuzz", &errs);
    if (ks) {
        fg_statickeys_lookup(ks, (const char *)data, size);
        fg_statickeys_free(ks);
    } else if (errs.n == 0) {
        abort(); /* a refusal always says why */
    }
    fg_errs_free(&errs);
    return 0;
}
