#include "server.h"

#include "../auth/mint.h"
#include "../auth/oidc.h"
#include "../auth/tokcache.h"
#include "../config/jwtcfg.h"
#include "accesslog.h"
#include "admin.h"
#include "fetch.h"
#include "h2up.h"
#include "kcp.h"
#include "metrics.h"
#include "watch.h"
#include "worker.h"

#include <errno.h>
#include <http_parser.h>
#include <event2/thread.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

struct server {
    const char *config_file;
    struct fg_control *ctl;
    struct event_base *base;
    struct fg_worker *workers;
    size_t nworkers;
    uint64_t generation;
    struct event *signals, *grace, *wake; /* signals: the signalfd's event */
    int sigfd;
    sigset_t sigmask_old;
    struct event *ready_poll; /* until /readyz first answers 200 */
    int running;              /* atomic: workers still in their loops */
    int force;                /* atomic: the grace period is over */
    int draining;
    struct fg_kcp *kcp;     /* index.fromKcp, or NULL */
    struct fg_admin *admin; /* the admin listener, or NULL */
    struct fg_watch *watch; /* reload.watchFiles, or NULL */
};

static struct server *srv_global;

/* ---- listeners ------------------------------------------------------------ */

static int bind_one(const struct fg_listener_cfg *l, const char *port, char *bound, size_t blen)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(l->host, port, &hints, &res);
    if (rc != 0) {
        fg_log(FG_LOG_ERROR, "%s:%d:%d: cannot resolve listener address %s: %s", l->mark.file,
               l->mark.line, l->mark.col, l->address, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    }
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
        fg_log(FG_LOG_ERROR, "%s:%d:%d: cannot listen on %s: %s", l->mark.file, l->mark.line,
               l->mark.col, l->address, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), serv, sizeof(serv),
                NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(bound, blen, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, serv);
    freeaddrinfo(res);
    return fd;
}

static const char *port_of(const char *bound)
{
    const char *c = strrchr(bound, ':');
    return c ? c + 1 : "0";
}

/* Binds every listener once per worker (SO_REUSEPORT); fds[w * n + i]. */
static int bind_all(const struct fg_config *cfg, size_t nworkers, int *fds, char **bound)
{
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        char addr[128];
        const char *port = cfg->listeners[i].port;
        for (size_t w = 0; w < nworkers; w++) {
            int fd = bind_one(&cfg->listeners[i], port, addr, sizeof(addr));
            if (fd < 0)
                return -1;
            fds[w * cfg->nlisteners + i] = fd;
            if (w == 0) {
                bound[i] = fg_strdup(addr);
                port = port_of(bound[i]); /* port 0: the rest share the kernel's choice */
            }
        }
    }
    return 0;
}

static int listeners_equal(const struct fg_config *a, const struct fg_config *b)
{
    if (a->nlisteners != b->nlisteners)
        return 0;
    for (size_t i = 0; i < a->nlisteners; i++)
        if (strcmp(a->listeners[i].address, b->listeners[i].address) != 0 ||
            a->listeners[i].tls != b->listeners[i].tls)
            return 0;
    return 1;
}

static int same_admin(const struct fg_config *a, const struct fg_config *b)
{
    return (a->admin_address == NULL && b->admin_address == NULL) ||
           (a->admin_address && b->admin_address &&
            strcmp(a->admin_address, b->admin_address) == 0);
}

/* ---- workers -------------------------------------------------------------- */

void fg_worker_sync_snapshot(struct fg_worker *w)
{
    if (w->snap && fg_snapshot_generation() == w->snap->generation)
        return;
    struct fg_snapshot *s = fg_snapshot_current();
    if (s && s != w->snap) {
        fg_pools_reset(w, s->cfg->nshards); /* idle connections of the old config go */
        struct fg_snapshot *old = w->snap;
        w->snap = s;
        fg_h2up_sweep(w); /* idle HTTP/2 connections of the old config go */
        if (old)
            fg_conn_settings_changed(w, old->cfg, s->cfg);
        fg_snapshot_unref(old);
    } else {
        fg_snapshot_unref(s);
    }
}

void fg_worker_sync_live(struct fg_worker *w)
{
    uint64_t serial = fg_live_serial();
    if (serial == 0 || (w->live && w->live->serial == serial))
        return;
    struct fg_live *l = fg_live_current();
    fg_live_unref(w->live);
    w->live = l;
}

static void worker_mailbox(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct fg_worker *w = arg;
    uint64_t count;
    while (read(fd, &count, sizeof(count)) < 0 && errno == EINTR)
        ;
    fg_worker_run_waiters(w);
    fg_worker_sync_snapshot(w);
    if (__atomic_load_n(&fg_state.draining, __ATOMIC_RELAXED) && !w->draining) {
        w->draining = 1;
        for (size_t i = 0; i < w->nlisteners; i++) {
            evconnlistener_free(w->listeners[i]);
            w->listeners[i] = NULL;
        }
        fg_conn_drain_all(w);
        fg_h2up_sweep(w);
    }
    if (srv_global && __atomic_load_n(&srv_global->force, __ATOMIC_RELAXED))
        event_base_loopexit(w->base, NULL);
}

static void *worker_main(void *arg)
{
    struct fg_worker *w = arg;
    event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
    __atomic_sub_fetch(&srv_global->running, 1, __ATOMIC_ACQ_REL);
    event_active(srv_global->wake, EV_TIMEOUT, 1);
    return NULL;
}

/*
 * accept() failed. Out of descriptors (EMFILE, ENFILE) or memory, the listening socket
 * stays readable and libevent would call accept() again at once, forever: stop accepting
 * for ACCEPT_PAUSE_MS, as nginx does, and say so at most once a second. Connections wait
 * in the kernel's backlog meanwhile.
 */
#define ACCEPT_PAUSE_MS 100

static void accept_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fg_listen_arg *la = arg;
    if (!la->w->draining && la->w->listeners[la->index])
        evconnlistener_enable(la->w->listeners[la->index]);
}

static void accept_error(struct evconnlistener *l, void *arg)
{
    struct fg_listen_arg *la = arg;
    int err = EVUTIL_SOCKET_ERROR();
    static uint64_t last_log_ms; /* a racy read at worst logs twice */
    if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM)
        return; /* ECONNABORTED and the like: that connection is gone, the next may come */
    evconnlistener_disable(l);
    struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
    evtimer_add(la->resume, &tv);
    uint64_t now = fg_now_ms();
    if (now - __atomic_load_n(&last_log_ms, __ATOMIC_RELAXED) >= 1000) {
        __atomic_store_n(&last_log_ms, now, __ATOMIC_RELAXED);
        fg_log(FG_LOG_WARN, "accept: %s; accepting paused for %d ms",
               evutil_socket_error_to_string(err), ACCEPT_PAUSE_MS);
    }
}

static int worker_init(struct fg_worker *w, int id, struct fg_snapshot *snap, const int *fds,
                       const char *const *bound)
{
    w->id = id;
    /* Only the mailbox crosses threads, so the base needs no locks (every event
     * operation would otherwise take a mutex). */
    struct event_config *ec = event_config_new();
    event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
    w->base = event_base_new_with_config(ec);
    event_config_free(ec);
    w->mailbox_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->base == NULL || w->mailbox_fd < 0)
        return -1;
    w->dns = evdns_base_new(w->base,
                            EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (w->dns == NULL)
        w->dns = evdns_base_new(w->base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    TAILQ_INIT(&w->conns);
    TAILQ_INIT(&w->h2conns);
    TAILQ_INIT(&w->h2wait);
    fg_access_log_init(w);
    w->metrics = fg_metrics_worker();
    w->snap = fg_snapshot_ref(snap);
    fg_pools_reset(w, snap->cfg->nshards);
    w->nlisteners = snap->cfg->nlisteners;
    w->listeners = fg_calloc(w->nlisteners, sizeof(*w->listeners));
    w->listen_args = fg_calloc(w->nlisteners, sizeof(*w->listen_args));
    for (size_t i = 0; i < w->nlisteners; i++) {
        const char *port = port_of(bound[i]);
        uint64_t p = 0;
        fg_parse_u64(port, strlen(port), 65535, &p);
        w->listen_args[i] = (struct fg_listen_arg){.w = w, .index = i, .port = (int)p};
        w->listeners[i] = evconnlistener_new(w->base, fg_conn_accept, &w->listen_args[i],
                                             LEV_OPT_CLOSE_ON_FREE, 0, fds[i]);
        if (w->listeners[i] == NULL)
            return -1;
        evconnlistener_set_error_cb(w->listeners[i], accept_error);
        w->listen_args[i].resume = evtimer_new(w->base, accept_resume, &w->listen_args[i]);
    }
    pthread_mutex_init(&w->authq_lock, NULL);
    w->mailbox = event_new(w->base, w->mailbox_fd, EV_READ | EV_PERSIST, worker_mailbox, w);
    event_add(w->mailbox, NULL);
    return 0;
}

static void worker_free(struct fg_worker *w)
{
    fg_conn_close_all(w);
    if (w->base)
        fg_access_log_free(w);
    for (size_t i = 0; i < w->nlisteners; i++) {
        if (w->listeners[i])
            evconnlistener_free(w->listeners[i]);
        if (w->listen_args && w->listen_args[i].resume)
            event_free(w->listen_args[i].resume);
    }
    free(w->listeners);
    free(w->listen_args);
    fg_h2up_close_all(w);
    fg_pools_free(w);
    if (w->mailbox) {
        event_free(w->mailbox);
        pthread_mutex_destroy(&w->authq_lock);
    }
    if (w->mailbox_fd > 0)
        close(w->mailbox_fd);
    if (w->dns)
        evdns_base_free(w->dns, 0);
    fg_snapshot_unref(w->snap);
    fg_live_unref(w->live);
    if (w->base)
        event_base_free(w->base);
}

static void wake_workers(struct server *srv)
{
    for (size_t i = 0; i < srv->nworkers; i++)
        fg_worker_notify(&srv->workers[i]);
}

/* ---- control -------------------------------------------------------------- */

/*
 * A reload never turns authentication off, drops every global authenticator or removes
 * every workspace: a config file caught half-written (`cat new > frontgate.yaml`
 * truncates first, and a SIGHUP may land in between) parses as exactly that, and it
 * would fail open or lock everyone out. Such a change takes a restart. NULL, or why not.
 */
static const char *weakens(const struct fg_snapshot *cur, const struct fg_snapshot *s)
{
    if (cur->any_authn && !s->any_authn)
        return "the new configuration uses no authenticator (as a file caught half-written "
               "does); restart frontgate to turn authentication off";
    if (cur->nglobal > 0 && s->nglobal == 0)
        return "the new configuration has no global authenticator (as a file caught "
               "half-written does); restart frontgate to remove them all";
    if (fg_index_count(cur->cfg->index) > 0 && fg_index_count(s->cfg->index) == 0)
        return "the new configuration has no workspace (as a file caught half-written does); "
               "restart frontgate to remove them all";
    return NULL;
}

/* What /readyz waits for, in words (caller frees), or NULL when it would answer 200. */
static char *ready_waits_for(const struct fg_snapshot *s)
{
    struct fg_buf b = {0};
    for (size_t i = 0; i < s->cfg->nauthns; i++) {
        const struct fg_authn_cfg *a = &s->cfg->authns[i];
        if (fg_authn_ready(s->authns[i]))
            continue;
        fg_buf_adds(&b, b.len ? "; " : "waiting for ");
        if (a->kind == FG_AUTHN_JWT && a->njwts > 0) {
            fg_buf_printf(&b, "the signing keys of issuer%s ", a->njwts > 1 ? "s" : "");
            for (size_t j = 0; j < a->njwts; j++)
                fg_buf_printf(&b, "%s%s", j ? ", " : "", a->jwts[j]->issuer_url);
            fg_buf_printf(&b, " (authenticator \"%s\")", a->name);
        } else {
            fg_buf_printf(&b, "authenticator \"%s\"", a->name);
        }
    }
    char *kcp = srv_global ? fg_kcp_waits_for(srv_global->kcp) : NULL;
    if (kcp) {
        fg_buf_printf(&b, "%s%s", b.len ? "; " : "waiting for ", kcp);
        free(kcp);
    }
    return b.len ? fg_buf_take(&b) : NULL;
}

/* Until /readyz answers 200 for the first time; then says so once. */
static void on_ready_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct server *srv = arg;
    struct fg_snapshot *s = fg_snapshot_current();
    char *waits = s ? ready_waits_for(s) : NULL;
    if (waits == NULL && s && !srv->draining) {
        fg_log(FG_LOG_INFO, "frontgate ready: /readyz answers 200");
    } else if (!srv->draining) {
        struct timeval tv = {0, 200000};
        evtimer_add(srv->ready_poll, &tv);
    }
    free(waits);
    fg_snapshot_unref(s);
}

/* The config file, with the Shards kcp lists added as shards (index.fromKcp); every file it
 * read goes to *files. */
static struct fg_snapshot *load(struct server *srv, struct fg_errs *errs,
                                struct fg_file_list *files)
{
    fg_config_files_begin(files);
    struct fg_config *cfg = fg_config_load(srv->config_file, errs);
    struct fg_snapshot *s = NULL;
    if (cfg) {
        fg_kcp_add_shards(srv->kcp, cfg);
        s = fg_snapshot_build(cfg, srv->generation + 1, srv->ctl->fetcher, errs);
    }
    fg_config_files_end();
    return s;
}

static void on_files_changed(void *arg);

/* reload.watchFiles as the serving config says: on, off, and what is watched. After a failed
 * load, its files are watched too (the fix may be the file it could not read). */
static void update_watch(struct server *srv, const struct fg_snapshot *cur,
                         const struct fg_file_list *failed)
{
    if (!cur->cfg->watch_files) {
        fg_watch_stop(srv->watch);
        srv->watch = NULL;
        return;
    }
    if (srv->watch == NULL)
        srv->watch = fg_watch_start(srv->base, on_files_changed, srv);
    if (failed == NULL) {
        fg_watch_set(srv->watch, &cur->files);
        return;
    }
    struct fg_file_list all = {0};
    const struct fg_file_list *both[] = {&cur->files, failed};
    for (size_t k = 0; k < 2; k++)
        for (size_t i = 0; i < both[k]->n; i++) {
            size_t j = 0;
            while (j < all.n && strcmp(all.paths[j], both[k]->paths[i]) != 0)
                j++;
            if (j < all.n)
                continue;
            fg_grow(&all.paths, &all.cap, all.n + 1, sizeof(char *));
            all.paths[all.n++] = fg_strdup(both[k]->paths[i]);
        }
    fg_watch_set(srv->watch, &all);
    fg_file_list_free(&all);
}

static void reload(struct server *srv)
{
    struct fg_errs errs = {0};
    struct fg_snapshot *cur = fg_snapshot_current();
    struct fg_file_list files = {0};
    struct fg_snapshot *s = load(srv, &errs, &files);
    if (s && !fg_kcp_cfg_same_source(s->cfg->kcp, cur->cfg->kcp)) {
        fg_errs_add(
            &errs, srv->config_file, 0, 0,
            "index.fromKcp (rootShard, watchTimeout, workspaceAuthentication) cannot be added, "
            "removed or changed "
            "on reload; restart frontgate to apply it");
        fg_snapshot_unref(s);
        s = NULL;
    }
    if (s && !listeners_equal(s->cfg, cur->cfg)) {
        fg_errs_add(&errs, srv->config_file, 0, 0,
                    "listeners cannot change on reload; restart frontgate to apply them");
        fg_snapshot_unref(s);
        s = NULL;
    }
    const char *why = s ? weakens(cur, s) : NULL;
    if (why) {
        fg_errs_add(&errs, srv->config_file, 0, 0, "%s", why);
        fg_snapshot_unref(s);
        s = NULL;
    }
    /* last: the rootShard's certificates again (rotated files take effect on reload) */
    int tls_failed = 0;
    SSL_CTX *kcp_tls = s ? fg_kcp_prepare_tls(srv->kcp, s->cfg, &errs, &tls_failed) : NULL;
    if (tls_failed) {
        fg_snapshot_unref(s);
        s = NULL;
    }
    if (s == NULL) {
        fg_metrics_reload(0, cur->generation);
        for (size_t i = 0; i < errs.n; i++)
            fg_log(FG_LOG_ERROR, "reload: %s", errs.msgs[i]);
        fg_log(FG_LOG_ERROR, "reload failed; still serving configuration generation %llu",
               (unsigned long long)cur->generation);
        fg_errs_free(&errs);
        update_watch(srv, cur, &files);
        fg_file_list_free(&files);
        fg_snapshot_unref(cur);
        return;
    }
    srv->generation++;
    if (s->cfg->workers && s->cfg->workers != srv->nworkers)
        fg_log(FG_LOG_WARN, "reload: a new worker count takes effect on restart");
    if (!same_admin(s->cfg, cur->cfg))
        fg_log(FG_LOG_WARN, "reload: a new admin address takes effect on restart");
    fg_log_set_level(s->cfg->log_level);
    uint64_t gen = s->generation;
    size_t nws = fg_index_count(s->cfg->index), nroutes = s->cfg->nroutes;
    fg_kcp_commit_tls(srv->kcp, s->cfg, kcp_tls);
    s->files = files;
    update_watch(srv, s, NULL);
    fg_metrics_reload(1, gen);
    /* Installed before it is announced: a request sent after the log line sees it. */
    fg_snapshot_install(s);
    fg_snapshot_unref(cur);
    wake_workers(srv);
    fg_log(FG_LOG_INFO, "reloaded configuration generation %llu: %zu workspaces, %zu routes",
           (unsigned long long)gen, nws, nroutes);
}

static void on_files_changed(void *arg)
{
    struct server *srv = arg;
    if (srv->draining)
        return;
    fg_log(FG_LOG_INFO, "reload: a file the configuration names changed (reload.watchFiles)");
    reload(srv);
}

/* What /readyz says, on the admin listener as on the main ones. */
static int ready_now(void *arg)
{
    (void)arg;
    struct fg_snapshot *s = fg_snapshot_current();
    int ready = s && __atomic_load_n(&fg_state.ready, __ATOMIC_RELAXED) &&
                !__atomic_load_n(&fg_state.draining, __ATOMIC_RELAXED) && fg_snapshot_ready(s) &&
                fg_live_ready();
    fg_snapshot_unref(s);
    return ready;
}

static void kcp_metrics(void *arg, struct fg_buf *b)
{
    struct server *srv = arg;
    fg_kcp_metrics(srv->kcp, b);
}

/* kcp's Shards changed: the configuration is built again with them (as on SIGHUP). */
static void on_kcp_shards(void *arg)
{
    struct server *srv = arg;
    if (srv->draining)
        return;
    fg_log(FG_LOG_INFO, "kcp: the Shards changed; building the configuration again");
    reload(srv);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct server *srv = arg;
    if (sig == SIGHUP) {
        reload(srv);
        return;
    }
    if (srv->draining) {
        fg_log(FG_LOG_WARN, "second signal: closing remaining connections now");
        __atomic_store_n(&srv->force, 1, __ATOMIC_RELAXED);
        wake_workers(srv);
        return;
    }
    srv->draining = 1;
    struct fg_snapshot *s = fg_snapshot_current();
    uint64_t grace = s->cfg->limits.shutdown_grace_ms;
    fg_snapshot_unref(s);
    fg_log(FG_LOG_INFO, "shutting down: finishing %ld in-flight requests (grace %llums)",
           __atomic_load_n(&fg_state.requests, __ATOMIC_RELAXED), (unsigned long long)grace);
    __atomic_store_n(&fg_state.draining, 1, __ATOMIC_RELAXED);
    struct timeval tv = {(time_t)(grace / 1000), (suseconds_t)((grace % 1000) * 1000)};
    evtimer_add(srv->grace, &tv);
    wake_workers(srv);
}

/* SIGHUP, SIGTERM, SIGINT, read from the signalfd (see fg_server_run). */
static void on_signalfd(evutil_socket_t fd, short what, void *arg)
{
    struct signalfd_siginfo si;
    while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        on_signal((evutil_socket_t)si.ssi_signo, what, arg);
}

static void on_grace(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct server *srv = arg;
    fg_log(FG_LOG_WARN, "grace period over: closing %ld remaining connections",
           __atomic_load_n(&fg_state.conns, __ATOMIC_RELAXED));
    __atomic_store_n(&srv->force, 1, __ATOMIC_RELAXED);
    wake_workers(srv);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct server *srv = arg;
    if (__atomic_load_n(&srv->running, __ATOMIC_ACQUIRE) == 0)
        event_base_loopexit(srv->base, NULL);
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int fg_control_init(struct fg_control *ctl)
{
    evthread_use_pthreads();
    ctl->base = event_base_new();
    if (ctl->base == NULL)
        return -1;
    ctl->dns = evdns_base_new(ctl->base,
                              EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (ctl->dns == NULL)
        ctl->dns = evdns_base_new(ctl->base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    ctl->fetcher = fg_fetcher_new(ctl->base, ctl->dns);
    fg_snapshot_set_reaper(ctl->fetcher);
    return 0;
}

void fg_control_free(struct fg_control *ctl)
{
    /* The fetcher runs what is posted (snapshot frees included) before it goes. */
    fg_fetcher_free(ctl->fetcher);
    fg_snapshot_set_reaper(NULL);
    fg_tokcache_retire_finish();
    fg_oidc_shutdown();
    fg_mint_shutdown();
    if (ctl->dns)
        evdns_base_free(ctl->dns, 0);
    if (ctl->base)
        event_base_free(ctl->base);
    memset(ctl, 0, sizeof(*ctl));
}

int fg_server_run(const char *config_file, struct fg_snapshot *snap, struct fg_control *ctl,
                  fg_ready_fn ready, void *arg)
{
    struct server srv = {0};
    srv.ctl = ctl;
    const struct fg_config *cfg = snap->cfg; /* only until the first reload */
    const size_t nl = cfg->nlisteners;
    int status = 1;
    srv.config_file = config_file;
    srv.generation = snap->generation;
    srv_global = &srv;
    evthread_use_pthreads();
    signal(SIGPIPE, SIG_IGN);
    /* http-parser's own cap (80 KiB by default) must not undercut maxHeaderBytes (at most
     * 1 MiB): frontgate counts header bytes itself and answers 431 at the configured limit. */
    http_parser_set_max_header_size(2u << 20);
    raise_nofile();
    fg_log_set_level(cfg->log_level);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    srv.nworkers = cfg->workers ? cfg->workers : (size_t)(ncpu > 0 ? ncpu : 1);
    int *fds = fg_calloc(srv.nworkers * cfg->nlisteners, sizeof(int));
    char **bound = fg_calloc(cfg->nlisteners, sizeof(char *));
    for (size_t i = 0; i < srv.nworkers * cfg->nlisteners; i++)
        fds[i] = -1;
    fg_snapshot_install(snap);
    srv.workers = fg_calloc(srv.nworkers, sizeof(struct fg_worker));
    if (bind_all(cfg, srv.nworkers, fds, bound) != 0)
        goto out;
    for (size_t w = 0; w < srv.nworkers; w++) {
        if (worker_init(&srv.workers[w], (int)w, snap, fds + w * cfg->nlisteners,
                        (const char *const *)bound) != 0) {
            fg_log(FG_LOG_ERROR, "cannot start worker %zu", w);
            goto out;
        }
        for (size_t i = 0; i < cfg->nlisteners; i++)
            fds[w * cfg->nlisteners + i] = -1; /* owned by the listener now */
    }
    srv.base = ctl->base;
    if (cfg->kcp) {
        struct fg_errs kerrs = {0};
        srv.kcp = fg_kcp_start(cfg, ctl->fetcher, on_kcp_shards, &srv, &kerrs);
        for (size_t i = 0; i < kerrs.n; i++)
            fg_log(FG_LOG_ERROR, "%s", kerrs.msgs[i]);
        fg_errs_free(&kerrs);
        if (srv.kcp == NULL)
            goto out;
    }
    int admin_failed;
    srv.admin = fg_admin_start(srv.base, cfg, ready_now, &srv, &admin_failed);
    if (admin_failed)
        goto out;
    fg_metrics_set_extra(kcp_metrics, &srv);
    update_watch(&srv, snap, NULL);
    /*
     * SIGHUP, SIGTERM and SIGINT are blocked and read from a signalfd by the main loop: no
     * asynchronous handler, so no window in which a signal is taken and its wake-up lost
     * (seen under ThreadSanitizer, which defers a handler to the thread's next interceptor
     * call: a SIGHUP landing as the main thread entered epoll_wait never reloaded).
     */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, &srv.sigmask_old);
    srv.sigfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    if (srv.sigfd < 0) {
        fg_log(FG_LOG_ERROR, "signalfd: %s", strerror(errno));
        pthread_sigmask(SIG_SETMASK, &srv.sigmask_old, NULL);
        goto out;
    }
    srv.signals = event_new(srv.base, srv.sigfd, EV_READ | EV_PERSIST, on_signalfd, &srv);
    srv.grace = evtimer_new(srv.base, on_grace, &srv);
    srv.wake = event_new(srv.base, -1, 0, on_wake, &srv);
    event_add(srv.signals, NULL);
    srv.running = (int)srv.nworkers;
    /*
     * Workers start with every signal blocked (a thread inherits its creator's mask), so
     * SIGHUP, SIGTERM and SIGINT reach the main loop only. Blocking inside worker_main
     * instead leaves a window in which a just-created worker takes the signal: seen as a
     * SIGHUP with no reload under ThreadSanitizer on a loaded machine.
     */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (size_t w = 0; w < srv.nworkers; w++)
        pthread_create(&srv.workers[w].thread, NULL, worker_main, &srv.workers[w]);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    for (size_t i = 0; i < cfg->nlisteners; i++)
        fg_log(FG_LOG_INFO, "listening on %s://%s", cfg->listeners[i].tls ? "https" : "http",
               bound[i]);
    __atomic_store_n(&fg_state.ready, 1, __ATOMIC_RELAXED); /* before anyone reads the log */
    /* Serving now; /readyz may still wait for an issuer's keys: the line says what for. */
    char *waits = ready_waits_for(snap);
    fg_log(FG_LOG_INFO, "frontgate ready: %zu workers, %zu workspaces, %zu routes, %zu shards%s%s",
           srv.nworkers, fg_index_count(cfg->index), cfg->nroutes, cfg->nshards,
           waits ? "; /readyz answers 503, " : "", waits ? waits : "");
    srv.ready_poll = evtimer_new(srv.base, on_ready_poll, &srv);
    if (waits) {
        struct timeval tv = {0, 200000};
        evtimer_add(srv.ready_poll, &tv);
    }
    free(waits);
    if (ready)
        ready(arg, bound, nl);
    event_base_dispatch(srv.base);
    for (size_t w = 0; w < srv.nworkers; w++)
        pthread_join(srv.workers[w].thread, NULL);
    fg_kcp_stop(srv.kcp);
    srv.kcp = NULL;
    fg_metrics_set_extra(NULL, NULL);
    fg_admin_stop(srv.admin);
    srv.admin = NULL;
    fg_watch_stop(srv.watch);
    srv.watch = NULL;
    fg_log(FG_LOG_INFO, "stopped");
    status = 0;
out:
    fg_metrics_set_extra(NULL, NULL);
    fg_admin_stop(srv.admin);
    fg_watch_stop(srv.watch);
    fg_kcp_stop(srv.kcp);
    for (size_t w = 0; w < srv.nworkers; w++)
        worker_free(&srv.workers[w]);
    free(srv.workers);
    for (size_t i = 0; i < srv.nworkers * nl; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    for (size_t i = 0; i < nl; i++)
        free(bound[i]);
    free(bound);
    free(fds);
    if (srv.signals) {
        event_free(srv.signals);
        close(srv.sigfd);
        pthread_sigmask(SIG_SETMASK, &srv.sigmask_old, NULL);
    }
    if (srv.base && srv.grace) {
        event_free(srv.grace);
        event_free(srv.wake);
        if (srv.ready_poll)
            event_free(srv.ready_poll);
    }
    fg_snapshot_install(NULL);
    srv_global = NULL;
    return status;
}
