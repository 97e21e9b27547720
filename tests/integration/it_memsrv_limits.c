/*
 * Integration: pool exhaustion and per-client quota are refused with their
 * own codes and clear messages, and the server keeps serving afterwards.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "memsrv_harness.h"

#define MiB (1ull << 20)

static struct msrv srv;

static void expect_refusal(struct pool_client *c, uint64_t len, int err_no, uint32_t code, const char *msg)
{
	struct pool_extent e;
	struct ferry_err err = { 0 };
	int rc = pool_client_alloc(c, len, &e, &err);

	if (rc != -err_no)
		fail_msg("alloc %llu: expected -%d, got %d (%s)", (unsigned long long)len, err_no, rc, err.msg);
	assert_int_equal(pool_client_last_code(c), code);
	if (!strstr(err.msg, msg))
		fail_msg("message \"%s\" lacks \"%s\"", err.msg, msg);
}

static uint32_t alloc_ok(struct pool_client *c, uint64_t len)
{
	struct pool_extent e;
	struct ferry_err err = { 0 };

	if (pool_client_alloc(c, len, &e, &err))
		fail_msg("alloc %llu: %s", (unsigned long long)len, err.msg);
	assert_int_equal(pool_client_last_code(c), 0);
	assert_int_equal(e.length, len);
	return e.id;
}

static void test_pool_full_and_quota(void **state)
{
	struct fx_ctx *ctx = msrv_ctx();
	struct pool_client *a, *b;
	struct ferry_err err = { 0 };
	struct ferry_page_stats_ok st;

	(void)state;
	assert_int_equal(msrv_connect(&srv, ctx, "a", NULL, &a, &err), 0);
	assert_int_equal(msrv_connect(&srv, ctx, "b", NULL, &b, &err), 0);
	assert_int_equal(pool_client_quota(a), 5 * MiB);
	assert_true(pool_client_max_data(a) > 0);

	/* Quota: 5 MiB per client. */
	uint32_t a1 = alloc_ok(a, 4 * MiB);

	expect_refusal(a, 2 * MiB, EDQUOT, FERRY_E_QUOTA, "quota exceeded: 2 MiB requested, 4 MiB held of a 5 MiB quota");
	uint32_t a2 = alloc_ok(a, 1 * MiB);

	expect_refusal(a, 4096, EDQUOT, FERRY_E_QUOTA, "quota exceeded");

	/* Pool: 8 MiB in all, 3 MiB left. */
	expect_refusal(b, 4 * MiB, ENOSPC, FERRY_E_POOL_FULL, "pool full: 4 MiB requested, 3 MiB free");
	uint32_t b1 = alloc_ok(b, 3 * MiB);

	expect_refusal(b, 4096, ENOSPC, FERRY_E_POOL_FULL, "pool full: 4 KiB requested, 0 B free");

	/* Bad lengths are refused locally, before anything is sent. */
	assert_int_equal(pool_client_alloc(b, 1000, &(struct pool_extent){ 0 }, &err), -EINVAL);
	assert_int_equal(pool_client_alloc(b, 0, &(struct pool_extent){ 0 }, &err), -EINVAL);

	/* Still serving: counters add up, and freed memory can be allocated again. */
	assert_int_equal(pool_client_stats(b, &st, &err), 0);
	assert_int_equal(msrv_stat(&st, "bytes_allocated"), 8 * MiB);
	assert_int_equal(msrv_stat(&st, "bytes_free"), 0);
	assert_int_equal(msrv_stat(&st, "alloc_failures_quota"), 2);
	assert_int_equal(msrv_stat(&st, "alloc_failures_full"), 2);
	assert_int_equal(msrv_stat(&st, "client_bytes"), 3 * MiB);
	assert_int_equal(msrv_stat(&st, "client_quota"), 5 * MiB);
	assert_int_equal(msrv_stat(&st, "errors_sent"), 4);

	assert_int_equal(pool_client_free(a, a1, &err), 0);
	assert_int_equal(pool_client_free(a, a1, &err), -ENOENT);   /* double free */
	assert_int_equal(pool_client_last_code(a), FERRY_E_UNKNOWN_EXTENT);
	assert_int_equal(pool_client_free(b, a2, &err), -ENOENT);   /* not b's */
	uint32_t b2 = alloc_ok(b, 2 * MiB);
	uint32_t a3 = alloc_ok(a, 2 * MiB);

	assert_int_equal(pool_client_free(a, a2, &err), 0);
	assert_int_equal(pool_client_free(a, a3, &err), 0);
	assert_int_equal(pool_client_free(b, b1, &err), 0);
	assert_int_equal(pool_client_free(b, b2, &err), 0);
	assert_int_equal(msrv_client_stat(a, "bytes_allocated"), 0);
	assert_int_equal(msrv_client_stat(a, "largest_free"), 8 * MiB);
	pool_client_close(a);
	pool_client_close(b);
	fx_ctx_destroy(ctx);
}

static void test_extents_are_released_when_the_client_leaves(void **state)
{
	struct fx_ctx *ctx = msrv_ctx();
	struct pool_client *a, *b;
	struct ferry_err err = { 0 };

	(void)state;
	assert_int_equal(msrv_connect(&srv, ctx, "leaver", NULL, &a, &err), 0);
	alloc_ok(a, 4 * MiB);
	alloc_ok(a, 1 * MiB);
	pool_client_close(a);   /* without freeing */
	assert_int_equal(msrv_connect(&srv, ctx, "next", NULL, &b, &err), 0);
	uint64_t deadline = msrv_now_ms() + 3000;

	while (msrv_client_stat(b, "bytes_allocated") != 0 && msrv_now_ms() < deadline)
		;
	assert_int_equal(msrv_client_stat(b, "bytes_allocated"), 0);
	alloc_ok(b, 5 * MiB);
	pool_client_close(b);
	fx_ctx_destroy(ctx);
	assert_true(msrv_log_contains(&srv, "name leaver): "));
	assert_true(msrv_log_contains(&srv, "released 2 extents (5 MiB)"));
}

static int setup(void **state)
{
	static const struct msrv_opts opts = { .pool_size = "8M", .client_quota = "5M" };

	(void)state;
	msrv_start(&srv, &opts);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return msrv_finish(&srv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pool_full_and_quota),
		cmocka_unit_test(test_extents_are_released_when_the_client_leaves),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
