/*
 * decide.c — the worker's decision rules (decide.h): pure functions of their
 * arguments, no I/O, no clock, thread-safe.
 */
#include "decide.h"

int vb_worker_error_is_permanent(const vb_error *e)
{
    switch (e->code) {
    case VB_ERR_PARSE:
    case VB_ERR_CONTENT:
    case VB_ERR_TOO_LARGE:
    case VB_ERR_INVALID:
    case VB_ERR_CONFIG:
        return 1;
    case VB_ERR_HTTP: {
        long s = e->http_status;
        return s >= 400 && s < 500 && s != 401 && s != 403 && s != 408 && s != 429;
    }
    default:
        return 0;
    }
}

vb_failure_verdict vb_worker_failure_verdict(const vb_error *e, long attempt, long max_attempts)
{
    if (vb_worker_error_is_permanent(e))
        return VB_FAIL_DEAD_PERMANENT;
    if (attempt >= max_attempts)
        return VB_FAIL_DEAD_EXHAUSTED;
    return VB_FAIL_RETRY;
}

long long vb_worker_retry_backoff_ms(long lease_ms, long attempts)
{
    if (attempts <= 0)
        return 0;
    long long b = lease_ms;
    for (long i = 1; i < attempts && b < VB_RETRY_BACKOFF_CAP_MS; i++)
        b *= 2;
    return b < VB_RETRY_BACKOFF_CAP_MS ? b : VB_RETRY_BACKOFF_CAP_MS;
}

vb_reap_action vb_worker_reap_action(const vb_run_state *rs, long max_attempts, long lease_ms,
                                     long long now)
{
    switch (rs->state) {
    case VB_RUN_QUEUED:
        return rs->lease_until < now ? VB_REAP_REQUEUE : VB_REAP_NONE;
    case VB_RUN_PROCESSING:
    case VB_RUN_UPLOADING:
        return rs->lease_until < now ? VB_REAP_TAKEOVER : VB_REAP_NONE;
    case VB_RUN_FAILED: {
        if (rs->attempts >= max_attempts)
            return VB_REAP_DEAD;
        /* The store's retry_at (store.h: the same backoff, set when the run
         * failed; now for a run handed back) is what the claim checks; a
         * record without one is timed from finished_at. */
        long long due = rs->retry_at > 0
                            ? rs->retry_at
                            : rs->finished_at + vb_worker_retry_backoff_ms(lease_ms, rs->attempts);
        return now >= due ? VB_REAP_RETRY : VB_REAP_NONE;
    }
    default:
        return VB_REAP_NONE;
    }
}
