/*
 * RDMA transport backend over real verbs. Needs an RDMA device (Soft-RoCE in
 * the QEMU rig: tests/rigs/roce/run-rdma-tests.sh); the address to use is
 * FERRY_TEST_HOST, else RIG_IP (set by the rig). Without a device the first
 * test checks the -ENODEV hint and the rest are skipped, so the binary also
 * passes on a host without RDMA.
 *
 * Both ends usually live in this process (two contexts; fx_connect runs on a
 * helper thread because it blocks until the passive side accepts). The
 * peer-killed test re-executes this binary as a target process
 * (`test_transport_rdma --serve HOST`) and SIGKILLs it.
 *
 * Not covered here: RDMA_CM_EVENT_DEVICE_REMOVAL and fatal async events
 * (they would need the device pulled from under the test).
 *
 * Differences from the TCP test, by design of verbs: remote_base is the
 * target's virtual address; SEND carries any bytes (no page-protocol check);
 * a request before a refused one in the same batch may complete (it ran) ;
 * the target-side counters (bytes_served_*, remote_access_errors) are the
 * NIC's and stay 0; a frozen (SIGSTOPped) target is still served by its NIC.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/transport/transport.h"
#include "proto/page.h"

#include "xport_test_util.h"

static bool g_dev;                 /* an RDMA device is usable */
static const char *g_host;         /* address of this machine's RDMA interface */
static const char *g_self;         /* argv[0], for --serve */

#define NEED_DEV()                                                                  \
	do {                                                                        \
		if (!g_dev)                                                         \
			skip();                                                     \
	} while (0)

/* ------------------------------------------------------------------ fixture */

/* RDMA: remote_base is the target's virtual address. */
static void pair_open_opts(struct xt_pair *p, const struct fx_ctx_opts *co, const struct fx_conn_opts *io,
			   const struct fx_conn_opts *to)
{
	xt_pair_open(p, FX_KIND_RDMA, g_host, co, io, to);
	assert_int_equal(p->tmr->remote_base, (uint64_t)(uintptr_t)p->tbuf);
}

static void pair_open(struct xt_pair *p)
{
	pair_open_opts(p, NULL, NULL, NULL);
}

static void connect_accept(struct fx_ctx *ci, struct fx_pd *ipd, struct fx_listener *l, struct fx_pd *tpd,
			   const struct fx_conn_opts *io, const struct fx_conn_opts *to, struct fx_conn **c_i,
			   struct fx_conn **c_t)
{
	xt_connect_accept(FX_KIND_RDMA, g_host, ci, ipd, l, tpd, io, to, c_i, c_t);
}

/* Poll both until @p c leaves CONNECTED (or timeout). */
static void wait_not_connected(struct xt_pair *p, struct fx_conn *c, int ms)
{
	struct fx_wc w[32];
	uint64_t t0 = xt_now_ms();

	while (fx_conn_state(c) == FX_CONN_CONNECTED && (int)(xt_now_ms() - t0) < ms) {
		(void)fx_poll(p->ct, w, 32, 0);
		(void)fx_poll(p->ci, w, 32, 0);
	}
}

/* flushes of what was posted arrive through the CQ: let them come */
static void pair_close(struct xt_pair *p)
{
	xt_pair_close(p, 20);
}

/* ------------------------------------------------------------------ basics */

static void test_device_or_hint(void **state)
{
	(void)state;
	struct fx_ctx *ctx = NULL;
	struct ferry_err err = { 0 };
	int rc = fx_ctx_create(FX_KIND_RDMA, NULL, &ctx, &err);

	if (rc) {
		assert_int_equal(rc, -ENODEV);
		assert_null(ctx);
		assert_non_null(strstr(err.msg, "use --transport tcp"));
		fprintf(stderr, "no RDMA device (%s): the verbs tests are skipped\n", err.msg);
		g_dev = false;
		return;
	}
	assert_int_equal(fx_ctx_kind(ctx), FX_KIND_RDMA);
	assert_true(fx_ctx_fd(ctx) >= 0);
	fx_ctx_destroy(ctx);
	/* a named device that does not exist */
	struct fx_ctx_opts o = { .rdma_device = "no-such-dev0" };

	assert_int_equal(fx_ctx_create(FX_KIND_RDMA, &o, &ctx, &err), -ENODEV);
	assert_non_null(strstr(err.msg, "no-such-dev0"));
	g_dev = g_host != NULL;
	if (!g_host)
		fprintf(stderr, "RDMA device present but neither FERRY_TEST_HOST nor RIG_IP set: skipping\n");
}

static void test_connect_accept(void **state)
{
	(void)state;
	NEED_DEV();
	struct xt_pair p;
	struct fx_conn *none = NULL;
	struct fx_ctx_stats st;

	pair_open(&p);
	assert_int_equal(fx_conn_state(p.c_i), FX_CONN_CONNECTED);
	assert_int_equal(fx_conn_state(p.c_t), FX_CONN_CONNECTED);
	assert_string_equal(fx_conn_error(p.c_i), "");
	assert_non_null(strstr(fx_conn_peer(p.c_i), g_host));
	assert_ptr_equal(fx_conn_pd(p.c_t), p.pt);
	assert_true(fx_listener_fd(p.l) >= 0);
	fx_conn_set_user(p.c_t, &p);
	assert_ptr_equal(fx_conn_get_user(p.c_t), &p);
	assert_int_equal(fx_accept(p.l, p.pt, NULL, &none, NULL, 0, NULL), -EAGAIN);
	assert_int_equal(fx_pd_free(p.pt), -EBUSY);
	fx_ctx_get_stats(p.ct, &st);
	assert_int_equal(st.conns_opened, 1);
	fx_ctx_get_stats(p.ci, &st);
	assert_int_equal(st.conns_opened, 1);
	pair_close(&p);
}

static void test_connect_refused(void **state)
{
	(void)state;
	NEED_DEV();
	struct fx_ctx *ctx;
	struct fx_pd *pd;
	struct fx_conn *c = NULL;
	struct ferry_err err = { 0 };
	struct fx_ctx_stats st;

	assert_int_equal(fx_ctx_create(FX_KIND_RDMA, NULL, &ctx, &err), 0);
	assert_int_equal(fx_pd_alloc(ctx, &pd, &err), 0);
	uint64_t t0 = xt_now_ms();
	int rc = fx_connect(ctx, pd, g_host, 9, NULL, &c, &err);   /* nobody listens on port 9 */

	assert_int_equal(rc, -ECONNREFUSED);
	assert_true(xt_now_ms() - t0 < 3000);
	assert_null(c);
	assert_non_null(strstr(err.msg, "refused"));
	fx_ctx_get_stats(ctx, &st);
	assert_int_equal(st.conns_failed, 1);
	assert_int_equal(fx_pd_free(pd), 0);
	fx_ctx_destroy(ctx);
}

/* ------------------------------------------------------------------ SEND / RECV */

static void test_send_recv(void **state)
{
	(void)state;
	NEED_DEV();
	struct xt_pair p;
	struct fx_wc wc[8];
	int perr = 0;

	pair_open(&p);
	uint8_t *rbuf = p.tbuf;
	struct fx_sge rs[4];
	struct fx_recv_wr rw[4];

	for (int i = 0; i < 4; i++) {
		rs[i] = xt_sge(p.tmr, rbuf + (size_t)i * PAGE, PAGE);
		rw[i] = (struct fx_recv_wr){ .wr_id = 100 + (uint64_t)i, .sg_list = &rs[i], .num_sge = 1 };
	}
	assert_int_equal(fx_post_recv(p.c_t, rw, 4, &perr), 4);
	assert_int_equal(perr, 0);

	/* HELLO as one sge, ALLOC split across three sges (header split too), STATS inline */
	int len[3];

	xt_send_control_msgs(&p, 5000, len);

	const int hl = len[0], al = len[1], sl = len[2];

	assert_int_equal(xt_drain_target(&p, wc, 3, 5000), 3);

	struct ferry_page_msg msg;

	assert_int_equal(wc[0].opcode, FX_WC_RECV);
	assert_int_equal(wc[0].status, FX_WC_SUCCESS);
	assert_int_equal(wc[0].wr_id, 100);
	assert_int_equal(wc[0].byte_len, (uint32_t)hl);
	assert_ptr_equal(wc[0].conn, p.c_t);
	assert_int_equal(ferry_page_decode(rbuf, wc[0].byte_len, &msg), FERRY_E_OK);
	assert_string_equal(msg.u.hello.name, "vm-test");
	assert_int_equal(wc[1].byte_len, (uint32_t)al);
	assert_int_equal(ferry_page_decode(rbuf + PAGE, wc[1].byte_len, &msg), FERRY_E_OK);
	assert_int_equal(msg.u.alloc.length, 1 << 20);
	assert_int_equal(wc[2].byte_len, (uint32_t)sl);
	assert_int_equal(ferry_page_decode(rbuf + 2 * PAGE, wc[2].byte_len, &msg), FERRY_E_OK);
	assert_int_equal(msg.hdr.type, FERRY_PAGE_STATS);

	/* the other way, unsignalled SEND: the receive completes, the SEND silently */
	struct fx_sge irs = xt_sge(p.imr, p.ibuf + 8192, PAGE);
	struct fx_recv_wr irw = { .wr_id = 7, .sg_list = &irs, .num_sge = 1 };

	assert_int_equal(fx_post_recv(p.c_i, &irw, 1, NULL), 1);
	int el = ferry_page_encode_error(2, FERRY_E_POOL_FULL, "pool full", rbuf + 3 * PAGE, 512);
	struct fx_sge es = xt_sge(p.tmr, rbuf + 3 * PAGE, (uint32_t)el);
	struct fx_send_wr ew = { .wr_id = 9, .opcode = FX_OP_SEND, .sg_list = &es, .num_sge = 1 };

	assert_int_equal(fx_post_send(p.c_t, &ew, 1, NULL), 1);
	assert_int_equal(xt_drain(&p, wc, 1, 5000), 1);
	assert_int_equal(wc[0].opcode, FX_WC_RECV);
	assert_int_equal(wc[0].wr_id, 7);
	assert_int_equal(ferry_page_decode(p.ibuf + 8192, wc[0].byte_len, &msg), FERRY_E_OK);
	assert_int_equal(msg.u.error.code, FERRY_E_POOL_FULL);
	xt_spin(&p, 20);
	assert_int_equal(fx_conn_outstanding(p.c_t), 0);
	pair_close(&p);
}

static void test_post_invalid(void **state)
{
	(void)state;
	NEED_DEV();
	struct xt_pair p;
	int perr = 0;

	pair_open(&p);
	struct fx_sge s = xt_sge(p.imr, p.ibuf, 64);
	struct fx_send_wr w = { .wr_id = 1, .opcode = FX_OP_SEND, .flags = FX_WR_SIGNALED, .sg_list = &s,
				.num_sge = FX_MAX_SGE + 1 };

	assert_int_equal(fx_post_send(p.c_i, &w, 1, &perr), 0);
	assert_int_equal(perr, -EINVAL);
	w.num_sge = 1;
	w.opcode = (enum fx_opcode)7;
	assert_int_equal(fx_post_send(p.c_i, &w, 1, &perr), 0);
	assert_int_equal(perr, -EINVAL);
	w.opcode = FX_OP_READ;
	w.num_sge = 0;
	assert_int_equal(fx_post_send(p.c_i, &w, 1, &perr), 0);
	assert_int_equal(perr, -EINVAL);
	w.num_sge = 1;
	s.length = FERRY_PAGE_MAX_DATA + 1;
	assert_int_equal(fx_post_send(p.c_i, &w, 1, &perr), 0);
	assert_int_equal(perr, -EINVAL);
	s.length = 300;                        /* inline above max_inline (256) */
	w.opcode = FX_OP_WRITE;
	w.flags = FX_WR_INLINE;
	assert_int_equal(fx_post_send(p.c_i, &w, 1, &perr), 0);
	assert_int_equal(perr, -EINVAL);
	assert_int_equal(fx_conn_state(p.c_i), FX_CONN_CONNECTED);
	assert_int_equal(fx_conn_outstanding(p.c_i), 0);
	pair_close(&p);
}

/* ------------------------------------------------------------------ one-sided */

static void test_write_read_sg(void **state)
{
	(void)state;
	NEED_DEV();
	struct xt_pair p;
	enum { N = 128 };
	static struct fx_sge sg[N][4];
	static struct fx_send_wr w[N];
	struct fx_wc wc[N];
	int perr = 0;

	pair_open(&p);
	uint8_t *src = p.ibuf, *dst = p.ibuf + TGT_LEN;
	uint64_t rb = p.tmr->remote_base;

	xt_fill_pattern(src, TGT_LEN, 42);
	for (int i = 0; i < N; i++) {
		for (int k = 0; k < 4; k++)
			sg[i][k] = xt_sge(p.imr, src + (size_t)i * PAGE + (size_t)(3 - k) * 1024, 1024);
		w[i] = (struct fx_send_wr){ .wr_id = (uint64_t)i, .opcode = FX_OP_WRITE, .flags = FX_WR_SIGNALED,
					    .sg_list = sg[i], .num_sge = 4, .remote_addr = rb + (uint64_t)i * PAGE,
					    .rkey = p.tmr->rkey };
	}
	assert_int_equal(fx_post_send(p.c_i, w, N, &perr), N);
	assert_int_equal(xt_drain(&p, wc, N, 10000), N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(wc[i].status, FX_WC_SUCCESS);
		assert_int_equal(wc[i].opcode, FX_WC_WRITE);
		assert_int_equal(wc[i].wr_id, (uint64_t)i);
		assert_int_equal(wc[i].byte_len, PAGE);
	}
	for (int i = 0; i < N; i++)
		for (int k = 0; k < 4; k++)
			assert_memory_equal(p.tbuf + (size_t)i * PAGE + (size_t)k * 1024,
					    src + (size_t)i * PAGE + (size_t)(3 - k) * 1024, 1024);

	for (int i = 0; i < N; i++) {
		sg[i][0] = xt_sge(p.imr, dst + (size_t)i * PAGE, 512);
		sg[i][1] = xt_sge(p.imr, dst + (size_t)i * PAGE + 512, PAGE - 512);
		w[i] = (struct fx_send_wr){ .wr_id = 1000 + (uint64_t)i, .opcode = FX_OP_READ,
					    .flags = FX_WR_SIGNALED, .sg_list = sg[i], .num_sge = 2,
					    .remote_addr = rb + (uint64_t)i * PAGE, .rkey = p.tmr->rkey };
	}
	assert_int_equal(fx_post_send(p.c_i, w, N, &perr), N);
	assert_int_equal(xt_drain(&p, wc, N, 10000), N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(wc[i].status, FX_WC_SUCCESS);
		assert_int_equal(wc[i].opcode, FX_WC_READ);
		assert_int_equal(wc[i].wr_id, 1000 + (uint64_t)i);
	}
	assert_memory_equal(dst, p.tbuf, (size_t)N * PAGE);

	/* one 1 MiB READ */
	struct fx_sge big = xt_sge(p.imr, dst, (uint32_t)TGT_LEN);
	struct fx_send_wr bw = { .wr_id = 77, .opcode = FX_OP_READ, .flags = FX_WR_SIGNALED, .sg_list = &big,
				 .num_sge = 1, .remote_addr = rb, .rkey = p.tmr->rkey };

	memset(dst, 0, TGT_LEN);
	assert_int_equal(fx_post_send(p.c_i, &bw, 1, &perr), 1);
	assert_int_equal(xt_drain(&p, wc, 1, 10000), 1);
	assert_int_equal(wc[0].status, FX_WC_SUCCESS);
	assert_int_equal(wc[0].byte_len, TGT_LEN);
	assert_memory_equal(dst, p.tbuf, TGT_LEN);

	/* inline WRITEs (64 bytes: the QP inlines; 200 bytes from two pieces) */
	uint8_t small[200];
	struct fx_sge is[2] = { { .addr = small, .length = 64, .lkey = 0 }, { .addr = small + 64, .length = 136, .lkey = 0 } };
	struct fx_send_wr iw[2] = {
		{ .wr_id = 78, .opcode = FX_OP_WRITE, .flags = FX_WR_INLINE, .sg_list = is, .num_sge = 1,
		  .remote_addr = rb + 100, .rkey = p.tmr->rkey },
		{ .wr_id = 79, .opcode = FX_OP_WRITE, .flags = FX_WR_SIGNALED | FX_WR_INLINE, .sg_list = is,
		  .num_sge = 2, .remote_addr = rb + 1000, .rkey = p.tmr->rkey },
	};

	memset(small, 0x5a, sizeof(small));
	assert_int_equal(fx_post_send(p.c_i, iw, 2, &perr), 2);
	memset(small, 0, sizeof(small));
	assert_int_equal(xt_drain(&p, wc, 1, 5000), 1);
	assert_int_equal(wc[0].status, FX_WC_SUCCESS);
	assert_int_equal(wc[0].wr_id, 79);
	for (int i = 0; i < 64; i++)
		assert_int_equal(p.tbuf[100 + i], 0x5a);
	for (int i = 0; i < 200; i++)
		assert_int_equal(p.tbuf[1000 + i], 0x5a);

	struct fx_ctx_stats si;

	fx_ctx_get_stats(p.ci, &si);
	assert_int_equal(si.bytes_written, (uint64_t)N * PAGE + 264);
	assert_int_equal(si.bytes_read, (uint64_t)N * PAGE + TGT_LEN);
	assert_int_equal(si.ops_failed, 0);
	pair_close(&p);
}

static void test_batch_selective_signal(void **state)
{
	(void)state;
	NEED_DEV();
	struct xt_pair p;
	enum { N = 256 };
	static struct fx_sge sg[N];
	static struct fx_send_wr w[N];
	struct fx_wc wc[N];
	int perr = 0;

	pair_open(&p);
	for (int round = 0; round < 3; round++) {
		memset(p.ibuf, 0, TGT_LEN);
		for (int i = 0; i < N; i++) {
			sg[i] = xt_sge(p.imr, p.ibuf + (size_t)i * PAGE, PAGE);
			w[i] = (struct fx_send_wr){ .wr_id = (uint64_t)i, .opcode = FX_OP_READ,
						    .flags = (i % 16 == 15) ? FX_WR_SIGNALED : 0, .sg_list = &sg[i],
						    .num_sge = 1,
						    .remote_addr = p.tmr->remote_base +
								   (uint64_t)((i * 7) % TGT_PAGES) * PAGE,
						    .rkey = p.tmr->rkey };
		}
		assert_int_equal(fx_post_send(p.c_i, w, N, &perr), N);
		assert_int_equal(perr, 0);
		assert_int_equal(fx_conn_outstanding(p.c_i), N);
		assert_int_equal(xt_drain(&p, wc, N / 16, 10000), N / 16);
		for (int i = 0; i < N / 16; i++) {
			assert_int_equal(wc[i].status, FX_WC_SUCCESS);
			assert_int_equal(wc[i].wr_id, (uint64_t)(i * 16 + 15));
		}
		assert_int_equal(xt_drain(&p, wc, 1, 50), 0);
		assert_int_equal(fx_conn_outstanding(p.c_i), 0);
		for (int i = 0; i < N; i++)
			assert_memory_equal(p.ibuf + (size_t)i * PAGE, p.tbuf + (size_t)((i * 7) % TGT_PAGES) * PAGE,
					    PAGE);
	}
	/* unsignalled only, in small batches: the transport's own signals retire them */
	for (int i = 0; i < N; i++)
		w[i].flags = 0;
	for (int i = 0; i < N; i += 8)
		assert_int_equal(fx_post_send(p.c_i, w + i, 8, &perr), 8);
	uint64_t t0 = xt_now_ms();

	while (fx_conn_outstanding(p.c_i) && xt_now_ms() - t0 < 10000)
		assert_int_equal(xt_drain(&p, wc, 1, 10), 0);
	assert_int_equal(fx_conn_outstanding(p.c_i), 0);
	pair_close(&p);
}

static void test_backpressure(void **state)
{
	(void)state;
	NEED_DEV();
	struct xt_pair p;
	struct fx_conn_opts io = { .max_send_wr = XT_BP_SEND_WR, .max_recv_wr = XT_BP_RECV_WR };

	pair_open_opts(&p, NULL, &io, NULL);
	xt_check_backpressure(&p, 10000);
	pair_close(&p);
}

/* A SEND with no receive posted waits (RNR retries) until one is posted. */
static void test_rnr_wait(void **state)
{
	(void)state;
	NEED_DEV();
	struct xt_pair p;
	struct fx_wc wc[4];
	int perr = 0;

	pair_open(&p);
	struct fx_sge s = xt_sge(p.imr, p.ibuf, 100);
	struct fx_send_wr w = { .wr_id = 1, .opcode = FX_OP_SEND, .flags = FX_WR_SIGNALED, .sg_list = &s,
				.num_sge = 1 };

	memset(p.ibuf, 0x11, 100);
	assert_int_equal(fx_post_send(p.c_i, &w, 1, &perr), 1);
	assert_int_equal(xt_drain(&p, wc, 1, 200), 0);
	assert_int_equal(fx_conn_state(p.c_i), FX_CONN_CONNECTED);
	struct fx_sge rs = xt_sge(p.tmr, p.tbuf, PAGE);
	struct fx_recv_wr rw = { .wr_id = 5, .sg_list = &rs, .num_sge = 1 };

	assert_int_equal(fx_post_recv(p.c_t, &rw, 1, &perr), 1);
	assert_int_equal(xt_drain_target(&p, wc, 1, 5000), 1);
	assert_int_equal(wc[0].status, FX_WC_SUCCESS);
	assert_int_equal(wc[0].byte_len, 100);
	assert_int_equal(p.tbuf[99], 0x11);
	assert_int_equal(xt_drain(&p, wc, 1, 5000), 1);
	assert_int_equal(wc[0].status, FX_WC_SUCCESS);
	pair_close(&p);
}

/* A SEND nobody receives retries (RNR) forever on the wire: op_timeout_ms ends it, and fx_poll(-1) returns. */
static void test_op_timeout(void **state)
{
	(void)state;
	NEED_DEV();
	struct xt_pair p;
	struct fx_ctx_opts co = { .op_timeout_ms = 500 };
	struct fx_wc wc[4];
	int perr = 0;

	pair_open_opts(&p, &co, NULL, NULL);
	struct fx_sge s = xt_sge(p.imr, p.ibuf, 64);
	struct fx_send_wr w[2] = {
		{ .wr_id = 1, .opcode = FX_OP_SEND, .flags = 0, .sg_list = &s, .num_sge = 1 },
		{ .wr_id = 2, .opcode = FX_OP_SEND, .flags = FX_WR_SIGNALED, .sg_list = &s, .num_sge = 1 },
	};
	uint64_t t0 = xt_now_ms();

	assert_int_equal(fx_post_send(p.c_i, w, 2, &perr), 2);
	int got = 0;

	while (got < 2 && xt_now_ms() - t0 < 3000)
		got += fx_poll(p.ci, wc + got, 2 - got, -1);
	uint64_t took = xt_now_ms() - t0;

	assert_int_equal(got, 2);
	assert_true(took >= 400 && took < 2000);
	assert_int_equal(wc[0].wr_id, 1);
	assert_int_equal(wc[0].status, FX_WC_RETRY_EXC_ERR);
	assert_int_equal(wc[1].wr_id, 2);
	assert_int_equal(wc[1].status, FX_WC_FLUSH_ERR);
	assert_int_equal(fx_conn_state(p.c_i), FX_CONN_ERROR);
	assert_non_null(strstr(fx_conn_error(p.c_i), "timed out after 500 ms"));
	wait_not_connected(&p, p.c_t, 3000);
	assert_int_equal(fx_conn_state(p.c_t), FX_CONN_ERROR);
	pair_close(&p);
}

/* ------------------------------------------------------------------ remote access errors */

enum bad_kind { BAD_RKEY, BAD_OTHER_PD, BAD_RANGE, BAD_DEREG, BAD_RIGHTS };

static void run_bad_access(enum bad_kind kind, enum fx_opcode op)
{
	struct xt_pair p;
	struct fx_wc wc[8];
	struct ferry_err err = { 0 };
	struct fx_pd *pt2 = NULL;
	struct fx_mr *mr2 = NULL, *ro = NULL;
	struct fx_conn *ci2 = NULL, *ct2 = NULL;
	uint8_t *other = NULL;
	int perr = 0;

	pair_open(&p);
	uint8_t *snap = malloc(TGT_LEN);
	uint8_t *osnap = malloc(4 * PAGE);

	assert_non_null(snap);
	uint32_t rkey = p.tmr->rkey;
	uint64_t rb = p.tmr->remote_base, raddr = rb + PAGE;

	switch (kind) {
	case BAD_RKEY:
		rkey = p.tmr->rkey ^ 0x5a5a5a00u;
		break;
	case BAD_OTHER_PD:
		other = calloc(1, 4 * PAGE);
		assert_int_equal(fx_pd_alloc(p.ct, &pt2, &err), 0);
		assert_int_equal(fx_reg_mr(pt2, other, 4 * PAGE,
					   FX_ACCESS_LOCAL_WRITE | FX_ACCESS_REMOTE_READ | FX_ACCESS_REMOTE_WRITE, &mr2,
					   &err), 0);
		connect_accept(p.ci, p.pi, p.l, pt2, NULL, NULL, &ci2, &ct2);
		{
			struct fx_sge s = xt_sge(p.imr, p.ibuf, PAGE);
			struct fx_send_wr w = { .wr_id = 50, .opcode = FX_OP_READ, .flags = FX_WR_SIGNALED,
						.sg_list = &s, .num_sge = 1, .remote_addr = mr2->remote_base,
						.rkey = mr2->rkey };

			assert_int_equal(fx_post_send(ci2, &w, 1, &perr), 1);
			assert_int_equal(xt_drain(&p, wc, 1, 5000), 1);
			assert_int_equal(wc[0].status, FX_WC_SUCCESS);
			assert_ptr_equal(wc[0].conn, ci2);
		}
		rkey = mr2->rkey;
		raddr = mr2->remote_base;
		memcpy(osnap, other, 4 * PAGE);
		break;
	case BAD_RANGE:
		raddr = rb + TGT_LEN - PAGE / 2;
		break;
	case BAD_DEREG: {
		uint8_t *tmp = calloc(1, 4 * PAGE);

		assert_int_equal(fx_reg_mr(p.pt, tmp, 4 * PAGE,
					   FX_ACCESS_LOCAL_WRITE | FX_ACCESS_REMOTE_READ | FX_ACCESS_REMOTE_WRITE, &mr2,
					   &err), 0);
		rkey = mr2->rkey;
		raddr = mr2->remote_base;
		assert_int_equal(fx_dereg_mr(mr2), 0);
		mr2 = NULL;
		free(tmp);
		break;
	}
	case BAD_RIGHTS:
		other = calloc(1, 4 * PAGE);
		assert_int_equal(fx_reg_mr(p.pt, other, 4 * PAGE, FX_ACCESS_LOCAL_WRITE, &ro, &err), 0);
		rkey = ro->rkey;
		raddr = ro->remote_base;
		memcpy(osnap, other, 4 * PAGE);
		break;
	}
	memcpy(snap, p.tbuf, TGT_LEN);

	/* good, BAD, good, good in one batch */
	struct fx_sge sg[4];
	struct fx_send_wr w[4];

	xt_fill_pattern(p.ibuf, 4 * PAGE, 9);
	for (int i = 0; i < 4; i++) {
		sg[i] = xt_sge(p.imr, p.ibuf + (size_t)i * PAGE, PAGE);
		w[i] = (struct fx_send_wr){ .wr_id = 10 + (uint64_t)i, .opcode = op, .flags = FX_WR_SIGNALED,
					    .sg_list = &sg[i], .num_sge = 1, .remote_addr = rb + (uint64_t)(8 + i) * PAGE,
					    .rkey = p.tmr->rkey };
	}
	w[1].rkey = rkey;
	w[1].remote_addr = raddr;
	if (op == FX_OP_WRITE) {
		/* the good WRITEs must not change the target either: they write what is there */
		for (int i = 0; i < 4; i++)
			memcpy(p.ibuf + (size_t)i * PAGE, p.tbuf + (size_t)(8 + i) * PAGE, PAGE);
		xt_fill_pattern(p.ibuf + PAGE, PAGE, 10);     /* the bad one carries new data */
	}
	assert_int_equal(fx_post_send(p.c_i, w, 4, &perr), 4);
	assert_int_equal(xt_drain(&p, wc, 4, 5000), 4);
	assert_int_equal(wc[0].wr_id, 10);
	assert_true(wc[0].status == FX_WC_SUCCESS || wc[0].status == FX_WC_FLUSH_ERR);
	assert_int_equal(wc[1].wr_id, 11);
	if (wc[1].status != FX_WC_REM_ACCESS_ERR)
		fail_msg("bad %d/%d: status %s, want remote access error", kind, op, fx_wc_status_str(wc[1].status));
	assert_int_equal(wc[2].status, FX_WC_FLUSH_ERR);
	assert_int_equal(wc[3].status, FX_WC_FLUSH_ERR);
	assert_int_equal(fx_conn_state(p.c_i), FX_CONN_ERROR);
	assert_true(strlen(fx_conn_error(p.c_i)) > 0);
	assert_int_equal(fx_post_send(p.c_i, w, 1, &perr), 0);
	assert_int_equal(perr, -ENOTCONN);
	/* the target's end fails too (its QP errors out, or it hears the disconnect) */
	uint64_t t0 = xt_now_ms();

	wait_not_connected(&p, p.c_t, 5000);
	assert_int_equal(fx_conn_state(p.c_t), FX_CONN_ERROR);
	assert_true(xt_now_ms() - t0 < 5000);
	assert_memory_equal(snap, p.tbuf, TGT_LEN);     /* a refused WRITE writes nothing */
	if (other)
		assert_memory_equal(osnap, other, 4 * PAGE);

	if (ci2) {
		assert_int_equal(fx_conn_state(ci2), FX_CONN_CONNECTED);
		assert_int_equal(fx_conn_state(ct2), FX_CONN_CONNECTED);
		fx_conn_close(ci2);
		fx_conn_close(ct2);
	}
	xt_spin(&p, 20);
	if (mr2)
		assert_int_equal(fx_dereg_mr(mr2), 0);
	if (ro)
		assert_int_equal(fx_dereg_mr(ro), 0);
	if (pt2)
		assert_int_equal(fx_pd_free(pt2), 0);
	free(other);
	free(snap);
	free(osnap);
	pair_close(&p);
}

XT_READ_WRITE_TEST(test_bad_rkey, NEED_DEV(), run_bad_access, BAD_RKEY)
XT_READ_WRITE_TEST(test_other_pd, NEED_DEV(), run_bad_access, BAD_OTHER_PD)
XT_READ_WRITE_TEST(test_out_of_range, NEED_DEV(), run_bad_access, BAD_RANGE)
XT_READ_WRITE_TEST(test_after_dereg, NEED_DEV(), run_bad_access, BAD_DEREG)
XT_READ_WRITE_TEST(test_no_remote_rights, NEED_DEV(), run_bad_access, BAD_RIGHTS)

/* ------------------------------------------------------------------ local errors */

static void test_recv_too_small(void **state)
{
	(void)state;
	NEED_DEV();
	struct xt_pair p;
	struct fx_wc wc[4];
	int perr = 0;

	pair_open(&p);
	struct fx_sge rs[2] = { xt_sge(p.tmr, p.tbuf, 32), xt_sge(p.tmr, p.tbuf + PAGE, PAGE) };
	struct fx_recv_wr rw[2] = { { .wr_id = 1, .sg_list = &rs[0], .num_sge = 1 },
				    { .wr_id = 2, .sg_list = &rs[1], .num_sge = 1 } };

	assert_int_equal(fx_post_recv(p.c_t, rw, 2, &perr), 2);
	struct fx_sge s = xt_sge(p.imr, p.ibuf, 100);
	struct fx_send_wr w = { .wr_id = 1, .opcode = FX_OP_SEND, .flags = FX_WR_SIGNALED, .sg_list = &s,
				.num_sge = 1 };

	assert_int_equal(fx_post_send(p.c_i, &w, 1, &perr), 1);
	assert_int_equal(xt_drain_target(&p, wc, 2, 5000), 2);
	assert_int_equal(wc[0].wr_id, 1);
	assert_int_equal(wc[0].status, FX_WC_LOC_LEN_ERR);
	assert_int_equal(wc[1].wr_id, 2);
	assert_int_equal(wc[1].status, FX_WC_FLUSH_ERR);
	assert_int_equal(fx_conn_state(p.c_t), FX_CONN_ERROR);
	assert_int_equal(xt_drain(&p, wc, 1, 5000), 1);
	assert_true(wc[0].status != FX_WC_SUCCESS);
	assert_int_equal(fx_conn_state(p.c_i), FX_CONN_ERROR);
	pair_close(&p);
}

static void test_local_prot_err(void **state)
{
	(void)state;
	NEED_DEV();
	struct xt_pair p;
	struct fx_wc wc[4];
	int perr = 0;

	pair_open(&p);
	struct fx_sge sg[2] = { xt_sge(p.imr, p.ibuf, PAGE),
				{ .addr = p.ibuf + PAGE, .length = PAGE, .lkey = p.imr->lkey ^ 0x00ffff00u } };
	struct fx_send_wr w[2] = {
		{ .wr_id = 1, .opcode = FX_OP_READ, .flags = FX_WR_SIGNALED, .sg_list = &sg[0], .num_sge = 1,
		  .remote_addr = p.tmr->remote_base, .rkey = p.tmr->rkey },
		{ .wr_id = 2, .opcode = FX_OP_READ, .flags = 0, .sg_list = &sg[1], .num_sge = 1,
		  .remote_addr = p.tmr->remote_base, .rkey = p.tmr->rkey },
	};

	assert_int_equal(fx_post_send(p.c_i, w, 2, &perr), 2);
	assert_int_equal(xt_drain(&p, wc, 2, 5000), 2);
	assert_int_equal(wc[0].wr_id, 1);
	assert_int_equal(wc[0].status, FX_WC_SUCCESS);
	assert_int_equal(wc[1].wr_id, 2);
	assert_int_equal(wc[1].status, FX_WC_LOC_PROT_ERR);
	assert_int_equal(fx_conn_state(p.c_i), FX_CONN_ERROR);
	pair_close(&p);
}

/* ------------------------------------------------------------------ dead peer */

struct child_info {
	uint16_t port;
	uint32_t rkey;
	uint64_t base;
};

/* `--serve HOST`: one region, serves connections until killed; writes its info to stdout. */
static int serve_main(const char *host)
{
	struct fx_ctx *ctx;
	struct fx_pd *pd;
	struct fx_mr *mr;
	struct fx_listener *l;
	struct fx_conn *c = NULL;
	struct fx_wc wc[16];
	struct child_info info;
	struct ferry_err err = { 0 };
	size_t len = 1 << 20;
	void *mem = calloc(1, len);

	if (fx_ctx_create(FX_KIND_RDMA, NULL, &ctx, &err) || fx_pd_alloc(ctx, &pd, &err) ||
	    fx_reg_mr(pd, mem, len, FX_ACCESS_LOCAL_WRITE | FX_ACCESS_REMOTE_READ | FX_ACCESS_REMOTE_WRITE, &mr,
		      &err) ||
	    fx_listen(ctx, host, 0, &l, &err)) {
		fprintf(stderr, "serve: %s\n", err.msg);
		return 2;
	}
	info.port = fx_listener_port(l);
	info.rkey = mr->rkey;
	info.base = mr->remote_base;
	if (write(STDOUT_FILENO, &info, sizeof(info)) != (ssize_t)sizeof(info))
		return 3;
	for (;;) {
		struct fx_conn *n = NULL;

		if (fx_accept(l, pd, NULL, &n, NULL, 0, NULL) == 0)
			c = n;
		(void)fx_poll(ctx, wc, 16, 10);
	}
	(void)c;
	return 0;
}

static pid_t spawn_target(struct child_info *ci)
{
	int pfd[2];

	assert_int_equal(pipe(pfd), 0);
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(pfd[1], STDOUT_FILENO);
		close(pfd[0]);
		close(pfd[1]);
		execl(g_self, g_self, "--serve", g_host, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	assert_int_equal(read(pfd[0], ci, sizeof(*ci)), (ssize_t)sizeof(*ci));
	close(pfd[0]);
	return pid;
}

static void test_peer_killed(void **state)
{
	(void)state;
	NEED_DEV();
	struct child_info info;
	pid_t pid = spawn_target(&info);
	struct fx_ctx_opts co = { .op_timeout_ms = 3000 };
	struct fx_ctx *ctx;
	struct fx_pd *pd;
	struct fx_mr *mr;
	struct fx_conn *c;
	struct ferry_err err = { 0 };
	enum { N = 64 };
	struct fx_sge sg[N];
	struct fx_send_wr w[N];
	struct fx_wc wc[N];
	uint8_t *buf = calloc(N, PAGE);
	int perr = 0, status;

	assert_int_equal(fx_ctx_create(FX_KIND_RDMA, &co, &ctx, &err), 0);
	assert_int_equal(fx_pd_alloc(ctx, &pd, &err), 0);
	assert_int_equal(fx_reg_mr(pd, buf, (size_t)N * PAGE, FX_ACCESS_LOCAL_WRITE, &mr, &err), 0);
	if (fx_connect(ctx, pd, g_host, info.port, NULL, &c, &err))
		fail_msg("connect to the target: %s", err.msg);
	for (int i = 0; i < N; i++) {
		sg[i] = xt_sge(mr, buf + (size_t)i * PAGE, PAGE);
		w[i] = (struct fx_send_wr){ .wr_id = (uint64_t)i, .opcode = FX_OP_READ,
					    .flags = (i % 2) ? FX_WR_SIGNALED : 0, .sg_list = &sg[i], .num_sge = 1,
					    .remote_addr = info.base + (uint64_t)i * PAGE, .rkey = info.rkey };
	}
	assert_int_equal(fx_post_send(c, w, N, &perr), N);
	int got = 0;
	uint64_t t0 = xt_now_ms();

	while (got < N / 2 && xt_now_ms() - t0 < 5000)
		got += fx_poll(ctx, wc + got, N - got, 100);
	assert_int_equal(got, N / 2);

	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	for (int i = 0; i < N; i++)
		assert_int_equal(fx_post_send(c, &w[i], 1, &perr), 1);
	t0 = xt_now_ms();
	got = 0;
	while (got < N && xt_now_ms() - t0 < 6000) {
		int n = fx_poll(ctx, wc + got, N - got, -1);   /* -1 must not hang */

		assert_true(n >= 0);
		got += n;
	}
	uint64_t took = xt_now_ms() - t0;

	fprintf(stderr, "peer killed: %d completions in %llu ms, first %s, error \"%s\"\n", got,
		(unsigned long long)took, got ? fx_wc_status_str(wc[0].status) : "-", fx_conn_error(c));
	assert_int_equal(got, N);
	assert_true(took < 4000);
	assert_int_equal(wc[0].wr_id, 0);
	assert_true(wc[0].status == FX_WC_RETRY_EXC_ERR);
	for (int i = 1; i < N; i++) {
		assert_int_equal(wc[i].status, FX_WC_FLUSH_ERR);
		assert_int_equal(wc[i].wr_id, (uint64_t)i);
	}
	assert_int_equal(fx_conn_state(c), FX_CONN_ERROR);
	assert_int_equal(fx_conn_outstanding(c), 0);
	fx_conn_close(c);
	assert_int_equal(fx_poll(ctx, wc, N, 0), 0);
	assert_int_equal(fx_dereg_mr(mr), 0);
	assert_int_equal(fx_pd_free(pd), 0);
	fx_ctx_destroy(ctx);
	free(buf);
}

/* ------------------------------------------------------------------ close, event mode */

static void test_close_flushes(void **state)
{
	(void)state;
	NEED_DEV();
	struct xt_pair p;
	struct fx_wc wc[8];
	int perr = 0;

	pair_open(&p);
	struct fx_sge s[4];
	struct fx_send_wr w[3];

	for (int i = 0; i < 4; i++)
		s[i] = xt_sge(p.imr, p.ibuf + (size_t)i * PAGE, PAGE);
	for (int i = 0; i < 3; i++)
		w[i] = (struct fx_send_wr){ .wr_id = (uint64_t)i, .opcode = FX_OP_READ, .flags = 0, .sg_list = &s[i],
					    .num_sge = 1, .remote_addr = p.tmr->remote_base, .rkey = p.tmr->rkey };
	struct fx_recv_wr rw = { .wr_id = 99, .sg_list = &s[3], .num_sge = 1 };

	(void)fx_poll(p.ci, wc, 8, 0);      /* leaves the CQ armed */
	assert_int_equal(fx_post_recv(p.c_i, &rw, 1, &perr), 1);
	assert_int_equal(fx_post_send(p.c_i, w, 3, &perr), 3);
	struct fx_conn *closed = p.c_i;

	fx_conn_set_user(p.c_i, &p);
	fx_conn_close(p.c_i);
	p.c_i = NULL;
	struct pollfd pf = { .fd = fx_ctx_fd(p.ci), .events = POLLIN };

	assert_int_equal(poll(&pf, 1, 2000), 1);
	/* READs that ran before the close complete silently (unsignalled); the rest and the receive flush */
	int n = 0;
	uint64_t t0 = xt_now_ms();
	bool recv_seen = false;

	while (!recv_seen && xt_now_ms() - t0 < 3000) {
		int k = fx_poll(p.ci, wc + n, 8 - n, 10);

		assert_true(k >= 0);
		for (int i = n; i < n + k; i++) {
			assert_ptr_equal(wc[i].conn, closed);
			assert_int_equal(wc[i].status, FX_WC_FLUSH_ERR);
			if (wc[i].opcode == FX_WC_RECV) {
				recv_seen = true;
				assert_int_equal(wc[i].wr_id, 99);
				assert_ptr_equal(fx_conn_get_user(wc[i].conn), &p);
			}
		}
		n += k;
	}
	assert_true(recv_seen);
	assert_true(n >= 1 && n <= 4);
	wait_not_connected(&p, p.c_t, 5000);
	assert_int_equal(fx_conn_state(p.c_t), FX_CONN_ERROR);
	assert_non_null(strstr(fx_conn_error(p.c_t), "closed the connection"));
	pair_close(&p);
}

static void test_event_mode(void **state)
{
	(void)state;
	NEED_DEV();
	struct xt_pair p;
	struct fx_ctx_opts co = { .poll_spin_us = FX_POLL_SPIN_OFF };
	struct fx_wc wc[2];
	int perr = 0;

	pair_open_opts(&p, &co, NULL, NULL);
	struct fx_sge s = xt_sge(p.imr, p.ibuf, PAGE);
	struct fx_send_wr w = { .wr_id = 5, .opcode = FX_OP_READ, .flags = FX_WR_SIGNALED, .sg_list = &s,
				.num_sge = 1, .remote_addr = p.tmr->remote_base, .rkey = p.tmr->rkey };

	(void)fx_poll(p.ci, wc, 2, 0);
	(void)fx_poll(p.ct, wc, 2, 0);
	struct pollfd pf = { .fd = fx_ctx_fd(p.ci), .events = POLLIN };

	assert_int_equal(poll(&pf, 1, 0), 0);             /* nothing pending */
	assert_int_equal(fx_post_send(p.c_i, &w, 1, &perr), 1);
	assert_int_equal(poll(&pf, 1, 2000), 1);          /* the completion wakes it */
	assert_int_equal(fx_poll(p.ci, wc, 2, 0), 1);
	assert_int_equal(wc[0].status, FX_WC_SUCCESS);
	assert_memory_equal(p.ibuf, p.tbuf, PAGE);
	/* blocking poll */
	assert_int_equal(fx_post_send(p.c_i, &w, 1, &perr), 1);
	assert_int_equal(fx_poll(p.ci, wc, 2, 2000), 1);
	assert_int_equal(wc[0].status, FX_WC_SUCCESS);
	/* -1 returns when the completion comes */
	assert_int_equal(fx_post_send(p.c_i, &w, 1, &perr), 1);
	assert_int_equal(fx_poll(p.ci, wc, 2, -1), 1);
	/* a timed poll with nothing to do returns 0 after about its timeout */
	uint64_t t0 = xt_now_ms();

	assert_int_equal(fx_poll(p.ci, wc, 2, 50), 0);
	assert_true(xt_now_ms() - t0 >= 45);
	/* the target's fd wakes for an incoming SEND */
	struct fx_sge rs = xt_sge(p.tmr, p.tbuf, PAGE);
	struct fx_recv_wr rw = { .wr_id = 8, .sg_list = &rs, .num_sge = 1 };

	assert_int_equal(fx_post_recv(p.c_t, &rw, 1, &perr), 1);
	(void)fx_poll(p.ct, wc, 2, 0);
	struct pollfd tf = { .fd = fx_ctx_fd(p.ct), .events = POLLIN };
	struct fx_sge ss = xt_sge(p.imr, p.ibuf, 64);
	struct fx_send_wr sw = { .wr_id = 6, .opcode = FX_OP_SEND, .sg_list = &ss, .num_sge = 1 };

	assert_int_equal(fx_post_send(p.c_i, &sw, 1, &perr), 1);
	assert_int_equal(poll(&tf, 1, 2000), 1);
	assert_int_equal(fx_poll(p.ct, wc, 2, 1000), 1);
	assert_int_equal(wc[0].opcode, FX_WC_RECV);
	assert_int_equal(wc[0].byte_len, 64);
	xt_spin(&p, 10);
	pair_close(&p);
}

/* Many tiny READs past max_send_wr/2 (periodic signals) and 1 MiB WRITEs, unsignalled but the last. */
static void test_many_and_large(void **state)
{
	(void)state;
	NEED_DEV();
	struct xt_pair p;
	struct fx_conn_opts io = { .max_send_wr = 2048 };
	enum { N = 1500, SZ = 64 };
	struct fx_sge *sg = calloc(N, sizeof(*sg));
	struct fx_send_wr *w = calloc(N, sizeof(*w));
	struct fx_wc *wc = calloc(N, sizeof(*wc));
	int perr = 0;

	pair_open_opts(&p, NULL, &io, NULL);
	for (int i = 0; i < N; i++) {
		sg[i] = xt_sge(p.imr, p.ibuf + (size_t)i * SZ, SZ);
		w[i] = (struct fx_send_wr){ .wr_id = (uint64_t)i, .opcode = FX_OP_READ, .flags = FX_WR_SIGNALED,
					    .sg_list = &sg[i], .num_sge = 1,
					    .remote_addr = p.tmr->remote_base + (uint64_t)(N - 1 - i) * SZ,
					    .rkey = p.tmr->rkey };
	}
	assert_int_equal(fx_post_send(p.c_i, w, N, &perr), N);
	assert_int_equal(xt_drain(&p, wc, N, 20000), N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(wc[i].status, FX_WC_SUCCESS);
		assert_int_equal(wc[i].wr_id, (uint64_t)i);
		assert_memory_equal(p.ibuf + (size_t)i * SZ, p.tbuf + (size_t)(N - 1 - i) * SZ, SZ);
	}
	xt_fill_pattern(p.ibuf, TGT_LEN, 77);
	for (int i = 0; i < 9; i++) {
		sg[i] = xt_sge(p.imr, p.ibuf, (uint32_t)TGT_LEN);
		w[i] = (struct fx_send_wr){ .wr_id = (uint64_t)i, .opcode = FX_OP_WRITE,
					    .flags = i == 8 ? FX_WR_SIGNALED : 0, .sg_list = &sg[i], .num_sge = 1,
					    .remote_addr = p.tmr->remote_base, .rkey = p.tmr->rkey };
	}
	assert_int_equal(fx_post_send(p.c_i, w, 9, &perr), 9);
	assert_int_equal(xt_drain(&p, wc, 1, 20000), 1);
	assert_int_equal(wc[0].status, FX_WC_SUCCESS);
	assert_int_equal(wc[0].wr_id, 8);
	assert_memory_equal(p.tbuf, p.ibuf, TGT_LEN);
	free(sg);
	free(w);
	free(wc);
	pair_close(&p);
}

/* max_inline above what the QP inlines: the transport copies into its registered bounce area. */
static void test_inline_large(void **state)
{
	(void)state;
	NEED_DEV();
	struct xt_pair p;
	struct fx_conn_opts io = { .max_inline = 4096 };
	struct fx_wc wc[4];
	static uint8_t big[4096];
	int perr = 0;

	pair_open_opts(&p, NULL, &io, NULL);
	struct fx_sge rs = xt_sge(p.tmr, p.tbuf + 64 * PAGE, PAGE);
	struct fx_recv_wr rw = { .wr_id = 3, .sg_list = &rs, .num_sge = 1 };

	assert_int_equal(fx_post_recv(p.c_t, &rw, 1, &perr), 1);
	struct fx_sge is[2] = { { .addr = big, .length = 3000, .lkey = 0 }, { .addr = big + 3000, .length = 1096, .lkey = 0 } };
	struct fx_send_wr w[2] = {
		{ .wr_id = 1, .opcode = FX_OP_WRITE, .flags = FX_WR_INLINE, .sg_list = is, .num_sge = 2,
		  .remote_addr = p.tmr->remote_base + 8 * PAGE, .rkey = p.tmr->rkey },
		{ .wr_id = 2, .opcode = FX_OP_SEND, .flags = FX_WR_INLINE | FX_WR_SIGNALED, .sg_list = is,
		  .num_sge = 1 },
	};

	memset(big, 0xc3, sizeof(big));
	assert_int_equal(fx_post_send(p.c_i, w, 2, &perr), 2);
	memset(big, 0, sizeof(big));           /* copied at post time */
	assert_int_equal(xt_drain(&p, wc, 1, 5000), 1);
	assert_int_equal(wc[0].status, FX_WC_SUCCESS);
	assert_int_equal(wc[0].wr_id, 2);
	for (unsigned i = 0; i < 4096; i++)
		assert_int_equal(p.tbuf[8 * PAGE + i], 0xc3);
	assert_int_equal(xt_drain_target(&p, wc, 1, 5000), 1);
	assert_int_equal(wc[0].byte_len, 3000);
	for (unsigned i = 0; i < 3000; i++)
		assert_int_equal(p.tbuf[64 * PAGE + i], 0xc3);
	pair_close(&p);
}

/* Several connections on one context: the CQ grows to hold them all. */
static void test_many_conns(void **state)
{
	(void)state;
	NEED_DEV();
	struct xt_pair p;
	struct fx_ctx_opts co = { .cq_depth = 64 };
	enum { K = 6 };
	struct fx_conn *ci[K], *ct[K];
	struct fx_wc wc[K];
	int perr = 0;

	pair_open_opts(&p, &co, NULL, NULL);
	for (int k = 0; k < K; k++)
		connect_accept(p.ci, p.pi, p.l, p.pt, NULL, NULL, &ci[k], &ct[k]);
	for (int k = 0; k < K; k++) {
		struct fx_sge s = xt_sge(p.imr, p.ibuf + (size_t)k * PAGE, PAGE);
		struct fx_send_wr w = { .wr_id = (uint64_t)k, .opcode = FX_OP_READ, .flags = FX_WR_SIGNALED,
					.sg_list = &s, .num_sge = 1,
					.remote_addr = p.tmr->remote_base + (uint64_t)k * PAGE, .rkey = p.tmr->rkey };

		assert_int_equal(fx_post_send(ci[k], &w, 1, &perr), 1);
	}
	assert_int_equal(xt_drain(&p, wc, K, 5000), K);
	for (int k = 0; k < K; k++) {
		assert_int_equal(wc[k].status, FX_WC_SUCCESS);
		assert_ptr_equal(wc[k].conn, ci[wc[k].wr_id]);
	}
	assert_memory_equal(p.ibuf, p.tbuf, (size_t)K * PAGE);
	for (int k = 0; k < K; k++) {
		fx_conn_close(ci[k]);
		fx_conn_close(ct[k]);
	}
	xt_spin(&p, 20);
	pair_close(&p);
}

/* Shared receive queue over real verbs: ibv_create_srq, RNR while it is empty, wc.conn by qp_num. */
static void test_srq(void **state)
{
	(void)state;
	NEED_DEV();
	xt_check_srq(FX_KIND_RDMA, g_host);
}

/* Memory windows: per-connection keys inside one domain. */
static void test_mw(void **state)
{
	(void)state;
	NEED_DEV();
	xt_check_mw(FX_KIND_RDMA, g_host);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_device_or_hint),
		cmocka_unit_test(test_connect_accept),
		cmocka_unit_test(test_connect_refused),
		cmocka_unit_test(test_send_recv),
		cmocka_unit_test(test_post_invalid),
		cmocka_unit_test(test_write_read_sg),
		cmocka_unit_test(test_batch_selective_signal),
		cmocka_unit_test(test_backpressure),
		cmocka_unit_test(test_rnr_wait),
		cmocka_unit_test(test_op_timeout),
		cmocka_unit_test(test_bad_rkey),
		cmocka_unit_test(test_other_pd),
		cmocka_unit_test(test_out_of_range),
		cmocka_unit_test(test_after_dereg),
		cmocka_unit_test(test_no_remote_rights),
		cmocka_unit_test(test_recv_too_small),
		cmocka_unit_test(test_local_prot_err),
		cmocka_unit_test(test_peer_killed),
		cmocka_unit_test(test_close_flushes),
		cmocka_unit_test(test_event_mode),
		cmocka_unit_test(test_many_and_large),
		cmocka_unit_test(test_many_conns),
		cmocka_unit_test(test_inline_large),
		cmocka_unit_test(test_srq),
		cmocka_unit_test(test_mw),
	};

	g_self = argv[0];
	g_host = getenv("FERRY_TEST_HOST");
	if (!g_host || !*g_host)
		g_host = getenv("RIG_IP");
	if (g_host && !*g_host)
		g_host = NULL;
	if (!getenv("FERRY_LOG_LEVEL"))
		ferry_log_set_level(FERRY_LOG_WARN);
	signal(SIGPIPE, SIG_IGN);
	if (argc == 3 && strcmp(argv[1], "--serve") == 0)
		return serve_main(argv[2]);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
