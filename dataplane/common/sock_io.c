/*
 * Whole-message writes with a deadline (sock_io.h).
 */
#include "dataplane/common/sock_io.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>

#include "dataplane/common/mono_time.h"

int ferry_wait_fd(int fd, short events, uint64_t deadline_ns)
{
	for (;;) {
		uint64_t now = ferry_mono_ns();
		struct pollfd p = { .fd = fd, .events = events };
		int rc;

		if (now >= deadline_ns)
			return -ETIMEDOUT;
		rc = poll(&p, 1, (int)((deadline_ns - now) / 1000000u) + 1);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return -errno;
		if (rc > 0)
			return 0;
	}
}

int ferry_send_all(int fd, const void *buf, size_t len, int timeout_ms)
{
	const uint8_t *p = buf;
	uint64_t deadline = ferry_mono_ns() + (uint64_t)timeout_ms * 1000000u;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		int rc;

		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		rc = ferry_wait_fd(fd, POLLOUT, deadline);
		if (rc)
			return rc;
	}
	return 0;
}
