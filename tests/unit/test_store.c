/*
 * Unit tests of store.c, against a real Redis.
 *
 * The server is $REDIS_URL with database 15 (redis_test_url.h); every test
 * starts with FLUSHDB of that database, so never point REDIS_URL at a server
 * whose database 15 holds data you want. Connections are killed by client name only, so other
 * clients of a shared server are not disturbed. When Redis is unreachable the Redis tests fail, unless
 * VB_ALLOW_NO_REDIS=1 (then they are skipped). The URL tests need no server.
 * The restart test starts its own redis-server on a free port when the binary
 * is on PATH.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "redis/redis.h"
#include "redis_test_server.h"
#include "redis_test_url.h"
#include "visionbatch/store.h"
#include "visionbatch/store_requeue.h"

#define SECRET "s3cr3tPW"

static const char *test_url(void)
{
    return vb_test_redis_url(15);
}

static int redis_available;
static redisContext *raw; /* a plain hiredis connection for arranging and inspecting */

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Runs a raw command and returns its reply (caller frees). */
static redisReply *rawcmd(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(raw, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    return r;
}

static void rawcmd_ok(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(raw, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
}

static redisContext *raw_connect(const vb__redis_url *u)
{
    struct timeval tv = {2, 0};
    redisContext *c = u->is_unix ? redisConnectUnixWithTimeout(u->path, tv)
                                 : redisConnectWithTimeout(u->host, u->port, tv);
    if (!c || c->err) {
        redisFree(c);
        return NULL;
    }
    redisReply *r = NULL;
    if (u->password[0]) {
        r = u->user[0] ? redisCommand(c, "AUTH %s %s", u->user, u->password)
                       : redisCommand(c, "AUTH %s", u->password);
        if (!r || r->type == REDIS_REPLY_ERROR)
            goto fail;
        freeReplyObject(r);
    }
    r = redisCommand(c, "SELECT %d", u->db);
    if (!r || r->type == REDIS_REPLY_ERROR)
        goto fail;
    freeReplyObject(r);
    return c;
fail:
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return NULL;
}

static int group_setup(void **state)
{
    vb__redis_url u;
    vb_error err = {0};
    if (vb__redis_url_parse(test_url(), &u, &err) != VB_OK) {
        fprintf(stderr, "REDIS_URL is invalid: %s\n", err.msg);
        return -1;
    }
    raw = raw_connect(&u);
    vb__redis_url_clear(&u);
    if (raw) {
        redis_available = 1;
        return 0;
    }
    const char *allow = getenv("VB_ALLOW_NO_REDIS");
    if (allow && strcmp(allow, "1") == 0) {
        fprintf(stderr, "Redis unreachable: Redis tests skipped (VB_ALLOW_NO_REDIS=1)\n");
        return 0;
    }
    fprintf(stderr,
            "Redis unreachable at the test URL ($REDIS_URL, database 15); "
            "start one (deploy/local/services.sh start) or set VB_ALLOW_NO_REDIS=1\n");
    return -1;
}

static int group_teardown(void **state)
{
    if (raw) {
        redisFree(raw);
        raw = NULL;
    }
    return 0;
}

/* Per test: a clean database and a fresh store in *state. */
static int setup(void **state)
{
    if (!redis_available) {
        *state = NULL;
        return 0;
    }
    redisReply *r = redisCommand(raw, "FLUSHDB");
    if (!r || r->type == REDIS_REPLY_ERROR) {
        if (r)
            freeReplyObject(r);
        return -1;
    }
    freeReplyObject(r);
    vb_store *s = NULL;
    vb_error err = {0};
    if (vb_store_new(test_url(), NULL, &s, &err) != VB_OK) {
        fprintf(stderr, "vb_store_new: %s\n", err.msg);
        return -1;
    }
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    vb_store_free(*state);
    return 0;
}

#define STORE()                                                                                    \
    vb_store *s = *state;                                                                          \
    if (!redis_available)                                                                          \
        skip();                                                                                    \
    vb_error err = {0};                                                                            \
    (void)err, (void)s

/* ---- URL errors (the grammar itself is tested in test_redis.c) ---- */

static void store_new_with_bad_url_fails_with_config_error(void **state)
{
    vb_store *s = (vb_store *)1;
    vb_error err = {0};
    assert_int_equal(vb_store_new("redis://:" SECRET "@host:99999/0", NULL, &s, &err),
                     VB_ERR_CONFIG);
    assert_null(s);
    assert_null(strstr(err.msg, SECRET));
}

static void status_names_round_trip(void **state)
{
    for (int i = VB_RUN_NONE; i <= VB_RUN_DEAD; i++)
        assert_int_equal(vb_run_status_parse(vb_run_status_name((vb_run_status)i)), i);
    assert_int_equal(vb_run_status_parse("Uploaded"), VB_RUN_UPLOADED);
    assert_int_equal(vb_run_status_parse("finished"), -1);
    assert_string_equal(vb_claim_decision_name(VB_CLAIM_SKIP_DONE), "skip_done");
}

/* ---- connection ---- */

static void store_connects_pings_and_describes_without_credentials(void **state)
{
    STORE();
    assert_int_equal(vb_store_ping(s, &err), VB_OK);
    vb__redis_url u;
    assert_int_equal(vb__redis_url_parse(test_url(), &u, NULL), VB_OK);
    char want[64];
    snprintf(want, sizeof want, "/%d", u.db);
    assert_non_null(strstr(vb_store_describe(s), want));
    if (u.password[0])
        assert_null(strstr(vb_store_describe(s), u.password));
    vb__redis_url_clear(&u);
}

static void store_unreachable_server_fails_with_redis_error(void **state)
{
    if (!redis_available)
        skip();
    vb_store *s = (vb_store *)1;
    vb_error err = {0};
    vb_store_opts o = {.connect_timeout_ms = 1000};
    assert_int_equal(vb_store_new("redis://:" SECRET "@127.0.0.1:1/0", &o, &s, &err),
                     VB_ERR_REDIS);
    assert_null(s);
    assert_non_null(strstr(err.msg, "127.0.0.1:1/0"));
    assert_null(strstr(err.msg, SECRET));
}

static void store_wrong_password_is_refused_without_leaking_it(void **state)
{
    if (!redis_available)
        skip();
    vb__redis_url u;
    assert_int_equal(vb__redis_url_parse(test_url(), &u, NULL), VB_OK);
    if (u.is_unix)
        skip();
    char url[512];
    snprintf(url, sizeof url, "redis://:%s-wrong@%s:%d/%d", SECRET, u.host, u.port, u.db);
    vb__redis_url_clear(&u);
    vb_store *s = NULL;
    vb_error err = {0};
    assert_int_equal(vb_store_new(url, NULL, &s, &err), VB_ERR_REDIS);
    assert_null(s);
    assert_non_null(strstr(err.msg, "authentication failed"));
    assert_null(strstr(err.msg, SECRET));
}

static void store_reconnects_on_the_call_after_a_killed_connection(void **state)
{
    STORE();
    char name[64];
    snprintf(name, sizeof name, "vbtest-%ld", (long)getpid());
    vb_store_opts o = {.client_name = name};
    vb_store_free(s);
    *state = s = NULL;
    assert_int_equal(vb_store_new(test_url(), &o, &s, &err), VB_OK);
    *state = s;
    assert_int_equal(vb_store_ping(s, &err), VB_OK);
    assert_true(vb_test_kill_clients_named(raw, name) >= 1);

    vb_claim_decision d = 0;
    vb_err rc = vb_store_claim_for_queue(s, "R1", 3, 60000, vb_store_now_ms(), &d, &err);
    assert_int_equal(rc, VB_ERR_REDIS);
    assert_int_equal(err.code, VB_ERR_REDIS);

    vb_error_clear(&err);
    assert_int_equal(vb_store_claim_for_queue(s, "R1", 3, 60000, vb_store_now_ms(), &d, &err),
                     VB_OK);
    assert_int_equal(d, VB_CLAIM_PUBLISH);
    assert_int_equal(vb_store_ping(s, &err), VB_OK);
    /* the new connection carries the name too */
    assert_true(vb_test_kill_clients_named(raw, name) >= 1);
    assert_int_equal(vb_store_ping(s, &err), VB_ERR_REDIS);
    assert_int_equal(vb_store_ping(s, &err), VB_OK);

    vb_store *bad = NULL;
    o.client_name = "two words";
    assert_int_equal(vb_store_new(test_url(), &o, &bad, &err), VB_ERR_INVALID);
    assert_null(bad);
}

static void store_reloads_scripts_after_script_flush(void **state)
{
    STORE();
    vb_claim_decision d = 0;
    assert_int_equal(vb_store_claim_for_queue(s, "R1", 3, 60000, 1000, &d, &err), VB_OK);
    rawcmd_ok("SCRIPT FLUSH");
    assert_int_equal(vb_store_claim_for_queue(s, "R2", 3, 60000, 1000, &d, &err), VB_OK);
    assert_int_equal(d, VB_CLAIM_PUBLISH);
}

static void store_command_timeout_drops_the_connection_and_recovers(void **state)
{
    STORE();
    vb_store *fast = NULL;
    vb_store_opts o = {.command_timeout_ms = 200};
    assert_int_equal(vb_store_new(test_url(), &o, &fast, &err), VB_OK);
    rawcmd_ok("CLIENT PAUSE 800 ALL");
    vb_error_clear(&err);
    assert_int_equal(vb_store_ping(fast, &err), VB_ERR_REDIS);
    assert_non_null(strstr(err.msg, "timed out"));
    sleep_ms(900);
    assert_int_equal(vb_store_ping(fast, &err), VB_OK);
    vb_store_free(fast);
}

/* A server that accepts one connection and resets it at once. */
static pid_t start_resetting_server(int *port, int *go_fd)
{
    int go[2];
    assert_int_equal(pipe(go), 0);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 4), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char ch;
        close(go[1]);
        if (read(go[0], &ch, 1) != 1) /* accept only once the client is connected */
            _exit(1);
        int c = accept(fd, NULL, NULL);
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        if (c >= 0) {
            setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            close(c);
        }
        _exit(0);
    }
    close(fd);
    close(go[0]);
    *go_fd = go[1];
    return pid;
}

static void store_reports_a_reset_connection_as_a_redis_error(void **state)
{
    int port = 0, go = -1;
    pid_t pid = start_resetting_server(&port, &go);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    vb_store *s = NULL;
    vb_error err = {0};
    assert_int_equal(vb_store_new(url, NULL, &s, &err), VB_OK); /* no AUTH/SELECT to send */
    assert_int_equal(write(go, "x", 1), 1);
    close(go);
    waitpid(pid, NULL, 0);
    sleep_ms(100); /* the reset has arrived before the next command */
    assert_int_equal(vb_store_ping(s, NULL), VB_ERR_REDIS);
    assert_int_equal(vb_store_ping(s, &err), VB_ERR_REDIS); /* nobody listens any more */
    vb_store_free(s);
}

static void store_survives_a_redis_restart(void **state)
{
    if (!redis_available || system("command -v redis-server >/dev/null 2>&1") != 0)
        skip();
    int port = vb_test_free_port();
    pid_t pid = vb_test_start_redis(port, NULL, NULL);
    if (pid < 0)
        skip();
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", port);
    vb_store *s = NULL;
    vb_error err = {0};
    vb_store_opts o = {.connect_timeout_ms = 500, .command_timeout_ms = 1000};
    assert_int_equal(vb_store_new(url, &o, &s, &err), VB_OK);
    assert_int_equal(vb_store_ping(s, &err), VB_OK);

    vb_test_stop_redis(pid);
    assert_int_equal(vb_store_ping(s, &err), VB_ERR_REDIS); /* connection lost */
    assert_int_equal(vb_store_ping(s, &err), VB_ERR_REDIS); /* reconnect refused */
    vb_error_clear(&err);
    assert_int_equal(vb_store_ping(s, &err), VB_ERR_REDIS); /* within the backoff: fails fast */
    assert_non_null(strstr(err.msg, "next reconnect"));

    pid = vb_test_start_redis(port, NULL, NULL);
    if (pid < 0) {
        vb_store_free(s);
        skip();
    }
    vb_err rc = VB_ERR_REDIS;
    for (int i = 0; i < 60 && rc != VB_OK; i++) {
        rc = vb_store_ping(s, &err);
        if (rc != VB_OK)
            sleep_ms(100);
    }
    assert_int_equal(rc, VB_OK);
    vb_claim_decision d = 0;
    assert_int_equal(vb_store_claim_for_queue(s, "R1", 3, 60000, 1000, &d, &err), VB_OK);
    assert_int_equal(d, VB_CLAIM_PUBLISH);
    vb_store_free(s);
    vb_test_stop_redis(pid);
}

/* ---- claim decisions ---- */

static vb_claim_decision claim(vb_store *s, const char *id, long max, long long now)
{
    vb_error err = {0};
    vb_claim_decision d = 0;
    vb_err rc = vb_store_claim_for_queue(s, id, max, 60000, now, &d, &err);
    if (rc != VB_OK)
        fail_msg("claim %s: %s", id, err.msg);
    return d;
}

static vb_run_state get(vb_store *s, const char *id)
{
    vb_run_state st;
    vb_error err = {0};
    if (vb_store_get(s, id, &st, &err) != VB_OK)
        fail_msg("get %s: %s", id, err.msg);
    return st;
}

/* Takes the lock and begins an attempt; returns the token in tok. */
static void start_attempt(vb_store *s, const char *id, long lease_ms, char tok[VB_STORE_TOKEN_SIZE])
{
    vb_error err = {0};
    assert_int_equal(vb_store_lock_acquire(s, id, "w1:1", lease_ms, tok, &err), VB_OK);
    assert_int_equal(vb_store_begin_processing(s, id, tok, "w1:1", lease_ms, NULL, &err), VB_OK);
}

static void claim_without_state_publishes_and_records_queued(void **state)
{
    STORE();
    vb_claim_decision d = 0;
    long long v = 0;
    assert_int_equal(vb_store_claim_for_queue_ex(s, "run-abc", 3, 60000, 5000, "trace-1", "exec-9",
                                                 &d, &v, &err),
                     VB_OK);
    assert_int_equal(d, VB_CLAIM_PUBLISH);
    assert_int_equal(v, 1);
    vb_run_state st = get(s, "RUN-ABC");
    assert_string_equal(st.id, "RUN-ABC");
    assert_int_equal(st.state, VB_RUN_QUEUED);
    assert_int_equal(st.attempts, 0);
    assert_int_equal(st.created_at, 5000);
    assert_int_equal(st.queued_at, 5000);
    assert_int_equal(st.updated_at, 5000);
    assert_int_equal(st.lease_until, 65000);
    assert_string_equal(st.trace_id, "trace-1");
    assert_string_equal(st.execution_id, "exec-9");
    assert_string_equal(st.worker, "");
    assert_string_equal(st.last_error, "");
    vb_run_state_free(&st);
    assert_null(st.id);
}

static void claim_queued_with_live_lease_skips_and_expired_republishes(void **state)
{
    STORE();
    assert_int_equal(claim(s, "R1", 3, 1000), VB_CLAIM_PUBLISH);
    assert_int_equal(claim(s, "R1", 3, 1000), VB_CLAIM_SKIP_IN_PROGRESS);
    assert_int_equal(claim(s, "R1", 3, 61000), VB_CLAIM_SKIP_IN_PROGRESS); /* lease_until itself */
    assert_int_equal(claim(s, "R1", 3, 61001), VB_CLAIM_PUBLISH);
    vb_run_state st = get(s, "R1");
    assert_int_equal(st.queued_at, 61001);
    assert_int_equal(st.created_at, 1000);
    assert_int_equal(st.version, 2);
    vb_run_state_free(&st);
}

static void claim_processing_with_live_lease_skips(void **state)
{
    STORE();
    char tok[VB_STORE_TOKEN_SIZE];
    long long now = vb_store_now_ms();
    assert_int_equal(claim(s, "R1", 3, now), VB_CLAIM_PUBLISH);
    start_attempt(s, "R1", 60000, tok);
    assert_int_equal(claim(s, "R1", 3, vb_store_now_ms()), VB_CLAIM_SKIP_IN_PROGRESS);
    assert_int_equal(vb_store_mark_upload_started(s, "R1", tok, NULL, &err), VB_OK);
    assert_int_equal(claim(s, "R1", 3, vb_store_now_ms()), VB_CLAIM_SKIP_IN_PROGRESS);
}

static void claim_processing_with_expired_lease_republishes(void **state)
{
    STORE();
    char tok[VB_STORE_TOKEN_SIZE];
    assert_int_equal(claim(s, "R1", 3, vb_store_now_ms()), VB_CLAIM_PUBLISH);
    start_attempt(s, "R1", 1000, tok);
    assert_int_equal(claim(s, "R1", 3, vb_store_now_ms() + 5000), VB_CLAIM_PUBLISH);
    vb_run_state st = get(s, "R1");
    assert_int_equal(st.state, VB_RUN_QUEUED);
    assert_int_equal(st.attempts, 1); /* kept */
    assert_non_null(strstr(st.last_error, "lease expired while processing"));
    vb_run_state_free(&st);
}

static void claim_expired_lease_at_max_attempts_marks_dead(void **state)
{
    STORE();
    char tok[VB_STORE_TOKEN_SIZE];
    assert_int_equal(claim(s, "R1", 1, vb_store_now_ms()), VB_CLAIM_PUBLISH);
    start_attempt(s, "R1", 1000, tok);
    assert_int_equal(claim(s, "R1", 1, vb_store_now_ms() + 5000), VB_CLAIM_DEAD);
    vb_run_state st = get(s, "R1");
    assert_int_equal(st.state, VB_RUN_DEAD);
    assert_true(st.finished_at > 0);
    vb_run_state_free(&st);
}

static void claim_failed_with_attempts_left_publishes(void **state)
{
    STORE();
    char tok[VB_STORE_TOKEN_SIZE];
    assert_int_equal(claim(s, "R1", 3, vb_store_now_ms()), VB_CLAIM_PUBLISH);
    start_attempt(s, "R1", 60000, tok);
    assert_int_equal(vb_store_set_state(s, "R1", tok, VB_RUN_FAILED, "backend said no", NULL, &err),
                     VB_OK);
    assert_int_equal(vb_store_lock_release(s, "R1", tok, &err), VB_OK);
    assert_int_equal(claim(s, "R1", 3, vb_store_now_ms() + 60001), VB_CLAIM_PUBLISH);
    vb_run_state st = get(s, "R1");
    assert_int_equal(st.state, VB_RUN_QUEUED);
    assert_int_equal(st.attempts, 1);
    assert_string_equal(st.last_error, "backend said no");
    vb_run_state_free(&st);
}

static void claim_failed_at_max_attempts_marks_dead(void **state)
{
    STORE();
    char tok[VB_STORE_TOKEN_SIZE];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(claim(s, "R1", 2, vb_store_now_ms() + 60001), VB_CLAIM_PUBLISH);
        start_attempt(s, "R1", 60000, tok);
        assert_int_equal(vb_store_set_state(s, "R1", tok, VB_RUN_FAILED, "boom", NULL, &err),
                         VB_OK);
        assert_int_equal(vb_store_lock_release(s, "R1", tok, &err), VB_OK);
    }
    assert_int_equal(claim(s, "R1", 2, vb_store_now_ms()), VB_CLAIM_DEAD);
    vb_run_state st = get(s, "R1");
    assert_int_equal(st.state, VB_RUN_DEAD);
    assert_int_equal(st.attempts, 2);
    long long v = st.version;
    vb_run_state_free(&st);
    assert_int_equal(claim(s, "R1", 2, vb_store_now_ms()), VB_CLAIM_DEAD);
    st = get(s, "R1");
    assert_int_equal(st.version, v); /* a dead run is not touched again */
    vb_run_state_free(&st);
}

static void claim_uploaded_skips_as_done(void **state)
{
    STORE();
    char tok[VB_STORE_TOKEN_SIZE];
    assert_int_equal(claim(s, "R1", 3, vb_store_now_ms()), VB_CLAIM_PUBLISH);
    start_attempt(s, "R1", 60000, tok);
    assert_int_equal(vb_store_set_state(s, "R1", tok, VB_RUN_UPLOADED, "", "b1,b2", &err), VB_OK);
    assert_int_equal(claim(s, "R1", 3, vb_store_now_ms()), VB_CLAIM_SKIP_DONE);
    /* Even far in the future (no lease applies to a finished run). */
    assert_int_equal(claim(s, "R1", 3, vb_store_now_ms() + 86400000LL), VB_CLAIM_SKIP_DONE);
}

static void claim_rejects_invalid_arguments(void **state)
{
    STORE();
    vb_claim_decision d = 0;
    assert_int_equal(vb_store_claim_for_queue(s, "a b", 3, 1000, 1000, &d, &err), VB_ERR_INVALID);
    assert_int_equal(vb_store_claim_for_queue(s, "", 3, 1000, 1000, &d, &err), VB_ERR_INVALID);
    assert_int_equal(vb_store_claim_for_queue(s, "R1", 0, 1000, 1000, &d, &err), VB_ERR_INVALID);
    assert_int_equal(vb_store_claim_for_queue(s, "R1", 3, 0, 1000, &d, &err), VB_ERR_INVALID);
    char longid[VB_STORE_ID_MAX + 2];
    memset(longid, 'A', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    assert_int_equal(vb_store_claim_for_queue(s, longid, 3, 1000, 1000, &d, &err), VB_ERR_INVALID);
    longid[VB_STORE_ID_MAX] = '\0';
    assert_int_equal(vb_store_claim_for_queue(s, longid, 3, 1000, 1000, &d, &err), VB_OK);
}

#define RACE_RUNS 40

/* Child of the race test: claims every run once; exits with the number of
 * PUBLISH decisions (or 255 on error). */
static void race_child(int go_fd)
{
    char c;
    vb_store *s = NULL;
    vb_error err = {0};
    if (vb_store_new(test_url(), NULL, &s, &err) != VB_OK)
        _exit(255);
    if (read(go_fd, &c, 1) != 1)
        _exit(255);
    int published = 0;
    for (int i = 0; i < RACE_RUNS; i++) {
        char id[16];
        snprintf(id, sizeof id, "RACE-%d", i);
        vb_claim_decision d = 0;
        if (vb_store_claim_for_queue(s, id, 3, 60000, 1000, &d, &err) != VB_OK)
            _exit(255);
        published += d == VB_CLAIM_PUBLISH;
    }
    vb_store_free(s);
    _exit(published);
}

static void concurrent_claimers_publish_each_run_exactly_once(void **state)
{
    STORE();
    int go[2];
    assert_int_equal(pipe(go), 0);
    pid_t kids[3];
    for (int k = 0; k < 3; k++) {
        kids[k] = fork();
        assert_true(kids[k] >= 0);
        if (kids[k] == 0) {
            close(go[1]);
            race_child(go[0]);
        }
    }
    close(go[0]);
    sleep_ms(100); /* let every child connect */
    assert_int_equal(write(go[1], "xxx", 3), 3);
    close(go[1]);
    int total = 0;
    for (int k = 0; k < 3; k++) {
        int st = 0;
        assert_int_equal(waitpid(kids[k], &st, 0), kids[k]);
        assert_true(WIFEXITED(st));
        assert_int_not_equal(WEXITSTATUS(st), 255);
        total += WEXITSTATUS(st);
    }
    /* Every run got at least one PUBLISH (the first claim), so a total of
     * RACE_RUNS means none got two. */
    assert_int_equal(total, RACE_RUNS);
    vb_run_state st = get(s, "RACE-7");
    assert_int_equal(st.version, 1);
    vb_run_state_free(&st);
}

/* ---- locks ---- */

static void lock_is_exclusive_and_tokens_are_random(void **state)
{
    STORE();
    char t1[VB_STORE_TOKEN_SIZE], t2[VB_STORE_TOKEN_SIZE] = "";
    assert_int_equal(vb_store_lock_acquire(s, "r1", "worker-a", 30000, t1, &err), VB_OK);
    assert_int_equal(strlen(t1), 32);
    assert_int_equal(vb_store_lock_acquire(s, "R1", "worker-b", 30000, t2, &err),
                     VB_ERR_CONFLICT);
    assert_int_equal(vb_store_lock_acquire(s, "R1", "worker-b", 30000, t2, NULL),
                     VB_ERR_CONFLICT);
    redisReply *r = rawcmd("GET visionbatch:lock:R1");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    char want[80];
    snprintf(want, sizeof want, "%s worker-a", t1);
    assert_string_equal(r->str, want);
    freeReplyObject(r);
    assert_int_equal(vb_store_lock_acquire(s, "R2", "worker-a", 30000, t2, &err), VB_OK);
    assert_string_not_equal(t1, t2);
    assert_int_equal(vb_store_lock_acquire(s, "R3", "bad worker", 30000, t2, &err),
                     VB_ERR_INVALID);
}

static void lock_renew_and_release_refuse_a_wrong_token(void **state)
{
    STORE();
    char tok[VB_STORE_TOKEN_SIZE];
    const char *wrong = "0123456789abcdef0123456789abcdef";
    assert_int_equal(vb_store_lock_acquire(s, "R1", "w", 1000, tok, &err), VB_OK);
    assert_int_equal(vb_store_lock_renew(s, "R1", wrong, 60000, &err), VB_ERR_CANCELLED);
    assert_int_equal(vb_store_lock_release(s, "R1", wrong, &err), VB_ERR_CANCELLED);
    assert_int_equal(vb_store_lock_renew(s, "R1", "not-a-token", 60000, &err), VB_ERR_INVALID);

    assert_int_equal(vb_store_lock_renew(s, "R1", tok, 60000, &err), VB_OK);
    redisReply *r = rawcmd("PTTL visionbatch:lock:R1");
    assert_true(r->integer > 50000);
    freeReplyObject(r);

    assert_int_equal(vb_store_lock_release(s, "R1", tok, &err), VB_OK);
    r = rawcmd("EXISTS visionbatch:lock:R1");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    assert_int_equal(vb_store_lock_release(s, "R1", tok, &err), VB_ERR_CANCELLED);
}

static void lock_renew_after_expiry_reports_lost(void **state)
{
    STORE();
    char tok[VB_STORE_TOKEN_SIZE];
    assert_int_equal(vb_store_lock_acquire(s, "R1", "w", 50, tok, &err), VB_OK);
    sleep_ms(150);
    assert_int_equal(vb_store_lock_renew(s, "R1", tok, 1000, &err), VB_ERR_CANCELLED);
    char t2[VB_STORE_TOKEN_SIZE];
    assert_int_equal(vb_store_lock_acquire(s, "R1", "w2", 1000, t2, &err), VB_OK);
}

static void lock_renew_extends_the_run_lease(void **state)
{
    STORE();
    char tok[VB_STORE_TOKEN_SIZE];
    assert_int_equal(claim(s, "R1", 3, vb_store_now_ms()), VB_CLAIM_PUBLISH);
    start_attempt(s, "R1", 1000, tok);
    long long before = vb_store_now_ms();
    assert_int_equal(vb_store_lock_renew(s, "R1", tok, 120000, &err), VB_OK);
    vb_run_state st = get(s, "R1");
    assert_true(st.lease_until >= before + 120000);
    vb_run_state_free(&st);
    assert_int_equal(claim(s, "R1", 3, before + 60000), VB_CLAIM_SKIP_IN_PROGRESS);
}

/* ---- worker transitions ---- */

static void begin_processing_counts_attempts_and_sets_lease(void **state)
{
    STORE();
    char tok[VB_STORE_TOKEN_SIZE];
    assert_int_equal(claim(s, "R1", 3, vb_store_now_ms()), VB_CLAIM_PUBLISH);
    assert_int_equal(vb_store_lock_acquire(s, "R1", "host:42", 30000, tok, &err), VB_OK);
    long long before = vb_store_now_ms();
    long attempt = 0;
    assert_int_equal(vb_store_begin_processing(s, "r1", tok, "host:42", 30000, &attempt, &err),
                     VB_OK);
    assert_int_equal(attempt, 1);
    vb_run_state st = get(s, "R1");
    assert_int_equal(st.state, VB_RUN_PROCESSING);
    assert_int_equal(st.attempts, 1);
    assert_string_equal(st.worker, "host:42");
    assert_true(st.started_at >= before);
    assert_true(st.lease_until >= before + 30000);
    vb_run_state_free(&st);
}

static void begin_processing_refuses_uploaded_dead_and_wrong_token(void **state)
{
    STORE();
    char tok[VB_STORE_TOKEN_SIZE];
    const char *wrong = "ffffffffffffffffffffffffffffffff";
    assert_int_equal(claim(s, "R1", 3, vb_store_now_ms()), VB_CLAIM_PUBLISH);
    assert_int_equal(vb_store_lock_acquire(s, "R1", "w", 30000, tok, &err), VB_OK);
    assert_int_equal(vb_store_begin_processing(s, "R1", wrong, "w", 30000, NULL, &err),
                     VB_ERR_CANCELLED);
    assert_int_equal(vb_store_begin_processing(s, "R1", tok, "w", 30000, NULL, &err), VB_OK);
    assert_int_equal(vb_store_set_state(s, "R1", tok, VB_RUN_UPLOADED, NULL, NULL, &err), VB_OK);
    vb_error_clear(&err);
    assert_int_equal(vb_store_begin_processing(s, "R1", tok, "w", 30000, NULL, &err),
                     VB_ERR_CONFLICT);
    assert_non_null(strstr(err.msg, "uploaded"));
    vb_run_state st = get(s, "R1");
    assert_int_equal(st.attempts, 1);
    vb_run_state_free(&st);

    assert_int_equal(vb_store_lock_acquire(s, "R2", "w", 30000, tok, &err), VB_OK);
    assert_int_equal(vb_store_set_state(s, "R2", tok, VB_RUN_DEAD, "gave up", NULL, &err), VB_OK);
    assert_int_equal(vb_store_begin_processing(s, "R2", tok, "w", 30000, NULL, &err),
                     VB_ERR_CONFLICT);
}

static void set_state_with_a_lost_lock_is_refused(void **state)
{
    STORE();
    char tok[VB_STORE_TOKEN_SIZE];
    assert_int_equal(claim(s, "R1", 3, vb_store_now_ms()), VB_CLAIM_PUBLISH);
    start_attempt(s, "R1", 30000, tok);
    rawcmd_ok("DEL visionbatch:lock:R1"); /* as if it had expired */
    assert_int_equal(vb_store_set_state(s, "R1", tok, VB_RUN_UPLOADED, NULL, NULL, &err),
                     VB_ERR_CANCELLED);
    assert_int_equal(vb_store_mark_upload_started(s, "R1", tok, NULL, &err), VB_ERR_CANCELLED);
    char other[VB_STORE_TOKEN_SIZE];
    assert_int_equal(vb_store_lock_acquire(s, "R1", "w2", 30000, other, &err), VB_OK);
    assert_int_equal(vb_store_set_state(s, "R1", tok, VB_RUN_FAILED, "x", NULL, &err),
                     VB_ERR_CANCELLED);
    vb_run_state st = get(s, "R1");
    assert_int_equal(st.state, VB_RUN_PROCESSING);
    assert_string_equal(st.last_error, "");
    vb_run_state_free(&st);
}

static void set_state_rejects_states_a_worker_cannot_set(void **state)
{
    STORE();
    char tok[VB_STORE_TOKEN_SIZE];
    start_attempt(s, "R1", 30000, tok);
    assert_int_equal(vb_store_set_state(s, "R1", tok, VB_RUN_QUEUED, NULL, NULL, &err),
                     VB_ERR_INVALID);
    assert_int_equal(vb_store_set_state(s, "R1", tok, VB_RUN_PROCESSING, NULL, NULL, &err),
                     VB_ERR_INVALID);
    assert_int_equal(vb_store_set_state(s, "R1", tok, VB_RUN_NONE, NULL, NULL, &err),
                     VB_ERR_INVALID);
}

static void uploaded_is_final(void **state)
{
    STORE();
    char tok[VB_STORE_TOKEN_SIZE];
    assert_int_equal(claim(s, "R1", 3, vb_store_now_ms()), VB_CLAIM_PUBLISH);
    start_attempt(s, "R1", 30000, tok);
    assert_int_equal(vb_store_set_state(s, "R1", tok, VB_RUN_UPLOADED, NULL, "b-1,b-2", &err),
                     VB_OK);
    assert_int_equal(vb_store_set_state(s, "R1", tok, VB_RUN_FAILED, "late", NULL, &err),
                     VB_ERR_CONFLICT);
    assert_int_equal(vb_store_mark_upload_started(s, "R1", tok, NULL, &err), VB_ERR_CONFLICT);
    assert_int_equal(vb_store_retry(s, "R1", &err), VB_ERR_CONFLICT);
    vb_run_state st = get(s, "R1");
    assert_int_equal(st.state, VB_RUN_UPLOADED);
    assert_string_equal(st.batch_ids, "b-1,b-2");
    assert_string_equal(st.last_error, "");
    assert_true(st.finished_at > 0);
    assert_int_equal(st.lease_until, 0);
    vb_run_state_free(&st);
}

static void mark_upload_started_reports_an_earlier_upload(void **state)
{
    STORE();
    char tok[VB_STORE_TOKEN_SIZE];
    assert_int_equal(claim(s, "R1", 3, vb_store_now_ms()), VB_CLAIM_PUBLISH);
    start_attempt(s, "R1", 30000, tok);
    long long prev = -1, before = vb_store_now_ms();
    assert_int_equal(vb_store_mark_upload_started(s, "R1", tok, &prev, &err), VB_OK);
    assert_int_equal(prev, 0);
    vb_run_state st = get(s, "R1");
    assert_int_equal(st.state, VB_RUN_UPLOADING);
    long long first = st.upload_started_at;
    assert_true(first >= before);
    vb_run_state_free(&st);
    assert_int_equal(vb_store_set_state(s, "R1", tok, VB_RUN_FAILED, "POST timed out", NULL, &err),
                     VB_OK);
    assert_int_equal(vb_store_lock_release(s, "R1", tok, &err), VB_OK);

    /* The next attempt learns that an upload may already have happened. */
    assert_int_equal(claim(s, "R1", 3, vb_store_now_ms() + 30001), VB_CLAIM_PUBLISH);
    start_attempt(s, "R1", 30000, tok);
    st = get(s, "R1");
    assert_int_equal(st.upload_started_at, first);
    vb_run_state_free(&st);
    assert_int_equal(vb_store_mark_upload_started(s, "R1", tok, &prev, &err), VB_OK);
    assert_int_equal(prev, first);
}

/* Fails the current attempt of R1 (holding tok) and releases the lock. */
static long long fail_attempt(vb_store *s, char tok[VB_STORE_TOKEN_SIZE])
{
    vb_error err = {0};
    assert_int_equal(vb_store_set_state(s, "R1", tok, VB_RUN_FAILED, "HTTP 503", NULL, &err),
                     VB_OK);
    assert_int_equal(vb_store_lock_release(s, "R1", tok, &err), VB_OK);
    vb_run_state st = get(s, "R1");
    long long at = st.finished_at;
    vb_run_state_free(&st);
    return at;
}

static void claim_honours_the_retry_backoff_of_a_failed_run(void **state)
{
    STORE();
    char tok[VB_STORE_TOKEN_SIZE];
    const long lease = 2000;
    assert_int_equal(claim(s, "R1", 5, vb_store_now_ms()), VB_CLAIM_PUBLISH);
    /* Attempt n waits lease × 2^(n−1) after it failed: 2 s, 4 s, 8 s. */
    for (long n = 1; n <= 3; n++) {
        start_attempt(s, "R1", lease, tok);
        long long failed_at = fail_attempt(s, tok);
        long long backoff = lease << (n - 1);
        vb_run_state st = get(s, "R1");
        assert_int_equal(st.attempts, n);
        assert_int_equal(st.retry_at, failed_at + backoff);
        vb_run_state_free(&st);
        assert_int_equal(claim(s, "R1", 5, failed_at), VB_CLAIM_SKIP_BACKOFF);
        assert_int_equal(claim(s, "R1", 5, failed_at + backoff - 1), VB_CLAIM_SKIP_BACKOFF);
        st = get(s, "R1");
        assert_int_equal(st.state, VB_RUN_FAILED); /* a refused claim changes nothing */
        vb_run_state_free(&st);
        assert_int_equal(claim(s, "R1", 5, failed_at + backoff), VB_CLAIM_PUBLISH);
    }
}

static void retry_backoff_is_capped_at_ten_minutes(void **state)
{
    STORE();
    char tok[VB_STORE_TOKEN_SIZE];
    rawcmd_ok("HSET visionbatch:run:R1 state failed attempts 11 lease_ms 30000");
    start_attempt(s, "R1", 30000, tok); /* attempt 12: 30 s × 2^11 > 10 min */
    long long failed_at = fail_attempt(s, tok);
    vb_run_state st = get(s, "R1");
    assert_int_equal(st.retry_at, failed_at + 600000);
    vb_run_state_free(&st);
    assert_int_equal(claim(s, "R1", 20, failed_at + 599999), VB_CLAIM_SKIP_BACKOFF);
    assert_int_equal(claim(s, "R1", 20, failed_at + 600000), VB_CLAIM_PUBLISH);
}

static void hand_back_and_operator_retry_have_no_backoff(void **state)
{
    STORE();
    char tok[VB_STORE_TOKEN_SIZE];
    assert_int_equal(claim(s, "R1", 5, vb_store_now_ms()), VB_CLAIM_PUBLISH);
    start_attempt(s, "R1", 60000, tok);
    long long failed_at = fail_attempt(s, tok);
    assert_int_equal(claim(s, "R1", 5, failed_at + 60000), VB_CLAIM_PUBLISH);
    start_attempt(s, "R1", 60000, tok);
    assert_int_equal(vb_store_hand_back(s, "R1", tok, "shutting down", &err), VB_OK);
    assert_int_equal(claim(s, "R1", 5, vb_store_now_ms()), VB_CLAIM_PUBLISH);
    start_attempt(s, "R1", 60000, tok);
    failed_at = fail_attempt(s, tok);
    assert_int_equal(claim(s, "R1", 5, failed_at), VB_CLAIM_SKIP_BACKOFF);
    assert_int_equal(vb_store_retry(s, "R1", &err), VB_OK);
    assert_int_equal(claim(s, "R1", 5, failed_at), VB_CLAIM_PUBLISH);
}

static void begin_attempt_refuses_a_redelivered_attempt(void **state)
{
    STORE();
    char tok[VB_STORE_TOKEN_SIZE];
    long attempt = 0;
    assert_int_equal(claim(s, "R1", 5, vb_store_now_ms()), VB_CLAIM_PUBLISH);
    assert_int_equal(vb_store_lock_acquire(s, "R1", "w1", 60000, tok, &err), VB_OK);
    assert_int_equal(vb_store_begin_attempt(s, "R1", tok, "w1", 60000, 1, &attempt, &err),
                     VB_OK);
    assert_int_equal(attempt, 1);
    fail_attempt(s, tok);
    /* The same message again (a rebalance redelivered it): not a new attempt. */
    assert_int_equal(vb_store_lock_acquire(s, "R1", "w2", 60000, tok, &err), VB_OK);
    assert_int_equal(vb_store_begin_attempt(s, "R1", tok, "w2", 60000, 1, &attempt, &err),
                     VB_ERR_CONFLICT);
    assert_non_null(strstr(err.msg, "attempt already begun"));
    vb_run_state st = get(s, "R1");
    assert_int_equal(st.attempts, 1);
    assert_int_equal(st.state, VB_RUN_FAILED);
    assert_string_equal(st.worker, "w1");
    vb_run_state_free(&st);
    assert_int_equal(vb_store_lock_release(s, "R1", tok, &err), VB_OK);
    /* The message the claim publishes after the backoff carries attempt 2. */
    assert_int_equal(claim(s, "R1", 5, vb_store_now_ms() + 60001), VB_CLAIM_PUBLISH);
    assert_int_equal(vb_store_lock_acquire(s, "R1", "w2", 60000, tok, &err), VB_OK);
    assert_int_equal(vb_store_begin_attempt(s, "R1", tok, "w2", 60000, 2, &attempt, &err),
                     VB_OK);
    assert_int_equal(attempt, 2);
}

static void upload_gate_checks_the_lock_extends_the_lease_and_records_the_deadline(void **state)
{
    STORE();
    char tok[VB_STORE_TOKEN_SIZE], other[VB_STORE_TOKEN_SIZE];
    start_attempt(s, "R1", 1000, tok);
    long long before = vb_store_now_ms();
    assert_int_equal(vb_store_upload_gate(s, "R1", tok, 30000, before + 5000, &err), VB_OK);
    vb_run_state st = get(s, "R1");
    assert_int_equal(st.state, VB_RUN_UPLOADING);
    assert_true(st.upload_started_at >= before);
    assert_int_equal(st.upload_until, before + 5000);
    assert_true(st.lease_until >= before + 30000);
    vb_run_state_free(&st);
    redisReply *r = rawcmd("PTTL visionbatch:lock:R1");
    assert_true(r->integer > 25000); /* the lock got a full lease of room */
    freeReplyObject(r);
    assert_int_equal(vb_store_upload_gate(s, "R1", tok, 30000, before - 1, &err), VB_ERR_INVALID);
    /* Lock lost and taken by another: refused, nothing recorded. */
    rawcmd_ok("DEL visionbatch:lock:R1");
    assert_int_equal(vb_store_lock_acquire(s, "R1", "w2", 60000, other, &err), VB_OK);
    assert_int_equal(vb_store_upload_gate(s, "R1", tok, 30000, before + 9000, &err),
                     VB_ERR_CANCELLED);
    st = get(s, "R1");
    assert_int_equal(st.upload_until, before + 5000);
    vb_run_state_free(&st);
    assert_int_equal(vb_store_set_state(s, "R1", other, VB_RUN_UPLOADED, "", NULL, &err), VB_OK);
    assert_int_equal(vb_store_upload_gate(s, "R1", other, 30000, before + 9000, &err),
                     VB_ERR_CONFLICT);
}

static void run_ids_follow_the_one_rule(void **state)
{
    STORE();
    char tok[VB_STORE_TOKEN_SIZE];
    /* ':' is allowed (run.h); ids are kept upper case. */
    assert_int_equal(claim(s, "org:run-1.a_b", 3, vb_store_now_ms()), VB_CLAIM_PUBLISH);
    start_attempt(s, "ORG:RUN-1.A_B", 60000, tok);
    vb_run_state st = get(s, "Org:Run-1.A_B");
    assert_string_equal(st.id, "ORG:RUN-1.A_B");
    assert_int_equal(st.state, VB_RUN_PROCESSING);
    vb_run_state_free(&st);
    vb_claim_decision d = 0;
    const char *bad[] = {"...", ".", "a/b", "a b", "a\nb", "run%3A1", "é"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(vb_store_claim_for_queue(s, bad[i], 3, 1000, 1000, &d, &err),
                         VB_ERR_INVALID);
        assert_int_equal(vb_run_id_valid(bad[i]), 0);
    }
}

static void set_state_cuts_last_error_on_a_character_boundary(void **state)
{
    STORE();
    char tok[VB_STORE_TOKEN_SIZE];
    start_attempt(s, "R1", 30000, tok);
    char msg[VB_STORE_LAST_ERROR_MAX + 16];
    memset(msg, 'a', VB_STORE_LAST_ERROR_MAX - 1);
    memcpy(msg + VB_STORE_LAST_ERROR_MAX - 1, "\xc3\xa9tail", 7); /* é straddles the limit */
    assert_int_equal(vb_store_set_state(s, "R1", tok, VB_RUN_FAILED, msg, NULL, &err), VB_OK);
    vb_run_state st = get(s, "R1");
    assert_int_equal(strlen(st.last_error), VB_STORE_LAST_ERROR_MAX - 1);
    vb_run_state_free(&st);

    char *big = malloc(VB_STORE_BATCH_IDS_MAX + 2);
    assert_non_null(big);
    memset(big, 'b', VB_STORE_BATCH_IDS_MAX + 1);
    big[VB_STORE_BATCH_IDS_MAX + 1] = '\0';
    assert_int_equal(vb_store_set_state(s, "R1", tok, VB_RUN_FAILED, NULL, big, &err),
                     VB_ERR_INVALID);
    free(big);
}

/* ---- operator ---- */

static void retry_makes_a_dead_run_publishable_again(void **state)
{
    STORE();
    char tok[VB_STORE_TOKEN_SIZE];
    assert_int_equal(claim(s, "R1", 1, vb_store_now_ms()), VB_CLAIM_PUBLISH);
    start_attempt(s, "R1", 30000, tok);
    assert_int_equal(vb_store_set_state(s, "R1", tok, VB_RUN_FAILED, "boom", NULL, &err), VB_OK);
    assert_int_equal(vb_store_lock_release(s, "R1", tok, &err), VB_OK);
    assert_int_equal(claim(s, "R1", 1, vb_store_now_ms()), VB_CLAIM_DEAD);

    assert_int_equal(vb_store_retry(s, "r1", &err), VB_OK);
    vb_run_state st = get(s, "R1");
    assert_int_equal(st.state, VB_RUN_FAILED);
    assert_int_equal(st.attempts, 0);
    assert_string_equal(st.last_error, "boom");
    vb_run_state_free(&st);
    assert_int_equal(claim(s, "R1", 1, vb_store_now_ms()), VB_CLAIM_PUBLISH);

    /* queued: not retryable; unknown: not found. */
    vb_error_clear(&err);
    assert_int_equal(vb_store_retry(s, "R1", &err), VB_ERR_CONFLICT);
    assert_non_null(strstr(err.msg, "queued"));
    assert_int_equal(vb_store_retry(s, "NOPE", &err), VB_ERR_NOT_FOUND);
    assert_int_equal(vb_store_get(s, "NOPE", &st, &err), VB_ERR_NOT_FOUND);
    assert_null(st.id);
}

static void list_orders_by_latest_update_and_filters_by_state(void **state)
{
    STORE();
    vb_run_state_list l;
    assert_int_equal(vb_store_list(s, 0, 10, VB_RUN_NONE, &l, &err), VB_OK);
    assert_int_equal(l.n, 0);
    assert_int_equal(l.total_runs, 0);
    vb_run_state_list_free(&l);

    assert_int_equal(claim(s, "A", 3, 1000), VB_CLAIM_PUBLISH);
    assert_int_equal(claim(s, "B", 3, 2000), VB_CLAIM_PUBLISH);
    assert_int_equal(claim(s, "C", 3, 3000), VB_CLAIM_PUBLISH);
    assert_int_equal(vb_store_list(s, 0, 10, VB_RUN_NONE, &l, &err), VB_OK);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.total_runs, 3);
    assert_string_equal(l.items[0].id, "C");
    assert_string_equal(l.items[1].id, "B");
    assert_string_equal(l.items[2].id, "A");
    assert_int_equal(l.items[2].state, VB_RUN_QUEUED);
    assert_int_equal(l.items[2].updated_at, 1000);
    vb_run_state_list_free(&l);

    assert_int_equal(vb_store_list(s, 1, 1, VB_RUN_NONE, &l, &err), VB_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].id, "B");
    vb_run_state_list_free(&l);

    /* B fails now: it becomes the most recent and the only failed one. */
    char tok[VB_STORE_TOKEN_SIZE];
    start_attempt(s, "B", 30000, tok);
    assert_int_equal(vb_store_set_state(s, "B", tok, VB_RUN_FAILED, "x", NULL, &err), VB_OK);
    assert_int_equal(vb_store_list(s, 0, 10, VB_RUN_NONE, &l, &err), VB_OK);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.items[0].id, "B");
    assert_string_equal(l.items[1].id, "C");
    vb_run_state_list_free(&l);
    assert_int_equal(vb_store_list(s, 0, 10, VB_RUN_FAILED, &l, &err), VB_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].id, "B");
    assert_string_equal(l.items[0].last_error, "x");
    vb_run_state_list_free(&l);
    assert_int_equal(vb_store_list(s, 1, 10, VB_RUN_QUEUED, &l, &err), VB_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].id, "A");
    vb_run_state_list_free(&l);
    assert_int_equal(vb_store_list(s, 0, 0, VB_RUN_NONE, &l, &err), VB_ERR_INVALID);
    assert_int_equal(vb_store_list(s, 0, 1001, VB_RUN_NONE, &l, &err), VB_ERR_INVALID);
}

static void list_pages_through_many_runs(void **state)
{
    STORE();
    for (int i = 0; i < 600; i++) {
        char id[16];
        snprintf(id, sizeof id, "P%d", i);
        assert_int_equal(claim(s, id, 3, 1000 + i), VB_CLAIM_PUBLISH);
    }
    vb_run_state_list l;
    assert_int_equal(vb_store_list(s, 550, 100, VB_RUN_QUEUED, &l, &err), VB_OK);
    assert_int_equal(l.n, 50);
    assert_string_equal(l.items[0].id, "P49");
    assert_string_equal(l.items[49].id, "P0");
    vb_run_state_list_free(&l);
    assert_int_equal(vb_store_list(s, 300, 1, VB_RUN_NONE, &l, &err), VB_OK);
    assert_string_equal(l.items[0].id, "P299");
    vb_run_state_list_free(&l);
}

/* Walks the whole index with vb_store_page; returns how many runs it saw and
 * copies their ids (in order) into ids. */
static size_t page_walk(vb_store *s, size_t count, vb_run_status filter, const char *exec,
                        size_t scan, char ids[][16], size_t max)
{
    vb_error err;
    char cursor[VB_STORE_CURSOR_MAX] = "", next[VB_STORE_CURSOR_MAX];
    size_t n = 0, calls = 0;
    do {
        vb_run_state_list l;
        assert_int_equal(vb_store_page(s, cursor, count, filter, exec, scan, &l, next, &err), VB_OK);
        assert_true(l.n <= count);
        for (size_t i = 0; i < l.n; i++) {
            assert_true(n < max);
            if (filter != VB_RUN_NONE)
                assert_int_equal(l.items[i].state, filter);
            snprintf(ids[n++], 16, "%s", l.items[i].id);
        }
        vb_run_state_list_free(&l);
        snprintf(cursor, sizeof cursor, "%s", next);
        assert_true(++calls < 10000);
    } while (cursor[0]);
    return n;
}

static void page_walks_every_run_once_with_a_bounded_scan(void **state)
{
    STORE();
    /* 300 runs; 20 of them share one updated_at (ties broken by id). */
    for (int i = 0; i < 300; i++) {
        char id[16];
        snprintf(id, sizeof id, "G%03d", i);
        assert_int_equal(claim(s, id, 3, i >= 100 && i < 120 ? 5000 : 1000 + i), VB_CLAIM_PUBLISH);
        if (i % 10 == 3) { /* dead, index and per-state indexes kept as a transition would */
            rawcmd_ok("HSET visionbatch:run:%s state dead", id);
            rawcmd_ok("ZREM visionbatch:runs:state:queued %s", id);
            rawcmd_ok("ZADD visionbatch:runs:state:dead %d %s", i >= 100 && i < 120 ? 5000 : 1000 + i,
                      id);
        }
        if (i % 50 == 7)
            rawcmd_ok("HSET visionbatch:run:%s execution_id E-1", id);
    }
    static char ids[400][16];
    /* Unfiltered, pages of 7: every run exactly once, newest first. */
    assert_int_equal(page_walk(s, 7, VB_RUN_NONE, NULL, 7, ids, 400), 300);
    for (size_t i = 0; i < 300; i++)
        for (size_t j = i + 1; j < 300; j++)
            assert_string_not_equal(ids[i], ids[j]);
    assert_string_equal(ids[0], "G119"); /* the tie at 5000, highest id first */
    assert_string_equal(ids[19], "G100");
    assert_string_equal(ids[20], "G299");
    assert_string_equal(ids[299], "G000");
    /* Filtered with a scan budget of 25: pages may be short or empty, yet the
     * walk finds exactly the 30 dead runs, newest first. */
    assert_int_equal(page_walk(s, 5, VB_RUN_DEAD, NULL, 25, ids, 400), 30);
    assert_string_equal(ids[0], "G113");
    assert_string_equal(ids[1], "G103");
    assert_string_equal(ids[2], "G293");
    assert_string_equal(ids[29], "G003");
    /* The runs one execution queued. */
    assert_int_equal(page_walk(s, 2, VB_RUN_NONE, "E-1", 40, ids, 400), 6);
    assert_string_equal(ids[0], "G107");
    assert_string_equal(ids[1], "G257");
    assert_string_equal(ids[5], "G007");
    /* A filter matching nothing costs one budget per call and ends. */
    assert_int_equal(page_walk(s, 5, VB_RUN_UPLOADING, NULL, 100, ids, 400), 0);

    vb_run_state_list l;
    char next[VB_STORE_CURSOR_MAX];
    assert_int_equal(vb_store_page(s, "5000", 5, VB_RUN_NONE, NULL, 5, &l, next, &err), VB_ERR_INVALID);
    assert_int_equal(vb_store_page(s, "x:G001", 5, VB_RUN_NONE, NULL, 5, &l, next, &err),
                     VB_ERR_INVALID);
    assert_int_equal(vb_store_page(s, "5:G 1", 5, VB_RUN_NONE, NULL, 5, &l, next, &err), VB_ERR_INVALID);
    assert_int_equal(vb_store_page(s, NULL, 5, VB_RUN_NONE, NULL, 4, &l, next, &err), VB_ERR_INVALID);
    assert_int_equal(vb_store_page(s, NULL, 0, VB_RUN_NONE, NULL, 4, &l, next, &err), VB_ERR_INVALID);
    /* The last page ends the walk: no next cursor. */
    assert_int_equal(vb_store_page(s, "1000:G000", 5, VB_RUN_NONE, NULL, 5, &l, next, &err), VB_OK);
    assert_int_equal(l.n, 0);
    assert_string_equal(next, "");
    vb_run_state_list_free(&l);
}

/* ---- the per-state indexes ---- */

static const vb_run_status all_states[] = {VB_RUN_QUEUED,   VB_RUN_PROCESSING, VB_RUN_UPLOADING,
                                           VB_RUN_UPLOADED, VB_RUN_FAILED,     VB_RUN_DEAD};

/* Asserts that `id` is in the per-state index of `want` only, with the
 * run's index score, and that its record is in that state. */
static void assert_indexed(vb_store *s, const char *id, vb_run_status want)
{
    redisReply *main = rawcmd("ZSCORE visionbatch:runs %s", id);
    assert_int_equal(main->type, REDIS_REPLY_STRING);
    for (size_t k = 0; k < sizeof all_states / sizeof all_states[0]; k++) {
        redisReply *r = rawcmd("ZSCORE visionbatch:runs:state:%s %s",
                               vb_run_status_name(all_states[k]), id);
        if (all_states[k] == want) {
            if (r->type != REDIS_REPLY_STRING)
                fail_msg("%s is not in the %s index", id, vb_run_status_name(want));
            assert_string_equal(r->str, main->str);
        } else if (r->type != REDIS_REPLY_NIL) {
            fail_msg("%s is in the %s index, but %s", id, vb_run_status_name(all_states[k]),
                     vb_run_status_name(want));
        }
        freeReplyObject(r);
    }
    freeReplyObject(main);
    vb_run_state st = get(s, id);
    assert_int_equal(st.state, want);
    vb_run_state_free(&st);
}

static void state_index_follows_every_transition(void **state)
{
    STORE();
    char tok[VB_STORE_TOKEN_SIZE];
    long long now = vb_store_now_ms(), v = 0;
    vb_claim_decision d = 0;
    /* queued → processing → uploading (mark, gate) → uploaded */
    assert_int_equal(claim(s, "A", 3, now), VB_CLAIM_PUBLISH);
    assert_indexed(s, "A", VB_RUN_QUEUED);
    start_attempt(s, "A", 60000, tok);
    assert_indexed(s, "A", VB_RUN_PROCESSING);
    assert_int_equal(vb_store_mark_upload_started(s, "A", tok, NULL, &err), VB_OK);
    assert_indexed(s, "A", VB_RUN_UPLOADING);
    assert_int_equal(vb_store_upload_gate(s, "A", tok, 60000, vb_store_now_ms() + 5000, &err),
                     VB_OK);
    assert_indexed(s, "A", VB_RUN_UPLOADING);
    assert_int_equal(vb_store_set_state(s, "A", tok, VB_RUN_UPLOADED, NULL, "b1", &err), VB_OK);
    assert_indexed(s, "A", VB_RUN_UPLOADED);
    /* processing → failed → (backoff over) queued → processing → dead → retry:
     * failed → queued */
    assert_int_equal(claim(s, "B", 3, now), VB_CLAIM_PUBLISH);
    start_attempt(s, "B", 1000, tok);
    assert_int_equal(vb_store_set_state(s, "B", tok, VB_RUN_FAILED, "HTTP 503", NULL, &err), VB_OK);
    assert_int_equal(vb_store_lock_release(s, "B", tok, &err), VB_OK);
    assert_indexed(s, "B", VB_RUN_FAILED);
    assert_int_equal(claim(s, "B", 3, now + 60000), VB_CLAIM_PUBLISH);
    assert_indexed(s, "B", VB_RUN_QUEUED);
    start_attempt(s, "B", 1000, tok);
    assert_int_equal(vb_store_set_state(s, "B", tok, VB_RUN_DEAD, "HTTP 400", NULL, &err), VB_OK);
    assert_int_equal(vb_store_lock_release(s, "B", tok, &err), VB_OK);
    assert_indexed(s, "B", VB_RUN_DEAD);
    assert_int_equal(vb_store_retry(s, "B", &err), VB_OK);
    assert_indexed(s, "B", VB_RUN_FAILED);
    assert_int_equal(claim(s, "B", 3, now + 60000), VB_CLAIM_PUBLISH);
    assert_indexed(s, "B", VB_RUN_QUEUED);
    /* expiry: a lease that ran out while processing → queued again; at the
     * last attempt → dead */
    assert_int_equal(claim(s, "C", 2, now), VB_CLAIM_PUBLISH);
    start_attempt(s, "C", 1000, tok);
    assert_int_equal(claim(s, "C", 2, now + 3600000), VB_CLAIM_PUBLISH);
    assert_indexed(s, "C", VB_RUN_QUEUED);
    assert_int_equal(vb_store_lock_release(s, "C", tok, &err), VB_OK);
    start_attempt(s, "C", 1000, tok);
    assert_int_equal(vb_store_lock_release(s, "C", tok, &err), VB_OK);
    assert_int_equal(claim(s, "C", 2, now + 7200000), VB_CLAIM_DEAD);
    assert_indexed(s, "C", VB_RUN_DEAD);
    /* a shutdown hands a run back: processing → failed; a claim the
     * producer could not publish is released: queued → failed */
    assert_int_equal(claim(s, "D", 3, now), VB_CLAIM_PUBLISH);
    start_attempt(s, "D", 60000, tok);
    assert_int_equal(vb_store_hand_back(s, "D", tok, "shutting down", &err), VB_OK);
    assert_indexed(s, "D", VB_RUN_FAILED);
    assert_int_equal(vb_store_claim_for_queue_ex(s, "D", 3, 60000, vb_store_now_ms(), NULL, NULL,
                                                 &d, &v, &err), VB_OK);
    assert_int_equal(d, VB_CLAIM_PUBLISH);
    assert_indexed(s, "D", VB_RUN_QUEUED);
    int released = 0;
    assert_int_equal(vb_store_release_claim(s, "D", v, "producer-test", "not published", &released,
                                            &err), VB_OK);
    assert_int_equal(released, 1);
    assert_indexed(s, "D", VB_RUN_FAILED);
    /* Refused transitions leave the indexes alone. */
    assert_int_equal(claim(s, "A", 3, now + 60000), VB_CLAIM_SKIP_DONE);
    assert_int_equal(vb_store_retry(s, "A", &err), VB_ERR_CONFLICT);
    assert_indexed(s, "A", VB_RUN_UPLOADED);
    /* Each per-state index holds exactly its runs. */
    static const struct { vb_run_status st; long long n; } sizes[] = {
        {VB_RUN_QUEUED, 1}, {VB_RUN_PROCESSING, 0}, {VB_RUN_UPLOADING, 0},
        {VB_RUN_UPLOADED, 1}, {VB_RUN_FAILED, 1}, {VB_RUN_DEAD, 1}};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        redisReply *r = rawcmd("ZCARD visionbatch:runs:state:%s", vb_run_status_name(sizes[k].st));
        assert_int_equal(r->integer, sizes[k].n);
        freeReplyObject(r);
    }
}

/* A state filter reads only the runs in that state: three dead runs among
 * 2,000 uploaded ones come in one call whose budget is the page size. */
static void filtered_page_costs_the_page_not_the_index(void **state)
{
    STORE();
    char tok[VB_STORE_TOKEN_SIZE];
    for (int i = 0; i < 2003; i++) {
        char id[16];
        snprintf(id, sizeof id, "U%04d", i);
        assert_int_equal(claim(s, id, 3, 1000 + i), VB_CLAIM_PUBLISH);
        start_attempt(s, id, 60000, tok);
        assert_int_equal(vb_store_set_state(s, id, tok, i % 700 == 350 ? VB_RUN_DEAD
                                                                       : VB_RUN_UPLOADED,
                                            NULL, NULL, &err), VB_OK);
        assert_int_equal(vb_store_lock_release(s, id, tok, &err), VB_OK);
    }
    vb_run_state_list l;
    char next[VB_STORE_CURSOR_MAX];
    assert_int_equal(vb_store_page(s, NULL, 3, VB_RUN_DEAD, NULL, 3, &l, next, &err), VB_OK);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.total_runs, 2003);
    assert_int_equal(l.in_state[VB_RUN_DEAD], 3);
    assert_int_equal(l.in_state[VB_RUN_UPLOADED], 2000);
    assert_int_equal(l.in_state[VB_RUN_QUEUED], 0);
    assert_string_equal(l.items[0].id, "U1750"); /* most recently updated first */
    assert_string_equal(l.items[1].id, "U1050");
    assert_string_equal(l.items[2].id, "U0350");
    vb_run_state_list_free(&l);
    /* the cursor of a full page leads to an empty last page */
    char cursor[VB_STORE_CURSOR_MAX];
    snprintf(cursor, sizeof cursor, "%s", next);
    assert_int_equal(vb_store_page(s, cursor, 3, VB_RUN_DEAD, NULL, 3, &l, next, &err), VB_OK);
    assert_int_equal(l.n, 0);
    assert_string_equal(next, "");
    vb_run_state_list_free(&l);
    /* the offset list reads the same index */
    assert_int_equal(vb_store_list(s, 1, 5, VB_RUN_DEAD, &l, &err), VB_OK);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.items[0].id, "U1050");
    vb_run_state_list_free(&l);
}

/* Runs recorded before the per-state indexes existed are indexed by the
 * first listing (in steps), and an entry left in the wrong per-state
 * index is moved by the read that meets it. */
static void state_index_is_built_for_older_records_and_repaired(void **state)
{
    STORE();
    for (int i = 0; i < 12000; i++) {
        if (i % 1000 == 0)
            rawcmd_ok("HSET visionbatch:run:OLD%05d state dead attempts 5", i);
        else
            rawcmd_ok("HSET visionbatch:run:OLD%05d state uploaded attempts 1", i);
        rawcmd_ok("ZADD visionbatch:runs %d OLD%05d", 1000 + i, i);
    }
    vb_run_state_list l;
    char next[VB_STORE_CURSOR_MAX];
    assert_int_equal(vb_store_page(s, NULL, 20, VB_RUN_DEAD, NULL, 20, &l, next, &err), VB_OK);
    assert_int_equal(l.n, 12);
    assert_string_equal(l.items[0].id, "OLD11000");
    assert_string_equal(l.items[11].id, "OLD00000");
    assert_string_equal(next, "");
    assert_int_equal(l.in_state[VB_RUN_DEAD], 12);
    assert_int_equal(l.in_state[VB_RUN_UPLOADED], 11988);
    vb_run_state_list_free(&l);
    redisReply *r = rawcmd("GET visionbatch:runs:state-index");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    freeReplyObject(r);
    r = rawcmd("ZCARD visionbatch:runs:state:uploaded");
    assert_int_equal(r->integer, 11988);
    freeReplyObject(r);
    /* A record changed behind the store's back: the dead read skips it and
     * moves it to the per-state index of its state. */
    rawcmd_ok("HSET visionbatch:run:OLD05000 state failed");
    assert_int_equal(vb_store_page(s, NULL, 20, VB_RUN_DEAD, NULL, 20, &l, next, &err), VB_OK);
    assert_int_equal(l.n, 11);
    for (size_t i = 0; i < l.n; i++)
        assert_string_not_equal(l.items[i].id, "OLD05000");
    vb_run_state_list_free(&l);
    assert_indexed(s, "OLD05000", VB_RUN_FAILED);
}

int main(void)
{
    const struct CMUnitTest offline[] = {
        cmocka_unit_test(store_new_with_bad_url_fails_with_config_error),
        cmocka_unit_test(status_names_round_trip),
        cmocka_unit_test(store_reports_a_reset_connection_as_a_redis_error),
    };
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest live[] = {
        T(store_connects_pings_and_describes_without_credentials),
        T(state_index_follows_every_transition),
        T(filtered_page_costs_the_page_not_the_index),
        T(state_index_is_built_for_older_records_and_repaired),
        T(store_unreachable_server_fails_with_redis_error),
        T(store_wrong_password_is_refused_without_leaking_it),
        T(store_reconnects_on_the_call_after_a_killed_connection),
        T(store_reloads_scripts_after_script_flush),
        T(store_survives_a_redis_restart),
        T(store_command_timeout_drops_the_connection_and_recovers),
        T(claim_without_state_publishes_and_records_queued),
        T(claim_queued_with_live_lease_skips_and_expired_republishes),
        T(claim_processing_with_live_lease_skips),
        T(claim_processing_with_expired_lease_republishes),
        T(claim_expired_lease_at_max_attempts_marks_dead),
        T(claim_failed_with_attempts_left_publishes),
        T(claim_failed_at_max_attempts_marks_dead),
        T(claim_uploaded_skips_as_done),
        T(claim_rejects_invalid_arguments),
        T(concurrent_claimers_publish_each_run_exactly_once),
        T(lock_is_exclusive_and_tokens_are_random),
        T(lock_renew_and_release_refuse_a_wrong_token),
        T(lock_renew_after_expiry_reports_lost),
        T(lock_renew_extends_the_run_lease),
        T(begin_processing_counts_attempts_and_sets_lease),
        T(begin_processing_refuses_uploaded_dead_and_wrong_token),
        T(set_state_with_a_lost_lock_is_refused),
        T(set_state_rejects_states_a_worker_cannot_set),
        T(uploaded_is_final),
        T(mark_upload_started_reports_an_earlier_upload),
        T(claim_honours_the_retry_backoff_of_a_failed_run),
        T(retry_backoff_is_capped_at_ten_minutes),
        T(hand_back_and_operator_retry_have_no_backoff),
        T(begin_attempt_refuses_a_redelivered_attempt),
        T(upload_gate_checks_the_lock_extends_the_lease_and_records_the_deadline),
        T(run_ids_follow_the_one_rule),
        T(set_state_cuts_last_error_on_a_character_boundary),
        T(retry_makes_a_dead_run_publishable_again),
        T(list_orders_by_latest_update_and_filters_by_state),
        T(list_pages_through_many_runs),
        T(page_walks_every_run_once_with_a_bounded_scan),
    };
#undef T
    int failures = cmocka_run_group_tests_name("store_offline", offline, NULL, NULL);
    failures += cmocka_run_group_tests_name("store_redis", live, group_setup, group_teardown);
    return failures;
}
