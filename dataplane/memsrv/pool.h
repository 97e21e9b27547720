/**
 * @file pool.h
 * The memory server's pool: one big NUMA-local region that extents are cut
 * from. Node choice, hugepage policy and pre-faulting follow the config.
 */
#ifndef FERRY_MEMSRV_POOL_H
#define FERRY_MEMSRV_POOL_H

#include <stdbool.h>
#include <stddef.h>

#include "dataplane/common/ferry_err.h"
#include "dataplane/memsrv/config.h"
#include "hwconfig/hwconfig.h"

struct memsrv_pool {
	struct hw_region region;   /**< addr, length (>= the configured size), kind, node */
	size_t size;               /**< usable bytes: the configured pool size */
};

/**
 * Choose the node (config or hw_place for the listen address), allocate and
 * optionally pre-fault the pool, and log one line saying node, size and the
 * kind of memory obtained.
 */
int memsrv_pool_open(const struct memsrv_config *cfg, struct memsrv_pool *pool, struct ferry_err *err);
void memsrv_pool_close(struct memsrv_pool *pool);

#endif /* FERRY_MEMSRV_POOL_H */
