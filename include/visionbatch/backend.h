/*
 * backend.h — client of the user's batch-analysis backend (SPEC.md §3).
 *
 * Uploads images (→ image ids), starts a batch analysis (→ batch id), polls
 * its status on an adaptive schedule until it completes, fails, times out or
 * is cancelled, and saves the HTML report to a file. The backend's error
 * answers ({"detail": …}) are quoted, redacted and truncated, in messages
 * that contain "API returned". Uses the caller's vb_http handle; thread-safe
 * as long as each thread passes its own handle.
 */
#ifndef VISIONBATCH_BACKEND_H
#define VISIONBATCH_BACKEND_H

#include <stdatomic.h>
#include <stddef.h>

#include "visionbatch/config.h"
#include "visionbatch/error.h"
#include "visionbatch/http.h"

#define VB_BACKEND_MAX_ID 128 /* bytes of a batch id or an image id */

typedef enum vb_batch_state {
    VB_BATCH_UNKNOWN = 0, /* a status string we do not know */
    VB_BATCH_QUEUED,
    VB_BATCH_PROCESSING,
    VB_BATCH_COMPLETED,
    VB_BATCH_FAILED,
} vb_batch_state;

typedef struct vb_batch_status {
    vb_batch_state state;
    long processed;  /* processed_count, -1 if absent */
    long total;      /* total_images, -1 if absent */
    char detail[256]; /* error/message/detail of the answer, redacted; "" if none */
} vb_batch_status;

/* One entry of descriptions_map: image file name → description. */
typedef struct vb_backend_description {
    const char *image_name;
    const char *text;
} vb_backend_description;

/* A batch-analyze request. All pointers are borrowed. */
typedef struct vb_backend_analyze {
    const char *const *image_ids; /* 1..n ids from vb_backend_upload_image */
    size_t nimages;
    const char *prompt;       /* analysis_prompt (the run's user_query) */
    const char *organization; /* organization (name); NULL → "" */
    /* descriptions_map: NULL → JSON null; otherwise an object with
     * ndescriptions entries (possibly {}). Later duplicates win. */
    const vb_backend_description *descriptions;
    size_t ndescriptions;
} vb_backend_analyze;

/* API-call policy derived from cfg: the platform's, and redirects only within
 * the backend's own origin (scheme, host, port). */
vb_http_policy vb_backend_policy(const vb_config *cfg, const atomic_int *cancel);

/* GET /available_models: VB_OK when the backend answers 2xx with JSON. */
vb_err vb_backend_check(vb_http *h, const vb_config *cfg, const atomic_int *cancel,
                        vb_error *err);

/* POST /upload-image: multipart `image` (the regular file open on `fd`,
 * borrowed, read from offset 0 and streamed, sent as
 * vb_name_sanitise(filename) (documents.h) with the content type detected
 * from its bytes; VB_ERR_CONTENT if it is not an image) and `chat_id`
 * (cfg->chat_id, default "cron_batch_job"). On success *image_id is a
 * malloc'd id (caller frees). */
vb_err vb_backend_upload_image(vb_http *h, const vb_config *cfg, int fd, const char *filename,
                               const atomic_int *cancel, char **image_id,
                               vb_error *err);

/* Builds the batch-analyze JSON body into a malloc'd string (caller frees):
 * {"image_ids", "analysis_prompt", "report_format":"html", "organization",
 * "descriptions_map"}. VB_ERR_INVALID without images or prompt. */
vb_err vb_backend_analyze_body(const vb_backend_analyze *req, char **json, vb_error *err);

/* POST /batch-analyze; on success *batch_id is a malloc'd, validated id. */
vb_err vb_backend_start_batch(vb_http *h, const vb_config *cfg, const vb_backend_analyze *req,
                              const atomic_int *cancel, char **batch_id,
                              vb_error *err);

/* Parses a batch-analyze answer's batch_id (non-empty, ≤ VB_BACKEND_MAX_ID,
 * [A-Za-z0-9._-], not dots only) into a malloc'd string. VB_ERR_PARSE else. */
vb_err vb_backend_parse_batch_id(const char *json, size_t len, char **batch_id, vb_error *err);
int vb_backend_batch_id_valid(const char *id);

/* Parses a status answer. The status string is matched case-insensitively;
 * an unknown one gives VB_BATCH_UNKNOWN (not an error); malformed JSON or a
 * missing status → VB_ERR_PARSE. */
vb_err vb_backend_parse_status(const char *json, size_t len, vb_batch_status *st,
                               vb_error *err);
const char *vb_backend_state_name(vb_batch_state s);

/* GET /batch-analyze/{batch_id}/status. */
vb_err vb_backend_get_status(vb_http *h, const vb_config *cfg, const char *batch_id,
                             const atomic_int *cancel, vb_batch_status *st,
                             vb_error *err);

/* Next poll delay: double `prev_ms`, clamped to [min_ms, max_ms]. prev 0 → min. */
long vb_backend_next_poll_ms(long prev_ms, long min_ms, long max_ms);

/* Polls the status of batch_id (a batch of nimages images) until completed
 * (VB_OK), failed (VB_ERR_BACKEND with the backend's detail),
 * cfg->batch_timeout_s elapsed (VB_ERR_TIMEOUT) or *cancel set
 * (VB_ERR_CANCELLED). The first poll comes once the batch can plausibly be
 * done: after 9/10 of the duration learned from earlier batches of the same
 * size on the same backend (capped at status_poll_max_ms), or after
 * status_poll_min_ms when none finished yet; then every status_poll_min_ms,
 * doubling up to status_poll_max_ms (after a learned first poll, three
 * intervals of status_poll_min_ms come first; docs/configuration.md, "Batch status
 * polling"). Transient status errors (network, 5xx) are logged and polling
 * goes on until the deadline. *last (optional) holds the last status seen.
 * `heartbeat` (may be NULL) is called before every status poll; a non-OK
 * answer stops the wait with that error (a worker that lost its lease).
 * Thread-safe; the learned durations are shared by the process. */
vb_err vb_backend_wait(vb_http *h, const vb_config *cfg, const char *batch_id, size_t nimages,
                       const atomic_int *cancel,
                       vb_err (*heartbeat)(void *ctx, vb_error *err), void *hb_ctx,
                       vb_batch_status *last, vb_error *err);

/* GET /batch-analyze/{batch_id}/report?format=html&include_images=true and
 * streams the body into `fd` (an empty regular file open for writing,
 * borrowed) as it arrives: memory use does not depend on the report's size.
 * At most cfg->max_report_bytes are accepted (VB_ERR_TOO_LARGE beyond); an
 * empty body is VB_ERR_CONTENT. On failure the file is left empty. */
vb_err vb_backend_fetch_report(vb_http *h, const vb_config *cfg, const char *batch_id, int fd,
                               const atomic_int *cancel, vb_error *err);

#endif
