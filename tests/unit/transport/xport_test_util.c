/* Scaffolding shared by the TCP and RDMA transport tests: see xport_test_util.h. */
#include "xport_test_util.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
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

/* ------------------------------------------------------------ shared receive queue */

#define SRQ_CLIENTS 3
#define SRQ_BUF 512u

struct srq_rig {
	struct fx_ctx *ci, *ct;
	struct fx_pd *pi, *pt;
	struct fx_listener *l;
	struct fx_srq *srq;
	struct fx_conn *c_i[SRQ_CLIENTS], *c_t[SRQ_CLIENTS];
	uint8_t *ibuf, *tbuf;
	struct fx_mr *imr, *tmr;
	int len[SRQ_CLIENTS];
	int sends_done, recvs;
	struct fx_wc rwc[16];
};

/* Poll both sides for up to @ms: SEND completions counted, RECV completions kept in r->rwc. */
static void srq_poll(struct srq_rig *r, int ms, int want_recvs)
{
	uint64_t t0 = xt_now_ms();
	struct fx_wc wc[16];

	do {
		int n = fx_poll(r->ci, wc, 16, 0);

		assert_true(n >= 0);
		for (int i = 0; i < n; i++) {
			if (wc[i].opcode == FX_WC_SEND && wc[i].status == FX_WC_SUCCESS)
				r->sends_done++;
		}
		n = fx_poll(r->ct, wc, 16, 1);
		assert_true(n >= 0);
		for (int i = 0; i < n; i++) {
			assert_true(r->recvs < 16);
			r->rwc[r->recvs++] = wc[i];
		}
	} while ((want_recvs < 0 || r->recvs < want_recvs) && (int)(xt_now_ms() - t0) < ms);
}

static int srq_client_of(const struct srq_rig *r, const struct fx_conn *c)
{
	for (int k = 0; k < SRQ_CLIENTS; k++)
		if (r->c_t[k] == c)
			return k;
	return -1;
}

/* Client k SENDs one HELLO naming itself ("client-k"). */
static void srq_send(struct srq_rig *r, int k)
{
	char name[16];
	uint8_t *m = r->ibuf + (size_t)k * SRQ_BUF;
	int perr = 0;

	snprintf(name, sizeof(name), "client-%d", k);
	r->len[k] = ferry_page_encode_hello((uint64_t)k + 1, name, 1, 1, m, SRQ_BUF);
	assert_true(r->len[k] > 0);
	struct fx_sge sge = xt_sge(r->imr, m, (uint32_t)r->len[k]);
	struct fx_send_wr wr = { .wr_id = 100u + (uint64_t)k, .opcode = FX_OP_SEND, .flags = FX_WR_SIGNALED,
				 .sg_list = &sge, .num_sge = 1 };

	assert_int_equal(fx_post_send(r->c_i[k], &wr, 1, &perr), 1);
}

/* Post @n receives (buffers slot0.., wr_id 1000 + slot). */
static void srq_post(struct srq_rig *r, int slot0, int n)
{
	for (int i = 0; i < n; i++) {
		struct fx_sge sge = xt_sge(r->tmr, r->tbuf + (size_t)(slot0 + i) * SRQ_BUF, SRQ_BUF);
		struct fx_recv_wr wr = { 1000u + (uint64_t)(slot0 + i), &sge, 1 };
		int perr = 0;

		assert_int_equal(fx_post_srq_recv(r->srq, &wr, 1, &perr), 1);
		assert_int_equal(perr, 0);
	}
}

/* Receive completion i: from a known client, its bytes exactly what that client sent. */
static int srq_check_recv(struct srq_rig *r, int i)
{
	const struct fx_wc *w = &r->rwc[i];
	int k = srq_client_of(r, w->conn);

	assert_int_equal(w->status, FX_WC_SUCCESS);
	assert_int_equal(w->opcode, FX_WC_RECV);
	if (k < 0)
		fail_msg("receive completion names no SRQ connection");
	assert_true(w->wr_id >= 1000 && w->wr_id < 1016);
	assert_int_equal(w->byte_len, (uint32_t)r->len[k]);
	assert_memory_equal(r->tbuf + (size_t)(w->wr_id - 1000) * SRQ_BUF, r->ibuf + (size_t)k * SRQ_BUF,
			    (size_t)r->len[k]);
	return k;
}

void xt_check_srq(enum fx_kind kind, const char *host)
{
	static const struct fx_ctx_opts co = { .poll_spin_us = FX_POLL_SPIN_OFF };
	struct srq_rig r;
	struct ferry_err err = { 0 };
	struct fx_conn_opts to = { 0 };
	struct fx_pd *other;
	struct fx_conn *bad = NULL;
	unsigned seen = 0;
	int perr = 0;

	memset(&r, 0, sizeof(r));
	assert_int_equal(fx_ctx_create(kind, &co, &r.ci, &err), 0);
	assert_int_equal(fx_ctx_create(kind, &co, &r.ct, &err), 0);
	assert_int_equal(fx_pd_alloc(r.ci, &r.pi, &err), 0);
	assert_int_equal(fx_pd_alloc(r.ct, &r.pt, &err), 0);
	assert_int_equal(fx_srq_create(r.pt, 0, &r.srq, &err), -EINVAL);
	assert_int_equal(fx_srq_create(r.pt, 8, &r.srq, &err), 0);
	assert_int_equal(fx_srq_posted(r.srq), 0);
	r.ibuf = aligned_alloc(PAGE, PAGE);
	r.tbuf = aligned_alloc(PAGE, 16 * SRQ_BUF);
	assert_non_null(r.ibuf);
	assert_non_null(r.tbuf);
	memset(r.tbuf, 0, 16 * SRQ_BUF);
	assert_int_equal(fx_reg_mr(r.pi, r.ibuf, SRQ_CLIENTS * SRQ_BUF, FX_ACCESS_LOCAL_WRITE, &r.imr, &err), 0);
	assert_int_equal(fx_reg_mr(r.pt, r.tbuf, 16 * SRQ_BUF, FX_ACCESS_LOCAL_WRITE, &r.tmr, &err), 0);
	if (fx_listen(r.ct, host, 0, &r.l, &err))
		fail_msg("fx_listen %s: %s", host, err.msg);

	/* The domain rule: an SRQ of another domain is refused before anything connects. */
	assert_int_equal(fx_pd_alloc(r.ct, &other, &err), 0);
	to.srq = r.srq;
	assert_int_equal(fx_connect(r.ct, other, host, fx_listener_port(r.l), &to, &bad, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "protection domain"));
	assert_int_equal(fx_pd_free(other), 0);

	for (int k = 0; k < SRQ_CLIENTS; k++)
		xt_connect_accept(kind, host, r.ci, r.pi, r.l, r.pt, NULL, &to, &r.c_i[k], &r.c_t[k]);
	/* A connection with an SRQ has no receive queue of its own. */
	{
		struct fx_sge sge = xt_sge(r.tmr, r.tbuf, SRQ_BUF);
		struct fx_recv_wr wr = { 1, &sge, 1 };

		assert_int_equal(fx_post_recv(r.c_t[0], &wr, 1, &perr), 0);
		assert_int_equal(perr, -EINVAL);
	}
	assert_int_equal(fx_srq_destroy(r.srq), -EBUSY);
	assert_int_equal(fx_pd_free(r.pt), -EBUSY);

	/* Every client sends while the SRQ is empty: nothing arrives, nothing is lost (RNR). */
	for (int k = 0; k < SRQ_CLIENTS; k++)
		srq_send(&r, k);
	srq_poll(&r, 300, -1);
	assert_int_equal(r.recvs, 0);
	for (int k = 0; k < SRQ_CLIENTS; k++)
		assert_int_equal(fx_conn_state(r.c_t[k]), FX_CONN_CONNECTED);

	/* Two receives: two messages land, each in the buffer it took, named by its connection. */
	srq_post(&r, 0, 2);
	srq_poll(&r, 5000, 2);
	srq_poll(&r, 200, -1);
	assert_int_equal(r.recvs, 2);
	for (int i = 0; i < 2; i++)
		seen |= 1u << srq_check_recv(&r, i);
	assert_int_equal(__builtin_popcount(seen), 2);
	assert_int_equal(fx_srq_posted(r.srq), 0);

	/* The third message waited; one more receive and it is there. */
	srq_post(&r, 2, 1);
	srq_poll(&r, 5000, 3);
	assert_int_equal(r.recvs, 3);
	seen |= 1u << srq_check_recv(&r, 2);
	assert_int_equal(seen, (1u << SRQ_CLIENTS) - 1);
	for (uint64_t t0 = xt_now_ms(); r.sends_done < SRQ_CLIENTS && xt_now_ms() - t0 < 5000;)
		srq_poll(&r, 10, -1);
	assert_int_equal(r.sends_done, SRQ_CLIENTS);
	assert_int_equal(r.recvs, 3);

	/* A connection that ends consumes nothing: the receives stay for the others. */
	srq_post(&r, 3, 2);
	assert_int_equal(fx_srq_posted(r.srq), 2);
	fx_conn_close(r.c_i[0]);
	r.c_i[0] = NULL;
	srq_poll(&r, 300, -1);
	assert_int_equal(fx_srq_posted(r.srq), 2);
	assert_int_equal(r.recvs, 3);   /* the failed end had no receive of its own to flush */
	srq_send(&r, 1);
	srq_poll(&r, 5000, 4);
	assert_int_equal(r.recvs, 4);
	assert_int_equal(srq_check_recv(&r, 3), 1);
	assert_int_equal(fx_srq_posted(r.srq), 1);

	for (int k = 0; k < SRQ_CLIENTS; k++) {
		fx_conn_close(r.c_t[k]);
		if (r.c_i[k])
			fx_conn_close(r.c_i[k]);
	}
	srq_poll(&r, 200, -1);
	/* Unused receives are dropped with the SRQ, without completions. */
	assert_int_equal(fx_srq_destroy(r.srq), 0);
	assert_int_equal(fx_dereg_mr(r.tmr), 0);
	assert_int_equal(fx_dereg_mr(r.imr), 0);
	fx_listener_close(r.l);
	assert_int_equal(fx_pd_free(r.pt), 0);
	assert_int_equal(fx_pd_free(r.pi), 0);
	fx_ctx_destroy(r.ci);
	fx_ctx_destroy(r.ct);
	free(r.ibuf);
	free(r.tbuf);
}

/* ------------------------------------------------------------ memory windows */

struct mw_rig {
	struct fx_ctx *ci, *ct;
	struct fx_pd *pi, *pt;
	struct fx_listener *l;
	uint8_t *ibuf, *tbuf;
	struct fx_mr *imr, *tmr;
};

/* One signalled READ/WRITE of @len bytes (local offset 0) through @ci; polls both contexts. */
static enum fx_wc_status mw_op(struct mw_rig *r, struct fx_conn *ci, enum fx_opcode op, uint32_t rkey, uint64_t addr,
			       uint32_t len)
{
	struct fx_sge sge = xt_sge(r->imr, r->ibuf, len);
	struct fx_send_wr wr = { .wr_id = 9, .opcode = op, .flags = FX_WR_SIGNALED, .sg_list = &sge, .num_sge = 1,
				 .remote_addr = addr, .rkey = rkey };
	uint64_t t0 = xt_now_ms();
	struct fx_wc wc;
	int perr = 0;

	assert_int_equal(fx_post_send(ci, &wr, 1, &perr), 1);
	while (xt_now_ms() - t0 < 5000) {
		int n = fx_poll(r->ci, &wc, 1, 0);

		assert_true(n >= 0);
		assert_true(fx_poll(r->ct, NULL, 0, 0) == 0);
		if (n == 1) {
			assert_int_equal(wc.wr_id, 9);
			assert_ptr_equal(wc.conn, ci);
			return wc.status;
		}
	}
	fail_msg("no completion within 5 s");
	return FX_WC_GENERAL_ERR;
}

/* Let the target's queued binds run (over RDMA they are work requests on its QPs). */
static void mw_settle(struct mw_rig *r)
{
	uint64_t t0 = xt_now_ms();

	while (xt_now_ms() - t0 < 100) {
		assert_int_equal(fx_poll(r->ct, NULL, 0, 0), 0);
		assert_int_equal(fx_poll(r->ci, NULL, 0, 1), 0);
	}
}

void xt_check_mw(enum fx_kind kind, const char *host)
{
	static const struct fx_ctx_opts co = { .poll_spin_us = FX_POLL_SPIN_OFF };
	struct mw_rig r;
	struct ferry_err err = { 0 };
	struct fx_conn *a_i, *a_t, *b_i, *b_t, *c_i, *c_t;
	struct fx_mw *wa, *wb, *bad = NULL;
	struct fx_mr *plain;
	uint8_t *expect = malloc(4 * PAGE);

	assert_non_null(expect);
	memset(&r, 0, sizeof(r));
	assert_int_equal(fx_ctx_create(kind, &co, &r.ci, &err), 0);
	assert_int_equal(fx_ctx_create(kind, &co, &r.ct, &err), 0);
	assert_int_equal(fx_pd_alloc(r.ci, &r.pi, &err), 0);
	assert_int_equal(fx_pd_alloc(r.ct, &r.pt, &err), 0);
	r.ibuf = aligned_alloc(PAGE, 4 * PAGE);
	r.tbuf = aligned_alloc(PAGE, 8 * PAGE);
	assert_non_null(r.ibuf);
	assert_non_null(r.tbuf);
	xt_fill_pattern(r.tbuf, 8 * PAGE, 7);
	assert_int_equal(fx_reg_mr(r.pi, r.ibuf, 4 * PAGE, FX_ACCESS_LOCAL_WRITE, &r.imr, &err), 0);
	/* No remote rights of its own: only windows reach it. */
	assert_int_equal(fx_reg_mr(r.pt, r.tbuf, 8 * PAGE, FX_ACCESS_LOCAL_WRITE | FX_ACCESS_MW_BIND, &r.tmr, &err), 0);
	assert_int_equal(fx_reg_mr(r.pt, r.tbuf, PAGE, FX_ACCESS_LOCAL_WRITE, &plain, &err), 0);
	if (fx_listen(r.ct, host, 0, &r.l, &err))
		fail_msg("fx_listen %s: %s", host, err.msg);
	xt_connect_accept(kind, host, r.ci, r.pi, r.l, r.pt, NULL, NULL, &a_i, &a_t);
	xt_connect_accept(kind, host, r.ci, r.pi, r.l, r.pt, NULL, NULL, &b_i, &b_t);
	xt_connect_accept(kind, host, r.ci, r.pi, r.l, r.pt, NULL, NULL, &c_i, &c_t);

	/* Argument rules. */
	assert_int_equal(fx_mw_bind(a_t, r.tmr, r.tbuf, PAGE, 0, &bad, &err), -EINVAL);
	assert_int_equal(fx_mw_bind(a_t, r.tmr, r.tbuf, PAGE, FX_ACCESS_LOCAL_WRITE, &bad, &err), -EINVAL);
	assert_int_equal(fx_mw_bind(a_t, r.tmr, r.tbuf + 7 * PAGE, 2 * PAGE, FX_ACCESS_REMOTE_READ, &bad, &err),
			 -EINVAL);
	assert_int_equal(fx_mw_bind(a_t, plain, r.tbuf, PAGE, FX_ACCESS_REMOTE_READ, &bad, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "FX_ACCESS_MW_BIND"));

	/* A: read-write window over pages 1..2; B: read-only window over page 4. */
	assert_int_equal(fx_mw_bind(a_t, r.tmr, r.tbuf + PAGE, 2 * PAGE,
				    FX_ACCESS_REMOTE_READ | FX_ACCESS_REMOTE_WRITE, &wa, &err), 0);
	assert_int_equal(fx_mw_bind(b_t, r.tmr, r.tbuf + 4 * PAGE, PAGE, FX_ACCESS_REMOTE_READ, &wb, &err), 0);
	assert_int_equal(fx_dereg_mr(r.tmr), -EBUSY);
	mw_settle(&r);

	xt_fill_pattern(r.ibuf, 2 * PAGE, 99);
	assert_int_equal(mw_op(&r, a_i, FX_OP_WRITE, wa->rkey, wa->remote_base, 2 * PAGE), FX_WC_SUCCESS);
	assert_memory_equal(r.tbuf + PAGE, r.ibuf, 2 * PAGE);
	memcpy(expect, r.tbuf + PAGE, 2 * PAGE);
	memcpy(expect + 2 * PAGE, r.tbuf + 4 * PAGE, PAGE);
	memset(r.ibuf, 0, PAGE);
	assert_int_equal(mw_op(&r, b_i, FX_OP_READ, wb->rkey, wb->remote_base, PAGE), FX_WC_SUCCESS);
	assert_memory_equal(r.ibuf, r.tbuf + 4 * PAGE, PAGE);

	/* B's window is read-only: WRITE is a remote access error and page 4 is untouched. */
	xt_fill_pattern(r.ibuf, PAGE, 5);
	assert_int_equal(mw_op(&r, b_i, FX_OP_WRITE, wb->rkey, wb->remote_base, PAGE), FX_WC_REM_ACCESS_ERR);
	/* A's key on C's connection: another connection's window. */
	assert_int_equal(mw_op(&r, c_i, FX_OP_WRITE, wa->rkey, wa->remote_base, PAGE), FX_WC_REM_ACCESS_ERR);
	assert_memory_equal(r.tbuf + PAGE, expect, 2 * PAGE);
	assert_memory_equal(r.tbuf + 4 * PAGE, expect + 2 * PAGE, PAGE);

	/* Unbound: A's own key dies at once, and nothing lands. */
	uint32_t rkey = wa->rkey;
	uint64_t base = wa->remote_base;

	assert_int_equal(fx_mw_unbind(wa), 0);
	assert_int_equal(mw_op(&r, a_i, FX_OP_WRITE, rkey, base, PAGE), FX_WC_REM_ACCESS_ERR);
	assert_memory_equal(r.tbuf + PAGE, expect, 2 * PAGE);

	fx_conn_close(a_i);
	fx_conn_close(b_i);
	fx_conn_close(c_i);
	fx_conn_close(a_t);
	fx_conn_close(b_t);
	fx_conn_close(c_t);
	/*
	 * The window of a closed connection is still ours to free, even once the
	 * connection itself is gone (over RDMA its QP is destroyed meanwhile: the
	 * window must not keep that from happening).
	 */
	for (uint64_t t0 = xt_now_ms(); xt_now_ms() - t0 < 200;) {
		fx_poll(r.ci, NULL, 0, 0);
		fx_poll(r.ct, NULL, 0, 1);
	}
	assert_int_equal(fx_mw_unbind(wb), 0);
	assert_int_equal(fx_dereg_mr(r.tmr), 0);
	assert_int_equal(fx_dereg_mr(plain), 0);
	assert_int_equal(fx_dereg_mr(r.imr), 0);
	fx_listener_close(r.l);
	assert_int_equal(fx_pd_free(r.pt), 0);
	assert_int_equal(fx_pd_free(r.pi), 0);
	fx_ctx_destroy(r.ci);
	fx_ctx_destroy(r.ct);
	free(r.ibuf);
	free(r.tbuf);
	free(expect);
}
