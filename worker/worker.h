/*
 * worker.h — internals of visionbatch-worker shared by its files: the worker
 * (worker.c), its metrics (metrics_http.c) and the program (program.c).
 *
 * Metrics are plain C11 atomics updated by every thread of the worker and
 * read by the HTTP server thread; nothing here needs a lock.
 */
#ifndef VISIONBATCH_WORKER_H
#define VISIONBATCH_WORKER_H

#include <signal.h>
#include <stdatomic.h>

#include "visionbatch/config.h"
#include "visionbatch/error.h"
#include "visionbatch/version.h"

/* How a run attempt ended, for visionbatch_runs_total{outcome=…}. */
typedef enum vb_outcome {
    VB_OUT_UPLOADED = 0, /* report uploaded */
    VB_OUT_SKIPPED,      /* already processed on the platform / upload vetoed */
    VB_OUT_FAILED,       /* transient failure, will be retried */
    VB_OUT_DEAD,         /* attempts exhausted or permanent error */
    VB_OUT_LEASE_LOST,   /* the lock was lost mid-run (another worker took over) */
    VB_OUT_HANDED_BACK,  /* stopped by shutdown, given back uncounted */
    VB_OUT__COUNT
} vb_outcome;

const char *vb_outcome_name(vb_outcome o);

#define VB_DURATION_BUCKETS 12

typedef struct vb_metrics {
    atomic_ullong runs[VB_OUT__COUNT];
    atomic_ullong duration_bucket[VB_DURATION_BUCKETS]; /* non-cumulative counts */
    atomic_ullong duration_count;
    atomic_ullong duration_sum_ms;
    atomic_llong inflight;
    atomic_ullong lock_takeovers; /* expired leases this worker's reaper reclaimed */
    atomic_ullong retries;        /* attempts > 1 started here + failed runs republished */
    atomic_ullong dlq;            /* messages copied to the dead-letter topic */
    atomic_llong poll_alive_ms;   /* monotonic ms of the poll loop's last turn */
} vb_metrics;

/* Upper bounds (seconds) of the histogram buckets, +Inf implied. */
extern const double vb_duration_bounds[VB_DURATION_BUCKETS];

void vb_metrics_observe_run(vb_metrics *m, vb_outcome o, double seconds);

/* Monotonic milliseconds. */
long long vb_mono_ms(void);

/* ---- the metrics/health HTTP server (metrics_http.c) ---- */

typedef struct vb_metrics_server vb_metrics_server;

/* Serves GET /healthz (200 "ok" while the poll loop turned within
 * `stale_ms`, else 503) and GET /metrics (Prometheus text) on `listen`
 * ("host:port"; port 0 picks a free port, logged). */
vb_err vb_metrics_server_start(const char *listen, vb_metrics *m, long stale_ms,
                               vb_metrics_server **out, vb_error *err);
void vb_metrics_server_stop(vb_metrics_server *s);

/* GET http://<listen>/healthz with a 5 s timeout: 0 when it answered 200. */
int vb_metrics_healthcheck(const char *listen);

/* ---- the worker (worker.c) ---- */

typedef struct vb_worker vb_worker;

/* Connects to Kafka (consumer + producer) and Redis, starts the metrics
 * server. cfg is borrowed and must outlive the worker. */
vb_err vb_worker_new(const vb_config *cfg, vb_worker **out, vb_error *err);

/* Runs until *stop becomes non-zero (set from a signal handler), then drains
 * (see worker.c) and returns. VB_OK after a clean shutdown. */
vb_err vb_worker_run(vb_worker *w, const volatile sig_atomic_t *stop, vb_error *err);

void vb_worker_free(vb_worker *w);

/* ---- the program (program.c) ---- */

/* Runs visionbatch-worker with the command line `argv` and returns its exit
 * status (0 clean shutdown or healthy, 1 runtime failure, 2 configuration
 * error). Installs the SIGTERM/SIGINT handlers; call once per process. */
int vb_worker_main(int argc, char **argv);

#endif
