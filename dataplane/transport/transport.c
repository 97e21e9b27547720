/*
 * Public transport API: argument checks, option defaults, object counts,
 * then dispatch through the context's backend ops table.
 */
#include "dataplane/transport/transport.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "dataplane/transport/transport_backend.h"

static const struct fx_backend *const backends[] = {
	[FX_KIND_TCP] = &fx_backend_tcp,
#ifdef FERRY_HAVE_RDMA
	[FX_KIND_RDMA] = &fx_backend_rdma,
#else
	[FX_KIND_RDMA] = NULL,
#endif
};

static const char *const kind_names[] = {
	[FX_KIND_TCP] = "tcp",
	[FX_KIND_RDMA] = "rdma",
};

int fx_kind_parse(const char *name, enum fx_kind *kind)
{
	if (!name || !kind)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(kind_names) / sizeof(kind_names[0]); i++) {
		if (strcasecmp(name, kind_names[i]) == 0) {
			*kind = (enum fx_kind)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *fx_kind_name(enum fx_kind kind)
{
	if ((unsigned)kind < sizeof(kind_names) / sizeof(kind_names[0]))
		return kind_names[kind];
	return "unknown";
}

const char *fx_wc_status_str(enum fx_wc_status status)
{
	switch (status) {
	case FX_WC_SUCCESS: return "success";
	case FX_WC_LOC_LEN_ERR: return "local length error";
	case FX_WC_LOC_PROT_ERR: return "local protection error";
	case FX_WC_REM_ACCESS_ERR: return "remote access error";
	case FX_WC_REM_INV_REQ_ERR: return "remote invalid request error";
	case FX_WC_REM_OP_ERR: return "remote operation error";
	case FX_WC_RETRY_EXC_ERR: return "transport retry counter exceeded";
	case FX_WC_FLUSH_ERR: return "work request flushed";
	case FX_WC_GENERAL_ERR: return "general error";
	}
	return "unknown status";
}

void fx_conn_set_error(struct fx_conn *conn, const char *fmt, ...)
{
	va_list ap;

	if (conn->error[0])
		return;
	va_start(ap, fmt);
	vsnprintf(conn->error, sizeof(conn->error), fmt, ap);
	va_end(ap);
	if (!conn->error[0])
		snprintf(conn->error, sizeof(conn->error), "connection failed");
}

/* -------------------------------------------------------------- contexts */

int fx_ctx_create(enum fx_kind kind, const struct fx_ctx_opts *opts, struct fx_ctx **ctx,
		  struct ferry_err *err)
{
	struct fx_ctx_opts o = { 0 };

	if (!ctx)
		return ferry_err_set(err, EINVAL, "fx_ctx_create: no output pointer");
	*ctx = NULL;
	if ((unsigned)kind >= sizeof(backends) / sizeof(backends[0]))
		return ferry_err_set(err, EINVAL, "unknown transport kind %d", (int)kind);
	if (!backends[kind]) {
		if (kind == FX_KIND_RDMA)
			return ferry_err_set(err, ENODEV, "RDMA backend not built yet; use --transport tcp");
		return ferry_err_set(err, ENODEV, "%s backend not built", fx_kind_name(kind));
	}
	if (opts)
		o = *opts;
	if (!o.cq_depth)
		o.cq_depth = FX_DEF_CQ_DEPTH;
	if (!o.op_timeout_ms)
		o.op_timeout_ms = FX_DEF_OP_TIMEOUT_MS;
	if (!o.connect_timeout_ms)
		o.connect_timeout_ms = FX_DEF_CONNECT_TIMEOUT_MS;
	if (!o.poll_spin_us)
		o.poll_spin_us = FX_DEF_POLL_SPIN_US;
	else if (o.poll_spin_us == FX_POLL_SPIN_OFF)
		o.poll_spin_us = 0;
	if (o.op_timeout_ms > 24u * 3600 * 1000 || o.connect_timeout_ms > 24u * 3600 * 1000)
		return ferry_err_set(err, EINVAL, "timeouts above one day are not supported");
	if (o.poll_spin_us > 1000000)
		return ferry_err_set(err, EINVAL, "poll_spin_us %u above 1 s", o.poll_spin_us);

	int rc = backends[kind]->ctx_create(&o, ctx, err);

	if (rc < 0)
		return rc;
	(*ctx)->kind = kind;
	(*ctx)->opts = o;
	return 0;
}

void fx_ctx_destroy(struct fx_ctx *ctx)
{
	if (ctx)
		ctx->ops->ctx_destroy(ctx);
}

enum fx_kind fx_ctx_kind(const struct fx_ctx *ctx)
{
	return ctx->kind;
}

int fx_ctx_fd(const struct fx_ctx *ctx)
{
	return ctx->ops->ctx_fd(ctx);
}

int fx_poll(struct fx_ctx *ctx, struct fx_wc *wc, int max, int timeout_ms)
{
	if (!ctx || max < 0 || (max > 0 && !wc) || timeout_ms < -1)
		return -EINVAL;
	return ctx->ops->poll(ctx, wc, max, timeout_ms);
}

void fx_ctx_get_stats(const struct fx_ctx *ctx, struct fx_ctx_stats *stats)
{
	*stats = ctx->stats;
}

/* -------------------------------------------------------------- domains and registration */

int fx_pd_alloc(struct fx_ctx *ctx, struct fx_pd **pd, struct ferry_err *err)
{
	if (!ctx || !pd)
		return ferry_err_set(err, EINVAL, "fx_pd_alloc: bad arguments");
	int rc = ctx->ops->pd_alloc(ctx, pd, err);

	if (rc == 0)
		ctx->n_pds++;
	return rc;
}

int fx_pd_free(struct fx_pd *pd)
{
	if (!pd)
		return 0;
	if (pd->n_mrs || pd->n_conns || pd->n_srqs || pd->n_mws)
		return -EBUSY;
	struct fx_ctx *ctx = pd->ctx;

	ctx->ops->pd_free(pd);
	ctx->n_pds--;
	return 0;
}

int fx_reg_mr(struct fx_pd *pd, void *addr, size_t length, int access, struct fx_mr **mr,
	      struct ferry_err *err)
{
	if (!pd || !mr)
		return ferry_err_set(err, EINVAL, "fx_reg_mr: bad arguments");
	if (!addr || length == 0)
		return ferry_err_set(err, EINVAL, "fx_reg_mr: empty region");
	if ((uintptr_t)addr + length < (uintptr_t)addr)
		return ferry_err_set(err, EINVAL, "fx_reg_mr: region wraps the address space");
	if (access & ~(FX_ACCESS_LOCAL_WRITE | FX_ACCESS_REMOTE_READ | FX_ACCESS_REMOTE_WRITE | FX_ACCESS_MW_BIND))
		return ferry_err_set(err, EINVAL, "fx_reg_mr: unknown access bits 0x%x", access);
	/* Verbs rule, kept so code that works on TCP also works on RDMA. */
	if ((access & FX_ACCESS_REMOTE_WRITE) && !(access & FX_ACCESS_LOCAL_WRITE))
		return ferry_err_set(err, EINVAL,
				     "fx_reg_mr: FX_ACCESS_REMOTE_WRITE requires FX_ACCESS_LOCAL_WRITE");
	int rc = pd->ctx->ops->reg_mr(pd, addr, length, access, mr, err);

	if (rc == 0)
		pd->n_mrs++;
	return rc;
}

int fx_dereg_mr(struct fx_mr *mr)
{
	if (!mr)
		return 0;
	struct fx_pd *pd = mr->pd;

	if (mr->n_mws)
		return -EBUSY;   /* verbs: windows are bound to it */
	int rc = pd->ctx->ops->dereg_mr(mr);

	if (rc == 0)
		pd->n_mrs--;
	return rc;
}

/* -------------------------------------------------------------- memory windows */

int fx_mw_bind(struct fx_conn *conn, struct fx_mr *mr, void *addr, size_t length, int access, struct fx_mw **mw,
	       struct ferry_err *err)
{
	const int remote = FX_ACCESS_REMOTE_READ | FX_ACCESS_REMOTE_WRITE;

	if (!conn || !mr || !mw)
		return ferry_err_set(err, EINVAL, "fx_mw_bind: bad arguments");
	*mw = NULL;
	if (!conn->ops->mw_bind)
		return ferry_err_set(err, EOPNOTSUPP, "fx_mw_bind: the %s backend has no memory windows",
				     fx_kind_name(conn->ctx->kind));
	if (mr->pd != conn->pd)
		return ferry_err_set(err, EINVAL, "fx_mw_bind: registration and connection are in different domains");
	if (!(mr->access & FX_ACCESS_MW_BIND))
		return ferry_err_set(err, EINVAL, "fx_mw_bind: registration was not made with FX_ACCESS_MW_BIND");
	if ((access & ~remote) || !(access & remote))
		return ferry_err_set(err, EINVAL, "fx_mw_bind: rights 0x%x are not a non-empty set of remote rights",
				     access);
	if ((access & FX_ACCESS_REMOTE_WRITE) && !(mr->access & FX_ACCESS_LOCAL_WRITE))
		return ferry_err_set(err, EINVAL, "fx_mw_bind: remote write needs a locally writable registration");
	if (length == 0 || (uintptr_t)addr < (uintptr_t)mr->addr ||
	    (uintptr_t)addr - (uintptr_t)mr->addr > mr->length || length > mr->length - ((uintptr_t)addr -
											  (uintptr_t)mr->addr))
		return ferry_err_set(err, EINVAL, "fx_mw_bind: range is not inside the registration");
	if (conn->state != FX_CONN_CONNECTED)
		return ferry_err_set(err, ENOTCONN, "fx_mw_bind: connection to %s is not connected", conn->peer);
	int rc = conn->ops->mw_bind(conn, mr, addr, length, access, mw, err);

	if (rc == 0) {
		mr->n_mws++;
		mr->pd->n_mws++;
	}
	return rc;
}

int fx_mw_unbind(struct fx_mw *mw)
{
	if (!mw)
		return 0;
	struct fx_mr *mr = mw->mr;
	int rc = mr->pd->ctx->ops->mw_unbind(mw);

	if (rc == 0) {
		mr->n_mws--;
		mr->pd->n_mws--;
	}
	return rc;
}

/* -------------------------------------------------------------- shared receive queues */

int fx_srq_create(struct fx_pd *pd, uint32_t depth, struct fx_srq **srq, struct ferry_err *err)
{
	if (!pd || !srq)
		return ferry_err_set(err, EINVAL, "fx_srq_create: bad arguments");
	*srq = NULL;
	if (depth == 0 || depth > FX_SRQ_MAX_DEPTH)
		return ferry_err_set(err, EINVAL, "fx_srq_create: depth %u not in 1..%u", depth, FX_SRQ_MAX_DEPTH);
	if (!pd->ctx->ops->srq_create)
		return ferry_err_set(err, EOPNOTSUPP, "fx_srq_create: the %s backend has no shared receive queues",
				     fx_kind_name(pd->ctx->kind));
	int rc = pd->ctx->ops->srq_create(pd, depth, srq, err);

	if (rc == 0)
		pd->n_srqs++;
	return rc;
}

int fx_post_srq_recv(struct fx_srq *srq, const struct fx_recv_wr *wr, int n, int *post_err)
{
	if (!srq || n <= 0 || !wr) {
		if (post_err)
			*post_err = n == 0 && srq ? 0 : -EINVAL;
		return 0;
	}
	return srq->ctx->ops->post_srq_recv(srq, wr, n, post_err);
}

uint32_t fx_srq_posted(const struct fx_srq *srq)
{
	return srq->posted;
}

int fx_srq_destroy(struct fx_srq *srq)
{
	if (!srq)
		return 0;
	if (srq->n_conns)
		return -EBUSY;
	struct fx_pd *pd = srq->pd;

	srq->ctx->ops->srq_destroy(srq);
	pd->n_srqs--;
	return 0;
}

/* -------------------------------------------------------------- connections */

static int conn_opts_resolve(const struct fx_conn_opts *in, struct fx_conn_opts *o, struct ferry_err *err)
{
	if (in)
		*o = *in;
	else
		memset(o, 0, sizeof(*o));
	if (!o->max_send_wr)
		o->max_send_wr = FX_DEF_MAX_SEND_WR;
	if (!o->max_recv_wr)
		o->max_recv_wr = FX_DEF_MAX_RECV_WR;
	if (!o->max_inline)
		o->max_inline = FX_DEF_MAX_INLINE;
	if (o->max_send_wr > FX_LIMIT_MAX_SEND_WR)
		return ferry_err_set(err, EINVAL, "max_send_wr %u above %u", o->max_send_wr,
				     FX_LIMIT_MAX_SEND_WR);
	if (o->max_recv_wr > FX_LIMIT_MAX_RECV_WR)
		return ferry_err_set(err, EINVAL, "max_recv_wr %u above %u", o->max_recv_wr,
				     FX_LIMIT_MAX_RECV_WR);
	if (o->max_inline > FX_LIMIT_MAX_INLINE)
		return ferry_err_set(err, EINVAL, "max_inline %u above %u", o->max_inline,
				     FX_LIMIT_MAX_INLINE);
	return 0;
}

/* The SRQ rule of transport.h: same domain (every verbs provider agrees only on that). */
static int conn_srq_check(const struct fx_conn_opts *o, const struct fx_pd *pd, const char *what,
			  struct ferry_err *err)
{
	if (o->srq && o->srq->pd != pd)
		return ferry_err_set(err, EINVAL, "%s: the shared receive queue belongs to another protection domain "
				     "(a connection and its SRQ must share one)", what);
	return 0;
}

int fx_listen(struct fx_ctx *ctx, const char *host, uint16_t port, struct fx_listener **listener,
	      struct ferry_err *err)
{
	if (!ctx || !listener)
		return ferry_err_set(err, EINVAL, "fx_listen: bad arguments");
	*listener = NULL;
	int rc = ctx->ops->listen(ctx, host ? host : "0.0.0.0", port, listener, err);

	if (rc == 0)
		ctx->n_listeners++;
	return rc;
}

uint16_t fx_listener_port(const struct fx_listener *listener)
{
	return listener->port;
}

int fx_listener_fd(const struct fx_listener *listener)
{
	return listener->fd;
}

int fx_accept(struct fx_listener *listener, struct fx_pd *pd, const struct fx_conn_opts *opts,
	      struct fx_conn **conn, char *peer, size_t peer_len, struct ferry_err *err)
{
	struct fx_conn_opts o;
	int rc;

	if (!listener || !pd || !conn)
		return ferry_err_set(err, EINVAL, "fx_accept: bad arguments");
	*conn = NULL;
	if (pd->ctx != listener->ctx)
		return ferry_err_set(err, EINVAL, "fx_accept: domain belongs to another context");
	rc = conn_opts_resolve(opts, &o, err);
	if (rc < 0)
		return rc;
	rc = conn_srq_check(&o, pd, "fx_accept", err);
	if (rc < 0)
		return rc;
	rc = listener->ctx->ops->accept(listener, pd, &o, conn, err);
	if (rc < 0)
		return rc;
	if (o.srq)
		o.srq->n_conns++;
	pd->n_conns++;
	listener->ctx->n_conns++;
	if (peer && peer_len)
		snprintf(peer, peer_len, "%s", (*conn)->peer);
	return 0;
}

void fx_listener_close(struct fx_listener *listener)
{
	if (!listener)
		return;
	struct fx_ctx *ctx = listener->ctx;

	ctx->ops->listener_close(listener);
	ctx->n_listeners--;
}

int fx_connect(struct fx_ctx *ctx, struct fx_pd *pd, const char *host, uint16_t port,
	       const struct fx_conn_opts *opts, struct fx_conn **conn, struct ferry_err *err)
{
	struct fx_conn_opts o;
	int rc;

	if (!ctx || !pd || !host || !conn)
		return ferry_err_set(err, EINVAL, "fx_connect: bad arguments");
	*conn = NULL;
	if (pd->ctx != ctx)
		return ferry_err_set(err, EINVAL, "fx_connect: domain belongs to another context");
	if (port == 0)
		return ferry_err_set(err, EINVAL, "fx_connect %s: port 0", host);
	rc = conn_opts_resolve(opts, &o, err);
	if (rc < 0)
		return rc;
	rc = conn_srq_check(&o, pd, "fx_connect", err);
	if (rc < 0)
		return rc;
	rc = ctx->ops->connect(ctx, pd, host, port, &o, conn, err);
	if (rc < 0)
		return rc;
	if (o.srq)
		o.srq->n_conns++;
	pd->n_conns++;
	ctx->n_conns++;
	return 0;
}

int fx_post_send(struct fx_conn *conn, const struct fx_send_wr *wr, int n, int *post_err)
{
	if (n <= 0 || !wr) {
		if (post_err)
			*post_err = n == 0 ? 0 : -EINVAL;
		return 0;
	}
	return conn->ops->post_send(conn, wr, n, post_err);
}

int fx_post_recv(struct fx_conn *conn, const struct fx_recv_wr *wr, int n, int *post_err)
{
	if (n <= 0 || !wr) {
		if (post_err)
			*post_err = n == 0 ? 0 : -EINVAL;
		return 0;
	}
	if (conn->opts.srq) {
		if (post_err)
			*post_err = -EINVAL;   /* verbs: a QP with an SRQ has no receive queue of its own */
		return 0;
	}
	return conn->ops->post_recv(conn, wr, n, post_err);
}

enum fx_conn_state fx_conn_state(const struct fx_conn *conn)
{
	return conn->state;
}

const char *fx_conn_error(const struct fx_conn *conn)
{
	return conn->error;
}

const char *fx_conn_peer(const struct fx_conn *conn)
{
	return conn->peer;
}

void fx_conn_set_user(struct fx_conn *conn, void *user)
{
	conn->user = user;
}

void *fx_conn_get_user(const struct fx_conn *conn)
{
	return conn->user;
}

struct fx_pd *fx_conn_pd(const struct fx_conn *conn)
{
	return conn->pd;
}

uint32_t fx_conn_outstanding(const struct fx_conn *conn)
{
	return conn->ops->conn_outstanding(conn);
}

void fx_conn_close(struct fx_conn *conn)
{
	if (!conn)
		return;
	struct fx_pd *pd = conn->pd;
	struct fx_ctx *ctx = conn->ctx;
	struct fx_srq *srq = conn->opts.srq;

	conn->ops->conn_close(conn);
	if (srq)
		srq->n_conns--;
	pd->n_conns--;
	ctx->n_conns--;
}
