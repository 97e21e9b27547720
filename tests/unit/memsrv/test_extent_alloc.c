/* Extent allocator (dataplane/memsrv/extent_alloc.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/memsrv/extent_alloc.h"

#define PG EA_UNIT

static struct extent_alloc *mk(uint64_t pages)
{
	struct extent_alloc *ea = NULL;
	struct ferry_err err = { 0 };

	assert_int_equal(ea_create(pages * PG, &ea, &err), 0);
	return ea;
}

static struct ea_client *client(struct extent_alloc *ea, uint64_t quota)
{
	struct ea_client *c = NULL;

	assert_int_equal(ea_client_open(ea, quota, &c, NULL), 0);
	return c;
}

static void check(const struct extent_alloc *ea)
{
	struct ferry_err err = { 0 };
	int rc = ea_check(ea, &err);

	if (rc)
		fail_msg("invariant broken: %s", err.msg);
}

static uint32_t alloc_ok(struct extent_alloc *ea, struct ea_client *c, uint64_t pages, uint64_t expect_off)
{
	struct ea_extent ext;
	struct ferry_err err = { 0 };
	int rc = ea_alloc(ea, c, pages * PG, &ext, &err);

	if (rc)
		fail_msg("alloc %llu pages: %s", (unsigned long long)pages, err.msg);
	assert_int_equal(ext.offset, expect_off * PG);
	assert_int_equal(ext.length, pages * PG);
	assert_int_not_equal(ext.id, 0);
	check(ea);
	return ext.id;
}

static void stats(const struct extent_alloc *ea, uint32_t ranges, uint64_t free_pages, uint64_t largest_pages)
{
	struct ea_stats st;

	ea_get_stats(ea, &st);
	assert_int_equal(st.free_ranges, ranges);
	assert_int_equal(st.bytes_free, free_pages * PG);
	assert_int_equal(st.largest_free, largest_pages * PG);
	assert_int_equal(st.bytes_free + st.bytes_allocated, st.pool_bytes);
}

static void test_create_rejects_bad_sizes(void **state)
{
	struct extent_alloc *ea = NULL;
	struct ferry_err err = { 0 };

	(void)state;
	assert_int_equal(ea_create(0, &ea, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "multiple"));
	assert_int_equal(ea_create(PG + 1, &ea, &err), -EINVAL);
	assert_int_equal(ea_create(PG, &ea, &err), 0);
	check(ea);
	ea_destroy(ea);
	ea_destroy(NULL);
}

static void test_bad_lengths(void **state)
{
	struct extent_alloc *ea = mk(4);
	struct ea_client *c = client(ea, 0);
	struct ea_extent ext;
	struct ferry_err err = { 0 };

	(void)state;
	assert_int_equal(ea_alloc(ea, c, 0, &ext, &err), -EINVAL);
	assert_int_equal(ea_alloc(ea, c, PG - 1, &ext, &err), -EINVAL);
	assert_int_equal(ea_alloc(ea, c, PG + 1, &ext, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "multiple of 4096"));
	assert_int_equal(ea_alloc(ea, c, 5 * PG, &ext, &err), -ENOSPC);
	assert_non_null(strstr(err.msg, "larger than the whole pool"));
	assert_int_equal(ea_alloc(ea, c, UINT64_MAX - PG + 1, &ext, &err), -ENOSPC);
	stats(ea, 1, 4, 4);
	check(ea);
	ea_destroy(ea);
}

static void test_exact_fit_and_full_pool(void **state)
{
	struct extent_alloc *ea = mk(16);
	struct ea_client *c = client(ea, 0);
	struct ea_extent ext;
	struct ferry_err err = { 0 };

	(void)state;
	uint32_t id = alloc_ok(ea, c, 16, 0);

	stats(ea, 0, 0, 0);
	assert_int_equal(ea_alloc(ea, c, PG, &ext, &err), -ENOSPC);
	assert_string_equal(err.msg, "pool full: 4 KiB requested, 0 B free, largest free range 0 B");
	assert_int_equal(ea_free(ea, c, id, &err), 0);
	stats(ea, 1, 16, 16);
	/* Exact fit of a hole in the middle: the hole disappears from the list. */
	uint32_t a = alloc_ok(ea, c, 4, 0);
	uint32_t b = alloc_ok(ea, c, 4, 4);
	uint32_t d = alloc_ok(ea, c, 8, 8);

	assert_int_equal(ea_free(ea, c, b, NULL), 0);
	stats(ea, 1, 4, 4);
	b = alloc_ok(ea, c, 4, 4);
	stats(ea, 0, 0, 0);
	assert_int_equal(ea_free(ea, c, a, NULL), 0);
	assert_int_equal(ea_free(ea, c, b, NULL), 0);
	assert_int_equal(ea_free(ea, c, d, NULL), 0);
	stats(ea, 1, 16, 16);
	check(ea);
	ea_destroy(ea);
}

static void test_coalescing(void **state)
{
	struct extent_alloc *ea = mk(10);
	struct ea_client *c = client(ea, 0);
	uint32_t id[5];

	(void)state;
	for (int i = 0; i < 5; i++)
		id[i] = alloc_ok(ea, c, 2, 2 * (uint64_t)i);
	stats(ea, 0, 0, 0);

	assert_int_equal(ea_free(ea, c, id[1], NULL), 0);   /* [2,4) alone */
	stats(ea, 1, 2, 2);
	assert_int_equal(ea_free(ea, c, id[3], NULL), 0);   /* [6,8) alone */
	stats(ea, 2, 4, 2);
	assert_int_equal(ea_free(ea, c, id[2], NULL), 0);   /* both sides: [2,8) */
	stats(ea, 1, 6, 6);
	check(ea);
	assert_int_equal(ea_free(ea, c, id[0], NULL), 0);   /* right neighbour: [0,8) */
	stats(ea, 1, 8, 8);
	check(ea);
	/* Left neighbour: take [0,8) again as [0,4) + [4,8), free [4,8), then [8,10). */
	uint32_t lo = alloc_ok(ea, c, 4, 0);
	uint32_t hi = alloc_ok(ea, c, 4, 4);

	assert_int_equal(ea_free(ea, c, hi, NULL), 0);
	stats(ea, 1, 4, 4);
	assert_int_equal(ea_free(ea, c, id[4], NULL), 0);   /* left neighbour [4,8) -> [4,10) */
	stats(ea, 1, 6, 6);
	assert_int_equal(ea_free(ea, c, lo, NULL), 0);
	stats(ea, 1, 10, 10);
	check(ea);
	ea_destroy(ea);
}

static void test_fragmentation(void **state)
{
	struct extent_alloc *ea = mk(10);
	struct ea_client *c = client(ea, 0);
	struct ea_extent ext;
	struct ferry_err err = { 0 };
	uint32_t id[10];

	(void)state;
	for (int i = 0; i < 10; i++)
		id[i] = alloc_ok(ea, c, 1, (uint64_t)i);
	for (int i = 0; i < 10; i += 2)
		assert_int_equal(ea_free(ea, c, id[i], NULL), 0);
	stats(ea, 5, 5, 1);
	/* 5 pages free but no two together: a 2-page request must fail, and say why. */
	assert_int_equal(ea_alloc(ea, c, 2 * PG, &ext, &err), -ENOSPC);
	assert_string_equal(err.msg, "pool full: 8 KiB requested, 20 KiB free, largest free range 4 KiB");
	/* First fit: a single page goes into the lowest hole. */
	id[0] = alloc_ok(ea, c, 1, 0);
	assert_int_equal(ea_free(ea, c, id[5], NULL), 0);   /* joins holes 4 and 6: [4,7) */
	stats(ea, 3, 5, 3);
	alloc_ok(ea, c, 3, 4);
	check(ea);
	ea_destroy(ea);
}

static void test_unknown_double_and_foreign_free(void **state)
{
	struct extent_alloc *ea = mk(8);
	struct ea_client *a = client(ea, 0), *b = client(ea, 0);
	struct ea_extent ext;
	struct ferry_err err = { 0 };

	(void)state;
	uint32_t id = alloc_ok(ea, a, 2, 0);

	assert_int_equal(ea_free(ea, a, 0, &err), -ENOENT);
	assert_int_equal(ea_free(ea, a, id + 1000, &err), -ENOENT);
	assert_string_equal(err.msg, "unknown extent 1001");
	/* Another client's extent looks exactly like an unknown one. */
	assert_int_equal(ea_free(ea, b, id, &err), -ENOENT);
	assert_int_equal(ea_lookup(ea, b, id, &ext, &err), -ENOENT);
	assert_int_equal(ea_lookup(ea, a, id, &ext, &err), 0);
	assert_int_equal(ext.length, 2 * PG);
	assert_int_equal(ea_client_bytes(a), 2 * PG);
	assert_int_equal(ea_free(ea, a, id, &err), 0);
	assert_int_equal(ea_free(ea, a, id, &err), -ENOENT);   /* double free */
	assert_int_equal(ea_client_bytes(a), 0);
	stats(ea, 1, 8, 8);
	check(ea);
	ea_destroy(ea);
}

static void test_quota(void **state)
{
	struct extent_alloc *ea = mk(16);
	struct ea_client *a = client(ea, 3 * PG), *b = client(ea, 0);
	struct ea_extent ext;
	struct ferry_err err = { 0 };

	(void)state;
	uint32_t x = alloc_ok(ea, a, 2, 0);

	assert_int_equal(ea_alloc(ea, a, 2 * PG, &ext, &err), -EDQUOT);
	assert_string_equal(err.msg, "quota exceeded: 8 KiB requested, 8 KiB held of a 12 KiB quota");
	assert_int_equal(ea_alloc(ea, a, 4 * PG, &ext, &err), -EDQUOT);
	alloc_ok(ea, a, 1, 2);
	assert_int_equal(ea_client_bytes(a), 3 * PG);
	assert_int_equal(ea_client_extents(a), 2);
	assert_int_equal(ea_client_quota(a), 3 * PG);
	/* Quota is per client: b is not limited by a's. */
	alloc_ok(ea, b, 13, 3);
	/* Quota is checked before space: a over quota on a full pool gets EDQUOT. */
	assert_int_equal(ea_alloc(ea, a, PG, &ext, &err), -EDQUOT);
	assert_int_equal(ea_free(ea, a, x, NULL), 0);
	assert_int_equal(ea_alloc(ea, a, PG, &ext, &err), 0);
	assert_int_equal(ext.offset, 0);
	check(ea);
	ea_destroy(ea);   /* with clients and extents still open: no leak */
}

/* A kept extent changes hands: same id and bytes, the new owner's quota, the old owner loses it. */
static void test_transfer(void **state)
{
	struct extent_alloc *ea = mk(16);
	struct ea_client *a = client(ea, 0), *keeper = client(ea, 4 * PG), *b = client(ea, 2 * PG);
	struct ferry_err err = { 0 };
	struct ea_extent ext;
	uint64_t bytes = 0;

	(void)state;
	uint32_t x = alloc_ok(ea, a, 3, 0), y = alloc_ok(ea, a, 2, 3);

	assert_int_equal(ea_transfer(ea, a, x, keeper, &err), 0);
	check(ea);
	assert_int_equal(ea_client_bytes(a), 2 * PG);
	assert_int_equal(ea_client_bytes(keeper), 3 * PG);
	assert_int_equal(ea_lookup(ea, a, x, &ext, NULL), -ENOENT);
	assert_int_equal(ea_lookup(ea, keeper, x, &ext, NULL), 0);
	assert_int_equal(ext.offset, 0);
	assert_int_equal(ext.length, 3 * PG);
	/* The keeper's quota (the kept-bytes limit) refuses a second one; nothing moves. */
	assert_int_equal(ea_transfer(ea, a, y, keeper, &err), -EDQUOT);
	assert_string_equal(err.msg, "quota exceeded: 8 KiB to take over, 12 KiB held of a 16 KiB quota");
	assert_int_equal(ea_lookup(ea, a, y, &ext, NULL), 0);
	/* b's quota is too small for x: it stays kept. */
	assert_int_equal(ea_transfer(ea, keeper, x, b, &err), -EDQUOT);
	assert_int_equal(ea_lookup(ea, keeper, x, &ext, NULL), 0);
	/* Only the owner's extents move. */
	assert_int_equal(ea_transfer(ea, b, x, a, &err), -ENOENT);
	assert_int_equal(ea_transfer(ea, keeper, 9999, a, &err), -ENOENT);
	/* The old owner's end does not take the moved extent with it. */
	assert_int_equal(ea_client_close(ea, a, &bytes), 1);
	assert_int_equal(bytes, 2 * PG);
	check(ea);
	assert_int_equal(ea_lookup(ea, keeper, x, &ext, NULL), 0);
	assert_int_equal(ea_free(ea, keeper, x, NULL), 0);
	stats(ea, 1, 16, 16);
	check(ea);
	ea_destroy(ea);
}

static void test_client_close_releases_everything(void **state)
{
	struct extent_alloc *ea = mk(32);
	struct ea_client *a = client(ea, 0), *b = client(ea, 0);
	uint64_t bytes = 0;

	(void)state;
	for (int i = 0; i < 8; i++) {
		alloc_ok(ea, a, 1, 2 * (uint64_t)i);
		alloc_ok(ea, b, 1, 2 * (uint64_t)i + 1);
	}
	assert_int_equal(ea_client_close(ea, a, &bytes), 8);
	assert_int_equal(bytes, 8 * PG);
	check(ea);
	stats(ea, 9, 24, 16);
	assert_int_equal(ea_client_close(ea, b, NULL), 8);
	stats(ea, 1, 32, 32);
	struct ea_stats st;

	ea_get_stats(ea, &st);
	assert_int_equal(st.clients, 0);
	assert_int_equal(st.extents, 0);
	assert_int_equal(ea_client_close(ea, NULL, NULL), 0);
	check(ea);
	ea_destroy(ea);
}

static void test_many_extents_hash_growth(void **state)
{
	enum { N = 5000 };
	struct extent_alloc *ea = mk(N);
	struct ea_client *c = client(ea, 0);
	uint32_t *ids = malloc(N * sizeof(*ids));
	struct ea_extent ext;
	uint64_t x = 88172645463325252ull;

	(void)state;
	assert_non_null(ids);
	for (uint32_t i = 0; i < N; i++) {
		assert_int_equal(ea_alloc(ea, c, PG, &ext, NULL), 0);
		ids[i] = ext.id;
		assert_int_equal(ext.offset, (uint64_t)i * PG);
	}
	check(ea);
	/* Free in random order; every lookup of the rest must still work. */
	for (uint32_t i = N - 1; i > 0; i--) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		uint32_t j = (uint32_t)(x % (i + 1));
		uint32_t t = ids[i];

		ids[i] = ids[j];
		ids[j] = t;
	}
	for (uint32_t i = 0; i < N; i++) {
		assert_int_equal(ea_free(ea, c, ids[i], NULL), 0);
		if (i % 97 == 0) {
			for (uint32_t k = i + 1; k < N; k += 13)
				assert_int_equal(ea_lookup(ea, c, ids[k], &ext, NULL), 0);
			check(ea);
		}
	}
	stats(ea, 1, N, N);
	free(ids);
	ea_destroy(ea);
}

/* ------------------------------------------------------------ model test */

enum { M_PAGES = 256, M_CLIENTS = 4, M_EXT = 512 };

struct model_ext {
	uint32_t id;
	int owner;
	uint64_t first, pages;
};

struct model {
	int page_owner[M_PAGES];           /* -1 = free */
	struct model_ext ext[M_EXT];
	int next;
	uint64_t held[M_CLIENTS];
	uint64_t quota[M_CLIENTS];         /* pages, 0 = none */
};

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* First free run of @pages in the model, or -1: what first fit must pick. */
static int64_t model_first_fit(const struct model *m, uint64_t pages)
{
	uint64_t run = 0;

	for (uint64_t p = 0; p < M_PAGES; p++) {
		run = m->page_owner[p] < 0 ? run + 1 : 0;
		if (run == pages)
			return (int64_t)(p + 1 - pages);
	}
	return -1;
}

static void model_compare(const struct extent_alloc *ea, const struct model *m)
{
	struct ea_stats st;
	uint64_t free_pages = 0, largest = 0, run = 0;
	uint32_t ranges = 0;

	for (int p = 0; p < M_PAGES; p++) {
		if (m->page_owner[p] < 0) {
			free_pages++;
			if (run++ == 0)
				ranges++;
			if (run > largest)
				largest = run;
		} else {
			run = 0;
		}
	}
	ea_get_stats(ea, &st);
	assert_int_equal(st.bytes_free, free_pages * PG);
	assert_int_equal(st.free_ranges, ranges);       /* coalescing is complete */
	assert_int_equal(st.largest_free, largest * PG);
	assert_int_equal(st.extents, (uint32_t)m->next);
}

static void test_random_against_bitmap_model(void **state)
{
	static struct model m;
	struct extent_alloc *ea = mk(M_PAGES);
	struct ea_client *cl[M_CLIENTS];
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	const char *env = getenv("FERRY_TEST_SEED");
	unsigned long long counts[4] = { 0 };

	(void)state;
	if (env)
		seed = strtoull(env, NULL, 0);
	print_message("seed 0x%llx (set FERRY_TEST_SEED to replay)\n", (unsigned long long)seed);
	memset(&m, 0, sizeof(m));
	for (int p = 0; p < M_PAGES; p++)
		m.page_owner[p] = -1;
	for (int c = 0; c < M_CLIENTS; c++) {
		m.quota[c] = c == 0 ? 0 : 40 * (uint64_t)c;
		cl[c] = client(ea, m.quota[c] * PG);
	}

	for (int step = 0; step < 40000; step++) {
		uint64_t r = rnd(&seed);
		int c = (int)(r % M_CLIENTS);
		unsigned op = (unsigned)((r >> 8) % 100);

		if (op < 55 && m.next < M_EXT) {
			/* Mostly small, sometimes large requests to provoke fragmentation. */
			uint64_t pages = (r >> 16) % 8 == 0 ? 1 + (r >> 24) % 64 : 1 + (r >> 24) % 8;
			struct ea_extent ext;
			struct ferry_err err = { 0 };
			int rc = ea_alloc(ea, cl[c], pages * PG, &ext, &err);
			int64_t fit = model_first_fit(&m, pages);
			int over = m.quota[c] && m.held[c] + pages > m.quota[c];

			if (over) {
				assert_int_equal(rc, -EDQUOT);
				counts[1]++;
			} else if (fit < 0) {
				assert_int_equal(rc, -ENOSPC);
				counts[2]++;
			} else {
				if (rc)
					fail_msg("step %d: alloc %llu pages failed: %s", step,
						 (unsigned long long)pages, err.msg);
				assert_int_equal(ext.offset, (uint64_t)fit * PG);
				for (uint64_t p = 0; p < pages; p++) {
					assert_int_equal(m.page_owner[fit + (int64_t)p], -1);
					m.page_owner[fit + (int64_t)p] = c;
				}
				for (int k = 0; k < m.next; k++)
					assert_int_not_equal(m.ext[k].id, ext.id);
				m.ext[m.next++] = (struct model_ext){ ext.id, c, (uint64_t)fit, pages };
				m.held[c] += pages;
				counts[0]++;
			}
		} else if (op < 95 && m.next > 0) {
			int k = (int)((r >> 16) % (uint64_t)m.next);
			struct model_ext e = m.ext[k];
			/* Now and then try to free it as someone else, or twice. */
			int other = (e.owner + 1) % M_CLIENTS;

			if ((r >> 40) % 10 == 0)
				assert_int_equal(ea_free(ea, cl[other], e.id, NULL), -ENOENT);
			assert_int_equal(ea_free(ea, cl[e.owner], e.id, NULL), 0);
			if ((r >> 44) % 10 == 0)
				assert_int_equal(ea_free(ea, cl[e.owner], e.id, NULL), -ENOENT);
			for (uint64_t p = 0; p < e.pages; p++)
				m.page_owner[e.first + p] = -1;
			m.held[e.owner] -= e.pages;
			m.ext[k] = m.ext[--m.next];
			counts[3]++;
		} else if (op >= 98) {
			/* A client disconnects: everything it held comes back. */
			uint64_t bytes = 0;
			uint32_t n = ea_client_close(ea, cl[c], &bytes);

			assert_int_equal(bytes, m.held[c] * PG);
			uint32_t had = 0;

			for (int k = 0; k < m.next;) {
				if (m.ext[k].owner == c) {
					for (uint64_t p = 0; p < m.ext[k].pages; p++)
						m.page_owner[m.ext[k].first + p] = -1;
					m.ext[k] = m.ext[--m.next];
					had++;
				} else {
					k++;
				}
			}
			assert_int_equal(n, had);
			m.held[c] = 0;
			cl[c] = client(ea, m.quota[c] * PG);
		}
		for (int k = 0; k < M_CLIENTS; k++)
			assert_int_equal(ea_client_bytes(cl[k]), m.held[k] * PG);
		model_compare(ea, &m);
		if (step % 16 == 0)
			check(ea);
	}
	check(ea);
	print_message("allocs %llu, quota refusals %llu, full refusals %llu, frees %llu\n", counts[0], counts[1],
		      counts[2], counts[3]);
	/* The sequence must have exercised every outcome. */
	assert_true(counts[0] > 1000 && counts[1] > 100 && counts[2] > 100 && counts[3] > 1000);
	ea_destroy(ea);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_rejects_bad_sizes),
		cmocka_unit_test(test_bad_lengths),
		cmocka_unit_test(test_exact_fit_and_full_pool),
		cmocka_unit_test(test_coalescing),
		cmocka_unit_test(test_fragmentation),
		cmocka_unit_test(test_unknown_double_and_foreign_free),
		cmocka_unit_test(test_quota),
		cmocka_unit_test(test_transfer),
		cmocka_unit_test(test_client_close_releases_everything),
		cmocka_unit_test(test_many_extents_hash_growth),
		cmocka_unit_test(test_random_against_bitmap_model),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
