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
 * message is safely handled (see worker/), and commits — in the worker
 * asynchronously, in batches. Rebalances are handled inside (the caller is
 * told which partitions go); the caller keeps polling, also while all its
 * slots are busy and its few prefetched messages wait (pausing the assigned
 * partitions meanwhile), so it stays in the group during runs of an hour.
 *
 * Every function that connects takes `props`: the operator's librdkafka
 * properties (name, value, name, value, …, NULL; NULL = none), applied after
 * visionbatch's own settings (common/kafka_conf.c). Creating a client first
 * probes the cluster with them (up to 10 s): a refused SASL login or a failed
 * TLS handshake fails the creation with librdkafka's reason instead of
 * reconnecting for ever; an unreachable cluster does not.
 *
 * Third-party types stay inside; handles are opaque. A producer handle is
 * thread-safe; a consumer handle is used by one thread (the poll loop), except
 * for vb_kafka_consumer_wake.
 */
#ifndef VISIONBATCH_KAFKA_H
#define VISIONBATCH_KAFKA_H

#include <stddef.h>

#include "visionbatch/error.h"

/* ---- pass-through properties ---- (common/kafka_conf.c) */

/* NULL, or why visionbatch sets property `name` itself and refuses another
 * value (enable.idempotence, acks, message.timeout.ms, transactional.id,
 * enable.auto.commit, enable.auto.offset.store, auto.offset.reset,
 * partition.assignment.strategy, enable.partition.eof, bootstrap.servers,
 * group.id, their aliases, also with the "topic." prefix). */
const char *vb_kafka_property_reserved(const char *name);

/* 1 when the value of property `name` is a secret (a name containing
 * "password" or "secret", ssl.key.pem, sasl.oauthbearer.config). */
int vb_kafka_property_is_secret(const char *name);

/* VB_OK when librdkafka accepts `name` = `value` and it is not reserved;
 * else VB_ERR_CONFIG with librdkafka's own message (the value is never
 * quoted). Thread-safe. */
vb_err vb_kafka_property_check(const char *name, const char *value, vb_error *err);

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

/* Connects to `brokers` (comma-separated host:port) with the pass-through
 * `props`. `client_id` is shown in broker logs. VB_ERR_CONFIG for a property
 * librdkafka refuses, VB_ERR_KAFKA with a message on other failures
 * (including a refused login or TLS handshake). */
vb_err vb_kafka_producer_new(const char *brokers, const char *const *props,
                             const char *client_id, vb_kafka_producer **out, vb_error *err);
/* Flushes outstanding messages (up to timeout_ms) and frees. NULL is accepted. */
void vb_kafka_producer_free(vb_kafka_producer *p, int timeout_ms);

/* Produces one message and waits (up to timeout_ms) for its delivery report.
 * VB_OK only when the broker acknowledged it (acks=all). Thread-safe. key may
 * be NULL; value is copied; header values may be NULL. Fails with
 * VB_ERR_KAFKA (delivery refused, e.g. unknown topic), VB_ERR_TOO_LARGE (the
 * message exceeds the producer's or broker's size limit), VB_ERR_TIMEOUT (the
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
 * revoked partitions are committed before they go. `props` as for the
 * producer. VB_ERR_CONFIG / VB_ERR_KAFKA on a bad configuration, a refused
 * login or TLS handshake. */
vb_err vb_kafka_consumer_new(const char *brokers, const char *const *props,
                             const char *group_id, const char *client_id, const char *topic,
                             vb_kafka_consumer **out, vb_error *err);

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

/* Sends the stored offsets to the group without waiting. VB_OK also when
 * nothing was stored since the last commit. A failure reported later (in a
 * poll) is logged; the offsets stay stored and go with the next commit. */
vb_err vb_kafka_consumer_commit_async(vb_kafka_consumer *c, vb_error *err);

/* Called inside vb_kafka_consumer_poll for each partition being revoked (or
 * lost), before the stored offsets are committed synchronously and the
 * partition is given up: the caller drops what it fetched from it and has
 * not handled (it is delivered again to the partition's next owner) and must
 * store no offset of it from then on. */
typedef void (*vb_kafka_revoke_fn)(void *ctx, const char *topic, int partition);
void vb_kafka_consumer_on_revoke(vb_kafka_consumer *c, vb_kafka_revoke_fn fn, void *ctx);

/* Makes a vb_kafka_consumer_poll blocked in another thread (or the next one)
 * return at once, without a message. The one call that is safe from any
 * thread. */
void vb_kafka_consumer_wake(vb_kafka_consumer *c);

/* Commits stored offsets, leaves the group (rd_kafka_consumer_close) and
 * frees. NULL is accepted. */
void vb_kafka_consumer_close(vb_kafka_consumer *c);

/* ---- reader and cluster view ---- (common/kafka_reader.c)
 *
 * For operator tools: a reader reads a whole topic, from the beginning of
 * every partition up to the end it had when opened, without joining a
 * consumer group and without committing anything (other readers and the
 * workers are not affected). vb_kafka_topics_describe lists topics with
 * their partitions' offsets and a group's committed offsets, without joining
 * that group. One thread per handle. */

typedef struct vb_kafka_reader vb_kafka_reader;

/* One message read with its metadata. Strings owned and NUL-terminated (the
 * terminator is not counted in the lengths); key NULL when absent; header
 * values NULL when the header had none. Free with vb_kafka_record_free. */
typedef struct vb_kafka_record {
    int partition;
    long long offset;
    long long timestamp_ms; /* -1 when the message has none */
    char *key;
    size_t key_len;
    char *value;
    size_t len;
    vb_kafka_header *headers; /* name/value strings owned by the record */
    size_t nheaders;
} vb_kafka_record;

void vb_kafka_record_free(vb_kafka_record *r);

/* The value of the last header `name` of r, or NULL (absent or no value). */
const char *vb_kafka_record_header(const vb_kafka_record *r, const char *name);

/* Opens a reader of `topic` (every partition, from its first retained
 * offset up to its high watermark at this moment). VB_ERR_NOT_FOUND when the
 * topic does not exist, VB_ERR_KAFKA / VB_ERR_TIMEOUT when the cluster does
 * not answer within timeout_ms. */
vb_err vb_kafka_reader_new(const char *brokers, const char *const *props, const char *topic,
                           int timeout_ms, vb_kafka_reader **out, vb_error *err);

/* Next message, in partition order per partition (partitions interleave).
 * VB_OK with *out owned by the caller; VB_OK with *out = NULL once every
 * partition reached the end seen at open; VB_ERR_TIMEOUT when nothing came
 * for timeout_ms although messages remain; VB_ERR_KAFKA on a fatal error. */
vb_err vb_kafka_reader_next(vb_kafka_reader *r, int timeout_ms, vb_kafka_record **out,
                            vb_error *err);

/* Total messages the reader will return (sum of end − start at open). */
long long vb_kafka_reader_expected(const vb_kafka_reader *r);

/* Closes without committing. NULL is accepted. */
void vb_kafka_reader_free(vb_kafka_reader *r);

typedef struct vb_kafka_partition_info {
    int partition;
    long long low;       /* first retained offset */
    long long high;      /* high watermark (next offset to be written) */
    long long committed; /* the group's committed offset, -1 when none */
} vb_kafka_partition_info;

typedef struct vb_kafka_topic_info {
    char *name;
    vb_kafka_partition_info *partitions; /* sorted by partition */
    int npartitions;
} vb_kafka_topic_info;

typedef struct vb_kafka_topic_list {
    vb_kafka_topic_info *items; /* sorted by name */
    size_t n;
} vb_kafka_topic_list;

void vb_kafka_topic_list_free(vb_kafka_topic_list *l);

/* Lists the cluster's topics (`only` non-NULL: that topic alone; internal
 * topics starting with "__" are left out, and so is a topic created or
 * deleted while the list is read) with every partition's watermarks
 * and, when `group` is non-NULL, that consumer group's committed offsets
 * (rd_kafka_committed: the group is asked, not joined). *out is zeroed first
 * and must be freed with vb_kafka_topic_list_free in every case.
 * VB_ERR_NOT_FOUND when `only` does not exist; VB_ERR_KAFKA /
 * VB_ERR_TIMEOUT when the cluster does not answer within timeout_ms. */
vb_err vb_kafka_topics_describe(const char *brokers, const char *const *props, const char *group,
                                const char *only, int timeout_ms, vb_kafka_topic_list *out,
                                vb_error *err);

/* A partition's consumer lag: high − committed; with nothing committed (or
 * a committed offset older than retention) everything retained counts, as
 * workers start from the earliest offset. */
long long vb_kafka_partition_lag(const vb_kafka_partition_info *p);

typedef struct vb_kafka_member {
    char *member_id;
    char *client_id; /* the worker's client.id (its worker id) */
    char *host;
    int *partitions; /* assigned partitions of the topic asked about */
    int npartitions;
} vb_kafka_member;

typedef struct vb_kafka_group {
    char *state; /* "Stable", "PreparingRebalance", "Empty", "Dead", … */
    vb_kafka_member *members;
    size_t n;
} vb_kafka_group;

void vb_kafka_group_free(vb_kafka_group *g);

/* Describes consumer group `group`: its state and members, each with the
 * partitions of `topic` assigned to it (the group is asked, not joined). A
 * group that does not exist is an empty group in state "Dead". *out is zeroed
 * first and must be freed with vb_kafka_group_free in every case.
 * VB_ERR_KAFKA / VB_ERR_TIMEOUT when the cluster does not answer. */
vb_err vb_kafka_group_describe(const char *brokers, const char *const *props, const char *group,
                               const char *topic, int timeout_ms, vb_kafka_group *out,
                               vb_error *err);

#endif
