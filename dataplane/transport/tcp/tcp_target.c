/*
 * TCP backend, target side: serving a peer's one-sided READ and WRITE inside
 * fx_poll, with no application involvement (the part an RNIC does in
 * hardware).
 *
 * Every vector entry is checked before any memory is touched: its rkey must
 * name a live region of this connection's protection domain with the remote
 * right, and [offset, offset + length) must lie in [0, region length)
 * (regions are zero-based on TCP). A violation is counted in
 * remote_access_errors, answered with ERROR (FERRY_E_ACCESS or
 * FERRY_E_OUT_OF_RANGE, same request id, message "entry N: ...") and is fatal
 * to the connection, as on an RC queue pair. READ replies point straight into
 * the region (no copy); WRITE data is read from the socket into the region.
 *
 * Backpressure: while the output towards a peer is above the TCP_GATE_*
 * bounds (the peer is not reading its replies), the next request is left in
 * the socket; TCP flow control then stops the peer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/transport/tcp/tcp.h"

bool tcp_target_gate_open(const struct tcp_conn *c)
{
	return c->out_bytes < TCP_GATE_OUT_BYTES && c->out_n < TCP_GATE_OUT_ENTRIES &&
	       c->rep_head - c->rep_tail < TCP_REP_SLOTS;
}

/* Queue an ERROR reply to the current request, then fail the connection once it is out. */
static int refuse(struct tcp_conn *c, uint32_t code, const char *msg)
{
	uint64_t req = c->in.hdr.request_id;
	const char *what = ferry_page_type_name(c->in.hdr.type);
	int n = ferry_page_encode_error(req, code, msg, c->errmsg, sizeof(c->errmsg));

	if (n > 0 && tcp_out_reserve(c, 1) == 0)
		(void)tcp_out_push(c, c->errmsg, (uint32_t)n, OUT_ACT_ERR_SENT, 0, NULL, false);
	tcp_conn_fail(c, FX_WC_FLUSH_ERR, n > 0, "refused %s request %#llx from %s: %s (%s)", what,
		      (unsigned long long)req, c->base.peer, msg, ferry_errcode_str(code));
	return IN_DEAD;
}

static int bad_request(struct tcp_conn *c, int code, const char *what)
{
	char msg[128];

	c->ctx->base.stats.malformed_frames++;
	snprintf(msg, sizeof(msg), "%s: %s", what, ferry_errcode_str((uint32_t)code));
	return refuse(c, (uint32_t)code, msg);
}

static int ensure_scratch(struct tcp_conn *c)
{
	if (c->in.wdst)
		return 0;
	c->in.wdst = calloc(FERRY_PAGE_MAX_IOV, sizeof(*c->in.wdst));
	c->in.wmr = calloc(FERRY_PAGE_MAX_IOV, sizeof(*c->in.wmr));
	return c->in.wdst && c->in.wmr ? 0 : -ENOMEM;
}

/*
 * Resolve every entry of @p rw into in.wdst/in.wmr, or refuse the request.
 * Returns IN_CONT when all entries are allowed.
 */
static int check_entries(struct tcp_conn *c, const struct ferry_page_rw *rw, int right)
{
	struct tcp_ctx *ctx = c->ctx;
	char msg[FERRY_PAGE_ERRMSG_MAX];

	for (uint32_t i = 0; i < rw->count; i++) {
		struct ferry_page_iov v;
		const struct tcp_mr *mr;

		ferry_page_rw_entry(rw, i, &v);
		mr = tcp_keymap_get(&ctx->rkeys, v.key);
		if (!mr || mr->pub.pd != c->base.pd || (mr->bound && mr->bound != c)) {
			/* Same answer for "unknown", "another domain's" and "another connection's window". */
			snprintf(msg, sizeof(msg), "entry %u: rkey 0x%08x is not valid on this connection", i, v.key);
			ctx->base.stats.remote_access_errors++;
			return refuse(c, FERRY_E_ACCESS, msg);
		}
		if (!(mr->pub.access & right)) {
			snprintf(msg, sizeof(msg), "entry %u: region 0x%08x does not allow remote %s", i, v.key,
				 right == FX_ACCESS_REMOTE_READ ? "reads" : "writes");
			ctx->base.stats.remote_access_errors++;
			return refuse(c, FERRY_E_ACCESS, msg);
		}
		if (v.offset > mr->pub.length || v.length > mr->pub.length - v.offset) {
			snprintf(msg, sizeof(msg), "entry %u: [%llu, %llu) is outside region 0x%08x of %zu bytes", i,
				 (unsigned long long)v.offset, (unsigned long long)v.offset + v.length, v.key,
				 mr->pub.length);
			ctx->base.stats.remote_access_errors++;
			return refuse(c, FERRY_E_OUT_OF_RANGE, msg);
		}
		c->in.wdst[i].iov_base = mr->start + v.offset;
		c->in.wdst[i].iov_len = v.length;
		c->in.wmr[i] = (struct tcp_mr *)(uintptr_t)mr;
	}
	return IN_CONT;
}

/* ------------------------------------------------------------------ READ */

static int on_read_req(struct tcp_conn *c)
{
	uint32_t plen = c->in.hdr.payload_len;
	struct ferry_page_rw rw;
	int e = ferry_page_rw_decode(FERRY_PAGE_READ, plen, tcp_in_msg(c) + FERRY_PAGE_HDR_LEN, plen, &rw);

	if (e != FERRY_E_OK)
		return bad_request(c, e, "READ request");
	if (check_entries(c, &rw, FX_ACCESS_REMOTE_READ) != IN_CONT)
		return IN_DEAD;

	uint8_t *h = c->rep[c->rep_head % TCP_REP_SLOTS];
	int n = ferry_page_encode_read_data_prefix(c->in.hdr.request_id, rw.count, rw.data_len, h,
						   TCP_REP_SLOT_LEN);

	if (n <= 0 || tcp_out_reserve(c, 1 + rw.count) < 0) {
		tcp_conn_fail(c, FX_WC_GENERAL_ERR, false, "cannot queue a READ reply (%d)", n);
		return IN_DEAD;
	}
	c->rep_head++;
	(void)tcp_out_push(c, h, (uint32_t)n, OUT_ACT_REPLY_DONE, 0, NULL, false);
	for (uint32_t i = 0; i < rw.count; i++)
		(void)tcp_out_push(c, c->in.wdst[i].iov_base, (uint32_t)c->in.wdst[i].iov_len, OUT_ACT_NONE, 0,
				   c->in.wmr[i], false);
	c->ctx->base.stats.bytes_served_read += rw.data_len;
	tcp_in_consume(c, FERRY_PAGE_HDR_LEN + plen);
	c->in.state = IN_HDR;
	return IN_CONT;
}

/* ------------------------------------------------------------------ WRITE */

static int on_write_vec(struct tcp_conn *c)
{
	uint32_t plen = c->in.hdr.payload_len;
	uint32_t vlen = 8u + c->in.wcount * FERRY_PAGE_IOV_LEN;
	struct ferry_page_rw rw;
	int e = ferry_page_rw_decode(FERRY_PAGE_WRITE, plen, tcp_in_msg(c) + FERRY_PAGE_HDR_LEN, vlen, &rw);

	if (e != FERRY_E_OK)
		return bad_request(c, e, "WRITE request");
	if (check_entries(c, &rw, FX_ACCESS_REMOTE_WRITE) != IN_CONT)
		return IN_DEAD;
	c->in.wdst_n = rw.count;
	c->in.wreq = c->in.hdr.request_id;
	c->in.wlen = rw.data_len;
	tcp_in_consume(c, FERRY_PAGE_HDR_LEN + vlen);
	tcp_in_start_sink(c, SINK_WRITE_DATA, rw.data_len);
	return IN_CONT;
}

static int on_write_count(struct tcp_conn *c)
{
	uint32_t plen = c->in.hdr.payload_len;
	const uint8_t *p = tcp_in_msg(c) + FERRY_PAGE_HDR_LEN;
	uint32_t count = tcp_le32(p);

	if (count == 0 || count > FERRY_PAGE_MAX_IOV || plen < 8u + count * FERRY_PAGE_IOV_LEN) {
		struct ferry_page_rw rw;
		int e = ferry_page_rw_decode(FERRY_PAGE_WRITE, plen, p, 8, &rw);

		return bad_request(c, e != FERRY_E_OK ? e : FERRY_E_MALFORMED, "WRITE request");
	}
	c->in.wcount = count;
	tcp_in_expect(c, FERRY_PAGE_HDR_LEN + 8u + count * FERRY_PAGE_IOV_LEN, on_write_vec);
	return IN_CONT;
}

void tcp_target_write_done(struct tcp_conn *c)
{
	uint8_t *h = c->rep[c->rep_head % TCP_REP_SLOTS];
	int n = ferry_page_encode_write_ok(c->in.wreq, c->in.wcount, h, TCP_REP_SLOT_LEN);

	c->in.wdst_n = 0;
	if (n <= 0 || tcp_out_reserve(c, 1) < 0) {
		tcp_conn_fail(c, FX_WC_GENERAL_ERR, false, "cannot queue a WRITE reply (%d)", n);
		return;
	}
	c->rep_head++;
	(void)tcp_out_push(c, h, (uint32_t)n, OUT_ACT_REPLY_DONE, 0, NULL, false);
	c->ctx->base.stats.bytes_served_written += c->in.wlen;
}

/* ------------------------------------------------------------------ dispatch */

int tcp_target_on_req_hdr(struct tcp_conn *c)
{
	const struct ferry_page_hdr *h = &c->in.hdr;

	if (!tcp_target_gate_open(c)) {
		/* The peer does not read our replies: stop reading its requests. */
		c->in.blocked = BLK_GATE;
		c->ctx->base.stats.backpressure_events++;
		return IN_STOP;
	}
	if (!c->rep) {
		c->rep = calloc(TCP_REP_SLOTS, TCP_REP_SLOT_LEN);
		if (!c->rep || ensure_scratch(c) < 0) {
			tcp_conn_fail(c, FX_WC_GENERAL_ERR, false, "out of memory serving %s", c->base.peer);
			return IN_DEAD;
		}
	}
	if (h->payload_len < 8u)
		return bad_request(c, FERRY_E_MALFORMED, h->type == FERRY_PAGE_READ ? "READ request" : "WRITE request");
	if (h->type == FERRY_PAGE_READ) {
		if (h->payload_len > 8u + FERRY_PAGE_MAX_IOV * FERRY_PAGE_IOV_LEN)
			return bad_request(c, FERRY_E_TOO_LARGE, "READ request");
		tcp_in_expect(c, FERRY_PAGE_HDR_LEN + h->payload_len, on_read_req);
		return IN_CONT;
	}
	tcp_in_expect(c, FERRY_PAGE_HDR_LEN + 8u, on_write_count);
	return IN_CONT;
}
