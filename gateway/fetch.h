/*
 * fetch.h - the shared async HTTP client behind auth/fetch.h, run on one
 * event loop (the control thread). Small request/response exchanges only
 * (discovery, JWKS, TokenReview): bodies are buffered and capped.
 */
#ifndef FG_GW_FETCH_H
#define FG_GW_FETCH_H

#include <event2/dns.h>
#include <event2/event.h>

#include "../auth/fetch.h"

/* A fetcher whose callbacks run on base's thread. */
struct fg_fetcher *fg_fetcher_new(struct event_base *base, struct evdns_base *dns);
/*
 * Runs the tasks already posted, then drops pending timers; exchanges in
 * flight are abandoned without callbacks.
 */
void fg_fetcher_free(struct fg_fetcher *f);

#endif
