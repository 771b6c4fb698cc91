/*
 * store.c — run state and per-run locks (store.h) on the Redis layer
 * (redis/redis.h): every run-state transition is one Lua script.
 *
 * Why Lua: a transition reads the state, decides and writes; done as separate
 * commands, two producers (or a producer and a worker) could interleave and
 * both act. A script runs atomically on the server, so each decision sees the
 * result of the previous one. The connection runs them with EVALSHA and
 * re-sends them with EVAL after NOSCRIPT. Times and deadlines are computed on
 * the client and passed as strings, so the scripts never format numbers.
 *
 * Connection handling (URL grammar, reconnect backoff, SIGPIPE, credentials
 * kept out of messages) is the Redis layer's; a command that failed on the
 * connection is reported as VB_ERR_REDIS and never re-sent.
 *
 * Threading: a vb_store is used by one thread at a time. Ownership: the store
 * owns its connection; replies are freed before each function returns.
 */
#include "visionbatch/store.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "redis/redis.h"
#include "utf8.h"
#include "util.h"
#include "visionbatch/crypto.h"

#include "visionbatch/run.h"

#define KEY_PREFIX "visionbatch:"
#define RUN_PREFIX KEY_PREFIX "run:"
#define LOCK_PREFIX KEY_PREFIX "lock:"
#define INDEX_KEY KEY_PREFIX "runs"
#define STATE_INDEX_PREFIX INDEX_KEY ":state:" /* + state name: per-state index */
#define STATE_INDEX_MARKER INDEX_KEY ":state-index" /* "1": per-state indexes built */
#define STATE_INDEX_KEY_MAX (sizeof(STATE_INDEX_PREFIX) + 16)
#define BACKFILL_STEP 5000
#define KEY_MAX (sizeof(RUN_PREFIX) + VB_STORE_ID_MAX + 8)
#define WORKER_MAX 255
#define LIST_MAX 1000
#define LIST_SCAN_MAX 100000

/* Lets a function report its failure code when the caller passed no
 * vb_error: failures are recorded in a local one instead. */
#define ERR_OR_LOCAL(e)                                                                            \
    vb_error e##_fallback = {0};                                                                   \
    if (!(e))                                                                                      \
    (e) = &e##_fallback

/* ---- Lua scripts ---- */

/* True when the lock at key k holds token t ("<token> <worker>"). */
#define LUA_HELD                                                                                   \
    "local function held(k, t)\n"                                                                  \
    "  local v = redis.call('GET', k)\n"                                                           \
    "  return v and string.sub(v, 1, #t + 1) == t .. ' '\n"                                        \
    "end\n"

/* Every transition moves the run in the index (score = updated_at) and from
 * the per-state index of its old state to that of its new one, in the same
 * script, so the per-state indexes never disagree with the records they
 * name (STATE_INDEX below). */
#define LUA_REINDEX                                                                                \
    "local function reindex(idx, id, old, new, now)\n"                                            \
    "  redis.call('ZADD', idx, now, id)\n"                                                        \
    "  if old and old ~= new then redis.call('ZREM', idx .. ':state:' .. old, id) end\n"          \
    "  redis.call('ZADD', idx .. ':state:' .. new, now, id)\n"                                    \
    "end\n"

/* KEYS run, index. ARGV id, max_attempts, now, lease_until, trace_id,
 * execution_id. Returns {decision, version}. A failed run is published only
 * once its retry_at (set when it failed, see LUA_SET_STATE) has passed. */
static const char LUA_CLAIM[] = LUA_REINDEX
    "local key, idx, id, now = KEYS[1], KEYS[2], ARGV[1], ARGV[3]\n"
    "local st = redis.call('HGET', key, 'state')\n"
    "local function publish(fresh, why)\n"
    "  local f = {'state', 'queued', 'queued_at', now, 'updated_at', now, 'lease_until', ARGV[4]}\n"
    "  if fresh then\n"
    "    for _, x in ipairs({'created_at', now, 'attempts', '0'}) do f[#f + 1] = x end\n"
    "  end\n"
    "  if why then f[#f + 1] = 'last_error'; f[#f + 1] = why end\n"
    "  if ARGV[5] ~= '' then f[#f + 1] = 'trace_id'; f[#f + 1] = ARGV[5] end\n"
    "  if ARGV[6] ~= '' then f[#f + 1] = 'execution_id'; f[#f + 1] = ARGV[6] end\n"
    "  redis.call('HSET', key, unpack(f))\n"
    "  local v = redis.call('HINCRBY', key, 'version', 1)\n"
    "  reindex(idx, id, st, 'queued', now)\n"
    "  return {'publish', v}\n"
    "end\n"
    "if not st then return publish(true, nil) end\n"
    "local v = tonumber(redis.call('HGET', key, 'version')) or 0\n"
    "if st == 'uploaded' then return {'done', v} end\n"
    "if st == 'dead' then return {'dead', v} end\n"
    "local why = nil\n"
    "if st == 'queued' or st == 'processing' or st == 'uploading' then\n"
    "  local lease = tonumber(redis.call('HGET', key, 'lease_until')) or 0\n"
    "  if lease >= tonumber(now) then return {'in_progress', v} end\n"
    "  if st ~= 'queued' then why = 'lease expired while ' .. st .. ' (worker lost)' end\n"
    "elseif st ~= 'failed' then\n"
    "  return redis.error_reply('ERR visionbatch run has an unknown state')\n"
    "end\n"
    "local attempts = tonumber(redis.call('HGET', key, 'attempts')) or 0\n"
    "if st == 'failed' and attempts < tonumber(ARGV[2]) and\n"
    "   tonumber(now) < (tonumber(redis.call('HGET', key, 'retry_at')) or 0) then\n"
    "  return {'backoff', v}\n"
    "end\n"
    "if attempts >= tonumber(ARGV[2]) then\n"
    "  local f = {'state', 'dead', 'updated_at', now, 'finished_at', now, 'lease_until', '0'}\n"
    "  if why then f[#f + 1] = 'last_error'; f[#f + 1] = why end\n"
    "  redis.call('HSET', key, unpack(f))\n"
    "  v = redis.call('HINCRBY', key, 'version', 1)\n"
    "  reindex(idx, id, st, 'dead', now)\n"
    "  return {'dead', v}\n"
    "end\n"
    "return publish(false, why)\n";

/* KEYS run, lock, index. ARGV id, token, worker, now, lease_until, lease_ms,
 * message attempt (0 = unknown). Returns {'ok', attempt} | {'lost', 0} |
 * {'conflict', state} | {'stale', attempts}: the message carries an attempt
 * that has already begun (a redelivery), so it must not count again. */
static const char LUA_BEGIN[] = LUA_HELD LUA_REINDEX
    "if not held(KEYS[2], ARGV[2]) then return {'lost', 0} end\n"
    "local st = redis.call('HGET', KEYS[1], 'state')\n"
    "if st == 'uploaded' or st == 'dead' then return {'conflict', st} end\n"
    "if not st then redis.call('HSET', KEYS[1], 'created_at', ARGV[4]) end\n"
    "local done = tonumber(redis.call('HGET', KEYS[1], 'attempts')) or 0\n"
    "if tonumber(ARGV[7]) > 0 and done >= tonumber(ARGV[7]) then return {'stale', done} end\n"
    "local a = redis.call('HINCRBY', KEYS[1], 'attempts', 1)\n"
    "redis.call('HDEL', KEYS[1], 'retry_at')\n"
    "redis.call('HSET', KEYS[1], 'state', 'processing', 'started_at', ARGV[4], 'worker', ARGV[3],\n"
    "           'lease_until', ARGV[5], 'lease_ms', ARGV[6], 'finished_at', '0',\n"
    "           'updated_at', ARGV[4])\n"
    "redis.call('HINCRBY', KEYS[1], 'version', 1)\n"
    "reindex(KEYS[3], ARGV[1], st, 'processing', ARGV[4])\n"
    "return {'ok', a}\n";

/* KEYS run, lock, index. ARGV id, token, now.
 * Returns {'ok', previous upload_started_at} | {'lost', 0} | {'conflict', 0}. */
static const char LUA_MARK_UPLOAD[] = LUA_HELD LUA_REINDEX
    "if not held(KEYS[2], ARGV[2]) then return {'lost', 0} end\n"
    "local st = redis.call('HGET', KEYS[1], 'state')\n"
    "if st == 'uploaded' then return {'conflict', 0} end\n"
    "if not st then redis.call('HSET', KEYS[1], 'created_at', ARGV[3]) end\n"
    "local prev = redis.call('HGET', KEYS[1], 'upload_started_at') or '0'\n"
    "redis.call('HSET', KEYS[1], 'state', 'uploading', 'upload_started_at', ARGV[3],\n"
    "           'updated_at', ARGV[3])\n"
    "redis.call('HINCRBY', KEYS[1], 'version', 1)\n"
    "reindex(KEYS[3], ARGV[1], st, 'uploading', ARGV[3])\n"
    "return {'ok', prev}\n";

/* The retry backoff of a failed run, the one rule every path that publishes
 * a run again obeys (the claim refuses a failed run before its retry_at):
 * the lease of its last attempt × 2^(attempts−1), at most 10 minutes. */
#define LUA_BACKOFF                                                                                \
    "local function backoff(k)\n"                                                                 \
    "  local a = tonumber(redis.call('HGET', k, 'attempts')) or 0\n"                              \
    "  local b = tonumber(redis.call('HGET', k, 'lease_ms')) or 0\n"                              \
    "  if a <= 0 then return 0 end\n"                                                             \
    "  for _ = 2, a do if b >= 600000 then break end b = b * 2 end\n"                             \
    "  if b > 600000 then b = 600000 end\n"                                                       \
    "  return b\n"                                                                                \
    "end\n"

/* KEYS run, lock, index. ARGV id, token, state, now, has_error, error,
 * has_batches, batches. Returns 'ok' | 'lost' | 'conflict'. A failed run
 * gets retry_at = now + its backoff. */
static const char LUA_SET_STATE[] = LUA_HELD LUA_BACKOFF LUA_REINDEX
    "if not held(KEYS[2], ARGV[2]) then return 'lost' end\n"
    "local st = redis.call('HGET', KEYS[1], 'state')\n"
    "if st == 'uploaded' then return 'conflict' end\n"
    "local f = {'state', ARGV[3], 'updated_at', ARGV[4]}\n"
    "if ARGV[3] == 'failed' then\n"
    "  f[#f + 1] = 'retry_at'; f[#f + 1] = tostring(tonumber(ARGV[4]) + backoff(KEYS[1]))\n"
    "end\n"
    "if ARGV[3] ~= 'uploading' then\n"
    "  for _, x in ipairs({'finished_at', ARGV[4], 'lease_until', '0'}) do f[#f + 1] = x end\n"
    "end\n"
    "if not st then f[#f + 1] = 'created_at'; f[#f + 1] = ARGV[4] end\n"
    "if ARGV[5] == '1' then f[#f + 1] = 'last_error'; f[#f + 1] = ARGV[6] end\n"
    "if ARGV[7] == '1' then f[#f + 1] = 'batch_ids'; f[#f + 1] = ARGV[8] end\n"
    "redis.call('HSET', KEYS[1], unpack(f))\n"
    "redis.call('HINCRBY', KEYS[1], 'version', 1)\n"
    "reindex(KEYS[3], ARGV[1], st, ARGV[3], ARGV[4])\n"
    "return 'ok'\n";

/* KEYS lock, run. ARGV token, ttl_ms, lease_until. Returns 1 | 0 (lost). */
static const char LUA_RENEW[] = LUA_HELD
    "if not held(KEYS[1], ARGV[1]) then return 0 end\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "local st = redis.call('HGET', KEYS[2], 'state')\n"
    "if st == 'queued' or st == 'processing' or st == 'uploading' then\n"
    "  redis.call('HSET', KEYS[2], 'lease_until', ARGV[3])\n"
    "end\n"
    "return 1\n";

/* KEYS lock. ARGV token. Returns 1 | 0 (not held). */
static const char LUA_RELEASE[] = LUA_HELD
    "if not held(KEYS[1], ARGV[1]) then return 0 end\n"
    "redis.call('DEL', KEYS[1])\n"
    "return 1\n";

/* KEYS run, index. ARGV id, now. Returns 'ok' | 'notfound' | current state. */
static const char LUA_RETRY[] = LUA_REINDEX
    "local st = redis.call('HGET', KEYS[1], 'state')\n"
    "if not st then return 'notfound' end\n"
    "if st ~= 'dead' and st ~= 'failed' then return st end\n"
    "redis.call('HSET', KEYS[1], 'state', 'failed', 'attempts', '0', 'lease_until', '0',\n"
    "           'retry_at', '0', 'updated_at', ARGV[2])\n"
    "redis.call('HINCRBY', KEYS[1], 'version', 1)\n"
    "reindex(KEYS[2], ARGV[1], st, 'failed', ARGV[2])\n"
    "return 'ok'\n";

/* KEYS index (with a state filter: that state's per-state index). ARGV
 * run-key prefix, offset, count, state filter ('' = any), max entries
 * scanned. Read-only. Returns {{id, {field, value, …}}, …}. */
static const char LUA_LIST[] =
    "local idx, prefix, filter = KEYS[1], ARGV[1], ARGV[4]\n"
    "local skip, want, maxscan = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[5])\n"
    "local out, pos = {}, 0\n"
    "if filter == '' then pos = skip; skip = 0; maxscan = maxscan + pos end\n"
    "while #out < want and pos < maxscan do\n"
    "  local ids = redis.call('ZREVRANGE', idx, pos, pos + 255)\n"
    "  if #ids == 0 then break end\n"
    "  for _, id in ipairs(ids) do\n"
    "    local key = prefix .. id\n"
    "    local st = redis.call('HGET', key, 'state')\n"
    "    if st and (filter == '' or st == filter) then\n"
    "      if skip > 0 then skip = skip - 1\n"
    "      else\n"
    "        out[#out + 1] = {id, redis.call('HGETALL', key)}\n"
    "        if #out >= want then break end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  pos = pos + 256\n"
    "end\n"
    "return out\n";

/* KEYS walked index (the index, or with a state filter that state's
 * per-state index), the index. ARGV run-key prefix, start score ('+inf' =
 * newest), start id ('' = none: every entry at the start score counts),
 * count, state filter ('' = any), most entries scanned, execution id ('' =
 * any). Walks the index newest first from (score, id) exclusive — equal
 * scores come in descending id order — and returns {next score, next id,
 * {id, {field, value, …}}, …}; next score '' when the index is exhausted.
 * The start is found by score (skipping only ties), then the walk goes by
 * rank, so a call costs O(log N + budget) whatever the depth of the cursor;
 * with a state filter nearly every entry matches, so O(log N + count). An
 * entry of a per-state index whose run is in another state (written by a
 * program that kept no per-state index) is moved where it belongs. */
static const char LUA_PAGE[] =
    "local idx, prefix, maxs, after, filter = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[5]\n"
    "local want, budget, exec = tonumber(ARGV[4]), tonumber(ARGV[6]), ARGV[7]\n"
    "local ms = tonumber(maxs)\n"
    "local out, scanned, pos = {'', ''}, 0, 0\n"
    "if maxs ~= '+inf' then\n"
    /* the rank of the first entry past the cursor; only ties are skipped */
    "  local first, off = nil, 0\n"
    "  while not first do\n"
    "    local b = redis.call('ZREVRANGEBYSCORE', idx, maxs, '-inf', 'WITHSCORES', 'LIMIT',\n"
    "                         off, 64)\n"
    "    if #b == 0 then return out end\n"
    "    for i = 1, #b, 2 do\n"
    "      if not (after ~= '' and tonumber(b[i + 1]) == ms and b[i] >= after) then\n"
    "        first = b[i]\n"
    "        break\n"
    "      end\n"
    "    end\n"
    "    off = off + 64\n"
    "  end\n"
    "  pos = redis.call('ZREVRANK', idx, first)\n"
    "end\n"
    "while true do\n"
    "  local b = redis.call('ZREVRANGE', idx, pos, pos + 255, 'WITHSCORES')\n"
    "  if #b == 0 then return out end\n"
    "  pos = pos + 256\n"
    "  for i = 1, #b, 2 do\n"
    "    local id, key = b[i], prefix .. b[i]\n"
    "    scanned = scanned + 1\n"
    "    local st = redis.call('HGET', key, 'state')\n"
    "    if filter ~= '' and st ~= filter then\n"
    "      redis.call('ZREM', idx, id)\n"
    "      pos = pos - 1\n"
    "      if st then\n"
    "        redis.call('ZADD', KEYS[2] .. ':state:' .. st,\n"
    "                   redis.call('ZSCORE', KEYS[2], id) or b[i + 1], id)\n"
    "      end\n"
    "    elseif st and (exec == '' or redis.call('HGET', key, 'execution_id') == exec) then\n"
    "      out[#out + 1] = {id, redis.call('HGETALL', key)}\n"
    "    end\n"
    "    if #out - 2 >= want or scanned >= budget then\n"
    "      out[1], out[2] = b[i + 1], id\n"
    "      return out\n"
    "    end\n"
    "  end\n"
    "end\n";

/* KEYS index, marker. ARGV run-key prefix, first rank, count. Builds the
 * per-state indexes of a store written before they existed, `count` entries
 * of the index a call (newest first: a run updated meanwhile moves to the
 * head, so entries are at worst seen twice, never skipped; its transition
 * has indexed it anyway). Returns the next rank, or -1 once the walk is done
 * and the marker is set (by this walk or by another client's: several
 * programs starting together may walk at once, and stop when one is done). */
static const char LUA_STATE_BACKFILL[] =
    "if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end\n"
    "local first, count = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local b = redis.call('ZREVRANGE', KEYS[1], first, first + count - 1, 'WITHSCORES')\n"
    "for i = 1, #b, 2 do\n"
    "  local st = redis.call('HGET', ARGV[1] .. b[i], 'state')\n"
    "  if st then redis.call('ZADD', KEYS[1] .. ':state:' .. st, b[i + 1], b[i]) end\n"
    "end\n"
    "if #b < 2 * count then redis.call('SET', KEYS[2], '1') return -1 end\n"
    "return first + count\n";

/* KEYS run, lock. ARGV token, cred_source, job_id, organization_id, run_code.
 * Returns 'ok' | 'lost'. Fields set only while the lock is held. */
static const char LUA_SET_ORIGIN[] = LUA_HELD
    "if not held(KEYS[2], ARGV[1]) then return 'lost' end\n"
    "redis.call('HSET', KEYS[1], 'cred_source', ARGV[2], 'job_id', ARGV[3],\n"
    "           'organization_id', ARGV[4], 'run_code', ARGV[5])\n"
    "return 'ok'\n";

/* KEYS run, lock, index. ARGV id, token, now, reason.
 * Returns 'ok' | 'lost' | 'conflict'. Not a failure: no backoff (retry_at = now). */
static const char LUA_HAND_BACK[] = LUA_HELD LUA_REINDEX
    "if not held(KEYS[2], ARGV[2]) then return 'lost' end\n"
    "local st = redis.call('HGET', KEYS[1], 'state')\n"
    "if st ~= 'processing' and st ~= 'uploading' then return 'conflict' end\n"
    "local a = (tonumber(redis.call('HGET', KEYS[1], 'attempts')) or 1) - 1\n"
    "if a < 0 then a = 0 end\n"
    "redis.call('HSET', KEYS[1], 'state', 'failed', 'attempts', tostring(a), 'lease_until', '0',\n"
    "           'finished_at', ARGV[3], 'updated_at', ARGV[3], 'last_error', ARGV[4],\n"
    "           'retry_at', ARGV[3])\n"
    "redis.call('HINCRBY', KEYS[1], 'version', 1)\n"
    "reindex(KEYS[3], ARGV[1], st, 'failed', ARGV[3])\n"
    "redis.call('DEL', KEYS[2])\n"
    "return 'ok'\n";

/* KEYS run, lock, index. ARGV id, token, now, lease_ms, upload_until.
 * Returns 'ok' | 'lost' | 'conflict' (uploaded). The last check before a
 * report upload goes on the wire: the lock is ours, its lease is extended to
 * a full lease_ms from now, and the attempt's start and the time by which it
 * can no longer be in flight are recorded, all at once. */
static const char LUA_UPLOAD_GATE[] = LUA_HELD LUA_REINDEX
    "if not held(KEYS[2], ARGV[2]) then return 'lost' end\n"
    "local st = redis.call('HGET', KEYS[1], 'state')\n"
    "if st == 'uploaded' then return 'conflict' end\n"
    "if not st then redis.call('HSET', KEYS[1], 'created_at', ARGV[3]) end\n"
    "redis.call('PEXPIRE', KEYS[2], ARGV[4])\n"
    "redis.call('HSET', KEYS[1], 'state', 'uploading', 'upload_started_at', ARGV[3],\n"
    "           'upload_until', ARGV[5], 'lease_until', tostring(tonumber(ARGV[3]) + tonumber(ARGV[4])),\n"
    "           'updated_at', ARGV[3])\n"
    "redis.call('HINCRBY', KEYS[1], 'version', 1)\n"
    "reindex(KEYS[3], ARGV[1], st, 'uploading', ARGV[3])\n"
    "return 'ok'\n";

enum { SCRIPT_CLAIM, SCRIPT_BEGIN, SCRIPT_MARK_UPLOAD, SCRIPT_SET_STATE, SCRIPT_RENEW,
       SCRIPT_RELEASE, SCRIPT_RETRY, SCRIPT_LIST, SCRIPT_SET_ORIGIN, SCRIPT_HAND_BACK,
       SCRIPT_PAGE, SCRIPT_UPLOAD_GATE, SCRIPT_STATE_BACKFILL, SCRIPT__COUNT };

static const char *const vb_store_scripts[SCRIPT__COUNT] = {
    [SCRIPT_CLAIM] = LUA_CLAIM,
    [SCRIPT_BEGIN] = LUA_BEGIN,
    [SCRIPT_MARK_UPLOAD] = LUA_MARK_UPLOAD,
    [SCRIPT_SET_STATE] = LUA_SET_STATE,
    [SCRIPT_RENEW] = LUA_RENEW,
    [SCRIPT_RELEASE] = LUA_RELEASE,
    [SCRIPT_RETRY] = LUA_RETRY,
    [SCRIPT_LIST] = LUA_LIST,
    [SCRIPT_SET_ORIGIN] = LUA_SET_ORIGIN,
    [SCRIPT_HAND_BACK] = LUA_HAND_BACK,
    [SCRIPT_PAGE] = LUA_PAGE,
    [SCRIPT_UPLOAD_GATE] = LUA_UPLOAD_GATE,
    [SCRIPT_STATE_BACKFILL] = LUA_STATE_BACKFILL,
};

struct vb_store {
    vb__redis *r;
    int state_index; /* the per-state indexes are known to be complete */
};

/* ---- small helpers ---- */

long long vb_store_now_ms(void)
{
    return vb__now_ms();
}

/* Copies a normalised (upper-case) run id into out after validating it
 * with the one run id rule (vb_run_id_valid, run.h). */
static vb_err norm_id(const char *in, char out[VB_STORE_ID_MAX + 1], vb_error *err)
{
    if (!in || !*in)
        return vb_error_set(err, VB_ERR_INVALID, "run id is empty");
    if (!vb_run_id_valid(in))
        return vb_error_set(err, VB_ERR_INVALID, "run id is not 1-%d characters of "
                                                 "A-Z a-z 0-9 . _ : - (not only dots)",
                            VB_STORE_ID_MAX);
    size_t n = 0;
    for (; in[n]; n++)
        out[n] = (char)toupper((unsigned char)in[n]);
    out[n] = '\0';
    return VB_OK;
}

static vb_err check_token(const char *token, vb_error *err)
{
    if (!token || strlen(token) != VB_STORE_TOKEN_SIZE - 1)
        return vb_error_set(err, VB_ERR_INVALID, "lock token must be 32 hex digits");
    for (const char *p = token; *p; p++)
        if (!isxdigit((unsigned char)*p))
            return vb_error_set(err, VB_ERR_INVALID, "lock token must be 32 hex digits");
    return VB_OK;
}

static vb_err check_worker(const char *worker, vb_error *err)
{
    if (!worker || !*worker || strlen(worker) > WORKER_MAX)
        return vb_error_set(err, VB_ERR_INVALID, "worker id must be 1-%d bytes", WORKER_MAX);
    for (const char *p = worker; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return vb_error_set(err, VB_ERR_INVALID,
                                "worker id must be printable ASCII without spaces");
    return VB_OK;
}

static vb_err check_ms(long ms, const char *what, vb_error *err)
{
    if (ms <= 0 || ms > 7L * 24 * 3600 * 1000)
        return vb_error_set(err, VB_ERR_INVALID, "%s must be 1 ms to 7 days", what);
    return VB_OK;
}

static void make_key(char *out, size_t outlen, const char *prefix, const char *id)
{
    snprintf(out, outlen, "%s%s", prefix, id);
}

static void fmt_ll(char out[24], long long v)
{
    snprintf(out, 24, "%lld", v);
}

/* Fills `tok` with 128 random bits as lower-case hex. */
static vb_err random_token(char tok[VB_STORE_TOKEN_SIZE], vb_error *err)
{
    unsigned char raw[16];
    vb_err rc = vb_crypto_random(raw, sizeof raw, err);
    if (rc != VB_OK)
        return rc;
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof raw; i++) {
        tok[2 * i] = hex[raw[i] >> 4];
        tok[2 * i + 1] = hex[raw[i] & 15];
    }
    tok[VB_STORE_TOKEN_SIZE - 1] = '\0';
    return VB_OK;
}

/* ---- connection ---- */

/* The code of a failure already recorded in err (never NULL here). */
static vb_err failed(const vb_error *err)
{
    return err->code != VB_OK ? err->code : VB_ERR_REDIS;
}

/* One command; an error reply becomes VB_ERR_REDIS and NULL. */
static redisReply *store_cmd(vb_store *s, int argc, const char **argv, const size_t *lens,
                             vb_error *err)
{
    return vb__redis_command(s->r, argc, argv, lens, err);
}

/* Runs script `which` with keys and args (arglens may be NULL: strlen). */
static redisReply *store_eval(vb_store *s, int which, int nkeys, const char **keys, int nargs,
                              const char **args, const size_t *arglens, vb_error *err)
{
    const char *argv[16];
    size_t lens[16];
    char nk[8];
    snprintf(nk, sizeof nk, "%d", nkeys);
    int argc = 0;
    argv[argc] = nk;
    lens[argc++] = strlen(nk);
    for (int i = 0; i < nkeys; i++) {
        argv[argc] = keys[i];
        lens[argc++] = strlen(keys[i]);
    }
    for (int i = 0; i < nargs; i++) {
        argv[argc] = args[i];
        lens[argc++] = arglens ? arglens[i] : strlen(args[i]);
    }
    return vb__redis_eval(s->r, vb_store_scripts[which], argc, argv, lens, err);
}

vb_err vb_store_new(const char *url, const vb_store_opts *opts, vb_store **out, vb_error *err)
{
    *out = NULL;
    vb_store *s = calloc(1, sizeof *s);
    if (!s)
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    vb__redis_opts ro = {0};
    if (opts) {
        ro.connect_timeout_ms = opts->connect_timeout_ms;
        ro.command_timeout_ms = opts->command_timeout_ms;
        ro.client_name = opts->client_name;
    }
    vb_err rc = vb__redis_new(url, &ro, &s->r, err);
    if (rc != VB_OK) {
        free(s);
        return rc;
    }
    *out = s;
    return VB_OK;
}

void vb_store_free(vb_store *s)
{
    if (!s)
        return;
    vb__redis_free(s->r);
    free(s);
}

const char *vb_store_describe(const vb_store *s)
{
    return s ? vb__redis_describe(s->r) : "(none)";
}

vb_err vb_store_ping(vb_store *s, vb_error *err)
{
    ERR_OR_LOCAL(err);
    const char *argv[1] = {"PING"};
    redisReply *r = store_cmd(s, 1, argv, NULL, err);
    if (!r)
        return failed(err);
    freeReplyObject(r);
    return VB_OK;
}

static vb_err bad_reply(vb_store *s, const char *what, vb_error *err)
{
    return vb__redis_unexpected(s->r, what, err);
}

/* The answer of a lock holder's script ("ok", "lost" or "conflict"), taken
 * over and freed: VB_OK; VB_ERR_CANCELLED "<what> of run <id> refused: lock
 * lost"; VB_ERR_CONFLICT "…: <conflict>" (conflict NULL: the script never
 * answers so, and the answer is unexpected). `label` names the script in an
 * unexpected-answer error. */
static vb_err holder_reply(vb_store *s, redisReply *r, const char *label, const char *what,
                           const char *id, const char *conflict, vb_error *err)
{
    vb_err rc = VB_OK;
    if (r->type != REDIS_REPLY_STRING)
        rc = bad_reply(s, label, err);
    else if (strcmp(r->str, "lost") == 0)
        rc = vb_error_set(err, VB_ERR_CANCELLED, "%s of run %s refused: lock lost", what, id);
    else if (conflict && strcmp(r->str, "conflict") == 0)
        rc = vb_error_set(err, VB_ERR_CONFLICT, "%s of run %s refused: %s", what, id, conflict);
    else if (strcmp(r->str, "ok") != 0)
        rc = bad_reply(s, label, err);
    freeReplyObject(r);
    return rc;
}

/* ---- run state ---- */

static const char *const vb_run_status_names[] = {
    [VB_RUN_NONE] = "none",
    [VB_RUN_QUEUED] = "queued",
    [VB_RUN_PROCESSING] = "processing",
    [VB_RUN_UPLOADING] = "uploading",
    [VB_RUN_UPLOADED] = "uploaded",
    [VB_RUN_FAILED] = "failed",
    [VB_RUN_DEAD] = "dead",
};

#define N_STATUS ((int)(sizeof vb_run_status_names / sizeof vb_run_status_names[0]))

const char *vb_run_status_name(vb_run_status st)
{
    if ((int)st < 0 || (int)st >= N_STATUS)
        return "unknown";
    return vb_run_status_names[st];
}

int vb_run_status_parse(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < N_STATUS; i++)
        if (strcasecmp(name, vb_run_status_names[i]) == 0)
            return i;
    return -1;
}

const char *vb_claim_decision_name(vb_claim_decision d)
{
    switch (d) {
    case VB_CLAIM_PUBLISH:
        return "publish";
    case VB_CLAIM_SKIP_IN_PROGRESS:
        return "skip_in_progress";
    case VB_CLAIM_SKIP_DONE:
        return "skip_done";
    case VB_CLAIM_DEAD:
        return "dead";
    case VB_CLAIM_SKIP_BACKOFF:
        return "skip_backoff";
    }
    return "unknown";
}

void vb_run_state_free(vb_run_state *st)
{
    if (!st)
        return;
    free(st->id);
    free(st->worker);
    free(st->batch_ids);
    free(st->last_error);
    free(st->trace_id);
    free(st->execution_id);
    memset(st, 0, sizeof *st);
}

void vb_run_state_list_free(vb_run_state_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        vb_run_state_free(&l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

/* Hash fields and where they go in vb_run_state. */
enum field_kind { F_STR, F_TIME, F_LONG, F_STATE };
static const struct {
    const char *name;
    enum field_kind kind;
    size_t off;
} vb_run_fields[] = {
    {"state", F_STATE, offsetof(vb_run_state, state)},
    {"attempts", F_LONG, offsetof(vb_run_state, attempts)},
    {"version", F_TIME, offsetof(vb_run_state, version)},
    {"created_at", F_TIME, offsetof(vb_run_state, created_at)},
    {"updated_at", F_TIME, offsetof(vb_run_state, updated_at)},
    {"queued_at", F_TIME, offsetof(vb_run_state, queued_at)},
    {"started_at", F_TIME, offsetof(vb_run_state, started_at)},
    {"finished_at", F_TIME, offsetof(vb_run_state, finished_at)},
    {"lease_until", F_TIME, offsetof(vb_run_state, lease_until)},
    {"upload_started_at", F_TIME, offsetof(vb_run_state, upload_started_at)},
    {"upload_until", F_TIME, offsetof(vb_run_state, upload_until)},
    {"retry_at", F_TIME, offsetof(vb_run_state, retry_at)},
    {"worker", F_STR, offsetof(vb_run_state, worker)},
    {"batch_ids", F_STR, offsetof(vb_run_state, batch_ids)},
    {"last_error", F_STR, offsetof(vb_run_state, last_error)},
    {"trace_id", F_STR, offsetof(vb_run_state, trace_id)},
    {"execution_id", F_STR, offsetof(vb_run_state, execution_id)},
};
#define N_FIELDS (sizeof vb_run_fields / sizeof vb_run_fields[0])

static long long parse_ll(const char *s)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 0)
        return 0;
    return v;
}

/* Fills *st from an HGETALL array reply; *st must be zeroed. */
static vb_err state_from_hash(const char *id, size_t idlen, const redisReply *h, vb_run_state *st,
                              vb_error *err)
{
    if (h->type != REDIS_REPLY_ARRAY || h->elements % 2 != 0)
        return vb_error_set(err, VB_ERR_REDIS, "malformed run record");
    char *base = (char *)st;
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        const redisReply *k = h->element[i], *v = h->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        for (size_t f = 0; f < N_FIELDS; f++) {
            if (strcmp(k->str, vb_run_fields[f].name) != 0)
                continue;
            void *slot = base + vb_run_fields[f].off;
            switch (vb_run_fields[f].kind) {
            case F_STR: {
                char *d = vb__dup_bytes(v->str, v->len);
                if (!d)
                    return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
                free(*(char **)slot);
                *(char **)slot = d;
                break;
            }
            case F_TIME:
                *(long long *)slot = parse_ll(v->str);
                break;
            case F_LONG: {
                long long x = parse_ll(v->str);
                *(long *)slot = x > 1000000000 ? 1000000000 : (long)x;
                break;
            }
            case F_STATE: {
                int x = vb_run_status_parse(v->str);
                *(vb_run_status *)slot = x < 0 ? VB_RUN_NONE : (vb_run_status)x;
                break;
            }
            }
            break;
        }
    }
    st->id = vb__dup_bytes(id, idlen);
    if (!st->id)
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    for (size_t f = 0; f < N_FIELDS; f++) {
        if (vb_run_fields[f].kind != F_STR)
            continue;
        char **slot = (char **)(base + vb_run_fields[f].off);
        if (!*slot && !(*slot = vb__dup_bytes("", 0)))
            return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    }
    return VB_OK;
}

vb_err vb_store_get(vb_store *s, const char *run_id, vb_run_state *out, vb_error *err)
{
    ERR_OR_LOCAL(err);
    memset(out, 0, sizeof *out);
    char id[VB_STORE_ID_MAX + 1], key[KEY_MAX];
    vb_err rc = norm_id(run_id, id, err);
    if (rc != VB_OK)
        return rc;
    make_key(key, sizeof key, RUN_PREFIX, id);
    const char *argv[2] = {"HGETALL", key};
    redisReply *r = store_cmd(s, 2, argv, NULL, err);
    if (!r)
        return failed(err);
    if (r->type != REDIS_REPLY_ARRAY) {
        rc = bad_reply(s, "HGETALL", err);
        goto fail;
    }
    if (r->elements == 0) {
        rc = vb_error_set(err, VB_ERR_NOT_FOUND, "run %s has no recorded state", id);
        goto fail;
    }
    rc = state_from_hash(id, strlen(id), r, out, err);
    if (rc != VB_OK)
        goto fail;
    freeReplyObject(r);
    return VB_OK;
fail:
    freeReplyObject(r);
    vb_run_state_free(out);
    return rc;
}

/* Fills out->items from the {id, {field, value, …}} elements of an array
 * reply, starting at element `first`. */
static vb_err states_from_reply(vb_store *s, const redisReply *r, size_t first,
                                vb_run_state_list *out, vb_error *err)
{
    if (r->elements > first &&
        !(out->items = calloc(r->elements - first, sizeof *out->items)))
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    for (size_t i = first; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[0]->type != REDIS_REPLY_STRING)
            return bad_reply(s, "list", err);
        vb_err rc = state_from_hash(e->element[0]->str, e->element[0]->len, e->element[1],
                                    &out->items[out->n], err);
        out->n++; /* counted even on failure so the list free releases it */
        if (rc != VB_OK)
            return rc;
    }
    return VB_OK;
}

/* Makes sure the per-state indexes cover every run: once per store, the
 * marker is read; when it is absent (runs recorded by a version without
 * them) they are built, BACKFILL_STEP index entries per script so Redis is
 * never blocked for long. Every later transition keeps them current. */
static vb_err state_index_ready(vb_store *s, vb_error *err)
{
    if (s->state_index)
        return VB_OK;
    const char *get[2] = {"GET", STATE_INDEX_MARKER};
    redisReply *r = store_cmd(s, 2, get, NULL, err);
    if (!r)
        return failed(err);
    int built = r->type == REDIS_REPLY_STRING && strcmp(r->str, "1") == 0;
    freeReplyObject(r);
    char first[24] = "0", step[24];
    fmt_ll(step, BACKFILL_STEP);
    while (!built) {
        const char *keys[2] = {INDEX_KEY, STATE_INDEX_MARKER};
        const char *args[3] = {RUN_PREFIX, first, step};
        if (!(r = store_eval(s, SCRIPT_STATE_BACKFILL, 2, keys, 3, args, NULL, err)))
            return failed(err);
        vb_err rc = r->type == REDIS_REPLY_INTEGER ? VB_OK : bad_reply(s, "state backfill", err);
        built = rc == VB_OK && r->integer < 0;
        if (rc == VB_OK)
            fmt_ll(first, r->integer);
        freeReplyObject(r);
        if (rc != VB_OK)
            return rc;
    }
    s->state_index = 1;
    return VB_OK;
}

/* The index a filtered read walks: the per-state index of `filter`, or the
 * index itself for VB_RUN_NONE. */
static void walked_index_key(vb_run_status filter, char key[STATE_INDEX_KEY_MAX])
{
    if (filter == VB_RUN_NONE)
        snprintf(key, STATE_INDEX_KEY_MAX, "%s", INDEX_KEY);
    else
        snprintf(key, STATE_INDEX_KEY_MAX, "%s%s", STATE_INDEX_PREFIX, vb_run_status_name(filter));
}

/* The lists' total_runs and in_state: the sizes of the index and of the
 * per-state indexes (built first if needed), in one round trip. */
static vb_err index_sizes(vb_store *s, vb_run_state_list *out, vb_error *err)
{
    vb_err rc = state_index_ready(s, err);
    if (rc != VB_OK)
        return rc;
    char keys[N_STATUS][STATE_INDEX_KEY_MAX];
    const char *argv[2 * N_STATUS];
    redisReply *replies[N_STATUS];
    for (int i = 0; i < N_STATUS; i++) {
        walked_index_key((vb_run_status)i, keys[i]);
        argv[2 * i] = "ZCARD";
        argv[2 * i + 1] = keys[i];
    }
    if ((rc = vb__redis_pipeline(s->r, N_STATUS, 2, argv, replies, err)) != VB_OK)
        return rc;
    for (int i = 0; i < N_STATUS; i++) {
        if (replies[i]->type != REDIS_REPLY_INTEGER)
            rc = bad_reply(s, "ZCARD", err);
        else if (i == VB_RUN_NONE)
            out->total_runs = replies[i]->integer > 0 ? (size_t)replies[i]->integer : 0;
        else
            out->in_state[i] = replies[i]->integer > 0 ? (size_t)replies[i]->integer : 0;
        freeReplyObject(replies[i]);
    }
    return rc;
}

vb_err vb_store_list(vb_store *s, size_t offset, size_t count, vb_run_status filter,
                     vb_run_state_list *out, vb_error *err)
{
    ERR_OR_LOCAL(err);
    memset(out, 0, sizeof *out);
    if (count == 0 || count > LIST_MAX)
        return vb_error_set(err, VB_ERR_INVALID, "list count must be 1-%d", LIST_MAX);
    if ((int)filter < 0 || (int)filter >= N_STATUS)
        return vb_error_set(err, VB_ERR_INVALID, "unknown state filter");
    if (offset > (size_t)LIST_SCAN_MAX * 100)
        return vb_error_set(err, VB_ERR_INVALID, "list offset too large");
    vb_err rc;
    redisReply *r = NULL;
    char walk[STATE_INDEX_KEY_MAX];
    walked_index_key(filter, walk);
    if ((rc = index_sizes(s, out, err)) != VB_OK)
        return rc;

    char off[24], cnt[24], scan[24];
    fmt_ll(off, (long long)offset);
    fmt_ll(cnt, (long long)count);
    fmt_ll(scan, LIST_SCAN_MAX);
    const char *keys[1] = {walk};
    const char *args[5] = {RUN_PREFIX, off, cnt, filter == VB_RUN_NONE ? "" :
                           vb_run_status_name(filter), scan};
    r = store_eval(s, SCRIPT_LIST, 1, keys, 5, args, NULL, err);
    if (!r)
        return failed(err);
    if (r->type != REDIS_REPLY_ARRAY || r->elements > count) {
        rc = bad_reply(s, "list", err);
        goto fail;
    }
    if ((rc = states_from_reply(s, r, 0, out, err)) != VB_OK)
        goto fail;
    freeReplyObject(r);
    return VB_OK;
fail:
    freeReplyObject(r);
    vb_run_state_list_free(out);
    return rc;
}

/* Parses "<score>:<id>" (score: decimal digits). */
static vb_err parse_cursor(const char *cursor, char score[24], char id[VB_STORE_ID_MAX + 1],
                           vb_error *err)
{
    const char *colon = strchr(cursor, ':');
    size_t n = colon ? (size_t)(colon - cursor) : 0;
    if (n == 0 || n > 18)
        return vb_error_set(err, VB_ERR_INVALID, "malformed cursor");
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)cursor[i]))
            return vb_error_set(err, VB_ERR_INVALID, "malformed cursor");
    memcpy(score, cursor, n);
    score[n] = '\0';
    if (norm_id(colon + 1, id, err) != VB_OK)
        return vb_error_set(err, VB_ERR_INVALID, "malformed cursor");
    return VB_OK;
}

vb_err vb_store_page(vb_store *s, const char *cursor, size_t count, vb_run_status filter,
                     const char *execution_id, size_t scan_max, vb_run_state_list *out,
                     char next[VB_STORE_CURSOR_MAX], vb_error *err)
{
    ERR_OR_LOCAL(err);
    memset(out, 0, sizeof *out);
    next[0] = '\0';
    if (count == 0 || count > LIST_MAX)
        return vb_error_set(err, VB_ERR_INVALID, "list count must be 1-%d", LIST_MAX);
    if ((int)filter < 0 || (int)filter >= N_STATUS)
        return vb_error_set(err, VB_ERR_INVALID, "unknown state filter");
    if (scan_max < count || scan_max > LIST_SCAN_MAX)
        return vb_error_set(err, VB_ERR_INVALID, "scan budget must be count-%d", LIST_SCAN_MAX);
    char score[24] = "+inf", id[VB_STORE_ID_MAX + 1] = "", cnt[24], scan[24];
    vb_err rc;
    if (cursor && *cursor && (rc = parse_cursor(cursor, score, id, err)) != VB_OK)
        return rc;
    if (execution_id && strlen(execution_id) > 64)
        return vb_error_set(err, VB_ERR_INVALID, "execution id longer than 64 characters");
    char walk[STATE_INDEX_KEY_MAX];
    walked_index_key(filter, walk);
    if ((rc = index_sizes(s, out, err)) != VB_OK)
        return rc;
    fmt_ll(cnt, (long long)count);
    fmt_ll(scan, (long long)scan_max);
    const char *keys[2] = {walk, INDEX_KEY};
    const char *args[7] = {RUN_PREFIX, score, id, cnt,
                           filter == VB_RUN_NONE ? "" : vb_run_status_name(filter), scan,
                           execution_id ? execution_id : ""};
    redisReply *r = store_eval(s, SCRIPT_PAGE, 2, keys, 7, args, NULL, err);
    if (!r)
        return failed(err);
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 || r->elements > count + 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING ||
        r->element[0]->len > 18 || r->element[1]->len > VB_STORE_ID_MAX) {
        rc = bad_reply(s, "page", err);
        goto fail;
    }
    if ((rc = states_from_reply(s, r, 2, out, err)) != VB_OK)
        goto fail;
    if (r->element[0]->len > 0)
        snprintf(next, VB_STORE_CURSOR_MAX, "%s:%s", r->element[0]->str, r->element[1]->str);
    freeReplyObject(r);
    return VB_OK;
fail:
    freeReplyObject(r);
    vb_run_state_list_free(out);
    return rc;
}

/* ---- producer ---- */

vb_err vb_store_claim_for_queue_ex(vb_store *s, const char *run_id, long max_attempts,
                                   long lease_ms, long long now_ms, const char *trace_id,
                                   const char *execution_id, vb_claim_decision *decision,
                                   long long *version, vb_error *err)
{
    ERR_OR_LOCAL(err);
    char id[VB_STORE_ID_MAX + 1], key[KEY_MAX];
    vb_err rc = norm_id(run_id, id, err);
    if (rc != VB_OK)
        return rc;
    if (max_attempts < 1 || max_attempts > 1000)
        return vb_error_set(err, VB_ERR_INVALID, "max_attempts must be 1-1000");
    if ((rc = check_ms(lease_ms, "lease", err)) != VB_OK)
        return rc;
    if (now_ms <= 0)
        return vb_error_set(err, VB_ERR_INVALID, "claim time must be positive");
    if ((trace_id && strlen(trace_id) > 256) || (execution_id && strlen(execution_id) > 256))
        return vb_error_set(err, VB_ERR_INVALID, "trace_id/execution_id longer than 256 bytes");
    make_key(key, sizeof key, RUN_PREFIX, id);
    char maxa[24], now[24], lease[24];
    fmt_ll(maxa, max_attempts);
    fmt_ll(now, now_ms);
    fmt_ll(lease, now_ms + lease_ms);
    const char *keys[2] = {key, INDEX_KEY};
    const char *args[6] = {id, maxa, now, lease, trace_id ? trace_id : "",
                           execution_id ? execution_id : ""};
    redisReply *r = store_eval(s, SCRIPT_CLAIM, 2, keys, 6, args, NULL, err);
    if (!r)
        return failed(err);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_INTEGER) {
        freeReplyObject(r);
        return bad_reply(s, "claim", err);
    }
    const char *d = r->element[0]->str;
    vb_claim_decision dec = strcmp(d, "publish") == 0       ? VB_CLAIM_PUBLISH
                            : strcmp(d, "in_progress") == 0 ? VB_CLAIM_SKIP_IN_PROGRESS
                            : strcmp(d, "done") == 0        ? VB_CLAIM_SKIP_DONE
                            : strcmp(d, "dead") == 0        ? VB_CLAIM_DEAD
                            : strcmp(d, "backoff") == 0     ? VB_CLAIM_SKIP_BACKOFF
                                                            : (vb_claim_decision)0;
    long long v = r->element[1]->integer;
    freeReplyObject(r);
    if (dec == 0)
        return bad_reply(s, "claim", err);
    *decision = dec;
    if (version)
        *version = v;
    return VB_OK;
}

vb_err vb_store_claim_for_queue(vb_store *s, const char *run_id, long max_attempts, long lease_ms,
                                long long now_ms, vb_claim_decision *decision, vb_error *err)
{
    return vb_store_claim_for_queue_ex(s, run_id, max_attempts, lease_ms, now_ms, NULL, NULL,
                                       decision, NULL, err);
}

/* ---- lock ---- */

vb_err vb_store_lock_acquire(vb_store *s, const char *run_id, const char *worker_id, long ttl_ms,
                             char token_out[VB_STORE_TOKEN_SIZE], vb_error *err)
{
    ERR_OR_LOCAL(err);
    char id[VB_STORE_ID_MAX + 1], key[KEY_MAX], tok[VB_STORE_TOKEN_SIZE];
    vb_err rc = norm_id(run_id, id, err);
    if (rc != VB_OK || (rc = check_worker(worker_id, err)) != VB_OK ||
        (rc = check_ms(ttl_ms, "lock TTL", err)) != VB_OK ||
        (rc = random_token(tok, err)) != VB_OK)
        return rc;
    make_key(key, sizeof key, LOCK_PREFIX, id);
    char value[VB_STORE_TOKEN_SIZE + WORKER_MAX + 2], ttl[24];
    snprintf(value, sizeof value, "%s %s", tok, worker_id);
    fmt_ll(ttl, ttl_ms);
    const char *argv[6] = {"SET", key, value, "NX", "PX", ttl};
    redisReply *r = store_cmd(s, 6, argv, NULL, err);
    if (!r)
        return failed(err);
    if (r->type == REDIS_REPLY_NIL)
        rc = vb_error_set(err, VB_ERR_CONFLICT, "run %s is locked by another worker", id);
    else if (r->type != REDIS_REPLY_STATUS)
        rc = bad_reply(s, "SET NX", err);
    freeReplyObject(r);
    if (rc == VB_OK)
        memcpy(token_out, tok, VB_STORE_TOKEN_SIZE);
    return rc;
}

vb_err vb_store_lock_renew(vb_store *s, const char *run_id, const char *token, long ttl_ms,
                           vb_error *err)
{
    ERR_OR_LOCAL(err);
    char id[VB_STORE_ID_MAX + 1], lkey[KEY_MAX], rkey[KEY_MAX];
    vb_err rc = norm_id(run_id, id, err);
    if (rc != VB_OK || (rc = check_token(token, err)) != VB_OK ||
        (rc = check_ms(ttl_ms, "lock TTL", err)) != VB_OK)
        return rc;
    make_key(lkey, sizeof lkey, LOCK_PREFIX, id);
    make_key(rkey, sizeof rkey, RUN_PREFIX, id);
    char ttl[24], lease[24];
    fmt_ll(ttl, ttl_ms);
    fmt_ll(lease, vb_store_now_ms() + ttl_ms);
    const char *keys[2] = {lkey, rkey};
    const char *args[3] = {token, ttl, lease};
    redisReply *r = store_eval(s, SCRIPT_RENEW, 2, keys, 3, args, NULL, err);
    if (!r)
        return failed(err);
    if (r->type != REDIS_REPLY_INTEGER)
        rc = bad_reply(s, "renew", err);
    else if (r->integer != 1)
        rc = vb_error_set(err, VB_ERR_CANCELLED, "lock of run %s was lost", id);
    freeReplyObject(r);
    return rc;
}

vb_err vb_store_lock_release(vb_store *s, const char *run_id, const char *token, vb_error *err)
{
    ERR_OR_LOCAL(err);
    char id[VB_STORE_ID_MAX + 1], lkey[KEY_MAX];
    vb_err rc = norm_id(run_id, id, err);
    if (rc != VB_OK || (rc = check_token(token, err)) != VB_OK)
        return rc;
    make_key(lkey, sizeof lkey, LOCK_PREFIX, id);
    const char *keys[1] = {lkey};
    const char *args[1] = {token};
    redisReply *r = store_eval(s, SCRIPT_RELEASE, 1, keys, 1, args, NULL, err);
    if (!r)
        return failed(err);
    if (r->type != REDIS_REPLY_INTEGER)
        rc = bad_reply(s, "release", err);
    else if (r->integer != 1)
        rc = vb_error_set(err, VB_ERR_CANCELLED, "lock of run %s was not held", id);
    freeReplyObject(r);
    return rc;
}

/* ---- worker transitions ---- */

/* Checks a {status, value} script answer; "lost" and "conflict" become errors. */
static vb_err pair_status(vb_store *s, const redisReply *r, const char *id, const char *what,
                          vb_error *err)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return bad_reply(s, what, err);
    const char *st = r->element[0]->str;
    if (strcmp(st, "ok") == 0)
        return VB_OK;
    if (strcmp(st, "lost") == 0)
        return vb_error_set(err, VB_ERR_CANCELLED, "%s of run %s refused: lock lost", what, id);
    if (strcmp(st, "stale") == 0) {
        const redisReply *v = r->element[1];
        return vb_error_set(err, VB_ERR_CONFLICT,
                            "%s of run %s refused: attempt already begun (%lld recorded): a "
                            "redelivered message", what, id,
                            v->type == REDIS_REPLY_INTEGER ? v->integer : 0LL);
    }
    if (strcmp(st, "conflict") == 0) {
        const redisReply *v = r->element[1];
        return vb_error_set(err, VB_ERR_CONFLICT, "%s of run %s refused: run is %s", what, id,
                            v->type == REDIS_REPLY_STRING ? v->str : "uploaded");
    }
    return bad_reply(s, what, err);
}

vb_err vb_store_begin_processing(vb_store *s, const char *run_id, const char *token,
                                 const char *worker_id, long lease_ms, long *attempt,
                                 vb_error *err)
{
    return vb_store_begin_attempt(s, run_id, token, worker_id, lease_ms, 0, attempt, err);
}

vb_err vb_store_begin_attempt(vb_store *s, const char *run_id, const char *token,
                              const char *worker_id, long lease_ms, long msg_attempt,
                              long *attempt, vb_error *err)
{
    ERR_OR_LOCAL(err);
    char id[VB_STORE_ID_MAX + 1], rkey[KEY_MAX], lkey[KEY_MAX];
    vb_err rc = norm_id(run_id, id, err);
    if (rc != VB_OK || (rc = check_token(token, err)) != VB_OK ||
        (rc = check_worker(worker_id, err)) != VB_OK ||
        (rc = check_ms(lease_ms, "lease", err)) != VB_OK)
        return rc;
    make_key(rkey, sizeof rkey, RUN_PREFIX, id);
    make_key(lkey, sizeof lkey, LOCK_PREFIX, id);
    long long now_ms = vb_store_now_ms();
    char now[24], lease[24], lms[24], matt[24];
    fmt_ll(now, now_ms);
    fmt_ll(lease, now_ms + lease_ms);
    fmt_ll(lms, lease_ms);
    fmt_ll(matt, msg_attempt > 0 ? msg_attempt : 0);
    const char *keys[3] = {rkey, lkey, INDEX_KEY};
    const char *args[7] = {id, token, worker_id, now, lease, lms, matt};
    redisReply *r = store_eval(s, SCRIPT_BEGIN, 3, keys, 7, args, NULL, err);
    if (!r)
        return failed(err);
    rc = pair_status(s, r, id, "begin processing", err);
    if (rc == VB_OK && attempt)
        *attempt = r->element[1]->type == REDIS_REPLY_INTEGER ? (long)r->element[1]->integer : 0;
    freeReplyObject(r);
    return rc;
}

vb_err vb_store_mark_upload_started(vb_store *s, const char *run_id, const char *token,
                                    long long *previous_ms, vb_error *err)
{
    ERR_OR_LOCAL(err);
    char id[VB_STORE_ID_MAX + 1], rkey[KEY_MAX], lkey[KEY_MAX];
    vb_err rc = norm_id(run_id, id, err);
    if (rc != VB_OK || (rc = check_token(token, err)) != VB_OK)
        return rc;
    make_key(rkey, sizeof rkey, RUN_PREFIX, id);
    make_key(lkey, sizeof lkey, LOCK_PREFIX, id);
    char now[24];
    fmt_ll(now, vb_store_now_ms());
    const char *keys[3] = {rkey, lkey, INDEX_KEY};
    const char *args[3] = {id, token, now};
    redisReply *r = store_eval(s, SCRIPT_MARK_UPLOAD, 3, keys, 3, args, NULL, err);
    if (!r)
        return failed(err);
    rc = pair_status(s, r, id, "upload start", err);
    if (rc == VB_OK && previous_ms)
        *previous_ms = r->element[1]->type == REDIS_REPLY_STRING ? parse_ll(r->element[1]->str)
                                                                 : 0;
    freeReplyObject(r);
    return rc;
}

vb_err vb_store_upload_gate(vb_store *s, const char *run_id, const char *token, long lease_ms,
                            long long upload_until_ms, vb_error *err)
{
    ERR_OR_LOCAL(err);
    char id[VB_STORE_ID_MAX + 1], rkey[KEY_MAX], lkey[KEY_MAX];
    vb_err rc = norm_id(run_id, id, err);
    if (rc != VB_OK || (rc = check_token(token, err)) != VB_OK ||
        (rc = check_ms(lease_ms, "lease", err)) != VB_OK)
        return rc;
    long long now_ms = vb_store_now_ms();
    if (upload_until_ms < now_ms)
        return vb_error_set(err, VB_ERR_INVALID, "upload deadline lies in the past");
    make_key(rkey, sizeof rkey, RUN_PREFIX, id);
    make_key(lkey, sizeof lkey, LOCK_PREFIX, id);
    char now[24], lms[24], until[24];
    fmt_ll(now, now_ms);
    fmt_ll(lms, lease_ms);
    fmt_ll(until, upload_until_ms);
    const char *keys[3] = {rkey, lkey, INDEX_KEY};
    const char *args[5] = {id, token, now, lms, until};
    redisReply *r = store_eval(s, SCRIPT_UPLOAD_GATE, 3, keys, 5, args, NULL, err);
    if (!r)
        return failed(err);
    return holder_reply(s, r, "upload gate", "upload", id, "run is already uploaded", err);
}

vb_err vb_store_set_state(vb_store *s, const char *run_id, const char *token, vb_run_status state,
                          const char *last_error, const char *batch_ids, vb_error *err)
{
    ERR_OR_LOCAL(err);
    char id[VB_STORE_ID_MAX + 1], rkey[KEY_MAX], lkey[KEY_MAX];
    vb_err rc = norm_id(run_id, id, err);
    if (rc != VB_OK || (rc = check_token(token, err)) != VB_OK)
        return rc;
    if (state != VB_RUN_UPLOADING && state != VB_RUN_UPLOADED && state != VB_RUN_FAILED &&
        state != VB_RUN_DEAD)
        return vb_error_set(err, VB_ERR_INVALID, "a worker cannot set state %s",
                            vb_run_status_name(state));
    if (batch_ids && strlen(batch_ids) > VB_STORE_BATCH_IDS_MAX)
        return vb_error_set(err, VB_ERR_INVALID, "batch_ids longer than %d bytes",
                            VB_STORE_BATCH_IDS_MAX);
    make_key(rkey, sizeof rkey, RUN_PREFIX, id);
    make_key(lkey, sizeof lkey, LOCK_PREFIX, id);
    char now[24];
    fmt_ll(now, vb_store_now_ms());
    const char *keys[3] = {rkey, lkey, INDEX_KEY};
    const char *args[8] = {id,   token, vb_run_status_name(state), now, last_error ? "1" : "0",
                           last_error ? last_error : "", batch_ids ? "1" : "0",
                           batch_ids ? batch_ids : ""};
    size_t lens[8];
    for (int i = 0; i < 8; i++)
        lens[i] = strlen(args[i]);
    lens[5] = vb__utf8_cut(args[5], lens[5], VB_STORE_LAST_ERROR_MAX);
    redisReply *r = store_eval(s, SCRIPT_SET_STATE, 3, keys, 8, args, lens, err);
    if (!r)
        return failed(err);
    char what[32];
    snprintf(what, sizeof what, "state %s", vb_run_status_name(state));
    return holder_reply(s, r, "set state", what, id, "run is already uploaded", err);
}

/* ---- operator ---- */

vb_err vb_store_retry(vb_store *s, const char *run_id, vb_error *err)
{
    ERR_OR_LOCAL(err);
    char id[VB_STORE_ID_MAX + 1], rkey[KEY_MAX];
    vb_err rc = norm_id(run_id, id, err);
    if (rc != VB_OK)
        return rc;
    make_key(rkey, sizeof rkey, RUN_PREFIX, id);
    char now[24];
    fmt_ll(now, vb_store_now_ms());
    const char *keys[2] = {rkey, INDEX_KEY};
    const char *args[2] = {id, now};
    redisReply *r = store_eval(s, SCRIPT_RETRY, 2, keys, 2, args, NULL, err);
    if (!r)
        return failed(err);
    if (r->type != REDIS_REPLY_STRING)
        rc = bad_reply(s, "retry", err);
    else if (strcmp(r->str, "notfound") == 0)
        rc = vb_error_set(err, VB_ERR_NOT_FOUND, "run %s has no recorded state", id);
    else if (strcmp(r->str, "ok") != 0)
        rc = vb_error_set(err, VB_ERR_CONFLICT,
                          "run %s is %.20s: only dead or failed runs can be retried", id, r->str);
    freeReplyObject(r);
    return rc;
}

/* ---- worker: where a run came from, and handing a run back ---- */

void vb_run_origin_free(vb_run_origin *o)
{
    if (!o)
        return;
    free(o->cred_source);
    free(o->job_id);
    free(o->organization_id);
    free(o->run_code);
    memset(o, 0, sizeof *o);
}

vb_err vb_store_set_origin(vb_store *s, const char *run_id, const char *token,
                           const char *cred_source, const char *job_id,
                           const char *organization_id, const char *run_code, vb_error *err)
{
    ERR_OR_LOCAL(err);
    char id[VB_STORE_ID_MAX + 1], rkey[KEY_MAX], lkey[KEY_MAX];
    vb_err rc = norm_id(run_id, id, err);
    if (rc != VB_OK || (rc = check_token(token, err)) != VB_OK)
        return rc;
    const char *args[5] = {token, cred_source ? cred_source : "config", job_id ? job_id : "",
                           organization_id ? organization_id : "", run_code ? run_code : ""};
    for (int i = 1; i < 5; i++) {
        if (strlen(args[i]) > 256)
            return vb_error_set(err, VB_ERR_INVALID, "origin field longer than 256 bytes");
    }
    make_key(rkey, sizeof rkey, RUN_PREFIX, id);
    make_key(lkey, sizeof lkey, LOCK_PREFIX, id);
    const char *keys[2] = {rkey, lkey};
    redisReply *r = store_eval(s, SCRIPT_SET_ORIGIN, 2, keys, 5, args, NULL, err);
    if (!r)
        return failed(err);
    return holder_reply(s, r, "set origin", "origin", id, NULL, err);
}

vb_err vb_store_get_origin(vb_store *s, const char *run_id, vb_run_origin *out, vb_error *err)
{
    ERR_OR_LOCAL(err);
    memset(out, 0, sizeof *out);
    char id[VB_STORE_ID_MAX + 1], rkey[KEY_MAX];
    vb_err rc = norm_id(run_id, id, err);
    if (rc != VB_OK)
        return rc;
    make_key(rkey, sizeof rkey, RUN_PREFIX, id);
    const char *argv[6] = {"HMGET", rkey, "cred_source", "job_id", "organization_id",
                           "run_code"};
    redisReply *r = store_cmd(s, 6, argv, NULL, err);
    if (!r)
        return failed(err);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 4) {
        freeReplyObject(r);
        return bad_reply(s, "HMGET", err);
    }
    char **slots[4] = {&out->cred_source, &out->job_id, &out->organization_id, &out->run_code};
    for (size_t i = 0; i < 4; i++) {
        const redisReply *e = r->element[i];
        const char *v = e->type == REDIS_REPLY_STRING ? e->str : "";
        size_t n = e->type == REDIS_REPLY_STRING ? e->len : 0;
        if (i == 0 && n == 0) {
            v = "config";
            n = 6;
        }
        if (!(*slots[i] = vb__dup_bytes(v, n))) {
            freeReplyObject(r);
            vb_run_origin_free(out);
            return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        }
    }
    freeReplyObject(r);
    return VB_OK;
}

vb_err vb_store_hand_back(vb_store *s, const char *run_id, const char *token, const char *reason,
                          vb_error *err)
{
    ERR_OR_LOCAL(err);
    char id[VB_STORE_ID_MAX + 1], rkey[KEY_MAX], lkey[KEY_MAX];
    vb_err rc = norm_id(run_id, id, err);
    if (rc != VB_OK || (rc = check_token(token, err)) != VB_OK)
        return rc;
    make_key(rkey, sizeof rkey, RUN_PREFIX, id);
    make_key(lkey, sizeof lkey, LOCK_PREFIX, id);
    char now[24];
    fmt_ll(now, vb_store_now_ms());
    const char *why = reason ? reason : "";
    const char *keys[3] = {rkey, lkey, INDEX_KEY};
    const char *args[4] = {id, token, now, why};
    size_t lens[4] = {strlen(id), strlen(token), strlen(now),
                      vb__utf8_cut(why, strlen(why), VB_STORE_LAST_ERROR_MAX)};
    redisReply *r = store_eval(s, SCRIPT_HAND_BACK, 3, keys, 4, args, lens, err);
    if (!r)
        return failed(err);
    return holder_reply(s, r, "hand back", "hand back", id, "run is not being processed", err);
}
