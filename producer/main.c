/*
 * main.c — visionbatch-producer, REST API only (placeholder service loop).
 *
 * Serves the cron-jobs REST API with settings from the environment
 * (VISIONBATCH_LISTEN, REDIS_URL, VISIONBATCH_API_TOKEN,
 * VISIONBATCH_SECRET_KEY) until SIGINT/SIGTERM. The full service loop
 * (configuration, Kafka producer, poller, scheduler) replaces this file.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "api.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

int main(void)
{
    vb_error err = {0};
    vb_api_opts o = {
        .listen = getenv("VISIONBATCH_LISTEN"),
        .token = getenv("VISIONBATCH_API_TOKEN"),
        .redis_url = getenv("REDIS_URL"),
        .secret_key = getenv("VISIONBATCH_SECRET_KEY"),
    };
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    vb_api *api = vb_api_start(&o, &err);
    if (!api) {
        fprintf(stderr, "visionbatch-producer: %s\n", err.msg);
        return 1;
    }
    fprintf(stderr, "visionbatch-producer: REST API on port %d\n", vb_api_port(api));
    while (!stop)
        pause();
    vb_api_stop(api);
    return 0;
}
