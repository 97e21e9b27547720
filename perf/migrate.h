/**
 * @file migrate.h
 * `ferry-perf migrate`: one split migration driven through the pagers'
 * migration control sockets, timed and measured from both ends (JSON, CSV).
 * perf/migrate-cluster.sh runs it over a netns cluster.
 */
#ifndef FERRY_PERF_MIGRATE_H
#define FERRY_PERF_MIGRATE_H

#include <stdio.h>

int perf_migrate_main(int argc, char **argv);
void perf_migrate_usage(FILE *out);

#endif /* FERRY_PERF_MIGRATE_H */
