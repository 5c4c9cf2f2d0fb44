/*
 * test_identity.c - identities and the policies that decide what a shard may
 * see (auth/identity.h): global drop-groups, kcp's workspace rules, header
 * safety, and the X-Remote-Extra-* key escaping kcp puts on the wire.
 */
#include "t.h"

#include "auth/identity.h"

#include <stdlib.h>

#define SCOPES "authentication.kcp.io/scopes"
#define CLNAME "authentication.kcp.io/cluster-name"
#define AUTHED "system:authenticated"

/* kcp's default --authentication-drop-groups. */
static char *kcp_drop[] = {"system:masters", "system:kcp:logical-cluster-admin",
                           "system:kcp:initializer:*", "system:kcp:terminator:*"};

static struct fg_identity *with_groups(const char *user, const char *const *groups, size_t n)
{
    struct fg_identity *id = fg_identity_new(user, "test");
    for (size_t i = 0; i < n; i++)
        fg_identity_add_group(id, groups[i]);
    return id;
}

/* Number of times group appears (policies must never duplicate one). */
static int group_count(const struct fg_identity *id, const char *group)
{
    int n = 0;
    for (size_t i = 0; i < id->ngroups; i++)
        n += strcmp(id->groups[i], group) == 0;
    return n;
}

/* True when extra[key] is exactly the given values, in order. */
static int extra_is(const struct fg_identity *id, const char *key, const char *const *vals,
                    size_t n)
{
    const struct fg_extra *e = fg_identity_get_extra(id, key);
    if (e == NULL || e->nvalues != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(e->values[i], vals[i]) != 0)
            return 0;
    return 1;
}

static char *escaped(const char *key)
{
    struct fg_buf b = {0};
    fg_identity_escape_extra_key(&b, key);
    return fg_buf_take(&b);
}

static void builders_dedupe(void)
{
    struct fg_identity *id = fg_identity_new("alice", "keys");
    fg_identity_add_group(id, "a");
    fg_identity_add_group(id, "a");
    fg_identity_add_group(id, "b");
    fg_identity_add_extra(id, "k", "1");
    fg_identity_add_extra(id, "k", "1");
    fg_identity_add_extra(id, "k", "2");
    fg_identity_set_uid(id, "u-1");
    fg_identity_set_uid(id, "u-2");
    CHECK_STR(id->user, "alice");
    CHECK_STR(id->uid, "u-2");
    CHECK_STR(id->authn, "keys");
    CHECK(id->ngroups == 2);
    const char *k[] = {"1", "2"};
    CHECK(extra_is(id, "k", k, 2));
    CHECK(id->nextra == 1);
    CHECK(fg_identity_get_extra(id, "missing") == NULL);
    fg_identity_set_uid(id, NULL);
    CHECK(id->uid == NULL);
    fg_identity_unref(id);
}

static void refcounting(void)
{
    struct fg_identity *id = fg_identity_new("alice", "keys");
    CHECK(id->refs == 1);
    CHECK(fg_identity_ref(id) == id && id->refs == 2);
    fg_identity_unref(id);
    CHECK(id->refs == 1);
    fg_identity_unref(id);
    CHECK(fg_identity_ref(NULL) == NULL);
    fg_identity_unref(NULL);
}

/* A packed copy has every field, owns its strings and needs no builder's frees. */
static void pack_copies_everything(void)
{
    struct fg_identity *id = fg_identity_new("alice", "keys");
    fg_identity_set_uid(id, "u-1");
    fg_identity_add_group(id, "dev");
    fg_identity_add_group(id, "ops");
    fg_identity_add_extra(id, "scopes", "a");
    fg_identity_add_extra(id, "scopes", "b");
    fg_identity_add_extra(id, "team", "x");
    struct fg_identity *p = fg_identity_pack(id);
    fg_identity_unref(id); /* the copy shares nothing with its source */
    CHECK(p->packed && p->refs == 1 && p->global_view == NULL);
    CHECK_STR(p->user, "alice");
    CHECK_STR(p->uid, "u-1");
    CHECK_STR(p->authn, "keys");
    CHECK(p->ngroups == 2 && group_count(p, "dev") == 1 && group_count(p, "ops") == 1);
    CHECK_STR(p->groups[0], "dev");
    const char *scopes[] = {"a", "b"}, *team[] = {"x"};
    CHECK(p->nextra == 2 && extra_is(p, "scopes", scopes, 2) && extra_is(p, "team", team, 1));
    CHECK(fg_identity_header_safe(p));
    /* one allocation: every string lies after the struct, within a few hundred bytes */
    const char *lo = (const char *)(p + 1), *hi = lo + 512;
    CHECK(p->user >= lo && p->user < hi && p->groups[1] >= lo && p->groups[1] < hi);
    CHECK(p->extra[1].values[0] >= lo && p->extra[1].values[0] < hi);
    fg_identity_unref(p);
}

static void pack_bare_identity(void)
{
    struct fg_identity *id = fg_identity_new("bob", "keys");
    struct fg_identity *p = fg_identity_pack(id);
    CHECK_STR(p->user, "bob");
    CHECK(p->uid == NULL && p->groups == NULL && p->ngroups == 0);
    CHECK(p->extra == NULL && p->nextra == 0);
    CHECK(fg_identity_ref(p) == p && p->refs == 2);
    fg_identity_unref(p);
    fg_identity_unref(p);
    fg_identity_unref(id);
}

/* The shared global view is packed too, and a packed identity can have one. */
static void global_view_packed(void)
{
    struct fg_identity *id = fg_identity_new("alice", "keys");
    fg_identity_add_group(id, "system:masters");
    fg_identity_add_group(id, "dev");
    struct fg_identity *p = fg_identity_pack(id);
    fg_identity_unref(id);
    struct fg_identity *v = fg_identity_global_view(p, kcp_drop, 4);
    CHECK(v->packed && fg_identity_global_view(p, kcp_drop, 4) == v && v->refs == 3);
    CHECK(v->ngroups == 2 && group_count(v, "dev") == 1 && group_count(v, AUTHED) == 1);
    CHECK(group_count(v, "system:masters") == 0);
    fg_identity_unref(v);
    fg_identity_unref(v);
    fg_identity_unref(p); /* drops the view's last reference */
}

static void group_patterns(void)
{
    CHECK(fg_group_matches("system:masters", kcp_drop, 4));
    CHECK(fg_group_matches("system:kcp:logical-cluster-admin", kcp_drop, 4));
    CHECK(fg_group_matches("system:kcp:initializer:root:org", kcp_drop, 4));
    CHECK(fg_group_matches("system:kcp:terminator:x", kcp_drop, 4));
    /* A prefix pattern needs its prefix, including the final ':'. */
    CHECK(!fg_group_matches("system:kcp:initializer", kcp_drop, 4));
    CHECK(!fg_group_matches("system:masters2", kcp_drop, 4));
    CHECK(!fg_group_matches("system:master", kcp_drop, 4));
    CHECK(!fg_group_matches("SYSTEM:MASTERS", kcp_drop, 4));
    CHECK(!fg_group_matches("dev", kcp_drop, 4));
    char *all[] = {"*"};
    CHECK(fg_group_matches("anything", all, 1));
    CHECK(!fg_group_matches("anything", NULL, 0));
}

static void global_drops_configured_groups(void)
{
    const char *g[] = {"system:masters",
                       "dev",
                       "system:kcp:logical-cluster-admin",
                       "system:kcp:initializer:root:org",
                       "system:kcp:terminator:x",
                       "system:serviceaccounts",
                       "system:kcp:initializer"};
    struct fg_identity *in = with_groups("alice", g, FG_ARRAY_LEN(g));
    struct fg_identity *out = fg_identity_policy_global(in, kcp_drop, 4);
    CHECK(!fg_identity_has_group(out, "system:masters"));
    CHECK(!fg_identity_has_group(out, "system:kcp:logical-cluster-admin"));
    CHECK(!fg_identity_has_group(out, "system:kcp:initializer:root:org"));
    CHECK(!fg_identity_has_group(out, "system:kcp:terminator:x"));
    CHECK(fg_identity_has_group(out, "dev"));
    CHECK(fg_identity_has_group(out, "system:serviceaccounts"));
    CHECK(fg_identity_has_group(out, "system:kcp:initializer"));
    CHECK(fg_identity_has_group(out, AUTHED));
    CHECK(out->ngroups == 4);
    fg_identity_unref(out);
    fg_identity_unref(in);
}

/* dropGroups: [] keeps every group. */
static void global_empty_drop_list(void)
{
    const char *g[] = {"system:masters", "dev"};
    struct fg_identity *in = with_groups("alice", g, 2);
    struct fg_identity *out = fg_identity_policy_global(in, NULL, 0);
    CHECK(fg_identity_has_group(out, "system:masters"));
    CHECK(fg_identity_has_group(out, "dev"));
    CHECK(group_count(out, AUTHED) == 1);
    fg_identity_unref(out);
    fg_identity_unref(in);
}

static void global_adds_authenticated_once(void)
{
    const char *g[] = {AUTHED, "dev"};
    struct fg_identity *in = with_groups("alice", g, 2);
    struct fg_identity *out = fg_identity_policy_global(in, kcp_drop, 4);
    CHECK(group_count(out, AUTHED) == 1);
    CHECK(out->ngroups == 2);
    fg_identity_unref(out);
    fg_identity_unref(in);
    in = with_groups("bob", NULL, 0);
    out = fg_identity_policy_global(in, kcp_drop, 4);
    CHECK(out->ngroups == 1 && group_count(out, AUTHED) == 1);
    fg_identity_unref(out);
    fg_identity_unref(in);
}

/* Service accounts keep their system: names; user, uid, extras and authn pass as is. */
static void global_keeps_the_rest(void)
{
    const char *g[] = {"system:serviceaccounts", "system:serviceaccounts:ns"};
    struct fg_identity *in = with_groups("system:serviceaccount:ns:sa", g, 2);
    fg_identity_set_uid(in, "uid-1");
    fg_identity_add_extra(in, SCOPES, "cluster:x");
    fg_identity_add_extra(in, "example.org/tenant", "t1");
    fg_identity_add_extra(in, "example.org/tenant", "t2");
    struct fg_identity *out = fg_identity_policy_global(in, kcp_drop, 4);
    CHECK_STR(out->user, "system:serviceaccount:ns:sa");
    CHECK_STR(out->uid, "uid-1");
    CHECK_STR(out->authn, "test");
    CHECK(fg_identity_has_group(out, "system:serviceaccounts:ns"));
    const char *t[] = {"t1", "t2"}, *s[] = {"cluster:x"};
    CHECK(extra_is(out, "example.org/tenant", t, 2));
    CHECK(extra_is(out, SCOPES, s, 1));
    CHECK(out != in && out->refs == 1);
    fg_identity_unref(out);
    fg_identity_unref(in);
}

/* The input identity may be shared (cached): a policy never changes it. */
static void policies_leave_input_alone(void)
{
    const char *g[] = {"system:masters", "dev"};
    struct fg_identity *in = with_groups("alice", g, 2);
    fg_identity_add_extra(in, SCOPES, "cluster:evil");
    struct fg_identity *a = fg_identity_policy_global(in, kcp_drop, 4);
    const char *why = NULL;
    struct fg_identity *b = fg_identity_policy_workspace(in, "c1", &why);
    CHECK(in->ngroups == 2 && fg_identity_has_group(in, "system:masters"));
    CHECK(!fg_identity_has_group(in, AUTHED));
    const char *evil[] = {"cluster:evil"};
    CHECK(extra_is(in, SCOPES, evil, 1));
    CHECK(in->nextra == 1 && in->refs == 1);
    fg_identity_unref(a);
    fg_identity_unref(b);
    fg_identity_unref(in);
}

static void workspace_rejects_system_users(void)
{
    const char *names[] = {"system:admin", "system:serviceaccount:ns:sa",
                           "system:", "system:kcp:logical-cluster-admin"};
    for (size_t i = 0; i < FG_ARRAY_LEN(names); i++) {
        struct fg_identity *in = fg_identity_new(names[i], "test");
        const char *why = NULL;
        struct fg_identity *out = fg_identity_policy_workspace(in, "c1", &why);
        CHECK(out == NULL);
        CHECK_STR(why, "system usernames are not admitted");
        fg_identity_unref(out);
        fg_identity_unref(in);
    }
}

/* Only the exact "system:" prefix is reserved. */
static void workspace_admits_lookalike_users(void)
{
    const char *names[] = {"systemd", "oidc:system:admin", "system"};
    for (size_t i = 0; i < FG_ARRAY_LEN(names); i++) {
        struct fg_identity *in = fg_identity_new(names[i], "test");
        const char *why = NULL;
        struct fg_identity *out = fg_identity_policy_workspace(in, "c1", &why);
        CHECK(out != NULL && strcmp(out->user, names[i]) == 0);
        fg_identity_unref(out);
        fg_identity_unref(in);
    }
}

static void workspace_drops_all_system_groups(void)
{
    const char *g[] = {"system:masters",         "system:kcp:admin",
                       "system:authenticated",   "system:serviceaccounts",
                       "system:unauthenticated", "dev",
                       "oidc:system:x",          "systems"};
    struct fg_identity *in = with_groups("alice", g, FG_ARRAY_LEN(g));
    const char *why = NULL;
    struct fg_identity *out = fg_identity_policy_workspace(in, "c1", &why);
    CHECK(out != NULL);
    if (out) {
        CHECK(!fg_identity_has_group(out, "system:masters"));
        CHECK(!fg_identity_has_group(out, "system:kcp:admin"));
        CHECK(!fg_identity_has_group(out, "system:serviceaccounts"));
        CHECK(!fg_identity_has_group(out, "system:unauthenticated"));
        CHECK(fg_identity_has_group(out, "dev"));
        CHECK(fg_identity_has_group(out, "oidc:system:x"));
        CHECK(fg_identity_has_group(out, "systems"));
        CHECK(group_count(out, AUTHED) == 1);
        CHECK(out->ngroups == 4);
    }
    fg_identity_unref(out);
    fg_identity_unref(in);
}

/* The token's own kcp.io claims are replaced, never merged. */
static void workspace_scopes_replaced(void)
{
    struct fg_identity *in = fg_identity_new("alice", "test");
    fg_identity_set_uid(in, "u-9");
    fg_identity_add_extra(in, SCOPES, "cluster:other");
    fg_identity_add_extra(in, CLNAME, "other");
    fg_identity_add_extra(in, "kcp.io/test", "x");
    fg_identity_add_extra(in, "foo.kcp.io/bar", "x");
    fg_identity_add_extra(in, "other.example.com/test", "kept");
    const char *why = NULL;
    struct fg_identity *out = fg_identity_policy_workspace(in, "2x8ab3xq", &why);
    CHECK(out != NULL);
    if (out) {
        const char *sc[] = {"cluster:2x8ab3xq"}, *cn[] = {"2x8ab3xq"}, *kept[] = {"kept"};
        CHECK(extra_is(out, SCOPES, sc, 1));
        CHECK(extra_is(out, CLNAME, cn, 1));
        CHECK(fg_identity_get_extra(out, "kcp.io/test") == NULL);
        CHECK(fg_identity_get_extra(out, "foo.kcp.io/bar") == NULL);
        CHECK(extra_is(out, "other.example.com/test", kept, 1));
        CHECK(out->nextra == 3);
        CHECK_STR(out->user, "alice");
        CHECK_STR(out->uid, "u-9");
    }
    fg_identity_unref(out);
    fg_identity_unref(in);
}

static void workspace_plain_identity(void)
{
    struct fg_identity *in = fg_identity_new("alice", "test");
    const char *why = "unchanged";
    struct fg_identity *out = fg_identity_policy_workspace(in, "root", &why);
    CHECK(out != NULL && out != in && out->refs == 1);
    if (out) {
        CHECK(out->ngroups == 1 && group_count(out, AUTHED) == 1);
        const char *sc[] = {"cluster:root"}, *cn[] = {"root"};
        CHECK(extra_is(out, SCOPES, sc, 1));
        CHECK(extra_is(out, CLNAME, cn, 1));
        CHECK(out->nextra == 2);
    }
    fg_identity_unref(out);
    fg_identity_unref(in);
}

static void header_safe_clean(void)
{
    const char *g[] = {"dev", "oidc:team a"};
    struct fg_identity *id = with_groups("alice@example.com", g, 2);
    fg_identity_set_uid(id, "1234-abcd");
    fg_identity_add_extra(id, "example.org/tenant", "t 1");
    fg_identity_add_extra(id, "k", "caf\xc3\xa9");
    CHECK(fg_identity_header_safe(id));
    fg_identity_unref(id);
}

/* True when an identity with bad placed in one field is refused. */
static int unsafe_in(int field, const char *bad)
{
    struct fg_identity *id = fg_identity_new(field == 0 ? bad : "alice", "test");
    fg_identity_set_uid(id, field == 1 ? bad : "uid");
    fg_identity_add_group(id, field == 2 ? bad : "dev");
    fg_identity_add_extra(id, field == 3 ? bad : "key", field == 4 ? bad : "value");
    int safe = fg_identity_header_safe(id);
    fg_identity_unref(id);
    return !safe;
}

static void header_safe_rejects_controls(void)
{
    const char *bad[] = {"a\rb",     "a\nb", "a\r\nX-Remote-User: root", "a\x01", "\x1f", "a\x7f",
                         "a\x1b[0m", "a\tb"};
    for (int field = 0; field < 5; field++) {
        for (size_t i = 0; i < FG_ARRAY_LEN(bad); i++) {
            if (!unsafe_in(field, bad[i])) {
                printf("#   field %d: %zu accepted\n", field, i);
                CHECK(0);
            }
        }
    }
}

/*
 * A recipient strips SP and HTAB at a value's ends (RFC 9110 5.5): " system:masters" would be
 * read as system:masters after a policy that looks for "system:" let it through.
 */
static void header_safe_rejects_ows_at_the_ends(void)
{
    const char *bad[] = {" system:masters", "system:masters ", "\tsystem:masters", " ", "a\t"};
    for (int field = 0; field < 5; field++) {
        for (size_t i = 0; i < FG_ARRAY_LEN(bad); i++) {
            if (!unsafe_in(field, bad[i])) {
                printf("#   field %d: \"%s\" accepted\n", field, bad[i]);
                CHECK(0);
            }
        }
    }
    CHECK(!unsafe_in(2, "team a")); /* inner spaces are the group's own */
    CHECK(unsafe_in(0, ""));        /* no user at all */
}

/* An empty extra key would make a header named "X-Remote-Extra-". */
static void header_safe_empty_extra_key(void)
{
    CHECK(unsafe_in(3, ""));
    CHECK(!unsafe_in(4, ""));
}

static void escape_kcp_keys(void)
{
    char *s = escaped(SCOPES);
    CHECK_STR(s, "Authentication.kcp.io%2fscopes");
    free(s);
    s = escaped(CLNAME);
    CHECK_STR(s, "Authentication.kcp.io%2fcluster-Name");
    free(s);
    s = escaped("example.org/tenant");
    CHECK_STR(s, "Example.org%2ftenant");
    free(s);
}

static void escape_special_bytes(void)
{
    const char *cases[][2] = {
        {"a%b", "A%25b"},  {"a b", "A%20b"},       {"a:b", "A%3ab"},
        {"a\"b", "A%22b"}, {"\xc3\xa9", "%c3%a9"}, {"a=b", "A%3db"},
        {"a\nb", "A%0ab"}, {"a,b", "A%2cb"},       {"100%", "100%25"},
    };
    for (size_t i = 0; i < FG_ARRAY_LEN(cases); i++) {
        char *s = escaped(cases[i][0]);
        CHECK_STR(s, cases[i][1]);
        free(s);
    }
}

/* Go's CanonicalMIMEHeaderKey: upper after '-' and at the start, lower elsewhere. */
static void escape_canonical_case(void)
{
    const char *cases[][2] = {
        {"x-y-z", "X-Y-Z"}, {"ABC", "Abc"},         {"a-B-c", "A-B-C"},
        {"1abc", "1abc"},   {"foo_bar", "Foo_bar"}, {"a--b", "A--B"},
        {"a-/b", "A-%2fb"}, {"-a", "-A"},           {"a.B!c~", "A.b!c~"},
    };
    for (size_t i = 0; i < FG_ARRAY_LEN(cases); i++) {
        char *s = escaped(cases[i][0]);
        CHECK_STR(s, cases[i][1]);
        free(s);
    }
}

static void escape_appends(void)
{
    struct fg_buf b = {0};
    fg_buf_adds(&b, "X-Remote-Extra-");
    fg_identity_escape_extra_key(&b, "scopes");
    CHECK_STR(b.data, "X-Remote-Extra-Scopes");
    fg_buf_free(&b);
    char *s = escaped("");
    CHECK_STR(s, "");
    free(s);
}

int main(void)
{
    RUN(builders_dedupe);
    RUN(refcounting);
    RUN(pack_copies_everything);
    RUN(pack_bare_identity);
    RUN(global_view_packed);
    RUN(group_patterns);
    RUN(global_drops_configured_groups);
    RUN(global_empty_drop_list);
    RUN(global_adds_authenticated_once);
    RUN(global_keeps_the_rest);
    RUN(policies_leave_input_alone);
    RUN(workspace_rejects_system_users);
    RUN(workspace_admits_lookalike_users);
    RUN(workspace_drops_all_system_groups);
    RUN(workspace_scopes_replaced);
    RUN(workspace_plain_identity);
    RUN(header_safe_clean);
    RUN(header_safe_rejects_controls);
    RUN(header_safe_rejects_ows_at_the_ends);
    RUN(header_safe_empty_extra_key);
    RUN(escape_kcp_keys);
    RUN(escape_special_bytes);
    RUN(escape_canonical_case);
    RUN(escape_appends);
    DONE();
}
