/*
 * documents.h — turning a run's documents into safe local files.
 *
 * A run lists its inputs as URLs with names chosen by whoever filled the
 * platform. Before anything touches the disk those names are sanitised (no
 * directories, no "..", no control characters, bounded length, unique within
 * the run); images are checked by their magic bytes, whatever Content-Type
 * the server claimed; the descriptions file (a JSON object mapping file name
 * → description) is parsed with a size cap. All downloads of one run happen
 * at once (bounded), streamed to a private 0700 directory.
 *
 * Ownership: vb_run_inputs owns every string and must be freed with
 * vb_run_inputs_free(). Thread-safe: no shared state.
 */
#ifndef VISIONBATCH_DOCUMENTS_H
#define VISIONBATCH_DOCUMENTS_H

#include <stdatomic.h>
#include <stddef.h>

#include "visionbatch/config.h"
#include "visionbatch/error.h"
#include "visionbatch/http.h"
#include "visionbatch/run.h"
#include "visionbatch/rundir.h"

#define VB_NAME_MAX 128

/* One image ready for the backend. */
typedef struct vb_image {
    char *name;         /* sanitised file name (also the descriptions key), a file of
                           the run directory: open it with vb_rundir_open() */
    const char *mime;   /* static string, from the magic bytes */
    char *description;  /* from the descriptions file, or NULL */
    long long bytes;
} vb_image;

typedef struct vb_run_inputs {
    vb_image *images;
    size_t nimages;
    size_t failed;       /* images that could not be had (allow_partial only) */
    size_t descriptions; /* entries read from description files */
    vb_rundir *dir;      /* the run's private directory (rundir.h) */
} vb_run_inputs;

/* Writes a safe file name for `name` into out (outlen ≥ VB_NAME_MAX + 1):
 * the last path component; bytes outside [A-Za-z0-9._+()@ -] become '_';
 * a leading '.' becomes '_'; empty → "document"; at most VB_NAME_MAX bytes,
 * keeping the extension. Pure function. */
void vb_name_sanitise(const char *name, char *out, size_t outlen);

/* Makes out unique against the first n names in `taken` by inserting "-2",
 * "-3", … before the extension. */
void vb_name_make_unique(char *out, size_t outlen, char *const *taken, size_t n);

/* MIME type for the image magic bytes at the start of buf ("image/jpeg",
 * "image/png", "image/gif", "image/webp", "image/bmp", "image/tiff"), or NULL
 * when they are not an image. */
const char *vb_image_sniff(const unsigned char *buf, size_t len);
/* The same for the first bytes of a file; NULL when unreadable or not an image. */
const char *vb_image_sniff_file(const char *path);
/* The same for `path` relative to the directory dirfd (openat, O_NOFOLLOW). */
const char *vb_image_sniff_at(int dirfd, const char *path);

/* Parses a descriptions document (a JSON object of name → string) from a
 * file of at most max_bytes. Calls add(ctx, sanitised_name, description) for
 * each string entry, the description with bytes that are not valid UTF-8
 * replaced by U+FFFD (with a warning); other entries are skipped with a
 * warning. */
vb_err vb_descriptions_load(const char *path, long long max_bytes,
                            void (*add)(void *ctx, const char *name, const char *desc),
                            void *ctx, size_t *count, vb_error *err);
/* The same for `path` relative to the directory dirfd (openat, O_NOFOLLOW). */
vb_err vb_descriptions_load_at(int dirfd, const char *path, long long max_bytes,
                               void (*add)(void *ctx, const char *name, const char *desc),
                               void *ctx, size_t *count, vb_error *err);

/* Creates a private run directory under cfg->temp_dir (vb_rundir_create:
 * checked base, unpredictable name, lock held) and downloads every input
 * image and descriptions document of `run` into it, each file opened
 * relative to the directory's descriptor with O_NOFOLLOW. Fails (VB_ERR_*) when any image or
 * descriptions file cannot be had, unless cfg->allow_partial, in which case
 * the failures are counted and logged and at least one image must remain.
 * On failure the directory is removed and *in is empty. The downloads go
 * through h (vb_http_download_all: connections kept for the next run; NULL =
 * none kept). */
vb_err vb_run_inputs_fetch(vb_http *h, const vb_config *cfg, const vb_run *run,
                           const atomic_int *cancel, vb_run_inputs *in,
                           vb_error *err);

/* vb_run_inputs_fetch's flags: a document the server refused with 403 or 404
 * fails the fetch even under allow_partial (the URLs may have expired: the
 * caller fetches fresh ones and tries again). */
#define VB_INPUTS_DENIED_FAILS 1u

/* vb_run_inputs_fetch with flags (VB_INPUTS_*). On failure err->http_status
 * is 403 or 404 when a document was refused so, else the first failed
 * download's status (0 when none answered). */
vb_err vb_run_inputs_fetch_ex(vb_http *h, const vb_config *cfg, const vb_run *run, unsigned flags,
                              const atomic_int *cancel, vb_run_inputs *in, vb_error *err);

/* Removes the run's directory and everything in it (releasing its lock),
 * then frees *in. */
void vb_run_inputs_free(vb_run_inputs *in);

/* Removes a directory tree (no symlink following). Returns 0 on success. */
int vb_rmtree(const char *path);

#endif
