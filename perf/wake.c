/*
 * ferry-perf wake: runs perf/wake.sh (see wake.h) with --build-dir set to this build, passing
 * the remaining options on. Exit status: the script's (77: this machine cannot run it).
 */
#include "perf/wake.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "perf/perf.h"

#ifndef FERRY_SOURCE_DIR
#define FERRY_SOURCE_DIR "."
#endif
#ifndef FERRY_BINARY_DIR
#define FERRY_BINARY_DIR "."
#endif

void perf_wake_usage(FILE *out)
{
	fprintf(out,
		"usage: ferry-perf wake [--out DIR] [--reps N] [--arp N] [--scenarios \"G:U ...\"] [--quick]\n"
		"  (a) ARP reply latency, ferry-wake for a hibernated VM vs the kernel for a live address\n"
		"  (b) client SYN -> first echoed byte of a hibernated QEMU guest through ferry-wake + ferryd,\n"
		"      images in the memory pool vs the seed's state file on disk (same run)\n"
		"  (c) memory freed by hibernating idle VMs (perf/wake-vm.sh; skipped with --quick)\n"
		"  Runs %s/perf/wake.sh --build-dir %s; needs root, netns, QEMU, DPDK.\n",
		FERRY_SOURCE_DIR, FERRY_BINARY_DIR);
}

int perf_wake_main(int argc, char **argv)
{
	char script[4096];
	char **args;
	int n = 0;

	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			perf_wake_usage(stdout);
			return PERF_EXIT_OK;
		}
	snprintf(script, sizeof(script), "%s/perf/wake.sh", FERRY_SOURCE_DIR);
	args = calloc((size_t)argc + 4, sizeof(*args));
	if (!args)
		return PERF_EXIT_ERROR;
	args[n++] = "bash";
	args[n++] = script;
	args[n++] = "--build-dir";
	args[n++] = FERRY_BINARY_DIR;
	for (int i = 1; i < argc; i++)
		args[n++] = argv[i];
	args[n] = NULL;
	fflush(stdout);
	execvp("bash", args);
	fprintf(stderr, "ferry-perf wake: cannot run %s: %s\n", script, strerror(errno));
	free(args);
	return PERF_EXIT_ERROR;
}
