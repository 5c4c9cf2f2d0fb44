/*
 * yaml.h - a YAML document as a small tree whose every node remembers the
 * line and column it came from, so that every config error can say
 * file:line:column. Built on libyaml's event parser. Anchors and aliases are
 * refused (they buy nothing in a proxy config and invite expansion bombs).
 */
#ifndef FG_YAML_H
#define FG_YAML_H

#include <stddef.h>

#include "base.h"

/* A list of operator-facing error lines, each "file:line:column: message". */
struct fg_errs {
    char **msgs;
    size_t n, cap;
};

void fg_errs_add(struct fg_errs *e, const char *file, int line, int col, const char *fmt, ...)
    FG_PRINTF(5, 6);
void fg_errs_vadd(struct fg_errs *e, const char *file, int line, int col, const char *fmt,
                  va_list ap);
/* Prints every error to the log (or stderr when log is 0) and returns the count. */
size_t fg_errs_print(const struct fg_errs *e, int log);
void fg_errs_free(struct fg_errs *e);

enum fg_ykind { FG_Y_SCALAR, FG_Y_MAP, FG_Y_SEQ };

struct fg_ynode;

struct fg_ypair {
    struct fg_ynode *key; /* always a scalar */
    struct fg_ynode *val;
    int used; /* set by the config reader; unused keys are errors */
};

struct fg_ynode {
    enum fg_ykind kind;
    int line, col; /* 1-based */
    const char *file;
    /* FG_Y_SCALAR */
    char *str;
    size_t len;
    int plain; /* unquoted, so "null", "~", "true" have their YAML meaning */
    /* FG_Y_SEQ */
    struct fg_ynode **items;
    size_t nitems;
    /* FG_Y_MAP, in document order */
    struct fg_ypair *pairs;
    size_t npairs;
};

/*
 * Parses text (len bytes) named `file` into a tree. Returns the root (an
 * empty map for an empty document) or NULL after adding errors to errs.
 * Duplicate keys are errors. The tree is freed with fg_yaml_free.
 */
struct fg_ynode *fg_yaml_parse(const char *file, const char *text, size_t len,
                               struct fg_errs *errs);
void fg_yaml_free(struct fg_ynode *n);

/* The pair for key in a map (marking it used), or NULL. */
struct fg_ypair *fg_yaml_get(struct fg_ynode *map, const char *key);
/* True when a plain scalar spells YAML null ("", "~", "null"). */
int fg_yaml_is_null(const struct fg_ynode *n);

#endif
