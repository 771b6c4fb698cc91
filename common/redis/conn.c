/*
 * conn.c — one self-healing hiredis connection (see redis.h): connect with
 * AUTH/SELECT/CLIENT SETNAME, reconnect with exponential backoff, the SIGPIPE
 * guard, the per-connection script cache (EVALSHA, EVAL after NOSCRIPT),
 * pipelining, and the single place where hiredis failures become vb_errors.
 *
 * Invariants: `ctx` is NULL while disconnected; every failure on the
 * connection frees it, so a context is never reused after an I/O error
 * (hiredis leaves it unusable). Error replies from the server leave it in
 * place. Threading: one thread at a time per connection.
 */
#include "redis/redis.h"

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "util.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define DETAIL_MAX 200 /* bytes of a server or hiredis message we repeat */
#define ARGV_STACK 64  /* eval arguments handled without allocating */

typedef struct script_sha {
    const char *text; /* the caller's constant: the cache key */
    char sha[41];
} script_sha;

struct vb__redis {
    vb__redis_url url;
    redisContext *ctx;
    struct timeval connect_tv;
    struct timeval command_tv;
    char client_name[65];         /* "" = none */
    long long (*clock_ms)(void);  /* monotonic ms */
    long long reconnect_at;       /* clock ms before which calls fail fast */
    long backoff_ms;              /* 0 after a successful connect */
    char desc[400];
    vb__redis_stats stats;
    script_sha *scripts;
    size_t nscripts, capscripts;
};

/* ---- the one error translation ---- */

/* Sets err to "redis <desc>: <what>[: <detail>]". `detail` is a message from
 * the server or hiredis, `what` may name a command; a message that would
 * repeat the password (checked before truncation) is withheld whole. */
static vb_err fail(const vb__redis *c, vb_err code, const char *what, const char *detail,
                   vb_error *err)
{
    const char *pw = c->url.password;
    if (pw[0] && (strstr(what, pw) || (detail && strstr(detail, pw))))
        return vb_error_set(err, code, "redis %s: (message withheld: it contains a credential)",
                            c->desc);
    if (!detail)
        return vb_error_set(err, code, "redis %s: %s", c->desc, what);
    return vb_error_set(err, code, "redis %s: %s: %.*s", c->desc, what, DETAIL_MAX, detail);
}

vb_err vb__redis_unexpected(const vb__redis *c, const char *what, vb_error *err)
{
    return vb_error_set(err, VB_ERR_REDIS, "redis %s: unexpected reply to %s", c->desc, what);
}

/* A failure of the connection itself: drops the context so the next call
 * reconnects. errno is the one the failed call left. */
static void connection_failed(vb__redis *c, vb_error *err)
{
    int timed_out = c->ctx->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK);
    if (timed_out)
        fail(c, VB_ERR_REDIS, "command timed out", NULL, err);
    else
        fail(c, VB_ERR_REDIS, "connection failed", c->ctx->errstr, err);
    redisFree(c->ctx);
    c->ctx = NULL;
}

/* ---- SIGPIPE guard ---- */

/* hiredis writes with write(2): a write to a connection the server has reset
 * would raise SIGPIPE and kill the process. The guard blocks it in this
 * thread for the duration of a command and consumes one raised meanwhile
 * (unless one was already pending for another reason). errno is preserved. */
typedef struct pipe_guard {
    sigset_t set, old;
    int was_pending;
} pipe_guard;

static void guard_begin(pipe_guard *g)
{
    sigset_t pending;
    sigemptyset(&g->set);
    sigaddset(&g->set, SIGPIPE);
    sigemptyset(&pending);
    pthread_sigmask(SIG_BLOCK, &g->set, &g->old);
    sigpending(&pending);
    g->was_pending = sigismember(&pending, SIGPIPE);
}

static void guard_end(pipe_guard *g)
{
    int saved = errno;
    sigset_t pending;
    sigemptyset(&pending);
    if (!g->was_pending && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
        struct timespec zero = {0, 0};
        sigtimedwait(&g->set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
    errno = saved;
}

static redisReply *guarded_command(redisContext *ctx, int argc, const char **argv,
                                   const size_t *lens)
{
    pipe_guard g;
    guard_begin(&g);
    redisReply *r = redisCommandArgv(ctx, argc, argv, lens);
    guard_end(&g);
    return r;
}

/* ---- connecting ---- */

static long long default_clock(void)
{
    return vb__mono_ms();
}

static struct timeval ms_to_tv(long ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    return tv;
}

/* Sends one command during connection set-up; VB_OK on a non-error reply. */
static vb_err setup_cmd(vb__redis *c, const char *what, int argc, const char **argv,
                        vb_error *err)
{
    redisReply *r = guarded_command(c->ctx, argc, argv, NULL);
    if (!r)
        return fail(c, VB_ERR_REDIS, what, c->ctx->errstr, err);
    vb_err rc = VB_OK;
    if (r->type == REDIS_REPLY_ERROR)
        rc = fail(c, VB_ERR_REDIS, what, r->str, err);
    freeReplyObject(r);
    return rc;
}

static vb_err connect_now(vb__redis *c, vb_error *err)
{
    vb_err rc;
    c->ctx = c->url.is_unix ? redisConnectUnixWithTimeout(c->url.path, c->connect_tv)
                            : redisConnectWithTimeout(c->url.host, c->url.port, c->connect_tv);
    if (!c->ctx)
        return fail(c, VB_ERR_NOMEM, "cannot allocate a context", NULL, err);
    if (c->ctx->err) {
        rc = fail(c, VB_ERR_REDIS, "connect failed", c->ctx->errstr, err);
        goto fail;
    }
    if (redisSetTimeout(c->ctx, c->command_tv) != REDIS_OK ||
        (!c->url.is_unix && redisEnableKeepAlive(c->ctx) != REDIS_OK)) {
        rc = fail(c, VB_ERR_REDIS, "cannot set socket options", c->ctx->errstr, err);
        goto fail;
    }
    if (c->url.tls) { /* after the timeout: a stalled handshake times out too */
        char why[300];
        pipe_guard g;
        guard_begin(&g);
        rc = vb__redis_tls_handshake(c->ctx, c->url.host, why, sizeof why);
        guard_end(&g);
        if (rc != VB_OK) {
            fail(c, rc, "connect failed", why, err);
            goto fail;
        }
    }
    if (c->url.password[0]) {
        const char *argv[3] = {"AUTH", c->url.user, c->url.password};
        int argc = 3;
        if (!c->url.user[0]) {
            argv[1] = c->url.password;
            argc = 2;
        }
        if ((rc = setup_cmd(c, "authentication failed", argc, argv, err)) != VB_OK)
            goto fail;
    }
    if (c->url.db != 0) {
        char db[24];
        snprintf(db, sizeof db, "%d", c->url.db);
        const char *argv[2] = {"SELECT", db};
        if ((rc = setup_cmd(c, "SELECT failed", 2, argv, err)) != VB_OK)
            goto fail;
    }
    if (c->client_name[0]) {
        const char *argv[3] = {"CLIENT", "SETNAME", c->client_name};
        if ((rc = setup_cmd(c, "CLIENT SETNAME failed", 3, argv, err)) != VB_OK)
            goto fail;
    }
    c->stats.connects++;
    return VB_OK;
fail:
    redisFree(c->ctx);
    c->ctx = NULL;
    return rc;
}

/* Connects unless connected; while a backoff runs, fails fast. */
static vb_err ensure_connected(vb__redis *c, vb_error *err)
{
    if (c->ctx)
        return VB_OK;
    long long now = c->clock_ms();
    if (now < c->reconnect_at)
        return vb_error_set(err, VB_ERR_REDIS,
                            "redis %s: unreachable, next reconnect attempt in %lld ms", c->desc,
                            c->reconnect_at - now);
    vb_err rc = connect_now(c, err);
    if (rc != VB_OK) {
        c->stats.connect_failures++;
        c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : BACKOFF_MIN_MS;
        if (c->backoff_ms > BACKOFF_MAX_MS)
            c->backoff_ms = BACKOFF_MAX_MS;
        c->reconnect_at = c->clock_ms() + c->backoff_ms;
        return rc;
    }
    c->backoff_ms = 0;
    c->reconnect_at = 0;
    return VB_OK;
}

vb_err vb__redis_new(const char *url, const vb__redis_opts *opts, vb__redis **out,
                     vb_error *err)
{
    *out = NULL;
    vb_err rc;
    vb__redis *c = calloc(1, sizeof *c);
    if (!c)
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    if ((rc = vb__redis_url_parse(url, &c->url, err)) != VB_OK)
        goto fail;
    if (opts && opts->client_name) {
        const char *n = opts->client_name;
        size_t len = strlen(n);
        int ok = len >= 1 && len < sizeof c->client_name;
        for (size_t i = 0; ok && i < len; i++)
            ok = (unsigned char)n[i] > 0x20 && (unsigned char)n[i] < 0x7f;
        if (!ok) {
            rc = vb_error_set(err, VB_ERR_INVALID,
                              "Redis client name must be 1-64 printable characters, no spaces");
            goto fail;
        }
        memcpy(c->client_name, n, len + 1);
    }
    c->connect_tv = ms_to_tv(opts && opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms
                                                                  : 5000);
    c->command_tv = ms_to_tv(opts && opts->command_timeout_ms > 0 ? opts->command_timeout_ms
                                                                  : 10000);
    c->clock_ms = opts && opts->clock_ms ? opts->clock_ms : default_clock;
    vb__redis_url_describe(&c->url, c->desc, sizeof c->desc);
    if (!(opts && opts->lazy) && (rc = connect_now(c, err)) != VB_OK)
        goto fail;
    *out = c;
    return VB_OK;
fail:
    vb__redis_free(c);
    return rc;
}

void vb__redis_free(vb__redis *c)
{
    if (!c)
        return;
    if (c->ctx)
        redisFree(c->ctx);
    vb__redis_url_clear(&c->url);
    free(c->scripts);
    free(c);
}

const char *vb__redis_describe(const vb__redis *c)
{
    return c ? c->desc : "(none)";
}

void vb__redis_get_stats(const vb__redis *c, vb__redis_stats *out)
{
    *out = c->stats;
}

/* ---- commands ---- */

redisReply *vb__redis_call(vb__redis *c, int argc, const char **argv, const size_t *lens,
                           vb_error *err)
{
    if (ensure_connected(c, err) != VB_OK)
        return NULL;
    redisReply *r = guarded_command(c->ctx, argc, argv, lens);
    if (!r)
        connection_failed(c, err);
    return r;
}

redisReply *vb__redis_command(vb__redis *c, int argc, const char **argv, const size_t *lens,
                              vb_error *err)
{
    redisReply *r = vb__redis_call(c, argc, argv, lens, err);
    if (r && r->type == REDIS_REPLY_ERROR) {
        fail(c, VB_ERR_REDIS, argv[0], r->str, err);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

vb_err vb__redis_pipeline(vb__redis *c, size_t n, int argc, const char **argv,
                          redisReply **replies, vb_error *err)
{
    for (size_t i = 0; i < n; i++)
        replies[i] = NULL;
    if (n == 0)
        return VB_OK;
    vb_err rc = ensure_connected(c, err);
    if (rc != VB_OK)
        return rc;
    pipe_guard g;
    guard_begin(&g);
    for (size_t i = 0; i < n; i++) {
        if (redisAppendCommandArgv(c->ctx, argc, argv + i * (size_t)argc, NULL) != REDIS_OK) {
            guard_end(&g);
            /* Commands already queued would answer the next caller: drop them. */
            redisFree(c->ctx);
            c->ctx = NULL;
            return fail(c, VB_ERR_NOMEM, "cannot queue a pipelined command", NULL, err);
        }
    }
    for (size_t i = 0; i < n; i++) {
        void *r = NULL;
        if (redisGetReply(c->ctx, &r) != REDIS_OK || !r) {
            guard_end(&g);
            for (size_t k = 0; k < i; k++) {
                freeReplyObject(replies[k]);
                replies[k] = NULL;
            }
            connection_failed(c, err);
            return VB_ERR_REDIS;
        }
        replies[i] = r;
    }
    guard_end(&g);
    return VB_OK;
}

/* ---- scripts ---- */

static vb_err sha1_hex(const char *text, char out[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(text, strlen(text), md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20)
        return VB_ERR_CRYPTO;
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < 20; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[40] = '\0';
    return VB_OK;
}

/* The SHA-1 of `script`, computed on its first use on this connection. */
static const char *script_sha_of(vb__redis *c, const char *script, vb_error *err)
{
    for (size_t i = 0; i < c->nscripts; i++)
        if (c->scripts[i].text == script)
            return c->scripts[i].sha;
    if (c->nscripts == c->capscripts) {
        size_t cap = c->capscripts ? c->capscripts * 2 : 16;
        script_sha *more = realloc(c->scripts, cap * sizeof *more);
        if (!more) {
            vb_error_set(err, VB_ERR_NOMEM, "out of memory");
            return NULL;
        }
        c->scripts = more;
        c->capscripts = cap;
    }
    script_sha *e = &c->scripts[c->nscripts];
    if (sha1_hex(script, e->sha) != VB_OK) {
        vb_error_set(err, VB_ERR_CRYPTO, "cannot compute a SHA-1 digest");
        return NULL;
    }
    e->text = script;
    c->nscripts++;
    return e->sha;
}

redisReply *vb__redis_eval(vb__redis *c, const char *script, int argc, const char **argv,
                           const size_t *lens, vb_error *err)
{
    const char *sha = script_sha_of(c, script, err);
    if (!sha)
        return NULL;
    const char *stack_v[ARGV_STACK];
    size_t stack_l[ARGV_STACK];
    const char **v = stack_v;
    size_t *l = stack_l;
    size_t total = (size_t)argc + 2;
    if (total > ARGV_STACK) {
        v = malloc(total * sizeof *v);
        l = malloc(total * sizeof *l);
        if (!v || !l) {
            free(v);
            free(l);
            vb_error_set(err, VB_ERR_NOMEM, "out of memory");
            return NULL;
        }
    }
    v[0] = "EVALSHA";
    l[0] = 7;
    v[1] = sha;
    l[1] = 40;
    for (int i = 0; i < argc; i++) {
        v[i + 2] = argv[i];
        l[i + 2] = lens ? lens[i] : strlen(argv[i]);
    }
    redisReply *r = vb__redis_call(c, (int)total, v, l, err);
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(r);
        c->stats.script_reloads++;
        v[0] = "EVAL";
        l[0] = 4;
        v[1] = script;
        l[1] = strlen(script);
        r = vb__redis_call(c, (int)total, v, l, err);
    }
    if (v != stack_v) {
        free(v);
        free(l);
    }
    if (r && r->type == REDIS_REPLY_ERROR) {
        fail(c, VB_ERR_REDIS, "script failed", r->str, err);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}
