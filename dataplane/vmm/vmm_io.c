/*
 * Socket plumbing for the VMM protocol: see vmm_io.h.
 *
 * Framing rule that makes descriptor passing safe on a stream socket: a
 * message that carries descriptors is sent with them attached to its first
 * byte, and receivers never read past the end of the message they are
 * reading. The kernel delivers SCM_RIGHTS with the first recvmsg() that
 * consumes bytes of the segment they came with, so descriptors always land
 * in the read of their own message's header.
 */
#include "dataplane/vmm/vmm_io.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Room for one more descriptor than any message may carry, to detect excess. */
#define CMSG_FDS (FERRY_VMMP_MAX_FDS + 1)

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t ferry_vmm_io_deadline(int timeout_ms)
{
	if (timeout_ms < 0)
		return FERRY_VMM_IO_NO_DEADLINE;
	return now_ns() + (int64_t)timeout_ms * 1000000;
}

/* Wait for @events on @sock until @deadline. @return 0, -ETIMEDOUT or -errno. */
static int wait_for(int sock, short events, int64_t deadline)
{
	for (;;) {
		struct pollfd pfd = { .fd = sock, .events = events };
		int timeout = -1, rc;

		if (deadline != FERRY_VMM_IO_NO_DEADLINE) {
			int64_t left = deadline - now_ns();

			if (left <= 0)
				return -ETIMEDOUT;
			/* Round up so that we never spin on a sub-millisecond remainder. */
			timeout = left / 1000000 >= 1000000000 ? 1000000000 : (int)((left + 999999) / 1000000);
		}
		rc = poll(&pfd, 1, timeout);
		if (rc > 0)
			return 0; /* readable, writable, or POLLHUP/POLLERR: the I/O call tells which */
		if (rc == 0)
			continue; /* re-check the deadline */
		if (errno != EINTR)
			return -errno;
	}
}

int ferry_vmm_io_send(int sock, const struct iovec *iov_in, int iovcnt, const int *fds, unsigned int nfds,
		      int64_t deadline)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * FERRY_VMMP_MAX_FDS)];
	} ctl;
	struct iovec iov[8];
	int first = 0;

	if (iovcnt < 0 || iovcnt > 8 || nfds > FERRY_VMMP_MAX_FDS || (nfds && !fds))
		return -EINVAL;
	memcpy(iov, iov_in, sizeof(iov[0]) * (size_t)iovcnt);

	while (first < iovcnt) {
		struct msghdr mh = { .msg_iov = iov + first, .msg_iovlen = (size_t)(iovcnt - first) };
		ssize_t n;

		if (iov[first].iov_len == 0) {
			first++;
			continue;
		}
		if (nfds) {
			struct cmsghdr *cm;

			memset(&ctl, 0, sizeof(ctl));
			mh.msg_control = ctl.buf;
			mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
			memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
		}
		n = sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			int rc;

			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -errno;
			rc = wait_for(sock, POLLOUT, deadline);
			if (rc < 0)
				return rc;
			continue;
		}
		nfds = 0; /* the descriptors went with the first byte */
		while (n > 0 && first < iovcnt) {
			if ((size_t)n >= iov[first].iov_len) {
				n -= (ssize_t)iov[first].iov_len;
				iov[first].iov_len = 0;
				first++;
			} else {
				iov[first].iov_base = (char *)iov[first].iov_base + n;
				iov[first].iov_len -= (size_t)n;
				n = 0;
			}
		}
	}
	return 0;
}

void ferry_vmm_io_close_fds(int *fds, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		fds[i] = -1;
	}
}

/*
 * Take the descriptors of every SCM_RIGHTS in @mh into @fds. On overflow,
 * close what does not fit and report it.
 */
static int take_fds(struct msghdr *mh, int *fds, unsigned int *nfds, unsigned int max_fds)
{
	bool excess = (mh->msg_flags & MSG_CTRUNC) != 0;

	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		size_t n;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (*nfds < max_fds && fds) {
				fds[(*nfds)++] = fd;
			} else {
				close(fd);
				excess = true;
			}
		}
	}
	return excess ? -EMSGSIZE : 0;
}

int ferry_vmm_io_recv(int sock, void *buf, size_t len, int *fds, unsigned int *nfds, unsigned int max_fds,
		      int64_t deadline)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * CMSG_FDS)];
	} ctl;
	size_t got = 0;
	unsigned int dummy = 0;

	if (!nfds)
		nfds = &dummy;
	while (got < len) {
		struct iovec iov = { .iov_base = (char *)buf + got, .iov_len = len - got };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
				     .msg_controllen = sizeof(ctl.buf) };
		ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		int rc;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -errno;
			rc = wait_for(sock, POLLIN, deadline);
			if (rc < 0)
				return rc;
			continue;
		}
		if (mh.msg_controllen > 0 || (mh.msg_flags & MSG_CTRUNC)) {
			rc = take_fds(&mh, fds, nfds, max_fds);
			if (rc < 0) {
				if (fds)
					ferry_vmm_io_close_fds(fds, *nfds);
				*nfds = 0;
				return rc;
			}
		}
		if (n == 0)
			return got == 0 ? -ENODATA : -ECONNRESET;
		got += (size_t)n;
	}
	return 0;
}

ssize_t ferry_vmm_io_recv_msg(int sock, uint8_t *buf, size_t cap, int *fds, unsigned int *nfds,
			      unsigned int max_fds, int64_t deadline, int *proto_code)
{
	struct ferry_vmmp_hdr hdr;
	int rc, code;

	if (proto_code)
		*proto_code = FERRY_VMMP_E_OK;
	if (cap < FERRY_VMMP_HDR_LEN)
		return -EINVAL;
	rc = ferry_vmm_io_recv(sock, buf, FERRY_VMMP_HDR_LEN, fds, nfds, max_fds, deadline);
	if (rc < 0)
		return rc;
	code = ferry_vmmp_hdr_decode(buf, FERRY_VMMP_HDR_LEN, &hdr);
	/* An unknown server request is still framed: read it whole so the stream stays in step. */
	if (code == FERRY_VMMP_E_UNSUPPORTED && proto_code) {
		*proto_code = code;
	} else if (code != FERRY_VMMP_E_OK) {
		if (proto_code)
			*proto_code = code;
		return -EBADMSG;
	}
	if (cap - FERRY_VMMP_HDR_LEN < hdr.payload_len)
		return -EMSGSIZE;
	rc = ferry_vmm_io_recv(sock, buf + FERRY_VMMP_HDR_LEN, hdr.payload_len, fds, nfds, max_fds, deadline);
	if (rc < 0)
		return rc == -ENODATA ? -ECONNRESET : rc; /* EOF after a header is mid-message */
	return (ssize_t)(FERRY_VMMP_HDR_LEN + hdr.payload_len);
}

int ferry_vmm_io_peer(int sock, uint32_t *uid, pid_t *pid, uint32_t *gids, size_t max_gids, size_t *ngids)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	gid_t groups[64];
	socklen_t glen = sizeof(groups);
	size_t n = 0;

	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return -errno;
	if (uid)
		*uid = cred.uid;
	if (pid)
		*pid = cred.pid;
	if (gids && n < max_gids)
		gids[n++] = cred.gid;
	/* Supplementary groups (Linux 4.13); without them only the primary gid counts. */
	if (getsockopt(sock, SOL_SOCKET, SO_PEERGROUPS, groups, &glen) == 0) {
		for (size_t i = 0; i < glen / sizeof(gid_t) && gids && n < max_gids; i++)
			gids[n++] = groups[i];
	}
	if (ngids)
		*ngids = n;
	return 0;
}
