/*
 * admin.h - the admin listener (`admin: {address}`, default 127.0.0.1:9090): /metrics in
 * Prometheus' text format and /healthz, /livez, /readyz, served by evhttp on the control loop,
 * away from the workers and their limits. GET and HEAD only; anything else is 405, an unknown
 * path 404.
 */
#ifndef FG_ADMIN_H
#define FG_ADMIN_H

#include <event2/event.h>

#include "../config/config.h"

struct fg_admin;

/* 1 when the process may serve (what /readyz says), asked on every /readyz. */
typedef int (*fg_admin_ready_fn)(void *arg);

/*
 * Starts serving cfg's admin address on base; NULL when it is off, or when it cannot bind:
 * an explicit address makes that an error (*failed = 1, logged), the default only a warning.
 */
struct fg_admin *fg_admin_start(struct event_base *base, const struct fg_config *cfg,
                                fg_admin_ready_fn ready, void *arg, int *failed);
void fg_admin_stop(struct fg_admin *a);

#endif
