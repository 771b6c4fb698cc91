/* Test helper: the Redis database a test executable may wipe.
 *
 * Base server: $REDIS_URL (its database part is replaced) or
 * redis://127.0.0.1:6379. It is read with the library's own URL grammar
 * (redis/redis.h), so every form the programs accept works here too,
 * credentials and unix sockets included. Each executable passes its own
 * database number so tests that run in parallel never FLUSHDB each other's
 * data. When Redis is unreachable the tests fail, unless VB_ALLOW_NO_REDIS=1
 * (then they skip). */
#ifndef VB_TEST_REDIS_URL_H
#define VB_TEST_REDIS_URL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "redis/redis.h"

static char vb_test_url_buf[1024];

/* Appends s percent-encoded (everything but unreserved characters). */
static void vb_test_url_encode(char *out, size_t outlen, const char *s)
{
    size_t o = strlen(out);
    for (; *s && o + 4 < outlen; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, outlen - o, "%%%02X", c);
    }
    out[o] = '\0';
}

/* The parsed base URL; exits the test program when $REDIS_URL is invalid. */
static vb__redis_url vb_test_redis_base(void)
{
    const char *base = getenv("REDIS_URL");
    vb__redis_url u;
    vb_error err = {0};
    if (vb__redis_url_parse(base && *base ? base : "redis://127.0.0.1:6379", &u, &err) != VB_OK) {
        fprintf(stderr, "REDIS_URL is invalid: %s\n", err.msg);
        exit(2);
    }
    return u;
}

/* The base URL with database `db`, canonical form. Valid until the next call. */
static const char *vb_test_redis_url(int db)
{
    vb__redis_url u = vb_test_redis_base();
    char *b = vb_test_url_buf;
    size_t n = sizeof vb_test_url_buf;
    snprintf(b, n, "%s", u.is_unix ? "unix://" : "redis://");
    if (u.password[0]) {
        vb_test_url_encode(b, n, u.user);
        snprintf(b + strlen(b), n - strlen(b), ":");
        vb_test_url_encode(b, n, u.password);
        snprintf(b + strlen(b), n - strlen(b), "@");
    }
    if (u.is_unix)
        snprintf(b + strlen(b), n - strlen(b), "%s?db=%d", u.path, db);
    else if (strchr(u.host, ':'))
        snprintf(b + strlen(b), n - strlen(b), "[%s]:%d/%d", u.host, u.port, db);
    else
        snprintf(b + strlen(b), n - strlen(b), "%s:%d/%d", u.host, u.port, db);
    vb__redis_url_clear(&u);
    return vb_test_url_buf;
}

/* A raw hiredis connection to the test database, authenticated; NULL when
 * Redis is unreachable. Free with redisFree(). */
static redisContext *vb_test_redis_connect(int db)
{
    vb__redis_url u = vb_test_redis_base();
    struct timeval tv = {2, 0};
    redisContext *c = u.is_unix ? redisConnectUnixWithTimeout(u.path, tv)
                                : redisConnectWithTimeout(u.host, u.port, tv);
    if (c && !c->err) {
        if (u.password[0])
            freeReplyObject(u.user[0] ? redisCommand(c, "AUTH %s %s", u.user, u.password)
                                      : redisCommand(c, "AUTH %s", u.password));
        freeReplyObject(redisCommand(c, "SELECT %d", db));
    } else if (c) {
        redisFree(c);
        c = NULL;
    }
    vb__redis_url_clear(&u);
    return c;
}

/* Runs a raw command on the test database; returns the reply (caller frees)
 * or NULL when Redis is unreachable. */
static redisReply *vb_test_redis(int db, const char *fmt, const char *arg)
{
    redisContext *c = vb_test_redis_connect(db);
    if (!c)
        return NULL;
    redisReply *r = arg ? redisCommand(c, fmt, arg) : redisCommand(c, fmt);
    redisFree(c);
    return r;
}

/* FLUSHDB; 0 when Redis answered, -1 when unreachable. */
static int vb_test_redis_flush(int db)
{
    redisReply *r = vb_test_redis(db, "FLUSHDB", NULL);
    if (!r)
        return -1;
    freeReplyObject(r);
    return 0;
}

/* "host:port/db" of the test database, without credentials (for messages). */
__attribute__((unused)) static const char *vb_test_redis_where(int db)
{
    static char where[400];
    vb__redis_url u = vb_test_redis_base();
    u.db = db;
    vb__redis_url_describe(&u, where, sizeof where);
    vb__redis_url_clear(&u);
    return where;
}

static int vb_test_allow_no_redis(void)
{
    const char *v = getenv("VB_ALLOW_NO_REDIS");
    return v && strcmp(v, "1") == 0;
}

/* In a cmocka setup or test (cmocka.h included): empties database `db`;
 * when Redis is unreachable, skips (VB_ALLOW_NO_REDIS=1) or fails. */
#define VB_TEST_REDIS_FRESH(db)                                                                    \
    do {                                                                                           \
        if (vb_test_redis_flush(db) != 0) {                                                        \
            if (vb_test_allow_no_redis())                                                          \
                skip();                                                                            \
            fail_msg("Redis unreachable at %s (set VB_ALLOW_NO_REDIS=1 to skip)",                  \
                     vb_test_redis_where(db));                                                     \
        }                                                                                          \
    } while (0)

#endif
