/*
 * utf8.h — UTF-8 validation, repair and cutting of untrusted text.
 *
 * Text from the platform (a run's user_query, a descriptions file) ends up in
 * JSON sent to the backend and on Kafka, so it must be valid UTF-8 there. The
 * rule is the one the logs use: every byte that does not start a complete,
 * valid sequence (overlong forms, surrogates, code points above U+10FFFF,
 * stray continuation bytes, sequences cut short) becomes U+FFFD, and nothing
 * else changes. Internal to libvisionbatch; stateless and thread-safe.
 */
#ifndef VISIONBATCH_UTF8_H
#define VISIONBATCH_UTF8_H

#include <stddef.h>

#define VB_UTF8_REPLACEMENT "\xef\xbf\xbd" /* U+FFFD */

/* Length (1-4) of the valid UTF-8 sequence at s, reading at most `avail`
 * bytes (avail >= 1), or 0 when the bytes there are not valid UTF-8. */
size_t vb__utf8_seq_len(const unsigned char *s, size_t avail);

/* A malloc'd NUL-terminated copy of s[0..len) in which every byte that is not
 * part of a valid sequence is replaced by U+FFFD; *replaced (may be NULL)
 * receives how many were. NULL when out of memory. */
char *vb__utf8_repair(const char *s, size_t len, size_t *replaced);

/* Length of the longest prefix of s[0..len), at most max bytes, that does
 * not end inside a UTF-8 sequence (a cut never splits a character). */
size_t vb__utf8_cut(const char *s, size_t len, size_t max);

#endif
