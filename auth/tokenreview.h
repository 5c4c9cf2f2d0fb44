/*
 * tokenreview.h - the `tokenReview` authenticator: a Kubernetes API server
 * decides (POST /apis/authentication.k8s.io/v1/tokenreviews), as it must for
 * service-account tokens whose pod or secret may have been deleted.
 *
 * - A token is authenticated only if status.authenticated is true and, when
 *   audiences were sent, status.audiences intersects them.
 * - Answers are cached: successes for cacheTTL (default 2 min), refusals for
 *   negativeCacheTTL (10 s), keyed like the JWT cache (HMAC of authenticator,
 *   token and audiences). Transport errors, 429 and 5xx are never cached;
 *   429/5xx are retried with backoff within the timeout (5 s).
 * - Single flight per key: any number of concurrent requests with the same
 *   new token cause one review; all of them park on it.
 * - With `issuers`, only JWT-shaped tokens whose `iss` is listed are sent,
 *   so OIDC tokens never reach the API server.
 * - Our own credential (tokenFile) is re-read whenever the file changes
 *   (kubelet rotates projected tokens).
 */
#ifndef FG_TOKENREVIEW_H
#define FG_TOKENREVIEW_H

#include "../config/config.h"
#include "authn.h"
#include "fetch.h"

/*
 * An authenticator named name over cfg (borrowed). dir resolves relative
 * files. f NULL: nothing is sent (every token is refused, for `check`).
 * NULL with errors in errs when a file cannot be loaded.
 */
struct fg_authn *fg_tokenreview_new(const char *name, const struct fg_tokenreview_cfg *cfg,
                                    const char *dir, struct fg_fetcher *f, struct fg_errs *errs,
                                    const struct fg_mark *mark);

/*
 * Reads the body[0..len) of a 200/201 TokenReview answer, as the authenticator does: an identity
 * (one reference, named authn, which must outlive it) when status.authenticated is true,
 * status.audiences intersects cfg's audiences (when cfg has any) and status.user.username is a
 * non-empty string; uid, string groups and string extra values are copied. Else NULL with *why
 * (static). Pure: no I/O, no cache.
 */
struct fg_identity *fg_tokenreview_parse(const char *body, size_t len,
                                         const struct fg_tokenreview_cfg *cfg, const char *authn,
                                         const char **why);

/* TokenReview calls of every tokenReview authenticator (each attempt), for /metrics. */
enum fg_tr_result {
    FG_TR_AUTHENTICATED,
    FG_TR_DENIED,
    FG_TR_MALFORMED,   /* 200 with a body that is not a TokenReview */
    FG_TR_HTTP_ERROR,  /* any other status */
    FG_TR_UNREACHABLE, /* no answer */
    FG_TR_RESULTS
};
#define FG_TR_BUCKETS 12 /* the last is +Inf */
struct fg_tr_stats {
    uint64_t calls[FG_TR_RESULTS];
    uint64_t buckets[FG_TR_BUCKETS]; /* per bucket, not cumulative */
    double bounds[FG_TR_BUCKETS];    /* seconds; the last unused (+Inf) */
    uint64_t sum_us;
};
void fg_tokenreview_stats(struct fg_tr_stats *s);

#endif
