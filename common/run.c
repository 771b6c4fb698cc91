/*
 * run.c — parsing, validation and serialisation of vision analysis runs
 * (run.h, SPEC.md §2).
 *
 * Input is hostile: every field is type-checked, strings and arrays are
 * bounded (VB_RUN_MAX_* in run.h), bytes that are not valid UTF-8 become
 * U+FFFD (a WARN line says so) so every string is fit for JSON, and a run that fails validation is
 * dropped from its page with a WARN line naming the field, instead of failing
 * the whole page. cJSON does the parsing; its nesting limit (1000) bounds the
 * recursion depth, and cJSON types never leave this file. Stateless and
 * thread-safe; every vb_run owns its strings.
 */
#include "visionbatch/run.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "excerpt.h"
#include "utf8.h"
#include "visionbatch/log.h"

/* ---- small helpers ---- */

/* True when s is a usable run id: 1..VB_RUN_MAX_ID chars of [A-Za-z0-9._:-],
 * not made of dots only. Ids end up in Redis keys, Kafka keys, file names and
 * log lines, so anything else is refused at the door. */
int vb_run_id_valid(const char *s)
{
    if (!s || !*s)
        return 0;
    size_t n = 0;
    int only_dots = 1;
    for (const char *p = s; *p; p++, n++) {
        char c = *p;
        if (n >= VB_RUN_MAX_ID)
            return 0;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-'))
            return 0;
        if (c != '.')
            only_dots = 0;
    }
    return !only_dots;
}

int vb_id_equal(const char *a, const char *b)
{
    if (!a || !b)
        return 0;
    return strcasecmp(a, b) == 0;
}

vb_doc_type vb_doc_type_parse(const char *s)
{
    if (!s)
        return VB_DOC_OTHER;
    if (strcasecmp(s, "image") == 0)
        return VB_DOC_IMAGE;
    if (strcasecmp(s, "json") == 0)
        return VB_DOC_JSON;
    return VB_DOC_OTHER;
}

const char *vb_doc_type_name(vb_doc_type t)
{
    switch (t) {
    case VB_DOC_IMAGE: return "image";
    case VB_DOC_JSON: return "json";
    default: return "other";
    }
}

/* ---- freeing and copying ---- */

static void doc_free(vb_document *d)
{
    free(d->documents_id);
    free(d->document_id);
    free(d->path);
    free(d->name);
    memset(d, 0, sizeof *d);
}

void vb_run_free(vb_run *run)
{
    if (!run)
        return;
    free(run->id);
    free(run->run_code);
    free(run->organization_id);
    free(run->organization_name);
    free(run->user_query);
    free(run->created_date);
    for (size_t i = 0; i < run->ndocs; i++)
        doc_free(&run->docs[i]);
    free(run->docs);
    memset(run, 0, sizeof *run);
}

void vb_run_list_free(vb_run_list *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->n; i++)
        vb_run_free(&list->runs[i]);
    free(list->runs);
    list->runs = NULL;
    list->n = 0;
}

void vb_run_page_free(vb_run_page *page)
{
    if (!page)
        return;
    vb_run_list_free(&page->list);
    page->total = -1;
    page->invalid = 0;
}

/* Copies an optional string: NULL stays NULL. Returns 0 on allocation failure. */
static int copy_opt(char **dst, const char *src)
{
    *dst = NULL;
    if (!src)
        return 1;
    *dst = strdup(src);
    return *dst != NULL;
}

vb_err vb_run_copy(vb_run *dst, const vb_run *src)
{
    memset(dst, 0, sizeof *dst);
    dst->is_processed = src->is_processed;
    if (!copy_opt(&dst->id, src->id) || !copy_opt(&dst->run_code, src->run_code) ||
        !copy_opt(&dst->organization_id, src->organization_id) ||
        !copy_opt(&dst->organization_name, src->organization_name) ||
        !copy_opt(&dst->user_query, src->user_query) ||
        !copy_opt(&dst->created_date, src->created_date))
        goto fail;
    if (src->ndocs) {
        dst->docs = calloc(src->ndocs, sizeof *dst->docs);
        if (!dst->docs)
            goto fail;
        for (size_t i = 0; i < src->ndocs; i++) {
            const vb_document *s = &src->docs[i];
            vb_document *d = &dst->docs[i];
            dst->ndocs = i + 1; /* so vb_run_free sees what is already copied */
            d->is_input = s->is_input;
            d->type = s->type;
            if (!copy_opt(&d->documents_id, s->documents_id) ||
                !copy_opt(&d->document_id, s->document_id) || !copy_opt(&d->path, s->path) ||
                !copy_opt(&d->name, s->name))
                goto fail;
        }
    }
    return VB_OK;
fail:
    vb_run_free(dst);
    return VB_ERR_NOMEM;
}

vb_err vb_run_list_push(vb_run_list *list, const vb_run *run)
{
    vb_run *grown = realloc(list->runs, (list->n + 1) * sizeof *grown);
    if (!grown)
        return VB_ERR_NOMEM;
    list->runs = grown;
    vb_err rc = vb_run_copy(&list->runs[list->n], run);
    if (rc != VB_OK)
        return rc;
    list->n++;
    return VB_OK;
}

/* page->content_hash: FNV-1a 64 over the array as cJSON prints it. */
static vb_err hash_entries(const cJSON *runs, uint64_t *out, vb_error *err)
{
    char *text = cJSON_PrintUnformatted(runs);
    if (!text)
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory hashing a page");
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        h = (h ^ *p) * 0x100000001b3ULL;
    free(text);
    *out = h ? h : 1; /* 0 is kept for the empty page */
    return VB_OK;
}

/* ---- validation of one run object ---- */

/* Field extraction results: 0 ok, -1 invalid (why filled), -2 out of memory. */
enum { F_OK = 0, F_BAD = -1, F_NOMEM = -2 };

/* Reads obj[key] as a string into *out (malloc'd), invalid UTF-8 repaired.
 * Missing or null is allowed when !required (then *out = NULL). */
static int get_str(const cJSON *obj, const char *key, int required, size_t max, char **out,
                   char *why, size_t whylen)
{
    *out = NULL;
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it || cJSON_IsNull(it)) {
        if (!required)
            return F_OK;
        snprintf(why, whylen, "missing %s", key);
        return F_BAD;
    }
    if (!cJSON_IsString(it) || !it->valuestring) {
        snprintf(why, whylen, "%s is not a string", key);
        return F_BAD;
    }
    /* Text goes on as JSON (backend, Kafka): invalid UTF-8 becomes U+FFFD. */
    size_t bad = 0;
    *out = vb__utf8_repair(it->valuestring, strlen(it->valuestring), &bad);
    if (!*out)
        return F_NOMEM;
    if (strlen(*out) > max) {
        free(*out);
        *out = NULL;
        snprintf(why, whylen, "%s longer than %zu bytes", key, max);
        return F_BAD;
    }
    if (bad)
        VB_WARN("%s is not valid UTF-8: %zu byte(s) replaced by U+FFFD", key, bad);
    return F_OK;
}

/* Reads a boolean that may also be sent as 0/1. Missing → dflt when !required. */
static int get_bool(const cJSON *obj, const char *key, int required, int dflt, int *out,
                    char *why, size_t whylen)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it || cJSON_IsNull(it)) {
        *out = dflt;
        if (!required)
            return F_OK;
        snprintf(why, whylen, "missing %s", key);
        return F_BAD;
    }
    if (cJSON_IsBool(it)) {
        *out = cJSON_IsTrue(it) ? 1 : 0;
        return F_OK;
    }
    if (cJSON_IsNumber(it) && (it->valuedouble == 0.0 || it->valuedouble == 1.0)) {
        *out = it->valuedouble == 1.0;
        return F_OK;
    }
    snprintf(why, whylen, "%s is not a boolean", key);
    return F_BAD;
}

static int doc_from_json(const cJSON *obj, vb_document *d, char *why, size_t whylen)
{
    char *type = NULL;
    int rc;
    if (!cJSON_IsObject(obj)) {
        snprintf(why, whylen, "document is not an object");
        return F_BAD;
    }
    if ((rc = get_str(obj, "document_path", 1, VB_RUN_MAX_STRING, &d->path, why, whylen)) ||
        (rc = get_str(obj, "document_name", 1, VB_RUN_MAX_STRING, &d->name, why, whylen)) ||
        (rc = get_bool(obj, "is_input", 1, 0, &d->is_input, why, whylen)) ||
        (rc = get_str(obj, "document_type", 1, VB_RUN_MAX_STRING, &type, why, whylen)) ||
        (rc = get_str(obj, "vision_analysis_documents_id", 0, VB_RUN_MAX_STRING,
                      &d->documents_id, why, whylen)) ||
        (rc = get_str(obj, "document_id", 0, VB_RUN_MAX_STRING, &d->document_id, why, whylen)))
        goto fail;
    if (d->path[0] == '\0') {
        snprintf(why, whylen, "document_path is empty");
        rc = F_BAD;
        goto fail;
    }
    d->type = vb_doc_type_parse(type);
    free(type);
    return F_OK;
fail:
    free(type);
    doc_free(d);
    return rc;
}

/* Fills *run from a run object; on failure *run is freed and `why` names the
 * offending field. */
static int run_from_json(const cJSON *obj, vb_run *run, char *why, size_t whylen)
{
    int rc;
    memset(run, 0, sizeof *run);
    if (!cJSON_IsObject(obj)) {
        snprintf(why, whylen, "run is not an object");
        return F_BAD;
    }
    if ((rc = get_str(obj, "vision_analysis_id", 1, VB_RUN_MAX_ID, &run->id, why, whylen)))
        goto fail;
    if (!vb_run_id_valid(run->id)) {
        snprintf(why, whylen, "vision_analysis_id is empty or has unsupported characters");
        rc = F_BAD;
        goto fail;
    }
    if ((rc = get_str(obj, "organization_id", 1, VB_RUN_MAX_STRING, &run->organization_id, why,
                      whylen)) ||
        (rc = get_str(obj, "user_query", 1, VB_RUN_MAX_QUERY, &run->user_query, why, whylen)) ||
        (rc = get_str(obj, "vision_analysis_run_code", 0, VB_RUN_MAX_STRING, &run->run_code, why,
                      whylen)) ||
        (rc = get_str(obj, "organization_name", 0, VB_RUN_MAX_STRING, &run->organization_name,
                      why, whylen)) ||
        (rc = get_str(obj, "created_date", 0, VB_RUN_MAX_STRING, &run->created_date, why,
                      whylen)) ||
        (rc = get_bool(obj, "is_processed", 0, 0, &run->is_processed, why, whylen)))
        goto fail;

    const cJSON *docs = cJSON_GetObjectItemCaseSensitive(obj, "documents");
    if (docs && !cJSON_IsNull(docs)) {
        if (!cJSON_IsArray(docs)) {
            snprintf(why, whylen, "documents is not an array");
            rc = F_BAD;
            goto fail;
        }
        int n = cJSON_GetArraySize(docs);
        if (n > VB_RUN_MAX_DOCS) {
            snprintf(why, whylen, "more than %d documents", VB_RUN_MAX_DOCS);
            rc = F_BAD;
            goto fail;
        }
        if (n > 0) {
            run->docs = calloc((size_t)n, sizeof *run->docs);
            if (!run->docs) {
                rc = F_NOMEM;
                goto fail;
            }
        }
        const cJSON *d;
        size_t i = 0;
        cJSON_ArrayForEach(d, docs)
        {
            char sub[160];
            rc = doc_from_json(d, &run->docs[i], sub, sizeof sub);
            if (rc) {
                if (rc == F_BAD)
                    snprintf(why, whylen, "document %zu: %s", i + 1, sub);
                goto fail;
            }
            run->ndocs = ++i;
        }
    }
    return F_OK;
fail:
    vb_run_free(run);
    return rc;
}

/* The id of a run object if it is readable and safe to print, else NULL. */
static const char *readable_id(const cJSON *obj)
{
    const cJSON *id = cJSON_IsObject(obj)
                          ? cJSON_GetObjectItemCaseSensitive(obj, "vision_analysis_id")
                          : NULL;
    if (cJSON_IsString(id) && vb_run_id_valid(id->valuestring))
        return id->valuestring;
    return NULL;
}

/* ---- pages ---- */

vb_err vb_run_page_parse(const char *json, size_t len, vb_run_page *page, vb_error *err)
{
    memset(page, 0, sizeof *page);
    page->total = -1;
    cJSON *root = NULL;
    char excerpt[128];
    vb_err rc = VB_OK;

    if (!json || len == 0)
        return vb_error_set(err, VB_ERR_PARSE, "empty answer from the platform");
    root = cJSON_ParseWithLengthOpts(json, len, NULL, 0);
    if (!root) {
        rc = vb_error_set(err, VB_ERR_PARSE, "malformed JSON from the platform: %s",
                          vb__excerpt(json, len, 80, excerpt, sizeof excerpt));
        goto fail;
    }
    if (!cJSON_IsObject(root)) {
        rc = vb_error_set(err, VB_ERR_PARSE, "platform answer is not a JSON object");
        goto fail;
    }
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(root, "code");
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(root, "status");
    int code_ok = cJSON_IsNumber(code) && code->valuedouble == 200.0;
    int status_ok = cJSON_IsString(status) && strcmp(status->valuestring, "success") == 0;
    if (!code_ok || !status_ok) {
        char codetxt[32] = "missing", stattxt[48] = "missing";
        if (cJSON_IsNumber(code))
            snprintf(codetxt, sizeof codetxt, "%.0f", code->valuedouble);
        else if (code)
            snprintf(codetxt, sizeof codetxt, "invalid");
        if (cJSON_IsString(status))
            vb__excerpt(status->valuestring, strlen(status->valuestring), 40, stattxt,
                        sizeof stattxt);
        else if (status)
            snprintf(stattxt, sizeof stattxt, "invalid");
        rc = vb_error_set(err, VB_ERR_API, "API returned code=%s status=%s: %s", codetxt,
                          stattxt, vb__excerpt(json, len, 100, excerpt, sizeof excerpt));
        goto fail;
    }
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    if (!cJSON_IsObject(data)) {
        rc = vb_error_set(err, VB_ERR_PARSE, "platform answer has no data object");
        goto fail;
    }
    const cJSON *total = cJSON_GetObjectItemCaseSensitive(data, "total");
    if (cJSON_IsNumber(total) && total->valuedouble >= 0 && total->valuedouble <= 1e15)
        page->total = (long)total->valuedouble;
    const cJSON *runs = cJSON_GetObjectItemCaseSensitive(data, "vision_analysis");
    if (runs == NULL || cJSON_IsNull(runs)) {
        /* Some servers drop the array when nothing is left: an empty page. */
        if (runs == NULL && page->total != 0) {
            rc = vb_error_set(err, VB_ERR_PARSE, "platform answer has no data.vision_analysis");
            goto fail;
        }
        cJSON_Delete(root);
        return VB_OK;
    }
    if (!cJSON_IsArray(runs)) {
        rc = vb_error_set(err, VB_ERR_PARSE, "data.vision_analysis is not an array");
        goto fail;
    }
    int n = cJSON_GetArraySize(runs);
    if (n > VB_RUN_MAX_PER_PAGE) {
        rc = vb_error_set(err, VB_ERR_TOO_LARGE, "platform page has %d runs (limit %d)", n,
                          VB_RUN_MAX_PER_PAGE);
        goto fail;
    }
    if (n > 0 && (rc = hash_entries(runs, &page->content_hash, err)) != VB_OK)
        goto fail;
    if (n > 0) {
        page->list.runs = calloc((size_t)n, sizeof *page->list.runs);
        if (!page->list.runs) {
            rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory parsing a page of %d runs", n);
            goto fail;
        }
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, runs)
    {
        char why[200] = "";
        int f = run_from_json(it, &page->list.runs[page->list.n], why, sizeof why);
        if (f == F_NOMEM) {
            rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory parsing runs");
            goto fail;
        }
        if (f == F_BAD) {
            const char *id = readable_id(it);
            page->invalid++;
            VB_WARN("invalid run %s skipped: %s", id ? id : "(id unreadable)", why);
            continue;
        }
        page->list.n++;
    }
    cJSON_Delete(root);
    return VB_OK;
fail:
    cJSON_Delete(root);
    vb_run_page_free(page);
    return rc;
}

/* ---- one run as JSON ---- */

vb_err vb_run_parse_json(const char *json, size_t len, vb_run *run, vb_error *err)
{
    memset(run, 0, sizeof *run);
    if (!json || len == 0)
        return vb_error_set(err, VB_ERR_PARSE, "empty run JSON");
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, NULL, 0);
    if (!root)
        return vb_error_set(err, VB_ERR_PARSE, "malformed run JSON");
    char why[200] = "";
    int f = run_from_json(root, run, why, sizeof why);
    cJSON_Delete(root);
    if (f == F_NOMEM)
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory parsing a run");
    if (f == F_BAD)
        return vb_error_set(err, VB_ERR_PARSE, "invalid run: %s", why);
    return VB_OK;
}

/* Adds key: s, or key: null when s is NULL. Returns 0 on allocation failure. */
static int add_str(cJSON *obj, const char *key, const char *s)
{
    return (s ? cJSON_AddStringToObject(obj, key, s) : cJSON_AddNullToObject(obj, key)) != NULL;
}

char *vb_run_to_json(const vb_run *run)
{
    char *out = NULL;
    cJSON *root = cJSON_CreateObject();
    cJSON *docs = NULL;
    if (!root)
        return NULL;
    if (!add_str(root, "vision_analysis_id", run->id) ||
        !add_str(root, "vision_analysis_run_code", run->run_code) ||
        !cJSON_AddBoolToObject(root, "is_processed", run->is_processed != 0) ||
        !add_str(root, "organization_id", run->organization_id) ||
        !add_str(root, "organization_name", run->organization_name) ||
        !add_str(root, "user_query", run->user_query) ||
        !add_str(root, "created_date", run->created_date))
        goto done;
    docs = cJSON_AddArrayToObject(root, "documents");
    if (!docs)
        goto done;
    for (size_t i = 0; i < run->ndocs; i++) {
        const vb_document *d = &run->docs[i];
        cJSON *o = cJSON_CreateObject();
        if (!o)
            goto done;
        cJSON_AddItemToArray(docs, o);
        if (!add_str(o, "vision_analysis_documents_id", d->documents_id) ||
            !add_str(o, "vision_analysis_id", run->id) ||
            !add_str(o, "document_id", d->document_id) ||
            !add_str(o, "document_path", d->path) || !add_str(o, "document_name", d->name) ||
            !cJSON_AddBoolToObject(o, "is_input", d->is_input != 0) ||
            !add_str(o, "document_type", vb_doc_type_name(d->type)))
            goto done;
    }
    out = cJSON_PrintUnformatted(root);
done:
    cJSON_Delete(root);
    return out;
}
