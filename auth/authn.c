#include "authn.h"

#include <stdlib.h>
#include <string.h>

enum fg_authn_status fg_authn_run(struct fg_authn *a, const struct fg_credential *cred,
                                  struct fg_authn_result *res, struct fg_authn_waiter *waiter)
{
    memset(res, 0, sizeof(*res));
    waiter->cancel = NULL;
    res->status = a->ops->authenticate(a, cred, res, waiter);
    return res->status;
}

int fg_authn_cancel(struct fg_authn_waiter *w)
{
    if (w->cancel == NULL)
        return 1;
    int (*cancel)(struct fg_authn_waiter *) = w->cancel;
    w->cancel = NULL;
    return cancel(w);
}

int fg_authn_ready(struct fg_authn *a)
{
    return a->ops->ready == NULL || a->ops->ready(a);
}

struct fg_authn *fg_authn_ref(struct fg_authn *a)
{
    __atomic_add_fetch(&a->refs, 1, __ATOMIC_RELAXED);
    return a;
}

void fg_authn_unref(struct fg_authn *a)
{
    if (a == NULL || __atomic_sub_fetch(&a->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    a->ops->free(a);
}

int fg_bearer_from_header(const char *value, size_t len, const char **tok, size_t *tok_len)
{
    size_t i = 0;
    while (i < len && (value[i] == ' ' || value[i] == '\t'))
        i++;
    if (len - i < 7 || !fg_strn_prefixi(value + i, len - i, "bearer"))
        return -1;
    i += 6;
    if (value[i] != ' ' && value[i] != '\t')
        return -1;
    while (i < len && (value[i] == ' ' || value[i] == '\t'))
        i++;
    size_t end = len;
    while (end > i && (value[end - 1] == ' ' || value[end - 1] == '\t'))
        end--;
    if (end == i)
        return -1;
    for (size_t j = i; j < end; j++)
        if (value[j] == ' ' || value[j] == '\t')
            return -1;
    *tok = value + i;
    *tok_len = end - i;
    return 0;
}
