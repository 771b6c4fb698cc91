/*
 * jobs.h — cron jobs and their executions, kept in Redis.
 *
 * Redis layout (all keys under `visionbatch:`):
 *   visionbatch:job:<job_id>        hash: name, schedule, timezone,
 *                                   external_api_get_url, external_api_post_url,
 *                                   external_api_key_enc (sealed "v1:…", see
 *                                   crypto.h — never the plaintext key),
 *                                   backend_api_url, organization_id,
 *                                   enabled ("1"/"0"), overlap ("skip"/"allow"),
 *                                   created_at, updated_at (unix ms),
 *                                   notify (canonical JSON of the webhook
 *                                   targets, see notify.h; "" = none),
 *                                   notify_secret_enc (sealed like the key),
 *                                   pause_on_failure (N, 0 = off),
 *                                   fail_streak (consecutive failed
 *                                   executions), paused_reason (why the job
 *                                   deactivated itself; cleared on enable)
 *   visionbatch:jobs                set of job ids
 *   visionbatch:jobs:version        counter, INCR'd by every change to any job
 *                                   (producers poll it and reload schedules)
 *   visionbatch:jobs:by-id          sorted set of the job ids (score 0: lexical order),
 *                                   rebuilt by vb_jobs_list_page when the version moved
 *   visionbatch:jobs:by-id:version  the version that index was built at
 *   visionbatch:exec:<execution_id> hash: execution_id, job_id, status,
 *                                   started_at, completed_at, scheduled_for
 *                                   (unix ms, 0 = unset), output, batch_id
 *                                   (comma list), runs_found, runs_published,
 *                                   runs_skipped_in_progress,
 *                                   runs_skipped_other_org, skip_reason
 *   visionbatch:job:<job_id>:execs  list of execution ids, newest first,
 *                                   trimmed to the executions cap (the hashes
 *                                   of trimmed executions are deleted too)
 * Every change is one Lua script, so a job and its index, version and
 * executions never disagree, whatever other clients do meanwhile.
 *
 * Job ids and execution ids are random (version 4) UUIDs, lower case.
 *
 * Threading: a vb_jobs holds one Redis connection behind a mutex, so one
 * handle may be shared by every thread of a process (calls are serialised).
 * A command that fails on the connection drops it; the next call reconnects,
 * and failed reconnects are spaced by a backoff (100 ms doubling to 5 s)
 * during which calls fail fast. Nothing is retried automatically. Lists read
 * their records in one pipelined round trip.
 */
#ifndef VISIONBATCH_JOBS_H
#define VISIONBATCH_JOBS_H

#include <stddef.h>

#include "visionbatch/config.h"
#include "visionbatch/crypto.h"
#include "visionbatch/error.h"

#define VB_JOBS_NAME_MAX 200        /* characters (UTF-8 code points) */
#define VB_JOBS_URL_MAX 2048        /* bytes */
#define VB_JOBS_KEY_MAX 8192        /* bytes of external_api_key */
#define VB_JOBS_ORG_MAX 256         /* bytes of organization_id */
#define VB_JOBS_OUTPUT_MAX 4096     /* bytes of an execution's output (cut) */
#define VB_JOBS_EXEC_CAP_DEFAULT 100
#define VB_JOBS_DEFAULT_BACKEND "http://localhost:8000"

typedef struct vb_jobs vb_jobs;

/* ---- the JSON body of POST/PUT /cron-jobs (pure, no Redis) ---- */

enum {
    VB_JOB_F_NAME = 1u << 0,
    VB_JOB_F_SCHEDULE = 1u << 1,
    VB_JOB_F_TIMEZONE = 1u << 2,
    VB_JOB_F_GET_URL = 1u << 3,
    VB_JOB_F_POST_URL = 1u << 4,
    VB_JOB_F_API_KEY = 1u << 5,
    VB_JOB_F_BACKEND_URL = 1u << 6,
    VB_JOB_F_ORG_ID = 1u << 7,
    VB_JOB_F_ENABLED = 1u << 8,
    VB_JOB_F_OVERLAP = 1u << 9,
    VB_JOB_F_NOTIFY = 1u << 10,
    VB_JOB_F_NOTIFY_SECRET = 1u << 11,
    VB_JOB_F_PAUSE = 1u << 12,
    VB_JOB_F_JITTER = 1u << 13,
};

#define VB_JOBS_JITTER_MAX 3600 /* largest jitter_s */

/* A validated request body. Strings are owned (NULL when the field was
 * absent); `present` has one VB_JOB_F_* bit per field given. */
typedef struct vb_job_input {
    unsigned present;
    char *name, *schedule, *timezone;
    char *external_api_get_url, *external_api_post_url, *external_api_key;
    char *backend_api_url, *organization_id;
    int enabled;       /* valid when VB_JOB_F_ENABLED */
    int overlap_allow; /* valid when VB_JOB_F_OVERLAP */
    char *notify;        /* canonical JSON of the targets; "" when null or [] */
    char *notify_secret; /* signing secret (wiped on free) */
    long pause_on_failure; /* valid when VB_JOB_F_PAUSE; 0 = off */
    long jitter_s;         /* valid when VB_JOB_F_JITTER; 0 = off */
} vb_job_input;

/* Parses and validates a JSON body of `len` bytes (need not be
 * NUL-terminated). `partial` = 0 (create): name, schedule,
 * external_api_get_url, external_api_post_url, external_api_key and
 * organization_id are required; `partial` = 1 (update): any non-empty subset.
 * Rules: a JSON object; no unknown or duplicate fields; strings are non-empty
 * valid UTF-8 without control characters (a schedule may hold tabs; no
 * string, key or value, may hold the escape \u0000); name ≤ 200 characters; URLs are
 * http:// or https:// with a host, ≤ 2048 bytes; schedule parses
 * (vb_cron_parse) and fires at least once; timezone is a known IANA zone;
 * enabled is a boolean; overlap is "skip" or "allow"; notify is null or an
 * array of webhook targets (vb_notify_validate); notify_secret is a string of
 * 16–256 bytes; pause_on_failure an integer 0–1000; jitter_s an integer
 * 0–VB_JOBS_JITTER_MAX. On failure returns
 * VB_ERR_INVALID (or VB_ERR_PARSE for malformed JSON) with a message naming
 * the field(s), *out zeroed. On VB_OK free *out with vb_job_input_free.
 * Thread-safe. */
vb_err vb_job_input_parse(const char *body, size_t len, int partial, vb_job_input *out,
                          vb_error *err);
/* Frees the strings (the API key is wiped first) and zeroes *in. NULL ok. */
void vb_job_input_free(vb_job_input *in);

/* 1 when `id` is a UUID in canonical 8-4-4-4-12 hex form (any case). */
int vb_jobs_id_valid(const char *id);

/* ---- stored records ---- */

typedef struct vb_job {
    char job_id[VB_UUID_SIZE];
    char *name, *schedule, *timezone;
    char *external_api_get_url, *external_api_post_url;
    char *external_api_key_enc; /* sealed; "" when none */
    char *backend_api_url, *organization_id;
    int enabled;
    int overlap_allow;
    long long created_at, updated_at; /* unix ms */
    char *notify;            /* canonical JSON of the webhook targets; "" = none */
    char *notify_secret_enc; /* sealed; "" when none */
    long pause_on_failure;   /* 0 = off */
    long fail_streak;        /* consecutive failed executions */
    char *paused_reason;     /* "" unless the job deactivated itself */
    long jitter_s;           /* ticks fire up to this late (0 = on the tick);
                                see vb_job_jitter_ms */
} vb_job;

typedef struct vb_job_list {
    vb_job *items; /* oldest created first */
    size_t n;
} vb_job_list;

/* The job's fixed firing offset in ms, in [0, jitter_s × 1000]: a hash of
 * the job id, so every producer computes the same one and a job's ticks
 * stay evenly spaced. 0 when jitter_s is 0. Thread-safe. */
long vb_job_jitter_ms(const vb_job *job);

/* Strings are never NULL in a record read from Redis. Free with the
 * functions below (NULL ok). */
void vb_job_free(vb_job *job);
void vb_job_list_free(vb_job_list *l);

typedef struct vb_exec {
    char execution_id[VB_UUID_SIZE];
    char job_id[VB_UUID_SIZE];
    char status[16]; /* running|success|partial|failed|timeout|error|skipped */
    long long started_at, completed_at, scheduled_for; /* unix ms, 0 = unset */
    char *output;      /* short text (cut to 4 KiB); NULL = "" */
    char *batch_id;    /* comma-separated batch ids; NULL = "" */
    char *skip_reason; /* NULL = "" */
    long runs_found, runs_published, runs_skipped_in_progress, runs_skipped_other_org;
    long runs_succeeded, runs_failed; /* outcomes of published runs (read only) */
    char *notifications; /* JSON array of {url, event, status, attempts,
                            http_status}; NULL = "[]" */
} vb_exec;

typedef struct vb_exec_list {
    vb_exec *items; /* newest first */
    size_t n;
} vb_exec_list;

void vb_exec_free(vb_exec *e);
void vb_exec_list_free(vb_exec_list *l);
/* 1 when `status` is one of the execution statuses above. */
int vb_exec_status_valid(const char *status);

/* ---- the handle ---- */

typedef struct vb_jobs_opts {
    const char *redis_url;    /* redis://[[user:]password@]host[:port][/db] or
                                 unix://[[user:]password@]/path[?db=N] (the grammar of
                                 common/redis/redis.h); NULL = redis://127.0.0.1:6379/0 */
    const unsigned char *secret_key; /* 32 bytes (copied), or NULL: no keys can be stored */
    size_t exec_cap;          /* executions kept per job; 0 = 100 */
    long connect_timeout_ms;  /* 0 = 5000 */
    long command_timeout_ms;  /* 0 = 10000 */
    const char *webhook_allowed_hosts; /* hosts a job's notify URLs may name
                                          (vb_notify_host_allowed); NULL/"" =
                                          none: jobs with notify are refused */
} vb_jobs_opts;

/* Opens the handle and connects. VB_ERR_CONFIG for a bad URL (the message
 * never repeats a password), VB_ERR_REDIS when Redis is unreachable; *out is
 * then NULL. */
vb_err vb_jobs_new(const vb_jobs_opts *opts, vb_jobs **out, vb_error *err);
/* Closes the connection and wipes the secret key. NULL is accepted. */
void vb_jobs_free(vb_jobs *j);

/* PING (reconnecting first if needed). */
vb_err vb_jobs_ping(vb_jobs *j, vb_error *err);

/* Creates a job from a validated create-input (defaults: timezone "UTC",
 * backend_api_url http://localhost:8000, enabled true, overlap "skip"). The
 * API key is sealed; without a secret key configured this fails with
 * VB_ERR_CONFIG and stores nothing. On VB_OK *out (may be NULL) receives the
 * stored record (free with vb_job_free). */
vb_err vb_jobs_create(vb_jobs *j, const vb_job_input *in, vb_job *out, vb_error *err);

/* Reads one job. VB_ERR_NOT_FOUND when it does not exist. */
vb_err vb_jobs_get(vb_jobs *j, const char *job_id, vb_job *out, vb_error *err);

/* Lists every job (or only enabled ones), oldest first. */
vb_err vb_jobs_list(vb_jobs *j, int enabled_only, vb_job_list *out, vb_error *err);

#define VB_JOBS_PAGE_MAX 1000 /* jobs per page at most */

/* One page of jobs in job-id order: the first `limit` (1..VB_JOBS_PAGE_MAX)
 * ids greater than `after` (NULL or "" = from the start; else a valid job
 * id), read in one Redis round trip (a script over a sorted index of the
 * ids, rebuilt on the server after any change to the jobs; only the page
 * travels). With
 * enabled_only, disabled jobs are left out, so a page may hold fewer than
 * `limit` jobs. `next` receives the id to pass as `after` for the next page,
 * "" when this was the last one. A job that exists during the whole paging
 * appears exactly once; one created or deleted meanwhile may or may not.
 * VB_ERR_INVALID for a bad limit or cursor. */
vb_err vb_jobs_list_page(vb_jobs *j, const char *after, size_t limit, int enabled_only,
                         vb_job_list *out, char next[VB_UUID_SIZE], vb_error *err);

/* PUT semantics: every field present in `in` replaces the stored value;
 * absent fields keep theirs (so a full body is a full replacement, and an
 * absent external_api_key keeps the stored one). updated_at is set. On VB_OK
 * *out (may be NULL) receives the new record. VB_ERR_NOT_FOUND when absent;
 * VB_ERR_CONFIG for a key without a secret key. */
vb_err vb_jobs_update(vb_jobs *j, const char *job_id, const vb_job_input *in, vb_job *out,
                      vb_error *err);

/* Sets enabled (and updated_at); enabling also clears paused_reason and
 * fail_streak. VB_ERR_NOT_FOUND when absent. */
vb_err vb_jobs_set_enabled(vb_jobs *j, const char *job_id, int enabled, vb_error *err);

/* Deletes the job, its execution list and execution records.
 * VB_ERR_NOT_FOUND when absent. */
vb_err vb_jobs_delete(vb_jobs *j, const char *job_id, vb_error *err);

/* Current value of visionbatch:jobs:version (0 when never changed). */
vb_err vb_jobs_version(vb_jobs *j, long long *version, vb_error *err);

/* Decrypts a job's stored API key. On VB_OK *key is a new string to release
 * with vb_crypto_free_secret. VB_ERR_CONFIG without a secret key,
 * VB_ERR_NOT_FOUND when the job has no key, VB_ERR_CRYPTO when it does not
 * open under the configured key. */
vb_err vb_jobs_open_key(vb_jobs *j, const vb_job *job, char **key, vb_error *err);

/* The platform settings a cron job's runs are fetched and reported with: a
 * deep copy of base (vb_config_copy) whose external_api_get_url,
 * external_api_post_url, backend_api_url and organization_id are the job's
 * and whose external_api_key is the job's decrypted key (registered with
 * vb_redact_add_secret, so logs never show it). On VB_OK the caller frees
 * *out with vb_config_free; on failure *out is zeroed. Errors: those of
 * vb_jobs_open_key, VB_ERR_NOMEM ("out of memory"). */
vb_err vb_jobs_platform_config(vb_jobs *j, const vb_job *job, const vb_config *base,
                               vb_config *out, vb_error *err);

/* Opens the webhook signing secret of job `job_id`. On VB_OK *secret is a new
 * string (vb_crypto_free_secret). VB_ERR_NOT_FOUND when the job or its
 * secret is absent, VB_ERR_CONFIG without a secret key, VB_ERR_CRYPTO when
 * it does not open, VB_ERR_REDIS. */
vb_err vb_jobs_open_notify_secret(vb_jobs *j, const char *job_id, char **secret, vb_error *err);

/* Records a new execution of e->job_id: when e->execution_id is "" a fresh
 * UUID is generated and written back into *e. Pushes it on the job's list and
 * trims the list to the cap. VB_ERR_NOT_FOUND when the job does not exist,
 * VB_ERR_INVALID for an unknown status. */
vb_err vb_jobs_exec_record(vb_jobs *j, vb_exec *e, vb_error *err);

/* Rewrites every field of an existing execution. VB_ERR_NOT_FOUND when the
 * execution no longer exists (trimmed or its job deleted). */
vb_err vb_jobs_exec_update(vb_jobs *j, const vb_exec *e, vb_error *err);

/* Reads one execution. VB_ERR_NOT_FOUND when absent. Free with vb_exec_free. */
vb_err vb_jobs_exec_get(vb_jobs *j, const char *execution_id, vb_exec *out, vb_error *err);

/* The newest `limit` (1–1000) executions of a job, newest first. An unknown
 * job yields an empty list (the caller checks existence if it matters). */
vb_err vb_jobs_exec_list(vb_jobs *j, const char *job_id, size_t limit, vb_exec_list *out,
                         vb_error *err);

/* The newest execution of each of n (≤ VB_JOBS_PAGE_MAX) jobs in one round
 * trip (a read-only script): out[i] for job_ids[i], zeroed (execution_id
 * "") when the job has none. The caller frees each with vb_exec_free (also
 * on failure, when every out[i] is zeroed). VB_ERR_INVALID for a bad id. */
vb_err vb_jobs_exec_latest(vb_jobs *j, const char *const *job_ids, size_t n, vb_exec *out,
                           vb_error *err);

#endif
