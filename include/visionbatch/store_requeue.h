/*
 * store_requeue.h — undoing a producer's claim when its message could not be
 * published (common/store_requeue.c).
 *
 * vb_store_claim_for_queue_ex() moves a run to `queued` with a lease of
 * minutes before the producer publishes it. If Kafka then refuses the message
 * (or never acknowledges it), nothing would carry the run to a worker, and
 * the lease would keep every later poll from publishing it again. Releasing
 * the claim moves the run back to `failed` — without counting a processing
 * attempt — so the next poll publishes it again.
 *
 * Built only on store.h's public calls: it takes the run's lock for a moment
 * (so no worker transition can interleave), checks that the run is still
 * exactly as the claim left it (state queued, same version), sets it failed
 * with the reason, and drops the lock. Same threading as store.h (one
 * vb_store per thread).
 */
#ifndef VISIONBATCH_STORE_REQUEUE_H
#define VISIONBATCH_STORE_REQUEUE_H

#include "visionbatch/store.h"

/* Releases the producer's claim of `run_id` made at `claimed_version` (the
 * version vb_store_claim_for_queue_ex returned). `holder_id` names the
 * producer in the brief lock (printable, no spaces); `reason` becomes
 * last_error (already redacted; NULL = keep). *released (may be NULL) is 1
 * when the run was moved back to failed, 0 when it had moved on meanwhile (a
 * worker holds its lock or changed it: then the message did arrive and
 * nothing is touched). VB_ERR_REDIS when Redis failed; VB_ERR_NOT_FOUND when
 * the run has no state. */
vb_err vb_store_release_claim(vb_store *s, const char *run_id, long long claimed_version,
                              const char *holder_id, const char *reason, int *released,
                              vb_error *err);

#endif
