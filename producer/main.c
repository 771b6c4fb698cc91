/*
 * main.c — visionbatch-producer: polls the platform for unprocessed runs and
 * queues each on Kafka (one message per run, key = run id), with Redis
 * deciding atomically which runs to publish (poller.c).
 *
 *   visionbatch-producer --once            one pass, then exit
 *   visionbatch-producer [--interval N]    a pass every N seconds until SIGTERM
 *   visionbatch-producer --healthcheck     GET http://<listen>/healthz, exit 0/1
 *
 * Exit status: 0 success (also after SIGTERM/SIGINT: the current publish is
 * finished first), 1 a pass failed (--once) or the health check failed,
 * 2 usage or configuration error.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "poller.h"
#include "visionbatch/config.h"
#include "visionbatch/http.h"
#include "visionbatch/log.h"

#define VB_PRODUCER_VERSION "0.1.0"
#define PROG "visionbatch-producer"

static volatile sig_atomic_t g_cancel;

static void on_signal(int sig)
{
    (void)sig;
    g_cancel = 1;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}

static void help(void)
{
    printf("usage: " PROG " [--once | --interval SECONDS | --healthcheck] [--config PATH] "
           "[settings]\n\n"
           "Fetches the unprocessed vision analysis runs of the organization from the\n"
           "external API and queues each on Kafka (topic, key = run id) for the workers.\n"
           "Redis records every run's state, so a run is published once per queue lease\n"
           "(max(10 x lease_ms, 2 x poll interval)), again when it failed with attempts\n"
           "left, never when it is queued, in progress or uploaded; a run out of attempts\n"
           "becomes dead and is copied once to the dead-letter topic.\n\n"
           "  --once              one pass, then exit (0: every run published or rightly\n"
           "                      skipped, 1: a failure)\n"
           "  --interval SECONDS  a pass every SECONDS (default: poll_interval_s) until\n"
           "                      SIGTERM/SIGINT, which end the service after the current\n"
           "                      publish with status 0\n"
           "  --healthcheck       GET http://<listen>/healthz; exit 0 when it answers 2xx\n"
           "                      within 5 s, else 1\n"
           "  --version           print the version\n\n"
           "Settings (flag > environment > config file > default):\n");
    vb_config_print_help(stdout, VB_PROG_PRODUCER);
}

typedef struct opts {
    int once;
    int healthcheck;
    int version;
    long interval_s; /* 0 = from settings */
} opts;

static int parse_interval(const char *s, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || errno || *end || v < 1 || v > 604800)
        return -1;
    *out = v;
    return 0;
}

/* Parses the program's own options among the positional arguments. */
static int parse_opts(int n, char **rest, opts *o)
{
    memset(o, 0, sizeof *o);
    for (int i = 0; i < n; i++) {
        const char *a = rest[i];
        if (strcmp(a, "--once") == 0) {
            o->once = 1;
        } else if (strcmp(a, "--healthcheck") == 0) {
            o->healthcheck = 1;
        } else if (strcmp(a, "--version") == 0) {
            o->version = 1;
        } else if (strncmp(a, "--interval=", 11) == 0 || strcmp(a, "--interval") == 0) {
            const char *v = a[10] == '=' ? a + 11 : (i + 1 < n ? rest[++i] : NULL);
            if (parse_interval(v, &o->interval_s) != 0) {
                fprintf(stderr, PROG ": --interval needs whole seconds, 1-604800\n");
                return -1;
            }
        } else {
            fprintf(stderr, PROG ": unexpected argument '%s' (see --help)\n", a);
            return -1;
        }
    }
    if (o->once + o->healthcheck + (o->interval_s > 0) > 1) {
        fprintf(stderr, PROG ": --once, --interval and --healthcheck exclude each other\n");
        return -1;
    }
    return 0;
}

/* http://<listen>/healthz, with a wildcard address replaced by loopback. */
static void health_url(const char *listen, char *out, size_t outlen)
{
    const char *colon = strrchr(listen, ':');
    const char *port = colon ? colon + 1 : "8000";
    size_t hostlen = colon ? (size_t)(colon - listen) : strlen(listen);
    char host[256];
    if (hostlen >= sizeof host)
        hostlen = sizeof host - 1;
    memcpy(host, listen, hostlen);
    host[hostlen] = '\0';
    if (hostlen == 0 || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "*") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    else if (strcmp(host, "[::]") == 0)
        snprintf(host, sizeof host, "[::1]");
    snprintf(out, outlen, "http://%s:%s/healthz", host, port);
}

static int healthcheck(const vb_config *cfg)
{
    char url[400];
    health_url(cfg->listen ? cfg->listen : "127.0.0.1:8000", url, sizeof url);
    if (vb_http_global_init() != VB_OK) {
        fprintf(stderr, PROG ": cannot initialise libcurl\n");
        return 1;
    }
    vb_http *h = vb_http_new();
    vb_http_request req = {.method = "GET", .url = url};
    vb_http_policy pol = {.connect_timeout_ms = 2000, .timeout_ms = 4500, .retries = 0};
    vb_http_response resp;
    memset(&resp, 0, sizeof resp);
    vb_error err;
    vb_error_clear(&err);
    int status = 1;
    if (!h)
        fprintf(stderr, PROG ": out of memory\n");
    else if (vb_http_perform(h, &req, &pol, &resp, &err) == VB_OK)
        status = 0;
    else
        fprintf(stderr, PROG ": health check %s failed: %s\n", url, err.msg);
    vb_http_response_free(&resp);
    vb_http_free(h);
    vb_http_global_cleanup();
    return status;
}

/* Sleeps up to `s` seconds, waking early when a signal arrives. */
static void sleep_interruptible(long s)
{
    for (long ticks = s * 5; ticks > 0 && !g_cancel; ticks--) {
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static int serve(const vb_config *cfg, const opts *o)
{
    vb_producer_ctx *ctx = NULL;
    vb_error err;
    long interval = o->interval_s > 0 ? o->interval_s : cfg->poll_interval_s;
    int status = 0;

    VB_INFO("producer starting: %s, topic %s, organization %s, queue lease %ld ms, "
            "max attempts %ld",
            o->once ? "one pass" : "polling", cfg->topic, cfg->organization_id,
            vb_producer_queue_lease_ms(cfg), cfg->max_attempts);
    if (!o->once)
        VB_INFO("polling every %ld s", interval);
    while (!g_cancel) {
        vb_error_clear(&err);
        if (!ctx && vb_producer_ctx_new(cfg, &g_cancel, &ctx, &err) != VB_OK) {
            VB_ERROR("cannot connect: %s", err.msg);
            status = 1;
        } else {
            vb_poll_stats st;
            vb_err rc = vb_producer_poll(ctx, cfg, NULL, NULL, &st, &err);
            status = rc == VB_OK || rc == VB_ERR_CANCELLED ? 0 : 1;
        }
        if (o->once)
            break;
        sleep_interruptible(interval);
    }
    if (g_cancel) {
        VB_INFO("signal received: stopping");
        status = o->once ? status : 0;
    }
    vb_producer_ctx_free(ctx);
    return status;
}

int main(int argc, char **argv)
{
    if (vb_config_wants_help(argc, argv)) {
        help();
        return 0;
    }
    static const char *const passthrough[] = {"once", "interval", "healthcheck", "version",
                                              NULL};
    vb_config cfg;
    vb_error err;
    vb_error_clear(&err);
    char **rest = NULL;
    int nrest = 0;
    opts o;
    /* --version needs no valid settings. */
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--version") == 0) {
            printf(PROG " %s\n", VB_PRODUCER_VERSION);
            return 0;
        }
    if (vb_config_load_ex(&cfg, VB_PROG_PRODUCER, argc, argv, passthrough, &rest, &nrest, &err) !=
        VB_OK) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        return 2;
    }
    if (parse_opts(nrest, rest, &o) != 0) {
        vb_config_free(&cfg);
        return 2;
    }
    if (o.healthcheck) {
        int rc = healthcheck(&cfg);
        vb_config_free(&cfg);
        return rc;
    }
    if (vb_config_require_platform(&cfg, &err) != VB_OK) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        vb_config_free(&cfg);
        return 2;
    }
    install_signals();
    vb_log_open(cfg.log_file, (vb_log_format)cfg.log_format, (vb_log_level)cfg.log_level);
    if (vb_http_global_init() != VB_OK) {
        fprintf(stderr, PROG ": cannot initialise libcurl\n");
        vb_config_free(&cfg);
        return 1;
    }
    int status = serve(&cfg, &o);
    vb_http_global_cleanup();
    vb_log_close();
    vb_config_free(&cfg);
    return status;
}
