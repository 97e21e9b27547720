/**
 * @file extent_alloc.h
 * Extent allocator of the memory server: hands out page-aligned byte ranges
 * ("extents") of one pool to clients, with per-client accounting and quota.
 *
 * The allocator only does arithmetic on offsets within [0, pool_bytes): it
 * never touches pool memory, does no I/O and takes no locks (the server runs
 * it from its single event-loop thread). That keeps it unit-testable against
 * a trivial bitmap model.
 *
 * Policy: first fit over a list of free ranges sorted by offset; a freed
 * extent is merged with the free ranges on both sides, so free ranges are
 * never adjacent. Allocation and free are O(n) in the number of free ranges
 * (memmove of a dense array, which beats a tree for the few hundred ranges a
 * pool sees); lookups by extent id are O(1) through a hash table.
 *
 * Errors are negative errno values with a message in the optional ferry_err:
 *   -EINVAL   length 0 or not a multiple of EA_UNIT
 *   -EDQUOT   the client would hold more than its quota (checked first)
 *   -ENOSPC   no free range is large enough (pool full, too fragmented, or
 *             the request is larger than the whole pool)
 *   -ENOENT   unknown extent id, or an extent that belongs to another client
 *   -ENOMEM   bookkeeping allocation failed
 */
#ifndef FERRY_MEMSRV_EXTENT_ALLOC_H
#define FERRY_MEMSRV_EXTENT_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#include "dataplane/common/ferry_err.h"

/** Granularity of extents: offsets and lengths are multiples of this. */
#define EA_UNIT 4096u

struct extent_alloc;
struct ea_client;

/** An allocated extent, as reported to the caller. */
struct ea_extent {
	uint32_t id;         /**< never 0; not reused while the extent is live */
	uint64_t offset;     /**< from the start of the pool, multiple of EA_UNIT */
	uint64_t length;     /**< multiple of EA_UNIT */
};

/** Allocator-wide figures. */
struct ea_stats {
	uint64_t pool_bytes;
	uint64_t bytes_allocated;
	uint64_t bytes_free;
	uint64_t largest_free;   /**< longest free range: the largest extent that fits now */
	uint32_t free_ranges;
	uint32_t extents;
	uint32_t clients;
};

/**
 * Create an allocator for a pool of @p pool_bytes (a non-zero multiple of
 * EA_UNIT). @return 0 or -EINVAL/-ENOMEM.
 */
int ea_create(uint64_t pool_bytes, struct extent_alloc **ea, struct ferry_err *err);
/** Destroy the allocator and every client and extent it still tracks. */
void ea_destroy(struct extent_alloc *ea);

/**
 * Open an accounting record for a client that may hold at most @p quota bytes
 * at once (0 = no limit beyond the pool). @return 0 or -ENOMEM.
 */
int ea_client_open(struct extent_alloc *ea, uint64_t quota, struct ea_client **client, struct ferry_err *err);
/**
 * Release every extent @p client still holds and forget the client.
 * @return number of extents released; *@p bytes (optional) gets their total.
 */
uint32_t ea_client_close(struct extent_alloc *ea, struct ea_client *client, uint64_t *bytes);
/** Bytes @p client holds now. */
uint64_t ea_client_bytes(const struct ea_client *client);
/** Extents @p client holds now. */
uint32_t ea_client_extents(const struct ea_client *client);
uint64_t ea_client_quota(const struct ea_client *client);

/** Allocate @p length bytes for @p client. */
int ea_alloc(struct extent_alloc *ea, struct ea_client *client, uint64_t length, struct ea_extent *out,
	     struct ferry_err *err);
/**
 * Look up extent @p id of @p client without freeing it. -ENOENT when the id
 * is unknown or the extent belongs to someone else (the two are not told
 * apart, so a client learns nothing about other clients' ids).
 */
int ea_lookup(const struct extent_alloc *ea, const struct ea_client *client, uint32_t id, struct ea_extent *out,
	      struct ferry_err *err);
/** Free extent @p id of @p client; same -ENOENT rule as ea_lookup. */
int ea_free(struct extent_alloc *ea, struct ea_client *client, uint32_t id, struct ferry_err *err);
/**
 * Move extent @p id from @p from to @p to, unchanged (same id, offset and
 * bytes): how a kept extent changes hands. Checked against @p to's quota
 * like an allocation (-EDQUOT, nothing moves); -ENOENT as ea_lookup.
 */
int ea_transfer(struct extent_alloc *ea, struct ea_client *from, uint32_t id, struct ea_client *to,
		struct ferry_err *err);

void ea_get_stats(const struct extent_alloc *ea, struct ea_stats *stats);

/**
 * Check every internal invariant (free list sorted, in bounds, coalesced,
 * disjoint from live extents; free + allocated == pool; per-client sums and
 * quotas; hash table consistent). O(n log n); for tests and debug builds.
 * @return 0 or -EFAULT with the first violation described in @p err.
 */
int ea_check(const struct extent_alloc *ea, struct ferry_err *err);

#endif /* FERRY_MEMSRV_EXTENT_ALLOC_H */
