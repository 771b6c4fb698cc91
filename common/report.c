/*
 * report.c — builds one HTML report per run from per-batch backend reports
 * (report.h explains the format and the choice to embed <body> contents).
 *
 * Each part file is scanned once, byte by byte, by a small state machine that
 * notes where the first <body ...> tag ends, where the last </body> starts
 * and where the <style> blocks before the body lie; then those byte ranges
 * are copied to the output. Only offsets are kept, so memory stays flat
 * whatever the report size. Files are opened relative to the caller's
 * directory descriptor with O_NOFOLLOW. Stateless and thread-safe.
 */
#include "visionbatch/report.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "visionbatch/buf.h"

#define MAX_STYLES 32

typedef struct range {
    off_t start, end; /* [start, end) */
} range;

/* Where the interesting pieces of one part file are. */
typedef struct layout {
    off_t content_start; /* just after the first <body ...>, -1 if none */
    off_t content_end;   /* the last </body>, or the end of the file */
    range styles[MAX_STYLES];
    size_t nstyles;
} layout;

static int is_delim(int c)
{
    return c == '>' || c == '/' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

/* True when the last hlen chars of hist (lower-cased) end with pat. */
static int ends_with(const char *hist, size_t hlen, const char *pat)
{
    size_t n = strlen(pat);
    return hlen >= n && memcmp(hist + hlen - n, pat, n) == 0;
}

static vb_err scan_part(FILE *f, layout *lay)
{
    enum { NORMAL, BODY_TAG, STYLE_OPEN_TAG, STYLE, STYLE_CLOSE_TAG } mode = NORMAL;
    char hist[8]; /* the last bytes seen, lower-cased */
    size_t hlen = 0;
    int quote = 0;
    off_t pos = 0, style_start = 0;
    int c;

    memset(lay, 0, sizeof *lay);
    lay->content_start = -1;
    while ((c = getc_unlocked(f)) != EOF) {
        switch (mode) {
        case NORMAL:
            if (is_delim(c) && lay->content_start < 0 && ends_with(hist, hlen, "<body")) {
                if (c == '>')
                    lay->content_start = pos + 1;
                else {
                    mode = BODY_TAG;
                    quote = 0;
                }
            } else if (is_delim(c) && lay->content_start >= 0 &&
                       ends_with(hist, hlen, "</body")) {
                lay->content_end = pos - 6;
            } else if (is_delim(c) && lay->content_start < 0 && ends_with(hist, hlen, "<style")) {
                style_start = pos - 6;
                mode = c == '>' ? STYLE : STYLE_OPEN_TAG;
                quote = 0;
            }
            break;
        case BODY_TAG:
        case STYLE_OPEN_TAG:
            /* Attribute values may contain '>' inside quotes. */
            if (quote) {
                if (c == quote)
                    quote = 0;
            } else if (c == '"' || c == '\'') {
                quote = c;
            } else if (c == '>') {
                if (mode == BODY_TAG)
                    lay->content_start = pos + 1;
                mode = mode == BODY_TAG ? NORMAL : STYLE;
            }
            break;
        case STYLE:
            if (is_delim(c) && ends_with(hist, hlen, "</style"))
                mode = c == '>' ? NORMAL : STYLE_CLOSE_TAG;
            if (mode == NORMAL && lay->nstyles < MAX_STYLES)
                lay->styles[lay->nstyles++] = (range){style_start, pos + 1};
            break;
        case STYLE_CLOSE_TAG:
            if (c == '>') {
                mode = NORMAL;
                if (lay->nstyles < MAX_STYLES)
                    lay->styles[lay->nstyles++] = (range){style_start, pos + 1};
            }
            break;
        }
        if (hlen == sizeof hist) {
            memmove(hist, hist + 1, sizeof hist - 1);
            hlen--;
        }
        hist[hlen++] = (char)tolower(c);
        pos++;
    }
    if (ferror(f))
        return VB_ERR_IO;
    /* No closing </body> after the opening one: the content runs to the end. */
    if (lay->content_start >= 0 && lay->content_end < lay->content_start)
        lay->content_end = pos;
    if (lay->content_start < 0)
        lay->nstyles = 0; /* no body: the part is copied whole, styles included */
    return VB_OK;
}

/* Copies [start, end) of in to out (end < 0: to the end of the file). */
static vb_err copy_range(FILE *in, off_t start, off_t end, FILE *out)
{
    char buf[65536];
    if (fseeko(in, start, SEEK_SET) != 0)
        return VB_ERR_IO;
    off_t left = end < 0 ? -1 : end - start;
    while (left != 0) {
        size_t want = sizeof buf;
        if (left > 0 && (off_t)want > left)
            want = (size_t)left;
        size_t got = fread(buf, 1, want, in);
        if (got == 0)
            return ferror(in) ? VB_ERR_IO : (left < 0 ? VB_OK : VB_ERR_IO);
        if (fwrite(buf, 1, got, out) != got)
            return VB_ERR_IO;
        if (left > 0)
            left -= (off_t)got;
    }
    return VB_OK;
}

static vb_err put_html(vb_buf *b, const char *s)
{
    return vb_buf_append_html(b, s ? s : "");
}

static vb_err write_header(const vb_run *run, const vb_report_part *parts, size_t n, FILE *out)
{
    vb_buf b = {0};
    size_t nimages = 0;
    for (size_t i = 0; i < n; i++)
        nimages += parts[i].nimages;
    const char *title = run->run_code && *run->run_code ? run->run_code : run->id;
    vb_err rc = vb_buf_append_str(&b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n"
                                      "<meta charset=\"utf-8\">\n"
                                      "<meta name=\"viewport\" content=\"width=device-width, "
                                      "initial-scale=1\">\n<title>Vision analysis report — ");
    if (rc == VB_OK)
        rc = put_html(&b, title);
    if (rc == VB_OK)
        rc = vb_buf_append_str(
            &b, "</title>\n<style>\n"
                ".vb-run-header{font-family:sans-serif;border-bottom:2px solid #444;"
                "margin-bottom:1.5em;padding-bottom:1em}\n"
                ".vb-run-header dl{display:grid;grid-template-columns:max-content 1fr;"
                "gap:.3em 1em}\n"
                ".vb-run-header dt{font-weight:bold}\n"
                ".vb-run-header dd{margin:0;white-space:pre-wrap}\n"
                ".vb-part{border-top:1px solid #999;margin-top:2em;padding-top:1em}\n"
                ".vb-part-title{font-family:sans-serif}\n"
                "</style>\n</head>\n<body>\n<header class=\"vb-run-header\">\n"
                "<h1>Vision analysis report</h1>\n<dl>\n<dt>Run</dt><dd>");
    if (rc == VB_OK)
        rc = put_html(&b, run->id);
    if (rc == VB_OK)
        rc = vb_buf_append_str(&b, "</dd>\n<dt>Run code</dt><dd>");
    if (rc == VB_OK)
        rc = put_html(&b, run->run_code);
    if (rc == VB_OK)
        rc = vb_buf_append_str(&b, "</dd>\n<dt>Organization</dt><dd>");
    if (rc == VB_OK)
        rc = put_html(&b, run->organization_name);
    if (rc == VB_OK)
        rc = vb_buf_append_str(&b, "</dd>\n<dt>Query</dt><dd>");
    if (rc == VB_OK)
        rc = put_html(&b, run->user_query);
    if (rc == VB_OK)
        rc = vb_buf_append_str(&b, "</dd>\n<dt>Created</dt><dd>");
    if (rc == VB_OK)
        rc = put_html(&b, run->created_date);
    if (rc == VB_OK)
        rc = vb_buf_printf(&b, "</dd>\n<dt>Parts</dt><dd>%zu batches, %zu images</dd>\n</dl>\n"
                               "</header>\n",
                           n, nimages);
    if (rc == VB_OK && fwrite(b.data, 1, b.len, out) != b.len)
        rc = VB_ERR_IO;
    vb_buf_free(&b);
    return rc;
}

static vb_err write_part_heading(const vb_report_part *p, size_t i, size_t n, FILE *out)
{
    vb_buf b = {0};
    vb_err rc = vb_buf_printf(&b,
                              "<section class=\"vb-part\" id=\"vb-part-%zu\">\n"
                              "<h2 class=\"vb-part-title\">Part %zu of %zu — batch ",
                              i + 1, i + 1, n);
    if (rc == VB_OK)
        rc = put_html(&b, p->batch_id);
    for (size_t k = 0; rc == VB_OK && k < p->nimages; k++) {
        rc = vb_buf_append_str(&b, k == 0 ? ", images " : ", ");
        if (rc == VB_OK)
            rc = put_html(&b, p->image_names[k]);
    }
    if (rc == VB_OK)
        rc = vb_buf_append_str(&b, "</h2>\n<div class=\"vb-part-body\">\n");
    if (rc == VB_OK && fwrite(b.data, 1, b.len, out) != b.len)
        rc = VB_ERR_IO;
    vb_buf_free(&b);
    return rc;
}

/* fopen(path, "rb") relative to dirfd, without following a symbolic link. */
static FILE *open_in(int dirfd, const char *path)
{
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return NULL;
    FILE *f = fdopen(fd, "rb");
    if (!f)
        close(fd);
    return f;
}

static vb_err write_part(int dirfd, const vb_report_part *p, size_t i, size_t n, FILE *out,
                         vb_error *err)
{
    layout lay;
    FILE *in = open_in(dirfd, p->html_path);
    if (!in)
        return vb_error_set(err, VB_ERR_IO, "cannot open report part %zu: %s", i + 1,
                            strerror(errno));
    vb_err rc = scan_part(in, &lay);
    if (rc == VB_OK)
        rc = write_part_heading(p, i, n, out);
    for (size_t k = 0; rc == VB_OK && k < lay.nstyles; k++) {
        rc = copy_range(in, lay.styles[k].start, lay.styles[k].end, out);
        if (rc == VB_OK && fputc('\n', out) == EOF)
            rc = VB_ERR_IO;
    }
    if (rc == VB_OK) {
        if (lay.content_start >= 0)
            rc = copy_range(in, lay.content_start, lay.content_end, out);
        else
            rc = copy_range(in, 0, -1, out);
    }
    if (rc == VB_OK && fputs("\n</div>\n</section>\n", out) == EOF)
        rc = VB_ERR_IO;
    fclose(in);
    if (rc != VB_OK)
        return vb_error_set(err, rc, "cannot embed report part %zu", i + 1);
    return VB_OK;
}

vb_err vb_report_combine(const vb_run *run, const vb_report_part *parts, size_t n,
                         const char *out_path, vb_error *err)
{
    return vb_report_combine_at(run, parts, n, AT_FDCWD, out_path, err);
}

vb_err vb_report_combine_at(const vb_run *run, const vb_report_part *parts, size_t n, int dirfd,
                            const char *out_path, vb_error *err)
{
    vb_err rc = VB_OK;
    if (!run || !parts || n == 0 || !out_path)
        return vb_error_set(err, VB_ERR_INVALID, "a report needs a run and at least one part");
    for (size_t i = 0; i < n; i++)
        if (!parts[i].html_path || strcmp(parts[i].html_path, out_path) == 0)
            return vb_error_set(err, VB_ERR_INVALID, "report part %zu has no usable file",
                                i + 1);

    int fd = openat(dirfd, out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return vb_error_set(err, VB_ERR_IO, "cannot create report file: %s", strerror(errno));
    FILE *out = fdopen(fd, "wb");
    if (!out) {
        close(fd);
        rc = vb_error_set(err, VB_ERR_IO, "cannot create report file: %s", strerror(errno));
        goto fail;
    }

    if (n == 1) {
        FILE *in = open_in(dirfd, parts[0].html_path);
        if (!in) {
            rc = vb_error_set(err, VB_ERR_IO, "cannot open the batch report: %s",
                              strerror(errno));
            goto fail;
        }
        rc = copy_range(in, 0, -1, out);
        fclose(in);
        if (rc != VB_OK) {
            vb_error_set(err, rc, "cannot copy the batch report");
            goto fail;
        }
    } else {
        if ((rc = write_header(run, parts, n, out)) != VB_OK) {
            vb_error_set(err, rc, "cannot write the report header");
            goto fail;
        }
        for (size_t i = 0; i < n; i++)
            if ((rc = write_part(dirfd, &parts[i], i, n, out, err)) != VB_OK)
                goto fail;
        if (fputs("</body>\n</html>\n", out) == EOF) {
            rc = vb_error_set(err, VB_ERR_IO, "cannot write the report");
            goto fail;
        }
    }
    FILE *done = out;
    out = NULL;
    if (fclose(done) != 0) {
        rc = vb_error_set(err, VB_ERR_IO, "cannot write the report: %s", strerror(errno));
        goto fail;
    }
    return VB_OK;
fail:
    if (out)
        fclose(out);
    unlinkat(dirfd, out_path, 0);
    return rc;
}
