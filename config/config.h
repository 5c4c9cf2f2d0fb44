/*
 * config.h - the validated, immutable form of frontgate's YAML config.
 *
 * fg_config_load() reads the file, checks every key (unknown keys are
 * errors), resolves names (routes -> shards, workspaces -> shards and types,
 * authentication -> authenticators) and builds the workspace index from the
 * inline `workspaces:` list and `indexFile`. Every problem is reported as
 * "file:line:column: message"; on any error nothing is returned.
 * Files named by the config (keys, certificates) are resolved relative to
 * the config file's directory but read by the modules that own them.
 */
#ifndef FG_CONFIG_H
#define FG_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "index.h"
#include "yaml.h"

struct fg_mark {
    const char *file;
    int line, col;
};

struct fg_tls_cfg {
    char *cert_file;
    char *key_file;
    char *client_ca_file; /* optional: request (not require) client certificates */
    struct fg_mark cert_mark, key_mark, client_ca_mark; /* where each file is named */
};

struct fg_listener_cfg {
    char *address; /* as written: "127.0.0.1:8080", "[::1]:6443", ":8080" */
    char *host;    /* for getaddrinfo; NULL = any */
    char *port;
    int tls;
    struct fg_tls_cfg tls_cfg;
    int http2; /* HTTP/2: ALPN h2 on TLS (default on), prior-knowledge h2c on plaintext (off) */
    struct fg_mark mark;
};

enum fg_identity_mode {
    FG_IDENTITY_REQUEST_HEADER, /* X-Remote-User / -Group / -Extra-* */
    FG_IDENTITY_PASSTHROUGH,    /* forward the original Authorization */
    FG_IDENTITY_NONE,           /* forward nothing about the caller */
    FG_IDENTITY_MINT,           /* a JWT frontgate signs for the identity (see mint) */
};

/* How frontgate speaks to a shard (shards[].protocol). */
enum fg_shard_proto {
    FG_PROTO_HTTP1, /* HTTP/1.1, one request per connection at a time (the default) */
    FG_PROTO_AUTO,  /* https: ALPN offers h2 and http/1.1, the shard picks; http: HTTP/1.1 */
    FG_PROTO_H2,    /* HTTP/2 only: ALPN h2 on https, prior-knowledge h2c on http */
};

struct fg_mint_cfg {
    char *issuer;   /* URL; frontgate serves its discovery document and JWKS under its path */
    char *key_file; /* PEM private key: RSA (RS256) or EC P-256 (ES256) */
    char *audience;
    uint64_t ttl_s;
    struct fg_mark key_mark;
};

struct fg_shard_cfg {
    char *name;
    char *url;
    int https;
    char *host; /* without brackets */
    uint16_t port;
    char *hostport;  /* host[:port] as it appears in the URL */
    char *base_path; /* URL path without a trailing '/', may be "" */
    char *ca_file;
    char *client_cert_file;
    char *client_key_file;
    char *server_name; /* TLS SNI and verified name; defaults to host */
    /* instead of the files: PEM text (a kubeconfig's *-data; the key is wiped when freed) */
    char *ca_pem, *client_cert_pem, *client_key_pem;
    enum fg_identity_mode identity;
    struct fg_mint_cfg *mint; /* FG_IDENTITY_MINT */
    enum fg_shard_proto protocol;
    uint32_t max_streams; /* HTTP/2: streams per connection (lowered by the shard's SETTINGS) */
    uint32_t max_conns;   /* HTTP/2: connections per worker (0: as many as the streams need) */
    struct fg_mark mark;
    struct fg_mark ca_mark, client_cert_mark, client_key_mark; /* where each file is named */
};

enum fg_route_kind {
    FG_ROUTE_SHARD,             /* forward unchanged to one shard */
    FG_ROUTE_WORKSPACE_PATH,    /* prefix/{workspace}/rest -> shard/clusters/{cluster}/rest */
    FG_ROUTE_WORKSPACE_ICEBERG, /* prefix/config?warehouse=NAME, prefix/{warehouse id}/... */
};

/* The OAuth2 client-credentials endpoint an Iceberg route may serve itself. */
struct fg_token_endpoint_cfg {
    char *path;       /* default: <prefix>oauth/tokens */
    char *authn_name; /* a staticKeys authenticator: client_id:client_secret is one of its keys */
    uint32_t authn;
    uint64_t expires_in_s;
};

struct fg_route_cfg {
    char *
        prefix; /* starts with '/'; shard routes may have {name} segments (one path segment each) */
    size_t prefix_len;
    enum fg_route_kind kind;
    int placeholders;    /* the prefix has {name} segments */
    int cluster_seg;     /* the {cluster} segment's index in the prefix (0: the first), or -1 */
    int resolve_cluster; /* shard routes: the cluster in the path is looked up for authentication */
    uint32_t shard;      /* FG_ROUTE_SHARD */
    char **strip_headers; /* request headers removed before forwarding (any case) */
    size_t nstrip_headers;
    char *forwarded_prefix; /* X-Forwarded-Prefix sent to the shard, or NULL */
    char **upgrades;        /* Upgrade protocols tunnelled (`upgrades:`); see upgrades_set */
    size_t nupgrades;
    int upgrades_set; /* 0: the key was absent, the defaults apply (websocket, SPDY/3.1) */
    struct fg_token_endpoint_cfg *token_endpoint; /* Iceberg routes only; or NULL */
    struct fg_mark mark;
};

enum fg_authn_kind {
    FG_AUTHN_STATIC_KEYS,
    FG_AUTHN_JWT, /* `jwt:` (one entry) or `authenticationConfigurationFile:` (several) */
    FG_AUTHN_TOKEN_REVIEW,
};

/* A Kubernetes API server that validates tokens for us (authentication.k8s.io/v1). */
struct fg_tokenreview_cfg {
    char *url;              /* API server base URL; the review goes to url + /apis/... */
    char *ca_file;          /* verifies the API server; NULL = system roots */
    char *token_file;       /* our own bearer credential, re-read when it changes */
    char *client_cert_file; /* or a client certificate */
    char *client_key_file;
    char **audiences; /* spec.audiences; status.audiences must intersect */
    size_t naudiences;
    char **issuers; /* when set: only JWTs with one of these `iss` are sent */
    size_t nissuers;
    uint64_t cache_ttl_ms;
    uint64_t negative_cache_ttl_ms;
    uint64_t timeout_ms;
    struct fg_mark ca_mark, token_mark, client_cert_mark, client_key_mark;
};

struct fg_jwt_cfg;

struct fg_authn_cfg {
    char *name;
    enum fg_authn_kind kind;
    struct {
        char *file;
        char *username_prefix;
        struct fg_mark file_mark; /* where `file:` names it */
    } static_keys;
    struct fg_jwt_cfg **jwts; /* FG_AUTHN_JWT: one authenticator per entry, tried in order */
    size_t njwts;
    struct fg_tokenreview_cfg *token_review; /* FG_AUTHN_TOKEN_REVIEW */
    int require_ready; /* /readyz waits until every issuer has keys (default true) */
    struct fg_mark mark;
};

struct fg_wstype_cfg {
    char *name;
    uint32_t *authns; /* indexes into authns */
    size_t nauthns;
    struct fg_mark mark;
};

struct fg_limits {
    uint32_t max_header_bytes;
    uint64_t header_timeout_ms;
    uint64_t idle_timeout_ms;
    uint32_t max_connections;
    uint64_t connect_timeout_ms;
    uint64_t shutdown_grace_ms;
    uint32_t max_buffer_bytes; /* per direction, per connection */
    uint64_t upstream_idle_timeout_ms;
    uint32_t upstream_max_idle;      /* pooled connections per shard, per worker */
    uint32_t max_concurrent_streams; /* HTTP/2 streams per client connection */
};

/*
 * index.fromKcp: the workspace index fed live from kcp. Shards are listed and watched at the
 * root shard; each Shard's LogicalClusters at its baseURL, with the same credentials (as kcp's
 * front proxy does with --shards-kubeconfig). Each Shard becomes a shard of the config named
 * after it, proxied as `shards` says.
 */
struct fg_kcp_cfg {
    struct fg_shard_cfg root; /* rootShard: url (parsed), caFile, clientCertFile/KeyFile */
    char *token_file;         /* rootShard.tokenFile: a bearer token, re-read when it changes */
    char *token;              /* a kubeconfig user's token (secret: never logged; wiped) */
    char *kubeconfig;         /* rootShard.kubeconfig, resolved; NULL without one */
    char *context;            /* rootShard.context */
    struct fg_mark token_mark;
    struct fg_shard_cfg shards; /* how each discovered shard is proxied (no name, no url) */
    uint64_t watch_timeout_ms;  /* a watch is renewed after this (server-side timeoutSeconds) */
    int workspace_auth; /* WorkspaceTypes and WorkspaceAuthenticationConfigurations, per shard */
    struct fg_mark mark;
};

enum fg_access_log { FG_ACCESS_LOG_OFF, FG_ACCESS_LOG_TEXT, FG_ACCESS_LOG_JSON };

struct fg_config {
    char *file;
    char *dir;        /* directory of file, for relative paths */
    unsigned workers; /* 0 = one per CPU */

    struct fg_listener_cfg *listeners;
    size_t nlisteners;
    struct fg_shard_cfg *shards;
    size_t nshards;
    struct fg_route_cfg *routes;
    size_t nroutes;
    struct fg_authn_cfg *authns;
    size_t nauthns;
    struct fg_wstype_cfg *wstypes;
    size_t nwstypes;

    uint32_t *global; /* authenticators tried for every request, in order */
    size_t nglobal;
    char **drop_groups; /* trailing '*' = prefix match */
    size_t ndrop_groups;
    uint64_t token_cache_ttl_ms; /* verified-token cache: longest life of an entry */
    uint32_t token_cache_size;   /* and most entries */

    struct fg_index *index;
    char *index_file;
    struct fg_mark index_mark; /* where `indexFile:` names it (line 0 when not from YAML) */
    struct fg_kcp_cfg *kcp;    /* index.fromKcp, or NULL */
    char *mapping_file;        /* mappingFile (kcp's --mapping-file), resolved; or NULL */
    size_t nstatic_shards;     /* shards from the file; those after them come from kcp */

    struct fg_limits limits;
    int log_level;  /* enum fg_log_level */
    int access_log; /* enum fg_access_log: one line per request */

    /* admin.address: /metrics and the health endpoints; NULL: off */
    char *admin_address, *admin_host, *admin_port;
    int admin_default; /* the address is the default, not written in the file */
    int watch_files;   /* reload.watchFiles: a change to a file the config names reloads */
    struct fg_mark admin_mark;
};

/* Reads and validates a config file. NULL (with errors in errs) on any problem. */
struct fg_config *fg_config_load(const char *file, struct fg_errs *errs);
/* As fg_config_load, from text; `file` names it in errors and sets the base directory. */
struct fg_config *fg_config_parse(const char *file, const char *text, size_t len,
                                  struct fg_errs *errs);
void fg_config_free(struct fg_config *cfg);

/* Resolves a path named by the config against its directory (caller frees). */
char *fg_config_path(const struct fg_config *cfg, const char *path);

/*
 * Reads a whole file into a NUL-terminated buffer; NULL with errno set on failure (EISDIR for a
 * directory, which fopen() would have opened).
 */
char *fg_read_file(const char *path, size_t *len);

/*
 * The files a configuration names: between begin and end, every path this thread reads with
 * fg_read_file or resolves with fg_config_path is added to l (once each). For
 * reload.watchFiles, which watches them.
 */
struct fg_file_list {
    char **paths;
    size_t n, cap;
};
void fg_config_files_begin(struct fg_file_list *l);
void fg_config_files_end(void);
void fg_file_list_free(struct fg_file_list *l);

/* Why a file cannot be used, as an operator reads it: "no such file or directory",
 * "permission denied", "is a directory"; strerror's text for the others. */
const char *fg_file_reason(int err);

/* 0 when path names a readable file that is not a directory; else -1 with errno set. */
int fg_file_check(const char *path);

/*
 * Adds "<m's file:line:col>: <path>: <what>: <why>" to errs: a file the config names (at m)
 * cannot be used. m with line 0 (not from the config) gives "<path>: <what>: <why>".
 */
void fg_cfg_file_err(struct fg_errs *errs, const struct fg_mark *m, const char *path,
                     const char *what, const char *why);

/*
 * Appends a shard named name at url, proxied as tmpl says (index.fromKcp.shards). -1 with *why
 * when the url does not parse, is http:// while tmpl needs TLS, or the name is taken.
 */
int fg_config_add_shard(struct fg_config *cfg, const struct fg_shard_cfg *tmpl, const char *name,
                        const char *url, const char **why);

/* Name lookups for the gateway: 0 with *out, or -1. Shards: only those at index >= from. */
int fg_config_shard_index(const struct fg_config *cfg, const char *name, size_t from,
                          uint32_t *out);
int fg_config_wstype_index(const struct fg_config *cfg, const char *name, uint32_t *out);

/* True when a and b name the same kcp with the same credentials (files compared by name). */
int fg_kcp_cfg_same_source(const struct fg_kcp_cfg *a, const struct fg_kcp_cfg *b);

/* Index file loading, exposed for tests: adds one workspace per line to ix. */
int fg_config_load_index(struct fg_config *cfg, const char *path, struct fg_errs *errs);

#endif
