/*
 * Pool memory for ferry-memsrv: the node (configured, or nearest the NIC of
 * the listen address) and hw_region_alloc_policy with the configured
 * hugepage policy: auto (hugetlb, else THP, else 4 KiB, every fallback
 * logged), on (hugetlb or refuse to start), off (plain 4 KiB pages).
 */
#include "dataplane/memsrv/pool.h"

#include <errno.h>
#include <numa.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/common/units.h"

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

int memsrv_pool_open(const struct memsrv_config *cfg, struct memsrv_pool *pool, struct ferry_err *err)
{
	char why[256], sz[FERRY_SIZE_STR], where[32];
	int node = choose_node(cfg, why, sizeof(why));
	enum hw_huge_policy policy;
	int rc;

	memset(pool, 0, sizeof(*pool));
	pool->size = cfg->pool_size;
	/* Checked here too so that the message names the pool's configuration. */
	if (node >= 0 && numa_available() >= 0 && node > numa_max_node())
		return ferry_err_set(err, EINVAL, "pool: NUMA node %d does not exist (this machine has nodes 0..%d)",
				     node, numa_max_node());
	if (node >= 0)
		snprintf(where, sizeof(where), "node %d", node);
	else
		snprintf(where, sizeof(where), "no node");
	ferry_size_format(cfg->pool_size, sz, sizeof(sz));

	policy = cfg->hugepages == MEMSRV_HUGEPAGES_ON    ? HW_HUGE_REQUIRE :
		 cfg->hugepages == MEMSRV_HUGEPAGES_OFF   ? HW_HUGE_NEVER :
							    HW_HUGE_AUTO;
	rc = hw_region_alloc_policy(cfg->pool_size, node, cfg->prefault, policy, &pool->region, err);
	if (rc) {
		ferry_err_prefix(err, "pool of %s on %s%s: ", sz, where,
				 policy == HW_HUGE_REQUIRE ? " (hugepages = on; hugepages = auto falls back)" : "");
		return rc;
	}
	LOG_INFO("pool: %s on %s (%s), memory %s pages%s, bound %s", sz, where, why,
		 hw_mem_kind_name(pool->region.kind), cfg->prefault ? ", pre-faulted" : "",
		 pool->region.numa_node >= 0 ? "yes" : "no");
	return 0;
}

void memsrv_pool_close(struct memsrv_pool *pool)
{
	if (pool->region.addr)
		hw_region_free(&pool->region);
}
