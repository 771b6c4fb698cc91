/* Tests of the REST API (producer/api.c, producer/openapi.c): the server runs
 * in-process on 127.0.0.1 with a free port, against a live Redis (database 13,
 * see redis_test_url.h), and is called with libcurl. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "api.h"
#include "console.h"
#include "redis_test_url.h"
#include "visionbatch/buf.h"
#include "visionbatch/cron.h"
#include "visionbatch/jobs.h"
#include "visionbatch/jobs_exec.h"

#define DB 13
#define SECRET_B64 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define API_KEY "your_jwt_token"
#define GUIDE_BODY                                                                                 \
    "{\n    \"name\": \"Test Vision Analysis Job\",\n    \"schedule\": \"0 * * * *\",\n"           \
    "    \"external_api_get_url\": \"https://api.example.com/api/v1/documents/vision_analysis\",\n" \
    "    \"external_api_post_url\": "                                                              \
    "\"https://api.example.com/api/v1/documents/vision_analysis/upload\",\n"                       \
    "    \"external_api_key\": \"" API_KEY "\",\n"                                                 \
    "    \"backend_api_url\": \"http://localhost:8000\",\n"                                        \
    "    \"organization_id\": \"your_org_id\",\n    \"enabled\": false\n  }"

typedef struct fixture {
    vb_api *api;
    vb_jobs *jobs;        /* the test's own handle on the API's Redis */
    atomic_int not_ready; /* 1: the readiness callback says no */
    int fired;
    char last_fired[VB_UUID_SIZE];
    atomic_int hold_fire; /* 1: the fire-now callback waits until it is 0 again */
    atomic_int in_fire;   /* the callback is waiting */
} fixture;

typedef struct http_result {
    long status;
    char *body;
    char allow[128];
    char ctype[128];
    char csp[512];
    char frame[32];
    cJSON *json;
} http_result;

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    vb_buf *b = ud;
    return vb_buf_append(b, p, sz * n) == VB_OK ? sz * n : 0;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
    http_result *r = ud;
    size_t len = sz * n;
    if (len > 7 && strncasecmp(p, "Allow: ", 7) == 0)
        snprintf(r->allow, sizeof r->allow, "%.*s", (int)(len - 9), p + 7);
    if (len > 14 && strncasecmp(p, "Content-Type: ", 14) == 0)
        snprintf(r->ctype, sizeof r->ctype, "%.*s", (int)(len - 16), p + 14);
    if (len > 25 && strncasecmp(p, "Content-Security-Policy: ", 25) == 0)
        snprintf(r->csp, sizeof r->csp, "%.*s", (int)(len - 27), p + 25);
    if (len > 17 && strncasecmp(p, "X-Frame-Options: ", 17) == 0)
        snprintf(r->frame, sizeof r->frame, "%.*s", (int)(len - 19), p + 17);
    return len;
}

/* One request; body_len = (size_t)-1 means strlen(body). */
static http_result call(fixture *f, const char *method, const char *path, const char *body,
                        size_t body_len, const char *ctype, const char *auth)
{
    http_result r = {0};
    vb_buf b = {0};
    char url[512], hdr[256];
    struct curl_slist *h = NULL;
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", vb_api_port(f->api), path);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)(body_len == (size_t)-1 ? strlen(body) : body_len));
    }
    if (ctype) {
        snprintf(hdr, sizeof hdr, "Content-Type: %s", ctype);
        h = curl_slist_append(h, hdr);
    } else if (body) {
        h = curl_slist_append(h, "Content-Type:"); /* no content type at all */
    }
    if (auth) {
        snprintf(hdr, sizeof hdr, "Authorization: %s", auth);
        h = curl_slist_append(h, hdr);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK)
        fail_msg("curl %s %s: %s", method, path, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    r.body = vb_buf_steal(&b);
    r.json = cJSON_Parse(r.body);
    return r;
}

static http_result get(fixture *f, const char *path)
{
    return call(f, "GET", path, NULL, 0, NULL, NULL);
}

static http_result post_json(fixture *f, const char *path, const char *body)
{
    return call(f, "POST", path, body, (size_t)-1, "application/json", NULL);
}

static void done(http_result *r)
{
    free(r->body);
    cJSON_Delete(r->json);
    memset(r, 0, sizeof *r);
}

static const char *jstr(const cJSON *o, const char *name)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    assert_true(cJSON_IsString(it));
    return it->valuestring;
}

static void assert_detail_contains(http_result *r, long status, const char *needle)
{
    if (r->status != status)
        fail_msg("expected %ld, got %ld: %s", status, r->status, r->body);
    assert_non_null(r->json);
    const char *d = jstr(r->json, "detail");
    if (needle && !strstr(d, needle))
        fail_msg("detail \"%s\" lacks \"%s\"", d, needle);
}

/* ---- callbacks standing in for the producer ---- */

static vb_err fire_now(void *ctx, const char *job_id, char execution_id[VB_UUID_SIZE],
                       vb_error *err)
{
    fixture *f = ctx;
    if (atomic_load(&f->hold_fire)) {
        atomic_store(&f->in_fire, 1);
        while (atomic_load(&f->hold_fire))
            usleep(1000);
    }
    f->fired++;
    snprintf(f->last_fired, sizeof f->last_fired, "%s", job_id);
    snprintf(execution_id, VB_UUID_SIZE, "11111111-2222-4333-8444-555555555555");
    return VB_OK;
}

static vb_err run_state(void *ctx, const char *run_id, char **json, vb_error *err)
{
    if (strcmp(run_id, "ORG:RUN-3") == 0) { /* ':' belongs to the run id rule */
        *json = strdup("{\"vision_analysis_id\":\"ORG:RUN-3\",\"state\":\"uploaded\"}");
        return VB_OK;
    }
    if (strcmp(run_id, "RUN-1") != 0)
        return vb_error_set(err, VB_ERR_NOT_FOUND, "no state");
    *json = strdup("{\"vision_analysis_id\":\"RUN-1\",\"state\":\"queued\"}");
    return VB_OK;
}

static int ready(void *ctx, char *why, size_t len)
{
    fixture *f = ctx;
    if (!atomic_load(&f->not_ready))
        return 1;
    snprintf(why, len, "kafka: no broker reachable");
    return 0;
}

static vb_api *start(fixture *f, const char *token, const char *secret, vb_error *err)
{
    vb_api_opts o = {
        .listen = "127.0.0.1:0",
        .token = token,
        .redis_url = vb_test_redis_url(DB),
        .secret_key = secret,
        .cb = {.ctx = f, .fire_now = fire_now, .run_state_json = run_state, .ready = ready},
    };
    return vb_api_start(&o, err);
}

static int setup(void **state)
{
    if (vb_test_redis_flush(DB) != 0) {
        if (vb_test_allow_no_redis()) {
            *state = NULL;
            return 0;
        }
        fprintf(stderr, "Redis unreachable at %s (set VB_ALLOW_NO_REDIS=1 to skip)\n",
                vb_test_redis_url(DB));
        return -1;
    }
    fixture *f = calloc(1, sizeof *f);
    vb_error err = {0};
    f->api = start(f, NULL, SECRET_B64, &err);
    if (!f->api) {
        fprintf(stderr, "vb_api_start: %s\n", err.msg);
        free(f);
        return -1;
    }
    vb_jobs_opts jo = {.redis_url = vb_test_redis_url(DB)};
    if (vb_jobs_new(&jo, &f->jobs, &err) != VB_OK) {
        fprintf(stderr, "vb_jobs_new: %s\n", err.msg);
        vb_api_stop(f->api);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (f) {
        vb_api_stop(f->api);
        vb_jobs_free(f->jobs);
        free(f);
    }
    return 0;
}

#define FIX()                                                                                      \
    fixture *f = *state;                                                                           \
    if (!f)                                                                                        \
        skip();

static void create_guide_job(fixture *f, char id[VB_UUID_SIZE])
{
    http_result r = post_json(f, "/cron-jobs", GUIDE_BODY);
    if (r.status != 201)
        fail_msg("create: %ld %s", r.status, r.body);
    snprintf(id, VB_UUID_SIZE, "%s", jstr(r.json, "job_id"));
    done(&r);
}

/* ---- tests ---- */

static void api_guide_flow(void **state)
{
    FIX();
    char path[256], id[VB_UUID_SIZE];
    /* 1. create: exact shape */
    http_result r = post_json(f, "/cron-jobs", GUIDE_BODY);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.ctype, "application/json");
    assert_int_equal(cJSON_GetArraySize(r.json), 5);
    assert_string_equal(jstr(r.json, "status"), "success");
    assert_string_equal(jstr(r.json, "name"), "Test Vision Analysis Job");
    assert_string_equal(jstr(r.json, "schedule"), "0 * * * *");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(r.json, "enabled")));
    snprintf(id, sizeof id, "%s", jstr(r.json, "job_id"));
    assert_true(vb_jobs_id_valid(id));
    done(&r);

    /* 2. get: masked key, next_run at the top of the next hour */
    snprintf(path, sizeof path, "/cron-jobs/%s", id);
    time_t before = time(NULL);
    r = get(f, path);
    time_t after = time(NULL);
    assert_int_equal(r.status, 200);
    assert_null(strstr(r.body, API_KEY));
    assert_string_equal(jstr(r.json, "job_id"), id);
    const cJSON *cfg = cJSON_GetObjectItem(r.json, "config");
    assert_string_equal(jstr(cfg, "external_api_key"), "***");
    assert_string_equal(jstr(cfg, "backend_api_url"), "http://localhost:8000");
    assert_string_equal(jstr(cfg, "organization_id"), "your_org_id");
    assert_string_equal(jstr(cfg, "external_api_get_url"),
                        "https://api.example.com/api/v1/documents/vision_analysis");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(r.json, "enabled")));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(r.json, "scheduled")));
    char want1[VB_TIME_STR_MAX], want2[VB_TIME_STR_MAX];
    vb_time_format_rfc3339_utc(before - before % 3600 + 3600, want1, sizeof want1);
    vb_time_format_rfc3339_utc(after - after % 3600 + 3600, want2, sizeof want2);
    const char *next = jstr(r.json, "next_run");
    assert_true(strcmp(next, want1) == 0 || strcmp(next, want2) == 0);
    assert_int_equal(strlen(jstr(r.json, "created_at")), 20);
    assert_int_equal(strlen(jstr(r.json, "updated_at")), 20);
    done(&r);

    /* 3. list and enabled_only */
    r = get(f, "/cron-jobs");
    assert_int_equal(r.status, 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "cron_jobs")), 1);
    assert_null(strstr(r.body, API_KEY));
    done(&r);
    r = get(f, "/cron-jobs?enabled_only=true");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "cron_jobs")), 0);
    done(&r);

    /* 4. activate */
    snprintf(path, sizeof path, "/cron-jobs/%s/activate", id);
    r = call(f, "POST", path, NULL, 0, NULL, NULL);
    assert_int_equal(r.status, 200);
    char msg[128];
    snprintf(msg, sizeof msg, "Cron job %s activated", id);
    assert_string_equal(jstr(r.json, "message"), msg);
    assert_string_equal(jstr(r.json, "status"), "success");
    done(&r);
    r = get(f, "/cron-jobs?enabled_only=true");
    const cJSON *arr = cJSON_GetObjectItem(r.json, "cron_jobs");
    assert_int_equal(cJSON_GetArraySize(arr), 1);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 0), "scheduled")));
    done(&r);

    /* deactivate */
    snprintf(path, sizeof path, "/cron-jobs/%s/deactivate", id);
    r = call(f, "POST", path, NULL, 0, NULL, NULL);
    snprintf(msg, sizeof msg, "Cron job %s deactivated", id);
    assert_string_equal(jstr(r.json, "message"), msg);
    done(&r);

    /* 5. executions: empty, then one recorded by the producer side */
    snprintf(path, sizeof path, "/cron-jobs/%s/executions", id);
    r = get(f, path);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "job_id"), id);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "executions")), 0);
    done(&r);
    vb_exec e = {0};
    snprintf(e.job_id, sizeof e.job_id, "%s", id);
    snprintf(e.status, sizeof e.status, "success");
    e.started_at = 1700000000000LL;
    e.completed_at = 1700000060000LL;
    e.output = (char *)"2 runs published";
    e.batch_id = (char *)"batch-1";
    assert_int_equal(vb_jobs_exec_record(f->jobs, &e, NULL), VB_OK);
    snprintf(path, sizeof path, "/cron-jobs/%s/executions?limit=20", id);
    r = get(f, path);
    const cJSON *ex = cJSON_GetArrayItem(cJSON_GetObjectItem(r.json, "executions"), 0);
    assert_non_null(ex);
    assert_string_equal(jstr(ex, "execution_id"), e.execution_id);
    assert_string_equal(jstr(ex, "job_id"), id);
    assert_string_equal(jstr(ex, "status"), "success");
    assert_string_equal(jstr(ex, "started_at"), "2023-11-14T22:13:20Z");
    assert_string_equal(jstr(ex, "completed_at"), "2023-11-14T22:14:20Z");
    assert_string_equal(jstr(ex, "output"), "2 runs published");
    assert_string_equal(jstr(ex, "batch_id"), "batch-1");
    done(&r);

    /* 6. delete, then 404 everywhere */
    snprintf(path, sizeof path, "/cron-jobs/%s", id);
    r = call(f, "DELETE", path, NULL, 0, NULL, NULL);
    assert_int_equal(r.status, 200);
    snprintf(msg, sizeof msg, "Cron job %s deleted", id);
    assert_string_equal(jstr(r.json, "message"), msg);
    done(&r);
    r = get(f, path);
    assert_detail_contains(&r, 404, "not found");
    done(&r);
    snprintf(path, sizeof path, "/cron-jobs/%s/executions", id);
    r = get(f, path);
    assert_int_equal(r.status, 404);
    done(&r);
}

static void api_rejects_invalid_bodies_with_named_fields(void **state)
{
    FIX();
    http_result r = post_json(f, "/cron-jobs", "{\"name\":\"x\"}");
    assert_detail_contains(&r, 400, "missing required field(s): schedule, external_api_get_url");
    done(&r);
    r = post_json(f, "/cron-jobs", "{\"name\":\"x\",\"bogus\":true}");
    assert_detail_contains(&r, 400, "unknown field(s): bogus");
    done(&r);
    const char *wrong_type = "{\"name\":\"n\",\"schedule\":\"0 * * * *\",\"external_api_get_url\":"
                             "\"https://a/x\",\"external_api_post_url\":\"https://a/y\","
                             "\"external_api_key\":\"k\",\"organization_id\":\"o\","
                             "\"enabled\":\"true\"}";
    r = post_json(f, "/cron-jobs", wrong_type);
    assert_detail_contains(&r, 400, "enabled must be a boolean");
    done(&r);
    char bad_cron[1024];
    snprintf(bad_cron, sizeof bad_cron, "%s", wrong_type);
    char *p = strstr(bad_cron, "0 * * * *");
    memcpy(p, "0 9 * * 8", 9); /* weekday 8 (keeps the length) */
    p = strstr(bad_cron, "\"true\"");
    memcpy(p, "true  ", 6);
    r = post_json(f, "/cron-jobs", bad_cron);
    assert_detail_contains(&r, 400, "schedule");
    assert_non_null(strstr(jstr(r.json, "detail"), "day-of-week"));
    done(&r);
    r = post_json(f, "/cron-jobs", "{\"name\":");
    assert_detail_contains(&r, 400, "not valid JSON");
    done(&r);
    r = call(f, "POST", "/cron-jobs", "{\"name\":\"a\0\"}", 13, "application/json", NULL);
    assert_detail_contains(&r, 400, "NUL");
    done(&r);
    r = call(f, "POST", "/cron-jobs", "{\"name\":\"x\"}", (size_t)-1, NULL, NULL);
    assert_detail_contains(&r, 400, "missing required"); /* no content type: accepted */
    done(&r);
    r = call(f, "POST", "/cron-jobs", "name=x", (size_t)-1, "application/x-www-form-urlencoded",
             NULL);
    assert_detail_contains(&r, 415, "application/json");
    done(&r);
    /* a bad URL in an update */
    char id[VB_UUID_SIZE], path[128];
    create_guide_job(f, id);
    snprintf(path, sizeof path, "/cron-jobs/%s", id);
    r = call(f, "PUT", path, "{\"external_api_post_url\":\"file:///etc/passwd\"}", (size_t)-1,
             "application/json", NULL);
    assert_detail_contains(&r, 400, "external_api_post_url must be an http:// or https:// URL");
    done(&r);
    r = call(f, "PUT", path, "{\"name\":\"Renamed\",\"overlap\":\"allow\"}", (size_t)-1,
             "application/json", NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "name"), "Renamed");
    assert_string_equal(jstr(r.json, "overlap"), "allow");
    assert_string_equal(jstr(cJSON_GetObjectItem(r.json, "config"), "external_api_key"), "***");
    done(&r);
}

/* Sends `request` as it is on a new connection and returns the whole answer
 * (the server closes the connection after it: the request says so). */
static char *raw_exchange(fixture *f, const char *request)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)vb_api_port(f->api))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(send(fd, request, strlen(request), MSG_NOSIGNAL), (ssize_t)strlen(request));
    vb_buf b = {0};
    char chunk[4096];
    ssize_t n;
    while ((n = recv(fd, chunk, sizeof chunk, 0)) > 0)
        assert_int_equal(vb_buf_append(&b, chunk, (size_t)n), VB_OK);
    close(fd);
    assert_non_null(b.data);
    return vb_buf_steal(&b);
}

/* Body checks at the edge: the media type is exactly application/json (with
 * parameters), Content-Length is not ambiguous, and a \u0000 escape cannot
 * cut a field short. */
static void api_body_edges(void **state)
{
    FIX();
    static const char *const refused[] = {"application/jsonX", "application/json5",
                                          "application/json-patch+json", "text/json",
                                          "application/jsonl; charset=utf-8"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        http_result r = call(f, "POST", "/cron-jobs", "{\"name\":\"x\"}", (size_t)-1,
                             refused[i], NULL);
        if (r.status != 415)
            fail_msg("Content-Type %s: status %ld", refused[i], r.status);
        done(&r);
    }
    static const char *const accepted[] = {"application/json", "Application/JSON",
                                           "application/json; charset=utf-8",
                                           "application/json ;charset=UTF-8"};
    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
        http_result r = call(f, "POST", "/cron-jobs", "{\"name\":\"x\"}", (size_t)-1,
                             accepted[i], NULL);
        assert_detail_contains(&r, 400, "missing required"); /* past the media type check */
        done(&r);
    }
    /* \u0000 in a value or a key is refused, not cut off; an escaped backslash
     * followed by "u0000" is ordinary text */
    http_result r = post_json(f, "/cron-jobs", "{\"name\":\"ab\\u0000cd\"}");
    assert_detail_contains(&r, 400, "\\u0000");
    done(&r);
    r = post_json(f, "/cron-jobs", "{\"name\\u0000x\":\"a\"}");
    assert_detail_contains(&r, 400, "\\u0000");
    done(&r);
    r = post_json(f, "/cron-jobs", "{\"name\":\"a\\\\u0000\"}");
    assert_detail_contains(&r, 400, "missing required");
    done(&r);
    /* two Content-Length headers that disagree */
    char *ans = raw_exchange(f, "POST /cron-jobs HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                                "Content-Type: application/json\r\nContent-Length: 12\r\n"
                                "Content-Length: 5\r\n\r\n{\"name\":\"x\"}");
    if (strncmp(ans, "HTTP/1.1 400", 12) != 0 || !strstr(ans, "conflicting Content-Length"))
        fail_msg("conflicting Content-Length answered: %.200s", ans);
    free(ans);
    ans = raw_exchange(f, "POST /cron-jobs HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                          "Content-Type: application/json\r\nContent-Length: 12\r\n"
                          "Content-Length: 12\r\n\r\n{\"name\":\"x\"}");
    if (strncmp(ans, "HTTP/1.1 400", 12) != 0 || !strstr(ans, "missing required"))
        fail_msg("repeated equal Content-Length answered: %.200s", ans);
    free(ans);
}

static void api_refuses_oversized_bodies(void **state)
{
    FIX();
    size_t n = 70 * 1024;
    char *big = malloc(n + 1);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    big[n] = '\0';
    http_result r = post_json(f, "/cron-jobs", big);
    assert_detail_contains(&r, 413, "larger than");
    done(&r);
    free(big);
    /* deep nesting within the limit is a 400, not a crash */
    n = 60 * 1024;
    char *deep = malloc(n + 1);
    memset(deep, '[', n / 2);
    memset(deep + n / 2, ']', n / 2);
    deep[n] = '\0';
    r = post_json(f, "/cron-jobs", deep);
    assert_int_equal(r.status, 400);
    done(&r);
    free(deep);
    r = post_json(f, "/cron-jobs", "{\"name\": 1e99999999999, \"schedule\": -0.0e-999999}");
    assert_int_equal(r.status, 400);
    done(&r);
}

static void api_routes_405_and_404(void **state)
{
    FIX();
    http_result r = call(f, "PATCH", "/cron-jobs", NULL, 0, NULL, NULL);
    assert_detail_contains(&r, 405, NULL);
    assert_string_equal(r.allow, "POST, GET");
    done(&r);
    r = call(f, "GET", "/cron-jobs/550e8400-e29b-41d4-a716-446655440000/activate", NULL, 0, NULL,
             NULL);
    assert_int_equal(r.status, 405);
    assert_string_equal(r.allow, "POST");
    done(&r);
    r = call(f, "POST", "/cron-jobs/550e8400-e29b-41d4-a716-446655440000", NULL, 0, NULL, NULL);
    assert_int_equal(r.status, 405);
    assert_string_equal(r.allow, "GET, PUT, DELETE");
    done(&r);
    r = get(f, "/nope");
    assert_detail_contains(&r, 404, "not found");
    done(&r);
    r = get(f, "/cron-jobs/550e8400-e29b-41d4-a716-446655440000");
    assert_int_equal(r.status, 404);
    done(&r);
    r = get(f, "/cron-jobs/not-a-uuid");
    assert_int_equal(r.status, 404);
    done(&r);
    r = call(f, "POST", "/cron-jobs/550e8400-e29b-41d4-a716-446655440000/activate", NULL, 0, NULL,
             NULL);
    assert_int_equal(r.status, 404);
    done(&r);
    r = get(f, "/cron-jobs?enabled_only=maybe");
    assert_detail_contains(&r, 400, "enabled_only");
    done(&r);
}

static void api_extensions(void **state)
{
    FIX();
    char id[VB_UUID_SIZE], path[128];
    create_guide_job(f, id);
    snprintf(path, sizeof path, "/cron-jobs/%s/run", id);
    http_result r = call(f, "POST", path, NULL, 0, NULL, NULL);
    assert_int_equal(r.status, 202);
    assert_string_equal(jstr(r.json, "execution_id"), "11111111-2222-4333-8444-555555555555");
    assert_int_equal(f->fired, 1);
    assert_string_equal(f->last_fired, id);
    done(&r);
    r = call(f, "POST", "/cron-jobs/550e8400-e29b-41d4-a716-446655440000/run", NULL, 0, NULL, NULL);
    assert_int_equal(r.status, 404);
    assert_int_equal(f->fired, 1);
    done(&r);

    snprintf(path, sizeof path, "/cron-jobs/%s/next-runs?count=3", id);
    r = get(f, path);
    const cJSON *runs = cJSON_GetObjectItem(r.json, "next_runs");
    assert_int_equal(cJSON_GetArraySize(runs), 3);
    const char *u0 = jstr(cJSON_GetArrayItem(runs, 0), "utc");
    assert_string_equal(u0 + 13, ":00:00Z");
    assert_string_equal(jstr(cJSON_GetArrayItem(runs, 0), "local") + 19, "+00:00");
    done(&r);
    snprintf(path, sizeof path, "/cron-jobs/%s/next-runs?count=101", id);
    r = get(f, path);
    assert_int_equal(r.status, 400);
    done(&r);
    snprintf(path, sizeof path, "/cron-jobs/%s/executions?limit=0", id);
    r = get(f, path);
    assert_detail_contains(&r, 400, "limit");
    done(&r);

    r = get(f, "/runs/RUN-1");
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "state"), "queued");
    done(&r);
    r = get(f, "/runs/RUN-2");
    assert_int_equal(r.status, 404);
    done(&r);
    r = get(f, "/runs/ORG:RUN-3");
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "state"), "uploaded");
    done(&r);
    r = get(f, "/runs/ORG%3ARUN-3");
    assert_int_equal(r.status, 200);
    done(&r);
    r = get(f, "/runs/...");
    assert_int_equal(r.status, 404);
    done(&r);

    r = get(f, "/healthz");
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "status"), "ok");
    done(&r);
    r = get(f, "/readyz");
    assert_int_equal(r.status, 200);
    done(&r);
    atomic_store(&f->not_ready, 1);
    r = get(f, "/readyz");
    assert_detail_contains(&r, 503, "kafka");
    done(&r);
    atomic_store(&f->not_ready, 0);

    r = get(f, "/metrics");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.ctype, "text/plain"));
    assert_non_null(strstr(r.body, "visionbatch_api_requests_total{method=\"POST\",route=\"/cron-"
                                   "jobs/{}/run\",code=\"202\"} 1"));
    done(&r);
}

static void api_openapi_parses_and_lists_every_route(void **state)
{
    FIX();
    http_result r = get(f, "/openapi.json");
    assert_int_equal(r.status, 200);
    assert_non_null(r.json);
    const cJSON *paths = cJSON_GetObjectItem(r.json, "paths");
    assert_non_null(paths);
    const char *method, *pattern;
    for (size_t i = 0; vb_api_route(i, &method, &pattern); i++) {
        char p[128], m[16];
        size_t o = 0;
        for (const char *s = pattern; *s && o + 20 < sizeof p; s++) {
            if (s[0] == '{' && s[1] == '}') {
                const char *name = strncmp(pattern, "/runs", 5) == 0 ? "{vision_analysis_id}"
                                   : strncmp(pattern, "/ui", 3) == 0   ? "{asset}"
                                   : strncmp(pattern, "/dlq", 4) == 0  ? "{run_id}"
                                                                       : "{job_id}";
                o += (size_t)snprintf(p + o, sizeof p - o, "%s", name);
                s++;
            } else {
                p[o++] = *s;
            }
        }
        p[o] = '\0';
        size_t k = 0;
        for (; method[k] && k + 1 < sizeof m; k++)
            m[k] = (char)tolower((unsigned char)method[k]);
        m[k] = '\0';
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(paths, p);
        if (!item || !cJSON_GetObjectItemCaseSensitive(item, m))
            fail_msg("openapi.json lacks %s %s", m, p);
    }
    done(&r);
}

/* "/cron-jobs/{job_id}/run" → "/cron-jobs/{}/run": the route table's form. */
static void route_form(const char *path, char *out, size_t outlen)
{
    size_t o = 0;
    for (const char *s = path; *s && o + 3 < outlen; s++) {
        if (*s == '{') {
            const char *close = strchr(s, '}');
            assert_non_null(close);
            out[o++] = '{';
            out[o++] = '}';
            s = close;
        } else {
            out[o++] = *s;
        }
    }
    out[o] = '\0';
}

/* The embedded document and the route table list the same paths and
 * methods, in both directions (no server or Redis needed). */
static void api_openapi_paths_and_methods_equal_the_route_table(void **state)
{
    static const char *const verbs[] = {"get", "put", "post", "delete", "options",
                                        "head", "patch", "trace"};
    cJSON *doc = cJSON_Parse(vb_api_openapi_json());
    assert_non_null(doc);
    const cJSON *paths = cJSON_GetObjectItemCaseSensitive(doc, "paths");
    assert_true(cJSON_IsObject(paths));
    char listed[64][160]; /* "METHOD pattern" of the document */
    size_t nlisted = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, paths)
    {
        char form[128];
        route_form(item->string, form, sizeof form);
        const cJSON *op;
        cJSON_ArrayForEach(op, item)
        {
            size_t v = 0;
            while (v < sizeof verbs / sizeof *verbs && strcmp(op->string, verbs[v]) != 0)
                v++;
            if (v == sizeof verbs / sizeof *verbs)
                continue; /* "parameters", "summary", … */
            assert_true(nlisted < sizeof listed / sizeof *listed);
            char up[16];
            size_t k = 0;
            for (; op->string[k] && k + 1 < sizeof up; k++)
                up[k] = (char)toupper((unsigned char)op->string[k]);
            up[k] = '\0';
            snprintf(listed[nlisted++], sizeof listed[0], "%s %s", up, form);
        }
    }
    const char *method, *pattern;
    size_t nroutes = 0;
    for (; vb_api_route(nroutes, &method, &pattern); nroutes++) {
        char want[160];
        snprintf(want, sizeof want, "%s %s", method, pattern);
        size_t i = 0;
        while (i < nlisted && strcmp(listed[i], want) != 0)
            i++;
        if (i == nlisted)
            fail_msg("the route %s is missing from openapi.json", want);
    }
    for (size_t i = 0; i < nlisted; i++) {
        size_t r = 0;
        char have[160] = "";
        while (vb_api_route(r, &method, &pattern)) {
            snprintf(have, sizeof have, "%s %s", method, pattern);
            if (strcmp(have, listed[i]) == 0)
                break;
            r++;
        }
        if (strcmp(have, listed[i]) != 0)
            fail_msg("openapi.json lists %s, which no route serves", listed[i]);
    }
    assert_int_equal(nlisted, nroutes);
    cJSON_Delete(doc);
}

static void api_token_mode(void **state)
{
    FIX();
    fixture g = {0};
    vb_error err = {0};
    g.api = start(&g, "s3cret-token-value", SECRET_B64, &err);
    assert_non_null(g.api);
    http_result r = call(&g, "GET", "/cron-jobs", NULL, 0, NULL, NULL);
    assert_detail_contains(&r, 401, "token");
    done(&r);
    r = call(&g, "GET", "/cron-jobs", NULL, 0, NULL, "Bearer wrong-token-value");
    assert_int_equal(r.status, 401);
    done(&r);
    r = call(&g, "GET", "/cron-jobs", NULL, 0, NULL, "Basic s3cret-token-value");
    assert_int_equal(r.status, 401);
    done(&r);
    r = call(&g, "GET", "/cron-jobs", NULL, 0, NULL, "Bearer s3cret-token-value");
    assert_int_equal(r.status, 200);
    done(&r);
    r = call(&g, "GET", "/nope", NULL, 0, NULL, NULL);
    assert_int_equal(r.status, 401); /* unknown paths are not disclosed */
    done(&r);
    r = call(&g, "POST", "/cron-jobs", GUIDE_BODY, (size_t)-1, "application/json", NULL);
    assert_int_equal(r.status, 401);
    done(&r);
    r = call(&g, "GET", "/healthz", NULL, 0, NULL, NULL);
    assert_int_equal(r.status, 200);
    done(&r);
    /* probes and scrapes carry no token (Kubernetes httpGet, Prometheus) */
    r = call(&g, "GET", "/readyz", NULL, 0, NULL, NULL);
    assert_int_equal(r.status, 200);
    done(&r);
    r = call(&g, "GET", "/metrics", NULL, 0, NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "visionbatch_api_requests_total"));
    done(&r);
    r = call(&g, "GET", "/openapi.json", NULL, 0, NULL, NULL);
    assert_int_equal(r.status, 401);
    done(&r);
    vb_api_stop(g.api);
}

static void api_refuses_non_loopback_without_token(void **state)
{
    vb_error err = {0};
    vb_api_opts o = {.listen = "0.0.0.0:0", .redis_url = vb_test_redis_url(DB)};
    assert_null(vb_api_start(&o, &err));
    assert_int_equal(err.code, VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "token"));
    o.listen = "[::]:0";
    vb_error_clear(&err);
    assert_null(vb_api_start(&o, &err));
    assert_non_null(strstr(err.msg, "non-loopback"));
    o.listen = "127.0.0.1:0";
    o.secret_key = "too-short";
    vb_error_clear(&err);
    assert_null(vb_api_start(&o, &err));
    assert_non_null(strstr(err.msg, "secret key"));

    char host[64];
    int port, v6, loop;
    assert_int_equal(vb_api_listen_parse("[::1]:8000", host, &port, &v6, &loop, NULL), VB_OK);
    assert_string_equal(host, "::1");
    assert_true(v6 && loop && port == 8000);
    assert_int_equal(vb_api_listen_parse("localhost:80", host, &port, &v6, &loop, NULL), VB_OK);
    assert_true(!v6 && loop);
    assert_int_equal(vb_api_listen_parse("10.0.0.1:80", host, &port, &v6, &loop, NULL), VB_OK);
    assert_false(loop);
    assert_int_equal(vb_api_listen_parse("127.0.0.1", host, &port, &v6, &loop, NULL),
                     VB_ERR_CONFIG);
    assert_int_equal(vb_api_listen_parse("127.0.0.1:65536", host, &port, &v6, &loop, NULL),
                     VB_ERR_CONFIG);
    assert_int_equal(vb_api_listen_parse("::1:80", host, &port, &v6, &loop, NULL), VB_ERR_CONFIG);
    assert_int_equal(vb_api_listen_parse("example.com:80", host, &port, &v6, &loop, NULL),
                     VB_ERR_CONFIG);
}

static void api_key_never_stored_or_returned_in_plaintext(void **state)
{
    FIX();
    char id[VB_UUID_SIZE], path[160], key[80];
    create_guide_job(f, id);
    snprintf(key, sizeof key, "visionbatch:job:%s", id);
    redisReply *h = vb_test_redis(DB, "HGETALL %s", key);
    assert_non_null(h);
    assert_true(h->elements >= 20);
    for (size_t i = 0; i < h->elements; i++)
        assert_null(strstr(h->element[i]->str, API_KEY));
    freeReplyObject(h);
    const char *pre[] = {"/cron-jobs", "/cron-jobs/", "/cron-jobs/", "/cron-jobs/", "/metrics",
                         "/openapi.json"};
    const char *post[] = {"", "", "/executions", "/next-runs", "", ""};
    for (size_t i = 0; i < sizeof pre / sizeof pre[0]; i++) {
        snprintf(path, sizeof path, "%s%s%s", pre[i], i >= 1 && i <= 3 ? id : "", post[i]);
        http_result r = get(f, path);
        assert_int_equal(r.status, 200);
        assert_null(strstr(r.body, API_KEY));
        done(&r);
    }
    /* without a secret key the API refuses to store keys */
    fixture g = {0};
    vb_error err = {0};
    g.api = start(&g, NULL, NULL, &err);
    assert_non_null(g.api);
    http_result r = call(&g, "POST", "/cron-jobs", GUIDE_BODY, (size_t)-1, "application/json",
                         NULL);
    assert_detail_contains(&r, 500, "secret");
    assert_null(strstr(r.body, API_KEY));
    done(&r);
    vb_api_stop(g.api);
}

/* The console: open assets with the strict headers, token-guarded data
 * calls, the run page's and the preview's refusals naming the field. */
static void api_console_assets_and_read_endpoints(void **state)
{
    FIX();
    const char *tok = "Bearer console-token-value";
    http_result r = get(f, "/runs");
    assert_detail_contains(&r, 503, "console");
    done(&r);

    vb_console_opts co = {.redis_url = vb_test_redis_url(DB)};
    vb_console *console = vb_console_new(&co);
    assert_non_null(console);
    fixture g = {0};
    vb_error err = {0};
    vb_api_opts o = {.listen = "127.0.0.1:0", .token = "console-token-value",
                     .redis_url = vb_test_redis_url(DB), .cb = {.console = console}};
    g.api = vb_api_start(&o, &err);
    assert_non_null(g.api);

    static const char *const assets[][2] = {{"/ui", "text/html"},
                                            {"/ui/", "text/html"},
                                            {"/ui/index.html", "text/html"},
                                            {"/ui/app.css", "text/css"},
                                            {"/ui/app.js", "text/javascript"}};
    for (size_t i = 0; i < sizeof assets / sizeof assets[0]; i++) {
        r = call(&g, "GET", assets[i][0], NULL, 0, NULL, NULL); /* no token needed */
        assert_int_equal(r.status, 200);
        assert_non_null(strstr(r.ctype, assets[i][1]));
        assert_non_null(strstr(r.csp, "script-src 'self'"));
        assert_non_null(strstr(r.csp, "frame-ancestors 'none'"));
        assert_null(strstr(r.csp, "unsafe"));
        assert_string_equal(r.frame, "DENY");
        assert_null(strstr(r.body, "<script>")); /* no inline script */
        assert_null(strstr(r.body, " style="));  /* nor inline style */
        assert_null(strstr(r.body, "innerHTML"));
        assert_null(strstr(r.body, "http://"));  /* nothing from elsewhere */
        assert_null(strstr(r.body, "https://"));
        done(&r);
    }
    r = call(&g, "GET", "/ui/../openapi.json", NULL, 0, NULL, NULL);
    assert_int_not_equal(r.status, 200);
    done(&r);
    r = call(&g, "GET", "/ui/secret.txt", NULL, 0, NULL, NULL);
    assert_int_equal(r.status, 404);
    done(&r);

    r = call(&g, "GET", "/runs", NULL, 0, NULL, NULL);
    assert_int_equal(r.status, 401);
    done(&r);
    r = call(&g, "GET", "/runs?limit=5", NULL, 0, NULL, tok);
    assert_int_equal(r.status, 200);
    assert_non_null(cJSON_GetObjectItem(r.json, "runs"));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(r.json, "next_cursor")));
    const cJSON *counts = cJSON_GetObjectItem(r.json, "state_counts");
    assert_int_equal(cJSON_GetArraySize(counts), 6);
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(counts, "dead")));
    done(&r);
    static const char *const bad_runs[] = {"/runs?limit=0", "/runs?limit=501",
                                           "/runs?state=asleep", "/runs?cursor=nope",
                                           "/runs?cursor=12:bad%20id"};
    for (size_t i = 0; i < sizeof bad_runs / sizeof bad_runs[0]; i++) {
        r = call(&g, "GET", bad_runs[i], NULL, 0, NULL, tok);
        assert_int_equal(r.status, 400);
        done(&r);
    }
    r = call(&g, "POST", "/runs/NOPE-1/retry", NULL, 0, NULL, tok);
    assert_int_equal(r.status, 404);
    done(&r);
    r = call(&g, "GET", "/workers", NULL, 0, NULL, tok);
    assert_detail_contains(&r, 503, "Kafka");
    done(&r);
    r = call(&g, "GET", "/dlq?limit=0", NULL, 0, NULL, tok);
    assert_int_equal(r.status, 400);
    done(&r);
    r = call(&g, "GET", "/dlq", NULL, 0, NULL, tok);
    assert_detail_contains(&r, 503, "Kafka");
    done(&r);
    r = call(&g, "POST", "/dlq/RUN-1/replay", NULL, 0, NULL, tok);
    assert_detail_contains(&r, 503, "Kafka");
    done(&r);

    r = call(&g, "GET", "/cron/preview?schedule=61%20*%20*%20*%20*", NULL, 0, NULL, tok);
    assert_detail_contains(&r, 400, "minute: value 61 out of range");
    assert_string_equal(jstr(r.json, "field"), "schedule");
    done(&r);
    r = call(&g, "GET", "/cron/preview?schedule=0%209%20*%20*%201&timezone=Mars/Olympus", NULL,
             0, NULL, tok);
    assert_string_equal(jstr(r.json, "field"), "timezone");
    done(&r);
    r = call(&g, "GET", "/cron/preview?schedule=0%209%20*%20*%201&count=0", NULL, 0, NULL, tok);
    assert_string_equal(jstr(r.json, "field"), "count");
    done(&r);
    /* Sundays of March at 09:00 in Berlin: the offsets show the DST change. */
    r = call(&g, "GET", "/cron/preview?schedule=0%209%20*%203%200&timezone=Europe/Berlin&count=8",
             NULL, 0, NULL, tok);
    assert_int_equal(r.status, 200);
    const cJSON *runs = cJSON_GetObjectItem(r.json, "next_runs");
    assert_int_equal(cJSON_GetArraySize(runs), 8);
    int winter = 0, summer = 0;
    for (int i = 0; i < 8; i++) {
        const char *local = jstr(cJSON_GetArrayItem(runs, i), "local");
        assert_non_null(strstr(local, "T09:00:00"));
        winter += strstr(local, "+01:00") != NULL;
        summer += strstr(local, "+02:00") != NULL;
    }
    assert_true(winter > 0 && summer > 0);
    done(&r);
    vb_api_stop(g.api);
    vb_console_free(console);
}

static void api_lists_jobs_in_pages(void **state)
{
    FIX();
    char ids[5][VB_UUID_SIZE], seen[5][VB_UUID_SIZE], path[256];
    for (int i = 0; i < 5; i++)
        create_guide_job(f, ids[i]);
    /* unpaged: every job, next_cursor null */
    http_result r = get(f, "/cron-jobs");
    assert_int_equal(r.status, 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "cron_jobs")), 5);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(r.json, "next_cursor")));
    done(&r);
    /* pages of 2: 2, 2, 1, each job once */
    int n = 0, pages = 0;
    snprintf(path, sizeof path, "/cron-jobs?limit=2");
    for (;;) {
        r = get(f, path);
        assert_int_equal(r.status, 200);
        const cJSON *arr = cJSON_GetObjectItem(r.json, "cron_jobs");
        assert_true(cJSON_GetArraySize(arr) <= 2);
        for (int i = 0; i < cJSON_GetArraySize(arr); i++) {
            assert_true(n < 5);
            snprintf(seen[n++], VB_UUID_SIZE, "%s", jstr(cJSON_GetArrayItem(arr, i), "job_id"));
        }
        pages++;
        const cJSON *next = cJSON_GetObjectItem(r.json, "next_cursor");
        if (cJSON_IsNull(next)) {
            done(&r);
            break;
        }
        assert_true(cJSON_IsString(next));
        snprintf(path, sizeof path, "/cron-jobs?limit=2&cursor=%s", next->valuestring);
        done(&r);
    }
    assert_int_equal(pages, 3);
    assert_int_equal(n, 5);
    for (int i = 0; i < 5; i++) {
        int found = 0;
        for (int k = 0; k < 5; k++)
            found += strcmp(ids[i], seen[k]) == 0;
        assert_int_equal(found, 1);
    }
    r = get(f, "/cron-jobs?limit=0");
    assert_detail_contains(&r, 400, "limit");
    done(&r);
    r = get(f, "/cron-jobs?limit=1001");
    assert_detail_contains(&r, 400, "limit");
    done(&r);
    r = get(f, "/cron-jobs?cursor=nope");
    assert_detail_contains(&r, 400, "cursor");
    done(&r);
}

/* ?include=last_execution: each job carries its newest execution, read with
 * the list, so a new execution shows at the next read. */
static void api_lists_jobs_with_their_last_execution(void **state)
{
    FIX();
    char a[VB_UUID_SIZE], b[VB_UUID_SIZE];
    create_guide_job(f, a);
    create_guide_job(f, b);
    vb_exec e = {0};
    snprintf(e.job_id, sizeof e.job_id, "%s", a);
    snprintf(e.status, sizeof e.status, "running");
    e.started_at = 1700000000000LL;
    assert_int_equal(vb_jobs_exec_record(f->jobs, &e, NULL), VB_OK);
    for (int round = 0; round < 2; round++) {
        http_result r = get(f, round == 0 ? "/cron-jobs?limit=10&include=last_execution"
                                          : "/cron-jobs?include=last_execution");
        assert_int_equal(r.status, 200);
        const cJSON *arr = cJSON_GetObjectItem(r.json, "cron_jobs");
        assert_int_equal(cJSON_GetArraySize(arr), 2);
        for (int i = 0; i < 2; i++) {
            const cJSON *j = cJSON_GetArrayItem(arr, i);
            const cJSON *last = cJSON_GetObjectItem(j, "last_execution");
            if (strcmp(jstr(j, "job_id"), a) == 0) {
                assert_string_equal(jstr(last, "execution_id"), e.execution_id);
                assert_string_equal(jstr(last, "status"), round == 0 ? "running" : "success");
            } else {
                assert_true(cJSON_IsNull(last));
            }
        }
        done(&r);
        /* the execution finishes: the next read shows it */
        snprintf(e.status, sizeof e.status, "success");
        e.completed_at = 1700000060000LL;
        assert_int_equal(vb_jobs_exec_update(f->jobs, &e, NULL), VB_OK);
    }
    http_result r = get(f, "/cron-jobs?limit=10");
    assert_null(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(r.json, "cron_jobs"),
                                                       0), "last_execution"));
    done(&r);
    r = get(f, "/cron-jobs?include=everything");
    assert_detail_contains(&r, 400, "include");
    done(&r);
}

typedef struct in_flight {
    fixture *f;
    char path[128];
    long status;
} in_flight;

static void *post_run(void *arg)
{
    in_flight *t = arg;
    http_result r = call(t->f, "POST", t->path, NULL, 0, NULL, NULL);
    t->status = r.status;
    done(&r);
    return NULL;
}

/* While one request holds a Redis connection (POST .../run, held inside the
 * producer's callback), another is served on a second pooled connection. */
static void api_serves_reads_while_a_connection_is_busy(void **state)
{
    FIX();
    char id[VB_UUID_SIZE], path[128];
    create_guide_job(f, id);
    in_flight t = {.f = f};
    snprintf(t.path, sizeof t.path, "/cron-jobs/%s/run", id);
    atomic_store(&f->hold_fire, 1);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, post_run, &t), 0);
    for (int i = 0; i < 10000 && !atomic_load(&f->in_fire); i++)
        usleep(1000);
    assert_true(atomic_load(&f->in_fire));
    snprintf(path, sizeof path, "/cron-jobs/%s", id);
    http_result r = get(f, path);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "job_id"), id);
    done(&r);
    r = get(f, "/metrics");
    assert_int_equal(r.status, 200);
    const char *g = strstr(r.body, "\nvisionbatch_api_redis_connections ");
    assert_non_null(g);
    assert_true(strtod(g + strlen("\nvisionbatch_api_redis_connections "), NULL) >= 2);
    done(&r);
    atomic_store(&f->hold_fire, 0);
    pthread_join(th, NULL);
    assert_int_equal(t.status, 202);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(api_guide_flow, setup, teardown),
        cmocka_unit_test_setup_teardown(api_lists_jobs_in_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(api_lists_jobs_with_their_last_execution, setup, teardown),
        cmocka_unit_test_setup_teardown(api_serves_reads_while_a_connection_is_busy, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(api_rejects_invalid_bodies_with_named_fields, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(api_body_edges, setup, teardown),
        cmocka_unit_test_setup_teardown(api_refuses_oversized_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(api_routes_405_and_404, setup, teardown),
        cmocka_unit_test_setup_teardown(api_extensions, setup, teardown),
        cmocka_unit_test_setup_teardown(api_openapi_parses_and_lists_every_route, setup, teardown),
        cmocka_unit_test(api_openapi_paths_and_methods_equal_the_route_table),
        cmocka_unit_test_setup_teardown(api_token_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(api_console_assets_and_read_endpoints, setup, teardown),
        cmocka_unit_test(api_refuses_non_loopback_without_token),
        cmocka_unit_test_setup_teardown(api_key_never_stored_or_returned_in_plaintext, setup,
                                        teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return failed;
}
