/*
 * decide.h — the worker's decision rules as pure functions (decide.c): what
 * a failed attempt leads to (retry or dead, and why), how long a failed run
 * waits before its retry, and which runs the reaper takes over or publishes
 * again. worker.c applies them; tests/unit/test_worker_decide.c checks them
 * without Kafka, Redis or a clock.
 */
#ifndef VISIONBATCH_WORKER_DECIDE_H
#define VISIONBATCH_WORKER_DECIDE_H

#include "visionbatch/error.h"
#include "visionbatch/store.h"

#define VB_RETRY_BACKOFF_CAP_MS 600000LL /* failed-run retry backoff cap */

/* 1 when retrying cannot help: malformed or oversized data (PARSE, CONTENT,
 * TOO_LARGE, INVALID, CONFIG) or an HTTP 4xx other than 401, 403, 408 and
 * 429 (credentials can be rotated, timeouts and rate limits pass); else 0. */
int vb_worker_error_is_permanent(const vb_error *e);

/* What a failed attempt (number `attempt`, counted from 1) leads to. */
typedef enum vb_failure_verdict {
    VB_FAIL_RETRY = 0,       /* state failed: the reaper retries it after its backoff */
    VB_FAIL_DEAD_PERMANENT,  /* dead: the error is permanent */
    VB_FAIL_DEAD_EXHAUSTED,  /* dead: attempt >= max_attempts */
} vb_failure_verdict;

vb_failure_verdict vb_worker_failure_verdict(const vb_error *e, long attempt, long max_attempts);

/* How long a run that failed `attempts` times waits before the reaper
 * publishes it again: lease_ms × 2^(attempts−1), at most
 * VB_RETRY_BACKOFF_CAP_MS; 0 for attempts <= 0. The store applies the same
 * rule when a run fails and records the result as retry_at (store.h), which
 * every claim checks; this is for records without one. */
long long vb_worker_retry_backoff_ms(long lease_ms, long attempts);

/* What the reaper does with a run found in state `rs` at unix ms `now`. */
typedef enum vb_reap_action {
    VB_REAP_NONE = 0,  /* leave it alone */
    VB_REAP_TAKEOVER,  /* processing/uploading with an expired lease: its worker
                          vanished, publish it again for another */
    VB_REAP_REQUEUE,   /* queued with an expired queue lease: the message was
                          lost or never consumed, publish it again */
    VB_REAP_RETRY,     /* failed with attempts left and its backoff passed */
    VB_REAP_DEAD,      /* failed with attempts exhausted: the claim makes it dead */
} vb_reap_action;

/* A lease expires strictly after lease_until (lease_until == now is still
 * held). A failed run is retried from its retry_at when it has one, else
 * from finished_at + its backoff. Uploaded, dead and unknown states are
 * never reaped. */
vb_reap_action vb_worker_reap_action(const vb_run_state *rs, long max_attempts, long lease_ms,
                                     long long now);

#endif
