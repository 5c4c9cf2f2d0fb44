/*
 * authn.h - the authenticator interface and the union.
 *
 * An authenticator looks at a credential and answers one of: an identity,
 * "not mine" (let the next one try), "rejected" (a definite failure, with a
 * reason for the log), or "pending" (it parked the caller and will call the
 * waiter's callback later, on the caller's thread). Reasons are static
 * strings that never contain the credential.
 */
#ifndef FG_AUTHN_H
#define FG_AUTHN_H

#include <stddef.h>
#include <stdint.h>

#include "identity.h"

enum fg_authn_status {
    FG_AUTHN_OK,
    FG_AUTHN_NOT_MINE,
    FG_AUTHN_REJECTED,
    FG_AUTHN_PENDING,
    FG_AUTHN_RETRY, /* only in a posted result: run the authenticator again, without parking */
};

/* What the caller presented. Pointers borrow from the request. */
struct fg_credential {
    const char *bearer; /* the token after "Bearer ", or NULL */
    size_t bearer_len;
};

struct fg_authn_result {
    enum fg_authn_status status;
    struct fg_identity *identity; /* FG_AUTHN_OK: one reference, owned by the receiver */
    const char *reason;           /* FG_AUTHN_REJECTED: why, for the log */
    /*
     * FG_AUTHN_OK: the caller may answer the same credential with this identity,
     * under the same config snapshot, until this monotonic time (0: ask again).
     * Set by authenticators whose own cache vouches for it that long.
     */
    uint64_t reuse_until_ms;
};

struct fg_authn;
struct fg_authn_waiter;

typedef void (*fg_authn_done_fn)(struct fg_authn_waiter *w);

/*
 * Embedded in the caller's request; the caller sets done, post and owner.
 *
 * An authenticator that answers FG_AUTHN_PENDING keeps the waiter until it
 * has an answer (on whatever thread it works on), stores it in w->result
 * and calls w->post(w). post is the caller's thread-safe hand-off: it makes
 * done(w) run later on the caller's own thread. Exactly one post follows a
 * PENDING unless fg_authn_cancel() returns 1.
 */
struct fg_authn_waiter {
    fg_authn_done_fn done;
    void (*post)(struct fg_authn_waiter *w);
    void *owner;                       /* for post: which thread/queue */
    struct fg_authn_waiter *post_next; /* caller-private: its post queue */
    struct fg_authn_result result;     /* filled before post */
    int no_park;                       /* set by the caller: answer now, never PENDING */
    /* authenticator-private, while pending */
    int (*cancel)(struct fg_authn_waiter *w);
    void *impl;
    struct fg_authn_waiter *next;
};

struct fg_authn_ops {
    enum fg_authn_status (*authenticate)(struct fg_authn *a, const struct fg_credential *cred,
                                         struct fg_authn_result *res,
                                         struct fg_authn_waiter *waiter);
    void (*free)(struct fg_authn *a);
    int (*ready)(struct fg_authn *a); /* NULL: always ready */
};

struct fg_authn {
    const struct fg_authn_ops *ops;
    char *name;
    int refs;       /* atomic; authenticators are shared by snapshots */
    uint16_t label; /* its metrics label slot, set by whoever builds it (0: "none") */
};

/* Runs one authenticator; see the statuses above. */
enum fg_authn_status fg_authn_run(struct fg_authn *a, const struct fg_credential *cred,
                                  struct fg_authn_result *res, struct fg_authn_waiter *waiter);
/*
 * Withdraws a pending waiter. Returns 1 when no post will come (withdrawn,
 * or nothing was pending), 0 when a post is already on its way: the caller
 * must then wait for done() before freeing the waiter.
 */
int fg_authn_cancel(struct fg_authn_waiter *w);

/* True when the authenticator can answer (e.g. its issuer's keys have arrived). */
int fg_authn_ready(struct fg_authn *a);

struct fg_authn *fg_authn_ref(struct fg_authn *a);
void fg_authn_unref(struct fg_authn *a);

/* Extracts the token of "Authorization: Bearer <token>" (scheme case-insensitive). */
int fg_bearer_from_header(const char *value, size_t len, const char **tok, size_t *tok_len);

#endif
