/*
 * report.h — one HTML report per run, from the backend's per-batch reports.
 *
 * The backend analyses at most max_images_per_batch images per batch, so a
 * large run becomes several batches, each with its own HTML report (a
 * "part"). The platform expects one report per run:
 *  - one part: the backend's report is used byte for byte;
 *  - several parts: one complete HTML page with a header describing the run
 *    (run id, run code, organization name, user query, created date, all
 *    HTML-escaped) followed by every part in order, each under a heading
 *    "Part i of n — batch <id>, images a.jpg, b.jpg".
 * A part's HTML is the trusted output of the user's own backend, but it is
 * usually a complete document, and documents cannot be nested. So only the
 * inner content of its <body> (found case-insensitively; the last </body>
 * ends it) is embedded, preceded by the <style> blocks of its <head> so its
 * look survives; a part without <body> is embedded as is. Everything is
 * streamed from the part files to the output file: memory use does not grow
 * with the size of the reports. Stateless and thread-safe.
 */
#ifndef VISIONBATCH_REPORT_H
#define VISIONBATCH_REPORT_H

#include <stddef.h>

#include "visionbatch/error.h"
#include "visionbatch/run.h"

/* One backend report. All pointers are borrowed. */
typedef struct vb_report_part {
    const char *batch_id;
    const char *html_path;          /* the backend's HTML report on disk */
    const char *const *image_names; /* document names of the batch's images */
    size_t nimages;
} vb_report_part;

/* Writes the run's report to out_path (created or truncated, mode 0600) from
 * the n >= 1 parts, in the given order (see above). VB_ERR_INVALID for n == 0
 * or an out_path that is also a part; VB_ERR_IO when a file cannot be read or
 * written. On failure out_path does not exist. */
vb_err vb_report_combine(const vb_run *run, const vb_report_part *parts, size_t n,
                         const char *out_path, vb_error *err);
/* The same with out_path and every part's html_path relative to the
 * directory dirfd (openat, O_NOFOLLOW: a symbolic link is never followed). */
vb_err vb_report_combine_at(const vb_run *run, const vb_report_part *parts, size_t n, int dirfd,
                            const char *out_path, vb_error *err);

#endif
