/* libFuzzer: route resolution and path checks on arbitrary request targets. */
#include "../../config/config.h"
#include "../../gateway/route.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static struct fg_config *cfg;

static const char yaml[] =
    "listeners: [{address: 127.0.0.1:0}]\n"
    "shards: [{name: a, url: 'http://127.0.0.1:1/base'}, {name: c, url: 'http://127.0.0.1:2'}]\n"
    "routes:\n"
    "  - {prefix: /clusters/, workspace: path}\n"
    "  - {prefix: /catalog/v1/, workspace: iceberg}\n"
    "  - {prefix: '/services/apiexport/{cluster}/{export}/', shard: a}\n"
    "  - {prefix: /services/, shard: a, resolveCluster: true}\n"
    "  - {prefix: /api, shard: a}\n"
    "  - {prefix: /, shard: a}\n"
    "workspaces:\n"
    "  - {cluster: abc, path: 'root:org:team', shard: a}\n"
    "  - {cluster: 550e8400-e29b-41d4-a716-446655440000, warehouse: demo, shard: c}\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * 1 when p[0..n) has a "." or ".." segment, dots also counted percent-encoded (%2e): what a shard
 * that decodes would resolve. Written apart from fg_route_path_ok on purpose: an oracle that
 * called the code under test could not disagree with it.
 */
static int has_dot_segment(const char *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t start = i, dots = 0, other = 0;
        while (i < n && p[i] != '/') {
            if (p[i] == '.') {
                dots++;
                i++;
            } else if (n - i >= 3 && p[i] == '%' && p[i + 1] == '2' &&
                       (p[i + 2] == 'e' || p[i + 2] == 'E')) {
                dots++;
                i += 3;
            } else {
                other++;
                i++;
            }
        }
        if (i > start && other == 0 && dots <= 2)
            return 1;
        i++;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (cfg == NULL) {
        struct fg_errs errs = {0};
        cfg = fg_config_parse("fuzz.yaml", yaml, sizeof(yaml) - 1, &errs);
        if (cfg == NULL)
            abort();
    }
    char *target = malloc(size ? size : 1);
    memcpy(target, data, size);
    struct fg_route_match m;
    enum fg_route_outcome o = fg_route_resolve(cfg, NULL, target, size, &m);
    if (o == FG_ROUTE_OK) {
        struct fg_buf b = {0};
        fg_route_upstream_target(&b, &cfg->shards[m.shard], &m);
        /* Whatever was routed is clean: no dot segment in the path forwarded to a shard. The
         * query goes as it came; dots there are not path segments. */
        const char *q = memchr(b.data, '?', b.len);
        if (has_dot_segment(b.data, q ? (size_t)(q - b.data) : b.len))
            abort();
        /* A shard route forwards the target as sent (after the base path), whatever cluster
         * resolveCluster looked up; that cluster is a part of the target itself. */
        if (m.route->kind == FG_ROUTE_SHARD &&
            (b.len != 5 + size || memcmp(b.data, "/base", 5) != 0 ||
             memcmp(b.data + 5, target, size) != 0))
            abort();
        if (m.route->kind == FG_ROUTE_SHARD && m.ws &&
            (m.ws_name < target || m.ws_name + m.ws_name_len > target + size))
            abort();
        fg_buf_free(&b);
    }
    free(target);
    return 0;
}
