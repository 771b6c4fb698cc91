/*
 * notify.c — webhook targets, signatures and the delivery queue (see
 * notify.h). Validation is pure (cJSON); signing is OpenSSL's HMAC; the
 * queue is two Lua scripts over the vb_jobs handle's connection, so a claim
 * and a finish are each atomic with respect to every other producer.
 *
 * Threading: stateless; thread-safety comes from the vb_jobs handle.
 */
#include "visionbatch/notify.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "jobs_internal.h"
#include "visionbatch/crypto.h"
#include "visionbatch/log.h"
#include "visionbatch/redact.h"

#define DUE_SET "visionbatch:notify:due"
#define CLAIM_BATCH 16

static const char *const events[] = {"execution.failed", "execution.partial",
                                     "execution.succeeded", "run.dead", "job.paused"};

int vb_notify_event_valid(const char *event)
{
    for (size_t i = 0; event && i < sizeof events / sizeof events[0]; i++)
        if (strcmp(event, events[i]) == 0)
            return 1;
    return 0;
}

/* Copies the host of an http(s) URL into host (lower case, IPv6 brackets
 * removed); 0 when the URL is not an acceptable webhook URL. */
static int url_host(const char *url, char *host, size_t hostlen)
{
    int ok = 0;
    char *scheme = NULL, *h = NULL, *user = NULL, *frag = NULL;
    CURLU *u = curl_url();
    if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
        goto done;
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
        goto done;
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0) == CURLUE_OK)
        goto done;
    if (curl_url_get(u, CURLUPART_HOST, &h, 0) != CURLUE_OK || !h[0])
        goto done;
    const char *p = h;
    size_t n = strlen(p);
    if (p[0] == '[' && n > 2 && p[n - 1] == ']') {
        p++;
        n -= 2;
    }
    if (n >= hostlen)
        goto done;
    for (size_t i = 0; i < n; i++)
        host[i] = (char)tolower((unsigned char)p[i]);
    host[n] = '\0';
    ok = 1;
done:
    curl_free(scheme);
    curl_free(h);
    curl_free(user);
    curl_free(frag);
    curl_url_cleanup(u);
    return ok;
}

int vb_notify_host_allowed(const char *url, const char *allowed)
{
    char host[256];
    if (!url || !allowed || !allowed[0] || !url_host(url, host, sizeof host))
        return 0;
    size_t hn = strlen(host);
    const char *p = allowed;
    while (*p) {
        while (*p == ',' || *p == ' ')
            p++;
        size_t n = strcspn(p, ", ");
        if (n == 0)
            break;
        if (n > 2 && p[0] == '*' && p[1] == '.') {
            size_t dn = n - 1; /* ".domain" */
            if (hn > dn && strncasecmp(host + hn - dn, p + 1, dn) == 0)
                return 1;
        } else if (n == hn && strncasecmp(host, p, n) == 0) {
            return 1;
        }
        p += n;
    }
    return 0;
}

static vb_err check_target(const cJSON *t, size_t i, cJSON *out, vb_error *err)
{
    char host[256];
    if (!cJSON_IsObject(t))
        return vb_error_set(err, VB_ERR_INVALID, "notify[%zu] must be an object", i);
    for (const cJSON *f = t->child; f; f = f->next)
        if (strcmp(f->string, "url") != 0 && strcmp(f->string, "events") != 0)
            return vb_error_set(err, VB_ERR_INVALID, "notify[%zu]: unknown field", i);
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(t, "url");
    const cJSON *evs = cJSON_GetObjectItemCaseSensitive(t, "events");
    if (!cJSON_IsString(url) || !url->valuestring[0] ||
        strlen(url->valuestring) > VB_NOTIFY_URL_MAX)
        return vb_error_set(err, VB_ERR_INVALID, "notify[%zu].url must be a URL of at most %d bytes",
                            i, VB_NOTIFY_URL_MAX);
    for (const char *c = url->valuestring; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f)
            return vb_error_set(err, VB_ERR_INVALID, "notify[%zu].url holds a space or control "
                                "character", i);
    if (!url_host(url->valuestring, host, sizeof host))
        return vb_error_set(err, VB_ERR_INVALID,
                            "notify[%zu].url must be http:// or https:// with a host, without "
                            "credentials or fragment", i);
    int n = cJSON_GetArraySize(evs);
    if (!cJSON_IsArray(evs) || n == 0)
        return vb_error_set(err, VB_ERR_INVALID, "notify[%zu].events must be a non-empty array",
                            i);
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    if (!o || !arr || !cJSON_AddItemToArray(out, o)) {
        cJSON_Delete(o);
        cJSON_Delete(arr);
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    }
    if (!cJSON_AddStringToObject(o, "url", url->valuestring) ||
        !cJSON_AddItemToObject(o, "events", arr)) {
        cJSON_Delete(arr);
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    }
    for (const cJSON *e = evs->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !vb_notify_event_valid(e->valuestring))
            return vb_error_set(err, VB_ERR_INVALID,
                                "notify[%zu].events: unknown event (use execution.failed, "
                                "execution.partial, execution.succeeded, run.dead, job.paused)",
                                i);
        for (const cJSON *d = evs->child; d != e; d = d->next)
            if (strcmp(d->valuestring, e->valuestring) == 0)
                return vb_error_set(err, VB_ERR_INVALID, "notify[%zu].events: duplicate event",
                                    i);
        if (!cJSON_AddItemToArray(arr, cJSON_CreateString(e->valuestring)))
            return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    }
    return VB_OK;
}

vb_err vb_notify_validate(const cJSON *notify, char **canonical, vb_error *err)
{
    vb_err rc = VB_OK;
    *canonical = NULL;
    if (!cJSON_IsArray(notify))
        return vb_error_set(err, VB_ERR_INVALID, "notify must be an array");
    if (cJSON_GetArraySize(notify) > VB_NOTIFY_TARGETS_MAX)
        return vb_error_set(err, VB_ERR_INVALID, "notify has more than %d targets",
                            VB_NOTIFY_TARGETS_MAX);
    cJSON *out = cJSON_CreateArray();
    if (!out)
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    size_t i = 0;
    for (const cJSON *t = notify->child; t; t = t->next, i++)
        if ((rc = check_target(t, i, out, err)) != VB_OK)
            goto done;
    if (!(*canonical = cJSON_PrintUnformatted(out)))
        rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
done:
    cJSON_Delete(out);
    return rc;
}

vb_err vb_notify_sign(const char *secret, long long t, const char *body, size_t len,
                      char out[VB_NOTIFY_SIG_MAX], vb_error *err)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    char ts[24];
    vb_err rc = VB_OK;
    out[0] = '\0';
    int tn = snprintf(ts, sizeof ts, "%lld.", t);
    /* HMAC-SHA256 over "<t>." ‖ body, streamed through OpenSSL 3's EVP_MAC. */
    EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = m ? EVP_MAC_CTX_new(m) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
                           OSSL_PARAM_construct_end()};
    size_t outl = 0;
    if (!ctx || !EVP_MAC_init(ctx, (const unsigned char *)secret, strlen(secret), params) ||
        !EVP_MAC_update(ctx, (const unsigned char *)ts, (size_t)tn) ||
        !EVP_MAC_update(ctx, (const unsigned char *)body, len) ||
        !EVP_MAC_final(ctx, mac, &outl, sizeof mac)) {
        rc = vb_error_set(err, VB_ERR_CRYPTO, "webhook signature: HMAC failed");
        goto done;
    }
    maclen = (unsigned int)outl;
    size_t p = (size_t)snprintf(out, VB_NOTIFY_SIG_MAX, "t=%lld,v1=", t);
    for (unsigned int i = 0; i < maclen && p + 2 < VB_NOTIFY_SIG_MAX; i++, p += 2)
        snprintf(out + p, 3, "%02x", mac[i]);
done:
    vb_crypto_wipe(mac, sizeof mac);
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(m);
    return rc;
}

/* ---- the queue ---- */

/* KEYS: due set. ARGV: 1 now, 2 lease ms, 3 token, 4 max. Returns a flat
 * array of {id, url, event, body, job_id, attempts} per claimed delivery. */
static const char *const script_claim =
    "local now, lease = tonumber(ARGV[1]), tonumber(ARGV[2]) "
    "local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[4])) "
    "local out = {} "
    "for _, id in ipairs(ids) do "
    "  local k = 'visionbatch:notify:' .. id "
    "  if redis.call('EXISTS', k) == 0 then redis.call('ZREM', KEYS[1], id) "
    "  else "
    "    redis.call('ZADD', KEYS[1], now + lease, id) "
    "    redis.call('HSET', k, 'lease', ARGV[3]) "
    "    local h = redis.call('HMGET', k, 'url', 'event', 'body', 'job_id', 'attempts') "
    "    table.insert(out, id) "
    "    for i = 1, 5 do table.insert(out, h[i] or '') end "
    "  end "
    "end "
    "return out";

/* KEYS: due set. ARGV: 1 id, 2 token, 3 ok, 4 http status, 5 retry at (0 =
 * give up), 6 max attempts. Returns 1 counted, 0 lease lost. */
static const char *const script_finish =
    "local k = 'visionbatch:notify:' .. ARGV[1] "
    "if redis.call('HGET', k, 'lease') ~= ARGV[2] then return 0 end "
    "local a = redis.call('HINCRBY', k, 'attempts', 1) "
    "local h = redis.call('HMGET', k, 'execution_id', 'url', 'event', 'field') "
    "local st = 'retrying' "
    "if ARGV[3] == '1' then st = 'delivered' "
    "elseif a >= tonumber(ARGV[6]) or ARGV[5] == '0' then st = 'failed' end "
    "local ek = 'visionbatch:exec:' .. (h[1] or '') "
    "if redis.call('EXISTS', ek) == 1 then "
    "  redis.call('HSET', ek, h[4], cjson.encode({url = h[2], event = h[3], status = st, "
    "    attempts = a, http_status = tonumber(ARGV[4])})) "
    "end "
    "if st == 'retrying' then "
    "  redis.call('HSET', k, 'lease', '') redis.call('ZADD', KEYS[1], tonumber(ARGV[5]), ARGV[1]) "
    "else redis.call('DEL', k) redis.call('ZREM', KEYS[1], ARGV[1]) end "
    "return 1";

void vb_notify_item_free(vb_notify_item *it)
{
    if (!it)
        return;
    free(it->id);
    free(it->url);
    free(it->event);
    free(it->body);
    free(it->job_id);
    memset(it, 0, sizeof *it);
}

static char *dup_reply(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING ? strndup(r->str, r->len) : strdup("");
}

vb_err vb_notify_claim(vb_jobs *j, long long now_ms, long lease_ms, const char *token, size_t max,
                       vb_notify_item **items, size_t *n, vb_error *err)
{
    char a1[24], a2[24], a4[24];
    vb_err rc = VB_OK;
    *items = NULL;
    *n = 0;
    snprintf(a1, sizeof a1, "%lld", now_ms);
    snprintf(a2, sizeof a2, "%ld", lease_ms > 0 ? lease_ms : VB_NOTIFY_LEASE_MS);
    snprintf(a4, sizeof a4, "%zu", max ? max : 1);
    const char *argv[] = {"1", DUE_SET, a1, a2, token ? token : "", a4};
    redisReply *r = vb__jobs_eval(j, script_claim, 6, argv, err);
    if (!r)
        return VB_ERR_REDIS;
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 6) {
        rc = vb_error_set(err, VB_ERR_REDIS, "storage unavailable: unexpected script reply");
        goto done;
    }
    size_t cnt = r->elements / 6;
    if (cnt == 0)
        goto done;
    vb_notify_item *it = calloc(cnt, sizeof *it);
    if (!it) {
        rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < cnt; i++) {
        redisReply **e = r->element + i * 6;
        it[i].id = dup_reply(e[0]);
        it[i].url = dup_reply(e[1]);
        it[i].event = dup_reply(e[2]);
        it[i].body = dup_reply(e[3]);
        it[i].job_id = dup_reply(e[4]);
        it[i].attempts = e[5]->type == REDIS_REPLY_STRING ? strtol(e[5]->str, NULL, 10) : 0;
        if (!it[i].id || !it[i].url || !it[i].event || !it[i].body || !it[i].job_id) {
            for (size_t k = 0; k <= i; k++)
                vb_notify_item_free(&it[k]);
            free(it);
            rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
            goto done;
        }
    }
    *items = it;
    *n = cnt;
done:
    freeReplyObject(r);
    return rc;
}

vb_err vb_notify_finish(vb_jobs *j, const char *id, const char *token, int ok, long http_status,
                        long long retry_at_ms, int max_attempts, int *counted, vb_error *err)
{
    char st[24], at[24], mx[24];
    if (counted)
        *counted = 0;
    snprintf(st, sizeof st, "%ld", http_status);
    snprintf(at, sizeof at, "%lld", retry_at_ms);
    snprintf(mx, sizeof mx, "%d", max_attempts > 0 ? max_attempts : VB_NOTIFY_ATTEMPTS_DEFAULT);
    const char *argv[] = {"1", DUE_SET, id, token ? token : "", ok ? "1" : "0", st, at, mx};
    redisReply *r = vb__jobs_eval(j, script_finish, 8, argv, err);
    if (!r)
        return VB_ERR_REDIS;
    if (counted)
        *counted = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return VB_OK;
}

/* Sends one delivery; returns 1 delivered, 0 to retry, -1 to give up. */
static int send_one(vb_jobs *j, vb_http *h, const vb_notify_opts *o, const vb_notify_item *it,
                    long *status)
{
    char sig[VB_NOTIFY_SIG_MAX], hsig[VB_NOTIFY_SIG_MAX + 40], hev[80], hid[160];
    char *secret = NULL;
    vb_error e = {0};
    int res = -1;
    *status = 0;
    if (!vb_notify_host_allowed(it->url, o->allowed_hosts)) {
        vb_log(VB_LOG_WARN, "webhook %s: host not in webhook_allowed_hosts; given up", it->id);
        return -1;
    }
    if (vb_jobs_open_notify_secret(j, it->job_id, &secret, &e) != VB_OK) {
        vb_log(VB_LOG_WARN, "webhook %s: no signing secret (%s); given up", it->id, e.msg);
        return e.code == VB_ERR_REDIS ? 0 : -1;
    }
    if (vb_notify_sign(secret, o->now_ms / 1000, it->body, strlen(it->body), sig, &e) != VB_OK)
        goto done;
    snprintf(hsig, sizeof hsig, "X-Visionbatch-Signature: %s", sig);
    snprintf(hev, sizeof hev, "X-Visionbatch-Event: %s", it->event);
    snprintf(hid, sizeof hid, "X-Visionbatch-Delivery: %s", it->id);
    const char *hdrs[] = {hsig, hev, hid};
    vb_http_request req = {.method = "POST",
                           .url = it->url,
                           .content_type = "application/json",
                           .body = it->body,
                           .body_len = strlen(it->body),
                           .headers = hdrs,
                           .nheaders = 3};
    vb_http_policy pol = {.connect_timeout_ms = 3000,
                          .timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 10000,
                          .max_bytes = 64 * 1024,
                          .no_redirects = 1};
    vb_http_response resp = {0};
    vb_err rc = vb_http_perform(h, &req, &pol, &resp, &e);
    *status = resp.status;
    vb_http_response_free(&resp);
    res = rc == VB_OK ? 1 : 0;
    if (rc != VB_OK)
        vb_log(VB_LOG_WARN, "webhook %s (%s): attempt %ld failed: %s", it->id, it->event,
               it->attempts + 1, e.msg);
done:
    vb_crypto_free_secret(secret);
    return res;
}

vb_err vb_notify_deliver_due(vb_jobs *j, vb_http *h, const vb_notify_opts *o,
                             vb_notify_stats *stats, vb_error *err)
{
    vb_notify_item *items = NULL;
    size_t n = 0;
    vb_err rc;
    if (stats)
        memset(stats, 0, sizeof *stats);
    if ((rc = vb_notify_claim(j, o->now_ms, VB_NOTIFY_LEASE_MS, o->token, CLAIM_BATCH, &items,
                              &n, err)) != VB_OK)
        return rc;
    int max = o->max_attempts > 0 ? o->max_attempts : VB_NOTIFY_ATTEMPTS_DEFAULT;
    long base = o->backoff_base_ms > 0 ? o->backoff_base_ms : 1000;
    long cap = o->backoff_max_ms > 0 ? o->backoff_max_ms : 300000;
    for (size_t i = 0; i < n; i++) {
        long status = 0;
        int res = send_one(j, h, o, &items[i], &status);
        long long delay = base;
        for (long k = 0; k < items[i].attempts && delay < cap; k++)
            delay *= 2;
        if (delay > cap)
            delay = cap;
        vb_error ferr = {0};
        int counted = 0;
        if (vb_notify_finish(j, items[i].id, o->token, res == 1, status,
                             res < 0 ? 0 : o->now_ms + delay, max, &counted, &ferr) != VB_OK &&
            rc == VB_OK)
            rc = vb_error_set(err, ferr.code, "%s", ferr.msg);
        if (stats && counted) {
            if (res == 1)
                stats->delivered++;
            else if (res < 0 || items[i].attempts + 1 >= max)
                stats->given_up++;
            else
                stats->retrying++;
        }
        vb_notify_item_free(&items[i]);
    }
    free(items);
    return rc;
}
