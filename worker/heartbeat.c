/*
 * heartbeat.c — the worker's heartbeat thread (heartbeat.h).
 *
 * One thread with its own Redis connection (visionbatch/heartbeat.h) writes
 * the worker's record every interval and waits on a condition variable in
 * between, so stopping it does not wait for the interval to end. The record
 * names the worker (worker_id, the Kafka client id the console matches
 * consumer-group members by), its host, its slots and the runs in flight.
 *
 * Ownership: the thread owns the connection; the caller owns the handle and
 * ends both with vb_worker_beats_stop().
 */
#include "heartbeat.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "visionbatch/heartbeat.h"
#include "visionbatch/log.h"
#include "visionbatch/version.h"
#include "util.h"

struct vb_worker_beats {
    const vb_config *cfg;
    int (*in_flight)(void *ctx);
    void *ctx;
    vb_heartbeat *hb;
    vb_beat beat;
    long ttl_ms;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled by stop */
    int stop;          /* (mu) */
};

long vb_worker_beat_interval_ms(long lease_ms)
{
    long ms = lease_ms / 3;
    return ms < 1000 ? 1000 : ms > 5000 ? 5000 : ms;
}

static void *beats_main(void *p)
{
    vb_worker_beats *b = p;
    int failing = 0;
    pthread_mutex_lock(&b->mu);
    while (!b->stop) {
        pthread_mutex_unlock(&b->mu);
        vb_error err;
        vb_error_clear(&err);
        b->beat.in_flight = b->in_flight(b->ctx);
        b->beat.beat_at = vb__now_ms();
        if (vb_heartbeat_write(b->hb, &b->beat, b->ttl_ms, &err) != VB_OK) {
            if (!failing)
                VB_WARN("heartbeat not written (retrying every %ld ms): %s",
                        b->beat.interval_ms, err.msg);
            failing = 1;
        } else if (failing) {
            VB_INFO("heartbeat written again");
            failing = 0;
        }
        struct timespec until = vb__realtime_after(b->beat.interval_ms);
        pthread_mutex_lock(&b->mu);
        while (!b->stop && pthread_cond_timedwait(&b->cv, &b->mu, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

vb_err vb_worker_beats_start(const vb_config *cfg, int (*in_flight)(void *ctx), void *ctx,
                             vb_worker_beats **out, vb_error *err)
{
    *out = NULL;
    vb_worker_beats *b = calloc(1, sizeof *b);
    if (!b)
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    b->cfg = cfg;
    b->in_flight = in_flight;
    b->ctx = ctx;
    snprintf(b->beat.worker, sizeof b->beat.worker, "%s", cfg->worker_id);
    if (gethostname(b->beat.host, sizeof b->beat.host - 1) != 0)
        snprintf(b->beat.host, sizeof b->beat.host, "unknown");
    snprintf(b->beat.version, sizeof b->beat.version, "%s", VB_VERSION);
    b->beat.slots = cfg->concurrency;
    b->beat.started_at = vb__now_ms();
    b->beat.interval_ms = vb_worker_beat_interval_ms(cfg->lease_ms);
    b->ttl_ms = b->beat.interval_ms * 10 > 30000 ? b->beat.interval_ms * 10 : 30000;
    vb_err rc = vb_heartbeat_new(cfg->redis_url, &b->hb, err);
    if (rc != VB_OK) {
        free(b);
        return rc;
    }
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    if (pthread_create(&b->th, NULL, beats_main, b) != 0) {
        pthread_cond_destroy(&b->cv);
        pthread_mutex_destroy(&b->mu);
        vb_heartbeat_free(b->hb);
        free(b);
        return vb_error_set(err, VB_ERR_NOMEM, "cannot start the heartbeat thread");
    }
    *out = b;
    return VB_OK;
}

void vb_worker_beats_stop(vb_worker_beats *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->mu);
    b->stop = 1;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->th, NULL);
    vb_error err;
    vb_error_clear(&err);
    if (vb_heartbeat_remove(b->hb, b->beat.worker, &err) != VB_OK)
        VB_WARN("heartbeat record not removed (it expires by itself): %s", err.msg);
    vb_heartbeat_free(b->hb);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b);
}
