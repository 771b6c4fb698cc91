/*
 * jobs_pool.h — a small pool of vb_jobs handles (Redis connections) for the
 * REST API, so requests served by different threads do not queue behind one
 * connection's mutex.
 *
 * One handle is opened by vb_jobs_pool_new (a bad URL or an unreachable Redis
 * fails there); more are opened on demand, up to `max`, when every open one is
 * lent out; past that, vb_jobs_pool_get waits for one to come back. Handles
 * are kept open until the pool is freed. Thread-safe.
 */
#ifndef VISIONBATCH_JOBS_POOL_H
#define VISIONBATCH_JOBS_POOL_H

#include <stddef.h>

#include "visionbatch/error.h"
#include "visionbatch/jobs.h"

#define VB_JOBS_POOL_MAX 64

typedef struct vb_jobs_pool vb_jobs_pool;

/* Copies opts (URL and secret key; the caller may wipe its copy) and opens
 * the first handle. max: 1..VB_JOBS_POOL_MAX (clamped). On failure *out is
 * NULL and the error is vb_jobs_new's. */
vb_err vb_jobs_pool_new(const vb_jobs_opts *opts, size_t max, vb_jobs_pool **out,
                        vb_error *err);

/* Lends a handle: a free one, else a newly opened one while fewer than max
 * are open, else the first to be returned. NULL (with the error) only when
 * opening a new handle failed. Give it back with vb_jobs_pool_put. */
vb_jobs *vb_jobs_pool_get(vb_jobs_pool *p, vb_error *err);

/* Returns a handle lent by vb_jobs_pool_get. */
void vb_jobs_pool_put(vb_jobs_pool *p, vb_jobs *j);

/* Handles open (tests). */
size_t vb_jobs_pool_open_count(vb_jobs_pool *p);

/* Closes every handle and wipes the key; all must have been returned. NULL ok. */
void vb_jobs_pool_free(vb_jobs_pool *p);

#endif
