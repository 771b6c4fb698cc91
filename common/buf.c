/*
 * buf.c — growable, NUL-terminated byte buffer (see buf.h).
 * Capacity doubles; a failed append leaves the buffer as it was.
 */
#include "visionbatch/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static vb_err buf_reserve(vb_buf *b, size_t extra)
{
    if (b->limit && (extra > b->limit || b->len > b->limit - extra))
        return VB_ERR_TOO_LARGE;
    if (extra > (size_t)-1 - b->len - 1)
        return VB_ERR_TOO_LARGE;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return VB_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > ((size_t)-1) / 2 ? need : cap * 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return VB_ERR_NOMEM;
    b->data = p;
    b->cap = cap;
    return VB_OK;
}

vb_err vb_buf_append(vb_buf *b, const void *p, size_t n)
{
    vb_err rc = buf_reserve(b, n);
    if (rc != VB_OK)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return VB_OK;
}

vb_err vb_buf_append_str(vb_buf *b, const char *s)
{
    return vb_buf_append(b, s, strlen(s));
}

vb_err vb_buf_printf(vb_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return VB_ERR_INVALID;
    vb_err rc = buf_reserve(b, (size_t)n);
    if (rc != VB_OK)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return VB_OK;
}

vb_err vb_buf_append_html(vb_buf *b, const char *s)
{
    size_t start = b->len;
    for (const char *p = s; *p; p++) {
        const char *rep = NULL;
        switch (*p) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#39;"; break;
        default: break;
        }
        vb_err rc = rep ? vb_buf_append_str(b, rep) : vb_buf_append(b, p, 1);
        if (rc != VB_OK) {
            b->len = start;
            if (b->data)
                b->data[start] = '\0';
            return rc;
        }
    }
    return VB_OK;
}

void vb_buf_reset(vb_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void vb_buf_free(vb_buf *b)
{
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *vb_buf_steal(vb_buf *b)
{
    char *p = b->data ? b->data : calloc(1, 1);
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}
