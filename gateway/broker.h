/*
 * broker.h - `frontgate broker`, the loopback OAuth2 token broker (see broker.c).
 */
#ifndef FG_BROKER_H
#define FG_BROKER_H

/* Runs the broker; returns the exit status. */
int fg_broker_main(int argc, char **argv);

#endif
