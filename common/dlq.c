/*
 * dlq.c — reading and replaying the dead-letter topic (see dlq.h), shared
 * by `visionbatch dlq` (cli/dlq_cmd.c) and the producer's web console.
 */
#include "visionbatch/dlq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"
#include "visionbatch/message.h"
#include "visionbatch/run.h"

#define PRODUCE_TIMEOUT_MS 15000
#define MIN_QUEUE_LEASE_MS 60000LL

static void upcase(char *s)
{
    for (; *s; s++)
        if (*s >= 'a' && *s <= 'z')
            *s = (char)(*s - 'a' + 'A');
}

/* Classifies a record: a run message, the reaper's "dead" notice, or poison. */
static void classify(vb_dlq_entry *e)
{
    const vb_kafka_record *r = e->rec;
    vb_run_msg msg;
    vb_error err;
    vb_error_clear(&err);
    if (vb_run_msg_decode(r->value, r->len, &msg, &err) == VB_OK) {
        e->kind = VB_DLQ_RUN;
        snprintf(e->run_id, sizeof e->run_id, "%s", msg.run_id);
        snprintf(e->trace_id, sizeof e->trace_id, "%s", msg.trace_id ? msg.trace_id : "");
        upcase(e->run_id);
        vb_run_msg_free(&msg);
        return;
    }
    snprintf(e->why, sizeof e->why, "%.255s", err.msg);
    cJSON *root = r->len <= VB_MSG_MAX_BYTES ? cJSON_ParseWithLength(r->value, r->len) : NULL;
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(root, "schema");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "run_id");
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(root, "state");
    if (cJSON_IsNumber(schema) && schema->valuedouble == VB_MSG_SCHEMA && cJSON_IsString(id) &&
        vb_run_id_valid(id->valuestring) && strlen(id->valuestring) <= VB_STORE_ID_MAX &&
        cJSON_IsString(state) && strcmp(state->valuestring, "dead") == 0) {
        e->kind = VB_DLQ_NOTICE;
        snprintf(e->run_id, sizeof e->run_id, "%s", id->valuestring);
        upcase(e->run_id);
    }
    cJSON_Delete(root);
}

const char *vb_dlq_kind_name(vb_dlq_kind k)
{
    return k == VB_DLQ_RUN ? "run" : k == VB_DLQ_NOTICE ? "dead-notice" : "poison";
}

void vb_dlq_free(vb_dlq *d)
{
    for (size_t i = 0; i < d->n; i++)
        vb_kafka_record_free(d->items[i].rec);
    free(d->items);
    memset(d, 0, sizeof *d);
}

vb_dlq_entry *vb_dlq_at(vb_dlq *d, size_t i)
{
    return &d->items[(d->start + i) % d->cap];
}

vb_err vb_dlq_read(const char *brokers, const char *const *props, const char *dlq_topic,
                   size_t keep, int timeout_ms, vb_dlq *d, vb_error *err)
{
    memset(d, 0, sizeof *d);
    vb_kafka_reader *r = NULL;
    vb_err rc = vb_kafka_reader_new(brokers, props, dlq_topic, timeout_ms, &r, err);
    if (rc != VB_OK)
        return rc;
    long long expected = vb_kafka_reader_expected(r);
    d->cap = keep ? keep : (size_t)(expected > 0 ? expected : 1);
    if (!(d->items = calloc(d->cap, sizeof *d->items))) {
        rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (;;) {
        vb_kafka_record *rec = NULL;
        if ((rc = vb_kafka_reader_next(r, timeout_ms, &rec, err)) != VB_OK)
            goto fail;
        if (!rec)
            break;
        d->total++;
        vb_dlq_entry *slot;
        if (d->n < d->cap) {
            slot = vb_dlq_at(d, d->n++);
        } else { /* full: drop the oldest */
            slot = vb_dlq_at(d, 0);
            vb_kafka_record_free(slot->rec);
            d->start = (d->start + 1) % d->cap;
        }
        memset(slot, 0, sizeof *slot);
        slot->rec = rec;
        classify(slot);
    }
    vb_kafka_reader_free(r);
    return VB_OK;
fail:
    vb_kafka_reader_free(r);
    vb_dlq_free(d);
    return rc;
}

const vb_dlq_entry *vb_dlq_best_for(vb_dlq *d, const char *id)
{
    const vb_dlq_entry *best = NULL;
    for (size_t i = 0; i < d->n; i++) {
        const vb_dlq_entry *e = vb_dlq_at(d, i);
        if (e->kind == VB_DLQ_POISON || strcmp(e->run_id, id) != 0)
            continue;
        if (!best || e->kind >= best->kind)
            best = e;
    }
    return best;
}

static void add_str_or_null(cJSON *o, const char *name, const char *s)
{
    if (s)
        cJSON_AddStringToObject(o, name, s);
    else
        cJSON_AddNullToObject(o, name);
}

cJSON *vb_dlq_entry_json(const vb_dlq_entry *e)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    char ts[40];
    cJSON_AddNumberToObject(o, "partition", e->rec->partition);
    cJSON_AddNumberToObject(o, "offset", (double)e->rec->offset);
    if (e->rec->timestamp_ms >= 0)
        vb__format_ms_utc(e->rec->timestamp_ms, ts, sizeof ts);
    add_str_or_null(o, "timestamp", e->rec->timestamp_ms >= 0 ? ts : NULL);
    add_str_or_null(o, "key", e->rec->key);
    add_str_or_null(o, "run_id", e->run_id[0] ? e->run_id : NULL);
    add_str_or_null(o, "reason", vb_kafka_record_header(e->rec, "vb-reason"));
    cJSON_AddStringToObject(o, "kind", vb_dlq_kind_name(e->kind));
    cJSON_AddBoolToObject(o, "replayable", e->kind != VB_DLQ_POISON);
    cJSON_AddNumberToObject(o, "value_bytes", (double)e->rec->len);
    return o;
}

/* The message to publish for e: the original value, or one built from the
 * run's recorded origin (for a reaper's notice). *json is malloc'd. */
static vb_err replay_value(const vb_config *cfg, vb_store *s, const vb_dlq_entry *e, char **json,
                           vb_error *err)
{
    *json = NULL;
    if (e->kind == VB_DLQ_RUN) {
        if (!(*json = strdup(e->rec->value)))
            return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        return VB_OK;
    }
    vb_run_origin o;
    vb_run_state st;
    memset(&st, 0, sizeof st);
    vb_err rc = vb_store_get_origin(s, e->run_id, &o, err);
    if (rc != VB_OK)
        return rc;
    if (vb_store_get(s, e->run_id, &st, NULL) != VB_OK)
        memset(&st, 0, sizeof st);
    vb_run run;
    memset(&run, 0, sizeof run);
    run.id = (char *)e->run_id;
    run.organization_id = o.organization_id[0] ? o.organization_id : cfg->organization_id;
    run.run_code = o.run_code[0] ? o.run_code : NULL;
    run.user_query = "";
    if (!run.organization_id || !*run.organization_id) {
        rc = vb_error_set(err, VB_ERR_CONFIG,
                          "no organization recorded for run %s (set organization_id)", e->run_id);
    } else {
        const char *job = strcmp(o.cred_source, "job") == 0 && o.job_id[0] ? o.job_id : NULL;
        rc = vb_run_msg_encode(&run, job, st.execution_id && st.execution_id[0] ? st.execution_id
                                                                               : NULL,
                               st.trace_id && st.trace_id[0] ? st.trace_id : NULL, 1, json, err);
    }
    vb_run_state_free(&st);
    vb_run_origin_free(&o);
    return rc;
}

/* Checks (and without dry_run changes) the Redis state so the run may be
 * published again. */
static vb_err make_replayable(const vb_config *cfg, vb_store *s, const char *id,
                              const char *trace, int dry_run, vb_run_status *was, vb_error *err)
{
    vb_run_state st;
    vb_err rc = vb_store_get(s, id, &st, err);
    vb_run_status state = rc == VB_OK ? st.state : VB_RUN_NONE;
    if (rc == VB_OK)
        vb_run_state_free(&st);
    else if (rc != VB_ERR_NOT_FOUND)
        return vb_error_set(err, rc, "run %s", id);
    else
        vb_error_clear(err);
    *was = state;
    if (state == VB_RUN_UPLOADED)
        return vb_error_set(err, VB_ERR_CONFLICT, "run %s is already uploaded: not replayed", id);
    if (dry_run)
        return VB_OK;
    if ((state == VB_RUN_DEAD || state == VB_RUN_FAILED) &&
        (rc = vb_store_retry(s, id, err)) != VB_OK)
        return vb_error_set(err, rc, "run %s", id);
    long long lease = 10LL * cfg->lease_ms;
    if (lease < MIN_QUEUE_LEASE_MS)
        lease = MIN_QUEUE_LEASE_MS;
    vb_claim_decision d = 0;
    if ((rc = vb_store_claim_for_queue_ex(s, id, cfg->max_attempts, (long)lease,
                                          vb_store_now_ms(), trace && *trace ? trace : NULL,
                                          NULL, &d, NULL, err)) != VB_OK)
        return vb_error_set(err, rc, "run %s", id);
    if (d == VB_CLAIM_PUBLISH)
        return VB_OK;
    return vb_error_set(err, VB_ERR_CONFLICT, "run %s not replayed: %s", id,
                        d == VB_CLAIM_SKIP_IN_PROGRESS ? "it is queued or in progress"
                        : d == VB_CLAIM_SKIP_DONE      ? "it is already uploaded"
                                                       : vb_claim_decision_name(d));
}

vb_err vb_dlq_replay(const vb_config *cfg, vb_store *s, vb_kafka_producer *p,
                     const vb_dlq_entry *e, int dry_run, vb_run_status *was, vb_error *err)
{
    const char *id = e->run_id;
    *was = VB_RUN_NONE;
    if (e->kind == VB_DLQ_POISON)
        return vb_error_set(err, VB_ERR_INVALID, "the message at %d:%lld cannot be decoded (%s)",
                            e->rec->partition, e->rec->offset, e->why);
    vb_err rc = make_replayable(cfg, s, id, e->trace_id, dry_run, was, err);
    if (rc != VB_OK || dry_run)
        return rc;
    char *json = NULL;
    if ((rc = replay_value(cfg, s, e, &json, err)) != VB_OK)
        return vb_error_set(err, rc, "run %s", id);
    char schema[8];
    snprintf(schema, sizeof schema, "%d", VB_MSG_SCHEMA);
    vb_kafka_header h[3] = {{"vb-schema", schema}, {"vb-source", "replay"},
                            {"vb-trace-id", e->trace_id}};
    size_t nh = e->trace_id[0] ? 3 : 2;
    rc = vb_kafka_produce_sync(p, cfg->topic, id, json, strlen(json), h, nh, PRODUCE_TIMEOUT_MS,
                               err);
    free(json);
    if (rc != VB_OK) /* the run stays queued; a reaper publishes it after the lease */
        return vb_error_set(err, rc, "run %s", id);
    return VB_OK;
}
