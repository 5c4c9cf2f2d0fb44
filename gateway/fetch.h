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
 * Gives everything pending its callback so owners can release what they
 * hold: posted tasks run, pending timers fire at once, exchanges in flight
 * fail with "shutting down". Then frees the fetcher.
 */
void fg_fetcher_free(struct fg_fetcher *f);

#endif
