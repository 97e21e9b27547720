/*
 * migtool: drives and checks split migrations in tests (what ferryd will do
 * through migrate_ctl.h), and plays the destination shell VM.
 *
 *   migtool prepare CTL VM BUDGET [HOST:PORT,...]   -> prints "HOST PORT TOKENHEX"
 *   migtool start CTL VM HOST PORT TOKENHEX MODE
 *   migtool wait CTL VM TIMEOUT_S [PHASE]           -> waits for done/failed/aborted (or PHASE);
 *                                                     prints the progress; exit 0 iff it reached
 *                                                     PHASE (default done)
 *   migtool status CTL VM | abort CTL VM
 *   migtool probe CTL HOST PORT SECRET_FILE
 *     Bad input on both new sockets must get an ERROR (and be counted):
 *     garbage and an unknown VM on the control socket, garbage, a HELLO for
 *     no prepared migration and a wrong proof on the stream listener; then
 *     the pager's STATS must count them. Exit 0 when every answer is right.
 *   migtool shell PAGER_SOCK VM MEM CTL SOURCE_PID [WORKLOAD_S]
 *     A destination shell: a memfd + uffd (missing, wp) registered with the
 *     pager as VM; waits until the migration to it is done, then reads EVERY
 *     page through its own mapping (so pages on sub-hosts and pages still at
 *     the source are faulted in by the pager) and compares each with the
 *     source VM's memory file, taken from /proc/SOURCE_PID/fd (the source is
 *     frozen at that point). Then a workload of WORKLOAD_S seconds writes
 *     and re-reads pages, checked, with remote paging going on. Exit 0 all
 *     equal, 3 a mismatch, 1 an error.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "dataplane/common/auth.h"
#include "dataplane/migrate/migrate_ctl.h"
#include "proto/migrate.h"
#include "dataplane/vmm/ferry_vmm.h"

#define PAGE 4096u

static int die(const char *what, const struct ferry_err *err)
{
	fprintf(stderr, "migtool: %s: %s\n", what, err ? err->msg : strerror(errno));
	return 1;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void print_progress(const char *vm, const struct mig_progress *p)
{
	printf("vm=%s phase=%s round=%u total=%" PRIu64 " sent=%" PRIu64 " unused_skipped=%" PRIu64
	       " remaining=%" PRIu64 " resent=%" PRIu64 " to_subhosts=%" PRIu64 " bytes=%" PRIu64
	       " postcopy_faults=%" PRIu64 " downtime_ms=%.3f total_ms=%.3f gen=%u error=\"%s\"\n",
	       vm, mig_phase_name(p->phase), p->round, p->pages_total, p->pages_sent, p->pages_skipped_unused,
	       p->pages_remaining, p->pages_resent, p->pages_to_subhosts, p->bytes_sent, p->postcopy_faults,
	       p->downtime_ns / 1e6, p->total_ns / 1e6, p->generation, p->error);
	fflush(stdout);
}

static int hexbytes(const char *s, uint8_t *out, size_t n)
{
	if (strlen(s) != 2 * n)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = (uint8_t)v;
	}
	return 0;
}

/* @p path: reconnect there after a timed-out STATUS (NULL: give up at once). */
static int wait_phase(struct mig_ctl **cp, const char *path, const char *vm, double timeout, enum mig_phase want,
		      bool quiet, struct mig_progress *p)
{
	struct mig_ctl *c = *cp;
	struct ferry_err err = { 0 };
	double end = now_s() + timeout;

	for (;;) {
		if (mig_ctl_status(c, vm, p, &err)) {
			/* The pager may be inside a bounded synchronous step (a dead peer's I/O
			 * timeout): ask again, on a new connection (the late reply must not be
			 * taken for the next one's), until our own deadline. */
			if (err.code == -ETIMEDOUT && path && now_s() < end) {
				mig_ctl_close(c);
				*cp = c = NULL;
				memset(&err, 0, sizeof(err));
				if (mig_ctl_connect(path, cp, &err))
					return die("reconnect", &err);
				c = *cp;
				continue;
			}
			return die("status", &err);
		}
		if (p->phase == want || (p->phase >= MIG_PH_DONE && want <= MIG_PH_DONE) ||
		    (want > MIG_PH_DONE && p->phase >= MIG_PH_DONE)) {
			if (!quiet)
				print_progress(vm, p);
			return p->phase == want ? 0 : 2;
		}
		if (now_s() > end) {
			if (!quiet)
				print_progress(vm, p);
			fprintf(stderr, "migtool: %s: still %s after %.0f s\n", vm, mig_phase_name(p->phase), timeout);
			return 2;
		}
		usleep(20000);
	}
}

static int find_memfd(int pid)
{
	char dir[64], path[320], link[256];
	struct dirent *de;
	DIR *d;
	int fd = -1;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", pid);
	d = opendir(dir);
	if (!d)
		return -1;
	while ((de = readdir(d))) {
		ssize_t n;

		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = '\0';
		if (strncmp(link, "/memfd:", 7) == 0) {
			fd = open(path, O_RDONLY | O_CLOEXEC);
			break;
		}
	}
	closedir(d);
	return fd;
}

static uint64_t xs(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static int shell(int argc, char **argv)
{
	const char *sock = argv[0], *vm = argv[1], *ctl = argv[3];
	uint64_t mem = strtoull(argv[2], NULL, 0) << 20;   /* MiB */
	int src_pid = atoi(argv[4]);
	double workload = argc > 5 ? atof(argv[5]) : 0;
	struct ferry_err err = { 0 };
	struct ferry_vmm_conn *conn;
	struct mig_progress p;
	struct mig_ctl *c;
	uint8_t *ram, buf[PAGE];
	uint64_t mismatches = 0, nonzero = 0, npages = mem / PAGE;
	int memfd, uffd, srcfd, rc;

	memfd = memfd_create("migtool-shell", MFD_CLOEXEC);
	if (memfd < 0 || ftruncate(memfd, (off_t)mem) < 0)
		return die("memfd", NULL);
	ram = mmap(NULL, mem, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (ram == MAP_FAILED)
		return die("mmap", NULL);
	uffd = ferry_vmm_uffd_create(O_CLOEXEC | O_NONBLOCK | FERRY_VMM_UFFD_BEST_EFFORT,
				     FERRY_VMM_UFFD_F_RECOMMENDED & ~FERRY_VMM_UFFD_F_WP_ASYNC, &err);
	if (uffd < 0)
		return die("userfaultfd", &err);
	if (ferry_vmm_uffd_register_range(uffd, ram, mem, FERRY_VMM_MODE_MISSING | FERRY_VMM_MODE_WP, &err) < 0)
		return die("uffd register", &err);
	conn = ferry_vmm_connect(sock);
	if (!conn)
		return die("connect pager", NULL);
	struct ferry_vmm_region r = { .gpa = 0, .size = mem, .hva = (uintptr_t)ram, .page_size = PAGE,
				      .modes = FERRY_VMM_MODE_MISSING | FERRY_VMM_MODE_WP, .mem_fd = memfd };

	if (ferry_vmm_register(conn, vm, &r, 1, uffd, memfd) < 0) {
		fprintf(stderr, "migtool: register: %s\n", ferry_vmm_errmsg(conn));
		return 1;
	}
	printf("shell registered\n");
	fflush(stdout);
	if (mig_ctl_connect(ctl, &c, &err))
		return die("control socket", &err);
	/* Wait for the incoming migration to exist, then for the VM to run here. */
	for (double end = now_s() + 60;;) {
		rc = mig_ctl_status(c, vm, &p, &err);
		if (rc == 0 && p.phase >= MIG_PH_POSTCOPY)
			break;
		if (now_s() > end) {
			fprintf(stderr, "migtool shell: the VM never ran here (%s)\n", rc ? err.msg : mig_phase_name(p.phase));
			return 1;
		}
		usleep(20000);
	}
	if (p.phase != MIG_PH_POSTCOPY && p.phase != MIG_PH_DONE) {
		print_progress(vm, &p);
		fprintf(stderr, "migtool shell: migration ended %s\n", mig_phase_name(p.phase));
		return 2;
	}
	/* The VM "runs": every page is read through the mapping (faults: sub-hosts, source). */
	srcfd = find_memfd(src_pid);
	if (srcfd < 0) {
		fprintf(stderr, "migtool shell: no memfd in /proc/%d/fd\n", src_pid);
		return 1;
	}
	double t0 = now_s();

	for (uint64_t i = 0; i < npages; i++) {
		ssize_t got = pread(srcfd, buf, PAGE, (off_t)(i * PAGE));

		if (got != (ssize_t)PAGE)
			return die("pread source", NULL);
		if (memcmp(ram + i * PAGE, buf, PAGE) != 0) {
			if (mismatches < 5)
				fprintf(stderr, "migtool shell: page %" PRIu64 " differs from the source\n", i);
			mismatches++;
		}
		for (unsigned k = 0; k < PAGE; k += 8)
			if (*(uint64_t *)(buf + k)) {
				nonzero++;
				break;
			}
	}
	printf("verify: pages=%" PRIu64 " nonzero=%" PRIu64 " mismatches=%" PRIu64 " read_s=%.3f\n", npages, nonzero,
	       mismatches, now_s() - t0);
	fflush(stdout);
	if (mismatches || nonzero == 0)
		return 3;
	/* Keep running here: writes and checked reads over all of memory (remote paging under the budget). */
	if (workload > 0) {
		uint64_t seed = 0x9e3779b97f4a7c15ull, ops = 0, bad = 0;
		uint32_t *ver = calloc(npages, sizeof(uint32_t));
		double end;

		if (!ver)
			return die("calloc", NULL);
		for (uint64_t i = 0; i < npages; i++)
			ver[i] = *(uint32_t *)(ram + i * PAGE);   /* whatever is there: remember word 0 */
		end = now_s() + workload;
		while (now_s() < end) {
			uint64_t i = xs(&seed) % npages;

			if (xs(&seed) & 1) {
				ver[i] = (uint32_t)xs(&seed);
				*(uint32_t *)(ram + i * PAGE) = ver[i];
			} else if (*(uint32_t *)(ram + i * PAGE) != ver[i]) {
				bad++;
			}
			ops++;
		}
		for (uint64_t i = 0; i < npages; i++)
			if (*(uint32_t *)(ram + i * PAGE) != ver[i])
				bad++;
		printf("workload: ops=%" PRIu64 " bad=%" PRIu64 "\n", ops, bad);
		fflush(stdout);
		free(ver);
		if (bad)
			return 3;
	}
	rc = wait_phase(&c, NULL, vm, 30, MIG_PH_DONE, false, &p);
	mig_ctl_close(c);
	ferry_vmm_unregister(conn);
	ferry_vmm_close(conn);
	return rc ? 2 : 0;
}

static int command(struct mig_ctl **cp, int argc, char **argv);

/* ---------------------------------------------------------------- probe */

static uint8_t pbuf[MIGP_MAX_MSG];

static int rd_all(int fd, uint8_t *p, size_t n)
{
	while (n) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		ssize_t r;

		if (poll(&pf, 1, 5000) <= 0)
			return -1;
		r = recv(fd, p, n, 0);
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* Read one reply; @return its type, or -1 (closed / timeout / undecodable). */
static int reply(int fd, struct migp_msg *m)
{
	struct migp_hdr h;

	if (rd_all(fd, pbuf, MIGP_HDR_LEN) || migp_hdr_decode(pbuf, MIGP_HDR_LEN, &h) ||
	    rd_all(fd, pbuf + MIGP_HDR_LEN, h.payload_len) || migp_decode(pbuf, MIGP_HDR_LEN + h.payload_len, m))
		return -1;
	return m->hdr.type;
}

static int unix_conn(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		return -1;
	return fd;
}

static int tcp_conn(const char *host, const char *port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	int fd;

	if (getaddrinfo(host, port, &hints, &ai))
		return -1;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	return fd;
}

static int check(bool ok, const char *what)
{
	printf("%s: %s\n", ok ? "ok" : "WRONG", what);
	return ok ? 0 : 1;
}

static int probe(char **argv)
{
	const char *ctl = argv[0], *host = argv[1], *port = argv[2];
	static struct migp_msg m;
	struct ferry_secret secret;
	struct ferry_err err = { 0 };
	uint8_t nonce[32], mac[32];
	int fd, bad = 0, n;

	if (ferry_auth_init(&err) || ferry_secret_load(argv[3], &secret, &err))
		return die("secret", &err);
	/* control socket: garbage -> ERROR, connection closed */
	fd = unix_conn(ctl);
	memset(pbuf, 0x41, 64);
	bad += check(fd >= 0 && send(fd, pbuf, 64, 0) == 64 && reply(fd, &m) == MIGP_ERROR &&
			     m.u.error.code == MIG_E_BAD_MAGIC, "control socket: garbage gets ERROR(bad magic)");
	close(fd);
	/* control socket: a lying length -> ERROR */
	fd = unix_conn(ctl);
	n = migp_encode_status(1, "vm-none", pbuf, sizeof(pbuf));
	pbuf[MIGP_HDR_LEN] = 60;   /* id_len lies */
	bad += check(fd >= 0 && send(fd, pbuf, (size_t)n, 0) == n && reply(fd, &m) == MIGP_ERROR,
		     "control socket: STATUS with a lying id length gets ERROR");
	close(fd);
	/* control socket: unknown VM -> ERROR(UNKNOWN_VM), connection stays */
	fd = unix_conn(ctl);
	n = migp_encode_status(2, "vm-none", pbuf, sizeof(pbuf));
	bad += check(fd >= 0 && send(fd, pbuf, (size_t)n, 0) == n && reply(fd, &m) == MIGP_ERROR &&
			     m.u.error.code == MIG_E_UNKNOWN_VM, "control socket: STATUS of an unknown VM gets ERROR(unknown VM)");
	n = migp_encode_abort(3, "vm-none", pbuf, sizeof(pbuf));
	bad += check(send(fd, pbuf, (size_t)n, 0) == n && reply(fd, &m) == MIGP_ERROR,
		     "control socket: ABORT of an unknown VM gets ERROR on the same connection");
	close(fd);
	/* stream: garbage -> ERROR */
	fd = tcp_conn(host, port);
	memset(pbuf, 0x42, 64);
	bad += check(fd >= 0 && send(fd, pbuf, 64, 0) == 64 && reply(fd, &m) == MIGP_ERROR,
		     "stream: garbage gets ERROR");
	close(fd);
	/* stream: HELLO for no prepared migration -> ERROR(UNKNOWN_VM) */
	fd = tcp_conn(host, port);
	n = migp_encode_hello(1, "vm-none", pbuf, sizeof(pbuf));
	bad += check(fd >= 0 && send(fd, pbuf, (size_t)n, 0) == n && reply(fd, &m) == MIGP_ERROR &&
			     m.u.error.code == MIG_E_UNKNOWN_VM, "stream: HELLO for no prepared migration gets ERROR");
	close(fd);
	/* stream: a prepared migration, but a proof without the token -> ERROR(AUTH_FAILED) */
	{
		struct mig_ctl *c;
		struct mig_endpoint ep;

		if (mig_ctl_connect(ctl, &c, &err) || mig_ctl_prepare_incoming(c, "vm-probe", 0, NULL, 0, &ep, &err))
			return die("prepare vm-probe", &err);
		fd = tcp_conn(host, port);
		n = migp_encode_hello(1, "vm-probe", pbuf, sizeof(pbuf));
		if (fd < 0 || send(fd, pbuf, (size_t)n, 0) != n || reply(fd, &m) != MIGP_CHALLENGE) {
			bad += check(false, "stream: CHALLENGE for a prepared migration");
		} else {
			ferry_auth_nonce(nonce);
			/* right secret, wrong name: no token */
			ferry_auth_mac(&secret, "ferry-mig-c", m.u.challenge.nonce, nonce, "vm-probe", 8, mac);
			n = migp_encode_auth(2, nonce, mac, pbuf, sizeof(pbuf));
			bad += check(send(fd, pbuf, (size_t)n, 0) == n && reply(fd, &m) == MIGP_ERROR &&
					     m.u.error.code == MIG_E_AUTH_FAILED,
				     "stream: a proof without the migration's token gets ERROR(authentication failed)");
		}
		close(fd);
		bad += check(mig_ctl_abort(c, "vm-probe", &err) == 0, "control: ABORT of the prepared migration");
		mig_ctl_close(c);
	}
	/* the counters */
	fd = unix_conn(ctl);
	n = migp_encode_stats(9, pbuf, sizeof(pbuf));
	if (fd < 0 || send(fd, pbuf, (size_t)n, 0) != n || reply(fd, &m) != MIGP_STATS_OK) {
		bad += check(false, "STATS");
	} else {
		uint64_t badm = 0, authf = 0;

		for (uint16_t i = 0; i < m.u.stats_ok.count; i++) {
			if (strcmp(m.u.stats_ok.stats[i].name, "bad_messages") == 0)
				badm = m.u.stats_ok.stats[i].value;
			if (strcmp(m.u.stats_ok.stats[i].name, "auth_failures") == 0)
				authf = m.u.stats_ok.stats[i].value;
		}
		printf("stats: bad_messages=%" PRIu64 " auth_failures=%" PRIu64 "\n", badm, authf);
		bad += check(badm >= 4 && authf >= 1, "the pager counted the bad messages and the failed proof");
	}
	close(fd);
	ferry_secret_wipe(&secret);
	return bad ? 3 : 0;
}

int main(int argc, char **argv)
{
	struct ferry_err err = { 0 };
	struct mig_ctl *c;
	int rc;

	if (argc < 2) {
		fprintf(stderr, "usage: see the comment at the top of migtool.c\n");
		return 2;
	}
	if (strcmp(argv[1], "probe") == 0)
		return argc < 6 ? 2 : probe(argv + 2);
	if (strcmp(argv[1], "shell") == 0) {
		if (argc < 7)
			return 2;
		return shell(argc - 2, argv + 2);
	}
	if (argc < 4)
		return 2;
	if (mig_ctl_connect(argv[2], &c, &err))
		return die("control socket", &err);
	rc = command(&c, argc, argv);
	if (c)
		mig_ctl_close(c);
	return rc;
}

static int command(struct mig_ctl **cp, int argc, char **argv)
{
	struct mig_ctl *c = *cp;
	struct ferry_err err = { 0 };
	struct mig_progress p;
	int rc;

	if (strcmp(argv[1], "prepare") == 0 && argc >= 5) {
		struct mig_subhost subs[MIG_SUBHOSTS_MAX];
		struct mig_endpoint ep;
		unsigned n = 0;

		if (argc >= 6) {
			char *list = strdup(argv[5]), *save = NULL;

			for (char *t = strtok_r(list, ",", &save); t && n < MIG_SUBHOSTS_MAX; t = strtok_r(NULL, ",", &save)) {
				char *colon = strrchr(t, ':');

				if (!colon)
					return 2;
				*colon = '\0';
				snprintf(subs[n].host, sizeof(subs[n].host), "%s", t);
				subs[n++].port = (uint16_t)atoi(colon + 1);
			}
			free(list);
		}
		if (mig_ctl_prepare_incoming(c, argv[3], strtoull(argv[4], NULL, 0) << 20, subs, n, &ep, &err))
			return die("prepare", &err);
		printf("%s %u ", ep.host, ep.port);
		for (unsigned i = 0; i < MIG_TOKEN_LEN; i++)
			printf("%02x", ep.token[i]);
		printf("\n");
		return 0;
	}
	if (strcmp(argv[1], "start") == 0 && argc >= 8) {
		struct mig_endpoint ep = { .port = (uint16_t)atoi(argv[5]) };
		enum mig_mode mode;

		snprintf(ep.host, sizeof(ep.host), "%s", argv[4]);
		if (hexbytes(argv[6], ep.token, MIG_TOKEN_LEN) || mig_mode_parse(argv[7], &mode))
			return 2;
		if (mig_ctl_start(c, argv[3], &ep, mode, &err))
			return die("start", &err);
		return 0;
	}
	if (strcmp(argv[1], "wait") == 0 && argc >= 5) {
		enum mig_phase want = MIG_PH_DONE;

		if (argc >= 6) {
			for (int ph = MIG_PH_IDLE; ph <= MIG_PH_ABORTED; ph++)
				if (strcmp(argv[5], mig_phase_name((enum mig_phase)ph)) == 0)
					want = (enum mig_phase)ph;
		}
		rc = wait_phase(cp, argv[2], argv[3], atof(argv[4]), want, false, &p);
		return rc;
	}
	if (strcmp(argv[1], "status") == 0) {
		if (mig_ctl_status(c, argv[3], &p, &err))
			return die("status", &err);
		print_progress(argv[3], &p);
		return 0;
	}
	if (strcmp(argv[1], "abort") == 0) {
		if (mig_ctl_abort(c, argv[3], &err))
			return die("abort", &err);
		return 0;
	}
	return 2;
}
