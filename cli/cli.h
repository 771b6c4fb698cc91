/*
 * cli.h — subcommands of the `visionbatch` operator CLI. Each takes the
 * arguments after `visionbatch` (argv[0] is the subcommand name) and returns
 * the process exit status.
 */
#ifndef VISIONBATCH_CLI_H
#define VISIONBATCH_CLI_H

#define VB_VERSION "0.1.0"

int vb_cli_run_once(int argc, char **argv);
int vb_cli_runs(int argc, char **argv);
int vb_cli_dlq(int argc, char **argv);
int vb_cli_topics(int argc, char **argv);

#endif
