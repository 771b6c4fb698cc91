/*
 * heartbeat.h — the worker's heartbeat thread (heartbeat.c): every few
 * seconds it writes this worker's record (visionbatch/heartbeat.h) so the
 * producer's console can show its last heartbeat and notice when it stops.
 */
#ifndef VISIONBATCH_WORKER_HEARTBEAT_H
#define VISIONBATCH_WORKER_HEARTBEAT_H

#include "visionbatch/config.h"
#include "visionbatch/error.h"

typedef struct vb_worker_beats vb_worker_beats;

/* The interval between beats for a lease of lease_ms: a third of the lease,
 * 1–5 s. The record lives 10 intervals, at least 30 s. */
long vb_worker_beat_interval_ms(long lease_ms);

/* Starts the thread: it beats at once, then every interval, with
 * in_flight(ctx) as the runs in flight (called from the thread). cfg is
 * borrowed and must outlive the thread. Failed beats are logged (once per
 * outage) and do not stop the worker. */
vb_err vb_worker_beats_start(const vb_config *cfg, int (*in_flight)(void *ctx), void *ctx,
                             vb_worker_beats **out, vb_error *err);

/* Stops the thread and removes the worker's record (a clean stop shows no
 * stale worker). NULL is accepted. */
void vb_worker_beats_stop(vb_worker_beats *b);

#endif
