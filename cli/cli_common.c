/*
 * cli_common.c — what the `visionbatch` subcommands share: loading the
 * admin settings (with the subcommand's own options passed through),
 * printing a JSON answer on stdout and printing an instant.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "util.h"
#include "visionbatch/log.h"

int vb_cli_load(const char *name, unsigned prog, int argc, char **argv,
                const char *const *passthrough, vb_config *cfg, char ***rest, int *nrest)
{
    vb_error err;
    vb_error_clear(&err);
    if (vb_config_load_ex(cfg, prog, argc, argv, passthrough, rest, nrest, &err) != VB_OK) {
        fprintf(stderr, "visionbatch %s: %s\n", name, err.msg);
        return 2;
    }
    /* Log lines (e.g. config warnings) go to stderr only: stdout is the answer. */
    vb_log_open(NULL, (vb_log_format)cfg->log_format, (vb_log_level)cfg->log_level);
    return 0;
}

int vb_cli_print_json(const char *name, cJSON *o)
{
    char *s = o ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    if (!s) {
        fprintf(stderr, "visionbatch %s: out of memory\n", name);
        return 1;
    }
    printf("%s\n", s);
    free(s);
    return 0;
}

void vb_cli_fmt_time(long long ms, char *out, size_t outlen)
{
    if (ms < 0)
        snprintf(out, outlen, "-");
    else
        vb__format_ms_utc(ms, out, outlen);
}
