/*
 * program.c — `visionbatch-worker` as a function, vb_worker_main (main() in
 * visionbatch-worker.c calls it): loads the settings, installs the signal
 * handlers and runs the worker (worker.c) until SIGTERM/SIGINT.
 *
 *   visionbatch-worker [--config PATH] [--concurrency N] [settings…]
 *   visionbatch-worker --healthcheck   GET http://<metrics_listen>/healthz
 *   visionbatch-worker --help | --version
 *
 * Exit status: 0 after a clean shutdown (or a healthy --healthcheck),
 * 1 on a runtime failure (Kafka/Redis unusable at start, fatal consumer
 * error, unhealthy), 2 on a configuration error.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "visionbatch/config.h"
#include "visionbatch/endpoint.h"
#include "visionbatch/http.h"
#include "visionbatch/log.h"
#include "visionbatch/signals.h"
#include "worker.h"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void help(void)
{
    printf("usage: visionbatch-worker [--config PATH] [--concurrency N] [settings]\n"
           "       visionbatch-worker --healthcheck [settings]\n"
           "       visionbatch-worker --version\n\n"
           "Consumes run messages from Kafka and processes up to `concurrency` runs at a\n"
           "time, with per-run locks and state in Redis. SIGTERM stops intake, waits up to\n"
           "shutdown_grace_s for runs in flight, hands the rest back and exits 0.\n"
           "--healthcheck asks the running worker's /healthz (metrics_listen) and exits 0\n"
           "when it answers 200 within 5 s, else 1.\n\n");
    vb_config_print_help(stdout, VB_PROG_WORKER);
}

static int has_flag(int argc, char **argv, const char *flag)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], flag) == 0)
            return 1;
    return 0;
}

int vb_worker_main(int argc, char **argv)
{
    if (vb_config_wants_help(argc, argv)) {
        help();
        return 0;
    }
    if (has_flag(argc, argv, "--version")) {
        printf("visionbatch-worker %s\n", VB_VERSION);
        return 0;
    }
    static const char *const passthrough[] = {"healthcheck", NULL};
    vb_config cfg;
    vb_error err;
    vb_error_clear(&err);
    char **rest = NULL;
    int nrest = 0;
    if (vb_config_load_ex(&cfg, VB_PROG_WORKER, argc, argv, passthrough, &rest, &nrest, &err) !=
        VB_OK) {
        fprintf(stderr, "visionbatch-worker: %s\n", err.msg);
        return 2;
    }
    int healthcheck = 0;
    for (int i = 0; i < nrest; i++) {
        if (strcmp(rest[i], "--healthcheck") == 0) {
            healthcheck = 1;
            continue;
        }
        fprintf(stderr, "visionbatch-worker: unexpected argument '%s'\n", rest[i]);
        vb_config_free(&cfg);
        return 2;
    }
    if (vb_http_global_init() != VB_OK) {
        fprintf(stderr, "visionbatch-worker: cannot initialise libcurl\n");
        vb_config_free(&cfg);
        return 1;
    }
    if (healthcheck) {
        int st = vb_endpoint_healthcheck(cfg.metrics_listen, "visionbatch-worker");
        vb_http_global_cleanup();
        vb_config_free(&cfg);
        return st;
    }

    vb_signals_install(on_signal);
    vb_log_open(cfg.log_file, (vb_log_format)cfg.log_format, (vb_log_level)cfg.log_level);

    int status = 1;
    vb_worker *w = NULL;
    if (vb_worker_new(&cfg, &w, &err) != VB_OK) {
        VB_ERROR("worker could not start: %s", err.msg);
        goto out;
    }
    vb_error_clear(&err);
    status = vb_worker_run(w, &g_stop, &err) == VB_OK ? 0 : 1;
out:
    vb_worker_free(w);
    VB_INFO("visionbatch-worker exits with status %d", status);
    vb_http_global_cleanup();
    vb_config_free(&cfg);
    vb_log_close();
    return status;
}
