/*
 * buf.h — a growable byte buffer, always NUL-terminated.
 *
 * A zeroed vb_buf is empty and valid. Growth is capped by `limit` (0 = no cap)
 * so network readers can bound what they accept. Not thread-safe; free with
 * vb_buf_free() (which leaves the buffer empty and reusable).
 */
#ifndef VISIONBATCH_BUF_H
#define VISIONBATCH_BUF_H

#include <stddef.h>

#include "visionbatch/error.h"

typedef struct vb_buf {
    char *data;   /* NULL or NUL-terminated; owned */
    size_t len;   /* bytes used, excluding the terminator */
    size_t cap;   /* bytes allocated */
    size_t limit; /* max len accepted, 0 = unlimited */
} vb_buf;

/* Appends n bytes; VB_ERR_TOO_LARGE past limit, VB_ERR_NOMEM. On failure the
 * buffer is unchanged. */
vb_err vb_buf_append(vb_buf *b, const void *p, size_t n);
vb_err vb_buf_append_str(vb_buf *b, const char *s);
vb_err vb_buf_printf(vb_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s with & < > " ' replaced by HTML entities. */
vb_err vb_buf_append_html(vb_buf *b, const char *s);
void vb_buf_reset(vb_buf *b); /* len = 0, keeps memory */
void vb_buf_free(vb_buf *b);
/* Hands the data to the caller (free with free()); the buffer becomes empty.
 * Never NULL on success: an empty buffer yields "". */
char *vb_buf_steal(vb_buf *b);

#endif
