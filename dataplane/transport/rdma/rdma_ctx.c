/*
 * RDMA backend: context (device, completion channel, CQ and its growth,
 * CM event channel, epoll), ready list and wake-ups. fx_poll is in
 * rdma_poll.c.
 *
 * Event mode: fx_ctx_fd() is an epoll fd holding the completion channel fd,
 * the CM event channel fd, the device's async-event fd and an eventfd. Once
 * fx_ctx_fd() has been asked for, the CQ is left armed (ibv_req_notify_cq)
 * whenever fx_poll returns, so a new completion makes the fd readable;
 * completions already taken from the CQ but not yet reaped (max reached) keep
 * it readable through the eventfd. Callers that only poll never pay for
 * arming (a system call with rxe) except when fx_poll itself sleeps.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/transport/rdma/rdma.h"

void rdma_kick(struct rdma_ctx *ctx)
{
	uint64_t one = 1;

	if (ctx->kicked || ctx->in_poll)
		return;
	if (write(ctx->evfd, &one, sizeof(one)) == (ssize_t)sizeof(one))
		ctx->kicked = true;
}

bool rdma_conn_has_completion(const struct rdma_conn *c)
{
	if (c->sq_tail != c->sq_head && rdma_sq_slot(c, c->sq_tail)->done)
		return true;
	if (c->rcv_tail != c->rcv_head && rdma_rcv_slot(c, c->rcv_tail)->done)
		return true;
	return false;
}

void rdma_mark_ready(struct rdma_conn *c)
{
	if (c->on_ready || c->zombie || !rdma_conn_has_completion(c))
		return;
	c->on_ready = true;
	fx_list_add_tail(&c->ctx->ready, &c->l_ready);
	rdma_kick(c->ctx);
}

void rdma_arm_timer(struct rdma_ctx *ctx, uint64_t deadline_ns)
{
	if (deadline_ns < ctx->next_check_ns)
		ctx->next_check_ns = deadline_ns;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

int rdma_cq_reserve(struct rdma_ctx *ctx, int n, struct ferry_err *err)
{
	int want = ctx->cq_reserved + n;

	if (want > ctx->cq_size) {
		int sz = ctx->cq_size * 2 > want ? ctx->cq_size * 2 : want;

		if (sz > ctx->max_cqe)
			sz = ctx->max_cqe;
		if (sz < want)
			return ferry_err_set(err, ENOSPC,
					     "rdma: completion queue full (%d entries reserved, device limit %d); "
					     "use fewer or smaller connections per context", ctx->cq_reserved, ctx->max_cqe);
		int rc = ibv_resize_cq(ctx->cq, sz);

		if (rc)
			return ferry_err_set(err, rc > 0 ? rc : EIO, "rdma: ibv_resize_cq to %d: %s", sz,
					     strerror(rc > 0 ? rc : EIO));
		ctx->cq_size = ctx->cq->cqe > sz ? ctx->cq->cqe : sz;
	}
	ctx->cq_reserved += n;
	return 0;
}

int rdma_scratch_reserve(struct rdma_ctx *ctx, uint32_t n)
{
	if (n <= ctx->scratch_cap)
		return 0;
	struct ibv_send_wr *w = realloc(ctx->swr, (size_t)n * sizeof(*w));

	if (!w)
		return -ENOMEM;
	ctx->swr = w;
	struct ibv_sge *s = realloc(ctx->ssge, (size_t)n * FX_MAX_SGE * sizeof(*s));

	if (!s)
		return -ENOMEM;
	ctx->ssge = s;
	ctx->scratch_cap = n;
	return 0;
}

static void rdma_ctx_destroy(struct fx_ctx *b)
{
	struct rdma_ctx *ctx = rdma_ctx_of(b);

	while (!fx_list_empty(&ctx->conns))
		rdma_conn_free(fx_container_of(ctx->conns.next, struct rdma_conn, l_all));
	rdma_reap_dead_pds(ctx, true);
	if (ctx->cq) {
		rdma_drain_comp_channel(ctx);
		(void)ibv_destroy_cq(ctx->cq);
	}
	if (ctx->cch)
		(void)ibv_destroy_comp_channel(ctx->cch);
	if (ctx->cm_ch)
		rdma_destroy_event_channel(ctx->cm_ch);
	if (ctx->epfd >= 0)
		close(ctx->epfd);
	if (ctx->evfd >= 0)
		close(ctx->evfd);
	if (ctx->devices)
		rdma_free_devices(ctx->devices);
	free(ctx->swr);
	free(ctx->ssge);
	free(ctx);
}

static const struct fx_backend_ops rdma_ops = {
	.ctx_destroy = rdma_ctx_destroy,
	.ctx_fd = rdma_ctx_fd,
	.poll = rdma_poll,
	.pd_alloc = rdma_pd_alloc,
	.pd_free = rdma_pd_free,
	.reg_mr = rdma_reg_mr,
	.dereg_mr = rdma_dereg_mr,
	.listen = rdma_listen_,
	.accept = rdma_accept_,
	.listener_close = rdma_listener_close,
	.connect = rdma_connect_,
	.post_send = rdma_post_send,
	.post_recv = rdma_post_recv,
	.mw_bind = rdma_mw_bind,
	.mw_unbind = rdma_mw_unbind,
	.srq_create = rdma_srq_create,
	.srq_destroy = rdma_srq_destroy,
	.post_srq_recv = rdma_post_srq_recv,
	.conn_outstanding = rdma_conn_outstanding,
	.conn_close = rdma_conn_close,
};

static int epoll_add(int epfd, int fd, uint32_t tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = tag };

	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static int ctx_fail(struct rdma_ctx *ctx, struct ferry_err *err, int e, const char *what)
{
	if (e < 0)
		e = -e;
	if (!e)
		e = EIO;
	rdma_ctx_destroy(&ctx->base);
	return ferry_err_set(err, e, "rdma context: %s: %s", what, strerror(e));
}

static int rdma_ctx_create(const struct fx_ctx_opts *opts, struct fx_ctx **out, struct ferry_err *err)
{
	struct rdma_ctx *ctx = calloc(1, sizeof(*ctx));
	struct ibv_device_attr attr;
	int num = 0, rc;

	if (!ctx)
		return ferry_err_set(err, ENOMEM, "rdma context: out of memory");
	ctx->base.ops = &rdma_ops;
	ctx->base.opts = *opts;
	ctx->epfd = ctx->evfd = -1;
	ctx->op_timeout_ns = (uint64_t)opts->op_timeout_ms * 1000000ull;
	ctx->next_check_ns = UINT64_MAX;
	fx_list_init(&ctx->conns);
	fx_list_init(&ctx->ready);
	fx_list_init(&ctx->zombies);
	fx_list_init(&ctx->dead_pds);
	fx_list_init(&ctx->dead_srqs);

	ctx->devices = rdma_get_devices(&num);
	if (!ctx->devices || num <= 0) {
		rdma_ctx_destroy(&ctx->base);
		return ferry_err_set(err, ENODEV,
				     "no RDMA device found (is rdma_rxe / an RDMA NIC configured?); use --transport tcp");
	}
	for (int i = 0; i < num; i++) {
		const char *name = ibv_get_device_name(ctx->devices[i]->device);

		if (!opts->rdma_device || (name && strcmp(name, opts->rdma_device) == 0)) {
			ctx->verbs = ctx->devices[i];
			snprintf(ctx->devname, sizeof(ctx->devname), "%s", name ? name : "?");
			break;
		}
	}
	if (!ctx->verbs) {
		rdma_ctx_destroy(&ctx->base);
		return ferry_err_set(err, ENODEV, "RDMA device '%s' not found (%d other device%s present)",
				     opts->rdma_device, num, num == 1 ? "" : "s");
	}
	if ((rc = ibv_query_device(ctx->verbs, &attr)) != 0)
		return ctx_fail(ctx, err, rc, "ibv_query_device");
	ctx->max_cqe = attr.max_cqe;
	ctx->max_qp_rd_atom = (uint32_t)attr.max_qp_rd_atom;
	ctx->max_qp_init_rd_atom = (uint32_t)attr.max_qp_init_rd_atom;
	ctx->cch = ibv_create_comp_channel(ctx->verbs);
	if (!ctx->cch)
		return ctx_fail(ctx, err, errno, "ibv_create_comp_channel");
	ctx->cq_size = (int)opts->cq_depth < ctx->max_cqe ? (int)opts->cq_depth : ctx->max_cqe;
	ctx->cq = ibv_create_cq(ctx->verbs, ctx->cq_size, ctx, ctx->cch, 0);
	if (!ctx->cq)
		return ctx_fail(ctx, err, errno, "ibv_create_cq");
	if (ctx->cq->cqe > ctx->cq_size)
		ctx->cq_size = ctx->cq->cqe;
	ctx->cm_ch = rdma_create_event_channel();
	if (!ctx->cm_ch)
		return ctx_fail(ctx, err, errno, "rdma_create_event_channel");
	ctx->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (ctx->epfd < 0)
		return ctx_fail(ctx, err, errno, "epoll_create1");
	ctx->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ctx->evfd < 0)
		return ctx_fail(ctx, err, errno, "eventfd");
	if ((rc = set_nonblock(ctx->cch->fd)) || (rc = set_nonblock(ctx->cm_ch->fd)) ||
	    (rc = set_nonblock(ctx->verbs->async_fd)) || (rc = epoll_add(ctx->epfd, ctx->cch->fd, RDMA_EV_COMP)) ||
	    (rc = epoll_add(ctx->epfd, ctx->cm_ch->fd, RDMA_EV_CM)) ||
	    (rc = epoll_add(ctx->epfd, ctx->verbs->async_fd, RDMA_EV_ASYNC)) ||
	    (rc = epoll_add(ctx->epfd, ctx->evfd, RDMA_EV_KICK)))
		return ctx_fail(ctx, err, rc, "event set-up");
	if (ibv_req_notify_cq(ctx->cq, 0) == 0)
		ctx->armed = true;
	LOG_DEBUG("rdma: context on %s (max_cqe %d, cq %d)", ctx->devname, ctx->max_cqe, ctx->cq_size);
	*out = &ctx->base;
	return 0;
}

const struct fx_backend fx_backend_rdma = {
	.kind = FX_KIND_RDMA,
	.name = "rdma",
	.ctx_create = rdma_ctx_create,
};
