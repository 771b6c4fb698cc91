/*
 * runs_cmd.c — `visionbatch runs list|show|retry`: the run state that the
 * distributed mode keeps in Redis (store.h).
 *
 *   runs list [--state S] [--limit N] [--json]   most recently updated first
 *   runs show <id> [--json]                      one run, key: value lines
 *   runs retry <id>                              dead/failed → failed with 0
 *                                                attempts; the next producer
 *                                                pass publishes it again
 * Settings come from vb_config_load (VB_PROG_ADMIN: redis_url, …). Output
 * never holds secrets: the run state has none, and last_error was redacted
 * before it was stored. Exit status 0 success, 1 failure (Redis, unknown
 * run, state forbids retry), 2 usage or configuration error.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "visionbatch/config.h"
#include "visionbatch/log.h"
#include "visionbatch/store.h"

#define LIST_DEFAULT 50
#define LIST_MAX 1000

static void usage(FILE *out)
{
    fprintf(out,
            "usage: visionbatch runs list [--state STATE] [--limit N] [--json] [settings]\n"
            "       visionbatch runs show RUN_ID [--json] [settings]\n"
            "       visionbatch runs retry RUN_ID [settings]\n\n"
            "The state of runs in distributed mode, as recorded in Redis (redis_url).\n"
            "  list   runs, most recently updated first (default limit %d, at most %d);\n"
            "         STATE is queued, processing, uploading, uploaded, failed or dead\n"
            "  show   every recorded field of one run\n"
            "  retry  a dead or failed run becomes failed with 0 attempts; the next\n"
            "         visionbatch-producer pass publishes it again\n"
            "Exit status: 0 success, 1 failure, 2 usage or configuration error.\n",
            LIST_DEFAULT, LIST_MAX);
}

static void help(void)
{
    usage(stdout);
    printf("\nSettings (flag > environment > config file > default):\n");
    vb_config_print_help(stdout, VB_PROG_ADMIN);
}

/* "2026-11-28T12:00:00.123Z", or "-" for 0 (never set). */
static void fmt_time(long long ms, char *out, size_t outlen)
{
    vb_cli_fmt_time(ms > 0 ? ms : -1, out, outlen);
}

static const char *dash(const char *s)
{
    return s && *s ? s : "-";
}

/* ---- JSON form ---- */

static void add_time(cJSON *o, const char *name, long long ms)
{
    if (ms <= 0) {
        cJSON_AddNullToObject(o, name);
        return;
    }
    char s[40];
    fmt_time(ms, s, sizeof s);
    cJSON_AddStringToObject(o, name, s);
}

static cJSON *state_json(const vb_run_state *st)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "id", st->id);
    cJSON_AddStringToObject(o, "state", vb_run_status_name(st->state));
    cJSON_AddNumberToObject(o, "attempts", (double)st->attempts);
    cJSON_AddNumberToObject(o, "version", (double)st->version);
    add_time(o, "created_at", st->created_at);
    add_time(o, "updated_at", st->updated_at);
    add_time(o, "queued_at", st->queued_at);
    add_time(o, "started_at", st->started_at);
    add_time(o, "finished_at", st->finished_at);
    add_time(o, "lease_until", st->lease_until);
    add_time(o, "upload_started_at", st->upload_started_at);
    add_time(o, "upload_until", st->upload_until);
    add_time(o, "retry_at", st->retry_at);
    cJSON_AddStringToObject(o, "worker", st->worker);
    cJSON_AddStringToObject(o, "batch_ids", st->batch_ids);
    cJSON_AddStringToObject(o, "last_error", st->last_error);
    cJSON_AddStringToObject(o, "trace_id", st->trace_id);
    cJSON_AddStringToObject(o, "execution_id", st->execution_id);
    return o;
}


/* ---- subcommands ---- */

/* One line of the table: the error cut to fit, newlines flattened. */
static void short_error(const char *e, char *out, size_t outlen)
{
    size_t n = 0;
    for (; e[n] && n + 1 < outlen; n++)
        out[n] = (e[n] == '\n' || e[n] == '\r' || e[n] == '\t') ? ' ' : e[n];
    out[n] = '\0';
    if (e[n] && outlen > 4)
        memcpy(out + outlen - 4, "...", 4);
}

static int cmd_list(vb_store *s, vb_run_status filter, long limit, int json)
{
    vb_run_state_list l;
    vb_error err;
    vb_error_clear(&err);
    if (vb_store_list(s, 0, (size_t)limit, filter, &l, &err) != VB_OK) {
        fprintf(stderr, "visionbatch runs list: %s\n", err.msg);
        vb_run_state_list_free(&l);
        return 1;
    }
    int rc = 0;
    if (json) {
        cJSON *root = cJSON_CreateObject();
        cJSON *arr = root ? cJSON_AddArrayToObject(root, "runs") : NULL;
        for (size_t i = 0; arr && i < l.n; i++)
            cJSON_AddItemToArray(arr, state_json(&l.items[i]));
        if (root)
            cJSON_AddNumberToObject(root, "total_runs", (double)l.total_runs);
        rc = vb_cli_print_json("runs", root);
    } else if (l.n == 0) {
        printf("no runs%s%s (%zu recorded in %s)\n", filter ? " in state " : "",
               filter ? vb_run_status_name(filter) : "", l.total_runs, vb_store_describe(s));
    } else {
        printf("%-38s %-10s %8s  %-24s %-24s %s\n", "RUN", "STATE", "ATTEMPTS", "UPDATED",
               "WORKER", "LAST ERROR");
        for (size_t i = 0; i < l.n; i++) {
            const vb_run_state *st = &l.items[i];
            char upd[40], e[61];
            fmt_time(st->updated_at, upd, sizeof upd);
            short_error(st->last_error, e, sizeof e);
            printf("%-38s %-10s %8ld  %-24s %-24s %s\n", st->id, vb_run_status_name(st->state),
                   st->attempts, upd, st->worker[0] ? st->worker : "-", e[0] ? e : "-");
        }
        printf("%zu shown, %zu recorded\n", l.n, l.total_runs);
    }
    vb_run_state_list_free(&l);
    return rc;
}

static int cmd_show(vb_store *s, const char *id, int json)
{
    vb_run_state st;
    vb_error err;
    vb_error_clear(&err);
    if (vb_store_get(s, id, &st, &err) != VB_OK) {
        fprintf(stderr, "visionbatch runs show: %s\n", err.msg);
        return 1;
    }
    int rc = 0;
    if (json) {
        rc = vb_cli_print_json("runs", state_json(&st));
    } else {
        static const char *const tnames[] = {"created_at",  "updated_at",  "queued_at",
                                             "started_at",  "finished_at", "lease_until",
                                             "upload_started_at", "upload_until",
                                             "retry_at"};
        const long long tvals[] = {st.created_at,  st.updated_at,  st.queued_at,
                                   st.started_at,  st.finished_at, st.lease_until,
                                   st.upload_started_at, st.upload_until, st.retry_at};
        printf("id: %s\nstate: %s\nattempts: %ld\nversion: %lld\n", st.id,
               vb_run_status_name(st.state), st.attempts, st.version);
        for (size_t i = 0; i < sizeof tnames / sizeof *tnames; i++) {
            char t[40];
            fmt_time(tvals[i], t, sizeof t);
            printf("%s: %s\n", tnames[i], t);
        }
        printf("worker: %s\nbatch_ids: %s\ntrace_id: %s\nexecution_id: %s\nlast_error: %s\n",
               dash(st.worker), dash(st.batch_ids), dash(st.trace_id), dash(st.execution_id),
               dash(st.last_error));
    }
    vb_run_state_free(&st);
    return rc;
}

static int cmd_retry(vb_store *s, const char *id)
{
    vb_error err;
    vb_error_clear(&err);
    if (vb_store_retry(s, id, &err) != VB_OK) {
        fprintf(stderr, "visionbatch runs retry: %s\n", err.msg);
        return 1;
    }
    printf("run %s is now failed with 0 attempts; the next visionbatch-producer pass "
           "publishes it again\n",
           id);
    return 0;
}

/* ---- argument handling ---- */

typedef struct runs_args {
    const char *sub;
    const char *id;
    vb_run_status filter;
    long limit;
    int json;
} runs_args;

static int parse_args(int n, char **rest, runs_args *a)
{
    memset(a, 0, sizeof *a);
    a->limit = LIST_DEFAULT;
    const char *state = NULL, *limit = NULL, *pos[2];
    int state_given = 0, limit_given = 0;
    const vb_cli_opt opts[] = {{"--json", &a->json, NULL},
                               {"--state", &state_given, &state},
                               {"--limit", &limit_given, &limit},
                               {NULL, NULL, NULL}};
    if (vb_cli_parse_args("runs", n, rest, opts, pos, 2) != 0)
        return -1;
    if (state_given) {
        int st = state ? vb_run_status_parse(state) : -1;
        if (st <= 0) {
            fprintf(stderr, "visionbatch runs: --state needs queued, processing, uploading, "
                            "uploaded, failed or dead\n");
            return -1;
        }
        a->filter = (vb_run_status)st;
    }
    if (limit_given && vb_cli_parse_limit("runs", limit, LIST_MAX, &a->limit) != 0)
        return -1;
    a->sub = pos[0];
    a->id = pos[1];
    if (!a->sub) {
        fprintf(stderr, "visionbatch runs: which command? list, show or retry\n");
        return -1;
    }
    int is_list = strcmp(a->sub, "list") == 0;
    int is_show = strcmp(a->sub, "show") == 0;
    int is_retry = strcmp(a->sub, "retry") == 0;
    if (!is_list && !is_show && !is_retry) {
        fprintf(stderr, "visionbatch runs: unknown command '%s'\n", a->sub);
        return -1;
    }
    if (is_list && a->id) {
        fprintf(stderr, "visionbatch runs list: unexpected argument '%s'\n", a->id);
        return -1;
    }
    if (!is_list && !a->id) {
        fprintf(stderr, "visionbatch runs %s: a run id is needed\n", a->sub);
        return -1;
    }
    if (!is_list && (a->filter || a->limit != LIST_DEFAULT)) {
        fprintf(stderr, "visionbatch runs %s: --state and --limit belong to list\n", a->sub);
        return -1;
    }
    if (is_retry && a->json) {
        fprintf(stderr, "visionbatch runs retry: --json is not supported\n");
        return -1;
    }
    return 0;
}

int vb_cli_runs(int argc, char **argv)
{
    if (vb_config_wants_help(argc, argv)) {
        help();
        return 0;
    }
    static const char *const passthrough[] = {"state", "limit", "json", NULL};
    vb_config cfg;
    char **rest = NULL;
    int nrest = 0;
    if (vb_cli_load("runs", VB_PROG_ADMIN, argc, argv, passthrough, &cfg, &rest, &nrest) != 0)
        return 2;
    vb_error err;
    vb_error_clear(&err);
    runs_args a;
    if (parse_args(nrest, rest, &a) != 0) {
        usage(stderr);
        vb_config_free(&cfg);
        return 2;
    }

    vb_store *s = NULL;
    vb_store_opts so = {.client_name = "visionbatch-cli"};
    int rc = 1;
    if (vb_store_new(cfg.redis_url, &so, &s, &err) != VB_OK) {
        fprintf(stderr, "visionbatch runs: %s\n", err.msg);
        goto out;
    }
    if (strcmp(a.sub, "list") == 0)
        rc = cmd_list(s, a.filter, a.limit, a.json);
    else if (strcmp(a.sub, "show") == 0)
        rc = cmd_show(s, a.id, a.json);
    else
        rc = cmd_retry(s, a.id);
out:
    vb_store_free(s);
    vb_log_close();
    vb_config_free(&cfg);
    return rc;
}
