/*
 * pipeline.h — one run, end to end: download its documents, analyse them on
 * the backend, upload one HTML report to the platform.
 *
 * Every program runs runs through here: `visionbatch run-once` directly, the
 * worker once it holds a run's lock. The caller observes and steers the run
 * through hooks: each stage change is reported (the worker records it in
 * Redis and renews its lease there; a non-OK answer stops the run), and
 * before the report is uploaded the caller may veto the upload (the worker
 * does when a previous attempt may already have uploaded it).
 *
 * Temp files live in a private directory under cfg->temp_dir and are removed
 * before vb_pipeline_process() returns, whatever the outcome. Thread-safe:
 * concurrent calls need their own vb_http handle.
 */
#ifndef VISIONBATCH_PIPELINE_H
#define VISIONBATCH_PIPELINE_H

#include <stdatomic.h>

#include "visionbatch/config.h"
#include "visionbatch/http.h"
#include "visionbatch/run.h"

typedef enum vb_stage {
    VB_STAGE_DOWNLOADING = 0,
    VB_STAGE_ANALYZING,  /* images uploaded to the backend, batches running */
    VB_STAGE_UPLOADING,  /* report ready, about to be posted to the platform */
    VB_STAGE_UPLOADED,
} vb_stage;

const char *vb_stage_name(vb_stage s);

typedef struct vb_pipeline_hooks {
    void *ctx;
    /* Stage changed. `batch_ids` is the comma-separated list of backend
     * batches so far ("" before analysis). Return non-VB_OK to stop the run
     * (e.g. lease lost); the run then fails with that error. May be NULL. */
    vb_err (*on_stage)(void *ctx, vb_stage stage, const char *batch_ids, vb_error *err);
    /* Called while long waits go on (every status poll), so a worker can
     * renew its lease; non-VB_OK stops the run. May be NULL. */
    vb_err (*heartbeat)(void *ctx, vb_error *err);
    /* Called just before the upload. Set *skip to 1 when the report must not
     * be uploaded (it already was); the run then counts as uploaded. May be NULL. */
    vb_err (*before_upload)(void *ctx, int *skip, vb_error *err);
    /* Called after the connection to the platform is made and right before
     * each report upload request is sent (vb_http_prereq_fn): the last
     * moment to refuse (e.g. lock lost). Non-VB_OK stops the run with that
     * error, nothing sent. May be NULL. */
    vb_err (*before_send)(void *ctx, vb_error *err);
    /* Not a hook: 1 when the run's document URLs may have expired (they
     * were sealed into a message earlier). A document answered 403 or 404
     * then stops the run before the backend, even under allow_partial, with
     * res->documents_denied set, so the caller can fetch fresh URLs. */
    int urls_may_expire;
} vb_pipeline_hooks;

/* Seconds a run spent in each phase of vb_pipeline_process (0 for a phase
 * it did not reach). */
typedef struct vb_run_phases {
    double download; /* documents to the temp directory */
    double submit;   /* images uploaded to the backend, batches started */
    double wait;     /* status polls until every batch was done */
    double report;   /* batch reports fetched (and combined) */
    double upload;   /* report upload to the platform, hooks included */
} vb_run_phases;

typedef struct vb_run_result {
    size_t images;          /* images sent to the backend */
    size_t images_failed;   /* images that could not be had (allow_partial) */
    size_t descriptions;    /* descriptions applied */
    size_t batches;         /* backend batches */
    char batch_ids[1024];   /* comma-separated, in order */
    long long report_bytes; /* size of the uploaded report */
    int upload_skipped;     /* before_upload vetoed the upload */
    double seconds;         /* wall time */
    int documents_denied;   /* stopped: a document answered 403/404 (urls_may_expire) */
    vb_run_phases phases;   /* where the wall time went */
} vb_run_result;

/* Processes `run`. Returns VB_OK when the report was uploaded (or the upload
 * was skipped by before_upload). `cancel` (may be NULL) stops the run
 * promptly with VB_ERR_CANCELLED. *res is always filled. */
vb_err vb_pipeline_process(vb_http *h, const vb_config *cfg, const vb_run *run,
                           const vb_pipeline_hooks *hooks, const atomic_int *cancel,
                           vb_run_result *res, vb_error *err);

#endif
