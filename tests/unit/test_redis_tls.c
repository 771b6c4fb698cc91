/*
 * Unit tests of Redis over TLS (common/redis/tls.c, rediss:// in url.c and
 * conn.c, the redis_tls_* settings of config.c).
 *
 * Every build: rediss:// is parsed when the build has TLS and refused with
 * the reason otherwise, in the URL parser and in the settings; TLS files
 * with a redis:// URL are refused. Builds with TLS (hiredis >= 1.0 with
 * hiredis_ssl) also: a throwaway CA, server and client certificates (the
 * client key encrypted) are made with the openssl command, a private
 * redis-server (from PATH, built with TLS) listens on a TLS port only and
 * requires client certificates and an ACL user; the tests connect with the
 * right settings, then check that a wrong CA, a name the certificate does
 * not carry, a missing client certificate, a wrong key password and a
 * wrong ACL password each fail with a clear message that repeats no secret.
 * The TLS tests skip in a build without TLS.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_internal.h"
#include "redis/redis.h"
/* Its port and process helpers only: the plain-server ones go unused here. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "redis_test_server.h"
#pragma GCC diagnostic pop
#include "test_util.h"
#include "visionbatch/config.h"
#include "visionbatch/redact.h"

#define KEY_PW "Kp-9f3-keypass"
#define ACL_PW "Acl-7z1-alicepw"

static char dir[64];
static int tls_port;
static pid_t server_pid = -1;

#define NEEDS_TLS()                                                                                \
    do {                                                                                           \
        if (!vb__redis_tls_available())                                                            \
            skip();                                                                                \
    } while (0)

static const char *path_of(const char *name)
{
    static char p[4][128];
    static int next;
    char *out = p[next++ % 4];
    snprintf(out, 128, "%s/%s", dir, name);
    return out;
}

/* A CA, a second (untrusted) CA, a server certificate for "localhost" only
 * and a client certificate whose key is encrypted with KEY_PW. */
static int make_certificates(void)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "set -e; cd '%s'; k='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1'\n"
             "openssl req -x509 $k -nodes -days 2 -subj /CN=vb-test-ca -keyout ca.key -out ca.pem\n"
             "openssl req -x509 $k -nodes -days 2 -subj /CN=vb-other-ca -keyout o.key "
             "-out other-ca.pem\n"
             "printf 'subjectAltName=DNS:localhost\\n' > san.cnf\n"
             "openssl req $k -nodes -subj /CN=localhost -keyout server.key -out server.csr\n"
             "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
             "-extfile san.cnf -out server.pem\n"
             "openssl req $k -subj /CN=vb-client -passout pass:%s -keyout client.key "
             "-out client.csr\n"
             "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
             "-out client.pem\n",
             dir, KEY_PW);
    char full[2200];
    snprintf(full, sizeof full, "(%s) >'%s/openssl.log' 2>&1", cmd, dir);
    return system(full) == 0 ? 0 : -1;
}

/* A private redis-server listening on a loopback TLS port only, requiring
 * client certificates, with ACL user alice. Returns its pid or -1. */
static pid_t start_tls_server(int port)
{
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    const char *argv[] = {"redis-server", "--port", "0", "--tls-port", p, "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no",
                          "--tls-cert-file", path_of("server.pem"),
                          "--tls-key-file", path_of("server.key"),
                          "--tls-ca-cert-file", path_of("ca.pem"),
                          "--tls-auth-clients", "yes",
                          "--user", "alice", "on", ">" ACL_PW, "~*", "&*", "+@all", NULL};
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char log[128];
        snprintf(log, sizeof log, "%s/redis.log", dir);
        if (!freopen(log, "w", stdout) || dup2(1, 2) < 0)
            _exit(126);
        execvp("redis-server", (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static vb_err configure(const char *ca, const char *cert, const char *key, const char *pw,
                        vb_error *err)
{
    vb__redis_tls_opts o = {.ca_file = ca ? path_of(ca) : NULL,
                            .cert_file = cert ? path_of(cert) : NULL,
                            .key_file = key ? path_of(key) : NULL,
                            .key_password = pw};
    vb_error_clear(err);
    return vb__redis_tls_configure(&o, err);
}

static vb_err connect_to(const char *host, const char *userinfo, vb__redis **c, vb_error *err)
{
    char url[256];
    snprintf(url, sizeof url, "rediss://%s%s%s:%d/3", userinfo ? userinfo : "",
             userinfo ? "@" : "", host, tls_port);
    vb__redis_opts o = {.connect_timeout_ms = 2000, .command_timeout_ms = 2000};
    vb_error_clear(err);
    return vb__redis_new(url, &o, c, err);
}

static int group_setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/vb_test_redis_tls_XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    vb__config_default_path = NULL; /* /etc never matters */
    return 0;
}

static int group_teardown(void **state)
{
    if (server_pid > 0)
        vb_test_stop_redis(server_pid);
    vb__redis_tls_reset();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- every build ---- */

static void rediss_scheme_follows_the_build(void **state)
{
    vb__redis_url u;
    vb_error err = {0};
    vb_err rc = vb__redis_url_parse("REDISS://alice:" ACL_PW "@cache.internal:6380/2", &u, &err);
    if (!vb__redis_tls_available()) {
        assert_int_equal(rc, VB_ERR_CONFIG);
        assert_non_null(strstr(err.msg, "not supported by this build"));
        assert_non_null(strstr(err.msg, "hiredis >= 1.0"));
        assert_null(strstr(err.msg, ACL_PW));
        return;
    }
    assert_int_equal(rc, VB_OK);
    assert_int_equal(u.tls, 1);
    assert_string_equal(u.host, "cache.internal");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 2);
    assert_string_equal(u.user, "alice");
    assert_string_equal(u.password, ACL_PW);
    char d[128];
    assert_string_equal(vb__redis_url_describe(&u, d, sizeof d), "tls:cache.internal:6380/2");
    vb__redis_url_clear(&u);
    assert_int_equal(vb__redis_url_parse("rediss://[::1]", &u, NULL), VB_OK);
    assert_int_equal(u.port, 6379);
    assert_string_equal(vb__redis_url_describe(&u, d, sizeof d), "tls:[::1]:6379/0");
    assert_int_equal(vb__redis_url_parse("redis://h", &u, NULL), VB_OK);
    assert_int_equal(u.tls, 0);
}

static vb_err load(vb_config *cfg, vb_error *err, const char *url, const char *ca)
{
    char *argv[] = {"visionbatch-worker", "--redis-url", (char *)url, "--redis-tls-ca-file",
                    (char *)ca, NULL};
    char **rest;
    int nrest;
    vb_error_clear(err);
    return vb_config_load(cfg, VB_PROG_WORKER, ca ? 5 : 3, argv, &rest, &nrest, err);
}

static void settings_refuse_tls_files_without_rediss_and_name_bad_files(void **state)
{
    tu_unset_env_prefix("VISIONBATCH_");
    unsetenv("REDIS_URL");
    vb_config cfg;
    vb_error err = {0};
    assert_int_equal(load(&cfg, &err, "redis://h", "/etc/ssl/certs/ca-certificates.crt"),
                     VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "apply to rediss:// only"));
    if (!vb__redis_tls_available()) {
        assert_int_equal(load(&cfg, &err, "rediss://h", NULL), VB_ERR_CONFIG);
        assert_non_null(strstr(err.msg, "not supported by this build"));
        return;
    }
    assert_int_equal(load(&cfg, &err, "rediss://h", "/nonexistent/ca.pem"), VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "redis_tls_ca_file /nonexistent/ca.pem: cannot load"));
    /* The key password comes from the environment and is never repeated. */
    setenv("VISIONBATCH_REDIS_TLS_KEY_PASSWORD", "Wrong-" KEY_PW, 1);
    setenv("VISIONBATCH_REDIS_TLS_CERT_FILE", "/nonexistent/client.pem", 1);
    setenv("VISIONBATCH_REDIS_TLS_KEY_FILE", "/nonexistent/client.key", 1);
    assert_int_equal(load(&cfg, &err, "rediss://h", NULL), VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "redis_tls_cert_file /nonexistent/client.pem"));
    assert_null(strstr(err.msg, KEY_PW));
    tu_unset_env_prefix("VISIONBATCH_");
    assert_int_equal(load(&cfg, &err, "rediss://h", NULL), VB_OK);
    vb_config_free(&cfg);
    vb_redact_clear_secrets();
}

/* ---- builds with TLS ---- */

static void tls_files_are_checked_when_configured(void **state)
{
    NEEDS_TLS();
    if (make_certificates() != 0)
        fail_msg("openssl could not make the test certificates (see %s/openssl.log)", dir);
    vb_error err = {0};
    assert_int_equal(configure("missing.pem", NULL, NULL, NULL, &err), VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "redis_tls_ca_file"));
    assert_non_null(strstr(err.msg, "missing.pem"));
    assert_int_equal(configure("ca.pem", "client.pem", NULL, NULL, &err), VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "go together"));
    assert_int_equal(configure("ca.pem", "client.pem", "client.key", NULL, &err), VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "needs redis_tls_key_password"));
    assert_int_equal(configure("ca.pem", "client.pem", "client.key", "wrong-" KEY_PW, &err),
                     VB_ERR_CONFIG);
    assert_null(strstr(err.msg, KEY_PW));
    assert_int_equal(configure("ca.pem", "client.pem", "server.key", NULL, &err), VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "does not belong to"));
    assert_int_equal(configure("ca.pem", "client.pem", "client.key", KEY_PW, &err), VB_OK);
}

static void tls_connects_with_client_certificate_and_acl_user(void **state)
{
    NEEDS_TLS();
    if (access(path_of("client.pem"), R_OK) != 0 && make_certificates() != 0)
        fail_msg("openssl could not make the test certificates");
    tls_port = vb_test_free_port();
    server_pid = start_tls_server(tls_port);
    vb_error err = {0};
    vb__redis *c = NULL;
    assert_int_equal(configure("ca.pem", "client.pem", "client.key", KEY_PW, &err), VB_OK);
    /* Wait until the server answers over TLS (it may still be starting). */
    vb_err rc = VB_ERR_REDIS;
    for (int i = 0; i < 200 && rc != VB_OK; i++) {
        rc = connect_to("localhost", "alice:" ACL_PW, &c, &err);
        if (rc != VB_OK)
            vb_test_sleep_ms(25);
    }
    if (rc != VB_OK)
        fail_msg("no TLS connection to redis-server (built with TLS? see %s/redis.log): %s", dir,
                 err.msg);
    char want[64];
    snprintf(want, sizeof want, "tls:localhost:%d/3", tls_port);
    assert_string_equal(vb__redis_describe(c), want);
    const char *set[] = {"SET", "vb:tls", "ok"}, *get[] = {"GET", "vb:tls"};
    redisReply *r = vb__redis_command(c, 3, set, NULL, &err);
    assert_non_null(r);
    freeReplyObject(r);
    r = vb__redis_command(c, 2, get, NULL, &err);
    assert_non_null(r);
    assert_string_equal(r->str, "ok");
    freeReplyObject(r);
    vb__redis_free(c);

    /* The certificate names localhost only: its IP address is refused. */
    assert_int_equal(connect_to("127.0.0.1", "alice:" ACL_PW, &c, &err), VB_ERR_REDIS);
    assert_non_null(strstr(err.msg, "not trusted"));
    /* Wrong ACL password: refused, not echoed. */
    assert_int_equal(connect_to("localhost", "alice:x" ACL_PW, &c, &err), VB_ERR_REDIS);
    assert_non_null(strstr(err.msg, "authentication failed"));
    assert_null(strstr(err.msg, ACL_PW));
    /* A CA that did not sign the server's certificate. */
    assert_int_equal(configure("other-ca.pem", "client.pem", "client.key", KEY_PW, &err), VB_OK);
    assert_int_equal(connect_to("localhost", "alice:" ACL_PW, &c, &err), VB_ERR_REDIS);
    assert_non_null(strstr(err.msg, "not trusted"));
    /* No client certificate: the server refuses the connection. */
    assert_int_equal(configure("ca.pem", NULL, NULL, NULL, &err), VB_OK);
    assert_int_equal(connect_to("localhost", "alice:" ACL_PW, &c, &err), VB_ERR_REDIS);
    assert_null(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rediss_scheme_follows_the_build),
        cmocka_unit_test(settings_refuse_tls_files_without_rediss_and_name_bad_files),
        cmocka_unit_test(tls_files_are_checked_when_configured),
        cmocka_unit_test(tls_connects_with_client_certificate_and_acl_user),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
