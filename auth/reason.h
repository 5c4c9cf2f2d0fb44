/*
 * reason.h - why an authentication failed, as a closed set: the `reason` label of
 * frontgate_authentication_attempts_total and the access log's reason_code, beside the
 * sentence the authenticator gave (the access log's reason). The set is kube-apiserver's
 * vocabulary where it has one (expired, not yet valid, bad signature, unknown kid, wrong
 * audience, wrong issuer, claim validation) and frontgate's for the rest.
 */
#ifndef FG_REASON_H
#define FG_REASON_H

enum fg_reason {
    FG_REASON_NONE, /* admitted */
    FG_REASON_NO_CREDENTIALS,
    FG_REASON_NO_AUTHENTICATOR, /* a credential nobody took */
    FG_REASON_MALFORMED,
    FG_REASON_UNSUPPORTED, /* alg none, HMAC, JWE, critical extensions */
    FG_REASON_BAD_SIGNATURE,
    FG_REASON_UNKNOWN_KID,
    FG_REASON_KEYS_UNAVAILABLE,
    FG_REASON_UNKNOWN_ISSUER,
    FG_REASON_WRONG_ISSUER,
    FG_REASON_WRONG_AUDIENCE,
    FG_REASON_EXPIRED,
    FG_REASON_NOT_YET_VALID,
    FG_REASON_CLAIM_VALIDATION, /* claimValidationRules */
    FG_REASON_CLAIM_MAPPING,    /* a mapped claim missing or of the wrong type */
    FG_REASON_UNKNOWN_KEY,      /* a static API key nobody has */
    FG_REASON_REVIEW_DENIED,
    FG_REASON_REVIEW_UNAVAILABLE,
    FG_REASON_SYSTEM_USER,     /* the workspace policy: system: usernames */
    FG_REASON_UNSAFE_IDENTITY, /* an identity no header can carry */
    FG_REASON_OTHER,
    FG_REASON_COUNT
};

/* The reason of a sentence an authenticator or the union gave (NULL: none). */
enum fg_reason fg_reason_of(const char *sentence);
/* Its label value: "expired", "bad_signature", ... */
const char *fg_reason_name(enum fg_reason r);

#endif
