/*
 * util.h — small helpers that several library modules need: clocks, UTF-8
 * cutting and hex digits. Internal to libvisionbatch; every function is
 * stateless and thread-safe.
 */
#ifndef VISIONBATCH_UTIL_H
#define VISIONBATCH_UTIL_H

#include <stddef.h>

/* Wall-clock time in unix milliseconds (CLOCK_REALTIME). */
long long vb__now_ms(void);

/* Milliseconds of CLOCK_MONOTONIC: for intervals and deadlines. */
long long vb__mono_ms(void);

/* Length of the longest prefix of s[0..len), at most max bytes, that does
 * not end inside a UTF-8 sequence (a cut never splits a character). */
size_t vb__utf8_cut(const char *s, size_t len, size_t max);

/* Value of the hex digit c (either case), or -1. */
int vb__hexval(int c);

#endif
