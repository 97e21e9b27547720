/*
 * Migration stream plumbing: bounded blocking I/O of whole proto/migrate
 * messages on non-blocking sockets, TCP connect/listen, the auth name, and
 * the contiguous mapping of a VM's memory files that both ends register.
 */
#include "dataplane/migrate/mig_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

int mig_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

static int recv_all(int fd, uint8_t *p, size_t len, uint64_t deadline)
{
	while (len) {
		ssize_t n = recv(fd, p, len, 0);

		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n == 0)
			return -ECONNRESET;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		int rc = ferry_wait_fd(fd, POLLIN, deadline);

		if (rc)
			return rc;
	}
	return 0;
}

int mig_recv_msg(int fd, uint8_t *rx, struct migp_msg *m, int timeout_ms, int *code)
{
	uint64_t deadline = ferry_mono_ns() + (uint64_t)timeout_ms * 1000000u;
	struct migp_hdr h;
	int rc;

	*code = 0;
	rc = recv_all(fd, rx, MIGP_HDR_LEN, deadline);
	if (rc)
		return rc;
	rc = migp_hdr_decode(rx, MIGP_HDR_LEN, &h);
	if (rc) {
		*code = rc;
		return -EPROTO;
	}
	rc = recv_all(fd, rx + MIGP_HDR_LEN, h.payload_len, deadline);
	if (rc)
		return rc;
	rc = migp_decode(rx, MIGP_HDR_LEN + h.payload_len, m);
	if (rc) {
		*code = rc;
		return -EPROTO;
	}
	return 0;
}

void mig_stream_liveness(int fd)
{
	int one = 1, idle = MIG_KEEPALIVE_IDLE_S, intvl = 1, cnt = MIG_KEEPALIVE_PROBES;
	unsigned int user_ms = (unsigned int)(MIG_KEEPALIVE_IDLE_S + MIG_KEEPALIVE_PROBES) * 1000u;

	/* A link that drops silently (no RST, no FIN) must end the migration at both ends:
	 * keepalive probes find it while nothing is sent, the user timeout while data waits. */
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_ms, sizeof(user_ms));
}

bool mig_readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 0) > 0;
}

int mig_send_msg(int fd, const uint8_t *buf, int len)
{
	if (len < 0)
		return -EINVAL;
	return ferry_send_all(fd, buf, (size_t)len, MIG_IO_TIMEOUT_MS);
}

void mig_auth_name(const char *id, const uint8_t token[MIGP_TOKEN_LEN], char *out, size_t cap)
{
	size_t off = (size_t)snprintf(out, cap, "%s/", id);

	for (unsigned i = 0; i < MIGP_TOKEN_LEN && off + 2 < cap; i++)
		off += (size_t)snprintf(out + off, cap - off, "%02x", token[i]);
}

int mig_tcp_connect(const char *host, uint16_t port, int timeout_ms, struct ferry_err *err)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai = NULL;
	char ps[8];
	int fd = -1, rc, one = 1;

	snprintf(ps, sizeof(ps), "%u", port);
	rc = getaddrinfo(host, ps, &hints, &ai);
	if (rc)
		return ferry_err_set(err, EHOSTUNREACH, "%s:%u: %s", host, port, gai_strerror(rc));
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		rc = ferry_err_set(err, errno, "socket: %s", strerror(errno));
		goto out;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	mig_stream_liveness(fd);
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
		rc = ferry_err_set(err, errno, "connect %s:%u: %s", host, port, strerror(errno));
		goto out;
	}
	rc = ferry_wait_fd(fd, POLLOUT, ferry_mono_ns() + (uint64_t)timeout_ms * 1000000u);
	if (rc) {
		rc = ferry_err_set(err, -rc, "connect %s:%u: %s", host, port, strerror(-rc));
		goto out;
	}
	{
		int soerr = 0;
		socklen_t sl = sizeof(soerr);

		getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
		if (soerr) {
			rc = ferry_err_set(err, soerr, "connect %s:%u: %s", host, port, strerror(soerr));
			goto out;
		}
	}
	freeaddrinfo(ai);
	return fd;
out:
	if (fd >= 0)
		close(fd);
	freeaddrinfo(ai);
	return rc;
}

int mig_tcp_listen(const char *host, uint16_t port, uint16_t *bound, struct ferry_err *err)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	socklen_t al = sizeof(a);
	int fd, one = 1;

	if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
		return ferry_err_set(err, EINVAL, "migration listen address %s: not an IPv4 address", host);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return ferry_err_set(err, errno, "socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 16) < 0) {
		int e = errno;

		close(fd);
		return ferry_err_set(err, e, "migration listener %s:%u: %s", host, port, strerror(e));
	}
	getsockname(fd, (struct sockaddr *)&a, &al);
	*bound = ntohs(a.sin_port);
	return fd;
}

void mig_peer_ip(int fd, char *out, size_t cap)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	out[0] = '\0';
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0)
		return;
	if (ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)cap);
	else if (ss.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, out, (socklen_t)cap);
}

int mig_evh_add(struct pager *pg, struct mig_evh *h, int fd, void (*fn)(struct mig_evh *, uint32_t))
{
	h->fn = fn;
	h->fd = fd;
	return pg_epoll_add(pg, fd, PG_EV_MIG, h, 0, &h->tag);
}

void mig_evh_del(struct pager *pg, struct mig_evh *h)
{
	if (h->tag) {
		struct mig_engine *eng = pg->mig;

		pg_epoll_del(pg, h->fd, h->tag);
		/* Events of this loop round may still name the tag (obj now NULL): it is freed
		 * at the next engine tick, which runs after the round. */
		if (eng && eng->ngrave < MIG_GRAVE_MAX)
			eng->grave[eng->ngrave++] = h->tag;
		h->tag = NULL;
	}
}

void *mig_map_vm(struct pg_vm *vm, size_t *len, struct ferry_err *err)
{
	size_t total = (size_t)vm->pm.npages * PG_PAGE;
	uint8_t *area;

	area = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (area == MAP_FAILED) {
		ferry_err_set(err, errno, "mapping %zu bytes of guest memory: %s", total, strerror(errno));
		return NULL;
	}
	for (unsigned i = 0; i < vm->nregions; i++) {
		const struct pg_region *r = &vm->regions[i];

		if (r->memfd < 0) {
			munmap(area, total);
			ferry_err_set(err, EOPNOTSUPP, "region %u is anonymous memory: migration needs memory files", i);
			return NULL;
		}
		/* Our own mapping of the file: not registered with the VM's uffd, so touching it
		 * never faults into the pager. Only resident (LOCAL) pages are ever read through it. */
		if (mmap(area + r->first_page * PG_PAGE, r->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
			 r->memfd, (off_t)r->offset) == MAP_FAILED) {
			ferry_err_set(err, errno, "mapping region %u: %s", i, strerror(errno));
			munmap(area, total);
			return NULL;
		}
	}
	*len = total;
	return area;
}

void mig_set_progress_error(char *dst, size_t cap, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(dst, cap, fmt, ap);
	va_end(ap);
	for (char *c = dst; *c; c++)
		if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
			*c = '?';
}
