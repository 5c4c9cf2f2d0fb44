/*
 * identity.h - who the caller is, once an authenticator has admitted them,
 * and the policy that turns that into what a shard may see.
 *
 * Identities are immutable once built and reference-counted, so a cached
 * identity can be shared by any number of in-flight requests on any worker.
 */
#ifndef FG_IDENTITY_H
#define FG_IDENTITY_H

#include <stddef.h>

#include "../config/base.h"

struct fg_extra {
    char *key;
    char **values;
    size_t nvalues;
};

struct fg_identity {
    int refs;   /* atomic */
    int packed; /* made by fg_identity_pack: one allocation, never changed */
    char *user;
    char *uid; /* may be NULL */
    char **groups;
    size_t ngroups;
    struct fg_extra *extra;
    size_t nextra;
    const char *authn; /* name of the authenticator that admitted it (static or snapshot-owned) */
    struct fg_identity *global_view; /* fg_identity_global_view's result, made once (atomic) */
};

/* A new identity with one reference. Strings are copied. */
struct fg_identity *fg_identity_new(const char *user, const char *authn);
/* Builders, for use before the identity is shared. Duplicate groups/values are skipped. */
void fg_identity_set_uid(struct fg_identity *id, const char *uid);
void fg_identity_add_group(struct fg_identity *id, const char *group);
void fg_identity_add_extra(struct fg_identity *id, const char *key, const char *value);
int fg_identity_has_group(const struct fg_identity *id, const char *group);
const struct fg_extra *fg_identity_get_extra(const struct fg_identity *id, const char *key);

/*
 * A copy of id (one reference, no global view yet) in one allocation: the
 * struct, then its arrays, then its strings, so a reader touches a few
 * neighbouring cache lines instead of one allocation per string. For
 * identities read on every request (static keys, global views). The
 * builders above must not be called on the result.
 */
struct fg_identity *fg_identity_pack(const struct fg_identity *id);

struct fg_identity *fg_identity_ref(struct fg_identity *id);
void fg_identity_unref(struct fg_identity *id);

/*
 * True when every field reaches a shard as exactly these bytes: a non-empty
 * user, and no field with a control byte (CR, LF, NUL, HTAB, ...) or with a
 * space at either end (a header recipient strips those as OWS). Checked on
 * what an authenticator admitted, before the identity policy reads it, and
 * again on what the policy made: an identity that fails never reaches a shard.
 */
int fg_identity_header_safe(const struct fg_identity *id);

/* True when group matches one of the patterns (a trailing '*' is a prefix match). */
int fg_group_matches(const char *group, char *const *patterns, size_t npatterns);

/*
 * Policy for identities from global authenticators: drop the configured
 * groups, add system:authenticated. Returns a new identity (one reference).
 */
struct fg_identity *fg_identity_policy_global(const struct fg_identity *id,
                                              char *const *drop_groups, size_t ndrop);

/*
 * fg_identity_policy_global, computed once per identity and shared by every
 * request that presents it (a static key, a cached token): a new reference.
 * Correct because an identity never outlives the config snapshot, and so the
 * drop_groups, it was admitted under.
 */
struct fg_identity *fg_identity_global_view(struct fg_identity *id, char *const *drop_groups,
                                            size_t ndrop);

/*
 * Policy for identities from a workspace type's authenticators (kcp's
 * order): reject system: usernames, drop every system:* group and every
 * extra key containing "kcp.io", add system:authenticated, append
 * "cluster:<cluster>" to authentication.kcp.io/scopes and set
 * authentication.kcp.io/cluster-name. Returns a new identity, or NULL with
 * *reason set when the identity is not admitted.
 */
struct fg_identity *fg_identity_policy_workspace(const struct fg_identity *id, const char *cluster,
                                                 const char **reason);

/*
 * Appends the header-name form of an extra key as kcp sends it: bytes that
 * are not RFC 7230 token characters, and '%', percent-encoded (kube's
 * escaping), then Go's canonical header casing, e.g.
 * "authentication.kcp.io/scopes" -> "Authentication.kcp.io%2fscopes".
 */
void fg_identity_escape_extra_key(struct fg_buf *b, const char *key);

#endif
