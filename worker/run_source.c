/*
 * run_source.c — the run a worker slot processes: from its message's sealed
 * copy, or from the platform (see run_source.h).
 */
#include "run_source.h"

#include <string.h>

#include "visionbatch/platform.h"
#include "visionbatch/seal.h"

/* 1 when the run record says an earlier attempt started an upload (or
 * cannot be read: the platform is asked then too). */
static int upload_started_before(vb_store *store, const char *run_id)
{
    vb_run_state st;
    memset(&st, 0, sizeof st);
    vb_error e;
    vb_error_clear(&e);
    int yes = vb_store_get(store, run_id, &st, &e) != VB_OK || st.upload_started_at > 0;
    vb_run_state_free(&st);
    return yes;
}

const char *vb_worker_run_from_message(const unsigned char *key, const vb_run_msg *m,
                                       const vb_config *cfg, vb_store *store, vb_run *out,
                                       vb_error *why)
{
    const char *reason = NULL;
    memset(out, 0, sizeof *out);
    if (!m->sealed)
        reason = m->sealed_invalid ? "the message's sealed field is malformed"
                                   : "the message carries no sealed run";
    else if (!key)
        reason = "this worker has no secret key to open the sealed run";
    else if (vb_seal_open_run(key, m->run_id, m->sealed, out, why) != VB_OK)
        reason = why->msg;
    else if (!vb_id_equal(out->organization_id, cfg->organization_id) || out->is_processed)
        reason = "the sealed run is of another organization or marked processed";
    else if (upload_started_before(store, m->run_id))
        reason = "an earlier attempt started an upload (or its record could not be read)";
    if (reason) {
        vb_run_free(out);
        memset(out, 0, sizeof *out);
    }
    return reason;
}

vb_err vb_worker_run_lookup(vb_http *h, vb_store *store, const vb_config *cfg,
                            const char *run_id, const atomic_int *cancel, vb_run *out,
                            int *uploaded_before, vb_error *err)
{
    int found = 0;
    *uploaded_before = 0;
    vb_err rc = vb_platform_find_run(h, cfg, run_id, cancel, out, &found, err);
    if (rc != VB_OK || found)
        return rc;
    /* Absent from the unprocessed list. That proves "processed" only if
     * visionbatch itself began uploading this run's report before (a crash
     * after the upload landed); otherwise it is a failure to look at again
     * later. */
    vb_run_state st;
    memset(&st, 0, sizeof st);
    vb_error se;
    vb_error_clear(&se);
    *uploaded_before = vb_store_get(store, run_id, &st, &se) == VB_OK && st.upload_started_at > 0;
    vb_run_state_free(&st);
    if (*uploaded_before)
        return VB_OK;
    return vb_error_set(err, VB_ERR_NOT_FOUND,
                        "the platform does not list the run as unprocessed, and visionbatch "
                        "never uploaded its report");
}
