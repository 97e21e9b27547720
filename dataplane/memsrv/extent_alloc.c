/*
 * Extent allocator: first fit over a dense, offset-sorted array of free
 * ranges, plus an id -> extent hash table and a per-client list of extents.
 *
 * Invariants (checked by ea_check):
 *  - free ranges are sorted, non-empty, inside the pool, and never touch
 *    (a range that ends where the next begins would have been merged);
 *  - free bytes + allocated bytes == pool bytes, and no live extent overlaps
 *    a free range;
 *  - capacity of the free array >= live extents + 1, so that freeing (which
 *    may split nothing but can add one range) never has to allocate: freeing
 *    must not fail, in particular not when a client disconnects.
 */
#include "dataplane/memsrv/extent_alloc.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/common/units.h"

struct ea_range {
	uint64_t off, len;
};

struct ea_node {
	uint32_t id;
	uint64_t off, len;
	struct ea_client *owner;
	struct ea_node *prev, *next;      /* owner's list */
};

struct ea_client {
	uint64_t quota;                   /* 0 = unlimited */
	uint64_t bytes;
	uint32_t nextents;
	struct ea_node *head;
	struct ea_client *prev, *next;    /* allocator's client list */
};

struct extent_alloc {
	uint64_t pool_bytes;
	uint64_t allocated;

	struct ea_range *free;
	uint32_t nfree, free_cap;

	struct ea_node **tab;             /* open addressing, linear probing, NULL = empty */
	uint32_t tab_cap;                 /* power of two */
	uint32_t nextents;
	uint32_t next_id;

	struct ea_client *clients;
	uint32_t nclients;
};

/* ------------------------------------------------------------ hash table */

static uint32_t id_hash(uint32_t id, uint32_t cap)
{
	return (id * 2654435761u) & (cap - 1);   /* Knuth's multiplicative hash */
}

static struct ea_node *tab_find(const struct extent_alloc *ea, uint32_t id)
{
	for (uint32_t i = id_hash(id, ea->tab_cap);; i = (i + 1) & (ea->tab_cap - 1)) {
		struct ea_node *n = ea->tab[i];

		if (!n)
			return NULL;
		if (n->id == id)
			return n;
	}
}

static void tab_insert_nogrow(struct ea_node **tab, uint32_t cap, struct ea_node *node)
{
	uint32_t i = id_hash(node->id, cap);

	while (tab[i])
		i = (i + 1) & (cap - 1);
	tab[i] = node;
}

/* Keep the load factor <= 1/2 so probes stay short and the table never fills. */
static int tab_reserve(struct extent_alloc *ea, uint32_t want)
{
	if ((uint64_t)want * 2 <= ea->tab_cap)
		return 0;
	uint32_t cap = ea->tab_cap;

	while ((uint64_t)want * 2 > cap) {
		if (cap >= (1u << 30))
			return -ENOMEM;
		cap *= 2;
	}
	struct ea_node **tab = calloc(cap, sizeof(*tab));

	if (!tab)
		return -ENOMEM;
	for (uint32_t i = 0; i < ea->tab_cap; i++)
		if (ea->tab[i])
			tab_insert_nogrow(tab, cap, ea->tab[i]);
	free(ea->tab);
	ea->tab = tab;
	ea->tab_cap = cap;
	return 0;
}

/* Linear-probing delete with backward shift: no tombstones to clean up later. */
static void tab_remove(struct extent_alloc *ea, uint32_t id)
{
	uint32_t mask = ea->tab_cap - 1;
	uint32_t i = id_hash(id, ea->tab_cap);

	while (ea->tab[i]->id != id)
		i = (i + 1) & mask;
	for (uint32_t j = (i + 1) & mask; ea->tab[j]; j = (j + 1) & mask) {
		uint32_t home = id_hash(ea->tab[j]->id, ea->tab_cap);

		/* Move j back into the hole at i unless its home lies in (i, j]. */
		if (((j - home) & mask) >= ((j - i) & mask)) {
			ea->tab[i] = ea->tab[j];
			i = j;
		}
	}
	ea->tab[i] = NULL;
}

/* ------------------------------------------------------------ free list */

static int free_reserve(struct extent_alloc *ea, uint32_t want)
{
	if (want <= ea->free_cap)
		return 0;
	uint32_t cap = ea->free_cap ? ea->free_cap : 16;

	while (cap < want)
		cap *= 2;
	struct ea_range *r = realloc(ea->free, (size_t)cap * sizeof(*r));

	if (!r)
		return -ENOMEM;
	ea->free = r;
	ea->free_cap = cap;
	return 0;
}

/* Index of the first free range whose offset is greater than @off. */
static uint32_t free_upper_bound(const struct extent_alloc *ea, uint64_t off)
{
	uint32_t lo = 0, hi = ea->nfree;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (ea->free[mid].off <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void free_remove_at(struct extent_alloc *ea, uint32_t i)
{
	memmove(&ea->free[i], &ea->free[i + 1], (size_t)(ea->nfree - i - 1) * sizeof(ea->free[0]));
	ea->nfree--;
}

/* Give [off, off+len) back, merging with the neighbours on either side. */
static void free_insert(struct extent_alloc *ea, uint64_t off, uint64_t len)
{
	uint32_t i = free_upper_bound(ea, off);
	bool join_left = i > 0 && ea->free[i - 1].off + ea->free[i - 1].len == off;
	bool join_right = i < ea->nfree && off + len == ea->free[i].off;

	if (join_left && join_right) {
		ea->free[i - 1].len += len + ea->free[i].len;
		free_remove_at(ea, i);
	} else if (join_left) {
		ea->free[i - 1].len += len;
	} else if (join_right) {
		ea->free[i].off = off;
		ea->free[i].len += len;
	} else {
		/* Capacity was reserved when the extent was allocated. */
		memmove(&ea->free[i + 1], &ea->free[i], (size_t)(ea->nfree - i) * sizeof(ea->free[0]));
		ea->free[i] = (struct ea_range){ off, len };
		ea->nfree++;
	}
}

static uint64_t largest_free(const struct extent_alloc *ea)
{
	uint64_t best = 0;

	for (uint32_t i = 0; i < ea->nfree; i++)
		if (ea->free[i].len > best)
			best = ea->free[i].len;
	return best;
}

/* ------------------------------------------------------------ public API */

int ea_create(uint64_t pool_bytes, struct extent_alloc **out, struct ferry_err *err)
{
	struct extent_alloc *ea;

	if (pool_bytes == 0 || pool_bytes % EA_UNIT)
		return ferry_err_set(err, EINVAL, "pool size %llu is not a positive multiple of %u",
				     (unsigned long long)pool_bytes, EA_UNIT);
	ea = calloc(1, sizeof(*ea));
	if (!ea)
		goto nomem;
	ea->tab_cap = 64;
	ea->tab = calloc(ea->tab_cap, sizeof(*ea->tab));
	if (!ea->tab)
		goto nomem_ea;
	if (free_reserve(ea, 16))
		goto nomem_tab;
	ea->free[0] = (struct ea_range){ 0, pool_bytes };
	ea->nfree = 1;
	ea->pool_bytes = pool_bytes;
	ea->next_id = 1;
	*out = ea;
	return 0;

nomem_tab:
	free(ea->tab);
nomem_ea:
	free(ea);
nomem:
	return ferry_err_set(err, ENOMEM, "extent allocator: out of memory");
}

void ea_destroy(struct extent_alloc *ea)
{
	if (!ea)
		return;
	while (ea->clients)
		ea_client_close(ea, ea->clients, NULL);
	free(ea->tab);
	free(ea->free);
	free(ea);
}

int ea_client_open(struct extent_alloc *ea, uint64_t quota, struct ea_client **out, struct ferry_err *err)
{
	struct ea_client *c = calloc(1, sizeof(*c));

	if (!c)
		return ferry_err_set(err, ENOMEM, "extent allocator: out of memory");
	c->quota = quota;
	c->next = ea->clients;
	if (ea->clients)
		ea->clients->prev = c;
	ea->clients = c;
	ea->nclients++;
	*out = c;
	return 0;
}

static void release_node(struct extent_alloc *ea, struct ea_node *n)
{
	struct ea_client *c = n->owner;

	tab_remove(ea, n->id);
	if (n->prev)
		n->prev->next = n->next;
	else
		c->head = n->next;
	if (n->next)
		n->next->prev = n->prev;
	c->bytes -= n->len;
	c->nextents--;
	ea->allocated -= n->len;
	ea->nextents--;
	free_insert(ea, n->off, n->len);
	free(n);
}

uint32_t ea_client_close(struct extent_alloc *ea, struct ea_client *c, uint64_t *bytes)
{
	uint32_t count = 0;
	uint64_t total = 0;

	if (!c)
		return 0;
	while (c->head) {
		total += c->head->len;
		count++;
		release_node(ea, c->head);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		ea->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	ea->nclients--;
	free(c);
	if (bytes)
		*bytes = total;
	return count;
}

uint64_t ea_client_bytes(const struct ea_client *c)
{
	return c->bytes;
}

uint32_t ea_client_extents(const struct ea_client *c)
{
	return c->nextents;
}

uint64_t ea_client_quota(const struct ea_client *c)
{
	return c->quota;
}

static uint32_t next_free_id(struct extent_alloc *ea)
{
	/* Ids grow monotonically so a stale id is not soon re-issued; 0 is never used. */
	for (;;) {
		uint32_t id = ea->next_id++;

		if (id != 0 && !tab_find(ea, id))
			return id;
	}
}

int ea_alloc(struct extent_alloc *ea, struct ea_client *c, uint64_t length, struct ea_extent *out,
	     struct ferry_err *err)
{
	char s1[FERRY_SIZE_STR], s2[FERRY_SIZE_STR], s3[FERRY_SIZE_STR];
	struct ea_node *n;
	uint32_t i;

	if (length == 0 || length % EA_UNIT)
		return ferry_err_set(err, EINVAL, "extent length %llu is not a positive multiple of %u",
				     (unsigned long long)length, EA_UNIT);
	if (c->quota && (length > c->quota || c->bytes + length > c->quota))
		return ferry_err_set(err, EDQUOT, "quota exceeded: %s requested, %s held of a %s quota",
				     ferry_size_format(length, s1, sizeof(s1)),
				     ferry_size_format(c->bytes, s2, sizeof(s2)),
				     ferry_size_format(c->quota, s3, sizeof(s3)));
	if (length > ea->pool_bytes)
		return ferry_err_set(err, ENOSPC, "pool full: %s requested, larger than the whole pool (%s)",
				     ferry_size_format(length, s1, sizeof(s1)),
				     ferry_size_format(ea->pool_bytes, s2, sizeof(s2)));
	for (i = 0; i < ea->nfree; i++)
		if (ea->free[i].len >= length)
			break;
	if (i == ea->nfree)
		return ferry_err_set(err, ENOSPC, "pool full: %s requested, %s free, largest free range %s",
				     ferry_size_format(length, s1, sizeof(s1)),
				     ferry_size_format(ea->pool_bytes - ea->allocated, s2, sizeof(s2)),
				     ferry_size_format(largest_free(ea), s3, sizeof(s3)));

	/* Reserve everything first so that nothing below can fail half-way. */
	if (tab_reserve(ea, ea->nextents + 1) || free_reserve(ea, ea->nextents + 2))
		return ferry_err_set(err, ENOMEM, "extent allocator: out of memory");
	n = calloc(1, sizeof(*n));
	if (!n)
		return ferry_err_set(err, ENOMEM, "extent allocator: out of memory");

	n->id = next_free_id(ea);
	n->off = ea->free[i].off;
	n->len = length;
	n->owner = c;
	ea->free[i].off += length;
	ea->free[i].len -= length;
	if (ea->free[i].len == 0)
		free_remove_at(ea, i);
	tab_insert_nogrow(ea->tab, ea->tab_cap, n);
	n->next = c->head;
	if (c->head)
		c->head->prev = n;
	c->head = n;
	c->bytes += length;
	c->nextents++;
	ea->allocated += length;
	ea->nextents++;

	*out = (struct ea_extent){ .id = n->id, .offset = n->off, .length = n->len };
	return 0;
}

static struct ea_node *owned_node(const struct extent_alloc *ea, const struct ea_client *c, uint32_t id)
{
	struct ea_node *n = id ? tab_find(ea, id) : NULL;

	return n && n->owner == c ? n : NULL;
}

int ea_lookup(const struct extent_alloc *ea, const struct ea_client *c, uint32_t id, struct ea_extent *out,
	      struct ferry_err *err)
{
	struct ea_node *n = owned_node(ea, c, id);

	if (!n)
		return ferry_err_set(err, ENOENT, "unknown extent %u", id);
	*out = (struct ea_extent){ .id = n->id, .offset = n->off, .length = n->len };
	return 0;
}

int ea_free(struct extent_alloc *ea, struct ea_client *c, uint32_t id, struct ferry_err *err)
{
	struct ea_node *n = owned_node(ea, c, id);

	if (!n)
		return ferry_err_set(err, ENOENT, "unknown extent %u", id);
	release_node(ea, n);
	return 0;
}

int ea_transfer(struct extent_alloc *ea, struct ea_client *from, uint32_t id, struct ea_client *to,
		struct ferry_err *err)
{
	char s1[FERRY_SIZE_STR], s2[FERRY_SIZE_STR], s3[FERRY_SIZE_STR];
	struct ea_node *n = owned_node(ea, from, id);

	if (!n)
		return ferry_err_set(err, ENOENT, "unknown extent %u", id);
	if (to->quota && (n->len > to->quota || to->bytes + n->len > to->quota))
		return ferry_err_set(err, EDQUOT, "quota exceeded: %s to take over, %s held of a %s quota",
				     ferry_size_format(n->len, s1, sizeof(s1)),
				     ferry_size_format(to->bytes, s2, sizeof(s2)),
				     ferry_size_format(to->quota, s3, sizeof(s3)));
	if (n->prev)
		n->prev->next = n->next;
	else
		from->head = n->next;
	if (n->next)
		n->next->prev = n->prev;
	from->bytes -= n->len;
	from->nextents--;
	n->owner = to;
	n->prev = NULL;
	n->next = to->head;
	if (to->head)
		to->head->prev = n;
	to->head = n;
	to->bytes += n->len;
	to->nextents++;
	return 0;
}

void ea_get_stats(const struct extent_alloc *ea, struct ea_stats *st)
{
	*st = (struct ea_stats){
		.pool_bytes = ea->pool_bytes,
		.bytes_allocated = ea->allocated,
		.bytes_free = ea->pool_bytes - ea->allocated,
		.largest_free = largest_free(ea),
		.free_ranges = ea->nfree,
		.extents = ea->nextents,
		.clients = ea->nclients,
	};
}

/* ------------------------------------------------------------ invariants */

static int cmp_range(const void *a, const void *b)
{
	const struct ea_range *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

int ea_check(const struct extent_alloc *ea, struct ferry_err *err)
{
	uint64_t free_sum = 0, alloc_sum = 0;
	uint32_t nodes = 0, nclients = 0, i;
	struct ea_range *all = NULL;
	size_t nall = 0;
	int rc = 0;

#define FAIL(...) do { rc = ferry_err_set(err, EFAULT, __VA_ARGS__); goto out; } while (0)

	if (ea->free_cap < ea->nextents + 1)
		FAIL("free array capacity %u < extents + 1 (%u)", ea->free_cap, ea->nextents + 1);
	for (i = 0; i < ea->nfree; i++) {
		const struct ea_range *r = &ea->free[i];

		if (r->len == 0 || r->off % EA_UNIT || r->len % EA_UNIT)
			FAIL("free range %u [%llu,+%llu) empty or unaligned", i, (unsigned long long)r->off,
			     (unsigned long long)r->len);
		if (r->off + r->len > ea->pool_bytes || r->off + r->len < r->off)
			FAIL("free range %u ends past the pool", i);
		if (i > 0 && ea->free[i - 1].off + ea->free[i - 1].len >= r->off)
			FAIL("free ranges %u and %u overlap, touch or are unsorted", i - 1, i);
		free_sum += r->len;
	}

	all = malloc(((size_t)ea->nfree + ea->nextents + 1) * sizeof(*all));
	if (!all)
		FAIL("out of memory while checking");
	memcpy(all, ea->free, (size_t)ea->nfree * sizeof(*all));
	nall = ea->nfree;

	for (const struct ea_client *c = ea->clients; c; c = c->next) {
		uint64_t bytes = 0;
		uint32_t count = 0;

		nclients++;
		for (const struct ea_node *n = c->head; n; n = n->next) {
			if (n->owner != c)
				FAIL("extent %u is on the list of a client that does not own it", n->id);
			if (n->next && n->next->prev != n)
				FAIL("client list broken after extent %u", n->id);
			if (owned_node(ea, c, n->id) != n)
				FAIL("extent %u missing from the hash table", n->id);
			if (n->len == 0 || n->off % EA_UNIT || n->len % EA_UNIT || n->off + n->len > ea->pool_bytes)
				FAIL("extent %u [%llu,+%llu) empty, unaligned or out of the pool", n->id,
				     (unsigned long long)n->off, (unsigned long long)n->len);
			if (nall >= (size_t)ea->nfree + ea->nextents)
				FAIL("more extents on client lists than counted (%u)", ea->nextents);
			all[nall++] = (struct ea_range){ n->off, n->len };
			bytes += n->len;
			count++;
		}
		if (bytes != c->bytes || count != c->nextents)
			FAIL("client accounting: %llu bytes/%u extents listed, %llu/%u counted",
			     (unsigned long long)bytes, count, (unsigned long long)c->bytes, c->nextents);
		if (c->quota && c->bytes > c->quota)
			FAIL("client holds %llu bytes, above its quota %llu", (unsigned long long)c->bytes,
			     (unsigned long long)c->quota);
		alloc_sum += bytes;
		nodes += count;
	}
	if (nclients != ea->nclients)
		FAIL("%u clients listed, %u counted", nclients, ea->nclients);
	if (nodes != ea->nextents || alloc_sum != ea->allocated)
		FAIL("%u extents/%llu bytes listed, %u/%llu counted", nodes, (unsigned long long)alloc_sum,
		     ea->nextents, (unsigned long long)ea->allocated);
	if (free_sum + alloc_sum != ea->pool_bytes)
		FAIL("free %llu + allocated %llu != pool %llu", (unsigned long long)free_sum,
		     (unsigned long long)alloc_sum, (unsigned long long)ea->pool_bytes);

	uint32_t in_tab = 0;

	for (i = 0; i < ea->tab_cap; i++)
		if (ea->tab[i])
			in_tab++;
	if (in_tab != ea->nextents)
		FAIL("hash table holds %u extents, %u counted", in_tab, ea->nextents);

	/* With the sums equal, "no two ranges overlap" means free + extents tile the pool. */
	qsort(all, nall, sizeof(*all), cmp_range);
	for (size_t k = 1; k < nall; k++)
		if (all[k - 1].off + all[k - 1].len > all[k].off)
			FAIL("ranges at %llu and %llu overlap", (unsigned long long)all[k - 1].off,
			     (unsigned long long)all[k].off);
#undef FAIL
out:
	free(all);
	return rc;
}
