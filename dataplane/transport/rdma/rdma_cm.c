/*
 * RDMA backend: connection management with librdmacm (listen, accept,
 * connect, CM events on connections). The connection object itself (QP,
 * rings, failure, close) is in rdma_qp.c.
 *
 * Connect: a private event channel for the id while it resolves the address
 * and route and connects (bounded by connect_timeout_ms), then the id moves
 * to the context's channel. Accept: the listener's channel carries the
 * CONNECT_REQUESTs; fx_accept takes one, moves the new id to the context's
 * channel, creates the QP in the caller's domain and accepts (the QP is RTS
 * when rdma_accept returns, so the connection is usable at once; a
 * handshake that fails later arrives as a CM event and fails it).
 *
 * CM events on connections: DISCONNECTED -> peer gone (RETRY_EXC_ERR on the
 * first flushed request); DEVICE_REMOVAL, UNREACHABLE, REJECTED,
 * CONNECT_ERROR -> connection error. Failing a connection calls
 * rdma_disconnect: the QP goes to the error state (everything outstanding
 * flushes through the CQ) and the peer hears about it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/transport/rdma/rdma.h"

struct rdma_listener {
	struct fx_listener base;
	struct rdma_event_channel *ch;
	struct rdma_cm_id *id;
	char where[FX_PEER_MAX];
};

/* ------------------------------------------------------------------ CM events on connections */

void rdma_handle_cm_events(struct rdma_ctx *ctx)
{
	struct rdma_cm_event *ev;

	for (int budget = 64; budget > 0 && rdma_get_cm_event(ctx->cm_ch, &ev) == 0; budget--) {
		struct rdma_conn *c = ev->id ? ev->id->context : NULL;
		enum rdma_cm_event_type type = ev->event;
		int status = ev->status;

		rdma_ack_cm_event(ev);
		if (!c || c->base.state != FX_CONN_CONNECTED)
			continue;
		switch (type) {
		case RDMA_CM_EVENT_ESTABLISHED:
			LOG_DEBUG("rdma: connection with %s established", c->base.peer);
			break;
		case RDMA_CM_EVENT_DISCONNECTED:
			rdma_conn_fail(c, FX_WC_RETRY_EXC_ERR, "peer %s closed the connection", c->base.peer);
			break;
		case RDMA_CM_EVENT_DEVICE_REMOVAL:
			rdma_conn_fail(c, FX_WC_RETRY_EXC_ERR, "RDMA device %s removed", ctx->devname);
			break;
		case RDMA_CM_EVENT_REJECTED:
		case RDMA_CM_EVENT_UNREACHABLE:
		case RDMA_CM_EVENT_CONNECT_ERROR:
			rdma_conn_fail(c, FX_WC_RETRY_EXC_ERR, "connection with %s failed: %s (status %d)", c->base.peer,
				       rdma_event_str(type), status);
			break;
		default:
			LOG_DEBUG("rdma: CM event %s on %s", rdma_event_str(type), c->base.peer);
			break;
		}
	}
}

/* ------------------------------------------------------------------ listen / accept */

int rdma_listen_(struct fx_ctx *b, const char *host, uint16_t port, struct fx_listener **out,
		 struct ferry_err *err)
{
	struct rdma_ctx *ctx = rdma_ctx_of(b);
	struct rdma_listener *l = calloc(1, sizeof(*l));
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	char service[8];
	int rc, e;

	if (!l)
		return ferry_err_set(err, ENOMEM, "rdma listen: out of memory");
	snprintf(service, sizeof(service), "%u", port);
	rc = getaddrinfo(host, service, &hints, &res);
	if (rc != 0) {
		free(l);
		return ferry_err_set(err, EINVAL, "rdma listen %s:%u: %s", host, port, gai_strerror(rc));
	}
	l->ch = rdma_create_event_channel();
	if (!l->ch) {
		e = errno;
		goto fail;
	}
	if (rdma_create_id(l->ch, &l->id, NULL, RDMA_PS_TCP)) {
		e = errno;
		goto fail;
	}
	if (rdma_bind_addr(l->id, res->ai_addr) || rdma_listen(l->id, 128)) {
		e = errno;
		goto fail;
	}
	{
		int fl = fcntl(l->ch->fd, F_GETFL);

		(void)fcntl(l->ch->fd, F_SETFL, fl | O_NONBLOCK);
	}
	freeaddrinfo(res);
	if (l->id->verbs && l->id->verbs != ctx->verbs)
		LOG_WARN("rdma: %s is on device %s, the context uses %s: connections will be refused", host,
			 ibv_get_device_name(l->id->verbs->device), ctx->devname);
	l->base.ctx = b;
	l->base.fd = l->ch->fd;
	l->base.port = ntohs(rdma_get_src_port(l->id));
	snprintf(l->where, sizeof(l->where), "%s:%u", host, l->base.port);
	LOG_INFO("listening on %s (rdma, %s)", l->where, ctx->devname);
	*out = &l->base;
	return 0;
fail:
	if (!e)
		e = EIO;
	freeaddrinfo(res);
	if (l->id)
		(void)rdma_destroy_id(l->id);
	if (l->ch)
		rdma_destroy_event_channel(l->ch);
	free(l);
	return ferry_err_set(err, e, "rdma listen %s:%u: %s%s", host, port, strerror(e),
			     e == ENODEV || e == EADDRNOTAVAIL ? " (no RDMA device on that address?)" : "");
}

void rdma_listener_close(struct fx_listener *b)
{
	struct rdma_listener *l = (struct rdma_listener *)(void *)b;
	struct rdma_cm_event *ev;

	/* Refuse what is still pending. */
	while (rdma_get_cm_event(l->ch, &ev) == 0) {
		struct rdma_cm_id *child = ev->event == RDMA_CM_EVENT_CONNECT_REQUEST ? ev->id : NULL;

		rdma_ack_cm_event(ev);
		if (child) {
			(void)rdma_reject(child, NULL, 0);
			(void)rdma_destroy_id(child);
		}
	}
	(void)rdma_destroy_id(l->id);
	rdma_destroy_event_channel(l->ch);
	free(l);
}

int rdma_accept_(struct fx_listener *b, struct fx_pd *pd, const struct fx_conn_opts *opts, struct fx_conn **out,
		 struct ferry_err *err)
{
	struct rdma_listener *l = (struct rdma_listener *)(void *)b;
	struct rdma_ctx *ctx = rdma_ctx_of(b->ctx);
	struct rdma_cm_event *ev;
	struct rdma_conn *c;

	for (int budget = 16; budget > 0; budget--) {
		if (rdma_get_cm_event(l->ch, &ev) != 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return ferry_err_set(err, EAGAIN, "accept: no pending connection");
			return ferry_err_set(err, errno, "accept on %s: %s", l->where, strerror(errno));
		}
		if (ev->event != RDMA_CM_EVENT_CONNECT_REQUEST) {
			LOG_DEBUG("rdma: listener %s: %s ignored", l->where, rdma_event_str(ev->event));
			rdma_ack_cm_event(ev);
			continue;
		}

		struct rdma_cm_id *id = ev->id;
		struct rdma_conn_param in = ev->param.conn;
		char peer[FX_PEER_MAX];
		int rc;

		rdma_ack_cm_event(ev);
		rdma_format_addr(rdma_get_peer_addr(id), peer, sizeof(peer));
		if (id->verbs != ctx->verbs) {
			(void)rdma_reject(id, NULL, 0);
			(void)rdma_destroy_id(id);
			ctx->base.stats.conns_failed++;
			return ferry_err_set(err, ENODEV, "accept from %s: it arrived on device %s, the context uses %s",
					     peer, id->verbs ? ibv_get_device_name(id->verbs->device) : "?",
					     ctx->devname);
		}
		if (rdma_migrate_id(id, ctx->cm_ch)) {
			int e = errno ? errno : EIO;

			(void)rdma_reject(id, NULL, 0);
			(void)rdma_destroy_id(id);
			return ferry_err_set(err, e, "accept from %s: rdma_migrate_id: %s", peer, strerror(e));
		}
		rc = rdma_conn_new(ctx, pd, id, opts, &c, err);
		if (rc < 0) {
			(void)rdma_reject(id, NULL, 0);
			(void)rdma_destroy_id(id);
			ctx->base.stats.conns_failed++;
			return rc;
		}

		struct rdma_conn_param p = {
			.responder_resources = (uint8_t)(in.initiator_depth < ctx->max_qp_rd_atom ?
							 in.initiator_depth : ctx->max_qp_rd_atom),
			.initiator_depth = (uint8_t)(in.responder_resources < ctx->max_qp_init_rd_atom ?
						     in.responder_resources : ctx->max_qp_init_rd_atom),
			.rnr_retry_count = RDMA_RNR_RETRY,
			.retry_count = RDMA_RETRY_CNT,
		};
		uint8_t tmo = RDMA_ACK_TIMEOUT;

		(void)rdma_set_option(id, RDMA_OPTION_ID, RDMA_OPTION_ID_ACK_TIMEOUT, &tmo, sizeof(tmo));
		if (rdma_accept(id, &p)) {
			int e = errno ? errno : EIO;

			c->id = NULL;          /* destroyed below, after its QP */
			rdma_destroy_qp(id);
			c->qp = NULL;
			rdma_conn_free(c);
			(void)rdma_reject(id, NULL, 0);
			(void)rdma_destroy_id(id);
			ctx->base.stats.conns_failed++;
			return ferry_err_set(err, e, "accept from %s: rdma_accept: %s", peer, strerror(e));
		}
		ctx->base.stats.conns_opened++;
		LOG_INFO("accepted connection from %s (rdma)", c->base.peer);
		*out = &c->base;
		return 0;
	}
	return ferry_err_set(err, EAGAIN, "accept: no pending connection");
}

/* ------------------------------------------------------------------ connect */

/* Wait for the next event on @p ch until @p deadline; 0 with *type, *status or -errno. */
static int wait_event(struct rdma_event_channel *ch, uint64_t deadline, enum rdma_cm_event_type *type, int *status,
		      struct rdma_conn_param *param)
{
	for (;;) {
		struct rdma_cm_event *ev;

		if (rdma_get_cm_event(ch, &ev) == 0) {
			*type = ev->event;
			*status = ev->status;
			if (param)
				*param = ev->param.conn;
			rdma_ack_cm_event(ev);
			return 0;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return -errno;

		uint64_t now = ferry_mono_ns();

		if (now >= deadline)
			return -ETIMEDOUT;

		struct pollfd p = { .fd = ch->fd, .events = POLLIN };

		(void)poll(&p, 1, (int)((deadline - now + 999999) / 1000000));
	}
}

static int connect_err(struct rdma_ctx *ctx, struct ferry_err *err, int e, const char *host, uint16_t port,
		       const char *why)
{
	ctx->base.stats.conns_failed++;
	LOG_INFO("connect to %s:%u failed: %s", host, port, why);
	return ferry_err_set(err, e, "connect %s:%u: %s", host, port, why);
}

int rdma_connect_(struct fx_ctx *b, struct fx_pd *pd, const char *host, uint16_t port, const struct fx_conn_opts *opts,
		  struct fx_conn **out, struct ferry_err *err)
{
	struct rdma_ctx *ctx = rdma_ctx_of(b);
	uint32_t tmo = b->opts.connect_timeout_ms;
	uint64_t deadline = ferry_mono_ns() + (uint64_t)tmo * 1000000ull;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	struct rdma_event_channel *ch = NULL;
	struct rdma_cm_id *id = NULL;
	struct rdma_conn *c = NULL;
	enum rdma_cm_event_type type;
	char service[8], why[FX_CONN_ERR_MAX + 64];
	int rc, status = 0, e;

	snprintf(service, sizeof(service), "%u", port);
	rc = getaddrinfo(host, service, &hints, &res);
	if (rc != 0)
		return connect_err(ctx, err, EHOSTUNREACH, host, port, gai_strerror(rc));
	ch = rdma_create_event_channel();
	if (!ch || rdma_create_id(ch, &id, NULL, RDMA_PS_TCP)) {
		e = errno ? errno : EIO;
		snprintf(why, sizeof(why), "rdma_create_id: %s", strerror(e));
		goto fail;
	}
	{
		int fl = fcntl(ch->fd, F_GETFL);

		(void)fcntl(ch->fd, F_SETFL, fl | O_NONBLOCK);
	}
	if (rdma_resolve_addr(id, NULL, res->ai_addr, (int)(tmo ? tmo : 1))) {
		e = errno ? errno : EIO;
		snprintf(why, sizeof(why), "rdma_resolve_addr: %s", strerror(e));
		goto fail;
	}
	rc = wait_event(ch, deadline, &type, &status, NULL);
	if (rc || type != RDMA_CM_EVENT_ADDR_RESOLVED) {
		e = rc == -ETIMEDOUT ? ETIMEDOUT : EHOSTUNREACH;
		snprintf(why, sizeof(why), "%s", rc == -ETIMEDOUT ? "address resolution timed out" :
			 rc ? strerror(-rc) : "no RDMA route to the address (address resolution failed)");
		if (!rc)
			snprintf(why, sizeof(why), "address resolution failed: %s (%d)", rdma_event_str(type), status);
		goto fail;
	}
	if (id->verbs != ctx->verbs) {
		e = ENODEV;
		snprintf(why, sizeof(why), "the address is reached through device %s, the context uses %s",
			 id->verbs ? ibv_get_device_name(id->verbs->device) : "?", ctx->devname);
		goto fail;
	}
	{
		uint64_t now = ferry_mono_ns();
		int ms = deadline > now ? (int)((deadline - now) / 1000000) : 1;

		if (rdma_resolve_route(id, ms > 0 ? ms : 1)) {
			e = errno ? errno : EIO;
			snprintf(why, sizeof(why), "rdma_resolve_route: %s", strerror(e));
			goto fail;
		}
	}
	rc = wait_event(ch, deadline, &type, &status, NULL);
	if (rc || type != RDMA_CM_EVENT_ROUTE_RESOLVED) {
		e = rc == -ETIMEDOUT ? ETIMEDOUT : EHOSTUNREACH;
		if (rc)
			snprintf(why, sizeof(why), "route resolution: %s", strerror(-rc));
		else
			snprintf(why, sizeof(why), "route resolution failed: %s (%d)", rdma_event_str(type), status);
		goto fail;
	}
	{
		uint8_t ack = RDMA_ACK_TIMEOUT;

		(void)rdma_set_option(id, RDMA_OPTION_ID, RDMA_OPTION_ID_ACK_TIMEOUT, &ack, sizeof(ack));
	}
	{
		struct ferry_err qerr = { 0 };

		rc = rdma_conn_new(ctx, pd, id, opts, &c, &qerr);
		if (rc < 0) {
			e = -rc;
			snprintf(why, sizeof(why), "%s", qerr.msg);
			c = NULL;
			goto fail;
		}
	}

	struct rdma_conn_param p = {
		/* As many READs in flight as the device allows (rdma_cm carries 8 bits). */
		.responder_resources = (uint8_t)(ctx->max_qp_rd_atom < 255 ? ctx->max_qp_rd_atom : 255),
		.initiator_depth = (uint8_t)(ctx->max_qp_init_rd_atom < 255 ? ctx->max_qp_init_rd_atom : 255),
		.retry_count = RDMA_RETRY_CNT,
		.rnr_retry_count = RDMA_RNR_RETRY,
	};

	if (rdma_connect(id, &p)) {
		e = errno ? errno : EIO;
		snprintf(why, sizeof(why), "rdma_connect: %s", strerror(e));
		goto fail;
	}
	rc = wait_event(ch, deadline, &type, &status, NULL);
	if (rc || type != RDMA_CM_EVENT_ESTABLISHED) {
		if (rc == -ETIMEDOUT) {
			e = ETIMEDOUT;
			snprintf(why, sizeof(why), "timed out after %u ms", tmo);
		} else if (rc) {
			e = -rc;
			snprintf(why, sizeof(why), "%s", strerror(e));
		} else if (type == RDMA_CM_EVENT_REJECTED) {
			/* status 8 = IB_CM_REJ_INVALID_SERVICE_ID: nobody listens on that port */
			e = ECONNREFUSED;
			snprintf(why, sizeof(why), "connection refused (%s, reason %d)", rdma_event_str(type), status);
		} else if (type == RDMA_CM_EVENT_UNREACHABLE || type == RDMA_CM_EVENT_CONNECT_ERROR) {
			e = status == -ETIMEDOUT ? ETIMEDOUT : EHOSTUNREACH;
			snprintf(why, sizeof(why), "peer unreachable (%s, status %d)", rdma_event_str(type), status);
		} else {
			e = EPROTO;
			snprintf(why, sizeof(why), "unexpected %s (status %d)", rdma_event_str(type), status);
		}
		goto fail;
	}
	if (rdma_migrate_id(id, ctx->cm_ch)) {
		e = errno ? errno : EIO;
		snprintf(why, sizeof(why), "rdma_migrate_id: %s", strerror(e));
		goto fail;
	}
	rdma_destroy_event_channel(ch);
	freeaddrinfo(res);
	ctx->base.stats.conns_opened++;
	LOG_INFO("connected to %s (rdma, %s)", c->base.peer, ctx->devname);
	*out = &c->base;
	return 0;
fail:
	if (c)
		rdma_conn_free(c);       /* destroys the QP and the id */
	else if (id)
		(void)rdma_destroy_id(id);
	if (ch)
		rdma_destroy_event_channel(ch);
	freeaddrinfo(res);
	return connect_err(ctx, err, e ? e : EIO, host, port, why);
}
