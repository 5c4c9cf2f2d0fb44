/*
 * jwtcfg.h - one Kubernetes AuthenticationConfiguration `jwt[]` entry,
 * validated with kube-apiserver's rules (pkg/apis/apiserver/validation).
 *
 * CEL is not evaluated: an `expression` is accepted only when it is a plain
 * claim reference, `claims.<name>`, which is then treated exactly like the
 * `claim:` form; anything else is refused at load, naming the field.
 */
#ifndef FG_JWTCFG_H
#define FG_JWTCFG_H

#include <stddef.h>

#include "reader.h"

struct fg_claim_rule {
    char *claim;
    char *required_value; /* "" when unset: the claim must be present and empty */
};

struct fg_claim_map {
    char *claim;  /* NULL when unmapped (groups, uid are optional) */
    char *prefix; /* prepended to each value; never NULL when claim is set */
};

struct fg_extra_map {
    char *key;   /* lowercase, domain-prefixed path */
    char *claim; /* from valueExpression: claims.<name> */
};

struct fg_jwt_cfg {
    char *issuer_url;
    char *discovery_url; /* NULL: {issuer_url}/.well-known/openid-configuration */
    char *ca_pem;        /* certificateAuthority (or the file's contents); NULL = system roots */
    char **audiences;
    size_t naudiences;
    struct fg_claim_rule *rules;
    size_t nrules;
    struct fg_claim_map username;
    struct fg_claim_map groups;
    struct fg_claim_map uid; /* prefix unused */
    struct fg_extra_map *extra;
    size_t nextra;
    int require_ready; /* /readyz waits for this issuer's keys (frontgate extension) */
};

/*
 * Reads one jwt[] entry from n. `dir` resolves certificateAuthorityFile.
 * Returns NULL after adding errors. Loopback issuers may use http:// (for
 * tests); every other issuer and discovery URL must be https://.
 */
struct fg_jwt_cfg *fg_jwtcfg_read(struct fg_rd *r, struct fg_ynode *n, const char *dir);

/*
 * Reads an AuthenticationConfiguration document (apiserver.config.k8s.io
 * v1, v1beta1 or v1alpha1) from path: its jwt[] entries go to *out.
 */
int fg_jwtcfg_read_file(const char *path, struct fg_errs *errs, struct fg_jwt_cfg ***out,
                        size_t *n);

/*
 * Reads a WorkspaceAuthenticationConfiguration's spec (`{jwt: [...]}`, as JSON or YAML text)
 * into *out; label names it in errors ("label:line:column: ..."). kcp's rules: spec.jwt is
 * required; certificateAuthorityFile is refused (a kcp object names no local file).
 */
int fg_jwtcfg_read_spec(const char *label, const char *text, size_t len, struct fg_errs *errs,
                        struct fg_jwt_cfg ***out, size_t *n);

void fg_jwtcfg_free(struct fg_jwt_cfg *j);

#endif
