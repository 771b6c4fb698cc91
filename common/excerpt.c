/*
 * excerpt.c — bounded, redacted, single-line excerpts of untrusted text (see
 * excerpt.h). Works on a heap copy of a window of the input so the caller's
 * buffer is never modified. Stateless and thread-safe.
 */
#include "excerpt.h"

#include <stdlib.h>
#include <string.h>

#include "utf8.h"
#include "visionbatch/redact.h"

/* Redaction runs on a window larger than the excerpt so a secret that starts
 * inside the excerpt but ends after it is still recognised as a whole. */
#define EXCERPT_SLACK 4096

char *vb__excerpt(const char *text, size_t len, size_t max_chars, char *out, size_t outlen)
{
    if (!out || outlen == 0)
        return out;
    out[0] = '\0';
    if (!text || len == 0)
        return out;
    size_t keep = max_chars < outlen - 1 ? max_chars : outlen - 1;
    size_t win = len < keep + EXCERPT_SLACK ? len : keep + EXCERPT_SLACK;
    char *copy = malloc(win + 1);
    if (!copy)
        return out;
    memcpy(copy, text, win);
    copy[win] = '\0'; /* an embedded NUL simply ends the excerpt early */
    for (size_t i = 0; i < win && copy[i]; i++) {
        unsigned char c = (unsigned char)copy[i];
        if (c < 0x20 || c == 0x7f)
            copy[i] = ' ';
    }
    vb_redact_text(copy);
    size_t n = vb__utf8_cut(copy, strlen(copy), keep); /* never half a character */
    memcpy(out, copy, n);
    out[n] = '\0';
    free(copy);
    return out;
}
