/*
 * union.h - the union of authenticators one request runs, and what the caller
 * is told.
 *
 * DESIGN's union(global, workspace type): the global members in order, then
 * the workspace type's. The first member that admits the credential decides;
 * the identity policy of its side judges what it admitted (global: drop the
 * configured groups; workspace: kcp's rules, scoped to the workspace), and a
 * rejection by the policy is final, not "try the next member". Both the raw
 * identity and the policy's result must be header-safe (identity.h): the
 * policy judges the very bytes a shard reads.
 *
 * The verdict: ADMIT (with an identity, or without one when no member
 * applies: the request passes unauthenticated), UNAUTHORIZED (401), or, for
 * a workspace that does not exist, FORBIDDEN (403) only when a global member
 * admitted the caller: an unauthenticated caller never learns whether a
 * workspace exists.
 *
 * The caller embeds a struct fg_union in its request, fills spec and the
 * waiter's done, post and owner (authn.h), and calls fg_union_start().
 * FG_UNION_PENDING means a member parked the waiter; when waiter.done runs
 * (on the caller's thread) the caller calls fg_union_resume(), or
 * fg_union_abandon() when the request is gone. Every other verdict is final.
 *
 * The memo is the caller's per-connection cache of the bearer last admitted:
 * a keep-alive client sends the same token again and again and gets the same
 * raw identity without the member's own cache lookup, for as long as that
 * member vouched for it (reuse_until_ms), under the same config generation
 * and the same member list. The policy runs again on every request.
 */
#ifndef FG_UNION_H
#define FG_UNION_H

#include <stddef.h>
#include <stdint.h>

#include "authn.h"

struct fg_union_memo {
    char *token; /* a copy of the bearer, wiped when replaced or cleared */
    size_t len;
    struct fg_identity *raw; /* what the member admitted, before the policy */
    size_t member;
    uint32_t ctx;
    uint64_t generation;
    uint64_t until_ms;
};

/* Wipes and frees the remembered bearer and drops its identity. */
void fg_union_memo_clear(struct fg_union_memo *m);

struct fg_union_spec {
    struct fg_authn *const *global;
    size_t nglobal;
    struct fg_authn *const *ws; /* the workspace type's members (ignored when unknown_ws) */
    size_t nws;
    char *const *drop_groups; /* the global policy's */
    size_t ndrop_groups;
    const char *cluster;        /* the workspace's logical cluster, for the workspace policy */
    int unknown_ws;             /* the workspace does not exist: authenticate only for 401 vs 403 */
    int authorization_present;  /* an Authorization header came, bearer or not (for the reason) */
    struct fg_credential cred;  /* borrows from the request; must outlive the union */
    struct fg_union_memo *memo; /* NULL: none */
    uint64_t generation;        /* the memo is valid only under the same generation ... */
    uint32_t ctx;               /* ... and the same member list (e.g. the workspace type) */
};

enum fg_union_verdict {
    FG_UNION_ADMIT,
    FG_UNION_UNAUTHORIZED,
    FG_UNION_FORBIDDEN,
    FG_UNION_PENDING,
};

struct fg_union {
    struct fg_union_spec spec;
    struct fg_authn_waiter waiter; /* the caller sets done, post and owner */
    size_t next;                   /* the next member to run */
    int parked;                    /* a member holds the waiter */
    /* after a final verdict */
    struct fg_identity *identity;   /* ADMIT: the policy's identity (one reference, the union's
                                       until taken); NULL when nobody authenticated */
    const char *authn;              /* the admitting member's name (borrowed from it) */
    const struct fg_authn *decider; /* the member that admitted or last rejected, or NULL */
    const char *reason;             /* why not, for the log (a static string) */
};

enum fg_union_verdict fg_union_start(struct fg_union *u);
/* After waiter.done: takes the posted result and goes on. */
enum fg_union_verdict fg_union_resume(struct fg_union *u);
/* After waiter.done for a request that is gone: drops the posted result. */
void fg_union_abandon(struct fg_union *u);
/*
 * Withdraws a parked waiter. 1 when it was parked and no post will come;
 * 0 when nothing was parked or a post is already on its way (then waiter.done
 * still runs and must call fg_union_abandon()).
 */
int fg_union_cancel(struct fg_union *u);
/* Drops the identity the union still holds. */
void fg_union_clear(struct fg_union *u);

#endif
