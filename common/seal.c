/*
 * seal.c — sealing a run for its Kafka message and opening it again (see
 * seal.h). crypto.c does the AES-256-GCM; this file decides what is sealed
 * (the run's JSON) and what it is bound to (the run id).
 */
#include "visionbatch/seal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* VB_SEAL_RUN_CONTEXT + the id in lower case into out (NUL-terminated).
 * VB_ERR_INVALID when the id is not a valid run id. */
static vb_err run_context(const char *run_id, char *out, size_t outlen, vb_error *err)
{
    if (!run_id || !vb_run_id_valid(run_id))
        return vb_error_set(err, VB_ERR_INVALID, "sealing needs a valid run id");
    int n = snprintf(out, outlen, "%s%s", VB_SEAL_RUN_CONTEXT, run_id);
    if (n < 0 || (size_t)n >= outlen)
        return vb_error_set(err, VB_ERR_INVALID, "run id too long to seal");
    for (char *p = out + strlen(VB_SEAL_RUN_CONTEXT); *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return VB_OK;
}

vb_err vb_seal_run(const unsigned char key[VB_CRYPTO_KEY_SIZE], const vb_run *run, char **out,
                   vb_error *err)
{
    char ctx[VB_CRYPTO_CONTEXT_MAX + 1];
    char *json = NULL;
    vb_err rc;

    *out = NULL;
    if (!key || !run)
        return vb_error_set(err, VB_ERR_INVALID, "seal: missing argument");
    if ((rc = run_context(run->id, ctx, sizeof ctx, err)) != VB_OK)
        return rc;
    if (!(json = vb_run_to_json(run)))
        return vb_error_set(err, VB_ERR_NOMEM, "seal: out of memory");
    size_t len = strlen(json);
    if (len > VB_CRYPTO_BOUND_MAX)
        rc = vb_error_set(err, VB_ERR_TOO_LARGE, "run of %zu bytes is too large to seal (limit %d)",
                          len, VB_CRYPTO_BOUND_MAX);
    else
        rc = vb_crypto_seal_bound(key, ctx, json, out, err);
    vb_crypto_wipe(json, len);
    free(json);
    return rc;
}

vb_err vb_seal_open_run(const unsigned char key[VB_CRYPTO_KEY_SIZE], const char *run_id,
                        const char *sealed, vb_run *out, vb_error *err)
{
    char ctx[VB_CRYPTO_CONTEXT_MAX + 1];
    char *plain = NULL;
    vb_err rc;

    memset(out, 0, sizeof *out);
    if (!key || !sealed)
        return vb_error_set(err, VB_ERR_INVALID, "open: missing argument");
    if ((rc = run_context(run_id, ctx, sizeof ctx, err)) != VB_OK)
        return rc;
    vb_error e;
    vb_error_clear(&e);
    if ((rc = vb_crypto_open_bound(key, ctx, sealed, &plain, &e)) != VB_OK)
        return vb_error_set(err, rc, "sealed run: %s", e.msg);
    /* The parser's own message may quote the text: only the verdict goes out. */
    if (vb_run_parse_json(plain, strlen(plain), out, NULL) != VB_OK) {
        rc = vb_error_set(err, VB_ERR_PARSE, "sealed run opened but is not a valid run");
    } else if (!vb_id_equal(out->id, run_id)) {
        vb_run_free(out);
        memset(out, 0, sizeof *out);
        rc = vb_error_set(err, VB_ERR_PARSE, "sealed run names another run id");
    }
    vb_crypto_free_secret(plain);
    return rc;
}
