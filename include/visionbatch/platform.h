/*
 * platform.h — client of the user's External Vision Analysis API (SPEC.md §2).
 *
 * Fetches every unprocessed run (paging until an empty page, the reported
 * total, a page identical to the previous one, or max_pages), uploads the HTML
 * report of a run, and asks whether a run is still unprocessed. Non-success
 * answers are logged with the phrase "API returned", the status and a
 * redacted excerpt of the body. Uses the caller's vb_http handle; thread-safe
 * as long as each thread passes its own handle.
 */
#ifndef VISIONBATCH_PLATFORM_H
#define VISIONBATCH_PLATFORM_H

#include "visionbatch/config.h"
#include "visionbatch/http.h"
#include "visionbatch/run.h"

typedef struct vb_fetch_stats {
    size_t pages;          /* GET requests answered */
    size_t found;          /* runs returned, all organizations, deduplicated */
    size_t other_org;      /* skipped: organization_id differs */
    size_t invalid;        /* skipped: failed validation */
    size_t already_processed; /* skipped: is_processed true */
    long reported_total;   /* data.total of the first page, -1 if absent */
} vb_fetch_stats;

/* Fetches all unprocessed runs of cfg->organization_id into *out (zeroed
 * first; free with vb_run_list_free). Runs are deduplicated by id. */
vb_err vb_platform_fetch_unprocessed(vb_http *h, const vb_config *cfg,
                                     const volatile sig_atomic_t *cancel, vb_run_list *out,
                                     vb_fetch_stats *stats, vb_error *err);

/* POSTs the report, the regular file open on `html_fd` (borrowed; read
 * from offset 0 and streamed from the descriptor, never reopened by path),
 * as multipart `file` (report_{batch_id}.html, text/html) with
 * organization_id and vision_analysis_id. Only 2xx counts; retries 5xx and
 * timeouts. `gate` (may be NULL) is called with `gate_ctx` after the
 * connection is made and right before each attempt is sent
 * (vb_http_prereq_fn); its refusal stops the upload with its error, nothing
 * of that attempt sent. */
vb_err vb_platform_upload_report(vb_http *h, const vb_config *cfg, const vb_run *run,
                                 const char *batch_id, int html_fd,
                                 const volatile sig_atomic_t *cancel, vb_http_prereq_fn gate,
                                 void *gate_ctx, vb_error *err);

/* Sets *unprocessed to 1 when run_id is still listed as unprocessed, 0 when
 * not listed (the platform has it as processed). Used after an ambiguous
 * upload failure, before uploading again. The platform pages by offset, so
 * runs finished by others while we page can hide a run from one scan:
 * absence counts only after three consecutive scans (0.3 s, 0.6 s apart). */
vb_err vb_platform_run_is_unprocessed(vb_http *h, const vb_config *cfg, const char *run_id,
                                      const volatile sig_atomic_t *cancel, int *unprocessed,
                                      vb_error *err);

/* Pages through the unprocessed runs of cfg->organization_id until run_id
 * is found (stopping there). *found = 1 and *out (zeroed first; free with
 * vb_run_free) holds the run as listed now — with fresh document URLs —
 * when it is still unprocessed; *found = 0 and *out empty when it is not
 * listed in three consecutive scans (the platform has it as processed, or
 * never had it; see vb_platform_run_is_unprocessed). Thread-safe with a
 * per-thread handle. */
vb_err vb_platform_find_run(vb_http *h, const vb_config *cfg, const char *run_id,
                            const volatile sig_atomic_t *cancel, vb_run *out, int *found,
                            vb_error *err);

/* The vb_http_policy for API calls derived from cfg (timeouts, retries). */
vb_http_policy vb_platform_policy(const vb_config *cfg, const volatile sig_atomic_t *cancel);

#endif
