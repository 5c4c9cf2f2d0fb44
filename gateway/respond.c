/*
 * respond.c - error bodies in the client's dialect: a Kubernetes Status for
 * API routes, the Iceberg error model for catalog routes.
 */
#include "conn.h"
#include "http.h"

static const char *iceberg_type(int status)
{
    switch (status) {
    case 400:
        return "BadRequestException";
    case 401:
        return "NotAuthorizedException";
    case 403:
        return "ForbiddenException";
    case 404:
        return "NoSuchWarehouseException";
    case 405:
        return "MethodNotAllowedException";
    default:
        return status >= 500 ? "ServiceUnavailableException" : "BadRequestException";
    }
}

void fg_conn_respond_status(struct fg_conn *c, int status, const char *reason, const char *message)
{
    struct fg_buf body = {0};
    const struct fg_route_cfg *rt = c->req.match.route;
    if (rt && rt->kind == FG_ROUTE_WORKSPACE_ICEBERG) {
        /* Iceberg clients parse {"error":{...}}; 401 makes them refresh their token. */
        if (status == 401)
            message = "Not authorized to make this request";
        fg_iceberg_error_json(&body, status, iceberg_type(status), message);
    } else {
        fg_status_json(&body, status, reason, message);
    }
    fg_conn_respond(c, status, "application/json", body.data, body.len);
    fg_buf_free(&body);
}
