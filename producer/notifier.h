/*
 * notifier.h — the producer's webhook sender: a thread that delivers the
 * cron jobs' due webhook notifications (notify.h) every half second.
 *
 * It runs beside the cron scheduler rather than inside its loop so that a
 * slow or unreachable receiver (up to the attempt timeout per delivery)
 * never delays a tick. Every producer runs one; the claim in Redis makes
 * each delivery go out from one of them only.
 *
 * Threading: one thread of its own with its own Redis connection and HTTP
 * handle; start and stop from the same thread.
 */
#ifndef VISIONBATCH_PRODUCER_NOTIFIER_H
#define VISIONBATCH_PRODUCER_NOTIFIER_H

#include "visionbatch/error.h"
#include "visionbatch/metrics.h"

typedef struct vb_notifier vb_notifier;

typedef struct vb_notifier_opts {
    const char *redis_url;     /* NULL = redis://127.0.0.1:6379/0 */
    const char *secret_key;    /* base64 of 32 bytes; NULL: nothing can be signed
                                  (deliveries are given up) */
    const char *allowed_hosts; /* webhook_allowed_hosts; NULL = none */
    const char *producer_id;   /* prefix of the claim token; NULL = "producer" */
    int max_attempts;          /* 0 = VB_NOTIFY_ATTEMPTS_DEFAULT */
    long backoff_base_ms;      /* 0 = 1000 */
    long interval_ms;          /* poll interval; 0 = 500 */
    vb_metrics *metrics;       /* borrowed, may be NULL: registers
                                  visionbatch_webhook_deliveries_total{result} */
} vb_notifier_opts;

/* Connects and starts the thread. NULL with err set (VB_ERR_CONFIG,
 * VB_ERR_REDIS) on failure. Strings are copied. */
vb_notifier *vb_notifier_start(const vb_notifier_opts *opts, vb_error *err);

/* Stops the thread (after the attempt in progress) and frees everything.
 * NULL is accepted. */
void vb_notifier_stop(vb_notifier *n);

#endif
