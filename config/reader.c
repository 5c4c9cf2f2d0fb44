#include "reader.h"

#include <string.h>

void fg_rd_err(struct fg_rd *r, const struct fg_ynode *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fg_errs_vadd(r->errs, r->file, n ? n->line : 0, n ? n->col : 0, fmt, ap);
    va_end(ap);
}

const char *fg_rd_kind_name(enum fg_ykind k)
{
    return k == FG_Y_MAP ? "a mapping" : k == FG_Y_SEQ ? "a list" : "a scalar";
}

int fg_rd_expect(struct fg_rd *r, const struct fg_ynode *n, enum fg_ykind kind, const char *what)
{
    if (n->kind == kind)
        return 0;
    fg_rd_err(r, n, "%s must be %s, not %s", what, fg_rd_kind_name(kind), fg_rd_kind_name(n->kind));
    return -1;
}

void fg_rd_unknown(struct fg_rd *r, struct fg_ynode *map, const char *section, const char *allowed)
{
    for (size_t i = 0; i < map->npairs; i++) {
        if (map->pairs[i].used)
            continue;
        fg_rd_err(r, map->pairs[i].key, "unknown key \"%s\" in %s (expected one of: %s)",
                  map->pairs[i].key->str, section, allowed);
    }
}

static const char *scalar(struct fg_rd *r, struct fg_ypair *p, const char *key, const char *section)
{
    if (p->val->kind != FG_Y_SCALAR) {
        fg_rd_err(r, p->val, "%s.%s must be a string, not %s", section, key,
                  fg_rd_kind_name(p->val->kind));
        return NULL;
    }
    if (p->val->len != strlen(p->val->str)) {
        fg_rd_err(r, p->val, "%s.%s contains a NUL byte", section, key);
        return NULL;
    }
    return p->val->str;
}

const char *fg_rd_str(struct fg_rd *r, struct fg_ynode *map, const char *key, int required,
                      const char *section)
{
    struct fg_ypair *p = fg_yaml_get(map, key);
    if (p == NULL || fg_yaml_is_null(p->val)) {
        if (required)
            fg_rd_err(r, p ? p->val : map, "%s: \"%s\" is required", section, key);
        return NULL;
    }
    return scalar(r, p, key, section);
}

const char *fg_rd_str_empty_ok(struct fg_rd *r, struct fg_ynode *map, const char *key,
                               const char *section, int *present)
{
    struct fg_ypair *p = fg_yaml_get(map, key);
    *present = 0;
    if (p == NULL)
        return NULL;
    if (fg_yaml_is_null(p->val))
        return NULL; /* `key:`, ~ or null: absent; "" (quoted) is a value */
    const char *s = scalar(r, p, key, section);
    *present = s != NULL;
    return s;
}

char *fg_rd_dup(const char *s)
{
    return s ? fg_strdup(s) : NULL;
}

int fg_rd_bool(struct fg_rd *r, struct fg_ynode *map, const char *key, int dflt, int *out)
{
    struct fg_ypair *p = fg_yaml_get(map, key);
    *out = dflt;
    if (p == NULL || fg_yaml_is_null(p->val))
        return 0;
    const char *s = p->val->str;
    if (p->val->kind == FG_Y_SCALAR && p->val->plain && strcmp(s, "true") == 0)
        *out = 1;
    else if (p->val->kind == FG_Y_SCALAR && p->val->plain && strcmp(s, "false") == 0)
        *out = 0;
    else {
        fg_rd_err(r, p->val, "\"%s\" must be true or false", key);
        return -1;
    }
    return 0;
}

int fg_rd_duration(struct fg_rd *r, struct fg_ynode *map, const char *key, uint64_t dflt,
                   uint64_t min, uint64_t max, uint64_t *out)
{
    struct fg_ypair *p = fg_yaml_get(map, key);
    *out = dflt;
    if (p == NULL || fg_yaml_is_null(p->val))
        return 0;
    uint64_t v;
    const char *s = p->val->str;
    if (p->val->kind == FG_Y_SCALAR && p->val->len > 0 && strspn(s, "0123456789") == p->val->len &&
        fg_parse_duration_ms(s, &v) != 0) {
        fg_rd_err(r, p->val, "\"%s\": duration needs a unit (ms, s, m, h), such as %ss", key, s);
        return -1;
    }
    if (p->val->kind != FG_Y_SCALAR || fg_parse_duration_ms(s, &v) != 0) {
        fg_rd_err(r, p->val, "\"%s\" must be a duration such as 500ms, 10s, 5m or 1h", key);
        return -1;
    }
    if (v < min || v > max) {
        fg_rd_err(r, p->val, "\"%s\" must be between %llums and %llums", key,
                  (unsigned long long)min, (unsigned long long)max);
        return -1;
    }
    *out = v;
    return 0;
}

int fg_rd_size(struct fg_rd *r, struct fg_ynode *map, const char *key, uint64_t dflt, uint64_t min,
               uint64_t max, uint64_t *out)
{
    struct fg_ypair *p = fg_yaml_get(map, key);
    *out = dflt;
    if (p == NULL || fg_yaml_is_null(p->val))
        return 0;
    uint64_t v;
    if (p->val->kind != FG_Y_SCALAR || fg_parse_size(p->val->str, &v) != 0) {
        fg_rd_err(r, p->val, "\"%s\" must be a number, optionally with Ki, Mi or Gi", key);
        return -1;
    }
    if (v < min || v > max) {
        fg_rd_err(r, p->val, "\"%s\" must be between %llu and %llu", key, (unsigned long long)min,
                  (unsigned long long)max);
        return -1;
    }
    *out = v;
    return 0;
}

int fg_rd_strlist(struct fg_rd *r, struct fg_ynode *map, const char *key, const char *section,
                  struct fg_ynode ***items, size_t *n, int *present)
{
    struct fg_ypair *p = fg_yaml_get(map, key);
    *items = NULL;
    *n = 0;
    *present = p != NULL && !fg_yaml_is_null(p->val);
    if (!*present)
        return 0;
    if (p->val->kind != FG_Y_SEQ) {
        fg_rd_err(r, p->val, "%s.%s must be a list", section, key);
        return -1;
    }
    for (size_t i = 0; i < p->val->nitems; i++) {
        struct fg_ynode *it = p->val->items[i];
        if (it->kind != FG_Y_SCALAR || it->len == 0) {
            fg_rd_err(r, it, "%s.%s entries must be non-empty strings", section, key);
            return -1;
        }
    }
    *items = p->val->items;
    *n = p->val->nitems;
    return 0;
}
