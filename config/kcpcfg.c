/*
 * kcpcfg.c - reading `index:` (today one source: fromKcp, the index fed live from kcp).
 */
#include "cfgread.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

static void read_root_shard(struct fg_cfgrd *r, struct fg_ynode *n, struct fg_kcp_cfg *k)
{
    const char *sec = "index.fromKcp.rootShard";
    struct fg_shard_cfg *s = &k->root;
    s->mark = fg_cfg_mark(r, n);
    if (fg_rd_expect(&r->rd, n, FG_Y_MAP, sec) != 0)
        return;
    const char *kube = fg_rd_str(&r->rd, n, "kubeconfig", 0, sec);
    const char *ctx = fg_rd_str(&r->rd, n, "context", 0, sec);
    if (kube) {
        static const char *const own[] = {"url", "caFile", "clientCertFile", "clientKeyFile",
                                          "tokenFile"};
        for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
            if (fg_yaml_get(n, own[i]))
                fg_rd_err(&r->rd, fg_yaml_get(n, own[i])->key,
                          "%s: %s cannot be combined with kubeconfig (which names the server "
                          "and the credential)",
                          sec, own[i]);
        fg_rd_unknown(&r->rd, n, sec, "kubeconfig, context");
        if (ctx)
            k->context = fg_strdup(ctx);
        fg_cfg_read_kubeconfig(r, fg_yaml_get(n, "kubeconfig")->val, k, kube, ctx);
        return;
    }
    if (ctx)
        fg_rd_err(&r->rd, fg_yaml_get(n, "context")->key, "%s: context needs a kubeconfig", sec);
    const char *url = fg_rd_str(&r->rd, n, "url", 1, sec);
    if (url) {
        const char *why = NULL;
        s->url = fg_strdup(url);
        if (fg_cfg_parse_url(url, s, &why) != 0)
            fg_rd_err(&r->rd, fg_yaml_get(n, "url")->val, "%s.url \"%s\" %s", sec, url, why);
    }
    s->ca_file = fg_cfg_file(r, n, "caFile", 0, sec, &s->ca_mark);
    s->client_cert_file = fg_cfg_file(r, n, "clientCertFile", 0, sec, &s->client_cert_mark);
    s->client_key_file = fg_cfg_file(r, n, "clientKeyFile", 0, sec, &s->client_key_mark);
    k->token_file = fg_cfg_file(r, n, "tokenFile", 0, sec, &k->token_mark);
    if (!s->client_cert_file != !s->client_key_file)
        fg_rd_err(&r->rd, n, "%s: clientCertFile and clientKeyFile go together", sec);
    if (s->url && !s->https && (s->ca_file || s->client_cert_file))
        fg_rd_err(&r->rd, n, "%s: caFile and clientCertFile need an https:// url", sec);
    if (s->client_cert_file == NULL && k->token_file == NULL)
        fg_rd_err(&r->rd, n,
                  "%s: needs a credential to list and watch kcp: tokenFile, or clientCertFile "
                  "and clientKeyFile",
                  sec);
    fg_rd_unknown(&r->rd, n, sec,
                  "url, caFile, clientCertFile, clientKeyFile, tokenFile (or kubeconfig, context)");
}

static void read_from_kcp(struct fg_cfgrd *r, struct fg_ynode *n)
{
    const char *sec = "index.fromKcp";
    if (fg_rd_expect(&r->rd, n, FG_Y_MAP, sec) != 0)
        return;
    struct fg_kcp_cfg *k = fg_calloc(1, sizeof(*k));
    r->cfg->kcp = k;
    k->mark = fg_cfg_mark(r, n);
    struct fg_ypair *p = fg_yaml_get(n, "rootShard");
    if (p == NULL || fg_yaml_is_null(p->val))
        fg_rd_err(&r->rd, n, "%s: rootShard is required (where kcp's Shards are listed)", sec);
    else
        read_root_shard(r, p->val, k);
    p = fg_yaml_get(n, "shards");
    if (p && !fg_yaml_is_null(p->val)) {
        fg_cfg_read_shard(r, p->val, &k->shards, 1);
    } else {
        k->shards.identity = FG_IDENTITY_REQUEST_HEADER;
        k->shards.protocol = FG_PROTO_HTTP1;
        k->shards.max_streams = 250;
    }
    fg_rd_duration(&r->rd, n, "watchTimeout", 300000, 1000, 3600000, &k->watch_timeout_ms);
    fg_rd_bool(&r->rd, n, "workspaceAuthentication", 0, &k->workspace_auth);
    fg_rd_unknown(&r->rd, n, sec, "rootShard, shards, watchTimeout, workspaceAuthentication");
}

void fg_cfg_read_index(struct fg_cfgrd *r, struct fg_ynode *root)
{
    struct fg_ypair *p = fg_yaml_get(root, "index");
    if (p == NULL || fg_yaml_is_null(p->val))
        return;
    if (fg_rd_expect(&r->rd, p->val, FG_Y_MAP, "index") != 0)
        return;
    struct fg_ypair *k = fg_yaml_get(p->val, "fromKcp");
    if (k && !fg_yaml_is_null(k->val))
        read_from_kcp(r, k->val);
    fg_rd_unknown(&r->rd, p->val, "index", "fromKcp");
}

void fg_kcp_cfg_free(struct fg_kcp_cfg *k)
{
    if (k == NULL)
        return;
    fg_cfg_shard_free(&k->root);
    fg_cfg_shard_free(&k->shards);
    free(k->token_file);
    if (k->token) {
        OPENSSL_cleanse(k->token, strlen(k->token));
        free(k->token);
    }
    free(k->kubeconfig);
    free(k->context);
    free(k);
}

static int same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

int fg_kcp_cfg_same_source(const struct fg_kcp_cfg *a, const struct fg_kcp_cfg *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return same_str(a->root.url, b->root.url) && same_str(a->root.ca_file, b->root.ca_file) &&
           same_str(a->kubeconfig, b->kubeconfig) && same_str(a->context, b->context) &&
           same_str(a->root.client_cert_file, b->root.client_cert_file) &&
           same_str(a->root.client_key_file, b->root.client_key_file) &&
           same_str(a->token_file, b->token_file) && a->watch_timeout_ms == b->watch_timeout_ms &&
           a->workspace_auth == b->workspace_auth;
}
