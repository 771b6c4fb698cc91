/*
 * poller.h — one producer pass: fetch the platform's unprocessed runs, claim
 * each in Redis, publish the claimed ones to Kafka.
 *
 * Used by visionbatch-producer's poll loop (credentials from its own
 * settings) and by the cron scheduler (credentials of a stored job). A
 * vb_producer_ctx holds the connections (Kafka producer, Redis store, HTTP
 * handle); calls on one context are serialised by a mutex inside, so the
 * poll loop and the scheduler may share it from different threads.
 */
#ifndef VISIONBATCH_PRODUCER_POLLER_H
#define VISIONBATCH_PRODUCER_POLLER_H

#include <signal.h>
#include <stddef.h>

#include "visionbatch/config.h"
#include "visionbatch/error.h"

typedef struct vb_producer_ctx vb_producer_ctx;

/* Counters of one pass; every run the platform returned lands in one of them. */
typedef struct vb_poll_stats {
    size_t found;               /* runs the platform listed (all organizations) */
    size_t other_org;           /* of another organization: not published */
    size_t invalid;             /* failed validation: not published */
    size_t published;           /* claimed and acknowledged by Kafka */
    size_t skipped_in_progress; /* queued/processing/uploading with a live lease */
    size_t skipped_backoff;     /* failed, waiting for its retry backoff */
    size_t skipped_done;        /* uploaded already */
    size_t dead;                /* attempts exhausted (DLQ copy sent when newly dead) */
    size_t dead_lettered;       /* of those, copies published to the DLQ topic */
    size_t failed_publish;      /* claimed but Kafka refused it: claim released */
    size_t run_errors;          /* runs that failed by themselves (the pass went on) */
    size_t errors;              /* Redis/encoding failures */
    size_t not_attempted;       /* left for the next pass (stopped early) */
} vb_poll_stats;

/* The queue lease the producer uses when claiming a run: how long a
 * published message may wait for a worker before a later pass publishes the
 * run again. max(10 × lease_ms, 2 × poll_interval_s), at most 7 days. */
long vb_producer_queue_lease_ms(const vb_config *svc);

/* Connects to Kafka (svc->kafka_brokers) and Redis (svc->redis_url) and
 * copies the service settings it needs (topic, dlq_topic, max_attempts,
 * lease, worker_id). `cancel` (may be NULL) stops a pass between runs; it
 * must outlive the context. VB_ERR_REDIS / VB_ERR_KAFKA / VB_ERR_CONFIG on
 * failure (*out NULL). Call vb_http_global_init() first. */
vb_err vb_producer_ctx_new(const vb_config *svc, const volatile sig_atomic_t *cancel,
                           vb_producer_ctx **out, vb_error *err);
/* A second context for passes running in parallel with `base`'s: its own
 * Redis and HTTP connections, and `base`'s Kafka producer and cancel flag
 * (shared, not copied: one librdkafka instance per process). `base` must
 * outlive the clone. Settings as vb_producer_ctx_new, from `svc`.
 * VB_ERR_REDIS / VB_ERR_CONFIG / VB_ERR_NOMEM on failure (*out NULL). */
vb_err vb_producer_ctx_clone(vb_producer_ctx *base, const vb_config *svc, vb_producer_ctx **out,
                             vb_error *err);

/* Flushes Kafka (up to 10 s; a clone leaves its base's producer alone) and
 * closes everything. NULL is accepted. */
void vb_producer_ctx_free(vb_producer_ctx *ctx);

/* True when Kafka answered a metadata request within timeout_ms. */
int vb_producer_kafka_reachable(vb_producer_ctx *ctx, int timeout_ms);

/* One pass with the platform settings of `platform_cfg` (URLs, key,
 * organization, paging and timeouts). For each run of that organization:
 * claim (vb_store_claim_for_queue_ex with a fresh trace id and
 * `execution_id`), then on PUBLISH send the run message to the topic (key =
 * run id; headers vb-schema, vb-attempt, vb-trace-id, vb-source) and wait
 * for the acknowledgement; when that fails the claim is released so the next
 * pass publishes the run again. A run that the claim has just turned dead is
 * sent once to the dead-letter topic with header vb-reason=dead.
 * job_id non-NULL: the message names that cron job as the credentials source
 * ({"source":"job","job_id":…}) and vb-source is "cron"; NULL: the worker's
 * own settings ({"source":"config"}), vb-source "poll".
 * The pass stops early on a Kafka or Redis failure (untouched runs are
 * counted in not_attempted) or when *cancel is set (the current publish is
 * finished first). A failure of one run's own does not stop it: Redis
 * answering but refusing that run's key, or Kafka refusing that run's
 * message as too large (VB_ERR_TOO_LARGE; its claim is released) — the run
 * is counted in errors / failed_publish and in run_errors, and the next run goes on. Logs one summary line. *out (may be NULL) receives the
 * counters. Returns VB_OK when every listed run was published or rightly
 * skipped; VB_ERR_CANCELLED when cancelled; otherwise the first failure
 * (fetch, Redis, Kafka) with its message. Thread-safe (serialised per ctx). */
int vb_producer_poll(vb_producer_ctx *ctx, const vb_config *platform_cfg, const char *job_id,
                     const char *execution_id, vb_poll_stats *out, vb_error *err);

/* Called once per run right after Kafka acknowledged its message, on the
 * polling thread. The cron scheduler counts published runs with it, one at a
 * time, so the count stays right even if the producer dies mid-pass. */
typedef void (*vb_published_fn)(void *ctx, const char *run_id);

/* vb_producer_poll with a per-publish callback (may be NULL). */
int vb_producer_poll_ex(vb_producer_ctx *ctx, const vb_config *platform_cfg, const char *job_id,
                        const char *execution_id, vb_published_fn published, void *published_ctx,
                        vb_poll_stats *out, vb_error *err);

#endif
