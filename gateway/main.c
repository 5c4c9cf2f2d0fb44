/*
 * main.c - the command line: run, check, demo, hash-key, echo-shard.
 */
#include "../auth/statickeys.h"
#include "../config/config.h"
#include "broker.h"
#include "tokencmd.h"
#include "certgen.h"
#include "echo.h"
#include "server.h"
#include "snapshot.h"
#include "tls.h"

#include <errno.h>
#include <netdb.h>
#include <sys/socket.h>
#include <event2/thread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef FG_VERSION
#define FG_VERSION "dev"
#endif

static const char usage[] =
    "frontgate " FG_VERSION " - an authentication front proxy for API servers\n"
    "\n"
    "Usage:\n"
    "  frontgate [run] -c FILE        run the proxy with a config file\n"
    "  frontgate check -c FILE        validate a config and everything it names\n"
    "  frontgate demo [--listen ADDR] [--tls-listen ADDR]\n"
    "                                 run an embedded demo (echo shard, workspace, fresh key)\n"
    "  frontgate hash-key [--id NAME] [--groups G1,G2]\n"
    "                                 print a new API key and its key-file line\n"
    "  frontgate broker --token-file PATH [--listen 127.0.0.1:9876] [--expires-in 60]\n"
    "                                 a loopback OAuth2 token endpoint serving a token file\n"
    "  frontgate token (--issuer URL | --token-url URL) --client-id ID\n"
    "                  --client-secret-file F (--out FILE | --exec-credential)\n"
    "                                 OAuth2 client credentials for files or kubectl\n"
    "  frontgate echo-shard [--listen ADDR]\n"
    "                                 run the built-in echo shard on its own\n"
    "  frontgate --version | --help\n"
    "\n"
    "Every command takes --help (frontgate run --help: flags and signals).\n"
    "Signals: SIGHUP reloads the config, key files, index and certificates (a bad\n"
    "edit keeps the running config); SIGTERM or SIGINT finish in-flight requests\n"
    "within limits.shutdownGracePeriod and exit. See README.md for the config reference.\n";

static const char run_usage[] =
    "Usage: frontgate [run] -c FILE\n"
    "\n"
    "Runs the proxy. The config and everything it names (key files, the workspace\n"
    "index, certificates and keys) are loaded and checked first, as `frontgate check`\n"
    "does: on any error frontgate prints file:line:column: message and does not start.\n"
    "\n"
    "Flags:\n"
    "  -c, --config FILE   the YAML config (also --config=FILE); relative paths in it\n"
    "                      resolve against its directory\n"
    "  -h, --help          this text\n"
    "\n"
    "Signals:\n"
    "  SIGHUP           reload the config file, key files, the workspace index, TLS\n"
    "                   certificates and keys, authenticators, routes, shards, limits\n"
    "                   and log settings into a new snapshot, swapped in atomically;\n"
    "                   requests already running finish on the one they started with.\n"
    "                   A reload with any error keeps the running config whole and logs\n"
    "                   each error; so does one that would drop every authenticator,\n"
    "                   every global authenticator or every workspace.\n"
    "                   Needs a restart: listeners (address, TLS on or off) and workers.\n"
    "  SIGTERM, SIGINT  graceful drain: stop accepting, close idle connections, let\n"
    "                   in-flight requests finish within limits.shutdownGracePeriod\n"
    "                   (default 30s), then exit 0.\n"
    "\n"
    "Probes: /healthz answers 200 while the process runs; /readyz answers 200 once every\n"
    "authenticator has what it needs (the signing keys of each JWT issuer, unless\n"
    "requireReady: false), and 503 while draining.\n";

static const char check_usage[] =
    "Usage: frontgate check -c FILE\n"
    "\n"
    "Loads the config and everything it names (key files, the workspace index,\n"
    "certificates, keys and CA files, token files) without listening or contacting\n"
    "any peer. Prints one line per problem, file:line:column: message, then\n"
    "\"FILE: N error(s)\" and exits 1; or a one-line summary and exits 0.\n"
    "\n"
    "Flags:\n"
    "  -c, --config FILE   the YAML config (also --config=FILE)\n"
    "  -h, --help          this text\n"
    "\n"
    "Exit status: 0 valid, 1 invalid, 2 bad usage.\n";

/* -c FILE from argv; 1 after --help (printed), 2 after a usage error (said), else 0. */
static int config_arg(int argc, char **argv, const char *cmd, const char *help, const char **file)
{
    *file = NULL;
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            *file = argv[++i];
        } else if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) {
            fprintf(stderr, "frontgate %s: %s needs a file name: %s FILE\n", cmd, argv[i], argv[i]);
            return 2;
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            *file = argv[i] + 9;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(help, stdout);
            return 1;
        } else if (argv[i][0] != '-') {
            fprintf(stderr,
                    "frontgate %s: unexpected argument \"%s\"; the config is given with -c: "
                    "frontgate %s -c %s\n",
                    cmd, argv[i], cmd, argv[i]);
            return 2;
        } else {
            fprintf(stderr, "frontgate %s: unknown flag \"%s\" (try frontgate %s --help)\n", cmd,
                    argv[i], cmd);
            return 2;
        }
    }
    if (*file == NULL || (*file)[0] == '\0') {
        fprintf(stderr,
                "frontgate %s: which config? give it with -c FILE, for example: frontgate %s "
                "-c frontgate.yaml\n",
                cmd, cmd);
        return 2;
    }
    return 0;
}

static int cmd_run(int argc, char **argv)
{
    const char *file;
    int rc = config_arg(argc, argv, "run", run_usage, &file);
    if (rc)
        return rc == 1 ? 0 : rc;
    struct fg_errs errs = {0};
    struct fg_control ctl;
    if (fg_control_init(&ctl) != 0) {
        fg_log(FG_LOG_ERROR, "cannot create the control event loop");
        return 1;
    }
    struct fg_snapshot *s = fg_snapshot_load(file, 1, ctl.fetcher, &errs);
    if (s == NULL) {
        for (size_t i = 0; i < errs.n; i++)
            fg_log(FG_LOG_ERROR, "%s", errs.msgs[i]);
        fg_log(FG_LOG_ERROR, "not starting: the configuration has %zu error(s)", errs.n);
        fg_errs_free(&errs);
        fg_control_free(&ctl);
        return 1;
    }
    rc = fg_server_run(file, s, &ctl, NULL, NULL);
    fg_control_free(&ctl);
    return rc;
}

static int cmd_check(int argc, char **argv)
{
    const char *file;
    int rc = config_arg(argc, argv, "check", check_usage, &file);
    if (rc)
        return rc == 1 ? 0 : rc;
    struct fg_errs errs = {0};
    struct fg_snapshot *s = fg_snapshot_load(file, 1, NULL, &errs);
    if (s == NULL) {
        fg_errs_print(&errs, 0);
        fprintf(stderr, "%s: %zu error(s)\n", file, errs.n);
        fg_errs_free(&errs);
        return 1;
    }
    const struct fg_config *c = s->cfg;
    printf("%s: ok (%zu listeners, %zu shards, %zu routes, %zu workspaces, %zu authenticators)\n",
           file, c->nlisteners, c->nshards, c->nroutes, fg_index_count(c->index), c->nauthns);
    fg_snapshot_unref(s);
    return 0;
}

static int cmd_hash_key(int argc, char **argv)
{
    const char *id = NULL, *groups = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--id") == 0 && i + 1 < argc) {
            id = argv[++i];
        } else if (strcmp(argv[i], "--groups") == 0 && i + 1 < argc) {
            groups = argv[++i];
        } else if (strcmp(argv[i], "--id") == 0 || strcmp(argv[i], "--groups") == 0) {
            fprintf(stderr, "frontgate hash-key: %s needs a value\n", argv[i]);
            return 2;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf(
                "Usage: frontgate hash-key [--id NAME] [--groups G1,G2]\n\n"
                "Prints a new random API key (shown once: hand it to the caller) and the\n"
                "line to add to a staticKeys file (only the SHA-256 of the key is stored):\n"
                "  key: fgk_...\n  line: NAME:<sha256-hex>[:G1,G2]\n\n"
                "Flags:\n"
                "  --id NAME       the key id: letters, digits and . _ - @ + / (default:\n"
                "                  key-<8 random hex digits>); the user is usernamePrefix + NAME\n"
                "  --groups G1,G2  comma-separated groups of the identity (no spaces)\n"
                "  -h, --help      this text\n");
            return 0;
        } else {
            fprintf(stderr, "frontgate hash-key: unknown argument \"%s\" (try --help)\n", argv[i]);
            return 2;
        }
    }
    if (id != NULL && strchr(id, ':') != NULL) {
        fprintf(stderr,
                "frontgate hash-key: --id \"%s\" cannot contain ':' (it separates the fields of a "
                "key-file line, NAME:<sha256>:GROUPS); use letters, digits and . _ - @ + /\n",
                id);
        return 2;
    }
    if (id != NULL && id[0] == '\0') {
        fprintf(stderr, "frontgate hash-key: --id is empty\n");
        return 2;
    }
    char key[64], hex[65], idbuf[32];
    if (id == NULL) {
        unsigned char r[4];
        fg_random(r, sizeof(r));
        snprintf(idbuf, sizeof(idbuf), "key-%02x%02x%02x%02x", r[0], r[1], r[2], r[3]);
        id = idbuf;
    }
    fg_statickeys_generate(key, sizeof(key), hex, sizeof(hex));
    struct fg_buf line = {0};
    fg_buf_printf(&line, "%s:%s%s%s", id, hex, groups ? ":" : "", groups ? groups : "");
    /* The parser is the judge of what a valid line is. */
    struct fg_errs errs = {0};
    struct fg_statickeys *ks =
        fg_statickeys_parse("--id/--groups", line.data, line.len, NULL, "hash-key", &errs);
    if (ks == NULL) {
        fg_errs_print(&errs, 0);
        fg_errs_free(&errs);
        fg_buf_free(&line);
        return 2;
    }
    fg_statickeys_free(ks);
    printf("key: %s\nline: %s\n", key, line.data);
    fg_buf_free(&line);
    return 0;
}

struct demo {
    char dir[64];
    char key[64];
    int shard_port;
};

static const char *const demo_files[] = {"frontgate.yaml", "keys.txt", "ca.crt", "tls.crt",
                                         "tls.key"};

static void demo_ready(void *arg, char **addrs, size_t n)
{
    struct demo *d = arg;
    const char *a = n > 0 ? addrs[0] : "127.0.0.1:8080";
    const char *t = n > 1 ? addrs[1] : "127.0.0.1:8443";
    printf(
        "\nfrontgate demo: an echo shard on 127.0.0.1:%d, workspace root:demo, and a fresh API "
        "key.\n\n"
        "  API key (printed once; only its SHA-256 is stored): %s\n\n"
        "Try:\n"
        "  curl -s -H 'Authorization: Bearer %s' http://%s/clusters/root:demo/api/v1/namespaces\n"
        "  curl -s http://%s/clusters/root:demo/api                      # no key: 401\n"
        "  curl -s -H 'Authorization: Bearer %s' http://%s/clusters/root:nope/api  # 403\n"
        "  kubectl --server https://%s/clusters/root:demo --certificate-authority %s/ca.crt \\\n"
        "          --token %s auth whoami\n\n"
        "(kubectl sends credentials only over TLS, hence the second listener on %s.)\n"
        "Config: %s/frontgate.yaml (edit it and send SIGHUP to reload). Ctrl-C stops.\n\n",
        d->shard_port, d->key, d->key, a, a, d->key, a, t, d->dir, d->key, t, d->dir);
    fflush(stdout);
}

static int write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fputs(text, f);
    return fclose(f);
}

static void demo_cleanup(struct demo *d)
{
    for (size_t i = 0; i < FG_ARRAY_LEN(demo_files); i++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", d->dir, demo_files[i]);
        unlink(path);
    }
    rmdir(d->dir);
}

/*
 * 0 when addr ("host:port") can be bound now. The listeners use SO_REUSEPORT (a socket per
 * worker), which would quietly share a port another frontgate holds: the demo checks first,
 * without it, so a clash is a clear message rather than two demos splitting the traffic.
 */
static int port_in_use(const char *addr)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    size_t hl = colon ? (size_t)(colon - addr) : 0;
    if (colon == NULL || hl == 0 || hl >= sizeof(host))
        return 0; /* the config loader reports a malformed address */
    memcpy(host, addr, hl);
    host[hl] = '\0';
    if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST}, *res;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0)
        return 0;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), busy = 0;
    if (fd >= 0) {
        busy = bind(fd, res->ai_addr, res->ai_addrlen) != 0 && errno == EADDRINUSE;
        close(fd);
    }
    freeaddrinfo(res);
    return busy;
}

static int cmd_demo(int argc, char **argv)
{
    const char *listen = "127.0.0.1:8080", *tls_listen = "127.0.0.1:8443";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen = argv[++i];
        } else if (strcmp(argv[i], "--tls-listen") == 0 && i + 1 < argc) {
            tls_listen = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("Usage: frontgate demo [--listen HOST:PORT] [--tls-listen HOST:PORT]\n\n"
                   "Starts the built-in echo shard, writes a config with one workspace\n"
                   "(root:demo), a freshly generated API key and a throwaway CA and serving\n"
                   "certificate into a private temporary directory, and runs frontgate on it:\n"
                   "plain HTTP on 127.0.0.1:8080 and HTTPS on 127.0.0.1:8443 by default.\n");
            return 0;
        } else {
            fprintf(stderr, "frontgate demo: unknown argument \"%s\" (try --help)\n", argv[i]);
            return 2;
        }
    }
    const char *busy = port_in_use(listen) ? listen : port_in_use(tls_listen) ? tls_listen : NULL;
    if (busy) {
        fprintf(stderr,
                "frontgate demo: %s is in use (another demo, or another server); pick other "
                "ports:\n  frontgate demo --listen 127.0.0.1:18080 --tls-listen 127.0.0.1:18443\n"
                "  (./dev demo --listen ... --tls-listen ..., or make demo ARGS=\"--listen ... "
                "--tls-listen ...\")\n",
                busy);
        return 1;
    }
    struct demo d = {0};
    const char *tmp = getenv("TMPDIR");
    snprintf(d.dir, sizeof(d.dir), "%s/frontgate-demo-XXXXXX",
             tmp && strlen(tmp) < 40 ? tmp : "/tmp");
    if (mkdtemp(d.dir) == NULL) {
        fprintf(stderr, "frontgate demo: cannot create a temporary directory: %s\n",
                strerror(errno));
        return 1;
    }
    if (fg_certgen_demo(d.dir) != 0) {
        demo_cleanup(&d);
        return 1;
    }
    struct fg_echo *echo = fg_echo_start("127.0.0.1", 0, &d.shard_port);
    if (echo == NULL) {
        fprintf(stderr, "frontgate demo: cannot start the echo shard\n");
        demo_cleanup(&d);
        return 1;
    }
    char hex[65];
    fg_statickeys_generate(d.key, sizeof(d.key), hex, sizeof(hex));
    struct fg_buf text = {0};
    fg_buf_printf(&text,
                  "# demo key for user demo-user (groups developers, viewers)\n"
                  "demo-user:%s:developers,viewers\n",
                  hex);
    write_file(d.dir, "keys.txt", text.data);
    fg_buf_reset(&text);
    fg_buf_printf(&text,
                  "# Written by `frontgate demo`.\n"
                  "listeners:\n  - address: %s\n"
                  "  - address: %s\n    tls: {certFile: tls.crt, keyFile: tls.key}\n"
                  "shards:\n  - name: echo\n    url: http://127.0.0.1:%d\n"
                  "    identity: requestHeader\n"
                  "routes:\n  - prefix: /clusters/\n    workspace: path\n"
                  "  - prefix: /\n    shard: echo\n"
                  "workspaces:\n  - cluster: 1demo2cluster\n    path: root:demo\n"
                  "    shard: echo\n"
                  "authenticators:\n  - name: demo-keys\n    staticKeys: {file: keys.txt}\n"
                  "authentication:\n  global: [demo-keys]\n",
                  listen, tls_listen, d.shard_port);
    write_file(d.dir, "frontgate.yaml", text.data);
    fg_buf_reset(&text);
    fg_buf_printf(&text, "%s/frontgate.yaml", d.dir);
    struct fg_errs errs = {0};
    struct fg_control ctl;
    int rc = 1;
    if (fg_control_init(&ctl) != 0) {
        fprintf(stderr, "frontgate demo: cannot create the control event loop\n");
    } else {
        struct fg_snapshot *s = fg_snapshot_load(text.data, 1, ctl.fetcher, &errs);
        if (s == NULL) {
            fg_errs_print(&errs, 0);
            fg_errs_free(&errs);
        } else {
            rc = fg_server_run(text.data, s, &ctl, demo_ready, &d);
        }
        fg_control_free(&ctl);
    }
    fg_echo_stop(echo);
    demo_cleanup(&d);
    fg_buf_free(&text);
    return rc;
}

int main(int argc, char **argv)
{
    fg_tls_init();
    evthread_use_pthreads(); /* before any event_base: bases are used across threads */
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("frontgate %s\n", FG_VERSION);
        return 0;
    }
    if (strcmp(cmd, "run") == 0)
        return cmd_run(argc - 1, argv + 1);
    if (strcmp(cmd, "check") == 0)
        return cmd_check(argc - 1, argv + 1);
    if (strcmp(cmd, "demo") == 0)
        return cmd_demo(argc - 1, argv + 1);
    if (strcmp(cmd, "hash-key") == 0)
        return cmd_hash_key(argc - 1, argv + 1);
    if (strcmp(cmd, "broker") == 0)
        return fg_broker_main(argc - 1, argv + 1);
    if (strcmp(cmd, "token") == 0)
        return fg_token_main(argc - 1, argv + 1);
    if (strcmp(cmd, "echo-shard") == 0)
        return fg_echo_main(argc - 1, argv + 1);
    if (cmd[0] == '-')
        return cmd_run(argc, argv); /* frontgate -c FILE */
    fprintf(stderr, "frontgate: unknown command \"%s\"\n\n%s", cmd, usage);
    return 2;
}
