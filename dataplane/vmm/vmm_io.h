/**
 * @file vmm_io.h
 * Socket plumbing for the VMM protocol, shared by libferry-vmm (client) and
 * the pager (server): whole-message sends with SCM_RIGHTS, exact reads that
 * collect descriptors, deadlines, peer credentials. Not part of the public
 * API (ferry_vmm.h); links into ferry_vmm.
 *
 * Every function works on a non-blocking socket, retries on EINTR, waits with
 * poll() until an absolute CLOCK_MONOTONIC deadline (ferry_vmm_io_deadline())
 * and never raises SIGPIPE.
 */
#ifndef FERRY_VMM_IO_H
#define FERRY_VMM_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "proto/vmm.h"

/** No deadline: wait forever. */
#define FERRY_VMM_IO_NO_DEADLINE INT64_MAX

/** Now + @p timeout_ms as a CLOCK_MONOTONIC time in ns; -1 gives FERRY_VMM_IO_NO_DEADLINE. */
int64_t ferry_vmm_io_deadline(int timeout_ms);

/**
 * Send all of @p iov[0..iovcnt) with @p fds[0..nfds) attached to the first
 * byte (one SCM_RIGHTS message). Partial writes continue without the fds.
 * @return 0, -ETIMEDOUT, -EPIPE/-ECONNRESET (peer gone) or another -errno.
 */
int ferry_vmm_io_send(int sock, const struct iovec *iov, int iovcnt, const int *fds, unsigned int nfds,
		      int64_t deadline);

/**
 * Read exactly @p len bytes. Descriptors that arrive meanwhile are appended
 * to @p fds (at most @p max_fds, count in *@p nfds; received with
 * MSG_CMSG_CLOEXEC). More than @p max_fds, or a truncated control message:
 * everything received is closed and -EMSGSIZE returned.
 * @return 0; -ENODATA when the peer closed before the first byte; -ECONNRESET
 * when it closed part-way; -ETIMEDOUT; or another -errno.
 */
int ferry_vmm_io_recv(int sock, void *buf, size_t len, int *fds, unsigned int *nfds, unsigned int max_fds,
		      int64_t deadline);

/**
 * Read one whole message into @p buf (@p cap >= FERRY_VMMP_HDR_LEN + the
 * header's payload_len; FERRY_VMMP_MAX_MSG always suffices): the header, a
 * ferry_vmmp_hdr_decode() of it, then exactly its payload. Never reads past
 * the message, so descriptors of the next message stay queued.
 * @return the message length (> 0), with *@p proto_code FERRY_VMMP_E_OK, or
 * FERRY_VMMP_E_UNSUPPORTED for a whole server request of a type unknown to
 * this codec (answer it with ERROR UNSUPPORTED); -EBADMSG with *@p proto_code
 * set when the header is invalid (the stream cannot be resynchronised: close
 * it); or an
 * error of ferry_vmm_io_recv(). Descriptors received are in @p fds / *@p nfds
 * in every case (the caller closes them).
 */
ssize_t ferry_vmm_io_recv_msg(int sock, uint8_t *buf, size_t cap, int *fds, unsigned int *nfds,
			      unsigned int max_fds, int64_t deadline, int *proto_code);

/** Close @p fds[0..n) (skipping negatives) and set them to -1. */
void ferry_vmm_io_close_fds(int *fds, unsigned int n);

/**
 * Peer credentials of a connected Unix socket: uid, pid and its groups
 * (SO_PEERCRED's gid first, then SO_PEERGROUPS), at most @p max_gids of them
 * (count in *@p ngids). Input for ferry_vmmp_allow_match().
 * @return 0 or a negative errno.
 */
int ferry_vmm_io_peer(int sock, uint32_t *uid, pid_t *pid, uint32_t *gids, size_t max_gids, size_t *ngids);

#endif /* FERRY_VMM_IO_H */
