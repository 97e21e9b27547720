/*
 * The VMM protocol socket (proto/vmm.h, docs/vmm-protocol.md).
 *
 * Access: every connection's peer credentials (SO_PEERCRED uid/gid plus
 * SO_PEERGROUPS) are checked against the allow-list at accept. A refused
 * peer is logged and counted (peers_refused); its first request is answered
 * with ERROR(NOT_ALLOWED) - so a libferry-vmm client gets -EACCES with the
 * reason rather than a bare hang-up - and the connection is then closed.
 *
 * Framing: incremental and non-blocking (vmm_readable): partial messages
 * wait in the connection, so a slow VMM - or one whose sending thread is
 * itself blocked on a page fault this pager must serve - never stalls the
 * loop. A bad header cannot be resynchronised: ERROR, then close. A well-framed message
 * that fails to decode gets ERROR with the decoder's code and the connection
 * stays usable. Descriptors that come with anything but a valid REGISTER are
 * closed at once.
 *
 * One VM per connection. The connection closing (the VMM exited or crashed)
 * tears its VM down: slots released, descriptors closed, other VMs untouched.
 */
#include "dataplane/pager/pager.h"
#include "dataplane/pager/vmm_requests.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/common/unix_listen.h"
#include "dataplane/vmm/vmm_io.h"

#define SEND_DEADLINE_MS 2000

pg_vm_incoming_fn *pg_vm_incoming_hook;
void *pg_vm_incoming_ctx;

/* Server requests: the second half of this file. */
#define SRQ_TICK_MS 100

struct srq_op {
	struct srq_op *next;
	struct pg_vm *vm;
	struct pg_conn *conn;
	uint8_t type;
	uint64_t first_id;
	uint32_t nparts, answered;
	int status;              /* first failure among the parts */
	bool check_state;        /* PAUSE: the blob must be complete and match the answer */
	struct ferry_vmmp_range *ranges; /* DROP_PTES: merged guest ranges, for pg_vmm_dropping() */
	size_t nranges;
	int64_t deadline;        /* CLOCK_MONOTONIC ns */
	pg_vmm_done_fn *done;
	void *ctx;
};

struct srq_vm {
	struct srq_vm *next;
	uint64_t handle;         /* the VM's handle: unique in a pager, never reused */
	bool server_req, parked;
	uint64_t migration_id;
};

/* A descriptor watched for pg_loop_watch(): a pseudo connection in epoll. */
struct srq_watch {
	struct srq_watch *next;
	struct pg_conn *conn;
	void *tag;
	int fd;
	pg_loop_fd_fn *fn;
	void *arg;
	bool dead;
};

struct srq_pager {
	struct srq_pager *next;
	struct srq_watch *watches;
	struct pager *pg;
	int tfd;
	void *ttag;
	struct pg_conn *tconn;   /* pseudo connection carrying the timer in epoll */
	bool armed;
	struct srq_op *ops;
	struct srq_vm *vms;
	uint64_t next_id;
	unsigned timeout_ms;
	uint32_t last_error;
	struct pg_vmm_req_counters c;
};

static struct srq_pager *srq_find(const struct pager *pg);
static struct srq_pager *srq_get(struct pager *pg);
static struct srq_vm *srq_vm_get(struct srq_pager *s, const struct pg_vm *vm);
static void srq_vm_set(struct srq_vm *v, bool server_req, uint64_t migration_id);
static void srq_vm_forget(struct srq_pager *s, uint64_t handle);
static void srq_abort(struct srq_pager *s, const struct pg_conn *conn, const struct pg_vm *vm, int status,
		      const char *why);
static void srq_answer(struct pg_conn *c, const struct ferry_vmmp_msg *m);
static void srq_bad_answer(struct pg_conn *c, uint64_t id);
static bool srq_is_timer(struct pg_conn *c, uint32_t events);
static void srq_shutdown(struct pager *pg);

int pg_vmm_listen(struct pager *pg, struct ferry_err *err)
{
	/* Access control is the SO_PEERCRED allow-list, not file modes. */
	int fd = ferry_unix_listen(pg->cfg->socket, 0666, 64, err);

	if (fd < 0)
		return fd;
	pg->vmm_lfd = fd;
	if (pg_epoll_add(pg, fd, PG_EV_VMM_LISTEN, pg, 0, &pg->vmm_ltag))
		return ferry_err_set(err, errno, "epoll_ctl: %s", strerror(errno));
	LOG_INFO("VMM socket listening on %s", pg->cfg->socket);
	return 0;
}

static struct pg_conn *conn_new(struct pager *pg, int fd, enum pg_conn_kind kind)
{
	struct pg_conn *c = calloc(1, sizeof(*c));
	uint32_t gids[64];
	size_t ngids = 0;

	if (!c) {
		close(fd);
		return NULL;
	}
	c->pg = pg;
	c->fd = fd;
	c->kind = kind;
	c->rx = malloc(FERRY_VMMP_HDR_LEN);
	c->rx_cap = FERRY_VMMP_HDR_LEN;
	if (!c->rx) {
		close(fd);
		free(c);
		return NULL;
	}
	if (ferry_vmm_io_peer(fd, &c->uid, &c->pid, gids, 64, &ngids) < 0 ||
	    !ferry_vmmp_allow_match(&pg->cfg->allow, c->uid, gids, ngids)) {
		c->refused = true;
		pg->g.peers_refused++;
		LOG_WARN("%s connection from pid %d uid %u gid %u refused: not in the allow-list (%s)",
			 kind == PG_CONN_FC ? "Firecracker" : "VMM", (int)c->pid, c->uid, ngids ? gids[0] : 0,
			 pg->cfg->allow_text);
	}
	if (pg_epoll_add(pg, fd, PG_EV_CONN, c, 0, &c->ev_tag)) {
		close(fd);
		free(c->rx);
		free(c);
		return NULL;
	}
	c->next = pg->conns;
	pg->conns = c;
	return c;
}

static void conn_close(struct pg_conn *c, const char *why)
{
	if (c->dead)
		return;
	/* Requests waiting for this VMM's answer will not get one. */
	srq_abort(srq_find(c->pg), c, NULL, -ECONNRESET, why);
	if (c->dead)
		return;   /* a completion closed it meanwhile */
	if (c->vm) {
		struct pg_vm *vm = c->vm;

		if (c->kind == PG_CONN_VMMP || vm->pidfd < 0) {
			pg_vm_teardown(vm, false, why);
		} else {
			vm->conn = NULL;   /* Firecracker VMs live until the process exits (pidfd) */
		}
	}
	c->vm = NULL;
	pg_epoll_del(c->pg, c->fd, c->ev_tag);
	close(c->fd);
	c->fd = -1;
	ferry_vmm_io_close_fds(c->fc_fds, c->fc_nfds);
	c->fc_nfds = 0;
	ferry_vmm_io_close_fds(c->rx_fds, c->rx_nfds);
	c->rx_nfds = 0;
	c->dead = true;
	LOG_DEBUG("connection from pid %d closed: %s", (int)c->pid, why);
}

void pg_vmm_accept(struct pager *pg)
{
	for (;;) {
		int fd = accept4(pg->vmm_lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct pg_conn *c;

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR)
				LOG_WARN("accept on the VMM socket: %s", strerror(errno));
			return;
		}
		c = conn_new(pg, fd, PG_CONN_VMMP);
		if (c && !c->refused)
			LOG_INFO("VMM connected: pid %d uid %u", (int)c->pid, c->uid);
	}
}

void pg_conn_free_dead(struct pager *pg)
{
	struct pg_conn **pp = &pg->conns;

	while (*pp) {
		struct pg_conn *c = *pp;

		if (!c->dead) {
			pp = &c->next;
			continue;
		}
		*pp = c->next;
		free(c->fcbuf);
		free(c->rx);
		free(c->ev_tag);
		free(c);
	}
}

void pg_conn_close_all(struct pager *pg)
{
	srq_shutdown(pg);
	for (struct pg_conn *c = pg->conns; c; c = c->next) {
		if (c->vm && c->kind == PG_CONN_VMMP)
			pg_vm_teardown(c->vm, true, "pager shutting down (remote pages returned to the VM)");
		conn_close(c, "pager shutting down");
	}
}

/* ------------------------------------------------------------ replies */

static int send_buf(struct pg_conn *c, const uint8_t *buf, int len, const void *extra, size_t extra_len)
{
	struct iovec iov[2] = { { (void *)buf, (size_t)len }, { (void *)extra, extra_len } };
	int rc;

	if (len < 0) {
		LOG_ERR("encoding a reply failed (%d)", len);
		return len;
	}
	rc = ferry_vmm_io_send(c->fd, iov, extra_len ? 2 : 1, NULL, 0, ferry_vmm_io_deadline(SEND_DEADLINE_MS));
	if (rc < 0)
		conn_close(c, "reply could not be sent");
	return rc;
}

static void reply_error(struct pg_conn *c, uint64_t req, uint32_t code, const char *msg)
{
	uint8_t *b = c->pg->txbuf;

	LOG_INFO("request %llu from pid %d refused: %s: %s", (unsigned long long)req, (int)c->pid,
		 ferry_vmmp_errcode_str(code), msg);
	send_buf(c, b, ferry_vmmp_encode_error(req, code, msg, b, FERRY_VMMP_MAX_MSG), NULL, 0);
}

static void reply_ok(struct pg_conn *c, uint64_t req, uint64_t value)
{
	uint8_t *b = c->pg->txbuf;

	send_buf(c, b, ferry_vmmp_encode_ok(req, value, b, FERRY_VMMP_MAX_MSG), NULL, 0);
}

/* ------------------------------------------------------------ requests */

static void on_register(struct pg_conn *c, const struct ferry_vmmp_msg *m, int *fds, unsigned nfds)
{
	struct pager *pg = c->pg;
	char why[256] = "";
	struct pg_vm *vm = NULL;
	int code;

	if (c->vm) {
		ferry_vmm_io_close_fds(fds, nfds);
		reply_error(c, m->hdr.request_id, FERRY_VMMP_E_UNEXPECTED,
			    "this connection already registered a VM (UNREGISTER first)");
		return;
	}
	code = pg_vm_create(pg, PG_VM_VMMP, &m->u.reg, fds, nfds, c->pid, c, &vm, why, sizeof(why));
	for (unsigned i = 0; i < nfds; i++)
		fds[i] = -1;   /* owned (or closed) by pg_vm_create */
	if (code) {
		reply_error(c, m->hdr.request_id, (uint32_t)code, why);
		return;
	}
	c->vm = vm;
	if (m->u.reg.flags & FERRY_VMMP_REG_F_SERVER_REQ) {
		struct srq_vm *v = srq_vm_get(srq_get(pg), vm);

		if (!v) {
			pg_vm_teardown(vm, false, "out of memory");
			c->vm = NULL;
			reply_error(c, m->hdr.request_id, FERRY_VMMP_E_INTERNAL, "out of memory");
			return;
		}
		srq_vm_set(v, true, m->u.reg.migration_id);
	}
	if (m->u.reg.flags & FERRY_VMMP_REG_F_INCOMING) {
		struct srq_pager *s = srq_find(pg);

		/* Its memory is empty: not one fault may be answered (with a zero page) before the engine has it. */
		code = pg_vm_park(vm) ? FERRY_VMMP_E_INTERNAL : FERRY_VMMP_E_OK;
		if (code)
			snprintf(why, sizeof(why), "cannot park the incoming VM");
		else if (!pg_vm_incoming_hook)
			code = FERRY_VMMP_E_UNSUPPORTED;
		else
			code = pg_vm_incoming_hook(vm, m->u.reg.migration_id, pg_vm_incoming_ctx);
		if (code == FERRY_VMMP_E_UNSUPPORTED && !pg_vm_incoming_hook)
			snprintf(why, sizeof(why), "no migration engine in this pager takes incoming VMs");
		else if (code && !why[0])
			snprintf(why, sizeof(why), "the migration engine refused migration %llu",
				 (unsigned long long)m->u.reg.migration_id);
		if (code) {
			s->c.incoming_refused++;
			srq_abort(s, NULL, vm, -ECANCELED, "incoming registration refused");
			if (!vm->dead) {
				srq_vm_forget(s, vm->handle);
				pg_vm_teardown(vm, false, why);
			}
			c->vm = NULL;
			reply_error(c, m->hdr.request_id, (uint32_t)code, why);
			return;
		}
		s->c.incoming++;
		LOG_INFO("vm %s: incoming shell of migration %llu registered, parked until the migration engine "
			 "lets it run", vm->id, (unsigned long long)m->u.reg.migration_id);
	}
	struct ferry_vmmp_register_ok ok = {
		.vm_handle = vm->handle,
		.server_features = FERRY_VMMP_SF_FREE_HINTS | FERRY_VMMP_SF_STATE |
				   (vm->can_pageout ? FERRY_VMMP_SF_WRITE_TRACK : 0) |
				   (m->u.reg.flags & FERRY_VMMP_REG_F_SERVER_REQ ? FERRY_VMMP_SF_SERVER_REQ : 0),
		.max_chunk = FERRY_VMMP_MAX_CHUNK,
	};
	send_buf(c, pg->txbuf, ferry_vmmp_encode_register_ok(m->hdr.request_id, &ok, pg->txbuf, FERRY_VMMP_MAX_MSG),
		 NULL, 0);
}

static void on_state_put(struct pg_conn *c, struct pg_vm *vm, const struct ferry_vmmp_msg *m)
{
	const struct ferry_vmmp_state *s = &m->u.state;

	if (s->offset == 0) {
		free(vm->state);
		vm->state = NULL;
		vm->state_total = s->total_len;
		vm->state_have = 0;
		vm->state_valid = false;
	} else if (s->offset != vm->state_have || s->total_len != vm->state_total || vm->state_valid) {
		reply_error(c, m->hdr.request_id, FERRY_VMMP_E_STATE_SEQUENCE,
			    "STATE_PUT chunk out of order or total changed (start again at offset 0)");
		return;
	}
	if (s->data_len) {
		uint8_t *n = realloc(vm->state, vm->state_have + s->data_len);

		if (!n) {
			reply_error(c, m->hdr.request_id, FERRY_VMMP_E_INTERNAL, "out of memory for the state blob");
			return;
		}
		vm->state = n;
		memcpy(vm->state + vm->state_have, s->data, s->data_len);
		vm->state_have += s->data_len;
	}
	if (vm->state_have == vm->state_total)
		vm->state_valid = true;
	reply_ok(c, m->hdr.request_id, vm->state_have);
}

static void on_state_get(struct pg_conn *c, struct pg_vm *vm, const struct ferry_vmmp_msg *m)
{
	const struct ferry_vmmp_state_get *g = &m->u.state_get;
	uint64_t n;
	int len;

	if (!vm->state_valid) {
		reply_error(c, m->hdr.request_id, FERRY_VMMP_E_NO_STATE, "no device state stored for this VM");
		return;
	}
	if (g->offset > vm->state_total) {
		reply_error(c, m->hdr.request_id, FERRY_VMMP_E_OUT_OF_RANGE, "offset beyond the end of the blob");
		return;
	}
	n = vm->state_total - g->offset;
	if (n > g->max_len)
		n = g->max_len;
	len = ferry_vmmp_encode_state_prefix(FERRY_VMMP_STATE_DATA, m->hdr.request_id, vm->state_total, g->offset,
					     (uint32_t)n, c->pg->txbuf, FERRY_VMMP_MAX_MSG);
	send_buf(c, c->pg->txbuf, len, n ? vm->state + g->offset : NULL, n);
}

static void on_stats(struct pg_conn *c, struct pg_vm *vm, uint64_t req)
{
	struct ferry_vmmp_stat st[FERRY_VMMP_MAX_STATS];
	unsigned n = pg_stats_fill(c->pg, vm, st, FERRY_VMMP_MAX_STATS);

	send_buf(c, c->pg->txbuf, ferry_vmmp_encode_stats_ok(req, st, (uint16_t)n, c->pg->txbuf, FERRY_VMMP_MAX_MSG),
		 NULL, 0);
}

static void dispatch(struct pg_conn *c, const struct ferry_vmmp_msg *m, int *fds, unsigned nfds)
{
	struct pg_vm *vm = c->vm;
	uint64_t req = m->hdr.request_id;

	if ((m->hdr.flags & FERRY_VMMP_F_REPLY) && (m->hdr.flags & FERRY_VMMP_F_SERVER)) {
		ferry_vmm_io_close_fds(fds, nfds);
		srq_answer(c, m);   /* the VMM answers one of our requests */
		return;
	}
	c->pg->g.requests++;
	if (m->hdr.type == FERRY_VMMP_REGISTER) {
		on_register(c, m, fds, nfds);
		return;
	}
	ferry_vmm_io_close_fds(fds, nfds);
	if (m->hdr.flags & FERRY_VMMP_F_REPLY) {
		reply_error(c, req, FERRY_VMMP_E_UNEXPECTED, "replies are not requests");
		return;
	}
	if (m->hdr.type == FERRY_VMMP_STATS && !vm) {
		on_stats(c, NULL, req);
		return;
	}
	if (!vm) {
		reply_error(c, req, FERRY_VMMP_E_UNEXPECTED, "no VM registered on this connection (REGISTER first)");
		return;
	}
	if (vm->failed && m->hdr.type != FERRY_VMMP_UNREGISTER) {
		char msg[200];

		snprintf(msg, sizeof(msg), "registration failed: %s", vm->fail_reason);
		reply_error(c, req, FERRY_VMMP_E_INTERNAL, msg);
		return;
	}
	switch (m->hdr.type) {
	case FERRY_VMMP_FREE_HINT: {
		uint64_t bytes = 0;
		int code = pg_unused_hints(vm, &m->u.hints, &bytes);

		if (code == FERRY_VMMP_E_UNSUPPORTED)
			reply_error(c, req, (uint32_t)code,
				    "a hint range lies in anonymous memory: discard it with madvise(MADV_DONTNEED) instead");
		else if (code)
			reply_error(c, req, (uint32_t)code, "a hint range lies outside the VM's regions");
		else
			reply_ok(c, req, bytes);
		break;
	}
	case FERRY_VMMP_NOTIFY:
		vm->suspended = m->u.notify.event == FERRY_VMMP_EV_SUSPEND;
		LOG_INFO("vm %s: %s", vm->id, vm->suspended ? "SUSPEND" : "RESUME");
		reply_ok(c, req, 0);
		break;
	case FERRY_VMMP_STATE_PUT:
		on_state_put(c, vm, m);
		break;
	case FERRY_VMMP_STATE_GET:
		on_state_get(c, vm, m);
		break;
	case FERRY_VMMP_STATS:
		on_stats(c, vm, req);
		break;
	case FERRY_VMMP_UNREGISTER:
		srq_abort(srq_find(c->pg), NULL, vm, -ECANCELED, "the VMM unregistered");
		if (c->vm != vm || vm->dead) {
			reply_ok(c, req, 0);
			break;
		}
		srq_vm_forget(srq_find(c->pg), vm->handle);
		pg_vm_teardown(vm, !vm->failed, "UNREGISTER");
		c->vm = NULL;
		reply_ok(c, req, 0);
		break;
	default:
		reply_error(c, req, FERRY_VMMP_E_UNEXPECTED, "not a request");
		break;
	}
}

/* One whole message in c->rx (c->rx_fds with it): decode and act. */
static void vmm_message(struct pg_conn *c)
{
	struct pager *pg = c->pg;
	static struct ferry_vmmp_msg msg;
	struct ferry_vmmp_hdr h = { 0 };
	size_t len = c->rx_have;
	int code;

	(void)ferry_vmmp_hdr_decode(c->rx, len, &h);
	if (c->refused) {
		ferry_vmm_io_close_fds(c->rx_fds, c->rx_nfds);
		reply_error(c, h.request_id, FERRY_VMMP_E_NOT_ALLOWED, "peer credentials not in the pager's allow-list");
		conn_close(c, "not allowed");
		return;
	}
	if (c->rx_fd_overflow) {
		ferry_vmm_io_close_fds(c->rx_fds, c->rx_nfds);
		pg->g.bad_messages++;
		reply_error(c, h.request_id, FERRY_VMMP_E_FD_MISMATCH, "more descriptors than any message may carry");
		return;
	}
	code = ferry_vmmp_decode(c->rx, len, c->rx_nfds, &msg);
	if (code != FERRY_VMMP_E_OK && (h.flags & FERRY_VMMP_F_REPLY) && (h.flags & FERRY_VMMP_F_SERVER)) {
		/* A broken answer to our request: nothing to reply to a reply. */
		ferry_vmm_io_close_fds(c->rx_fds, c->rx_nfds);
		pg->g.bad_messages++;
		srq_bad_answer(c, h.request_id);
		return;
	}
	if (code != FERRY_VMMP_E_OK) {
		char text[128];

		ferry_vmm_io_close_fds(c->rx_fds, c->rx_nfds);
		pg->g.bad_messages++;
		snprintf(text, sizeof(text), "%s message rejected: %s", ferry_vmmp_type_name(h.type),
			 ferry_vmmp_errcode_str((uint32_t)code));
		reply_error(c, h.request_id, (uint32_t)code, text);
		return;
	}
	dispatch(c, &msg, c->rx_fds, c->rx_nfds);
}

/*
 * Incremental, non-blocking framing: read at most up to the end of the
 * current message (never into the next one, so its descriptors stay queued),
 * keep partial messages in the connection and come back when epoll says so.
 * A slow or stalled VMM therefore never holds the loop.
 */
static void vmm_readable(struct pg_conn *c)
{
	struct pager *pg = c->pg;

	for (unsigned rounds = 0; rounds < 64 && !c->dead; rounds++) {
		size_t need = c->rx_have < FERRY_VMMP_HDR_LEN ? FERRY_VMMP_HDR_LEN : c->rx_need;
		char cbuf[CMSG_SPACE(FERRY_VMMP_MAX_FDS * sizeof(int))];
		struct iovec iov = { c->rx + c->rx_have, need - c->rx_have };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
				     .msg_controllen = sizeof(cbuf) };
		ssize_t n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			conn_close(c, errno == ECONNRESET ? "the VMM closed the connection" : "receive failed");
			return;
		}
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			unsigned k = (unsigned)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			int fd;

			for (unsigned i = 0; i < k; i++) {
				memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
				if (c->rx_nfds < FERRY_VMMP_MAX_FDS) {
					c->rx_fds[c->rx_nfds++] = fd;
				} else {
					close(fd);
					c->rx_fd_overflow = true;
				}
			}
		}
		if (mh.msg_flags & MSG_CTRUNC)
			c->rx_fd_overflow = true;
		if (n == 0) {
			ferry_vmm_io_close_fds(c->rx_fds, c->rx_nfds);
			c->rx_nfds = 0;
			conn_close(c, c->rx_have ? "the VMM closed the connection mid-message"
						 : "the VMM closed the connection");
			return;
		}
		c->rx_have += (size_t)n;
		if (c->rx_have == FERRY_VMMP_HDR_LEN && c->rx_need == 0) {
			struct ferry_vmmp_hdr h;
			int code = ferry_vmmp_hdr_decode(c->rx, FERRY_VMMP_HDR_LEN, &h);

			if (code != FERRY_VMMP_E_OK) {
				/* The stream cannot be resynchronised: say why, then close. */
				uint64_t req = 0;

				pg->g.bad_messages++;
				ferry_vmm_io_close_fds(c->rx_fds, c->rx_nfds);
				c->rx_nfds = 0;
				if (code != FERRY_VMMP_E_BAD_MAGIC) {
					memcpy(&req, c->rx + 8, 8);
					req = le64toh(req);
				}
				reply_error(c, req, (uint32_t)code, "bad message header; closing the connection");
				conn_close(c, "bad message header");
				return;
			}
			c->rx_need = FERRY_VMMP_HDR_LEN + h.payload_len;
			if (c->rx_need > c->rx_cap) {
				uint8_t *nb = realloc(c->rx, c->rx_need);

				if (!nb) {
					conn_close(c, "out of memory");
					return;
				}
				c->rx = nb;
				c->rx_cap = c->rx_need;
			}
		}
		if (c->rx_have < FERRY_VMMP_HDR_LEN || c->rx_have < c->rx_need)
			continue;
		vmm_message(c);
		c->rx_have = 0;
		c->rx_need = 0;
		c->rx_nfds = 0;
		c->rx_fd_overflow = false;
		if (c->rx_cap > 65536) {
			/* Do not keep a 1 MiB buffer per idle connection. */
			uint8_t *nb = realloc(c->rx, FERRY_VMMP_HDR_LEN);

			if (nb) {
				c->rx = nb;
				c->rx_cap = FERRY_VMMP_HDR_LEN;
			}
		}
	}
}

void pg_conn_event(struct pg_conn *c, uint32_t events)
{
	if (c->dead || srq_is_timer(c, events))
		return;
	if (c->kind == PG_CONN_FC) {
		pg_fc_readable(c);
		return;
	}
	if (events & EPOLLIN) {
		vmm_readable(c);
		return;
	}
	if (events & (EPOLLHUP | EPOLLERR))
		conn_close(c, "the VMM hung up");
}

void pg_conn_close(struct pg_conn *c, const char *why)
{
	conn_close(c, why);
}
struct pg_conn *pg_conn_new(struct pager *pg, int fd, enum pg_conn_kind kind)
{
	return conn_new(pg, fd, kind);
}

/* ------------------------------------------------------------ server requests (vmm_requests.h) */

/*
 * Everything the server-request machinery keeps lives here, keyed by the
 * pager, so the rest of the pager needs no new fields: the outstanding
 * requests (one srq_op per call; a DROP_PTES split into several messages
 * uses consecutive request ids), per-VM extras (does the VMM serve requests,
 * is it parked, its migration id) and a timerfd that expires requests. The
 * timer joins the epoll set as a pseudo connection that pg_conn_event()
 * recognises; it only ticks while requests are outstanding.
 */
static struct srq_pager *srq_pagers;

static int64_t srq_now(void)
{
	return ferry_vmm_io_deadline(0);
}

static struct srq_pager *srq_find(const struct pager *pg)
{
	for (struct srq_pager *s = srq_pagers; s; s = s->next)
		if (s->pg == pg)
			return s;
	return NULL;
}

static struct srq_pager *srq_get(struct pager *pg)
{
	struct srq_pager *s = srq_find(pg);

	if (s)
		return s;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->pg = pg;
	s->tfd = -1;
	s->next_id = 1;
	s->timeout_ms = PG_VMM_REQ_TIMEOUT_MS;
	s->next = srq_pagers;
	srq_pagers = s;
	return s;
}

static struct srq_vm *srq_vm_find(struct srq_pager *s, const struct pg_vm *vm)
{
	if (!s || !vm)
		return NULL;
	for (struct srq_vm *v = s->vms; v; v = v->next)
		if (v->handle == vm->handle)
			return v;
	return NULL;
}

static struct srq_vm *srq_vm_get(struct srq_pager *s, const struct pg_vm *vm)
{
	struct srq_vm *v = srq_vm_find(s, vm);

	if (v)
		return v;
	v = calloc(1, sizeof(*v));
	if (!v)
		return NULL;
	v->handle = vm->handle;
	v->next = s->vms;
	s->vms = v;
	return v;
}

static void srq_vm_forget(struct srq_pager *s, uint64_t handle)
{
	for (struct srq_vm **pp = s ? &s->vms : NULL; pp && *pp; pp = &(*pp)->next) {
		if ((*pp)->handle == handle) {
			struct srq_vm *v = *pp;

			*pp = v->next;
			free(v);
			return;
		}
	}
}

/* Start or stop the tick: it runs only while requests are outstanding. */
static void srq_arm(struct srq_pager *s)
{
	bool want = s->ops != NULL;
	struct itimerspec its = { 0 };

	if (want == s->armed)
		return;
	if (want && s->tfd < 0) {
		s->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		if (s->tfd < 0) {
			LOG_ERR("server requests: timerfd: %s (requests will not time out)", strerror(errno));
			return;
		}
		s->tconn = calloc(1, sizeof(*s->tconn));
		if (!s->tconn || pg_epoll_add(s->pg, s->tfd, PG_EV_CONN, s->tconn, 0, &s->ttag)) {
			LOG_ERR("server requests: cannot watch the timer (requests will not time out)");
			free(s->tconn);
			s->tconn = NULL;
			close(s->tfd);
			s->tfd = -1;
			return;
		}
		s->tconn->pg = s->pg;
		s->tconn->fd = s->tfd;
		s->tconn->kind = PG_CONN_VMMP;
	}
	if (want) {
		its.it_value.tv_nsec = SRQ_TICK_MS * 1000000L;
		its.it_interval.tv_nsec = SRQ_TICK_MS * 1000000L;
	}
	if (s->tfd >= 0 && timerfd_settime(s->tfd, 0, &its, NULL) == 0)
		s->armed = want;
}

/* Unlink @op, run its completion once. */
static void srq_complete(struct srq_pager *s, struct srq_op *op, int status)
{
	for (struct srq_op **pp = &s->ops; *pp; pp = &(*pp)->next) {
		if (*pp == op) {
			*pp = op->next;
			break;
		}
	}
	if (status == 0)
		s->c.ok++;
	LOG_DEBUG("vm %s: %s request %llu done: %s", op->vm->id, ferry_vmmp_type_name(op->type),
		  (unsigned long long)op->first_id, status ? strerror(-status) : "ok");
	srq_arm(s);
	if (op->done)
		op->done(op->vm, status, op->ctx);
	free(op->ranges);
	free(op);
}

/* Fail every outstanding request matching @conn (or @vm; NULL matches all) with @status. */
static void srq_abort(struct srq_pager *s, const struct pg_conn *conn, const struct pg_vm *vm, int status,
		      const char *why)
{
	struct srq_op *op;

	if (!s)
		return;
restart:
	for (op = s->ops; op; op = op->next) {
		if ((conn && op->conn != conn) || (vm && op->vm != vm))
			continue;
		s->c.aborted++;
		LOG_INFO("vm %s: %s request %llu abandoned: %s", op->vm->id, ferry_vmmp_type_name(op->type),
			 (unsigned long long)op->first_id, why);
		srq_complete(s, op, status);
		goto restart;   /* the completion may have changed the list */
	}
}

static int srq_code_errno(uint32_t code)
{
	switch (code) {
	case FERRY_VMMP_E_UNSUPPORTED:
		return EOPNOTSUPP;
	case FERRY_VMMP_E_BUSY:
		return EBUSY;
	case FERRY_VMMP_E_OUT_OF_RANGE:
		return ERANGE;
	case FERRY_VMMP_E_NO_STATE:
		return ENOENT;
	case FERRY_VMMP_E_STATE_SEQUENCE:
		return EILSEQ;
	case FERRY_VMMP_E_INTERNAL:
		return EIO;
	case FERRY_VMMP_E_SHUTDOWN:
		return ESHUTDOWN;
	default:
		return EREMOTEIO;
	}
}

/* The timer fired: expire overdue requests, drop those whose VM is gone, forget vanished VMs. */
static void srq_tick(struct srq_pager *s)
{
	uint64_t ticks;
	int64_t now = srq_now();
	struct srq_op *op;

	while (read(s->tfd, &ticks, sizeof(ticks)) > 0)
		;
restart:
	for (op = s->ops; op; op = op->next) {
		if (op->vm->dead || op->conn->dead) {
			s->c.aborted++;
			srq_complete(s, op, -ECONNRESET);
			goto restart;
		}
		if (now >= op->deadline) {
			s->c.timeouts++;
			LOG_WARN("vm %s: the VMM did not answer %s request %llu within %u ms", op->vm->id,
				 ferry_vmmp_type_name(op->type), (unsigned long long)op->first_id, s->timeout_ms);
			srq_complete(s, op, -ETIMEDOUT);
			goto restart;
		}
	}
	for (struct srq_vm **pp = &s->vms; *pp;) {
		bool alive = false;

		for (struct pg_vm *vm = s->pg->vms; vm && !alive; vm = vm->next)
			alive = vm->handle == (*pp)->handle && !vm->dead;
		if (alive) {
			pp = &(*pp)->next;
		} else {
			struct srq_vm *v = *pp;

			*pp = v->next;
			free(v);
		}
	}
}

/*
 * Free removed watches: only at shutdown, since an event of an unwatched
 * descriptor may still sit in the loop's current batch (its tag must stay
 * readable; pg_epoll_del() only cleared it).
 */
static void srq_watch_reap(struct srq_pager *s)
{
	for (struct srq_watch **pp = &s->watches; *pp;) {
		struct srq_watch *w = *pp;

		if (!w->dead) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		free(w->tag);
		free(w->conn);
		free(w);
	}
}

/* Is @c one of ours (the timer, a watched descriptor)? Then handle it. */
static bool srq_is_timer(struct pg_conn *c, uint32_t events)
{
	struct srq_pager *s = srq_find(c->pg);

	if (!s)
		return false;
	if (s->tconn == c) {
		srq_tick(s);
		return true;
	}
	for (struct srq_watch *w = s->watches; w; w = w->next) {
		if (w->conn != c)
			continue;
		if (!w->dead)
			w->fn(s->pg, w->fd, events, w->arg);
		return true;
	}
	return false;
}

int pg_loop_watch(struct pager *pg, int fd, pg_loop_fd_fn *fn, void *arg)
{
	struct srq_pager *s = srq_get(pg);
	struct srq_watch *w;

	if (!s)
		return -ENOMEM;
	if (fd < 0 || !fn)
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->conn = calloc(1, sizeof(*w->conn));
	if (!w->conn) {
		free(w);
		return -ENOMEM;
	}
	w->conn->pg = pg;
	w->conn->fd = fd;
	w->conn->kind = PG_CONN_VMMP;
	w->fd = fd;
	w->fn = fn;
	w->arg = arg;
	if (pg_epoll_add(pg, fd, PG_EV_CONN, w->conn, 0, &w->tag)) {
		int e = errno;

		free(w->conn);
		free(w);
		return -e;
	}
	w->next = s->watches;
	s->watches = w;
	return 0;
}

void pg_loop_unwatch(struct pager *pg, int fd)
{
	struct srq_pager *s = srq_find(pg);

	for (struct srq_watch *w = s ? s->watches : NULL; w; w = w->next) {
		if (w->fd == fd && !w->dead) {
			pg_epoll_del(pg, fd, w->tag);
			w->dead = true;   /* freed at shutdown: its event may still be queued this round */
			return;
		}
	}
}

/* An answer (OK or ERROR with F_SERVER) to one of our requests. */
static void srq_answer(struct pg_conn *c, const struct ferry_vmmp_msg *m)
{
	struct srq_pager *s = srq_find(c->pg);
	uint64_t id = m->hdr.request_id;
	struct srq_op *op = NULL;

	for (struct srq_op *o = s ? s->ops : NULL; o; o = o->next)
		if (o->conn == c && id >= o->first_id && id < o->first_id + o->nparts)
			op = o;
	if (!op) {
		if (s)
			s->c.bad_replies++;
		LOG_WARN("VMM pid %d answered server request %llu, which is not outstanding (late or invented)",
			 (int)c->pid, (unsigned long long)id);
		return;
	}
	op->answered++;
	if (m->hdr.type == FERRY_VMMP_ERROR) {
		s->c.refused++;
		s->last_error = m->u.error.code;
		LOG_INFO("vm %s: the VMM refused %s request %llu: %s: %s", op->vm->id, ferry_vmmp_type_name(op->type),
			 (unsigned long long)id, ferry_vmmp_errcode_str(m->u.error.code), m->u.error.msg);
		if (!op->status)
			op->status = -srq_code_errno(m->u.error.code);
	} else if (op->type == FERRY_VMMP_PAUSE) {
		struct pg_vm *vm = op->vm;

		if (op->check_state && (!vm->state_valid || vm->state_total != m->u.ok.value)) {
			s->c.bad_replies++;
			LOG_WARN("vm %s: PAUSE answered with %llu state bytes, but the pager holds %s%llu", vm->id,
				 (unsigned long long)m->u.ok.value, vm->state_valid ? "" : "an incomplete blob of ",
				 (unsigned long long)vm->state_have);
			if (!op->status)
				op->status = -EPROTO;
		}
		vm->suspended = true;
	} else if (op->type == FERRY_VMMP_RESUME) {
		op->vm->suspended = false;
	}
	if (op->answered == op->nparts)
		srq_complete(s, op, op->status);
}

/* Can @vm be asked? @return its pager's state, or NULL with *rc set. */
static struct srq_pager *srq_target(struct pg_vm *vm, int *rc)
{
	struct srq_pager *s;
	struct srq_vm *v;

	*rc = -EINVAL;
	if (!vm)
		return NULL;
	s = srq_get(vm->pg);
	*rc = -ENOMEM;
	if (!s)
		return NULL;
	v = srq_vm_find(s, vm);
	*rc = -EOPNOTSUPP;
	if (vm->kind != PG_VM_VMMP || !v || !v->server_req)
		return NULL;
	*rc = -ENOTCONN;
	if (vm->dead || !vm->conn || vm->conn->dead)
		return NULL;
	*rc = 0;
	return s;
}

/* Send @len bytes of pg->txbuf to @vm's VMM. On failure the connection closes. */
static int srq_send(struct srq_pager *s, struct pg_vm *vm, int len)
{
	struct iovec iov = { s->pg->txbuf, (size_t)len };
	int rc;

	if (len < 0) {
		LOG_ERR("encoding a server request failed (%d)", len);
		return -EINVAL;
	}
	rc = ferry_vmm_io_send(vm->conn->fd, &iov, 1, NULL, 0, ferry_vmm_io_deadline(SEND_DEADLINE_MS));
	if (rc < 0) {
		conn_close(vm->conn, "a server request could not be sent");
		return -EIO;
	}
	s->c.sent++;
	return 0;
}

static struct srq_op *srq_op_new(struct srq_pager *s, struct pg_vm *vm, uint8_t type, uint32_t nparts,
				 pg_vmm_done_fn *done, void *ctx)
{
	struct srq_op *op = calloc(1, sizeof(*op));

	if (!op)
		return NULL;
	op->vm = vm;
	op->conn = vm->conn;
	op->type = type;
	op->first_id = s->next_id;
	op->nparts = nparts;
	op->deadline = srq_now() + (int64_t)s->timeout_ms * 1000000;
	op->done = done;
	op->ctx = ctx;
	s->next_id += nparts;
	return op;
}

static void srq_link(struct srq_pager *s, struct srq_op *op)
{
	struct srq_op **pp = &s->ops;

	while (*pp)
		pp = &(*pp)->next;
	*pp = op;
	srq_arm(s);
}

static int srq_ctl(struct pg_vm *vm, uint8_t type, uint32_t flags, pg_vmm_done_fn *done, void *ctx)
{
	int rc;
	struct srq_pager *s = srq_target(vm, &rc);
	struct srq_op *op;

	if (!s)
		return rc;
	op = srq_op_new(s, vm, type, 1, done, ctx);
	if (!op)
		return -ENOMEM;
	op->check_state = type == FERRY_VMMP_PAUSE && (flags & FERRY_VMMP_PAUSE_F_SAVE_STATE);
	if (op->check_state) {
		/* The old blob is stale from now on; the VMM uploads a new one before answering. */
		free(vm->state);
		vm->state = NULL;
		vm->state_total = vm->state_have = 0;
		vm->state_valid = false;
	}
	rc = srq_send(s, vm, ferry_vmmp_encode_ctl(type, op->first_id, flags, s->pg->txbuf, FERRY_VMMP_MAX_MSG));
	if (rc < 0) {
		free(op);
		return rc;
	}
	LOG_INFO("vm %s: %s sent (request %llu)", vm->id, ferry_vmmp_type_name(type), (unsigned long long)op->first_id);
	srq_link(s, op);
	return 0;
}

int pg_vmm_request_pause(struct pg_vm *vm, pg_vmm_done_fn *done, void *ctx)
{
	return srq_ctl(vm, FERRY_VMMP_PAUSE, FERRY_VMMP_PAUSE_F_SAVE_STATE, done, ctx);
}

int pg_vmm_request_resume(struct pg_vm *vm, bool load_state, pg_vmm_done_fn *done, void *ctx)
{
	if (vm && load_state && !vm->state_valid)
		return -ENOENT;
	return srq_ctl(vm, FERRY_VMMP_RESUME, load_state ? FERRY_VMMP_RESUME_F_LOAD_STATE : 0, done, ctx);
}

static int range_cmp(const void *a, const void *b)
{
	const struct ferry_vmmp_range *x = a, *y = b;

	return x->gpa < y->gpa ? -1 : x->gpa > y->gpa;
}

int pg_vmm_request_drop_ptes(struct pg_vm *vm, const struct ferry_vmmp_range *r, size_t n, pg_vmm_done_fn *done,
			     void *ctx)
{
	struct ferry_vmmp_range *v;
	struct srq_pager *s;
	struct srq_op *op;
	size_t m = 0;
	int rc;

	if (!r || n == 0)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (r[i].len == 0 || ((r[i].gpa | r[i].len) & (FERRY_VMMP_HINT_UNIT - 1)) ||
		    r[i].len > FERRY_VMMP_GPA_LIMIT || r[i].gpa > FERRY_VMMP_GPA_LIMIT - r[i].len)
			return -EINVAL;
	s = srq_target(vm, &rc);
	if (!s)
		return rc;
	v = malloc(n * sizeof(*v));
	if (!v)
		return -ENOMEM;
	memcpy(v, r, n * sizeof(*v));
	qsort(v, n, sizeof(*v), range_cmp);
	for (size_t i = 0; i < n; i++) {
		if (m && v[i].gpa <= v[m - 1].gpa + v[m - 1].len) {
			uint64_t end = v[i].gpa + v[i].len;

			if (end > v[m - 1].gpa + v[m - 1].len)
				v[m - 1].len = end - v[m - 1].gpa;
		} else {
			v[m++] = v[i];
		}
	}
	op = srq_op_new(s, vm, FERRY_VMMP_DROP_PTES, (uint32_t)((m + FERRY_VMMP_MAX_DROP - 1) / FERRY_VMMP_MAX_DROP),
			done, ctx);
	if (!op) {
		free(v);
		return -ENOMEM;
	}
	op->ranges = v;     /* the op owns them from here */
	op->nranges = m;
	for (uint32_t part = 0; part < op->nparts; part++) {
		size_t first = (size_t)part * FERRY_VMMP_MAX_DROP;
		uint32_t k = (uint32_t)(m - first < FERRY_VMMP_MAX_DROP ? m - first : FERRY_VMMP_MAX_DROP);

		rc = srq_send(s, vm, ferry_vmmp_encode_drop_ptes(op->first_id + part, v + first, k, s->pg->txbuf,
								 FERRY_VMMP_MAX_MSG));
		if (rc < 0 && part == 0) {
			free(op);
			free(v);
			return rc;
		}
		/* Linked: once the connection closes, op (and v) may be freed by the completion. */
		if (part == 0)
			srq_link(s, op);
		if (rc < 0)
			break;   /* the connection closed: the op was completed with -ECONNRESET */
	}
	LOG_INFO("vm %s: DROP_PTES of %zu ranges sent", vm->id, m);
	return 0;
}

bool pg_vmm_dropping(const struct pg_vm *vm, uint64_t start, uint64_t end)
{
	const struct srq_pager *s = vm ? srq_find(vm->pg) : NULL;

	for (const struct srq_op *op = s ? s->ops : NULL; op; op = op->next) {
		if (op->vm != vm || op->type != FERRY_VMMP_DROP_PTES)
			continue;
		/* Every part of [start, end) inside the VM's regions must be inside a dropped range. */
		for (uint64_t a = start; a < end;) {
			const struct pg_region *r = NULL;
			uint64_t gpa, stop;
			bool in = false;

			for (unsigned i = 0; i < vm->nregions && !r; i++)
				if (a >= vm->regions[i].hva && a < vm->regions[i].hva + vm->regions[i].size)
					r = &vm->regions[i];
			if (!r)
				break;
			gpa = r->gpa + (a - r->hva);
			stop = end < r->hva + r->size ? end : r->hva + r->size;
			for (size_t i = 0; i < op->nranges && !in; i++) {
				const struct ferry_vmmp_range *d = &op->ranges[i];

				if (gpa >= d->gpa && gpa < d->gpa + d->len) {
					in = true;
					if (d->gpa + d->len - gpa < stop - a)
						stop = a + (d->gpa + d->len - gpa);
				}
			}
			if (!in)
				goto next_op;
			a = stop;
			if (a >= end)
				return true;
		}
next_op:;
	}
	return false;
}

int pg_vmm_notice_migrated(struct pg_vm *vm)
{
	int rc;
	struct srq_pager *s = srq_target(vm, &rc);

	if (!s)
		return rc;
	rc = srq_send(s, vm, ferry_vmmp_encode_notice(s->next_id++, FERRY_VMMP_NOTICE_MIGRATED, s->pg->txbuf,
						      FERRY_VMMP_MAX_MSG));
	if (rc == 0)
		LOG_INFO("vm %s: NOTICE migrated sent", vm->id);
	return rc;
}

void pg_vmm_set_request_timeout(struct pager *pg, unsigned timeout_ms)
{
	struct srq_pager *s = srq_get(pg);

	if (s && timeout_ms)
		s->timeout_ms = timeout_ms;
}

uint32_t pg_vmm_last_error(const struct pager *pg)
{
	const struct srq_pager *s = srq_find(pg);

	return s ? s->last_error : 0;
}

void pg_vmm_request_counters(const struct pager *pg, struct pg_vmm_req_counters *out)
{
	const struct srq_pager *s = srq_find(pg);

	memset(out, 0, sizeof(*out));
	if (s)
		*out = s->c;
}

bool pg_vm_parked(const struct pg_vm *vm)
{
	const struct srq_vm *v = vm ? srq_vm_find(srq_find(vm->pg), vm) : NULL;

	return v && v->parked;
}

uint64_t pg_vm_migration_id(const struct pg_vm *vm)
{
	const struct srq_vm *v = vm ? srq_vm_find(srq_find(vm->pg), vm) : NULL;

	return v ? v->migration_id : 0;
}

/* Level-triggered epoll: with no events the uffd is not reported, pending faults wait in the kernel. */
static int srq_set_uffd_events(struct pg_vm *vm, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = vm->ev_tag };

	if (vm->dead || vm->uffd < 0 || !vm->ev_tag)
		return -EBADF;
	if (epoll_ctl(vm->pg->epfd, EPOLL_CTL_MOD, vm->uffd, &ev) < 0)
		return -errno;
	return 0;
}

int pg_vm_park(struct pg_vm *vm)
{
	struct srq_vm *v;
	int rc;

	if (!vm)
		return -EINVAL;
	v = srq_vm_get(srq_get(vm->pg), vm);
	if (!v)
		return -ENOMEM;
	rc = srq_set_uffd_events(vm, 0);
	if (rc == 0)
		v->parked = true;
	return rc;
}

int pg_vm_unpark(struct pg_vm *vm)
{
	struct srq_vm *v = vm ? srq_vm_find(srq_find(vm->pg), vm) : NULL;
	int rc;

	if (!vm)
		return -EINVAL;
	rc = srq_set_uffd_events(vm, EPOLLIN);
	if (rc == 0 && v)
		v->parked = false;
	return rc;
}

/* The pager shuts down: abandon every request, stop the timer, free the state. */
static void srq_shutdown(struct pager *pg)
{
	struct srq_pager *s = srq_find(pg);

	if (!s)
		return;
	srq_abort(s, NULL, NULL, -ECANCELED, "pager shutting down");
	LOG_INFO("server requests: sent=%llu ok=%llu refused=%llu timeouts=%llu aborted=%llu bad_replies=%llu "
		 "incoming=%llu incoming_refused=%llu",
		 (unsigned long long)s->c.sent, (unsigned long long)s->c.ok, (unsigned long long)s->c.refused,
		 (unsigned long long)s->c.timeouts, (unsigned long long)s->c.aborted,
		 (unsigned long long)s->c.bad_replies, (unsigned long long)s->c.incoming,
		 (unsigned long long)s->c.incoming_refused);
	if (s->tfd >= 0) {
		pg_epoll_del(pg, s->tfd, s->ttag);
		close(s->tfd);
	}
	free(s->ttag);
	free(s->tconn);
	for (struct srq_watch *w = s->watches; w; w = w->next) {
		if (!w->dead)
			pg_epoll_del(pg, w->fd, w->tag);
		w->dead = true;
	}
	srq_watch_reap(s);
	while (s->vms) {
		struct srq_vm *v = s->vms;

		s->vms = v->next;
		free(v);
	}
	for (struct srq_pager **pp = &srq_pagers; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	free(s);
}

static void srq_vm_set(struct srq_vm *v, bool server_req, uint64_t migration_id)
{
	v->server_req = server_req;
	v->migration_id = migration_id;
}

static void srq_bad_answer(struct pg_conn *c, uint64_t id)
{
	struct srq_pager *s = srq_find(c->pg);

	if (!s)
		return;
	s->c.bad_replies++;
	for (struct srq_op *op = s->ops; op; op = op->next) {
		if (op->conn != c || id < op->first_id || id >= op->first_id + op->nparts)
			continue;
		LOG_WARN("vm %s: invalid answer to %s request %llu", op->vm->id, ferry_vmmp_type_name(op->type),
			 (unsigned long long)id);
		if (!op->status)
			op->status = -EPROTO;
		if (++op->answered == op->nparts)
			srq_complete(s, op, op->status);
		return;
	}
}
