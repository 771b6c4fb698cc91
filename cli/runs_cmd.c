/*
 * runs_cmd.c — `visionbatch runs list|show|retry`: the run state that the
 * distributed mode keeps in Redis.
 */
#include <stdio.h>

#include "cli.h"

int vb_cli_runs(int argc, char **argv)
{
    fprintf(stderr, "visionbatch runs: not available in this build\n");
    return 2;
}
