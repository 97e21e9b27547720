/*
 * TCP backend, initiator side: posting send/receive work requests, building
 * READ/WRITE/SEND messages, and handling the replies (READ_DATA, WRITE_OK,
 * ERROR) and incoming control messages.
 *
 * Local checks happen at post time. A malformed request (bad opcode, sge
 * count, length, a SEND that is not one whole control message) is refused
 * with -EINVAL and not posted. An sge outside the registrations of the
 * connection's domain is posted and completes with FX_WC_LOC_PROT_ERR; as on
 * a verbs queue pair that error is fatal to the connection (the rest flush).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/transport/tcp/tcp.h"

enum { CHECK_OK = 0, CHECK_PROT = 1 };

/* ------------------------------------------------------------------ send queue */

void tcp_sq_complete(struct tcp_conn *c, uint64_t seq, enum fx_wc_status st)
{
	struct tcp_swr *s = tcp_sq_slot(c, seq);

	if (s->done)
		return;
	s->done = 1;
	s->status = (uint8_t)st;
	if (st == FX_WC_SUCCESS)
		c->ctx->base.stats.ops_completed++;
	else
		c->ctx->base.stats.ops_failed++;
}

void tcp_sq_advance(struct tcp_conn *c)
{
	while (c->sq_tail != c->sq_head) {
		const struct tcp_swr *s = tcp_sq_slot(c, c->sq_tail);

		if (!s->done || s->signaled || s->status != FX_WC_SUCCESS)
			break;
		c->sq_tail++;
	}
	tcp_mark_ready(c);
}

static uint8_t *arena_alloc(struct tcp_conn *c, uint32_t n, uint32_t *charged)
{
	uint32_t pos, waste = 0;

	if (c->arena_used == 0)
		c->arena_head = 0;
	pos = c->arena_head;
	if (pos + n > c->arena_cap) {
		waste = c->arena_cap - pos;
		pos = 0;
	}
	if (c->arena_used + waste + n > c->arena_cap)
		return NULL;
	c->arena_head = pos + n;
	c->arena_used += waste + n;
	*charged = waste + n;
	return c->arena + pos;
}

static uint8_t *inline_area(struct tcp_conn *c, uint64_t seq)
{
	uint32_t per = c->base.opts.max_inline;

	if (!c->inl) {
		c->inl = malloc((size_t)(c->sq_mask + 1) * per);
		if (!c->inl)
			return NULL;
	}
	return c->inl + (size_t)(seq & c->sq_mask) * per;
}

/* Post a work request that failed its local checks: it completes with @p st and the connection fails. */
static void post_failed(struct tcp_conn *c, const struct fx_send_wr *w, uint64_t now, enum fx_wc_status st,
			const char *why)
{
	struct tcp_swr *s = tcp_sq_slot(c, c->sq_head);

	memset(s, 0, offsetof(struct tcp_swr, sge));
	s->wr_id = w->wr_id;
	s->opcode = (uint8_t)w->opcode;
	s->signaled = 1;
	s->post_ns = now;
	c->sq_head++;
	tcp_sq_complete(c, c->sq_head - 1, st);
	tcp_conn_fail(c, FX_WC_FLUSH_ERR, false, "%s (wr_id %llu)", why, (unsigned long long)w->wr_id);
}

static void slot_fill(struct tcp_swr *s, const struct fx_send_wr *w, uint32_t len, uint64_t now, bool inl)
{
	s->wr_id = w->wr_id;
	s->post_ns = now;
	s->byte_len = len;
	s->opcode = (uint8_t)w->opcode;
	s->signaled = (w->flags & FX_WR_SIGNALED) != 0;
	s->done = 0;
	s->status = FX_WC_SUCCESS;
	s->num_sge = (uint8_t)w->num_sge;
	s->inl = inl;
	if (w->num_sge > 0)
		memcpy(s->sge, w->sg_list, (size_t)w->num_sge * sizeof(s->sge[0]));
}

/* Check a READ/WRITE request: -EINVAL, CHECK_PROT or CHECK_OK with *len set. */
static int check_rw(struct tcp_conn *c, const struct fx_send_wr *w, uint32_t *len)
{
	uint64_t total = 0;
	bool inl = w->opcode == FX_OP_WRITE && (w->flags & FX_WR_INLINE);

	if (w->flags & ~(unsigned)(FX_WR_SIGNALED | FX_WR_INLINE))
		return -EINVAL;
	if (w->num_sge < 1 || w->num_sge > FX_MAX_SGE || !w->sg_list)
		return -EINVAL;
	for (int i = 0; i < w->num_sge; i++)
		total += w->sg_list[i].length;
	if (total == 0 || total > FERRY_PAGE_MAX_DATA || w->remote_addr + total < w->remote_addr)
		return -EINVAL;
	if (inl && total > c->base.opts.max_inline)
		return -EINVAL;
	if (!inl) {
		int need = w->opcode == FX_OP_READ ? FX_ACCESS_LOCAL_WRITE : 0;

		for (int i = 0; i < w->num_sge; i++)
			if (!tcp_sge_ok(c->ctx, c->base.pd, &w->sg_list[i], need))
				return CHECK_PROT;
	}
	*len = (uint32_t)total;
	return CHECK_OK;
}

/*
 * Post consecutive READs (or WRITEs) from @p wr as one message. *taken is how
 * many were posted; returns 0, or the error of wr[*taken] (not posted).
 */
static int post_rw_group(struct tcp_conn *c, const struct fx_send_wr *wr, int n, uint64_t now, int *taken)
{
	struct ferry_page_iov vec[FERRY_PAGE_MAX_IOV];
	enum fx_opcode op = wr[0].opcode;
	uint32_t room = c->base.opts.max_send_wr - (uint32_t)(c->sq_head - c->sq_tail);
	uint32_t cnt = 0, pieces = 1;
	uint64_t data = 0;
	int stop = 0;

	*taken = 0;
	while ((int)cnt < n && cnt < FERRY_PAGE_MAX_IOV) {
		const struct fx_send_wr *w = &wr[cnt];
		uint32_t len = 0;
		int rc;

		if (w->opcode != op)
			break;
		if (cnt >= room) {
			stop = -EAGAIN;
			break;
		}
		rc = check_rw(c, w, &len);
		if (rc != CHECK_OK) {
			stop = rc == CHECK_PROT ? 1 : rc;
			break;
		}
		if (data + len > FERRY_PAGE_MAX_DATA)
			break;          /* next message */

		bool inl = op == FX_OP_WRITE && (w->flags & FX_WR_INLINE);
		uint64_t seq = c->sq_head + cnt;

		if (inl) {
			/* Copied now: the caller may reuse the buffer when we return. */
			uint8_t *dst = inline_area(c, seq);

			if (!dst) {
				stop = -ENOMEM;
				break;
			}
			for (int i = 0; i < w->num_sge; i++) {
				memcpy(dst, w->sg_list[i].addr, w->sg_list[i].length);
				dst += w->sg_list[i].length;
			}
		}
		slot_fill(tcp_sq_slot(c, seq), w, len, now, inl);
		vec[cnt].key = w->rkey;
		vec[cnt].length = len;
		vec[cnt].offset = w->remote_addr;
		if (op == FX_OP_WRITE)
			pieces += inl ? 1u : (uint32_t)w->num_sge;
		data += len;
		cnt++;
	}
	if (cnt > 0) {
		uint8_t type = op == FX_OP_READ ? FERRY_PAGE_READ : FERRY_PAGE_WRITE;
		uint32_t hlen = FERRY_PAGE_HDR_LEN + 8u + cnt * FERRY_PAGE_IOV_LEN, charged = 0;
		uint8_t *h = arena_alloc(c, hlen, &charged);
		uint64_t req = TCP_REQID_TAG | c->next_req;

		if (!h || tcp_out_reserve(c, pieces) < 0) {
			/* Cannot happen with the arena sized by max_send_wr; refuse rather than corrupt. */
			if (h)
				c->arena_used -= charged;
			return -ENOMEM;
		}
		int len = ferry_page_encode_rw_prefix(type, req, vec, cnt, op == FX_OP_WRITE ? data : 0, h, hlen);

		if (len != (int)hlen) {
			c->arena_used -= charged;
			LOG_ERR("transport: encoding a %u-entry %s request failed (%d)", cnt,
				ferry_page_type_name(type), len);
			return -EINVAL;
		}
		c->next_req++;
		(void)tcp_out_push(c, h, hlen, OUT_ACT_NONE, 0, NULL, false);
		if (op == FX_OP_WRITE) {
			for (uint32_t k = 0; k < cnt; k++) {
				uint64_t seq = c->sq_head + k;
				struct tcp_swr *s = tcp_sq_slot(c, seq);

				if (s->inl) {
					(void)tcp_out_push(c, inline_area(c, seq), s->byte_len, OUT_ACT_NONE, 0, NULL,
							   false);
					continue;
				}
				for (int i = 0; i < s->num_sge; i++)
					(void)tcp_out_push(c, s->sge[i].addr, s->sge[i].length, OUT_ACT_NONE, 0, NULL,
							   true);
			}
		}

		struct tcp_req *q = tcp_rq_slot(c, c->rq_head++);

		q->req_id = req;
		q->sq_first = c->sq_head;
		q->nwr = cnt;
		q->data_len = (uint32_t)data;
		q->arena_len = charged;
		q->type = type;
		c->sq_head += cnt;
		*taken = (int)cnt;
	}
	if (stop == 1) {
		post_failed(c, &wr[cnt], now, FX_WC_LOC_PROT_ERR,
			    "local protection error: a scatter/gather entry is not inside a registered region "
			    "of the connection's domain with the needed rights");
		*taken = (int)cnt + 1;
		return 0;
	}
	return stop;
}

static int post_one_send(struct tcp_conn *c, const struct fx_send_wr *w, uint64_t now)
{
	uint8_t hb[FERRY_PAGE_HDR_LEN];
	struct ferry_page_hdr h;
	uint64_t total = 0;
	bool inl = (w->flags & FX_WR_INLINE) != 0;

	if (w->flags & ~(unsigned)(FX_WR_SIGNALED | FX_WR_INLINE))
		return -EINVAL;
	if (w->num_sge < 0 || w->num_sge > FX_MAX_SGE || (w->num_sge > 0 && !w->sg_list))
		return -EINVAL;
	for (int i = 0; i < w->num_sge; i++)
		total += w->sg_list[i].length;
	if (total < FERRY_PAGE_HDR_LEN || total > FERRY_PAGE_HDR_LEN + (uint64_t)FERRY_PAGE_MAX_PAYLOAD)
		return -EINVAL;
	if (inl && total > c->base.opts.max_inline)
		return -EINVAL;
	if (!inl) {
		for (int i = 0; i < w->num_sge; i++) {
			if (!tcp_sge_ok(c->ctx, c->base.pd, &w->sg_list[i], 0)) {
				post_failed(c, w, now, FX_WC_LOC_PROT_ERR,
					    "local protection error: SEND buffer is not inside a registered region "
					    "of the connection's domain");
				return 1;
			}
		}
	}
	/* The gathered bytes must be exactly one control message. */
	uint32_t got = 0;

	for (int i = 0; i < w->num_sge && got < sizeof(hb); i++) {
		uint32_t take = w->sg_list[i].length;

		if (take > sizeof(hb) - got)
			take = (uint32_t)sizeof(hb) - got;
		memcpy(hb + got, w->sg_list[i].addr, take);
		got += take;
	}
	if (ferry_page_hdr_decode(hb, sizeof(hb), &h) != FERRY_E_OK ||
	    (uint64_t)h.payload_len != total - FERRY_PAGE_HDR_LEN)
		return -EINVAL;
	if (h.type == FERRY_PAGE_READ || h.type == FERRY_PAGE_READ_DATA || h.type == FERRY_PAGE_WRITE ||
	    h.type == FERRY_PAGE_WRITE_OK)
		return -EINVAL;
	if (h.type == FERRY_PAGE_ERROR && (h.request_id & TCP_REQID_TAG))
		return -EINVAL;

	uint64_t seq = c->sq_head;
	struct tcp_swr *s = tcp_sq_slot(c, seq);

	if (tcp_out_reserve(c, inl ? 1u : (uint32_t)w->num_sge) < 0)
		return -ENOMEM;
	if (inl) {
		uint8_t *dst = inline_area(c, seq), *p;

		if (!dst)
			return -ENOMEM;
		p = dst;
		for (int i = 0; i < w->num_sge; i++) {
			memcpy(p, w->sg_list[i].addr, w->sg_list[i].length);
			p += w->sg_list[i].length;
		}
		slot_fill(s, w, (uint32_t)total, now, true);
		(void)tcp_out_push(c, dst, (uint32_t)total, OUT_ACT_SEND_DONE, seq, NULL, false);
	} else {
		slot_fill(s, w, (uint32_t)total, now, false);
		for (int i = 0; i < w->num_sge; i++)
			(void)tcp_out_push(c, s->sge[i].addr, s->sge[i].length,
					   i == w->num_sge - 1 ? OUT_ACT_SEND_DONE : OUT_ACT_NONE, seq, NULL, true);
	}
	c->sq_head++;
	return 0;
}

int tcp_post_send(struct fx_conn *conn, const struct fx_send_wr *wr, int n, int *post_err)
{
	struct tcp_conn *c = tcp_conn_of(conn);
	struct fx_ctx_stats *st = &c->ctx->base.stats;
	uint64_t now = ferry_mono_ns();
	int i = 0, perr = 0;

	while (i < n) {
		const struct fx_send_wr *w = &wr[i];

		if (c->base.state != FX_CONN_CONNECTED) {
			perr = -ENOTCONN;
			break;
		}
		if (c->sq_head - c->sq_tail >= c->base.opts.max_send_wr) {
			perr = -EAGAIN;
			break;
		}
		if (w->opcode == FX_OP_SEND) {
			int rc = post_one_send(c, w, now);

			if (rc < 0) {
				perr = rc;
				break;
			}
			i++;
			continue;
		}
		if (w->opcode != FX_OP_READ && w->opcode != FX_OP_WRITE) {
			perr = -EINVAL;
			break;
		}
		int taken = 0;
		int rc = post_rw_group(c, wr + i, n - i, now, &taken);

		i += taken;
		if (rc < 0) {
			perr = rc;
			break;
		}
	}
	if (perr == -EAGAIN)
		st->backpressure_events++;
	if (i > 0) {
		st->ops_posted += (uint64_t)i;
		tcp_arm_timer(c->ctx, now + c->ctx->op_timeout_ns);
		if (c->base.state == FX_CONN_CONNECTED && c->wr_ready && c->out_n)
			(void)tcp_out_flush(c);
	}
	if (post_err)
		*post_err = perr;
	return i;
}

/* ------------------------------------------------------------------ receives */

int tcp_post_recv(struct fx_conn *conn, const struct fx_recv_wr *wr, int n, int *post_err)
{
	struct tcp_conn *c = tcp_conn_of(conn);
	struct fx_ctx_stats *st = &c->ctx->base.stats;
	int i, perr = 0;

	for (i = 0; i < n; i++) {
		const struct fx_recv_wr *w = &wr[i];
		uint64_t cap = 0;

		if (c->base.state != FX_CONN_CONNECTED) {
			perr = -ENOTCONN;
			break;
		}
		if (c->rcv_head - c->rcv_tail >= c->base.opts.max_recv_wr) {
			perr = -EAGAIN;
			st->backpressure_events++;
			break;
		}
		if (w->num_sge < 1 || w->num_sge > FX_MAX_SGE || !w->sg_list) {
			perr = -EINVAL;
			break;
		}
		for (int k = 0; k < w->num_sge; k++)
			cap += w->sg_list[k].length;
		if (cap > UINT32_MAX) {
			perr = -EINVAL;
			break;
		}

		struct tcp_rwr *r = tcp_rcv_slot(c, c->rcv_head);

		tcp_rwr_post(r, w, (uint32_t)cap);
		c->rcv_head++;
		for (int k = 0; k < w->num_sge; k++) {
			if (!tcp_sge_ok(c->ctx, c->base.pd, &w->sg_list[k], FX_ACCESS_LOCAL_WRITE)) {
				r->done = 1;
				r->status = FX_WC_LOC_PROT_ERR;
				st->ops_failed++;
				tcp_conn_fail(c, FX_WC_FLUSH_ERR, false,
					      "local protection error: receive buffer (wr_id %llu) is not inside a "
					      "locally writable registered region of the connection's domain",
					      (unsigned long long)w->wr_id);
				break;
			}
		}
		if (r->done) {
			i++;
			break;
		}
	}
	st->ops_posted += (uint64_t)i;
	if (i > 0 && c->in.blocked == BLK_RECV && c->base.state == FX_CONN_CONNECTED) {
		c->in.blocked = BLK_NONE;
		tcp_mark_work(c);
	}
	if (post_err)
		*post_err = i < n ? perr : 0;
	return i;
}

int tcp_init_on_control_hdr(struct tcp_conn *c)
{
	const struct ferry_page_hdr *h = &c->in.hdr;
	uint64_t total = FERRY_PAGE_HDR_LEN + (uint64_t)h->payload_len;

	if (c->rcv_next == c->rcv_head && c->base.opts.srq) {
		int t = tcp_srq_take(c);

		if (t < 0)
			return IN_DEAD;
	}
	if (c->rcv_next == c->rcv_head) {
		/* Receiver not ready: leave the message in the socket (backpressure, RNR). */
		c->in.blocked = BLK_RECV;
		c->ctx->base.stats.backpressure_events++;
		return IN_STOP;
	}

	struct tcp_rwr *r = tcp_rcv_slot(c, c->rcv_next);

	if (total > r->cap) {
		r->done = 1;
		r->status = FX_WC_LOC_LEN_ERR;
		c->ctx->base.stats.ops_failed++;
		c->rcv_next++;
		tcp_conn_fail(c, FX_WC_FLUSH_ERR, false,
			      "received %s message of %llu bytes, larger than the posted receive (%u bytes)",
			      ferry_page_type_name(h->type), (unsigned long long)total, r->cap);
		return IN_DEAD;
	}
	/* The header is still buffered: the sink copies it first. */
	tcp_in_start_sink(c, SINK_RECV, total);
	return IN_CONT;
}

void tcp_init_recv_done(struct tcp_conn *c)
{
	struct tcp_rwr *r = tcp_rcv_slot(c, c->rcv_next);

	r->byte_len = FERRY_PAGE_HDR_LEN + c->in.hdr.payload_len;
	r->done = 1;
	r->status = FX_WC_SUCCESS;
	c->rcv_next++;
	c->ctx->base.stats.ops_completed++;
	tcp_mark_ready(c);
}

/* ------------------------------------------------------------------ replies */

static void complete_head_request(struct tcp_conn *c, enum fx_wc_status st)
{
	struct tcp_req *q = tcp_rq_slot(c, c->rq_tail);

	for (uint32_t k = 0; k < q->nwr; k++)
		tcp_sq_complete(c, q->sq_first + k, st);
	if (q->type == FERRY_PAGE_READ)
		c->ctx->base.stats.bytes_read += q->data_len;
	else
		c->ctx->base.stats.bytes_written += q->data_len;
	c->arena_used -= q->arena_len;
	c->rq_tail++;
	tcp_sq_advance(c);
}

static int on_read_data_prefix(struct tcp_conn *c)
{
	const struct tcp_req *q = tcp_rq_slot(c, c->rq_tail);
	const uint8_t *p = tcp_in_msg(c) + FERRY_PAGE_HDR_LEN;
	uint32_t count = tcp_le32(p), reserved = tcp_le32(p + 4);

	if (count != q->nwr || reserved != 0) {
		tcp_malformed(c, "READ_DATA with count %u for a %u-entry READ", count, q->nwr);
		return IN_DEAD;
	}
	tcp_in_consume(c, FERRY_PAGE_HDR_LEN + 8u);
	tcp_in_start_sink(c, SINK_READ_DATA, q->data_len);
	return IN_CONT;
}

void tcp_init_read_data_done(struct tcp_conn *c)
{
	complete_head_request(c, FX_WC_SUCCESS);
}

static int on_write_ok(struct tcp_conn *c)
{
	const struct tcp_req *q = tcp_rq_slot(c, c->rq_tail);
	struct ferry_page_msg m;
	uint32_t len = FERRY_PAGE_HDR_LEN + c->in.hdr.payload_len;
	int e = ferry_page_decode(tcp_in_msg(c), len, &m);

	if (e != FERRY_E_OK || m.u.write_ok.count != q->nwr) {
		tcp_malformed(c, "bad WRITE_OK: %s", e ? ferry_errcode_str((uint32_t)e) : "wrong count");
		return IN_DEAD;
	}
	tcp_in_consume(c, len);
	complete_head_request(c, FX_WC_SUCCESS);
	return c->base.state == FX_CONN_CONNECTED ? IN_CONT : IN_DEAD;
}

static enum fx_wc_status status_of_code(uint32_t code)
{
	switch (code) {
	case FERRY_E_ACCESS:
	case FERRY_E_OUT_OF_RANGE:
	case FERRY_E_UNKNOWN_EXTENT:
		return FX_WC_REM_ACCESS_ERR;
	case FERRY_E_TRUNCATED:
	case FERRY_E_BAD_MAGIC:
	case FERRY_E_VERSION:
	case FERRY_E_UNKNOWN_TYPE:
	case FERRY_E_BAD_FLAGS:
	case FERRY_E_TOO_LARGE:
	case FERRY_E_MALFORMED:
	case FERRY_E_BAD_ALIGNMENT:
	case FERRY_E_UNEXPECTED:
		return FX_WC_REM_INV_REQ_ERR;
	default:
		return FX_WC_REM_OP_ERR;
	}
}

static int on_error_reply(struct tcp_conn *c)
{
	const struct tcp_req *q = tcp_rq_slot(c, c->rq_tail);
	struct ferry_page_msg m;
	uint32_t len = FERRY_PAGE_HDR_LEN + c->in.hdr.payload_len;
	int e = ferry_page_decode(tcp_in_msg(c), len, &m);

	if (e != FERRY_E_OK) {
		tcp_malformed(c, "bad ERROR reply: %s", ferry_errcode_str((uint32_t)e));
		return IN_DEAD;
	}
	/* The target names the vector entry it refused ("entry N: ..."); that
	 * request gets the error, the others of the message did not run. */
	uint32_t idx = 0;

	if (strncmp(m.u.error.msg, "entry ", 6) == 0) {
		char *end;
		unsigned long v = strtoul(m.u.error.msg + 6, &end, 10);

		if (end != m.u.error.msg + 6 && v < q->nwr)
			idx = (uint32_t)v;
	}
	enum fx_wc_status st = status_of_code(m.u.error.code);

	tcp_in_consume(c, len);
	tcp_sq_complete(c, q->sq_first + idx, st);
	tcp_conn_fail(c, FX_WC_FLUSH_ERR, false, "peer %s refused %s: %s (%s)", c->base.peer,
		      ferry_page_type_name(q->type), m.u.error.msg, ferry_errcode_str(m.u.error.code));
	return IN_DEAD;
}

int tcp_init_on_reply_hdr(struct tcp_conn *c)
{
	const struct ferry_page_hdr *h = &c->in.hdr;

	if (!(h->request_id & TCP_REQID_TAG) || c->rq_tail == c->rq_head) {
		tcp_malformed(c, "unexpected %s (request %#llx): nothing outstanding", ferry_page_type_name(h->type),
			      (unsigned long long)h->request_id);
		return IN_DEAD;
	}

	const struct tcp_req *q = tcp_rq_slot(c, c->rq_tail);

	if (h->request_id != q->req_id) {
		tcp_malformed(c, "%s for request %#llx, expected %#llx", ferry_page_type_name(h->type),
			      (unsigned long long)h->request_id, (unsigned long long)q->req_id);
		return IN_DEAD;
	}
	switch (h->type) {
	case FERRY_PAGE_READ_DATA:
		if (q->type != FERRY_PAGE_READ || h->payload_len != 8u + q->data_len) {
			tcp_malformed(c, "READ_DATA of %u bytes does not answer the outstanding %s of %u bytes",
				      h->payload_len, ferry_page_type_name(q->type), q->data_len);
			return IN_DEAD;
		}
		tcp_in_expect(c, FERRY_PAGE_HDR_LEN + 8u, on_read_data_prefix);
		return IN_CONT;
	case FERRY_PAGE_WRITE_OK:
		if (q->type != FERRY_PAGE_WRITE || h->payload_len > 64) {
			tcp_malformed(c, "WRITE_OK does not answer the outstanding %s", ferry_page_type_name(q->type));
			return IN_DEAD;
		}
		tcp_in_expect(c, FERRY_PAGE_HDR_LEN + h->payload_len, on_write_ok);
		return IN_CONT;
	default: /* ERROR */
		if (h->payload_len > 6u + FERRY_PAGE_ERRMSG_MAX) {
			tcp_malformed(c, "ERROR reply of %u bytes", h->payload_len);
			return IN_DEAD;
		}
		tcp_in_expect(c, FERRY_PAGE_HDR_LEN + h->payload_len, on_error_reply);
		return IN_CONT;
	}
}
