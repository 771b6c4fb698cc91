/* Unit tests of jobs.c: validation of job bodies (pure) and the Redis-backed
 * job and execution records (live Redis, database 14; see redis_test_url.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>

#include "redis_test_url.h"
#include "visionbatch/jobs.h"
#include "visionbatch/jobs_pool.h"
#include "visionbatch/redact.h"

#define DB 14
#define GUIDE_BODY                                                                                 \
    "{\"name\": \"Test Vision Analysis Job\", \"schedule\": \"0 * * * *\","                        \
    " \"external_api_get_url\": \"https://api.example.com/api/v1/documents/vision_analysis\","     \
    " \"external_api_post_url\": "                                                                 \
    "\"https://api.example.com/api/v1/documents/vision_analysis/upload\","                         \
    " \"external_api_key\": \"your_jwt_token\", \"backend_api_url\": \"http://localhost:8000\","   \
    " \"organization_id\": \"your_org_id\", \"enabled\": false}"
#define REQ                                                                                        \
    "\"name\":\"n\",\"schedule\":\"0 * * * *\",\"external_api_get_url\":\"https://a/x\","          \
    "\"external_api_post_url\":\"https://a/y\",\"external_api_key\":\"k\",\"organization_id\":\"o\""

static const unsigned char test_key[VB_CRYPTO_KEY_SIZE] = {1, 2, 3, 4, 5, 6, 7, 8, 9};

/* Parses `body`; returns the error code and leaves the message in msg. */
static vb_err parse(const char *body, int partial, char *msg)
{
    vb_job_input in;
    vb_error err = {0};
    vb_err rc = vb_job_input_parse(body, strlen(body), partial, &in, &err);
    snprintf(msg, sizeof err.msg, "%s", err.msg);
    vb_job_input_free(&in);
    return rc;
}

static void input_accepts_the_guide_body(void **state)
{
    vb_job_input in;
    vb_error err = {0};
    assert_int_equal(vb_job_input_parse(GUIDE_BODY, strlen(GUIDE_BODY), 0, &in, &err), VB_OK);
    assert_string_equal(in.name, "Test Vision Analysis Job");
    assert_string_equal(in.schedule, "0 * * * *");
    assert_string_equal(in.external_api_key, "your_jwt_token");
    assert_true(in.present & VB_JOB_F_ENABLED);
    assert_false(in.enabled);
    assert_false(in.present & VB_JOB_F_TIMEZONE);
    vb_job_input_free(&in);
}

static void input_names_every_missing_field(void **state)
{
    char msg[1024];
    assert_int_equal(parse("{\"name\":\"x\",\"schedule\":\"0 * * * *\"}", 0, msg), VB_ERR_INVALID);
    assert_string_equal(msg, "missing required field(s): external_api_get_url, "
                             "external_api_post_url, external_api_key, organization_id");
    assert_int_equal(parse("{}", 0, msg), VB_ERR_INVALID);
    assert_non_null(strstr(msg, "name, schedule"));
}

static void input_rejects_unknown_and_duplicate_fields(void **state)
{
    char msg[1024];
    assert_int_equal(parse("{" REQ ",\"colour\":1,\"size\":2}", 0, msg), VB_ERR_INVALID);
    assert_string_equal(msg, "unknown field(s): colour, size");
    assert_int_equal(parse("{" REQ ",\"name\":\"again\"}", 0, msg), VB_ERR_INVALID);
    assert_string_equal(msg, "duplicate field: name");
}

static void input_rejects_wrong_types(void **state)
{
    char msg[1024];
    assert_int_equal(parse("{" REQ ",\"enabled\":\"yes\"}", 0, msg), VB_ERR_INVALID);
    assert_non_null(strstr(msg, "enabled must be a boolean"));
    assert_int_equal(parse("{" REQ ",\"enabled\":1}", 0, msg), VB_ERR_INVALID);
    assert_int_equal(parse("{\"name\":5}", 1, msg), VB_ERR_INVALID);
    assert_string_equal(msg, "name must be a string");
    assert_int_equal(parse("{\"organization_id\":123}", 1, msg), VB_ERR_INVALID);
    assert_string_equal(msg, "organization_id must be a string");
    assert_int_equal(parse("{\"schedule\":null}", 1, msg), VB_ERR_INVALID);
    assert_int_equal(parse("{\"name\":1e999}", 1, msg), VB_ERR_INVALID);
    assert_int_equal(parse("{\"overlap\":\"sometimes\"}", 1, msg), VB_ERR_INVALID);
    assert_non_null(strstr(msg, "overlap"));
    assert_int_equal(parse("[1,2]", 0, msg), VB_ERR_INVALID);
    assert_non_null(strstr(msg, "JSON object"));
}

static void input_jitter_is_an_integer_within_bounds(void **state)
{
    char msg[1024];
    const char *bad[] = {"-1", "3601", "1.5", "\"5\"", "null", "true"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[64];
        snprintf(body, sizeof body, "{\"jitter_s\":%s}", bad[i]);
        assert_int_equal(parse(body, 1, msg), VB_ERR_INVALID);
        assert_string_equal(msg, "jitter_s must be an integer from 0 (off) to 3600");
    }
    vb_job_input in;
    vb_error err = {0};
    const char *ok = "{\"jitter_s\":3600}";
    assert_int_equal(vb_job_input_parse(ok, strlen(ok), 1, &in, &err), VB_OK);
    assert_true(in.present & VB_JOB_F_JITTER);
    assert_int_equal(in.jitter_s, 3600);
    vb_job_input_free(&in);
    assert_int_equal(parse("{\"jitter_s\":0}", 1, msg), VB_OK);
}

static void input_bad_cron_names_the_field(void **state)
{
    char msg[1024];
    assert_int_equal(parse("{\"schedule\":\"61 * * * *\"}", 1, msg), VB_ERR_INVALID);
    assert_non_null(strstr(msg, "schedule"));
    assert_non_null(strstr(msg, "minute"));
    assert_int_equal(parse("{\"schedule\":\"0 9 * * 8\"}", 1, msg), VB_ERR_INVALID);
    assert_non_null(strstr(msg, "day-of-week"));
    assert_int_equal(parse("{\"schedule\":\"0 0 30 2 *\"}", 1, msg), VB_ERR_INVALID);
    assert_non_null(strstr(msg, "never fires"));
    assert_int_equal(parse("{\"schedule\":\"0 9 * * 1\"}", 1, msg), VB_OK);
}

static void input_rejects_bad_urls(void **state)
{
    char msg[1024];
    assert_int_equal(parse("{\"external_api_get_url\":\"ftp://a/b\"}", 1, msg), VB_ERR_INVALID);
    assert_string_equal(msg, "external_api_get_url must be an http:// or https:// URL");
    assert_int_equal(parse("{\"backend_api_url\":\"http://\"}", 1, msg), VB_ERR_INVALID);
    assert_string_equal(msg, "backend_api_url has no host");
    assert_int_equal(parse("{\"external_api_post_url\":\"https://a b/\"}", 1, msg),
                     VB_ERR_INVALID);
    assert_int_equal(parse("{\"external_api_post_url\":\"HTTPS://host:8443/p?q=1\"}", 1, msg),
                     VB_OK);
}

static void input_checks_strings(void **state)
{
    char msg[1024], body[1024];
    char name[230];
    memset(name, 'a', 201);
    name[201] = '\0';
    snprintf(body, sizeof body, "{\"name\":\"%s\"}", name);
    assert_int_equal(parse(body, 1, msg), VB_ERR_INVALID);
    assert_non_null(strstr(msg, "200 characters"));
    /* 200 two-byte characters are fine */
    char u[410];
    for (int i = 0; i < 200; i++)
        memcpy(u + 2 * i, "\xc3\xa9", 2);
    u[400] = '\0';
    snprintf(body, sizeof body, "{\"name\":\"%s\"}", u);
    assert_int_equal(parse(body, 1, msg), VB_OK);
    assert_int_equal(parse("{\"name\":\"\"}", 1, msg), VB_ERR_INVALID);
    assert_int_equal(parse("{\"name\":\"a\\nb\"}", 1, msg), VB_ERR_INVALID);
    assert_non_null(strstr(msg, "control"));
    /* crontab(5) blanks are spaces or tabs; elsewhere a tab is a control character */
    assert_int_equal(parse("{\"schedule\":\"0\\t9 *\\t* 1\"}", 1, msg), VB_OK);
    assert_int_equal(parse("{\"name\":\"a\\tb\"}", 1, msg), VB_ERR_INVALID);
    assert_int_equal(parse("{\"schedule\":\"0\\n9 * * 1\"}", 1, msg), VB_ERR_INVALID);
    assert_int_equal(parse("{\"name\":\"\xff\xfe\"}", 1, msg), VB_ERR_INVALID);
    assert_non_null(strstr(msg, "UTF-8"));
    assert_int_equal(parse("{\"timezone\":\"Mars/Olympus\"}", 1, msg), VB_ERR_INVALID);
    assert_non_null(strstr(msg, "timezone"));
    assert_int_equal(parse("{\"timezone\":\"../../etc/passwd\"}", 1, msg), VB_ERR_INVALID);
}

static void input_rejects_malformed_json_and_nul_bytes(void **state)
{
    vb_job_input in;
    vb_error err = {0};
    char msg[1024];
    assert_int_equal(parse("{\"name\":", 0, msg), VB_ERR_PARSE);
    assert_int_equal(parse("{} trailing", 0, msg), VB_ERR_PARSE);
    assert_int_equal(parse("", 0, msg), VB_ERR_PARSE);
    assert_int_equal(vb_job_input_parse("{\"name\":\"a\0b\"}", 14, 1, &in, &err), VB_ERR_PARSE);
    assert_non_null(strstr(err.msg, "NUL"));
    /* the escape \u0000 would cut the string short when decoded */
    assert_int_equal(parse("{\"name\":\"a\\u0000b\"}", 1, msg), VB_ERR_INVALID);
    assert_non_null(strstr(msg, "\\u0000"));
    assert_int_equal(parse("{\"name\\u0000\":\"a\"}", 1, msg), VB_ERR_INVALID);
    assert_int_equal(parse("{\"name\":\"a\\\\u0000 \\\"\\u0041\"}", 1, msg), VB_OK);
    /* deep nesting never crashes */
    size_t n = 100000;
    char *deep = malloc(2 * n + 1);
    memset(deep, '[', n);
    memset(deep + n, ']', n);
    deep[2 * n] = '\0';
    assert_int_not_equal(vb_job_input_parse(deep, 2 * n, 0, &in, &err), VB_OK);
    free(deep);
    assert_int_equal(parse("{}", 1, msg), VB_ERR_INVALID); /* nothing to update */
}

static void ids_are_validated(void **state)
{
    assert_true(vb_jobs_id_valid("550e8400-e29b-41d4-a716-446655440000"));
    assert_true(vb_jobs_id_valid("550E8400-E29B-41D4-A716-446655440000"));
    assert_false(vb_jobs_id_valid("550e8400e29b41d4a716446655440000"));
    assert_false(vb_jobs_id_valid("550e8400-e29b-41d4-a716-44665544000g"));
    assert_false(vb_jobs_id_valid(NULL));
}

/* ---- Redis-backed ---- */

static int setup_redis(void **state)
{
    if (vb_test_redis_flush(DB) != 0) {
        if (vb_test_allow_no_redis())
            return 0;
        fprintf(stderr, "Redis unreachable at %s (set VB_ALLOW_NO_REDIS=1 to skip)\n",
                vb_test_redis_url(DB));
        return -1;
    }
    vb_jobs_opts o = {.redis_url = vb_test_redis_url(DB), .secret_key = test_key, .exec_cap = 3};
    vb_jobs *j = NULL;
    vb_error err = {0};
    if (vb_jobs_new(&o, &j, &err) != VB_OK) {
        fprintf(stderr, "vb_jobs_new: %s\n", err.msg);
        return -1;
    }
    *state = j;
    return 0;
}

static int teardown_redis(void **state)
{
    vb_jobs_free(*state);
    return 0;
}

#define JOBS()                                                                                     \
    vb_jobs *j = *state;                                                                           \
    if (!j)                                                                                        \
        skip();

static void create_guide_job(vb_jobs *j, vb_job *out)
{
    vb_job_input in;
    vb_error err = {0};
    assert_int_equal(vb_job_input_parse(GUIDE_BODY, strlen(GUIDE_BODY), 0, &in, &err), VB_OK);
    assert_int_equal(vb_jobs_create(j, &in, out, &err), VB_OK);
    vb_job_input_free(&in);
}

static char *hget(const char *key, const char *field)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "HGET %s %%s", key);
    redisReply *r = vb_test_redis(DB, cmd, field);
    assert_non_null(r);
    char *v = r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
    freeReplyObject(r);
    return v;
}

static void jobs_create_stores_sealed_key_and_defaults(void **state)
{
    JOBS();
    vb_job job;
    create_guide_job(j, &job);
    assert_true(vb_jobs_id_valid(job.job_id));
    assert_string_equal(job.timezone, "UTC");
    assert_false(job.enabled);
    assert_false(job.overlap_allow);
    assert_true(job.created_at > 0);
    char key[80];
    snprintf(key, sizeof key, "visionbatch:job:%s", job.job_id);
    redisReply *r = vb_test_redis(DB, "HGETALL %s", key);
    assert_non_null(r);
    assert_true(r->elements > 0);
    for (size_t i = 0; i < r->elements; i++)
        assert_null(strstr(r->element[i]->str, "your_jwt_token"));
    freeReplyObject(r);
    char *enc = hget(key, "external_api_key_enc");
    assert_true(strncmp(enc, "v1:", 3) == 0);
    free(enc);
    /* no executions yet: the running index covers them from the start */
    char *idx = hget(key, "running_idx");
    assert_non_null(idx);
    assert_string_equal(idx, "1");
    free(idx);
    char *plain = NULL;
    assert_int_equal(vb_jobs_open_key(j, &job, &plain, NULL), VB_OK);
    assert_string_equal(plain, "your_jwt_token");
    vb_crypto_free_secret(plain);
    long long v = 0;
    assert_int_equal(vb_jobs_version(j, &v, NULL), VB_OK);
    assert_true(v == 1);
    vb_job_free(&job);
}

static void jobs_refuse_a_key_without_secret(void **state)
{
    JOBS();
    vb_jobs_opts o = {.redis_url = vb_test_redis_url(DB)};
    vb_jobs *nokey = NULL;
    vb_error err = {0};
    assert_int_equal(vb_jobs_new(&o, &nokey, &err), VB_OK);
    vb_job_input in;
    assert_int_equal(vb_job_input_parse(GUIDE_BODY, strlen(GUIDE_BODY), 0, &in, &err), VB_OK);
    assert_int_equal(vb_jobs_create(nokey, &in, NULL, &err), VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "secret"));
    vb_job_input_free(&in);
    vb_job_list l;
    assert_int_equal(vb_jobs_list(nokey, 0, &l, &err), VB_OK);
    assert_int_equal(l.n, 0);
    vb_job_list_free(&l);
    vb_jobs_free(nokey);
}

/* A cron job's runs use the settings of the program with the job's URLs,
 * organization and opened key on top; the key is then redacted in logs. */
static void jobs_platform_config_overlays_the_job(void **state)
{
    JOBS();
    vb_job job;
    create_guide_job(j, &job);
    vb_config base;
    memset(&base, 0, sizeof base);
    base.external_api_get_url = "https://base.example/get";
    base.external_api_key = "base-key";
    base.organization_id = "base-org";
    base.topic = "base.topic";
    vb_config c;
    vb_error err = {0};
    assert_int_equal(vb_jobs_platform_config(j, &job, &base, &c, &err), VB_OK);
    assert_string_equal(c.external_api_get_url,
                        "https://api.example.com/api/v1/documents/vision_analysis");
    assert_string_equal(c.external_api_post_url,
                        "https://api.example.com/api/v1/documents/vision_analysis/upload");
    assert_string_equal(c.external_api_key, "your_jwt_token");
    assert_string_equal(c.backend_api_url, "http://localhost:8000");
    assert_string_equal(c.organization_id, "your_org_id");
    assert_string_equal(c.topic, "base.topic");
    assert_string_equal(base.external_api_key, "base-key");
    char line[] = "sent your_jwt_token along";
    vb_redact_text(line);
    assert_null(strstr(line, "your_jwt_token"));
    vb_config_free(&c);

    vb_jobs_opts o = {.redis_url = vb_test_redis_url(DB)};
    vb_jobs *nokey = NULL;
    assert_int_equal(vb_jobs_new(&o, &nokey, &err), VB_OK);
    memset(&c, 0xff, sizeof c);
    assert_int_equal(vb_jobs_platform_config(nokey, &job, &base, &c, &err), VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "secret"));
    assert_null(c.topic);
    assert_null(c.external_api_key);
    vb_jobs_free(nokey);
    vb_job_free(&job);
}

static void jobs_update_enable_list_and_delete(void **state)
{
    JOBS();
    vb_job a, b, got;
    vb_error err = {0};
    create_guide_job(j, &a);
    create_guide_job(j, &b);
    assert_int_equal(vb_jobs_set_enabled(j, b.job_id, 1, &err), VB_OK);
    vb_job_list l;
    assert_int_equal(vb_jobs_list(j, 1, &l, &err), VB_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].job_id, b.job_id);
    vb_job_list_free(&l);
    assert_int_equal(vb_jobs_list(j, 0, &l, &err), VB_OK);
    assert_int_equal(l.n, 2);
    vb_job_list_free(&l);

    vb_job_input in;
    const char *upd = "{\"schedule\":\"*/30 * * * *\",\"timezone\":\"Europe/Berlin\"}";
    assert_int_equal(vb_job_input_parse(upd, strlen(upd), 1, &in, &err), VB_OK);
    assert_int_equal(vb_jobs_update(j, a.job_id, &in, &got, &err), VB_OK);
    assert_string_equal(got.schedule, "*/30 * * * *");
    assert_string_equal(got.timezone, "Europe/Berlin");
    assert_string_equal(got.name, "Test Vision Analysis Job"); /* kept */
    assert_string_equal(got.external_api_key_enc, a.external_api_key_enc);
    vb_job_free(&got);
    assert_int_equal(vb_jobs_update(j, "00000000-0000-4000-8000-000000000000", &in, NULL, &err),
                     VB_ERR_NOT_FOUND);
    vb_job_input_free(&in);

    long long v0 = 0, v1 = 0;
    assert_int_equal(vb_jobs_version(j, &v0, NULL), VB_OK);
    assert_int_equal(vb_jobs_delete(j, a.job_id, &err), VB_OK);
    assert_int_equal(vb_jobs_version(j, &v1, NULL), VB_OK);
    assert_true(v1 == v0 + 1);
    assert_int_equal(vb_jobs_get(j, a.job_id, &got, &err), VB_ERR_NOT_FOUND);
    assert_int_equal(vb_jobs_delete(j, a.job_id, &err), VB_ERR_NOT_FOUND);
    assert_int_equal(vb_jobs_set_enabled(j, a.job_id, 1, &err), VB_ERR_NOT_FOUND);
    vb_job_free(&a);
    vb_job_free(&b);
}

static void executions_are_recorded_capped_and_deleted_with_the_job(void **state)
{
    JOBS();
    vb_job job;
    vb_error err = {0};
    create_guide_job(j, &job);
    char ids[5][VB_UUID_SIZE];
    for (int i = 0; i < 5; i++) {
        vb_exec e = {0};
        snprintf(e.job_id, sizeof e.job_id, "%s", job.job_id);
        snprintf(e.status, sizeof e.status, "running");
        e.started_at = 1000LL * (i + 1);
        assert_int_equal(vb_jobs_exec_record(j, &e, &err), VB_OK);
        assert_true(vb_jobs_id_valid(e.execution_id));
        memcpy(ids[i], e.execution_id, VB_UUID_SIZE);
    }
    /* finish the newest */
    vb_exec e = {0};
    assert_int_equal(vb_jobs_exec_get(j, ids[4], &e, &err), VB_OK);
    snprintf(e.status, sizeof e.status, "success");
    e.completed_at = 9000;
    free(e.batch_id);
    e.batch_id = strdup("b1,b2");
    e.runs_found = 2;
    e.runs_published = 2;
    assert_int_equal(vb_jobs_exec_update(j, &e, &err), VB_OK);
    vb_exec_free(&e);

    vb_exec_list l;
    assert_int_equal(vb_jobs_exec_list(j, job.job_id, 50, &l, &err), VB_OK);
    assert_int_equal(l.n, 3); /* cap */
    assert_string_equal(l.items[0].execution_id, ids[4]);
    assert_string_equal(l.items[0].status, "success");
    assert_string_equal(l.items[0].batch_id, "b1,b2");
    assert_true(l.items[0].runs_published == 2);
    assert_string_equal(l.items[2].execution_id, ids[2]);
    vb_exec_list_free(&l);
    /* trimmed executions are gone */
    assert_int_equal(vb_jobs_exec_get(j, ids[0], &e, &err), VB_ERR_NOT_FOUND);
    assert_int_equal(vb_jobs_exec_list(j, job.job_id, 1, &l, &err), VB_OK);
    assert_int_equal(l.n, 1);
    vb_exec_list_free(&l);

    vb_exec bad = {0};
    snprintf(bad.job_id, sizeof bad.job_id, "%s", job.job_id);
    snprintf(bad.status, sizeof bad.status, "weird");
    assert_int_equal(vb_jobs_exec_record(j, &bad, &err), VB_ERR_INVALID);

    assert_int_equal(vb_jobs_delete(j, job.job_id, &err), VB_OK);
    assert_int_equal(vb_jobs_exec_get(j, ids[4], &e, &err), VB_ERR_NOT_FOUND);
    redisReply *r = vb_test_redis(DB, "KEYS %s", "visionbatch:exec:*");
    assert_non_null(r);
    assert_int_equal(r->elements, 0);
    freeReplyObject(r);
    vb_exec late = {0};
    snprintf(late.job_id, sizeof late.job_id, "%s", job.job_id);
    snprintf(late.status, sizeof late.status, "running");
    assert_int_equal(vb_jobs_exec_record(j, &late, &err), VB_ERR_NOT_FOUND);
    vb_job_free(&job);
}

static void jobs_new_reports_bad_urls_and_unreachable_redis(void **state)
{
    vb_jobs *j = NULL;
    vb_error err = {0};
    vb_jobs_opts o = {.redis_url = "http://x"};
    assert_int_equal(vb_jobs_new(&o, &j, &err), VB_ERR_CONFIG);
    assert_null(j);
    o.redis_url = "redis://:hunter22@127.0.0.1:1/0";
    o.connect_timeout_ms = 500;
    vb_error_clear(&err);
    assert_int_equal(vb_jobs_new(&o, &j, &err), VB_ERR_REDIS);
    assert_null(strstr(err.msg, "hunter22"));
    o.redis_url = "redis://127.0.0.1:99999/0";
    assert_int_equal(vb_jobs_new(&o, &j, &err), VB_ERR_CONFIG);
}

#define PAGED_JOBS 25

/* Pages through every job with `limit`; returns the number of pages and
 * appends the ids to ids[*n]. */
static int page_all(vb_jobs *j, size_t limit, int enabled_only, char ids[][VB_UUID_SIZE],
                    size_t *n, const char *delete_after_first)
{
    char after[VB_UUID_SIZE] = "", next[VB_UUID_SIZE];
    int pages = 0;
    do {
        vb_job_list l;
        vb_error err = {0};
        assert_int_equal(vb_jobs_list_page(j, after, limit, enabled_only, &l, next, &err), VB_OK);
        assert_true(l.n <= limit);
        for (size_t i = 0; i < l.n; i++)
            snprintf(ids[(*n)++], VB_UUID_SIZE, "%s", l.items[i].job_id);
        vb_job_list_free(&l);
        if (pages++ == 0 && delete_after_first)
            assert_int_equal(vb_jobs_delete(j, delete_after_first, &err), VB_OK);
        snprintf(after, sizeof after, "%s", next);
    } while (after[0]);
    return pages;
}

static void list_pages_return_every_job_once_in_id_order(void **state)
{
    JOBS();
    char created[PAGED_JOBS][VB_UUID_SIZE], ids[PAGED_JOBS][VB_UUID_SIZE];
    vb_error err = {0};
    for (int i = 0; i < PAGED_JOBS; i++) {
        vb_job job;
        create_guide_job(j, &job); /* created disabled */
        snprintf(created[i], VB_UUID_SIZE, "%s", job.job_id);
        vb_job_free(&job);
        if (i % 5 == 0)
            assert_int_equal(vb_jobs_set_enabled(j, created[i], 1, &err), VB_OK);
    }
    size_t n = 0;
    assert_int_equal(page_all(j, 7, 0, ids, &n, NULL), 4); /* 7 + 7 + 7 + 4 */
    assert_int_equal(n, PAGED_JOBS);
    for (size_t i = 1; i < n; i++)
        assert_true(strcmp(ids[i - 1], ids[i]) < 0); /* ascending: no repeats */
    for (int i = 0; i < PAGED_JOBS; i++) {
        int found = 0;
        for (size_t k = 0; k < n; k++)
            found += strcmp(created[i], ids[k]) == 0;
        assert_int_equal(found, 1);
    }
    /* enabled_only filters within pages; the cursor still walks every id */
    n = 0;
    page_all(j, 7, 1, ids, &n, NULL);
    assert_int_equal(n, PAGED_JOBS / 5);
    /* one page holding everything ends the paging */
    n = 0;
    assert_int_equal(page_all(j, VB_JOBS_PAGE_MAX, 0, ids, &n, NULL), 1);
    assert_int_equal(n, PAGED_JOBS);
    /* a job deleted while paging (the last id) is left out; every other job
     * still comes exactly once */
    char last[VB_UUID_SIZE];
    snprintf(last, sizeof last, "%s", ids[PAGED_JOBS - 1]);
    n = 0;
    page_all(j, 10, 0, ids, &n, last);
    assert_int_equal(n, PAGED_JOBS - 1);
    for (size_t i = 0; i < n; i++)
        assert_string_not_equal(ids[i], last);
    /* bad limits and cursors */
    vb_job_list l;
    char next[VB_UUID_SIZE];
    assert_int_equal(vb_jobs_list_page(j, NULL, 0, 0, &l, next, &err), VB_ERR_INVALID);
    assert_int_equal(vb_jobs_list_page(j, NULL, VB_JOBS_PAGE_MAX + 1, 0, &l, next, &err),
                     VB_ERR_INVALID);
    assert_int_equal(vb_jobs_list_page(j, "x' or 1", 5, 0, &l, next, &err), VB_ERR_INVALID);
    assert_int_equal(l.n, 0);
}

typedef struct borrower {
    vb_jobs_pool *pool;
    vb_jobs *got;
} borrower;

static void *borrow(void *arg)
{
    borrower *b = arg;
    b->got = vb_jobs_pool_get(b->pool, NULL);
    return NULL;
}

static void pool_lends_separate_connections_and_waits_for_one_back(void **state)
{
    JOBS();
    vb_jobs_opts o = {.redis_url = vb_test_redis_url(DB), .secret_key = test_key};
    vb_jobs_pool *pool = NULL;
    vb_error err = {0};
    assert_int_equal(vb_jobs_pool_new(&o, 2, &pool, &err), VB_OK);
    assert_int_equal(vb_jobs_pool_open_count(pool), 1);
    vb_jobs *a = vb_jobs_pool_get(pool, &err), *b = vb_jobs_pool_get(pool, &err);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b); /* a second borrower gets its own connection */
    assert_int_equal(vb_jobs_pool_open_count(pool), 2);
    assert_int_equal(vb_jobs_ping(a, &err), VB_OK);
    assert_int_equal(vb_jobs_ping(b, &err), VB_OK);
    /* the third borrower gets the first handle given back, no third one */
    borrower t = {pool, NULL};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, borrow, &t), 0);
    vb_jobs_pool_put(pool, b);
    pthread_join(th, NULL);
    assert_ptr_equal(t.got, b);
    assert_int_equal(vb_jobs_pool_open_count(pool), 2);
    vb_jobs_pool_put(pool, t.got);
    vb_jobs_pool_put(pool, a);
    vb_jobs_pool_free(pool);
    /* an unreachable Redis fails at creation */
    o.redis_url = "redis://127.0.0.1:1/0";
    assert_int_equal(vb_jobs_pool_new(&o, 2, &pool, &err), VB_ERR_REDIS);
    assert_null(pool);
}

int main(void)
{
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(input_accepts_the_guide_body),
        cmocka_unit_test(input_names_every_missing_field),
        cmocka_unit_test(input_rejects_unknown_and_duplicate_fields),
        cmocka_unit_test(input_rejects_wrong_types),
        cmocka_unit_test(input_jitter_is_an_integer_within_bounds),
        cmocka_unit_test(input_bad_cron_names_the_field),
        cmocka_unit_test(input_rejects_bad_urls),
        cmocka_unit_test(input_checks_strings),
        cmocka_unit_test(input_rejects_malformed_json_and_nul_bytes),
        cmocka_unit_test(ids_are_validated),
        cmocka_unit_test(jobs_new_reports_bad_urls_and_unreachable_redis),
    };
    const struct CMUnitTest live[] = {
        cmocka_unit_test_setup_teardown(jobs_create_stores_sealed_key_and_defaults, setup_redis,
                                        teardown_redis),
        cmocka_unit_test_setup_teardown(jobs_refuse_a_key_without_secret, setup_redis,
                                        teardown_redis),
        cmocka_unit_test_setup_teardown(jobs_platform_config_overlays_the_job, setup_redis,
                                        teardown_redis),
        cmocka_unit_test_setup_teardown(jobs_update_enable_list_and_delete, setup_redis,
                                        teardown_redis),
        cmocka_unit_test_setup_teardown(executions_are_recorded_capped_and_deleted_with_the_job,
                                        setup_redis, teardown_redis),
        cmocka_unit_test_setup_teardown(list_pages_return_every_job_once_in_id_order,
                                        setup_redis, teardown_redis),
        cmocka_unit_test_setup_teardown(pool_lends_separate_connections_and_waits_for_one_back,
                                        setup_redis, teardown_redis),
    };
    int failed = cmocka_run_group_tests_name("jobs_validation", pure, NULL, NULL);
    failed += cmocka_run_group_tests_name("jobs_redis", live, NULL, NULL);
    return failed;
}
