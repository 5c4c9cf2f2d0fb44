#include "tokenreview.h"

#include "jwt.h"
#include "tokcache.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>

#define BACKOFF_FIRST_MS 200
#define CACHE_SIZE       100000
#define MAX_RESPONSE     (256 * 1024)

struct flight {
    struct flight *next;
    struct tr_authn *tr;
    unsigned char key[FG_TOKCACHE_KEY];
    char *token;
    size_t token_len;
    struct fg_authn_waiter *waiters;
    uint64_t deadline_ms;
    uint64_t backoff_ms;
    uint64_t reuse_until_ms; /* the positive cache entry's expiry (fetcher clock) */
    uint64_t sent_us;        /* the review in flight went out (for the latency metric) */
};

/* TokenReview calls of every authenticator, for /metrics (fetcher thread; relaxed atomics). */
static uint64_t calls[FG_TR_RESULTS], lat_buckets[FG_TR_BUCKETS], lat_sum_us;
static const double lat_bounds[FG_TR_BUCKETS - 1] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                     0.1,   0.25,   0.5,   1,    2.5};

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void count_call(enum fg_tr_result r, uint64_t us)
{
    __atomic_add_fetch(&calls[r], 1, __ATOMIC_RELAXED);
    double s = (double)us / 1e6;
    int i = 0;
    while (i < FG_TR_BUCKETS - 1 && s > lat_bounds[i])
        i++;
    __atomic_add_fetch(&lat_buckets[i], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&lat_sum_us, us, __ATOMIC_RELAXED);
}

void fg_tokenreview_stats(struct fg_tr_stats *s)
{
    for (int i = 0; i < FG_TR_RESULTS; i++)
        s->calls[i] = __atomic_load_n(&calls[i], __ATOMIC_RELAXED);
    for (int i = 0; i < FG_TR_BUCKETS; i++) {
        s->buckets[i] = __atomic_load_n(&lat_buckets[i], __ATOMIC_RELAXED);
        s->bounds[i] = i < FG_TR_BUCKETS - 1 ? lat_bounds[i] : 0;
    }
    s->sum_us = __atomic_load_n(&lat_sum_us, __ATOMIC_RELAXED);
}

struct tr_authn {
    struct fg_authn base;
    const struct fg_tokenreview_cfg *cfg;
    struct fg_fetcher *f;
    SSL_CTX *tls;
    char *review_url;
    char *token_path;
    struct fg_tokcache *pos, *neg;
    struct fg_identity *denied; /* what the negative cache stores */

    /* fetcher thread only */
    char *caller_token;
    struct stat token_st;
    int stopped;

    int busy;             /* atomic */
    pthread_mutex_t lock; /* guards flights */
    struct flight *flights;
};

static void tr_destroy(struct tr_authn *tr)
{
    fg_tokcache_retire(tr->pos, tr->f); /* in slices: see tokcache.h */
    fg_tokcache_retire(tr->neg, tr->f);
    fg_identity_unref(tr->denied);
    SSL_CTX_free(tr->tls);
    if (tr->caller_token) {
        OPENSSL_cleanse(tr->caller_token, strlen(tr->caller_token));
        free(tr->caller_token);
    }
    free(tr->review_url);
    free(tr->token_path);
    free(tr->base.name);
    pthread_mutex_destroy(&tr->lock);
    free(tr);
}

/* Fetcher callbacks end here; a freed authenticator goes once nothing uses it. */
static int done_with(struct tr_authn *tr)
{
    int left = __atomic_sub_fetch(&tr->busy, 1, __ATOMIC_ACQ_REL);
    if (tr->stopped && left == 0) {
        tr_destroy(tr);
        return 1;
    }
    return tr->stopped;
}

static void flight_free(struct flight *fl)
{
    OPENSSL_cleanse(fl->token, fl->token_len);
    free(fl->token);
    free(fl);
}

/* ---- answering ------------------------------------------------------------ */

/* Removes fl from the table and posts res to each waiter (identity: one ref each). */
static void land(struct flight *fl, enum fg_authn_status st, struct fg_identity *id,
                 const char *reason)
{
    struct tr_authn *tr = fl->tr;
    pthread_mutex_lock(&tr->lock);
    struct flight **pp = &tr->flights;
    while (*pp != fl)
        pp = &(*pp)->next;
    *pp = fl->next;
    struct fg_authn_waiter *w = fl->waiters;
    pthread_mutex_unlock(&tr->lock);
    while (w) {
        struct fg_authn_waiter *next = w->next;
        w->result.status = st;
        w->result.identity = st == FG_AUTHN_OK ? fg_identity_ref(id) : NULL;
        w->result.reason = reason;
        w->result.reuse_until_ms = st == FG_AUTHN_OK ? fl->reuse_until_ms : 0;
        w->post(w);
        w = next;
    }
    flight_free(fl);
}

static char *json_str_dup(json_t *v)
{
    const char *s = json_string_value(v);
    return s ? fg_strdup(s) : NULL;
}

/* Builds the identity from status.user; NULL when it is unusable. */
static struct fg_identity *user_identity(json_t *user, const char *authn, const char **why)
{
    const char *name = json_string_value(json_object_get(user, "username"));
    if (name == NULL || name[0] == '\0') {
        *why = "token review: no username";
        return NULL;
    }
    struct fg_identity *id = fg_identity_new(name, authn);
    char *uid = json_str_dup(json_object_get(user, "uid"));
    if (uid && uid[0])
        fg_identity_set_uid(id, uid);
    free(uid);
    json_t *groups = json_object_get(user, "groups"), *g;
    size_t i;
    json_array_foreach(groups, i, g)
    {
        if (json_is_string(g))
            fg_identity_add_group(id, json_string_value(g));
    }
    json_t *extra = json_object_get(user, "extra"), *vals, *v;
    const char *k;
    json_object_foreach(extra, k, vals)
    {
        size_t j;
        json_array_foreach(vals, j, v)
        {
            if (json_is_string(v))
                fg_identity_add_extra(id, k, json_string_value(v));
        }
    }
    return id;
}

static int audiences_intersect(const struct fg_tokenreview_cfg *cfg, json_t *got)
{
    if (cfg->naudiences == 0)
        return 1;
    size_t i;
    json_t *a;
    json_array_foreach(got, i, a)
    {
        for (size_t k = 0; k < cfg->naudiences; k++)
            if (json_is_string(a) && strcmp(json_string_value(a), cfg->audiences[k]) == 0)
                return 1;
    }
    return 0;
}

static const char malformed_review[] = "token review: malformed response";

struct fg_identity *fg_tokenreview_parse(const char *body, size_t len,
                                         const struct fg_tokenreview_cfg *cfg, const char *authn,
                                         const char **why)
{
    json_t *doc = json_loadb(body, len, 0, NULL);
    json_t *status = json_object_get(doc, "status");
    struct fg_identity *id = NULL;

    if (!json_is_object(status))
        *why = malformed_review;
    else if (!json_is_true(json_object_get(status, "authenticated")))
        *why = "token review: not authenticated";
    else if (!audiences_intersect(cfg, json_object_get(status, "audiences")))
        *why = "token review: audiences do not intersect";
    else
        id = user_identity(json_object_get(status, "user"), authn, why);
    json_decref(doc);
    return id;
}

/* The API server's answer: a decision is cached, a malformed body is not; wakes everyone. */
static void decided(struct flight *fl, const char *body, size_t len, uint64_t took_us)
{
    struct tr_authn *tr = fl->tr;
    const char *why = NULL;
    struct fg_identity *id = fg_tokenreview_parse(body, len, tr->cfg, tr->base.name, &why);
    count_call(id                        ? FG_TR_AUTHENTICATED
               : why == malformed_review ? FG_TR_MALFORMED
                                         : FG_TR_DENIED,
               took_us);
    uint64_t now = tr->f->now_ms(tr->f);
    if (id) {
        fl->reuse_until_ms = fg_tokcache_put(tr->pos, fl->key, id, 0, now);
        land(fl, FG_AUTHN_OK, id, NULL);
        fg_identity_unref(id);
    } else if (why == malformed_review) {
        /* no answer at all (a cut or garbled body): like a transport error, never cached */
        fg_log(FG_LOG_WARN, "tokenReview %s: the API server's answer is not a TokenReview",
               tr->base.name);
        land(fl, FG_AUTHN_REJECTED, NULL, why);
    } else {
        fg_tokcache_put(tr->neg, fl->key, tr->denied, 0, now);
        land(fl, FG_AUTHN_REJECTED, NULL, why);
    }
}

/* ---- sending -------------------------------------------------------------- */

static void send_review(struct flight *fl);

static void retry_task(void *arg)
{
    struct flight *fl = arg;
    if (done_with(fl->tr)) {
        land(fl, FG_AUTHN_REJECTED, NULL, "token review: authenticator stopped");
        return;
    }
    send_review(fl);
}

static void on_review(void *arg, const struct fg_fetch_resp *r)
{
    struct flight *fl = arg;
    struct tr_authn *tr = fl->tr;
    if (done_with(tr)) {
        land(fl, FG_AUTHN_REJECTED, NULL, "token review: authenticator stopped");
        return;
    }
    uint64_t took = fl->sent_us ? mono_us() - fl->sent_us : 0;
    if (r->status == 200 || r->status == 201) {
        decided(fl, r->body, r->body_len, took);
        return;
    }
    count_call(r->status ? FG_TR_HTTP_ERROR : FG_TR_UNREACHABLE, took);
    int transient = r->status == 0 || r->status == 429 || r->status >= 500;
    uint64_t now = tr->f->now_ms(tr->f);
    if (transient && now + fl->backoff_ms < fl->deadline_ms) {
        __atomic_add_fetch(&tr->busy, 1, __ATOMIC_RELAXED);
        tr->f->after(tr->f, fl->backoff_ms, retry_task, fl);
        fl->backoff_ms *= 2;
        return;
    }
    if (r->status)
        fg_log(FG_LOG_WARN, "tokenReview %s: the API server answered HTTP %d", tr->base.name,
               r->status);
    else
        fg_log(FG_LOG_WARN, "tokenReview %s: %s", tr->base.name,
               r->error ? r->error : "request failed");
    /* Not cached: the next request tries again. */
    land(fl, FG_AUTHN_REJECTED, NULL,
         transient ? "token review unavailable" : "token review refused our request");
}

/* Our own credential; re-read when the file changed (kubelet rotates it). */
static const char *caller_token(struct tr_authn *tr)
{
    if (tr->token_path == NULL)
        return NULL;
    struct stat st;
    if (stat(tr->token_path, &st) != 0)
        return tr->caller_token; /* keep the last good one */
    if (tr->caller_token && st.st_ino == tr->token_st.st_ino &&
        st.st_mtim.tv_sec == tr->token_st.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == tr->token_st.st_mtim.tv_nsec && st.st_size == tr->token_st.st_size)
        return tr->caller_token;
    size_t len;
    char *text = fg_read_file(tr->token_path, &len);
    if (text == NULL) {
        fg_log(FG_LOG_WARN, "tokenReview %s: cannot read tokenFile %s: %s", tr->base.name,
               tr->token_path, strerror(errno));
        return tr->caller_token;
    }
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
        text[--len] = '\0';
    if (tr->caller_token) {
        OPENSSL_cleanse(tr->caller_token, strlen(tr->caller_token));
        free(tr->caller_token);
    }
    tr->caller_token = text;
    tr->token_st = st;
    return text;
}

static void send_review(struct flight *fl)
{
    struct tr_authn *tr = fl->tr;
    json_t *auds = json_array();
    for (size_t i = 0; i < tr->cfg->naudiences; i++)
        json_array_append_new(auds, json_string(tr->cfg->audiences[i]));
    json_t *spec = json_object();
    json_object_set_new(spec, "token", json_stringn(fl->token, fl->token_len));
    if (tr->cfg->naudiences)
        json_object_set_new(spec, "audiences", auds);
    else
        json_decref(auds);
    json_t *doc = json_pack("{s:s, s:s, s:o}", "apiVersion", "authentication.k8s.io/v1", "kind",
                            "TokenReview", "spec", spec);
    char *body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    struct fg_buf auth = {0};
    const char *tok = caller_token(tr);
    if (tok)
        fg_buf_printf(&auth, "Bearer %s", tok);
    struct fg_fetch_req req = {0};
    req.method = "POST";
    req.url = tr->review_url;
    req.content_type = "application/json";
    req.accept = "application/json";
    req.authorization = tok ? auth.data : NULL;
    req.body = body;
    req.body_len = strlen(body);
    req.tls = tr->tls;
    uint64_t now = tr->f->now_ms(tr->f);
    req.timeout_ms = fl->deadline_ms > now ? fl->deadline_ms - now : 1;
    req.max_response = MAX_RESPONSE;
    __atomic_add_fetch(&tr->busy, 1, __ATOMIC_RELAXED);
    fl->sent_us = mono_us();
    tr->f->fetch(tr->f, &req, on_review, fl);
    OPENSSL_cleanse(body, req.body_len);
    free(body);
    if (auth.data)
        OPENSSL_cleanse(auth.data, auth.len);
    fg_buf_free(&auth);
}

static void start_task(void *arg)
{
    struct flight *fl = arg;
    struct tr_authn *tr = fl->tr;
    if (done_with(tr)) {
        land(fl, FG_AUTHN_REJECTED, NULL, "token review: authenticator stopped");
        return;
    }
    fl->deadline_ms = tr->f->now_ms(tr->f) + tr->cfg->timeout_ms;
    fl->backoff_ms = BACKOFF_FIRST_MS;
    send_review(fl);
}

/* ---- the authenticator ---------------------------------------------------- */

static int cancel_waiter(struct fg_authn_waiter *w)
{
    struct flight *fl = w->impl;
    struct tr_authn *tr = fl->tr;
    int found = 0;
    pthread_mutex_lock(&tr->lock);
    /* fl may have landed: only trust it while it is still in the table. */
    for (struct flight *f = tr->flights; f && !found; f = f->next) {
        if (f != fl)
            continue;
        for (struct fg_authn_waiter **pp = &f->waiters; *pp; pp = &(*pp)->next) {
            if (*pp == w) {
                *pp = w->next;
                found = 1;
                break;
            }
        }
    }
    pthread_mutex_unlock(&tr->lock);
    return found;
}

static int issuer_listed(const struct fg_tokenreview_cfg *cfg, const char *tok, size_t len)
{
    if (cfg->nissuers == 0)
        return 1;
    struct fg_jwt t;
    const char *why;
    if (fg_jwt_parse(tok, len, &t, &why) != FG_JWT_PARSED)
        return 0;
    int listed = 0;
    for (size_t i = 0; t.iss && i < cfg->nissuers && !listed; i++)
        listed = strcmp(t.iss, cfg->issuers[i]) == 0;
    fg_jwt_clear(&t);
    return listed;
}

/* A cached answer for key, if any: 1 with *res filled, else 0. */
static int cached(struct tr_authn *tr, const unsigned char *key, struct fg_authn_result *res)
{
    uint64_t now = fg_now_ms();
    struct fg_identity *id = fg_tokcache_get_until(tr->pos, key, now, &res->reuse_until_ms);
    if (id) {
        res->identity = id;
        res->status = FG_AUTHN_OK;
        return 1;
    }
    id = fg_tokcache_get(tr->neg, key, now);
    if (id) {
        fg_identity_unref(id);
        res->reason = "token review: not authenticated (cached)";
        res->status = FG_AUTHN_REJECTED;
        return 1;
    }
    return 0;
}

static enum fg_authn_status tr_authenticate(struct fg_authn *a, const struct fg_credential *cred,
                                            struct fg_authn_result *res, struct fg_authn_waiter *w)
{
    struct tr_authn *tr = (struct tr_authn *)a;
    if (cred->bearer == NULL || !issuer_listed(tr->cfg, cred->bearer, cred->bearer_len))
        return FG_AUTHN_NOT_MINE;
    unsigned char key[FG_TOKCACHE_KEY];
    fg_tokcache_key(tr->pos, a->name, cred->bearer, cred->bearer_len, tr->cfg->audiences,
                    tr->cfg->naudiences, key);
    if (cached(tr, key, res))
        return res->status;
    if (tr->f == NULL || w->no_park) {
        res->reason = "token review unavailable";
        return FG_AUTHN_REJECTED;
    }
    pthread_mutex_lock(&tr->lock);
    struct flight *fl;
    for (fl = tr->flights; fl; fl = fl->next)
        if (CRYPTO_memcmp(fl->key, key, sizeof(key)) == 0)
            break;
    if (fl == NULL && cached(tr, key, res)) {
        /* a flight landed (cache first, then table) between our look and the lock */
        pthread_mutex_unlock(&tr->lock);
        return res->status;
    }
    int start = fl == NULL;
    if (start) {
        fl = fg_calloc(1, sizeof(*fl));
        fl->tr = tr;
        memcpy(fl->key, key, sizeof(key));
        fl->token = fg_strndup(cred->bearer, cred->bearer_len);
        fl->token_len = cred->bearer_len;
        fl->next = tr->flights;
        tr->flights = fl;
    }
    w->impl = fl;
    w->cancel = cancel_waiter;
    w->next = fl->waiters;
    fl->waiters = w;
    pthread_mutex_unlock(&tr->lock);
    if (start) {
        __atomic_add_fetch(&tr->busy, 1, __ATOMIC_RELAXED);
        tr->f->post(tr->f, start_task, fl);
    }
    return FG_AUTHN_PENDING;
}

static void stop_task(void *arg)
{
    struct tr_authn *tr = arg;
    tr->stopped = 1;
    done_with(tr);
}

static void tr_free(struct fg_authn *a)
{
    struct tr_authn *tr = (struct tr_authn *)a;
    if (tr->f)
        tr->f->post(tr->f, stop_task, tr); /* after any callback already queued */
    else
        tr_destroy(tr);
}

static const struct fg_authn_ops tr_ops = {tr_authenticate, tr_free, NULL};

static char *resolve(const char *dir, const char *path)
{
    struct fg_buf b = {0};
    if (path[0] == '/' || dir == NULL)
        fg_buf_adds(&b, path);
    else
        fg_buf_printf(&b, "%s/%s", dir, path);
    return fg_buf_take(&b);
}

static SSL_CTX *make_tls(const struct fg_tokenreview_cfg *cfg, const char *dir,
                         struct fg_errs *errs, const struct fg_mark *m)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    char *ca = cfg->ca_file ? resolve(dir, cfg->ca_file) : NULL;
    char *cert = cfg->client_cert_file ? resolve(dir, cfg->client_cert_file) : NULL;
    char *key = cfg->client_key_file ? resolve(dir, cfg->client_key_file) : NULL;
    int ok = 1;
    if (ca && fg_file_check(ca) != 0) {
        fg_cfg_file_err(errs, &cfg->ca_mark, ca, "cannot load tokenReview caFile",
                        fg_file_reason(errno));
        ok = 0;
    } else if (ca ? SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1
                  : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        if (ca)
            fg_cfg_file_err(errs, &cfg->ca_mark, ca, "cannot load tokenReview caFile",
                            "not a PEM certificate");
        else
            fg_errs_add(errs, m->file, m->line, m->col,
                        "tokenReview: cannot load the system CA store");
        ok = 0;
    }
    if (ok && cert && fg_file_check(cert) != 0) {
        fg_cfg_file_err(errs, &cfg->client_cert_mark, cert,
                        "cannot load tokenReview clientCertFile", fg_file_reason(errno));
        ok = 0;
    } else if (ok && cert && SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        fg_cfg_file_err(errs, &cfg->client_cert_mark, cert,
                        "cannot load tokenReview clientCertFile", "not a PEM certificate");
        ok = 0;
    } else if (ok && key && fg_file_check(key) != 0) {
        fg_cfg_file_err(errs, &cfg->client_key_mark, key, "cannot load tokenReview clientKeyFile",
                        fg_file_reason(errno));
        ok = 0;
    } else if (ok && key &&
               (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
                SSL_CTX_check_private_key(ctx) != 1)) {
        fg_cfg_file_err(errs, &cfg->client_key_mark, key, "cannot load tokenReview clientKeyFile",
                        "not a PEM private key matching clientCertFile");
        ok = 0;
    }
    ERR_clear_error();
    free(ca);
    free(cert);
    free(key);
    if (!ok) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

struct fg_authn *fg_tokenreview_new(const char *name, const struct fg_tokenreview_cfg *cfg,
                                    const char *dir, struct fg_fetcher *f, struct fg_errs *errs,
                                    const struct fg_mark *mark)
{
    SSL_CTX *tls = NULL;
    if (strncmp(cfg->url, "https://", 8) == 0 && (tls = make_tls(cfg, dir, errs, mark)) == NULL)
        return NULL;
    struct tr_authn *tr = fg_calloc(1, sizeof(*tr));
    tr->base.ops = &tr_ops;
    tr->base.name = fg_strdup(name);
    tr->base.refs = 1;
    tr->cfg = cfg;
    tr->f = f;
    tr->tls = tls;
    tr->busy = 1; /* its own life, ended by stop_task */
    pthread_mutex_init(&tr->lock, NULL);
    size_t n = strlen(cfg->url);
    while (n > 0 && cfg->url[n - 1] == '/')
        n--;
    struct fg_buf url = {0};
    fg_buf_add(&url, cfg->url, n);
    fg_buf_adds(&url, "/apis/authentication.k8s.io/v1/tokenreviews");
    tr->review_url = fg_buf_take(&url);
    tr->token_path = cfg->token_file ? resolve(dir, cfg->token_file) : NULL;
    tr->pos = fg_tokcache_new(CACHE_SIZE, cfg->cache_ttl_ms);
    tr->neg = fg_tokcache_new(CACHE_SIZE, cfg->negative_cache_ttl_ms);
    tr->denied = fg_identity_new("-", name);
    if (tr->token_path) {
        size_t len;
        char *probe = fg_read_file(tr->token_path, &len);
        if (probe == NULL)
            fg_cfg_file_err(errs, &cfg->token_mark, tr->token_path,
                            "cannot read tokenReview tokenFile", fg_file_reason(errno));
        else
            OPENSSL_cleanse(probe, len);
        free(probe);
    }
    return &tr->base;
}
