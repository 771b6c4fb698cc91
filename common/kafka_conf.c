/*
 * kafka_conf.c — the operator's librdkafka properties and the start-up probe.
 *
 * Pass-through. Any librdkafka property (security.protocol, sasl.*, ssl.*,
 * tuning) may be given by the operator; the Kafka modules set their own
 * settings first and the operator's after them, so tunables (linger.ms,
 * session.timeout.ms, client.id, …) can be overridden. A few properties are
 * reserved because visionbatch's guarantees rest on them (idempotent acks=all
 * delivery within a known time, manual offset storage, where a new group
 * starts, the cooperative rebalance handling, the reader's end-of-partition
 * events, the broker list and group that have their own settings): those are
 * refused, under every alias librdkafka knows them by, and with the
 * "topic." prefix that forwards a property to the default topic config.
 * Names and values are judged by librdkafka itself (rd_kafka_conf_set on a
 * scratch configuration), so its own message reaches the operator. Values
 * are never quoted in messages; property names that hold secrets are told by
 * vb_kafka_property_is_secret().
 *
 * Probe. librdkafka reconnects for ever after a refused SASL login or a
 * failed TLS handshake, which would leave a program hanging without a word.
 * vb__kafka_probe() connects a short-lived client with the same settings and
 * turns those two failures into an error at start, while an unreachable
 * cluster stays what it was before: something the client rides out.
 *
 * Threading: every function may be called from any thread; the probe's
 * callbacks run on the calling thread (rd_kafka_poll).
 */
#include "kafka_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util.h"
#include "visionbatch/kafka.h"
#include "visionbatch/log.h"
#include "visionbatch/redact.h"

/* Reserved properties and why (aliases listed separately). */
static const char *const reserved[][2] = {
    {"bootstrap.servers", "the brokers come from kafka_brokers"},
    {"metadata.broker.list", "the brokers come from kafka_brokers"},
    {"group.id", "the consumer group comes from group_id"},
    {"enable.idempotence", "a run is queued only once acknowledged exactly once"},
    {"acks", "a run is queued only once every in-sync replica has it"},
    {"request.required.acks", "a run is queued only once every in-sync replica has it"},
    {"message.timeout.ms", "every message must be decided within the producer's wait"},
    {"delivery.timeout.ms", "every message must be decided within the producer's wait"},
    {"transactional.id", "the producer is not transactional"},
    {"enable.auto.commit", "offsets are committed only once a run is safely recorded"},
    {"auto.commit.enable", "offsets are committed only once a run is safely recorded"},
    {"enable.auto.offset.store", "offsets are stored only once a run is safely recorded"},
    {"auto.offset.reset", "a new consumer group must start at the oldest queued run"},
    {"partition.assignment.strategy", "rebalances are handled as cooperative-sticky"},
    {"enable.partition.eof", "the readers of the CLI rely on end-of-partition events"},
};

const char *vb_kafka_property_reserved(const char *name)
{
    if (!name)
        return NULL;
    if (strncmp(name, "topic.", 6) == 0)
        name += 6;
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++) {
        if (strcmp(reserved[i][0], name) == 0)
            return reserved[i][1];
    }
    return NULL;
}

int vb_kafka_property_is_secret(const char *name)
{
    if (!name)
        return 0;
    return strstr(name, "password") || strstr(name, "secret") ||
           strcmp(name, "ssl.key.pem") == 0 || strcmp(name, "sasl.oauthbearer.config") == 0;
}

/* Sets one property; the message names the property, never its value. */
static vb_err set_one(rd_kafka_conf_t *conf, const char *name, const char *value, vb_error *err)
{
    char errstr[512];
    const char *why = vb_kafka_property_reserved(name);
    if (why)
        return vb_error_set(err, VB_ERR_CONFIG,
                            "kafka property %.100s is set by visionbatch itself and cannot be "
                            "overridden (%s)",
                            name, why);
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        vb_redact_text(errstr); /* librdkafka may repeat a rejected value */
        return vb_error_set(err, VB_ERR_CONFIG, "kafka property %.100s: %s", name, errstr);
    }
    return VB_OK;
}

vb_err vb_kafka_property_check(const char *name, const char *value, vb_error *err)
{
    if (!name || !*name || !value)
        return vb_error_set(err, VB_ERR_CONFIG, "kafka property: a name and a value are needed");
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf)
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    vb_err rc = set_one(conf, name, value, err);
    rd_kafka_conf_destroy(conf);
    return rc;
}

vb_err vb__kafka_conf_apply(rd_kafka_conf_t *conf, const char *const *props, vb_error *err)
{
    for (size_t i = 0; props && props[i] && props[i + 1]; i += 2) {
        vb_err rc = set_one(conf, props[i], props[i + 1], err);
        if (rc != VB_OK)
            return rc;
    }
    return VB_OK;
}

/* What the probe's callbacks saw. */
typedef struct probe_state {
    pthread_mutex_t mu;
    int down;              /* every broker is down (unreachable, or refused us) */
    rd_kafka_resp_err_t code; /* first refused login / failed handshake, else 0 */
    char reason[512];
} probe_state;

static int is_security_error(int err)
{
    return err == RD_KAFKA_RESP_ERR__AUTHENTICATION || err == RD_KAFKA_RESP_ERR__SSL ||
           err == RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED ||
           err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
           err == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED;
}

static void probe_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    probe_state *st = opaque;
    pthread_mutex_lock(&st->mu);
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        st->down = 1;
    else if (is_security_error(err) && !st->code) {
        st->code = (rd_kafka_resp_err_t)err;
        snprintf(st->reason, sizeof st->reason, "%s", reason ? reason : rd_kafka_err2str(err));
    }
    pthread_mutex_unlock(&st->mu);
}

static void probe_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    (void)level;
    /* The outcome is reported once by the probe; the details stay at debug. */
    vb_log(VB_LOG_DEBUG, "librdkafka probe %s: %s", fac ? fac : "", buf ? buf : "");
}

vb_err vb__kafka_probe(const char *brokers, const char *const *props, int timeout_ms,
                       vb_error *err)
{
    probe_state st = {.mu = PTHREAD_MUTEX_INITIALIZER};
    char errstr[512];
    rd_kafka_t *rk = NULL;
    vb_err rc;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf)
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof errstr) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "client.id", "visionbatch", errstr, sizeof errstr) !=
            RD_KAFKA_CONF_OK) {
        rc = vb_error_set(err, VB_ERR_CONFIG, "kafka brokers: %s", errstr);
        goto fail;
    }
    if ((rc = vb__kafka_conf_apply(conf, props, err)) != VB_OK)
        goto fail;
    rd_kafka_conf_set_opaque(conf, &st);
    rd_kafka_conf_set_error_cb(conf, probe_error_cb);
    rd_kafka_conf_set_log_cb(conf, probe_log_cb);
    if (!(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr))) {
        vb_redact_text(errstr);
        rc = vb_error_set(err, VB_ERR_KAFKA, "kafka client: %s", errstr);
        goto fail;
    }
    conf = NULL;
    long long deadline = vb__mono_ms() + (timeout_ms > 0 ? timeout_ms : VB__KAFKA_PROBE_MS);
    long long down_until = 0; /* after "all brokers down", a moment for its reason */
    rc = VB_OK;
    for (;;) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, NULL, &md, 200);
        int answered = e == RD_KAFKA_RESP_ERR_NO_ERROR && md && md->broker_cnt > 0;
        if (md)
            rd_kafka_metadata_destroy(md);
        rd_kafka_poll(rk, 0);
        pthread_mutex_lock(&st.mu);
        rd_kafka_resp_err_t code = st.code;
        int down = st.down;
        pthread_mutex_unlock(&st.mu);
        if (code) {
            vb_redact_text(st.reason);
            rc = vb_error_set(err, VB_ERR_KAFKA, "kafka: %s: %s",
                              code == RD_KAFKA_RESP_ERR__SSL ? "TLS handshake failed"
                              : code == RD_KAFKA_RESP_ERR__AUTHENTICATION ||
                                      code == RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED
                                  ? "authentication failed"
                                  : "not authorized",
                              st.reason);
            break;
        }
        long long now = vb__mono_ms();
        if (answered || now >= deadline)
            break;
        if (down && !down_until)
            down_until = now + 300;
        if (down_until && now >= down_until)
            break;
    }
fail:
    if (rk)
        rd_kafka_destroy(rk);
    if (conf)
        rd_kafka_conf_destroy(conf);
    pthread_mutex_destroy(&st.mu);
    return rc;
}
