/*
 * tokencmd.h - `frontgate token`, OAuth2 client credentials for token files
 * and kubectl exec credentials (see tokencmd.c).
 */
#ifndef FG_TOKENCMD_H
#define FG_TOKENCMD_H

/* Runs the command; returns the exit status. */
int fg_token_main(int argc, char **argv);

#endif
