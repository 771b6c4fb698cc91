/*
 * kafka.h — the two Kafka roles of visionbatch, over librdkafka.
 *
 * Producer (common/kafka_producer.c): idempotent (enable.idempotence=true,
 * acks=all), every message's delivery report is awaited and checked — a run
 * counts as queued only once the broker has acknowledged it. Used by the
 * producer service (runs), and by workers for the dead-letter topic.
 *
 * Consumer (common/kafka_consumer.c): member of a consumer group with
 * automatic commits off; the caller stores the offset of a message once the
 * message is safely handled (see worker/), and commits. Rebalances are
 * handled inside; the caller keeps polling, also while all its slots are
 * busy (pausing the assigned partitions), so it stays in the group during
 * runs of up to an hour.
 *
 * Third-party types stay inside; handles are opaque. A producer handle is
 * thread-safe; a consumer handle is used by one thread (the poll loop).
 */
#ifndef VISIONBATCH_KAFKA_H
#define VISIONBATCH_KAFKA_H

#include <stddef.h>

#include "visionbatch/error.h"

typedef struct vb_kafka_header {
    const char *name;
    const char *value;
} vb_kafka_header;

/* ---- producer ---- */

typedef struct vb_kafka_producer vb_kafka_producer;

/* message.timeout.ms of the producer: every message gets its delivery report
 * (success or failure) within this time. A produce_sync timeout_ms at least
 * this long (or <= 0: this plus 5 s) never leaves a message undecided. */
#define VB_KAFKA_DELIVERY_TIMEOUT_MS 30000

/* Connects to `brokers` (comma-separated host:port). `client_id` is shown in
 * broker logs. VB_ERR_KAFKA with a message on failure. */
vb_err vb_kafka_producer_new(const char *brokers, const char *client_id,
                             vb_kafka_producer **out, vb_error *err);
/* Flushes outstanding messages (up to timeout_ms) and frees. NULL is accepted. */
void vb_kafka_producer_free(vb_kafka_producer *p, int timeout_ms);

/* Produces one message and waits (up to timeout_ms) for its delivery report.
 * VB_OK only when the broker acknowledged it (acks=all). Thread-safe. key may
 * be NULL; value is copied; header values may be NULL. Fails with
 * VB_ERR_KAFKA (delivery refused, e.g. unknown topic), VB_ERR_TIMEOUT (the
 * message timed out, or no report within timeout_ms: then it may still be
 * delivered later), VB_ERR_INVALID (bad arguments). */
vb_err vb_kafka_produce_sync(vb_kafka_producer *p, const char *topic, const char *key,
                             const void *value, size_t len, const vb_kafka_header *headers,
                             size_t nheaders, int timeout_ms, vb_error *err);

/* True when the cluster answered a metadata request within timeout_ms. */
int vb_kafka_producer_reachable(vb_kafka_producer *p, int timeout_ms);

/* ---- consumer ---- (declared with its implementation, common/kafka_consumer.c) */

#endif
