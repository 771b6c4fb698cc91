/*
 * signals.h — the signal setup every visionbatch program shares: SIGINT and
 * SIGTERM go to the program's handler (which only sets a flag), SIGPIPE is
 * ignored (a peer closing a socket is an error return, not a death).
 * Call once from the main thread before other threads start.
 */
#ifndef VISIONBATCH_SIGNALS_H
#define VISIONBATCH_SIGNALS_H

void vb_signals_install(void (*on_stop)(int sig));

#endif
