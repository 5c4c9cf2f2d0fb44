/*
 * union.c - the union of authenticators (see union.h).
 */
#include "union.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "../config/base.h"

static const char unsafe_reason[] = "identity contains characters not allowed in a header";

void fg_union_memo_clear(struct fg_union_memo *m)
{
    if (m->token) {
        OPENSSL_cleanse(m->token, m->len);
        free(m->token);
    }
    fg_identity_unref(m->raw);
    memset(m, 0, sizeof(*m));
}

static size_t nmembers(const struct fg_union *u)
{
    return u->spec.nglobal + (u->spec.unknown_ws ? 0 : u->spec.nws);
}

static struct fg_authn *member(const struct fg_union *u, size_t i)
{
    if (i < u->spec.nglobal)
        return u->spec.global[i];
    return u->spec.ws[i - u->spec.nglobal];
}

static void remember(struct fg_union *u, struct fg_identity *raw, size_t i, uint64_t until)
{
    struct fg_union_memo *m = u->spec.memo;
    const struct fg_credential *cred = &u->spec.cred;
    if (m == NULL || cred->bearer == NULL)
        return;
    fg_union_memo_clear(m);
    m->token = fg_strndup(cred->bearer, cred->bearer_len);
    m->len = cred->bearer_len;
    m->raw = fg_identity_ref(raw);
    m->member = i;
    m->ctx = u->spec.ctx;
    m->generation = u->spec.generation;
    m->until_ms = until;
}

/* The remembered identity for this credential (a new reference), or NULL. */
static struct fg_identity *recall(const struct fg_union *u, size_t *i)
{
    const struct fg_union_memo *m = u->spec.memo;
    const struct fg_credential *cred = &u->spec.cred;
    if (m == NULL || m->raw == NULL || cred->bearer_len != m->len ||
        m->generation != u->spec.generation || m->ctx != u->spec.ctx || m->member >= nmembers(u) ||
        fg_now_ms() >= m->until_ms || CRYPTO_memcmp(cred->bearer, m->token, m->len) != 0)
        return NULL;
    *i = m->member;
    return fg_identity_ref(m->raw);
}

/* The policy of member i's side on what it admitted. 0, or -1 with u->reason. */
static int apply_policy(struct fg_union *u, struct fg_identity *raw, size_t i)
{
    struct fg_identity *id;
    if (!fg_identity_header_safe(raw)) {
        u->reason = unsafe_reason;
        return -1;
    }
    if (i < u->spec.nglobal) {
        id = fg_identity_global_view(raw, u->spec.drop_groups, u->spec.ndrop_groups);
    } else {
        const char *why = NULL;
        id = fg_identity_policy_workspace(raw, u->spec.cluster, &why);
        if (id == NULL) {
            u->reason = why;
            return -1;
        }
    }
    if (!fg_identity_header_safe(id)) {
        fg_identity_unref(id);
        u->reason = unsafe_reason;
        return -1;
    }
    u->identity = id;
    return 0;
}

/* Takes member i's answer; 1 when the union is decided. */
static int take(struct fg_union *u, struct fg_authn_result *res, size_t i)
{
    switch (res->status) {
    case FG_AUTHN_OK: {
        if (res->reuse_until_ms > fg_now_ms())
            remember(u, res->identity, i, res->reuse_until_ms);
        int rc = apply_policy(u, res->identity, i);
        fg_identity_unref(res->identity);
        res->identity = NULL;
        u->decider = member(u, i);
        if (rc == 0) {
            u->reason = NULL;
            u->authn = member(u, i)->name;
        }
        return 1; /* an admitted identity the policy rejects is a failure, not "next" */
    }
    case FG_AUTHN_REJECTED:
        u->reason = res->reason;
        u->decider = member(u, i);
        return 0;
    case FG_AUTHN_NOT_MINE:
        if (u->reason == NULL)
            u->reason = res->reason; /* e.g. a malformed JWT: nobody's, but say why */
        return 0;
    default:
        return 0;
    }
}

static enum fg_union_verdict verdict(struct fg_union *u)
{
    if (u->identity)
        return u->spec.unknown_ws ? FG_UNION_FORBIDDEN : FG_UNION_ADMIT;
    if (nmembers(u) == 0 && !u->spec.unknown_ws)
        return FG_UNION_ADMIT; /* no member applies: passes unauthenticated */
    if (u->reason == NULL)
        u->reason = u->spec.authorization_present ? "no authenticator accepted the credentials"
                                                  : "no credentials";
    return FG_UNION_UNAUTHORIZED;
}

static enum fg_union_verdict step(struct fg_union *u)
{
    const struct fg_credential *cred = &u->spec.cred;
    size_t n = nmembers(u);
    if (cred->bearer == NULL)
        return verdict(u);
    size_t m;
    struct fg_authn_result hit = {.status = FG_AUTHN_OK};
    if (u->next == 0 && (hit.identity = recall(u, &m)) != NULL) {
        u->next = m + 1; /* this connection presented the same token before */
        take(u, &hit, m);
        return verdict(u);
    }
    while (u->next < n) {
        size_t i = u->next;
        struct fg_authn_result res;
        enum fg_authn_status st = fg_authn_run(member(u, i), cred, &res, &u->waiter);
        if (st == FG_AUTHN_PENDING) {
            u->parked = 1;
            return FG_UNION_PENDING;
        }
        u->waiter.no_park = 0;
        u->next++;
        if (take(u, &res, i))
            break;
    }
    return verdict(u);
}

enum fg_union_verdict fg_union_start(struct fg_union *u)
{
    u->next = 0;
    u->parked = 0;
    u->identity = NULL;
    u->authn = u->reason = NULL;
    u->decider = NULL;
    return step(u);
}

enum fg_union_verdict fg_union_resume(struct fg_union *u)
{
    struct fg_authn_result res = u->waiter.result;
    memset(&u->waiter.result, 0, sizeof(u->waiter.result));
    u->waiter.cancel = NULL;
    u->parked = 0;
    if (res.status == FG_AUTHN_RETRY) {
        u->waiter.no_park = 1; /* e.g. fresh keys arrived: verify again, but do not wait again */
        return step(u);
    }
    size_t i = u->next++;
    if (take(u, &res, i))
        return verdict(u);
    return step(u);
}

void fg_union_abandon(struct fg_union *u)
{
    fg_identity_unref(u->waiter.result.identity);
    memset(&u->waiter.result, 0, sizeof(u->waiter.result));
    u->waiter.cancel = NULL;
    u->parked = 0;
}

int fg_union_cancel(struct fg_union *u)
{
    if (!u->parked || !fg_authn_cancel(&u->waiter))
        return 0;
    u->parked = 0;
    return 1;
}

void fg_union_clear(struct fg_union *u)
{
    fg_identity_unref(u->identity);
    u->identity = NULL;
}
