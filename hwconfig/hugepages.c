/* Free 2 MiB hugepages, per NUMA node or machine-wide (hwconfig.h). */
#include "hwconfig/hwconfig.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* One unsigned number from a sysfs file; -1 if it cannot be read. */
static int read_u64_file(const char *path, uint64_t *value)
{
	FILE *f = fopen(path, "re");
	int ok;

	if (!f)
		return -1;
	ok = fscanf(f, "%" SCNu64, value) == 1;
	fclose(f);
	return ok ? 0 : -1;
}

/* HugePages_Free from /proc/meminfo, counted only when the default size is 2 MiB. */
static uint64_t meminfo_free_2m(void)
{
	FILE *f = fopen("/proc/meminfo", "re");
	char line[256];
	uint64_t free_pages = 0, size_kb = 0, v;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "HugePages_Free: %" SCNu64, &v) == 1)
			free_pages = v;
		else if (sscanf(line, "Hugepagesize: %" SCNu64, &v) == 1)
			size_kb = v;
	}
	fclose(f);
	return size_kb == 2048 ? free_pages : 0;
}

uint64_t hw_hugepages_2m_free(int numa_node)
{
	char path[160];
	uint64_t n;

	if (numa_node >= 0)
		snprintf(path, sizeof(path),
			 "/sys/devices/system/node/node%d/hugepages/hugepages-2048kB/free_hugepages",
			 numa_node);
	else
		snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages");
	if (read_u64_file(path, &n) == 0)
		return n;
	if (numa_node > 0) {
		/* A kernel without per-node counters still has node directories;
		 * no directory at all means no such node. */
		snprintf(path, sizeof(path), "/sys/devices/system/node/node%d", numa_node);
		if (access(path, F_OK) != 0)
			return 0;
	}
	return meminfo_free_2m();
}
