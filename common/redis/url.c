/*
 * url.c — the one grammar of Redis URLs (see redis.h for the accepted forms
 * and why `redis://secret@host` means a password).
 *
 * Parsing is split by part: scheme, userinfo, host and port, database. Every
 * message names the part that is wrong and never quotes the URL, so a
 * password cannot reach a log through a parse error. Stateless and
 * thread-safe.
 */
#include "redis/redis.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "util.h"

#define URL_MAX 2048

/* Percent-decodes [s, s+n) into out (outlen bytes incl. NUL); -1 on a bad
 * escape, an encoded NUL or overflow. */
static int pct_decode(const char *s, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)s[i];
        if (ch == '%') {
            if (i + 2 >= n)
                return -1;
            int hi = vb__hexval((unsigned char)s[i + 1]), lo = vb__hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -1;
            ch = hi * 16 + lo;
            i += 2;
        }
        if (o + 1 >= outlen)
            return -1;
        out[o++] = (char)ch;
    }
    out[o] = '\0';
    return 0;
}

/* Parses up to `digits` decimal digits in [s, s+n) as a number lo..hi. */
static int parse_num(const char *s, size_t n, size_t digits, long lo, long hi, long *out)
{
    if (n == 0 || n > digits)
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static vb_err parse_db(const char *s, size_t n, int *db, vb_error *err)
{
    long v;
    if (parse_num(s, n, 5, 0, 99999, &v) != 0)
        return vb_error_set(err, VB_ERR_CONFIG, "Redis URL: database must be a number 0-99999");
    *db = (int)v;
    return VB_OK;
}

/* Parses the userinfo [s, s+n): "user:password", ":password" or "password". */
static vb_err parse_userinfo(const char *s, size_t n, vb__redis_url *u, vb_error *err)
{
    const char *colon = memchr(s, ':', n);
    size_t userlen = colon ? (size_t)(colon - s) : 0;
    const char *pw = colon ? colon + 1 : s;
    size_t pwlen = n - (size_t)(pw - s);
    if (pwlen == 0)
        return vb_error_set(err, VB_ERR_CONFIG,
                            userlen ? "Redis URL: user name without a password (user:password@)"
                                    : "Redis URL: empty credentials before '@' (leave out the "
                                      "'@' to connect without a password)");
    if (pct_decode(s, userlen, u->user, sizeof u->user) != 0)
        return vb_error_set(err, VB_ERR_CONFIG, "Redis URL: bad or too long user name");
    if (pct_decode(pw, pwlen, u->password, sizeof u->password) != 0)
        return vb_error_set(err, VB_ERR_CONFIG, "Redis URL: bad or too long password");
    return VB_OK;
}

/* Splits an authority [s, s+n) at its last '@' and parses the userinfo;
 * *rest receives where the host (or the unix path) starts. */
static vb_err parse_credentials(const char *s, size_t n, vb__redis_url *u, const char **rest,
                                vb_error *err)
{
    const char *at = NULL;
    for (const char *p = s; p < s + n; p++)
        if (*p == '@')
            at = p;
    *rest = s;
    if (!at)
        return VB_OK;
    *rest = at + 1;
    return parse_userinfo(s, (size_t)(at - s), u, err);
}

static vb_err parse_port(const char *s, size_t n, vb__redis_url *u, vb_error *err)
{
    long v;
    if (parse_num(s, n, 5, 1, 65535, &v) != 0)
        return vb_error_set(err, VB_ERR_CONFIG, "Redis URL: port must be 1-65535");
    u->port = (int)v;
    return VB_OK;
}

static vb_err parse_hostport(const char *s, size_t n, vb__redis_url *u, vb_error *err)
{
    const char *host = s;
    size_t hostlen = n;
    u->port = 6379;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return vb_error_set(err, VB_ERR_CONFIG, "Redis URL: unterminated [IPv6] host");
        host = s + 1;
        hostlen = (size_t)(close - host);
        for (size_t i = 0; i < hostlen; i++)
            if (!isxdigit((unsigned char)host[i]) && host[i] != ':' && host[i] != '.')
                return vb_error_set(err, VB_ERR_CONFIG, "Redis URL: bad IPv6 address");
        size_t after = n - (size_t)(close + 1 - s);
        if (after > 0 && close[1] != ':')
            return vb_error_set(err, VB_ERR_CONFIG, "Redis URL: junk after [IPv6] host");
        if (after > 0 && parse_port(close + 2, after - 1, u, err) != VB_OK)
            return VB_ERR_CONFIG;
    } else {
        const char *colon = memchr(s, ':', n);
        if (colon) {
            hostlen = (size_t)(colon - s);
            if (parse_port(colon + 1, n - hostlen - 1, u, err) != VB_OK)
                return VB_ERR_CONFIG;
        }
        for (size_t i = 0; i < hostlen; i++)
            if (!isalnum((unsigned char)host[i]) && host[i] != '.' && host[i] != '-' &&
                host[i] != '_')
                return vb_error_set(err, VB_ERR_CONFIG,
                                    "Redis URL: host name has an invalid character");
    }
    if (hostlen == 0)
        return vb_error_set(err, VB_ERR_CONFIG, "Redis URL: host is missing");
    if (hostlen >= sizeof u->host)
        return vb_error_set(err, VB_ERR_CONFIG, "Redis URL: host name too long");
    memcpy(u->host, host, hostlen);
    u->host[hostlen] = '\0';
    return VB_OK;
}

/* redis://[userinfo@]host[:port][/db] — `rest` follows "redis://" (or "rediss://"). */
static vb_err parse_tcp(const char *rest, vb__redis_url *u, vb_error *err)
{
    if (strpbrk(rest, "?#"))
        return vb_error_set(err, VB_ERR_CONFIG,
                            "Redis URL: query strings and fragments are not supported");
    const char *slash = strchr(rest, '/');
    size_t authlen = slash ? (size_t)(slash - rest) : strlen(rest);
    const char *hp;
    if (parse_credentials(rest, authlen, u, &hp, err) != VB_OK ||
        parse_hostport(hp, (size_t)(rest + authlen - hp), u, err) != VB_OK)
        return VB_ERR_CONFIG;
    if (slash && slash[1] != '\0')
        return parse_db(slash + 1, strlen(slash + 1), &u->db, err);
    return VB_OK;
}

/* unix://[userinfo@]/path[?db=N] — `rest` follows "unix://". */
static vb_err parse_unix(const char *rest, vb__redis_url *u, vb_error *err)
{
    const char *slash = strchr(rest, '/');
    if (!slash)
        return vb_error_set(err, VB_ERR_CONFIG,
                            "Redis URL: unix:// needs an absolute socket path");
    const char *path;
    if (parse_credentials(rest, (size_t)(slash - rest), u, &path, err) != VB_OK)
        return VB_ERR_CONFIG;
    if (path != slash)
        return vb_error_set(err, VB_ERR_CONFIG,
                            "Redis URL: unix:// takes only credentials before the path");
    if (strchr(path, '#'))
        return vb_error_set(err, VB_ERR_CONFIG, "Redis URL: fragments are not supported");
    const char *q = strchr(path, '?');
    size_t plen = q ? (size_t)(q - path) : strlen(path);
    if (plen < 2 || plen >= sizeof u->path)
        return vb_error_set(err, VB_ERR_CONFIG, "Redis URL: socket path missing or too long");
    memcpy(u->path, path, plen);
    u->path[plen] = '\0';
    u->is_unix = 1;
    if (q) {
        if (strncmp(q, "?db=", 4) != 0)
            return vb_error_set(err, VB_ERR_CONFIG, "Redis URL: unix:// accepts only ?db=N");
        return parse_db(q + 4, strlen(q + 4), &u->db, err);
    }
    return VB_OK;
}

vb_err vb__redis_url_parse(const char *url, vb__redis_url *out, vb_error *err)
{
    memset(out, 0, sizeof *out);
    vb_err rc = VB_OK;
    if (!url || !*url)
        return vb_error_set(err, VB_ERR_CONFIG, "Redis URL is empty");
    if (strlen(url) > URL_MAX)
        return vb_error_set(err, VB_ERR_CONFIG, "Redis URL is longer than %d bytes", URL_MAX);
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p == 0x7f)
            return vb_error_set(err, VB_ERR_CONFIG,
                                "Redis URL contains spaces or control characters");
    if (strncasecmp(url, "redis://", 8) == 0)
        rc = parse_tcp(url + 8, out, err);
    else if (strncasecmp(url, "unix://", 7) == 0)
        rc = parse_unix(url + 7, out, err);
    else if (strncasecmp(url, "rediss://", 9) == 0 && !vb__redis_tls_available())
        rc = vb_error_set(err, VB_ERR_CONFIG, "Redis URL: %s", VB__REDIS_NO_TLS);
    else if (strncasecmp(url, "rediss://", 9) == 0) {
        out->tls = 1;
        rc = parse_tcp(url + 9, out, err);
    } else
        rc = vb_error_set(err, VB_ERR_CONFIG,
                          "Redis URL must start with redis://, rediss:// or unix://");
    if (rc != VB_OK)
        vb__redis_url_clear(out);
    return rc;
}

void vb__redis_url_clear(vb__redis_url *u)
{
    if (u)
        explicit_bzero(u, sizeof *u);
}

char *vb__redis_url_describe(const vb__redis_url *u, char *out, size_t outlen)
{
    if (u->is_unix)
        snprintf(out, outlen, "unix:%s/%d", u->path, u->db);
    else if (strchr(u->host, ':'))
        snprintf(out, outlen, "%s[%s]:%d/%d", u->tls ? "tls:" : "", u->host, u->port, u->db);
    else
        snprintf(out, outlen, "%s%s:%d/%d", u->tls ? "tls:" : "", u->host, u->port, u->db);
    return out;
}
