/*
 * oidc.h - one issuer's signing keys: OIDC discovery, JWKS fetches and
 * refreshes, and the requests waiting for them.
 *
 * A provider is shared by every config snapshot whose jwt entry names the
 * same issuer, discovery URL and CA, so a reload keeps the keys (no 401 storm
 * after SIGHUP). All fetching happens on the fetcher's thread; workers only
 * read the current key set and park requests.
 *
 * Refresh rules:
 *  - at start: discovery, then the JWKS, retried with backoff (0.5 s doubling
 *    to 10 s) until it works;
 *  - periodically: every max-age of the JWKS response's Cache-Control,
 *    clamped to [1 min, 1 h] (5 min without one);
 *  - on a token whose kid is unknown: one fetch per issuer in flight (every
 *    such request parks on it), at most one forced fetch per issuer every
 *    10 s, and at most 30 forced fetches a minute across all issuers; past
 *    those limits the token is refused without a fetch;
 *  - a failed fetch keeps the last good key set.
 */
#ifndef FG_OIDC_H
#define FG_OIDC_H

#include <stdint.h>

#include "../config/jwtcfg.h"
#include "authn.h"
#include "fetch.h"
#include "jwks.h"

#define FG_OIDC_FORCED_INTERVAL_MS 10000
#define FG_OIDC_FORCED_PER_MINUTE  30

struct fg_oidc;

/*
 * The provider for cfg, created (and started, when f is not NULL) on first
 * use. name labels log lines. Thread-safe. Release with fg_oidc_release.
 */
struct fg_oidc *fg_oidc_acquire(struct fg_fetcher *f, const struct fg_jwt_cfg *cfg,
                                const char *name);
void fg_oidc_release(struct fg_oidc *o);

/* A reference to the current key set, or NULL before the first fetch succeeded. */
struct fg_keyset *fg_oidc_keys(struct fg_oidc *o);
int fg_oidc_ready(struct fg_oidc *o);

/*
 * The token's kid (or, with no key set, any key) is missing: parks w until
 * the next fetch completes, starting one if the limits allow, and returns 1;
 * w->post then delivers FG_AUTHN_RETRY. Returns 0 (nothing parked) when no
 * fetch may start and none is in flight.
 */
int fg_oidc_park(struct fg_oidc *o, struct fg_authn_waiter *w, uint64_t now_ms);

/*
 * Frees providers that were released but still waited for a fetcher
 * callback. Call once at exit, after the fetcher is gone.
 */
void fg_oidc_shutdown(void);

/* Discovery and JWKS fetches so far, by issuer (every provider of it; after 128 issuers,
 * "other"), kind ("discovery", "jwks") and result: fn once per non-zero count. */
typedef void (*fg_oidc_stat_fn)(void *arg, const char *issuer, const char *kind, int success,
                                uint64_t n);
void fg_oidc_stats(fg_oidc_stat_fn fn, void *arg);

/*
 * Reads an OpenID Provider configuration body[0..len) as discovery does: its jwks_uri (a new
 * string, caller frees) when the document is a JSON object whose "issuer" equals issuer exactly
 * and whose "jwks_uri" is https:// or loopback http (fg_url_is_loopback_http). Else NULL with *why
 * (static). Pure: no I/O.
 */
char *fg_oidc_parse_discovery(const char *body, size_t len, const char *issuer, const char **why);

/* Fetches started so far (discovery and JWKS), for tests and metrics. */
unsigned long fg_oidc_fetch_count(struct fg_oidc *o);

#endif
