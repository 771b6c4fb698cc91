/*
 * console.h — the web console of visionbatch-producer: its embedded assets
 * (producer/ui/, served under /ui/) and the endpoints it calls (GET /runs,
 * POST /runs/{id}/retry, GET /workers, GET /dlq, POST /dlq/{run_id}/replay,
 * GET /cron/preview), which the REST API (api.c) routes here.
 *
 * Every handler returns the HTTP status and a malloc'd JSON body
 * ({"detail": "..."} on errors). The console object owns one Redis
 * connection (store.h), opened on first use and serialised by a mutex, and a
 * short-lived cache of the workers' view, so any number of browsers polling
 * every 2 s cost the cluster one Kafka round trip per cache period.
 *
 * Threading: every function is thread-safe (called from the API's
 * per-connection threads).
 */
#ifndef VISIONBATCH_PRODUCER_CONSOLE_H
#define VISIONBATCH_PRODUCER_CONSOLE_H

#include <stddef.h>

#include "visionbatch/config.h"
#include "visionbatch/error.h"

#define VB_CONSOLE_RUNS_LIMIT_DEFAULT 50
#define VB_CONSOLE_RUNS_LIMIT_MAX 500
#define VB_CONSOLE_RUNS_SCAN 5000      /* index entries one GET /runs reads at most */
#define VB_CONSOLE_WORKERS_CACHE_MS 1500 /* how long a workers' view is reused */
#define VB_CONSOLE_DLQ_LIMIT_DEFAULT 100
#define VB_CONSOLE_DLQ_LIMIT_MAX 1000

typedef struct vb_console vb_console;

typedef struct vb_console_opts {
    const char *redis_url;     /* NULL = redis://127.0.0.1:6379/0 */
    const char *kafka_brokers; /* NULL or "": GET /workers answers 503 */
    const char *const *kafka_properties; /* pass-through (kafka.h); borrowed like cfg */
    const char *group_id;      /* the workers' consumer group */
    const char *topic;         /* the runs topic */
    const vb_config *cfg;      /* dlq_topic and the replay settings (dlq.h); borrowed,
                                  must outlive the console; NULL: no DLQ endpoints */
} vb_console_opts;

/* Copies the options; connects nothing yet. NULL on out of memory. */
vb_console *vb_console_new(const vb_console_opts *opts);
/* NULL is accepted. */
void vb_console_free(vb_console *c);

/* The files of producer/ui/, generated at build time by
 * cmake/embed_text.cmake (static, NUL-terminated). */
const char *vb_console_index_html(void);
const char *vb_console_app_css(void);
const char *vb_console_app_js(void);

/* The embedded asset `name` ("" or "index.html", "app.css", "app.js"):
 * its bytes (static, NUL-terminated) and content type. 0 when unknown. */
int vb_console_asset(const char *name, const char **body, const char **ctype);

/* The headers every console and API response carries (name, value pairs,
 * NULL-terminated): the strict Content-Security-Policy (no inline script or
 * style, nothing from elsewhere), X-Frame-Options: DENY, no referrer. */
extern const char *const vb_console_headers[];

/* GET /runs?state=&execution_id=&cursor=&limit= — one page of runs (store.h
 * vb_store_page). `state`, `execution_id` and `cursor` are the raw query
 * values (NULL when absent); limit 1–VB_CONSOLE_RUNS_LIMIT_MAX, else 400. */
unsigned vb_console_runs(vb_console *c, const char *state, const char *execution_id,
                         const char *cursor, long limit, char **body);

/* POST /runs/{id}/retry — a dead or failed run becomes failed with 0
 * attempts (vb_store_retry): 200, 404 unknown, 409 other states. */
unsigned vb_console_run_retry(vb_console *c, const char *run_id, char **body);

/* GET /workers — the consumer group's members with their partitions' lag,
 * in-flight runs and last activity per worker (cached for
 * VB_CONSOLE_WORKERS_CACHE_MS). One caller at a time computes a stale view;
 * the others never wait: they get the previous view (503 before the first). */
unsigned vb_console_workers(vb_console *c, char **body);

/* GET /dlq?limit= — the newest `limit` (1–1000) messages of the dead-letter
 * topic, newest first (dlq.h vb_dlq_entry_json). Reads the whole topic, so
 * it is read on demand, not polled; one DLQ read at a time (503 otherwise). */
unsigned vb_console_dlq(vb_console *c, long limit, char **body);

/* POST /dlq/{run_id}/replay — replays the run's newest dead-lettered message
 * (dlq.h vb_dlq_replay): 200, 404 without such a message, 409 when the
 * run's state forbids it (uploaded, in progress). */
unsigned vb_console_dlq_replay(vb_console *c, const char *run_id, char **body);

/* GET /cron/preview?schedule=&timezone=&count= — validates an expression and
 * zone (NULL or "" = UTC) and gives the next `count` (1–100, else 400) fire
 * times in UTC and in the zone: 200, or 400 with {"detail", "field"} naming
 * the bad field. */
unsigned vb_console_cron_preview(const char *schedule, const char *zone, long count,
                                 char **body);

#endif
