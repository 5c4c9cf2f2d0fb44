/*
 * jwks.h - a JSON Web Key Set, parsed once into OpenSSL keys.
 *
 * Accepted: RSA (n, e; at least 2048 bits), EC (crv P-256/P-384/P-521 with
 * x, y; the point must be on the curve) and OKP Ed25519 (x). Keys marked
 * "use": "enc" are skipped, as are key types frontgate cannot use; a set
 * with no usable key is an error. Immutable once built and reference
 * counted, so a refresh swaps in a new set while requests finish with the
 * old one.
 */
#ifndef FG_JWKS_H
#define FG_JWKS_H

#include <openssl/evp.h>
#include <stddef.h>

#include "jwt.h"

struct fg_jwk {
    char *kid; /* or NULL */
    char *alg; /* the JWK's own "alg", or NULL (then any alg of its type) */
    enum fg_jwk_type type;
    int curve_nid; /* EC only */
    EVP_PKEY *pkey;
};

struct fg_keyset {
    int refs; /* atomic */
    struct fg_jwk *keys;
    size_t n;
    size_t skipped;  /* keys present but not usable (enc, unknown type, too small) */
    char digest[17]; /* first 16 hex digits of the document's SHA-256, for logs */
};

/* Parses a JWKS document. NULL with *why when it holds no usable key. */
struct fg_keyset *fg_keyset_parse(const char *json, size_t len, const char **why);

struct fg_keyset *fg_keyset_ref(struct fg_keyset *ks);
void fg_keyset_unref(struct fg_keyset *ks);

/*
 * The keys a token may be verified with, one per call: *pos starts at 0.
 * With a kid, only keys of that kid; without, every key. Either way only
 * keys whose type (and curve, and "alg" when the JWK has one) fit alg.
 * NULL when there are no more.
 */
const struct fg_jwk *fg_keyset_next(const struct fg_keyset *ks, const char *kid,
                                    enum fg_jwt_alg alg, size_t *pos);

/* True when some key carries this kid (whatever its type). */
int fg_keyset_has_kid(const struct fg_keyset *ks, const char *kid);

#endif
