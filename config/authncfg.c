/*
 * authncfg.c - reading authenticators, `authentication` and `workspaceTypes`.
 */
#include "config.h"

#include "cfgread.h"
#include "jwtcfg.h"
#include "reader.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* kcp's front-proxy defaults for --authentication-drop-groups. */
static const char *const default_drop_groups[] = {
    "system:masters",
    "system:kcp:logical-cluster-admin",
    "system:kcp:initializer:*",
    "system:kcp:terminator:*",
};

/* ---- authenticators ----------------------------------------------------- */

static void read_static_keys(struct fg_cfgrd *r, struct fg_ynode *n, struct fg_authn_cfg *a)
{
    if (fg_rd_expect(&r->rd, n, FG_Y_MAP, "staticKeys") != 0)
        return;
    a->kind = FG_AUTHN_STATIC_KEYS;
    a->static_keys.file = fg_cfg_file(r, n, "file", 1, "staticKeys", &a->static_keys.file_mark);
    a->static_keys.username_prefix =
        fg_rd_dup(fg_rd_str(&r->rd, n, "usernamePrefix", 0, "staticKeys"));
    fg_rd_unknown(&r->rd, n, "staticKeys", "file, usernamePrefix");
}

static void read_jwt(struct fg_cfgrd *r, struct fg_ynode *n, struct fg_authn_cfg *a)
{
    a->kind = FG_AUTHN_JWT;
    struct fg_jwt_cfg *j = fg_jwtcfg_read(&r->rd, n, r->cfg->dir);
    if (j) {
        a->jwts = fg_calloc(1, sizeof(*a->jwts));
        a->jwts[a->njwts++] = j;
    }
}

char **fg_cfg_str_list(struct fg_cfgrd *r, struct fg_ynode *n, const char *key, const char *section,
                       size_t *count)
{
    struct fg_ynode **items;
    int present;
    char **out = NULL;
    *count = 0;
    if (fg_rd_strlist(&r->rd, n, key, section, &items, count, &present) != 0 || !present)
        return NULL;
    out = fg_calloc(*count, sizeof(char *));
    for (size_t i = 0; i < *count; i++)
        out[i] = fg_strdup(items[i]->str);
    return out;
}

static void read_token_review(struct fg_cfgrd *r, struct fg_ynode *n, struct fg_authn_cfg *a)
{
    const char *s = "tokenReview";
    a->kind = FG_AUTHN_TOKEN_REVIEW;
    if (fg_rd_expect(&r->rd, n, FG_Y_MAP, s) != 0)
        return;
    struct fg_tokenreview_cfg *t = fg_calloc(1, sizeof(*t));
    a->token_review = t;
    t->url = fg_rd_dup(fg_rd_str(&r->rd, n, "url", 1, s));
    if (t->url) {
        struct fg_shard_cfg probe = {0};
        const char *why = NULL;
        if (fg_cfg_parse_url(t->url, &probe, &why) != 0)
            fg_rd_err(&r->rd, fg_yaml_get(n, "url")->val, "tokenReview url \"%s\" %s", t->url, why);
        free(probe.host);
        free(probe.hostport);
        free(probe.base_path);
    }
    t->ca_file = fg_cfg_file(r, n, "caFile", 0, s, &t->ca_mark);
    t->token_file = fg_cfg_file(r, n, "tokenFile", 0, s, &t->token_mark);
    t->client_cert_file = fg_cfg_file(r, n, "clientCertFile", 0, s, &t->client_cert_mark);
    t->client_key_file = fg_cfg_file(r, n, "clientKeyFile", 0, s, &t->client_key_mark);
    if (!t->client_cert_file != !t->client_key_file)
        fg_rd_err(&r->rd, n, "tokenReview: clientCertFile and clientKeyFile go together");
    if (t->token_file && t->client_cert_file)
        fg_rd_err(&r->rd, n,
                  "tokenReview: use tokenFile or clientCertFile/clientKeyFile, not both");
    t->audiences = fg_cfg_str_list(r, n, "audiences", s, &t->naudiences);
    t->issuers = fg_cfg_str_list(r, n, "issuers", s, &t->nissuers);
    fg_rd_duration(&r->rd, n, "cacheTTL", 120000, 0, 86400000, &t->cache_ttl_ms);
    fg_rd_duration(&r->rd, n, "negativeCacheTTL", 10000, 0, 3600000, &t->negative_cache_ttl_ms);
    fg_rd_duration(&r->rd, n, "timeout", 5000, 100, 60000, &t->timeout_ms);
    fg_rd_unknown(&r->rd, n, s,
                  "url, caFile, tokenFile, clientCertFile, clientKeyFile, audiences, issuers, "
                  "cacheTTL, negativeCacheTTL, timeout");
}

static void read_authn_file(struct fg_cfgrd *r, struct fg_ynode *n, struct fg_authn_cfg *a)
{
    a->kind = FG_AUTHN_JWT;
    if (n->kind != FG_Y_SCALAR || n->len == 0) {
        fg_rd_err(&r->rd, n, "authenticationConfigurationFile must be a file name");
        return;
    }
    char *path = fg_config_path(r->cfg, n->str);
    if (fg_file_check(path) != 0)
        fg_rd_err(&r->rd, n, "%s: cannot read authenticationConfigurationFile: %s", path,
                  fg_file_reason(errno));
    else if (fg_jwtcfg_read_file(path, r->rd.errs, &a->jwts, &a->njwts) == 0 && a->njwts == 0)
        fg_rd_err(&r->rd, n, "%s has no jwt authenticators", path);
    free(path);
}

/* Issuer and discovery URLs are unique across every jwt entry (kube's rule). */
void fg_cfg_check_issuers(struct fg_cfgrd *r)
{
    struct fg_config *cfg = r->cfg;
    for (size_t a = 0; a < cfg->nauthns; a++) {
        for (size_t i = 0; i < cfg->authns[a].njwts; i++) {
            const struct fg_jwt_cfg *x = cfg->authns[a].jwts[i];
            for (size_t b = a; b < cfg->nauthns; b++) {
                for (size_t k = (b == a ? i + 1 : 0); k < cfg->authns[b].njwts; k++) {
                    const struct fg_jwt_cfg *y = cfg->authns[b].jwts[k];
                    const struct fg_mark *m = &cfg->authns[b].mark;
                    if (strcmp(x->issuer_url, y->issuer_url) == 0)
                        fg_errs_add(r->rd.errs, m->file, m->line, m->col,
                                    "jwt issuer \"%s\" is configured twice (authenticators "
                                    "\"%s\" and \"%s\")",
                                    x->issuer_url, cfg->authns[a].name, cfg->authns[b].name);
                    if (x->discovery_url && y->discovery_url &&
                        strcmp(x->discovery_url, y->discovery_url) == 0)
                        fg_errs_add(r->rd.errs, m->file, m->line, m->col,
                                    "jwt discoveryURL \"%s\" is configured twice",
                                    x->discovery_url);
                }
            }
        }
    }
}

void fg_cfg_read_authns(struct fg_cfgrd *r, struct fg_ynode *root)
{
    struct fg_ypair *p = fg_yaml_get(root, "authenticators");
    if (p == NULL || fg_yaml_is_null(p->val))
        return;
    if (fg_rd_expect(&r->rd, p->val, FG_Y_SEQ, "authenticators") != 0)
        return;
    r->cfg->authns = fg_calloc(p->val->nitems, sizeof(struct fg_authn_cfg));
    for (size_t i = 0; i < p->val->nitems; i++) {
        struct fg_ynode *n = p->val->items[i];
        struct fg_authn_cfg *a = &r->cfg->authns[r->cfg->nauthns++];
        a->mark = fg_cfg_mark(r, n);
        if (fg_rd_expect(&r->rd, n, FG_Y_MAP, "an authenticator") != 0)
            continue;
        a->name = fg_rd_dup(fg_rd_str(&r->rd, n, "name", 1, "authenticator"));
        int kinds = 0;
        struct fg_ypair *sk = fg_yaml_get(n, "staticKeys");
        if (sk) {
            kinds++;
            read_static_keys(r, sk->val, a);
        }
        struct fg_ypair *jwt = fg_yaml_get(n, "jwt");
        if (jwt) {
            kinds++;
            read_jwt(r, jwt->val, a);
        }
        struct fg_ypair *tr = fg_yaml_get(n, "tokenReview");
        if (tr) {
            kinds++;
            read_token_review(r, tr->val, a);
        }
        struct fg_ypair *acf = fg_yaml_get(n, "authenticationConfigurationFile");
        if (acf) {
            kinds++;
            read_authn_file(r, acf->val, a);
        }
        if (kinds != 1)
            fg_rd_err(&r->rd, n,
                      "authenticator \"%s\" needs exactly one of: staticKeys, jwt, "
                      "authenticationConfigurationFile, tokenReview",
                      a->name ? a->name : "?");
        fg_rd_bool(&r->rd, n, "requireReady", 1, &a->require_ready);
        fg_rd_unknown(&r->rd, n, "authenticator",
                      "name, staticKeys, jwt, authenticationConfigurationFile, tokenReview, "
                      "requireReady");
        for (size_t j = 0; a->name && j + 1 < r->cfg->nauthns; j++)
            if (r->cfg->authns[j].name && strcmp(r->cfg->authns[j].name, a->name) == 0)
                fg_rd_err(&r->rd, n, "authenticator name \"%s\" is used twice", a->name);
    }
}

void fg_cfg_read_authentication(struct fg_cfgrd *r, struct fg_ynode *root)
{
    struct fg_config *cfg = r->cfg;
    struct fg_ypair *p = fg_yaml_get(root, "authentication");
    struct fg_ynode *n = (p && !fg_yaml_is_null(p->val)) ? p->val : NULL;
    if (n && fg_rd_expect(&r->rd, n, FG_Y_MAP, "authentication") != 0)
        n = NULL;
    struct fg_ynode **items;
    size_t count;
    int present = 0;
    if (n && fg_rd_strlist(&r->rd, n, "global", "authentication", &items, &count, &present) == 0) {
        cfg->global = fg_calloc(count, sizeof(uint32_t));
        for (size_t i = 0; i < count; i++) {
            if (fg_cfg_authn_by_name(cfg, items[i]->str, &cfg->global[cfg->nglobal]) != 0) {
                fg_rd_err(&r->rd, items[i],
                          "authentication.global names unknown authenticator \"%s\"",
                          items[i]->str);
                continue;
            }
            for (size_t j = 0; j < cfg->nglobal; j++)
                if (cfg->global[j] == cfg->global[cfg->nglobal])
                    fg_rd_err(&r->rd, items[i], "authenticator \"%s\" is listed twice",
                              items[i]->str);
            cfg->nglobal++;
        }
    }
    present = 0;
    if (n)
        fg_rd_strlist(&r->rd, n, "dropGroups", "authentication", &items, &count, &present);
    if (present) {
        cfg->drop_groups = fg_calloc(count, sizeof(char *));
        for (size_t i = 0; i < count; i++)
            cfg->drop_groups[cfg->ndrop_groups++] = fg_strdup(items[i]->str);
    } else {
        size_t nd = FG_ARRAY_LEN(default_drop_groups);
        cfg->drop_groups = fg_calloc(nd, sizeof(char *));
        for (size_t i = 0; i < nd; i++)
            cfg->drop_groups[cfg->ndrop_groups++] = fg_strdup(default_drop_groups[i]);
    }
    uint64_t v;
    fg_rd_duration(&r->rd, n, "tokenCacheTTL", 10000, 0, 3600000, &cfg->token_cache_ttl_ms);
    fg_rd_size(&r->rd, n, "tokenCacheSize", 100000, 0, 10000000, &v);
    cfg->token_cache_size = (uint32_t)v;
    if (n)
        fg_rd_unknown(&r->rd, n, "authentication",
                      "global, dropGroups, tokenCacheTTL, tokenCacheSize");
}

void fg_cfg_read_wstypes(struct fg_cfgrd *r, struct fg_ynode *root)
{
    struct fg_ypair *p = fg_yaml_get(root, "workspaceTypes");
    if (p == NULL || fg_yaml_is_null(p->val))
        return;
    if (fg_rd_expect(&r->rd, p->val, FG_Y_SEQ, "workspaceTypes") != 0)
        return;
    r->cfg->wstypes = fg_calloc(p->val->nitems, sizeof(struct fg_wstype_cfg));
    for (size_t i = 0; i < p->val->nitems; i++) {
        struct fg_ynode *n = p->val->items[i];
        struct fg_wstype_cfg *t = &r->cfg->wstypes[r->cfg->nwstypes++];
        t->mark = fg_cfg_mark(r, n);
        if (fg_rd_expect(&r->rd, n, FG_Y_MAP, "a workspace type") != 0)
            continue;
        t->name = fg_rd_dup(fg_rd_str(&r->rd, n, "name", 1, "workspaceType"));
        if (t->name && !fg_index_valid_name(t->name, strlen(t->name)))
            fg_rd_err(&r->rd, fg_yaml_get(n, "name")->val,
                      "workspace type name \"%s\" must be a kcp path such as root:org:with-oidc",
                      t->name);
        struct fg_ynode **items;
        size_t count;
        int present;
        if (fg_rd_strlist(&r->rd, n, "authenticators", "workspaceType", &items, &count, &present) ==
            0) {
            t->authns = fg_calloc(count, sizeof(uint32_t));
            for (size_t j = 0; j < count; j++) {
                if (fg_cfg_authn_by_name(r->cfg, items[j]->str, &t->authns[t->nauthns]) != 0)
                    fg_rd_err(&r->rd, items[j],
                              "workspace type \"%s\" names unknown authenticator \"%s\"",
                              t->name ? t->name : "?", items[j]->str);
                else
                    t->nauthns++;
            }
        }
        fg_rd_unknown(&r->rd, n, "workspaceType", "name, authenticators");
        for (size_t j = 0; t->name && j + 1 < r->cfg->nwstypes; j++)
            if (r->cfg->wstypes[j].name && strcmp(r->cfg->wstypes[j].name, t->name) == 0)
                fg_rd_err(&r->rd, n, "workspace type \"%s\" is declared twice", t->name);
    }
}

void fg_cfg_tokenreview_free(struct fg_tokenreview_cfg *t)
{
    if (t == NULL)
        return;
    free(t->url);
    free(t->ca_file);
    free(t->token_file);
    free(t->client_cert_file);
    free(t->client_key_file);
    fg_cfg_free_strs(t->audiences, t->naudiences);
    fg_cfg_free_strs(t->issuers, t->nissuers);
    free(t);
}
