/*
 * endpoint.h — the HTTP endpoint every service exposes (libmicrohttpd):
 * GET /healthz (liveness), GET /readyz (readiness) and GET /metrics
 * (Prometheus text of a vb_metrics registry), plus, optionally, a program's
 * own request handler mounted on the same listener for every other path
 * (the producer's REST API). Also the client side of `--healthcheck`.
 *
 * Slow clients cannot take it down: connections are served by a small pool
 * of event-loop threads (epoll), and four limits bound what one client can
 * hold (see vb_endpoint_limits and docs/operations.md):
 *   - a request's headers must arrive within header_timeout_s of the
 *     connection's start (or of the end of its previous request), however
 *     steadily they trickle in — libmicrohttpd's own timeout only closes
 *     connections that are idle;
 *   - one client address holds at most max_connections_per_ip connections,
 *     and the endpoint at most max_connections. A new connection over
 *     either limit evicts the oldest connection of that address (or of
 *     anyone, for the global limit) still waiting for its headers, so a
 *     fresh probe that sends its request at once is served even from the
 *     address of an attacker; only when no such connection exists is the
 *     new one refused;
 *   - an established connection idle for idle_timeout_s is closed.
 *
 * Threading: the endpoint runs its own threads; the check callbacks and the
 * mounted handler are called from them, concurrently, and must be
 * thread-safe. Everything the callbacks read must be set before
 * vb_endpoint_start or be guarded by the caller.
 */
#ifndef VISIONBATCH_ENDPOINT_H
#define VISIONBATCH_ENDPOINT_H

#include <stddef.h>

#include "visionbatch/config.h"
#include "visionbatch/error.h"
#include "visionbatch/metrics.h"

#define VB_ENDPOINT_THREADS_DEFAULT 16
#define VB_ENDPOINT_MAX_CONNECTIONS_DEFAULT 512
#define VB_ENDPOINT_PER_IP_DEFAULT 32
#define VB_ENDPOINT_HEADER_TIMEOUT_DEFAULT 10
#define VB_ENDPOINT_IDLE_TIMEOUT_DEFAULT 30

/* libmicrohttpd's connection, for a mounted handler only. */
struct MHD_Connection;

typedef struct vb_endpoint vb_endpoint;

/* A health check: returns 1 when healthy; else 0 with a short reason (no
 * secrets: it is sent to the client) in `why`. */
typedef int (*vb_endpoint_check_fn)(void *ctx, char *why, size_t whylen);

/* Connection limits; 0 in any field = its default above. */
typedef struct vb_endpoint_limits {
    unsigned threads;                /* event-loop threads */
    unsigned max_connections;        /* open connections in all */
    unsigned max_connections_per_ip; /* open connections of one client address */
    unsigned header_timeout_s;       /* a request's headers must be complete within */
    unsigned idle_timeout_s;         /* an established connection idle this long is closed */
} vb_endpoint_limits;

/* A handler mounted for every path the endpoint does not serve itself, with
 * libmicrohttpd's access-handler contract (return MHD_YES = 1 / MHD_NO = 0;
 * *req_cls is the handler's own per-request state) and its completion
 * callback (`toe` is an enum MHD_RequestTerminationCode). */
typedef struct vb_endpoint_app {
    int (*handle)(void *cls, struct MHD_Connection *con, const char *url, const char *method,
                  const char *version, const char *upload_data, size_t *upload_data_size,
                  void **req_cls);
    void (*completed)(void *cls, struct MHD_Connection *con, void **req_cls, int toe);
    void *cls;
} vb_endpoint_app;

typedef struct vb_endpoint_opts {
    const char *listen;        /* "host:port", "[v6]:port", ":port" (all interfaces);
                                  port 0 = any free port (see vb_endpoint_port) */
    const char *name;          /* what it serves, for logs ("metrics and health") */
    vb_metrics *metrics;       /* rendered at /metrics (NULL: 404); the endpoint adds its
                                  connection metrics to it. Borrowed: outlives the endpoint */
    const char *token;         /* when set, /metrics needs `Authorization: Bearer
                                  <token>`; /healthz and /readyz never do (probes) */
    vb_endpoint_check_fn live; /* /healthz: NULL = always healthy */
    vb_endpoint_check_fn ready; /* /readyz: NULL = as live */
    void *check_ctx;           /* passed to live and ready */
    vb_endpoint_app app;       /* handle NULL = none: other paths are 404 */
    vb_endpoint_limits limits;
} vb_endpoint_opts;

/* The limits set by the http_* settings of `cfg`. */
vb_endpoint_limits vb_endpoint_limits_of(const vb_config *cfg);

/* Binds `listen` and starts serving. The opts strings are copied (the token
 * is wiped on stop). VB_ERR_CONFIG for a bad address, VB_ERR_NETWORK when it
 * cannot be bound, VB_ERR_NOMEM. On VB_OK *out is the endpoint; free it with
 * vb_endpoint_stop. */
vb_err vb_endpoint_start(const vb_endpoint_opts *opts, vb_endpoint **out, vb_error *err);

/* Stops accepting, closes every connection, waits for the handlers in
 * flight and frees the endpoint. NULL is accepted. */
void vb_endpoint_stop(vb_endpoint *ep);

/* The bound TCP port (useful with port 0). */
int vb_endpoint_port(const vb_endpoint *ep);

/* The i-th path the endpoint serves itself (0-based): method "GET" and the
 * path ("/healthz", "/readyz", "/metrics"). Returns 0 past the last, else 1.
 * Thread-safe (static data). */
int vb_endpoint_route(size_t i, const char **method, const char **path);

/* For a mounted handler: 1 when `con` carries `Authorization: Bearer
 * <token>` (constant-time compare), or when token is NULL; else 0. */
int vb_endpoint_bearer_ok(struct MHD_Connection *con, const char *token, size_t token_len);

/* `--healthcheck`: GET http://<listen>/healthz (a wildcard address is asked
 * on loopback) with a 4.5 s budget. Returns 0 when it answered 2xx, else 1
 * after printing "<prog>: unhealthy: <reason>" to stderr. Needs
 * vb_http_global_init() first. */
int vb_endpoint_healthcheck(const char *listen, const char *prog);

#endif
