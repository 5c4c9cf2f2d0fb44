/*
 * jwtauthn.h - the `jwt` authenticator: one or more Kubernetes jwt[] entries
 * (one per issuer), each backed by an OIDC provider's key set, with
 * successes kept in the shared verified-token cache.
 *
 * A token is peeked at for its issuer; an issuer this authenticator does not
 * know is "not mine". An unknown kid parks the request on the provider's
 * next fetch (see oidc.h) and verifies again once it lands.
 */
#ifndef FG_JWTAUTHN_H
#define FG_JWTAUTHN_H

#include "../config/jwtcfg.h"
#include "authn.h"
#include "fetch.h"
#include "tokcache.h"

/*
 * An authenticator named name over cfgs[0..n) (borrowed: they must outlive
 * it). f may be NULL (nothing is fetched: `frontgate check`). cache may be
 * NULL (no caching). require_ready: fg_authn_ready waits for every issuer's
 * first key set.
 */
struct fg_authn *fg_jwtauthn_new(const char *name, struct fg_jwt_cfg *const *cfgs, size_t n,
                                 struct fg_fetcher *f, struct fg_tokcache *cache,
                                 int require_ready);

#endif
