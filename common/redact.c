/*
 * redact.c — masks secrets in text before it reaches logs, errors or reports
 * (see redact.h).
 *
 * One scanner handles the pattern layers: userinfo in URLs
 * (removed by vb_redact_url, masked in free text), values of secret-looking
 * query parameters, and "Bearer"/"Authorization:" values. Registered secrets
 * are replaced afterwards. In free text every replacement is at most as
 * long as what it replaces, so text never grows; URLs are rewritten into a
 * fresh buffer and always get the full mask. The registry is guarded by a mutex.
 */
#include "visionbatch/redact.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define REDACT_MASK "***"
#define REDACT_MAX_SECRETS 32

static pthread_mutex_t secrets_mu = PTHREAD_MUTEX_INITIALIZER;
static char *secrets[REDACT_MAX_SECRETS];
static size_t nsecrets;

static const char *const secret_params[] = {
    "sig",  "signature", "token",    "access_token", "key", "api_key",
    "apikey", "password", "secret", "code",         "client_secret", "refresh_token",
};

void vb_redact_add_secret(const char *secret)
{
    if (!secret || strlen(secret) < 4)
        return;
    pthread_mutex_lock(&secrets_mu);
    for (size_t i = 0; i < nsecrets; i++)
        if (strcmp(secrets[i], secret) == 0)
            goto out;
    if (nsecrets < REDACT_MAX_SECRETS) {
        char *copy = strdup(secret);
        if (copy)
            secrets[nsecrets++] = copy;
    }
out:
    pthread_mutex_unlock(&secrets_mu);
}

void vb_redact_clear_secrets(void)
{
    pthread_mutex_lock(&secrets_mu);
    for (size_t i = 0; i < nsecrets; i++)
        free(secrets[i]);
    nsecrets = 0;
    pthread_mutex_unlock(&secrets_mu);
}

static int is_secret_param(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof secret_params / sizeof secret_params[0]; i++)
        if (strlen(secret_params[i]) == len && strncasecmp(name, secret_params[i], len) == 0)
            return 1;
    return 0;
}

static int ends_value(char c)
{
    return c == '\0' || c == '&' || c == '#' || c == ' ' || c == '\t' || c == '\r' ||
           c == '\n' || c == '"' || c == '\'' || c == '<' || c == '>' || c == ';' || c == ',';
}

static int is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-' || c == '.';
}

/* Writes the mask for a value of `len` bytes at w; returns bytes written.
 * In place (`fit`), it never writes more than len, so text cannot grow. */
static size_t put_mask(char *w, size_t len, int fit)
{
    size_t m = fit && len < 3 ? len : 3;
    memset(w, '*', m);
    return m;
}

/* The pattern layers, from src to dst (which may be src itself when
 * `in_place`; otherwise dst holds at least 3 * strlen(src) + 1 bytes). URL
 * mode removes user:pass@ instead of masking it. */
static void scrub_patterns(const char *src, char *dst, int in_place, int url_mode)
{
    const char *r = src;
    char *w = dst;
    while (*r) {
        if (strncmp(r, "://", 3) == 0) {
            size_t n = strcspn(r + 3, "/?#@ \t\r\n\"'<>");
            memmove(w, r, 3);
            w += 3;
            r += 3;
            if (r[n] == '@' && n > 0) {
                if (!url_mode) {
                    w += put_mask(w, n, in_place);
                    *w++ = '@';
                }
                r += n + 1;
            }
            continue;
        }
        if ((*r == '?' || *r == '&') && is_name_char(r[1])) {
            size_t n = 1;
            while (is_name_char(r[n]))
                n++;
            if (r[n] == '=' && is_secret_param(r + 1, n - 1)) {
                memmove(w, r, n + 1);
                w += n + 1;
                r += n + 1;
                size_t v = 0;
                while (!ends_value(r[v]))
                    v++;
                w += put_mask(w, v, in_place);
                r += v;
                continue;
            }
        }
        size_t k = 0, v = 0;
        if (strncasecmp(r, "Bearer ", 7) == 0) {
            k = 7;
            v = strcspn(r + k, " \t\r\n\"'<>,;");
        } else if (strncasecmp(r, "Authorization:", 14) == 0) {
            /* Whatever the scheme, the rest of the header line is the credential. */
            k = 14;
            while (r[k] == ' ')
                k++;
            v = strcspn(r + k, "\r\n\"'<>");
        }
        if (k) {
            memmove(w, r, k);
            w += k;
            r += k;
            w += put_mask(w, v, in_place);
            r += v;
            continue;
        }
        *w++ = *r++;
    }
    *w = '\0';
}

static void scrub_secrets(char *s)
{
    pthread_mutex_lock(&secrets_mu);
    for (size_t i = 0; i < nsecrets; i++) {
        size_t len = strlen(secrets[i]);
        char *p;
        while ((p = strstr(s, secrets[i])) != NULL) {
            memcpy(p, REDACT_MASK, 3);
            memmove(p + 3, p + len, strlen(p + len) + 1);
        }
    }
    pthread_mutex_unlock(&secrets_mu);
}

void vb_redact_text(char *text)
{
    if (!text)
        return;
    scrub_patterns(text, text, 1, 0);
    scrub_secrets(text);
}

char *vb_redact_url(const char *url, char *out, size_t outlen)
{
    if (!out || outlen == 0)
        return out;
    if (!url)
        url = "";
    size_t len = strlen(url);
    char *copy = len < SIZE_MAX / 4 ? malloc(3 * len + 1) : NULL;
    if (!copy) {
        snprintf(out, outlen, "%s", "(url)");
        return out;
    }
    scrub_patterns(url, copy, 0, 1);
    scrub_secrets(copy);
    snprintf(out, outlen, "%s", copy);
    free(copy);
    return out;
}
