/*
 * ferry-pager without a memory pool: FCtrans unused pages (holes -> zero
 * faults), local pages untouched, FREE_HINT / MADV_REMOVE / MADV_DONTNEED
 * making pages unused (and really freeing them from the memfd), anonymous
 * guest RAM, device-state blobs, UNREGISTER, two VMs, SIGTERM.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pager_harness.h"
#include "proto/vmm.h"

static struct pgr P;

static bool even(size_t i) { return i % 2 == 0; }

static int setup(void **state)
{
	static const char *const args[] = { "--prefetch", "4", NULL };

	(void)state;
	pgr_start(&P, args);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	uint64_t deadline = now_ms() + 5000;

	if (!pgr_alive(&P))
		pgr_dump_log(&P);
	/* SIGUSR1: the counters, without stopping */
	kill(P.pid, SIGUSR1);
	while (!pgr_log_contains(&P, "counters: zero_faults=") && now_ms() < deadline)
		sleep_ms(5);
	assert_true(pgr_log_contains(&P, "counters: zero_faults="));
	assert_true(pgr_alive(&P));
	assert_int_equal(pgr_stop(&P, 5000), 0);
	assert_true(pgr_log_contains(&P, "SIGTERM: shutting down"));
	pgr_cleanup(&P);
	return 0;
}

static void test_zero_faults(void **state)
{
	struct tvm v;

	(void)state;
	tvm_create(&v, P.sock, "vm-zero", 256, 0, even);
	assert_int_equal(tvm_stat(&v, "pages_unused"), 128);
	assert_int_equal(tvm_stat(&v, "pages_local"), 128);
	for (size_t i = 0; i < 256; i++)
		assert_true(tvm_verify(&v, i));
	assert_int_equal(tvm_stat(&v, "zero_faults"), 128);
	assert_true(tvm_stat(&v, "bytes_not_transferred") >= 128 * PAGE);
	assert_int_equal(tvm_stat(&v, "pages_unused"), 0);
	/* writes to zero-filled pages stay */
	for (size_t i = 1; i < 256; i += 2)
		tvm_write(&v, i);
	for (size_t i = 0; i < 256; i++)
		assert_true(tvm_verify(&v, i));
	assert_int_equal(tvm_stat(&v, "zero_faults"), 128);
	assert_int_equal(tvm_stat(&v, "fault_errors"), 0);
	assert_int_equal(ferry_vmm_unregister(v.c), 0);
	tvm_destroy(&v);
}

static void test_hint_remove(void **state)
{
	struct tvm v;
	int rc;

	(void)state;
	tvm_create(&v, P.sock, "vm-hint", 128, 0, even);
	/* the guest freed pages [16, 32): hinted, punched, later read as zeros */
	rc = ferry_vmm_free_hint(v.c, 16 * PAGE, 16 * PAGE);
	assert_int_equal(rc, 0);
	assert_int_equal(tvm_stat(&v, "hint_pages"), 8);    /* the 8 stamped ones were data */
	assert_true(lseek(v.memfd, 16 * PAGE, SEEK_DATA) >= 32 * PAGE);   /* really freed */
	for (size_t i = 16; i < 32; i++)
		v.version[i] = 0;
	for (size_t i = 0; i < 128; i++)
		assert_true(tvm_verify(&v, i));
	/* MADV_REMOVE: the kernel punches, the pager gets REMOVE */
	assert_int_equal(madvise(v.ram + 40 * PAGE, 8 * PAGE, MADV_REMOVE), 0);
	for (size_t i = 40; i < 48; i++)
		v.version[i] = 0;
	/* MADV_DONTNEED on the shared mapping only drops PTEs: the data stays in the file
	 * and must still be there (the pager must neither punch nor call it unused) */
	assert_int_equal(madvise(v.ram + 64 * PAGE, 8 * PAGE, MADV_DONTNEED), 0);
	sleep_ms(200);   /* the pager's re-check of REMOVEd ranges runs on its tick */
	assert_true(lseek(v.memfd, 64 * PAGE, SEEK_DATA) == 64 * PAGE);
	for (size_t i = 0; i < 128; i++)
		assert_true(tvm_verify(&v, i));
	assert_true(tvm_stat(&v, "remove_events") >= 2);
	/* [40, 48) was resident (stamped or read as zeros above) and became holes: 8 pages
	 * UNUSED; the DONTNEEDed [64, 72) stayed LOCAL */
	assert_int_equal(tvm_stat(&v, "removed_pages"), 8);
	/* a hint outside the VM */
	rc = ferry_vmm_free_hint(v.c, 1024 * PAGE, PAGE);
	assert_true(rc < 0);
	assert_int_equal(ferry_vmm_remote_code(v.c), FERRY_VMMP_E_OUT_OF_RANGE);
	assert_int_equal(tvm_stat(&v, "fault_errors"), 0);
	tvm_destroy(&v);
}

static void test_anonymous(void **state)
{
	struct tvm v;

	(void)state;
	tvm_create(&v, P.sock, "vm-anon", 64, TVM_ANON, even);
	assert_int_equal(tvm_stat(&v, "pages_local"), 32);   /* found with /proc/PID/pagemap */
	assert_int_equal(tvm_stat(&v, "pageout_enabled"), 0);
	for (size_t i = 0; i < 64; i++)
		assert_true(tvm_verify(&v, i));
	assert_int_equal(tvm_stat(&v, "zero_faults"), 32);
	/* A hint cannot free anonymous memory (the VMM still maps it): refused, nothing applied. */
	assert_true(ferry_vmm_free_hint(v.c, 0, 8 * PAGE) < 0);
	assert_int_equal(ferry_vmm_remote_code(v.c), FERRY_VMMP_E_UNSUPPORTED);
	assert_non_null(strstr(ferry_vmm_errmsg(v.c), "madvise"));
	assert_int_equal(tvm_stat(&v, "hint_pages"), 0);
	/* balloon-style free of anonymous memory: REMOVE, then zero pages */
	assert_int_equal(madvise(v.ram, 8 * PAGE, MADV_DONTNEED), 0);
	for (size_t i = 0; i < 8; i++)
		v.version[i] = 0;
	for (size_t i = 0; i < 64; i++)
		assert_true(tvm_verify(&v, i));
	assert_int_equal(tvm_stat(&v, "zero_faults"), 40);
	tvm_destroy(&v);
}

static void test_state_blob(void **state)
{
	struct tvm v;
	size_t len = (3u << 20) + 123;
	uint8_t *blob = malloc(len);
	void *back = NULL;
	size_t back_len = 0;

	(void)state;
	for (size_t i = 0; i < len; i++)
		blob[i] = (uint8_t)(i * 7 + 3);
	tvm_create(&v, P.sock, "vm-state", 16, 0, NULL);
	assert_int_equal(ferry_vmm_get_state(v.c, &back, &back_len), -ENOENT);
	assert_int_equal(ferry_vmm_put_state(v.c, blob, len), 0);
	assert_int_equal(ferry_vmm_get_state(v.c, &back, &back_len), 0);
	assert_int_equal(back_len, len);
	assert_memory_equal(back, blob, len);
	free(back);
	assert_int_equal(ferry_vmm_notify(v.c, FERRY_VMM_SUSPEND), 0);
	assert_int_equal(ferry_vmm_notify(v.c, FERRY_VMM_RESUME), 0);
	/* UNREGISTER, then the connection may register again */
	assert_int_equal(ferry_vmm_unregister(v.c), 0);
	assert_true(ferry_vmm_free_hint(v.c, 0, PAGE) < 0);
	assert_int_equal(ferry_vmm_remote_code(v.c), FERRY_VMMP_E_UNEXPECTED);
	free(blob);
	tvm_destroy(&v);
}

static void test_two_vms_same_id(void **state)
{
	struct tvm a, b;
	struct ferry_vmm_conn *c;
	struct ferry_vmm_region r;

	(void)state;
	tvm_create(&a, P.sock, "vm-a", 64, 0, even);
	tvm_create(&b, P.sock, "vm-b", 64, 0, NULL);
	for (size_t i = 0; i < 64; i++) {
		assert_true(tvm_verify(&a, i));
		assert_true(tvm_verify(&b, i));
	}
	assert_int_equal(tvm_stat(&a, "zero_faults"), 32);
	assert_int_equal(tvm_stat(&b, "zero_faults"), 64);
	/* the same id again is refused */
	c = ferry_vmm_connect(P.sock);
	assert_non_null(c);
	r = (struct ferry_vmm_region){ .gpa = 0, .size = 64 * PAGE, .hva = (uintptr_t)a.ram, .page_size = PAGE };
	assert_true(ferry_vmm_register(c, "vm-a", &r, 1, a.uffd, a.memfd) < 0);
	assert_int_equal(ferry_vmm_remote_code(c), FERRY_VMMP_E_EXISTS);
	ferry_vmm_close(c);
	/* the VMM of b goes away: a keeps working */
	ferry_vmm_close(b.c);
	b.c = NULL;
	for (size_t i = 0; i < 64; i++)
		tvm_write(&a, i);
	for (size_t i = 0; i < 64; i++)
		assert_true(tvm_verify(&a, i));
	tvm_destroy(&b);
	tvm_destroy(&a);
}

/* mremap (REMAP: the region follows), fork (FORK: the child's uffd is dropped), munmap (UNMAP). */
static void test_events(void **state)
{
	struct tvm v;
	void *moved;
	pid_t pid;
	int status;

	(void)state;
	tvm_create(&v, P.sock, "vm-events", 64, TVM_ANON | TVM_EVENTS, even);
	for (size_t i = 0; i < 8; i++)
		assert_true(tvm_verify(&v, i));
	/* move onto a place reserved for it (MREMAP_FIXED replaces whatever is mapped there) */
	void *target = mmap(NULL, 64 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(target != MAP_FAILED);
	moved = mremap(v.ram, 64 * PAGE, 64 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, target);
	assert_true(moved == target);
	v.ram = moved;
	for (size_t i = 0; i < 64; i++)
		assert_true(tvm_verify(&v, i));   /* faults at the new address are served */
	assert_int_equal(tvm_stat(&v, "remap_events"), 1);
	assert_int_equal(madvise(v.ram + 5 * PAGE, PAGE, MADV_DONTNEED), 0);
	v.version[5] = 0;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(tvm_verify(&v, 2) && tvm_verify(&v, 5) ? 0 : 1);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(tvm_stat(&v, "fork_events"), 1);
	assert_true(tvm_verify(&v, 5));
	/* (the move itself unmapped the old range: an UNMAP event that no longer touches the region) */
	uint64_t unmaps = tvm_stat(&v, "unmap_events");

	assert_int_equal(munmap(v.ram + 56 * PAGE, 8 * PAGE), 0);
	assert_int_equal(tvm_stat(&v, "unmap_events"), unmaps + 1);
	assert_int_equal(tvm_stat(&v, "pages_local") + tvm_stat(&v, "pages_unused"), 64);
	for (size_t i = 0; i < 56; i++)
		assert_true(tvm_verify(&v, i));
	assert_int_equal(tvm_stat(&v, "fault_errors"), 0);
	tvm_destroy(&v);
}

struct storm {
	struct tvm *v;
	volatile int stop;
	unsigned removes;
};

static void *remove_storm(void *arg)
{
	struct storm *s = arg;
	unsigned seed = 7;

	while (!s->stop) {
		size_t first = (size_t)rand_r(&seed) % 256, n = 1 + (size_t)rand_r(&seed) % 16;

		if (first + n > 256)
			n = 256 - first;
		madvise(s->v->ram + first * PAGE, n * PAGE, MADV_DONTNEED);
		s->removes++;
	}
	return NULL;
}

/* REMOVE events racing with faults: ioctls refused with EAGAIN are retried after the events. */
static void test_remove_storm(void **state)
{
	struct tvm v;
	struct storm s = { .v = &v };
	pthread_t t;
	unsigned bad = 0, seed = 3;
	uint64_t end;

	(void)state;
	tvm_create(&v, P.sock, "vm-storm", 256, 0, NULL);
	assert_int_equal(pthread_create(&t, NULL, remove_storm, &s), 0);
	end = now_ms() + 500;
	while (now_ms() < end) {
		size_t i = (size_t)rand_r(&seed) % 256;
		uint8_t *p = v.ram + i * PAGE;

		/* a page holds zeros or the last stamp written to it - nothing else */
		if (rand_r(&seed) % 2) {
			tvm_fill(p, i, 5);
		} else {
			int r = tvm_check(p, i, 5);

			if (r < 0)
				bad++;
		}
	}
	s.stop = 1;
	pthread_join(t, NULL);
	assert_int_equal(bad, 0);
	assert_true(s.removes > 10);
	assert_int_equal(tvm_stat(&v, "fault_errors"), 0);
	fprintf(stderr, "storm: %u removes, %llu zero faults, %llu EAGAIN retries\n", s.removes,
		(unsigned long long)tvm_stat(&v, "zero_faults"), (unsigned long long)tvm_stat(&v, "eagain_retries"));
	tvm_destroy(&v);
}

static bool all(size_t i)
{
	(void)i;
	return true;
}

/*
 * A VMM that registered MINOR mode drops its own PTEs (DONTNEED on its shared
 * memfd mapping keeps the data); with no sampler running, the pager must map
 * the pages back on their MINOR faults, or the next access would wait forever.
 */
static void test_minor_unsampled(void **state)
{
	struct tvm v;
	size_t n = 128;

	(void)state;
	tvm_create(&v, P.sock, "vm-minor", n, TVM_MINOR | TVM_WP, all);
	assert_int_equal(madvise(v.ram, n * PAGE, MADV_DONTNEED), 0);
	sleep_ms(100);   /* the pager re-checks the file after the REMOVE events: data kept */
	assert_int_equal(tvm_stat(&v, "pages_local"), n);
	for (size_t i = 0; i < n; i++)
		assert_true(tvm_verify(&v, i));
	assert_true(tvm_stat(&v, "minor_faults") > 0);
	for (size_t i = 0; i < n; i += 3)
		tvm_write(&v, i);
	for (size_t i = 0; i < n; i++)
		assert_true(tvm_verify(&v, i));
	assert_int_equal(tvm_stat(&v, "fault_errors"), 0);
	assert_int_equal(ferry_vmm_unregister(v.c), 0);
	tvm_destroy(&v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_zero_faults),
		cmocka_unit_test(test_hint_remove),
		cmocka_unit_test(test_anonymous),
		cmocka_unit_test(test_state_blob),
		cmocka_unit_test(test_two_vms_same_id),
		cmocka_unit_test(test_remove_storm),
		cmocka_unit_test(test_events),
		cmocka_unit_test(test_minor_unsampled),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
