/*
 * util.c — clocks, UTF-8 cutting and hex digits shared by library modules
 * (see util.h). Stateless and thread-safe.
 */
#include "util.h"

#include <time.h>

static long long clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long vb__now_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}

long long vb__mono_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

size_t vb__utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t cut = max;
    while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80)
        cut--;
    return cut;
}

int vb__hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}
