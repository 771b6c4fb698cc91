/*
 * cli.h — subcommands of the `visionbatch` operator CLI. Each takes the
 * arguments after `visionbatch` (argv[0] is the subcommand name) and returns
 * the process exit status.
 */
#ifndef VISIONBATCH_CLI_H
#define VISIONBATCH_CLI_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "visionbatch/config.h"
#include "visionbatch/version.h"

/* Loads the settings of `prog` for subcommand `name`, leaving the options
 * named in `passthrough` in rest; on failure prints "visionbatch <name>:
 * <reason>" and returns 2 (the exit status), else 0. Opens logging on
 * stderr. The caller frees *cfg with vb_config_free on success. */
int vb_cli_load(const char *name, unsigned prog, int argc, char **argv,
                const char *const *passthrough, vb_config *cfg, char ***rest, int *nrest);

/* One option of a subcommand for vb_cli_parse_args: `name` is the whole
 * option ("--json"); *given is set to 1 when it appears. With `value`
 * non-NULL the option takes a value ("--limit 5" or "--limit=5"): *value
 * receives it, or NULL when the option ends the line. A table ends with a
 * NULL name. */
typedef struct vb_cli_opt {
    const char *name;
    int *given;
    const char **value;
} vb_cli_opt;

/* Splits rest[0..n) into the options of `opts` (a later occurrence wins) and
 * at most npos positional arguments, stored in order in pos[] (the rest of
 * pos[] is NULL). Returns 0, or -1 after printing "visionbatch <name>:
 * unknown option '…'" or "…: unexpected argument '…'" on stderr. */
int vb_cli_parse_args(const char *name, int n, char **rest, const vb_cli_opt *opts,
                      const char **pos, int npos);

/* Parses a --limit value (val may be NULL: missing) into *out when it is a
 * number 1..max; else prints "visionbatch <name>: --limit needs a number
 * 1-<max>" on stderr and returns -1. */
int vb_cli_parse_limit(const char *name, const char *val, long max, long *out);

/* Prints `o` (taken over and freed) as indented JSON on stdout; 0, or 1
 * when it could not be printed. */
int vb_cli_print_json(const char *name, cJSON *o);

/* Writes unix milliseconds ms as "2026-11-28T12:00:00.123Z" (UTC), or "-"
 * when ms < 0, into out (NUL-terminated, cut to outlen). */
void vb_cli_fmt_time(long long ms, char *out, size_t outlen);

/* The whole CLI: dispatches argv[1] to its subcommand (argv[0] is the
 * program name) and returns the exit status (0 success, 1 failure, 2 usage). */
int vb_cli_main(int argc, char **argv);

int vb_cli_run_once(int argc, char **argv);
int vb_cli_runs(int argc, char **argv);
int vb_cli_dlq(int argc, char **argv);
int vb_cli_topics(int argc, char **argv);

#endif
