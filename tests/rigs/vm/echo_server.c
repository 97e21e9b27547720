/*
 * echo_server — the TCP service inside the VM rig's guest (tests/rigs/vm). Built static on the
 * host (gcc -static) and put into the guest's initramfs.
 *
 *   echo_server [PORT]          (default 7000)
 *
 * Line protocol, any number of clients at once (poll):
 *   "mem N\n"  fill N MiB of this process's memory with pseudo-random data (replacing an
 *              earlier fill; N = 0 frees it), reply "ok mem N sum HEX\n"
 *   "sum\n"    checksum the filled memory as it is now, reply "sum HEX MIB\n": a guest resumed
 *              from a hibernation image must give the same answer as before it
 *   "quit\n"   close this connection
 *   any other line is echoed back unchanged; bytes of an unfinished line are echoed once the
 *   line buffer is full, so a client never waits for an echo forever.
 *
 * The fill is what makes a guest with a given amount of used memory: the data does not
 * compress and has no zero pages, and it is touched again by "sum".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CLIENTS 64
#define LINE_MAX_LEN 4096

struct client {
	int fd;
	size_t len;
	char buf[LINE_MAX_LEN];
};

static uint64_t *fill;
static size_t fill_words;
static unsigned fill_mib;

static uint64_t checksum(void)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < fill_words; i++)
		h = (h ^ fill[i]) * 1099511628211ull;
	return h;
}

static int do_fill(unsigned mib)
{
	uint64_t x = 0x9e3779b97f4a7c15ull ^ mib;

	if (fill)
		munmap(fill, fill_words * 8);
	fill = NULL;
	fill_words = 0;
	fill_mib = 0;
	if (mib == 0)
		return 0;
	fill = mmap(NULL, (size_t)mib << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
		    -1, 0);
	if (fill == MAP_FAILED) {
		fill = NULL;
		return -1;
	}
	fill_words = ((size_t)mib << 20) / 8;
	for (size_t i = 0; i < fill_words; i++) {	/* xorshift64: no zero words, no pattern */
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		fill[i] = x;
	}
	fill_mib = mib;
	return 0;
}

static void send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

/* One complete line (with its '\n'). Returns -1 to close the connection. */
static int on_line(int fd, char *line, size_t n)
{
	char reply[128];
	unsigned mib;

	if (n >= 4 && sscanf(line, "mem %u", &mib) == 1 && strncmp(line, "mem ", 4) == 0) {
		if (do_fill(mib))
			snprintf(reply, sizeof(reply), "error mem %u: %s\n", mib, strerror(errno));
		else
			snprintf(reply, sizeof(reply), "ok mem %u sum %016llx\n", mib, (unsigned long long)checksum());
		send_all(fd, reply, strlen(reply));
	} else if (n == 4 && memcmp(line, "sum\n", 4) == 0) {
		snprintf(reply, sizeof(reply), "sum %016llx %u\n", (unsigned long long)checksum(), fill_mib);
		send_all(fd, reply, strlen(reply));
	} else if (n == 5 && memcmp(line, "quit\n", 5) == 0) {
		return -1;
	} else {
		send_all(fd, line, n);
	}
	return 0;
}

/* Returns -1 when the connection is to be closed. */
static int on_data(struct client *c)
{
	ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
	char *nl;

	if (r <= 0)
		return r < 0 && errno == EINTR ? 0 : -1;
	c->len += (size_t)r;
	while ((nl = memchr(c->buf, '\n', c->len)) != NULL) {
		size_t n = (size_t)(nl - c->buf) + 1;

		if (on_line(c->fd, c->buf, n))
			return -1;
		memmove(c->buf, c->buf + n, c->len - n);
		c->len -= n;
	}
	if (c->len == sizeof(c->buf)) {	/* a line longer than the buffer: echo what we have */
		send_all(c->fd, c->buf, c->len);
		c->len = 0;
	}
	return 0;
}

int main(int argc, char **argv)
{
	int port = argc > 1 ? atoi(argv[1]) : 7000;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct pollfd pfd[MAX_CLIENTS + 1];
	static struct client cl[MAX_CLIENTS];
	int one = 1, lfd;

	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 64)) {
		perror("echo_server: listen");
		return 1;
	}
	for (int i = 0; i < MAX_CLIENTS; i++)
		cl[i].fd = -1;
	printf("echo_server: listening on port %d\n", port);
	fflush(stdout);
	for (;;) {
		int n = 0;

		pfd[n++] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		for (int i = 0; i < MAX_CLIENTS; i++)
			pfd[n++] = (struct pollfd){ .fd = cl[i].fd, .events = POLLIN };
		if (poll(pfd, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("echo_server: poll");
			return 1;
		}
		if (pfd[0].revents & POLLIN) {
			int fd = accept(lfd, NULL, NULL);
			int i;

			for (i = 0; fd >= 0 && i < MAX_CLIENTS && cl[i].fd >= 0; i++)
				;
			if (fd >= 0 && i == MAX_CLIENTS) {
				close(fd);	/* full: refuse rather than queue forever */
			} else if (fd >= 0) {
				setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
				cl[i].fd = fd;
				cl[i].len = 0;
			}
		}
		for (int i = 0; i < MAX_CLIENTS; i++) {
			if (cl[i].fd >= 0 && (pfd[i + 1].revents & (POLLIN | POLLHUP | POLLERR)) && on_data(&cl[i])) {
				close(cl[i].fd);
				cl[i].fd = -1;
			}
		}
	}
}
