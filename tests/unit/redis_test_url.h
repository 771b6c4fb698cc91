/* Test helper: the Redis database a test executable may wipe.
 *
 * Base server: $REDIS_URL (its database part is replaced) or
 * redis://127.0.0.1:6379. Each executable passes its own database number so
 * tests that run in parallel never FLUSHDB each other's data. When Redis is
 * unreachable the tests fail, unless VB_ALLOW_NO_REDIS=1 (then they skip). */
#ifndef VB_TEST_REDIS_URL_H
#define VB_TEST_REDIS_URL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

static char vb_test_url_buf[512];

static const char *vb_test_redis_url(int db)
{
    const char *base = getenv("REDIS_URL");
    if (!base || strncmp(base, "redis://", 8) != 0)
        base = "redis://127.0.0.1:6379";
    const char *slash = strchr(base + 8, '/');
    int n = slash ? (int)(slash - base) : (int)strlen(base);
    snprintf(vb_test_url_buf, sizeof vb_test_url_buf, "%.*s/%d", n, base, db);
    return vb_test_url_buf;
}

/* Runs a raw command on the test database; returns the reply (caller frees)
 * or NULL when Redis is unreachable. Host/port/password from the URL. */
static redisReply *vb_test_redis(int db, const char *fmt, const char *arg)
{
    const char *url = vb_test_redis_url(db) + 8;
    char host[256] = "127.0.0.1", pass[256] = "";
    int port = 6379;
    const char *at = strrchr(url, '@');
    if (at) {
        const char *colon = memchr(url, ':', (size_t)(at - url));
        const char *pw = colon ? colon + 1 : url;
        snprintf(pass, sizeof pass, "%.*s", (int)(at - pw), pw);
        url = at + 1;
    }
    const char *colon = strchr(url, ':'), *slash = strchr(url, '/');
    if (colon && slash && colon < slash) {
        snprintf(host, sizeof host, "%.*s", (int)(colon - url), url);
        port = (int)strtol(colon + 1, NULL, 10);
    } else if (slash) {
        snprintf(host, sizeof host, "%.*s", (int)(slash - url), url);
    }
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    redisReply *r = NULL;
    if (pass[0])
        freeReplyObject(redisCommand(c, "AUTH %s", pass));
    freeReplyObject(redisCommand(c, "SELECT %d", db));
    r = arg ? redisCommand(c, fmt, arg) : redisCommand(c, fmt);
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
                     vb_test_redis_url(db));                                                       \
        }                                                                                          \
    } while (0)

#endif
