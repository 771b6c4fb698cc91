/*
 * main.c — entry point of visionbatch-worker; the program lives in
 * program.c (libvisionbatch_worker) so tests can link it.
 */
#include "worker.h"

int main(int argc, char **argv)
{
    return vb_worker_main(argc, argv);
}
