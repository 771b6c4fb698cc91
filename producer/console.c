/*
 * console.c — the web console's server side (see console.h): the embedded
 * assets of producer/ui/ and the read endpoints the console polls.
 *
 * Cost. The console polls GET /runs and GET /workers every 2 s, so neither
 * may grow with the number of jobs or runs: GET /runs reads at most
 * VB_CONSOLE_RUNS_SCAN index entries per call (vb_store_page, one Lua
 * script; a state filter walks that state's per-state index, so it reads
 * about one page), and GET /workers is computed at most once per
 * VB_CONSOLE_WORKERS_CACHE_MS for all callers (one Kafka group description,
 * one watermark/committed-offset query, one script listing the workers'
 * heartbeats and, only for members without a heartbeat, two bounded run
 * pages of the in-flight states). The numbers
 * are in docs/benchmarks.md (tests/bench/bench_console.py).
 *
 * Nothing returned holds a secret: run records have none and their
 * last_error was redacted by the worker before it was stored.
 */
#include "console.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "visionbatch/cron.h"
#include "visionbatch/dlq.h"
#include "visionbatch/heartbeat.h"
#include "visionbatch/kafka.h"
#include "visionbatch/store.h"
#include "visionbatch/tz.h"

#define KAFKA_TIMEOUT_MS 2000
#define ACTIVE_SCAN 2000 /* index entries read per state for in-flight runs */

const char *const vb_console_headers[] = {
    "Content-Security-Policy",
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Frame-Options", "DENY",
    "Referrer-Policy", "no-referrer",
    NULL,
};

struct vb_console {
    char *redis_url, *brokers, *group, *topic;
    const char *const *kprops; /* borrowed: the pass-through Kafka properties */
    const vb_config *cfg; /* borrowed: DLQ topic and replay settings; may be NULL */
    int dlq_busy;         /* a DLQ read or replay is running */
    pthread_mutex_t mu; /* guards store, beats and the workers' cache */
    vb_store *store;
    vb_heartbeat *beats; /* the workers' heartbeats, connected on first use */
    char *workers_json;
    unsigned workers_status;
    long long workers_at_ms; /* monotonic */
    int workers_computing;   /* a caller is computing the view */
};

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *dup_or_null(const char *s)
{
    return s && *s ? strdup(s) : NULL;
}

vb_console *vb_console_new(const vb_console_opts *opts)
{
    vb_console *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    pthread_mutex_init(&c->mu, NULL);
    c->cfg = opts ? opts->cfg : NULL;
    c->kprops = opts ? opts->kafka_properties : NULL;
    c->redis_url = dup_or_null(opts ? opts->redis_url : NULL);
    c->brokers = dup_or_null(opts ? opts->kafka_brokers : NULL);
    c->group = strdup(opts && opts->group_id ? opts->group_id : "visionbatch-workers");
    c->topic = strdup(opts && opts->topic ? opts->topic : "visionbatch.runs");
    if (!c->group || !c->topic || (opts && opts->redis_url && *opts->redis_url && !c->redis_url) ||
        (opts && opts->kafka_brokers && *opts->kafka_brokers && !c->brokers)) {
        vb_console_free(c);
        return NULL;
    }
    return c;
}

void vb_console_free(vb_console *c)
{
    if (!c)
        return;
    vb_store_free(c->store);
    vb_heartbeat_free(c->beats);
    free(c->redis_url);
    free(c->brokers);
    free(c->group);
    free(c->topic);
    free(c->workers_json);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* ------------------------------------------------------------------ */
/* assets                                                              */

int vb_console_asset(const char *name, const char **body, const char **ctype)
{
    if (!name[0] || strcmp(name, "index.html") == 0) {
        *body = vb_console_index_html();
        *ctype = "text/html; charset=utf-8";
    } else if (strcmp(name, "app.css") == 0) {
        *body = vb_console_app_css();
        *ctype = "text/css; charset=utf-8";
    } else if (strcmp(name, "app.js") == 0) {
        *body = vb_console_app_js();
        *ctype = "text/javascript; charset=utf-8";
    } else {
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------ */
/* JSON helpers                                                        */

static unsigned answer(cJSON *o, unsigned status, char **body)
{
    *body = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!*body) {
        *body = strdup("{\"detail\":\"out of memory\"}");
        return 500;
    }
    return status;
}

static unsigned detail(unsigned status, const char *msg, const char *field, char **body)
{
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "detail", msg);
        if (field)
            cJSON_AddStringToObject(o, "field", field);
    }
    return answer(o, status, body);
}

static unsigned store_failure(vb_err rc, const vb_error *err, char **body)
{
    switch (rc) {
    case VB_ERR_NOT_FOUND:
        return detail(404, err->msg, NULL, body);
    case VB_ERR_INVALID:
        return detail(400, err->msg, NULL, body);
    case VB_ERR_CONFLICT:
        return detail(409, err->msg, NULL, body);
    default:
        return detail(500, "storage unavailable", NULL, body);
    }
}

static void add_time(cJSON *o, const char *name, long long ms)
{
    char t[VB_TIME_STR_MAX];
    if (ms > 0 && vb_time_format_rfc3339_utc((time_t)(ms / 1000), t, sizeof t) == VB_OK)
        cJSON_AddStringToObject(o, name, t);
    else
        cJSON_AddNullToObject(o, name);
}

static cJSON *run_json(const vb_run_state *st)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "vision_analysis_id", st->id);
    cJSON_AddStringToObject(o, "state", vb_run_status_name(st->state));
    cJSON_AddNumberToObject(o, "attempts", (double)st->attempts);
    cJSON_AddStringToObject(o, "worker", st->worker);
    cJSON_AddStringToObject(o, "batch_ids", st->batch_ids);
    cJSON_AddStringToObject(o, "last_error", st->last_error);
    cJSON_AddStringToObject(o, "execution_id", st->execution_id);
    add_time(o, "updated_at", st->updated_at);
    add_time(o, "queued_at", st->queued_at);
    add_time(o, "started_at", st->started_at);
    add_time(o, "finished_at", st->finished_at);
    return o;
}

/* The store, connected on first use; call with c->mu held. */
static vb_store *store_locked(vb_console *c, vb_error *err)
{
    if (!c->store) {
        vb_store_opts so = {.connect_timeout_ms = 2000, .command_timeout_ms = 5000,
                            .client_name = "visionbatch-console"};
        if (vb_store_new(c->redis_url ? c->redis_url : "redis://127.0.0.1:6379/0", &so,
                         &c->store, err) != VB_OK)
            return NULL;
    }
    return c->store;
}

/* ------------------------------------------------------------------ */
/* runs                                                                */

unsigned vb_console_runs(vb_console *c, const char *state, const char *execution_id,
                         const char *cursor, long limit, char **body)
{
    long n = limit;
    if (n < 1 || n > VB_CONSOLE_RUNS_LIMIT_MAX)
        return detail(400, "limit must be an integer between 1 and 500", "limit", body);
    int filter = VB_RUN_NONE;
    if (state && *state && strcmp(state, "any") != 0 &&
        ((filter = vb_run_status_parse(state)) <= VB_RUN_NONE))
        return detail(400,
                      "state must be queued, processing, uploading, uploaded, failed or dead",
                      "state", body);
    if (cursor && strlen(cursor) >= VB_STORE_CURSOR_MAX)
        return detail(400, "malformed cursor", "cursor", body);
    if (execution_id && strlen(execution_id) > 64)
        return detail(400, "execution_id is longer than 64 characters", "execution_id", body);
    vb_run_state_list l;
    char next[VB_STORE_CURSOR_MAX] = "";
    vb_error err;
    vb_error_clear(&err);
    memset(&l, 0, sizeof l);
    pthread_mutex_lock(&c->mu);
    vb_store *s = store_locked(c, &err);
    vb_err rc = s ? vb_store_page(s, cursor, (size_t)n, (vb_run_status)filter, execution_id,
                                  VB_CONSOLE_RUNS_SCAN, &l, next, &err)
                  : VB_ERR_REDIS;
    pthread_mutex_unlock(&c->mu);
    if (rc != VB_OK) {
        vb_run_state_list_free(&l);
        return store_failure(rc, &err, body);
    }
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = o ? cJSON_AddArrayToObject(o, "runs") : NULL;
    for (size_t i = 0; arr && i < l.n; i++) {
        cJSON *r = run_json(&l.items[i]);
        if (r)
            cJSON_AddItemToArray(arr, r);
    }
    if (o) {
        if (next[0])
            cJSON_AddStringToObject(o, "next_cursor", next);
        else
            cJSON_AddNullToObject(o, "next_cursor");
        cJSON_AddNumberToObject(o, "total_runs", (double)l.total_runs);
        cJSON *counts = cJSON_AddObjectToObject(o, "state_counts");
        for (int st = VB_RUN_QUEUED; counts && st <= VB_RUN_DEAD; st++)
            cJSON_AddNumberToObject(counts, vb_run_status_name((vb_run_status)st),
                                    (double)l.in_state[st]);
    }
    vb_run_state_list_free(&l);
    return answer(o, 200, body);
}

unsigned vb_console_run_retry(vb_console *c, const char *run_id, char **body)
{
    vb_error err;
    vb_error_clear(&err);
    pthread_mutex_lock(&c->mu);
    vb_store *s = store_locked(c, &err);
    vb_err rc = s ? vb_store_retry(s, run_id, &err) : VB_ERR_REDIS;
    pthread_mutex_unlock(&c->mu);
    if (rc == VB_ERR_INVALID)
        return detail(404, "run not found", NULL, body);
    if (rc != VB_OK)
        return store_failure(rc, &err, body);
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "status", "success");
        cJSON_AddStringToObject(o, "message",
                                "the run is failed with 0 attempts; the next pass of its job "
                                "publishes it again");
    }
    return answer(o, 200, body);
}

/* ------------------------------------------------------------------ */
/* workers                                                             */

typedef struct worker_stats {
    const char *id;
    long in_flight;
    long long last_ms;
} worker_stats;

/* Counts in-flight runs (processing, uploading) per worker and each worker's
 * latest run update, over the ACTIVE_SCAN most recent index entries. */
static vb_err active_runs(vb_console *c, cJSON *workers, vb_error *err)
{
    static const vb_run_status states[] = {VB_RUN_PROCESSING, VB_RUN_UPLOADING};
    vb_err rc = VB_OK;
    pthread_mutex_lock(&c->mu);
    vb_store *s = store_locked(c, err);
    for (size_t k = 0; s && rc == VB_OK && k < 2; k++) {
        vb_run_state_list l;
        char next[VB_STORE_CURSOR_MAX];
        rc = vb_store_page(s, NULL, 1000, states[k], NULL, ACTIVE_SCAN, &l, next, err);
        for (size_t i = 0; rc == VB_OK && i < l.n; i++) {
            const vb_run_state *st = &l.items[i];
            cJSON *w = cJSON_GetObjectItemCaseSensitive(workers, st->worker[0] ? st->worker : "?");
            if (!w) {
                w = cJSON_CreateObject();
                if (!w)
                    break;
                cJSON_AddNumberToObject(w, "in_flight", 0);
                cJSON_AddNumberToObject(w, "last_ms", 0);
                cJSON_AddItemToObject(workers, st->worker[0] ? st->worker : "?", w);
            }
            cJSON *n = cJSON_GetObjectItem(w, "in_flight");
            cJSON *t = cJSON_GetObjectItem(w, "last_ms");
            cJSON_SetNumberValue(n, n->valuedouble + 1);
            if ((double)st->updated_at > t->valuedouble)
                cJSON_SetNumberValue(t, (double)st->updated_at);
        }
        vb_run_state_list_free(&l);
    }
    pthread_mutex_unlock(&c->mu);
    return s ? rc : VB_ERR_REDIS;
}

/* The workers' heartbeats, newest beat first, into a malloc'd array (*n of
 * them; free() it). */
static vb_err read_beats(vb_console *c, vb_beat **out, size_t *n, vb_error *err)
{
    *n = 0;
    if (!(*out = calloc(VB_BEAT_LIST_MAX, sizeof **out)))
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    pthread_mutex_lock(&c->mu);
    vb_err rc = c->beats ? VB_OK
                         : vb_heartbeat_new(c->redis_url ? c->redis_url
                                                         : "redis://127.0.0.1:6379/0",
                                            &c->beats, err);
    if (rc == VB_OK)
        rc = vb_heartbeat_list(c->beats, *out, VB_BEAT_LIST_MAX, n, err);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

static const vb_beat *beat_of(const vb_beat *beats, size_t n, const char *worker)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(beats[i].worker, worker) == 0)
            return &beats[i];
    return NULL;
}

/* A heartbeat's fields: last_heartbeat, heartbeat (live | stale | none) and,
 * when it has one, slots and the in-flight runs it reported. */
static void add_beat(cJSON *o, const vb_beat *b, long long now)
{
    add_time(o, "last_heartbeat", b ? b->beat_at : 0);
    cJSON_AddStringToObject(o, "heartbeat", !b ? "none" : vb_beat_stale(b, now) ? "stale"
                                                                               : "live");
    if (b)
        cJSON_AddNumberToObject(o, "slots", (double)b->slots);
    else
        cJSON_AddNullToObject(o, "slots");
}

static long long partition_lag_of(const vb_kafka_topic_list *tl, int partition)
{
    for (size_t i = 0; i < tl->n; i++)
        for (int j = 0; j < tl->items[i].npartitions; j++)
            if (tl->items[i].partitions[j].partition == partition)
                return vb_kafka_partition_lag(&tl->items[i].partitions[j]);
    return 0;
}

static unsigned workers_compute(vb_console *c, char **body)
{
    if (!c->brokers)
        return detail(503, "Kafka is not configured in this process", NULL, body);
    vb_error err;
    vb_error_clear(&err);
    vb_kafka_group g;
    vb_kafka_topic_list tl;
    memset(&tl, 0, sizeof tl);
    cJSON *activity = cJSON_CreateObject();
    cJSON *o = cJSON_CreateObject();
    unsigned status = 200;
    vb_beat *beats = NULL;
    size_t nbeats = 0;
    long long now = vb_store_now_ms();
    vb_err rc = vb_kafka_group_describe(c->brokers, c->kprops, c->group, c->topic,
                                        KAFKA_TIMEOUT_MS, &g, &err);
    if (rc == VB_OK)
        rc = vb_kafka_topics_describe(c->brokers, c->kprops, c->group, c->topic, KAFKA_TIMEOUT_MS,
                                      &tl, &err);
    if (rc == VB_ERR_NOT_FOUND) /* no runs topic yet: no lag */
        rc = VB_OK;
    if (rc != VB_OK) {
        status = detail(503, "Kafka is unreachable", NULL, body);
        goto done;
    }
    if (!o || !activity || read_beats(c, &beats, &nbeats, &err) != VB_OK) {
        status = detail(500, o && activity ? "storage unavailable" : "out of memory", NULL, body);
        goto done;
    }
    /* A member's runs in flight come from its heartbeat; only members
     * without one (a worker of an older version) are counted from the runs
     * in flight, which costs a page of each in-flight state. */
    int unbeaten = 0;
    for (size_t i = 0; i < g.n; i++)
        unbeaten += !beat_of(beats, nbeats, g.members[i].client_id);
    if (unbeaten && active_runs(c, activity, &err) != VB_OK) {
        status = detail(500, "storage unavailable", NULL, body);
        goto done;
    }
    cJSON_AddStringToObject(o, "group", c->group);
    cJSON_AddStringToObject(o, "topic", c->topic);
    cJSON_AddStringToObject(o, "state", g.state);
    cJSON *parts = cJSON_AddArrayToObject(o, "partitions");
    long long total = 0;
    for (size_t i = 0; parts && i < tl.n; i++) {
        for (int j = 0; j < tl.items[i].npartitions; j++) {
            const vb_kafka_partition_info *p = &tl.items[i].partitions[j];
            cJSON *po = cJSON_CreateObject();
            if (!po)
                break;
            cJSON_AddNumberToObject(po, "partition", p->partition);
            if (p->committed >= 0)
                cJSON_AddNumberToObject(po, "committed", (double)p->committed);
            else
                cJSON_AddNullToObject(po, "committed");
            cJSON_AddNumberToObject(po, "high", (double)p->high);
            cJSON_AddNumberToObject(po, "lag", (double)vb_kafka_partition_lag(p));
            total += vb_kafka_partition_lag(p);
            cJSON_AddItemToArray(parts, po);
        }
    }
    cJSON_AddNumberToObject(o, "total_lag", (double)total);
    cJSON *members = cJSON_AddArrayToObject(o, "members");
    for (size_t i = 0; members && i < g.n; i++) {
        const vb_kafka_member *m = &g.members[i];
        cJSON *mo = cJSON_CreateObject();
        if (!mo)
            break;
        cJSON_AddStringToObject(mo, "worker", m->client_id);
        cJSON_AddStringToObject(mo, "host", m->host);
        cJSON *pa = cJSON_AddArrayToObject(mo, "partitions");
        long long lag = 0;
        for (int j = 0; pa && j < m->npartitions; j++) {
            cJSON_AddItemToArray(pa, cJSON_CreateNumber(m->partitions[j]));
            lag += partition_lag_of(&tl, m->partitions[j]);
        }
        cJSON_AddNumberToObject(mo, "lag", (double)lag);
        cJSON *act = cJSON_GetObjectItemCaseSensitive(activity, m->client_id);
        const vb_beat *mb = beat_of(beats, nbeats, m->client_id);
        cJSON_AddNumberToObject(mo, "in_flight",
                                mb    ? (double)mb->in_flight
                                : act ? cJSON_GetObjectItem(act, "in_flight")->valuedouble
                                      : 0);
        add_time(mo, "last_activity",
                 act ? (long long)cJSON_GetObjectItem(act, "last_ms")->valuedouble : 0);
        add_beat(mo, mb, now);
        cJSON_AddItemToArray(members, mo);
    }
    /* Every heartbeat, members or not: a worker that stopped beating (stale)
     * may have left the group already, and one that beats may not have
     * joined it yet. */
    cJSON *hbs = cJSON_AddArrayToObject(o, "heartbeats");
    for (size_t i = 0; hbs && i < nbeats; i++) {
        const vb_beat *b = &beats[i];
        cJSON *ho = cJSON_CreateObject();
        if (!ho)
            break;
        int member = 0;
        for (size_t k = 0; k < g.n && !member; k++)
            member = strcmp(g.members[k].client_id, b->worker) == 0;
        cJSON_AddStringToObject(ho, "worker", b->worker);
        cJSON_AddStringToObject(ho, "host", b->host);
        cJSON_AddStringToObject(ho, "version", b->version);
        cJSON_AddNumberToObject(ho, "in_flight", (double)b->in_flight);
        add_time(ho, "started_at", b->started_at);
        cJSON_AddNumberToObject(ho, "interval_ms", (double)b->interval_ms);
        cJSON_AddBoolToObject(ho, "member", member);
        add_beat(ho, b, now);
        cJSON_AddItemToArray(hbs, ho);
    }
    status = answer(o, 200, body);
    o = NULL;
done:
    free(beats);
    cJSON_Delete(o);
    cJSON_Delete(activity);
    vb_kafka_group_free(&g);
    vb_kafka_topic_list_free(&tl);
    return status;
}

unsigned vb_console_workers(vb_console *c, char **body)
{
    /* One computation at a time, and nobody waits for it: the API's
     * event-loop threads are few, so while one caller computes (Kafka may
     * take seconds to answer) the others get the previous view at once. */
    pthread_mutex_lock(&c->mu);
    int fresh = c->workers_json && mono_ms() - c->workers_at_ms < VB_CONSOLE_WORKERS_CACHE_MS;
    int compute = !fresh && !c->workers_computing;
    if (compute)
        c->workers_computing = 1;
    pthread_mutex_unlock(&c->mu);
    if (compute) {
        char *json = NULL;
        unsigned st = workers_compute(c, &json);
        pthread_mutex_lock(&c->mu);
        free(c->workers_json);
        c->workers_json = json;
        c->workers_status = st;
        c->workers_at_ms = mono_ms();
        c->workers_computing = 0;
        pthread_mutex_unlock(&c->mu);
    }
    pthread_mutex_lock(&c->mu);
    *body = c->workers_json ? strdup(c->workers_json) : NULL;
    unsigned status = c->workers_json ? c->workers_status : 503;
    pthread_mutex_unlock(&c->mu);
    if (status == 503 && !*body)
        return detail(503, "the workers' view is being computed: ask again", NULL, body);
    if (!*body)
        return detail(500, "out of memory", NULL, body);
    return status;
}

/* ------------------------------------------------------------------ */
/* dead-letter topic                                                   */

/* One DLQ operation at a time (each reads the whole topic); 0 when another
 * is running. */
static int dlq_begin(vb_console *c)
{
    pthread_mutex_lock(&c->mu);
    int ok = !c->dlq_busy;
    c->dlq_busy = 1;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

static void dlq_end(vb_console *c)
{
    pthread_mutex_lock(&c->mu);
    c->dlq_busy = 0;
    pthread_mutex_unlock(&c->mu);
}

static unsigned dlq_unavailable(vb_console *c, char **body)
{
    if (!c->brokers || !c->cfg)
        return detail(503, "Kafka is not configured in this process", NULL, body);
    return detail(503, "another dead-letter read is running: ask again", NULL, body);
}

unsigned vb_console_dlq(vb_console *c, long limit, char **body)
{
    if (limit < 1 || limit > VB_CONSOLE_DLQ_LIMIT_MAX)
        return detail(400, "limit must be an integer between 1 and 1000", "limit", body);
    if (!c->brokers || !c->cfg || !dlq_begin(c))
        return dlq_unavailable(c, body);
    vb_dlq d;
    vb_error err;
    vb_error_clear(&err);
    unsigned status;
    if (vb_dlq_read(c->brokers, c->kprops, c->cfg->dlq_topic, (size_t)limit, KAFKA_TIMEOUT_MS,
                    &d, &err) != VB_OK) {
        status = detail(503, "Kafka is unreachable", NULL, body);
    } else {
        cJSON *o = cJSON_CreateObject();
        cJSON *arr = o ? cJSON_AddArrayToObject(o, "messages") : NULL;
        for (size_t i = d.n; arr && i > 0; i--) /* newest first */
            cJSON_AddItemToArray(arr, vb_dlq_entry_json(vb_dlq_at(&d, i - 1)));
        if (o) {
            cJSON_AddStringToObject(o, "topic", c->cfg->dlq_topic);
            cJSON_AddNumberToObject(o, "total", (double)d.total);
        }
        status = answer(o, 200, body);
    }
    vb_dlq_free(&d);
    dlq_end(c);
    return status;
}

unsigned vb_console_dlq_replay(vb_console *c, const char *run_id, char **body)
{
    if (!c->brokers || !c->cfg || !dlq_begin(c))
        return dlq_unavailable(c, body);
    char id[VB_STORE_ID_MAX + 1];
    snprintf(id, sizeof id, "%s", run_id);
    for (char *p = id; *p; p++) /* run ids are stored upper case */
        *p = (char)toupper((unsigned char)*p);
    vb_dlq d;
    vb_error err;
    vb_error_clear(&err);
    vb_kafka_producer *p = NULL;
    vb_run_status was = VB_RUN_NONE;
    unsigned status;
    const vb_dlq_entry *e = NULL;
    vb_err rc = vb_dlq_read(c->brokers, c->kprops, c->cfg->dlq_topic, 0, KAFKA_TIMEOUT_MS, &d, &err);
    if (rc != VB_OK) {
        status = detail(503, "Kafka is unreachable", NULL, body);
        goto done;
    }
    if (!(e = vb_dlq_best_for(&d, id))) {
        status = detail(404, "no replayable message for this run in the dead-letter topic", NULL,
                        body);
        goto done;
    }
    if (vb_kafka_producer_new(c->brokers, c->kprops, "visionbatch-console", &p, &err) != VB_OK) {
        status = detail(503, "Kafka is unreachable", NULL, body);
        goto done;
    }
    pthread_mutex_lock(&c->mu);
    vb_store *s = store_locked(c, &err);
    rc = s ? vb_dlq_replay(c->cfg, s, p, e, 0, &was, &err) : VB_ERR_REDIS;
    pthread_mutex_unlock(&c->mu);
    if (rc == VB_ERR_CONFLICT) {
        status = detail(409, err.msg, NULL, body);
    } else if (rc != VB_OK) {
        status = detail(rc == VB_ERR_REDIS ? 500 : 503,
                        rc == VB_ERR_REDIS ? "storage unavailable" : "Kafka refused the message",
                        NULL, body);
    } else {
        cJSON *o = cJSON_CreateObject();
        if (o) {
            cJSON_AddStringToObject(o, "status", "success");
            cJSON_AddStringToObject(o, "previous_state", vb_run_status_name(was));
            cJSON_AddStringToObject(o, "message", "the run is queued again on the runs topic");
        }
        status = answer(o, 200, body);
    }
done:
    vb_kafka_producer_free(p, 5000);
    vb_dlq_free(&d);
    dlq_end(c);
    return status;
}

/* ------------------------------------------------------------------ */
/* cron preview                                                        */

unsigned vb_console_cron_preview(const char *schedule, const char *zone, long count,
                                 char **body)
{
    long n = count;
    if (n < 1 || n > VB_CRON_NEXT_MAX)
        return detail(400, "count must be an integer between 1 and 100", "count", body);
    if (!schedule || !*schedule)
        return detail(400, "schedule: a cron expression is required", "schedule", body);
    if (strlen(schedule) > VB_CRON_EXPR_MAX)
        return detail(400, "schedule: longer than 256 bytes", "schedule", body);
    const char *tz = zone && *zone ? zone : "UTC";
    if (!vb_tz_valid(tz))
        return detail(400,
                      "timezone: unknown time zone (use an IANA name such as \"UTC\" or "
                      "\"Europe/Berlin\")",
                      "timezone", body);
    vb_cron cr;
    char why[256] = "", msg[320];
    if (vb_cron_parse(schedule, &cr, why, sizeof why) != VB_OK) {
        snprintf(msg, sizeof msg, "schedule: invalid cron expression: %s", why);
        return detail(400, msg, "schedule", body);
    }
    time_t times[VB_CRON_NEXT_MAX];
    size_t got = 0;
    if (vb_cron_next_n(&cr, tz, time(NULL), (size_t)n, times, &got) != VB_OK || got == 0)
        return detail(400, "schedule: the expression never fires", "schedule", body);
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = o ? cJSON_AddArrayToObject(o, "next_runs") : NULL;
    if (o) {
        cJSON_AddStringToObject(o, "schedule", schedule);
        cJSON_AddStringToObject(o, "timezone", tz);
    }
    for (size_t i = 0; arr && i < got; i++) {
        char u[VB_TIME_STR_MAX], l[VB_TIME_STR_MAX];
        cJSON *e;
        if (vb_time_format_rfc3339_utc(times[i], u, sizeof u) != VB_OK ||
            vb_time_format_rfc3339_local(times[i], tz, l, sizeof l) != VB_OK ||
            !(e = cJSON_CreateObject()))
            continue;
        cJSON_AddStringToObject(e, "utc", u);
        cJSON_AddStringToObject(e, "local", l);
        cJSON_AddItemToArray(arr, e);
    }
    return answer(o, 200, body);
}
