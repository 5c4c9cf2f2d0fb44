#include "tls.h"

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <stdio.h>
#include <stdlib.h>

void fg_tls_init(void)
{
    OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS | OPENSSL_INIT_LOAD_CRYPTO_STRINGS, NULL);
}

const char *fg_tls_error(void)
{
    static __thread char buf[256];
    unsigned long e = ERR_get_error();
    if (e == 0)
        return "unknown TLS error";
    ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    return buf;
}

const char *fg_tls_bev_error(struct bufferevent *bev)
{
    static __thread char buf[256];
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    long verify = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (verify != X509_V_OK) {
        /* The most useful line for an operator: why the peer's certificate was refused. */
        snprintf(buf, sizeof(buf), "TLS: certificate verify failed: %s",
                 X509_verify_cert_error_string(verify));
        return buf;
    }
    unsigned long e = bufferevent_get_openssl_error(bev);
    if (e == 0 || ERR_GET_LIB(e) == 0)
        return "TLS handshake failed";
    ERR_error_string_n(e, buf, sizeof(buf));
    return buf;
}

static int file_err(struct fg_errs *errs, const struct fg_mark *m, const char *what,
                    const char *path)
{
    fg_errs_add(errs, m->file, m->line, m->col, "%s \"%s\": %s", what, path, fg_tls_error());
    return -1;
}

static void harden(SSL_CTX *ctx)
{
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    static const unsigned char h11[] = "\x08http/1.1";
    if (SSL_select_next_proto((unsigned char **)out, outlen, h11, sizeof(h11) - 1, in, inlen) ==
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_OK;
    return SSL_TLSEXT_ERR_NOACK; /* a client offering only h2 still gets HTTP/1.1 */
}

SSL_CTX *fg_tls_server_ctx(const struct fg_config *cfg, const struct fg_listener_cfg *l,
                           struct fg_errs *errs)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    char *cert = fg_config_path(cfg, l->tls_cfg.cert_file);
    char *key = fg_config_path(cfg, l->tls_cfg.key_file);
    char *ca = l->tls_cfg.client_ca_file ? fg_config_path(cfg, l->tls_cfg.client_ca_file) : NULL;
    int rc = 0;
    harden(ctx);
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        rc = file_err(errs, &l->mark, "cannot load listener certFile", cert);
    else if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        rc = file_err(errs, &l->mark, "cannot load listener keyFile", key);
    else if (SSL_CTX_check_private_key(ctx) != 1)
        rc = file_err(errs, &l->mark, "listener keyFile does not match certFile", key);
    if (rc == 0 && ca) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
        if (names == NULL || SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
            rc = file_err(errs, &l->mark, "cannot load listener clientCAFile", ca);
            sk_X509_NAME_pop_free(names, X509_NAME_free);
        } else {
            SSL_CTX_set_client_CA_list(ctx, names);
            /* Ask for a certificate; bearer-token callers need not have one. */
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        }
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"frontgate", 9);
    free(cert);
    free(key);
    free(ca);
    if (rc != 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

SSL_CTX *fg_tls_client_ctx(const struct fg_config *cfg, const struct fg_shard_cfg *s,
                           struct fg_errs *errs)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    int rc = 0;
    harden(ctx);
    ERR_clear_error();
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (s->ca_file) {
        char *ca = fg_config_path(cfg, s->ca_file);
        if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
            rc = file_err(errs, &s->mark, "cannot load shard caFile", ca);
        free(ca);
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        rc = file_err(errs, &s->mark, "cannot load the system CA store for shard", s->name);
    }
    if (rc == 0 && s->client_cert_file) {
        char *cert = fg_config_path(cfg, s->client_cert_file);
        char *key = fg_config_path(cfg, s->client_key_file);
        if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
            rc = file_err(errs, &s->mark, "cannot load shard clientCertFile", cert);
        else if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
            rc = file_err(errs, &s->mark, "cannot load shard clientKeyFile", key);
        else if (SSL_CTX_check_private_key(ctx) != 1)
            rc = file_err(errs, &s->mark, "shard clientKeyFile does not match clientCertFile", key);
        free(cert);
        free(key);
    }
    static const unsigned char h11[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx, h11, sizeof(h11) - 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
    if (rc != 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}
