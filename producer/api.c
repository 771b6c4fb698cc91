/*
 * api.c — the cron-jobs REST API (see api.h): routing, request bodies,
 * authentication, JSON shapes and error mapping on top of libmicrohttpd.
 *
 * Request life cycle. libmicrohttpd calls handle() several times per request:
 * the first call (no state yet) authenticates, routes and checks the declared
 * body size and content type, answering at once when any of them fails (so a
 * client sending `Expect: 100-continue` never uploads a refused body); later
 * calls hand over body chunks, which are buffered up to the body cap; the
 * last call (no more data) runs the route's handler. The per-request state is
 * freed in the completion callback.
 *
 * Routes are a table of (method, pattern, handler); a pattern segment "{}"
 * captures one path segment. A path that matches with another method gives
 * 405 and an Allow header.
 *
 * The API is mounted on the producer's HTTP endpoint (endpoint.h), which
 * serves /healthz, /readyz (with api_ready below) and /metrics itself and
 * hands every other path to handle().
 *
 * Threading: the endpoint's event-loop threads call handle(). A request that
 * reads or writes jobs borrows a Redis connection from a small pool
 * (jobs_pool.h, VB_API_REDIS_CONNECTIONS) for the time of its handler, so the
 * threads do not queue behind one connection; everything else is per
 * request.
 */
#include "api.h"
#include "console.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "visionbatch/buf.h"
#include "visionbatch/cron.h"
#include "visionbatch/jobs.h"
#include "visionbatch/jobs_pool.h"
#include "visionbatch/run.h"

struct vb_api {
    vb_endpoint *ep;
    vb_jobs_pool *pool;
    char *token;
    size_t token_len;
    size_t max_body;
    int port;
    vb_api_callbacks cb;
    vb_metrics *own_metrics;
    vb_metric *m_requests, *m_duration, *m_redis_conns;
};

typedef struct resp {
    unsigned status;
    char *body;        /* malloc'd */
    const char *ctype; /* static */
    char allow[64];
    int auth_challenge;
} resp;

typedef struct req req;
typedef void (*handler_fn)(vb_api *api, req *r, resp *out);

typedef struct route {
    const char *method;
    const char *pattern;
    handler_fn fn;
    int json_body; /* reads a JSON body (size and content type checked) */
    int open;      /* no token needed */
} route;

struct req {
    struct MHD_Connection *con;
    const route *rt;
    char id[160]; /* the captured segment */
    vb_buf body;
    int too_large;
    struct timespec start;
    vb_jobs *jobs; /* borrowed from the pool while the handler runs */
};

/* ------------------------------------------------------------------ */
/* responses                                                           */

static void set_json(resp *out, unsigned status, cJSON *root)
{
    out->status = status;
    out->ctype = "application/json";
    out->body = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!out->body) {
        out->status = 500;
        out->body = strdup("{\"detail\":\"out of memory\"}");
    }
}

static void set_detail(resp *out, unsigned status, const char *detail)
{
    cJSON *o = cJSON_CreateObject();
    if (o)
        cJSON_AddStringToObject(o, "detail", detail);
    set_json(out, status, o);
}

/* Maps a failed job operation to its HTTP answer. */
static void set_error(resp *out, vb_err rc, const vb_error *err)
{
    switch (rc) {
    case VB_ERR_NOT_FOUND:
        set_detail(out, 404, err->msg[0] ? err->msg : "not found");
        break;
    case VB_ERR_INVALID:
    case VB_ERR_PARSE:
        set_detail(out, 400, err->msg);
        break;
    case VB_ERR_CONFLICT:
        set_detail(out, 409, err->msg);
        break;
    case VB_ERR_CONFIG:
        set_detail(out, 500, err->msg);
        break;
    case VB_ERR_REDIS:
        set_detail(out, 500, "storage unavailable");
        break;
    default:
        set_detail(out, 500, "internal error");
        break;
    }
}

static void set_success(resp *out, const char *id, const char *verb)
{
    char msg[200];
    snprintf(msg, sizeof msg, "Cron job %s %s", id, verb);
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "status", "success");
        cJSON_AddStringToObject(o, "message", msg);
    }
    set_json(out, 200, o);
}

/* ------------------------------------------------------------------ */
/* JSON shapes                                                         */

static void add_time(cJSON *o, const char *name, long long ms)
{
    char buf[VB_TIME_STR_MAX];
    if (ms > 0 && vb_time_format_rfc3339_utc((time_t)(ms / 1000), buf, sizeof buf) == VB_OK)
        cJSON_AddStringToObject(o, name, buf);
    else
        cJSON_AddNullToObject(o, name);
}

static void add_str_or_null(cJSON *o, const char *name, const char *s)
{
    if (s && *s)
        cJSON_AddStringToObject(o, name, s);
    else
        cJSON_AddNullToObject(o, name);
}

/* The webhook fields of a job: notify (targets), notify_secret ("***" or
 * null, never the secret), pause_on_failure and paused_reason; and jitter_s. */
static void add_notify_json(cJSON *o, const vb_job *job)
{
    cJSON *targets = job->notify[0] ? cJSON_Parse(job->notify) : NULL;
    if (!cJSON_IsArray(targets)) {
        cJSON_Delete(targets);
        targets = cJSON_CreateArray();
    }
    cJSON_AddItemToObject(o, "notify", targets);
    if (job->notify_secret_enc[0])
        cJSON_AddStringToObject(o, "notify_secret", "***");
    else
        cJSON_AddNullToObject(o, "notify_secret");
    cJSON_AddNumberToObject(o, "pause_on_failure", (double)job->pause_on_failure);
    add_str_or_null(o, "paused_reason", job->paused_reason);
    cJSON_AddNumberToObject(o, "jitter_s", (double)job->jitter_s);
}

static cJSON *job_json(const vb_job *job)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *cfg = cJSON_CreateObject();
    if (!o || !cfg) {
        cJSON_Delete(o);
        cJSON_Delete(cfg);
        return NULL;
    }
    cJSON_AddStringToObject(o, "job_id", job->job_id);
    cJSON_AddStringToObject(o, "name", job->name);
    cJSON_AddStringToObject(o, "schedule", job->schedule);
    cJSON_AddStringToObject(cfg, "external_api_get_url", job->external_api_get_url);
    cJSON_AddStringToObject(cfg, "external_api_post_url", job->external_api_post_url);
    if (job->external_api_key_enc[0])
        cJSON_AddStringToObject(cfg, "external_api_key", "***");
    else
        cJSON_AddNullToObject(cfg, "external_api_key");
    cJSON_AddStringToObject(cfg, "backend_api_url", job->backend_api_url);
    cJSON_AddStringToObject(cfg, "organization_id", job->organization_id);
    cJSON_AddItemToObject(o, "config", cfg);
    cJSON_AddBoolToObject(o, "enabled", job->enabled);

    vb_cron c;
    time_t next = 0;
    int has_next = vb_cron_parse(job->schedule, &c, NULL, 0) == VB_OK &&
                   vb_cron_next(&c, job->timezone, time(NULL), &next) == VB_OK;
    cJSON_AddBoolToObject(o, "scheduled", job->enabled && has_next);
    add_time(o, "next_run", has_next ? (long long)next * 1000 : 0);
    add_time(o, "created_at", job->created_at);
    add_time(o, "updated_at", job->updated_at);
    cJSON_AddStringToObject(o, "timezone", job->timezone);
    cJSON_AddStringToObject(o, "overlap", job->overlap_allow ? "allow" : "skip");
    add_notify_json(o, job);
    return o;
}

static cJSON *exec_json(const vb_exec *e)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "execution_id", e->execution_id);
    cJSON_AddStringToObject(o, "job_id", e->job_id);
    cJSON_AddStringToObject(o, "status", e->status);
    add_time(o, "started_at", e->started_at);
    add_time(o, "completed_at", e->completed_at);
    add_str_or_null(o, "output", e->output);
    add_str_or_null(o, "batch_id", e->batch_id);
    add_time(o, "scheduled_for", e->scheduled_for);
    cJSON_AddNumberToObject(o, "runs_found", (double)e->runs_found);
    cJSON_AddNumberToObject(o, "runs_published", (double)e->runs_published);
    cJSON_AddNumberToObject(o, "runs_skipped_in_progress", (double)e->runs_skipped_in_progress);
    cJSON_AddNumberToObject(o, "runs_skipped_other_org", (double)e->runs_skipped_other_org);
    cJSON_AddNumberToObject(o, "runs_succeeded", (double)e->runs_succeeded);
    cJSON_AddNumberToObject(o, "runs_failed", (double)e->runs_failed);
    add_str_or_null(o, "skip_reason", e->skip_reason);
    cJSON *ntf = e->notifications ? cJSON_Parse(e->notifications) : NULL;
    cJSON_AddItemToObject(o, "notifications", cJSON_IsArray(ntf) ? ntf : cJSON_CreateArray());
    if (ntf && !cJSON_IsArray(ntf))
        cJSON_Delete(ntf);
    return o;
}

/* ------------------------------------------------------------------ */
/* query arguments                                                     */

static const char *query(req *r, const char *name)
{
    return MHD_lookup_connection_value(r->con, MHD_GET_ARGUMENT_KIND, name);
}

/* Strict decimal in [lo, hi]; 0 when malformed or out of range. */
static int parse_count(const char *s, long lo, long hi, long *out)
{
    if (!s || !*s || strlen(s) > 9)
        return 0;
    for (const char *p = s; *p; p++)
        if (!isdigit((unsigned char)*p))
            return 0;
    long v = strtol(s, NULL, 10);
    if (v < lo || v > hi)
        return 0;
    *out = v;
    return 1;
}

/* ------------------------------------------------------------------ */
/* handlers                                                            */

/* /readyz (served by the endpoint): Redis reachable and the producer's own
 * check passes. */
static int api_ready(void *ctx, char *why, size_t whylen)
{
    vb_api *api = ctx;
    char cbwhy[256] = "";
    vb_error err = {0};
    why[0] = '\0';
    vb_jobs *jobs = vb_jobs_pool_get(api->pool, &err);
    if (!jobs || vb_jobs_ping(jobs, &err) != VB_OK)
        snprintf(why, whylen, "redis: unreachable");
    vb_jobs_pool_put(api->pool, jobs);
    if (api->cb.ready && !api->cb.ready(api->cb.ctx, cbwhy, sizeof cbwhy)) {
        size_t n = strlen(why);
        snprintf(why + n, whylen - n, "%s%s", n ? "; " : "",
                 cbwhy[0] ? cbwhy : "producer not ready");
    }
    return why[0] == '\0';
}

static void h_openapi(vb_api *api, req *r, resp *out)
{
    out->status = 200;
    out->ctype = "application/json";
    out->body = strdup(vb_api_openapi_json());
    if (!out->body)
        set_detail(out, 500, "out of memory");
}

static void h_create(vb_api *api, req *r, resp *out)
{
    vb_job_input in;
    vb_job job = {0};
    vb_error err = {0};
    vb_err rc = vb_job_input_parse(r->body.data, r->body.len, 0, &in, &err);
    if (rc == VB_OK)
        rc = vb_jobs_create(r->jobs, &in, &job, &err);
    vb_job_input_free(&in);
    if (rc != VB_OK) {
        set_error(out, rc, &err);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "status", "success");
        cJSON_AddStringToObject(o, "job_id", job.job_id);
        cJSON_AddStringToObject(o, "name", job.name);
        cJSON_AddStringToObject(o, "schedule", job.schedule);
        cJSON_AddBoolToObject(o, "enabled", job.enabled);
    }
    vb_job_free(&job);
    set_json(out, 201, o);
}

static int cmp_created(const void *pa, const void *pb)
{
    const vb_job *a = pa, *b = pb;
    if (a->created_at != b->created_at)
        return a->created_at < b->created_at ? -1 : 1;
    return strcmp(a->job_id, b->job_id);
}

/* Every job (or every enabled one), oldest first, read a page of
 * VB_JOBS_PAGE_MAX at a time (one Redis round trip each). */
static vb_err list_all(vb_jobs *jobs, int enabled_only, vb_job_list *all, vb_error *err)
{
    char after[VB_UUID_SIZE] = "", next[VB_UUID_SIZE];
    size_t cap = 0;
    memset(all, 0, sizeof *all);
    do {
        vb_job_list page;
        vb_err rc = vb_jobs_list_page(jobs, after, VB_JOBS_PAGE_MAX, enabled_only, &page, next,
                                      err);
        if (rc != VB_OK) {
            vb_job_list_free(all);
            return rc;
        }
        if (all->n + page.n > cap) {
            size_t ncap = (all->n + page.n) * 2;
            vb_job *grown = realloc(all->items, ncap * sizeof *grown);
            if (!grown) {
                vb_job_list_free(&page);
                vb_job_list_free(all);
                return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
            }
            all->items = grown;
            cap = ncap;
        }
        if (page.n)
            memcpy(all->items + all->n, page.items, page.n * sizeof *page.items);
        all->n += page.n;
        free(page.items); /* the jobs now belong to `all` */
        memcpy(after, next, sizeof after);
    } while (after[0]);
    if (all->n > 1)
        qsort(all->items, all->n, sizeof *all->items, cmp_created);
    return VB_OK;
}

/* GET /cron-jobs: without limit and cursor every job, oldest first (the
 * original contract); with either, one page in job-id order. */
/* ?include=last_execution: each job of `l` (whose JSON objects are the
 * items of arr, in order) gets "last_execution", its newest execution or
 * null — read when asked, so it is as current as the list. One round trip
 * per VB_JOBS_PAGE_MAX jobs. */
static vb_err add_last_executions(vb_jobs *jobs, const vb_job_list *l, cJSON *arr,
                                  vb_error *err)
{
    const char *ids[VB_JOBS_PAGE_MAX];
    vb_exec *ex = calloc(VB_JOBS_PAGE_MAX, sizeof *ex);
    if (!ex)
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    vb_err rc = VB_OK;
    cJSON *item = arr->child;
    for (size_t at = 0; rc == VB_OK && at < l->n; at += VB_JOBS_PAGE_MAX) {
        size_t n = l->n - at < VB_JOBS_PAGE_MAX ? l->n - at : VB_JOBS_PAGE_MAX;
        for (size_t i = 0; i < n; i++)
            ids[i] = l->items[at + i].job_id;
        if ((rc = vb_jobs_exec_latest(jobs, ids, n, ex, err)) != VB_OK)
            break;
        for (size_t i = 0; i < n; i++, item = item ? item->next : NULL) {
            if (item && ex[i].execution_id[0])
                cJSON_AddItemToObject(item, "last_execution", exec_json(&ex[i]));
            else if (item)
                cJSON_AddNullToObject(item, "last_execution");
            vb_exec_free(&ex[i]);
        }
    }
    free(ex);
    return rc;
}

static void h_list(vb_api *api, req *r, resp *out)
{
    const char *eo = query(r, "enabled_only");
    const char *ls = query(r, "limit");
    const char *cursor = query(r, "cursor");
    const char *include = query(r, "include");
    int enabled_only = 0;
    long limit = VB_API_JOBS_PAGE_DEFAULT;
    if (include && strcmp(include, "last_execution") != 0) {
        set_detail(out, 400, "include must be last_execution");
        return;
    }
    if (eo) {
        if (strcasecmp(eo, "true") == 0 || strcmp(eo, "1") == 0)
            enabled_only = 1;
        else if (strcasecmp(eo, "false") != 0 && strcmp(eo, "0") != 0) {
            set_detail(out, 400, "enabled_only must be true or false");
            return;
        }
    }
    if (ls && !parse_count(ls, 1, VB_JOBS_PAGE_MAX, &limit)) {
        set_detail(out, 400, "limit must be an integer between 1 and 1000");
        return;
    }
    char after[VB_UUID_SIZE] = "", next[VB_UUID_SIZE] = "";
    if (cursor && *cursor) {
        if (!vb_jobs_id_valid(cursor)) {
            set_detail(out, 400, "cursor must be a next_cursor of an earlier page");
            return;
        }
        for (size_t i = 0; i < sizeof after - 1 && cursor[i]; i++)
            after[i] = (char)tolower((unsigned char)cursor[i]);
    }
    vb_job_list l;
    vb_error err = {0};
    vb_err rc = ls || cursor ? vb_jobs_list_page(r->jobs, after, (size_t)limit, enabled_only,
                                                 &l, next, &err)
                             : list_all(r->jobs, enabled_only, &l, &err);
    if (rc != VB_OK) {
        set_error(out, rc, &err);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "cron_jobs");
    for (size_t i = 0; arr && i < l.n; i++) {
        cJSON *j = job_json(&l.items[i]);
        if (!j) { /* out of memory: a short list would misplace last executions */
            cJSON_Delete(o);
            o = NULL;
            break;
        }
        cJSON_AddItemToArray(arr, j);
    }
    if (!o || !arr) {
        vb_job_list_free(&l);
        cJSON_Delete(o);
        set_detail(out, 500, "out of memory");
        return;
    }
    if (include && (rc = add_last_executions(r->jobs, &l, arr, &err)) != VB_OK) {
        vb_job_list_free(&l);
        cJSON_Delete(o);
        set_error(out, rc, &err);
        return;
    }
    vb_job_list_free(&l);
    if (next[0])
        cJSON_AddStringToObject(o, "next_cursor", next);
    else
        cJSON_AddNullToObject(o, "next_cursor");
    set_json(out, 200, o);
}

static void h_get(vb_api *api, req *r, resp *out)
{
    vb_job job;
    vb_error err = {0};
    vb_err rc = vb_jobs_get(r->jobs, r->id, &job, &err);
    if (rc != VB_OK) {
        set_error(out, rc, &err);
        return;
    }
    set_json(out, 200, job_json(&job));
    vb_job_free(&job);
}

static void h_update(vb_api *api, req *r, resp *out)
{
    vb_job_input in;
    vb_job job = {0};
    vb_error err = {0};
    vb_err rc = vb_job_input_parse(r->body.data, r->body.len, 1, &in, &err);
    if (rc == VB_OK)
        rc = vb_jobs_update(r->jobs, r->id, &in, &job, &err);
    vb_job_input_free(&in);
    if (rc != VB_OK) {
        set_error(out, rc, &err);
        return;
    }
    set_json(out, 200, job_json(&job));
    vb_job_free(&job);
}

static void set_enabled(vb_api *api, req *r, resp *out, int enabled)
{
    vb_error err = {0};
    vb_err rc = vb_jobs_set_enabled(r->jobs, r->id, enabled, &err);
    if (rc != VB_OK)
        set_error(out, rc, &err);
    else
        set_success(out, r->id, enabled ? "activated" : "deactivated");
}

static void h_activate(vb_api *api, req *r, resp *out)
{
    set_enabled(api, r, out, 1);
}

static void h_deactivate(vb_api *api, req *r, resp *out)
{
    set_enabled(api, r, out, 0);
}

static void h_delete(vb_api *api, req *r, resp *out)
{
    vb_error err = {0};
    vb_err rc = vb_jobs_delete(r->jobs, r->id, &err);
    if (rc != VB_OK)
        set_error(out, rc, &err);
    else
        set_success(out, r->id, "deleted");
}

static void h_executions(vb_api *api, req *r, resp *out)
{
    long limit = VB_API_EXEC_LIMIT_DEFAULT;
    const char *ls = query(r, "limit");
    if (ls && !parse_count(ls, 1, VB_API_EXEC_LIMIT_MAX, &limit)) {
        set_detail(out, 400, "limit must be an integer between 1 and 1000");
        return;
    }
    vb_job job;
    vb_exec_list l = {0};
    vb_error err = {0};
    vb_err rc = vb_jobs_get(r->jobs, r->id, &job, &err);
    if (rc == VB_OK) {
        vb_job_free(&job);
        rc = vb_jobs_exec_list(r->jobs, r->id, (size_t)limit, &l, &err);
    }
    if (rc != VB_OK) {
        set_error(out, rc, &err);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "job_id", r->id);
    cJSON *arr = cJSON_AddArrayToObject(o, "executions");
    for (size_t i = 0; arr && i < l.n; i++) {
        cJSON *e = exec_json(&l.items[i]);
        if (e)
            cJSON_AddItemToArray(arr, e);
    }
    vb_exec_list_free(&l);
    set_json(out, 200, o);
}

static void h_next_runs(vb_api *api, req *r, resp *out)
{
    long count = VB_API_NEXT_RUNS_DEFAULT;
    const char *cs = query(r, "count");
    if (cs && !parse_count(cs, 1, VB_CRON_NEXT_MAX, &count)) {
        set_detail(out, 400, "count must be an integer between 1 and 100");
        return;
    }
    vb_job job;
    vb_error err = {0};
    vb_err rc = vb_jobs_get(r->jobs, r->id, &job, &err);
    if (rc != VB_OK) {
        set_error(out, rc, &err);
        return;
    }
    time_t times[VB_CRON_NEXT_MAX];
    size_t got = 0;
    vb_cron c;
    if (vb_cron_parse(job.schedule, &c, NULL, 0) != VB_OK ||
        vb_cron_next_n(&c, job.timezone, time(NULL), (size_t)count, times, &got) != VB_OK)
        got = 0;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "job_id", job.job_id);
    cJSON_AddStringToObject(o, "schedule", job.schedule);
    cJSON_AddStringToObject(o, "timezone", job.timezone);
    cJSON *arr = cJSON_AddArrayToObject(o, "next_runs");
    for (size_t i = 0; arr && i < got; i++) {
        char u[VB_TIME_STR_MAX], l[VB_TIME_STR_MAX];
        if (vb_time_format_rfc3339_utc(times[i], u, sizeof u) != VB_OK ||
            vb_time_format_rfc3339_local(times[i], job.timezone, l, sizeof l) != VB_OK)
            continue;
        cJSON *e = cJSON_CreateObject();
        if (!e)
            continue;
        cJSON_AddStringToObject(e, "utc", u);
        cJSON_AddStringToObject(e, "local", l);
        cJSON_AddItemToArray(arr, e);
    }
    vb_job_free(&job);
    set_json(out, 200, o);
}

static void h_run_now(vb_api *api, req *r, resp *out)
{
    vb_job job;
    vb_error err = {0};
    vb_err rc = vb_jobs_get(r->jobs, r->id, &job, &err);
    if (rc != VB_OK) {
        set_error(out, rc, &err);
        return;
    }
    vb_job_free(&job);
    if (!api->cb.fire_now) {
        set_detail(out, 503, "manual runs are not available in this process");
        return;
    }
    char exec_id[VB_UUID_SIZE] = "";
    rc = api->cb.fire_now(api->cb.ctx, r->id, exec_id, &err);
    if (rc != VB_OK) {
        set_error(out, rc, &err);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "status", "success");
        cJSON_AddStringToObject(o, "execution_id", exec_id);
    }
    set_json(out, 202, o);
}

static void h_run_state(vb_api *api, req *r, resp *out)
{
    if (!vb_run_id_valid(r->id)) { /* the one run id rule (run.h) */
        set_detail(out, 404, "run not found");
        return;
    }
    if (!api->cb.run_state_json) {
        set_detail(out, 503, "run state is not available in this process");
        return;
    }
    char *json = NULL;
    vb_error err = {0};
    vb_err rc = api->cb.run_state_json(api->cb.ctx, r->id, &json, &err);
    if (rc == VB_ERR_NOT_FOUND) {
        char msg[200];
        snprintf(msg, sizeof msg, "run %s not found", r->id);
        free(json);
        set_detail(out, 404, msg);
        return;
    }
    if (rc != VB_OK || !json) {
        free(json);
        set_detail(out, 500, rc == VB_ERR_REDIS ? "storage unavailable" : "internal error");
        return;
    }
    out->status = 200;
    out->ctype = "application/json";
    out->body = json;
}

/* ---- the web console (console.h) ---- */

static void h_ui(vb_api *api, req *r, resp *out)
{
    const char *body, *ctype;
    if (!vb_console_asset(r->id, &body, &ctype)) {
        set_detail(out, 404, "not found");
        return;
    }
    out->status = 200;
    out->ctype = ctype;
    out->body = strdup(body);
}

static void h_ui_index(vb_api *api, req *r, resp *out)
{
    r->id[0] = '\0';
    h_ui(api, r, out);
}

static int no_console(vb_api *api, resp *out)
{
    if (api->cb.console)
        return 0;
    set_detail(out, 503, "the console is not available in this process");
    return 1;
}

/* The `limit` query parameter of a console listing: `def` when absent, 0
 * when not an integer in 1..max (the console refuses 0 with its message). */
static long console_limit(req *r, long def, long max)
{
    long limit = def;
    const char *ls = query(r, "limit");
    if (ls && !parse_count(ls, 1, max, &limit))
        limit = 0;
    return limit;
}

static void h_runs(vb_api *api, req *r, resp *out)
{
    if (no_console(api, out))
        return;
    long limit = console_limit(r, VB_CONSOLE_RUNS_LIMIT_DEFAULT, VB_CONSOLE_RUNS_LIMIT_MAX);
    out->ctype = "application/json";
    out->status = vb_console_runs(api->cb.console, query(r, "state"), query(r, "execution_id"),
                                  query(r, "cursor"), limit, &out->body);
}

/* An action of the console on run r->id (retry, replay). */
static void run_action(vb_api *api, req *r, resp *out,
                       unsigned (*fn)(vb_console *, const char *, char **))
{
    if (!vb_run_id_valid(r->id)) {
        set_detail(out, 404, "run not found");
        return;
    }
    if (no_console(api, out))
        return;
    out->ctype = "application/json";
    out->status = fn(api->cb.console, r->id, &out->body);
}

static void h_run_retry(vb_api *api, req *r, resp *out)
{
    run_action(api, r, out, vb_console_run_retry);
}

static void h_workers(vb_api *api, req *r, resp *out)
{
    if (no_console(api, out))
        return;
    out->ctype = "application/json";
    out->status = vb_console_workers(api->cb.console, &out->body);
}

static void h_dlq(vb_api *api, req *r, resp *out)
{
    if (no_console(api, out))
        return;
    long limit = console_limit(r, VB_CONSOLE_DLQ_LIMIT_DEFAULT, VB_CONSOLE_DLQ_LIMIT_MAX);
    out->ctype = "application/json";
    out->status = vb_console_dlq(api->cb.console, limit, &out->body);
}

static void h_dlq_replay(vb_api *api, req *r, resp *out)
{
    run_action(api, r, out, vb_console_dlq_replay);
}

static void h_cron_preview(vb_api *api, req *r, resp *out)
{
    long count = VB_API_NEXT_RUNS_DEFAULT;
    const char *cs = query(r, "count");
    if (cs && !parse_count(cs, 1, VB_CRON_NEXT_MAX, &count))
        count = 0; /* refused by the console with its message */
    out->ctype = "application/json";
    out->status = vb_console_cron_preview(query(r, "schedule"), query(r, "timezone"), count,
                                          &out->body);
}

static const route routes[] = {
    {"GET", "/openapi.json", h_openapi, 0, 0},
    {"POST", "/cron-jobs", h_create, 1, 0},
    {"GET", "/cron-jobs", h_list, 0, 0},
    {"GET", "/cron-jobs/{}", h_get, 0, 0},
    {"PUT", "/cron-jobs/{}", h_update, 1, 0},
    {"DELETE", "/cron-jobs/{}", h_delete, 0, 0},
    {"POST", "/cron-jobs/{}/activate", h_activate, 0, 0},
    {"POST", "/cron-jobs/{}/deactivate", h_deactivate, 0, 0},
    {"POST", "/cron-jobs/{}/run", h_run_now, 0, 0},
    {"GET", "/cron-jobs/{}/executions", h_executions, 0, 0},
    {"GET", "/cron-jobs/{}/next-runs", h_next_runs, 0, 0},
    {"GET", "/runs/{}", h_run_state, 0, 0},
    {"GET", "/runs", h_runs, 0, 0},
    {"POST", "/runs/{}/retry", h_run_retry, 0, 0},
    {"GET", "/workers", h_workers, 0, 0},
    {"GET", "/dlq", h_dlq, 0, 0},
    {"POST", "/dlq/{}/replay", h_dlq_replay, 0, 0},
    {"GET", "/cron/preview", h_cron_preview, 0, 0},
    {"GET", "/ui", h_ui_index, 0, 1},
    {"GET", "/ui/{}", h_ui, 0, 1},
};
#define NROUTES (sizeof routes / sizeof routes[0])

/* Routes whose handler reads or writes jobs borrow a Redis connection. */
static int uses_jobs(const route *rt)
{
    return strncmp(rt->pattern, "/cron-jobs", 10) == 0;
}

int vb_api_route(size_t i, const char **method, const char **pattern)
{
    if (i >= NROUTES) /* then the endpoint's own: /healthz, /readyz, /metrics */
        return vb_endpoint_route(i - NROUTES, method, pattern);
    *method = routes[i].method;
    *pattern = routes[i].pattern;
    return 1;
}

/* Matches `path` against `pattern`; on success copies the "{}" segment into
 * id (when present). A trailing slash on the path is ignored. */
static int match(const char *pattern, const char *path, char *id, size_t idlen)
{
    const char *p = pattern, *s = path;
    while (*p) {
        if (p[0] == '{' && p[1] == '}') {
            const char *end = s;
            while (*end && *end != '/')
                end++;
            size_t n = (size_t)(end - s);
            if (n == 0 || n >= idlen)
                return 0;
            memcpy(id, s, n);
            id[n] = '\0';
            s = end;
            p += 2;
            continue;
        }
        if (*p != *s)
            return 0;
        p++;
        s++;
    }
    return *s == '\0' || (s[0] == '/' && s[1] == '\0');
}

/* Finds the route; when only the method differs, fills `allow` and returns
 * NULL. */
static const route *find_route(const char *method, const char *path, char *id, size_t idlen,
                               char *allow, size_t allowlen)
{
    const char *m = strcmp(method, "HEAD") == 0 ? "GET" : method;
    allow[0] = '\0';
    for (size_t i = 0; i < NROUTES; i++) {
        if (!match(routes[i].pattern, path, id, idlen))
            continue;
        if (strcmp(routes[i].method, m) == 0)
            return &routes[i];
        size_t n = strlen(allow);
        snprintf(allow + n, allowlen - n, "%s%s", n ? ", " : "", routes[i].method);
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* libmicrohttpd glue                                                  */

static enum MHD_Result send_resp(vb_api *api, struct MHD_Connection *con, const char *method,
                                 const route *rt, const struct timespec *start, resp *out)
{
    if (!out->body) {
        out->status = 500;
        out->body = strdup("{\"detail\":\"internal error\"}");
        out->ctype = "application/json";
    }
    size_t len = out->body ? strlen(out->body) : 0;
    struct MHD_Response *rsp =
        MHD_create_response_from_buffer(len, out->body ? out->body : (char *)"",
                                        out->body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!rsp) {
        free(out->body);
        return MHD_NO;
    }
    out->body = NULL;
    MHD_add_response_header(rsp, MHD_HTTP_HEADER_CONTENT_TYPE, out->ctype);
    MHD_add_response_header(rsp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(rsp, "X-Content-Type-Options", "nosniff");
    for (const char *const *h = vb_console_headers; *h; h += 2)
        MHD_add_response_header(rsp, h[0], h[1]);
    if (out->allow[0])
        MHD_add_response_header(rsp, MHD_HTTP_HEADER_ALLOW, out->allow);
    if (out->auth_challenge)
        MHD_add_response_header(rsp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    enum MHD_Result ret = MHD_queue_response(con, out->status, rsp);
    MHD_destroy_response(rsp);

    static const char *const methods[] = {"GET", "POST", "PUT", "DELETE", "HEAD"};
    const char *mlabel = "other";
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (strcmp(method, methods[i]) == 0)
            mlabel = methods[i];
    char code[8];
    snprintf(code, sizeof code, "%u", out->status);
    const char *rlabel = rt ? rt->pattern : "unmatched";
    const char *labels[3] = {mlabel, rlabel, code};
    vb_metric_inc(api->m_requests, labels);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double secs = (double)(now.tv_sec - start->tv_sec) + (now.tv_nsec - start->tv_nsec) / 1e9;
    const char *dl[1] = {rlabel};
    vb_metric_observe(api->m_duration, dl, secs);
    return ret;
}

static int authorized(vb_api *api, struct MHD_Connection *con)
{
    return vb_endpoint_bearer_ok(con, api->token, api->token_len);
}

/* Every Content-Length header of a request: libmicrohttpd frames the body
 * by the first one, so a second with another value must be refused. */
typedef struct content_lengths {
    const char *first;
    int conflict;
} content_lengths;

static enum MHD_Result on_content_length(void *cls, enum MHD_ValueKind kind, const char *key,
                                         const char *value)
{
    content_lengths *c = cls;
    if (!key || strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) != 0)
        return MHD_YES;
    if (!c->first)
        c->first = value ? value : "";
    else if (strcmp(c->first, value ? value : "") != 0)
        c->conflict = 1;
    return MHD_YES;
}

/* The media type application/json (any case), alone or with parameters
 * ("application/json; charset=utf-8"); not application/jsonX or a suffix. */
static int is_json_media_type(const char *ct)
{
    static const char json[] = "application/json";
    if (strncasecmp(ct, json, sizeof json - 1) != 0)
        return 0;
    const char *p = ct + sizeof json - 1;
    while (*p == ' ' || *p == '\t')
        p++;
    return *p == '\0' || *p == ';';
}

/* Checks done before any body is read; 1 when `out` holds a refusal. */
static int precheck(vb_api *api, req *r, resp *out)
{
    /* Every path here is authenticated (the open probe paths /healthz and
     * /readyz are the endpoint's), unknown paths included, so the route
     * table is not disclosed. */
    if (!(r->rt && r->rt->open) && !authorized(api, r->con)) {
        out->allow[0] = '\0';
        set_detail(out, 401, "missing or invalid API token (send Authorization: Bearer <token>)");
        out->auth_challenge = 1;
        return 1;
    }
    if (!r->rt) {
        if (out->allow[0])
            set_detail(out, 405, "method not allowed");
        else
            set_detail(out, 404, "not found");
        return 1;
    }
    content_lengths cls = {0};
    MHD_get_connection_values(r->con, MHD_HEADER_KIND, on_content_length, &cls);
    if (cls.conflict) { /* which one frames the body? (RFC 9112 §6.3) */
        set_detail(out, 400, "conflicting Content-Length headers");
        return 1;
    }
    const char *cl = cls.first;
    if (cl) {
        char *end = NULL;
        unsigned long long n = strtoull(cl, &end, 10);
        if (end != cl && n > api->max_body) {
            char msg[96];
            snprintf(msg, sizeof msg, "request body larger than %zu bytes", api->max_body);
            set_detail(out, 413, msg);
            return 1;
        }
    }
    if (r->rt->json_body) {
        const char *ct =
            MHD_lookup_connection_value(r->con, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        if (ct && !is_json_media_type(ct)) {
            set_detail(out, 415, "Content-Type must be application/json");
            return 1;
        }
    }
    return 0;
}

static int handle(void *cls, struct MHD_Connection *con, const char *url, const char *method,
                  const char *version, const char *upload_data, size_t *upload_data_size,
                  void **con_cls)
{
    vb_api *api = cls;
    req *r = *con_cls;
    resp out = {0};
    vb_error e = {0};

    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        r->con = con;
        clock_gettime(CLOCK_MONOTONIC, &r->start);
        r->body.limit = api->max_body;
        *con_cls = r;
        r->rt = find_route(method, url, r->id, sizeof r->id, out.allow, sizeof out.allow);
        if (r->rt && strncmp(r->rt->pattern, "/cron-jobs/", 11) == 0)
            for (char *p = r->id; *p; p++) /* job ids are stored lower case */
                *p = (char)tolower((unsigned char)*p);
        if (precheck(api, r, &out))
            return send_resp(api, con, method, r->rt, &r->start, &out);
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (!r->too_large && vb_buf_append(&r->body, upload_data, *upload_data_size) != VB_OK)
            r->too_large = 1;
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->too_large) {
        char msg[96];
        snprintf(msg, sizeof msg, "request body larger than %zu bytes", api->max_body);
        set_detail(&out, 413, msg);
    } else if (uses_jobs(r->rt) && !(r->jobs = vb_jobs_pool_get(api->pool, &e))) {
        set_error(&out, VB_ERR_REDIS, &e);
    } else {
        if (r->jobs)
            vb_metric_set(api->m_redis_conns, NULL,
                          (double)vb_jobs_pool_open_count(api->pool));
        r->rt->fn(api, r, &out);
    }
    vb_jobs_pool_put(api->pool, r->jobs);
    r->jobs = NULL;
    return send_resp(api, con, method, r->rt, &r->start, &out);
}

static void completed(void *cls, struct MHD_Connection *con, void **con_cls, int toe)
{
    req *r = *con_cls;
    if (!r)
        return;
    vb_buf_free(&r->body);
    free(r);
    *con_cls = NULL;
}

/* ------------------------------------------------------------------ */
/* start / stop                                                        */

vb_err vb_api_listen_parse(const char *listen, char host[64], int *port, int *is_ipv6,
                           int *is_loopback, vb_error *err)
{
    char h[64];
    const char *portstr;
    if (!listen || !*listen)
        return vb_error_set(err, VB_ERR_CONFIG, "listen address is empty");
    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (!close || close[1] != ':' || (size_t)(close - listen - 1) >= sizeof h)
            return vb_error_set(err, VB_ERR_CONFIG,
                                "listen address \"%.80s\": expected [ipv6]:port", listen);
        memcpy(h, listen + 1, (size_t)(close - listen - 1));
        h[close - listen - 1] = '\0';
        portstr = close + 2;
    } else {
        const char *colon = strrchr(listen, ':');
        if (!colon || (size_t)(colon - listen) >= sizeof h || memchr(listen, ':', (size_t)(colon - listen)))
            return vb_error_set(err, VB_ERR_CONFIG,
                                "listen address \"%.80s\": expected host:port (IPv6 in brackets)",
                                listen);
        memcpy(h, listen, (size_t)(colon - listen));
        h[colon - listen] = '\0';
        portstr = colon + 1;
    }
    long p;
    if (!parse_count(portstr, 0, 65535, &p))
        return vb_error_set(err, VB_ERR_CONFIG, "listen address \"%.80s\": bad port", listen);
    if (strcasecmp(h, "localhost") == 0)
        snprintf(h, sizeof h, "127.0.0.1");
    else if (h[0] == '\0')
        snprintf(h, sizeof h, "0.0.0.0");
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, h, &a4) == 1) {
        *is_ipv6 = 0;
        *is_loopback = (ntohl(a4.s_addr) >> 24) == 127;
    } else if (inet_pton(AF_INET6, h, &a6) == 1) {
        *is_ipv6 = 1;
        *is_loopback = IN6_IS_ADDR_LOOPBACK(&a6);
    } else {
        return vb_error_set(err, VB_ERR_CONFIG,
                            "listen address \"%.80s\": host must be a numeric IP address or "
                            "localhost", listen);
    }
    snprintf(host, 64, "%s", h);
    *port = (int)p;
    return VB_OK;
}

vb_api *vb_api_start(const vb_api_opts *opts, vb_error *err)
{
    vb_api *api = NULL;
    unsigned char key[VB_CRYPTO_KEY_SIZE];
    int has_key = 0, port = 0, v6 = 0, loop = 0;
    char host[64];
    const char *listen = opts && opts->listen ? opts->listen : "127.0.0.1:8000";

    if (vb_api_listen_parse(listen, host, &port, &v6, &loop, err) != VB_OK)
        return NULL;
    int has_token = opts && opts->token && opts->token[0];
    if (!loop && !has_token) {
        vb_error_set(err, VB_ERR_CONFIG,
                     "refusing to listen on non-loopback address %s without an API token "
                     "(set VISIONBATCH_API_TOKEN or --api-token-file)",
                     host);
        return NULL;
    }
    if (opts && opts->secret_key && opts->secret_key[0]) {
        if (vb_crypto_key_parse(opts->secret_key, key, err) != VB_OK)
            return NULL;
        has_key = 1;
    }
    if (!(api = calloc(1, sizeof *api))) {
        vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (opts)
        api->cb = opts->cb;
    api->max_body = opts && opts->max_body ? opts->max_body : VB_API_MAX_BODY_DEFAULT;
    if (has_token) {
        if (!(api->token = strdup(opts->token))) {
            vb_error_set(err, VB_ERR_NOMEM, "out of memory");
            goto fail;
        }
        api->token_len = strlen(api->token);
    }
    if (!api->cb.metrics) {
        if (!(api->own_metrics = vb_metrics_new())) {
            vb_error_set(err, VB_ERR_NOMEM, "out of memory");
            goto fail;
        }
        api->cb.metrics = api->own_metrics;
    }
    api->m_requests = vb_metrics_counter(api->cb.metrics, "visionbatch_api_requests_total",
                                         "REST API requests by method, route and status code.",
                                         "method,route,code");
    api->m_redis_conns = vb_metrics_gauge(api->cb.metrics, "visionbatch_api_redis_connections",
                                          "Redis connections opened by the REST API's pool.",
                                          NULL);
    api->m_duration = vb_metrics_histogram(api->cb.metrics, "visionbatch_api_request_seconds",
                                           "REST API request handling time.", "route", NULL, 0);
    vb_jobs_opts jo = {
        .redis_url = opts ? opts->redis_url : NULL,
        .secret_key = has_key ? key : NULL,
        .exec_cap = opts ? opts->exec_cap : 0,
        .webhook_allowed_hosts = opts ? opts->webhook_allowed_hosts : NULL,
    };
    if (vb_jobs_pool_new(&jo, opts && opts->redis_connections ? opts->redis_connections
                                                               : VB_API_REDIS_CONNECTIONS,
                         &api->pool, err) != VB_OK)
        goto fail;

    char where[80];
    snprintf(where, sizeof where, v6 ? "[%s]:%d" : "%s:%d", host, port);
    vb_endpoint_opts eo = {
        .listen = where,
        .name = "REST API",
        .metrics = api->cb.metrics,
        /* No token for the endpoint: /metrics stays open like the probes, as
         * it holds only counts and durations by method, route pattern and
         * status (no ids, names or settings), so Prometheus needs no secret
         * (docs/deploy.md, "Open endpoints"). */
        .ready = api_ready,
        .check_ctx = api,
        .app = {.handle = handle, .completed = completed, .cls = api},
        .limits = opts ? opts->limits : (vb_endpoint_limits){0},
    };
    if (vb_endpoint_start(&eo, &api->ep, err) != VB_OK)
        goto fail;
    api->port = vb_endpoint_port(api->ep);
    vb_crypto_wipe(key, sizeof key);
    return api;
fail:
    vb_crypto_wipe(key, sizeof key);
    vb_api_stop(api);
    return NULL;
}

void vb_api_stop(vb_api *api)
{
    if (!api)
        return;
    vb_endpoint_stop(api->ep);
    vb_jobs_pool_free(api->pool);
    if (api->token) {
        vb_crypto_wipe(api->token, api->token_len);
        free(api->token);
    }
    vb_metrics_free(api->own_metrics);
    free(api);
}

int vb_api_port(const vb_api *api)
{
    return api ? api->port : 0;
}
