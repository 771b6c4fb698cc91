/*
 * worker.c — visionbatch-worker: consumes run messages from Kafka and runs
 * each through the pipeline, at most `concurrency` at a time, with Redis
 * deciding who processes what.
 *
 * Threads
 *   poll     the only user of the Kafka consumer. Keeps a small queue of
 *            fetched messages (up to prefetch × slots); the moment a
 *            slot is free (a slot that finishes wakes the poll at once) it
 *            takes the queue head, decodes it, claims the run in Redis and
 *            hands it to the slot. Only when the queue is full — every slot
 *            busy, or the head waiting for a retry — are all assigned
 *            partitions paused, and they are resumed once the queue is down
 *            to half of that, so librdkafka's refetch after a resume
 *            overlaps the runs of the messages still queued. Polling goes on
 *            while paused, so the worker stays in the consumer group during
 *            runs of an hour.
 *   slot×N   each runs one run at a time with its own HTTP handle and Redis
 *            connection.
 *   renewer  renews the lock (and lease) of every busy slot every
 *            lease_ms/3; a lock found lost sets that slot's cancel flag, so
 *            its pipeline stops (another worker has taken the run over).
 *   reaper   every max(1 s, min(lease_ms/3, 10 s)) looks for runs whose
 *            worker vanished (processing/uploading with lease_until < now),
 *            queued runs whose queue lease expired, and failed runs with
 *            attempts left whose retry_at (set by the store when the run
 *            failed: lease × 2^(attempts−1), at most 10 min — the claim
 *            checks it again) has passed; claims each with vb_store_claim_for_queue_ex
 *            (one Lua script: among several workers exactly one gets PUBLISH)
 *            and produces a new message for it. A crashed worker's run is so
 *            running again within lease + reaper interval + a rebalance, not
 *            at the next cron tick.
 *   sweeper  every temp_sweep_interval_s removes the run directories of
 *            temp_dir whose lock is free — left by a process that died
 *            (kill -9, OOM) — and only those (rundir.h). The first sweep
 *            runs in vb_worker_new, which also refuses an unsafe temp_dir.
 *   heartbeat every 1–5 s writes the worker's heartbeat (heartbeat.c) for
 *            the console; removed when the worker stops.
 *
 * The poll path for one message
 *   decode            malformed → copy to dlq_topic (header vb-reason), store
 *                     the offset, go on (a poison message never blocks);
 *   credentials       "config": this worker's platform settings (and the
 *                     message's organization must be ours); "job": the cron
 *                     job's settings from Redis, its API key opened with the
 *                     shared secret key (VISIONBATCH_SECRET_KEY); a job that
 *                     is gone or a key that cannot be opened → dead-letter
 *                     with reason "credentials unavailable";
 *   lock              vb_store_lock_acquire; CONFLICT → another worker has
 *                     the run: skip;
 *   begin_attempt     with the message's attempt number: CONFLICT (uploaded,
 *                     dead, or that attempt has already begun — a Kafka
 *                     redelivery, which must not count twice) → release, skip;
 *   origin            the message's credential source, job id, organization
 *                     and run code go into the run record, so the reaper can
 *                     publish the run again the way it first came;
 *   commit            store the offset, then hand the run to the slot.
 * Messages are taken from the queue in the order they were fetched, so the
 * stored offset of a partition is always its highest handled offset + 1
 * with every message below it handled. The poll loop sends stored offsets
 * with an asynchronous commit every COMMIT_MS (a batch of whatever was
 * stored meanwhile); a failed commit is logged and the offsets go with the
 * next. An offset is therefore committed only once the run's Redis state
 * (processing + lease) is durable. If the worker dies after that, the lease
 * expires and a reaper republishes the run; if it dies before — or before
 * the batch's commit — the message is delivered again (and skipped if its
 * attempt has already begun). Redis or Kafka failures on this path keep the
 * message at the head of the queue (which fills up, and then the partitions
 * are paused) and retry it every second: nothing is skipped because a
 * service blinked, and a message logged as "retrying" is never committed;
 * any other refusal (refuse()) copies the message to dlq_topic with its
 * reason before its offset is committed.
 *
 * Rebalances: when partitions are revoked (or lost), the consumer calls
 * on_revoke (drop_partition) inside the poll, before it commits the stored
 * offsets synchronously and gives the partitions up: queued messages of
 * those partitions are dropped, unclaimed and uncommitted, so they go to the
 * new owner (should two workers still take one, the run lock lets only one
 * process it).
 *
 * A slot, for one run
 *   1. takes the run from the message's sealed copy (seal.h, opened with
 *      the shared secret key: no platform request) unless it is missing or
 *      does not open, the run is of another organization, or an earlier
 *      attempt recorded an upload start — then asks the platform for the run
 *      (vb_platform_find_run; messages carry document paths without their
 *      SAS query strings, so fresh URLs are needed). A document URL of the
 *      sealed copy refused with 403/404 (expired) stops the pipeline before
 *      the backend; the run is looked up once and run again, same attempt.
 *      Without a lookup, exactly-once rests on the run record as it does
 *      anyway: begin_attempt refuses uploaded runs, and an upload start is
 *      always checked with the platform (docs/worker.md, "The sealed run").
 *      The list pages by offset and can shift under a scan,
 *      so the run counts as absent only after three consecutive scans miss
 *      it (platform.c). An absent run is already processed there only if
 *      visionbatch began uploading its report before (upload_started_at set:
 *      a crash after the upload landed): state uploaded, last_error
 *      "already processed on the platform"; otherwise the attempt fails
 *      with VB_ERR_NOT_FOUND and is retried like any transient error (3.);
 *   2. runs vb_pipeline_process; on_stage(UPLOADING) records the upload
 *      start (vb_store_mark_upload_started). If an earlier attempt had
 *      started an upload, before_upload first waits until that upload can no
 *      longer be in flight (the upload_until its gate recorded), then asks
 *      the platform whether the run is still unprocessed and skips the
 *      upload when it is not. before_send — libcurl's pre-request callback,
 *      after the connection is made, before each upload attempt is written —
 *      is the gate (vb_store_upload_gate): lock still ours, lease extended to
 *      a full lease, upload_until = now + upload_timeout_s + skew recorded;
 *      lock lost → nothing sent, cancel set. What no client can close (the
 *      platform takes no fencing token) is a pause between that check and
 *      the request leaving the host that outlasts upload_until: see
 *      docs/worker.md, "A paused worker and the report upload";
 *   3. records the outcome (the rules: decide.c, as the reaper's choice):
 *        success                       → uploaded
 *        lock lost                     → nothing (the new holder owns it)
 *        stopped by shutdown           → handed back (below)
 *        permanent error               → dead: HTTP 4xx other than 401, 403,
 *                                         408, 429; malformed or oversized
 *                                         data (PARSE, CONTENT, TOO_LARGE,
 *                                         INVALID, CONFIG) — retrying cannot
 *                                         help;
 *        other error, attempts < max   → failed (the reaper retries it after
 *                                         its backoff);
 *        other error, attempts ≥ max   → dead;
 *      a dead run's original message is copied to the dead-letter topic
 *      (vb-reason = the error);
 *   4. releases the lock.
 * Redis errors inside a slot are retried for up to 2 × lease_ms.
 *
 * Shutdown (SIGTERM/SIGINT): intake stops (partitions paused, new messages
 * left uncommitted for others), runs in flight get shutdown_grace_s to
 * finish; the rest are cancelled and handed back with vb_store_hand_back —
 * state failed, the attempt not counted, lock released — so any worker's
 * reaper republishes them at once. Then stored offsets are committed, the
 * consumer leaves the group (rd_kafka_consumer_close) and the program exits
 * 0.
 *
 * Ownership: the worker borrows its vb_config; each thread owns its Redis
 * connection (and slots their vb_http). Jobs move from the poll thread to a
 * slot under the worker mutex; the slot frees them.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "visionbatch/http.h"
#include "visionbatch/kafka.h"
#include "visionbatch/log.h"
#include "visionbatch/message.h"
#include "visionbatch/pipeline.h"
#include "visionbatch/crypto.h"
#include "visionbatch/endpoint.h"
#include "visionbatch/jobs.h"
#include "visionbatch/jobs_exec.h"
#include "visionbatch/platform.h"
#include "visionbatch/redact.h"
#include "visionbatch/rundir.h"
#include "visionbatch/store.h"
#include "decide.h"
#include "heartbeat.h"
#include "run_source.h"
#include "util.h"
#include "worker.h"

#define POLL_MS 50 /* a slot that frees wakes the poll earlier */
#define QUEUE_MAX_BYTES (32u << 20) /* prefetched messages held at most */
#define COMMIT_MS 1000           /* stored offsets are committed in batches this often */
#define RETRY_MS 1000            /* a message waiting for Redis/Kafka */
#define PRODUCE_TIMEOUT_MS 15000
#define REAP_PAGE 200
#define REAP_PAGES 10
#define CANCEL_WAIT_MS 30000     /* after cancelling at shutdown */
#define HANDED_BACK_REASON "worker shutting down: run handed back"
#define UPLOAD_SKEW_MS 2000LL    /* clock skew allowed between workers' hosts */

typedef struct job {
    vb_kafka_message *km; /* the original message (owned) */
    vb_run_msg msg;       /* decoded; valid when decoded = 1 */
    int decoded;
    char reason[1100];     /* why it cannot be processed ("" = it can) */
    vb_config *run_cfg;   /* "job" credentials: the job's platform settings (owned) */
    char token[VB_STORE_TOKEN_SIZE];
    long attempt;
    double claim_s; /* seconds the claim took (handle) */
    struct job *next;
} job;

typedef struct slot {
    struct vb_worker *w;
    int idx;
    pthread_t th;
    int started;
    job *job;                /* (mu) assigned run; NULL = free */
    char run_id[VB_STORE_ID_MAX + 1]; /* (mu) for the renewer */
    char token[VB_STORE_TOKEN_SIZE];  /* (mu) "" when idle */
    atomic_int cancel;
    atomic_int shutdown; /* cancel comes from shutdown */
    vb_http *http;
    vb_store *store;
    /* per run */
    char batch_ids[1024];
    int check_platform; /* an earlier attempt may have uploaded */
    long long prev_upload_at; /* that attempt's recorded upload start (unix ms) */
    vb_run run;         /* as the platform lists it now */
    const vb_config *cfg; /* platform settings of the current run */
    vb_worker_run_phases phases; /* of the current run, complete when uploaded */
} slot;

struct vb_worker {
    const vb_config *cfg;
    vb_worker_metrics m;
    atomic_llong poll_alive_ms; /* monotonic ms of the poll loop's last turn */
    long stale_ms;              /* /healthz fails when the loop is older than this */
    vb_endpoint *ep;            /* metrics and health */
    vb_kafka_consumer *kc;
    vb_kafka_producer *kp;
    vb_store *store; /* poll thread */
    pthread_mutex_t mu;
    pthread_cond_t cv; /* slots wait for a job or quit */
    slot *slots;
    int nslots;
    int queue_max, queue_resume; /* pause at, resume at (queued messages) */
    size_t queued_bytes;         /* keys and values of the queued messages */
    int quit;                       /* (mu) slots exit */
    atomic_int bg_stop;             /* renewer and reaper exit */
    pthread_t renewer, reaper, sweeper;
    int renewer_started, reaper_started, sweeper_started;
    vb_worker_beats *beats; /* heartbeat thread (heartbeat.c) */
    vb_jobs *jobs;     /* cron jobs (credentials) and executions; thread-safe */
    unsigned char seal_key[VB_CRYPTO_KEY_SIZE]; /* secret_key: opens sealed runs */
    int have_seal_key;
    int platform_ok;   /* the worker's own platform settings are complete */
    char platform_why[1024];
    job *head, *tail;  /* messages waiting for a slot or a retry */
    int queued;        /* messages in that queue */
    long long retry_at;
    long long commit_at; /* monotonic ms of the next commit; 0 = nothing stored */
};

/* ---- small helpers ---- */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* Sleeps up to ms in short steps; returns early when *flag is set. */
static void nap(long ms, const atomic_int *flag)
{
    for (long t = 0; t < ms && !*flag; t += 100)
        sleep_ms(ms - t < 100 ? ms - t : 100);
}

static void job_free(job *j)
{
    if (!j)
        return;
    if (j->decoded)
        vb_run_msg_free(&j->msg);
    if (j->run_cfg) {
        vb_config_free(j->run_cfg);
        free(j->run_cfg);
    }
    vb_kafka_message_free(j->km);
    free(j);
}

/* Copies a message value to the dead-letter topic with its reason. */
static vb_err dead_letter(vb_worker *w, const char *key, const char *value, size_t len,
                          const char *reason, vb_error *err)
{
    char why[512]; /* a header value: long reasons are cut */
    snprintf(why, sizeof why, "%.511s", reason);
    vb_redact_text(why);
    vb_kafka_header h[1] = {{"vb-reason", why}};
    vb_err rc = vb_kafka_produce_sync(w->kp, w->cfg->dlq_topic, key, value ? value : "",
                                      value ? len : 0, h, 1, PRODUCE_TIMEOUT_MS, err);
    if (rc == VB_OK) {
        vb_metric_inc(w->m.dlq, NULL);
        VB_WARN("dead-lettered to %s: %s", w->cfg->dlq_topic, why);
    }
    return rc;
}

/* ---- lease renewal ---- */

static void *renewer_main(void *p)
{
    vb_worker *w = p;
    const vb_config *cfg = w->cfg;
    vb_store *st = NULL;
    vb_error err;
    vb_error_clear(&err);
    long every = cfg->lease_ms / 3 > 200 ? cfg->lease_ms / 3 : 200;
    while (!w->bg_stop) {
        nap(every, &w->bg_stop);
        if (w->bg_stop)
            break;
        if (!st && vb_store_new(cfg->redis_url, NULL, &st, &err) != VB_OK) {
            VB_WARN("lease renewal: %s", err.msg);
            vb_error_clear(&err);
            continue;
        }
        for (int i = 0; i < w->nslots; i++) {
            char id[VB_STORE_ID_MAX + 1], tok[VB_STORE_TOKEN_SIZE];
            pthread_mutex_lock(&w->mu);
            memcpy(id, w->slots[i].run_id, sizeof id);
            memcpy(tok, w->slots[i].token, sizeof tok);
            pthread_mutex_unlock(&w->mu);
            if (!tok[0])
                continue;
            vb_error_clear(&err);
            vb_err rc = vb_store_lock_renew(st, id, tok, cfg->lease_ms, &err);
            if (rc == VB_ERR_CANCELLED) {
                pthread_mutex_lock(&w->mu);
                if (strcmp(w->slots[i].token, tok) == 0) {
                    w->slots[i].cancel = 1;
                    VB_WARN("run %s: lock lost (lease expired or taken over); stopping it", id);
                }
                pthread_mutex_unlock(&w->mu);
            } else if (rc != VB_OK) {
                VB_WARN("run %s: lease renewal failed (will retry): %s", id, err.msg);
            }
        }
    }
    vb_store_free(st);
    return NULL;
}

/* ---- the reaper ---- */

static long long requeue_lease_ms(const vb_config *cfg)
{
    long long l = 10LL * cfg->lease_ms;
    return l > 60000 ? l : 60000;
}

/* Builds the message of a run that is published again: the credentials
 * reference, organization and run code of the message that first carried it
 * (kept in the run record), and a minimal run object — the worker that takes
 * it fetches the run from the platform anyway. */
static vb_err republish(vb_worker *w, vb_store *st, const vb_run_state *rs, vb_error *err)
{
    vb_run_origin o;
    vb_err rc = vb_store_get_origin(st, rs->id, &o, err);
    if (rc != VB_OK)
        return rc;
    vb_run run;
    memset(&run, 0, sizeof run);
    run.id = rs->id;
    run.organization_id = o.organization_id[0] ? o.organization_id : w->cfg->organization_id;
    run.run_code = o.run_code[0] ? o.run_code : NULL;
    run.user_query = "";
    const char *job_id = strcmp(o.cred_source, "job") == 0 && o.job_id[0] ? o.job_id : NULL;
    char *json = NULL;
    if (!run.organization_id) {
        rc = vb_error_set(err, VB_ERR_CONFIG, "no organization known for run %s", rs->id);
        goto done;
    }
    rc = vb_run_msg_encode(&run, job_id, rs->execution_id[0] ? rs->execution_id : NULL,
                           rs->trace_id, (int)rs->attempts + 1, &json, err);
    if (rc != VB_OK)
        goto done;
    char schema[8], attempt[24];
    snprintf(schema, sizeof schema, "%d", VB_MSG_SCHEMA);
    snprintf(attempt, sizeof attempt, "%ld", rs->attempts + 1);
    vb_kafka_header h[4] = {{"vb-schema", schema},
                            {"vb-attempt", attempt},
                            {"vb-trace-id", rs->trace_id},
                            {"vb-source", "retry"}};
    rc = vb_kafka_produce_sync(w->kp, w->cfg->topic, rs->id, json, strlen(json), h, 4,
                               PRODUCE_TIMEOUT_MS, err);
done:
    free(json);
    vb_run_origin_free(&o);
    return rc;
}

/* Dead-letters a run the reaper found with its attempts exhausted. */
static void reap_dead(vb_worker *w, const vb_run_state *rs)
{
    char reason[VB_STORE_LAST_ERROR_MAX + 64];
    snprintf(reason, sizeof reason, "attempts exhausted (%ld): %s", rs->attempts,
             rs->last_error[0] ? rs->last_error : "lease expired");
    char body[512];
    int n = snprintf(body, sizeof body, "{\"schema\":%d,\"run_id\":\"%s\",\"state\":\"dead\"}",
                     VB_MSG_SCHEMA, rs->id);
    vb_error err;
    vb_error_clear(&err);
    if (dead_letter(w, rs->id, body, (size_t)n, reason, &err) != VB_OK)
        VB_ERROR("run %s is dead but could not be dead-lettered: %s", rs->id, err.msg);
}

/* One candidate: claims it, and publishes it when the claim says so. */
static void reap_one(vb_worker *w, vb_store *st, const vb_run_state *rs)
{
    const vb_config *cfg = w->cfg;
    vb_error err;
    vb_error_clear(&err);
    vb_claim_decision d = 0;
    vb_err rc = vb_store_claim_for_queue_ex(st, rs->id, cfg->max_attempts, requeue_lease_ms(cfg),
                                            vb_store_now_ms(), NULL, NULL, &d, NULL, &err);
    if (rc != VB_OK) {
        VB_WARN("reaper: claiming run %s failed: %s", rs->id, err.msg);
        return;
    }
    if (d == VB_CLAIM_DEAD) {
        VB_WARN("reaper: run %s is dead (was %s, %ld attempts)", rs->id,
                vb_run_status_name(rs->state), rs->attempts);
        reap_dead(w, rs);
        return;
    }
    if (d != VB_CLAIM_PUBLISH)
        return; /* another worker was quicker, the run moved on, or its backoff is not over */
    if (rs->state == VB_RUN_PROCESSING || rs->state == VB_RUN_UPLOADING)
        vb_metric_inc(w->m.lock_takeovers, NULL);
    else if (rs->state == VB_RUN_FAILED)
        vb_metric_inc(w->m.retries, NULL);
    rc = republish(w, st, rs, &err);
    if (rc != VB_OK)
        VB_ERROR("reaper: run %s claimed but not republished (retried after the queue lease, "
                 "%lld ms): %s", rs->id, requeue_lease_ms(cfg), err.msg);
    else
        VB_INFO("reaper: run %s was %s (worker %s, lease expired or retry due); republished",
                rs->id, vb_run_status_name(rs->state), rs->worker[0] ? rs->worker : "-");
}

static int reap_candidate(const vb_config *cfg, const vb_run_state *rs, long long now)
{
    return vb_worker_reap_action(rs, cfg->max_attempts, cfg->lease_ms, now) != VB_REAP_NONE;
}

static void reap_sweep(vb_worker *w, vb_store *st)
{
    static const vb_run_status states[] = {VB_RUN_PROCESSING, VB_RUN_UPLOADING, VB_RUN_QUEUED,
                                           VB_RUN_FAILED};
    for (size_t s = 0; s < sizeof states / sizeof *states && !w->bg_stop; s++) {
        size_t offset = 0;
        for (int page = 0; page < REAP_PAGES && !w->bg_stop; page++) {
            vb_run_state_list l;
            vb_error err;
            vb_error_clear(&err);
            if (vb_store_list(st, offset, REAP_PAGE, states[s], &l, &err) != VB_OK) {
                VB_WARN("reaper: listing %s runs failed: %s", vb_run_status_name(states[s]),
                        err.msg);
                vb_run_state_list_free(&l);
                return;
            }
            size_t n = l.n, moved = 0;
            long long now = vb_store_now_ms();
            for (size_t i = 0; i < l.n && !w->bg_stop; i++) {
                if (reap_candidate(w->cfg, &l.items[i], now)) {
                    reap_one(w, st, &l.items[i]);
                    moved++;
                }
            }
            vb_run_state_list_free(&l);
            if (n < REAP_PAGE)
                break;
            offset += n - moved;
        }
    }
}

static void *reaper_main(void *p)
{
    vb_worker *w = p;
    const vb_config *cfg = w->cfg;
    vb_store *st = NULL;
    vb_error err;
    vb_error_clear(&err);
    long every = cfg->lease_ms / 3;
    if (every < 1000)
        every = 1000;
    if (every > 10000)
        every = 10000;
    /* Spread the sweeps of workers started together. */
    nap((long)(vb__mono_ms() % every), &w->bg_stop);
    while (!w->bg_stop) {
        if (!st && vb_store_new(cfg->redis_url, NULL, &st, &err) != VB_OK) {
            VB_WARN("reaper: %s", err.msg);
            vb_error_clear(&err);
        } else if (st) {
            reap_sweep(w, st);
        }
        nap(every, &w->bg_stop);
    }
    vb_store_free(st);
    return NULL;
}

/* ---- the sweeper ---- */

/* Removes the run directories of dead processes from temp_dir. */
static vb_err sweep_temp(const vb_config *cfg, vb_error *err)
{
    vb_rundir_sweep_stats st;
    vb_err rc = vb_rundir_sweep(cfg->temp_dir, &st, err);
    if (rc == VB_OK && (st.removed || st.failed))
        VB_INFO("temp sweep: %zu run dirs of dead processes removed, %zu could not be, %zu live",
                st.removed, st.failed, st.live);
    return rc;
}

static void *sweeper_main(void *p)
{
    vb_worker *w = p;
    while (!w->bg_stop) {
        nap(w->cfg->temp_sweep_interval_s * 1000, &w->bg_stop);
        vb_error err;
        vb_error_clear(&err);
        if (!w->bg_stop && sweep_temp(w->cfg, &err) != VB_OK)
            VB_WARN("temp sweep: %s", err.msg);
    }
    return NULL;
}

/* ---- a slot: one run ---- */

/* Retries fn-style Redis calls while Redis is unreachable, up to 2 × lease. */
static int redis_retry(slot *s, vb_err rc, long long t0)
{
    if (rc != VB_ERR_REDIS || s->cancel)
        return 0;
    if (vb__mono_ms() - t0 > 2LL * s->w->cfg->lease_ms)
        return 0;
    sleep_ms(500);
    return 1;
}

static vb_err hook_stage(void *ctx, vb_stage stage, const char *batch_ids, vb_error *err)
{
    slot *s = ctx;
    snprintf(s->batch_ids, sizeof s->batch_ids, "%s", batch_ids ? batch_ids : "");
    if (s->cancel)
        return vb_error_set(err, VB_ERR_CANCELLED, "run stopped");
    VB_INFO("stage %s%s%s", vb_stage_name(stage), s->batch_ids[0] ? " batches=" : "",
            s->batch_ids);
    if (stage != VB_STAGE_UPLOADING)
        return VB_OK;
    long long prev = 0, t0 = vb__mono_ms();
    vb_err rc;
    vb_error e;
    do {
        vb_error_clear(&e);
        rc = vb_store_mark_upload_started(s->store, s->job->msg.run_id, s->job->token, &prev, &e);
    } while (redis_retry(s, rc, t0));
    if (rc != VB_OK) {
        if (rc == VB_ERR_CANCELLED)
            s->cancel = 1;
        return vb_error_set(err, rc, "%s", e.msg);
    }
    s->check_platform = prev != 0;
    s->prev_upload_at = prev;
    if (prev)
        VB_INFO("an earlier attempt started an upload; the platform is asked first");
    return VB_OK;
}

static vb_err hook_heartbeat(void *ctx, vb_error *err)
{
    slot *s = ctx;
    if (s->cancel)
        return vb_error_set(err, VB_ERR_CANCELLED,
                            s->shutdown ? "worker shutting down" : "lock lost");
    return VB_OK;
}

/* An earlier attempt recorded an upload start: its request may still be in
 * flight until the upload_until its gate recorded (without one — a record
 * of an older version — until its start plus our own upload timeout). Waits
 * for that moment, lock held, so the platform's answer is final. */
static vb_err wait_earlier_upload(slot *s, vb_error *err)
{
    vb_run_state st;
    memset(&st, 0, sizeof st);
    vb_error e;
    long long t0 = vb__mono_ms();
    vb_err rc;
    do {
        vb_error_clear(&e);
        rc = vb_store_get(s->store, s->job->msg.run_id, &st, &e);
    } while (redis_retry(s, rc, t0));
    if (rc != VB_OK)
        return vb_error_set(err, rc, "%s", e.msg);
    long long until = st.upload_until;
    vb_run_state_free(&st);
    if (until == 0)
        until = s->prev_upload_at + s->cfg->upload_timeout_s * 1000LL + UPLOAD_SKEW_MS;
    long long left = until - vb_store_now_ms();
    if (left <= 0)
        return VB_OK;
    VB_INFO("an earlier attempt's upload may be in flight for %lld ms more: waiting before "
            "asking the platform", left);
    while (!s->cancel && vb_store_now_ms() < until)
        sleep_ms(100);
    if (s->cancel)
        return vb_error_set(err, VB_ERR_CANCELLED, s->shutdown ? "worker shutting down"
                                                                : "lock lost");
    return VB_OK;
}

static vb_err hook_before_upload(void *ctx, int *skip, vb_error *err)
{
    slot *s = ctx;
    *skip = 0;
    if (!s->check_platform)
        return VB_OK;
    vb_err rc = wait_earlier_upload(s, err);
    if (rc != VB_OK)
        return rc;
    int unprocessed = 1;
    rc = vb_platform_run_is_unprocessed(s->http, s->cfg, s->job->msg.run_id, &s->cancel,
                                        &unprocessed, err);
    if (rc != VB_OK)
        return rc;
    if (!unprocessed) {
        VB_INFO("the platform already has the run as processed: upload skipped");
        *skip = 1;
    }
    return VB_OK;
}

/* The last moment before a report upload request goes on the wire (the
 * HTTP pre-request hook, once per attempt): the lock must still be ours; the
 * lease is extended to a full lease and the attempt's deadline recorded
 * (vb_store_upload_gate). Lock lost: nothing is sent, the run stops. */
static vb_err hook_before_send(void *ctx, vb_error *err)
{
    slot *s = ctx;
    if (s->cancel)
        return vb_error_set(err, VB_ERR_CANCELLED, s->shutdown ? "worker shutting down"
                                                                : "lock lost");
    long long until = vb_store_now_ms() + s->cfg->upload_timeout_s * 1000LL + UPLOAD_SKEW_MS;
    long long t0 = vb__mono_ms();
    vb_err rc;
    vb_error e;
    do {
        vb_error_clear(&e);
        rc = vb_store_upload_gate(s->store, s->job->msg.run_id, s->job->token,
                                  s->w->cfg->lease_ms, until, &e);
    } while (redis_retry(s, rc, t0));
    if (rc == VB_ERR_CANCELLED) {
        s->cancel = 1;
        VB_WARN("report upload not sent: the lock was lost");
    }
    return rc == VB_OK ? VB_OK : vb_error_set(err, rc, "%s", e.msg);
}

/* Final state under the lock, retried while Redis is away. */
static vb_err finish_state(slot *s, vb_run_status st, const char *last_error)
{
    long long t0 = vb__mono_ms();
    vb_err rc;
    vb_error e;
    do {
        vb_error_clear(&e);
        rc = vb_store_set_state(s->store, s->job->msg.run_id, s->job->token, st, last_error,
                                s->batch_ids, &e);
    } while (redis_retry(s, rc, t0));
    if (rc != VB_OK)
        VB_ERROR("recording state %s failed: %s", vb_run_status_name(st), e.msg);
    return rc;
}

/* The run from the message's sealed copy into s->run (1), or 0 — s->run
 * empty, why logged — when the platform must be asked (run_source.h). */
static int open_sealed_run(slot *s, const job *j, const vb_config *cfg)
{
    vb_error e;
    vb_error_clear(&e);
    const char *why = vb_worker_run_from_message(s->w->have_seal_key ? s->w->seal_key : NULL,
                                                 &j->msg, cfg, s->store, &s->run, &e);
    if (why)
        VB_INFO("looking the run up on the platform: %s", why);
    return why == NULL;
}

/* The platform lookup into s->run; *done = 1 when the run is not listed and
 * an earlier attempt's upload evidently landed (recorded as uploaded). */
static vb_err lookup_run(slot *s, job *j, const vb_config *cfg, int *done, vb_error *err)
{
    vb_err rc = vb_worker_run_lookup(s->http, s->store, cfg, j->msg.run_id, &s->cancel, &s->run,
                                     done, err);
    if (rc == VB_OK && *done) {
        VB_INFO("run is no longer listed as unprocessed: an earlier attempt's upload "
                "reached the platform");
        finish_state(s, VB_RUN_UPLOADED, "already processed on the platform");
    }
    return rc;
}

static vb_outcome process_run(slot *s, job *j)
{
    vb_worker *w = s->w;
    const vb_config *cfg = j->run_cfg ? j->run_cfg : w->cfg;
    s->cfg = cfg;
    vb_error err;
    vb_error_clear(&err);
    s->batch_ids[0] = '\0';
    s->check_platform = 0;
    s->prev_upload_at = 0;
    memset(&s->run, 0, sizeof s->run);
    memset(&s->phases, 0, sizeof s->phases);
    s->phases.claim = j->claim_s;
    long long t_open = vb__mono_ms();

    /* The message's sealed run costs no platform request; the lookup pages
     * the platform's list. */
    int sealed = open_sealed_run(s, j, cfg), done = 0;
    const char *source[] = {sealed ? "sealed" : "lookup"};
    vb_metric_inc(w->m.sources, source);
    vb_err rc = sealed ? VB_OK : lookup_run(s, j, cfg, &done, &err);
    s->phases.open = (double)(vb__mono_ms() - t_open) / 1000.0;
    if (done)
        return VB_OUT_SKIPPED;
    vb_run_result res;
    memset(&res, 0, sizeof res);
    if (rc == VB_OK) {
        vb_pipeline_hooks hooks = {.ctx = s,
                                   .on_stage = hook_stage,
                                   .heartbeat = hook_heartbeat,
                                   .before_upload = hook_before_upload,
                                   .before_send = hook_before_send,
                                   .urls_may_expire = sealed};
        rc = vb_pipeline_process(s->http, cfg, &s->run, &hooks, &s->cancel, &res, &err);
        if (rc != VB_OK && res.documents_denied && !s->cancel) {
            /* The sealed URLs have expired (or the blob moved): fresh ones
             * from the platform, and the run once more. */
            VB_INFO("a document URL of the sealed run was refused (HTTP %ld): looking the run "
                    "up on the platform", err.http_status);
            vb_run_free(&s->run);
            memset(&s->run, 0, sizeof s->run);
            vb_error_clear(&err);
            const char *refetch[] = {"refetch"};
            vb_metric_inc(w->m.sources, refetch);
            rc = lookup_run(s, j, cfg, &done, &err);
            if (done)
                return VB_OUT_SKIPPED;
            hooks.urls_may_expire = 0;
            if (rc == VB_OK)
                rc = vb_pipeline_process(s->http, cfg, &s->run, &hooks, &s->cancel, &res, &err);
        }
        if (res.batch_ids[0])
            snprintf(s->batch_ids, sizeof s->batch_ids, "%s", res.batch_ids);
        s->phases.pipeline = res.phases;
    }
    vb_run_free(&s->run);

    if (rc == VB_OK) {
        const char *note = res.upload_skipped ? "upload skipped: already processed on the "
                                                "platform" : "";
        long long t_state = vb__mono_ms();
        finish_state(s, VB_RUN_UPLOADED, note);
        s->phases.record = (double)(vb__mono_ms() - t_state) / 1000.0;
        VB_INFO("run uploaded: %zu images, %zu batches (%s), report %lld bytes, %.1f s",
                res.images, res.batches, res.batch_ids, res.report_bytes, res.seconds);
        return res.upload_skipped ? VB_OUT_SKIPPED : VB_OUT_UPLOADED;
    }
    if (s->cancel && s->shutdown) {
        vb_error e;
        vb_error_clear(&e);
        if (vb_store_hand_back(s->store, j->msg.run_id, j->token, HANDED_BACK_REASON, &e) ==
            VB_OK) {
            VB_INFO("run handed back (attempt not counted): the worker is shutting down");
            j->token[0] = '\0'; /* the lock is gone with it */
        } else {
            VB_WARN("handing the run back failed (its lease will expire): %s", e.msg);
        }
        return VB_OUT_HANDED_BACK;
    }
    if (rc == VB_ERR_CANCELLED && s->cancel) {
        VB_WARN("run stopped: the lock was lost; the worker holding it now owns the run");
        j->token[0] = '\0';
        return VB_OUT_LEASE_LOST;
    }
    if (rc == VB_ERR_CONFLICT) {
        VB_INFO("run is already uploaded: %s", err.msg);
        return VB_OUT_SKIPPED;
    }
    char why[VB_STORE_LAST_ERROR_MAX];
    snprintf(why, sizeof why, "%s", err.msg[0] ? err.msg : vb_strerror(rc));
    vb_redact_text(why);
    vb_failure_verdict verdict = vb_worker_failure_verdict(&err, j->attempt, cfg->max_attempts);
    int permanent = verdict == VB_FAIL_DEAD_PERMANENT;
    if (verdict != VB_FAIL_RETRY) {
        VB_ERROR("run is dead (%s, attempt %ld of %ld): %s",
                 permanent ? "permanent error" : "attempts exhausted", j->attempt,
                 cfg->max_attempts, why);
        finish_state(s, VB_RUN_DEAD, why);
        char reason[VB_STORE_LAST_ERROR_MAX + 64];
        snprintf(reason, sizeof reason, "%s: %s",
                 permanent ? "permanent error" : "attempts exhausted", why);
        vb_error e;
        vb_error_clear(&e);
        if (dead_letter(w, j->km->key, j->km->value, j->km->len, reason, &e) != VB_OK)
            VB_ERROR("dead run could not be dead-lettered: %s", e.msg);
        return VB_OUT_DEAD;
    }
    VB_WARN("run failed (attempt %ld of %ld, retried later): %s", j->attempt, cfg->max_attempts,
            why);
    finish_state(s, VB_RUN_FAILED, why);
    return VB_OUT_FAILED;
}

/* Tells the cron execution that queued the run (if any) how it ended. */
static void report_to_execution(vb_worker *w, const job *j, int ok, const char *batch_ids)
{
    const char *eid = j->msg.execution_id;
    if (!eid || !*eid || !w->jobs)
        return;
    vb_error e;
    vb_error_clear(&e);
    vb_err rc = vb_jobs_exec_run_done(w->jobs, eid, j->msg.run_id,
                                      ok ? VB_EXEC_RUN_OK : VB_EXEC_RUN_FAILED, batch_ids, &e);
    if (rc != VB_OK && rc != VB_ERR_NOT_FOUND)
        VB_WARN("execution %s: could not record the run's outcome: %s", eid, e.msg);
}

static void *slot_main(void *p)
{
    slot *s = p;
    vb_worker *w = s->w;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (!s->job && !w->quit)
            pthread_cond_wait(&w->cv, &w->mu);
        job *j = s->job;
        pthread_mutex_unlock(&w->mu);
        if (!j)
            break;
        vb_log_set_run(j->msg.run_id);
        long long t0 = vb__mono_ms();
        vb_metric_add(w->m.inflight, NULL, 1);
        if (j->attempt > 1)
            vb_metric_inc(w->m.retries, NULL);
        VB_INFO("run started: attempt %ld, slot %d, from %s[%d]@%lld", j->attempt, s->idx,
                j->km->topic, j->km->partition, j->km->offset);
        vb_outcome o = process_run(s, j);
        long long t_record = vb__mono_ms();
        if (o == VB_OUT_UPLOADED || o == VB_OUT_SKIPPED || o == VB_OUT_DEAD)
            report_to_execution(w, j, o != VB_OUT_DEAD, s->batch_ids);
        if (j->token[0]) {
            vb_error e;
            vb_error_clear(&e);
            vb_err rc = vb_store_lock_release(s->store, j->msg.run_id, j->token, &e);
            if (rc != VB_OK && rc != VB_ERR_CANCELLED)
                VB_WARN("releasing the lock failed (it expires by itself): %s", e.msg);
        }
        long long t_end = vb__mono_ms();
        double secs = (double)(t_end - t0) / 1000.0;
        vb_worker_metrics_observe_run(&w->m, o, secs);
        if (o == VB_OUT_UPLOADED) {
            /* record: from the pipeline's end (final state included) to here */
            s->phases.record += (double)(t_end - t_record) / 1000.0;
            vb_worker_metrics_observe_phases(&w->m, &s->phases);
        }
        vb_metric_add(w->m.inflight, NULL, -1);
        VB_INFO("run finished: outcome=%s %.1f s", vb_outcome_name(o), secs);
        vb_log_set_run(NULL);
        pthread_mutex_lock(&w->mu);
        s->job = NULL;
        s->token[0] = '\0';
        s->run_id[0] = '\0';
        s->cancel = 0;
        s->shutdown = 0;
        pthread_mutex_unlock(&w->mu);
        vb_kafka_consumer_wake(w->kc); /* the next message is handed over now */
        job_free(j);
    }
    return NULL;
}

/* ---- the poll path ---- */

typedef enum { STEP_DONE, STEP_RETRY, STEP_HANDED } step;

static slot *free_slot(vb_worker *w)
{
    for (int i = 0; i < w->nslots; i++)
        if (!w->slots[i].job)
            return &w->slots[i];
    return NULL;
}

static int busy_slots(vb_worker *w)
{
    int n = 0;
    pthread_mutex_lock(&w->mu);
    for (int i = 0; i < w->nslots; i++)
        n += w->slots[i].job != NULL;
    pthread_mutex_unlock(&w->mu);
    return n;
}

/* Stores the message's offset for the next batch commit (within COMMIT_MS);
 * a failure only means the message is delivered again. */
static void commit_message(vb_worker *w, const vb_kafka_message *km)
{
    vb_error err;
    vb_error_clear(&err);
    if (vb_kafka_consumer_store(w->kc, km, &err) != VB_OK) {
        VB_WARN("%s", err.msg);
        return;
    }
    if (!w->commit_at)
        w->commit_at = vb__mono_ms() + COMMIT_MS;
}

/* Sends the offsets stored since the last commit when their batch is due. */
static void commit_due(vb_worker *w)
{
    if (!w->commit_at || vb__mono_ms() < w->commit_at)
        return;
    w->commit_at = 0;
    vb_error err;
    vb_error_clear(&err);
    if (vb_kafka_consumer_commit_async(w->kc, &err) != VB_OK)
        VB_WARN("%s (offsets stay stored for the next commit)", err.msg);
}

/* The platform settings of a cron job's run: the worker's settings with the
 * job's URLs, organization and (decrypted) API key. */
static void resolve_job_credentials(vb_worker *w, job *j)
{
    const vb_run_msg *m = &j->msg;
    vb_job jb;
    memset(&jb, 0, sizeof jb);
    vb_error e;
    vb_error_clear(&e);
    vb_config *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(j->reason, sizeof j->reason, "credentials unavailable: out of memory");
        return;
    }
    if (vb_jobs_get(w->jobs, m->job_id, &jb, &e) != VB_OK) {
        snprintf(j->reason, sizeof j->reason, "credentials unavailable: cron job %.128s: %.600s",
                 m->job_id, e.msg);
        goto done;
    }
    vb_err rc = vb_jobs_platform_config(w->jobs, &jb, w->cfg, c, &e);
    if (rc == VB_ERR_NOMEM) {
        snprintf(j->reason, sizeof j->reason, "credentials unavailable: out of memory");
        goto done;
    }
    if (rc != VB_OK) {
        snprintf(j->reason, sizeof j->reason,
                 "credentials unavailable: the API key of cron job %.128s: %.600s", m->job_id,
                 e.msg);
        goto done;
    }
    if (m->organization_id && !vb_id_equal(m->organization_id, jb.organization_id)) {
        snprintf(j->reason, sizeof j->reason,
                 "credentials unavailable: run of organization %.128s, cron job %.128s serves "
                 "%.128s", m->organization_id, m->job_id, jb.organization_id);
        vb_config_free(c);
        goto done;
    }
    j->run_cfg = c;
    c = NULL;
done:
    free(c);
    vb_job_free(&jb);
}

/* Why a decoded message cannot be processed here, or "" when it can. */
static void check_processable(vb_worker *w, job *j)
{
    const vb_run_msg *m = &j->msg;
    if (strcmp(m->cred_source, "job") == 0)
        resolve_job_credentials(w, j);
    else if (!w->platform_ok)
        snprintf(j->reason, sizeof j->reason, "credentials unavailable: %s", w->platform_why);
    else if (m->organization_id && !vb_id_equal(m->organization_id, w->cfg->organization_id))
        snprintf(j->reason, sizeof j->reason,
                 "credentials unavailable: run of organization %.128s, this worker serves %.128s",
                 m->organization_id, w->cfg->organization_id);
}

/* A Redis call of the poll path failed. Only a failure that can pass (Redis
 * unreachable, a lock that expired meanwhile) keeps the message for a retry;
 * anything else is this message's own problem: it is dead-lettered with the
 * reason, so it is committed only once it is safely elsewhere. */
static step refuse(vb_worker *w, job *j, const char *what, vb_err rc, const vb_error *why)
{
    const char *id = j->msg.run_id;
    if (rc == VB_ERR_REDIS || rc == VB_ERR_CANCELLED) {
        VB_WARN("run %s: %s (retrying): %s", id, what, why->msg);
        return STEP_RETRY;
    }
    snprintf(j->reason, sizeof j->reason, "%s: %.1000s", what, why->msg);
    VB_WARN("run %s: %s", id, j->reason);
    vb_error err;
    vb_error_clear(&err);
    if (dead_letter(w, j->km->key, j->km->value, j->km->len, j->reason, &err) != VB_OK) {
        VB_WARN("dead-lettering failed (retrying): %s", err.msg);
        return STEP_RETRY;
    }
    return STEP_DONE;
}

static step handle(vb_worker *w, job *j)
{
    const vb_config *cfg = w->cfg;
    vb_error err;
    vb_error_clear(&err);
    const vb_kafka_message *km = j->km;
    if (!j->decoded && !j->reason[0]) {
        if (vb_run_msg_decode(km->value, km->len, &j->msg, &err) == VB_OK) {
            j->decoded = 1;
            check_processable(w, j);
        } else {
            snprintf(j->reason, sizeof j->reason, "%s", err.msg);
        }
    }
    if (j->reason[0]) {
        VB_WARN("message %s[%d]@%lld cannot be processed: %s", km->topic, km->partition,
                km->offset, j->reason);
        vb_error_clear(&err);
        if (dead_letter(w, km->key, km->value, km->len, j->reason, &err) != VB_OK) {
            VB_WARN("dead-lettering failed (retrying): %s", err.msg);
            return STEP_RETRY;
        }
        return STEP_DONE;
    }
    const char *id = j->msg.run_id;
    long long t_claim = vb__mono_ms();
    vb_err rc = vb_store_lock_acquire(w->store, id, cfg->worker_id, cfg->lease_ms, j->token,
                                      &err);
    if (rc == VB_ERR_CONFLICT) {
        VB_INFO("run %s is locked by another worker: message skipped", id);
        return STEP_DONE;
    }
    if (rc != VB_OK)
        return refuse(w, j, "cannot take the lock", rc, &err);
    vb_error_clear(&err);
    rc = vb_store_begin_attempt(w->store, id, j->token, cfg->worker_id, cfg->lease_ms,
                                j->msg.attempt, &j->attempt, &err);
    if (rc != VB_OK) {
        vb_error e;
        vb_error_clear(&e);
        (void)vb_store_lock_release(w->store, id, j->token, &e);
        j->token[0] = '\0';
        if (rc == VB_ERR_CONFLICT) {
            VB_INFO("run %s: message skipped (%s)", id, err.msg);
            return STEP_DONE;
        }
        return refuse(w, j, "cannot start", rc, &err);
    }
    vb_error_clear(&err);
    if (vb_store_set_origin(w->store, id, j->token, j->msg.cred_source, j->msg.job_id,
                            j->msg.organization_id ? j->msg.organization_id
                                                   : cfg->organization_id,
                            j->msg.has_run ? j->msg.run.run_code : NULL, &err) != VB_OK)
        VB_WARN("run %s: origin not recorded (a republished message will use defaults): %s", id,
                err.msg);
    j->claim_s = (double)(vb__mono_ms() - t_claim) / 1000.0;
    /* The run's state is durable: the message may be forgotten. */
    commit_message(w, km);
    pthread_mutex_lock(&w->mu);
    slot *s = free_slot(w);
    s->job = j;
    snprintf(s->run_id, sizeof s->run_id, "%s", id);
    memcpy(s->token, j->token, sizeof s->token);
    s->cancel = 0;
    s->shutdown = 0;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return STEP_HANDED;
}

static void set_paused(vb_worker *w, int pause)
{
    if (vb_kafka_consumer_is_paused(w->kc) == pause)
        return;
    vb_error err;
    vb_error_clear(&err);
    vb_err rc = pause ? vb_kafka_consumer_pause(w->kc, &err) : vb_kafka_consumer_resume(w->kc,
                                                                                      &err);
    if (rc != VB_OK)
        VB_WARN("%s", err.msg);
    else
        VB_DEBUG("partitions %s", pause ? "paused" : "resumed");
}

/* What a queued message holds in memory, for the queue's byte bound. */
static size_t msg_bytes(const vb_kafka_message *km)
{
    return km->len + km->key_len;
}

static void enqueue(vb_worker *w, vb_kafka_message *km)
{
    job *j = calloc(1, sizeof *j);
    if (!j) {
        VB_ERROR("out of memory: message %s[%d]@%lld left for redelivery", km->topic,
                 km->partition, km->offset);
        vb_kafka_message_free(km);
        return;
    }
    j->km = km;
    if (w->tail)
        w->tail->next = j;
    else
        w->head = j;
    w->tail = j;
    w->queued++;
    w->queued_bytes += msg_bytes(km);
}

static void drop_queue(vb_worker *w)
{
    while (w->head) {
        job *j = w->head;
        w->head = j->next;
        job_free(j);
    }
    w->tail = NULL;
    w->queued = 0;
    w->queued_bytes = 0;
}

/* on_revoke (inside the poll): queued messages of a partition that goes are
 * dropped unhandled — uncommitted, they are delivered to its next owner. */
static void drop_partition(void *ctx, const char *topic, int partition)
{
    vb_worker *w = ctx;
    int dropped = 0;
    job **pp = &w->head;
    w->tail = NULL;
    while (*pp) {
        job *j = *pp;
        if (j->km->partition == partition && strcmp(j->km->topic, topic) == 0) {
            if (j == w->head)
                w->retry_at = 0;
            *pp = j->next;
            w->queued_bytes -= msg_bytes(j->km);
            job_free(j);
            dropped++;
        } else {
            w->tail = j;
            pp = &j->next;
        }
    }
    w->queued -= dropped;
    if (dropped)
        VB_INFO("%d queued message(s) of %s[%d] dropped: the partition went to another worker",
                dropped, topic, partition);
}

/* Works the queue head while slots are free. */
static void work_queue(vb_worker *w)
{
    while (w->head && vb__mono_ms() >= w->retry_at) {
        pthread_mutex_lock(&w->mu);
        int have_slot = free_slot(w) != NULL;
        pthread_mutex_unlock(&w->mu);
        if (!have_slot)
            return;
        job *j = w->head;
        step st = handle(w, j);
        if (st == STEP_RETRY) {
            w->retry_at = vb__mono_ms() + RETRY_MS;
            return;
        }
        w->head = j->next;
        if (!w->head)
            w->tail = NULL;
        j->next = NULL;
        w->queued--;
        w->queued_bytes -= msg_bytes(j->km);
        if (st == STEP_DONE) {
            commit_message(w, j->km);
            job_free(j);
        }
    }
}

static void cancel_all(vb_worker *w)
{
    pthread_mutex_lock(&w->mu);
    for (int i = 0; i < w->nslots; i++) {
        if (w->slots[i].job) {
            w->slots[i].shutdown = 1;
            w->slots[i].cancel = 1;
        }
    }
    pthread_mutex_unlock(&w->mu);
}

vb_err vb_worker_run(vb_worker *w, const atomic_int *stop, vb_error *err)
{
    const vb_config *cfg = w->cfg;
    vb_err rc = VB_OK;
    int stopping = 0, cancelled = 0;
    long long stop_at = 0, cancel_at = 0;
    VB_INFO("worker %s: consuming %s as group %s, %d slot(s), lease %ld ms", cfg->worker_id,
            cfg->topic, cfg->group_id, w->nslots, cfg->lease_ms);
    for (;;) {
        atomic_store(&w->poll_alive_ms, vb__mono_ms());
        if (*stop && !stopping) {
            stopping = 1;
            stop_at = vb__mono_ms();
            int busy = busy_slots(w);
            VB_INFO("stopping: intake closed; waiting up to %ld s for %d run(s) in flight",
                    cfg->shutdown_grace_s, busy);
            set_paused(w, 1);
            drop_queue(w); /* uncommitted: delivered again to another member */
        }
        if (stopping) {
            int busy = busy_slots(w);
            if (busy == 0)
                break;
            long long now = vb__mono_ms();
            if (!cancelled && now - stop_at >= cfg->shutdown_grace_s * 1000) {
                VB_WARN("grace period over: handing back %d run(s) in flight", busy);
                cancel_all(w);
                cancelled = 1;
                cancel_at = now;
            }
            if (cancelled && now - cancel_at > CANCEL_WAIT_MS) {
                VB_ERROR("%d run(s) did not stop; leaving them to lease expiry", busy);
                break;
            }
        } else if (w->queued >= w->queue_max || w->queued_bytes >= QUEUE_MAX_BYTES) {
            /* `prefetch` rounds of every slot are in hand (or QUEUE_MAX_BYTES
             * of messages, or the head waits for Redis/Kafka to come back):
             * stop fetching. The queued
             * messages are uncommitted: if this worker dies they are
             * delivered again elsewhere. */
            set_paused(w, 1);
        } else if (w->queued <= w->queue_resume && w->queued_bytes <= QUEUE_MAX_BYTES / 2) {
            /* Half of that left: fetch again, while they run. A resume
             * refetches from the last message handed over (librdkafka drops
             * what it fetched while paused), which takes a round trip or
             * more; half a queue keeps short runs fed meanwhile. */
            set_paused(w, 0);
        }
        vb_kafka_message *km = NULL;
        vb_error_clear(err);
        if (vb_kafka_consumer_poll(w->kc, POLL_MS, &km, err) != VB_OK) {
            VB_ERROR("%s", err->msg);
            rc = err->code;
            break;
        }
        if (km) {
            if (stopping)
                vb_kafka_message_free(km); /* not committed: redelivered elsewhere */
            else
                enqueue(w, km);
        }
        if (!stopping)
            work_queue(w);
        vb_metric_set(w->m.queued, NULL, w->queued);
        commit_due(w);
    }
    drop_queue(w);
    if (rc != VB_OK) {
        /* A fatal consumer error: hand back what runs here, as at shutdown. */
        cancel_all(w);
        for (int t = 0; t < CANCEL_WAIT_MS / 100 && busy_slots(w) > 0; t++)
            sleep_ms(100);
    }
    VB_INFO("worker stopped");
    return rc;
}

/* ---- lifecycle ---- */

/* The heartbeat's runs in flight: the busy slots. */
static int beat_in_flight(void *ctx)
{
    return busy_slots(ctx);
}

/* /healthz: the poll loop turned within stale_ms. */
static int poll_loop_alive(void *ctx, char *why, size_t whylen)
{
    vb_worker *w = ctx;
    if (vb__mono_ms() - atomic_load(&w->poll_alive_ms) <= w->stale_ms)
        return 1;
    snprintf(why, whylen, "poll loop stalled");
    return 0;
}

vb_err vb_worker_new(const vb_config *cfg, vb_worker **out, vb_error *err)
{
    *out = NULL;
    vb_err rc;
    vb_worker *w = calloc(1, sizeof *w);
    if (!w)
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    w->cfg = cfg;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    atomic_store(&w->poll_alive_ms, vb__mono_ms());
    if ((rc = vb_worker_metrics_init(&w->m, err)) != VB_OK)
        goto fail;
    vb_error perr;
    vb_error_clear(&perr);
    w->platform_ok = vb_config_require_platform(cfg, &perr) == VB_OK;
    if (!w->platform_ok) {
        snprintf(w->platform_why, sizeof w->platform_why, "%s", perr.msg);
        VB_INFO("no platform settings of its own: cron-job runs are processed with their "
                "job's credentials, runs from the platform poller will be dead-lettered (%s)",
                perr.msg);
    }
    /* What a killed predecessor left in temp_dir goes first; an unsafe
     * temp_dir stops the worker here rather than failing every run. */
    if ((rc = sweep_temp(cfg, err)) != VB_OK)
        goto fail;
    w->nslots = (int)cfg->concurrency;
    w->queue_max = (int)cfg->prefetch * w->nslots;
    w->queue_resume = (int)(cfg->prefetch / 2) * w->nslots;
    w->slots = calloc((size_t)w->nslots, sizeof *w->slots);
    if (!w->slots) {
        rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((rc = vb_store_new(cfg->redis_url, NULL, &w->store, err)) != VB_OK)
        goto fail;
    VB_INFO("redis %s", vb_store_describe(w->store));
    {
        /* Cron runs: the job store gives their credentials (opened with the
         * shared secret key) and takes their outcomes for the execution. */
        unsigned char key[32];
        int have_key = cfg->secret_key && *cfg->secret_key;
        if (have_key && (rc = vb_crypto_key_parse(cfg->secret_key, key, err)) != VB_OK)
            goto fail;
        vb_jobs_opts jo = {.redis_url = cfg->redis_url, .secret_key = have_key ? key : NULL};
        if (have_key) { /* the same key opens the runs sealed into messages */
            memcpy(w->seal_key, key, sizeof w->seal_key);
            w->have_seal_key = 1;
        }
        rc = vb_jobs_new(&jo, &w->jobs, err);
        vb_crypto_wipe(key, sizeof key);
        if (rc != VB_OK)
            goto fail;
        if (!have_key)
            VB_WARN("no secret key (VISIONBATCH_SECRET_KEY): runs of cron jobs cannot be "
                    "processed by this worker and go to the dead-letter topic");
    }
    for (int i = 0; i < w->nslots; i++) {
        slot *s = &w->slots[i];
        s->w = w;
        s->idx = i;
        if (!(s->http = vb_http_new())) {
            rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
            goto fail;
        }
        if ((rc = vb_store_new(cfg->redis_url, NULL, &s->store, err)) != VB_OK)
            goto fail;
    }
    if ((rc = vb_kafka_producer_new(cfg->kafka_brokers, cfg->kafka_properties, cfg->worker_id,
                                     &w->kp, err)) != VB_OK)
        goto fail;
    if ((rc = vb_kafka_consumer_new(cfg->kafka_brokers, cfg->kafka_properties, cfg->group_id,
                                    cfg->worker_id, cfg->topic, &w->kc, err)) != VB_OK)
        goto fail;
    vb_kafka_consumer_on_revoke(w->kc, drop_partition, w);
    w->stale_ms = cfg->lease_ms > 10000 ? cfg->lease_ms : 10000;
    vb_endpoint_opts eo = {.listen = cfg->metrics_listen, .name = "metrics and health",
                           .metrics = w->m.reg, .live = poll_loop_alive, .check_ctx = w,
                           .limits = vb_endpoint_limits_of(cfg)};
    if ((rc = vb_endpoint_start(&eo, &w->ep, err)) != VB_OK)
        goto fail;
    for (int i = 0; i < w->nslots; i++) {
        if (pthread_create(&w->slots[i].th, NULL, slot_main, &w->slots[i]) != 0) {
            rc = vb_error_set(err, VB_ERR_NOMEM, "cannot start slot threads");
            goto fail;
        }
        w->slots[i].started = 1;
    }
    if (pthread_create(&w->renewer, NULL, renewer_main, w) != 0) {
        rc = vb_error_set(err, VB_ERR_NOMEM, "cannot start the lease renewer");
        goto fail;
    }
    w->renewer_started = 1;
    if (pthread_create(&w->reaper, NULL, reaper_main, w) != 0) {
        rc = vb_error_set(err, VB_ERR_NOMEM, "cannot start the reaper");
        goto fail;
    }
    w->reaper_started = 1;
    if (cfg->temp_sweep_interval_s > 0) {
        if (pthread_create(&w->sweeper, NULL, sweeper_main, w) != 0) {
            rc = vb_error_set(err, VB_ERR_NOMEM, "cannot start the temp sweeper");
            goto fail;
        }
        w->sweeper_started = 1;
    }
    if ((rc = vb_worker_beats_start(cfg, beat_in_flight, w, &w->beats, err)) != VB_OK)
        goto fail;
    *out = w;
    return VB_OK;
fail:
    vb_worker_free(w);
    return rc;
}

void vb_worker_free(vb_worker *w)
{
    if (!w)
        return;
    /* The heartbeat goes first (a stopping worker takes no new runs), then
     * slots (they may still be handing runs back), then background threads,
     * then the consumer leaves the group. */
    vb_worker_beats_stop(w->beats);
    pthread_mutex_lock(&w->mu);
    w->quit = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    for (int i = 0; w->slots && i < w->nslots; i++) {
        if (w->slots[i].started)
            pthread_join(w->slots[i].th, NULL);
    }
    w->bg_stop = 1;
    if (w->renewer_started)
        pthread_join(w->renewer, NULL);
    if (w->reaper_started)
        pthread_join(w->reaper, NULL);
    if (w->sweeper_started)
        pthread_join(w->sweeper, NULL);
    vb_endpoint_stop(w->ep);
    vb_kafka_consumer_close(w->kc);
    vb_kafka_producer_free(w->kp, 5000);
    for (int i = 0; w->slots && i < w->nslots; i++) {
        vb_http_free(w->slots[i].http);
        vb_store_free(w->slots[i].store);
    }
    free(w->slots);
    drop_queue(w);
    vb_store_free(w->store);
    vb_jobs_free(w->jobs);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    vb_worker_metrics_free(&w->m);
    vb_crypto_wipe(w->seal_key, sizeof w->seal_key);
    free(w);
}
