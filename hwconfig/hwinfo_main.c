/*
 * ferry-hwinfo: show the machine as Ferry sees it (NUMA nodes, cores, network
 * and RDMA devices) and the placement Ferry would choose for a device or address.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/common/ferry_log.h"
#include "hwconfig/hwconfig.h"

static void short_usage(void)
{
	fprintf(stderr, "usage: ferry-hwinfo [--json] [--for DEV|IP] [--help]\n"
			"Try 'ferry-hwinfo --help' for more information.\n");
}

static void usage(void)
{
	printf(
		"usage: ferry-hwinfo [--json] [--for DEV|IP] [--help]\n"
		"\n"
		"Show this machine's NUMA nodes, cores (with their SMT siblings) and network/RDMA\n"
		"devices (with PCI address and NUMA node), and the placement Ferry would use:\n"
		"the NUMA node for pools and the CPU for the polling thread.\n"
		"\n"
		"  --json        print JSON with keys nodes, cores, devices, placement\n"
		"  --for DEV|IP  place for traffic through DEV (net or RDMA device, e.g. eth0,\n"
		"                mlx5_0) or IP (an IPv4 address of this host); default: first NIC\n"
		"  -h, --help    show this help\n"
		"\n"
		"Exit status: 0 success, 1 error (including --for matching nothing), 2 bad usage.\n");
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "for", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct hw_topology *topo;
	struct hw_placement placement;
	struct ferry_err err = { 0 };
	const char *what = NULL;
	int json = 0, opt, rc;

	ferry_log_set_component("hwinfo");
	while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		switch (opt) {
		case 'j':
			json = 1;
			break;
		case 'f':
			what = optarg;
			break;
		case 'h':
			usage();
			return 0;
		default:
			short_usage();
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ferry-hwinfo: unexpected argument '%s'\n", argv[optind]);
		short_usage();
		return 2;
	}
	if (what && !what[0]) {
		fprintf(stderr, "ferry-hwinfo: --for needs a device name or an IPv4 address\n");
		return 2;
	}

	topo = calloc(1, sizeof(*topo));
	if (!topo) {
		fprintf(stderr, "ferry-hwinfo: out of memory\n");
		return 1;
	}
	if (hw_topology_load(topo, &err) != 0) {
		fprintf(stderr, "ferry-hwinfo: %s\n", err.msg);
		free(topo);
		return 1;
	}
	hw_place(topo, what, &placement);
	if (!placement.matched) {
		/* The reason's first clause says what did not match (the rest is the fallback). */
		fprintf(stderr, "ferry-hwinfo: --for: %.*s\n", (int)strcspn(placement.reason, ";"),
			placement.reason);
		hw_topology_free(topo);
		free(topo);
		return 1;
	}
	rc = json ? hw_print_json(topo, &placement, stdout) : hw_print_text(topo, &placement, stdout);
	hw_topology_free(topo);
	free(topo);
	if (rc != 0) {
		fprintf(stderr, "ferry-hwinfo: cannot write the output: %s\n", strerror(-rc));
		return 1;
	}
	return 0;
}
