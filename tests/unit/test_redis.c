/*
 * Unit tests of the Redis layer (common/redis/): the URL grammar as a table,
 * AUTH in both forms, credentials never echoed, reconnect after the server
 * drops the connection, the reconnect backoff on a fake clock, the script
 * cache's NOSCRIPT fallback and pipelining.
 *
 * Server: $REDIS_URL (database 12 of it, emptied first; see
 * redis_test_url.h) for the connection tests; the AUTH test starts a private
 * redis-server with a password on a free port (redis-server must be on
 * PATH). When Redis is unreachable the tests fail, unless VB_ALLOW_NO_REDIS=1
 * (then the server tests skip; the grammar tests need no server).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "redis/redis.h"
#include "redis_test_server.h"
#include "redis_test_url.h"

#define DB 12
#define SECRET "Zr9-s3cr3t-pw"

/* ---- helpers ---- */

static int redis_available;

#define NEEDS_REDIS()                                                                              \
    do {                                                                                           \
        if (!redis_available)                                                                      \
            skip();                                                                                \
    } while (0)

static vb__redis *open_test(const vb__redis_opts *o)
{
    vb__redis *c = NULL;
    vb_error err = {0};
    if (vb__redis_new(vb_test_redis_url(DB), o, &c, &err) != VB_OK)
        fail_msg("cannot connect to the test Redis: %s", err.msg);
    return c;
}

/* Runs a command given as words; fails the test on a connection failure. */
static redisReply *cmd(vb__redis *c, vb_error *err, int argc, ...)
{
    const char *argv[8];
    va_list ap;
    va_start(ap, argc);
    for (int i = 0; i < argc && i < 8; i++)
        argv[i] = va_arg(ap, const char *);
    va_end(ap);
    return vb__redis_command(c, argc, argv, NULL, err);
}

/* A listening socket on `port` that never answers (the kernel completes the
 * TCP handshake, nothing more). */
static int silent_listener(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)port)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 4), 0);
    return fd;
}

/* ---- the URL grammar ---- */

typedef struct url_case {
    const char *url;
    int ok;
    int is_unix;
    const char *host_or_path;
    int port, db;
    const char *user, *password;
    const char *why; /* for refusals: a part of the message */
} url_case;

static const url_case url_cases[] = {
    /* accepted */
    {"redis://localhost", 1, 0, "localhost", 6379, 0, "", "", NULL},
    {"redis://localhost/", 1, 0, "localhost", 6379, 0, "", "", NULL},
    {"redis://10.0.0.1:7000/1", 1, 0, "10.0.0.1", 7000, 1, "", "", NULL},
    {"redis://[::1]:6390/2", 1, 0, "::1", 6390, 2, "", "", NULL},
    {"redis://[fe80::1]", 1, 0, "fe80::1", 6379, 0, "", "", NULL},
    {"redis://redis-1.internal_a:6380/99999", 1, 0, "redis-1.internal_a", 6380, 99999, "", "",
     NULL},
    /* the scheme is case-insensitive (was refused by the jobs parser) */
    {"REDIS://redis-1.internal/", 1, 0, "redis-1.internal", 6379, 0, "", "", NULL},
    {"Redis://h:1", 1, 0, "h", 1, 0, "", "", NULL},
    /* userinfo without ':' is the password (was refused by the store parser) */
    {"redis://" SECRET "@h", 1, 0, "h", 6379, 0, "", SECRET, NULL},
    {"redis://:" SECRET "@h:6380/3", 1, 0, "h", 6380, 3, "", SECRET, NULL},
    {"redis://alice:" SECRET "@h", 1, 0, "h", 6379, 0, "alice", SECRET, NULL},
    {"redis://:p%40ss:w@example.com", 1, 0, "example.com", 6379, 0, "", "p@ss:w", NULL},
    {"redis://:p@ss@example.com", 1, 0, "example.com", 6379, 0, "", "p@ss", NULL},
    {"redis://a%3Ab:p%2Fw@h", 1, 0, "h", 6379, 0, "a:b", "p/w", NULL},
    {"unix:///var/run/redis/redis.sock?db=4", 1, 1, "/var/run/redis/redis.sock", 0, 4, "", "",
     NULL},
    {"UNIX:///tmp/r.sock", 1, 1, "/tmp/r.sock", 0, 0, "", "", NULL},
    {"unix://:pw@/tmp/r.sock", 1, 1, "/tmp/r.sock", 0, 0, "", "pw", NULL},
    {"unix://pw@/tmp/r.sock", 1, 1, "/tmp/r.sock", 0, 0, "", "pw", NULL},
    {"unix://bob:pw@/tmp/r.sock?db=2", 1, 1, "/tmp/r.sock", 0, 2, "bob", "pw", NULL},
    /* refused */
    {"", 0, 0, NULL, 0, 0, NULL, NULL, "empty"},
    {"http://:" SECRET "@host", 0, 0, NULL, 0, 0, NULL, NULL, "must start with"},
    {"unix:/tmp/r.sock", 0, 0, NULL, 0, 0, NULL, NULL, "must start with"},
    /* rediss:// depends on the build: test_redis_tls.c */
    {"redis://", 0, 0, NULL, 0, 0, NULL, NULL, "host is missing"},
    {"redis://:" SECRET "@", 0, 0, NULL, 0, 0, NULL, NULL, "host is missing"},
    {"redis://@host", 0, 0, NULL, 0, 0, NULL, NULL, "empty credentials"},
    {"redis://:@host", 0, 0, NULL, 0, 0, NULL, NULL, "empty credentials"},
    {"redis://alice:@host", 0, 0, NULL, 0, 0, NULL, NULL, "without a password"},
    {"redis://:" SECRET "@host:0", 0, 0, NULL, 0, 0, NULL, NULL, "port"},
    {"redis://:" SECRET "@host:65536", 0, 0, NULL, 0, 0, NULL, NULL, "port"},
    {"redis://:" SECRET "@host:", 0, 0, NULL, 0, 0, NULL, NULL, "port"},
    {"redis://:" SECRET "@host:12ab", 0, 0, NULL, 0, 0, NULL, NULL, "port"},
    {"redis://:" SECRET "@host/x", 0, 0, NULL, 0, 0, NULL, NULL, "database"},
    {"redis://:" SECRET "@host/100000", 0, 0, NULL, 0, 0, NULL, NULL, "database"},
    {"redis://:" SECRET "@host/1/2", 0, 0, NULL, 0, 0, NULL, NULL, "database"},
    {"redis://:" SECRET "@host/1?timeout=3", 0, 0, NULL, 0, 0, NULL, NULL, "query"},
    {"redis://:" SECRET "@host#frag", 0, 0, NULL, 0, 0, NULL, NULL, "fragments"},
    {"redis://:" SECRET "@ho st", 0, 0, NULL, 0, 0, NULL, NULL, "spaces"},
    {"redis://:" SECRET "@h\x01", 0, 0, NULL, 0, 0, NULL, NULL, "control"},
    {"redis://:" SECRET "@ho*st", 0, 0, NULL, 0, 0, NULL, NULL, "invalid character"},
    {"redis://:" SECRET "@[::1", 0, 0, NULL, 0, 0, NULL, NULL, "IPv6"},
    {"redis://:" SECRET "@[::g]", 0, 0, NULL, 0, 0, NULL, NULL, "IPv6"},
    {"redis://:" SECRET "@[::1]x", 0, 0, NULL, 0, 0, NULL, NULL, "IPv6"},
    {"redis://:" SECRET "%zz@host", 0, 0, NULL, 0, 0, NULL, NULL, "password"},
    {"redis://:" SECRET "%00@host", 0, 0, NULL, 0, 0, NULL, NULL, "password"},
    {"redis://:" SECRET "%4@host", 0, 0, NULL, 0, 0, NULL, NULL, "password"},
    {"unix://", 0, 0, NULL, 0, 0, NULL, NULL, "absolute"},
    {"unix://relative.sock", 0, 0, NULL, 0, 0, NULL, NULL, "absolute"},
    {"unix:///", 0, 0, NULL, 0, 0, NULL, NULL, "socket path"},
    {"unix://:" SECRET "@/tmp/r.sock?x=1", 0, 0, NULL, 0, 0, NULL, NULL, "?db=N"},
    {"unix://:" SECRET "@/tmp/r.sock?db=x", 0, 0, NULL, 0, 0, NULL, NULL, "database"},
    {"unix://host/tmp/r.sock", 0, 0, NULL, 0, 0, NULL, NULL, "only credentials"},
};

static void url_grammar_accepts_and_refuses_the_table(void **state)
{
    for (size_t i = 0; i < sizeof url_cases / sizeof url_cases[0]; i++) {
        const url_case *t = &url_cases[i];
        vb__redis_url u;
        vb_error err = {0};
        vb_err rc = vb__redis_url_parse(t->url, &u, &err);
        if (t->ok) {
            if (rc != VB_OK)
                fail_msg("refused %s: %s", t->url, err.msg);
            assert_int_equal(u.is_unix, t->is_unix);
            assert_string_equal(t->is_unix ? u.path : u.host, t->host_or_path);
            if (!t->is_unix)
                assert_int_equal(u.port, t->port);
            assert_int_equal(u.db, t->db);
            assert_string_equal(u.user, t->user);
            assert_string_equal(u.password, t->password);
            vb__redis_url_clear(&u);
            assert_string_equal(u.password, "");
        } else {
            if (rc != VB_ERR_CONFIG)
                fail_msg("accepted bad URL #%zu", i);
            if (!strstr(err.msg, t->why))
                fail_msg("URL #%zu: message \"%s\" does not say \"%s\"", i, err.msg, t->why);
            assert_null(strstr(err.msg, SECRET));
            assert_string_equal(u.password, "");
        }
    }
    vb__redis_url u;
    assert_int_equal(vb__redis_url_parse(NULL, &u, NULL), VB_ERR_CONFIG);
    char longurl[2100];
    memset(longurl, 'a', sizeof longurl - 1);
    memcpy(longurl, "redis://", 8);
    longurl[sizeof longurl - 1] = '\0';
    assert_int_equal(vb__redis_url_parse(longurl, &u, NULL), VB_ERR_CONFIG);
}

static void url_describe_never_shows_credentials(void **state)
{
    static const struct {
        const char *url, *want;
    } cases[] = {
        {"redis://alice:" SECRET "@cache:6380/2", "cache:6380/2"},
        {"redis://" SECRET "@[::1]", "[::1]:6379/0"},
        {"unix://:" SECRET "@/run/r.sock?db=3", "unix:/run/r.sock/3"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vb__redis_url u;
        char d[128];
        assert_int_equal(vb__redis_url_parse(cases[i].url, &u, NULL), VB_OK);
        assert_string_equal(vb__redis_url_describe(&u, d, sizeof d), cases[i].want);
        assert_null(strstr(d, SECRET));
        assert_null(strstr(d, "alice"));
        vb__redis_url_clear(&u);
    }
}

/* ---- AUTH and credentials ---- */

static pid_t private_pid = -1; /* the private redis-server, stopped by the teardown */
static char private_sock[64];

static int stop_private(void **state)
{
    if (private_pid > 0)
        vb_test_stop_redis(private_pid);
    private_pid = -1;
    unlink(private_sock);
    return 0;
}

static void auth_works_with_password_only_and_acl_user_and_never_echoes_them(void **state)
{
    NEEDS_REDIS();
    int port = vb_test_free_port();
    char *sock = private_sock;
    snprintf(sock, sizeof private_sock, "/tmp/vb-test-redis-%ld.sock", (long)getpid());
    private_pid = vb_test_start_redis(port, SECRET, sock);
    if (private_pid < 0)
        fail_msg("redis-server did not start on port %d (is it on PATH?)", port);
    char url[256];
    vb_error err = {0};
    vb__redis *c = NULL;

    /* password only, both spellings */
    snprintf(url, sizeof url, "redis://%s@127.0.0.1:%d/1", SECRET, port);
    assert_int_equal(vb__redis_new(url, NULL, &c, &err), VB_OK);
    assert_null(strstr(vb__redis_describe(c), SECRET));
    redisReply *r = cmd(c, &err, 1, "PING");
    assert_non_null(r);
    freeReplyObject(r);
    /* an ACL user, created through the default user's connection */
    r = cmd(c, &err, 7, "ACL", "SETUSER", "vbtest", "on", ">" SECRET "-u", "~*", "+@all");
    assert_non_null(r);
    freeReplyObject(r);
    /* a server message that repeats the password is withheld */
    vb_error_clear(&err);
    r = cmd(c, &err, 1, SECRET);
    assert_null(r);
    assert_int_equal(err.code, VB_ERR_REDIS);
    assert_non_null(strstr(err.msg, "withheld"));
    assert_null(strstr(err.msg, SECRET));
    vb__redis_free(c);

    snprintf(url, sizeof url, "redis://:%s@127.0.0.1:%d", SECRET, port);
    assert_int_equal(vb__redis_new(url, NULL, &c, &err), VB_OK);
    vb__redis_free(c);

    /* the same over the unix socket, with a database */
    snprintf(url, sizeof url, "unix://%s@%s?db=2", SECRET, sock);
    assert_int_equal(vb__redis_new(url, NULL, &c, &err), VB_OK);
    char where[96];
    snprintf(where, sizeof where, "unix:%s/2", sock);
    assert_string_equal(vb__redis_describe(c), where);
    r = cmd(c, &err, 3, "SET", "vbtest:unix", "1");
    assert_non_null(r);
    freeReplyObject(r);
    vb__redis_free(c);

    snprintf(url, sizeof url, "redis://vbtest:%s-u@127.0.0.1:%d/0", SECRET, port);
    assert_int_equal(vb__redis_new(url, NULL, &c, &err), VB_OK);
    r = cmd(c, &err, 2, "ACL", "WHOAMI");
    assert_non_null(r);
    assert_string_equal(r->str, "vbtest");
    freeReplyObject(r);
    vb__redis_free(c);

    /* refused credentials: the reason, never the password */
    snprintf(url, sizeof url, "redis://%s-wrong@127.0.0.1:%d", SECRET, port);
    vb_error_clear(&err);
    c = (vb__redis *)1;
    assert_int_equal(vb__redis_new(url, NULL, &c, &err), VB_ERR_REDIS);
    assert_null(c);
    assert_non_null(strstr(err.msg, "authentication failed"));
    assert_null(strstr(err.msg, SECRET));
    snprintf(url, sizeof url, "redis://vbtest:%s-wrong@127.0.0.1:%d", SECRET, port);
    vb_error_clear(&err);
    assert_int_equal(vb__redis_new(url, NULL, &c, &err), VB_ERR_REDIS);
    assert_null(strstr(err.msg, SECRET));
    /* no password on a server that needs one */
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/1", port);
    vb_error_clear(&err);
    assert_int_equal(vb__redis_new(url, NULL, &c, &err), VB_ERR_REDIS);
    assert_non_null(strstr(err.msg, "SELECT failed"));

    /* a server that went away: the message names the server, not the password */
    stop_private(NULL);
    snprintf(url, sizeof url, "redis://%s@127.0.0.1:%d/1", SECRET, port);
    vb_error_clear(&err);
    assert_int_equal(vb__redis_new(url, NULL, &c, &err), VB_ERR_REDIS);
    snprintf(where, sizeof where, "127.0.0.1:%d/1", port);
    assert_non_null(strstr(err.msg, where));
    assert_null(strstr(err.msg, SECRET));
}

static void bad_url_and_bad_client_name_are_refused_before_connecting(void **state)
{
    vb__redis *c = (vb__redis *)1;
    vb_error err = {0};
    assert_int_equal(vb__redis_new("redis://:" SECRET "@h:99999", NULL, &c, &err), VB_ERR_CONFIG);
    assert_null(c);
    assert_null(strstr(err.msg, SECRET));
    vb__redis_opts o = {.client_name = "two words", .lazy = 1};
    assert_int_equal(vb__redis_new("redis://h", &o, &c, &err), VB_ERR_INVALID);
    assert_null(c);
}

/* ---- reconnecting ---- */

static void reconnects_after_the_server_drops_the_connection(void **state)
{
    NEEDS_REDIS();
    char name[64];
    snprintf(name, sizeof name, "vbtest-redis-%ld", (long)getpid());
    vb__redis_opts o = {.client_name = name};
    vb__redis *c = open_test(&o);
    redisContext *admin = vb_test_redis_connect(DB);
    assert_non_null(admin);
    vb_error err = {0};
    vb__redis_stats st;

    redisReply *r = cmd(c, &err, 1, "PING");
    assert_non_null(r);
    freeReplyObject(r);
    assert_int_equal(vb_test_kill_clients_named(admin, name), 1);

    /* The dropped connection fails the next command (never re-sent)… */
    assert_null(cmd(c, &err, 1, "PING"));
    assert_int_equal(err.code, VB_ERR_REDIS);
    /* …and the call after it reconnects at once, with the same name. */
    vb_error_clear(&err);
    r = cmd(c, &err, 2, "CLIENT", "GETNAME");
    assert_non_null(r);
    assert_string_equal(r->str, name);
    freeReplyObject(r);
    vb__redis_get_stats(c, &st);
    assert_int_equal(st.connects, 2);
    assert_int_equal(st.connect_failures, 0);

    vb__redis_free(c);
    redisFree(admin);
}

static long long fake_now;
static long long fake_clock(void)
{
    return fake_now;
}

static void reconnect_backoff_doubles_to_five_seconds_and_resets_on_success(void **state)
{
    NEEDS_REDIS();
    int port = vb_test_free_port();
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port); /* no AUTH to wait for */
    vb__redis_opts o = {.lazy = 1, .clock_ms = fake_clock, .connect_timeout_ms = 500,
                        .command_timeout_ms = 200};
    vb__redis *c = NULL;
    vb_error err = {0};
    vb__redis_stats st;
    fake_now = 1000000;
    assert_int_equal(vb__redis_new(url, &o, &c, &err), VB_OK); /* lazy: no connect yet */
    vb__redis_get_stats(c, &st);
    assert_int_equal(st.connects + st.connect_failures, 0);

    static const long want[] = {100, 200, 400, 800, 1600, 3200, 5000, 5000};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        vb_error_clear(&err);
        assert_null(cmd(c, &err, 1, "PING")); /* attempts a connect: refused */
        assert_non_null(strstr(err.msg, "connect failed"));
        vb__redis_get_stats(c, &st);
        assert_int_equal(st.connect_failures, i + 1);
        /* Until the backoff has passed, calls fail fast without trying. */
        fake_now += want[i] - 1;
        vb_error_clear(&err);
        assert_null(cmd(c, &err, 1, "PING"));
        char msg[64];
        snprintf(msg, sizeof msg, "next reconnect attempt in 1 ms");
        assert_non_null(strstr(err.msg, msg));
        vb__redis_get_stats(c, &st);
        assert_int_equal(st.connect_failures, i + 1);
        fake_now += 1;
    }

    /* Something listens now: the connect succeeds (the command then times
     * out, as the listener never answers) and the backoff is reset, so the
     * next call reconnects at once, at the same fake time. */
    int lfd = silent_listener(port);
    vb_error_clear(&err);
    assert_null(cmd(c, &err, 1, "PING"));
    assert_non_null(strstr(err.msg, "timed out"));
    vb__redis_get_stats(c, &st);
    assert_int_equal(st.connects, 1);
    vb_error_clear(&err);
    assert_null(cmd(c, &err, 1, "PING"));
    assert_non_null(strstr(err.msg, "timed out"));
    vb__redis_get_stats(c, &st);
    assert_int_equal(st.connects, 2);
    assert_int_equal(st.connect_failures, 8);
    close(lfd);
    vb__redis_free(c);
}

/* ---- scripts ---- */

static const char SCRIPT_ECHO_SUM[] =
    "return {KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), #ARGV}";

static void sha1_of(const char *text, char out[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    assert_int_equal(EVP_Digest(text, strlen(text), md, &n, EVP_sha1(), NULL), 1);
    for (unsigned i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static long long eval_sum(vb__redis *c, long long *nargs)
{
    const char *argv[4] = {"1", "k", "40", "2"};
    vb_error err = {0};
    redisReply *r = vb__redis_eval(c, SCRIPT_ECHO_SUM, 4, argv, NULL, &err);
    if (!r)
        fail_msg("eval: %s", err.msg);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_string_equal(r->element[0]->str, "k");
    long long v = r->element[1]->integer;
    if (nargs)
        *nargs = r->element[2]->integer;
    freeReplyObject(r);
    return v;
}

static void eval_falls_back_to_eval_after_script_flush(void **state)
{
    NEEDS_REDIS();
    vb__redis *c = open_test(NULL), *admin = open_test(NULL);
    vb_error err = {0};
    vb__redis_stats st;
    char sha[41];
    sha1_of(SCRIPT_ECHO_SUM, sha);

    assert_int_equal(eval_sum(c, NULL), 42);
    redisReply *r = cmd(admin, &err, 3, "SCRIPT", "EXISTS", sha);
    assert_non_null(r);
    assert_int_equal(r->element[0]->integer, 1); /* EVALSHA's script is on the server */
    freeReplyObject(r);
    vb__redis_get_stats(c, &st);
    unsigned long reloads = st.script_reloads;
    assert_true(reloads <= 1); /* 1 only when the server did not know it yet */

    assert_int_equal(eval_sum(c, NULL), 42);
    vb__redis_get_stats(c, &st);
    assert_int_equal(st.script_reloads, reloads); /* cached: EVALSHA only */

    r = cmd(admin, &err, 2, "SCRIPT", "FLUSH");
    assert_non_null(r);
    freeReplyObject(r);
    assert_int_equal(eval_sum(c, NULL), 42); /* NOSCRIPT → EVAL */
    vb__redis_get_stats(c, &st);
    assert_int_equal(st.script_reloads, reloads + 1);
    r = cmd(admin, &err, 3, "SCRIPT", "EXISTS", sha);
    assert_int_equal(r->element[0]->integer, 1); /* EVAL loaded it again */
    freeReplyObject(r);
    assert_int_equal(eval_sum(c, NULL), 42);
    vb__redis_get_stats(c, &st);
    assert_int_equal(st.script_reloads, reloads + 1);
    vb__redis_free(admin);
    vb__redis_free(c);
}

static void eval_handles_many_arguments_and_reports_script_errors(void **state)
{
    NEEDS_REDIS();
    vb__redis *c = open_test(NULL);
    enum { N = 100 };
    const char *argv[N + 2];
    argv[0] = "1";
    argv[1] = "k";
    argv[2] = "40";
    argv[3] = "2";
    for (int i = 4; i < N + 2; i++)
        argv[i] = "x";
    vb_error err = {0};
    redisReply *r = vb__redis_eval(c, SCRIPT_ECHO_SUM, N + 2, argv, NULL, &err);
    assert_non_null(r);
    assert_int_equal(r->element[1]->integer, 42);
    assert_int_equal(r->element[2]->integer, N);
    freeReplyObject(r);

    static const char bad[] = "return redis.error_reply('ERR nope from the script')";
    const char *zero[1] = {"0"};
    assert_null(vb__redis_eval(c, bad, 1, zero, NULL, &err));
    assert_int_equal(err.code, VB_ERR_REDIS);
    assert_non_null(strstr(err.msg, "script failed"));
    assert_non_null(strstr(err.msg, "nope from the script"));
    vb__redis_free(c);
}

/* ---- pipelining ---- */

static void pipeline_returns_replies_in_order(void **state)
{
    NEEDS_REDIS();
    vb__redis *c = open_test(NULL);
    char key[64];
    snprintf(key, sizeof key, "vbtest:redis:pipe:%ld", (long)getpid());
    enum { N = 300 };
    static const char *argv[N * 3];
    static char nums[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(nums[i], sizeof nums[i], "%d", i);
        argv[3 * i] = i == N - 1 ? "NOSUCHCOMMAND" : "RPUSH";
        argv[3 * i + 1] = key;
        argv[3 * i + 2] = nums[i];
    }
    static redisReply *replies[N];
    vb_error err = {0};
    assert_int_equal(vb__redis_pipeline(c, N, 3, argv, replies, &err), VB_OK);
    for (int i = 0; i < N - 1; i++) {
        assert_int_equal(replies[i]->type, REDIS_REPLY_INTEGER);
        assert_int_equal(replies[i]->integer, i + 1);
        freeReplyObject(replies[i]);
    }
    assert_int_equal(replies[N - 1]->type, REDIS_REPLY_ERROR); /* error replies included */
    freeReplyObject(replies[N - 1]);
    assert_int_equal(vb__redis_pipeline(c, 0, 3, argv, replies, &err), VB_OK);
    redisReply *r = cmd(c, &err, 2, "DEL", key);
    assert_non_null(r);
    freeReplyObject(r);
    vb__redis_free(c);
}

static int group_setup(void **state)
{
    if (vb_test_redis_flush(DB) == 0) {
        redis_available = 1;
        return 0;
    }
    if (vb_test_allow_no_redis()) {
        fprintf(stderr, "Redis unreachable: server tests skipped (VB_ALLOW_NO_REDIS=1)\n");
        return 0;
    }
    fprintf(stderr, "Redis unreachable at $REDIS_URL (or redis://127.0.0.1:6379); start one "
                    "(deploy/local/services.sh start) or set VB_ALLOW_NO_REDIS=1\n");
    return -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(url_grammar_accepts_and_refuses_the_table),
        cmocka_unit_test(url_describe_never_shows_credentials),
        cmocka_unit_test(bad_url_and_bad_client_name_are_refused_before_connecting),
        cmocka_unit_test(reconnect_backoff_doubles_to_five_seconds_and_resets_on_success),
        cmocka_unit_test_teardown(auth_works_with_password_only_and_acl_user_and_never_echoes_them,
                                  stop_private),
        cmocka_unit_test(reconnects_after_the_server_drops_the_connection),
        cmocka_unit_test(eval_falls_back_to_eval_after_script_flush),
        cmocka_unit_test(eval_handles_many_arguments_and_reports_script_errors),
        cmocka_unit_test(pipeline_returns_replies_in_order),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
