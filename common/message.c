/*
 * message.c — encoding and decoding of the run message (see message.h).
 * cJSON does the JSON; this file decides what goes in and what is accepted.
 */
#include "visionbatch/message.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "visionbatch/cron.h"

void vb_url_strip_query(const char *url, char *out, size_t outlen)
{
    if (!outlen)
        return;
    size_t n = strcspn(url ? url : "", "?#");
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, url ? url : "", n);
    out[n] = '\0';
}

vb_err vb_run_msg_encode(const vb_run *run, const char *job_id, const char *execution_id,
                         const char *trace_id, int attempt, char **json, vb_error *err)
{
    return vb_run_msg_encode_ex(run, job_id, execution_id, trace_id, attempt, NULL, json, err);
}

vb_err vb_run_msg_encode_ex(const vb_run *run, const char *job_id, const char *execution_id,
                            const char *trace_id, int attempt, const char *sealed, char **json,
                            vb_error *err)
{
    *json = NULL;
    vb_run safe;
    memset(&safe, 0, sizeof safe);
    cJSON *root = NULL, *run_obj = NULL;
    char *run_json = NULL;
    vb_err rc = VB_ERR_NOMEM;

    if (!run || !run->id || !vb_run_id_valid(run->id))
        return vb_error_set(err, VB_ERR_INVALID, "run has no valid id");
    if (vb_run_copy(&safe, run) != VB_OK)
        goto fail;
    for (size_t i = 0; i < safe.ndocs; i++) {
        if (safe.docs[i].path)
            safe.docs[i].path[strcspn(safe.docs[i].path, "?#")] = '\0';
    }
    if (!(run_json = vb_run_to_json(&safe)) || !(run_obj = cJSON_Parse(run_json)))
        goto fail;

    char published[VB_TIME_STR_MAX];
    vb_time_format_rfc3339_utc(time(NULL), published, sizeof published);
    root = cJSON_CreateObject();
    cJSON *cred = root ? cJSON_AddObjectToObject(root, "credentials") : NULL;
    if (!cred || !cJSON_AddNumberToObject(root, "schema", VB_MSG_SCHEMA) ||
        !cJSON_AddStringToObject(root, "run_id", run->id) ||
        !cJSON_AddStringToObject(cred, "source", job_id ? "job" : "config") ||
        (job_id && !cJSON_AddStringToObject(cred, "job_id", job_id)) ||
        !(execution_id ? cJSON_AddStringToObject(root, "execution_id", execution_id)
                       : cJSON_AddNullToObject(root, "execution_id")) ||
        !cJSON_AddStringToObject(root, "trace_id", trace_id ? trace_id : "") ||
        !cJSON_AddNumberToObject(root, "attempt", attempt > 0 ? attempt : 1) ||
        !cJSON_AddStringToObject(root, "published_at", published))
        goto fail;
    if (run->organization_id && !cJSON_AddStringToObject(root, "organization_id",
                                                         run->organization_id))
        goto fail;
    if (run->run_code && !cJSON_AddStringToObject(root, "run_code", run->run_code))
        goto fail;
    if (sealed && !cJSON_AddStringToObject(root, "sealed", sealed))
        goto fail;
    cJSON_AddItemToObject(root, "run", run_obj);
    run_obj = NULL;
    if (!(*json = cJSON_PrintUnformatted(root)))
        goto fail;
    rc = VB_OK;
fail:
    if (rc != VB_OK)
        vb_error_set(err, rc, "cannot encode run message");
    cJSON_Delete(run_obj);
    cJSON_Delete(root);
    free(run_json);
    vb_run_free(&safe);
    return rc;
}

static char *dup_string(const cJSON *obj, const char *key, int *bad)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it || cJSON_IsNull(it))
        return NULL;
    if (!cJSON_IsString(it) || strlen(it->valuestring) > 4096) {
        *bad = 1;
        return NULL;
    }
    char *s = strdup(it->valuestring);
    if (!s)
        *bad = 1;
    return s;
}

vb_err vb_run_msg_decode(const char *json, size_t len, vb_run_msg *msg, vb_error *err)
{
    memset(msg, 0, sizeof *msg);
    if (!json || len == 0)
        return vb_error_set(err, VB_ERR_PARSE, "empty message");
    if (len > VB_MSG_MAX_BYTES)
        return vb_error_set(err, VB_ERR_PARSE, "message of %zu bytes exceeds %d", len,
                            VB_MSG_MAX_BYTES);
    cJSON *root = cJSON_ParseWithLength(json, len);
    vb_err rc = VB_ERR_PARSE;
    int bad = 0;
    if (!cJSON_IsObject(root)) {
        vb_error_set(err, rc, "message is not a JSON object");
        goto fail;
    }
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(root, "schema");
    if (!cJSON_IsNumber(schema) || schema->valuedouble != VB_MSG_SCHEMA) {
        vb_error_set(err, rc, "unknown message schema (expected %d)", VB_MSG_SCHEMA);
        goto fail;
    }
    msg->schema = VB_MSG_SCHEMA;
    msg->run_id = dup_string(root, "run_id", &bad);
    if (bad || !msg->run_id || !vb_run_id_valid(msg->run_id)) {
        vb_error_set(err, rc, "message has no valid run_id");
        goto fail;
    }
    msg->organization_id = dup_string(root, "organization_id", &bad);
    msg->execution_id = dup_string(root, "execution_id", &bad);
    msg->trace_id = dup_string(root, "trace_id", &bad);
    const cJSON *cred = cJSON_GetObjectItemCaseSensitive(root, "credentials");
    if (!cJSON_IsObject(cred)) {
        vb_error_set(err, rc, "message has no credentials reference");
        goto fail;
    }
    msg->cred_source = dup_string(cred, "source", &bad);
    msg->job_id = dup_string(cred, "job_id", &bad);
    if (bad || !msg->cred_source ||
        !(strcmp(msg->cred_source, "config") == 0 ||
          (strcmp(msg->cred_source, "job") == 0 && msg->job_id && *msg->job_id))) {
        vb_error_set(err, rc, "credentials must be {\"source\":\"config\"} or "
                              "{\"source\":\"job\",\"job_id\":…}");
        goto fail;
    }
    /* A sealed value that cannot be one is ignored: the worker then asks
     * the platform, as for a message without it. */
    const cJSON *sealed = cJSON_GetObjectItemCaseSensitive(root, "sealed");
    if (sealed && !cJSON_IsNull(sealed)) {
        if (cJSON_IsString(sealed) && strlen(sealed->valuestring) <= VB_MSG_SEALED_MAX) {
            if (!(msg->sealed = strdup(sealed->valuestring))) {
                rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory decoding a message");
                goto fail;
            }
        } else {
            msg->sealed_invalid = 1;
        }
    }
    const cJSON *attempt = cJSON_GetObjectItemCaseSensitive(root, "attempt");
    msg->attempt = cJSON_IsNumber(attempt) && attempt->valuedouble >= 1 &&
                           attempt->valuedouble < 1e6
                       ? (int)attempt->valuedouble
                       : 1;
    const cJSON *run = cJSON_GetObjectItemCaseSensitive(root, "run");
    if (run && !cJSON_IsNull(run)) {
        char *text = cJSON_PrintUnformatted(run);
        vb_error e;
        vb_error_clear(&e);
        vb_err prc = text ? vb_run_parse_json(text, strlen(text), &msg->run, &e) : VB_ERR_NOMEM;
        free(text);
        if (prc != VB_OK) {
            vb_error_set(err, rc, "message run is invalid: %s", e.msg);
            goto fail;
        }
        msg->has_run = 1; /* owned from here on, freed on every path */
        if (!vb_id_equal(msg->run.id, msg->run_id)) {
            vb_error_set(err, rc, "message run_id and run.vision_analysis_id differ");
            goto fail;
        }
    }
    if (bad) {
        vb_error_set(err, rc, "message has a field of the wrong type");
        goto fail;
    }
    cJSON_Delete(root);
    return VB_OK;
fail:
    cJSON_Delete(root);
    vb_run_msg_free(msg);
    return rc;
}

void vb_run_msg_free(vb_run_msg *msg)
{
    if (!msg)
        return;
    free(msg->run_id);
    free(msg->organization_id);
    free(msg->cred_source);
    free(msg->job_id);
    free(msg->execution_id);
    free(msg->trace_id);
    free(msg->sealed);
    if (msg->has_run)
        vb_run_free(&msg->run);
    memset(msg, 0, sizeof *msg);
}
