#include "identity.h"

#include <stdlib.h>
#include <string.h>

#define SCOPES_KEY       "authentication.kcp.io/scopes"
#define CLUSTER_NAME_KEY "authentication.kcp.io/cluster-name"
#define AUTHENTICATED    "system:authenticated"

struct fg_identity *fg_identity_new(const char *user, const char *authn)
{
    struct fg_identity *id = fg_calloc(1, sizeof(*id));
    id->refs = 1;
    id->user = fg_strdup(user);
    id->authn = authn;
    return id;
}

void fg_identity_set_uid(struct fg_identity *id, const char *uid)
{
    free(id->uid);
    id->uid = uid ? fg_strdup(uid) : NULL;
}

int fg_identity_has_group(const struct fg_identity *id, const char *group)
{
    for (size_t i = 0; i < id->ngroups; i++)
        if (strcmp(id->groups[i], group) == 0)
            return 1;
    return 0;
}

void fg_identity_add_group(struct fg_identity *id, const char *group)
{
    if (fg_identity_has_group(id, group))
        return;
    id->groups = fg_realloc(id->groups, (id->ngroups + 1) * sizeof(char *));
    id->groups[id->ngroups++] = fg_strdup(group);
}

const struct fg_extra *fg_identity_get_extra(const struct fg_identity *id, const char *key)
{
    for (size_t i = 0; i < id->nextra; i++)
        if (strcmp(id->extra[i].key, key) == 0)
            return &id->extra[i];
    return NULL;
}

void fg_identity_add_extra(struct fg_identity *id, const char *key, const char *value)
{
    struct fg_extra *e = (struct fg_extra *)fg_identity_get_extra(id, key);
    if (e == NULL) {
        id->extra = fg_realloc(id->extra, (id->nextra + 1) * sizeof(struct fg_extra));
        e = &id->extra[id->nextra++];
        memset(e, 0, sizeof(*e));
        e->key = fg_strdup(key);
    }
    for (size_t i = 0; i < e->nvalues; i++)
        if (strcmp(e->values[i], value) == 0)
            return;
    e->values = fg_realloc(e->values, (e->nvalues + 1) * sizeof(char *));
    e->values[e->nvalues++] = fg_strdup(value);
}

/* Copies s with its NUL to *at and moves *at past it. */
static char *put_str(char **at, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = memcpy(*at, s, n);
    *at += n;
    return p;
}

struct fg_identity *fg_identity_pack(const struct fg_identity *id)
{
    size_t nvalues = 0, chars = strlen(id->user) + 1 + (id->uid ? strlen(id->uid) + 1 : 0);
    for (size_t i = 0; i < id->ngroups; i++)
        chars += strlen(id->groups[i]) + 1;
    for (size_t i = 0; i < id->nextra; i++) {
        chars += strlen(id->extra[i].key) + 1;
        nvalues += id->extra[i].nvalues;
        for (size_t j = 0; j < id->extra[i].nvalues; j++)
            chars += strlen(id->extra[i].values[j]) + 1;
    }
    size_t arrays = id->nextra * sizeof(struct fg_extra) + (id->ngroups + nvalues) * sizeof(char *);
    struct fg_identity *out = fg_malloc(sizeof(*out) + arrays + chars);
    struct fg_extra *extra = (struct fg_extra *)(out + 1);
    char **ptrs = (char **)(extra + id->nextra);
    char *at = (char *)(ptrs + id->ngroups + nvalues);
    *out = (struct fg_identity){.refs = 1, .packed = 1, .authn = id->authn};
    out->user = put_str(&at, id->user);
    out->groups = id->ngroups ? ptrs : NULL;
    out->ngroups = id->ngroups;
    for (size_t i = 0; i < id->ngroups; i++)
        *ptrs++ = put_str(&at, id->groups[i]);
    out->uid = id->uid ? put_str(&at, id->uid) : NULL;
    out->extra = id->nextra ? extra : NULL;
    out->nextra = id->nextra;
    for (size_t i = 0; i < id->nextra; i++) {
        extra[i].key = put_str(&at, id->extra[i].key);
        extra[i].values = ptrs;
        extra[i].nvalues = id->extra[i].nvalues;
        for (size_t j = 0; j < id->extra[i].nvalues; j++)
            *ptrs++ = put_str(&at, id->extra[i].values[j]);
    }
    return out;
}

struct fg_identity *fg_identity_ref(struct fg_identity *id)
{
    if (id)
        __atomic_add_fetch(&id->refs, 1, __ATOMIC_RELAXED);
    return id;
}

void fg_identity_unref(struct fg_identity *id)
{
    if (id == NULL || __atomic_sub_fetch(&id->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    if (!id->packed) {
        free(id->user);
        free(id->uid);
        for (size_t i = 0; i < id->ngroups; i++)
            free(id->groups[i]);
        free(id->groups);
        for (size_t i = 0; i < id->nextra; i++) {
            free(id->extra[i].key);
            for (size_t j = 0; j < id->extra[i].nvalues; j++)
                free(id->extra[i].values[j]);
            free(id->extra[i].values);
        }
        free(id->extra);
    }
    fg_identity_unref(id->global_view);
    free(id);
}

/*
 * A value the shard reads back byte for byte: no control byte (HTAB included) and
 * no space at either end, which a header recipient would strip as OWS (RFC 9110
 * 5.5): " system:masters" must not pass a policy that looks for "system:".
 */
static int safe_value(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    if (*p == ' ')
        return 0;
    for (; *p; p++)
        if (*p < 0x20 || *p == 0x7f || (*p == ' ' && p[1] == '\0'))
            return 0;
    return 1;
}

int fg_identity_header_safe(const struct fg_identity *id)
{
    if (id->user[0] == '\0' || !safe_value(id->user) || (id->uid && !safe_value(id->uid)))
        return 0;
    for (size_t i = 0; i < id->ngroups; i++)
        if (!safe_value(id->groups[i]))
            return 0;
    for (size_t i = 0; i < id->nextra; i++) {
        if (!safe_value(id->extra[i].key) || id->extra[i].key[0] == '\0')
            return 0;
        for (size_t j = 0; j < id->extra[i].nvalues; j++)
            if (!safe_value(id->extra[i].values[j]))
                return 0;
    }
    return 1;
}

int fg_group_matches(const char *group, char *const *patterns, size_t npatterns)
{
    for (size_t i = 0; i < npatterns; i++) {
        const char *p = patterns[i];
        size_t n = strlen(p);
        if (n > 0 && p[n - 1] == '*') {
            if (strncmp(group, p, n - 1) == 0)
                return 1;
        } else if (strcmp(group, p) == 0) {
            return 1;
        }
    }
    return 0;
}

static struct fg_identity *copy_base(const struct fg_identity *id)
{
    struct fg_identity *out = fg_identity_new(id->user, id->authn);
    fg_identity_set_uid(out, id->uid);
    return out;
}

struct fg_identity *fg_identity_policy_global(const struct fg_identity *id,
                                              char *const *drop_groups, size_t ndrop)
{
    struct fg_identity *out = copy_base(id);
    for (size_t i = 0; i < id->ngroups; i++)
        if (!fg_group_matches(id->groups[i], drop_groups, ndrop))
            fg_identity_add_group(out, id->groups[i]);
    if (!fg_identity_has_group(out, "system:unauthenticated"))
        fg_identity_add_group(out, AUTHENTICATED);
    for (size_t i = 0; i < id->nextra; i++)
        for (size_t j = 0; j < id->extra[i].nvalues; j++)
            fg_identity_add_extra(out, id->extra[i].key, id->extra[i].values[j]);
    return out;
}

struct fg_identity *fg_identity_global_view(struct fg_identity *id, char *const *drop_groups,
                                            size_t ndrop)
{
    struct fg_identity *view = __atomic_load_n(&id->global_view, __ATOMIC_ACQUIRE);
    if (view == NULL) {
        /* packed: read by every request that presents id from here on */
        struct fg_identity *built = fg_identity_policy_global(id, drop_groups, ndrop);
        struct fg_identity *made = fg_identity_pack(built);
        fg_identity_unref(built);
        struct fg_identity *expected = NULL;
        if (__atomic_compare_exchange_n(&id->global_view, &expected, made, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
            view = made;
        else {
            fg_identity_unref(made); /* another thread won: use its view */
            view = expected;
        }
    }
    return fg_identity_ref(view);
}

struct fg_identity *fg_identity_policy_workspace(const struct fg_identity *id, const char *cluster,
                                                 const char **reason)
{
    if (strncmp(id->user, "system:", 7) == 0) {
        *reason = "system usernames are not admitted";
        return NULL;
    }
    struct fg_identity *out = copy_base(id);
    for (size_t i = 0; i < id->ngroups; i++)
        if (strncmp(id->groups[i], "system:", 7) != 0)
            fg_identity_add_group(out, id->groups[i]);
    fg_identity_add_group(out, AUTHENTICATED);
    for (size_t i = 0; i < id->nextra; i++) {
        if (strstr(id->extra[i].key, "kcp.io") != NULL)
            continue;
        for (size_t j = 0; j < id->extra[i].nvalues; j++)
            fg_identity_add_extra(out, id->extra[i].key, id->extra[i].values[j]);
    }
    struct fg_buf scope = {0};
    fg_buf_printf(&scope, "cluster:%s", cluster);
    fg_identity_add_extra(out, SCOPES_KEY, scope.data);
    fg_buf_free(&scope);
    fg_identity_add_extra(out, CLUSTER_NAME_KEY, cluster);
    return out;
}

static int tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != 0 && strchr("!#$&'*+-.^_`|~", c) != NULL;
}

void fg_identity_escape_extra_key(struct fg_buf *b, const char *key)
{
    static const char hex[] = "0123456789abcdef";
    int upper_next = 1; /* the key follows the '-' of "X-Remote-Extra-" */
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        unsigned char c = *p;
        if (!tchar(c)) {
            char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
            fg_buf_add(b, esc, 3);
            upper_next = 0;
            continue;
        }
        if (c >= 'a' && c <= 'z' && upper_next)
            c = (unsigned char)(c - 32);
        else if (c >= 'A' && c <= 'Z' && !upper_next)
            c = (unsigned char)(c + 32);
        fg_buf_addc(b, (char)c);
        upper_next = c == '-';
    }
}
