/*
 * config.c — every setting of every visionbatch program, from one table.
 *
 * Each row of `settings` names a field of vb_config with its JSON key, its
 * command-line flag, its environment variable, its type, default and bounds,
 * the programs that accept it and those that require it, and whether it is a
 * secret. Loading applies the sources in increasing precedence — built-in
 * default, JSON config file, environment, command line — recording where
 * each value came from, then validates the whole result (types, bounds, URL
 * schemes, cross-field rules, required settings) and reports every problem
 * in one error message, one per line. A program therefore never starts
 * half-configured, and an error names the setting and the source to fix.
 *
 * Kafka properties are not rows of the table: any librdkafka property may be
 * passed through (the "kafka" object of the file, VISIONBATCH_KAFKA_PROPERTY_
 * variables, repeatable --kafka-property NAME=VALUE), merged per property
 * with the same precedence, and each judged by librdkafka at load time.
 *
 * A rediss:// redis_url makes the load set up Redis TLS for the process
 * (redis/redis.h: vb__redis_tls_configure) from the redis_tls_* settings, so
 * an unreadable CA, certificate or key fails here, naming the setting.
 *
 * Secrets (external_api_key, api_token, secret_key, redis_tls_key_password,
 * secret Kafka properties) are registered with the redactor as soon as they are read, and their
 * values never appear in error messages. The config file may hold the
 * external API key: if it is readable by group or others, a warning suggests
 * chmod 600.
 *
 * Threading: loading uses getenv() and must run before threads start; the
 * resulting vb_config is read-only and may be shared. It owns its strings.
 */
#include "visionbatch/config.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_internal.h"
#include "redis/redis.h"
#include "visionbatch/buf.h"
#include "visionbatch/kafka.h"
#include "visionbatch/log.h"
#include "visionbatch/redact.h"

const char *vb__config_default_path = "/etc/batch_processor/config.json";

#define CONFIG_FILE_MAX (1024 * 1024)  /* bytes of a JSON config file */
#define SECRET_FILE_MAX 4096           /* bytes read from a token/key file */
#define STRING_VALUE_MAX 8192          /* longest accepted string setting */
#define CONFIG_ENV "VISIONBATCH_CONFIG"
#define KAFKA_KEY "kafka"                          /* JSON object of properties */
#define KAFKA_FLAG "kafka-property"                /* --kafka-property NAME=VALUE */
#define KAFKA_ENV_PREFIX "VISIONBATCH_KAFKA_PROPERTY_" /* + the encoded name */
#define KAFKA_NAME_MAX 128                         /* longest property name */
#define KAFKA_PROPS_MAX 256                        /* properties in all */

extern char **environ;

typedef enum ctype { CT_STR, CT_LONG, CT_LLONG, CT_BOOL, CT_ENUM } ctype;

enum {
    CF_SECRET = 1u << 0,   /* never shown, registered with the redactor */
    CF_URL = 1u << 1,      /* http:// or https:// with a host */
    CF_EMPTY_OK = 1u << 2, /* "" is a meaningful value */
    CF_ADDR = 1u << 3,     /* host:port */
    CF_REDIS = 1u << 4,    /* a Redis URL (redis/redis.h grammar) */
};

/* Where a value came from, in increasing precedence. */
typedef enum source { SRC_NONE = 0, SRC_DEFAULT, SRC_FILE, SRC_ENV, SRC_FLAG } source;

typedef struct setting {
    const char *key;  /* JSON key, = vb_config field name */
    const char *flag; /* without "--"; NULL = no flag */
    const char *env;  /* NULL = no environment variable */
    ctype type;
    size_t off; /* offset in vb_config */
    const char *def;
    long long min, max; /* numbers only */
    unsigned progs;     /* VB_PROG_* that accept it */
    unsigned required;  /* VB_PROG_* that need it */
    unsigned flags;     /* CF_* */
    int (*parse_enum)(const char *);
    const char *help;
} setting;

#define P_ONCE VB_PROG_RUN_ONCE
#define P_PROD VB_PROG_PRODUCER
#define P_WORK VB_PROG_WORKER
#define P_ADMIN VB_PROG_ADMIN
#define P_ALL (P_ONCE | P_PROD | P_WORK | P_ADMIN)
#define P_FETCH (P_ONCE | P_PROD | P_WORK) /* talks to the external API */
#define P_PIPE (P_ONCE | P_WORK)           /* runs the processing pipeline */
#define P_SVC (P_PROD | P_WORK | P_ADMIN)  /* uses Kafka/Redis */

#define OFF(field) offsetof(vb_config, field)
#define KIB 1024LL
#define MIB (1024LL * 1024LL)
#define GIB (1024LL * MIB)

static const setting settings[] = {
    /* SPEC.md §5. */
    {"external_api_get_url", "external-api-get-url", "EXTERNAL_API_GET_URL", CT_STR,
     OFF(external_api_get_url), NULL, 0, 0, P_FETCH, P_ONCE, CF_URL, NULL,
     "GET endpoint listing unprocessed runs"},
    {"external_api_post_url", "external-api-post-url", "EXTERNAL_API_POST_URL", CT_STR,
     OFF(external_api_post_url), NULL, 0, 0, P_FETCH, P_ONCE, CF_URL, NULL,
     "POST endpoint receiving the HTML reports"},
    {"external_api_key", "external-api-key", "EXTERNAL_API_KEY", CT_STR, OFF(external_api_key),
     NULL, 0, 0, P_FETCH, P_ONCE, CF_SECRET, NULL, "Bearer token of the external API (secret)"},
    {"backend_api_url", "backend-api-url", "BACKEND_API_URL", CT_STR, OFF(backend_api_url),
     "http://localhost:8000", 0, 0, P_FETCH, 0, CF_URL, NULL, "batch-analysis backend"},
    {"organization_id", "organization-id", "ORGANIZATION_ID", CT_STR, OFF(organization_id), NULL,
     0, 0, P_FETCH, P_ONCE, 0, NULL, "organization whose runs are processed"},

    /* Logging. */
    {"log_file", "log-file", "VISIONBATCH_LOG_FILE", CT_STR, OFF(log_file),
     "/var/log/batch_processor.log", 0, 0, P_ALL, 0, CF_EMPTY_OK, NULL,
     "log file (appended); \"\" = stderr only"},
    {"log_format", "log-format", "VISIONBATCH_LOG_FORMAT", CT_ENUM, OFF(log_format), "text", 0, 0,
     P_ALL, 0, 0, vb_log_format_parse, "text|json"},
    {"log_level", "log-level", "VISIONBATCH_LOG_LEVEL", CT_ENUM, OFF(log_level), "info", 0, 0,
     P_ALL, 0, 0, vb_log_level_parse, "debug|info|warn|error"},

    /* Processing. */
    {"temp_dir", "temp-dir", "VISIONBATCH_TEMP_DIR", CT_STR, OFF(temp_dir),
     "/tmp/batch_processor", 0, 0, P_PIPE, 0, 0, NULL,
     "run directories (removed after each run); must be ours and private, or sticky"},
    {"temp_sweep_interval_s", "temp-sweep-interval-s", "VISIONBATCH_TEMP_SWEEP_INTERVAL_S",
     CT_LONG, OFF(temp_sweep_interval_s), "300", 0, 86400, P_PIPE, 0, 0, NULL,
     "remove run dirs of dead processes every N s (and at start); 0 = at start only"},
    {"page_size", "page-size", "VISIONBATCH_PAGE_SIZE", CT_LONG, OFF(page_size), "50", 1, 1000,
     P_FETCH, 0, 0, NULL, "runs per GET page"},
    {"max_pages", "max-pages", "VISIONBATCH_MAX_PAGES", CT_LONG, OFF(max_pages), "1000", 1,
     1000000, P_FETCH, 0, 0, NULL, "safety bound on paging"},
    {"download_concurrency", "download-concurrency", "VISIONBATCH_DOWNLOAD_CONCURRENCY", CT_LONG,
     OFF(download_concurrency), "4", 1, 64, P_PIPE, 0, 0, NULL, "parallel downloads per run"},
    {"max_document_bytes", "max-document-bytes", "VISIONBATCH_MAX_DOCUMENT_BYTES", CT_LLONG,
     OFF(max_document_bytes), "104857600", KIB, 16 * GIB, P_PIPE, 0, 0, NULL,
     "largest accepted document"},
    {"max_response_bytes", "max-response-bytes", "VISIONBATCH_MAX_RESPONSE_BYTES", CT_LLONG,
     OFF(max_response_bytes), "16777216", KIB, GIB, P_FETCH, 0, 0, NULL,
     "largest accepted JSON answer"},
    {"max_report_bytes", "max-report-bytes", "VISIONBATCH_MAX_REPORT_BYTES", CT_LLONG,
     OFF(max_report_bytes), "268435456", KIB, 4 * GIB, P_PIPE, 0, 0, NULL,
     "largest accepted HTML report"},
    {"connect_timeout_s", "connect-timeout-s", "VISIONBATCH_CONNECT_TIMEOUT_S", CT_LONG,
     OFF(connect_timeout_s), "10", 1, 3600, P_FETCH, 0, 0, NULL, "TCP/TLS connect timeout"},
    {"request_timeout_s", "request-timeout-s", "VISIONBATCH_REQUEST_TIMEOUT_S", CT_LONG,
     OFF(request_timeout_s), "60", 1, 86400, P_FETCH, 0, 0, NULL, "API call timeout"},
    {"download_timeout_s", "download-timeout-s", "VISIONBATCH_DOWNLOAD_TIMEOUT_S", CT_LONG,
     OFF(download_timeout_s), "600", 1, 86400, P_PIPE, 0, 0, NULL, "one document download"},
    {"upload_timeout_s", "upload-timeout-s", "VISIONBATCH_UPLOAD_TIMEOUT_S", CT_LONG,
     OFF(upload_timeout_s), "600", 1, 86400, P_PIPE, 0, 0, NULL, "one image or report upload"},
    {"retries", "retries", "VISIONBATCH_RETRIES", CT_LONG, OFF(retries), "3", 0, 100, P_FETCH, 0,
     0, NULL, "retries of a failed call after the first attempt"},
    {"retry_base_ms", "retry-base-ms", "VISIONBATCH_RETRY_BASE_MS", CT_LONG, OFF(retry_base_ms),
     "500", 1, 3600000, P_FETCH, 0, 0, NULL, "first retry delay (doubles)"},
    {"retry_max_ms", "retry-max-ms", "VISIONBATCH_RETRY_MAX_MS", CT_LONG, OFF(retry_max_ms),
     "30000", 1, 86400000, P_FETCH, 0, 0, NULL, "longest retry delay"},
    {"batch_timeout_s", "batch-timeout-s", "VISIONBATCH_BATCH_TIMEOUT_S", CT_LONG,
     OFF(batch_timeout_s), "3600", 1, 604800, P_PIPE, 0, 0, NULL, "wait for one backend batch"},
    {"max_images_per_batch", "max-images-per-batch", "VISIONBATCH_MAX_IMAGES_PER_BATCH", CT_LONG,
     OFF(max_images_per_batch), "20", 1, 20, P_PIPE, 0, 0, NULL,
     "images per backend batch (backend limit 20)"},
    {"status_poll_min_ms", "status-poll-min-ms", "VISIONBATCH_STATUS_POLL_MIN_MS", CT_LONG,
     OFF(status_poll_min_ms), "50", 10, 600000, P_PIPE, 0, 0, NULL,
     "first status poll interval (see docs)"},
    {"status_poll_max_ms", "status-poll-max-ms", "VISIONBATCH_STATUS_POLL_MAX_MS", CT_LONG,
     OFF(status_poll_max_ms), "30000", 10, 3600000, P_PIPE, 0, 0, NULL,
     "longest status poll delay"},
    {"allow_partial", "allow-partial", "VISIONBATCH_ALLOW_PARTIAL", CT_BOOL, OFF(allow_partial),
     "false", 0, 1, P_PIPE, 0, 0, NULL, "analyze a run even if some images failed"},
    {"chat_id", "chat-id", "VISIONBATCH_CHAT_ID", CT_STR, OFF(chat_id), "cron_batch_job", 0, 0,
     P_PIPE, 0, 0, NULL, "chat_id sent with /upload-image"},

    /* Services, SPEC.md §6. */
    {"kafka_brokers", "kafka-brokers", "KAFKA_BROKERS", CT_STR, OFF(kafka_brokers),
     "127.0.0.1:9092", 0, 0, P_SVC, 0, 0, NULL, "Kafka bootstrap servers"},
    {"redis_url", "redis-url", "REDIS_URL", CT_STR, OFF(redis_url), "redis://127.0.0.1:6379/0", 0,
     0, P_SVC, 0, CF_REDIS, NULL, "Redis: redis[s]://[[user:]password@]host[:port][/db] or unix:///path[?db=N]"},
    {"redis_tls_ca_file", "redis-tls-ca-file", "VISIONBATCH_REDIS_TLS_CA_FILE", CT_STR,
     OFF(redis_tls_ca_file), NULL, 0, 0, P_SVC, 0, 0, NULL,
     "rediss://: CA bundle (PEM) of the server's certificate (default: the system's)"},
    {"redis_tls_cert_file", "redis-tls-cert-file", "VISIONBATCH_REDIS_TLS_CERT_FILE", CT_STR,
     OFF(redis_tls_cert_file), NULL, 0, 0, P_SVC, 0, 0, NULL,
     "rediss://: client certificate (PEM), with redis_tls_key_file"},
    {"redis_tls_key_file", "redis-tls-key-file", "VISIONBATCH_REDIS_TLS_KEY_FILE", CT_STR,
     OFF(redis_tls_key_file), NULL, 0, 0, P_SVC, 0, 0, NULL,
     "rediss://: private key (PEM) of the client certificate"},
    {"redis_tls_key_password", NULL, "VISIONBATCH_REDIS_TLS_KEY_PASSWORD", CT_STR,
     OFF(redis_tls_key_password), NULL, 0, 0, P_SVC, 0, CF_SECRET, NULL,
     "rediss://: password of an encrypted redis_tls_key_file (secret)"},
    {"listen", "listen", "VISIONBATCH_LISTEN", CT_STR, OFF(listen), "127.0.0.1:8000", 0, 0, P_PROD,
     0, CF_ADDR, NULL, "cron-jobs REST API address"},
    {"catch_up_window_s", "catch-up-window-s", "VISIONBATCH_CATCH_UP_WINDOW_S", CT_LONG,
     OFF(catch_up_window_s), "600", 60, 86400, P_PROD, 0, 0, NULL,
     "a cron tick missed while down fires once if at most this old"},
    {"executions_cap", "executions-cap", "VISIONBATCH_EXECUTIONS_CAP", CT_LONG,
     OFF(executions_cap), "100", 1, 100000, P_PROD, 0, 0, NULL,
     "executions kept per cron job"},
    {"cron_fire_threads", "cron-fire-threads", "VISIONBATCH_CRON_FIRE_THREADS", CT_LONG,
     OFF(cron_fire_threads), "4", 1, 64, P_PROD, 0, 0, NULL,
     "threads firing due cron jobs in parallel"},
    {"webhook_allowed_hosts", "webhook-allowed-hosts", "VISIONBATCH_WEBHOOK_ALLOWED_HOSTS", CT_STR,
     OFF(webhook_allowed_hosts), NULL, 0, 0, P_PROD, 0, 0, NULL,
     "hosts cron-job webhooks may call: name,IP,*.domain (empty: none)"},
    {"webhook_max_attempts", "webhook-max-attempts", "VISIONBATCH_WEBHOOK_MAX_ATTEMPTS", CT_LONG,
     OFF(webhook_max_attempts), "6", 1, 20, P_PROD, 0, 0, NULL,
     "attempts per webhook delivery before it is given up"},
    {"api_token_file", "api-token-file", "VISIONBATCH_API_TOKEN_FILE", CT_STR, OFF(api_token_file),
     NULL, 0, 0, P_PROD, 0, 0, NULL, "file holding the REST API token"},
    {"api_token", NULL, "VISIONBATCH_API_TOKEN", CT_STR, OFF(api_token), NULL, 0, 0, P_PROD, 0,
     CF_SECRET, NULL, "REST API token itself (secret)"},
    {"secret_key_file", "secret-key-file", "VISIONBATCH_SECRET_KEY_FILE", CT_STR,
     OFF(secret_key_file), NULL, 0, 0, P_SVC, 0, 0, NULL,
     "file holding the base64 32-byte encryption key"},
    {"secret_key", NULL, "VISIONBATCH_SECRET_KEY", CT_STR, OFF(secret_key), NULL, 0, 0, P_SVC, 0,
     CF_SECRET, NULL, "encryption key itself, base64 (secret)"},
    {"concurrency", "concurrency", "VISIONBATCH_CONCURRENCY", CT_LONG, OFF(concurrency), "4", 1,
     256, P_WORK, 0, 0, NULL, "runs processed in parallel"},
    {"prefetch", "prefetch", "VISIONBATCH_PREFETCH", CT_LONG, OFF(prefetch), "32", 2, 256, P_WORK,
     0, 0, NULL, "messages fetched ahead per slot"},
    {"metrics_listen", "metrics-listen", "VISIONBATCH_METRICS_LISTEN", CT_STR, OFF(metrics_listen),
     "127.0.0.1:9101", 0, 0, P_WORK, 0, CF_ADDR, NULL, "metrics/health address"},
    {"http_threads", "http-threads", "VISIONBATCH_HTTP_THREADS", CT_LONG, OFF(http_threads), "16",
     1, 64, P_PROD | P_WORK, 0, 0, NULL, "event-loop threads of the HTTP listener"},
    {"http_max_connections", "http-max-connections", "VISIONBATCH_HTTP_MAX_CONNECTIONS", CT_LONG,
     OFF(http_max_connections), "512", 16, 65536, P_PROD | P_WORK, 0, 0, NULL,
     "open HTTP connections in all"},
    {"http_max_connections_per_ip", "http-max-connections-per-ip",
     "VISIONBATCH_HTTP_MAX_CONNECTIONS_PER_IP", CT_LONG, OFF(http_max_connections_per_ip), "32", 2,
     65536, P_PROD | P_WORK, 0, 0, NULL, "open HTTP connections of one client address"},
    {"http_header_timeout_s", "http-header-timeout-s", "VISIONBATCH_HTTP_HEADER_TIMEOUT_S", CT_LONG,
     OFF(http_header_timeout_s), "10", 1, 3600, P_PROD | P_WORK, 0, 0, NULL,
     "a request's headers must arrive within (slow clients are cut off)"},
    {"http_idle_timeout_s", "http-idle-timeout-s", "VISIONBATCH_HTTP_IDLE_TIMEOUT_S", CT_LONG,
     OFF(http_idle_timeout_s), "30", 1, 86400, P_PROD | P_WORK, 0, 0, NULL,
     "an HTTP connection idle this long is closed"},
    {"topic", "topic", "VISIONBATCH_TOPIC", CT_STR, OFF(topic), "visionbatch.runs", 0, 0, P_SVC, 0,
     0, NULL, "Kafka topic of runs"},
    {"dlq_topic", "dlq-topic", "VISIONBATCH_DLQ_TOPIC", CT_STR, OFF(dlq_topic),
     "visionbatch.runs.dlq", 0, 0, P_SVC, 0, 0, NULL, "Kafka dead-letter topic"},
    {"group_id", "group-id", "VISIONBATCH_GROUP_ID", CT_STR, OFF(group_id), "visionbatch-workers",
     0, 0, P_SVC, 0, 0, NULL, "Kafka consumer group"},
    {"lease_ms", "lease-ms", "VISIONBATCH_LEASE_MS", CT_LONG, OFF(lease_ms), "30000", 1000,
     3600000, P_SVC, 0, 0, NULL, "run lock lifetime (renewed while working)"},
    {"max_attempts", "max-attempts", "VISIONBATCH_MAX_ATTEMPTS", CT_LONG, OFF(max_attempts), "5",
     1, 1000, P_SVC, 0, 0, NULL, "attempts before a run is dead-lettered"},
    {"poll_interval_s", "poll-interval-s", "VISIONBATCH_POLL_INTERVAL_S", CT_LONG,
     OFF(poll_interval_s), "300", 1, 604800, P_PROD, 0, 0, NULL, "producer --interval default"},
    {"shutdown_grace_s", "shutdown-grace-s", "VISIONBATCH_SHUTDOWN_GRACE_S", CT_LONG,
     OFF(shutdown_grace_s), "60", 0, 86400, P_WORK, 0, 0, NULL,
     "seconds a stopping worker waits for runs in flight before handing them back"},
    {"worker_id", "worker-id", "VISIONBATCH_WORKER_ID", CT_STR, OFF(worker_id), NULL, 0, 0,
     P_WORK | P_PROD, 0, 0, NULL, "instance name in locks and status (default hostname:pid)"},
};

#define NSETTINGS (sizeof settings / sizeof settings[0])

/* One pass-through Kafka property and where it came from. */
typedef struct kprop {
    char *name;
    char *value;
    source src;
} kprop;

/* State of one load. */
typedef struct loader {
    vb_config *cfg;
    unsigned prog;
    source src[NSETTINGS];
    const char *flagval[NSETTINGS]; /* borrowed from argv */
    vb_buf errs;                    /* "  problem\n" lines */
    vb_buf missing;                 /* "  --flag / ENV / key\n" lines */
    int file_has_secret;            /* the config file holds a secret */
    kprop kprops[KAFKA_PROPS_MAX];  /* Kafka properties, in first-seen order */
    size_t nkprops;
    const char *kflags[KAFKA_PROPS_MAX]; /* --kafka-property values, borrowed */
    size_t nkflags;
} loader;

static char **str_field(vb_config *cfg, const setting *s)
{
    return (char **)(void *)((char *)cfg + s->off);
}

static const char *const *cstr_field(const vb_config *cfg, const setting *s)
{
    return (const char *const *)(const void *)((const char *)cfg + s->off);
}

static void wipe_free(char *p)
{
    if (!p)
        return;
    explicit_bzero(p, strlen(p));
    free(p);
}

static void add_line(vb_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_line(vb_buf *b, const char *fmt, ...)
{
    char line[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* Out of memory only loses detail: the load still fails. */
    if (vb_buf_append_str(b, "\n  ") == VB_OK)
        (void)vb_buf_append_str(b, line);
}

/* "--page-size", "environment VISIONBATCH_PAGE_SIZE", "config file F key "k"". */
static void describe_source(const loader *ld, const setting *s, source src, char *out, size_t n)
{
    switch (src) {
    case SRC_FLAG:
        snprintf(out, n, "option --%s", s->flag ? s->flag : s->key);
        break;
    case SRC_ENV:
        snprintf(out, n, "environment variable %s", s->env ? s->env : "?");
        break;
    case SRC_FILE:
        snprintf(out, n, "config file %s, key \"%s\"",
                 ld->cfg->config_path ? ld->cfg->config_path : "?", s->key);
        break;
    default:
        snprintf(out, n, "built-in default of %s", s->key);
        break;
    }
}

/* Records a bad value; secrets' values are never quoted, others redacted. */
static void bad_value(loader *ld, const setting *s, source src, const char *val,
                      const char *problem)
{
    char where[300];
    describe_source(ld, s, src, where, sizeof where);
    if ((s->flags & CF_SECRET) || !val) {
        add_line(&ld->errs, "%s (%s): %s", s->key, where, problem);
        return;
    }
    char shown[80];
    size_t n = strlen(val);
    int cut = n >= sizeof shown - 4;
    snprintf(shown, sizeof shown, "%.*s%s", (int)(cut ? sizeof shown - 8 : n), val,
             cut ? "..." : "");
    vb_redact_text(shown);
    add_line(&ld->errs, "%s (%s): %s (got \"%s\")", s->key, where, problem, shown);
}

static int parse_bool(const char *v)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0)
            return 1;
        if (strcasecmp(v, no[i]) == 0)
            return 0;
    }
    return -1;
}

/* "http://host…" / "https://host…" with a non-empty host. */
static int valid_http_url(const char *v)
{
    const char *rest;
    if (strncasecmp(v, "http://", 7) == 0)
        rest = v + 7;
    else if (strncasecmp(v, "https://", 8) == 0)
        rest = v + 8;
    else
        return 0;
    if (*rest == '\0' || *rest == '/' || *rest == '?' || *rest == '#' || *rest == ':')
        return 0;
    for (const char *p = v; *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return 0;
    }
    return 1;
}

/* "host:port" with a port in 1..65535 (host may be empty = all interfaces,
 * or a bracketed IPv6 address). */
static int valid_addr(const char *v)
{
    const char *colon = strrchr(v, ':');
    if (!colon || colon[1] == '\0')
        return 0;
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    return errno == 0 && *end == '\0' && port >= 1 && port <= 65535 &&
           isdigit((unsigned char)colon[1]);
}

/* Checks a Redis URL with the grammar the connection uses. The problem goes
 * to `why` (it never quotes the URL); the password of a valid URL is
 * registered with the redactor so no log line can repeat it. */
static int valid_redis(const char *v, char *why, size_t whylen)
{
    vb__redis_url u;
    vb_error e = {0};
    if (vb__redis_url_parse(v, &u, &e) != VB_OK) {
        snprintf(why, whylen, "%s", e.msg);
        return 0;
    }
    if (u.password[0])
        vb_redact_add_secret(u.password);
    vb__redis_url_clear(&u);
    return 1;
}

static void set_string(loader *ld, size_t i, char *owned, source src)
{
    const setting *s = &settings[i];
    char **field = str_field(ld->cfg, s);
    if (s->flags & CF_SECRET) {
        vb_redact_add_secret(owned);
        wipe_free(*field);
    } else {
        free(*field);
    }
    *field = owned;
    ld->src[i] = src;
}

static void set_number(loader *ld, size_t i, long long v, source src)
{
    const setting *s = &settings[i];
    char *base = (char *)ld->cfg + s->off;
    switch (s->type) {
    case CT_LONG:
        *(long *)(void *)base = (long)v;
        break;
    case CT_LLONG:
        *(long long *)(void *)base = v;
        break;
    default:
        *(int *)(void *)base = (int)v;
        break;
    }
    ld->src[i] = src;
}

static void check_range(loader *ld, size_t i, long long v, source src, const char *val)
{
    const setting *s = &settings[i];
    if (v < s->min || v > s->max) {
        char problem[128];
        snprintf(problem, sizeof problem, "must be between %lld and %lld", s->min, s->max);
        bad_value(ld, s, src, val, problem);
        return;
    }
    set_number(ld, i, v, src);
}

/* Applies a textual value (flag, environment, default, or a JSON string). */
static void set_from_text(loader *ld, size_t i, const char *val, source src)
{
    const setting *s = &settings[i];
    switch (s->type) {
    case CT_STR: {
        size_t n = strlen(val);
        if (n == 0 && !(s->flags & CF_EMPTY_OK)) {
            bad_value(ld, s, src, NULL, "must not be empty");
            return;
        }
        if (n > STRING_VALUE_MAX) {
            bad_value(ld, s, src, NULL, "is too long");
            return;
        }
        if ((s->flags & CF_URL) && !valid_http_url(val)) {
            bad_value(ld, s, src, val, "must be an http:// or https:// URL");
            return;
        }
        if ((s->flags & CF_ADDR) && !valid_addr(val)) {
            bad_value(ld, s, src, val, "must be host:port");
            return;
        }
        char why[sizeof ((vb_error *)0)->msg];
        if ((s->flags & CF_REDIS) && !valid_redis(val, why, sizeof why)) {
            bad_value(ld, s, src, NULL, why); /* not quoted: it may hold a password */
            return;
        }
        char *copy = strdup(val);
        if (!copy) {
            bad_value(ld, s, src, NULL, "out of memory");
            return;
        }
        set_string(ld, i, copy, src);
        return;
    }
    case CT_LONG:
    case CT_LLONG: {
        char *end;
        errno = 0;
        long long v = strtoll(val, &end, 10);
        if (end == val || *end != '\0' || isspace((unsigned char)val[0])) {
            bad_value(ld, s, src, val, "must be an integer");
            return;
        }
        if (errno == ERANGE) {
            v = v < 0 ? LLONG_MIN : LLONG_MAX; /* reported as out of range below */
        }
        check_range(ld, i, v, src, val);
        return;
    }
    case CT_BOOL: {
        int b = parse_bool(val);
        if (b < 0) {
            bad_value(ld, s, src, val, "must be true or false (also 1/0, yes/no)");
            return;
        }
        set_number(ld, i, b, src);
        return;
    }
    case CT_ENUM: {
        int e = s->parse_enum(val);
        if (e < 0) {
            char problem[96];
            snprintf(problem, sizeof problem, "must be one of %s", s->help);
            bad_value(ld, s, src, val, problem);
            return;
        }
        set_number(ld, i, e, src);
        return;
    }
    }
}

static void set_from_json(loader *ld, size_t i, const cJSON *item)
{
    const setting *s = &settings[i];
    if (cJSON_IsNull(item))
        return; /* null = not set here */
    if (s->flags & CF_SECRET)
        ld->file_has_secret = 1;
    switch (s->type) {
    case CT_STR:
    case CT_ENUM:
        if (!cJSON_IsString(item) || !item->valuestring) {
            bad_value(ld, s, SRC_FILE, NULL, "must be a JSON string");
            return;
        }
        set_from_text(ld, i, item->valuestring, SRC_FILE);
        return;
    case CT_LONG:
    case CT_LLONG: {
        if (!cJSON_IsNumber(item)) {
            bad_value(ld, s, SRC_FILE, NULL, "must be a JSON integer");
            return;
        }
        double d = item->valuedouble;
        if (!isfinite(d) || d != floor(d)) {
            bad_value(ld, s, SRC_FILE, NULL, "must be a JSON integer");
            return;
        }
        char shown[48];
        snprintf(shown, sizeof shown, "%.0f", d);
        if (d < (double)s->min || d > (double)s->max) {
            check_range(ld, i, d < 0 ? LLONG_MIN : LLONG_MAX, SRC_FILE, shown);
            return;
        }
        check_range(ld, i, (long long)d, SRC_FILE, shown);
        return;
    }
    case CT_BOOL:
        if (cJSON_IsBool(item)) {
            set_number(ld, i, cJSON_IsTrue(item) ? 1 : 0, SRC_FILE);
        } else if (cJSON_IsNumber(item) && (item->valuedouble == 0 || item->valuedouble == 1)) {
            set_number(ld, i, item->valuedouble == 1, SRC_FILE);
        } else if (cJSON_IsString(item) && item->valuestring) {
            set_from_text(ld, i, item->valuestring, SRC_FILE);
        } else {
            bad_value(ld, s, SRC_FILE, NULL, "must be true or false");
        }
        return;
    }
}

/* ---- Kafka properties ---- */

int vb__config_kafka_env_encode(const char *name, char *out, size_t outlen)
{
    size_t w = 0;
    for (const char *p = name; *p; p++) {
        const char *code;
        char one[2] = {0, 0};
        if (*p == '.')
            code = "_";
        else if (*p == '_')
            code = "__";
        else if (*p == '-')
            code = "___";
        else if ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')) {
            one[0] = (char)toupper((unsigned char)*p);
            code = one;
        } else
            return -1;
        size_t n = strlen(code);
        if (w + n >= outlen)
            return -1;
        memcpy(out + w, code, n);
        w += n;
    }
    if (w >= outlen)
        return -1;
    out[w] = '\0';
    return 0;
}

int vb__config_kafka_env_decode(const char *code, char *out, size_t outlen)
{
    static const char runs[] = {'.', '_', '-'};
    size_t w = 0;
    for (const char *p = code; *p;) {
        char c;
        if (*p == '_') {
            size_t k = strspn(p, "_");
            if (k > 3)
                return -1;
            c = runs[k - 1];
            p += k;
        } else if ((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')) {
            c = (char)tolower((unsigned char)*p);
            p++;
        } else {
            return -1;
        }
        if (w + 1 >= outlen)
            return -1;
        out[w++] = c;
    }
    if (w == 0 || w >= outlen)
        return -1;
    out[w] = '\0';
    return 0;
}

/* "option --kafka-property", "environment variable VISIONBATCH_KAFKA_PROPERTY_X", … */
static void describe_kprop(const loader *ld, const kprop *k, char *out, size_t n)
{
    char code[KAFKA_NAME_MAX * 3 + 1];
    switch (k->src) {
    case SRC_FLAG:
        snprintf(out, n, "option --" KAFKA_FLAG);
        break;
    case SRC_ENV:
        if (vb__config_kafka_env_encode(k->name, code, sizeof code) != 0)
            snprintf(code, sizeof code, "?");
        snprintf(out, n, "environment variable " KAFKA_ENV_PREFIX "%.200s", code);
        break;
    default:
        snprintf(out, n, "config file %s, object \"" KAFKA_KEY "\"",
                 ld->cfg->config_path ? ld->cfg->config_path : "?");
        break;
    }
}

/* Records property name = value from src; a later (higher) source replaces
 * the value of the same name. The value is never quoted in a message. */
static void kprop_set(loader *ld, const char *name, size_t nlen, const char *value, source src)
{
    if (nlen == 0 || nlen > KAFKA_NAME_MAX) {
        add_line(&ld->errs, "kafka property: a name of 1 to %d characters is needed (%s)",
                 KAFKA_NAME_MAX,
                 src == SRC_FLAG ? "option --" KAFKA_FLAG
                 : src == SRC_ENV ? "environment" : "config file");
        return;
    }
    char *n = strndup(name, nlen);
    char *v = n ? strdup(value) : NULL;
    if (!v) {
        free(n);
        add_line(&ld->errs, "kafka property: out of memory");
        return;
    }
    if (vb_kafka_property_is_secret(n)) {
        vb_redact_add_secret(v);
        if (src == SRC_FILE)
            ld->file_has_secret = 1;
    }
    if (strlen(v) > STRING_VALUE_MAX) {
        add_line(&ld->errs, "kafka property %s: the value is too long", n);
        wipe_free(v);
        free(n);
        return;
    }
    for (size_t i = 0; i < ld->nkprops; i++) {
        kprop *k = &ld->kprops[i];
        if (strcmp(k->name, n) == 0) {
            free(n);
            wipe_free(k->value);
            k->value = v;
            k->src = src;
            return;
        }
    }
    if (ld->nkprops == KAFKA_PROPS_MAX) {
        add_line(&ld->errs, "kafka properties: more than %d", KAFKA_PROPS_MAX);
        wipe_free(v);
        free(n);
        return;
    }
    ld->kprops[ld->nkprops++] = (kprop){.name = n, .value = v, .src = src};
}

/* The config file's "kafka" object: strings, numbers and booleans. */
static void kprops_from_json(loader *ld, const cJSON *obj)
{
    if (cJSON_IsNull(obj))
        return;
    if (!cJSON_IsObject(obj)) {
        add_line(&ld->errs, "config file %s, key \"" KAFKA_KEY "\": must be a JSON object of "
                 "librdkafka properties", ld->cfg->config_path ? ld->cfg->config_path : "?");
        return;
    }
    for (const cJSON *item = obj->child; item; item = item->next) {
        const char *name = item->string ? item->string : "";
        char text[64];
        const char *v = NULL;
        if (cJSON_IsString(item) && item->valuestring) {
            v = item->valuestring;
        } else if (cJSON_IsBool(item)) {
            v = cJSON_IsTrue(item) ? "true" : "false";
        } else if (cJSON_IsNumber(item) && isfinite(item->valuedouble)) {
            double d = item->valuedouble;
            if (d == floor(d) && fabs(d) < 1e15)
                snprintf(text, sizeof text, "%.0f", d);
            else
                snprintf(text, sizeof text, "%.17g", d);
            v = text;
        } else {
            add_line(&ld->errs, "config file %s, \"" KAFKA_KEY "\" property %.100s: must be a "
                     "string, a number or a boolean",
                     ld->cfg->config_path ? ld->cfg->config_path : "?", name);
            continue;
        }
        kprop_set(ld, name, strlen(name), v, SRC_FILE);
    }
}

/* Every VISIONBATCH_KAFKA_PROPERTY_<CODE> variable. */
static void kprops_from_env(loader *ld)
{
    size_t plen = strlen(KAFKA_ENV_PREFIX);
    for (char **e = environ; e && *e; e++) {
        if (strncmp(*e, KAFKA_ENV_PREFIX, plen) != 0)
            continue;
        const char *eq = strchr(*e, '=');
        if (!eq)
            continue;
        char code[KAFKA_NAME_MAX * 3 + 1], name[KAFKA_NAME_MAX + 1];
        size_t clen = (size_t)(eq - *e) - plen;
        if (clen >= sizeof code ||
            (memcpy(code, *e + plen, clen), code[clen] = '\0',
             vb__config_kafka_env_decode(code, name, sizeof name) != 0)) {
            add_line(&ld->errs, "environment variable %.*s: not a Kafka property name (after "
                     KAFKA_ENV_PREFIX ": upper case, \"_\" for \".\", \"__\" for \"_\")",
                     (int)((size_t)(eq - *e) > 160 ? 160 : (size_t)(eq - *e)), *e);
            continue;
        }
        kprop_set(ld, name, strlen(name), eq + 1, SRC_ENV);
    }
}

/* Every --kafka-property NAME=VALUE, in order (a repeated name: the last). */
static void kprops_from_flags(loader *ld)
{
    for (size_t i = 0; i < ld->nkflags; i++) {
        const char *eq = strchr(ld->kflags[i], '=');
        if (!eq) {
            add_line(&ld->errs, "option --" KAFKA_FLAG " needs NAME=VALUE");
            continue;
        }
        kprop_set(ld, ld->kflags[i], (size_t)(eq - ld->kflags[i]), eq + 1, SRC_FLAG);
    }
}

/* librdkafka judges each property; the accepted ones move to cfg. */
static void kprops_finish(loader *ld)
{
    for (size_t i = 0; i < ld->nkprops; i++) {
        vb_error e = {0};
        if (vb_kafka_property_check(ld->kprops[i].name, ld->kprops[i].value, &e) != VB_OK) {
            char where[300];
            describe_kprop(ld, &ld->kprops[i], where, sizeof where);
            add_line(&ld->errs, "%s (%s)", e.msg, where);
        }
    }
    if (ld->errs.len || ld->nkprops == 0)
        return;
    char **arr = calloc(2 * ld->nkprops + 1, sizeof *arr);
    if (!arr) {
        add_line(&ld->errs, "kafka properties: out of memory");
        return;
    }
    for (size_t i = 0; i < ld->nkprops; i++) {
        arr[2 * i] = ld->kprops[i].name;
        arr[2 * i + 1] = ld->kprops[i].value;
    }
    ld->nkprops = 0; /* owned by cfg now */
    ld->cfg->kafka_properties = (const char *const *)arr;
}

static void kprops_free(loader *ld)
{
    for (size_t i = 0; i < ld->nkprops; i++) {
        free(ld->kprops[i].name);
        wipe_free(ld->kprops[i].value);
    }
    ld->nkprops = 0;
}

/* Reads at most `cap` bytes of a regular file into a NUL-terminated heap
 * string. Fails with VB_ERR_CONFIG naming `what` and the path. */
static vb_err read_capped(const char *path, const char *what, size_t cap, char **out,
                          size_t *outlen, struct stat *st, vb_error *err)
{
    char *data = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        vb_error_set(err, VB_ERR_CONFIG, "%s %s: %s", what, path, strerror(errno));
        goto fail;
    }
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        vb_error_set(err, VB_ERR_CONFIG, "%s %s: not a regular file", what, path);
        goto fail;
    }
    data = malloc(cap + 2);
    if (!data) {
        vb_error_set(err, VB_ERR_NOMEM, "%s %s: out of memory", what, path);
        goto fail;
    }
    size_t len = 0;
    while (len <= cap) {
        ssize_t r = read(fd, data + len, cap + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            vb_error_set(err, VB_ERR_CONFIG, "%s %s: %s", what, path, strerror(errno));
            goto fail;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    if (len > cap) {
        vb_error_set(err, VB_ERR_CONFIG, "%s %s: larger than %zu bytes", what, path, cap);
        goto fail;
    }
    data[len] = '\0';
    close(fd);
    *out = data;
    *outlen = len;
    return VB_OK;
fail:
    free(data);
    if (fd >= 0)
        close(fd);
    return err ? err->code : VB_ERR_CONFIG;
}

static const setting *find_by_key(const char *key, size_t *idx)
{
    for (size_t i = 0; i < NSETTINGS; i++) {
        if (strcmp(settings[i].key, key) == 0) {
            *idx = i;
            return &settings[i];
        }
    }
    return NULL;
}

static vb_err load_file(loader *ld, const char *path, vb_error *err)
{
    char *text = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    struct stat st;
    vb_err rc = read_capped(path, "config file", CONFIG_FILE_MAX, &text, &len, &st, err);
    if (rc != VB_OK)
        goto fail;
    ld->cfg->config_path = strdup(path);
    if (!ld->cfg->config_path) {
        rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        goto fail;
    }
    root = cJSON_ParseWithLength(text, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long off = (at && at >= text && at <= text + len) ? (long)(at - text) : -1;
        rc = vb_error_set(err, VB_ERR_CONFIG, "config file %s: not valid JSON (near byte %ld)",
                          path, off);
        goto fail;
    }
    if (!cJSON_IsObject(root)) {
        rc = vb_error_set(err, VB_ERR_CONFIG, "config file %s: must contain a JSON object", path);
        goto fail;
    }
    for (const cJSON *item = root->child; item; item = item->next) {
        size_t i;
        const char *key = item->string ? item->string : "";
        if (strcmp(key, KAFKA_KEY) == 0) {
            if (ld->prog & P_SVC)
                kprops_from_json(ld, item);
            continue;
        }
        if (!find_by_key(key, &i)) {
            char shown[80];
            snprintf(shown, sizeof shown, "%s", key);
            VB_WARN("config file %s: unknown key \"%s\" ignored", path, shown);
            continue;
        }
        /* Settings of other programs may share the file: skip them quietly. */
        if (!(settings[i].progs & ld->prog))
            continue;
        set_from_json(ld, i, item);
    }
    if (ld->file_has_secret && (st.st_mode & 077)) {
        VB_WARN("config file %s holds a secret (external_api_key or a secret Kafka property) "
                "and is readable by group or others (mode %03o); restrict it with: chmod 600 %s",
                path, (unsigned)(st.st_mode & 0777), path);
    }
    rc = VB_OK;
fail:
    cJSON_Delete(root);
    if (text) {
        explicit_bzero(text, len);
        free(text);
    }
    return rc;
}

/* Reads the first line of a token/key file, trimmed. */
static void load_secret_file(loader *ld, size_t file_idx, size_t value_idx)
{
    const setting *fs = &settings[file_idx];
    const char *path = *cstr_field(ld->cfg, fs);
    if (!path || !(fs->progs & ld->prog))
        return;
    /* The direct value (environment/file) wins only from a higher source. */
    if (*cstr_field(ld->cfg, &settings[value_idx]) && ld->src[value_idx] > ld->src[file_idx])
        return;
    char *text = NULL;
    size_t len = 0;
    struct stat st;
    vb_error e = {0};
    if (read_capped(path, fs->key, SECRET_FILE_MAX, &text, &len, &st, &e) != VB_OK) {
        add_line(&ld->errs, "%s", e.msg);
        return;
    }
    char *start = text;
    while (*start && isspace((unsigned char)*start) && *start != '\n')
        start++;
    char *end = start;
    while (*end && *end != '\n' && *end != '\r')
        end++;
    while (end > start && isspace((unsigned char)end[-1]))
        end--;
    *end = '\0';
    if (*start == '\0') {
        add_line(&ld->errs, "%s %s: the first line is empty", fs->key, path);
    } else {
        if (st.st_mode & 077)
            VB_WARN("%s %s is readable by group or others (mode %03o); restrict it with: "
                    "chmod 600 %s",
                    fs->key, path, (unsigned)(st.st_mode & 0777), path);
        char *copy = strdup(start);
        if (copy)
            set_string(ld, value_idx, copy, ld->src[file_idx]);
        else
            add_line(&ld->errs, "%s %s: out of memory", fs->key, path);
    }
    explicit_bzero(text, len);
    free(text);
}

static size_t index_of(const char *key)
{
    size_t i = 0;
    find_by_key(key, &i);
    return i;
}

static void check_cross(loader *ld)
{
    vb_config *c = ld->cfg;
    if ((ld->prog & P_FETCH) && c->retry_base_ms > c->retry_max_ms)
        add_line(&ld->errs, "retry_base_ms (%ld) must not exceed retry_max_ms (%ld)",
                 c->retry_base_ms, c->retry_max_ms);
    if ((ld->prog & P_PIPE) && c->status_poll_min_ms > c->status_poll_max_ms)
        add_line(&ld->errs, "status_poll_min_ms (%ld) must not exceed status_poll_max_ms (%ld)",
                 c->status_poll_min_ms, c->status_poll_max_ms);
}

/* rediss://: loads the CA bundle, client certificate and key now, so a bad
 * file stops the program at start; TLS files with any other URL are a
 * mistake (the connection would silently be plain). */
static void check_redis_tls(loader *ld)
{
    const vb_config *c = ld->cfg;
    if (!(ld->prog & P_SVC) || !c->redis_url)
        return;
    int tls = strncasecmp(c->redis_url, "rediss://", 9) == 0;
    if (!tls) {
        if (c->redis_tls_ca_file || c->redis_tls_cert_file || c->redis_tls_key_file)
            add_line(&ld->errs, "redis_tls_ca_file, redis_tls_cert_file and redis_tls_key_file "
                                "apply to rediss:// only, and redis_url is not one");
        return;
    }
    vb__redis_tls_opts o = {.ca_file = c->redis_tls_ca_file,
                            .cert_file = c->redis_tls_cert_file,
                            .key_file = c->redis_tls_key_file,
                            .key_password = c->redis_tls_key_password};
    vb_error e = {0};
    if (vb__redis_tls_configure(&o, &e) != VB_OK)
        add_line(&ld->errs, "%s", e.msg);
}

static void describe_missing(vb_buf *b, const setting *s)
{
    add_line(b, "%s%s%s%s / JSON key \"%s\"", s->flag ? "--" : "", s->flag ? s->flag : "",
             s->flag ? " / " : "", s->env ? s->env : "", s->key);
}

/* Scans argv: collects flag values and the config path, moves positional
 * arguments (and pass-through options) to the front. */
static void scan_args(loader *ld, int argc, char **argv, const char *const *passthrough,
                      const char **config_flag, int *npos)
{
    int w = 1;
    int only_positional = 0;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (only_positional || a[0] != '-' || a[1] == '\0') {
            argv[w++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_positional = 1;
            continue;
        }
        if (a[1] != '-') {
            add_line(&ld->errs, "unknown option %.64s", a);
            continue;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        int passed = 0;
        for (const char *const *p = passthrough; p && *p; p++) {
            if (strlen(*p) == nlen && strncmp(*p, name, nlen) == 0)
                passed = 1;
        }
        if (passed) {
            argv[w++] = a;
            continue;
        }
        const setting *s = NULL;
        size_t idx = 0;
        int is_config = nlen == 6 && strncmp(name, "config", 6) == 0;
        int is_kprop = nlen == strlen(KAFKA_FLAG) && strncmp(name, KAFKA_FLAG, nlen) == 0;
        for (size_t k = 0; !is_config && !is_kprop && k < NSETTINGS; k++) {
            if (settings[k].flag && strlen(settings[k].flag) == nlen &&
                strncmp(settings[k].flag, name, nlen) == 0) {
                s = &settings[k];
                idx = k;
            }
        }
        if (!is_config && !is_kprop && !s) {
            add_line(&ld->errs, "unknown option --%.*s", (int)(nlen > 64 ? 64 : nlen), name);
            continue;
        }
        const char *val;
        if (eq) {
            val = eq + 1;
        } else if (s && s->type == CT_BOOL) {
            val = "true";
        } else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
            val = argv[++i];
        } else {
            add_line(&ld->errs,
                     "option --%.*s needs a value (use --%.*s=VALUE if it starts with --)",
                     (int)nlen, name, (int)nlen, name);
            continue;
        }
        if (is_config) {
            *config_flag = val;
            continue;
        }
        if (is_kprop) {
            if (!(ld->prog & P_SVC))
                add_line(&ld->errs, "option --" KAFKA_FLAG " is not used by this program");
            else if (ld->nkflags == KAFKA_PROPS_MAX)
                add_line(&ld->errs, "option --" KAFKA_FLAG ": more than %d", KAFKA_PROPS_MAX);
            else
                ld->kflags[ld->nkflags++] = val;
            continue;
        }
        if (!(s->progs & ld->prog)) {
            add_line(&ld->errs, "option --%s is not used by this program", s->flag);
            continue;
        }
        ld->flagval[idx] = val;
    }
    *npos = w - 1;
}

static void default_worker_id(loader *ld)
{
    if (ld->cfg->worker_id)
        return;
    char host[256];
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    char id[300];
    snprintf(id, sizeof id, "%s:%ld", host, (long)getpid());
    char *copy = strdup(id);
    if (copy)
        set_string(ld, index_of("worker_id"), copy, SRC_DEFAULT);
    else
        add_line(&ld->errs, "worker_id: out of memory");
}

vb_err vb_config_load_ex(vb_config *cfg, unsigned prog, int argc, char **argv,
                         const char *const *passthrough, char ***rest, int *nrest, vb_error *err)
{
    loader ld = {.cfg = cfg, .prog = prog ? prog : P_ALL};
    vb_err rc = VB_OK;
    memset(cfg, 0, sizeof *cfg);
    if (rest)
        *rest = argv;
    if (nrest)
        *nrest = 0;

    for (size_t i = 0; i < NSETTINGS; i++) {
        if (settings[i].def)
            set_from_text(&ld, i, settings[i].def, SRC_DEFAULT);
    }

    const char *config_flag = NULL;
    int npos = 0;
    if (argc > 0 && argv)
        scan_args(&ld, argc, argv, passthrough, &config_flag, &npos);
    if (npos > 0 && !rest)
        /* Not quoted: a mistyped option may have pushed a secret here. */
        add_line(&ld.errs, "unexpected positional argument (this program takes none)");
    if (rest && argc > 0)
        *rest = argv + 1;
    if (nrest)
        *nrest = npos;

    /* The config file: explicit paths must exist, the default one may not. */
    const char *path = config_flag;
    const char *env_path = getenv(CONFIG_ENV);
    if (!path && env_path && env_path[0])
        path = env_path;
    if (!path && vb__config_default_path && access(vb__config_default_path, F_OK) == 0)
        path = vb__config_default_path;
    if (path && path[0] == '\0') {
        rc = vb_error_set(err, VB_ERR_CONFIG, "--config: the path must not be empty");
        goto fail;
    }
    if (path) {
        rc = load_file(&ld, path, err);
        if (rc != VB_OK)
            goto fail;
    }

    for (size_t i = 0; i < NSETTINGS; i++) {
        const char *v = settings[i].env ? getenv(settings[i].env) : NULL;
        /* An env file (compose, systemd) cannot unset a variable, only leave
         * it empty: an empty variable is taken as unset, unless "" has a
         * meaning of its own (the log file). Flags and files still refuse "". */
        if (v && !v[0] && !(settings[i].flags & CF_EMPTY_OK))
            v = NULL;
        if (v && (settings[i].progs & ld.prog))
            set_from_text(&ld, i, v, SRC_ENV);
    }
    for (size_t i = 0; i < NSETTINGS; i++) {
        if (ld.flagval[i])
            set_from_text(&ld, i, ld.flagval[i], SRC_FLAG);
    }
    if (ld.prog & P_SVC) {
        kprops_from_env(&ld);
        kprops_from_flags(&ld);
        kprops_finish(&ld);
    }

    load_secret_file(&ld, index_of("api_token_file"), index_of("api_token"));
    load_secret_file(&ld, index_of("secret_key_file"), index_of("secret_key"));
    default_worker_id(&ld);
    check_cross(&ld);
    if (!ld.errs.len)
        check_redis_tls(&ld);

    for (size_t i = 0; i < NSETTINGS; i++) {
        const setting *s = &settings[i];
        if ((s->required & ld.prog) && s->type == CT_STR && !*cstr_field(cfg, s))
            describe_missing(&ld.missing, s);
    }

    if (ld.errs.len || ld.missing.len) {
        /* Every secret is registered by now: scrub lines built before. */
        if (ld.errs.data)
            vb_redact_text(ld.errs.data);
        const char *missing_head = "";
        if (ld.missing.len)
            missing_head = ld.errs.len ? "\nmissing required settings:"
                                       : "missing required settings:";
        rc = vb_error_set(err, VB_ERR_CONFIG, "%s%s%s%s",
                          ld.errs.len ? "invalid configuration:" : "",
                          ld.errs.len ? ld.errs.data : "", missing_head,
                          ld.missing.len ? ld.missing.data : "");
        goto fail;
    }
    vb_buf_free(&ld.errs);
    vb_buf_free(&ld.missing);
    return VB_OK;
fail:
    if (rc == VB_OK)
        rc = VB_ERR_CONFIG;
    kprops_free(&ld);
    vb_buf_free(&ld.errs);
    vb_buf_free(&ld.missing);
    vb_config_free(cfg);
    return rc;
}

vb_err vb_config_load(vb_config *cfg, unsigned prog, int argc, char **argv, char ***rest,
                      int *nrest, vb_error *err)
{
    return vb_config_load_ex(cfg, prog, argc, argv, NULL, rest, nrest, err);
}

vb_err vb_config_require_platform(const vb_config *cfg, vb_error *err)
{
    static const char *const keys[] = {"external_api_get_url", "external_api_post_url",
                                       "external_api_key", "organization_id"};
    vb_buf missing = {0};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        const setting *s = &settings[index_of(keys[k])];
        const char *v = *cstr_field(cfg, s);
        if (!v || !v[0])
            describe_missing(&missing, s);
    }
    if (!missing.len)
        return VB_OK;
    vb_err rc =
        vb_error_set(err, VB_ERR_CONFIG, "missing required settings:%s", missing.data);
    vb_buf_free(&missing);
    return rc;
}

int vb_config_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc && argv; i++) {
        if (strcmp(argv[i], "--") == 0)
            return 0;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 1;
    }
    return 0;
}

static void help_cells(const setting *s, unsigned prog, char *flag, size_t fn, char *def,
                       size_t dn)
{
    if (!s->flag)
        snprintf(flag, fn, "-");
    else if (s->type == CT_BOOL)
        snprintf(flag, fn, "--%s[=BOOL]", s->flag);
    else if (s->type == CT_LONG || s->type == CT_LLONG)
        snprintf(flag, fn, "--%s N", s->flag);
    else if (s->type == CT_ENUM)
        snprintf(flag, fn, "--%s WORD", s->flag);
    else
        snprintf(flag, fn, "--%s %s", s->flag,
                 (s->flags & CF_URL) ? "URL" : (s->flags & CF_ADDR) ? "HOST:PORT" : "VALUE");
    if (s->required & prog)
        snprintf(def, dn, "required");
    else if (s->flags & CF_SECRET)
        snprintf(def, dn, "-");
    else if (s->off == offsetof(vb_config, worker_id))
        snprintf(def, dn, "hostname:pid");
    else if (!s->def)
        snprintf(def, dn, "-");
    else if (!s->def[0])
        snprintf(def, dn, "\"\"");
    else
        snprintf(def, dn, "%s", s->def);
}

void vb_config_print_help(FILE *out, unsigned prog)
{
    if (!out)
        return;
    if (!prog)
        prog = P_ALL;
    char flag[96], def[96];
    int wf = (int)strlen("--config PATH"), we = (int)strlen(CONFIG_ENV), wk = 3, wd = 0;
    for (size_t i = 0; i < NSETTINGS; i++) {
        const setting *s = &settings[i];
        if (!(s->progs & prog))
            continue;
        help_cells(s, prog, flag, sizeof flag, def, sizeof def);
        if ((int)strlen(flag) > wf)
            wf = (int)strlen(flag);
        if (s->env && (int)strlen(s->env) > we)
            we = (int)strlen(s->env);
        if ((int)strlen(s->key) > wk)
            wk = (int)strlen(s->key);
        if ((int)strlen(def) > wd)
            wd = (int)strlen(def);
    }
    if (wd < (int)strlen(vb__config_default_path ? vb__config_default_path : ""))
        wd = (int)strlen(vb__config_default_path ? vb__config_default_path : "");
    static const char kflag[] = "--" KAFKA_FLAG " NAME=VALUE";
    static const char kenv[] = KAFKA_ENV_PREFIX "<NAME>";
    static const char kkey[] = KAFKA_KEY " {NAME: VALUE}";
    if (prog & P_SVC) {
        if ((int)strlen(kflag) > wf)
            wf = (int)strlen(kflag);
        if ((int)strlen(kenv) > we)
            we = (int)strlen(kenv);
        if ((int)strlen(kkey) > wk)
            wk = (int)strlen(kkey);
    }
    fprintf(out, "Settings (precedence: option > environment > config file > default):\n");
    fprintf(out, "  %-*s  %-*s  %-*s  %-*s  %s\n", wf, "OPTION", we, "ENVIRONMENT", wk,
            "JSON KEY", wd, "DEFAULT", "MEANING");
    fprintf(out, "  %-*s  %-*s  %-*s  %-*s  %s\n", wf, "--config PATH", we, CONFIG_ENV, wk, "-",
            wd, vb__config_default_path ? vb__config_default_path : "-",
            "JSON config file (read only if it exists)");
    for (size_t i = 0; i < NSETTINGS; i++) {
        const setting *s = &settings[i];
        if (!(s->progs & prog))
            continue;
        help_cells(s, prog, flag, sizeof flag, def, sizeof def);
        fprintf(out, "  %-*s  %-*s  %-*s  %-*s  %s\n", wf, flag, we, s->env ? s->env : "-", wk,
                s->key, wd, def, s->help);
    }
    if (prog & P_SVC) {
        fprintf(out, "  %-*s  %-*s  %-*s  %-*s  %s\n", wf, kflag, we, kenv, wk, kkey, wd, "-",
                "any librdkafka property (repeatable; per property: option > environment > "
                "file)");
        fprintf(out, "  %-*s  %-*s  %-*s  %-*s  %s\n", wf, "", we, "", wk, "", wd, "",
                "<NAME>: the property upper-cased, \".\" as \"_\", \"_\" as \"__\", \"-\" as "
                "\"___\" (sasl.password: " KAFKA_ENV_PREFIX "SASL_PASSWORD)");
        fprintf(out, "  %-*s  %-*s  %-*s  %-*s  %s\n", wf, "", we, "", wk, "", wd, "",
                "values of *password*, *secret*, ssl.key.pem are secrets; the properties "
                "visionbatch sets for correctness are refused");
    }
}

vb_err vb_config_copy(vb_config *dst, const vb_config *src)
{
    memcpy(dst, src, sizeof *dst);
    dst->config_path = NULL;
    dst->kafka_properties = NULL;
    for (size_t i = 0; i < NSETTINGS; i++) {
        if (settings[i].type == CT_STR)
            *str_field(dst, &settings[i]) = NULL;
    }
    if (src->config_path && !(dst->config_path = strdup(src->config_path)))
        goto fail;
    for (size_t i = 0; i < NSETTINGS; i++) {
        if (settings[i].type != CT_STR)
            continue;
        const char *v = *cstr_field(src, &settings[i]);
        if (v && !(*str_field(dst, &settings[i]) = strdup(v)))
            goto fail;
    }
    if (src->kafka_properties) {
        size_t n = 0;
        while (src->kafka_properties[n])
            n++;
        char **arr = calloc(n + 1, sizeof *arr);
        if (!arr)
            goto fail;
        dst->kafka_properties = (const char *const *)arr;
        for (size_t i = 0; i < n; i++) {
            if (!(arr[i] = strdup(src->kafka_properties[i])))
                goto fail;
        }
    }
    return VB_OK;
fail:
    vb_config_free(dst);
    return VB_ERR_NOMEM;
}

void vb_config_free(vb_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < NSETTINGS; i++) {
        if (settings[i].type != CT_STR)
            continue;
        char **f = str_field(cfg, &settings[i]);
        if (settings[i].flags & CF_SECRET)
            wipe_free(*f);
        else
            free(*f);
    }
    free(cfg->config_path);
    if (cfg->kafka_properties) {
        char **arr = (char **)(void *)(uintptr_t)cfg->kafka_properties;
        for (size_t i = 0; arr[i]; i++) {
            if (i % 2)
                wipe_free(arr[i]); /* values: some are secrets */
            else
                free(arr[i]);
        }
        free(arr);
    }
    memset(cfg, 0, sizeof *cfg);
}
