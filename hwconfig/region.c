/*
 * Pool allocation (hwconfig.h): 2 MiB hugetlb pages when enough are free on
 * the node, else anonymous memory advised for transparent huge pages, else
 * plain pages; bound to a NUMA node with mbind and optionally pre-faulted.
 */
#include "hwconfig/hwconfig.h"

#include <errno.h>
#include <numa.h>
#include <numaif.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dataplane/common/ferry_log.h"

#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << MAP_HUGE_SHIFT)
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define HUGE_2M ((size_t)2 << 20)
#define THP_ENABLED "/sys/kernel/mm/transparent_hugepage/enabled"

const char *hw_mem_kind_name(enum hw_mem_kind kind)
{
	switch (kind) {
	case HW_MEM_HUGETLB_2M:
		return "hugetlb-2M";
	case HW_MEM_THP:
		return "thp";
	case HW_MEM_4K:
		return "4k";
	}
	return "unknown";
}

static size_t round_up(size_t n, size_t to)
{
	return (n + to - 1) / to * to;
}

static void fmt_size(size_t n, char *out, size_t size)
{
	if (n >= ((size_t)1 << 30))
		snprintf(out, size, "%.1f GiB", (double)n / (double)((size_t)1 << 30));
	else if (n >= ((size_t)1 << 20))
		snprintf(out, size, "%.1f MiB", (double)n / (double)((size_t)1 << 20));
	else
		snprintf(out, size, "%.1f KiB", (double)n / 1024.0);
}

/* THP mode: the bracketed word of THP_ENABLED ("always", "madvise", "never"), or "" if absent. */
static void thp_mode(char *out, size_t size)
{
	char line[128];
	FILE *f = fopen(THP_ENABLED, "re");
	const char *open_br, *close_br;

	out[0] = '\0';
	if (!f)
		return;
	if (fgets(line, sizeof(line), f) && (open_br = strchr(line, '[')) && (close_br = strchr(open_br, ']')))
		snprintf(out, size, "%.*s", (int)(close_br - open_br - 1), open_br + 1);
	fclose(f);
}

/* Anonymous mapping of @p len bytes whose start is 2 MiB aligned (so THP can back all of it). */
static void *map_aligned_2m(size_t len)
{
	size_t span = len + HUGE_2M;
	uint8_t *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uintptr_t start;
	size_t head, tail;

	if (raw == MAP_FAILED)
		return MAP_FAILED;
	start = ((uintptr_t)raw + HUGE_2M - 1) & ~(uintptr_t)(HUGE_2M - 1);
	head = start - (uintptr_t)raw;
	tail = span - head - len;
	if (head)
		munmap(raw, head);
	if (tail)
		munmap((uint8_t *)start + len, tail);
	return (void *)start;
}

/* -EINVAL unless @p node is a node this process may allocate from. */
static int check_node(int node, struct ferry_err *err)
{
	struct bitmask *allowed;
	int ok;

	if (node > numa_max_node())
		return ferry_err_set(err, EINVAL, "region: NUMA node %d does not exist (highest is %d)", node,
				     numa_max_node());
	allowed = numa_get_mems_allowed();
	ok = allowed && numa_bitmask_isbitset(allowed, (unsigned)node);
	if (allowed)
		numa_bitmask_free(allowed);
	if (!ok)
		return ferry_err_set(err, EINVAL, "region: NUMA node %d has no memory this process may use",
				     node);
	return 0;
}

/*
 * Bind [addr, addr+len) to @p node. Hugetlb pages come from per-node pools
 * that may be empty even when the machine-wide count was enough; a strict
 * binding would then kill us with SIGBUS at fault time, so hugetlb gets
 * MPOL_PREFERRED (and a warning if the pages land elsewhere).
 */
static int bind_node(void *addr, size_t len, int node, enum hw_mem_kind kind)
{
	struct bitmask *mask = numa_allocate_nodemask();
	int mode = kind == HW_MEM_HUGETLB_2M ? MPOL_PREFERRED : MPOL_BIND;
	int rc;

	if (!mask)
		return -ENOMEM;
	numa_bitmask_setbit(mask, (unsigned)node);
	rc = mbind(addr, len, mode, mask->maskp, mask->size + 1, 0) == 0 ? 0 : -errno;
	numa_bitmask_free(mask);
	return rc;
}

static int prefault(void *addr, size_t len, size_t stride)
{
	volatile uint8_t *p = addr;

	/* Linux >= 5.14 populates in one call and reports failure instead of SIGBUS. */
	if (madvise(addr, len, MADV_POPULATE_WRITE) == 0)
		return 0;
	if (errno != EINVAL)
		return -errno;
	for (size_t off = 0; off < len; off += stride)
		p[off] = 0;
	return 0;
}

/* A 2 MiB hugetlb mapping if enough pages are free; MAP_FAILED (with the reason logged) if not. */
static void *try_hugetlb(size_t len, int node, const char *what)
{
	uint64_t need = len / HUGE_2M, have = hw_hugepages_2m_free(node);
	char where[32];
	void *addr;

	if (node >= 0)
		snprintf(where, sizeof(where), "on node %d", node);
	else
		snprintf(where, sizeof(where), "on this machine");
	if (have < need) {
		LOG_INFO("region %s: %llu free 2 MiB hugepages %s, %llu needed; not using hugetlb "
			 "(reserve them with vm.nr_hugepages)",
			 what, (unsigned long long)have, where, (unsigned long long)need);
		return MAP_FAILED;
	}
	addr = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB,
		    -1, 0);
	if (addr == MAP_FAILED)
		LOG_WARN("region %s: hugetlb mmap failed although %llu 2 MiB hugepages were free %s: %s; "
			 "falling back",
			 what, (unsigned long long)have, where, strerror(errno));
	return addr;
}

/* Anonymous memory, with THP advised when it can help; sets *kind and *len. */
static void *map_anon(size_t length, size_t page, const char *what, enum hw_mem_kind *kind, size_t *len)
{
	char mode[32];
	void *addr;

	thp_mode(mode, sizeof(mode));
	if (length >= HUGE_2M && mode[0] && strcmp(mode, "never") != 0) {
		*len = round_up(length, HUGE_2M);
		addr = map_aligned_2m(*len);
		if (addr == MAP_FAILED)
			return addr;
		if (madvise(addr, *len, MADV_HUGEPAGE) == 0) {
			*kind = HW_MEM_THP;
			return addr;
		}
		LOG_WARN("region %s: madvise(MADV_HUGEPAGE) failed: %s; using 4 KiB pages", what, strerror(errno));
		*kind = HW_MEM_4K;
		return addr;
	}
	if (length < HUGE_2M)
		LOG_INFO("region %s: smaller than a 2 MiB huge page; using 4 KiB pages", what);
	else if (!mode[0])
		LOG_INFO("region %s: transparent huge pages not supported by this kernel; using 4 KiB pages", what);
	else
		LOG_INFO("region %s: transparent huge pages disabled ([never] in %s); using 4 KiB pages", what,
			 THP_ENABLED);
	*kind = HW_MEM_4K;
	*len = round_up(length, page);
	return mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

/*
 * Bind a fresh mapping to @p numa_node (when asked and possible) and pre-fault
 * it (when asked). *bound is the node it ended up bound to, or -1. A binding
 * failure only warns; a pre-fault failure is returned.
 */
static int settle(void *addr, size_t len, enum hw_mem_kind kind, int numa_node, int numa_ok, int prefault_pages,
		  size_t page, const char *what, int *bound)
{
	int rc;

	*bound = -1;
	if (numa_node >= 0 && !numa_ok) {
		LOG_WARN("region %s: NUMA is not available (libnuma); not binding to node %d", what, numa_node);
	} else if (numa_node >= 0) {
		rc = bind_node(addr, len, numa_node, kind);
		if (rc == 0)
			*bound = numa_node;
		else
			LOG_WARN("region %s: mbind to node %d failed: %s; memory is not bound", what, numa_node,
				 strerror(-rc));
	}
	if (!prefault_pages)
		return 0;
	rc = prefault(addr, len, kind == HW_MEM_HUGETLB_2M ? HUGE_2M : page);
	if (rc != 0)
		return rc;
	if (*bound >= 0) {
		int landed = -1;

		if (get_mempolicy(&landed, NULL, 0, addr, MPOL_F_NODE | MPOL_F_ADDR) == 0 && landed != numa_node)
			LOG_WARN("region %s: pages landed on node %d, not node %d", what, landed, numa_node);
	}
	return 0;
}

/* Plain 4 KiB pages with THP advised off (HW_HUGE_NEVER); sets *len. */
static void *map_small(size_t length, size_t page, size_t *len)
{
	void *addr;

	*len = round_up(length, page);
	addr = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	/* Best effort: a kernel without THP refuses the advice, which is what we want anyway. */
	if (addr != MAP_FAILED)
		(void)madvise(addr, *len, MADV_NOHUGEPAGE);
	return addr;
}

int hw_region_alloc(size_t length, int numa_node, int prefault_pages, struct hw_region *region,
		    struct ferry_err *err)
{
	return hw_region_alloc_policy(length, numa_node, prefault_pages, HW_HUGE_AUTO, region, err);
}

int hw_region_alloc_policy(size_t length, int numa_node, int prefault_pages, enum hw_huge_policy policy,
			   struct hw_region *region, struct ferry_err *err)
{
	long sys_page = sysconf(_SC_PAGESIZE);
	size_t page = sys_page > 0 ? (size_t)sys_page : 4096, len;
	int numa_ok = numa_available() >= 0, bound = -1, rc;
	enum hw_mem_kind kind = HW_MEM_HUGETLB_2M;
	char what[32];
	void *addr;

	memset(region, 0, sizeof(*region));
	region->numa_node = -1;
	if (length == 0)
		return ferry_err_set(err, EINVAL, "region: length is 0");
	if (length > SIZE_MAX / 2)
		return ferry_err_set(err, EINVAL, "region: length %zu is too large", length);
	if (numa_node < -1)
		return ferry_err_set(err, EINVAL, "region: invalid NUMA node %d", numa_node);
	if (numa_node >= 0 && numa_ok && (rc = check_node(numa_node, err)) != 0)
		return rc;
	fmt_size(length, what, sizeof(what));

	len = round_up(length, HUGE_2M);
	addr = policy == HW_HUGE_NEVER ? MAP_FAILED : try_hugetlb(len, numa_node, what);
	if (addr != MAP_FAILED) {
		rc = settle(addr, len, kind, numa_node, numa_ok, prefault_pages, page, what, &bound);
		if (rc != 0) {
			/* The node's pool ran dry under us (pages are taken at fault time). */
			LOG_WARN("region %s: cannot pre-fault 2 MiB hugetlb pages: %s; falling back", what,
				 strerror(-rc));
			munmap(addr, len);
			addr = MAP_FAILED;
		}
	}
	if (addr == MAP_FAILED && policy == HW_HUGE_REQUIRE) {
		char where[32];

		if (numa_node >= 0)
			snprintf(where, sizeof(where), "on node %d", numa_node);
		else
			snprintf(where, sizeof(where), "on this machine");
		return ferry_err_set(err, ENOMEM,
				     "region %s: 2 MiB hugepages required, but only %llu free %s for %llu needed "
				     "(reserve them: sysctl vm.nr_hugepages=N)",
				     what, (unsigned long long)hw_hugepages_2m_free(numa_node), where,
				     (unsigned long long)(len / HUGE_2M));
	}
	if (addr == MAP_FAILED) {
		if (policy == HW_HUGE_NEVER) {
			kind = HW_MEM_4K;
			addr = map_small(length, page, &len);
		} else {
			addr = map_anon(length, page, what, &kind, &len);
		}
		if (addr == MAP_FAILED) {
			int e = errno;

			return ferry_err_set(err, e, "region: cannot map %s: %s", what, strerror(e));
		}
		rc = settle(addr, len, kind, numa_node, numa_ok, prefault_pages, page, what, &bound);
		if (rc != 0) {
			munmap(addr, len);
			return ferry_err_set(err, rc, "region: cannot pre-fault %s of %s pages%s: %s", what,
					     hw_mem_kind_name(kind), bound >= 0 ? " bound to the node" : "",
					     strerror(-rc));
		}
	}
	region->addr = addr;
	region->length = len;
	region->kind = kind;
	region->numa_node = bound;
	if (bound >= 0)
		LOG_INFO("region %s: %zu bytes of %s pages at %p, bound to node %d%s", what, len,
			 hw_mem_kind_name(kind), addr, bound, prefault_pages ? ", pre-faulted" : "");
	else
		LOG_INFO("region %s: %zu bytes of %s pages at %p, not bound to a node%s", what, len,
			 hw_mem_kind_name(kind), addr, prefault_pages ? ", pre-faulted" : "");
	return 0;
}

void hw_region_free(struct hw_region *region)
{
	if (!region)
		return;
	if (region->addr && region->length)
		munmap(region->addr, region->length);
	memset(region, 0, sizeof(*region));
	region->numa_node = -1;
}
