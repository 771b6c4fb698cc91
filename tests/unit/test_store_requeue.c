/*
 * Tests of store_requeue.c (releasing a producer's claim) against a real
 * Redis: $REDIS_URL with database 13 (redis_test_url.h). Each
 * test uses run ids unique to the process (REQUEUE-TEST-…), so concurrent
 * suites never collide; nothing is flushed and the few records stay. When
 * Redis is unreachable the tests fail unless VB_ALLOW_NO_REDIS=1 (then they
 * are skipped).
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
#include <unistd.h>

#include "redis_test_url.h"
#include "visionbatch/store_requeue.h"

static int available;
static int seq;

static const char *url(void)
{
    return vb_test_redis_url(13);
}

static void new_id(char *out, size_t n)
{
    snprintf(out, n, "REQUEUE-TEST-%ld-%ld-%d", (long)getpid(), (long)time(NULL), ++seq);
}

static int group_setup(void **state)
{
    vb_store *s = NULL;
    if (vb_store_new(url(), NULL, &s, NULL) == VB_OK) {
        vb_store_free(s);
        available = 1;
        return 0;
    }
    const char *allow = getenv("VB_ALLOW_NO_REDIS");
    if (allow && strcmp(allow, "1") == 0)
        return 0;
    fprintf(stderr, "Redis unreachable at %s; start it or set VB_ALLOW_NO_REDIS=1\n", url());
    return -1;
}

static int setup(void **state)
{
    if (!available)
        skip();
    vb_store *s = NULL;
    assert_int_equal(vb_store_new(url(), NULL, &s, NULL), VB_OK);
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    vb_store_free(*state);
    return 0;
}

/* Claims `id` fresh; returns the claim's version. */
static long long claim(vb_store *s, const char *id)
{
    vb_claim_decision d = 0;
    long long v = 0;
    assert_int_equal(vb_store_claim_for_queue_ex(s, id, 3, 600000, vb_store_now_ms(), "t", NULL,
                                                 &d, &v, NULL),
                     VB_OK);
    assert_int_equal(d, VB_CLAIM_PUBLISH);
    return v;
}

static void release_returns_run_to_failed_without_an_attempt(void **state)
{
    vb_store *s = *state;
    char id[96];
    new_id(id, sizeof id);
    long long v = claim(s, id);
    int released = 0;
    vb_error err = {0};
    assert_int_equal(vb_store_release_claim(s, id, v, "producer-test", "not published: x",
                                            &released, &err),
                     VB_OK);
    assert_int_equal(released, 1);
    vb_run_state st;
    assert_int_equal(vb_store_get(s, id, &st, NULL), VB_OK);
    assert_int_equal(st.state, VB_RUN_FAILED);
    assert_int_equal(st.attempts, 0);
    assert_string_equal(st.last_error, "not published: x");
    vb_run_state_free(&st);
    /* The next pass publishes it again at once. */
    vb_claim_decision d = 0;
    assert_int_equal(vb_store_claim_for_queue(s, id, 3, 600000, vb_store_now_ms(), &d, NULL),
                     VB_OK);
    assert_int_equal(d, VB_CLAIM_PUBLISH);
    /* And the brief lock is gone: a worker can take the run. */
    char tok[VB_STORE_TOKEN_SIZE];
    assert_int_equal(vb_store_lock_acquire(s, id, "w1", 5000, tok, NULL), VB_OK);
    vb_store_lock_release(s, id, tok, NULL);
}

static void release_leaves_a_run_that_moved_on(void **state)
{
    vb_store *s = *state;
    char id[96];
    new_id(id, sizeof id);
    long long v = claim(s, id);
    /* A worker took the message meanwhile: it holds the lock. */
    char tok[VB_STORE_TOKEN_SIZE];
    assert_int_equal(vb_store_lock_acquire(s, id, "w1", 5000, tok, NULL), VB_OK);
    int released = 1;
    assert_int_equal(vb_store_release_claim(s, id, v, "producer-test", "x", &released, NULL),
                     VB_OK);
    assert_int_equal(released, 0);
    assert_int_equal(vb_store_begin_processing(s, id, tok, "w1", 5000, NULL, NULL), VB_OK);
    assert_int_equal(vb_store_lock_release(s, id, tok, NULL), VB_OK);
    /* Lock free now, but the version moved on: still nothing changes. */
    assert_int_equal(vb_store_release_claim(s, id, v, "producer-test", "x", &released, NULL),
                     VB_OK);
    assert_int_equal(released, 0);
    vb_run_state st;
    assert_int_equal(vb_store_get(s, id, &st, NULL), VB_OK);
    assert_int_equal(st.state, VB_RUN_PROCESSING);
    assert_int_equal(st.attempts, 1);
    vb_run_state_free(&st);
}

static void release_of_unknown_run_is_not_found(void **state)
{
    char id[96];
    new_id(id, sizeof id);
    vb_error err = {0};
    assert_int_equal(vb_store_release_claim(*state, id, 1, "producer-test", "x", NULL, &err),
                     VB_ERR_NOT_FOUND);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(release_returns_run_to_failed_without_an_attempt),
        T(release_leaves_a_run_that_moved_on),
        T(release_of_unknown_run_is_not_found),
    };
    return cmocka_run_group_tests_name("store_requeue", tests, group_setup, NULL);
}
