/* Test helper: private redis-server processes and connection killing, for
 * the tests of what a Redis client does when its server goes away.
 *
 * vb_test_start_redis() runs redis-server (from PATH) on a loopback port,
 * without persistence, optionally with a password, and waits until it
 * answers; vb_test_stop_redis() kills it. vb_test_kill_clients_named() drops
 * the server side of the connections that carry a client name, as a server
 * restart would, leaving other clients of a shared server alone. */
#ifndef VB_TEST_REDIS_SERVER_H
#define VB_TEST_REDIS_SERVER_H

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

static inline void vb_test_sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* A TCP port on the loopback interface that was free a moment ago. */
static inline int vb_test_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* Starts redis-server on `port` (requirepass = password, and a unix socket
 * at `unixsocket`, unless NULL). Returns its pid once it accepts
 * connections, or -1 when it could not start. */
static inline pid_t vb_test_start_redis(int port, const char *password, const char *unixsocket)
{
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    const char *argv[16] = {"redis-server", "--port",       p,  "--bind", "127.0.0.1",
                            "--save",       "",             "--appendonly", "no"};
    int argc = 9;
    if (password) {
        argv[argc++] = "--requirepass";
        argv[argc++] = password;
    }
    if (unixsocket) {
        argv[argc++] = "--unixsocket";
        argv[argc++] = unixsocket;
        argv[argc++] = "--unixsocketperm";
        argv[argc++] = "700";
    }
    argv[argc] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execvp("redis-server", (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        redisContext *c = redisConnect("127.0.0.1", port);
        int ok = c && !c->err;
        redisFree(c);
        if (ok)
            return pid;
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return -1;
        vb_test_sleep_ms(25);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

static inline void vb_test_stop_redis(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* CLIENT KILL of every connection named `name`, through `admin`; returns how
 * many were killed. */
static inline int vb_test_kill_clients_named(redisContext *admin, const char *name)
{
    redisReply *r = redisCommand(admin, "CLIENT LIST TYPE normal");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    char needle[96];
    snprintf(needle, sizeof needle, " name=%s ", name);
    int killed = 0;
    for (char *line = r->str; line && *line;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (strstr(line, needle) && strncmp(line, "id=", 3) == 0) {
            long long id = strtoll(line + 3, NULL, 10);
            redisReply *k = redisCommand(admin, "CLIENT KILL ID %lld", id);
            assert_non_null(k);
            assert_int_equal(k->type, REDIS_REPLY_INTEGER);
            killed += (int)k->integer;
            freeReplyObject(k);
        }
        line = next;
    }
    freeReplyObject(r);
    return killed;
}

#endif
