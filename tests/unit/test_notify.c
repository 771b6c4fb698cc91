/* Unit tests of notify.c: webhook signatures (against a vector computed
 * independently with Python's hmac module), validation of notify targets,
 * the host allow-list, and the delivery queue and pause_on_failure in a live
 * Redis (database 8; see redis_test_url.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "redis_test_url.h"
#include "visionbatch/jobs.h"
#include "visionbatch/jobs_exec.h"
#include "visionbatch/notify.h"

#define DB 8

static const unsigned char test_key[VB_CRYPTO_KEY_SIZE] = {9, 8, 7, 6, 5, 4, 3, 2, 1};

/* python3 -c 'import hmac,hashlib; print(hmac.new(b"whsec_test_secret_0123",
 *   b"1700000000.{\"event\":\"execution.failed\"}", hashlib.sha256).hexdigest())' */
static void sign_matches_an_independent_vector(void **state)
{
    (void)state;
    char sig[VB_NOTIFY_SIG_MAX];
    const char *body = "{\"event\":\"execution.failed\"}";
    vb_error err = {0};
    assert_int_equal(
        vb_notify_sign("whsec_test_secret_0123", 1700000000LL, body, strlen(body), sig, &err),
        VB_OK);
    assert_string_equal(sig, "t=1700000000,v1="
                             "fc9e23cc6f011e68105af3a83bd3e0f8b82112501b75c31d680d5160b1a02c56");
    /* any change to time, body or secret changes the signature */
    char other[VB_NOTIFY_SIG_MAX];
    assert_int_equal(
        vb_notify_sign("whsec_test_secret_0123", 1700000001LL, body, strlen(body), other, &err),
        VB_OK);
    assert_string_not_equal(strchr(sig, 'v'), strchr(other, 'v'));
}

static vb_err validate(const char *json, char **canon, char *msg)
{
    cJSON *j = cJSON_Parse(json);
    assert_non_null(j);
    vb_error err = {0};
    vb_err rc = vb_notify_validate(j, canon, &err);
    snprintf(msg, sizeof err.msg, "%s", err.msg);
    cJSON_Delete(j);
    return rc;
}

static void validate_accepts_targets_and_refuses_bad_ones(void **state)
{
    (void)state;
    char msg[1024], *c = NULL;
    assert_int_equal(validate("[{\"url\":\"https://hooks.example.com/x?a=1\","
                              "\"events\":[\"execution.failed\",\"job.paused\"]}]",
                              &c, msg),
                     VB_OK);
    assert_string_equal(c, "[{\"url\":\"https://hooks.example.com/x?a=1\","
                           "\"events\":[\"execution.failed\",\"job.paused\"]}]");
    free(c);
    static const char *const bad[] = {
        "{}",
        "[1]",
        "[{\"url\":\"ftp://h/x\",\"events\":[\"run.dead\"]}]",
        "[{\"url\":\"file:///etc/passwd\",\"events\":[\"run.dead\"]}]",
        "[{\"url\":\"https://user:pw@h/x\",\"events\":[\"run.dead\"]}]",
        "[{\"url\":\"https://h/x#frag\",\"events\":[\"run.dead\"]}]",
        "[{\"url\":\"https://h/a b\",\"events\":[\"run.dead\"]}]",
        "[{\"url\":\"https://h/x\",\"events\":[]}]",
        "[{\"url\":\"https://h/x\",\"events\":[\"execution.exploded\"]}]",
        "[{\"url\":\"https://h/x\",\"events\":[\"run.dead\",\"run.dead\"]}]",
        "[{\"url\":\"https://h/x\",\"events\":[\"run.dead\"],\"secret\":\"x\"}]",
        "[{\"events\":[\"run.dead\"]}]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        c = NULL;
        assert_int_equal(validate(bad[i], &c, msg), VB_ERR_INVALID);
        assert_null(c);
    }
    /* caps: URL length and number of targets */
    char big[VB_NOTIFY_URL_MAX + 100];
    snprintf(big, sizeof big, "[{\"url\":\"https://h/%0*d\",\"events\":[\"run.dead\"]}]",
             VB_NOTIFY_URL_MAX, 0);
    assert_int_equal(validate(big, &c, msg), VB_ERR_INVALID);
    char many[4096] = "[";
    for (int i = 0; i <= VB_NOTIFY_TARGETS_MAX; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many),
                 "%s{\"url\":\"https://h/%d\",\"events\":[\"run.dead\"]}", i ? "," : "", i);
    snprintf(many + strlen(many), sizeof many - strlen(many), "]");
    assert_int_equal(validate(many, &c, msg), VB_ERR_INVALID);
    assert_non_null(strstr(msg, "more than"));
}

static void allow_list_matches_exact_hosts_and_subdomains(void **state)
{
    (void)state;
    const char *al = "hooks.example.com, 127.0.0.1,*.corp.example,::1";
    assert_true(vb_notify_host_allowed("https://hooks.example.com/x", al));
    assert_true(vb_notify_host_allowed("https://HOOKS.Example.com:8443/x", al));
    assert_true(vb_notify_host_allowed("http://127.0.0.1:9/x", al));
    assert_true(vb_notify_host_allowed("https://a.b.corp.example/x", al));
    assert_true(vb_notify_host_allowed("http://[::1]:80/x", al));
    assert_false(vb_notify_host_allowed("https://corp.example/x", al));
    assert_false(vb_notify_host_allowed("https://evilcorp.example/x", al));
    assert_false(vb_notify_host_allowed("https://hooks.example.com.evil.net/x", al));
    assert_false(vb_notify_host_allowed("https://127.0.0.2/x", al));
    assert_false(vb_notify_host_allowed("https://169.254.169.254/latest", al));
    assert_false(vb_notify_host_allowed("ftp://hooks.example.com/x", al));
    assert_false(vb_notify_host_allowed("https://hooks.example.com/x", ""));
    assert_false(vb_notify_host_allowed("https://hooks.example.com/x", NULL));
}

/* ---- Redis-backed ---- */

static int setup_redis(void **state)
{
    *state = NULL;
    if (vb_test_redis_flush(DB) != 0) {
        if (vb_test_allow_no_redis())
            return 0;
        fprintf(stderr, "Redis unreachable at %s\n", vb_test_redis_url(DB));
        return -1;
    }
    vb_jobs_opts o = {.redis_url = vb_test_redis_url(DB),
                      .secret_key = test_key,
                      .webhook_allowed_hosts = "127.0.0.1"};
    vb_jobs *j = NULL;
    vb_error err = {0};
    if (vb_jobs_new(&o, &j, &err) != VB_OK)
        return -1;
    *state = j;
    return 0;
}

static int teardown_redis(void **state)
{
    vb_jobs_free(*state);
    return 0;
}

#define BODY(extra)                                                                                \
    "{\"name\":\"n\",\"schedule\":\"0 * * * *\",\"external_api_get_url\":\"https://a/x\","         \
    "\"external_api_post_url\":\"https://a/y\",\"external_api_key\":\"k\","                        \
    "\"organization_id\":\"o\"" extra "}"

static vb_err create(vb_jobs *j, const char *body, vb_job *out, char *msg)
{
    vb_job_input in;
    vb_error err = {0};
    vb_err rc = vb_job_input_parse(body, strlen(body), 0, &in, &err);
    if (rc == VB_OK)
        rc = vb_jobs_create(j, &in, out, &err);
    vb_job_input_free(&in);
    snprintf(msg, sizeof err.msg, "%s", err.msg);
    return rc;
}

/* Creates a job with `extra` fields and one target on loopback for `event`. */
static void create_hooked(vb_jobs *j, const char *extra, const char *event, vb_job *job)
{
    char body[2048], msg[1024];
    snprintf(body, sizeof body,
             BODY("%s,\"notify\":[{\"url\":\"http://127.0.0.1:9/h\",\"events\":[\"%s\"]}],"
                  "\"notify_secret\":\"0123456789abcdef\""),
             extra, event);
    assert_int_equal(create(j, body, job, msg), VB_OK);
}

/* Starts an execution and ends its firing with nothing published. */
static void run_exec(vb_jobs *j, const char *job_id, int failed, char id[VB_UUID_SIZE])
{
    vb_error err = {0};
    char st[16];
    assert_int_equal(vb_jobs_exec_start_manual(j, job_id, "p", 1000, 0, id, &err), VB_OK);
    assert_int_equal(vb_jobs_exec_fire_done(j, id, 0, 0, 0, "", failed, 2000, st, &err), VB_OK);
    assert_string_equal(st, failed ? "error" : "success");
}

static void jobs_refuse_hosts_off_the_list_and_notify_without_secret(void **state)
{
    vb_jobs *j = *state;
    if (!j)
        skip();
    char msg[1024];
    vb_job job;
    assert_int_equal(create(j, BODY(",\"notify\":[{\"url\":\"http://10.0.0.1/x\",\"events\":"
                                    "[\"run.dead\"]}],\"notify_secret\":\"0123456789abcdef\""),
                            &job, msg),
                     VB_ERR_INVALID);
    assert_non_null(strstr(msg, "webhook_allowed_hosts"));
    assert_int_equal(create(j, BODY(",\"notify\":[{\"url\":\"http://127.0.0.1/x\",\"events\":"
                                    "[\"run.dead\"]}]"),
                            &job, msg),
                     VB_ERR_INVALID);
    assert_non_null(strstr(msg, "notify_secret"));
    assert_int_equal(create(j, BODY(",\"notify_secret\":\"short\""), &job, msg), VB_ERR_INVALID);
    assert_int_equal(create(j, BODY(",\"pause_on_failure\":1.5"), &job, msg), VB_ERR_INVALID);
}

/* The execution's one recorded notification has this status and attempts. */
static void expect_notification(vb_jobs *j, const char *exec_id, const char *status, int attempts)
{
    vb_exec e;
    vb_error err = {0};
    assert_int_equal(vb_jobs_exec_get(j, exec_id, &e, &err), VB_OK);
    cJSON *arr = cJSON_Parse(e.notifications);
    vb_exec_free(&e);
    assert_int_equal(cJSON_GetArraySize(arr), 1);
    cJSON *n = cJSON_GetArrayItem(arr, 0);
    assert_string_equal(cJSON_GetObjectItem(n, "status")->valuestring, status);
    assert_int_equal(cJSON_GetObjectItem(n, "attempts")->valueint, attempts);
    cJSON_Delete(arr);
}

static void one_claim_per_delivery_until_its_lease_runs_out(void **state)
{
    vb_jobs *j = *state;
    if (!j)
        skip();
    char id[VB_UUID_SIZE];
    vb_job job;
    vb_error err = {0};
    create_hooked(j, "", "execution.succeeded", &job);
    assert_memory_equal(job.notify_secret_enc, "v1:", 3);
    assert_null(strstr(job.notify_secret_enc, "0123456789abcdef"));
    char *secret = NULL;
    assert_int_equal(vb_jobs_open_notify_secret(j, job.job_id, &secret, &err), VB_OK);
    assert_string_equal(secret, "0123456789abcdef");
    vb_crypto_free_secret(secret);
    run_exec(j, job.job_id, 0, id);

    vb_notify_item *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    assert_int_equal(vb_notify_claim(j, 3000, 1000, "A", 16, &a, &na, &err), VB_OK);
    assert_int_equal(vb_notify_claim(j, 3000, 1000, "B", 16, &b, &nb, &err), VB_OK);
    assert_int_equal(na, 1);
    assert_int_equal(nb, 0);
    assert_string_equal(a[0].event, "execution.succeeded");
    assert_string_equal(a[0].url, "http://127.0.0.1:9/h");
    cJSON *body = cJSON_Parse(a[0].body);
    assert_non_null(body);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(body, "execution"), "id")->valuestring, id);
    assert_null(strstr(a[0].body, "0123456789abcdef"));
    cJSON_Delete(body);

    /* the lease runs out: B takes over; A's late report is not counted */
    assert_int_equal(vb_notify_claim(j, 4001, 1000, "B", 16, &b, &nb, &err), VB_OK);
    assert_int_equal(nb, 1);
    int counted = -1;
    assert_int_equal(vb_notify_finish(j, a[0].id, "A", 0, 500, 5000, 6, &counted, &err), VB_OK);
    assert_int_equal(counted, 0);
    assert_int_equal(vb_notify_finish(j, b[0].id, "B", 0, 500, 6000, 6, &counted, &err), VB_OK);
    assert_int_equal(counted, 1);

    expect_notification(j, id, "retrying", 1);
    vb_notify_item_free(&b[0]);
    free(b);

    /* not due before 6000; then delivered once and gone from the queue */
    assert_int_equal(vb_notify_claim(j, 5999, 1000, "C", 16, &b, &nb, &err), VB_OK);
    assert_int_equal(nb, 0);
    assert_int_equal(vb_notify_claim(j, 6000, 1000, "C", 16, &b, &nb, &err), VB_OK);
    assert_int_equal(nb, 1);
    assert_int_equal(b[0].attempts, 1);
    assert_int_equal(vb_notify_finish(j, b[0].id, "C", 1, 204, 0, 6, &counted, &err), VB_OK);
    assert_int_equal(counted, 1);
    expect_notification(j, id, "delivered", 2);
    vb_notify_item_free(&b[0]);
    free(b);
    assert_int_equal(vb_notify_claim(j, 99999999, 1000, "C", 16, &b, &nb, &err), VB_OK);
    assert_int_equal(nb, 0);
    vb_notify_item_free(&a[0]);
    free(a);
    vb_job_free(&job);
}

static void pause_on_failure_deactivates_after_n_failures_in_a_row(void **state)
{
    vb_jobs *j = *state;
    if (!j)
        skip();
    char id[VB_UUID_SIZE];
    vb_job job;
    vb_error err = {0};
    create_hooked(j, ",\"pause_on_failure\":2", "job.paused", &job);
    assert_int_equal(job.pause_on_failure, 2);
    run_exec(j, job.job_id, 1, id);
    run_exec(j, job.job_id, 0, id); /* a success resets the streak */
    run_exec(j, job.job_id, 1, id);
    vb_job_free(&job);
    vb_job cur;
    vb_job_list l;
    assert_int_equal(vb_jobs_list(j, 0, &l, &err), VB_OK);
    assert_int_equal(l.n, 1);
    assert_true(l.items[0].enabled);
    assert_int_equal(l.items[0].fail_streak, 1);
    run_exec(j, l.items[0].job_id, 1, id);
    assert_int_equal(vb_jobs_get(j, l.items[0].job_id, &cur, &err), VB_OK);
    assert_false(cur.enabled);
    assert_non_null(strstr(cur.paused_reason, "2 consecutive failed executions"));
    assert_non_null(strstr(cur.paused_reason, id));
    vb_job_free(&cur);

    vb_notify_item *a = NULL;
    size_t na = 0;
    assert_int_equal(vb_notify_claim(j, 99999, 1000, "A", 16, &a, &na, &err), VB_OK);
    assert_int_equal(na, 1);
    assert_string_equal(a[0].event, "job.paused");
    assert_non_null(strstr(a[0].body, "paused_reason"));
    vb_notify_item_free(&a[0]);
    free(a);

    /* enabling again clears the reason and the streak */
    assert_int_equal(vb_jobs_set_enabled(j, l.items[0].job_id, 1, &err), VB_OK);
    assert_int_equal(vb_jobs_get(j, l.items[0].job_id, &cur, &err), VB_OK);
    assert_true(cur.enabled);
    assert_string_equal(cur.paused_reason, "");
    assert_int_equal(cur.fail_streak, 0);
    vb_job_free(&cur);
    vb_job_list_free(&l);
}

static void a_dead_run_queues_run_dead_once(void **state)
{
    vb_jobs *j = *state;
    if (!j)
        skip();
    char id[VB_UUID_SIZE], st[16];
    vb_job job;
    vb_error err = {0};
    create_hooked(j, "", "run.dead", &job);
    assert_int_equal(vb_jobs_exec_start_manual(j, job.job_id, "p", 1000, 0, id, &err), VB_OK);
    assert_int_equal(vb_jobs_exec_add_published(j, id, "RUN-1", &err), VB_OK);
    assert_int_equal(vb_jobs_exec_add_published(j, id, "RUN-2", &err), VB_OK);
    assert_int_equal(vb_jobs_exec_run_done_at(j, id, "RUN-1", VB_EXEC_RUN_OK, "", 1500, st, &err),
                     VB_OK);
    for (int i = 0; i < 2; i++) /* a repeated report queues nothing more */
        assert_int_equal(
            vb_jobs_exec_run_done_at(j, id, "RUN-2", VB_EXEC_RUN_FAILED, "", 1500, st, &err),
            VB_OK);
    vb_notify_item *a = NULL;
    size_t na = 0;
    assert_int_equal(vb_notify_claim(j, 2000, 1000, "A", 16, &a, &na, &err), VB_OK);
    assert_int_equal(na, 1);
    assert_string_equal(a[0].event, "run.dead");
    cJSON *body = cJSON_Parse(a[0].body);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(body, "run"), "id")->valuestring,
                        "RUN-2");
    cJSON_Delete(body);
    vb_notify_item_free(&a[0]);
    free(a);
    vb_job_free(&job);
}

/* A notify field altered behind the API's back never stops an execution from
 * completing; it only sends nothing. */
static void a_malformed_notify_never_blocks_completion(void **state)
{
    vb_jobs *j = *state;
    if (!j)
        skip();
    static const char *const junk[] = {"not json", "[{\"events\":[\"execution.succeeded\"]}]",
                                       "[{\"url\":1,\"events\":[\"execution.succeeded\"]}]",
                                       "[{\"url\":\"http://127.0.0.1:9/h\",\"events\":7}]", "{}"};
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        char id[VB_UUID_SIZE], key[80];
        vb_job job;
        vb_error err = {0};
        create_hooked(j, "", "execution.succeeded", &job);
        snprintf(key, sizeof key, "HSET visionbatch:job:%s notify %%s", job.job_id);
        freeReplyObject(vb_test_redis(DB, key, junk[i]));
        run_exec(j, job.job_id, 0, id); /* asserts "success" */
        vb_notify_item *a = NULL;
        size_t na = 0;
        assert_int_equal(vb_notify_claim(j, 99999, 1000, "A", 16, &a, &na, &err), VB_OK);
        assert_int_equal(na, 0);
        vb_job_free(&job);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sign_matches_an_independent_vector),
        cmocka_unit_test(validate_accepts_targets_and_refuses_bad_ones),
        cmocka_unit_test(allow_list_matches_exact_hosts_and_subdomains),
        cmocka_unit_test_setup_teardown(jobs_refuse_hosts_off_the_list_and_notify_without_secret,
                                        setup_redis, teardown_redis),
        cmocka_unit_test_setup_teardown(one_claim_per_delivery_until_its_lease_runs_out,
                                        setup_redis, teardown_redis),
        cmocka_unit_test_setup_teardown(pause_on_failure_deactivates_after_n_failures_in_a_row,
                                        setup_redis, teardown_redis),
        cmocka_unit_test_setup_teardown(a_dead_run_queues_run_dead_once, setup_redis,
                                        teardown_redis),
        cmocka_unit_test_setup_teardown(a_malformed_notify_never_blocks_completion, setup_redis,
                                        teardown_redis),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
