/*
 * kafka_internal.h — what the Kafka modules (kafka_producer.c,
 * kafka_consumer.c, kafka_reader.c) share from kafka_conf.c: applying the
 * operator's pass-through properties to a librdkafka configuration, and the
 * start-up probe that turns a refused login or TLS handshake into an error
 * instead of endless reconnects.
 */
#ifndef VISIONBATCH_KAFKA_INTERNAL_H
#define VISIONBATCH_KAFKA_INTERNAL_H

#include <librdkafka/rdkafka.h>

#include "visionbatch/error.h"

/* How long a client being created waits for the cluster to either answer,
 * refuse the login or the TLS handshake, or be plainly unreachable. */
#define VB__KAFKA_PROBE_MS 10000

/* Sets every pass-through property (name, value, …, NULL; NULL = none) on
 * conf, after the caller's own settings so that tunables can be overridden.
 * Properties reserved by visionbatch are refused (VB_ERR_CONFIG);
 * librdkafka's refusal of a name or value is VB_ERR_CONFIG with its message.
 * Messages never quote values. */
vb_err vb__kafka_conf_apply(rd_kafka_conf_t *conf, const char *const *props, vb_error *err);

/* Connects a short-lived client with the same brokers and properties and
 * waits up to timeout_ms: VB_OK once the cluster answers, or when it is
 * unreachable or silent (reconnecting stays the caller's business, as
 * before); VB_ERR_KAFKA with librdkafka's reason when the broker refuses the
 * SASL login or the TLS handshake fails, or when the configuration cannot
 * make a client (e.g. an unreadable ssl.ca.location). */
vb_err vb__kafka_probe(const char *brokers, const char *const *props, int timeout_ms,
                       vb_error *err);

#endif
