/*
 * libFuzzer: Iceberg REST catalog routing. Arbitrary request targets go through fg_route_resolve
 * with two Iceberg routes and a shard route behind them.
 *
 * Oracles, written apart from route.c (an oracle that called the code under test could not
 * disagree with it):
 *  - a resolved workspace is one of this file's table (cluster, warehouse, shard), never one in
 *    phase Unavailable;
 *  - on <prefix>config it is the warehouse that the one `warehouse` query parameter names once
 *    form-decoded (so the catalog picks the same one); a repeated parameter, even spelled
 *    %77arehouse, never resolves; elsewhere the first segment after the prefix is the
 *    workspace's cluster byte for byte;
 *  - the path forwarded to the shard is the shard's base path plus the request path, and holds
 *    no dot segment (also as %2e), no encoded '/' or '\', no '\' and no byte below 0x21.
 */
#include "../../config/config.h"
#include "../../gateway/route.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static struct fg_config *cfg;

static const char yaml[] =
    "listeners: [{address: 127.0.0.1:0}]\n"
    "shards:\n"
    "  - {name: lake, url: 'http://127.0.0.1:1/lake'}\n"
    "  - {name: lake2, url: 'http://127.0.0.1:2'}\n"
    "routes:\n"
    "  - {prefix: /catalog/v1/, workspace: iceberg}\n"
    "  - {prefix: /ice/, workspace: iceberg}\n"
    "  - {prefix: /, shard: lake2}\n"
    "workspaces:\n"
    "  - {cluster: 550e8400-e29b-41d4-a716-446655440000, warehouse: demo, shard: lake}\n"
    "  - {cluster: wh2, warehouse: 'sales data', shard: lake2}\n"
    "  - {cluster: wh3, warehouse: 'a&b=c%', shard: lake}\n"
    "  - {cluster: gone, warehouse: old, shard: lake, phase: Unavailable}\n"
    "  - {cluster: abc, path: 'root:org', shard: lake2}\n";

static const struct {
    const char *cluster, *warehouse;
    uint32_t shard;
    int unavailable;
} table[] = {
    {"550e8400-e29b-41d4-a716-446655440000", "demo", 0, 0},
    {"wh2", "sales data", 1, 0},
    {"wh3", "a&b=c%", 0, 0},
    {"gone", "old", 0, 1},
    {"abc", NULL, 1, 0},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int hex(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* application/x-www-form-urlencoded decoding of s[0..n) into out; -1 on a bad escape or no room. */
static long form_decode(const char *s, size_t n, char *out, size_t outsz)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++, o++) {
        int c = (unsigned char)s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (n - i < 3 || hex(s[i + 1]) < 0 || hex(s[i + 2]) < 0)
                return -1;
            c = hex(s[i + 1]) * 16 + hex(s[i + 2]);
            i += 2;
        }
        if (o + 1 >= outsz)
            return -1;
        out[o] = (char)c;
    }
    out[o] = '\0';
    return (long)o;
}

/*
 * The warehouse a catalog would read from q[0..n): the value of the single parameter whose
 * decoded name is "warehouse", decoded into out; 1 when there is exactly one, else 0.
 */
static int catalog_warehouse(const char *q, size_t n, char *out, size_t outsz)
{
    int seen = 0;
    size_t i = 0;
    while (q != NULL && i <= n) {
        const char *amp = memchr(q + i, '&', n - i);
        size_t end = amp ? (size_t)(amp - q) : n;
        const char *eq = memchr(q + i, '=', end - i);
        char name[64];
        size_t nl = eq ? (size_t)(eq - (q + i)) : end - i;
        if (form_decode(q + i, nl, name, sizeof(name)) == 9 && memcmp(name, "warehouse", 9) == 0) {
            seen++;
            if (eq == NULL || form_decode(eq + 1, end - (size_t)(eq + 1 - q), out, outsz) < 0)
                out[0] = '\0';
        }
        i = end + 1;
    }
    return seen == 1;
}

/* 1 when the path p[0..n) could make a decoding shard leave the routed tree. */
static int hostile_path(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\\' || c < 0x21 || c == 0x7f)
            return 1;
        if (c == '%' && n - i >= 3) {
            int d = hex(p[i + 1]) * 16 + hex(p[i + 2]);
            if (hex(p[i + 1]) >= 0 && hex(p[i + 2]) >= 0 && (d == '/' || d == '\\' || d == 0))
                return 1;
        }
    }
    /* dot segments, dots also counted as %2e */
    for (size_t i = 0; i < n;) {
        size_t start = i, dots = 0, other = 0;
        for (; i < n && p[i] != '/'; i++) {
            if (p[i] == '%' && n - i >= 3 && p[i + 1] == '2' && (p[i + 2] | 0x20) == 'e') {
                dots++;
                i += 2;
            } else if (p[i] == '.') {
                dots++;
            } else {
                other++;
            }
        }
        if (i > start && other == 0 && dots <= 2)
            return 1;
        i++;
    }
    return 0;
}

static void check_resolved(const char *t, size_t size, const struct fg_route_match *m)
{
    const char *q = memchr(t, '?', size);
    size_t plen = q ? (size_t)(q - t) : size;
    size_t row = FG_ARRAY_LEN(table);
    for (size_t i = 0; m->ws != NULL && i < FG_ARRAY_LEN(table); i++)
        if (strcmp(m->ws->cluster, table[i].cluster) == 0)
            row = i;
    if (row == FG_ARRAY_LEN(table) || table[row].unavailable || m->shard != table[row].shard)
        abort();
    const char *wsseg = t + m->route->prefix_len; /* workspace prefixes end with '/' */
    size_t room = plen - (size_t)(wsseg - t);
    const char *slash = memchr(wsseg, '/', room);
    size_t seglen = slash ? (size_t)(slash - wsseg) : room;
    if (seglen == 6 && memcmp(wsseg, "config", 6) == 0 && slash == NULL) {
        char wh[512];
        if (!catalog_warehouse(q ? q + 1 : NULL, q ? size - plen - 1 : 0, wh, sizeof(wh)) ||
            table[row].warehouse == NULL || strcmp(wh, table[row].warehouse) != 0)
            abort();
    } else if (seglen != strlen(table[row].cluster) ||
               memcmp(wsseg, table[row].cluster, seglen) != 0) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (cfg == NULL) {
        struct fg_errs errs = {0};
        cfg = fg_config_parse("fuzz.yaml", yaml, sizeof(yaml) - 1, &errs);
        if (cfg == NULL)
            abort();
    }
    char *t = malloc(size ? size : 1);
    memcpy(t, data, size);
    struct fg_route_match m;
    enum fg_route_outcome o = fg_route_resolve(cfg, NULL, t, size, &m);
    if (o == FG_ROUTE_OK && m.route->kind == FG_ROUTE_WORKSPACE_ICEBERG)
        check_resolved(t, size, &m);
    if (o == FG_ROUTE_OK) {
        const struct fg_shard_cfg *sh = &cfg->shards[m.shard];
        const char *q = memchr(t, '?', size);
        size_t plen = q ? (size_t)(q - t) : size, blen = strlen(sh->base_path);
        struct fg_buf b = {0};
        fg_route_upstream_target(&b, sh, &m);
        const char *bq = memchr(b.data, '?', b.len);
        size_t bplen = bq ? (size_t)(bq - b.data) : b.len;
        /* Iceberg and shard routes forward the request path as it came, under the base path. */
        if (bplen != blen + plen || memcmp(b.data, sh->base_path, blen) != 0 ||
            memcmp(b.data + blen, t, plen) != 0 || hostile_path(b.data, bplen))
            abort();
        fg_buf_free(&b);
    }
    free(t);
    return 0;
}
