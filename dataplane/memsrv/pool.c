/*
 * Pool memory for ferry-memsrv.
 *
 * hugepages = auto and on go through hw_region_alloc (hugetlb, else THP,
 * else 4 KiB, every fallback logged); "on" refuses anything but hugetlb.
 * hw_region_alloc has no way to *avoid* hugetlb, so "off" maps the pool here
 * (plain pages, THP disabled for the range) with the same binding and
 * pre-faulting rules.
 */
#include "dataplane/memsrv/pool.h"

#include <errno.h>
#include <numa.h>
#include <numaif.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/memsrv/units.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define HUGE_2M ((uint64_t)2 << 20)

/* Node for the pool: configured, or the one nearest the NIC of the listen address. */
static int choose_node(const struct memsrv_config *cfg, char *why, size_t why_len)
{
	struct hw_placement pl;
	struct hw_topology *topo;
	struct ferry_err err = { 0 };
	int node;

	if (cfg->numa_node != MEMSRV_NUMA_AUTO) {
		snprintf(why, why_len, "configured");
		return cfg->numa_node;
	}
	topo = calloc(1, sizeof(*topo));   /* large: keep it off the stack */
	if (!topo) {
		snprintf(why, why_len, "auto, but out of memory reading the topology; not bound");
		return -1;
	}
	if (hw_topology_load(topo, &err)) {
		snprintf(why, why_len, "auto, but the topology is unknown (%.180s); not bound", err.msg);
		free(topo);
		return -1;
	}
	/* 0.0.0.0 names no NIC: let hw_place pick the first non-loopback one. */
	hw_place(topo, strcmp(cfg->listen, "0.0.0.0") == 0 ? NULL : cfg->listen, &pl);
	snprintf(why, why_len, "auto: %s", pl.reason);
	node = pl.numa_node;
	hw_topology_free(topo);
	free(topo);
	return node;
}

/* hugepages = off: plain pages, bound and pre-faulted like hw_region_alloc does. */
static int map_plain(size_t size, int node, bool prefault, struct hw_region *r, struct ferry_err *err)
{
	void *addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (addr == MAP_FAILED)
		return ferry_err_set(err, errno, "pool: cannot map %zu bytes: %s", size, strerror(errno));
	/* Best effort: a kernel without THP refuses the advice, which is what we want anyway. */
	(void)madvise(addr, size, MADV_NOHUGEPAGE);
	r->addr = addr;
	r->length = size;
	r->kind = HW_MEM_4K;
	r->numa_node = -1;
	if (node >= 0 && numa_available() >= 0) {
		struct bitmask *mask = numa_allocate_nodemask();

		if (mask) {
			numa_bitmask_setbit(mask, (unsigned)node);
			if (mbind(addr, size, MPOL_BIND, mask->maskp, mask->size + 1, 0) == 0)
				r->numa_node = node;
			else
				LOG_WARN("pool: mbind to node %d failed: %s; memory is not bound", node,
					 strerror(errno));
			numa_bitmask_free(mask);
		}
	}
	if (prefault && madvise(addr, size, MADV_POPULATE_WRITE) != 0) {
		if (errno != EINVAL) {
			int e = errno;

			munmap(addr, size);
			memset(r, 0, sizeof(*r));
			return ferry_err_set(err, e, "pool: cannot pre-fault %zu bytes: %s", size, strerror(e));
		}
		for (size_t off = 0; off < size; off += 4096)   /* kernels before 5.14 */
			((volatile uint8_t *)addr)[off] = 0;
	}
	return 0;
}

int memsrv_pool_open(const struct memsrv_config *cfg, struct memsrv_pool *pool, struct ferry_err *err)
{
	char why[256], sz[MEMSRV_SIZE_STR], where[32];
	int node = choose_node(cfg, why, sizeof(why));
	int rc;

	memset(pool, 0, sizeof(*pool));
	pool->size = cfg->pool_size;
	/* Same answer for every hugepage mode (hw_region_alloc checks too, map_plain would only warn). */
	if (node >= 0 && numa_available() >= 0 && node > numa_max_node())
		return ferry_err_set(err, EINVAL, "pool: NUMA node %d does not exist (this machine has nodes 0..%d)",
				     node, numa_max_node());
	if (node >= 0)
		snprintf(where, sizeof(where), "node %d", node);
	else
		snprintf(where, sizeof(where), "no node");
	memsrv_size_format(cfg->pool_size, sz, sizeof(sz));

	if (cfg->hugepages == MEMSRV_HUGEPAGES_ON) {
		uint64_t need = (cfg->pool_size + HUGE_2M - 1) / HUGE_2M;
		uint64_t have = hw_hugepages_2m_free(node);

		if (have < need)
			return ferry_err_set(err, ENOMEM,
					     "pool: hugepages = on, but only %llu free 2 MiB hugepages on %s for %llu "
					     "needed (reserve them: sysctl vm.nr_hugepages=N, or set hugepages = auto)",
					     (unsigned long long)have, node >= 0 ? where : "this machine",
					     (unsigned long long)need);
	}
	if (cfg->hugepages == MEMSRV_HUGEPAGES_OFF) {
		rc = map_plain(cfg->pool_size, node, cfg->prefault, &pool->region, err);
		pool->own_mapping = rc == 0;
	} else {
		rc = hw_region_alloc(cfg->pool_size, node, cfg->prefault, &pool->region, err);
	}
	if (rc) {
		ferry_err_prefix(err, "pool of %s on %s: ", sz, where);
		return rc;
	}
	if (cfg->hugepages == MEMSRV_HUGEPAGES_ON && pool->region.kind != HW_MEM_HUGETLB_2M) {
		/* hw_region_alloc fell back although the pages looked free (raced, or mmap failed). */
		memsrv_pool_close(pool);
		return ferry_err_set(err, ENOMEM, "pool: hugepages = on, but no 2 MiB hugetlb pages could be mapped "
				     "(see the log line above)");
	}
	LOG_INFO("pool: %s on %s (%s), memory %s pages%s, bound %s", sz, where, why,
		 hw_mem_kind_name(pool->region.kind), cfg->prefault ? ", pre-faulted" : "",
		 pool->region.numa_node >= 0 ? "yes" : "no");
	return 0;
}

void memsrv_pool_close(struct memsrv_pool *pool)
{
	if (pool->own_mapping) {
		if (pool->region.addr)
			munmap(pool->region.addr, pool->region.length);
		memset(&pool->region, 0, sizeof(pool->region));
		pool->own_mapping = false;
	} else if (pool->region.addr) {
		hw_region_free(&pool->region);
	}
}
