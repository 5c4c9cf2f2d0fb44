/* libFuzzer: JWT parsing and claim mapping on arbitrary tokens. */
#include "../../auth/jwt.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static struct fg_jwt_cfg cfg;
static char *aud[] = {"frontgate"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (cfg.issuer_url == NULL) {
        cfg.issuer_url = "https://issuer.example";
        cfg.audiences = aud;
        cfg.naudiences = 1;
        cfg.username.claim = "sub";
        cfg.username.prefix = "oidc:";
        cfg.groups.claim = "groups";
        cfg.groups.prefix = "";
    }
    struct fg_jwt t;
    const char *why = NULL;
    if (fg_jwt_parse((const char *)data, size, &t, &why) == FG_JWT_PARSED) {
        int64_t exp;
        struct fg_identity *id = fg_jwt_identity(&t, &cfg, 1700000000, "fuzz", &exp, &why);
        fg_identity_unref(id);
        fg_jwt_clear(&t);
    }
    return 0;
}
