/*
 * kafka_consumer.c — the consumer half of kafka.h: one group member over
 * librdkafka, with manual offset storage and commits.
 *
 * Why manual offsets: a worker may only let the group forget a message once
 * the run it carries is durably recorded in Redis (see worker/worker.c), so
 * automatic commits and automatic offset storage are off; the caller stores
 * each handled message's offset and commits.
 *
 * Rebalances use the cooperative-sticky strategy (librdkafka ≥ 1.6): the
 * rebalance callback applies incremental assignments, pauses partitions that
 * arrive while the consumer is paused (a busy worker must not be handed new
 * messages) and explicitly resumes the others (librdkafka keeps a pause flag
 * across rebalances), and commits stored offsets before partitions are
 * revoked — after telling the caller (vb_kafka_consumer_on_revoke), so that
 * messages it fetched from those partitions but has not handled yet are
 * dropped, not handled by a member that no longer owns them. The eager
 * protocol (if the group falls back to it) is handled too.
 * With the pass-through property group.protocol=consumer (KIP-848, librdkafka
 * >= 2.4 and Kafka >= 4.0) the broker assigns partitions and times sessions
 * and heartbeats, so the classic protocol's three settings below are left out
 * (librdkafka refuses them then); assignments still arrive incrementally
 * through the same callback.
 *
 * Commits: vb_kafka_consumer_commit_async sends the stored offsets without
 * waiting; its result arrives in a later poll (offset_commit_cb), where a
 * failure is logged — the offsets stay stored and go with the next commit.
 *
 * The operator's pass-through properties (security, tuning) are applied after
 * these settings, once a probe has shown the login is accepted; the ones
 * above that correctness rests on are refused by kafka_conf.c.
 *
 * Threading: the handle is used by one thread (the poll loop); the rebalance
 * and commit callbacks run inside vb_kafka_consumer_poll on that same thread.
 * vb_kafka_consumer_wake alone may be called from any thread.
 * Ownership: messages returned are copies owned by the caller.
 */
#include "visionbatch/kafka.h"

#include <librdkafka/rdkafka.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kafka_internal.h"
#include "visionbatch/log.h"

struct vb_kafka_consumer {
    rd_kafka_t *rk;
    rd_kafka_queue_t *q; /* the consumer queue, for vb_kafka_consumer_wake */
    int paused;
    vb_kafka_revoke_fn on_revoke;
    void *revoke_ctx;
};

void vb_kafka_message_free(vb_kafka_message *m)
{
    if (!m)
        return;
    free(m->topic);
    free(m->key);
    free(m->value);
    free(m);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    vb_kafka_consumer *c = opaque;
    int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        VB_INFO("kafka: %d partition(s) assigned%s", parts->cnt,
                c->paused ? " (paused: all slots busy)" : "");
        if (cooperative) {
            rd_kafka_error_t *e = rd_kafka_incremental_assign(rk, parts);
            if (e) {
                VB_ERROR("kafka: incremental assign failed: %s", rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
                return;
            }
        } else {
            rd_kafka_assign(rk, parts);
        }
        /* librdkafka keeps a partition's pause flag across rebalances: a
         * partition paused here, lost and assigned again would stay paused
         * forever. So every assignment is set to the consumer's state. */
        if (c->paused)
            rd_kafka_pause_partitions(rk, parts);
        else
            rd_kafka_resume_partitions(rk, parts);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        VB_INFO("kafka: %d partition(s) %s", parts->cnt,
                rd_kafka_assignment_lost(rk) ? "lost" : "revoked");
        rd_kafka_resume_partitions(rk, parts); /* leave no pause flag behind */
        for (int i = 0; c->on_revoke && i < parts->cnt; i++)
            c->on_revoke(c->revoke_ctx, parts->elems[i].topic, parts->elems[i].partition);
        /* Stored offsets of the leaving partitions go now, or their next
         * owner would see the handled messages again. */
        rd_kafka_resp_err_t ce = rd_kafka_commit(rk, NULL, 0);
        if (ce && ce != RD_KAFKA_RESP_ERR__NO_OFFSET)
            VB_WARN("kafka: commit before revocation failed: %s", rd_kafka_err2str(ce));
        if (cooperative) {
            rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
            if (e) {
                VB_ERROR("kafka: incremental unassign failed: %s", rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
            }
        } else {
            rd_kafka_assign(rk, NULL);
        }
        return;
    }
    VB_ERROR("kafka: rebalance error: %s", rd_kafka_err2str(err));
    if (cooperative)
        rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
    else
        rd_kafka_assign(rk, NULL);
}

/* 1 when the pass-through properties choose the KIP-848 group protocol. */
static int consumer_protocol(const char *const *props)
{
    for (; props && props[0] && props[1]; props += 2) {
        if (strcmp(props[0], "group.protocol") == 0 && strcasecmp(props[1], "consumer") == 0)
            return 1;
    }
    return 0;
}

/* The outcome of an asynchronous commit (and of the synchronous ones, which
 * report it themselves too). */
static void commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        VB_WARN("kafka: commit failed (offsets stay stored for the next commit): %s",
                rd_kafka_err2str(err));
        return;
    }
    for (int i = 0; offsets && i < offsets->cnt; i++) {
        if (offsets->elems[i].err)
            VB_WARN("kafka: commit of %s[%d]@%lld failed: %s", offsets->elems[i].topic,
                    (int)offsets->elems[i].partition, (long long)offsets->elems[i].offset,
                    rd_kafka_err2str(offsets->elems[i].err));
    }
}

static vb_err set_conf(rd_kafka_conf_t *conf, const char *name, const char *value,
                       vb_error *err)
{
    char errstr[512];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof errstr) != RD_KAFKA_CONF_OK)
        return vb_error_set(err, VB_ERR_KAFKA, "kafka consumer setting %s: %s", name, errstr);
    return VB_OK;
}

vb_err vb_kafka_consumer_new(const char *brokers, const char *const *props,
                             const char *group_id, const char *client_id, const char *topic,
                             vb_kafka_consumer **out, vb_error *err)
{
    *out = NULL;
    if (!brokers || !*brokers || !group_id || !*group_id || !topic || !*topic)
        return vb_error_set(err, VB_ERR_INVALID, "kafka consumer needs brokers, group and topic");
    vb_err rc = vb__kafka_probe(brokers, props, VB__KAFKA_PROBE_MS, err);
    if (rc != VB_OK)
        return rc;
    char errstr[512];
    rd_kafka_topic_partition_list_t *subs = NULL;
    vb_kafka_consumer *c = calloc(1, sizeof *c);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!c || !conf) {
        rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        goto fail;
    }
    /* The last `classic_only` rows hold for the classic group protocol only. */
    const char *settings[][2] = {
        {"bootstrap.servers", brokers},
        {"group.id", group_id},
        {"client.id", client_id && *client_id ? client_id : "visionbatch-worker"},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"auto.offset.reset", "earliest"},
        /* The poll loop keeps polling while runs go on; a generous bound
         * still catches a stuck loop. */
        {"max.poll.interval.ms", "600000"},
        {"enable.partition.eof", "false"},
        {"socket.keepalive.enable", "true"},
        {"reconnect.backoff.max.ms", "2000"},
        {"partition.assignment.strategy", "cooperative-sticky"},
        {"session.timeout.ms", "10000"},
        {"heartbeat.interval.ms", "2000"},
    };
    const size_t classic_only = 3;
    size_t nsettings = sizeof settings / sizeof settings[0];
    if (consumer_protocol(props))
        nsettings -= classic_only;
    for (size_t i = 0; i < nsettings; i++) {
        if ((rc = set_conf(conf, settings[i][0], settings[i][1], err)) != VB_OK)
            goto fail;
    }
    if ((rc = vb__kafka_conf_apply(conf, props, err)) != VB_OK)
        goto fail;
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_offset_commit_cb(conf, commit_cb);
    rd_kafka_conf_set_opaque(conf, c);
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!c->rk) {
        rc = vb_error_set(err, VB_ERR_KAFKA, "kafka consumer: %s", errstr);
        goto fail;
    }
    conf = NULL; /* owned by rk now */
    rd_kafka_poll_set_consumer(c->rk);
    if (!(c->q = rd_kafka_queue_get_consumer(c->rk))) {
        rc = vb_error_set(err, VB_ERR_KAFKA, "kafka: no consumer queue");
        goto fail;
    }
    subs = rd_kafka_topic_partition_list_new(1);
    if (!subs) {
        rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        goto fail;
    }
    rd_kafka_topic_partition_list_add(subs, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(c->rk, subs);
    if (e) {
        rc = vb_error_set(err, VB_ERR_KAFKA, "kafka: subscribe to %s failed: %s", topic,
                          rd_kafka_err2str(e));
        goto fail;
    }
    rd_kafka_topic_partition_list_destroy(subs);
    *out = c;
    return VB_OK;
fail:
    if (subs)
        rd_kafka_topic_partition_list_destroy(subs);
    if (conf)
        rd_kafka_conf_destroy(conf);
    if (c && c->q)
        rd_kafka_queue_destroy(c->q);
    if (c && c->rk)
        rd_kafka_destroy(c->rk);
    free(c);
    return rc;
}

static char *copy_bytes(const void *p, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        if (n)
            memcpy(d, p, n);
        d[n] = '\0';
    }
    return d;
}

vb_err vb_kafka_consumer_poll(vb_kafka_consumer *c, int timeout_ms, vb_kafka_message **out,
                              vb_error *err)
{
    *out = NULL;
    rd_kafka_message_t *rm = rd_kafka_consumer_poll(c->rk, timeout_ms);
    if (!rm)
        return VB_OK;
    vb_err rc = VB_OK;
    if (rm->err) {
        if (rm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            /* nothing */
        } else if (rm->err == RD_KAFKA_RESP_ERR__FATAL) {
            char why[256];
            rd_kafka_fatal_error(c->rk, why, sizeof why);
            rc = vb_error_set(err, VB_ERR_KAFKA, "kafka consumer fatal error: %s", why);
        } else {
            VB_WARN("kafka consumer: %s", rd_kafka_message_errstr(rm));
        }
        rd_kafka_message_destroy(rm);
        return rc;
    }
    vb_kafka_message *m = calloc(1, sizeof *m);
    const char *topic = rm->rkt ? rd_kafka_topic_name(rm->rkt) : "";
    if (!m || !(m->topic = copy_bytes(topic, strlen(topic))) ||
        !(m->value = copy_bytes(rm->payload, rm->payload ? rm->len : 0)) ||
        (rm->key && !(m->key = copy_bytes(rm->key, rm->key_len)))) {
        vb_kafka_message_free(m);
        rd_kafka_message_destroy(rm);
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory copying a kafka message");
    }
    m->partition = rm->partition;
    m->offset = rm->offset;
    m->len = rm->payload ? rm->len : 0;
    m->key_len = rm->key ? rm->key_len : 0;
    rd_kafka_message_destroy(rm);
    *out = m;
    return VB_OK;
}

static vb_err pause_resume(vb_kafka_consumer *c, int pause, vb_error *err)
{
    rd_kafka_topic_partition_list_t *parts = NULL;
    rd_kafka_resp_err_t e = rd_kafka_assignment(c->rk, &parts);
    if (e)
        return vb_error_set(err, VB_ERR_KAFKA, "kafka: cannot read the assignment: %s",
                            rd_kafka_err2str(e));
    c->paused = pause;
    if (parts->cnt > 0)
        e = pause ? rd_kafka_pause_partitions(c->rk, parts)
                  : rd_kafka_resume_partitions(c->rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (e)
        return vb_error_set(err, VB_ERR_KAFKA, "kafka: %s failed: %s",
                            pause ? "pause" : "resume", rd_kafka_err2str(e));
    return VB_OK;
}

vb_err vb_kafka_consumer_pause(vb_kafka_consumer *c, vb_error *err)
{
    return pause_resume(c, 1, err);
}

vb_err vb_kafka_consumer_resume(vb_kafka_consumer *c, vb_error *err)
{
    return pause_resume(c, 0, err);
}

int vb_kafka_consumer_is_paused(const vb_kafka_consumer *c)
{
    return c->paused;
}

int vb_kafka_consumer_assigned(vb_kafka_consumer *c)
{
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(c->rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    int n = parts->cnt;
    rd_kafka_topic_partition_list_destroy(parts);
    return n;
}

vb_err vb_kafka_consumer_store(vb_kafka_consumer *c, const vb_kafka_message *m, vb_error *err)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    if (!l)
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    rd_kafka_topic_partition_list_add(l, m->topic, m->partition)->offset = m->offset + 1;
    rd_kafka_resp_err_t e = rd_kafka_offsets_store(c->rk, l);
    if (!e)
        e = l->elems[0].err;
    rd_kafka_topic_partition_list_destroy(l);
    if (e)
        return vb_error_set(err, VB_ERR_KAFKA, "kafka: storing offset %s[%d]@%lld failed: %s",
                            m->topic, m->partition, m->offset + 1, rd_kafka_err2str(e));
    return VB_OK;
}

vb_err vb_kafka_consumer_commit(vb_kafka_consumer *c, vb_error *err)
{
    rd_kafka_resp_err_t e = rd_kafka_commit(c->rk, NULL, 0);
    if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
        return vb_error_set(err, VB_ERR_KAFKA, "kafka: commit failed: %s", rd_kafka_err2str(e));
    return VB_OK;
}

vb_err vb_kafka_consumer_commit_async(vb_kafka_consumer *c, vb_error *err)
{
    rd_kafka_resp_err_t e = rd_kafka_commit(c->rk, NULL, 1);
    if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
        return vb_error_set(err, VB_ERR_KAFKA, "kafka: commit failed: %s", rd_kafka_err2str(e));
    return VB_OK;
}

void vb_kafka_consumer_on_revoke(vb_kafka_consumer *c, vb_kafka_revoke_fn fn, void *ctx)
{
    c->on_revoke = fn;
    c->revoke_ctx = ctx;
}

void vb_kafka_consumer_wake(vb_kafka_consumer *c)
{
    rd_kafka_queue_yield(c->q);
}

void vb_kafka_consumer_close(vb_kafka_consumer *c)
{
    if (!c)
        return;
    rd_kafka_resp_err_t e = rd_kafka_commit(c->rk, NULL, 0);
    if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
        VB_WARN("kafka: final commit failed: %s", rd_kafka_err2str(e));
    e = rd_kafka_consumer_close(c->rk);
    if (e)
        VB_WARN("kafka: leaving the group failed: %s", rd_kafka_err2str(e));
    rd_kafka_queue_destroy(c->q);
    rd_kafka_destroy(c->rk);
    free(c);
}
