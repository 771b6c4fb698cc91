/*
 * heartbeat.c — workers' heartbeats in Redis (heartbeat.h) on the Redis layer
 * (redis/redis.h).
 *
 * A beat is one Lua script (record, TTL, the set of workers), so a reader
 * never sees a worker in the set whose record was written without its TTL.
 * The list is one read script that also forgets the ids whose record has
 * expired, so the set stays as small as the number of live workers.
 *
 * Threading: a vb_heartbeat is used by one thread at a time. Ownership: it
 * owns its connection; replies are freed before each function returns.
 */
#include "visionbatch/heartbeat.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis/redis.h"

#define BEAT_PREFIX "visionbatch:worker:"
#define BEATS_KEY "visionbatch:workers"
#define KEY_MAX (sizeof(BEAT_PREFIX) + VB_BEAT_ID_MAX)

struct vb_heartbeat {
    vb__redis *r;
};

/* KEYS record, set. ARGV ttl_ms, worker, beat_at, then field/value pairs. */
static const char LUA_BEAT[] =
    "redis.call('DEL', KEYS[1])\n"
    "redis.call('HSET', KEYS[1], unpack(ARGV, 4))\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[1])\n"
    "redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])\n"
    "return 1\n";

/* KEYS set. ARGV record prefix, most ids. Returns {{field, value, …}, …},
 * newest beat first; ids without a record are removed from the set. */
static const char LUA_LIST[] =
    "local out = {}\n"
    "for _, id in ipairs(redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)) do\n"
    "  local h = redis.call('HGETALL', ARGV[1] .. id)\n"
    "  if #h == 0 then redis.call('ZREM', KEYS[1], id) else out[#out + 1] = h end\n"
    "end\n"
    "return out\n";

vb_err vb_heartbeat_new(const char *redis_url, vb_heartbeat **out, vb_error *err)
{
    *out = NULL;
    vb_heartbeat *h = calloc(1, sizeof *h);
    if (!h)
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    vb__redis_opts ro = {.connect_timeout_ms = 2000, .command_timeout_ms = 5000, .lazy = 1,
                         .client_name = "visionbatch-heartbeat"};
    vb_err rc = vb__redis_new(redis_url, &ro, &h->r, err);
    if (rc != VB_OK) {
        free(h);
        return rc;
    }
    *out = h;
    return VB_OK;
}

void vb_heartbeat_free(vb_heartbeat *h)
{
    if (!h)
        return;
    vb__redis_free(h->r);
    free(h);
}

/* 1 when `s` is 1–255 printable ASCII bytes without spaces. */
static int id_ok(const char *s)
{
    size_t n = strnlen(s, VB_BEAT_ID_MAX);
    if (n == 0 || n >= VB_BEAT_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return 0;
    return 1;
}

vb_err vb_heartbeat_write(vb_heartbeat *h, const vb_beat *b, long ttl_ms, vb_error *err)
{
    if (!id_ok(b->worker))
        return vb_error_set(err, VB_ERR_INVALID, "worker id must be 1-255 printable bytes");
    if (b->interval_ms <= 0 || ttl_ms <= b->interval_ms)
        return vb_error_set(err, VB_ERR_INVALID, "heartbeat TTL must exceed its interval");
    char key[KEY_MAX], ttl[24], slots[24], infl[24], at[24], start[24], ivl[24];
    snprintf(key, sizeof key, "%s%s", BEAT_PREFIX, b->worker);
    snprintf(ttl, sizeof ttl, "%ld", ttl_ms);
    snprintf(slots, sizeof slots, "%ld", b->slots);
    snprintf(infl, sizeof infl, "%ld", b->in_flight);
    snprintf(at, sizeof at, "%lld", b->beat_at);
    snprintf(start, sizeof start, "%lld", b->started_at);
    snprintf(ivl, sizeof ivl, "%ld", b->interval_ms);
    const char *argv[] = {"2",        key,      BEATS_KEY, ttl,     b->worker,     at,
                          "worker",   b->worker, "host",   b->host, "version",     b->version,
                          "slots",    slots,    "in_flight", infl,  "beat_at",     at,
                          "started_at", start,  "interval_ms", ivl};
    redisReply *r = vb__redis_eval(h->r, LUA_BEAT, (int)(sizeof argv / sizeof argv[0]), argv,
                                   NULL, err);
    if (!r)
        return err && err->code != VB_OK ? err->code : VB_ERR_REDIS;
    freeReplyObject(r);
    return VB_OK;
}

vb_err vb_heartbeat_remove(vb_heartbeat *h, const char *worker, vb_error *err)
{
    if (!id_ok(worker))
        return vb_error_set(err, VB_ERR_INVALID, "worker id must be 1-255 printable bytes");
    char key[KEY_MAX];
    snprintf(key, sizeof key, "%s%s", BEAT_PREFIX, worker);
    const char *del[2] = {"DEL", key}, *zrem[3] = {"ZREM", BEATS_KEY, worker};
    redisReply *r = vb__redis_command(h->r, 2, del, NULL, err);
    if (r) {
        freeReplyObject(r);
        r = vb__redis_command(h->r, 3, zrem, NULL, err);
    }
    if (!r)
        return err && err->code != VB_OK ? err->code : VB_ERR_REDIS;
    freeReplyObject(r);
    return VB_OK;
}

static long long parse_ll(const char *s)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    return errno != 0 || end == s || *end != '\0' || v < 0 ? 0 : v;
}

/* Fills *b from an HGETALL array; unknown fields are ignored, strings cut. */
static void beat_from_hash(const redisReply *h, vb_beat *b)
{
    memset(b, 0, sizeof *b);
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        const redisReply *k = h->element[i], *v = h->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(k->str, "worker") == 0)
            snprintf(b->worker, sizeof b->worker, "%s", v->str);
        else if (strcmp(k->str, "host") == 0)
            snprintf(b->host, sizeof b->host, "%s", v->str);
        else if (strcmp(k->str, "version") == 0)
            snprintf(b->version, sizeof b->version, "%s", v->str);
        else if (strcmp(k->str, "slots") == 0)
            b->slots = (long)(parse_ll(v->str) % 1000000);
        else if (strcmp(k->str, "in_flight") == 0)
            b->in_flight = (long)(parse_ll(v->str) % 1000000);
        else if (strcmp(k->str, "beat_at") == 0)
            b->beat_at = parse_ll(v->str);
        else if (strcmp(k->str, "started_at") == 0)
            b->started_at = parse_ll(v->str);
        else if (strcmp(k->str, "interval_ms") == 0)
            b->interval_ms = (long)(parse_ll(v->str) % 100000000);
    }
}

vb_err vb_heartbeat_list(vb_heartbeat *h, vb_beat *out, size_t max, size_t *n, vb_error *err)
{
    *n = 0;
    if (max == 0 || max > VB_BEAT_LIST_MAX)
        return vb_error_set(err, VB_ERR_INVALID, "heartbeat list size must be 1-%d",
                            VB_BEAT_LIST_MAX);
    char most[24];
    snprintf(most, sizeof most, "%zu", max);
    const char *argv[4] = {"1", BEATS_KEY, BEAT_PREFIX, most};
    redisReply *r = vb__redis_eval(h->r, LUA_LIST, 4, argv, NULL, err);
    if (!r)
        return err && err->code != VB_OK ? err->code : VB_ERR_REDIS;
    vb_err rc = VB_OK;
    if (r->type != REDIS_REPLY_ARRAY || r->elements > max) {
        rc = vb__redis_unexpected(h->r, "heartbeat list", err);
    } else {
        for (size_t i = 0; i < r->elements; i++)
            if (r->element[i]->type == REDIS_REPLY_ARRAY)
                beat_from_hash(r->element[i], &out[(*n)++]);
    }
    freeReplyObject(r);
    return rc;
}

int vb_beat_stale(const vb_beat *b, long long now_ms)
{
    return now_ms - b->beat_at > (long long)VB_BEAT_STALE_BEATS * b->interval_ms;
}
