/*
 * backend.c — client of the batch-analysis backend (backend.h, SPEC.md §3).
 *
 * Each call is one HTTP exchange through vb_http (retries and timeouts come
 * from the policy); answers are parsed with cJSON and every field used is
 * type- and size-checked. Ids that end up in URL paths (batch ids) must be
 * made of [A-Za-z0-9._-]. Files travel as open descriptors: images are
 * uploaded from one, and the report is streamed into one as it arrives
 * (vb_http_perform_to_fd, capped at max_report_bytes), so memory does not
 * grow with their size.
 * Stateless; thread-safe with one vb_http handle per thread.
 */
#include "visionbatch/backend.h"
#include "visionbatch/platform.h"
#include "visionbatch/documents.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "backend_poll.h"
#include "excerpt.h"
#include "util.h"
#include "visionbatch/buf.h"
#include "visionbatch/log.h"

#define DEFAULT_BACKEND "http://localhost:8000"
#define DEFAULT_CHAT_ID "cron_batch_job"

/* ---- helpers ---- */

vb_http_policy vb_backend_policy(const vb_config *cfg, const atomic_int *cancel)
{
    /* The backend is an API like the platform: same timeouts, caps, retries;
     * and its answers come from its own origin only (a report fetched from a
     * host it redirects to would be uploaded as the run's report). */
    vb_http_policy pol = vb_platform_policy(cfg, cancel);
    pol.same_origin = 1;
    return pol;
}

/* base (without trailing '/') + path + optional suffix, into out. */
static vb_err backend_url(const vb_config *cfg, const char *path, const char *id,
                          const char *suffix, vb_buf *out)
{
    const char *base = cfg->backend_api_url && *cfg->backend_api_url ? cfg->backend_api_url
                                                                     : DEFAULT_BACKEND;
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
        n--;
    vb_buf_reset(out);
    vb_err rc = vb_buf_append(out, base, n);
    if (rc == VB_OK)
        rc = vb_buf_append_str(out, path);
    if (rc == VB_OK && id)
        rc = vb_buf_append_str(out, id);
    if (rc == VB_OK && suffix)
        rc = vb_buf_append_str(out, suffix);
    return rc;
}

/* Builds an "API returned" message from a failed exchange, quoting the
 * backend's {"detail": …} when there is one. */
static vb_err backend_failure(vb_err rc, const char *what, const vb_http_response *resp,
                              vb_error *err)
{
    char ex[256];
    if (rc != VB_ERR_HTTP)
        return vb_error_set(err, rc, "backend %s failed", what);
    const char *text = resp->body.data;
    size_t len = resp->body.len;
    char *printed = NULL;
    cJSON *root = text ? cJSON_ParseWithLengthOpts(text, len, NULL, 0) : NULL;
    const cJSON *detail = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "detail")
                                               : NULL;
    if (cJSON_IsString(detail)) {
        text = detail->valuestring;
        len = strlen(text);
    } else if (detail && (printed = cJSON_PrintUnformatted(detail)) != NULL) {
        text = printed;
        len = strlen(printed);
    }
    vb__excerpt(text, len, 200, ex, sizeof ex);
    cJSON_Delete(root);
    free(printed);
    return vb_error_set(err, VB_ERR_HTTP, "backend %s: API returned %ld: %s", what,
                        resp->status, ex);
}

static int safe_id_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
}

int vb_backend_batch_id_valid(const char *id)
{
    if (!id || !*id)
        return 0;
    size_t n = 0;
    int only_dots = 1;
    for (const char *p = id; *p; p++) {
        if (++n > VB_BACKEND_MAX_ID || !safe_id_char(*p))
            return 0;
        if (*p != '.')
            only_dots = 0;
    }
    return !only_dots;
}

/* An image id goes into JSON only: printable, bounded. */
static int image_id_valid(const char *id)
{
    size_t n = 0;
    if (!id || !*id)
        return 0;
    for (const char *p = id; *p; p++)
        if (++n > VB_BACKEND_MAX_ID || (unsigned char)*p < 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

/* Reads a string id (or an integral number, as some backends send) from obj[key]. */
static char *json_id(const cJSON *obj, const char *key)
{
    const cJSON *it = cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
    if (cJSON_IsString(it) && it->valuestring)
        return strdup(it->valuestring);
    if (cJSON_IsNumber(it) && it->valuedouble >= 0 && it->valuedouble < 9e15 &&
        it->valuedouble == (double)(long long)it->valuedouble) {
        char num[32];
        snprintf(num, sizeof num, "%lld", (long long)it->valuedouble);
        return strdup(num);
    }
    return NULL;
}

/* ---- connectivity ---- */

vb_err vb_backend_check(vb_http *h, const vb_config *cfg, const atomic_int *cancel,
                        vb_error *err)
{
    vb_buf url = {0};
    vb_http_response resp = {0};
    vb_http_policy pol = vb_backend_policy(cfg, cancel);
    vb_err rc = backend_url(cfg, "/available_models", NULL, NULL, &url);
    if (rc != VB_OK) {
        rc = vb_error_set(err, rc, "cannot build the backend URL");
        goto done;
    }
    vb_http_request req = {.method = "GET", .url = url.data};
    rc = vb_http_perform(h, &req, &pol, &resp, err);
    if (rc != VB_OK) {
        rc = backend_failure(rc, "available_models", &resp, err);
        goto done;
    }
    cJSON *root = cJSON_ParseWithLengthOpts(resp.body.data, resp.body.len, NULL, 0);
    const cJSON *models = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "models")
                                               : NULL;
    if (!cJSON_IsArray(models))
        rc = vb_error_set(err, VB_ERR_PARSE, "backend available_models: no models array");
    else
        VB_DEBUG("backend reachable: %d model(s)", cJSON_GetArraySize(models));
    cJSON_Delete(root);
done:
    vb_http_response_free(&resp);
    vb_buf_free(&url);
    return rc;
}

/* ---- images ---- */

vb_err vb_backend_upload_image(vb_http *h, const vb_config *cfg, int fd, const char *filename,
                               const atomic_int *cancel, char **image_id,
                               vb_error *err)
{
    unsigned char head[16];
    char fname[256];
    vb_buf url = {0};
    vb_http_response resp = {0};
    cJSON *root = NULL;
    vb_err rc;

    *image_id = NULL;
    ssize_t got = fd >= 0 ? pread(fd, head, sizeof head, 0) : -1;
    if (got < 0)
        return vb_error_set(err, VB_ERR_IO, "cannot read image %s: %s",
                            filename ? filename : "", strerror(fd >= 0 ? errno : EBADF));
    const char *ctype = vb_image_sniff(head, (size_t)got);
    vb_name_sanitise(filename, fname, sizeof fname);
    if (!ctype)
        return vb_error_set(err, VB_ERR_CONTENT, "%s is not a supported image", fname);

    if ((rc = backend_url(cfg, "/upload-image", NULL, NULL, &url)) != VB_OK) {
        rc = vb_error_set(err, rc, "cannot build the backend URL");
        goto done;
    }
    vb_http_part parts[2] = {
        vb_http_part_fd("image", fd, fname, ctype),
        {.name = "chat_id", .value = cfg->chat_id && *cfg->chat_id ? cfg->chat_id
                                                                   : DEFAULT_CHAT_ID},
    };
    vb_http_request req = {.method = "POST", .url = url.data, .parts = parts, .nparts = 2};
    vb_http_policy pol = vb_backend_policy(cfg, cancel);
    if (cfg->upload_timeout_s > 0)
        pol.timeout_ms = cfg->upload_timeout_s * 1000;
    rc = vb_http_perform(h, &req, &pol, &resp, err);
    if (rc != VB_OK) {
        rc = backend_failure(rc, "upload-image", &resp, err);
        goto done;
    }
    root = cJSON_ParseWithLengthOpts(resp.body.data, resp.body.len, NULL, 0);
    char *id = json_id(root, "image_id");
    if (!image_id_valid(id)) {
        free(id);
        rc = vb_error_set(err, VB_ERR_PARSE, "backend upload-image: no valid image_id for %s",
                          fname);
        goto done;
    }
    *image_id = id;
done:
    cJSON_Delete(root);
    vb_http_response_free(&resp);
    vb_buf_free(&url);
    return rc;
}

/* ---- batch-analyze ---- */

vb_err vb_backend_analyze_body(const vb_backend_analyze *req, char **json, vb_error *err)
{
    *json = NULL;
    if (!req || req->nimages == 0 || !req->image_ids || !req->prompt)
        return vb_error_set(err, VB_ERR_INVALID, "batch-analyze needs images and a prompt");
    cJSON *root = cJSON_CreateObject();
    cJSON *ids = root ? cJSON_AddArrayToObject(root, "image_ids") : NULL;
    if (!ids)
        goto nomem;
    for (size_t i = 0; i < req->nimages; i++) {
        if (!req->image_ids[i]) {
            cJSON_Delete(root);
            return vb_error_set(err, VB_ERR_INVALID, "image id %zu is missing", i + 1);
        }
        cJSON *s = cJSON_CreateString(req->image_ids[i]);
        if (!s || !cJSON_AddItemToArray(ids, s)) {
            cJSON_Delete(s);
            goto nomem;
        }
    }
    if (!cJSON_AddStringToObject(root, "analysis_prompt", req->prompt) ||
        !cJSON_AddStringToObject(root, "report_format", "html") ||
        !cJSON_AddStringToObject(root, "organization",
                                 req->organization ? req->organization : ""))
        goto nomem;
    if (!req->descriptions) {
        if (!cJSON_AddNullToObject(root, "descriptions_map"))
            goto nomem;
    } else {
        cJSON *map = cJSON_AddObjectToObject(root, "descriptions_map");
        if (!map)
            goto nomem;
        for (size_t i = 0; i < req->ndescriptions; i++) {
            const vb_backend_description *d = &req->descriptions[i];
            if (!d->image_name || !d->text)
                continue;
            cJSON *s = cJSON_CreateString(d->text);
            if (!s)
                goto nomem;
            if (cJSON_GetObjectItemCaseSensitive(map, d->image_name))
                cJSON_ReplaceItemInObjectCaseSensitive(map, d->image_name, s);
            else if (!cJSON_AddItemToObject(map, d->image_name, s)) {
                cJSON_Delete(s);
                goto nomem;
            }
        }
    }
    *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!*json)
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory building batch-analyze body");
    return VB_OK;
nomem:
    cJSON_Delete(root);
    return vb_error_set(err, VB_ERR_NOMEM, "out of memory building batch-analyze body");
}

vb_err vb_backend_parse_batch_id(const char *json, size_t len, char **batch_id, vb_error *err)
{
    *batch_id = NULL;
    cJSON *root = json && len ? cJSON_ParseWithLengthOpts(json, len, NULL, 0) : NULL;
    char *id = json_id(root, "batch_id");
    cJSON_Delete(root);
    if (!vb_backend_batch_id_valid(id)) {
        free(id);
        char ex[128];
        return vb_error_set(err, VB_ERR_PARSE, "backend batch-analyze: no valid batch_id in %s",
                            vb__excerpt(json, json ? len : 0, 100, ex, sizeof ex));
    }
    *batch_id = id;
    return VB_OK;
}

vb_err vb_backend_start_batch(vb_http *h, const vb_config *cfg, const vb_backend_analyze *req,
                              const atomic_int *cancel, char **batch_id,
                              vb_error *err)
{
    char *body = NULL;
    vb_buf url = {0};
    vb_http_response resp = {0};
    *batch_id = NULL;
    vb_err rc = vb_backend_analyze_body(req, &body, err);
    if (rc != VB_OK)
        return rc;
    if ((rc = backend_url(cfg, "/batch-analyze", NULL, NULL, &url)) != VB_OK) {
        rc = vb_error_set(err, rc, "cannot build the backend URL");
        goto done;
    }
    vb_http_request hreq = {.method = "POST",
                            .url = url.data,
                            .content_type = "application/json",
                            .body = body,
                            .body_len = strlen(body)};
    vb_http_policy pol = vb_backend_policy(cfg, cancel);
    rc = vb_http_perform(h, &hreq, &pol, &resp, err);
    if (rc != VB_OK) {
        rc = backend_failure(rc, "batch-analyze", &resp, err);
        goto done;
    }
    rc = vb_backend_parse_batch_id(resp.body.data, resp.body.len, batch_id, err);
done:
    free(body);
    vb_http_response_free(&resp);
    vb_buf_free(&url);
    return rc;
}

/* ---- status ---- */

const char *vb_backend_state_name(vb_batch_state s)
{
    switch (s) {
    case VB_BATCH_QUEUED: return "queued";
    case VB_BATCH_PROCESSING: return "processing";
    case VB_BATCH_COMPLETED: return "completed";
    case VB_BATCH_FAILED: return "failed";
    default: return "unknown";
    }
}

static long json_count(const cJSON *obj, const char *key)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsNumber(it) && it->valuedouble >= 0 && it->valuedouble <= 1e9)
        return (long)it->valuedouble;
    return -1;
}

vb_err vb_backend_parse_status(const char *json, size_t len, vb_batch_status *st,
                               vb_error *err)
{
    static const char *const detail_keys[] = {"error", "error_message", "message", "detail"};
    memset(st, 0, sizeof *st);
    st->processed = st->total = -1;
    cJSON *root = json && len ? cJSON_ParseWithLengthOpts(json, len, NULL, 0) : NULL;
    const cJSON *status = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "status")
                                               : NULL;
    if (!cJSON_IsString(status) || !status->valuestring) {
        char ex[128];
        cJSON_Delete(root);
        return vb_error_set(err, VB_ERR_PARSE, "backend status answer without status: %s",
                            vb__excerpt(json, json ? len : 0, 100, ex, sizeof ex));
    }
    static const vb_batch_state states[] = {VB_BATCH_QUEUED, VB_BATCH_PROCESSING,
                                            VB_BATCH_COMPLETED, VB_BATCH_FAILED};
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
        if (strcasecmp(status->valuestring, vb_backend_state_name(states[i])) == 0)
            st->state = states[i];
    st->processed = json_count(root, "processed_count");
    st->total = json_count(root, "total_images");
    for (size_t i = 0; i < sizeof detail_keys / sizeof detail_keys[0]; i++) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, detail_keys[i]);
        if (cJSON_IsString(d) && d->valuestring && *d->valuestring) {
            vb__excerpt(d->valuestring, strlen(d->valuestring), 200, st->detail,
                        sizeof st->detail);
            break;
        }
    }
    cJSON_Delete(root);
    return VB_OK;
}

vb_err vb_backend_get_status(vb_http *h, const vb_config *cfg, const char *batch_id,
                             const atomic_int *cancel, vb_batch_status *st,
                             vb_error *err)
{
    vb_buf url = {0};
    vb_http_response resp = {0};
    vb_err rc;
    memset(st, 0, sizeof *st);
    if (!vb_backend_batch_id_valid(batch_id))
        return vb_error_set(err, VB_ERR_INVALID, "invalid batch id");
    if ((rc = backend_url(cfg, "/batch-analyze/", batch_id, "/status", &url)) != VB_OK) {
        rc = vb_error_set(err, rc, "cannot build the backend URL");
        goto done;
    }
    vb_http_request req = {.method = "GET", .url = url.data};
    vb_http_policy pol = vb_backend_policy(cfg, cancel);
    rc = vb_http_perform(h, &req, &pol, &resp, err);
    if (rc != VB_OK) {
        rc = backend_failure(rc, "status", &resp, err);
        goto done;
    }
    rc = vb_backend_parse_status(resp.body.data, resp.body.len, st, err);
done:
    vb_http_response_free(&resp);
    vb_buf_free(&url);
    return rc;
}

long vb_backend_next_poll_ms(long prev_ms, long min_ms, long max_ms)
{
    if (min_ms <= 0)
        min_ms = 1000;
    if (max_ms < min_ms)
        max_ms = min_ms;
    if (prev_ms <= 0)
        return min_ms;
    long next = prev_ms > max_ms / 2 ? max_ms : prev_ms * 2;
    return next < min_ms ? min_ms : next > max_ms ? max_ms : next;
}

vb_err vb_backend_wait(vb_http *h, const vb_config *cfg, const char *batch_id, size_t nimages,
                       const atomic_int *cancel,
                       vb_err (*heartbeat)(void *ctx, vb_error *err), void *hb_ctx,
                       vb_batch_status *last, vb_error *err)
{
    const vb__backend_hooks *hooks = vb__backend_hooks_get();
    vb_batch_status st_local, *st = last ? last : &st_local;
    long timeout_s = cfg->batch_timeout_s > 0 ? cfg->batch_timeout_s : 3600;
    long long start = vb__poll_now_ms();
    long long deadline = start + (long long)timeout_s * 1000;
    long long pending_at = 0; /* ms into the wait of the last poll that saw it unfinished */
    long interval = 0;
    long delay = vb__poll_first_ms(cfg->backend_api_url, nimages, cfg->status_poll_min_ms,
                                   cfg->status_poll_max_ms);
    /* After a first poll timed by a learned duration, the batch should end
     * within the next few short intervals: they stay at min (VB__POLL_NEAR
     * of them) instead of doubling right away. */
    int near = vb__poll_learned_ms(cfg->backend_api_url, nimages) > 0 ? VB__POLL_NEAR : 0;
    memset(st, 0, sizeof *st);
    for (;;) {
        long long left = deadline - vb__poll_now_ms();
        if (vb__poll_sleep_ms(delay < left ? delay : left > 0 ? left : 0, cancel))
            return vb_error_set(err, VB_ERR_CANCELLED, "waiting for batch %s cancelled",
                                batch_id);
        vb_error e;
        vb_error_clear(&e);
        if (heartbeat && heartbeat(hb_ctx, &e) != VB_OK) {
            if (err)
                vb_error_set(err, e.code, "waiting for batch %s stopped: %s", batch_id, e.msg);
            return e.code;
        }
        vb_batch_status now_st;
        vb_err rc = hooks && hooks->get_status
                        ? hooks->get_status(hooks->ctx, batch_id, &now_st, &e)
                        : vb_backend_get_status(h, cfg, batch_id, cancel, &now_st, &e);
        long long at = vb__poll_now_ms() - start;
        if (rc == VB_OK) {
            *st = now_st;
            if (st->state == VB_BATCH_COMPLETED) {
                vb__poll_learn(cfg->backend_api_url, nimages, pending_at, at);
                VB_INFO("batch %s completed (%ld/%ld images)", batch_id, st->processed,
                        st->total);
                return VB_OK;
            }
            if (st->state == VB_BATCH_FAILED)
                return vb_error_set(err, VB_ERR_BACKEND, "backend batch %s failed: %s",
                                    batch_id, st->detail[0] ? st->detail : "no detail given");
            pending_at = at;
            VB_DEBUG("batch %s %s (%ld/%ld)", batch_id, vb_backend_state_name(st->state),
                     st->processed, st->total);
        } else if (rc == VB_ERR_CANCELLED || !vb_error_is_transient(&e)) {
            if (err) {
                long status = e.http_status;
                vb_error_set(err, e.code, "%s", e.msg);
                err->http_status = status;
            }
            return rc;
        } else {
            VB_WARN("status of batch %s not available, will retry: %s", batch_id, e.msg);
        }
        if (deadline - vb__poll_now_ms() <= 0)
            return vb_error_set(err, VB_ERR_TIMEOUT,
                                "batch %s did not complete within %ld s (last status %s, "
                                "%ld/%ld)",
                                batch_id, timeout_s, vb_backend_state_name(st->state),
                                st->processed, st->total);
        if (near > 0) {
            near--;
            interval = vb_backend_next_poll_ms(0, cfg->status_poll_min_ms,
                                               cfg->status_poll_max_ms);
        } else {
            interval = vb_backend_next_poll_ms(interval, cfg->status_poll_min_ms,
                                               cfg->status_poll_max_ms);
        }
        delay = interval;
    }
}

/* ---- report ---- */

vb_err vb_backend_fetch_report(vb_http *h, const vb_config *cfg, const char *batch_id, int fd,
                               const atomic_int *cancel, vb_error *err)
{
    vb_buf url = {0};
    vb_http_response resp = {0};
    vb_err rc;
    if (!vb_backend_batch_id_valid(batch_id) || fd < 0)
        return vb_error_set(err, VB_ERR_INVALID, "invalid batch id or report file");
    if ((rc = backend_url(cfg, "/batch-analyze/", batch_id,
                          "/report?format=html&include_images=true", &url)) != VB_OK) {
        rc = vb_error_set(err, rc, "cannot build the backend URL");
        goto done;
    }
    vb_http_request req = {.method = "GET", .url = url.data};
    vb_http_policy pol = vb_backend_policy(cfg, cancel);
    pol.max_bytes = cfg->max_report_bytes > 0 ? cfg->max_report_bytes : 256LL * 1024 * 1024;
    if (cfg->download_timeout_s > 0)
        pol.timeout_ms = cfg->download_timeout_s * 1000;
    rc = vb_http_perform_to_fd(h, &req, &pol, fd, &resp, err);
    if (rc != VB_OK) {
        rc = backend_failure(rc, "report", &resp, err);
        goto done;
    }
    if (resp.streamed == 0) {
        rc = vb_error_set(err, VB_ERR_CONTENT, "backend report for batch %s is empty",
                          batch_id);
        goto done;
    }
    if (resp.content_type[0] && !strcasestr(resp.content_type, "html"))
        VB_WARN("backend report for batch %s has content type %.60s, expected text/html",
                batch_id, resp.content_type);
    VB_DEBUG("report of batch %s saved (%lld bytes)", batch_id, resp.streamed);
done:
    if (rc != VB_OK && ftruncate(fd, 0) != 0)
        VB_WARN("cannot empty the report file of batch %s: %s", batch_id, strerror(errno));
    vb_http_response_free(&resp);
    vb_buf_free(&url);
    return rc;
}
