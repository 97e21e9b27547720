/*
 * ferry-pager against bad input: garbage headers, malformed and lying
 * REGISTERs, wrong descriptors (a pipe instead of a uffd or a memfd, missing
 * ones), overlapping regions, requests for no VM, a peer outside the
 * allow-list, and a VMM killed while faulting. The pager answers ERROR,
 * never crashes, and keeps serving the others.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dataplane/vmm/vmm_io.h"
#include "pager_harness.h"
#include "proto/vmm.h"

static struct pgr P, Q;   /* Q: a second pager with an allow-list that excludes us */

static int setup(void **state)
{
	(void)state;
	pgr_start(&P, NULL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (!pgr_alive(&P))
		pgr_dump_log(&P);
	pgr_cleanup(&Q);   /* in case test_not_allowed failed half-way */
	assert_true(pgr_alive(&P));
	assert_int_equal(pgr_stop(&P, 5000), 0);
	pgr_cleanup(&P);
	return 0;
}

static int raw_connect(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	memcpy(a.sun_path, path, strlen(path) + 1);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

/* Send @p len bytes with @p fds, read one reply; @return its ERROR code, 0 for a non-error, -1 for EOF. */
static int raw_exchange(int fd, const void *msg, size_t len, const int *fds, unsigned nfds)
{
	static uint8_t buf[FERRY_VMMP_MAX_MSG];
	static struct ferry_vmmp_msg m;
	struct iovec iov = { (void *)msg, len };
	int rfds[4], code = 0;
	unsigned rn = 0;
	ssize_t n;

	assert_int_equal(ferry_vmm_io_send(fd, &iov, 1, fds, nfds, ferry_vmm_io_deadline(2000)), 0);
	n = ferry_vmm_io_recv_msg(fd, buf, sizeof(buf), rfds, &rn, 4, ferry_vmm_io_deadline(5000), &code);
	if (n < 0)
		return -1;
	assert_int_equal(ferry_vmmp_decode(buf, (size_t)n, rn, &m), 0);
	return m.hdr.type == FERRY_VMMP_ERROR ? (int)m.u.error.code : 0;
}

static void make_ram(int *memfd, uint8_t **ram, int *uffd, size_t size)
{
	struct ferry_err err = { 0 };

	*memfd = memfd_create("ram", MFD_CLOEXEC);
	assert_true(*memfd >= 0);
	assert_int_equal(ftruncate(*memfd, (off_t)size), 0);
	*ram = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, *memfd, 0);
	assert_true(*ram != MAP_FAILED);
	*uffd = ferry_vmm_uffd_create(O_CLOEXEC | O_NONBLOCK | FERRY_VMM_UFFD_BEST_EFFORT,
				      FERRY_VMM_UFFD_F_MISSING_SHMEM | FERRY_VMM_UFFD_F_EVENT_REMOVE, &err);
	assert_true(*uffd >= 0);
	assert_int_equal(ferry_vmm_uffd_register_range(*uffd, *ram, size, FERRY_VMM_MODE_MISSING, &err), 0);
}

static void test_garbage(void **state)
{
	uint8_t junk[64];
	uint8_t buf[256];
	int fd, len;

	(void)state;
	/* a bad magic: ERROR, then the connection is closed */
	memset(junk, 0x41, sizeof(junk));
	fd = raw_connect(P.sock);
	assert_int_equal(raw_exchange(fd, junk, 24, NULL, 0), FERRY_VMMP_E_BAD_MAGIC);
	assert_int_equal(read(fd, buf, 1), 0);
	close(fd);
	/* a reply type sent as a request, a well-framed bad message: ERROR, the connection lives */
	fd = raw_connect(P.sock);
	len = ferry_vmmp_encode_ok(7, 0, buf, sizeof(buf));
	assert_true(len > 0);
	assert_int_not_equal(raw_exchange(fd, buf, (size_t)len, NULL, 0), 0);
	len = ferry_vmmp_encode_stats(8, buf, sizeof(buf));
	assert_int_equal(raw_exchange(fd, buf, (size_t)len, NULL, 0), 0);   /* global stats, no VM */
	/* requests for a VM that does not exist on this connection */
	len = ferry_vmmp_encode_state_get(9, 0, 100, buf, sizeof(buf));
	assert_int_equal(raw_exchange(fd, buf, (size_t)len, NULL, 0), FERRY_VMMP_E_UNEXPECTED);
	len = ferry_vmmp_encode_unregister(10, buf, sizeof(buf));
	assert_int_equal(raw_exchange(fd, buf, (size_t)len, NULL, 0), FERRY_VMMP_E_UNEXPECTED);
	/* a descriptor with a message that must carry none */
	int p[2];

	assert_int_equal(pipe(p), 0);
	len = ferry_vmmp_encode_stats(11, buf, sizeof(buf));
	assert_int_equal(raw_exchange(fd, buf, (size_t)len, p, 1), FERRY_VMMP_E_FD_MISMATCH);
	close(p[0]);
	close(p[1]);
	close(fd);
}

static void test_bad_register(void **state)
{
	static struct ferry_vmmp_register reg;
	static uint8_t buf[8192];
	int memfd, uffd, fd, len, p[2];
	uint8_t *ram;
	size_t size = 64 * PAGE;
	struct ferry_vmm_conn *c;
	struct ferry_vmm_region r;

	(void)state;
	make_ram(&memfd, &ram, &uffd, size);
	assert_int_equal(pipe(p), 0);
	memset(&reg, 0, sizeof(reg));
	snprintf(reg.vm_id, sizeof(reg.vm_id), "bad-vm");
	reg.region_count = 2;
	reg.fd_count = 2;
	reg.regions[0] = (struct ferry_vmmp_region){ 0, 32 * PAGE, (uintptr_t)ram, 0, PAGE, 1, FERRY_VMMP_MODE_MISSING };
	reg.regions[1] = (struct ferry_vmmp_region){ 32 * PAGE, 32 * PAGE, (uintptr_t)ram + 32 * PAGE, 32 * PAGE, PAGE, 1,
						     FERRY_VMMP_MODE_MISSING };
	len = ferry_vmmp_encode_register(1, &reg, buf, sizeof(buf));
	assert_true(len > 0);

	fd = raw_connect(P.sock);
	/* fd_count says 2, one arrives */
	assert_int_equal(raw_exchange(fd, buf, (size_t)len, &uffd, 1), FERRY_VMMP_E_FD_MISMATCH);
	/* a pipe where the uffd belongs */
	int fds[2] = { p[0], memfd };

	assert_int_equal(raw_exchange(fd, buf, (size_t)len, fds, 2), FERRY_VMMP_E_FD_MISMATCH);
	/* a pipe where the memory file belongs */
	fds[0] = uffd;
	fds[1] = p[1];
	assert_int_equal(raw_exchange(fd, buf, (size_t)len, fds, 2), FERRY_VMMP_E_FD_MISMATCH);
	/* overlapping regions: patch region 1's gpa and hva onto region 0 */
	size_t r1 = FERRY_VMMP_HDR_LEN + 16 + strlen(reg.vm_id) + FERRY_VMMP_REGION_LEN;
	uint8_t patched[8192];

	memcpy(patched, buf, (size_t)len);
	memset(patched + r1, 0, 8);                         /* gpa 0 */
	fds[1] = memfd;
	assert_int_equal(raw_exchange(fd, patched, (size_t)len, fds, 2), FERRY_VMMP_E_OVERLAP);
	/* the same file under two descriptor slots, regions aliasing the same bytes */
	{
		static struct ferry_vmmp_register alias;
		int afds[3] = { uffd, memfd, dup(memfd) };
		int alen;

		alias = reg;
		alias.fd_count = 3;
		alias.regions[1].fd_slot = 2;
		alias.regions[1].offset = 0;
		alen = ferry_vmmp_encode_register(6, &alias, buf, sizeof(buf));
		assert_true(alen > 0);
		assert_int_equal(raw_exchange(fd, buf, (size_t)alen, afds, 3), FERRY_VMMP_E_OVERLAP);
		close(afds[2]);
		len = ferry_vmmp_encode_register(1, &reg, buf, sizeof(buf));
	}
	/* truncated payload (lying length): the header says more than comes -> the pager must not hang */
	memcpy(patched, buf, (size_t)len);
	patched[FERRY_VMMP_HDR_LEN] = 60;                   /* region_count 60, payload too short */
	assert_true(raw_exchange(fd, patched, (size_t)len, fds, 2) > 0);
	/* a region beyond the end of its memfd */
	reg.regions[1].offset = 1u << 30;
	len = ferry_vmmp_encode_register(2, &reg, buf, sizeof(buf));
	assert_int_equal(raw_exchange(fd, buf, (size_t)len, fds, 2), FERRY_VMMP_E_OUT_OF_RANGE);
	/* 2 MiB pages are not served */
	reg.regions[1].offset = 32 * PAGE;
	reg.region_count = 1;
	reg.regions[0].size = 2u << 20;
	reg.regions[0].page_size = 2u << 20;
	reg.regions[0].hva = 0x7f0000000000ull;
	len = ferry_vmmp_encode_register(3, &reg, buf, sizeof(buf));
	assert_true(len > 0);
	assert_true(raw_exchange(fd, buf, (size_t)len, fds, 2) > 0);
	/* after all that, a good registration on the same connection works */
	reg.regions[0] = (struct ferry_vmmp_region){ 0, size, (uintptr_t)ram, 0, PAGE, 1, FERRY_VMMP_MODE_MISSING };
	len = ferry_vmmp_encode_register(4, &reg, buf, sizeof(buf));
	assert_int_equal(raw_exchange(fd, buf, (size_t)len, fds, 2), 0);
	assert_int_equal(ram[5 * PAGE], 0);   /* served */
	/* a second REGISTER on the same connection */
	assert_int_equal(raw_exchange(fd, buf, (size_t)len, fds, 2), FERRY_VMMP_E_UNEXPECTED);
	/* the same uffd from another connection, under another id */
	int fd2 = raw_connect(P.sock);

	snprintf(reg.vm_id, sizeof(reg.vm_id), "same-uffd");
	len = ferry_vmmp_encode_register(5, &reg, buf, sizeof(buf));
	assert_int_equal(raw_exchange(fd2, buf, (size_t)len, fds, 2), FERRY_VMMP_E_EXISTS);
	close(fd2);
	close(fd);

	/* libferry-vmm with a pipe as its uffd */
	c = ferry_vmm_connect(P.sock);
	assert_non_null(c);
	r = (struct ferry_vmm_region){ .gpa = 0, .size = size, .hva = (uintptr_t)ram, .page_size = PAGE };
	assert_true(ferry_vmm_register(c, "pipe-vm", &r, 1, p[0], memfd) < 0);
	assert_int_equal(ferry_vmm_remote_code(c), FERRY_VMMP_E_FD_MISMATCH);
	ferry_vmm_close(c);
	close(p[0]);
	close(p[1]);
	close(uffd);
	munmap(ram, size);
	close(memfd);
}

static void test_not_allowed(void **state)
{
	struct pgr *q = &Q;
	static const char *const args[] = { "--allow", "uid:12345, gid:12345", NULL };
	struct ferry_vmm_conn *c;
	struct ferry_vmm_region r;
	int memfd, uffd;
	uint8_t *ram;

	(void)state;
	pgr_start(q, args);
	make_ram(&memfd, &ram, &uffd, 16 * PAGE);
	c = ferry_vmm_connect(q->sock);
	assert_non_null(c);
	r = (struct ferry_vmm_region){ .gpa = 0, .size = 16 * PAGE, .hva = (uintptr_t)ram, .page_size = PAGE };
	assert_int_equal(ferry_vmm_register(c, "intruder", &r, 1, uffd, memfd), -EACCES);
	assert_int_equal(ferry_vmm_remote_code(c), FERRY_VMMP_E_NOT_ALLOWED);
	ferry_vmm_close(c);
	assert_true(pgr_log_contains(q, "refused: not in the allow-list"));
	assert_true(pgr_alive(q));
	assert_int_equal(pgr_stop(q, 5000), 0);
	assert_true(pgr_log_contains(q, "peers_refused="));
	assert_false(pgr_log_contains(q, "peers_refused=0")); /* the readiness probe is refused too */
	pgr_cleanup(q);
	close(uffd);
	munmap(ram, 16 * PAGE);
	close(memfd);
}

/* A VMM that sends half a message does not hold up anyone else; the rest completes it. */
static void test_slow_vmm(void **state)
{
	struct tvm other;
	uint8_t buf[64];
	static uint8_t reply[FERRY_VMMP_MAX_MSG];
	int fd, len, rfds[2], code = 0;
	unsigned rn = 0;
	uint64_t t0;

	(void)state;
	tvm_create(&other, P.sock, "busy", 256, 0, NULL);
	fd = raw_connect(P.sock);
	len = ferry_vmmp_encode_stats(42, buf, sizeof(buf));
	assert_int_equal(write(fd, buf, 10), 10);
	sleep_ms(50);
	t0 = now_ms();
	for (size_t i = 0; i < 256; i++)
		assert_true(tvm_verify(&other, i));   /* 256 faults served meanwhile */
	assert_true(now_ms() - t0 < 400);
	assert_int_equal(write(fd, buf + 10, (size_t)len - 10), len - 10);
	ssize_t got = ferry_vmm_io_recv_msg(fd, reply, sizeof(reply), rfds, &rn, 2, ferry_vmm_io_deadline(5000), &code);

	if (got <= 0)
		fail_msg("reply: %zd (code %d)", got, code);
	close(fd);
	tvm_destroy(&other);
}

/* A child VMM that faults as fast as it can (zero faults and REMOVE events) until it is killed. */
static void child_vmm(const char *sock)
{
	struct tvm v;

	tvm_create(&v, sock, "doomed-vm", 256, 0, NULL);
	for (unsigned k = 0;; k++) {
		volatile uint8_t *ram = v.ram;

		(void)ram[(k * 7 % 256) * PAGE];
		if (k % 64 == 0)
			madvise(v.ram, 256 * PAGE, MADV_DONTNEED);
	}
}

static bool odd(size_t i) { return i % 2; }

static void test_vmm_killed(void **state)
{
	struct tvm other;
	pid_t pid;
	int status;
	uint64_t deadline;

	(void)state;
	tvm_create(&other, P.sock, "survivor", 64, 0, odd);
	for (int round = 0; round < 3; round++) {
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			child_vmm(P.sock);
			_exit(0);
		}
		sleep_ms(150 + 50 * (unsigned)round);
		kill(pid, SIGKILL);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		/* the pager notices the hang-up and drops the VM; the id becomes free again */
		deadline = now_ms() + 5000;
		while (!pgr_log_contains(&P, "doomed-vm") && now_ms() < deadline)
			sleep_ms(10);
		for (size_t i = 0; i < 64; i++) {
			tvm_write(&other, i);
			assert_true(tvm_verify(&other, i));
		}
	}
	deadline = now_ms() + 5000;
	while (now_ms() < deadline) {
		struct ferry_vmm_stat st[64];
		int n = ferry_vmm_stats(other.c, st, 64);

		assert_true(n > 0);
		sleep_ms(20);
		if (pgr_log_contains(&P, "vm doomed-vm") && pgr_alive(&P))
			break;
	}
	assert_true(pgr_log_contains(&P, "torn down: the VMM closed the connection"));
	assert_true(pgr_alive(&P));
	assert_int_equal(tvm_stat(&other, "fault_errors"), 0);
	tvm_destroy(&other);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_bad_register),
		cmocka_unit_test(test_not_allowed),
		cmocka_unit_test(test_vmm_killed),
		cmocka_unit_test(test_slow_vmm),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, setup, teardown);
}
