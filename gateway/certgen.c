#include "certgen.h"

#include "../config/base.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <stdio.h>
#include <sys/stat.h>

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ex == NULL)
        return -1;
    int rc = X509_add_ext(cert, ex, -1) == 1 ? 0 : -1;
    X509_EXTENSION_free(ex);
    return rc;
}

static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, int ca)
{
    X509 *cert = X509_new();
    unsigned char serial[16];
    fg_random(serial, sizeof(serial));
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert));
    BN_free(bn);
    X509_set_version(cert, 2);
    X509_gmtime_adj(X509_getm_notBefore(cert), -300);
    X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
    X509_set_pubkey(cert, key);
    X509_NAME *name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(cert, issuer ? X509_get_subject_name(issuer) : name);
    X509 *iss = issuer ? issuer : cert;
    int rc = 0;
    if (ca) {
        rc |= add_ext(cert, iss, NID_basic_constraints, "critical,CA:TRUE");
        rc |= add_ext(cert, iss, NID_key_usage, "critical,keyCertSign,cRLSign");
        rc |= add_ext(cert, iss, NID_subject_key_identifier, "hash");
    } else {
        rc |= add_ext(cert, iss, NID_basic_constraints, "critical,CA:FALSE");
        rc |= add_ext(cert, iss, NID_key_usage, "critical,digitalSignature");
        rc |= add_ext(cert, iss, NID_ext_key_usage, "serverAuth");
        rc |= add_ext(cert, iss, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
        rc |= add_ext(cert, iss, NID_authority_key_identifier, "keyid");
    }
    if (rc != 0 || X509_sign(cert, issuer_key ? issuer_key : key, EVP_sha256()) == 0) {
        X509_free(cert);
        return NULL;
    }
    return cert;
}

static int write_pem(const char *dir, const char *name, X509 *cert, EVP_PKEY *key)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    chmod(path, 0600);
    int ok =
        cert ? PEM_write_X509(f, cert) : PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

int fg_certgen_demo(const char *dir)
{
    EVP_PKEY *ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *ca = NULL, *leaf = NULL;
    int rc = -1;
    if (ca_key == NULL || key == NULL)
        goto out;
    ca = make_cert(ca_key, "frontgate demo CA", NULL, NULL, 1);
    leaf = ca ? make_cert(key, "127.0.0.1", ca, ca_key, 0) : NULL;
    if (leaf == NULL)
        goto out;
    if (write_pem(dir, "ca.crt", ca, NULL) != 0 || write_pem(dir, "tls.crt", leaf, NULL) != 0 ||
        write_pem(dir, "tls.key", NULL, key) != 0)
        goto out;
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "frontgate demo: cannot create the demo certificates\n");
    X509_free(ca);
    X509_free(leaf);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(key);
    return rc;
}
