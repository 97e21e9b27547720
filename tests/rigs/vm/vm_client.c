/*
 * vm_client — the client side of the VM rig (tests/rigs/vm): talks to the guest's echo_server.
 *
 *   vm_client [-t SECONDS] HOST PORT LINE...
 *       connect, then for each LINE send it (plus '\n') and print the one-line reply; exit 0 only
 *       if every reply came (echoed lines must come back unchanged). -t bounds the whole run
 *       (default 10 s). With -T it prints, on stderr, "connect_ms=... syn_retrans=N first_reply_ms=..." measured
 *       from the program's start, for access-time measurements.
 *   vm_client -H [-t S] HOST PORT
 *       hold mode: connect, then for each line read on stdin send it and print the reply (one
 *       line each), until stdin ends: a connection that stays open across a hibernation.
 *
 * Exit: 0 ok, 1 a reply was wrong or missing, 2 usage, 3 could not connect.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double t_start;
static double deadline;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int remaining_ms(void)
{
	double r = deadline - now_s();

	return r <= 0 ? 0 : (int)(r * 1000) + 1;
}

/* Read one reply line into buf. Returns its length, or -1. */
static int read_line(int fd, char *buf, size_t cap)
{
	size_t n = 0;

	while (n + 1 < cap) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int ms = remaining_ms();
		ssize_t r;

		if (ms == 0 || poll(&p, 1, ms) <= 0) {
			fprintf(stderr, "vm_client: no reply within the time limit\n");
			return -1;
		}
		r = recv(fd, buf + n, 1, 0);
		if (r <= 0) {
			fprintf(stderr, "vm_client: connection %s\n", r == 0 ? "closed by the server" : strerror(errno));
			return -1;
		}
		if (buf[n++] == '\n')
			break;
	}
	buf[n] = '\0';
	return (int)n;
}

static int exchange(int fd, const char *line, int *first, int timing)
{
	char out[4200], in[4200];
	int n = snprintf(out, sizeof(out), "%s\n", line);

	if (n < 0 || (size_t)n >= sizeof(out) || send(fd, out, (size_t)n, MSG_NOSIGNAL) != n) {
		fprintf(stderr, "vm_client: send failed: %s\n", strerror(errno));
		return 1;
	}
	if (read_line(fd, in, sizeof(in)) < 0)
		return 1;
	if (*first && timing) {
		struct timespec rt;

		clock_gettime(CLOCK_REALTIME, &rt);
		fprintf(stderr, "first_reply_ms=%.3f first_reply_epoch=%.6f\n", (now_s() - t_start) * 1000,
			(double)rt.tv_sec + (double)rt.tv_nsec / 1e9);
	}
	*first = 0;
	fputs(in, stdout);
	fflush(stdout);
	/* A command answers in its own words; anything else must come back unchanged. */
	if (strncmp(line, "mem ", 4) != 0 && strcmp(line, "sum") != 0 && strcmp(in, out) != 0) {
		fprintf(stderr, "vm_client: echo mismatch: sent \"%s\"\n", line);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	double limit = 10;
	int hold = 0, timing = 0, opt, fd, one = 1, first = 1;
	struct sockaddr_in a = { .sin_family = AF_INET };

	while ((opt = getopt(argc, argv, "t:HT")) != -1) {
		if (opt == 't')
			limit = atof(optarg);
		else if (opt == 'H')
			hold = 1;
		else if (opt == 'T')
			timing = 1;
		else
			return 2;
	}
	if (argc - optind < 2 || inet_pton(AF_INET, argv[optind], &a.sin_addr) != 1) {
		fprintf(stderr, "usage: vm_client [-t S] [-T] HOST PORT LINE... | vm_client -H [-t S] HOST PORT\n");
		return 2;
	}
	a.sin_port = htons((uint16_t)atoi(argv[optind + 1]));
	t_start = now_s();
	deadline = t_start + limit;
	/* Retry refused/unreachable connects until the limit: a guest may still be booting. A SYN
	 * that gets no answer is retransmitted by the kernel within the same connect(). */
	for (;;) {
		fd = socket(AF_INET, SOCK_STREAM, 0);
		struct timeval tv = { .tv_sec = (time_t)limit, .tv_usec = 0 };

		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
			break;
		int e = errno;

		close(fd);
		if (remaining_ms() == 0) {
			fprintf(stderr, "vm_client: connect %s:%s: %s\n", argv[optind], argv[optind + 1], strerror(e));
			return 3;
		}
		usleep(50000);
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (timing) {
		struct tcp_info ti;
		socklen_t tl = sizeof(ti);

		/* Retransmissions so far are the SYN's: did the client have to send it again? */
		memset(&ti, 0, sizeof(ti));
		getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl);
		fprintf(stderr, "connect_ms=%.3f syn_retrans=%u\n", (now_s() - t_start) * 1000, ti.tcpi_total_retrans);
	}
	if (hold) {
		char line[4096];

		while (fgets(line, sizeof(line), stdin)) {
			line[strcspn(line, "\n")] = '\0';
			deadline = now_s() + limit;	/* each exchange gets the full limit */
			if (exchange(fd, line, &first, timing))
				return 1;
		}
	} else {
		for (int i = optind + 2; i < argc; i++)
			if (exchange(fd, argv[i], &first, timing))
				return 1;
	}
	close(fd);
	return 0;
}
