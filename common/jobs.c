/*
 * jobs.c — cron jobs and executions in Redis (see jobs.h for the layout),
 * plus the pure validation of the REST API's job bodies.
 *
 * The handle wraps one connection of the Redis layer (redis/redis.h:
 * reconnect with backoff, script cache, error translation) behind a mutex.
 * All writes are Lua scripts (EVALSHA) so each change is atomic; lists read
 * their records in one pipelined round trip. The job's API key
 * is sealed with AES-256-GCM (crypto.h) before it reaches Redis; a handle
 * without a secret key refuses to store one.
 */
#include "visionbatch/jobs.h"

#include <ctype.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "jobs_internal.h"
#include "redis/redis.h"
#include "utf8.h"
#include "util.h"
#include "visionbatch/cron.h"
#include "visionbatch/notify.h"
#include "visionbatch/redact.h"
#include "visionbatch/tz.h"

#define PREFIX "visionbatch:"
#define JOBS_SET PREFIX "jobs"
#define JOBS_VERSION PREFIX "jobs:version"
#define JOBS_INDEX PREFIX "jobs:by-id"                 /* paging index, see list_page */
#define JOBS_INDEX_VERSION PREFIX "jobs:by-id:version" /* JOBS_VERSION it was built at */
#define MAX_ARGS 48

struct vb_jobs {
    pthread_mutex_t mu; /* guards r */
    vb__redis *r;
    unsigned char key[VB_CRYPTO_KEY_SIZE];
    int has_key;
    size_t exec_cap;
    char *allowed_hosts; /* webhook_allowed_hosts; NULL = none */
};

/* ------------------------------------------------------------------ */
/* validation                                                          */

static const struct {
    const char *name;
    unsigned bit;
    int required;
} fields[] = {
    {"name", VB_JOB_F_NAME, 1},
    {"schedule", VB_JOB_F_SCHEDULE, 1},
    {"timezone", VB_JOB_F_TIMEZONE, 0},
    {"external_api_get_url", VB_JOB_F_GET_URL, 1},
    {"external_api_post_url", VB_JOB_F_POST_URL, 1},
    {"external_api_key", VB_JOB_F_API_KEY, 1},
    {"backend_api_url", VB_JOB_F_BACKEND_URL, 0},
    {"organization_id", VB_JOB_F_ORG_ID, 1},
    {"enabled", VB_JOB_F_ENABLED, 0},
    {"overlap", VB_JOB_F_OVERLAP, 0},
    {"notify", VB_JOB_F_NOTIFY, 0},
    {"notify_secret", VB_JOB_F_NOTIFY_SECRET, 0},
    {"pause_on_failure", VB_JOB_F_PAUSE, 0},
    {"jitter_s", VB_JOB_F_JITTER, 0},
};
#define NFIELDS (sizeof fields / sizeof fields[0])

int vb_jobs_id_valid(const char *id)
{
    if (!id || strlen(id) != 36)
        return 0;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (id[i] != '-')
                return 0;
        } else if (!isxdigit((unsigned char)id[i])) {
            return 0;
        }
    }
    return 1;
}

/* Number of code points in a valid UTF-8 string, or -1 when invalid. */
static long utf8_length(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    long n = 0;
    while (*p) {
        uint32_t cp;
        int extra;
        if (*p < 0x80) {
            cp = *p;
            extra = 0;
        } else if ((*p & 0xe0) == 0xc0) {
            cp = *p & 0x1f;
            extra = 1;
        } else if ((*p & 0xf0) == 0xe0) {
            cp = *p & 0x0f;
            extra = 2;
        } else if ((*p & 0xf8) == 0xf0) {
            cp = *p & 0x07;
            extra = 3;
        } else {
            return -1;
        }
        p++;
        for (int i = 0; i < extra; i++, p++) {
            if ((*p & 0xc0) != 0x80)
                return -1;
            cp = (cp << 6) | (*p & 0x3f);
        }
        if ((extra == 1 && cp < 0x80) || (extra == 2 && cp < 0x800) ||
            (extra == 3 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
            return -1;
        n++;
    }
    return n;
}

/* Copies a client-supplied field name into a message, printable ASCII only. */
static void safe_name(const char *in, char *out, size_t outlen)
{
    size_t i = 0;
    for (; in && in[i] && i + 1 < outlen && i < 64; i++) {
        unsigned char c = (unsigned char)in[i];
        out[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    out[i] = '\0';
}

static vb_err check_url(const char *field, const char *v, vb_error *err)
{
    size_t skip = 0;
    if (strncasecmp(v, "http://", 7) == 0)
        skip = 7;
    else if (strncasecmp(v, "https://", 8) == 0)
        skip = 8;
    else
        return vb_error_set(err, VB_ERR_INVALID, "%s must be an http:// or https:// URL", field);
    if (strlen(v) > VB_JOBS_URL_MAX)
        return vb_error_set(err, VB_ERR_INVALID, "%s is longer than %d bytes", field,
                            VB_JOBS_URL_MAX);
    const char *host = v + skip;
    const char *at = NULL;
    for (const char *p = host; *p && *p != '/' && *p != '?' && *p != '#'; p++)
        if (*p == '@')
            at = p;
    if (at)
        host = at + 1;
    if (*host == '\0' || *host == '/' || *host == ':' || *host == '?' || *host == '#')
        return vb_error_set(err, VB_ERR_INVALID, "%s has no host", field);
    for (const char *p = v; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return vb_error_set(err, VB_ERR_INVALID, "%s must not contain spaces or control "
                                "characters", field);
    return VB_OK;
}

/* A non-empty UTF-8 string of at most `maxbytes` without control characters;
 * a schedule may hold tabs, which crontab(5) counts as blanks. */
static vb_err check_string(const char *field, const cJSON *item, size_t maxbytes, int tabs,
                           vb_error *err)
{
    if (!cJSON_IsString(item) || !item->valuestring)
        return vb_error_set(err, VB_ERR_INVALID, "%s must be a string", field);
    const char *v = item->valuestring;
    if (*v == '\0')
        return vb_error_set(err, VB_ERR_INVALID, "%s must not be empty", field);
    if (utf8_length(v) < 0)
        return vb_error_set(err, VB_ERR_INVALID, "%s is not valid UTF-8", field);
    if (maxbytes && strlen(v) > maxbytes)
        return vb_error_set(err, VB_ERR_INVALID, "%s is longer than %zu bytes", field, maxbytes);
    for (const char *p = v; *p; p++)
        if (((unsigned char)*p < 0x20 && !(tabs && *p == '\t')) || *p == 0x7f)
            return vb_error_set(err, VB_ERR_INVALID, "%s must not contain control characters",
                                field);
    return VB_OK;
}

void vb_job_input_free(vb_job_input *in)
{
    if (!in)
        return;
    free(in->name);
    free(in->schedule);
    free(in->timezone);
    free(in->external_api_get_url);
    free(in->external_api_post_url);
    vb_crypto_free_secret(in->external_api_key);
    free(in->backend_api_url);
    free(in->organization_id);
    free(in->notify);
    vb_crypto_free_secret(in->notify_secret);
    memset(in, 0, sizeof *in);
}

static char **input_slot(vb_job_input *in, unsigned bit)
{
    switch (bit) {
    case VB_JOB_F_NAME: return &in->name;
    case VB_JOB_F_SCHEDULE: return &in->schedule;
    case VB_JOB_F_TIMEZONE: return &in->timezone;
    case VB_JOB_F_GET_URL: return &in->external_api_get_url;
    case VB_JOB_F_POST_URL: return &in->external_api_post_url;
    case VB_JOB_F_API_KEY: return &in->external_api_key;
    case VB_JOB_F_BACKEND_URL: return &in->backend_api_url;
    case VB_JOB_F_ORG_ID: return &in->organization_id;
    case VB_JOB_F_NOTIFY_SECRET: return &in->notify_secret;
    default: return NULL;
    }
}

static vb_err check_field(vb_job_input *in, size_t fi, const cJSON *item, vb_error *err)
{
    const char *name = fields[fi].name;
    unsigned bit = fields[fi].bit;
    vb_err rc = VB_OK;
    if (bit == VB_JOB_F_ENABLED) {
        if (!cJSON_IsBool(item))
            return vb_error_set(err, VB_ERR_INVALID, "enabled must be a boolean (true or false)");
        in->enabled = cJSON_IsTrue(item);
        return VB_OK;
    }
    if (bit == VB_JOB_F_OVERLAP) {
        if (!cJSON_IsString(item) || !item->valuestring ||
            (strcmp(item->valuestring, "skip") != 0 && strcmp(item->valuestring, "allow") != 0))
            return vb_error_set(err, VB_ERR_INVALID, "overlap must be \"skip\" or \"allow\"");
        in->overlap_allow = strcmp(item->valuestring, "allow") == 0;
        return VB_OK;
    }
    if (bit == VB_JOB_F_PAUSE) {
        if (!cJSON_IsNumber(item) || item->valuedouble != (double)(long)item->valuedouble ||
            item->valuedouble < 0 || item->valuedouble > VB_NOTIFY_PAUSE_MAX)
            return vb_error_set(err, VB_ERR_INVALID,
                                "pause_on_failure must be an integer from 0 (off) to %d",
                                VB_NOTIFY_PAUSE_MAX);
        in->pause_on_failure = (long)item->valuedouble;
        return VB_OK;
    }
    if (bit == VB_JOB_F_JITTER) {
        if (!cJSON_IsNumber(item) || item->valuedouble != (double)(long)item->valuedouble ||
            item->valuedouble < 0 || item->valuedouble > VB_JOBS_JITTER_MAX)
            return vb_error_set(err, VB_ERR_INVALID,
                                "jitter_s must be an integer from 0 (off) to %d",
                                VB_JOBS_JITTER_MAX);
        in->jitter_s = (long)item->valuedouble;
        return VB_OK;
    }
    if (bit == VB_JOB_F_NOTIFY) {
        if (cJSON_IsNull(item) || (cJSON_IsArray(item) && !item->child)) {
            in->notify = strdup("");
            return in->notify ? VB_OK : vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        }
        return vb_notify_validate(item, &in->notify, err);
    }
    size_t max = bit == VB_JOB_F_API_KEY  ? VB_JOBS_KEY_MAX
                 : bit == VB_JOB_F_ORG_ID ? VB_JOBS_ORG_MAX
                 : bit == VB_JOB_F_SCHEDULE ? VB_CRON_EXPR_MAX
                 : bit == VB_JOB_F_TIMEZONE ? VB_TZ_NAME_MAX
                 : bit == VB_JOB_F_NOTIFY_SECRET ? VB_NOTIFY_SECRET_MAX
                                            : VB_JOBS_URL_MAX * 2;
    if ((rc = check_string(name, item, max, bit == VB_JOB_F_SCHEDULE, err)) != VB_OK)
        return rc;
    const char *v = item->valuestring;
    switch (bit) {
    case VB_JOB_F_NAME:
        if (utf8_length(v) > VB_JOBS_NAME_MAX)
            return vb_error_set(err, VB_ERR_INVALID, "name is longer than %d characters",
                                VB_JOBS_NAME_MAX);
        break;
    case VB_JOB_F_SCHEDULE: {
        vb_cron c;
        char why[256] = "";
        time_t next;
        if (vb_cron_parse(v, &c, why, sizeof why) != VB_OK)
            return vb_error_set(err, VB_ERR_INVALID, "schedule: invalid cron expression: %s",
                                why);
        if (vb_cron_next(&c, "UTC", time(NULL), &next) != VB_OK)
            return vb_error_set(err, VB_ERR_INVALID, "schedule: the expression never fires");
        break;
    }
    case VB_JOB_F_NOTIFY_SECRET:
        if (strlen(v) < VB_NOTIFY_SECRET_MIN)
            return vb_error_set(err, VB_ERR_INVALID, "notify_secret must be at least %d bytes",
                                VB_NOTIFY_SECRET_MIN);
        break;
    case VB_JOB_F_TIMEZONE:
        if (!vb_tz_valid(v))
            return vb_error_set(err, VB_ERR_INVALID,
                                "timezone: unknown time zone (use an IANA name such as "
                                "\"UTC\" or \"Europe/Berlin\")");
        break;
    case VB_JOB_F_GET_URL:
    case VB_JOB_F_POST_URL:
    case VB_JOB_F_BACKEND_URL:
        if ((rc = check_url(name, v, err)) != VB_OK)
            return rc;
        break;
    default:
        break;
    }
    char **slot = input_slot(in, bit);
    if (!(*slot = strdup(v)))
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    return VB_OK;
}

/* True when a string of the (well-formed) JSON text s[0..len), key or value,
 * holds the escape \u0000: cJSON decodes it into a NUL byte, which would end
 * the C string there and silently drop the rest of the field. */
static int has_escaped_nul(const char *s, size_t len)
{
    int in_string = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '"') {
            in_string = !in_string;
        } else if (in_string && s[i] == '\\' && i + 1 < len) {
            if (s[i + 1] == 'u' && len - i >= 6 && memcmp(s + i + 2, "0000", 4) == 0)
                return 1;
            i++; /* the escaped character, which may be a quote or a backslash */
        }
    }
    return 0;
}

/* Appends ", name" (or "name") to a message list; keeps it bounded. */
static void list_add(char *list, size_t len, const char *name)
{
    size_t used = strlen(list);
    if (used + 8 >= len)
        return;
    snprintf(list + used, len - used, "%s%s", used ? ", " : "", name);
}

vb_err vb_job_input_parse(const char *body, size_t len, int partial, vb_job_input *out,
                          vb_error *err)
{
    vb_err rc = VB_ERR_INVALID;
    cJSON *root = NULL;
    const char *end = NULL;
    char list[400] = "";
    char nm[72];

    memset(out, 0, sizeof *out);
    if (!body || len == 0)
        return vb_error_set(err, VB_ERR_PARSE, "request body is empty: send a JSON object");
    if (memchr(body, '\0', len))
        return vb_error_set(err, VB_ERR_PARSE, "request body contains a NUL byte");
    root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!root) {
        rc = vb_error_set(err, VB_ERR_PARSE, "request body is not valid JSON");
        goto fail;
    }
    for (; end && end < body + len; end++) {
        if (!isspace((unsigned char)*end)) {
            rc = vb_error_set(err, VB_ERR_PARSE, "request body has data after the JSON value");
            goto fail;
        }
    }
    if (has_escaped_nul(body, len)) {
        rc = vb_error_set(err, VB_ERR_INVALID,
                          "request body has \\u0000 (a NUL character) in a string: not allowed");
        goto fail;
    }
    if (!cJSON_IsObject(root)) {
        vb_error_set(err, VB_ERR_INVALID, "request body must be a JSON object");
        goto fail;
    }
    /* unknown and duplicate fields */
    for (const cJSON *it = root->child; it; it = it->next) {
        for (const cJSON *p = root->child; p != it; p = p->next) {
            if (strcmp(p->string, it->string) == 0) {
                safe_name(it->string, nm, sizeof nm);
                vb_error_set(err, VB_ERR_INVALID, "duplicate field: %s", nm);
                goto fail;
            }
        }
        size_t fi = 0;
        while (fi < NFIELDS && strcmp(fields[fi].name, it->string) != 0)
            fi++;
        if (fi == NFIELDS) {
            safe_name(it->string, nm, sizeof nm);
            list_add(list, sizeof list, nm);
        }
    }
    if (list[0]) {
        vb_error_set(err, VB_ERR_INVALID, "unknown field(s): %s", list);
        goto fail;
    }
    /* missing required fields */
    if (!partial) {
        for (size_t fi = 0; fi < NFIELDS; fi++)
            if (fields[fi].required && !cJSON_GetObjectItemCaseSensitive(root, fields[fi].name))
                list_add(list, sizeof list, fields[fi].name);
        if (list[0]) {
            vb_error_set(err, VB_ERR_INVALID, "missing required field(s): %s", list);
            goto fail;
        }
    } else if (!root->child) {
        vb_error_set(err, VB_ERR_INVALID, "request body has no fields to update");
        goto fail;
    }
    for (size_t fi = 0; fi < NFIELDS; fi++) {
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, fields[fi].name);
        if (!item)
            continue;
        if ((rc = check_field(out, fi, item, err)) != VB_OK)
            goto fail;
        out->present |= fields[fi].bit;
    }
    cJSON_Delete(root);
    return VB_OK;
fail:
    if (root) {
        /* wipe the API key from cJSON's copy before freeing it */
        static const char *const secrets[] = {"external_api_key", "notify_secret"};
        for (size_t i = 0; i < 2; i++) {
            cJSON *k = cJSON_GetObjectItemCaseSensitive(root, secrets[i]);
            if (cJSON_IsString(k) && k->valuestring)
                vb_crypto_wipe(k->valuestring, strlen(k->valuestring));
        }
        cJSON_Delete(root);
    }
    vb_job_input_free(out);
    return rc == VB_OK ? VB_ERR_INVALID : rc;
}

/* ------------------------------------------------------------------ */
/* records                                                             */

void vb_job_free(vb_job *job)
{
    if (!job)
        return;
    free(job->name);
    free(job->schedule);
    free(job->timezone);
    free(job->external_api_get_url);
    free(job->external_api_post_url);
    free(job->external_api_key_enc);
    free(job->backend_api_url);
    free(job->organization_id);
    free(job->notify);
    free(job->notify_secret_enc);
    free(job->paused_reason);
    memset(job, 0, sizeof *job);
}

void vb_job_list_free(vb_job_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        vb_job_free(&l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

void vb_exec_free(vb_exec *e)
{
    if (!e)
        return;
    free(e->output);
    free(e->batch_id);
    free(e->skip_reason);
    free(e->notifications);
    memset(e, 0, sizeof *e);
}

void vb_exec_list_free(vb_exec_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        vb_exec_free(&l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

int vb_exec_status_valid(const char *status)
{
    static const char *const names[] = {"running", "success", "partial", "failed",
                                        "timeout", "error",   "skipped"};
    for (size_t i = 0; status && i < sizeof names / sizeof names[0]; i++)
        if (strcmp(status, names[i]) == 0)
            return 1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* connection                                                          */

/* Runs one command; caller holds the mutex. Returns NULL (with err set) on
 * any failure, including an error reply. */
static redisReply *cmd(vb_jobs *j, int argc, const char **argv, const size_t *lens,
                       vb_error *err)
{
    return vb__redis_command(j->r, argc, argv, lens, err);
}

vb_err vb_jobs_new(const vb_jobs_opts *opts, vb_jobs **out, vb_error *err)
{
    *out = NULL;
    vb_jobs *j = calloc(1, sizeof *j);
    if (!j)
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    if (pthread_mutex_init(&j->mu, NULL) != 0) {
        free(j);
        return vb_error_set(err, VB_ERR_NOMEM, "mutex");
    }
    const char *url = opts && opts->redis_url ? opts->redis_url : "redis://127.0.0.1:6379/0";
    j->exec_cap = opts && opts->exec_cap ? opts->exec_cap : VB_JOBS_EXEC_CAP_DEFAULT;
    if (opts && opts->webhook_allowed_hosts && opts->webhook_allowed_hosts[0] &&
        !(j->allowed_hosts = strdup(opts->webhook_allowed_hosts))) {
        free(j);
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    }
    if (opts && opts->secret_key) {
        memcpy(j->key, opts->secret_key, VB_CRYPTO_KEY_SIZE);
        j->has_key = 1;
    }
    vb__redis_opts ro = {.connect_timeout_ms = opts ? opts->connect_timeout_ms : 0,
                         .command_timeout_ms = opts ? opts->command_timeout_ms : 0};
    vb_err rc = vb__redis_new(url, &ro, &j->r, err);
    if (rc != VB_OK) {
        vb_jobs_free(j);
        return rc;
    }
    *out = j;
    return VB_OK;
}

void vb_jobs_free(vb_jobs *j)
{
    if (!j)
        return;
    vb__redis_free(j->r);
    vb_crypto_wipe(j->key, sizeof j->key);
    pthread_mutex_destroy(&j->mu);
    free(j->allowed_hosts);
    free(j);
}

vb_err vb_jobs_ping(vb_jobs *j, vb_error *err)
{
    const char *argv[1] = {"PING"};
    pthread_mutex_lock(&j->mu);
    redisReply *r = cmd(j, 1, argv, NULL, err);
    pthread_mutex_unlock(&j->mu);
    if (!r)
        return VB_ERR_REDIS;
    freeReplyObject(r);
    return VB_OK;
}

/* ------------------------------------------------------------------ */
/* argument vectors                                                    */

typedef struct args {
    const char *v[MAX_ARGS];
    size_t l[MAX_ARGS];
    char nums[MAX_ARGS][24];
    int n;
} args;

static void add(args *a, const char *s)
{
    if (a->n < MAX_ARGS) {
        a->v[a->n] = s ? s : "";
        a->l[a->n] = strlen(a->v[a->n]);
        a->n++;
    }
}

static void add_ll(args *a, long long v)
{
    if (a->n < MAX_ARGS) {
        snprintf(a->nums[a->n], sizeof a->nums[a->n], "%lld", v);
        add(a, a->nums[a->n]);
    }
}

static void add_pair(args *a, const char *k, const char *v)
{
    add(a, k);
    add(a, v);
}

/* Runs `script` with a = {numkeys, keys…, args…}; the script returns an
 * integer, which *result receives. Caller holds the mutex. */
static vb_err eval_int(vb_jobs *j, const char *script, args *a, long long *result, vb_error *err)
{
    redisReply *r = vb__redis_eval(j->r, script, a->n, a->v, a->l, err);
    if (!r)
        return VB_ERR_REDIS;
    vb_err rc = VB_OK;
    if (r->type == REDIS_REPLY_INTEGER)
        *result = r->integer;
    else
        rc = vb__redis_unexpected(j->r, "a script", err);
    freeReplyObject(r);
    return rc;
}

/* A new job has no executions, so its running index (jobs_exec.h) covers
 * them all from the start: its first tick need not look for any. */
static const char *const script_create =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end "
    "redis.call('HSET', KEYS[1], unpack(ARGV, 2)) "
    "redis.call('HSET', KEYS[1], 'running_idx', '1') "
    "redis.call('SADD', KEYS[2], ARGV[1]) "
    "redis.call('INCR', KEYS[3]) return 1";

static const char *const script_update =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end "
    "redis.call('HSET', KEYS[1], unpack(ARGV)) "
    "redis.call('INCR', KEYS[2]) return 1";

static const char *const script_delete =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end "
    "local ids = redis.call('LRANGE', KEYS[4], 0, -1) "
    "for _, e in ipairs(ids) do redis.call('DEL', ARGV[2] .. e) end "
    "redis.call('DEL', KEYS[1], KEYS[4], KEYS[1] .. ':running') "
    "redis.call('SREM', KEYS[2], ARGV[1]) "
    "redis.call('INCR', KEYS[3]) return 1";

static const char *const script_exec_record =
    "if redis.call('EXISTS', KEYS[3]) == 0 then return 0 end "
    "redis.call('HSET', KEYS[1], unpack(ARGV, 4)) "
    "redis.call('LPUSH', KEYS[2], ARGV[1]) "
    "local cap = tonumber(ARGV[2]) "
    "local old = redis.call('LRANGE', KEYS[2], cap, -1) "
    "for _, e in ipairs(old) do redis.call('DEL', ARGV[3] .. e) end "
    "redis.call('LTRIM', KEYS[2], 0, cap - 1) return 1";

static const char *const script_exec_update =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end "
    "redis.call('HSET', KEYS[1], unpack(ARGV)) return 1";

static void job_key(char out[80], const char *id)
{
    snprintf(out, 80, PREFIX "job:%s", id);
}

/* ------------------------------------------------------------------ */
/* jobs                                                                */

static char *reply_dup(const redisReply *r)
{
    return strndup(r->str ? r->str : "", r->len);
}

static long long to_ll(const char *s)
{
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    return end && end != s ? v : 0;
}

/* Fills *out from an HGETALL reply; VB_ERR_NOT_FOUND when empty. */
static vb_err job_from_hash(const char *id, const redisReply *h, vb_job *out, vb_error *err)
{
    memset(out, 0, sizeof *out);
    if (h->type != REDIS_REPLY_ARRAY || h->elements == 0)
        return vb_error_set(err, VB_ERR_NOT_FOUND, "cron job %s not found", id);
    snprintf(out->job_id, sizeof out->job_id, "%s", id);
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        const redisReply *k = h->element[i], *v = h->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        char **slot = NULL;
        if (strcmp(k->str, "name") == 0)
            slot = &out->name;
        else if (strcmp(k->str, "schedule") == 0)
            slot = &out->schedule;
        else if (strcmp(k->str, "timezone") == 0)
            slot = &out->timezone;
        else if (strcmp(k->str, "external_api_get_url") == 0)
            slot = &out->external_api_get_url;
        else if (strcmp(k->str, "external_api_post_url") == 0)
            slot = &out->external_api_post_url;
        else if (strcmp(k->str, "external_api_key_enc") == 0)
            slot = &out->external_api_key_enc;
        else if (strcmp(k->str, "backend_api_url") == 0)
            slot = &out->backend_api_url;
        else if (strcmp(k->str, "organization_id") == 0)
            slot = &out->organization_id;
        else if (strcmp(k->str, "enabled") == 0)
            out->enabled = strcmp(v->str, "1") == 0;
        else if (strcmp(k->str, "overlap") == 0)
            out->overlap_allow = strcmp(v->str, "allow") == 0;
        else if (strcmp(k->str, "created_at") == 0)
            out->created_at = to_ll(v->str);
        else if (strcmp(k->str, "updated_at") == 0)
            out->updated_at = to_ll(v->str);
        else if (strcmp(k->str, "notify") == 0)
            slot = &out->notify;
        else if (strcmp(k->str, "notify_secret_enc") == 0)
            slot = &out->notify_secret_enc;
        else if (strcmp(k->str, "paused_reason") == 0)
            slot = &out->paused_reason;
        else if (strcmp(k->str, "pause_on_failure") == 0)
            out->pause_on_failure = (long)to_ll(v->str);
        else if (strcmp(k->str, "fail_streak") == 0)
            out->fail_streak = (long)to_ll(v->str);
        else if (strcmp(k->str, "jitter_s") == 0)
            out->jitter_s = (long)to_ll(v->str);
        if (slot && !*slot && !(*slot = reply_dup(v)))
            goto nomem;
    }
    char **all[] = {&out->name,
                    &out->schedule,
                    &out->timezone,
                    &out->external_api_get_url,
                    &out->external_api_post_url,
                    &out->external_api_key_enc,
                    &out->backend_api_url,
                    &out->organization_id,
                    &out->notify,
                    &out->notify_secret_enc,
                    &out->paused_reason};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (!*all[i] && !(*all[i] = strdup("")))
            goto nomem;
    if (!out->timezone[0]) {
        free(out->timezone);
        if (!(out->timezone = strdup("UTC")))
            goto nomem;
    }
    return VB_OK;
nomem:
    vb_job_free(out);
    return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
}

long vb_job_jitter_ms(const vb_job *job)
{
    if (!job || job->jitter_s <= 0)
        return 0;
    uint64_t h = vb__fnv1a_str(VB__FNV_START, job->job_id);
    long span = (job->jitter_s > VB_JOBS_JITTER_MAX ? VB_JOBS_JITTER_MAX : job->jitter_s) * 1000;
    return (long)(h % (uint64_t)(span + 1));
}

/* HGETALL one job; caller holds the mutex. */
static vb_err get_locked(vb_jobs *j, const char *id, vb_job *out, vb_error *err)
{
    char key[80];
    job_key(key, id);
    const char *argv[2] = {"HGETALL", key};
    redisReply *r = cmd(j, 2, argv, NULL, err);
    if (!r) {
        memset(out, 0, sizeof *out);
        return VB_ERR_REDIS;
    }
    vb_err rc = job_from_hash(id, r, out, err);
    freeReplyObject(r);
    return rc;
}

vb_err vb_jobs_get(vb_jobs *j, const char *job_id, vb_job *out, vb_error *err)
{
    memset(out, 0, sizeof *out);
    if (!vb_jobs_id_valid(job_id))
        return vb_error_set(err, VB_ERR_NOT_FOUND, "cron job not found");
    pthread_mutex_lock(&j->mu);
    vb_err rc = get_locked(j, job_id, out, err);
    pthread_mutex_unlock(&j->mu);
    return rc;
}

/* Seals the key when present; VB_ERR_CONFIG without a secret key. */
static vb_err seal_key(vb_jobs *j, const vb_job_input *in, char **sealed, vb_error *err)
{
    *sealed = NULL;
    if (!(in->present & VB_JOB_F_API_KEY))
        return VB_OK;
    if (!j->has_key)
        return vb_error_set(err, VB_ERR_CONFIG,
                            "external_api_key cannot be stored: no secret-encryption key is "
                            "configured (set VISIONBATCH_SECRET_KEY or --secret-key-file)");
    return vb_crypto_seal(j->key, in->external_api_key, sealed, err);
}

/* Seals the webhook secret when present, after checking the notify targets
 * against the allow-list; `stored_secret`: the job already has one. */
static vb_err seal_notify(vb_jobs *j, const vb_job_input *in, int stored_secret, char **sealed,
                          vb_error *err)
{
    *sealed = NULL;
    if ((in->present & VB_JOB_F_NOTIFY) && in->notify[0]) {
        if (!(in->present & VB_JOB_F_NOTIFY_SECRET) && !stored_secret)
            return vb_error_set(err, VB_ERR_INVALID,
                                "notify needs a notify_secret (16-256 bytes) to sign deliveries");
        cJSON *t = cJSON_Parse(in->notify);
        int i = 0;
        for (const cJSON *x = t ? t->child : NULL; x; x = x->next, i++) {
            const cJSON *u = cJSON_GetObjectItemCaseSensitive(x, "url");
            if (!vb_notify_host_allowed(cJSON_GetStringValue(u), j->allowed_hosts)) {
                cJSON_Delete(t);
                return vb_error_set(err, VB_ERR_INVALID,
                                    "notify[%d].url: host is not in webhook_allowed_hosts", i);
            }
        }
        cJSON_Delete(t);
    }
    if (!(in->present & VB_JOB_F_NOTIFY_SECRET))
        return VB_OK;
    if (!j->has_key)
        return vb_error_set(err, VB_ERR_CONFIG,
                            "notify_secret cannot be stored: no secret-encryption key is "
                            "configured (set VISIONBATCH_SECRET_KEY or --secret-key-file)");
    return vb_crypto_seal(j->key, in->notify_secret, sealed, err);
}

/* Appends the webhook fields present in `in`. */
static void add_notify_fields(args *a, const vb_job_input *in, const char *sealed)
{
    if (in->present & VB_JOB_F_NOTIFY)
        add_pair(a, "notify", in->notify);
    if (sealed)
        add_pair(a, "notify_secret_enc", sealed);
    if (in->present & VB_JOB_F_PAUSE) {
        add(a, "pause_on_failure");
        add_ll(a, in->pause_on_failure);
    }
    if (in->present & VB_JOB_F_JITTER) {
        add(a, "jitter_s");
        add_ll(a, in->jitter_s);
    }
}

/* Appends field/value pairs for every present field of `in`. */
static void add_input_fields(args *a, const vb_job_input *in, const char *sealed)
{
    if (in->present & VB_JOB_F_NAME)
        add_pair(a, "name", in->name);
    if (in->present & VB_JOB_F_SCHEDULE)
        add_pair(a, "schedule", in->schedule);
    if (in->present & VB_JOB_F_TIMEZONE)
        add_pair(a, "timezone", in->timezone);
    if (in->present & VB_JOB_F_GET_URL)
        add_pair(a, "external_api_get_url", in->external_api_get_url);
    if (in->present & VB_JOB_F_POST_URL)
        add_pair(a, "external_api_post_url", in->external_api_post_url);
    if (sealed)
        add_pair(a, "external_api_key_enc", sealed);
    if (in->present & VB_JOB_F_BACKEND_URL)
        add_pair(a, "backend_api_url", in->backend_api_url);
    if (in->present & VB_JOB_F_ORG_ID)
        add_pair(a, "organization_id", in->organization_id);
    if (in->present & VB_JOB_F_ENABLED)
        add_pair(a, "enabled", in->enabled ? "1" : "0");
    if (in->present & VB_JOB_F_OVERLAP)
        add_pair(a, "overlap", in->overlap_allow ? "allow" : "skip");
}

vb_err vb_jobs_create(vb_jobs *j, const vb_job_input *in, vb_job *out, vb_error *err)
{
    char id[VB_UUID_SIZE], key[80], *sealed = NULL;
    long long ok = 0, now = vb__now_ms();
    vb_err rc;
    if (out)
        memset(out, 0, sizeof *out);
    const unsigned need = VB_JOB_F_NAME | VB_JOB_F_SCHEDULE | VB_JOB_F_GET_URL |
                          VB_JOB_F_POST_URL | VB_JOB_F_API_KEY | VB_JOB_F_ORG_ID;
    if ((in->present & need) != need)
        return vb_error_set(err, VB_ERR_INVALID, "job is missing required fields");
    char *nsealed = NULL;
    if ((rc = seal_key(j, in, &sealed, err)) != VB_OK)
        return rc;
    if ((rc = seal_notify(j, in, 0, &nsealed, err)) != VB_OK)
        goto done;
    if ((rc = vb_crypto_uuid4(id, err)) != VB_OK)
        goto done;
    job_key(key, id);
    args *a = calloc(1, sizeof *a);
    if (!a) {
        rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        goto done;
    }
    add(a, "3");
    add(a, key);
    add(a, JOBS_SET);
    add(a, JOBS_VERSION);
    add(a, id);
    if (!(in->present & VB_JOB_F_TIMEZONE))
        add_pair(a, "timezone", "UTC");
    if (!(in->present & VB_JOB_F_BACKEND_URL))
        add_pair(a, "backend_api_url", VB_JOBS_DEFAULT_BACKEND);
    if (!(in->present & VB_JOB_F_ENABLED))
        add_pair(a, "enabled", "1");
    if (!(in->present & VB_JOB_F_OVERLAP))
        add_pair(a, "overlap", "skip");
    add_input_fields(a, in, sealed);
    add_notify_fields(a, in, nsealed);
    add(a, "created_at");
    add_ll(a, now);
    add(a, "updated_at");
    add_ll(a, now);
    pthread_mutex_lock(&j->mu);
    rc = eval_int(j, script_create, a, &ok, err);
    if (rc == VB_OK && !ok)
        rc = vb_error_set(err, VB_ERR_CONFLICT, "job id collision; try again");
    if (rc == VB_OK && out)
        rc = get_locked(j, id, out, err);
    pthread_mutex_unlock(&j->mu);
    free(a);
done:
    free(sealed);
    free(nsealed);
    return rc;
}

static int cmp_jobs(const void *pa, const void *pb)
{
    const vb_job *a = pa, *b = pb;
    if (a->created_at != b->created_at)
        return a->created_at < b->created_at ? -1 : 1;
    return strcmp(a->job_id, b->job_id);
}

/* The records named by an id list, read in two round trips: the command that
 * lists the ids, then one pipelined HGETALL <prefix><id> per valid id. */
typedef struct id_batch {
    redisReply *ids;     /* the list reply (owns the id strings) */
    const char **names;  /* the valid ids */
    redisReply **hashes; /* hashes[i]: HGETALL of names[i] (empty when gone) */
    size_t n;
} id_batch;

static void id_batch_free(id_batch *b)
{
    for (size_t i = 0; b->hashes && i < b->n; i++)
        freeReplyObject(b->hashes[i]);
    free(b->hashes);
    free(b->names);
    if (b->ids)
        freeReplyObject(b->ids);
    memset(b, 0, sizeof *b);
}

/* Fills *b (zeroed first; free with id_batch_free in every case). */
static vb_err id_batch_read(vb_jobs *j, int argc, const char **argv, const char *prefix,
                            id_batch *b, vb_error *err)
{
    enum { KEYLEN = 96 };
    vb_err rc = VB_OK;
    const char **cmds = NULL;
    char *keys = NULL;
    memset(b, 0, sizeof *b);
    pthread_mutex_lock(&j->mu);
    if (!(b->ids = cmd(j, argc, argv, NULL, err))) {
        rc = VB_ERR_REDIS;
        goto done;
    }
    if (b->ids->type != REDIS_REPLY_ARRAY) {
        rc = vb__redis_unexpected(j->r, argv[0], err);
        goto done;
    }
    size_t max = b->ids->elements ? b->ids->elements : 1;
    b->names = calloc(max, sizeof *b->names);
    b->hashes = calloc(max, sizeof *b->hashes);
    cmds = calloc(2 * max, sizeof *cmds);
    keys = malloc(max * KEYLEN);
    if (!b->names || !b->hashes || !cmds || !keys) {
        rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        goto done;
    }
    size_t n = 0;
    for (size_t i = 0; i < b->ids->elements; i++) {
        const redisReply *e = b->ids->element[i];
        if (e->type != REDIS_REPLY_STRING || !vb_jobs_id_valid(e->str))
            continue;
        b->names[n] = e->str;
        snprintf(keys + n * KEYLEN, KEYLEN, "%s%s", prefix, e->str);
        cmds[2 * n] = "HGETALL";
        cmds[2 * n + 1] = keys + n * KEYLEN;
        n++;
    }
    if ((rc = vb__redis_pipeline(j->r, n, 2, cmds, b->hashes, err)) != VB_OK)
        goto done;
    b->n = n;
    for (size_t i = 0; i < n; i++)
        if (b->hashes[i]->type == REDIS_REPLY_ERROR) {
            rc = vb__redis_unexpected(j->r, "HGETALL", err);
            goto done;
        }
done:
    pthread_mutex_unlock(&j->mu);
    free(cmds);
    free(keys);
    return rc;
}

vb_err vb_jobs_list(vb_jobs *j, int enabled_only, vb_job_list *out, vb_error *err)
{
    id_batch b;
    memset(out, 0, sizeof *out);
    const char *argv[2] = {"SMEMBERS", JOBS_SET};
    vb_err rc = id_batch_read(j, 2, argv, PREFIX "job:", &b, err);
    if (rc == VB_OK && b.n && !(out->items = calloc(b.n, sizeof *out->items)))
        rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    for (size_t i = 0; rc == VB_OK && i < b.n; i++) {
        vb_job job;
        vb_error tmp = {0};
        rc = job_from_hash(b.names[i], b.hashes[i], &job, &tmp);
        if (rc == VB_ERR_NOT_FOUND) { /* deleted meanwhile */
            rc = VB_OK;
            continue;
        }
        if (rc != VB_OK) {
            vb_error_set(err, rc, "%s", tmp.msg);
            break;
        }
        if (enabled_only && !job.enabled) {
            vb_job_free(&job);
            continue;
        }
        out->items[out->n++] = job;
    }
    id_batch_free(&b);
    if (rc != VB_OK)
        vb_job_list_free(out);
    else if (out->n > 1)
        qsort(out->items, out->n, sizeof *out->items, cmp_jobs);
    return rc;
}

/* One page in job-id order: ids after ARGV[1], at most ARGV[2] of them, each
 * followed by its hash. The first element says whether more ids follow.
 * The ids are taken from a lexically ordered sorted set (KEYS[3]), rebuilt
 * from the id set (KEYS[1]) whenever the jobs' version (KEYS[2], bumped by
 * every create, update and delete) differs from the one it was built at
 * (KEYS[4]); so a page costs O(log n + limit) until the jobs change. */
static const char *const script_list_page =
    "local v = redis.call('GET', KEYS[2]) or '0' "
    "if redis.call('GET', KEYS[4]) ~= v then "
    "  redis.call('DEL', KEYS[3]) "
    "  local ids = redis.call('SMEMBERS', KEYS[1]) "
    "  for i = 1, #ids, 500 do "
    "    local z = {} "
    "    for k = i, math.min(i + 499, #ids) do z[#z + 1] = 0 z[#z + 1] = ids[k] end "
    "    redis.call('ZADD', KEYS[3], unpack(z)) "
    "  end "
    "  redis.call('SET', KEYS[4], v) "
    "end "
    "local limit = tonumber(ARGV[2]) "
    "local from = ARGV[1] == '' and '-' or '(' .. ARGV[1] "
    "local sel = redis.call('ZRANGEBYLEX', KEYS[3], from, '+', 'LIMIT', 0, limit + 1) "
    "local out = {#sel > limit and 1 or 0} "
    "for i = 1, math.min(limit, #sel) do "
    "  out[#out + 1] = sel[i] "
    "  out[#out + 1] = redis.call('HGETALL', ARGV[3] .. sel[i]) "
    "end "
    "return out";

vb_err vb_jobs_list_page(vb_jobs *j, const char *after, size_t limit, int enabled_only,
                         vb_job_list *out, char next[VB_UUID_SIZE], vb_error *err)
{
    vb_err rc = VB_OK;
    char lim[24];
    memset(out, 0, sizeof *out);
    next[0] = '\0';
    if (limit == 0 || limit > VB_JOBS_PAGE_MAX || (after && *after && !vb_jobs_id_valid(after)))
        return vb_error_set(err, VB_ERR_INVALID, "invalid page limit or cursor");
    snprintf(lim, sizeof lim, "%zu", limit);
    const char *argv[10] = {"EVAL",   script_list_page,    "4", JOBS_SET, JOBS_VERSION,
                            JOBS_INDEX, JOBS_INDEX_VERSION, after ? after : "", lim,
                            PREFIX "job:"};
    pthread_mutex_lock(&j->mu);
    redisReply *r = cmd(j, 10, argv, NULL, err);
    pthread_mutex_unlock(&j->mu);
    if (!r)
        return VB_ERR_REDIS;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 || r->elements % 2 != 1 ||
        r->element[0]->type != REDIS_REPLY_INTEGER) {
        rc = vb_error_set(err, VB_ERR_REDIS, "storage unavailable: unexpected reply");
        goto done;
    }
    size_t n = r->elements / 2;
    if (n && !(out->items = calloc(n, sizeof *out->items))) {
        rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const redisReply *id = r->element[1 + 2 * i], *hash = r->element[2 + 2 * i];
        if (id->type != REDIS_REPLY_STRING || !vb_jobs_id_valid(id->str))
            continue;
        if (r->element[0]->integer)
            snprintf(next, VB_UUID_SIZE, "%s", id->str); /* the last id seen */
        vb_job job;
        vb_error tmp = {0};
        vb_err jr = job_from_hash(id->str, hash, &job, &tmp);
        if (jr == VB_ERR_NOT_FOUND) /* an id without its hash */
            continue;
        if (jr != VB_OK) {
            rc = vb_error_set(err, jr, "%s", tmp.msg);
            goto done;
        }
        if (enabled_only && !job.enabled) {
            vb_job_free(&job);
            continue;
        }
        out->items[out->n++] = job;
    }
done:
    freeReplyObject(r);
    if (rc != VB_OK) {
        vb_job_list_free(out);
        next[0] = '\0';
    }
    return rc;
}

/* Runs the update script with the pairs already in `a` (after the header). */
static vb_err run_update(vb_jobs *j, const char *job_id, args *a, vb_job *out, vb_error *err)
{
    long long ok = 0;
    pthread_mutex_lock(&j->mu);
    vb_err rc = eval_int(j, script_update, a, &ok, err);
    if (rc == VB_OK && !ok)
        rc = vb_error_set(err, VB_ERR_NOT_FOUND, "cron job %s not found", job_id);
    if (rc == VB_OK && out)
        rc = get_locked(j, job_id, out, err);
    pthread_mutex_unlock(&j->mu);
    return rc;
}

static void update_header(args *a, char key[80], const char *job_id)
{
    job_key(key, job_id);
    add(a, "2");
    add(a, key);
    add(a, JOBS_VERSION);
    add(a, "updated_at");
    add_ll(a, vb__now_ms());
}

vb_err vb_jobs_update(vb_jobs *j, const char *job_id, const vb_job_input *in, vb_job *out,
                      vb_error *err)
{
    char key[80], *sealed = NULL;
    vb_err rc;
    if (out)
        memset(out, 0, sizeof *out);
    if (!vb_jobs_id_valid(job_id))
        return vb_error_set(err, VB_ERR_NOT_FOUND, "cron job not found");
    char *nsealed = NULL;
    int stored = 0;
    if ((in->present & VB_JOB_F_NOTIFY) && in->notify[0] &&
        !(in->present & VB_JOB_F_NOTIFY_SECRET)) {
        vb_job cur;
        if ((rc = vb_jobs_get(j, job_id, &cur, err)) != VB_OK)
            return rc;
        stored = cur.notify_secret_enc[0] != '\0';
        vb_job_free(&cur);
    }
    if ((rc = seal_notify(j, in, stored, &nsealed, err)) != VB_OK)
        return rc;
    if ((rc = seal_key(j, in, &sealed, err)) != VB_OK) {
        free(nsealed);
        return rc;
    }
    args *a = calloc(1, sizeof *a);
    if (!a) {
        free(sealed);
        free(nsealed);
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    }
    update_header(a, key, job_id);
    add_input_fields(a, in, sealed);
    add_notify_fields(a, in, nsealed);
    if ((in->present & VB_JOB_F_ENABLED) && in->enabled) {
        add_pair(a, "paused_reason", "");
        add_pair(a, "fail_streak", "0");
    }
    rc = run_update(j, job_id, a, out, err);
    free(a);
    free(sealed);
    free(nsealed);
    return rc;
}

vb_err vb_jobs_set_enabled(vb_jobs *j, const char *job_id, int enabled, vb_error *err)
{
    char key[80];
    if (!vb_jobs_id_valid(job_id))
        return vb_error_set(err, VB_ERR_NOT_FOUND, "cron job not found");
    args *a = calloc(1, sizeof *a);
    if (!a)
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    update_header(a, key, job_id);
    add_pair(a, "enabled", enabled ? "1" : "0");
    if (enabled) {
        add_pair(a, "paused_reason", "");
        add_pair(a, "fail_streak", "0");
    }
    vb_err rc = run_update(j, job_id, a, NULL, err);
    free(a);
    return rc;
}

vb_err vb_jobs_delete(vb_jobs *j, const char *job_id, vb_error *err)
{
    char key[80], execs[96];
    long long ok = 0;
    if (!vb_jobs_id_valid(job_id))
        return vb_error_set(err, VB_ERR_NOT_FOUND, "cron job not found");
    job_key(key, job_id);
    snprintf(execs, sizeof execs, "%s:execs", key);
    args *a = calloc(1, sizeof *a);
    if (!a)
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    add(a, "4");
    add(a, key);
    add(a, JOBS_SET);
    add(a, JOBS_VERSION);
    add(a, execs);
    add(a, job_id);
    add(a, PREFIX "exec:");
    pthread_mutex_lock(&j->mu);
    vb_err rc = eval_int(j, script_delete, a, &ok, err);
    pthread_mutex_unlock(&j->mu);
    free(a);
    if (rc == VB_OK && !ok)
        rc = vb_error_set(err, VB_ERR_NOT_FOUND, "cron job %s not found", job_id);
    return rc;
}

vb_err vb_jobs_version(vb_jobs *j, long long *version, vb_error *err)
{
    const char *argv[2] = {"GET", JOBS_VERSION};
    *version = 0;
    pthread_mutex_lock(&j->mu);
    redisReply *r = cmd(j, 2, argv, NULL, err);
    pthread_mutex_unlock(&j->mu);
    if (!r)
        return VB_ERR_REDIS;
    if (r->type == REDIS_REPLY_STRING)
        *version = to_ll(r->str);
    freeReplyObject(r);
    return VB_OK;
}

vb_err vb_jobs_open_key(vb_jobs *j, const vb_job *job, char **key, vb_error *err)
{
    *key = NULL;
    if (!j->has_key)
        return vb_error_set(err, VB_ERR_CONFIG,
                            "cannot decrypt external_api_key: no secret-encryption key is "
                            "configured");
    if (!job->external_api_key_enc || !job->external_api_key_enc[0])
        return vb_error_set(err, VB_ERR_NOT_FOUND, "cron job %s has no external_api_key",
                            job->job_id);
    return vb_crypto_open(j->key, job->external_api_key_enc, key, err);
}

static vb_err set_copy(char **field, const char *value)
{
    char *copy = strdup(value ? value : "");
    if (!copy)
        return VB_ERR_NOMEM;
    free(*field);
    *field = copy;
    return VB_OK;
}

vb_err vb_jobs_platform_config(vb_jobs *j, const vb_job *job, const vb_config *base,
                               vb_config *out, vb_error *err)
{
    char *key = NULL;
    vb_err rc = vb_config_copy(out, base);
    if (rc != VB_OK)
        return vb_error_set(err, rc, "out of memory");
    if ((rc = vb_jobs_open_key(j, job, &key, err)) != VB_OK)
        goto fail;
    vb_redact_add_secret(key);
    if (set_copy(&out->external_api_get_url, job->external_api_get_url) != VB_OK ||
        set_copy(&out->external_api_post_url, job->external_api_post_url) != VB_OK ||
        set_copy(&out->external_api_key, key) != VB_OK ||
        set_copy(&out->backend_api_url, job->backend_api_url) != VB_OK ||
        set_copy(&out->organization_id, job->organization_id) != VB_OK) {
        rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        goto fail;
    }
    vb_crypto_free_secret(key);
    return VB_OK;
fail:
    vb_crypto_free_secret(key);
    vb_config_free(out);
    return rc;
}

vb_err vb_jobs_open_notify_secret(vb_jobs *j, const char *job_id, char **secret, vb_error *err)
{
    char key[80];
    *secret = NULL;
    if (!vb_jobs_id_valid(job_id))
        return vb_error_set(err, VB_ERR_NOT_FOUND, "cron job not found");
    if (!j->has_key)
        return vb_error_set(err, VB_ERR_CONFIG, "cannot decrypt notify_secret: no "
                            "secret-encryption key is configured");
    job_key(key, job_id);
    const char *argv[3] = {"HGET", key, "notify_secret_enc"};
    redisReply *r = vb__jobs_command(j, 3, argv, NULL, err);
    if (!r)
        return VB_ERR_REDIS;
    vb_err rc;
    if (r->type != REDIS_REPLY_STRING || r->len == 0)
        rc = vb_error_set(err, VB_ERR_NOT_FOUND, "cron job %s has no notify_secret", job_id);
    else
        rc = vb_crypto_open(j->key, r->str, secret, err);
    freeReplyObject(r);
    return rc;
}

/* ------------------------------------------------------------------ */
/* executions                                                          */

static void add_exec_fields(args *a, const vb_exec *e, char *output_cut)
{
    add_pair(a, "execution_id", e->execution_id);
    add_pair(a, "job_id", e->job_id);
    add_pair(a, "status", e->status);
    add(a, "started_at");
    add_ll(a, e->started_at);
    add(a, "completed_at");
    add_ll(a, e->completed_at);
    add(a, "scheduled_for");
    add_ll(a, e->scheduled_for);
    add_pair(a, "output", output_cut);
    add_pair(a, "batch_id", e->batch_id);
    add_pair(a, "skip_reason", e->skip_reason);
    add(a, "runs_found");
    add_ll(a, e->runs_found);
    add(a, "runs_published");
    add_ll(a, e->runs_published);
    add(a, "runs_skipped_in_progress");
    add_ll(a, e->runs_skipped_in_progress);
    add(a, "runs_skipped_other_org");
    add_ll(a, e->runs_skipped_other_org);
}

static vb_err exec_write(vb_jobs *j, vb_exec *e, int create, vb_error *err)
{
    char key[96], list[96], cap[24], jk[80], *out = NULL;
    long long ok = 0;
    vb_err rc;
    if (!vb_exec_status_valid(e->status))
        return vb_error_set(err, VB_ERR_INVALID, "unknown execution status");
    if (!vb_jobs_id_valid(e->job_id))
        return vb_error_set(err, VB_ERR_INVALID, "execution has no valid job_id");
    if (create && !e->execution_id[0] &&
        (rc = vb_crypto_uuid4(e->execution_id, err)) != VB_OK)
        return rc;
    if (!vb_jobs_id_valid(e->execution_id))
        return vb_error_set(err, VB_ERR_INVALID, "execution id is not a UUID");
    const char *o = e->output ? e->output : "";
    if (!(out = strndup(o, vb__utf8_cut(o, strlen(o), VB_JOBS_OUTPUT_MAX))))
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    args *a = calloc(1, sizeof *a);
    if (!a) {
        free(out);
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    }
    snprintf(key, sizeof key, PREFIX "exec:%s", e->execution_id);
    if (create) {
        job_key(jk, e->job_id);
        snprintf(list, sizeof list, "%s:execs", jk);
        snprintf(cap, sizeof cap, "%zu", j->exec_cap);
        add(a, "3");
        add(a, key);
        add(a, list);
        add(a, jk);
        add(a, e->execution_id);
        add(a, cap);
        add(a, PREFIX "exec:");
    } else {
        add(a, "1");
        add(a, key);
    }
    add_exec_fields(a, e, out);
    pthread_mutex_lock(&j->mu);
    rc = eval_int(j, create ? script_exec_record : script_exec_update, a, &ok, err);
    pthread_mutex_unlock(&j->mu);
    if (rc == VB_OK && !ok)
        rc = create ? vb_error_set(err, VB_ERR_NOT_FOUND, "cron job %s not found", e->job_id)
                    : vb_error_set(err, VB_ERR_NOT_FOUND, "execution %s not found",
                                   e->execution_id);
    free(a);
    free(out);
    return rc;
}

vb_err vb_jobs_exec_record(vb_jobs *j, vb_exec *e, vb_error *err)
{
    return exec_write(j, e, 1, err);
}

vb_err vb_jobs_exec_update(vb_jobs *j, const vb_exec *e, vb_error *err)
{
    vb_exec copy = *e; /* exec_write only writes execution_id on create */
    return exec_write(j, &copy, 0, err);
}

/* Appends one recorded delivery (a JSON object written by the scripts of
 * notify.c) to *arr, created on first use; a malformed record is skipped. */
static vb_err add_notification(cJSON **arr, const char *json)
{
    cJSON *o = cJSON_Parse(json);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return VB_OK;
    }
    if (!*arr && !(*arr = cJSON_CreateArray())) {
        cJSON_Delete(o);
        return VB_ERR_NOMEM;
    }
    if (!cJSON_AddItemToArray(*arr, o)) {
        cJSON_Delete(o);
        return VB_ERR_NOMEM;
    }
    return VB_OK;
}

static vb_err exec_from_hash(const redisReply *h, vb_exec *out, vb_error *err)
{
    cJSON *ntf = NULL;
    memset(out, 0, sizeof *out);
    if (h->type != REDIS_REPLY_ARRAY || h->elements == 0)
        return vb_error_set(err, VB_ERR_NOT_FOUND, "execution not found");
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        const redisReply *k = h->element[i], *v = h->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        const char *n = k->str;
        char **slot = NULL;
        if (strcmp(n, "execution_id") == 0)
            snprintf(out->execution_id, sizeof out->execution_id, "%s", v->str);
        else if (strcmp(n, "job_id") == 0)
            snprintf(out->job_id, sizeof out->job_id, "%s", v->str);
        else if (strcmp(n, "status") == 0)
            snprintf(out->status, sizeof out->status, "%s", v->str);
        else if (strcmp(n, "started_at") == 0)
            out->started_at = to_ll(v->str);
        else if (strcmp(n, "completed_at") == 0)
            out->completed_at = to_ll(v->str);
        else if (strcmp(n, "scheduled_for") == 0)
            out->scheduled_for = to_ll(v->str);
        else if (strcmp(n, "runs_found") == 0)
            out->runs_found = (long)to_ll(v->str);
        else if (strcmp(n, "runs_published") == 0)
            out->runs_published = (long)to_ll(v->str);
        else if (strcmp(n, "runs_skipped_in_progress") == 0)
            out->runs_skipped_in_progress = (long)to_ll(v->str);
        else if (strcmp(n, "runs_skipped_other_org") == 0)
            out->runs_skipped_other_org = (long)to_ll(v->str);
        else if (strcmp(n, "runs_succeeded") == 0)
            out->runs_succeeded = (long)to_ll(v->str);
        else if (strcmp(n, "runs_failed") == 0)
            out->runs_failed = (long)to_ll(v->str);
        else if (strcmp(n, "output") == 0)
            slot = &out->output;
        else if (strcmp(n, "batch_id") == 0)
            slot = &out->batch_id;
        else if (strcmp(n, "skip_reason") == 0)
            slot = &out->skip_reason;
        else if (strncmp(n, "ntf:", 4) == 0 && add_notification(&ntf, v->str) != VB_OK)
            goto nomem;
        if (slot && !*slot && !(*slot = reply_dup(v)))
            goto nomem;
    }
    if (ntf && !(out->notifications = cJSON_PrintUnformatted(ntf)))
        goto nomem;
    cJSON_Delete(ntf);
    return VB_OK;
nomem:
    cJSON_Delete(ntf);
    vb_exec_free(out);
    return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
}

static vb_err exec_get_locked(vb_jobs *j, const char *id, vb_exec *out, vb_error *err)
{
    char key[96];
    snprintf(key, sizeof key, PREFIX "exec:%s", id);
    const char *argv[2] = {"HGETALL", key};
    redisReply *r = cmd(j, 2, argv, NULL, err);
    if (!r) {
        memset(out, 0, sizeof *out);
        return VB_ERR_REDIS;
    }
    vb_err rc = exec_from_hash(r, out, err);
    freeReplyObject(r);
    return rc;
}

vb_err vb_jobs_exec_get(vb_jobs *j, const char *execution_id, vb_exec *out, vb_error *err)
{
    memset(out, 0, sizeof *out);
    if (!vb_jobs_id_valid(execution_id))
        return vb_error_set(err, VB_ERR_NOT_FOUND, "execution not found");
    pthread_mutex_lock(&j->mu);
    vb_err rc = exec_get_locked(j, execution_id, out, err);
    pthread_mutex_unlock(&j->mu);
    return rc;
}

vb_err vb_jobs_exec_list(vb_jobs *j, const char *job_id, size_t limit, vb_exec_list *out,
                         vb_error *err)
{
    char key[96], stop[24];
    id_batch b;
    memset(out, 0, sizeof *out);
    if (limit < 1 || limit > 1000)
        return vb_error_set(err, VB_ERR_INVALID, "limit must be between 1 and 1000");
    if (!vb_jobs_id_valid(job_id))
        return VB_OK;
    snprintf(key, sizeof key, PREFIX "job:%s:execs", job_id);
    snprintf(stop, sizeof stop, "%zu", limit - 1);
    const char *argv[4] = {"LRANGE", key, "0", stop};
    vb_err rc = id_batch_read(j, 4, argv, PREFIX "exec:", &b, err);
    if (rc == VB_OK && b.n && !(out->items = calloc(b.n, sizeof *out->items)))
        rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    for (size_t i = 0; rc == VB_OK && i < b.n; i++) {
        vb_error tmp = {0};
        rc = exec_from_hash(b.hashes[i], &out->items[out->n], &tmp);
        if (rc == VB_ERR_NOT_FOUND) { /* trimmed meanwhile */
            rc = VB_OK;
            continue;
        }
        if (rc != VB_OK) {
            vb_error_set(err, rc, "%s", tmp.msg);
            break;
        }
        out->n++;
    }
    id_batch_free(&b);
    if (rc != VB_OK)
        vb_exec_list_free(out);
    return rc;
}

/* KEYS: the execution lists of the jobs. ARGV: execution-key prefix.
 * Read-only. Returns, per job, the HGETALL of its newest execution ({} when
 * it has none). */
static const char *const script_latest_execs =
    "local out = {} "
    "for i, k in ipairs(KEYS) do "
    "  local id = redis.call('LINDEX', k, 0) "
    "  if id then out[i] = redis.call('HGETALL', ARGV[1] .. id) else out[i] = {} end "
    "end "
    "return out";

vb_err vb_jobs_exec_latest(vb_jobs *j, const char *const *job_ids, size_t n, vb_exec *out,
                           vb_error *err)
{
    vb_err rc = VB_OK;
    memset(out, 0, n * sizeof *out);
    if (n == 0)
        return VB_OK;
    redisReply *r = vb__jobs_eval_per_job(j, script_latest_execs, job_ids, n, ":execs",
                                          PREFIX "exec:", err);
    if (!r)
        return err && err->code != VB_OK ? err->code : VB_ERR_REDIS;
    for (size_t i = 0; i < n; i++) {
        vb_error tmp = {0};
        vb_err e = exec_from_hash(r->element[i], &out[i], &tmp);
        if (e == VB_ERR_NOT_FOUND) /* none, or trimmed meanwhile */
            continue;
        if (e != VB_OK) {
            rc = vb_error_set(err, e, "%s", tmp.msg);
            for (size_t k = 0; k <= i; k++)
                vb_exec_free(&out[k]);
            break;
        }
    }
    freeReplyObject(r);
    return rc;
}

/* ------------------------------------------------------------------ */
/* internal access (jobs_internal.h)                                   */

redisReply *vb__jobs_command(vb_jobs *j, int argc, const char **argv, const size_t *lens,
                             vb_error *err)
{
    pthread_mutex_lock(&j->mu);
    redisReply *r = cmd(j, argc, argv, lens, err);
    pthread_mutex_unlock(&j->mu);
    return r;
}

redisReply *vb__jobs_eval(vb_jobs *j, const char *script, int argc, const char **argv,
                          vb_error *err)
{
    pthread_mutex_lock(&j->mu);
    redisReply *r = vb__redis_eval(j->r, script, argc, argv, NULL, err);
    pthread_mutex_unlock(&j->mu);
    return r;
}

redisReply *vb__jobs_eval_per_job(vb_jobs *j, const char *script, const char *const *job_ids,
                                  size_t n, const char *suffix, const char *arg, vb_error *err)
{
    if (n == 0 || n > VB_JOBS_PAGE_MAX) {
        vb_error_set(err, VB_ERR_INVALID, "1-%d jobs in one batch", VB_JOBS_PAGE_MAX);
        return NULL;
    }
    char numkeys[24];
    char(*keys)[96] = calloc(n, sizeof *keys);
    const char **argv = calloc(n + 2, sizeof *argv);
    redisReply *r = NULL;
    if (!keys || !argv) {
        vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        goto done;
    }
    snprintf(numkeys, sizeof numkeys, "%zu", n);
    argv[0] = numkeys;
    for (size_t i = 0; i < n; i++) {
        if (!vb_jobs_id_valid(job_ids[i])) {
            vb_error_set(err, VB_ERR_INVALID, "job id is not a UUID");
            goto done;
        }
        snprintf(keys[i], sizeof keys[i], PREFIX "job:%s%s", job_ids[i], suffix);
        argv[1 + i] = keys[i];
    }
    argv[n + 1] = arg;
    r = vb__jobs_eval(j, script, (int)(n + 1 + (arg != NULL)), argv, err);
    if (r && (r->type != REDIS_REPLY_ARRAY || r->elements != n)) {
        freeReplyObject(r);
        r = NULL;
        vb_error_set(err, VB_ERR_REDIS, "storage unavailable: unexpected reply");
    }
done:
    free(argv);
    free(keys);
    return r;
}

size_t vb__jobs_exec_cap(const vb_jobs *j)
{
    return j->exec_cap;
}
