/*
 * error.h — the one error vocabulary of visionbatch.
 *
 * Every fallible function returns a vb_err and, where the caller passes one,
 * fills a vb_error with the code, the HTTP status seen (if any) and a
 * human-readable message. Messages never contain secrets: producers of
 * messages pass URLs through vb_redact_url() first (see redact.h).
 * vb_error is a plain value: no allocation, nothing to free.
 */
#ifndef VISIONBATCH_ERROR_H
#define VISIONBATCH_ERROR_H

#include <stddef.h>

typedef enum vb_err {
    VB_OK = 0,
    VB_ERR_NOMEM,       /* allocation failed */
    VB_ERR_INVALID,     /* bad argument or bad input data */
    VB_ERR_CONFIG,      /* missing or invalid configuration */
    VB_ERR_IO,          /* local file system */
    VB_ERR_NETWORK,     /* connection refused/reset, DNS, TLS */
    VB_ERR_TIMEOUT,     /* a deadline passed */
    VB_ERR_HTTP,        /* a non-2xx HTTP answer (http_status says which) */
    VB_ERR_TOO_LARGE,   /* a size cap was exceeded */
    VB_ERR_PARSE,       /* malformed JSON or missing required fields */
    VB_ERR_API,         /* a well-formed answer that says "not success" */
    VB_ERR_BACKEND,     /* the backend reported a failed batch */
    VB_ERR_CONTENT,     /* content is not what it claims (e.g. not an image) */
    VB_ERR_CANCELLED,   /* stopped by a signal, shutdown or lost lease */
    VB_ERR_NOT_FOUND,   /* no such item */
    VB_ERR_CONFLICT,    /* state forbids the operation (lock held, already done) */
    VB_ERR_REDIS,       /* Redis command or connection failed */
    VB_ERR_KAFKA,       /* Kafka client failure */
    VB_ERR_CRYPTO,      /* encryption/decryption failure */
    VB_ERR__COUNT
} vb_err;

typedef struct vb_error {
    vb_err code;
    long http_status; /* last HTTP status seen, 0 if none */
    char msg[1024];   /* NUL-terminated, redacted */
} vb_error;

/* Static English description of `code`; never NULL. */
const char *vb_strerror(vb_err code);

/* Clears `err` (may be NULL). */
void vb_error_clear(vb_error *err);

/* Sets err->code and a printf-formatted message; returns `code` so callers can
 * `return vb_error_set(err, VB_ERR_X, "...")`. `err` may be NULL. When err
 * already holds a message, the new text is prefixed: "new: old". */
vb_err vb_error_set(vb_error *err, vb_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* True for failures worth retrying later: network, timeout, HTTP 429/5xx,
 * Redis/Kafka outages. */
int vb_error_is_transient(const vb_error *err);

#endif
