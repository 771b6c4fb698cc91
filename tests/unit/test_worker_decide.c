/* Unit tests of the worker's decision rules (worker/decide.c): permanent vs
 * transient failures, dead vs retry after a failed attempt, the retry
 * backoff, and which runs the reaper takes over or publishes again. Pure
 * functions: no Kafka, Redis or clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "decide.h"

#define MAX_ATTEMPTS 5
#define LEASE_MS 30000L
#define NOW 1700000000000LL

static vb_error error_of(vb_err code, long http_status)
{
    vb_error e;
    vb_error_clear(&e);
    e.code = code;
    e.http_status = http_status;
    return e;
}

static void malformed_or_oversized_data_is_permanent(void **state)
{
    const vb_err permanent[] = {VB_ERR_PARSE, VB_ERR_CONTENT, VB_ERR_TOO_LARGE, VB_ERR_INVALID,
                                VB_ERR_CONFIG};
    for (size_t i = 0; i < sizeof permanent / sizeof *permanent; i++) {
        vb_error e = error_of(permanent[i], 0);
        assert_true(vb_worker_error_is_permanent(&e));
    }
    const vb_err transient[] = {VB_ERR_NETWORK, VB_ERR_TIMEOUT, VB_ERR_REDIS, VB_ERR_KAFKA,
                                VB_ERR_NOMEM, VB_ERR_API};
    for (size_t i = 0; i < sizeof transient / sizeof *transient; i++) {
        vb_error e = error_of(transient[i], 0);
        assert_false(vb_worker_error_is_permanent(&e));
    }
}

static void http_4xx_is_permanent_except_auth_timeout_and_rate_limit(void **state)
{
    const long permanent[] = {400, 404, 405, 409, 410, 413, 415, 422, 499};
    for (size_t i = 0; i < sizeof permanent / sizeof *permanent; i++) {
        vb_error e = error_of(VB_ERR_HTTP, permanent[i]);
        if (!vb_worker_error_is_permanent(&e))
            fail_msg("HTTP %ld should be permanent", permanent[i]);
    }
    const long transient[] = {401, 403, 408, 429, 500, 502, 503, 504, 399, 0};
    for (size_t i = 0; i < sizeof transient / sizeof *transient; i++) {
        vb_error e = error_of(VB_ERR_HTTP, transient[i]);
        if (vb_worker_error_is_permanent(&e))
            fail_msg("HTTP %ld should be transient", transient[i]);
    }
}

static void transient_failure_retries_until_the_last_attempt(void **state)
{
    vb_error e = error_of(VB_ERR_HTTP, 503);
    for (long attempt = 1; attempt < MAX_ATTEMPTS; attempt++)
        assert_int_equal(vb_worker_failure_verdict(&e, attempt, MAX_ATTEMPTS), VB_FAIL_RETRY);
    assert_int_equal(vb_worker_failure_verdict(&e, MAX_ATTEMPTS, MAX_ATTEMPTS),
                     VB_FAIL_DEAD_EXHAUSTED);
    /* an attempt beyond the limit (the setting was lowered meanwhile) */
    assert_int_equal(vb_worker_failure_verdict(&e, MAX_ATTEMPTS + 3, MAX_ATTEMPTS),
                     VB_FAIL_DEAD_EXHAUSTED);
}

static void permanent_failure_is_dead_at_the_first_attempt(void **state)
{
    vb_error e = error_of(VB_ERR_HTTP, 404);
    assert_int_equal(vb_worker_failure_verdict(&e, 1, MAX_ATTEMPTS), VB_FAIL_DEAD_PERMANENT);
    e = error_of(VB_ERR_CONTENT, 0);
    assert_int_equal(vb_worker_failure_verdict(&e, 1, MAX_ATTEMPTS), VB_FAIL_DEAD_PERMANENT);
    /* permanent wins over exhausted: the reason names the real cause */
    assert_int_equal(vb_worker_failure_verdict(&e, MAX_ATTEMPTS, MAX_ATTEMPTS),
                     VB_FAIL_DEAD_PERMANENT);
}

static void backoff_doubles_from_the_lease_up_to_the_cap(void **state)
{
    assert_int_equal(vb_worker_retry_backoff_ms(LEASE_MS, 0), 0);
    assert_int_equal(vb_worker_retry_backoff_ms(LEASE_MS, -1), 0);
    assert_int_equal(vb_worker_retry_backoff_ms(LEASE_MS, 1), 30000);
    assert_int_equal(vb_worker_retry_backoff_ms(LEASE_MS, 2), 60000);
    assert_int_equal(vb_worker_retry_backoff_ms(LEASE_MS, 3), 120000);
    assert_int_equal(vb_worker_retry_backoff_ms(LEASE_MS, 5), 480000);
    assert_int_equal(vb_worker_retry_backoff_ms(LEASE_MS, 6), VB_RETRY_BACKOFF_CAP_MS);
    assert_int_equal(vb_worker_retry_backoff_ms(LEASE_MS, 1000), VB_RETRY_BACKOFF_CAP_MS);
}

static vb_run_state run_in(vb_run_status st, long long lease_until, long attempts,
                           long long finished_at)
{
    vb_run_state rs;
    memset(&rs, 0, sizeof rs);
    rs.state = st;
    rs.lease_until = lease_until;
    rs.attempts = attempts;
    rs.finished_at = finished_at;
    return rs;
}

static vb_reap_action reap(vb_run_state rs, long long now)
{
    return vb_worker_reap_action(&rs, MAX_ATTEMPTS, LEASE_MS, now);
}

static void a_run_whose_lease_expired_is_taken_over(void **state)
{
    assert_int_equal(reap(run_in(VB_RUN_PROCESSING, NOW - 1, 1, 0), NOW), VB_REAP_TAKEOVER);
    assert_int_equal(reap(run_in(VB_RUN_UPLOADING, NOW - 60000, 2, 0), NOW), VB_REAP_TAKEOVER);
    /* still held: at the instant of expiry and before */
    assert_int_equal(reap(run_in(VB_RUN_PROCESSING, NOW, 1, 0), NOW), VB_REAP_NONE);
    assert_int_equal(reap(run_in(VB_RUN_UPLOADING, NOW + 10000, 1, 0), NOW), VB_REAP_NONE);
}

static void a_queued_run_whose_queue_lease_expired_is_published_again(void **state)
{
    assert_int_equal(reap(run_in(VB_RUN_QUEUED, NOW - 1, 0, 0), NOW), VB_REAP_REQUEUE);
    assert_int_equal(reap(run_in(VB_RUN_QUEUED, NOW, 0, 0), NOW), VB_REAP_NONE);
}

static void a_failed_run_is_retried_after_its_backoff_or_made_dead(void **state)
{
    long long failed_at = NOW - 60000; /* two attempts: backoff 60 s */
    assert_int_equal(reap(run_in(VB_RUN_FAILED, 0, 2, failed_at), NOW), VB_REAP_RETRY);
    assert_int_equal(reap(run_in(VB_RUN_FAILED, 0, 2, failed_at + 1), NOW), VB_REAP_NONE);
    assert_int_equal(reap(run_in(VB_RUN_FAILED, 0, 3, failed_at), NOW), VB_REAP_NONE);
    /* attempts exhausted: dead at once, whatever the backoff */
    assert_int_equal(reap(run_in(VB_RUN_FAILED, 0, MAX_ATTEMPTS, NOW), NOW), VB_REAP_DEAD);
}

static void a_failed_run_with_a_retry_at_is_retried_from_it(void **state)
{
    vb_run_state rs = run_in(VB_RUN_FAILED, 0, 3, NOW - 1); /* backoff alone: 120 s */
    rs.retry_at = NOW; /* the store's time wins: a handed-back run, no backoff */
    assert_int_equal(reap(rs, NOW), VB_REAP_RETRY);
    rs.retry_at = NOW + 1;
    assert_int_equal(reap(rs, NOW), VB_REAP_NONE);
}

static void finished_runs_are_never_reaped(void **state)
{
    const vb_run_status done[] = {VB_RUN_UPLOADED, VB_RUN_DEAD, VB_RUN_NONE};
    for (size_t i = 0; i < sizeof done / sizeof *done; i++)
        assert_int_equal(reap(run_in(done[i], NOW - 3600000, MAX_ATTEMPTS, NOW - 3600000), NOW),
                         VB_REAP_NONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(malformed_or_oversized_data_is_permanent),
        cmocka_unit_test(http_4xx_is_permanent_except_auth_timeout_and_rate_limit),
        cmocka_unit_test(transient_failure_retries_until_the_last_attempt),
        cmocka_unit_test(permanent_failure_is_dead_at_the_first_attempt),
        cmocka_unit_test(backoff_doubles_from_the_lease_up_to_the_cap),
        cmocka_unit_test(a_run_whose_lease_expired_is_taken_over),
        cmocka_unit_test(a_queued_run_whose_queue_lease_expired_is_published_again),
        cmocka_unit_test(a_failed_run_is_retried_after_its_backoff_or_made_dead),
        cmocka_unit_test(a_failed_run_with_a_retry_at_is_retried_from_it),
        cmocka_unit_test(finished_runs_are_never_reaped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
