#include "tokenep.h"

#include "../auth/statickeys.h"
#include "exchange.h"
#include "http.h"

#include <openssl/crypto.h>
#include <string.h>

#define MAX_FORM  (16 * 1024)
#define MAX_FIELD 512

static void oauth_error(struct fg_exchange *ex, int status, const char *error, const char *desc)
{
    struct fg_buf b = {0};
    fg_buf_adds(&b, "{\"error\":");
    fg_buf_json_str(&b, error, strlen(error));
    fg_buf_adds(&b, ",\"error_description\":");
    fg_buf_json_str(&b, desc, strlen(desc));
    fg_buf_adds(&b, "}\n");
    ex->req.reason = desc;
    fg_ex_respond(ex, status, "application/json", b.data, b.len);
    fg_buf_free(&b);
}

static const struct fg_statickeys *key_set(struct fg_exchange *ex)
{
    const struct fg_token_endpoint_cfg *t = ex->req.match.route->token_endpoint;
    return fg_statickeys_of(ex->req.snap->authns[t->authn]);
}

static void answer(struct fg_exchange *ex, const char *body, size_t len)
{
    struct fg_req *r = &ex->req;
    char grant[128], id[MAX_FIELD], secret[MAX_FIELD], hid[MAX_FIELD], hsecret[MAX_FIELD];
    int have_form_id = 0, have_basic = 0;
    if (body == NULL) {
        oauth_error(ex, 413, "invalid_request", "request body too large");
        return;
    }
    /* RFC 6749 3.2: a parameter sent without a value is treated as omitted. */
    if (fg_form_get(body, len, "grant_type", grant, sizeof(grant)) != 0 || grant[0] == '\0') {
        oauth_error(ex, 400, "invalid_request", "grant_type is required");
        return;
    }
    if (strcmp(grant, "client_credentials") != 0) {
        oauth_error(ex, 400, "unsupported_grant_type", "only client_credentials is supported");
        return;
    }
    if (r->f.auth_idx >= 0) {
        size_t vlen;
        const char *v = fg_req_header(r, r->f.auth_idx, &vlen);
        have_basic = fg_basic_credentials(v, vlen, hid, sizeof(hid), hsecret, sizeof(hsecret)) == 0;
    }
    have_form_id = fg_form_get(body, len, "client_id", id, sizeof(id)) == 0 && id[0] &&
                   fg_form_get(body, len, "client_secret", secret, sizeof(secret)) == 0 &&
                   secret[0];
    /* The Basic header is what OAuth2 recommends; it wins over form fields. */
    const char *cid = have_basic ? hid : have_form_id ? id : NULL;
    const char *csecret = have_basic ? hsecret : have_form_id ? secret : NULL;
    const struct fg_identity *who = NULL;
    if (cid && csecret)
        who = fg_statickeys_check_pair(key_set(ex), cid, strlen(cid), csecret, strlen(csecret));
    if (who == NULL) {
        oauth_error(ex, 401, "invalid_client", "client authentication failed");
    } else {
        struct fg_buf b = {0};
        fg_buf_adds(&b, "{\"access_token\":");
        fg_buf_json_str(&b, csecret, strlen(csecret));
        fg_buf_printf(&b, ",\"token_type\":\"bearer\",\"expires_in\":%llu}\n",
                      (unsigned long long)r->match.route->token_endpoint->expires_in_s);
        r->identity = fg_identity_ref((struct fg_identity *)who);
        r->authn = r->match.route->token_endpoint->authn_name;
        fg_ex_respond(ex, 200, "application/json", b.data, b.len);
        OPENSSL_cleanse(b.data, b.len);
        fg_buf_free(&b);
    }
    OPENSSL_cleanse(secret, sizeof(secret));
    OPENSSL_cleanse(hsecret, sizeof(hsecret));
}

void fg_token_endpoint(struct fg_exchange *ex)
{
    if (ex->req.line.method != HTTP_POST) {
        oauth_error(ex, 405, "invalid_request", "use POST");
        return;
    }
    fg_ex_read_body(ex, MAX_FORM, answer);
}
