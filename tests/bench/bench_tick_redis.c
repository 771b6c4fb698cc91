/*
 * Benchmark of the Redis side of a cron tick: what claiming and recording
 * the firings of N every-minute jobs costs Redis, with nothing else running.
 *
 * Starts a private redis-server (from PATH), stores N jobs, then for each of
 * --ticks minute ticks does what a scheduler pass does in Redis: claims
 * every job's tick VB_SCHED_CLAIM_BATCH per script (vb_jobs_exec_ticks) and
 * records every firing's end VB_SCHED_END_BATCH per script
 * (vb_jobs_exec_fire_done_batch, no runs found). Per tick and phase it
 * prints Redis's CPU time per job (INFO cpu) and the longest script: while
 * a script runs, every other client of Redis waits (a REST API read
 * included). The executions cap is 3, so from the fourth tick every claim
 * also trims the job's oldest execution, as it does in a long-running
 * deployment. Checks that every tick fired once and every execution ended
 * `success`, so its quick form in `ctest -L bench` cannot rot.
 *
 *   bench_tick_redis [--jobs N] [--ticks T] [--quick]    (default 10000 jobs, 6 ticks)
 *   scripts/bench.sh tick-redis
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jobs_internal.h"
#include "redis_test_server.h"
#include "scheduler.h"
#include "visionbatch/crypto.h"
#include "visionbatch/jobs_exec.h"

#define EXEC_CAP 3

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* used_cpu_user + used_cpu_sys of the server, in seconds. */
static double redis_cpu(redisContext *c)
{
    redisReply *r = redisCommand(c, "INFO cpu");
    double sum = 0;
    if (r && r->type == REDIS_REPLY_STRING) {
        const char *keys[] = {"used_cpu_user:", "used_cpu_sys:"};
        for (int i = 0; i < 2; i++) {
            const char *p = strstr(r->str, keys[i]);
            if (p)
                sum += strtod(p + strlen(keys[i]), NULL);
        }
    }
    freeReplyObject(r);
    return sum;
}

static int bench_fail(const char *what, const vb_error *err)
{
    fprintf(stderr, "bench_tick_redis: %s: %s\n", what, err && err->msg[0] ? err->msg : "failed");
    return 1;
}

/* Stores n jobs `* * * * *` as vb_jobs_create would (minus the optional
 * fields), pipelined. */
static int make_jobs(redisContext *c, char (*ids)[VB_UUID_SIZE], int n, long long created_ms)
{
    vb_error err = {0};
    char now[24];
    snprintf(now, sizeof now, "%lld", created_ms);
    for (int i = 0; i < n; i++) {
        if (vb_crypto_uuid4(ids[i], &err) != VB_OK)
            return bench_fail("uuid", &err);
        redisAppendCommand(c,
                           "HSET visionbatch:job:%s name bench schedule %s timezone UTC "
                           "external_api_get_url https://a/x external_api_post_url https://a/y "
                           "organization_id o enabled 1 overlap skip created_at %s updated_at %s "
                           "running_idx 1",
                           ids[i], "* * * * *", now, now);
        redisAppendCommand(c, "SADD visionbatch:jobs %s", ids[i]);
    }
    for (int i = 0; i < 2 * n; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || !r || r->type == REDIS_REPLY_ERROR) {
            freeReplyObject(r);
            return bench_fail("storing the jobs", NULL);
        }
        freeReplyObject(r);
    }
    return 0;
}

typedef struct phase {
    double cpu_s, wall_ms, longest_ms;
    int scripts;
} phase;

int main(int argc, char **argv)
{
    int n = 10000, ticks = 6;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            n = 300;
            ticks = 5;
        } else if (strcmp(argv[i], "--jobs") == 0 && i + 1 < argc) {
            n = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--ticks") == 0 && i + 1 < argc) {
            ticks = atoi(argv[++i]);
        } else {
            printf("usage: bench_tick_redis [--jobs N] [--ticks T] [--quick]\n\n"
                   "The Redis cost of claiming and recording the firings of N every-minute\n"
                   "cron jobs per tick (a private redis-server from PATH).\n");
            return strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0 ? 0 : 2;
        }
    }
    if (n < 1 || n > 1000000 || ticks < 1 || ticks > 1000)
        return bench_fail("--jobs must be 1..1000000 and --ticks 1..1000", NULL);

    int port = vb_test_free_port();
    pid_t pid = vb_test_start_redis(port, NULL, NULL);
    if (pid < 0)
        return bench_fail("redis-server did not start", NULL);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", port);
    redisContext *admin = redisConnect("127.0.0.1", port);
    vb_jobs *jobs = NULL;
    vb_error err = {0};
    vb_jobs_opts o = {.redis_url = url, .exec_cap = EXEC_CAP};
    char(*ids)[VB_UUID_SIZE] = calloc((size_t)n, VB_UUID_SIZE);
    vb_exec_tick *t = calloc(VB_SCHED_CLAIM_BATCH, sizeof *t);
    vb_exec_tick_result *res = calloc(VB_SCHED_CLAIM_BATCH, sizeof *res);
    vb_exec_fire_done *d = calloc(VB_SCHED_END_BATCH, sizeof *d);
    char(*execs)[VB_UUID_SIZE] = calloc((size_t)n, VB_UUID_SIZE);
    int rc = 1;
    if (!admin || admin->err || !ids || !t || !res || !d || !execs) {
        bench_fail("setup", NULL);
        goto out;
    }
    if (vb_jobs_new(&o, &jobs, &err) != VB_OK) {
        bench_fail("connect", &err);
        goto out;
    }
    long long first = ((long long)time(NULL) / 60 + 1) * 60;
    if (make_jobs(admin, ids, n, (first - 120) * 1000))
        goto out;

    printf("%d jobs, %d ticks, claims of %d, ends of %d, executions kept per job %d\n", n,
           ticks, VB_SCHED_CLAIM_BATCH, VB_SCHED_END_BATCH, EXEC_CAP);
    printf("| tick | claim: Redis CPU us/job | longest claim ms | end: Redis CPU us/job "
           "| longest end ms | wall ms |\n|---|---|---|---|---|---|\n");
    double claim_sum = 0, end_sum = 0;
    for (int k = 0; k < ticks; k++) {
        long long tick = first + 60LL * k;
        phase ph[2] = {{0}};
        double w0 = now_ms();
        /* claims */
        double c0 = redis_cpu(admin);
        for (int i = 0; i < n; i += VB_SCHED_CLAIM_BATCH) {
            int m = n - i < VB_SCHED_CLAIM_BATCH ? n - i : VB_SCHED_CLAIM_BATCH;
            for (int u = 0; u < m; u++)
                t[u] = (vb_exec_tick){.job_id = ids[i + u],
                                      .producer_id = "bench",
                                      .expected_last = k ? tick - 60 : 0,
                                      .new_last = tick,
                                      .fire_tick = tick,
                                      .now_ms = tick * 1000 + 5};
            double s0 = now_ms();
            if (vb_jobs_exec_ticks(jobs, t, (size_t)m, res, &err) != VB_OK) {
                bench_fail("claim", &err);
                goto out;
            }
            double s = now_ms() - s0;
            ph[0].longest_ms = s > ph[0].longest_ms ? s : ph[0].longest_ms;
            ph[0].scripts++;
            for (int u = 0; u < m; u++) {
                if (res[u].code != VB_EXEC_TICK_DONE || !res[u].fired) {
                    fprintf(stderr, "bench_tick_redis: tick %d of job %s did not fire\n", k,
                            ids[i + u]);
                    goto out;
                }
                memcpy(execs[i + u], res[u].execution_id, VB_UUID_SIZE);
            }
        }
        ph[0].cpu_s = redis_cpu(admin) - c0;
        /* ends */
        c0 = redis_cpu(admin);
        for (int i = 0; i < n; i += VB_SCHED_END_BATCH) {
            int m = n - i < VB_SCHED_END_BATCH ? n - i : VB_SCHED_END_BATCH;
            for (int u = 0; u < m; u++)
                d[u] = (vb_exec_fire_done){.execution_id = execs[i + u],
                                           .output = "no unprocessed runs",
                                           .now_ms = tick * 1000 + 900};
            double s0 = now_ms();
            if (vb_jobs_exec_fire_done_batch(jobs, d, (size_t)m, &err) != VB_OK) {
                bench_fail("end", &err);
                goto out;
            }
            double s = now_ms() - s0;
            ph[1].longest_ms = s > ph[1].longest_ms ? s : ph[1].longest_ms;
            ph[1].scripts++;
            for (int u = 0; u < m; u++)
                if (d[u].rc != VB_OK || strcmp(d[u].status, "success") != 0) {
                    fprintf(stderr, "bench_tick_redis: execution %s ended '%s'\n",
                            execs[i + u], d[u].status);
                    goto out;
                }
        }
        ph[1].cpu_s = redis_cpu(admin) - c0;
        double cu = ph[0].cpu_s * 1e6 / n, eu = ph[1].cpu_s * 1e6 / n;
        claim_sum += cu;
        end_sum += eu;
        printf("| %d%s | %.1f | %.2f | %.1f | %.2f | %.0f |\n", k + 1,
               k >= EXEC_CAP ? " (trims)" : "", cu, ph[0].longest_ms, eu, ph[1].longest_ms,
               now_ms() - w0);
    }
    /* Every job kept its newest EXEC_CAP executions and nothing runs. */
    redisReply *z = redisCommand(admin, "ZCARD visionbatch:execs:running");
    redisReply *l = redisCommand(admin, "LLEN visionbatch:job:%s:execs", ids[n - 1]);
    long long want = ticks < EXEC_CAP ? ticks : EXEC_CAP;
    if (!z || !l || z->integer != 0 || l->integer != want) {
        fprintf(stderr,
                "bench_tick_redis: %lld executions still running, %lld kept (want 0, %lld)\n",
                z ? z->integer : -1, l ? l->integer : -1, want);
        freeReplyObject(z);
        freeReplyObject(l);
        goto out;
    }
    freeReplyObject(z);
    freeReplyObject(l);
    printf("mean Redis CPU per job and tick: claim %.1f us, end %.1f us, both %.1f us\n",
           claim_sum / ticks, end_sum / ticks, (claim_sum + end_sum) / ticks);
    rc = 0;
out:
    vb_jobs_free(jobs);
    if (admin)
        redisFree(admin);
    vb_test_stop_redis(pid);
    free(ids);
    free(t);
    free(res);
    free(d);
    free(execs);
    return rc;
}
