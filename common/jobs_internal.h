/*
 * jobs_internal.h — what jobs.c shares with the other modules that keep
 * their data next to the jobs (jobs_exec.c, the producer's scheduler): raw
 * commands and scripts on the handle's one Redis connection, and the
 * executions cap.
 *
 * Threading: vb__jobs_command and vb__jobs_eval take the handle's mutex for
 * the duration of the call, so they may be called from any thread, like the
 * rest of jobs.h.
 */
#ifndef VISIONBATCH_JOBS_INTERNAL_H
#define VISIONBATCH_JOBS_INTERNAL_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "visionbatch/jobs.h"

/* Runs one command (reconnecting first if needed). Returns the reply, which
 * the caller frees with freeReplyObject(), or NULL with err set
 * (VB_ERR_REDIS) on a connection failure or an error reply. `lens` may be
 * NULL for NUL-terminated arguments. */
redisReply *vb__jobs_command(vb_jobs *j, int argc, const char **argv, const size_t *lens,
                             vb_error *err);

/* Runs `script` (a string constant) with argv = {numkeys, keys…, args…}
 * (NUL-terminated) through the connection's script cache (EVALSHA, EVAL after
 * NOSCRIPT). Returns the reply (freeReplyObject()) or NULL with err set
 * (VB_ERR_REDIS) on a connection failure or an error reply. */
redisReply *vb__jobs_eval(vb_jobs *j, const char *script, int argc, const char **argv,
                          vb_error *err);

/* Runs `script` (a string constant) once for n (1..VB_JOBS_PAGE_MAX) jobs:
 * KEYS are "visionbatch:job:<id><suffix>" for each of job_ids, ARGV is {arg}
 * (NULL: none). Returns an array reply of exactly n elements (the caller
 * frees it), or NULL with err set: VB_ERR_INVALID for a bad id or n,
 * VB_ERR_NOMEM, VB_ERR_REDIS (also for a reply of another shape). */
redisReply *vb__jobs_eval_per_job(vb_jobs *j, const char *script, const char *const *job_ids,
                                  size_t n, const char *suffix, const char *arg, vb_error *err);

/* Executions kept per job (the handle's exec_cap). */
size_t vb__jobs_exec_cap(const vb_jobs *j);

#endif
