/*
 * api.h — the cron-jobs REST API of visionbatch-producer (SPEC.md §4 and
 * extensions), served by libmicrohttpd.
 *
 * Endpoints: POST/GET /cron-jobs, GET/PUT/DELETE /cron-jobs/{id},
 * POST /cron-jobs/{id}/activate|deactivate|run, GET /cron-jobs/{id}/executions,
 * GET /cron-jobs/{id}/next-runs, GET /runs/{vision_analysis_id},
 * /openapi.json (the document is producer/openapi.json, embedded at build
 * time); the web console's GET /ui/…, GET /runs, POST /runs/{id}/retry,
 * GET /workers, GET /cron/preview (console.h); GET /healthz, /readyz and
 * /metrics are served by the HTTP endpoint (endpoint.h) the API is mounted on.
 * Errors are {"detail": "..."} with 400/401/404/405/413/415/500/503.
 *
 * Security: without a token the server only binds loopback addresses
 * (127.0.0.0/8, ::1); with a token every endpoint except the probes
 * /healthz and /readyz requires `Authorization: Bearer <token>` (compared in
 * constant time).
 *
 * Threading: the endpoint's event-loop threads (endpoint.h) call the
 * handlers and callbacks, concurrently; callbacks must be thread-safe, and a
 * callback that blocks (Redis, Kafka) holds up that thread's other
 * connections meanwhile. Jobs are stored through a pool of vb_jobs handles
 * (jobs_pool.h) opened by vb_api_start: one at once, more on demand.
 */
#ifndef VISIONBATCH_PRODUCER_API_H
#define VISIONBATCH_PRODUCER_API_H

#include <stddef.h>

#include "visionbatch/crypto.h"
#include "visionbatch/endpoint.h"
#include "visionbatch/error.h"
#include "visionbatch/metrics.h"

#define VB_API_MAX_BODY_DEFAULT (64 * 1024)
#define VB_API_EXEC_LIMIT_DEFAULT 50
#define VB_API_EXEC_LIMIT_MAX 1000
#define VB_API_NEXT_RUNS_DEFAULT 10
#define VB_API_JOBS_PAGE_DEFAULT 100 /* GET /cron-jobs?cursor= without limit */
#define VB_API_REDIS_CONNECTIONS 8   /* pooled Redis connections of the API */

typedef struct vb_api vb_api;

/* What the producer provides. Every member may be NULL/0. */
typedef struct vb_api_callbacks {
    void *ctx; /* passed to every callback */
    /* Starts a run of `job_id` now (POST /cron-jobs/{id}/run; the job is
     * known to exist). Writes the new execution's id. VB_ERR_CONFLICT → 409
     * (e.g. overlap "skip" and a run is in progress), VB_ERR_NOT_FOUND → 404,
     * anything else → 500. NULL: the endpoint answers 503. */
    vb_err (*fire_now)(void *ctx, const char *job_id, char execution_id[VB_UUID_SIZE],
                       vb_error *err);
    /* GET /runs/{id}: *json = a malloc'd JSON object describing the run's
     * state (the API frees it). VB_ERR_NOT_FOUND → 404, others → 500.
     * NULL: the endpoint answers 503. */
    vb_err (*run_state_json)(void *ctx, const char *run_id, char **json, vb_error *err);
    /* GET /readyz: 1 when the producer is ready (Kafka reachable, …); else 0
     * with a short reason in `why`. Redis is checked by the API itself. */
    int (*ready)(void *ctx, char *why, size_t whylen);
    /* Registry rendered by GET /metrics; the API adds its request metrics to
     * it. NULL: the API keeps a registry of its own. Borrowed: must outlive
     * the server. */
    vb_metrics *metrics;
    /* The web console (console.h): its assets under /ui/ and GET /runs,
     * POST /runs/{id}/retry, GET /workers. NULL: those answer 503 (the assets
     * and GET /cron/preview are served anyway). Borrowed: must outlive the
     * server. */
    struct vb_console *console;
} vb_api_callbacks;

typedef struct vb_api_opts {
    const char *listen;            /* "host:port", "[v6]:port"; NULL = "127.0.0.1:8000";
                                      port 0 = any free port (see vb_api_port) */
    const char *token;             /* API token, NULL or "" = none (loopback only) */
    const char *redis_url;         /* NULL = redis://127.0.0.1:6379/0 */
    const char *secret_key;        /* base64 of 32 bytes, NULL = none (jobs cannot be created) */
    size_t max_body;               /* request body cap, 0 = 64 KiB */
    size_t exec_cap;               /* executions kept per job, 0 = 100 */
    const char *webhook_allowed_hosts; /* hosts a job's notify URLs may name; NULL = none */
    vb_endpoint_limits limits;     /* connection limits; zeros = defaults (endpoint.h) */
    size_t redis_connections;      /* pooled Redis connections, 0 = VB_API_REDIS_CONNECTIONS */
    vb_api_callbacks cb;
} vb_api_opts;

/* Parses "host:port" / "[ipv6]:port" (host: numeric IPv4, IPv6 in brackets,
 * "localhost", or empty = 0.0.0.0). Writes the numeric host (without
 * brackets), port and whether the address is loopback. VB_ERR_CONFIG with a
 * message on failure. Thread-safe. */
vb_err vb_api_listen_parse(const char *listen, char host[64], int *port, int *is_ipv6,
                           int *is_loopback, vb_error *err);

/* Validates options, opens Redis, binds and starts serving. Refuses
 * (VB_ERR_CONFIG) a non-loopback address without a token and a bad secret
 * key; VB_ERR_REDIS when Redis is unreachable; VB_ERR_NETWORK when the
 * address cannot be bound. Returns NULL on failure. The opts strings are
 * copied. */
vb_api *vb_api_start(const vb_api_opts *opts, vb_error *err);

/* Stops accepting, waits for in-flight requests, frees everything (wiping
 * the token and key). NULL is accepted. */
void vb_api_stop(vb_api *api);

/* The bound TCP port (useful with port 0). */
int vb_api_port(const vb_api *api);

/* The i-th route the server answers (0-based): its method ("GET", …) and
 * path pattern, where "{}" stands for the one captured segment (the job id,
 * or the run id under /runs); the API's routes, then the endpoint's
 * (vb_endpoint_route). Returns 0 past the last route, else 1. Lets a
 * test compare the routes with the OpenAPI document. Thread-safe (static
 * data). */
int vb_api_route(size_t i, const char **method, const char **pattern);

/* The OpenAPI 3 document served at /openapi.json (static, NUL-terminated). */
const char *vb_api_openapi_json(void);

#endif
