/*
 * poller.c — one producer pass (see poller.h): platform → Redis claim →
 * Kafka, with the counters and the one summary line per pass.
 *
 * Order per run, and why:
 *   1. claim in Redis (atomic across producers): only the producer that gets
 *      PUBLISH sends the run, so concurrent producers and overlapping cron
 *      executions publish each run once per lease;
 *   2. read the run's state back for the attempt number (and, for DEAD,
 *      whether this claim is the one that made it dead);
 *   3. publish and wait for the broker's acknowledgement (acks=all);
 *   4. if Kafka failed: release the claim (store_requeue.h) so the run is
 *      not stranded as "queued" for the whole lease, and stop the pass —
 *      Kafka is evidently unwell and claiming more runs only to release them
 *      again helps no one.
 * A Redis failure also stops the pass. Runs not reached are simply left for
 * the next pass; nothing was changed for them. A failure that is the run's
 * own does not stop the pass (after_failure): Redis still answers but
 * refuses that run's key (e.g. it holds another type), or Kafka refuses that
 * run's message as too large; it is counted and the next run goes on.
 *
 * Threading: a context is used by one pass at a time (ctx->mu); the store
 * and the HTTP handle inside are therefore never shared concurrently. The
 * Kafka producer is thread-safe by itself (each publish waits for its own
 * delivery report, see kafka_producer.c), so clones share their base's one
 * producer: a process runs one librdkafka instance however many passes run
 * at once.
 */
#include "poller.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "visionbatch/crypto.h"
#include "visionbatch/http.h"
#include "visionbatch/kafka.h"
#include "visionbatch/log.h"
#include "visionbatch/message.h"
#include "visionbatch/platform.h"
#include "visionbatch/run.h"
#include "visionbatch/seal.h"
#include "visionbatch/store.h"
#include "visionbatch/store_requeue.h"

#define MAX_LEASE_MS (7L * 24 * 3600 * 1000)
#define KAFKA_CHECK_MS 5000

struct vb_producer_ctx {
    pthread_mutex_t mu;
    vb_kafka_producer *kafka;
    int kafka_borrowed; /* 1: kafka belongs to the context this one was cloned from */
    vb_store *store;
    vb_http *http;
    char *topic;
    char *dlq_topic;
    char *holder_id; /* worker_id: names this producer in the brief release lock */
    long max_attempts;
    long queue_lease_ms;
    const atomic_int *cancel;
    unsigned char seal_key[VB_CRYPTO_KEY_SIZE]; /* secret_key: seals each run into its message */
    int have_seal_key;
    /* Set for the duration of one vb_producer_poll_ex call (under mu). */
    vb_published_fn published;
    void *published_ctx;
};

long vb_producer_queue_lease_ms(const vb_config *svc)
{
    long long a = 10LL * (svc->lease_ms > 0 ? svc->lease_ms : 30000);
    long long b = 2000LL * (svc->poll_interval_s > 0 ? svc->poll_interval_s : 300);
    long long v = a > b ? a : b;
    return v > MAX_LEASE_MS ? MAX_LEASE_MS : (long)v;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* A printable holder id for the release lock: worker_id without spaces. */
static char *holder_from(const char *worker_id)
{
    char *h = strdup(worker_id && *worker_id ? worker_id : "visionbatch-producer");
    if (!h)
        return NULL;
    for (char *c = h; *c; c++)
        if (*c <= ' ' || *c > '~')
            *c = '_';
    if (strlen(h) > 200)
        h[200] = '\0';
    return h;
}

/* vb_producer_ctx_new and vb_producer_ctx_clone: with `kafka` NULL a Kafka
 * producer of its own is connected, else `kafka` is borrowed. */
static vb_err ctx_new(const vb_config *svc, const atomic_int *cancel,
                      vb_kafka_producer *kafka, vb_producer_ctx **out, vb_error *err)
{
    *out = NULL;
    if (!svc || !svc->kafka_brokers || !svc->redis_url || !svc->topic || !svc->dlq_topic)
        return vb_error_set(err, VB_ERR_CONFIG, "producer: kafka_brokers, redis_url, topic and "
                                                "dlq_topic are required");
    vb_producer_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return vb_error_set(err, VB_ERR_NOMEM, "producer: out of memory");
    vb_err rc;
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c);
        return vb_error_set(err, VB_ERR_NOMEM, "producer: cannot create a mutex");
    }
    c->cancel = cancel;
    c->max_attempts = svc->max_attempts > 0 ? svc->max_attempts : 5;
    c->queue_lease_ms = vb_producer_queue_lease_ms(svc);
    if (!(c->topic = dup_or_null(svc->topic)) || !(c->dlq_topic = dup_or_null(svc->dlq_topic)) ||
        !(c->holder_id = holder_from(svc->worker_id)) || !(c->http = vb_http_new())) {
        rc = vb_error_set(err, VB_ERR_NOMEM, "producer: out of memory");
        goto fail;
    }
    if (svc->secret_key && *svc->secret_key) {
        if ((rc = vb_crypto_key_parse(svc->secret_key, c->seal_key, err)) != VB_OK)
            goto fail;
        c->have_seal_key = 1;
    }
    vb_store_opts so = {.client_name = "visionbatch-producer"};
    if ((rc = vb_store_new(svc->redis_url, &so, &c->store, err)) != VB_OK)
        goto fail;
    if (kafka) {
        c->kafka = kafka;
        c->kafka_borrowed = 1;
    } else if ((rc = vb_kafka_producer_new(svc->kafka_brokers, svc->kafka_properties,
                                           "visionbatch-producer", &c->kafka, err)) != VB_OK) {
        goto fail;
    }
    *out = c;
    return VB_OK;
fail:
    vb_producer_ctx_free(c);
    return rc;
}

vb_err vb_producer_ctx_new(const vb_config *svc, const atomic_int *cancel,
                           vb_producer_ctx **out, vb_error *err)
{
    return ctx_new(svc, cancel, NULL, out, err);
}

vb_err vb_producer_ctx_clone(vb_producer_ctx *base, const vb_config *svc, vb_producer_ctx **out,
                             vb_error *err)
{
    *out = NULL;
    if (!base)
        return vb_error_set(err, VB_ERR_INVALID, "producer: no context to clone");
    return ctx_new(svc, base->cancel, base->kafka, out, err);
}

void vb_producer_ctx_free(vb_producer_ctx *ctx)
{
    if (!ctx)
        return;
    if (!ctx->kafka_borrowed)
        vb_kafka_producer_free(ctx->kafka, 10000);
    vb_store_free(ctx->store);
    vb_http_free(ctx->http);
    free(ctx->topic);
    free(ctx->dlq_topic);
    free(ctx->holder_id);
    vb_crypto_wipe(ctx->seal_key, sizeof ctx->seal_key);
    pthread_mutex_destroy(&ctx->mu);
    free(ctx);
}

int vb_producer_kafka_reachable(vb_producer_ctx *ctx, int timeout_ms)
{
    return ctx && vb_kafka_producer_reachable(ctx->kafka, timeout_ms);
}

/* 32 hex digits from the kernel's random source. */
static void make_trace_id(char out[33])
{
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t n = getrandom(b + got, sizeof b - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        got += (size_t)n;
    }
    if (got < sizeof b) { /* practically unreachable; uniqueness is all we need */
        unsigned long long t = (unsigned long long)vb_store_now_ms();
        memcpy(b, &t, sizeof t);
    }
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof b; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[32] = '\0';
}

/* The run sealed for its message (seal.h), or NULL without a secret key or
 * when it cannot be sealed (the worker then asks the platform: logged, not
 * an error). */
static char *seal_for_message(vb_producer_ctx *ctx, const vb_run *run)
{
    char *sealed = NULL;
    vb_error e;
    vb_error_clear(&e);
    if (ctx->have_seal_key && vb_seal_run(ctx->seal_key, run, &sealed, &e) != VB_OK)
        VB_WARN("run not sealed into its message (workers will look it up): %s", e.msg);
    return sealed;
}

/* Encodes and publishes one message; VB_OK once Kafka acknowledged it. A
 * run message (no `reason`) carries the run sealed when the context has a
 * key; if Kafka refuses it as too large, it goes again without. */
static vb_err publish(vb_producer_ctx *ctx, const char *topic, const vb_run *run,
                      const char *job_id, const char *execution_id, const char *trace_id,
                      int attempt, const char *reason, vb_error *err)
{
    char *json = NULL;
    char *sealed = reason ? NULL : seal_for_message(ctx, run);
    vb_err rc = vb_run_msg_encode_ex(run, job_id, execution_id, trace_id, attempt, sealed, &json,
                                     err);
    if (rc != VB_OK) {
        free(sealed);
        return rc;
    }
    char attempt_s[16];
    snprintf(attempt_s, sizeof attempt_s, "%d", attempt);
    vb_kafka_header h[5] = {
        {"vb-schema", "1"},
        {"vb-attempt", attempt_s},
        {"vb-trace-id", trace_id},
        {"vb-source", job_id ? "cron" : "poll"},
        {"vb-reason", reason},
    };
    rc = vb_kafka_produce_sync(ctx->kafka, topic, run->id, json, strlen(json), h,
                               reason ? 5 : 4, 0, err);
    if (rc == VB_ERR_TOO_LARGE && sealed) {
        VB_WARN("message with the sealed run too large for Kafka: sending it without (workers "
                "will look the run up)");
        free(json);
        json = NULL;
        vb_error_clear(err);
        if ((rc = vb_run_msg_encode(run, job_id, execution_id, trace_id, attempt, &json, err)) ==
            VB_OK)
            rc = vb_kafka_produce_sync(ctx->kafka, topic, run->id, json, strlen(json), h, 4, 0,
                                       err);
    }
    free(json);
    free(sealed);
    return rc;
}

typedef enum {
    RUN_OK,     /* published or rightly skipped */
    RUN_FAILED, /* this run failed by itself: the pass goes on */
    RUN_STOP,   /* Kafka or Redis is unwell: the pass ends */
} run_outcome;

/* After a failed step of one run: keeps the pass's first failure in *first
 * and tells whether the failure is the run's own (RUN_FAILED) or the
 * service's (RUN_STOP). */
static run_outcome after_failure(vb_producer_ctx *ctx, const vb_error *e, vb_error *first)
{
    if (first->code == VB_OK)
        *first = *e;
    if (e->code == VB_ERR_TOO_LARGE)
        return RUN_FAILED;
    if (e->code == VB_ERR_REDIS && vb_store_ping(ctx->store, NULL) == VB_OK)
        return RUN_FAILED;
    return RUN_STOP;
}

/* Claims and publishes one run; updates *st. RUN_FAILED / RUN_STOP (the pass
 * must end: Kafka or Redis failure) with the failure kept in *first. */
static run_outcome handle_run(vb_producer_ctx *ctx, const vb_run *run, const char *job_id,
                              const char *execution_id, vb_poll_stats *st, vb_error *first)
{
    vb_error err;
    vb_error_clear(&err);
    char trace[33];
    make_trace_id(trace);
    long long now = vb_store_now_ms();
    vb_claim_decision d = 0;
    long long version = 0;
    vb_run_state rs;
    memset(&rs, 0, sizeof rs);
    run_outcome out = RUN_OK;

    if (vb_store_claim_for_queue_ex(ctx->store, run->id, ctx->max_attempts, ctx->queue_lease_ms,
                                    now, trace, execution_id, &d, &version, &err) != VB_OK) {
        VB_ERROR("claim failed: %s", err.msg);
        st->errors++;
        return after_failure(ctx, &err, first);
    }

    switch (d) {
    case VB_CLAIM_SKIP_IN_PROGRESS:
        VB_DEBUG("skipped: queued or in progress");
        st->skipped_in_progress++;
        return RUN_OK;
    case VB_CLAIM_SKIP_BACKOFF:
        VB_DEBUG("skipped: failed, its retry backoff is not over");
        st->skipped_backoff++;
        return RUN_OK;
    case VB_CLAIM_SKIP_DONE:
        VB_DEBUG("skipped: already uploaded");
        st->skipped_done++;
        return RUN_OK;
    case VB_CLAIM_DEAD:
        st->dead++;
        /* Dead-letter once: only when this claim made it dead (the claim
         * stamps finished_at with our `now`). */
        if (vb_store_get(ctx->store, run->id, &rs, &err) != VB_OK) {
            VB_ERROR("dead run: cannot read its state: %s", err.msg);
            st->errors++;
            out = after_failure(ctx, &err, first);
            break;
        }
        if (rs.state != VB_RUN_DEAD || rs.finished_at != now || rs.version != version)
            break; /* dead before this pass: already dead-lettered */
        VB_WARN("run is dead after %ld attempts (%s); sending it to %s", rs.attempts,
                rs.last_error[0] ? rs.last_error : "no error recorded", ctx->dlq_topic);
        if (publish(ctx, ctx->dlq_topic, run, job_id, execution_id,
                    rs.trace_id[0] ? rs.trace_id : trace, (int)rs.attempts, "dead",
                    &err) != VB_OK) {
            VB_ERROR("dead-letter publish failed: %s", err.msg);
            st->failed_publish++;
            out = after_failure(ctx, &err, first);
            break;
        }
        st->dead_lettered++;
        break;
    case VB_CLAIM_PUBLISH: {
        long attempts = 0;
        if (vb_store_get(ctx->store, run->id, &rs, &err) == VB_OK)
            attempts = rs.attempts;
        else /* the message is still worth sending; the attempt number is advisory */
            VB_WARN("cannot read the run's attempts (%s); publishing as attempt 1", err.msg);
        vb_error_clear(&err);
        int attempt = (int)(attempts + 1);
        if (publish(ctx, ctx->topic, run, job_id, execution_id, trace, attempt, NULL, &err) ==
            VB_OK) {
            VB_INFO("queued on %s (attempt %d, trace %s)", ctx->topic, attempt, trace);
            st->published++;
            if (ctx->published)
                ctx->published(ctx->published_ctx, run->id);
            break;
        }
        VB_ERROR("publish failed, releasing the claim: %s", err.msg);
        st->failed_publish++;
        out = after_failure(ctx, &err, first);
        char reason[sizeof err.msg + 32]; /* the store cuts it to 1 KiB */
        snprintf(reason, sizeof reason, "not published: %s", err.msg);
        vb_error rerr;
        vb_error_clear(&rerr);
        int released = 0;
        if (vb_store_release_claim(ctx->store, run->id, version, ctx->holder_id, reason,
                                   &released, &rerr) != VB_OK)
            VB_ERROR("could not release the claim (the run waits for its lease to expire): %s",
                     rerr.msg);
        else if (!released)
            VB_INFO("claim not released: the run moved on (a worker has it)");
        break;
    }
    default:
        vb_error_set(&err, VB_ERR_REDIS, "unknown claim decision %d", (int)d);
        st->errors++;
        if (first->code == VB_OK)
            *first = err;
        out = RUN_STOP;
        break;
    }
    vb_run_state_free(&rs);
    return out;
}

int vb_producer_poll(vb_producer_ctx *ctx, const vb_config *platform_cfg, const char *job_id,
                     const char *execution_id, vb_poll_stats *out, vb_error *err)
{
    return vb_producer_poll_ex(ctx, platform_cfg, job_id, execution_id, NULL, NULL, out, err);
}

int vb_producer_poll_ex(vb_producer_ctx *ctx, const vb_config *platform_cfg, const char *job_id,
                        const char *execution_id, vb_published_fn published, void *published_ctx,
                        vb_poll_stats *out, vb_error *err)
{
    vb_poll_stats st;
    memset(&st, 0, sizeof st);
    if (out)
        memset(out, 0, sizeof *out);
    if (!ctx || !platform_cfg)
        return vb_error_set(err, VB_ERR_INVALID, "producer poll: bad arguments");

    pthread_mutex_lock(&ctx->mu);
    ctx->published = published;
    ctx->published_ctx = published_ctx;
    vb_run_list runs = {0};
    vb_fetch_stats fs;
    memset(&fs, 0, sizeof fs);
    vb_error first;
    vb_error_clear(&first);
    vb_err rc = VB_OK;
    const char *what = job_id ? "job" : "organization";
    const char *who = job_id ? job_id : platform_cfg->organization_id;

    if ((rc = vb_platform_fetch_unprocessed(ctx->http, platform_cfg, ctx->cancel, &runs, &fs,
                                            &first)) != VB_OK) {
        VB_ERROR("poll (%s %s): could not fetch runs: %s", what, who ? who : "", first.msg);
        goto done;
    }
    /* Claiming runs that cannot be published would only churn their state.
     * Asked only when there is a run to claim: the broker round trip was
     * most of the cost of a cron firing that finds nothing. */
    if (runs.n > 0 && !vb_kafka_producer_reachable(ctx->kafka, KAFKA_CHECK_MS)) {
        rc = vb_error_set(&first, VB_ERR_KAFKA, "Kafka is unreachable; no run was claimed");
        VB_ERROR("poll (%s %s): %s", what, who ? who : "", first.msg);
        goto done;
    }
    st.found = fs.found;
    st.other_org = fs.other_org;
    st.invalid = fs.invalid;

    size_t i = 0;
    for (; i < runs.n; i++) {
        if (ctx->cancel && *ctx->cancel) {
            rc = vb_error_set(&first, VB_ERR_CANCELLED, "poll interrupted");
            break;
        }
        vb_log_set_run(runs.runs[i].id);
        run_outcome o = handle_run(ctx, &runs.runs[i], job_id, execution_id, &st, &first);
        vb_log_set_run(NULL);
        if (o == RUN_FAILED)
            st.run_errors++;
        if (o == RUN_STOP) {
            rc = first.code != VB_OK ? first.code : VB_ERR_KAFKA;
            i++;
            break;
        }
    }
    st.not_attempted = runs.n - i;
    if (rc == VB_OK && first.code != VB_OK) /* runs that failed by themselves */
        rc = first.code;

done:
    /* A cron firing that found nothing is one of thousands a minute: the
     * scheduler's pass summary counts it (DEBUG shows each one). */
    vb_log(job_id && rc == VB_OK && st.found == 0 ? VB_LOG_DEBUG : VB_LOG_INFO,
           "poll summary: %s=%s found=%zu published=%zu skipped_in_progress=%zu "
           "skipped_backoff=%zu skipped_done=%zu dead=%zu other_org=%zu failed_publish=%zu "
           "invalid=%zu run_errors=%zu errors=%zu not_attempted=%zu%s",
           what, who ? who : "", st.found, st.published, st.skipped_in_progress,
           st.skipped_backoff, st.skipped_done, st.dead, st.other_org, st.failed_publish,
           st.invalid, st.run_errors, st.errors, st.not_attempted,
           rc == VB_ERR_CANCELLED ? " (interrupted)" : "");
    vb_run_list_free(&runs);
    ctx->published = NULL;
    ctx->published_ctx = NULL;
    pthread_mutex_unlock(&ctx->mu);
    if (out)
        *out = st;
    if (rc != VB_OK)
        vb_error_set(err, rc, "%s", first.msg);
    return rc;
}
