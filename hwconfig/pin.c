/* Thread pinning and memory policy (hwconfig.h). */
#include "hwconfig/hwconfig.h"

#include <errno.h>
#include <numa.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/common/ferry_log.h"

#define MAX_CPU_ID 65536

/* The calling thread's allowed CPUs as a list ("0-3,8"), for messages. */
static void allowed_cpus(char *out, size_t size)
{
	cpu_set_t set;
	size_t off = 0;
	int start = -1;

	out[0] = '\0';
	if (sched_getaffinity(0, sizeof(set), &set) != 0) {
		snprintf(out, size, "unknown");
		return;
	}
	for (int cpu = 0; cpu <= CPU_SETSIZE; cpu++) {
		int in = cpu < CPU_SETSIZE && CPU_ISSET(cpu, &set);

		if (in && start < 0)
			start = cpu;
		if (!in && start >= 0 && off < size) {
			int last = cpu - 1;

			if (last == start)
				off += (size_t)snprintf(out + off, size - off, "%s%d", off ? "," : "", start);
			else
				off += (size_t)snprintf(out + off, size - off, "%s%d-%d", off ? "," : "", start, last);
			start = -1;
		}
	}
}

int hw_pin_thread(int cpu, struct ferry_err *err)
{
	char allowed[128];
	cpu_set_t *set;
	size_t size;
	int rc;

	if (cpu < 0 || cpu >= MAX_CPU_ID)
		return ferry_err_set(err, EINVAL, "pin: invalid cpu %d", cpu);
	set = CPU_ALLOC((size_t)cpu + 1);
	if (!set)
		return ferry_err_set(err, ENOMEM, "pin: out of memory");
	size = CPU_ALLOC_SIZE((size_t)cpu + 1);
	CPU_ZERO_S(size, set);
	CPU_SET_S((size_t)cpu, size, set);
	rc = pthread_setaffinity_np(pthread_self(), size, set);
	CPU_FREE(set);
	if (rc != 0) {
		allowed_cpus(allowed, sizeof(allowed));
		return ferry_err_set(err, rc, "pin: cannot pin thread to cpu %d: %s (allowed cpus: %s)", cpu,
				     strerror(rc), allowed);
	}
	LOG_DEBUG("pin: thread pinned to cpu %d", cpu);
	return 0;
}

int hw_pin_thread_to_node(int numa_node, struct ferry_err *err)
{
	struct bitmask *node_cpus;
	cpu_set_t cur, want;
	char allowed[128];
	int n = 0, rc;

	if (numa_available() < 0)
		return ferry_err_set(err, ENOSYS, "pin to node %d: NUMA is not available (libnuma)", numa_node);
	if (numa_node < 0 || numa_node > numa_max_node())
		return ferry_err_set(err, EINVAL, "pin to node %d: no such node", numa_node);
	rc = pthread_getaffinity_np(pthread_self(), sizeof(cur), &cur);
	if (rc != 0)
		return ferry_err_set(err, rc, "pin to node %d: %s", numa_node, strerror(rc));
	node_cpus = numa_allocate_cpumask();
	if (!node_cpus)
		return ferry_err_set(err, ENOMEM, "pin to node %d: out of memory", numa_node);
	if (numa_node_to_cpus(numa_node, node_cpus) != 0) {
		rc = errno;
		numa_free_cpumask(node_cpus);
		return ferry_err_set(err, rc, "pin to node %d: %s", numa_node, strerror(rc));
	}
	CPU_ZERO(&want);
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (CPU_ISSET(cpu, &cur) && numa_bitmask_isbitset(node_cpus, (unsigned)cpu)) {
			CPU_SET(cpu, &want);
			n++;
		}
	}
	numa_free_cpumask(node_cpus);
	if (n == 0) {
		allowed_cpus(allowed, sizeof(allowed));
		return ferry_err_set(err, ENOENT, "pin to node %d: none of its CPUs is allowed (allowed cpus: %s)",
				     numa_node, allowed);
	}
	rc = pthread_setaffinity_np(pthread_self(), sizeof(want), &want);
	if (rc != 0)
		return ferry_err_set(err, rc, "pin to node %d: %s", numa_node, strerror(rc));
	LOG_DEBUG("pin: thread on node %d (%d cpus)", numa_node, n);
	return 0;
}

int hw_bind_memory(int numa_node, struct ferry_err *err)
{
	struct bitmask *allowed;
	int ok;

	if (numa_available() < 0)
		return ferry_err_set(err, ENOSYS, "bind memory: NUMA is not available on this system (libnuma)");
	if (numa_node < 0) {
		numa_set_localalloc();
		LOG_DEBUG("bind memory: back to local allocation");
		return 0;
	}
	if (numa_node > numa_max_node())
		return ferry_err_set(err, EINVAL, "bind memory: NUMA node %d does not exist (highest is %d)",
				     numa_node, numa_max_node());
	allowed = numa_get_mems_allowed();
	ok = allowed && numa_bitmask_isbitset(allowed, (unsigned)numa_node);
	if (allowed)
		numa_bitmask_free(allowed);
	if (!ok)
		return ferry_err_set(err, EINVAL, "bind memory: NUMA node %d has no memory this process may use",
				     numa_node);
	/* Preferred, not strict: a full node spills over instead of invoking the OOM killer. */
	numa_set_preferred(numa_node);
	if (numa_preferred() != numa_node)
		return ferry_err_set(err, EIO, "bind memory: could not set node %d as preferred (now %d)",
				     numa_node, numa_preferred());
	LOG_DEBUG("bind memory: thread allocations prefer node %d", numa_node);
	return 0;
}
