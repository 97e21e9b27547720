#include "perf/baselines.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

/* Every blocking socket call is bounded so a broken baseline can never hang the run. */
#define BASE_IO_TIMEOUT_S 10

/* ------------------------------------------------------------------ sockets */

static void set_timeouts(int fd)
{
	struct timeval tv = { .tv_sec = BASE_IO_TIMEOUT_S, .tv_usec = 0 };

	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int set_nodelay(int fd)
{
	int one = 1;

	return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Listen on 127.0.0.1 with a kernel-chosen port. */
static int listen_loopback(uint16_t *port, struct ferry_err *err)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
	socklen_t sl = sizeof(sa);
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return ferry_err_set(err, errno, "baseline: socket: %s", strerror(errno));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
		int e = errno;

		close(fd);
		return ferry_err_set(err, e, "baseline: listen on 127.0.0.1: %s", strerror(e));
	}
	*port = ntohs(sa.sin_port);
	return fd;
}

static int connect_loopback(uint16_t port, struct ferry_err *err)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return ferry_err_set(err, errno, "baseline: socket: %s", strerror(errno));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;

		close(fd);
		return ferry_err_set(err, e, "baseline: connect 127.0.0.1:%u: %s", port, strerror(e));
	}
	set_timeouts(fd);
	return fd;
}

/* Accept one connection, waiting at most BASE_IO_TIMEOUT_S. */
static int accept_one(int lfd)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	int r = poll(&p, 1, BASE_IO_TIMEOUT_S * 1000);

	if (r <= 0)
		return r == 0 ? -ETIMEDOUT : -errno;
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return -errno;
	set_timeouts(fd);
	return fd;
}

static int send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Receive exactly @p len bytes; 1 on orderly EOF before any byte, 0 on success. */
static int recv_all(int fd, void *buf, size_t len)
{
	char *p = buf;
	size_t got = 0;

	while (got < len) {
		ssize_t n = recv(fd, p + got, len - got, MSG_WAITALL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return got == 0 ? 1 : -ECONNRESET;
		got += (size_t)n;
	}
	return 0;
}

/* ------------------------------------------------------------------ TCP stream */

struct sink_arg {
	int lfd;
	size_t bufsize;
	uint64_t bytes;
	uint64_t t_end_ns;
	int rc;
};

static void *stream_sink(void *p)
{
	struct sink_arg *a = p;
	char *buf = malloc(a->bufsize);
	int fd = accept_one(a->lfd);

	if (fd < 0 || !buf) {
		a->rc = fd < 0 ? fd : -ENOMEM;
		free(buf);
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	for (;;) {
		ssize_t n = read(fd, buf, a->bufsize);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			a->rc = -errno;
			break;
		}
		if (n == 0)
			break;
		a->bytes += (uint64_t)n;
	}
	a->t_end_ns = stats_now_ns();
	close(fd);
	free(buf);
	return NULL;
}

int perf_tcp_stream(const struct perf_baseline_opts *o, struct perf_baselines *out, struct ferry_err *err)
{
	size_t wsize = o->stream_write ? o->stream_write : (1u << 20);
	double secs = o->stream_seconds > 0 ? o->stream_seconds : 1.0;
	uint64_t warm_ns = (uint64_t)(0.2e9 * (secs < 1.0 ? secs : 1.0));
	struct sink_arg a = { .bufsize = wsize };
	pthread_t th;
	uint16_t port;
	int rc, cfd;
	char *buf;

	a.lfd = listen_loopback(&port, err);
	if (a.lfd < 0)
		return a.lfd;
	buf = malloc(wsize);
	if (!buf) {
		close(a.lfd);
		return ferry_err_set(err, ENOMEM, "baseline: tcp stream: out of memory");
	}
	memset(buf, 0x5a, wsize);
	rc = pthread_create(&th, NULL, stream_sink, &a);
	if (rc) {
		free(buf);
		close(a.lfd);
		return ferry_err_set(err, rc, "baseline: pthread_create: %s", strerror(rc));
	}
	cfd = connect_loopback(port, err);
	if (cfd < 0) {
		/* The sink gives up after its accept timeout. */
		pthread_join(th, NULL);
		free(buf);
		close(a.lfd);
		return cfd;
	}

	uint64_t t_start = stats_now_ns(), t0 = 0, sent = 0;
	int measuring = 0;

	rc = 0;
	for (;;) {
		uint64_t now = stats_now_ns();

		if (!measuring && now - t_start >= warm_ns) {
			measuring = 1;
			t0 = now;
		}
		if (measuring && now - t0 >= (uint64_t)(secs * 1e9))
			break;
		rc = send_all(cfd, buf, wsize);
		if (rc < 0)
			break;
		if (measuring)
			sent += wsize;
	}
	shutdown(cfd, SHUT_WR);
	pthread_join(th, NULL);   /* the sink reads until EOF: everything sent has arrived */
	close(cfd);
	close(a.lfd);
	free(buf);
	if (rc < 0)
		return ferry_err_set(err, rc, "baseline: tcp stream: send: %s", strerror(-rc));
	if (a.rc < 0)
		return ferry_err_set(err, a.rc, "baseline: tcp stream: receiver: %s", strerror(-a.rc));

	double el = (double)(a.t_end_ns - t0) / 1e9;

	out->stream_bytes = sent;
	out->stream_seconds = el;
	out->stream_write = wsize;
	out->stream_gbps = el > 0 ? (double)sent / el / 1e9 : 0;
	return 0;
}

/* ------------------------------------------------------------------ TCP ping-pong */

struct echo_arg {
	int lfd;
	size_t size;
	int rc;
};

static void *pingpong_echo(void *p)
{
	struct echo_arg *a = p;
	char *buf = malloc(a->size);
	int fd = accept_one(a->lfd);

	if (fd < 0 || !buf) {
		a->rc = fd < 0 ? fd : -ENOMEM;
		free(buf);
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	(void)set_nodelay(fd);
	for (;;) {
		int r = recv_all(fd, buf, a->size);

		if (r != 0) {
			a->rc = r < 0 ? r : 0;
			break;
		}
		r = send_all(fd, buf, a->size);
		if (r < 0) {
			a->rc = r;
			break;
		}
	}
	close(fd);
	free(buf);
	return NULL;
}

struct perf_pingpong {
	struct echo_arg a;
	pthread_t th;
	int cfd;
	size_t size;
	char *buf;
	int echo_cpu, client_cpu;    /* -1 = not pinned */
};

static void attr_pin(pthread_attr_t *attr, int cpu)
{
	cpu_set_t set;

	pthread_attr_init(attr);
	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	(void)pthread_attr_setaffinity_np(attr, sizeof(set), &set);
}

int perf_pingpong_open(size_t size, int echo_cpu, int client_cpu, struct perf_pingpong **out,
		       struct ferry_err *err)
{
	struct perf_pingpong *pp = calloc(1, sizeof(*pp));
	pthread_attr_t attr;
	uint16_t port;
	int rc;

	if (!pp || !(pp->buf = malloc(size))) {
		free(pp);
		return ferry_err_set(err, ENOMEM, "baseline: ping-pong: out of memory");
	}
	memset(pp->buf, 0xa5, size);
	pp->size = pp->a.size = size;
	pp->echo_cpu = echo_cpu;
	pp->client_cpu = client_cpu;
	pp->a.lfd = listen_loopback(&port, err);
	if (pp->a.lfd < 0) {
		rc = pp->a.lfd;
		goto fail;
	}
	attr_pin(&attr, echo_cpu);
	rc = pthread_create(&pp->th, &attr, pingpong_echo, &pp->a);
	pthread_attr_destroy(&attr);
	if (rc) {
		close(pp->a.lfd);
		rc = ferry_err_set(err, rc, "baseline: pthread_create: %s", strerror(rc));
		goto fail;
	}
	pp->cfd = connect_loopback(port, err);
	if (pp->cfd < 0) {
		rc = pp->cfd;
		pthread_join(pp->th, NULL);   /* the echo thread gives up after its accept timeout */
		close(pp->a.lfd);
		goto fail;
	}
	(void)set_nodelay(pp->cfd);
	*out = pp;
	return 0;
fail:
	free(pp->buf);
	free(pp);
	return rc;
}

struct pp_chunk {
	struct perf_pingpong *pp;
	unsigned n;
	uint64_t *ns;
	int rc;
};

static void *pp_chunk_run(void *p)
{
	struct pp_chunk *c = p;
	struct perf_pingpong *pp = c->pp;

	for (unsigned i = 0; i < c->n; i++) {
		uint64_t t = stats_now_ns();
		int rc = send_all(pp->cfd, pp->buf, pp->size);

		if (rc == 0)
			rc = recv_all(pp->cfd, pp->buf, pp->size);
		if (rc != 0) {
			c->rc = rc > 0 ? -ECONNRESET : rc;
			break;
		}
		if (c->ns)
			c->ns[i] = stats_now_ns() - t;
	}
	return NULL;
}

int perf_pingpong_run(struct perf_pingpong *pp, unsigned n, uint64_t *ns, struct ferry_err *err)
{
	struct pp_chunk c = { .pp = pp, .n = n, .ns = ns };

	if (pp->client_cpu < 0) {
		pp_chunk_run(&c);
	} else {
		/* The client side runs in a thread pinned where asked; the caller stays where it is. */
		pthread_attr_t attr;
		pthread_t th;
		int rc;

		attr_pin(&attr, pp->client_cpu);
		rc = pthread_create(&th, &attr, pp_chunk_run, &c);
		pthread_attr_destroy(&attr);
		if (rc)
			return ferry_err_set(err, rc, "baseline: pthread_create: %s", strerror(rc));
		pthread_join(th, NULL);
	}
	if (c.rc < 0)
		return ferry_err_set(err, c.rc, "baseline: tcp ping-pong: %s", strerror(-c.rc));
	return 0;
}

int perf_pingpong_close(struct perf_pingpong *pp)
{
	int rc;

	if (!pp)
		return 0;
	shutdown(pp->cfd, SHUT_WR);
	pthread_join(pp->th, NULL);
	rc = pp->a.rc;
	close(pp->cfd);
	close(pp->a.lfd);
	free(pp->buf);
	free(pp);
	return rc;
}

int perf_pick_cpus(int *same, int *other)
{
	cpu_set_t set;
	int cur = sched_getcpu();

	*same = *other = -1;
	if (sched_getaffinity(0, sizeof(set), &set) != 0 || cur < 0 || !CPU_ISSET(cur, &set))
		return -1;
	*same = cur;
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (c != cur && CPU_ISSET(c, &set)) {
			*other = c;
			break;
		}
	return 0;
}

void perf_pingpong_set(struct perf_baselines *out, size_t size, uint64_t *ns, size_t n)
{
	stats_summarize_ns(ns, n, &out->pingpong);
	free(out->pingpong_ns);
	out->pingpong_ns = ns;
	out->pingpong_n = n;
	out->pingpong_size = size;
}

/* One ping-pong measurement: warm-up, then @p iters samples into a new array. */
static int pingpong_measure(size_t size, int echo_cpu, int client_cpu, unsigned warmup, unsigned iters,
			    uint64_t **out, struct ferry_err *err)
{
	uint64_t *ns = calloc(iters, sizeof(*ns));
	struct perf_pingpong *pp;
	int rc;

	if (!ns)
		return ferry_err_set(err, ENOMEM, "baseline: ping-pong: out of memory");
	rc = perf_pingpong_open(size, echo_cpu, client_cpu, &pp, err);
	if (rc < 0) {
		free(ns);
		return rc;
	}
	rc = perf_pingpong_run(pp, warmup, NULL, err);
	if (rc == 0)
		rc = perf_pingpong_run(pp, iters, ns, err);
	int erc = perf_pingpong_close(pp);

	if (rc == 0 && erc < 0)
		rc = ferry_err_set(err, erc, "baseline: tcp ping-pong: echo side: %s", strerror(-erc));
	if (rc < 0) {
		free(ns);
		return rc;
	}
	*out = ns;
	return 0;
}

int perf_tcp_pingpong(const struct perf_baseline_opts *o, struct perf_baselines *out, struct ferry_err *err)
{
	size_t size = o->size ? o->size : 4096;
	unsigned iters = o->pingpong_iters ? o->pingpong_iters : 5000;
	int same, other;
	uint64_t *ns;
	int rc;

	(void)perf_pick_cpus(&same, &other);
	rc = pingpong_measure(size, same, same, o->pingpong_warmup, iters, &ns, err);
	if (rc < 0)
		return rc;
	perf_pingpong_set(out, size, ns, iters);
	out->pingpong_cpu = same;
	return 0;
}

int perf_tcp_pingpong_cross(const struct perf_baseline_opts *o, struct perf_baselines *out, struct ferry_err *err)
{
	size_t size = o->size ? o->size : 4096;
	unsigned iters = o->cross_iters ? o->cross_iters : 2000;
	int same, other;
	uint64_t *ns;
	int rc;

	if (perf_pick_cpus(&same, &other) < 0 || other < 0)
		return 0;              /* one CPU: nothing to cross */
	rc = pingpong_measure(size, other, same, o->pingpong_warmup, iters, &ns, err);
	if (rc < 0)
		return rc;
	stats_summarize_ns(ns, iters, &out->pingpong_cross);
	free(ns);
	return 0;
}

/* ------------------------------------------------------------------ memcpy */

static inline uint64_t xorshift64(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

int perf_memcpy_bw(const struct perf_baseline_opts *o, struct perf_baselines *out, struct ferry_err *err)
{
	size_t size = o->size ? o->size : 4096;
	size_t ws = o->working_set ? o->working_set : (64u << 20);
	double secs = o->memcpy_seconds > 0 ? o->memcpy_seconds : 0.5;
	size_t npages = ws / size;
	uint64_t seed = o->seed ? o->seed : 0x9e3779b97f4a7c15ull;

	if (npages == 0)
		npages = 1;
	ws = npages * size;
	/* Separate mappings so source and destination pages never share cache sets by accident. */
	char *src = mmap(NULL, ws, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *dst = mmap(NULL, ws, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (src == MAP_FAILED || dst == MAP_FAILED) {
		if (src != MAP_FAILED)
			munmap(src, ws);
		if (dst != MAP_FAILED)
			munmap(dst, ws);
		return ferry_err_set(err, ENOMEM, "baseline: memcpy: cannot map 2 x %zu bytes", ws);
	}
	/* Touch everything first: page faults are not memcpy. */
	memset(src, 0x3c, ws);
	memset(dst, 0, ws);

	volatile uint64_t sink = 0;
	uint64_t copied = 0, t0, now;
	uint64_t limit = (uint64_t)(secs * 1e9);

	/* A short warm-up, then the timed part; the clock is read every 64 pages. */
	for (int pass = 0; pass < 2; pass++) {
		uint64_t budget = pass == 0 ? limit / 10 : limit;

		t0 = stats_now_ns();
		copied = 0;
		do {
			for (int k = 0; k < 64; k++) {
				size_t s = (size_t)(xorshift64(&seed) % npages);
				size_t d = (size_t)(xorshift64(&seed) % npages);

				memcpy(dst + d * size, src + s * size, size);
				sink += (uint64_t)(unsigned char)dst[d * size + (size - 1)];
			}
			copied += 64ull * size;
			now = stats_now_ns();
		} while (now - t0 < budget);
	}
	(void)sink;
	munmap(src, ws);
	munmap(dst, ws);

	double el = (double)(now - t0) / 1e9;

	out->memcpy_bytes = copied;
	out->memcpy_seconds = el;
	out->memcpy_working_set = ws;
	out->memcpy_gbps = el > 0 ? (double)copied / el / 1e9 : 0;
	return 0;
}

/* ------------------------------------------------------------------ all */

int perf_baselines_run(const struct perf_baseline_opts *opts, struct perf_baselines *out,
		       void (*progress)(const char *what), struct ferry_err *err)
{
	int rc;

	if (progress)
		progress("baseline: tcp stream");
	rc = perf_tcp_stream(opts, out, err);
	if (rc < 0)
		return rc;
	if (!opts->skip_pingpong) {
		if (progress)
			progress("baseline: tcp ping-pong");
		rc = perf_tcp_pingpong(opts, out, err);
		if (rc < 0)
			return rc;
	}
	if (progress)
		progress("baseline: tcp ping-pong across cpus");
	rc = perf_tcp_pingpong_cross(opts, out, err);
	if (rc < 0)
		return rc;
	if (progress)
		progress("baseline: memcpy");
	rc = perf_memcpy_bw(opts, out, err);
	if (rc < 0)
		return rc;
	out->measured = 1;
	return 0;
}

void perf_baselines_free(struct perf_baselines *b)
{
	free(b->pingpong_ns);
	b->pingpong_ns = NULL;
	b->pingpong_n = 0;
}
