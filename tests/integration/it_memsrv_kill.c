/*
 * Integration: the server dies (SIGKILL) with 64 READs outstanding. Every one
 * of them must complete with an error status within a bounded time, the
 * connection must be in error, and later pool_client calls must fail with a
 * clear message instead of hanging.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "memsrv_harness.h"

#define NREADS 64
#define CHUNK (64u << 10)
#define EXT ((size_t)NREADS * CHUNK)

static struct msrv srv;

static int setup(void **state)
{
	(void)state;
	msrv_start(&srv, NULL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	msrv_cleanup(&srv);
	return 0;
}

static void test_server_killed_with_reads_outstanding(void **state)
{
	struct fx_ctx *ctx = msrv_ctx();
	struct pool_client *c;
	struct pool_extent e;
	struct fx_mr *mr;
	struct ferry_err err = { 0 };
	uint8_t *buf = aligned_alloc(4096, EXT);
	struct fx_sge sge[NREADS];
	struct fx_send_wr wr[NREADS];
	struct fx_wc wc[NREADS];
	int perr = 0, got = 0;

	(void)state;
	assert_non_null(buf);
	assert_int_equal(msrv_connect(&srv, ctx, "survivor", NULL, &c, &err), 0);
	assert_int_equal(pool_client_alloc(c, EXT, &e, &err), 0);
	assert_int_equal(fx_reg_mr(pool_client_pd(c), buf, EXT, FX_ACCESS_LOCAL_WRITE, &mr, &err), 0);

	/* Freeze the server so nothing is served, queue the READs, then kill it.
	 * Over RDMA the NIC serves a frozen process: kill it (and reap it, so its
	 * queue pair is gone) before queueing. */
	bool rdma = msrv_transport() == FX_KIND_RDMA;

	assert_int_equal(kill(srv.pid, SIGSTOP), 0);
	if (rdma) {
		assert_int_equal(kill(srv.pid, SIGKILL), 0);
		assert_true(msrv_wait_exit(&srv, 2000));
	}
	for (int i = 0; i < NREADS; i++) {
		sge[i] = (struct fx_sge){ buf + (size_t)i * CHUNK, CHUNK, mr->lkey };
		wr[i] = (struct fx_send_wr){ .wr_id = 1000 + (uint64_t)i, .opcode = FX_OP_READ,
					     .flags = FX_WR_SIGNALED, .sg_list = &sge[i], .num_sge = 1,
					     .remote_addr = e.base + (uint64_t)i * CHUNK, .rkey = e.rkey };
	}
	assert_int_equal(fx_post_send(pool_client_conn(c), wr, NREADS, &perr), NREADS);
	if (!rdma) {
		assert_int_equal(pool_client_poll(c, wc, NREADS, 50), 0);   /* nothing can complete yet */
		assert_int_equal(kill(srv.pid, SIGKILL), 0);
	}
	uint64_t t0 = msrv_now_ms();

	while (got < NREADS && msrv_now_ms() - t0 < 3000) {
		int n = pool_client_poll(c, wc + got, NREADS - got, 100);

		assert_true(n >= 0);
		got += n;
	}
	uint64_t elapsed = msrv_now_ms() - t0;

	print_message("%d completions %llu ms after SIGKILL\n", got, (unsigned long long)elapsed);
	assert_int_equal(got, NREADS);
	assert_true(elapsed < 3000);
	for (int i = 0; i < NREADS; i++) {
		assert_int_equal(wc[i].wr_id, 1000 + (uint64_t)i);
		if (wc[i].status == FX_WC_SUCCESS)
			fail_msg("READ %d succeeded from a dead server", i);
	}
	assert_int_equal(fx_conn_state(pool_client_conn(c)), FX_CONN_ERROR);
	printf("connection error: %s\n", fx_conn_error(pool_client_conn(c)));

	/* Control calls fail at once, and say why. */
	t0 = msrv_now_ms();
	int rc = pool_client_alloc(c, 4096, &e, &err);

	assert_true(rc < 0);
	assert_true(msrv_now_ms() - t0 < 1000);
	char want[96];

	snprintf(want, sizeof(want), "connection to memory server %s:", msrv_host());
	if (!strstr(err.msg, want))
		fail_msg("unclear error: %s", err.msg);
	printf("alloc after the kill: %s\n", err.msg);
	assert_true(pool_client_free(c, e.id, &err) < 0);
	assert_true(pool_client_stats(c, &(struct ferry_page_stats_ok){ 0 }, &err) < 0);
	/* New posts are refused too. */
	assert_int_equal(fx_post_send(pool_client_conn(c), wr, 1, &perr), 0);
	assert_int_equal(perr, -ENOTCONN);

	fx_dereg_mr(mr);
	pool_client_close(c);
	fx_ctx_destroy(ctx);
	free(buf);
	assert_true(msrv_wait_exit(&srv, 2000));
	assert_true(WIFSIGNALED(srv.status) && WTERMSIG(srv.status) == SIGKILL);
}

static void test_connect_to_a_dead_server_fails_fast(void **state)
{
	struct fx_ctx *ctx = msrv_ctx();
	struct pool_client *c = NULL;
	struct ferry_err err = { 0 };
	uint64_t t0;

	(void)state;
	/* The previous test killed it: nothing listens on its port any more. */
	assert_true(msrv_wait_exit(&srv, 2000));
	t0 = msrv_now_ms();
	assert_true(msrv_connect(&srv, ctx, "late", NULL, &c, &err) < 0);
	assert_null(c);
	assert_true(msrv_now_ms() - t0 < 2000);
	printf("connect to a dead server: %s\n", err.msg);
	char want[96];

	snprintf(want, sizeof(want), "connect to memory server %s:", msrv_host());
	assert_non_null(strstr(err.msg, want));
	fx_ctx_destroy(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_server_killed_with_reads_outstanding),
		cmocka_unit_test(test_connect_to_a_dead_server_fails_fast),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
