#include "tls.h"

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

void fg_tls_init(void)
{
    OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS | OPENSSL_INIT_LOAD_CRYPTO_STRINGS, NULL);
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

enum file_kind { CERT, KEY, CA };

/*
 * What OpenSSL's queued errors mean for a file of `kind`, in words (its own text keeps the
 * library's codes: "error:0480006C:PEM routines::no start line"); clears the queue.
 */
static const char *ssl_reason(enum file_kind kind)
{
    static __thread char buf[160];
    unsigned long e, last = 0;
    int not_pem = 0;
    while ((e = ERR_get_error()) != 0) {
        int lib = ERR_GET_LIB(e), reason = ERR_GET_REASON(e);
        if ((lib == ERR_LIB_PEM && reason == PEM_R_NO_START_LINE) ||
            (lib == ERR_LIB_SSL && reason == ERR_R_PEM_LIB) ||
            (lib == ERR_LIB_X509 && reason == X509_R_NO_CERTIFICATE_OR_CRL_FOUND) ||
            lib == ERR_LIB_OSSL_DECODER)
            not_pem = 1;
        if (last == 0)
            last = e;
    }
    if (not_pem || last == 0)
        return kind == KEY ? "not a PEM private key" : "not a PEM certificate";
    const char *r = ERR_reason_error_string(last);
    snprintf(buf, sizeof(buf), "%s", r ? r : "not usable");
    return buf;
}

/* 0 when path can be opened; else the OS reason at m. */
static int readable(struct fg_errs *errs, const struct fg_mark *m, const char *what,
                    const char *path)
{
    if (fg_file_check(path) == 0)
        return 0;
    fg_cfg_file_err(errs, m, path, what, fg_file_reason(errno));
    return -1;
}

/* A certificate chain and its key into ctx, checked to match; 0, or -1 with the error at the
 * mark of the file at fault (cert_key, key_key: their config keys, for the message). */
static int load_pair(SSL_CTX *ctx, const char *cert_key, const char *cert, const struct fg_mark *cm,
                     const char *key_key, const char *key, const struct fg_mark *km,
                     struct fg_errs *errs)
{
    struct fg_buf what = {0};
    int rc = -1;
    fg_buf_printf(&what, "cannot load %s", cert_key);
    if (readable(errs, cm, what.data, cert) != 0)
        goto out;
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        fg_cfg_file_err(errs, cm, cert, what.data, ssl_reason(CERT));
        goto out;
    }
    fg_buf_reset(&what);
    fg_buf_printf(&what, "cannot load %s", key_key);
    if (readable(errs, km, what.data, key) != 0)
        goto out;
    ERR_clear_error();
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        unsigned long e = ERR_peek_last_error();
        /* OpenSSL reads the key, then compares it with the certificate already loaded. */
        if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH) {
            ERR_clear_error();
            struct fg_buf why = {0};
            fg_buf_printf(&why, "key does not match certificate \"%s\"", cert);
            fg_cfg_file_err(errs, km, key, what.data, why.data);
            fg_buf_free(&why);
        } else {
            fg_cfg_file_err(errs, km, key, what.data, ssl_reason(KEY));
        }
        goto out;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        struct fg_buf why = {0};
        fg_buf_printf(&why, "key does not match certificate \"%s\"", cert);
        fg_cfg_file_err(errs, km, key, what.data, why.data);
        fg_buf_free(&why);
        goto out;
    }
    rc = 0;
out:
    fg_buf_free(&what);
    return rc;
}

static void harden(SSL_CTX *ctx)
{
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
}

/* h2 when the listener allows it and the client offers it, else http/1.1 (our preference). */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    static const unsigned char both[] = "\x02h2\x08http/1.1", h11[] = "\x08http/1.1";
    const unsigned char *ours = arg ? both : h11;
    unsigned int ourlen = arg ? sizeof(both) - 1 : sizeof(h11) - 1;
    if (SSL_select_next_proto((unsigned char **)out, outlen, ours, ourlen, in, inlen) ==
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_OK;
    return SSL_TLSEXT_ERR_NOACK; /* a client offering neither still gets HTTP/1.1 */
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
    const struct fg_tls_cfg *t = &l->tls_cfg;
    rc = load_pair(ctx, "listener certFile", cert, &t->cert_mark, "listener keyFile", key,
                   &t->key_mark, errs);
    if (rc == 0 && ca) {
        ERR_clear_error();
        STACK_OF(X509_NAME) *names = NULL;
        if ((rc = readable(errs, &t->client_ca_mark, "cannot load listener clientCAFile", ca)) ==
            0) {
            names = SSL_load_client_CA_file(ca);
            if (names == NULL || SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
                fg_cfg_file_err(errs, &t->client_ca_mark, ca, "cannot load listener clientCAFile",
                                ssl_reason(CA));
                sk_X509_NAME_pop_free(names, X509_NAME_free);
                rc = -1;
            }
        }
        if (rc == 0) {
            SSL_CTX_set_client_CA_list(ctx, names);
            /* Ask for a certificate; bearer-token callers need not have one. */
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        }
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, l->http2 ? (void *)1 : NULL);
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

/* PEM text (a kubeconfig's *-data) into ctx: CA certificates, or a chain and its key. */
static int load_pem_cas(SSL_CTX *ctx, const char *pem)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    BIO *bio = BIO_new_mem_buf(pem, -1);
    STACK_OF(X509_INFO) *infos = PEM_X509_INFO_read_bio(bio, NULL, NULL, NULL);
    int n = 0;
    for (int i = 0; infos && i < sk_X509_INFO_num(infos); i++) {
        X509_INFO *info = sk_X509_INFO_value(infos, i);
        if (info->x509 && X509_STORE_add_cert(store, info->x509) == 1)
            n++;
    }
    sk_X509_INFO_pop_free(infos, X509_INFO_free);
    BIO_free(bio);
    return n > 0 ? 0 : -1;
}

static int load_pem_pair(SSL_CTX *ctx, const char *cert_pem, const char *key_pem)
{
    int rc = -1;
    BIO *bio = BIO_new_mem_buf(cert_pem, -1);
    X509 *leaf = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    if (leaf == NULL || SSL_CTX_use_certificate(ctx, leaf) != 1)
        goto out;
    X509 *extra;
    while ((extra = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
        if (SSL_CTX_add0_chain_cert(ctx, extra) != 1) {
            X509_free(extra);
            goto out;
        }
    ERR_clear_error(); /* the end of the chain */
    BIO *kb = BIO_new_mem_buf(key_pem, -1);
    EVP_PKEY *key = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
    BIO_free(kb);
    if (key && SSL_CTX_use_PrivateKey(ctx, key) == 1 && SSL_CTX_check_private_key(ctx) == 1)
        rc = 0;
    EVP_PKEY_free(key);
out:
    X509_free(leaf);
    BIO_free(bio);
    return rc;
}

SSL_CTX *fg_tls_client_ctx(const struct fg_config *cfg, const struct fg_shard_cfg *s,
                           struct fg_errs *errs)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    int rc = 0;
    harden(ctx);
    ERR_clear_error();
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (s->ca_pem) {
        if (load_pem_cas(ctx, s->ca_pem) != 0) {
            fg_errs_add(errs, s->mark.file, s->mark.line, s->mark.col,
                        "certificate-authority-data holds no PEM certificate: %s", ssl_reason(CA));
            rc = -1;
        }
    } else if (s->ca_file) {
        char *ca = fg_config_path(cfg, s->ca_file);
        rc = readable(errs, &s->ca_mark, "cannot load shard caFile", ca);
        if (rc == 0 && SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
            fg_cfg_file_err(errs, &s->ca_mark, ca, "cannot load shard caFile", ssl_reason(CA));
            rc = -1;
        }
        free(ca);
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        fg_errs_add(errs, s->mark.file, s->mark.line, s->mark.col,
                    "shard \"%s\": cannot load the system CA store: %s", s->name, ssl_reason(CA));
        rc = -1;
    }
    if (rc == 0 && s->client_cert_pem) {
        ERR_clear_error();
        if (load_pem_pair(ctx, s->client_cert_pem, s->client_key_pem) != 0) {
            fg_errs_add(errs, s->mark.file, s->mark.line, s->mark.col,
                        "client-certificate-data and client-key-data do not load as a "
                        "certificate and its key: %s",
                        ssl_reason(KEY));
            rc = -1;
        }
    } else if (rc == 0 && s->client_cert_file) {
        char *cert = fg_config_path(cfg, s->client_cert_file);
        char *key = fg_config_path(cfg, s->client_key_file);
        rc = load_pair(ctx, "shard clientCertFile", cert, &s->client_cert_mark,
                       "shard clientKeyFile", key, &s->client_key_mark, errs);
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
