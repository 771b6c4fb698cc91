/*
 * Unit tests of http.c: backoff arithmetic, and real transfers against the
 * scripted local server of http_test_server.c (retries, Retry-After, size
 * caps, refused redirects, timeouts, cancellation, parallel downloads).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "http_test_server.h"
#include "util.h"
#include "visionbatch/http.h"

static ts_server server;
static char tmpdir[64];

static int group_setup(void **state)
{
    return ts_fixture_start(&server, tmpdir, sizeof tmpdir, "vb_http_test_");
}

static int group_teardown(void **state)
{
    ts_fixture_stop(&server, tmpdir);
    return 0;
}

static void url_of(char *out, size_t outlen, const char *path)
{
    snprintf(out, outlen, "http://127.0.0.1:%d%s", server.port, path);
}

/* Performs a GET of `path` under `pol`; returns the code, fills resp/err. */
static vb_err get(const char *path, const vb_http_policy *pol, vb_http_response *resp,
                  vb_error *err)
{
    char url[256];
    url_of(url, sizeof url, path);
    vb_http *h = vb_http_new();
    assert_non_null(h);
    vb_http_request req = {.url = url};
    vb_error_clear(err);
    vb_err rc = vb_http_perform(h, &req, pol, resp, err);
    vb_http_free(h);
    return rc;
}

typedef struct canceller {
    atomic_int flag;
    long after_ms;
    pthread_t thread;
} canceller;

static void *cancel_later(void *p)
{
    canceller *c = p;
    struct timespec ts = {.tv_sec = c->after_ms / 1000, .tv_nsec = (c->after_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    c->flag = 1;
    return NULL;
}

static void canceller_start(canceller *c, long after_ms)
{
    c->flag = 0;
    c->after_ms = after_ms;
    assert_int_equal(pthread_create(&c->thread, NULL, cancel_later, c), 0);
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void assert_pattern_file(const char *path, long long size)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, size);
    assert_int_equal(st.st_mode & 0777, 0600);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    for (long long i = 0; i < size; i++)
        assert_int_equal(fgetc(f), (unsigned char)ts_pattern(i));
    assert_int_equal(fgetc(f), EOF);
    fclose(f);
}

/* ---- backoff ---- */

static void backoff_stays_within_doubling_bounds(void **state)
{
    vb_http_policy pol = {.retry_base_ms = 100, .retry_max_ms = 1000};
    for (int attempt = 1; attempt <= 40; attempt++) {
        long bound = 100L << (attempt < 5 ? attempt - 1 : 4);
        if (bound > 1000)
            bound = 1000;
        long seen_max = 0;
        for (int i = 0; i < 300; i++) {
            long d = vb_http_backoff_ms(&pol, attempt, -1);
            assert_in_range(d, 0, bound);
            if (d > seen_max)
                seen_max = d;
        }
        /* Full jitter over [0, bound]: 300 draws all in the lower half is
         * (1/2)^300 — i.e. the bound is really used, so it grows. */
        assert_true(seen_max > bound / 2);
    }
}

static void backoff_uses_defaults_without_policy(void **state)
{
    for (int i = 0; i < 100; i++) {
        assert_in_range(vb_http_backoff_ms(NULL, 1, -1), 0, 500);
        assert_in_range(vb_http_backoff_ms(NULL, 30, -1), 0, 30000);
    }
}

static void backoff_honours_retry_after_capped_by_max(void **state)
{
    vb_http_policy pol = {.retry_base_ms = 100, .retry_max_ms = 5000};
    assert_int_equal(vb_http_backoff_ms(&pol, 1, 0), 0);
    assert_int_equal(vb_http_backoff_ms(&pol, 1, 2), 2000);
    assert_int_equal(vb_http_backoff_ms(&pol, 3, 100), 5000);
    assert_int_equal(vb_http_backoff_ms(&pol, 1, 2147483647L), 5000);
}

/* ---- vb_http_perform ---- */

static void perform_get_returns_body_status_and_content_type(void **state)
{
    vb_http_response resp;
    vb_error err;
    assert_int_equal(get("/ok", NULL, &resp, &err), VB_OK);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.body.data, "hello");
    assert_string_equal(resp.content_type, "application/json");
    assert_int_equal(resp.attempts, 1);
    assert_int_equal(resp.retry_after_s, -1);
    vb_http_response_free(&resp);
}

static void perform_post_sends_bearer_json_and_user_agent(void **state)
{
    char url[256];
    url_of(url, sizeof url, "/echo");
    vb_http *h = vb_http_new();
    const char *body = "{\"a\":1}";
    vb_http_request req = {.method = "POST", .url = url, .bearer = "tok-123",
                           .body = body, .body_len = strlen(body)};
    vb_http_response resp;
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_http_perform(h, &req, NULL, &resp, &err), VB_OK);
    const char *echo = resp.body.data;
    assert_non_null(strstr(echo, "POST /echo HTTP/1.1\r\n"));
    assert_non_null(strstr(echo, "\r\nAuthorization: Bearer tok-123\r\n"));
    assert_non_null(strstr(echo, "\r\nContent-Type: application/json\r\n"));
    assert_non_null(strstr(echo, "\r\nUser-Agent: visionbatch/0.1\r\n"));
    assert_non_null(strstr(echo, "\r\n\r\n{\"a\":1}"));
    vb_http_response_free(&resp);

    /* The same handle serves a DELETE next, without the previous body. */
    vb_http_request del = {.method = "DELETE", .url = url};
    assert_int_equal(vb_http_perform(h, &del, NULL, &resp, &err), VB_OK);
    assert_non_null(strstr(resp.body.data, "DELETE /echo HTTP/1.1\r\n"));
    assert_null(strstr(resp.body.data, "{\"a\":1}"));
    assert_null(strstr(resp.body.data, "Authorization"));
    vb_http_response_free(&resp);
    vb_http_free(h);
}

static void perform_multipart_streams_file_with_name_and_type(void **state)
{
    char path[128];
    snprintf(path, sizeof path, "%s/upload.bin", tmpdir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs("PNGDATA-0123456789", f);
    fclose(f);

    char url[256];
    url_of(url, sizeof url, "/echo");
    vb_http_part parts[] = {
        {.name = "image", .file_path = path, .filename = "photo.png", .content_type = "image/png"},
        {.name = "chat_id", .value = "cron_batch_job"},
    };
    vb_http_request req = {.method = "POST", .url = url, .parts = parts, .nparts = 2};
    vb_http *h = vb_http_new();
    vb_http_response resp;
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_http_perform(h, &req, NULL, &resp, &err), VB_OK);
    const char *echo = resp.body.data;
    assert_non_null(strstr(echo, "Content-Type: multipart/form-data; boundary="));
    assert_non_null(strstr(echo, "name=\"image\"; filename=\"photo.png\"\r\n"
                                 "Content-Type: image/png\r\n\r\nPNGDATA-0123456789\r\n"));
    assert_non_null(strstr(echo, "name=\"chat_id\"\r\n\r\ncron_batch_job\r\n"));
    vb_http_response_free(&resp);

    /* A missing file is a local error, reported before any transfer. */
    parts[0].file_path = "/nonexistent/file.png";
    assert_int_equal(vb_http_perform(h, &req, NULL, &resp, &err), VB_ERR_IO);
    assert_int_equal(resp.attempts, 0);
    vb_http_response_free(&resp);
    vb_http_free(h);
    unlink(path);
}

static void perform_retries_503_until_success(void **state)
{
    vb_http_policy pol = {.retries = 3, .retry_base_ms = 10, .retry_max_ms = 50,
                          .retry_on_5xx = 1};
    vb_http_response resp;
    vb_error err;
    assert_int_equal(get("/flaky/1/2", &pol, &resp, &err), VB_OK);
    assert_int_equal(resp.attempts, 3);
    assert_string_equal(resp.body.data, "finally");
    assert_int_equal(server.shared->hits[1], 3);
    vb_http_response_free(&resp);
}

typedef struct gate_case {
    int calls;
    int refuse_on; /* call number that refuses (0 = never) */
} gate_case;

static vb_err gate(void *ctx, vb_error *err)
{
    gate_case *g = ctx;
    g->calls++;
    if (g->refuse_on && g->calls >= g->refuse_on)
        return vb_error_set(err, VB_ERR_CANCELLED, "lock lost");
    return VB_OK;
}

static vb_err post_gated(const char *path, gate_case *g, vb_http_response *resp, vb_error *err)
{
    vb_http_policy pol = {.retries = 3, .retry_base_ms = 10, .retry_max_ms = 50,
                          .retry_on_5xx = 1};
    char url[256];
    url_of(url, sizeof url, path);
    vb_http *h = vb_http_new();
    assert_non_null(h);
    vb_http_request req = {.method = "POST", .url = url, .body = "{}", .body_len = 2,
                           .prereq = gate, .prereq_ctx = g};
    vb_error_clear(err);
    vb_err rc = vb_http_perform(h, &req, &pol, resp, err);
    vb_http_free(h);
    return rc;
}

static void perform_prereq_runs_before_every_attempt(void **state)
{
    gate_case g = {0, 0};
    vb_http_response resp;
    vb_error err;
    assert_int_equal(post_gated("/flaky/40/2", &g, &resp, &err), VB_OK);
    assert_int_equal(g.calls, 3);
    assert_int_equal(server.shared->hits[40], 3);
    vb_http_response_free(&resp);
}

static void perform_prereq_refusal_sends_nothing_and_stops_retrying(void **state)
{
    gate_case g = {0, 2}; /* the retry after the first 503 is refused */
    vb_http_response resp;
    vb_error err;
    assert_int_equal(post_gated("/flaky/41/5", &g, &resp, &err), VB_ERR_CANCELLED);
    assert_int_equal(g.calls, 2);
    assert_int_equal(server.shared->hits[41], 1); /* the refused attempt never arrived */
    assert_non_null(strstr(err.msg, "not sent: lock lost"));
    vb_http_response_free(&resp);
}

static void perform_does_not_retry_5xx_unless_asked(void **state)
{
    vb_http_policy pol = {.retries = 3, .retry_base_ms = 10};
    vb_http_response resp;
    vb_error err;
    assert_int_equal(get("/flaky/2/5", &pol, &resp, &err), VB_ERR_HTTP);
    assert_int_equal(err.code, VB_ERR_HTTP);
    assert_int_equal(err.http_status, 503);
    assert_int_equal(resp.status, 503);
    assert_int_equal(resp.attempts, 1);
    assert_string_equal(resp.body.data, "busy");
    vb_http_response_free(&resp);
}

static void perform_reports_last_status_when_retries_run_out(void **state)
{
    vb_http_policy pol = {.retries = 2, .retry_base_ms = 5, .retry_max_ms = 10,
                          .retry_on_5xx = 1};
    vb_http_response resp;
    vb_error err;
    assert_int_equal(get("/flaky/3/10", &pol, &resp, &err), VB_ERR_HTTP);
    assert_int_equal(resp.attempts, 3);
    assert_int_equal(err.http_status, 503);
    assert_non_null(strstr(err.msg, "HTTP 503"));
    assert_non_null(strstr(err.msg, "attempt 3 of 3"));
    assert_true(vb_error_is_transient(&err));
    vb_http_response_free(&resp);
}

static void perform_does_not_retry_404(void **state)
{
    vb_http_policy pol = {.retries = 3, .retry_base_ms = 5, .retry_on_5xx = 1};
    vb_http_response resp;
    vb_error err;
    assert_int_equal(get("/status/404", &pol, &resp, &err), VB_ERR_HTTP);
    assert_int_equal(resp.attempts, 1);
    assert_int_equal(err.http_status, 404);
    assert_false(vb_error_is_transient(&err));
    vb_http_response_free(&resp);
}

static void perform_waits_for_retry_after_on_429(void **state)
{
    vb_http_policy pol = {.retries = 1, .retry_base_ms = 5, .retry_max_ms = 5000,
                          .retry_on_5xx = 1};
    vb_http_response resp;
    vb_error err;
    long long t0 = vb__mono_ms();
    assert_int_equal(get("/retry-after/4/1", &pol, &resp, &err), VB_OK);
    long long took = vb__mono_ms() - t0;
    assert_int_equal(resp.attempts, 2);
    assert_true(took >= 950);
    assert_true(took < 4000);
    vb_http_response_free(&resp);
}

static void perform_caps_retry_after_by_retry_max(void **state)
{
    vb_http_policy pol = {.retries = 1, .retry_base_ms = 5, .retry_max_ms = 200,
                          .retry_on_5xx = 1};
    vb_http_response resp;
    vb_error err;
    long long t0 = vb__mono_ms();
    assert_int_equal(get("/retry-after/5/100", &pol, &resp, &err), VB_OK);
    long long took = vb__mono_ms() - t0;
    assert_int_equal(resp.attempts, 2);
    assert_true(took >= 190);
    assert_true(took < 3000);
    vb_http_response_free(&resp);
}

static void perform_captures_retry_after_of_final_answer(void **state)
{
    vb_http_response resp;
    vb_error err;
    assert_int_equal(get("/retry-after/10/7", NULL, &resp, &err), VB_ERR_HTTP);
    assert_int_equal(resp.status, 429);
    assert_int_equal(resp.retry_after_s, 7);
    assert_int_equal(err.http_status, 429);
    vb_http_response_free(&resp);
}

static void perform_understands_retry_after_http_date(void **state)
{
    vb_http_response resp;
    vb_error err;
    assert_int_equal(get("/retry-after-date/100", NULL, &resp, &err), VB_ERR_HTTP);
    assert_int_equal(resp.status, 503);
    assert_in_range(resp.retry_after_s, 97, 101);
    vb_http_response_free(&resp);
}

static void perform_keeps_capped_prefix_of_large_error_body(void **state)
{
    vb_http_policy pol = {.max_bytes = 1000};
    vb_http_response resp;
    vb_error err;
    /* An error answer over the cap is still an HTTP error, with its start kept. */
    assert_int_equal(get("/error-bytes/50000", &pol, &resp, &err), VB_ERR_HTTP);
    assert_int_equal(err.http_status, 500);
    assert_int_equal(resp.body.len, 1000);
    assert_int_equal(resp.body.data[999], ts_pattern(999));
    vb_http_response_free(&resp);
    assert_int_equal(get("/error-bytes/900", &pol, &resp, &err), VB_ERR_HTTP);
    assert_int_equal(resp.body.len, 900);
    vb_http_response_free(&resp);
}

static void perform_rejects_body_over_cap(void **state)
{
    vb_http_policy pol = {.max_bytes = 1000};
    vb_http_response resp;
    vb_error err;
    /* Announced by Content-Length… */
    assert_int_equal(get("/bytes/5000", &pol, &resp, &err), VB_ERR_TOO_LARGE);
    vb_http_response_free(&resp);
    /* …or only noticed while streaming. */
    assert_int_equal(get("/stream/5000", &pol, &resp, &err), VB_ERR_TOO_LARGE);
    assert_true(resp.body.len <= 1000);
    vb_http_response_free(&resp);
    /* Exactly at the cap is fine. */
    assert_int_equal(get("/stream/1000", &pol, &resp, &err), VB_OK);
    assert_int_equal(resp.body.len, 1000);
    assert_int_equal(resp.body.data[999], ts_pattern(999));
    vb_http_response_free(&resp);
}

static void perform_refuses_redirects_to_other_protocols(void **state)
{
    vb_http_response resp;
    vb_error err;
    assert_int_equal(get("/redir-file", NULL, &resp, &err), VB_ERR_INVALID);
    assert_null(strstr(resp.body.data ? resp.body.data : "", "root:"));
    vb_http_response_free(&resp);
    assert_int_equal(get("/redir-ftp", NULL, &resp, &err), VB_ERR_INVALID);
    vb_http_response_free(&resp);
    /* An http redirect is followed. */
    assert_int_equal(get("/redir-ok", NULL, &resp, &err), VB_OK);
    assert_string_equal(resp.body.data, "hello");
    vb_http_response_free(&resp);
}

/* A same-origin policy (the backend's) follows redirects on the request's
 * scheme, host and port only; anything else fails before it is followed. */
static void perform_same_origin_policy_refuses_other_origins(void **state)
{
    vb_http_policy pol = {.same_origin = 1, .retries = 2, .retry_on_5xx = 1};
    vb_http_response resp;
    vb_error err;
    static const char *const same[] = {"/redir-ok", "/redir-self"};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(get(same[i], &pol, &resp, &err), VB_OK);
        assert_string_equal(resp.body.data, "hello");
        vb_http_response_free(&resp);
    }
    static const char *const other[] = {"/redir-host", "/redir-netpath", "/redir-port",
                                        "/redir-chain"};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(get(other[i], &pol, &resp, &err), VB_ERR_INVALID);
        assert_int_equal(resp.attempts, 1); /* not retried */
        assert_int_equal(resp.body.len, 0);
        assert_non_null(strstr(err.msg, "redirect to another origin"));
        vb_http_response_free(&resp);
    }
    assert_non_null(strstr(err.msg, "(http://localhost:"));
    /* without the policy the same redirect is followed */
    assert_int_equal(get("/redir-host", NULL, &resp, &err), VB_OK);
    assert_string_equal(resp.body.data, "hello");
    vb_http_response_free(&resp);
}

/* no_redirects (webhooks): a 3xx answer is returned as such, never followed. */
static void perform_no_redirects_policy_returns_the_redirect(void **state)
{
    vb_http_policy pol = {.no_redirects = 1, .retries = 2, .retry_on_5xx = 1};
    vb_http_response resp;
    vb_error err;
    assert_int_equal(get("/redir-self", &pol, &resp, &err), VB_ERR_HTTP);
    assert_int_equal(resp.status, 307);
    assert_int_equal(resp.attempts, 1);
    vb_http_response_free(&resp);
}

/* Extra headers are sent as given; one holding CR/LF or no colon is refused. */
static void perform_sends_extra_headers_and_refuses_bad_ones(void **state)
{
    char url[256];
    url_of(url, sizeof url, "/echo");
    vb_http *h = vb_http_new();
    const char *hdrs[] = {"X-Visionbatch-Signature: t=1,v1=ab", "X-Visionbatch-Event: run.dead"};
    vb_http_request req = {.method = "POST", .url = url, .body = "{}", .body_len = 2,
                           .headers = hdrs, .nheaders = 2};
    vb_http_response resp;
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_http_perform(h, &req, NULL, &resp, &err), VB_OK);
    assert_non_null(strstr(resp.body.data, "\r\nX-Visionbatch-Signature: t=1,v1=ab\r\n"));
    assert_non_null(strstr(resp.body.data, "\r\nX-Visionbatch-Event: run.dead\r\n"));
    vb_http_response_free(&resp);
    static const char *const bad[] = {"X-A: 1\r\nX-Evil: 2", "no colon"};
    for (size_t i = 0; i < 2; i++) {
        req.headers = &bad[i];
        req.nheaders = 1;
        assert_int_equal(vb_http_perform(h, &req, NULL, &resp, &err), VB_ERR_INVALID);
        vb_http_response_free(&resp);
    }
    vb_http_free(h);
}

static void perform_refuses_non_http_urls(void **state)
{
    vb_http *h = vb_http_new();
    vb_http_request req = {.url = "file:///etc/passwd"};
    vb_http_response resp;
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_http_perform(h, &req, NULL, &resp, &err), VB_ERR_INVALID);
    assert_int_equal(resp.body.len, 0);
    vb_http_response_free(&resp);
    vb_http_free(h);
}

static void perform_times_out_on_slow_answer(void **state)
{
    vb_http_policy pol = {.timeout_ms = 300};
    vb_http_response resp;
    vb_error err;
    long long t0 = vb__mono_ms();
    assert_int_equal(get("/slow/3000", &pol, &resp, &err), VB_ERR_TIMEOUT);
    assert_true(vb__mono_ms() - t0 < 2000);
    assert_true(vb_error_is_transient(&err));
    vb_http_response_free(&resp);
}

static void perform_cancel_aborts_running_transfer(void **state)
{
    canceller c;
    canceller_start(&c, 300);
    vb_http_policy pol = {.cancel = &c.flag, .retries = 3};
    vb_http_response resp;
    vb_error err;
    long long t0 = vb__mono_ms();
    assert_int_equal(get("/trickle/200", &pol, &resp, &err), VB_ERR_CANCELLED);
    assert_true(vb__mono_ms() - t0 < 2500);
    assert_int_equal(resp.attempts, 1);
    pthread_join(c.thread, NULL);
    vb_http_response_free(&resp);
}

static void perform_cancel_interrupts_backoff(void **state)
{
    canceller c;
    canceller_start(&c, 300);
    vb_http_policy pol = {.cancel = &c.flag, .retries = 3, .retry_max_ms = 60000,
                          .retry_on_5xx = 1};
    vb_http_response resp;
    vb_error err;
    long long t0 = vb__mono_ms();
    assert_int_equal(get("/retry-after/6/30", &pol, &resp, &err), VB_ERR_CANCELLED);
    assert_true(vb__mono_ms() - t0 < 2000);
    pthread_join(c.thread, NULL);
    vb_http_response_free(&resp);
}

static void perform_connection_refused_is_retried_network_error(void **state)
{
    /* A port that was just free: nothing listens there. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/x", ntohs(sa.sin_port));
    vb_http *h = vb_http_new();
    vb_http_request req = {.url = url};
    vb_http_policy pol = {.retries = 1, .retry_base_ms = 1};
    vb_http_response resp;
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_http_perform(h, &req, &pol, &resp, &err), VB_ERR_NETWORK);
    assert_int_equal(resp.attempts, 2);
    assert_int_equal(resp.status, 0);
    vb_http_response_free(&resp);
    vb_http_free(h);
}

static void perform_error_message_redacts_url_secrets(void **state)
{
    char url[256];
    url_of(url, sizeof url, "/status/404?sig=S3CRETSIG&x=1");
    vb_http *h = vb_http_new();
    vb_http_request req = {.url = url, .bearer = "BEARERTOKEN"};
    vb_http_response resp;
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_http_perform(h, &req, NULL, &resp, &err), VB_ERR_HTTP);
    assert_non_null(strstr(err.msg, "HTTP 404"));
    assert_non_null(strstr(err.msg, "/status/404"));
    assert_null(strstr(err.msg, "S3CRETSIG"));
    assert_null(strstr(err.msg, "BEARERTOKEN"));
    vb_http_response_free(&resp);
    vb_http_free(h);
}

static void perform_rejects_header_injection(void **state)
{
    char url[256];
    url_of(url, sizeof url, "/ok");
    vb_http *h = vb_http_new();
    vb_http_request req = {.url = url, .bearer = "tok\r\nX-Evil: 1"};
    vb_http_response resp;
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_http_perform(h, &req, NULL, &resp, &err), VB_ERR_INVALID);
    assert_null(strstr(err.msg, "tok"));
    vb_http_response_free(&resp);
    vb_http_free(h);
}

/* ---- vb_http_download_all ---- */

typedef struct dl_case {
    char url[128];
    char path[128];
} dl_case;

static void dl_prepare(dl_case *c, vb_download *d, const char *route, const char *name)
{
    url_of(c->url, sizeof c->url, route);
    snprintf(c->path, sizeof c->path, "%s/%s", tmpdir, name);
    unlink(c->path);
    memset(d, 0, sizeof *d);
    d->url = c->url;
    d->dest_path = c->path;
}

static void download_runs_items_concurrently_within_limit(void **state)
{
    enum { N = 6 };
    dl_case cases[N];
    vb_download items[N];
    for (int i = 0; i < N; i++) {
        char route[64], name[32];
        snprintf(route, sizeof route, "/dl/%d", 1000 + 50000 * i);
        snprintf(name, sizeof name, "dl%d", i);
        dl_prepare(&cases[i], &items[i], route, name);
    }
    server.shared->peak = 0;
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_http_download_all(NULL, items, N, 3, NULL, &err), VB_OK);
    for (int i = 0; i < N; i++) {
        assert_int_equal(items[i].result, VB_OK);
        assert_int_equal(items[i].http_status, 200);
        assert_int_equal(items[i].bytes, 1000 + 50000 * i);
        assert_pattern_file(cases[i].path, 1000 + 50000 * i);
        unlink(cases[i].path);
    }
    assert_in_range(server.shared->peak, 2, 3);
}

static void download_failed_item_leaves_no_file(void **state)
{
    dl_case cases[3];
    vb_download items[3];
    dl_prepare(&cases[0], &items[0], "/bytes/100", "ok1");
    dl_prepare(&cases[1], &items[1], "/status/404", "missing");
    dl_prepare(&cases[2], &items[2], "/bytes/200", "ok2");
    vb_http_policy pol = {.retries = 2, .retry_base_ms = 5, .retry_on_5xx = 1};
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_http_download_all(NULL, items, 3, 2, &pol, &err), VB_ERR_HTTP);
    assert_int_equal(err.http_status, 404);
    assert_int_equal(items[1].result, VB_ERR_HTTP);
    assert_int_equal(items[1].http_status, 404);
    assert_non_null(strstr(items[1].error, "HTTP 404"));
    assert_false(file_exists(cases[1].path));
    assert_int_equal(items[0].result, VB_OK);
    assert_int_equal(items[2].result, VB_OK);
    assert_pattern_file(cases[0].path, 100);
    assert_pattern_file(cases[2].path, 200);
    unlink(cases[0].path);
    unlink(cases[2].path);
}

/* Documents follow redirects anywhere (blob stores); a same-origin policy
 * holds for downloads too. */
static void download_redirects_follow_the_policy(void **state)
{
    dl_case cases[2];
    vb_download items[2];
    dl_prepare(&cases[0], &items[0], "/redir-host", "elsewhere");
    dl_prepare(&cases[1], &items[1], "/redir-ok", "here");
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_http_download_all(NULL, items, 2, 2, NULL, &err), VB_OK);
    assert_int_equal(items[0].bytes, 5);
    unlink(cases[0].path);
    unlink(cases[1].path);
    dl_prepare(&cases[0], &items[0], "/redir-host", "elsewhere");
    dl_prepare(&cases[1], &items[1], "/redir-ok", "here");
    vb_http_policy pol = {.same_origin = 1, .retries = 2};
    vb_error_clear(&err);
    assert_int_equal(vb_http_download_all(NULL, items, 2, 2, &pol, &err), VB_ERR_INVALID);
    assert_int_equal(items[0].result, VB_ERR_INVALID);
    assert_non_null(strstr(items[0].error, "redirect to another origin"));
    assert_false(file_exists(cases[0].path));
    assert_int_equal(items[1].result, VB_OK);
    unlink(cases[1].path);
}

static void download_enforces_size_cap_and_removes_partial_file(void **state)
{
    dl_case cases[3];
    vb_download items[3];
    dl_prepare(&cases[0], &items[0], "/bytes/50000", "big-announced");
    dl_prepare(&cases[1], &items[1], "/stream/50000", "big-streamed");
    dl_prepare(&cases[2], &items[2], "/stream/1000", "small");
    vb_http_policy pol = {.max_bytes = 1000, .retries = 2, .retry_on_5xx = 1};
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_http_download_all(NULL, items, 3, 3, &pol, &err), VB_ERR_TOO_LARGE);
    assert_int_equal(items[0].result, VB_ERR_TOO_LARGE);
    assert_int_equal(items[1].result, VB_ERR_TOO_LARGE);
    assert_false(file_exists(cases[0].path));
    assert_false(file_exists(cases[1].path));
    assert_int_equal(items[2].result, VB_OK);
    assert_pattern_file(cases[2].path, 1000);
    unlink(cases[2].path);
}

static void download_retry_restarts_file_from_scratch(void **state)
{
    dl_case cases[2];
    vb_download items[2];
    dl_prepare(&cases[0], &items[0], "/cut/8/30000", "cut");
    dl_prepare(&cases[1], &items[1], "/flaky/9/1", "flaky");
    vb_http_policy pol = {.retries = 2, .retry_base_ms = 5, .retry_on_5xx = 1};
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_http_download_all(NULL, items, 2, 2, &pol, &err), VB_OK);
    assert_int_equal(server.shared->hits[8], 2);
    assert_int_equal(server.shared->hits[9], 2);
    assert_pattern_file(cases[0].path, 30000);
    assert_int_equal(items[1].bytes, 7);
    unlink(cases[0].path);
    unlink(cases[1].path);
}

static void download_never_overwrites_existing_file(void **state)
{
    dl_case c;
    vb_download d;
    dl_prepare(&c, &d, "/bytes/100", "existing");
    FILE *f = fopen(c.path, "w");
    assert_non_null(f);
    fputs("keep me", f);
    fclose(f);
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_http_download_all(NULL, &d, 1, 1, NULL, &err), VB_ERR_IO);
    f = fopen(c.path, "r");
    char line[32] = "";
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    assert_string_equal(line, "keep me");
    unlink(c.path);
}

static void download_cancel_aborts_all_and_removes_partial_files(void **state)
{
    dl_case cases[3];
    vb_download items[3];
    dl_prepare(&cases[0], &items[0], "/bytes/100", "t1");
    dl_prepare(&cases[1], &items[1], "/trickle/200", "t2");
    dl_prepare(&cases[2], &items[2], "/trickle/200", "t3");
    canceller c;
    canceller_start(&c, 300);
    vb_http_policy pol = {.cancel = &c.flag};
    vb_error err;
    vb_error_clear(&err);
    long long t0 = vb__mono_ms();
    assert_int_equal(vb_http_download_all(NULL, items, 3, 2, &pol, &err), VB_ERR_CANCELLED);
    assert_true(vb__mono_ms() - t0 < 2500);
    pthread_join(c.thread, NULL);
    /* A document finished before the cancel is kept; the others are gone. */
    assert_int_equal(items[0].result, VB_OK);
    assert_pattern_file(cases[0].path, 100);
    unlink(cases[0].path);
    for (int i = 1; i < 3; i++) {
        assert_int_equal(items[i].result, VB_ERR_CANCELLED);
        assert_false(file_exists(cases[i].path));
    }
}

static long max_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void download_memory_stays_flat_for_large_documents(void **state)
{
    enum { SIZE = 48 * 1024 * 1024 };
    dl_case c;
    vb_download d;
    char route[64];
    snprintf(route, sizeof route, "/bytes/%d", SIZE);
    dl_prepare(&c, &d, route, "large");
    vb_http_policy pol = {.max_bytes = 2LL * SIZE};
    vb_error err;
    vb_error_clear(&err);
    long before = max_rss_kb();
    assert_int_equal(vb_http_download_all(NULL, &d, 1, 1, &pol, &err), VB_OK);
    /* Buffering the body would raise the high-water mark by ~48 MiB. */
    assert_true(max_rss_kb() - before < 16 * 1024);
    assert_int_equal(d.bytes, SIZE);
    struct stat st;
    assert_int_equal(stat(c.path, &st), 0);
    assert_int_equal(st.st_size, SIZE);
    unlink(c.path);
}

static void download_refuses_non_http_url(void **state)
{
    vb_download d = {.url = "file:///etc/passwd"};
    char path[128];
    snprintf(path, sizeof path, "%s/passwd", tmpdir);
    d.dest_path = path;
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_http_download_all(NULL, &d, 1, 1, NULL, &err), VB_ERR_INVALID);
    assert_false(file_exists(path));
}

/* ---- connection reuse: a keep-alive server that counts connections ---- */

typedef struct ka_server {
    int fd, port;
    pthread_t th;
    atomic_int accepted;
} ka_server;

/* Serves GET /k/N (N patterned bytes) on one kept-alive connection until the
 * client closes it. */
static void *ka_connection(void *arg)
{
    int c = (int)(intptr_t)arg;
    char buf[8192];
    size_t have = 0;
    for (;;) {
        char *end = have ? memmem(buf, have, "\r\n\r\n", 4) : NULL;
        if (!end) {
            ssize_t got = have < sizeof buf ? read(c, buf + have, sizeof buf - have) : -1;
            if (got <= 0)
                break;
            have += (size_t)got;
            continue;
        }
        long n = 0;
        if (strncmp(buf, "GET /k/", 7) == 0)
            n = strtol(buf + 7, NULL, 10);
        char head[160];
        int hl = snprintf(head, sizeof head,
                          "HTTP/1.1 200 OK\r\nContent-Length: %ld\r\n"
                          "Content-Type: application/octet-stream\r\n\r\n", n);
        char *body = malloc((size_t)n + 1);
        for (long i = 0; body && i < n; i++)
            body[i] = ts_pattern(i);
        int ok = body && write(c, head, (size_t)hl) == hl && write(c, body, (size_t)n) == n;
        free(body);
        if (!ok)
            break;
        size_t used = (size_t)(end + 4 - buf);
        memmove(buf, buf + used, have - used);
        have -= used;
    }
    close(c);
    return NULL;
}

static void *ka_accept(void *arg)
{
    ka_server *k = arg;
    for (;;) {
        int c = accept(k->fd, NULL, NULL);
        if (c < 0)
            return NULL; /* the listening socket was shut down */
        atomic_fetch_add(&k->accepted, 1);
        pthread_t t;
        if (pthread_create(&t, NULL, ka_connection, (void *)(intptr_t)c) == 0)
            pthread_detach(t);
        else
            close(c);
    }
}

static void ka_start(ka_server *k)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    atomic_init(&k->accepted, 0);
    k->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(k->fd >= 0);
    assert_int_equal(bind(k->fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(k->fd, 64), 0);
    assert_int_equal(getsockname(k->fd, (struct sockaddr *)&a, &len), 0);
    k->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&k->th, NULL, ka_accept, k), 0);
}

static void ka_stop(ka_server *k)
{
    shutdown(k->fd, SHUT_RDWR);
    pthread_join(k->th, NULL);
    close(k->fd);
}

/* One "run": n documents of /k/size through h, concurrency conc. */
static void ka_run(vb_http *h, const ka_server *k, int n, int conc, int size)
{
    dl_case cases[16];
    vb_download items[16];
    assert_true(n <= 16);
    for (int i = 0; i < n; i++) {
        snprintf(cases[i].url, sizeof cases[i].url, "http://127.0.0.1:%d/k/%d", k->port, size);
        snprintf(cases[i].path, sizeof cases[i].path, "%s/ka%d", tmpdir, i);
        unlink(cases[i].path);
        memset(&items[i], 0, sizeof items[i]);
        items[i].url = cases[i].url;
        items[i].dest_path = cases[i].path;
    }
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_http_download_all(h, items, (size_t)n, conc, NULL, &err), VB_OK);
    for (int i = 0; i < n; i++) {
        assert_int_equal(items[i].bytes, size);
        assert_pattern_file(cases[i].path, size);
        unlink(cases[i].path);
    }
}

static void downloads_reuse_connections_within_and_across_runs(void **state)
{
    ka_server k;
    ka_start(&k);
    vb_http *h = vb_http_new();
    assert_non_null(h);
    /* 12 documents from one host, 3 at a time: at most 3 connections */
    ka_run(h, &k, 12, 3, 20000);
    int first = atomic_load(&k.accepted);
    assert_in_range(first, 1, 3);
    /* the next two runs on the same handle open none */
    ka_run(h, &k, 12, 3, 20000);
    ka_run(h, &k, 5, 3, 100);
    assert_int_equal(atomic_load(&k.accepted), first);
    vb_http_free(h);
    /* without a handle, each call has connections of its own */
    ka_run(NULL, &k, 3, 3, 100);
    assert_true(atomic_load(&k.accepted) > first);
    ka_stop(&k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(backoff_stays_within_doubling_bounds),
        cmocka_unit_test(backoff_uses_defaults_without_policy),
        cmocka_unit_test(backoff_honours_retry_after_capped_by_max),
        cmocka_unit_test(perform_get_returns_body_status_and_content_type),
        cmocka_unit_test(perform_post_sends_bearer_json_and_user_agent),
        cmocka_unit_test(perform_multipart_streams_file_with_name_and_type),
        cmocka_unit_test(perform_retries_503_until_success),
        cmocka_unit_test(perform_prereq_runs_before_every_attempt),
        cmocka_unit_test(perform_prereq_refusal_sends_nothing_and_stops_retrying),
        cmocka_unit_test(perform_does_not_retry_5xx_unless_asked),
        cmocka_unit_test(perform_reports_last_status_when_retries_run_out),
        cmocka_unit_test(perform_does_not_retry_404),
        cmocka_unit_test(perform_waits_for_retry_after_on_429),
        cmocka_unit_test(perform_caps_retry_after_by_retry_max),
        cmocka_unit_test(perform_captures_retry_after_of_final_answer),
        cmocka_unit_test(perform_understands_retry_after_http_date),
        cmocka_unit_test(perform_keeps_capped_prefix_of_large_error_body),
        cmocka_unit_test(perform_rejects_body_over_cap),
        cmocka_unit_test(perform_refuses_redirects_to_other_protocols),
        cmocka_unit_test(perform_same_origin_policy_refuses_other_origins),
        cmocka_unit_test(perform_refuses_non_http_urls),
        cmocka_unit_test(perform_times_out_on_slow_answer),
        cmocka_unit_test(perform_cancel_aborts_running_transfer),
        cmocka_unit_test(perform_cancel_interrupts_backoff),
        cmocka_unit_test(perform_connection_refused_is_retried_network_error),
        cmocka_unit_test(perform_error_message_redacts_url_secrets),
        cmocka_unit_test(perform_rejects_header_injection),
        cmocka_unit_test(perform_no_redirects_policy_returns_the_redirect),
        cmocka_unit_test(perform_sends_extra_headers_and_refuses_bad_ones),
        cmocka_unit_test(download_runs_items_concurrently_within_limit),
        cmocka_unit_test(download_failed_item_leaves_no_file),
        cmocka_unit_test(download_redirects_follow_the_policy),
        cmocka_unit_test(download_enforces_size_cap_and_removes_partial_file),
        cmocka_unit_test(download_retry_restarts_file_from_scratch),
        cmocka_unit_test(download_never_overwrites_existing_file),
        cmocka_unit_test(download_cancel_aborts_all_and_removes_partial_files),
        cmocka_unit_test(download_memory_stays_flat_for_large_documents),
        cmocka_unit_test(download_refuses_non_http_url),
        cmocka_unit_test(downloads_reuse_connections_within_and_across_runs),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
