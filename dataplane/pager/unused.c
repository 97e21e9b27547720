/*
 * FCtrans: unused memory is a page state.
 *
 * At REGISTER every page starts UNUSED or LOCAL (or REMOTE in the snapshot
 * file, for Firecracker):
 *  - memory-file regions: lseek(SEEK_DATA/SEEK_HOLE) over the region's file
 *    range; data -> LOCAL, holes -> UNUSED. Never-written shmem pages are
 *    holes, so a fresh VM is almost entirely UNUSED;
 *  - anonymous regions: /proc/<VMM pid>/pagemap (pid from SO_PEERCRED):
 *    present or swapped -> LOCAL, otherwise UNUSED. Without a readable
 *    pagemap the region is refused (treating populated memory as UNUSED
 *    would hand the guest zero pages over its data... it cannot, in fact,
 *    since a populated anonymous page never raises a MISSING fault, but the
 *    counters would lie, so we say so instead);
 *  - Firecracker regions: the snapshot file's range: data -> REMOTE in the
 *    snapshot "server" (slot = file page), holes -> UNUSED; without a
 *    snapshot file everything is UNUSED (a fresh boot from the pool).
 *
 * Later, UFFD_EVENT_REMOVE (madvise DONTNEED/REMOVE, e.g. virtio-balloon free
 * page reporting) and FREE_HINT make ranges UNUSED and release their pool
 * slots; for hints on a memory file the range is also punched out of the file
 * so the memory is really freed (the kernel zaps the VMM's PTEs; the next
 * access faults and gets a zero page).
 *
 * REMOVE on a memory file is not a free by itself: MADV_DONTNEED on a SHARED
 * mapping only drops the VMM's PTEs, the data stays in the file and the next
 * access maps it again; MADV_REMOVE punches the file. The event is the same
 * for both, and it is delivered before the kernel punches (the madvise goes
 * on once the event is read). So a REMOVE on a memory file only queues a
 * re-check of its resident pages: on the next loop tick, pages that are holes
 * in the file (SEEK_DATA) become UNUSED, pages that still hold data stay
 * LOCAL (they were only unmapped). The pager never punches on REMOVE. Pages
 * that are REMOTE (paged out: already holes) in a REMOVEd range are taken as
 * discarded (UNUSED, slot released): the VMMs that discard shared guest
 * memory use MADV_REMOVE or fallocate, and a DONTNEED of a non-resident page
 * is a no-op for them.
 */
#include "dataplane/pager/pager.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/migrate/migrate.h"

#define PM_PRESENT (UINT64_C(1) << 63)
#define PM_SWAPPED (UINT64_C(1) << 62)

/* Mark [off, off + len) of @p fd, mapped at page @p first, by data/hole. */
static int scan_file(struct pg_vm *vm, int fd, uint64_t off, uint64_t len, uint64_t first, bool snapshot)
{
	uint64_t pos = off, end = off + len;

	while (pos < end) {
		off_t data = lseek(fd, (off_t)pos, SEEK_DATA);

		if (data < 0) {
			if (errno == ENXIO)
				return 0;   /* no data after pos */
			return -errno;
		}
		if ((uint64_t)data >= end)
			return 0;
		off_t hole = lseek(fd, data, SEEK_HOLE);

		if (hole < 0)
			return -errno;
		uint64_t a = (uint64_t)data & ~(uint64_t)(PG_PAGE - 1);
		uint64_t b = (uint64_t)hole < end ? ((uint64_t)hole + PG_PAGE - 1) & ~(uint64_t)(PG_PAGE - 1) : end;

		for (uint64_t p = a; p < b; p += PG_PAGE) {
			uint64_t idx = first + (p - off) / PG_PAGE;

			if (idx >= vm->pm.npages || pm_get(&vm->pm, idx)->state != PM_UNUSED)
				continue;
			if (snapshot)
				pm_set_remote(&vm->pm, idx, PM_SERVER_SNAPSHOT, (uint32_t)(p / PG_PAGE));
			else
				pm_set_local(&vm->pm, idx);
		}
		pos = b > (uint64_t)data ? b : (uint64_t)data + PG_PAGE;
	}
	return 0;
}

static int scan_anon(struct pg_vm *vm, const struct pg_region *r)
{
	char path[64];
	uint64_t buf[512];
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)vm->pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (uint64_t p = 0; p < r->size / PG_PAGE;) {
		uint64_t want = r->size / PG_PAGE - p;
		ssize_t got;

		if (want > 512)
			want = 512;
		got = pread(fd, buf, want * 8, (off_t)(((r->hva / PG_PAGE) + p) * 8));
		if (got <= 0) {
			int e = got < 0 ? -errno : -EIO;

			close(fd);
			return e;
		}
		for (uint64_t k = 0; k < (uint64_t)got / 8; k++)
			if (buf[k] & (PM_PRESENT | PM_SWAPPED))
				pm_set_local(&vm->pm, r->first_page + p + k);
		p += (uint64_t)got / 8;
	}
	close(fd);
	return 0;
}

int pg_unused_scan(struct pg_vm *vm, char *why, size_t why_len)
{
	for (unsigned i = 0; i < vm->nregions; i++) {
		struct pg_region *r = &vm->regions[i];
		int rc;

		if (vm->kind == PG_VM_FC) {
			if (!vm->snap)
				continue;   /* everything UNUSED */
			if (r->offset + r->size > vm->snap_len) {
				snprintf(why, why_len, "region %u: file range beyond the end of the snapshot file", i);
				return FERRY_VMMP_E_OUT_OF_RANGE;
			}
			rc = scan_file(vm, vm->pg->snap_fd, r->offset, r->size, r->first_page, true);
			if (rc) {
				snprintf(why, why_len, "region %u: SEEK_DATA/SEEK_HOLE on the snapshot file: %s", i,
					 strerror(-rc));
				return FERRY_VMMP_E_INTERNAL;
			}
			continue;
		}
		if (r->memfd >= 0) {
			rc = scan_file(vm, r->memfd, r->offset, r->size, r->first_page, false);
			if (rc) {
				snprintf(why, why_len, "region %u: SEEK_DATA/SEEK_HOLE on its memory file: %s", i,
					 strerror(-rc));
				return FERRY_VMMP_E_INTERNAL;
			}
		} else {
			rc = scan_anon(vm, r);
			if (rc) {
				snprintf(why, why_len, "region %u: anonymous memory and /proc/%d/pagemap unreadable: %s", i,
					 (int)vm->pid, strerror(-rc));
				return FERRY_VMMP_E_UNSUPPORTED;
			}
		}
	}
	return 0;
}

uint64_t pg_unused_range(struct pg_vm *vm, uint64_t first_page, uint64_t npages, bool punch)
{
	uint64_t changed = pm_set_range_unused(&vm->pm, first_page, npages, pg_vm_release_slot, vm);

	mig_note_unused(vm, first_page, npages);
	if (punch) {
		for (unsigned i = 0; i < vm->nregions; i++) {
			const struct pg_region *r = &vm->regions[i];
			uint64_t a = first_page, b = first_page + npages;
			uint64_t ra = r->first_page, rb = r->first_page + r->size / PG_PAGE;

			if (r->memfd < 0 || b <= ra || a >= rb)
				continue;
			if (a < ra)
				a = ra;
			if (b > rb)
				b = rb;
			/* The memory is really returned: the kernel zaps the VMM's PTEs, the
			 * next access faults on an UNUSED page and gets a zero page. */
			if (fallocate(r->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				      (off_t)(r->offset + (a - ra) * PG_PAGE), (off_t)((b - a) * PG_PAGE)) < 0)
				LOG_WARN("vm %s: punching [%llu, +%llu) pages out of its memory file: %s", vm->id,
					 (unsigned long long)a, (unsigned long long)(b - a), strerror(errno));
		}
	}
	return changed;
}

static void queue_recheck(struct pg_vm *vm, uint64_t first, uint64_t n)
{
	/* The madvise goes on (and punches, for MADV_REMOVE) only after we read the
	 * event: look at the file a little later. If the VMM's thread is slower than
	 * that, the page stays LOCAL over a hole: a later fault gets a zero page
	 * (local_missing_faults), which is still the right content. */
	vm->recheck_after = ferry_mono_ns() + PG_RECHECK_DELAY_NS;
	if (vm->nrecheck == PG_RECHECK_MAX) {
		vm->recheck_all = true;
		return;
	}
	vm->recheck[vm->nrecheck].first = first;
	vm->recheck[vm->nrecheck].n = n;
	vm->nrecheck++;
}

/* Is page @p idx (of a memory-file region) a hole in its file? */
static bool file_hole(const struct pg_vm *vm, uint64_t idx)
{
	for (unsigned i = 0; i < vm->nregions; i++) {
		const struct pg_region *r = &vm->regions[i];

		if (r->memfd < 0 || idx < r->first_page || idx >= r->first_page + r->size / PG_PAGE)
			continue;
		off_t off = (off_t)(r->offset + (idx - r->first_page) * PG_PAGE);
		off_t d = lseek(r->memfd, off, SEEK_DATA);

		return d < 0 ? errno == ENXIO : d >= off + (off_t)PG_PAGE;
	}
	return false;
}

static void recheck_range(struct pg_vm *vm, uint64_t first, uint64_t n)
{
	for (uint64_t p = first; p < first + n && p < vm->pm.npages; p++) {
		if (pm_get(&vm->pm, p)->state == PM_LOCAL && file_hole(vm, p))
			vm->c.removed_pages += pg_unused_range(vm, p, 1, false);
	}
}

void pg_unused_recheck(struct pg_vm *vm)
{
	if (ferry_mono_ns() < vm->recheck_after)
		return;
	if (vm->recheck_all) {
		recheck_range(vm, 0, vm->pm.npages);
	} else {
		for (unsigned i = 0; i < vm->nrecheck; i++)
			recheck_range(vm, vm->recheck[i].first, vm->recheck[i].n);
	}
	vm->nrecheck = 0;
	vm->recheck_all = false;
}

void pg_unused_remove_event(struct pg_vm *vm, uint64_t start, uint64_t end)
{
	vm->c.remove_events++;
	for (unsigned i = 0; i < vm->nregions; i++) {
		const struct pg_region *r = &vm->regions[i];
		uint64_t a = start > r->hva ? start : r->hva;
		uint64_t b = end < r->hva + r->size ? end : r->hva + r->size;

		if (a >= b)
			continue;
		a = (a - r->hva + PG_PAGE - 1) / PG_PAGE;   /* whole pages only */
		b = (b - r->hva) / PG_PAGE;
		if (a >= b)
			continue;
		if (r->memfd < 0) {
			/* Anonymous memory: DONTNEED/REMOVE free it. */
			vm->c.removed_pages += pg_unused_range(vm, r->first_page + a, b - a, false);
			continue;
		}
		/* Memory file: non-resident pages are discarded now; resident ones are
		 * re-checked against the file once the madvise is over (see above). */
		for (uint64_t p = r->first_page + a; p < r->first_page + b; p++) {
			if (pm_get(&vm->pm, p)->state == PM_REMOTE)
				vm->c.removed_pages += pg_unused_range(vm, p, 1, false);
		}
		queue_recheck(vm, r->first_page + a, b - a);
	}
	LOG_DEBUG("vm %s: REMOVE [0x%llx, 0x%llx)", vm->id, (unsigned long long)start, (unsigned long long)end);
}

/*
 * Bytes of guest-physical [gpa, gpa + len) that regions cover; with @p apply,
 * makes them unused. *@p anon is set when an anonymous region is covered.
 */
static uint64_t hint_cover(struct pg_vm *vm, uint64_t gpa, uint64_t len, bool apply, uint64_t *changed,
			   bool *anon)
{
	uint64_t covered = 0;

	for (unsigned i = 0; i < vm->nregions; i++) {
		const struct pg_region *r = &vm->regions[i];
		uint64_t a = gpa > r->gpa ? gpa : r->gpa;
		uint64_t b = gpa + len < r->gpa + r->size ? gpa + len : r->gpa + r->size;

		if (a >= b)
			continue;
		covered += b - a;
		if (r->memfd < 0 && anon)
			*anon = true;
		if (apply)
			*changed += pg_unused_range(vm, r->first_page + (a - r->gpa) / PG_PAGE, (b - a) / PG_PAGE, true);
	}
	return covered;
}

int pg_unused_hints(struct pg_vm *vm, const struct ferry_vmmp_hints *h, uint64_t *bytes)
{
	uint64_t changed = 0;

	for (uint32_t i = 0; i < h->count; i++) {
		struct ferry_vmmp_range r;
		bool anon = false;

		ferry_vmmp_hint_entry(h, i, &r);
		if (hint_cover(vm, r.gpa, r.len, false, NULL, &anon) != r.len)
			return FERRY_VMMP_E_OUT_OF_RANGE;
		/*
		 * Anonymous memory: the pager has no file to punch and cannot
		 * drop another process's pages, so the VMM would keep them mapped
		 * and a later write would go unseen while the pagemap says UNUSED
		 * (a migration would then skip live data). The VMM must discard
		 * them itself with madvise, which reaches us as UFFD_EVENT_REMOVE.
		 */
		if (anon)
			return FERRY_VMMP_E_UNSUPPORTED;
	}
	for (uint32_t i = 0; i < h->count; i++) {
		struct ferry_vmmp_range r;

		ferry_vmmp_hint_entry(h, i, &r);
		hint_cover(vm, r.gpa, r.len, true, &changed, NULL);
	}
	vm->c.hint_pages += changed;
	/* Each hinted page that held data is a page that will never be paged in or out again. */
	vm->c.bytes_not_transferred += changed * PG_PAGE;
	*bytes = changed * PG_PAGE;
	return FERRY_VMMP_E_OK;
}
