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

/* ---- consumer ---- (common/kafka_consumer.c) */

typedef struct vb_kafka_consumer vb_kafka_consumer;

/* One consumed message: an owned copy, independent of the consumer (free
 * with vb_kafka_message_free, NULL accepted). key/value are NUL-terminated
 * for convenience (the terminator is not counted in the lengths); key is
 * NULL when the message had none. */
typedef struct vb_kafka_message {
    char *topic;
    int partition;
    long long offset;
    char *key;
    size_t key_len;
    char *value;
    size_t len;
} vb_kafka_message;

void vb_kafka_message_free(vb_kafka_message *m);

/* Joins consumer group `group_id` and subscribes to `topic`. Settings:
 * enable.auto.commit=false, enable.auto.offset.store=false,
 * auto.offset.reset=earliest, partition.assignment.strategy=
 * cooperative-sticky (incremental rebalances: a member joining or leaving
 * does not stop the others' partitions), session.timeout.ms=10000 (a member
 * killed without leaving loses its partitions within 10 s). Partitions
 * assigned while the consumer is paused are paused too; stored offsets of
 * revoked partitions are committed before they go. VB_ERR_KAFKA on a bad
 * configuration. */
vb_err vb_kafka_consumer_new(const char *brokers, const char *group_id, const char *client_id,
                             const char *topic, vb_kafka_consumer **out, vb_error *err);

/* Waits up to timeout_ms for a message. VB_OK with *out = NULL when none
 * came (timeout, end of partition, or a transient broker error, which is
 * logged); VB_OK with *out owned by the caller for a message; VB_ERR_KAFKA
 * for a fatal consumer error. Serves rebalances: call it regularly, also
 * while paused. */
vb_err vb_kafka_consumer_poll(vb_kafka_consumer *c, int timeout_ms, vb_kafka_message **out,
                              vb_error *err);

/* Pauses / resumes fetching on every assigned partition (and on partitions
 * assigned later, until resumed). Idempotent. */
vb_err vb_kafka_consumer_pause(vb_kafka_consumer *c, vb_error *err);
vb_err vb_kafka_consumer_resume(vb_kafka_consumer *c, vb_error *err);
int vb_kafka_consumer_is_paused(const vb_kafka_consumer *c);

/* Number of partitions currently assigned to this member. */
int vb_kafka_consumer_assigned(vb_kafka_consumer *c);

/* Marks `m` handled: stores offset m->offset + 1 for its partition, to be
 * sent by the next commit. VB_ERR_KAFKA when the partition is no longer
 * assigned (the message will be delivered to its new owner again). */
vb_err vb_kafka_consumer_store(vb_kafka_consumer *c, const vb_kafka_message *m, vb_error *err);

/* Commits the stored offsets synchronously. VB_OK also when nothing was
 * stored since the last commit. On failure the offsets stay stored and go
 * with the next commit. */
vb_err vb_kafka_consumer_commit(vb_kafka_consumer *c, vb_error *err);

/* Commits stored offsets, leaves the group (rd_kafka_consumer_close) and
 * frees. NULL is accepted. */
void vb_kafka_consumer_close(vb_kafka_consumer *c);

#endif
