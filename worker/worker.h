/*
 * worker.h — internals of visionbatch-worker shared by its files: the worker
 * (worker.c), its metrics (metrics.c) and the program (program.c).
 */
#ifndef VISIONBATCH_WORKER_H
#define VISIONBATCH_WORKER_H

#include <stdatomic.h>
#include <stdatomic.h>

#include "visionbatch/config.h"
#include "visionbatch/error.h"
#include "visionbatch/metrics.h"
#include "visionbatch/pipeline.h"
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

/* The worker's metrics: families in one vb_metrics registry, served with
 * the endpoint's own at /metrics (metrics.c). The handles are set once,
 * before any thread starts; the registry is thread-safe. */
typedef struct vb_worker_metrics {
    vb_metrics *reg;
    vb_metric *runs;           /* visionbatch_runs_total{outcome} */
    vb_metric *duration;       /* visionbatch_run_duration_seconds */
    vb_metric *inflight;       /* visionbatch_inflight_runs */
    vb_metric *lock_takeovers; /* expired leases this worker's reaper reclaimed */
    vb_metric *retries;        /* attempts > 1 started here + failed runs republished */
    vb_metric *dlq;            /* messages copied to the dead-letter topic */
    vb_metric *queued;         /* messages fetched, waiting for a slot (visionbatch_intake_queued_messages) */
    vb_metric *sources;        /* visionbatch_run_sources_total{source}: where runs came from */
    vb_metric *phases;         /* visionbatch_run_phase_seconds{phase}: where uploaded runs' time went */
} vb_worker_metrics;

/* Creates the registry and registers every family (each series at 0).
 * VB_ERR_NOMEM on failure (then nothing is left to free). */
vb_err vb_worker_metrics_init(vb_worker_metrics *m, vb_error *err);
void vb_worker_metrics_free(vb_worker_metrics *m);

/* Counts one finished run attempt and its wall time. */
void vb_worker_metrics_observe_run(vb_worker_metrics *m, vb_outcome o, double seconds);

/* Where one uploaded run's time went: claim (lock, attempt and origin in
 * Redis, before a slot takes the run), open (sealed run or platform lookup),
 * the pipeline's phases, and record (final state, execution outcome, lock
 * release). */
typedef struct vb_worker_run_phases {
    double claim, open, record;
    vb_run_phases pipeline;
} vb_worker_run_phases;

/* Observes each phase of one uploaded run in visionbatch_run_phase_seconds. */
void vb_worker_metrics_observe_phases(vb_worker_metrics *m, const vb_worker_run_phases *p);

/* ---- the worker (worker.c) ---- */

typedef struct vb_worker vb_worker;

/* Connects to Kafka (consumer + producer) and Redis, starts the metrics
 * and health endpoint (endpoint.h) on metrics_listen. cfg is borrowed and
 * must outlive the worker. */
vb_err vb_worker_new(const vb_config *cfg, vb_worker **out, vb_error *err);

/* Runs until *stop becomes non-zero (set from a signal handler), then drains
 * (see worker.c) and returns. VB_OK after a clean shutdown. */
vb_err vb_worker_run(vb_worker *w, const atomic_int *stop, vb_error *err);

void vb_worker_free(vb_worker *w);

/* ---- the program (program.c) ---- */

/* Runs visionbatch-worker with the command line `argv` and returns its exit
 * status (0 clean shutdown or healthy, 1 runtime failure, 2 configuration
 * error). Installs the SIGTERM/SIGINT handlers; call once per process. */
int vb_worker_main(int argc, char **argv);

#endif
