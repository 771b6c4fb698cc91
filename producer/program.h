/*
 * program.h — visionbatch-producer as a library function, so the program's
 * code is built once into libvisionbatch_producer and main() stays one call.
 */
#ifndef VISIONBATCH_PRODUCER_PROGRAM_H
#define VISIONBATCH_PRODUCER_PROGRAM_H

/* Runs visionbatch-producer with the command line `argv` (argv[0] is the
 * program name) and returns its exit status: 0 success, 1 a failed pass or
 * health check, 2 usage or configuration error (see program.c). Installs
 * the SIGTERM/SIGINT handlers; call once per process. */
int vb_producer_main(int argc, char **argv);

#endif
