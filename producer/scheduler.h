/*
 * scheduler.h — the cron scheduler of visionbatch-producer: fires every
 * tick of every enabled cron job exactly once across all producers sharing
 * one Redis, and records an execution for each tick (jobs_exec.h).
 *
 * Behaviour:
 *   - Schedule: the jobs are read from Redis (jobs.h) and re-read whenever
 *     visionbatch:jobs:version changes (checked on every loop, at least once
 *     a second), so create/update/activate/deactivate/delete take effect in
 *     every producer within about a second, without a restart.
 *   - Exactly once: a tick is claimed by a compare-and-set of the job's
 *     last_tick in Redis; only the winner records and fires it.
 *   - Catch-up: the ticks due since last_tick (since the job's creation when
 *     it never fired) are looked at together. The newest one fires if it is
 *     at most catch_up_window_s old; every older one (and the newest too
 *     when it is older than the window) is reported in ONE skipped
 *     execution with skip_reason "missed". A producer that was down never
 *     fires a storm of old ticks.
 *   - Overlap: with the job's overlap "skip" (default) a tick is recorded as
 *     skipped "overlap" while an earlier execution is still running; with
 *     "allow" it fires anyway.
 *   - Paused: ticks of a deactivated job do not fire; when the job fires
 *     again, one skipped execution "paused" says how many were skipped.
 *   - Executions whose runs do not finish in time are ended periodically
 *     (vb_jobs_exec_expire: `timeout`, or `error` when the firing producer
 *     died while publishing).
 *
 *   - Batches: a pass claims its due ticks VB_SCHED_CLAIM_BATCH per Redis
 *     script (each tick its own compare-and-set) and records the ends of its
 *     firings VB_SCHED_END_BATCH per script, so its round trips do not grow
 *     one per job. Redis runs one script at a time, so a REST API read
 *     waits for the scripts queued before it: smaller batches shorten that
 *     wait and lengthen the schedule lag (docs/benchmarks.md). The ends of
 *     firings done while the pass still claims are held until the claims
 *     are done (at most 2 s), so that they do not delay the claims.
 *   - Jitter: a job with jitter_s > 0 fires each tick a fixed offset later
 *     (vb_job_jitter_ms, in [0, jitter_s] s, the same in every producer);
 *     its executions' scheduled_for and the lag metric include the offset.
 *
 * Threading: one scheduler thread runs the loop and claims; the claimed
 * ticks are fired by opts.fire_threads firing slots in parallel while later
 * batches are still being claimed (the loop's thread is slot 0 and joins
 * once it has claimed everything, the others are pool threads, each slot
 * with its own Redis connection, run 5 nicer than the process so that claims
 * and the REST API come first when the CPU is short), so one slow firing
 * holds up one slot, not every tick. A pass ends when all its due jobs are
 * fired and recorded. Manual runs fire on slot 0. vb_scheduler_fire_now may
 * be called from any thread. With
 * opts.no_thread the caller drives the loop with vb_scheduler_step instead
 * (tests); its thread is then slot 0.
 */
#ifndef VISIONBATCH_PRODUCER_SCHEDULER_H
#define VISIONBATCH_PRODUCER_SCHEDULER_H

#include "visionbatch/crypto.h"
#include "visionbatch/error.h"
#include "visionbatch/jobs.h"
#include "visionbatch/metrics.h"

#define VB_SCHED_CATCH_UP_DEFAULT_S 600
#define VB_SCHED_CATCH_UP_MIN_S 60
#define VB_SCHED_PRODUCER_ID_MAX 128
#define VB_SCHED_MANUAL_QUEUE 64 /* manual runs waiting to be fired */
#define VB_SCHED_FIRE_THREADS_DEFAULT 4
#define VB_SCHED_FIRE_THREADS_MAX 64
/* Ticks per claim script and firing ends per record script: ~0.5 ms of
 * Redis each with 10,000 jobs (docs/benchmarks.md, "The REST API while
 * 10,000 jobs fire"). */
#define VB_SCHED_CLAIM_BATCH 25
#define VB_SCHED_END_BATCH 16

typedef struct vb_scheduler vb_scheduler;

/* What a firing produced. The scheduler fills `jobs` before calling `fire`;
 * the callback fills the counts. */
typedef struct vb_fire_result {
    vb_jobs *jobs;  /* in: handle for vb_jobs_exec_add_published (borrowed,
                       valid during the call) */
    long found;     /* unprocessed runs returned by the platform */
    long published; /* runs published (each also reported with
                       vb_jobs_exec_add_published right after its publish:
                       that count is the one the execution uses) */
    long skipped_in_progress; /* already queued/processing elsewhere */
    long skipped_other_org;   /* belonging to another organization */
    int slot;       /* in: the firing slot, 0 .. fire_threads-1. Firings on
                       one slot never overlap, so a callback may keep
                       per-slot resources (connections) without locking. */
} vb_fire_result;

/* Polls the platform with the job's credentials and publishes its runs.
 * Called from a firing slot's thread, concurrently on different slots
 * (the callback must be thread-safe across slots). After each successful publish it must
 * call vb_jobs_exec_add_published(out->jobs, execution_id, run_id, …) so the
 * execution knows which runs to wait for. Return VB_OK, or an error with a
 * message (no secrets): the execution then ends as `error` when nothing was
 * published, else it follows the runs already published. */
typedef vb_err (*vb_scheduler_fire_fn)(void *ctx, const vb_job *job, const char *execution_id,
                                       vb_fire_result *out, vb_error *err);

typedef struct vb_scheduler_opts {
    const char *redis_url;      /* NULL = redis://127.0.0.1:6379/0 */
    const char *secret_key;     /* base64 of 32 bytes, or NULL (the fire callback
                                   then cannot open the job's API key) */
    long catch_up_window_s;     /* 0 = 600; values below 60 are raised to 60 */
    long exec_timeout_s;        /* running executions end as `timeout` after
                                   this; 0 = 7200 (2 × the batch timeout) */
    long fire_timeout_s;        /* a firing not finished after this is `error`;
                                   0 = 900 */
    size_t exec_cap;            /* executions kept per job; 0 = 100 */
    const char *producer_id;    /* recorded in executions; NULL = "<host>:<pid>" */
    vb_scheduler_fire_fn fire;  /* required */
    void *fire_ctx;
    vb_metrics *metrics;        /* borrowed, may be NULL: registers
                                   visionbatch_scheduler_fires_total{job},
                                   visionbatch_scheduler_skips_total{reason},
                                   visionbatch_scheduler_lag_seconds */
    long long (*clock_ms)(void *ctx); /* unix ms; NULL = the real clock */
    void *clock_ctx;
    int no_thread;              /* 1: start no thread; drive with vb_scheduler_step */
    int fire_threads;           /* firing slots, 1-64; 0 = 4 (1 with no_thread) */
} vb_scheduler_opts;

/* Validates options, connects to Redis and starts the scheduler thread.
 * Returns NULL with err set (VB_ERR_CONFIG for bad options, VB_ERR_REDIS
 * when Redis is unreachable). Strings are copied. */
vb_scheduler *vb_scheduler_start(const vb_scheduler_opts *opts, vb_error *err);

/* Stops the thread (waiting for a firing in progress to return) and frees
 * everything. Manual runs still queued stay `running` and are ended as
 * `error` by the fire timeout. NULL is accepted. */
void vb_scheduler_stop(vb_scheduler *s);

/* One pass of the loop: reload the jobs if their version changed, handle
 * every due tick, fire queued manual runs, expire stuck executions (at most
 * once a minute). Only for opts.no_thread schedulers (VB_ERR_INVALID
 * otherwise); not to be called concurrently with itself. */
vb_err vb_scheduler_step(vb_scheduler *s, vb_error *err);

/* Manual run of `job_id` (POST /cron-jobs/{id}/run), asynchronous: records
 * a `running` execution now (its id written to execution_id), then the
 * scheduler thread fires it on its next pass (within a second). It does not
 * change the schedule. VB_ERR_CONFLICT when the job's overlap is "skip" and
 * an execution is running, or when VB_SCHED_MANUAL_QUEUE runs are already
 * waiting; VB_ERR_NOT_FOUND for an unknown job. Thread-safe. */
vb_err vb_scheduler_fire_now(vb_scheduler *s, const char *job_id,
                             char execution_id[VB_UUID_SIZE], vb_error *err);

#endif
