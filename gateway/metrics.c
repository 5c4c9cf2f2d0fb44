/*
 * metrics.c - per-worker counters, label tables and the text exposition (see metrics.h).
 */
#include "metrics.h"

#include "../auth/oidc.h"
#include "../auth/tokcache.h"
#include "../auth/tokenreview.h"
#include "worker.h"

#include <http_parser.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef FG_VERSION
#define FG_VERSION "unknown"
#endif

static const int codes[FG_METRIC_CODES - 1] = {101, 200, 201, 202, 204, 206, 301, 302,
                                               304, 400, 401, 403, 404, 405, 409, 413,
                                               422, 429, 431, 500, 502, 503, 504};
static const char *const methods[FG_METRIC_METHODS] = {"GET",   "HEAD",   "POST",    "PUT",
                                                       "PATCH", "DELETE", "OPTIONS", "other"};
/* seconds; the last bucket is +Inf */
static const double bounds[FG_METRIC_BUCKETS - 1] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                     0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                                     1,      2.5,     5,      10,    30};

/* Everything below is the control thread's, except what workers write into their blocks. */
static struct fg_wmetrics *workers;
static char *route_labels[FG_METRIC_ROUTES];
static size_t nroute_labels;
static char *authn_labels[FG_METRIC_AUTHNS];
static char *shard_labels[FG_METRIC_SHARDS];
static size_t nshard_labels;
static size_t nauthn_labels;
static uint64_t reloads[2], generation, last_success_s, start_s;
static fg_metrics_extra_fn extra_fn;
static void *extra_arg;

static void bump(uint64_t *c, uint64_t by)
{
    __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + by, __ATOMIC_RELAXED);
}

static uint64_t get(const uint64_t *c)
{
    return __atomic_load_n(c, __ATOMIC_RELAXED);
}

static void init_once(void)
{
    if (start_s == 0) {
        start_s = (uint64_t)time(NULL);
        last_success_s = start_s;
        generation = 1;
    }
}

struct fg_wmetrics *fg_metrics_worker(void)
{
    init_once();
    struct fg_wmetrics *m = fg_calloc(1, sizeof(*m));
    m->next = workers;
    workers = m;
    return m;
}

/* The slot of text in table (cap slots); when the table is full, the overflow slot `cap`. */
static uint16_t label(char **table, size_t *n, size_t cap, const char *text)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(table[i], text) == 0)
            return (uint16_t)i;
    if (*n == cap)
        return (uint16_t)cap;
    table[*n] = fg_strdup(text);
    return (uint16_t)(*n)++;
}

/* Route slots: the prefixes, then "other" (the table is full), then "none" (no route). */
uint16_t fg_metrics_route_label(const char *prefix)
{
    return label(route_labels, &nroute_labels, FG_METRIC_ROUTES - 2, prefix);
}

static const char *route_name(size_t r)
{
    return r < nroute_labels ? route_labels[r] : r == FG_METRIC_ROUTES - 1 ? "none" : "other";
}

/* Shard slots: the names (config shards and kcp's Shards), then "other". */
uint16_t fg_metrics_shard_label(const char *name)
{
    return label(shard_labels, &nshard_labels, FG_METRIC_SHARDS - 1, name);
}

/* Authenticator slots: "none" (nobody took the credential), the names, then "other". */
uint16_t fg_metrics_authn_label(const char *name)
{
    if (nauthn_labels == 0)
        authn_labels[nauthn_labels++] = fg_strdup("none");
    return label(authn_labels, &nauthn_labels, FG_METRIC_AUTHNS - 1, name);
}

static int code_slot(int status)
{
    for (int i = 0; i < FG_METRIC_CODES - 1; i++)
        if (codes[i] == status)
            return i;
    return FG_METRIC_CODES - 1;
}

static int method_slot(int method)
{
    switch (method) {
    case HTTP_GET:
        return 0;
    case HTTP_HEAD:
        return 1;
    case HTTP_POST:
        return 2;
    case HTTP_PUT:
        return 3;
    case HTTP_PATCH:
        return 4;
    case HTTP_DELETE:
        return 5;
    case HTTP_OPTIONS:
        return 6;
    default:
        return 7;
    }
}

static void observe(uint64_t *buckets, uint64_t *sum, uint64_t us)
{
    double s = (double)us / 1e6;
    int i = 0;
    while (i < FG_METRIC_BUCKETS - 1 && s > bounds[i])
        i++;
    bump(&buckets[i], 1);
    bump(sum, us);
}

void fg_metrics_request(struct fg_wmetrics *m, uint16_t route, int method, int status,
                        uint64_t dur_us, int long_lived)
{
#ifdef FG_NO_METRICS
    m = NULL; /* built without counting (-Dmetrics=false) */
#endif
    if (m == NULL)
        return;
    if (route >= FG_METRIC_ROUTES)
        route = FG_METRIC_ROUTES - 1;
    bump(&m->requests[route][method_slot(method)][code_slot(status)], 1);
    if (long_lived)
        bump(&m->streams_total, 1);
    else
        observe(m->duration, &m->duration_sum_us, dur_us);
}

void fg_metrics_upstream(struct fg_wmetrics *m, uint16_t shard, uint64_t dur_us)
{
#ifdef FG_NO_METRICS
    m = NULL;
#endif
    if (m)
        observe(m->upstream[shard < FG_METRIC_SHARDS ? shard : FG_METRIC_SHARDS - 1],
                &m->upstream_sum_us[shard < FG_METRIC_SHARDS ? shard : FG_METRIC_SHARDS - 1],
                dur_us);
}

void fg_metrics_stream(struct fg_wmetrics *m, int kind, int delta)
{
    if (m)
        bump(&m->open_streams[kind ? 1 : 0], (uint64_t)(int64_t)delta);
}

void fg_metrics_h2_stream(struct fg_wmetrics *m, int delta)
{
    if (m)
        bump(&m->h2_streams, (uint64_t)(int64_t)delta);
}

void fg_metrics_upconn(struct fg_wmetrics *m, uint16_t shard, int h2, int delta)
{
    if (m)
        bump(&m->upconns[shard < FG_METRIC_SHARDS ? shard : FG_METRIC_SHARDS - 1][h2 ? 1 : 0],
             (uint64_t)(int64_t)delta);
}

void fg_metrics_authn(struct fg_wmetrics *m, uint16_t authn, enum fg_reason reason)
{
#ifdef FG_NO_METRICS
    m = NULL;
#endif
    if (m && authn < FG_METRIC_AUTHNS && (unsigned)reason < FG_REASON_COUNT)
        bump(&m->authn[authn][reason], 1);
}

void fg_metrics_reload(int ok, uint64_t gen)
{
    init_once();
    reloads[ok ? 1 : 0]++;
    if (ok) {
        generation = gen;
        last_success_s = (uint64_t)time(NULL);
    }
}

void fg_metrics_set_extra(fg_metrics_extra_fn fn, void *arg)
{
    extra_fn = fn;
    extra_arg = arg;
}

void fg_metrics_label(struct fg_buf *b, const char *v)
{
    fg_buf_addc(b, '"');
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            fg_buf_addc(b, '\\');
        if (*v == '\n')
            fg_buf_adds(b, "\\n");
        else
            fg_buf_addc(b, *v);
    }
    fg_buf_addc(b, '"');
}

static void head(struct fg_buf *b, const char *name, const char *type, const char *help)
{
    fg_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void histogram(struct fg_buf *b, const char *name, const char *help, size_t off_buckets,
                      size_t off_sum)
{
    head(b, name, "histogram", help);
    uint64_t acc = 0, sum = 0;
    for (int i = 0; i < FG_METRIC_BUCKETS; i++) {
        for (struct fg_wmetrics *m = workers; m; m = m->next)
            acc += get((const uint64_t *)((const char *)m + off_buckets) + i);
        if (i < FG_METRIC_BUCKETS - 1)
            fg_buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i],
                          (unsigned long long)acc);
        else
            fg_buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)acc);
    }
    for (struct fg_wmetrics *m = workers; m; m = m->next)
        sum += get((const uint64_t *)((const char *)m + off_sum));
    /* the count is the +Inf bucket: counted apart, they could disagree while workers count */
    fg_buf_printf(b, "%s_sum %.6f\n%s_count %llu\n", name, (double)sum / 1e6, name,
                  (unsigned long long)acc);
}

static void oidc_row(void *arg, const char *issuer, const char *kind, int success, uint64_t n)
{
    struct fg_buf *b = arg;
    fg_buf_adds(b, "frontgate_jwks_fetches_total{issuer=");
    fg_metrics_label(b, issuer);
    fg_buf_printf(b, ",kind=\"%s\",result=\"%s\"} %llu\n", kind, success ? "success" : "failure",
                  (unsigned long long)n);
}

void fg_metrics_render(struct fg_buf *b)
{
    init_once();
    head(b, "frontgate_build_info", "gauge", "Always 1; the version is a label.");
    fg_buf_printf(b, "frontgate_build_info{version=\"%s\"} 1\n", FG_VERSION);
    head(b, "frontgate_process_start_time_seconds", "gauge", "When frontgate started (Unix time).");
    fg_buf_printf(b, "frontgate_process_start_time_seconds %llu\n", (unsigned long long)start_s);

    head(b, "frontgate_requests_total", "counter",
         "Requests answered, by route prefix, method and status code.");
    for (size_t r = 0; r < FG_METRIC_ROUTES; r++)
        for (int me = 0; me < FG_METRIC_METHODS; me++)
            for (int c = 0; c < FG_METRIC_CODES; c++) {
                uint64_t n = 0;
                for (struct fg_wmetrics *m = workers; m; m = m->next)
                    n += get(&m->requests[r][me][c]);
                if (n == 0)
                    continue;
                fg_buf_adds(b, "frontgate_requests_total{route=");
                fg_metrics_label(b, route_name(r));
                fg_buf_printf(b, ",method=\"%s\",code=", methods[me]);
                if (c < FG_METRIC_CODES - 1)
                    fg_buf_printf(b, "\"%d\"", codes[c]);
                else
                    fg_buf_adds(b, "\"other\"");
                fg_buf_printf(b, "} %llu\n", (unsigned long long)n);
            }
    histogram(b, "frontgate_request_duration_seconds",
              "Time from the request head to the end of the answer (watches and tunnels are "
              "counted in frontgate_streams_total instead).",
              offsetof(struct fg_wmetrics, duration),
              offsetof(struct fg_wmetrics, duration_sum_us));
    head(b, "frontgate_upstream_duration_seconds", "histogram",
         "Time from the request sent to a shard to the shard's response head, by shard.");
    for (size_t sh = 0; sh < FG_METRIC_SHARDS; sh++) {
        uint64_t acc = 0, sum = 0, total = 0;
        for (struct fg_wmetrics *m = workers; m; m = m->next)
            for (int i = 0; i < FG_METRIC_BUCKETS; i++)
                total += get(&m->upstream[sh][i]);
        if (total == 0)
            continue;
        const char *name = sh < nshard_labels ? shard_labels[sh] : "other";
        for (int i = 0; i < FG_METRIC_BUCKETS; i++) {
            for (struct fg_wmetrics *m = workers; m; m = m->next)
                acc += get(&m->upstream[sh][i]);
            fg_buf_adds(b, "frontgate_upstream_duration_seconds_bucket{shard=");
            fg_metrics_label(b, name);
            if (i < FG_METRIC_BUCKETS - 1)
                fg_buf_printf(b, ",le=\"%g\"} %llu\n", bounds[i], (unsigned long long)acc);
            else
                fg_buf_printf(b, ",le=\"+Inf\"} %llu\n", (unsigned long long)acc);
        }
        for (struct fg_wmetrics *m = workers; m; m = m->next)
            sum += get(&m->upstream_sum_us[sh]);
        fg_buf_adds(b, "frontgate_upstream_duration_seconds_sum{shard=");
        fg_metrics_label(b, name);
        fg_buf_printf(
            b, "} %.6f\nfrontgate_upstream_duration_seconds_count{shard=", (double)sum / 1e6);
        fg_metrics_label(b, name);
        fg_buf_printf(b, "} %llu\n", (unsigned long long)acc);
    }
    head(b, "frontgate_streams_total", "counter", "Watches and tunnels that ended.");
    uint64_t streams = 0;
    for (struct fg_wmetrics *m = workers; m; m = m->next)
        streams += get(&m->streams_total);
    fg_buf_printf(b, "frontgate_streams_total %llu\n", (unsigned long long)streams);
    head(b, "frontgate_open_streams", "gauge", "Watches and tunnels being relayed now.");
    for (int k = 0; k < 2; k++) {
        uint64_t n = 0;
        for (struct fg_wmetrics *m = workers; m; m = m->next)
            n += get(&m->open_streams[k]);
        fg_buf_printf(b, "frontgate_open_streams{kind=\"%s\"} %lld\n", k ? "tunnel" : "watch",
                      (long long)(int64_t)n);
    }
    head(b, "frontgate_http2_streams", "gauge", "Client HTTP/2 streams open, all workers.");
    uint64_t h2n = 0;
    for (struct fg_wmetrics *m = workers; m; m = m->next)
        h2n += get(&m->h2_streams);
    fg_buf_printf(b, "frontgate_http2_streams %lld\n", (long long)(int64_t)h2n);
    head(b, "frontgate_upstream_connections", "gauge",
         "Connections to shards, by shard and protocol.");
    for (size_t sh = 0; sh < FG_METRIC_SHARDS; sh++)
        for (int p = 0; p < 2; p++) {
            uint64_t n = 0;
            for (struct fg_wmetrics *m = workers; m; m = m->next)
                n += get(&m->upconns[sh][p]);
            if (n == 0)
                continue;
            fg_buf_adds(b, "frontgate_upstream_connections{shard=");
            fg_metrics_label(b, sh < nshard_labels ? shard_labels[sh] : "other");
            fg_buf_printf(b, ",protocol=\"%s\"} %lld\n", p ? "h2" : "http/1.1",
                          (long long)(int64_t)n);
        }

    head(b, "frontgate_authentication_attempts_total", "counter",
         "Authentication verdicts, by the authenticator that decided (none: no authenticator "
         "took the credential), result and reason (none for a success).");
    for (size_t a = 0; a < FG_METRIC_AUTHNS; a++)
        for (int why = 0; why < FG_REASON_COUNT; why++) {
            uint64_t n = 0;
            for (struct fg_wmetrics *m = workers; m; m = m->next)
                n += get(&m->authn[a][why]);
            if (n == 0)
                continue;
            fg_buf_adds(b, "frontgate_authentication_attempts_total{authenticator=");
            fg_metrics_label(b, a < nauthn_labels ? authn_labels[a] : "other");
            fg_buf_printf(b, ",result=\"%s\",reason=\"%s\"} %llu\n",
                          why == FG_REASON_NONE ? "success" : "failure",
                          fg_reason_name((enum fg_reason)why), (unsigned long long)n);
        }

    uint64_t hits, misses, evictions;
    int64_t entries;
    fg_tokcache_stats(&hits, &misses, &evictions, &entries);
    head(b, "frontgate_token_cache_hits_total", "counter",
         "Verified-token cache lookups that found a live entry (JWT, TokenReview).");
    fg_buf_printf(b, "frontgate_token_cache_hits_total %llu\n", (unsigned long long)hits);
    head(b, "frontgate_token_cache_misses_total", "counter",
         "Verified-token cache lookups that found nothing live.");
    fg_buf_printf(b, "frontgate_token_cache_misses_total %llu\n", (unsigned long long)misses);
    head(b, "frontgate_token_cache_evictions_total", "counter",
         "Entries pushed out of a verified-token cache by its size.");
    fg_buf_printf(b, "frontgate_token_cache_evictions_total %llu\n", (unsigned long long)evictions);
    head(b, "frontgate_token_cache_entries", "gauge", "Entries held by the verified-token caches.");
    fg_buf_printf(b, "frontgate_token_cache_entries %lld\n", (long long)entries);

    head(b, "frontgate_jwks_fetches_total", "counter",
         "OIDC discovery and JWKS fetches, by issuer, kind and result.");
    fg_oidc_stats(oidc_row, b);

    static const char *const tr_results[FG_TR_RESULTS] = {"authenticated", "denied", "malformed",
                                                          "http_error", "unreachable"};
    struct fg_tr_stats tr;
    fg_tokenreview_stats(&tr);
    head(b, "frontgate_tokenreview_requests_total", "counter",
         "TokenReview calls to API servers (each attempt), by result.");
    uint64_t trn = 0;
    for (int i = 0; i < FG_TR_RESULTS; i++) {
        fg_buf_printf(b, "frontgate_tokenreview_requests_total{result=\"%s\"} %llu\n",
                      tr_results[i], (unsigned long long)tr.calls[i]);
    }
    head(b, "frontgate_tokenreview_duration_seconds", "histogram",
         "Time from a TokenReview sent to its answer.");
    for (int i = 0; i < FG_TR_BUCKETS; i++) {
        trn += tr.buckets[i];
        if (i < FG_TR_BUCKETS - 1)
            fg_buf_printf(b, "frontgate_tokenreview_duration_seconds_bucket{le=\"%g\"} %llu\n",
                          tr.bounds[i], (unsigned long long)trn);
        else
            fg_buf_printf(b, "frontgate_tokenreview_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                          (unsigned long long)trn);
    }
    fg_buf_printf(b,
                  "frontgate_tokenreview_duration_seconds_sum %.6f\n"
                  "frontgate_tokenreview_duration_seconds_count %llu\n",
                  (double)tr.sum_us / 1e6, (unsigned long long)trn);

    head(b, "frontgate_config_reloads_total", "counter", "Configuration reloads, by result.");
    fg_buf_printf(b, "frontgate_config_reloads_total{result=\"success\"} %llu\n",
                  (unsigned long long)reloads[1]);
    fg_buf_printf(b, "frontgate_config_reloads_total{result=\"failure\"} %llu\n",
                  (unsigned long long)reloads[0]);
    head(b, "frontgate_config_last_reload_success_timestamp_seconds", "gauge",
         "When the serving configuration was loaded (Unix time).");
    fg_buf_printf(b, "frontgate_config_last_reload_success_timestamp_seconds %llu\n",
                  (unsigned long long)last_success_s);
    head(b, "frontgate_config_generation", "gauge", "The serving configuration's generation.");
    fg_buf_printf(b, "frontgate_config_generation %llu\n", (unsigned long long)generation);

    head(b, "frontgate_open_connections", "gauge", "Open client connections, all workers.");
    fg_buf_printf(b, "frontgate_open_connections %ld\n",
                  __atomic_load_n(&fg_state.conns, __ATOMIC_RELAXED));
    head(b, "frontgate_requests_in_flight", "gauge", "Requests being answered, all workers.");
    fg_buf_printf(b, "frontgate_requests_in_flight %ld\n",
                  __atomic_load_n(&fg_state.requests, __ATOMIC_RELAXED));
    if (extra_fn)
        extra_fn(extra_arg, b);
}
