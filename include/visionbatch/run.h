/*
 * run.h — a "vision analysis run" as the platform describes it (SPEC.md §2),
 * and its JSON form.
 *
 * The same JSON shape travels on Kafka (without secrets: a run never holds
 * credentials). Parsing treats the input as hostile: sizes are bounded, every
 * required field is checked for type, and a broken run is reported with the
 * field that is wrong instead of crashing. A vb_run owns all its strings;
 * free with vb_run_free()/vb_run_list_free().
 */
#ifndef VISIONBATCH_RUN_H
#define VISIONBATCH_RUN_H

#include <stddef.h>

#include "visionbatch/error.h"

typedef enum vb_doc_type { VB_DOC_OTHER = 0, VB_DOC_IMAGE, VB_DOC_JSON } vb_doc_type;

typedef struct vb_document {
    char *documents_id;  /* vision_analysis_documents_id (may be NULL) */
    char *document_id;   /* may be NULL */
    char *path;          /* document_path: URL, may carry a SAS secret */
    char *name;          /* document_name as sent (unsanitised) */
    int is_input;
    vb_doc_type type;    /* document_type matched case-insensitively */
} vb_document;

typedef struct vb_run {
    char *id;                /* vision_analysis_id (required) */
    char *run_code;          /* vision_analysis_run_code (may be NULL) */
    char *organization_id;   /* required */
    char *organization_name; /* may be NULL → "" */
    char *user_query;        /* required (may be "") */
    char *created_date;      /* may be NULL */
    int is_processed;
    vb_document *docs;
    size_t ndocs;
} vb_run;

typedef struct vb_run_list {
    vb_run *runs;
    size_t n;
} vb_run_list;

/* One page of GET results (SPEC.md §2). Runs that fail validation are not in
 * `runs`; they are counted in `invalid` and each reason is logged by the
 * parser at WARN with the run id when one is readable. */
typedef struct vb_run_page {
    vb_run_list list;
    long total;   /* data.total, -1 if missing or not a number */
    size_t invalid;
} vb_run_page;

/* Parses the GET body. Fails with VB_ERR_PARSE for malformed JSON or a missing
 * `data.vision_analysis` array, and VB_ERR_API (message contains
 * "API returned") when code != 200 or status != "success". */
vb_err vb_run_page_parse(const char *json, size_t len, vb_run_page *page, vb_error *err);
void vb_run_page_free(vb_run_page *page);

/* Parses / serialises one run object (the Kafka message payload uses this
 * inside an envelope). vb_run_to_json returns a malloc'd string. */
vb_err vb_run_parse_json(const char *json, size_t len, vb_run *run, vb_error *err);
char *vb_run_to_json(const vb_run *run);

vb_err vb_run_copy(vb_run *dst, const vb_run *src);
void vb_run_free(vb_run *run);
void vb_run_list_free(vb_run_list *list);
/* Appends a deep copy of run. */
vb_err vb_run_list_push(vb_run_list *list, const vb_run *run);

/* Case-insensitive comparison used for organization ids and UUIDs. */
int vb_id_equal(const char *a, const char *b);

#endif
