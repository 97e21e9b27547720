/**
 * @file fault.h
 * `ferry-perf fault`: page-fault service latency and throughput of the pager
 * (UNUSED and REMOTE pages) next to the baselines that say what they mean.
 */
#ifndef FERRY_PERF_FAULT_H
#define FERRY_PERF_FAULT_H

#include <stdio.h>

int perf_fault_main(int argc, char **argv);
void perf_fault_usage(FILE *out);

#endif /* FERRY_PERF_FAULT_H */
