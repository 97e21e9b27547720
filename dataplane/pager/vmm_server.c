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
#include <sys/un.h>
#include <unistd.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/vmm/vmm_io.h"

#define SEND_DEADLINE_MS 2000

pg_vm_incoming_fn *pg_vm_incoming_hook;
void *pg_vm_incoming_ctx;

int pg_unix_listen(const char *path, struct ferry_err *err)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	socklen_t alen;
	size_t len = strlen(path);
	int fd;

	if (len == 0 || len >= sizeof(a.sun_path))
		return ferry_err_set(err, ENAMETOOLONG, "socket path '%s' empty or too long", path);
	memcpy(a.sun_path, path, len);
	if (path[0] == '@')
		a.sun_path[0] = '\0';
	alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '@' ? 0 : 1));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return ferry_err_set(err, errno, "socket: %s", strerror(errno));
	if (path[0] != '@') {
		struct stat st;

		/* A stale socket from an earlier run; never remove anything else. */
		if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
			unlink(path);
	}
	if (bind(fd, (struct sockaddr *)&a, alen) < 0 || listen(fd, 64) < 0) {
		int e = errno;

		close(fd);
		return ferry_err_set(err, e, "listen on %s: %s", path, strerror(e));
	}
	/* Access control is the SO_PEERCRED allow-list, not file modes. */
	if (path[0] != '@')
		chmod(path, 0666);
	return fd;
}

int pg_vmm_listen(struct pager *pg, struct ferry_err *err)
{
	int fd = pg_unix_listen(pg->cfg->socket, err);

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
	struct ferry_vmmp_register_ok ok = {
		.vm_handle = vm->handle,
		.server_features = FERRY_VMMP_SF_FREE_HINTS | FERRY_VMMP_SF_STATE |
				   (vm->can_pageout ? FERRY_VMMP_SF_WRITE_TRACK : 0),
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
	if (c->dead)
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
