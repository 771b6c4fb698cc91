/*
 * Unit tests of the descriptor paths of http.c against the scripted local
 * server of http_test_server.c: a 2xx body streamed into a file descriptor
 * (memory, cap, retries from the start offset, error answers), and
 * multipart file parts read from an open descriptor instead of a path.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http_test_server.h"
#include "visionbatch/http.h"

static ts_server server;
static char tmpdir[64];

static int group_setup(void **state)
{
    return ts_fixture_start(&server, tmpdir, sizeof tmpdir, "vb_http_stream_");
}

static int group_teardown(void **state)
{
    ts_fixture_stop(&server, tmpdir);
    return 0;
}

static long max_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* A fresh empty file in tmpdir, open read-write; its path in path. */
static int temp_file(char *path, size_t len, const char *name)
{
    snprintf(path, len, "%s/%s", tmpdir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    return fd;
}

static vb_err get_to_fd(const char *route, const vb_http_policy *pol, int fd,
                        vb_http_response *resp, vb_error *err)
{
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", server.port, route);
    vb_http_request req = {.url = url};
    vb_http *h = vb_http_new();
    assert_non_null(h);
    vb_error_clear(err);
    vb_err rc = vb_http_perform_to_fd(h, &req, pol, fd, resp, err);
    vb_http_free(h);
    return rc;
}

/* True when the file's bytes from `from` on are the server's pattern. */
static int file_has_pattern(int fd, off_t from, long long n)
{
    char buf[65536];
    long long i = 0;
    while (i < n) {
        ssize_t got = pread(fd, buf, sizeof buf, from + i);
        if (got <= 0)
            return 0;
        for (ssize_t k = 0; k < got; k++)
            if (buf[k] != ts_pattern(i + k))
                return 0;
        i += got;
    }
    return 1;
}

static void to_fd_streams_a_large_body_without_buffering_it(void **state)
{
    enum { SIZE = 48 * 1024 * 1024 };
    char path[128], route[64];
    int fd = temp_file(path, sizeof path, "large");
    snprintf(route, sizeof route, "/bytes/%d", SIZE);
    vb_http_policy pol = {.max_bytes = 2LL * SIZE};
    vb_http_response resp;
    vb_error err;
    long before = max_rss_kb();
    assert_int_equal(get_to_fd(route, &pol, fd, &resp, &err), VB_OK);
    /* Buffering the body would raise the high-water mark by ~48 MiB. */
    assert_true(max_rss_kb() - before < 16 * 1024);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.streamed, SIZE);
    assert_int_equal(resp.body.len, 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, SIZE);
    assert_true(file_has_pattern(fd, 0, SIZE));
    vb_http_response_free(&resp);
    close(fd);
    unlink(path);
}

static void to_fd_retry_starts_again_from_the_start_offset(void **state)
{
    char path[128];
    int fd = temp_file(path, sizeof path, "cut");
    assert_int_equal(write(fd, "HEAD", 4), 4); /* the body goes after what is there */
    vb_http_policy pol = {.retries = 2, .retry_base_ms = 10, .retry_max_ms = 20};
    vb_http_response resp;
    vb_error err;
    /* First answer: 100000 bytes announced, half sent, connection closed. */
    assert_int_equal(get_to_fd("/cut/40/100000", &pol, fd, &resp, &err), VB_OK);
    assert_int_equal(resp.attempts, 2);
    assert_int_equal(resp.streamed, 100000);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, 4 + 100000); /* no trace of the cut attempt */
    char head[4];
    assert_int_equal(pread(fd, head, 4, 0), 4);
    assert_memory_equal(head, "HEAD", 4);
    assert_true(file_has_pattern(fd, 4, 100000));
    vb_http_response_free(&resp);
    close(fd);
    unlink(path);
}

static void to_fd_enforces_the_size_cap(void **state)
{
    char path[128];
    int fd = temp_file(path, sizeof path, "cap");
    vb_http_policy pol = {.max_bytes = 100000};
    vb_http_response resp;
    vb_error err;
    /* Without Content-Length the cap is found while streaming… */
    assert_int_equal(get_to_fd("/stream/300000", &pol, fd, &resp, &err), VB_ERR_TOO_LARGE);
    assert_true(resp.streamed <= 100000);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_true(st.st_size <= 100000);
    vb_http_response_free(&resp);
    /* …with one, before the body is read. */
    assert_int_equal(ftruncate(fd, 0), 0);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    assert_int_equal(get_to_fd("/bytes/300000", &pol, fd, &resp, &err), VB_ERR_TOO_LARGE);
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, 0);
    vb_http_response_free(&resp);
    close(fd);
    unlink(path);
}

static void to_fd_keeps_error_answers_out_of_the_file(void **state)
{
    char path[128];
    int fd = temp_file(path, sizeof path, "err");
    vb_http_response resp;
    vb_error err;
    assert_int_equal(get_to_fd("/status/404", NULL, fd, &resp, &err), VB_ERR_HTTP);
    assert_int_equal(err.http_status, 404);
    assert_int_equal(resp.body.len, 4);
    assert_memory_equal(resp.body.data, "nope", 4);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, 0);
    vb_http_response_free(&resp);
    /* A big error body is cut at 64 KiB in memory, whatever the cap. */
    vb_http_policy pol = {.max_bytes = 64LL * 1024 * 1024};
    assert_int_equal(get_to_fd("/error-bytes/1000000", &pol, fd, &resp, &err), VB_ERR_HTTP);
    assert_true(resp.body.len <= 64 * 1024);
    vb_http_response_free(&resp);
    close(fd);
    unlink(path);
}

static void to_fd_refuses_a_bad_descriptor(void **state)
{
    vb_http_response resp;
    vb_error err;
    assert_int_equal(get_to_fd("/ok", NULL, -1, &resp, &err), VB_ERR_INVALID);
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(get_to_fd("/ok", NULL, p[1], &resp, &err), VB_ERR_INVALID);
    close(p[0]);
    close(p[1]);
}

static vb_err post_parts(const char *route, const vb_http_part *parts, size_t n,
                         const vb_http_policy *pol, vb_http_response *resp)
{
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", server.port, route);
    vb_http_request req = {.method = "POST", .url = url, .parts = parts, .nparts = n};
    vb_http *h = vb_http_new();
    assert_non_null(h);
    vb_error err;
    vb_error_clear(&err);
    vb_err rc = vb_http_perform(h, &req, pol, resp, &err);
    vb_http_free(h);
    return rc;
}

static void multipart_sends_the_open_file_not_what_its_path_names_later(void **state)
{
    char path[128];
    int fd = temp_file(path, sizeof path, "report.html");
    assert_int_equal(write(fd, "<p>the real report</p>", 22), 22);
    /* The path is swapped for something else after the file was opened. */
    assert_int_equal(unlink(path), 0);
    int other = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(other >= 0);
    assert_int_equal(write(other, "SWAPPED", 7), 7);
    close(other);

    vb_http_part parts[] = {
        vb_http_part_fd("file", fd, "report_b1.html", "text/html"),
        {.name = "vision_analysis_id", .value = "R1"},
    };
    vb_http_response resp;
    assert_int_equal(post_parts("/echo", parts, 2, NULL, &resp), VB_OK);
    const char *echo = resp.body.data;
    assert_non_null(strstr(echo, "name=\"file\"; filename=\"report_b1.html\"\r\n"
                                 "Content-Type: text/html\r\n\r\n<p>the real report</p>\r\n"));
    assert_null(strstr(echo, "SWAPPED"));
    vb_http_response_free(&resp);
    /* The descriptor's own offset is left alone (the part is read with pread). */
    assert_int_equal(lseek(fd, 0, SEEK_CUR), 22);

    /* A retried upload sends the file again from its start. */
    vb_http_policy pol = {.retries = 2, .retry_base_ms = 10, .retry_max_ms = 20,
                          .retry_on_5xx = 1};
    assert_int_equal(post_parts("/flaky/41/1", parts, 2, &pol, &resp), VB_OK);
    assert_int_equal(resp.attempts, 2);
    vb_http_response_free(&resp);
    close(fd);
    unlink(path);
}

static void multipart_refuses_a_descriptor_that_is_not_a_file(void **state)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    vb_http_part parts[] = {vb_http_part_fd("file", p[0], "x.html", "text/html")};
    vb_http_response resp;
    assert_int_equal(post_parts("/echo", parts, 1, NULL, &resp), VB_ERR_IO);
    assert_int_equal(resp.attempts, 0);
    vb_http_response_free(&resp);
    close(p[0]);
    close(p[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(to_fd_streams_a_large_body_without_buffering_it),
        cmocka_unit_test(to_fd_retry_starts_again_from_the_start_offset),
        cmocka_unit_test(to_fd_enforces_the_size_cap),
        cmocka_unit_test(to_fd_keeps_error_answers_out_of_the_file),
        cmocka_unit_test(to_fd_refuses_a_bad_descriptor),
        cmocka_unit_test(multipart_sends_the_open_file_not_what_its_path_names_later),
        cmocka_unit_test(multipart_refuses_a_descriptor_that_is_not_a_file),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
