/* Scaffolding shared by the TCP and RDMA transport tests: see xport_test_util.h. */
#include "xport_test_util.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "proto/page.h"

uint64_t xt_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void xt_fill_pattern(uint8_t *p, size_t len, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;

	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		p[i] = (uint8_t)(x >> 16);
	}
}

struct fx_sge xt_sge(struct fx_mr *mr, void *addr, uint32_t len)
{
	struct fx_sge s = { .addr = addr, .length = len, .lkey = mr->lkey };

	return s;
}

struct fx_conn *xt_accept_one(struct fx_listener *l, struct fx_pd *pd, const struct fx_conn_opts *o)
{
	struct fx_conn *c = NULL;
	struct ferry_err err = { 0 };
	char peer[64];
	uint64_t t0 = xt_now_ms();
	int rc;

	do {
		rc = fx_accept(l, pd, o, &c, peer, sizeof(peer), &err);
		if (rc == -EAGAIN)
			usleep(1000);
	} while (rc == -EAGAIN && xt_now_ms() - t0 < 2000);
	assert_int_equal(rc, 0);
	assert_non_null(c);
	assert_string_equal(peer, fx_conn_peer(c));
	return c;
}

struct conn_job {
	struct fx_ctx *ctx;
	struct fx_pd *pd;
	const char *host;
	uint16_t port;
	const struct fx_conn_opts *opts;
	struct fx_conn *conn;
	int rc;
	struct ferry_err err;
};

static void *connect_thread(void *arg)
{
	struct conn_job *j = arg;

	j->rc = fx_connect(j->ctx, j->pd, j->host, j->port, j->opts, &j->conn, &j->err);
	return NULL;
}

/* fx_connect on a helper thread while this thread accepts into @p tpd. */
static void connect_accept_threaded(const char *host, struct fx_ctx *ci, struct fx_pd *ipd, struct fx_listener *l,
				    struct fx_pd *tpd, const struct fx_conn_opts *io,
				    const struct fx_conn_opts *to, struct fx_conn **c_i, struct fx_conn **c_t)
{
	struct conn_job j = { .ctx = ci, .pd = ipd, .host = host, .port = fx_listener_port(l), .opts = io };
	pthread_t th;
	struct fx_conn *c = NULL;
	struct ferry_err err = { 0 };
	char peer[64];
	uint64_t t0 = xt_now_ms();
	int rc;

	assert_int_equal(pthread_create(&th, NULL, connect_thread, &j), 0);
	do {
		struct pollfd pf = { .fd = fx_listener_fd(l), .events = POLLIN };

		(void)poll(&pf, 1, 50);
		rc = fx_accept(l, tpd, to, &c, peer, sizeof(peer), &err);
	} while (rc == -EAGAIN && xt_now_ms() - t0 < 10000);
	pthread_join(th, NULL);
	if (rc)
		fail_msg("fx_accept: %d %s", rc, err.msg);
	if (j.rc)
		fail_msg("fx_connect: %d %s", j.rc, j.err.msg);
	assert_string_equal(peer, fx_conn_peer(c));
	*c_i = j.conn;
	*c_t = c;
}

void xt_connect_accept(enum fx_kind kind, const char *host, struct fx_ctx *ci, struct fx_pd *ipd,
		       struct fx_listener *l, struct fx_pd *tpd, const struct fx_conn_opts *io,
		       const struct fx_conn_opts *to, struct fx_conn **c_i, struct fx_conn **c_t)
{
	struct ferry_err err = { 0 };

	if (kind == FX_KIND_RDMA) {
		connect_accept_threaded(host, ci, ipd, l, tpd, io, to, c_i, c_t);
		return;
	}
	assert_int_equal(fx_connect(ci, ipd, host, fx_listener_port(l), io, c_i, &err), 0);
	*c_t = xt_accept_one(l, tpd, to);
}

void xt_pair_open(struct xt_pair *p, enum fx_kind kind, const char *host, const struct fx_ctx_opts *co,
		  const struct fx_conn_opts *io, const struct fx_conn_opts *to)
{
	struct ferry_err err = { 0 };

	memset(p, 0, sizeof(*p));
	p->kind = kind;
	p->host = host;
	assert_int_equal(fx_ctx_create(kind, co, &p->ci, &err), 0);
	assert_int_equal(fx_ctx_create(kind, co, &p->ct, &err), 0);
	assert_int_equal(fx_pd_alloc(p->ci, &p->pi, &err), 0);
	assert_int_equal(fx_pd_alloc(p->ct, &p->pt, &err), 0);
	if (fx_listen(p->ct, host, 0, &p->l, &err))
		fail_msg("fx_listen %s: %s", host, err.msg);
	assert_true(fx_listener_port(p->l) != 0);
	xt_connect_accept(kind, host, p->ci, p->pi, p->l, p->pt, io, to, &p->c_i, &p->c_t);

	p->tbuf = aligned_alloc(PAGE, TGT_LEN);
	p->ibuf = aligned_alloc(PAGE, 2 * TGT_LEN);
	assert_non_null(p->tbuf);
	assert_non_null(p->ibuf);
	xt_fill_pattern(p->tbuf, TGT_LEN, 1);
	memset(p->ibuf, 0, 2 * TGT_LEN);
	assert_int_equal(fx_reg_mr(p->pt, p->tbuf, TGT_LEN,
				   FX_ACCESS_LOCAL_WRITE | FX_ACCESS_REMOTE_READ | FX_ACCESS_REMOTE_WRITE, &p->tmr,
				   &err), 0);
	assert_int_equal(fx_reg_mr(p->pi, p->ibuf, 2 * TGT_LEN, FX_ACCESS_LOCAL_WRITE, &p->imr, &err), 0);
}

int xt_drain(struct xt_pair *p, struct fx_wc *wc, int want, int timeout_ms)
{
	uint64_t t0 = xt_now_ms();
	int got = 0;

	while (got < want && (int)(xt_now_ms() - t0) < timeout_ms) {
		int n;

		if (p->ct) {
			/* progress only: the target's completions stay for xt_drain_target() */
			n = fx_poll(p->ct, NULL, 0, 0);
			assert_int_equal(n, 0);
		}
		n = fx_poll(p->ci, wc + got, want - got, 0);
		assert_true(n >= 0);
		got += n;
	}
	return got;
}

int xt_drain_target(struct xt_pair *p, struct fx_wc *wc, int want, int timeout_ms)
{
	uint64_t t0 = xt_now_ms();
	int got = 0;

	while (got < want && (int)(xt_now_ms() - t0) < timeout_ms) {
		int n = fx_poll(p->ci, NULL, 0, 0);

		assert_int_equal(n, 0);
		n = fx_poll(p->ct, wc + got, want - got, 0);
		assert_true(n >= 0);
		got += n;
	}
	return got;
}

void xt_spin(struct xt_pair *p, int ms)
{
	struct fx_wc w[32];
	uint64_t t0 = xt_now_ms();

	while ((int)(xt_now_ms() - t0) < ms) {
		if (p->ct)
			(void)fx_poll(p->ct, w, 32, 0);
		if (p->ci)
			(void)fx_poll(p->ci, w, 32, 0);
	}
}

void xt_pair_close(struct xt_pair *p, int spin_ms)
{
	if (p->c_i)
		fx_conn_close(p->c_i);
	if (p->c_t)
		fx_conn_close(p->c_t);
	xt_spin(p, spin_ms);
	if (p->imr)
		assert_int_equal(fx_dereg_mr(p->imr), 0);
	if (p->tmr)
		assert_int_equal(fx_dereg_mr(p->tmr), 0);
	if (p->l)
		fx_listener_close(p->l);
	assert_int_equal(fx_pd_free(p->pi), 0);
	assert_int_equal(fx_pd_free(p->pt), 0);
	fx_ctx_destroy(p->ci);
	fx_ctx_destroy(p->ct);
	free(p->tbuf);
	free(p->ibuf);
}

void xt_check_backpressure(struct xt_pair *p, int deadline_ms)
{
	enum { N = 80 };
	static struct fx_sge sg[N];
	static struct fx_send_wr w[N];
	struct fx_wc wc[N];
	struct fx_ctx_stats st;
	int perr = 0;

	for (int i = 0; i < N; i++) {
		sg[i] = xt_sge(p->imr, p->ibuf + (size_t)i * PAGE, PAGE);
		w[i] = (struct fx_send_wr){ .wr_id = (uint64_t)i, .opcode = FX_OP_READ, .flags = FX_WR_SIGNALED,
					    .sg_list = &sg[i], .num_sge = 1,
					    .remote_addr = p->tmr->remote_base + (uint64_t)i * PAGE, .rkey = p->tmr->rkey };
	}
	int posted = fx_post_send(p->c_i, w, N, &perr);

	assert_int_equal(posted, XT_BP_SEND_WR);
	assert_int_equal(perr, -EAGAIN);
	assert_int_equal(fx_post_send(p->c_i, w + posted, N - posted, &perr), 0);
	assert_int_equal(perr, -EAGAIN);
	fx_ctx_get_stats(p->ci, &st);
	assert_int_equal(st.backpressure_events, 2);

	int done = 0;
	uint64_t t0 = xt_now_ms();

	while (done < N && (int)(xt_now_ms() - t0) < deadline_ms) {
		done += xt_drain(p, wc + done, 1, 1000);
		if (posted < N) {
			int n = fx_post_send(p->c_i, w + posted, N - posted, &perr);

			assert_true(n >= 0);
			posted += n;
		}
		assert_true(fx_conn_outstanding(p->c_i) <= XT_BP_SEND_WR);
	}
	assert_int_equal(done, N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(wc[i].status, FX_WC_SUCCESS);
		assert_int_equal(wc[i].wr_id, (uint64_t)i);
	}
	assert_memory_equal(p->ibuf, p->tbuf, (size_t)N * PAGE);

	/* receives: max_recv_wr = XT_BP_RECV_WR */
	struct fx_recv_wr rw[6];

	for (int i = 0; i < 6; i++)
		rw[i] = (struct fx_recv_wr){ .wr_id = (uint64_t)i, .sg_list = &sg[i], .num_sge = 1 };
	assert_int_equal(fx_post_recv(p->c_i, rw, 6, &perr), XT_BP_RECV_WR);
	assert_int_equal(perr, -EAGAIN);
}

void xt_send_control_msgs(struct xt_pair *p, int timeout_ms, int len[3])
{
	struct fx_wc wc[3];
	int perr = 0;
	uint8_t *m = p->ibuf;
	int hl = ferry_page_encode_hello(1, "vm-test", 1, 1, m, 512);
	int al = ferry_page_encode_alloc(2, 1 << 20, 0, m + 512, 512);
	uint8_t stats_msg[64];
	int sl = ferry_page_encode_stats(3, stats_msg, sizeof(stats_msg));

	assert_true(hl > 0 && al > 30 && sl > 0);
	struct fx_sge s_hello = xt_sge(p->imr, m, (uint32_t)hl);
	struct fx_sge s_alloc[3] = {
		xt_sge(p->imr, m + 512, 10),
		xt_sge(p->imr, m + 522, 20),
		xt_sge(p->imr, m + 542, (uint32_t)al - 30),
	};
	struct fx_sge s_stats = { .addr = stats_msg, .length = (uint32_t)sl, .lkey = 0 };
	struct fx_send_wr sw[3] = {
		{ .wr_id = 1, .opcode = FX_OP_SEND, .flags = FX_WR_SIGNALED, .sg_list = &s_hello, .num_sge = 1 },
		{ .wr_id = 2, .opcode = FX_OP_SEND, .flags = FX_WR_SIGNALED, .sg_list = s_alloc, .num_sge = 3 },
		{ .wr_id = 3, .opcode = FX_OP_SEND, .flags = FX_WR_SIGNALED | FX_WR_INLINE, .sg_list = &s_stats,
		  .num_sge = 1 },
	};

	assert_int_equal(fx_post_send(p->c_i, sw, 3, &perr), 3);
	memset(stats_msg, 0xee, sizeof(stats_msg));     /* inline: reusable at once */
	assert_int_equal(xt_drain(p, wc, 3, timeout_ms), 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(wc[i].status, FX_WC_SUCCESS);
		assert_int_equal(wc[i].opcode, FX_WC_SEND);
		assert_int_equal(wc[i].wr_id, (uint64_t)i + 1);
	}
	len[0] = hl;
	len[1] = al;
	len[2] = sl;
}
