#include "snapshot.h"

#include "../auth/statickeys.h"
#include "tls.h"

#include <pthread.h>
#include <stdlib.h>

static pthread_mutex_t current_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fg_snapshot *current;

static struct fg_authn *build_authn(const struct fg_config *cfg, const struct fg_authn_cfg *a,
                                    struct fg_errs *errs)
{
    switch (a->kind) {
    case FG_AUTHN_STATIC_KEYS: {
        char *path = fg_config_path(cfg, a->static_keys.file);
        struct fg_statickeys *ks =
            fg_statickeys_load(path, a->static_keys.username_prefix, a->name, errs);
        free(path);
        return ks ? fg_statickeys_authn(a->name, ks) : NULL;
    }
    case FG_AUTHN_JWT:
        fg_errs_add(errs, a->mark.file, a->mark.line, a->mark.col,
                    "jwt authenticators are not wired in yet");
        return NULL;
    }
    return NULL;
}

struct fg_snapshot *fg_snapshot_build(struct fg_config *cfg, uint64_t generation,
                                      struct fg_errs *errs)
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
    s->authns = fg_calloc(cfg->nauthns, sizeof(struct fg_authn *));
    for (size_t i = 0; i < cfg->nauthns; i++)
        s->authns[i] = build_authn(cfg, &cfg->authns[i], errs);
    if (errs->n != before) {
        fg_snapshot_unref(s);
        return NULL;
    }
    s->global = fg_calloc(cfg->nglobal, sizeof(struct fg_authn *));
    for (size_t i = 0; i < cfg->nglobal; i++)
        s->global[s->nglobal++] = s->authns[cfg->global[i]];
    s->wstypes = fg_calloc(cfg->nwstypes, sizeof(struct fg_wstype_rt));
    for (size_t i = 0; i < cfg->nwstypes; i++) {
        struct fg_wstype_rt *t = &s->wstypes[i];
        t->authns = fg_calloc(cfg->wstypes[i].nauthns, sizeof(struct fg_authn *));
        for (size_t j = 0; j < cfg->wstypes[i].nauthns; j++)
            t->authns[t->nauthns++] = s->authns[cfg->wstypes[i].authns[j]];
    }
    return s;
}

struct fg_snapshot *fg_snapshot_load(const char *config_file, uint64_t generation,
                                     struct fg_errs *errs)
{
    struct fg_config *cfg = fg_config_load(config_file, errs);
    if (cfg == NULL)
        return NULL;
    return fg_snapshot_build(cfg, generation, errs);
}

struct fg_snapshot *fg_snapshot_ref(struct fg_snapshot *s)
{
    __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
    return s;
}

void fg_snapshot_unref(struct fg_snapshot *s)
{
    if (s == NULL || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
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
    pthread_mutex_unlock(&current_lock);
    fg_snapshot_unref(old);
}
