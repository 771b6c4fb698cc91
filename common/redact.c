/*
 * redact.c — masks secrets in text before it reaches logs, errors or reports
 * (see redact.h).
 *
 * One in-place scanner handles the pattern layers: userinfo in URLs
 * (removed by vb_redact_url, masked in free text), values of secret-looking
 * query parameters, and "Bearer"/"Authorization:" values. Registered secrets
 * are replaced afterwards. Every replacement is at most as long as what it
 * replaces, so text never grows. The registry is guarded by a mutex.
 */
#include "visionbatch/redact.h"

#include <pthread.h>
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

/* Writes the mask for a value of `len` bytes at w; returns bytes written
 * (never more than len). */
static size_t put_mask(char *w, size_t len)
{
    size_t m = len < 3 ? len : 3;
    memset(w, '*', m);
    return m;
}

/* The pattern layers, in place. `drop_userinfo` removes user:pass@ instead
 * of masking it. */
static void scrub_patterns(char *s, int drop_userinfo)
{
    char *r = s, *w = s;
    while (*r) {
        if (strncmp(r, "://", 3) == 0) {
            size_t n = strcspn(r + 3, "/?#@ \t\r\n\"'<>");
            memmove(w, r, 3);
            w += 3;
            r += 3;
            if (r[n] == '@' && n > 0) {
                if (!drop_userinfo) {
                    w += put_mask(w, n);
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
                w += put_mask(w, v);
                r += v;
                continue;
            }
        }
        if (strncasecmp(r, "Bearer ", 7) == 0 ||
            (strncasecmp(r, "Authorization: ", 15) == 0 && strncasecmp(r + 15, "Bearer ", 7))) {
            size_t k = r[0] == 'B' || r[0] == 'b' ? 7 : 15;
            memmove(w, r, k);
            w += k;
            r += k;
            size_t v = strcspn(r, " \t\r\n\"'<>,;");
            w += put_mask(w, v);
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
    scrub_patterns(text, 0);
    scrub_secrets(text);
}

char *vb_redact_url(const char *url, char *out, size_t outlen)
{
    if (!out || outlen == 0)
        return out;
    char *copy = strdup(url ? url : "");
    if (!copy) {
        snprintf(out, outlen, "%s", "(url)");
        return out;
    }
    scrub_patterns(copy, 1);
    scrub_secrets(copy);
    snprintf(out, outlen, "%s", copy);
    free(copy);
    return out;
}
