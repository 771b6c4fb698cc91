/*
 * visionbatch-worker.c — main() of the visionbatch-worker executable; the
 * program lives in program.c (libvisionbatch_worker) so tests can link it.
 */
#include "worker.h"

int main(int argc, char **argv)
{
    return vb_worker_main(argc, argv);
}
