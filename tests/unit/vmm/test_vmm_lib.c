/*
 * libferry-vmm against a tiny in-test pager: a server thread that speaks the
 * VMM protocol with the codec and vmm_io.h over a real Unix socket.
 *
 * - REGISTER with REAL descriptors: a userfaultfd from ferry_vmm_uffd_create()
 *   and a memfd. The server's copies are checked to be the same objects
 *   (memfd: same inode, data written through the server's copy appears in the
 *   client's mapping; uffd: /proc/self/fd says anon_inode:[userfaultfd], same
 *   API features, kcmp() says same file) and the server then *serves a real
 *   page fault* of the client through its copy of the uffd, and sees the
 *   UFFD_EVENT_REMOVE of a madvise(MADV_DONTNEED) (a guest free).
 * - free hints (single and batched: sorted, merged, split), notices, a 3 MiB
 *   device-state blob round trip in odd-sized chunks, STATS;
 * - ERROR replies mapped to errnos with the pager's message, allow-list
 *   refusal, local argument checks;
 * - a peer that dies mid-message (a fork()ed child that _exit()s) and a peer
 *   that stalls: clean errors within the timeout, no hang, no fd leak.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "dataplane/vmm/ferry_vmm.h"
#include "dataplane/vmm/vmm_io.h"
#include "proto/vmm.h"

#define PAGE 4096u
#define MIB (1u << 20)

/* ---------------------------------------------------------------- helpers */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the DIR's own descriptor */
}

static uint8_t pattern(uint64_t off)
{
	return (uint8_t)(off * 131 + (off >> 12) * 7 + 0x5a);
}

/* A userfaultfd for the tests, or skip when this machine allows none. */
static int test_uffd(uint64_t features, int extra_flags)
{
	struct ferry_err err = { 0 };
	int fd = ferry_vmm_uffd_create(O_CLOEXEC | O_NONBLOCK | FERRY_VMM_UFFD_BEST_EFFORT | extra_flags,
				       features, &err);

	if (fd < 0 && (fd == -EPERM || fd == -ENOSYS || fd == -EACCES || fd == -ENOENT)) {
		print_message("no userfaultfd here (%s): skipping\n", err.msg);
		skip();
	}
	if (fd < 0)
		fail_msg("ferry_vmm_uffd_create: %s", err.msg);
	return fd;
}

/* ---------------------------------------------------------------- the pager */

/* cmocka's asserts longjmp and must stay on the test's thread; the pager thread aborts. */
#define SRV_CHECK(x)                                                              \
	do {                                                                      \
		if (!(x)) {                                                       \
			fprintf(stderr, "test pager: %s failed (line %d)\n", #x, __LINE__); \
			abort();                                                  \
		}                                                                 \
	} while (0)

enum srv_mode {
	SRV_NORMAL,
	SRV_STALL,        /* answer half a header, then go quiet until stopped */
	SRV_BAD_REQID,    /* answer with another request id */
	SRV_SEND_FD,      /* attach a descriptor to the reply */
	SRV_BAD_MAGIC,    /* answer 24 bytes of garbage */
	SRV_DEAF,         /* never read: the client's send buffer fills up */
};

struct srv {
	int listen_fd, sock;
	int stop[2];
	pthread_t th;
	enum srv_mode mode;
	const char *allow;          /* allow-list; NULL: our own uid */
	uint32_t max_chunk;
	pthread_mutex_t mu;

	/* what the pager saw */
	bool registered;
	struct ferry_vmmp_register reg;
	int fds[FERRY_VMMP_MAX_FDS];
	unsigned int nfds;
	struct ferry_vmmp_range hints[8192];
	unsigned int nhints, hint_msgs;
	uint32_t events[16];
	unsigned int nevents;
	uint8_t *blob, *pend;
	uint64_t blob_total, pend_total, pend_got;
	bool have_blob;
	uint64_t faults, removes, requests;
	uint32_t peer_uid;

	/* scratch */
	uint8_t rx[FERRY_VMMP_MAX_MSG];
	uint8_t tx[FERRY_VMMP_HDR_LEN + 16 + FERRY_VMMP_MAX_CHUNK];
	struct ferry_vmmp_msg m;
	uint8_t *page;              /* page-aligned: UFFDIO_COPY's source */
};

static int srv_send(struct srv *s, const void *p, size_t n, int fd)
{
	struct iovec iov = { .iov_base = (void *)p, .iov_len = n };

	return ferry_vmm_io_send(s->sock, &iov, 1, fd >= 0 ? &fd : NULL, fd >= 0 ? 1 : 0,
				 ferry_vmm_io_deadline(5000));
}

static int srv_error(struct srv *s, uint64_t req, uint32_t code, const char *msg)
{
	int n = ferry_vmmp_encode_error(req, code, msg, s->tx, sizeof(s->tx));

	SRV_CHECK(n > 0);
	return srv_send(s, s->tx, (size_t)n, -1);
}

static int srv_ok(struct srv *s, uint64_t req, uint64_t value)
{
	int n;

	switch (s->mode) {
	case SRV_BAD_REQID:
		req++;
		break;
	case SRV_BAD_MAGIC:
		memset(s->tx, 0xa5, FERRY_VMMP_HDR_LEN);
		return srv_send(s, s->tx, FERRY_VMMP_HDR_LEN, -1);
	case SRV_SEND_FD: {
		int rc;

		n = ferry_vmmp_encode_ok(req, value, s->tx, sizeof(s->tx));
		rc = srv_send(s, s->tx, (size_t)n, s->stop[0]);
		return rc;
	}
	default:
		break;
	}
	n = ferry_vmmp_encode_ok(req, value, s->tx, sizeof(s->tx));
	return srv_send(s, s->tx, (size_t)n, -1);
}

static void srv_drop_registration(struct srv *s)
{
	ferry_vmm_io_close_fds(s->fds, s->nfds);
	s->nfds = 0;
	s->registered = false;
}

static bool hint_inside(const struct srv *s, const struct ferry_vmmp_range *r)
{
	for (uint16_t i = 0; i < s->reg.region_count; i++) {
		const struct ferry_vmmp_region *g = &s->reg.regions[i];

		if (r->gpa >= g->gpa && r->gpa + r->len <= g->gpa + g->size)
			return true;
	}
	return false;
}

/* One decoded request (descriptors in fds/nfds, owned by us). @return false to hang up. */
static bool srv_handle(struct srv *s, int *fds, unsigned int nfds)
{
	struct ferry_vmmp_msg *m = &s->m;
	uint64_t req = m->hdr.request_id;
	int n;

	pthread_mutex_lock(&s->mu);
	s->requests++;
	switch (m->hdr.type) {
	case FERRY_VMMP_REGISTER: {
		struct ferry_vmmp_register_ok ok = { .vm_handle = 1234,
						     .server_features = FERRY_VMMP_SF_FREE_HINTS | FERRY_VMMP_SF_STATE,
						     .max_chunk = s->max_chunk };

		if (s->registered || strcmp(m->u.reg.vm_id, "taken") == 0) {
			ferry_vmm_io_close_fds(fds, nfds);
			srv_error(s, req, FERRY_VMMP_E_EXISTS, "VM id is already registered");
			break;
		}
		s->reg = m->u.reg;
		memcpy(s->fds, fds, nfds * sizeof(int));
		s->nfds = nfds;
		s->registered = true;
		n = ferry_vmmp_encode_register_ok(req, &ok, s->tx, sizeof(s->tx));
		srv_send(s, s->tx, (size_t)n, -1);
		break;
	}
	case FERRY_VMMP_FREE_HINT: {
		uint64_t bytes = 0;

		if (!s->registered) {
			srv_error(s, req, FERRY_VMMP_E_UNEXPECTED, "FREE_HINT before REGISTER");
			break;
		}
		for (uint32_t i = 0; i < m->u.hints.count; i++) {
			struct ferry_vmmp_range r;

			ferry_vmmp_hint_entry(&m->u.hints, i, &r);
			if (!hint_inside(s, &r)) {
				char why[96];

				snprintf(why, sizeof(why), "[0x%llx, +0x%llx) is outside guest memory",
					 (unsigned long long)r.gpa, (unsigned long long)r.len);
				srv_error(s, req, FERRY_VMMP_E_OUT_OF_RANGE, why);
				goto done;
			}
		}
		for (uint32_t i = 0; i < m->u.hints.count && s->nhints < 8192; i++) {
			ferry_vmmp_hint_entry(&m->u.hints, i, &s->hints[s->nhints++]);
			bytes += s->hints[s->nhints - 1].len;
		}
		s->hint_msgs++;
		srv_ok(s, req, bytes);
		break;
	}
	case FERRY_VMMP_NOTIFY:
		if (s->nevents < 16)
			s->events[s->nevents++] = m->u.notify.event;
		srv_ok(s, req, 0);
		break;
	case FERRY_VMMP_STATE_PUT: {
		const struct ferry_vmmp_state *st = &m->u.state;

		/* Chunks in order into a pending blob that replaces the stored one when complete. */
		if (st->offset == 0) {
			free(s->pend);
			s->pend = malloc(st->total_len ? st->total_len : 1);
			s->pend_total = st->total_len;
			s->pend_got = 0;
		} else if (!s->pend || st->offset != s->pend_got || st->total_len != s->pend_total) {
			srv_error(s, req, FERRY_VMMP_E_STATE_SEQUENCE, "chunk out of order");
			break;
		}
		if (st->data_len > s->max_chunk) {
			srv_error(s, req, FERRY_VMMP_E_TOO_LARGE, "chunk above max_chunk");
			break;
		}
		memcpy(s->pend + st->offset, st->data, st->data_len);
		s->pend_got += st->data_len;
		srv_ok(s, req, s->pend_got);
		if (s->pend_got == s->pend_total) {
			free(s->blob);
			s->blob = s->pend;
			s->blob_total = s->pend_total;
			s->have_blob = true;
			s->pend = NULL;
		}
		break;
	}
	case FERRY_VMMP_STATE_GET: {
		uint64_t off = m->u.state_get.offset, left;
		uint32_t k;

		if (!s->have_blob) {
			srv_error(s, req, FERRY_VMMP_E_NO_STATE, "no device state stored");
			break;
		}
		if (off > s->blob_total) {
			srv_error(s, req, FERRY_VMMP_E_OUT_OF_RANGE, "offset beyond the blob");
			break;
		}
		left = s->blob_total - off;
		k = (uint32_t)(left < m->u.state_get.max_len ? left : m->u.state_get.max_len);
		/* Answer in smaller pieces than asked when max_chunk says so. */
		if (k > s->max_chunk)
			k = s->max_chunk;
		n = ferry_vmmp_encode_state_prefix(FERRY_VMMP_STATE_DATA, req, s->blob_total, off, k, s->tx,
						   sizeof(s->tx));
		SRV_CHECK(n > 0);
		memcpy(s->tx + n, s->blob + off, k);
		srv_send(s, s->tx, (size_t)n + k, -1);
		break;
	}
	case FERRY_VMMP_STATS: {
		struct ferry_vmmp_stat st[4] = {
			{ "faults", s->faults }, { "removes", s->removes },
			{ "hint_ranges", s->nhints }, { "requests", s->requests },
		};

		n = ferry_vmmp_encode_stats_ok(req, st, 4, s->tx, sizeof(s->tx));
		srv_send(s, s->tx, (size_t)n, -1);
		break;
	}
	case FERRY_VMMP_UNREGISTER:
		if (!s->registered) {
			srv_error(s, req, FERRY_VMMP_E_UNEXPECTED, "not registered");
			break;
		}
		srv_drop_registration(s);
		srv_ok(s, req, 0);
		break;
	default:
		srv_error(s, req, FERRY_VMMP_E_UNEXPECTED, "not a request");
		break;
	}
done:
	pthread_mutex_unlock(&s->mu);
	return true;
}

/* Serve one event of the (received) userfaultfd: the pager's real job, in miniature. */
static void srv_uffd(struct srv *s, int uffd)
{
	struct uffd_msg ev;
	ssize_t n = read(uffd, &ev, sizeof(ev));

	if (n != (ssize_t)sizeof(ev))
		return;
	pthread_mutex_lock(&s->mu);
	if (ev.event == UFFD_EVENT_PAGEFAULT) {
		uint64_t addr = ev.arg.pagefault.address & ~(uint64_t)(PAGE - 1);
		struct uffdio_copy cp = { .dst = addr, .src = (uintptr_t)s->page, .len = PAGE };

		for (uint32_t i = 0; i < PAGE; i++)
			s->page[i] = pattern(addr + i);
		if (ioctl(uffd, UFFDIO_COPY, &cp) == 0 || errno == EEXIST)
			s->faults++;
	} else if (ev.event == UFFD_EVENT_REMOVE) {
		s->removes++;
	}
	pthread_mutex_unlock(&s->mu);
}

static void *srv_main(void *arg)
{
	struct srv *s = arg;
	struct ferry_vmmp_allow allow;
	uint32_t gids[64];
	size_t ngids = 0;
	char spec[64];
	bool allowed;

	if (s->listen_fd >= 0) {
		struct pollfd p[2] = { { .fd = s->listen_fd, .events = POLLIN }, { .fd = s->stop[0], .events = POLLIN } };

		if (poll(p, 2, 10000) <= 0 || (p[1].revents & POLLIN))
			return NULL;
		s->sock = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (s->sock < 0)
			return NULL;
	}
	/* Who is this? Peer credentials against the allow-list. */
	SRV_CHECK(ferry_vmm_io_peer(s->sock, &s->peer_uid, NULL, gids, 64, &ngids) == 0);
	if (!s->allow) {
		snprintf(spec, sizeof(spec), "uid:%u", (unsigned int)getuid());
		s->allow = spec;
	}
	SRV_CHECK(ferry_vmmp_allow_parse(s->allow, &allow) == FERRY_VMMP_E_OK);
	allowed = ferry_vmmp_allow_match(&allow, s->peer_uid, gids, ngids);

	for (;;) {
		struct pollfd p[3] = {
			{ .fd = s->sock, .events = s->mode == SRV_DEAF ? 0 : POLLIN },
			{ .fd = s->stop[0], .events = POLLIN },
			{ .fd = -1, .events = POLLIN },
		};
		int fds[FERRY_VMMP_MAX_FDS];
		unsigned int nfds = 0;
		int code, rc;
		ssize_t len;

		if (s->registered && s->nfds > 0)
			p[2].fd = s->fds[0];
		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents & POLLIN)
			break;
		if (p[2].revents & POLLIN) {
			srv_uffd(s, p[2].fd);
			continue;
		}
		if (!(p[0].revents & (POLLIN | POLLHUP)))
			continue;
		len = ferry_vmm_io_recv_msg(s->sock, s->rx, sizeof(s->rx), fds, &nfds, FERRY_VMMP_MAX_FDS,
					    ferry_vmm_io_deadline(5000), &code);
		if (len == -EBADMSG) {
			ferry_vmm_io_close_fds(fds, nfds);
			srv_error(s, 0, (uint32_t)code, "bad header");
			break;
		}
		if (len < 0) {
			ferry_vmm_io_close_fds(fds, nfds);
			break; /* peer gone */
		}
		if (!allowed) {
			ferry_vmm_io_close_fds(fds, nfds);
			srv_error(s, s->rx[8] | (uint64_t)s->rx[9] << 8, FERRY_VMMP_E_NOT_ALLOWED,
				  "uid is not on the allow-list");
			break;
		}
		if (s->mode == SRV_STALL) {
			ferry_vmm_io_close_fds(fds, nfds);
			srv_send(s, "FVMM\1\x0b\1\0\0\0", 10, -1);
			continue; /* and never finish it */
		}
		rc = ferry_vmmp_decode(s->rx, (size_t)len, nfds, &s->m);
		if (rc != FERRY_VMMP_E_OK) {
			ferry_vmm_io_close_fds(fds, nfds);
			srv_error(s, s->m.hdr.request_id, (uint32_t)rc, "rejected by the test pager");
			continue;
		}
		if (!srv_handle(s, fds, nfds))
			break;
	}
	return NULL;
}

static struct srv *srv_start(enum srv_mode mode, const char *allow, uint32_t max_chunk, int *client)
{
	struct srv *s = calloc(1, sizeof(*s));
	int sv[2];

	assert_non_null(s);
	s->mode = mode;
	s->allow = allow;
	s->max_chunk = max_chunk ? max_chunk : FERRY_VMMP_MAX_CHUNK;
	s->listen_fd = -1;
	s->page = aligned_alloc(PAGE, PAGE);
	assert_non_null(s->page);
	pthread_mutex_init(&s->mu, NULL);
	assert_int_equal(pipe2(s->stop, O_CLOEXEC), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	s->sock = sv[0];
	assert_int_equal(fcntl(s->sock, F_SETFL, O_NONBLOCK), 0);
	*client = sv[1];
	assert_int_equal(pthread_create(&s->th, NULL, srv_main, s), 0);
	return s;
}

/* A pager on a named socket at @path (accepts one connection). */
static struct srv *srv_start_listen(const char *path)
{
	struct srv *s = calloc(1, sizeof(*s));
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	assert_non_null(s);
	assert_true(strlen(path) < sizeof(sa.sun_path));
	strcpy(sa.sun_path, path);
	unlink(path);
	s->mode = SRV_NORMAL;
	s->max_chunk = FERRY_VMMP_MAX_CHUNK;
	s->sock = -1;
	s->page = aligned_alloc(PAGE, PAGE);
	assert_non_null(s->page);
	pthread_mutex_init(&s->mu, NULL);
	assert_int_equal(pipe2(s->stop, O_CLOEXEC), 0);
	s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(s->listen_fd >= 0);
	assert_int_equal(bind(s->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(s->listen_fd, 4), 0);
	assert_int_equal(pthread_create(&s->th, NULL, srv_main, s), 0);
	return s;
}

static void srv_stop(struct srv *s)
{
	assert_int_equal(write(s->stop[1], "x", 1), 1);
	pthread_join(s->th, NULL);
	srv_drop_registration(s);
	close(s->stop[0]);
	close(s->stop[1]);
	if (s->sock >= 0)
		close(s->sock);
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	free(s->blob);
	free(s->pend);
	free(s->page);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

static struct ferry_vmm_conn *connect_pair(struct srv **s, enum srv_mode mode, const char *allow,
					   uint32_t max_chunk)
{
	int sock;
	struct ferry_vmm_conn *c;

	*s = srv_start(mode, allow, max_chunk, &sock);
	c = ferry_vmm_attach(sock);
	assert_non_null(c);
	assert_int_equal(ferry_vmm_set_timeout(c, 3000), 0);
	return c;
}

/* ---------------------------------------------------------------- guest memory */

struct guest {
	int uffd, memfd;
	uint8_t *shm;      /* region 0: memfd-backed, gpa 0 */
	uint8_t *anon;     /* region 1: anonymous, gpa 1 GiB */
	size_t shm_len, anon_len;
	struct ferry_vmm_region r[2];
};

static void guest_make(struct guest *g)
{
	struct ferry_err err = { 0 };

	g->shm_len = 8 * MIB;
	g->anon_len = 64 * MIB; /* room for thousands of disjoint free hints */
	g->uffd = test_uffd(FERRY_VMM_UFFD_F_RECOMMENDED, 0);
	g->memfd = memfd_create("ferry-test-guest", MFD_CLOEXEC);
	assert_true(g->memfd >= 0);
	assert_int_equal(ftruncate(g->memfd, (off_t)g->shm_len), 0);
	g->shm = mmap(NULL, g->shm_len, PROT_READ | PROT_WRITE, MAP_SHARED, g->memfd, 0);
	assert_true(g->shm != MAP_FAILED);
	g->anon = mmap(NULL, g->anon_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(g->anon != MAP_FAILED);
	if (ferry_vmm_uffd_register_range(g->uffd, g->shm, g->shm_len, FERRY_VMM_MODE_MISSING, &err) < 0)
		fail_msg("%s", err.msg);
	if (ferry_vmm_uffd_register_range(g->uffd, g->anon, g->anon_len, FERRY_VMM_MODE_MISSING, &err) < 0)
		fail_msg("%s", err.msg);
	g->r[0] = (struct ferry_vmm_region){ .gpa = 0, .size = g->shm_len, .hva = (uintptr_t)g->shm,
					     .offset = 0, .page_size = PAGE, .modes = FERRY_VMM_MODE_MISSING,
					     .mem_fd = g->memfd };
	g->r[1] = (struct ferry_vmm_region){ .gpa = 1u << 30, .size = g->anon_len, .hva = (uintptr_t)g->anon,
					     .page_size = PAGE, .mem_fd = -1 };
}

static void guest_free(struct guest *g)
{
	munmap(g->shm, g->shm_len);
	munmap(g->anon, g->anon_len);
	close(g->memfd);
	close(g->uffd);
}

/* ---------------------------------------------------------------- tests */

static void test_register_real_fds(void **state)
{
	struct guest g;
	struct srv *s;
	struct ferry_vmm_conn *c;
	struct ferry_vmm_info info;
	struct ferry_vmm_stat st[8];
	struct stat a, b;
	char path[64], link[128];
	uint64_t feat_client = 0, feat_server = 0;
	char sock_path[108];
	int fds_before = count_fds(), n;
	long same;

	(void)state;
	guest_make(&g);
	/* Over a real named socket: connect() by path, accept() and SO_PEERCRED in the pager. */
	snprintf(sock_path, sizeof(sock_path), "/tmp/ferry-vmm-test-%d.sock", (int)getpid());
	s = srv_start_listen(sock_path);
	c = ferry_vmm_connect(sock_path);
	assert_non_null(c);
	unlink(sock_path);
	assert_int_equal(ferry_vmm_server_info(c, &info), -ENOTCONN);

	/* Region 0 in the memfd, region 1 anonymous. */
	if (ferry_vmm_register_ex(c, "vm-test-1", g.r, 2, g.uffd) < 0)
		fail_msg("register: %s", ferry_vmm_errmsg(c));
	assert_string_equal(ferry_vmm_errmsg(c), "");
	assert_int_equal(ferry_vmm_server_info(c, &info), 0);
	assert_int_equal(info.vm_handle, 1234);
	assert_int_equal(info.max_chunk, FERRY_VMMP_MAX_CHUNK);

	pthread_mutex_lock(&s->mu);
	assert_true(s->registered);
	assert_int_equal(s->peer_uid, getuid());
	assert_int_equal(s->nfds, 2);
	assert_string_equal(s->reg.vm_id, "vm-test-1");
	assert_int_equal(s->reg.region_count, 2);
	assert_int_equal(s->reg.regions[0].fd_slot, 1);
	assert_int_equal(s->reg.regions[0].hva, (uintptr_t)g.shm);
	pthread_mutex_unlock(&s->mu);

	/* The memfd the pager got is our memfd: same inode, and its writes show in our mapping. */
	assert_int_equal(fstat(g.memfd, &a), 0);
	assert_int_equal(fstat(s->fds[1], &b), 0);
	assert_int_equal(a.st_ino, b.st_ino);
	assert_int_equal(a.st_dev, b.st_dev);
	assert_int_not_equal(s->fds[1], g.memfd); /* a copy, not our number */
	assert_int_equal(pwrite(s->fds[1], "ferry", 5, 3 * PAGE + 7), 5);
	assert_memory_equal(g.shm + 3 * PAGE + 7, "ferry", 5);

	/* The uffd the pager got is our uffd. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", s->fds[0]);
	n = (int)readlink(path, link, sizeof(link) - 1);
	assert_true(n > 0);
	link[n] = '\0';
	assert_string_equal(link, "anon_inode:[userfaultfd]");
	assert_int_equal(ferry_vmm_uffd_features(g.uffd, &feat_client), 0);
	assert_int_equal(ferry_vmm_uffd_features(s->fds[0], &feat_server), 0);
	assert_int_equal(feat_client, feat_server);
	assert_int_equal(s->reg.uffd_features, feat_client); /* reported in REGISTER */
	assert_true(feat_client & FERRY_VMM_UFFD_F_EVENT_REMOVE);
	same = syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, g.uffd, s->fds[0]);
	if (same < 0)
		print_message("kcmp unavailable (%s): identity shown by the fault test below\n", strerror(errno));
	else
		assert_int_equal(same, 0);
	same = syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, g.memfd, s->fds[1]);
	assert_true(same <= 0);

	/* A real page fault, served by the pager through its copy of the uffd. */
	for (uint32_t pg = 0; pg < 3; pg++) {
		uint64_t off = (uint64_t)pg * 5 * PAGE + 123;

		assert_int_equal(g.anon[off], pattern((uintptr_t)g.anon + off));
	}
	/* The memfd region too (shmem missing fault -> UFFDIO_COPY into the page cache). */
	assert_int_equal(g.shm[PAGE * 100 + 1], pattern((uintptr_t)g.shm + PAGE * 100 + 1));
	/* A guest free: madvise(DONTNEED) reaches the pager as UFFD_EVENT_REMOVE. */
	assert_int_equal(madvise(g.anon, 2 * PAGE, MADV_DONTNEED), 0);

	n = ferry_vmm_stats(c, st, 8);
	assert_int_equal(n, 4);
	assert_string_equal(st[0].name, "faults");
	assert_int_equal(st[0].value, 4);
	assert_string_equal(st[1].name, "removes");
	assert_int_equal(st[1].value, 1);
	/* A smaller array gets the first entries, the count says how many exist. */
	assert_int_equal(ferry_vmm_stats(c, st, 1), 4);
	assert_int_equal(ferry_vmm_stats(c, NULL, 0), 4);

	/* Registering twice: EEXIST from the pager, connection still fine. */
	assert_int_equal(ferry_vmm_register_ex(c, "vm-test-1", g.r, 2, g.uffd), -EEXIST);
	assert_int_equal(ferry_vmm_remote_code(c), FERRY_VMMP_E_EXISTS);
	assert_non_null(strstr(ferry_vmm_errmsg(c), "already registered"));
	assert_int_equal(ferry_vmm_unregister(c), 0);
	assert_int_equal(ferry_vmm_remote_code(c), 0);
	pthread_mutex_lock(&s->mu);
	assert_false(s->registered);
	assert_int_equal(s->nfds, 0);
	pthread_mutex_unlock(&s->mu);
	assert_int_equal(ferry_vmm_unregister(c), -EPROTO);
	assert_int_equal(ferry_vmm_remote_code(c), FERRY_VMMP_E_UNEXPECTED);

	ferry_vmm_close(c);
	srv_stop(s);
	guest_free(&g);
	assert_int_equal(count_fds(), fds_before);
}

static void test_register_ex_memfds(void **state)
{
	struct srv *s;
	struct ferry_vmm_conn *c = connect_pair(&s, SRV_NORMAL, NULL, 0);
	struct ferry_vmm_region r[3];
	struct stat a, b;
	int uffd = test_uffd(0, 0);
	int m1 = memfd_create("node0", MFD_CLOEXEC), m2 = memfd_create("node1", MFD_CLOEXEC);
	int fds_before;

	(void)state;
	assert_true(m1 >= 0 && m2 >= 0);
	fds_before = count_fds();
	/* Three regions over two files: the same file twice becomes one descriptor. */
	r[0] = (struct ferry_vmm_region){ .gpa = 0, .size = 4 * MIB, .hva = 0x7e0000000000ull, .mem_fd = m1 };
	r[1] = (struct ferry_vmm_region){ .gpa = 4 * MIB, .size = 4 * MIB, .hva = 0x7e0000400000ull,
					  .offset = 4 * MIB, .mem_fd = m1 };
	r[2] = (struct ferry_vmm_region){ .gpa = 1ull << 32, .size = 2 * MIB, .hva = 0x7e0000800000ull,
					  .page_size = 2 * MIB, .mem_fd = m2,
					  .modes = FERRY_VMM_MODE_MISSING | FERRY_VMM_MODE_MINOR };
	if (ferry_vmm_register_ex(c, "numa-vm", r, 3, uffd) < 0)
		fail_msg("%s", ferry_vmm_errmsg(c));
	pthread_mutex_lock(&s->mu);
	assert_int_equal(s->nfds, 3);
	assert_int_equal(s->reg.fd_count, 3);
	assert_int_equal(s->reg.regions[0].fd_slot, 1);
	assert_int_equal(s->reg.regions[1].fd_slot, 1);
	assert_int_equal(s->reg.regions[2].fd_slot, 2);
	assert_int_equal(s->reg.regions[2].page_size, 2 * MIB);
	assert_int_equal(s->reg.regions[2].modes, FERRY_VMMP_MODE_MISSING | FERRY_VMMP_MODE_MINOR);
	assert_int_equal(fstat(m2, &a), 0);
	assert_int_equal(fstat(s->fds[2], &b), 0);
	assert_int_equal(a.st_ino, b.st_ino);
	pthread_mutex_unlock(&s->mu);
	/* The pager's copies are gone after UNREGISTER. */
	assert_int_equal(ferry_vmm_unregister(c), 0);
	assert_int_equal(count_fds(), fds_before);

	/* ferry_vmm_register() with one memfd: every region lives in it (mem_fd ignored). */
	r[0].mem_fd = r[1].mem_fd = 12345;
	if (ferry_vmm_register(c, "one-file", r, 2, uffd, m1) < 0)
		fail_msg("%s", ferry_vmm_errmsg(c));
	pthread_mutex_lock(&s->mu);
	assert_int_equal(s->nfds, 2);
	assert_int_equal(s->reg.regions[0].fd_slot, 1);
	assert_int_equal(s->reg.regions[1].fd_slot, 1);
	assert_int_equal(s->reg.regions[1].offset, 4 * MIB);
	assert_int_equal(fstat(m1, &a), 0);
	assert_int_equal(fstat(s->fds[1], &b), 0);
	assert_int_equal(a.st_ino, b.st_ino);
	pthread_mutex_unlock(&s->mu);
	/* ... and with -1 they are anonymous. */
	assert_int_equal(ferry_vmm_unregister(c), 0);
	assert_int_equal(ferry_vmm_register(c, "anon", r, 2, uffd, -1), 0);
	pthread_mutex_lock(&s->mu);
	assert_int_equal(s->nfds, 1);
	assert_int_equal(s->reg.regions[1].fd_slot, 0);
	pthread_mutex_unlock(&s->mu);
	assert_int_equal(ferry_vmm_unregister(c), 0);

	ferry_vmm_close(c);
	srv_stop(s);
	close(m1);
	close(m2);
	close(uffd);
}

static void test_hints_and_notices(void **state)
{
	struct guest g;
	struct srv *s;
	struct ferry_vmm_conn *c = connect_pair(&s, SRV_NORMAL, NULL, 0);
	static struct ferry_vmm_range many[5000];
	struct ferry_vmm_range messy[] = {
		{ 6 * PAGE, 2 * PAGE }, { 0, PAGE }, { PAGE, PAGE },              /* touching: merged */
		{ 7 * PAGE, 3 * PAGE }, { 20 * PAGE, PAGE }, { 20 * PAGE, PAGE }, /* overlapping, duplicate */
	};
	const uint64_t anon_gpa = 1ull << 30;
	uint64_t req;

	(void)state;
	guest_make(&g);
	/* Before REGISTER the pager refuses hints: EPROTO, message from the pager. */
	assert_int_equal(ferry_vmm_free_hint(c, 0, PAGE), -EPROTO);
	assert_int_equal(ferry_vmm_remote_code(c), FERRY_VMMP_E_UNEXPECTED);
	assert_non_null(strstr(ferry_vmm_errmsg(c), "before REGISTER"));
	if (ferry_vmm_register(c, "vm-hints", g.r, 2, g.uffd, -1) < 0)
		fail_msg("%s", ferry_vmm_errmsg(c));

	/* One range; then an unsorted, overlapping batch arrives sorted and merged. */
	assert_int_equal(ferry_vmm_free_hint(c, 2 * MIB, MIB), 0);
	assert_int_equal(ferry_vmm_free_hints(c, messy, sizeof(messy) / sizeof(messy[0])), 0);
	pthread_mutex_lock(&s->mu);
	assert_int_equal(s->nhints, 4);
	assert_int_equal(s->hint_msgs, 2);
	assert_int_equal(s->hints[0].gpa, 2 * MIB);
	assert_int_equal(s->hints[1].gpa, 0);
	assert_int_equal(s->hints[1].len, 2 * PAGE);
	assert_int_equal(s->hints[2].gpa, 6 * PAGE);
	assert_int_equal(s->hints[2].len, 4 * PAGE);
	assert_int_equal(s->hints[3].gpa, 20 * PAGE);
	assert_int_equal(s->hints[3].len, PAGE);
	s->nhints = s->hint_msgs = 0;
	pthread_mutex_unlock(&s->mu);

	/* 5000 disjoint ranges, given backwards: two messages (4096 + 904), ascending. */
	for (size_t i = 0; i < 5000; i++)
		many[i] = (struct ferry_vmm_range){ anon_gpa + (uint64_t)(4999 - i) * 2 * PAGE, PAGE };
	assert_int_equal(ferry_vmm_free_hints(c, many, 5000), 0);
	pthread_mutex_lock(&s->mu);
	assert_int_equal(s->nhints, 5000);
	assert_int_equal(s->hint_msgs, 2);
	for (unsigned int i = 0; i < s->nhints; i++)
		assert_int_equal(s->hints[i].gpa, anon_gpa + (uint64_t)i * 2 * PAGE);
	s->nhints = s->hint_msgs = 0;
	pthread_mutex_unlock(&s->mu);

	/* 5000 pages that touch: one range. */
	for (size_t i = 0; i < 5000; i++)
		many[i] = (struct ferry_vmm_range){ anon_gpa + (uint64_t)((i * 7919) % 5000) * PAGE, PAGE };
	assert_int_equal(ferry_vmm_free_hints(c, many, 5000), 0);
	pthread_mutex_lock(&s->mu);
	assert_int_equal(s->nhints, 1);
	assert_int_equal(s->hints[0].gpa, anon_gpa);
	assert_int_equal(s->hints[0].len, 5000ull * PAGE);
	req = s->requests;
	pthread_mutex_unlock(&s->mu);

	/* Local checks: nothing is sent for a bad range. */
	assert_int_equal(ferry_vmm_free_hint(c, 100, PAGE), -EINVAL);
	assert_non_null(strstr(ferry_vmm_errmsg(c), "aligned"));
	assert_int_equal(ferry_vmm_free_hint(c, 0, 0), -EINVAL);
	messy[3].len = 5;
	assert_int_equal(ferry_vmm_free_hints(c, messy, 6), -EINVAL);
	assert_int_equal(ferry_vmm_free_hints(c, messy, 0), 0);
	pthread_mutex_lock(&s->mu);
	assert_int_equal(s->requests, req);
	pthread_mutex_unlock(&s->mu);
	/* Outside guest memory: the pager says so; the connection survives. */
	assert_int_equal(ferry_vmm_free_hint(c, 512 * MIB, PAGE), -ERANGE);
	assert_int_equal(ferry_vmm_remote_code(c), FERRY_VMMP_E_OUT_OF_RANGE);
	assert_non_null(strstr(ferry_vmm_errmsg(c), "outside guest memory"));

	assert_int_equal(ferry_vmm_notify(c, FERRY_VMM_SUSPEND), 0);
	assert_int_equal(ferry_vmm_remote_code(c), 0);
	assert_int_equal(ferry_vmm_notify(c, FERRY_VMM_RESUME), 0);
	assert_int_equal(ferry_vmm_notify(c, 7), -EINVAL);
	pthread_mutex_lock(&s->mu);
	assert_int_equal(s->nevents, 2);
	assert_int_equal(s->events[0], FERRY_VMMP_EV_SUSPEND);
	assert_int_equal(s->events[1], FERRY_VMMP_EV_RESUME);
	pthread_mutex_unlock(&s->mu);

	ferry_vmm_close(c);
	srv_stop(s);
	guest_free(&g);
}

static void test_state_blob(void **state)
{
	struct srv *s;
	/* An odd chunk size: the blob crosses chunks at unaligned offsets. */
	struct ferry_vmm_conn *c = connect_pair(&s, SRV_NORMAL, NULL, 300001);
	struct ferry_vmm_region r = { .gpa = 0, .size = MIB, .hva = 0x7e0000000000ull };
	const size_t len = 3 * MIB;
	uint8_t *blob = malloc(len);
	void *back = NULL;
	size_t back_len = 0;
	int uffd = test_uffd(0, 0);

	(void)state;
	for (size_t i = 0; i < len; i++)
		blob[i] = pattern(i * 2654435761u);
	assert_int_equal(ferry_vmm_register(c, "vm-state", &r, 1, uffd, -1), 0);
	assert_int_equal(ferry_vmm_get_state(c, &back, &back_len), -ENOENT);
	assert_int_equal(ferry_vmm_remote_code(c), FERRY_VMMP_E_NO_STATE);
	assert_null(back);

	assert_int_equal(ferry_vmm_put_state(c, blob, len), 0);
	pthread_mutex_lock(&s->mu);
	assert_true(s->have_blob);
	assert_int_equal(s->blob_total, len);
	assert_memory_equal(s->blob, blob, len);
	pthread_mutex_unlock(&s->mu);
	assert_int_equal(ferry_vmm_get_state(c, &back, &back_len), 0);
	assert_int_equal(back_len, len);
	assert_memory_equal(back, blob, len);
	free(back);

	/* An empty blob replaces it. */
	assert_int_equal(ferry_vmm_put_state(c, NULL, 0), 0);
	assert_int_equal(ferry_vmm_get_state(c, &back, &back_len), 0);
	assert_null(back);
	assert_int_equal(back_len, 0);
	assert_int_equal(ferry_vmm_put_state(c, NULL, 5), -EINVAL);

	ferry_vmm_close(c);
	srv_stop(s);
	free(blob);
	close(uffd);
}

static void test_local_argument_checks(void **state)
{
	struct srv *s;
	struct ferry_vmm_conn *c = connect_pair(&s, SRV_NORMAL, NULL, 0);
	struct ferry_vmm_region r[2] = {
		{ .gpa = 0, .size = MIB, .hva = 0x7e0000000000ull },
		{ .gpa = MIB, .size = MIB, .hva = 0x7e0000100000ull },
	};
	char id[80];
	int uffd = test_uffd(0, 0);

	(void)state;
	r[1].page_size = 8192;
	assert_int_equal(ferry_vmm_register(c, "vm", r, 2, uffd, -1), -EINVAL);
	assert_non_null(strstr(ferry_vmm_errmsg(c), "region 1"));
	assert_non_null(strstr(ferry_vmm_errmsg(c), "page size"));
	r[1].page_size = 2 * MIB;
	assert_int_equal(ferry_vmm_register(c, "vm", r, 2, uffd, -1), -EINVAL);
	assert_non_null(strstr(ferry_vmm_errmsg(c), "alignment"));
	r[1].page_size = 0;
	r[1].gpa = MIB / 2;
	assert_int_equal(ferry_vmm_register(c, "vm", r, 2, uffd, -1), -EINVAL);
	assert_non_null(strstr(ferry_vmm_errmsg(c), "overlapping"));
	r[1].gpa = MIB;
	assert_int_equal(ferry_vmm_register(c, "my vm", r, 2, uffd, -1), -EINVAL);
	assert_non_null(strstr(ferry_vmm_errmsg(c), "VM id"));
	memset(id, 'v', sizeof(id));
	id[sizeof(id) - 1] = '\0';
	assert_int_equal(ferry_vmm_register(c, id, r, 2, uffd, -1), -EINVAL);
	assert_int_equal(ferry_vmm_register(c, "vm", r, 0, uffd, -1), -EINVAL);
	assert_int_equal(ferry_vmm_register(c, "vm", r, 2, 987, -1), -EBADF);
	assert_int_equal(ferry_vmm_register(c, "vm", r, 2, uffd, 988), -EBADF);
	r[0].modes = FERRY_VMM_MODE_MINOR; /* minor faults on anonymous memory */
	assert_int_equal(ferry_vmm_register(c, "vm", r, 2, uffd, -1), -EINVAL);
	r[0].modes = 0;
	pthread_mutex_lock(&s->mu);
	assert_int_equal(s->requests, 0); /* none of that reached the pager */
	pthread_mutex_unlock(&s->mu);
	/* The pager's own refusal of an id. */
	assert_int_equal(ferry_vmm_register(c, "taken", r, 2, uffd, -1), -EEXIST);
	assert_int_equal(ferry_vmm_register(c, "vm", r, 2, uffd, -1), 0);

	assert_int_equal(ferry_vmm_set_timeout(c, -2), -EINVAL);
	assert_int_equal(ferry_vmm_set_timeout(NULL, 5), -EINVAL);
	assert_int_equal(ferry_vmm_notify(NULL, FERRY_VMM_SUSPEND), -EINVAL);
	assert_true(ferry_vmm_fd(c) >= 0);
	assert_int_equal(ferry_vmm_fd(NULL), -1);
	ferry_vmm_close(NULL);
	ferry_vmm_close(c);
	srv_stop(s);
	close(uffd);
}

static void test_not_allowed(void **state)
{
	char allow[64];
	struct srv *s;
	struct ferry_vmm_conn *c;
	struct ferry_vmm_region r = { .gpa = 0, .size = MIB, .hva = 0x7e0000000000ull };
	int uffd = test_uffd(0, 0), fds_before = count_fds();

	(void)state;
	snprintf(allow, sizeof(allow), "uid:%u gid:%u", (unsigned int)getuid() + 1, 4242u);
	c = connect_pair(&s, SRV_NORMAL, allow, 0);
	assert_int_equal(ferry_vmm_register(c, "vm", &r, 1, uffd, -1), -EACCES);
	assert_int_equal(ferry_vmm_remote_code(c), FERRY_VMMP_E_NOT_ALLOWED);
	assert_non_null(strstr(ferry_vmm_errmsg(c), "allow-list"));
	/* The pager hung up; so did we. */
	assert_int_equal(ferry_vmm_notify(c, FERRY_VMM_SUSPEND), -ENOTCONN);
	assert_non_null(strstr(ferry_vmm_errmsg(c), "connection broken"));
	ferry_vmm_close(c);
	srv_stop(s);
	/* The refused descriptor copies were closed by the pager. */
	assert_int_equal(count_fds(), fds_before);
	close(uffd);
}

/* A pager process that reads one request, writes @nbytes of @reply and dies. */
static pid_t dying_peer(int sock, const void *reply, size_t nbytes)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		uint8_t hdr[FERRY_VMMP_HDR_LEN];
		ssize_t n = recv(sock, hdr, sizeof(hdr), MSG_WAITALL);

		if (n == (ssize_t)sizeof(hdr) && nbytes)
			(void)!write(sock, reply, nbytes);
		_exit(0);
	}
	return pid;
}

static void test_peer_dies_mid_message(void **state)
{
	static const struct {
		size_t nbytes;
		const char *what;
	} cases[] = {
		{ 0, "closed the connection" },            /* dies without a word */
		{ 10, "mid-message" },                     /* dies inside the header */
		{ FERRY_VMMP_HDR_LEN + 3, "mid-message" }, /* dies inside the payload */
	};
	uint8_t reply[64];
	int len;

	(void)state;
	/* An OK reply whose request id is the client's first (1). */
	len = ferry_vmmp_encode_ok(1, 0, reply, sizeof(reply));
	assert_int_equal(len, FERRY_VMMP_HDR_LEN + 8);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int sv[2], status;
		struct ferry_vmm_conn *c;
		int64_t t0;
		pid_t pid;

		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
		pid = dying_peer(sv[0], reply, cases[i].nbytes);
		close(sv[0]);
		c = ferry_vmm_attach(sv[1]);
		assert_non_null(c);
		assert_int_equal(ferry_vmm_set_timeout(c, 10000), 0);
		t0 = now_ms();
		assert_int_equal(ferry_vmm_notify(c, FERRY_VMM_SUSPEND), -ECONNRESET);
		/* Noticed at once, not after the 10 s timeout. */
		assert_true(now_ms() - t0 < 2000);
		if (!strstr(ferry_vmm_errmsg(c), cases[i].what))
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, ferry_vmm_errmsg(c), cases[i].what);
		assert_int_equal(ferry_vmm_notify(c, FERRY_VMM_SUSPEND), -ENOTCONN);
		ferry_vmm_close(c);
		assert_int_equal(waitpid(pid, &status, 0), pid);
	}
	/* A pager that is already gone: the send fails, EPIPE, no SIGPIPE. */
	{
		int sv[2];
		struct ferry_vmm_conn *c;

		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
		close(sv[0]);
		c = ferry_vmm_attach(sv[1]);
		assert_int_equal(ferry_vmm_notify(c, FERRY_VMM_RESUME), -EPIPE);
		ferry_vmm_close(c);
	}
}

static void test_peer_stalls(void **state)
{
	struct srv *s;
	struct ferry_vmm_conn *c;
	uint8_t *blob;
	int64_t t0, dt;

	(void)state;
	/* Half a reply, then silence: the timeout ends the wait. */
	c = connect_pair(&s, SRV_STALL, NULL, 0);
	assert_int_equal(ferry_vmm_set_timeout(c, 300), 0);
	t0 = now_ms();
	assert_int_equal(ferry_vmm_notify(c, FERRY_VMM_SUSPEND), -ETIMEDOUT);
	dt = now_ms() - t0;
	assert_true(dt >= 290 && dt < 3000);
	assert_non_null(strstr(ferry_vmm_errmsg(c), "timed out"));
	assert_int_equal(ferry_vmm_notify(c, FERRY_VMM_SUSPEND), -ENOTCONN);
	ferry_vmm_close(c);
	srv_stop(s);

	/* A pager that never reads: a 3 MiB send cannot complete and times out too. */
	c = connect_pair(&s, SRV_DEAF, NULL, 0);
	assert_int_equal(ferry_vmm_set_timeout(c, 300), 0);
	blob = calloc(1, 3 * MIB);
	t0 = now_ms();
	assert_int_equal(ferry_vmm_put_state(c, blob, 3 * MIB), -ETIMEDOUT);
	dt = now_ms() - t0;
	assert_true(dt >= 290 && dt < 3000);
	assert_non_null(strstr(ferry_vmm_errmsg(c), "sending"));
	free(blob);
	ferry_vmm_close(c);
	srv_stop(s);
}

static void test_bad_replies(void **state)
{
	static const struct {
		enum srv_mode mode;
		const char *what;
	} cases[] = {
		{ SRV_BAD_REQID, "reply to request" },
		{ SRV_SEND_FD, "file descriptors" },
		{ SRV_BAD_MAGIC, "bad reply header" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct srv *s;
		struct ferry_vmm_conn *c = connect_pair(&s, cases[i].mode, NULL, 0);
		int fds_before = count_fds();

		assert_int_equal(ferry_vmm_notify(c, FERRY_VMM_SUSPEND), -EPROTO);
		if (!strstr(ferry_vmm_errmsg(c), cases[i].what))
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, ferry_vmm_errmsg(c), cases[i].what);
		/* A descriptor pushed on us was closed, not leaked. */
		assert_int_equal(count_fds(), fds_before);
		assert_int_equal(ferry_vmm_notify(c, FERRY_VMM_SUSPEND), -ENOTCONN);
		ferry_vmm_close(c);
		srv_stop(s);
	}
}

static void test_connect_errors(void **state)
{
	char path[200];
	int fds[2];
	struct ferry_vmm_conn *c;

	(void)state;
	errno = 0;
	assert_null(ferry_vmm_connect("/nonexistent/ferry.sock"));
	assert_int_equal(errno, ENOENT);
	memset(path, 'p', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	assert_null(ferry_vmm_connect(path));
	assert_int_equal(errno, ENAMETOOLONG);
	assert_null(ferry_vmm_connect(""));
	assert_int_equal(errno, EINVAL);
	assert_int_equal(pipe(fds), 0);
	assert_null(ferry_vmm_attach(fds[0])); /* closed by attach */
	assert_int_equal(errno, ENOTSOCK);
	close(fds[1]);
	assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, fds), 0);
	assert_null(ferry_vmm_attach(fds[0]));
	assert_int_equal(errno, EPROTOTYPE);
	close(fds[1]);

	/* The abstract namespace ("@name"). */
	{
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		socklen_t salen;

		snprintf(path, sizeof(path), "@ferry-vmm-test-%d", (int)getpid());
		memcpy(sa.sun_path + 1, path + 1, strlen(path) - 1);
		salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
		assert_int_equal(bind(lfd, (struct sockaddr *)&sa, salen), 0);
		assert_int_equal(listen(lfd, 1), 0);
		c = ferry_vmm_connect(path);
		assert_non_null(c);
		ferry_vmm_close(c);
		close(lfd);
		errno = 0;
		assert_null(ferry_vmm_connect(path));
		assert_int_equal(errno, ECONNREFUSED);
	}
}

static void test_uffd_helpers(void **state)
{
	struct ferry_err err = { 0 };
	uint64_t feat = 0;
	uint8_t *mem;
	int fd;

	(void)state;
	/* Best effort: granted features are the asked-for ones this kernel has. */
	fd = test_uffd(FERRY_VMM_UFFD_F_RECOMMENDED, 0);
	assert_int_equal(ferry_vmm_uffd_features(fd, &feat), 0);
	assert_int_equal(feat & ~FERRY_VMM_UFFD_F_RECOMMENDED, 0);
	print_message("granted uffd features 0x%llx of 0x%llx\n", (unsigned long long)feat,
		      (unsigned long long)FERRY_VMM_UFFD_F_RECOMMENDED);
	close(fd);
	/* Strict: a feature no kernel has is refused with a message saying what exists. */
	fd = ferry_vmm_uffd_create(O_CLOEXEC, 1ull << 62, &err);
	if (fd != -EPERM) {
		assert_int_equal(fd, -EINVAL);
		assert_non_null(strstr(err.msg, "not available"));
	}
	assert_int_equal(ferry_vmm_uffd_create(0x40000, 0, &err), -EINVAL); /* unknown flag */
	assert_int_equal(ferry_vmm_uffd_create(FERRY_VMM_UFFD_DEV_ONLY | FERRY_VMM_UFFD_SYSCALL_ONLY, 0, &err),
			 -EINVAL);
	/* Both ways of getting one, where this machine permits them. */
	for (int how = 0; how < 2; how++) {
		int flags = how ? FERRY_VMM_UFFD_DEV_ONLY : FERRY_VMM_UFFD_SYSCALL_ONLY;

		fd = ferry_vmm_uffd_create(O_CLOEXEC | flags, FERRY_VMM_UFFD_F_EVENT_REMOVE, &err);
		if (fd < 0) {
			print_message("%s: %s\n", how ? "/dev/userfaultfd" : "userfaultfd(2)", err.msg);
			continue;
		}
		assert_int_equal(ferry_vmm_uffd_features(fd, &feat), 0);
		assert_int_equal(feat, FERRY_VMM_UFFD_F_EVENT_REMOVE);
		close(fd);
	}

	fd = test_uffd(0, 0);
	mem = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(mem != MAP_FAILED);
	assert_int_equal(ferry_vmm_uffd_register_range(fd, mem + 1, PAGE, 0, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "UFFDIO_REGISTER"));
	assert_int_equal(ferry_vmm_uffd_register_range(fd, mem, PAGE, FERRY_VMM_MODE_MINOR, &err), -EINVAL);
	assert_int_equal(ferry_vmm_uffd_register_range(fd, mem, PAGE, 0x10, &err), -EINVAL);
	assert_int_equal(ferry_vmm_uffd_register_range(fd, mem, 4 * PAGE, 0, &err), 0);
	assert_int_equal(ferry_vmm_uffd_unregister_range(fd, mem, 4 * PAGE, &err), 0);
	mem[0] = 1; /* no longer registered: an ordinary fault */
	assert_int_equal(ferry_vmm_uffd_features(-1, &feat), -EINVAL);
	munmap(mem, 4 * PAGE);
	close(fd);
}

static int setup(void **state)
{
	(void)state;
	/* Nothing may hang: a stuck test dies here instead of at the ctest timeout. */
	alarm(60);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_uffd_helpers, setup),
		cmocka_unit_test_setup(test_register_real_fds, setup),
		cmocka_unit_test_setup(test_register_ex_memfds, setup),
		cmocka_unit_test_setup(test_hints_and_notices, setup),
		cmocka_unit_test_setup(test_state_blob, setup),
		cmocka_unit_test_setup(test_local_argument_checks, setup),
		cmocka_unit_test_setup(test_not_allowed, setup),
		cmocka_unit_test_setup(test_peer_dies_mid_message, setup),
		cmocka_unit_test_setup(test_peer_stalls, setup),
		cmocka_unit_test_setup(test_bad_replies, setup),
		cmocka_unit_test_setup(test_connect_errors, setup),
	};

	signal(SIGPIPE, SIG_DFL); /* prove the library never raises it */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
