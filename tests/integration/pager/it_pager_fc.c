/*
 * The Firecracker UFFD handshake, from a client that does what Firecracker
 * does when it restores a snapshot with the Uffd backend: anonymous
 * MAP_PRIVATE guest memory, userfaultfd(2) + UFFDIO_API + UFFDIO_REGISTER
 * (MISSING), connect to the socket and send the region JSON (serde_json's
 * compact form, Firecracker >= 1.12 field set) with the uffd in SCM_RIGHTS,
 * no reply expected. Served from a sparse snapshot memory file: data pages
 * come from the file, holes are zero pages, an MADV_DONTNEED range reads as
 * zeros afterwards. A handshake from a process that then exits is dropped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pager_harness.h"

#define NPAGES 256u
#define HALF (NPAGES / 2)

static struct pgr P;
static char snap_path[64];

static bool in_snapshot(size_t i) { return i % 3 != 0; }

static int setup(void **state)
{
	static const char *args[] = { "--fc-socket", "@FC", "--snapshot-file", snap_path, NULL };
	uint8_t page[PAGE];
	int fd;

	(void)state;
	snprintf(snap_path, sizeof(snap_path), "/tmp/ferry-snap-XXXXXX");
	fd = mkstemp(snap_path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, NPAGES * PAGE), 0);
	for (size_t i = 0; i < NPAGES; i++) {
		if (!in_snapshot(i))
			continue;   /* a hole: never written by the guest */
		tvm_fill(page, i, 1);
		assert_int_equal(pwrite(fd, page, PAGE, (off_t)(i * PAGE)), PAGE);
	}
	close(fd);
	pgr_start(&P, args);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (!pgr_alive(&P))
		pgr_dump_log(&P);
	assert_int_equal(pgr_stop(&P, 5000), 0);
	pgr_cleanup(&P);
	unlink(snap_path);
	return 0;
}

struct fc_vm {
	uint8_t *mem[2];
	int uffd, sock;
};

/* What Firecracker does: two guest regions, back to back in the snapshot file. */
static void fc_restore(struct fc_vm *v, const char *sock_path)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE };
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	char json[512], cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov;
	struct msghdr mh = { 0 };
	struct cmsghdr *cm;
	int len;

	for (int r = 0; r < 2; r++) {
		v->mem[r] = mmap(NULL, HALF * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
				 -1, 0);
		assert_true(v->mem[r] != MAP_FAILED);
	}
	v->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	assert_true(v->uffd >= 0);
	assert_int_equal(ioctl(v->uffd, UFFDIO_API, &api), 0);
	for (int r = 0; r < 2; r++) {
		struct uffdio_register reg = { .range = { (uintptr_t)v->mem[r], HALF * PAGE },
					       .mode = UFFDIO_REGISTER_MODE_MISSING };

		assert_int_equal(ioctl(v->uffd, UFFDIO_REGISTER, &reg), 0);
	}
	len = snprintf(json, sizeof(json),
		       "[{\"base_host_virt_addr\":%llu,\"size\":%u,\"offset\":0,\"page_size\":4096,"
		       "\"page_size_kib\":4096},{\"base_host_virt_addr\":%llu,\"size\":%u,\"offset\":%u,"
		       "\"page_size\":4096,\"page_size_kib\":4096}]",
		       (unsigned long long)(uintptr_t)v->mem[0], HALF * PAGE, (unsigned long long)(uintptr_t)v->mem[1],
		       HALF * PAGE, HALF * PAGE);
	v->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(v->sock >= 0);
	memcpy(a.sun_path, sock_path, strlen(sock_path) + 1);
	assert_int_equal(connect(v->sock, (struct sockaddr *)&a, sizeof(a)), 0);
	iov = (struct iovec){ json, (size_t)len };
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cbuf;
	mh.msg_controllen = sizeof(cbuf);
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &v->uffd, sizeof(int));
	assert_int_equal(sendmsg(v->sock, &mh, MSG_NOSIGNAL), len);
}

static uint8_t *page_addr(struct fc_vm *v, size_t i)
{
	return v->mem[i / HALF] + (i % HALF) * PAGE;
}

static void test_restore(void **state)
{
	struct fc_vm v;

	(void)state;
	fc_restore(&v, P.fc_sock);
	for (size_t i = 0; i < NPAGES; i++)
		assert_int_equal(tvm_check(page_addr(&v, i), i, 1), in_snapshot(i) ? 1 : 0);
	/* the guest balloon frees a range: REMOVE, then zeros */
	assert_int_equal(madvise(page_addr(&v, 10), 20 * PAGE, MADV_DONTNEED), 0);
	for (size_t i = 10; i < 30; i++)
		assert_int_equal(tvm_check(page_addr(&v, i), i, 1), 0);
	assert_int_equal(tvm_check(page_addr(&v, 31), 31, 1), 1);
	/* writes stick (MAP_PRIVATE anonymous memory, now populated) */
	tvm_fill(page_addr(&v, 200), 200, 9);
	assert_int_equal(tvm_check(page_addr(&v, 200), 200, 9), 1);
	assert_true(pgr_log_contains(&P, "registered: 2 regions, 256 pages"));
	close(v.sock);
	close(v.uffd);
	for (int r = 0; r < 2; r++)
		munmap(v.mem[r], HALF * PAGE);
}

static void test_bad_handshakes(void **state)
{
	static const char *const bad[] = {
		"{\"not\":\"an array\"}",
		"[{\"base_host_virt_addr\":4096,\"size\":4096}]",          /* no offset */
		"[{\"base_host_virt_addr\":4096,\"size\":-4096,\"offset\":0}]",
		"[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"is_guest_memfd\":true}]",
		"[[[[",
	};

	(void)state;
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		struct sockaddr_un a = { .sun_family = AF_UNIX };
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		char c;

		memcpy(a.sun_path, P.fc_sock, strlen(P.fc_sock) + 1);
		assert_int_equal(connect(s, (struct sockaddr *)&a, sizeof(a)), 0);
		assert_true(send(s, bad[k], strlen(bad[k]), MSG_NOSIGNAL) > 0);
		shutdown(s, SHUT_WR);
		/* the pager closes: a read sees EOF */
		assert_int_equal(read(s, &c, 1), 0);
		close(s);
	}
	assert_true(pgr_log_contains(&P, "Firecracker handshake from pid"));
	assert_true(pgr_alive(&P));
}

static void test_firecracker_exits(void **state)
{
	pid_t pid;
	int status;
	uint64_t deadline;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct fc_vm v;

		fc_restore(&v, P.fc_sock);
		for (size_t i = 0; i < NPAGES; i++)
			if (tvm_check(page_addr(&v, i), i, 1) != (in_snapshot(i) ? 1 : 0))
				_exit(3);
		_exit(0);   /* socket and uffd stay open until the exit */
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	deadline = now_ms() + 5000;
	while (!pgr_log_contains(&P, "the VMM process exited") && now_ms() < deadline)
		sleep_ms(10);
	assert_true(pgr_log_contains(&P, "the VMM process exited"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_restore),
		cmocka_unit_test(test_bad_handshakes),
		cmocka_unit_test(test_firecracker_exits),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, setup, teardown);
}
