/*
 * reader.h - typed access to a YAML tree for the config readers (config.c,
 * jwtcfg.c): every value is checked for its type and range, every problem
 * is reported as file:line:column, and keys nobody asked for are errors.
 * Private to config/.
 */
#ifndef FG_READER_H
#define FG_READER_H

#include <stdint.h>

#include "yaml.h"

struct fg_rd {
    struct fg_errs *errs;
    const char *file;
    int no_files; /* the text is not the operator's (a kcp object): no keys that name files */
};

void fg_rd_err(struct fg_rd *r, const struct fg_ynode *n, const char *fmt, ...) FG_PRINTF(3, 4);
/* 0 when n has the kind, else an error naming `what`. */
int fg_rd_expect(struct fg_rd *r, const struct fg_ynode *n, enum fg_ykind kind, const char *what);
const char *fg_rd_kind_name(enum fg_ykind k);
/* Reports every key of map that no reader asked for, listing the allowed ones. */
void fg_rd_unknown(struct fg_rd *r, struct fg_ynode *map, const char *section, const char *allowed);
/* A non-empty scalar string, or NULL when absent (an error when required) or mistyped. */
const char *fg_rd_str(struct fg_rd *r, struct fg_ynode *map, const char *key, int required,
                      const char *section);
/* Like fg_rd_str but "" is a value, not absence (prefixes may be empty). *present tells. */
const char *fg_rd_str_empty_ok(struct fg_rd *r, struct fg_ynode *map, const char *key,
                               const char *section, int *present);
int fg_rd_bool(struct fg_rd *r, struct fg_ynode *map, const char *key, int dflt, int *out);
int fg_rd_duration(struct fg_rd *r, struct fg_ynode *map, const char *key, uint64_t dflt,
                   uint64_t min, uint64_t max, uint64_t *out);
int fg_rd_size(struct fg_rd *r, struct fg_ynode *map, const char *key, uint64_t dflt, uint64_t min,
               uint64_t max, uint64_t *out);
/* A list of non-empty strings; *present = 0 when the key is absent or null. */
int fg_rd_strlist(struct fg_rd *r, struct fg_ynode *map, const char *key, const char *section,
                  struct fg_ynode ***items, size_t *n, int *present);
char *fg_rd_dup(const char *s);

#endif
