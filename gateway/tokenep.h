/*
 * tokenep.h - the OAuth2 client-credentials endpoint of an Iceberg route,
 * for clients (DuckDB, PyIceberg, Spark) that only obtain tokens by POSTing
 * grant_type=client_credentials.
 *
 * client_id/client_secret come from the form body or a Basic header; the
 * pair must be a key of the configured staticKeys authenticator (id:secret,
 * the secret's SHA-256 in the key file). The answer is
 * {"access_token":<the secret>,"token_type":"bearer","expires_in":N} with
 * Cache-Control: no-store and Pragma: no-cache: the client then presents its
 * own key as a bearer token, which the same authenticator accepts. Errors
 * are OAuth2's: invalid_request, unsupported_grant_type (400),
 * invalid_client (401).
 */
#ifndef FG_TOKENEP_H
#define FG_TOKENEP_H

struct fg_exchange;

/* Serves the request on c (route = the Iceberg route with the token endpoint). */
void fg_token_endpoint(struct fg_exchange *ex);

#endif
