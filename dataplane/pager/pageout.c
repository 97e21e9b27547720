/*
 * Page-out under a per-VM budget of resident pages.
 *
 * Eligibility (pg_pageout_setup): guest RAM in memory files (we must be able
 * to read the page and punch it out of the file), every region registered
 * with MODE_WP, and a uffd *without* UFFD_FEATURE_WP_ASYNC (with WP_ASYNC the
 * kernel resolves write-protect faults itself, so a write racing with the
 * copy could not be held back). Otherwise page-out is refused for that VM,
 * with the reason logged once and pageout_refused counted.
 *
 * Victims: first the pages the pager installed as zero pages, oldest first
 * (pg_pageout_note_zero): a guest that reads memory it never wrote (a boot, a
 * full memory check) would otherwise fill the budget with zero pages that
 * look hot, and CLOCK would evict real data to make room, only to fetch it
 * back. Those still zero are dropped in step 3 below without a transfer
 * (FCtrans: unused memory is never paged out); one written since is paged
 * out like any victim. Then CLOCK over the pagemap. A LOCAL page with PM_F_ACCESSED gets a
 * second chance: the hand clears the bit and write-protects the page, so
 * that the next write to it faults (sync WP) and sets the bit again; pages
 * just installed by a fault start ACCESSED, prefetched pages that were never
 * touched do not. Reads of resident pages are not seen (that would take
 * MINOR-fault sampling, see docs): CLOCK here approximates "not written and
 * not faulted in since the hand last passed".
 *
 * Ordering for one batch (closes the race with the VMM writing a page that is
 * being paged out):
 *   1. UFFDIO_WRITEPROTECT the page in the VMM: from now on a write faults
 *      and *waits* in the uffd queue (sync WP); the pager, single-threaded,
 *      does not answer it before step 5;
 *   2. mark IN_FLIGHT; pread() the page from the memory file (never an mmap
 *      touch: reading a hole through a mapping would allocate it; pread of a
 *      shmem hole returns zeros without allocating);
 *   3. an all-zero page needs no slot: it is punched and becomes UNUSED
 *      (FCtrans: nothing is sent); otherwise a slot is allocated and the
 *      batch is written with one-sided WRITEs;
 *   4. fallocate(PUNCH_HOLE) the page out of the file (the kernel zaps the
 *      VMM's PTE, keeping the uffd-wp marker) and mark REMOTE;
 *   5. the waiting writer's WP fault is handled by the loop: the page is no
 *      longer LOCAL, so it is woken, retries, and raises a MISSING fault
 *      that fetches the page back - with the content it had at step 2, which
 *      no write could have changed after step 1.
 *   A failure at 3 (pool full, server lost) unprotects the page (which wakes
 *   any writer) and leaves it LOCAL.
 * Writers outside the VMM's registered mapping (write(2) on the memfd, a
 * vhost-user process mapping it) are not covered; see docs.
 *
 * Budget: pg_pageout_make_room() runs before every fault batch with that
 * batch already counted (IN_FLIGHT), and on the loop's timer, so resident
 * pages exceed the budget by at most one fault batch.
 */
#include "dataplane/pager/pager.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/migrate/migrate.h"

#define UFFD_F_WP_ASYNC (UINT64_C(1) << 15)

uint64_t pg_resident(const struct pg_vm *vm)
{
	return pm_count(&vm->pm, PM_LOCAL) + pm_count(&vm->pm, PM_IN_FLIGHT);
}

void pg_pageout_setup(struct pg_vm *vm)
{
	vm->can_pageout = false;
	if (vm->kind != PG_VM_VMMP) {
		snprintf(vm->no_pageout, sizeof(vm->no_pageout), "Firecracker restores use anonymous memory");
		return;
	}
	if (!vm->pg->rs || rs_nservers(vm->pg->rs) == 0) {
		snprintf(vm->no_pageout, sizeof(vm->no_pageout), "no memory servers configured");
		return;
	}
	for (unsigned i = 0; i < vm->nregions; i++) {
		if (vm->regions[i].memfd < 0) {
			snprintf(vm->no_pageout, sizeof(vm->no_pageout),
				 "region %u is anonymous memory (page-out needs a memfd to read and punch)", i);
			return;
		}
		if (!(vm->regions[i].modes & FERRY_VMMP_MODE_WP)) {
			snprintf(vm->no_pageout, sizeof(vm->no_pageout),
				 "region %u is not registered with MODE_WP (needed to hold writes during page-out)", i);
			return;
		}
	}
	if (vm->uffd_features & UFFD_F_WP_ASYNC) {
		snprintf(vm->no_pageout, sizeof(vm->no_pageout),
			 "the uffd has UFFD_FEATURE_WP_ASYNC (writes cannot be held during page-out)");
		return;
	}
	vm->can_pageout = true;
}

static int wp(struct pg_vm *vm, uint64_t addr, bool on)
{
	struct uffdio_writeprotect w = {
		.range = { .start = addr, .len = PG_PAGE },
		.mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	return ioctl(vm->uffd, UFFDIO_WRITEPROTECT, &w) == 0 ? 0 : -errno;
}

static bool all_zero(const void *p)
{
	const uint64_t *w = p;

	for (unsigned i = 0; i < PG_PAGE / 8; i++)
		if (w[i])
			return false;
	return true;
}

void pg_pageout_note_zero(struct pg_vm *vm, uint64_t idx)
{
	if (!vm->can_pageout)
		return;
	pm_flags_set(&vm->pm, idx, PM_F_ZEROFILL);
	/* A full ring forgets its oldest entry: CLOCK will still find that page. */
	vm->zero_ring[(vm->zero_head + vm->zero_count) % PG_ZERO_RING] = idx;
	if (vm->zero_count < PG_ZERO_RING)
		vm->zero_count++;
	else
		vm->zero_head = (vm->zero_head + 1) % PG_ZERO_RING;
}

/* Zero-filled pages first, then CLOCK: up to @p want victims into @p out, IN_FLIGHT. */
static unsigned pick(struct pg_vm *vm, uint64_t *out, unsigned want)
{
	struct pagemap *pm = &vm->pm;
	unsigned n = 0;

	while (n < want && vm->zero_count) {
		uint64_t i = vm->zero_ring[vm->zero_head];

		vm->zero_head = (vm->zero_head + 1) % PG_ZERO_RING;
		vm->zero_count--;
		/* Stale entries (paged out, freed, re-faulted since) lost the flag. */
		if (pm_get(pm, i)->state != PM_LOCAL || !(pm_get(pm, i)->flags & PM_F_ZEROFILL))
			continue;
		pm_flags_clear(pm, i, PM_F_ZEROFILL);
		pm_set_in_flight(pm, i);
		out[n++] = i;
	}

	for (uint64_t steps = 0; steps < 2 * pm->npages && n < want; steps++) {
		uint64_t i = vm->clock_hand;
		const struct pm_entry *e = pm_get(pm, i);

		vm->clock_hand = (i + 1) % pm->npages;
		if (e->state != PM_LOCAL)
			continue;
		if (e->flags & PM_F_ACCESSED) {
			pm_flags_clear(pm, i, PM_F_ACCESSED);
			if (!(e->flags & PM_F_WP) && wp(vm, pg_page_hva(vm, i), true) == 0)
				pm_flags_set(pm, i, PM_F_WP);
			continue;
		}
		/* IN_FLIGHT at once: a hand that wraps around must not pick it twice. */
		pm_set_in_flight(pm, i);
		out[n++] = i;
	}
	return n;
}

static const struct pg_region *region_of(const struct pg_vm *vm, uint64_t idx)
{
	for (unsigned i = 0; i < vm->nregions; i++) {
		const struct pg_region *r = &vm->regions[i];

		if (idx >= r->first_page && idx < r->first_page + r->size / PG_PAGE)
			return r;
	}
	return NULL;
}

static unsigned pageout_batch(struct pg_vm *vm, unsigned want)
{
	static uint64_t victims[PAGER_MAX_PAGEOUT_BATCH];
	static struct rs_op ops[PAGER_MAX_PAGEOUT_BATCH];
	static uint8_t zero[PAGER_MAX_PAGEOUT_BATCH];
	static uint32_t opof[PAGER_MAX_PAGEOUT_BATCH];
	struct remote_store *rs = vm->pg->rs;
	struct pagemap *pm = &vm->pm;
	unsigned n, nops = 0, done = 0;

	if (want > PAGER_MAX_PAGEOUT_BATCH)
		want = PAGER_MAX_PAGEOUT_BATCH;
	n = pick(vm, victims, want);
	/* 1. hold writes; 2. IN_FLIGHT and copy */
	for (unsigned k = 0; k < n; k++) {
		uint64_t i = victims[k];
		const struct pg_region *r = region_of(vm, i);
		ssize_t got;

		zero[k] = 2;   /* skipped */
		if (!(pm_get(pm, i)->flags & PM_F_WP) && wp(vm, pg_page_hva(vm, i), true) < 0) {
			pm_set_local(pm, i);
			continue;
		}
		pm_flags_set(pm, i, PM_F_WP);
		got = pread(r->memfd, rs_bounce(rs, k), PG_PAGE, (off_t)(r->offset + (i - r->first_page) * PG_PAGE));
		if (got != (ssize_t)PG_PAGE) {
			pm_set_local(pm, i);
			wp(vm, pg_page_hva(vm, i), false);
			pm_flags_clear(pm, i, PM_F_WP);
			continue;
		}
		zero[k] = all_zero(rs_bounce(rs, k)) ? 1 : 0;
		if (zero[k])
			continue;
		/* 3. a slot, then one batch of WRITEs */
		if (rs_alloc(rs, &ops[nops].server, &ops[nops].slot, NULL)) {
			zero[k] = 3;   /* abort */
			continue;
		}
		ops[nops].buf = k;
		opof[k] = nops++;
	}
	if (nops)
		(void)rs_io(rs, FX_OP_WRITE, ops, nops);
	/* 4. punch and publish, or undo */
	for (unsigned k = 0; k < n; k++) {
		uint64_t i = victims[k];
		const struct pg_region *r = region_of(vm, i);
		bool ok = zero[k] == 1 || (zero[k] == 0 && ops[opof[k]].status == 0);

		if (zero[k] == 2)
			continue;
		if (ok && fallocate(r->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				    (off_t)(r->offset + (i - r->first_page) * PG_PAGE), PG_PAGE) < 0) {
			LOG_ERR("vm %s: punching page %llu: %s", vm->id, (unsigned long long)i, strerror(errno));
			ok = false;
		}
		if (!ok) {
			if (zero[k] == 0)
				rs_release(rs, ops[opof[k]].server, ops[opof[k]].slot);
			pm_flags_clear(pm, i, PM_F_DROPPED);
			pm_set_local(pm, i);
			pm_flags_clear(pm, i, PM_F_WP);
			wp(vm, pg_page_hva(vm, i), false);   /* also wakes a waiting writer */
			vm->c.pageout_aborted++;
			continue;
		}
		if (pm_get(pm, i)->flags & PM_F_DROPPED) {
			/* Freed while in flight (pagemap contract): the copy is not needed. */
			if (zero[k] == 0)
				rs_release(rs, ops[opof[k]].server, ops[opof[k]].slot);
			pm_set_unused(pm, i);
			done++;
			continue;
		}
		pm_flags_clear(pm, i, PM_F_WP | PM_F_ACCESSED | PM_F_DIRTY | PM_F_PREFETCH);
		if (zero[k] == 1) {
			pm_set_unused(pm, i);
			vm->c.zero_pages_dropped++;
			vm->c.bytes_not_transferred += PG_PAGE;
		} else {
			pm_set_remote(pm, i, ops[opof[k]].server, ops[opof[k]].slot);
			vm->c.pages_paged_out++;
		}
		done++;
	}
	return done;
}

/*
 * Hysteresis: once page-out runs it goes down to budget - slack, so that the
 * next faults find room without paging out one page each (page-out batches
 * its WRITEs; one page per fault would double the fault latency).
 */
static uint64_t slack(const struct pg_vm *vm)
{
	uint64_t s = vm->pg->cfg->pageout_batch;

	if (s > vm->budget_pages / 8)
		s = vm->budget_pages / 8;
	return s;
}

/* Page out until resident + @p incoming <= @p target. */
static void pageout_to(struct pg_vm *vm, uint64_t incoming, uint64_t target)
{
	unsigned rounds = 0;

	while (pg_resident(vm) + incoming > target) {
		uint64_t need = pg_resident(vm) + incoming - target;
		unsigned got;

		if (!vm->can_pageout || !rs_any_alive(vm->pg->rs)) {
			if (pg_resident(vm) + incoming <= vm->budget_pages)
				return;   /* only the slack is missing: not a refusal */
			vm->c.pageout_refused++;
			if (!vm->pageout_refusal_logged) {
				LOG_WARN("vm %s: over its budget (%llu pages resident, budget %llu) but page-out is "
					 "refused: %s", vm->id, (unsigned long long)pg_resident(vm),
					 (unsigned long long)vm->budget_pages,
					 vm->can_pageout ? "no memory server is reachable" : vm->no_pageout);
				vm->pageout_refusal_logged = true;
			}
			return;
		}
		if (need > vm->pg->cfg->pageout_batch)
			need = vm->pg->cfg->pageout_batch;
		got = pageout_batch(vm, (unsigned)need);
		if (got == 0 || ++rounds > 64) {
			if (got == 0)
				LOG_DEBUG("vm %s: page-out made no progress", vm->id);
			return;
		}
	}
}

void pg_pageout_make_room(struct pg_vm *vm, uint64_t incoming)
{
	if (!vm->budget_pages || vm->dead || vm->failed || mig_no_pageout(vm))
		return;
	if (pg_resident(vm) + incoming > vm->budget_pages)
		pageout_to(vm, incoming, vm->budget_pages - slack(vm));
}

void pg_pageout_background(struct pg_vm *vm)
{
	uint64_t s;

	if (!vm->budget_pages || vm->dead || vm->failed || mig_no_pageout(vm))
		return;
	s = slack(vm);
	/* Like kswapd: start below the budget, so that faults rarely wait for page-out. */
	if (pg_resident(vm) > vm->budget_pages - s / 2)
		pageout_to(vm, 0, vm->budget_pages - s);
}

void pg_pageout_unprotect_all(struct pg_vm *vm)
{
	for (uint64_t i = 0; i < vm->pm.npages; i++) {
		if (!(pm_get(&vm->pm, i)->flags & PM_F_WP))
			continue;
		pm_flags_clear(&vm->pm, i, PM_F_WP);
		if (pm_get(&vm->pm, i)->state == PM_LOCAL)
			(void)wp(vm, pg_page_hva(vm, i), false);
	}
}
