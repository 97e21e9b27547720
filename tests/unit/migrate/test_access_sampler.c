/* The access sampler on a real userfaultfd: one process, a memfd mapped
 * shared, a uffd registered MISSING|MINOR|WP, a fault-handling thread running
 * the sampler, and this thread as the workload, which reads and writes exactly
 * known blocks in known sample periods. Asserts the recorded class of every
 * block in every period, the number of faults each period took (one per block
 * and kind: the block-wide map), that a MISSING fault is left to the owner,
 * that stop maps everything back, and that every byte is intact. Skips (77)
 * where userfaultfd or its shmem features are unavailable. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dataplane/migrate/access_sampler.h"
#include "dataplane/vmm/ferry_vmm.h"

#define PAGE   4096u
#define NPAGES 120u   /* 8 blocks of 16 pages, the last one 8 pages */
#define NBLK   8u
#define HELD_PAGE 96u
#define PART_SPLIT 64u   /* parts mode: where the second sampler's range begins */

enum { C = PLAN_CLEAN, R = PLAN_READ, W = PLAN_WRITE };

struct rig {
	int memfd, uffd;
	uint8_t *mem;
	uint8_t *shadow;          /* what every byte must be */
	struct planner *pl;
	struct plan_trace trace;
	struct access_sampler *s;
	/* parts mode: s covers pages [0, PART_SPLIT), s2 the rest, one planner (access_sampler_set_part) */
	struct access_sampler *s2;
	bool period_open;
	pthread_t thread;
	int cmd[2], ack[2];
	/* written by the fault thread, read by the test thread after an ack */
	unsigned missing, handle_errors, unexpected;
	unsigned removes;         /* UFFD_EVENT_REMOVE seen */
	off_t remove_off[64];     /* their starts (memfd offsets) */
	bool hold_on;
	/* remove-events mode: the drop is asynchronous, on a dropper thread, as the pager's
	 * request to the VMM will be (the madvise waits until the fault thread reads the event) */
	bool async_drop;
	pthread_t dropper;
	int drop_req[2], drop_done[2];
};

static void *dropper_main(void *arg)
{
	struct rig *r = arg;
	char c;

	while (read(r->drop_req[0], &c, 1) == 1 && c == 'D') {
		int rc = access_sampler_drop_madvise(NULL, r->mem, NPAGES * PAGE, NULL);

		if (write(r->drop_done[1], &rc, sizeof(rc)) != sizeof(rc))
			abort();
	}
	return NULL;
}

/* The sampler's drop callback in remove-events mode: ask, do not wait. */
static int drop_async(void *ctx, void *addr, size_t len, struct ferry_err *err)
{
	struct rig *r = ctx;
	char c = 'D';

	(void)addr;
	(void)len;
	(void)err;
	return write(r->drop_req[1], &c, 1) == 1 ? 0 : -EIO;
}

/*
 * A REMOVE event: the owner's job. The kernel sends it *before* it zaps or
 * punches (and the madvise waits until it is read), so whether the memfd kept
 * the data can only be told once the madvise has returned: recorded here,
 * checked by the test thread afterwards.
 */
static void owner_remove(struct rig *r, const struct uffd_msg *msg)
{
	if (r->removes < 64)
		r->remove_off[r->removes] = (off_t)(msg->arg.remove.start - (uintptr_t)r->mem);
	r->removes++;
}

static unsigned removes_with_data(const struct rig *r)
{
	unsigned n = 0;

	for (unsigned i = 0; i < r->removes && i < 64; i++)
		if (lseek(r->memfd, r->remove_off[i], SEEK_DATA) == r->remove_off[i])
			n++;
	return n;
}

static bool held(void *ctx, uint64_t page)
{
	struct rig *r = ctx;

	return r->hold_on && page == HELD_PAGE;
}

static void resolve_missing(struct rig *r, uintptr_t addr)
{
	uint64_t page = (addr - (uintptr_t)r->mem) / PAGE;
	struct uffdio_copy c = {
		.dst = addr, .src = (uintptr_t)(r->shadow + page * PAGE), .len = PAGE, .mode = 0,
	};

	r->missing++;   /* before the COPY wakes the faulting thread, which may look at it */
	if (ioctl(r->uffd, UFFDIO_COPY, &c) < 0)
		r->handle_errors++;
}

/* Parts mode, as the pager's plan does it: each part's period closed, then the planner's once. */
static int parts_command(struct rig *r, char c)
{
	int rc = 0;

	if (c != 'A' && c != 'E' && c != 'S')
		return 0;
	if (r->period_open) {
		access_sampler_period_end(r->s);
		access_sampler_period_end(r->s2);
		planner_sample_end(r->pl);
		r->period_open = false;
	}
	if (c == 'A') {
		rc = access_sampler_arm(r->s, NULL);
		if (rc == 0)
			rc = access_sampler_arm(r->s2, NULL);
		r->period_open = rc == 0;
	} else if (c == 'S') {
		rc = access_sampler_stop(r->s, NULL);
		if (rc == 0)
			rc = access_sampler_stop(r->s2, NULL);
	}
	return rc;
}

static void *fault_thread(void *arg)
{
	struct rig *r = arg;
	struct pollfd p[2] = { { .fd = r->uffd, .events = POLLIN }, { .fd = r->cmd[0], .events = POLLIN } };

	for (;;) {
		if (poll(p, 2, -1) < 0)
			continue;
		if (p[0].revents & POLLIN) {
			struct uffd_msg msg;

			while (read(r->uffd, &msg, sizeof(msg)) == sizeof(msg)) {
				int rc = access_sampler_handle(r->s, &msg);

				if (rc == 0 && r->s2)
					rc = access_sampler_handle(r->s2, &msg);
				if (rc < 0)
					r->handle_errors++;
				else if (rc == 0 && msg.event == UFFD_EVENT_PAGEFAULT &&
					 !(msg.arg.pagefault.flags & (UFFD_PAGEFAULT_FLAG_MINOR | UFFD_PAGEFAULT_FLAG_WP)))
					resolve_missing(r, (uintptr_t)msg.arg.pagefault.address & ~(uintptr_t)(PAGE - 1));
				else if (rc == 0 && msg.event == UFFD_EVENT_REMOVE)
					owner_remove(r, &msg);
				else if (rc == 0)
					r->unexpected++;
			}
		}
		if (p[1].revents & POLLIN) {
			char c;
			int rc = 0;

			if (read(r->cmd[0], &c, 1) != 1)
				continue;
			if (r->s2)
				rc = parts_command(r, c);
			else if (c == 'A')
				rc = access_sampler_arm(r->s, NULL);
			else if (c == 'E')
				access_sampler_period_end(r->s);
			else if (c == 'S')
				rc = access_sampler_stop(r->s, NULL);
			if (write(r->ack[1], &rc, sizeof(rc)) != sizeof(rc))
				abort();
			if (c == 'Q')
				return NULL;
		}
	}
}

static int command(struct rig *r, char c)
{
	int rc;

	assert_int_equal(write(r->cmd[1], &c, 1), 1);
	assert_int_equal(read(r->ack[0], &rc, sizeof(rc)), sizeof(rc));
	if (c == 'A' && r->async_drop && rc == 0)   /* the period starts when the drop is done */
		assert_int_equal(read(r->drop_done[0], &rc, sizeof(rc)), sizeof(rc));
	return rc;
}

/* @return 0, or 77 when this machine cannot run the test. */
static int rig_up(struct rig *r, bool remove_events, bool parts)
{
	struct ferry_err err;
	uint64_t feats = FERRY_VMM_UFFD_F_MISSING_SHMEM | FERRY_VMM_UFFD_F_MINOR_SHMEM |
			 FERRY_VMM_UFFD_F_WP_HUGETLBFS_SHMEM | (remove_events ? FERRY_VMM_UFFD_F_EVENT_REMOVE : 0);

	memset(r, 0, sizeof(*r));
	r->async_drop = remove_events;
	r->uffd = ferry_vmm_uffd_create(O_CLOEXEC | O_NONBLOCK, feats, &err);
	if (r->uffd < 0) {
		fprintf(stderr, "skip: %s\n", err.msg);
		return 77;
	}
	r->memfd = memfd_create("sampler-test", MFD_CLOEXEC);
	assert_true(r->memfd >= 0);
	assert_int_equal(ftruncate(r->memfd, NPAGES * PAGE), 0);
	r->shadow = malloc(NPAGES * PAGE);
	assert_non_null(r->shadow);
	for (size_t i = 0; i < NPAGES * PAGE; i++)
		r->shadow[i] = (uint8_t)((i / PAGE) * 31 + i * 7);
	assert_int_equal(pwrite(r->memfd, r->shadow, NPAGES * PAGE, 0), NPAGES * PAGE);
	r->mem = mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd, 0);
	assert_true(r->mem != MAP_FAILED);
	if (ferry_vmm_uffd_register_range(r->uffd, r->mem, NPAGES * PAGE,
					  FERRY_VMM_MODE_MISSING | FERRY_VMM_MODE_MINOR | FERRY_VMM_MODE_WP, &err) < 0) {
		fprintf(stderr, "skip: %s\n", err.msg);
		return 77;
	}
	r->pl = planner_create(NPAGES, 16, 1, NULL);
	assert_non_null(r->pl);
	assert_int_equal(plan_trace_init(&r->trace, NPAGES, 16, NULL), 0);
	assert_int_equal(planner_record(r->pl, &r->trace, NULL), 0);
	r->s = access_sampler_create(r->uffd, r->mem, (parts ? PART_SPLIT : NPAGES) * PAGE, r->pl,
				     r->async_drop ? drop_async : access_sampler_drop_madvise, r, &err);
	if (!r->s)
		fprintf(stderr, "access_sampler_create: %s\n", err.msg);
	assert_non_null(r->s);
	access_sampler_set_hold(r->s, held, r);
	if (parts) {
		/* the second part alone: its pages are planner pages PART_SPLIT.. */
		r->s2 = access_sampler_create(r->uffd, r->mem + PART_SPLIT * PAGE, (NPAGES - PART_SPLIT) * PAGE, r->pl,
					      access_sampler_drop_madvise, r, &err);
		assert_non_null(r->s2);
		/* a place the planner does not cover is refused */
		assert_int_equal(access_sampler_set_part(r->s2, NPAGES, &err), -EINVAL);
		assert_int_equal(access_sampler_set_part(r->s, 0, &err), 0);
		assert_int_equal(access_sampler_set_part(r->s2, PART_SPLIT, &err), 0);
	}
	assert_int_equal(pipe2(r->cmd, O_CLOEXEC), 0);
	assert_int_equal(pipe2(r->ack, O_CLOEXEC), 0);
	assert_int_equal(pthread_create(&r->thread, NULL, fault_thread, r), 0);
	if (r->async_drop) {
		assert_int_equal(pipe2(r->drop_req, O_CLOEXEC), 0);
		assert_int_equal(pipe2(r->drop_done, O_CLOEXEC), 0);
		assert_int_equal(pthread_create(&r->dropper, NULL, dropper_main, r), 0);
	}
	return 0;
}

static void rig_down(struct rig *r)
{
	if (r->async_drop) {
		char c = 'Q';

		assert_int_equal(write(r->drop_req[1], &c, 1), 1);
		pthread_join(r->dropper, NULL);
		for (int i = 0; i < 2; i++) {
			close(r->drop_req[i]);
			close(r->drop_done[i]);
		}
	}
	command(r, 'Q');
	pthread_join(r->thread, NULL);
	access_sampler_destroy(r->s);
	access_sampler_destroy(r->s2);
	planner_destroy(r->pl);
	plan_trace_fini(&r->trace);
	munmap(r->mem, NPAGES * PAGE);
	close(r->memfd);
	close(r->uffd);
	for (int i = 0; i < 2; i++) {
		close(r->cmd[i]);
		close(r->ack[i]);
	}
	free(r->shadow);
}

/* The workload: every read is checked against the shadow, every write recorded in it. */
static void rd_page(struct rig *r, unsigned page)
{
	volatile uint8_t *p = r->mem + (size_t)page * PAGE;

	assert_int_equal(p[123], r->shadow[(size_t)page * PAGE + 123]);
}

static void rd_block(struct rig *r, unsigned block)
{
	for (unsigned pg = block * 16; pg < block * 16 + 16 && pg < NPAGES; pg++)
		rd_page(r, pg);
}

static void wr_page(struct rig *r, unsigned page, uint8_t v)
{
	volatile uint8_t *p = r->mem + (size_t)page * PAGE;

	p[2000] = v;
	r->shadow[(size_t)page * PAGE + 2000] = v;
}

struct faults {
	uint64_t minor, minor_write, wp;
};

static struct faults delta(struct rig *r, struct access_sampler_stats *last)
{
	struct access_sampler_stats now;
	struct faults d;

	access_sampler_stats(r->s, &now);
	d.minor = now.minor_faults - last->minor_faults;
	d.minor_write = now.minor_write_faults - last->minor_write_faults;
	d.wp = now.wp_faults - last->wp_faults;
	*last = now;
	return d;
}

static void expect_faults(struct faults d, uint64_t minor, uint64_t minor_write, uint64_t wp)
{
	if (d.minor != minor || d.minor_write != minor_write || d.wp != wp)
		fprintf(stderr, "faults: minor %llu (expected %llu), minor writes %llu (%llu), wp %llu (%llu)\n",
			(unsigned long long)d.minor, (unsigned long long)minor, (unsigned long long)d.minor_write,
			(unsigned long long)minor_write, (unsigned long long)d.wp, (unsigned long long)wp);
	assert_int_equal(d.minor, minor);
	assert_int_equal(d.minor_write, minor_write);
	assert_int_equal(d.wp, wp);
}

static void run_script(bool no_continue_wp)
{
	static const uint8_t expect[5][NBLK] = {
		{ R, R, W, W, C, C, C, C },
		{ W, R, R, C, W, C, W, C },
		{ C, C, C, C, C, C, C, C },
		{ R, R, R, R, R, R, R, W },
		{ C, C, C, C, C, R, C, C },
	};
	struct access_sampler_stats last = { 0 }, st;
	struct rig r;
	uint8_t *file;

	if (rig_up(&r, false, false) == 77)
		skip();
	if (no_continue_wp)
		access_sampler_no_continue_wp(r.s);

	/* period 0: blocks 0, 1 read whole; block 2 written; block 3 read, then written */
	assert_int_equal(command(&r, 'A'), 0);
	rd_block(&r, 0);
	rd_block(&r, 1);
	wr_page(&r, 2 * 16 + 3, 0xa1);
	rd_block(&r, 3);
	wr_page(&r, 3 * 16 + 9, 0xa2);
	command(&r, 'E');
	expect_faults(delta(&r, &last), 4, 1, 1);

	/* period 1: block 0 written then read; block 2 (written before) only read; one
	 * page of block 1 read; block 4 written then read; block 6 read, then written
	 * beside and on a page the owner holds protected (two WP faults) */
	assert_int_equal(command(&r, 'A'), 0);
	r.hold_on = true;
	wr_page(&r, 15, 0xb1);
	rd_block(&r, 0);
	rd_block(&r, 2);
	rd_page(&r, 17);
	wr_page(&r, 64 + 2, 0xb2);
	rd_page(&r, 64 + 3);
	rd_page(&r, HELD_PAGE + 1);
	wr_page(&r, HELD_PAGE + 2, 0xb3);
	wr_page(&r, HELD_PAGE, 0xb4);
	command(&r, 'E');
	r.hold_on = false;
	expect_faults(delta(&r, &last), 5, 2, 2);

	/* period 2: nothing */
	assert_int_equal(command(&r, 'A'), 0);
	command(&r, 'E');
	expect_faults(delta(&r, &last), 0, 0, 0);

	/* period 3: one page of every block read (the short last block's last page
	 * too), and that last page written */
	assert_int_equal(command(&r, 'A'), 0);
	for (unsigned b = 0; b < 7; b++)
		rd_page(&r, b * 16 + 7);
	rd_page(&r, NPAGES - 1);
	wr_page(&r, NPAGES - 1, 0xc1);
	command(&r, 'E');
	expect_faults(delta(&r, &last), 8, 0, 1);

	/* period 4: a hole (punched page 84) is a MISSING fault: the owner's, not
	 * noted; page 85 beside it is read: the block map stops at 84 (EEXIST) */
	assert_int_equal(fallocate(r.memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 84 * PAGE, PAGE), 0);
	assert_int_equal(command(&r, 'A'), 0);
	rd_page(&r, 84);
	rd_page(&r, 85);
	rd_page(&r, 86);
	command(&r, 'E');
	expect_faults(delta(&r, &last), 1, 0, 0);
	assert_int_equal(r.missing, 1);

	/* the planner saw exactly the script */
	assert_int_equal(r.trace.nsamples, 5);
	for (unsigned s = 0; s < 5; s++)
		for (unsigned b = 0; b < NBLK; b++) {
			if (plan_trace_at(&r.trace, s, b) != expect[s][b])
				fail_msg("period %u block %u: class %d, expected %d", s, b,
					 plan_trace_at(&r.trace, s, b), expect[s][b]);
		}
	assert_int_equal(planner_samples(r.pl), 5);

	/* stop maps everything back: touching every page (read and write) faults no more */
	assert_int_equal(command(&r, 'S'), 0);
	for (unsigned pg = 0; pg < NPAGES; pg++) {
		rd_page(&r, pg);
		wr_page(&r, pg, (uint8_t)pg);
	}
	expect_faults(delta(&r, &last), 0, 0, 0);

	access_sampler_stats(r.s, &st);
	assert_int_equal(st.periods, 5);
	assert_int_equal(st.drop_errors, 0);
	assert_int_equal(st.ioctl_errors, 0);
	assert_int_equal(st.unsampled_faults, 0);
	assert_int_equal(st.not_mine, 1);
	assert_int_equal(st.continue_wp, !no_continue_wp);
	assert_int_equal(r.handle_errors, 0);
	assert_int_equal(r.unexpected, 0);

	/* every byte intact: through the mapping and in the memfd */
	assert_memory_equal(r.mem, r.shadow, NPAGES * PAGE);
	file = malloc(NPAGES * PAGE);
	assert_non_null(file);
	assert_int_equal(pread(r.memfd, file, NPAGES * PAGE, 0), NPAGES * PAGE);
	assert_memory_equal(file, r.shadow, NPAGES * PAGE);
	free(file);
	rig_down(&r);
}

static void test_sampler(void **state)
{
	(void)state;
	run_script(false);
}

static void test_sampler_without_continue_wp(void **state)
{
	(void)state;
	run_script(true);
}

/*
 * With UFFD_FEATURE_EVENT_REMOVE, each sampler drop (MADV_DONTNEED on the shared
 * mapping) raises a REMOVE event that the sampler leaves to its owner, and the
 * madvise waits until it is read: so the drop runs on another thread. The memfd
 * keeps the data (SEEK_DATA finds it once the madvise has returned; the event
 * comes before the zap): the owner can tell it from a guest free.
 */
static void test_remove_events(void **state)
{
	struct access_sampler_stats st;
	struct rig r;

	(void)state;
	if (rig_up(&r, true, false) == 77)
		skip();
	for (unsigned period = 0; period < 3; period++) {
		assert_int_equal(command(&r, 'A'), 0);
		rd_block(&r, 0);
		wr_page(&r, 16 + 4, (uint8_t)(0xd0 + period));
		if (period == 1)
			rd_page(&r, NPAGES - 1);
		command(&r, 'E');
	}
	assert_int_equal(r.trace.nsamples, 3);
	for (unsigned s = 0; s < 3; s++) {
		assert_int_equal(plan_trace_at(&r.trace, s, 0), PLAN_READ);
		assert_int_equal(plan_trace_at(&r.trace, s, 1), PLAN_WRITE);
		assert_int_equal(plan_trace_at(&r.trace, s, 7), s == 1 ? PLAN_READ : PLAN_CLEAN);
		for (unsigned b = 2; b < 7; b++)
			assert_int_equal(plan_trace_at(&r.trace, s, b), PLAN_CLEAN);
	}
	/* a guest free, for contrast: MADV_REMOVE punches the page out of the memfd */
	assert_int_equal(madvise(r.mem + 80 * PAGE, PAGE, MADV_REMOVE), 0);
	assert_int_equal(command(&r, 'S'), 0);
	assert_true(r.removes >= 4);                  /* one per drop at least, and the free */
	assert_true(r.removes <= 64);
	assert_int_equal(removes_with_data(&r), r.removes - 1);
	assert_int_equal(r.unexpected, 0);
	assert_int_equal(r.handle_errors, 0);
	access_sampler_stats(r.s, &st);
	assert_int_equal(st.not_mine, r.removes);
	assert_int_equal(st.ioctl_errors, 0);
	/* the freed page faults MISSING (the owner's), every other byte is intact */
	memset(r.shadow + 80 * PAGE, 0, PAGE);
	assert_memory_equal(r.mem, r.shadow, NPAGES * PAGE);
	assert_int_equal(r.missing, 1);
	rig_down(&r);
}

/*
 * Two samplers on one planner, as for a VM with two memory regions: the
 * second one's accesses land on the planner's blocks after the first one's,
 * and the planner counts one period per period, not one per part.
 */
static void test_parts(void **state)
{
	static const uint8_t expect[2][NBLK] = {
		{ C, R, C, C, W, C, C, R },
		{ W, C, C, C, C, R, W, C },
	};
	struct rig r;

	(void)state;
	if (rig_up(&r, false, true) == 77)
		skip();
	assert_int_equal(command(&r, 'A'), 0);
	rd_block(&r, 1);
	rd_page(&r, 70);          /* a MINOR read maps block 4 protected ... */
	wr_page(&r, 71, 0xe1);    /* ... so this write is a WP fault */
	rd_page(&r, NPAGES - 1);
	command(&r, 'E');
	assert_int_equal(command(&r, 'A'), 0);
	wr_page(&r, 5, 0xe2);
	rd_block(&r, 5);
	wr_page(&r, 100, 0xe3);   /* a MINOR write fault in the second part */
	command(&r, 'E');
	assert_int_equal(r.trace.nsamples, 2);
	assert_int_equal(planner_samples(r.pl), 2);
	for (unsigned p = 0; p < 2; p++)
		for (unsigned b = 0; b < NBLK; b++)
			if (plan_trace_at(&r.trace, p, b) != expect[p][b])
				fail_msg("period %u block %u: class %d, expected %d", p, b, plan_trace_at(&r.trace, p, b),
					 expect[p][b]);
	/* both parts stopped: nothing faults any more, every byte intact */
	assert_int_equal(command(&r, 'S'), 0);
	for (unsigned pg = 0; pg < NPAGES; pg++) {
		rd_page(&r, pg);
		wr_page(&r, pg, (uint8_t)(pg + 1));
	}
	assert_int_equal(r.handle_errors, 0);
	assert_int_equal(r.unexpected, 0);
	assert_memory_equal(r.mem, r.shadow, NPAGES * PAGE);
	rig_down(&r);
}

/* A uffd with WP_ASYNC (or without the shmem features) is refused, with the reason. */
static void test_refusals(void **state)
{
	struct ferry_err err;
	struct planner *pl = planner_create(16, 16, 1, NULL);
	uint8_t *mem = mmap(NULL, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int uffd;

	(void)state;
	assert_non_null(pl);
	assert_true(mem != MAP_FAILED);
	uffd = ferry_vmm_uffd_create(O_CLOEXEC | O_NONBLOCK,
				     FERRY_VMM_UFFD_F_WP_ASYNC | FERRY_VMM_UFFD_F_WP_HUGETLBFS_SHMEM |
				     FERRY_VMM_UFFD_F_MINOR_SHMEM, &err);
	if (uffd >= 0) {
		assert_null(access_sampler_create(uffd, mem, 16 * PAGE, pl, access_sampler_drop_madvise, NULL, &err));
		assert_int_equal(err.code, -ENOTSUP);
		assert_non_null(strstr(err.msg, "WP_ASYNC"));
		close(uffd);
	} else {
		fprintf(stderr, "note: no WP_ASYNC here (%s); that refusal is not exercised\n", err.msg);
	}
	uffd = ferry_vmm_uffd_create(O_CLOEXEC | O_NONBLOCK, FERRY_VMM_UFFD_F_WP_HUGETLBFS_SHMEM, &err);
	if (uffd < 0)
		skip();
	assert_null(access_sampler_create(uffd, mem, 16 * PAGE, pl, access_sampler_drop_madvise, NULL, &err));
	assert_int_equal(err.code, -ENOTSUP);
	assert_non_null(strstr(err.msg, "MINOR_SHMEM"));
	/* bad ranges */
	assert_null(access_sampler_create(uffd, mem + 1, 16 * PAGE, pl, NULL, NULL, &err));
	assert_int_equal(err.code, -EINVAL);
	assert_null(access_sampler_create(uffd, mem, 32 * PAGE, pl, NULL, NULL, &err));   /* planner too small */
	assert_int_equal(err.code, -EINVAL);
	close(uffd);
	munmap(mem, 16 * PAGE);
	planner_destroy(pl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sampler),
		cmocka_unit_test(test_sampler_without_continue_wp),
		cmocka_unit_test(test_remove_events),
		cmocka_unit_test(test_parts),
		cmocka_unit_test(test_refusals),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
