#include "snapshot.h"

#include "../auth/jwtauthn.h"
#include "../auth/mint.h"
#include "../auth/statickeys.h"
#include "../auth/tokenreview.h"
#include "metrics.h"
#include "tls.h"

#include <pthread.h>
#include <stdlib.h>

static pthread_mutex_t current_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fg_snapshot *current;
static uint64_t current_generation; /* atomic */

uint64_t fg_snapshot_generation(void)
{
    return __atomic_load_n(&current_generation, __ATOMIC_ACQUIRE);
}

static struct fg_authn *build_authn(struct fg_snapshot *s, const struct fg_authn_cfg *a,
                                    struct fg_fetcher *f, struct fg_errs *errs)
{
    const struct fg_config *cfg = s->cfg;
    switch (a->kind) {
    case FG_AUTHN_STATIC_KEYS: {
        char *path = fg_config_path(cfg, a->static_keys.file);
        struct fg_statickeys *ks = fg_statickeys_load(
            path, &a->static_keys.file_mark, a->static_keys.username_prefix, a->name, errs);
        free(path);
        return ks ? fg_statickeys_authn(a->name, ks) : NULL;
    }
    case FG_AUTHN_JWT:
        return fg_jwtauthn_new(a->name, a->jwts, a->njwts, f, s->tokcache, a->require_ready);
    case FG_AUTHN_TOKEN_REVIEW:
        return fg_tokenreview_new(a->name, a->token_review, cfg->dir, f, errs, &a->mark);
    }
    return NULL;
}

struct fg_snapshot *fg_snapshot_build(struct fg_config *cfg, uint64_t generation,
                                      struct fg_fetcher *f, struct fg_errs *errs)
{
    size_t before = errs->n;
    struct fg_snapshot *s = fg_calloc(1, sizeof(*s));
    s->refs = 1;
    s->generation = generation;
    s->cfg = cfg;
    s->listener_ctx = fg_calloc(cfg->nlisteners, sizeof(SSL_CTX *));
    for (size_t i = 0; i < cfg->nlisteners; i++)
        if (cfg->listeners[i].tls)
            s->listener_ctx[i] = fg_tls_server_ctx(cfg, &cfg->listeners[i], errs);
    s->shard_ctx = fg_calloc(cfg->nshards, sizeof(SSL_CTX *));
    for (size_t i = 0; i < cfg->nshards; i++)
        if (cfg->shards[i].https)
            s->shard_ctx[i] = fg_tls_client_ctx(cfg, &cfg->shards[i], errs);
    s->mints = fg_calloc(cfg->nshards, sizeof(struct fg_mint *));
    for (size_t i = 0; i < cfg->nshards; i++) {
        const struct fg_shard_cfg *sh = &cfg->shards[i];
        if (sh->mint == NULL)
            continue;
        char *key = fg_config_path(cfg, sh->mint->key_file);
        s->mints[i] =
            fg_mint_new(sh->mint->issuer, sh->mint->audience, sh->mint->ttl_s, key, errs,
                        sh->mint->key_mark.file, sh->mint->key_mark.line, sh->mint->key_mark.col);
        free(key);
    }
    s->tokcache = fg_tokcache_new(cfg->token_cache_size, cfg->token_cache_ttl_ms);
    s->authns = fg_calloc(cfg->nauthns, sizeof(struct fg_authn *));
    for (size_t i = 0; i < cfg->nauthns; i++) {
        s->authns[i] = build_authn(s, &cfg->authns[i], f, errs);
        if (s->authns[i])
            s->authns[i]->label = fg_metrics_authn_label(cfg->authns[i].name);
    }
    s->route_label = fg_calloc(cfg->nroutes + 1, sizeof(uint16_t));
    for (size_t i = 0; i < cfg->nroutes; i++)
        s->route_label[i] = fg_metrics_route_label(cfg->routes[i].prefix);
    s->shard_label = fg_calloc(cfg->nshards + 1, sizeof(uint16_t));
    for (size_t i = 0; i < cfg->nshards; i++)
        s->shard_label[i] = fg_metrics_shard_label(cfg->shards[i].name);
    if (errs->n != before) {
        fg_snapshot_unref(s);
        return NULL;
    }
    s->global = fg_calloc(cfg->nglobal, sizeof(struct fg_authn *));
    for (size_t i = 0; i < cfg->nglobal; i++)
        s->global[s->nglobal++] = s->authns[cfg->global[i]];
    s->any_authn = s->nglobal > 0;
    s->wstypes = fg_calloc(cfg->nwstypes, sizeof(struct fg_wstype_rt));
    for (size_t i = 0; i < cfg->nwstypes; i++) {
        struct fg_wstype_rt *t = &s->wstypes[i];
        t->authns = fg_calloc(cfg->wstypes[i].nauthns, sizeof(struct fg_authn *));
        for (size_t j = 0; j < cfg->wstypes[i].nauthns; j++)
            t->authns[t->nauthns++] = s->authns[cfg->wstypes[i].authns[j]];
        s->any_authn |= t->nauthns > 0;
    }
    return s;
}

struct fg_snapshot *fg_snapshot_load(const char *config_file, uint64_t generation,
                                     struct fg_fetcher *f, struct fg_errs *errs)
{
    struct fg_file_list files = {0};
    fg_config_files_begin(&files);
    struct fg_config *cfg = fg_config_load(config_file, errs);
    struct fg_snapshot *s = cfg ? fg_snapshot_build(cfg, generation, f, errs) : NULL;
    fg_config_files_end();
    if (s)
        s->files = files;
    else
        fg_file_list_free(&files);
    return s;
}

int fg_snapshot_ready(const struct fg_snapshot *s)
{
    for (size_t i = 0; i < s->cfg->nauthns; i++)
        if (!fg_authn_ready(s->authns[i]))
            return 0;
    return 1;
}

struct fg_snapshot *fg_snapshot_ref(struct fg_snapshot *s)
{
    __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
    return s;
}

static struct fg_fetcher *reaper; /* atomic */

void fg_snapshot_set_reaper(struct fg_fetcher *f)
{
    __atomic_store_n(&reaper, f, __ATOMIC_RELEASE);
}

static void snapshot_free(void *arg);

void fg_snapshot_unref(struct fg_snapshot *s)
{
    if (s == NULL || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    /* Freeing a snapshot can take a while (a full token cache is ~100k frees): not on a
     * worker while requests wait. The control thread does it when there is one. */
    struct fg_fetcher *f = __atomic_load_n(&reaper, __ATOMIC_ACQUIRE);
    if (f)
        f->post(f, snapshot_free, s);
    else
        snapshot_free(s);
}

static void snapshot_free(void *arg)
{
    struct fg_snapshot *s = arg;
    const struct fg_config *cfg = s->cfg;
    for (size_t i = 0; i < cfg->nlisteners; i++)
        SSL_CTX_free(s->listener_ctx[i]);
    free(s->listener_ctx);
    for (size_t i = 0; i < cfg->nshards; i++)
        SSL_CTX_free(s->shard_ctx[i]);
    free(s->shard_ctx);
    for (size_t i = 0; s->authns && i < cfg->nauthns; i++)
        fg_authn_unref(s->authns[i]);
    free(s->authns);
    free(s->global);
    for (size_t i = 0; s->wstypes && i < cfg->nwstypes; i++)
        free(s->wstypes[i].authns);
    free(s->wstypes);
    fg_tokcache_retire(s->tokcache, __atomic_load_n(&reaper, __ATOMIC_ACQUIRE));
    for (size_t i = 0; s->mints && i < cfg->nshards; i++)
        fg_mint_free(s->mints[i]);
    free(s->mints);
    free(s->route_label);
    free(s->shard_label);
    fg_file_list_free(&s->files);
    fg_config_free(s->cfg);
    free(s);
}

struct fg_snapshot *fg_snapshot_current(void)
{
    pthread_mutex_lock(&current_lock);
    struct fg_snapshot *s = current ? fg_snapshot_ref(current) : NULL;
    pthread_mutex_unlock(&current_lock);
    return s;
}

void fg_snapshot_install(struct fg_snapshot *s)
{
    pthread_mutex_lock(&current_lock);
    struct fg_snapshot *old = current;
    current = s;
    __atomic_store_n(&current_generation, s ? s->generation : 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&current_lock);
    fg_snapshot_unref(old);
}
