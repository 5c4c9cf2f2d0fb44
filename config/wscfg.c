/*
 * wscfg.c - reading the workspace index: inline `workspaces:` and `indexFile`.
 */
#include "config.h"

#include "cfgread.h"
#include "jwtcfg.h"
#include "reader.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- the workspace index ------------------------------------------------ */

enum col { COL_CLUSTER, COL_PATH, COL_SHARD, COL_TYPE, COL_PHASE, COL_WAREHOUSE, NCOLS };
static const char *const col_names[NCOLS] = {"cluster", "path",  "shard",
                                             "type",    "phase", "warehouse"};

struct field {
    const char *s;
    size_t n;
    int col;  /* 1-based column in the line, for errors */
    int line; /* when the field has a line of its own (YAML) */
};

#define FLINE(c) (f[c].line ? f[c].line : line)

/* Validates one workspace and adds it; errors name (file, line, col of each field). */
static int add_workspace(struct fg_cfgrd *r, const char *file, int line, int col,
                         const struct field *f)
{
    struct fg_config *cfg = r->cfg;
    uint32_t shard = 0, type = FG_WS_NO_TYPE;
    uint8_t phase = FG_WS_READY;
    int ok = 1;
    if (f[COL_CLUSTER].s == NULL) {
        fg_errs_add(r->rd.errs, file, line, col, "workspace needs a cluster");
        return -1;
    }
    if (!fg_index_valid_name(f[COL_CLUSTER].s, f[COL_CLUSTER].n)) {
        fg_errs_add(r->rd.errs, file, FLINE(COL_CLUSTER), f[COL_CLUSTER].col,
                    "cluster \"%.*s\" is not a valid logical cluster name", (int)f[COL_CLUSTER].n,
                    f[COL_CLUSTER].s);
        ok = 0;
    }
    if (f[COL_PATH].s && !fg_index_valid_name(f[COL_PATH].s, f[COL_PATH].n)) {
        fg_errs_add(r->rd.errs, file, FLINE(COL_PATH), f[COL_PATH].col,
                    "path \"%.*s\" is not a valid workspace path (root:org:team)",
                    (int)f[COL_PATH].n, f[COL_PATH].s);
        ok = 0;
    }
    if (f[COL_SHARD].s == NULL) {
        fg_errs_add(r->rd.errs, file, line, col, "workspace \"%.*s\" needs a shard",
                    (int)f[COL_CLUSTER].n, f[COL_CLUSTER].s);
        ok = 0;
    } else if (fg_cfg_shard_by_name(cfg, f[COL_SHARD].s, f[COL_SHARD].n, &shard) != 0) {
        fg_errs_add(r->rd.errs, file, FLINE(COL_SHARD), f[COL_SHARD].col, "unknown shard \"%.*s\"",
                    (int)f[COL_SHARD].n, f[COL_SHARD].s);
        ok = 0;
    }
    if (f[COL_TYPE].s && fg_cfg_wstype_by_name(cfg, f[COL_TYPE].s, f[COL_TYPE].n, &type) != 0) {
        fg_errs_add(r->rd.errs, file, FLINE(COL_TYPE), f[COL_TYPE].col,
                    "unknown workspace type \"%.*s\" (declare it under workspaceTypes, with "
                    "authenticators: [] if it has none)",
                    (int)f[COL_TYPE].n, f[COL_TYPE].s);
        ok = 0;
    }
    if (f[COL_PHASE].s) {
        if (fg_strn_eqi(f[COL_PHASE].s, f[COL_PHASE].n, "Ready"))
            phase = FG_WS_READY;
        else if (fg_strn_eqi(f[COL_PHASE].s, f[COL_PHASE].n, "Unavailable"))
            phase = FG_WS_UNAVAILABLE;
        else {
            fg_errs_add(r->rd.errs, file, FLINE(COL_PHASE), f[COL_PHASE].col,
                        "phase \"%.*s\" must be Ready or Unavailable", (int)f[COL_PHASE].n,
                        f[COL_PHASE].s);
            ok = 0;
        }
    }
    if (!ok)
        return -1;
    enum fg_index_add_result res =
        fg_index_add(cfg->index, f[COL_CLUSTER].s, f[COL_CLUSTER].n, f[COL_PATH].s, f[COL_PATH].n,
                     f[COL_WAREHOUSE].s, f[COL_WAREHOUSE].n, shard, type, phase);
    if (res == FG_INDEX_DUP_CLUSTER) {
        fg_errs_add(r->rd.errs, file, FLINE(COL_CLUSTER), f[COL_CLUSTER].col,
                    "cluster \"%.*s\" is listed twice", (int)f[COL_CLUSTER].n, f[COL_CLUSTER].s);
        return -1;
    }
    if (res == FG_INDEX_DUP_PATH) {
        fg_errs_add(r->rd.errs, file, FLINE(COL_PATH), f[COL_PATH].col,
                    "path \"%.*s\" is listed twice", (int)f[COL_PATH].n, f[COL_PATH].s);
        return -1;
    }
    if (res == FG_INDEX_DUP_WAREHOUSE) {
        fg_errs_add(r->rd.errs, file, FLINE(COL_WAREHOUSE), f[COL_WAREHOUSE].col,
                    "warehouse \"%.*s\" is listed twice", (int)f[COL_WAREHOUSE].n,
                    f[COL_WAREHOUSE].s);
        return -1;
    }
    return 0;
}

void fg_cfg_read_workspaces(struct fg_cfgrd *r, struct fg_ynode *root)
{
    struct fg_ypair *p = fg_yaml_get(root, "workspaces");
    if (p == NULL || fg_yaml_is_null(p->val))
        return;
    if (fg_rd_expect(&r->rd, p->val, FG_Y_SEQ, "workspaces") != 0)
        return;
    for (size_t i = 0; i < p->val->nitems; i++) {
        struct fg_ynode *n = p->val->items[i];
        if (fg_rd_expect(&r->rd, n, FG_Y_MAP, "a workspace") != 0)
            continue;
        struct field f[NCOLS] = {{0}};
        for (int c = 0; c < NCOLS; c++) {
            const char *s = fg_rd_str(&r->rd, n, col_names[c], 0, "workspace");
            struct fg_ypair *kp = fg_yaml_get(n, col_names[c]);
            if (s) {
                f[c].s = s;
                f[c].n = strlen(s);
                f[c].col = kp->val->col;
                f[c].line = kp->val->line;
            }
        }
        fg_rd_unknown(&r->rd, n, "workspace", "cluster, path, shard, type, phase, warehouse");
        /* Field errors point at the value's own line; the line is the entry's. */
        add_workspace(r, r->rd.file, n->line, n->col, f);
    }
}

static size_t split_tabs(const char *line, size_t len, struct field *out, size_t max)
{
    size_t n = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || line[i] == '\t') {
            if (n < max) {
                out[n].s = line + start;
                out[n].n = i - start;
                out[n].col = (int)start + 1;
                out[n].line = 0;
            }
            n++;
            start = i + 1;
        }
    }
    return n;
}

int fg_config_load_index(struct fg_config *cfg, const char *path, struct fg_errs *errs)
{
    struct fg_cfgrd r = {{errs, cfg->file, 0}, cfg, NULL};
    size_t len;
    char *text = fg_read_file(path, &len);
    size_t before = errs->n;
    if (text == NULL) {
        fg_cfg_file_err(errs, &cfg->index_mark, path, "cannot read index file",
                        fg_file_reason(errno));
        return -1;
    }
    int map[NCOLS + 8];
    size_t ncols = 0;
    struct fg_lines it = {text, len, 0, 0};
    const char *line;
    size_t llen;
    while (errs->n - before < 20 && fg_next_line(&it, &line, &llen)) {
        int lineno = it.lineno;
        if (llen == 0 || line[0] == '#')
            continue;
        struct field raw[NCOLS + 8];
        size_t nf = split_tabs(line, llen, raw, FG_ARRAY_LEN(raw));
        const char *sp = nf == 1 && ncols != 1 ? memchr(line, ' ', llen) : NULL;
        if (sp != NULL) {
            /* An editor that turned tabs into spaces leaves one long field. */
            fg_errs_add(errs, path, lineno, (int)(sp - line) + 1,
                        "columns are separated by tabs, not spaces (the index file is "
                        "tab-separated)");
            if (ncols == 0)
                break;
            continue;
        }
        if (ncols == 0) {
            /* The first line names the columns. */
            if (nf > NCOLS) {
                fg_errs_add(errs, path, lineno, 1, "header has %zu columns; at most %d", nf, NCOLS);
                break;
            }
            int seen[NCOLS] = {0};
            for (size_t i = 0; i < nf; i++) {
                int c;
                for (c = 0; c < NCOLS; c++)
                    if (strlen(col_names[c]) == raw[i].n &&
                        memcmp(col_names[c], raw[i].s, raw[i].n) == 0)
                        break;
                if (c == NCOLS || seen[c]) {
                    fg_errs_add(errs, path, lineno, raw[i].col,
                                "%s column \"%.*s\" in the header (the header names columns "
                                "from: cluster, path, shard, type, phase, warehouse)",
                                c == NCOLS ? "unknown" : "repeated", (int)raw[i].n, raw[i].s);
                    goto out;
                }
                seen[c] = 1;
                map[i] = c;
            }
            if (!seen[COL_CLUSTER] || !seen[COL_SHARD]) {
                fg_errs_add(errs, path, lineno, 1,
                            "the header line must name at least the cluster and shard columns "
                            "(tab-separated)");
                break;
            }
            ncols = nf;
            continue;
        }
        if (nf > ncols) {
            fg_errs_add(errs, path, lineno, raw[ncols].col,
                        "%zu fields but the header names %zu columns", nf, ncols);
            continue;
        }
        struct field f[NCOLS] = {{0}};
        for (size_t i = 0; i < nf; i++) {
            if (raw[i].n == 0 || (raw[i].n == 1 && raw[i].s[0] == '-'))
                continue;
            f[map[i]] = raw[i];
        }
        add_workspace(&r, path, lineno, 1, f);
    }
    if (ncols == 0 && errs->n == before)
        fg_errs_add(errs, path, 0, 0, "index file has no header line");
out:
    free(text);
    return errs->n == before ? 0 : -1;
}
