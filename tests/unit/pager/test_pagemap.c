/* Page state table: transitions keep the counters exact, the range setter
 * releases slots and spares IN_FLIGHT pages, iteration finds every page. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "dataplane/pagemap/pagemap.h"

static void test_init(void **state)
{
	struct pagemap pm;

	(void)state;
	assert_int_equal(pm_init(&pm, 0), -22);
	assert_int_equal(pm_init(&pm, 1000), 0);
	assert_int_equal(pm_count(&pm, PM_UNUSED), 1000);
	assert_int_equal(pm_count(&pm, PM_LOCAL), 0);
	assert_int_equal(pm_get(&pm, 999)->state, PM_UNUSED);
	assert_false(pm_get(&pm, 5)->flags & PM_F_HAS_SLOT);
	assert_true(pm_check(&pm));
	pm_destroy(&pm);
	assert_null(pm.e);
}

static void test_transitions(void **state)
{
	struct pagemap pm;

	(void)state;
	assert_int_equal(pm_init(&pm, 16), 0);
	pm_set_local(&pm, 1);
	pm_set_remote(&pm, 2, 3, 77);
	pm_set_in_flight(&pm, 2);
	assert_int_equal(pm_get(&pm, 2)->slot, 77);        /* kept while in flight */
	assert_int_equal(pm_get(&pm, 2)->server, 3);
	assert_true(pm_get(&pm, 2)->flags & PM_F_HAS_SLOT);
	pm_set_remote(&pm, 4, 1, 5);
	assert_int_equal(pm_count(&pm, PM_UNUSED), 13);
	assert_int_equal(pm_count(&pm, PM_LOCAL), 1);
	assert_int_equal(pm_count(&pm, PM_REMOTE), 1);
	assert_int_equal(pm_count(&pm, PM_IN_FLIGHT), 1);
	/* page-in: slot dropped, LOCAL */
	pm_clear_slot(&pm, 2);
	pm_set_local(&pm, 2);
	assert_int_equal(pm_get(&pm, 2)->server, PM_SERVER_NONE);
	assert_false(pm_get(&pm, 2)->flags & PM_F_HAS_SLOT);
	/* LOCAL keeps a slot when it still has one (clean copy) */
	pm_set_local(&pm, 4);
	assert_int_equal(pm_get(&pm, 4)->slot, 5);
	pm_flags_set(&pm, 1, PM_F_ACCESSED | PM_F_DIRTY);
	pm_flags_clear(&pm, 1, PM_F_ACCESSED);
	assert_int_equal(pm_get(&pm, 1)->flags, PM_F_DIRTY);
	pm_bump_version(&pm, 1);
	pm_bump_version(&pm, 1);
	assert_int_equal(pm_get(&pm, 1)->version, 2);
	pm_set_unused(&pm, 1);
	assert_int_equal(pm_get(&pm, 1)->flags, 0);
	assert_int_equal(pm_get(&pm, 1)->version, 2);   /* generation survives */
	assert_true(pm_check(&pm));
	assert_string_equal(pm_state_name(PM_REMOTE), "remote");
	pm_destroy(&pm);
}

struct released {
	uint64_t idx[64];
	unsigned n;
};

static void on_slot(void *arg, uint64_t idx, const struct pm_entry *e)
{
	struct released *r = arg;

	assert_true(e->flags & PM_F_HAS_SLOT);
	r->idx[r->n++] = idx;
}

static void test_range(void **state)
{
	struct pagemap pm;
	struct released rel = { .n = 0 };

	(void)state;
	assert_int_equal(pm_init(&pm, 32), 0);
	for (uint64_t i = 0; i < 32; i++) {
		if (i % 4 == 0)
			pm_set_local(&pm, i);
		else if (i % 4 == 1)
			pm_set_remote(&pm, i, 0, (uint32_t)i);
		else if (i % 4 == 2)
			pm_set_in_flight(&pm, i);
	}
	/* [8, 24) -> 4 LOCAL + 4 REMOTE change; 4 IN_FLIGHT stay, marked dropped */
	assert_int_equal(pm_set_range_unused(&pm, 8, 16, on_slot, &rel), 8);
	assert_int_equal(rel.n, 4);
	assert_int_equal(rel.idx[0], 9);
	assert_int_equal(pm_get(&pm, 10)->state, PM_IN_FLIGHT);
	assert_true(pm_get(&pm, 10)->flags & PM_F_DROPPED);
	assert_int_equal(pm_get(&pm, 9)->state, PM_UNUSED);
	assert_int_equal(pm_get(&pm, 9)->server, PM_SERVER_NONE);
	/* clipped at the end, past the end is nothing */
	assert_int_equal(pm_set_range_unused(&pm, 28, 100, NULL, NULL), 2); /* 28 LOCAL, 29 REMOTE */
	assert_int_equal(pm_set_range_unused(&pm, 32, 5, NULL, NULL), 0);
	assert_true(pm_check(&pm));
	assert_int_equal(pm_count(&pm, PM_IN_FLIGHT), 8);
	pm_destroy(&pm);
}

static void test_iterate(void **state)
{
	struct pagemap pm;
	uint64_t n = 0, want[] = { 3, 500, 4095 };

	(void)state;
	assert_int_equal(pm_init(&pm, 4096), 0);
	for (unsigned i = 0; i < 3; i++)
		pm_set_remote(&pm, want[i], 1, i);
	for (uint64_t i = pm_next(&pm, PM_REMOTE, 0); i < pm.npages; i = pm_next(&pm, PM_REMOTE, i + 1))
		assert_int_equal(i, want[n++]);
	assert_int_equal(n, 3);
	assert_int_equal(pm_next(&pm, PM_LOCAL, 0), 4096);
	pm_destroy(&pm);
}

/* Random transitions against a shadow model: counters never drift. */
static void test_random(void **state)
{
	struct pagemap pm;
	uint8_t shadow[2048];

	(void)state;
	srand(42);
	memset(shadow, PM_UNUSED, sizeof(shadow));
	assert_int_equal(pm_init(&pm, 2048), 0);
	for (int step = 0; step < 200000; step++) {
		uint64_t i = (uint64_t)rand() % 2048;

		switch (rand() % 5) {
		case 0: pm_set_unused(&pm, i); shadow[i] = PM_UNUSED; break;
		case 1: pm_set_local(&pm, i); shadow[i] = PM_LOCAL; break;
		case 2: pm_set_remote(&pm, i, 2, (uint32_t)i); shadow[i] = PM_REMOTE; break;
		case 3: pm_set_in_flight(&pm, i); shadow[i] = PM_IN_FLIGHT; break;
		default: {
			uint64_t n = (uint64_t)rand() % 64;

			pm_set_range_unused(&pm, i, n, NULL, NULL);
			for (uint64_t k = i; k < i + n && k < 2048; k++)
				if (shadow[k] != PM_IN_FLIGHT)
					shadow[k] = PM_UNUSED;
			break;
		}
		}
	}
	uint64_t c[PM_NSTATES] = { 0 };

	for (unsigned i = 0; i < 2048; i++) {
		assert_int_equal(pm_get(&pm, i)->state, shadow[i]);
		c[shadow[i]]++;
	}
	for (int s = 0; s < PM_NSTATES; s++)
		assert_int_equal(pm_count(&pm, (enum pm_state)s), c[s]);
	assert_true(pm_check(&pm));
	pm_destroy(&pm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init),
		cmocka_unit_test(test_transitions),
		cmocka_unit_test(test_range),
		cmocka_unit_test(test_iterate),
		cmocka_unit_test(test_random),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
