/*
 * http_test_server.c — the scripted test server described in
 * http_test_server.h. Included by the test file that uses it (the build
 * makes one executable per test_*.c). Runs in forked processes only; it
 * never returns into the test harness (children leave with _exit).
 */
#include "http_test_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "visionbatch/http.h"

#define TS_HEAD_MAX 65536
#define TS_BODY_MAX (1024 * 1024)

char ts_pattern(long long i)
{
    return (char)('a' + i % 26);
}

static void ts_sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int ts_send(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static void ts_head(int fd, int status, const char *extra, long long length)
{
    char h[512];
    int n;
    if (length >= 0)
        n = snprintf(h, sizeof h,
                     "HTTP/1.1 %d X\r\nConnection: close\r\n%sContent-Length: %lld\r\n\r\n",
                     status, extra, length);
    else
        n = snprintf(h, sizeof h, "HTTP/1.1 %d X\r\nConnection: close\r\n%s\r\n", status, extra);
    ts_send(fd, h, (size_t)n);
}

static void ts_simple(int fd, int status, const char *extra, const char *body)
{
    ts_head(fd, status, extra, (long long)strlen(body));
    ts_send(fd, body, strlen(body));
}

static void ts_pattern_body(int fd, long long from, long long to)
{
    char chunk[4096];
    while (from < to) {
        size_t n = 0;
        while (n < sizeof chunk && from < to)
            chunk[n++] = ts_pattern(from++);
        if (ts_send(fd, chunk, n) != 0)
            return;
    }
}

/* Reads a whole request into *out (head and body); returns its length or -1. */
static ssize_t ts_read_request(int fd, char **out)
{
    size_t cap = TS_HEAD_MAX + TS_BODY_MAX, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf)
        return -1;
    char *end = NULL;
    while (!end) {
        if (len >= TS_HEAD_MAX)
            goto fail;
        ssize_t r = recv(fd, buf + len, TS_HEAD_MAX - len, 0);
        if (r <= 0)
            goto fail;
        len += (size_t)r;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    size_t head = (size_t)(end - buf) + 4;
    long long body = 0;
    for (char *line = strstr(buf, "\r\n"); line && line < end; line = strstr(line + 2, "\r\n")) {
        if (strncasecmp(line + 2, "Content-Length:", 15) == 0)
            body = strtoll(line + 17, NULL, 10);
    }
    if (body < 0 || body > TS_BODY_MAX)
        goto fail;
    while (len < head + (size_t)body) {
        ssize_t r = recv(fd, buf + len, head + (size_t)body - len, 0);
        if (r <= 0)
            goto fail;
        len += (size_t)r;
    }
    buf[len] = '\0';
    *out = buf;
    return (ssize_t)len;
fail:
    free(buf);
    return -1;
}

/* Parses "/prefix" followed by "/A" or "/A/B" numbers. */
static int ts_route(const char *path, const char *prefix, long long *a, long long *b)
{
    size_t n = strlen(prefix);
    if (strncmp(path, prefix, n) != 0 || (path[n] != '/' && path[n] != '\0' && path[n] != '?'))
        return 0;
    *a = *b = 0;
    if (path[n] == '/') {
        char *e;
        *a = strtoll(path + n + 1, &e, 10);
        if (*e == '/')
            *b = strtoll(e + 1, NULL, 10);
    }
    return 1;
}

static void ts_serve(int fd, ts_shared *sh, int port)
{
    char *req = NULL;
    ssize_t rlen = ts_read_request(fd, &req);
    if (rlen < 0)
        return;
    char path[512] = "";
    const char *sp = strchr(req, ' ');
    if (sp) {
        size_t n = strcspn(sp + 1, " ");
        if (n >= sizeof path)
            n = sizeof path - 1;
        memcpy(path, sp + 1, n);
        path[n] = '\0';
    }
    long long a, b;
    char extra[256];
    if (strcmp(path, "/ok") == 0) {
        ts_simple(fd, 200, "Content-Type: application/json\r\n", "hello");
    } else if (strcmp(path, "/echo") == 0) {
        ts_head(fd, 200, "Content-Type: text/plain\r\n", (long long)rlen);
        ts_send(fd, req, (size_t)rlen);
    } else if (ts_route(path, "/status", &a, &b)) {
        ts_simple(fd, (int)a, "", "nope");
    } else if (ts_route(path, "/flaky", &a, &b)) {
        int hit = __atomic_fetch_add(&sh->hits[a % TS_COUNTERS], 1, __ATOMIC_SEQ_CST);
        if (hit < b)
            ts_simple(fd, 503, "", "busy");
        else
            ts_simple(fd, 200, "", "finally");
    } else if (ts_route(path, "/retry-after", &a, &b)) {
        int hit = __atomic_fetch_add(&sh->hits[a % TS_COUNTERS], 1, __ATOMIC_SEQ_CST);
        snprintf(extra, sizeof extra, "Retry-After: %lld\r\n", b);
        if (hit == 0)
            ts_simple(fd, 429, extra, "slow down");
        else
            ts_simple(fd, 200, "", "ok");
    } else if (ts_route(path, "/retry-after-date", &a, &b)) {
        time_t when = time(NULL) + (time_t)a;
        struct tm tm;
        char date[64];
        gmtime_r(&when, &tm);
        strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        snprintf(extra, sizeof extra, "Retry-After: %s\r\n", date);
        ts_simple(fd, 503, extra, "later");
    } else if (ts_route(path, "/error-bytes", &a, &b)) {
        ts_head(fd, 500, "", -1);
        ts_pattern_body(fd, 0, a);
    } else if (ts_route(path, "/bytes", &a, &b)) {
        ts_head(fd, 200, "", a);
        ts_pattern_body(fd, 0, a);
    } else if (ts_route(path, "/stream", &a, &b)) {
        ts_head(fd, 200, "", -1);
        ts_pattern_body(fd, 0, a);
    } else if (ts_route(path, "/cut", &a, &b)) {
        int hit = __atomic_fetch_add(&sh->hits[a % TS_COUNTERS], 1, __ATOMIC_SEQ_CST);
        ts_head(fd, 200, "", b);
        ts_pattern_body(fd, 0, hit == 0 ? b / 2 : b);
    } else if (ts_route(path, "/slow", &a, &b)) {
        ts_sleep_ms((long)a);
        ts_simple(fd, 200, "", "late");
    } else if (ts_route(path, "/trickle", &a, &b)) {
        ts_head(fd, 200, "", a);
        for (long long i = 0; i < a; i++) {
            char c = ts_pattern(i);
            if (ts_send(fd, &c, 1) != 0)
                break;
            ts_sleep_ms(50);
        }
    } else if (ts_route(path, "/dl", &a, &b)) {
        int now = __atomic_add_fetch(&sh->current, 1, __ATOMIC_SEQ_CST);
        int peak = __atomic_load_n(&sh->peak, __ATOMIC_SEQ_CST);
        while (now > peak &&
               !__atomic_compare_exchange_n(&sh->peak, &peak, now, 0, __ATOMIC_SEQ_CST,
                                            __ATOMIC_SEQ_CST))
            ;
        ts_head(fd, 200, "", a);
        ts_pattern_body(fd, 0, a > 0 ? a - 1 : 0);
        ts_sleep_ms(150);
        /* Leave the count before the last byte, so the client never sees
         * its transfer end while we still count it. */
        __atomic_sub_fetch(&sh->current, 1, __ATOMIC_SEQ_CST);
        ts_pattern_body(fd, a > 0 ? a - 1 : 0, a);
    } else if (strcmp(path, "/redir-file") == 0) {
        ts_simple(fd, 302, "Location: file:///etc/passwd\r\n", "");
    } else if (strcmp(path, "/redir-ftp") == 0) {
        snprintf(extra, sizeof extra, "Location: ftp://127.0.0.1:%d/x\r\n", port);
        ts_simple(fd, 302, extra, "");
    } else if (strcmp(path, "/redir-ok") == 0) {
        ts_simple(fd, 302, "Location: /ok\r\n", "");
    } else if (strcmp(path, "/redir-self") == 0) {
        snprintf(extra, sizeof extra, "Location: http://127.0.0.1:%d/ok\r\n", port);
        ts_simple(fd, 307, extra, "");
    } else if (strcmp(path, "/redir-host") == 0) {
        snprintf(extra, sizeof extra, "Location: http://localhost:%d/ok\r\n", port);
        ts_simple(fd, 302, extra, "");
    } else if (strcmp(path, "/redir-netpath") == 0) {
        snprintf(extra, sizeof extra, "location:   //localhost:%d/ok  \r\n", port);
        ts_simple(fd, 301, extra, "");
    } else if (strcmp(path, "/redir-port") == 0) {
        snprintf(extra, sizeof extra, "Location: http://127.0.0.1:%d/ok\r\n", port + 1);
        ts_simple(fd, 302, extra, "");
    } else if (strcmp(path, "/redir-chain") == 0) {
        ts_simple(fd, 302, "Location: /redir-host\r\n", "");
    } else {
        ts_simple(fd, 404, "", "no route");
    }
    free(req);
}

static void ts_loop(int lfd, ts_shared *sh, int port)
{
    signal(SIGCHLD, SIG_IGN);
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            _exit(1);
        }
        pid_t pid = fork();
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            close(lfd);
            ts_serve(fd, sh, port);
            shutdown(fd, SHUT_WR);
            close(fd);
            _exit(0);
        }
        close(fd);
    }
}

int ts_start(ts_server *s)
{
    memset(s, 0, sizeof *s);
    s->shared = mmap(NULL, sizeof *s->shared, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                     -1, 0);
    if (s->shared == MAP_FAILED) {
        s->shared = NULL;
        return -1;
    }
    memset(s->shared, 0, sizeof *s->shared);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t salen = sizeof sa;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 64) != 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &salen) != 0)
        goto fail;
    s->port = ntohs(sa.sin_port);
    pid_t parent = getpid();
    s->pid = fork();
    if (s->pid < 0)
        goto fail;
    if (s->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(0);
        ts_loop(lfd, s->shared, s->port);
        _exit(0);
    }
    close(lfd);
    return 0;
fail:
    if (lfd >= 0)
        close(lfd);
    munmap(s->shared, sizeof *s->shared);
    s->shared = NULL;
    return -1;
}

void ts_stop(ts_server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
    if (s->shared) {
        munmap(s->shared, sizeof *s->shared);
        s->shared = NULL;
    }
}

int ts_fixture_start(ts_server *s, char *tmpdir, size_t tmpdirlen, const char *prefix)
{
    if (vb_http_global_init() != VB_OK || ts_start(s) != 0)
        return -1;
    snprintf(tmpdir, tmpdirlen, "/tmp/%sXXXXXX", prefix);
    return mkdtemp(tmpdir) ? 0 : -1;
}

void ts_fixture_stop(ts_server *s, const char *tmpdir)
{
    ts_stop(s);
    vb_http_global_cleanup();
    rmdir(tmpdir);
}
