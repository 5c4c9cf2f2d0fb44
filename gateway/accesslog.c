#include "accesslog.h"

#include "conn.h"

#include <string.h>
#include <time.h>

void fg_access_log(struct fg_conn *c)
{
    struct fg_req *r = &c->req;
    const struct fg_snapshot *snap = r->snap ? r->snap : c->w->snap;
    if (r->logged || !snap->cfg->access_log || !fg_log_enabled(FG_LOG_INFO))
        return;
    r->logged = 1;
    struct fg_buf b = {0};
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    fg_buf_printf(&b, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ info access method=", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  ts.tv_nsec / 1000000);
    fg_buf_adds(&b, r->msg.first_len ? http_method_str(r->method) : "-");
    const char *target = r->msg.raw.data ? r->msg.raw.data : "";
    size_t tlen = r->msg.first_len;
    const char *q = memchr(target, '?', tlen);
    fg_buf_adds(&b, " path=");
    fg_buf_logval(&b, target, q ? (size_t)(q - target) : tlen);
    fg_buf_printf(&b, " status=%d", r->status);
    if (r->match.ws_name_len) {
        fg_buf_adds(&b, " workspace=");
        fg_buf_logval(&b, r->match.ws_name, r->match.ws_name_len);
    }
    if (r->match.ws) {
        fg_buf_adds(&b, " cluster=");
        fg_buf_adds(&b, r->match.ws->cluster);
    }
    if (r->identity) {
        fg_buf_adds(&b, " user=");
        fg_buf_logval(&b, r->identity->user, strlen(r->identity->user));
    }
    if (r->authn) {
        fg_buf_adds(&b, " authn=");
        fg_buf_logval(&b, r->authn, strlen(r->authn));
    }
    if (r->reason) {
        fg_buf_adds(&b, " reason=");
        fg_buf_logval(&b, r->reason, strlen(r->reason));
    }
    uint64_t dur = r->t_start_us ? fg_now_us() - r->t_start_us : 0;
    fg_buf_printf(&b, " dur_ms=%llu.%03llu bytes=%llu peer=%s\n", (unsigned long long)(dur / 1000),
                  (unsigned long long)(dur % 1000), (unsigned long long)r->bytes_out, c->peer);
    fg_log_write(b.data, b.len);
    fg_buf_free(&b);
}
