/*
 * The Firecracker-compatible UFFD socket.
 *
 * Firecracker, restoring a snapshot with the `Uffd` memory backend, connects
 * to a Unix socket and sends ONE message: a JSON array describing its guest
 * regions (base_host_virt_addr, size, offset, page size) with the uffd in
 * SCM_RIGHTS. It expects no reply. The JSON has no length prefix: bytes are
 * gathered until ferry_vmmp_fc_frame() sees a whole top-level array (the
 * first descriptor may come with any of the chunks), then
 * ferry_vmmp_fc_decode() validates it and ferry_vmmp_fc_to_register() turns
 * it into a registration of anonymous regions served from the snapshot
 * memory file (config snapshot_file, mapped read-only; data pages are
 * REMOTE(snapshot), holes UNUSED) or, with no file, all zero pages.
 *
 * The VM lives as long as the Firecracker process (watched with a pidfd),
 * not the socket: Firecracker versions differ on whether they keep it open.
 * Bad handshakes are logged, counted (fc_rejected) and the socket closed.
 */
#include "dataplane/pager/pager.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/common/unix_listen.h"
#include "dataplane/vmm/vmm_io.h"

int pg_fc_listen(struct pager *pg, struct ferry_err *err)
{
	int fd = ferry_unix_listen(pg->cfg->fc_socket, 0666, 64, err);

	if (fd < 0)
		return fd;
	pg->fc_lfd = fd;
	if (pg_epoll_add(pg, fd, PG_EV_FC_LISTEN, pg, 0, &pg->fc_ltag))
		return ferry_err_set(err, errno, "epoll_ctl: %s", strerror(errno));
	LOG_INFO("Firecracker UFFD socket listening on %s (%s)", pg->cfg->fc_socket,
		 pg->snap ? pg->cfg->snapshot_file : "no snapshot file: zero pages");
	return 0;
}

void pg_fc_accept(struct pager *pg)
{
	for (;;) {
		int fd = accept4(pg->fc_lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct pg_conn *c;

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR)
				LOG_WARN("accept on the Firecracker socket: %s", strerror(errno));
			return;
		}
		c = pg_conn_new(pg, fd, PG_CONN_FC);
		if (c && c->refused) {
			pg->g.fc_rejected++;
			pg_conn_close(c, "not allowed");
		}
	}
}

static void reject(struct pg_conn *c, const char *why)
{
	c->pg->g.fc_rejected++;
	LOG_WARN("Firecracker handshake from pid %d rejected: %s", (int)c->pid, why);
	pg_conn_close(c, "bad handshake");
}

static void handshake(struct pg_conn *c, size_t frame_len)
{
	struct pager *pg = c->pg;
	static struct ferry_vmmp_fc_handshake hs;
	static struct ferry_vmmp_register reg;
	char why[256] = "", id[FERRY_VMMP_VM_ID_MAX + 1];
	struct pg_vm *vm = NULL;
	int code, fds[1];

	code = ferry_vmmp_fc_decode(c->fcbuf, frame_len, c->fc_nfds, &hs, why, sizeof(why));
	if (code) {
		char msg[320];

		snprintf(msg, sizeof(msg), "%s: %s", ferry_vmmp_errcode_str((uint32_t)code), why);
		reject(c, msg);
		return;
	}
	snprintf(id, sizeof(id), "fc-%d-%llu", (int)c->pid, (unsigned long long)pg->next_handle + 1);
	code = ferry_vmmp_fc_to_register(&hs, id, &reg);
	if (code) {
		reject(c, ferry_vmmp_errcode_str((uint32_t)code));
		return;
	}
	fds[0] = c->fc_fds[0];
	c->fc_fds[0] = -1;
	c->fc_nfds = 0;
	code = pg_vm_create(pg, PG_VM_FC, &reg, fds, 1, c->pid, c, &vm, why, sizeof(why));
	if (code) {
		reject(c, why);
		return;
	}
	pg->g.fc_handshakes++;
	c->vm = vm;
	vm->pidfd = (int)syscall(SYS_pidfd_open, c->pid, 0);
	if (vm->pidfd >= 0 && pg_epoll_add(pg, vm->pidfd, PG_EV_PIDFD, vm, 0, &vm->pid_tag)) {
		close(vm->pidfd);
		vm->pidfd = -1;
	}
	if (vm->pidfd < 0)
		LOG_WARN("vm %s: cannot watch pid %d (%s); it is dropped when its socket closes", vm->id, (int)c->pid,
			 strerror(errno));
}

void pg_fc_readable(struct pg_conn *c)
{
	uint8_t tmp[4096];
	char cbuf[CMSG_SPACE(4 * sizeof(int))];
	struct iovec iov = { tmp, sizeof(tmp) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	ssize_t n;

	n = recvmsg(c->fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		unsigned k = (unsigned)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		int *p = (int *)CMSG_DATA(cm);

		for (unsigned i = 0; i < k; i++) {
			if (c->fc_nfds < 4)
				c->fc_fds[c->fc_nfds++] = p[i];
			else
				close(p[i]);
		}
	}
	if (n <= 0) {
		if (c->vm) {
			pg_conn_close(c, "Firecracker closed the socket");
			return;
		}
		reject(c, n == 0 ? "connection closed before a whole handshake arrived" : strerror(errno));
		return;
	}
	if (c->vm || (mh.msg_flags & MSG_CTRUNC)) {
		/* After the handshake Firecracker has nothing to say; drain. */
		if (mh.msg_flags & MSG_CTRUNC)
			LOG_WARN("Firecracker pid %d: truncated descriptors", (int)c->pid);
		ferry_vmm_io_close_fds(c->fc_fds, c->fc_nfds);
		c->fc_nfds = 0;
		return;
	}
	if (c->fclen + (size_t)n > FERRY_VMMP_FC_MAX_LEN) {
		reject(c, "handshake longer than 64 KiB");
		return;
	}
	uint8_t *nb = realloc(c->fcbuf, c->fclen + (size_t)n);

	if (!nb) {
		reject(c, "out of memory");
		return;
	}
	c->fcbuf = nb;
	memcpy(c->fcbuf + c->fclen, tmp, (size_t)n);
	c->fclen += (size_t)n;

	size_t frame = 0;
	int code = ferry_vmmp_fc_frame(c->fcbuf, c->fclen, &frame);

	if (code == FERRY_VMMP_E_TRUNCATED)
		return;
	if (code) {
		reject(c, ferry_vmmp_errcode_str((uint32_t)code));
		return;
	}
	/* Whitespace may follow; anything else is a protocol violation the decoder reports. */
	handshake(c, c->fclen);
}
