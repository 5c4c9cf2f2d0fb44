/*
 * statickeys.h - API keys kept only as SHA-256 hashes.
 *
 * File format, one key per line:
 *     <key-id>:<sha256-hex>[:group,group...]
 * '#' starts a comment line; blank lines are ignored. A malformed line, bad
 * hex, a repeated id or a repeated hash rejects the whole file (every problem
 * is reported as file:line:column). A presented bearer token is hashed and
 * looked up; the identity is user = usernamePrefix + key-id, groups from the
 * third field.
 */
#ifndef FG_STATICKEYS_H
#define FG_STATICKEYS_H

#include <stddef.h>

#include "../config/yaml.h"
#include "authn.h"

struct fg_statickeys;

/* Parses key-file text; NULL (errors in errs) on any problem. */
struct fg_statickeys *fg_statickeys_parse(const char *file, const char *text, size_t len,
                                          const char *username_prefix, const char *authn_name,
                                          struct fg_errs *errs);
/*
 * Reads and parses a key file. named_at (or NULL) is where the config names it: a file that
 * cannot be read is reported there, with the reason ("no such file or directory", ...).
 */
struct fg_mark;
struct fg_statickeys *fg_statickeys_load(const char *path, const struct fg_mark *named_at,
                                         const char *username_prefix, const char *authn_name,
                                         struct fg_errs *errs);
void fg_statickeys_free(struct fg_statickeys *ks);
size_t fg_statickeys_count(const struct fg_statickeys *ks);

/* The identity for a token (a borrowed pointer valid while ks lives), or NULL. */
const struct fg_identity *fg_statickeys_lookup(const struct fg_statickeys *ks, const char *token,
                                               size_t token_len);

/*
 * OAuth2 client credentials checked as a key: the secret's hash must be a
 * key whose id is client_id. The hash is computed whatever the id, so a
 * wrong id and a wrong secret take the same time. The identity (borrowed,
 * valid while ks lives) or NULL.
 */
const struct fg_identity *fg_statickeys_check_pair(const struct fg_statickeys *ks,
                                                   const char *client_id, size_t id_len,
                                                   const char *secret, size_t secret_len);

/* The key set behind a staticKeys authenticator, or NULL for another kind. */
const struct fg_statickeys *fg_statickeys_of(const struct fg_authn *a);

/* An authenticator over ks, taking ownership of it. */
struct fg_authn *fg_statickeys_authn(const char *name, struct fg_statickeys *ks);

/*
 * Makes a new random key: writes the key ("fgk_" + 43 base64url characters)
 * to key (at least 48 bytes) and the lowercase hex SHA-256 of it to hex
 * (at least 65 bytes).
 */
void fg_statickeys_generate(char *key, size_t keysz, char *hex, size_t hexsz);

/* Lowercase hex SHA-256 of data into hex (65 bytes). */
void fg_sha256_hex(const void *data, size_t len, char hex[65]);

#endif
