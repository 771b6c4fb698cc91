/*
 * redis.h — the one Redis layer of libvisionbatch: the URL grammar, a
 * self-healing connection, the script cache and the translation of every
 * hiredis failure into a vb_error. store.c (run state and locks), jobs.c and
 * jobs_exec.c (cron jobs and executions) and config.c (validation of
 * `redis_url`) all sit on it; nothing else in the library talks to hiredis.
 * Internal to the library (hiredis types appear here), hence not under
 * include/.
 *
 * URL grammar (scheme case-insensitive, as RFC 3986 says; the userinfo rule
 * is redis-cli's):
 *     redis://[userinfo@]host[:port][/db]      port 6379, db 0 by default
 *     rediss://[userinfo@]host[:port][/db]     the same over TLS
 *     unix://[userinfo@]/absolute/path[?db=N]  db 0 by default
 *   userinfo is `user:password` (ACL user), `:password` or `password` — with
 *   no ':' the whole userinfo is the password of the default user, as in
 *   redis-cli and the IANA registration of the scheme. The first ':' splits
 *   user from password; the last '@' before the first '/' ends the userinfo
 *   (a password may hold ':' and '@' unencoded; '/', '?', '#', '%' and
 *   spaces must be percent-encoded). host is a name of [A-Za-z0-9._-] or a
 *   bracketed IPv6 literal; db is 0–99999 (the server decides how many exist).
 * Refused: empty credentials (`@host`, `:@host`), a user without a password,
 * query strings and fragments (unix:// takes only ?db=N), spaces and control
 * characters, URLs over 2048 bytes, and `rediss://` in a build without TLS
 * (hiredis < 1.0 or without hiredis_ssl, as on Debian 12: VB_HAVE_REDIS_TLS
 * unset), so TLS is refused when the URL is read, not when the first command
 * fails.
 *
 * TLS (tls.c). A rediss:// connection verifies the server's certificate
 * against the process's CA bundle (the system's unless configured) and its
 * name (or IP address) against the URL's host; TLS 1.2 at least. The CA file,
 * an optional client certificate and key (and the key's password) are set
 * once per process with vb__redis_tls_configure(), which config.c calls when
 * it reads a rediss:// redis_url, so a bad file fails at start.
 *
 * Connection. vb__redis_new() parses, connects with a connect timeout, sends
 * AUTH (user + password, or password only), SELECT and CLIENT SETNAME, and
 * sets the command timeout and TCP keepalive. A command that fails on the
 * connection (reset, EOF, timeout) drops the context and fails with
 * VB_ERR_REDIS; the next call reconnects. A failed reconnect starts an
 * exponential backoff (100 ms doubling to 5 s) during which calls fail fast
 * without touching the network; a successful connect resets it. Commands are
 * never re-sent: a lost reply may hide an executed write, so the caller
 * decides. SIGPIPE is blocked in the calling thread while a command is
 * written, so a reset connection is an error, never a signal.
 *
 * Scripts are run with EVALSHA; the SHA-1 of each script text is computed
 * once per connection (cached by the text's address, so pass string
 * constants). When the server answers NOSCRIPT (after a restart or SCRIPT
 * FLUSH) the script is sent once with EVAL, which also reloads it.
 *
 * Errors: a failure of Redis or of the connection is VB_ERR_REDIS with a
 * message "redis <describe()>: …" (besides: VB_ERR_CONFIG for a bad URL,
 * VB_ERR_INVALID for a bad client name, VB_ERR_NOMEM, VB_ERR_CRYPTO when no
 * SHA-1 can be computed). No message and no describe() output ever contains
 * the URL's password: a message that would repeat it is withheld whole.
 *
 * Threading: a vb__redis is used by one thread at a time (callers that share
 * one hold their own mutex); distinct connections are independent.
 * Ownership: the connection owns its context and a copy of the parsed URL,
 * wiped on free; replies are owned by the caller (freeReplyObject()).
 */
#ifndef VISIONBATCH_REDIS_H
#define VISIONBATCH_REDIS_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "visionbatch/error.h"

/* ---- URL ---- */

/* A parsed Redis URL. Plain value; holds the password, so wipe it with
 * vb__redis_url_clear() when done. */
typedef struct vb__redis_url {
    int is_unix;        /* 1: unix socket at `path` */
    int tls;            /* 1: rediss:// */
    char host[256];     /* TCP host (brackets of an IPv6 literal removed) */
    int port;           /* TCP port, 1–65535 */
    char path[108];     /* unix socket path */
    int db;             /* database number, 0–99999 */
    char user[128];     /* ACL user name, "" = default user */
    char password[256]; /* "" = no AUTH */
} vb__redis_url;

/* Parses `url` into *out (zeroed first; wiped again on failure). Fails with
 * VB_ERR_CONFIG and a message naming the problem, which never quotes the
 * URL. `err` may be NULL. Thread-safe. */
vb_err vb__redis_url_parse(const char *url, vb__redis_url *out, vb_error *err);

/* Wipes the password (and everything else) from *u. NULL is accepted. */
void vb__redis_url_clear(vb__redis_url *u);

/* Writes "host:port/db", "[v6]:port/db", "unix:/path/db", or with TLS
 * "tls:host:port/db", into out (always NUL-terminated): the printable form,
 * without credentials. Returns out. */
char *vb__redis_url_describe(const vb__redis_url *u, char *out, size_t outlen);

/* ---- TLS (rediss://) ---- */

/* Why rediss:// is refused by a build without TLS. */
#define VB__REDIS_NO_TLS                                                                    \
    "rediss:// (Redis over TLS) is not supported by this build: it needs hiredis >= 1.0 "  \
    "with hiredis_ssl (Debian 13's libhiredis-dev); use redis:// or a TLS-enabled build"

/* TLS client settings of the process. Paths of PEM files; NULL or "" = not
 * set. The key password is a secret: used while the key loads, never kept. */
typedef struct vb__redis_tls_opts {
    const char *ca_file;      /* CA bundle of the server's certificate; unset = the system's */
    const char *cert_file;    /* client certificate (chain); with key_file */
    const char *key_file;     /* its private key */
    const char *key_password; /* of an encrypted key_file */
} vb__redis_tls_opts;

/* 1 when this build speaks TLS to Redis, else 0. */
int vb__redis_tls_available(void);

/* Loads the CA bundle, certificate and key of `o` (NULL = the system's CAs,
 * no client certificate) now, and makes them the settings of every rediss://
 * connection made afterwards. VB_ERR_CONFIG naming the setting and the file
 * when one cannot be loaded (or the key does not match the certificate, or
 * this build has no TLS); the settings in place are then kept. Call before
 * the threads that connect start. */
vb_err vb__redis_tls_configure(const vb__redis_tls_opts *o, vb_error *err);

/* Drops the configured settings (tests). */
void vb__redis_tls_reset(void);

/* Runs the TLS handshake on a connected context (conn.c): VB_OK, or
 * VB_ERR_REDIS with the reason in why (an untrusted or misnamed certificate
 * says so). */
vb_err vb__redis_tls_handshake(redisContext *ctx, const char *host, char *why, size_t whylen);

/* ---- connection ---- */

typedef struct vb__redis vb__redis;

typedef struct vb__redis_opts {
    long connect_timeout_ms; /* 0 = 5000 */
    long command_timeout_ms; /* 0 = 10000 */
    const char *client_name; /* CLIENT SETNAME on every connect; NULL = none;
                                1–64 printable characters, no spaces */
    int lazy;                /* 1: do not connect in vb__redis_new (first call does) */
    long long (*clock_ms)(void); /* monotonic ms for the backoff; NULL = CLOCK_MONOTONIC */
} vb__redis_opts;

/* Counters of one connection, for tests and diagnostics. */
typedef struct vb__redis_stats {
    unsigned long connects;         /* successful connects (the first included) */
    unsigned long connect_failures; /* failed connect attempts */
    unsigned long script_reloads;   /* EVAL fallbacks after NOSCRIPT */
} vb__redis_stats;

/* Parses `url` and (unless opts->lazy) connects. On VB_OK *out owns the
 * connection (free with vb__redis_free). VB_ERR_CONFIG for a bad URL,
 * VB_ERR_INVALID for a bad client name, VB_ERR_REDIS when Redis is
 * unreachable or refuses AUTH/SELECT; *out is then NULL. `opts` may be NULL. */
vb_err vb__redis_new(const char *url, const vb__redis_opts *opts, vb__redis **out,
                     vb_error *err);

/* Closes the connection and wipes the credentials. NULL is accepted. */
void vb__redis_free(vb__redis *c);

/* The URL's printable form (see vb__redis_url_describe); lives as long as c. */
const char *vb__redis_describe(const vb__redis *c);

void vb__redis_get_stats(const vb__redis *c, vb__redis_stats *out);

/* Runs one command, (re)connecting first if needed. Returns the reply, an
 * error reply included, or NULL with err set when the connection failed (the
 * context is then dropped). `lens` may be NULL for NUL-terminated args. */
redisReply *vb__redis_call(vb__redis *c, int argc, const char **argv, const size_t *lens,
                           vb_error *err);

/* As vb__redis_call, but an error reply becomes NULL with err set too. */
redisReply *vb__redis_command(vb__redis *c, int argc, const char **argv, const size_t *lens,
                              vb_error *err);

/* Runs `script` (a string constant) with argv = {numkeys, keys…, args…},
 * exactly what EVAL takes after the script. EVALSHA first, EVAL after
 * NOSCRIPT. An error reply becomes NULL with err set. */
redisReply *vb__redis_eval(vb__redis *c, const char *script, int argc, const char **argv,
                           const size_t *lens, vb_error *err);

/* Pipelining: sends n commands of argc arguments each (argv holds them row
 * by row, n * argc NUL-terminated strings) in one write and reads the n
 * replies in order — one round trip instead of n. On VB_OK replies[0..n) are
 * set, error replies included (the caller frees each); on failure every
 * replies[i] is NULL and the context is dropped. */
vb_err vb__redis_pipeline(vb__redis *c, size_t n, int argc, const char **argv,
                          redisReply **replies, vb_error *err);

/* Sets err to "redis <desc>: unexpected reply to <what>"; returns VB_ERR_REDIS. */
vb_err vb__redis_unexpected(const vb__redis *c, const char *what, vb_error *err);

#endif
