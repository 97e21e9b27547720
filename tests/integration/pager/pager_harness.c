#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "pager_harness.h"
#include "memsrv_harness.h"
#include "proc_harness.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define READY_TIMEOUT_MS 15000

uint64_t now_ms(void)
{
	return proc_now_ms();
}

void sleep_ms(unsigned ms)
{
	proc_sleep_ms(ms);
}

static bool can_connect(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (strlen(path) >= sizeof(a.sun_path))
		return false;
	memcpy(a.sun_path, path, strlen(path) + 1);
	ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

static bool sock_accepts(void *path)
{
	return can_connect(path);
}

bool pgr_alive(struct pgr *p)
{
	return !proc_reaped(&p->pid, &p->status);
}

void pgr_start(struct pgr *p, const char *const *args)
{
	const char *argv[64];
	int n = 0;
	bool has_allow = false, has_sock = false, has_servers = false, has_transport = false;
	char allow[32];

	memset(p, 0, sizeof(*p));
	proc_make_dir(p->dir, sizeof(p->dir), "ferry-pgr");
	snprintf(p->sock, sizeof(p->sock), "%s/pager.sock", p->dir);
	snprintf(p->fc_sock, sizeof(p->fc_sock), "%s/fc.sock", p->dir);
	snprintf(p->log, sizeof(p->log), "%s/pager.log", p->dir);
	snprintf(allow, sizeof(allow), "uid:%u", (unsigned)getuid());
	argv[n++] = "ferry-pager";
	for (int i = 0; args && args[i]; i++) {
		if (strcmp(args[i], "--allow") == 0)
			has_allow = true;
		if (strcmp(args[i], "--socket") == 0)
			has_sock = true;
		if (strcmp(args[i], "--servers") == 0)
			has_servers = true;
		if (strcmp(args[i], "--transport") == 0)
			has_transport = true;
		argv[n++] = strcmp(args[i], "@FC") == 0 ? p->fc_sock : args[i];
	}
	if (!has_allow) {
		argv[n++] = "--allow";
		argv[n++] = allow;
	}
	if (!has_sock) {
		argv[n++] = "--socket";
		argv[n++] = p->sock;
	}
	/* a pager with memory servers talks to them over the tests' transport (FERRY_TEST_TRANSPORT) */
	if (has_servers && !has_transport) {
		argv[n++] = "--transport";
		argv[n++] = fx_kind_name(msrv_transport());
	}
	argv[n++] = "--log-level";
	argv[n++] = "debug";
	argv[n] = NULL;

	/* A test that crashes must not leave its pager behind (SIGTERM on our death). */
	p->pid = proc_spawn(PAGER_BIN, (char **)argv, p->log, SIGTERM);
	proc_wait_ready(&p->pid, &p->status, "ferry-pager", p->log, READY_TIMEOUT_MS, sock_accepts, p->sock);
}

int pgr_stop(struct pgr *p, int timeout_ms)
{
	return proc_stop(&p->pid, &p->status, timeout_ms);
}

void pgr_cleanup(struct pgr *p)
{
	proc_kill(&p->pid, &p->status);
	if (!getenv("FERRY_KEEP_LOGS"))
		proc_remove_dir(p->dir);
	p->dir[0] = '\0';
}

bool pgr_log_contains(const struct pgr *p, const char *needle)
{
	return proc_log_contains(p->log, needle);
}

void pgr_dump_log(const struct pgr *p)
{
	proc_dump_log("ferry-pager", p->log);
}

uint64_t tvm_stamp_word(uint64_t page, uint32_t version, unsigned word)
{
	return (page << 32 | version) * 0x9E3779B97F4A7C15ull + word;
}

void tvm_fill(void *page_addr, uint64_t page, uint32_t version)
{
	uint64_t *w = page_addr;

	for (unsigned i = 0; i < PAGE / 8; i++)
		w[i] = tvm_stamp_word(page, version, i);
}

int tvm_check(const void *page_addr, uint64_t page, uint32_t version)
{
	const uint64_t *w = page_addr;
	bool zero = true, match = true;

	for (unsigned i = 0; i < PAGE / 8; i++) {
		if (w[i])
			zero = false;
		if (w[i] != tvm_stamp_word(page, version, i))
			match = false;
	}
	return match ? 1 : zero ? 0 : -1;
}

void tvm_create(struct tvm *v, const char *sock, const char *id, size_t pages, int flags, bool (*stamped)(size_t i))
{
	struct ferry_err err = { 0 };
	uint64_t features = FERRY_VMM_UFFD_F_EVENT_REMOVE | FERRY_VMM_UFFD_F_MISSING_SHMEM |
			    FERRY_VMM_UFFD_F_WP_HUGETLBFS_SHMEM | FERRY_VMM_UFFD_F_WP_UNPOPULATED;
	size_t size = pages * PAGE;
	unsigned modes;

	memset(v, 0, sizeof(*v));
	if (flags & TVM_POISON)
		features |= FERRY_VMM_UFFD_F_POISON;
	if (flags & TVM_EVENTS)
		features |= FERRY_VMM_UFFD_F_EVENT_UNMAP | FERRY_VMM_UFFD_F_EVENT_REMAP | FERRY_VMM_UFFD_F_EVENT_FORK;
	if (flags & TVM_MINOR)
		features |= FERRY_VMM_UFFD_F_MINOR_SHMEM;
	v->pages = pages;
	v->version = calloc(pages, sizeof(uint32_t));
	assert_non_null(v->version);
	if (flags & TVM_ANON) {
		v->memfd = -1;
		v->ram = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	} else {
		v->memfd = memfd_create("guest-ram", MFD_CLOEXEC);
		assert_true(v->memfd >= 0);
		assert_int_equal(ftruncate(v->memfd, (off_t)size), 0);
		v->ram = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, v->memfd, 0);
	}
	assert_true(v->ram != MAP_FAILED);
	for (size_t i = 0; stamped && i < pages; i++) {
		if (stamped(i)) {
			v->version[i] = 1;
			tvm_fill(v->ram + i * PAGE, i, 1);
		}
	}
	v->uffd = ferry_vmm_uffd_create(O_CLOEXEC | O_NONBLOCK | FERRY_VMM_UFFD_BEST_EFFORT, features, &err);
	if (v->uffd < 0)
		fail_msg("uffd: %s", err.msg);
	modes = FERRY_VMM_MODE_MISSING | ((flags & TVM_WP) ? FERRY_VMM_MODE_WP : 0) |
		((flags & TVM_MINOR) ? FERRY_VMM_MODE_MINOR : 0);
	if (ferry_vmm_uffd_register_range(v->uffd, v->ram, size, modes, &err))
		fail_msg("register range: %s", err.msg);
	if (flags & TVM_NO_REGISTER)
		return;
	v->c = ferry_vmm_connect(sock);
	assert_non_null(v->c);
	struct ferry_vmm_region r = {
		.gpa = 0, .size = size, .hva = (uintptr_t)v->ram, .offset = 0, .page_size = PAGE,
		.modes = (uint8_t)modes,
	};
	if (ferry_vmm_register(v->c, id, &r, 1, v->uffd, v->memfd) < 0)
		fail_msg("register %s: %s", id, ferry_vmm_errmsg(v->c));
}

void tvm_destroy(struct tvm *v)
{
	if (v->c)
		ferry_vmm_close(v->c);
	if (v->uffd >= 0)
		close(v->uffd);
	if (v->ram)
		munmap(v->ram, v->pages * PAGE);
	if (v->memfd >= 0)
		close(v->memfd);
	free(v->version);
	memset(v, 0, sizeof(*v));
	v->uffd = v->memfd = -1;
}

uint64_t tvm_stat(struct tvm *v, const char *name)
{
	struct ferry_vmm_stat st[64];
	int n = ferry_vmm_stats(v->c, st, 64);

	if (n < 0)
		fail_msg("STATS: %s", ferry_vmm_errmsg(v->c));
	for (int i = 0; i < n && i < 64; i++)
		if (strcmp(st[i].name, name) == 0)
			return st[i].value;
	fail_msg("STATS has no counter %s", name);
	return 0;
}

void tvm_write(struct tvm *v, size_t i)
{
	v->version[i]++;
	tvm_fill(v->ram + i * PAGE, i, v->version[i]);
}

bool tvm_verify(struct tvm *v, size_t i)
{
	int r = tvm_check(v->ram + i * PAGE, i, v->version[i]);

	if (v->version[i] == 0)
		return r == 0;
	return r == 1;
}
