/*
 * watch.c - reload.watchFiles (see watch.h).
 */
#include "watch.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#define QUIET_MS 200
#define WATCH_MASK                                                                                 \
    (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB |            \
     IN_DELETE_SELF | IN_MOVE_SELF)

struct wdir {
    int wd;
    char *dir;
    char **names; /* the watched files in it (basenames) */
    size_t n, cap;
};

struct fg_watch {
    int fd;
    struct event *ev, *quiet;
    struct wdir *dirs;
    size_t ndirs;
    fg_watch_fn changed;
    void *arg;
};

static void quiet_done(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fg_watch *w = arg;
    w->changed(w->arg);
}

static int interesting(const struct wdir *d, const char *name)
{
    if (name[0] == '\0' || strncmp(name, "..", 2) == 0)
        return 1; /* the directory itself, or a Kubernetes volume's atomic swap */
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->names[i], name) == 0)
            return 1;
    return 0;
}

static void on_events(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct fg_watch *w = arg;
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    int hit = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0)
            break;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *e = (const struct inotify_event *)p;
            for (size_t i = 0; i < w->ndirs; i++)
                if (w->dirs[i].wd == e->wd && interesting(&w->dirs[i], e->len ? e->name : ""))
                    hit = 1;
            if (e->mask & IN_Q_OVERFLOW)
                hit = 1;
            p += sizeof(*e) + e->len;
        }
    }
    if (hit) {
        struct timeval tv = {0, QUIET_MS * 1000};
        evtimer_add(w->quiet, &tv); /* (re)started: one reload for a burst */
    }
}

struct fg_watch *fg_watch_start(struct event_base *base, fg_watch_fn changed, void *arg)
{
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) {
        fg_log(FG_LOG_ERROR, "reload.watchFiles: inotify: %s; reload with SIGHUP instead",
               strerror(errno));
        return NULL;
    }
    struct fg_watch *w = fg_calloc(1, sizeof(*w));
    w->fd = fd;
    w->changed = changed;
    w->arg = arg;
    w->ev = event_new(base, fd, EV_READ | EV_PERSIST, on_events, w);
    w->quiet = evtimer_new(base, quiet_done, w);
    event_add(w->ev, NULL);
    return w;
}

static void dirs_free(struct wdir *dirs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(dirs[i].dir);
        for (size_t j = 0; j < dirs[i].n; j++)
            free(dirs[i].names[j]);
        free(dirs[i].names);
    }
    free(dirs);
}

void fg_watch_set(struct fg_watch *w, const struct fg_file_list *l)
{
    if (w == NULL)
        return;
    struct wdir *dirs = NULL;
    size_t nd = 0, cap = 0;
    for (size_t i = 0; i < l->n; i++) {
        const char *p = l->paths[i];
        const char *slash = strrchr(p, '/');
        char *dir = slash ? fg_strndup(p, (size_t)(slash - p) + (slash == p)) : fg_strdup(".");
        const char *base = slash ? slash + 1 : p;
        size_t k = 0;
        while (k < nd && strcmp(dirs[k].dir, dir) != 0)
            k++;
        if (k == nd) {
            fg_grow(&dirs, &cap, nd + 1, sizeof(*dirs));
            memset(&dirs[nd], 0, sizeof(dirs[nd]));
            dirs[nd].dir = dir;
            dirs[nd].wd = inotify_add_watch(w->fd, dir, WATCH_MASK);
            if (dirs[nd].wd < 0)
                fg_log(FG_LOG_WARN, "reload.watchFiles: cannot watch %s: %s", dir, strerror(errno));
            nd++;
        } else {
            free(dir);
        }
        fg_grow(&dirs[k].names, &dirs[k].cap, dirs[k].n + 1, sizeof(char *));
        dirs[k].names[dirs[k].n++] = fg_strdup(base);
    }
    /* directories no longer named: their watches go (the same directory keeps its wd) */
    for (size_t i = 0; i < w->ndirs; i++) {
        int kept = 0;
        for (size_t k = 0; k < nd; k++)
            kept |= dirs[k].wd == w->dirs[i].wd;
        if (!kept && w->dirs[i].wd >= 0)
            inotify_rm_watch(w->fd, w->dirs[i].wd);
    }
    dirs_free(w->dirs, w->ndirs);
    w->dirs = dirs;
    w->ndirs = nd;
}

void fg_watch_stop(struct fg_watch *w)
{
    if (w == NULL)
        return;
    event_free(w->ev);
    event_free(w->quiet);
    close(w->fd);
    dirs_free(w->dirs, w->ndirs);
    free(w);
}
