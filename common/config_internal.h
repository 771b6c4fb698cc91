/*
 * config_internal.h — hooks of config.c for the unit tests only.
 */
#ifndef VISIONBATCH_CONFIG_INTERNAL_H
#define VISIONBATCH_CONFIG_INTERNAL_H

/* The config file read when neither --config nor $VISIONBATCH_CONFIG is
 * given, and only if it exists. Defaults to /etc/batch_processor/config.json;
 * tests point it at a temporary path so they never depend on /etc. */
extern const char *vb__config_default_path;

#endif
