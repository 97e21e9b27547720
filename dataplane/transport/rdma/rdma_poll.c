/*
 * RDMA backend: fx_poll. Completions are taken from the context's CQ into the
 * connections' send/receive rings (on_cqe), reaped per connection in posting
 * order, unsignalled successes retired silently; operation deadlines are
 * checked here; the CM channel, async fd and completion channel are looked at
 * through the context's epoll fd (which is fx_ctx_fd()).
 */
#include <errno.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/transport/rdma/rdma.h"

/* ------------------------------------------------------------------ completions */

static enum fx_wc_status map_status(enum ibv_wc_status st)
{
	switch (st) {
	case IBV_WC_SUCCESS: return FX_WC_SUCCESS;
	case IBV_WC_LOC_LEN_ERR: return FX_WC_LOC_LEN_ERR;
	case IBV_WC_LOC_PROT_ERR:
	case IBV_WC_LOC_ACCESS_ERR:
	case IBV_WC_MW_BIND_ERR: return FX_WC_LOC_PROT_ERR;
	case IBV_WC_REM_ACCESS_ERR: return FX_WC_REM_ACCESS_ERR;
	case IBV_WC_REM_INV_REQ_ERR:
	case IBV_WC_REM_INV_RD_REQ_ERR: return FX_WC_REM_INV_REQ_ERR;
	case IBV_WC_REM_OP_ERR:
	case IBV_WC_BAD_RESP_ERR:
	case IBV_WC_REM_ABORT_ERR: return FX_WC_REM_OP_ERR;
	case IBV_WC_RETRY_EXC_ERR:
	case IBV_WC_RNR_RETRY_EXC_ERR:
	case IBV_WC_RESP_TIMEOUT_ERR: return FX_WC_RETRY_EXC_ERR;
	case IBV_WC_WR_FLUSH_ERR: return FX_WC_FLUSH_ERR;
	default: return FX_WC_GENERAL_ERR;
	}
}

static void slot_done(struct rdma_conn *c, struct rdma_swr *s, enum fx_wc_status st)
{
	struct fx_ctx_stats *stats = &c->ctx->base.stats;

	s->done = 1;
	s->status = (uint8_t)st;
	if (st != FX_WC_SUCCESS) {
		stats->ops_failed++;
		return;
	}
	stats->ops_completed++;
	if (s->opcode == FX_OP_READ)
		stats->bytes_read += s->byte_len;
	else if (s->opcode == FX_OP_WRITE)
		stats->bytes_written += s->byte_len;
}

static void fail_from_cqe(struct rdma_conn *c, const struct ibv_wc *wc, enum fx_wc_status st, bool recv,
			  uint64_t wr_id)
{
	if (c->base.state != FX_CONN_CONNECTED)
		return;
	if (st == FX_WC_FLUSH_ERR)
		rdma_conn_fail(c, 0, "queue pair to %s entered the error state (peer refused a request, or the "
			       "connection was lost)", c->base.peer);
	else
		rdma_conn_fail(c, 0, "%s (wr_id %llu) to %s failed: %s (%s, vendor error 0x%x)",
			       recv ? "receive" : "request", (unsigned long long)wr_id, c->base.peer,
			       fx_wc_status_str(st), ibv_wc_status_str(wc->status), wc->vendor_err);
}

static void on_cqe(struct rdma_ctx *ctx, const struct ibv_wc *wc)
{
	enum fx_wc_status st = map_status(wc->status);

	if (wc->wr_id & 2) {
		if (wc->status == IBV_WC_LOC_QP_OP_ERR)
			st = FX_WC_LOC_LEN_ERR;
		struct rdma_conn *c = rdma_srq_on_cqe(ctx, wc, st);

		if (c && st != FX_WC_SUCCESS)
			fail_from_cqe(c, wc, st, true, wc->wr_id);
		return;
	}
	if (wc->wr_id & 1) {
		struct rdma_rwr *r = (struct rdma_rwr *)(uintptr_t)(wc->wr_id & ~(uint64_t)1);
		struct rdma_conn *c = r->conn;

		/* rxe reports a message longer than the receive as LOC_QP_OP_ERR (mlx5: LOC_LEN_ERR). */
		if (wc->status == IBV_WC_LOC_QP_OP_ERR)
			st = FX_WC_LOC_LEN_ERR;

		r->done = 1;
		r->status = (uint8_t)st;
		r->byte_len = wc->byte_len;
		if (st == FX_WC_SUCCESS) {
			ctx->base.stats.ops_completed++;
		} else {
			ctx->base.stats.ops_failed++;
			fail_from_cqe(c, wc, st, true, r->wr_id);
		}
		rdma_mark_ready(c);
		return;
	}

	struct rdma_swr *s = (struct rdma_swr *)(uintptr_t)wc->wr_id;
	struct rdma_conn *c = s->conn;
	uint64_t seq = s->seq;

	/* Everything before it completed successfully (RC order), signalled or not. */
	for (uint64_t q = c->sq_hw; q != seq; q++) {
		struct rdma_swr *e = rdma_sq_slot(c, q);

		if (!e->done)
			slot_done(c, e, FX_WC_SUCCESS);
	}
	c->sq_hw = seq + 1;
	if (st == FX_WC_FLUSH_ERR && c->override) {
		st = (enum fx_wc_status)c->override;
		c->override = 0;
	} else if (st != FX_WC_SUCCESS) {
		c->override = 0;
	}
	if (!s->done)
		slot_done(c, s, st);
	if (st != FX_WC_SUCCESS)
		fail_from_cqe(c, wc, st, false, s->wr_id);
	rdma_mark_ready(c);
}

/* Take every completion out of the CQ into the rings. */
static void drain_cq(struct rdma_ctx *ctx)
{
	struct ibv_wc wc[RDMA_CQ_BATCH];
	int n;

	do {
		n = ibv_poll_cq(ctx->cq, RDMA_CQ_BATCH, wc);
		if (n < 0) {
			LOG_ERR("rdma: ibv_poll_cq failed (%d)", n);
			return;
		}
		for (int i = 0; i < n; i++)
			on_cqe(ctx, &wc[i]);
	} while (n == RDMA_CQ_BATCH);
}

void rdma_drain_comp_channel(struct rdma_ctx *ctx)
{
	struct ibv_cq *cq;
	void *cq_ctx;
	unsigned n = 0;

	while (ibv_get_cq_event(ctx->cch, &cq, &cq_ctx) == 0)
		n++;
	if (n) {
		ibv_ack_cq_events(ctx->cq, n);
		ctx->armed = false;
	}
}

/* Arm the CQ; completions that raced in before the arm are taken now. */
static void arm_cq(struct rdma_ctx *ctx)
{
	if (ctx->armed)
		return;
	if (ibv_req_notify_cq(ctx->cq, 0) == 0)
		ctx->armed = true;
	drain_cq(ctx);
}

/* ------------------------------------------------------------------ reaping */

static int reap_conn(struct rdma_conn *c, struct fx_wc *wc, int max)
{
	int n = 0;

	while (n < max && c->sq_tail != c->sq_head) {
		struct rdma_swr *s = rdma_sq_slot(c, c->sq_tail);

		if (!s->done)
			break;
		/* Internal binds are never reported: a failed one failed the connection. */
		if (s->opcode != RDMA_OP_BIND && (s->signaled || s->status != FX_WC_SUCCESS)) {
			struct fx_wc *w = &wc[n++];

			w->wr_id = s->wr_id;
			w->conn = &c->base;
			w->status = (enum fx_wc_status)s->status;
			w->byte_len = s->status == FX_WC_SUCCESS ? s->byte_len : 0;
			w->opcode = s->opcode == FX_OP_READ ? FX_WC_READ :
				    s->opcode == FX_OP_WRITE ? FX_WC_WRITE : FX_WC_SEND;
		}
		c->sq_tail++;
	}
	while (n < max && c->rcv_tail != c->rcv_head) {
		struct rdma_rwr *r = rdma_rcv_slot(c, c->rcv_tail);

		if (!r->done)
			break;
		struct fx_wc *w = &wc[n++];

		w->wr_id = r->wr_id;
		w->conn = &c->base;
		w->status = (enum fx_wc_status)r->status;
		w->byte_len = r->status == FX_WC_SUCCESS ? r->byte_len : 0;
		w->opcode = FX_WC_RECV;
		c->rcv_tail++;
	}
	return n;
}

static int reap(struct rdma_ctx *ctx, struct fx_wc *wc, int max)
{
	int n = 0;

	while (n < max && !fx_list_empty(&ctx->ready)) {
		struct rdma_conn *c = fx_container_of(ctx->ready.next, struct rdma_conn, l_ready);

		n += reap_conn(c, wc + n, max - n);
		while (c->sq_tail != c->sq_head) {
			struct rdma_swr *s = rdma_sq_slot(c, c->sq_tail);

			if (!s->done || (s->opcode != RDMA_OP_BIND && (s->signaled || s->status != FX_WC_SUCCESS)))
				break;
			c->sq_tail++;
		}
		fx_list_del(&c->l_ready);
		c->on_ready = false;
		if (rdma_conn_has_completion(c)) {
			c->on_ready = true;
			fx_list_add_tail(&ctx->ready, &c->l_ready);
			break;
		}
		rdma_conn_maybe_free(c);
	}
	return n;
}

/* ------------------------------------------------------------------ async events, timeouts */

static void check_timeouts(struct rdma_ctx *ctx, uint64_t now)
{
	uint64_t next = UINT64_MAX;
	struct fx_link *l, *nx;

	for (l = ctx->conns.next; l != &ctx->conns; l = nx) {
		struct rdma_conn *c = fx_container_of(l, struct rdma_conn, l_all);
		int ev;

		nx = l->next;
		if (c->base.state != FX_CONN_CONNECTED)
			continue;
		ev = __atomic_exchange_n(&c->async_pending, 0, __ATOMIC_ACQUIRE);
		if (ev) {
			rdma_conn_fail(c, FX_WC_REM_OP_ERR, "queue pair to %s failed: %s", c->base.peer,
				       ibv_event_type_str((enum ibv_event_type)ev));
			continue;
		}
		if (c->sq_hw == c->sq_head)
			continue;
		uint64_t dl = rdma_sq_slot(c, c->sq_hw)->post_ns + ctx->op_timeout_ns;

		if (now >= dl) {
			rdma_conn_fail(c, FX_WC_RETRY_EXC_ERR, "operation timed out after %u ms (peer %s not responding)",
				       ctx->base.opts.op_timeout_ms, c->base.peer);
			continue;
		}
		if (dl < next)
			next = dl;
	}
	ctx->next_check_ns = next;
}

/* ------------------------------------------------------------------ fx_poll */

static void handle_ready(struct rdma_ctx *ctx, const struct epoll_event *ev, int n)
{
	for (int i = 0; i < n; i++) {
		switch (ev[i].data.u32) {
		case RDMA_EV_COMP:
			rdma_drain_comp_channel(ctx);
			drain_cq(ctx);
			break;
		case RDMA_EV_CM:
			rdma_handle_cm_events(ctx);
			break;
		case RDMA_EV_ASYNC:
			rdma_handle_async(ctx);
			break;
		default:
			break;     /* the eventfd: drained at the start of fx_poll */
		}
	}
}

/*
 * The CM channel, the async fd and the completion channel are looked at with
 * one epoll_wait(0) at most every RDMA_EVCHECK_NS while spinning (each look
 * is a system call; the CQ itself is polled in user space every round).
 */
static void check_events(struct rdma_ctx *ctx, uint64_t now)
{
	struct epoll_event ev[4];
	int n = epoll_wait(ctx->epfd, ev, 4, 0);

	ctx->next_evcheck_ns = now + RDMA_EVCHECK_NS;
	handle_ready(ctx, ev, n);
}

int rdma_poll(struct fx_ctx *b, struct fx_wc *wc, int max, int timeout_ms)
{
	struct rdma_ctx *ctx = rdma_ctx_of(b);
	uint64_t start = ferry_mono_ns(), now;
	uint64_t user_deadline = timeout_ms > 0 ? start + (uint64_t)timeout_ms * 1000000ull : UINT64_MAX;
	uint64_t spin_end = start + (uint64_t)ctx->base.opts.poll_spin_us * 1000ull;
	int n = 0;

	ctx->in_poll = true;
	rdma_free_zombies(ctx);
	if (ctx->kicked) {
		uint64_t v;

		if (read(ctx->evfd, &v, sizeof(v)) < 0) {
			/* EAGAIN: nothing to drain */
		}
		ctx->kicked = false;
	}
	for (;;) {
		drain_cq(ctx);
		now = ferry_mono_ns();
		if (now >= ctx->next_evcheck_ns)
			check_events(ctx, now);
		if (now >= ctx->next_check_ns)
			check_timeouts(ctx, now);
		if (max > n)
			n += reap(ctx, wc + n, max - n);
		if (n > 0 || timeout_ms == 0 || max == 0)
			break;
		if (now >= user_deadline)
			break;
		if (now < spin_end)
			continue;
		arm_cq(ctx);
		if (!fx_list_empty(&ctx->ready))
			continue;

		uint64_t until = user_deadline < ctx->next_check_ns ? user_deadline : ctx->next_check_ns;
		int wait_ms;

		if (until == UINT64_MAX) {
			wait_ms = -1;
		} else {
			uint64_t d = until > now ? until - now : 0;

			wait_ms = (int)((d + 999999) / 1000000);
			if (wait_ms == 0)
				wait_ms = 1;
		}
		struct epoll_event ev[4];
		int k = epoll_wait(ctx->epfd, ev, 4, wait_ms);

		now = ferry_mono_ns();
		ctx->next_evcheck_ns = now + RDMA_EVCHECK_NS;
		handle_ready(ctx, ev, k);
	}
	/* Event-mode callers (fx_ctx_fd was asked for) need the CQ armed when they sleep. */
	if (ctx->event_mode)
		arm_cq(ctx);
	ctx->in_poll = false;
	if (!fx_list_empty(&ctx->ready))
		rdma_kick(ctx);
	return n;
}

int rdma_ctx_fd(const struct fx_ctx *b)
{
	/* The caller will sleep on the fd: from now on the CQ stays armed between polls. */
	struct rdma_ctx *ctx = (struct rdma_ctx *)(uintptr_t)b;

	if (!ctx->event_mode) {
		ctx->event_mode = true;
		if (!ctx->in_poll) {
			arm_cq(ctx);
			if (!fx_list_empty(&ctx->ready))
				rdma_kick(ctx);
		}
	}
	return ctx->epfd;
}
