/*
 * config_internal.h — hooks of config.c for the unit tests only.
 */
#ifndef VISIONBATCH_CONFIG_INTERNAL_H
#define VISIONBATCH_CONFIG_INTERNAL_H

#include <stddef.h>

/* The config file read when neither --config nor $VISIONBATCH_CONFIG is
 * given, and only if it exists. Defaults to /etc/batch_processor/config.json;
 * tests point it at a temporary path so they never depend on /etc. */
extern const char *vb__config_default_path;

/* The environment convention of Kafka properties: the variable
 * VISIONBATCH_KAFKA_PROPERTY_<CODE> sets property <name>, where CODE is the
 * name upper-cased with "." written "_", "_" written "__" and "-" written
 * "___". encode writes CODE for `name` (0, or -1 when out is too small or the
 * name holds other characters than [a-z0-9._-]); decode writes the name for
 * CODE (0, or -1 for characters other than [A-Z0-9_] or a run of more than
 * three underscores). */
int vb__config_kafka_env_encode(const char *name, char *out, size_t outlen);
int vb__config_kafka_env_decode(const char *code, char *out, size_t outlen);

#endif
