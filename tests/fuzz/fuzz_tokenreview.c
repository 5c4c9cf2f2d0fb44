/*
 * libFuzzer: a TokenReview answer (the body of a 200 from the API server) into
 * fg_tokenreview_parse, once with audiences configured and once without.
 *
 * Oracle: the same bytes read with frontgate's strict JSON parser (auth/json.c, a different
 * parser from the jansson one under test) predict the verdict kube's webhook authenticator would
 * give: an identity exactly when status is an object, status.authenticated is true, with
 * audiences configured status.audiences holds one of them as a string, and status.user.username
 * is a non-empty string; then the identity carries that username, the uid when it is a non-empty
 * string, and exactly the distinct string groups and, per extra key, string values (nothing else).
 * A refusal always has a reason. Documents the strict parser refuses (duplicate keys, deep nesting)
 * only must not crash.
 */
#include "../../auth/identity.h"
#include "../../auth/json.h"
#include "../../auth/tokenreview.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static char *auds[] = {"frontgate", "https://kubernetes.default.svc"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t strings_in(const struct fg_json *arr)
{
    size_t n = 0;
    for (size_t i = 0; i < fg_json_len(arr) && fg_json_is(arr, FG_JSON_ARRAY); i++)
        n += fg_json_is(fg_json_at(arr, i), FG_JSON_STRING);
    return n;
}

/* s is one of the strings of the array arr. */
static int among(const struct fg_json *arr, const char *s)
{
    int hit = 0;
    for (size_t i = 0; !hit && fg_json_is(arr, FG_JSON_ARRAY) && i < fg_json_len(arr); i++)
        hit = fg_json_is(fg_json_at(arr, i), FG_JSON_STRING) &&
              strcmp(fg_json_string(fg_json_at(arr, i), NULL), s) == 0;
    return hit;
}

/* v[0..n) holds each string of arr once, and nothing else (identities keep no duplicates). */
static int same_set(const struct fg_json *arr, char *const *v, size_t n)
{
    int ok = n <= strings_in(arr);
    for (size_t i = 0; ok && i < n; i++) {
        ok = among(arr, v[i]);
        for (size_t j = 0; ok && j < i; j++)
            ok = strcmp(v[i], v[j]) != 0;
    }
    for (size_t i = 0; ok && fg_json_is(arr, FG_JSON_ARRAY) && i < fg_json_len(arr); i++) {
        const char *s = fg_json_string(fg_json_at(arr, i), NULL);
        int found = s == NULL;
        for (size_t j = 0; !found && j < n; j++)
            found = strcmp(v[j], s) == 0;
        ok = found;
    }
    return ok;
}

static int holds_audience(const struct fg_json *got, const struct fg_tokenreview_cfg *cfg)
{
    int hit = cfg->naudiences == 0;
    for (size_t i = 0; !hit && fg_json_is(got, FG_JSON_ARRAY) && i < fg_json_len(got); i++)
        for (size_t k = 0; k < cfg->naudiences; k++)
            hit |= fg_json_is(fg_json_at(got, i), FG_JSON_STRING) &&
                   strcmp(fg_json_string(fg_json_at(got, i), NULL), cfg->audiences[k]) == 0;
    return hit;
}

static void check(const struct fg_json *doc, const struct fg_tokenreview_cfg *cfg,
                  const struct fg_identity *id)
{
    const struct fg_json *st = fg_json_get(doc, "status");
    const struct fg_json *user = fg_json_get(st, "user");
    const char *name = fg_json_string(fg_json_get(user, "username"), NULL);
    int want = fg_json_is(st, FG_JSON_OBJECT) &&
               fg_json_is(fg_json_get(st, "authenticated"), FG_JSON_TRUE) &&
               holds_audience(fg_json_get(st, "audiences"), cfg) && name != NULL && *name != '\0';
    if (want != (id != NULL))
        abort();
    if (id == NULL)
        return;
    const char *uid = fg_json_string(fg_json_get(user, "uid"), NULL);
    if (strcmp(id->user, name) != 0 || (uid != NULL && *uid != '\0') != (id->uid != NULL) ||
        (id->uid != NULL && strcmp(id->uid, uid) != 0))
        abort();
    if (!same_set(fg_json_get(user, "groups"), id->groups, id->ngroups))
        abort();
    const struct fg_json *extra = fg_json_get(user, "extra");
    size_t keys = 0;
    for (size_t i = 0; fg_json_is(extra, FG_JSON_OBJECT) && i < fg_json_len(extra); i++) {
        const char *k;
        const struct fg_json *vals = fg_json_member(extra, i, &k, NULL);
        if (strings_in(vals) == 0)
            continue;
        keys++;
        const struct fg_extra *e = NULL;
        for (size_t j = 0; j < id->nextra; j++)
            if (strcmp(id->extra[j].key, k) == 0)
                e = &id->extra[j];
        if (e == NULL || !same_set(vals, e->values, e->nvalues))
            abort();
    }
    if (keys != id->nextra)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fg_tokenreview_cfg with = {0}, without = {0};
    with.audiences = auds;
    with.naudiences = FG_ARRAY_LEN(auds);
    const struct fg_tokenreview_cfg *cfgs[] = {&with, &without};
    struct fg_json_doc *doc = NULL;
    const char *jwhy = NULL;
    int strict = fg_json_parse((const char *)data, size, 64, &doc, &jwhy) == FG_JSON_OK;

    for (size_t i = 0; i < FG_ARRAY_LEN(cfgs); i++) {
        const char *why = NULL;
        struct fg_identity *id =
            fg_tokenreview_parse((const char *)data, size, cfgs[i], "fuzz", &why);
        if (id == NULL && why == NULL)
            abort();
        if (strict)
            check(fg_json_root(doc), cfgs[i], id);
        fg_identity_unref(id);
    }
    fg_json_free(doc);
    return 0;
}
