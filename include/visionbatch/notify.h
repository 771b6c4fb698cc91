/*
 * notify.h — webhooks of cron jobs: what a job's `notify` list may hold, the
 * signature of each delivery, and the delivery queue in Redis.
 *
 * A job's `notify` is a list of {url, events}; events are
 * execution.succeeded, execution.partial, execution.failed (also for the
 * statuses `error` and `timeout`), run.dead and job.paused. When an
 * execution reaches a final status the Lua script that decides it (see
 * jobs_exec.h) also enqueues one delivery per matching target, atomically:
 *   visionbatch:notify:<delivery_id>  hash: url, event, body (the JSON sent,
 *       fixed at enqueue so every attempt sends the same bytes), job_id,
 *       execution_id, field (the execution's `ntf:` field that records it),
 *       attempts, lease (token of the producer holding it, "" = none)
 *   visionbatch:notify:due            sorted set: delivery ids by due time
 *                                     (unix ms)
 *   visionbatch:exec:<id> field ntf:<event>:<n>  JSON {url, event, status,
 *       attempts, http_status}: what GET …/executions shows as notifications
 * Delivery ids are "<execution_id>:<event>:<n>", so an event is enqueued at
 * most once per target whatever re-runs the script.
 *
 * One producer delivers each: vb_notify_claim moves a due delivery's time
 * forward by the lease and stamps it with the claimer's token in one script,
 * so other producers do not see it until the lease runs out (a producer that
 * dies mid-delivery is thus replaced: at least once). vb_notify_finish counts
 * the attempt only under the same token, then removes the delivery
 * (delivered, or given up after max attempts) or reschedules it with backoff.
 *
 * Signature: header X-Visionbatch-Signature: t=<unix seconds>,v1=<hex of
 * HMAC-SHA256(secret, "<t>.<body>")> with the job's notify_secret.
 *
 * Threading: every function is thread-safe (Redis calls go through the
 * vb_jobs handle; vb_notify_deliver_due uses the caller's vb_http).
 */
#ifndef VISIONBATCH_NOTIFY_H
#define VISIONBATCH_NOTIFY_H

#include <stddef.h>

#include "visionbatch/error.h"
#include "visionbatch/http.h"
#include "visionbatch/jobs.h"

#define VB_NOTIFY_TARGETS_MAX 8     /* targets per job */
#define VB_NOTIFY_URL_MAX 512       /* bytes of a webhook URL */
#define VB_NOTIFY_SECRET_MIN 16     /* bytes of a signing secret */
#define VB_NOTIFY_SECRET_MAX 256
#define VB_NOTIFY_SIG_MAX 96        /* "t=<20 digits>,v1=<64 hex>" + NUL */
#define VB_NOTIFY_ATTEMPTS_DEFAULT 6
#define VB_NOTIFY_LEASE_MS 30000    /* > connect + total timeout of one attempt */
#define VB_NOTIFY_PAUSE_MAX 1000    /* largest pause_on_failure */

struct cJSON;

/* 1 when `event` is one of the five event names. */
int vb_notify_event_valid(const char *event);

/* Validates a `notify` value: an array of at most VB_NOTIFY_TARGETS_MAX
 * objects {"url": http(s) URL with a host, ≤ VB_NOTIFY_URL_MAX bytes, no
 * credentials, no fragment; "events": non-empty array of distinct event
 * names}, no other fields. On VB_OK *canonical is a new compact JSON text to
 * store (free()); else VB_ERR_INVALID with a message. Pure. */
vb_err vb_notify_validate(const struct cJSON *notify, char **canonical, vb_error *err);

/* 1 when the host of `url` is on `allowed`: a comma-separated list of host
 * names or IP literals (case-insensitive, exact), or "*.domain" for any
 * name under domain. NULL or "" allows nothing. Pure. */
int vb_notify_host_allowed(const char *url, const char *allowed);

/* Writes "t=<t>,v1=<hex HMAC-SHA256(secret, "<t>." body)>" into out.
 * VB_ERR_CRYPTO when OpenSSL fails. Pure. */
vb_err vb_notify_sign(const char *secret, long long t, const char *body, size_t len,
                      char out[VB_NOTIFY_SIG_MAX], vb_error *err);

/* One claimed delivery (strings owned; free with vb_notify_item_free). */
typedef struct vb_notify_item {
    char *id, *url, *event, *body, *job_id;
    long attempts; /* made before this one */
} vb_notify_item;

void vb_notify_item_free(vb_notify_item *it);

/* Claims up to `max` deliveries due at now_ms for lease_ms under `token`.
 * On VB_OK *items (free each, then the array) holds *n of them. */
vb_err vb_notify_claim(vb_jobs *j, long long now_ms, long lease_ms, const char *token,
                       size_t max, vb_notify_item **items, size_t *n, vb_error *err);

/* Records the attempt of a claimed delivery: delivered (ok = 1), else given
 * up when attempts reach max_attempts or `retry_at_ms` is 0, else due again
 * at retry_at_ms. http_status 0 = no answer. *counted (may be NULL) is 0
 * when the lease was lost (another producer took it over): nothing changed. */
vb_err vb_notify_finish(vb_jobs *j, const char *id, const char *token, int ok, long http_status,
                        long long retry_at_ms, int max_attempts, int *counted, vb_error *err);

typedef struct vb_notify_opts {
    const char *allowed_hosts; /* webhook_allowed_hosts, re-checked per attempt */
    const char *token;         /* claim token: unique per producer */
    int max_attempts;          /* 0 = VB_NOTIFY_ATTEMPTS_DEFAULT */
    long backoff_base_ms;      /* 0 = 1000; doubles per attempt */
    long backoff_max_ms;       /* 0 = 300000 */
    long timeout_ms;           /* one attempt; 0 = 10000 (connect: 3000) */
    long long now_ms;          /* unix ms */
} vb_notify_opts;

/* What one vb_notify_deliver_due call did. */
typedef struct vb_notify_stats {
    size_t delivered; /* answered 2xx */
    size_t retrying;  /* failed, due again later */
    size_t given_up;  /* failed for the last time, or not sendable */
} vb_notify_stats;

/* Claims the due deliveries (at most 16) and sends each once: POST of the
 * stored body, signed with the job's secret (vb_jobs_open_notify_secret),
 * no redirects followed. 2xx is delivered; anything else is retried later.
 * A host no longer allowed, a deleted job or a secret that does not open is
 * given up at once. *stats (may be NULL) is zeroed, then counts the
 * outcomes. */
vb_err vb_notify_deliver_due(vb_jobs *j, vb_http *h, const vb_notify_opts *o,
                             vb_notify_stats *stats, vb_error *err);

#endif
