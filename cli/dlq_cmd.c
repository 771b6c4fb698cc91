/*
 * dlq_cmd.c — `visionbatch dlq list|replay`: the dead-letter topic
 * (dlq_topic, default visionbatch.runs.dlq) for operators.
 *
 *   dlq list [--limit N] [--json]        the newest N messages (default 50):
 *                                        partition/offset, time, key, run id,
 *                                        the vb-reason header
 *   dlq replay RUN_ID|--all [--dry-run]  puts dead-lettered runs back on the
 *                                        runs topic
 *
 * The topic is read from the beginning with a reader that joins no group
 * and commits nothing (kafka.h: vb_kafka_reader), so listing is free of side
 * effects and can be repeated.
 *
 * Replaying one run (the newest replayable message for it):
 *   1. its Redis state must allow it: dead or failed → vb_store_retry
 *      (failed, 0 attempts); uploaded → refused; queued/processing/uploading
 *      with a live lease → refused (it is being worked on);
 *   2. vb_store_claim_for_queue_ex makes it queued with a queue lease (as the
 *      producer does), so no reaper publishes it a second time meanwhile;
 *   3. the message goes to the runs topic (topic) with key = run id and
 *      header vb-source=replay: the original value when it is a complete run
 *      message; for the short notice a worker's reaper dead-letters
 *      ({"schema":1,"run_id":…,"state":"dead"}) a run message is built from
 *      the origin recorded in Redis, as the reaper itself does.
 * Messages that cannot be decoded (poison: not JSON, foreign schema, bad run
 * id) are refused with the decoder's reason: there is nothing to process.
 * Each replay is reported on stdout; --dry-run only reports.
 *
 * Output holds no secrets: run messages carry none, vb-reason was redacted
 * by the worker. Exit status 0 success, 1 failure (Kafka, Redis, nothing to
 * replay, a refused replay), 2 usage or configuration error.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cli.h"
#include "visionbatch/config.h"
#include "visionbatch/kafka.h"
#include "visionbatch/log.h"
#include "visionbatch/message.h"
#include "visionbatch/run.h"
#include "visionbatch/store.h"

#define LIST_DEFAULT 50
#define LIST_MAX 10000
#define KAFKA_TIMEOUT_MS 15000
#define PRODUCE_TIMEOUT_MS 15000
#define MIN_QUEUE_LEASE_MS 60000LL

static void usage(FILE *out)
{
    fprintf(out,
            "usage: visionbatch dlq list [--limit N] [--json] [settings]\n"
            "       visionbatch dlq replay RUN_ID|--all [--dry-run] [settings]\n\n"
            "The dead-letter topic (dlq_topic), read from the beginning without a consumer\n"
            "group and without committing anything.\n"
            "  list    the newest messages (default %d, at most %d): partition:offset,\n"
            "          time, key, run id and the vb-reason header\n"
            "  replay  puts a dead-lettered run (or, with --all, every one) back on the\n"
            "          runs topic (topic) with header vb-source=replay, after making its\n"
            "          Redis state allow it (dead/failed -> queued, attempts 0). Uploaded\n"
            "          runs, runs in progress and messages that cannot be decoded are\n"
            "          refused. --dry-run shows what would be replayed.\n"
            "Exit status: 0 success, 1 failure, 2 usage or configuration error.\n",
            LIST_DEFAULT, LIST_MAX);
}

static void help(void)
{
    usage(stdout);
    printf("\nSettings (flag > environment > config file > default):\n");
    vb_config_print_help(stdout, VB_PROG_ADMIN);
}

/* ---- one dead-lettered message ---- */

typedef enum { KIND_POISON = 0, KIND_NOTICE, KIND_RUN } msg_kind;

typedef struct entry {
    vb_kafka_record *rec; /* owned */
    msg_kind kind;
    char run_id[VB_STORE_ID_MAX + 1]; /* upper case; "" for poison */
    char trace_id[64];
    char why[256]; /* poison: the decoder's reason */
} entry;

static void upcase(char *s)
{
    for (; *s; s++)
        if (*s >= 'a' && *s <= 'z')
            *s = (char)(*s - 'a' + 'A');
}

/* Classifies a record: a run message, the reaper's "dead" notice, or poison. */
static void classify(entry *e)
{
    const vb_kafka_record *r = e->rec;
    vb_run_msg msg;
    vb_error err;
    vb_error_clear(&err);
    if (vb_run_msg_decode(r->value, r->len, &msg, &err) == VB_OK) {
        e->kind = KIND_RUN;
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
        e->kind = KIND_NOTICE;
        snprintf(e->run_id, sizeof e->run_id, "%s", id->valuestring);
        upcase(e->run_id);
    }
    cJSON_Delete(root);
}

static const char *kind_name(msg_kind k)
{
    return k == KIND_RUN ? "run" : k == KIND_NOTICE ? "dead-notice" : "poison";
}

/* "2026-11-28T12:00:00.123Z" or "-". */
static void fmt_time(long long ms, char *out, size_t outlen)
{
    if (ms < 0) {
        snprintf(out, outlen, "-");
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        snprintf(out, outlen, "%lld", ms);
        return;
    }
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, outlen, "%s.%03dZ", base, (int)(ms % 1000));
}

/* Printable one-line copy of s (control characters → '?'), cut to outlen. */
static void one_line(const char *s, char *out, size_t outlen)
{
    size_t n = 0;
    for (; s && s[n] && n + 1 < outlen; n++)
        out[n] = (unsigned char)s[n] < 0x20 || s[n] == 0x7f ? '?' : s[n];
    out[n] = '\0';
    if (s && s[n] && outlen > 4)
        memcpy(out + outlen - 4, "...", 4);
}

/* ---- reading the topic ---- */

typedef struct dlq {
    entry *items; /* ring of the newest `cap` (list) or every message (replay) */
    size_t n, cap, start;
    long long total;
} dlq;

static void dlq_free(dlq *d)
{
    for (size_t i = 0; i < d->n; i++)
        vb_kafka_record_free(d->items[i].rec);
    free(d->items);
    memset(d, 0, sizeof *d);
}

static entry *dlq_at(dlq *d, size_t i)
{
    return &d->items[(d->start + i) % d->cap];
}

/* Reads the whole topic; keeps the newest `keep` messages (0 = all). */
static int read_dlq(const vb_config *cfg, size_t keep, dlq *d)
{
    memset(d, 0, sizeof *d);
    vb_error err;
    vb_error_clear(&err);
    vb_kafka_reader *r = NULL;
    if (vb_kafka_reader_new(cfg->kafka_brokers, cfg->kafka_properties, cfg->dlq_topic,
                            KAFKA_TIMEOUT_MS, &r, &err) != VB_OK) {
        fprintf(stderr, "visionbatch dlq: %s\n", err.msg);
        return -1;
    }
    long long expected = vb_kafka_reader_expected(r);
    d->cap = keep ? keep : (size_t)(expected > 0 ? expected : 1);
    if (!(d->items = calloc(d->cap, sizeof *d->items))) {
        fprintf(stderr, "visionbatch dlq: out of memory\n");
        vb_kafka_reader_free(r);
        return -1;
    }
    for (;;) {
        vb_kafka_record *rec = NULL;
        if (vb_kafka_reader_next(r, KAFKA_TIMEOUT_MS, &rec, &err) != VB_OK) {
            fprintf(stderr, "visionbatch dlq: %s\n", err.msg);
            vb_kafka_reader_free(r);
            dlq_free(d);
            return -1;
        }
        if (!rec)
            break;
        d->total++;
        entry *slot;
        if (d->n < d->cap) {
            slot = dlq_at(d, d->n++);
        } else { /* full: drop the oldest */
            slot = dlq_at(d, 0);
            vb_kafka_record_free(slot->rec);
            d->start = (d->start + 1) % d->cap;
        }
        memset(slot, 0, sizeof *slot);
        slot->rec = rec;
        classify(slot);
    }
    vb_kafka_reader_free(r);
    return 0;
}

/* ---- list ---- */

static cJSON *entry_json(const entry *e)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    char ts[40];
    cJSON_AddNumberToObject(o, "partition", e->rec->partition);
    cJSON_AddNumberToObject(o, "offset", (double)e->rec->offset);
    if (e->rec->timestamp_ms >= 0) {
        fmt_time(e->rec->timestamp_ms, ts, sizeof ts);
        cJSON_AddStringToObject(o, "timestamp", ts);
    } else {
        cJSON_AddNullToObject(o, "timestamp");
    }
    if (e->rec->key)
        cJSON_AddStringToObject(o, "key", e->rec->key);
    else
        cJSON_AddNullToObject(o, "key");
    if (e->run_id[0])
        cJSON_AddStringToObject(o, "run_id", e->run_id);
    else
        cJSON_AddNullToObject(o, "run_id");
    const char *reason = vb_kafka_record_header(e->rec, "vb-reason");
    if (reason)
        cJSON_AddStringToObject(o, "reason", reason);
    else
        cJSON_AddNullToObject(o, "reason");
    cJSON_AddStringToObject(o, "kind", kind_name(e->kind));
    cJSON_AddBoolToObject(o, "replayable", e->kind != KIND_POISON);
    cJSON_AddNumberToObject(o, "value_bytes", (double)e->rec->len);
    return o;
}

static int cmd_list(const vb_config *cfg, long limit, int json)
{
    dlq d;
    if (read_dlq(cfg, (size_t)limit, &d) != 0)
        return 1;
    int rc = 0;
    if (json) {
        cJSON *root = cJSON_CreateObject();
        cJSON *arr = root ? cJSON_AddArrayToObject(root, "messages") : NULL;
        for (size_t i = 0; arr && i < d.n; i++)
            cJSON_AddItemToArray(arr, entry_json(dlq_at(&d, i)));
        if (root) {
            cJSON_AddStringToObject(root, "topic", cfg->dlq_topic);
            cJSON_AddNumberToObject(root, "total", (double)d.total);
        }
        rc = vb_cli_print_json("dlq list", root);
    } else if (d.n == 0) {
        printf("%s is empty\n", cfg->dlq_topic);
    } else {
        printf("%-12s %-24s %-38s %-38s %s\n", "PART:OFFSET", "TIME", "KEY", "RUN",
               "REASON");
        for (size_t i = 0; i < d.n; i++) {
            const entry *e = dlq_at(&d, i);
            char where[32], ts[40], key[39], reason[121];
            snprintf(where, sizeof where, "%d:%lld", e->rec->partition, e->rec->offset);
            fmt_time(e->rec->timestamp_ms, ts, sizeof ts);
            one_line(e->rec->key ? e->rec->key : "-", key, sizeof key);
            one_line(vb_kafka_record_header(e->rec, "vb-reason"), reason, sizeof reason);
            printf("%-12s %-24s %-38s %-38s %s\n", where, ts, key,
                   e->run_id[0] ? e->run_id : "(poison)", reason[0] ? reason : "-");
        }
        printf("%zu shown, %lld in %s\n", d.n, d.total, cfg->dlq_topic);
    }
    dlq_free(&d);
    return rc;
}

/* ---- replay ---- */

/* The message to publish for e: the original value, or one built from the
 * run's recorded origin (for a reaper's notice). *json is malloc'd. */
static vb_err replay_value(const vb_config *cfg, vb_store *s, const entry *e, char **json,
                           vb_error *err)
{
    *json = NULL;
    if (e->kind == KIND_RUN) {
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
                          "no organization recorded for run %s (set organization_id)",
                          e->run_id);
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

/* Checks (and with !dry_run changes) the Redis state so the run may be
 * published again. 0 = go ahead, -1 = refused (message printed). */
static int make_replayable(const vb_config *cfg, vb_store *s, const char *id,
                           const char *trace, int dry_run, vb_run_status *was)
{
    vb_error err;
    vb_error_clear(&err);
    vb_run_state st;
    vb_err rc = vb_store_get(s, id, &st, &err);
    vb_run_status state = rc == VB_OK ? st.state : VB_RUN_NONE;
    if (rc == VB_OK)
        vb_run_state_free(&st);
    else if (rc != VB_ERR_NOT_FOUND) {
        fprintf(stderr, "visionbatch dlq replay: run %s: %s\n", id, err.msg);
        return -1;
    }
    *was = state;
    if (state == VB_RUN_UPLOADED) {
        fprintf(stderr, "visionbatch dlq replay: run %s is already uploaded: not replayed\n", id);
        return -1;
    }
    if (dry_run)
        return 0;
    if (state == VB_RUN_DEAD || state == VB_RUN_FAILED) {
        vb_error_clear(&err);
        if (vb_store_retry(s, id, &err) != VB_OK) {
            fprintf(stderr, "visionbatch dlq replay: run %s: %s\n", id, err.msg);
            return -1;
        }
    }
    long long lease = 10LL * cfg->lease_ms;
    if (lease < MIN_QUEUE_LEASE_MS)
        lease = MIN_QUEUE_LEASE_MS;
    vb_claim_decision d = 0;
    vb_error_clear(&err);
    if (vb_store_claim_for_queue_ex(s, id, cfg->max_attempts, (long)lease, vb_store_now_ms(),
                                    trace && *trace ? trace : NULL, NULL, &d, NULL,
                                    &err) != VB_OK) {
        fprintf(stderr, "visionbatch dlq replay: run %s: %s\n", id, err.msg);
        return -1;
    }
    if (d == VB_CLAIM_PUBLISH)
        return 0;
    fprintf(stderr, "visionbatch dlq replay: run %s not replayed: %s\n", id,
            d == VB_CLAIM_SKIP_IN_PROGRESS ? "it is queued or in progress"
            : d == VB_CLAIM_SKIP_DONE      ? "it is already uploaded"
                                           : vb_claim_decision_name(d));
    return -1;
}

static int replay_one(const vb_config *cfg, vb_store *s, vb_kafka_producer *p, const entry *e,
                      int dry_run)
{
    const char *id = e->run_id;
    vb_run_status was = VB_RUN_NONE;
    if (make_replayable(cfg, s, id, e->trace_id, dry_run, &was) != 0)
        return -1;
    if (dry_run) {
        printf("would replay run %s (state %s; %s message at %d:%lld)\n", id,
               vb_run_status_name(was), kind_name(e->kind), e->rec->partition, e->rec->offset);
        return 0;
    }
    vb_error err;
    vb_error_clear(&err);
    char *json = NULL;
    if (replay_value(cfg, s, e, &json, &err) != VB_OK) {
        fprintf(stderr, "visionbatch dlq replay: run %s: %s\n", id, err.msg);
        return -1;
    }
    char schema[8];
    snprintf(schema, sizeof schema, "%d", VB_MSG_SCHEMA);
    vb_kafka_header h[3] = {{"vb-schema", schema}, {"vb-source", "replay"},
                            {"vb-trace-id", e->trace_id}};
    size_t nh = e->trace_id[0] ? 3 : 2;
    vb_err rc = vb_kafka_produce_sync(p, cfg->topic, id, json, strlen(json), h, nh,
                                      PRODUCE_TIMEOUT_MS, &err);
    free(json);
    if (rc != VB_OK) {
        /* The run stays queued; its queue lease expires and a worker's
         * reaper publishes it then. */
        fprintf(stderr, "visionbatch dlq replay: run %s: %s\n", id, err.msg);
        return -1;
    }
    printf("replayed run %s to %s (state queued)\n", id, cfg->topic);
    return 0;
}

/* The best message for run `id` among d: the newest run message, else the
 * newest notice. NULL when none. */
static const entry *best_for(dlq *d, const char *id)
{
    const entry *best = NULL;
    for (size_t i = 0; i < d->n; i++) {
        const entry *e = dlq_at(d, i);
        if (e->kind == KIND_POISON || strcmp(e->run_id, id) != 0)
            continue;
        if (!best || e->kind >= best->kind)
            best = e;
    }
    return best;
}

static int cmd_replay(const vb_config *cfg, const char *want, int all, int dry_run)
{
    char id[VB_STORE_ID_MAX + 1] = "";
    if (!all) {
        if (!vb_run_id_valid(want) || strlen(want) > VB_STORE_ID_MAX) {
            fprintf(stderr, "visionbatch dlq replay: '%s' is not a valid run id\n", want);
            return 2;
        }
        snprintf(id, sizeof id, "%s", want);
        upcase(id);
    }
    dlq d;
    if (read_dlq(cfg, 0, &d) != 0)
        return 1;
    int rc = 1;
    vb_error err;
    vb_error_clear(&err);
    vb_store *s = NULL;
    vb_kafka_producer *p = NULL;
    vb_store_opts so = {.client_name = "visionbatch-cli"};
    if (vb_store_new(cfg->redis_url, &so, &s, &err) != VB_OK) {
        fprintf(stderr, "visionbatch dlq replay: %s\n", err.msg);
        goto out;
    }
    if (!dry_run &&
        vb_kafka_producer_new(cfg->kafka_brokers, cfg->kafka_properties, "visionbatch-cli", &p,
                              &err) != VB_OK) {
        fprintf(stderr, "visionbatch dlq replay: %s\n", err.msg);
        goto out;
    }
    if (!all) {
        const entry *e = best_for(&d, id);
        if (!e) {
            /* A poison message keyed with this id? Say why it cannot go. */
            for (size_t i = d.n; i > 0; i--) {
                const entry *x = dlq_at(&d, i - 1);
                if (x->kind == KIND_POISON && x->rec->key && strcasecmp(x->rec->key, id) == 0) {
                    fprintf(stderr,
                            "visionbatch dlq replay: the message for %s at %d:%lld cannot be "
                            "decoded (%s); it is not replayed\n",
                            id, x->rec->partition, x->rec->offset, x->why);
                    goto out;
                }
            }
            fprintf(stderr, "visionbatch dlq replay: no message for run %s in %s\n", id,
                    cfg->dlq_topic);
            goto out;
        }
        rc = replay_one(cfg, s, p, e, dry_run) == 0 ? 0 : 1;
        goto out;
    }
    size_t done = 0, failed = 0, poison = 0;
    for (size_t i = 0; i < d.n; i++) {
        const entry *e = dlq_at(&d, i);
        if (e->kind == KIND_POISON) {
            char key[80];
            one_line(e->rec->key ? e->rec->key : "-", key, sizeof key);
            fprintf(stderr, "visionbatch dlq replay: skipped %d:%lld (key %s): cannot be "
                            "decoded (%s)\n",
                    e->rec->partition, e->rec->offset, key, e->why);
            poison++;
            continue;
        }
        if (best_for(&d, e->run_id) != e)
            continue; /* an older copy of a run replayed below */
        if (replay_one(cfg, s, p, e, dry_run) == 0)
            done++;
        else
            failed++;
    }
    printf("%zu run(s) %s, %zu refused or failed, %zu poison message(s) skipped\n", done,
           dry_run ? "to replay" : "replayed", failed, poison);
    rc = failed ? 1 : 0;
out:
    vb_kafka_producer_free(p, 5000);
    vb_store_free(s);
    dlq_free(&d);
    return rc;
}

/* ---- arguments ---- */

typedef struct dlq_args {
    const char *sub;
    const char *id;
    long limit;
    int json, all, dry_run, limit_set;
} dlq_args;

static int parse_args(int n, char **rest, dlq_args *a)
{
    memset(a, 0, sizeof *a);
    a->limit = LIST_DEFAULT;
    for (int i = 0; i < n; i++) {
        const char *x = rest[i];
        if (strcmp(x, "--json") == 0) {
            a->json = 1;
        } else if (strcmp(x, "--all") == 0) {
            a->all = 1;
        } else if (strcmp(x, "--dry-run") == 0) {
            a->dry_run = 1;
        } else if (strncmp(x, "--limit", 7) == 0 && (x[7] == '\0' || x[7] == '=')) {
            const char *val = x[7] == '=' ? x + 8 : (i + 1 < n ? rest[++i] : NULL);
            char *end = NULL;
            errno = 0;
            long v = val ? strtol(val, &end, 10) : 0;
            if (!val || !*val || errno || *end || v < 1 || v > LIST_MAX) {
                fprintf(stderr, "visionbatch dlq: --limit needs a number 1-%d\n", LIST_MAX);
                return -1;
            }
            a->limit = v;
            a->limit_set = 1;
        } else if (x[0] == '-' && x[1] != '\0') {
            fprintf(stderr, "visionbatch dlq: unknown option '%s'\n", x);
            return -1;
        } else if (!a->sub) {
            a->sub = x;
        } else if (!a->id) {
            a->id = x;
        } else {
            fprintf(stderr, "visionbatch dlq: unexpected argument '%s'\n", x);
            return -1;
        }
    }
    if (!a->sub) {
        fprintf(stderr, "visionbatch dlq: which command? list or replay\n");
        return -1;
    }
    if (strcmp(a->sub, "list") == 0) {
        if (a->id || a->all || a->dry_run) {
            fprintf(stderr, "visionbatch dlq list: takes only --limit and --json\n");
            return -1;
        }
        return 0;
    }
    if (strcmp(a->sub, "replay") == 0) {
        if (a->json || a->limit_set) {
            fprintf(stderr, "visionbatch dlq replay: --json and --limit belong to list\n");
            return -1;
        }
        if (!a->all == !a->id) {
            fprintf(stderr, "visionbatch dlq replay: give a run id or --all\n");
            return -1;
        }
        return 0;
    }
    fprintf(stderr, "visionbatch dlq: unknown command '%s'\n", a->sub);
    return -1;
}

int vb_cli_dlq(int argc, char **argv)
{
    if (vb_config_wants_help(argc, argv)) {
        help();
        return 0;
    }
    static const char *const passthrough[] = {"limit", "json", "all", "dry-run", NULL};
    vb_config cfg;
    char **rest = NULL;
    int nrest = 0;
    if (vb_cli_load("dlq", VB_PROG_ADMIN, argc, argv, passthrough, &cfg, &rest, &nrest) != 0)
        return 2;
    vb_error err;
    vb_error_clear(&err);
    dlq_args a;
    if (parse_args(nrest, rest, &a) != 0) {
        usage(stderr);
        vb_config_free(&cfg);
        return 2;
    }
    int rc = strcmp(a.sub, "list") == 0 ? cmd_list(&cfg, a.limit, a.json)
                                        : cmd_replay(&cfg, a.id, a.all, a.dry_run);
    vb_log_close();
    vb_config_free(&cfg);
    return rc;
}
