/*
 * reason.c - the sentences authenticators give, sorted into enum fg_reason (see reason.h).
 * Every sentence auth/ can produce is listed here; tests/unit/test_reason.c checks the list
 * against the sources, so a new sentence without a reason fails the build's tests.
 */
#include "reason.h"

#include <stddef.h>
#include <string.h>

static const struct {
    const char *sentence;
    enum fg_reason reason;
} table[] = {
    {"no credentials", FG_REASON_NO_CREDENTIALS},
    {"no authenticator accepted the credentials", FG_REASON_NO_AUTHENTICATOR},
    {"unknown API key", FG_REASON_UNKNOWN_KEY},
    {"not a JWT", FG_REASON_MALFORMED},
    {"token too large", FG_REASON_MALFORMED},
    {"token alg missing or not a string", FG_REASON_MALFORMED},
    {"token kid is not a string", FG_REASON_MALFORMED},
    {"token has no signature", FG_REASON_MALFORMED},
    {"token signature is not canonical base64url", FG_REASON_MALFORMED},
    {"token iss is not a string", FG_REASON_MALFORMED},
    {"token signature has the wrong length", FG_REASON_MALFORMED},
    {"token signature is malformed", FG_REASON_MALFORMED},
    {"token iat is not a number", FG_REASON_MALFORMED},
    {"token exp missing or not a number", FG_REASON_MALFORMED},
    {"token nbf is not a number", FG_REASON_MALFORMED},
    {"token aud has the wrong type", FG_REASON_MALFORMED},
    {"token header is not canonical base64url", FG_REASON_MALFORMED},
    {"token header is not a JSON object", FG_REASON_MALFORMED},
    {"token header is nested too deeply", FG_REASON_MALFORMED},
    {"token claims are not canonical base64url", FG_REASON_MALFORMED},
    {"token claims are not a JSON object", FG_REASON_MALFORMED},
    {"token claims are nested too deeply", FG_REASON_MALFORMED},
    {"encrypted tokens (JWE) are not supported", FG_REASON_UNSUPPORTED},
    {"unsigned tokens (alg none) are not accepted", FG_REASON_UNSUPPORTED},
    {"HMAC tokens (HS*) are not accepted", FG_REASON_UNSUPPORTED},
    {"unsupported token alg", FG_REASON_UNSUPPORTED},
    {"critical token header extensions are not supported", FG_REASON_UNSUPPORTED},
    {"key type or curve does not fit the token alg", FG_REASON_BAD_SIGNATURE},
    {"token signature does not verify", FG_REASON_BAD_SIGNATURE},
    {"the signing key is not in the issuer's key set", FG_REASON_UNKNOWN_KID},
    {"the issuer's signing keys are not available yet", FG_REASON_KEYS_UNAVAILABLE},
    {"the token's issuer is not configured", FG_REASON_UNKNOWN_ISSUER},
    {"token issuer does not match", FG_REASON_WRONG_ISSUER},
    {"token audience does not match", FG_REASON_WRONG_AUDIENCE},
    {"token expired", FG_REASON_EXPIRED},
    {"token not valid yet", FG_REASON_NOT_YET_VALID},
    {"required claim missing", FG_REASON_CLAIM_VALIDATION},
    {"required claim is not a string", FG_REASON_CLAIM_VALIDATION},
    {"required claim has the wrong value", FG_REASON_CLAIM_VALIDATION},
    {"groups claim has the wrong type", FG_REASON_CLAIM_MAPPING},
    {"uid claim is not a string", FG_REASON_CLAIM_MAPPING},
    {"extra claim has the wrong type", FG_REASON_CLAIM_MAPPING},
    {"username claim missing or not a string", FG_REASON_CLAIM_MAPPING},
    {"username claim is empty", FG_REASON_CLAIM_MAPPING},
    {"email not verified", FG_REASON_CLAIM_MAPPING},
    {"token review: no username", FG_REASON_REVIEW_DENIED},
    {"token review: not authenticated", FG_REASON_REVIEW_DENIED},
    {"token review: not authenticated (cached)", FG_REASON_REVIEW_DENIED},
    {"token review: audiences do not intersect", FG_REASON_REVIEW_DENIED},
    {"token review unavailable", FG_REASON_REVIEW_UNAVAILABLE},
    {"token review refused our request", FG_REASON_REVIEW_UNAVAILABLE},
    {"token review: authenticator stopped", FG_REASON_REVIEW_UNAVAILABLE},
    {"system usernames are not admitted", FG_REASON_SYSTEM_USER},
    {"identity contains characters not allowed in a header", FG_REASON_UNSAFE_IDENTITY},
};

static const char *const names[FG_REASON_COUNT] = {
    [FG_REASON_NONE] = "none",
    [FG_REASON_NO_CREDENTIALS] = "no_credentials",
    [FG_REASON_NO_AUTHENTICATOR] = "no_authenticator",
    [FG_REASON_MALFORMED] = "malformed",
    [FG_REASON_UNSUPPORTED] = "unsupported",
    [FG_REASON_BAD_SIGNATURE] = "bad_signature",
    [FG_REASON_UNKNOWN_KID] = "unknown_kid",
    [FG_REASON_KEYS_UNAVAILABLE] = "keys_unavailable",
    [FG_REASON_UNKNOWN_ISSUER] = "unknown_issuer",
    [FG_REASON_WRONG_ISSUER] = "wrong_issuer",
    [FG_REASON_WRONG_AUDIENCE] = "wrong_audience",
    [FG_REASON_EXPIRED] = "expired",
    [FG_REASON_NOT_YET_VALID] = "not_yet_valid",
    [FG_REASON_CLAIM_VALIDATION] = "claim_validation",
    [FG_REASON_CLAIM_MAPPING] = "claim_mapping",
    [FG_REASON_UNKNOWN_KEY] = "unknown_key",
    [FG_REASON_REVIEW_DENIED] = "review_denied",
    [FG_REASON_REVIEW_UNAVAILABLE] = "review_unavailable",
    [FG_REASON_SYSTEM_USER] = "system_user",
    [FG_REASON_UNSAFE_IDENTITY] = "unsafe_identity",
    [FG_REASON_OTHER] = "other",
};

enum fg_reason fg_reason_of(const char *sentence)
{
    if (sentence == NULL)
        return FG_REASON_NONE;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (strcmp(table[i].sentence, sentence) == 0)
            return table[i].reason;
    return FG_REASON_OTHER;
}

const char *fg_reason_name(enum fg_reason r)
{
    return (unsigned)r < FG_REASON_COUNT ? names[r] : "other";
}
