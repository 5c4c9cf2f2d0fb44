/*
 * test_union.c - the union of authenticators (auth/union.h): member order,
 * not-mine vs rejected, the policy of the admitting member's side, header
 * safety, 401 vs 403 for a workspace that does not exist, parking and
 * resuming, cancellation, and the per-connection memo. Members are scripted
 * authenticators, plus the real JWT authenticator over the hand-driven
 * fetcher (fakefetch.h) for a park on a key fetch.
 */
#include "t.h"

#include "auth/jwtauthn.h"
#include "auth/oidc.h"
#include "auth/union.h"
#include "fakefetch.h"
#include "testkeys.h"

#include <stdlib.h>

/* ---- a scripted member ---------------------------------------------------- */

struct script {
    struct fg_authn a; /* first: the ops cast back */
    enum fg_authn_status answer;
    const char *user;   /* FG_AUTHN_OK: the identity's user ... */
    const char *group;  /* ... and one group (or NULL) */
    const char *reason; /* REJECTED / NOT_MINE */
    uint64_t reuse_ms;  /* FG_AUTHN_OK: reuse_until_ms = now + this (0: none) */
    int calls;
    struct fg_authn_waiter *parked; /* PENDING: the waiter it holds */
    int cancel_answer;              /* what its cancel hook returns */
    int cancels;
};

static int script_cancel(struct fg_authn_waiter *w)
{
    struct script *s = w->impl;
    s->cancels++;
    s->parked = NULL;
    return s->cancel_answer;
}

static struct fg_identity *script_identity(const struct script *s)
{
    struct fg_identity *id = fg_identity_new(s->user, s->a.name);
    if (s->group)
        fg_identity_add_group(id, s->group);
    return id;
}

static enum fg_authn_status script_run(struct fg_authn *a, const struct fg_credential *cred,
                                       struct fg_authn_result *res, struct fg_authn_waiter *w)
{
    struct script *s = (struct script *)a;
    (void)cred;
    s->calls++;
    switch (s->answer) {
    case FG_AUTHN_OK:
        res->identity = script_identity(s);
        if (s->reuse_ms)
            res->reuse_until_ms = fg_now_ms() + s->reuse_ms;
        break;
    case FG_AUTHN_PENDING:
        if (w->no_park)
            return FG_AUTHN_NOT_MINE;
        s->parked = w;
        w->impl = s;
        w->cancel = script_cancel;
        break;
    default:
        res->reason = s->reason;
        break;
    }
    return s->answer;
}

static void script_free(struct fg_authn *a)
{
    (void)a; /* on the test's stack */
}

static const struct fg_authn_ops script_ops = {.authenticate = script_run, .free = script_free};

static void script_init(struct script *s, const char *name, enum fg_authn_status answer)
{
    memset(s, 0, sizeof(*s));
    s->a.ops = &script_ops;
    s->a.name = (char *)name;
    s->a.refs = 1;
    s->answer = answer;
    s->user = "alice";
}

/* Posts a parked member's answer, as an authenticator does when its work is done. */
static void script_answer(struct script *s, enum fg_authn_status st)
{
    struct fg_authn_waiter *w = s->parked;
    s->parked = NULL;
    w->cancel = NULL;
    memset(&w->result, 0, sizeof(w->result));
    w->result.status = st;
    if (st == FG_AUTHN_OK)
        w->result.identity = script_identity(s);
    w->post(w);
}

/* ---- the union under test ------------------------------------------------- */

static int posts;
static void count_post(struct fg_authn_waiter *w)
{
    (void)w;
    posts++;
}

static char *drops[] = {"system:masters"};

struct run {
    struct fg_union u;
    struct fg_authn *global[4];
    struct fg_authn *ws[4];
    const char *token;
};

/* A union of the given members, presenting token (NULL: no Authorization header). */
static void run_init(struct run *r, struct script **g, size_t ng, struct script **ws, size_t nws,
                     const char *token)
{
    memset(r, 0, sizeof(*r));
    for (size_t i = 0; i < ng; i++)
        r->global[i] = &g[i]->a;
    for (size_t i = 0; i < nws; i++)
        r->ws[i] = &ws[i]->a;
    struct fg_union_spec *sp = &r->u.spec;
    sp->global = r->global;
    sp->nglobal = ng;
    sp->ws = r->ws;
    sp->nws = nws;
    sp->drop_groups = drops;
    sp->ndrop_groups = 1;
    sp->cluster = "2v1x3bnq";
    sp->ctx = nws ? 7 : UINT32_MAX;
    sp->generation = 1;
    if (token) {
        sp->authorization_present = 1;
        sp->cred.bearer = token;
        sp->cred.bearer_len = strlen(token);
    }
    r->u.waiter.post = count_post;
    posts = 0;
}

static const struct fg_extra *extra(const struct fg_identity *id, const char *key)
{
    return fg_identity_get_extra(id, key);
}

static void no_members_admits_without_identity(void)
{
    struct run r;
    run_init(&r, NULL, 0, NULL, 0, "tok");
    CHECK(fg_union_start(&r.u) == FG_UNION_ADMIT);
    CHECK(r.u.identity == NULL && r.u.authn == NULL && r.u.reason == NULL);
    run_init(&r, NULL, 0, NULL, 0, NULL);
    CHECK(fg_union_start(&r.u) == FG_UNION_ADMIT && r.u.identity == NULL);
}

static void no_bearer_is_401(void)
{
    struct script a;
    script_init(&a, "keys", FG_AUTHN_OK);
    struct script *g[] = {&a};
    struct run r;
    run_init(&r, g, 1, NULL, 0, NULL);
    CHECK(fg_union_start(&r.u) == FG_UNION_UNAUTHORIZED);
    CHECK_STR(r.u.reason, "no credentials");
    CHECK(a.calls == 0 && r.u.identity == NULL);

    /* An Authorization header that is not a bearer: presented, but nobody's. */
    run_init(&r, g, 1, NULL, 0, NULL);
    r.u.spec.authorization_present = 1;
    CHECK(fg_union_start(&r.u) == FG_UNION_UNAUTHORIZED);
    CHECK_STR(r.u.reason, "no authenticator accepted the credentials");
}

static void first_that_admits_decides(void)
{
    struct script a, b, c;
    script_init(&a, "jwt", FG_AUTHN_NOT_MINE);
    script_init(&b, "keys", FG_AUTHN_OK);
    script_init(&c, "later", FG_AUTHN_OK);
    c.user = "mallory";
    struct script *g[] = {&a, &b, &c};
    struct run r;
    run_init(&r, g, 3, NULL, 0, "tok");
    CHECK(fg_union_start(&r.u) == FG_UNION_ADMIT);
    CHECK(r.u.identity != NULL && strcmp(r.u.identity->user, "alice") == 0);
    CHECK_STR(r.u.authn, "keys");
    CHECK(r.u.reason == NULL);
    CHECK(a.calls == 1 && b.calls == 1 && c.calls == 0);
    fg_union_clear(&r.u);
    CHECK(r.u.identity == NULL);
}

static void rejection_lets_the_next_member_try(void)
{
    struct script a, b;
    script_init(&a, "jwt", FG_AUTHN_REJECTED);
    a.reason = "token has expired";
    script_init(&b, "keys", FG_AUTHN_OK);
    struct script *g[] = {&a, &b};
    struct run r;
    run_init(&r, g, 2, NULL, 0, "tok");
    CHECK(fg_union_start(&r.u) == FG_UNION_ADMIT);
    CHECK_STR(r.u.authn, "keys");
    CHECK(r.u.reason == NULL); /* the admitted request carries no failure reason */
    fg_union_clear(&r.u);
}

static void reasons_when_nobody_admits(void)
{
    struct script a, b, c;
    script_init(&a, "jwt", FG_AUTHN_NOT_MINE);
    a.reason = "malformed token";
    script_init(&b, "keys", FG_AUTHN_REJECTED);
    b.reason = "unknown key";
    script_init(&c, "review", FG_AUTHN_NOT_MINE);
    c.reason = "not a service-account token";
    struct script *g[] = {&a, &b, &c};
    struct run r;
    /* a rejection's reason wins over an earlier not-mine, a later not-mine keeps it */
    run_init(&r, g, 3, NULL, 0, "tok");
    CHECK(fg_union_start(&r.u) == FG_UNION_UNAUTHORIZED);
    CHECK_STR(r.u.reason, "unknown key");
    /* only not-mine answers: the first one's reason */
    struct script *g2[] = {&a, &c};
    run_init(&r, g2, 2, NULL, 0, "tok");
    CHECK(fg_union_start(&r.u) == FG_UNION_UNAUTHORIZED);
    CHECK_STR(r.u.reason, "malformed token");
    /* and no reason at all: the generic one */
    a.reason = c.reason = NULL;
    run_init(&r, g2, 2, NULL, 0, "tok");
    CHECK(fg_union_start(&r.u) == FG_UNION_UNAUTHORIZED);
    CHECK_STR(r.u.reason, "no authenticator accepted the credentials");
    CHECK(r.u.identity == NULL);
}

static void global_policy_drops_groups(void)
{
    struct script a;
    script_init(&a, "keys", FG_AUTHN_OK);
    a.group = "system:masters";
    struct script *g[] = {&a};
    struct run r;
    run_init(&r, g, 1, NULL, 0, "tok");
    CHECK(fg_union_start(&r.u) == FG_UNION_ADMIT);
    CHECK(r.u.identity && !fg_identity_has_group(r.u.identity, "system:masters"));
    CHECK(r.u.identity && fg_identity_has_group(r.u.identity, "system:authenticated"));
    fg_union_clear(&r.u);
}

static void workspace_members_after_global_with_workspace_policy(void)
{
    struct script a, w;
    script_init(&a, "keys", FG_AUTHN_NOT_MINE);
    script_init(&w, "ws-idp", FG_AUTHN_OK);
    w.group = "system:masters";
    struct script *g[] = {&a}, *ws[] = {&w};
    struct run r;
    run_init(&r, g, 1, ws, 1, "tok");
    CHECK(fg_union_start(&r.u) == FG_UNION_ADMIT);
    CHECK(a.calls == 1 && w.calls == 1);
    CHECK_STR(r.u.authn, "ws-idp");
    const struct fg_identity *id = r.u.identity;
    CHECK(id && !fg_identity_has_group(id, "system:masters")); /* every system: group goes */
    const struct fg_extra *cn = id ? extra(id, "authentication.kcp.io/cluster-name") : NULL;
    CHECK(cn && cn->nvalues == 1 && strcmp(cn->values[0], "2v1x3bnq") == 0);
    fg_union_clear(&r.u);

    /* the same identity from a global member is not scoped to the workspace */
    struct script *g2[] = {&w};
    run_init(&r, g2, 1, NULL, 0, "tok");
    CHECK(fg_union_start(&r.u) == FG_UNION_ADMIT);
    CHECK(r.u.identity && extra(r.u.identity, "authentication.kcp.io/cluster-name") == NULL);
    fg_union_clear(&r.u);
}

static void policy_rejection_is_final(void)
{
    struct script w, next;
    script_init(&w, "ws-idp", FG_AUTHN_OK);
    w.user = "system:admin";
    script_init(&next, "ws-other", FG_AUTHN_OK);
    struct script *ws[] = {&w, &next};
    struct run r;
    run_init(&r, NULL, 0, ws, 2, "tok");
    CHECK(fg_union_start(&r.u) == FG_UNION_UNAUTHORIZED);
    CHECK(r.u.identity == NULL && next.calls == 0);
    CHECK(r.u.reason != NULL);
}

static void header_unsafe_identity_is_401(void)
{
    const char *users[] = {" system:admin", "alice ", "al\tice", "al\r\nX-Remote-User: x"};
    for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++) {
        struct script a;
        script_init(&a, "jwt", FG_AUTHN_OK);
        a.user = users[i];
        struct script *g[] = {&a};
        struct run r;
        run_init(&r, g, 1, NULL, 0, "tok");
        CHECK(fg_union_start(&r.u) == FG_UNION_UNAUTHORIZED);
        CHECK(r.u.identity == NULL);
        CHECK_STR(r.u.reason, "identity contains characters not allowed in a header");
    }
    /* a group that a recipient would read as system:masters once OWS is stripped */
    struct script a;
    script_init(&a, "jwt", FG_AUTHN_OK);
    a.group = " system:masters";
    struct script *g[] = {&a};
    struct run r;
    run_init(&r, g, 1, NULL, 0, "tok");
    CHECK(fg_union_start(&r.u) == FG_UNION_UNAUTHORIZED && r.u.identity == NULL);
}

static void unknown_workspace_401_or_403(void)
{
    struct script a, w;
    script_init(&a, "keys", FG_AUTHN_OK);
    script_init(&w, "ws-idp", FG_AUTHN_OK);
    struct script *g[] = {&a}, *ws[] = {&w};
    struct run r;
    /* admitted by a global member: may learn that the workspace does not exist */
    run_init(&r, g, 1, ws, 1, "tok");
    r.u.spec.unknown_ws = 1;
    CHECK(fg_union_start(&r.u) == FG_UNION_FORBIDDEN);
    CHECK(r.u.identity != NULL && w.calls == 0); /* workspace members never run */
    fg_union_clear(&r.u);
    /* not admitted, or no credentials, or only workspace members: 401 */
    a.answer = FG_AUTHN_REJECTED;
    run_init(&r, g, 1, ws, 1, "tok");
    r.u.spec.unknown_ws = 1;
    CHECK(fg_union_start(&r.u) == FG_UNION_UNAUTHORIZED);
    run_init(&r, g, 1, ws, 1, NULL);
    r.u.spec.unknown_ws = 1;
    CHECK(fg_union_start(&r.u) == FG_UNION_UNAUTHORIZED);
    run_init(&r, NULL, 0, ws, 1, "tok");
    r.u.spec.unknown_ws = 1;
    CHECK(fg_union_start(&r.u) == FG_UNION_UNAUTHORIZED);
    CHECK(w.calls == 0 && r.u.identity == NULL);
}

static void parks_and_resumes(void)
{
    struct script p, b;
    script_init(&p, "review", FG_AUTHN_PENDING);
    script_init(&b, "keys", FG_AUTHN_OK);
    b.user = "bob";
    struct script *g[] = {&p, &b};
    struct run r;

    /* the parked member admits */
    run_init(&r, g, 2, NULL, 0, "tok");
    CHECK(fg_union_start(&r.u) == FG_UNION_PENDING);
    CHECK(r.u.parked && p.parked == &r.u.waiter && b.calls == 0);
    script_answer(&p, FG_AUTHN_OK);
    CHECK(posts == 1);
    CHECK(fg_union_resume(&r.u) == FG_UNION_ADMIT);
    CHECK(!r.u.parked && r.u.identity && strcmp(r.u.identity->user, "alice") == 0);
    CHECK(b.calls == 0);
    fg_union_clear(&r.u);

    /* the parked member says not mine: the next one runs */
    run_init(&r, g, 2, NULL, 0, "tok");
    CHECK(fg_union_start(&r.u) == FG_UNION_PENDING);
    script_answer(&p, FG_AUTHN_NOT_MINE);
    CHECK(fg_union_resume(&r.u) == FG_UNION_ADMIT);
    CHECK(r.u.identity && strcmp(r.u.identity->user, "bob") == 0 && b.calls == 1);
    fg_union_clear(&r.u);

    /* RETRY: the same member runs again, told not to park */
    b.calls = p.calls = 0;
    run_init(&r, g, 2, NULL, 0, "tok");
    CHECK(fg_union_start(&r.u) == FG_UNION_PENDING);
    script_answer(&p, FG_AUTHN_RETRY);
    CHECK(fg_union_resume(&r.u) == FG_UNION_ADMIT); /* p: NOT_MINE when no_park; then b */
    CHECK(p.calls == 2 && b.calls == 1 && r.u.waiter.no_park == 0);
    fg_union_clear(&r.u);
}

static void cancel_and_abandon(void)
{
    struct script p;
    script_init(&p, "review", FG_AUTHN_PENDING);
    struct script *g[] = {&p};
    struct run r;

    /* nothing parked: nothing to withdraw */
    run_init(&r, g, 1, NULL, 0, "tok");
    CHECK(fg_union_cancel(&r.u) == 0);

    /* withdrawn before the answer: no post will come */
    p.cancel_answer = 1;
    CHECK(fg_union_start(&r.u) == FG_UNION_PENDING);
    CHECK(fg_union_cancel(&r.u) == 1);
    CHECK(p.cancels == 1 && !r.u.parked);

    /* too late to withdraw: the post comes and the caller abandons it */
    p.cancel_answer = 0;
    run_init(&r, g, 1, NULL, 0, "tok");
    CHECK(fg_union_start(&r.u) == FG_UNION_PENDING);
    struct fg_authn_waiter *w = p.parked;
    CHECK(fg_union_cancel(&r.u) == 0);
    CHECK(r.u.parked); /* still waiting for the post */
    p.parked = w;
    script_answer(&p, FG_AUTHN_OK); /* carries an identity: abandon must drop it (ASan) */
    fg_union_abandon(&r.u);
    CHECK(!r.u.parked && r.u.waiter.result.identity == NULL);
}

static void memo_reuses_the_admitted_identity(void)
{
    struct script a;
    script_init(&a, "jwt", FG_AUTHN_OK);
    a.group = "system:masters";
    a.reuse_ms = 60000;
    struct script *g[] = {&a};
    struct fg_union_memo memo = {0};
    struct run r;

    run_init(&r, g, 1, NULL, 0, "tok-1");
    r.u.spec.memo = &memo;
    CHECK(fg_union_start(&r.u) == FG_UNION_ADMIT && a.calls == 1);
    fg_union_clear(&r.u);
    CHECK(memo.raw != NULL && memo.len == 5);

    /* the same token again: the memo answers, and the policy still runs */
    run_init(&r, g, 1, NULL, 0, "tok-1");
    r.u.spec.memo = &memo;
    CHECK(fg_union_start(&r.u) == FG_UNION_ADMIT && a.calls == 1);
    CHECK(r.u.identity && !fg_identity_has_group(r.u.identity, "system:masters"));
    CHECK_STR(r.u.authn, "jwt");
    fg_union_clear(&r.u);

    /* another token, another generation, another member list: asked again */
    run_init(&r, g, 1, NULL, 0, "tok-2");
    r.u.spec.memo = &memo;
    CHECK(fg_union_start(&r.u) == FG_UNION_ADMIT && a.calls == 2);
    fg_union_clear(&r.u);
    run_init(&r, g, 1, NULL, 0, "tok-2");
    r.u.spec.memo = &memo;
    r.u.spec.generation = 2;
    CHECK(fg_union_start(&r.u) == FG_UNION_ADMIT && a.calls == 3);
    fg_union_clear(&r.u);
    run_init(&r, g, 1, NULL, 0, "tok-2");
    r.u.spec.memo = &memo;
    r.u.spec.generation = 2;
    r.u.spec.ctx = 3;
    CHECK(fg_union_start(&r.u) == FG_UNION_ADMIT && a.calls == 4);
    fg_union_clear(&r.u);

    /* a member that does not vouch for reuse is never remembered */
    fg_union_memo_clear(&memo);
    a.reuse_ms = 0;
    for (int i = 0; i < 2; i++) {
        run_init(&r, g, 1, NULL, 0, "tok-3");
        r.u.spec.memo = &memo;
        CHECK(fg_union_start(&r.u) == FG_UNION_ADMIT);
        fg_union_clear(&r.u);
    }
    CHECK(a.calls == 6 && memo.raw == NULL);
    fg_union_memo_clear(&memo);
    CHECK(memo.token == NULL && memo.raw == NULL);
}

/* ---- the real JWT authenticator, parked on a key fetch -------------------- */

#define ISSUER   "https://issuer.example"
#define JWKS_URI "https://issuer.example/jwks"

static void jwt_member_parks_on_a_key_fetch(void)
{
    EVP_PKEY *k1 = tk_rsa(2048), *k2 = tk_rsa(2048);
    EVP_PKEY *s1[] = {k1}, *s12[] = {k1, k2};
    const char *n1[] = {"k1"}, *n12[] = {"k1", "k2"};
    char *jwks1 = tk_jwks(s1, n1, 1), *jwks12 = tk_jwks(s12, n12, 2);
    struct fg_buf b = {0};
    fg_buf_printf(&b, "{\"issuer\":\"%s\",\"jwks_uri\":\"%s\"}", ISSUER, JWKS_URI);
    char *disco = fg_buf_take(&b);

    struct fake fk;
    fake_init(&fk, 1000000);
    static char *auds[] = {"kube"};
    struct fg_jwt_cfg cfg = {0};
    cfg.issuer_url = (char *)ISSUER;
    cfg.audiences = auds;
    cfg.naudiences = 1;
    cfg.username.claim = (char *)"sub";
    cfg.username.prefix = (char *)"oidc:";
    cfg.groups.claim = (char *)"groups";
    cfg.groups.prefix = (char *)"";
    struct fg_jwt_cfg *cfgs[] = {&cfg};
    struct fg_authn *jwt = fg_jwtauthn_new("oidc", cfgs, 1, &fk.f, NULL, 1);
    fake_run(&fk);
    fake_answer0(&fk, 200, disco, NULL);
    fake_answer0(&fk, 200, jwks1, NULL);
    CHECK(fg_authn_ready(jwt));

    /* signed by k2, which the issuer's first key set does not have */
    char hdr[128];
    long now = (long)fg_wall_s();
    fg_buf_printf(&b,
                  "{\"iss\":\"%s\",\"sub\":\"alice\",\"aud\":\"kube\",\"exp\":%ld,"
                  "\"groups\":[\"system:masters\",\"dev\"]}",
                  ISSUER, now + 600);
    char *claims = fg_buf_take(&b);
    char *tok = tk_mint(tk_header(hdr, sizeof(hdr), FG_JWT_RS256, "k2"), claims, FG_JWT_RS256, k2);

    struct fg_union u = {0};
    struct fg_authn *g[] = {jwt};
    u.spec.global = g;
    u.spec.nglobal = 1;
    u.spec.drop_groups = drops;
    u.spec.ndrop_groups = 1;
    u.spec.cred.bearer = tok;
    u.spec.cred.bearer_len = strlen(tok);
    u.spec.authorization_present = 1;
    u.waiter.post = count_post;
    posts = 0;
    CHECK(fg_union_start(&u) == FG_UNION_PENDING);
    fake_run(&fk);
    CHECK(fk.nfetches == 1 && strcmp(fake_url(&fk, 0), JWKS_URI) == 0);
    fake_answer0(&fk, 200, jwks12, NULL);
    CHECK(posts == 1);
    CHECK(fg_union_resume(&u) == FG_UNION_ADMIT);
    CHECK(u.identity && strcmp(u.identity->user, "oidc:alice") == 0);
    CHECK(u.identity && fg_identity_has_group(u.identity, "dev"));
    CHECK(u.identity && !fg_identity_has_group(u.identity, "system:masters"));
    CHECK_STR(u.authn, "oidc");
    fg_union_clear(&u);

    fg_authn_unref(jwt);
    fake_drain(&fk);
    fg_oidc_shutdown();
    free(tok);
    free(claims);
    free(disco);
    free(jwks1);
    free(jwks12);
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);
}

int main(void)
{
    fg_log_set_level(FG_LOG_ERROR);
    RUN(no_members_admits_without_identity);
    RUN(no_bearer_is_401);
    RUN(first_that_admits_decides);
    RUN(rejection_lets_the_next_member_try);
    RUN(reasons_when_nobody_admits);
    RUN(global_policy_drops_groups);
    RUN(workspace_members_after_global_with_workspace_policy);
    RUN(policy_rejection_is_final);
    RUN(header_unsafe_identity_is_401);
    RUN(unknown_workspace_401_or_403);
    RUN(parks_and_resumes);
    RUN(cancel_and_abandon);
    RUN(memo_reuses_the_admitted_identity);
    RUN(jwt_member_parks_on_a_key_fetch);
    DONE();
}
