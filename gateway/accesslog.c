#include "accesslog.h"

#include "exchange.h"
#include "../auth/reason.h"
#include "metrics.h"

#include <event2/event.h>
#include <limits.h>
#include <string.h>
#include <time.h>

static void flush(struct fg_worker *w, size_t n)
{
    fg_log_write(w->access.data, n);
    memmove(w->access.data, w->access.data + n, w->access.len - n);
    w->access.len -= n;
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fg_worker *w = arg;
    if (w->access.len)
        flush(w, w->access.len);
}

void fg_access_log_init(struct fg_worker *w)
{
    w->access_flush = event_new(w->base, -1, 0, flush_cb, w);
}

void fg_access_log_free(struct fg_worker *w)
{
    if (w->access.len)
        flush(w, w->access.len);
    if (w->access_flush)
        event_free(w->access_flush);
    w->access_flush = NULL;
    free(w->access.data);
    memset(&w->access, 0, sizeof(w->access));
}

/* "2026-11-23T21:10:32": formatted once a second per thread. */
static const char *stamp(time_t now)
{
    static __thread time_t last = -1;
    static __thread char text[32];
    if (now != last) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &tm);
        last = now;
    }
    return text;
}

int fg_req_is_watch(const struct fg_req *r)
{
    const char *q = r->match.query;
    size_t n = r->match.query_len;
    for (size_t i = 0; q && i + 6 <= n; i++)
        if ((i == 0 || q[i - 1] == '&') && memcmp(q + i, "watch=", 6) == 0)
            return (i + 7 <= n && q[i + 6] == '1') ||
                   (i + 10 <= n && memcmp(q + i + 6, "true", 4) == 0);
    return 0;
}

static const char *shard_name(const struct fg_req *r)
{
    if (r->snap == NULL || r->match.route == NULL || r->local ||
        r->match.shard >= r->snap->cfg->nshards)
        return NULL;
    return r->snap->cfg->shards[r->match.shard].name;
}

/* logfmt: `ts info access method= path= status= [workspace= cluster= user= authn= reason=
 * shard=] id= dur_ms= bytes= proto= peer=` */
static void text_line(struct fg_exchange *ex, struct fg_buf *bp, const struct timespec *ts,
                      uint64_t dur)
{
    struct fg_req *r = &ex->req;
    fg_buf_printf(bp, "%s.%03ldZ info access method=", stamp(ts->tv_sec), ts->tv_nsec / 1000000);
    fg_buf_adds(bp, r->msg.first_len ? http_method_str(r->line.method) : "-");
    const char *target = r->msg.raw.data ? r->msg.raw.data : "";
    size_t tlen = r->msg.first_len;
    const char *q = memchr(target, '?', tlen);
    fg_buf_adds(bp, " path=");
    fg_buf_logval(bp, target, q ? (size_t)(q - target) : tlen);
    fg_buf_printf(bp, " status=%d", r->status);
    if (r->match.ws_name_len) {
        fg_buf_adds(bp, " workspace=");
        fg_buf_logval(bp, r->match.ws_name, r->match.ws_name_len);
    }
    if (r->match.ws) {
        fg_buf_adds(bp, " cluster=");
        fg_buf_adds(bp, r->match.ws->cluster);
    }
    if (r->identity) {
        fg_buf_adds(bp, " user=");
        fg_buf_logval(bp, r->identity->user, strlen(r->identity->user));
    }
    if (r->authn) {
        fg_buf_adds(bp, " authn=");
        fg_buf_logval(bp, r->authn, strlen(r->authn));
    }
    if (r->reason) {
        fg_buf_adds(bp, " reason=");
        fg_buf_logval(bp, r->reason, strlen(r->reason));
        fg_buf_printf(bp, " reason_code=%s", fg_reason_name(fg_reason_of(r->reason)));
    }
    const char *shard = shard_name(r);
    if (shard) {
        fg_buf_adds(bp, " shard=");
        fg_buf_logval(bp, shard, strlen(shard));
    }
    if (r->request_id[0])
        fg_buf_printf(bp, " id=%s", r->request_id);
    fg_buf_printf(bp, " dur_ms=%llu.%03llu bytes=%llu proto=%s peer=%s\n",
                  (unsigned long long)(dur / 1000), (unsigned long long)(dur % 1000),
                  (unsigned long long)r->bytes_out, ex->ci->h2 ? "h2" : "http/1.1", ex->ci->peer);
}

static void json_field(struct fg_buf *bp, const char *key, const char *v, size_t n)
{
    fg_buf_printf(bp, ",\"%s\":", key);
    fg_buf_json_str(bp, v, n);
}

static void json_ms(struct fg_buf *bp, const char *key, uint64_t us)
{
    fg_buf_printf(bp, ",\"%s\":%llu.%03llu", key, (unsigned long long)(us / 1000),
                  (unsigned long long)(us % 1000));
}

/* One JSON object per line; absent facts are absent keys. */
static void json_line(struct fg_exchange *ex, struct fg_buf *bp, const struct timespec *ts,
                      uint64_t dur)
{
    struct fg_req *r = &ex->req;
    fg_buf_printf(bp, "{\"time\":\"%s.%03ldZ\",\"level\":\"info\",\"msg\":\"access\"",
                  stamp(ts->tv_sec), ts->tv_nsec / 1000000);
    if (r->request_id[0])
        json_field(bp, "request_id", r->request_id, strlen(r->request_id));
    json_field(bp, "client", ex->ci->peer, strlen(ex->ci->peer));
    const char *m = r->msg.first_len ? http_method_str(r->line.method) : "-";
    json_field(bp, "method", m, strlen(m));
    const char *target = r->msg.raw.data ? r->msg.raw.data : "";
    size_t tlen = r->msg.first_len;
    const char *q = memchr(target, '?', tlen);
    json_field(bp, "path", target, q ? (size_t)(q - target) : tlen);
    fg_buf_printf(bp, ",\"status\":%d,\"bytes_in\":%llu,\"bytes_out\":%llu", r->status,
                  (unsigned long long)r->bytes_in, (unsigned long long)r->bytes_out);
    json_ms(bp, "duration_ms", dur);
    if (r->t_auth_us)
        json_ms(bp, "auth_ms", r->auth_us);
    if (r->t_up_us)
        json_ms(bp, "upstream_ms", r->up_us);
    if (r->match.ws_name_len)
        json_field(bp, "workspace", r->match.ws_name, r->match.ws_name_len);
    if (r->match.ws)
        json_field(bp, "cluster", r->match.ws->cluster, strlen(r->match.ws->cluster));
    const char *shard = shard_name(r);
    if (shard)
        json_field(bp, "shard", shard, strlen(shard));
    if (r->identity)
        json_field(bp, "user", r->identity->user, strlen(r->identity->user));
    if (r->authn)
        json_field(bp, "authenticator", r->authn, strlen(r->authn));
    if (r->reason) {
        json_field(bp, "reason", r->reason, strlen(r->reason));
        const char *code = fg_reason_name(fg_reason_of(r->reason));
        json_field(bp, "reason_code", code, strlen(code));
    }
    const char *proto = ex->ci->h2 ? "h2" : "http/1.1";
    json_field(bp, "protocol", proto, strlen(proto));
    fg_buf_adds(bp, "}\n");
}

/* The request's end: its metrics, then its access-log line. */
void fg_access_log(struct fg_exchange *ex)
{
    struct fg_req *r = &ex->req;
    const struct fg_snapshot *snap = r->snap ? r->snap : ex->w->snap;
    if (r->logged)
        return;
    r->logged = 1;
    uint16_t route = FG_METRIC_ROUTES - 1;
    if (r->snap && r->match.route)
        route = r->snap->route_label[r->match.route - r->snap->cfg->routes];
    if (r->stream_kind)
        fg_metrics_stream(ex->w->metrics, r->stream_kind - 1, -1);
    uint64_t dur = r->t_start_us ? fg_now_us() - r->t_start_us : 0;
    fg_metrics_request(ex->w->metrics, route, r->msg.first_len ? (int)r->line.method : -1,
                       r->status, dur, r->stream_kind || r->status == 101 || fg_req_is_watch(r));
    if (!snap->cfg->access_log || !fg_log_enabled(FG_LOG_INFO))
        return;
    struct fg_worker *w = ex->w;
    struct fg_buf *bp = &w->access;
    size_t start = bp->len;
    if (start == 0 && w->access_flush)
        event_active(w->access_flush, EV_TIMEOUT, 1); /* after this pass's other events */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (snap->cfg->access_log == FG_ACCESS_LOG_JSON)
        json_line(ex, bp, &ts, dur);
    else
        text_line(ex, bp, &ts, dur);
    if (bp->len > PIPE_BUF && start > 0)
        flush(w, start); /* the earlier lines; this one waits for the end of the pass */
    if (w->access_flush == NULL)
        flush(w, bp->len);
}
