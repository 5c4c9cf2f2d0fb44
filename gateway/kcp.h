/*
 * kcp.h - the workspace index fed live from kcp (index.fromKcp).
 *
 * On the control loop, through the fetcher: Shards are listed and watched at the root shard;
 * per Shard, the wildcard LogicalClusters at its baseURL (as kcp's own front proxy does). Each
 * list is paged; each watch resumes from the last resourceVersion it saw, takes bookmarks, and
 * a 410 (Gone) relists. A failing shard is retried with backoff while its last good data keeps
 * serving. Nothing here runs on a worker.
 *
 * What workers read is a *generation*: an immutable index built from every shard's logical
 * clusters, published by a pointer swap a short, adaptive while after a change (a busy kcp
 * gets at most one build per few times the last build took), and pinned by each request that
 * resolved a workspace in it. Workspaces name their shard and type by name; the request maps
 * them to its snapshot's shards (kcp Shards become config shards named after them, added by
 * fg_kcp_add_shards on every reload) and workspace types.
 */
#ifndef FG_KCP_H
#define FG_KCP_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "../auth/fetch.h"
#include "../config/config.h"
#include "kcpauth.h"

struct fg_live {
    int refs; /* atomic */
    uint64_t serial;
    struct fg_index *ix; /* fg_workspace.shard and .type index shards[] and types[] */
    char **shards;
    size_t nshards;
    char **types;
    size_t ntypes;
    /* workspaceAuthentication: per types[i], what kcp's WorkspaceType says (else NULL) */
    struct fg_live_type *ltypes;
    struct fg_kcpauth_build **holds; /* the WAC builds ltypes use */
    size_t nholds;
    struct fg_fetcher *reaper; /* where the last reference is freed */
};

/* The current generation (a new reference), or NULL before the first. */
struct fg_live *fg_live_current(void);
/* The current generation's serial (0 before any): one atomic load. */
uint64_t fg_live_serial(void);
struct fg_live *fg_live_ref(struct fg_live *l);
void fg_live_unref(struct fg_live *l);
/* 0 while a kcp source runs and some shard has not finished its first list; else 1. */
int fg_live_ready(void);

struct fg_kcp;

/* Called on the control loop when the set of Shards (names, baseURLs) changed. */
typedef void (*fg_kcp_shards_fn)(void *arg);

/*
 * Starts the source for cfg->kcp (cfg is the configuration it starts under: its directory
 * resolves the rootShard files). NULL with errs when the rootShard TLS files do not load.
 */
struct fg_kcp *fg_kcp_start(const struct fg_config *cfg, struct fg_fetcher *f,
                            fg_kcp_shards_fn shards_changed, void *arg, struct fg_errs *errs);
/* Stops every list and watch and frees the source; the current generation stays installed. */
void fg_kcp_stop(struct fg_kcp *k);

/*
 * A reload's rootShard TLS (its caFile, client certificate and key, or the kubeconfig's, read
 * again): the new context, or NULL (*failed set when it does not load, errors in errs; not set
 * for plain http). Nothing changes until fg_kcp_commit_tls, called once the reload is
 * committed: lists and watches from then on use the new context (and a kubeconfig's new inline
 * token); those under way keep theirs.
 */
SSL_CTX *fg_kcp_prepare_tls(struct fg_kcp *k, const struct fg_config *cfg, struct fg_errs *errs,
                            int *failed);
void fg_kcp_commit_tls(struct fg_kcp *k, const struct fg_config *cfg, SSL_CTX *ctx);

/* Appends the Shards kcp knows to cfg (as cfg->kcp->shards says); logs those it cannot add. */
void fg_kcp_add_shards(struct fg_kcp *k, struct fg_config *cfg);

/* Per-shard state in Prometheus' text format (metrics.h), appended to b; nothing when k is NULL. */
void fg_kcp_metrics(struct fg_kcp *k, struct fg_buf *b);

/* What readiness waits for, in words (caller frees), or NULL when every shard has synced. */
char *fg_kcp_waits_for(struct fg_kcp *k);

#endif
