/*
 * jobs_pool.c — a pool of vb_jobs handles (jobs_pool.h).
 *
 * `all` holds every open handle, `idle` the ones not lent out (a stack, so
 * the most recently used connection is reused first). A handle is opened
 * outside the pool's mutex, with its slot reserved by `opening`, so a slow
 * connect does not hold up requests that could be served by a returned one.
 */
#include "visionbatch/jobs_pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "visionbatch/crypto.h"

struct vb_jobs_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    vb_jobs *all[VB_JOBS_POOL_MAX];
    vb_jobs *idle[VB_JOBS_POOL_MAX];
    size_t nall, nidle, opening, max;
    char *redis_url;
    unsigned char key[VB_CRYPTO_KEY_SIZE];
    vb_jobs_opts opts; /* points into this struct */
};

/* Opens one handle and files it as open (not idle). */
static vb_jobs *open_one(vb_jobs_pool *p, vb_error *err)
{
    vb_jobs *j = NULL;
    vb_err rc = vb_jobs_new(&p->opts, &j, err);
    pthread_mutex_lock(&p->mu);
    p->opening--;
    if (rc == VB_OK)
        p->all[p->nall++] = j;
    pthread_cond_signal(&p->cv); /* a waiter may now open one itself */
    pthread_mutex_unlock(&p->mu);
    return rc == VB_OK ? j : NULL;
}

vb_err vb_jobs_pool_new(const vb_jobs_opts *opts, size_t max, vb_jobs_pool **out,
                        vb_error *err)
{
    *out = NULL;
    vb_jobs_pool *p = calloc(1, sizeof *p);
    if (!p)
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        return vb_error_set(err, VB_ERR_NOMEM, "mutex");
    }
    if (pthread_cond_init(&p->cv, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        free(p);
        return vb_error_set(err, VB_ERR_NOMEM, "condition variable");
    }
    p->max = max < 1 ? 1 : max > VB_JOBS_POOL_MAX ? VB_JOBS_POOL_MAX : max;
    if (opts)
        p->opts = *opts;
    if (opts && opts->redis_url && !(p->redis_url = strdup(opts->redis_url))) {
        vb_jobs_pool_free(p);
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    }
    p->opts.redis_url = p->redis_url;
    if (opts && opts->secret_key) {
        memcpy(p->key, opts->secret_key, sizeof p->key);
        p->opts.secret_key = p->key;
    }
    p->opening = 1;
    vb_jobs *first = open_one(p, err);
    if (!first) {
        vb_jobs_pool_free(p);
        return err && err->code ? err->code : VB_ERR_REDIS;
    }
    p->idle[p->nidle++] = first;
    *out = p;
    return VB_OK;
}

vb_jobs *vb_jobs_pool_get(vb_jobs_pool *p, vb_error *err)
{
    pthread_mutex_lock(&p->mu);
    while (p->nidle == 0 && p->nall + p->opening >= p->max)
        pthread_cond_wait(&p->cv, &p->mu);
    if (p->nidle > 0) {
        vb_jobs *j = p->idle[--p->nidle];
        pthread_mutex_unlock(&p->mu);
        return j;
    }
    p->opening++;
    pthread_mutex_unlock(&p->mu);
    return open_one(p, err);
}

void vb_jobs_pool_put(vb_jobs_pool *p, vb_jobs *j)
{
    if (!j)
        return;
    pthread_mutex_lock(&p->mu);
    p->idle[p->nidle++] = j;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

size_t vb_jobs_pool_open_count(vb_jobs_pool *p)
{
    pthread_mutex_lock(&p->mu);
    size_t n = p->nall;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void vb_jobs_pool_free(vb_jobs_pool *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nall; i++)
        vb_jobs_free(p->all[i]);
    vb_crypto_wipe(p->key, sizeof p->key);
    free(p->redis_url);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
