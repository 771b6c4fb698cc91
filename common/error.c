/*
 * error.c — vb_strerror() and the vb_error helpers declared in error.h.
 * Stateless and thread-safe.
 */
#include "visionbatch/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const vb_err_names[VB_ERR__COUNT] = {
    [VB_OK] = "success",
    [VB_ERR_NOMEM] = "out of memory",
    [VB_ERR_INVALID] = "invalid argument or input",
    [VB_ERR_CONFIG] = "configuration error",
    [VB_ERR_IO] = "file system error",
    [VB_ERR_NETWORK] = "network error",
    [VB_ERR_TIMEOUT] = "timed out",
    [VB_ERR_HTTP] = "HTTP error status",
    [VB_ERR_TOO_LARGE] = "size limit exceeded",
    [VB_ERR_PARSE] = "malformed data",
    [VB_ERR_API] = "API returned a non-success answer",
    [VB_ERR_BACKEND] = "backend batch failed",
    [VB_ERR_CONTENT] = "unexpected content",
    [VB_ERR_CANCELLED] = "cancelled",
    [VB_ERR_NOT_FOUND] = "not found",
    [VB_ERR_CONFLICT] = "conflict",
    [VB_ERR_REDIS] = "Redis error",
    [VB_ERR_KAFKA] = "Kafka error",
    [VB_ERR_CRYPTO] = "cryptography error",
};

const char *vb_strerror(vb_err code)
{
    if ((int)code < 0 || code >= VB_ERR__COUNT || !vb_err_names[code])
        return "unknown error";
    return vb_err_names[code];
}

void vb_error_clear(vb_error *err)
{
    if (!err)
        return;
    err->code = VB_OK;
    err->http_status = 0;
    err->msg[0] = '\0';
}

vb_err vb_error_set(vb_error *err, vb_err code, const char *fmt, ...)
{
    if (!err)
        return code;
    char fresh[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fresh, sizeof fresh, fmt, ap);
    va_end(ap);
    if (err->msg[0] != '\0' && err->code != VB_OK) {
        char old[sizeof err->msg];
        memcpy(old, err->msg, sizeof old);
        /* Truncation keeps the newest context first, which is what a reader wants. */
        if (snprintf(err->msg, sizeof err->msg, "%s: %s", fresh, old) >= (int)sizeof err->msg)
            err->msg[sizeof err->msg - 1] = '\0';
    } else {
        memcpy(err->msg, fresh, sizeof err->msg);
    }
    err->code = code;
    return code;
}

int vb_error_is_transient(const vb_error *err)
{
    if (!err)
        return 0;
    switch (err->code) {
    case VB_ERR_NETWORK:
    case VB_ERR_TIMEOUT:
    case VB_ERR_REDIS:
    case VB_ERR_KAFKA:
        return 1;
    case VB_ERR_HTTP:
        return err->http_status == 429 || err->http_status == 408 || err->http_status >= 500;
    default:
        return 0;
    }
}
