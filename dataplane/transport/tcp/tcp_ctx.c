/*
 * TCP backend: context, epoll loop, fx_poll, operation timeouts and
 * completion reaping.
 *
 * Completions are not copied into a separate queue: each connection's send
 * and receive rings are the queue (slots complete in posting order), and
 * fx_poll reaps from the connections on the ctx "ready" list. So the TCP
 * backend cannot overflow a completion queue; cq_depth is accepted for
 * compatibility with the RDMA backend and otherwise unused.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/transport/tcp/tcp.h"

#define TCP_EPOLL_EVENTS 64

void tcp_kick(struct tcp_ctx *ctx)
{
	uint64_t one = 1;

	if (ctx->kicked || ctx->in_poll)
		return;
	if (write(ctx->evfd, &one, sizeof(one)) == (ssize_t)sizeof(one))
		ctx->kicked = true;
}

void tcp_mark_work(struct tcp_conn *c)
{
	if (c->on_work)
		return;
	c->on_work = true;
	fx_list_add_tail(&c->ctx->work, &c->l_work);
	tcp_kick(c->ctx);
}

static bool conn_has_completion(const struct tcp_conn *c)
{
	if (c->sq_tail != c->sq_head && tcp_sq_slot(c, c->sq_tail)->done)
		return true;
	if (c->rcv_tail != c->rcv_head && tcp_rcv_slot(c, c->rcv_tail)->done)
		return true;
	return false;
}

void tcp_mark_ready(struct tcp_conn *c)
{
	if (c->on_ready || !conn_has_completion(c))
		return;
	c->on_ready = true;
	fx_list_add_tail(&c->ctx->ready, &c->l_ready);
	tcp_kick(c->ctx);
}

void tcp_arm_timer(struct tcp_ctx *ctx, uint64_t deadline_ns)
{
	if (deadline_ns < ctx->next_check_ns)
		ctx->next_check_ns = deadline_ns;
}

/* ------------------------------------------------------------------ reaping */

static int reap_conn(struct tcp_conn *c, struct fx_wc *wc, int max)
{
	int n = 0;

	while (n < max && c->sq_tail != c->sq_head) {
		struct tcp_swr *s = tcp_sq_slot(c, c->sq_tail);

		if (!s->done)
			break;
		if (s->signaled || s->status != FX_WC_SUCCESS) {
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
		struct tcp_rwr *r = tcp_rcv_slot(c, c->rcv_tail);

		if (!r->done)
			break;
		struct fx_wc *w = &wc[n++];

		w->wr_id = r->wr_id;
		w->conn = &c->base;
		w->status = (enum fx_wc_status)r->status;
		w->byte_len = r->status == FX_WC_SUCCESS ? r->byte_len : 0;
		w->opcode = FX_WC_RECV;
		c->rcv_tail++;
		/* An SRQ connection stopped on a full ring of its own may take again. */
		if (c->base.opts.srq && c->in.blocked == BLK_RECV && c->base.state == FX_CONN_CONNECTED) {
			c->in.blocked = BLK_NONE;
			tcp_mark_work(c);
		}
	}
	return n;
}

static int reap(struct tcp_ctx *ctx, struct fx_wc *wc, int max)
{
	int n = 0;

	while (n < max && !fx_list_empty(&ctx->ready)) {
		struct tcp_conn *c = fx_container_of(ctx->ready.next, struct tcp_conn, l_ready);

		n += reap_conn(c, wc + n, max - n);
		/* Silent requests that were waiting behind a reaped one. */
		while (c->sq_tail != c->sq_head) {
			struct tcp_swr *s = tcp_sq_slot(c, c->sq_tail);

			if (!s->done || s->signaled || s->status != FX_WC_SUCCESS)
				break;
			c->sq_tail++;
		}
		fx_list_del(&c->l_ready);
		c->on_ready = false;
		if (conn_has_completion(c)) {
			/* max reached: keep it, behind the others (fairness) */
			c->on_ready = true;
			fx_list_add_tail(&ctx->ready, &c->l_ready);
			break;
		}
		tcp_conn_maybe_free(c);
	}
	return n;
}

/* ------------------------------------------------------------------ progress */

static void handle_events(struct tcp_ctx *ctx, int wait_ms)
{
	struct epoll_event ev[TCP_EPOLL_EVENTS];
	int n = epoll_wait(ctx->epfd, ev, TCP_EPOLL_EVENTS, wait_ms);

	for (int i = 0; i < n; i++) {
		struct tcp_conn *c = ev[i].data.ptr;

		if (!c) {
			/* our eventfd: drained at the start of fx_poll */
			continue;
		}
		if (ev[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
			c->rd_ready = true;
		if (ev[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
			c->peer_hup = true;
		if (ev[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
			c->wr_ready = true;
		if ((ev[i].events & (EPOLLHUP | EPOLLERR)) && c->in.blocked &&
		    c->base.state == FX_CONN_CONNECTED) {
			/* Blocked input will not notice: the socket is dead both ways. */
			int soerr = 0;
			socklen_t sl = sizeof(soerr);

			(void)getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
			tcp_conn_fail_io(c, soerr, "poll");
			continue;
		}
		tcp_mark_work(c);
	}
}

static void conn_progress(struct tcp_conn *c)
{
	if (c->linger) {
		if (c->wr_ready && c->out_n && tcp_out_flush(c) < 0) {
			tcp_conn_end_linger(c);
			return;
		}
		(void)tcp_in_progress(c);       /* discards input, notices EOF */
		if (c->out_n == 0 && (c->in.eof || c->fd < 0))
			tcp_conn_end_linger(c);
		return;
	}
	if (c->base.state != FX_CONN_CONNECTED)
		return;
	if (c->wr_ready && c->out_n && tcp_out_flush(c) < 0)
		return;
	bool more = tcp_in_progress(c);

	if (c->base.state != FX_CONN_CONNECTED && !c->linger)
		return;
	if (c->wr_ready && c->out_n && tcp_out_flush(c) < 0)
		return;
	if (more)
		tcp_mark_work(c);
}

static void progress(struct tcp_ctx *ctx)
{
	struct fx_link batch;

	if (fx_list_empty(&ctx->work))
		return;
	/* Take the current list; connections that need another round re-add themselves. */
	batch = ctx->work;
	batch.next->prev = &batch;
	batch.prev->next = &batch;
	fx_list_init(&ctx->work);
	while (!fx_list_empty(&batch)) {
		struct tcp_conn *c = fx_container_of(batch.next, struct tcp_conn, l_work);

		fx_list_del(&c->l_work);
		c->on_work = false;
		conn_progress(c);
		tcp_conn_maybe_free(c);
	}
}

static void check_timeouts(struct tcp_ctx *ctx, uint64_t now)
{
	uint64_t next = UINT64_MAX;
	struct fx_link *l, *nx;

	for (l = ctx->conns.next; l != &ctx->conns; l = nx) {
		struct tcp_conn *c = fx_container_of(l, struct tcp_conn, l_all);

		nx = l->next;
		if (c->linger) {
			if (now >= c->linger_deadline) {
				tcp_conn_end_linger(c);
				tcp_conn_maybe_free(c);
			} else if (c->linger_deadline < next) {
				next = c->linger_deadline;
			}
			continue;
		}
		if (c->base.state != FX_CONN_CONNECTED)
			continue;
		uint64_t seq = c->sq_tail;

		while (seq != c->sq_head && tcp_sq_slot(c, seq)->done)
			seq++;
		if (seq == c->sq_head)
			continue;
		uint64_t dl = tcp_sq_slot(c, seq)->post_ns + ctx->op_timeout_ns;

		if (now >= dl) {
			tcp_conn_fail(c, FX_WC_RETRY_EXC_ERR, false,
				      "operation timed out after %u ms (peer %s not responding)",
				      ctx->base.opts.op_timeout_ms, c->base.peer);
			continue;
		}
		if (dl < next)
			next = dl;
	}
	ctx->next_check_ns = next;
}

static int tcp_poll(struct fx_ctx *b, struct fx_wc *wc, int max, int timeout_ms)
{
	struct tcp_ctx *ctx = tcp_ctx_of(b);
	uint64_t start = ferry_mono_ns(), now = start;
	uint64_t user_deadline = timeout_ms > 0 ? start + (uint64_t)timeout_ms * 1000000ull : UINT64_MAX;
	uint64_t spin_end = start + (uint64_t)ctx->base.opts.poll_spin_us * 1000ull;
	int n = 0, wait_ms = 0;

	ctx->in_poll = true;
	tcp_free_zombies(ctx);
	if (ctx->kicked) {
		uint64_t v;

		if (read(ctx->evfd, &v, sizeof(v)) < 0) {
			/* EAGAIN: nothing to drain */
		}
		ctx->kicked = false;
	}
	for (;;) {
		handle_events(ctx, wait_ms);
		progress(ctx);
		now = ferry_mono_ns();
		if (now >= ctx->next_check_ns)
			check_timeouts(ctx, now);
		n += reap(ctx, wc + n, max - n);
		/* max == 0 is a progress-only call: it never waits. */
		if (n > 0 || timeout_ms == 0 || max == 0)
			break;
		if (!fx_list_empty(&ctx->work)) {
			wait_ms = 0;
			continue;
		}
		if (now >= user_deadline)
			break;
		if (now < spin_end) {
			wait_ms = 0;
			continue;
		}
		/* Sleep until an event, the caller's deadline or the next op deadline. */
		uint64_t until = user_deadline < ctx->next_check_ns ? user_deadline : ctx->next_check_ns;

		if (until == UINT64_MAX) {
			wait_ms = -1;
		} else {
			uint64_t d = until > now ? until - now : 0;

			wait_ms = (int)((d + 999999) / 1000000);
			if (wait_ms == 0)
				wait_ms = 1;
		}
	}
	ctx->in_poll = false;
	if (!fx_list_empty(&ctx->ready) || !fx_list_empty(&ctx->work))
		tcp_kick(ctx);
	return n;
}

static int tcp_ctx_fd(const struct fx_ctx *b)
{
	return ((const struct tcp_ctx *)(const void *)b)->epfd;
}

static void tcp_ctx_destroy(struct fx_ctx *b)
{
	struct tcp_ctx *ctx = tcp_ctx_of(b);

	while (!fx_list_empty(&ctx->conns)) {
		struct tcp_conn *c = fx_container_of(ctx->conns.next, struct tcp_conn, l_all);

		tcp_conn_free(c);
	}
	tcp_keymap_free(&ctx->lkeys);
	tcp_keymap_free(&ctx->rkeys);
	close(ctx->epfd);
	close(ctx->evfd);
	free(ctx);
}

static const struct fx_backend_ops tcp_ops = {
	.ctx_destroy = tcp_ctx_destroy,
	.ctx_fd = tcp_ctx_fd,
	.poll = tcp_poll,
	.pd_alloc = tcp_pd_alloc,
	.pd_free = tcp_pd_free,
	.reg_mr = tcp_reg_mr,
	.dereg_mr = tcp_dereg_mr,
	.listen = tcp_listen,
	.accept = tcp_accept,
	.listener_close = tcp_listener_close,
	.connect = tcp_connect,
	.post_send = tcp_post_send,
	.post_recv = tcp_post_recv,
	.mw_bind = tcp_mw_bind,
	.mw_unbind = tcp_mw_unbind,
	.srq_create = tcp_srq_create,
	.srq_destroy = tcp_srq_destroy,
	.post_srq_recv = tcp_post_srq_recv,
	.conn_outstanding = tcp_conn_outstanding,
	.conn_close = tcp_conn_close,
};

static int tcp_ctx_create(const struct fx_ctx_opts *opts, struct fx_ctx **out, struct ferry_err *err)
{
	struct tcp_ctx *ctx = calloc(1, sizeof(*ctx));
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

	if (!ctx)
		return ferry_err_set(err, ENOMEM, "tcp context: out of memory");
	ctx->base.ops = &tcp_ops;
	ctx->base.opts = *opts;
	ctx->op_timeout_ns = (uint64_t)opts->op_timeout_ms * 1000000ull;
	ctx->next_check_ns = UINT64_MAX;
	fx_list_init(&ctx->conns);
	fx_list_init(&ctx->work);
	fx_list_init(&ctx->ready);
	fx_list_init(&ctx->zombies);
	ctx->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (ctx->epfd < 0) {
		int e = errno;

		free(ctx);
		return ferry_err_set(err, e, "tcp context: epoll_create1: %s", strerror(e));
	}
	ctx->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ctx->evfd < 0 || epoll_ctl(ctx->epfd, EPOLL_CTL_ADD, ctx->evfd, &ev) < 0) {
		int e = errno;

		if (ctx->evfd >= 0)
			close(ctx->evfd);
		close(ctx->epfd);
		free(ctx);
		return ferry_err_set(err, e, "tcp context: eventfd: %s", strerror(e));
	}
	*out = &ctx->base;
	return 0;
}

const struct fx_backend fx_backend_tcp = {
	.kind = FX_KIND_TCP,
	.name = "tcp",
	.ctx_create = tcp_ctx_create,
};
