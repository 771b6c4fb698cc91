/*
 * http.c — the libcurl-backed HTTP client declared in http.h.
 *
 * vb_http_perform() drives one curl easy handle (owned by a vb_http, reused
 * across calls so connections are kept alive); vb_http_perform_to_fd() is
 * the same exchange with a 2xx body written to a file descriptor instead of
 * memory, and multipart file parts may be read from an open descriptor
 * (vb_http_part_fd, a libcurl mime read callback); vb_http_download_all() drives
 * a curl multi handle with one short-lived easy handle per attempt and
 * streams every body straight to its file, so memory use does not depend on
 * document sizes. Given a vb_http, the downloads use that handle's multi,
 * kept between calls, and its share handle (DNS cache, TLS sessions): the
 * multi's connection cache lets the next document — of this run or of the
 * next run on the same handle — reuse a connection instead of a new TCP and
 * TLS handshake. Both share one option set (protocol allow-list, redirect
 * limit, timeouts, size cap, cancel check); a policy may also keep the
 * redirects of vb_http_perform on the request's origin, checked in the header
 * callback when a 3xx answer names its Location, before curl follows it; and
 * both share one translation of CURLcode
 * into vb_err. Retries use exponential backoff with full jitter, or the
 * server's Retry-After when it sent one, and sleep in short slices so the
 * cancel flag is noticed quickly.
 *
 * Threading: a vb_http belongs to one thread at a time; download_all uses
 * only its own handles. The jitter generator is thread-local. Error texts
 * carry redacted URLs (redact.h) and redacted curl messages only.
 */
#include "visionbatch/http.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"
#include "visionbatch/redact.h"

#define VB_HTTP_USER_AGENT "visionbatch/0.1"
#define VB_HTTP_PROTOCOLS "http,https"
#define VB_HTTP_MAX_REDIRECTS 5L
#define VB_HTTP_SLEEP_SLICE_MS 50L
#define VB_HTTP_POLL_MS 100
/* Bodies of non-2xx answers a download discards before giving up on them. */
#define VB_HTTP_ERROR_BODY_MAX (64 * 1024)

struct vb_http {
    CURL *easy;
    CURLM *multi;  /* downloads: created on first use, keeps its connections */
    CURLSH *share; /* downloads: DNS cache and TLS sessions, with multi */
    char errbuf[CURL_ERROR_SIZE];
};

/* The policy with defaults filled in. */
typedef struct http_limits {
    long connect_ms;
    long timeout_ms;
    long long max_bytes;
    int retries;
    long base_ms;
    long max_ms;
    int retry_on_5xx;
    const atomic_int *cancel;
    int same_origin;
    int no_redirects;
} http_limits;

/* What the header callback learns about the latest answer (redirects and
 * interim answers each start afresh). */
typedef struct hdr_state {
    long status;
    long retry_after_s;
    const char *origin_url; /* redirects must stay on this URL's origin; NULL = any */
    char refused[160];      /* the other origin a redirect pointed to, "" if none */
} hdr_state;

static http_limits limits_of(const vb_http_policy *pol)
{
    http_limits l = {
        .connect_ms = 10000,
        .timeout_ms = 60000,
        .max_bytes = 16LL * 1024 * 1024,
        .retries = 0,
        .base_ms = 500,
        .max_ms = 30000,
        .retry_on_5xx = 0,
        .cancel = NULL,
    };
    if (!pol)
        return l;
    if (pol->connect_timeout_ms > 0)
        l.connect_ms = pol->connect_timeout_ms;
    if (pol->timeout_ms > 0)
        l.timeout_ms = pol->timeout_ms;
    if (pol->max_bytes > 0)
        l.max_bytes = pol->max_bytes;
    if (pol->retries > 0)
        l.retries = pol->retries;
    if (pol->retry_base_ms > 0)
        l.base_ms = pol->retry_base_ms;
    if (pol->retry_max_ms > 0)
        l.max_ms = pol->retry_max_ms;
    l.retry_on_5xx = pol->retry_on_5xx;
    l.cancel = pol->cancel;
    l.same_origin = pol->same_origin;
    l.no_redirects = pol->no_redirects;
    return l;
}

static int cancelled(const http_limits *l)
{
    return l->cancel && *l->cancel;
}

/* Sleeps `ms` in short slices; returns -1 as soon as the cancel flag is set. */
static int sleep_cancellable(long ms, const http_limits *l)
{
    long long end = vb__mono_ms() + ms;
    for (;;) {
        if (cancelled(l))
            return -1;
        long long left = end - vb__mono_ms();
        if (left <= 0)
            return 0;
        if (left > VB_HTTP_SLEEP_SLICE_MS)
            left = VB_HTTP_SLEEP_SLICE_MS;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)left * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* xorshift64* seeded from the kernel, one state per thread: jitter needs to
 * differ between processes, not to be unpredictable. */
static _Thread_local uint64_t rng_state;

static uint64_t rng_next(void)
{
    if (rng_state == 0) {
        if (getrandom(&rng_state, sizeof rng_state, GRND_NONBLOCK) != (ssize_t)sizeof rng_state)
            rng_state =
                (uint64_t)vb__mono_ms() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)&rng_state;
        if (rng_state == 0)
            rng_state = 0x9E3779B97F4A7C15ULL;
    }
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

long vb_http_backoff_ms(const vb_http_policy *pol, int attempt, long retry_after_s)
{
    http_limits l = limits_of(pol);
    if (retry_after_s >= 0) {
        if (retry_after_s > l.max_ms / 1000)
            return l.max_ms;
        return retry_after_s * 1000 < l.max_ms ? retry_after_s * 1000 : l.max_ms;
    }
    long cap = l.base_ms < l.max_ms ? l.base_ms : l.max_ms;
    for (int i = 1; i < attempt && cap < l.max_ms; i++)
        cap = cap > l.max_ms / 2 ? l.max_ms : cap * 2;
    return (long)(rng_next() % ((uint64_t)cap + 1));
}

/* Retry-After is either delay-seconds or an HTTP-date; -1 when unusable. */
static long parse_retry_after(const char *v)
{
    while (*v == ' ' || *v == '\t')
        v++;
    if (*v >= '0' && *v <= '9') {
        char *end = NULL;
        errno = 0;
        long s = strtol(v, &end, 10);
        while (*end == ' ' || *end == '\t')
            end++;
        if (errno == ERANGE)
            return 86400L * 365;
        return *end == '\0' ? s : -1;
    }
    time_t when = curl_getdate(v, NULL);
    if (when == (time_t)-1)
        return -1;
    time_t now = time(NULL);
    return when > now ? (long)(when - now) : 0;
}

/* Origin (scheme, host, port) of `url` resolved against `base` (or of base
 * itself when url is NULL) into *u; 0 when it cannot be parsed. */
static int origin_of(CURLU *u, const char *base, const char *url, char **scheme, char **host,
                     char **port)
{
    unsigned fl = CURLU_NON_SUPPORT_SCHEME | CURLU_ALLOW_SPACE;
    return curl_url_set(u, CURLUPART_URL, base, fl) == CURLUE_OK &&
           (!url || curl_url_set(u, CURLUPART_URL, url, fl) == CURLUE_OK) &&
           curl_url_get(u, CURLUPART_SCHEME, scheme, 0) == CURLUE_OK &&
           curl_url_get(u, CURLUPART_HOST, host, 0) == CURLUE_OK &&
           curl_url_get(u, CURLUPART_PORT, port, CURLU_DEFAULT_PORT) == CURLUE_OK;
}

/* A redirect's Location (value[0..len), relative or absolute) checked
 * against hs->origin_url: 1 when it stays on the same origin, else 0 with
 * hs->refused naming where it pointed. A relative reference resolves to the
 * same origin against every hop so far, so the first URL serves as base. */
static int redirect_allowed(hdr_state *hs, const char *value, size_t len)
{
    while (len > 0 && (*value == ' ' || *value == '\t')) {
        value++;
        len--;
    }
    while (len > 0 && (value[len - 1] == '\r' || value[len - 1] == '\n' ||
                       value[len - 1] == ' ' || value[len - 1] == '\t'))
        len--;
    char *loc = strndup(value, len);
    CURLU *a = curl_url(), *b = curl_url();
    char *s1 = NULL, *h1 = NULL, *p1 = NULL, *s2 = NULL, *h2 = NULL, *p2 = NULL;
    int ok = 0;
    snprintf(hs->refused, sizeof hs->refused, "an unreadable Location");
    if (loc && a && b && origin_of(a, hs->origin_url, NULL, &s1, &h1, &p1) &&
        origin_of(b, hs->origin_url, loc, &s2, &h2, &p2)) {
        ok = strcasecmp(s1, s2) == 0 && strcasecmp(h1, h2) == 0 && strcmp(p1, p2) == 0;
        snprintf(hs->refused, sizeof hs->refused, "%.16s://%.100s:%.8s", s2, h2, p2);
    }
    if (ok)
        hs->refused[0] = '\0';
    char *parts[] = {s1, h1, p1, s2, h2, p2};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        curl_free(parts[i]);
    curl_url_cleanup(a);
    curl_url_cleanup(b);
    free(loc);
    return ok;
}

/* The failure of a transfer whose redirect redirect_allowed() refused. */
static vb_err refused_redirect(const hdr_state *hs, long status, char *why, size_t whylen)
{
    snprintf(why, whylen, "HTTP %ld redirect to another origin (%s) refused", status,
             hs->refused);
    return VB_ERR_INVALID;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    hdr_state *hs = ud;
    size_t len = size * n;
    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        const char *sp = memchr(p, ' ', len);
        hs->status = 0;
        hs->retry_after_s = -1;
        if (sp && (size_t)(sp - p) + 4 <= len) {
            long code = 0;
            for (int i = 1; i <= 3; i++) {
                if (sp[i] < '0' || sp[i] > '9')
                    return len;
                code = code * 10 + (sp[i] - '0');
            }
            hs->status = code;
        }
    } else if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
        char value[128];
        size_t vlen = len - 12 < sizeof value - 1 ? len - 12 : sizeof value - 1;
        memcpy(value, p + 12, vlen);
        while (vlen > 0 && (value[vlen - 1] == '\r' || value[vlen - 1] == '\n' ||
                            value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
            vlen--;
        value[vlen] = '\0';
        hs->retry_after_s = parse_retry_after(value);
    } else if (hs->origin_url && hs->status >= 300 && hs->status < 400 && len > 9 &&
               strncasecmp(p, "Location:", 9) == 0) {
        if (!redirect_allowed(hs, p + 9, len - 9))
            return 0; /* aborts the transfer before the redirect is followed */
    }
    return len;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    const atomic_int *cancel = ud;
    return *cancel ? 1 : 0;
}

static int is_2xx(long status)
{
    return status >= 200 && status < 300;
}

static int status_retryable(const http_limits *l, long status)
{
    return l->retry_on_5xx && (status == 429 || (status >= 500 && status < 600));
}

/* The one translation of transport failures. WRITE_ERROR and
 * ABORTED_BY_CALLBACK are the callers' own aborts and are resolved by them
 * before this is consulted. */
static vb_err translate_curl(CURLcode cc, int *retryable)
{
    *retryable = 0;
    switch (cc) {
    case CURLE_OPERATION_TIMEDOUT:
        *retryable = 1;
        return VB_ERR_TIMEOUT;
    case CURLE_ABORTED_BY_CALLBACK:
        return VB_ERR_CANCELLED;
    case CURLE_FILESIZE_EXCEEDED:
        return VB_ERR_TOO_LARGE;
    case CURLE_OUT_OF_MEMORY:
        return VB_ERR_NOMEM;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_BAD_FUNCTION_ARGUMENT:
        return VB_ERR_INVALID;
    case CURLE_READ_ERROR:
        return VB_ERR_IO;
    case CURLE_TOO_MANY_REDIRECTS:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
        return VB_ERR_NETWORK;
    default:
        /* Resolve, connect, reset, TLS handshake, truncated answers. */
        *retryable = 1;
        return VB_ERR_NETWORK;
    }
}

/* Options shared by every transfer. */
static CURLcode easy_common(CURL *e, const http_limits *l, hdr_state *hs, char *errbuf)
{
    CURLcode cc;
    if ((cc = curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, VB_HTTP_PROTOCOLS)) != CURLE_OK ||
        (cc = curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, VB_HTTP_PROTOCOLS)) != CURLE_OK ||
        (cc = curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, l->no_redirects ? 0L : 1L)) !=
            CURLE_OK ||
        (cc = curl_easy_setopt(e, CURLOPT_MAXREDIRS, VB_HTTP_MAX_REDIRECTS)) != CURLE_OK ||
        (cc = curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, l->connect_ms)) != CURLE_OK ||
        (cc = curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, l->timeout_ms)) != CURLE_OK ||
        (cc = curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L)) != CURLE_OK ||
        (cc = curl_easy_setopt(e, CURLOPT_USERAGENT, VB_HTTP_USER_AGENT)) != CURLE_OK ||
        (cc = curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)l->max_bytes)) !=
            CURLE_OK ||
        (cc = curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header)) != CURLE_OK ||
        (cc = curl_easy_setopt(e, CURLOPT_HEADERDATA, hs)) != CURLE_OK ||
        (cc = curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf)) != CURLE_OK)
        return cc;
    if (l->cancel) {
        if ((cc = curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L)) != CURLE_OK ||
            (cc = curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress)) != CURLE_OK ||
            (cc = curl_easy_setopt(e, CURLOPT_XFERINFODATA, (void *)l->cancel)) != CURLE_OK)
            return cc;
    }
    return CURLE_OK;
}

/* Copies curl's error text (or the generic one) with secrets masked. */
static void curl_reason(CURLcode cc, const char *errbuf, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s", errbuf && errbuf[0] ? errbuf : curl_easy_strerror(cc));
    vb_redact_text(out);
}

vb_err vb_http_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? VB_OK : VB_ERR_NETWORK;
}

void vb_http_global_cleanup(void)
{
    curl_global_cleanup();
}

vb_http *vb_http_new(void)
{
    vb_http *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->easy = curl_easy_init();
    if (!h->easy) {
        free(h);
        return NULL;
    }
    return h;
}

void vb_http_free(vb_http *h)
{
    if (!h)
        return;
    curl_easy_cleanup(h->easy);
    if (h->multi)
        curl_multi_cleanup(h->multi); /* closes the kept connections */
    if (h->share)
        curl_share_cleanup(h->share);
    free(h);
}

void vb_http_response_free(vb_http_response *resp)
{
    if (!resp)
        return;
    vb_buf_free(&resp->body);
    resp->status = 0;
    resp->content_type[0] = '\0';
}

/* ---- vb_http_perform ---- */

typedef struct mem_sink {
    vb_buf *body;
    const hdr_state *hs;
    int too_large;       /* a 2xx body passed the cap */
    int error_truncated; /* a non-2xx body passed the cap; its prefix is kept */
    int nomem;
    /* vb_http_perform_to_fd: a 2xx body goes to fd (from offset fd_start)
     * instead of memory; fd < 0 otherwise. */
    int fd;
    off_t fd_start;
    long long max_bytes;
    long long written;
    int io_error; /* errno of a failed write */
} mem_sink;

/* Writes all of p to fd; 0, or the errno of the failure. */
static int write_all(int fd, const char *p, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, p + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? errno : EIO;
        off += (size_t)w;
    }
    return 0;
}

/* Appends a 2xx body chunk to the sink's descriptor, within the cap. */
static size_t body_to_fd(mem_sink *s, const char *p, size_t len)
{
    if ((long long)len > s->max_bytes - s->written) {
        s->too_large = 1;
        return 0;
    }
    if ((s->io_error = write_all(s->fd, p, len)) != 0)
        return 0;
    s->written += (long long)len;
    return len;
}

static size_t on_body_mem(char *p, size_t size, size_t n, void *ud)
{
    mem_sink *s = ud;
    size_t len = size * n;
    if (s->fd >= 0 && is_2xx(s->hs->status))
        return body_to_fd(s, p, len);
    vb_err rc = vb_buf_append(s->body, p, len);
    if (rc == VB_OK)
        return len;
    if (rc == VB_ERR_NOMEM) {
        s->nomem = 1;
        return 0;
    }
    if (!is_2xx(s->hs->status)) {
        /* Error answers are for diagnostics: keep what fits and stop reading. */
        size_t room = s->body->limit > s->body->len ? s->body->limit - s->body->len : 0;
        if (room && vb_buf_append(s->body, p, room < len ? room : len) != VB_OK) {
            s->nomem = 1;
            return 0;
        }
        s->error_truncated = 1;
        return 0;
    }
    s->too_large = 1;
    return 0;
}

static int token_ok(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (s[n] == '\r' || s[n] == '\n' || n >= max)
            return 0;
    return 1;
}

/* Builds the request headers into *out (free with curl_slist_free_all). */
static vb_err build_headers(const vb_http_request *req, struct curl_slist **out)
{
    struct curl_slist *list = NULL, *tmp;
    char line[1024];
    vb_err rc = VB_ERR_NOMEM;
    if (req->bearer) {
        if (!token_ok(req->bearer, sizeof line - 32)) {
            rc = VB_ERR_INVALID;
            goto fail;
        }
        snprintf(line, sizeof line, "Authorization: Bearer %s", req->bearer);
        if (!(tmp = curl_slist_append(list, line)))
            goto fail;
        list = tmp;
    }
    /* A body defaults to JSON; a request without one still sends the type its
     * caller names (the platform's GET contract asks for application/json). */
    if ((req->body || req->content_type) && req->nparts == 0) {
        const char *ct = req->content_type ? req->content_type : "application/json";
        if (!token_ok(ct, 256)) {
            rc = VB_ERR_INVALID;
            goto fail;
        }
        snprintf(line, sizeof line, "Content-Type: %s", ct);
        if (!(tmp = curl_slist_append(list, line)))
            goto fail;
        list = tmp;
    }
    for (size_t i = 0; i < req->nheaders; i++) {
        if (!req->headers[i] || !token_ok(req->headers[i], sizeof line - 1) ||
            !strchr(req->headers[i], ':')) {
            rc = VB_ERR_INVALID;
            goto fail;
        }
        if (!(tmp = curl_slist_append(list, req->headers[i])))
            goto fail;
        list = tmp;
    }
    /* No "Expect: 100-continue" round trip before uploads. */
    if (!(tmp = curl_slist_append(list, "Expect:")))
        goto fail;
    *out = tmp;
    return VB_OK;
fail:
    curl_slist_free_all(list);
    return rc;
}

/* A file part read from a descriptor: pread at our own position, so curl
 * can rewind it (retries, redirects) and the caller's offset is untouched. */
typedef struct fd_reader {
    int fd;
    curl_off_t pos;
} fd_reader;

static size_t fd_read(char *buf, size_t size, size_t n, void *arg)
{
    fd_reader *r = arg;
    for (;;) {
        ssize_t got = pread(r->fd, buf, size * n, (off_t)r->pos);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return CURL_READFUNC_ABORT;
        r->pos += got;
        return (size_t)got;
    }
}

static int fd_seek(void *arg, curl_off_t offset, int origin)
{
    fd_reader *r = arg;
    if (origin != SEEK_SET || offset < 0)
        return CURL_SEEKFUNC_CANTSEEK;
    r->pos = offset;
    return CURL_SEEKFUNC_OK;
}

vb_http_part vb_http_part_fd(const char *name, int fd, const char *filename,
                             const char *content_type)
{
    vb_http_part p = {.name = name, .filename = filename, .content_type = content_type,
                      .fd = fd, .from_fd = 1};
    return p;
}

/* Makes `part` stream the regular file open on fd, from offset 0. */
static vb_err mime_from_fd(curl_mimepart *part, int fd)
{
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return VB_ERR_IO;
    fd_reader *r = calloc(1, sizeof *r);
    if (!r)
        return VB_ERR_NOMEM;
    r->fd = fd;
    /* curl owns r from here on, and frees it with the part. */
    if (curl_mime_data_cb(part, (curl_off_t)st.st_size, fd_read, fd_seek, free, r) != CURLE_OK) {
        free(r);
        return VB_ERR_NOMEM;
    }
    return VB_OK;
}

static vb_err build_mime(CURL *e, const vb_http_request *req, curl_mime **out, const char **bad)
{
    curl_mime *mime = curl_mime_init(e);
    if (!mime)
        return VB_ERR_NOMEM;
    for (size_t i = 0; i < req->nparts; i++) {
        const vb_http_part *p = &req->parts[i];
        *bad = p->name ? p->name : "(unnamed)";
        curl_mimepart *part = curl_mime_addpart(mime);
        if (!part)
            goto nomem;
        if (!p->name || (!p->value && !p->file_path && !p->from_fd))
            goto invalid;
        if (curl_mime_name(part, p->name) != CURLE_OK)
            goto nomem;
        if (p->value) {
            if (curl_mime_data(part, p->value, CURL_ZERO_TERMINATED) != CURLE_OK)
                goto nomem;
            continue;
        }
        if (p->from_fd) {
            vb_err frc = mime_from_fd(part, p->fd);
            if (frc == VB_ERR_NOMEM)
                goto nomem;
            if (frc != VB_OK)
                goto io;
        } else if (access(p->file_path, R_OK) != 0 ||
                   curl_mime_filedata(part, p->file_path) != CURLE_OK) {
            /* Checked here so a missing file is an IO error, not a transfer error. */
            goto io;
        }
        if (p->filename && curl_mime_filename(part, p->filename) != CURLE_OK)
            goto nomem;
        if (p->content_type && curl_mime_type(part, p->content_type) != CURLE_OK)
            goto nomem;
    }
    *out = mime;
    return VB_OK;
nomem:
    curl_mime_free(mime);
    return VB_ERR_NOMEM;
invalid:
    curl_mime_free(mime);
    return VB_ERR_INVALID;
io:
    curl_mime_free(mime);
    return VB_ERR_IO;
}

static int method_ok(const char *m)
{
    size_t n = 0;
    for (; m[n]; n++)
        if (n >= 16 || m[n] < 'A' || m[n] > 'Z')
            return 0;
    return n > 0;
}

static CURLcode set_method(CURL *e, const char *method, const vb_http_request *req, curl_mime *mime)
{
    CURLcode cc = CURLE_OK;
    int is_post = strcmp(method, "POST") == 0;
    if (mime) {
        cc = curl_easy_setopt(e, CURLOPT_MIMEPOST, mime);
    } else if (req->body || is_post) {
        const char *body = req->body ? req->body : "";
        curl_off_t len = req->body ? (curl_off_t)req->body_len : 0;
        if ((cc = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, len)) == CURLE_OK)
            cc = curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    } else if (strcmp(method, "HEAD") == 0) {
        return curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") == 0) {
        return curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else {
        return curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    }
    if (cc == CURLE_OK && !is_post)
        cc = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    return cc;
}

/* The caller's pre-request hook and what it answered last. */
typedef struct prereq_state {
    vb_http_prereq_fn fn;
    void *ctx;
    vb_err rc;
    vb_error err;
} prereq_state;

static int on_prereq(void *ud, char *primary_ip, char *local_ip, int primary_port,
                     int local_port)
{
    (void)primary_ip;
    (void)local_ip;
    (void)primary_port;
    (void)local_port;
    prereq_state *p = ud;
    vb_error_clear(&p->err);
    p->rc = p->fn(p->ctx, &p->err);
    return p->rc == VB_OK ? CURL_PREREQFUNC_OK : CURL_PREREQFUNC_ABORT;
}

/* One attempt. Fills resp (status, content type, Retry-After, body) and a
 * reason for failures; *retryable says whether another attempt may help. */
static vb_err perform_once(vb_http *h, const http_limits *l, mem_sink *sink, hdr_state *hs,
                           prereq_state *pre, vb_http_response *resp, int *retryable, char *why,
                           size_t whylen)
{
    *retryable = 0;
    pre->rc = VB_OK;
    hs->status = 0;
    hs->retry_after_s = -1;
    hs->refused[0] = '\0';
    sink->too_large = sink->error_truncated = sink->nomem = sink->io_error = 0;
    h->errbuf[0] = '\0';
    vb_buf_reset(&resp->body);
    /* A retry starts the streamed body afresh. */
    sink->written = 0;
    if (sink->fd >= 0 && (ftruncate(sink->fd, sink->fd_start) != 0 ||
                          lseek(sink->fd, sink->fd_start, SEEK_SET) != sink->fd_start)) {
        snprintf(why, whylen, "cannot rewind the destination: %s", strerror(errno));
        return VB_ERR_IO;
    }

    CURLcode cc = curl_easy_perform(h->easy);

    long status = 0;
    char *ct = NULL;
    curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &status);
    resp->status = status;
    resp->retry_after_s = hs->retry_after_s;
    resp->content_type[0] = '\0';
    if (curl_easy_getinfo(h->easy, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
        snprintf(resp->content_type, sizeof resp->content_type, "%s", ct);

    if (cc != CURLE_OK && !(cc == CURLE_WRITE_ERROR && sink->error_truncated)) {
        vb_err rc;
        if (cc == CURLE_WRITE_ERROR && sink->too_large) {
            snprintf(why, whylen, "body exceeds %lld bytes", l->max_bytes);
            return VB_ERR_TOO_LARGE;
        }
        if (cc == CURLE_WRITE_ERROR && sink->nomem) {
            snprintf(why, whylen, "out of memory");
            return VB_ERR_NOMEM;
        }
        if (cc == CURLE_WRITE_ERROR && sink->io_error) {
            snprintf(why, whylen, "cannot write the destination: %s", strerror(sink->io_error));
            return VB_ERR_IO;
        }
        if (cc == CURLE_ABORTED_BY_CALLBACK && pre->rc != VB_OK) {
            snprintf(why, whylen, "not sent: %.200s", pre->err.msg);
            return pre->rc;
        }
        if (cc == CURLE_ABORTED_BY_CALLBACK && cancelled(l)) {
            snprintf(why, whylen, "cancelled");
            return VB_ERR_CANCELLED;
        }
        if (cc == CURLE_WRITE_ERROR && hs->refused[0])
            return refused_redirect(hs, status, why, whylen);
        rc = translate_curl(cc, retryable);
        curl_reason(cc, h->errbuf, why, whylen);
        return rc;
    }
    if (is_2xx(status))
        return VB_OK;
    *retryable = status_retryable(l, status);
    snprintf(why, whylen, "HTTP %ld", status);
    return VB_ERR_HTTP;
}

/* vb_http_perform with the 2xx body in memory (fd < 0) or streamed to fd. */
static vb_err perform(vb_http *h, const vb_http_request *req, const vb_http_policy *pol, int fd,
                      vb_http_response *resp, vb_error *err)
{
    if (!resp)
        return vb_error_set(err, VB_ERR_INVALID, "http: no response struct");
    memset(resp, 0, sizeof *resp);
    resp->retry_after_s = -1;
    if (!h || !req || !req->url)
        return vb_error_set(err, VB_ERR_INVALID, "http: missing handle, request or URL");
    if (req->nparts && !req->parts)
        return vb_error_set(err, VB_ERR_INVALID, "http: nparts without parts");

    http_limits l = limits_of(pol);
    const char *method = req->method ? req->method : "GET";
    char safe_url[256];
    vb_redact_url(req->url, safe_url, sizeof safe_url);
    if (!method_ok(method))
        return vb_error_set(err, VB_ERR_INVALID, "http: bad method for %s", safe_url);

    struct curl_slist *headers = NULL;
    curl_mime *mime = NULL;
    hdr_state hs = {.retry_after_s = -1, .origin_url = l.same_origin ? req->url : NULL};
    mem_sink sink = {.body = &resp->body, .hs = &hs, .fd = fd, .max_bytes = l.max_bytes};
    prereq_state pre = {.fn = req->prereq, .ctx = req->prereq_ctx, .rc = VB_OK};
    /* A streamed body starts where the descriptor stands; retries rewind to it. */
    if (fd >= 0 && (sink.fd_start = lseek(fd, 0, SEEK_CUR)) < 0)
        return vb_error_set(err, VB_ERR_INVALID, "http: destination is not seekable");
    char why[CURL_ERROR_SIZE + 64] = "";
    vb_err rc;
    CURL *e = h->easy;

    resp->body.limit = l.max_bytes > 0 && (unsigned long long)l.max_bytes < SIZE_MAX
                           ? (size_t)l.max_bytes
                           : 0;
    /* Streaming: only error answers reach memory, and they are diagnostics. */
    if (fd >= 0)
        resp->body.limit = VB_HTTP_ERROR_BODY_MAX;
    curl_easy_reset(e);
    if ((rc = build_headers(req, &headers)) != VB_OK) {
        vb_error_set(err, rc, "%s %s: cannot build headers", method, safe_url);
        goto fail;
    }
    if (req->nparts) {
        const char *bad = "";
        if ((rc = build_mime(e, req, &mime, &bad)) != VB_OK) {
            vb_error_set(err, rc, "%s %s: multipart part '%s' unusable", method, safe_url, bad);
            goto fail;
        }
    }
    CURLcode cc;
    if ((cc = easy_common(e, &l, &hs, h->errbuf)) != CURLE_OK ||
        (cc = curl_easy_setopt(e, CURLOPT_URL, req->url)) != CURLE_OK ||
        (cc = curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers)) != CURLE_OK ||
        (cc = curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body_mem)) != CURLE_OK ||
        (cc = curl_easy_setopt(e, CURLOPT_WRITEDATA, &sink)) != CURLE_OK ||
        (cc = set_method(e, method, req, mime)) != CURLE_OK ||
        (req->prereq &&
         ((cc = curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq)) != CURLE_OK ||
          (cc = curl_easy_setopt(e, CURLOPT_PREREQDATA, &pre)) != CURLE_OK))) {
        rc = vb_error_set(err, cc == CURLE_OUT_OF_MEMORY ? VB_ERR_NOMEM : VB_ERR_INVALID,
                          "%s %s: %s", method, safe_url, curl_easy_strerror(cc));
        goto fail;
    }

    for (int attempt = 1;; attempt++) {
        int retryable = 0;
        resp->attempts = attempt;
        rc = perform_once(h, &l, &sink, &hs, &pre, resp, &retryable, why, sizeof why);
        resp->streamed = sink.written;
        if (rc == VB_OK)
            break;
        if (!retryable || attempt > l.retries)
            break;
        if (sleep_cancellable(vb_http_backoff_ms(pol, attempt, resp->retry_after_s), &l) != 0) {
            rc = VB_ERR_CANCELLED;
            snprintf(why, sizeof why, "cancelled while waiting to retry");
            break;
        }
    }
    if (rc != VB_OK) {
        vb_error_set(err, rc, "%s %s: %s (attempt %d of %d)", method, safe_url, why,
                     resp->attempts, l.retries + 1);
        if (err)
            err->http_status = resp->status;
    }

fail:
    /* The easy handle must not keep pointers into this call's data. */
    curl_easy_reset(e);
    curl_mime_free(mime);
    curl_slist_free_all(headers);
    return rc;
}

vb_err vb_http_perform(vb_http *h, const vb_http_request *req, const vb_http_policy *pol,
                       vb_http_response *resp, vb_error *err)
{
    return perform(h, req, pol, -1, resp, err);
}

vb_err vb_http_perform_to_fd(vb_http *h, const vb_http_request *req, const vb_http_policy *pol,
                             int fd, vb_http_response *resp, vb_error *err)
{
    if (fd < 0) {
        if (resp) {
            memset(resp, 0, sizeof *resp);
            resp->retry_after_s = -1;
        }
        return vb_error_set(err, VB_ERR_INVALID, "http: no destination descriptor");
    }
    return perform(h, req, pol, fd, resp, err);
}

/* ---- vb_http_download_all ---- */

typedef enum dl_phase { DL_PENDING, DL_RUNNING, DL_BACKOFF, DL_DONE } dl_phase;

typedef struct dl_item {
    vb_download *d;
    dl_phase phase;
    CURL *easy;
    int fd;
    int created;
    int attempts;
    long long written;
    long long discarded;
    long long cap;
    int too_large;
    int io_error;
    int http_error;
    long long ready_at;
    hdr_state hs;
    char errbuf[CURL_ERROR_SIZE];
} dl_item;

static size_t on_body_file(char *p, size_t size, size_t n, void *ud)
{
    dl_item *it = ud;
    size_t len = size * n;
    if (!is_2xx(it->hs.status)) {
        /* Not the document: drop it, but not forever. */
        it->discarded += (long long)len;
        if (it->discarded > VB_HTTP_ERROR_BODY_MAX) {
            it->http_error = 1;
            return 0;
        }
        return len;
    }
    if ((long long)len > it->cap - it->written) {
        it->too_large = 1;
        return 0;
    }
    if ((it->io_error = write_all(it->fd, p, len)) != 0)
        return 0;
    it->written += (long long)len;
    return len;
}

static void dl_fail(dl_item *it, vb_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Ends an item as failed: its file (if we created it) is removed. */
static void dl_fail(dl_item *it, vb_err code, const char *fmt, ...)
{
    char why[sizeof it->d->error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    char safe_url[160];
    vb_redact_url(it->d->url ? it->d->url : "(null)", safe_url, sizeof safe_url);
    if (snprintf(it->d->error, sizeof it->d->error, "GET %s: %s", safe_url, why) >=
        (int)sizeof it->d->error)
        it->d->error[sizeof it->d->error - 1] = '\0'; /* truncated: still terminated */
    vb_redact_text(it->d->error);
    if (it->fd >= 0) {
        close(it->fd);
        it->fd = -1;
    }
    if (it->created) {
        unlinkat(it->d->dir_fd, it->d->dest_path, 0);
        it->created = 0;
    }
    it->d->result = code;
    it->d->bytes = 0;
    it->phase = DL_DONE;
}

static void dl_release(CURLM *multi, dl_item *it)
{
    if (!it->easy)
        return;
    curl_multi_remove_handle(multi, it->easy);
    curl_easy_cleanup(it->easy);
    it->easy = NULL;
}

/* Starts (or restarts) an item's transfer; on failure the item is done. */
static void dl_start(CURLM *multi, CURLSH *share, dl_item *it, const http_limits *l)
{
    if (!it->created) {
        if (!it->d->url || !it->d->dest_path) {
            dl_fail(it, VB_ERR_INVALID, "missing url or dest_path");
            return;
        }
        it->fd = openat(it->d->dir_fd, it->d->dest_path,
                        O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (it->fd < 0) {
            dl_fail(it, VB_ERR_IO, "cannot create destination: %s", strerror(errno));
            return;
        }
        it->created = 1;
    } else if (ftruncate(it->fd, 0) != 0 || lseek(it->fd, 0, SEEK_SET) != 0) {
        dl_fail(it, VB_ERR_IO, "cannot truncate destination: %s", strerror(errno));
        return;
    }
    it->written = it->discarded = 0;
    it->cap = l->max_bytes;
    it->too_large = it->io_error = it->http_error = 0;
    it->hs.status = 0;
    it->hs.retry_after_s = -1;
    it->hs.origin_url = l->same_origin ? it->d->url : NULL;
    it->hs.refused[0] = '\0';
    it->errbuf[0] = '\0';
    it->attempts++;
    it->easy = curl_easy_init();
    if (!it->easy) {
        dl_fail(it, VB_ERR_NOMEM, "out of memory");
        return;
    }
    CURLcode cc;
    if ((cc = easy_common(it->easy, l, &it->hs, it->errbuf)) != CURLE_OK ||
        (cc = curl_easy_setopt(it->easy, CURLOPT_URL, it->d->url)) != CURLE_OK ||
        (cc = curl_easy_setopt(it->easy, CURLOPT_WRITEFUNCTION, on_body_file)) != CURLE_OK ||
        (cc = curl_easy_setopt(it->easy, CURLOPT_WRITEDATA, it)) != CURLE_OK ||
        (cc = curl_easy_setopt(it->easy, CURLOPT_PRIVATE, it)) != CURLE_OK ||
        (share && (cc = curl_easy_setopt(it->easy, CURLOPT_SHARE, share)) != CURLE_OK)) {
        curl_easy_cleanup(it->easy);
        it->easy = NULL;
        dl_fail(it, VB_ERR_INVALID, "%s", curl_easy_strerror(cc));
        return;
    }
    if (curl_multi_add_handle(multi, it->easy) != CURLM_OK) {
        curl_easy_cleanup(it->easy);
        it->easy = NULL;
        dl_fail(it, VB_ERR_NOMEM, "cannot add transfer");
        return;
    }
    it->phase = DL_RUNNING;
}

/* Resolves one finished attempt: success, a scheduled retry, or failure. */
static void dl_finish(CURLM *multi, dl_item *it, CURLcode cc, const http_limits *l,
                      const vb_http_policy *pol)
{
    long status = 0;
    curl_easy_getinfo(it->easy, CURLINFO_RESPONSE_CODE, &status);
    it->d->http_status = status;
    char reason[CURL_ERROR_SIZE];
    curl_reason(cc, it->errbuf, reason, sizeof reason);
    dl_release(multi, it);

    int retryable = 0;
    vb_err rc;
    if (cc == CURLE_OK || (cc == CURLE_WRITE_ERROR && it->http_error)) {
        if (is_2xx(status) && cc == CURLE_OK) {
            it->d->bytes = it->written;
            it->phase = DL_DONE;
            it->d->result = VB_OK;
            int fd = it->fd;
            it->fd = -1;
            if (close(fd) != 0)
                dl_fail(it, VB_ERR_IO, "cannot close destination: %s", strerror(errno));
            it->created = 0;
            return;
        }
        rc = VB_ERR_HTTP;
        retryable = status_retryable(l, status);
        snprintf(reason, sizeof reason, "HTTP %ld", status);
    } else if (cc == CURLE_WRITE_ERROR && it->too_large) {
        rc = VB_ERR_TOO_LARGE;
        snprintf(reason, sizeof reason, "body exceeds %lld bytes", l->max_bytes);
    } else if (cc == CURLE_WRITE_ERROR && it->io_error) {
        rc = VB_ERR_IO;
        snprintf(reason, sizeof reason, "cannot write destination: %s", strerror(it->io_error));
    } else if (cc == CURLE_ABORTED_BY_CALLBACK && cancelled(l)) {
        rc = VB_ERR_CANCELLED;
        snprintf(reason, sizeof reason, "cancelled");
    } else if (cc == CURLE_WRITE_ERROR && it->hs.refused[0]) {
        rc = refused_redirect(&it->hs, status, reason, sizeof reason);
    } else {
        rc = translate_curl(cc, &retryable);
    }
    if (retryable && it->attempts <= l->retries) {
        it->phase = DL_BACKOFF;
        it->ready_at =
            vb__mono_ms() + vb_http_backoff_ms(pol, it->attempts, it->hs.retry_after_s);
        return;
    }
    dl_fail(it, rc, "%s (attempt %d of %d)", reason, it->attempts, l->retries + 1);
}

/* The handle's download multi and share handles, created on first use; NULL
 * when they cannot be had. */
static CURLM *kept_multi(vb_http *h, CURLSH **share)
{
    if (!h->share && (h->share = curl_share_init()) != NULL &&
        (curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK ||
         curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) !=
             CURLSHE_OK)) {
        curl_share_cleanup(h->share);
        h->share = NULL;
    }
    if (!h->multi)
        h->multi = curl_multi_init();
    *share = h->share;
    return h->multi;
}

vb_err vb_http_download_all(vb_http *h, vb_download *items, size_t n, int concurrency,
                            const vb_http_policy *pol, vb_error *err)
{
    if (n == 0)
        return VB_OK;
    if (!items)
        return vb_error_set(err, VB_ERR_INVALID, "download: no items");
    http_limits l = limits_of(pol);
    size_t conc = concurrency > 0 ? (size_t)concurrency : 1;
    if (conc > n)
        conc = n;
    vb_err rc = VB_OK;
    dl_item *its = calloc(n, sizeof *its);
    size_t *slots = calloc(conc, sizeof *slots);
    CURLSH *share = NULL;
    CURLM *multi = h ? kept_multi(h, &share) : curl_multi_init();
    /* Keep at least one idle connection per slot for the next transfers. */
    if (multi)
        curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)(conc > 4 ? conc : 4));
    if (!its || !slots || !multi) {
        free(its);
        its = NULL;
        rc = vb_error_set(err, VB_ERR_NOMEM, "download: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        its[i].d = &items[i];
        its[i].fd = -1;
        items[i].result = VB_ERR_CANCELLED;
        items[i].http_status = 0;
        items[i].bytes = 0;
        items[i].error[0] = '\0';
    }
    for (size_t s = 0; s < conc; s++)
        slots[s] = SIZE_MAX;

    size_t next = 0, done = 0;
    while (done < n) {
        if (cancelled(&l)) {
            for (size_t s = 0; s < conc; s++) {
                /* Items that already finished keep their result and file. */
                if (slots[s] == SIZE_MAX || its[slots[s]].phase == DL_DONE)
                    continue;
                dl_release(multi, &its[slots[s]]);
                dl_fail(&its[slots[s]], VB_ERR_CANCELLED, "cancelled");
                slots[s] = SIZE_MAX;
            }
            for (; next < n; next++)
                dl_fail(&its[next], VB_ERR_CANCELLED, "cancelled");
            break;
        }
        long long now = vb__mono_ms();
        int wait_ms = VB_HTTP_POLL_MS;
        /* Fill free slots, restart items whose backoff is over, retire done ones. */
        for (size_t s = 0; s < conc; s++) {
            if (slots[s] == SIZE_MAX && next < n)
                slots[s] = next++;
            if (slots[s] == SIZE_MAX)
                continue;
            dl_item *it = &its[slots[s]];
            if (it->phase == DL_PENDING || (it->phase == DL_BACKOFF && it->ready_at <= now))
                dl_start(multi, share, it, &l);
            else if (it->phase == DL_BACKOFF && it->ready_at - now < wait_ms)
                wait_ms = (int)(it->ready_at - now);
            if (it->phase == DL_DONE) {
                slots[s] = SIZE_MAX;
                done++;
                wait_ms = 0;
            }
        }
        int running = 0;
        CURLMcode mc = curl_multi_perform(multi, &running);
        if (mc != CURLM_OK) {
            rc = vb_error_set(err, VB_ERR_NETWORK, "download: %s", curl_multi_strerror(mc));
            for (size_t s = 0; s < conc; s++) {
                if (slots[s] == SIZE_MAX || its[slots[s]].phase == DL_DONE)
                    continue;
                dl_release(multi, &its[slots[s]]);
                dl_fail(&its[slots[s]], VB_ERR_NETWORK, "%s", curl_multi_strerror(mc));
            }
            for (; next < n; next++)
                dl_fail(&its[next], VB_ERR_NETWORK, "%s", curl_multi_strerror(mc));
            goto fail;
        }
        CURLMsg *msg;
        int queued;
        while ((msg = curl_multi_info_read(multi, &queued))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            char *priv = NULL;
            CURLcode result = msg->data.result;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
            dl_item *it = (dl_item *)(void *)priv;
            if (it) {
                dl_finish(multi, it, result, &l, pol);
                wait_ms = 0;
            }
        }
        if (wait_ms > 0 && curl_multi_poll(multi, NULL, 0, wait_ms, NULL) != CURLM_OK)
            nanosleep(&(struct timespec){.tv_sec = 0, .tv_nsec = 10000000L}, NULL);
    }
    for (size_t i = 0; i < n; i++) {
        if (items[i].result != VB_OK) {
            rc = vb_error_set(err, items[i].result, "download %zu of %zu failed: %s", i + 1, n,
                              items[i].error);
            if (err)
                err->http_status = items[i].http_status;
            break;
        }
    }
fail:
    if (its) {
        for (size_t i = 0; i < n; i++) {
            dl_release(multi, &its[i]);
            if (its[i].phase != DL_DONE)
                dl_fail(&its[i], rc != VB_OK ? rc : VB_ERR_CANCELLED, "not completed");
        }
    }
    if (!h && multi)
        curl_multi_cleanup(multi);
    free(slots);
    free(its);
    return rc;
}
