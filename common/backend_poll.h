/*
 * backend_poll.h — when vb_backend_wait polls a batch's status (backend_poll.c).
 *
 * The schedule: the first poll comes once the batch can plausibly be done —
 * 9/10 of the duration learned for batches of that size on that backend, or
 * status_poll_min_ms when nothing is known yet — and then intervals start at
 * status_poll_min_ms and double up to status_poll_max_ms (after a learned
 * first poll, the first VB__POLL_NEAR intervals stay at status_poll_min_ms).
 * What a wait saw (the last poll that found the batch unfinished and the one that found it
 * done) updates the learned duration. The table is process-wide and
 * thread-safe. Not part of the public API; the hooks exist for unit tests.
 */
#ifndef VISIONBATCH_BACKEND_POLL_H
#define VISIONBATCH_BACKEND_POLL_H

#include <stdatomic.h>
#include <stddef.h>

#include "visionbatch/backend.h"

/* Intervals of status_poll_min_ms after a first poll timed by a learned
 * duration, before the doubling starts: the batch is expected to end there. */
#define VB__POLL_NEAR 3

/* Delay before the first status poll of a batch of `nimages` images on
 * `backend` (a base URL; NULL is one more key): clamp(9/10 × learned,
 * min_ms, max_ms), or min_ms when nothing is learned. min/max as in
 * vb_backend_next_poll_ms. */
long vb__poll_first_ms(const char *backend, size_t nimages, long min_ms, long max_ms);

/* Records a finished wait: the batch was still running `pending_ms` after the
 * wait began (0 when no poll found it unfinished) and done at `done_ms`. The
 * learned duration moves halfway towards the midpoint of the two. */
void vb__poll_learn(const char *backend, size_t nimages, long long pending_ms,
                    long long done_ms);

/* The learned duration in ms, 0 when none (tests). */
long vb__poll_learned_ms(const char *backend, size_t nimages);

/* Forgets everything learned (tests). */
void vb__poll_forget(void);

/* Test hooks: a clock, a sleep and a status source replacing the monotonic
 * clock, nanosleep and GET .../status. sleep_ms returns 1 when cancelled. */
typedef struct vb__backend_hooks {
    long long (*now_ms)(void *ctx);
    int (*sleep_ms)(void *ctx, long long ms, const atomic_int *cancel);
    vb_err (*get_status)(void *ctx, const char *batch_id, vb_batch_status *st, vb_error *err);
    void *ctx;
} vb__backend_hooks;

/* Installs hooks (NULL: the real clock, sleep and HTTP). Not thread-safe:
 * set before waits start. */
void vb__backend_set_hooks(const vb__backend_hooks *hooks);
/* The installed hooks, NULL when none. */
const vb__backend_hooks *vb__backend_hooks_get(void);

/* Monotonic milliseconds (or the hook's clock). */
long long vb__poll_now_ms(void);
/* Sleeps ms in short slices (or through the hook); 1 when *cancel got set. */
int vb__poll_sleep_ms(long long ms, const atomic_int *cancel);

#endif
