/*
 * kcpauth.c - WorkspaceTypes and WorkspaceAuthenticationConfigurations from kcp, and the jwt
 * authenticators built from them (see kcpauth.h).
 *
 * Both kinds are few (a handful per organisation), so they live in plain lists: an event costs
 * a walk of them on the control loop, never a worker's time.
 */
#include "kcpauth.h"

#include "../auth/jwtauthn.h"
#include "../auth/tokcache.h"
#include "../config/base.h"
#include "../config/jwtcfg.h"
#include "metrics.h"

#include <stdlib.h>
#include <string.h>

struct fg_kcpauth_build {
    int refs; /* atomic */
    uint64_t id;
    struct fg_authn *authn;
    struct fg_jwt_cfg **cfgs; /* borrowed by authn */
    size_t ncfgs;
    struct fg_tokcache *cache; /* borrowed by authn */
    struct fg_fetcher *f;      /* retires the cache */
};

struct wac {
    char *cluster, *name, *shard;
    char *spec;                    /* the spec as last seen (canonical JSON) */
    struct fg_kcpauth_build *good; /* the last spec that built, or NULL */
    int failing;                   /* the current spec did not build */
    struct wac *next;
};

struct wtype {
    char *key; /* kcp.io/path:name */
    char *cluster, *name, *shard;
    char **refs; /* spec.authenticationConfigurations[].name */
    size_t nrefs;
    uint64_t *last; /* the build ids the last composition used */
    size_t nlast;
    uint32_t ctx;
    struct wtype *next;
};

struct fg_kcpauth {
    struct fg_fetcher *f;
    size_t cache_size;
    uint64_t cache_ttl_ms;
    struct wac *wacs;
    struct wtype *types;
    uint64_t next_build;
    uint32_t next_ctx;
};

static const char *jstr(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static const char *annotation(json_t *obj, const char *key)
{
    return jstr(json_object_get(json_object_get(obj, "metadata"), "annotations"), key);
}

/* ---- builds ------------------------------------------------------------------ */

static struct fg_kcpauth_build *build_ref(struct fg_kcpauth_build *b)
{
    __atomic_add_fetch(&b->refs, 1, __ATOMIC_RELAXED);
    return b;
}

void fg_kcpauth_build_unref(struct fg_kcpauth_build *b)
{
    if (b == NULL || __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    fg_authn_unref(b->authn);
    for (size_t i = 0; i < b->ncfgs; i++)
        fg_jwtcfg_free(b->cfgs[i]);
    free(b->cfgs);
    fg_tokcache_retire(b->cache, b->f);
    free(b);
}

/* The name a WAC goes by in the log, the access log's authn field and its cache keys. */
static char *wac_label(const struct wac *w)
{
    struct fg_buf b = {0};
    fg_buf_printf(&b, "kcp:%s:%s", w->cluster, w->name);
    return fg_buf_take(&b);
}

/* Builds w's current spec; on failure logs why and keeps w->good. */
static void build(struct fg_kcpauth *a, struct wac *w)
{
    char *label = wac_label(w);
    struct fg_buf where = {0};
    fg_buf_printf(&where, "WorkspaceAuthenticationConfiguration %s|%s (shard %s) spec", w->cluster,
                  w->name, w->shard);
    struct fg_errs errs = {0};
    struct fg_jwt_cfg **cfgs;
    size_t n;
    if (fg_jwtcfg_read_spec(where.data, w->spec, strlen(w->spec), &errs, &cfgs, &n) != 0) {
        for (size_t i = 0; i < errs.n; i++)
            fg_log(FG_LOG_ERROR, "kcp: %s", errs.msgs[i]);
        fg_log(FG_LOG_ERROR, "kcp: WorkspaceAuthenticationConfiguration %s|%s does not build; %s",
               w->cluster, w->name,
               w->good ? "its previous spec keeps serving" : "workspace types naming it skip it");
        fg_errs_free(&errs);
        w->failing = 1;
        fg_buf_free(&where);
        free(label);
        return;
    }
    struct fg_kcpauth_build *b = fg_calloc(1, sizeof(*b));
    b->refs = 1;
    b->id = ++a->next_build;
    b->cfgs = cfgs;
    b->ncfgs = n;
    b->f = a->f;
    b->cache = fg_tokcache_new(a->cache_size, a->cache_ttl_ms);
    b->authn = fg_jwtauthn_new(label, cfgs, n, a->f, b->cache, 0);
    b->authn->label = fg_metrics_authn_label("kcp-workspace-authentication"); /* no cluster */
    fg_kcpauth_build_unref(w->good);
    w->good = b;
    w->failing = 0;
    fg_log(FG_LOG_INFO, "kcp: WorkspaceAuthenticationConfiguration %s|%s: %zu jwt issuer%s",
           w->cluster, w->name, n, n == 1 ? "" : "s");
    fg_buf_free(&where);
    free(label);
}

/* ---- objects ----------------------------------------------------------------- */

static void wac_free(struct wac *w)
{
    fg_kcpauth_build_unref(w->good);
    free(w->cluster);
    free(w->name);
    free(w->shard);
    free(w->spec);
    free(w);
}

static void wtype_free(struct wtype *t)
{
    free(t->key);
    free(t->cluster);
    free(t->name);
    free(t->shard);
    for (size_t i = 0; i < t->nrefs; i++)
        free(t->refs[i]);
    free(t->refs);
    free(t->last);
    free(t);
}

static struct wac **find_wac(struct fg_kcpauth *a, const char *cluster, const char *name)
{
    struct wac **pp = &a->wacs;
    while (*pp && (strcmp((*pp)->cluster, cluster) != 0 || strcmp((*pp)->name, name) != 0))
        pp = &(*pp)->next;
    return pp;
}

static struct wtype **find_type(struct fg_kcpauth *a, const char *key)
{
    struct wtype **pp = &a->types;
    while (*pp && strcmp((*pp)->key, key) != 0)
        pp = &(*pp)->next;
    return pp;
}

/* An object's cluster and name; 0 when it has both. */
static int ident(json_t *obj, const char **cluster, const char **name)
{
    *cluster = annotation(obj, "kcp.io/cluster");
    *name = jstr(json_object_get(obj, "metadata"), "name");
    return *cluster && **cluster && *name && **name ? 0 : -1;
}

static char *type_key(json_t *obj, const char *name)
{
    const char *path = annotation(obj, "kcp.io/path");
    struct fg_buf b = {0};
    if (path && *path)
        fg_buf_printf(&b, "%s:%s", path, name);
    else
        fg_buf_adds(&b, name);
    return fg_buf_take(&b);
}

static int put_wac(struct fg_kcpauth *a, const char *shard, json_t *obj)
{
    const char *cluster, *name;
    if (ident(obj, &cluster, &name) != 0)
        return 0;
    json_t *spec = json_object_get(obj, "spec");
    char *text = spec ? json_dumps(spec, JSON_SORT_KEYS | JSON_INDENT(2)) : NULL;
    if (text == NULL)
        text = fg_strdup("{}");
    struct wac **pp = find_wac(a, cluster, name);
    struct wac *w = *pp;
    if (w && strcmp(w->spec, text) == 0) {
        free(text); /* a resync or a status change: nothing to build */
        if (strcmp(w->shard, shard) != 0) {
            free(w->shard);
            w->shard = fg_strdup(shard);
        }
        return 0;
    }
    if (w == NULL) {
        w = fg_calloc(1, sizeof(*w));
        w->cluster = fg_strdup(cluster);
        w->name = fg_strdup(name);
        w->shard = fg_strdup(shard);
        *pp = w;
    } else if (strcmp(w->shard, shard) != 0) {
        free(w->shard);
        w->shard = fg_strdup(shard);
    }
    free(w->spec);
    w->spec = text;
    build(a, w);
    return 1;
}

/* t already says what obj says (a resync, a status or label change): nothing to publish. */
static int type_same(const struct wtype *t, const char *cluster, const char *shard, json_t *list)
{
    if (strcmp(t->cluster, cluster) != 0 || strcmp(t->shard, shard) != 0)
        return 0;
    size_t n = 0, i;
    json_t *it;
    json_array_foreach(list, i, it)
    {
        const char *ref = jstr(it, "name");
        if (ref && *ref && (n >= t->nrefs || strcmp(t->refs[n++], ref) != 0))
            return 0;
    }
    return n == t->nrefs;
}

static int put_type(struct fg_kcpauth *a, const char *shard, json_t *obj)
{
    const char *cluster, *name;
    if (ident(obj, &cluster, &name) != 0)
        return 0;
    char *key = type_key(obj, name);
    json_t *list = json_object_get(json_object_get(obj, "spec"), "authenticationConfigurations");
    struct wtype **pp = find_type(a, key);
    struct wtype *t = *pp;
    if (t && type_same(t, cluster, shard, list)) {
        free(key);
        return 0;
    }
    if (t == NULL) {
        t = fg_calloc(1, sizeof(*t));
        t->key = key;
        *pp = t;
    } else {
        free(key);
        for (size_t i = 0; i < t->nrefs; i++)
            free(t->refs[i]);
        free(t->refs);
        t->refs = NULL;
        t->nrefs = 0;
        free(t->cluster);
        free(t->name);
        free(t->shard);
    }
    t->cluster = fg_strdup(cluster);
    t->name = fg_strdup(name);
    t->shard = fg_strdup(shard);
    size_t i;
    json_t *it;
    if (json_is_array(list)) {
        t->refs = fg_calloc(json_array_size(list) + 1, sizeof(char *));
        json_array_foreach(list, i, it)
        {
            const char *ref = jstr(it, "name");
            if (ref && *ref)
                t->refs[t->nrefs++] = fg_strdup(ref);
        }
    }
    return 1;
}

int fg_kcpauth_put(struct fg_kcpauth *a, enum fg_kcpauth_kind kind, const char *shard, json_t *obj)
{
    return kind == FG_KCPAUTH_WACS ? put_wac(a, shard, obj) : put_type(a, shard, obj);
}

int fg_kcpauth_del(struct fg_kcpauth *a, enum fg_kcpauth_kind kind, const char *shard, json_t *obj)
{
    (void)shard;
    const char *cluster, *name;
    if (ident(obj, &cluster, &name) != 0)
        return 0;
    if (kind == FG_KCPAUTH_WACS) {
        struct wac **pp = find_wac(a, cluster, name), *w = *pp;
        if (w == NULL)
            return 0;
        *pp = w->next;
        fg_log(FG_LOG_INFO, "kcp: WorkspaceAuthenticationConfiguration %s|%s deleted", cluster,
               name);
        wac_free(w);
        return 1;
    }
    char *key = type_key(obj, name);
    struct wtype **pp = find_type(a, key), *t = *pp;
    free(key);
    if (t == NULL)
        return 0;
    *pp = t->next;
    wtype_free(t);
    return 1;
}

/* Drops shard's objects of kind that `keep` (an array of objects) does not name. */
static int drop_others(struct fg_kcpauth *a, enum fg_kcpauth_kind kind, const char *shard,
                       json_t *keep)
{
    int changed = 0;
    if (kind == FG_KCPAUTH_WACS) {
        struct wac **pp = &a->wacs;
        while (*pp) {
            struct wac *w = *pp;
            int kept = strcmp(w->shard, shard) != 0;
            size_t i;
            json_t *it;
            json_array_foreach(keep, i, it)
            {
                const char *c, *n;
                if (!kept && ident(it, &c, &n) == 0 && strcmp(c, w->cluster) == 0 &&
                    strcmp(n, w->name) == 0)
                    kept = 1;
            }
            if (kept) {
                pp = &w->next;
                continue;
            }
            *pp = w->next;
            wac_free(w);
            changed = 1;
        }
        return changed;
    }
    struct wtype **pp = &a->types;
    while (*pp) {
        struct wtype *t = *pp;
        int kept = strcmp(t->shard, shard) != 0;
        size_t i;
        json_t *it;
        json_array_foreach(keep, i, it)
        {
            const char *c, *n;
            if (!kept && ident(it, &c, &n) == 0) {
                char *key = type_key(it, n);
                kept = strcmp(key, t->key) == 0;
                free(key);
            }
        }
        if (kept) {
            pp = &t->next;
            continue;
        }
        *pp = t->next;
        wtype_free(t);
        changed = 1;
    }
    return changed;
}

int fg_kcpauth_replace(struct fg_kcpauth *a, enum fg_kcpauth_kind kind, const char *shard,
                       json_t *items)
{
    int changed = drop_others(a, kind, shard, items);
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it) changed |= fg_kcpauth_put(a, kind, shard, it);
    return changed;
}

int fg_kcpauth_drop_shard(struct fg_kcpauth *a, const char *shard)
{
    json_t *none = json_array();
    int changed = drop_others(a, FG_KCPAUTH_WACS, shard, none);
    changed |= drop_others(a, FG_KCPAUTH_TYPES, shard, none);
    json_decref(none);
    return changed;
}

/* ---- composition -------------------------------------------------------------- */

void fg_kcpauth_type(struct fg_kcpauth *a, const char *type, struct fg_live_type *lt,
                     struct fg_kcpauth_build ***holds, size_t *nholds, size_t *cap)
{
    memset(lt, 0, sizeof(*lt));
    struct wtype *t = *find_type(a, type);
    if (t == NULL)
        return;
    lt->known = 1;
    lt->authns = fg_calloc(t->nrefs ? t->nrefs : 1, sizeof(struct fg_authn *));
    uint64_t *ids = fg_calloc(t->nrefs ? t->nrefs : 1, sizeof(uint64_t));
    for (size_t i = 0; i < t->nrefs; i++) {
        /* kcp: the configurations must be in the type's own logical cluster */
        struct wac *w = *find_wac(a, t->cluster, t->refs[i]);
        if (w == NULL || w->good == NULL)
            continue;
        fg_grow(holds, cap, *nholds + 1, sizeof(**holds));
        (*holds)[(*nholds)++] = build_ref(w->good);
        ids[lt->nauthns] = w->good->id;
        lt->authns[lt->nauthns++] = w->good->authn;
    }
    if (t->ctx == 0 || t->nlast != lt->nauthns ||
        (lt->nauthns && memcmp(t->last, ids, lt->nauthns * sizeof(uint64_t)) != 0)) {
        /* another member list: requests must not reuse what the old list admitted */
        free(t->last);
        t->last = ids;
        t->nlast = lt->nauthns;
        t->ctx = 0x80000000u | (++a->next_ctx & 0x7fffffffu);
    } else {
        free(ids);
    }
    lt->ctx = t->ctx;
}

/* ---- life ---------------------------------------------------------------------- */

struct fg_kcpauth *fg_kcpauth_new(struct fg_fetcher *f, size_t cache_size, uint64_t cache_ttl_ms)
{
    struct fg_kcpauth *a = fg_calloc(1, sizeof(*a));
    a->f = f;
    a->cache_size = cache_size;
    a->cache_ttl_ms = cache_ttl_ms;
    return a;
}

void fg_kcpauth_free(struct fg_kcpauth *a)
{
    if (a == NULL)
        return;
    while (a->wacs) {
        struct wac *w = a->wacs;
        a->wacs = w->next;
        wac_free(w);
    }
    while (a->types) {
        struct wtype *t = a->types;
        a->types = t->next;
        wtype_free(t);
    }
    free(a);
}

void fg_kcpauth_counts(const struct fg_kcpauth *a, size_t *types, size_t *wacs, size_t *failing)
{
    *types = *wacs = *failing = 0;
    for (const struct wtype *t = a->types; t; t = t->next)
        (*types)++;
    for (const struct wac *w = a->wacs; w; w = w->next) {
        (*wacs)++;
        *failing += w->failing;
    }
}
