/* Unit tests of one producer pass (producer/poller.c): a run that fails by
 * itself — its Redis key holds another type, or Kafka refuses its message as
 * too large — is counted and the pass goes on with the other runs; a run
 * whose sealed copy makes its message too large goes without it; a cron
 * firing that finds nothing logs only at DEBUG. The
 * platform is a libmicrohttpd server in this process serving one page of
 * runs; Redis is database 11 of the test server (redis_test_url.h); Kafka is
 * $KAFKA_BROKERS (else 127.0.0.1:9092) with the default topic. Without Redis
 * or Kafka the tests fail (VB_ALLOW_NO_REDIS=1: they skip). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "poller.h"
#include "redis_test_url.h"
#include "test_util.h"
#include "visionbatch/http.h"
#include "visionbatch/log.h"
#include "visionbatch/store.h"

#define DB 11
#define ORG "38162954-469A-40BC-B619-3E9F71DE6DB9"
#define NRUNS 3
#define BIG_DOCS 300     /* documents of the oversized run ... */
#define BIG_PATH 3800    /* ... with paths this long: > 1 MB of message */

typedef struct fx {
    struct MHD_Daemon *d;
    char *page1; /* the listing: NRUNS runs */
    char *empty; /* every later page */
    char ids[NRUNS][64];
    vb_config cfg;
    vb_producer_ctx *ctx;
} fx;

static enum MHD_Result serve(void *cls, struct MHD_Connection *con, const char *url,
                             const char *method, const char *version, const char *upload,
                             size_t *upload_size, void **con_cls)
{
    fx *x = cls;
    const char *page = MHD_lookup_connection_value(con, MHD_GET_ARGUMENT_KIND, "page");
    const char *body = page && strcmp(page, "1") == 0 ? x->page1 : x->empty;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result rc = MHD_queue_response(con, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
}

/* Length of the query string (a SAS signature) of the documents of a run
 * listed by listing_sas(); 0 for listing(). */
static size_t sas_len;
static size_t big_path = BIG_PATH; /* path length of the big run's documents */

static cJSON *document(const char *run_id, int i, size_t path_len)
{
    char name[32], id[64];
    snprintf(name, sizeof name, "img_%d.jpg", i);
    snprintf(id, sizeof id, "D0000000-0000-4000-8000-%012d", i);
    char *path = malloc(path_len + 64);
    assert_non_null(path);
    int n = snprintf(path, path_len + 64, "https://storage.example.com/c/");
    while ((size_t)n < path_len)
        path[n++] = 'p';
    snprintf(path + n, path_len + 64 - (size_t)n, "/%s", name); /* the real room left */
    if (sas_len) {
        size_t len = strlen(path);
        char *q = realloc(path, len + sas_len + 8);
        assert_non_null(q);
        path = q;
        memcpy(path + len, "?sig=", 5);
        memset(path + len + 5, 's', sas_len);
        path[len + 5 + sas_len] = '\0';
    }
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "vision_analysis_documents_id", id);
    cJSON_AddStringToObject(d, "vision_analysis_id", run_id);
    cJSON_AddStringToObject(d, "document_id", id);
    cJSON_AddStringToObject(d, "document_path", path);
    cJSON_AddStringToObject(d, "document_name", name);
    cJSON_AddBoolToObject(d, "is_input", 1);
    cJSON_AddStringToObject(d, "document_type", "image");
    free(path);
    return d;
}

/* The listing page; run `big` (-1 = none) has BIG_DOCS documents with long
 * paths, the others one short one. */
static char *listing(fx *x, int big)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "code", 200);
    cJSON_AddStringToObject(root, "status", "success");
    cJSON *data = cJSON_AddObjectToObject(root, "data");
    cJSON_AddNumberToObject(data, "page", 1);
    cJSON_AddNumberToObject(data, "page_size", 10);
    cJSON_AddNumberToObject(data, "total", NRUNS);
    cJSON *runs = cJSON_AddArrayToObject(data, "vision_analysis");
    for (int i = 0; i < NRUNS; i++) {
        cJSON *r = cJSON_CreateObject();
        char code[32];
        snprintf(code, sizeof code, "RUN_%d", i);
        cJSON_AddStringToObject(r, "vision_analysis_id", x->ids[i]);
        cJSON_AddStringToObject(r, "vision_analysis_run_code", code);
        cJSON_AddBoolToObject(r, "is_processed", 0);
        cJSON_AddStringToObject(r, "organization_id", ORG);
        cJSON_AddStringToObject(r, "organization_name", "LexCorp");
        cJSON_AddStringToObject(r, "user_query", "Find defects");
        cJSON_AddStringToObject(r, "created_date", "2025-11-21T18:55:19Z");
        cJSON *docs = cJSON_AddArrayToObject(r, "documents");
        int ndocs = i == big ? BIG_DOCS : 1;
        for (int k = 0; k < ndocs; k++)
            cJSON_AddItemToArray(docs, document(x->ids[i], k, i == big ? big_path : 10));
        cJSON_AddItemToArray(runs, r);
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    assert_non_null(s);
    return s;
}

static const char *brokers(void)
{
    const char *b = getenv("KAFKA_BROKERS");
    return b && *b ? b : "127.0.0.1:9092";
}

static int setup(void **state)
{
    VB_TEST_REDIS_FRESH(DB);
    fx *x = calloc(1, sizeof *x);
    assert_non_null(x);
    for (int i = 0; i < NRUNS; i++) /* fresh ids: the topic keeps older tests' messages */
        snprintf(x->ids[i], sizeof x->ids[i], "%08X-0000-4000-8000-%012d", (unsigned)getpid(), i);
    x->empty = strdup("{\"code\":200,\"status\":\"success\",\"data\":{\"page\":2,\"page_size\":"
                      "10,\"total\":3,\"vision_analysis\":[]}}");
    x->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, serve, x,
                            MHD_OPTION_END);
    assert_non_null(x->d);
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(x->d, MHD_DAEMON_INFO_BIND_PORT);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/runs", (unsigned)di->port);
    char *argv[] = {"test_poller",   "--external-api-get-url",  url,
                    "--external-api-post-url", url,         "--external-api-key",
                    "key",           "--organization-id",      ORG,
                    "--redis-url",   (char *)vb_test_redis_url(DB), "--kafka-brokers",
                    (char *)brokers(), "--retries",            "0",
                    "--log-file",    ""};
    vb_error err = {0};
    char **rest = NULL;
    int nrest = 0;
    if (vb_config_load(&x->cfg, VB_PROG_PRODUCER, sizeof argv / sizeof *argv, argv, &rest, &nrest,
                       &err) != VB_OK)
        fail_msg("config: %s", err.msg);
    if (vb_producer_ctx_new(&x->cfg, NULL, &x->ctx, &err) != VB_OK)
        fail_msg("producer context: %s", err.msg);
    if (!vb_producer_kafka_reachable(x->ctx, 10000))
        fail_msg("Kafka unreachable at %s: start deploy/local/services.sh", brokers());
    *state = x;
    return 0;
}

/* setup() with a secret key: the producer seals each run into its message. */
static int setup_sealed(void **state)
{
    setenv("VISIONBATCH_SECRET_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", 1);
    int rc = setup(state);
    unsetenv("VISIONBATCH_SECRET_KEY");
    return rc;
}

static int teardown(void **state)
{
    fx *x = *state;
    if (x) {
        vb_producer_ctx_free(x->ctx);
        vb_config_free(&x->cfg);
        if (x->d)
            MHD_stop_daemon(x->d);
        free(x->page1);
        free(x->empty);
        free(x);
    }
    return 0;
}

static vb_run_status state_of(const char *run_id)
{
    vb_store *s = NULL;
    vb_error err = {0};
    assert_int_equal(vb_store_new(vb_test_redis_url(DB), NULL, &s, &err), VB_OK);
    vb_run_state st;
    memset(&st, 0, sizeof st);
    vb_run_status out = vb_store_get(s, run_id, &st, &err) == VB_OK ? st.state : VB_RUN_NONE;
    vb_run_state_free(&st);
    vb_store_free(s);
    return out;
}

static void a_run_that_fails_its_claim_does_not_stop_the_others(void **state)
{
    fx *x = *state;
    x->page1 = listing(x, -1);
    /* The first run's state key holds a string: Redis refuses its claim. */
    char key[128];
    snprintf(key, sizeof key, "SET visionbatch:run:%s %%s", x->ids[0]);
    redisReply *r = vb_test_redis(DB, key, "not-a-hash");
    assert_non_null(r);
    freeReplyObject(r);

    vb_poll_stats st;
    vb_error err = {0};
    int rc = vb_producer_poll(x->ctx, &x->cfg, NULL, NULL, &st, &err);
    assert_int_equal(rc, VB_ERR_REDIS); /* the pass reports the failure ... */
    assert_int_equal(st.found, NRUNS);
    assert_int_equal(st.errors, 1);
    assert_int_equal(st.published, NRUNS - 1); /* ... and published the others */
    assert_int_equal(st.not_attempted, 0);
    for (int i = 1; i < NRUNS; i++)
        assert_int_equal(state_of(x->ids[i]), VB_RUN_QUEUED);
}

static void a_run_whose_message_kafka_refuses_does_not_stop_the_others(void **state)
{
    fx *x = *state;
    x->page1 = listing(x, 0); /* the first run's message is over 1 MB */
    vb_poll_stats st;
    vb_error err = {0};
    int rc = vb_producer_poll(x->ctx, &x->cfg, NULL, NULL, &st, &err);
    assert_int_equal(rc, VB_ERR_TOO_LARGE);
    assert_int_equal(st.found, NRUNS);
    assert_int_equal(st.failed_publish, 1);
    assert_int_equal(st.published, NRUNS - 1);
    assert_int_equal(st.not_attempted, 0);
    assert_int_equal(state_of(x->ids[0]), VB_RUN_FAILED); /* the claim was released */
    for (int i = 1; i < NRUNS; i++)
        assert_int_equal(state_of(x->ids[i]), VB_RUN_QUEUED);
}

static void a_run_too_large_to_send_sealed_is_sent_without(void **state)
{
    fx *x = *state;
    /* 300 documents with 2.6 KB SAS query strings: about 1.2 MB sealed,
     * but the readable copy (queries stripped) is small. */
    sas_len = 2600;
    big_path = 100;
    x->page1 = listing(x, 0);
    sas_len = 0;
    big_path = BIG_PATH;
    vb_poll_stats st;
    vb_error err = {0};
    int rc = vb_producer_poll(x->ctx, &x->cfg, NULL, NULL, &st, &err);
    assert_int_equal(rc, VB_OK);
    assert_int_equal(st.published, NRUNS);
    assert_int_equal(st.failed_publish, 0);
    for (int i = 0; i < NRUNS; i++)
        assert_int_equal(state_of(x->ids[i]), VB_RUN_QUEUED);
}

/* Polls once (as job `job`'s firing, or the organization's poll when
 * NULL) with INFO and up going to a log file of its own, read once closed. */
static void poll_logged(fx *x, const char *job, const char *dir, const char *name, char *path,
                        size_t pathlen, vb_poll_stats *st)
{
    vb_error err = {0};
    snprintf(path, pathlen, "%s/%s", dir, name);
    vb_log_set_stderr(0);
    vb_log_open(path, VB_LOG_TEXT, VB_LOG_INFO);
    assert_int_equal(vb_producer_poll(x->ctx, &x->cfg, job, NULL, st, &err), VB_OK);
    vb_log_open(NULL, VB_LOG_TEXT, VB_LOG_WARN);
    vb_log_set_stderr(1);
}

#define JOB "0b6f3a52-0d8e-4a37-9a3c-6e0f1a2b3c4d"

/* A cron firing (a job's poll) that finds nothing writes nothing at INFO:
 * 10,000 every-minute jobs would write 20,000 lines a minute. The
 * organization's periodic poll still says so. */
static void a_firing_that_finds_nothing_logs_only_at_debug(void **state)
{
    fx *x = *state;
    x->page1 = strdup(x->empty);
    char dir[] = "/tmp/vb_test_poller_log_XXXXXX", job_log[64], org_log[64];
    assert_non_null(mkdtemp(dir));
    vb_poll_stats st;
    poll_logged(x, JOB, dir, "job.log", job_log, sizeof job_log, &st);
    assert_int_equal(st.found, 0);
    poll_logged(x, NULL, dir, "org.log", org_log, sizeof org_log, &st);
    assert_int_equal(st.found, 0);
    assert_int_equal(tu_lines_with(job_log, " INFO "), 0);
    assert_int_equal(tu_lines_with(org_log, "poll summary: organization="), 1);
    unlink(job_log);
    unlink(org_log);
    rmdir(dir);
}

/* ... and a firing that finds runs says so at INFO. */
static void a_firing_that_finds_runs_logs_at_info(void **state)
{
    fx *x = *state;
    x->page1 = listing(x, -1);
    sas_len = 0;
    char dir[] = "/tmp/vb_test_poller_log_XXXXXX", log[64];
    assert_non_null(mkdtemp(dir));
    vb_poll_stats st;
    poll_logged(x, JOB, dir, "job.log", log, sizeof log, &st);
    assert_int_equal(st.found, NRUNS);
    assert_int_equal(tu_lines_with(log, "poll summary: job=" JOB " found=3"), 1);
    assert_int_equal(tu_lines_with(log, "page(s): 3 run(s) found"), 1);
    unlink(log);
    rmdir(dir);
}

int main(void)
{
    vb_log_open(NULL, VB_LOG_TEXT, VB_LOG_WARN);
    if (vb_http_global_init() != VB_OK)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_run_that_fails_its_claim_does_not_stop_the_others,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            a_run_whose_message_kafka_refuses_does_not_stop_the_others, setup, teardown),
        cmocka_unit_test_setup_teardown(a_run_too_large_to_send_sealed_is_sent_without,
                                        setup_sealed, teardown),
        cmocka_unit_test_setup_teardown(a_firing_that_finds_nothing_logs_only_at_debug, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_firing_that_finds_runs_logs_at_info, setup, teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    vb_http_global_cleanup();
    return failed;
}
