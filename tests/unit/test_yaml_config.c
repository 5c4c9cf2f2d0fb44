/*
 * test_yaml_config.c - the YAML reader and the config validator
 * (config/yaml.h, config/config.h): what a good config turns into, and that
 * every mistake an operator can make is refused with "file:line:column:
 * message" pointing at the mistake. Also the workspace index file.
 */
#include "t.h"

#include "config/config.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

/* A minimal valid config, eight lines; tests append from line 9 or splice parts. */
#define L_  "listeners:\n  - address: 127.0.0.1:8080\n"                  /* lines 1-2 */
#define S_  "shards:\n  - name: s1\n    url: https://s1.internal:6443\n" /* lines 3-5 */
#define R_  "routes:\n  - prefix: /\n    shard: s1\n"                    /* lines 6-8 */
#define MIN L_ S_ R_

static struct fg_config *parse(const char *yaml, struct fg_errs *errs)
{
    return fg_config_parse("t.yaml", yaml, strlen(yaml), errs);
}

/* True when msg is "<file>:<line>:<col>: <message>" with positive line and column. */
static int located(const char *msg, const char *file)
{
    size_t n = strlen(file);
    if (strncmp(msg, file, n) != 0 || msg[n] != ':')
        return 0;
    const char *p = msg + n + 1;
    for (int part = 0; part < 2; part++) {
        if (*p < '1' || *p > '9')
            return 0;
        while (*p >= '0' && *p <= '9')
            p++;
        if (*p++ != ':')
            return 0;
    }
    return p[0] == ' ' && p[1] != '\0';
}

static void dump(const struct fg_errs *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        printf("#     %s\n", errs->msgs[i]);
}

/*
 * True when yaml (named file) is refused, one error starts with want, and
 * every error is located in file.
 */
static int refused_in(const char *file, const char *yaml, const char *want)
{
    struct fg_errs errs = {0};
    struct fg_config *cfg = fg_config_parse(file, yaml, strlen(yaml), &errs);
    int found = 0, all = errs.n > 0;
    for (size_t i = 0; i < errs.n; i++) {
        found |= strncmp(errs.msgs[i], want, strlen(want)) == 0;
        all &= located(errs.msgs[i], file);
    }
    int ok = cfg == NULL && found && all;
    if (!ok) {
        printf("#   want \"%s\" (%s; %s), errors:\n", want, cfg ? "accepted" : "refused",
               all ? "all located" : "NOT all located");
        dump(&errs);
    }
    fg_config_free(cfg);
    fg_errs_free(&errs);
    return ok;
}

#define REFUSED(yaml, want) CHECK(refused_in("t.yaml", (yaml), (want)))

/* As REFUSED for a config built by a printf format. */
static int refused_fmt(const char *want, const char *fmt, ...) FG_PRINTF(2, 3);

static int refused_fmt(const char *want, const char *fmt, ...)
{
    struct fg_buf b = {0};
    va_list ap;
    va_start(ap, fmt);
    fg_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    int ok = refused_in("t.yaml", b.data, want);
    if (!ok)
        printf("#   config was:\n%s", b.data);
    fg_buf_free(&b);
    return ok;
}

/* Parses yaml that must be valid; prints the errors if not. */
static struct fg_config *good(const char *yaml)
{
    struct fg_errs errs = {0};
    struct fg_config *cfg = parse(yaml, &errs);
    if (cfg == NULL || errs.n) {
        printf("#   unexpectedly refused:\n");
        dump(&errs);
    }
    fg_errs_free(&errs);
    return cfg;
}

/* ---- temporary files ---------------------------------------------------- */

static char tmpdir[] = "/tmp/fg-config-XXXXXX";

/* Writes dir/name and returns its path (caller frees). */
static char *write_file(const char *name, const char *text, size_t len)
{
    struct fg_buf p = {0};
    fg_buf_printf(&p, "%s/%s", tmpdir, name);
    FILE *f = fopen(p.data, "wb");
    if (f) {
        fwrite(text, 1, len, f);
        fclose(f);
    }
    return fg_buf_take(&p);
}

static void remove_file(const char *name)
{
    struct fg_buf p = {0};
    fg_buf_printf(&p, "%s/%s", tmpdir, name);
    unlink(p.data);
    fg_buf_free(&p);
}

/* ---- good configs ------------------------------------------------------- */

static void minimal_config(void)
{
    struct fg_config *cfg = good(MIN);
    CHECK(cfg != NULL);
    if (cfg == NULL)
        return;
    CHECK_STR(cfg->file, "t.yaml");
    CHECK_STR(cfg->dir, ".");
    CHECK(cfg->workers == 0);
    CHECK(cfg->nlisteners == 1);
    CHECK_STR(cfg->listeners[0].address, "127.0.0.1:8080");
    CHECK_STR(cfg->listeners[0].host, "127.0.0.1");
    CHECK_STR(cfg->listeners[0].port, "8080");
    CHECK(cfg->listeners[0].tls == 0);
    CHECK(cfg->listeners[0].mark.line == 2 && cfg->listeners[0].mark.col == 5);
    CHECK(cfg->nshards == 1);
    CHECK_STR(cfg->shards[0].name, "s1");
    CHECK(cfg->shards[0].https == 1);
    CHECK_STR(cfg->shards[0].host, "s1.internal");
    CHECK(cfg->shards[0].port == 6443);
    CHECK_STR(cfg->shards[0].hostport, "s1.internal:6443");
    CHECK_STR(cfg->shards[0].base_path, "");
    CHECK(cfg->shards[0].identity == FG_IDENTITY_REQUEST_HEADER);
    CHECK(cfg->nroutes == 1 && cfg->routes[0].kind == FG_ROUTE_SHARD);
    CHECK(cfg->routes[0].shard == 0 && cfg->routes[0].prefix_len == 1);
    CHECK(cfg->nauthns == 0 && cfg->nglobal == 0 && cfg->nwstypes == 0);
    CHECK(fg_index_count(cfg->index) == 0);
    CHECK(cfg->index_file == NULL);
    CHECK(cfg->log_level == FG_LOG_INFO && cfg->access_log == 1);
    fg_config_free(cfg);
}

static void full_config(void)
{
    struct fg_config *cfg =
        good("workers: 4\n"
             "listeners:\n"
             "  - address: '[::1]:6443'\n"
             "    tls: {certFile: tls.crt, keyFile: tls.key, clientCAFile: ca.crt}\n"
             "  - address: ':8080'\n"
             "shards:\n"
             "  - name: s1\n"
             "    url: https://s1.internal:6443/base/\n"
             "    caFile: shard-ca.crt\n"
             "    clientCertFile: fp.crt\n"
             "    clientKeyFile: fp.key\n"
             "    serverName: shard.example\n"
             "  - name: s2\n"
             "    url: http://10.0.0.2\n"
             "    identity: passthrough\n"
             "  - name: s3\n"
             "    url: http://s3\n"
             "    identity: none\n"
             "routes:\n"
             "  - prefix: /clusters/\n"
             "    workspace: path\n"
             "  - prefix: /api\n"
             "    shard: s2\n"
             "authenticators:\n"
             "  - name: ops-keys\n"
             "    staticKeys: {file: keys.txt, usernamePrefix: 'key:'}\n"
             "  - name: ws-keys\n"
             "    staticKeys: {file: /etc/ws-keys.txt}\n"
             "authentication:\n"
             "  global: [ops-keys]\n"
             "  dropGroups: ['system:masters', 'x:*']\n"
             "workspaceTypes:\n"
             "  - name: root:org:with-keys\n"
             "    authenticators: [ws-keys, ops-keys]\n"
             "  - name: root:plain\n"
             "    authenticators: []\n"
             "log: {level: debug, accessLog: false}\n");
    CHECK(cfg != NULL);
    if (cfg == NULL)
        return;
    CHECK(cfg->workers == 4);
    CHECK(cfg->nlisteners == 2);
    CHECK_STR(cfg->listeners[0].host, "::1");
    CHECK_STR(cfg->listeners[0].port, "6443");
    CHECK(cfg->listeners[0].tls == 1);
    CHECK_STR(cfg->listeners[0].tls_cfg.cert_file, "tls.crt");
    CHECK_STR(cfg->listeners[0].tls_cfg.key_file, "tls.key");
    CHECK_STR(cfg->listeners[0].tls_cfg.client_ca_file, "ca.crt");
    CHECK(cfg->listeners[1].host == NULL);
    CHECK_STR(cfg->listeners[1].port, "8080");
    CHECK(cfg->nshards == 3);
    CHECK_STR(cfg->shards[0].base_path, "/base");
    CHECK_STR(cfg->shards[0].ca_file, "shard-ca.crt");
    CHECK_STR(cfg->shards[0].client_cert_file, "fp.crt");
    CHECK_STR(cfg->shards[0].client_key_file, "fp.key");
    CHECK_STR(cfg->shards[0].server_name, "shard.example");
    CHECK(cfg->shards[1].https == 0 && cfg->shards[1].port == 80);
    CHECK(cfg->shards[1].identity == FG_IDENTITY_PASSTHROUGH);
    CHECK(cfg->shards[2].identity == FG_IDENTITY_NONE);
    CHECK(cfg->nroutes == 2 && cfg->routes[0].kind == FG_ROUTE_WORKSPACE_PATH);
    CHECK(cfg->routes[1].kind == FG_ROUTE_SHARD && cfg->routes[1].shard == 1);
    CHECK(cfg->nauthns == 2 && cfg->authns[0].kind == FG_AUTHN_STATIC_KEYS);
    CHECK_STR(cfg->authns[0].static_keys.file, "keys.txt");
    CHECK_STR(cfg->authns[0].static_keys.username_prefix, "key:");
    CHECK(cfg->authns[1].static_keys.username_prefix == NULL);
    CHECK(cfg->nglobal == 1 && cfg->global[0] == 0);
    CHECK(cfg->ndrop_groups == 2);
    CHECK_STR(cfg->drop_groups[1], "x:*");
    CHECK(cfg->nwstypes == 2);
    CHECK(cfg->wstypes[0].nauthns == 2 && cfg->wstypes[0].authns[0] == 1 &&
          cfg->wstypes[0].authns[1] == 0);
    CHECK(cfg->wstypes[1].nauthns == 0);
    CHECK(cfg->log_level == FG_LOG_DEBUG && cfg->access_log == 0);
    fg_config_free(cfg);
}

/* An explicit "---" / "..." around the single document is fine. */
static void explicit_document_markers(void)
{
    struct fg_config *cfg = good("---\n" MIN "...\n");
    CHECK(cfg != NULL);
    fg_config_free(cfg);
}

static void shard_url_forms(void)
{
    struct fg_config *cfg = good(L_ "shards:\n"
                                    "  - {name: a, url: 'http://h'}\n"
                                    "  - {name: b, url: 'https://h'}\n"
                                    "  - {name: c, url: 'http://h:8080/base/'}\n"
                                    "  - {name: d, url: 'https://[fd00::1]:6443/a/b//'}\n"
                                    "  - {name: e, url: 'http://h/'}\n"
                                    "  - {name: f, url: 'https://[::1]'}\n"
                                    "routes: [{prefix: /, shard: a}]\n");
    CHECK(cfg != NULL && cfg->nshards == 6);
    if (cfg == NULL || cfg->nshards != 6)
        goto out;
    CHECK(cfg->shards[0].port == 80 && strcmp(cfg->shards[0].base_path, "") == 0);
    CHECK(cfg->shards[1].port == 443 && cfg->shards[1].https);
    CHECK(cfg->shards[2].port == 8080 && strcmp(cfg->shards[2].base_path, "/base") == 0);
    CHECK_STR(cfg->shards[3].host, "fd00::1");
    CHECK_STR(cfg->shards[3].hostport, "[fd00::1]:6443");
    CHECK(cfg->shards[3].port == 6443);
    CHECK_STR(cfg->shards[3].base_path, "/a/b");
    CHECK_STR(cfg->shards[4].base_path, "");
    CHECK_STR(cfg->shards[5].host, "::1");
    CHECK(cfg->shards[5].port == 443);
out:
    fg_config_free(cfg);
}

static void listener_address_forms(void)
{
    struct fg_config *cfg = good("listeners:\n"
                                 "  - address: '*:8080'\n"
                                 "  - address: 0.0.0.0:8081\n"
                                 "  - address: localhost:65535\n" S_ R_);
    CHECK(cfg != NULL && cfg->nlisteners == 3);
    if (cfg && cfg->nlisteners == 3) {
        CHECK(cfg->listeners[0].host == NULL);
        CHECK_STR(cfg->listeners[1].host, "0.0.0.0");
        CHECK_STR(cfg->listeners[2].host, "localhost");
        CHECK_STR(cfg->listeners[2].port, "65535");
    }
    fg_config_free(cfg);
}

/* HTTP/2 is on by default where ALPN can negotiate it (TLS), off on plaintext (h2c needs prior
 * knowledge, so it is opt-in), and either can be set. */
static void listener_http2(void)
{
    struct fg_config *cfg = good("listeners:\n"
                                 "  - address: 127.0.0.1:8080\n"
                                 "  - address: 127.0.0.1:8443\n"
                                 "    tls: {certFile: a.crt, keyFile: a.key}\n"
                                 "  - address: 127.0.0.1:8444\n"
                                 "    tls: {certFile: a.crt, keyFile: a.key}\n"
                                 "    http2: false\n"
                                 "  - address: 127.0.0.1:8081\n"
                                 "    http2: true\n" S_ R_);
    CHECK(cfg != NULL && cfg->nlisteners == 4);
    if (cfg && cfg->nlisteners == 4) {
        CHECK(cfg->listeners[0].http2 == 0);
        CHECK(cfg->listeners[1].http2 == 1);
        CHECK(cfg->listeners[2].http2 == 0);
        CHECK(cfg->listeners[3].http2 == 1);
    }
    fg_config_free(cfg);
    REFUSED("listeners:\n  - address: 127.0.0.1:8080\n    http2: yes please\n" S_ R_,
            "t.yaml:3:12: \"http2\" must be true or false");
}

static void shard_protocol(void)
{
    struct fg_config *cfg = good(L_ "shards:\n"
                                    "  - name: s1\n    url: https://s1.internal:6443\n"
                                    "  - name: s2\n    url: http://s2.internal:8080\n"
                                    "    protocol: h2\n    maxStreamsPerConnection: 100\n"
                                    "    maxConnections: 1\n"
                                    "  - name: s3\n    url: https://s3.internal\n"
                                    "    protocol: auto\n" R_);
    CHECK(cfg != NULL && cfg->nshards == 3);
    if (cfg && cfg->nshards == 3) {
        CHECK(cfg->shards[0].protocol == FG_PROTO_HTTP1); /* the default */
        CHECK(cfg->shards[0].max_streams == 250 && cfg->shards[0].max_conns == 0);
        CHECK(cfg->shards[1].protocol == FG_PROTO_H2);
        CHECK(cfg->shards[1].max_streams == 100 && cfg->shards[1].max_conns == 1);
        CHECK(cfg->shards[2].protocol == FG_PROTO_AUTO);
    }
    fg_config_free(cfg);
    REFUSED(L_ "shards:\n  - name: s1\n    url: https://s1.internal:6443\n    protocol: h3\n" R_,
            "t.yaml:6:15: shard protocol \"h3\" must be http1, auto or h2");
    REFUSED(L_ "shards:\n  - name: s1\n    url: https://s1.internal:6443\n"
               "    maxConnections: 1001\n" R_,
            "t.yaml:6:21: \"maxConnections\" must be between 0 and 1000");
    REFUSED(L_ "shards:\n  - name: s1\n    url: https://s1.internal:6443\n"
               "    maxStreamsPerConnection: 10001\n" R_,
            "t.yaml:6:30: \"maxStreamsPerConnection\" must be between 1 and 10000");
}

/* ---- unknown keys, at every level ----------------------------------------- */

static void unknown_key_top_level(void)
{
    REFUSED(MIN "bogus: 1\n", "t.yaml:9:1: unknown key \"bogus\" in the config");
    REFUSED(MIN "Listeners: []\n", "t.yaml:9:1: unknown key \"Listeners\"");
}

static void unknown_key_listener(void)
{
    REFUSED("listeners:\n  - address: 127.0.0.1:8080\n    port: 80\n" S_ R_,
            "t.yaml:3:5: unknown key \"port\" in listener");
    REFUSED("listeners:\n"
            "  - address: 127.0.0.1:8443\n"
            "    tls:\n"
            "      certFile: a.crt\n"
            "      keyFile: a.key\n"
            "      caFile: ca.crt\n" S_ R_,
            "t.yaml:6:7: unknown key \"caFile\" in listener.tls");
}

static void unknown_key_shard(void)
{
    REFUSED(L_ "shards:\n  - name: s1\n    url: https://s1.internal:6443\n    weight: 3\n" R_,
            "t.yaml:6:5: unknown key \"weight\" in shard");
}

static void unknown_key_route(void)
{
    REFUSED(L_ S_ "routes:\n  - prefix: /\n    shard: s1\n    methods: [GET]\n",
            "t.yaml:9:5: unknown key \"methods\" in route");
}

static void unknown_key_authenticator(void)
{
    const char *y = MIN "authenticators:\n"
                        "  - name: keys\n"
                        "    staticKeys:\n"
                        "      file: k.txt\n"
                        "      hashed: true\n"
                        "    oidc: {}\n";
    REFUSED(y, "t.yaml:13:7: unknown key \"hashed\" in staticKeys");
    REFUSED(y, "t.yaml:14:5: unknown key \"oidc\" in authenticator");
}

static void unknown_key_authentication(void)
{
    REFUSED(MIN "authentication:\n  global: []\n  dropgroups: [x]\n",
            "t.yaml:11:3: unknown key \"dropgroups\" in authentication");
}

static void unknown_key_workspace_type(void)
{
    REFUSED(MIN "workspaceTypes:\n  - name: root:t\n    authenticators: []\n    parent: root\n",
            "t.yaml:12:5: unknown key \"parent\" in workspaceType");
}

static void unknown_key_limits(void)
{
    REFUSED(MIN "limits:\n  maxHeaderBytes: 64Ki\n  maxBodyBytes: 1Mi\n",
            "t.yaml:11:3: unknown key \"maxBodyBytes\" in limits");
}

static void unknown_key_log(void)
{
    REFUSED(MIN "log:\n  format: json\n", "t.yaml:10:3: unknown key \"format\" in log");
}

static void unknown_key_workspace(void)
{
    REFUSED(MIN "workspaces:\n  - cluster: c1\n    shard: s1\n    owner: bob\n",
            "t.yaml:12:5: unknown key \"owner\" in workspace");
}

/* ---- missing required keys ---------------------------------------------- */

static void missing_listeners(void)
{
    REFUSED(S_ R_, "t.yaml:1:1: \"listeners\" is required");
    REFUSED("listeners: []\n" S_ R_, "t.yaml:1:12: listeners must not be empty");
}

static void missing_listener_fields(void)
{
    REFUSED("listeners:\n  - tls: ~\n" S_ R_, "t.yaml:2:5: listener: \"address\" is required");
    REFUSED("listeners:\n  - address: ~\n" S_ R_, "t.yaml:2:14: listener: \"address\" is required");
    REFUSED("listeners:\n  - address: 127.0.0.1:8443\n    tls: {certFile: a.crt}\n" S_ R_,
            "t.yaml:3:10: listener.tls: \"keyFile\" is required");
    REFUSED("listeners:\n  - address: 127.0.0.1:8443\n    tls: {keyFile: a.key}\n" S_ R_,
            "t.yaml:3:10: listener.tls: \"certFile\" is required");
}

static void missing_shard_fields(void)
{
    REFUSED(L_ "shards:\n  - url: https://s1.internal:6443\n" R_,
            "t.yaml:4:5: shard: \"name\" is required");
    REFUSED(L_ "shards:\n  - name: s1\n" R_, "t.yaml:4:5: shard: \"url\" is required");
}

static void missing_routes(void)
{
    REFUSED(L_ S_, "t.yaml:1:1: \"routes\" is required");
    REFUSED(L_ S_ "routes:\n  - shard: s1\n", "t.yaml:7:5: route: \"prefix\" is required");
    REFUSED(L_ "routes:\n  - prefix: /clusters/\n    workspace: path\n",
            "t.yaml:1:1: workspace routes need at least one shard");
}

static void missing_authenticator_fields(void)
{
    REFUSED(MIN "authenticators:\n  - staticKeys: {file: k}\n",
            "t.yaml:10:5: authenticator: \"name\" is required");
    REFUSED(MIN "authenticators:\n  - name: k\n    staticKeys: {}\n",
            "t.yaml:11:17: staticKeys: \"file\" is required");
    REFUSED(MIN "authenticators:\n  - name: k\n",
            "t.yaml:10:5: authenticator \"k\" needs exactly one of: staticKeys");
    REFUSED(MIN "workspaceTypes:\n  - authenticators: []\n",
            "t.yaml:10:5: workspaceType: \"name\" is required");
}

static void empty_document(void)
{
    REFUSED("", "t.yaml:1:1: \"listeners\" is required");
    REFUSED("", "t.yaml:1:1: \"routes\" is required");
    REFUSED("# only a comment\n", "t.yaml:1:1: \"listeners\" is required");
}

/* ---- YAML structure ----------------------------------------------------- */

static void duplicate_keys(void)
{
    REFUSED(MIN "shards: []\n", "t.yaml:9:1: duplicate key \"shards\"");
    REFUSED("listeners:\n  - address: 127.0.0.1:1\n    address: 127.0.0.1:2\n" S_ R_,
            "t.yaml:3:5: duplicate key \"address\"");
    REFUSED(MIN "log: {level: info, level: debug}\n", "t.yaml:9:20: duplicate key \"level\"");
    /* Quoting does not make a key different. */
    REFUSED(MIN "'workers': 1\nworkers: 2\n", "t.yaml:10:1: duplicate key \"workers\"");
}

static void wrong_types(void)
{
    REFUSED("listeners: 8080\n" S_ R_, "t.yaml:1:12: listeners must be a list, not a scalar");
    REFUSED(L_ "shards: {name: s1}\n" R_, "t.yaml:3:9: shards must be a list, not a mapping");
    REFUSED("listeners:\n  - 127.0.0.1:8080\n" S_ R_,
            "t.yaml:2:5: a listener must be a mapping, not a scalar");
    REFUSED(L_ "shards:\n  - name: [s1]\n    url: https://s1.internal:6443\n" R_,
            "t.yaml:4:11: shard.name must be a string, not a list");
    REFUSED(L_ S_ "routes:\n  - prefix: /\n    shard: {name: s1}\n",
            "t.yaml:8:12: route.shard must be a string, not a mapping");
    REFUSED(L_ S_ "routes:\n  - /\n", "t.yaml:7:5: a route must be a mapping");
    REFUSED(MIN "authentication: []\n",
            "t.yaml:9:17: authentication must be a mapping, not a list");
    REFUSED(MIN "authentication:\n  global: ops\n",
            "t.yaml:10:11: authentication.global must be a list");
    REFUSED(MIN "limits: 5\n", "t.yaml:9:9: limits must be a mapping, not a scalar");
    REFUSED(MIN "log: debug\n", "t.yaml:9:6: log must be a mapping, not a scalar");
    REFUSED(MIN "workspaces: {cluster: c1}\n", "t.yaml:9:13: workspaces must be a list");
    REFUSED(MIN "workspaces:\n  - c1\n", "t.yaml:10:5: a workspace must be a mapping");
    REFUSED(MIN "indexFile: [a]\n", "t.yaml:9:12: config.indexFile must be a string, not a list");
}

static void workers_range(void)
{
    REFUSED(MIN "workers: 257\n", "t.yaml:9:10: workers must be a number from 0");
    REFUSED(MIN "workers: -1\n", "t.yaml:9:10: workers must be a number from 0");
    REFUSED(MIN "workers: four\n", "t.yaml:9:10: workers must be a number from 0");
    REFUSED(MIN "workers: [1]\n", "t.yaml:9:10: workers must be a number from 0");
    struct fg_config *cfg = good(MIN "workers: 256\n");
    CHECK(cfg != NULL && cfg->workers == 256);
    fg_config_free(cfg);
}

static void anchors_refused(void)
{
    REFUSED("listeners:\n  - address: &a 127.0.0.1:8080\n" S_ R_,
            "t.yaml:2:14: YAML anchors are not supported");
    REFUSED("listeners:\n  - &l {address: '127.0.0.1:1'}\n  - *l\n" S_ R_,
            "t.yaml:2:5: YAML anchors are not supported");
    REFUSED(MIN "x: &s [1]\n", "t.yaml:9:4: YAML anchors are not supported");
}

static void aliases_refused(void)
{
    REFUSED(MIN "x: *a\n", "t.yaml:9:4: YAML aliases are not supported");
    REFUSED(MIN "<<: *base\n", "t.yaml:9:5: YAML aliases are not supported");
}

static void multi_document_refused(void)
{
    REFUSED(MIN "---\nfoo: 1\n", "t.yaml:9:1: only one YAML document is allowed per file");
    REFUSED("---\n" MIN "---\n", "t.yaml:10:1: only one YAML document is allowed per file");
}

static void yaml_syntax_errors(void)
{
    REFUSED("listeners: [\n", "t.yaml:2:1: invalid YAML");
    REFUSED("listeners:\n\t- address: x\n",
            "t.yaml:2:1: tabs are not allowed for indentation in YAML (use spaces)");
    REFUSED("a: 'unterminated\n", "t.yaml:2:1: invalid YAML");
    REFUSED("[a]: 1\n", "t.yaml:1:1: mapping keys must be scalars");
}

/* libyaml's words for a tab ("found character that cannot start any token") name no cause. */
static void yaml_tab_indentation(void)
{
    const char *tabs = "tabs are not allowed for indentation in YAML (use spaces)";
    struct {
        const char *yaml;
        const char *at;
    } cases[] = {
        {MIN "limits:\n\theaderTimeout: 5s\n", "t.yaml:10:1: "},
        {MIN "log:\n  level: info\n\taccessLog: true\n", "t.yaml:11:1: "},
        {"listeners:\n  -\taddress: 127.0.0.1:1\n" S_ R_, "t.yaml:2:4: "},
        {MIN "limits:\n  \theaderTimeout: 5s\n", "t.yaml:10:3: "},
    };
    for (size_t i = 0; i < FG_ARRAY_LEN(cases); i++) {
        struct fg_buf want = {0};
        fg_buf_printf(&want, "%s%s", cases[i].at, tabs);
        REFUSED(cases[i].yaml, want.data);
        fg_buf_free(&want);
    }
    /* A tab inside a quoted value is not indentation. */
    struct fg_config *cfg = good(MIN "    forwardedPrefix: \"/a\tb\"\n");
    CHECK(cfg != NULL && strcmp(cfg->routes[0].forwarded_prefix, "/a\tb") == 0);
    fg_config_free(cfg);
}

static void yaml_nesting_bounded(void)
{
    struct fg_buf b = {0};
    fg_buf_adds(&b, "x: ");
    for (int i = 0; i < 100; i++)
        fg_buf_addc(&b, '[');
    for (int i = 0; i < 100; i++)
        fg_buf_addc(&b, ']');
    fg_buf_addc(&b, '\n');
    CHECK(refused_in("t.yaml", b.data, "t.yaml:1:"));
    struct fg_errs errs = {0};
    fg_config_free(parse(b.data, &errs));
    CHECK(errs.n == 1);
    CHECK_CONTAINS(errs.n ? errs.msgs[0] : NULL, "nested too deeply");
    fg_errs_free(&errs);
    fg_buf_free(&b);
}

static void root_must_be_mapping(void)
{
    REFUSED("- a\n- b\n", "t.yaml:1:1: the config must be a mapping");
    REFUSED("hello\n", "t.yaml:1:1: the config must be a mapping");
}

static void nul_byte_in_string(void)
{
    REFUSED(L_ "shards:\n  - name: \"s\\0x\"\n    url: https://s1.internal:6443\n" R_,
            "t.yaml:4:11: shard.name contains a NUL byte");
}

/* ---- listeners ---------------------------------------------------------- */

static void bad_listener_addresses(void)
{
    /* ("h:0" is valid: port 0 lets the kernel choose, which tests rely on) */
    const char *bad[] = {"127.0.0.1", "::1:80", "[::1]",  "[::1]x:80", "[::1",  "h:65536",
                         "h:abc",     "h:",     "[::1]:", "h:-1",      "h: 80", "h:80:90",
                         "",          ":",      "h:+80",  "h:8o"};
    for (size_t i = 0; i < FG_ARRAY_LEN(bad); i++)
        CHECK(refused_fmt("t.yaml:2:14: listener address", "listeners:\n  - address: '%s'\n" S_ R_,
                          bad[i]));
}

/* "[]" names no host at all: it must not silently mean "any address". */
static void listener_empty_brackets(void)
{
    CHECK(refused_fmt("t.yaml:2:14: listener address", "listeners:\n  - address: '%s'\n" S_ R_,
                      "[]:80"));
}

static void duplicate_listener(void)
{
    REFUSED("listeners:\n  - address: 127.0.0.1:1\n  - address: 127.0.0.1:1\n" S_ R_,
            "t.yaml:3:5: listener address \"127.0.0.1:1\" is listed twice");
}

/* ---- shards ------------------------------------------------------------- */

static void bad_shard_urls(void)
{
    static const char *const cases[][2] = {
        {"s1.internal:6443", "must start with http:// or https://"},
        {"ftp://h", "must start with http:// or https://"},
        {"//h", "must start with http:// or https://"},
        {"http:/h", "must start with http:// or https://"},
        {"http://h?x=1", "must not have a query or fragment"},
        {"http://h/p?x", "must not have a query or fragment"},
        {"http://h#f", "must not have a query or fragment"},
        {"http://h/p#f", "must not have a query or fragment"},
        {"http://u:p@h", "must not contain user information"},
        {"https://u@h:443/x", "must not contain user information"},
        {"http://h:0", "has an invalid port"},
        {"http://h:65536", "has an invalid port"},
        {"http://h:abc", "has an invalid port"},
        {"http://h:", "has an invalid port"},
        {"http://h:80:90", "has an invalid port"},
        {"http://h:-1", "has an invalid port"},
        {"http://[::1]:", "has an invalid port"},
        {"http://", "has no host"},
        {"http://:80", "has no host"},
        {"http:///x", "has no host"},
        {"http://[]:80", "has no host"},
        {"http://[::1", "has an unterminated IPv6 address"},
        {"http://[::1]x", "has junk after the IPv6 address"},
    };
    char want[160];
    for (size_t i = 0; i < FG_ARRAY_LEN(cases); i++) {
        snprintf(want, sizeof(want), "t.yaml:5:10: shard url \"%s\" %s", cases[i][0], cases[i][1]);
        CHECK(refused_fmt(want, L_ "shards:\n  - name: s1\n    url: '%s'\n" R_, cases[i][0]));
    }
}

static void shard_tls_options_need_https(void)
{
    const char *opts[] = {"caFile: ca.crt", "serverName: x.example",
                          "clientCertFile: c.crt\n    clientKeyFile: c.key"};
    for (size_t i = 0; i < FG_ARRAY_LEN(opts); i++)
        CHECK(refused_fmt("t.yaml:4:5: shard \"s1\": caFile, clientCertFile and serverName need "
                          "an https:// url",
                          L_ "shards:\n  - name: s1\n    url: http://s1.internal\n    %s\n" R_,
                          opts[i]));
}

static void shard_client_cert_pair(void)
{
    const char *want = "t.yaml:4:5: shard \"s1\": clientCertFile and clientKeyFile go together";
    REFUSED(L_
            "shards:\n  - name: s1\n    url: https://s1.internal\n    clientCertFile: c.crt\n" R_,
            want);
    REFUSED(L_ "shards:\n  - name: s1\n    url: https://s1.internal\n    clientKeyFile: c.key\n" R_,
            want);
}

static void shard_identity_mode(void)
{
    REFUSED(L_ "shards:\n  - name: s1\n    url: https://s1.internal\n    identity: jwt\n" R_,
            "t.yaml:6:15: shard identity \"jwt\" must be requestHeader, passthrough, none or "
            "mint");
}

static void duplicate_shard_name(void)
{
    REFUSED(L_ "shards:\n  - {name: s1, url: 'http://a'}\n  - {name: s1, url: 'http://b'}\n" R_,
            "t.yaml:5:5: shard name \"s1\" is used twice");
}

/* ---- routes ------------------------------------------------------------- */

static void route_exactly_one_target(void)
{
    const char *want = "t.yaml:7:5: a route needs exactly one of \"workspace\" or \"shard\"";
    REFUSED(L_ S_ "routes:\n  - prefix: /\n    shard: s1\n    workspace: path\n", want);
    REFUSED(L_ S_ "routes:\n  - prefix: /\n", want);
}

static void route_workspace_prefix_slash(void)
{
    REFUSED(L_ S_ "routes:\n  - prefix: /clusters\n    workspace: path\n",
            "t.yaml:7:13: a workspace route prefix must end with '/'");
    struct fg_config *cfg = good(L_ S_ "routes:\n  - prefix: /\n    workspace: path\n");
    CHECK(cfg != NULL);
    fg_config_free(cfg);
}

static void route_workspace_kind(void)
{
    REFUSED(L_ S_ "routes:\n  - prefix: /catalog/\n    workspace: warehouse\n",
            "t.yaml:8:16: route workspace \"warehouse\" must be \"path\" or \"iceberg\"");
}

static void route_prefix_must_be_path(void)
{
    const char *bad[] = {"api", "'/a b'", "'/a?x'", "'/a#x'", "'*'", "'/a\tb'"};
    for (size_t i = 0; i < FG_ARRAY_LEN(bad); i++)
        CHECK(refused_fmt("t.yaml:7:13: route prefix",
                          L_ S_ "routes:\n  - prefix: %s\n    shard: s1\n", bad[i]));
}

static void route_unknown_shard(void)
{
    REFUSED(L_ S_ "routes:\n  - prefix: /\n    shard: nope\n",
            "t.yaml:8:12: route names unknown shard \"nope\"");
}

/* ---- authenticators, authentication, workspace types -------------------- */

static void unknown_authenticator_references(void)
{
    REFUSED(MIN "authentication:\n  global: [nope]\n",
            "t.yaml:10:12: authentication.global names unknown authenticator \"nope\"");
    REFUSED(MIN "workspaceTypes:\n  - name: root:t\n    authenticators: [nope]\n",
            "t.yaml:11:22: workspace type \"root:t\" names unknown authenticator \"nope\"");
}

static void duplicate_authenticator_names(void)
{
    REFUSED(MIN "authenticators:\n  - {name: k, staticKeys: {file: a}}\n"
                "  - {name: k, staticKeys: {file: b}}\n",
            "t.yaml:11:5: authenticator name \"k\" is used twice");
    REFUSED(MIN "authenticators:\n  - {name: k, staticKeys: {file: a}}\n"
                "authentication:\n  global: [k, k]\n",
            "t.yaml:12:15: authenticator \"k\" is listed twice");
}

static void workspace_type_names(void)
{
    REFUSED(MIN "workspaceTypes:\n  - name: Root_T\n    authenticators: []\n",
            "t.yaml:10:11: workspace type name \"Root_T\" must be a kcp path");
    REFUSED(MIN "workspaceTypes:\n  - {name: 'root:t', authenticators: []}\n"
                "  - {name: 'root:t'}\n",
            "t.yaml:11:5: workspace type \"root:t\" is declared twice");
}

static int drop_groups_are(const struct fg_config *cfg, const char *const *want, size_t n)
{
    if (cfg == NULL || cfg->ndrop_groups != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(cfg->drop_groups[i], want[i]) != 0)
            return 0;
    return 1;
}

/* Without dropGroups, kcp's four defaults apply, in kcp's order. */
static void drop_groups_default(void)
{
    static const char *const kcp[] = {"system:masters", "system:kcp:logical-cluster-admin",
                                      "system:kcp:initializer:*", "system:kcp:terminator:*"};
    struct fg_config *cfg = good(MIN);
    CHECK(drop_groups_are(cfg, kcp, 4));
    fg_config_free(cfg);
    cfg = good(MIN "authentication:\n  global: []\n");
    CHECK(drop_groups_are(cfg, kcp, 4));
    fg_config_free(cfg);
}

/* An explicit empty list keeps every group: it is not "use the defaults". */
static void drop_groups_explicit(void)
{
    struct fg_config *cfg = good(MIN "authentication:\n  dropGroups: []\n");
    CHECK(cfg != NULL && cfg->ndrop_groups == 0);
    fg_config_free(cfg);
    static const char *const mine[] = {"system:masters", "oidc:*"};
    cfg = good(MIN "authentication:\n  dropGroups: ['system:masters', 'oidc:*']\n");
    CHECK(drop_groups_are(cfg, mine, 2));
    fg_config_free(cfg);
    REFUSED(MIN "authentication:\n  dropGroups: ['']\n",
            "t.yaml:10:16: authentication.dropGroups entries must be non-empty strings");
    REFUSED(MIN "authentication:\n  dropGroups: [[a]]\n",
            "t.yaml:10:16: authentication.dropGroups entries must be non-empty strings");
}

/* ---- limits and log ----------------------------------------------------- */

static void limits_defaults(void)
{
    struct fg_config *cfg = good(MIN);
    CHECK(cfg != NULL);
    if (cfg == NULL)
        return;
    const struct fg_limits *l = &cfg->limits;
    CHECK(l->max_header_bytes == 65536);
    CHECK(l->header_timeout_ms == 10000);
    CHECK(l->idle_timeout_ms == 90000);
    CHECK(l->max_connections == 10000);
    CHECK(l->connect_timeout_ms == 5000);
    CHECK(l->shutdown_grace_ms == 30000);
    CHECK(l->max_buffer_bytes == 1048576);
    CHECK(l->upstream_idle_timeout_ms == 60000);
    CHECK(l->upstream_max_idle == 256);
    CHECK(l->max_concurrent_streams == 250);
    fg_config_free(cfg);
}

static void limits_set(void)
{
    struct fg_config *cfg = good(MIN "limits:\n"
                                     "  maxHeaderBytes: 128Ki\n"
                                     "  headerTimeout: 2s\n"
                                     "  idleTimeout: 5m\n"
                                     "  maxConnections: 10k\n"
                                     "  connectTimeout: 250ms\n"
                                     "  shutdownGracePeriod: 0\n"
                                     "  maxBufferBytes: 64Ki\n"
                                     "  upstreamIdleTimeout: 1h\n"
                                     "  upstreamMaxIdle: 0\n");
    CHECK(cfg != NULL);
    if (cfg == NULL)
        return;
    const struct fg_limits *l = &cfg->limits;
    CHECK(l->max_header_bytes == 131072);
    CHECK(l->header_timeout_ms == 2000);
    CHECK(l->idle_timeout_ms == 300000);
    CHECK(l->max_connections == 10000);
    CHECK(l->connect_timeout_ms == 250);
    CHECK(l->shutdown_grace_ms == 0);
    CHECK(l->max_buffer_bytes == 65536);
    CHECK(l->upstream_idle_timeout_ms == 3600000);
    CHECK(l->upstream_max_idle == 0);
    fg_config_free(cfg);
    cfg = good(MIN "limits: {maxConcurrentStreams: 1000}\n");
    CHECK(cfg != NULL && cfg->limits.max_concurrent_streams == 1000);
    fg_config_free(cfg);
}

/* The bounds themselves are allowed. */
static void limits_boundaries(void)
{
    struct fg_config *cfg = good(MIN "limits:\n"
                                     "  maxHeaderBytes: 1Ki\n"
                                     "  headerTimeout: 100ms\n"
                                     "  maxConnections: 1\n"
                                     "  connectTimeout: 10m\n"
                                     "  maxBufferBytes: 64Mi\n");
    CHECK(cfg != NULL && cfg->limits.max_header_bytes == 1024 &&
          cfg->limits.header_timeout_ms == 100 && cfg->limits.max_connections == 1 &&
          cfg->limits.connect_timeout_ms == 600000 && cfg->limits.max_buffer_bytes == 67108864);
    fg_config_free(cfg);
    cfg = good(MIN "limits: {maxHeaderBytes: 1Mi, headerTimeout: 1h}\n");
    CHECK(cfg != NULL && cfg->limits.max_header_bytes == 1048576);
    fg_config_free(cfg);
}

static void limits_errors(void)
{
    static const char *const cases[][3] = {
        {"maxHeaderBytes", "512", "must be between 1024 and 1048576"},
        {"maxHeaderBytes", "2Mi", "must be between 1024 and 1048576"},
        {"maxHeaderBytes", "10KB", "must be a number"},
        {"maxHeaderBytes", "-1", "must be a number"},
        {"headerTimeout", "50ms", "must be between 100ms and 3600000ms"},
        {"headerTimeout", "2h", "must be between"},
        {"headerTimeout", "10x", "must be a duration"},
        {"idleTimeout", "25h", "must be between"},
        {"idleTimeout", "1d", "must be a duration"},
        {"maxConnections", "0", "must be between 1 and"},
        {"maxConnections", "17Mi", "must be between 1 and"},
        {"connectTimeout", "9ms", "must be between 10ms"},
        {"connectTimeout", "11m", "must be between 10ms"},
        {"shutdownGracePeriod", "61m", "must be between 0ms"},
        {"maxBufferBytes", "1Ki", "must be between 16384"},
        {"maxBufferBytes", "65Mi", "must be between 16384"},
        {"upstreamIdleTimeout", "99ms", "must be between 100ms"},
        {"upstreamIdleTimeout", "[1]", "must be a duration"},
        {"upstreamMaxIdle", "65537", "must be between 0 and 65536"},
        {"upstreamMaxIdle", "-1", "must be a number"},
        {"maxConcurrentStreams", "0", "must be between 1 and 10000"},
        {"maxConcurrentStreams", "10001", "must be between 1 and 10000"},
    };
    char want[160];
    for (size_t i = 0; i < FG_ARRAY_LEN(cases); i++) {
        snprintf(want, sizeof(want), "t.yaml:10:%zu: \"%s\" %s", strlen(cases[i][0]) + 5,
                 cases[i][0], cases[i][2]);
        CHECK(refused_fmt(want, MIN "limits:\n  %s: %s\n", cases[i][0], cases[i][1]));
    }
}

/* A duration that wraps past UINT64_MAX must not land back inside the range (here: 10s). */
/* A number without a unit is refused wherever a duration is read ("timeout: 5": 5 s or 5 ms?). */
static void durations_need_a_unit(void)
{
    static const char *const cases[][2] = {
        {"limits:\n  headerTimeout: 5\n", "t.yaml:10:18: \"headerTimeout\""},
        {"limits:\n  shutdownGracePeriod: 30\n", "t.yaml:10:24: \"shutdownGracePeriod\""},
        {"authentication:\n  tokenCacheTTL: 10\n", "t.yaml:10:18: \"tokenCacheTTL\""},
        {"authenticators:\n  - name: tr\n    tokenReview: {url: https://k8s, timeout: 5}\n",
         "t.yaml:11:46: \"timeout\""},
        {"authenticators:\n  - name: tr\n    tokenReview: {url: https://k8s, cacheTTL: 120}\n",
         "t.yaml:11:47: \"cacheTTL\""},
        {"authenticators:\n  - name: tr\n"
         "    tokenReview: {url: https://k8s, negativeCacheTTL: 10}\n",
         "t.yaml:11:55: \"negativeCacheTTL\""},
    };
    for (size_t i = 0; i < FG_ARRAY_LEN(cases); i++) {
        struct fg_buf want = {0}, yaml = {0};
        const char *num = strrchr(cases[i][0], ':') + 2;
        fg_buf_printf(&want, "%s: duration needs a unit (ms, s, m, h), such as %.*ss", cases[i][1],
                      (int)strspn(num, "0123456789"), num);
        fg_buf_printf(&yaml, MIN "%s", cases[i][0]);
        REFUSED(yaml.data, want.data);
        fg_buf_free(&want);
        fg_buf_free(&yaml);
    }
    REFUSED("listeners:\n  - address: 127.0.0.1:1\nshards:\n  - name: m\n    url: http://m\n"
            "    identity: mint\n    mint: {issuer: https://i, keyFile: k.pem, audience: a, "
            "ttl: 300}\nroutes:\n  - prefix: /\n    shard: m\n",
            "t.yaml:7:65: \"ttl\": duration needs a unit (ms, s, m, h), such as 300s");
    REFUSED(L_ S_ "routes:\n  - prefix: /cat/\n    workspace: iceberg\n"
                  "    tokenEndpoint: {authenticator: k, expiresIn: 3600}\n",
            "t.yaml:9:50: \"expiresIn\": duration needs a unit (ms, s, m, h), such as 3600s");
    /* 0 needs no unit, and units still work. */
    struct fg_config *cfg = good(MIN "limits:\n  shutdownGracePeriod: 0\n  headerTimeout: 5s\n");
    CHECK(cfg != NULL && cfg->limits.shutdown_grace_ms == 0 &&
          cfg->limits.header_timeout_ms == 5000);
    fg_config_free(cfg);
}

static void limits_duration_wrap(void)
{
    REFUSED(MIN "limits:\n  headerTimeout: 5124095576030h1561616ms\n",
            "t.yaml:10:18: \"headerTimeout\" must be");
}

static void log_settings(void)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    static const int levels[] = {FG_LOG_DEBUG, FG_LOG_INFO, FG_LOG_WARN, FG_LOG_ERROR};
    for (size_t i = 0; i < 4; i++) {
        char y[sizeof(MIN) + 64];
        snprintf(y, sizeof(y), MIN "log: {level: %s, accessLog: true}\n", names[i]);
        struct fg_config *cfg = good(y);
        CHECK(cfg != NULL && cfg->log_level == levels[i] && cfg->access_log == 1);
        fg_config_free(cfg);
    }
    REFUSED(MIN "log: {level: loud}\n",
            "t.yaml:9:14: log level must be debug, info, warn or error");
    REFUSED(MIN "log: {accessLog: maybe}\n",
            "t.yaml:9:18: log.accessLog must be text, json or off");
    REFUSED(MIN "log: {accessLog: \"true\"}\n",
            "t.yaml:9:18: log.accessLog must be text, json or off");
    static const char *const modes[] = {"text", "json", "off", "true", "false"};
    static const int want[] = {FG_ACCESS_LOG_TEXT, FG_ACCESS_LOG_JSON, FG_ACCESS_LOG_OFF,
                               FG_ACCESS_LOG_TEXT, FG_ACCESS_LOG_OFF};
    for (size_t i = 0; i < 5; i++) {
        char y[sizeof(MIN) + 64];
        snprintf(y, sizeof(y), MIN "log: {accessLog: %s}\n", modes[i]);
        struct fg_config *cfg = good(y);
        CHECK(cfg != NULL && cfg->access_log == want[i]);
        fg_config_free(cfg);
    }
}

/* ---- inline workspaces -------------------------------------------------- */

static void workspaces_inline(void)
{
    struct fg_config *cfg = good(MIN "authenticators:\n"
                                     "  - name: ws-keys\n"
                                     "    staticKeys: {file: keys.txt}\n"
                                     "workspaceTypes:\n"
                                     "  - name: root:org:with-keys\n"
                                     "    authenticators: [ws-keys]\n"
                                     "workspaces:\n"
                                     "  - cluster: 2x8ab3xq\n"
                                     "    path: root:org:team\n"
                                     "    shard: s1\n"
                                     "    type: root:org:with-keys\n"
                                     "    warehouse: sales\n"
                                     "  - cluster: root\n"
                                     "    path: root\n"
                                     "    shard: s1\n"
                                     "    phase: unavailable\n"
                                     "  - {cluster: plain, shard: s1, phase: Ready}\n");
    CHECK(cfg != NULL);
    if (cfg == NULL)
        return;
    CHECK(fg_index_count(cfg->index) == 3);
    const struct fg_workspace *w = fg_index_by_path(cfg->index, "root:org:team", 13);
    CHECK(w != NULL && strcmp(w->cluster, "2x8ab3xq") == 0);
    CHECK(w != NULL && w->shard == 0 && w->type == 0 && w->phase == FG_WS_READY);
    CHECK(fg_index_by_warehouse(cfg->index, "sales", 5) == w);
    w = fg_index_by_cluster(cfg->index, "root", 4);
    CHECK(w != NULL && w->phase == FG_WS_UNAVAILABLE && w->type == FG_WS_NO_TYPE);
    w = fg_index_by_cluster(cfg->index, "plain", 5);
    CHECK(w != NULL && w->path == NULL && w->warehouse == NULL && w->phase == FG_WS_READY);
    fg_config_free(cfg);
}

static void workspace_field_errors(void)
{
    REFUSED(MIN "workspaces:\n  - cluster: Bad_Name\n    shard: s1\n",
            "t.yaml:10:14: cluster \"Bad_Name\" is not a valid logical cluster name");
    REFUSED(MIN "workspaces:\n  - cluster: c1\n    path: root::x\n    shard: s1\n",
            "t.yaml:11:11: path \"root::x\" is not a valid workspace path");
    REFUSED(MIN "workspaces:\n  - cluster: c1\n    shard: s1\n    phase: Gone\n",
            "t.yaml:12:12: phase \"Gone\" must be Ready or Unavailable");
    REFUSED(MIN "workspaces:\n  - cluster: c1\n    shard: nope\n",
            "t.yaml:11:12: unknown shard \"nope\"");
    REFUSED(MIN "workspaces:\n  - cluster: c1\n    shard: s1\n    type: root:nope\n",
            "t.yaml:12:11: unknown workspace type \"root:nope\"");
}

/* Errors about the entry as a whole point at the entry, like every other list item's. */
static void workspace_entry_errors(void)
{
    REFUSED(MIN "workspaces:\n  - path: root:x\n    shard: s1\n",
            "t.yaml:10:5: workspace needs a cluster");
    REFUSED(MIN "workspaces:\n  - cluster: c1\n", "t.yaml:10:5: workspace \"c1\" needs a shard");
}

static void workspace_duplicates(void)
{
    REFUSED(MIN "workspaces:\n  - {cluster: c1, shard: s1}\n  - {cluster: c1, shard: s1}\n",
            "t.yaml:11:15: cluster \"c1\" is listed twice");
    REFUSED(MIN "workspaces:\n  - {cluster: c1, path: root:a, shard: s1}\n"
                "  - {cluster: c2, path: root:a, shard: s1}\n",
            "t.yaml:11:25: path \"root:a\" is listed twice");
    REFUSED(MIN "workspaces:\n  - {cluster: c1, warehouse: w, shard: s1}\n"
                "  - {cluster: c2, warehouse: w, shard: s1}\n",
            "t.yaml:11:30: warehouse \"w\" is listed twice");
}

/* ---- the index file ----------------------------------------------------- */

#define IXCFG MIN "workspaceTypes:\n  - {name: 'root:t', authenticators: []}\n"

/* Loads text as an index file into a fresh config from cfg_yaml; errors in errs. */
static struct fg_config *load_index(const char *cfg_yaml, const char *text, size_t len,
                                    struct fg_errs *errs, int *rc, char **path)
{
    struct fg_config *cfg = good(cfg_yaml);
    *path = write_file("ws.tsv", text, len);
    *rc = cfg ? fg_config_load_index(cfg, *path, errs) : -2;
    return cfg;
}

/* True when the index text is refused with an error "<path><want>", all errors located. */
static int index_refused_in(const char *cfg_yaml, const char *text, const char *want)
{
    struct fg_errs errs = {0};
    char *path;
    int rc;
    struct fg_config *cfg = load_index(cfg_yaml, text, strlen(text), &errs, &rc, &path);
    struct fg_buf w = {0};
    fg_buf_printf(&w, "%s%s", path, want);
    int found = 0, all = errs.n > 0;
    for (size_t i = 0; i < errs.n; i++) {
        found |= strncmp(errs.msgs[i], w.data, w.len) == 0;
        all &= located(errs.msgs[i], path);
    }
    int ok = rc == -1 && found && all;
    if (!ok) {
        printf("#   want \"%s\" (rc %d), errors:\n", w.data, rc);
        dump(&errs);
    }
    fg_buf_free(&w);
    free(path);
    fg_config_free(cfg);
    fg_errs_free(&errs);
    return ok;
}

#define INDEX_REFUSED(text, want) CHECK(index_refused_in(IXCFG, (text), (want)))

static void index_file_good(void)
{
    const char *text = "# exported from kcp\r\n"
                       "cluster\tpath\tshard\ttype\tphase\twarehouse\r\n"
                       "c1\troot:a\ts1\troot:t\tReady\twh1\r\n"
                       "\r\n"
                       "# a comment between entries\n"
                       "c2\t-\ts1\t-\tUnavailable\t\n"
                       "c3\troot:b\ts1\n";
    struct fg_errs errs = {0};
    char *path;
    int rc;
    struct fg_config *cfg = load_index(IXCFG, text, strlen(text), &errs, &rc, &path);
    CHECK(rc == 0 && errs.n == 0);
    dump(&errs);
    if (cfg && rc == 0) {
        CHECK(fg_index_count(cfg->index) == 3);
        const struct fg_workspace *w = fg_index_by_path(cfg->index, "root:a", 6);
        CHECK(w != NULL && strcmp(w->cluster, "c1") == 0 && w->type == 0 &&
              w->phase == FG_WS_READY && w->shard == 0);
        CHECK(w != NULL && w->warehouse != NULL && strcmp(w->warehouse, "wh1") == 0);
        w = fg_index_by_cluster(cfg->index, "c2", 2);
        CHECK(w != NULL && w->path == NULL && w->type == FG_WS_NO_TYPE && w->warehouse == NULL &&
              w->phase == FG_WS_UNAVAILABLE);
        w = fg_index_by_cluster(cfg->index, "c3", 2);
        CHECK(w != NULL && w->path != NULL && strcmp(w->path, "root:b") == 0);
    }
    free(path);
    fg_config_free(cfg);
    fg_errs_free(&errs);
}

/* Columns may come in any order; the header says which is which. */
static void index_file_column_order(void)
{
    const char *text = "shard\tcluster\ns1\tc9\n";
    struct fg_errs errs = {0};
    char *path;
    int rc;
    struct fg_config *cfg = load_index(IXCFG, text, strlen(text), &errs, &rc, &path);
    CHECK(rc == 0 && cfg && fg_index_by_cluster(cfg->index, "c9", 2) != NULL);
    free(path);
    fg_config_free(cfg);
    fg_errs_free(&errs);
}

static void index_file_header_errors(void)
{
    INDEX_REFUSED("cluster\tshard\towner\nc1\ts1\t-\n", ":1:15: unknown column \"owner\"");
    INDEX_REFUSED("cluster\tshard\tcluster\n", ":1:15: repeated column \"cluster\"");
    INDEX_REFUSED("cluster\tpath\nc1\troot:a\n",
                  ":1:1: the header line must name at least the cluster and shard");
    INDEX_REFUSED("cluster\tpath\tshard\ttype\tphase\twarehouse\textra\n",
                  ":1:1: header has 7 columns");
    INDEX_REFUSED("Cluster\tShard\n", ":1:1: unknown column \"Cluster\"");
}

/* A file that starts with data has no header: its first field is not a column name. */
static void index_file_missing_header(void)
{
    INDEX_REFUSED("c1\ts1\n", ":1:1: unknown column \"c1\"");
    INDEX_REFUSED("# only\n# comments\n\nc1\ts1\n", ":4:1: unknown column \"c1\"");
}

static void index_file_empty(void)
{
    const char *texts[] = {"", "# nothing here\n\n"};
    for (size_t i = 0; i < FG_ARRAY_LEN(texts); i++) {
        struct fg_errs errs = {0};
        char *path;
        int rc;
        struct fg_config *cfg = load_index(IXCFG, texts[i], strlen(texts[i]), &errs, &rc, &path);
        CHECK(rc == -1 && errs.n == 1);
        CHECK_CONTAINS(errs.n ? errs.msgs[0] : NULL, "no header line");
        CHECK(errs.n && strncmp(errs.msgs[0], path, strlen(path)) == 0);
        free(path);
        fg_config_free(cfg);
        fg_errs_free(&errs);
    }
}

static void index_file_field_errors(void)
{
    INDEX_REFUSED("cluster\tshard\nc1\ts1\textra\n",
                  ":2:7: 3 fields but the header names 2 columns");
    INDEX_REFUSED("cluster\tshard\nBad!\ts1\n",
                  ":2:1: cluster \"Bad!\" is not a valid logical cluster name");
    INDEX_REFUSED("cluster\tshard\tpath\nc1\ts1\troot::x\n",
                  ":2:7: path \"root::x\" is not a valid");
    INDEX_REFUSED("cluster\tshard\nc1\tnope\n", ":2:4: unknown shard \"nope\"");
    INDEX_REFUSED("cluster\tshard\ttype\nc1\ts1\troot:nope\n",
                  ":2:7: unknown workspace type \"root:nope\"");
    INDEX_REFUSED("cluster\tshard\tphase\nc1\ts1\tGone\n",
                  ":2:7: phase \"Gone\" must be Ready or Unavailable");
    INDEX_REFUSED("cluster\tshard\nc1\n", ":2:1: workspace \"c1\" needs a shard");
    INDEX_REFUSED("cluster\tshard\nc1\t-\n", ":2:1: workspace \"c1\" needs a shard");
    INDEX_REFUSED("cluster\tshard\n-\ts1\n", ":2:1: workspace needs a cluster");
}

static void index_file_duplicates(void)
{
    INDEX_REFUSED("cluster\tshard\nc1\ts1\nc1\ts1\n", ":3:1: cluster \"c1\" is listed twice");
    INDEX_REFUSED("cluster\tshard\tpath\nc1\ts1\troot:a\nc2\ts1\troot:a\n",
                  ":3:7: path \"root:a\" is listed twice");
    INDEX_REFUSED("cluster\tshard\twarehouse\nc1\ts1\tw\nc2\ts1\tw\n",
                  ":3:7: warehouse \"w\" is listed twice");
    /* The file and the inline list share one index. */
    CHECK(index_refused_in(MIN "workspaces: [{cluster: c1, shard: s1}]\n",
                           "cluster\tshard\nc1\ts1\n", ":2:1: cluster \"c1\" is listed twice"));
}

/* Line numbers count comments, blank lines and CRLF lines; '\r' never joins a field. */
static void index_file_line_numbers(void)
{
    INDEX_REFUSED("# c\r\n\r\ncluster\tshard\r\n# x\r\nc1\tnope\r\n",
                  ":5:4: unknown shard \"nope\"");
}

static void index_file_every_bad_line(void)
{
    struct fg_errs errs = {0};
    char *path;
    int rc;
    const char *text = "cluster\tshard\nBAD\ts1\nok\ts1\nc2\tnope\n";
    struct fg_config *cfg = load_index(IXCFG, text, strlen(text), &errs, &rc, &path);
    CHECK(rc == -1 && errs.n == 2);
    free(path);
    fg_config_free(cfg);
    fg_errs_free(&errs);
}

static void index_file_unreadable(void)
{
    struct fg_config *cfg = good(IXCFG);
    struct fg_errs errs = {0};
    char path[64];
    snprintf(path, sizeof(path), "%s/missing.tsv", tmpdir);
    CHECK(cfg && fg_config_load_index(cfg, path, &errs) == -1);
    CHECK(errs.n == 1);
    CHECK_CONTAINS(errs.n ? errs.msgs[0] : NULL, path);
    CHECK_CONTAINS(errs.n ? errs.msgs[0] : NULL, "cannot read index file");
    fg_config_free(cfg);
    fg_errs_free(&errs);
}

/* An editor that turns tabs into spaces: said in so many words, at the first space. */
static void index_file_spaces_for_tabs(void)
{
    const char *why = "columns are separated by tabs, not spaces (the index file is tab-separated)";
    struct fg_buf want = {0};
    fg_buf_printf(&want, ":1:8: %s", why);
    INDEX_REFUSED("cluster path shard\nc1 root:a s1\n", want.data);
    fg_buf_reset(&want);
    fg_buf_printf(&want, ":3:3: %s", why);
    INDEX_REFUSED("cluster\tshard\nc1\ts1\nc2 s1\n", want.data);
    fg_buf_free(&want);
}

/* A directory where a file belongs: "is a directory", not "Input/output error". */
static void config_is_a_directory(void)
{
    struct fg_errs errs = {0};
    size_t len = 7;
    errno = 0;
    CHECK(fg_read_file(tmpdir, &len) == NULL && errno == EISDIR && len == 7);
    CHECK(fg_config_load(tmpdir, &errs) == NULL && errs.n == 1);
    struct fg_buf want = {0};
    fg_buf_printf(&want,
                  "%s: cannot read config: is a directory (-c takes the config file itself, such "
                  "as %s/frontgate.yaml)",
                  tmpdir, tmpdir);
    CHECK_STR(errs.n ? errs.msgs[0] : NULL, want.data);
    fg_errs_free(&errs);
    fg_buf_reset(&want);
    fg_buf_printf(&want, "%s/nope.yaml", tmpdir);
    CHECK(fg_config_load(want.data, &errs) == NULL && errs.n == 1);
    fg_buf_adds(&want, ": cannot read config: no such file or directory");
    CHECK_STR(errs.n ? errs.msgs[0] : NULL, want.data);
    fg_errs_free(&errs);
    fg_buf_free(&want);
    CHECK_STR(fg_file_reason(ENOENT), "no such file or directory");
    CHECK_STR(fg_file_reason(EACCES), "permission denied");
    CHECK_STR(fg_file_reason(EISDIR), "is a directory");
    errno = 0;
    CHECK(fg_file_check(tmpdir) == -1 && errno == EISDIR);
}

/* Every file the config names keeps where it is named: its errors point there. */
static void file_marks(void)
{
    const char *y = "listeners:\n"
                    "  - address: 127.0.0.1:1\n"
                    "    tls: {certFile: a.crt, keyFile: a.key, clientCAFile: ca.crt}\n"
                    "shards:\n"
                    "  - name: s1\n"
                    "    url: https://s1\n"
                    "    caFile: s.ca\n"
                    "    clientCertFile: c.crt\n"
                    "    clientKeyFile: c.key\n" R_ "authenticators:\n"
                    "  - name: k\n"
                    "    staticKeys: {file: keys.txt}\n"
                    "  - name: tr\n"
                    "    tokenReview: {url: https://k, caFile: k.ca, tokenFile: tok}\n";
    struct fg_config *cfg = good(y);
    CHECK(cfg != NULL);
    if (cfg == NULL)
        return;
    const struct fg_tls_cfg *t = &cfg->listeners[0].tls_cfg;
    CHECK(t->cert_mark.line == 3 && t->cert_mark.col == 21);
    CHECK(t->key_mark.line == 3 && t->key_mark.col == 37);
    CHECK(t->client_ca_mark.line == 3 && t->client_ca_mark.col == 58);
    const struct fg_shard_cfg *sh = &cfg->shards[0];
    CHECK(sh->ca_mark.line == 7 && sh->ca_mark.col == 13);
    CHECK(sh->client_cert_mark.line == 8 && sh->client_cert_mark.col == 21);
    CHECK(sh->client_key_mark.line == 9 && sh->client_key_mark.col == 20);
    const struct fg_mark *m = &cfg->authns[0].static_keys.file_mark;
    CHECK(m->line == 15 && m->col == 24 && strcmp(m->file, "t.yaml") == 0);
    const struct fg_tokenreview_cfg *tr = cfg->authns[1].token_review;
    CHECK(tr->ca_mark.line == 17 && tr->ca_mark.col == 43);
    CHECK(tr->token_mark.line == 17 && tr->token_mark.col == 60);
    fg_config_free(cfg);
}

/* ---- indexFile from the config, and relative paths ---------------------- */

/* A relative indexFile is found next to the config, wherever the process runs. */
static void index_file_relative_to_config(void)
{
    const char *ix = "cluster\tshard\nc9\ts1\n";
    char *ixpath = write_file("ws.tsv", ix, strlen(ix));
    const char *y = MIN "indexFile: ws.tsv\n";
    char *cpath = write_file("frontgate.yaml", y, strlen(y));
    struct fg_errs errs = {0};
    struct fg_config *cfg = fg_config_load(cpath, &errs);
    dump(&errs);
    CHECK(cfg != NULL);
    if (cfg) {
        CHECK_STR(cfg->dir, tmpdir);
        CHECK_STR(cfg->index_file, "ws.tsv");
        CHECK(fg_index_by_cluster(cfg->index, "c9", 2) != NULL);
    }
    fg_config_free(cfg);
    remove_file("frontgate.yaml");
    free(cpath);
    free(ixpath);
    fg_errs_free(&errs);
}

/* fg_config_parse takes its base directory from the name it is given. */
static void index_file_parse_base_dir(void)
{
    const char *ix = "cluster\tshard\nc9\ts1\n";
    char *ixpath = write_file("ws.tsv", ix, strlen(ix));
    struct fg_buf name = {0};
    fg_buf_printf(&name, "%s/not-on-disk.yaml", tmpdir);
    const char *y = MIN "indexFile: ws.tsv\n";
    struct fg_errs errs = {0};
    struct fg_config *cfg = fg_config_parse(name.data, y, strlen(y), &errs);
    CHECK(cfg != NULL && fg_index_by_cluster(cfg->index, "c9", 2) != NULL);
    fg_config_free(cfg);
    /* An absolute indexFile ignores the config's directory. */
    struct fg_buf abs = {0};
    fg_buf_printf(&abs, MIN "indexFile: %s\n", ixpath);
    cfg = fg_config_parse("elsewhere/t.yaml", abs.data, abs.len, &errs);
    CHECK(cfg != NULL && fg_index_by_cluster(cfg->index, "c9", 2) != NULL);
    dump(&errs);
    fg_config_free(cfg);
    fg_buf_free(&abs);
    fg_buf_free(&name);
    free(ixpath);
    fg_errs_free(&errs);
}

/* Index errors refuse the whole config and name the index file's own lines. */
static void index_file_errors_through_config(void)
{
    const char *ix = "cluster\tshard\nc1\ts1\nc2\tnope\n";
    char *ixpath = write_file("ws.tsv", ix, strlen(ix));
    struct fg_buf name = {0}, want = {0};
    fg_buf_printf(&name, "%s/t.yaml", tmpdir);
    fg_buf_printf(&want, "%s:3:4: unknown shard \"nope\"", ixpath);
    const char *y = MIN "indexFile: ws.tsv\n";
    struct fg_errs errs = {0};
    struct fg_config *cfg = fg_config_parse(name.data, y, strlen(y), &errs);
    CHECK(cfg == NULL && errs.n == 1);
    CHECK_STR(errs.n ? errs.msgs[0] : NULL, want.data);
    fg_config_free(cfg);
    fg_errs_free(&errs);
    cfg = fg_config_parse(name.data, MIN "indexFile: missing.tsv\n",
                          strlen(MIN "indexFile: missing.tsv\n"), &errs);
    CHECK(cfg == NULL && errs.n == 1);
    /* A file that cannot be read is reported where the config names it, with the reason. */
    fg_buf_reset(&want);
    fg_buf_printf(&want,
                  "%s:9:12: %s/missing.tsv: cannot read index file: no such file or directory",
                  name.data, tmpdir);
    CHECK_STR(errs.n ? errs.msgs[0] : NULL, want.data);
    fg_config_free(cfg);
    fg_errs_free(&errs);
    fg_buf_free(&name);
    fg_buf_free(&want);
    free(ixpath);
}

/* A broken config is reported alone: the index is not read on top of it. */
static void index_file_skipped_on_config_errors(void)
{
    struct fg_errs errs = {0};
    struct fg_config *cfg = parse(MIN "bogus: 1\nindexFile: does-not-exist.tsv\n", &errs);
    CHECK(cfg == NULL && errs.n == 1);
    CHECK_CONTAINS(errs.n ? errs.msgs[0] : NULL, "bogus");
    fg_errs_free(&errs);
}

static void config_paths(void)
{
    struct fg_config *cfg = good(MIN);
    char *p = cfg ? fg_config_path(cfg, "keys.txt") : NULL;
    CHECK_STR(p, "./keys.txt");
    free(p);
    fg_config_free(cfg);
    struct fg_errs errs = {0};
    cfg = fg_config_parse("a/b/c.yaml", MIN, strlen(MIN), &errs);
    CHECK(cfg != NULL && strcmp(cfg->dir, "a/b") == 0);
    p = cfg ? fg_config_path(cfg, "keys.txt") : NULL;
    CHECK_STR(p, "a/b/keys.txt");
    free(p);
    p = cfg ? fg_config_path(cfg, "/etc/keys.txt") : NULL;
    CHECK_STR(p, "/etc/keys.txt");
    free(p);
    fg_config_free(cfg);
    cfg = fg_config_parse("/c.yaml", MIN, strlen(MIN), &errs);
    CHECK(cfg != NULL && strcmp(cfg->dir, "/") == 0);
    fg_config_free(cfg);
    fg_errs_free(&errs);
}

/* Last: on a buggy build this one reads out of bounds, which aborts under ASan. */
static void route_empty_prefix(void)
{
    REFUSED(L_ S_ "routes:\n  - prefix: ''\n    workspace: path\n",
            "t.yaml:7:13: route prefix \"\" must be a path starting with '/'");
    REFUSED(L_ S_ "routes:\n  - prefix: ''\n    shard: s1\n",
            "t.yaml:7:13: route prefix \"\" must be a path starting with '/'");
}

/* A jwt issuer entry whose url (line 13, column 14) is url. */
#define JWT_ISSUER_AT(url)                                                                         \
    MIN "authenticators:\n  - name: sso\n    jwt:\n      issuer:\n        url: " url               \
        "\n        audiences: [a]\n      claimMappings:\n        username: {claim: sub, prefix: "  \
        "''}\n"

/* http:// issuers only for loopback, by config/base.h's one rule: exact host, a real port. */
static void jwt_issuer_loopback_http(void)
{
    static const char *const ok[] = {"http://127.0.0.1:8080", "http://localhost/",
                                     "http://[::1]:9000", "https://idp.example"};
    static const char *const bad[] = {"http://localhost.evil.example/", "http://127.0.0.1.evil/",
                                      "http://127.0.0.10/", "http://localhost:99999",
                                      "http://[::1]x/"};
    for (size_t i = 0; i < FG_ARRAY_LEN(ok); i++) {
        struct fg_buf y = {0};
        fg_buf_printf(&y, JWT_ISSUER_AT("%s"), ok[i]);
        struct fg_config *cfg = good(y.data);
        CHECK(cfg != NULL);
        fg_config_free(cfg);
        fg_buf_free(&y);
    }
    for (size_t i = 0; i < FG_ARRAY_LEN(bad); i++) {
        struct fg_buf want = {0};
        fg_buf_printf(&want, "t.yaml:13:14: jwt.issuer.url \"%s\" must use https://", bad[i]);
        CHECK(refused_fmt(want.data, JWT_ISSUER_AT("%s"), bad[i]));
        fg_buf_free(&want);
    }
}

int main(void)
{
    /* A sanitizer abort must not swallow the results already printed. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    RUN(minimal_config);
    RUN(jwt_issuer_loopback_http);
    RUN(full_config);
    RUN(explicit_document_markers);
    RUN(shard_url_forms);
    RUN(listener_address_forms);
    RUN(listener_http2);
    RUN(shard_protocol);
    RUN(unknown_key_top_level);
    RUN(unknown_key_listener);
    RUN(unknown_key_shard);
    RUN(unknown_key_route);
    RUN(unknown_key_authenticator);
    RUN(unknown_key_authentication);
    RUN(unknown_key_workspace_type);
    RUN(unknown_key_limits);
    RUN(unknown_key_log);
    RUN(unknown_key_workspace);
    RUN(missing_listeners);
    RUN(missing_listener_fields);
    RUN(missing_shard_fields);
    RUN(missing_routes);
    RUN(missing_authenticator_fields);
    RUN(empty_document);
    RUN(duplicate_keys);
    RUN(wrong_types);
    RUN(workers_range);
    RUN(anchors_refused);
    RUN(aliases_refused);
    RUN(multi_document_refused);
    RUN(yaml_syntax_errors);
    RUN(yaml_tab_indentation);
    RUN(yaml_nesting_bounded);
    RUN(root_must_be_mapping);
    RUN(nul_byte_in_string);
    RUN(bad_listener_addresses);
    RUN(listener_empty_brackets);
    RUN(duplicate_listener);
    RUN(bad_shard_urls);
    RUN(shard_tls_options_need_https);
    RUN(shard_client_cert_pair);
    RUN(shard_identity_mode);
    RUN(duplicate_shard_name);
    RUN(route_exactly_one_target);
    RUN(route_workspace_prefix_slash);
    RUN(route_workspace_kind);
    RUN(route_prefix_must_be_path);
    RUN(route_unknown_shard);
    RUN(unknown_authenticator_references);
    RUN(duplicate_authenticator_names);
    RUN(workspace_type_names);
    RUN(drop_groups_default);
    RUN(drop_groups_explicit);
    RUN(limits_defaults);
    RUN(limits_set);
    RUN(limits_boundaries);
    RUN(limits_errors);
    RUN(limits_duration_wrap);
    RUN(durations_need_a_unit);
    RUN(log_settings);
    RUN(workspaces_inline);
    RUN(workspace_field_errors);
    RUN(workspace_entry_errors);
    RUN(workspace_duplicates);
    RUN(index_file_good);
    RUN(index_file_column_order);
    RUN(index_file_header_errors);
    RUN(index_file_missing_header);
    RUN(index_file_empty);
    RUN(index_file_field_errors);
    RUN(index_file_duplicates);
    RUN(index_file_line_numbers);
    RUN(index_file_every_bad_line);
    RUN(index_file_unreadable);
    RUN(index_file_spaces_for_tabs);
    RUN(config_is_a_directory);
    RUN(file_marks);
    RUN(index_file_relative_to_config);
    RUN(index_file_parse_base_dir);
    RUN(index_file_errors_through_config);
    RUN(index_file_skipped_on_config_errors);
    RUN(config_paths);
    /* Cleaned up before the last test, which needs no files and may abort. */
    remove_file("ws.tsv");
    rmdir(tmpdir);
    RUN(route_empty_prefix);
    DONE();
}
