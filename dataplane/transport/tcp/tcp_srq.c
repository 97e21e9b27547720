/*
 * TCP backend: shared receive queues (transport.h, "Shared receive queues").
 *
 * An SRQ is a FIFO ring of posted receives. A connection opened with it has
 * no receives of its own: when a control message's header arrives and the
 * connection has no receive in hand, it *takes* the oldest receive of the
 * SRQ into its own receive ring (tcp_srq_take) and the message lands there
 * exactly as in a receive posted to the connection, so completion order,
 * flushes and reaping are the connection's usual ones and fx_wc.conn names
 * it. A taken receive belongs to that connection from then on: if the
 * connection fails before the message is complete, that receive completes
 * with an error there, as a WQE being filled does on a failing QP.
 *
 * RNR: with the SRQ empty the connection stops reading and waits on the
 * SRQ's waiter list (FIFO); fx_post_srq_recv wakes the first waiter, and a
 * waiter that took a receive wakes the next if more are posted. Only the
 * first waiter may take while others wait, so a connection that has waited
 * longest is served first and a busy one cannot overtake it. A connection
 * whose own ring is full (the application has not reaped its receives) also
 * stops, and is woken when the application reaps one.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/transport/tcp/tcp.h"

static uint32_t pow2_at_least(uint32_t v)
{
	uint32_t p = 1;

	while (p < v)
		p <<= 1;
	return p;
}

int tcp_srq_create(struct fx_pd *pd, uint32_t depth, struct fx_srq **out, struct ferry_err *err)
{
	struct tcp_srq *q = calloc(1, sizeof(*q));
	uint32_t cap = pow2_at_least(depth);

	if (!q)
		return ferry_err_set(err, ENOMEM, "shared receive queue: out of memory");
	q->slots = calloc(cap, sizeof(*q->slots));
	if (!q->slots) {
		free(q);
		return ferry_err_set(err, ENOMEM, "shared receive queue of %u: out of memory", depth);
	}
	q->mask = cap - 1;
	q->base.ctx = pd->ctx;
	q->base.pd = pd;
	q->base.depth = depth;
	fx_list_init(&q->waiters);
	*out = &q->base;
	return 0;
}

void tcp_srq_destroy(struct fx_srq *srq)
{
	struct tcp_srq *q = tcp_srq_of(srq);

	/* No open connection uses it (transport.c); closed ones left the waiter list in flush_queues. */
	while (!fx_list_empty(&q->waiters))
		fx_list_del(q->waiters.next);
	free(q->slots);
	free(q);
}

/* Let the first waiter try again. */
static void wake_first(struct tcp_srq *q)
{
	if (fx_list_empty(&q->waiters) || q->tail == q->head)
		return;
	struct tcp_conn *c = fx_container_of(q->waiters.next, struct tcp_conn, l_srq);

	if (c->in.blocked == BLK_RECV && c->base.state == FX_CONN_CONNECTED) {
		c->in.blocked = BLK_NONE;
		tcp_mark_work(c);
	}
}

int tcp_post_srq_recv(struct fx_srq *srq, const struct fx_recv_wr *wr, int n, int *post_err)
{
	struct tcp_srq *q = tcp_srq_of(srq);
	struct tcp_ctx *ctx = tcp_ctx_of(srq->ctx);
	int i, perr = 0;

	for (i = 0; i < n; i++) {
		const struct fx_recv_wr *w = &wr[i];
		uint64_t cap = 0;
		bool ok = true;

		if (q->head - q->tail >= srq->depth) {
			perr = -EAGAIN;
			ctx->base.stats.backpressure_events++;
			break;
		}
		if (w->num_sge < 1 || w->num_sge > FX_MAX_SGE || !w->sg_list) {
			perr = -EINVAL;
			break;
		}
		for (int k = 0; k < w->num_sge; k++) {
			cap += w->sg_list[k].length;
			ok = ok && tcp_sge_ok(ctx, srq->pd, &w->sg_list[k], FX_ACCESS_LOCAL_WRITE);
		}
		/* Refused at post time: an SRQ has no connection to fail for it. */
		if (!ok || cap > UINT32_MAX) {
			perr = -EINVAL;
			break;
		}

		tcp_rwr_post(&q->slots[q->head & q->mask], w, (uint32_t)cap);
		q->head++;
	}
	srq->posted = (uint32_t)(q->head - q->tail);
	ctx->base.stats.ops_posted += (uint64_t)i;
	if (i > 0)
		wake_first(q);
	if (post_err)
		*post_err = i < n ? perr : 0;
	return i;
}

int tcp_srq_take(struct tcp_conn *c)
{
	struct tcp_srq *q = tcp_srq_of(c->base.opts.srq);
	bool waiting = c->l_srq.next != &c->l_srq;

	if (c->rcv_head - c->rcv_tail > c->rcv_mask)
		return 0;   /* our ring is full of unreaped receives: woken by the reap */
	if (q->tail == q->head || (!fx_list_empty(&q->waiters) && q->waiters.next != &c->l_srq)) {
		if (!waiting)
			fx_list_add_tail(&q->waiters, &c->l_srq);
		return 0;
	}
	fx_list_del(&c->l_srq);

	struct tcp_rwr *r = tcp_rcv_slot(c, c->rcv_head);

	*r = q->slots[q->tail & q->mask];
	q->tail++;
	q->base.posted = (uint32_t)(q->head - q->tail);
	c->rcv_head++;
	/* The buffer may have been deregistered since it was posted: verbs says local protection error. */
	for (int k = 0; k < r->num_sge; k++) {
		if (!tcp_sge_ok(c->ctx, q->base.pd, &r->sge[k], FX_ACCESS_LOCAL_WRITE)) {
			r->done = 1;
			r->status = FX_WC_LOC_PROT_ERR;
			c->rcv_next++;
			c->ctx->base.stats.ops_failed++;
			tcp_conn_fail(c, FX_WC_FLUSH_ERR, false,
				      "local protection error: shared receive (wr_id %llu) is no longer inside a "
				      "registered region", (unsigned long long)r->wr_id);
			wake_first(q);
			return -1;
		}
	}
	wake_first(q);
	return 1;
}

void tcp_srq_forget(struct tcp_conn *c)
{
	fx_list_del(&c->l_srq);
}
