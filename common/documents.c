/*
 * documents.c — safe names, image sniffing, descriptions and the parallel
 * download of one run's inputs (see documents.h).
 *
 * Every string taken from the platform is treated as hostile: a document
 * name becomes a local file name only through vb_name_sanitise(), files are
 * created with O_EXCL | O_NOFOLLOW relative to the descriptor of a fresh
 * run directory (rundir.h: unpredictable name, locked, checked base), and
 * image bytes are checked after download. The downloads themselves are vb_http_download_all()
 * (curl multi, streamed to disk), so memory does not grow with file size.
 */
#include "visionbatch/documents.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "utf8.h"
#include "visionbatch/http.h"
#include "visionbatch/log.h"
#include "visionbatch/redact.h"
#include "visionbatch/rundir.h"

static int name_char_ok(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return strchr("._+()@ -", c) != NULL && c != '\0';
}

void vb_name_sanitise(const char *name, char *out, size_t outlen)
{
    if (outlen == 0)
        return;
    const char *base = name ? name : "";
    for (const char *p = base; *p; p++)
        if (*p == '/' || *p == '\\')
            base = p + 1;

    size_t blen = strlen(base);
    char *tmp = malloc(blen + 1);
    if (!tmp) {
        snprintf(out, outlen, "document");
        return;
    }
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)base; *p; p++)
        tmp[n++] = name_char_ok(*p) ? (char)*p : '_';
    tmp[n] = '\0';
    /* Trim spaces at both ends: they make names that are hard to handle. */
    size_t start = 0;
    while (tmp[start] == ' ')
        start++;
    while (n > start && tmp[n - 1] == ' ')
        tmp[--n] = '\0';
    char *s = tmp + start;
    n -= start;
    if (n == 0) {
        snprintf(out, outlen, "document");
        free(tmp);
        return;
    }
    /* No hidden files and no "." / "..": a leading dot becomes '_'. */
    if (s[0] == '.')
        s[0] = '_';

    size_t max = outlen - 1 < VB_NAME_MAX ? outlen - 1 : VB_NAME_MAX;
    if (n <= max) {
        memcpy(out, s, n + 1);
        free(tmp);
        return;
    }
    /* Too long: keep the extension (up to 16 bytes) and cut the stem. */
    const char *dot = strrchr(s, '.');
    size_t ext = dot && (size_t)(s + n - dot) <= 16 ? (size_t)(s + n - dot) : 0;
    memcpy(out, s, max - ext);
    memcpy(out + max - ext, s + n - ext, ext);
    out[max] = '\0';
    free(tmp);
}

static int name_taken(const char *name, char *const *taken, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (taken[i] && strcasecmp(taken[i], name) == 0)
            return 1;
    return 0;
}

void vb_name_make_unique(char *out, size_t outlen, char *const *taken, size_t n)
{
    if (!name_taken(out, taken, n))
        return;
    char stem[VB_NAME_MAX + 1], ext[VB_NAME_MAX + 1] = "";
    snprintf(stem, sizeof stem, "%s", out);
    char *dot = strrchr(stem, '.');
    if (dot && dot != stem) {
        snprintf(ext, sizeof ext, "%s", dot);
        *dot = '\0';
    }
    for (unsigned i = 2; i < 100000; i++) {
        char suffix[16];
        int sl = snprintf(suffix, sizeof suffix, "-%u", i);
        size_t room = outlen - 1 - strlen(ext) - (size_t)sl;
        size_t sl_stem = strlen(stem);
        if (sl_stem > room)
            sl_stem = room;
        snprintf(out, outlen, "%.*s%s%s", (int)sl_stem, stem, suffix, ext);
        if (!name_taken(out, taken, n))
            return;
    }
}

const char *vb_image_sniff(const unsigned char *b, size_t len)
{
    if (len >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF)
        return "image/jpeg";
    if (len >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0)
        return "image/png";
    if (len >= 6 && (memcmp(b, "GIF87a", 6) == 0 || memcmp(b, "GIF89a", 6) == 0))
        return "image/gif";
    if (len >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0)
        return "image/webp";
    if (len >= 2 && b[0] == 'B' && b[1] == 'M')
        return "image/bmp";
    if (len >= 4 && (memcmp(b, "II*\0", 4) == 0 || memcmp(b, "MM\0*", 4) == 0))
        return "image/tiff";
    return NULL;
}

const char *vb_image_sniff_file(const char *path)
{
    return vb_image_sniff_at(AT_FDCWD, path);
}

const char *vb_image_sniff_at(int dirfd, const char *path)
{
    unsigned char head[16];
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return NULL;
    ssize_t n = read(fd, head, sizeof head);
    close(fd);
    return n > 0 ? vb_image_sniff(head, (size_t)n) : NULL;
}

static vb_err read_file_capped(int dirfd, const char *path, long long max_bytes, vb_buf *out,
                               vb_error *err)
{
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return vb_error_set(err, VB_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    out->limit = (size_t)max_bytes;
    char chunk[8192];
    vb_err rc = VB_OK;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = vb_error_set(err, VB_ERR_IO, "read %s: %s", path, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        if ((rc = vb_buf_append(out, chunk, (size_t)n)) != VB_OK) {
            vb_error_set(err, rc, "%s is larger than %lld bytes", path, max_bytes);
            break;
        }
    }
    close(fd);
    return rc;
}

vb_err vb_descriptions_load(const char *path, long long max_bytes,
                            void (*add)(void *ctx, const char *name, const char *desc),
                            void *ctx, size_t *count, vb_error *err)
{
    return vb_descriptions_load_at(AT_FDCWD, path, max_bytes, add, ctx, count, err);
}

vb_err vb_descriptions_load_at(int dirfd, const char *path, long long max_bytes,
                               void (*add)(void *ctx, const char *name, const char *desc),
                               void *ctx, size_t *count, vb_error *err)
{
    vb_buf b = {0};
    cJSON *root = NULL;
    size_t n = 0;
    vb_err rc = read_file_capped(dirfd, path, max_bytes, &b, err);
    if (rc != VB_OK)
        goto done;
    root = cJSON_ParseWithLength(b.data ? b.data : "", b.len);
    if (!root || !cJSON_IsObject(root)) {
        rc = vb_error_set(err, VB_ERR_PARSE,
                          "descriptions file is not a JSON object of name → description");
        goto done;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, root)
    {
        if (!cJSON_IsString(item) || !item->string) {
            VB_WARN("descriptions: entry \"%.64s\" is not a string; ignored",
                    item->string ? item->string : "");
            continue;
        }
        char name[VB_NAME_MAX + 1];
        vb_name_sanitise(item->string, name, sizeof name);
        size_t bad = 0;
        char *text = vb__utf8_repair(item->valuestring, strlen(item->valuestring), &bad);
        if (!text) {
            rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory reading descriptions");
            goto done;
        }
        if (bad)
            VB_WARN("descriptions: the description of %s is not valid UTF-8: %zu byte(s) "
                    "replaced by U+FFFD", name, bad);
        add(ctx, name, text);
        free(text);
        n++;
    }
done:
    if (count)
        *count = n;
    cJSON_Delete(root);
    vb_buf_free(&b);
    return rc;
}

/* ---- directories ---- */

int vb_rmtree(const char *path)
{
    if (!path || !*path)
        return 0;
    return vb_rundir_rmtree_at(AT_FDCWD, path);
}

/* ---- fetching a run's inputs ---- */

typedef struct fetch_item {
    const vb_document *doc;
    char name[VB_NAME_MAX + 1];
} fetch_item;

static void add_description(void *ctx, const char *name, const char *desc)
{
    vb_run_inputs *in = ctx;
    for (size_t i = 0; i < in->nimages; i++) {
        if (strcmp(in->images[i].name, name) == 0) {
            char *copy = strdup(desc);
            if (copy) {
                free(in->images[i].description);
                in->images[i].description = copy;
            }
            return;
        }
    }
}

vb_err vb_run_inputs_fetch(vb_http *h, const vb_config *cfg, const vb_run *run,
                           const atomic_int *cancel, vb_run_inputs *in,
                           vb_error *err)
{
    return vb_run_inputs_fetch_ex(h, cfg, run, 0, cancel, in, err);
}

vb_err vb_run_inputs_fetch_ex(vb_http *h, const vb_config *cfg, const vb_run *run, unsigned flags,
                              const atomic_int *cancel, vb_run_inputs *in, vb_error *err)
{
    memset(in, 0, sizeof *in);
    fetch_item *items = NULL;
    vb_download *dl = NULL;
    char **taken = NULL;
    size_t nitems = 0, nimg_wanted = 0;
    vb_err rc = VB_OK;

    items = calloc(run->ndocs ? run->ndocs : 1, sizeof *items);
    dl = calloc(run->ndocs ? run->ndocs : 1, sizeof *dl);
    taken = calloc(run->ndocs ? run->ndocs : 1, sizeof *taken);
    if (!items || !dl || !taken) {
        rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < run->ndocs; i++) {
        const vb_document *d = &run->docs[i];
        if (!d->is_input || (d->type != VB_DOC_IMAGE && d->type != VB_DOC_JSON))
            continue;
        fetch_item *it = &items[nitems];
        it->doc = d;
        vb_name_sanitise(d->name, it->name, sizeof it->name);
        vb_name_make_unique(it->name, sizeof it->name, taken, nitems);
        taken[nitems] = it->name;
        nitems++;
        if (d->type == VB_DOC_IMAGE)
            nimg_wanted++;
    }
    if (nimg_wanted == 0) {
        rc = vb_error_set(err, VB_ERR_INVALID, "run has no input images");
        goto fail;
    }
    if ((rc = vb_rundir_create(cfg->temp_dir, run->id, &in->dir, err)) != VB_OK)
        goto fail;

    for (size_t i = 0; i < nitems; i++) {
        dl[i].url = items[i].doc->path;
        dl[i].dest_path = items[i].name; /* relative to the run directory */
        dl[i].dir_fd = in->dir->fd;
    }

    vb_http_policy pol = {
        .connect_timeout_ms = cfg->connect_timeout_s * 1000,
        .timeout_ms = cfg->download_timeout_s * 1000,
        .max_bytes = cfg->max_document_bytes,
        .retries = (int)cfg->retries,
        .retry_base_ms = cfg->retry_base_ms,
        .retry_max_ms = cfg->retry_max_ms,
        .retry_on_5xx = 1,
        .cancel = cancel,
    };
    vb_error dl_err;
    vb_error_clear(&dl_err);
    VB_INFO("downloading %zu documents (%zu images), %ld at a time", nitems, nimg_wanted,
            cfg->download_concurrency);
    vb_http_download_all(h, dl, nitems, (int)cfg->download_concurrency, &pol, &dl_err);
    if (dl_err.code == VB_ERR_CANCELLED) {
        rc = vb_error_set(err, VB_ERR_CANCELLED, "downloads cancelled");
        goto fail;
    }

    in->images = calloc(nimg_wanted, sizeof *in->images);
    if (!in->images) {
        rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        goto fail;
    }
    size_t failed = 0;
    long denied = 0; /* 403 or 404 of a document: its URL may have expired */
    vb_buf reasons = {.limit = 400};
    for (size_t i = 0; i < nitems; i++) {
        const char *why = NULL;
        char whybuf[300];
        if (dl[i].result != VB_OK) {
            if (dl[i].http_status == 403 || dl[i].http_status == 404)
                denied = dl[i].http_status;
            snprintf(whybuf, sizeof whybuf, "%s", dl[i].error[0] ? dl[i].error
                                                                 : vb_strerror(dl[i].result));
            vb_redact_text(whybuf);
            why = whybuf;
        } else if (items[i].doc->type == VB_DOC_IMAGE) {
            const char *mime = vb_image_sniff_at(in->dir->fd, items[i].name);
            if (!mime) {
                why = "not an image (unknown magic bytes)";
                unlinkat(in->dir->fd, items[i].name, 0);
            } else {
                vb_image *img = &in->images[in->nimages++];
                img->name = strdup(items[i].name);
                img->mime = mime;
                img->bytes = dl[i].bytes;
                if (!img->name) {
                    vb_buf_free(&reasons);
                    rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
                    goto fail;
                }
            }
        }
        if (why) {
            failed++;
            VB_WARN("document %s could not be had: %s", items[i].name, why);
            if (reasons.len == 0 || reasons.len < 300)
                vb_buf_printf(&reasons, "%s%s: %s", reasons.len ? "; " : "", items[i].name,
                              why);
        }
    }
    /* Descriptions apply to the images that made it; several files merge. */
    for (size_t i = 0; i < nitems; i++) {
        if (items[i].doc->type != VB_DOC_JSON || dl[i].result != VB_OK)
            continue;
        size_t count = 0;
        vb_error derr;
        vb_error_clear(&derr);
        if (vb_descriptions_load_at(in->dir->fd, items[i].name, cfg->max_response_bytes,
                                    add_description, in, &count, &derr) != VB_OK) {
            failed++;
            VB_WARN("descriptions %s unusable: %s", items[i].name, derr.msg);
            vb_buf_printf(&reasons, "%s%s: %s", reasons.len ? "; " : "", items[i].name,
                          derr.msg);
        }
        in->descriptions += count;
    }
    in->failed = failed;
    if (failed && (!cfg->allow_partial || in->nimages == 0 ||
                   (denied && (flags & VB_INPUTS_DENIED_FAILS)))) {
        rc = vb_error_set(err, dl_err.code != VB_OK ? dl_err.code : VB_ERR_CONTENT,
                          "%zu of %zu documents could not be had (%s)", failed, nitems,
                          reasons.data ? reasons.data : "");
        if (err)
            err->http_status = denied ? denied : dl_err.http_status;
        vb_buf_free(&reasons);
        goto fail;
    }
    vb_buf_free(&reasons);
    if (failed)
        VB_WARN("continuing with %zu of %zu images (allow_partial)", in->nimages, nimg_wanted);
    free(items);
    free(dl);
    free(taken);
    return VB_OK;

fail:
    free(items);
    free(dl);
    free(taken);
    vb_run_inputs_free(in);
    return rc;
}

void vb_run_inputs_free(vb_run_inputs *in)
{
    if (!in)
        return;
    vb_rundir_remove(in->dir); /* warns when something stays behind */
    for (size_t i = 0; i < in->nimages; i++) {
        free(in->images[i].name);
        free(in->images[i].description);
    }
    free(in->images);
    memset(in, 0, sizeof *in);
}
