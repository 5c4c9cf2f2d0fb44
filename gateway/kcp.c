/*
 * kcp.c - the live workspace index (see kcp.h): reflectors (list, then watch) over the
 * fetcher, the logical clusters of each shard, and the generations workers read.
 */
#include "kcp.h"

#include "kcpauth.h"
#include "metrics.h"
#include "tls.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define LIST_PAGE        500
#define LIST_MAX_BYTES   (64u << 20) /* one page of a list */
#define EVENT_MAX_BYTES  (16u << 20) /* one watch event */
#define BACKOFF_FIRST_MS 250
#define BACKOFF_MAX_MS   30000
#define STABLE_WATCH_MS  10000 /* a watch that lived this long resets the backoff */
#define PUBLISH_MIN_MS   5
#define PUBLISH_MAX_MS   2000
#define LAG_BUCKETS      12 /* frontgate_kcp_index_lag_seconds; the last is +Inf */
static const double lag_bounds[LAG_BUCKETS - 1] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                   0.1,   0.25,   0.5,   1,    5};

/* ---- generations ---------------------------------------------------------- */

static struct fg_live *current;
static uint64_t current_serial; /* atomic */
static pthread_mutex_t current_lock = PTHREAD_MUTEX_INITIALIZER;
static int sources_waiting; /* atomic: running sources not yet synced */

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void live_free(void *arg)
{
    struct fg_live *l = arg;
    fg_index_free(l->ix);
    for (size_t i = 0; l->ltypes && i < l->ntypes; i++)
        free(l->ltypes[i].authns);
    free(l->ltypes);
    for (size_t i = 0; i < l->nholds; i++)
        fg_kcpauth_build_unref(l->holds[i]);
    free(l->holds);
    free_strv(l->shards, l->nshards);
    free_strv(l->types, l->ntypes);
    free(l);
}

struct fg_live *fg_live_ref(struct fg_live *l)
{
    __atomic_add_fetch(&l->refs, 1, __ATOMIC_RELAXED);
    return l;
}

void fg_live_unref(struct fg_live *l)
{
    if (l == NULL || __atomic_sub_fetch(&l->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    /* A big index takes milliseconds to free: not on a worker. */
    if (l->reaper)
        l->reaper->post(l->reaper, live_free, l);
    else
        live_free(l);
}

struct fg_live *fg_live_current(void)
{
    pthread_mutex_lock(&current_lock);
    struct fg_live *l = current ? fg_live_ref(current) : NULL;
    pthread_mutex_unlock(&current_lock);
    return l;
}

uint64_t fg_live_serial(void)
{
    return __atomic_load_n(&current_serial, __ATOMIC_ACQUIRE);
}

int fg_live_ready(void)
{
    return __atomic_load_n(&sources_waiting, __ATOMIC_RELAXED) == 0;
}

static void live_install(struct fg_live *l)
{
    pthread_mutex_lock(&current_lock);
    struct fg_live *old = current;
    current = l;
    __atomic_store_n(&current_serial, l ? l->serial : 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&current_lock);
    fg_live_unref(old);
}

/* ---- logical clusters: cluster name -> record, per shard ------------------- */

struct lc {
    char *cluster;
    char *path; /* kcp.io/path; NULL when absent */
    char *type; /* internal.tenancy.kcp.io/type; NULL when absent */
    uint8_t phase;
    struct lc *next;
};

struct lcmap {
    struct lc **b;
    size_t nb, n; /* nb: a power of two, or 0 */
};

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a: names are short and not chosen to collide
                                            with each other in a way that matters here */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void lc_free(struct lc *e)
{
    free(e->cluster);
    free(e->path);
    free(e->type);
    free(e);
}

static void lcmap_clear(struct lcmap *m)
{
    for (size_t i = 0; i < m->nb; i++) {
        struct lc *e = m->b[i];
        while (e) {
            struct lc *next = e->next;
            lc_free(e);
            e = next;
        }
    }
    free(m->b);
    memset(m, 0, sizeof(*m));
}

static struct lc **lcmap_slot(struct lcmap *m, const char *cluster)
{
    struct lc **pp = &m->b[str_hash(cluster) & (m->nb - 1)];
    while (*pp && strcmp((*pp)->cluster, cluster) != 0)
        pp = &(*pp)->next;
    return pp;
}

static void lcmap_grow(struct lcmap *m)
{
    size_t nb = m->nb ? m->nb * 2 : 64;
    struct lc **b = fg_calloc(nb, sizeof(*b));
    for (size_t i = 0; i < m->nb; i++) {
        struct lc *e = m->b[i];
        while (e) {
            struct lc *next = e->next;
            size_t j = str_hash(e->cluster) & (nb - 1);
            e->next = b[j];
            b[j] = e;
            e = next;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
}

/* Takes e; replaces a record of the same cluster. Returns 1 when something changed. */
static int lcmap_put(struct lcmap *m, struct lc *e)
{
    if (m->n + 1 > m->nb)
        lcmap_grow(m);
    struct lc **pp = lcmap_slot(m, e->cluster);
    struct lc *old = *pp;
    if (old) {
        int same = old->phase == e->phase && !old->path == !e->path &&
                   (!old->path || strcmp(old->path, e->path) == 0) && !old->type == !e->type &&
                   (!old->type || strcmp(old->type, e->type) == 0);
        e->next = old->next;
        *pp = e;
        lc_free(old);
        return !same;
    }
    e->next = NULL;
    *pp = e;
    m->n++;
    return 1;
}

static int lcmap_del(struct lcmap *m, const char *cluster)
{
    if (m->nb == 0)
        return 0;
    struct lc **pp = lcmap_slot(m, cluster);
    struct lc *e = *pp;
    if (e == NULL)
        return 0;
    *pp = e->next;
    lc_free(e);
    m->n--;
    return 1;
}

/* ---- the source ----------------------------------------------------------- */

enum rstate { R_IDLE, R_LISTING, R_WATCHING, R_WAITING };
/* What a reflector lists and watches. */
enum rkind { RK_SHARDS, RK_LCS, RK_TYPES, RK_WACS };

struct kshard;
struct fg_kcp;

struct reflector {
    struct fg_kcp *k;
    struct kshard *sh; /* the shard whose objects these are; NULL: the Shards */
    enum rkind kind;
    const char *resource; /* for the log: "shards", "logicalclusters", ... */
    char *base;           /* scheme://host[:port][/base path], no trailing '/' */
    const char *path;     /* the collection, from the base */
    enum rstate state;
    char rv[64];          /* the last resourceVersion seen; "" before the first list */
    char *cont;           /* the list's continue token between pages */
    struct lcmap pending; /* logical clusters: what a list has read so far */
    struct shardmap *pending_shards;
    json_t *pending_items; /* WorkspaceTypes, WACs: what a list has read so far */
    struct fg_buf line;    /* a watch event not yet complete */
    int synced;            /* a whole list was applied once */
    int dead;              /* stopped: a timer still holds it */
    int timer;             /* a retry timer is set */
    uint64_t backoff_ms, watch_start_ms;
    unsigned long relists, restarts;
    uint64_t last_seen_s; /* wall time of the last good list, event or bookmark */
    char last_error[256];
};

/* A Shard as kcp lists it. */
struct kshard {
    char *name;
    char *base_url;
    struct lcmap lcs;          /* its logical clusters, from its reflector */
    struct reflector *r;       /* watching its logical clusters */
    struct reflector *rt, *rw; /* its WorkspaceTypes and WACs (workspaceAuthentication) */
    int seen;                  /* reconcile mark */
    struct kshard *next;
};

struct shardmap {
    char **names, **urls;
    size_t n, cap;
};

struct fg_kcp {
    struct fg_fetcher *f;
    SSL_CTX *tls;     /* verifies kcp and presents the rootShard certificate; NULL for http */
    char *token_path; /* rootShard.tokenFile, resolved */
    char *token;
    struct stat token_st;
    uint64_t watch_timeout_ms;
    struct reflector *shards_r;
    struct kshard *shards;   /* sorted by name */
    struct fg_kcpauth *auth; /* workspaceAuthentication: NULL when off */
    fg_kcp_shards_fn shards_changed;
    void *arg;
    int waiting; /* counted in sources_waiting */
    /* publishing */
    int dirty, publish_timer;
    uint64_t serial, last_build_ms;
    uint64_t pending_since_us;             /* the oldest change not yet published */
    uint64_t lag[LAG_BUCKETS], lag_sum_us; /* change -> published, per bucket */
    size_t published_workspaces;
    int stopping;
};

static void start_list(struct reflector *r);
static void start_watch(struct reflector *r);
static void publish(struct fg_kcp *k);
static void schedule_publish(struct fg_kcp *k);
static void update_waiting(struct fg_kcp *k);

static void shardmap_free(struct shardmap *m)
{
    if (m == NULL)
        return;
    free_strv(m->names, m->n);
    free_strv(m->urls, m->n);
    free(m);
}

static void shardmap_add(struct shardmap *m, const char *name, const char *url)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->names[i], name) == 0) {
            free(m->urls[i]);
            m->urls[i] = fg_strdup(url);
            return;
        }
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 8;
        m->names = fg_realloc(m->names, m->cap * sizeof(char *));
        m->urls = fg_realloc(m->urls, m->cap * sizeof(char *));
    }
    m->names[m->n] = fg_strdup(name);
    m->urls[m->n++] = fg_strdup(url);
}

/* Our own credential for kcp; re-read when the file changed, the last good one kept. */
static const char *bearer(struct fg_kcp *k)
{
    if (k->token_path == NULL)
        return k->token; /* a kubeconfig's inline token, or none */
    struct stat st;
    if (stat(k->token_path, &st) != 0)
        return k->token;
    if (k->token && st.st_ino == k->token_st.st_ino && st.st_size == k->token_st.st_size &&
        st.st_mtim.tv_sec == k->token_st.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == k->token_st.st_mtim.tv_nsec)
        return k->token;
    size_t len;
    char *text = fg_read_file(k->token_path, &len);
    if (text == NULL) {
        fg_log(FG_LOG_WARN, "kcp: cannot read rootShard.tokenFile %s: %s", k->token_path,
               fg_file_reason(errno));
        return k->token;
    }
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
        text[--len] = '\0';
    if (len == 0) {
        fg_log(FG_LOG_WARN, "kcp: rootShard.tokenFile %s is empty; keeping the last token",
               k->token_path);
        free(text);
        return k->token;
    }
    if (k->token) {
        OPENSSL_cleanse(k->token, strlen(k->token));
        free(k->token);
    }
    k->token = fg_malloc(len + 8);
    snprintf(k->token, len + 8, "Bearer %s", text);
    OPENSSL_cleanse(text, len);
    free(text);
    k->token_st = st;
    return k->token;
}

static const char *where(const struct reflector *r)
{
    return r->sh ? r->sh->name : "root";
}

/* ---- reflector: timers and backoff ------------------------------------------ */

static void reflector_free(struct reflector *r)
{
    lcmap_clear(&r->pending);
    shardmap_free(r->pending_shards);
    json_decref(r->pending_items);
    fg_buf_free(&r->line);
    free(r->cont);
    free(r->base);
    free(r);
}

static void retry_fire(void *arg)
{
    struct reflector *r = arg;
    r->timer = 0;
    if (r->dead) {
        reflector_free(r);
        return;
    }
    if (r->rv[0])
        start_watch(r);
    else
        start_list(r);
}

/* Tries again after the backoff (from the last resourceVersion, or a new list when rv is ""). */
static void retry_later(struct reflector *r)
{
    uint64_t ms = r->backoff_ms ? r->backoff_ms : BACKOFF_FIRST_MS;
    r->backoff_ms = ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : ms * 2;
    unsigned char j;
    fg_random(&j, 1);
    ms = ms * 3 / 4 + ms * j / 512; /* 0.75 .. 1.25 of the backoff */
    r->state = R_WAITING;
    r->timer = 1;
    r->k->f->after(r->k->f, ms, retry_fire, r);
}

static void reflector_stop(struct reflector *r)
{
    if (r == NULL)
        return;
    if (r->k->f->cancel)
        r->k->f->cancel(r->k->f, r);
    r->dead = 1;
    if (!r->timer)
        reflector_free(r);
}

static struct reflector *reflector_new(struct fg_kcp *k, struct kshard *sh, const char *base,
                                       enum rkind kind)
{
    static const char *const resources[] = {"shards", "logicalclusters", "workspacetypes",
                                            "workspaceauthenticationconfigurations"};
    static const char *const paths[] = {
        "/clusters/root/apis/core.kcp.io/v1alpha1/shards",
        "/clusters/*/apis/core.kcp.io/v1alpha1/logicalclusters",
        "/clusters/*/apis/tenancy.kcp.io/v1alpha1/workspacetypes",
        "/clusters/*/apis/tenancy.kcp.io/v1alpha1/workspaceauthenticationconfigurations",
    };
    struct reflector *r = fg_calloc(1, sizeof(*r));
    r->k = k;
    r->sh = sh;
    r->kind = kind;
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
        n--;
    r->base = fg_strndup(base, n);
    r->resource = resources[kind];
    r->path = paths[kind];
    return r;
}

/* The shard's reflectors: its logical clusters, and with workspaceAuthentication its
 * WorkspaceTypes and WACs. */
static void shard_watch(struct fg_kcp *k, struct kshard *s)
{
    s->r = reflector_new(k, s, s->base_url, RK_LCS);
    start_list(s->r);
    if (k->auth == NULL)
        return;
    s->rt = reflector_new(k, s, s->base_url, RK_TYPES);
    start_list(s->rt);
    s->rw = reflector_new(k, s, s->base_url, RK_WACS);
    start_list(s->rw);
}

static void shard_unwatch(struct kshard *s)
{
    reflector_stop(s->r);
    reflector_stop(s->rt);
    reflector_stop(s->rw);
    s->r = s->rt = s->rw = NULL;
}

static void fail(struct reflector *r, int relist, const char *fmt, ...) FG_PRINTF(3, 4);
static void fail(struct reflector *r, int relist, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->last_error, sizeof(r->last_error), fmt, ap);
    va_end(ap);
    fg_log(FG_LOG_WARN, "kcp shard %s: %s: %s; %s", where(r), r->resource, r->last_error,
           relist || !r->rv[0] ? "listing again after a pause, the last data still serves"
                               : "watching again after a pause");
    if (relist)
        r->rv[0] = '\0';
    r->restarts++;
    retry_later(r);
}

/* ---- objects -------------------------------------------------------------- */

static const char *jstr(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static const char *annotation(json_t *obj, const char *key)
{
    return jstr(json_object_get(json_object_get(obj, "metadata"), "annotations"), key);
}

static void note_rv(struct reflector *r, json_t *obj)
{
    r->last_seen_s = (uint64_t)time(NULL);
    const char *rv = jstr(json_object_get(obj, "metadata"), "resourceVersion");
    if (rv && strlen(rv) < sizeof(r->rv))
        snprintf(r->rv, sizeof(r->rv), "%s", rv);
}

/* A LogicalCluster as a record, or NULL (not routable: a system: cluster, no name, bad names). */
static struct lc *lc_of(json_t *obj, const char **cluster_out)
{
    const char *cluster = annotation(obj, "kcp.io/cluster");
    *cluster_out = cluster;
    if (cluster == NULL || !fg_index_valid_name(cluster, strlen(cluster)))
        return NULL;
    const char *path = annotation(obj, "kcp.io/path");
    const char *type = annotation(obj, "internal.tenancy.kcp.io/type");
    const char *phase = jstr(json_object_get(obj, "status"), "phase");
    if (path && !fg_index_valid_name(path, strlen(path)))
        path = NULL;
    if (type && !fg_index_valid_name(type, strlen(type)))
        type = NULL;
    if (path == NULL && strcmp(cluster, "root") == 0)
        path = "root"; /* the root logical cluster carries no kcp.io/path: it is its own */
    /* Scheduling: not placed yet (kcp answers 403 for it too). Initializing and Ready route.
     * Being deleted (a deletionTimestamp, finalizers still pending): gone from now on. */
    if ((phase && strcmp(phase, "Scheduling") == 0) ||
        json_object_get(json_object_get(obj, "metadata"), "deletionTimestamp"))
        return NULL;
    struct lc *e = fg_calloc(1, sizeof(*e));
    e->cluster = fg_strdup(cluster);
    e->path = path && strcmp(path, cluster) != 0 ? fg_strdup(path) : NULL;
    e->type = type ? fg_strdup(type) : NULL;
    e->phase = phase && strcmp(phase, "Unavailable") == 0 ? FG_WS_UNAVAILABLE : FG_WS_READY;
    return e;
}

/* A cluster name kcp may hand out but nobody routes to (system:shard, system:admin, ...). */
static int system_cluster(const char *cluster)
{
    return cluster && strncmp(cluster, "system:", 7) == 0;
}

static void apply_lc(struct reflector *r, struct lcmap *m, const char *type, json_t *obj)
{
    const char *cluster;
    struct lc *e = strcmp(type, "DELETED") == 0 ? NULL : lc_of(obj, &cluster);
    if (e == NULL) {
        cluster = annotation(obj, "kcp.io/cluster");
        if (cluster && lcmap_del(m, cluster) && m == &r->sh->lcs)
            r->k->dirty = 1;
        return;
    }
    if (system_cluster(cluster)) {
        lc_free(e);
        return;
    }
    if (lcmap_put(m, e) && m == &r->sh->lcs)
        r->k->dirty = 1;
}

static void shard_of(json_t *obj, const char **name, const char **url)
{
    *name = jstr(json_object_get(obj, "metadata"), "name");
    *url = jstr(json_object_get(obj, "spec"), "baseURL");
    if (*name && !fg_index_valid_name(*name, strlen(*name)))
        *name = NULL;
}

/* ---- the Shards: reconcile ------------------------------------------------- */

static struct kshard *find_shard(struct fg_kcp *k, const char *name)
{
    for (struct kshard *s = k->shards; s; s = s->next)
        if (strcmp(s->name, name) == 0)
            return s;
    return NULL;
}

static void kshard_free(struct fg_kcp *k, struct kshard *s)
{
    shard_unwatch(s);
    if (k->auth && fg_kcpauth_drop_shard(k->auth, s->name))
        k->dirty = 1;
    lcmap_clear(&s->lcs);
    free(s->name);
    free(s->base_url);
    free(s);
}

static void insert_sorted(struct fg_kcp *k, struct kshard *s)
{
    struct kshard **pp = &k->shards;
    while (*pp && strcmp((*pp)->name, s->name) < 0)
        pp = &(*pp)->next;
    s->next = *pp;
    *pp = s;
}

/* Makes the watched shards what names/urls say; 1 when the set changed. */
static int reconcile(struct fg_kcp *k, const struct shardmap *m)
{
    int changed = 0;
    for (struct kshard *s = k->shards; s; s = s->next)
        s->seen = 0;
    for (size_t i = 0; i < m->n; i++) {
        struct kshard *s = find_shard(k, m->names[i]);
        if (s && strcmp(s->base_url, m->urls[i]) == 0) {
            s->seen = 1;
            continue;
        }
        if (s) {
            /* A new baseURL: its logical clusters are listed again there. */
            fg_log(FG_LOG_INFO, "kcp shard %s: baseURL is now %s", s->name, m->urls[i]);
            shard_unwatch(s);
            free(s->base_url);
            s->base_url = fg_strdup(m->urls[i]);
        } else {
            s = fg_calloc(1, sizeof(*s));
            s->name = fg_strdup(m->names[i]);
            s->base_url = fg_strdup(m->urls[i]);
            insert_sorted(k, s);
            fg_log(FG_LOG_INFO, "kcp shard %s: watching its logical clusters at %s", s->name,
                   s->base_url);
        }
        s->seen = 1;
        shard_watch(k, s);
        changed = 1;
    }
    struct kshard **pp = &k->shards;
    while (*pp) {
        struct kshard *s = *pp;
        if (s->seen) {
            pp = &s->next;
            continue;
        }
        fg_log(FG_LOG_INFO, "kcp shard %s: gone; its %zu workspaces leave the index", s->name,
               s->lcs.n);
        *pp = s->next;
        kshard_free(k, s);
        k->dirty = 1;
        changed = 1;
    }
    if (changed) {
        update_waiting(k);
        schedule_publish(k);
        k->shards_changed(k->arg);
    }
    return changed;
}

/* The Shards as they stand now, from the watched list. */
static struct shardmap *current_shards(struct fg_kcp *k)
{
    struct shardmap *m = fg_calloc(1, sizeof(*m));
    for (struct kshard *s = k->shards; s; s = s->next)
        shardmap_add(m, s->name, s->base_url);
    return m;
}

static void apply_shard_event(struct reflector *r, const char *type, json_t *obj)
{
    const char *name, *url;
    shard_of(obj, &name, &url);
    if (name == NULL)
        return;
    struct shardmap *m = current_shards(r->k);
    if (strcmp(type, "DELETED") == 0 || url == NULL) {
        for (size_t i = 0; i < m->n; i++)
            if (strcmp(m->names[i], name) == 0) {
                free(m->names[i]);
                free(m->urls[i]);
                m->names[i] = m->names[m->n - 1];
                m->urls[i] = m->urls[m->n - 1];
                m->n--;
                break;
            }
    } else {
        shardmap_add(m, name, url);
    }
    reconcile(r->k, m);
    shardmap_free(m);
}

/* ---- list ------------------------------------------------------------------- */

/* Forgets what an unfinished list had read. */
static void pending_clear(struct reflector *r)
{
    free(r->cont);
    r->cont = NULL;
    lcmap_clear(&r->pending);
    shardmap_free(r->pending_shards);
    r->pending_shards = NULL;
    json_decref(r->pending_items);
    r->pending_items = NULL;
}

static enum fg_kcpauth_kind auth_kind(const struct reflector *r)
{
    return r->kind == RK_WACS ? FG_KCPAUTH_WACS : FG_KCPAUTH_TYPES;
}

static void list_done(void *arg, const struct fg_fetch_resp *resp)
{
    struct reflector *r = arg;
    if (resp->status == 410 && r->cont) {
        /* the continue token expired: the list starts over */
        pending_clear(r);
        start_list(r);
        return;
    }
    if (resp->status != 200) {
        pending_clear(r);
        if (resp->status == 404 && (r->kind == RK_TYPES || r->kind == RK_WACS))
            fail(r, 1,
                 "list answered HTTP 404: this kcp does not serve tenancy.kcp.io/v1alpha1 %s "
                 "(index.fromKcp.workspaceAuthentication needs kcp v0.30 or later)",
                 r->resource);
        else if (resp->status)
            fail(r, 1, "list answered HTTP %d", resp->status);
        else
            fail(r, 1, "list failed: %s", resp->error ? resp->error : "no answer");
        return;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(resp->body, resp->body_len, 0, &jerr);
    json_t *items = json_object_get(doc, "items");
    json_t *meta = json_object_get(doc, "metadata");
    const char *rv = jstr(meta, "resourceVersion");
    if (!json_is_array(items) || rv == NULL || strlen(rv) >= sizeof(r->rv)) {
        json_decref(doc);
        pending_clear(r);
        fail(r, 1, "list answer is not a Kubernetes list");
        return;
    }
    if (r->kind == RK_SHARDS && r->pending_shards == NULL)
        r->pending_shards = fg_calloc(1, sizeof(struct shardmap));
    if ((r->kind == RK_TYPES || r->kind == RK_WACS) && r->pending_items == NULL)
        r->pending_items = json_array();
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        if (r->kind == RK_LCS) {
            apply_lc(r, &r->pending, "ADDED", it);
        } else if (r->kind == RK_SHARDS) {
            const char *name, *url;
            shard_of(it, &name, &url);
            if (name && url)
                shardmap_add(r->pending_shards, name, url);
        } else {
            json_array_append(r->pending_items, it);
        }
    }
    const char *cont = jstr(meta, "continue");
    free(r->cont);
    r->cont = cont && *cont ? fg_strdup(cont) : NULL;
    if (r->cont) {
        json_decref(doc);
        start_list(r); /* the next page */
        return;
    }
    snprintf(r->rv, sizeof(r->rv), "%s", rv);
    json_decref(doc);
    r->relists++;
    r->last_seen_s = (uint64_t)time(NULL);
    r->backoff_ms = 0;
    r->last_error[0] = '\0';
    if (r->kind == RK_TYPES || r->kind == RK_WACS) {
        /* the shard's objects of this kind become what the list said, in one step */
        if (fg_kcpauth_replace(r->k->auth, auth_kind(r), where(r), r->pending_items))
            r->k->dirty = 1;
        fg_log(FG_LOG_INFO, "kcp shard %s: %zu %s listed (resourceVersion %s)", where(r),
               json_array_size(r->pending_items), r->resource, r->rv);
        json_decref(r->pending_items);
        r->pending_items = NULL;
        r->synced = 1;
        update_waiting(r->k);
        schedule_publish(r->k);
        start_watch(r);
    } else if (r->kind == RK_LCS) {
        /* the shard's logical clusters become what the list said, in one step */
        lcmap_clear(&r->sh->lcs);
        r->sh->lcs = r->pending;
        memset(&r->pending, 0, sizeof(r->pending));
        r->k->dirty = 1;
        fg_log(FG_LOG_INFO, "kcp shard %s: %zu logical clusters listed (resourceVersion %s)",
               where(r), r->sh->lcs.n, r->rv);
        r->synced = 1;
        update_waiting(r->k);
        schedule_publish(r->k);
        start_watch(r);
    } else {
        struct shardmap *m = r->pending_shards;
        r->pending_shards = NULL;
        r->synced = 1;
        start_watch(r); /* before reconcile, which may start lists of its own */
        fg_log(FG_LOG_INFO, "kcp: %zu shards listed (resourceVersion %s)", m->n, r->rv);
        if (!reconcile(r->k, m))
            update_waiting(r->k);
        shardmap_free(m);
    }
}

static void start_list(struct reflector *r)
{
    struct fg_buf url = {0};
    fg_buf_printf(&url, "%s%s?limit=%d", r->base, r->path, LIST_PAGE);
    if (r->cont) {
        fg_buf_adds(&url, "&continue=");
        for (const char *p = r->cont; *p; p++) {
            unsigned char c = (unsigned char)*p;
            if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '_' || c == '.' || c == '~')
                fg_buf_addc(&url, (char)c);
            else
                fg_buf_printf(&url, "%%%02X", c);
        }
    }
    struct fg_fetch_req req = {0};
    req.method = "GET";
    req.url = url.data;
    req.accept = "application/json";
    req.authorization = bearer(r->k);
    req.tls = r->k->tls;
    req.timeout_ms = 60000;
    req.max_response = LIST_MAX_BYTES;
    r->state = R_LISTING;
    r->k->f->fetch(r->k->f, &req, list_done, r);
    fg_buf_free(&url);
}

/* ---- watch ------------------------------------------------------------------ */

/* One event line; -1 when the stream must end (the reason is set by fail). */
static int watch_event(struct reflector *r, const char *p, size_t n)
{
    json_error_t jerr;
    json_t *ev = json_loadb(p, n, 0, &jerr);
    const char *type = jstr(ev, "type");
    json_t *obj = json_object_get(ev, "object");
    if (type == NULL || !json_is_object(obj)) {
        json_decref(ev);
        r->k->f->cancel(r->k->f, r);
        fail(r, 1, "watch sent something that is not a watch event");
        return -1;
    }
    if (strcmp(type, "ERROR") == 0) {
        json_t *code = json_object_get(obj, "code");
        int gone = json_is_integer(code) && json_integer_value(code) == 410;
        json_decref(ev);
        r->k->f->cancel(r->k->f, r);
        if (gone) {
            /* resourceVersion too old: list again, now (kube's reflector does the same) */
            fg_log(FG_LOG_INFO, "kcp shard %s: %s: resourceVersion %s expired; listing again",
                   where(r), r->resource, r->rv);
            r->rv[0] = '\0';
            r->restarts++;
            start_list(r);
        } else {
            fail(r, 0, "watch sent an error event");
        }
        return -1;
    }
    if (strcmp(type, "BOOKMARK") != 0) {
        if (strcmp(type, "ADDED") != 0 && strcmp(type, "MODIFIED") != 0 &&
            strcmp(type, "DELETED") != 0) {
            json_decref(ev);
            r->k->f->cancel(r->k->f, r);
            fail(r, 1, "watch sent an event of an unknown type");
            return -1;
        }
        if (r->kind == RK_LCS) {
            apply_lc(r, &r->sh->lcs, type, obj);
            schedule_publish(r->k);
        } else if (r->kind == RK_SHARDS) {
            apply_shard_event(r, type, obj);
        } else {
            int del = strcmp(type, "DELETED") == 0;
            if (del ? fg_kcpauth_del(r->k->auth, auth_kind(r), where(r), obj)
                    : fg_kcpauth_put(r->k->auth, auth_kind(r), where(r), obj))
                r->k->dirty = 1;
            schedule_publish(r->k);
        }
    }
    note_rv(r, obj);
    json_decref(ev);
    return 0;
}

static void watch_data(void *arg, int status, const char *p, size_t n)
{
    (void)status;
    struct reflector *r = arg;
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        if (r->line.len + take > EVENT_MAX_BYTES) {
            fg_buf_reset(&r->line);
            r->k->f->cancel(r->k->f, r);
            fail(r, 1, "a watch event is larger than %u MiB", EVENT_MAX_BYTES >> 20);
            return;
        }
        if (nl == NULL) {
            fg_buf_add(&r->line, p, n);
            return;
        }
        int rc;
        if (r->line.len) {
            fg_buf_add(&r->line, p, take);
            rc = watch_event(r, r->line.data, r->line.len);
            fg_buf_reset(&r->line);
        } else {
            rc = take ? watch_event(r, p, take) : 0;
        }
        if (rc != 0)
            return;
        p += take + 1;
        n -= take + 1;
    }
}

static void watch_done(void *arg, const struct fg_fetch_resp *resp)
{
    struct reflector *r = arg;
    fg_buf_reset(&r->line);
    uint64_t lived = r->k->f->now_ms(r->k->f) - r->watch_start_ms;
    if (resp->status == 410) {
        fg_log(FG_LOG_INFO, "kcp shard %s: %s: resourceVersion %s expired; listing again", where(r),
               r->resource, r->rv);
        r->rv[0] = '\0';
        r->restarts++;
        start_list(r);
        return;
    }
    if (resp->status / 100 == 2) {
        /* the server ended the watch (its timeout, a restart): resume where it stopped */
        if (lived >= STABLE_WATCH_MS)
            r->backoff_ms = 0;
        if (lived >= 1000) {
            start_watch(r);
            return;
        }
        fail(r, 0, "watch ended after %llu ms", (unsigned long long)lived);
        return;
    }
    if (resp->status)
        fail(r, resp->status >= 400 && resp->status < 500, "watch answered HTTP %d", resp->status);
    else
        fail(r, 0, "watch failed: %s", resp->error ? resp->error : "connection lost");
}

static void start_watch(struct reflector *r)
{
    struct fg_buf url = {0};
    /* client-go's spread: each watch asks for a timeout between 1 and 2 times the base */
    unsigned char j;
    fg_random(&j, 1);
    uint64_t secs = r->k->watch_timeout_ms / 1000;
    secs = secs + secs * j / 256;
    if (secs == 0)
        secs = 1;
    fg_buf_printf(&url,
                  "%s%s?watch=true&allowWatchBookmarks=true&resourceVersion=%s&timeoutSeconds=%llu",
                  r->base, r->path, r->rv, (unsigned long long)secs);
    struct fg_fetch_req req = {0};
    req.method = "GET";
    req.url = url.data;
    req.accept = "application/json";
    req.authorization = bearer(r->k);
    req.tls = r->k->tls;
    req.timeout_ms = secs * 1000 + 30000; /* the server's own end, and some slack */
    req.max_response = 64u << 10;         /* an error answer */
    req.on_data = watch_data;
    r->state = R_WATCHING;
    r->watch_start_ms = r->k->f->now_ms(r->k->f);
    r->k->f->fetch(r->k->f, &req, watch_done, r);
    fg_buf_free(&url);
}

/* ---- publishing ------------------------------------------------------------- */

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint32_t intern(char ***v, size_t *n, size_t *cap, const char *s)
{
    for (size_t i = *n; i-- > 0;)
        if (strcmp((*v)[i], s) == 0)
            return (uint32_t)i;
    fg_grow(v, cap, *n + 1, sizeof(char *));
    (*v)[*n] = fg_strdup(s);
    return (uint32_t)(*n)++;
}

static void publish(struct fg_kcp *k)
{
    uint64_t t0 = mono_us();
    struct fg_live *l = fg_calloc(1, sizeof(*l));
    l->refs = 1;
    l->serial = ++k->serial;
    l->ix = fg_index_new();
    l->reaper = k->f;
    size_t tcap = 0, dups = 0;
    for (struct kshard *s = k->shards; s; s = s->next) {
        uint32_t si = (uint32_t)l->nshards;
        l->shards = fg_realloc(l->shards, (l->nshards + 1) * sizeof(char *));
        l->shards[l->nshards++] = fg_strdup(s->name);
        for (size_t b = 0; b < s->lcs.nb; b++)
            for (struct lc *e = s->lcs.b[b]; e; e = e->next) {
                uint32_t t =
                    e->type ? intern(&l->types, &l->ntypes, &tcap, e->type) : FG_WS_NO_TYPE;
                if (fg_index_add(l->ix, e->cluster, strlen(e->cluster), e->path,
                                 e->path ? strlen(e->path) : 0, NULL, 0, si, t,
                                 e->phase) != FG_INDEX_ADDED)
                    dups++;
            }
    }
    if (k->auth) {
        size_t hcap = 0;
        l->ltypes = fg_calloc(l->ntypes ? l->ntypes : 1, sizeof(*l->ltypes));
        for (size_t i = 0; i < l->ntypes; i++)
            fg_kcpauth_type(k->auth, l->types[i], &l->ltypes[i], &l->holds, &l->nholds, &hcap);
    }
    uint64_t now_us = mono_us(), took = (now_us - t0) / 1000;
    k->last_build_ms = took;
    if (k->pending_since_us) {
        double s = (double)(now_us - k->pending_since_us) / 1e6;
        size_t i = 0;
        while (i < LAG_BUCKETS - 1 && s > lag_bounds[i])
            i++;
        k->lag[i]++;
        k->lag_sum_us += now_us - k->pending_since_us;
        k->pending_since_us = 0;
    }
    k->published_workspaces = fg_index_count(l->ix);
    if (dups)
        fg_log(FG_LOG_WARN,
               "kcp: %zu logical clusters share a name or path with another; the first shard "
               "listed keeps it",
               dups);
    fg_log(took > 100 ? FG_LOG_INFO : FG_LOG_DEBUG,
           "kcp: index generation %llu: %zu workspaces on %zu shards, built in %llu ms",
           (unsigned long long)l->serial, fg_index_count(l->ix), l->nshards,
           (unsigned long long)took);
    live_install(l);
}

static void publish_fire(void *arg)
{
    struct fg_kcp *k = arg;
    k->publish_timer = 0;
    if (k->stopping) {
        free(k);
        return;
    }
    if (k->dirty) {
        k->dirty = 0;
        publish(k);
    }
}

/*
 * A change is published after a pause of a few times what the last build took (at least
 * PUBLISH_MIN_MS): changes arriving meanwhile share one build, so a busy kcp costs the
 * control thread a bounded share of a core however fast it changes.
 */
static void schedule_publish(struct fg_kcp *k)
{
    if (k->dirty && k->pending_since_us == 0)
        k->pending_since_us = mono_us();
    if (!k->dirty || k->publish_timer)
        return;
    uint64_t ms = k->last_build_ms * 4;
    if (ms < PUBLISH_MIN_MS)
        ms = PUBLISH_MIN_MS;
    if (ms > PUBLISH_MAX_MS)
        ms = PUBLISH_MAX_MS;
    k->publish_timer = 1;
    k->f->after(k->f, ms, publish_fire, k);
}

/* ---- readiness ---------------------------------------------------------------- */

static int synced(const struct fg_kcp *k)
{
    if (!k->shards_r->synced)
        return 0;
    for (struct kshard *s = k->shards; s; s = s->next)
        if (!s->r->synced || (s->rt && !s->rt->synced) || (s->rw && !s->rw->synced))
            return 0;
    return 1;
}

static void update_waiting(struct fg_kcp *k)
{
    int waiting = !synced(k);
    if (waiting == k->waiting)
        return;
    k->waiting = waiting;
    if (!waiting && k->dirty) {
        /* ready means routable: what the lists said is published before /readyz says 200 */
        k->dirty = 0;
        publish(k);
    }
    __atomic_add_fetch(&sources_waiting, waiting ? 1 : -1, __ATOMIC_RELAXED);
    if (!waiting)
        fg_log(FG_LOG_INFO, "kcp: every shard has synced its logical clusters%s",
               k->auth ? ", WorkspaceTypes and WorkspaceAuthenticationConfigurations" : "");
}

char *fg_kcp_waits_for(struct fg_kcp *k)
{
    if (k == NULL || synced(k))
        return NULL;
    struct fg_buf b = {0};
    if (!k->shards_r->synced) {
        fg_buf_adds(&b, "kcp: the Shards at the root shard have not been listed");
        if (k->shards_r->last_error[0])
            fg_buf_printf(&b, " (%s)", k->shards_r->last_error);
        return fg_buf_take(&b);
    }
    for (struct kshard *s = k->shards; s; s = s->next) {
        struct reflector *rs[] = {s->r, s->rt, s->rw};
        for (size_t i = 0; i < 3; i++) {
            if (rs[i] == NULL || rs[i]->synced)
                continue;
            fg_buf_printf(&b, "%skcp shard %s has not listed its %s", b.len ? "; " : "", s->name,
                          i == 0 ? "logical clusters" : rs[i]->resource);
            if (rs[i]->last_error[0])
                fg_buf_printf(&b, " (%s)", rs[i]->last_error);
        }
    }
    return fg_buf_take(&b);
}

/* ---- start, stop, shards for the config ---------------------------------------- */

struct fg_kcp *fg_kcp_start(const struct fg_config *cfg, struct fg_fetcher *f,
                            fg_kcp_shards_fn shards_changed, void *arg, struct fg_errs *errs)
{
    const struct fg_kcp_cfg *kc = cfg->kcp;
    struct fg_kcp *k = fg_calloc(1, sizeof(*k));
    k->f = f;
    k->shards_changed = shards_changed;
    k->arg = arg;
    k->watch_timeout_ms = kc->watch_timeout_ms;
    if (kc->root.https) {
        k->tls = fg_tls_client_ctx(cfg, &kc->root, errs);
        if (k->tls == NULL) {
            free(k);
            return NULL;
        }
    }
    if (kc->token) {
        size_t n = strlen(kc->token) + 8;
        k->token = fg_malloc(n);
        snprintf(k->token, n, "Bearer %s", kc->token);
    } else if (kc->token_file) {
        k->token_path = fg_config_path(cfg, kc->token_file);
        if (bearer(k) == NULL) {
            fg_cfg_file_err(errs, &kc->token_mark, k->token_path,
                            "index.fromKcp.rootShard.tokenFile", "cannot be read or is empty");
            SSL_CTX_free(k->tls);
            free(k->token_path);
            free(k);
            return NULL;
        }
    }
    if (kc->workspace_auth)
        k->auth = fg_kcpauth_new(f, cfg->token_cache_size, cfg->token_cache_ttl_ms);
    k->waiting = 1;
    __atomic_add_fetch(&sources_waiting, 1, __ATOMIC_RELAXED);
    k->shards_r = reflector_new(k, NULL, kc->root.url, RK_SHARDS);
    fg_log(FG_LOG_INFO, "kcp: listing and watching Shards at %s", k->shards_r->base);
    start_list(k->shards_r);
    return k;
}

void fg_kcp_stop(struct fg_kcp *k)
{
    if (k == NULL)
        return;
    reflector_stop(k->shards_r);
    while (k->shards) {
        struct kshard *s = k->shards;
        k->shards = s->next;
        kshard_free(k, s);
    }
    if (k->waiting)
        __atomic_sub_fetch(&sources_waiting, 1, __ATOMIC_RELAXED);
    fg_kcpauth_free(k->auth);
    k->auth = NULL;
    SSL_CTX_free(k->tls);
    if (k->token) {
        OPENSSL_cleanse(k->token, strlen(k->token));
        free(k->token);
    }
    free(k->token_path);
    k->stopping = 1;
    if (!k->publish_timer)
        free(k);
}

SSL_CTX *fg_kcp_prepare_tls(struct fg_kcp *k, const struct fg_config *cfg, struct fg_errs *errs,
                            int *failed)
{
    *failed = 0;
    if (k == NULL || cfg->kcp == NULL || !cfg->kcp->root.https)
        return NULL;
    SSL_CTX *ctx = fg_tls_client_ctx(cfg, &cfg->kcp->root, errs);
    *failed = ctx == NULL;
    return ctx;
}

void fg_kcp_commit_tls(struct fg_kcp *k, const struct fg_config *cfg, SSL_CTX *ctx)
{
    if (k == NULL)
        return;
    if (ctx) {
        /* fetches under way keep the old context (each SSL holds a reference to it) */
        SSL_CTX_free(k->tls);
        k->tls = ctx;
    }
    const char *tok = cfg->kcp ? cfg->kcp->token : NULL;
    if (tok && k->token_path == NULL) {
        if (k->token) {
            OPENSSL_cleanse(k->token, strlen(k->token));
            free(k->token);
        }
        size_t n = strlen(tok) + 8;
        k->token = fg_malloc(n);
        snprintf(k->token, n, "Bearer %s", tok);
    }
}

/* ---- metrics ---------------------------------------------------------------------- */

static void reflector_metrics(const struct reflector *r, struct fg_buf *b, const char *name,
                              int what)
{
    if (r == NULL)
        return;
    fg_buf_printf(b, "%s{shard=", name);
    fg_metrics_label(b, where(r));
    fg_buf_printf(b, ",resource=\"%s\"} ", r->resource);
    switch (what) {
    case 0:
        fg_buf_printf(b, "%d\n", r->synced);
        break;
    case 1:
        fg_buf_printf(b, "%lu\n", r->relists);
        break;
    case 2:
        fg_buf_printf(b, "%lu\n", r->restarts);
        break;
    default:
        fg_buf_printf(b, "%llu\n", (unsigned long long)r->last_seen_s);
        break;
    }
}

void fg_kcp_metrics(struct fg_kcp *k, struct fg_buf *b)
{
    if (k == NULL)
        return;
    static const char *const names[] = {"frontgate_kcp_synced", "frontgate_kcp_lists_total",
                                        "frontgate_kcp_watch_restarts_total",
                                        "frontgate_kcp_last_seen_timestamp_seconds"};
    static const char *const types[] = {"gauge", "counter", "counter", "gauge"};
    static const char *const helps[] = {
        "1 once the shard's list of the resource was applied.",
        "Complete lists of the resource at the shard (the first, and relists).",
        "Lists and watches that failed or were cut, retried after a backoff.",
        "When the shard last sent a list, an event or a bookmark of the resource (Unix time)."};
    for (int w = 0; w < 4; w++) {
        fg_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", names[w], helps[w], names[w], types[w]);
        reflector_metrics(k->shards_r, b, names[w], w);
        for (const struct kshard *s = k->shards; s; s = s->next) {
            reflector_metrics(s->r, b, names[w], w);
            reflector_metrics(s->rt, b, names[w], w);
            reflector_metrics(s->rw, b, names[w], w);
        }
    }
    fg_buf_adds(b, "# HELP frontgate_kcp_logical_clusters Routable logical clusters per shard.\n"
                   "# TYPE frontgate_kcp_logical_clusters gauge\n");
    for (const struct kshard *s = k->shards; s; s = s->next) {
        fg_buf_adds(b, "frontgate_kcp_logical_clusters{shard=");
        fg_metrics_label(b, s->name);
        fg_buf_printf(b, "} %zu\n", s->lcs.n);
    }
    fg_buf_printf(b,
                  "# HELP frontgate_kcp_index_workspaces Workspaces in the published index.\n"
                  "# TYPE frontgate_kcp_index_workspaces gauge\n"
                  "frontgate_kcp_index_workspaces %zu\n"
                  "# HELP frontgate_kcp_index_generation The published index generation.\n"
                  "# TYPE frontgate_kcp_index_generation gauge\n"
                  "frontgate_kcp_index_generation %llu\n"
                  "# HELP frontgate_kcp_index_build_seconds How long the last index build took.\n"
                  "# TYPE frontgate_kcp_index_build_seconds gauge\n"
                  "frontgate_kcp_index_build_seconds %.3f\n",
                  k->published_workspaces, (unsigned long long)k->serial,
                  (double)k->last_build_ms / 1000);
    fg_buf_adds(b,
                "# HELP frontgate_kcp_index_lag_seconds From a change kcp sent to the index "
                "generation that serves it.\n# TYPE frontgate_kcp_index_lag_seconds histogram\n");
    uint64_t acc = 0;
    for (int i = 0; i < LAG_BUCKETS; i++) {
        acc += k->lag[i];
        if (i < LAG_BUCKETS - 1)
            fg_buf_printf(b, "frontgate_kcp_index_lag_seconds_bucket{le=\"%g\"} %llu\n",
                          lag_bounds[i], (unsigned long long)acc);
        else
            fg_buf_printf(b, "frontgate_kcp_index_lag_seconds_bucket{le=\"+Inf\"} %llu\n",
                          (unsigned long long)acc);
    }
    fg_buf_printf(b,
                  "frontgate_kcp_index_lag_seconds_sum %.6f\n"
                  "frontgate_kcp_index_lag_seconds_count %llu\n",
                  (double)k->lag_sum_us / 1e6, (unsigned long long)acc);
    if (k->auth) {
        size_t nt, nw, nf;
        fg_kcpauth_counts(k->auth, &nt, &nw, &nf);
        fg_buf_printf(b,
                      "# HELP frontgate_kcp_workspace_types WorkspaceTypes kcp lists.\n"
                      "# TYPE frontgate_kcp_workspace_types gauge\n"
                      "frontgate_kcp_workspace_types %zu\n"
                      "# HELP frontgate_kcp_workspace_authentication_configurations "
                      "WorkspaceAuthenticationConfigurations kcp lists, by whether their current "
                      "spec builds.\n"
                      "# TYPE frontgate_kcp_workspace_authentication_configurations gauge\n"
                      "frontgate_kcp_workspace_authentication_configurations{state=\"ok\"} %zu\n"
                      "frontgate_kcp_workspace_authentication_configurations{state=\"failing\"} "
                      "%zu\n",
                      nt, nw - nf, nf);
    }
}

void fg_kcp_add_shards(struct fg_kcp *k, struct fg_config *cfg)
{
    if (k == NULL || cfg->kcp == NULL)
        return;
    for (struct kshard *s = k->shards; s; s = s->next) {
        const char *why = NULL;
        if (fg_config_add_shard(cfg, &cfg->kcp->shards, s->name, s->base_url, &why) != 0)
            fg_log(FG_LOG_ERROR,
                   "kcp shard %s: baseURL %s %s; its workspaces answer 403 until that changes",
                   s->name, s->base_url, why);
    }
}
