/*
 * index.h - the workspace index: which logical cluster a workspace is, on
 * which shard it lives and what type it has. Lookups by cluster name, by
 * `root:org:team` path and by warehouse name are hash-table probes whose cost
 * does not depend on the index size (a million entries is a real size).
 * Built once per config load, then read-only and shared by all workers.
 */
#ifndef FG_INDEX_H
#define FG_INDEX_H

#include <stddef.h>
#include <stdint.h>

enum fg_ws_phase { FG_WS_READY = 0, FG_WS_UNAVAILABLE = 1 };

#define FG_WS_NO_TYPE UINT32_MAX

struct fg_workspace {
    const char *cluster;   /* logical cluster name: what the shard sees */
    const char *path;      /* root:org:team, or NULL */
    const char *warehouse; /* Iceberg warehouse name, or NULL */
    uint32_t shard;        /* index into the config's shards */
    uint32_t type;         /* index into the config's workspace types, or FG_WS_NO_TYPE */
    uint8_t phase;         /* enum fg_ws_phase */
};

struct fg_index;

struct fg_index *fg_index_new(void);
void fg_index_free(struct fg_index *ix);

enum fg_index_add_result {
    FG_INDEX_ADDED,
    FG_INDEX_DUP_CLUSTER,   /* cluster name already present */
    FG_INDEX_DUP_PATH,      /* path already present */
    FG_INDEX_DUP_WAREHOUSE, /* warehouse name already present */
};

/*
 * Adds a workspace; strings are copied into the index. path and warehouse
 * may be NULL. A cluster name may equal its own path (e.g. "root").
 */
enum fg_index_add_result fg_index_add(struct fg_index *ix, const char *cluster, size_t cluster_len,
                                      const char *path, size_t path_len, const char *warehouse,
                                      size_t warehouse_len, uint32_t shard, uint32_t type,
                                      uint8_t phase);

/* Lookups: NULL when absent. The strings need not be NUL-terminated. */
const struct fg_workspace *fg_index_by_cluster(const struct fg_index *ix, const char *s, size_t n);
const struct fg_workspace *fg_index_by_path(const struct fg_index *ix, const char *s, size_t n);
const struct fg_workspace *fg_index_by_warehouse(const struct fg_index *ix, const char *s,
                                                 size_t n);
/* A workspace named either way in a URL: a path first, then a cluster name. */
const struct fg_workspace *fg_index_find(const struct fg_index *ix, const char *s, size_t n);

size_t fg_index_count(const struct fg_index *ix);

/* kcp's logical-cluster path grammar: [a-z0-9]([a-z0-9-]{0,61}[a-z0-9])? joined by ':'. */
int fg_index_valid_name(const char *s, size_t n);

#endif
