/*
 * TCP backend: the byte stream.
 *
 * Output: a ring of pieces (headers in connection memory, data pointing into
 * registered memory) written with sendmsg(MSG_NOSIGNAL) in batches of up to
 * TCP_OUT_BATCH iovecs. Each piece may carry an action run once it is fully
 * written (complete a SEND, release a reply header slot).
 *
 * Input: a state machine over a staging buffer. Headers and small messages
 * (READ vectors, replies' prefixes, ERROR) are parsed in the buffer; bulk
 * payloads (READ_DATA, WRITE data, received control messages) are "sinks":
 * bytes already buffered are copied, the rest is read straight into the
 * destination with readv, with the staging buffer appended as the last iovec
 * so the next header usually arrives in the same system call.
 *
 * Sockets are edge-triggered; a short read or write means the socket is
 * drained or full (epoll(7)), so rd_ready / wr_ready are cleared then and set
 * again by the next event.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/transport/tcp/tcp.h"

/* ------------------------------------------------------------------ output */

static int out_grow(struct tcp_conn *c)
{
	uint32_t ncap = c->out_cap * 2;
	struct tcp_out *n = malloc((size_t)ncap * sizeof(*n));

	if (!n)
		return -ENOMEM;
	for (uint32_t i = 0; i < c->out_n; i++)
		n[i] = c->out[(c->out_head + i) & (c->out_cap - 1)];
	free(c->out);
	c->out = n;
	c->out_cap = ncap;
	c->out_head = 0;
	return 0;
}

int tcp_out_reserve(struct tcp_conn *c, uint32_t k)
{
	while (c->out_cap - c->out_n < k)
		if (out_grow(c) < 0)
			return -ENOMEM;
	return 0;
}

int tcp_out_push(struct tcp_conn *c, const void *base, uint32_t len, uint8_t act, uint64_t arg,
		 struct tcp_mr *mr, bool appmem)
{
	if (len == 0 && act == OUT_ACT_NONE)
		return 0;
	if (c->out_n == c->out_cap && out_grow(c) < 0)
		return -ENOMEM;

	struct tcp_out *e = &c->out[(c->out_head + c->out_n) & (c->out_cap - 1)];

	e->base = base;
	e->len = len;
	e->act = act;
	e->appmem = appmem;
	e->arg = arg;
	e->mr = mr;
	c->out_n++;
	c->out_bytes += len;
	if (appmem)
		c->out_appmem++;
	return 0;
}

static void out_run_action(struct tcp_conn *c, uint8_t act, uint64_t arg)
{
	switch (act) {
	case OUT_ACT_SEND_DONE:
		tcp_sq_complete(c, arg, FX_WC_SUCCESS);
		tcp_sq_advance(c);
		break;
	case OUT_ACT_REPLY_DONE:
		c->rep_tail++;
		break;
	case OUT_ACT_ERR_SENT:
		if (c->linger && !c->shut_wr && c->fd >= 0) {
			(void)shutdown(c->fd, SHUT_WR);
			c->shut_wr = true;
		}
		break;
	default:
		break;
	}
}

/* Retire @p n written bytes from the head of the ring. */
static void out_consume(struct tcp_conn *c, size_t n)
{
	while (c->out_n) {
		struct tcp_out *e = &c->out[c->out_head];
		size_t left = e->len - c->out_off;

		if (n < left) {
			c->out_off += (uint32_t)n;
			c->out_bytes -= n;
			return;
		}
		n -= left;
		c->out_bytes -= left;
		c->out_off = 0;
		if (e->appmem)
			c->out_appmem--;
		uint8_t act = e->act;
		uint64_t arg = e->arg;

		c->out_head = (c->out_head + 1) & (c->out_cap - 1);
		c->out_n--;
		if (act != OUT_ACT_NONE)
			out_run_action(c, act, arg);
	}
}

int tcp_out_flush(struct tcp_conn *c)
{
	struct iovec iov[TCP_OUT_BATCH];

	while (c->out_n && c->fd >= 0) {
		size_t total = 0;
		int k = 0;

		for (uint32_t i = 0; i < c->out_n && k < TCP_OUT_BATCH; i++) {
			const struct tcp_out *e = &c->out[(c->out_head + i) & (c->out_cap - 1)];
			uint32_t off = i == 0 ? c->out_off : 0;

			if (e->len == off)
				continue;
			iov[k].iov_base = (void *)(uintptr_t)(e->base + off);
			iov[k].iov_len = e->len - off;
			total += iov[k].iov_len;
			k++;
		}
		if (k == 0) {
			out_consume(c, 0);      /* only empty pieces with actions */
			continue;
		}

		struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)k };
		ssize_t n = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			int e = errno;

			if (e == EINTR)
				continue;
			if (e == EAGAIN || e == EWOULDBLOCK) {
				c->wr_ready = false;
				break;
			}
			tcp_conn_fail_io(c, e, "send");
			return -e;
		}
		out_consume(c, (size_t)n);
		if ((size_t)n < total) {
			c->wr_ready = false;     /* socket buffer full */
			break;
		}
	}
	if (c->in.blocked == BLK_GATE && tcp_target_gate_open(c)) {
		c->in.blocked = BLK_NONE;
		tcp_mark_work(c);
	}
	return 0;
}

void tcp_out_drop(struct tcp_conn *c)
{
	c->out_head = 0;
	c->out_n = 0;
	c->out_off = 0;
	c->out_bytes = 0;
	c->out_appmem = 0;
	c->rep_head = c->rep_tail = 0;
}

/* ------------------------------------------------------------------ input */

void tcp_in_reset(struct tcp_conn *c)
{
	struct tcp_in *in = &c->in;

	in->state = IN_HDR;
	in->blocked = BLK_NONE;
	in->rpos = in->wpos = 0;
	in->sink_left = 0;
	in->wdst_n = 0;
	in->on_msg = NULL;
}

void tcp_in_expect(struct tcp_conn *c, uint32_t need, tcp_msg_fn fn)
{
	c->in.state = IN_MSG;
	c->in.need = need;
	c->in.on_msg = fn;
}

void tcp_in_consume(struct tcp_conn *c, uint32_t n)
{
	c->in.rpos += n;
}

void tcp_in_start_sink(struct tcp_conn *c, enum tcp_sink_kind kind, uint64_t len)
{
	c->in.state = IN_SINK;
	c->in.sink_kind = (uint8_t)kind;
	c->in.sink_left = len;
	memset(&c->in.cur, 0, sizeof(c->in.cur));
}

void tcp_malformed(struct tcp_conn *c, const char *fmt, ...)
{
	char why[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	c->ctx->base.stats.malformed_frames++;
	tcp_conn_fail(c, FX_WC_REM_OP_ERR, false, "malformed input from peer %s: %s", c->base.peer, why);
}

/* Read more into the staging buffer. 1: got bytes, 0: nothing now, -1: connection failed. */
static int in_fill(struct tcp_conn *c)
{
	struct tcp_in *in = &c->in;

	if (!c->rd_ready || c->fd < 0)
		return 0;
	if (in->rpos == in->wpos) {
		in->rpos = in->wpos = 0;
	} else if (in->rpos > 0 && (TCP_IBUF_LEN - in->wpos < 4096 ||
				    (in->state == IN_MSG && in->rpos + in->need > TCP_IBUF_LEN))) {
		memmove(in->buf, in->buf + in->rpos, in->wpos - in->rpos);
		in->wpos -= in->rpos;
		in->rpos = 0;
	}
	size_t room = TCP_IBUF_LEN - in->wpos;
	size_t want = in->state == IN_MSG ? in->need - (in->wpos - in->rpos) : FERRY_PAGE_HDR_LEN;

	/* Stage at most TCP_STAGE_LEN: bulk payload behind a header is cheaper
	 * to read straight into its destination than to copy. */
	if (room > TCP_STAGE_LEN && want <= TCP_STAGE_LEN)
		room = TCP_STAGE_LEN;

	for (;;) {
		ssize_t n = recv(c->fd, in->buf + in->wpos, room, MSG_DONTWAIT);

		if (n > 0) {
			in->wpos += (uint32_t)n;
			if ((size_t)n < room && !c->peer_hup)
				c->rd_ready = false;
			return 1;
		}
		if (n == 0) {
			in->eof = true;
			tcp_conn_fail_io(c, 0, "receive");
			return -1;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			c->rd_ready = false;
			return 0;
		}
		tcp_conn_fail_io(c, errno, "receive");
		return -1;
	}
}

/* Current destination segment of the sink; false when the destinations are exhausted. */
static bool seg_at(const struct tcp_conn *c, const struct tcp_cursor *cur, uint8_t **p, uint32_t *len)
{
	const struct tcp_in *in = &c->in;

	switch (in->sink_kind) {
	case SINK_RECV: {
		const struct tcp_rwr *r = tcp_rcv_slot(c, c->rcv_next);

		if (cur->b >= r->num_sge)
			return false;
		*p = r->sge[cur->b].addr;
		*len = r->sge[cur->b].length;
		return true;
	}
	case SINK_READ_DATA: {
		const struct tcp_req *q = tcp_rq_slot(c, c->rq_tail);

		if (cur->a >= q->nwr)
			return false;
		const struct tcp_swr *w = tcp_sq_slot(c, q->sq_first + cur->a);

		*p = w->sge[cur->b].addr;
		*len = w->sge[cur->b].length;
		return true;
	}
	case SINK_WRITE_DATA:
		if (cur->b >= in->wdst_n)
			return false;
		*p = in->wdst[cur->b].iov_base;
		*len = (uint32_t)in->wdst[cur->b].iov_len;
		return true;
	}
	return false;
}

static void seg_next(const struct tcp_conn *c, struct tcp_cursor *cur)
{
	cur->off = 0;
	cur->b++;
	if (c->in.sink_kind == SINK_READ_DATA) {
		const struct tcp_req *q = tcp_rq_slot(c, c->rq_tail);
		const struct tcp_swr *w = tcp_sq_slot(c, q->sq_first + cur->a);

		if (cur->b >= w->num_sge) {
			cur->a++;
			cur->b = 0;
		}
	}
}

/* Move the sink cursor by @p n bytes, copying from @p src when it is not NULL. */
static void sink_move(struct tcp_conn *c, const uint8_t *src, uint64_t n)
{
	struct tcp_cursor *cur = &c->in.cur;

	while (n) {
		uint8_t *p;
		uint32_t len;

		if (!seg_at(c, cur, &p, &len))
			return;        /* cannot happen: lengths were checked */
		uint32_t room = len - cur->off;

		if (room == 0) {
			seg_next(c, cur);
			continue;
		}
		uint32_t take = n < room ? (uint32_t)n : room;

		if (src) {
			memcpy(p + cur->off, src, take);
			src += take;
		}
		cur->off += take;
		n -= take;
		if (cur->off == len)
			seg_next(c, cur);
	}
}

/* Destinations from the cursor, at most @p max iovecs and @p limit bytes. */
static int sink_iov(const struct tcp_conn *c, struct iovec *iov, int max, uint64_t limit, uint64_t *total)
{
	struct tcp_cursor cur = c->in.cur;
	uint64_t t = 0;
	int k = 0;

	while (k < max && t < limit) {
		uint8_t *p;
		uint32_t len;

		if (!seg_at(c, &cur, &p, &len))
			break;
		uint32_t room = len - cur.off;

		if (room) {
			uint64_t piece = room < limit - t ? room : limit - t;

			iov[k].iov_base = p + cur.off;
			iov[k].iov_len = (size_t)piece;
			t += piece;
			k++;
		}
		seg_next(c, &cur);
	}
	*total = t;
	return k;
}

static int sink_done(struct tcp_conn *c)
{
	c->in.state = IN_HDR;
	switch (c->in.sink_kind) {
	case SINK_RECV:
		tcp_init_recv_done(c);
		break;
	case SINK_READ_DATA:
		tcp_init_read_data_done(c);
		break;
	case SINK_WRITE_DATA:
		tcp_target_write_done(c);
		break;
	}
	return c->base.state == FX_CONN_CONNECTED ? IN_CONT : IN_DEAD;
}

static int sink_progress(struct tcp_conn *c)
{
	struct tcp_in *in = &c->in;
	struct iovec iov[TCP_SINK_BATCH + 1];

	while (in->sink_left) {
		uint32_t avail = in->wpos - in->rpos;

		if (avail) {
			uint64_t take = avail < in->sink_left ? avail : in->sink_left;

			sink_move(c, in->buf + in->rpos, take);
			in->rpos += (uint32_t)take;
			in->sink_left -= take;
			continue;
		}
		if (!c->rd_ready)
			return IN_STOP;

		uint64_t dest = 0;
		int k = sink_iov(c, iov, TCP_SINK_BATCH, in->sink_left, &dest);
		size_t want = (size_t)dest;

		in->rpos = in->wpos = 0;
		if (dest == in->sink_left) {
			/* Whatever follows the payload lands in the staging buffer. */
			iov[k].iov_base = in->buf;
			iov[k].iov_len = TCP_IBUF_LEN;
			want += TCP_IBUF_LEN;
			k++;
		}

		ssize_t n = readv(c->fd, iov, k);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				c->rd_ready = false;
				return IN_STOP;
			}
			tcp_conn_fail_io(c, errno, "receive");
			return IN_DEAD;
		}
		if (n == 0) {
			in->eof = true;
			tcp_conn_fail_io(c, 0, "receive");
			return IN_DEAD;
		}
		uint64_t d = (uint64_t)n < dest ? (uint64_t)n : dest;

		sink_move(c, NULL, d);
		in->sink_left -= d;
		if ((uint64_t)n > d)
			in->wpos = (uint32_t)((uint64_t)n - d);
		if ((size_t)n < want && !c->peer_hup)
			c->rd_ready = false;
	}
	return sink_done(c);
}

static int on_header(struct tcp_conn *c)
{
	struct tcp_in *in = &c->in;
	int e = ferry_page_hdr_decode(in->buf + in->rpos, FERRY_PAGE_HDR_LEN, &in->hdr);

	if (e != FERRY_E_OK) {
		tcp_malformed(c, "bad message header: %s", ferry_errcode_str((uint32_t)e));
		return IN_DEAD;
	}
	switch (in->hdr.type) {
	case FERRY_PAGE_READ:
	case FERRY_PAGE_WRITE:
		return tcp_target_on_req_hdr(c);
	case FERRY_PAGE_READ_DATA:
	case FERRY_PAGE_WRITE_OK:
		return tcp_init_on_reply_hdr(c);
	case FERRY_PAGE_ERROR:
		if (in->hdr.request_id & TCP_REQID_TAG)
			return tcp_init_on_reply_hdr(c);
		return tcp_init_on_control_hdr(c);
	default:
		return tcp_init_on_control_hdr(c);
	}
}

static void linger_discard(struct tcp_conn *c)
{
	while (c->rd_ready && c->fd >= 0 && !c->in.eof) {
		ssize_t n = recv(c->fd, c->in.buf, TCP_IBUF_LEN, MSG_DONTWAIT);

		if (n > 0)
			continue;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			c->rd_ready = false;
		else
			c->in.eof = true;       /* EOF or error: the peer is done */
	}
}

bool tcp_in_progress(struct tcp_conn *c)
{
	struct tcp_in *in = &c->in;
	uint32_t msgs = 0;

	if (c->linger) {
		linger_discard(c);
		return false;
	}
	while (c->base.state == FX_CONN_CONNECTED && in->blocked == BLK_NONE) {
		int r;

		switch (in->state) {
		case IN_HDR:
			if (in->wpos - in->rpos < FERRY_PAGE_HDR_LEN) {
				r = in_fill(c);
				if (r <= 0)
					return false;
				continue;
			}
			if (++msgs > TCP_READ_BUDGET_MSGS)
				return true;
			r = on_header(c);
			break;
		case IN_MSG:
			if (in->wpos - in->rpos < in->need) {
				r = in_fill(c);
				if (r <= 0)
					return false;
				continue;
			}
			/* Handlers that do not move on to a sink or another wait are done. */
			in->state = IN_HDR;
			r = in->on_msg(c);
			break;
		default:
			r = sink_progress(c);
			break;
		}
		if (r != IN_CONT)
			return false;
	}
	return false;
}
