/* libFuzzer: YAML config parsing; every refusal carries a located error. */
#include "../../config/config.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fg_errs errs = {0};
    struct fg_config *cfg = fg_config_parse("fuzz.yaml", (const char *)data, size, &errs);
    if (cfg == NULL && errs.n == 0)
        abort();
    fg_config_free(cfg);
    fg_errs_free(&errs);
    return 0;
}
