/*
 * ferry-memsrv: setup, event loop, accept, completion dispatch, shutdown.
 * The per-client state machine lives in session.c.
 *
 * Sessions sit in a fixed table (max_clients + a few slots for connections
 * that are only told "busy"). Work request ids of SENDs carry (generation,
 * slot, kind, buffer), so a completion that arrives after its session was
 * freed (a flush after close) is recognised as stale without touching freed
 * memory. Receives come from one shared receive queue (server_int.h): their
 * wr_id is SRV_WR_SRQ | buffer, their session is the connection's user
 * pointer (cleared when the session closes), and the buffer is posted again
 * right after its message is handled.
 */
#include "dataplane/memsrv/server.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/memsrv/server_int.h"
#include "dataplane/common/units.h"

enum { EV_LISTEN = 1, EV_CTX, EV_SIGNAL, EV_TIMER };

#define TICK_MS 250
#define POLL_BATCH 64

uint16_t memsrv_port(const struct memsrv *srv)
{
	return srv->port;
}

/* ------------------------------------------------------------ listener arming */

/* Stop accepting while the session table is full: the backlog waits, epoll does not spin. */
static void listener_arm(struct memsrv *srv, bool on)
{
	struct epoll_event ev = { .events = on ? EPOLLIN : 0, .data.u32 = EV_LISTEN };

	if (!srv->listener || srv->listener_armed == on)
		return;
	if (epoll_ctl(srv->epfd, EPOLL_CTL_MOD, fx_listener_fd(srv->listener), &ev) == 0)
		srv->listener_armed = on;
	else
		LOG_ERR("epoll: cannot %s the listener: %s", on ? "arm" : "disarm", strerror(errno));
}

void memsrv_session_gone(struct memsrv *srv, struct session *s)
{
	srv->sessions[s->idx] = NULL;
	srv->gens[s->idx]++;   /* completions still naming the old generation are stale */
	srv->nsessions--;
	if (!srv->stopping)
		listener_arm(srv, true);
}

/* ------------------------------------------------------------ setup */

static int write_ready_file(struct memsrv *srv, struct ferry_err *err)
{
	const char *path = srv->cfg->ready_file;
	char tmp[PATH_MAX + 32];
	FILE *f;

	if (!path[0])
		return 0;
	/* Write then rename: a script polling for the file never reads half of it. */
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	f = fopen(tmp, "we");
	if (!f)
		return ferry_err_set(err, errno, "ready file %s: %s", tmp, strerror(errno));
	fprintf(f, "%u\n", srv->port);
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		int e = errno;

		unlink(tmp);
		return ferry_err_set(err, e, "ready file %s: %s", path, strerror(e));
	}
	srv->ready_written = true;
	return 0;
}

static int epoll_add(struct memsrv *srv, int fd, uint32_t tag, struct ferry_err *err)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = tag };

	if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return ferry_err_set(err, errno, "epoll_ctl: %s", strerror(errno));
	return 0;
}

/*
 * Signals become events of the loop, so shutdown never runs inside a handler.
 * Done first thing: a SIGTERM during a long start (pre-faulting a big pool)
 * stays pending and ends the server cleanly as soon as the loop runs.
 */
static int setup_signals(struct memsrv *srv, struct ferry_err *err)
{
	sigset_t mask;

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
		return ferry_err_set(err, errno, "sigprocmask: %s", strerror(errno));
	/* A peer that vanishes must be an error return, never a process-killing SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	srv->sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (srv->sigfd < 0)
		return ferry_err_set(err, errno, "signalfd: %s", strerror(errno));
	return 0;
}

static int setup_events(struct memsrv *srv, struct ferry_err *err)
{
	struct itimerspec its = { .it_interval = { 0, TICK_MS * 1000000L }, .it_value = { 0, TICK_MS * 1000000L } };
	int rc;

	srv->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (srv->timerfd < 0)
		return ferry_err_set(err, errno, "timerfd_create: %s", strerror(errno));
	if (timerfd_settime(srv->timerfd, 0, &its, NULL) < 0)
		return ferry_err_set(err, errno, "timerfd_settime: %s", strerror(errno));
	srv->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (srv->epfd < 0)
		return ferry_err_set(err, errno, "epoll_create1: %s", strerror(errno));
	if ((rc = epoll_add(srv, fx_listener_fd(srv->listener), EV_LISTEN, err)) ||
	    (rc = epoll_add(srv, fx_ctx_fd(srv->ctx), EV_CTX, err)) ||
	    (rc = epoll_add(srv, srv->sigfd, EV_SIGNAL, err)) || (rc = epoll_add(srv, srv->timerfd, EV_TIMER, err)))
		return rc;
	srv->listener_armed = true;
	return 0;
}

static int post_srq_buf(struct memsrv *srv, uint32_t i)
{
	struct fx_sge sge = { srv->rbufs + (size_t)i * SESS_BUF_LEN, SESS_BUF_LEN, srv->rbuf_mr->lkey };
	struct fx_recv_wr wr = { SRV_WR_SRQ | i, &sge, 1 };
	int perr = 0;

	if (fx_post_srq_recv(srv->srq, &wr, 1, &perr) != 1)
		return perr ? perr : -EIO;
	return 0;
}

/* The server's domain and the shared receive queue with every buffer posted. */
static int setup_domain(struct memsrv *srv, struct ferry_err *err)
{
	size_t len;
	int rc;

	rc = fx_pd_alloc(srv->ctx, &srv->pd, err);
	if (rc)
		return rc;
	srv->srq_depth = srv->sess_cap * 2;
	if (srv->srq_depth < SRV_SRQ_MIN)
		srv->srq_depth = SRV_SRQ_MIN;
	if (srv->srq_depth > SRV_SRQ_MAX)
		srv->srq_depth = SRV_SRQ_MAX;
	len = (size_t)srv->srq_depth * SESS_BUF_LEN;
	srv->rbufs = aligned_alloc(4096, len);
	if (!srv->rbufs)
		return ferry_err_set(err, ENOMEM, "out of memory for %u receive buffers", srv->srq_depth);
	memset(srv->rbufs, 0, len);
	rc = fx_reg_mr(srv->pd, srv->rbufs, len, FX_ACCESS_LOCAL_WRITE, &srv->rbuf_mr, err);
	if (rc) {
		ferry_err_prefix(err, "register receive buffers: ");
		return rc;
	}
	rc = fx_srq_create(srv->pd, srv->srq_depth, &srv->srq, err);
	if (rc) {
		ferry_err_prefix(err, "shared receive queue: ");
		return rc;
	}
	for (uint32_t i = 0; i < srv->srq_depth; i++) {
		rc = post_srq_buf(srv, i);
		if (rc)
			return ferry_err_set(err, -rc, "post receive buffers: %s", strerror(-rc));
	}
	return 0;
}

/* Undo setup_domain (every session, window and connection is gone). */
static void teardown_domain(struct memsrv *srv)
{
	int rc;

	if (srv->srq && (rc = fx_srq_destroy(srv->srq)) != 0)
		LOG_WARN("shared receive queue still in use: %s", strerror(-rc));
	if (srv->rbuf_mr && (rc = fx_dereg_mr(srv->rbuf_mr)) != 0)
		LOG_WARN("receive buffers still registered: %s", strerror(-rc));
	if (srv->pd && (rc = fx_pd_free(srv->pd)) != 0)
		LOG_WARN("protection domain still in use: %s", strerror(-rc));
	free(srv->rbufs);
	srv->srq = NULL;
	srv->rbuf_mr = NULL;
	srv->pd = NULL;
	srv->rbufs = NULL;
}

int memsrv_create(const struct memsrv_config *cfg, struct memsrv **out, struct ferry_err *err)
{
	/* Event driven: sleep in epoll rather than spin in fx_poll. */
	struct fx_ctx_opts copts = { .poll_spin_us = FX_POLL_SPIN_OFF };
	char quota[FERRY_SIZE_STR];
	struct memsrv *srv;
	int rc;

	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return ferry_err_set(err, ENOMEM, "out of memory");
	srv->cfg = cfg;
	srv->epfd = srv->sigfd = srv->timerfd = -1;

	rc = setup_signals(srv, err);
	if (rc)
		goto err_free;
	rc = ferry_secret_load(cfg->secret_file, &srv->secret, err);
	if (rc)
		goto err_free;
	/* The transport first: a missing backend should not cost a pre-faulted pool. */
	rc = fx_ctx_create(cfg->transport, &copts, &srv->ctx, err);
	if (rc) {
		ferry_err_prefix(err, "transport %s: ", cfg->transport == FX_KIND_RDMA ? "rdma" : "tcp");
		goto err_secret;
	}
	rc = memsrv_pool_open(cfg, &srv->pool, err);
	if (rc)
		goto err_ctx;
	/* The loop that serves this pool runs beside it, on the NIC's node. */
	if (srv->pool.region.numa_node >= 0) {
		struct ferry_err perr = { 0 };

		if (hw_pin_thread_to_node(srv->pool.region.numa_node, &perr) == 0)
			LOG_INFO("event loop runs on node %d, beside the pool", srv->pool.region.numa_node);
		else
			LOG_WARN("event loop not placed: %s", perr.msg);
	}
	rc = ea_create(cfg->pool_size, &srv->ea, err);
	if (rc)
		goto err_pool;
	rc = kept_open(srv, err);
	if (rc)
		goto err_table;
	srv->sess_cap = cfg->max_clients + SESS_REFUSE_SLACK;
	srv->sessions = calloc(srv->sess_cap, sizeof(*srv->sessions));
	srv->gens = calloc(srv->sess_cap, sizeof(*srv->gens));
	if (!srv->sessions || !srv->gens) {
		rc = ferry_err_set(err, ENOMEM, "out of memory for the session table");
		goto err_table;
	}
	rc = setup_domain(srv, err);
	if (rc)
		goto err_domain;
	rc = fx_listen(srv->ctx, cfg->listen, cfg->port, &srv->listener, err);
	if (rc) {
		ferry_err_prefix(err, "listen on %s:%u: ", cfg->listen, cfg->port);
		goto err_domain;
	}
	srv->port = fx_listener_port(srv->listener);
	rc = setup_events(srv, err);
	if (rc)
		goto err_events;
	rc = write_ready_file(srv, err);
	if (rc)
		goto err_events;
	LOG_INFO("listening on %s:%u over %s: max_clients %u, client quota %s, %u shared receive buffers",
		 cfg->listen, srv->port, cfg->transport == FX_KIND_RDMA ? "rdma" : "tcp", cfg->max_clients,
		 ferry_size_format(cfg->client_quota, quota, sizeof(quota)), srv->srq_depth);
	*out = srv;
	return 0;

err_events:
	if (srv->epfd >= 0)
		close(srv->epfd);
	if (srv->timerfd >= 0)
		close(srv->timerfd);
	fx_listener_close(srv->listener);
err_domain:
	teardown_domain(srv);
err_table:
	free(srv->sessions);
	free(srv->gens);
	ea_destroy(srv->ea);
err_pool:
	memsrv_pool_close(&srv->pool);
err_ctx:
	fx_ctx_destroy(srv->ctx);
err_secret:
	ferry_secret_wipe(&srv->secret);
err_free:
	if (srv->sigfd >= 0)
		close(srv->sigfd);
	free(srv);
	return rc;
}

/* ------------------------------------------------------------ events */

static void accept_pending(struct memsrv *srv)
{
	const struct fx_conn_opts copts = { .max_send_wr = SESS_SEND_SLOTS + SESS_MAX_ATTACH + 64, .srq = srv->srq };

	/* Bounded, so a flood of connections cannot starve the completions of the others. */
	for (int budget = 32; budget > 0 && !srv->stopping; budget--) {
		struct ferry_err err = { 0 };
		char peer[64] = "?";
		struct fx_conn *conn;
		uint32_t idx;
		int rc;

		for (idx = 0; idx < srv->sess_cap && srv->sessions[idx]; idx++)
			;
		if (idx == srv->sess_cap) {
			LOG_WARN("session table full (%u): not accepting until a session ends", srv->sess_cap);
			listener_arm(srv, false);
			return;
		}
		/* One domain for all: the SRQ needs it; windows keep each client's keys its own. */
		rc = fx_accept(srv->listener, srv->pd, &copts, &conn, peer, sizeof(peer), &err);
		if (rc == -EAGAIN)
			return;
		if (rc) {
			LOG_WARN("accept failed: %s", err.msg);
			continue;
		}
		rc = session_start(srv, idx, conn, peer, srv->nclients >= srv->cfg->max_clients, &err);
		if (rc) {
			LOG_ERR("client from %s closed: %s", peer, err.msg);
			fx_conn_close(conn);
		}
	}
}

/* A message (or a failed receive) from the SRQ: to its session, then the buffer goes back. */
static void on_srq_recv(struct memsrv *srv, const struct fx_wc *wc)
{
	uint32_t i = (uint32_t)(wc->wr_id & 0xffffffffu);
	struct session *s = wc->conn ? fx_conn_get_user(wc->conn) : NULL;
	int rc;

	if (i >= srv->srq_depth) {
		LOG_ERR("receive completion for unknown buffer %u ignored", i);
		return;
	}
	if (s)
		session_on_message(s, wc, srv->rbufs + (size_t)i * SESS_BUF_LEN);
	else
		LOG_DEBUG("message for a closed session dropped (%s)", fx_wc_status_str(wc->status));
	rc = post_srq_buf(srv, i);
	if (rc)
		LOG_ERR("cannot post receive buffer %u again: %s (%u left)", i, strerror(-rc), fx_srq_posted(srv->srq));
}

static void dispatch(struct memsrv *srv, const struct fx_wc *wc)
{
	uint32_t gen = (uint32_t)(wc->wr_id >> 32);
	uint32_t idx = (uint32_t)(wc->wr_id >> 16) & 0xffff;
	unsigned kind = (unsigned)(wc->wr_id >> 8) & 0xff;
	unsigned slot = (unsigned)wc->wr_id & 0xff;
	struct session *s;

	if (wc->opcode == FX_WC_RECV && (wc->wr_id & SRV_WR_SRQ)) {
		on_srq_recv(srv, wc);
		return;
	}
	s = idx < srv->sess_cap ? srv->sessions[idx] : NULL;
	if (!s || s->gen != gen) {
		LOG_DEBUG("stale completion (slot %u gen %u, %s) ignored", idx, gen, fx_wc_status_str(wc->status));
		return;
	}
	session_on_completion(s, wc, kind, slot);
}

static int poll_completions(struct memsrv *srv, int timeout_ms, struct ferry_err *err)
{
	struct fx_wc wc[POLL_BATCH];
	int n;

	do {
		n = fx_poll(srv->ctx, wc, POLL_BATCH, timeout_ms);
		if (n < 0)
			return ferry_err_set(err, n, "fx_poll: %s", strerror(-n));
		for (int i = 0; i < n; i++)
			dispatch(srv, &wc[i]);
		timeout_ms = 0;
	} while (n == POLL_BATCH);
	return 0;
}

/*
 * A connection that fails while the server has nothing posted on it (no
 * receives of its own: they come from the SRQ) completes nothing, so its
 * session learns of it here, after every round of progress.
 */
static void close_failed_sessions(struct memsrv *srv)
{
	for (uint32_t i = 0; i < srv->sess_cap; i++) {
		struct session *s = srv->sessions[i];
		char why[SESS_REASON_MAX];

		if (!s || !s->conn || s->state == SESS_ZOMBIE || fx_conn_state(s->conn) != FX_CONN_ERROR)
			continue;
		snprintf(why, sizeof(why), "%s", fx_conn_error(s->conn)[0] ? fx_conn_error(s->conn) : "connection failed");
		session_close(s, s->state == SESS_CLOSING ? s->close_reason : why);
	}
}

static void tick(struct memsrv *srv)
{
	uint64_t now = ferry_mono_ms(), expirations;

	if (read(srv->timerfd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
		LOG_WARN("timerfd read: %s", strerror(errno));
	for (uint32_t i = 0; i < srv->sess_cap; i++)
		if (srv->sessions[i])
			session_tick(srv->sessions[i], now);
	if (!srv->stopping && srv->nsessions < srv->sess_cap)
		listener_arm(srv, true);
}

static void begin_shutdown(struct memsrv *srv)
{
	struct signalfd_siginfo si;
	const char *sig = "signal";

	if (read(srv->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		sig = si.ssi_signo == SIGTERM ? "SIGTERM" : si.ssi_signo == SIGINT ? "SIGINT" : "signal";
	if (srv->stopping)
		return;
	LOG_INFO("shutting down on %s: %u clients connected", sig, srv->nclients);
	srv->stopping = true;
	srv->stop_deadline_ms = ferry_mono_ms() + SRV_SHUTDOWN_LINGER_MS;
	/* No new clients from here on. */
	epoll_ctl(srv->epfd, EPOLL_CTL_DEL, fx_listener_fd(srv->listener), NULL);
	fx_listener_close(srv->listener);
	srv->listener = NULL;
	/* Tell ready clients why their session ends; close the rest now. */
	for (uint32_t i = 0; i < srv->sess_cap; i++)
		if (srv->sessions[i])
			session_shutdown(srv->sessions[i]);
}

int memsrv_run(struct memsrv *srv, struct ferry_err *err)
{
	struct epoll_event ev[8];
	int rc;

	for (;;) {
		int timeout = -1;

		if (srv->stopping) {
			uint64_t now = ferry_mono_ms();

			if (srv->nsessions == 0 || now >= srv->stop_deadline_ms)
				return 0;
			timeout = (int)(srv->stop_deadline_ms - now);
		}
		int n = epoll_wait(srv->epfd, ev, 8, timeout);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return ferry_err_set(err, errno, "epoll_wait: %s", strerror(errno));
		}
		for (int i = 0; i < n; i++) {
			switch (ev[i].data.u32) {
			case EV_LISTEN:
				accept_pending(srv);
				break;
			case EV_SIGNAL:
				begin_shutdown(srv);
				break;
			case EV_TIMER:
				tick(srv);
				break;
			default:
				break;   /* EV_CTX: the transport has work, done below */
			}
		}
		/* Always let the transport progress: accepts and closes can queue work too. */
		rc = poll_completions(srv, 0, err);
		if (rc)
			return rc;
		close_failed_sessions(srv);
	}
}

void memsrv_destroy(struct memsrv *srv)
{
	struct ferry_err err = { 0 };
	uint64_t until;

	if (!srv)
		return;
	for (uint32_t i = 0; i < srv->sess_cap; i++)
		if (srv->sessions[i])
			session_close(srv->sessions[i], "server shutting down");
	/* Reap the flushes of what was closed, briefly; then free whatever is left regardless. */
	until = ferry_mono_ms() + 200;
	while (srv->nsessions > 0 && ferry_mono_ms() < until)
		if (poll_completions(srv, 10, &err))
			break;
	for (uint32_t i = 0; i < srv->sess_cap; i++)
		if (srv->sessions[i])
			session_destroy(srv->sessions[i]);
	if (srv->listener)
		fx_listener_close(srv->listener);
	/* Closed connections' flushes first, so the SRQ and the domain are free to go. */
	poll_completions(srv, 0, &err);
	kept_destroy_all(srv);
	teardown_domain(srv);
	fx_ctx_destroy(srv->ctx);
	ea_destroy(srv->ea);
	memsrv_pool_close(&srv->pool);
	ferry_secret_wipe(&srv->secret);
	if (srv->ready_written && unlink(srv->cfg->ready_file) < 0)
		LOG_WARN("cannot remove the ready file %s: %s", srv->cfg->ready_file, strerror(errno));
	close(srv->epfd);
	close(srv->timerfd);
	close(srv->sigfd);
	free(srv->sessions);
	free(srv->gens);
	free(srv);
	LOG_INFO("shutdown complete: pool freed");
}
