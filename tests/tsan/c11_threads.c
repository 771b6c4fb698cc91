/*
 * C11 threads on top of POSIX threads, for the ThreadSanitizer build only.
 *
 * librdkafka starts its threads with thrd_create() and locks with mtx_*()
 * and cnd_*(). glibc implements those by calling its internal pthread
 * functions directly, past the ThreadSanitizer runtime's interceptors (GCC 12
 * and clang 14 intercept only the pthread_* names): a librdkafka thread then
 * runs unregistered and crashes in the runtime's allocator, and its
 * locks would be invisible, so the hand-over of a message between
 * librdkafka's threads and ours would show as a data race. Defining the C11
 * names here, in a shared library that every program and test of the
 * VB_TSAN build links (so it comes before libc in symbol lookup), routes
 * them through pthread_create, pthread_mutex_lock, ... which the runtime
 * sees. glibc's thrd_t, mtx_t and cnd_t have the layout of pthread_t,
 * pthread_mutex_t and pthread_cond_t (checked below).
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>

_Static_assert(sizeof(thrd_t) == sizeof(pthread_t), "thrd_t is pthread_t");
_Static_assert(sizeof(mtx_t) == sizeof(pthread_mutex_t), "mtx_t is pthread_mutex_t");
_Static_assert(sizeof(cnd_t) == sizeof(pthread_cond_t), "cnd_t is pthread_cond_t");

#define PM(m) ((pthread_mutex_t *)(void *)(m))
#define PC(c) ((pthread_cond_t *)(void *)(c))

static int result(int rc)
{
    switch (rc) {
    case 0:
        return thrd_success;
    case ETIMEDOUT:
        return thrd_timedout;
    case EBUSY:
        return thrd_busy;
    case ENOMEM:
        return thrd_nomem;
    default:
        return thrd_error;
    }
}

typedef struct {
    thrd_start_t fn;
    void *arg;
} start;

static void *trampoline(void *p)
{
    start s = *(start *)p;
    free(p);
    return (void *)(intptr_t)s.fn(s.arg);
}

int thrd_create(thrd_t *thr, thrd_start_t fn, void *arg)
{
    start *s = malloc(sizeof *s);
    if (!s)
        return thrd_nomem;
    s->fn = fn;
    s->arg = arg;
    pthread_t t;
    int rc = pthread_create(&t, NULL, trampoline, s);
    if (rc != 0) {
        free(s);
        return result(rc);
    }
    *thr = (thrd_t)t;
    return thrd_success;
}

int thrd_join(thrd_t thr, int *res)
{
    void *v = NULL;
    int rc = pthread_join((pthread_t)thr, &v);
    if (rc == 0 && res)
        *res = (int)(intptr_t)v;
    return result(rc);
}

int thrd_detach(thrd_t thr)
{
    return result(pthread_detach((pthread_t)thr));
}

int mtx_init(mtx_t *m, int type)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    if (type & mtx_recursive)
        pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    int rc = pthread_mutex_init(PM(m), &a);
    pthread_mutexattr_destroy(&a);
    return result(rc);
}

int mtx_lock(mtx_t *m)
{
    return result(pthread_mutex_lock(PM(m)));
}

int mtx_trylock(mtx_t *m)
{
    return result(pthread_mutex_trylock(PM(m)));
}

int mtx_timedlock(mtx_t *restrict m, const struct timespec *restrict ts)
{
    return result(pthread_mutex_timedlock(PM(m), ts));
}

int mtx_unlock(mtx_t *m)
{
    return result(pthread_mutex_unlock(PM(m)));
}

void mtx_destroy(mtx_t *m)
{
    pthread_mutex_destroy(PM(m));
}

int cnd_init(cnd_t *c)
{
    return result(pthread_cond_init(PC(c), NULL));
}

int cnd_signal(cnd_t *c)
{
    return result(pthread_cond_signal(PC(c)));
}

int cnd_broadcast(cnd_t *c)
{
    return result(pthread_cond_broadcast(PC(c)));
}

int cnd_wait(cnd_t *c, mtx_t *m)
{
    return result(pthread_cond_wait(PC(c), PM(m)));
}

int cnd_timedwait(cnd_t *restrict c, mtx_t *restrict m, const struct timespec *restrict ts)
{
    return result(pthread_cond_timedwait(PC(c), PM(m), ts));
}

void cnd_destroy(cnd_t *c)
{
    pthread_cond_destroy(PC(c));
}
