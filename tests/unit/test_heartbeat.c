/*
 * Tests of heartbeat.c (workers' heartbeats) and of the worker's heartbeat
 * thread (worker/heartbeat.c) against a real Redis ($REDIS_URL, database 9,
 * flushed before each test).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "heartbeat.h" /* worker/ */
#include "redis_test_url.h"
#include "visionbatch/heartbeat.h"

#define DB 9

static int setup(void **state)
{
    (void)state;
    if (vb_test_redis_flush(DB) != 0) {
        const char *allow = getenv("VB_ALLOW_NO_REDIS");
        if (allow && strcmp(allow, "1") == 0)
            return 0;
        fprintf(stderr, "Redis unreachable at %s\n", vb_test_redis_url(DB));
        return -1;
    }
    return 0;
}

static vb_heartbeat *open_hb(void)
{
    if (vb_test_redis_flush(DB) != 0)
        skip();
    vb_heartbeat *h = NULL;
    vb_error err = {0};
    assert_int_equal(vb_heartbeat_new(vb_test_redis_url(DB), &h, &err), VB_OK);
    return h;
}

static vb_beat beat(const char *worker, long long at, long interval)
{
    vb_beat b;
    memset(&b, 0, sizeof b);
    snprintf(b.worker, sizeof b.worker, "%s", worker);
    snprintf(b.host, sizeof b.host, "host-%s", worker);
    snprintf(b.version, sizeof b.version, "1.2.3");
    b.slots = 4;
    b.in_flight = 2;
    b.beat_at = at;
    b.started_at = at - 5000;
    b.interval_ms = interval;
    return b;
}

static long long ttl_of(const char *worker)
{
    char key[300];
    snprintf(key, sizeof key, "visionbatch:worker:%s", worker);
    redisReply *r = vb_test_redis(DB, "PTTL %s", key);
    assert_non_null(r);
    long long t = r->integer;
    freeReplyObject(r);
    return t;
}

static void beats_are_listed_newest_first_with_their_fields_and_a_ttl(void **state)
{
    (void)state;
    vb_heartbeat *h = open_hb();
    vb_error err = {0};
    vb_beat a = beat("w-a", 1000000, 2000), b = beat("w-b", 1003000, 2000);
    assert_int_equal(vb_heartbeat_write(h, &a, 30000, &err), VB_OK);
    assert_int_equal(vb_heartbeat_write(h, &b, 30000, &err), VB_OK);
    long long ttl = ttl_of("w-a");
    assert_true(ttl > 25000 && ttl <= 30000);
    vb_beat got[4];
    size_t n = 0;
    assert_int_equal(vb_heartbeat_list(h, got, 4, &n, &err), VB_OK);
    assert_int_equal(n, 2);
    assert_string_equal(got[0].worker, "w-b");
    assert_string_equal(got[1].worker, "w-a");
    assert_string_equal(got[1].host, "host-w-a");
    assert_string_equal(got[1].version, "1.2.3");
    assert_int_equal(got[1].slots, 4);
    assert_int_equal(got[1].in_flight, 2);
    assert_int_equal(got[1].beat_at, 1000000);
    assert_int_equal(got[1].started_at, 995000);
    assert_int_equal(got[1].interval_ms, 2000);
    /* A later beat replaces the record. */
    a.beat_at = 1009000;
    a.in_flight = 0;
    assert_int_equal(vb_heartbeat_write(h, &a, 30000, &err), VB_OK);
    assert_int_equal(vb_heartbeat_list(h, got, 4, &n, &err), VB_OK);
    assert_int_equal(n, 2);
    assert_string_equal(got[0].worker, "w-a");
    assert_int_equal(got[0].in_flight, 0);
    /* Stale after three missed beats. */
    assert_false(vb_beat_stale(&got[0], 1009000 + 6000));
    assert_true(vb_beat_stale(&got[0], 1009000 + 6001));
    vb_heartbeat_free(h);
}

static void removed_and_expired_beats_disappear(void **state)
{
    (void)state;
    vb_heartbeat *h = open_hb();
    vb_error err = {0};
    vb_beat a = beat("w-a", 1000000, 50), b = beat("w-b", 1000000, 50);
    assert_int_equal(vb_heartbeat_write(h, &a, 30000, &err), VB_OK);
    assert_int_equal(vb_heartbeat_write(h, &b, 200, &err), VB_OK);
    assert_int_equal(vb_heartbeat_remove(h, "w-a", &err), VB_OK);
    vb_beat got[4];
    size_t n = 0;
    assert_int_equal(vb_heartbeat_list(h, got, 4, &n, &err), VB_OK);
    assert_int_equal(n, 1);
    assert_string_equal(got[0].worker, "w-b");
    /* w-b's record expires: the list forgets its id too. */
    for (int i = 0; i < 100 && n > 0; i++) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
        assert_int_equal(vb_heartbeat_list(h, got, 4, &n, &err), VB_OK);
    }
    assert_int_equal(n, 0);
    redisReply *r = vb_test_redis(DB, "ZCARD visionbatch:workers", NULL);
    assert_non_null(r);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    vb_heartbeat_free(h);
}

static void bad_ids_and_ttls_are_refused(void **state)
{
    (void)state;
    vb_heartbeat *h = open_hb();
    vb_error err = {0};
    vb_beat a = beat("with space", 1, 1000);
    assert_int_equal(vb_heartbeat_write(h, &a, 30000, &err), VB_ERR_INVALID);
    a = beat("", 1, 1000);
    assert_int_equal(vb_heartbeat_write(h, &a, 30000, &err), VB_ERR_INVALID);
    a = beat("ok", 1, 1000);
    assert_int_equal(vb_heartbeat_write(h, &a, 1000, &err), VB_ERR_INVALID);
    vb_beat got[1];
    size_t n = 0;
    assert_int_equal(vb_heartbeat_list(h, got, 0, &n, &err), VB_ERR_INVALID);
    vb_heartbeat_free(h);
}

static int in_flight_three(void *ctx)
{
    (void)ctx;
    return 3;
}

/* The worker's thread beats at once with its settings, and its stop removes
 * the record. */
static void worker_thread_beats_and_removes_its_record_when_stopped(void **state)
{
    (void)state;
    vb_heartbeat *h = open_hb();
    vb_error err = {0};
    vb_config cfg;
    memset(&cfg, 0, sizeof cfg);
    char url[1024], id[] = "test-worker:42";
    snprintf(url, sizeof url, "%s", vb_test_redis_url(DB));
    cfg.redis_url = url;
    cfg.worker_id = id;
    cfg.concurrency = 6;
    cfg.lease_ms = 3000;
    assert_int_equal(vb_worker_beat_interval_ms(3000), 1000);
    assert_int_equal(vb_worker_beat_interval_ms(600000), 5000);
    vb_worker_beats *wb = NULL;
    assert_int_equal(vb_worker_beats_start(&cfg, in_flight_three, NULL, &wb, &err), VB_OK);
    vb_beat got[2];
    size_t n = 0;
    for (int i = 0; i < 100 && n == 0; i++) { /* the first beat: at once */
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
        assert_int_equal(vb_heartbeat_list(h, got, 2, &n, &err), VB_OK);
    }
    assert_int_equal(n, 1);
    assert_string_equal(got[0].worker, "test-worker:42");
    assert_int_equal(got[0].slots, 6);
    assert_int_equal(got[0].in_flight, 3);
    assert_int_equal(got[0].interval_ms, 1000);
    assert_true(got[0].host[0] != '\0');
    assert_true(ttl_of("test-worker:42") > 20000);
    vb_worker_beats_stop(wb);
    assert_int_equal(vb_heartbeat_list(h, got, 2, &n, &err), VB_OK);
    assert_int_equal(n, 0);
    vb_heartbeat_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(beats_are_listed_newest_first_with_their_fields_and_a_ttl, setup),
        cmocka_unit_test_setup(removed_and_expired_beats_disappear, setup),
        cmocka_unit_test_setup(bad_ids_and_ttls_are_refused, setup),
        cmocka_unit_test_setup(worker_thread_beats_and_removes_its_record_when_stopped, setup),
    };
    return cmocka_run_group_tests_name("heartbeat", tests, NULL, NULL);
}
