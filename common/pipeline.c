/*
 * pipeline.c — one run end to end (see pipeline.h).
 *
 * Steps: fetch inputs (documents.c) → upload each image to the backend →
 * one batch-analyze per group of at most max_images_per_batch images →
 * wait for every batch → fetch each batch's HTML report → one report for the
 * run (report.c combines several batches) → before_upload hook → upload to
 * the platform. Every step checks the cancel flag; the run's temp directory
 * is removed on every path out. Files are only ever opened relative to the
 * run directory's descriptor (rundir.h) and handed on as descriptors, and
 * the reports are streamed file to file, so memory does not grow with the
 * size of images or reports. A run of one batch uploads the backend's
 * report file itself (it is the run's report byte for byte).
 */
#include "visionbatch/pipeline.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"
#include "visionbatch/backend.h"
#include "visionbatch/documents.h"
#include "visionbatch/log.h"
#include "visionbatch/platform.h"
#include "visionbatch/report.h"

const char *vb_stage_name(vb_stage s)
{
    switch (s) {
    case VB_STAGE_DOWNLOADING: return "downloading";
    case VB_STAGE_ANALYZING: return "analyzing";
    case VB_STAGE_UPLOADING: return "uploading";
    case VB_STAGE_UPLOADED: return "uploaded";
    }
    return "unknown";
}

static vb_err stage(const vb_pipeline_hooks *hooks, vb_stage s, const char *batch_ids,
                    vb_error *err)
{
    VB_INFO("stage %s%s%s", vb_stage_name(s), batch_ids && *batch_ids ? " batches=" : "",
            batch_ids ? batch_ids : "");
    if (hooks && hooks->on_stage)
        return hooks->on_stage(hooks->ctx, s, batch_ids ? batch_ids : "", err);
    return VB_OK;
}

static vb_err cancelled(const atomic_int *cancel, vb_error *err)
{
    if (cancel && *cancel)
        return vb_error_set(err, VB_ERR_CANCELLED, "run cancelled");
    return VB_OK;
}

/* Trampoline so the backend's waiting loop can renew the caller's lease. */
static vb_err heartbeat(void *ctx, vb_error *err)
{
    const vb_pipeline_hooks *hooks = ctx;
    return hooks && hooks->heartbeat ? hooks->heartbeat(hooks->ctx, err) : VB_OK;
}

/* Seconds since *mark; *mark becomes now. */
static double lap(long long *mark)
{
    long long now = vb__mono_ms();
    double s = (double)(now - *mark) / 1000.0;
    *mark = now;
    return s;
}

static void append_batch_id(vb_run_result *res, const char *id)
{
    size_t len = strlen(res->batch_ids);
    snprintf(res->batch_ids + len, sizeof res->batch_ids - len, "%s%s", len ? "," : "", id);
}

vb_err vb_pipeline_process(vb_http *h, const vb_config *cfg, const vb_run *run,
                           const vb_pipeline_hooks *hooks, const atomic_int *cancel,
                           vb_run_result *res, vb_error *err)
{
    long long t0 = vb__mono_ms();
    memset(res, 0, sizeof *res);
    vb_run_inputs in;
    memset(&in, 0, sizeof in);
    char **image_ids = NULL;
    vb_report_part *parts = NULL;
    char **batch_ids = NULL, **part_paths = NULL;
    const char **names = NULL;
    vb_backend_description *descs = NULL;
    size_t nparts = 0;
    /* Our own files start with '.', which no sanitised document name does. */
    const char *report_name = ".report.html";
    int report_fd = -1;
    vb_err rc;

    if ((rc = stage(hooks, VB_STAGE_DOWNLOADING, "", err)) != VB_OK)
        goto done;
    unsigned fetch_flags = hooks && hooks->urls_may_expire ? VB_INPUTS_DENIED_FAILS : 0;
    long long mark = vb__mono_ms();
    if ((rc = vb_run_inputs_fetch_ex(h, cfg, run, fetch_flags, cancel, &in, err)) != VB_OK) {
        res->documents_denied = fetch_flags && err && (err->http_status == 403 ||
                                                       err->http_status == 404);
        goto done;
    }
    res->phases.download = lap(&mark);
    res->images = in.nimages;
    res->images_failed = in.failed;
    res->descriptions = in.descriptions;
    VB_INFO("downloaded %zu images (%zu descriptions)", in.nimages, in.descriptions);

    /* Upload every image; the backend returns an id for each. */
    image_ids = calloc(in.nimages, sizeof *image_ids);
    if (!image_ids) {
        rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < in.nimages; i++) {
        if ((rc = cancelled(cancel, err)) != VB_OK)
            goto done;
        const vb_image *img = &in.images[i];
        int fd = vb_rundir_open(in.dir, img->name, O_RDONLY);
        if (fd < 0) {
            rc = vb_error_set(err, VB_ERR_IO, "cannot open image %s: %s", img->name,
                              strerror(errno));
            goto done;
        }
        rc = vb_backend_upload_image(h, cfg, fd, img->name, cancel, &image_ids[i], err);
        close(fd);
        if (rc != VB_OK) {
            vb_error_set(err, rc, "uploading image %s to the backend", img->name);
            goto done;
        }
    }

    /* One batch per max_images_per_batch images, in document order; each
     * batch gets the descriptions of its own images. */
    size_t per = cfg->max_images_per_batch > 0 ? (size_t)cfg->max_images_per_batch : 20;
    size_t nbatches = (in.nimages + per - 1) / per;
    parts = calloc(nbatches, sizeof *parts);
    batch_ids = calloc(nbatches, sizeof *batch_ids);
    part_paths = calloc(nbatches, sizeof *part_paths);
    names = calloc(in.nimages, sizeof *names);
    descs = calloc(in.nimages, sizeof *descs);
    if (!parts || !batch_ids || !part_paths || !names || !descs) {
        rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        goto done;
    }
    nparts = nbatches; /* zeroed entries are safe to free on any path out */
    for (size_t i = 0; i < in.nimages; i++) {
        names[i] = in.images[i].name;
        descs[i].image_name = in.images[i].name;
        descs[i].text = in.images[i].description ? in.images[i].description : NULL;
    }
    for (size_t b = 0; b < nbatches; b++) {
        size_t first = b * per, count = in.nimages - first < per ? in.nimages - first : per;
        if ((rc = cancelled(cancel, err)) != VB_OK)
            goto done;
        vb_report_part *part = &parts[b];
        part->image_names = (const char *const *)&names[first];
        part->nimages = count;
        vb_backend_analyze req = {
            .image_ids = (const char *const *)&image_ids[first],
            .nimages = count,
            .prompt = run->user_query,
            .organization = run->organization_name,
            .descriptions = in.descriptions ? &descs[first] : NULL,
            .ndescriptions = count,
        };
        if ((rc = vb_backend_start_batch(h, cfg, &req, cancel, &batch_ids[b], err)) != VB_OK) {
            vb_error_set(err, rc, "starting batch %zu of %zu", b + 1, nbatches);
            goto done;
        }
        part->batch_id = batch_ids[b];
        append_batch_id(res, part->batch_id);
        res->batches++;
    }
    res->phases.submit = lap(&mark);
    if ((rc = stage(hooks, VB_STAGE_ANALYZING, res->batch_ids, err)) != VB_OK)
        goto done;
    mark = vb__mono_ms();

    /* Wait for each batch, then fetch its report to disk. */
    for (size_t b = 0; b < nparts; b++) {
        vb_report_part *part = &parts[b];
        if ((rc = vb_backend_wait(h, cfg, part->batch_id, part->nimages, cancel, heartbeat, (void *)hooks, NULL,
                                  err)) != VB_OK) {
            vb_error_set(err, rc, "batch %s", part->batch_id);
            goto done;
        }
        res->phases.wait += lap(&mark);
        char p[64];
        snprintf(p, sizeof p, ".part-%zu.html", b + 1);
        if (!(part_paths[b] = strdup(p))) {
            rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
            goto done;
        }
        part->html_path = part_paths[b]; /* relative to the run directory */
        int fd = vb_rundir_open(in.dir, p, O_WRONLY | O_CREAT | O_EXCL);
        if (fd < 0) {
            rc = vb_error_set(err, VB_ERR_IO, "cannot create %s: %s", p, strerror(errno));
            goto done;
        }
        rc = vb_backend_fetch_report(h, cfg, part->batch_id, fd, cancel, err);
        if (close(fd) != 0 && rc == VB_OK)
            rc = vb_error_set(err, VB_ERR_IO, "cannot write %s: %s", p, strerror(errno));
        if (rc != VB_OK) {
            vb_error_set(err, rc, "fetching the report of batch %s", part->batch_id);
            goto done;
        }
        res->phases.report += lap(&mark);
    }

    /* One run, one report: a single batch's report is the run's as it is. */
    if (nparts == 1)
        report_name = parts[0].html_path;
    else if ((rc = vb_report_combine_at(run, parts, nparts, in.dir->fd, report_name, err)) !=
             VB_OK)
        goto done;
    res->phases.report += lap(&mark);
    if ((report_fd = vb_rundir_open(in.dir, report_name, O_RDONLY)) < 0) {
        rc = vb_error_set(err, VB_ERR_IO, "cannot open the report: %s", strerror(errno));
        goto done;
    }
    struct stat st;
    res->report_bytes = fstat(report_fd, &st) == 0 ? (long long)st.st_size : -1;
    if ((rc = stage(hooks, VB_STAGE_UPLOADING, res->batch_ids, err)) != VB_OK)
        goto done;
    mark = vb__mono_ms();
    if ((rc = cancelled(cancel, err)) != VB_OK)
        goto done;
    int skip = 0;
    if (hooks && hooks->before_upload &&
        (rc = hooks->before_upload(hooks->ctx, &skip, err)) != VB_OK)
        goto done;
    if (skip) {
        res->upload_skipped = 1;
        VB_INFO("report upload skipped: the platform already has this run's report");
    } else if ((rc = vb_platform_upload_report(h, cfg, run, parts[0].batch_id, report_fd,
                                               cancel, hooks ? hooks->before_send : NULL,
                                               hooks ? hooks->ctx : NULL, err)) != VB_OK) {
        goto done;
    }
    res->phases.upload = lap(&mark);
    rc = stage(hooks, VB_STAGE_UPLOADED, res->batch_ids, err);

done:
    if (report_fd >= 0)
        close(report_fd);
    if (image_ids)
        for (size_t i = 0; i < in.nimages; i++)
            free(image_ids[i]);
    free(image_ids);
    for (size_t b = 0; b < nparts; b++) {
        free(batch_ids[b]);
        free(part_paths[b]);
    }
    free(batch_ids);
    free(part_paths);
    free(names);
    free(descs);
    free(parts);
    vb_run_inputs_free(&in); /* removes the run's temp directory */
    res->seconds = (double)(vb__mono_ms() - t0) / 1000.0;
    return rc;
}
