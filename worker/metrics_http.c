/*
 * metrics_http.c — the worker's small HTTP server (libmicrohttpd) for
 * orchestration and monitoring, on metrics_listen:
 *   GET /healthz  200 "ok" while the Kafka poll loop is turning, else 503
 *   GET /metrics  Prometheus text format (version 0.0.4)
 * and the client side of `visionbatch-worker --healthcheck`.
 *
 * The server runs in libmicrohttpd's own thread and only reads atomics from
 * vb_metrics, so it never blocks the worker. Answers are built in a fixed
 * buffer; anything but GET of those two paths is 404/405.
 */
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "visionbatch/buf.h"
#include "visionbatch/http.h"
#include "visionbatch/log.h"
#include "worker.h"

const double vb_duration_bounds[VB_DURATION_BUCKETS] = {1,   5,   15,   30,   60,   120,
                                                        300, 600, 1200, 1800, 3600, 7200};

static const char *const outcome_names[VB_OUT__COUNT] = {
    [VB_OUT_UPLOADED] = "uploaded",     [VB_OUT_SKIPPED] = "skipped",
    [VB_OUT_FAILED] = "failed",         [VB_OUT_DEAD] = "dead",
    [VB_OUT_LEASE_LOST] = "lease_lost", [VB_OUT_HANDED_BACK] = "handed_back",
};

const char *vb_outcome_name(vb_outcome o)
{
    return (unsigned)o < VB_OUT__COUNT ? outcome_names[o] : "unknown";
}

long long vb_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void vb_metrics_observe_run(vb_metrics *m, vb_outcome o, double seconds)
{
    if ((unsigned)o >= VB_OUT__COUNT)
        return;
    atomic_fetch_add(&m->runs[o], 1);
    size_t i = 0;
    while (i < VB_DURATION_BUCKETS && seconds > vb_duration_bounds[i])
        i++;
    if (i < VB_DURATION_BUCKETS)
        atomic_fetch_add(&m->duration_bucket[i], 1);
    atomic_fetch_add(&m->duration_count, 1);
    atomic_fetch_add(&m->duration_sum_ms, (unsigned long long)(seconds * 1000.0));
}

struct vb_metrics_server {
    struct MHD_Daemon *d;
    vb_metrics *m;
    long stale_ms;
};

static vb_err render_metrics(const vb_metrics *m, vb_buf *b)
{
    vb_err rc = vb_buf_printf(b, "# HELP visionbatch_runs_total Run attempts finished by this "
                                 "worker, by outcome.\n# TYPE visionbatch_runs_total counter\n");
    for (int o = 0; o < VB_OUT__COUNT && rc == VB_OK; o++)
        rc = vb_buf_printf(b, "visionbatch_runs_total{outcome=\"%s\"} %llu\n",
                           outcome_names[o], (unsigned long long)atomic_load(&m->runs[o]));
    if (rc == VB_OK)
        rc = vb_buf_printf(b, "# HELP visionbatch_run_duration_seconds Wall time of run "
                              "attempts.\n# TYPE visionbatch_run_duration_seconds histogram\n");
    unsigned long long cum = 0;
    for (int i = 0; i < VB_DURATION_BUCKETS && rc == VB_OK; i++) {
        cum += atomic_load(&m->duration_bucket[i]);
        rc = vb_buf_printf(b, "visionbatch_run_duration_seconds_bucket{le=\"%g\"} %llu\n",
                           vb_duration_bounds[i], cum);
    }
    unsigned long long count = atomic_load(&m->duration_count);
    if (rc == VB_OK)
        rc = vb_buf_printf(b,
                           "visionbatch_run_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
                           "visionbatch_run_duration_seconds_sum %.3f\n"
                           "visionbatch_run_duration_seconds_count %llu\n",
                           count, (double)atomic_load(&m->duration_sum_ms) / 1000.0, count);
    if (rc == VB_OK)
        rc = vb_buf_printf(
            b,
            "# HELP visionbatch_inflight_runs Runs being processed now.\n"
            "# TYPE visionbatch_inflight_runs gauge\nvisionbatch_inflight_runs %lld\n"
            "# HELP visionbatch_lock_takeovers_total Runs whose expired lease this worker "
            "reclaimed and republished.\n# TYPE visionbatch_lock_takeovers_total counter\n"
            "visionbatch_lock_takeovers_total %llu\n"
            "# HELP visionbatch_retries_total Retry attempts started here plus failed runs "
            "republished.\n# TYPE visionbatch_retries_total counter\n"
            "visionbatch_retries_total %llu\n"
            "# HELP visionbatch_dlq_total Messages copied to the dead-letter topic.\n"
            "# TYPE visionbatch_dlq_total counter\nvisionbatch_dlq_total %llu\n",
            (long long)atomic_load(&m->inflight),
            (unsigned long long)atomic_load(&m->lock_takeovers),
            (unsigned long long)atomic_load(&m->retries),
            (unsigned long long)atomic_load(&m->dlq));
    return rc;
}

static enum MHD_Result answer(struct MHD_Connection *conn, unsigned status, const char *type,
                              const char *body, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **req_cls)
{
    vb_metrics_server *s = cls;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return answer(conn, 405, "text/plain", "method not allowed\n", 19);
    if (strcmp(url, "/healthz") == 0) {
        long long age = vb_mono_ms() - atomic_load(&s->m->poll_alive_ms);
        if (age <= s->stale_ms)
            return answer(conn, 200, "text/plain", "ok\n", 3);
        return answer(conn, 503, "text/plain", "poll loop stalled\n", 18);
    }
    if (strcmp(url, "/metrics") == 0) {
        vb_buf b = {0};
        enum MHD_Result ret;
        if (render_metrics(s->m, &b) != VB_OK)
            ret = answer(conn, 500, "text/plain", "out of memory\n", 14);
        else
            ret = answer(conn, 200, "text/plain; version=0.0.4", b.data, b.len);
        vb_buf_free(&b);
        return ret;
    }
    return answer(conn, 404, "text/plain", "not found\n", 10);
}

/* "host:port" → a socket address (first getaddrinfo answer). */
static vb_err resolve(const char *listen, struct sockaddr_storage *ss, socklen_t *len,
                      vb_error *err)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (!colon || (size_t)(colon - listen) >= sizeof host)
        return vb_error_set(err, VB_ERR_CONFIG, "metrics_listen must be host:port");
    size_t hn = (size_t)(colon - listen);
    memcpy(host, listen, hn);
    host[hn] = '\0';
    if (hn >= 2 && host[0] == '[' && host[hn - 1] == ']') {
        memmove(host, host + 1, hn - 2);
        host[hn - 2] = '\0';
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int e = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &ai);
    if (e != 0 || !ai)
        return vb_error_set(err, VB_ERR_CONFIG, "metrics_listen %s: %s", listen,
                            gai_strerror(e));
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return VB_OK;
}

vb_err vb_metrics_server_start(const char *listen, vb_metrics *m, long stale_ms,
                               vb_metrics_server **out, vb_error *err)
{
    *out = NULL;
    struct sockaddr_storage ss;
    socklen_t sl = 0;
    vb_err rc = resolve(listen, &ss, &sl, err);
    if (rc != VB_OK)
        return rc;
    vb_metrics_server *s = calloc(1, sizeof *s);
    if (!s)
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    s->m = m;
    s->stale_ms = stale_ms;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    s->d = MHD_start_daemon(flags, 0, NULL, NULL, handler, s, MHD_OPTION_SOCK_ADDR,
                            (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT, 32u,
                            MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    if (!s->d) {
        free(s);
        return vb_error_set(err, VB_ERR_IO, "cannot listen on metrics_listen %s", listen);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    VB_INFO("metrics and health on http://%s (port %u)", listen,
            info ? (unsigned)info->port : 0u);
    *out = s;
    return VB_OK;
}

void vb_metrics_server_stop(vb_metrics_server *s)
{
    if (!s)
        return;
    MHD_stop_daemon(s->d);
    free(s);
}

int vb_metrics_healthcheck(const char *listen)
{
    char url[300];
    const char *colon = strrchr(listen, ':');
    /* An all-interfaces address is checked on loopback. */
    if (colon && (colon == listen || strncmp(listen, "0.0.0.0:", 8) == 0))
        snprintf(url, sizeof url, "http://127.0.0.1%s/healthz", colon);
    else if (colon && strncmp(listen, "[::]:", 5) == 0)
        snprintf(url, sizeof url, "http://[::1]%s/healthz", colon);
    else
        snprintf(url, sizeof url, "http://%s/healthz", listen);
    vb_http *h = vb_http_new();
    if (!h)
        return 1;
    vb_http_policy pol = {.connect_timeout_ms = 5000, .timeout_ms = 5000, .max_bytes = 4096};
    vb_http_request req = {.method = "GET", .url = url};
    vb_http_response resp = {0};
    vb_error err;
    vb_error_clear(&err);
    vb_err rc = vb_http_perform(h, &req, &pol, &resp, &err);
    vb_http_response_free(&resp);
    vb_http_free(h);
    if (rc != VB_OK)
        fprintf(stderr, "visionbatch-worker: unhealthy: %s\n", err.msg);
    return rc == VB_OK ? 0 : 1;
}
