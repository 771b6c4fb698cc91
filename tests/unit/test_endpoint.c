/*
 * test_endpoint.c — the services' HTTP endpoint (endpoint.h): the built-in
 * routes, the token, a mounted handler, the header deadline, the
 * per-address limit and the health client. Talks to a real endpoint on a
 * free loopback port with plain sockets, so a test controls every byte and
 * its timing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "visionbatch/endpoint.h"
#include "util.h"
#include "visionbatch/http.h"

/* A connection to the endpoint from the loopback address 127.0.0.<from>. */
static int connect_from(int port, int from)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000000u | (unsigned)from);
    assert_int_equal(bind(fd, (struct sockaddr *)&src, sizeof src), 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static int connect_to(int port)
{
    return connect_from(port, 1);
}

/* Reads until EOF (or `ms` pass); returns the bytes read, -1 on a reset. */
static ssize_t read_all(int fd, char *buf, size_t cap, int ms)
{
    size_t n = 0;
    long long end = vb__mono_ms() + ms;
    while (n + 1 < cap && vb__mono_ms() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)(end - vb__mono_ms())) <= 0)
            break;
        ssize_t r = recv(fd, buf + n, cap - 1 - n, 0);
        if (r < 0)
            return errno == ECONNRESET ? -1 : (ssize_t)n;
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    return (ssize_t)n;
}

/* One request on a fresh connection; returns the status (0: no answer) and
 * copies the body into `body`. */
static int request(int port, const char *method, const char *path, const char *auth, char *body,
                   size_t bodycap)
{
    char req[512], resp[16384];
    snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s%sConnection: close\r\n\r\n",
             method, path, auth ? "Authorization: " : "", auth ? auth : "", auth ? "\r\n" : "");
    int fd = connect_to(port);
    assert_int_equal(send(fd, req, strlen(req), 0), (ssize_t)strlen(req));
    ssize_t n = read_all(fd, resp, sizeof resp, 5000);
    close(fd);
    int status = 0;
    if (n > 12)
        sscanf(resp, "HTTP/1.%*d %d", &status);
    const char *b = strstr(resp, "\r\n\r\n");
    if (body)
        snprintf(body, bodycap, "%s", b ? b + 4 : "");
    return status;
}

static int failing(void *ctx, char *why, size_t whylen)
{
    snprintf(why, whylen, "%s", (const char *)ctx);
    return 0;
}

typedef struct fixture {
    vb_metrics *reg;
    vb_endpoint *ep;
    int port;
} fixture;

static void start(fixture *f, vb_endpoint_opts *o)
{
    vb_error err;
    vb_error_clear(&err);
    f->reg = vb_metrics_new();
    assert_non_null(f->reg);
    o->listen = "127.0.0.1:0";
    o->metrics = f->reg;
    assert_int_equal(vb_endpoint_start(o, &f->ep, &err), VB_OK);
    f->port = vb_endpoint_port(f->ep);
    assert_true(f->port > 0);
}

static void finish(fixture *f)
{
    vb_endpoint_stop(f->ep);
    vb_metrics_free(f->reg);
}

static double metric(fixture *f, const char *name, const char *label)
{
    vb_metric *m = vb_metrics_counter(f->reg, name, NULL, label ? "reason" : NULL);
    const char *v[] = {label};
    return vb_metric_value(m, label ? v : NULL);
}

/* Waits until the endpoint counts `n` open connections (its reaper updates
 * the gauge every 200 ms): the positive signal that a connection was
 * accepted, so the order of acceptance is the order of connecting. */
static void wait_open(fixture *f, int n)
{
    vb_metric *m = vb_metrics_gauge(f->reg, "visionbatch_http_connections", NULL, NULL);
    long long end = vb__mono_ms() + 10000;
    while ((int)vb_metric_value(m, NULL) != n && vb__mono_ms() < end)
        usleep(20 * 1000);
    assert_int_equal((int)vb_metric_value(m, NULL), n);
}

/* 1 when the peer ends the connection (EOF or reset) within `ms`. */
static int ended_within(int fd, int ms)
{
    char buf[256];
    long long end = vb__mono_ms() + ms;
    while (vb__mono_ms() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)(end - vb__mono_ms())) <= 0)
            return 0;
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            return 1;
        if (r < 0)
            return 0;
    }
    return 0;
}

static void endpoint_serves_health_ready_and_metrics(void **state)
{
    fixture f = {0};
    vb_endpoint_opts o = {0};
    start(&f, &o);
    vb_metric_inc(vb_metrics_counter(f.reg, "demo_total", "A demo.", NULL), NULL);
    char body[8192];
    assert_int_equal(request(f.port, "GET", "/healthz", NULL, body, sizeof body), 200);
    assert_string_equal(body, "{\"status\":\"ok\"}");
    assert_int_equal(request(f.port, "GET", "/readyz", NULL, body, sizeof body), 200);
    assert_string_equal(body, "{\"status\":\"ready\"}");
    assert_int_equal(request(f.port, "GET", "/metrics", NULL, body, sizeof body), 200);
    assert_non_null(strstr(body, "demo_total 1\n"));
    assert_non_null(strstr(body, "visionbatch_http_connections_closed_total{reason=\"header_"
                                 "timeout\"} 0\n"));
    assert_int_equal(request(f.port, "GET", "/nope", NULL, body, sizeof body), 404);
    assert_int_equal(request(f.port, "POST", "/healthz", NULL, body, sizeof body), 405);
    finish(&f);
}

static void endpoint_reports_failing_checks_with_reason(void **state)
{
    fixture f = {0};
    vb_endpoint_opts o = {.live = failing, .check_ctx = (void *)"poll loop \"stalled\""};
    start(&f, &o);
    char body[1024];
    assert_int_equal(request(f.port, "GET", "/healthz", NULL, body, sizeof body), 503);
    assert_string_equal(body, "{\"status\":\"unavailable\",\"detail\":\"poll loop "
                              "\\u0022stalled\\u0022\"}");
    /* without a readiness check, readiness is liveness */
    assert_int_equal(request(f.port, "GET", "/readyz", NULL, body, sizeof body), 503);
    finish(&f);
}

static void endpoint_token_guards_metrics_not_the_probes(void **state)
{
    fixture f = {0};
    vb_endpoint_opts o = {.token = "s3cret"};
    start(&f, &o);
    char body[4096];
    /* kubelet probes carry no secret: both probe paths stay open */
    assert_int_equal(request(f.port, "GET", "/healthz", NULL, body, sizeof body), 200);
    assert_int_equal(request(f.port, "GET", "/readyz", NULL, body, sizeof body), 200);
    assert_int_equal(request(f.port, "GET", "/metrics", NULL, body, sizeof body), 401);
    assert_int_equal(request(f.port, "GET", "/metrics", "Bearer wrong", body, sizeof body), 401);
    assert_int_equal(request(f.port, "GET", "/metrics", "Bearer s3cret", body, sizeof body), 200);
    assert_non_null(strstr(body, "visionbatch_http_connections "));
    finish(&f);
}

static int app_handle(void *cls, struct MHD_Connection *con, const char *url, const char *method,
                      const char *version, const char *upload, size_t *upload_size,
                      void **req_cls)
{
    int *calls = cls;
    (*calls)++;
    static char text[] = "app";
    struct MHD_Response *r =
        MHD_create_response_from_buffer(3, text, MHD_RESPMEM_PERSISTENT);
    int ret = MHD_queue_response(con, strcmp(url, "/jobs") == 0 ? 201 : 404, r);
    MHD_destroy_response(r);
    return ret;
}

static void endpoint_hands_other_paths_to_the_mounted_handler(void **state)
{
    fixture f = {0};
    int calls = 0;
    vb_endpoint_opts o = {.app = {.handle = app_handle, .cls = &calls}};
    start(&f, &o);
    char body[4096];
    assert_int_equal(request(f.port, "GET", "/jobs", NULL, body, sizeof body), 201);
    assert_string_equal(body, "app");
    assert_int_equal(request(f.port, "GET", "/healthz", NULL, body, sizeof body), 200);
    assert_int_equal(calls, 1);
    finish(&f);
}

static void endpoint_cuts_off_headers_trickling_past_the_deadline(void **state)
{
    fixture f = {0};
    vb_endpoint_opts o = {.limits = {.header_timeout_s = 1, .idle_timeout_s = 30}};
    start(&f, &o);
    const char *hdr = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa";
    int fd = connect_to(f.port);
    long long t0 = vb__mono_ms(), closed_at = 0;
    /* one byte every 100 ms: never idle, never done */
    for (size_t i = 0; i < strlen(hdr) && !closed_at; i++) {
        if (send(fd, hdr + i, 1, MSG_NOSIGNAL) != 1) {
            closed_at = vb__mono_ms();
            break;
        }
        char c;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) > 0 && recv(fd, &c, 1, 0) <= 0)
            closed_at = vb__mono_ms();
    }
    close(fd);
    assert_true(closed_at > 0);
    long long took = closed_at - t0;
    assert_true(took >= 900);  /* not before the deadline */
    assert_true(took <= 2500); /* the deadline plus the reaper's period and slack */
    assert_int_equal((int)metric(&f, "visionbatch_http_connections_closed_total",
                                 "header_timeout"), 1);
    finish(&f);
}

static void endpoint_per_ip_limit_evicts_the_oldest_unfinished_request(void **state)
{
    fixture f = {0};
    vb_endpoint_opts o = {.limits = {.max_connections_per_ip = 2}};
    start(&f, &o);
    int a = connect_to(f.port);
    assert_int_equal(send(a, "GET /", 5, 0), 5);
    wait_open(&f, 1);
    usleep(5 * 1000); /* a later millisecond for b */
    int b = connect_to(f.port);
    assert_int_equal(send(b, "GET /", 5, 0), 5);
    wait_open(&f, 2);
    char body[1024];
    /* a third connection from the same address is served... */
    assert_int_equal(request(f.port, "GET", "/healthz", NULL, body, sizeof body), 200);
    /* ...at the expense of the oldest unfinished one */
    assert_true(ended_within(a, 3000));
    assert_int_equal((int)metric(&f, "visionbatch_http_connections_closed_total",
                                 "per_ip_limit"), 1);
    const char *rest = "healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_int_equal(send(b, rest, strlen(rest), 0), (ssize_t)strlen(rest));
    char resp[1024];
    assert_true(read_all(b, resp, sizeof resp, 3000) > 0);
    assert_non_null(strstr(resp, " 200 "));
    close(a);
    close(b);
    finish(&f);
}

static void endpoint_global_limit_evicts_the_oldest_unfinished_request_of_anyone(void **state)
{
    fixture f = {0};
    vb_endpoint_opts o = {.limits = {.max_connections = 3}};
    start(&f, &o);
    int c[3];
    for (int i = 0; i < 3; i++) { /* three addresses, one connection each */
        c[i] = connect_from(f.port, 2 + i);
        assert_int_equal(send(c[i], "GET /", 5, 0), 5);
        wait_open(&f, i + 1);
        usleep(5 * 1000); /* a later millisecond for the next */
    }
    char body[1024];
    assert_int_equal(request(f.port, "GET", "/healthz", NULL, body, sizeof body), 200);
    assert_true(ended_within(c[0], 3000));
    assert_int_equal((int)metric(&f, "visionbatch_http_connections_closed_total",
                                 "global_limit"), 1);
    for (int i = 0; i < 3; i++)
        close(c[i]);
    finish(&f);
}

/* Requests app_upload has seen the headers of. */
static atomic_int uploads_started;

/* Takes any upload and answers once it is complete. */
static int app_upload(void *cls, struct MHD_Connection *con, const char *url, const char *method,
                      const char *version, const char *upload, size_t *upload_size,
                      void **req_cls)
{
    static int started;
    if (!*req_cls) {
        *req_cls = &started;
        atomic_fetch_add(&uploads_started, 1);
        return MHD_YES;
    }
    if (*upload_size) {
        *upload_size = 0;
        return MHD_YES;
    }
    static char text[] = "done";
    struct MHD_Response *r = MHD_create_response_from_buffer(4, text, MHD_RESPMEM_PERSISTENT);
    int ret = MHD_queue_response(con, 200, r);
    MHD_destroy_response(r);
    return ret;
}

static void endpoint_refuses_a_newcomer_when_nothing_can_be_evicted(void **state)
{
    fixture f = {0};
    vb_endpoint_opts o = {.app = {.handle = app_upload},
                          .limits = {.max_connections_per_ip = 2}};
    start(&f, &o);
    /* two requests whose headers are in (bodies still due): being served, not evictable */
    const char *post = "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n";
    int a = connect_to(f.port), b = connect_to(f.port);
    assert_int_equal(send(a, post, strlen(post), 0), (ssize_t)strlen(post));
    assert_int_equal(send(b, post, strlen(post), 0), (ssize_t)strlen(post));
    for (int i = 0; i < 500 && atomic_load(&uploads_started) < 2; i++)
        usleep(20 * 1000);
    assert_int_equal(atomic_load(&uploads_started), 2);
    char body[1024];
    assert_int_equal(request(f.port, "GET", "/healthz", NULL, body, sizeof body), 0);
    assert_int_equal((int)metric(&f, "visionbatch_http_connections_refused_total",
                                 "per_ip_limit"), 1);
    /* another address is still served, and the two requests complete */
    int c = connect_from(f.port, 9);
    const char *get = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_int_equal(send(c, get, strlen(get), 0), (ssize_t)strlen(get));
    char resp[1024];
    assert_true(read_all(c, resp, sizeof resp, 3000) > 0);
    assert_non_null(strstr(resp, " 200 "));
    assert_int_equal(send(a, "body", 4, 0), 4);
    assert_true(read_all(a, resp, sizeof resp, 1000) > 0);
    assert_non_null(strstr(resp, "done"));
    close(a);
    close(b);
    close(c);
    finish(&f);
}

static void endpoint_healthcheck_client_reports_up_and_down(void **state)
{
    fixture f = {0};
    vb_endpoint_opts o = {0};
    start(&f, &o);
    char listen[64];
    snprintf(listen, sizeof listen, "0.0.0.0:%d", f.port); /* asked on loopback */
    assert_int_equal(vb_endpoint_healthcheck(listen, "test"), 0);
    finish(&f);
    assert_int_equal(vb_endpoint_healthcheck(listen, "test"), 1);

    vb_endpoint_opts bad = {.live = failing, .check_ctx = (void *)"down"};
    start(&f, &bad);
    snprintf(listen, sizeof listen, "127.0.0.1:%d", f.port);
    assert_int_equal(vb_endpoint_healthcheck(listen, "test"), 1);
    finish(&f);
}

int main(void)
{
    if (vb_http_global_init() != VB_OK)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(endpoint_serves_health_ready_and_metrics),
        cmocka_unit_test(endpoint_reports_failing_checks_with_reason),
        cmocka_unit_test(endpoint_token_guards_metrics_not_the_probes),
        cmocka_unit_test(endpoint_hands_other_paths_to_the_mounted_handler),
        cmocka_unit_test(endpoint_cuts_off_headers_trickling_past_the_deadline),
        cmocka_unit_test(endpoint_per_ip_limit_evicts_the_oldest_unfinished_request),
        cmocka_unit_test(endpoint_global_limit_evicts_the_oldest_unfinished_request_of_anyone),
        cmocka_unit_test(endpoint_refuses_a_newcomer_when_nothing_can_be_evicted),
        cmocka_unit_test(endpoint_healthcheck_client_reports_up_and_down),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    vb_http_global_cleanup();
    return rc;
}
