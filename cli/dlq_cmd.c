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
 * Replaying one run takes the newest replayable message for it and follows
 * the rules of vb_dlq_replay (dlq.h, shared with the producer's console):
 * the Redis state must allow it (dead/failed are retried, uploaded and live
 * runs are refused), the run is claimed as queued, and the message goes back
 * to the runs topic with header vb-source=replay.
 * Messages that cannot be decoded (poison: not JSON, foreign schema, bad run
 * id) are refused with the decoder's reason: there is nothing to process.
 * Each replay is reported on stdout; --dry-run only reports.
 *
 * Output holds no secrets: run messages carry none, vb-reason was redacted
 * by the worker. Exit status 0 success, 1 failure (Kafka, Redis, nothing to
 * replay, a refused replay), 2 usage or configuration error.
 */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "visionbatch/config.h"
#include "visionbatch/dlq.h"
#include "visionbatch/kafka.h"
#include "visionbatch/log.h"
#include "visionbatch/message.h"
#include "visionbatch/run.h"
#include "visionbatch/store.h"

#define LIST_DEFAULT 50
#define LIST_MAX 10000
#define KAFKA_TIMEOUT_MS 15000

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

static int read_dlq(const vb_config *cfg, size_t keep, vb_dlq *d)
{
    vb_error err;
    vb_error_clear(&err);
    if (vb_dlq_read(cfg->kafka_brokers, cfg->kafka_properties, cfg->dlq_topic, keep,
                    KAFKA_TIMEOUT_MS, d, &err) != VB_OK) {
        fprintf(stderr, "visionbatch dlq: %s\n", err.msg);
        return -1;
    }
    return 0;
}

/* ---- list ---- */

static int cmd_list(const vb_config *cfg, long limit, int json)
{
    vb_dlq d;
    if (read_dlq(cfg, (size_t)limit, &d) != 0)
        return 1;
    int rc = 0;
    if (json) {
        cJSON *root = cJSON_CreateObject();
        cJSON *arr = root ? cJSON_AddArrayToObject(root, "messages") : NULL;
        for (size_t i = 0; arr && i < d.n; i++)
            cJSON_AddItemToArray(arr, vb_dlq_entry_json(vb_dlq_at(&d, i)));
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
            const vb_dlq_entry *e = vb_dlq_at(&d, i);
            char where[32], ts[40], key[39], reason[121];
            snprintf(where, sizeof where, "%d:%lld", e->rec->partition, e->rec->offset);
            vb_cli_fmt_time(e->rec->timestamp_ms, ts, sizeof ts);
            one_line(e->rec->key ? e->rec->key : "-", key, sizeof key);
            one_line(vb_kafka_record_header(e->rec, "vb-reason"), reason, sizeof reason);
            printf("%-12s %-24s %-38s %-38s %s\n", where, ts, key,
                   e->run_id[0] ? e->run_id : "(poison)", reason[0] ? reason : "-");
        }
        printf("%zu shown, %lld in %s\n", d.n, d.total, cfg->dlq_topic);
    }
    vb_dlq_free(&d);
    return rc;
}

/* ---- replay ---- */

static int replay_one(const vb_config *cfg, vb_store *s, vb_kafka_producer *p,
                      const vb_dlq_entry *e, int dry_run)
{
    vb_error err;
    vb_error_clear(&err);
    vb_run_status was = VB_RUN_NONE;
    if (vb_dlq_replay(cfg, s, p, e, dry_run, &was, &err) != VB_OK) {
        fprintf(stderr, "visionbatch dlq replay: %s\n", err.msg);
        return -1;
    }
    if (dry_run)
        printf("would replay run %s (state %s; %s message at %d:%lld)\n", e->run_id,
               vb_run_status_name(was), vb_dlq_kind_name(e->kind), e->rec->partition,
               e->rec->offset);
    else
        printf("replayed run %s to %s (state queued)\n", e->run_id, cfg->topic);
    return 0;
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
        for (char *c = id; *c; c++) /* run ids are stored upper case */
            *c = (char)toupper((unsigned char)*c);
    }
    vb_dlq d;
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
        const vb_dlq_entry *e = vb_dlq_best_for(&d, id);
        if (!e) {
            /* A poison message keyed with this id? Say why it cannot go. */
            for (size_t i = d.n; i > 0; i--) {
                const vb_dlq_entry *x = vb_dlq_at(&d, i - 1);
                if (x->kind == VB_DLQ_POISON && x->rec->key && strcasecmp(x->rec->key, id) == 0) {
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
        const vb_dlq_entry *e = vb_dlq_at(&d, i);
        if (e->kind == VB_DLQ_POISON) {
            char key[80];
            one_line(e->rec->key ? e->rec->key : "-", key, sizeof key);
            fprintf(stderr, "visionbatch dlq replay: skipped %d:%lld (key %s): cannot be "
                            "decoded (%s)\n",
                    e->rec->partition, e->rec->offset, key, e->why);
            poison++;
            continue;
        }
        if (vb_dlq_best_for(&d, e->run_id) != e)
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
    vb_dlq_free(&d);
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
    const char *limit = NULL, *pos[2];
    const vb_cli_opt opts[] = {{"--json", &a->json, NULL},
                               {"--all", &a->all, NULL},
                               {"--dry-run", &a->dry_run, NULL},
                               {"--limit", &a->limit_set, &limit},
                               {NULL, NULL, NULL}};
    if (vb_cli_parse_args("dlq", n, rest, opts, pos, 2) != 0)
        return -1;
    if (a->limit_set && vb_cli_parse_limit("dlq", limit, LIST_MAX, &a->limit) != 0)
        return -1;
    a->sub = pos[0];
    a->id = pos[1];
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
