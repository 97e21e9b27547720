/*
 * Fault resolution.
 *
 * A batch of faults (already read from the uffd, events handled first) is
 * deduplicated by page: several threads faulting on one page give one item
 * with a waiter count ("coalesced_faults"), and one transfer. Every item is
 * set IN_FLIGHT before anything is moved, so page-out (which only picks
 * LOCAL pages) never races with it, and room is made under the budget for
 * all of them at once (budget + at most one batch).
 *
 * MISSING faults, by page state:
 *   UNUSED          -> UFFDIO_ZEROPAGE at once: nothing is fetched (FCtrans);
 *   REMOTE(server)  -> batched one-sided READs into the bounce buffer, then
 *                      UFFDIO_COPY; the slot is released (the page is LOCAL
 *                      and its only copy is in the VM again);
 *   REMOTE(snapshot)-> UFFDIO_COPY straight from the read-only file mapping;
 *   LOCAL           -> cannot happen through Ferry: shmem raises MISSING only
 *                      when the file has no page at that offset, and a LOCAL
 *                      page is in the file (swap keeps it in the file too).
 *                      It happens only when the VMM itself punched the file
 *                      (fallocate) without an madvise -> no REMOVE event. The
 *                      data is gone by the VMM's own doing: zero page, counted
 *                      in local_missing_faults.
 * WP faults (a write racing with page-out, see pageout.c): a LOCAL page is
 * unprotected (which wakes the writer); a page that went REMOTE or UNUSED is
 * just woken, the access retries and comes back as a MISSING fault.
 *
 * ioctl results: EEXIST (someone else populated the page) -> treat it as
 * LOCAL and UFFDIO_WAKE; EAGAIN (the VMM's mm is changing: events such as
 * REMOVE are pending) -> revert the item and hand the fault back to the loop,
 * which reads and applies the pending events and then retries; ESRCH/ENOENT
 * (the VMM's mm is gone) -> the VM is torn down.
 *
 * Prefetch: when a fault hits the page after the previous fault's (a
 * sequential scan), up to `prefetch` REMOTE pages after it in the same region
 * come in the same batch, installed with UFFDIO_COPY_MODE_DONTWAKE (nobody
 * waits on them).
 */
#include "dataplane/pager/pager.h"

#include <errno.h>
#include <linux/userfaultfd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/migrate/migrate.h"

#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1)   /* Linux 6.4; Debian 12's headers predate it */
#endif

#define MAX_ITEMS (64u + PAGER_MAX_PREFETCH)

enum kind { K_ZERO, K_LOCAL_MISSING, K_SNAP, K_FETCH, K_PREFETCH, K_MIG /* still at a migration source */ };

struct item {
	uint64_t idx, addr;
	enum kind kind;
	uint8_t old_state;
	struct pm_entry old;
	uint64_t fault_flags;
	bool done;
};

uint64_t pg_page_hva(const struct pg_vm *vm, uint64_t idx)
{
	for (unsigned i = 0; i < vm->nregions; i++) {
		const struct pg_region *r = &vm->regions[i];

		if (idx >= r->first_page && idx < r->first_page + r->size / PG_PAGE)
			return r->hva + (idx - r->first_page) * PG_PAGE;
	}
	return 0;
}

void pg_wake(struct pg_vm *vm, uint64_t addr)
{
	struct uffdio_range r = { .start = addr, .len = PG_PAGE };

	if (vm->uffd >= 0 && ioctl(vm->uffd, UFFDIO_WAKE, &r) < 0 && errno != ENOENT && errno != ESRCH)
		LOG_DEBUG("vm %s: UFFDIO_WAKE 0x%llx: %s", vm->id, (unsigned long long)addr, strerror(errno));
}

static int ioctl_zero(struct pg_vm *vm, uint64_t addr)
{
	struct uffdio_zeropage z = { .range = { .start = addr, .len = PG_PAGE }, .mode = 0 };

	if (ioctl(vm->uffd, UFFDIO_ZEROPAGE, &z) == 0)
		return 0;
	return -errno;
}

static int ioctl_copy(struct pg_vm *vm, uint64_t addr, const void *src, bool dontwake)
{
	struct uffdio_copy c = {
		.dst = addr,
		.src = (uintptr_t)src,
		.len = PG_PAGE,
		.mode = dontwake ? UFFDIO_COPY_MODE_DONTWAKE : 0,
	};

	if (ioctl(vm->uffd, UFFDIO_COPY, &c) == 0)
		return 0;
	return -errno;
}

static void revert(struct pg_vm *vm, const struct item *it)
{
	struct pagemap *pm = &vm->pm;

	if (pm_get(pm, it->idx)->flags & PM_F_DROPPED) {
		/* Made UNUSED while in flight (pagemap contract): finish it as UNUSED. */
		if (pm_get(pm, it->idx)->flags & PM_F_HAS_SLOT)
			pg_vm_release_slot(vm, it->idx, pm_get(pm, it->idx));
		pm_set_unused(pm, it->idx);
		return;
	}
	switch (it->old_state) {
	case PM_UNUSED:
		pm_set_unused(pm, it->idx);
		break;
	case PM_LOCAL:
		pm_set_local(pm, it->idx);
		break;
	case PM_REMOTE:
		pm_set_remote(pm, it->idx, it->old.server, it->old.slot);
		break;
	default:
		break;
	}
}

/* Common result handling. @return true when the page is now LOCAL. */
static bool settle(struct pg_vm *vm, struct item *it, int rc, struct pg_fault *retry, unsigned *nretry, bool *gone)
{
	if (rc == 0 || rc == -EEXIST) {
		if (rc == -EEXIST) {
			vm->c.eexist++;
			pg_wake(vm, it->addr);
		}
		if (pm_get(&vm->pm, it->idx)->flags & PM_F_HAS_SLOT) {
			pg_vm_release_slot(vm, it->idx, pm_get(&vm->pm, it->idx));
			pm_clear_slot(&vm->pm, it->idx);
		}
		pm_set_local(&vm->pm, it->idx);
		pm_flags_clear(&vm->pm, it->idx, PM_F_DIRTY | PM_F_WP | PM_F_DROPPED | PM_F_ZEROFILL);
		pm_flags_set(&vm->pm, it->idx, it->kind == K_PREFETCH ? PM_F_PREFETCH : PM_F_ACCESSED);
		/* An installed page is writable: an outgoing migration must send it again. */
		mig_note_write(vm, it->idx);
		return true;
	}
	revert(vm, it);
	if (rc == -EAGAIN || (rc == -EIO && it->kind == K_FETCH)) {
		/* EAGAIN: retried once the pending events are read. EIO (a failed READ): the
		 * page stays REMOTE and the fault is retried on the next tick; if its server
		 * is lost, the VM fails and the page is poisoned instead. */
		if (it->kind != K_PREFETCH) {
			if (rc == -EIO)
				vm->c.fault_errors++;
			else
				vm->c.eagain_retries++;
			retry[(*nretry)++] = (struct pg_fault){ it->addr, it->fault_flags };
		}
		return false;
	}
	if (rc == -ESRCH || rc == -ENOENT || rc == -EBADF) {
		*gone = true;
		return false;
	}
	if (it->kind != K_PREFETCH) {
		vm->c.fault_errors++;
		LOG_ERR("vm %s: cannot resolve fault at 0x%llx (page %llu): %s", vm->id, (unsigned long long)it->addr,
			(unsigned long long)it->idx, strerror(-rc));
	}
	return false;
}

static void handle_wp(struct pg_vm *vm, uint64_t idx, uint64_t addr)
{
	vm->c.wp_faults++;
	mig_note_write(vm, idx);
	if (pm_get(&vm->pm, idx)->state == PM_LOCAL) {
		struct uffdio_writeprotect wp = { .range = { .start = addr, .len = PG_PAGE }, .mode = 0 };

		pm_flags_set(&vm->pm, idx, PM_F_ACCESSED | PM_F_DIRTY);
		pm_flags_clear(&vm->pm, idx, PM_F_WP);
		if (ioctl(vm->uffd, UFFDIO_WRITEPROTECT, &wp) == 0)
			return;
		LOG_DEBUG("vm %s: un-write-protect 0x%llx: %s", vm->id, (unsigned long long)addr, strerror(errno));
	}
	pg_wake(vm, addr);
}

/*
 * A MINOR fault nobody samples: the page is in the memory file and only the
 * VMM's PTE is gone (it dropped it itself, or a sampler stopped between its
 * drop and the fault). Map it back, keeping Ferry's write-protection; left
 * unanswered, the vCPU would wait forever.
 */
static void handle_minor(struct pg_vm *vm, uint64_t idx, uint64_t addr)
{
	bool keep_wp = pm_get(&vm->pm, idx)->flags & PM_F_WP;
	struct uffdio_continue c = { .range = { .start = addr, .len = PG_PAGE },
				     .mode = keep_wp ? UFFDIO_CONTINUE_MODE_WP : 0 };

	vm->c.minor_faults++;
	if (ioctl(vm->uffd, UFFDIO_CONTINUE, &c) == 0)
		return;
	if (keep_wp && errno == EINVAL) {
		/* No CONTINUE_MODE_WP in this kernel: map without waking, protect, then wake. */
		struct uffdio_writeprotect wp = { .range = c.range, .mode = UFFDIO_WRITEPROTECT_MODE_WP };

		c.mode = UFFDIO_CONTINUE_MODE_DONTWAKE;
		if (ioctl(vm->uffd, UFFDIO_CONTINUE, &c) == 0 && ioctl(vm->uffd, UFFDIO_WRITEPROTECT, &wp) == 0) {
			pg_wake(vm, addr);
			return;
		}
	}
	/* EEXIST: mapped meanwhile; EAGAIN: events pending. Either way the woken vCPU
	 * touches the page again and, if it is still missing, faults once more. */
	if (errno != EEXIST && errno != EAGAIN)
		LOG_DEBUG("vm %s: continue 0x%llx: %s", vm->id, (unsigned long long)addr, strerror(errno));
	pg_wake(vm, addr);
}

unsigned pg_fault_batch(struct pg_vm *vm, const struct pg_fault *f, unsigned n, struct pg_fault *retry)
{
	static struct item items[MAX_ITEMS];
	static struct rs_op ops[RS_BOUNCE_PAGES];
	unsigned nitems = 0, nretry = 0, nfetch = 0;
	bool gone = false;
	struct pagemap *pm = &vm->pm;

	if (n > 64)
		n = 64;
	for (unsigned i = 0; i < n; i++) {
		uint64_t addr = f[i].addr & ~(uint64_t)(PG_PAGE - 1);
		struct pg_region *r = pg_vm_region_by_hva(vm, addr);
		uint64_t idx;
		bool dup = false;

		if (!r) {
			vm->c.fault_errors++;
			LOG_WARN("vm %s: fault at 0x%llx outside every registered region: woken", vm->id,
				 (unsigned long long)addr);
			pg_wake(vm, addr);
			continue;
		}
		idx = r->first_page + (addr - r->hva) / PG_PAGE;
		if ((vm->mig_src || vm->plan) && mig_sample_fault(vm, idx, &f[i]))
			continue;   /* a planned migration's access sampler took it */
		if (f[i].flags & UFFD_PAGEFAULT_FLAG_MINOR) {
			handle_minor(vm, idx, addr);
			continue;
		}
		if (f[i].flags & UFFD_PAGEFAULT_FLAG_WP) {
			handle_wp(vm, idx, addr);
			continue;
		}
		for (unsigned k = 0; k < nitems; k++) {
			if (items[k].idx == idx) {
				/* Someone waits on it now: install it with a wake-up. */
				if (items[k].kind == K_PREFETCH)
					items[k].kind = K_FETCH;
				items[k].fault_flags = f[i].flags;
				dup = true;
				break;
			}
		}
		if (dup) {
			vm->c.coalesced_faults++;
			continue;
		}
		const struct pm_entry *e = pm_get(pm, idx);
		struct item *it = &items[nitems];

		*it = (struct item){ .idx = idx, .addr = addr, .old_state = e->state, .old = *e, .fault_flags = f[i].flags };
		switch (e->state) {
		case PM_UNUSED:
			it->kind = K_ZERO;
			break;
		case PM_LOCAL:
			it->kind = K_LOCAL_MISSING;
			break;
		case PM_REMOTE:
			it->kind = e->server == PM_SERVER_SNAPSHOT ? K_SNAP : e->server == PG_SERVER_MIGSRC ? K_MIG : K_FETCH;
			break;
		default:
			/* IN_FLIGHT outside a batch cannot happen: wake and let it retry. */
			pg_wake(vm, addr);
			continue;
		}
		pm_set_in_flight(pm, idx);
		nitems++;
		/* Sequential access: bring the following remote pages along. */
		if ((idx == vm->last_fault + 1 || idx == vm->last_fault) && vm->pg->cfg->prefetch) {
			uint64_t want = vm->pg->cfg->prefetch;
			uint64_t end = r->first_page + r->size / PG_PAGE;

			if (vm->budget_pages && want > vm->budget_pages / 4)
				want = vm->budget_pages / 4;
			for (uint64_t p = idx + 1; p < end && p <= idx + want && nitems < MAX_ITEMS; p++) {
				const struct pm_entry *pe = pm_get(pm, p);

				if (pe->state != PM_REMOTE || pe->server == PG_SERVER_MIGSRC)
					continue;
				items[nitems] = (struct item){ .idx = p, .addr = r->hva + (p - r->first_page) * PG_PAGE,
							       .old_state = pe->state, .old = *pe,
							       .kind = pe->server == PM_SERVER_SNAPSHOT ? K_SNAP : K_PREFETCH };
				pm_set_in_flight(pm, p);
				nitems++;
			}
		}
		vm->last_fault = idx;
	}
	if (nitems == 0)
		return 0;

	pg_pageout_make_room(vm, 0);

	for (unsigned k = 0; k < nitems && !gone; k++) {
		struct item *it = &items[k];
		int rc;

		switch (it->kind) {
		case K_ZERO:
		case K_LOCAL_MISSING:
			rc = ioctl_zero(vm, it->addr);
			if (settle(vm, it, rc, retry, &nretry, &gone)) {
				pg_pageout_note_zero(vm, it->idx);
				if (it->kind == K_ZERO)
					vm->c.zero_faults++;
				else
					vm->c.local_missing_faults++;
				vm->c.bytes_not_transferred += PG_PAGE;
			}
			it->done = true;
			break;
		case K_SNAP:
			if (!vm->snap || (uint64_t)it->old.slot * PG_PAGE + PG_PAGE > vm->snap_len)
				rc = -EINVAL;
			else
				rc = ioctl_copy(vm, it->addr, vm->snap + (uint64_t)it->old.slot * PG_PAGE,
						it->kind == K_PREFETCH);
			if (settle(vm, it, rc, retry, &nretry, &gone))
				vm->c.snapshot_faults++;
			it->done = true;
			break;
		case K_MIG: {
			/* Post-copy: READ from the migration source, then install. */
			static uint8_t page[PG_PAGE] __attribute__((aligned(PG_PAGE)));

			rc = mig_fetch_page(vm, it->idx, page);
			if (rc == 0)
				rc = ioctl_copy(vm, it->addr, page, false);
			else if (rc != -EAGAIN)
				rc = -EFAULT;   /* the source is lost: the VM fails (done by the engine) */
			if (settle(vm, it, rc, retry, &nretry, &gone))
				vm->c.remote_faults++;
			it->done = true;
			break;
		}
		default:
			break;
		}
	}

	/* Pool pages: READ in batches of the bounce buffer, then install. */
	for (unsigned k = 0; k < nitems && !gone;) {
		unsigned first = k;

		nfetch = 0;
		for (; k < nitems && nfetch < RS_BOUNCE_PAGES; k++) {
			if (items[k].done)
				continue;
			ops[nfetch] = (struct rs_op){ .server = items[k].old.server, .slot = items[k].old.slot,
						      .buf = nfetch };
			nfetch++;
		}
		if (nfetch == 0)
			break;
		(void)rs_io(vm->pg->rs, FX_OP_READ, ops, nfetch);
		unsigned o = 0;

		for (unsigned j = first; j < k; j++) {
			struct item *it = &items[j];
			int rc;

			if (it->done)
				continue;
			it->done = true;
			rc = ops[o].status;
			if (rc == 0 && !gone)
				rc = ioctl_copy(vm, it->addr, rs_bounce(vm->pg->rs, ops[o].buf), it->kind == K_PREFETCH);
			else if (rc)
				rc = -EIO;
			o++;
			if (gone) {
				revert(vm, it);
				continue;
			}
			if (settle(vm, it, rc, retry, &nretry, &gone)) {
				vm->c.pages_paged_in++;
				if (it->kind == K_PREFETCH)
					vm->c.pages_prefetched++;
				else
					vm->c.remote_faults++;
			}
		}
	}
	for (unsigned k = 0; k < nitems; k++)
		if (!items[k].done || gone)
			if (pm_get(pm, items[k].idx)->state == PM_IN_FLIGHT)
				revert(vm, &items[k]);
	if (gone)
		pg_vm_teardown(vm, false, "the VMM's address space is gone");
	return nretry;
}

int pg_fault_bring_back(struct pg_vm *vm)
{
	static struct rs_op ops[RS_BOUNCE_PAGES];
	static uint64_t idxs[RS_BOUNCE_PAGES];
	struct pagemap *pm = &vm->pm;
	int first_err = 0;

	for (uint64_t i = pm_next(pm, PM_REMOTE, 0); i < pm->npages;) {
		unsigned n = 0;

		for (; i < pm->npages && n < RS_BOUNCE_PAGES; i = pm_next(pm, PM_REMOTE, i + 1)) {
			const struct pm_entry *e = pm_get(pm, i);

			if (e->server == PM_SERVER_SNAPSHOT || e->server == PG_SERVER_MIGSRC)
				continue;
			ops[n] = (struct rs_op){ .server = e->server, .slot = e->slot, .buf = n };
			idxs[n++] = i;
		}
		if (n == 0)
			break;
		(void)rs_io(vm->pg->rs, FX_OP_READ, ops, n);
		for (unsigned k = 0; k < n; k++) {
			const struct pm_entry *e = pm_get(pm, idxs[k]);
			int rc = ops[k].status;

			if (rc == 0)
				rc = ioctl_copy(vm, pg_page_hva(vm, idxs[k]), rs_bounce(vm->pg->rs, k), false);
			if (rc == 0 || rc == -EEXIST) {
				pg_vm_release_slot(vm, idxs[k], e);
				pm_clear_slot(pm, idxs[k]);
				pm_set_local(pm, idxs[k]);
				vm->c.pages_paged_in++;
			} else if (!first_err) {
				first_err = rc;
			}
		}
		if (first_err)
			return first_err;
	}
	return 0;
}

/* Linux 6.6 UFFDIO_POISON; Debian 12's headers predate it. */
#ifndef UFFDIO_POISON
#define _UFFDIO_POISON (0x08)
struct uffdio_poison {
	struct uffdio_range range;
	__u64 mode;
	__s64 updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)
#endif
#define UFFD_F_POISON (UINT64_C(1) << 14)

void pg_poison_lost(struct pg_vm *vm)
{
	uint64_t n = 0;

	if (vm->uffd < 0)
		return;
	if (!(vm->uffd_features & UFFD_F_POISON)) {
		LOG_WARN("vm %s: the uffd lacks UFFD_FEATURE_POISON: accesses to its lost pages will block", vm->id);
		return;
	}
	for (uint64_t i = 0; i < vm->pm.npages; i++) {
		const struct pm_entry *e = pm_get(&vm->pm, i);
		struct uffdio_poison p = { .range = { .start = pg_page_hva(vm, i), .len = PG_PAGE }, .mode = 0 };

		struct uffdio_writeprotect unwp = { .range = p.range, .mode = 0 };

		if (e->state != PM_REMOTE || e->server == PM_SERVER_SNAPSHOT || rs_alive(vm->pg->rs, e->server))
			continue;
		/* Page-out left a uffd-wp marker in the PTE, and POISON refuses to overwrite any
		 * marker: lifting the protection clears it (a woken fault re-faults and waits). */
		(void)ioctl(vm->uffd, UFFDIO_WRITEPROTECT, &unwp);
		if (ioctl(vm->uffd, UFFDIO_POISON, &p) == 0)
			n++;
		else
			LOG_DEBUG("vm %s: UFFDIO_POISON page %llu: %s", vm->id, (unsigned long long)i, strerror(errno));
	}
	LOG_WARN("vm %s: %llu lost pages poisoned (an access raises SIGBUS in the VMM)", vm->id, (unsigned long long)n);
}
