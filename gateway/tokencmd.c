/*
 * tokencmd.c - `frontgate token`: OAuth2 client credentials against an IdP,
 * for programs that need a bearer token in a file (`--out FILE`, kept
 * fresh) or for kubectl as an exec credential plugin (`--exec-credential`).
 *
 * The client secret is read from a file, never from argv (argv is visible
 * to every user through /proc). Token files are written to a temporary file
 * in the same directory, mode 0600, then renamed into place: a reader sees
 * the old token or the new one, never a partial file. A failed refresh keeps
 * the old file and retries with backoff.
 */
#include "tokencmd.h"

#include "../config/base.h"
#include "../config/config.h"
#include "fetch.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct opts {
    const char *issuer, *token_url, *client_id, *secret_file, *scope, *audience, *ca_file;
    const char *out, *cache_file;
    int exec, once, post_auth;
};

struct call {
    int done;
    int status;
    char *body;
    char *error;
};

struct client {
    struct event_base *base;
    struct fg_fetcher *f;
    SSL_CTX *tls;
    char *secret;
    char *token_url; /* resolved */
};

static const char usage[] =
    "Usage: frontgate token (--issuer URL | --token-url URL) --client-id ID\n"
    "                       --client-secret-file FILE [--scope S] [--audience A]\n"
    "                       [--ca-file FILE] [--client-auth basic|post]\n"
    "                       (--out FILE [--once] | --exec-credential [--cache-file FILE])\n"
    "\n"
    "Gets an OAuth2 access token with the client-credentials grant. The token URL is\n"
    "--token-url, or the token_endpoint of --issuer's OIDC discovery document.\n"
    "  --out FILE          write the token to FILE (mode 0600, atomically) and keep it fresh:\n"
    "                      refresh after two thirds of its life, retry failures with backoff,\n"
    "                      keep the old file meanwhile; --once fetches once and exits\n"
    "  --exec-credential   print a client.authentication.k8s.io ExecCredential for kubectl,\n"
    "                      reusing a cached token (in --cache-file, default\n"
    "                      ~/.cache/frontgate/) until a minute before it expires\n"
    "The secret is read from a file, never from the command line.\n";

/* ---- HTTP ----------------------------------------------------------------- */

static void on_done(void *arg, const struct fg_fetch_resp *r)
{
    struct call *c = arg;
    c->done = 1;
    c->status = r->status;
    c->body = r->body ? fg_strndup(r->body, r->body_len) : NULL;
    c->error = r->error ? fg_strdup(r->error) : NULL;
}

static void run(struct client *cl, struct fg_fetch_req *req, struct call *c)
{
    memset(c, 0, sizeof(*c));
    req->tls = cl->tls;
    req->timeout_ms = 15000;
    req->max_response = 1 << 20;
    cl->f->fetch(cl->f, req, on_done, c);
    while (!c->done)
        event_base_loop(cl->base, EVLOOP_ONCE);
}

static void call_free(struct call *c)
{
    if (c->body) {
        OPENSSL_cleanse(c->body, strlen(c->body));
        free(c->body);
    }
    free(c->error);
}

static void form_escape(struct fg_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~", *p))
            fg_buf_addc(b, (char)*p);
        else
            fg_buf_printf(b, "%%%c%c", hex[*p >> 4], hex[*p & 15]);
    }
}

static int discover(struct client *cl, const char *issuer)
{
    struct fg_buf url = {0};
    size_t n = strlen(issuer);
    while (n > 0 && issuer[n - 1] == '/')
        n--;
    fg_buf_add(&url, issuer, n);
    fg_buf_adds(&url, "/.well-known/openid-configuration");
    struct fg_fetch_req req = {.method = "GET", .url = url.data, .accept = "application/json"};
    struct call c;
    run(cl, &req, &c);
    int rc = -1;
    json_t *doc = c.status == 200 ? json_loads(c.body, 0, NULL) : NULL;
    const char *iss = json_string_value(json_object_get(doc, "issuer"));
    const char *te = json_string_value(json_object_get(doc, "token_endpoint"));
    if (c.status != 200)
        fprintf(stderr, "frontgate token: discovery at %s failed: %s\n", url.data,
                c.status ? "unexpected HTTP status" : c.error);
    else if (iss == NULL || strcmp(iss, issuer) != 0)
        fprintf(stderr, "frontgate token: the discovery document's issuer differs from %s\n",
                issuer);
    else if (te == NULL)
        fprintf(stderr, "frontgate token: the discovery document has no token_endpoint\n");
    else {
        cl->token_url = fg_strdup(te);
        rc = 0;
    }
    json_decref(doc);
    call_free(&c);
    fg_buf_free(&url);
    return rc;
}

/* One client-credentials exchange: 0 with *token and *expires_in, or -1 (logged). */
static int get_token(struct client *cl, const struct opts *o, char **token, int64_t *expires_in)
{
    struct fg_buf body = {0}, auth = {0};
    fg_buf_adds(&body, "grant_type=client_credentials");
    if (o->scope) {
        fg_buf_adds(&body, "&scope=");
        form_escape(&body, o->scope);
    }
    if (o->audience) {
        fg_buf_adds(&body, "&audience=");
        form_escape(&body, o->audience);
    }
    if (o->post_auth) {
        fg_buf_adds(&body, "&client_id=");
        form_escape(&body, o->client_id);
        fg_buf_adds(&body, "&client_secret=");
        form_escape(&body, cl->secret);
    } else {
        /* RFC 6749 2.3.1: form-encode each part, then base64 "id:secret". */
        struct fg_buf pair = {0};
        form_escape(&pair, o->client_id);
        fg_buf_addc(&pair, ':');
        form_escape(&pair, cl->secret);
        unsigned char *b64 = fg_malloc(pair.len * 4 / 3 + 8);
        EVP_EncodeBlock(b64, (const unsigned char *)pair.data, (int)pair.len);
        fg_buf_printf(&auth, "Basic %s", b64);
        OPENSSL_cleanse(pair.data, pair.len);
        OPENSSL_cleanse(b64, strlen((char *)b64));
        fg_buf_free(&pair);
        free(b64);
    }
    struct fg_fetch_req req = {.method = "POST",
                               .url = cl->token_url,
                               .content_type = "application/x-www-form-urlencoded",
                               .accept = "application/json",
                               .authorization = auth.data,
                               .body = body.data,
                               .body_len = body.len};
    struct call c;
    run(cl, &req, &c);
    OPENSSL_cleanse(body.data, body.len);
    fg_buf_free(&body);
    if (auth.data)
        OPENSSL_cleanse(auth.data, auth.len);
    fg_buf_free(&auth);
    int rc = -1;
    json_t *doc = c.body ? json_loads(c.body, 0, NULL) : NULL;
    const char *tok = json_string_value(json_object_get(doc, "access_token"));
    json_t *exp = json_object_get(doc, "expires_in");
    if (c.status != 200) {
        const char *err = json_string_value(json_object_get(doc, "error"));
        if (c.status)
            fprintf(stderr, "frontgate token: %s answered HTTP %d%s%s\n", cl->token_url, c.status,
                    err ? ": " : "", err ? err : "");
        else
            fprintf(stderr, "frontgate token: %s: %s\n", cl->token_url, c.error);
    } else if (tok == NULL || tok[0] == '\0') {
        fprintf(stderr, "frontgate token: the answer has no access_token\n");
    } else {
        *token = fg_strdup(tok);
        *expires_in = json_is_integer(exp) && json_integer_value(exp) > 0
                          ? (int64_t)json_integer_value(exp)
                          : 3600;
        rc = 0;
    }
    json_decref(doc);
    call_free(&c);
    return rc;
}

/* ---- files ---------------------------------------------------------------- */

/* Writes data to path atomically, mode 0600: temp file in the same directory, then rename. */
static int write_atomic(const char *path, const char *data, size_t len)
{
    struct fg_buf tmp = {0};
    fg_buf_printf(&tmp, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp.data);
    int rc = -1;
    if (fd >= 0) {
        size_t off = 0;
        while (off < len) {
            ssize_t w = write(fd, data + off, len - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break;
            off += (size_t)w;
        }
        if (off == len && fchmod(fd, 0600) == 0 && fsync(fd) == 0 && close(fd) == 0) {
            fd = -1;
            rc = rename(tmp.data, path);
        }
        if (fd >= 0)
            close(fd);
        if (rc != 0)
            unlink(tmp.data);
    }
    if (rc != 0)
        fprintf(stderr, "frontgate token: cannot write %s: %s\n", path, strerror(errno));
    fg_buf_free(&tmp);
    return rc;
}

static char *read_secret(const char *path)
{
    size_t len;
    char *s = fg_read_file(path, &len);
    if (s == NULL) {
        fprintf(stderr, "frontgate token: cannot read --client-secret-file %s: %s\n", path,
                strerror(errno));
        return NULL;
    }
    while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' '))
        s[--len] = '\0';
    if (len == 0) {
        fprintf(stderr, "frontgate token: --client-secret-file %s is empty\n", path);
        free(s);
        return NULL;
    }
    return s;
}

/* ---- modes ---------------------------------------------------------------- */

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

static void sleep_s(int64_t s)
{
    for (int64_t i = 0; i < s * 10 && !stopping; i++)
        usleep(100000);
}

static int keep_fresh(struct client *cl, const struct opts *o)
{
    int64_t backoff = 1;
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    while (!stopping) {
        char *tok = NULL;
        int64_t exp = 0;
        int64_t wait;
        int ok = get_token(cl, o, &tok, &exp) == 0 && write_atomic(o->out, tok, strlen(tok)) == 0;
        if (tok) {
            OPENSSL_cleanse(tok, strlen(tok));
            free(tok);
        }
        if (ok) {
            wait = exp * 2 / 3 > 5 ? exp * 2 / 3 : 5;
            backoff = 1;
            fg_log(FG_LOG_INFO, "token: wrote %s (expires in %llds, next refresh in %llds)", o->out,
                   (long long)exp, (long long)wait);
        } else {
            wait = backoff;
            backoff = backoff * 2 > 60 ? 60 : backoff * 2;
            fg_log(FG_LOG_WARN, "token: refresh failed; keeping %s, retrying in %llds", o->out,
                   (long long)wait);
        }
        if (o->once)
            return ok ? 0 : 1;
        sleep_s(wait);
    }
    return 0;
}

static char *default_cache_file(const struct opts *o, const char *token_url)
{
    struct fg_buf id = {0}, path = {0};
    fg_buf_printf(&id, "%s\n%s\n%s\n%s", token_url, o->client_id, o->scope ? o->scope : "",
                  o->audience ? o->audience : "");
    unsigned char h[32];
    fg_sha256(id.data, id.len, h);
    fg_buf_free(&id);
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && xdg[0])
        fg_buf_printf(&path, "%s/frontgate", xdg);
    else
        fg_buf_printf(&path, "%s/.cache/frontgate", home ? home : "/tmp");
    char *slash = strrchr(path.data, '/');
    *slash = '\0';
    mkdir(path.data, 0700);
    *slash = '/';
    mkdir(path.data, 0700);
    fg_buf_adds(&path, "/exec-");
    for (int i = 0; i < 8; i++)
        fg_buf_printf(&path, "%02x", h[i]);
    fg_buf_adds(&path, ".json");
    return fg_buf_take(&path);
}

static void print_credential(const char *token, int64_t expiry)
{
    /* Answer in the apiVersion kubectl asked in (v1 and v1beta1 share the wire format). */
    const char *api = "client.authentication.k8s.io/v1";
    json_t *info =
        json_loads(getenv("KUBERNETES_EXEC_INFO") ? getenv("KUBERNETES_EXEC_INFO") : "{}", 0, NULL);
    const char *asked = json_string_value(json_object_get(info, "apiVersion"));
    if (asked && strncmp(asked, "client.authentication.k8s.io/", 29) == 0)
        api = asked;
    char ts[32];
    time_t t = (time_t)expiry;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *doc = json_pack("{s:s, s:s, s:{s:s, s:s}}", "apiVersion", api, "kind", "ExecCredential",
                            "status", "token", token, "expirationTimestamp", ts);
    char *text = json_dumps(doc, JSON_COMPACT);
    printf("%s\n", text);
    fflush(stdout);
    OPENSSL_cleanse(text, strlen(text));
    free(text);
    json_decref(doc);
    json_decref(info);
}

static int exec_credential(struct client *cl, const struct opts *o)
{
    char *cache = o->cache_file ? fg_strdup(o->cache_file) : default_cache_file(o, cl->token_url);
    int64_t now = fg_wall_s();
    json_t *doc = json_load_file(cache, 0, NULL);
    const char *tok = json_string_value(json_object_get(doc, "token"));
    json_t *exp = json_object_get(doc, "expiry");
    int rc = 1;
    if (tok && json_is_integer(exp) && json_integer_value(exp) - now > 60) {
        print_credential(tok, json_integer_value(exp));
        rc = 0;
    } else {
        char *fresh = NULL;
        int64_t life = 0;
        if (get_token(cl, o, &fresh, &life) == 0) {
            json_t *c = json_pack("{s:s, s:I}", "token", fresh, "expiry", (json_int_t)(now + life));
            char *text = json_dumps(c, JSON_COMPACT);
            write_atomic(cache, text, strlen(text)); /* a failed cache write still answers */
            OPENSSL_cleanse(text, strlen(text));
            free(text);
            json_decref(c);
            print_credential(fresh, now + life);
            OPENSSL_cleanse(fresh, strlen(fresh));
            free(fresh);
            rc = 0;
        }
    }
    json_decref(doc);
    free(cache);
    return rc;
}

/* ---- main ----------------------------------------------------------------- */

static int parse(int argc, char **argv, struct opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        const char **slot = NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return 1;
        } else if (strcmp(a, "--exec-credential") == 0) {
            o->exec = 1;
            continue;
        } else if (strcmp(a, "--once") == 0) {
            o->once = 1;
            continue;
        } else if (strcmp(a, "--issuer") == 0) {
            slot = &o->issuer;
        } else if (strcmp(a, "--token-url") == 0) {
            slot = &o->token_url;
        } else if (strcmp(a, "--client-id") == 0) {
            slot = &o->client_id;
        } else if (strcmp(a, "--client-secret-file") == 0) {
            slot = &o->secret_file;
        } else if (strcmp(a, "--scope") == 0) {
            slot = &o->scope;
        } else if (strcmp(a, "--audience") == 0) {
            slot = &o->audience;
        } else if (strcmp(a, "--ca-file") == 0) {
            slot = &o->ca_file;
        } else if (strcmp(a, "--out") == 0) {
            slot = &o->out;
        } else if (strcmp(a, "--cache-file") == 0) {
            slot = &o->cache_file;
        } else if (strcmp(a, "--client-auth") == 0 && v &&
                   (strcmp(v, "basic") == 0 || strcmp(v, "post") == 0)) {
            o->post_auth = strcmp(v, "post") == 0;
            i++;
            continue;
        } else if (strcmp(a, "--client-secret") == 0) {
            fprintf(stderr, "frontgate token: secrets on the command line are visible to every "
                            "user; put it in a file and use --client-secret-file\n");
            return 2;
        }
        if (slot == NULL || v == NULL) {
            fprintf(stderr, "frontgate token: unknown or incomplete argument \"%s\" (try --help)\n",
                    a);
            return 2;
        }
        *slot = v;
        i++;
    }
    const char *missing = !o->issuer && !o->token_url ? "--issuer or --token-url"
                          : !o->client_id             ? "--client-id"
                          : !o->secret_file           ? "--client-secret-file"
                          : !o->out && !o->exec       ? "--out or --exec-credential"
                                                      : NULL;
    if (missing) {
        fprintf(stderr, "frontgate token: %s is required (try --help)\n", missing);
        return 2;
    }
    if ((o->issuer && o->token_url) || (o->out && o->exec)) {
        fprintf(stderr, "frontgate token: --issuer/--token-url and --out/--exec-credential are "
                        "each one or the other\n");
        return 2;
    }
    return 0;
}

int fg_token_main(int argc, char **argv)
{
    struct opts o = {0};
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : rc;
    struct client cl = {0};
    cl.secret = read_secret(o.secret_file);
    if (cl.secret == NULL)
        return 1;
    if (o.ca_file) {
        cl.tls = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_verify(cl.tls, SSL_VERIFY_PEER, NULL);
        if (SSL_CTX_load_verify_locations(cl.tls, o.ca_file, NULL) != 1) {
            fprintf(stderr, "frontgate token: cannot load --ca-file %s\n", o.ca_file);
            rc = 1;
        }
    }
    cl.base = event_base_new();
    struct evdns_base *dns = evdns_base_new(cl.base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    cl.f = fg_fetcher_new(cl.base, dns);
    if (rc == 0) {
        if (o.token_url)
            cl.token_url = fg_strdup(o.token_url);
        else if (discover(&cl, o.issuer) != 0)
            rc = 1;
    }
    if (rc == 0)
        rc = o.exec ? exec_credential(&cl, &o) : keep_fresh(&cl, &o);
    fg_fetcher_free(cl.f);
    if (dns)
        evdns_base_free(dns, 0);
    event_base_free(cl.base);
    SSL_CTX_free(cl.tls);
    OPENSSL_cleanse(cl.secret, strlen(cl.secret));
    free(cl.secret);
    free(cl.token_url);
    return rc;
}
