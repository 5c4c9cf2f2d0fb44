/*
 * certgen.h - a throwaway certificate authority and a serving certificate
 * for 127.0.0.1/localhost, so `frontgate demo` can offer TLS (kubectl sends
 * credentials only over TLS).
 */
#ifndef FG_CERTGEN_H
#define FG_CERTGEN_H

/*
 * Writes ca.crt, tls.crt and tls.key (mode 0600) into dir: an ECDSA P-256
 * CA valid for a day and a leaf for IP 127.0.0.1 and DNS localhost signed by
 * it. Returns 0, or -1 with a message on stderr.
 */
int fg_certgen_demo(const char *dir);

#endif
