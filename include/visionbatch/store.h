/*
 * store.h — per-run locks and execution state in Redis, shared by
 * visionbatch-producer, visionbatch-worker and `visionbatch runs`.
 *
 * Connection. A vb_store is opened from a Redis URL
 *     redis://[[user:]password@]host[:port][/db]     (port 6379, db 0 by default)
 *     unix://[[user:]password@]/path/to/socket[?db=N]
 * (the full grammar, shared by every Redis user of visionbatch, is in
 * common/redis/redis.h and docs/configuration.md; `rediss://` is refused:
 * the hiredis of this platform has no TLS). Connecting applies a connect
 * timeout, then AUTH and SELECT; every command has a command timeout and TCP
 * keepalive. When a command fails on the connection (reset, EOF, timeout), the
 * call fails with VB_ERR_REDIS and the next call reconnects; failed
 * reconnects are spaced by an exponential backoff (100 ms doubling to 5 s)
 * during which calls fail fast. Commands are never re-sent automatically: a
 * lost reply may hide an executed transition, so the caller decides (each
 * operation below is safe to call again). A reset connection is an error,
 * never a SIGPIPE. The password is never logged nor placed in an error
 * message; vb_store_describe() gives a printable "host:port/db" form. Every
 * function accepts err == NULL.
 *
 * Threading: one vb_store per thread (it wraps one hiredis context); distinct
 * stores may be used concurrently from different threads and processes.
 *
 * Data model (all keys under `visionbatch:`, SPEC.md §6; run ids follow the
 * one run id rule of run.h, vb_run_id_valid — 1–128 characters of
 * [A-Za-z0-9._:-], not dots only — and are normalised to upper case):
 *   visionbatch:run:<ID>   hash: state (queued|processing|uploading|uploaded|
 *                          failed|dead), attempts, version, created_at,
 *                          updated_at, queued_at, started_at, finished_at,
 *                          lease_until, upload_started_at (unix ms, 0/absent =
 *                          never), upload_until (the latest report upload
 *                          attempt can no longer be in flight after it),
 *                          lease_ms (lease of the latest attempt), retry_at
 *                          (failed: not published again before it), worker,
 *                          batch_ids (comma list), last_error
 *                          (≤ 1 KiB, redacted by the caller), trace_id,
 *                          execution_id (the cron execution that queued it).
 *   visionbatch:runs       sorted set of run ids, score = updated_at.
 *   visionbatch:runs:state:<state>  the per-state index: the ids of the runs
 *                          in that state, score = updated_at; a run is in
 *                          exactly one of them (filtered reads cost
 *                          O(page), whatever the number of runs).
 *   visionbatch:runs:state-index  "1" once the per-state indexes hold every
 *                          run (the first listing builds them for runs
 *                          recorded before they existed, 5,000 a script).
 *   visionbatch:lock:<ID>  "<token> <worker_id>", PX = lock TTL.
 * Every transition is one Lua script (EVALSHA, falling back to EVAL after a
 * script-cache flush), so it is atomic with respect to every other client:
 * two producers claiming the same run in the same state never both get
 * VB_CLAIM_PUBLISH, and a worker whose lock expired can no longer change the
 * run. Each transition bumps `version` and the run's index score and moves
 * the run between per-state indexes in the same script: code that changes a
 * run's state (or deletes a run) must do the same. Runs written by an older
 * version while a newer one runs are not in the per-state indexes until a
 * transition of this version touches them: upgrade all programs together. A
 * per-state entry whose run is in another state is moved by the read that
 * meets it.
 *
 * Lifecycle of a run:
 *   (none|failed with attempts left and retry_at passed|expired lease)
 *       --claim--> queued
 *   queued --begin_processing (holding the lock)--> processing (attempts+1)
 *   processing --mark_upload_started--> uploading --set_state--> uploaded
 *   processing|uploading --set_state--> failed | dead
 *   failed with attempts == max, or an expired lease at max --claim--> dead
 *   dead|failed --retry--> failed with attempts 0 (the producer republishes)
 * Retry backoff: a run that becomes failed gets retry_at = now + lease_ms of
 * its attempt × 2^(attempts−1), at most 10 minutes (handed-back runs: now;
 * `runs retry`: 0). Every path that publishes a run again goes through the
 * claim, which refuses a failed run before its retry_at — the producer's
 * poll, the workers' reapers and `dlq replay` alike.
 * `uploaded` is final: nothing changes it. `upload_started_at` survives
 * failures so a later attempt knows an upload may already have happened and
 * must ask the platform before uploading again.
 *
 * Times are unix milliseconds from the caller's clock (vb_store_now_ms());
 * hosts running visionbatch should be NTP-synchronised, as lease expiry
 * compares times written by different hosts.
 */
#ifndef VISIONBATCH_STORE_H
#define VISIONBATCH_STORE_H

#include <stddef.h>

#include "visionbatch/error.h"
#include "visionbatch/run.h"

#define VB_STORE_ID_MAX VB_RUN_MAX_ID /* longest run id (the rule: vb_run_id_valid) */
#define VB_STORE_TOKEN_SIZE 33      /* 32 hex digits + NUL */
#define VB_STORE_LAST_ERROR_MAX 1024 /* last_error is cut to this many bytes */
#define VB_STORE_BATCH_IDS_MAX 16384 /* longest batch_ids accepted */

typedef struct vb_store vb_store;

/* ---- connection ---- */

typedef struct vb_store_opts {
    long connect_timeout_ms; /* 0 = 5000 */
    long command_timeout_ms; /* 0 = 10000 */
    const char *client_name; /* CLIENT SETNAME on every connect (shown by CLIENT
                                LIST); NULL = none; 1–64 printable, no spaces */
} vb_store_opts;

/* Parses `url`, connects, authenticates and selects the database. On success
 * *out owns the connection (free with vb_store_free). Fails with
 * VB_ERR_CONFIG for a bad URL, VB_ERR_REDIS when Redis is unreachable or
 * refuses the credentials; *out is then NULL. `opts` may be NULL. */
vb_err vb_store_new(const char *url, const vb_store_opts *opts, vb_store **out, vb_error *err);
/* Closes the connection and wipes the credentials. NULL is accepted. */
void vb_store_free(vb_store *s);

/* "host:port/db" or "unix:/path/db" — safe to log (no credentials). The
 * string lives as long as the store. */
const char *vb_store_describe(const vb_store *s);

/* PING. VB_OK when Redis answers; reconnects first if needed. */
vb_err vb_store_ping(vb_store *s, vb_error *err);

/* Current wall-clock time in unix milliseconds. */
long long vb_store_now_ms(void);

/* ---- run state ---- */

typedef enum vb_run_status {
    VB_RUN_NONE = 0, /* no state recorded (also: "any" as a list filter) */
    VB_RUN_QUEUED,
    VB_RUN_PROCESSING,
    VB_RUN_UPLOADING,
    VB_RUN_UPLOADED,
    VB_RUN_FAILED,
    VB_RUN_DEAD,
} vb_run_status;

/* "queued", "processing", …; "none" for VB_RUN_NONE. Never NULL. */
const char *vb_run_status_name(vb_run_status st);
/* Inverse of vb_run_status_name (case-insensitive); -1 when unknown. */
int vb_run_status_parse(const char *name);

/* One run's record. Strings are owned and never NULL ("" when absent);
 * times are unix ms, 0 when never set. Free with vb_run_state_free(). */
typedef struct vb_run_state {
    char *id; /* normalised (upper-case) run id */
    vb_run_status state;
    long attempts;          /* processing attempts begun */
    long long version;      /* bumped by every transition */
    long long created_at;
    long long updated_at;
    long long queued_at;
    long long started_at;
    long long finished_at;  /* set by uploaded/failed/dead */
    long long lease_until;  /* queued/processing/uploading: expiry of the lease */
    long long upload_started_at;
    long long upload_until; /* the latest upload attempt cannot be in flight after it */
    long long retry_at;     /* failed: not published again before it */
    char *worker;       /* worker id of the latest attempt */
    char *batch_ids;    /* comma-separated backend batch ids */
    char *last_error;   /* redacted, ≤ 1 KiB */
    char *trace_id;
    char *execution_id; /* cron execution that queued the run */
} vb_run_state;

/* Frees the strings of *st and zeroes it. NULL is accepted. */
void vb_run_state_free(vb_run_state *st);

typedef struct vb_run_state_list {
    vb_run_state *items; /* owned */
    size_t n;
    size_t total_runs; /* all runs in the index, whatever the filter */
    size_t in_state[VB_RUN_DEAD + 1]; /* runs in each state ([VB_RUN_NONE]: 0), from
                                         the per-state indexes */
} vb_run_state_list;

void vb_run_state_list_free(vb_run_state_list *l);

/* Reads the record of `run_id` into *out (zeroed first; free with
 * vb_run_state_free). VB_ERR_NOT_FOUND when no state exists. */
vb_err vb_store_get(vb_store *s, const char *run_id, vb_run_state *out, vb_error *err);

/* Lists runs, most recently updated first, skipping `offset` matches and
 * returning at most `count` (≤ 1000). `filter` VB_RUN_NONE = every state.
 * A filter reads that state's per-state index (at most 100 000 entries).
 * *out is zeroed first and must be freed with vb_run_state_list_free in
 * every case. */
vb_err vb_store_list(vb_store *s, size_t offset, size_t count, vb_run_status filter,
                     vb_run_state_list *out, vb_error *err);

#define VB_STORE_CURSOR_MAX (20 + VB_STORE_ID_MAX + 1) /* "<score>:<id>" + NUL */

/* One page of runs, most recently updated first, for a console that polls:
 * the cost of a call is bounded by `scan_max` index entries (count ≤ scan_max
 * ≤ 100 000), whatever the filter; a state filter walks that state's
 * per-state index, so its page costs O(count). Starts after `cursor` (NULL or "" = the
 * newest run; else a `next` of an earlier call: "<updated_at>:<id>") and
 * returns at most `count` (≤ 1000) runs in state `filter` (VB_RUN_NONE =
 * any) and, when `execution_id` is non-NULL and non-empty (≤ 64 bytes), queued
 * by that cron execution. `next` receives the cursor of the following page, "" when the index
 * is exhausted; a page may hold fewer than `count` runs (even none) and still
 * have a next cursor when the scan budget ran out first. A run updated
 * between two calls moves to the head of the index and is not seen again by
 * that walk. VB_ERR_INVALID for a malformed cursor. *out is zeroed first and
 * must be freed with vb_run_state_list_free in every case (total_runs is the
 * index size, in_state the per-state sizes). Both lists build the per-state
 * indexes first when the store's marker says they are not built yet. */
vb_err vb_store_page(vb_store *s, const char *cursor, size_t count, vb_run_status filter,
                     const char *execution_id, size_t scan_max, vb_run_state_list *out,
                     char next[VB_STORE_CURSOR_MAX], vb_error *err);

/* ---- producer: claiming a run before publishing it ---- */

typedef enum vb_claim_decision {
    VB_CLAIM_PUBLISH = 1,       /* the caller must publish the run now */
    VB_CLAIM_SKIP_IN_PROGRESS,  /* queued/processing/uploading with a live lease */
    VB_CLAIM_SKIP_DONE,         /* uploaded */
    VB_CLAIM_DEAD,              /* attempts exhausted (state is now dead) */
    VB_CLAIM_SKIP_BACKOFF,      /* failed, its retry backoff (retry_at) not over */
} vb_claim_decision;

const char *vb_claim_decision_name(vb_claim_decision d);

/* Decides atomically whether the producer should publish `run_id`:
 *   no state, or failed with attempts < max_attempts and retry_at <= now_ms,
 *   or queued/processing/uploading whose lease_until < now_ms  → PUBLISH: state=queued,
 *     queued_at=now_ms, lease_until=now_ms+lease_ms (attempts kept). The
 *     lease is how long the message may wait for a worker before the run is
 *     published again, so pass a generous value (minutes).
 *   failed with attempts >= max_attempts, or an expired lease with attempts
 *     >= max_attempts → state=dead, DEAD.   dead → DEAD.
 *   live lease → SKIP_IN_PROGRESS.   uploaded → SKIP_DONE.
 *   failed with attempts left before its retry_at → SKIP_BACKOFF.
 * Thread-safe across processes (one Lua script). */
vb_err vb_store_claim_for_queue(vb_store *s, const char *run_id, long max_attempts, long lease_ms,
                                long long now_ms, vb_claim_decision *decision, vb_error *err);

/* As vb_store_claim_for_queue; on PUBLISH also records trace_id and
 * execution_id (NULL or "" = leave as is). *version (may be NULL) receives
 * the run's version after the call. */
vb_err vb_store_claim_for_queue_ex(vb_store *s, const char *run_id, long max_attempts,
                                   long lease_ms, long long now_ms, const char *trace_id,
                                   const char *execution_id, vb_claim_decision *decision,
                                   long long *version, vb_error *err);

/* ---- worker: the per-run lock ---- */

/* Takes the lock of `run_id` for ttl_ms (SET NX PX) on behalf of `worker_id`
 * (printable, no spaces, ≤ 255 bytes). On VB_OK token_out receives a fresh
 * 128-bit random hex token that every later call must present.
 * VB_ERR_CONFLICT when another holder has it. */
vb_err vb_store_lock_acquire(vb_store *s, const char *run_id, const char *worker_id, long ttl_ms,
                             char token_out[VB_STORE_TOKEN_SIZE], vb_error *err);

/* Extends the lock to ttl_ms from now if `token` still holds it, and moves
 * the run's lease_until along (queued/processing/uploading only).
 * VB_ERR_CANCELLED when the lock is lost (expired or taken by another). */
vb_err vb_store_lock_renew(vb_store *s, const char *run_id, const char *token, long ttl_ms,
                           vb_error *err);

/* Deletes the lock if `token` holds it. VB_ERR_CANCELLED when it does not
 * (the lock had expired; nothing is changed). */
vb_err vb_store_lock_release(vb_store *s, const char *run_id, const char *token, vb_error *err);

/* ---- worker: transitions under the lock ---- */

/* Starts an attempt: attempts+1, state=processing, started_at=now,
 * worker=worker_id, lease_until=now+lease_ms (creates the record if Redis has
 * none). VB_ERR_CONFLICT when the run is uploaded or dead (the caller skips
 * the message); VB_ERR_CANCELLED when `token` does not hold the lock.
 * *attempt (may be NULL) receives the attempt number (1 for the first). */
vb_err vb_store_begin_processing(vb_store *s, const char *run_id, const char *token,
                                 const char *worker_id, long lease_ms, long *attempt,
                                 vb_error *err);

/* As vb_store_begin_processing, for the attempt a message carries
 * (msg_attempt, its "attempt" / vb-attempt; 0 = unknown, no check): when the
 * run has already begun that many attempts the message is a redelivery of
 * an attempt that has run, and the call fails with VB_ERR_CONFLICT ("attempt
 * already begun") without counting anything — the run is published again
 * through the claim, after its backoff. Records lease_ms as the attempt's
 * lease (the base of its retry backoff) and clears retry_at. */
vb_err vb_store_begin_attempt(vb_store *s, const char *run_id, const char *token,
                              const char *worker_id, long lease_ms, long msg_attempt,
                              long *attempt, vb_error *err);

/* Records that the report upload is starting: state=uploading,
 * upload_started_at=now. *previous_ms (may be NULL) receives the previous
 * upload_started_at (0 if none): non-zero means an earlier attempt may have
 * uploaded already, so the caller must check with the platform first.
 * VB_ERR_CONFLICT when uploaded; VB_ERR_CANCELLED when the lock is lost. */
vb_err vb_store_mark_upload_started(vb_store *s, const char *run_id, const char *token,
                                    long long *previous_ms, vb_error *err);

/* The last check before a report upload request goes on the wire (the
 * worker calls it from the HTTP pre-request hook, after the connection is
 * made): atomically, `token` must hold the lock; the lock and lease_until
 * are extended to lease_ms from now, so the lease has a full lease of room
 * for the request; state=uploading, upload_started_at=now and upload_until =
 * upload_until_ms (when this attempt can no longer be in flight: its
 * timeout, plus a margin for clock skew). A worker taking the run over later
 * waits until upload_until before it asks the platform and uploads.
 * VB_ERR_CANCELLED when the lock is lost (the caller must not send);
 * VB_ERR_CONFLICT when the run is uploaded; VB_ERR_INVALID for a deadline in
 * the past. */
vb_err vb_store_upload_gate(vb_store *s, const char *run_id, const char *token, long lease_ms,
                            long long upload_until_ms, vb_error *err);

/* Moves the run to `state` (VB_RUN_UPLOADING, _UPLOADED, _FAILED or _DEAD;
 * others are VB_ERR_INVALID). last_error / batch_ids: NULL = unchanged,
 * "" = clear; last_error is cut to 1 KiB on a UTF-8 boundary (the caller has
 * already redacted it); batch_ids over 16 KiB is VB_ERR_INVALID.
 * uploaded/failed/dead set finished_at and clear the lease; failed also sets
 * retry_at (the backoff above).
 * VB_ERR_CANCELLED when `token` does not hold the lock; VB_ERR_CONFLICT when
 * the run is already uploaded (which is final). */
vb_err vb_store_set_state(vb_store *s, const char *run_id, const char *token, vb_run_status state,
                          const char *last_error, const char *batch_ids, vb_error *err);

/* ---- worker: where a run came from, handing a run back ---- */

/* The credentials reference and identity of the message that carried a run,
 * kept in the run record (fields cred_source, job_id, organization_id,
 * run_code) so a run can be published again after a worker is lost. Strings
 * owned, never NULL ("" when absent; cred_source defaults to "config"). */
typedef struct vb_run_origin {
    char *cred_source; /* "config" or "job" */
    char *job_id;
    char *organization_id;
    char *run_code;
} vb_run_origin;

void vb_run_origin_free(vb_run_origin *o);

/* Records the origin of `run_id` while `token` holds its lock (NULL fields
 * are stored as ""; each at most 256 bytes). VB_ERR_CANCELLED when the lock
 * is lost. Does not bump the version (not a transition). */
vb_err vb_store_set_origin(vb_store *s, const char *run_id, const char *token,
                           const char *cred_source, const char *job_id,
                           const char *organization_id, const char *run_code, vb_error *err);

/* Reads the origin of `run_id` into *out (zeroed first; free with
 * vb_run_origin_free). A run without a record gives cred_source "config"
 * and empty fields. */
vb_err vb_store_get_origin(vb_store *s, const char *run_id, vb_run_origin *out, vb_error *err);

/* A stopping worker gives a run back without it counting as an attempt:
 * processing|uploading → failed with attempts−1 (≥ 0), lease cleared,
 * last_error = reason, and the lock deleted — all in one script, so the run
 * is immediately eligible to be published again. upload_started_at is kept.
 * VB_ERR_CANCELLED when `token` does not hold the lock; VB_ERR_CONFLICT in
 * any other state. */
vb_err vb_store_hand_back(vb_store *s, const char *run_id, const char *token, const char *reason,
                          vb_error *err);

/* ---- operator ---- */

/* `visionbatch runs retry`: a dead or failed run becomes failed with
 * attempts=0, so the next producer pass publishes it again. last_error is
 * kept. VB_ERR_NOT_FOUND without state; VB_ERR_CONFLICT in any other state. */
vb_err vb_store_retry(vb_store *s, const char *run_id, vb_error *err);

#endif
