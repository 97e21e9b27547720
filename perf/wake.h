/**
 * @file wake.h
 * `ferry-perf wake` (issue 6): a hibernated VM seen from a client — ferry-wake's ARP reply latency
 * beside the kernel's, the access time through the real path (SYN -> ferry-wake -> ferryd ->
 * resume -> replay -> first echoed byte) with images in the pool beside the seed's state file, and
 * the memory idle VMs free. The measurement needs root, namespaces, QEMU and DPDK: it is
 * perf/wake.sh (which runs tests/rigs/vm/wake-e2e.sh's perf case and perf/wake-vm.sh); this
 * subcommand runs it with this build's directory and passes the options on.
 */
#ifndef FERRY_PERF_WAKE_H
#define FERRY_PERF_WAKE_H

#include <stdio.h>

int perf_wake_main(int argc, char **argv);
void perf_wake_usage(FILE *out);

#endif /* FERRY_PERF_WAKE_H */
