/*
 * endpoint.c — the services' HTTP endpoint (endpoint.h) on libmicrohttpd.
 *
 * Serving. The daemon runs an internal polling thread per pool thread with
 * epoll (poll where the library lacks it), so a connection costs a socket
 * and a memory pool, not a thread: hundreds of slow clients are hundreds of
 * idle entries in an epoll set.
 *
 * The connection table. libmicrohttpd's timeout is an idle timeout: a client
 * sending one header byte per second is never idle, and its per-address
 * limit simply refuses new connections once an attacker holds them all —
 * a probe from the same address included. So the endpoint keeps its own
 * table of open connections (filled and emptied by the connection
 * notification callback), and
 *   - marks a connection "awaiting headers" from its start and again after
 *     each completed request, until the access handler is first called for
 *     its next request (libmicrohttpd calls it once the headers are in);
 *   - a reaper thread shuts down (shutdown(2): the owning event loop then
 *     sees the end of the stream and closes it) every connection awaiting
 *     headers for longer than header_timeout_s;
 *   - the accept-policy callback, which sees each new client address before
 *     libmicrohttpd takes the connection, enforces the per-address and
 *     global limits by evicting the oldest connection still awaiting
 *     headers (of that address, or of anyone), refusing the newcomer only
 *     when there is none.
 * libmicrohttpd's own per-address and global limits stay set, well above
 * ours, as a backstop (see HARD_IP).
 *
 * The table's lock also makes shutdown(2) safe: libmicrohttpd reports a
 * connection closed (and the slot is freed under the lock) before it closes
 * the descriptor, so a descriptor number is never shut down after reuse.
 *
 * Threading: the table and its counters are guarded by `mu`; options are
 * set before the daemon starts and read-only afterwards.
 */
#include "visionbatch/endpoint.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#include "visionbatch/buf.h"
#include "visionbatch/crypto.h"
#include "visionbatch/http.h"
#include "visionbatch/log.h"
#include "util.h"

/* libmicrohttpd's own limits are only a backstop, well above ours: it
 * checks them before our accept policy runs and counts a connection until it
 * has cleaned it up, so connections we just evicted still count there, and a
 * limit near ours makes it refuse the very newcomer our policy would take.
 * Measured with 500 connections opened back to back from one address (4
 * threads, 32 per address): with a backstop of 40 or 80 a probe arriving
 * right after the burst was refused now and then; at 192 one run in eight
 * still had 39 newcomers refused there. */
#define HARD_IP(per_ip) (8u * (per_ip) + 256u)
#define HARD_ALL(max) ((max) + (max) / 2u + 64u)
#define REAP_EVERY_MS 200

typedef struct conn_slot {
    int used;
    int fd;
    int family;
    unsigned char ip[16];
    long long phase_start_ms; /* accepted, or previous request completed */
    int awaiting;             /* the headers of a request are not complete yet */
    int evicted;              /* shut down by us; libmicrohttpd closes it soon */
} conn_slot;

typedef enum { WHY_HEADER_TIMEOUT, WHY_PER_IP, WHY_GLOBAL, WHY__COUNT } close_why;
static const char *const why_names[WHY__COUNT] = {"header_timeout", "per_ip_limit",
                                                  "global_limit"};

struct vb_endpoint {
    struct MHD_Daemon *d;
    int port;
    char *name;
    char *token;
    size_t token_len;
    vb_metrics *metrics;
    vb_endpoint_check_fn live, ready;
    void *check_ctx;
    vb_endpoint_app app;
    vb_endpoint_limits lim;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    conn_slot *slots;
    size_t nslots;
    size_t open; /* used slots not evicted */
    int stop;
    int reaper_started;
    pthread_t reaper;

    vb_metric *m_open, *m_closed, *m_refused;
};

/* The address of `sa` as (family, 16 bytes); an IPv4-mapped IPv6 address
 * counts as the IPv4 address. 0 when the family is not IP. */
static int addr_key(const struct sockaddr *sa, int *family, unsigned char ip[16])
{
    memset(ip, 0, 16);
    if (sa && sa->sa_family == AF_INET) {
        memcpy(ip, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        *family = AF_INET;
        return 1;
    }
    if (sa && sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            memcpy(ip, a6->s6_addr + 12, 4);
            *family = AF_INET;
        } else {
            memcpy(ip, a6->s6_addr, 16);
            *family = AF_INET6;
        }
        return 1;
    }
    return 0;
}

/* ---- the connection table (callers hold mu) ---- */

static void evict(vb_endpoint *ep, conn_slot *s, close_why why)
{
    /* counted first: whoever sees the connection end sees it counted */
    const char *labels[] = {why_names[why]};
    vb_metric_inc(ep->m_closed, labels);
    s->evicted = 1;
    ep->open--;
    shutdown(s->fd, SHUT_RDWR);
}

/* The oldest live connection awaiting headers, of that address when
 * family != 0. */
static conn_slot *oldest_awaiting(vb_endpoint *ep, int family, const unsigned char ip[16])
{
    conn_slot *best = NULL;
    for (size_t i = 0; i < ep->nslots; i++) {
        conn_slot *s = &ep->slots[i];
        if (!s->used || s->evicted || !s->awaiting)
            continue;
        if (family && (s->family != family || memcmp(s->ip, ip, 16) != 0))
            continue;
        if (!best || s->phase_start_ms < best->phase_start_ms)
            best = s;
    }
    return best;
}

static size_t count_from(vb_endpoint *ep, int family, const unsigned char ip[16])
{
    size_t n = 0;
    for (size_t i = 0; i < ep->nslots; i++) {
        const conn_slot *s = &ep->slots[i];
        n += s->used && !s->evicted && s->family == family && memcmp(s->ip, ip, 16) == 0;
    }
    return n;
}

/* Makes room for one more connection from (family, ip): 1 when there is
 * room (possibly after evicting), 0 when it must be refused. */
static int make_room(vb_endpoint *ep, int family, const unsigned char ip[16])
{
    if (count_from(ep, family, ip) >= ep->lim.max_connections_per_ip) {
        conn_slot *victim = oldest_awaiting(ep, family, ip);
        const char *labels[] = {why_names[WHY_PER_IP]};
        if (!victim) {
            vb_metric_inc(ep->m_refused, labels);
            return 0;
        }
        evict(ep, victim, WHY_PER_IP);
    }
    if (ep->open >= ep->lim.max_connections) {
        conn_slot *victim = oldest_awaiting(ep, 0, ip);
        const char *labels[] = {why_names[WHY_GLOBAL]};
        if (!victim) {
            vb_metric_inc(ep->m_refused, labels);
            return 0;
        }
        evict(ep, victim, WHY_GLOBAL);
    }
    return 1;
}

static conn_slot *slot_of(struct MHD_Connection *con)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(con, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* ---- libmicrohttpd callbacks ---- */

static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    vb_endpoint *ep = cls;
    int family;
    unsigned char ip[16];
    (void)addrlen;
    if (!addr_key(addr, &family, ip))
        return MHD_YES;
    pthread_mutex_lock(&ep->mu);
    int ok = make_room(ep, family, ip);
    pthread_mutex_unlock(&ep->mu);
    return ok ? MHD_YES : MHD_NO;
}

static void on_connection(void *cls, struct MHD_Connection *con, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    vb_endpoint *ep = cls;
    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        conn_slot *s = *socket_context;
        if (!s)
            return;
        pthread_mutex_lock(&ep->mu);
        if (!s->evicted)
            ep->open--;
        s->used = 0;
        pthread_mutex_unlock(&ep->mu);
        *socket_context = NULL;
        return;
    }
    const union MHD_ConnectionInfo *fdi =
        MHD_get_connection_info(con, MHD_CONNECTION_INFO_CONNECTION_FD);
    const union MHD_ConnectionInfo *ai =
        MHD_get_connection_info(con, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!fdi)
        return;
    pthread_mutex_lock(&ep->mu);
    conn_slot *s = NULL;
    for (size_t i = 0; i < ep->nslots && !s; i++)
        if (!ep->slots[i].used)
            s = &ep->slots[i];
    if (!s) { /* cannot happen: the table is as large as the daemon's limit */
        shutdown(fdi->connect_fd, SHUT_RDWR);
    } else {
        memset(s, 0, sizeof *s);
        s->used = 1;
        s->fd = fdi->connect_fd;
        if (!ai || !addr_key(ai->client_addr, &s->family, s->ip))
            s->family = -1;
        s->phase_start_ms = vb__mono_ms();
        s->awaiting = 1;
        ep->open++;
    }
    *socket_context = s;
    pthread_mutex_unlock(&ep->mu);
}

static void on_completed(void *cls, struct MHD_Connection *con, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    vb_endpoint *ep = cls;
    if (ep->app.completed && *req_cls)
        ep->app.completed(ep->app.cls, con, req_cls, (int)toe);
    conn_slot *s = slot_of(con);
    if (!s)
        return;
    pthread_mutex_lock(&ep->mu);
    s->awaiting = 1; /* the next request's headers are due from now */
    s->phase_start_ms = vb__mono_ms();
    pthread_mutex_unlock(&ep->mu);
}

static void *reaper_main(void *arg)
{
    vb_endpoint *ep = arg;
    long long limit_ms = (long long)ep->lim.header_timeout_s * 1000;
    pthread_mutex_lock(&ep->mu);
    while (!ep->stop) {
        struct timespec until = vb__realtime_after(REAP_EVERY_MS);
        pthread_cond_timedwait(&ep->cv, &ep->mu, &until);
        long long now = vb__mono_ms();
        for (size_t i = 0; i < ep->nslots; i++) {
            conn_slot *s = &ep->slots[i];
            if (s->used && !s->evicted && s->awaiting && now - s->phase_start_ms > limit_ms)
                evict(ep, s, WHY_HEADER_TIMEOUT);
        }
        vb_metric_set(ep->m_open, NULL, (double)ep->open);
    }
    pthread_mutex_unlock(&ep->mu);
    return NULL;
}

/* ---- the three built-in routes ---- */

static enum MHD_Result send_text(struct MHD_Connection *con, unsigned status, const char *ctype,
                                 char *body, const char *allow, int challenge)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        body ? strlen(body) : 0, body ? body : (char *)"",
        body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    if (challenge)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    enum MHD_Result ret = MHD_queue_response(con, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* {"status": status[, "detail": detail]} */
static enum MHD_Result send_status(struct MHD_Connection *con, unsigned code, const char *status,
                                   const char *detail)
{
    vb_buf b = {0};
    vb_err rc = vb_buf_printf(&b, "{\"status\":\"%s\"", status);
    if (rc == VB_OK && detail) {
        rc = vb_buf_append_str(&b, ",\"detail\":\"");
        /* reasons are ours, but keep the JSON valid whatever they hold */
        for (const char *p = detail; *p && rc == VB_OK; p++)
            rc = (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
                     ? vb_buf_printf(&b, "\\u%04x", (unsigned char)*p)
                     : vb_buf_append(&b, p, 1);
        if (rc == VB_OK)
            rc = vb_buf_append_str(&b, "\"");
    }
    if (rc == VB_OK)
        rc = vb_buf_append_str(&b, "}");
    if (rc != VB_OK) {
        vb_buf_free(&b);
        return MHD_NO;
    }
    return send_text(con, code, "application/json", vb_buf_steal(&b), NULL, 0);
}

int vb_endpoint_bearer_ok(struct MHD_Connection *con, const char *token, size_t token_len)
{
    if (!token)
        return 1;
    const char *h =
        MHD_lookup_connection_value(con, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return 0;
    h += 7;
    while (*h == ' ')
        h++;
    return vb_crypto_equal(h, strlen(h), token, token_len);
}

static enum MHD_Result serve_check(struct MHD_Connection *con, vb_endpoint_check_fn fn,
                                   void *ctx, const char *good)
{
    char why[256] = "";
    if (!fn || fn(ctx, why, sizeof why))
        return send_status(con, 200, good, NULL);
    return send_status(con, 503, "unavailable", why[0] ? why : "not ready");
}

static enum MHD_Result serve_metrics(vb_endpoint *ep, struct MHD_Connection *con)
{
    char *text = NULL;
    vb_error err;
    vb_error_clear(&err);
    if (vb_metrics_render(ep->metrics, &text, &err) != VB_OK)
        return send_text(con, 500, "application/json",
                         strdup("{\"detail\":\"metrics unavailable\"}"), NULL, 0);
    return send_text(con, 200, "text/plain; version=0.0.4; charset=utf-8", text, NULL, 0);
}

static const char *const own_paths[] = {"/healthz", "/readyz", "/metrics"};

int vb_endpoint_route(size_t i, const char **method, const char **path)
{
    if (i >= sizeof own_paths / sizeof own_paths[0])
        return 0;
    *method = "GET";
    *path = own_paths[i];
    return 1;
}

/* Is `url` `path`, or `path` with a trailing slash? */
static int is_path(const char *url, const char *path)
{
    size_t n = strlen(path);
    return strncmp(url, path, n) == 0 && (url[n] == '\0' || (url[n] == '/' && !url[n + 1]));
}

static enum MHD_Result dispatch(void *cls, struct MHD_Connection *con, const char *url,
                                const char *method, const char *version, const char *upload,
                                size_t *upload_size, void **req_cls)
{
    vb_endpoint *ep = cls;
    conn_slot *s = slot_of(con);
    if (s) {
        pthread_mutex_lock(&ep->mu);
        s->awaiting = 0; /* the headers are in */
        pthread_mutex_unlock(&ep->mu);
    }
    int health = is_path(url, own_paths[0]), ready = is_path(url, own_paths[1]);
    int metrics = ep->metrics && is_path(url, own_paths[2]);
    if (!health && !ready && !metrics) {
        if (ep->app.handle)
            return ep->app.handle(ep->app.cls, con, url, method, version, upload, upload_size,
                                  req_cls) ? MHD_YES : MHD_NO;
        return send_text(con, 404, "application/json", strdup("{\"detail\":\"not found\"}"),
                         NULL, 0);
    }
    if (metrics && !vb_endpoint_bearer_ok(con, ep->token, ep->token_len))
        return send_text(con, 401, "application/json",
                         strdup("{\"detail\":\"missing or invalid API token (send "
                                "Authorization: Bearer <token>)\"}"),
                         NULL, 1);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return send_text(con, 405, "application/json",
                         strdup("{\"detail\":\"method not allowed\"}"), "GET", 0);
    if (health)
        return serve_check(con, ep->live, ep->check_ctx, "ok");
    if (ready)
        return serve_check(con, ep->ready ? ep->ready : ep->live, ep->check_ctx, "ready");
    return serve_metrics(ep, con);
}

/* ---- start / stop ---- */

vb_endpoint_limits vb_endpoint_limits_of(const vb_config *cfg)
{
    vb_endpoint_limits l = {
        .threads = (unsigned)cfg->http_threads,
        .max_connections = (unsigned)cfg->http_max_connections,
        .max_connections_per_ip = (unsigned)cfg->http_max_connections_per_ip,
        .header_timeout_s = (unsigned)cfg->http_header_timeout_s,
        .idle_timeout_s = (unsigned)cfg->http_idle_timeout_s,
    };
    return l;
}

static void fill_limits(vb_endpoint_limits *l)
{
    if (!l->threads)
        l->threads = VB_ENDPOINT_THREADS_DEFAULT;
    if (!l->max_connections)
        l->max_connections = VB_ENDPOINT_MAX_CONNECTIONS_DEFAULT;
    if (!l->max_connections_per_ip)
        l->max_connections_per_ip = VB_ENDPOINT_PER_IP_DEFAULT;
    if (l->max_connections_per_ip > l->max_connections)
        l->max_connections_per_ip = l->max_connections;
    if (!l->header_timeout_s)
        l->header_timeout_s = VB_ENDPOINT_HEADER_TIMEOUT_DEFAULT;
    if (!l->idle_timeout_s)
        l->idle_timeout_s = VB_ENDPOINT_IDLE_TIMEOUT_DEFAULT;
    /* Every connection is a descriptor: stay below the process's limit. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < (rlim_t)HARD_ALL(l->max_connections) + 128) {
        /* the largest max with HARD_ALL(max) + 128 descriptors available */
        unsigned cap = rl.rlim_cur > 256 ? (unsigned)((rl.rlim_cur - 192) * 2 / 3) : 16u;
        VB_WARN("http_max_connections %u lowered to %u: open-file limit is %llu",
                l->max_connections, cap, (unsigned long long)rl.rlim_cur);
        l->max_connections = cap;
        if (l->max_connections_per_ip > cap)
            l->max_connections_per_ip = cap;
    }
}

/* "host:port" → a socket address (first getaddrinfo answer). */
static vb_err resolve(const char *listen, struct sockaddr_storage *ss, vb_error *err)
{
    char host[256];
    const char *colon = listen ? strrchr(listen, ':') : NULL;
    if (!colon || (size_t)(colon - listen) >= sizeof host)
        return vb_error_set(err, VB_ERR_CONFIG, "listen address \"%.80s\": expected host:port",
                            listen ? listen : "");
    size_t hn = (size_t)(colon - listen);
    memcpy(host, listen, hn);
    host[hn] = '\0';
    if (hn >= 2 && host[0] == '[' && host[hn - 1] == ']') {
        memmove(host, host + 1, hn - 2);
        host[hn - 2] = '\0';
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int e = getaddrinfo(host[0] && strcmp(host, "*") != 0 ? host : NULL, colon + 1, &hints, &ai);
    if (e != 0 || !ai)
        return vb_error_set(err, VB_ERR_CONFIG, "listen address \"%.80s\": %s", listen,
                            gai_strerror(e));
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    return VB_OK;
}

static void register_metrics(vb_endpoint *ep)
{
    ep->m_open = vb_metrics_gauge(ep->metrics, "visionbatch_http_connections",
                                  "Open connections of the HTTP endpoint.", NULL);
    ep->m_closed = vb_metrics_counter(ep->metrics, "visionbatch_http_connections_closed_total",
                                      "Connections the HTTP endpoint closed while they were "
                                      "still sending request headers, by reason.",
                                      "reason");
    ep->m_refused = vb_metrics_counter(ep->metrics, "visionbatch_http_connections_refused_total",
                                       "New connections refused at a connection limit, by "
                                       "limit.",
                                       "reason");
    vb_metric_set(ep->m_open, NULL, 0);
    for (int i = 0; i < WHY__COUNT; i++) {
        const char *labels[] = {why_names[i]};
        vb_metric_add(ep->m_closed, labels, 0);
        if (i != WHY_HEADER_TIMEOUT)
            vb_metric_add(ep->m_refused, labels, 0);
    }
}

vb_err vb_endpoint_start(const vb_endpoint_opts *o, vb_endpoint **out, vb_error *err)
{
    *out = NULL;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    vb_err rc = resolve(o->listen, &ss, err);
    if (rc != VB_OK)
        return rc;
    vb_endpoint *ep = calloc(1, sizeof *ep);
    if (!ep)
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&ep->mu, NULL);
    pthread_cond_init(&ep->cv, NULL);
    ep->lim = o->limits;
    fill_limits(&ep->lim);
    ep->metrics = o->metrics;
    ep->live = o->live;
    ep->ready = o->ready;
    ep->check_ctx = o->check_ctx;
    ep->app = o->app;
    ep->name = strdup(o->name ? o->name : "HTTP endpoint");
    if (o->token && o->token[0]) {
        ep->token = strdup(o->token);
        ep->token_len = ep->token ? strlen(ep->token) : 0;
    }
    unsigned hard_all = HARD_ALL(ep->lim.max_connections);
    unsigned hard_ip = HARD_IP(ep->lim.max_connections_per_ip);
    ep->nslots = hard_all;
    ep->slots = calloc(ep->nslots, sizeof *ep->slots);
    if (!ep->name || !ep->slots || (o->token && o->token[0] && !ep->token)) {
        rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (ep->metrics)
        register_metrics(ep);
    if (pthread_create(&ep->reaper, NULL, reaper_main, ep) != 0) {
        rc = vb_error_set(err, VB_ERR_NOMEM, "cannot start the connection reaper");
        goto fail;
    }
    ep->reaper_started = 1;

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD |
                     (MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES ? MHD_USE_EPOLL
                                                                             : MHD_USE_POLL);
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    ep->d = MHD_start_daemon(
        flags, 0, accept_policy, ep, dispatch, ep, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_THREAD_POOL_SIZE, ep->lim.threads, MHD_OPTION_CONNECTION_LIMIT, hard_all,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, hard_ip < hard_all ? hard_ip : hard_all,
        MHD_OPTION_CONNECTION_TIMEOUT, ep->lim.idle_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024), MHD_OPTION_NOTIFY_CONNECTION,
        on_connection, ep, MHD_OPTION_NOTIFY_COMPLETED, on_completed, ep, MHD_OPTION_END);
    if (!ep->d) {
        rc = vb_error_set(err, VB_ERR_NETWORK,
                          "cannot listen on %s (address in use or not local?)", o->listen);
        goto fail;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(ep->d, MHD_DAEMON_INFO_BIND_PORT);
    ep->port = info ? info->port : 0;
    VB_INFO("%s on http://%s (port %d; %u threads, at most %u connections, %u per address, "
            "headers within %u s)",
            ep->name, o->listen, ep->port, ep->lim.threads, ep->lim.max_connections,
            ep->lim.max_connections_per_ip, ep->lim.header_timeout_s);
    *out = ep;
    return VB_OK;
fail:
    vb_endpoint_stop(ep);
    return rc;
}

void vb_endpoint_stop(vb_endpoint *ep)
{
    if (!ep)
        return;
    if (ep->d)
        MHD_stop_daemon(ep->d);
    if (ep->reaper_started) {
        pthread_mutex_lock(&ep->mu);
        ep->stop = 1;
        pthread_cond_signal(&ep->cv);
        pthread_mutex_unlock(&ep->mu);
        pthread_join(ep->reaper, NULL);
    }
    if (ep->token) {
        vb_crypto_wipe(ep->token, ep->token_len);
        free(ep->token);
    }
    free(ep->slots);
    free(ep->name);
    pthread_cond_destroy(&ep->cv);
    pthread_mutex_destroy(&ep->mu);
    free(ep);
}

int vb_endpoint_port(const vb_endpoint *ep)
{
    return ep ? ep->port : 0;
}

/* ---- the health client ---- */

/* http://<listen>/healthz, with a wildcard address replaced by loopback. */
static void health_url(const char *listen, char *out, size_t outlen)
{
    const char *colon = strrchr(listen, ':');
    const char *port = colon ? colon + 1 : "";
    size_t hostlen = colon ? (size_t)(colon - listen) : strlen(listen);
    char host[256];
    if (hostlen >= sizeof host)
        hostlen = sizeof host - 1;
    memcpy(host, listen, hostlen);
    host[hostlen] = '\0';
    if (hostlen == 0 || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "*") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    else if (strcmp(host, "[::]") == 0)
        snprintf(host, sizeof host, "[::1]");
    snprintf(out, outlen, "http://%s:%s/healthz", host, port);
}

int vb_endpoint_healthcheck(const char *listen, const char *prog)
{
    char url[300];
    health_url(listen ? listen : "", url, sizeof url);
    vb_http *h = vb_http_new();
    if (!h) {
        fprintf(stderr, "%s: unhealthy: out of memory\n", prog);
        return 1;
    }
    vb_http_policy pol = {.connect_timeout_ms = 2000, .timeout_ms = 4500, .max_bytes = 4096};
    vb_http_request req = {.method = "GET", .url = url};
    vb_http_response resp;
    memset(&resp, 0, sizeof resp);
    vb_error err;
    vb_error_clear(&err);
    vb_err rc = vb_http_perform(h, &req, &pol, &resp, &err);
    if (rc != VB_OK)
        fprintf(stderr, "%s: unhealthy: %s\n", prog, err.msg);
    vb_http_response_free(&resp);
    vb_http_free(h);
    return rc == VB_OK ? 0 : 1;
}
