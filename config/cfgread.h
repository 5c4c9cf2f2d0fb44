/*
 * cfgread.h - what the config readers (config.c, authncfg.c, wscfg.c) share.
 * Private to config/.
 */
#ifndef FG_CFGREAD_H
#define FG_CFGREAD_H

#include "config.h"
#include "reader.h"

struct fg_cfgrd {
    struct fg_rd rd;
    struct fg_config *cfg;
    struct fg_shard_cfg *map_clusters; /* the mapping file's /clusters/ entry (its TLS), or NULL */
};

struct fg_mark fg_cfg_mark(struct fg_cfgrd *r, const struct fg_ynode *n);
/* fg_rd_str for a file name (copied, or NULL); *m is where the name is written. */
char *fg_cfg_file(struct fg_cfgrd *r, struct fg_ynode *map, const char *key, int required,
                  const char *section, struct fg_mark *m);
/* Splits an http(s) URL into s's scheme, host, port, hostport and base path. */
int fg_cfg_parse_url(const char *url, struct fg_shard_cfg *s, const char **why);
/* One shards[] entry into s; tmpl: a template without name and url (index.fromKcp.shards). */
void fg_cfg_read_shard(struct fg_cfgrd *r, struct fg_ynode *n, struct fg_shard_cfg *s, int tmpl);
void fg_cfg_shard_free(struct fg_shard_cfg *s);
/* Name lookups: 0 with *out, or -1. */
int fg_cfg_shard_by_name(const struct fg_config *cfg, const char *name, size_t n, uint32_t *out);
int fg_cfg_authn_by_name(const struct fg_config *cfg, const char *name, uint32_t *out);
int fg_cfg_wstype_by_name(const struct fg_config *cfg, const char *name, size_t n, uint32_t *out);
/* A list of strings (copied), or NULL when absent. */
char **fg_cfg_str_list(struct fg_cfgrd *r, struct fg_ynode *n, const char *key, const char *section,
                       size_t *count);
void fg_cfg_free_strs(char **v, size_t n);

/* The {name} segments of rt's prefix (placeholders, cluster_seg); errors at `at`. */
void fg_cfg_read_placeholders(struct fg_cfgrd *r, struct fg_ynode *at, struct fg_route_cfg *rt);

/* mapcfg.c: kcp's --mapping-file as routes (and shards); fg_cfg_mapping_tls after the index */
void fg_cfg_read_mapping(struct fg_cfgrd *r, struct fg_ynode *root);
void fg_cfg_mapping_tls(struct fg_cfgrd *r);

/* authncfg.c */
void fg_cfg_read_authns(struct fg_cfgrd *r, struct fg_ynode *root);
void fg_cfg_check_issuers(struct fg_cfgrd *r);
void fg_cfg_read_authentication(struct fg_cfgrd *r, struct fg_ynode *root);
void fg_cfg_read_wstypes(struct fg_cfgrd *r, struct fg_ynode *root);
void fg_cfg_tokenreview_free(struct fg_tokenreview_cfg *t);

/* kubecfg.c: rootShard from a kubeconfig's context (NULL: its current-context); errors at `at`
 * when the file cannot be read, else in the kubeconfig */
void fg_cfg_read_kubeconfig(struct fg_cfgrd *r, struct fg_ynode *at, struct fg_kcp_cfg *k,
                            const char *file, const char *context);

/* kcpcfg.c */
void fg_cfg_read_index(struct fg_cfgrd *r, struct fg_ynode *root);
void fg_kcp_cfg_free(struct fg_kcp_cfg *k);

/* wscfg.c */
void fg_cfg_read_workspaces(struct fg_cfgrd *r, struct fg_ynode *root);

#endif
