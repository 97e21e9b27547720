/**
 * @file access_sampler.h
 * The access sampler: tells the phase planner (planner.h) which blocks of a
 * guest's memory were read and which were written in each sample period,
 * from userfaultfd faults on a memfd-backed (shmem) range.
 *
 * How one sample period sees accesses:
 *  - access_sampler_arm() write-protects the whole range (UFFDIO_WRITEPROTECT)
 *    and then has the range's PTEs dropped through the caller's drop
 *    callback. The memfd keeps the data, so the next touch of a page raises a
 *    MINOR fault (the page is in the page cache but not mapped);
 *  - a MINOR fault notes READ (WRITE if the fault is a write) and maps the
 *    page back with UFFDIO_CONTINUE. The first fault in a block maps the
 *    whole block (the planner classifies blocks, not pages, so one fault per
 *    block and period is enough: at most two faults per block per period
 *    instead of two per page). A read maps it with UFFDIO_CONTINUE_MODE_WP,
 *    so that a later write in the same period still traps; a write maps it
 *    writable;
 *  - a write-protect fault notes WRITE and un-protects the block (which
 *    wakes the writer);
 *  - access_sampler_period_end() closes the period in the planner.
 * Writes are caught by write-protection alone, even where the drop has not
 * happened (yet): dropping only adds the reads.
 *
 * Why synchronous uffd-wp and never UFFD_FEATURE_WP_ASYNC: with WP_ASYNC the
 * kernel resolves write-protect faults itself (it just clears the bit and
 * the write proceeds; PAGEMAP_SCAN reports it later). That would be a cheaper
 * write sampler, but the feature is chosen once per userfaultfd, for every
 * range on it, and the pager's page-out needs the synchronous kind: it
 * write-protects a page, copies it out and punches it, and relies on a
 * racing write *waiting* in the uffd queue until the copy is done (see
 * dataplane/pager/pageout.c). A uffd with WP_ASYNC is therefore refused here
 * (-ENOTSUP), as page-out refuses it.
 *
 * UFFDIO_CONTINUE_MODE_WP (Linux 6.4) is used when the kernel has it; on an
 * older kernel (EINVAL the first time) the sampler logs a note once and maps
 * reads with CONTINUE(DONTWAKE) + WRITEPROTECT + WAKE instead: same result,
 * two more ioctls per read fault.
 *
 * The drop callback: the PTEs belong to whoever maps the memory. In-process
 * (tests, ferry-perf plan) it is madvise(MADV_DONTNEED) on the shared
 * mapping; in the pager it will be a request to the VMM, which owns the
 * mapping. For a SHARED memfd mapping MADV_DONTNEED frees nothing (the pages
 * stay in the memfd); but when the uffd has UFFD_FEATURE_EVENT_REMOVE the
 * kernel still reports a UFFD_EVENT_REMOVE for the range, and the madvise
 * *waits* until that event has been read. Hence: (1) the owner of the uffd
 * must not treat those REMOVE events as guest frees. SEEK_DATA (or mincore)
 * on the memfd tells them apart - the data is still there after a sampler
 * drop, gone after a guest's MADV_REMOVE or punch - but only once the madvise
 * has returned: the kernel sends the event *before* it zaps or punches, so a
 * check made when the event is read still finds a guest-freed page's data
 * (tests/unit/migrate/test_access_sampler.c saw exactly that). The pager
 * integration therefore holds REMOVE events that overlap a drop it asked the
 * VMM for, and checks them when the VMM reports that drop done; (2) with
 * EVENT_REMOVE the drop must not block the thread that reads the uffd (make
 * it asynchronous, or do it on another thread). A NULL drop samples writes
 * only.
 *
 * Faults that are not the sampler's (MISSING faults: a hole in the memfd;
 * addresses outside the range; non-fault events) are returned as "not mine"
 * (0) for the owner to handle. A page the owner fills with UFFDIO_COPY after a
 * MISSING fault is mapped writable and its accesses are not seen until the
 * next arm; the owner may planner_note() it itself.
 *
 * Sharing write-protection with an owner (the pager's page-out and CLOCK
 * also write-protect pages): the owner handles WP faults on pages it holds
 * protected itself and passes the rest here; with access_sampler_set_hold()
 * the sampler's block-wide un-protect leaves the owner's held pages
 * protected.
 *
 * Threads: not thread-safe. Every call (arm, handle, period_end, stop) from
 * the one thread that reads the uffd. Messages read from the uffd after an
 * arm count in the new period even if the access began just before it.
 */
#ifndef FERRY_MIGRATE_ACCESS_SAMPLER_H
#define FERRY_MIGRATE_ACCESS_SAMPLER_H

#include <linux/userfaultfd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/common/ferry_err.h"
#include "dataplane/migrate/planner.h"

struct access_sampler;

/**
 * Drop the PTEs of [addr, addr+len) in the process that maps the guest's
 * memory (the data must stay in the memfd). @return 0 or a negative errno
 * with @p err filled.
 */
typedef int access_sampler_drop_fn(void *ctx, void *addr, size_t len, struct ferry_err *err);

/** True when the owner holds @p page (index in the range) write-protected for its own reason. */
typedef bool access_sampler_hold_fn(void *ctx, uint64_t page);

struct access_sampler_stats {
	uint64_t periods;           /**< periods closed */
	uint64_t minor_faults;      /**< MINOR faults handled (reads and writes) */
	uint64_t minor_write_faults;/**< of which writes */
	uint64_t wp_faults;         /**< write-protect faults handled */
	uint64_t unsampled_faults;  /**< handled between period_end and the next arm (not noted) */
	uint64_t not_mine;          /**< messages returned 0 */
	uint64_t eexist;            /**< CONTINUE found the page mapped already (woken instead) */
	uint64_t drop_errors;       /**< arm's drop callback failed (that period samples writes only) */
	uint64_t ioctl_errors;      /**< CONTINUE/WRITEPROTECT/WAKE failed */
	uint64_t mm_changing;       /**< CONTINUE refused (EAGAIN: an event unread): woken to fault again */
	bool continue_wp;           /**< the kernel has UFFDIO_CONTINUE_MODE_WP (known after the first read) */
};

/**
 * A sampler for [base, base+len) (page-aligned, registered on @p uffd with
 * MODE_MINOR and MODE_WP; the uffd needs UFFD_FEATURE_MINOR_SHMEM and
 * UFFD_FEATURE_WP_HUGETLBFS_SHMEM and must not have UFFD_FEATURE_WP_ASYNC)
 * feeding @p pl, which must cover len / 4096 pages. @p drop may be NULL
 * (writes only). The sampler does not own @p uffd or @p pl.
 */
struct access_sampler *access_sampler_create(int uffd, void *base, size_t len, struct planner *pl,
					     access_sampler_drop_fn *drop, void *drop_ctx, struct ferry_err *err);
/**
 * Make @p s one of several samplers feeding its planner (a VM with several
 * memory regions): its range's first page is planner page @p first_page, and
 * arm / period_end / stop no longer close the planner's period. The owner
 * ends every part's period (access_sampler_period_end()), then calls
 * planner_sample_end() once, then arms the parts again. Before the first arm;
 * -EINVAL when the planner does not cover the range at that place.
 */
int access_sampler_set_part(struct access_sampler *s, uint64_t first_page, struct ferry_err *err);
/** Stop (if not stopped) and free. */
void access_sampler_destroy(struct access_sampler *s);

/** Let the owner keep some pages write-protected (see the file comment). */
void access_sampler_set_hold(struct access_sampler *s, access_sampler_hold_fn *held, void *ctx);
/** Behave as on a kernel without UFFDIO_CONTINUE_MODE_WP (tests the fallback). */
void access_sampler_no_continue_wp(struct access_sampler *s);

/**
 * Start a sample period: write-protect the range, then drop its PTEs.
 * A failing drop is counted and reported, but the period runs (writes only).
 */
int access_sampler_arm(struct access_sampler *s, struct ferry_err *err);

/**
 * Handle one message read from the uffd.
 * @return 1 consumed (the faulting thread has been woken), 0 not the
 * sampler's (the owner handles it), < 0 a failed ioctl (negative errno; the
 * owner should wake the page itself).
 */
int access_sampler_handle(struct access_sampler *s, const struct uffd_msg *msg);

/** Close the period: the planner gets the period's classes (planner_sample_end()). */
void access_sampler_period_end(struct access_sampler *s);

/**
 * Stop sampling for good: un-protect the range and map back every page
 * whose PTE is still dropped, so the sampler causes no further faults.
 * A period under way is closed first.
 */
int access_sampler_stop(struct access_sampler *s, struct ferry_err *err);

void access_sampler_stats(const struct access_sampler *s, struct access_sampler_stats *out);

/** The in-process drop: madvise(MADV_DONTNEED) on the caller's own shared mapping (ctx unused). */
int access_sampler_drop_madvise(void *ctx, void *addr, size_t len, struct ferry_err *err);

#endif /* FERRY_MIGRATE_ACCESS_SAMPLER_H */
