/*
 * jobs_exec.h — the life of a cron job's execution, from its tick to the
 * last of its runs: claiming a tick exactly once across producers, the
 * overlap rule, missed and paused ticks, counting published runs, and
 * settling the execution's status as workers finish those runs.
 *
 * Redis layout (besides jobs.h):
 *   visionbatch:job:<job_id> gains the fields
 *       last_tick      unix seconds of the newest tick handled (fired,
 *                      skipped or recorded as missed); absent = never
 *       paused_ticks   ticks passed while the job was deactivated, not yet
 *                      reported; paused_last: the newest of them
 *   visionbatch:exec:<id> gains the fields
 *       fired          "1" once the firing producer finished publishing
 *       runs_succeeded, runs_failed   outcomes of published runs
 *       producer       id of the producer that recorded it
 *       run:<run_id>   "p" published and unfinished, "ok"/"failed" finished;
 *                      "ok!"/"failed!" finished but not (yet) reported as
 *                      published. Kept in the execution's hash so that
 *                      trimming or deleting the execution removes them.
 *   visionbatch:execs:running  sorted set: running execution ids, score =
 *                      started_at; the index vb_jobs_exec_expire() scans.
 *   visionbatch:job:<job_id>:running  sorted set: the job's executions
 *                      recorded `running` (score started_at); an execution
 *                      leaves it when it settles (or is trimmed), and what
 *                      is left behind (older versions) is pruned when the
 *                      overlap rule reads it; the job hash's field
 *                      running_idx = "1" once it covers every execution.
 *   A new execution's hash holds only the fields it has: counts still 0
 *   and empty texts are absent, and read as 0 / "" (jobs.h vb_exec).
 *
 * Exactly once: a tick is claimed by a compare-and-set of the job's
 * last_tick inside one Lua script that also records the execution(s), so of
 * several producers computing the same tick exactly one wins; the others see
 * VB_EXEC_TICK_CONFLICT, re-read last_tick and find nothing left to do.
 *
 * Status of an execution: `running` from the claim; when the firing
 * producer reports the end of publishing (vb_jobs_exec_fire_done) and every
 * published run has finished (vb_jobs_exec_run_done): `success` (all runs
 * uploaded, or nothing published), `partial` (some failed), `failed` (all
 * failed); `error` when the firing itself failed before publishing anything
 * or the producer died while firing; `timeout` when runs are still
 * unfinished after the execution timeout; `skipped` (skip_reason `overlap`,
 * `missed` or `paused`) for ticks that did not fire.
 *
 * Consequences of a final status, in the same script that decides it
 * (notify_internal.h): the job's fail_streak and pause_on_failure, and the
 * webhook deliveries of notify.h (execution.*, job.paused); a run reported
 * VB_EXEC_RUN_FAILED (the worker reports only dead runs so) queues run.dead.
 *
 * Threading: every function is thread-safe (they go through the vb_jobs
 * handle, see jobs.h); every change is one Lua script, atomic with respect
 * to every other client.
 */
#ifndef VISIONBATCH_JOBS_EXEC_H
#define VISIONBATCH_JOBS_EXEC_H

#include <stddef.h>

#include "visionbatch/error.h"
#include "visionbatch/jobs.h"

#define VB_EXEC_TIMEOUT_DEFAULT_S 7200    /* 2 × the 1-hour batch timeout */
#define VB_EXEC_FIRE_TIMEOUT_DEFAULT_S 900 /* longest a firing may take */
#define VB_EXEC_BATCH_IDS_MAX 16384        /* batch_id list stops growing here */

/* Outcome of one run, as reported by the worker. */
enum { VB_EXEC_RUN_OK = 0, VB_EXEC_RUN_FAILED = 1 };

/* What one scheduler step decided for a job (all times unix seconds). */
typedef struct vb_exec_tick {
    const char *job_id;
    const char *producer_id;  /* recorded in the executions; may be NULL */
    long long expected_last;  /* last_tick as read (0 = absent): the claim */
    long long new_last;       /* last_tick to store */
    long long fire_tick;      /* tick to fire, 0 = none */
    long missed;              /* older ticks not fired, 0 = none */
    long long missed_last;    /* the newest of them (scheduled_for) */
    const char *missed_output; /* text of the "missed" record */
    long long now_ms;         /* the caller's clock */
    long timeout_s;           /* a `running` execution older than this no longer
                                 blocks (overlap); 0 = VB_EXEC_TIMEOUT_DEFAULT_S */
    long jitter_ms;           /* the job's jitter offset: added to the
                                 scheduled_for of every record (ms) */
} vb_exec_tick;

typedef enum vb_exec_tick_code {
    VB_EXEC_TICK_CONFLICT = 0, /* last_tick changed meanwhile: re-read, recompute */
    VB_EXEC_TICK_DONE,         /* claimed; see the fields below */
    VB_EXEC_TICK_PAUSED,       /* claimed, job deactivated: ticks counted as paused */
    VB_EXEC_TICK_GONE,         /* the job no longer exists */
} vb_exec_tick_code;

typedef struct vb_exec_tick_result {
    vb_exec_tick_code code;
    int fired;          /* 1: execution_id is `running`, the caller fires it */
    int overlap;        /* 1: the tick was recorded skipped "overlap" */
    int missed_recorded; /* 1: one skipped "missed" execution was recorded */
    long paused_reported; /* ticks reported in a skipped "paused" execution */
    char execution_id[VB_UUID_SIZE]; /* the fired or overlap-skipped execution */
    long long last_tick; /* the job's last_tick after the call: new_last when
                            claimed, the current value on a conflict (so the
                            caller recomputes without reading it again) */
} vb_exec_tick_result;

/* Reads the job's last_tick (0 when absent or the job does not exist). */
vb_err vb_jobs_exec_last_tick(vb_jobs *j, const char *job_id, long long *last, vb_error *err);

#define VB_JOBS_EXEC_TICKS_BATCH 1000 /* jobs per vb_jobs_exec_last_ticks call at most */

/* Reads the last_tick of n (1..VB_JOBS_EXEC_TICKS_BATCH) jobs in one round
 * trip (a read-only script): lasts[i] for job_ids[i], 0 when absent or the
 * job does not exist. VB_ERR_INVALID for a bad id or n. */
vb_err vb_jobs_exec_last_ticks(vb_jobs *j, const char *const *job_ids, size_t n,
                               long long *lasts, vb_error *err);

/* Claims t->new_last for the job when its last_tick still equals
 * t->expected_last, and in the same script records (newest last): one
 * skipped "paused" execution when ticks passed while the job was
 * deactivated, one skipped "missed" execution when t->missed > 0, and for
 * t->fire_tick either a `running` execution (res->fired) or, when the job's
 * overlap is "skip" and one of its executions is still running (and younger
 * than t->timeout_s), a skipped "overlap" one. A deactivated job records
 * nothing: its ticks are counted for a later "paused" record. */
vb_err vb_jobs_exec_tick(vb_jobs *j, const vb_exec_tick *t, vb_exec_tick_result *res,
                         vb_error *err);

#define VB_JOBS_EXEC_CLAIM_BATCH_MAX 1000 /* ticks or firings per batch call at most */

/* The same for n (1..VB_JOBS_EXEC_CLAIM_BATCH_MAX) ticks of different jobs
 * in one script call (one round trip): res[i] for t[i]. Each tick is its own
 * compare-and-set, so of producers claiming overlapping batches each tick
 * goes to exactly one (the others get VB_EXEC_TICK_CONFLICT for it, with the
 * current last_tick). producer_id, now_ms and timeout_s are taken from t[0]
 * for the whole batch. Redis runs the script without interleaving other
 * clients, so the batch size bounds how long others wait for it.
 * VB_ERR_INVALID for a bad job id or n; VB_ERR_REDIS (nothing claimed). */
vb_err vb_jobs_exec_ticks(vb_jobs *j, const vb_exec_tick *t, size_t n, vb_exec_tick_result *res,
                          vb_error *err);

/* Records a manual run (POST /cron-jobs/{id}/run) as a `running` execution
 * without touching the schedule. VB_ERR_CONFLICT (nothing recorded) when the
 * job's overlap is "skip" and one of its executions is running;
 * VB_ERR_NOT_FOUND for an unknown job. `timeout_s` as in vb_exec_tick. */
vb_err vb_jobs_exec_start_manual(vb_jobs *j, const char *job_id, const char *producer_id,
                                 long long now_ms, long timeout_s,
                                 char execution_id[VB_UUID_SIZE], vb_error *err);

/* Counts one run as published by the execution: call it after each
 * successful publish, so a producer that dies mid-firing never counts a run
 * it did not publish. Idempotent per run id. VB_ERR_NOT_FOUND when the
 * execution no longer exists. */
vb_err vb_jobs_exec_add_published(vb_jobs *j, const char *execution_id, const char *run_id,
                                  vb_error *err);

/* The firing producer is done publishing: stores the counts and `output`
 * (cut to 4 KiB; NULL = ""). With `failed` set and nothing published the
 * execution ends as `error`; with nothing published otherwise it ends as
 * `success`; else it stays `running` until its runs finish (runs that
 * already finished are taken into account). `status` (may be NULL, 16
 * bytes) receives the status after the call. VB_ERR_NOT_FOUND when the
 * execution no longer exists. */
vb_err vb_jobs_exec_fire_done(vb_jobs *j, const char *execution_id, long found,
                              long skipped_in_progress, long skipped_other_org,
                              const char *output, int failed, long long now_ms, char status[16],
                              vb_error *err);

/* One firing's end, for vb_jobs_exec_fire_done_batch. */
typedef struct vb_exec_fire_done {
    const char *execution_id;
    long found, skipped_in_progress, skipped_other_org;
    const char *output; /* NULL = "" (cut to 4 KiB) */
    int failed;
    long long now_ms;   /* completed_at when the execution settles now */
    char status[16];    /* out: status after the call, "" when gone */
    vb_err rc;          /* out: VB_OK, or VB_ERR_NOT_FOUND (execution gone) */
} vb_exec_fire_done;

/* vb_jobs_exec_fire_done for n (1..VB_JOBS_EXEC_CLAIM_BATCH_MAX) firings in
 * one script call. Returns VB_OK when the script ran (each d[i].rc says
 * whether its execution still existed), else VB_ERR_REDIS / VB_ERR_INVALID /
 * VB_ERR_NOMEM with nothing recorded. */
vb_err vb_jobs_exec_fire_done_batch(vb_jobs *j, vb_exec_fire_done *d, size_t n, vb_error *err);

/* A worker finished run `run_id` of the execution: outcome VB_EXEC_RUN_OK
 * (uploaded) or VB_EXEC_RUN_FAILED (failed for good or dead). Counted once
 * per run id (a repeated report is ignored, VB_OK); `batch_ids` (comma list,
 * may be NULL/"") are appended to the execution's batch_id. When the firing
 * is done and every published run has finished, the execution becomes
 * success / partial / failed with completed_at = now. VB_ERR_NOT_FOUND when
 * the execution no longer exists (trimmed or its job deleted): nothing to
 * do. */
vb_err vb_jobs_exec_run_done(vb_jobs *j, const char *execution_id, const char *run_id,
                             int outcome, const char *batch_ids, vb_error *err);

/* Same, with the clock given and the status after the call (16 bytes, may
 * be NULL; "" when the report was a duplicate). */
vb_err vb_jobs_exec_run_done_at(vb_jobs *j, const char *execution_id, const char *run_id,
                                int outcome, const char *batch_ids, long long now_ms,
                                char status[16], vb_error *err);

/* Ends executions stuck in `running`: those whose firing never finished
 * within fire_timeout_s (the producer died) become `error`; those older than
 * timeout_s become `timeout`. 0 = the defaults above. *expired (may be
 * NULL) receives how many changed. Scans at most 1000 per call. */
vb_err vb_jobs_exec_expire(vb_jobs *j, long long now_ms, long timeout_s, long fire_timeout_s,
                           size_t *expired, vb_error *err);

#endif
