/*
 * metrics.h - Prometheus metrics (the admin listener's /metrics).
 *
 * Workers count into a block of their own (struct fg_wmetrics): only that worker writes it,
 * with relaxed atomic stores, so the request path takes no lock and shares no cache line; a
 * scrape, on the control loop, sums every worker's block with relaxed loads. Label values are
 * slots in append-only tables filled on the control loop when a configuration is built (route
 * prefixes, authenticator names): what a request carries is a small number, and a counter keeps
 * counting across reloads for as long as its label exists. Labels are configuration (route
 * prefix, authenticator, shard name, method, status code), never a user, workspace, key id or
 * token.
 */
#ifndef FG_METRICS_H
#define FG_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "../auth/reason.h"
#include "../config/base.h"

#define FG_METRIC_ROUTES  64 /* route label slots; the last one is "other" */
#define FG_METRIC_AUTHNS  64 /* authenticator label slots; slot 0 is "none" */
#define FG_METRIC_METHODS 8
#define FG_METRIC_CODES   24
#define FG_METRIC_BUCKETS 18
#define FG_METRIC_SHARDS  32 /* shard label slots; the last one is "other" */

struct fg_wmetrics {
    uint64_t requests[FG_METRIC_ROUTES][FG_METRIC_METHODS][FG_METRIC_CODES];
    uint64_t duration[FG_METRIC_BUCKETS]; /* per bucket (not cumulative); the last is +Inf */
    uint64_t duration_sum_us;
    /* request head sent .. response head received, per shard label */
    uint64_t upstream[FG_METRIC_SHARDS][FG_METRIC_BUCKETS];
    uint64_t upstream_sum_us[FG_METRIC_SHARDS];
    uint64_t authn[FG_METRIC_AUTHNS][FG_REASON_COUNT]; /* [label][reason; NONE: success] */
    uint64_t streams_total;                            /* watches and tunnels that ended */
    uint64_t open_streams[2];              /* gauges (two's complement sums): watches, tunnels */
    uint64_t h2_streams;                   /* gauge: client HTTP/2 streams open */
    uint64_t upconns[FG_METRIC_SHARDS][2]; /* gauges: shard connections, [HTTP/1.1, HTTP/2] */
    struct fg_wmetrics *next;              /* the registry's list */
};

/* A new block for a worker (zeroed; counted from now on). Control thread, before it runs. */
struct fg_wmetrics *fg_metrics_worker(void);

/* Label slots (control thread). Returns the same slot for the same text, for the process. */
uint16_t fg_metrics_route_label(const char *prefix);
uint16_t fg_metrics_authn_label(const char *name);
uint16_t fg_metrics_shard_label(const char *name);

/* A finished request. route: its slot (FG_METRIC_ROUTES - 1 when none); method: http-parser's
 * enum; dur_us: total time; long_lived: a watch or tunnel (kept out of the duration). */
void fg_metrics_request(struct fg_wmetrics *m, uint16_t route, int method, int status,
                        uint64_t dur_us, int long_lived);
void fg_metrics_upstream(struct fg_wmetrics *m, uint16_t shard, uint64_t dur_us);
/* Gauges: a watch (kind 0) or tunnel (1) opens (+1) or ends (-1); a shard connection of
 * protocol h2 (0: HTTP/1.1, 1: HTTP/2) opens or closes. */
void fg_metrics_stream(struct fg_wmetrics *m, int kind, int delta);
void fg_metrics_h2_stream(struct fg_wmetrics *m, int delta);
void fg_metrics_upconn(struct fg_wmetrics *m, uint16_t shard, int h2, int delta);
void fg_metrics_authn(struct fg_wmetrics *m, uint16_t authn, enum fg_reason reason);

/* Control thread: a reload's result (generation: the one serving after it). */
void fg_metrics_reload(int ok, uint64_t generation);

/* Extra text appended to a scrape (kcp's per-shard state), on the control thread. */
typedef void (*fg_metrics_extra_fn)(void *arg, struct fg_buf *b);
void fg_metrics_set_extra(fg_metrics_extra_fn fn, void *arg);

/* The exposition (text format 0.0.4) into b. Control thread. */
void fg_metrics_render(struct fg_buf *b);

/* Writes a label value with the text format's escapes (\\, \", \n). */
void fg_metrics_label(struct fg_buf *b, const char *v);

#endif
