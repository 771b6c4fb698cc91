/*
 * visionbatch-producer.c — main() of the visionbatch-producer executable
 * (each program's entry point is named after its executable); the program
 * lives in program.c (libvisionbatch_producer) so tests can link it.
 */
#include "program.h"

int main(int argc, char **argv)
{
    return vb_producer_main(argc, argv);
}
