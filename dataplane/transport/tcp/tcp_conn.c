/*
 * TCP backend: sockets, listen/accept/connect, connection state, failure
 * and close.
 *
 * Failure statuses (documented in the report and tcp.h):
 *  - peer gone (EOF, reset, TCP user timeout) and operation timeout: the
 *    oldest unfinished send request completes with FX_WC_RETRY_EXC_ERR;
 *  - remote access error: the request the target named (vector entry)
 *    completes with FX_WC_REM_ACCESS_ERR (REM_INV_REQ_ERR / REM_OP_ERR by the
 *    ERROR code);
 *  - malformed input from the peer: FX_WC_REM_OP_ERR on the oldest;
 *  - local protection / length errors: that request or receive;
 *  - everything else outstanding, and every posted receive: FX_WC_FLUSH_ERR.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/transport/tcp/tcp.h"

static uint32_t pow2_at_least(uint32_t n)
{
	uint32_t p = 1;

	while (p < n)
		p <<= 1;
	return p;
}

static void format_addr(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(in6->sin6_port));
	} else {
		snprintf(buf, len, "unknown");
	}
}

static void set_sockopts(int fd, uint32_t op_timeout_ms)
{
	int one = 1;
	unsigned int uto = op_timeout_ms;
	int idle = (int)(op_timeout_ms / 2000u), intvl, cnt = 3;

	if (idle < 1)
		idle = 1;
	intvl = idle / 2 > 0 ? idle / 2 : 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* A silent host: unacknowledged data or keepalives fail the socket. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &uto, sizeof(uto));
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
#if TCP_SOCKBUF
	int sz = TCP_SOCKBUF;

	(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
#endif
}

/* ------------------------------------------------------------------ lifetime */

void tcp_conn_free(struct tcp_conn *c)
{
	if (c->fd >= 0) {
		(void)epoll_ctl(c->ctx->epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	fx_list_del(&c->l_all);
	fx_list_del(&c->l_srq);
	tcp_mw_orphan_all(c);
	if (c->on_work)
		fx_list_del(&c->l_work);
	if (c->on_ready || c->zombie)
		fx_list_del(&c->l_ready);
	free(c->sq);
	free(c->inl);
	free(c->rq);
	free(c->arena);
	free(c->rcv);
	free(c->out);
	free(c->rep);
	free(c->in.buf);
	free(c->in.wdst);
	free(c->in.wmr);
	free(c);
}

static bool conn_drained(const struct tcp_conn *c)
{
	return c->closed && !c->linger && c->sq_tail == c->sq_head && c->rcv_tail == c->rcv_head;
}

void tcp_conn_maybe_free(struct tcp_conn *c)
{
	if (c->zombie || !conn_drained(c))
		return;
	if (c->on_work) {
		fx_list_del(&c->l_work);
		c->on_work = false;
	}
	if (c->on_ready) {
		fx_list_del(&c->l_ready);
		c->on_ready = false;
	}
	c->zombie = true;
	fx_list_add_tail(&c->ctx->zombies, &c->l_ready);
}

void tcp_free_zombies(struct tcp_ctx *ctx)
{
	while (!fx_list_empty(&ctx->zombies)) {
		struct tcp_conn *c = fx_container_of(ctx->zombies.next, struct tcp_conn, l_ready);

		fx_list_del(&c->l_ready);
		c->zombie = false;
		tcp_conn_free(c);
	}
}

/* Make a connection of the connected socket @p fd (always consumed). */
static int conn_new(struct tcp_ctx *ctx, struct fx_pd *pd, int fd, const struct fx_conn_opts *opts,
		    const char *peer, struct tcp_conn **out, struct ferry_err *err)
{
	struct tcp_conn *c = calloc(1, sizeof(*c));
	uint32_t sq_cap = pow2_at_least(opts->max_send_wr);
	uint32_t rcv_cap = pow2_at_least(opts->max_recv_wr);

	if (!c) {
		close(fd);
		return ferry_err_set(err, ENOMEM, "connection %s: out of memory", peer);
	}
	fx_list_init(&c->l_all);
	fx_list_init(&c->l_work);
	fx_list_init(&c->l_ready);
	fx_list_init(&c->l_srq);
	fx_list_init(&c->windows);
	c->fd = -1;
	c->ctx = ctx;
	c->base.ctx = &ctx->base;
	c->base.ops = ctx->base.ops;
	c->base.pd = pd;
	c->base.opts = *opts;
	c->base.state = FX_CONN_CONNECTED;
	snprintf(c->base.peer, sizeof(c->base.peer), "%s", peer);
	c->sq_mask = sq_cap - 1;
	c->rcv_mask = rcv_cap - 1;
	c->next_req = 1;
	c->sq = calloc(sq_cap, sizeof(*c->sq));
	c->rq = calloc(sq_cap, sizeof(*c->rq));
	/* Every outstanding request needs <= 16 vector bytes + its share of a
	 * 32-byte header, plus one largest message for wrap-around waste. */
	c->arena_cap = 64u * opts->max_send_wr + 64u;
	c->arena = malloc(c->arena_cap);
	c->rcv = calloc(rcv_cap, sizeof(*c->rcv));
	c->out_cap = 64;
	c->out = calloc(c->out_cap, sizeof(*c->out));
	c->in.buf = malloc(TCP_IBUF_LEN);
	fx_list_add_tail(&ctx->conns, &c->l_all);
	if (!c->sq || !c->rq || !c->arena || !c->rcv || !c->out || !c->in.buf) {
		close(fd);
		tcp_conn_free(c);
		return ferry_err_set(err, ENOMEM, "connection %s: out of memory", peer);
	}

	struct epoll_event ev = {
		.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
		.data.ptr = c,
	};

	set_sockopts(fd, ctx->base.opts.op_timeout_ms);
	if (epoll_ctl(ctx->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int e = errno;

		close(fd);
		tcp_conn_free(c);
		return ferry_err_set(err, e, "connection %s: epoll_ctl: %s", peer, strerror(e));
	}
	c->fd = fd;
	c->rd_ready = true;
	c->wr_ready = true;
	ctx->base.stats.conns_opened++;
	tcp_mark_work(c);
	*out = c;
	return 0;
}

uint32_t tcp_conn_outstanding(const struct fx_conn *conn)
{
	const struct tcp_conn *c = (const struct tcp_conn *)(const void *)conn;

	return (uint32_t)(c->sq_head - c->sq_tail);
}

bool tcp_conn_uses_mr(const struct tcp_conn *c, const struct tcp_mr *mr)
{
	uint32_t lkey = mr->pub.lkey;

	for (uint64_t s = c->sq_tail; s != c->sq_head; s++) {
		const struct tcp_swr *w = tcp_sq_slot(c, s);

		if (w->done || w->inl)
			continue;
		for (int i = 0; i < w->num_sge; i++)
			if (w->sge[i].lkey == lkey)
				return true;
	}
	for (uint64_t s = c->rcv_next; s != c->rcv_head; s++) {
		const struct tcp_rwr *r = tcp_rcv_slot(c, s);

		for (int i = 0; i < r->num_sge; i++)
			if (r->sge[i].lkey == lkey)
				return true;
	}
	for (uint32_t i = 0; i < c->out_n; i++)
		if (c->out[(c->out_head + i) & (c->out_cap - 1)].mr == mr)
			return true;
	if (c->in.state == IN_SINK && c->in.sink_kind == SINK_WRITE_DATA)
		for (uint32_t i = c->in.cur.b; i < c->in.wdst_n; i++)
			if (c->in.wmr[i] == mr)
				return true;
	return false;
}

/* ------------------------------------------------------------------ failure */

static void close_socket(struct tcp_conn *c)
{
	if (c->fd < 0)
		return;
	(void)epoll_ctl(c->ctx->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	c->rd_ready = c->wr_ready = false;
}

/* Complete everything unfinished: the oldest send request with @p oldest, the rest flush. */
static void flush_queues(struct tcp_conn *c, enum fx_wc_status oldest)
{
	struct fx_ctx_stats *st = &c->ctx->base.stats;
	bool first = true;

	for (uint64_t s = c->sq_tail; s != c->sq_head; s++) {
		struct tcp_swr *w = tcp_sq_slot(c, s);

		if (w->done)
			continue;
		w->done = 1;
		w->status = (uint8_t)(first ? oldest : FX_WC_FLUSH_ERR);
		first = false;
		st->ops_failed++;
	}
	for (uint64_t s = c->rcv_next; s != c->rcv_head; s++) {
		struct tcp_rwr *r = tcp_rcv_slot(c, s);

		if (r->done)
			continue;
		r->done = 1;
		r->status = FX_WC_FLUSH_ERR;
		st->ops_failed++;
	}
	c->rcv_next = c->rcv_head;
	/* Receives still in the SRQ are the other connections' now. */
	tcp_srq_forget(c);
	c->rq_tail = c->rq_head;
	c->arena_head = c->arena_used = 0;
	tcp_in_reset(c);
	tcp_sq_advance(c);
	tcp_mark_ready(c);
}

void tcp_conn_fail(struct tcp_conn *c, enum fx_wc_status oldest_status, bool linger, const char *fmt, ...)
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
	flush_queues(c, oldest_status);
	/* Output still referring to the caller's buffers cannot outlive the
	 * completions we just produced: then the ERROR reply is not sent. */
	if (linger && c->out_appmem == 0 && c->fd >= 0) {
		c->linger = true;
		c->linger_deadline = ferry_mono_ns() + c->ctx->op_timeout_ns;
		tcp_arm_timer(c->ctx, c->linger_deadline);
		if (c->wr_ready && tcp_out_flush(c) < 0) {
			tcp_conn_end_linger(c);
			return;
		}
		tcp_mark_work(c);
		return;
	}
	tcp_out_drop(c);
	close_socket(c);
}

void tcp_conn_fail_io(struct tcp_conn *c, int err, const char *what)
{
	if (c->linger) {
		tcp_conn_end_linger(c);
		return;
	}
	if (err == 0)
		tcp_conn_fail(c, FX_WC_RETRY_EXC_ERR, false, "peer %s closed the connection", c->base.peer);
	else if (err == ECONNRESET || err == EPIPE)
		tcp_conn_fail(c, FX_WC_RETRY_EXC_ERR, false, "peer %s reset the connection", c->base.peer);
	else if (err == ETIMEDOUT)
		tcp_conn_fail(c, FX_WC_RETRY_EXC_ERR, false,
			      "peer %s stopped acknowledging (no TCP progress within %u ms)", c->base.peer,
			      c->ctx->base.opts.op_timeout_ms);
	else
		tcp_conn_fail(c, FX_WC_RETRY_EXC_ERR, false, "%s to %s failed: %s", what, c->base.peer,
			      strerror(err));
}

void tcp_conn_end_linger(struct tcp_conn *c)
{
	if (!c->linger)
		return;
	c->linger = false;
	tcp_out_drop(c);
	close_socket(c);
}

void tcp_conn_close(struct fx_conn *conn)
{
	struct tcp_conn *c = tcp_conn_of(conn);

	c->closed = true;
	if (c->base.state == FX_CONN_CONNECTED) {
		/* Best effort: what the socket takes now still goes out (SENDs may complete). */
		if (c->wr_ready && c->out_n)
			(void)tcp_out_flush(c);
		if (c->base.state == FX_CONN_CONNECTED) {
			flush_queues(c, FX_WC_FLUSH_ERR);
			tcp_out_drop(c);
			close_socket(c);
			LOG_INFO("connection to %s closed", c->base.peer);
		}
	} else if (!c->linger) {
		close_socket(c);
	}
	c->base.state = FX_CONN_CLOSED;
	/*
	 * Nothing left to report, but the caller may still hold completions of
	 * this connection from its last fx_poll: retire it, freed at the next one.
	 */
	tcp_conn_maybe_free(c);
}

/* ------------------------------------------------------------------ listen / accept */

int tcp_listen(struct fx_ctx *ctx, const char *host, uint16_t port, struct fx_listener **out,
	       struct ferry_err *err)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL, *ai;
	char service[8];
	int rc, fd = -1, e = 0;

	snprintf(service, sizeof(service), "%u", port);
	rc = getaddrinfo(host, service, &hints, &res);
	if (rc != 0)
		return ferry_err_set(err, EINVAL, "listen %s:%u: %s", host, port, gai_strerror(rc));
	for (ai = res; ai; ai = ai->ai_next) {
		int one = 1;

		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			e = errno;
			continue;
		}
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0)
			break;
		e = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return ferry_err_set(err, e ? e : EADDRNOTAVAIL, "listen %s:%u: %s", host, port,
				     strerror(e ? e : EADDRNOTAVAIL));

	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct fx_listener *l = calloc(1, sizeof(*l));

	if (!l || getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		e = l ? errno : ENOMEM;
		free(l);
		close(fd);
		return ferry_err_set(err, e, "listen %s:%u: %s", host, port, strerror(e));
	}
	l->ctx = ctx;
	l->fd = fd;
	l->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)(void *)&ss)->sin6_port :
						   ((struct sockaddr_in *)(void *)&ss)->sin_port);
	LOG_INFO("listening on %s:%u", host, l->port);
	*out = l;
	return 0;
}

int tcp_accept(struct fx_listener *listener, struct fx_pd *pd, const struct fx_conn_opts *opts,
	       struct fx_conn **out, struct ferry_err *err)
{
	struct tcp_ctx *ctx = tcp_ctx_of(listener->ctx);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char peer[FX_PEER_MAX];
	int fd, rc;

	fd = accept4(listener->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		int e = errno;

		if (e == EAGAIN || e == EWOULDBLOCK || e == ECONNABORTED || e == EINTR)
			return ferry_err_set(err, EAGAIN, "accept: no pending connection");
		return ferry_err_set(err, e, "accept on port %u: %s", listener->port, strerror(e));
	}
	format_addr((struct sockaddr *)&ss, peer, sizeof(peer));

	struct tcp_conn *c;

	rc = conn_new(ctx, pd, fd, opts, peer, &c, err);
	if (rc < 0)
		return rc;
	LOG_INFO("accepted connection from %s", peer);
	*out = &c->base;
	return 0;
}

void tcp_listener_close(struct fx_listener *listener)
{
	close(listener->fd);
	free(listener);
}

/* ------------------------------------------------------------------ connect */

/* Connect one address within @p deadline; 0 or -errno with @p why set. */
static int connect_one(const struct addrinfo *ai, uint64_t deadline, uint32_t timeout_ms, int *out_fd,
		       char *why, size_t why_len)
{
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		snprintf(why, why_len, "socket: %s", strerror(errno));
		return -errno;
	}
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		int e = errno;

		if (e != EINPROGRESS) {
			close(fd);
			snprintf(why, why_len, "%s", strerror(e));
			return -e;
		}
		for (;;) {
			uint64_t now = ferry_mono_ns();
			struct pollfd p = { .fd = fd, .events = POLLOUT };

			if (now >= deadline) {
				close(fd);
				snprintf(why, why_len, "timed out after %u ms", timeout_ms);
				return -ETIMEDOUT;
			}
			int r = poll(&p, 1, (int)((deadline - now + 999999) / 1000000));

			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0) {
				e = errno;
				close(fd);
				snprintf(why, why_len, "poll: %s", strerror(e));
				return -e;
			}
			if (r == 0)
				continue;
			break;
		}
		int soerr = 0;
		socklen_t sl = sizeof(soerr);

		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			soerr = errno;
		if (soerr) {
			close(fd);
			snprintf(why, why_len, "%s", strerror(soerr));
			return -soerr;
		}
	}
	*out_fd = fd;
	return 0;
}

int tcp_connect(struct fx_ctx *bctx, struct fx_pd *pd, const char *host, uint16_t port,
		const struct fx_conn_opts *opts, struct fx_conn **out, struct ferry_err *err)
{
	struct tcp_ctx *ctx = tcp_ctx_of(bctx);
	uint32_t tmo = bctx->opts.connect_timeout_ms;
	uint64_t deadline = ferry_mono_ns() + (uint64_t)tmo * 1000000ull;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL, *ai;
	char service[8], why[160] = "no address", peer[FX_PEER_MAX];
	int rc, fd = -1;

	snprintf(service, sizeof(service), "%u", port);
	rc = getaddrinfo(host, service, &hints, &res);
	if (rc != 0) {
		bctx->stats.conns_failed++;
		LOG_INFO("connect to %s:%u failed: %s", host, port, gai_strerror(rc));
		return ferry_err_set(err, EHOSTUNREACH, "connect %s:%u: %s", host, port, gai_strerror(rc));
	}
	rc = -EHOSTUNREACH;
	for (ai = res; ai; ai = ai->ai_next) {
		rc = connect_one(ai, deadline, tmo, &fd, why, sizeof(why));
		if (rc == 0) {
			format_addr(ai->ai_addr, peer, sizeof(peer));
			break;
		}
		if (rc == -ETIMEDOUT)
			break;
	}
	freeaddrinfo(res);
	if (rc < 0) {
		bctx->stats.conns_failed++;
		LOG_INFO("connect to %s:%u failed: %s", host, port, why);
		return ferry_err_set(err, -rc, "connect %s:%u: %s", host, port, why);
	}

	struct tcp_conn *c;

	rc = conn_new(ctx, pd, fd, opts, peer, &c, err);
	if (rc < 0)
		return rc;
	LOG_INFO("connected to %s", peer);
	*out = &c->base;
	return 0;
}
