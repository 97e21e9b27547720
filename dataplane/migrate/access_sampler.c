/*
 * The access sampler (access_sampler.h): write-protect + PTE drop per sample
 * period, MINOR faults for reads, WP faults for writes, one fault per block
 * and kind per period (the first fault in a block maps the whole block).
 */
#include "dataplane/migrate/access_sampler.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/vmm/ferry_vmm.h"

#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1)   /* Linux 6.4; Debian 12's headers predate it */
#endif

#define PAGE     4096u
#define RETRIES  64   /* EAGAIN with nothing done: the mm is changing (fork, mremap); try again */

enum { ST_NONE = 0 };   /* per-block state otherwise PLAN_READ (mapped WP) / PLAN_WRITE (writable) */

struct access_sampler {
	int uffd;
	uintptr_t base;
	size_t len;
	uint64_t npages;
	uint64_t nblocks;
	unsigned block_pages;
	struct planner *pl;
	uint64_t first_page;  /* planner page of the range's first page */
	bool part;            /* one of several on pl: the owner ends the planner's periods */
	access_sampler_drop_fn *drop;
	void *drop_ctx;
	access_sampler_hold_fn *held;
	void *held_ctx;
	uint8_t *state;       /* per block, this period: how the block is mapped */
	bool active;          /* between arm and period_end */
	bool stopped;
	int continue_wp;      /* -1 not known yet, 0 no, 1 yes */
	struct access_sampler_stats st;
};

struct access_sampler *access_sampler_create(int uffd, void *base, size_t len, struct planner *pl,
					     access_sampler_drop_fn *drop, void *drop_ctx, struct ferry_err *err)
{
	struct access_sampler *s;
	uint64_t features = 0;
	int rc;

	if (uffd < 0 || !base || len == 0 || ((uintptr_t)base | len) % PAGE || !pl) {
		ferry_err_set(err, EINVAL, "access sampler: bad range [%p, +0x%zx) or no uffd/planner", base, len);
		return NULL;
	}
	if (planner_nblocks(pl) * planner_block_pages(pl) < len / PAGE) {
		ferry_err_set(err, EINVAL, "access sampler: the planner covers %llu blocks of %u pages, the range %zu pages",
			      (unsigned long long)planner_nblocks(pl), planner_block_pages(pl), len / PAGE);
		return NULL;
	}
	rc = ferry_vmm_uffd_features(uffd, &features);
	if (rc < 0) {
		ferry_err_set(err, rc, "access sampler: cannot read the uffd's features: %s", strerror(-rc));
		return NULL;
	}
	if (features & FERRY_VMM_UFFD_F_WP_ASYNC) {
		ferry_err_set(err, ENOTSUP, "access sampler: the uffd has UFFD_FEATURE_WP_ASYNC: writes would not "
			      "fault (and page-out could not hold them); use a uffd with synchronous uffd-wp");
		return NULL;
	}
	if (!(features & FERRY_VMM_UFFD_F_WP_HUGETLBFS_SHMEM) ||
	    (drop && !(features & FERRY_VMM_UFFD_F_MINOR_SHMEM))) {
		ferry_err_set(err, ENOTSUP, "access sampler: the uffd lacks UFFD_FEATURE_%s (features 0x%llx)",
			      !(features & FERRY_VMM_UFFD_F_WP_HUGETLBFS_SHMEM) ? "WP_HUGETLBFS_SHMEM" : "MINOR_SHMEM",
			      (unsigned long long)features);
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		goto nomem;
	s->uffd = uffd;
	s->base = (uintptr_t)base;
	s->len = len;
	s->npages = len / PAGE;
	s->block_pages = planner_block_pages(pl);
	s->nblocks = (s->npages + s->block_pages - 1) / s->block_pages;
	s->pl = pl;
	s->drop = drop;
	s->drop_ctx = drop_ctx;
	s->continue_wp = -1;
	s->state = calloc(s->nblocks, 1);
	if (!s->state)
		goto nomem_s;
	return s;

nomem_s:
	free(s);
nomem:
	ferry_err_set(err, ENOMEM, "access sampler: no memory");
	return NULL;
}

int access_sampler_set_part(struct access_sampler *s, uint64_t first_page, struct ferry_err *err)
{
	uint64_t covered = planner_nblocks(s->pl) * planner_block_pages(s->pl);

	if (s->active || s->st.periods || s->stopped)
		return ferry_err_set(err, EBUSY, "access sampler: already armed");
	if (first_page > covered || covered - first_page < s->npages)
		return ferry_err_set(err, EINVAL, "access sampler: pages [%llu, +%llu) outside the planner's %llu",
				     (unsigned long long)first_page, (unsigned long long)s->npages,
				     (unsigned long long)covered);
	s->first_page = first_page;
	s->part = true;
	return 0;
}

void access_sampler_destroy(struct access_sampler *s)
{
	if (!s)
		return;
	if (!s->stopped)
		(void)access_sampler_stop(s, NULL);
	free(s->state);
	free(s);
}

void access_sampler_set_hold(struct access_sampler *s, access_sampler_hold_fn *held, void *ctx)
{
	s->held = held;
	s->held_ctx = ctx;
}

void access_sampler_no_continue_wp(struct access_sampler *s)
{
	s->continue_wp = 0;
}

static int wp_range(struct access_sampler *s, uintptr_t start, size_t len, uint64_t mode)
{
	struct uffdio_writeprotect w = { .range = { .start = start, .len = len }, .mode = mode };

	for (int i = 0; i < RETRIES; i++) {
		if (ioctl(s->uffd, UFFDIO_WRITEPROTECT, &w) == 0)
			return 0;
		if (errno != EAGAIN)
			break;
	}
	s->st.ioctl_errors++;
	return -errno;
}

static int wake(struct access_sampler *s, uintptr_t start, size_t len)
{
	struct uffdio_range r = { .start = start, .len = len };

	if (ioctl(s->uffd, UFFDIO_WAKE, &r) == 0)
		return 0;
	s->st.ioctl_errors++;
	return -errno;
}

/* One UFFDIO_CONTINUE. @return bytes mapped from @p start (a partial map stops at
 * a page already mapped), or a negative errno when nothing was. */
static int64_t cont_raw(struct access_sampler *s, uintptr_t start, size_t len, uint64_t mode)
{
	struct uffdio_continue c = { .range = { .start = start, .len = len }, .mode = mode };

	for (int i = 0; i < RETRIES; i++) {
		if (ioctl(s->uffd, UFFDIO_CONTINUE, &c) == 0)
			return (int64_t)len;
		if (errno == EAGAIN && c.mapped > 0)
			return c.mapped;
		if (errno != EAGAIN)
			return -errno;
	}
	return -EAGAIN;
}

/* Map [start, start+len) back; @p wp keeps it write-protected (a read: a write must still trap). */
static int64_t cont(struct access_sampler *s, uintptr_t start, size_t len, bool wp)
{
	int64_t m;

	if (!wp)
		return cont_raw(s, start, len, 0);
	if (s->continue_wp != 0) {
		m = cont_raw(s, start, len, UFFDIO_CONTINUE_MODE_WP);
		if (m != -EINVAL || s->continue_wp == 1) {
			if (m > 0 || m == -EEXIST)
				s->continue_wp = 1;
			s->st.continue_wp = s->continue_wp == 1;
			return m;
		}
		s->continue_wp = 0;
		LOG_INFO("access sampler: this kernel has no UFFDIO_CONTINUE_MODE_WP (Linux 6.4); read faults are "
			 "mapped with CONTINUE + WRITEPROTECT + WAKE instead");
	}
	/* Without MODE_WP: map without waking, protect, then wake. */
	m = cont_raw(s, start, len, UFFDIO_CONTINUE_MODE_DONTWAKE);
	if (m > 0) {
		/* (MODE_WP never wakes; MODE_WP | MODE_DONTWAKE is EINVAL) */
		(void)wp_range(s, start, (size_t)m, UFFDIO_WRITEPROTECT_MODE_WP);
		(void)wake(s, start, (size_t)m);
	}
	return m;
}

static void block_span(const struct access_sampler *s, uint64_t block, uintptr_t *start, size_t *len)
{
	uint64_t first = block * s->block_pages;
	uint64_t n = s->npages - first < s->block_pages ? s->npages - first : s->block_pages;

	*start = s->base + first * PAGE;
	*len = n * PAGE;
}

/*
 * Map [start, start+len) back around pages already mapped (EEXIST) or absent
 * from the memfd (EFAULT). @return 1 when the kernel woke @p addr's waiter
 * (it was mapped by a CONTINUE), 0 when it was already mapped (the caller
 * wakes it), or a negative errno.
 */
static int map_span(struct access_sampler *s, uintptr_t start, size_t len, uintptr_t addr, bool wp)
{
	uintptr_t pos = start, end = start + len;
	int addr_rc = -ENOENT;

	while (pos < end) {
		int64_t m = cont(s, pos, end - pos, wp);

		if (m > 0) {
			if (addr >= pos && addr < pos + (uint64_t)m)
				addr_rc = 1;
			pos += (uint64_t)m;
			continue;
		}
		if (pos == addr)
			addr_rc = m == -EEXIST ? 0 : (int)m;
		if (m != -EEXIST && m != -EFAULT && m != -ENOENT)
			return pos <= addr ? (int)m : addr_rc;
		if (m == -EEXIST)
			s->st.eexist++;
		pos += PAGE;
	}
	return addr_rc;
}

static int handle_minor(struct access_sampler *s, uintptr_t addr, uint64_t page, bool write)
{
	uint64_t block = page / s->block_pages;
	uint8_t was = s->state[block];
	uint8_t now = write ? PLAN_WRITE : PLAN_READ;
	bool wp = false;
	uintptr_t start = addr;
	size_t len = PAGE;
	int rc;

	s->st.minor_faults++;
	if (write)
		s->st.minor_write_faults++;
	if (s->active) {
		planner_note(s->pl, s->first_page + page, write ? PLAN_WRITE : PLAN_READ);
		if (now < was)
			now = was;
		s->state[block] = now;
		/* A read-only block stays protected so that its first write is seen. */
		wp = now == PLAN_READ;
	} else {
		s->st.unsampled_faults++;
	}
	/* The first fault in a block maps all of it: one fault per block is enough. */
	if (was == ST_NONE)
		block_span(s, block, &start, &len);
	rc = map_span(s, start, len, addr, wp);
	if (rc == 1)
		return 1;
	if (rc == 0)   /* another fault (or the owner) mapped it first: just wake the waiter */
		return wake(s, addr, PAGE) == 0 ? 1 : -EIO;
	if (rc == -EAGAIN) {
		/*
		 * A non-cooperative event (the REMOVE of a drop still under way) is
		 * queued behind this fault and the kernel refuses until the owner
		 * reads it. Wake the thread: it faults again, after that event, and
		 * the block is mapped then.
		 */
		s->st.mm_changing++;
		s->state[block] = was;
		return wake(s, addr, PAGE) == 0 ? 1 : -EIO;
	}
	s->st.ioctl_errors++;
	LOG_WARN("access sampler: UFFDIO_CONTINUE at 0x%llx: %s", (unsigned long long)addr, strerror(-rc));
	(void)wake(s, addr, PAGE);
	return rc;
}

static int handle_wp(struct access_sampler *s, uintptr_t addr, uint64_t page)
{
	uint64_t block = page / s->block_pages;
	uintptr_t start;
	size_t len;
	int rc = 0;

	s->st.wp_faults++;
	if (s->active) {
		planner_note(s->pl, s->first_page + page, PLAN_WRITE);
		s->state[block] = PLAN_WRITE;
	} else {
		s->st.unsampled_faults++;
	}
	block_span(s, block, &start, &len);
	if (!s->held) {
		if (wp_range(s, start, len, 0) == 0)
			return 1;   /* un-protecting wakes the writer */
		(void)wake(s, addr, PAGE);
		return -EIO;
	}
	/* The owner keeps some pages protected: un-protect page by page around them. */
	for (uintptr_t a = start; a < start + len; a += PAGE) {
		uint64_t pg = (a - s->base) / PAGE;

		if (a != addr && s->held(s->held_ctx, pg))
			continue;
		if (wp_range(s, a, PAGE, 0) < 0)
			rc = -EIO;
	}
	if (rc < 0)
		(void)wake(s, addr, PAGE);
	return rc < 0 ? rc : 1;
}

int access_sampler_handle(struct access_sampler *s, const struct uffd_msg *msg)
{
	uintptr_t addr;
	uint64_t flags, page;

	if (msg->event != UFFD_EVENT_PAGEFAULT)
		goto not_mine;
	addr = (uintptr_t)msg->arg.pagefault.address & ~(uintptr_t)(PAGE - 1);
	flags = msg->arg.pagefault.flags;
	if (addr < s->base || addr - s->base >= s->len)
		goto not_mine;
	page = (addr - s->base) / PAGE;
	if (flags & UFFD_PAGEFAULT_FLAG_MINOR)
		return handle_minor(s, addr, page, flags & UFFD_PAGEFAULT_FLAG_WRITE);
	if (flags & UFFD_PAGEFAULT_FLAG_WP)
		return handle_wp(s, addr, page);
not_mine:
	s->st.not_mine++;
	return 0;
}

int access_sampler_arm(struct access_sampler *s, struct ferry_err *err)
{
	int rc;

	if (s->stopped)
		return ferry_err_set(err, EINVAL, "access sampler: stopped");
	if (s->active)
		access_sampler_period_end(s);
	memset(s->state, ST_NONE, s->nblocks);
	/* Protect first: writes are then seen whether or not (or whenever) the drop happens. */
	rc = wp_range(s, s->base, s->len, UFFDIO_WRITEPROTECT_MODE_WP);
	if (rc < 0)
		return ferry_err_set(err, rc, "access sampler: UFFDIO_WRITEPROTECT [0x%llx, +0x%zx): %s",
				     (unsigned long long)s->base, s->len, strerror(-rc));
	s->active = true;
	if (!s->drop)
		return 0;
	rc = s->drop(s->drop_ctx, (void *)s->base, s->len, err);
	if (rc < 0) {
		s->st.drop_errors++;
		return ferry_err_prefix(err, "access sampler: drop (this period sees writes only): ");
	}
	return 0;
}

void access_sampler_period_end(struct access_sampler *s)
{
	if (!s->active)
		return;
	if (!s->part)
		planner_sample_end(s->pl);
	s->st.periods++;
	s->active = false;
}

int access_sampler_stop(struct access_sampler *s, struct ferry_err *err)
{
	int rc;

	if (s->stopped)
		return 0;
	access_sampler_period_end(s);
	s->stopped = true;
	rc = wp_range(s, s->base, s->len, 0);   /* also wakes any writer */
	if (rc < 0)
		return ferry_err_set(err, rc, "access sampler: un-protect: %s", strerror(-rc));
	/* Map back what is still dropped; mapped pages (EEXIST) and holes (EFAULT) are skipped. */
	rc = map_span(s, s->base, s->len, UINTPTR_MAX, false);
	if (rc < 0 && rc != -ENOENT)
		return ferry_err_set(err, rc, "access sampler: map back: %s", strerror(-rc));
	return 0;
}

void access_sampler_stats(const struct access_sampler *s, struct access_sampler_stats *out)
{
	*out = s->st;
	out->continue_wp = s->continue_wp == 1;
}

int access_sampler_drop_madvise(void *ctx, void *addr, size_t len, struct ferry_err *err)
{
	(void)ctx;
	if (madvise(addr, len, MADV_DONTNEED) < 0)
		return ferry_err_set(err, errno, "madvise(MADV_DONTNEED) [%p, +0x%zx): %s", addr, len, strerror(errno));
	return 0;
}
