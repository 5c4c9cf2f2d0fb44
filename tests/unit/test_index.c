/*
 * test_index.c - the workspace index (config/index.h): lookups by cluster,
 * path and warehouse, duplicate detection, and kcp's name grammar.
 */
#include "t.h"

#include "config/index.h"

#include <stdlib.h>

static enum fg_index_add_result add(struct fg_index *ix, const char *cluster, const char *path,
                                    const char *wh, uint32_t shard)
{
    return fg_index_add(ix, cluster, strlen(cluster), path, path ? strlen(path) : 0, wh,
                        wh ? strlen(wh) : 0, shard, FG_WS_NO_TYPE, FG_WS_READY);
}

static int valid(const char *s)
{
    return fg_index_valid_name(s, strlen(s));
}

static void empty_index(void)
{
    struct fg_index *ix = fg_index_new();
    CHECK(fg_index_count(ix) == 0);
    CHECK(fg_index_by_cluster(ix, "root", 4) == NULL);
    CHECK(fg_index_by_path(ix, "root", 4) == NULL);
    CHECK(fg_index_by_warehouse(ix, "wh", 2) == NULL);
    CHECK(fg_index_find(ix, "root", 4) == NULL);
    CHECK(fg_index_by_cluster(ix, "", 0) == NULL);
    fg_index_free(ix);
}

static void lookup_every_way(void)
{
    struct fg_index *ix = fg_index_new();
    CHECK(fg_index_add(ix, "2x8ab3xq", 8, "root:org:team", 13, "sales", 5, 3, 7,
                       FG_WS_UNAVAILABLE) == FG_INDEX_ADDED);
    const struct fg_workspace *w = fg_index_by_cluster(ix, "2x8ab3xq", 8);
    CHECK(w != NULL);
    if (w) {
        CHECK_STR(w->cluster, "2x8ab3xq");
        CHECK_STR(w->path, "root:org:team");
        CHECK_STR(w->warehouse, "sales");
        CHECK(w->shard == 3);
        CHECK(w->type == 7);
        CHECK(w->phase == FG_WS_UNAVAILABLE);
    }
    CHECK(fg_index_by_path(ix, "root:org:team", 13) == w);
    CHECK(fg_index_by_warehouse(ix, "sales", 5) == w);
    /* Each table only answers for its own kind of name. */
    CHECK(fg_index_by_path(ix, "2x8ab3xq", 8) == NULL);
    CHECK(fg_index_by_cluster(ix, "root:org:team", 13) == NULL);
    CHECK(fg_index_by_warehouse(ix, "2x8ab3xq", 8) == NULL);
    CHECK(fg_index_count(ix) == 1);
    fg_index_free(ix);
}

static void optional_path_and_warehouse(void)
{
    struct fg_index *ix = fg_index_new();
    CHECK(add(ix, "c1", NULL, NULL, 0) == FG_INDEX_ADDED);
    const struct fg_workspace *w = fg_index_by_cluster(ix, "c1", 2);
    CHECK(w != NULL && w->path == NULL && w->warehouse == NULL);
    /* Two workspaces without a path or warehouse do not collide on "no path". */
    CHECK(add(ix, "c2", NULL, NULL, 0) == FG_INDEX_ADDED);
    CHECK(fg_index_count(ix) == 2);
    fg_index_free(ix);
}

/* Lookup strings are length-delimited slices of a URL, not C strings. */
static void lookup_not_nul_terminated(void)
{
    struct fg_index *ix = fg_index_new();
    add(ix, "abc", "root:org", NULL, 1);
    const char *url = "/clusters/root:org/api";
    CHECK(fg_index_by_path(ix, url + 10, 8) != NULL);
    CHECK(fg_index_by_path(ix, url + 10, 7) == NULL);  /* "root:or" */
    CHECK(fg_index_by_path(ix, url + 10, 9) == NULL);  /* "root:org/" */
    CHECK(fg_index_by_cluster(ix, "abcd", 3) != NULL); /* "abc" */
    CHECK(fg_index_by_cluster(ix, "ab", 2) == NULL);
    fg_index_free(ix);
}

static void duplicates_refused(void)
{
    struct fg_index *ix = fg_index_new();
    CHECK(add(ix, "c1", "root:a", "w1", 0) == FG_INDEX_ADDED);
    CHECK(add(ix, "c1", "root:b", "w2", 0) == FG_INDEX_DUP_CLUSTER);
    CHECK(add(ix, "c2", "root:a", "w2", 0) == FG_INDEX_DUP_PATH);
    CHECK(add(ix, "c2", "root:b", "w1", 0) == FG_INDEX_DUP_WAREHOUSE);
    /* A refused entry leaves nothing behind. */
    CHECK(fg_index_count(ix) == 1);
    CHECK(fg_index_by_cluster(ix, "c2", 2) == NULL);
    CHECK(fg_index_by_path(ix, "root:b", 6) == NULL);
    CHECK(fg_index_by_warehouse(ix, "w2", 2) == NULL);
    CHECK(add(ix, "c2", "root:b", "w2", 0) == FG_INDEX_ADDED);
    CHECK(fg_index_count(ix) == 2);
    fg_index_free(ix);
}

/* kcp's root workspace is cluster "root" with path "root". */
static void cluster_equal_to_own_path(void)
{
    struct fg_index *ix = fg_index_new();
    CHECK(add(ix, "root", "root", NULL, 0) == FG_INDEX_ADDED);
    const struct fg_workspace *w = fg_index_by_cluster(ix, "root", 4);
    CHECK(w != NULL && fg_index_by_path(ix, "root", 4) == w);
    fg_index_free(ix);
}

/* A URL segment is tried as a path first, then as a cluster name. */
static void find_prefers_path(void)
{
    struct fg_index *ix = fg_index_new();
    add(ix, "abc", "root:x", NULL, 1);
    add(ix, "other", "abc", NULL, 2);
    const struct fg_workspace *w = fg_index_find(ix, "abc", 3);
    CHECK(w != NULL && w->shard == 2);
    w = fg_index_find(ix, "root:x", 6);
    CHECK(w != NULL && w->shard == 1);
    w = fg_index_find(ix, "other", 5);
    CHECK(w != NULL && w->shard == 2);
    CHECK(fg_index_find(ix, "nope", 4) == NULL);
    fg_index_free(ix);
}

/* Big enough to force many table and array regrowths; checks every entry after. */
static void many_entries(void)
{
    enum { N = 200000 };
    struct fg_index *ix = fg_index_new();
    char c[32], p[48], w[32];
    int bad_add = 0, bad_get = 0;
    for (int i = 0; i < N; i++) {
        snprintf(c, sizeof(c), "c%d", i);
        snprintf(p, sizeof(p), "root:org%d:team", i);
        snprintf(w, sizeof(w), "wh-%d", i);
        if (add(ix, c, p, (i % 2) ? w : NULL, (uint32_t)i) != FG_INDEX_ADDED)
            bad_add++;
    }
    CHECK(bad_add == 0);
    CHECK(fg_index_count(ix) == N);
    for (int i = 0; i < N; i++) {
        snprintf(c, sizeof(c), "c%d", i);
        snprintf(p, sizeof(p), "root:org%d:team", i);
        snprintf(w, sizeof(w), "wh-%d", i);
        const struct fg_workspace *x = fg_index_by_cluster(ix, c, strlen(c));
        if (x == NULL || x->shard != (uint32_t)i || strcmp(x->cluster, c) != 0 ||
            fg_index_by_path(ix, p, strlen(p)) != x || fg_index_find(ix, c, strlen(c)) != x ||
            fg_index_by_warehouse(ix, w, strlen(w)) != ((i % 2) ? x : NULL))
            bad_get++;
    }
    CHECK(bad_get == 0);
    CHECK(fg_index_by_cluster(ix, "c200000", 7) == NULL);
    CHECK(add(ix, "c199999", NULL, NULL, 0) == FG_INDEX_DUP_CLUSTER);
    CHECK(add(ix, "fresh", "root:org0:team", NULL, 0) == FG_INDEX_DUP_PATH);
    CHECK(add(ix, "fresh", NULL, "wh-1", 0) == FG_INDEX_DUP_WAREHOUSE);
    fg_index_free(ix);
}

/* A string longer than a string chunk still interns and looks up. */
static void long_strings(void)
{
    size_t n = (1u << 20) + 100;
    char *big = malloc(n);
    memset(big, 'w', n);
    struct fg_index *ix = fg_index_new();
    CHECK(fg_index_add(ix, "c", 1, NULL, 0, big, n, 0, FG_WS_NO_TYPE, 0) == FG_INDEX_ADDED);
    CHECK(add(ix, "d", "root", NULL, 0) == FG_INDEX_ADDED);
    CHECK(fg_index_by_warehouse(ix, big, n) != NULL);
    CHECK(fg_index_by_path(ix, "root", 4) != NULL);
    fg_index_free(ix);
    free(big);
}

static void valid_names(void)
{
    char label63[64];
    memset(label63, 'a', 63);
    label63[63] = '\0';
    const char *good[] = {"root", "a",        "0",        "root:org:team", "a-b",
                          "a--b", "2x8ab3xq", "root:0:z", "x1-2-3y",       label63};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (!valid(good[i])) {
            printf("#   rejected \"%s\"\n", good[i]);
            CHECK(0);
        }
    }
    char three[200];
    snprintf(three, sizeof(three), "%s:%s:%s", label63, label63, label63);
    CHECK(valid(three));
}

static void invalid_names(void)
{
    char label64[65];
    memset(label64, 'a', 64);
    label64[64] = '\0';
    char nested[80];
    snprintf(nested, sizeof(nested), "root:%s", label64);
    const char *bad[] = {
        "",  "Root", "rOOt", "-a",   "a-", "a::b", ":a", "a:",  ":",         "a_b",   "a.b", "a b",
        "*", "a/b",  "a:-b", "a:b-", "é",  "a\tb", "..", "%41", "root:org:", label64, nested};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (valid(bad[i])) {
            printf("#   accepted \"%s\"\n", bad[i]);
            CHECK(0);
        }
    }
    CHECK(!fg_index_valid_name("ab\0c", 4));
}

/* Only n bytes count: a prefix of a longer string can be valid on its own. */
static void valid_name_length_delimited(void)
{
    CHECK(fg_index_valid_name("root:org", 4));
    CHECK(!fg_index_valid_name("root:org", 5)); /* "root:" */
    CHECK(fg_index_valid_name("abc/def", 3));
}

int main(void)
{
    RUN(empty_index);
    RUN(lookup_every_way);
    RUN(optional_path_and_warehouse);
    RUN(lookup_not_nul_terminated);
    RUN(duplicates_refused);
    RUN(cluster_equal_to_own_path);
    RUN(find_prefers_path);
    RUN(many_entries);
    RUN(long_strings);
    RUN(valid_names);
    RUN(invalid_names);
    RUN(valid_name_length_delimited);
    DONE();
}
