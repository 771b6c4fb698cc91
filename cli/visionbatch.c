/*
 * visionbatch.c — main() of the `visionbatch` CLI executable; the dispatcher
 * lives in dispatch.c (libvisionbatch_cli) so tests can link it.
 */
#include "cli.h"

int main(int argc, char **argv)
{
    return vb_cli_main(argc, argv);
}
