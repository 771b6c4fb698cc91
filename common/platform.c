/*
 * platform.c — client of the user's External Vision Analysis API (platform.h,
 * SPEC.md §2).
 *
 * Fetching walks the GET pages from page 1 and stops on the first of: an
 * empty page, a page repeating the previous page's ids or the content of any
 * page fetched before in this walk (a server ignoring paging; by content, so
 * a page of only invalid runs, which has no ids, still counts), or
 * max_pages. data.total is never trusted alone (SPEC.md §2: it
 * may be missing or wrong): stopping at it could leave runs behind, so it is
 * only compared with what was collected and logged. The decision is a
 * pure function (vb__paging_next) so it can be tested without a server.
 * Runs are deduplicated by id across pages with a small hash set. Errors from
 * the platform carry "API returned", the status and a redacted excerpt of
 * the answer. Stateless; thread-safe as long as each thread passes its own
 * vb_http handle.
 */
#include "visionbatch/platform.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "excerpt.h"
#include "platform_internal.h"
#include "util.h"
#include "visionbatch/log.h"

#define DEFAULT_PAGE_SIZE 50
#define DEFAULT_MAX_PAGES 1000

/* ---- pure pieces ---- */

vb__paging_decision vb__paging_next(const vb__paging_state *st)
{
    long max_pages = st->max_pages > 0 ? st->max_pages : DEFAULT_MAX_PAGES;
    if (st->page_items == 0)
        return VB__PAGING_STOP_EMPTY;
    if (st->repeated)
        return VB__PAGING_STOP_REPEATED;
    if (st->page >= max_pages)
        return VB__PAGING_STOP_MAX_PAGES;
    return VB__PAGING_CONTINUE;
}

const char *vb__paging_reason(vb__paging_decision d)
{
    switch (d) {
    case VB__PAGING_CONTINUE: return "more pages";
    case VB__PAGING_STOP_EMPTY: return "empty page";
    case VB__PAGING_STOP_REPEATED: return "page repeated one already fetched";
    case VB__PAGING_STOP_TOTAL: return "reported total reached";
    case VB__PAGING_STOP_MAX_PAGES: return "max_pages reached";
    }
    return "?";
}

int vb__same_ids(const vb_run_list *a, const vb_run_list *b)
{
    if (!a || !b || a->n == 0 || a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++)
        if (!vb_id_equal(a->runs[i].id, b->runs[i].id))
            return 0;
    return 1;
}

vb_err vb__platform_list_url(const char *base, long page, long page_size, vb_buf *out)
{
    vb_buf_reset(out);
    if (!base || !*base)
        return VB_ERR_INVALID;
    size_t n = strcspn(base, "#");
    vb_err rc = vb_buf_append(out, base, n);
    if (rc != VB_OK)
        return rc;
    const char *sep = "?";
    if (memchr(base, '?', n))
        sep = (base[n - 1] == '?' || base[n - 1] == '&') ? "" : "&";
    return vb_buf_printf(out, "%sis_processed=false&page=%ld&page_size=%ld", sep, page,
                         page_size);
}

void vb__report_filename(const char *batch_id, char *out, size_t outlen)
{
    char safe[129];
    size_t n = 0;
    for (const char *p = batch_id ? batch_id : ""; *p && n < sizeof safe - 1; p++) {
        unsigned char c = (unsigned char)*p;
        safe[n++] = (isalnum(c) && c < 0x80) || c == '.' || c == '_' || c == '-' ? (char)c : '_';
    }
    safe[n] = '\0';
    if (n == 0)
        snprintf(out, outlen, "report.html");
    else
        snprintf(out, outlen, "report_%s.html", safe);
}

/* ---- a set of ids (case-insensitive), for deduplication ---- */

typedef struct idset {
    char **slots; /* lower-cased copies, NULL = free */
    size_t cap;   /* power of two */
    size_t n;
} idset;

static size_t id_hash(const char *s)
{
    uint64_t h = VB__FNV_START;
    for (; *s; s++)
        h = vb__fnv1a_step(h, (unsigned char)tolower((unsigned char)*s));
    return (size_t)h;
}

static void idset_free(idset *s)
{
    for (size_t i = 0; i < s->cap; i++)
        free(s->slots[i]);
    free(s->slots);
    memset(s, 0, sizeof *s);
}

static vb_err idset_grow(idset *s)
{
    size_t cap = s->cap ? s->cap * 2 : 64;
    char **slots = calloc(cap, sizeof *slots);
    if (!slots)
        return VB_ERR_NOMEM;
    for (size_t i = 0; i < s->cap; i++) {
        if (!s->slots[i])
            continue;
        size_t j = id_hash(s->slots[i]) & (cap - 1);
        while (slots[j])
            j = (j + 1) & (cap - 1);
        slots[j] = s->slots[i];
    }
    free(s->slots);
    s->slots = slots;
    s->cap = cap;
    return VB_OK;
}

/* Adds id; *added = 1 when it was new. */
static vb_err idset_add(idset *s, const char *id, int *added)
{
    *added = 0;
    if ((s->n + 1) * 2 > s->cap && idset_grow(s) != VB_OK)
        return VB_ERR_NOMEM;
    size_t j = id_hash(id) & (s->cap - 1);
    while (s->slots[j]) {
        if (vb_id_equal(s->slots[j], id))
            return VB_OK;
        j = (j + 1) & (s->cap - 1);
    }
    char *copy = strdup(id);
    if (!copy)
        return VB_ERR_NOMEM;
    for (char *p = copy; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    s->slots[j] = copy;
    s->n++;
    *added = 1;
    return VB_OK;
}

/* ---- HTTP ---- */

vb_http_policy vb_platform_policy(const vb_config *cfg, const atomic_int *cancel)
{
    vb_http_policy pol = {0};
    pol.connect_timeout_ms = cfg->connect_timeout_s > 0 ? cfg->connect_timeout_s * 1000 : 0;
    pol.timeout_ms = cfg->request_timeout_s > 0 ? cfg->request_timeout_s * 1000 : 0;
    pol.max_bytes = cfg->max_response_bytes > 0 ? cfg->max_response_bytes : 0;
    pol.retries = cfg->retries > 0 ? (int)cfg->retries : 0;
    pol.retry_base_ms = cfg->retry_base_ms > 0 ? cfg->retry_base_ms : 0;
    pol.retry_max_ms = cfg->retry_max_ms > 0 ? cfg->retry_max_ms : 0;
    pol.retry_on_5xx = 1;
    pol.cancel = cancel;
    return pol;
}

/* Turns a failed exchange into an "API returned" message with an excerpt. */
static vb_err api_failure(vb_err rc, const char *what, const vb_http_response *resp,
                          vb_error *err)
{
    char ex[256];
    if (rc == VB_ERR_HTTP)
        return vb_error_set(err, VB_ERR_HTTP, "%s: API returned %ld: %s", what, resp->status,
                            vb__excerpt(resp->body.data, resp->body.len, 200, ex, sizeof ex));
    return vb_error_set(err, rc, "%s failed", what);
}

/* 1 when `h` (a page's content hash, 0 = empty) is in hashes[0..*n), else
 * appends it and returns 0; -1 when out of memory. */
static int page_seen(uint64_t **hashes, size_t *n, uint64_t h)
{
    if (h == 0)
        return 0;
    for (size_t i = 0; i < *n; i++)
        if ((*hashes)[i] == h)
            return 1;
    uint64_t *grown = realloc(*hashes, (*n + 1) * sizeof *grown);
    if (!grown)
        return -1;
    grown[(*n)++] = h;
    *hashes = grown;
    return 0;
}

/* Called for every new (deduplicated) valid run: 0 = go on, 1 = stop paging,
 * VB_ERR_* (negated) = fail. */
typedef int (*run_visitor)(void *ctx, const vb_run *run);

static vb_err walk_pages(vb_http *h, const vb_config *cfg, const atomic_int *cancel,
                         run_visitor visit, void *ctx, vb_fetch_stats *stats, vb_error *err)
{
    vb_buf url = {0};
    vb_http_response resp = {0};
    vb_run_page cur = {0}, prev = {0};
    idset seen = {0};
    uint64_t *hashes = NULL; /* content of every page fetched */
    size_t nhashes = 0;
    vb_http_policy pol = vb_platform_policy(cfg, cancel);
    long page_size = cfg->page_size > 0 ? cfg->page_size : DEFAULT_PAGE_SIZE;
    vb__paging_state st = {.max_pages = cfg->max_pages, .total = -1, .first_total = -1};
    vb_err rc = VB_OK;
    char what[64];

    prev.total = cur.total = -1;
    stats->reported_total = -1;
    for (long page = 1;; page++) {
        if (cancel && *cancel) {
            rc = vb_error_set(err, VB_ERR_CANCELLED, "fetching runs cancelled");
            goto fail;
        }
        if ((rc = vb__platform_list_url(cfg->external_api_get_url, page, page_size, &url)) !=
            VB_OK) {
            rc = vb_error_set(err, rc, "cannot build the platform GET URL");
            goto fail;
        }
        vb_http_request req = {.method = "GET",
                               .url = url.data,
                               .bearer = cfg->external_api_key,
                               .content_type = "application/json"};
        snprintf(what, sizeof what, "GET runs page %ld", page);
        rc = vb_http_perform(h, &req, &pol, &resp, err);
        if (rc != VB_OK) {
            rc = api_failure(rc, what, &resp, err);
            goto fail;
        }
        rc = vb_run_page_parse(resp.body.data, resp.body.len, &cur, err);
        if (rc != VB_OK) {
            vb_error_set(err, rc, "%s", what);
            goto fail;
        }
        vb_http_response_free(&resp);
        stats->pages++;
        stats->invalid += cur.invalid;
        if (page == 1) {
            stats->reported_total = cur.total;
            st.first_total = cur.total;
        }

        int stop = 0;
        for (size_t i = 0; i < cur.list.n && !stop; i++) {
            int added;
            if (idset_add(&seen, cur.list.runs[i].id, &added) != VB_OK) {
                rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory deduplicating runs");
                goto fail;
            }
            if (!added)
                continue;
            stats->found++;
            int v = visit(ctx, &cur.list.runs[i]);
            if (v < 0) {
                rc = vb_error_set(err, (vb_err)-v, "collecting runs failed");
                goto fail;
            }
            stop = v > 0;
        }
        if (stop)
            break;

        st.page = page;
        st.page_items = cur.list.n + cur.invalid;
        st.total = cur.total;
        st.collected = seen.n + stats->invalid;
        int again = page_seen(&hashes, &nhashes, cur.content_hash);
        if (again < 0) {
            rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory comparing pages");
            goto fail;
        }
        st.repeated = again || vb__same_ids(&prev.list, &cur.list);
        vb__paging_decision d = vb__paging_next(&st);
        vb_run_page_free(&prev);
        prev = cur;
        memset(&cur, 0, sizeof cur);
        cur.total = -1;
        if (d != VB__PAGING_CONTINUE) {
            if (d == VB__PAGING_STOP_MAX_PAGES)
                VB_WARN("stopped fetching runs after %ld pages (max_pages); more may remain",
                        page);
            else
                VB_DEBUG("stopped fetching runs after %ld pages: %s", page,
                         vb__paging_reason(d));
            break;
        }
    }
    rc = VB_OK;
fail:
    vb_http_response_free(&resp);
    vb_run_page_free(&cur);
    vb_run_page_free(&prev);
    idset_free(&seen);
    free(hashes);
    vb_buf_free(&url);
    return rc;
}

typedef struct collect_ctx {
    const vb_config *cfg;
    vb_run_list *out;
    vb_fetch_stats *stats;
} collect_ctx;

static int collect_visit(void *p, const vb_run *run)
{
    collect_ctx *c = p;
    if (!vb_id_equal(run->organization_id, c->cfg->organization_id)) {
        c->stats->other_org++;
        return 0;
    }
    if (run->is_processed) {
        c->stats->already_processed++;
        return 0;
    }
    vb_err rc = vb_run_list_push(c->out, run);
    return rc == VB_OK ? 0 : -(int)rc;
}

vb_err vb_platform_fetch_unprocessed(vb_http *h, const vb_config *cfg,
                                     const atomic_int *cancel, vb_run_list *out,
                                     vb_fetch_stats *stats, vb_error *err)
{
    vb_fetch_stats local;
    if (!stats)
        stats = &local;
    memset(stats, 0, sizeof *stats);
    memset(out, 0, sizeof *out);
    if (!cfg->external_api_get_url || !cfg->organization_id)
        return vb_error_set(err, VB_ERR_CONFIG, "external_api_get_url and organization_id "
                                                "are required");
    collect_ctx c = {.cfg = cfg, .out = out, .stats = stats};
    vb_err rc = walk_pages(h, cfg, cancel, collect_visit, &c, stats, err);
    if (rc != VB_OK) {
        vb_run_list_free(out);
        return rc;
    }
    /* An empty queue is the common answer (every cron firing that finds
     * nothing): the caller's summary says so at its own level. */
    vb_log(stats->found ? VB_LOG_INFO : VB_LOG_DEBUG,
           "fetched %zu page(s): %zu run(s) found, %zu to process, %zu of other "
           "organizations, %zu already processed, %zu invalid (reported total %ld)",
           stats->pages, stats->found, out->n, stats->other_org, stats->already_processed,
           stats->invalid, stats->reported_total);
    return VB_OK;
}

typedef struct find_ctx {
    const vb_config *cfg;
    const char *id;
    int found;
} find_ctx;

static int find_visit(void *p, const vb_run *run)
{
    find_ctx *f = p;
    if (vb_id_equal(run->id, f->id) && !run->is_processed &&
        vb_id_equal(run->organization_id, f->cfg->organization_id)) {
        f->found = 1;
        return 1;
    }
    return 0;
}

/* Absence of a run from the unprocessed list is only believed after it held
 * for this many consecutive full scans: the platform pages by offset, so runs
 * that other workers finish while we page shift the later pages forward and
 * a single scan can step over a run that is still unprocessed. */
#define ABSENT_SCANS 3
#define ABSENT_RESCAN_MS 300

static int sleep_cancellable_ms(long ms, const atomic_int *cancel)
{
    for (; ms > 0; ms -= 50) {
        if (cancel && *cancel)
            return 1;
        struct timespec ts = {0, (ms < 50 ? ms : 50) * 1000000L};
        nanosleep(&ts, NULL);
    }
    return cancel && *cancel;
}

/* Walks the pages until `visit` reports the run (*found set by it) or the run
 * was absent from ABSENT_SCANS scans in a row. */
static vb_err scan_until_confirmed(vb_http *h, const vb_config *cfg,
                                   const atomic_int *cancel,
                                   int (*visit)(void *, const vb_run *), void *ctx,
                                   const int *found, vb_error *err)
{
    for (int scan = 1;; scan++) {
        vb_fetch_stats stats = {0};
        vb_err rc = walk_pages(h, cfg, cancel, visit, ctx, &stats, err);
        if (rc != VB_OK || *found || scan == ABSENT_SCANS)
            return rc;
        VB_DEBUG("run not in scan %d of the unprocessed list; scanning again", scan);
        if (sleep_cancellable_ms((long)ABSENT_RESCAN_MS * scan, cancel))
            return vb_error_set(err, VB_ERR_CANCELLED, "cancelled");
    }
}

vb_err vb_platform_run_is_unprocessed(vb_http *h, const vb_config *cfg, const char *run_id,
                                      const atomic_int *cancel, int *unprocessed,
                                      vb_error *err)
{
    *unprocessed = 0;
    if (!run_id || !cfg->external_api_get_url)
        return vb_error_set(err, VB_ERR_INVALID, "run id and external_api_get_url required");
    find_ctx f = {.cfg = cfg, .id = run_id};
    vb_err rc = scan_until_confirmed(h, cfg, cancel, find_visit, &f, &f.found, err);
    if (rc != VB_OK)
        return rc;
    *unprocessed = f.found;
    return VB_OK;
}

typedef struct copy_ctx {
    const vb_config *cfg;
    const char *id;
    vb_run *out;
    int found;
} copy_ctx;

static int copy_visit(void *p, const vb_run *run)
{
    copy_ctx *f = p;
    if (!vb_id_equal(run->id, f->id) || run->is_processed ||
        !vb_id_equal(run->organization_id, f->cfg->organization_id))
        return 0;
    vb_err rc = vb_run_copy(f->out, run);
    if (rc != VB_OK)
        return -(int)rc;
    f->found = 1;
    return 1;
}

vb_err vb_platform_find_run(vb_http *h, const vb_config *cfg, const char *run_id,
                            const atomic_int *cancel, vb_run *out, int *found,
                            vb_error *err)
{
    *found = 0;
    memset(out, 0, sizeof *out);
    if (!run_id || !cfg->external_api_get_url || !cfg->organization_id)
        return vb_error_set(err, VB_ERR_INVALID,
                            "run id, external_api_get_url and organization_id required");
    copy_ctx f = {.cfg = cfg, .id = run_id, .out = out};
    vb_err rc = scan_until_confirmed(h, cfg, cancel, copy_visit, &f, &f.found, err);
    if (rc != VB_OK) {
        vb_run_free(out);
        return rc;
    }
    *found = f.found;
    return VB_OK;
}

/* A 2xx answer whose JSON body nonetheless says it failed (status "error" /
 * "fail[ed]", or a numeric code >= 400). Anything else counts as success. */
static int body_says_failure(const vb_buf *body)
{
    if (!body->data || body->len == 0)
        return 0;
    cJSON *root = cJSON_ParseWithLengthOpts(body->data, body->len, NULL, 0);
    int bad = 0;
    if (cJSON_IsObject(root)) {
        const cJSON *status = cJSON_GetObjectItemCaseSensitive(root, "status");
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(root, "code");
        if (cJSON_IsString(status) &&
            (strcasecmp(status->valuestring, "error") == 0 ||
             strcasecmp(status->valuestring, "fail") == 0 ||
             strcasecmp(status->valuestring, "failed") == 0))
            bad = 1;
        if (cJSON_IsNumber(code) && code->valuedouble >= 400)
            bad = 1;
    }
    cJSON_Delete(root);
    return bad;
}

vb_err vb_platform_upload_report(vb_http *h, const vb_config *cfg, const vb_run *run,
                                 const char *batch_id, int html_fd,
                                 const atomic_int *cancel, vb_http_prereq_fn gate,
                                 void *gate_ctx, vb_error *err)
{
    char filename[160];
    char ex[256];
    vb_http_response resp = {0};
    struct stat st;
    if (!cfg->external_api_post_url || !run || !run->id || html_fd < 0)
        return vb_error_set(err, VB_ERR_INVALID, "report upload needs a URL, a run and a file");
    if (fstat(html_fd, &st) != 0 || !S_ISREG(st.st_mode))
        return vb_error_set(err, VB_ERR_IO, "report file is not readable");
    vb__report_filename(batch_id, filename, sizeof filename);

    vb_http_part parts[3] = {
        vb_http_part_fd("file", html_fd, filename, "text/html"),
        {.name = "organization_id",
         .value = run->organization_id ? run->organization_id : cfg->organization_id},
        {.name = "vision_analysis_id", .value = run->id},
    };
    vb_http_request req = {.method = "POST",
                           .url = cfg->external_api_post_url,
                           .bearer = cfg->external_api_key,
                           .parts = parts,
                           .nparts = 3,
                           .prereq = gate,
                           .prereq_ctx = gate_ctx};
    vb_http_policy pol = vb_platform_policy(cfg, cancel);
    if (cfg->upload_timeout_s > 0)
        pol.timeout_ms = cfg->upload_timeout_s * 1000;
    vb_err rc = vb_http_perform(h, &req, &pol, &resp, err);
    if (rc != VB_OK) {
        rc = api_failure(rc, "report upload", &resp, err);
        goto done;
    }
    if (body_says_failure(&resp.body)) {
        rc = vb_error_set(err, VB_ERR_API, "report upload: API returned %ld with a failure: %s",
                          resp.status,
                          vb__excerpt(resp.body.data, resp.body.len, 200, ex, sizeof ex));
        goto done;
    }
    VB_INFO("report %s uploaded for run %s (HTTP %ld)", filename, run->id, resp.status);
done:
    vb_http_response_free(&resp);
    return rc;
}
