/*
 * message.h — the Kafka message that carries one run from the producer to
 * the workers (topic visionbatch.runs, key = vision_analysis_id).
 *
 * Value: readable JSON, schema 1:
 *   {"schema":1, "run_id":"…", "organization_id":"…", "run_code":"…",
 *    "credentials":{"source":"config"} | {"source":"job","job_id":"…"},
 *    "execution_id":"…"|null, "trace_id":"…", "attempt":N,
 *    "published_at":"RFC 3339", "run":{…the run as the platform listed it…},
 *    "sealed":"v1:…" (optional)}
 * Secrets never travel readable: the message names where the worker finds
 * the platform credentials ("config": the worker's own settings; "job": the
 * cron job stored, encrypted, in Redis), and every document_path in "run" has
 * its query string (where SAS signatures live) removed. "sealed", when the
 * producer has the shared secret key, is the whole run with its document URLs
 * sealed with AES-256-GCM under that key and bound to run_id (seal.h): a
 * worker with the same key processes the run from it without asking the
 * platform. Without it (an older producer, no key, a republished run), or when
 * it does not open, the worker fetches the run from the platform.
 * Headers: vb-schema ("1"), vb-attempt, vb-trace-id, vb-source
 * ("poll" | "cron" | "retry"), added by the Kafka wrapper.
 *
 * Pure functions, thread-safe. Decoding treats the value as hostile (size cap,
 * types checked, run id validated).
 */
#ifndef VISIONBATCH_MESSAGE_H
#define VISIONBATCH_MESSAGE_H

#include "visionbatch/error.h"
#include "visionbatch/run.h"

#define VB_MSG_SCHEMA 1
#define VB_MSG_MAX_BYTES (4 * 1024 * 1024)
/* Longest "sealed" value accepted: base64 of a VB_CRYPTO_BOUND_MAX text. */
#define VB_MSG_SEALED_MAX (1400 * 1024)

typedef struct vb_run_msg {
    int schema;
    char *run_id;          /* validated with vb_run_id_valid */
    char *organization_id; /* may be NULL */
    char *cred_source;     /* "config" or "job" */
    char *job_id;          /* when cred_source is "job" */
    char *execution_id;    /* cron execution that queued the run, or NULL */
    char *trace_id;        /* may be NULL */
    int attempt;           /* ≥ 1 */
    vb_run run;            /* the run, document paths without query strings */
    int has_run;           /* 0 when the message carried no "run" object */
    char *sealed;          /* the "sealed" value as sent (opaque), or NULL */
    int sealed_invalid;    /* "sealed" was there but not a string of at most
                              VB_MSG_SEALED_MAX bytes (then sealed is NULL) */
} vb_run_msg;

/* Encodes a message for `run` (document paths are stripped of their query
 * strings here). job_id non-NULL means credentials come from that cron job.
 * *json is malloc'd; the caller frees it. */
vb_err vb_run_msg_encode(const vb_run *run, const char *job_id, const char *execution_id,
                         const char *trace_id, int attempt, char **json, vb_error *err);

/* vb_run_msg_encode with a "sealed" value (vb_seal_run of the same run;
 * NULL = none), carried as it is. */
vb_err vb_run_msg_encode_ex(const vb_run *run, const char *job_id, const char *execution_id,
                            const char *trace_id, int attempt, const char *sealed, char **json,
                            vb_error *err);

/* Decodes a message value into *msg (zeroed first; free with
 * vb_run_msg_free). VB_ERR_PARSE with a reason for anything malformed,
 * foreign (unknown schema) or oversized. */
vb_err vb_run_msg_decode(const char *json, size_t len, vb_run_msg *msg, vb_error *err);

void vb_run_msg_free(vb_run_msg *msg);

/* Copies url into out without its query string and fragment. */
void vb_url_strip_query(const char *url, char *out, size_t outlen);

#endif
