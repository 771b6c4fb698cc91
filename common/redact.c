/*
 * redact.c — scrubs secrets from text before it reaches a log, an error
 * message or a report (see redact.h).
 *
 * Three layers, applied in this order by vb_redact_text():
 *   1. registered secrets (API key, tokens), longest first, wherever they occur;
 *   2. header-style values: "Authorization: …" (to the end of the line) and
 *      "Bearer <token>";
 *   3. URL parts: userinfo ("user:pass@") after "scheme://", and the values of
 *      query or fragment parameters whose names look secret (sig, token, …);
 *      also when the whole "name=value" was percent-encoded once or more (a
 *      URL inside a query string or an error body: "sig%3D…", "sig%253D…"),
 *      where the value ends at an encoded '&' or '#' ("%26", "%2526", …).
 * Every replacement is at most as long as what it replaces ("***" for values
 * of three bytes or more, one '*' per byte below that), so redaction works in
 * place and a redacted string is never longer than the original.
 *
 * The registry is an array sorted by length (the order of layer 1) and a
 * hash set of the same strings, so registering a known secret again (every
 * cron firing registers its job's key) is one lookup with 10,000 keys too.
 *
 * Threading: the registry is process-wide and guarded by one mutex; the scrub
 * functions only read it under that mutex. Everything else is stateless.
 */
#include "visionbatch/redact.h"

#include <ctype.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

#define REDACT_MIN_SECRET 4

/* A registered secret with its length and the hash of its first
 * REDACT_MIN_SECRET bytes (head_bit), so that a scan can skip the secrets
 * that cannot occur in a text without searching for each of them. */
typedef struct secret_entry {
    char *s;
    size_t len;
    unsigned head;  /* head_bit of its first bytes */
    int has_star;   /* its first bytes hold '*', which masking creates */
} secret_entry;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static secret_entry *registry; /* sorted by length, longest first */
static size_t registry_len;    /* entries in use */
static size_t registry_cap;    /* entries allocated */
/* The registered strings again, in an open-addressing set keyed by their
 * hash, so that registering a secret already known (a cron job's key, once
 * per firing) costs one lookup, not a walk of the registry. */
static const char **known;  /* known_cap slots (a power of two), NULL = empty */
static size_t known_cap;

#define HEAD_BITS 16 /* a scan's window set: 2^16 bits (8 KiB) */
#define HEAD_SCAN_FROM 8 /* registries smaller than this are searched directly */

/* Index in the window set of the REDACT_MIN_SECRET bytes at p. */
static unsigned head_bit(const char *p)
{
    uint32_t v = (uint32_t)(unsigned char)p[0] | (uint32_t)(unsigned char)p[1] << 8 |
                 (uint32_t)(unsigned char)p[2] << 16 | (uint32_t)(unsigned char)p[3] << 24;
    return (unsigned)((v * 2654435761u) >> (32 - HEAD_BITS));
}

/* Query/fragment parameter names whose values are secrets (compared
 * case-insensitively, after percent-decoding the name). Azure SAS fields other
 * than `sig` (se, sp, sv, sr, st, spr) are harmless and stay visible, which
 * helps when debugging an expired token. */
static const char *const secret_params[] = {
    "sig",
    "signature",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "session_token",
    "sessiontoken",
    "key",
    "api_key",
    "apikey",
    "api-key",
    "password",
    "passwd",
    "pwd",
    "secret",
    "client_secret",
    "code",
    "auth",
    "authorization",
    "credential",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "x-goog-signature",
    "x-goog-credential",
};

static uint64_t secret_hash(const char *s)
{
    return vb__fnv1a_str(VB__FNV_START, s);
}

/* known_* run under registry_lock. */
static int known_has(const char *s, uint64_t h)
{
    for (size_t at = (size_t)h & (known_cap - 1); known_cap && known[at];
         at = (at + 1) & (known_cap - 1))
        if (strcmp(known[at], s) == 0)
            return 1;
    return 0;
}

static void known_put(const char *s, uint64_t h)
{
    size_t at = (size_t)h & (known_cap - 1);
    while (known[at])
        at = (at + 1) & (known_cap - 1);
    known[at] = s;
}

/* Doubles the set (16 slots at first) and refiles the registry into it. */
static int known_grow(void)
{
    size_t cap = known_cap ? known_cap * 2 : 16;
    const char **more = calloc(cap, sizeof *more);
    if (!more)
        return 0;
    free(known);
    known = more;
    known_cap = cap;
    for (size_t i = 0; i < registry_len; i++)
        known_put(registry[i].s, secret_hash(registry[i].s));
    return 1;
}

void vb_redact_add_secret(const char *secret)
{
    if (!secret)
        return;
    size_t n = strlen(secret);
    if (n < REDACT_MIN_SECRET)
        return;
    unsigned head = head_bit(secret);
    uint64_t h = secret_hash(secret);
    pthread_mutex_lock(&registry_lock);
    if (known_has(secret, h))
        goto done;
    /* the set stays at most half full: grown before the registry is */
    if ((registry_len + 1) * 2 > known_cap && !known_grow())
        goto done; /* out of memory: the other layers still apply */
    if (registry_len == registry_cap) {
        size_t cap = registry_cap ? registry_cap * 2 : 8;
        secret_entry *grown = realloc(registry, cap * sizeof *grown);
        if (!grown)
            goto done; /* out of memory: the other layers still apply */
        registry = grown;
        registry_cap = cap;
    }
    char *copy = strdup(secret);
    if (!copy)
        goto done;
    /* Longest first, so a secret that contains another is replaced whole. */
    size_t pos = 0;
    while (pos < registry_len && registry[pos].len >= n)
        pos++;
    memmove(registry + pos + 1, registry + pos, (registry_len - pos) * sizeof *registry);
    registry[pos] = (secret_entry){.s = copy,
                                   .len = n,
                                   .head = head,
                                   .has_star = memchr(secret, '*', REDACT_MIN_SECRET) != NULL};
    registry_len++;
    known_put(copy, h);
done:
    pthread_mutex_unlock(&registry_lock);
}

void vb_redact_clear_secrets(void)
{
    pthread_mutex_lock(&registry_lock);
    for (size_t i = 0; i < registry_len; i++) {
        explicit_bzero(registry[i].s, registry[i].len);
        free(registry[i].s);
    }
    free(registry);
    registry = NULL;
    registry_len = registry_cap = 0;
    free(known);
    known = NULL;
    known_cap = 0;
    pthread_mutex_unlock(&registry_lock);
}

/* Replaces text[start, start+len) (within a string of total length *total)
 * by a mask no longer than len; returns the mask's length. */
static size_t mask_span(char *text, size_t *total, size_t start, size_t len)
{
    size_t mlen = len >= 3 ? 3 : len;
    memset(text + start, '*', mlen);
    memmove(text + start + mlen, text + start + len, *total - (start + len) + 1);
    *total -= len - mlen;
    return mlen;
}

static int is_masked(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '*')
            return 0;
    }
    return 1;
}

/* With many secrets registered, only those whose first bytes occur in the
 * text are searched for: the set of the text's REDACT_MIN_SECRET-byte windows
 * is taken before any masking, and masking only shifts windows or makes
 * new ones that hold '*' (a secret starting with one is always searched). */
static void scrub_registered(char *text, size_t *total)
{
    uint64_t seen[(1u << HEAD_BITS) / 64];
    pthread_mutex_lock(&registry_lock);
    int filter = registry_len >= HEAD_SCAN_FROM && *total >= REDACT_MIN_SECRET;
    if (filter) {
        memset(seen, 0, sizeof seen);
        for (size_t i = 0; i + REDACT_MIN_SECRET <= *total; i++) {
            unsigned b = head_bit(text + i);
            seen[b / 64] |= (uint64_t)1 << (b % 64);
        }
    }
    for (size_t i = 0; i < registry_len; i++) {
        const secret_entry *e = &registry[i];
        if (filter && !e->has_star && !(seen[e->head / 64] & ((uint64_t)1 << (e->head % 64))))
            continue; /* its first bytes are nowhere in the text */
        const char *secret = e->s;
        size_t n = e->len;
        size_t from = 0;
        char *hit;
        while (from < *total && (hit = memmem(text + from, *total - from, secret, n))) {
            size_t at = (size_t)(hit - text);
            from = at + mask_span(text, total, at, n);
        }
    }
    pthread_mutex_unlock(&registry_lock);
}

static int ci_prefix(const char *s, size_t avail, const char *word)
{
    size_t n = strlen(word);
    return avail >= n && strncasecmp(s, word, n) == 0;
}

/* "Authorization: <value to end of line>" — also Proxy-Authorization, and the
 * JSON-ish `"Authorization": "…"`. */
static void scrub_headers(char *text, size_t *total)
{
    static const char *const names[] = {"authorization", "x-api-key", "cookie"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        size_t nlen = strlen(names[k]);
        for (size_t i = 0; i + nlen <= *total; i++) {
            if (!ci_prefix(text + i, *total - i, names[k]))
                continue;
            size_t p = i + nlen;
            if (p < *total && (text[p] == '"' || text[p] == '\''))
                p++;
            while (p < *total && (text[p] == ' ' || text[p] == '\t'))
                p++;
            if (p >= *total || text[p] != ':')
                continue;
            p++;
            while (p < *total && (text[p] == ' ' || text[p] == '\t'))
                p++;
            size_t end = p;
            while (end < *total && text[end] != '\n' && text[end] != '\r')
                end++;
            /* Trailing blanks are not part of the value. */
            while (end > p && (text[end - 1] == ' ' || text[end - 1] == '\t'))
                end--;
            if (end > p && !is_masked(text + p, end - p))
                end = p + mask_span(text, total, p, end - p);
            i = end > i ? end - 1 : i;
        }
    }
}

static int token_char(unsigned char c)
{
    return c > ' ' && c != '"' && c != '\'' && c != ',' && c != ';' && c != '<' && c != '>' &&
           c != 0x7f;
}

/* "Bearer <token>" (any case) → "Bearer ***". */
static void scrub_bearer(char *text, size_t *total)
{
    for (size_t i = 0; i + 6 <= *total; i++) {
        if (!ci_prefix(text + i, *total - i, "bearer"))
            continue;
        if (i > 0 && isalnum((unsigned char)text[i - 1]))
            continue;
        size_t p = i + 6;
        if (p >= *total || (text[p] != ' ' && text[p] != '\t'))
            continue;
        while (p < *total && (text[p] == ' ' || text[p] == '\t'))
            p++;
        size_t end = p;
        while (end < *total && token_char((unsigned char)text[end]))
            end++;
        if (end > p && !is_masked(text + p, end - p))
            end = p + mask_span(text, total, p, end - p);
        i = end - 1;
    }
}

static int param_is_secret(const char *name, size_t len)
{
    char dec[48];
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (n + 1 >= sizeof dec)
            return 0; /* longer than any listed name */
        int c = (unsigned char)name[i];
        if (c == '%' && i + 2 < len) {
            int hi = vb__hexval((unsigned char)name[i + 1]);
            int lo = vb__hexval((unsigned char)name[i + 2]);
            if (hi >= 0 && lo >= 0) {
                c = hi * 16 + lo;
                i += 2;
            }
        }
        dec[n++] = (char)c;
    }
    dec[n] = '\0';
    for (size_t k = 0; k < sizeof secret_params / sizeof secret_params[0]; k++) {
        if (strcasecmp(dec, secret_params[k]) == 0)
            return 1;
    }
    return 0;
}

static int url_stop(unsigned char c)
{
    return c <= ' ' || c == '"' || c == '\'' || c == '<' || c == '>' || c == '`' || c == 0x7f;
}

/* Values of secret-looking parameters after '?', '&' or '#' (query strings
 * and OAuth-style fragments), wherever they appear in the text. */
static void scrub_params(char *text, size_t *total)
{
    for (size_t i = 0; i < *total; i++) {
        char c = text[i];
        if (c != '?' && c != '&' && c != '#')
            continue;
        size_t name = i + 1;
        size_t eq = name;
        while (eq < *total && text[eq] != '=' && text[eq] != '&' && text[eq] != '#' &&
               !url_stop((unsigned char)text[eq]))
            eq++;
        if (eq >= *total || text[eq] != '=' || eq == name)
            continue;
        size_t val = eq + 1;
        size_t end = val;
        while (end < *total && text[end] != '&' && text[end] != '#' &&
               !url_stop((unsigned char)text[end]))
            end++;
        if (param_is_secret(text + name, eq - name) && end > val &&
            !is_masked(text + val, end - val))
            end = val + mask_span(text, total, val, end - val);
        i = end - 1;
    }
}

/* Length of a percent-encoded `ch` at s (an escape "%XX" whose '%' may itself
 * be encoded any number of times: "%3D", "%253D", "%25253D"), or 0. */
static size_t encoded_char_at(const char *s, size_t avail, int ch)
{
    if (avail < 3 || s[0] != '%')
        return 0;
    size_t k = 1;
    while (k + 4 <= avail && s[k] == '2' && s[k + 1] == '5')
        k += 2;
    int hi = vb__hexval((unsigned char)s[k]), lo = vb__hexval((unsigned char)s[k + 1]);
    if (hi < 0 || lo < 0 || hi * 16 + lo != ch)
        return 0;
    return k + 2;
}

static int name_char(unsigned char c)
{
    return isalnum(c) || c == '_' || c == '-' || c == '.';
}

/* "name%3Dvalue" (or %253D, …) with a secret-looking name: the name is the run
 * of name characters before the encoded '=', less the hex digits of an escape
 * it follows ("%26sig", "%2526sig"); the value runs to an encoded or raw '&'
 * or '#', or to a character that cannot be in a URL. */
static void scrub_encoded_params(char *text, size_t *total)
{
    for (size_t i = 0; i < *total; i++) {
        size_t eq = encoded_char_at(text + i, *total - i, '=');
        if (!eq)
            continue;
        size_t name = i;
        while (name > 0 && name_char((unsigned char)text[name - 1]))
            name--;
        int secret = param_is_secret(text + name, i - name);
        if (!secret && name > 0 && text[name - 1] == '%') {
            /* the name follows an escape: drop its "25" prefixes and hex pair */
            size_t n = name;
            while (n + 2 < i && text[n] == '2' && text[n + 1] == '5') {
                n += 2;
                secret = secret || param_is_secret(text + n, i - n);
            }
            if (n + 2 < i && vb__hexval((unsigned char)text[n]) >= 0 &&
                vb__hexval((unsigned char)text[n + 1]) >= 0)
                secret = secret || param_is_secret(text + n + 2, i - n - 2);
        }
        size_t val = i + eq;
        size_t end = val;
        while (end < *total && text[end] != '&' && text[end] != '#' &&
               !url_stop((unsigned char)text[end]) &&
               !encoded_char_at(text + end, *total - end, '&') &&
               !encoded_char_at(text + end, *total - end, '#'))
            end++;
        if (secret && end > val && !is_masked(text + val, end - val))
            end = val + mask_span(text, total, val, end - val);
        i = end > i ? end - 1 : i;
    }
}

static int scheme_char(unsigned char c)
{
    return isalnum(c) || c == '+' || c == '-' || c == '.';
}

/* userinfo before "@" in scheme:// URLs becomes "***". */
static void scrub_userinfo(char *text, size_t *total)
{
    for (size_t i = 0; i + 3 <= *total; i++) {
        if (memcmp(text + i, "://", 3) != 0)
            continue;
        if (i == 0 || !scheme_char((unsigned char)text[i - 1]))
            continue;
        size_t start = i + 3;
        size_t end = start;
        size_t at = (size_t)-1;
        while (end < *total && text[end] != '/' && text[end] != '?' && text[end] != '#' &&
               !url_stop((unsigned char)text[end])) {
            if (text[end] == '@')
                at = end;
            end++;
        }
        if (at != (size_t)-1 && at > start && !is_masked(text + start, at - start))
            mask_span(text, total, start, at - start);
        i = start - 1;
    }
}

static void scrub(char *text, size_t *total)
{
    scrub_registered(text, total);
    scrub_headers(text, total);
    scrub_bearer(text, total);
    scrub_userinfo(text, total);
    scrub_params(text, total);
    scrub_encoded_params(text, total);
}

void vb_redact_text(char *text)
{
    if (!text)
        return;
    size_t total = strlen(text);
    scrub(text, &total);
}

char *vb_redact_url(const char *url, char *out, size_t outlen)
{
    if (!out || outlen == 0)
        return out;
    if (!url) {
        out[0] = '\0';
        return out;
    }
    /* Redact the whole URL first so truncation cannot cut a secret out of
     * reach of the patterns; fall back to redacting the truncated copy. */
    char *full = strdup(url);
    const char *src = url;
    if (full) {
        vb_redact_text(full);
        src = full;
    }
    size_t n = strlen(src);
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, src, n);
    out[n] = '\0';
    if (!full)
        vb_redact_text(out);
    free(full);
    return out;
}
