/*
 * server.h - the process: binds the listeners, starts the workers, and runs
 * the control loop on the calling thread (signals, reload, shutdown).
 *
 * SIGHUP reloads the config file and everything it names into a new
 * snapshot; any error keeps the running one whole. SIGTERM/SIGINT stop
 * accepting, let in-flight requests finish within the grace period, then
 * return 0.
 */
#ifndef FG_SERVER_H
#define FG_SERVER_H

#include "snapshot.h"

/* Called once the listeners are bound; addrs[i] is "host:port" as bound. */
typedef void (*fg_ready_fn)(void *arg, char **addrs, size_t n);

/*
 * Runs until shutdown. Takes the snapshot's reference. config_file is what
 * SIGHUP re-reads. Returns the process exit status.
 */
int fg_server_run(const char *config_file, struct fg_snapshot *snap, fg_ready_fn ready, void *arg);

#endif
