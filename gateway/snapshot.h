/*
 * snapshot.h - everything a request reads, built whole from one config load
 * and swapped atomically on SIGHUP. A request pins the snapshot it started
 * with (a reference) until it completes, so a reload never changes a request
 * half-way; a failed build leaves the current snapshot in place.
 */
#ifndef FG_SNAPSHOT_H
#define FG_SNAPSHOT_H

#include <openssl/ssl.h>
#include <stdint.h>

#include "../auth/authn.h"
#include "../auth/fetch.h"
#include "../auth/tokcache.h"
#include "../config/config.h"

struct fg_wstype_rt {
    struct fg_authn **authns;
    size_t nauthns;
};

struct fg_snapshot {
    int refs; /* atomic */
    uint64_t generation;
    struct fg_config *cfg;
    SSL_CTX **listener_ctx;   /* per listener; NULL for plaintext */
    SSL_CTX **shard_ctx;      /* per shard; NULL for http:// */
    struct fg_authn **authns; /* per cfg->authns */
    struct fg_authn **global; /* cfg->global, resolved */
    size_t nglobal;
    struct fg_wstype_rt *wstypes; /* per cfg->wstypes */
    struct fg_tokcache *tokcache; /* verified tokens; a reload starts a new, empty one */
    int any_authn; /* some route may authenticate (global or workspace-type authenticators) */
    struct fg_mint **mints;    /* per shard: identity translation, or NULL */
    uint16_t *route_label;     /* per route: its metrics label slot (metrics.h) */
    uint16_t *shard_label;     /* per shard: likewise */
    struct fg_file_list files; /* every file its load read (reload.watchFiles) */
};

/*
 * Loads config_file and everything it names (key files, index, TLS files).
 * Returns a snapshot with one reference, or NULL with every error in errs.
 * f runs the authenticators' network calls (OIDC discovery, JWKS); NULL
 * means none are made (`frontgate check`).
 */
struct fg_snapshot *fg_snapshot_load(const char *config_file, uint64_t generation,
                                     struct fg_fetcher *f, struct fg_errs *errs);
/* As fg_snapshot_load, from a config that was already parsed (takes ownership). */
struct fg_snapshot *fg_snapshot_build(struct fg_config *cfg, uint64_t generation,
                                      struct fg_fetcher *f, struct fg_errs *errs);

/* True when every authenticator that gates readiness can answer (keys fetched). */
int fg_snapshot_ready(const struct fg_snapshot *s);

struct fg_snapshot *fg_snapshot_ref(struct fg_snapshot *s);
/* Drops a reference; the last one frees the snapshot on the reaper's thread, if one is set. */
void fg_snapshot_unref(struct fg_snapshot *s);
/*
 * Where last references are freed: the fetcher's thread (the control loop), and
 * a dropped token cache a slice at a time there (fg_tokcache_retire). NULL frees
 * inline (before the control loop exists, and after it is gone).
 */
void fg_snapshot_set_reaper(struct fg_fetcher *f);

/* The generation of the installed snapshot (0 before any): one atomic load. */
uint64_t fg_snapshot_generation(void);

/* Process-wide current snapshot: get returns a new reference. */
struct fg_snapshot *fg_snapshot_current(void);
/* Installs s (taking its reference) and drops the previous one. */
void fg_snapshot_install(struct fg_snapshot *s);

#endif
