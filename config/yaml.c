#include "yaml.h"

#include <yaml.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

void fg_errs_vadd(struct fg_errs *e, const char *file, int line, int col, const char *fmt,
                  va_list ap)
{
    struct fg_buf b = {0};
    if (line > 0)
        fg_buf_printf(&b, "%s:%d:%d: ", file, line, col);
    else
        fg_buf_printf(&b, "%s: ", file);
    fg_buf_vprintf(&b, fmt, ap);
    fg_grow(&e->msgs, &e->cap, e->n + 1, sizeof(char *));
    e->msgs[e->n++] = fg_buf_take(&b);
}

void fg_errs_add(struct fg_errs *e, const char *file, int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fg_errs_vadd(e, file, line, col, fmt, ap);
    va_end(ap);
}

size_t fg_errs_print(const struct fg_errs *e, int log)
{
    for (size_t i = 0; i < e->n; i++) {
        if (log)
            fg_log(FG_LOG_ERROR, "%s", e->msgs[i]);
        else
            fprintf(stderr, "%s\n", e->msgs[i]);
    }
    return e->n;
}

void fg_errs_free(struct fg_errs *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->msgs[i]);
    free(e->msgs);
    memset(e, 0, sizeof(*e));
}

struct builder {
    yaml_parser_t parser;
    const char *file;
    const char *text;
    size_t len;
    struct fg_errs *errs;
    int failed;
};

static struct fg_ynode *node_new(struct builder *b, enum fg_ykind kind, const yaml_mark_t *m)
{
    struct fg_ynode *n = fg_calloc(1, sizeof(*n));
    n->kind = kind;
    n->line = (int)m->line + 1;
    n->col = (int)m->column + 1;
    n->file = b->file;
    return n;
}

static struct fg_ynode *parse_node(struct builder *b, yaml_event_t *ev, int depth);

/*
 * The 1-based column of a tab in the indentation of line (0-based) -- the run of spaces, tabs
 * and "- " sequence indicators that starts it -- or 0. libyaml's words for it are "found
 * character that cannot start any token".
 */
static int tab_in_indent(const struct builder *b, size_t line)
{
    size_t i = 0;
    for (size_t l = 0; l < line && i < b->len; i++)
        if (b->text[i] == '\n')
            l++;
    for (size_t start = i; i < b->len && strchr(" \t-", b->text[i]) != NULL; i++)
        if (b->text[i] == '\t')
            return (int)(i - start) + 1;
    return 0;
}

static int next_event(struct builder *b, yaml_event_t *ev)
{
    if (yaml_parser_parse(&b->parser, ev))
        return 0;
    int tab = tab_in_indent(b, b->parser.problem_mark.line);
    b->failed = 1;
    if (tab > 0) {
        fg_errs_add(b->errs, b->file, (int)b->parser.problem_mark.line + 1, tab,
                    "tabs are not allowed for indentation in YAML (use spaces)");
        return -1;
    }
    fg_errs_add(b->errs, b->file, (int)b->parser.problem_mark.line + 1,
                (int)b->parser.problem_mark.column + 1, "invalid YAML: %s%s%s",
                b->parser.problem ? b->parser.problem : "syntax error",
                b->parser.context ? " " : "", b->parser.context ? b->parser.context : "");
    b->failed = 1;
    return -1;
}

static int key_exists(const struct fg_ynode *map, const struct fg_ynode *key)
{
    for (size_t i = 0; i < map->npairs; i++) {
        const struct fg_ynode *k = map->pairs[i].key;
        if (k->len == key->len && memcmp(k->str, key->str, k->len) == 0)
            return 1;
    }
    return 0;
}

static struct fg_ynode *parse_map(struct builder *b, yaml_event_t *start, int depth)
{
    struct fg_ynode *map = node_new(b, FG_Y_MAP, &start->start_mark);
    size_t cap = 0;
    for (;;) {
        yaml_event_t ev;
        if (next_event(b, &ev) != 0)
            break;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return map;
        }
        struct fg_ynode *key = parse_node(b, &ev, depth + 1);
        if (key == NULL)
            break;
        if (key->kind != FG_Y_SCALAR) {
            fg_errs_add(b->errs, b->file, key->line, key->col, "mapping keys must be scalars");
            fg_yaml_free(key);
            b->failed = 1;
            break;
        }
        if (next_event(b, &ev) != 0) {
            fg_yaml_free(key);
            break;
        }
        struct fg_ynode *val = parse_node(b, &ev, depth + 1);
        if (val == NULL) {
            fg_yaml_free(key);
            break;
        }
        if (key_exists(map, key)) {
            fg_errs_add(b->errs, b->file, key->line, key->col, "duplicate key \"%s\"", key->str);
            b->failed = 1;
        }
        fg_grow(&map->pairs, &cap, map->npairs + 1, sizeof(struct fg_ypair));
        map->pairs[map->npairs++] = (struct fg_ypair){key, val, 0};
    }
    fg_yaml_free(map);
    return NULL;
}

static struct fg_ynode *parse_seq(struct builder *b, yaml_event_t *start, int depth)
{
    struct fg_ynode *seq = node_new(b, FG_Y_SEQ, &start->start_mark);
    size_t cap = 0;
    for (;;) {
        yaml_event_t ev;
        if (next_event(b, &ev) != 0)
            break;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return seq;
        }
        struct fg_ynode *item = parse_node(b, &ev, depth + 1);
        if (item == NULL)
            break;
        fg_grow(&seq->items, &cap, seq->nitems + 1, sizeof(struct fg_ynode *));
        seq->items[seq->nitems++] = item;
    }
    fg_yaml_free(seq);
    return NULL;
}

/* Consumes ev (and, for collections, everything up to the matching end event). */
static struct fg_ynode *parse_node(struct builder *b, yaml_event_t *ev, int depth)
{
    struct fg_ynode *n = NULL;
    if (depth > MAX_DEPTH) {
        fg_errs_add(b->errs, b->file, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                    "document nested too deeply");
        b->failed = 1;
        yaml_event_delete(ev);
        return NULL;
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        if (ev->data.scalar.anchor) {
            fg_errs_add(b->errs, b->file, (int)ev->start_mark.line + 1,
                        (int)ev->start_mark.column + 1, "YAML anchors are not supported");
            b->failed = 1;
            break;
        }
        n = node_new(b, FG_Y_SCALAR, &ev->start_mark);
        n->str = fg_strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
        n->len = ev->data.scalar.length;
        n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        break;
    case YAML_MAPPING_START_EVENT:
        if (ev->data.mapping_start.anchor) {
            fg_errs_add(b->errs, b->file, (int)ev->start_mark.line + 1,
                        (int)ev->start_mark.column + 1, "YAML anchors are not supported");
            b->failed = 1;
            break;
        }
        n = parse_map(b, ev, depth);
        break;
    case YAML_SEQUENCE_START_EVENT:
        if (ev->data.sequence_start.anchor) {
            fg_errs_add(b->errs, b->file, (int)ev->start_mark.line + 1,
                        (int)ev->start_mark.column + 1, "YAML anchors are not supported");
            b->failed = 1;
            break;
        }
        n = parse_seq(b, ev, depth);
        break;
    case YAML_ALIAS_EVENT:
        fg_errs_add(b->errs, b->file, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                    "YAML aliases are not supported");
        b->failed = 1;
        break;
    default:
        fg_errs_add(b->errs, b->file, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                    "unexpected YAML event");
        b->failed = 1;
        break;
    }
    yaml_event_delete(ev);
    return n;
}

struct fg_ynode *fg_yaml_parse(const char *file, const char *text, size_t len, struct fg_errs *errs)
{
    struct builder b = {.file = file, .text = text, .len = len, .errs = errs};
    struct fg_ynode *root = NULL;
    yaml_event_t ev;
    yaml_parser_initialize(&b.parser);
    yaml_parser_set_input_string(&b.parser, (const unsigned char *)text, len);
    int docs = 0;
    for (;;) {
        if (next_event(&b, &ev) != 0)
            goto fail;
        yaml_event_type_t t = ev.type;
        if (t == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (t == YAML_DOCUMENT_START_EVENT) {
            if (++docs > 1) {
                fg_errs_add(errs, file, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1,
                            "only one YAML document is allowed per file");
                yaml_event_delete(&ev);
                goto fail;
            }
            yaml_event_delete(&ev);
            continue;
        }
        if (t == YAML_STREAM_START_EVENT || t == YAML_DOCUMENT_END_EVENT) {
            yaml_event_delete(&ev);
            continue;
        }
        root = parse_node(&b, &ev, 0);
        if (root == NULL || b.failed)
            goto fail;
    }
    yaml_parser_delete(&b.parser);
    if (root == NULL) {
        yaml_mark_t m = {0};
        root = node_new(&b, FG_Y_MAP, &m);
    }
    return root;
fail:
    yaml_parser_delete(&b.parser);
    fg_yaml_free(root);
    if (errs->n == 0)
        fg_errs_add(errs, file, 0, 0, "invalid YAML");
    return NULL;
}

void fg_yaml_free(struct fg_ynode *n)
{
    if (n == NULL)
        return;
    free(n->str);
    for (size_t i = 0; i < n->nitems; i++)
        fg_yaml_free(n->items[i]);
    free(n->items);
    for (size_t i = 0; i < n->npairs; i++) {
        fg_yaml_free(n->pairs[i].key);
        fg_yaml_free(n->pairs[i].val);
    }
    free(n->pairs);
    free(n);
}

struct fg_ypair *fg_yaml_get(struct fg_ynode *map, const char *key)
{
    if (map == NULL || map->kind != FG_Y_MAP)
        return NULL;
    size_t klen = strlen(key);
    for (size_t i = 0; i < map->npairs; i++) {
        struct fg_ypair *p = &map->pairs[i];
        if (p->key->len == klen && memcmp(p->key->str, key, klen) == 0) {
            p->used = 1;
            return p;
        }
    }
    return NULL;
}

int fg_yaml_is_null(const struct fg_ynode *n)
{
    if (n->kind != FG_Y_SCALAR || !n->plain)
        return 0;
    return n->len == 0 || strcmp(n->str, "~") == 0 || strcmp(n->str, "null") == 0 ||
           strcmp(n->str, "Null") == 0 || strcmp(n->str, "NULL") == 0;
}
