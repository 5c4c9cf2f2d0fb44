#include "config.h"

#include "base.h"
#include "jwtcfg.h"
#include "cfgread.h"
#include "reader.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct fg_mark fg_cfg_mark(struct fg_cfgrd *r, const struct fg_ynode *n)
{
    return (struct fg_mark){r->cfg->file, n->line, n->col};
}

char *fg_cfg_file(struct fg_cfgrd *r, struct fg_ynode *map, const char *key, int required,
                  const char *section, struct fg_mark *m)
{
    const char *s = fg_rd_str(&r->rd, map, key, required, section);
    if (s != NULL)
        *m = fg_cfg_mark(r, fg_yaml_get(map, key)->val);
    return fg_rd_dup(s);
}

/* ---- listeners ---------------------------------------------------------- */

static int split_hostport(const char *addr, char **host, char **port)
{
    const char *colon;
    *host = *port = NULL;
    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        if (end == NULL || end == addr + 1 || end[1] != ':')
            return -1;
        *host = fg_strndup(addr + 1, (size_t)(end - addr - 1));
        colon = end + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL)
            return -1;
        if (memchr(addr, ':', (size_t)(colon - addr)) != NULL)
            return -1; /* bare IPv6 needs brackets */
        if (colon > addr)
            *host = fg_strndup(addr, (size_t)(colon - addr));
    }
    uint64_t p;
    if (fg_parse_u64(colon + 1, strlen(colon + 1), 65535, &p) != 0) { /* 0: the kernel picks */
        free(*host);
        *host = NULL;
        return -1;
    }
    *port = fg_strdup(colon + 1);
    if (*host && (strcmp(*host, "*") == 0 || strcmp(*host, "0.0.0.0") == 0)) {
        if (strcmp(*host, "*") == 0) {
            free(*host);
            *host = NULL;
        }
    }
    return 0;
}

static void read_tls(struct fg_cfgrd *r, struct fg_ynode *n, struct fg_tls_cfg *t,
                     const char *section)
{
    if (fg_rd_expect(&r->rd, n, FG_Y_MAP, section) != 0)
        return;
    t->cert_file = fg_cfg_file(r, n, "certFile", 1, section, &t->cert_mark);
    t->key_file = fg_cfg_file(r, n, "keyFile", 1, section, &t->key_mark);
    t->client_ca_file = fg_cfg_file(r, n, "clientCAFile", 0, section, &t->client_ca_mark);
    fg_rd_unknown(&r->rd, n, section, "certFile, keyFile, clientCAFile");
}

static void read_listeners(struct fg_cfgrd *r, struct fg_ynode *root)
{
    struct fg_ypair *p = fg_yaml_get(root, "listeners");
    if (p == NULL) {
        fg_rd_err(&r->rd, root,
                  "\"listeners\" is required (for example: [{address: 127.0.0.1:8080}])");
        return;
    }
    if (fg_rd_expect(&r->rd, p->val, FG_Y_SEQ, "listeners") != 0)
        return;
    if (p->val->nitems == 0)
        fg_rd_err(&r->rd, p->val, "listeners must not be empty");
    r->cfg->listeners = fg_calloc(p->val->nitems, sizeof(struct fg_listener_cfg));
    for (size_t i = 0; i < p->val->nitems; i++) {
        struct fg_ynode *n = p->val->items[i];
        struct fg_listener_cfg *l = &r->cfg->listeners[r->cfg->nlisteners++];
        l->mark = fg_cfg_mark(r, n);
        if (fg_rd_expect(&r->rd, n, FG_Y_MAP, "a listener") != 0)
            continue;
        const char *addr = fg_rd_str(&r->rd, n, "address", 1, "listener");
        if (addr) {
            l->address = fg_strdup(addr);
            if (split_hostport(addr, &l->host, &l->port) != 0)
                fg_rd_err(&r->rd, fg_yaml_get(n, "address")->val,
                          "listener address \"%s\" must be host:port, [ipv6]:port or :port", addr);
        }
        struct fg_ypair *tls = fg_yaml_get(n, "tls");
        if (tls && !fg_yaml_is_null(tls->val)) {
            l->tls = 1;
            read_tls(r, tls->val, &l->tls_cfg, "listener.tls");
        }
        fg_rd_bool(&r->rd, n, "http2", l->tls, &l->http2);
        fg_rd_unknown(&r->rd, n, "listener", "address, tls, http2");
        int any_port = l->port && strcmp(l->port, "0") == 0;
        for (size_t j = 0; l->address && !any_port && j + 1 < r->cfg->nlisteners; j++)
            if (r->cfg->listeners[j].address &&
                strcmp(r->cfg->listeners[j].address, l->address) == 0)
                fg_rd_err(&r->rd, n, "listener address \"%s\" is listed twice", l->address);
    }
}

/* ---- shards ------------------------------------------------------------- */

int fg_cfg_parse_url(const char *url, struct fg_shard_cfg *s, const char **why)
{
    const char *rest;
    if (strncmp(url, "https://", 8) == 0) {
        s->https = 1;
        rest = url + 8;
    } else if (strncmp(url, "http://", 7) == 0) {
        rest = url + 7;
    } else {
        *why = "must start with http:// or https://";
        return -1;
    }
    size_t auth_len = strcspn(rest, "/?#");
    const char *path = rest + auth_len;
    if (*path == '?' || *path == '#' || strpbrk(path, "?#") != NULL) {
        *why = "must not have a query or fragment";
        return -1;
    }
    if (memchr(rest, '@', auth_len) != NULL) {
        *why = "must not contain user information";
        return -1;
    }
    if (auth_len == 0) {
        *why = "has no host";
        return -1;
    }
    s->hostport = fg_strndup(rest, auth_len);
    const char *portstr = NULL;
    if (rest[0] == '[') {
        const char *end = memchr(rest, ']', auth_len);
        if (end == NULL) {
            *why = "has an unterminated IPv6 address";
            return -1;
        }
        s->host = fg_strndup(rest + 1, (size_t)(end - rest - 1));
        if (end + 1 < rest + auth_len) {
            if (end[1] != ':') {
                *why = "has junk after the IPv6 address";
                return -1;
            }
            portstr = end + 2;
        }
    } else {
        const char *colon = memchr(rest, ':', auth_len);
        s->host = fg_strndup(rest, colon ? (size_t)(colon - rest) : auth_len);
        if (colon)
            portstr = colon + 1;
    }
    if (s->host[0] == '\0') {
        *why = "has no host";
        return -1;
    }
    s->port = s->https ? 443 : 80;
    if (portstr) {
        uint64_t p;
        if (fg_parse_u64(portstr, (size_t)(rest + auth_len - portstr), 65535, &p) != 0 || p == 0) {
            *why = "has an invalid port";
            return -1;
        }
        s->port = (uint16_t)p;
    }
    size_t plen = strlen(path);
    while (plen > 0 && path[plen - 1] == '/')
        plen--;
    s->base_path = fg_strndup(path, plen);
    return 0;
}

static void read_mint(struct fg_cfgrd *r, struct fg_ynode *n, struct fg_shard_cfg *s)
{
    const char *sec = "mint";
    if (fg_rd_expect(&r->rd, n, FG_Y_MAP, sec) != 0)
        return;
    struct fg_mint_cfg *m = fg_calloc(1, sizeof(*m));
    s->mint = m;
    m->issuer = fg_rd_dup(fg_rd_str(&r->rd, n, "issuer", 1, sec));
    if (m->issuer) {
        struct fg_shard_cfg probe = {0};
        const char *why = NULL;
        if (fg_cfg_parse_url(m->issuer, &probe, &why) != 0)
            fg_rd_err(&r->rd, fg_yaml_get(n, "issuer")->val, "mint.issuer \"%s\" %s", m->issuer,
                      why);
        free(probe.host);
        free(probe.hostport);
        free(probe.base_path);
    }
    m->key_file = fg_cfg_file(r, n, "keyFile", 1, sec, &m->key_mark);
    m->audience = fg_rd_dup(fg_rd_str(&r->rd, n, "audience", 1, sec));
    uint64_t ms;
    fg_rd_duration(&r->rd, n, "ttl", 300000, 10000, 86400000, &ms);
    m->ttl_s = ms / 1000;
    fg_rd_unknown(&r->rd, n, sec, "issuer, keyFile, audience, ttl");
}

/*
 * One shard's keys into s. A template (index.fromKcp.shards: how every shard kcp names is
 * proxied) has no name and no url: those come from the Shard object.
 */
void fg_cfg_read_shard(struct fg_cfgrd *r, struct fg_ynode *n, struct fg_shard_cfg *s, int tmpl)
{
    const char *sec = tmpl ? "index.fromKcp.shards" : "shard";
    s->mark = fg_cfg_mark(r, n);
    if (fg_rd_expect(&r->rd, n, FG_Y_MAP, tmpl ? sec : "a shard") != 0)
        return;
    if (!tmpl) {
        s->name = fg_rd_dup(fg_rd_str(&r->rd, n, "name", 1, sec));
        const char *url = fg_rd_str(&r->rd, n, "url", 1, sec);
        if (url) {
            const char *why = NULL;
            s->url = fg_strdup(url);
            if (fg_cfg_parse_url(url, s, &why) != 0)
                fg_rd_err(&r->rd, fg_yaml_get(n, "url")->val, "shard url \"%s\" %s", url, why);
        }
    }
    const char *shown = tmpl ? sec : s->name ? s->name : "?";
    s->ca_file = fg_cfg_file(r, n, "caFile", 0, sec, &s->ca_mark);
    s->client_cert_file = fg_cfg_file(r, n, "clientCertFile", 0, sec, &s->client_cert_mark);
    s->client_key_file = fg_cfg_file(r, n, "clientKeyFile", 0, sec, &s->client_key_mark);
    s->server_name = fg_rd_dup(fg_rd_str(&r->rd, n, "serverName", 0, sec));
    if (!s->client_cert_file != !s->client_key_file)
        fg_rd_err(&r->rd, n,
                  tmpl ? "%s: clientCertFile and clientKeyFile go together"
                       : "shard \"%s\": clientCertFile and clientKeyFile go together",
                  shown);
    if (!tmpl && !s->https && (s->ca_file || s->client_cert_file || s->server_name))
        fg_rd_err(&r->rd, n,
                  "shard \"%s\": caFile, clientCertFile and serverName need an https:// url",
                  shown);
    if (tmpl && s->server_name)
        fg_rd_err(&r->rd, fg_yaml_get(n, "serverName")->key,
                  "%s: serverName cannot be shared by every shard; each is verified by the host "
                  "of its Shard's baseURL",
                  sec);
    const char *id = fg_rd_str(&r->rd, n, "identity", 0, sec);
    s->identity = FG_IDENTITY_REQUEST_HEADER;
    if (id == NULL || strcmp(id, "requestHeader") == 0)
        s->identity = FG_IDENTITY_REQUEST_HEADER;
    else if (strcmp(id, "passthrough") == 0)
        s->identity = FG_IDENTITY_PASSTHROUGH;
    else if (strcmp(id, "none") == 0)
        s->identity = FG_IDENTITY_NONE;
    else if (strcmp(id, "mint") == 0)
        s->identity = FG_IDENTITY_MINT;
    else
        fg_rd_err(&r->rd, fg_yaml_get(n, "identity")->val,
                  "shard identity \"%s\" must be requestHeader, passthrough, none or mint", id);
    struct fg_ypair *mp = fg_yaml_get(n, "mint");
    if (s->identity == FG_IDENTITY_MINT && (mp == NULL || fg_yaml_is_null(mp->val)))
        fg_rd_err(&r->rd, n,
                  tmpl ? "%s: identity mint needs a mint: section"
                       : "shard \"%s\": identity mint needs a mint: section",
                  shown);
    else if (mp && s->identity != FG_IDENTITY_MINT)
        fg_rd_err(&r->rd, mp->key, "mint: is only for shards with identity: mint");
    else if (mp)
        read_mint(r, mp->val, s);
    const char *proto = fg_rd_str(&r->rd, n, "protocol", 0, sec);
    if (proto == NULL || strcmp(proto, "http1") == 0)
        s->protocol = FG_PROTO_HTTP1;
    else if (strcmp(proto, "auto") == 0)
        s->protocol = FG_PROTO_AUTO;
    else if (strcmp(proto, "h2") == 0)
        s->protocol = FG_PROTO_H2;
    else
        fg_rd_err(&r->rd, fg_yaml_get(n, "protocol")->val,
                  "shard protocol \"%s\" must be http1, auto or h2", proto);
    uint64_t v;
    fg_rd_size(&r->rd, n, "maxStreamsPerConnection", 250, 1, 10000, &v);
    s->max_streams = (uint32_t)v;
    fg_rd_size(&r->rd, n, "maxConnections", 0, 0, 1000, &v);
    s->max_conns = (uint32_t)v;
    if (tmpl)
        fg_rd_unknown(&r->rd, n, sec,
                      "caFile, clientCertFile, clientKeyFile, identity, mint, protocol, "
                      "maxStreamsPerConnection, maxConnections");
    else
        fg_rd_unknown(&r->rd, n, sec,
                      "name, url, caFile, clientCertFile, clientKeyFile, serverName, identity, "
                      "mint, protocol, maxStreamsPerConnection, maxConnections");
}

static void read_shards(struct fg_cfgrd *r, struct fg_ynode *root)
{
    struct fg_ypair *p = fg_yaml_get(root, "shards");
    if (p == NULL || fg_yaml_is_null(p->val))
        return;
    if (fg_rd_expect(&r->rd, p->val, FG_Y_SEQ, "shards") != 0)
        return;
    r->cfg->shards = fg_calloc(p->val->nitems, sizeof(struct fg_shard_cfg));
    for (size_t i = 0; i < p->val->nitems; i++) {
        struct fg_ynode *n = p->val->items[i];
        struct fg_shard_cfg *s = &r->cfg->shards[r->cfg->nshards++];
        fg_cfg_read_shard(r, n, s, 0);
        for (size_t j = 0; s->name && j + 1 < r->cfg->nshards; j++)
            if (r->cfg->shards[j].name && strcmp(r->cfg->shards[j].name, s->name) == 0)
                fg_rd_err(&r->rd, n, "shard name \"%s\" is used twice", s->name);
    }
}

int fg_cfg_shard_by_name(const struct fg_config *cfg, const char *name, size_t n, uint32_t *out)
{
    for (size_t i = 0; i < cfg->nshards; i++) {
        const char *s = cfg->shards[i].name;
        if (s && strlen(s) == n && memcmp(s, name, n) == 0) {
            *out = (uint32_t)i;
            return 0;
        }
    }
    return -1;
}

int fg_config_shard_index(const struct fg_config *cfg, const char *name, size_t from, uint32_t *out)
{
    for (size_t i = from; i < cfg->nshards; i++)
        if (strcmp(cfg->shards[i].name, name) == 0) {
            *out = (uint32_t)i;
            return 0;
        }
    return -1;
}

int fg_config_wstype_index(const struct fg_config *cfg, const char *name, uint32_t *out)
{
    return fg_cfg_wstype_by_name(cfg, name, strlen(name), out);
}

int fg_cfg_authn_by_name(const struct fg_config *cfg, const char *name, uint32_t *out)
{
    for (size_t i = 0; i < cfg->nauthns; i++) {
        if (cfg->authns[i].name && strcmp(cfg->authns[i].name, name) == 0) {
            *out = (uint32_t)i;
            return 0;
        }
    }
    return -1;
}

int fg_cfg_wstype_by_name(const struct fg_config *cfg, const char *name, size_t n, uint32_t *out)
{
    for (size_t i = 0; i < cfg->nwstypes; i++) {
        const char *s = cfg->wstypes[i].name;
        if (s && strlen(s) == n && memcmp(s, name, n) == 0) {
            *out = (uint32_t)i;
            return 0;
        }
    }
    return -1;
}

/* ---- routes ------------------------------------------------------------- */

static void read_token_endpoint(struct fg_cfgrd *r, struct fg_ynode *n, struct fg_route_cfg *rt)
{
    const char *s = "tokenEndpoint";
    if (rt->kind != FG_ROUTE_WORKSPACE_ICEBERG) {
        fg_rd_err(&r->rd, n, "tokenEndpoint is only for routes with workspace: iceberg");
        return;
    }
    if (fg_rd_expect(&r->rd, n, FG_Y_MAP, s) != 0)
        return;
    struct fg_token_endpoint_cfg *t = fg_calloc(1, sizeof(*t));
    rt->token_endpoint = t;
    const char *path = fg_rd_str(&r->rd, n, "path", 0, s);
    if (path && path[0] != '/')
        fg_rd_err(&r->rd, fg_yaml_get(n, "path")->val, "tokenEndpoint.path must start with '/'");
    if (path) {
        t->path = fg_strdup(path);
    } else if (rt->prefix) {
        struct fg_buf b = {0};
        fg_buf_printf(&b, "%soauth/tokens", rt->prefix);
        t->path = fg_buf_take(&b);
    }
    t->authn_name = fg_rd_dup(fg_rd_str(&r->rd, n, "authenticator", 1, s));
    uint64_t v;
    fg_rd_duration(&r->rd, n, "expiresIn", 3600000, 1000, 86400000, &v);
    t->expires_in_s = v / 1000;
    fg_rd_unknown(&r->rd, n, s, "path, authenticator, expiresIn");
}

/* `upgrades: [websocket, SPDY/3.1]`: the protocols a route may tunnel; [] tunnels none. */
static void read_upgrades(struct fg_cfgrd *r, struct fg_ynode *n, struct fg_route_cfg *rt)
{
    struct fg_ypair *p = fg_yaml_get(n, "upgrades");
    rt->upgrades_set = p != NULL;
    rt->upgrades = fg_cfg_str_list(r, n, "upgrades", "route", &rt->nupgrades);
    for (size_t i = 0; p && i < rt->nupgrades && p->val->kind == FG_Y_SEQ; i++) {
        const char *u = rt->upgrades[i];
        size_t k = 0;
        while (u[k] && (isalnum((unsigned char)u[k]) || strchr("!#$%&'*+-.^_`|~/", u[k])))
            k++;
        if (k == 0 || u[k])
            fg_rd_err(&r->rd, p->val->items[i], "upgrade protocol \"%s\" is not a protocol name",
                      u);
        else if (fg_strn_eqi(u, k, "h2c"))
            fg_rd_err(&r->rd, p->val->items[i],
                      "h2c cannot be tunnelled: the client would speak its own HTTP/2, identity "
                      "headers included, over frontgate's connection to the shard");
    }
}

/*
 * {name} segments of a route prefix (kcp's mapping paths, Go ServeMux patterns): each stands for
 * one non-empty path segment; {cluster} is the one routing may look up.
 */
void fg_cfg_read_placeholders(struct fg_cfgrd *r, struct fg_ynode *at, struct fg_route_cfg *rt)
{
    const char *p = rt->prefix;
    int seg = -1;
    rt->cluster_seg = -1;
    for (size_t i = 0; i < rt->prefix_len; i++) {
        if (p[i] == '/') {
            seg++;
            continue;
        }
        if (p[i] != '{' && p[i] != '}')
            continue;
        const char *close = p[i] == '{' ? strchr(p + i, '}') : NULL;
        size_t nlen = close ? (size_t)(close - p - i - 1) : 0;
        int whole = close && i > 0 && p[i - 1] == '/' && (close[1] == '/' || close[1] == '\0');
        int named = nlen > 0 && (isalpha((unsigned char)p[i + 1]) || p[i + 1] == '_');
        for (size_t k = 1; named && k < nlen; k++)
            named = isalnum((unsigned char)p[i + 1 + k]) || p[i + 1 + k] == '_';
        if (close && nlen > 3 && memcmp(close - 3, "...", 3) == 0) {
            fg_rd_err(&r->rd, at,
                      "route prefix \"%s\": {%.*s} is not needed: a prefix matches the rest of the "
                      "path already",
                      p, (int)nlen, p + i + 1);
            return;
        }
        if (!whole || !named) {
            fg_rd_err(&r->rd, at,
                      "route prefix \"%s\": a placeholder is a whole segment {name} (letters, "
                      "digits, '_')",
                      p);
            return;
        }
        if (nlen == 7 && memcmp(p + i + 1, "cluster", 7) == 0) {
            if (rt->cluster_seg >= 0) {
                fg_rd_err(&r->rd, at, "route prefix \"%s\": {cluster} appears twice", p);
                return;
            }
            rt->cluster_seg = seg;
        }
        rt->placeholders = 1;
        i = (size_t)(close - p);
    }
}

static void read_routes(struct fg_cfgrd *r, struct fg_ynode *root)
{
    struct fg_ypair *p = fg_yaml_get(root, "routes");
    if (p == NULL || fg_yaml_is_null(p->val))
        return;
    if (fg_rd_expect(&r->rd, p->val, FG_Y_SEQ, "routes") != 0)
        return;
    r->cfg->routes = fg_calloc(p->val->nitems, sizeof(struct fg_route_cfg));
    for (size_t i = 0; i < p->val->nitems; i++) {
        struct fg_ynode *n = p->val->items[i];
        struct fg_route_cfg *rt = &r->cfg->routes[r->cfg->nroutes++];
        rt->mark = fg_cfg_mark(r, n);
        if (fg_rd_expect(&r->rd, n, FG_Y_MAP, "a route") != 0)
            continue;
        const char *prefix = fg_rd_str(&r->rd, n, "prefix", 1, "route");
        if (prefix) {
            rt->prefix = fg_strdup(prefix);
            rt->prefix_len = strlen(prefix);
            if (prefix[0] != '/' || strpbrk(prefix, "?# \t") != NULL)
                fg_rd_err(&r->rd, fg_yaml_get(n, "prefix")->val,
                          "route prefix \"%s\" must be a path starting with '/'", prefix);
        }
        if (rt->prefix)
            fg_cfg_read_placeholders(r, fg_yaml_get(n, "prefix")->val, rt);
        const char *ws = fg_rd_str(&r->rd, n, "workspace", 0, "route");
        const char *shard = fg_rd_str(&r->rd, n, "shard", 0, "route");
        if ((ws != NULL) == (shard != NULL)) {
            fg_rd_err(&r->rd, n, "a route needs exactly one of \"workspace\" or \"shard\"");
        } else if (ws) {
            if (strcmp(ws, "path") == 0)
                rt->kind = FG_ROUTE_WORKSPACE_PATH;
            else if (strcmp(ws, "iceberg") == 0)
                rt->kind = FG_ROUTE_WORKSPACE_ICEBERG;
            else
                fg_rd_err(&r->rd, fg_yaml_get(n, "workspace")->val,
                          "route workspace \"%s\" must be \"path\" or \"iceberg\"", ws);
            if (rt->prefix && rt->prefix_len > 0 && rt->prefix[rt->prefix_len - 1] != '/')
                fg_rd_err(&r->rd, fg_yaml_get(n, "prefix")->val,
                          "a workspace route prefix must end with '/' (e.g. /clusters/)");
            if (rt->placeholders)
                fg_rd_err(&r->rd, fg_yaml_get(n, "prefix")->val,
                          "{placeholders} are for shard routes; a workspace route takes the "
                          "workspace from the segment after its prefix");
            if (fg_yaml_get(n, "resolveCluster"))
                fg_rd_err(&r->rd, fg_yaml_get(n, "resolveCluster")->key,
                          "resolveCluster is for shard routes; a workspace route always looks its "
                          "workspace up");
        } else {
            rt->kind = FG_ROUTE_SHARD;
            if (fg_cfg_shard_by_name(r->cfg, shard, strlen(shard), &rt->shard) != 0)
                fg_rd_err(&r->rd, fg_yaml_get(n, "shard")->val, "route names unknown shard \"%s\"",
                          shard);
            fg_rd_bool(&r->rd, n, "resolveCluster", rt->cluster_seg >= 0, &rt->resolve_cluster);
        }
        rt->strip_headers = fg_cfg_str_list(r, n, "stripHeaders", "route", &rt->nstrip_headers);
        const char *fp = fg_rd_str(&r->rd, n, "forwardedPrefix", 0, "route");
        if (fp && (fp[0] != '/' || strpbrk(fp, "\r\n?# ")))
            fg_rd_err(&r->rd, fg_yaml_get(n, "forwardedPrefix")->val,
                      "forwardedPrefix must be a path starting with '/'");
        rt->forwarded_prefix = fg_rd_dup(fp);
        read_upgrades(r, n, rt);
        struct fg_ypair *te = fg_yaml_get(n, "tokenEndpoint");
        if (te && !fg_yaml_is_null(te->val))
            read_token_endpoint(r, te->val, rt);
        fg_rd_unknown(
            &r->rd, n, "route",
            "prefix, workspace, shard, resolveCluster, stripHeaders, forwardedPrefix, upgrades, "
            "tokenEndpoint");
    }
}

/* ---- top level ---------------------------------------------------------- */

static void read_limits(struct fg_cfgrd *r, struct fg_ynode *root)
{
    struct fg_limits *l = &r->cfg->limits;
    struct fg_ypair *p = fg_yaml_get(root, "limits");
    struct fg_ynode *n = (p && !fg_yaml_is_null(p->val)) ? p->val : NULL;
    if (n && fg_rd_expect(&r->rd, n, FG_Y_MAP, "limits") != 0)
        n = NULL;
    uint64_t v;
    fg_rd_size(&r->rd, n, "maxHeaderBytes", 64 << 10, 1 << 10, 1 << 20, &v);
    l->max_header_bytes = (uint32_t)v;
    fg_rd_duration(&r->rd, n, "headerTimeout", 10000, 100, 3600000, &l->header_timeout_ms);
    fg_rd_duration(&r->rd, n, "idleTimeout", 90000, 100, 86400000, &l->idle_timeout_ms);
    fg_rd_size(&r->rd, n, "maxConnections", 10000, 1, 1 << 24, &v);
    l->max_connections = (uint32_t)v;
    fg_rd_duration(&r->rd, n, "connectTimeout", 5000, 10, 600000, &l->connect_timeout_ms);
    fg_rd_duration(&r->rd, n, "shutdownGracePeriod", 30000, 0, 3600000, &l->shutdown_grace_ms);
    fg_rd_size(&r->rd, n, "maxBufferBytes", 1 << 20, 16 << 10, 64 << 20, &v);
    l->max_buffer_bytes = (uint32_t)v;
    fg_rd_duration(&r->rd, n, "upstreamIdleTimeout", 60000, 100, 3600000,
                   &l->upstream_idle_timeout_ms);
    fg_rd_size(&r->rd, n, "upstreamMaxIdle", 256, 0, 65536, &v);
    l->upstream_max_idle = (uint32_t)v;
    fg_rd_size(&r->rd, n, "maxConcurrentStreams", 250, 1, 10000, &v);
    l->max_concurrent_streams = (uint32_t)v;
    if (n)
        fg_rd_unknown(&r->rd, n, "limits",
                      "maxHeaderBytes, headerTimeout, idleTimeout, maxConnections, "
                      "connectTimeout, shutdownGracePeriod, maxBufferBytes, upstreamIdleTimeout, "
                      "upstreamMaxIdle, maxConcurrentStreams");
}

static void read_log(struct fg_cfgrd *r, struct fg_ynode *root)
{
    struct fg_ypair *p = fg_yaml_get(root, "log");
    struct fg_ynode *n = (p && !fg_yaml_is_null(p->val)) ? p->val : NULL;
    r->cfg->log_level = FG_LOG_INFO;
    r->cfg->access_log = FG_ACCESS_LOG_TEXT;
    if (n == NULL || fg_rd_expect(&r->rd, n, FG_Y_MAP, "log") != 0)
        return;
    const char *lvl = fg_rd_str(&r->rd, n, "level", 0, "log");
    if (lvl) {
        if (strcmp(lvl, "debug") == 0)
            r->cfg->log_level = FG_LOG_DEBUG;
        else if (strcmp(lvl, "info") == 0)
            r->cfg->log_level = FG_LOG_INFO;
        else if (strcmp(lvl, "warn") == 0)
            r->cfg->log_level = FG_LOG_WARN;
        else if (strcmp(lvl, "error") == 0)
            r->cfg->log_level = FG_LOG_ERROR;
        else
            fg_rd_err(&r->rd, fg_yaml_get(n, "level")->val,
                      "log level must be debug, info, warn or error");
    }
    /* accessLog: text | json | off (true and false, the first spellings, are text and off) */
    struct fg_ypair *al = fg_yaml_get(n, "accessLog");
    if (al && !fg_yaml_is_null(al->val)) {
        const char *v = al->val->kind == FG_Y_SCALAR ? al->val->str : "";
        if (strcmp(v, "text") == 0 || (al->val->plain && strcmp(v, "true") == 0))
            r->cfg->access_log = FG_ACCESS_LOG_TEXT;
        else if (strcmp(v, "json") == 0)
            r->cfg->access_log = FG_ACCESS_LOG_JSON;
        else if (strcmp(v, "off") == 0 || (al->val->plain && strcmp(v, "false") == 0))
            r->cfg->access_log = FG_ACCESS_LOG_OFF;
        else
            fg_rd_err(&r->rd, al->val, "log.accessLog must be text, json or off");
    }
    fg_rd_unknown(&r->rd, n, "log", "level, accessLog");
}

static void read_reload(struct fg_cfgrd *r, struct fg_ynode *root)
{
    struct fg_ypair *p = fg_yaml_get(root, "reload");
    if (p == NULL || fg_yaml_is_null(p->val) || fg_rd_expect(&r->rd, p->val, FG_Y_MAP, "reload"))
        return;
    fg_rd_bool(&r->rd, p->val, "watchFiles", 0, &r->cfg->watch_files);
    fg_rd_unknown(&r->rd, p->val, "reload", "watchFiles");
}

#define ADMIN_DEFAULT "127.0.0.1:9090"

static void read_admin(struct fg_cfgrd *r, struct fg_ynode *root)
{
    struct fg_ypair *p = fg_yaml_get(root, "admin");
    const char *addr = ADMIN_DEFAULT;
    r->cfg->admin_default = 1;
    if (p && !fg_yaml_is_null(p->val)) {
        struct fg_ynode *n = p->val;
        if (fg_rd_expect(&r->rd, n, FG_Y_MAP, "admin") != 0)
            return;
        int present = 0;
        const char *a = fg_rd_str_empty_ok(&r->rd, n, "address", "admin", &present);
        if (present) {
            addr = a;
            r->cfg->admin_default = 0;
            r->cfg->admin_mark = fg_cfg_mark(r, fg_yaml_get(n, "address")->val);
        }
        fg_rd_unknown(&r->rd, n, "admin", "address");
    }
    if (addr == NULL || *addr == '\0')
        return; /* "": no admin listener */
    if (split_hostport(addr, &r->cfg->admin_host, &r->cfg->admin_port) != 0) {
        fg_rd_err(&r->rd, fg_yaml_get(p->val, "address")->val,
                  "admin address \"%s\" must be host:port, [ipv6]:port or :port (\"\" turns it "
                  "off)",
                  addr);
        return;
    }
    r->cfg->admin_address = fg_strdup(addr);
}

static void check_references(struct fg_cfgrd *r, struct fg_ynode *root)
{
    struct fg_config *cfg = r->cfg;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        struct fg_token_endpoint_cfg *t = cfg->routes[i].token_endpoint;
        if (t == NULL || t->authn_name == NULL)
            continue;
        const struct fg_mark *m = &cfg->routes[i].mark;
        if (fg_cfg_authn_by_name(cfg, t->authn_name, &t->authn) != 0)
            fg_errs_add(r->rd.errs, m->file, m->line, m->col,
                        "tokenEndpoint names unknown authenticator \"%s\"", t->authn_name);
        else if (cfg->authns[t->authn].kind != FG_AUTHN_STATIC_KEYS)
            fg_errs_add(r->rd.errs, m->file, m->line, m->col,
                        "tokenEndpoint.authenticator \"%s\" must be a staticKeys authenticator",
                        t->authn_name);
    }
    int has_ws_route = 0;
    for (size_t i = 0; i < cfg->nroutes; i++)
        has_ws_route |= cfg->routes[i].kind != FG_ROUTE_SHARD;
    if (cfg->nroutes == 0)
        fg_rd_err(&r->rd, root,
                  "\"routes\" is required: without a route every request would be refused");
    if (has_ws_route && cfg->nshards == 0 && cfg->kcp == NULL)
        fg_rd_err(&r->rd, root, "workspace routes need at least one shard (or index.fromKcp)");
}

struct fg_config *fg_config_parse(const char *file, const char *text, size_t len,
                                  struct fg_errs *errs)
{
    size_t before = errs->n;
    struct fg_config *cfg = fg_calloc(1, sizeof(*cfg));
    cfg->file = fg_strdup(file);
    const char *slash = strrchr(file, '/');
    cfg->dir = slash ? fg_strndup(file, (size_t)(slash - file) + (slash == file)) : fg_strdup(".");
    cfg->index = fg_index_new();
    struct fg_cfgrd r = {{errs, cfg->file, 0}, cfg, NULL};
    struct fg_ynode *root = fg_yaml_parse(cfg->file, text, len, errs);
    if (root == NULL)
        goto fail;
    if (root->kind != FG_Y_MAP) {
        fg_rd_err(&r.rd, root,
                  "the config must be a mapping of keys such as listeners, shards, routes");
        goto fail;
    }
    struct fg_ypair *w = fg_yaml_get(root, "workers");
    if (w && !fg_yaml_is_null(w->val)) {
        uint64_t v;
        if (w->val->kind != FG_Y_SCALAR || fg_parse_u64(w->val->str, w->val->len, 256, &v) != 0)
            fg_rd_err(&r.rd, w->val, "workers must be a number from 0 (one per CPU) to 256");
        else
            cfg->workers = (unsigned)v;
    }
    read_listeners(&r, root);
    read_shards(&r, root);
    fg_cfg_read_mapping(&r, root);
    cfg->nstatic_shards = cfg->nshards;
    if (cfg->mapping_file == NULL)
        read_routes(&r, root);
    fg_cfg_read_authns(&r, root);
    fg_cfg_check_issuers(&r);
    fg_cfg_read_authentication(&r, root);
    fg_cfg_read_wstypes(&r, root);
    read_limits(&r, root);
    read_log(&r, root);
    read_admin(&r, root);
    read_reload(&r, root);
    fg_cfg_read_workspaces(&r, root);
    cfg->index_file = fg_cfg_file(&r, root, "indexFile", 0, "config", &cfg->index_mark);
    fg_cfg_read_index(&r, root);
    fg_cfg_mapping_tls(&r);
    fg_rd_unknown(&r.rd, root, "the config",
                  "workers, listeners, shards, routes, mappingFile, workspaces, indexFile, index, "
                  "authenticators, authentication, workspaceTypes, limits, log, admin, reload");
    check_references(&r, root);
    if (errs->n == before && cfg->index_file) {
        char *path = fg_config_path(cfg, cfg->index_file);
        fg_config_load_index(cfg, path, errs);
        free(path);
    }
    fg_yaml_free(root);
    if (errs->n != before) {
        fg_config_free(cfg);
        return NULL;
    }
    return cfg;
fail:
    fg_yaml_free(root);
    fg_config_free(cfg);
    return NULL;
}

/* The files a load names, while fg_config_files_begin() records on this thread. */
static __thread struct fg_file_list *recording;

void fg_config_files_begin(struct fg_file_list *l)
{
    recording = l;
}

void fg_config_files_end(void)
{
    recording = NULL;
}

static void record_file(const char *path)
{
    struct fg_file_list *l = recording;
    if (l == NULL || path == NULL)
        return;
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->paths[i], path) == 0)
            return;
    fg_grow(&l->paths, &l->cap, l->n + 1, sizeof(char *));
    l->paths[l->n++] = fg_strdup(path);
}

void fg_file_list_free(struct fg_file_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->paths[i]);
    free(l->paths);
    memset(l, 0, sizeof(*l));
}

char *fg_read_file(const char *path, size_t *len)
{
    record_file(path);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        errno = EISDIR;
        return NULL;
    }
    struct fg_buf b = {0};
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        fg_buf_add(&b, tmp, n);
    int bad = ferror(f), err = errno;
    fclose(f);
    if (bad) {
        fg_buf_free(&b);
        errno = err ? err : EIO;
        return NULL;
    }
    if (len)
        *len = b.len;
    return fg_buf_take(&b);
}

const char *fg_file_reason(int err)
{
    switch (err) {
    case ENOENT:
        return "no such file or directory";
    case EACCES:
        return "permission denied";
    case EISDIR:
        return "is a directory";
    case ENOTDIR:
        return "a component of the path is not a directory";
    default:
        return strerror(err);
    }
}

int fg_file_check(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return -1;
    struct stat st;
    int rc = fstat(fileno(f), &st);
    fclose(f);
    if (rc == 0 && S_ISDIR(st.st_mode)) {
        errno = EISDIR;
        rc = -1;
    }
    return rc;
}

void fg_cfg_file_err(struct fg_errs *errs, const struct fg_mark *m, const char *path,
                     const char *what, const char *why)
{
    if (m != NULL && m->line > 0)
        fg_errs_add(errs, m->file, m->line, m->col, "%s: %s: %s", path, what, why);
    else
        fg_errs_add(errs, path, 0, 0, "%s: %s", what, why);
}

struct fg_config *fg_config_load(const char *file, struct fg_errs *errs)
{
    size_t len;
    char *text = fg_read_file(file, &len);
    if (text == NULL && errno == EISDIR) {
        size_t n = strlen(file);
        while (n > 0 && file[n - 1] == '/')
            n--;
        fg_errs_add(errs, file, 0, 0,
                    "cannot read config: is a directory (-c takes the config file itself, such "
                    "as %.*s/frontgate.yaml)",
                    (int)n, file);
        return NULL;
    }
    if (text == NULL) {
        fg_errs_add(errs, file, 0, 0, "cannot read config: %s", fg_file_reason(errno));
        return NULL;
    }
    struct fg_config *cfg = fg_config_parse(file, text, len, errs);
    free(text);
    return cfg;
}

char *fg_config_path(const struct fg_config *cfg, const char *path)
{
    if (path[0] == '/' || cfg->dir == NULL) {
        record_file(path);
        return fg_strdup(path);
    }
    struct fg_buf b = {0};
    fg_buf_printf(&b, "%s/%s", cfg->dir, path);
    record_file(b.data);
    return fg_buf_take(&b);
}

void fg_cfg_free_strs(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void fg_cfg_shard_free(struct fg_shard_cfg *s)
{
    free(s->name);
    free(s->url);
    free(s->host);
    free(s->hostport);
    free(s->base_path);
    free(s->ca_file);
    free(s->client_cert_file);
    free(s->client_key_file);
    free(s->server_name);
    free(s->ca_pem);
    free(s->client_cert_pem);
    if (s->client_key_pem) {
        OPENSSL_cleanse(s->client_key_pem, strlen(s->client_key_pem));
        free(s->client_key_pem);
    }
    if (s->mint) {
        free(s->mint->issuer);
        free(s->mint->key_file);
        free(s->mint->audience);
        free(s->mint);
    }
    memset(s, 0, sizeof(*s));
}

static char *dup_or_null(const char *s)
{
    return s ? fg_strdup(s) : NULL;
}

int fg_config_add_shard(struct fg_config *cfg, const struct fg_shard_cfg *tmpl, const char *name,
                        const char *url, const char **why)
{
    uint32_t taken;
    if (fg_cfg_shard_by_name(cfg, name, strlen(name), &taken) == 0) {
        *why = "a shard of that name is configured";
        return -1;
    }
    struct fg_shard_cfg s = *tmpl;
    s.name = s.url = s.host = s.hostport = s.base_path = NULL;
    s.https = 0;
    if (fg_cfg_parse_url(url, &s, why) != 0) {
        free(s.host);
        free(s.hostport);
        free(s.base_path);
        return -1;
    }
    if (!s.https && (tmpl->ca_file || tmpl->client_cert_file)) {
        *why = "is http:// but index.fromKcp.shards names TLS files";
        free(s.host);
        free(s.hostport);
        free(s.base_path);
        return -1;
    }
    s.name = fg_strdup(name);
    s.url = fg_strdup(url);
    s.ca_file = dup_or_null(tmpl->ca_file);
    s.client_cert_file = dup_or_null(tmpl->client_cert_file);
    s.client_key_file = dup_or_null(tmpl->client_key_file);
    s.server_name = NULL;
    if (tmpl->mint) {
        s.mint = fg_malloc(sizeof(*s.mint));
        *s.mint = *tmpl->mint;
        s.mint->issuer = dup_or_null(tmpl->mint->issuer);
        s.mint->key_file = dup_or_null(tmpl->mint->key_file);
        s.mint->audience = dup_or_null(tmpl->mint->audience);
    }
    cfg->shards = fg_realloc(cfg->shards, (cfg->nshards + 1) * sizeof(*cfg->shards));
    cfg->shards[cfg->nshards++] = s;
    return 0;
}

void fg_config_free(struct fg_config *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->admin_address);
    free(cfg->admin_host);
    free(cfg->admin_port);
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        struct fg_listener_cfg *l = &cfg->listeners[i];
        free(l->address);
        free(l->host);
        free(l->port);
        free(l->tls_cfg.cert_file);
        free(l->tls_cfg.key_file);
        free(l->tls_cfg.client_ca_file);
    }
    free(cfg->listeners);
    for (size_t i = 0; i < cfg->nshards; i++)
        fg_cfg_shard_free(&cfg->shards[i]);
    free(cfg->shards);
    fg_kcp_cfg_free(cfg->kcp);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        struct fg_route_cfg *rt = &cfg->routes[i];
        free(rt->prefix);
        fg_cfg_free_strs(rt->strip_headers, rt->nstrip_headers);
        fg_cfg_free_strs(rt->upgrades, rt->nupgrades);
        free(rt->forwarded_prefix);
        if (rt->token_endpoint) {
            free(rt->token_endpoint->path);
            free(rt->token_endpoint->authn_name);
            free(rt->token_endpoint);
        }
    }
    free(cfg->routes);
    for (size_t i = 0; i < cfg->nauthns; i++) {
        free(cfg->authns[i].name);
        free(cfg->authns[i].static_keys.file);
        free(cfg->authns[i].static_keys.username_prefix);
        for (size_t j = 0; j < cfg->authns[i].njwts; j++)
            fg_jwtcfg_free(cfg->authns[i].jwts[j]);
        free(cfg->authns[i].jwts);
        fg_cfg_tokenreview_free(cfg->authns[i].token_review);
    }
    free(cfg->authns);
    for (size_t i = 0; i < cfg->nwstypes; i++) {
        free(cfg->wstypes[i].name);
        free(cfg->wstypes[i].authns);
    }
    free(cfg->wstypes);
    free(cfg->global);
    for (size_t i = 0; i < cfg->ndrop_groups; i++)
        free(cfg->drop_groups[i]);
    free(cfg->drop_groups);
    fg_index_free(cfg->index);
    free(cfg->index_file);
    free(cfg->mapping_file);
    free(cfg->file);
    free(cfg->dir);
    free(cfg);
}
