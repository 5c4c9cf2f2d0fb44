/*
 * watch.h - reload.watchFiles: inotify on the directories of the files a configuration names
 * (the config file, key files, certificates, the index, kubeconfigs), on the control loop.
 *
 * Directories, not the files: editors and Kubernetes replace files by rename (a ConfigMap or
 * Secret volume swaps its `..data` symlink), which a watch on the old inode never sees. An
 * event for a watched name, or for a `..`-prefixed entry (the volume's swap), starts a short
 * quiet period; when it passes, `changed` runs once for the whole burst.
 */
#ifndef FG_WATCH_H
#define FG_WATCH_H

#include <event2/event.h>

#include "../config/config.h"

struct fg_watch;

typedef void (*fg_watch_fn)(void *arg);

/* NULL (logged) when inotify is not available. */
struct fg_watch *fg_watch_start(struct event_base *base, fg_watch_fn changed, void *arg);
/* Watches exactly the files of l from now on (directories added and removed as needed). */
void fg_watch_set(struct fg_watch *w, const struct fg_file_list *l);
void fg_watch_stop(struct fg_watch *w);

#endif
