/* Unit tests of the `visionbatch` CLI's dispatcher (cli/dispatch.c), linked
 * from libvisionbatch_cli: exit statuses of help, version, usage errors and
 * unknown commands, without Redis or Kafka (no subcommand gets that far). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>

#include "cli.h"

static int run(int argc, char **argv)
{
    int st = vb_cli_main(argc, argv);
    fflush(stdout);
    return st;
}

static void no_command_is_a_usage_error(void **state)
{
    char *argv[] = {"visionbatch", NULL};
    assert_int_equal(run(1, argv), 2);
}

static void help_and_version_succeed(void **state)
{
    const char *const ok[] = {"-h", "--help", "help", "--version"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        char *argv[] = {"visionbatch", (char *)ok[i], NULL};
        assert_int_equal(run(2, argv), 0);
    }
}

static void unknown_commands_and_options_are_usage_errors(void **state)
{
    const char *const bad[] = {"frobnicate", "--organization-id", "RUN-ONCE", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *argv[] = {"visionbatch", (char *)bad[i], NULL};
        assert_int_equal(run(2, argv), 2);
    }
}

static void subcommands_get_their_own_arguments(void **state)
{
    /* Each subcommand answers its own --help with 0 and an unknown
     * subcommand verb with 2, so the dispatcher passed argv on shifted. */
    const char *const cmds[] = {"run-once", "runs", "dlq", "topics"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        char *argv[] = {"visionbatch", (char *)cmds[i], "--help", NULL};
        if (run(3, argv) != 0)
            fail_msg("visionbatch %s --help did not exit 0", cmds[i]);
    }
    char *runs_bad[] = {"visionbatch", "runs", "frobnicate", NULL};
    assert_int_equal(run(3, runs_bad), 2);
    char *dlq_bad[] = {"visionbatch", "dlq", "frobnicate", NULL};
    assert_int_equal(run(3, dlq_bad), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(no_command_is_a_usage_error),
        cmocka_unit_test(help_and_version_succeed),
        cmocka_unit_test(unknown_commands_and_options_are_usage_errors),
        cmocka_unit_test(subcommands_get_their_own_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
