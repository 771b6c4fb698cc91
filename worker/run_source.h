/*
 * run_source.h — where a worker slot gets the run it processes
 * (run_source.c): the sealed copy its message carries (seal.h; no platform
 * request), else the platform's unprocessed list (vb_platform_find_run).
 * worker.c decides when to use which (see its slot steps); these functions
 * do the one or the other. Thread-safe with per-thread handles (vb_http,
 * vb_store); nothing logged here contains a URL, the sealed value or a key.
 */
#ifndef VISIONBATCH_WORKER_RUN_SOURCE_H
#define VISIONBATCH_WORKER_RUN_SOURCE_H

#include <stdatomic.h>

#include "visionbatch/config.h"
#include "visionbatch/crypto.h"
#include "visionbatch/http.h"
#include "visionbatch/message.h"
#include "visionbatch/run.h"
#include "visionbatch/store.h"

/* The run of message `m` from its sealed copy into *out (zeroed first; free
 * with vb_run_free), opened with `key` (NULL: this worker has none).
 * Returns NULL when *out holds the run; otherwise *out is empty and the
 * returned text (static, or why->msg) says why the platform must be asked
 * instead: no sealed copy, no key, a copy that does not open (another key,
 * altered, another run's), a run of another organization than cfg's or
 * marked processed, or an earlier attempt that recorded an upload start in
 * `store` (whether it landed is the platform's to say; a run record that
 * cannot be read counts the same). */
const char *vb_worker_run_from_message(const unsigned char *key, const vb_run_msg *m,
                                       const vb_config *cfg, vb_store *store, vb_run *out,
                                       vb_error *why);

/* Looks run_id up on the platform into *out (zeroed first; free with
 * vb_run_free) with fresh document URLs: VB_OK. When the platform does not
 * list it as unprocessed (three scans, platform.h): VB_OK with
 * *uploaded_before = 1 and *out empty if visionbatch began uploading its
 * report before (`store`: the upload evidently landed), else
 * VB_ERR_NOT_FOUND — never a silent success that would lose the run. Other
 * errors as vb_platform_find_run. */
vb_err vb_worker_run_lookup(vb_http *h, vb_store *store, const vb_config *cfg,
                            const char *run_id, const atomic_int *cancel, vb_run *out,
                            int *uploaded_before, vb_error *err);

#endif
