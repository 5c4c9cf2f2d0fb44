#define _GNU_SOURCE /* strcasestr */
#include "oidc.h"

#include <jansson.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_FIRST_MS  500
#define BACKOFF_MAX_MS    10000
#define REFRESH_DEFAULT_S 300
#define REFRESH_MIN_S     60
#define REFRESH_MAX_S     3600
#define FETCH_TIMEOUT_MS  5000
#define MAX_DOC_BYTES     (1u << 20)

struct fg_oidc {
    struct fg_oidc *next;     /* registry: providers in use */
    struct fg_oidc *all_next; /* every provider not yet freed */
    int users;                /* registry lock */
    char *key;                /* registry key: issuer, discovery URL, CA */
    char *issuer, *discovery_url, *name;
    SSL_CTX *tls;
    struct fg_fetcher *f;

    /* fetcher thread only */
    char *jwks_uri;
    int stopped;
    int failures;
    uint64_t backoff_ms;
    unsigned timer_gen;

    int busy;              /* atomic: pending fetcher callbacks that still use the provider */
    int ready;             /* atomic */
    unsigned long fetches; /* atomic */

    pthread_mutex_t lock; /* guards what workers touch */
    struct fg_keyset *keys;
    struct fg_authn_waiter *waiters;
    int fetching;
    uint64_t last_forced_ms;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fg_oidc *registry, *all;

/* At most FG_OIDC_FORCED_PER_MINUTE forced fetches a minute, all issuers together. */
static pthread_mutex_t budget_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t budget_window_ms;
static unsigned budget_used;

static int budget_take(uint64_t now_ms)
{
    int ok;
    pthread_mutex_lock(&budget_lock);
    if (now_ms - budget_window_ms >= 60000 || budget_window_ms == 0) {
        budget_window_ms = now_ms ? now_ms : 1;
        budget_used = 0;
    }
    ok = budget_used < FG_OIDC_FORCED_PER_MINUTE;
    if (ok)
        budget_used++;
    pthread_mutex_unlock(&budget_lock);
    return ok;
}

static void begin_fetch(struct fg_oidc *o);

/* ---- lifetime ------------------------------------------------------------- */

static void provider_free(struct fg_oidc *o)
{
    pthread_mutex_lock(&registry_lock);
    struct fg_oidc **pp = &all;
    while (*pp != o)
        pp = &(*pp)->all_next;
    *pp = o->all_next;
    pthread_mutex_unlock(&registry_lock);
    fg_keyset_unref(o->keys);
    SSL_CTX_free(o->tls);
    pthread_mutex_destroy(&o->lock);
    free(o->key);
    free(o->issuer);
    free(o->discovery_url);
    free(o->name);
    free(o->jwks_uri);
    free(o);
}

/* Every fetcher callback ends here: a released provider goes once nothing uses it. */
static int done_with(struct fg_oidc *o)
{
    int left = __atomic_sub_fetch(&o->busy, 1, __ATOMIC_ACQ_REL);
    if (o->stopped && left == 0) {
        provider_free(o);
        return 1;
    }
    return o->stopped;
}

static void stop_task(void *arg)
{
    struct fg_oidc *o = arg;
    o->stopped = 1;
    done_with(o);
}

static SSL_CTX *make_tls(const char *ca_pem)
{
    if (ca_pem == NULL)
        return NULL; /* the fetcher's default: system roots */
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    BIO *bio = BIO_new_mem_buf(ca_pem, -1);
    STACK_OF(X509_INFO) *infos = PEM_X509_INFO_read_bio(bio, NULL, NULL, NULL);
    for (int i = 0; infos && i < sk_X509_INFO_num(infos); i++) {
        X509_INFO *info = sk_X509_INFO_value(infos, i);
        if (info->x509)
            X509_STORE_add_cert(store, info->x509);
    }
    sk_X509_INFO_pop_free(infos, X509_INFO_free);
    BIO_free(bio);
    return ctx;
}

struct fg_oidc *fg_oidc_acquire(struct fg_fetcher *f, const struct fg_jwt_cfg *cfg,
                                const char *name)
{
    struct fg_buf key = {0};
    fg_buf_printf(&key, "%s\n%s\n%s", cfg->issuer_url, cfg->discovery_url ? cfg->discovery_url : "",
                  cfg->ca_pem ? cfg->ca_pem : "");
    pthread_mutex_lock(&registry_lock);
    struct fg_oidc *o;
    for (o = registry; o; o = o->next)
        if (strcmp(o->key, key.data) == 0 && o->f == f)
            break;
    if (o) {
        o->users++;
        pthread_mutex_unlock(&registry_lock);
        fg_buf_free(&key);
        return o;
    }
    o = fg_calloc(1, sizeof(*o));
    o->key = fg_buf_take(&key);
    o->issuer = fg_strdup(cfg->issuer_url);
    o->discovery_url = cfg->discovery_url ? fg_strdup(cfg->discovery_url) : NULL;
    o->name = fg_strdup(name);
    o->tls = make_tls(cfg->ca_pem);
    o->f = f;
    o->users = 1;
    o->backoff_ms = BACKOFF_FIRST_MS;
    pthread_mutex_init(&o->lock, NULL);
    o->next = registry;
    registry = o;
    o->all_next = all;
    all = o;
    if (f) {
        o->busy = 1; /* the provider's own life on the fetcher thread, ended by stop_task */
        o->fetching = 1;
        __atomic_add_fetch(&o->busy, 1, __ATOMIC_RELAXED);
        f->post(f, (fg_task_fn)begin_fetch, o);
    }
    pthread_mutex_unlock(&registry_lock);
    return o;
}

void fg_oidc_release(struct fg_oidc *o)
{
    if (o == NULL)
        return;
    pthread_mutex_lock(&registry_lock);
    int last = --o->users == 0;
    if (last) {
        struct fg_oidc **pp = &registry;
        while (*pp != o)
            pp = &(*pp)->next;
        *pp = o->next;
    }
    pthread_mutex_unlock(&registry_lock);
    if (!last)
        return;
    if (o->f)
        o->f->post(o->f, stop_task, o);
    else
        provider_free(o);
}

/* ---- what workers call ---------------------------------------------------- */

struct fg_keyset *fg_oidc_keys(struct fg_oidc *o)
{
    pthread_mutex_lock(&o->lock);
    struct fg_keyset *ks = o->keys ? fg_keyset_ref(o->keys) : NULL;
    pthread_mutex_unlock(&o->lock);
    return ks;
}

int fg_oidc_ready(struct fg_oidc *o)
{
    return __atomic_load_n(&o->ready, __ATOMIC_ACQUIRE);
}

unsigned long fg_oidc_fetch_count(struct fg_oidc *o)
{
    return __atomic_load_n(&o->fetches, __ATOMIC_RELAXED);
}

static int cancel_waiter(struct fg_authn_waiter *w)
{
    struct fg_oidc *o = w->impl;
    int found = 0;
    pthread_mutex_lock(&o->lock);
    for (struct fg_authn_waiter **pp = &o->waiters; *pp; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            found = 1;
            break;
        }
    }
    pthread_mutex_unlock(&o->lock);
    return found;
}

static void forced_task(void *arg)
{
    struct fg_oidc *o = arg;
    if (done_with(o))
        return;
    __atomic_add_fetch(&o->busy, 1, __ATOMIC_RELAXED);
    begin_fetch(o);
}

int fg_oidc_park(struct fg_oidc *o, struct fg_authn_waiter *w, uint64_t now_ms)
{
    if (o->f == NULL)
        return 0;
    int start = 0;
    pthread_mutex_lock(&o->lock);
    if (!o->fetching) {
        if ((o->last_forced_ms && now_ms - o->last_forced_ms < FG_OIDC_FORCED_INTERVAL_MS) ||
            !budget_take(now_ms)) {
            pthread_mutex_unlock(&o->lock);
            return 0;
        }
        o->last_forced_ms = now_ms;
        o->fetching = 1;
        start = 1;
    }
    w->impl = o;
    w->cancel = cancel_waiter;
    w->next = o->waiters;
    o->waiters = w;
    pthread_mutex_unlock(&o->lock);
    if (start) {
        __atomic_add_fetch(&o->busy, 1, __ATOMIC_RELAXED);
        o->f->post(o->f, forced_task, o);
    }
    return 1;
}

/* ---- fetching (fetcher thread) -------------------------------------------- */

/* Ends a fetch: wakes everyone parked on it; they verify again, without parking. */
static void finish_fetch(struct fg_oidc *o)
{
    pthread_mutex_lock(&o->lock);
    struct fg_authn_waiter *w = o->waiters;
    o->waiters = NULL;
    o->fetching = 0;
    pthread_mutex_unlock(&o->lock);
    while (w) {
        struct fg_authn_waiter *next = w->next;
        w->result.status = FG_AUTHN_RETRY;
        w->post(w);
        w = next;
    }
}

struct timer {
    struct fg_oidc *o;
    unsigned gen;
};

static void on_timer(void *arg)
{
    struct timer *t = arg;
    struct fg_oidc *o = t->o;
    unsigned gen = t->gen;
    free(t);
    if (done_with(o) || gen != o->timer_gen)
        return;
    pthread_mutex_lock(&o->lock);
    int busy = o->fetching;
    o->fetching = 1;
    pthread_mutex_unlock(&o->lock);
    if (busy)
        return; /* a forced fetch is already running */
    __atomic_add_fetch(&o->busy, 1, __ATOMIC_RELAXED);
    begin_fetch(o);
}

static void schedule(struct fg_oidc *o, uint64_t ms)
{
    struct timer *t = fg_malloc(sizeof(*t));
    t->o = o;
    t->gen = ++o->timer_gen; /* supersedes any earlier timer */
    __atomic_add_fetch(&o->busy, 1, __ATOMIC_RELAXED);
    o->f->after(o->f, ms, on_timer, t);
}

/* ---- fetch counts, by issuer (for /metrics; every provider of an issuer together) ---------- */

#define STAT_ISSUERS 128 /* beyond: "other" */
static struct issuer_stat {
    char *issuer;
    uint64_t n[2][2]; /* [0 discovery, 1 JWKS][0 failure, 1 success] */
} stats[STAT_ISSUERS + 1];
static size_t nstats;
static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;

static void count_fetch(const struct fg_oidc *o, int jwks, int ok)
{
    pthread_mutex_lock(&stats_lock);
    size_t i = 0;
    while (i < nstats && strcmp(stats[i].issuer, o->issuer) != 0)
        i++;
    if (i == nstats && nstats < STAT_ISSUERS)
        stats[nstats++].issuer = fg_strdup(o->issuer);
    else if (i == nstats)
        i = STAT_ISSUERS; /* the "other" row */
    stats[i].n[jwks][ok]++;
    pthread_mutex_unlock(&stats_lock);
}

void fg_oidc_stats(fg_oidc_stat_fn fn, void *arg)
{
    static const char *const kinds[2] = {"discovery", "jwks"};
    pthread_mutex_lock(&stats_lock);
    for (size_t i = 0; i <= STAT_ISSUERS; i++) {
        if (i >= nstats && i != STAT_ISSUERS)
            continue;
        for (int k = 0; k < 2; k++)
            for (int ok = 0; ok < 2; ok++)
                if (stats[i].n[k][ok])
                    fn(arg, i < nstats ? stats[i].issuer : "other", kinds[k], ok,
                       stats[i].n[k][ok]);
    }
    pthread_mutex_unlock(&stats_lock);
}

static void fetch_failed(struct fg_oidc *o, const char *what, const char *why)
{
    count_fetch(o, strcmp(what, "discovery") != 0, 0);
    o->failures++;
    pthread_mutex_lock(&o->lock);
    size_t have = o->keys ? o->keys->n : 0;
    pthread_mutex_unlock(&o->lock);
    fg_log(FG_LOG_WARN, "jwt %s: %s failed: %s; %s, retrying in %llums", o->name, what, why,
           have ? "keeping the current keys" : "no keys yet", (unsigned long long)o->backoff_ms);
    if (o->failures >= 2 && o->jwks_uri) {
        free(o->jwks_uri); /* the IdP may have moved its JWKS: discover again */
        o->jwks_uri = NULL;
    }
    schedule(o, o->backoff_ms);
    o->backoff_ms = o->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : o->backoff_ms * 2;
    finish_fetch(o);
}

static const char *status_why(const struct fg_fetch_resp *r)
{
    if (r->status == 0)
        return r->error ? r->error : "connection failed";
    return r->status == 404 ? "HTTP 404" : "unexpected HTTP status";
}

/* max-age from Cache-Control, clamped; the default without one. */
static uint64_t refresh_after_ms(const char *cache_control)
{
    uint64_t s = REFRESH_DEFAULT_S;
    const char *p = cache_control ? strcasestr(cache_control, "max-age=") : NULL;
    if (p) {
        p += 8;
        size_t n = strspn(p, "0123456789");
        uint64_t v;
        if (n > 0)
            s = fg_parse_u64(p, n, 1u << 30, &v) == 0 ? v : REFRESH_MAX_S; /* huge: clamp */
    }
    if (s < REFRESH_MIN_S)
        s = REFRESH_MIN_S;
    if (s > REFRESH_MAX_S)
        s = REFRESH_MAX_S;
    return s * 1000;
}

static void on_jwks(void *arg, const struct fg_fetch_resp *r)
{
    struct fg_oidc *o = arg;
    if (done_with(o))
        return;
    const char *why = NULL;
    struct fg_keyset *ks = NULL;
    if (r->status != 200)
        why = status_why(r);
    else
        ks = fg_keyset_parse(r->body, r->body_len, &why);
    if (ks == NULL) {
        fetch_failed(o, "JWKS fetch", why);
        return;
    }
    count_fetch(o, 1, 1);
    pthread_mutex_lock(&o->lock);
    struct fg_keyset *old = o->keys;
    o->keys = ks;
    pthread_mutex_unlock(&o->lock);
    if (old == NULL || strcmp(old->digest, ks->digest) != 0)
        fg_log(FG_LOG_INFO, "jwt %s: %zu signing keys (%zu skipped) from %s, set %s", o->name,
               ks->n, ks->skipped, o->jwks_uri, ks->digest);
    fg_keyset_unref(old);
    __atomic_store_n(&o->ready, 1, __ATOMIC_RELEASE);
    o->failures = 0;
    o->backoff_ms = BACKOFF_FIRST_MS;
    schedule(o, refresh_after_ms(r->cache_control));
    finish_fetch(o);
}

/* The JWKS is asked for as RFC 7517's application/jwk-set+json too: kube-apiserver's
 * /openid/v1/jwks answers 406 to an Accept of application/json alone. */
#define ACCEPT_DISCOVERY "application/json"
#define ACCEPT_JWKS      "application/jwk-set+json, application/json"

static void fetch(struct fg_oidc *o, const char *url, const char *accept, fg_fetch_done done)
{
    struct fg_fetch_req req = {0};
    req.method = "GET";
    req.url = url;
    req.accept = accept;
    req.tls = o->tls;
    req.timeout_ms = FETCH_TIMEOUT_MS;
    req.max_response = MAX_DOC_BYTES;
    __atomic_add_fetch(&o->fetches, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&o->busy, 1, __ATOMIC_RELAXED);
    o->f->fetch(o->f, &req, done, o);
}

/* A jwks_uri is https, or plain http to a loopback issuer (tests, sidecars): config's rule. */
static int url_ok(const char *u)
{
    return strncmp(u, "https://", 8) == 0 || fg_url_is_loopback_http(u);
}

char *fg_oidc_parse_discovery(const char *body, size_t len, const char *issuer, const char **why)
{
    json_t *doc = json_loadb(body, len, 0, NULL);
    const char *iss = json_string_value(json_object_get(doc, "issuer"));
    const char *jwks = json_string_value(json_object_get(doc, "jwks_uri"));
    char *uri = NULL;

    if (doc == NULL || !json_is_object(doc))
        *why = "not a JSON object";
    else if (iss == NULL || strcmp(iss, issuer) != 0)
        *why = "the document's issuer differs from issuer.url";
    else if (jwks == NULL || !url_ok(jwks))
        *why = "jwks_uri is missing or not https";
    else
        uri = fg_strdup(jwks);
    json_decref(doc);
    return uri;
}

static void on_discovery(void *arg, const struct fg_fetch_resp *r)
{
    struct fg_oidc *o = arg;
    if (done_with(o))
        return;
    if (r->status != 200) {
        fetch_failed(o, "discovery", status_why(r));
        return;
    }
    const char *why = NULL;
    char *jwks = fg_oidc_parse_discovery(r->body, r->body_len, o->issuer, &why);
    if (jwks == NULL) {
        fetch_failed(o, "discovery", why);
        return;
    }
    count_fetch(o, 0, 1);
    free(o->jwks_uri);
    o->jwks_uri = jwks;
    fetch(o, o->jwks_uri, ACCEPT_JWKS, on_jwks);
}

/* Starts discovery or a JWKS fetch. The caller counted one busy unit for us. */
static void begin_fetch(struct fg_oidc *o)
{
    if (done_with(o))
        return;
    if (o->jwks_uri) {
        fetch(o, o->jwks_uri, ACCEPT_JWKS, on_jwks);
        return;
    }
    struct fg_buf url = {0};
    if (o->discovery_url) {
        fg_buf_adds(&url, o->discovery_url);
    } else {
        size_t n = strlen(o->issuer);
        while (n > 0 && o->issuer[n - 1] == '/')
            n--;
        fg_buf_add(&url, o->issuer, n);
        fg_buf_adds(&url, "/.well-known/openid-configuration");
    }
    fetch(o, url.data, ACCEPT_DISCOVERY, on_discovery);
    fg_buf_free(&url);
}

void fg_oidc_shutdown(void)
{
    while (all)
        provider_free(all);
}
