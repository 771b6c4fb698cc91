/*
 * log.c — one line per event, to the log file and/or stderr (see log.h).
 *
 * A line is built completely on the caller's stack (capped at VB_LOG_LINE_MAX
 * bytes; longer messages end in "…"), redacted, and then written with a
 * single write() per destination while holding one mutex, so lines from
 * different threads never interleave and O_APPEND keeps concurrent processes
 * writing to the same file from tearing lines either.
 *
 * The message is redacted whole (before truncation and before JSON escaping)
 * so neither a cut nor an escape can hide a secret from the patterns. Text
 * lines escape newlines ("\n") so one event is one line; both formats replace
 * bytes that are not valid UTF-8 with U+FFFD.
 *
 * Level names in text lines are DEBUG, INFO, WARNING, ERROR (what the
 * operator guide greps for). The run id is a per-thread copy (__thread).
 * Logging never fails: write errors are ignored.
 */
#include "visionbatch/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "utf8.h"
#include "visionbatch/redact.h"

#define VB_LOG_LINE_MAX 8192
#define VB_LOG_RUN_MAX 128
#define VB_LOG_ELLIPSIS "\xe2\x80\xa6" /* … */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = -1;
static atomic_int log_format = VB_LOG_TEXT;
static atomic_int log_min_level = VB_LOG_INFO;
static atomic_int log_to_stderr = 1;

static __thread char run_id[VB_LOG_RUN_MAX];

static const char *const text_names[] = {"DEBUG", "INFO", "WARNING", "ERROR"};
static const char *const json_names[] = {"debug", "info", "warning", "error"};

void vb_log_open(const char *path, vb_log_format format, vb_log_level min_level)
{
    atomic_store(&log_format, format == VB_LOG_JSON ? VB_LOG_JSON : VB_LOG_TEXT);
    atomic_store(&log_min_level, min_level);
    pthread_mutex_lock(&log_lock);
    if (log_fd >= 0) {
        close(log_fd);
        log_fd = -1;
    }
    if (path && path[0]) {
        log_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (log_fd < 0) {
            int e = errno;
            char line[512];
            int n = snprintf(line, sizeof line,
                             "visionbatch: cannot open log file %s: %s; logging to stderr only\n",
                             path, strerror(e));
            if (n > 0) {
                vb_redact_text(line);
                ssize_t w = write(STDERR_FILENO, line, strlen(line));
                (void)w;
            }
            /* The lines must go somewhere. */
            atomic_store(&log_to_stderr, 1);
        }
    }
    pthread_mutex_unlock(&log_lock);
}

void vb_log_set_stderr(int enabled)
{
    atomic_store(&log_to_stderr, enabled ? 1 : 0);
}

void vb_log_close(void)
{
    pthread_mutex_lock(&log_lock);
    if (log_fd >= 0)
        close(log_fd);
    log_fd = -1;
    pthread_mutex_unlock(&log_lock);
}

void vb_log_set_run(const char *id)
{
    size_t n = 0;
    if (id) {
        /* Run ids come from the network: keep them printable and short. */
        for (; id[n] && n + 1 < sizeof run_id; n++) {
            unsigned char c = (unsigned char)id[n];
            run_id[n] = (c > ' ' && c < 0x7f && c != '"' && c != '\\') ? (char)c : '_';
        }
    }
    run_id[n] = '\0';
}

int vb_log_level_parse(const char *s)
{
    if (!s)
        return -1;
    if (strcasecmp(s, "debug") == 0)
        return VB_LOG_DEBUG;
    if (strcasecmp(s, "info") == 0)
        return VB_LOG_INFO;
    if (strcasecmp(s, "warn") == 0 || strcasecmp(s, "warning") == 0)
        return VB_LOG_WARN;
    if (strcasecmp(s, "error") == 0)
        return VB_LOG_ERROR;
    return -1;
}

int vb_log_format_parse(const char *s)
{
    if (!s)
        return -1;
    if (strcasecmp(s, "text") == 0)
        return VB_LOG_TEXT;
    if (strcasecmp(s, "json") == 0)
        return VB_LOG_JSON;
    return -1;
}

/* A bounded line being assembled: `room` reserves space for the ending. */
typedef struct line_out {
    char *p;
    size_t len;
    size_t cap; /* usable bytes for content (excluding reserved tail) */
    int full;
} line_out;

static int put(line_out *o, const char *s, size_t n)
{
    if (o->full || n > o->cap - o->len) {
        o->full = 1;
        return 0;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
    return 1;
}

static void put_str(line_out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* Appends `s` escaped for the format; stops (o->full) at the cap without
 * splitting an escape or a UTF-8 sequence. */
static void put_escaped(line_out *o, const char *s, int json)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t len = strlen(s);
    for (size_t i = 0; i < len && !o->full;) {
        unsigned char c = u[i];
        char esc[8];
        if (c == '\n') {
            put(o, "\\n", 2);
        } else if (c == '\r') {
            put(o, "\\r", 2);
        } else if (c == '\t') {
            put(o, json ? "\\t" : "\t", json ? 2 : 1);
        } else if (json && c == '"') {
            put(o, "\\\"", 2);
        } else if (json && c == '\\') {
            put(o, "\\\\", 2);
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            put(o, esc, 6);
        } else if (c < 0x80) {
            put(o, (const char *)&u[i], 1);
        } else {
            size_t n = vb__utf8_seq_len(u + i, len - i);
            if (n == 0) {
                put(o, VB_UTF8_REPLACEMENT, 3);
                i++;
                continue;
            }
            put(o, (const char *)&u[i], n);
            i += n;
            continue;
        }
        i++;
    }
}

static void timestamp(char *out, size_t outlen)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char base[32];
    if (strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        base[0] = '\0';
    int ms = (int)((ts.tv_nsec / 1000000L) % 1000);
    snprintf(out, outlen, "%.20s.%03dZ", base, ms);
}

static void write_all(int fd, const char *p, size_t n)
{
    /* One write() per line; retry only what a signal or a short write left. */
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

void vb_log(vb_log_level level, const char *fmt, ...)
{
    if ((int)level < VB_LOG_DEBUG || level > VB_LOG_ERROR)
        level = VB_LOG_ERROR;
    if ((int)level < atomic_load(&log_min_level))
        return;
    int json = atomic_load(&log_format) == VB_LOG_JSON;

    /* Format the whole message (even past the cap) so redaction sees every
     * secret complete; only then cut it to the line size. */
    char small[VB_LOG_LINE_MAX];
    char *msg = small;
    va_list ap;
    va_start(ap, fmt);
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        snprintf(small, sizeof small, "(unformattable log message)");
    } else if ((size_t)n >= sizeof small) {
        char *big = malloc((size_t)n + 1);
        if (big) {
            vsnprintf(big, (size_t)n + 1, fmt, ap2);
            msg = big;
        }
    }
    va_end(ap2);
    vb_redact_text(msg);

    char ts[64];
    timestamp(ts, sizeof ts);

    char line[VB_LOG_LINE_MAX];
    const char *tail = json ? "\"}\n" : "\n";
    size_t reserve = strlen(tail) + strlen(VB_LOG_ELLIPSIS);
    line_out o = {.p = line, .len = 0, .cap = sizeof line - 1 - reserve, .full = 0};
    if (json) {
        put_str(&o, "{\"ts\":\"");
        put_str(&o, ts);
        put_str(&o, "\",\"level\":\"");
        put_str(&o, json_names[level]);
        put_str(&o, "\"");
        if (run_id[0]) {
            put_str(&o, ",\"run\":\"");
            put_escaped(&o, run_id, 1);
            put_str(&o, "\"");
        }
        put_str(&o, ",\"msg\":\"");
    } else {
        char head[96];
        snprintf(head, sizeof head, "%s %-5s ", ts, text_names[level]);
        put_str(&o, head);
        if (run_id[0]) {
            put_str(&o, "run=");
            put_escaped(&o, run_id, 0);
            put_str(&o, " ");
        }
    }
    put_escaped(&o, msg, json);
    int truncated = o.full || (msg == small && n >= 0 && (size_t)n >= sizeof small);
    /* The reserve guarantees room for the ellipsis and the ending. */
    o.cap = sizeof line - 1;
    o.full = 0;
    if (truncated)
        put_str(&o, VB_LOG_ELLIPSIS);
    put_str(&o, tail);
    line[o.len] = '\0';
    if (msg != small)
        free(msg);

    pthread_mutex_lock(&log_lock);
    if (log_fd >= 0)
        write_all(log_fd, line, o.len);
    if (atomic_load(&log_to_stderr) || log_fd < 0)
        write_all(STDERR_FILENO, line, o.len);
    pthread_mutex_unlock(&log_lock);
}
