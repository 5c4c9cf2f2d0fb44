/*
 * kubecfg.c - index.fromKcp.rootShard.kubeconfig: the root shard's address and frontgate's
 * credential for it, taken from a kubeconfig (what kcp's front proxy takes as
 * --root-kubeconfig / --shards-kubeconfig), as client-go reads one: the context (`context:`,
 * or the file's current-context) names a cluster (server, certificate-authority[-data]) and a
 * user (client-certificate[-data] + client-key[-data], token, tokenFile). Relative file names
 * resolve against the kubeconfig's directory, as kubectl does. What frontgate cannot honour
 * (insecure-skip-tls-verify, tls-server-name, proxy-url, exec and auth-provider plugins, basic
 * auth, impersonation) is refused at the kubeconfig's file:line:column rather than ignored.
 */
#include "cfgread.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

/* The entry of list `key` (clusters, users, contexts) named name: its inner map `inner`. */
static struct fg_ynode *named(struct fg_rd *rd, struct fg_ynode *root, const char *key,
                              const char *inner, const char *name, struct fg_ynode *at)
{
    struct fg_ypair *p = fg_yaml_get(root, key);
    if (p && !fg_yaml_is_null(p->val) && fg_rd_expect(rd, p->val, FG_Y_SEQ, key) == 0) {
        for (size_t i = 0; i < p->val->nitems; i++) {
            struct fg_ynode *e = p->val->items[i];
            if (e->kind != FG_Y_MAP)
                continue;
            struct fg_ypair *nm = fg_yaml_get(e, "name");
            if (nm && nm->val->kind == FG_Y_SCALAR && strcmp(nm->val->str, name) == 0) {
                struct fg_ypair *in = fg_yaml_get(e, inner);
                if (in && fg_yaml_is_null(in->val)) {
                    fg_rd_err(rd, in->key, "%s \"%s\" has an empty %s", key, name, inner);
                    return NULL;
                }
                if (in && fg_rd_expect(rd, in->val, FG_Y_MAP, inner) == 0)
                    return in->val;
                if (in == NULL)
                    fg_rd_err(rd, e, "%s \"%s\" has no %s", key, name, inner);
                return NULL;
            }
        }
    }
    fg_rd_err(rd, at, "no %s entry named \"%s\"", key, name);
    return NULL;
}

/* base64 text (kubeconfig *-data) decoded, NUL-terminated; NULL with an error. */
static char *unbase64(struct fg_rd *rd, struct fg_ynode *map, const char *key)
{
    const char *s = fg_rd_str(rd, map, key, 0, "kubeconfig");
    if (s == NULL)
        return NULL;
    size_t n = 0, len = strlen(s);
    char *clean = fg_malloc(len + 1);
    for (size_t i = 0; i < len; i++)
        if (s[i] != '\n' && s[i] != '\r' && s[i] != ' ' && s[i] != '\t')
            clean[n++] = s[i];
    clean[n] = '\0';
    unsigned char *out = fg_malloc(n / 4 * 3 + 4);
    int got = n % 4 == 0 && n > 0 ? EVP_DecodeBlock(out, (unsigned char *)clean, (int)n) : -1;
    if (got >= 0) {
        got -= (n >= 1 && clean[n - 1] == '=') + (n >= 2 && clean[n - 2] == '=');
        out[got] = '\0';
    }
    OPENSSL_cleanse(clean, n);
    free(clean);
    if (got < 0 || memchr(out, '\0', (size_t)got) != NULL) {
        fg_rd_err(rd, fg_yaml_get(map, key)->val, "%s is not base64 of a PEM text", key);
        free(out);
        return NULL;
    }
    return (char *)out;
}

/* A file named in the kubeconfig, as a path the config's directory resolves (NULL: absent). */
static char *kube_file(struct fg_rd *rd, struct fg_ynode *map, const char *key, const char *kdir,
                       struct fg_mark *m)
{
    const char *s = fg_rd_str(rd, map, key, 0, "kubeconfig");
    if (s == NULL)
        return NULL;
    struct fg_ynode *v = fg_yaml_get(map, key)->val;
    *m = (struct fg_mark){rd->file, v->line, v->col};
    struct fg_buf b = {0};
    if (s[0] == '/' || kdir == NULL)
        fg_buf_adds(&b, s);
    else
        fg_buf_printf(&b, "%s/%s", kdir, s);
    return fg_buf_take(&b);
}

static void refuse(struct fg_rd *rd, struct fg_ynode *map, const char *key, const char *why)
{
    struct fg_ypair *p = fg_yaml_get(map, key);
    if (p && !fg_yaml_is_null(p->val))
        fg_rd_err(rd, p->key, "%s is not supported: %s", key, why);
}

static void read_cluster(struct fg_rd *rd, struct fg_ynode *c, const char *kdir,
                         struct fg_kcp_cfg *k)
{
    struct fg_shard_cfg *s = &k->root;
    const char *server = fg_rd_str(rd, c, "server", 1, "kubeconfig cluster");
    if (server) {
        /* a kcp kubeconfig's server often names a workspace (…/clusters/root): frontgate lists
         * and watches across clusters, from the shard's base URL */
        const char *cl = strstr(server, "/clusters/");
        size_t n = cl && strchr(cl + 10, '/') == NULL ? (size_t)(cl - server) : strlen(server);
        s->url = fg_strndup(server, n);
        const char *why = NULL;
        if (fg_cfg_parse_url(s->url, s, &why) != 0)
            fg_rd_err(rd, fg_yaml_get(c, "server")->val, "server \"%s\" %s", server, why);
    }
    int insecure = 0;
    fg_rd_bool(rd, c, "insecure-skip-tls-verify", 0, &insecure);
    if (insecure)
        fg_rd_err(rd, fg_yaml_get(c, "insecure-skip-tls-verify")->key,
                  "insecure-skip-tls-verify is not supported: frontgate always verifies kcp");
    refuse(rd, c, "proxy-url", "frontgate connects to kcp directly");
    s->ca_file = kube_file(rd, c, "certificate-authority", kdir, &s->ca_mark);
    s->ca_pem = unbase64(rd, c, "certificate-authority-data");
    if (s->ca_file && s->ca_pem)
        fg_rd_err(rd, c,
                  "certificate-authority and certificate-authority-data are mutually "
                  "exclusive");
    refuse(rd, c, "tls-server-name", "frontgate verifies the name in the server URL");
    if (s->url && !s->https && (s->ca_file || s->ca_pem))
        fg_rd_err(rd, c, "certificate-authority needs an https:// server");
}

static void read_user(struct fg_rd *rd, struct fg_ynode *u, const char *kdir, struct fg_kcp_cfg *k)
{
    struct fg_shard_cfg *s = &k->root;
    refuse(rd, u, "exec", "use a token, a tokenFile or a client certificate");
    refuse(rd, u, "auth-provider", "use a token, a tokenFile or a client certificate");
    refuse(rd, u, "username", "basic authentication; use a token or a client certificate");
    refuse(rd, u, "as", "impersonation toward kcp");
    s->client_cert_file = kube_file(rd, u, "client-certificate", kdir, &s->client_cert_mark);
    s->client_cert_pem = unbase64(rd, u, "client-certificate-data");
    s->client_key_file = kube_file(rd, u, "client-key", kdir, &s->client_key_mark);
    s->client_key_pem = unbase64(rd, u, "client-key-data");
    int cert = s->client_cert_file || s->client_cert_pem,
        key = s->client_key_file || s->client_key_pem;
    if ((s->client_cert_file && s->client_cert_pem) || (s->client_key_file && s->client_key_pem))
        fg_rd_err(rd, u, "a client certificate or key is given both as a file and as data");
    else if (cert != key)
        fg_rd_err(rd, u, "client-certificate and client-key go together");
    k->token_file = kube_file(rd, u, "tokenFile", kdir, &k->token_mark);
    const char *tok = fg_rd_str(rd, u, "token", 0, "kubeconfig user");
    if (tok)
        k->token = fg_strdup(tok);
    if (k->token && k->token_file)
        fg_rd_err(rd, u, "token and tokenFile are mutually exclusive");
    if (!cert && !k->token && !k->token_file)
        fg_rd_err(rd, u,
                  "the user needs a credential to list and watch kcp: a token, a tokenFile, or "
                  "client-certificate and client-key");
    if (s->url && !s->https && cert)
        fg_rd_err(rd, u, "a client certificate needs an https:// server");
}

void fg_cfg_read_kubeconfig(struct fg_cfgrd *r, struct fg_ynode *at, struct fg_kcp_cfg *k,
                            const char *file, const char *context)
{
    k->kubeconfig = fg_config_path(r->cfg, file);
    size_t len;
    char *text = fg_read_file(k->kubeconfig, &len);
    if (text == NULL) {
        fg_rd_err(&r->rd, at, "%s: cannot read index.fromKcp.rootShard.kubeconfig: %s",
                  k->kubeconfig, fg_file_reason(errno));
        return;
    }
    struct fg_ynode *root = fg_yaml_parse(k->kubeconfig, text, len, r->rd.errs);
    OPENSSL_cleanse(text, len); /* it may hold a token or a key */
    free(text);
    if (root == NULL)
        return;
    struct fg_rd rd = {r->rd.errs, k->kubeconfig, 1};
    /* relative names in it resolve against its directory (as written: the config's dir
     * resolves the result like any other name) */
    const char *slash = strrchr(file, '/');
    char *kdir = slash ? fg_strndup(file, (size_t)(slash - file) + (slash == file)) : NULL;
    if (fg_rd_expect(&rd, root, FG_Y_MAP, "a kubeconfig") != 0)
        goto out;
    const char *ctx = context ? context : fg_rd_str(&rd, root, "current-context", 0, "kubeconfig");
    if (ctx == NULL) {
        fg_rd_err(&rd, root, "no current-context (name one with index.fromKcp.rootShard.context)");
        goto out;
    }
    struct fg_ynode *c = named(&rd, root, "contexts", "context", ctx,
                               context ? root : fg_yaml_get(root, "current-context")->val);
    if (c == NULL)
        goto out;
    const char *cluster = fg_rd_str(&rd, c, "cluster", 1, "kubeconfig context");
    const char *user = fg_rd_str(&rd, c, "user", 1, "kubeconfig context");
    struct fg_ynode *cn =
        cluster ? named(&rd, root, "clusters", "cluster", cluster, fg_yaml_get(c, "cluster")->val)
                : NULL;
    struct fg_ynode *un =
        user ? named(&rd, root, "users", "user", user, fg_yaml_get(c, "user")->val) : NULL;
    if (cn)
        read_cluster(&rd, cn, kdir, k);
    if (un)
        read_user(&rd, un, kdir, k);
out:
    free(kdir);
    fg_yaml_free(root);
}
