/*
 * notifier.c — the webhook sender thread (see notifier.h): every interval
 * it asks vb_notify_deliver_due to claim and send what is due.
 *
 * Threading: `mu` guards `stop`; the Redis handle and the HTTP handle
 * belong to the thread.
 */
#include "notifier.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"
#include "visionbatch/crypto.h"
#include "visionbatch/log.h"
#include "visionbatch/notify.h"

struct vb_notifier {
    vb_jobs *jobs;
    vb_http *http;
    char *allowed;
    char token[200];
    int max_attempts;
    long base_ms, interval_ms;
    vb_metric *m_deliveries;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    pthread_t thread;
    int started;
};

static void count(vb_metric *m, const char *result, size_t n)
{
    const char *labels[] = {result};
    if (m && n)
        vb_metric_add(m, labels, (double)n);
}

static void *loop(void *arg)
{
    vb_notifier *n = arg;
    int failing = 0;
    for (;;) {
        vb_notify_opts o = {.allowed_hosts = n->allowed,
                            .token = n->token,
                            .max_attempts = n->max_attempts,
                            .backoff_base_ms = n->base_ms,
                            .now_ms = vb__now_ms()};
        vb_error err = {0};
        vb_notify_stats st;
        vb_err rc = vb_notify_deliver_due(n->jobs, n->http, &o, &st, &err);
        count(n->m_deliveries, "delivered", st.delivered);
        count(n->m_deliveries, "retrying", st.retrying);
        count(n->m_deliveries, "given_up", st.given_up);
        if (rc != VB_OK && !failing)
            vb_log(VB_LOG_ERROR, "webhooks: %s", err.msg);
        failing = rc != VB_OK;

        struct timespec ts = vb__realtime_after(n->interval_ms);
        pthread_mutex_lock(&n->mu);
        while (!n->stop)
            if (pthread_cond_timedwait(&n->cv, &n->mu, &ts) == ETIMEDOUT)
                break;
        int stop = n->stop;
        pthread_mutex_unlock(&n->mu);
        if (stop)
            break;
    }
    return NULL;
}

vb_notifier *vb_notifier_start(const vb_notifier_opts *opts, vb_error *err)
{
    unsigned char key[VB_CRYPTO_KEY_SIZE];
    char rnd[VB_UUID_SIZE];
    int has_key = 0;
    vb_notifier *n = calloc(1, sizeof *n);
    if (!n) {
        vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&n->mu, NULL);
    pthread_cond_init(&n->cv, NULL);
    if (opts->secret_key && opts->secret_key[0]) {
        if (vb_crypto_key_parse(opts->secret_key, key, err) != VB_OK)
            goto fail;
        has_key = 1;
    }
    if (vb_crypto_uuid4(rnd, err) != VB_OK)
        goto fail;
    /* unique per process start, so a restarted producer never mistakes an
     * older lease for its own */
    snprintf(n->token, sizeof n->token, "%.120s/%s",
             opts->producer_id && opts->producer_id[0] ? opts->producer_id : "producer", rnd);
    n->max_attempts = opts->max_attempts;
    n->base_ms = opts->backoff_base_ms;
    n->interval_ms = opts->interval_ms > 0 ? opts->interval_ms : 500;
    if (opts->metrics)
        n->m_deliveries = vb_metrics_counter(opts->metrics, "visionbatch_webhook_deliveries_total",
                                             "Webhook delivery attempts by outcome (delivered, "
                                             "retrying, given_up).",
                                             "result");
    if (opts->allowed_hosts && opts->allowed_hosts[0] &&
        !(n->allowed = strdup(opts->allowed_hosts))) {
        vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        goto fail;
    }
    vb_jobs_opts jo = {.redis_url = opts->redis_url, .secret_key = has_key ? key : NULL};
    vb_err rc = vb_jobs_new(&jo, &n->jobs, err);
    vb_crypto_wipe(key, sizeof key);
    if (rc != VB_OK)
        goto fail;
    if (!(n->http = vb_http_new())) {
        vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (pthread_create(&n->thread, NULL, loop, n) != 0) {
        vb_error_set(err, VB_ERR_NOMEM, "webhooks: cannot start the sender thread");
        goto fail;
    }
    n->started = 1;
    return n;
fail:
    vb_crypto_wipe(key, sizeof key);
    vb_notifier_stop(n);
    return NULL;
}

void vb_notifier_stop(vb_notifier *n)
{
    if (!n)
        return;
    if (n->started) {
        pthread_mutex_lock(&n->mu);
        n->stop = 1;
        pthread_cond_broadcast(&n->cv);
        pthread_mutex_unlock(&n->mu);
        pthread_join(n->thread, NULL);
    }
    vb_http_free(n->http);
    vb_jobs_free(n->jobs);
    free(n->allowed);
    pthread_cond_destroy(&n->cv);
    pthread_mutex_destroy(&n->mu);
    free(n);
}
