#include "jwtcfg.h"

#include "config.h"

#include <errno.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>

#define SECTION "jwt"

static const char cel_unsupported[] =
    "CEL expressions are not supported: use the claim form, or an expression that is a "
    "plain claim reference such as claims.sub";

/* "claims.<identifier>" -> the identifier (caller frees), or NULL. */
static char *plain_claim_ref(const char *expr)
{
    while (*expr == ' ')
        expr++;
    if (strncmp(expr, "claims.", 7) != 0)
        return NULL;
    const char *id = expr + 7;
    size_t n = 0;
    while ((id[n] >= 'a' && id[n] <= 'z') || (id[n] >= 'A' && id[n] <= 'Z') || id[n] == '_' ||
           (n > 0 && id[n] >= '0' && id[n] <= '9'))
        n++;
    const char *rest = id + n;
    while (*rest == ' ')
        rest++;
    if (n == 0 || *rest != '\0')
        return NULL;
    return fg_strndup(id, n);
}

/* kube's issuer/discovery URL rules; http:// is allowed for loopback hosts (tests). */
static const char *url_problem(const char *url)
{
    const char *rest;
    int https = strncmp(url, "https://", 8) == 0;
    if (https)
        rest = url + 8;
    else if (strncmp(url, "http://", 7) == 0)
        rest = url + 7;
    else
        return "must use https://";
    size_t auth = strcspn(rest, "/?#");
    if (auth == 0)
        return "has no host";
    if (memchr(rest, '@', auth))
        return "must not contain user information";
    if (strpbrk(rest, "?#"))
        return "must not have a query or fragment";
    if (!https && !fg_url_is_loopback_http(url))
        return "must use https:// (http:// is allowed only for loopback test issuers)";
    return NULL;
}

static int same_url(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    while (la > 0 && a[la - 1] == '/')
        la--;
    while (lb > 0 && b[lb - 1] == '/')
        lb--;
    return la == lb && memcmp(a, b, la) == 0;
}

static int pem_has_cert(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    int ok = x != NULL;
    X509_free(x);
    BIO_free(bio);
    return ok;
}

static void read_issuer(struct fg_rd *r, struct fg_ynode *n, struct fg_jwt_cfg *j, const char *dir)
{
    if (fg_rd_expect(r, n, FG_Y_MAP, "jwt.issuer") != 0)
        return;
    const char *url = fg_rd_str(r, n, "url", 1, "jwt.issuer");
    const char *why;
    if (url && (why = url_problem(url)) != NULL)
        fg_rd_err(r, fg_yaml_get(n, "url")->val, "jwt.issuer.url \"%s\" %s", url, why);
    j->issuer_url = fg_rd_dup(url);
    const char *disc = fg_rd_str(r, n, "discoveryURL", 0, "jwt.issuer");
    if (disc) {
        struct fg_ynode *dn = fg_yaml_get(n, "discoveryURL")->val;
        if ((why = url_problem(disc)) != NULL)
            fg_rd_err(r, dn, "jwt.issuer.discoveryURL \"%s\" %s", disc, why);
        else if (url && same_url(url, disc))
            fg_rd_err(r, dn, "jwt.issuer.discoveryURL must be different from jwt.issuer.url");
        j->discovery_url = fg_strdup(disc);
    }
    const char *ca = fg_rd_str(r, n, "certificateAuthority", 0, "jwt.issuer");
    const char *caf = fg_rd_str(r, n, "certificateAuthorityFile", 0, "jwt.issuer");
    if (ca && caf) {
        fg_rd_err(r, n,
                  "jwt.issuer: certificateAuthority and certificateAuthorityFile are "
                  "mutually exclusive");
    } else if (ca) {
        if (!pem_has_cert(ca))
            fg_rd_err(r, fg_yaml_get(n, "certificateAuthority")->val,
                      "jwt.issuer.certificateAuthority must hold PEM certificates");
        j->ca_pem = fg_strdup(ca);
    } else if (caf && r->no_files) {
        fg_rd_err(r, fg_yaml_get(n, "certificateAuthorityFile")->key,
                  "jwt.issuer.certificateAuthorityFile is not allowed here (only "
                  "certificateAuthority, the PEM text)");
    } else if (caf) {
        struct fg_buf path = {0};
        if (caf[0] == '/' || dir == NULL)
            fg_buf_adds(&path, caf);
        else
            fg_buf_printf(&path, "%s/%s", dir, caf);
        j->ca_pem = fg_read_file(path.data, NULL);
        struct fg_ynode *cn = fg_yaml_get(n, "certificateAuthorityFile")->val;
        if (j->ca_pem == NULL)
            fg_rd_err(r, cn, "%s: cannot read jwt.issuer.certificateAuthorityFile: %s", path.data,
                      fg_file_reason(errno));
        else if (!pem_has_cert(j->ca_pem))
            fg_rd_err(r, cn, "%s: jwt.issuer.certificateAuthorityFile: not a PEM certificate",
                      path.data);
        fg_buf_free(&path);
    }
    struct fg_ynode **items;
    size_t count;
    int present;
    if (fg_rd_strlist(r, n, "audiences", "jwt.issuer", &items, &count, &present) == 0) {
        if (!present || count == 0)
            fg_rd_err(r, n, "jwt.issuer.audiences: at least one audience is required");
        j->audiences = fg_calloc(count, sizeof(char *));
        for (size_t i = 0; i < count; i++) {
            for (size_t k = 0; k < j->naudiences; k++)
                if (strcmp(j->audiences[k], items[i]->str) == 0)
                    fg_rd_err(r, items[i], "jwt.issuer.audiences: duplicate \"%s\"", items[i]->str);
            j->audiences[j->naudiences++] = fg_strdup(items[i]->str);
        }
    }
    const char *policy = fg_rd_str(r, n, "audienceMatchPolicy", 0, "jwt.issuer");
    if (policy && strcmp(policy, "MatchAny") != 0)
        fg_rd_err(r, fg_yaml_get(n, "audienceMatchPolicy")->val,
                  "jwt.issuer.audienceMatchPolicy must be MatchAny");
    else if (!policy && j->naudiences > 1)
        fg_rd_err(r, n,
                  "jwt.issuer.audienceMatchPolicy must be MatchAny when there is more "
                  "than one audience");
    if (fg_yaml_get(n, "egressSelectorType"))
        fg_rd_err(r, fg_yaml_get(n, "egressSelectorType")->key,
                  "jwt.issuer.egressSelectorType is not supported by frontgate");
    fg_rd_unknown(r, n, "jwt.issuer",
                  "url, discoveryURL, certificateAuthority, certificateAuthorityFile, audiences, "
                  "audienceMatchPolicy");
}

static void read_rules(struct fg_rd *r, struct fg_ynode *map, struct fg_jwt_cfg *j)
{
    struct fg_ypair *p = fg_yaml_get(map, "claimValidationRules");
    if (p == NULL || fg_yaml_is_null(p->val) ||
        fg_rd_expect(r, p->val, FG_Y_SEQ, "jwt.claimValidationRules") != 0)
        return;
    j->rules = fg_calloc(p->val->nitems, sizeof(struct fg_claim_rule));
    for (size_t i = 0; i < p->val->nitems; i++) {
        struct fg_ynode *n = p->val->items[i];
        if (fg_rd_expect(r, n, FG_Y_MAP, "a claim validation rule") != 0)
            continue;
        const char *claim = fg_rd_str(r, n, "claim", 0, "claimValidationRules");
        const char *expr = fg_rd_str(r, n, "expression", 0, "claimValidationRules");
        int has_req;
        const char *req =
            fg_rd_str_empty_ok(r, n, "requiredValue", "claimValidationRules", &has_req);
        const char *msg = fg_rd_str(r, n, "message", 0, "claimValidationRules");
        fg_rd_unknown(r, n, "claimValidationRules", "claim, requiredValue, expression, message");
        if (claim && expr) {
            fg_rd_err(r, n, "claim and expression cannot both be specified");
        } else if (!claim && !expr) {
            fg_rd_err(r, n, "either claim or expression must be specified");
        } else if (expr) {
            fg_rd_err(r, fg_yaml_get(n, "expression")->val,
                      "claimValidationRules[%zu].expression: %s", i, cel_unsupported);
            if (has_req)
                fg_rd_err(r, n, "requiredValue can only be specified when claim is specified");
        } else {
            if (msg)
                fg_rd_err(r, n, "message can only be specified when expression is specified");
            for (size_t k = 0; k < j->nrules; k++)
                if (strcmp(j->rules[k].claim, claim) == 0)
                    fg_rd_err(r, n, "claimValidationRules: duplicate claim \"%s\"", claim);
            j->rules[j->nrules].claim = fg_strdup(claim);
            j->rules[j->nrules].required_value = fg_strdup(has_req ? req : "");
            j->nrules++;
        }
    }
}

/* username/groups ({claim, prefix, expression}) and uid ({claim, expression}). */
static void read_mapping(struct fg_rd *r, struct fg_ynode *parent, const char *name,
                         struct fg_claim_map *m, int required, int with_prefix)
{
    struct fg_ypair *p = fg_yaml_get(parent, name);
    char section[64];
    snprintf(section, sizeof(section), "claimMappings.%s", name);
    if (p == NULL || fg_yaml_is_null(p->val)) {
        if (required)
            fg_rd_err(r, parent, "%s is required", section);
        return;
    }
    struct fg_ynode *n = p->val;
    if (fg_rd_expect(r, n, FG_Y_MAP, section) != 0)
        return;
    const char *claim = fg_rd_str(r, n, "claim", 0, section);
    const char *expr = fg_rd_str(r, n, "expression", 0, section);
    int has_prefix = 0;
    const char *prefix =
        with_prefix ? fg_rd_str_empty_ok(r, n, "prefix", section, &has_prefix) : NULL;
    fg_rd_unknown(r, n, section, with_prefix ? "claim, prefix, expression" : "claim, expression");
    if (claim && expr) {
        fg_rd_err(r, n, "%s: claim and expression cannot both be specified", section);
        return;
    }
    if (!claim && !expr) {
        if (required || has_prefix)
            fg_rd_err(r, n, "%s: either claim or expression must be specified", section);
        return;
    }
    if (claim) {
        if (with_prefix && !has_prefix) {
            fg_rd_err(r, n,
                      "%s: prefix is required when claim is set. It can be set to an "
                      "empty string to disable prefixing",
                      section);
            return;
        }
        m->claim = fg_strdup(claim);
        m->prefix = fg_strdup(prefix ? prefix : "");
        return;
    }
    struct fg_ynode *en = fg_yaml_get(n, "expression")->val;
    if (has_prefix) {
        fg_rd_err(r, n, "%s: prefix can only be specified when claim is specified", section);
        return;
    }
    char *ref = plain_claim_ref(expr);
    if (ref == NULL) {
        fg_rd_err(r, en, "%s.expression: %s", section, cel_unsupported);
        return;
    }
    if (strcmp(name, "username") == 0 && strcmp(ref, "email") == 0) {
        fg_rd_err(r, en,
                  "%s.expression: claims.email needs claims.email_verified to be checked, "
                  "which takes CEL; use claim: email (email_verified must then be true "
                  "when present)",
                  section);
        free(ref);
        return;
    }
    m->claim = ref;
    m->prefix = fg_strdup("");
}

static int alnum_lower(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* RFC 1123 subdomain: labels of [a-z0-9-], 1..63 long, starting and ending alphanumeric. */
static int dns_subdomain(const char *s, size_t n)
{
    if (n == 0 || n > 253)
        return 0;
    for (size_t i = 0; i < n;) {
        size_t start = i;
        while (i < n && s[i] != '.')
            i++;
        size_t len = i - start;
        if (len == 0 || len > 63 || !alnum_lower(s[start]) || !alnum_lower(s[i - 1]))
            return 0;
        for (size_t k = start; k < i; k++)
            if (!alnum_lower(s[k]) && s[k] != '-')
                return 0;
        if (i < n && ++i == n)
            return 0; /* trailing dot */
    }
    return 1;
}

/* kube's IsDomainPrefixedPath, lowercase, and not under kubernetes.io or k8s.io. */
static const char *extra_key_problem(const char *key)
{
    const char *slash = strchr(key, '/');
    if (slash == NULL || slash == key || slash[1] == '\0')
        return "must be a domain-prefixed path (such as \"acme.io/foo\")";
    size_t hl = (size_t)(slash - key);
    for (const char *p = key; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            return "must be lowercase";
    if (!dns_subdomain(key, hl))
        return "must start with a DNS subdomain (such as \"acme.io/foo\")";
    for (const char *p = slash + 1; *p; p++)
        if (!(strchr("/-._~%!$&'()*+,;=:", *p) || (*p >= 'a' && *p <= 'z') ||
              (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
            return "has a path with characters outside a URL path";
    static const char *const reserved[] = {"kubernetes.io", "k8s.io"};
    for (size_t i = 0; i < FG_ARRAY_LEN(reserved); i++) {
        size_t rl = strlen(reserved[i]);
        if ((hl == rl || (hl > rl && key[hl - rl - 1] == '.')) &&
            memcmp(key + hl - rl, reserved[i], rl) == 0)
            return "uses a reserved domain (kubernetes.io, k8s.io)";
    }
    return NULL;
}

static void read_extra(struct fg_rd *r, struct fg_ynode *cm, struct fg_jwt_cfg *j)
{
    struct fg_ypair *p = fg_yaml_get(cm, "extra");
    if (p == NULL || fg_yaml_is_null(p->val) ||
        fg_rd_expect(r, p->val, FG_Y_SEQ, "claimMappings.extra") != 0)
        return;
    j->extra = fg_calloc(p->val->nitems, sizeof(struct fg_extra_map));
    for (size_t i = 0; i < p->val->nitems; i++) {
        struct fg_ynode *n = p->val->items[i];
        if (fg_rd_expect(r, n, FG_Y_MAP, "an extra mapping") != 0)
            continue;
        const char *key = fg_rd_str(r, n, "key", 1, "claimMappings.extra");
        const char *expr = fg_rd_str(r, n, "valueExpression", 1, "claimMappings.extra");
        fg_rd_unknown(r, n, "claimMappings.extra", "key, valueExpression");
        const char *why;
        if (key && (why = extra_key_problem(key)) != NULL)
            fg_rd_err(r, fg_yaml_get(n, "key")->val, "claimMappings.extra key \"%s\" %s", key, why);
        for (size_t k = 0; key && k < j->nextra; k++)
            if (strcmp(j->extra[k].key, key) == 0)
                fg_rd_err(r, n, "claimMappings.extra: duplicate key \"%s\"", key);
        char *ref = expr ? plain_claim_ref(expr) : NULL;
        if (expr && ref == NULL)
            fg_rd_err(r, fg_yaml_get(n, "valueExpression")->val,
                      "claimMappings.extra[%zu].valueExpression: %s", i, cel_unsupported);
        if (key && ref) {
            j->extra[j->nextra].key = fg_strdup(key);
            j->extra[j->nextra].claim = ref;
            j->nextra++;
        } else {
            free(ref);
        }
    }
}

static void read_user_rules(struct fg_rd *r, struct fg_ynode *map)
{
    struct fg_ypair *p = fg_yaml_get(map, "userValidationRules");
    if (p == NULL || fg_yaml_is_null(p->val) ||
        fg_rd_expect(r, p->val, FG_Y_SEQ, "jwt.userValidationRules") != 0)
        return;
    for (size_t i = 0; i < p->val->nitems; i++)
        fg_rd_err(r, p->val->items[i],
                  "userValidationRules[%zu]: %s (frontgate's workspace "
                  "policy already refuses system: usernames)",
                  i, cel_unsupported);
}

struct fg_jwt_cfg *fg_jwtcfg_read(struct fg_rd *r, struct fg_ynode *n, const char *dir)
{
    size_t before = r->errs->n;
    if (fg_rd_expect(r, n, FG_Y_MAP, "a jwt entry") != 0)
        return NULL;
    struct fg_jwt_cfg *j = fg_calloc(1, sizeof(*j));
    j->require_ready = 1;
    struct fg_ypair *iss = fg_yaml_get(n, "issuer");
    if (iss == NULL)
        fg_rd_err(r, n, "jwt.issuer is required");
    else
        read_issuer(r, iss->val, j, dir);
    read_rules(r, n, j);
    struct fg_ypair *cm = fg_yaml_get(n, "claimMappings");
    if (cm == NULL || fg_yaml_is_null(cm->val)) {
        fg_rd_err(r, n, "jwt.claimMappings is required (at least claimMappings.username)");
    } else if (fg_rd_expect(r, cm->val, FG_Y_MAP, "jwt.claimMappings") == 0) {
        read_mapping(r, cm->val, "username", &j->username, 1, 1);
        read_mapping(r, cm->val, "groups", &j->groups, 0, 1);
        read_mapping(r, cm->val, "uid", &j->uid, 0, 0);
        read_extra(r, cm->val, j);
        fg_rd_unknown(r, cm->val, "jwt.claimMappings", "username, groups, uid, extra");
    }
    read_user_rules(r, n);
    fg_rd_unknown(r, n, "jwt", "issuer, claimValidationRules, claimMappings, userValidationRules");
    if (r->errs->n != before) {
        fg_jwtcfg_free(j);
        return NULL;
    }
    return j;
}

/* jwt: [entries] into *out (grown as it reads). */
static void read_jwt_list(struct fg_rd *r, struct fg_ypair *jwt, const char *dir,
                          struct fg_jwt_cfg ***out, size_t *n)
{
    if (jwt == NULL || fg_yaml_is_null(jwt->val) || fg_rd_expect(r, jwt->val, FG_Y_SEQ, "jwt") != 0)
        return;
    if (jwt->val->nitems > 64)
        fg_rd_err(r, jwt->val, "at most 64 jwt authenticators are allowed");
    *out = fg_calloc(jwt->val->nitems, sizeof(struct fg_jwt_cfg *));
    for (size_t i = 0; i < jwt->val->nitems; i++) {
        struct fg_jwt_cfg *j = fg_jwtcfg_read(r, jwt->val->items[i], dir);
        if (j)
            (*out)[(*n)++] = j;
    }
}

/* Nothing half-read: on any error since `before`, what was read is freed. */
static int drop_on_error(struct fg_errs *errs, size_t before, struct fg_jwt_cfg ***out, size_t *n)
{
    if (errs->n == before)
        return 0;
    for (size_t i = 0; i < *n; i++)
        fg_jwtcfg_free((*out)[i]);
    free(*out);
    *out = NULL;
    *n = 0;
    return -1;
}

int fg_jwtcfg_read_file(const char *path, struct fg_errs *errs, struct fg_jwt_cfg ***out, size_t *n)
{
    size_t len, before = errs->n;
    *out = NULL;
    *n = 0;
    char *text = fg_read_file(path, &len);
    if (text == NULL) {
        fg_errs_add(errs, path, 0, 0, "cannot read AuthenticationConfiguration: %s",
                    fg_file_reason(errno));
        return -1;
    }
    struct fg_ynode *root = fg_yaml_parse(path, text, len, errs);
    free(text);
    if (root == NULL)
        return -1;
    struct fg_rd r = {errs, path, 0};
    const char *slash = strrchr(path, '/');
    char *dir = slash ? fg_strndup(path, (size_t)(slash - path)) : fg_strdup(".");
    if (fg_rd_expect(&r, root, FG_Y_MAP, "an AuthenticationConfiguration") != 0)
        goto out;
    const char *api = fg_rd_str(&r, root, "apiVersion", 1, "AuthenticationConfiguration");
    const char *kind = fg_rd_str(&r, root, "kind", 1, "AuthenticationConfiguration");
    if (api && strcmp(api, "apiserver.config.k8s.io/v1") != 0 &&
        strcmp(api, "apiserver.config.k8s.io/v1beta1") != 0 &&
        strcmp(api, "apiserver.config.k8s.io/v1alpha1") != 0)
        fg_rd_err(&r, fg_yaml_get(root, "apiVersion")->val,
                  "apiVersion must be apiserver.config.k8s.io/v1 (or v1beta1, v1alpha1)");
    if (kind && strcmp(kind, "AuthenticationConfiguration") != 0)
        fg_rd_err(&r, fg_yaml_get(root, "kind")->val, "kind must be AuthenticationConfiguration");
    if (fg_yaml_get(root, "anonymous"))
        fg_rd_err(&r, fg_yaml_get(root, "anonymous")->key,
                  "anonymous authentication is not supported by frontgate");
    struct fg_ypair *jwt = fg_yaml_get(root, "jwt"); /* asked for before the unknown keys */
    fg_rd_unknown(&r, root, "AuthenticationConfiguration", "apiVersion, kind, jwt");
    read_jwt_list(&r, jwt, dir, out, n);
out:
    free(dir);
    fg_yaml_free(root);
    return drop_on_error(errs, before, out, n);
}

int fg_jwtcfg_read_spec(const char *label, const char *text, size_t len, struct fg_errs *errs,
                        struct fg_jwt_cfg ***out, size_t *n)
{
    size_t before = errs->n;
    *out = NULL;
    *n = 0;
    struct fg_ynode *root = fg_yaml_parse(label, text, len, errs);
    if (root == NULL)
        return -1;
    struct fg_rd r = {errs, label, 1};
    if (fg_rd_expect(&r, root, FG_Y_MAP, "spec") == 0) {
        struct fg_ypair *jwt = fg_yaml_get(root, "jwt");
        if (jwt == NULL || fg_yaml_is_null(jwt->val) ||
            (jwt->val->kind == FG_Y_SEQ && jwt->val->nitems == 0))
            fg_rd_err(&r, root, "spec.jwt: Required value");
        else
            read_jwt_list(&r, jwt, NULL, out, n);
        fg_rd_unknown(&r, root, "spec", "jwt");
    }
    fg_yaml_free(root);
    return drop_on_error(errs, before, out, n);
}

static void free_map(struct fg_claim_map *m)
{
    free(m->claim);
    free(m->prefix);
}

void fg_jwtcfg_free(struct fg_jwt_cfg *j)
{
    if (j == NULL)
        return;
    free(j->issuer_url);
    free(j->discovery_url);
    free(j->ca_pem);
    for (size_t i = 0; i < j->naudiences; i++)
        free(j->audiences[i]);
    free(j->audiences);
    for (size_t i = 0; i < j->nrules; i++) {
        free(j->rules[i].claim);
        free(j->rules[i].required_value);
    }
    free(j->rules);
    free_map(&j->username);
    free_map(&j->groups);
    free_map(&j->uid);
    for (size_t i = 0; i < j->nextra; i++) {
        free(j->extra[i].key);
        free(j->extra[i].claim);
    }
    free(j->extra);
    free(j);
}
