/*
 * echo.h - a tiny shard for demos and tests: answers every request with a
 * JSON description of what it received (method, path, query and the
 * identity headers frontgate stamped) and serves
 * POST .../apis/authentication.k8s.io/v1/selfsubjectreviews from those
 * headers, so `kubectl auth whoami` shows the identity frontgate forwarded.
 * It trusts X-Remote-* headers unconditionally: loopback demos only.
 */
#ifndef FG_ECHO_H
#define FG_ECHO_H

struct fg_echo;

/*
 * Starts the echo shard on its own thread, bound to host:port (port 0 picks
 * one). Returns NULL on failure; *bound_port receives the port.
 */
struct fg_echo *fg_echo_start(const char *host, int port, int *bound_port);
void fg_echo_stop(struct fg_echo *e);

/* Runs the echo shard on the calling thread until SIGINT/SIGTERM. */
int fg_echo_main(int argc, char **argv);

#endif
