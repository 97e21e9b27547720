/*
 * TCP transport backend: real sockets on 127.0.0.1. Both ends usually live in
 * this process (two contexts polled alternately); tests that need the target
 * to die or freeze fork a child that serves as the target.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/transport/transport.h"
#include "proto/page.h"
#include "xport_test_util.h"

/* ------------------------------------------------------------------ fixture */

/* TCP: remote_base is an offset into the target's MR (0), keys are non-zero. */
static void pair_open_opts(struct xt_pair *p, const struct fx_ctx_opts *co, const struct fx_conn_opts *io,
			   const struct fx_conn_opts *to)
{
	xt_pair_open(p, FX_KIND_TCP, "127.0.0.1", co, io, to);
	assert_int_equal(p->tmr->remote_base, 0);
	assert_true(p->tmr->rkey != 0 && p->tmr->lkey != 0);
}

static void pair_open(struct xt_pair *p)
{
	pair_open_opts(p, NULL, NULL, NULL);
}

static void pair_close(struct xt_pair *p)
{
	xt_pair_close(p, 5);
}

/* ------------------------------------------------------------------ basics */

static void test_kind_and_rdma_stub(void **state)
{
	(void)state;
	enum fx_kind k;
	struct fx_ctx *ctx = NULL;
	struct ferry_err err = { 0 };

	assert_int_equal(fx_kind_parse("tcp", &k), 0);
	assert_int_equal(k, FX_KIND_TCP);
	assert_int_equal(fx_kind_parse("rdma", &k), 0);
	assert_int_equal(k, FX_KIND_RDMA);
	assert_int_equal(fx_kind_parse("udp", &k), -EINVAL);
	assert_string_equal(fx_kind_name(FX_KIND_TCP), "tcp");
	/* No RDMA backend built, or (the usual host) no RDMA device: -ENODEV with a hint. */
	int rc = fx_ctx_create(FX_KIND_RDMA, NULL, &ctx, &err);

	if (rc == 0) {
		fx_ctx_destroy(ctx);     /* a machine with an RDMA device */
	} else {
		assert_int_equal(rc, -ENODEV);
		assert_null(ctx);
		assert_non_null(strstr(err.msg, "use --transport tcp"));
	}
	assert_string_equal(fx_wc_status_str(FX_WC_REM_ACCESS_ERR), "remote access error");
}

static void test_connect_accept(void **state)
{
	(void)state;
	struct xt_pair p;
	struct fx_conn *none = NULL;
	struct fx_ctx_stats st;

	pair_open(&p);
	assert_int_equal(fx_conn_state(p.c_i), FX_CONN_CONNECTED);
	assert_int_equal(fx_conn_state(p.c_t), FX_CONN_CONNECTED);
	assert_string_equal(fx_conn_error(p.c_i), "");
	assert_non_null(strstr(fx_conn_peer(p.c_i), "127.0.0.1:"));
	assert_ptr_equal(fx_conn_pd(p.c_t), p.pt);
	assert_int_equal(fx_ctx_kind(p.ci), FX_KIND_TCP);
	assert_true(fx_ctx_fd(p.ci) >= 0);
	assert_true(fx_listener_fd(p.l) >= 0);
	fx_conn_set_user(p.c_t, &p);
	assert_ptr_equal(fx_conn_get_user(p.c_t), &p);
	/* nothing else pending */
	assert_int_equal(fx_accept(p.l, p.pt, NULL, &none, NULL, 0, NULL), -EAGAIN);
	/* domain in use */
	assert_int_equal(fx_pd_free(p.pt), -EBUSY);
	fx_ctx_get_stats(p.ct, &st);
	assert_int_equal(st.conns_opened, 1);
	pair_close(&p);
}

static void test_connect_refused(void **state)
{
	(void)state;
	struct fx_ctx *ctx;
	struct fx_pd *pd;
	struct fx_conn *c = NULL;
	struct ferry_err err = { 0 };
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	struct fx_ctx_stats st;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	/* A port that was free a moment ago and has no listener now. */
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	close(fd);

	assert_int_equal(fx_ctx_create(FX_KIND_TCP, NULL, &ctx, &err), 0);
	assert_int_equal(fx_pd_alloc(ctx, &pd, &err), 0);
	uint64_t t0 = xt_now_ms();
	int rc = fx_connect(ctx, pd, "127.0.0.1", ntohs(sa.sin_port), NULL, &c, &err);

	assert_int_equal(rc, -ECONNREFUSED);
	assert_true(xt_now_ms() - t0 < 1000);
	assert_null(c);
	assert_non_null(strstr(err.msg, "refused"));
	assert_non_null(strstr(err.msg, "127.0.0.1"));
	fx_ctx_get_stats(ctx, &st);
	assert_int_equal(st.conns_failed, 1);
	assert_int_equal(fx_pd_free(pd), 0);
	fx_ctx_destroy(ctx);
}

/* A listener whose accept queue is full drops SYNs: fx_connect gives up in time. */
static void test_connect_timeout(void **state)
{
	(void)state;
	struct fx_ctx_opts co = { .connect_timeout_ms = 300 };
	struct fx_ctx *ctx;
	struct fx_pd *pd;
	struct fx_conn *c = NULL;
	struct ferry_err err = { 0 };
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int lfd = socket(AF_INET, SOCK_STREAM, 0), filler[4];

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(lfd, 0), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
	for (int i = 0; i < 4; i++) {
		filler[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		(void)connect(filler[i], (struct sockaddr *)&sa, sizeof(sa));
	}
	usleep(50000);
	assert_int_equal(fx_ctx_create(FX_KIND_TCP, &co, &ctx, &err), 0);
	assert_int_equal(fx_pd_alloc(ctx, &pd, &err), 0);
	uint64_t t0 = xt_now_ms();
	int rc = fx_connect(ctx, pd, "127.0.0.1", ntohs(sa.sin_port), NULL, &c, &err);
	uint64_t took = xt_now_ms() - t0;

	if (rc == 0) {
		/* the kernel accepted it after all (queue sizing differs): nothing to test */
		fx_conn_close(c);
	} else {
		assert_int_equal(rc, -ETIMEDOUT);
		assert_true(took >= 250 && took < 1500);
		assert_non_null(strstr(err.msg, "timed out after 300 ms"));
	}
	for (int i = 0; i < 4; i++)
		close(filler[i]);
	close(lfd);
	assert_int_equal(fx_pd_free(pd), 0);
	fx_ctx_destroy(ctx);
}

/* ------------------------------------------------------------------ SEND / RECV */

static void test_send_recv_control(void **state)
{
	(void)state;
	struct xt_pair p;
	struct fx_wc wc[8];
	int perr = 0;

	pair_open(&p);
	/* target: 4 receives of 4 KiB in its own memory (the first pages of tbuf) */
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

	xt_send_control_msgs(&p, 2000, len);

	const int hl = len[0], al = len[1];

	assert_int_equal(xt_drain_target(&p, wc, 3, 2000), 3);

	struct ferry_page_msg msg;

	assert_int_equal(wc[0].opcode, FX_WC_RECV);
	assert_int_equal(wc[0].status, FX_WC_SUCCESS);
	assert_int_equal(wc[0].wr_id, 100);
	assert_int_equal(wc[0].byte_len, (uint32_t)hl);
	assert_ptr_equal(wc[0].conn, p.c_t);
	assert_int_equal(ferry_page_decode(rbuf, wc[0].byte_len, &msg), FERRY_E_OK);
	assert_int_equal(msg.hdr.type, FERRY_PAGE_HELLO);
	assert_string_equal(msg.u.hello.name, "vm-test");
	assert_int_equal(wc[1].wr_id, 101);
	assert_int_equal(wc[1].byte_len, (uint32_t)al);
	assert_int_equal(ferry_page_decode(rbuf + PAGE, wc[1].byte_len, &msg), FERRY_E_OK);
	assert_int_equal(msg.hdr.type, FERRY_PAGE_ALLOC);
	assert_int_equal(msg.u.alloc.length, 1 << 20);
	assert_int_equal(wc[2].wr_id, 102);
	assert_int_equal(ferry_page_decode(rbuf + 2 * PAGE, wc[2].byte_len, &msg), FERRY_E_OK);
	assert_int_equal(msg.hdr.type, FERRY_PAGE_STATS);

	/* and back: the target answers with an ERROR control message (no reply tag) */
	struct fx_sge irs = xt_sge(p.imr, p.ibuf + 8192, PAGE);
	struct fx_recv_wr irw = { .wr_id = 7, .sg_list = &irs, .num_sge = 1 };

	assert_int_equal(fx_post_recv(p.c_i, &irw, 1, NULL), 1);
	int el = ferry_page_encode_error(2, FERRY_E_POOL_FULL, "pool full", rbuf + 3 * PAGE, 512);
	struct fx_sge es = xt_sge(p.tmr, rbuf + 3 * PAGE, (uint32_t)el);
	struct fx_send_wr ew = { .wr_id = 9, .opcode = FX_OP_SEND, .sg_list = &es, .num_sge = 1 };

	assert_int_equal(fx_post_send(p.c_t, &ew, 1, NULL), 1);
	assert_int_equal(xt_drain(&p, wc, 1, 2000), 1);
	assert_int_equal(wc[0].opcode, FX_WC_RECV);
	assert_int_equal(wc[0].wr_id, 7);
	assert_int_equal(ferry_page_decode(p.ibuf + 8192, wc[0].byte_len, &msg), FERRY_E_OK);
	assert_int_equal(msg.hdr.type, FERRY_PAGE_ERROR);
	assert_int_equal(msg.u.error.code, FERRY_E_POOL_FULL);
	pair_close(&p);
}

static void test_send_invalid(void **state)
{
	(void)state;
	struct xt_pair p;
	int perr = 0;

	pair_open(&p);
	uint8_t *m = p.ibuf;
	struct fx_sge s = xt_sge(p.imr, m, 64);
	struct fx_send_wr w = { .wr_id = 1, .opcode = FX_OP_SEND, .flags = FX_WR_SIGNALED, .sg_list = &s,
				.num_sge = 1 };

	/* not a protocol message */
	memset(m, 'x', 64);
	assert_int_equal(fx_post_send(p.c_i, &w, 1, &perr), 0);
	assert_int_equal(perr, -EINVAL);
	/* a valid message but the length does not match the gathered bytes */
	int hl = ferry_page_encode_hello(1, "vm", 1, 1, m, 512);
	s.length = (uint32_t)hl + 1;
	assert_int_equal(fx_post_send(p.c_i, &w, 1, &perr), 0);
	assert_int_equal(perr, -EINVAL);
	/* one-sided message types cannot be sent */
	int wl = ferry_page_encode_write_ok(5, 1, m, 512);
	s.length = (uint32_t)wl;
	assert_int_equal(fx_post_send(p.c_i, &w, 1, &perr), 0);
	assert_int_equal(perr, -EINVAL);
	/* ERROR with the transport's reply tag */
	int el = ferry_page_encode_error(1ull << 63, FERRY_E_ACCESS, "x", m, 512);
	s.length = (uint32_t)el;
	assert_int_equal(fx_post_send(p.c_i, &w, 1, &perr), 0);
	assert_int_equal(perr, -EINVAL);
	/* empty SEND, bad opcode, too many sges */
	w.num_sge = 0;
	assert_int_equal(fx_post_send(p.c_i, &w, 1, &perr), 0);
	assert_int_equal(perr, -EINVAL);
	w.num_sge = FX_MAX_SGE + 1;
	assert_int_equal(fx_post_send(p.c_i, &w, 1, &perr), 0);
	assert_int_equal(perr, -EINVAL);
	w.num_sge = 1;
	w.opcode = (enum fx_opcode)7;
	assert_int_equal(fx_post_send(p.c_i, &w, 1, &perr), 0);
	assert_int_equal(perr, -EINVAL);
	/* the connection is still fine */
	assert_int_equal(fx_conn_state(p.c_i), FX_CONN_CONNECTED);
	assert_int_equal(fx_conn_outstanding(p.c_i), 0);
	pair_close(&p);
}

/* ------------------------------------------------------------------ one-sided */

static void test_write_read_sg(void **state)
{
	(void)state;
	struct xt_pair p;
	enum { N = 128 };  /* pages */
	static struct fx_sge sg[N][4];
	static struct fx_send_wr w[N];
	struct fx_wc wc[N];
	int perr = 0;

	pair_open(&p);
	uint8_t *src = p.ibuf, *dst = p.ibuf + TGT_LEN;

	xt_fill_pattern(src, TGT_LEN, 42);
	/* WRITE page i of the target from 4 scattered 1 KiB pieces of src (reverse order) */
	for (int i = 0; i < N; i++) {
		for (int k = 0; k < 4; k++)
			sg[i][k] = xt_sge(p.imr, src + (size_t)i * PAGE + (size_t)(3 - k) * 1024, 1024);
		w[i] = (struct fx_send_wr){ .wr_id = (uint64_t)i, .opcode = FX_OP_WRITE, .flags = FX_WR_SIGNALED,
					    .sg_list = sg[i], .num_sge = 4,
					    .remote_addr = p.tmr->remote_base + (uint64_t)i * PAGE, .rkey = p.tmr->rkey };
	}
	assert_int_equal(fx_post_send(p.c_i, w, N, &perr), N);
	assert_int_equal(xt_drain(&p, wc, N, 5000), N);
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

	/* READ it back with a different layout: two sges of 512 + 3584, into dst */
	for (int i = 0; i < N; i++) {
		sg[i][0] = xt_sge(p.imr, dst + (size_t)i * PAGE, 512);
		sg[i][1] = xt_sge(p.imr, dst + (size_t)i * PAGE + 512, PAGE - 512);
		w[i] = (struct fx_send_wr){ .wr_id = 1000 + (uint64_t)i, .opcode = FX_OP_READ,
					    .flags = FX_WR_SIGNALED, .sg_list = sg[i], .num_sge = 2,
					    .remote_addr = p.tmr->remote_base + (uint64_t)i * PAGE, .rkey = p.tmr->rkey };
	}
	assert_int_equal(fx_post_send(p.c_i, w, N, &perr), N);
	assert_int_equal(xt_drain(&p, wc, N, 5000), N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(wc[i].status, FX_WC_SUCCESS);
		assert_int_equal(wc[i].opcode, FX_WC_READ);
		assert_int_equal(wc[i].wr_id, 1000 + (uint64_t)i);
	}
	assert_memory_equal(dst, p.tbuf, (size_t)N * PAGE);

	/* one large READ of 1 MiB (whole region) goes straight into the destination */
	struct fx_sge big = xt_sge(p.imr, dst, (uint32_t)TGT_LEN);
	struct fx_send_wr bw = { .wr_id = 77, .opcode = FX_OP_READ, .flags = FX_WR_SIGNALED, .sg_list = &big,
				 .num_sge = 1, .remote_addr = 0, .rkey = p.tmr->rkey };

	memset(dst, 0, TGT_LEN);
	assert_int_equal(fx_post_send(p.c_i, &bw, 1, &perr), 1);
	assert_int_equal(xt_drain(&p, wc, 1, 5000), 1);
	assert_int_equal(wc[0].status, FX_WC_SUCCESS);
	assert_int_equal(wc[0].byte_len, TGT_LEN);
	assert_memory_equal(dst, p.tbuf, TGT_LEN);

	/* inline WRITE: the buffer is reusable right after posting */
	uint8_t small[64];
	struct fx_sge is = { .addr = small, .length = sizeof(small), .lkey = 0 };
	struct fx_send_wr iw = { .wr_id = 78, .opcode = FX_OP_WRITE, .flags = FX_WR_SIGNALED | FX_WR_INLINE,
				 .sg_list = &is, .num_sge = 1, .remote_addr = 100, .rkey = p.tmr->rkey };

	memset(small, 0x5a, sizeof(small));
	assert_int_equal(fx_post_send(p.c_i, &iw, 1, &perr), 1);
	memset(small, 0, sizeof(small));
	assert_int_equal(xt_drain(&p, wc, 1, 5000), 1);
	assert_int_equal(wc[0].status, FX_WC_SUCCESS);
	for (int i = 0; i < 64; i++)
		assert_int_equal(p.tbuf[100 + i], 0x5a);

	struct fx_ctx_stats si, stt;

	fx_ctx_get_stats(p.ci, &si);
	fx_ctx_get_stats(p.ct, &stt);
	assert_int_equal(si.bytes_written, (uint64_t)N * PAGE + 64);
	assert_int_equal(si.bytes_read, (uint64_t)N * PAGE + TGT_LEN);
	assert_int_equal(stt.bytes_served_written, si.bytes_written);
	assert_int_equal(stt.bytes_served_read, si.bytes_read);
	assert_int_equal(si.ops_failed, 0);
	pair_close(&p);
}

static void test_batch_selective_signal(void **state)
{
	(void)state;
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
						    .num_sge = 1, .remote_addr = (uint64_t)((i * 7) % TGT_PAGES) * PAGE,
						    .rkey = p.tmr->rkey };
		}
		assert_int_equal(fx_post_send(p.c_i, w, N, &perr), N);
		assert_int_equal(perr, 0);
		assert_int_equal(fx_conn_outstanding(p.c_i), N);
		assert_int_equal(xt_drain(&p, wc, N / 16, 5000), N / 16);
		for (int i = 0; i < N / 16; i++) {
			assert_int_equal(wc[i].status, FX_WC_SUCCESS);
			assert_int_equal(wc[i].wr_id, (uint64_t)(i * 16 + 15));  /* in posting order */
		}
		/* no stray completions for the unsignalled ones */
		assert_int_equal(xt_drain(&p, wc, 1, 50), 0);
		assert_int_equal(fx_conn_outstanding(p.c_i), 0);
		for (int i = 0; i < N; i++)
			assert_memory_equal(p.ibuf + (size_t)i * PAGE, p.tbuf + (size_t)((i * 7) % TGT_PAGES) * PAGE,
					    PAGE);
	}
	pair_close(&p);
}

static void test_backpressure(void **state)
{
	(void)state;
	struct xt_pair p;
	struct fx_conn_opts io = { .max_send_wr = XT_BP_SEND_WR, .max_recv_wr = XT_BP_RECV_WR };

	pair_open_opts(&p, NULL, &io, NULL);
	xt_check_backpressure(&p, 5000);
	pair_close(&p);
}

/* A receiver with no receive posted: the sender's messages wait in TCP. */
static void test_rnr_backpressure(void **state)
{
	(void)state;
	struct xt_pair p;
	struct fx_wc wc[4];
	int perr = 0;

	pair_open(&p);
	int hl = ferry_page_encode_hello(1, "vm", 1, 1, p.ibuf, 512);
	struct fx_sge s = xt_sge(p.imr, p.ibuf, (uint32_t)hl);
	struct fx_send_wr w = { .wr_id = 1, .opcode = FX_OP_SEND, .flags = FX_WR_SIGNALED, .sg_list = &s,
				.num_sge = 1 };

	assert_int_equal(fx_post_send(p.c_i, &w, 1, &perr), 1);
	assert_int_equal(xt_drain(&p, wc, 1, 2000), 1);   /* written to the socket */
	assert_int_equal(xt_drain_target(&p, wc, 1, 100), 0);
	assert_int_equal(fx_conn_state(p.c_t), FX_CONN_CONNECTED);

	struct fx_ctx_stats st;

	fx_ctx_get_stats(p.ct, &st);
	assert_true(st.backpressure_events >= 1);
	struct fx_sge rs = xt_sge(p.tmr, p.tbuf, PAGE);
	struct fx_recv_wr rw = { .wr_id = 5, .sg_list = &rs, .num_sge = 1 };

	assert_int_equal(fx_post_recv(p.c_t, &rw, 1, &perr), 1);
	assert_int_equal(xt_drain_target(&p, wc, 1, 2000), 1);
	assert_int_equal(wc[0].status, FX_WC_SUCCESS);
	assert_int_equal(wc[0].byte_len, (uint32_t)hl);
	pair_close(&p);
}

/* ------------------------------------------------------------------ remote access errors */

enum bad_kind { BAD_RKEY, BAD_OTHER_PD, BAD_RANGE, BAD_DEREG, BAD_RIGHTS };

static void run_bad_access(enum bad_kind kind, enum fx_opcode op)
{
	struct xt_pair p;
	struct fx_wc wc[8];
	struct fx_ctx_stats st0, st1;
	struct ferry_err err = { 0 };
	struct fx_pd *pt2 = NULL;
	struct fx_mr *mr2 = NULL, *ro = NULL;
	struct fx_conn *ci2 = NULL, *ct2 = NULL;
	uint8_t *other = NULL;
	int perr = 0;

	pair_open(&p);
	uint8_t *snap = malloc(TGT_LEN);

	assert_non_null(snap);
	uint32_t rkey = p.tmr->rkey;
	uint64_t raddr = 0;

	switch (kind) {
	case BAD_RKEY:
		rkey = p.tmr->rkey ^ 0x5a5a5a5au;
		break;
	case BAD_OTHER_PD:
		/* A second client in its own domain, with its own region. */
		other = calloc(1, 4 * PAGE);
		assert_int_equal(fx_pd_alloc(p.ct, &pt2, &err), 0);
		assert_int_equal(fx_reg_mr(pt2, other, 4 * PAGE,
					   FX_ACCESS_LOCAL_WRITE | FX_ACCESS_REMOTE_READ | FX_ACCESS_REMOTE_WRITE, &mr2,
					   &err), 0);
		assert_int_equal(fx_connect(p.ci, p.pi, "127.0.0.1", fx_listener_port(p.l), NULL, &ci2, &err), 0);
		ct2 = xt_accept_one(p.l, pt2, NULL);
		/* the key works on its own connection ... */
		{
			struct fx_sge s = xt_sge(p.imr, p.ibuf, PAGE);
			struct fx_send_wr w = { .wr_id = 50, .opcode = FX_OP_READ, .flags = FX_WR_SIGNALED,
						.sg_list = &s, .num_sge = 1, .remote_addr = 0, .rkey = mr2->rkey };

			assert_int_equal(fx_post_send(ci2, &w, 1, &perr), 1);
			assert_int_equal(xt_drain(&p, wc, 1, 2000), 1);
			assert_int_equal(wc[0].status, FX_WC_SUCCESS);
			assert_ptr_equal(wc[0].conn, ci2);
		}
		/* ... and is worthless on the first one */
		rkey = mr2->rkey;
		break;
	case BAD_RANGE:
		raddr = TGT_LEN - PAGE / 2;   /* straddles the end */
		break;
	case BAD_DEREG: {
		uint8_t *tmp = calloc(1, 4 * PAGE);

		assert_int_equal(fx_reg_mr(p.pt, tmp, 4 * PAGE,
					   FX_ACCESS_LOCAL_WRITE | FX_ACCESS_REMOTE_READ | FX_ACCESS_REMOTE_WRITE, &mr2,
					   &err), 0);
		rkey = mr2->rkey;
		assert_int_equal(fx_dereg_mr(mr2), 0);
		mr2 = NULL;
		free(tmp);
		break;
	}
	case BAD_RIGHTS: {
		other = calloc(1, 4 * PAGE);
		assert_int_equal(fx_reg_mr(p.pt, other, 4 * PAGE, FX_ACCESS_LOCAL_WRITE, &ro, &err), 0);
		rkey = ro->rkey;
		break;
	}
	}
	memcpy(snap, p.tbuf, TGT_LEN);
	fx_ctx_get_stats(p.ct, &st0);

	/* good, BAD, good, good in one post (one coalesced message) */
	struct fx_sge sg[4];
	struct fx_send_wr w[4];

	xt_fill_pattern(p.ibuf, 4 * PAGE, 9);
	for (int i = 0; i < 4; i++) {
		sg[i] = xt_sge(p.imr, p.ibuf + (size_t)i * PAGE, PAGE);
		w[i] = (struct fx_send_wr){ .wr_id = 10 + (uint64_t)i, .opcode = op, .flags = FX_WR_SIGNALED,
					    .sg_list = &sg[i], .num_sge = 1, .remote_addr = (uint64_t)i * PAGE,
					    .rkey = p.tmr->rkey };
	}
	w[1].rkey = rkey;
	if (kind == BAD_RANGE)
		w[1].remote_addr = raddr;
	assert_int_equal(fx_post_send(p.c_i, w, 4, &perr), 4);
	assert_int_equal(xt_drain(&p, wc, 4, 3000), 4);
	assert_int_equal(wc[0].wr_id, 10);
	assert_int_equal(wc[0].status, FX_WC_FLUSH_ERR);          /* did not run */
	assert_int_equal(wc[1].wr_id, 11);
	assert_int_equal(wc[1].status, FX_WC_REM_ACCESS_ERR);
	assert_int_equal(wc[2].status, FX_WC_FLUSH_ERR);
	assert_int_equal(wc[3].status, FX_WC_FLUSH_ERR);
	assert_int_equal(fx_conn_state(p.c_i), FX_CONN_ERROR);
	assert_true(strlen(fx_conn_error(p.c_i)) > 0);
	assert_int_equal(fx_conn_state(p.c_t), FX_CONN_ERROR);
	fx_ctx_get_stats(p.ct, &st1);
	assert_int_equal(st1.remote_access_errors, st0.remote_access_errors + 1);
	assert_memory_equal(snap, p.tbuf, TGT_LEN);     /* a bad WRITE writes nothing */
	/* later posts are refused */
	assert_int_equal(fx_post_send(p.c_i, w, 1, &perr), 0);
	assert_int_equal(perr, -ENOTCONN);

	if (ci2) {
		/* the other client is unaffected */
		assert_int_equal(fx_conn_state(ci2), FX_CONN_CONNECTED);
		fx_conn_close(ci2);
		fx_conn_close(ct2);
	}
	xt_spin(&p, 5);
	if (mr2)
		assert_int_equal(fx_dereg_mr(mr2), 0);
	if (ro)
		assert_int_equal(fx_dereg_mr(ro), 0);
	if (pt2)
		assert_int_equal(fx_pd_free(pt2), 0);
	free(other);
	free(snap);
	pair_close(&p);
}

XT_READ_WRITE_TEST(test_bad_rkey, (void)0, run_bad_access, BAD_RKEY)
XT_READ_WRITE_TEST(test_other_pd, (void)0, run_bad_access, BAD_OTHER_PD)
XT_READ_WRITE_TEST(test_out_of_range, (void)0, run_bad_access, BAD_RANGE)
XT_READ_WRITE_TEST(test_after_dereg, (void)0, run_bad_access, BAD_DEREG)
XT_READ_WRITE_TEST(test_no_remote_rights, (void)0, run_bad_access, BAD_RIGHTS)

/* ------------------------------------------------------------------ local errors */

static void test_recv_too_small(void **state)
{
	(void)state;
	struct xt_pair p;
	struct fx_wc wc[4];
	int perr = 0;

	pair_open(&p);
	struct fx_sge rs[2] = { xt_sge(p.tmr, p.tbuf, 32), xt_sge(p.tmr, p.tbuf + PAGE, PAGE) };
	struct fx_recv_wr rw[2] = { { .wr_id = 1, .sg_list = &rs[0], .num_sge = 1 },
				    { .wr_id = 2, .sg_list = &rs[1], .num_sge = 1 } };

	assert_int_equal(fx_post_recv(p.c_t, rw, 2, &perr), 2);
	int hl = ferry_page_encode_hello(1, "a-long-client-name", 1, 1, p.ibuf, 512);
	struct fx_sge s = xt_sge(p.imr, p.ibuf, (uint32_t)hl);
	struct fx_send_wr w = { .wr_id = 1, .opcode = FX_OP_SEND, .flags = FX_WR_SIGNALED, .sg_list = &s,
				.num_sge = 1 };

	assert_int_equal(fx_post_send(p.c_i, &w, 1, &perr), 1);
	assert_int_equal(xt_drain_target(&p, wc, 2, 2000), 2);
	assert_int_equal(wc[0].wr_id, 1);
	assert_int_equal(wc[0].status, FX_WC_LOC_LEN_ERR);
	assert_int_equal(wc[1].wr_id, 2);
	assert_int_equal(wc[1].status, FX_WC_FLUSH_ERR);
	assert_int_equal(fx_conn_state(p.c_t), FX_CONN_ERROR);
	assert_non_null(strstr(fx_conn_error(p.c_t), "larger than the posted receive"));
	pair_close(&p);
}

static void test_local_prot_err(void **state)
{
	(void)state;
	struct xt_pair p;
	struct fx_wc wc[4];
	int perr = 0;
	uint8_t stray[PAGE];

	/* sge outside any registration */
	pair_open(&p);
	struct fx_sge sg[2] = { xt_sge(p.imr, p.ibuf, PAGE), { .addr = stray, .length = PAGE, .lkey = p.imr->lkey } };
	struct fx_send_wr w[2] = {
		{ .wr_id = 1, .opcode = FX_OP_READ, .flags = FX_WR_SIGNALED, .sg_list = &sg[0], .num_sge = 1,
		  .remote_addr = 0, .rkey = p.tmr->rkey },
		{ .wr_id = 2, .opcode = FX_OP_READ, .flags = 0, .sg_list = &sg[1], .num_sge = 1, .remote_addr = 0,
		  .rkey = p.tmr->rkey },
	};

	assert_int_equal(fx_post_send(p.c_i, w, 2, &perr), 2);
	assert_int_equal(xt_drain(&p, wc, 2, 2000), 2);
	assert_int_equal(wc[0].wr_id, 1);
	assert_int_equal(wc[0].status, FX_WC_FLUSH_ERR);
	assert_int_equal(wc[1].wr_id, 2);
	assert_int_equal(wc[1].status, FX_WC_LOC_PROT_ERR);
	assert_int_equal(fx_conn_state(p.c_i), FX_CONN_ERROR);
	pair_close(&p);

	/* READ into a region without local write; sge running past the end of its region */
	for (int variant = 0; variant < 2; variant++) {
		struct ferry_err err = { 0 };
		struct fx_mr *ro = NULL;

		pair_open(&p);
		assert_int_equal(fx_reg_mr(p.pi, stray, sizeof(stray), 0, &ro, &err), 0);
		struct fx_sge s = variant == 0 ? xt_sge(ro, stray, PAGE) : xt_sge(p.imr, p.ibuf + 2 * TGT_LEN - 100, 200);
		struct fx_send_wr r = { .wr_id = 3, .opcode = FX_OP_READ, .sg_list = &s, .num_sge = 1,
					.remote_addr = 0, .rkey = p.tmr->rkey };

		assert_int_equal(fx_post_send(p.c_i, &r, 1, &perr), 1);
		assert_int_equal(xt_drain(&p, wc, 1, 2000), 1);
		assert_int_equal(wc[0].status, FX_WC_LOC_PROT_ERR);
		assert_int_equal(wc[0].wr_id, 3);
		xt_spin(&p, 5);
		assert_int_equal(fx_dereg_mr(ro), 0);
		pair_close(&p);
	}
}

/* ------------------------------------------------------------------ dead and frozen peers */

struct child_info {
	uint16_t port;
	uint32_t rkey;
	uint64_t len;
};

/* Fork a target: one context, one region, serves one connection forever. */
static pid_t spawn_target(struct child_info *ci)
{
	int pfd[2];

	assert_int_equal(pipe(pfd), 0);
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		struct fx_ctx *ctx;
		struct fx_pd *pd;
		struct fx_mr *mr;
		struct fx_listener *l;
		struct fx_conn *c = NULL;
		struct fx_wc wc[16];
		struct child_info info;
		size_t len = 1 << 20;
		void *mem = calloc(1, len);

		close(pfd[0]);
		if (fx_ctx_create(FX_KIND_TCP, NULL, &ctx, NULL) || fx_pd_alloc(ctx, &pd, NULL) ||
		    fx_reg_mr(pd, mem, len, FX_ACCESS_LOCAL_WRITE | FX_ACCESS_REMOTE_READ | FX_ACCESS_REMOTE_WRITE,
			      &mr, NULL) ||
		    fx_listen(ctx, "127.0.0.1", 0, &l, NULL))
			_exit(2);
		info.port = fx_listener_port(l);
		info.rkey = mr->rkey;
		info.len = len;
		if (write(pfd[1], &info, sizeof(info)) != (ssize_t)sizeof(info))
			_exit(3);
		close(pfd[1]);
		for (;;) {
			if (!c && fx_accept(l, pd, NULL, &c, NULL, 0, NULL) < 0)
				c = NULL;
			(void)fx_poll(ctx, wc, 16, 10);
		}
	}
	close(pfd[1]);
	assert_int_equal(read(pfd[0], ci, sizeof(*ci)), (ssize_t)sizeof(*ci));
	close(pfd[0]);
	return pid;
}

static void reap_child(pid_t pid)
{
	int status;

	kill(pid, SIGKILL);
	kill(pid, SIGCONT);
	assert_int_equal(waitpid(pid, &status, 0), pid);
}

static void run_dead_peer(bool freeze)
{
	struct child_info info;
	pid_t pid = spawn_target(&info);
	struct fx_ctx_opts co = { .op_timeout_ms = freeze ? 500 : 0 };
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
	int perr = 0;

	assert_int_equal(fx_ctx_create(FX_KIND_TCP, &co, &ctx, &err), 0);
	assert_int_equal(fx_pd_alloc(ctx, &pd, &err), 0);
	assert_int_equal(fx_reg_mr(pd, buf, (size_t)N * PAGE, FX_ACCESS_LOCAL_WRITE, &mr, &err), 0);
	assert_int_equal(fx_connect(ctx, pd, "127.0.0.1", info.port, NULL, &c, &err), 0);

	/* the peer works */
	for (int i = 0; i < N; i++) {
		sg[i] = xt_sge(mr, buf + (size_t)i * PAGE, PAGE);
		w[i] = (struct fx_send_wr){ .wr_id = (uint64_t)i, .opcode = FX_OP_READ,
					    .flags = (i % 2) ? FX_WR_SIGNALED : 0, .sg_list = &sg[i], .num_sge = 1,
					    .remote_addr = (uint64_t)i * PAGE, .rkey = info.rkey };
	}
	assert_int_equal(fx_post_send(c, w, N, &perr), N);
	int got = 0;
	uint64_t t0 = xt_now_ms();

	while (got < N / 2 && xt_now_ms() - t0 < 3000)
		got += fx_poll(ctx, wc + got, N - got, 100);
	assert_int_equal(got, N / 2);

	/* freeze it, then post 64 READs, one at a time (64 messages) */
	kill(pid, SIGSTOP);
	usleep(20000);
	for (int i = 0; i < N; i++)
		assert_int_equal(fx_post_send(c, &w[i], 1, &perr), 1);
	assert_int_equal(fx_conn_outstanding(c), N);
	if (!freeze)
		kill(pid, SIGKILL);

	t0 = xt_now_ms();
	got = 0;
	while (got < N && xt_now_ms() - t0 < 3000) {
		int n = fx_poll(ctx, wc + got, N - got, -1);   /* -1 must not hang */

		assert_true(n >= 0);
		got += n;
	}
	uint64_t took = xt_now_ms() - t0;

	assert_int_equal(got, N);
	if (freeze)
		assert_true(took >= 400 && took < 1200);
	else
		assert_true(took < 2000);
	assert_int_equal(wc[0].status, FX_WC_RETRY_EXC_ERR);
	assert_int_equal(wc[0].wr_id, 0);
	for (int i = 1; i < N; i++) {
		assert_int_equal(wc[i].status, FX_WC_FLUSH_ERR);
		assert_int_equal(wc[i].wr_id, (uint64_t)i);
	}
	assert_int_equal(fx_conn_state(c), FX_CONN_ERROR);
	if (freeze)
		assert_non_null(strstr(fx_conn_error(c), "timed out after 500 ms"));
	else
		assert_non_null(strstr(fx_conn_error(c), "127.0.0.1"));
	assert_int_equal(fx_conn_outstanding(c), 0);
	reap_child(pid);
	fx_conn_close(c);
	assert_int_equal(fx_poll(ctx, wc, N, 0), 0);
	assert_int_equal(fx_dereg_mr(mr), 0);
	assert_int_equal(fx_pd_free(pd), 0);
	fx_ctx_destroy(ctx);
	free(buf);
}

static void test_peer_killed(void **state)
{
	(void)state;
	run_dead_peer(false);
}

static void test_peer_frozen_timeout(void **state)
{
	(void)state;
	run_dead_peer(true);
}

/* ------------------------------------------------------------------ garbage */

static void test_garbage_input(void **state)
{
	(void)state;
	struct xt_pair p;
	struct fx_wc wc[4];
	struct fx_ctx_stats st;
	struct fx_conn *bad = NULL;
	int perr = 0;

	pair_open(&p);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(fx_listener_port(p.l)) };

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	const char junk[] = "GET / HTTP/1.1\r\nHost: ferry\r\n\r\n";

	assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	bad = xt_accept_one(p.l, p.pt, NULL);
	uint64_t t0 = xt_now_ms();

	while (fx_conn_state(bad) == FX_CONN_CONNECTED && xt_now_ms() - t0 < 2000)
		(void)fx_poll(p.ct, wc, 4, 10);
	assert_int_equal(fx_conn_state(bad), FX_CONN_ERROR);
	assert_non_null(strstr(fx_conn_error(bad), "malformed"));
	fx_ctx_get_stats(p.ct, &st);
	assert_int_equal(st.malformed_frames, 1);
	assert_int_equal(st.conns_failed, 1);

	/* the raw peer sees the connection end */
	char b[16];
	struct pollfd pf = { .fd = fd, .events = POLLIN };

	assert_int_equal(poll(&pf, 1, 2000), 1);
	assert_true(read(fd, b, sizeof(b)) <= 0);
	close(fd);

	/* the context keeps serving the good connection */
	struct fx_sge s = xt_sge(p.imr, p.ibuf, PAGE);
	struct fx_send_wr w = { .wr_id = 1, .opcode = FX_OP_READ, .flags = FX_WR_SIGNALED, .sg_list = &s,
				.num_sge = 1, .remote_addr = PAGE, .rkey = p.tmr->rkey };

	assert_int_equal(fx_post_send(p.c_i, &w, 1, &perr), 1);
	assert_int_equal(xt_drain(&p, wc, 1, 2000), 1);
	assert_int_equal(wc[0].status, FX_WC_SUCCESS);
	assert_memory_equal(p.ibuf, p.tbuf + PAGE, PAGE);
	fx_conn_close(bad);
	pair_close(&p);
}

/* A peer that sends a valid header for a reply nobody asked for. */
static void test_unexpected_reply(void **state)
{
	(void)state;
	struct fx_ctx *ctx;
	struct fx_pd *pd;
	struct fx_listener *l;
	struct fx_conn *c;
	struct fx_wc wc[2];
	struct fx_ctx_stats st;
	uint8_t msg[64];

	assert_int_equal(fx_ctx_create(FX_KIND_TCP, NULL, &ctx, NULL), 0);
	assert_int_equal(fx_pd_alloc(ctx, &pd, NULL), 0);
	assert_int_equal(fx_listen(ctx, "127.0.0.1", 0, &l, NULL), 0);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(fx_listener_port(l)) };

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	int n = ferry_page_encode_write_ok(1ull << 63 | 1, 1, msg, sizeof(msg));

	assert_int_equal(write(fd, msg, (size_t)n), n);
	c = xt_accept_one(l, pd, NULL);
	uint64_t t0 = xt_now_ms();

	while (fx_conn_state(c) == FX_CONN_CONNECTED && xt_now_ms() - t0 < 2000)
		(void)fx_poll(ctx, wc, 2, 10);
	assert_int_equal(fx_conn_state(c), FX_CONN_ERROR);
	fx_ctx_get_stats(ctx, &st);
	assert_int_equal(st.malformed_frames, 1);
	close(fd);
	fx_conn_close(c);
	fx_listener_close(l);
	assert_int_equal(fx_pd_free(pd), 0);
	fx_ctx_destroy(ctx);
}

/* ------------------------------------------------------------------ close, event mode */

static void test_close_flushes(void **state)
{
	(void)state;
	struct xt_pair p;
	struct fx_wc wc[8];
	int perr = 0;

	pair_open(&p);
	struct fx_sge s[4];
	struct fx_send_wr w[4];

	for (int i = 0; i < 4; i++) {
		s[i] = xt_sge(p.imr, p.ibuf + (size_t)i * PAGE, PAGE);
		w[i] = (struct fx_send_wr){ .wr_id = (uint64_t)i, .opcode = FX_OP_READ, .flags = 0,
					    .sg_list = &s[i], .num_sge = 1, .remote_addr = 0, .rkey = p.tmr->rkey };
	}
	struct fx_recv_wr rw = { .wr_id = 99, .sg_list = &s[3], .num_sge = 1 };

	assert_int_equal(fx_post_recv(p.c_i, &rw, 1, &perr), 1);
	assert_int_equal(fx_post_send(p.c_i, w, 3, &perr), 3);
	struct fx_conn *closed = p.c_i;

	fx_conn_set_user(p.c_i, &p);
	fx_conn_close(p.c_i);
	p.c_i = NULL;
	/* event mode: the context fd reports the pending completions */
	struct pollfd pf = { .fd = fx_ctx_fd(p.ci), .events = POLLIN };

	assert_int_equal(poll(&pf, 1, 1000), 1);
	int n = fx_poll(p.ci, wc, 8, 0);

	assert_int_equal(n, 4);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(wc[i].status, FX_WC_FLUSH_ERR);
		assert_ptr_equal(wc[i].conn, closed);
	}
	assert_int_equal(wc[3].opcode, FX_WC_RECV);
	assert_int_equal(wc[3].status, FX_WC_FLUSH_ERR);
	/* wc.conn of the last completions stays usable until the next fx_poll */
	assert_ptr_equal(fx_conn_get_user(wc[3].conn), &p);
	/* the target notices */
	uint64_t t0 = xt_now_ms();

	while (fx_conn_state(p.c_t) == FX_CONN_CONNECTED && xt_now_ms() - t0 < 2000)
		(void)fx_poll(p.ct, wc, 8, 10);
	assert_int_equal(fx_conn_state(p.c_t), FX_CONN_ERROR);
	assert_non_null(strstr(fx_conn_error(p.c_t), "closed the connection"));
	pair_close(&p);
}

static void test_event_mode_blocking_poll(void **state)
{
	(void)state;
	struct xt_pair p;
	struct fx_wc wc[2];
	int perr = 0;

	pair_open(&p);
	/* target context fd becomes readable when a request arrives */
	struct fx_sge s = xt_sge(p.imr, p.ibuf, PAGE);
	struct fx_send_wr w = { .wr_id = 5, .opcode = FX_OP_READ, .flags = FX_WR_SIGNALED, .sg_list = &s,
				.num_sge = 1, .remote_addr = 0, .rkey = p.tmr->rkey };

	(void)fx_poll(p.ct, wc, 2, 0);
	assert_int_equal(fx_post_send(p.c_i, &w, 1, &perr), 1);
	struct pollfd pf = { .fd = fx_ctx_fd(p.ct), .events = POLLIN };

	assert_int_equal(poll(&pf, 1, 1000), 1);
	assert_int_equal(fx_poll(p.ct, wc, 2, 0), 0);    /* served, nothing to report */
	/* initiator: blocking poll returns the completion */
	assert_int_equal(fx_poll(p.ci, wc, 2, 1000), 1);
	assert_int_equal(wc[0].status, FX_WC_SUCCESS);
	/* a timed poll with nothing to do returns 0 after about its timeout */
	uint64_t t0 = xt_now_ms();

	assert_int_equal(fx_poll(p.ci, wc, 2, 50), 0);
	assert_true(xt_now_ms() - t0 >= 45);
	pair_close(&p);
}

/* ------------------------------------------------------------------ limits and bounds */

/* Many tiny READs (past the 1024-entry message limit) and WRITEs past the 4 MiB data limit. */
static void test_coalescing_limits(void **state)
{
	(void)state;
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
					    .remote_addr = (uint64_t)(N - 1 - i) * SZ, .rkey = p.tmr->rkey };
	}
	assert_int_equal(fx_post_send(p.c_i, w, N, &perr), N);
	assert_int_equal(xt_drain(&p, wc, N, 5000), N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(wc[i].status, FX_WC_SUCCESS);
		assert_int_equal(wc[i].wr_id, (uint64_t)i);
		assert_memory_equal(p.ibuf + (size_t)i * SZ, p.tbuf + (size_t)(N - 1 - i) * SZ, SZ);
	}

	/* 9 WRITEs of the whole 1 MiB region: 4 MiB messages, the last one wins */
	xt_fill_pattern(p.ibuf, TGT_LEN, 77);
	for (int i = 0; i < 9; i++) {
		sg[i] = xt_sge(p.imr, p.ibuf, (uint32_t)TGT_LEN);
		w[i] = (struct fx_send_wr){ .wr_id = (uint64_t)i, .opcode = FX_OP_WRITE,
					    .flags = i == 8 ? FX_WR_SIGNALED : 0, .sg_list = &sg[i], .num_sge = 1,
					    .remote_addr = 0, .rkey = p.tmr->rkey };
	}
	assert_int_equal(fx_post_send(p.c_i, w, 9, &perr), 9);
	assert_int_equal(xt_drain(&p, wc, 1, 5000), 1);
	assert_int_equal(wc[0].status, FX_WC_SUCCESS);
	assert_int_equal(wc[0].wr_id, 8);
	assert_memory_equal(p.tbuf, p.ibuf, TGT_LEN);

	/* a READ larger than a message can carry is refused at post time */
	sg[0] = xt_sge(p.imr, p.ibuf, FERRY_PAGE_MAX_DATA + 1);
	w[0].opcode = FX_OP_READ;
	assert_int_equal(fx_post_send(p.c_i, w, 1, &perr), 0);
	assert_int_equal(perr, -EINVAL);
	free(sg);
	free(w);
	free(wc);
	pair_close(&p);
}

/* An initiator that does not read its replies: the target stops reading requests. */
static void test_target_output_gate(void **state)
{
	(void)state;
	struct xt_pair p;
	enum { N = 64 };
	struct fx_sge sg[N];
	struct fx_send_wr w[N];
	struct fx_wc wc[N];
	struct fx_ctx_stats st;
	int perr = 0;

	pair_open(&p);
	for (int i = 0; i < N; i++) {
		sg[i] = xt_sge(p.imr, p.ibuf, (uint32_t)TGT_LEN);
		w[i] = (struct fx_send_wr){ .wr_id = (uint64_t)i, .opcode = FX_OP_READ, .flags = FX_WR_SIGNALED,
					    .sg_list = &sg[i], .num_sge = 1, .remote_addr = 0, .rkey = p.tmr->rkey };
	}
	assert_int_equal(fx_post_send(p.c_i, w, N, &perr), N);   /* 64 MiB of replies */
	/* only the target runs */
	uint64_t t0 = xt_now_ms();

	do {
		(void)fx_poll(p.ct, wc, N, 1);
		fx_ctx_get_stats(p.ct, &st);
	} while (st.backpressure_events == 0 && xt_now_ms() - t0 < 3000);
	assert_true(st.backpressure_events >= 1);
	assert_true(st.bytes_served_read < (uint64_t)N * TGT_LEN);
	assert_int_equal(fx_conn_state(p.c_t), FX_CONN_CONNECTED);
	/* once the initiator reads, everything completes */
	assert_int_equal(xt_drain(&p, wc, N, 10000), N);
	for (int i = 0; i < N; i++)
		assert_int_equal(wc[i].status, FX_WC_SUCCESS);
	assert_memory_equal(p.ibuf, p.tbuf, TGT_LEN);

	/* again, and this time the target deregisters the region while replies are queued */
	assert_int_equal(fx_post_send(p.c_i, w, N, &perr), N);
	t0 = xt_now_ms();
	do {
		(void)fx_poll(p.ct, wc, N, 1);
		fx_ctx_get_stats(p.ct, &st);
	} while (st.backpressure_events < 2 && xt_now_ms() - t0 < 3000);
	assert_int_equal(fx_dereg_mr(p.tmr), 0);
	p.tmr = NULL;
	assert_int_equal(fx_conn_state(p.c_t), FX_CONN_ERROR);
	assert_non_null(strstr(fx_conn_error(p.c_t), "deregistered"));
	int got = xt_drain(&p, wc, N, 5000), failed = 0;

	assert_int_equal(got, N);
	for (int i = 0; i < N; i++)
		failed += wc[i].status != FX_WC_SUCCESS;
	assert_true(failed > 0);
	assert_int_equal(fx_conn_state(p.c_i), FX_CONN_ERROR);
	pair_close(&p);
}

/* Deregistering local memory that posted requests still use fails them, safely. */
static void test_dereg_local_in_use(void **state)
{
	(void)state;
	struct xt_pair p;
	struct ferry_err err = { 0 };
	struct fx_mr *mr;
	enum { N = 16 };
	struct fx_sge sg[N];
	struct fx_send_wr w[N];
	struct fx_wc wc[N];
	uint8_t *mem = calloc(N, PAGE);
	int perr = 0;

	pair_open(&p);
	assert_int_equal(fx_reg_mr(p.pi, mem, (size_t)N * PAGE, FX_ACCESS_LOCAL_WRITE, &mr, &err), 0);
	for (int i = 0; i < N; i++) {
		sg[i] = xt_sge(mr, mem + (size_t)i * PAGE, PAGE);
		w[i] = (struct fx_send_wr){ .wr_id = (uint64_t)i, .opcode = FX_OP_READ, .flags = FX_WR_SIGNALED,
					    .sg_list = &sg[i], .num_sge = 1, .remote_addr = 0, .rkey = p.tmr->rkey };
	}
	assert_int_equal(fx_post_send(p.c_i, w, N, &perr), N);
	assert_int_equal(fx_dereg_mr(mr), 0);
	free(mem);            /* nothing may touch it any more */
	assert_int_equal(fx_conn_state(p.c_i), FX_CONN_ERROR);
	assert_int_equal(xt_drain(&p, wc, N, 2000), N);
	assert_int_equal(wc[0].status, FX_WC_LOC_PROT_ERR);
	for (int i = 1; i < N; i++)
		assert_int_equal(wc[i].status, FX_WC_FLUSH_ERR);
	xt_spin(&p, 20);
	pair_close(&p);
}

/* Shared receive queue: the transport-neutral checks (xport_test_util.c). */
static void test_srq(void **state)
{
	(void)state;
	xt_check_srq(FX_KIND_TCP, "127.0.0.1");
}

/* TCP checks SRQ buffers at post time (RDMA only when a message lands in one). */
static void test_srq_bad_buffer(void **state)
{
	struct fx_ctx *ctx;
	struct fx_pd *pd, *other;
	struct fx_srq *srq;
	struct fx_mr *mr, *ro;
	struct ferry_err err = { 0 };
	static uint8_t buf[2 * PAGE] __attribute__((aligned(4096)));
	int perr = 0;

	(void)state;
	assert_int_equal(fx_ctx_create(FX_KIND_TCP, NULL, &ctx, &err), 0);
	assert_int_equal(fx_pd_alloc(ctx, &pd, &err), 0);
	assert_int_equal(fx_pd_alloc(ctx, &other, &err), 0);
	assert_int_equal(fx_srq_create(pd, 2, &srq, &err), 0);
	assert_int_equal(fx_reg_mr(other, buf, PAGE, FX_ACCESS_LOCAL_WRITE, &mr, &err), 0);
	assert_int_equal(fx_reg_mr(pd, buf + PAGE, PAGE, 0, &ro, &err), 0);

	struct fx_sge wrong_pd = xt_sge(mr, buf, 64), read_only = xt_sge(ro, buf + PAGE, 64);
	struct fx_sge past_end = xt_sge(ro, buf + PAGE, 64);
	struct fx_recv_wr wr = { 1, &wrong_pd, 1 };

	past_end.length = PAGE + 1;
	assert_int_equal(fx_post_srq_recv(srq, &wr, 1, &perr), 0);
	assert_int_equal(perr, -EINVAL);
	wr.sg_list = &read_only;
	assert_int_equal(fx_post_srq_recv(srq, &wr, 1, &perr), 0);
	assert_int_equal(perr, -EINVAL);
	wr.sg_list = &past_end;
	assert_int_equal(fx_post_srq_recv(srq, &wr, 1, &perr), 0);
	assert_int_equal(perr, -EINVAL);
	assert_int_equal(fx_srq_posted(srq), 0);

	/* Full: depth 2 takes 2 of 3. */
	fx_dereg_mr(ro);
	assert_int_equal(fx_reg_mr(pd, buf + PAGE, PAGE, FX_ACCESS_LOCAL_WRITE, &ro, &err), 0);
	struct fx_sge ok = xt_sge(ro, buf + PAGE, 64);
	struct fx_recv_wr three[3] = { { 1, &ok, 1 }, { 2, &ok, 1 }, { 3, &ok, 1 } };

	assert_int_equal(fx_post_srq_recv(srq, three, 3, &perr), 2);
	assert_int_equal(perr, -EAGAIN);
	assert_int_equal(fx_srq_posted(srq), 2);
	assert_int_equal(fx_pd_free(pd), -EBUSY);
	assert_int_equal(fx_srq_destroy(srq), 0);
	fx_dereg_mr(ro);
	fx_dereg_mr(mr);
	assert_int_equal(fx_pd_free(pd), 0);
	assert_int_equal(fx_pd_free(other), 0);
	fx_ctx_destroy(ctx);
}

/* Memory windows: per-connection keys inside one domain. */
static void test_mw(void **state)
{
	(void)state;
	xt_check_mw(FX_KIND_TCP, "127.0.0.1");
}

/* Poll @ctx until it returns @n completions (or @ms pass). */
static int poll_ctx_n(struct fx_ctx *ctx, struct fx_wc *wc, int n, int ms)
{
	int got = 0;

	for (uint64_t t0 = xt_now_ms(); got < n && xt_now_ms() - t0 < (uint64_t)ms;) {
		int k = fx_poll(ctx, wc + got, n - got, 1);

		assert_true(k >= 0);
		got += k;
	}
	return got;
}

/*
 * An SRQ connection holds at most max_recv_wr receives the application has
 * not reaped: with 1, the second message stays in the socket (the SRQ keeps
 * its receives for others) until the first completion is reaped.
 */
static void test_srq_own_ring_full(void **state)
{
	static const struct fx_ctx_opts co = { .poll_spin_us = FX_POLL_SPIN_OFF };
	struct fx_ctx *ci, *ct;
	struct fx_pd *pi, *pt;
	struct fx_srq *srq;
	struct fx_listener *l;
	struct fx_conn *c_i, *c_t;
	struct fx_mr *imr, *tmr;
	struct ferry_err err = { 0 };
	static uint8_t ibuf[PAGE] __attribute__((aligned(4096))), tbuf[4 * PAGE] __attribute__((aligned(4096)));
	struct fx_conn_opts to = { .max_recv_wr = 1 };
	struct fx_wc wc[4];
	int perr = 0, len[2];

	(void)state;
	assert_int_equal(fx_ctx_create(FX_KIND_TCP, &co, &ci, &err), 0);
	assert_int_equal(fx_ctx_create(FX_KIND_TCP, &co, &ct, &err), 0);
	assert_int_equal(fx_pd_alloc(ci, &pi, &err), 0);
	assert_int_equal(fx_pd_alloc(ct, &pt, &err), 0);
	assert_int_equal(fx_srq_create(pt, 4, &srq, &err), 0);
	assert_int_equal(fx_reg_mr(pi, ibuf, PAGE, FX_ACCESS_LOCAL_WRITE, &imr, &err), 0);
	assert_int_equal(fx_reg_mr(pt, tbuf, 4 * PAGE, FX_ACCESS_LOCAL_WRITE, &tmr, &err), 0);
	assert_int_equal(fx_listen(ct, "127.0.0.1", 0, &l, &err), 0);
	to.srq = srq;
	xt_connect_accept(FX_KIND_TCP, "127.0.0.1", ci, pi, l, pt, NULL, &to, &c_i, &c_t);
	for (int i = 0; i < 4; i++) {
		struct fx_sge sge = xt_sge(tmr, tbuf + (size_t)i * PAGE, PAGE);
		struct fx_recv_wr wr = { 10u + (uint64_t)i, &sge, 1 };

		assert_int_equal(fx_post_srq_recv(srq, &wr, 1, &perr), 1);
	}
	len[0] = ferry_page_encode_stats(1, ibuf, 512);
	len[1] = ferry_page_encode_stats(2, ibuf + 512, 512);
	for (int k = 0; k < 2; k++) {
		struct fx_sge sge = xt_sge(imr, ibuf + (size_t)k * 512, (uint32_t)len[k]);
		struct fx_send_wr wr = { .wr_id = (uint64_t)k, .opcode = FX_OP_SEND, .sg_list = &sge, .num_sge = 1 };

		assert_int_equal(fx_post_send(c_i, &wr, 1, &perr), 1);
	}
	/* Progress without reaping: the first message takes a receive, the second has to wait. */
	for (uint64_t t0 = xt_now_ms(); xt_now_ms() - t0 < 200;) {
		assert_int_equal(fx_poll(ci, NULL, 0, 0), 0);
		assert_int_equal(fx_poll(ct, NULL, 0, 1), 0);
	}
	assert_int_equal(fx_srq_posted(srq), 3);
	/* Reaping the first lets the second in. */
	assert_int_equal(poll_ctx_n(ct, wc, 1, 2000), 1);
	assert_int_equal(wc[0].wr_id, 10);
	assert_ptr_equal(wc[0].conn, c_t);
	assert_int_equal(poll_ctx_n(ct, wc, 1, 2000), 1);
	assert_int_equal(wc[0].wr_id, 11);
	assert_int_equal(wc[0].byte_len, (uint32_t)len[1]);
	assert_memory_equal(tbuf + PAGE, ibuf + 512, (size_t)len[1]);
	assert_int_equal(fx_srq_posted(srq), 2);

	fx_conn_close(c_i);
	fx_conn_close(c_t);
	for (uint64_t t0 = xt_now_ms(); xt_now_ms() - t0 < 100;) {
		fx_poll(ci, NULL, 0, 0);
		fx_poll(ct, NULL, 0, 1);
	}
	assert_int_equal(fx_srq_destroy(srq), 0);
	fx_listener_close(l);
	fx_dereg_mr(imr);
	fx_dereg_mr(tmr);
	assert_int_equal(fx_pd_free(pi), 0);
	assert_int_equal(fx_pd_free(pt), 0);
	fx_ctx_destroy(ci);
	fx_ctx_destroy(ct);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kind_and_rdma_stub),
		cmocka_unit_test(test_connect_accept),
		cmocka_unit_test(test_connect_refused),
		cmocka_unit_test(test_connect_timeout),
		cmocka_unit_test(test_send_recv_control),
		cmocka_unit_test(test_send_invalid),
		cmocka_unit_test(test_write_read_sg),
		cmocka_unit_test(test_batch_selective_signal),
		cmocka_unit_test(test_backpressure),
		cmocka_unit_test(test_rnr_backpressure),
		cmocka_unit_test(test_bad_rkey),
		cmocka_unit_test(test_other_pd),
		cmocka_unit_test(test_out_of_range),
		cmocka_unit_test(test_after_dereg),
		cmocka_unit_test(test_no_remote_rights),
		cmocka_unit_test(test_recv_too_small),
		cmocka_unit_test(test_local_prot_err),
		cmocka_unit_test(test_peer_killed),
		cmocka_unit_test(test_peer_frozen_timeout),
		cmocka_unit_test(test_garbage_input),
		cmocka_unit_test(test_unexpected_reply),
		cmocka_unit_test(test_close_flushes),
		cmocka_unit_test(test_event_mode_blocking_poll),
		cmocka_unit_test(test_coalescing_limits),
		cmocka_unit_test(test_target_output_gate),
		cmocka_unit_test(test_dereg_local_in_use),
		cmocka_unit_test(test_srq),
		cmocka_unit_test(test_mw),
		cmocka_unit_test(test_srq_bad_buffer),
		cmocka_unit_test(test_srq_own_ring_full),
	};

	if (!getenv("FERRY_LOG_LEVEL"))
		ferry_log_set_level(FERRY_LOG_WARN);
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
