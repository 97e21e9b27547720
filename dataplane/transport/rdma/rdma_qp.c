/*
 * RDMA backend: the connection object. Its RC QP (created in the caller's
 * domain, send and receive queues on the context's CQ, per-QP receive queue,
 * no SRQ), its send/receive rings, failure (QP to the error state so that
 * everything outstanding flushes) and close (freed once its flushes are
 * reaped).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/transport/rdma/rdma.h"

static uint32_t pow2_at_least(uint32_t n)
{
	uint32_t p = 1;

	while (p < n)
		p <<= 1;
	return p;
}

void rdma_format_addr(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (sa && sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(in->sin_port));
	} else if (sa && sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(in6->sin6_port));
	} else {
		snprintf(buf, len, "unknown");
	}
}

/* ------------------------------------------------------------------ lifetime */

uint32_t rdma_conn_outstanding(const struct fx_conn *conn)
{
	const struct rdma_conn *c = (const struct rdma_conn *)(const void *)conn;

	return (uint32_t)(c->sq_head - c->sq_tail);
}

bool rdma_conn_drained(const struct rdma_conn *c)
{
	return c->sq_tail == c->sq_head && c->rcv_tail == c->rcv_head;
}

void rdma_conn_free(struct rdma_conn *c)
{
	struct rdma_ctx *ctx = c->ctx;

	fx_list_del(&c->l_all);
	if (c->on_ready || c->zombie)
		fx_list_del(&c->l_ready);
	while (c->windows.next && !fx_list_empty(&c->windows)) {
		struct rdma_mw *w = fx_container_of(c->windows.next, struct rdma_mw, l_conn);

		fx_list_del(&w->l_conn);
		if (ibv_dealloc_mw(w->mw) != 0)
			LOG_WARN("rdma: deallocating a window of %s failed: %s", c->base.peer, strerror(errno));
		w->mw = NULL;   /* the caller's fx_mw_unbind only frees it now */
	}
	if (c->qp) {
		if (c->id && c->id->qp == c->qp)
			rdma_destroy_qp(c->id);
		else
			(void)ibv_destroy_qp(c->qp);
	}
	if (c->id)
		(void)rdma_destroy_id(c->id);
	if (c->bounce_mr)
		(void)ibv_dereg_mr(c->bounce_mr);
	ctx->cq_reserved -= c->cq_share;
	free(c->bounce);
	free(c->sq);
	free(c->rcv);
	free(c);
}

void rdma_conn_maybe_free(struct rdma_conn *c)
{
	if (c->zombie || !c->closed || !rdma_conn_drained(c))
		return;
	if (c->on_ready) {
		fx_list_del(&c->l_ready);
		c->on_ready = false;
	}
	c->zombie = true;
	fx_list_add_tail(&c->ctx->zombies, &c->l_ready);
}

void rdma_free_zombies(struct rdma_ctx *ctx)
{
	while (!fx_list_empty(&ctx->zombies)) {
		struct rdma_conn *c = fx_container_of(ctx->zombies.next, struct rdma_conn, l_ready);

		fx_list_del(&c->l_ready);
		c->zombie = false;
		rdma_conn_free(c);
	}
	if (!fx_list_empty(&ctx->dead_pds) || !fx_list_empty(&ctx->dead_srqs))
		rdma_reap_dead_pds(ctx, false);
}

/* Move the QP to the error state so that everything outstanding flushes. */
static void qp_to_error(struct rdma_conn *c)
{
	if (c->qp_err || !c->qp)
		return;
	c->qp_err = true;
	/* rdma_disconnect moves the QP to ERR and sends a DREQ; if the id is past
	 * that (already disconnected), move the QP ourselves. */
	if (!c->id || rdma_disconnect(c->id) != 0) {
		struct ibv_qp_attr a = { .qp_state = IBV_QPS_ERR };

		(void)ibv_modify_qp(c->qp, &a, IBV_QP_STATE);
	}
}

void rdma_conn_fail(struct rdma_conn *c, enum fx_wc_status status, const char *fmt, ...)
{
	char why[FX_CONN_ERR_MAX];
	va_list ap;

	if (c->base.state != FX_CONN_CONNECTED)
		return;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	fx_conn_set_error(&c->base, "%s", why);
	LOG_INFO("connection to %s failed: %s", c->base.peer, why);
	c->base.state = FX_CONN_ERROR;
	c->ctx->base.stats.conns_failed++;
	c->override = (uint8_t)status;
	qp_to_error(c);
	rdma_mark_ready(c);
}

void rdma_conn_close(struct fx_conn *conn)
{
	struct rdma_conn *c = rdma_conn_of(conn);

	c->closed = true;
	if (c->base.state == FX_CONN_CONNECTED)
		LOG_INFO("connection to %s closed", c->base.peer);
	c->override = 0;
	qp_to_error(c);
	c->base.state = FX_CONN_CLOSED;
	/*
	 * Never freed here, even when nothing is left to report: the caller may
	 * still hold completions of this connection from its last fx_poll (and
	 * pass their wc.conn to fx_conn_get_user); zombies go at the next one.
	 */
	if (rdma_conn_drained(c))
		rdma_conn_maybe_free(c);
	else
		rdma_mark_ready(c);
}

/* Make a connection of @p id (QP in @p pd). On failure the id stays the caller's. */
int rdma_conn_new(struct rdma_ctx *ctx, struct fx_pd *pd, struct rdma_cm_id *id, const struct fx_conn_opts *opts,
		    struct rdma_conn **out, struct ferry_err *err)
{
	struct rdma_conn *c = calloc(1, sizeof(*c));
	uint32_t sq_cap = pow2_at_least(opts->max_send_wr);
	/* SRQ: the ring only collects finished receives (it grows if need be); start at the SRQ's depth. */
	uint32_t rcv_cap = pow2_at_least(opts->srq ? opts->srq->depth : opts->max_recv_wr);
	struct rdma_srq *srq = opts->srq ? rdma_srq_of(opts->srq) : NULL;
	struct ibv_qp_init_attr qa;
	int rc;

	if (!c)
		return ferry_err_set(err, ENOMEM, "rdma connection: out of memory");
	fx_list_init(&c->l_all);
	fx_list_init(&c->l_ready);
	fx_list_init(&c->windows);
	c->ctx = ctx;
	c->base.ctx = &ctx->base;
	c->base.ops = ctx->base.ops;
	c->base.pd = pd;
	c->base.opts = *opts;
	c->base.state = FX_CONN_CONNECTED;
	rdma_format_addr(rdma_get_peer_addr(id), c->base.peer, sizeof(c->base.peer));
	c->sq_mask = sq_cap - 1;
	c->rcv_mask = rcv_cap - 1;
	c->sig_every = sq_cap / 2 ? sq_cap / 2 : 1;
	c->sq = calloc(sq_cap, sizeof(*c->sq));
	c->rcv = calloc(rcv_cap, sizeof(*c->rcv));
	fx_list_add_tail(&ctx->conns, &c->l_all);
	if (!c->sq || !c->rcv) {
		rdma_conn_free(c);
		return ferry_err_set(err, ENOMEM, "rdma connection: out of memory");
	}
	for (uint32_t i = 0; i < sq_cap; i++)
		c->sq[i].conn = c;
	for (uint32_t i = 0; i < rcv_cap; i++)
		c->rcv[i].conn = c;
	rc = rdma_scratch_reserve(ctx, sq_cap);
	if (rc) {
		rdma_conn_free(c);
		return ferry_err_set(err, ENOMEM, "rdma connection: out of memory");
	}
	/* An SRQ reserved CQ room for its receives itself. */
	rc = rdma_cq_reserve(ctx, (int)(sq_cap + (srq ? 0 : rcv_cap)), err);
	if (rc) {
		rdma_conn_free(c);
		return rc;
	}
	c->cq_share = (int)(sq_cap + (srq ? 0 : rcv_cap));

	struct rdma_pd *rpd = (struct rdma_pd *)(void *)pd;

	for (int attempt = 0; attempt < 2; attempt++) {
		memset(&qa, 0, sizeof(qa));
		qa.qp_context = c;
		qa.send_cq = ctx->cq;
		qa.recv_cq = ctx->cq;
		qa.qp_type = IBV_QPT_RC;
		qa.sq_sig_all = 0;
		qa.cap.max_send_wr = sq_cap;
		qa.cap.max_recv_wr = srq ? 0 : rcv_cap;
		qa.cap.max_send_sge = FX_MAX_SGE;
		qa.cap.max_recv_sge = srq ? 0 : FX_MAX_SGE;
		qa.srq = srq ? srq->srq : NULL;
		qa.cap.max_inline_data = attempt == 0 ? opts->max_inline : 0;
		rc = rdma_create_qp(id, rpd->pd, &qa);
		if (rc == 0)
			break;
	}
	if (rc) {
		int e = errno ? errno : EIO;

		rdma_conn_free(c);
		return ferry_err_set(err, e, "rdma: cannot create a queue pair (send %u, recv %u, sge %d): %s", sq_cap,
				     rcv_cap, FX_MAX_SGE, strerror(e));
	}
	c->qp = id->qp;
	c->hw_inline = qa.cap.max_inline_data;
	if (c->hw_inline < opts->max_inline) {
		size_t len = (size_t)sq_cap * opts->max_inline;

		c->bounce = malloc(len);
		c->bounce_mr = c->bounce ? ibv_reg_mr(rpd->pd, c->bounce, len, IBV_ACCESS_LOCAL_WRITE) : NULL;
		if (!c->bounce_mr) {
			rdma_destroy_qp(id);
			c->qp = NULL;
			rdma_conn_free(c);
			return ferry_err_set(err, ENOMEM, "rdma connection: cannot register the inline bounce area");
		}
	}
	c->id = id;
	id->context = c;
	*out = c;
	return 0;
}
