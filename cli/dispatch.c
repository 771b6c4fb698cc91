/*
 * dispatch.c — `visionbatch`, the operator CLI: dispatches to its subcommands
 * (vb_cli_main; main() in visionbatch.c calls it).
 *
 *   visionbatch run-once [settings]      the guide's manual processor
 *   visionbatch runs list|show|retry     run state in Redis (distributed mode)
 *   visionbatch dlq list|replay          the dead-letter topic
 *   visionbatch topics                   Kafka topics and the workers' lag
 *
 * Each subcommand lives in its own file (run_once.c, runs_cmd.c, dlq_cmd.c, topics_cmd.c) and owns
 * its flags and --help. Exit status: 0 success, 1 a run or command failed,
 * 2 usage or configuration error.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct {
    const char *name;
    int (*main)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"run-once", vb_cli_run_once, "fetch every unprocessed run and process it now"},
    {"runs", vb_cli_runs, "list, show or retry runs recorded in Redis"},
    {"dlq", vb_cli_dlq, "list or replay the messages of the dead-letter topic"},
    {"topics", vb_cli_topics, "Kafka topics, partitions and the workers' consumer lag"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: visionbatch <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n`visionbatch <command> --help` describes a command and its settings.\n");
}

int vb_cli_main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("visionbatch %s\n", VB_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].main(argc - 1, argv + 1);
    fprintf(stderr, "visionbatch: unknown command '%s'\n", argv[1]);
    if (argv[1][0] == '-')
        fprintf(stderr, "(to process runs with these settings: visionbatch run-once %s …)\n",
                argv[1]);
    usage(stderr);
    return 2;
}
