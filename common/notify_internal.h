/*
 * notify_internal.h — the Lua that settles an execution's consequences
 * when it reaches a final status: the job's run of consecutive failures
 * (pause_on_failure) and the webhook deliveries (notify.h). Shared text,
 * prepended to every jobs_exec.c script that can end an execution.
 *
 * final(k, id, st, now, jid): k the execution hash, id its id, st the final
 * status, now unix ms (number or string), jid its job's id (nil: read from
 * k). Reads the job's notify, pause_on_failure and fail_streak;
 * failed/error/timeout add one to fail_streak, success and
 * partial reset it; at pause_on_failure the job is deactivated with a
 * paused_reason (and the jobs version bumped) and job.paused fires.
 * ntf_enqueue(k, eid, jid, ev, tag, body, now) queues one delivery per
 * target subscribed to ev (tag tells deliveries of one event apart: the run
 * id of run.dead). run_dead(k, id, run, now): run.dead for a run that ended
 * dead, at most 100 per execution.
 */
#ifndef VISIONBATCH_NOTIFY_INTERNAL_H
#define VISIONBATCH_NOTIFY_INTERNAL_H

#define VB__NOTIFY_LUA                                                                             \
    "local function ntf_enqueue(k, eid, jid, ev, tag, body, now) "                                      \
    "  local raw = redis.call('HGET', 'visionbatch:job:' .. jid, 'notify') "                       \
    "  if not raw or raw == '' then return end "                                                   \
    "  local ok, ts = pcall(cjson.decode, raw) "                                                   \
    "  if not ok or type(ts) ~= 'table' then return end "                                          \
    "  for i, t in ipairs(ts) do "                                                                 \
    "    local evl = {} "                                                                          \
    "    if type(t) == 'table' and type(t.url) == 'string' and type(t.events) == 'table' then "    \
    "      evl = t.events end "                                                                    \
    "    for _, e in ipairs(evl) do "                                                              \
    "      if e == ev then "                                                                       \
    "        local did = eid .. ':' .. ev .. tag .. ':' .. i "                                            \
    "        local dk = 'visionbatch:notify:' .. did "                                             \
    "        local f = 'ntf:' .. ev .. tag .. ':' .. i "                                                  \
    "        if redis.call('HEXISTS', k, f) == 0 then "                                            \
    "          redis.call('HSET', dk, 'url', t.url, 'event', ev, 'body', body, 'job_id', jid, "   \
    "            'execution_id', eid, 'field', f, 'attempts', 0, 'lease', '') "                    \
    "          redis.call('ZADD', 'visionbatch:notify:due', now, did) "                            \
    "          redis.call('HSET', k, f, cjson.encode({url = t.url, event = ev, "                   \
    "            status = 'pending', attempts = 0, http_status = 0})) "                            \
    "        end "                                                                                 \
    "      end "                                                                                   \
    "    end "                                                                                     \
    "  end "                                                                                       \
    "end "                                                                                         \
    "local function ntf_body(k, id, jid, name, ev, now, extra) "                                   \
    "  local e = redis.call('HMGET', k, 'status', 'started_at', 'completed_at', "                  \
    "    'scheduled_for', 'runs_found', 'runs_published', 'runs_succeeded', 'runs_failed') "       \
    "  local b = {event = ev, occurred_at = now, "                                                 \
    "    job = {id = jid, name = name or ''}, "                                                    \
    "    execution = {id = id, status = e[1] or '', started_at = tonumber(e[2] or '0') or 0, "     \
    "      completed_at = tonumber(e[3] or '0') or 0, "                                            \
    "      scheduled_for = tonumber(e[4] or '0') or 0, "                                           \
    "      runs = {found = tonumber(e[5] or '0') or 0, published = tonumber(e[6] or '0') or 0, "   \
    "        succeeded = tonumber(e[7] or '0') or 0, failed = tonumber(e[8] or '0') or 0}}} "      \
    "  for kk, v in pairs(extra or {}) do b[kk] = v end "                                          \
    "  return cjson.encode(b) "                                                                    \
    "end "                                                                                         \
    "local final_events = {success = 'execution.succeeded', partial = 'execution.partial', "      \
    "  failed = 'execution.failed', error = 'execution.failed', timeout = 'execution.failed'} "    \
    "local function final(k, id, st, now, jid) "                                                   \
    "  jid = jid or redis.call('HGET', k, 'job_id') "                                              \
    "  if not jid then return end "                                                                \
    "  local jk = 'visionbatch:job:' .. jid "                                                      \
    "  local j = redis.call('HMGET', jk, 'name', 'pause_on_failure', 'enabled', 'notify', "        \
    "    'fail_streak', 'created_at') "                                                            \
    "  if not (j[1] or j[3] or j[6]) then return end "                                             \
    "  local ev = final_events[st] "                                                               \
    "  if not ev then return end "                                                                 \
    "  now = tonumber(now) "                                                                       \
    "  if j[4] and j[4] ~= '' then "                                                               \
    "    ntf_enqueue(k, id, jid, ev, '', ntf_body(k, id, jid, j[1], ev, now, nil), now) end "      \
    "  if ev ~= 'execution.failed' then "                                                          \
    "    if (tonumber(j[5] or '0') or 0) ~= 0 then redis.call('HSET', jk, 'fail_streak', 0) end "  \
    "    return "                                                                                  \
    "  end "                                                                                       \
    "  local n = redis.call('HINCRBY', jk, 'fail_streak', 1) "                                     \
    "  local lim = tonumber(j[2] or '0') or 0 "                                                    \
    "  if lim > 0 and n >= lim and j[3] == '1' then "                                              \
    "    local why = n .. ' consecutive failed executions (the last: ' .. id .. ')' "              \
    "    redis.call('HSET', jk, 'enabled', '0', 'paused_reason', why, 'updated_at', now) "         \
    "    redis.call('INCR', 'visionbatch:jobs:version') "                                          \
    "    ntf_enqueue(k, id, jid, 'job.paused', '', ntf_body(k, id, jid, j[1], 'job.paused', now, "     \
    "      {paused_reason = why}), now) "                                                          \
    "  end "                                                                                       \
    "end "                                                                                         \
    "local function run_dead(k, id, run, now) "                                                    \
    "  local jid = redis.call('HGET', k, 'job_id') "                                               \
    "  if not jid or redis.call('HINCRBY', k, 'ntf_dead', 1) > 100 then return end "               \
    "  local name = redis.call('HGET', 'visionbatch:job:' .. jid, 'name') "                        \
    "  ntf_enqueue(k, id, jid, 'run.dead', ':' .. run, ntf_body(k, id, jid, name, 'run.dead', "   \
    "    now, {run = {id = run}}), now) "                                                          \
    "end "

#endif
