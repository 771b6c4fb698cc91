/*
 * config.h — settings of every visionbatch program, from four sources.
 *
 * Precedence: command-line flag > environment variable > JSON config file >
 * built-in default (SPEC.md §5, §6). The config file is `--config PATH`, else
 * $VISIONBATCH_CONFIG, else /etc/batch_processor/config.json if it exists.
 * Settings are described by one table in config.c (JSON key, flag, env var,
 * type, default, bounds, which programs use it); the whole result is
 * validated before it is returned, so a program never starts half-configured.
 *
 * A vb_config owns its strings; free with vb_config_free(). Read-only after
 * loading, so threads may share it.
 */
#ifndef VISIONBATCH_CONFIG_H
#define VISIONBATCH_CONFIG_H

#include <stdio.h>

#include "visionbatch/error.h"

/* Which program is loading: selects the settings it accepts and requires. */
typedef enum vb_program {
    VB_PROG_RUN_ONCE = 1 << 0, /* visionbatch run-once */
    VB_PROG_PRODUCER = 1 << 1, /* visionbatch-producer */
    VB_PROG_WORKER = 1 << 2,   /* visionbatch-worker */
    VB_PROG_ADMIN = 1 << 3,    /* visionbatch runs … (Redis/Kafka only) */
} vb_program;

typedef struct vb_config {
    /* SPEC.md §5 — the external platform and the backend. */
    char *external_api_get_url;
    char *external_api_post_url;
    char *external_api_key; /* secret: never logged, never on Kafka */
    char *backend_api_url;  /* default http://localhost:8000 */
    char *organization_id;

    char *config_path; /* the file that was read, or NULL */

    /* Logging. */
    char *log_file;  /* default /var/log/batch_processor.log; "" = stderr only */
    int log_format;  /* vb_log_format */
    int log_level;   /* vb_log_level */

    /* Processing. */
    char *temp_dir;               /* default /tmp/batch_processor */
    long temp_sweep_interval_s;   /* sweep of dead processes' run dirs; 0 = at start only */
    long page_size;               /* runs per GET page, default 50 */
    long max_pages;               /* safety bound on paging, default 1000 */
    long download_concurrency;    /* parallel downloads per run, default 4 */
    long long max_document_bytes; /* per document, default 100 MiB */
    long long max_response_bytes; /* JSON answers, default 16 MiB */
    long long max_report_bytes;   /* one HTML report, default 256 MiB */
    long connect_timeout_s;       /* default 10 */
    long request_timeout_s;       /* API calls, default 60 */
    long download_timeout_s;      /* one document, default 600 */
    long upload_timeout_s;        /* one upload (image or report), default 600 */
    long retries;                 /* attempts after the first, default 3 */
    long retry_base_ms;           /* backoff base, default 500 */
    long retry_max_ms;            /* backoff cap, default 30000 */
    long batch_timeout_s;         /* per backend batch, default 3600 */
    long max_images_per_batch;    /* default 20 (backend rejects more) */
    long status_poll_min_ms;      /* first status poll interval, default 50 */
    long status_poll_max_ms;      /* poll backoff cap, default 30000 */
    int allow_partial;            /* process a run even if some images fail */
    char *chat_id;                /* /upload-image chat_id, default cron_batch_job */

    /* Services (SPEC.md §6). */
    char *kafka_brokers;   /* default 127.0.0.1:9092 */
    /* librdkafka properties passed through to every Kafka client: name,
     * value, name, value, …, NULL; NULL when none. From the config file's
     * "kafka" object, VISIONBATCH_KAFKA_PROPERTY_<NAME> variables and
     * --kafka-property NAME=VALUE (per property: option > environment >
     * file), each accepted by librdkafka and not reserved (kafka.h). Values
     * of secret properties are registered with the redactor. */
    const char *const *kafka_properties;
    char *redis_url;       /* default redis://127.0.0.1:6379/0 */
    /* rediss:// only (PEM paths; NULL = unset): the CA bundle of the server's
     * certificate (default: the system's), a client certificate and its key,
     * and the key's password (secret). Loaded while the settings are read. */
    char *redis_tls_ca_file;
    char *redis_tls_cert_file;
    char *redis_tls_key_file;
    char *redis_tls_key_password;
    char *listen;          /* producer REST API, default 127.0.0.1:8000 */
    long catch_up_window_s; /* producer: missed cron tick still fired, default 600 */
    long executions_cap;    /* producer: executions kept per job, default 100 */
    long cron_fire_threads; /* producer: threads firing due cron jobs, default 4 */
    char *webhook_allowed_hosts; /* producer: hosts webhooks may call, NULL = none */
    long webhook_max_attempts;   /* producer: attempts per webhook delivery, default 6 */
    char *api_token_file;  /* producer REST API token file */
    char *api_token;       /* VISIONBATCH_API_TOKEN or read from the file; secret */
    char *secret_key_file; /* base64 32-byte key file */
    char *secret_key;      /* VISIONBATCH_SECRET_KEY or from the file; secret */
    long concurrency;      /* worker slots, default 4 */
    long prefetch;         /* worker: messages queued ahead per slot, default 32 */
    char *metrics_listen;  /* worker metrics/health, default 127.0.0.1:9101 */
    long http_threads;                /* HTTP listener event-loop threads, default 16 */
    long http_max_connections;        /* open HTTP connections, default 512 */
    long http_max_connections_per_ip; /* of one client address, default 32 */
    long http_header_timeout_s;       /* request headers complete within, default 10 */
    long http_idle_timeout_s;         /* idle HTTP connection closed after, default 30 */
    char *topic;           /* default visionbatch.runs */
    char *dlq_topic;       /* default visionbatch.runs.dlq */
    char *group_id;        /* default visionbatch-workers */
    long lease_ms;         /* run lock TTL, default 30000 */
    long max_attempts;     /* before a run is dead, default 5 */
    long poll_interval_s;  /* producer --interval, default 300 */
    char *worker_id;       /* default hostname:pid */
    long shutdown_grace_s; /* worker: wait for runs in flight at SIGTERM, default 60 */
} vb_config;

/* Loads settings for `prog` (one VB_PROG_* value, or several OR-ed; 0 = all)
 * from argv/environ/file/defaults into *cfg (which is zeroed first).
 * argv[0] is the program (or subcommand) name and is skipped. Options are
 * `--name value` or `--name=value`; a bool option alone means true
 * (`--allow-partial`, `--allow-partial=false`); `--` ends the options.
 * Recognised options are consumed; the remaining positional arguments are
 * moved, in order, to argv[1..] and returned as (*rest = argv + 1, *nrest)
 * (rest may be NULL when the program takes none: then they are an error).
 * Unknown options, options of other programs, bad values and missing
 * required settings fail with VB_ERR_CONFIG and one message naming every
 * offending setting and its source (one per line); secret values are never
 * quoted. Unknown keys in the config file only log a warning. Secrets are
 * registered with vb_redact_add_secret(). `--help` is not handled here (see
 * vb_config_wants_help, vb_config_print_help). On failure *cfg is freed.
 * Reads the environment: call before threads start. */
vb_err vb_config_load(vb_config *cfg, unsigned prog, int argc, char **argv, char ***rest,
                      int *nrest, vb_error *err);

/* vb_config_load, except that the options named in `passthrough` (a
 * NULL-terminated list of names without "--", e.g. {"once", "interval",
 * NULL}) are left untouched among the positional arguments in *rest, in
 * either form (`--interval=60`, or `--interval` followed by `60`), for the
 * program's own parser. */
vb_err vb_config_load_ex(vb_config *cfg, unsigned prog, int argc, char **argv,
                         const char *const *passthrough, char ***rest, int *nrest,
                         vb_error *err);

/* 1 if argv[1..] holds --help or -h before any "--". */
int vb_config_wants_help(int argc, char **argv);

/* Checks that the settings needed to talk to the platform are present
 * (external_api_get_url, _post_url, _key, organization_id). Used by programs
 * for which they are optional at load time (worker). */
vb_err vb_config_require_platform(const vb_config *cfg, vb_error *err);

/* Prints the settings table for `prog` (option, environment variable, JSON
 * key, default, meaning), aligned; secrets' values are never shown. */
void vb_config_print_help(FILE *out, unsigned prog);

/* Deep copy into dst (overwritten, not freed first); on VB_ERR_NOMEM dst is
 * left zeroed. vb_config_free accepts NULL, wipes secrets and zeroes the
 * struct. */
vb_err vb_config_copy(vb_config *dst, const vb_config *src);
void vb_config_free(vb_config *cfg);

#endif
