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
#include <stdint.h>

#include "visionbatch/error.h"

/* Bounds applied to untrusted input (a page or a run breaking them is refused). */
#define VB_RUN_MAX_PER_PAGE 10000   /* runs in one GET page (else VB_ERR_TOO_LARGE) */
#define VB_RUN_MAX_DOCS 1000        /* documents in one run (else the run is invalid) */
#define VB_RUN_MAX_ID 128           /* bytes of vision_analysis_id */
#define VB_RUN_MAX_STRING 4096      /* bytes of any other string field */
#define VB_RUN_MAX_QUERY (64 * 1024) /* bytes of user_query */

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
    /* 64-bit FNV-1a of data.vision_analysis (every entry, valid or not, as
     * cJSON re-serialises it, so the envelope and white space do not count);
     * 0 for an empty page. Equal hashes = a page served again. */
    uint64_t content_hash;
} vb_run_page;

/* Parses the GET body. Fails with VB_ERR_PARSE for malformed JSON or a missing
 * `data.vision_analysis` array (a null array, or a missing one with
 * data.total == 0, is an empty page), VB_ERR_TOO_LARGE for more than
 * VB_RUN_MAX_PER_PAGE runs, and VB_ERR_API (message contains "API returned")
 * when code != 200 or status != "success". Required per run:
 * vision_analysis_id (see vb_run_id_valid), organization_id, user_query
 * (strings); optional: run code, organization name, created_date (string or
 * null), is_processed (bool or 0/1), documents (array or null). Required per
 * document: document_path (non-empty), document_name, document_type
 * (strings), is_input (bool or 0/1). Every string is made valid UTF-8:
 * bytes that are not become U+FFFD (logged at WARN), so the run can go on as
 * JSON to Kafka and the backend. On failure *page is empty. */
vb_err vb_run_page_parse(const char *json, size_t len, vb_run_page *page, vb_error *err);
void vb_run_page_free(vb_run_page *page);

/* Parses / serialises one run object (the Kafka message payload uses this
 * inside an envelope) with the platform's field names; the same validation as
 * a page entry (VB_ERR_PARSE naming the field). vb_run_to_json returns a
 * malloc'd string (NULL on allocation failure); NULL optional fields become
 * JSON null and VB_DOC_OTHER is written as "other". */
vb_err vb_run_parse_json(const char *json, size_t len, vb_run *run, vb_error *err);
char *vb_run_to_json(const vb_run *run);

vb_err vb_run_copy(vb_run *dst, const vb_run *src);
void vb_run_free(vb_run *run);
void vb_run_list_free(vb_run_list *list);
/* Appends a deep copy of run. */
vb_err vb_run_list_push(vb_run_list *list, const vb_run *run);

/* Case-insensitive comparison used for organization ids and UUIDs; 0 when
 * either is NULL. */
int vb_id_equal(const char *a, const char *b);

/* 1 when s is an acceptable run id: 1..VB_RUN_MAX_ID characters of
 * [A-Za-z0-9._:-], not dots only (ids become keys, file names, log fields). */
int vb_run_id_valid(const char *s);

/* "image"/"json" in any case → VB_DOC_IMAGE/VB_DOC_JSON, else VB_DOC_OTHER;
 * and back ("image", "json", "other"). Static strings. */
vb_doc_type vb_doc_type_parse(const char *s);
const char *vb_doc_type_name(vb_doc_type t);

#endif
