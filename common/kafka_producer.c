/*
 * kafka_producer.c — the producer half of kafka.h over librdkafka.
 *
 * One rd_kafka_t per vb_kafka_producer, configured idempotent (acks=all,
 * enable.idempotence=true), with no linger (every publish waits for its own
 * delivery report, so holding a message back to batch it only adds that
 * wait to each run: with 5 ms a pass published ~140 runs/s, without ~500),
 * and a bounded
 * message.timeout.ms (VB_KAFKA_DELIVERY_TIMEOUT_MS), so every message gets a
 * delivery report within that time, success or failure. Messages go to the
 * topic's available partitions in turn (spread_partitioner), so a producer's
 * runs split evenly whatever their ids hash to; an operator who wants
 * placement by key sets the `partitioner` property (e.g. murmur2_random,
 * the Java clients' choice) and librdkafka's own partitioner is used.
 * The operator's pass-through properties come after these (kafka_conf.c
 * refuses the ones the guarantees rest on), once a probe has shown the
 * login is accepted.
 *
 * Delivery reports. A dedicated thread polls the handle; librdkafka calls
 * dr_msg_cb() on that thread for each message. Every vb_kafka_produce_sync()
 * call allocates a small completion record, passes it as the message's
 * opaque, and waits on the producer's condition variable until the record is
 * marked done or its own deadline passes. The record is reference counted
 * (the caller and the pending report): when the caller gives up first, the
 * report still arrives later (at the latest when the message times out, or
 * when vb_kafka_producer_free() purges the queue) and frees it, so no report
 * ever touches freed memory.
 *
 * Threading: produce_sync and reachable may be called from any number of
 * threads at once. vb_kafka_producer_free() must not race with them.
 * librdkafka's own log lines and errors are routed to vb_log (its internal
 * threads call those callbacks; vb_log is thread-safe).
 */
#include "visionbatch/kafka.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kafka_internal.h"
#include "visionbatch/log.h"
#include "util.h"

/* A produce_sync call waiting for its delivery report. */
typedef struct vb__kafka_dr {
    int refs;                /* caller + pending report; guarded by p->mu */
    int done;                /* report received; guarded by p->mu */
    rd_kafka_resp_err_t err; /* the report's result */
} vb__kafka_dr;

struct vb_kafka_producer {
    rd_kafka_t *rk;
    pthread_t poller;
    int poller_started;
    atomic_int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* broadcast on every delivery report */
    atomic_uint next_partition; /* spread_partitioner's turn */
};

/* Round robin over the available partitions, starting at the producer's
 * next turn. Runs hashed by id split unevenly at the scale of a worker's
 * share (200 runs over 4 workers: the busiest got 61, the fair share is 50),
 * and the busiest worker decides when a queue is done; in turn, they split
 * exactly. Called by librdkafka with the topic's opaque: the producer. */
static int32_t spread_partitioner(const rd_kafka_topic_t *rkt, const void *key, size_t keylen,
                                  int32_t partition_cnt, void *rkt_opaque, void *msg_opaque)
{
    (void)msg_opaque;
    vb_kafka_producer *p = rkt_opaque;
    if (partition_cnt <= 0)
        return RD_KAFKA_PARTITION_UA;
    if (!p)
        return rd_kafka_msg_partitioner_random(rkt, key, keylen, partition_cnt, NULL, NULL);
    unsigned turn = atomic_fetch_add(&p->next_partition, 1);
    for (int32_t i = 0; i < partition_cnt; i++) {
        int32_t part = (int32_t)((turn + (unsigned)i) % (unsigned)partition_cnt);
        if (rd_kafka_topic_partition_available(rkt, part))
            return part;
    }
    /* None has a leader right now: queue for the turn's own, as librdkafka
     * does for a keyed message, until the leader is back or the message
     * times out. */
    return (int32_t)(turn % (unsigned)partition_cnt);
}

/* Whether the operator's pass-through properties choose a partitioner. */
static int props_set_partitioner(const char *const *props)
{
    for (size_t i = 0; props && props[i] && props[i + 1]; i += 2)
        if (strcmp(props[i], "partitioner") == 0 || strcmp(props[i], "topic.partitioner") == 0)
            return 1;
    return 0;
}

/* Drops one reference; frees the record when it was the last. Caller holds p->mu. */
static void dr_unref_locked(vb__kafka_dr *dr)
{
    if (--dr->refs == 0)
        free(dr);
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    vb_kafka_producer *p = opaque;
    vb__kafka_dr *dr = m->_private;
    if (!p || !dr)
        return;
    pthread_mutex_lock(&p->mu);
    dr->err = m->err;
    dr->done = 1;
    dr_unref_locked(dr);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[512];
        rd_kafka_resp_err_t fatal = rd_kafka_fatal_error(rk, buf, sizeof buf);
        VB_ERROR("kafka producer fatal error: %s: %s", rd_kafka_err2name(fatal), buf);
        return;
    }
    /* Transient: librdkafka reconnects by itself; each failed message still
     * gets its own delivery report, which is where the caller handles it. */
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        VB_WARN("kafka producer: %s", reason ? reason : rd_kafka_err2str(err));
    else
        VB_DEBUG("kafka producer: %s: %s", rd_kafka_err2name(err), reason ? reason : "");
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    /* syslog levels: 0–3 error, 4 warning, 5–7 notice/info/debug. Errors are
     * also reported through error_cb, so they are kept at WARN here. */
    vb_log(level <= 4 ? VB_LOG_WARN : VB_LOG_DEBUG, "librdkafka %s: %s", fac ? fac : "",
           buf ? buf : "");
}

static void *poll_main(void *arg)
{
    vb_kafka_producer *p = arg;
    while (!atomic_load(&p->stop))
        rd_kafka_poll(p->rk, 100);
    return NULL;
}

static vb_err conf_set(rd_kafka_conf_t *conf, const char *name, const char *value,
                       vb_error *err)
{
    char errstr[256];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof errstr) != RD_KAFKA_CONF_OK)
        return vb_error_set(err, VB_ERR_KAFKA, "kafka setting %s: %s", name, errstr);
    return VB_OK;
}

vb_err vb_kafka_producer_new(const char *brokers, const char *const *props,
                             const char *client_id, vb_kafka_producer **out, vb_error *err)
{
    vb_kafka_producer *p = NULL;
    rd_kafka_conf_t *conf = NULL;
    int mu_init = 0, cv_init = 0;
    vb_err rc = VB_ERR_KAFKA;
    char errstr[512];
    char timeout[32];

    if (out)
        *out = NULL;
    if (!out || !brokers || !*brokers)
        return vb_error_set(err, VB_ERR_INVALID, "kafka producer: no brokers given");
    if ((rc = vb__kafka_probe(brokers, props, VB__KAFKA_PROBE_MS, err)) != VB_OK)
        return rc;
    if (!(p = calloc(1, sizeof *p)))
        return vb_error_set(err, VB_ERR_NOMEM, "kafka producer: out of memory");
    atomic_init(&p->stop, 0);
    atomic_init(&p->next_partition, 0);
    if (pthread_mutex_init(&p->mu, NULL) != 0)
        goto fail_nomem;
    mu_init = 1;
    if (pthread_cond_init(&p->cv, NULL) != 0)
        goto fail_nomem;
    cv_init = 1;
    if (!(conf = rd_kafka_conf_new()))
        goto fail_nomem;

    snprintf(timeout, sizeof timeout, "%d", VB_KAFKA_DELIVERY_TIMEOUT_MS);
    if (conf_set(conf, "bootstrap.servers", brokers, err) != VB_OK ||
        conf_set(conf, "client.id", client_id && *client_id ? client_id : "visionbatch", err) !=
            VB_OK ||
        conf_set(conf, "enable.idempotence", "true", err) != VB_OK ||
        conf_set(conf, "acks", "all", err) != VB_OK ||
        conf_set(conf, "linger.ms", "0", err) != VB_OK ||
        conf_set(conf, "message.timeout.ms", timeout, err) != VB_OK ||
        conf_set(conf, "socket.keepalive.enable", "true", err) != VB_OK ||
        conf_set(conf, "reconnect.backoff.max.ms", "5000", err) != VB_OK) {
        rc = VB_ERR_KAFKA;
        goto fail;
    }
    if (!props_set_partitioner(props)) {
        rd_kafka_topic_conf_t *tconf = rd_kafka_topic_conf_new();
        if (!tconf)
            goto fail_nomem;
        rd_kafka_topic_conf_set_partitioner_cb(tconf, spread_partitioner);
        rd_kafka_topic_conf_set_opaque(tconf, p);
        rd_kafka_conf_set_default_topic_conf(conf, tconf); /* takes tconf */
    }
    if ((rc = vb__kafka_conf_apply(conf, props, err)) != VB_OK)
        goto fail;
    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_log_cb(conf, log_cb);

    /* rd_kafka_new takes ownership of conf on success only. */
    if (!(p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr))) {
        rc = vb_error_set(err, VB_ERR_KAFKA, "kafka producer: %s", errstr);
        goto fail;
    }
    conf = NULL;
    if (pthread_create(&p->poller, NULL, poll_main, p) != 0) {
        rc = vb_error_set(err, VB_ERR_KAFKA, "kafka producer: cannot start the poll thread");
        goto fail;
    }
    p->poller_started = 1;
    *out = p;
    return VB_OK;

fail_nomem:
    rc = vb_error_set(err, VB_ERR_NOMEM, "kafka producer: out of memory");
fail:
    if (conf)
        rd_kafka_conf_destroy(conf);
    if (p->rk)
        rd_kafka_destroy(p->rk);
    if (cv_init)
        pthread_cond_destroy(&p->cv);
    if (mu_init)
        pthread_mutex_destroy(&p->mu);
    free(p);
    return rc;
}

void vb_kafka_producer_free(vb_kafka_producer *p, int timeout_ms)
{
    if (!p)
        return;
    if (p->poller_started) {
        atomic_store(&p->stop, 1);
        pthread_join(p->poller, NULL);
    }
    /* flush() polls by itself now that the poll thread is gone. */
    rd_kafka_resp_err_t ferr = rd_kafka_flush(p->rk, timeout_ms > 0 ? timeout_ms : 0);
    if (ferr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        int left = rd_kafka_outq_len(p->rk);
        VB_WARN("kafka producer: %d message(s) not delivered at shutdown", left);
        /* Purging makes every pending message report ERR__PURGE_*, which
         * releases the completion records still waiting for a report. */
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        for (int i = 0; i < 50 && rd_kafka_outq_len(p->rk) > 0; i++)
            rd_kafka_poll(p->rk, 100);
    }
    rd_kafka_poll(p->rk, 0);
    rd_kafka_destroy(p->rk);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

static int header_name_ok(const char *s)
{
    return s && *s && strlen(s) <= 255;
}

vb_err vb_kafka_produce_sync(vb_kafka_producer *p, const char *topic, const char *key,
                             const void *value, size_t len, const vb_kafka_header *headers,
                             size_t nheaders, int timeout_ms, vb_error *err)
{
    rd_kafka_headers_t *hdrs = NULL;
    vb__kafka_dr *dr = NULL;

    if (!p || !topic || !*topic || (len && !value) || (nheaders && !headers))
        return vb_error_set(err, VB_ERR_INVALID, "kafka produce: bad arguments");
    if (timeout_ms <= 0)
        timeout_ms = VB_KAFKA_DELIVERY_TIMEOUT_MS + 5000;
    long long deadline = vb__mono_ms() + timeout_ms;

    if (nheaders) {
        if (!(hdrs = rd_kafka_headers_new(nheaders)))
            return vb_error_set(err, VB_ERR_NOMEM, "kafka produce: out of memory");
        for (size_t i = 0; i < nheaders; i++) {
            if (!header_name_ok(headers[i].name)) {
                rd_kafka_headers_destroy(hdrs);
                return vb_error_set(err, VB_ERR_INVALID, "kafka produce: bad header name");
            }
            const char *v = headers[i].value;
            rd_kafka_header_add(hdrs, headers[i].name, -1, v, v ? -1 : 0);
        }
    }
    if (!(dr = calloc(1, sizeof *dr))) {
        if (hdrs)
            rd_kafka_headers_destroy(hdrs);
        return vb_error_set(err, VB_ERR_NOMEM, "kafka produce: out of memory");
    }
    dr->refs = 2; /* this call + the delivery report */

    rd_kafka_resp_err_t perr;
    for (;;) {
        /* RD_KAFKA_MSG_F_COPY: the value stays the caller's; on success the
         * headers belong to the message. */
        perr = rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(topic),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                 RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                                 RD_KAFKA_V_VALUE((void *)value, len),
                                 RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(dr), RD_KAFKA_V_END);
        if (perr != RD_KAFKA_RESP_ERR__QUEUE_FULL || vb__mono_ms() >= deadline)
            break;
        struct timespec pause = {0, 10 * 1000000L}; /* the poll thread drains the queue */
        nanosleep(&pause, NULL);
    }
    if (perr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (hdrs)
            rd_kafka_headers_destroy(hdrs);
        free(dr);
        return vb_error_set(err, perr == RD_KAFKA_RESP_ERR__QUEUE_FULL ? VB_ERR_TIMEOUT
                                 : perr == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ? VB_ERR_TOO_LARGE
                                                                                 : VB_ERR_KAFKA,
                            "kafka produce to %s: %s", topic, rd_kafka_err2str(perr));
    }

    pthread_mutex_lock(&p->mu);
    while (!dr->done) {
        long long left = deadline - vb__mono_ms();
        if (left <= 0)
            break;
        struct timespec until = vb__realtime_after(left);
        int rc = pthread_cond_timedwait(&p->cv, &p->mu, &until);
        if (rc != 0 && rc != ETIMEDOUT && rc != EINTR)
            break;
    }
    int done = dr->done;
    rd_kafka_resp_err_t derr = dr->err;
    dr_unref_locked(dr); /* the report frees it if it is still pending */
    pthread_mutex_unlock(&p->mu);

    if (!done)
        return vb_error_set(err, VB_ERR_TIMEOUT,
                            "kafka produce to %s: no delivery report within %d ms (the "
                            "message may still be delivered)",
                            topic, timeout_ms);
    if (derr != RD_KAFKA_RESP_ERR_NO_ERROR)
        return vb_error_set(err,
                            derr == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT ? VB_ERR_TIMEOUT
                            : derr == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ? VB_ERR_TOO_LARGE
                                                                           : VB_ERR_KAFKA,
                            "kafka delivery to %s failed: %s", topic, rd_kafka_err2str(derr));
    return VB_OK;
}

int vb_kafka_producer_reachable(vb_kafka_producer *p, int timeout_ms)
{
    if (!p)
        return 0;
    const struct rd_kafka_metadata *md = NULL;
    /* all_topics=0 and no topic: a brokers-only metadata request. */
    rd_kafka_resp_err_t e = rd_kafka_metadata(p->rk, 0, NULL, &md, timeout_ms > 0 ? timeout_ms : 1);
    int ok = e == RD_KAFKA_RESP_ERR_NO_ERROR && md && md->broker_cnt > 0;
    if (md)
        rd_kafka_metadata_destroy(md);
    return ok;
}
