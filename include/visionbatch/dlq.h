/*
 * dlq.h — the dead-letter topic (dlq_topic) for operators: reading it
 * without side effects and replaying a dead-lettered run, shared by
 * `visionbatch dlq` and the producer's web console.
 *
 * Reading uses a vb_kafka_reader (no consumer group, nothing committed), so
 * it can be repeated. Each message is classified: a complete run message, a
 * worker reaper's short "dead" notice ({"schema":1,"run_id":…,"state":
 * "dead"}), or poison (cannot be decoded; nothing to process).
 *
 * Replaying one run (vb_dlq_replay):
 *   1. its Redis state must allow it: dead or failed → vb_store_retry
 *      (failed, 0 attempts); uploaded → refused; queued/processing/uploading
 *      with a live lease → refused (it is being worked on);
 *   2. vb_store_claim_for_queue_ex makes it queued with a queue lease (as the
 *      producer does), so no reaper publishes it a second time meanwhile;
 *   3. the message goes to the runs topic (topic) with key = run id and
 *      header vb-source=replay: the original value for a run message; for a
 *      notice, a run message built from the origin recorded in Redis.
 * Nothing read or returned holds a secret: run messages carry none and the
 * vb-reason header was redacted by the worker.
 */
#ifndef VISIONBATCH_DLQ_H
#define VISIONBATCH_DLQ_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "visionbatch/config.h"
#include "visionbatch/error.h"
#include "visionbatch/kafka.h"
#include "visionbatch/store.h"

typedef enum { VB_DLQ_POISON = 0, VB_DLQ_NOTICE, VB_DLQ_RUN } vb_dlq_kind;

typedef struct vb_dlq_entry {
    vb_kafka_record *rec; /* owned */
    vb_dlq_kind kind;
    char run_id[VB_STORE_ID_MAX + 1]; /* upper case; "" for poison */
    char trace_id[64];
    char why[256]; /* poison: the decoder's reason */
} vb_dlq_entry;

typedef struct vb_dlq {
    vb_dlq_entry *items; /* ring of the newest `cap` messages (see vb_dlq_at) */
    size_t n, cap, start;
    long long total; /* messages read */
} vb_dlq;

/* "run", "dead-notice" or "poison". */
const char *vb_dlq_kind_name(vb_dlq_kind k);

/* Reads the whole topic `dlq_topic` (with the pass-through Kafka properties
 * `props`, kafka.h) and keeps the newest `keep` messages (0 = all). *d is zeroed first and must be freed with vb_dlq_free in every
 * case. VB_ERR_KAFKA / VB_ERR_TIMEOUT when the cluster does not answer. */
vb_err vb_dlq_read(const char *brokers, const char *const *props, const char *dlq_topic,
                   size_t keep, int timeout_ms, vb_dlq *d, vb_error *err);
void vb_dlq_free(vb_dlq *d);
/* The i-th kept message, oldest first (i < d->n). */
vb_dlq_entry *vb_dlq_at(vb_dlq *d, size_t i);
/* The best message for run `id` (upper case): the newest run message, else
 * the newest notice. NULL when none. */
const vb_dlq_entry *vb_dlq_best_for(vb_dlq *d, const char *id);

/* {partition, offset, timestamp, key, run_id, reason, kind, replayable,
 * value_bytes}; NULL on out of memory. */
cJSON *vb_dlq_entry_json(const vb_dlq_entry *e);

/* Replays entry `e` (not poison) as described above, using cfg's topic,
 * lease_ms, max_attempts and organization_id (for a notice whose run has no
 * recorded organization). `p` may be NULL with dry_run. *was receives the
 * run's state before. VB_ERR_CONFLICT with the reason when the state
 * forbids it; other codes when Redis or Kafka fail (a run left queued by a
 * failed publish is published again by a worker's reaper after its queue
 * lease). */
vb_err vb_dlq_replay(const vb_config *cfg, vb_store *s, vb_kafka_producer *p,
                     const vb_dlq_entry *e, int dry_run, vb_run_status *was, vb_error *err);

#endif
