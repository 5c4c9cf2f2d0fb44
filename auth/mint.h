/*
 * mint.h - identity translation for backends that trust only a JWT they can
 * verify themselves (Lakekeeper): frontgate signs a short-lived token for the
 * identity it admitted and publishes the verification keys as an OIDC
 * issuer (discovery document + JWKS), so the backend can be pointed at
 * frontgate as one more OpenID provider.
 *
 * Tokens: {"iss":issuer,"sub":user,"aud":audience,"groups":[...],"iat","nbf",
 * "exp":iat+ttl,"jti"}, RS256 (RSA key) or ES256 (P-256 key), kid = the
 * RFC 7638 thumbprint of the public key. A minted token is reused for the
 * same identity until a fifth of its life is left.
 *
 * Key rollover: issuers live across config reloads; when a reload brings a
 * new key, the previous public key stays in the JWKS for one TTL, so tokens
 * minted just before the reload still verify.
 */
#ifndef FG_MINT_H
#define FG_MINT_H

#include <stddef.h>
#include <stdint.h>

#include "../config/yaml.h"
#include "identity.h"

struct fg_mint;

/*
 * Loads key_file (PEM private key, RSA >= 2048 bits or EC P-256) and
 * registers it for issuer. NULL with an error in errs.
 */
struct fg_mint *fg_mint_new(const char *issuer, const char *audience, uint64_t ttl_s,
                            const char *key_file, struct fg_errs *errs, const char *file, int line,
                            int col);
void fg_mint_free(struct fg_mint *m);

/*
 * A token for id valid from now (Unix seconds), NUL-terminated, owned by the
 * caller (free). NULL only if signing fails.
 */
char *fg_mint_token(struct fg_mint *m, const struct fg_identity *id, int64_t now);

/* The issuer URL's path ("" for a bare host), where discovery and JWKS are served. */
const char *fg_mint_issuer_path(const struct fg_mint *m);

/* Appends the discovery document / the JWKS (current key, and the previous one for one TTL). */
void fg_mint_discovery(const struct fg_mint *m, struct fg_buf *b);
void fg_mint_jwks(const struct fg_mint *m, int64_t now, struct fg_buf *b);

/* Forgets every issuer's key history (at exit). */
void fg_mint_shutdown(void);

#endif
