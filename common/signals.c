/*
 * signals.c — vb_signals_install() (see signals.h).
 */
#include "visionbatch/signals.h"

#include <signal.h>
#include <string.h>

void vb_signals_install(void (*on_stop)(int sig))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}
