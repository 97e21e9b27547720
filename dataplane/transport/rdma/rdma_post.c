/*
 * RDMA backend: posting. One fx_post_send batch is one chain of ibv_send_wr
 * and one ibv_post_send; receives likewise (in chunks) with ibv_post_recv.
 *
 * Checks at post time (-EINVAL, nothing posted from there on): opcode,
 * flags, sge count, lengths (READ/WRITE: 1 byte .. FERRY_PAGE_MAX_DATA, the
 * TCP backend's limit, so code works on both), inline size. Local keys and
 * ranges are the NIC's business: a bad lkey completes with
 * FX_WC_LOC_PROT_ERR and fails the connection, as on TCP.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/transport/rdma/rdma.h"
#include "proto/page.h"

static int check_wr(const struct rdma_conn *c, const struct fx_send_wr *w, uint32_t *len, bool *inl)
{
	uint64_t total = 0;

	if (w->flags & ~(unsigned)(FX_WR_SIGNALED | FX_WR_INLINE))
		return -EINVAL;
	if (w->num_sge < 0 || w->num_sge > FX_MAX_SGE || (w->num_sge > 0 && !w->sg_list))
		return -EINVAL;
	for (int i = 0; i < w->num_sge; i++)
		total += w->sg_list[i].length;
	switch (w->opcode) {
	case FX_OP_READ:
	case FX_OP_WRITE:
		if (w->num_sge < 1 || total == 0 || total > FERRY_PAGE_MAX_DATA ||
		    w->remote_addr + total < w->remote_addr)
			return -EINVAL;
		*inl = w->opcode == FX_OP_WRITE && (w->flags & FX_WR_INLINE);
		break;
	case FX_OP_SEND:
		if (total > UINT32_MAX / 2)
			return -EINVAL;
		*inl = (w->flags & FX_WR_INLINE) != 0;
		break;
	default:
		return -EINVAL;
	}
	if (*inl && total > c->base.opts.max_inline)
		return -EINVAL;
	*len = (uint32_t)total;
	return 0;
}

int rdma_post_send(struct fx_conn *conn, const struct fx_send_wr *wr, int n, int *post_err)
{
	struct rdma_conn *c = rdma_conn_of(conn);
	struct rdma_ctx *ctx = c->ctx;
	struct fx_ctx_stats *st = &ctx->base.stats;
	uint32_t room;
	uint64_t now;
	int i, perr = 0;
	size_t nsge = 0;

	if (c->base.state != FX_CONN_CONNECTED) {
		if (post_err)
			*post_err = -ENOTCONN;
		return 0;
	}
	room = c->base.opts.max_send_wr - (uint32_t)(c->sq_head - c->sq_tail);
	now = ferry_mono_ns();
	for (i = 0; i < n; i++) {
		const struct fx_send_wr *w = &wr[i];
		struct ibv_send_wr *h = &ctx->swr[i];
		uint64_t seq = c->sq_head + (uint64_t)i;
		struct rdma_swr *s = rdma_sq_slot(c, seq);
		uint32_t len = 0;
		bool inl = false;
		int rc;

		if ((uint32_t)i >= room) {
			perr = -EAGAIN;
			break;
		}
		rc = check_wr(c, w, &len, &inl);
		if (rc) {
			perr = rc;
			break;
		}
		memset(h, 0, sizeof(*h));
		h->wr_id = (uint64_t)(uintptr_t)s;
		h->sg_list = &ctx->ssge[nsge];
		if (inl && len > c->hw_inline) {
			/* Longer than the QP inlines: copy into the slot's registered bounce buffer. */
			uint8_t *dst = c->bounce + (size_t)(seq & c->sq_mask) * c->base.opts.max_inline;
			uint8_t *p = dst;

			for (int k = 0; k < w->num_sge; k++) {
				memcpy(p, w->sg_list[k].addr, w->sg_list[k].length);
				p += w->sg_list[k].length;
			}
			ctx->ssge[nsge] = (struct ibv_sge){ .addr = (uintptr_t)dst, .length = len,
							    .lkey = c->bounce_mr->lkey };
			h->num_sge = len ? 1 : 0;
			nsge += (size_t)h->num_sge;
		} else {
			for (int k = 0; k < w->num_sge; k++)
				ctx->ssge[nsge + (size_t)k] = (struct ibv_sge){ .addr = (uintptr_t)w->sg_list[k].addr,
										.length = w->sg_list[k].length,
										.lkey = w->sg_list[k].lkey };
			h->num_sge = w->num_sge;
			nsge += (size_t)w->num_sge;
			if (inl)
				h->send_flags |= IBV_SEND_INLINE;
		}
		switch (w->opcode) {
		case FX_OP_READ:
			h->opcode = IBV_WR_RDMA_READ;
			break;
		case FX_OP_WRITE:
			h->opcode = IBV_WR_RDMA_WRITE;
			break;
		default:
			h->opcode = IBV_WR_SEND;
			break;
		}
		if (w->opcode != FX_OP_SEND) {
			h->wr.rdma.remote_addr = w->remote_addr;
			h->wr.rdma.rkey = w->rkey;
		}
		if ((w->flags & FX_WR_SIGNALED) || seq + 1 - c->last_hw_sig >= c->sig_every) {
			h->send_flags |= IBV_SEND_SIGNALED;
			c->last_hw_sig = seq + 1;
		}
		h->next = h + 1;
		s->seq = seq;
		s->wr_id = w->wr_id;
		s->post_ns = now;
		s->byte_len = len;
		s->opcode = (uint8_t)w->opcode;
		s->signaled = (w->flags & FX_WR_SIGNALED) != 0;
		s->done = 0;
		s->status = FX_WC_SUCCESS;
	}
	if (perr == -EAGAIN)
		st->backpressure_events++;
	if (i > 0) {
		struct ibv_send_wr *bad = NULL;
		int rc;

		/* The last of a batch is always signalled: nothing stays unretired. */
		ctx->swr[i - 1].send_flags |= IBV_SEND_SIGNALED;
		ctx->swr[i - 1].next = NULL;
		c->last_hw_sig = c->sq_head + (uint64_t)i;
		rc = ibv_post_send(c->qp, ctx->swr, &bad);
		if (rc) {
			int posted = bad ? (int)(bad - ctx->swr) : 0;

			LOG_ERR("rdma: ibv_post_send to %s refused request %d of %d: %s", c->base.peer, posted, i,
				strerror(rc));
			c->sq_head += (uint64_t)posted;
			st->ops_posted += (uint64_t)posted;
			if (posted > 0)
				rdma_arm_timer(ctx, now + ctx->op_timeout_ns);
			rdma_conn_fail(c, FX_WC_GENERAL_ERR, "ibv_post_send failed: %s", strerror(rc));
			if (post_err)
				*post_err = -ENOTCONN;
			return posted;
		}
		c->sq_head += (uint64_t)i;
		st->ops_posted += (uint64_t)i;
		rdma_arm_timer(ctx, now + ctx->op_timeout_ns);
	}
	if (post_err)
		*post_err = i < n ? perr : 0;
	return i;
}

int rdma_post_recv(struct fx_conn *conn, const struct fx_recv_wr *wr, int n, int *post_err)
{
	struct rdma_conn *c = rdma_conn_of(conn);
	struct fx_ctx_stats *st = &c->ctx->base.stats;
	struct ibv_recv_wr rw[32];
	struct ibv_sge sg[32 * FX_MAX_SGE];
	int i = 0, perr = 0;

	while (i < n && perr == 0) {
		int k = 0;
		size_t nsge = 0;

		for (; k < 32 && i + k < n; k++) {
			const struct fx_recv_wr *w = &wr[i + k];
			uint64_t seq = c->rcv_head + (uint64_t)k;

			if (c->base.state != FX_CONN_CONNECTED) {
				perr = -ENOTCONN;
				break;
			}
			if (seq - c->rcv_tail >= c->base.opts.max_recv_wr) {
				perr = -EAGAIN;
				st->backpressure_events++;
				break;
			}
			if (w->num_sge < 1 || w->num_sge > FX_MAX_SGE || !w->sg_list) {
				perr = -EINVAL;
				break;
			}
			struct rdma_rwr *r = rdma_rcv_slot(c, seq);

			r->wr_id = w->wr_id;
			r->done = 0;
			r->status = FX_WC_SUCCESS;
			r->byte_len = 0;
			for (int j = 0; j < w->num_sge; j++)
				sg[nsge + (size_t)j] = (struct ibv_sge){ .addr = (uintptr_t)w->sg_list[j].addr,
									 .length = w->sg_list[j].length,
									 .lkey = w->sg_list[j].lkey };
			rw[k] = (struct ibv_recv_wr){ .wr_id = (uint64_t)(uintptr_t)r | 1u, .sg_list = &sg[nsge],
						      .num_sge = w->num_sge, .next = &rw[k + 1] };
			nsge += (size_t)w->num_sge;
		}
		if (k == 0)
			break;
		rw[k - 1].next = NULL;

		struct ibv_recv_wr *bad = NULL;
		int rc = ibv_post_recv(c->qp, rw, &bad);

		if (rc) {
			int posted = bad ? (int)(bad - rw) : 0;

			c->rcv_head += (uint64_t)posted;
			i += posted;
			st->ops_posted += (uint64_t)posted;
			LOG_ERR("rdma: ibv_post_recv on %s failed: %s", c->base.peer, strerror(rc));
			rdma_conn_fail(c, FX_WC_GENERAL_ERR, "ibv_post_recv failed: %s", strerror(rc));
			perr = -ENOTCONN;
			break;
		}
		c->rcv_head += (uint64_t)k;
		i += k;
		st->ops_posted += (uint64_t)k;
	}
	if (post_err)
		*post_err = i < n ? perr : 0;
	return i;
}

/* ------------------------------------------------------------------ memory windows */

/*
 * A type-2 window bound with IBV_WR_BIND_MW through the connection's own send
 * ring (an internal slot, RDMA_OP_BIND, never reported): requests posted
 * after it run after it, so a SEND carrying the new rkey leaves once the
 * bind is in effect. Unbinding deallocates the window, which invalidates its
 * key at once (later requests with it fail with a remote access error).
 * A bound type-2 window holds a reference on its QP (rxe: destroy_qp waits
 * for it), so freeing a connection deallocates its windows first; the
 * caller's later fx_mw_unbind then only frees the wrapper.
 */
int rdma_mw_bind(struct fx_conn *conn, struct fx_mr *mr, void *addr, size_t length, int access,
		 struct fx_mw **out, struct ferry_err *err)
{
	struct rdma_conn *c = rdma_conn_of(conn);
	struct rdma_ctx *ctx = c->ctx;
	struct rdma_mr *rmr = mr->backend;
	struct rdma_mw *w;
	struct ibv_send_wr wr, *bad = NULL;
	uint64_t seq = c->sq_head;
	struct rdma_swr *s;
	int acc = 0, rc;

	if (c->sq_head - c->sq_tail >= c->base.opts.max_send_wr) {
		ctx->base.stats.backpressure_events++;
		return ferry_err_set(err, EAGAIN, "memory window: send queue to %s full", c->base.peer);
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return ferry_err_set(err, ENOMEM, "memory window: out of memory");
	w->mw = ibv_alloc_mw(((struct rdma_pd *)(void *)mr->pd)->pd, IBV_MW_TYPE_2);
	if (!w->mw) {
		int e = errno ? errno : EIO;

		free(w);
		return ferry_err_set(err, e, "rdma: ibv_alloc_mw (type 2) on %s: %s", ctx->devname, strerror(e));
	}
	if (access & FX_ACCESS_REMOTE_READ)
		acc |= IBV_ACCESS_REMOTE_READ;
	if (access & FX_ACCESS_REMOTE_WRITE)
		acc |= IBV_ACCESS_REMOTE_WRITE;
	s = rdma_sq_slot(c, seq);
	memset(&wr, 0, sizeof(wr));
	wr.wr_id = (uint64_t)(uintptr_t)s;
	wr.opcode = IBV_WR_BIND_MW;
	wr.send_flags = IBV_SEND_SIGNALED;
	wr.bind_mw.mw = w->mw;
	wr.bind_mw.rkey = ibv_inc_rkey(w->mw->rkey);
	wr.bind_mw.bind_info.mr = rmr->mr;
	wr.bind_mw.bind_info.addr = (uint64_t)(uintptr_t)addr;
	wr.bind_mw.bind_info.length = length;
	wr.bind_mw.bind_info.mw_access_flags = (unsigned)acc;
	s->seq = seq;
	s->wr_id = 0;
	s->post_ns = ferry_mono_ns();
	s->byte_len = 0;
	s->opcode = RDMA_OP_BIND;
	s->signaled = 0;
	s->done = 0;
	s->status = FX_WC_SUCCESS;
	rc = ibv_post_send(c->qp, &wr, &bad);
	if (rc) {
		(void)ibv_dealloc_mw(w->mw);
		free(w);
		return ferry_err_set(err, rc, "rdma: cannot post a window bind to %s: %s", c->base.peer, strerror(rc));
	}
	c->sq_head++;
	c->last_hw_sig = c->sq_head;
	ctx->base.stats.ops_posted++;
	rdma_arm_timer(ctx, s->post_ns + ctx->op_timeout_ns);
	fx_list_add_tail(&c->windows, &w->l_conn);
	w->pub.rkey = wr.bind_mw.rkey;
	w->pub.remote_base = (uint64_t)(uintptr_t)addr;
	w->pub.length = length;
	w->pub.access = access;
	w->pub.mr = mr;
	w->pub.backend = w;
	*out = &w->pub;
	return 0;
}

int rdma_mw_unbind(struct fx_mw *pub)
{
	struct rdma_mw *w = pub->backend;

	if (w->mw) {
		int rc = ibv_dealloc_mw(w->mw);

		if (rc)
			return -(rc > 0 ? rc : (errno ? errno : EIO));
		fx_list_del(&w->l_conn);
	}
	free(w);
	return 0;
}
