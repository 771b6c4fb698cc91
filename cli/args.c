/*
 * args.c — the option parser the `visionbatch` subcommands share: what
 * vb_cli_load leaves in `rest` (the subcommand's own options and its
 * positional arguments) is split against a small table, and a --limit value
 * is checked against its range. Messages go to stderr as
 * "visionbatch <name>: <reason>".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* The value of `x` when it is option `name` taking a value: "--name=v", or
 * "--name" followed by v (which is consumed; NULL when nothing follows). */
static int match_value(const char *x, const char *name, int n, char **rest, int *i,
                       const char **val)
{
    size_t len = strlen(name);
    if (strncmp(x, name, len) != 0 || (x[len] != '\0' && x[len] != '='))
        return 0;
    *val = x[len] == '=' ? x + len + 1 : (*i + 1 < n ? rest[++*i] : NULL);
    return 1;
}

int vb_cli_parse_args(const char *name, int n, char **rest, const vb_cli_opt *opts,
                      const char **pos, int npos)
{
    for (int k = 0; k < npos; k++)
        pos[k] = NULL;
    int used = 0;
    for (int i = 0; i < n; i++) {
        const char *x = rest[i];
        const vb_cli_opt *o = opts;
        for (; o && o->name; o++) {
            if (o->value ? match_value(x, o->name, n, rest, &i, o->value)
                         : strcmp(x, o->name) == 0) {
                *o->given = 1;
                break;
            }
        }
        if (o && o->name)
            continue;
        if (x[0] == '-' && x[1] != '\0') {
            fprintf(stderr, "visionbatch %s: unknown option '%s'\n", name, x);
            return -1;
        }
        if (used == npos) {
            fprintf(stderr, "visionbatch %s: unexpected argument '%s'\n", name, x);
            return -1;
        }
        pos[used++] = x;
    }
    return 0;
}

int vb_cli_parse_limit(const char *name, const char *val, long max, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = val ? strtol(val, &end, 10) : 0;
    if (!val || !*val || errno || *end || v < 1 || v > max) {
        fprintf(stderr, "visionbatch %s: --limit needs a number 1-%ld\n", name, max);
        return -1;
    }
    *out = v;
    return 0;
}
