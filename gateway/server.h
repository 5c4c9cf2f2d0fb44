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

#include <event2/dns.h>
#include <event2/event.h>

#include "snapshot.h"

/*
 * The control thread's loop: signals, reloads, and every authenticator
 * fetch (discovery, JWKS, TokenReview). Made before the first snapshot so
 * its authenticators can start fetching as soon as the loop runs.
 */
struct fg_control {
    struct event_base *base;
    struct evdns_base *dns;
    struct fg_fetcher *fetcher;
};

int fg_control_init(struct fg_control *ctl);
void fg_control_free(struct fg_control *ctl);

/* Called once the listeners are bound; addrs[i] is "host:port" as bound. */
typedef void (*fg_ready_fn)(void *arg, char **addrs, size_t n);

/*
 * Runs until shutdown. Takes the snapshot's reference. config_file is what
 * SIGHUP re-reads. Returns the process exit status.
 */
int fg_server_run(const char *config_file, struct fg_snapshot *snap, struct fg_control *ctl,
                  fg_ready_fn ready, void *arg);

#endif
