/*
 * log.h — one line per event, to a log file and to stderr.
 *
 * Text format:  2026-11-28T12:00:00.123Z INFO  run=<id> message
 * JSON format:  {"ts":"…","level":"info","run":"<id>","msg":"…"}
 * Levels are written DEBUG, INFO, WARNING, ERROR (lower case in JSON); the
 * run part is left out when the thread has no run id. Lines are capped at
 * 8 KiB (a cut message ends in "…"); newlines in a message are written as
 * "\n" so one event stays one line; invalid UTF-8 becomes U+FFFD.
 * Every message passes through vb_redact_text() before it is written, so a
 * secret that slips into a message is still never written (redact.h).
 * Thread-safe: lines from several threads never interleave. The run id is
 * per thread (vb_log_set_run) so the pipeline's lines carry it without
 * passing it through every call.
 */
#ifndef VISIONBATCH_LOG_H
#define VISIONBATCH_LOG_H

#include "visionbatch/error.h"

typedef enum vb_log_level {
    VB_LOG_DEBUG = 0,
    VB_LOG_INFO,
    VB_LOG_WARN,
    VB_LOG_ERROR,
} vb_log_level;

typedef enum vb_log_format { VB_LOG_TEXT = 0, VB_LOG_JSON } vb_log_format;

/* Opens `path` for appending (NULL or "" = stderr only). If the file cannot be
 * opened, one warning goes to stderr and logging continues on stderr only:
 * this never fails. Call once before threads start; may be called again. */
void vb_log_open(const char *path, vb_log_format format, vb_log_level min_level);
/* enabled = 0 stops writing to stderr (services under systemd that log to a
 * file only) while a log file is open; with no file open, lines still go to
 * stderr. Default: enabled. */
void vb_log_set_stderr(int enabled);
/* Closes the log file; later lines go to stderr. Safe to call twice. */
void vb_log_close(void);

/* Sets the run id shown on this thread's lines (NULL clears). Copied,
 * truncated to 127 bytes; unprintable bytes become '_'. */
void vb_log_set_run(const char *run_id);

/* Writes one line if level >= the minimum. Never fails; thread-safe. */
void vb_log(vb_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parses "debug|info|warn|warning|error" and "text|json" (any case); -1 when
 * unknown or NULL. */
int vb_log_level_parse(const char *s);
int vb_log_format_parse(const char *s);

#define VB_DEBUG(...) vb_log(VB_LOG_DEBUG, __VA_ARGS__)
#define VB_INFO(...) vb_log(VB_LOG_INFO, __VA_ARGS__)
#define VB_WARN(...) vb_log(VB_LOG_WARN, __VA_ARGS__)
#define VB_ERROR(...) vb_log(VB_LOG_ERROR, __VA_ARGS__)

#endif
