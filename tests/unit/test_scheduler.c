/* Unit tests of the producer's scheduler (producer/scheduler.c) and of the
 * execution life cycle (common/jobs_exec.c), against a live Redis (database
 * 10; see redis_test_url.h). The scheduler runs without its thread and with
 * an injected clock, so simulated hours pass without waiting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jobs_internal.h"
#include "redis_test_url.h"
#include "test_util.h"
#include "scheduler.h"
#include "visionbatch/jobs_exec.h"
#include "visionbatch/store.h"
#include "visionbatch/log.h"

#define DB 10
#define KEY_B64 "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="

static long long clk; /* simulated unix ms */

static long long test_clock(void *ctx)
{
    (void)ctx;
    return clk;
}

typedef struct firer {
    atomic_int calls;
    int publish;      /* runs each firing publishes */
    int fail;         /* 1: the callback fails */
    char last_exec[VB_UUID_SIZE];
    char last_url[128]; /* external_api_get_url of the job last fired */
} firer;

static vb_err fire_cb(void *ctx, const vb_job *job, const char *execution_id, vb_fire_result *out,
                      vb_error *err)
{
    firer *f = ctx;
    atomic_fetch_add(&f->calls, 1);
    snprintf(f->last_exec, sizeof f->last_exec, "%s", execution_id);
    snprintf(f->last_url, sizeof f->last_url, "%s", job->external_api_get_url);
    out->found = f->publish;
    for (int i = 0; i < f->publish; i++) {
        char run[64];
        snprintf(run, sizeof run, "RUN-%.8s-%d", execution_id, i);
        vb_err rc = vb_jobs_exec_add_published(out->jobs, execution_id, run, err);
        if (rc != VB_OK)
            return rc;
        out->published++;
    }
    if (f->fail)
        return vb_error_set(err, VB_ERR_NETWORK, "platform unreachable");
    return VB_OK;
}

typedef struct fx {
    vb_jobs *jobs;
    firer f;
    vb_metrics *metrics;
} fx;

static int setup(void **state)
{
    VB_TEST_REDIS_FRESH(DB);
    fx *x = calloc(1, sizeof *x);
    vb_error err = {0};
    vb_jobs_opts o = {.redis_url = vb_test_redis_url(DB)};
    assert_int_equal(vb_jobs_new(&o, &x->jobs, &err), VB_OK);
    x->metrics = vb_metrics_new();
    *state = x;
    return 0;
}

static int teardown(void **state)
{
    fx *x = *state;
    if (x) {
        vb_jobs_free(x->jobs);
        vb_metrics_free(x->metrics);
        free(x);
    }
    return 0;
}

/* Creates a job directly in Redis (no secret key needed) and returns its
 * created_at in seconds. */
static long long make_job(fx *x, const char *schedule, const char *overlap, char id[VB_UUID_SIZE])
{
    vb_error err = {0};
    assert_int_equal(vb_crypto_uuid4(id, &err), VB_OK);
    char key[80], now[24];
    long long ms = vb_store_now_ms();
    snprintf(key, sizeof key, "visionbatch:job:%s", id);
    snprintf(now, sizeof now, "%lld", ms);
    const char *argv[] = {"HSET", key, "name", "t", "schedule", schedule, "timezone", "UTC",
                          "external_api_get_url", "https://a/x", "external_api_post_url",
                          "https://a/y", "organization_id", "o", "enabled", "1", "overlap",
                          overlap, "created_at", now, "updated_at", now};
    redisReply *r = vb__jobs_command(x->jobs, sizeof argv / sizeof argv[0], argv, NULL, &err);
    assert_non_null(r);
    freeReplyObject(r);
    const char *a2[] = {"SADD", "visionbatch:jobs", id};
    freeReplyObject(vb__jobs_command(x->jobs, 3, a2, NULL, &err));
    const char *a3[] = {"INCR", "visionbatch:jobs:version"};
    freeReplyObject(vb__jobs_command(x->jobs, 2, a3, NULL, &err));
    return ms / 1000;
}

static void set_last_tick(fx *x, const char *id, long long t)
{
    vb_error err = {0};
    char key[80], v[24];
    snprintf(key, sizeof key, "visionbatch:job:%s", id);
    snprintf(v, sizeof v, "%lld", t);
    const char *argv[] = {"HSET", key, "last_tick", v};
    redisReply *r = vb__jobs_command(x->jobs, 4, argv, NULL, &err);
    assert_non_null(r);
    freeReplyObject(r);
}

static vb_scheduler *sched(fx *x, const char *pid)
{
    vb_error err = {0};
    vb_scheduler_opts o = {
        .redis_url = vb_test_redis_url(DB),
        .producer_id = pid,
        .fire = fire_cb,
        .fire_ctx = &x->f,
        .metrics = x->metrics,
        .clock_ms = test_clock,
        .no_thread = 1,
    };
    vb_scheduler *s = vb_scheduler_start(&o, &err);
    if (!s)
        fail_msg("scheduler: %s", err.msg);
    return s;
}

static void step_ok(vb_scheduler *s)
{
    vb_error err = {0};
    vb_err rc = vb_scheduler_step(s, &err);
    if (rc != VB_OK)
        fail_msg("step: %s", err.msg);
}

static vb_exec_list execs(fx *x, const char *id)
{
    vb_exec_list l;
    vb_error err = {0};
    assert_int_equal(vb_jobs_exec_list(x->jobs, id, 1000, &l, &err), VB_OK);
    return l;
}

static size_t count_status(const vb_exec_list *l, const char *status, const char *reason)
{
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i].status, status) == 0 &&
            (!reason || strcmp(l->items[i].skip_reason ? l->items[i].skip_reason : "", reason) == 0))
            n++;
    return n;
}

/* The first whole minute (or hour) strictly after t. */
static long long next_boundary(long long t, long long unit)
{
    return (t / unit + 1) * unit;
}

/* ---- scheduler ---- */
static void last_ticks_are_read_in_one_batch(void **state)
{
    fx *x = *state;
    char ids[3][VB_UUID_SIZE], missing[VB_UUID_SIZE];
    for (int i = 0; i < 3; i++)
        make_job(x, "* * * * *", "skip", ids[i]);
    set_last_tick(x, ids[0], 1700000040);
    set_last_tick(x, ids[2], 1700000100);
    vb_error err = {0};
    assert_int_equal(vb_crypto_uuid4(missing, &err), VB_OK);
    const char *q[4] = {ids[0], ids[1], ids[2], missing};
    long long lasts[4] = {-1, -1, -1, -1};
    assert_int_equal(vb_jobs_exec_last_ticks(x->jobs, q, 4, lasts, &err), VB_OK);
    assert_int_equal(lasts[0], 1700000040);
    assert_int_equal(lasts[1], 0); /* never fired */
    assert_int_equal(lasts[2], 1700000100);
    assert_int_equal(lasts[3], 0); /* no such job */
    const char *bad[1] = {"nope"};
    assert_int_equal(vb_jobs_exec_last_ticks(x->jobs, bad, 1, lasts, &err), VB_ERR_INVALID);
    assert_int_equal(vb_jobs_exec_last_ticks(x->jobs, q, VB_JOBS_EXEC_TICKS_BATCH + 1, lasts,
                                             &err),
                     VB_ERR_INVALID);
}

static vb_scheduler *sched_with(fx *x, const char *pid, vb_scheduler_fire_fn fn, void *ctx)
{
    vb_error err = {0};
    vb_scheduler_opts o = {.redis_url = vb_test_redis_url(DB), .producer_id = pid,
                           .fire = fn, .fire_ctx = ctx, .metrics = x->metrics,
                           .clock_ms = test_clock, .no_thread = 1};
    vb_scheduler *s = vb_scheduler_start(&o, &err);
    if (!s)
        fail_msg("scheduler: %s", err.msg);
    return s;
}

/* A tick fires with the job as the scheduler last reloaded it; an update in
 * between bumps the version, so the next step reloads first. */
static void a_firing_uses_the_job_as_updated_before_the_step(void **state)
{
    fx *x = *state;
    char id[VB_UUID_SIZE], key[80];
    long long start = next_boundary(make_job(x, "* * * * *", "allow", id), 60);
    vb_scheduler *s = sched(x, "producer-a");
    clk = start * 1000 + 200;
    step_ok(s);
    assert_string_equal(x->f.last_url, "https://a/x");
    snprintf(key, sizeof key, "visionbatch:job:%s", id);
    vb_error err = {0};
    const char *set[] = {"HSET", key, "external_api_get_url", "https://b/x"};
    freeReplyObject(vb__jobs_command(x->jobs, 4, set, NULL, &err));
    const char *bump[] = {"INCR", "visionbatch:jobs:version"};
    freeReplyObject(vb__jobs_command(x->jobs, 2, bump, NULL, &err));
    clk = (start + 60) * 1000 + 200;
    step_ok(s);
    assert_int_equal(atomic_load(&x->f.calls), 2);
    assert_string_equal(x->f.last_url, "https://b/x");
    vb_scheduler_stop(s);
}

/* The last_tick a producer remembers goes stale when another producer
 * claims the next tick: b fires minute 1 (and remembers it), a fires minute
 * 2, then b looks at minute 2 with its stale value. b's claim is refused
 * (compare-and-set) with the current value, b recomputes and finds nothing
 * left: every tick fires once. */
static void a_stale_known_last_costs_a_conflict_not_a_second_firing(void **state)
{
    fx *x = *state;
    char ids[2][VB_UUID_SIZE];
    make_job(x, "* * * * *", "allow", ids[0]);
    long long start = next_boundary(make_job(x, "* * * * *", "allow", ids[1]), 60);
    firer fa, fb;
    memset(&fa, 0, sizeof fa);
    memset(&fb, 0, sizeof fb);
    vb_scheduler *a = sched_with(x, "producer-a", fire_cb, &fa);
    vb_scheduler *b = sched_with(x, "producer-b", fire_cb, &fb);
    clk = start * 1000 + 200;
    step_ok(b);
    assert_int_equal(atomic_load(&fb.calls), 2);
    clk = (start + 60) * 1000 + 200;
    step_ok(a); /* a read the last ticks itself: fresh */
    assert_int_equal(atomic_load(&fa.calls), 2);
    step_ok(b); /* b's are one minute old */
    assert_int_equal(atomic_load(&fb.calls), 2);
    clk = (start + 120) * 1000 + 200;
    step_ok(b); /* b learnt the current value from the refused claims */
    step_ok(a);
    assert_int_equal(atomic_load(&fa.calls) + atomic_load(&fb.calls), 6);
    for (int i = 0; i < 2; i++) {
        vb_exec_list l = execs(x, ids[i]);
        assert_int_equal(l.n, 3); /* one per minute, nothing "missed" */
        assert_int_equal(count_status(&l, "success", NULL), 3);
        vb_exec_list_free(&l);
    }
    vb_scheduler_stop(a);
    vb_scheduler_stop(b);
}

static void two_producers_fire_each_tick_exactly_once(void **state)
{
    fx *x = *state;
    char id[VB_UUID_SIZE];
    long long start = next_boundary(make_job(x, "* * * * *", "allow", id), 60);
    vb_scheduler *a = sched(x, "producer-a"), *b = sched(x, "producer-b");
    /* 5 simulated minutes, both producers stepping every 7 s, in turns */
    int turn = 0;
    for (long long t = start; t < start + 300; t += 7, turn++) {
        clk = t * 1000 + 300;
        step_ok(turn % 2 ? a : b);
        step_ok(turn % 2 ? b : a);
    }
    assert_int_equal(atomic_load(&x->f.calls), 5);
    vb_exec_list l = execs(x, id);
    assert_int_equal(l.n, 5);
    for (size_t i = 0; i < l.n; i++) {
        assert_string_equal(l.items[i].status, "success");
        assert_string_equal(l.items[i].output, "no unprocessed runs");
        /* newest first, one per minute */
        assert_int_equal(l.items[i].scheduled_for, (start + 60 * (long long)(4 - i)) * 1000);
    }
    vb_exec_list_free(&l);
    vb_scheduler_stop(a);
    vb_scheduler_stop(b);
}

static void tick_claim_is_exclusive(void **state)
{
    fx *x = *state;
    char id[VB_UUID_SIZE];
    long long start = next_boundary(make_job(x, "* * * * *", "allow", id), 60);
    vb_error err = {0};
    vb_exec_tick t = {.job_id = id, .expected_last = 0, .new_last = start, .fire_tick = start,
                      .now_ms = start * 1000};
    vb_exec_tick_result r1, r2;
    assert_int_equal(vb_jobs_exec_tick(x->jobs, &t, &r1, &err), VB_OK);
    assert_int_equal(vb_jobs_exec_tick(x->jobs, &t, &r2, &err), VB_OK);
    assert_int_equal(r1.code, VB_EXEC_TICK_DONE);
    assert_true(r1.fired);
    assert_int_equal(r2.code, VB_EXEC_TICK_CONFLICT);
    assert_false(r2.fired);
    long long last = 0;
    assert_int_equal(vb_jobs_exec_last_tick(x->jobs, id, &last, &err), VB_OK);
    assert_int_equal(last, start);
}

static void restart_inside_window_fires_the_missed_tick_once(void **state)
{
    fx *x = *state;
    char id[VB_UUID_SIZE];
    long long start = next_boundary(make_job(x, "* * * * *", "skip", id), 60);
    vb_scheduler *a = sched(x, "a");
    clk = (start + 1) * 1000;
    step_ok(a);
    assert_int_equal(atomic_load(&x->f.calls), 1);
    vb_scheduler_stop(a); /* down across the next tick */
    clk = (start + 90) * 1000; /* tick start+60 is 30 s old: inside the window */
    vb_scheduler *b = sched(x, "b");
    step_ok(b);
    step_ok(b);
    assert_int_equal(atomic_load(&x->f.calls), 2);
    vb_exec_list l = execs(x, id);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.items[0].scheduled_for, (start + 60) * 1000);
    assert_string_equal(l.items[0].status, "success");
    assert_int_equal(count_status(&l, "skipped", NULL), 0);
    vb_exec_list_free(&l);
    vb_scheduler_stop(b);
}

static void several_missed_ticks_fire_newest_and_record_one_missed(void **state)
{
    fx *x = *state;
    char id[VB_UUID_SIZE];
    long long start = next_boundary(make_job(x, "* * * * *", "skip", id), 60);
    set_last_tick(x, id, start);
    clk = (start + 4 * 60 + 30) * 1000; /* ticks +60 … +240 due, all in the window */
    vb_scheduler *s = sched(x, "a");
    step_ok(s);
    step_ok(s);
    assert_int_equal(atomic_load(&x->f.calls), 1);
    vb_exec_list l = execs(x, id);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.items[0].scheduled_for, (start + 240) * 1000); /* the newest fired */
    assert_string_equal(l.items[0].status, "success");
    assert_string_equal(l.items[1].status, "skipped");
    assert_string_equal(l.items[1].skip_reason, "missed");
    assert_int_equal(l.items[1].scheduled_for, (start + 180) * 1000);
    assert_non_null(strstr(l.items[1].output, "3 scheduled run(s)"));
    vb_exec_list_free(&l);
    const char *v[1] = {"missed"};
    assert_true(vb_metric_value(vb_metrics_counter(x->metrics, "visionbatch_scheduler_skips_total",
                                                   "", "reason"),
                                v) == 3.0);
    vb_scheduler_stop(s);
}

static void tick_outside_window_is_recorded_missed_not_fired(void **state)
{
    fx *x = *state;
    char id[VB_UUID_SIZE];
    long long h = next_boundary(make_job(x, "0 * * * *", "skip", id), 3600);
    set_last_tick(x, id, h);
    clk = (h + 2 * 3600 + 15 * 60) * 1000; /* ticks h+1h, h+2h: newest is 15 min old */
    vb_scheduler *s = sched(x, "a");
    step_ok(s);
    step_ok(s);
    assert_int_equal(atomic_load(&x->f.calls), 0);
    vb_exec_list l = execs(x, id);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].status, "skipped");
    assert_string_equal(l.items[0].skip_reason, "missed");
    assert_int_equal(l.items[0].scheduled_for, (h + 2 * 3600) * 1000);
    assert_non_null(strstr(l.items[0].output, "2 scheduled run(s)"));
    vb_exec_list_free(&l);
    /* the next tick fires normally */
    clk = (h + 3 * 3600 + 2) * 1000;
    step_ok(s);
    assert_int_equal(atomic_load(&x->f.calls), 1);
    vb_scheduler_stop(s);
}

static void three_hours_down_never_fires_a_storm(void **state)
{
    fx *x = *state;
    char id[VB_UUID_SIZE];
    long long h = next_boundary(make_job(x, "0 * * * *", "allow", id), 3600);
    set_last_tick(x, id, h);
    clk = (h + 3 * 3600 + 5 * 60) * 1000; /* h+3h is 5 min old: fires; h+1h, h+2h missed */
    vb_scheduler *a = sched(x, "a"), *b = sched(x, "b");
    for (int i = 0; i < 3; i++) {
        step_ok(a);
        step_ok(b);
    }
    assert_int_equal(atomic_load(&x->f.calls), 1);
    vb_exec_list l = execs(x, id);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.items[0].scheduled_for, (h + 3 * 3600) * 1000);
    assert_string_equal(l.items[1].skip_reason, "missed");
    vb_exec_list_free(&l);
    vb_scheduler_stop(a);
    vb_scheduler_stop(b);
}

static void never_fired_job_starts_at_its_creation(void **state)
{
    fx *x = *state;
    char id[VB_UUID_SIZE];
    long long created = make_job(x, "* * * * *", "skip", id);
    clk = (created + 10) * 1000;
    vb_scheduler *s = sched(x, "a");
    step_ok(s);
    /* at most the minute boundary between creation and now (if any) */
    vb_exec_list l = execs(x, id);
    assert_true(l.n <= 1);
    assert_int_equal(count_status(&l, "skipped", NULL), 0);
    vb_exec_list_free(&l);
    vb_scheduler_stop(s);
}

static void overlap_skip_records_the_tick_while_running(void **state)
{
    fx *x = *state;
    char id[VB_UUID_SIZE];
    long long start = next_boundary(make_job(x, "* * * * *", "skip", id), 60);
    x->f.publish = 1;
    vb_scheduler *s = sched(x, "a");
    clk = (start + 1) * 1000;
    step_ok(s);
    char first[VB_UUID_SIZE];
    memcpy(first, x->f.last_exec, sizeof first);
    clk = (start + 61) * 1000;
    step_ok(s);
    assert_int_equal(atomic_load(&x->f.calls), 1);
    vb_exec_list l = execs(x, id);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.items[0].status, "skipped");
    assert_string_equal(l.items[0].skip_reason, "overlap");
    assert_non_null(strstr(l.items[0].output, first));
    assert_int_equal(l.items[0].scheduled_for, (start + 60) * 1000);
    assert_string_equal(l.items[1].status, "running");
    vb_exec_list_free(&l);
    /* the run finishes: the next tick fires again */
    char run[64];
    snprintf(run, sizeof run, "RUN-%.8s-0", first);
    vb_error err = {0};
    assert_int_equal(vb_jobs_exec_run_done(x->jobs, first, run, VB_EXEC_RUN_OK, "b1", &err),
                     VB_OK);
    clk = (start + 121) * 1000;
    step_ok(s);
    assert_int_equal(atomic_load(&x->f.calls), 2);
    vb_exec e;
    assert_int_equal(vb_jobs_exec_get(x->jobs, first, &e, &err), VB_OK);
    assert_string_equal(e.status, "success");
    assert_string_equal(e.batch_id, "b1");
    vb_exec_free(&e);
    vb_scheduler_stop(s);
}

static void overlap_allow_runs_side_by_side(void **state)
{
    fx *x = *state;
    char id[VB_UUID_SIZE];
    long long start = next_boundary(make_job(x, "* * * * *", "allow", id), 60);
    x->f.publish = 1;
    vb_scheduler *s = sched(x, "a");
    clk = (start + 1) * 1000;
    step_ok(s);
    clk = (start + 61) * 1000;
    step_ok(s);
    assert_int_equal(atomic_load(&x->f.calls), 2);
    vb_exec_list l = execs(x, id);
    assert_int_equal(count_status(&l, "running", NULL), 2);
    vb_exec_list_free(&l);
    vb_scheduler_stop(s);
}

static void deactivate_stops_firing_and_activate_reports_paused(void **state)
{
    fx *x = *state;
    char id[VB_UUID_SIZE];
    vb_error err = {0};
    long long start = next_boundary(make_job(x, "* * * * *", "skip", id), 60);
    vb_scheduler *s = sched(x, "a");
    clk = (start + 1) * 1000;
    step_ok(s);
    assert_int_equal(atomic_load(&x->f.calls), 1);
    assert_int_equal(vb_jobs_set_enabled(x->jobs, id, 0, &err), VB_OK);
    for (int m = 1; m <= 3; m++) {
        clk = (start + 60 * m + 1) * 1000;
        step_ok(s);
    }
    assert_int_equal(atomic_load(&x->f.calls), 1);
    vb_exec_list l = execs(x, id);
    assert_int_equal(l.n, 1);
    vb_exec_list_free(&l);
    assert_int_equal(vb_jobs_set_enabled(x->jobs, id, 1, &err), VB_OK);
    clk = (start + 241) * 1000;
    step_ok(s);
    assert_int_equal(atomic_load(&x->f.calls), 2);
    l = execs(x, id);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.items[0].scheduled_for, (start + 240) * 1000);
    assert_string_equal(l.items[1].skip_reason, "paused");
    assert_non_null(strstr(l.items[1].output, "3 scheduled run(s)"));
    vb_exec_list_free(&l);
    vb_scheduler_stop(s);
}

static void deleted_job_stops_firing(void **state)
{
    fx *x = *state;
    char id[VB_UUID_SIZE];
    vb_error err = {0};
    long long start = next_boundary(make_job(x, "* * * * *", "skip", id), 60);
    vb_scheduler *s = sched(x, "a");
    clk = (start + 1) * 1000;
    step_ok(s);
    assert_int_equal(vb_jobs_delete(x->jobs, id, &err), VB_OK);
    clk = (start + 61) * 1000;
    step_ok(s);
    assert_int_equal(atomic_load(&x->f.calls), 1);
    redisReply *r = vb_test_redis(DB, "EXISTS visionbatch:job:%s", id);
    assert_non_null(r);
    assert_int_equal(r->integer, 0); /* nothing recreated the job's hash */
    freeReplyObject(r);
    vb_scheduler_stop(s);
}

static void fire_now_records_then_fires_and_respects_overlap(void **state)
{
    fx *x = *state;
    char id[VB_UUID_SIZE], e1[VB_UUID_SIZE], e2[VB_UUID_SIZE];
    vb_error err = {0};
    long long start = next_boundary(make_job(x, "0 0 1 1 *", "skip", id), 60);
    x->f.publish = 2;
    vb_scheduler *s = sched(x, "a");
    clk = start * 1000;
    assert_int_equal(vb_scheduler_fire_now(s, id, e1, &err), VB_OK);
    vb_exec e;
    assert_int_equal(vb_jobs_exec_get(x->jobs, e1, &e, &err), VB_OK);
    assert_string_equal(e.status, "running");
    assert_int_equal(e.scheduled_for, 0);
    vb_exec_free(&e);
    assert_int_equal(atomic_load(&x->f.calls), 0); /* asynchronous */
    step_ok(s);
    assert_int_equal(atomic_load(&x->f.calls), 1);
    assert_string_equal(x->f.last_exec, e1);
    assert_int_equal(vb_jobs_exec_get(x->jobs, e1, &e, &err), VB_OK);
    assert_int_equal(e.runs_found, 2);
    assert_int_equal(e.runs_published, 2);
    assert_string_equal(e.status, "running");
    vb_exec_free(&e);
    assert_int_equal(vb_scheduler_fire_now(s, id, e2, &err), VB_ERR_CONFLICT);
    assert_string_equal(e2, "");
    char bad[VB_UUID_SIZE];
    assert_int_equal(vb_crypto_uuid4(bad, &err), VB_OK);
    assert_int_equal(vb_scheduler_fire_now(s, bad, e2, &err), VB_ERR_NOT_FOUND);
    vb_scheduler_stop(s);
}

static void fire_error_without_publishing_ends_as_error(void **state)
{
    fx *x = *state;
    char id[VB_UUID_SIZE];
    long long start = next_boundary(make_job(x, "* * * * *", "skip", id), 60);
    x->f.fail = 1;
    vb_scheduler *s = sched(x, "a");
    clk = (start + 1) * 1000;
    step_ok(s);
    vb_exec_list l = execs(x, id);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].status, "error");
    assert_non_null(strstr(l.items[0].output, "platform unreachable"));
    assert_true(l.items[0].completed_at > 0);
    vb_exec_list_free(&l);
    vb_scheduler_stop(s);
}

static void thread_fires_a_manual_run_within_a_second(void **state)
{
    fx *x = *state;
    char id[VB_UUID_SIZE], e1[VB_UUID_SIZE];
    vb_error err = {0};
    make_job(x, "0 0 1 1 *", "skip", id);
    vb_scheduler_opts o = {.redis_url = vb_test_redis_url(DB), .fire = fire_cb,
                           .fire_ctx = &x->f};
    vb_scheduler *s = vb_scheduler_start(&o, &err);
    assert_non_null(s);
    assert_int_equal(vb_scheduler_fire_now(s, id, e1, &err), VB_OK);
    for (int i = 0; i < 300 && atomic_load(&x->f.calls) == 0; i++)
        usleep(10000);
    assert_int_equal(atomic_load(&x->f.calls), 1);
    vb_scheduler_stop(s);
    vb_exec e;
    assert_int_equal(vb_jobs_exec_get(x->jobs, e1, &e, &err), VB_OK);
    assert_string_equal(e.status, "success");
    vb_exec_free(&e);
    /* step is refused on a threaded scheduler */
    assert_int_equal(vb_scheduler_step(NULL, &err), VB_ERR_INVALID);
}

static void start_refuses_bad_options(void **state)
{
    vb_error err = {0};
    vb_scheduler_opts o = {.redis_url = vb_test_redis_url(DB)};
    assert_null(vb_scheduler_start(&o, &err)); /* no fire callback */
    assert_int_equal(err.code, VB_ERR_CONFIG);
    vb_error_clear(&err);
    o.fire = fire_cb;
    o.secret_key = "not base64!";
    assert_null(vb_scheduler_start(&o, &err));
    assert_int_equal(err.code, VB_ERR_CONFIG);
    vb_error_clear(&err);
    o.secret_key = KEY_B64;
    o.redis_url = "redis://127.0.0.1:1/0";
    assert_null(vb_scheduler_start(&o, &err));
    assert_int_equal(err.code, VB_ERR_REDIS);
}

/* ---- the firing pool ---- */

/* Counts firings per job and per slot; the first `gather` firings wait (up
 * to 5 s) until that many are in progress at once, which only happens when
 * they run on different threads. No cmocka asserts here: pool threads. */
typedef struct pool_firer {
    atomic_int calls, in_progress, max_in_progress, bad_slot, gathered;
    atomic_int per_slot[VB_SCHED_FIRE_THREADS_MAX];
    int nslots, gather;
} pool_firer;

static vb_err pool_fire_cb(void *ctx, const vb_job *job, const char *execution_id,
                           vb_fire_result *out, vb_error *err)
{
    (void)job;
    (void)execution_id;
    (void)err;
    pool_firer *f = ctx;
    if (out->slot < 0 || out->slot >= f->nslots || !out->jobs)
        atomic_fetch_add(&f->bad_slot, 1);
    else
        atomic_fetch_add(&f->per_slot[out->slot], 1);
    int now = atomic_fetch_add(&f->in_progress, 1) + 1;
    int max = atomic_load(&f->max_in_progress);
    while (now > max && !atomic_compare_exchange_weak(&f->max_in_progress, &max, now))
        ;
    if (atomic_load(&f->gathered) < f->gather) {
        atomic_fetch_add(&f->gathered, 1);
        for (int i = 0; i < 500 && atomic_load(&f->max_in_progress) < f->gather; i++)
            usleep(10000);
    }
    atomic_fetch_add(&f->calls, 1);
    atomic_fetch_sub(&f->in_progress, 1);
    return VB_OK;
}

static vb_scheduler *pool_sched(pool_firer *f, const char *pid, int threads)
{
    vb_error err = {0};
    vb_scheduler_opts o = {
        .redis_url = vb_test_redis_url(DB),
        .producer_id = pid,
        .fire = pool_fire_cb,
        .fire_ctx = f,
        .clock_ms = test_clock,
        .no_thread = 1,
        .fire_threads = threads,
    };
    vb_scheduler *s = vb_scheduler_start(&o, &err);
    if (!s)
        fail_msg("scheduler: %s", err.msg);
    return s;
}

/* Every job's executions: one per tick in [start, start + 60 * ticks). */
static void assert_one_success_per_tick(fx *x, char (*ids)[VB_UUID_SIZE], size_t n,
                                        long long start, int ticks)
{
    for (size_t k = 0; k < n; k++) {
        vb_exec_list l = execs(x, ids[k]);
        assert_int_equal(l.n, (size_t)ticks);
        for (size_t i = 0; i < l.n; i++) {
            assert_string_equal(l.items[i].status, "success");
            assert_int_equal(l.items[i].scheduled_for,
                             (start + 60 * (long long)(ticks - 1 - (int)i)) * 1000);
        }
        vb_exec_list_free(&l);
    }
}

#define POOL_JOBS 40

static void pool_fires_due_jobs_in_parallel_each_once(void **state)
{
    fx *x = *state;
    char ids[POOL_JOBS][VB_UUID_SIZE];
    long long created = 0;
    for (int i = 0; i < POOL_JOBS; i++)
        created = make_job(x, "* * * * *", "skip", ids[i]);
    long long start = next_boundary(created, 60);
    pool_firer f = {.nslots = 4, .gather = 4};
    vb_scheduler *s = pool_sched(&f, "producer-a", 4);
    for (int m = 0; m < 3; m++) {
        clk = (start + 60 * m) * 1000 + 500;
        step_ok(s);
        /* a pass returns only when all its firings are done */
        assert_int_equal(atomic_load(&f.calls), POOL_JOBS * (m + 1));
        assert_int_equal(atomic_load(&f.in_progress), 0);
        step_ok(s); /* nothing left in this minute */
        assert_int_equal(atomic_load(&f.calls), POOL_JOBS * (m + 1));
    }
    vb_scheduler_stop(s);
    assert_int_equal(atomic_load(&f.bad_slot), 0);
    assert_int_equal(atomic_load(&f.max_in_progress), 4); /* four at once, never more */
    int used = 0;
    for (int i = 0; i < 4; i++)
        used += atomic_load(&f.per_slot[i]) > 0;
    assert_int_equal(used, 4);
    assert_one_success_per_tick(x, ids, POOL_JOBS, start, 3);
}

typedef struct stepper {
    vb_scheduler *s;
    int steps;
    atomic_int failures;
} stepper;

static void *step_thread(void *arg)
{
    stepper *st = arg;
    for (int i = 0; i < st->steps; i++) {
        vb_error err = {0};
        if (vb_scheduler_step(st->s, &err) != VB_OK)
            atomic_fetch_add(&st->failures, 1);
    }
    return NULL;
}

/* Steps both producers at once, each on its own thread. */
static void race(stepper *a, stepper *b)
{
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, step_thread, a), 0);
    assert_int_equal(pthread_create(&tb, NULL, step_thread, b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(atomic_load(&a->failures) + atomic_load(&b->failures), 0);
}

static void two_producers_with_pools_racing_fire_each_tick_once(void **state)
{
    fx *x = *state;
    char ids[POOL_JOBS][VB_UUID_SIZE];
    long long created = 0;
    for (int i = 0; i < POOL_JOBS; i++)
        created = make_job(x, "* * * * *", "allow", ids[i]);
    long long start = next_boundary(created, 60);
    pool_firer f = {.nslots = 4};
    stepper a = {.s = pool_sched(&f, "producer-a", 4), .steps = 3};
    stepper b = {.s = pool_sched(&f, "producer-b", 4), .steps = 3};
    for (int m = 0; m < 2; m++) {
        clk = (start + 60 * m) * 1000 + 200;
        /* both producers, eight slots, all claiming the same 40 ticks at once */
        race(&a, &b);
        assert_int_equal(atomic_load(&f.calls), POOL_JOBS * (m + 1));
    }
    vb_scheduler_stop(a.s);
    vb_scheduler_stop(b.s);
    assert_int_equal(atomic_load(&f.bad_slot), 0);
    assert_one_success_per_tick(x, ids, POOL_JOBS, start, 2);
}

static void threaded_pool_fires_every_job_of_a_tick(void **state)
{
    fx *x = *state;
    char ids[POOL_JOBS][VB_UUID_SIZE];
    /* last_tick one tick ago: every job is due at once, on the real clock */
    long long now = vb_store_now_ms() / 1000;
    for (int i = 0; i < POOL_JOBS; i++) {
        make_job(x, "* * * * *", "skip", ids[i]);
        set_last_tick(x, ids[i], (now / 60) * 60 - 60);
    }
    pool_firer f = {.nslots = VB_SCHED_FIRE_THREADS_DEFAULT};
    vb_error err = {0};
    vb_scheduler_opts o = {.redis_url = vb_test_redis_url(DB), .fire = pool_fire_cb,
                           .fire_ctx = &f};
    vb_scheduler *s = vb_scheduler_start(&o, &err);
    assert_non_null(s);
    for (int i = 0; i < 500 && atomic_load(&f.calls) < POOL_JOBS; i++)
        usleep(10000);
    vb_scheduler_stop(s);
    assert_int_equal(atomic_load(&f.bad_slot), 0);
    /* one tick each (the current minute's; the clock cannot pass two minute
     * boundaries within the 5 s) */
    int calls = atomic_load(&f.calls);
    assert_true(calls == POOL_JOBS || calls == 2 * POOL_JOBS);
}

/* ---- round trips: what the scheduler's connections send, seen by MONITOR ---- */

typedef struct monitor {
    redisContext *c;
    pthread_t thread;
    char marker[64];
    int evals, others; /* commands of database DB from clients (not scripts) */
    int lua_reads;     /* HMGET / HGET / LRANGE run by scripts in database DB */
    char other[8][32];  /* the first few other command names */
    /* order of commands in database DB (1, 2, …): the last tick claim (a
     * script's HSET of last_tick), the first firing's end (a script's HSET
     * of "fired"), the first client HGET of last_tick (probe_fire_cb) */
    int seq, last_claim, first_end, first_probe;
    int done;
} monitor;

/* Counts the commands MONITOR reports for database DB until the marker
 * (an ECHO sent by monitor_stop) comes by. */
static void *monitor_thread(void *arg)
{
    monitor *m = arg;
    char db[16];
    snprintf(db, sizeof db, "[%d ", DB);
    void *reply = NULL;
    while (redisGetReply(m->c, &reply) == REDIS_OK) {
        redisReply *r = reply;
        const char *line = r->type == REDIS_REPLY_STATUS ? r->str : "";
        const char *p = strstr(line, db);
        if (strstr(line, m->marker)) {
            freeReplyObject(r);
            m->done = 1;
            break;
        }
        if (p)
            m->seq++;
        int in_lua = p && strncmp(p + strlen(db), "lua]", 4) == 0;
        if (in_lua &&
            (strstr(p, "] \"HMGET\"") || strstr(p, "] \"HGET\"") || strstr(p, "] \"LRANGE\"")))
            m->lua_reads++;
        if (in_lua && strstr(p, "] \"HSET\"") && strstr(p, "\"last_tick\""))
            m->last_claim = m->seq;
        if (in_lua && strstr(p, "] \"HSET\"") && strstr(p, "\"fired\" \"1\" \"runs_found\"") &&
            !m->first_end)
            m->first_end = m->seq;
        if (p && !in_lua && strstr(p, "] \"HGET\"") && strstr(p, "\"last_tick\"") &&
            !m->first_probe)
            m->first_probe = m->seq;
        if (p && strncmp(p + strlen(db), "lua]", 4) != 0) {
            const char *cmd = strchr(p, ']');
            cmd = cmd ? strchr(cmd, '"') : NULL;
            if (cmd && (strncmp(cmd, "\"EVALSHA\"", 9) == 0 || strncmp(cmd, "\"EVAL\"", 6) == 0)) {
                m->evals++;
            } else if (cmd) {
                if (m->others < 8)
                    snprintf(m->other[m->others], sizeof m->other[0], "%.31s", cmd);
                m->others++;
            }
        }
        freeReplyObject(r);
    }
    return NULL;
}

static redisContext *raw_connect(void)
{
    vb__redis_url u = vb_test_redis_base();
    redisContext *c = u.is_unix ? redisConnectUnix(u.path) : redisConnect(u.host, u.port);
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    if (u.password[0]) {
        redisReply *r = u.user[0] ? redisCommand(c, "AUTH %s %s", u.user, u.password)
                                  : redisCommand(c, "AUTH %s", u.password);
        assert_non_null(r);
        freeReplyObject(r);
    }
    vb__redis_url_clear(&u);
    return c;
}

static void monitor_start(monitor *m)
{
    memset(m, 0, sizeof *m);
    snprintf(m->marker, sizeof m->marker, "monitor-end-%d", (int)getpid());
    m->c = raw_connect();
    redisReply *r = redisCommand(m->c, "MONITOR");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    assert_int_equal(pthread_create(&m->thread, NULL, monitor_thread, m), 0);
}

static void monitor_stop(monitor *m)
{
    redisContext *c = raw_connect();
    redisReply *r = redisCommand(c, "ECHO %s", m->marker);
    assert_non_null(r);
    freeReplyObject(r);
    redisFree(c);
    pthread_join(m->thread, NULL);
    redisFree(m->c);
    assert_true(m->done); /* the marker came by: every command before it was seen */
}

#define BATCH_JOBS 250

/* BATCH_JOBS every-minute jobs; returns the last one's created_at (s). */
static long long make_batch(fx *x, char (*ids)[VB_UUID_SIZE])
{
    long long created = 0;
    for (int i = 0; i < BATCH_JOBS; i++)
        created = make_job(x, "* * * * *", "skip", ids[i]);
    return created;
}

/* A tick of 250 due jobs costs one script per VB_SCHED_CLAIM_BATCH claims
 * and one per VB_SCHED_END_BATCH firing records, and no command per job:
 * 10 + 16 scripts (25 / 16) and the version check, where one producer used
 * to send 2 scripts per job. */
static void a_pass_claims_and_records_in_batches(void **state)
{
    fx *x = *state;
    static char ids[BATCH_JOBS][VB_UUID_SIZE];
    long long created = make_batch(x, ids), start = next_boundary(created, 60);
    vb_scheduler *s = sched(x, "producer-a");
    /* before the first tick, and less than a minute before it so that the
     * expiry scan (once a minute) does not run again: loads the jobs and
     * reads their last ticks */
    clk = (created > start - 50 ? created : start - 50) * 1000;
    step_ok(s);
    assert_int_equal(atomic_load(&x->f.calls), 0);
    monitor m;
    monitor_start(&m);
    clk = start * 1000 + 200;
    step_ok(s);
    monitor_stop(&m);
    assert_int_equal(atomic_load(&x->f.calls), BATCH_JOBS);
    for (int i = 0; i < m.others && i < 8; i++)
        fprintf(stderr, "other command: %s\n", m.other[i]);
    assert_int_equal(m.others, 1); /* GET visionbatch:jobs:version */
    int per = (BATCH_JOBS + VB_SCHED_CLAIM_BATCH - 1) / VB_SCHED_CLAIM_BATCH +
              (BATCH_JOBS + VB_SCHED_END_BATCH - 1) / VB_SCHED_END_BATCH;
    assert_true(per > 2 && per < BATCH_JOBS / 8);
    assert_int_equal(m.evals, per);
    vb_scheduler_stop(s);
    assert_one_success_per_tick(x, ids, BATCH_JOBS, start, 1);
}

/* A firing that leaves a mark in Redis (an HGET of its job's last_tick over
 * the slot's own connection), so MONITOR shows when firings happen. */
static vb_err probe_fire_cb(void *ctx, const vb_job *job, const char *execution_id,
                            vb_fire_result *out, vb_error *err)
{
    long long last = 0;
    if (vb_jobs_exec_last_tick(out->jobs, job->job_id, &last, err) != VB_OK)
        return VB_ERR_REDIS;
    return pool_fire_cb(ctx, job, execution_id, out, err);
}

#define HOLD_JOBS 1000

/* While a pass still claims ticks, the firing slots fire what is claimed
 * but hold the firings' ends: Redis runs one script at a time, and an end
 * written then would delay the claims of the jobs still waiting, which is
 * the schedule lag. Seen by MONITOR: firings happen among the claim
 * scripts, every end is written after the last claim. */
static void firing_ends_wait_until_the_pass_has_claimed_every_tick(void **state)
{
    fx *x = *state;
    static char ids[HOLD_JOBS][VB_UUID_SIZE];
    long long created = 0;
    for (int i = 0; i < HOLD_JOBS; i++)
        created = make_job(x, "* * * * *", "skip", ids[i]);
    long long start = next_boundary(created, 60);
    pool_firer f = {.nslots = 4};
    vb_error err = {0};
    vb_scheduler_opts o = {.redis_url = vb_test_redis_url(DB), .producer_id = "producer-a",
                           .fire = probe_fire_cb, .fire_ctx = &f, .clock_ms = test_clock,
                           .no_thread = 1, .fire_threads = 4};
    vb_scheduler *s = vb_scheduler_start(&o, &err);
    if (!s)
        fail_msg("scheduler: %s", err.msg);
    clk = (created > start - 50 ? created : start - 50) * 1000;
    step_ok(s); /* loads the jobs and their last ticks */
    monitor m;
    monitor_start(&m);
    clk = start * 1000 + 200;
    step_ok(s);
    monitor_stop(&m);
    vb_scheduler_stop(s);
    assert_int_equal(atomic_load(&f.calls), HOLD_JOBS);
    fprintf(stderr, "commands: first firing #%d, last claim #%d, first end #%d of %d\n",
            m.first_probe, m.last_claim, m.first_end, m.seq);
    assert_true(m.first_probe > 0 && m.last_claim > 0 && m.first_end > 0);
    assert_true(m.first_probe < m.last_claim); /* firings overlapped the claims */
    assert_true(m.first_end > m.last_claim);   /* no end written before the last claim */
    assert_one_success_per_tick(x, ids, HOLD_JOBS, start, 1);
}

/* At INFO a pass logs one summary line; a firing logs a line of its own
 * only when it found runs (or failed): 10,000 jobs that find nothing do not
 * write 10,000 lines a minute. */
static void firings_that_find_nothing_log_only_the_pass_summary(void **state)
{
    fx *x = *state;
    char dir[] = "/tmp/vb_test_sched_log_XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/out.log", dir);
    char ids[3][VB_UUID_SIZE];
    long long created = 0;
    for (int i = 0; i < 3; i++)
        created = make_job(x, "* * * * *", "allow", ids[i]);
    long long start = next_boundary(created, 60);
    vb_log_open(path, VB_LOG_TEXT, VB_LOG_INFO);
    vb_log_set_stderr(0);
    vb_scheduler *s = sched(x, "producer-a");
    x->f.publish = 0;
    clk = start * 1000 + 100;
    step_ok(s);
    x->f.publish = 1;
    clk = (start + 60) * 1000 + 100;
    step_ok(s);
    vb_scheduler_stop(s);
    vb_log_open(NULL, VB_LOG_TEXT, VB_LOG_INFO);
    vb_log_set_stderr(1);
    assert_int_equal(atomic_load(&x->f.calls), 6);
    assert_int_equal(tu_lines_with(path, "3 scheduled execution(s) fired in"), 2);
    assert_int_equal(tu_lines_with(path, "no unprocessed runs"), 0);
    assert_int_equal(tu_lines_with(path, "fired status=running found 1 runs"), 3);
    unlink(path);
    rmdir(dir);
}

/* The overlap rule reads the job's running index, not its execution list:
 * with 60 executions on the list, a tick of an overlap-"skip" job costs a
 * handful of reads in Redis, where walking the list cost 61. */
static void overlap_check_does_not_walk_the_execution_list(void **state)
{
    fx *x = *state;
    char id[VB_UUID_SIZE];
    long long start = next_boundary(make_job(x, "* * * * *", "skip", id), 60);
    vb_scheduler *s = sched(x, "producer-a");
    for (int m = 0; m < 60; m++) {
        clk = (start + 60 * m) * 1000 + 200;
        step_ok(s);
    }
    assert_int_equal(atomic_load(&x->f.calls), 60);
    monitor mon;
    monitor_start(&mon);
    clk = (start + 60 * 60) * 1000 + 200;
    step_ok(s);
    monitor_stop(&mon);
    assert_int_equal(atomic_load(&x->f.calls), 61);
    fprintf(stderr, "reads inside scripts for one tick: %d\n", mon.lua_reads);
    assert_true(mon.lua_reads <= 8);
    vb_scheduler_stop(s);
}

/* An execution recorded running before the job had a running index (its
 * index and marker removed here) still blocks an overlap-"skip" tick: the
 * first check indexes the job's list. */
static void running_execution_without_index_still_blocks(void **state)
{
    fx *x = *state;
    char id[VB_UUID_SIZE], key[80], idx[96];
    long long start = next_boundary(make_job(x, "* * * * *", "skip", id), 60);
    x->f.publish = 1; /* the execution stays running until its run is done */
    vb_scheduler *s = sched(x, "producer-a");
    clk = start * 1000 + 200;
    step_ok(s);
    snprintf(key, sizeof key, "visionbatch:job:%s", id);
    snprintf(idx, sizeof idx, "%s:running", key);
    vb_error err = {0};
    const char *del[] = {"DEL", idx};
    freeReplyObject(vb__jobs_command(x->jobs, 2, del, NULL, &err));
    const char *hdel[] = {"HDEL", key, "running_idx"};
    freeReplyObject(vb__jobs_command(x->jobs, 3, hdel, NULL, &err));
    clk = (start + 60) * 1000 + 200;
    step_ok(s);
    assert_int_equal(atomic_load(&x->f.calls), 1);
    vb_exec_list l = execs(x, id);
    assert_int_equal(l.n, 2);
    assert_int_equal(count_status(&l, "skipped", "overlap"), 1);
    assert_int_equal(count_status(&l, "running", NULL), 1);
    vb_exec_list_free(&l);
    vb_scheduler_stop(s);
}

/* Two producers with four firing slots each race over the same 250 due
 * jobs for three minutes: every tick fires exactly once. (How they share
 * the ticks depends on which thread runs first, so it is printed, not
 * asserted.) */
static void two_producers_split_a_batch_and_fire_each_tick_once(void **state)
{
    fx *x = *state;
    static char ids[BATCH_JOBS][VB_UUID_SIZE];
    long long created = make_batch(x, ids), start = next_boundary(created, 60);
    pool_firer fa = {.nslots = 4}, fb = {.nslots = 4};
    stepper a = {.s = pool_sched(&fa, "producer-a", 4), .steps = 2};
    stepper b = {.s = pool_sched(&fb, "producer-b", 4), .steps = 2};
    for (int m = 0; m < 3; m++) {
        clk = (start + 60 * m) * 1000 + 200;
        race(&a, &b);
        assert_int_equal(atomic_load(&fa.calls) + atomic_load(&fb.calls), BATCH_JOBS * (m + 1));
    }
    vb_scheduler_stop(a.s);
    vb_scheduler_stop(b.s);
    fprintf(stderr, "producer a fired %d, b fired %d\n", atomic_load(&fa.calls),
            atomic_load(&fb.calls));
    assert_int_equal(atomic_load(&fa.bad_slot) + atomic_load(&fb.bad_slot), 0);
    assert_one_success_per_tick(x, ids, BATCH_JOBS, start, 3);
}

/* jitter_s: a fixed offset per job in [0, jitter_s], the same in every
 * producer; the tick fires once the offset has passed, never before, and
 * scheduled_for includes the offset. */
static void jitter_delays_each_job_by_its_own_offset_within_bounds(void **state)
{
    fx *x = *state;
    char ids[20][VB_UUID_SIZE], key[80];
    long long created = 0;
    long offs[20], distinct = 0;
    for (int i = 0; i < 20; i++) {
        created = make_job(x, "* * * * *", "allow", ids[i]);
        snprintf(key, sizeof key, "visionbatch:job:%.36s", ids[i]);
        vb_error err = {0};
        const char *set[] = {"HSET", key, "jitter_s", "30"};
        freeReplyObject(vb__jobs_command(x->jobs, 4, set, NULL, &err));
        vb_job j;
        assert_int_equal(vb_jobs_get(x->jobs, ids[i], &j, &err), VB_OK);
        assert_int_equal(j.jitter_s, 30);
        offs[i] = vb_job_jitter_ms(&j);
        assert_int_equal(offs[i], vb_job_jitter_ms(&j)); /* deterministic */
        assert_true(offs[i] >= 0 && offs[i] <= 30000);
        j.jitter_s = 0;
        assert_int_equal(vb_job_jitter_ms(&j), 0);
        vb_job_free(&j);
        int seen = 0;
        for (int k = 0; k < i; k++)
            seen |= offs[k] == offs[i];
        distinct += !seen;
    }
    assert_true(distinct >= 15); /* spread, not one offset for all */
    const char *bump[] = {"INCR", "visionbatch:jobs:version"};
    vb_error err = {0};
    freeReplyObject(vb__jobs_command(x->jobs, 2, bump, NULL, &err));
    long long start = next_boundary(created, 60);
    vb_scheduler *s = sched(x, "producer-a");
    /* step through the minute every 500 ms of fake time: each job fires in
     * the first step at or after its offset */
    long long fired_at[20] = {0};
    for (long long t = start * 1000; t < start * 1000 + 31000; t += 500) {
        clk = t;
        step_ok(s);
        for (int i = 0; i < 20; i++) {
            if (fired_at[i])
                continue;
            vb_exec_list l = execs(x, ids[i]);
            if (l.n)
                fired_at[i] = t;
            vb_exec_list_free(&l);
        }
    }
    assert_int_equal(atomic_load(&x->f.calls), 20);
    for (int i = 0; i < 20; i++) {
        long long due = start * 1000 + offs[i];
        assert_true(fired_at[i] >= due);       /* never early */
        assert_true(fired_at[i] < due + 500);  /* at the first step after the offset */
        vb_exec_list l = execs(x, ids[i]);
        assert_int_equal(l.n, 1);
        assert_int_equal(l.items[0].scheduled_for, due);
        assert_int_equal(l.items[0].started_at, fired_at[i]);
        vb_exec_list_free(&l);
    }
    vb_scheduler_stop(s);
}

static void start_refuses_bad_fire_threads(void **state)
{
    (void)state;
    pool_firer f = {.nslots = 1};
    vb_error err = {0};
    vb_scheduler_opts o = {.redis_url = vb_test_redis_url(DB), .fire = pool_fire_cb,
                           .fire_ctx = &f, .no_thread = 1, .fire_threads = -1};
    assert_null(vb_scheduler_start(&o, &err));
    assert_int_equal(err.code, VB_ERR_CONFIG);
    o.fire_threads = VB_SCHED_FIRE_THREADS_MAX + 1;
    vb_error_clear(&err);
    assert_null(vb_scheduler_start(&o, &err));
    assert_int_equal(err.code, VB_ERR_CONFIG);
    o.fire_threads = VB_SCHED_FIRE_THREADS_MAX;
    vb_scheduler *s = vb_scheduler_start(&o, &err);
    assert_non_null(s);
    vb_scheduler_stop(s);
}

/* ---- execution completion ---- */

static void manual_exec(fx *x, char id[VB_UUID_SIZE], char exec[VB_UUID_SIZE], int published)
{
    vb_error err = {0};
    make_job(x, "0 0 1 1 *", "allow", id);
    assert_int_equal(vb_jobs_exec_start_manual(x->jobs, id, "p", 1000, 0, exec, &err), VB_OK);
    for (int i = 0; i < published; i++) {
        char run[16];
        snprintf(run, sizeof run, "r%d", i);
        assert_int_equal(vb_jobs_exec_add_published(x->jobs, exec, run, &err), VB_OK);
    }
}

static void status_of(fx *x, const char *exec, const char *want)
{
    vb_exec e;
    vb_error err = {0};
    assert_int_equal(vb_jobs_exec_get(x->jobs, exec, &e, &err), VB_OK);
    assert_string_equal(e.status, want);
    vb_exec_free(&e);
}

static void two_ok_one_failed_is_partial_and_duplicates_count_once(void **state)
{
    fx *x = *state;
    char id[VB_UUID_SIZE], ex[VB_UUID_SIZE], st[16];
    vb_error err = {0};
    manual_exec(x, id, ex, 3);
    assert_int_equal(vb_jobs_exec_fire_done(x->jobs, ex, 3, 0, 0, "found 3", 0, 2000, st, &err),
                     VB_OK);
    assert_string_equal(st, "running");
    assert_int_equal(vb_jobs_exec_run_done_at(x->jobs, ex, "r0", VB_EXEC_RUN_OK, "b0", 3000, st,
                                              &err),
                     VB_OK);
    assert_string_equal(st, "running");
    /* the same report again (a redelivered message) changes nothing */
    assert_int_equal(vb_jobs_exec_run_done_at(x->jobs, ex, "R0", VB_EXEC_RUN_OK, "b0", 3000, st,
                                              &err),
                     VB_OK);
    assert_string_equal(st, "");
    assert_int_equal(vb_jobs_exec_run_done_at(x->jobs, ex, "r0", VB_EXEC_RUN_FAILED, "", 3000, st,
                                              &err),
                     VB_OK);
    assert_int_equal(vb_jobs_exec_run_done_at(x->jobs, ex, "r1", VB_EXEC_RUN_OK, "b1", 3000, st,
                                              &err),
                     VB_OK);
    status_of(x, ex, "running");
    assert_int_equal(vb_jobs_exec_run_done_at(x->jobs, ex, "r2", VB_EXEC_RUN_FAILED, "b2", 4000,
                                              st, &err),
                     VB_OK);
    assert_string_equal(st, "partial");
    vb_exec e;
    assert_int_equal(vb_jobs_exec_get(x->jobs, ex, &e, &err), VB_OK);
    assert_string_equal(e.batch_id, "b0,b1,b2");
    assert_int_equal(e.completed_at, 4000);
    assert_int_equal(e.runs_published, 3);
    assert_string_equal(e.output, "found 3; 2 succeeded, 1 failed");
    vb_exec_free(&e);
    /* a late duplicate after completion changes nothing either */
    assert_int_equal(vb_jobs_exec_run_done_at(x->jobs, ex, "r2", VB_EXEC_RUN_OK, "", 5000, st,
                                              &err),
                     VB_OK);
    status_of(x, ex, "partial");
}

static void all_ok_is_success_all_failed_is_failed(void **state)
{
    fx *x = *state;
    char id[VB_UUID_SIZE], ex[VB_UUID_SIZE], ex2[VB_UUID_SIZE], st[16];
    vb_error err = {0};
    manual_exec(x, id, ex, 2);
    assert_int_equal(vb_jobs_exec_fire_done(x->jobs, ex, 2, 0, 0, "", 0, 2000, st, &err), VB_OK);
    vb_jobs_exec_run_done(x->jobs, ex, "r0", VB_EXEC_RUN_OK, NULL, &err);
    vb_jobs_exec_run_done(x->jobs, ex, "r1", VB_EXEC_RUN_OK, NULL, &err);
    status_of(x, ex, "success");
    manual_exec(x, id, ex2, 2);
    assert_int_equal(vb_jobs_exec_fire_done(x->jobs, ex2, 2, 0, 0, "", 0, 2000, st, &err), VB_OK);
    vb_jobs_exec_run_done(x->jobs, ex2, "r0", VB_EXEC_RUN_FAILED, NULL, &err);
    vb_jobs_exec_run_done(x->jobs, ex2, "r1", VB_EXEC_RUN_FAILED, NULL, &err);
    status_of(x, ex2, "failed");
}

static void runs_finished_before_firing_ends_are_counted(void **state)
{
    fx *x = *state;
    char id[VB_UUID_SIZE], ex[VB_UUID_SIZE], st[16];
    vb_error err = {0};
    manual_exec(x, id, ex, 1);
    /* r0 finishes while the producer is still publishing: no early success */
    assert_int_equal(vb_jobs_exec_run_done_at(x->jobs, ex, "r0", VB_EXEC_RUN_OK, "", 1500, st,
                                              &err),
                     VB_OK);
    assert_string_equal(st, "running");
    /* r1 is reported done even before the producer counted it published */
    assert_int_equal(vb_jobs_exec_run_done_at(x->jobs, ex, "r1", VB_EXEC_RUN_FAILED, "", 1600, st,
                                              &err),
                     VB_OK);
    assert_int_equal(vb_jobs_exec_add_published(x->jobs, ex, "r1", &err), VB_OK);
    assert_int_equal(vb_jobs_exec_add_published(x->jobs, ex, "r1", &err), VB_OK); /* once */
    status_of(x, ex, "running");
    assert_int_equal(vb_jobs_exec_fire_done(x->jobs, ex, 2, 0, 0, "", 0, 2000, st, &err), VB_OK);
    assert_string_equal(st, "partial");
    vb_exec e;
    assert_int_equal(vb_jobs_exec_get(x->jobs, ex, &e, &err), VB_OK);
    assert_int_equal(e.runs_published, 2);
    vb_exec_free(&e);
}

static void nothing_published_ends_at_once(void **state)
{
    fx *x = *state;
    char id[VB_UUID_SIZE], ex[VB_UUID_SIZE], ex2[VB_UUID_SIZE], st[16];
    vb_error err = {0};
    manual_exec(x, id, ex, 0);
    assert_int_equal(vb_jobs_exec_fire_done(x->jobs, ex, 4, 3, 1, "found 4", 0, 2000, st, &err),
                     VB_OK);
    assert_string_equal(st, "success");
    vb_exec e;
    assert_int_equal(vb_jobs_exec_get(x->jobs, ex, &e, &err), VB_OK);
    assert_int_equal(e.runs_found, 4);
    assert_int_equal(e.runs_skipped_in_progress, 3);
    assert_int_equal(e.runs_skipped_other_org, 1);
    assert_int_equal(e.completed_at, 2000);
    vb_exec_free(&e);
    manual_exec(x, id, ex2, 0);
    assert_int_equal(vb_jobs_exec_fire_done(x->jobs, ex2, 0, 0, 0, "boom", 1, 2000, st, &err),
                     VB_OK);
    assert_string_equal(st, "error");
}

static void expire_turns_stuck_executions_into_timeout_and_error(void **state)
{
    fx *x = *state;
    char id[VB_UUID_SIZE], ex[VB_UUID_SIZE], ex2[VB_UUID_SIZE], st[16];
    vb_error err = {0};
    size_t n = 9;
    manual_exec(x, id, ex, 1); /* started at 1000 ms */
    assert_int_equal(vb_jobs_exec_fire_done(x->jobs, ex, 1, 0, 0, "", 0, 2000, st, &err), VB_OK);
    manual_exec(x, id, ex2, 1); /* firing never finishes: its producer died */
    assert_int_equal(vb_jobs_exec_expire(x->jobs, 1000 + 899 * 1000, 0, 0, &n, &err), VB_OK);
    assert_int_equal(n, 0);
    assert_int_equal(vb_jobs_exec_expire(x->jobs, 1000 + 900 * 1000, 0, 0, &n, &err), VB_OK);
    assert_int_equal(n, 1);
    status_of(x, ex2, "error");
    status_of(x, ex, "running");
    assert_int_equal(vb_jobs_exec_expire(x->jobs, 1000 + 7200 * 1000, 0, 0, &n, &err), VB_OK);
    assert_int_equal(n, 1);
    status_of(x, ex, "timeout");
    /* a late report does not revive it */
    assert_int_equal(vb_jobs_exec_run_done_at(x->jobs, ex, "r0", VB_EXEC_RUN_OK, "", 9999999, st,
                                              &err),
                     VB_OK);
    status_of(x, ex, "timeout");
}

static long long zcard(fx *x, const char *key)
{
    vb_error err = {0};
    const char *argv[] = {"ZCARD", key};
    redisReply *r = vb__jobs_command(x->jobs, 2, argv, NULL, &err);
    assert_non_null(r);
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

/* Every way an execution settles takes it off the running set and off its
 * job's running index, so the overlap rule usually finds the index empty.
 * A running execution's record holds no zero counts: they read as 0. */
static void settled_executions_leave_the_running_index(void **state)
{
    fx *x = *state;
    char id[VB_UUID_SIZE], ex[4][VB_UUID_SIZE], st[16], idx[96];
    vb_error err = {0};
    make_job(x, "0 0 1 1 *", "allow", id);
    snprintf(idx, sizeof idx, "visionbatch:job:%s:running", id);
    for (int i = 0; i < 4; i++)
        assert_int_equal(vb_jobs_exec_start_manual(x->jobs, id, "p", 1000, 0, ex[i], &err),
                         VB_OK);
    assert_int_equal(zcard(x, idx), 4);
    assert_int_equal(zcard(x, "visionbatch:execs:running"), 4);
    vb_exec e;
    assert_int_equal(vb_jobs_exec_get(x->jobs, ex[0], &e, &err), VB_OK);
    assert_string_equal(e.status, "running");
    assert_int_equal(e.started_at, 1000);
    assert_int_equal(e.completed_at + e.runs_found + e.runs_published + e.runs_succeeded +
                         e.runs_failed + e.runs_skipped_in_progress + e.runs_skipped_other_org,
                     0);
    assert_null(e.output);
    vb_exec_free(&e);
    char key[96];
    snprintf(key, sizeof key, "visionbatch:exec:%s", ex[0]);
    const char *hlen[] = {"HLEN", key};
    redisReply *r = vb__jobs_command(x->jobs, 2, hlen, NULL, &err);
    assert_non_null(r);
    assert_int_equal(r->integer, 6); /* id, job, status, started, scheduled, producer */
    freeReplyObject(r);

    /* success: nothing published */
    assert_int_equal(vb_jobs_exec_fire_done(x->jobs, ex[0], 0, 0, 0, "", 0, 2000, st, &err),
                     VB_OK);
    assert_string_equal(st, "success");
    assert_int_equal(zcard(x, idx), 3);
    /* error: the firing failed */
    assert_int_equal(vb_jobs_exec_fire_done(x->jobs, ex[1], 0, 0, 0, "boom", 1, 2000, st, &err),
                     VB_OK);
    assert_string_equal(st, "error");
    assert_int_equal(zcard(x, idx), 2);
    /* failed: its one run was reported dead */
    assert_int_equal(vb_jobs_exec_add_published(x->jobs, ex[2], "r0", &err), VB_OK);
    assert_int_equal(vb_jobs_exec_fire_done(x->jobs, ex[2], 1, 0, 0, "", 0, 2000, st, &err),
                     VB_OK);
    assert_string_equal(st, "running");
    assert_int_equal(zcard(x, idx), 2);
    assert_int_equal(vb_jobs_exec_run_done_at(x->jobs, ex[2], "r0", VB_EXEC_RUN_FAILED, "", 3000,
                                              st, &err),
                     VB_OK);
    assert_string_equal(st, "failed");
    assert_int_equal(zcard(x, idx), 1);
    /* timeout: the last one never finishes */
    size_t n = 0;
    assert_int_equal(vb_jobs_exec_expire(x->jobs, 1000 + 7200 * 1000, 0, 0, &n, &err), VB_OK);
    assert_int_equal(n, 1);
    status_of(x, ex[3], "error"); /* its firing never ended */
    assert_int_equal(zcard(x, idx), 0);
    assert_int_equal(zcard(x, "visionbatch:execs:running"), 0);
}

/* Trimming a job's oldest execution while it still runs takes it off the
 * running set and the job's running index too. */
static void a_trimmed_running_execution_leaves_the_indexes(void **state)
{
    fx *x = *state;
    char id[VB_UUID_SIZE], ex[4][VB_UUID_SIZE], idx[96];
    vb_error err = {0};
    vb_jobs *j2 = NULL;
    vb_jobs_opts o = {.redis_url = vb_test_redis_url(DB), .exec_cap = 2};
    assert_int_equal(vb_jobs_new(&o, &j2, &err), VB_OK);
    make_job(x, "0 0 1 1 *", "allow", id);
    snprintf(idx, sizeof idx, "visionbatch:job:%s:running", id);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(vb_jobs_exec_start_manual(j2, id, "p", 1000 + i, 0, ex[i], &err), VB_OK);
        assert_int_equal(zcard(x, idx), i < 2 ? i + 1 : 2);
        assert_int_equal(zcard(x, "visionbatch:execs:running"), i < 2 ? i + 1 : 2);
    }
    vb_exec e;
    assert_int_equal(vb_jobs_exec_get(j2, ex[1], &e, &err), VB_ERR_NOT_FOUND);
    assert_int_equal(vb_jobs_exec_get(j2, ex[2], &e, &err), VB_OK);
    vb_exec_free(&e);
    vb_jobs_free(j2);
}

static void a_stale_running_execution_no_longer_blocks(void **state)
{
    fx *x = *state;
    char id[VB_UUID_SIZE], ex[VB_UUID_SIZE], ex2[VB_UUID_SIZE];
    vb_error err = {0};
    make_job(x, "0 0 1 1 *", "skip", id);
    assert_int_equal(vb_jobs_exec_start_manual(x->jobs, id, "p", 1000, 0, ex, &err), VB_OK);
    assert_int_equal(vb_jobs_exec_start_manual(x->jobs, id, "p", 2000, 0, ex2, &err),
                     VB_ERR_CONFLICT);
    assert_int_equal(vb_jobs_exec_start_manual(x->jobs, id, "p", 1000 + 7201 * 1000, 0, ex2, &err),
                     VB_OK);
}

static void run_done_rejects_bad_input_and_unknown_executions(void **state)
{
    fx *x = *state;
    char ex[VB_UUID_SIZE];
    vb_error err = {0};
    assert_int_equal(vb_crypto_uuid4(ex, &err), VB_OK);
    assert_int_equal(vb_jobs_exec_run_done(x->jobs, ex, "r0", VB_EXEC_RUN_OK, "", &err),
                     VB_ERR_NOT_FOUND);
    assert_int_equal(vb_jobs_exec_run_done(x->jobs, ex, "bad id", VB_EXEC_RUN_OK, "", &err),
                     VB_ERR_INVALID);
    assert_int_equal(vb_jobs_exec_run_done(x->jobs, ex, "r0", 7, "", &err), VB_ERR_INVALID);
    assert_int_equal(vb_jobs_exec_run_done(x->jobs, "nope", "r0", 0, "", &err), VB_ERR_NOT_FOUND);
    assert_int_equal(vb_jobs_exec_add_published(x->jobs, ex, "r0", &err), VB_ERR_NOT_FOUND);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(two_producers_fire_each_tick_exactly_once),
        T(last_ticks_are_read_in_one_batch),
        T(a_stale_known_last_costs_a_conflict_not_a_second_firing),
        T(a_firing_uses_the_job_as_updated_before_the_step),
        T(tick_claim_is_exclusive),
        T(restart_inside_window_fires_the_missed_tick_once),
        T(several_missed_ticks_fire_newest_and_record_one_missed),
        T(tick_outside_window_is_recorded_missed_not_fired),
        T(three_hours_down_never_fires_a_storm),
        T(never_fired_job_starts_at_its_creation),
        T(overlap_skip_records_the_tick_while_running),
        T(overlap_allow_runs_side_by_side),
        T(deactivate_stops_firing_and_activate_reports_paused),
        T(deleted_job_stops_firing),
        T(fire_now_records_then_fires_and_respects_overlap),
        T(fire_error_without_publishing_ends_as_error),
        T(thread_fires_a_manual_run_within_a_second),
        T(start_refuses_bad_options),
        T(pool_fires_due_jobs_in_parallel_each_once),
        T(two_producers_with_pools_racing_fire_each_tick_once),
        T(threaded_pool_fires_every_job_of_a_tick),
        T(start_refuses_bad_fire_threads),
        T(a_pass_claims_and_records_in_batches),
        T(firing_ends_wait_until_the_pass_has_claimed_every_tick),
        T(firings_that_find_nothing_log_only_the_pass_summary),
        T(two_producers_split_a_batch_and_fire_each_tick_once),
        T(overlap_check_does_not_walk_the_execution_list),
        T(running_execution_without_index_still_blocks),
        T(jitter_delays_each_job_by_its_own_offset_within_bounds),
        T(two_ok_one_failed_is_partial_and_duplicates_count_once),
        T(all_ok_is_success_all_failed_is_failed),
        T(runs_finished_before_firing_ends_are_counted),
        T(nothing_published_ends_at_once),
        T(expire_turns_stuck_executions_into_timeout_and_error),
        T(settled_executions_leave_the_running_index),
        T(a_trimmed_running_execution_leaves_the_indexes),
        T(a_stale_running_execution_no_longer_blocks),
        T(run_done_rejects_bad_input_and_unknown_executions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
