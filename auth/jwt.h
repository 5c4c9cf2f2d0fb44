/*
 * jwt.h - JWS compact tokens: strict parsing, signature verification with
 * OpenSSL on keys parsed once (EVP_PKEY), and kube's claim checks and
 * mappings. Pure: no I/O, time is a parameter.
 *
 * Order (kube-apiserver's): size cap, strict base64url, header checks, peek
 * at `iss` (a token for another issuer is "not mine", not an error),
 * signature, claim types (`iat`, `sub`, `nonce`, `at_hash`), `exp` (required,
 * no leeway) and `nbf` (60 s leeway), `aud` (MatchAny), claim rules,
 * mappings (username, groups, uid, extra).
 */
#ifndef FG_JWT_H
#define FG_JWT_H

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

#include "../config/jwtcfg.h"
#include "identity.h"
#include "json.h"

#define FG_JWT_MAX_BYTES  (16 * 1024) /* larger tokens are refused before any parsing */
#define FG_JWT_MAX_DEPTH  32          /* JSON nesting allowed in a header or claims set */
#define FG_JWT_NBF_LEEWAY 60          /* seconds */

enum fg_jwt_alg {
    FG_JWT_RS256,
    FG_JWT_RS384,
    FG_JWT_RS512,
    FG_JWT_PS256,
    FG_JWT_PS384,
    FG_JWT_PS512,
    FG_JWT_ES256,
    FG_JWT_ES384,
    FG_JWT_ES512,
    FG_JWT_EDDSA,
};

/* The key family an algorithm needs. */
enum fg_jwk_type { FG_JWK_RSA, FG_JWK_EC, FG_JWK_OKP };

/*
 * A parsed, not yet verified token. Holds a reference on each document; the
 * header document may be shared with other tokens parsed on the same thread
 * (documents are read-only; fg_json_root gives the top-level object).
 */
struct fg_jwt {
    struct fg_json_doc *header;
    struct fg_json_doc *claims;
    enum fg_jwt_alg alg;
    const char *kid;           /* from header, or NULL; borrowed from header */
    const char *iss;           /* from claims, or NULL; borrowed from claims */
    const char *signing_input; /* "<b64 header>.<b64 claims>": borrowed from the token text */
    size_t signing_len;
    unsigned char *sig; /* decoded signature */
    size_t sig_len;
};

enum fg_jwt_parse_result {
    FG_JWT_PARSED,
    FG_JWT_NOT_JWT, /* not 3 (or 5) segments whose first is base64url of '{...': not a JWT at all */
    FG_JWT_INVALID, /* JWT-shaped but unacceptable; *why says how */
};

/*
 * Parses tok[0..len). FG_JWT_INVALID covers: over FG_JWT_MAX_BYTES,
 * non-canonical base64url (padding, bad characters, non-zero trailing bits),
 * header or claims not a JSON object or nested deeper than FG_JWT_MAX_DEPTH,
 * `alg` missing, "none", HS* or unknown, a `crit` header, `kid` not a string,
 * `iss` not a string. The token text must outlive *out (signing_input points
 * into it). On FG_JWT_PARSED the caller frees with fg_jwt_clear.
 */
enum fg_jwt_parse_result fg_jwt_parse(const char *tok, size_t len, struct fg_jwt *out,
                                      const char **why);
void fg_jwt_clear(struct fg_jwt *t);

/* The key type an algorithm needs; and for EC, the curve NID (else 0). */
enum fg_jwk_type fg_jwt_alg_key_type(enum fg_jwt_alg alg, int *curve_nid);
const char *fg_jwt_alg_name(enum fg_jwt_alg alg);

/*
 * Verifies the signature with key. 0 when valid; -1 with *why otherwise
 * (wrong key type or curve for the alg, bad signature length, mismatch).
 * ES* signatures are raw r||s as JWS specifies; PS* use a salt as long as
 * the digest. Thread-safe: key is only read.
 */
int fg_jwt_verify(const struct fg_jwt *t, EVP_PKEY *key, const char **why);

/*
 * Checks the registered claims' types as go-oidc does (iat a number; sub, nonce and at_hash
 * strings or null), time, audience and claim rules, then maps claims to an identity with cfg's
 * claimMappings (prefixes applied; `email` as username requires `email_verified`, when present,
 * to be the boolean true; groups may be a string or an array of strings; a `jti` claim adds extra
 * authentication.kubernetes.io/credential-id = "JTI=<jti>"). now is Unix seconds. Returns a new
 * identity (one reference) named after authn, or NULL with *why. *exp receives the token's expiry
 * (for caches). Claim values are copied byte for byte, control bytes included: callers check
 * fg_identity_header_safe.
 */
struct fg_identity *fg_jwt_identity(const struct fg_jwt *t, const struct fg_jwt_cfg *cfg,
                                    int64_t now, const char *authn, int64_t *exp, const char **why);

/* Strict base64url (no padding, zero trailing bits). Returns decoded length or -1. */
long fg_b64url_decode(const char *in, size_t len, unsigned char *out, size_t outsz);
/* Unpadded base64url of in into out (at least 4*ceil(len/3)+1 bytes); returns the length. */
size_t fg_b64url_encode(const unsigned char *in, size_t len, char *out);

#endif
