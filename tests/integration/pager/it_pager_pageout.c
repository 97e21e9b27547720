/*
 * Page-out to a real ferry-memsrv under a budget of 25% of the working set:
 * every page keeps its content (stamped with page number + version) through
 * churn from two VMs at once; resident pages stay within budget + one batch;
 * FREE_HINT releases slots; UNREGISTER brings every page back and the pool
 * drains to zero.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>
#include <unistd.h>

#include "memsrv_harness.h"
#include "pager_harness.h"

#define NPAGES 1024u
#define BUDGET_PAGES (NPAGES / 4)
#define FAULT_BATCH 64u

static struct msrv M;
static struct pgr P;

static bool all(size_t i) { (void)i; return true; }

static int setup(void **state)
{
	static char servers[64], budget[32];
	const char *args[] = { "--servers", servers, "--secret-file", M.secret_path, "--vm-budget", budget,
			       "--extent-size", "256K", "--pageout-batch", "32", "--prefetch", "8", NULL };

	(void)state;
	msrv_start(&M, NULL);
	snprintf(servers, sizeof(servers), "%s:%u", msrv_host(), M.port);
	snprintf(budget, sizeof(budget), "%u", BUDGET_PAGES * PAGE);
	pgr_start(&P, args);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (!pgr_alive(&P))
		pgr_dump_log(&P);
	assert_int_equal(pgr_stop(&P, 5000), 0);
	pgr_cleanup(&P);
	msrv_stop(&M, 5000);
	msrv_cleanup(&M);
	return 0;
}

static uint64_t resident(struct tvm *v)
{
	return tvm_stat(v, "pages_local") + tvm_stat(v, "pages_in_flight");
}

static void wait_within_budget(struct tvm *v)
{
	uint64_t deadline = now_ms() + 10000;

	while (resident(v) > BUDGET_PAGES) {
		if (now_ms() > deadline) {
			pgr_dump_log(&P);
			fail_msg("resident %llu pages, budget %u", (unsigned long long)resident(v), BUDGET_PAGES);
		}
		sleep_ms(10);
	}
}

struct churn {
	struct tvm *v;
	unsigned seed, ops, bad;
};

static void *churn_thread(void *arg)
{
	struct churn *c = arg;

	for (unsigned k = 0; k < c->ops; k++) {
		size_t i = (size_t)rand_r(&c->seed) % NPAGES;

		/* a hot set of 1/8 of the pages plus uniform noise */
		if (rand_r(&c->seed) % 2)
			i %= NPAGES / 8;
		if (rand_r(&c->seed) % 3 == 0)
			tvm_write(c->v, i);
		else if (!tvm_verify(c->v, i))
			c->bad++;
	}
	for (size_t i = 0; i < NPAGES; i++)
		if (!tvm_verify(c->v, i))
			c->bad++;
	return NULL;
}

static void test_pageout_churn(void **state)
{
	struct tvm a, b;
	struct churn ca = { .v = &a, .seed = 1, .ops = 6000 }, cb = { .v = &b, .seed = 2, .ops = 6000 };
	pthread_t ta, tb;
	struct fx_ctx *ctx;
	struct pool_client *pc;
	struct ferry_err err = { 0 };

	(void)state;
	tvm_create(&a, P.sock, "vm-a", NPAGES, TVM_WP, all);
	tvm_create(&b, P.sock, "vm-b", NPAGES, TVM_WP, all);
	{
		/*
		 * What this kernel offers (a probe uffd asking for everything, best effort): page-out
		 * needs only MISSING + WP on shmem (Linux 5.19), none of the newer features.
		 */
		uint64_t f = 0;
		int probe = ferry_vmm_uffd_create(O_CLOEXEC | FERRY_VMM_UFFD_BEST_EFFORT,
						  FERRY_VMM_UFFD_F_RECOMMENDED | FERRY_VMM_UFFD_F_POISON |
							  FERRY_VMM_UFFD_F_MOVE, NULL);

		assert_true(probe >= 0);
		assert_int_equal(ferry_vmm_uffd_features(probe, &f), 0);
		close(probe);
		fprintf(stderr, "uffd features offered 0x%llx: MISSING_SHMEM %s, WP_HUGETLBFS_SHMEM %s, WP_UNPOPULATED %s, "
				"POISON %s, WP_ASYNC %s\n", (unsigned long long)f,
			f & FERRY_VMM_UFFD_F_MISSING_SHMEM ? "yes" : "no",
			f & FERRY_VMM_UFFD_F_WP_HUGETLBFS_SHMEM ? "yes" : "no",
			f & FERRY_VMM_UFFD_F_WP_UNPOPULATED ? "yes" : "no", f & FERRY_VMM_UFFD_F_POISON ? "yes" : "no",
			f & FERRY_VMM_UFFD_F_WP_ASYNC ? "yes" : "no");
	}
	assert_int_equal(tvm_stat(&a, "pageout_enabled"), 1);
	/* registered with 1024 local pages: the pager pages out down to the budget */
	wait_within_budget(&a);
	wait_within_budget(&b);
	assert_true(tvm_stat(&a, "pages_remote") >= NPAGES - BUDGET_PAGES);

	/* every page right, sequentially (prefetch) */
	for (size_t i = 0; i < NPAGES; i++)
		assert_true(tvm_verify(&a, i));
	assert_true(tvm_stat(&a, "remote_faults") > 0);
	assert_true(tvm_stat(&a, "pages_prefetched") > 0);
	assert_true(resident(&a) <= BUDGET_PAGES + FAULT_BATCH);

	/* two VMs churn at once */
	assert_int_equal(pthread_create(&ta, NULL, churn_thread, &ca), 0);
	assert_int_equal(pthread_create(&tb, NULL, churn_thread, &cb), 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	assert_int_equal(ca.bad, 0);
	assert_int_equal(cb.bad, 0);
	assert_true(resident(&a) <= BUDGET_PAGES + FAULT_BATCH);
	assert_true(resident(&b) <= BUDGET_PAGES + FAULT_BATCH);
	assert_true(tvm_stat(&a, "pages_paged_out") > NPAGES);
	assert_true(tvm_stat(&a, "pages_paged_in") > NPAGES / 2);
	assert_int_equal(tvm_stat(&a, "fault_errors"), 0);
	assert_int_equal(tvm_stat(&b, "fault_errors"), 0);
	fprintf(stderr, "vm-a: paged out %llu, in %llu, wp faults %llu, prefetched %llu\n",
		(unsigned long long)tvm_stat(&a, "pages_paged_out"), (unsigned long long)tvm_stat(&a, "pages_paged_in"),
		(unsigned long long)tvm_stat(&a, "wp_faults"), (unsigned long long)tvm_stat(&a, "pages_prefetched"));

	/* the guest frees half of vm-b's memory: remote slots are released, never paged in */
	wait_within_budget(&b);
	uint64_t remote = tvm_stat(&b, "pages_remote"), released = tvm_stat(&b, "slots_released");

	assert_int_equal(ferry_vmm_free_hint(b.c, 0, (NPAGES / 2) * PAGE), 0);
	assert_true(tvm_stat(&b, "slots_released") > released);
	assert_true(tvm_stat(&b, "pages_remote") < remote);
	for (size_t i = 0; i < NPAGES / 2; i++)
		b.version[i] = 0;
	for (size_t i = 0; i < NPAGES; i++)
		assert_true(tvm_verify(&b, i));

	/* zero pages are never sent: a page written with zeros is dropped at page-out */
	/* UNREGISTER hands every page back: the memfd holds the right bytes */
	ctx = msrv_ctx();
	assert_int_equal(msrv_connect(&M, ctx, "observer", NULL, &pc, &err), 0);
	assert_true(msrv_client_stat(pc, "bytes_allocated") > 0);
	assert_int_equal(ferry_vmm_unregister(a.c), 0);
	assert_int_equal(ferry_vmm_unregister(b.c), 0);
	for (size_t i = 0; i < NPAGES; i++) {
		static uint8_t buf[PAGE];

		assert_int_equal(pread(a.memfd, buf, PAGE, (off_t)(i * PAGE)), PAGE);
		assert_int_equal(tvm_check(buf, i, a.version[i]), 1);
	}
	uint64_t deadline = now_ms() + 5000;

	while (msrv_client_stat(pc, "bytes_allocated") != 0 && now_ms() < deadline)
		sleep_ms(10);
	assert_int_equal(msrv_client_stat(pc, "bytes_allocated"), 0);
	pool_client_close(pc);
	fx_ctx_destroy(ctx);
	tvm_destroy(&a);
	tvm_destroy(&b);
}

static void test_refused_without_wp(void **state)
{
	struct tvm v;

	(void)state;
	/* no MODE_WP: page-out cannot hold writes back, so it is refused */
	tvm_create(&v, P.sock, "vm-nowp", 512, 0, all);
	assert_int_equal(tvm_stat(&v, "pageout_enabled"), 0);
	sleep_ms(200);
	assert_true(tvm_stat(&v, "pageout_refused") > 0);
	assert_int_equal(tvm_stat(&v, "pages_local"), 512);
	assert_true(pgr_log_contains(&P, "not registered with MODE_WP"));
	for (size_t i = 0; i < 512; i++)
		assert_true(tvm_verify(&v, i));
	tvm_destroy(&v);
}

static bool zeros_or_data(size_t i) { return i % 4 == 0; }

static void test_zero_pages_not_sent(void **state)
{
	struct tvm v;

	(void)state;
	tvm_create(&v, P.sock, "vm-zeros", NPAGES, TVM_WP, zeros_or_data);
	/* fault every hole in (zero pages, LOCAL), then wait for page-out */
	for (size_t i = 0; i < NPAGES; i++)
		assert_true(tvm_verify(&v, i));
	wait_within_budget(&v);
	/* zero-filled pages went back to UNUSED without a pool write */
	assert_true(tvm_stat(&v, "zero_pages_dropped") >= NPAGES / 4);
	for (size_t i = 0; i < NPAGES; i++)
		assert_true(tvm_verify(&v, i));
	tvm_destroy(&v);
}

static bool first_half_budget(size_t i) { return i < BUDGET_PAGES / 2; }

/*
 * A guest that reads memory it never wrote (a boot, a memory check) must not
 * push its data out: the zero pages it faults in are dropped first, free.
 */
static void test_zero_fill_does_not_evict_data(void **state)
{
	struct tvm v;

	(void)state;
	tvm_create(&v, P.sock, "vm-zerofirst", NPAGES, TVM_WP, first_half_budget);
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < NPAGES; i++)
			assert_true(tvm_verify(&v, i));
	wait_within_budget(&v);
	assert_int_equal(tvm_stat(&v, "pages_paged_out"), 0);
	assert_int_equal(tvm_stat(&v, "pages_paged_in"), 0);
	assert_true(tvm_stat(&v, "zero_pages_dropped") >= NPAGES - BUDGET_PAGES);
	for (size_t i = 0; i < BUDGET_PAGES / 2; i++)
		assert_true(tvm_verify(&v, i));
	tvm_destroy(&v);
}

struct writer {
	struct tvm *v;
	size_t first, n;
	unsigned seed, bad, writes;
	uint64_t until;
};

/* Write a random own page, read it straight back, now and then re-read an older one. */
static void *writer_thread(void *arg)
{
	struct writer *w = arg;

	while (now_ms() < w->until) {
		size_t i = w->first + (size_t)rand_r(&w->seed) % w->n;

		tvm_write(w->v, i);
		w->writes++;
		if (!tvm_verify(w->v, i))
			w->bad++;
		i = w->first + (size_t)rand_r(&w->seed) % w->n;
		if (!tvm_verify(w->v, i))
			w->bad++;
	}
	return NULL;
}

/* Writes racing with page-out of the same VM: no write is ever lost (the WP ordering). */
static void test_write_race(void **state)
{
	struct tvm v;
	struct writer w[2];
	pthread_t t[2];
	uint64_t until;

	(void)state;
	tvm_create(&v, P.sock, "vm-race", NPAGES, TVM_WP, all);
	wait_within_budget(&v);
	until = now_ms() + 1500;
	for (int k = 0; k < 2; k++) {
		w[k] = (struct writer){ .v = &v, .first = (size_t)k * NPAGES / 2, .n = NPAGES / 2,
					.seed = 11u + (unsigned)k, .until = until };
		assert_int_equal(pthread_create(&t[k], NULL, writer_thread, &w[k]), 0);
	}
	for (int k = 0; k < 2; k++)
		pthread_join(t[k], NULL);
	assert_int_equal(w[0].bad + w[1].bad, 0);
	for (size_t i = 0; i < NPAGES; i++)
		assert_true(tvm_verify(&v, i));
	fprintf(stderr, "write race: %u writes, paged out %llu, wp faults %llu, eexist %llu\n",
		w[0].writes + w[1].writes, (unsigned long long)tvm_stat(&v, "pages_paged_out"),
		(unsigned long long)tvm_stat(&v, "wp_faults"), (unsigned long long)tvm_stat(&v, "eexist"));
	assert_true(tvm_stat(&v, "wp_faults") > 0);
	assert_int_equal(tvm_stat(&v, "fault_errors"), 0);
	tvm_destroy(&v);
}

/* Freed guest memory leaves the pool: FREE_HINT and MADV_REMOVE release every slot, extents go back. */
static void test_free_returns_pool(void **state)
{
	struct tvm v;
	struct fx_ctx *ctx = msrv_ctx();
	struct pool_client *pc;
	struct ferry_err err = { 0 };
	uint64_t before, deadline;

	(void)state;
	assert_int_equal(msrv_connect(&M, ctx, "observer2", NULL, &pc, &err), 0);
	tvm_create(&v, P.sock, "vm-free", NPAGES, TVM_WP, all);
	wait_within_budget(&v);
	before = msrv_client_stat(pc, "bytes_allocated");
	assert_true(before >= (NPAGES - BUDGET_PAGES) * PAGE);
	/* the first half by a hint, the second half by MADV_REMOVE (a REMOVE event) */
	assert_int_equal(ferry_vmm_free_hint(v.c, 0, (NPAGES / 2) * PAGE), 0);
	assert_int_equal(madvise(v.ram + (NPAGES / 2) * PAGE, (NPAGES / 2) * PAGE, MADV_REMOVE), 0);
	deadline = now_ms() + 5000;
	/* resident pages of a REMOVEd memory-file range are re-checked against the file on a later tick */
	while ((tvm_stat(&v, "pages_remote") != 0 || tvm_stat(&v, "pages_local") != 0) && now_ms() < deadline)
		sleep_ms(5);
	assert_int_equal(tvm_stat(&v, "pages_remote"), 0);
	assert_int_equal(tvm_stat(&v, "pages_local"), 0);
	assert_true(tvm_stat(&v, "slots_released") >= NPAGES - BUDGET_PAGES);
	assert_int_equal(msrv_client_stat(pc, "bytes_allocated"), 0);
	/* and it all reads as zeros, without a single page-in */
	uint64_t in = tvm_stat(&v, "pages_paged_in");

	for (size_t i = 0; i < NPAGES; i++) {
		v.version[i] = 0;
		assert_true(tvm_verify(&v, i));
	}
	assert_int_equal(tvm_stat(&v, "pages_paged_in"), in);
	pool_client_close(pc);
	fx_ctx_destroy(ctx);
	tvm_destroy(&v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pageout_churn),
		cmocka_unit_test(test_refused_without_wp),
		cmocka_unit_test(test_zero_pages_not_sent),
		cmocka_unit_test(test_zero_fill_does_not_evict_data),
		cmocka_unit_test(test_free_returns_pool),
		cmocka_unit_test(test_write_race),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
