/*
 * RDMA backend: shared receive queues (transport.h, "Shared receive queues").
 *
 * An fx_srq is an ibv_srq in the caller's domain (QPs that use it are in the
 * same domain: transport.c enforces the rule). Posted receives get a slot of
 * the SRQ (wr_id = slot address | 2; connection receives use | 1, send
 * requests 0). A completion from the SRQ is matched to its connection by
 * qp_num, its slot goes back to the free list at once, and it is appended
 * (already done) to the connection's receive ring, so it is reaped, ordered
 * and named (wc.conn) like any receive of that connection. That ring holds
 * only finished receives for an SRQ connection and grows if the application
 * lets more pile up than it has room for (nothing posted points into it).
 *
 * The responder side of an empty SRQ is the NIC's RNR NAK; senders retry
 * forever (RDMA_RNR_RETRY 7), bounded only by their op_timeout_ms.
 * A QP in the error state leaves unconsumed SRQ receives where they are
 * (no flush), as verbs specify. ibv_destroy_srq fails while a QP still uses
 * the SRQ, and a closed connection keeps its QP until its flushes are
 * reaped, so a destroyed SRQ may wait on ctx->dead_srqs like a domain does.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/transport/rdma/rdma.h"

int rdma_srq_create(struct fx_pd *pd, uint32_t depth, struct fx_srq **out, struct ferry_err *err)
{
	struct rdma_ctx *ctx = rdma_ctx_of(pd->ctx);
	struct rdma_srq *q = calloc(1, sizeof(*q));
	struct ibv_srq_init_attr attr;
	int rc;

	if (!q)
		return ferry_err_set(err, ENOMEM, "rdma: shared receive queue: out of memory");
	fx_list_init(&q->l_dead);
	q->slots = calloc(depth, sizeof(*q->slots));
	if (!q->slots) {
		free(q);
		return ferry_err_set(err, ENOMEM, "rdma: shared receive queue of %u: out of memory", depth);
	}
	for (uint32_t i = 0; i < depth; i++) {
		q->slots[i].srq = q;
		q->slots[i].next_free = i + 1 < depth ? &q->slots[i + 1] : NULL;
	}
	q->free = &q->slots[0];
	/* Its completions land in the context's CQ, through whichever QP took them. */
	rc = rdma_cq_reserve(ctx, (int)depth, err);
	if (rc) {
		free(q->slots);
		free(q);
		return rc;
	}
	memset(&attr, 0, sizeof(attr));
	attr.srq_context = q;
	attr.attr.max_wr = depth;
	attr.attr.max_sge = FX_MAX_SGE;
	q->srq = ibv_create_srq(((struct rdma_pd *)(void *)pd)->pd, &attr);
	if (!q->srq) {
		int e = errno ? errno : EIO;

		free(q->slots);
		free(q);
		return ferry_err_set(err, e, "rdma: cannot create a shared receive queue (%u receives, %d sge) on %s: %s",
				     depth, FX_MAX_SGE, ctx->devname, strerror(e));
	}
	ctx->cq_reserved += (int)depth;
	q->ctx = ctx;
	q->base.ctx = pd->ctx;
	q->base.pd = pd;
	q->base.depth = depth;
	*out = &q->base;
	return 0;
}

static bool srq_free_now(struct rdma_srq *q)
{
	if (ibv_destroy_srq(q->srq) != 0)
		return false;
	q->ctx->cq_reserved -= (int)q->base.depth;
	free(q->slots);
	free(q);
	return true;
}

void rdma_srq_destroy(struct fx_srq *b)
{
	struct rdma_srq *q = rdma_srq_of(b);

	if (!srq_free_now(q))
		fx_list_add_tail(&q->ctx->dead_srqs, &q->l_dead);   /* QPs of closed connections still on it */
}

void rdma_reap_dead_srqs(struct rdma_ctx *ctx, bool force)
{
	struct fx_link *l, *nx;

	for (l = ctx->dead_srqs.next; l != &ctx->dead_srqs; l = nx) {
		struct rdma_srq *q = fx_container_of(l, struct rdma_srq, l_dead);

		nx = l->next;
		fx_list_del(&q->l_dead);
		if (!srq_free_now(q)) {
			if (force) {
				free(q->slots);
				free(q);
			} else {
				fx_list_add_tail(nx, &q->l_dead);   /* back where it was */
			}
		}
	}
}

int rdma_post_srq_recv(struct fx_srq *b, const struct fx_recv_wr *wr, int n, int *post_err)
{
	struct rdma_srq *q = rdma_srq_of(b);
	struct fx_ctx_stats *st = &q->ctx->base.stats;
	struct ibv_recv_wr rw;
	struct ibv_sge sg[FX_MAX_SGE];
	int i, perr = 0;

	for (i = 0; i < n; i++) {
		const struct fx_recv_wr *w = &wr[i];
		struct rdma_srq_slot *s = q->free;
		struct ibv_recv_wr *bad = NULL;

		if (!s) {
			perr = -EAGAIN;
			st->backpressure_events++;
			break;
		}
		if (w->num_sge < 1 || w->num_sge > FX_MAX_SGE || !w->sg_list) {
			perr = -EINVAL;
			break;
		}
		for (int j = 0; j < w->num_sge; j++)
			sg[j] = (struct ibv_sge){ .addr = (uintptr_t)w->sg_list[j].addr, .length = w->sg_list[j].length,
						  .lkey = w->sg_list[j].lkey };
		rw = (struct ibv_recv_wr){ .wr_id = (uint64_t)(uintptr_t)s | 2u, .sg_list = sg, .num_sge = w->num_sge };
		int rc = ibv_post_srq_recv(q->srq, &rw, &bad);

		if (rc) {
			LOG_ERR("rdma: ibv_post_srq_recv failed: %s", strerror(rc));
			perr = -rc;
			break;
		}
		q->free = s->next_free;
		s->next_free = NULL;
		s->wr_id = w->wr_id;
		b->posted++;
	}
	st->ops_posted += (uint64_t)i;
	if (post_err)
		*post_err = i < n ? perr : 0;
	return i;
}

/* Make room for one more finished receive in @c's ring (SRQ connections only: nothing points into it). */
static int ring_grow(struct rdma_conn *c)
{
	uint32_t cap = c->rcv_mask + 1, ncap = cap * 2;
	struct rdma_rwr *nr = calloc(ncap, sizeof(*nr));

	if (!nr)
		return -ENOMEM;
	for (uint64_t s = c->rcv_tail; s != c->rcv_head; s++)
		nr[s & (ncap - 1)] = c->rcv[s & c->rcv_mask];
	free(c->rcv);
	c->rcv = nr;
	c->rcv_mask = ncap - 1;
	return 0;
}

struct rdma_conn *rdma_srq_on_cqe(struct rdma_ctx *ctx, const struct ibv_wc *wc, enum fx_wc_status st)
{
	struct rdma_srq_slot *s = (struct rdma_srq_slot *)(uintptr_t)(wc->wr_id & ~(uint64_t)3);
	struct rdma_srq *q = s->srq;
	struct rdma_conn *c = NULL;
	uint64_t wr_id = s->wr_id;

	s->next_free = q->free;
	q->free = s;
	q->base.posted--;
	for (struct fx_link *l = ctx->conns.next; l != &ctx->conns; l = l->next) {
		struct rdma_conn *k = fx_container_of(l, struct rdma_conn, l_all);

		if (k->qp && k->qp->qp_num == wc->qp_num) {
			c = k;
			break;
		}
	}
	if (!c || (c->rcv_head - c->rcv_tail > c->rcv_mask && ring_grow(c) != 0)) {
		/* Its connection was closed (and freed) before the CQE was polled, or no memory. */
		LOG_INFO("rdma: shared receive (wr_id %llu) completed on qp %u of a connection already closed: dropped",
			(unsigned long long)wr_id, wc->qp_num);
		ctx->base.stats.ops_failed++;
		return NULL;
	}

	struct rdma_rwr *r = rdma_rcv_slot(c, c->rcv_head);

	r->conn = c;
	r->wr_id = wr_id;
	r->byte_len = wc->byte_len;
	r->status = (uint8_t)st;
	r->done = 1;
	c->rcv_head++;
	if (st == FX_WC_SUCCESS)
		ctx->base.stats.ops_completed++;
	else
		ctx->base.stats.ops_failed++;
	rdma_mark_ready(c);
	return c;
}
