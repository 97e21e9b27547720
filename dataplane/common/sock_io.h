/**
 * @file sock_io.h
 * Whole-message writes on non-blocking stream sockets, made the same way by
 * every daemon (ferryd's sessions, ferry-wake's control sessions, the
 * migration engine's control stream): short writes are continued and a full
 * socket buffer is waited out, but only until a deadline, so that a peer that
 * stops reading cannot hold the caller's loop for ever.
 */
#ifndef FERRY_COMMON_SOCK_IO_H
#define FERRY_COMMON_SOCK_IO_H

#include <stddef.h>
#include <stdint.h>

/**
 * Wait until @p fd is ready for @p events (poll(2) bits) or the monotonic
 * clock (ferry_mono_ns()) reaches @p deadline_ns. @return 0 when ready,
 * -ETIMEDOUT, or a negative errno from poll.
 */
int ferry_wait_fd(int fd, short events, uint64_t deadline_ns);

/**
 * Send all @p len bytes of @p buf on @p fd (MSG_NOSIGNAL: a closed peer is
 * -EPIPE, not a signal) within @p timeout_ms. @return 0, -ETIMEDOUT when the
 * peer did not make room in time, or the negative errno of the failed send.
 */
int ferry_send_all(int fd, const void *buf, size_t len, int timeout_ms);

#endif /* FERRY_COMMON_SOCK_IO_H */
