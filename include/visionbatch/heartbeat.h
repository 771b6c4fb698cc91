/*
 * heartbeat.h — workers' heartbeats in Redis: every few seconds each
 * visionbatch-worker writes a small record (its id, host, slots, runs in
 * flight, the time of the beat) that expires by itself; the producer's
 * console lists them to show each worker's last heartbeat and which workers
 * stopped beating.
 *
 * Keys (under `visionbatch:`, beside store.h's):
 *   visionbatch:worker:<id>  hash: worker, host, slots, in_flight, beat_at,
 *                            started_at, interval_ms, version; PX = the TTL
 *                            given by the writer (several intervals).
 *   visionbatch:workers      sorted set of worker ids, score = beat_at; the
 *                            list reads it and forgets ids whose record expired.
 * A worker that stops beating keeps its record until the TTL ends and is
 * stale meanwhile (vb_beat_stale); one that stops cleanly removes it.
 *
 * Times are unix ms from the writer's clock (hosts are NTP-synchronised, as
 * store.h asks already). Threading: one vb_heartbeat per thread (one Redis
 * connection, reconnecting as store.h's does).
 */
#ifndef VISIONBATCH_HEARTBEAT_H
#define VISIONBATCH_HEARTBEAT_H

#include <stddef.h>

#include "visionbatch/error.h"

#define VB_BEAT_ID_MAX 256      /* worker ids and host names: at most 255 bytes */
#define VB_BEAT_LIST_MAX 1000   /* most heartbeats one list returns */
#define VB_BEAT_STALE_BEATS 3   /* a worker is stale after this many missed beats */

typedef struct vb_heartbeat vb_heartbeat;

/* One worker's heartbeat. */
typedef struct vb_beat {
    char worker[VB_BEAT_ID_MAX]; /* printable, no spaces */
    char host[VB_BEAT_ID_MAX];
    char version[32];
    long slots;          /* runs it may process at once */
    long in_flight;      /* runs it was processing at the beat */
    long long beat_at;   /* unix ms of the beat */
    long long started_at; /* unix ms the worker started */
    long interval_ms;    /* how often it beats */
} vb_beat;

/* Opens a lazy connection to `redis_url` (store.h's grammar): nothing is
 * sent before the first call. VB_ERR_CONFIG for a bad URL. */
vb_err vb_heartbeat_new(const char *redis_url, vb_heartbeat **out, vb_error *err);
/* NULL is accepted. */
void vb_heartbeat_free(vb_heartbeat *h);

/* Writes *b (one script: record, its TTL of ttl_ms, the set of workers).
 * VB_ERR_INVALID for an id that is empty, too long or not printable without
 * spaces, or a TTL not above the interval. */
vb_err vb_heartbeat_write(vb_heartbeat *h, const vb_beat *b, long ttl_ms, vb_error *err);

/* Removes the heartbeat of `worker` (a clean stop). */
vb_err vb_heartbeat_remove(vb_heartbeat *h, const char *worker, vb_error *err);

/* Reads up to `max` (≤ VB_BEAT_LIST_MAX) heartbeats, the most recent beat
 * first, into out[0..*n); ids whose record expired are forgotten on the way.
 * One script, O(workers). */
vb_err vb_heartbeat_list(vb_heartbeat *h, vb_beat *out, size_t max, size_t *n, vb_error *err);

/* 1 when the worker missed VB_BEAT_STALE_BEATS beats by `now_ms`. */
int vb_beat_stale(const vb_beat *b, long long now_ms);

#endif
