/*
 * ferry-perf: Ferry's benchmarks, each beside the baselines that say what its
 * figures mean. `ferry-perf SUBCOMMAND [options]`; subcommands are a table so
 * that later ones (fault, migrate, wake) are one line each.
 */
#include <stdio.h>
#include <string.h>

#include "perf/fault.h"
#include "perf/migrate.h"
#include "perf/wake.h"
#include "perf/perf.h"
#include "perf/plan.h"

#ifndef FERRY_VERSION
#define FERRY_VERSION "0.0.0"
#endif

struct perf_subcmd {
	const char *name;
	const char *summary;
	int (*main)(int argc, char **argv);
	void (*usage)(FILE *out);
};

static const struct perf_subcmd subcmds[] = {
	{ "xport", "page read/write latency and throughput against memory servers, with TCP and memcpy baselines",
	  perf_xport_main, perf_xport_usage },
	{ "fault", "page-fault service latency of ferry-pager (UNUSED, REMOTE) beside kernel and in-process uffd baselines",
	  perf_fault_main, perf_fault_usage },
	{ "plan", "phase planner (seed 002): misprediction rates over window sizes and re-sent bytes on a sampled LU",
	  perf_plan_main, perf_plan_usage },
	{ "migrate", "one split migration between two pagers, timed from both ends (pages, bytes, downtime)",
	  perf_migrate_main, perf_migrate_usage },
	{ "wake", "hibernated QEMU guests through ferry-wake + ferryd: ARP latency, SYN to first byte, memory freed",
	  perf_wake_main, perf_wake_usage },
};

#define NSUBCMDS (sizeof(subcmds) / sizeof(subcmds[0]))

static const struct perf_subcmd *find_subcmd(const char *name)
{
	for (size_t i = 0; i < NSUBCMDS; i++)
		if (strcmp(subcmds[i].name, name) == 0)
			return &subcmds[i];
	return NULL;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: ferry-perf SUBCOMMAND [options]   (ferry-perf SUBCOMMAND --help for its options)\n\n"
		     "subcommands:\n");
	for (size_t i = 0; i < NSUBCMDS; i++)
		fprintf(out, "  %-10s %s\n", subcmds[i].name, subcmds[i].summary);
	fprintf(out, "\n  help [SUBCOMMAND]   this text, or a subcommand's\n"
		     "  --version           print the version\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return PERF_EXIT_USAGE;
	}
	const char *cmd = argv[1];

	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) {
		usage(stdout);
		return PERF_EXIT_OK;
	}
	if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
		printf("ferry-perf %s\n", FERRY_VERSION);
		return PERF_EXIT_OK;
	}
	if (strcmp(cmd, "help") == 0) {
		const struct perf_subcmd *sc = argc > 2 ? find_subcmd(argv[2]) : NULL;

		if (argc > 2 && !sc) {
			fprintf(stderr, "ferry-perf: unknown subcommand '%s'\n\n", argv[2]);
			usage(stderr);
			return PERF_EXIT_USAGE;
		}
		if (sc)
			sc->usage(stdout);
		else
			usage(stdout);
		return PERF_EXIT_OK;
	}

	const struct perf_subcmd *sc = find_subcmd(cmd);

	if (!sc) {
		fprintf(stderr, "ferry-perf: unknown subcommand '%s'\n\n", cmd);
		usage(stderr);
		return PERF_EXIT_USAGE;
	}
	return sc->main(argc - 1, argv + 1);
}
