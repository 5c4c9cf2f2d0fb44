/*
 * tls.h - OpenSSL contexts, built when a config snapshot loads (so a bad
 * certificate fails the reload, not a request).
 */
#ifndef FG_TLS_H
#define FG_TLS_H

#include <openssl/ssl.h>

#include "../config/config.h"

/* Process-wide OpenSSL setup; call once before threads start. */
void fg_tls_init(void);

/* A server context for a TLS listener; NULL with an error in errs. */
SSL_CTX *fg_tls_server_ctx(const struct fg_config *cfg, const struct fg_listener_cfg *l,
                           struct fg_errs *errs);

/*
 * A client context for an https:// shard: verifies the server against caFile
 * (or the system roots), presents clientCertFile/clientKeyFile when set.
 */
SSL_CTX *fg_tls_client_ctx(const struct fg_config *cfg, const struct fg_shard_cfg *s,
                           struct fg_errs *errs);

struct bufferevent;
/* The TLS error a bufferevent_openssl reported, as text (static). */
const char *fg_tls_bev_error(struct bufferevent *bev);

#endif
