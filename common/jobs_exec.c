/*
 * jobs_exec.c — executions from tick to completion (see jobs_exec.h for the
 * Redis fields and the status rules).
 *
 * Every operation is one Lua script run over the vb_jobs handle's connection
 * (jobs_internal.h: EVALSHA through the Redis layer's script cache), so
 * claims, records and counters stay consistent whatever other producers and
 * workers do meanwhile. The
 * completion rule lives in one Lua function (COMPLETE) shared by the scripts
 * that can finish an execution: fire_done, add_published and run_done.
 *
 * Threading: stateless; thread-safety comes from the vb_jobs handle.
 */
#include "visionbatch/jobs_exec.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs_internal.h"
#include "notify_internal.h"
#include "utf8.h"
#include "util.h"
#include "visionbatch/crypto.h"
#include "visionbatch/run.h"

#define PREFIX "visionbatch:"
#define EXEC_PREFIX PREFIX "exec:"
#define RUNNING_SET PREFIX "execs:running"
#define RUN_ID_MAX VB_RUN_MAX_ID

/* Shared Lua: how executions settle. verdict(): the final status once
 * every published run has finished (nil while some are out); summary():
 * the output with the runs' tally; settle(): writes a final status (and the
 * fields in `extra`, a flat list) and takes the execution off the running
 * set and its job's running index (jid may be nil: read from the hash);
 * complete(): settles KEYS-independent execution `k` (id `id`) when its
 * firing is done and all its published runs have finished. Returns the
 * status after the call. `now` (unix ms) is passed as the string it came
 * as: Lua would format a number with "%.14g" on every write. */
#define COMPLETE                                                                                   \
    VB__NOTIFY_LUA                                                                                 \
    "local function num(v) return tonumber(v or '0') or 0 end "                                    \
    "local function verdict(p, s, f) "                                                             \
    "  if s + f < p then return nil end "                                                          \
    "  if p > 0 and f > 0 then if s == 0 then return 'failed' end return 'partial' end "          \
    "  return 'success' "                                                                          \
    "end "                                                                                         \
    "local function summary(out, p, s, f) "                                                        \
    "  if p == 0 then return out end "                                                             \
    "  local sum = s .. ' succeeded, ' .. f .. ' failed' "                                         \
    "  if out == '' then out = sum else out = out .. '; ' .. sum end "                             \
    "  return string.sub(out, 1, 4096) "                                                           \
    "end "                                                                                         \
    "local function settle(k, z, id, now, st, out, jid, extra) "                                   \
    "  jid = jid or redis.call('HGET', k, 'job_id') "                                              \
    "  redis.call('HSET', k, 'status', st, 'completed_at', now, 'output', out, "                   \
    "    unpack(extra or {})) "                                                                    \
    "  redis.call('ZREM', z, id) "                                                                 \
    "  if jid then redis.call('ZREM', 'visionbatch:job:' .. jid .. ':running', id) end "          \
    "  final(k, id, st, now, jid) "                                                                \
    "end "                                                                                         \
    "local function complete(k, z, id, now) "                                                      \
    "  local h = redis.call('HMGET', k, 'status', 'fired', 'runs_published', 'runs_succeeded', "  \
    "    'runs_failed', 'output', 'job_id') "                                                      \
    "  if h[1] ~= 'running' or h[2] ~= '1' then return h[1] or '' end "                           \
    "  local p, s, f = num(h[3]), num(h[4]), num(h[5]) "                                           \
    "  local st = verdict(p, s, f) "                                                               \
    "  if not st then return 'running' end "                                                       \
    "  settle(k, z, id, now, st, summary(h[6] or '', p, s, f), h[7] or false) "                    \
    "  return st "                                                                                 \
    "end "

/* Shared Lua: is one of the job's executions (list `list`, the job's
 * ...:execs key) still running and younger than the timeout? Returns its id
 * or false. The job's running index (...:running, a sorted set: the
 * job's executions recorded `running`, score started_at; settle() takes an
 * execution off it) answers without walking the whole execution list, and
 * is usually empty: members too old to block are dropped, the others are
 * checked one by one and dropped once they no longer run. `idx` is the job
 * hash's running_idx as the caller read it: a job without it (executions
 * recorded before the index existed) is indexed from its list once. The
 * index holds at most the executions cap (trim removes what it removes
 * from the list). */
#define BUSY                                                                                       \
    "local function ridx(list) return string.sub(list, 1, -6) .. 'running' end "                  \
    "local function busy(list, pre, now, timeout, idx) "                                           \
    "  local rk, job = ridx(list), string.sub(list, 1, -7) "                                       \
    "  if idx ~= '1' then "                                                                        \
    "    for _, e in ipairs(redis.call('LRANGE', list, 0, -1)) do "                                \
    "      local h = redis.call('HMGET', pre .. e, 'status', 'started_at') "                       \
    "      if h[1] == 'running' then "                                                             \
    "        redis.call('ZADD', rk, tonumber(h[2] or '0') or 0, e) end "                           \
    "    end "                                                                                     \
    "    redis.call('HSET', job, 'running_idx', '1') "                                             \
    "  end "                                                                                       \
    "  local m = redis.call('ZRANGE', rk, 0, -1, 'WITHSCORES') "                                   \
    "  for i = 1, #m, 2 do "                                                                       \
    "    local e = m[i] "                                                                          \
    "    if tonumber(m[i + 1]) >= now - timeout and "                                              \
    "       redis.call('HGET', pre .. e, 'status') == 'running' then return e end "               \
    "    redis.call('ZREM', rk, e) "                                                               \
    "  end "                                                                                       \
    "  return false "                                                                              \
    "end "

/* Shared Lua: records a new execution and pushes it on the job's list (and
 * a running one on the running set and the job's running index); returns
 * the list's length. Counts that start at zero and empty texts are left
 * out of the hash (readers take a missing field as 0 or ""); `now` and
 * `sched` are strings (unix ms), written as they are. trim() keeps the
 * newest `cap` executions (`len`: the list's length when known). */
#define RECORD                                                                                     \
    "local function rec(list, zrun, pre, job_id, producer, id, status, now, sched, reason, out) " \
    "  if status == 'running' then "                                                               \
    "    redis.call('HSET', pre .. id, 'execution_id', id, 'job_id', job_id, 'status', status, "  \
    "      'started_at', now, 'scheduled_for', sched, 'producer', producer) "                      \
    "  else "                                                                                      \
    "    redis.call('HSET', pre .. id, 'execution_id', id, 'job_id', job_id, 'status', status, "  \
    "      'started_at', now, 'completed_at', now, 'scheduled_for', sched, 'output', out, "        \
    "      'skip_reason', reason, 'producer', producer) "                                          \
    "  end "                                                                                       \
    "  local len = redis.call('LPUSH', list, id) "                                                 \
    "  if status == 'running' then "                                                               \
    "    redis.call('ZADD', zrun, now, id) redis.call('ZADD', ridx(list), now, id) end "           \
    "  return len "                                                                                \
    "end "                                                                                         \
    "local function trim(list, zrun, pre, cap, len) "                                              \
    "  len = len or redis.call('LLEN', list) "                                                     \
    "  if len <= cap then return end "                                                             \
    "  local rk = ridx(list) "                                                                     \
    "  for _, e in ipairs(redis.call('RPOP', list, len - cap)) do "                                \
    "    if redis.call('HGET', pre .. e, 'status') == 'running' then "                             \
    "      redis.call('ZREM', zrun, e) redis.call('ZREM', rk, e) end "                             \
    "    redis.call('DEL', pre .. e) "                                                             \
    "  end "                                                                                       \
    "end "

/* KEYS: running set, then per tick the job hash and its execs list. ARGV:
 * 1 now ms, 2 cap, 3 exec prefix, 4 timeout ms, 5 producer id, then per
 * tick TICK_ARGS values: job id, expected last, new last, fire tick, missed
 * count, missed last, missed output, id paused, id missed, id fire, jitter
 * ms. Each tick is its own compare-and-set; returns per tick {code, fired,
 * overlap, missed, paused, last_tick} (last_tick: the job's value after the
 * call, the current one on a conflict). */
#define TICK_ARGS 11
static const char *const script_ticks =
    BUSY RECORD
    "local zrun, now, nows, cap, pre = KEYS[1], tonumber(ARGV[1]), ARGV[1], tonumber(ARGV[2]), "
    "  ARGV[3] "
    "local function ms(x) return string.format('%d', x) end "
    "local timeout, producer = tonumber(ARGV[4]), ARGV[5] "
    "local function tick(job, list, a, o) "
    "  local h = redis.call('HMGET', job, 'last_tick', 'enabled', 'paused_ticks', "
    "    'paused_last', 'overlap', 'created_at', 'running_idx') "
    "  if not (h[1] or h[2] or h[3] or h[4] or h[5] or h[6]) then "
    "    return {3, 0, 0, 0, 0, 0} end "
    "  local last = tonumber(h[1] or '0') or 0 "
    "  if last ~= tonumber(a[o + 2]) then return {0, 0, 0, 0, 0, last} end "
    "  local nl = tonumber(a[o + 3]) "
    "  redis.call('HSET', job, 'last_tick', a[o + 3]) "
    "  local fire, missed, jit = tonumber(a[o + 4]), tonumber(a[o + 5]), tonumber(a[o + 11]) "
    "  if h[2] == '0' then "
    "    local n = missed if fire > 0 then n = n + 1 end "
    "    if n > 0 then "
    "      redis.call('HINCRBY', job, 'paused_ticks', n) "
    "      local pl = a[o + 6] if fire > 0 then pl = a[o + 4] end "
    "      redis.call('HSET', job, 'paused_last', pl) "
    "    end "
    "    return {2, 0, 0, 0, 0, nl} "
    "  end "
    "  local res, len = {1, 0, 0, 0, 0, nl}, nil "
    "  local pn = tonumber(h[3] or '0') or 0 "
    "  if pn > 0 then "
    "    local pl = tonumber(h[4] or '0') or 0 "
    "    len = rec(list, zrun, pre, a[o + 1], producer, a[o + 8], 'skipped', nows, "
    "      ms(pl * 1000 + jit), 'paused', pn .. ' scheduled run(s) skipped while the job was deactivated') "
    "    redis.call('HDEL', job, 'paused_ticks', 'paused_last') "
    "    res[5] = pn "
    "  end "
    "  if missed > 0 then "
    "    len = rec(list, zrun, pre, a[o + 1], producer, a[o + 9], 'skipped', nows, "
    "      ms(tonumber(a[o + 6]) * 1000 + jit), 'missed', a[o + 7]) "
    "    res[4] = 1 "
    "  end "
    "  if fire > 0 then "
    "    local b = false "
    "    if h[5] ~= 'allow' then b = busy(list, pre, now, timeout, h[7]) end "
    "    if b then "
    "      len = rec(list, zrun, pre, a[o + 1], producer, a[o + 10], 'skipped', nows, "
    "        ms(fire * 1000 + jit), 'overlap', 'previous execution ' .. b .. ' is still running') "
    "      res[3] = 1 "
    "    else "
    "      len = rec(list, zrun, pre, a[o + 1], producer, a[o + 10], 'running', nows, "
    "        ms(fire * 1000 + jit), '', '') "
    "      res[2] = 1 "
    "    end "
    "  end "
    "  trim(list, zrun, pre, cap, len) "
    "  return res "
    "end "
    "local out = {} "
    "for i = 0, (#KEYS - 1) / 2 - 1 do "
    "  for _, v in ipairs(tick(KEYS[2 + 2 * i], KEYS[3 + 2 * i], ARGV, 5 + 11 * i)) do "
    "    out[#out + 1] = v end "
    "end "
    "return out";

/* KEYS: job hash, execs list, running set. ARGV: 1 id, 2 now, 3 cap, 4 prefix,
 * 5 timeout ms, 6 job id, 7 producer. Returns 1 recorded, 0 no job, 2 busy. */
static const char *const script_manual =
    BUSY RECORD
    "local h = redis.call('HMGET', KEYS[1], 'overlap', 'running_idx', 'created_at', 'name') "
    "if not (h[1] or h[2] or h[3] or h[4]) and redis.call('EXISTS', KEYS[1]) == 0 then "
    "  return 0 end "
    "local now = tonumber(ARGV[2]) "
    "if h[1] ~= 'allow' and busy(KEYS[2], ARGV[4], now, tonumber(ARGV[5]), h[2]) then "
    "  return 2 end "
    "local len = rec(KEYS[2], KEYS[3], ARGV[4], ARGV[6], ARGV[7], ARGV[1], 'running', ARGV[2], "
    "  '0', '', '') "
    "trim(KEYS[2], KEYS[3], ARGV[4], tonumber(ARGV[3]), len) "
    "return 1";

/* KEYS: exec hash, running set. ARGV: 1 id, 2 run id. Returns 0 gone, 1 ok. */
static const char *const script_add_published =
    COMPLETE
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end "
    "local f = 'run:' .. ARGV[2] "
    "local v = redis.call('HGET', KEYS[1], f) "
    "if not v then "
    "  redis.call('HSET', KEYS[1], f, 'p') redis.call('HINCRBY', KEYS[1], 'runs_published', 1) "
    "elseif v == 'ok!' or v == 'failed!' then "
    "  local o = string.sub(v, 1, -2) "
    "  redis.call('HSET', KEYS[1], f, o) redis.call('HINCRBY', KEYS[1], 'runs_published', 1) "
    "  if o == 'ok' then redis.call('HINCRBY', KEYS[1], 'runs_succeeded', 1) "
    "  else redis.call('HINCRBY', KEYS[1], 'runs_failed', 1) end "
    "  complete(KEYS[1], KEYS[2], ARGV[1], ARGV[3]) "
    "end "
    "return 1";

/* KEYS: running set, then one execution hash per firing. ARGV per firing
 * (DONE_ARGS values): id, found, in progress, other org, output, failed,
 * now. One read and one write per firing: the counts and the final status
 * (when it settles now) go into the same HSET. Returns per firing its
 * status after the call ("" when gone). */
#define DONE_ARGS 7
static const char *const script_fire_done =
    COMPLETE
    "local function done(k, z, a, o) "
    "  local h = redis.call('HMGET', k, 'status', 'runs_published', 'runs_succeeded', "
    "    'runs_failed', 'job_id') "
    "  if not (h[1] or h[5]) and redis.call('EXISTS', k) == 0 then return '' end "
    "  local out = a[o + 5] "
    "  local f = {'fired', '1', 'runs_found', a[o + 2], 'runs_skipped_in_progress', a[o + 3], "
    "    'runs_skipped_other_org', a[o + 4]} "
    "  local p, s, n = num(h[2]), num(h[3]), num(h[4]) "
    "  local st = nil "
    "  if h[1] == 'running' then "
    "    if a[o + 6] == '1' and p == 0 then st = 'error' "
    "    else st = verdict(p, s, n) if st then out = summary(out, p, s, n) end end "
    "  end "
    "  if st then "
    "    settle(k, z, a[o + 1], a[o + 7], st, out, h[5] or false, f) "
    "    return st "
    "  end "
    "  f[#f + 1] = 'output' f[#f + 1] = out "
    "  redis.call('HSET', k, unpack(f)) "
    "  return h[1] or '' "
    "end "
    "local out = {} "
    "for i = 2, #KEYS do out[i - 1] = done(KEYS[i], KEYS[1], ARGV, 7 * (i - 2)) end "
    "return out";

/* KEYS: exec hash, running set. ARGV: 1 id, 2 run id, 3 outcome (ok|failed),
 * 4 batch ids, 5 now, 6 batch ids cap. Returns {code, status}: code 0 gone,
 * 1 counted, 2 duplicate. */
static const char *const script_run_done =
    COMPLETE
    "if redis.call('EXISTS', KEYS[1]) == 0 then return {0, ''} end "
    "local f = 'run:' .. ARGV[2] "
    "local v = redis.call('HGET', KEYS[1], f) "
    "if v and v ~= 'p' then return {2, ''} end "
    "if v == 'p' then "
    "  redis.call('HSET', KEYS[1], f, ARGV[3]) "
    "  if ARGV[3] == 'ok' then redis.call('HINCRBY', KEYS[1], 'runs_succeeded', 1) "
    "  else redis.call('HINCRBY', KEYS[1], 'runs_failed', 1) end "
    "else "
    "  redis.call('HSET', KEYS[1], f, ARGV[3] .. '!') "
    "end "
    "if ARGV[3] == 'failed' then run_dead(KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[5])) end "
    "if ARGV[4] ~= '' then "
    "  local b = redis.call('HGET', KEYS[1], 'batch_id') or '' "
    "  if b == '' then b = ARGV[4] else b = b .. ',' .. ARGV[4] end "
    "  if string.len(b) <= tonumber(ARGV[6]) then redis.call('HSET', KEYS[1], 'batch_id', b) end "
    "end "
    "return {1, complete(KEYS[1], KEYS[2], ARGV[1], ARGV[5])}";

/* KEYS: running set. ARGV: 1 now, 2 timeout ms, 3 fire timeout ms, 4 prefix.
 * Returns how many executions changed. */
static const char *const script_expire =
    COMPLETE
    "local now, to, fto = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]) "
    "local lim = math.min(to, fto) "
    "local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - lim, 'LIMIT', 0, 1000) "
    "local n = 0 "
    "for _, id in ipairs(ids) do "
    "  local k = ARGV[4] .. id "
    "  local h = redis.call('HMGET', k, 'status', 'started_at', 'fired', 'output', 'job_id') "
    "  if h[1] ~= 'running' then redis.call('ZREM', KEYS[1], id) "
    "  else "
    "    local age = now - (tonumber(h[2] or '0') or 0) "
    "    local out = h[4] or '' if out ~= '' then out = out .. '; ' end "
    "    if h[3] ~= '1' and age >= fto then "
    "      settle(k, KEYS[1], id, ARGV[1], 'error', string.sub(out .. "
    "        'the producer stopped before it finished publishing runs', 1, 4096), h[5]) "
    "      n = n + 1 "
    "    elseif age >= to then "
    "      settle(k, KEYS[1], id, ARGV[1], 'timeout', string.sub(out .. "
    "        'runs still unfinished after ' .. math.floor(to / 1000) .. ' s', 1, 4096), h[5]) "
    "      n = n + 1 "
    "    end "
    "  end "
    "end "
    "return n";

/* ------------------------------------------------------------------ */

#define MAX_ARGS 24

typedef struct args {
    const char *v[MAX_ARGS];
    char nums[MAX_ARGS][24];
    int n;
} args;

static void add(args *a, const char *s)
{
    if (a->n < MAX_ARGS)
        a->v[a->n++] = s ? s : "";
}

static void add_ll(args *a, long long v)
{
    if (a->n < MAX_ARGS) {
        snprintf(a->nums[a->n], sizeof a->nums[a->n], "%lld", v);
        add(a, a->nums[a->n]);
    }
}

static long long reply_ll(const redisReply *r)
{
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type == REDIS_REPLY_STRING && r->str) {
        char *end = NULL;
        long long v = strtoll(r->str, &end, 10);
        return end != r->str ? v : 0;
    }
    return 0;
}

/* Run ids follow the one run id rule (run.h, vb_run_id_valid), kept upper
 * case as in store.h. */
static int run_id_norm(const char *in, char out[RUN_ID_MAX + 1])
{
    if (!vb_run_id_valid(in) || strlen(in) > RUN_ID_MAX)
        return 0;
    size_t n = 0;
    for (; in[n]; n++)
        out[n] = (char)toupper((unsigned char)in[n]);
    out[n] = '\0';
    return 1;
}

/* Runs `script` with a = {numkeys, keys…, args…}. */
static redisReply *run(vb_jobs *j, const char *script, args *a, vb_error *err)
{
    return vb__jobs_eval(j, script, a->n, a->v, err);
}

static long timeout_ms(long s, long def)
{
    return (s > 0 ? s : def) * 1000;
}

vb_err vb_jobs_exec_last_tick(vb_jobs *j, const char *job_id, long long *last, vb_error *err)
{
    char key[80];
    *last = 0;
    if (!vb_jobs_id_valid(job_id))
        return vb_error_set(err, VB_ERR_INVALID, "job id is not a UUID");
    snprintf(key, sizeof key, PREFIX "job:%s", job_id);
    const char *argv[3] = {"HGET", key, "last_tick"};
    redisReply *r = vb__jobs_command(j, 3, argv, NULL, err);
    if (!r)
        return VB_ERR_REDIS;
    *last = reply_ll(r);
    freeReplyObject(r);
    return VB_OK;
}

/* last_tick of every job key in KEYS, 0 when absent. */
static const char *const script_last_ticks =
    "local out = {} "
    "for i, k in ipairs(KEYS) do "
    "  out[i] = tonumber(redis.call('HGET', k, 'last_tick') or '0') or 0 "
    "end "
    "return out";

vb_err vb_jobs_exec_last_ticks(vb_jobs *j, const char *const *job_ids, size_t n,
                               long long *lasts, vb_error *err)
{
    if (n == 0)
        return VB_OK;
    if (n > VB_JOBS_EXEC_TICKS_BATCH)
        return vb_error_set(err, VB_ERR_INVALID, "too many jobs in one batch");
    redisReply *r = vb__jobs_eval_per_job(j, script_last_ticks, job_ids, n, "", NULL, err);
    if (!r)
        return err && err->code != VB_OK ? err->code : VB_ERR_REDIS;
    for (size_t i = 0; i < n; i++)
        lasts[i] = reply_ll(r->element[i]);
    freeReplyObject(r);
    return VB_OK;
}

/* The strings of one tick's keys and arguments. */
typedef struct tick_strs {
    char jk[80], list[96], ids[3][VB_UUID_SIZE], nums[6][24];
} tick_strs;

/* Runs one script over a batch: argv = {numkeys, keys, shared args, per-item
 * args} assembled by the callers below. Checks for an array of `want`
 * elements. */
static redisReply *run_batch(vb_jobs *j, const char *script, int argc, const char **argv,
                             size_t want, vb_error *err)
{
    redisReply *r = vb__jobs_eval(j, script, argc, argv, err);
    if (r && (r->type != REDIS_REPLY_ARRAY || r->elements != want)) {
        freeReplyObject(r);
        vb_error_set(err, VB_ERR_REDIS, "storage unavailable: unexpected script reply");
        return NULL;
    }
    return r;
}

vb_err vb_jobs_exec_ticks(vb_jobs *j, const vb_exec_tick *t, size_t n, vb_exec_tick_result *res,
                          vb_error *err)
{
    vb_err rc = VB_OK;
    if (n == 0)
        return VB_OK;
    if (!t || n > VB_JOBS_EXEC_CLAIM_BATCH_MAX)
        return vb_error_set(err, VB_ERR_INVALID, "too many ticks in one batch");
    memset(res, 0, n * sizeof *res);
    for (size_t i = 0; i < n; i++)
        if (!vb_jobs_id_valid(t[i].job_id))
            return vb_error_set(err, VB_ERR_INVALID, "job id is not a UUID");
    /* numkeys, running set, 2 keys per tick, 5 shared args, TICK_ARGS per tick */
    size_t argc = 7 + n * (2 + TICK_ARGS);
    tick_strs *ts = calloc(n, sizeof *ts);
    const char **argv = calloc(argc, sizeof *argv);
    char numkeys[24], now[24], cap[24], tmo[24];
    redisReply *r = NULL;
    if (!ts || !argv) {
        rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        goto done;
    }
    snprintf(numkeys, sizeof numkeys, "%zu", 1 + 2 * n);
    snprintf(now, sizeof now, "%lld", t[0].now_ms);
    snprintf(cap, sizeof cap, "%zu", vb__jobs_exec_cap(j));
    snprintf(tmo, sizeof tmo, "%ld", timeout_ms(t[0].timeout_s, VB_EXEC_TIMEOUT_DEFAULT_S));
    size_t k = 0, a = 2 + 2 * n; /* keys from argv[1], args after them */
    argv[k++] = numkeys;
    argv[k++] = RUNNING_SET;
    argv[a++] = now;
    argv[a++] = cap;
    argv[a++] = EXEC_PREFIX;
    argv[a++] = tmo;
    argv[a++] = t[0].producer_id ? t[0].producer_id : "";
    for (size_t i = 0; i < n; i++) {
        tick_strs *s = &ts[i];
        for (int u = 0; u < 3; u++)
            if ((rc = vb_crypto_uuid4(s->ids[u], err)) != VB_OK)
                goto done;
        snprintf(s->jk, sizeof s->jk, PREFIX "job:%s", t[i].job_id);
        snprintf(s->list, sizeof s->list, "%s:execs", s->jk);
        argv[k++] = s->jk;
        argv[k++] = s->list;
        const long long v[6] = {t[i].expected_last, t[i].new_last,  t[i].fire_tick,
                                t[i].missed,        t[i].missed_last, t[i].jitter_ms};
        for (int u = 0; u < 6; u++)
            snprintf(s->nums[u], sizeof s->nums[u], "%lld", v[u]);
        argv[a++] = t[i].job_id;
        for (int u = 0; u < 5; u++)
            argv[a++] = s->nums[u];
        argv[a++] = t[i].missed_output ? t[i].missed_output : "";
        argv[a++] = s->ids[0];
        argv[a++] = s->ids[1];
        argv[a++] = s->ids[2];
        argv[a++] = s->nums[5];
    }
    if (!(r = run_batch(j, script_ticks, (int)argc, argv, 6 * n, err))) {
        rc = VB_ERR_REDIS;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        redisReply **e = r->element + 6 * i;
        long long code = reply_ll(e[0]);
        res[i].code = code == 1   ? VB_EXEC_TICK_DONE
                      : code == 2 ? VB_EXEC_TICK_PAUSED
                      : code == 3 ? VB_EXEC_TICK_GONE
                                  : VB_EXEC_TICK_CONFLICT;
        res[i].fired = reply_ll(e[1]) == 1;
        res[i].overlap = reply_ll(e[2]) == 1;
        res[i].missed_recorded = reply_ll(e[3]) == 1;
        res[i].paused_reported = (long)reply_ll(e[4]);
        res[i].last_tick = reply_ll(e[5]);
        if (res[i].fired || res[i].overlap)
            memcpy(res[i].execution_id, ts[i].ids[2], VB_UUID_SIZE);
    }
done:
    if (r)
        freeReplyObject(r);
    free(argv);
    free(ts);
    return rc;
}

vb_err vb_jobs_exec_tick(vb_jobs *j, const vb_exec_tick *t, vb_exec_tick_result *res,
                         vb_error *err)
{
    memset(res, 0, sizeof *res);
    return vb_jobs_exec_ticks(j, t, 1, res, err);
}

vb_err vb_jobs_exec_start_manual(vb_jobs *j, const char *job_id, const char *producer_id,
                                 long long now, long timeout_s,
                                 char execution_id[VB_UUID_SIZE], vb_error *err)
{
    char jk[80], list[96], id[VB_UUID_SIZE];
    vb_err rc;
    execution_id[0] = '\0';
    if (!vb_jobs_id_valid(job_id))
        return vb_error_set(err, VB_ERR_NOT_FOUND, "cron job not found");
    if ((rc = vb_crypto_uuid4(id, err)) != VB_OK)
        return rc;
    snprintf(jk, sizeof jk, PREFIX "job:%s", job_id);
    snprintf(list, sizeof list, "%s:execs", jk);
    args a = {0};
    add(&a, "3");
    add(&a, jk);
    add(&a, list);
    add(&a, RUNNING_SET);
    add(&a, id);
    add_ll(&a, now);
    add_ll(&a, (long long)vb__jobs_exec_cap(j));
    add(&a, EXEC_PREFIX);
    add_ll(&a, timeout_ms(timeout_s, VB_EXEC_TIMEOUT_DEFAULT_S));
    add(&a, job_id);
    add(&a, producer_id);
    redisReply *r = run(j, script_manual, &a, err);
    if (!r)
        return VB_ERR_REDIS;
    long long code = reply_ll(r);
    freeReplyObject(r);
    if (code == 0)
        return vb_error_set(err, VB_ERR_NOT_FOUND, "cron job %s not found", job_id);
    if (code == 2)
        return vb_error_set(err, VB_ERR_CONFLICT,
                            "an execution of cron job %s is still running (overlap is \"skip\")",
                            job_id);
    memcpy(execution_id, id, VB_UUID_SIZE);
    return VB_OK;
}

vb_err vb_jobs_exec_add_published(vb_jobs *j, const char *execution_id, const char *run_id,
                                  vb_error *err)
{
    char key[96], rid[RUN_ID_MAX + 1];
    if (!vb_jobs_id_valid(execution_id))
        return vb_error_set(err, VB_ERR_NOT_FOUND, "execution not found");
    if (!run_id_norm(run_id, rid))
        return vb_error_set(err, VB_ERR_INVALID, "run id is not valid");
    snprintf(key, sizeof key, EXEC_PREFIX "%s", execution_id);
    args a = {0};
    add(&a, "2");
    add(&a, key);
    add(&a, RUNNING_SET);
    add(&a, execution_id);
    add(&a, rid);
    add_ll(&a, vb__now_ms());
    redisReply *r = run(j, script_add_published, &a, err);
    if (!r)
        return VB_ERR_REDIS;
    long long ok = reply_ll(r);
    freeReplyObject(r);
    if (!ok)
        return vb_error_set(err, VB_ERR_NOT_FOUND, "execution %s not found", execution_id);
    return VB_OK;
}

/* The strings of one firing's keys and arguments. */
typedef struct done_strs {
    char key[96], nums[4][24];
    char *cut; /* output cut to VB_JOBS_OUTPUT_MAX */
} done_strs;

vb_err vb_jobs_exec_fire_done_batch(vb_jobs *j, vb_exec_fire_done *d, size_t n, vb_error *err)
{
    vb_err rc = VB_OK;
    if (n == 0)
        return VB_OK;
    if (!d || n > VB_JOBS_EXEC_CLAIM_BATCH_MAX)
        return vb_error_set(err, VB_ERR_INVALID, "too many firings in one batch");
    for (size_t i = 0; i < n; i++) {
        d[i].status[0] = '\0';
        d[i].rc = VB_ERR_NOT_FOUND;
    }
    size_t argc = 2 + n * (1 + DONE_ARGS), k = 0, a = 2 + n, valid = 0;
    done_strs *ds = calloc(n, sizeof *ds);
    const char **argv = calloc(argc, sizeof *argv);
    size_t *idx = calloc(n, sizeof *idx); /* reply element -> d index */
    char numkeys[24];
    redisReply *r = NULL;
    if (!ds || !argv || !idx) {
        rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        goto done;
    }
    argv[k++] = numkeys;
    argv[k++] = RUNNING_SET;
    for (size_t i = 0; i < n; i++) {
        if (!vb_jobs_id_valid(d[i].execution_id))
            continue; /* stays VB_ERR_NOT_FOUND */
        done_strs *s = &ds[i];
        const char *o = d[i].output ? d[i].output : "";
        if (!(s->cut = strndup(o, vb__utf8_cut(o, strlen(o), VB_JOBS_OUTPUT_MAX)))) {
            rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
            goto done;
        }
        snprintf(s->key, sizeof s->key, EXEC_PREFIX "%s", d[i].execution_id);
        const long long v[4] = {d[i].found, d[i].skipped_in_progress, d[i].skipped_other_org,
                                d[i].now_ms};
        for (int u = 0; u < 4; u++)
            snprintf(s->nums[u], sizeof s->nums[u], "%lld", v[u]);
        argv[k++] = s->key;
        argv[a++] = d[i].execution_id;
        argv[a++] = s->nums[0];
        argv[a++] = s->nums[1];
        argv[a++] = s->nums[2];
        argv[a++] = s->cut;
        argv[a++] = d[i].failed ? "1" : "0";
        argv[a++] = s->nums[3];
        idx[valid++] = i;
    }
    if (valid == 0)
        goto done;
    /* keys were packed without gaps; move the args down behind them */
    memmove(argv + k, argv + 2 + n, (a - (2 + n)) * sizeof *argv);
    argc = k + (a - (2 + n));
    snprintf(numkeys, sizeof numkeys, "%zu", 1 + valid);
    if (!(r = run_batch(j, script_fire_done, (int)argc, argv, valid, err))) {
        rc = VB_ERR_REDIS;
        goto done;
    }
    for (size_t e = 0; e < valid; e++) {
        const redisReply *x = r->element[e];
        vb_exec_fire_done *f = &d[idx[e]];
        if (x->type == REDIS_REPLY_STRING && x->len > 0) {
            snprintf(f->status, sizeof f->status, "%s", x->str);
            f->rc = VB_OK;
        }
    }
done:
    if (r)
        freeReplyObject(r);
    for (size_t i = 0; ds && i < n; i++)
        free(ds[i].cut);
    free(idx);
    free(argv);
    free(ds);
    return rc;
}

vb_err vb_jobs_exec_fire_done(vb_jobs *j, const char *execution_id, long found,
                              long skipped_in_progress, long skipped_other_org,
                              const char *output, int failed, long long now, char status[16],
                              vb_error *err)
{
    if (status)
        status[0] = '\0';
    vb_exec_fire_done d = {.execution_id = execution_id,
                           .found = found,
                           .skipped_in_progress = skipped_in_progress,
                           .skipped_other_org = skipped_other_org,
                           .output = output,
                           .failed = failed,
                           .now_ms = now};
    vb_err rc = vb_jobs_exec_fire_done_batch(j, &d, 1, err);
    if (rc != VB_OK)
        return rc;
    if (d.rc != VB_OK)
        return vb_error_set(err, VB_ERR_NOT_FOUND, "execution %s not found",
                            execution_id ? execution_id : "");
    if (status)
        snprintf(status, 16, "%s", d.status);
    return VB_OK;
}

vb_err vb_jobs_exec_run_done_at(vb_jobs *j, const char *execution_id, const char *run_id,
                                int outcome, const char *batch_ids, long long now,
                                char status[16], vb_error *err)
{
    char key[96], rid[RUN_ID_MAX + 1];
    if (status)
        status[0] = '\0';
    if (!vb_jobs_id_valid(execution_id))
        return vb_error_set(err, VB_ERR_NOT_FOUND, "execution not found");
    if (!run_id_norm(run_id, rid))
        return vb_error_set(err, VB_ERR_INVALID, "run id is not valid");
    if (outcome != VB_EXEC_RUN_OK && outcome != VB_EXEC_RUN_FAILED)
        return vb_error_set(err, VB_ERR_INVALID, "unknown run outcome %d", outcome);
    const char *b = batch_ids ? batch_ids : "";
    if (strlen(b) > VB_EXEC_BATCH_IDS_MAX)
        b = ""; /* never grow the record without bound */
    snprintf(key, sizeof key, EXEC_PREFIX "%s", execution_id);
    args a = {0};
    add(&a, "2");
    add(&a, key);
    add(&a, RUNNING_SET);
    add(&a, execution_id);
    add(&a, rid);
    add(&a, outcome == VB_EXEC_RUN_OK ? "ok" : "failed");
    add(&a, b);
    add_ll(&a, now);
    add_ll(&a, VB_EXEC_BATCH_IDS_MAX);
    redisReply *r = run(j, script_run_done, &a, err);
    if (!r)
        return VB_ERR_REDIS;
    vb_err rc = VB_OK;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        rc = vb_error_set(err, VB_ERR_REDIS, "storage unavailable: unexpected script reply");
    } else if (reply_ll(r->element[0]) == 0) {
        rc = vb_error_set(err, VB_ERR_NOT_FOUND, "execution %s not found", execution_id);
    } else if (status && r->element[1]->type == REDIS_REPLY_STRING) {
        snprintf(status, 16, "%s", r->element[1]->str);
    }
    freeReplyObject(r);
    return rc;
}

vb_err vb_jobs_exec_run_done(vb_jobs *j, const char *execution_id, const char *run_id,
                             int outcome, const char *batch_ids, vb_error *err)
{
    return vb_jobs_exec_run_done_at(j, execution_id, run_id, outcome, batch_ids, vb__now_ms(),
                                    NULL, err);
}

vb_err vb_jobs_exec_expire(vb_jobs *j, long long now, long timeout_s, long fire_timeout_s,
                           size_t *expired, vb_error *err)
{
    if (expired)
        *expired = 0;
    args a = {0};
    add(&a, "1");
    add(&a, RUNNING_SET);
    add_ll(&a, now);
    add_ll(&a, timeout_ms(timeout_s, VB_EXEC_TIMEOUT_DEFAULT_S));
    add_ll(&a, timeout_ms(fire_timeout_s, VB_EXEC_FIRE_TIMEOUT_DEFAULT_S));
    add(&a, EXEC_PREFIX);
    redisReply *r = run(j, script_expire, &a, err);
    if (!r)
        return VB_ERR_REDIS;
    if (expired)
        *expired = (size_t)reply_ll(r);
    freeReplyObject(r);
    return VB_OK;
}
