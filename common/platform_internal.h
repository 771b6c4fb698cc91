/*
 * platform_internal.h — pure pieces of the platform client (platform.c),
 * exposed to the unit tests: the paging decision, the list URL and the
 * report file name. Not part of the public API.
 */
#ifndef VISIONBATCH_PLATFORM_INTERNAL_H
#define VISIONBATCH_PLATFORM_INTERNAL_H

#include <stddef.h>

#include "visionbatch/buf.h"
#include "visionbatch/run.h"

typedef enum vb__paging_decision {
    VB__PAGING_CONTINUE = 0,
    VB__PAGING_STOP_EMPTY,     /* the page had no runs at all */
    VB__PAGING_STOP_REPEATED,  /* a page served again: paging is ignored */
    VB__PAGING_STOP_TOTAL,     /* collected >= a trustworthy data.total */
    VB__PAGING_STOP_MAX_PAGES, /* safety bound reached */
} vb__paging_decision;

typedef struct vb__paging_state {
    long page;          /* the page just fetched, 1-based */
    long max_pages;     /* bound; <= 0 means 1000 */
    size_t page_items;  /* runs on that page, valid or not */
    long total;         /* data.total of that page, -1 if absent */
    long first_total;   /* data.total of page 1, -1 if absent */
    size_t collected;   /* distinct valid runs seen so far plus invalid entries */
    int repeated;       /* the page's ids equal the previous page's, or its content
                           equals that of a page fetched before */
} vb__paging_state;

/* Decides whether to fetch page st->page + 1. data.total is trusted only when
 * it is positive and the same on every page so far (it is known to be missing
 * or wrong on some servers), so a bad total can end paging early only if it
 * is consistent; an empty page always ends it. */
vb__paging_decision vb__paging_next(const vb__paging_state *st);
const char *vb__paging_reason(vb__paging_decision d);

/* 1 when both lists are non-empty and hold the same ids in the same order
 * (compared case-insensitively). */
int vb__same_ids(const vb_run_list *a, const vb_run_list *b);

/* Appends "{base}?is_processed=false&page=P&page_size=S" to out (cleared
 * first), joining with '&' when base already has a query and with nothing
 * when it already ends in '?' or '&'. A "#fragment" in base is dropped. */
vb_err vb__platform_list_url(const char *base, long page, long page_size, vb_buf *out);

/* "report_{batch_id}.html" with batch_id reduced to [A-Za-z0-9._-] (others
 * become '_', at most 128 characters, "report.html" when nothing is left). */
void vb__report_filename(const char *batch_id, char *out, size_t outlen);

#endif
