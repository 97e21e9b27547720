/*
 * Per-client session of ferry-memsrv: the state machine
 *
 *     NEW --HELLO--> CHALLENGED --AUTH(ok)--> READY --ALLOC/FREE/STATS--> READY
 *                                             READY --SHARE/ATTACH/DETACH/UNSHARE--> READY
 *                                             READY --KEEP/CLAIM/DISCARD--> READY
 *
 * and its exits. Nothing that names pool memory (an extent, an rkey) is ever
 * sent before READY: before it, ALLOC/FREE/STATS get NOT_AUTHENTICATED and
 * any other wrong message UNEXPECTED, and the connection is closed.
 *
 * Extents live as long as the session: when it ends for any reason their
 * windows are unbound, their memory is scrubbed and returned to the
 * pool, and the closed log line says how much was released. Before that,
 * the shares of its extents are revoked and the attachments it holds to
 * other clients' extents are dropped (share.c). A kept extent (KEEP,
 * kept.c) is no longer the session's: it survives the session's end until
 * some session claims it (CLAIM) or it is discarded.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/memsrv/server_int.h"
#include "dataplane/common/units.h"

static uint8_t *send_buf(const struct session *s, unsigned slot)
{
	return s->bufs + (size_t)slot * SESS_BUF_LEN;
}

static const char *who(const struct session *s)
{
	return s->name[0] ? s->name : "-";
}

/* ------------------------------------------------------------ posting */

static int post_send(struct session *s, unsigned slot, int len)
{
	struct fx_sge sge = { send_buf(s, slot), (uint32_t)len, s->buf_mr->lkey };
	struct fx_send_wr wr = {
		.wr_id = sess_wr_id(s, WR_SEND, slot),
		.opcode = FX_OP_SEND,
		.flags = FX_WR_SIGNALED,   /* the buffer is reusable only after this completion */
		.sg_list = &sge,
		.num_sge = 1,
	};
	int perr = 0;

	if (len < 0) {
		/* An encoder refused: a bug here, not the client's fault. */
		LOG_ERR("client %llu: cannot encode a reply (%s)", (unsigned long long)s->sid,
			ferry_errcode_str((uint32_t)-len));
		return -EPROTO;
	}
	if (fx_post_send(s->conn, &wr, 1, &perr) != 1)
		return perr ? perr : -EIO;
	s->outstanding++;
	s->send_busy[slot] = true;
	return 0;
}

/* Close after a failed post: the connection's own reason beats "not connected". */
static void close_post_failed(struct session *s, const char *what, int rc)
{
	char why[SESS_REASON_MAX];
	const char *conn_err = fx_conn_error(s->conn);

	if (fx_conn_state(s->conn) == FX_CONN_ERROR && conn_err[0])
		snprintf(why, sizeof(why), "%s", conn_err);
	else
		snprintf(why, sizeof(why), "cannot %s: %s", what, strerror(-rc));
	session_close(s, why);
}

/* Post a reply that keeps the session going; a failed post ends it. */
static void reply(struct session *s, unsigned slot, int len)
{
	int rc = post_send(s, slot, len);

	if (rc)
		close_post_failed(s, "send a reply", rc);
}

static int encode_error(struct session *s, unsigned slot, uint64_t req, uint32_t code, const char *msg)
{
	s->srv->c.errors_sent++;
	return ferry_page_encode_error(req, code, msg, send_buf(s, slot), SESS_BUF_LEN);
}

__attribute__((format(printf, 5, 6)))
static void reply_error(struct session *s, unsigned slot, uint64_t req, uint32_t code, const char *fmt, ...)
{
	char msg[FERRY_PAGE_ERRMSG_MAX + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	LOG_DEBUG("client %llu (%s): error %s: %s", (unsigned long long)s->sid, who(s), ferry_errcode_str(code), msg);
	reply(s, slot, encode_error(s, slot, req, code, msg));
}

/*
 * Send a final ERROR and close once it has gone out: closing at once would
 * flush the SEND and the client would see a bare disconnect instead of the
 * reason.
 */
__attribute__((format(printf, 5, 6)))
static void reply_error_close(struct session *s, unsigned slot, uint64_t req, uint32_t code, const char *fmt, ...)
{
	char msg[FERRY_PAGE_ERRMSG_MAX + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(s->close_reason, sizeof(s->close_reason), "%s", msg);
	int rc = post_send(s, slot, encode_error(s, slot, req, code, msg));

	if (rc) {
		/* The client will not read the reason, but the log will. */
		session_close(s, s->close_reason);
		return;
	}
	s->state = SESS_CLOSING;
	s->final_slot = (int)slot;
	s->deadline_ms = ferry_mono_ms() + SESS_LINGER_MS;
}

/* ------------------------------------------------------------ start and close */

int session_start(struct memsrv *srv, uint32_t idx, struct fx_conn *conn, const char *peer, bool refuse,
		  struct ferry_err *err)
{
	const size_t len = (size_t)SESS_SEND_SLOTS * SESS_BUF_LEN;
	struct session *s;
	int rc;

	s = calloc(1, sizeof(*s));
	if (!s)
		return ferry_err_set(err, ENOMEM, "out of memory for a session");
	s->bufs = aligned_alloc(4096, len);
	if (!s->bufs) {
		rc = ferry_err_set(err, ENOMEM, "out of memory for session buffers");
		goto err_free_s;
	}
	memset(s->bufs, 0, len);
	rc = fx_reg_mr(srv->pd, s->bufs, len, FX_ACCESS_LOCAL_WRITE, &s->buf_mr, err);
	if (rc) {
		ferry_err_prefix(err, "register session buffers: ");
		goto err_free_bufs;
	}
	s->srv = srv;
	s->idx = idx;
	s->gen = srv->gens[idx];
	s->sid = ++srv->next_sid;
	s->conn = conn;
	s->final_slot = -1;
	s->state = refuse ? SESS_REFUSING : SESS_NEW;
	s->deadline_ms = ferry_mono_ms() + SESS_AUTH_TIMEOUT_MS;
	snprintf(s->peer, sizeof(s->peer), "%s", peer);
	/* Messages from the SRQ find their session through this (cleared when the session closes). */
	fx_conn_set_user(conn, s);
	srv->sessions[idx] = s;
	srv->nsessions++;
	if (refuse) {
		srv->c.clients_refused++;
		LOG_INFO("client %llu accepted from %s, over max_clients %u: will be refused",
			 (unsigned long long)s->sid, s->peer, srv->cfg->max_clients);
	} else {
		s->counted = true;
		srv->nclients++;
		srv->c.clients_total++;
		LOG_INFO("client %llu accepted from %s", (unsigned long long)s->sid, s->peer);
	}
	return 0;

err_free_bufs:
	free(s->bufs);
err_free_s:
	free(s);
	return rc;
}

/*
 * Revoke every extent's window, scrub the memory so the next owner never
 * sees this client's pages, and give it back to the pool. Called after the
 * connection is closed, so even a window that failed to go away can no
 * longer be reached (it is bound to that connection only).
 */
static void release_extents(struct session *s, uint32_t *count, uint64_t *bytes)
{
	struct memsrv *srv = s->srv;

	*count = 0;
	*bytes = 0;
	for (uint32_t i = 0; i < s->next; i++) {
		struct ea_extent e;
		int rc = s->ext[i].mw ? fx_mw_unbind(s->ext[i].mw) : 0;

		if (rc == 0)
			rc = fx_dereg_mr(s->ext[i].mr);
		if (rc)
			LOG_ERR("client %llu: revoking extent %u failed: %s", (unsigned long long)s->sid,
				s->ext[i].id, strerror(-rc));
		if (ea_lookup(srv->ea, s->acct, s->ext[i].id, &e, NULL) == 0)
			memset((uint8_t *)srv->pool.region.addr + e.offset, 0, e.length);
	}
	if (s->acct) {
		*count = ea_client_close(srv->ea, s->acct, bytes);
		s->acct = NULL;
	}
	free(s->ext);
	s->ext = NULL;
	s->next = s->ext_cap = 0;
}

void session_destroy(struct session *s)
{
	int rc;

	if (s->buf_mr) {
		rc = fx_dereg_mr(s->buf_mr);
		if (rc)
			LOG_WARN("client %llu: deregistering session buffers failed: %s", (unsigned long long)s->sid,
				 strerror(-rc));
		s->buf_mr = NULL;
	}
	free(s->bufs);
	memsrv_session_gone(s->srv, s);
	free(s);
}

void session_close(struct session *s, const char *reason_in)
{
	struct memsrv *srv = s->srv;
	char sz[FERRY_SIZE_STR], reason[SESS_REASON_MAX];
	uint32_t count;
	uint64_t bytes;

	if (s->state == SESS_ZOMBIE)
		return;
	/* The reason may be the connection's own error text, which dies with it. */
	snprintf(reason, sizeof(reason), "%s", reason_in);
	/* Stop remote access first (close), then take the memory back (unbind + scrub). */
	fx_conn_set_user(s->conn, NULL);   /* late SRQ completions of this connection find no session */
	fx_conn_close(s->conn);
	s->conn = NULL;
	/* Other clients' attachments to our extents go before our memory is scrubbed. */
	share_session_closed(s);
	release_extents(s, &count, &bytes);
	if (s->counted) {
		srv->nclients--;
		s->counted = false;
	}
	LOG_INFO("client %llu closed (%s, name %s): %s; released %u extents (%s)", (unsigned long long)s->sid,
		 s->peer, who(s), reason, count, ferry_size_format(bytes, sz, sizeof(sz)));
	s->state = SESS_ZOMBIE;
	s->deadline_ms = ferry_mono_ms() + SESS_ZOMBIE_MAX_MS;
	if (s->outstanding == 0)
		session_destroy(s);
}

void session_tick(struct session *s, uint64_t now)
{
	if (now < s->deadline_ms)
		return;
	switch (s->state) {
	case SESS_NEW:
	case SESS_CHALLENGED:
	case SESS_REFUSING:
		LOG_INFO("client %llu refused (%s): no authentication within %u s", (unsigned long long)s->sid,
			 s->peer, SESS_AUTH_TIMEOUT_MS / 1000);
		session_close(s, "authentication timeout");
		break;
	case SESS_CLOSING:
		session_close(s, s->close_reason);
		break;
	case SESS_ZOMBIE:
		/* The transport promised flushes; do not hold the slot forever if they never come. */
		LOG_WARN("client %llu: %u requests never completed after close; freeing the session anyway",
			 (unsigned long long)s->sid, s->outstanding);
		session_destroy(s);
		break;
	case SESS_READY:
		break;
	}
}

void session_shutdown(struct session *s)
{
	int len;

	if (s->state != SESS_READY || s->send_busy[SESS_NOTICE_SLOT]) {
		if (s->state != SESS_CLOSING && s->state != SESS_ZOMBIE)
			session_close(s, "server shutting down");
		return;
	}
	len = encode_error(s, SESS_NOTICE_SLOT, 0, FERRY_E_SHUTDOWN, "server shutting down");
	snprintf(s->close_reason, sizeof(s->close_reason), "server shutting down");
	if (post_send(s, SESS_NOTICE_SLOT, len) != 0) {
		session_close(s, "server shutting down");
		return;
	}
	s->state = SESS_CLOSING;
	s->final_slot = SESS_NOTICE_SLOT;
	s->deadline_ms = ferry_mono_ms() + SRV_SHUTDOWN_LINGER_MS;
}

/* ------------------------------------------------------------ handlers */

static void on_hello(struct session *s, unsigned slot, const struct ferry_page_msg *m)
{
	const struct ferry_page_hello *h = &m->u.hello;

	if (h->version_min > FERRY_PAGE_VERSION || h->version_max < FERRY_PAGE_VERSION) {
		LOG_INFO("client %llu refused (%s): speaks protocol versions %u..%u, we speak %u",
			 (unsigned long long)s->sid, s->peer, h->version_min, h->version_max, FERRY_PAGE_VERSION);
		reply_error_close(s, slot, m->hdr.request_id, FERRY_E_VERSION,
				  "protocol versions %u..%u not supported; this server speaks %u", h->version_min,
				  h->version_max, FERRY_PAGE_VERSION);
		return;
	}
	memcpy(s->name, h->name, (size_t)h->name_len + 1);
	ferry_auth_nonce(s->server_nonce);
	s->state = SESS_CHALLENGED;
	reply(s, slot, ferry_page_encode_challenge(m->hdr.request_id, FERRY_PAGE_VERSION, s->server_nonce,
						   send_buf(s, slot), SESS_BUF_LEN));
}

static void on_auth(struct session *s, unsigned slot, const struct ferry_page_msg *m)
{
	struct memsrv *srv = s->srv;
	const struct ferry_page_auth *a = &m->u.auth;
	struct ferry_page_auth_ok ok = { 0 };
	struct ferry_err err = { 0 };
	char quota[FERRY_SIZE_STR];
	size_t nlen = strlen(s->name);

	if (ferry_auth_verify(&srv->secret, "ferry-page-c", s->server_nonce, a->nonce, s->name, nlen, a->mac)) {
		srv->c.auth_failures++;
		LOG_INFO("client %llu refused (%s, name %s): authentication failed: client proof invalid",
			 (unsigned long long)s->sid, s->peer, s->name);
		reply_error_close(s, slot, m->hdr.request_id, FERRY_E_AUTH_FAILED,
				  "authentication failed: client proof invalid (do both sides use the same secret?)");
		return;
	}
	if (ea_client_open(srv->ea, srv->cfg->client_quota, &s->acct, &err)) {
		reply_error_close(s, slot, m->hdr.request_id, FERRY_E_INTERNAL, "%s", err.msg);
		return;
	}
	ferry_auth_mac(&srv->secret, "ferry-page-s", a->nonce, s->server_nonce, s->name, nlen, ok.mac);
	ok.session_id = s->sid;
	ok.quota_bytes = srv->cfg->client_quota;
	ok.max_data = FERRY_PAGE_MAX_DATA;
	s->state = SESS_READY;
	LOG_INFO("client %llu authenticated (%s): name %s, quota %s", (unsigned long long)s->sid, s->peer, s->name,
		 ferry_size_format(ok.quota_bytes, quota, sizeof(quota)));
	reply(s, slot, ferry_page_encode_auth_ok(m->hdr.request_id, &ok, send_buf(s, slot), SESS_BUF_LEN));
}

/* Room for one more extent in the session's list. @return 0 or -ENOMEM. */
static int ext_reserve(struct session *s)
{
	uint32_t cap;
	struct sess_extent *ext;

	if (s->next < s->ext_cap)
		return 0;
	cap = s->ext_cap ? s->ext_cap * 2 : 8;
	ext = realloc(s->ext, cap * sizeof(*ext));
	if (!ext)
		return -ENOMEM;
	s->ext = ext;
	s->ext_cap = cap;
	return 0;
}

static void on_alloc(struct session *s, unsigned slot, const struct ferry_page_msg *m)
{
	struct memsrv *srv = s->srv;
	uint64_t req = m->hdr.request_id;
	struct ferry_err err = { 0 };
	struct ferry_page_extent out;
	struct ea_extent e;
	struct fx_mw *mw;
	struct fx_mr *mr;
	int rc;

	rc = ea_alloc(srv->ea, s->acct, m->u.alloc.length, &e, &err);
	if (rc == -EDQUOT) {
		srv->c.alloc_failures_quota++;
		reply_error(s, slot, req, FERRY_E_QUOTA, "%s", err.msg);
		return;
	}
	if (rc == -ENOSPC) {
		srv->c.alloc_failures_full++;
		reply_error(s, slot, req, FERRY_E_POOL_FULL, "%s", err.msg);
		return;
	}
	if (rc) {
		reply_error(s, slot, req, rc == -EINVAL ? FERRY_E_BAD_ALIGNMENT : FERRY_E_INTERNAL, "%s", err.msg);
		return;
	}
	if (ext_reserve(s)) {
		ea_free(srv->ea, s->acct, e.id, NULL);
		reply_error(s, slot, req, FERRY_E_INTERNAL, "out of memory");
		return;
	}
	/*
	 * The extent's own registration, without remote rights, and a window over
	 * all of it bound to this client's connection only: the key is worthless
	 * on any other connection. The bind is queued ahead of the ALLOC_OK below.
	 */
	rc = fx_reg_mr(srv->pd, (uint8_t *)srv->pool.region.addr + e.offset, e.length,
		       FX_ACCESS_LOCAL_WRITE | FX_ACCESS_MW_BIND, &mr, &err);
	if (rc == 0) {
		rc = fx_mw_bind(s->conn, mr, mr->addr, mr->length, FX_ACCESS_REMOTE_READ | FX_ACCESS_REMOTE_WRITE, &mw,
				&err);
		if (rc)
			fx_dereg_mr(mr);
	}
	if (rc) {
		ea_free(srv->ea, s->acct, e.id, NULL);
		LOG_ERR("client %llu: cannot make a %llu-byte extent reachable: %s", (unsigned long long)s->sid,
			(unsigned long long)e.length, err.msg);
		reply_error(s, slot, req, FERRY_E_INTERNAL, "cannot make the extent reachable: %s", err.msg);
		return;
	}
	s->ext[s->next++] = (struct sess_extent){ e.id, mr, mw };
	srv->c.allocs++;
	out = (struct ferry_page_extent){ .extent_id = e.id, .rkey = mw->rkey, .base = mw->remote_base,
					  .length = e.length };
	LOG_DEBUG("client %llu: extent %u of %llu bytes at pool offset %llu, rkey 0x%x", (unsigned long long)s->sid,
		  e.id, (unsigned long long)e.length, (unsigned long long)e.offset, mw->rkey);
	reply(s, slot, ferry_page_encode_alloc_ok(req, &out, send_buf(s, slot), SESS_BUF_LEN));
}

static void on_free(struct session *s, unsigned slot, const struct ferry_page_msg *m)
{
	struct memsrv *srv = s->srv;
	uint32_t id = m->u.free.extent_id;
	uint64_t req = m->hdr.request_id;
	struct ea_extent e;
	uint32_t k;
	int rc;

	/* Only this session's list is searched: another client's id is simply unknown here. */
	for (k = 0; k < s->next && s->ext[k].id != id; k++)
		;
	if (k == s->next || ea_lookup(srv->ea, s->acct, id, &e, NULL) != 0) {
		reply_error(s, slot, req, FERRY_E_UNKNOWN_EXTENT, "unknown extent %u", id);
		return;
	}
	/* Attachers first: once the memory is scrubbed and reused, no revoked key may reach it. */
	uint32_t failed, revoked = share_revoke_extent(s, id, &failed);

	if (failed) {
		reply_error(s, slot, req, FERRY_E_INTERNAL, "cannot revoke %u attachments of extent %u", failed, id);
		return;
	}
	if (revoked)
		LOG_DEBUG("client %llu: freeing extent %u revoked %u attachments", (unsigned long long)s->sid, id,
			  revoked);
	rc = fx_mw_unbind(s->ext[k].mw);
	if (rc == 0) {
		s->ext[k].mw = NULL;
		rc = fx_dereg_mr(s->ext[k].mr);
	}
	if (rc) {
		/* Still reachable: handing the memory to someone else now would leak this client's data. */
		LOG_ERR("client %llu: revoking extent %u failed: %s", (unsigned long long)s->sid, id, strerror(-rc));
		reply_error(s, slot, req, FERRY_E_INTERNAL, "cannot revoke extent %u: %s", id, strerror(-rc));
		return;
	}
	memset((uint8_t *)srv->pool.region.addr + e.offset, 0, e.length);
	ea_free(srv->ea, s->acct, id, NULL);
	s->ext[k] = s->ext[--s->next];
	srv->c.frees++;
	reply(s, slot, ferry_page_encode_free_ok(req, id, send_buf(s, slot), SESS_BUF_LEN));
}

static void on_stats(struct session *s, unsigned slot, const struct ferry_page_msg *m)
{
	struct memsrv *srv = s->srv;
	struct ferry_page_stat st[FERRY_PAGE_MAX_STATS];
	struct fx_ctx_stats fx;
	struct ea_stats ea;
	uint16_t n = 0;

	fx_ctx_get_stats(srv->ctx, &fx);
	ea_get_stats(srv->ea, &ea);
#define STAT(nm, v) do { snprintf(st[n].name, sizeof(st[n].name), "%s", nm); st[n++].value = (v); } while (0)
	STAT("clients_connected", srv->nclients);
	STAT("clients_total", srv->c.clients_total);
	STAT("clients_refused", srv->c.clients_refused);
	STAT("auth_failures", srv->c.auth_failures);
	STAT("allocs", srv->c.allocs);
	STAT("frees", srv->c.frees);
	STAT("alloc_failures_full", srv->c.alloc_failures_full);
	STAT("alloc_failures_quota", srv->c.alloc_failures_quota);
	STAT("bytes_allocated", ea.bytes_allocated);
	STAT("bytes_free", ea.bytes_free);
	STAT("largest_free", ea.largest_free);
	STAT("pool_bytes", ea.pool_bytes);
	STAT("extents", ea.extents);
	STAT("errors_sent", srv->c.errors_sent);
	/* Ours plus the transport's: bad framing never reaches us, it kills the connection there. */
	STAT("malformed", srv->c.malformed + fx.malformed_frames);
	STAT("bytes_served_read", fx.bytes_served_read);
	STAT("bytes_served_written", fx.bytes_served_written);
	STAT("remote_access_errors", fx.remote_access_errors);
	STAT("shares", srv->c.shares);
	STAT("share_refused", srv->c.share_refused);
	STAT("shares_active", srv->c.shares_active);
	STAT("attaches", srv->c.attaches);
	STAT("attach_refused", srv->c.attach_refused);
	STAT("attachments_active", srv->c.attachments_active);
	STAT("detaches", srv->c.detaches);
	STAT("revocations", srv->c.revocations);
	STAT("kept", srv->c.kept);
	STAT("keep_refused", srv->c.keep_refused);
	STAT("claims", srv->c.claims);
	STAT("claim_refused", srv->c.claim_refused);
	STAT("discards", srv->c.discards);
	STAT("kept_active", srv->nkept);
	STAT("kept_bytes", ea_client_bytes(srv->kept_acct));
	STAT("kept_bytes_limit", srv->cfg->kept_bytes);
	STAT("flood_refused", srv->c.flood_refused);
	STAT("flood_closed", srv->c.flood_closed);
	STAT("srq_posted", fx_srq_posted(srv->srq));
	STAT("srq_depth", srv->srq_depth);
	STAT("client_bytes", ea_client_bytes(s->acct));
	STAT("client_quota", ea_client_quota(s->acct));
#undef STAT
	reply(s, slot, ferry_page_encode_stats_ok(m->hdr.request_id, st, n, send_buf(s, slot), SESS_BUF_LEN));
}

/* Find this session's extent @id: its index in s->ext and its allocator record. */
static bool own_extent(struct session *s, uint32_t id, struct ea_extent *e, uint32_t *idx)
{
	uint32_t k;

	for (k = 0; k < s->next && s->ext[k].id != id; k++)
		;
	*idx = k;
	return k < s->next && ea_lookup(s->srv->ea, s->acct, id, e, NULL) == 0;
}

static void on_share(struct session *s, unsigned slot, const struct ferry_page_msg *m)
{
	struct memsrv *srv = s->srv;
	struct ferry_page_share_ok ok = { .extent_id = m->u.share.extent_id, .rights = m->u.share.rights };
	uint64_t req = m->hdr.request_id;
	struct ea_extent e;
	uint32_t k;
	int rc;

	/* Only this session's own extents can be shared; another client's id is just unknown. */
	if (!own_extent(s, ok.extent_id, &e, &k)) {
		srv->c.share_refused++;
		reply_error(s, slot, req, FERRY_E_UNKNOWN_EXTENT, "share: unknown extent %u", ok.extent_id);
		return;
	}
	rc = share_create(s, ok.extent_id, e.offset, e.length, s->ext[k].mr, ok.rights, ok.token);
	if (rc == -EMLINK) {
		srv->c.share_refused++;
		reply_error(s, slot, req, FERRY_E_LIMIT, "share: extent %u already has %u shares (the limit)",
			    ok.extent_id, SHARE_MAX_PER_EXTENT);
		return;
	}
	if (rc) {
		srv->c.share_refused++;
		reply_error(s, slot, req, FERRY_E_INTERNAL, "share: out of memory");
		return;
	}
	LOG_INFO("client %llu (%s): extent %u shared %s", (unsigned long long)s->sid, who(s), ok.extent_id,
		 ok.rights == FERRY_PAGE_SHARE_RIGHTS ? "read-write" :
		 ok.rights == FERRY_PAGE_SHARE_READ ? "read-only" : "write-only");
	reply(s, slot, ferry_page_encode_share_ok(req, &ok, send_buf(s, slot), SESS_BUF_LEN));
	sodium_memzero(ok.token, sizeof(ok.token));
}

static void on_attach(struct session *s, unsigned slot, const struct ferry_page_msg *m)
{
	struct memsrv *srv = s->srv;
	uint64_t req = m->hdr.request_id;
	struct ferry_page_attach_ok ok;
	struct ferry_err err = { 0 };
	struct share *sh = share_find(srv, m->u.attach.token);
	int rc;

	if (!sh) {
		srv->c.attach_refused++;
		LOG_INFO("client %llu (%s, name %s): attach refused: unknown share token", (unsigned long long)s->sid,
			 s->peer, who(s));
		reply_error(s, slot, req, FERRY_E_BAD_TOKEN,
			    "attach: unknown share token (never issued here, revoked, or its owner is gone)");
		return;
	}
	rc = share_attach(sh, s, &ok, &err);
	if (rc) {
		srv->c.attach_refused++;
		if (rc != -EMLINK)
			LOG_ERR("client %llu: cannot register an attachment to extent %u: %s", (unsigned long long)s->sid,
				sh->extent_id, err.msg);
		reply_error(s, slot, req, rc == -EMLINK ? FERRY_E_LIMIT : FERRY_E_INTERNAL, "attach: %s", err.msg);
		return;
	}
	LOG_INFO("client %llu (%s): attachment %u to extent %u of client %llu, rkey 0x%x", (unsigned long long)s->sid,
		 who(s), ok.attach_id, sh->extent_id, (unsigned long long)sh->owner->sid, ok.rkey);
	reply(s, slot, ferry_page_encode_attach_ok(req, &ok, send_buf(s, slot), SESS_BUF_LEN));
}

static void on_detach(struct session *s, unsigned slot, const struct ferry_page_msg *m)
{
	uint32_t id = m->u.detach.attach_id;
	uint64_t req = m->hdr.request_id;
	int rc = share_detach(s, id);

	if (rc == -ENOENT) {
		s->srv->c.share_refused++;
		reply_error(s, slot, req, FERRY_E_UNKNOWN_ATTACH, "detach: no attachment %u in this session", id);
		return;
	}
	if (rc) {
		reply_error(s, slot, req, FERRY_E_INTERNAL, "detach: cannot deregister attachment %u: %s", id,
			    strerror(-rc));
		return;
	}
	reply(s, slot, ferry_page_encode_detach_ok(req, id, send_buf(s, slot), SESS_BUF_LEN));
}

static void on_unshare(struct session *s, unsigned slot, const struct ferry_page_msg *m)
{
	uint32_t id = m->u.unshare.extent_id, failed, revoked, k;
	uint64_t req = m->hdr.request_id;
	struct ea_extent e;

	if (!own_extent(s, id, &e, &k)) {
		s->srv->c.share_refused++;
		reply_error(s, slot, req, FERRY_E_UNKNOWN_EXTENT, "unshare: unknown extent %u", id);
		return;
	}
	/* Unsharing an extent with no share is not an error: the result (no share) is what was asked. */
	revoked = share_revoke_extent(s, id, &failed);
	if (failed) {
		reply_error(s, slot, req, FERRY_E_INTERNAL, "unshare: %u attachments of extent %u would not go away",
			    failed, id);
		return;
	}
	LOG_INFO("client %llu (%s): extent %u unshared, %u attachments revoked", (unsigned long long)s->sid, who(s),
		 id, revoked);
	reply(s, slot, ferry_page_encode_unshare_ok(req, id, revoked, send_buf(s, slot), SESS_BUF_LEN));
}

/*
 * KEEP: the extent leaves the session (kept.c). Accounting moves first
 * (it is what can be refused), then every way in is closed: shares
 * revoked, our window unbound. If a window will not go away, the move is
 * undone and the extent stays ours.
 */
static void on_keep(struct session *s, unsigned slot, const struct ferry_page_msg *m)
{
	struct memsrv *srv = s->srv;
	uint32_t id = m->u.keep.extent_id, k, failed = 0, revoked;
	uint8_t token[FERRY_PAGE_TOKEN_LEN];
	uint64_t req = m->hdr.request_id;
	struct ferry_err err = { 0 };
	struct kept **link;
	struct ea_extent e;
	int rc;

	if (!own_extent(s, id, &e, &k)) {
		srv->c.keep_refused++;
		reply_error(s, slot, req, FERRY_E_UNKNOWN_EXTENT, "keep: unknown extent %u", id);
		return;
	}
	rc = kept_add(srv, s, id, s->ext[k].mr, token, &err);
	if (rc) {
		srv->c.keep_refused++;
		reply_error(s, slot, req, rc == -EMLINK || rc == -EPERM ? FERRY_E_LIMIT : FERRY_E_INTERNAL, "%s",
			    err.msg);
		return;
	}
	revoked = share_revoke_extent(s, id, &failed);
	if (!failed)
		rc = fx_mw_unbind(s->ext[k].mw);
	if (failed || rc) {
		/* Still reachable by someone: it must not change hands. Undo the move. */
		kept_find(srv, token, &link);
		kept_unlink(srv, link);
		srv->c.kept--;
		srv->c.keep_refused++;
		ea_transfer(srv->ea, srv->kept_acct, id, s->acct, NULL);
		sodium_memzero(token, sizeof(token));
		LOG_ERR("client %llu: keep extent %u: its windows would not go away", (unsigned long long)s->sid, id);
		reply_error(s, slot, req, FERRY_E_INTERNAL, "keep: cannot revoke access to extent %u", id);
		return;
	}
	s->ext[k] = s->ext[--s->next];
	LOG_INFO("client %llu (%s): extent %u (%llu bytes) kept%s; %u kept now", (unsigned long long)s->sid, who(s),
		 id, (unsigned long long)e.length, revoked ? ", its attachments revoked" : "", srv->nkept);
	reply(s, slot, ferry_page_encode_keep_ok(req, id, token, send_buf(s, slot), SESS_BUF_LEN));
	sodium_memzero(token, sizeof(token));
}

/* CLAIM: a kept extent becomes this session's, reachable from its connection only; the token is spent. */
static void on_claim(struct session *s, unsigned slot, const struct ferry_page_msg *m)
{
	struct memsrv *srv = s->srv;
	uint64_t req = m->hdr.request_id;
	struct ferry_err err = { 0 };
	struct ferry_page_extent out;
	struct kept **link, *kp = kept_find(srv, m->u.claim.token, &link);
	struct fx_mw *mw;
	int rc;

	if (!kp) {
		srv->c.claim_refused++;
		LOG_INFO("client %llu (%s, name %s): claim refused: unknown claim token", (unsigned long long)s->sid,
			 s->peer, who(s));
		reply_error(s, slot, req, FERRY_E_BAD_TOKEN,
			    "claim: unknown claim token (never issued here, already claimed or discarded)");
		return;
	}
	if (ext_reserve(s)) {
		reply_error(s, slot, req, FERRY_E_INTERNAL, "claim: out of memory");
		return;
	}
	rc = ea_transfer(srv->ea, srv->kept_acct, kp->extent_id, s->acct, &err);
	if (rc) {
		srv->c.claim_refused++;
		reply_error(s, slot, req, rc == -EDQUOT ? FERRY_E_QUOTA : FERRY_E_INTERNAL, "claim: %s", err.msg);
		return;
	}
	rc = fx_mw_bind(s->conn, kp->mr, kp->mr->addr, kp->mr->length, FX_ACCESS_REMOTE_READ | FX_ACCESS_REMOTE_WRITE,
			&mw, &err);
	if (rc) {
		ea_transfer(srv->ea, s->acct, kp->extent_id, srv->kept_acct, NULL);
		srv->c.claim_refused++;
		LOG_ERR("client %llu: cannot make kept extent %u reachable: %s", (unsigned long long)s->sid,
			kp->extent_id, err.msg);
		reply_error(s, slot, req, FERRY_E_INTERNAL, "claim: cannot make the extent reachable: %s", err.msg);
		return;
	}
	s->ext[s->next++] = (struct sess_extent){ kp->extent_id, kp->mr, mw };
	out = (struct ferry_page_extent){ .extent_id = kp->extent_id, .rkey = mw->rkey, .base = mw->remote_base,
					  .length = kp->length };
	LOG_INFO("client %llu (%s): claimed extent %u (%llu bytes) kept by client %llu", (unsigned long long)s->sid,
		 who(s), kp->extent_id, (unsigned long long)kp->length, (unsigned long long)kp->from_sid);
	kept_unlink(srv, link);
	srv->c.claims++;
	reply(s, slot, ferry_page_encode_claim_ok(req, &out, send_buf(s, slot), SESS_BUF_LEN));
}

static void on_discard(struct session *s, unsigned slot, const struct ferry_page_msg *m)
{
	struct memsrv *srv = s->srv;
	uint64_t req = m->hdr.request_id, length = 0;
	struct kept **link, *kp = kept_find(srv, m->u.claim.token, &link);
	uint32_t id;
	int rc;

	if (!kp) {
		srv->c.claim_refused++;
		reply_error(s, slot, req, FERRY_E_BAD_TOKEN,
			    "discard: unknown claim token (never issued here, already claimed or discarded)");
		return;
	}
	id = kp->extent_id;
	rc = kept_discard(srv, link, &length);
	if (rc) {
		reply_error(s, slot, req, FERRY_E_INTERNAL, "discard: cannot deregister kept extent %u: %s", id,
			    strerror(-rc));
		return;
	}
	LOG_INFO("client %llu (%s): kept extent %u (%llu bytes) discarded", (unsigned long long)s->sid, who(s), id,
		 (unsigned long long)length);
	reply(s, slot, ferry_page_encode_discard_ok(req, length, send_buf(s, slot), SESS_BUF_LEN));
}

/* ------------------------------------------------------------ dispatch */

static void on_malformed(struct session *s, unsigned slot, const uint8_t *buf, uint32_t len, int code)
{
	struct ferry_page_hdr hdr;
	bool hdr_ok = ferry_page_hdr_decode(buf, len, &hdr) == FERRY_E_OK;
	/* Over SEND/RECV the transport frames messages; ours is sane if the header agrees with it. */
	bool framing_ok = hdr_ok && (uint64_t)hdr.payload_len + FERRY_PAGE_HDR_LEN == len;
	uint64_t req = hdr_ok ? hdr.request_id : 0;
	const char *type = hdr_ok ? ferry_page_type_name(hdr.type) : "unparseable";

	s->srv->c.malformed++;
	if (s->state == SESS_READY && framing_ok) {
		reply_error(s, slot, req, (uint32_t)code, "malformed %s message: %s", type, ferry_errcode_str((uint32_t)code));
		return;
	}
	/* Unauthenticated peers get no second chance. */
	LOG_INFO("client %llu refused (%s): malformed %s message (%s)", (unsigned long long)s->sid, s->peer, type,
		 ferry_errcode_str((uint32_t)code));
	reply_error_close(s, slot, req, (uint32_t)code, "malformed %s message: %s", type,
			  ferry_errcode_str((uint32_t)code));
}

static void on_message(struct session *s, unsigned slot, const uint8_t *buf, uint32_t len)
{
	struct ferry_page_msg m;
	int rc = ferry_page_decode(buf, len, &m);
	uint64_t req;

	if (rc != FERRY_E_OK) {
		on_malformed(s, slot, buf, len, rc);
		return;
	}
	req = m.hdr.request_id;
	if (s->state == SESS_REFUSING) {
		/* Answer the first message, so the client reads the reason before the close. */
		LOG_INFO("client %llu refused (%s): busy, %u clients connected (max_clients %u)",
			 (unsigned long long)s->sid, s->peer, s->srv->nclients, s->srv->cfg->max_clients);
		reply_error_close(s, slot, req, FERRY_E_BUSY, "server busy: %u clients connected (max_clients %u)",
				  s->srv->nclients, s->srv->cfg->max_clients);
		return;
	}
	switch (m.hdr.type) {
	case FERRY_PAGE_HELLO:
		if (s->state == SESS_NEW) {
			on_hello(s, slot, &m);
			return;
		}
		break;
	case FERRY_PAGE_AUTH:
		if (s->state == SESS_CHALLENGED) {
			on_auth(s, slot, &m);
			return;
		}
		break;
	case FERRY_PAGE_ALLOC:
	case FERRY_PAGE_FREE:
	case FERRY_PAGE_STATS:
	case FERRY_PAGE_SHARE:
	case FERRY_PAGE_ATTACH:
	case FERRY_PAGE_DETACH:
	case FERRY_PAGE_UNSHARE:
	case FERRY_PAGE_KEEP:
	case FERRY_PAGE_CLAIM:
	case FERRY_PAGE_DISCARD:
		if (s->state != SESS_READY) {
			LOG_INFO("client %llu refused (%s): %s before authentication", (unsigned long long)s->sid,
				 s->peer, ferry_page_type_name(m.hdr.type));
			reply_error_close(s, slot, req, FERRY_E_NOT_AUTHENTICATED, "%s before authentication",
					  ferry_page_type_name(m.hdr.type));
			return;
		}
		switch (m.hdr.type) {
		case FERRY_PAGE_ALLOC:
			on_alloc(s, slot, &m);
			break;
		case FERRY_PAGE_FREE:
			on_free(s, slot, &m);
			break;
		case FERRY_PAGE_SHARE:
			on_share(s, slot, &m);
			break;
		case FERRY_PAGE_ATTACH:
			on_attach(s, slot, &m);
			break;
		case FERRY_PAGE_DETACH:
			on_detach(s, slot, &m);
			break;
		case FERRY_PAGE_UNSHARE:
			on_unshare(s, slot, &m);
			break;
		case FERRY_PAGE_KEEP:
			on_keep(s, slot, &m);
			break;
		case FERRY_PAGE_CLAIM:
			on_claim(s, slot, &m);
			break;
		case FERRY_PAGE_DISCARD:
			on_discard(s, slot, &m);
			break;
		default:
			on_stats(s, slot, &m);
			break;
		}
		return;
	default:
		break;
	}
	/* A valid message in the wrong state. An authenticated client keeps its session. */
	if (s->state == SESS_READY) {
		reply_error(s, slot, req, FERRY_E_UNEXPECTED, "unexpected %s", ferry_page_type_name(m.hdr.type));
		return;
	}
	LOG_INFO("client %llu refused (%s): unexpected %s during the handshake", (unsigned long long)s->sid, s->peer,
		 ferry_page_type_name(m.hdr.type));
	reply_error_close(s, slot, req, FERRY_E_UNEXPECTED, "unexpected %s (expected %s)",
			  ferry_page_type_name(m.hdr.type), s->state == SESS_NEW ? "HELLO" : "AUTH");
}

static const char *failure_reason(const struct session *s, const struct fx_wc *wc, char *buf, size_t len)
{
	const char *why = s->conn ? fx_conn_error(s->conn) : "";

	if (why && why[0])
		return why;
	snprintf(buf, len, "%s", fx_wc_status_str(wc->status));
	return buf;
}

void session_on_completion(struct session *s, const struct fx_wc *wc, unsigned kind, unsigned slot)
{
	char buf[64];

	s->outstanding--;
	if (kind == WR_SEND && slot < SESS_SEND_SLOTS)
		s->send_busy[slot] = false;
	if (s->state == SESS_ZOMBIE) {
		if (s->outstanding == 0)
			session_destroy(s);
		return;
	}
	if (wc->status != FX_WC_SUCCESS) {
		/* The connection is in error: every other request flushes too. */
		session_close(s, s->state == SESS_CLOSING ? s->close_reason : failure_reason(s, wc, buf, sizeof(buf)));
		return;
	}
	/* A reply went out: its slot is a credit again. Only a closing session waits for a particular one. */
	if (s->state == SESS_CLOSING && (int)slot == s->final_slot)
		session_close(s, s->close_reason);
}

/* The client's credit: a free reply slot, else the BUSY reserve, else -1 (flooding). */
static int take_credit(struct session *s, bool *busy)
{
	for (unsigned i = 0; i < SESS_SLOTS; i++)
		if (!s->send_busy[i]) {
			*busy = false;
			return (int)i;
		}
	*busy = true;
	return s->send_busy[SESS_BUSY_SLOT] ? -1 : (int)SESS_BUSY_SLOT;
}

void session_on_message(struct session *s, const struct fx_wc *wc, const uint8_t *buf)
{
	struct memsrv *srv = s->srv;
	char why[64];
	bool busy;
	int slot;

	if (s->state == SESS_ZOMBIE || s->state == SESS_CLOSING)
		return;   /* what a closing client still says is not read */
	if (wc->status != FX_WC_SUCCESS) {
		session_close(s, failure_reason(s, wc, why, sizeof(why)));
		return;
	}
	slot = take_credit(s, &busy);
	if (slot < 0) {
		srv->c.flood_closed++;
		LOG_INFO("client %llu (%s, name %s) closed: more than %u requests in flight, even after ERROR BUSY",
			 (unsigned long long)s->sid, s->peer, who(s), SESS_SLOTS + 1);
		session_close(s, "flooding: too many requests in flight");
		return;
	}
	if (busy) {
		struct ferry_page_hdr hdr;
		uint64_t req = ferry_page_hdr_decode(buf, wc->byte_len, &hdr) == FERRY_E_OK ? hdr.request_id : 0;

		srv->c.flood_refused++;
		reply_error(s, (unsigned)slot, req, FERRY_E_BUSY, "more than %u requests in flight: wait for replies",
			    SESS_SLOTS);
		return;
	}
	on_message(s, (unsigned)slot, buf, wc->byte_len);
}
