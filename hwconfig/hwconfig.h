/**
 * @file hwconfig.h
 * Where Ferry runs on a machine: hwloc topology (NUMA nodes, cores, SMT
 * siblings, PCI network and RDMA devices with their NUMA node), the placement
 * Ferry derives from it (NUMA node and cores nearest the NIC that carries the
 * traffic), libnuma-backed allocation of big pools, and thread pinning.
 *
 * Machines without NUMA (or without a PCI NIC, like a VM with virtio) report
 * one node (0) and every device's node as -1 ("unknown"); placement then
 * falls back to node 0 and says so in its reason string.
 */
#ifndef FERRY_HWCONFIG_H
#define FERRY_HWCONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "dataplane/common/ferry_err.h"

#define HW_NAME_MAX 64
#define HW_MAX_NODES 64
#define HW_MAX_CPUS 1024
#define HW_MAX_DEVICES 64

struct hw_numa_node {
	int os_index;
	uint64_t memory_bytes;            /**< local memory (0 if unknown) */
	int ncores, npus;
	uint64_t hugepages_2m_free;       /**< free 2 MiB hugepages on this node */
};

struct hw_core {
	int os_index;                     /**< core id */
	int numa_node;
	int npus;
	int pus[8];                       /**< OS cpu ids of its hardware threads (SMT siblings) */
};

enum hw_device_kind { HW_DEV_NET = 0, HW_DEV_RDMA = 1 };

struct hw_device {
	enum hw_device_kind kind;
	char name[HW_NAME_MAX];           /**< "eth0", "mlx5_0", "rxe0" */
	char pci_addr[HW_NAME_MAX];       /**< "0000:3b:00.0" or "" for virtual devices */
	int numa_node;                    /**< -1 when unknown */
	char netdev[HW_NAME_MAX];         /**< RDMA: the net device it is bound to, if known */
	char ipv4[HW_NAME_MAX];           /**< NET: first IPv4 address, or "" */
};

struct hw_topology {
	int nnodes;
	struct hw_numa_node nodes[HW_MAX_NODES];
	int ncores;
	struct hw_core cores[HW_MAX_CPUS];
	int npus;
	int ndevices;
	struct hw_device devices[HW_MAX_DEVICES];
	size_t page_size;
	size_t hugepage_size;             /**< default hugepage size (0 if none) */
	void *hwloc;                      /**< hwloc_topology_t, private */
};

/** Placement Ferry would choose for traffic through one device. */
struct hw_placement {
	char device[HW_NAME_MAX];         /**< net or RDMA device chosen ("" if none) */
	char rdma_device[HW_NAME_MAX];    /**< RDMA device for that traffic: the chosen one, or the
					       one bound to the chosen NIC ("" if none) */
	int numa_node;                    /**< node for pools and buffers */
	int poll_cpu;                     /**< CPU for the polling thread (first PU of a core on that node) */
	char reason[160];                 /**< why, in words */
	int matched;                      /**< 1 if what was NULL/"" or named a device, interface or
					       IPv4 address of this host; 0 if nothing matched */
};

/** Discover the topology. Fills @p topo (caller-owned, may be large: allocate it). */
int hw_topology_load(struct hw_topology *topo, struct ferry_err *err);
void hw_topology_free(struct hw_topology *topo);

/**
 * Choose the placement for traffic via @p what: a net device name, an RDMA
 * device name, an IPv4 address of this host, or NULL/"" (first non-loopback
 * NIC). Never fails: unknown inputs fall back to node 0 with a reason.
 */
void hw_place(const struct hw_topology *topo, const char *what, struct hw_placement *placement);

/**
 * Free 2 MiB hugepages on @p numa_node (-1: the whole machine), read now from
 * sysfs (/proc/meminfo as fallback); 0 when none or unknown.
 */
uint64_t hw_hugepages_2m_free(int numa_node);

/** Print the topology and placement as text (human) or JSON (jansson). */
int hw_print_text(const struct hw_topology *topo, const struct hw_placement *placement, void *file);
int hw_print_json(const struct hw_topology *topo, const struct hw_placement *placement, void *file);

/** Kinds of memory a pool ended up on. */
enum hw_mem_kind { HW_MEM_HUGETLB_2M = 0, HW_MEM_THP = 1, HW_MEM_4K = 2 };
const char *hw_mem_kind_name(enum hw_mem_kind kind);

/** A pool allocation. */
struct hw_region {
	void *addr;
	size_t length;                    /**< rounded up to the page size used */
	enum hw_mem_kind kind;
	int numa_node;                    /**< node it was bound to, -1 if not bound */
};

/** Whether a region may, must or must not use 2 MiB hugetlb pages. */
enum hw_huge_policy {
	HW_HUGE_AUTO = 0,     /**< hugetlb if enough are reserved, else THP, else 4 KiB */
	HW_HUGE_REQUIRE,      /**< hugetlb or fail with a message saying how many are missing */
	HW_HUGE_NEVER,        /**< plain 4 KiB pages, THP advised off */
};

/**
 * Allocate @p length bytes for a memory pool on @p numa_node (-1: no binding):
 * 2 MiB hugetlb pages if enough are reserved, else anonymous memory with THP
 * advised, else plain 4 KiB pages; every fallback is logged with its reason.
 * The memory is bound with libnuma (mbind) and pre-faulted when @p prefault.
 */
int hw_region_alloc(size_t length, int numa_node, int prefault, struct hw_region *region,
		    struct ferry_err *err);
/** hw_region_alloc with an explicit hugepage @p policy (hw_region_alloc is HW_HUGE_AUTO). */
int hw_region_alloc_policy(size_t length, int numa_node, int prefault, enum hw_huge_policy policy,
			   struct hw_region *region, struct ferry_err *err);
void hw_region_free(struct hw_region *region);

/** Pin the calling thread to @p cpu. */
int hw_pin_thread(int cpu, struct ferry_err *err);
/**
 * Run the calling thread on the CPUs of @p numa_node, within the CPUs it is
 * already allowed (an operator's taskset/cgroup choice is kept, only
 * narrowed). -ENOENT with a message when the two sets do not meet; the
 * affinity is then unchanged.
 */
int hw_pin_thread_to_node(int numa_node, struct ferry_err *err);

/**
 * Bind the calling thread's future allocations to @p numa_node (libnuma,
 * preferred policy: a full node spills over rather than failing); -1 returns
 * to local allocation. Fails with a message for a node that does not exist
 * or when NUMA is unavailable.
 */
int hw_bind_memory(int numa_node, struct ferry_err *err);

#endif /* FERRY_HWCONFIG_H */
