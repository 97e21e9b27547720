/*
 * Client side of ferry-memsrv (pool_client.h).
 *
 * Control calls are synchronous: post a SEND, then fx_poll until the reply
 * with the same request id has arrived (and our SEND has completed, so the
 * buffer is free again). Everything else fx_poll returns meanwhile is kept:
 *
 *  - completions of the caller's own requests (one-sided READ/WRITE, or
 *    anything on a connection that is not a pool client's control path) go
 *    to a stash that pool_client_poll hands out first, in arrival order;
 *  - control completions of *another* pool client on the same context go to
 *    that client (a context may carry connections to several servers).
 *
 * So the stash and the list of clients belong to the transport context, not
 * to one client: a small registry maps each context in use to that shared
 * state. Only the registry itself is locked; everything per context is used
 * by the context's single thread, as the transport requires.
 */
#include "dataplane/memsrv/pool_client.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/common/mono_time.h"

/* Control receives kept posted: one reply per request, plus an unsolicited notice. */
#define PC_RECV 4u
#define PC_BUF_LEN FERRY_PAGE_CTRL_MAX
#define PC_DEFAULT_TIMEOUT_MS 5000u
/* Marks our control work requests, so a flush of a closed client is never mistaken for the caller's. */
#define PC_WRID_MAGIC 0xfe44c7e100000000ull
#define PC_WRID_MASK  0xffffffff00000000ull
#define PC_SEND_SLOT  0xffu

struct pc_shared;

struct pool_client {
	struct pc_shared *shared;
	struct pool_client *next;        /* shared->clients */
	struct fx_ctx *ctx;
	struct fx_pd *pd;
	struct fx_conn *conn;
	struct fx_mr *buf_mr;
	uint8_t *bufs;                   /* PC_RECV receive buffers, then one send buffer */
	bool send_busy;
	bool closed;                     /* fx_conn_close called: conn is only an identity now */

	char where[80];                  /* "host:port" for messages */
	char name[FERRY_PAGE_NAME_MAX + 1];
	struct ferry_secret secret;
	uint32_t timeout_ms;

	uint64_t next_req;
	uint64_t want_req;               /* request id of the call in progress, 0 = none */
	bool have_reply;
	uint32_t reply_len;
	uint8_t reply[PC_BUF_LEN];

	bool failed;                     /* connection unusable: fail_msg says why */
	char fail_msg[FERRY_ERR_MSG_MAX];
	uint32_t fail_code;              /* FERRY_E_* behind the failure (shutdown notice), 0 if local */
	uint32_t last_code;

	uint64_t session_id, quota;
	uint32_t max_data;
	unsigned attach_rights;
};

_Static_assert(POOL_SHARE_TOKEN_LEN == FERRY_PAGE_TOKEN_LEN && POOL_SHARE_READ == FERRY_PAGE_SHARE_READ &&
		       POOL_SHARE_WRITE == FERRY_PAGE_SHARE_WRITE,
	       "pool_client's share constants are the protocol's");

/* What every pool client on one transport context shares. */
struct pc_shared {
	struct fx_ctx *ctx;
	unsigned refs;
	struct pool_client *clients;
	struct fx_wc *stash;             /* ring of the caller's completions */
	size_t head, count, cap;
	struct pc_shared *next;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pc_shared *registry;

static struct pc_shared *shared_get(struct fx_ctx *ctx)
{
	struct pc_shared *sh;

	pthread_mutex_lock(&registry_lock);
	for (sh = registry; sh && sh->ctx != ctx; sh = sh->next)
		;
	if (!sh) {
		sh = calloc(1, sizeof(*sh));
		if (sh) {
			sh->ctx = ctx;
			sh->next = registry;
			registry = sh;
		}
	}
	if (sh)
		sh->refs++;
	pthread_mutex_unlock(&registry_lock);
	return sh;
}

static void shared_put(struct pc_shared *sh)
{
	pthread_mutex_lock(&registry_lock);
	if (--sh->refs == 0) {
		struct pc_shared **pp;

		for (pp = &registry; *pp != sh; pp = &(*pp)->next)
			;
		*pp = sh->next;
		free(sh->stash);
		free(sh);
	}
	pthread_mutex_unlock(&registry_lock);
}

static int stash_push(struct pc_shared *sh, const struct fx_wc *wc)
{
	if (sh->count == sh->cap) {
		size_t cap = sh->cap ? sh->cap * 2 : 256;
		struct fx_wc *ring = malloc(cap * sizeof(*ring));

		if (!ring)
			return -ENOMEM;
		for (size_t i = 0; i < sh->count; i++)
			ring[i] = sh->stash[(sh->head + i) % sh->cap];
		free(sh->stash);
		sh->stash = ring;
		sh->cap = cap;
		sh->head = 0;
	}
	sh->stash[(sh->head + sh->count) % sh->cap] = *wc;
	sh->count++;
	return 0;
}

/* ------------------------------------------------------------ control path */

static uint8_t *recv_buf(struct pool_client *c, unsigned slot)
{
	return c->bufs + (size_t)slot * PC_BUF_LEN;
}

static uint8_t *send_buf(struct pool_client *c)
{
	return c->bufs + (size_t)PC_RECV * PC_BUF_LEN;
}

static void mark_failed(struct pool_client *c, uint32_t code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void mark_failed(struct pool_client *c, uint32_t code, const char *fmt, ...)
{
	va_list ap;

	if (c->failed)
		return;   /* the first reason is the real one */
	c->failed = true;
	c->fail_code = code;
	va_start(ap, fmt);
	vsnprintf(c->fail_msg, sizeof(c->fail_msg), fmt, ap);
	va_end(ap);
}

static void conn_failed(struct pool_client *c, const struct fx_wc *wc)
{
	const char *why = fx_conn_error(c->conn);

	mark_failed(c, 0, "connection to memory server %s failed: %s", c->where,
		    why && why[0] ? why : fx_wc_status_str(wc->status));
}

static int post_recv(struct pool_client *c, unsigned slot)
{
	struct fx_sge sge = { recv_buf(c, slot), PC_BUF_LEN, c->buf_mr->lkey };
	struct fx_recv_wr wr = { PC_WRID_MAGIC | slot, &sge, 1 };
	int perr = 0;

	if (fx_post_recv(c->conn, &wr, 1, &perr) != 1)
		return perr ? perr : -EIO;
	return 0;
}

static void on_reply(struct pool_client *c, const uint8_t *buf, uint32_t len)
{
	struct ferry_page_hdr hdr;

	if (ferry_page_hdr_decode(buf, len, &hdr) != FERRY_E_OK)
		return;   /* the call in progress times out; nothing better to do with noise */
	if (hdr.request_id == 0 && hdr.type == FERRY_PAGE_ERROR) {
		/* Unsolicited: the server tells us why it is about to close (shutdown). */
		struct ferry_page_msg m;

		if (ferry_page_decode(buf, len, &m) == FERRY_E_OK)
			mark_failed(c, m.u.error.code, "memory server %s: %s", c->where, m.u.error.msg);
		return;
	}
	if (c->want_req == 0 || hdr.request_id != c->want_req)
		return;   /* late reply to a call that already timed out */
	memcpy(c->reply, buf, len);
	c->reply_len = len;
	c->have_reply = true;
}

static void on_control(struct pool_client *c, const struct fx_wc *wc)
{
	unsigned slot = (unsigned)(wc->wr_id & 0xff);

	if (c->closed)
		return;   /* our own flushes after close; the connection may be freed already */
	if (wc->opcode == FX_WC_SEND)
		c->send_busy = false;
	if (wc->status != FX_WC_SUCCESS) {
		conn_failed(c, wc);
		return;
	}
	if (wc->opcode != FX_WC_RECV || slot >= PC_RECV)
		return;
	on_reply(c, recv_buf(c, slot), wc->byte_len);
	/* The message was copied out (or dropped): the buffer can take the next one. */
	int rc = post_recv(c, slot);

	if (rc)
		mark_failed(c, 0, "connection to memory server %s: cannot post a receive: %s", c->where,
			    strerror(-rc));
}

/*
 * Route one completion: a pool client's control traffic to that client, a
 * flush of an already closed client nowhere, anything else to the stash.
 * @return true if it was the caller's (left for the caller to keep).
 */
static bool route(struct pc_shared *sh, const struct fx_wc *wc)
{
	if ((wc->opcode == FX_WC_SEND || wc->opcode == FX_WC_RECV) && (wc->wr_id & PC_WRID_MASK) == PC_WRID_MAGIC) {
		/* Compare pointers only: a closed client's conn may already be freed. */
		for (struct pool_client *c = sh->clients; c; c = c->next) {
			if (c->conn == wc->conn) {
				on_control(c, wc);
				return false;
			}
		}
		return false;
	}
	return true;
}

/* Poll once for up to @timeout_ms; control completions are handled, the caller's stashed. */
static int progress(struct pool_client *c, int timeout_ms)
{
	struct fx_wc wc[32];
	int n = fx_poll(c->ctx, wc, 32, timeout_ms);

	if (n < 0)
		return n;
	for (int i = 0; i < n; i++)
		if (route(c->shared, &wc[i]) && stash_push(c->shared, &wc[i]) != 0) {
			/* Losing a completion would hang the caller later: fail loudly instead. */
			mark_failed(c, 0, "out of memory keeping a completion");
			return -ENOMEM;
		}
	return n;
}

static int remaining_ms(uint64_t deadline)
{
	uint64_t now = ferry_mono_ms();

	return now >= deadline ? 0 : (int)(deadline - now);
}

static int server_errno(uint32_t code)
{
	switch (code) {
	case FERRY_E_AUTH_FAILED:
	case FERRY_E_NOT_AUTHENTICATED:
	case FERRY_E_ACCESS:
	case FERRY_E_BAD_TOKEN:
		return EACCES;
	case FERRY_E_UNKNOWN_ATTACH:
		return ENOENT;
	case FERRY_E_LIMIT:
		return EMLINK;
	case FERRY_E_POOL_FULL:
		return ENOSPC;
	case FERRY_E_QUOTA:
		return EDQUOT;
	case FERRY_E_UNKNOWN_EXTENT:
		return ENOENT;
	case FERRY_E_BUSY:
		return EBUSY;
	case FERRY_E_SHUTDOWN:
		return ESHUTDOWN;
	case FERRY_E_VERSION:
		return EPROTONOSUPPORT;
	case FERRY_E_BAD_ALIGNMENT:
		return EINVAL;
	case FERRY_E_OUT_OF_RANGE:
		return ERANGE;
	case FERRY_E_INTERNAL:
		return EIO;
	default:
		return EPROTO;
	}
}

static int failed_err(struct pool_client *c, const char *what, struct ferry_err *err)
{
	c->last_code = c->fail_code;
	return ferry_err_set(err, c->fail_code ? server_errno(c->fail_code) : ENOTCONN, "%s: %s", what,
			     c->fail_msg);
}

/*
 * Before encoding a request: the send buffer must be ours again (a call that
 * timed out may have left its SEND in flight) and the connection usable.
 */
static int begin_call(struct pool_client *c, const char *what, struct ferry_err *err)
{
	uint64_t deadline = ferry_mono_ms() + c->timeout_ms;

	c->last_code = 0;
	while (c->send_busy && !c->failed) {
		int left = remaining_ms(deadline), rc;

		if (left == 0)
			return ferry_err_set(err, ETIMEDOUT, "%s: previous request to memory server %s still not sent "
					     "after %u ms", what, c->where, c->timeout_ms);
		rc = progress(c, left);
		if (rc < 0)
			return ferry_err_set(err, rc, "%s: fx_poll: %s", what, strerror(-rc));
	}
	if (c->failed)
		return failed_err(c, what, err);
	return 0;
}

/*
 * One synchronous control call. @len bytes (request @req) are already
 * encoded in the send buffer. On success @reply holds the decoded reply of
 * type @expect; an ERROR reply becomes a ferry_err with the server's message.
 */
static int call(struct pool_client *c, int len, uint64_t req, uint8_t expect, struct ferry_page_msg *reply,
		const char *what, struct ferry_err *err)
{
	struct fx_sge sge = { send_buf(c), (uint32_t)len, c->buf_mr->lkey };
	struct fx_send_wr wr = {
		.wr_id = PC_WRID_MAGIC | PC_SEND_SLOT,
		.opcode = FX_OP_SEND,
		.flags = FX_WR_SIGNALED,
		.sg_list = &sge,
		.num_sge = 1,
	};
	uint64_t deadline = ferry_mono_ms() + c->timeout_ms;
	int rc, perr;

	c->last_code = 0;
	if (c->failed)
		return failed_err(c, what, err);
	c->want_req = req;
	c->have_reply = false;
	/* The caller's one-sided requests may fill the send queue: make room, keep their completions. */
	for (;;) {
		perr = 0;
		if (fx_post_send(c->conn, &wr, 1, &perr) == 1)
			break;
		if (perr != -EAGAIN) {
			c->want_req = 0;
			if (perr == -ENOTCONN && fx_conn_error(c->conn)[0])
				mark_failed(c, 0, "connection to memory server %s failed: %s", c->where,
					    fx_conn_error(c->conn));
			if (c->failed)
				return failed_err(c, what, err);
			return ferry_err_set(err, perr ? perr : EIO, "%s: cannot send to memory server %s: %s", what,
					     c->where, strerror(perr ? -perr : EIO));
		}
		if (remaining_ms(deadline) == 0) {
			c->want_req = 0;
			return ferry_err_set(err, ETIMEDOUT, "%s: send queue to memory server %s stayed full for %u ms",
					     what, c->where, c->timeout_ms);
		}
		rc = progress(c, 1);
		if (rc < 0) {
			c->want_req = 0;
			return ferry_err_set(err, rc, "%s: fx_poll: %s", what, strerror(-rc));
		}
	}
	c->send_busy = true;
	while (!c->have_reply || c->send_busy) {
		if (c->failed) {
			c->want_req = 0;
			return failed_err(c, what, err);
		}
		int left = remaining_ms(deadline);

		if (left == 0) {
			c->want_req = 0;
			return ferry_err_set(err, ETIMEDOUT, "%s: no reply from memory server %s within %u ms", what,
					     c->where, c->timeout_ms);
		}
		rc = progress(c, left);
		if (rc < 0) {
			c->want_req = 0;
			return ferry_err_set(err, rc, "%s: fx_poll: %s", what, strerror(-rc));
		}
	}
	c->want_req = 0;
	rc = ferry_page_decode(c->reply, c->reply_len, reply);
	if (rc != FERRY_E_OK)
		return ferry_err_set(err, EPROTO, "%s: undecodable reply from memory server %s: %s", what, c->where,
				     ferry_errcode_str((uint32_t)rc));
	if (reply->hdr.type == FERRY_PAGE_ERROR) {
		c->last_code = reply->u.error.code;
		return ferry_err_set(err, server_errno(reply->u.error.code), "%s", reply->u.error.msg);
	}
	if (reply->hdr.type != expect)
		return ferry_err_set(err, EPROTO, "%s: memory server %s answered %s, expected %s", what, c->where,
				     ferry_page_type_name(reply->hdr.type), ferry_page_type_name(expect));
	return 0;
}

/* ------------------------------------------------------------ connect / close */

static int check_opts(const struct pool_client_opts *o, struct ferry_err *err)
{
	size_t len;

	if (!o || !o->host || !o->name || !o->secret)
		return ferry_err_set(err, EINVAL, "pool client: host, name and secret are required");
	if (o->port == 0)
		return ferry_err_set(err, EINVAL, "pool client: port 0");
	len = strlen(o->name);
	if (len == 0 || len > FERRY_PAGE_NAME_MAX)
		return ferry_err_set(err, EINVAL, "pool client: name must be 1..%u characters", FERRY_PAGE_NAME_MAX);
	for (size_t i = 0; i < len; i++)
		if (o->name[i] < 0x21 || o->name[i] > 0x7e)
			return ferry_err_set(err, EINVAL, "pool client: name '%s' has a non-printable character",
					     o->name);
	return 0;
}

/* Reap what the closed connection flushes, briefly, so its buffers are ours again. */
static void drain_after_close(struct pool_client *c)
{
	for (int i = 0; i < 3; i++)
		if (progress(c, 0) <= 0)
			break;
}

static void client_unlink(struct pool_client *c)
{
	struct pool_client **pp;

	for (pp = &c->shared->clients; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
}

static int handshake(struct pool_client *c, struct ferry_err *err)
{
	uint8_t client_nonce[FERRY_PAGE_NONCE_LEN], server_nonce[FERRY_PAGE_NONCE_LEN], mac[FERRY_PAGE_MAC_LEN];
	struct ferry_page_msg m;
	uint64_t req;
	int rc, len;

	rc = begin_call(c, "hello", err);
	if (rc)
		return rc;
	req = c->next_req++;
	len = ferry_page_encode_hello(req, c->name, FERRY_PAGE_VERSION, FERRY_PAGE_VERSION, send_buf(c), PC_BUF_LEN);
	if (len < 0)
		return ferry_err_set(err, EINVAL, "pool client: cannot encode HELLO: %s", ferry_errcode_str((uint32_t)-len));
	rc = call(c, len, req, FERRY_PAGE_CHALLENGE, &m, "hello", err);
	if (rc)
		return rc;
	if (m.u.challenge.version != FERRY_PAGE_VERSION)
		return ferry_err_set(err, EPROTONOSUPPORT, "memory server %s picked protocol version %u, we speak %u",
				     c->where, m.u.challenge.version, FERRY_PAGE_VERSION);
	memcpy(server_nonce, m.u.challenge.nonce, sizeof(server_nonce));
	ferry_auth_nonce(client_nonce);
	ferry_auth_mac(&c->secret, "ferry-page-c", server_nonce, client_nonce, c->name, strlen(c->name), mac);

	rc = begin_call(c, "authenticate", err);
	if (rc)
		return rc;
	req = c->next_req++;
	len = ferry_page_encode_auth(req, client_nonce, mac, send_buf(c), PC_BUF_LEN);
	if (len < 0)
		return ferry_err_set(err, EINVAL, "pool client: cannot encode AUTH");
	rc = call(c, len, req, FERRY_PAGE_AUTH_OK, &m, "authenticate", err);
	if (rc)
		return rc;
	/* Mutual: a server that cannot prove it knows the secret gets nothing from us. */
	if (ferry_auth_verify(&c->secret, "ferry-page-s", client_nonce, server_nonce, c->name, strlen(c->name),
			      m.u.auth_ok.mac) != 0)
		return ferry_err_set(err, EACCES, "authentication failed: server proof invalid (memory server %s)",
				     c->where);
	c->session_id = m.u.auth_ok.session_id;
	c->quota = m.u.auth_ok.quota_bytes;
	c->max_data = m.u.auth_ok.max_data;
	return 0;
}

int pool_client_connect(struct fx_ctx *ctx, const struct pool_client_opts *opts, struct pool_client **out,
			struct ferry_err *err)
{
	const size_t len = (size_t)(PC_RECV + 1) * PC_BUF_LEN;
	struct pool_client *c;
	int rc;

	if (!ctx || !out)
		return ferry_err_set(err, EINVAL, "pool client: bad arguments");
	rc = check_opts(opts, err);
	if (rc)
		return rc;
	c = calloc(1, sizeof(*c));
	if (!c)
		return ferry_err_set(err, ENOMEM, "pool client: out of memory");
	c->ctx = ctx;
	c->next_req = 1;
	c->timeout_ms = opts->timeout_ms ? opts->timeout_ms : PC_DEFAULT_TIMEOUT_MS;
	c->secret = *opts->secret;
	snprintf(c->name, sizeof(c->name), "%s", opts->name);
	snprintf(c->where, sizeof(c->where), "%s:%u", opts->host, opts->port);

	c->shared = shared_get(ctx);
	if (!c->shared) {
		rc = ferry_err_set(err, ENOMEM, "pool client: out of memory");
		goto err_free;
	}
	rc = fx_pd_alloc(ctx, &c->pd, err);
	if (rc)
		goto err_shared;
	c->bufs = aligned_alloc(4096, len);
	if (!c->bufs) {
		rc = ferry_err_set(err, ENOMEM, "pool client: out of memory");
		goto err_pd;
	}
	memset(c->bufs, 0, len);
	rc = fx_reg_mr(c->pd, c->bufs, len, FX_ACCESS_LOCAL_WRITE, &c->buf_mr, err);
	if (rc)
		goto err_bufs;
	rc = fx_connect(ctx, c->pd, opts->host, opts->port, &opts->conn, &c->conn, err);
	if (rc) {
		ferry_err_prefix(err, "connect to memory server %s: ", c->where);
		goto err_mr;
	}
	c->next = c->shared->clients;
	c->shared->clients = c;
	for (unsigned i = 0; i < PC_RECV; i++) {
		rc = post_recv(c, i);
		if (rc) {
			rc = ferry_err_set(err, rc, "memory server %s: cannot post receives: %s", c->where,
					   strerror(-rc));
			goto err_conn;
		}
	}
	rc = handshake(c, err);
	if (rc)
		goto err_conn;
	*out = c;
	return 0;

err_conn:
	c->closed = true;
	fx_conn_close(c->conn);
	drain_after_close(c);
	client_unlink(c);
	c->conn = NULL;
err_mr:
	fx_dereg_mr(c->buf_mr);
err_bufs:
	free(c->bufs);
err_pd:
	fx_pd_free(c->pd);
err_shared:
	shared_put(c->shared);
err_free:
	ferry_secret_wipe(&c->secret);
	free(c);
	return rc;
}

void pool_client_close(struct pool_client *c)
{
	int rc;

	if (!c)
		return;
	c->closed = true;
	fx_conn_close(c->conn);
	/* Still linked while draining: our own flushes are recognised and dropped, the caller's kept. */
	drain_after_close(c);
	client_unlink(c);
	fx_dereg_mr(c->buf_mr);
	free(c->bufs);
	rc = fx_pd_free(c->pd);
	if (rc)
		LOG_WARN("pool client %s: protection domain still in use (%s): deregister local buffers "
			 "before pool_client_close", c->where, strerror(-rc));
	shared_put(c->shared);
	ferry_secret_wipe(&c->secret);
	free(c);
}

/* ------------------------------------------------------------ calls */

int pool_client_alloc(struct pool_client *c, uint64_t length, struct pool_extent *extent, struct ferry_err *err)
{
	struct ferry_page_msg m;
	uint64_t req = c->next_req++;
	int rc, len;

	rc = begin_call(c, "alloc", err);
	if (rc)
		return rc;
	len = ferry_page_encode_alloc(req, length, 0, send_buf(c), PC_BUF_LEN);
	if (len < 0 || length == 0 || length % 4096)
		return ferry_err_set(err, EINVAL, "alloc: length %llu is not a positive multiple of 4096",
				     (unsigned long long)length);
	rc = call(c, len, req, FERRY_PAGE_ALLOC_OK, &m, "alloc", err);
	if (rc)
		return rc;
	extent->id = m.u.alloc_ok.extent_id;
	extent->rkey = m.u.alloc_ok.rkey;
	extent->base = m.u.alloc_ok.base;
	extent->length = m.u.alloc_ok.length;
	if (extent->length != length)
		return ferry_err_set(err, EPROTO, "alloc: memory server %s gave %llu bytes for %llu requested", c->where,
				     (unsigned long long)extent->length, (unsigned long long)length);
	return 0;
}

int pool_client_free(struct pool_client *c, uint32_t extent_id, struct ferry_err *err)
{
	struct ferry_page_msg m;
	uint64_t req = c->next_req++;
	int rc, len;

	rc = begin_call(c, "free", err);
	if (rc)
		return rc;
	len = ferry_page_encode_free(req, extent_id, send_buf(c), PC_BUF_LEN);
	if (len < 0)
		return ferry_err_set(err, EINVAL, "free: cannot encode FREE");
	rc = call(c, len, req, FERRY_PAGE_FREE_OK, &m, "free", err);
	if (rc)
		return rc;
	if (m.u.free.extent_id != extent_id)
		return ferry_err_set(err, EPROTO, "free: memory server %s freed extent %u, not %u", c->where,
				     m.u.free.extent_id, extent_id);
	return 0;
}

int pool_client_stats(struct pool_client *c, struct ferry_page_stats_ok *stats, struct ferry_err *err)
{
	struct ferry_page_msg m;
	uint64_t req = c->next_req++;
	int rc, len;

	rc = begin_call(c, "stats", err);
	if (rc)
		return rc;
	len = ferry_page_encode_stats(req, send_buf(c), PC_BUF_LEN);
	if (len < 0)
		return ferry_err_set(err, EINVAL, "stats: cannot encode STATS");
	rc = call(c, len, req, FERRY_PAGE_STATS_OK, &m, "stats", err);
	if (rc)
		return rc;
	*stats = m.u.stats_ok;
	return 0;
}

int pool_client_share(struct pool_client *c, uint32_t extent_id, unsigned rights,
		      uint8_t token[POOL_SHARE_TOKEN_LEN], struct ferry_err *err)
{
	struct ferry_page_msg m;
	uint64_t req = c->next_req++;
	int rc, len;

	rc = begin_call(c, "share", err);
	if (rc)
		return rc;
	len = ferry_page_encode_share(req, extent_id, rights, send_buf(c), PC_BUF_LEN);
	if (len < 0)
		return ferry_err_set(err, EINVAL, "share: rights 0x%x are not a non-empty set of "
				     "POOL_SHARE_READ|POOL_SHARE_WRITE", rights);
	rc = call(c, len, req, FERRY_PAGE_SHARE_OK, &m, "share", err);
	if (rc)
		return rc;
	if (m.u.share_ok.extent_id != extent_id || m.u.share_ok.rights != rights)
		return ferry_err_set(err, EPROTO, "share: memory server %s shared extent %u rights 0x%x, asked %u 0x%x",
				     c->where, m.u.share_ok.extent_id, m.u.share_ok.rights, extent_id, rights);
	memcpy(token, m.u.share_ok.token, POOL_SHARE_TOKEN_LEN);
	return 0;
}

int pool_client_unshare(struct pool_client *c, uint32_t extent_id, struct ferry_err *err)
{
	struct ferry_page_msg m;
	uint64_t req = c->next_req++;
	int rc, len;

	rc = begin_call(c, "unshare", err);
	if (rc)
		return rc;
	len = ferry_page_encode_unshare(req, extent_id, send_buf(c), PC_BUF_LEN);
	if (len < 0)
		return ferry_err_set(err, EINVAL, "unshare: cannot encode UNSHARE");
	rc = call(c, len, req, FERRY_PAGE_UNSHARE_OK, &m, "unshare", err);
	if (rc)
		return rc;
	if (m.u.unshare.extent_id != extent_id)
		return ferry_err_set(err, EPROTO, "unshare: memory server %s unshared extent %u, not %u", c->where,
				     m.u.unshare.extent_id, extent_id);
	return 0;
}

int pool_client_attach(struct pool_client *c, const uint8_t token[POOL_SHARE_TOKEN_LEN], struct pool_extent *ext,
		       struct ferry_err *err)
{
	struct ferry_page_msg m;
	uint64_t req = c->next_req++;
	int rc, len;

	rc = begin_call(c, "attach", err);
	if (rc)
		return rc;
	len = ferry_page_encode_attach(req, token, send_buf(c), PC_BUF_LEN);
	if (len < 0)
		return ferry_err_set(err, EINVAL, "attach: no token");
	rc = call(c, len, req, FERRY_PAGE_ATTACH_OK, &m, "attach", err);
	if (rc)
		return rc;
	ext->id = m.u.attach_ok.attach_id;
	ext->rkey = m.u.attach_ok.rkey;
	ext->base = m.u.attach_ok.base;
	ext->length = m.u.attach_ok.length;
	c->attach_rights = m.u.attach_ok.rights;
	return 0;
}

int pool_client_detach(struct pool_client *c, uint32_t attach_id, struct ferry_err *err)
{
	struct ferry_page_msg m;
	uint64_t req = c->next_req++;
	int rc, len;

	rc = begin_call(c, "detach", err);
	if (rc)
		return rc;
	len = ferry_page_encode_detach(req, attach_id, send_buf(c), PC_BUF_LEN);
	if (len < 0)
		return ferry_err_set(err, EINVAL, "detach: cannot encode DETACH");
	rc = call(c, len, req, FERRY_PAGE_DETACH_OK, &m, "detach", err);
	if (rc)
		return rc;
	if (m.u.detach.attach_id != attach_id)
		return ferry_err_set(err, EPROTO, "detach: memory server %s detached %u, not %u", c->where,
				     m.u.detach.attach_id, attach_id);
	return 0;
}

int pool_client_keep(struct pool_client *c, uint32_t extent_id, uint8_t token[POOL_SHARE_TOKEN_LEN],
		     struct ferry_err *err)
{
	struct ferry_page_msg m;
	uint64_t req = c->next_req++;
	int rc, len;

	rc = begin_call(c, "keep", err);
	if (rc)
		return rc;
	len = ferry_page_encode_keep(req, extent_id, send_buf(c), PC_BUF_LEN);
	if (len < 0)
		return ferry_err_set(err, EINVAL, "keep: cannot encode KEEP");
	rc = call(c, len, req, FERRY_PAGE_KEEP_OK, &m, "keep", err);
	if (rc)
		return rc;
	if (m.u.keep.extent_id != extent_id)
		return ferry_err_set(err, EPROTO, "keep: memory server %s kept extent %u, not %u", c->where,
				     m.u.keep.extent_id, extent_id);
	memcpy(token, m.u.keep.token, POOL_SHARE_TOKEN_LEN);
	return 0;
}

int pool_client_claim(struct pool_client *c, const uint8_t token[POOL_SHARE_TOKEN_LEN], struct pool_extent *ext,
		      struct ferry_err *err)
{
	struct ferry_page_msg m;
	uint64_t req = c->next_req++;
	int rc, len;

	rc = begin_call(c, "claim", err);
	if (rc)
		return rc;
	len = ferry_page_encode_claim(req, token, send_buf(c), PC_BUF_LEN);
	if (len < 0)
		return ferry_err_set(err, EINVAL, "claim: no token");
	rc = call(c, len, req, FERRY_PAGE_CLAIM_OK, &m, "claim", err);
	if (rc)
		return rc;
	ext->id = m.u.claim_ok.extent_id;
	ext->rkey = m.u.claim_ok.rkey;
	ext->base = m.u.claim_ok.base;
	ext->length = m.u.claim_ok.length;
	return 0;
}

int pool_client_discard(struct pool_client *c, const uint8_t token[POOL_SHARE_TOKEN_LEN], struct ferry_err *err)
{
	struct ferry_page_msg m;
	uint64_t req = c->next_req++;
	int rc, len;

	rc = begin_call(c, "discard", err);
	if (rc)
		return rc;
	len = ferry_page_encode_discard(req, token, send_buf(c), PC_BUF_LEN);
	if (len < 0)
		return ferry_err_set(err, EINVAL, "discard: no token");
	return call(c, len, req, FERRY_PAGE_DISCARD_OK, &m, "discard", err);
}

unsigned pool_client_last_attach_rights(const struct pool_client *c)
{
	return c->attach_rights;
}

uint32_t pool_client_last_code(const struct pool_client *c)
{
	return c->last_code;
}

uint64_t pool_client_quota(const struct pool_client *c)
{
	return c->quota;
}

uint32_t pool_client_max_data(const struct pool_client *c)
{
	return c->max_data;
}

struct fx_conn *pool_client_conn(struct pool_client *c)
{
	return c->conn;
}

struct fx_pd *pool_client_pd(struct pool_client *c)
{
	return c->pd;
}

int pool_client_poll(struct pool_client *c, struct fx_wc *wc, int max, int timeout_ms)
{
	struct pc_shared *sh = c->shared;
	uint64_t deadline = timeout_ms > 0 ? ferry_mono_ms() + (uint64_t)timeout_ms : 0;
	int n = 0;

	if (max < 0 || (max > 0 && !wc) || timeout_ms < -1)
		return -EINVAL;
	/* What was set aside during control calls comes first, in arrival order. */
	while (n < max && sh->count > 0) {
		wc[n++] = sh->stash[sh->head];
		sh->head = (sh->head + 1) % sh->cap;
		sh->count--;
	}
	for (;;) {
		int wait = n > 0 ? 0 : timeout_ms > 0 ? remaining_ms(deadline) : timeout_ms;

		if (n == max)
			return n;
		/* Poll straight into the caller's array, then squeeze out control completions. */
		int got = fx_poll(c->ctx, wc + n, max - n, wait);

		if (got < 0)
			return n > 0 ? n : got;
		for (int i = n, end = n + got; i < end; i++)
			if (route(sh, &wc[i]))
				wc[n++] = wc[i];
		if (n > 0 || wait == 0)
			return n;
	}
}
