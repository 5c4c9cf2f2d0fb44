#include "statickeys.h"

#include "../config/config.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/*
 * The lookup table: open addressing with linear probing, a power-of-two size
 * at most half full, each slot the key's hash inline and its identity packed
 * in one allocation, so a request that presents a key reads one slot and one
 * identity whatever the number of keys (the table in huge pages once large).
 */
struct slot {
    unsigned char hash[32];
    struct fg_identity *identity; /* NULL: an empty slot */
};

struct fg_statickeys {
    size_t prefix_len; /* usernamePrefix: identity user = prefix + key id */
    struct slot *slots;
    size_t mask, n;
};

/* A key while the file is parsed, in file order. */
struct key {
    unsigned char hash[32];
    struct fg_identity *identity;
};

static uint64_t slot_hash(const unsigned char *h)
{
    uint64_t v;
    memcpy(&v, h, sizeof(v)); /* already uniformly distributed */
    return v;
}

static int id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-' || c == '@' || c == '+' || c == '/';
}

static int group_char(char c)
{
    return c > ' ' && c < 0x7f && c != ',';
}

static void table_insert(uint32_t *slots, size_t mask, uint64_t h, uint32_t v)
{
    size_t j = h & mask;
    while (slots[j] != 0)
        j = (j + 1) & mask;
    slots[j] = v;
}

static uint64_t id_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h ^ (h >> 31);
}

/*
 * What parsing keeps: the keys so far and two tables over them (index + 1,
 * 0 = empty; at most half full), by hash and by id, to find repeats without
 * a quadratic scan.
 */
struct parse_tables {
    struct key *keys;
    size_t n, cap;
    uint32_t *hashes, *ids;
    size_t mask;
    size_t prefix_len;
};

/* Id of key i without the username prefix. */
static const char *key_id(const struct parse_tables *pt, size_t i)
{
    return pt->keys[i].identity->user + pt->prefix_len;
}

static void grow_tables(struct parse_tables *pt)
{
    if (pt->hashes != NULL && (pt->n + 1) * 2 <= pt->mask + 1)
        return;
    size_t size = pt->hashes ? (pt->mask + 1) * 2 : 64;
    free(pt->hashes);
    free(pt->ids);
    pt->hashes = fg_calloc(size, sizeof(uint32_t));
    pt->ids = fg_calloc(size, sizeof(uint32_t));
    pt->mask = size - 1;
    for (size_t i = 0; i < pt->n; i++) {
        const char *id = key_id(pt, i);
        table_insert(pt->hashes, pt->mask, slot_hash(pt->keys[i].hash), (uint32_t)i + 1);
        table_insert(pt->ids, pt->mask, id_hash(id, strlen(id)), (uint32_t)i + 1);
    }
}

static long find_hash(const struct parse_tables *pt, const unsigned char *hash)
{
    if (pt->hashes == NULL)
        return -1;
    for (size_t j = slot_hash(hash) & pt->mask; pt->hashes[j] != 0; j = (j + 1) & pt->mask)
        if (CRYPTO_memcmp(pt->keys[pt->hashes[j] - 1].hash, hash, 32) == 0)
            return (long)pt->hashes[j] - 1;
    return -1;
}

static long find_id(const struct parse_tables *pt, const char *id, size_t n)
{
    if (pt->ids == NULL)
        return -1;
    for (size_t j = id_hash(id, n) & pt->mask; pt->ids[j] != 0; j = (j + 1) & pt->mask) {
        const char *other = key_id(pt, pt->ids[j] - 1);
        if (strlen(other) == n && memcmp(other, id, n) == 0)
            return (long)pt->ids[j] - 1;
    }
    return -1;
}

/* The lookup table over the parsed keys, which it takes over. */
static void build_slots(struct fg_statickeys *ks, struct parse_tables *pt)
{
    size_t size = 16;
    while (size < pt->n * 2)
        size *= 2;
    ks->slots = fg_calloc_huge(size, sizeof(struct slot));
    ks->mask = size - 1;
    ks->n = pt->n;
    for (size_t i = 0; i < pt->n; i++) {
        size_t j = slot_hash(pt->keys[i].hash) & ks->mask;
        while (ks->slots[j].identity != NULL)
            j = (j + 1) & ks->mask;
        memcpy(ks->slots[j].hash, pt->keys[i].hash, 32);
        ks->slots[j].identity = pt->keys[i].identity;
        pt->keys[i].identity = NULL;
    }
}

static void parse_tables_free(struct parse_tables *pt)
{
    for (size_t i = 0; i < pt->n; i++)
        fg_identity_unref(pt->keys[i].identity);
    free(pt->keys);
    free(pt->hashes);
    free(pt->ids);
}

/* Parses one non-comment line; returns 0 or adds an error and returns -1. */
static int parse_line(struct parse_tables *pt, const char *file, int lineno, int indent,
                      const char *line, size_t len, const char *prefix, const char *authn,
                      struct fg_errs *errs)
{
    const char *c1 = memchr(line, ':', len);
    if (c1 == NULL) {
        fg_errs_add(errs, file, lineno, indent + 1, "expected <key-id>:<sha256-hex>[:group,...]");
        return -1;
    }
    size_t idlen = (size_t)(c1 - line);
    if (idlen == 0) {
        fg_errs_add(errs, file, lineno, indent + 1, "empty key id");
        return -1;
    }
    for (size_t i = 0; i < idlen; i++) {
        if (!id_char(line[i])) {
            fg_errs_add(errs, file, lineno, indent + (int)i + 1,
                        "key id may only use letters, digits and . _ - @ + /");
            return -1;
        }
    }
    const char *hex = c1 + 1;
    const char *end = line + len;
    const char *c2 = memchr(hex, ':', (size_t)(end - hex));
    size_t hexlen = (size_t)((c2 ? c2 : end) - hex);
    int hexcol = (int)(hex - line) + 1;
    if (hexlen != 64) {
        fg_errs_add(errs, file, lineno, indent + hexcol,
                    "the hash must be 64 hex digits (SHA-256), found %zu characters", hexlen);
        return -1;
    }
    unsigned char hash[32];
    for (size_t i = 0; i < 32; i++) {
        int hi = fg_hexval((unsigned char)hex[2 * i]),
            lo = fg_hexval((unsigned char)hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            fg_errs_add(errs, file, lineno, indent + hexcol + (int)(2 * i) + (hi >= 0),
                        "invalid hex digit in the hash");
            return -1;
        }
        hash[i] = (unsigned char)(hi << 4 | lo);
    }
    if (find_id(pt, line, idlen) >= 0) {
        fg_errs_add(errs, file, lineno, indent + 1, "key id \"%.*s\" is listed twice", (int)idlen,
                    line);
        return -1;
    }
    long dup = find_hash(pt, hash);
    if (dup >= 0) {
        fg_errs_add(errs, file, lineno, indent + hexcol,
                    "this hash is listed twice (key ids \"%s\" and \"%.*s\")",
                    key_id(pt, (size_t)dup), (int)idlen, line);
        return -1;
    }
    struct fg_buf user = {0};
    fg_buf_adds(&user, prefix);
    fg_buf_add(&user, line, idlen);
    struct fg_identity *id = fg_identity_new(user.data, authn);
    fg_buf_free(&user);
    if (c2 && c2 + 1 == end) {
        fg_errs_add(errs, file, lineno, indent + (int)(c2 - line) + 2,
                    "empty group list (drop the trailing ':' for a key without groups)");
        fg_identity_unref(id);
        return -1;
    }
    if (c2) {
        const char *g = c2 + 1;
        while (g < end) {
            const char *comma = memchr(g, ',', (size_t)(end - g));
            const char *gend = comma ? comma : end;
            if (gend == g) {
                fg_errs_add(errs, file, lineno, indent + (int)(g - line) + 1, "empty group name");
                fg_identity_unref(id);
                return -1;
            }
            for (const char *p = g; p < gend; p++) {
                if (!group_char(*p)) {
                    fg_errs_add(errs, file, lineno, indent + (int)(p - line) + 1,
                                "group names may not contain spaces or control characters");
                    fg_identity_unref(id);
                    return -1;
                }
            }
            char *name = fg_strndup(g, (size_t)(gend - g));
            fg_identity_add_group(id, name);
            free(name);
            g = comma ? comma + 1 : end;
            if (comma && g == end) {
                fg_errs_add(errs, file, lineno, indent + (int)(g - line),
                            "trailing comma in groups");
                fg_identity_unref(id);
                return -1;
            }
        }
    }
    grow_tables(pt);
    fg_grow(&pt->keys, &pt->cap, pt->n + 1, sizeof(struct key));
    memcpy(pt->keys[pt->n].hash, hash, 32);
    pt->keys[pt->n].identity = fg_identity_pack(id);
    fg_identity_unref(id);
    table_insert(pt->hashes, pt->mask, slot_hash(hash), (uint32_t)pt->n + 1);
    table_insert(pt->ids, pt->mask, id_hash(line, idlen), (uint32_t)pt->n + 1);
    pt->n++;
    return 0;
}

struct fg_statickeys *fg_statickeys_parse(const char *file, const char *text, size_t len,
                                          const char *username_prefix, const char *authn_name,
                                          struct fg_errs *errs)
{
    const char *prefix = username_prefix ? username_prefix : "";
    size_t before = errs->n;
    struct parse_tables pt = {.prefix_len = strlen(prefix)};
    struct fg_lines it = {text, len, 0, 0};
    const char *line;
    size_t llen;
    while (errs->n - before < 50 && fg_next_line(&it, &line, &llen)) {
        int lineno = it.lineno;
        size_t lead = 0;
        while (lead < llen && (line[lead] == ' ' || line[lead] == '\t'))
            lead++;
        size_t trail = llen;
        while (trail > lead && (line[trail - 1] == ' ' || line[trail - 1] == '\t'))
            trail--;
        if (trail == lead || line[lead] == '#')
            continue;
        if (memchr(line, '\0', llen) != NULL) {
            fg_errs_add(errs, file, lineno, 1, "NUL byte in line");
            continue;
        }
        parse_line(&pt, file, lineno, (int)lead, line + lead, trail - lead, prefix, authn_name,
                   errs);
    }
    struct fg_statickeys *ks = NULL;
    if (errs->n == before) {
        ks = fg_calloc(1, sizeof(*ks));
        ks->prefix_len = pt.prefix_len;
        build_slots(ks, &pt);
    }
    parse_tables_free(&pt);
    return ks;
}

struct fg_statickeys *fg_statickeys_load(const char *path, const struct fg_mark *named_at,
                                         const char *username_prefix, const char *authn_name,
                                         struct fg_errs *errs)
{
    size_t len;
    char *text = fg_read_file(path, &len);
    if (text == NULL) {
        fg_cfg_file_err(errs, named_at, path, "cannot read key file", fg_file_reason(errno));
        return NULL;
    }
    struct fg_statickeys *ks = NULL;
    if (len == 0)
        /* `cat new > keys.txt` truncates first: a reload in between must not revoke every key */
        fg_cfg_file_err(errs, named_at, path, "key file is empty",
                        "a file being rewritten is; to admit no key, keep a comment line in it");
    else
        ks = fg_statickeys_parse(path, text, len, username_prefix, authn_name, errs);
    OPENSSL_cleanse(text, len);
    free(text);
    return ks;
}

void fg_statickeys_free(struct fg_statickeys *ks)
{
    if (ks == NULL)
        return;
    for (size_t j = 0; j <= ks->mask; j++)
        fg_identity_unref(ks->slots[j].identity);
    fg_free_huge(ks->slots, ks->mask + 1, sizeof(struct slot));
    free(ks);
}

size_t fg_statickeys_count(const struct fg_statickeys *ks)
{
    return ks->n;
}

const struct fg_identity *fg_statickeys_lookup(const struct fg_statickeys *ks, const char *token,
                                               size_t token_len)
{
    unsigned char hash[32];
    fg_sha256(token, token_len, hash);
    const struct fg_identity *found = NULL;
    for (size_t j = slot_hash(hash) & ks->mask; ks->slots[j].identity != NULL;
         j = (j + 1) & ks->mask) {
        if (CRYPTO_memcmp(ks->slots[j].hash, hash, 32) == 0) {
            found = ks->slots[j].identity;
            break;
        }
    }
    OPENSSL_cleanse(hash, sizeof(hash));
    return found;
}

const struct fg_identity *fg_statickeys_check_pair(const struct fg_statickeys *ks,
                                                   const char *client_id, size_t id_len,
                                                   const char *secret, size_t secret_len)
{
    const struct fg_identity *id = fg_statickeys_lookup(ks, secret, secret_len);
    if (id == NULL)
        return NULL;
    const char *kid = id->user + ks->prefix_len;
    if (strlen(kid) != id_len || memcmp(kid, client_id, id_len) != 0)
        return NULL;
    return id;
}

struct statickeys_authn {
    struct fg_authn base;
    struct fg_statickeys *ks;
};

/* "fgk_..." (frontgate hash-key's format): a public prefix, not a secret */
static int key_format(const char *t, size_t n)
{
    return n > 4 && t[0] == 'f' && t[1] == 'g' && t[2] == 'k' && t[3] == '_';
}

static enum fg_authn_status keys_authenticate(struct fg_authn *a, const struct fg_credential *cred,
                                              struct fg_authn_result *res,
                                              struct fg_authn_waiter *waiter)
{
    (void)waiter;
    struct statickeys_authn *s = (struct statickeys_authn *)a;
    if (cred->bearer == NULL)
        return FG_AUTHN_NOT_MINE;
    const struct fg_identity *id = fg_statickeys_lookup(s->ks, cred->bearer, cred->bearer_len);
    if (id == NULL) {
        /* a key we do not know may be another authenticator's token; one in frontgate's own
         * key format is worth saying so, if nobody else takes it */
        if (key_format(cred->bearer, cred->bearer_len))
            res->reason = "unknown API key";
        return FG_AUTHN_NOT_MINE;
    }
    res->identity = fg_identity_ref((struct fg_identity *)id);
    return FG_AUTHN_OK;
}

static void keys_free(struct fg_authn *a)
{
    struct statickeys_authn *s = (struct statickeys_authn *)a;
    fg_statickeys_free(s->ks);
    free(a->name);
    free(s);
}

static const struct fg_authn_ops keys_ops = {keys_authenticate, keys_free, NULL};

struct fg_authn *fg_statickeys_authn(const char *name, struct fg_statickeys *ks)
{
    struct statickeys_authn *s = fg_calloc(1, sizeof(*s));
    s->base.ops = &keys_ops;
    s->base.name = fg_strdup(name);
    s->base.refs = 1;
    s->ks = ks;
    return &s->base;
}

void fg_sha256_hex(const void *data, size_t len, char hex[65])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char h[32];
    fg_sha256(data, len, h);
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[h[i] >> 4];
        hex[2 * i + 1] = digits[h[i] & 15];
    }
    hex[64] = '\0';
}

void fg_statickeys_generate(char *key, size_t keysz, char *hex, size_t hexsz)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char raw[33];
    fg_random(raw, sizeof(raw));
    struct fg_buf b = {0};
    fg_buf_adds(&b, "fgk_");
    /* 33 bytes -> 44 characters; keep 43 (256+ bits of entropy either way). */
    for (size_t i = 0; i < sizeof(raw); i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
        fg_buf_addc(&b, b64[(v >> 18) & 63]);
        fg_buf_addc(&b, b64[(v >> 12) & 63]);
        fg_buf_addc(&b, b64[(v >> 6) & 63]);
        fg_buf_addc(&b, b64[v & 63]);
    }
    b.len = 4 + 43;
    b.data[b.len] = '\0';
    if (keysz > b.len && hexsz >= 65) {
        memcpy(key, b.data, b.len + 1);
        fg_sha256_hex(key, b.len, hex);
    }
    OPENSSL_cleanse(raw, sizeof(raw));
    OPENSSL_cleanse(b.data, b.cap);
    fg_buf_free(&b);
}

const struct fg_statickeys *fg_statickeys_of(const struct fg_authn *a)
{
    if (a == NULL || a->ops != &keys_ops)
        return NULL;
    return ((const struct statickeys_authn *)a)->ks;
}
