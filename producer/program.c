/*
 * program.c — visionbatch-producer as a function, vb_producer_main (main()
 * in visionbatch-producer.c calls it): polls the platform for unprocessed
 * runs and queues each on Kafka (one message per run, key = run id), with
 * Redis deciding atomically which runs to publish (poller.c).
 *
 *   visionbatch-producer --once            one pass, then exit
 *   visionbatch-producer [--interval N]    the service: the cron scheduler
 *                                          (scheduler.h) fires the stored cron
 *                                          jobs, the cron-jobs REST API (api.h)
 *                                          is served on `listen`, and — when the
 *                                          platform settings are configured — a
 *                                          pass of that organization every N s
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

#include <cjson/cJSON.h>
#include <pthread.h>

#include "api.h"
#include "console.h"
#include "notifier.h"
#include "poller.h"
#include "program.h"
#include "scheduler.h"
#include "visionbatch/config.h"
#include "visionbatch/cron.h"
#include "visionbatch/endpoint.h"
#include "visionbatch/http.h"
#include "visionbatch/jobs_exec.h"
#include "visionbatch/log.h"
#include "visionbatch/signals.h"
#include "visionbatch/metrics.h"
#include "visionbatch/redact.h"
#include "visionbatch/store.h"
#include "visionbatch/version.h"

#define PROG "visionbatch-producer"

static atomic_int g_cancel;

static void on_signal(int sig)
{
    (void)sig;
    g_cancel = 1;
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
           "  (no mode)           the service: runs the cron jobs stored in Redis (the\n"
           "                      REST API on --listen manages them) and, when the\n"
           "                      platform settings are given, polls that organization\n"
           "  --interval SECONDS  the service, polling every SECONDS (default:\n"
           "                      poll_interval_s); SIGTERM/SIGINT end it after the\n"
           "                      current publish with status 0\n"
           "  --healthcheck       GET http://<listen>/healthz; exit 0 when it answers 2xx\n"
           "                      within 5 s, else 1\n"
           "  --version           print the version\n\n");
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

/* Sleeps up to `s` seconds, waking early when a signal arrives. */
static void sleep_interruptible(long s)
{
    for (long ticks = s * 5; ticks > 0 && !g_cancel; ticks--) {
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* Everything the service shares between its threads: the poll loop (main
 * thread), the scheduler thread and the REST API's connection threads. */
typedef struct service {
    const vb_config *cfg;
    vb_producer_ctx *ctx; /* set once connected; the poller serialises its calls */
    /* The cron firing slots' own contexts (slot 0 uses ctx), so parallel
     * firings do not queue on ctx's lock: clones of ctx, with their own
     * Redis and HTTP connections and ctx's one Kafka producer; each touched
     * only by its slot's thread, created on its first firing, freed after
     * the scheduler and before ctx. */
    vb_producer_ctx *slot_ctx[VB_SCHED_FIRE_THREADS_MAX];
    vb_scheduler *sched;
    vb_metrics *metrics;
    vb_metric *polls;     /* visionbatch_producer_polls_total{source,result} */
    vb_metric *published; /* visionbatch_producer_runs_published_total{source} */
    vb_metric *run_errors; /* visionbatch_producer_run_errors_total{source} */
    /* Guards `store` (REST API lookups) and the publication of `ctx` and
     * `sched`, which the API's threads read while the main thread sets them. */
    pthread_mutex_t store_mu;
    vb_store *store;
    vb_console *console; /* the web console's endpoints (console.h) */
} service;

static void count_poll(service *sv, const char *source, vb_err rc, const vb_poll_stats *st)
{
    const char *poll_labels[] = {source, rc == VB_OK ? "ok" : "error"};
    vb_metric_inc(sv->polls, poll_labels);
    const char *pub_labels[] = {source};
    vb_metric_add(sv->published, pub_labels, (double)st->published);
    vb_metric_add(sv->run_errors, pub_labels, (double)st->run_errors);
}

static int api_ready(void *ctx, char *why, size_t whylen)
{
    service *sv = ctx;
    pthread_mutex_lock(&sv->store_mu);
    vb_producer_ctx *pc = sv->ctx;
    vb_scheduler *sched = sv->sched;
    pthread_mutex_unlock(&sv->store_mu);
    if (!pc) {
        snprintf(why, whylen, "not connected to Kafka and Redis yet");
        return 0;
    }
    if (!sched) { /* POST /cron-jobs/{id}/run would answer 409 */
        snprintf(why, whylen, "the cron scheduler is not running yet");
        return 0;
    }
    if (!vb_producer_kafka_reachable(pc, 2000)) {
        snprintf(why, whylen, "Kafka is unreachable");
        return 0;
    }
    pthread_mutex_lock(&sv->store_mu);
    vb_err rc = sv->store ? vb_store_ping(sv->store, NULL) : VB_ERR_REDIS;
    pthread_mutex_unlock(&sv->store_mu);
    if (rc != VB_OK) {
        snprintf(why, whylen, "Redis is unreachable");
        return 0;
    }
    return 1;
}

static vb_err api_fire_now(void *ctx, const char *job_id, char execution_id[37], vb_error *err)
{
    service *sv = ctx;
    pthread_mutex_lock(&sv->store_mu);
    vb_scheduler *sched = sv->sched;
    pthread_mutex_unlock(&sv->store_mu);
    if (!sched)
        return vb_error_set(err, VB_ERR_CONFLICT, "the scheduler is not running");
    return vb_scheduler_fire_now(sched, job_id, execution_id, err);
}

/* GET /runs/{id}: the run's state as recorded in Redis (no secrets in it). */
static vb_err api_run_state(void *ctx, const char *run_id, char **json, vb_error *err)
{
    service *sv = ctx;
    vb_run_state st;
    memset(&st, 0, sizeof st);
    pthread_mutex_lock(&sv->store_mu);
    vb_err rc = sv->store ? vb_store_get(sv->store, run_id, &st, err)
                          : vb_error_set(err, VB_ERR_REDIS, "not connected to Redis");
    pthread_mutex_unlock(&sv->store_mu);
    if (rc != VB_OK)
        return rc;
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "vision_analysis_id", st.id);
        cJSON_AddStringToObject(o, "state", vb_run_status_name(st.state));
        cJSON_AddNumberToObject(o, "attempts", (double)st.attempts);
        cJSON_AddStringToObject(o, "worker", st.worker);
        cJSON_AddStringToObject(o, "batch_ids", st.batch_ids);
        cJSON_AddStringToObject(o, "last_error", st.last_error);
        cJSON_AddStringToObject(o, "trace_id", st.trace_id);
        cJSON_AddStringToObject(o, "execution_id", st.execution_id);
        const struct {
            const char *name;
            long long ms;
        } times[] = {{"created_at", st.created_at},   {"updated_at", st.updated_at},
                     {"queued_at", st.queued_at},     {"started_at", st.started_at},
                     {"finished_at", st.finished_at}, {"lease_until", st.lease_until}};
        for (size_t i = 0; i < sizeof times / sizeof *times; i++) {
            char t[VB_TIME_STR_MAX];
            if (times[i].ms > 0 &&
                vb_time_format_rfc3339_utc((time_t)(times[i].ms / 1000), t, sizeof t) == VB_OK)
                cJSON_AddStringToObject(o, times[i].name, t);
            else
                cJSON_AddNullToObject(o, times[i].name);
        }
    }
    *json = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    vb_run_state_free(&st);
    return *json ? VB_OK : vb_error_set(err, VB_ERR_NOMEM, "out of memory");
}

/* ---- cron firings ---- */

typedef struct published_ctx {
    vb_jobs *jobs;
    const char *execution_id;
} published_ctx;

static void on_published(void *p, const char *run_id)
{
    published_ctx *pc = p;
    vb_error err;
    vb_error_clear(&err);
    if (vb_jobs_exec_add_published(pc->jobs, pc->execution_id, run_id, &err) != VB_OK)
        VB_WARN("execution %s: could not record published run %s: %s", pc->execution_id,
                run_id, err.msg);
}

/* The producer context of a firing slot: its own (created on first use),
 * or the shared one when that cannot be created. */
static vb_producer_ctx *slot_ctx(service *sv, int slot)
{
    if (slot <= 0 || slot >= VB_SCHED_FIRE_THREADS_MAX)
        return sv->ctx;
    if (!sv->slot_ctx[slot]) {
        vb_error err;
        vb_error_clear(&err);
        if (vb_producer_ctx_clone(sv->ctx, sv->cfg, &sv->slot_ctx[slot], &err) != VB_OK) {
            VB_WARN("cron firing slot %d: own connections failed, sharing the poller's: %s",
                    slot, err.msg);
            return sv->ctx;
        }
    }
    return sv->slot_ctx[slot];
}

/* The scheduler's fire callback: one poll with the job's own platform
 * settings; messages name the job as their credentials source. */
static vb_err fire_job(void *ctx, const vb_job *job, const char *execution_id,
                       vb_fire_result *out, vb_error *err)
{
    service *sv = ctx;
    if (!sv->ctx)
        return vb_error_set(err, VB_ERR_KAFKA, "not connected to Kafka and Redis yet");
    vb_producer_ctx *pctx = slot_ctx(sv, out->slot);
    vb_config jc;
    vb_err rc = vb_jobs_platform_config(out->jobs, job, sv->cfg, &jc, err);
    if (rc != VB_OK)
        return rc;
    published_ctx pc = {.jobs = out->jobs, .execution_id = execution_id};
    vb_poll_stats st;
    memset(&st, 0, sizeof st);
    rc = vb_producer_poll_ex(pctx, &jc, job->job_id, execution_id, on_published, &pc, &st,
                             err);
    count_poll(sv, "cron", rc, &st);
    out->found = (long)st.found;
    out->published = (long)st.published;
    out->skipped_in_progress = (long)st.skipped_in_progress;
    out->skipped_other_org = (long)st.other_org;
    vb_config_free(&jc);
    return rc;
}

static vb_api *start_api(const vb_config *cfg, service *sv)
{
    vb_error err;
    vb_error_clear(&err);
    vb_console_opts co = {.redis_url = cfg->redis_url,
                          .kafka_brokers = cfg->kafka_brokers,
                          .kafka_properties = cfg->kafka_properties,
                          .group_id = cfg->group_id,
                          .topic = cfg->topic,
                          .cfg = cfg};
    if (!(sv->console = vb_console_new(&co))) {
        VB_ERROR("cannot start the web console: out of memory");
        return NULL;
    }
    vb_api_opts ao = {
        .listen = cfg->listen,
        .token = cfg->api_token,
        .redis_url = cfg->redis_url,
        .secret_key = cfg->secret_key,
        .exec_cap = (size_t)cfg->executions_cap,
        .webhook_allowed_hosts = cfg->webhook_allowed_hosts,
        .limits = vb_endpoint_limits_of(cfg),
        .cb = {.ctx = sv,
               .ready = api_ready,
               .fire_now = api_fire_now,
               .run_state_json = api_run_state,
               .metrics = sv->metrics,
               .console = sv->console},
    };
    vb_api *api = vb_api_start(&ao, &err);
    if (!api)
        VB_ERROR("cannot start the REST API on %s: %s", cfg->listen, err.msg);
    else
        VB_INFO("REST API listening on %s (port %d)", cfg->listen, vb_api_port(api));
    return api;
}

static vb_notifier *start_notifier(const vb_config *cfg, vb_metrics *metrics)
{
    vb_error err;
    vb_error_clear(&err);
    vb_notifier_opts no = {
        .redis_url = cfg->redis_url,
        .secret_key = cfg->secret_key,
        .allowed_hosts = cfg->webhook_allowed_hosts,
        .producer_id = cfg->worker_id,
        .max_attempts = (int)cfg->webhook_max_attempts,
        .metrics = metrics,
    };
    vb_notifier *n = vb_notifier_start(&no, &err);
    if (!n)
        VB_ERROR("cannot start the webhook sender: %s", err.msg);
    return n;
}

static vb_scheduler *start_scheduler(const vb_config *cfg, service *sv)
{
    vb_error err;
    vb_error_clear(&err);
    vb_scheduler_opts so = {
        .redis_url = cfg->redis_url,
        .secret_key = cfg->secret_key,
        .catch_up_window_s = cfg->catch_up_window_s,
        .exec_timeout_s = 2 * cfg->batch_timeout_s,
        .exec_cap = (size_t)cfg->executions_cap,
        .producer_id = cfg->worker_id,
        .fire = fire_job,
        .fire_ctx = sv,
        .metrics = sv->metrics,
        .fire_threads = (int)cfg->cron_fire_threads,
    };
    vb_scheduler *s = vb_scheduler_start(&so, &err);
    if (!s)
        VB_ERROR("cannot start the cron scheduler: %s", err.msg);
    else
        VB_INFO("cron scheduler running (catch-up window %ld s, %ld firing threads)",
                cfg->catch_up_window_s, cfg->cron_fire_threads);
    return s;
}

/* Connects the poller (Kafka + Redis) and the API's Redis handle, retrying
 * until it works or a signal arrives. */
static int connect_service(const vb_config *cfg, service *sv, int retry)
{
    vb_error err;
    while (!g_cancel) {
        vb_error_clear(&err);
        vb_producer_ctx *pc = NULL;
        vb_store *store = NULL;
        int ok = 0;
        if (!sv->ctx && vb_producer_ctx_new(cfg, &g_cancel, &pc, &err) != VB_OK)
            VB_ERROR("cannot connect: %s", err.msg);
        else if (!sv->store && vb_store_new(cfg->redis_url, NULL, &store, &err) != VB_OK)
            VB_ERROR("cannot connect to Redis: %s", err.msg);
        else
            ok = 1;
        pthread_mutex_lock(&sv->store_mu); /* the API's threads read both */
        if (pc)
            sv->ctx = pc;
        if (store)
            sv->store = store;
        pthread_mutex_unlock(&sv->store_mu);
        if (ok)
            return 0;
        if (!retry)
            return -1;
        sleep_interruptible(2);
    }
    return -1;
}

static int serve(const vb_config *cfg, const opts *o)
{
    service sv;
    memset(&sv, 0, sizeof sv);
    sv.cfg = cfg;
    pthread_mutex_init(&sv.store_mu, NULL);
    sv.metrics = vb_metrics_new();
    if (sv.metrics) {
        sv.polls = vb_metrics_counter(sv.metrics, "visionbatch_producer_polls_total",
                                      "Polls of the platform, by source and result",
                                      "source,result");
        sv.published = vb_metrics_counter(sv.metrics, "visionbatch_producer_runs_published_total",
                                          "Runs published to Kafka", "source");
        sv.run_errors = vb_metrics_counter(sv.metrics, "visionbatch_producer_run_errors_total",
                                           "Runs that failed by themselves in a poll (the "
                                           "poll went on)", "source");
    }
    vb_api *api = NULL;
    vb_notifier *notifier = NULL;
    vb_error err;
    long interval = o->interval_s > 0 ? o->interval_s : cfg->poll_interval_s;
    int poll_platform = o->once || vb_config_require_platform(cfg, NULL) == VB_OK;
    int status = 0;

    if (!o->once && !(api = start_api(cfg, &sv))) {
        status = 1;
        goto out;
    }
    VB_INFO("producer starting: %s, topic %s, queue lease %ld ms, max attempts %ld",
            o->once ? "one pass" : poll_platform ? "polling and cron jobs" : "cron jobs only",
            cfg->topic, vb_producer_queue_lease_ms(cfg), cfg->max_attempts);
    if (connect_service(cfg, &sv, !o->once) != 0) {
        status = g_cancel ? 0 : 1;
        goto out;
    }
    if (!o->once) {
        vb_scheduler *sched = start_scheduler(cfg, &sv);
        pthread_mutex_lock(&sv.store_mu); /* api_fire_now reads it */
        sv.sched = sched;
        pthread_mutex_unlock(&sv.store_mu);
        if (!sched) {
            status = 1;
            goto out;
        }
    }
    if (!o->once && !(notifier = start_notifier(cfg, sv.metrics))) {
        status = 1;
        goto out;
    }
    if (poll_platform && !o->once)
        VB_INFO("polling organization %s every %ld s", cfg->organization_id, interval);
    while (!g_cancel) {
        if (poll_platform) {
            vb_error_clear(&err);
            vb_poll_stats st;
            memset(&st, 0, sizeof st);
            vb_err rc = vb_producer_poll(sv.ctx, cfg, NULL, NULL, &st, &err);
            count_poll(&sv, "poll", rc, &st);
            status = rc == VB_OK || rc == VB_ERR_CANCELLED ? 0 : 1;
        }
        if (o->once)
            break;
        sleep_interruptible(poll_platform ? interval : 3600);
    }
    if (g_cancel) {
        VB_INFO("signal received: stopping");
        status = o->once ? status : 0;
    }
out:
    vb_api_stop(api); /* first: its threads use the scheduler */
    vb_notifier_stop(notifier);
    vb_scheduler_stop(sv.sched);
    vb_console_free(sv.console);
    for (size_t i = 0; i < VB_SCHED_FIRE_THREADS_MAX; i++)
        vb_producer_ctx_free(sv.slot_ctx[i]);
    vb_producer_ctx_free(sv.ctx);
    vb_store_free(sv.store);
    vb_metrics_free(sv.metrics);
    pthread_mutex_destroy(&sv.store_mu);
    return status;
}

int vb_producer_main(int argc, char **argv)
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
            printf(PROG " %s\n", VB_VERSION);
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
        int rc = 1;
        if (vb_http_global_init() != VB_OK) {
            fprintf(stderr, PROG ": cannot initialise libcurl\n");
        } else {
            rc = vb_endpoint_healthcheck(cfg.listen, PROG);
            vb_http_global_cleanup();
        }
        vb_config_free(&cfg);
        return rc;
    }
    /* One pass needs the platform settings; the service without them runs
     * the cron jobs only (each job carries its own). */
    if (o.once && vb_config_require_platform(&cfg, &err) != VB_OK) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        vb_config_free(&cfg);
        return 2;
    }
    vb_signals_install(on_signal);
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
