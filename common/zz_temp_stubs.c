/*
 * zz_temp_stubs.c — TEMPORARY minimal stand-ins for log.c, redact.c and
 * http.c so this branch links on its own. Delete this file when the real
 * modules are merged (it defines the same symbols).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "visionbatch/http.h"
#include "visionbatch/log.h"
#include "visionbatch/redact.h"

void vb_log(vb_log_level level, const char *fmt, ...)
{
    static const char *const names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    va_list ap;
    fprintf(stderr, "%-5s ", (unsigned)level < 4 ? names[level] : "?");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

char *vb_redact_url(const char *url, char *out, size_t outlen)
{
    if (outlen == 0)
        return out;
    snprintf(out, outlen, "%s", url ? url : "");
    return out;
}

void vb_redact_text(char *text)
{
    (void)text;
}

vb_err vb_http_perform(vb_http *h, const vb_http_request *req, const vb_http_policy *pol,
                       vb_http_response *resp, vb_error *err)
{
    memset(resp, 0, sizeof *resp);
    resp->retry_after_s = -1;
    return vb_error_set(err, VB_ERR_NETWORK, "HTTP client not available in this build");
}

void vb_http_response_free(vb_http_response *resp)
{
    if (resp)
        vb_buf_free(&resp->body);
}
