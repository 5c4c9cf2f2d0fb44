/*
 * kcpauth.h - per-workspace authentication live from kcp (index.fromKcp.workspaceAuthentication):
 * the WorkspaceTypes and WorkspaceAuthenticationConfigurations (WACs) of every shard, as kcp's
 * own front proxy keeps them (pkg/authentication), and the authenticators built from them.
 *
 * A WorkspaceType is known by its kcp.io/path annotation joined with its name (the key a
 * LogicalCluster's internal.tenancy.kcp.io/type annotation names); its
 * spec.authenticationConfigurations name WACs in the type's own logical cluster. Each WAC's
 * spec.jwt[] is read with kube's rules (config/jwtcfg.h) and becomes one jwt authenticator with
 * a verified-token cache of its own. A WAC is built again only when its spec changes (a resync
 * or an unrelated event keeps the authenticator and its cache); a spec that does not build is
 * logged with the object's name and the last spec that built keeps serving.
 *
 * Everything here runs on the control loop (kcp.c's reflectors); workers see the result only
 * through an index generation (struct fg_live), which holds references on what it uses.
 */
#ifndef FG_KCPAUTH_H
#define FG_KCPAUTH_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "../auth/authn.h"
#include "../auth/fetch.h"

enum fg_kcpauth_kind { FG_KCPAUTH_TYPES, FG_KCPAUTH_WACS };

struct fg_kcpauth;
struct fg_kcpauth_build; /* one WAC spec's authenticator, refcounted */

/* The authenticators of one workspace type, as a generation holds them. */
struct fg_live_type {
    struct fg_authn **authns; /* the type's WACs that have built, in the type's order */
    size_t nauthns;
    uint32_t ctx; /* the union memo's member-list key: equal ctx, equal members */
    int known;    /* kcp has this WorkspaceType (else the config's workspaceTypes decide) */
};

/* cache_size, cache_ttl_ms: each WAC's verified-token cache. f fetches issuers' keys. */
struct fg_kcpauth *fg_kcpauth_new(struct fg_fetcher *f, size_t cache_size, uint64_t cache_ttl_ms);
void fg_kcpauth_free(struct fg_kcpauth *a);

/* An ADDED or MODIFIED object of shard. 1 when what requests would see may have changed. */
int fg_kcpauth_put(struct fg_kcpauth *a, enum fg_kcpauth_kind kind, const char *shard, json_t *obj);
/* A DELETED object. */
int fg_kcpauth_del(struct fg_kcpauth *a, enum fg_kcpauth_kind kind, const char *shard, json_t *obj);
/* A whole list of shard's objects of kind (a JSON array): shard's others of that kind go. */
int fg_kcpauth_replace(struct fg_kcpauth *a, enum fg_kcpauth_kind kind, const char *shard,
                       json_t *items);
/* The shard is gone: its objects go. */
int fg_kcpauth_drop_shard(struct fg_kcpauth *a, const char *shard);

/*
 * Fills t for the workspace type named `type` (a LogicalCluster's type annotation) and
 * appends to *holds the builds it references (the generation releases them with
 * fg_kcpauth_build_unref). t->known = 0 when kcp has no such WorkspaceType.
 */
void fg_kcpauth_type(struct fg_kcpauth *a, const char *type, struct fg_live_type *t,
                     struct fg_kcpauth_build ***holds, size_t *nholds, size_t *cap);
void fg_kcpauth_build_unref(struct fg_kcpauth_build *b);

/* Counts for the log and /readyz: WorkspaceTypes, WACs, WACs whose current spec fails. */
void fg_kcpauth_counts(const struct fg_kcpauth *a, size_t *types, size_t *wacs, size_t *failing);

#endif
