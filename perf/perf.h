/**
 * @file perf.h
 * ferry-perf subcommands. Each takes the arguments after its name
 * (argv[0] is the subcommand name) and returns the process exit status.
 */
#ifndef FERRY_PERF_H
#define FERRY_PERF_H

#include <stdio.h>

/** Exit statuses shared by the subcommands. */
enum {
	PERF_EXIT_OK = 0,
	PERF_EXIT_ERROR = 1,       /**< setup or transport failure */
	PERF_EXIT_USAGE = 2,
	PERF_EXIT_VERIFY = 3,      /**< data read back was wrong */
	PERF_EXIT_VERDICT = 4,     /**< --strict and a done-when ratio failed */
};

int perf_xport_main(int argc, char **argv);
void perf_xport_usage(FILE *out);

#endif /* FERRY_PERF_H */
