/*
 * test_tokenreview.c - reading a TokenReview answer (fg_tokenreview_parse,
 * auth/tokenreview.h): kube's webhook rules for authenticated, audiences and
 * the user, and a reason for every refusal.
 */
#include "t.h"

#include "auth/tokenreview.h"

#include <stdlib.h>

static char *auds[] = {"frontgate", "lake"};

static struct fg_identity *parse(const char *body, size_t naud, const char **why)
{
    struct fg_tokenreview_cfg cfg = {0};
    cfg.audiences = auds;
    cfg.naudiences = naud;
    *why = NULL;
    return fg_tokenreview_parse(body, strlen(body), &cfg, "tr", why);
}

static int refused(const char *body, size_t naud, const char *want)
{
    const char *why;
    struct fg_identity *id = parse(body, naud, &why);
    int ok = id == NULL && why != NULL && strcmp(why, want) == 0;
    if (!ok)
        printf("#   %s: want \"%s\", got %s\n", body, want, id ? id->user : why);
    fg_identity_unref(id);
    return ok;
}

static void identity_from_status_user(void)
{
    const char *why;
    struct fg_identity *id =
        parse("{\"status\":{\"authenticated\":true,\"audiences\":[\"x\",\"lake\"],\"user\":{"
              "\"username\":\"system:serviceaccount:ns:sa\",\"uid\":\"u-1\",\"groups\":[\"g1\",7,"
              "\"g2\",\"g1\"],\"extra\":{\"k\":[\"a\",1,\"b\"],\"e\":\"not-a-list\"}}}}",
              2, &why);
    CHECK(id != NULL);
    if (id != NULL) {
        CHECK_STR(id->user, "system:serviceaccount:ns:sa");
        CHECK_STR(id->uid, "u-1");
        CHECK(id->ngroups == 2 && strcmp(id->groups[0], "g1") == 0 &&
              strcmp(id->groups[1], "g2") == 0);
        CHECK(id->nextra == 1 && strcmp(id->extra[0].key, "k") == 0 && id->extra[0].nvalues == 2);
        CHECK_STR(id->authn, "tr");
    }
    fg_identity_unref(id);
    /* No audiences configured: status.audiences is not looked at. */
    id = parse("{\"status\":{\"authenticated\":true,\"user\":{\"username\":\"bob\",\"uid\":\"\"}}}",
               0, &why);
    CHECK(id != NULL && strcmp(id->user, "bob") == 0 && id->uid == NULL);
    fg_identity_unref(id);
}

static void refusals_have_reasons(void)
{
    CHECK(refused("", 2, "token review: malformed response"));
    CHECK(refused("[]", 2, "token review: malformed response"));
    CHECK(refused("{\"status\":[]}", 2, "token review: malformed response"));
    CHECK(refused("{\"status\":{\"authenticated\":false}}", 2, "token review: not authenticated"));
    CHECK(
        refused("{\"status\":{\"authenticated\":\"true\"}}", 2, "token review: not authenticated"));
    CHECK(refused("{\"status\":{\"authenticated\":true,\"audiences\":[\"vault\"],"
                  "\"user\":{}}}",
                  2, "token review: audiences do not intersect"));
    CHECK(refused("{\"status\":{\"authenticated\":true}}", 1,
                  "token review: audiences do not intersect"));
    CHECK(refused("{\"status\":{\"authenticated\":true,\"audiences\":\"lake\"}}", 2,
                  "token review: audiences do not intersect"));
    CHECK(refused("{\"status\":{\"authenticated\":true,\"user\":{\"username\":\"\"}}}", 0,
                  "token review: no username"));
    CHECK(refused("{\"status\":{\"authenticated\":true,\"user\":{\"username\":5}}}", 0,
                  "token review: no username"));
}

int main(void)
{
    RUN(identity_from_status_user);
    RUN(refusals_have_reasons);
    DONE();
}
