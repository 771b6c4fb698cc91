/*
 * seal.h — a run sealed into its Kafka message, so a worker can start it
 * without asking the platform.
 *
 * The producer lists each run with document URLs that carry SAS signatures
 * (secrets) and may only put on Kafka what anyone reading the topic may see.
 * It therefore seals the whole run as the platform listed it — every field
 * the worker needs, the document URLs with their query strings — under the
 * shared secret key (VISIONBATCH_SECRET_KEY) with AES-256-GCM
 * (vb_crypto_seal_bound: a fresh random nonce per message), bound to the
 * run's id: the sealed text opens only for the run whose message carries it,
 * so it cannot be moved to another run's message, and it cannot be altered
 * unnoticed. The message carries it as the field "sealed" (message.h).
 *
 * Bound context: VB_SEAL_RUN_CONTEXT followed by the run id in lower case
 * (run ids compare case-insensitively, vb_id_equal). Plaintext: the run as
 * JSON (vb_run_to_json), at most VB_CRYPTO_BOUND_MAX bytes.
 *
 * Pure functions, thread-safe. Error messages never contain the sealed
 * text, its plaintext, a URL or key material.
 */
#ifndef VISIONBATCH_SEAL_H
#define VISIONBATCH_SEAL_H

#include "visionbatch/crypto.h"
#include "visionbatch/error.h"
#include "visionbatch/run.h"

#define VB_SEAL_RUN_CONTEXT "visionbatch run message 1 "

/* Seals `run` (with a valid id) under key. On VB_OK *out is a new "v1:…"
 * string (free with free()). VB_ERR_INVALID for a run without a valid id,
 * VB_ERR_TOO_LARGE when its JSON exceeds VB_CRYPTO_BOUND_MAX, VB_ERR_NOMEM,
 * VB_ERR_CRYPTO; *out is then NULL. */
vb_err vb_seal_run(const unsigned char key[VB_CRYPTO_KEY_SIZE], const vb_run *run, char **out,
                   vb_error *err);

/* Opens what vb_seal_run made for the run `run_id` into *out (zeroed first;
 * free with vb_run_free). VB_ERR_CRYPTO when it does not open under key and
 * run_id (another key, another run, altered, not a sealed value),
 * VB_ERR_PARSE when the text inside is not a valid run of that id,
 * VB_ERR_INVALID for missing arguments; *out is then empty. The plaintext is
 * wiped before it is freed. */
vb_err vb_seal_open_run(const unsigned char key[VB_CRYPTO_KEY_SIZE], const char *run_id,
                        const char *sealed, vb_run *out, vb_error *err);

#endif
