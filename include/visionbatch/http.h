/*
 * http.h — the HTTP client every visionbatch component uses (libcurl inside).
 *
 * One vb_http handle per thread (it wraps one curl easy handle and reuses its
 * connections). Policies shared by every call: only http/https, also across
 * redirects (at most 5); connect and total timeouts; a cap on what is
 * accepted; retries with exponential backoff and full jitter on network
 * errors, timeouts, 429 (honouring Retry-After, capped by retry_max_ms) and
 * 5xx. A transfer is abandoned promptly when the cancel flag becomes non-zero.
 * Error messages carry redacted URLs only. vb_http_global_init() must run
 * before any thread starts.
 */
#ifndef VISIONBATCH_HTTP_H
#define VISIONBATCH_HTTP_H

#include <stdatomic.h>
#include <stddef.h>

#include "visionbatch/buf.h"
#include "visionbatch/error.h"

typedef struct vb_http vb_http;

typedef struct vb_http_policy {
    long connect_timeout_ms; /* 0 = 10000 */
    long timeout_ms;         /* total per attempt; 0 = 60000 */
    long long max_bytes;     /* response body cap; 0 = 16 MiB */
    int retries;             /* attempts after the first */
    long retry_base_ms;      /* backoff base; 0 = 500 */
    long retry_max_ms;       /* backoff cap; 0 = 30000 */
    int retry_on_5xx;        /* retry 5xx/429 (transport errors always retry) */
    const atomic_int *cancel; /* optional; non-zero aborts */
    int same_origin;         /* follow redirects only to the request's own scheme, host
                                and port; another origin fails the transfer
                                (VB_ERR_INVALID, not retried) before it is asked */
    int no_redirects;        /* 1: never follow a redirect; a 3xx answer is returned
                                as is (VB_ERR_HTTP) */
} vb_http_policy;

/* One multipart/form-data part: either a value or a file. */
typedef struct vb_http_part {
    const char *name;
    const char *value;        /* form field value, or NULL for a file part */
    const char *file_path;    /* file streamed from disk (not read into memory) */
    const char *filename;     /* filename sent for a file part */
    const char *content_type; /* content type of a file part */
    int fd;                   /* with from_fd: see vb_http_part_fd() */
    int from_fd;
} vb_http_part;

/* A file part whose bytes are read from `fd`, an open regular file, from
 * offset 0 to its size at the time of the request (read with pread, so
 * retries can rewind it and the descriptor's offset is untouched; never
 * closed). No path is opened: a file opened safely (openat, O_NOFOLLOW)
 * stays the file that is sent. The strings are borrowed. */
vb_http_part vb_http_part_fd(const char *name, int fd, const char *filename,
                             const char *content_type);

/* A pre-request hook: called after the connection is made (or reused) and
 * right before each attempt's request goes on the wire (libcurl's
 * CURLOPT_PREREQFUNCTION). Returning non-VB_OK aborts the call: nothing of
 * that attempt is sent, no retry follows, and vb_http_perform fails with the
 * hook's code and message. */
typedef vb_err (*vb_http_prereq_fn)(void *ctx, vb_error *err);

typedef struct vb_http_request {
    const char *method;       /* "GET", "POST", "DELETE"…; NULL = GET */
    const char *url;
    const char *bearer;       /* Authorization: Bearer <bearer>, or NULL */
    const char *content_type; /* for `body`; default application/json */
    const char *body;         /* request body, or NULL */
    size_t body_len;
    const vb_http_part *parts; /* multipart/form-data when nparts > 0 */
    size_t nparts;
    vb_http_prereq_fn prereq;  /* optional: checked before each attempt is sent */
    void *prereq_ctx;
    const char *const *headers; /* extra "Name: value" lines (no CR/LF), or NULL */
    size_t nheaders;
} vb_http_request;

typedef struct vb_http_response {
    long status;           /* final HTTP status, 0 if none */
    vb_buf body;           /* owned; free with vb_http_response_free */
    char content_type[128];
    long retry_after_s;    /* Retry-After of the last answer, -1 if none */
    int attempts;          /* attempts made */
    long long streamed;    /* vb_http_perform_to_fd: bytes of the 2xx body written */
} vb_http_response;

vb_err vb_http_global_init(void);
void vb_http_global_cleanup(void);

vb_http *vb_http_new(void);
void vb_http_free(vb_http *h);

/* Performs `req` under `pol`, retrying per the policy. Returns VB_OK only for
 * a 2xx answer; VB_ERR_HTTP (err->http_status set, resp->body holds the
 * answer, capped) for others; VB_ERR_NETWORK / VB_ERR_TIMEOUT /
 * VB_ERR_TOO_LARGE / VB_ERR_CANCELLED otherwise. *resp is reset first and
 * must be freed by the caller in every case. */
vb_err vb_http_perform(vb_http *h, const vb_http_request *req, const vb_http_policy *pol,
                       vb_http_response *resp, vb_error *err);

/* vb_http_perform, but a 2xx body is written to `fd` (a regular file,
 * borrowed, not closed) from its current offset instead of being held in
 * memory: the same policy (size cap pol->max_bytes → VB_ERR_TOO_LARGE,
 * redirects, timeouts, retries, cancel) applies. Each attempt truncates the
 * file back to that offset first; after a failure it may hold a partial
 * body (the caller removes it). resp->streamed is the number of bytes
 * written; resp->body holds non-2xx answers only, capped at 64 KiB. A write
 * error is VB_ERR_IO, not retried. */
vb_err vb_http_perform_to_fd(vb_http *h, const vb_http_request *req, const vb_http_policy *pol,
                             int fd, vb_http_response *resp, vb_error *err);

void vb_http_response_free(vb_http_response *resp);

/* Delay before retry `attempt` (1-based): uniform in [0, min(max, base*2^(attempt-1))],
 * or Retry-After seconds (capped by max) when retry_after_s >= 0. Exposed for tests. */
long vb_http_backoff_ms(const vb_http_policy *pol, int attempt, long retry_after_s);

/* ---- parallel downloads to disk (curl multi) ---- */

typedef struct vb_download {
    const char *url;       /* input: http/https URL */
    const char *dest_path; /* input: file to create (mode 0600, O_EXCL, O_NOFOLLOW) */
    int dir_fd;            /* input: directory a relative dest_path is in (openat;
                              AT_FDCWD for the current one); ignored for an
                              absolute dest_path */
    vb_err result;         /* output */
    long http_status;      /* output */
    long long bytes;       /* output: bytes written */
    char error[256];       /* output: redacted reason when result != VB_OK */
} vb_download;

/* Downloads every item, at most `concurrency` at once, streaming bodies to
 * disk (never buffering a whole document). Each item gets the policy's
 * retries; bodies over pol->max_bytes fail with VB_ERR_TOO_LARGE and their
 * partial file is removed. A failed item leaves no file behind. Returns VB_OK
 * if every item succeeded, else the first failing item's code; per-item
 * results are in the array. With `h` the transfers reuse the connections,
 * DNS answers and TLS sessions h kept from earlier downloads and leave theirs
 * open for the next call (at most max(concurrency, 4) idle connections; freed
 * with h); h belongs to the calling thread as for vb_http_perform. NULL h:
 * connections last for this call only. */
vb_err vb_http_download_all(vb_http *h, vb_download *items, size_t n, int concurrency,
                            const vb_http_policy *pol, vb_error *err);

#endif
