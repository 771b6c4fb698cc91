/*
 * store_requeue.c — vb_store_release_claim(): gives a claimed but unpublished
 * run back to the next producer poll (see store_requeue.h).
 *
 * Only store.h's public API is used. The sequence lock → read → set failed →
 * unlock is safe because every worker transition needs the same lock: while
 * it is held here, no worker can begin processing the run, and the version
 * check proves no one changed it since the claim. If a worker already holds
 * the lock, the message evidently arrived and the claim stands.
 */
#include "visionbatch/store_requeue.h"

#include <string.h>

/* How long the release may hold the run's lock; it needs milliseconds. */
#define RELEASE_LOCK_MS 10000

vb_err vb_store_release_claim(vb_store *s, const char *run_id, long long claimed_version,
                              const char *holder_id, const char *reason, int *released,
                              vb_error *err)
{
    char token[VB_STORE_TOKEN_SIZE];
    vb_run_state st;
    memset(&st, 0, sizeof st);
    if (released)
        *released = 0;

    vb_err rc = vb_store_lock_acquire(s, run_id, holder_id && *holder_id ? holder_id : "producer",
                                      RELEASE_LOCK_MS, token, err);
    if (rc == VB_ERR_CONFLICT) {
        /* A worker holds the run: the message reached it after all. */
        vb_error_clear(err);
        return VB_OK;
    }
    if (rc != VB_OK)
        return rc;

    if ((rc = vb_store_get(s, run_id, &st, err)) != VB_OK)
        goto out;
    if (st.state != VB_RUN_QUEUED || st.version != claimed_version)
        goto out; /* moved on since the claim: leave it alone */
    if ((rc = vb_store_set_state(s, run_id, token, VB_RUN_FAILED, reason, NULL, err)) != VB_OK)
        goto out;
    if (released)
        *released = 1;

out:
    vb_run_state_free(&st);
    /* An expired lock (VB_ERR_CANCELLED) is harmless here: it was ours only
     * to keep workers out for the few commands above. */
    vb_store_lock_release(s, run_id, token, NULL);
    return rc;
}
