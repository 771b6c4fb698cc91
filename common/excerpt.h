/*
 * excerpt.h — short, safe excerpts of untrusted text for error messages.
 *
 * Answers from the platform and the backend are quoted in error messages and
 * logs ("API returned 500: <excerpt>"). An excerpt is bounded, has control
 * characters replaced by spaces (no forged log lines) and has passed through
 * vb_redact_text() *before* truncation, so a secret cut in half by the
 * truncation is still masked. Internal to libvisionbatch; thread-safe.
 */
#ifndef VISIONBATCH_EXCERPT_H
#define VISIONBATCH_EXCERPT_H

#include <stddef.h>

/* Writes at most min(max_chars, outlen - 1) bytes of text[0..len) into out
 * (always NUL-terminated; "" for NULL text). Returns out. */
char *vb__excerpt(const char *text, size_t len, size_t max_chars, char *out, size_t outlen);

#endif
