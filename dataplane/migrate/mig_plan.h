/**
 * @file mig_plan.h
 * The phase planner of a PLANNED migration, fed by the real access sampler
 * (access_sampler.h) on the source VM (issue 5): at the migration's start the
 * source samples the VM's reads and writes for `plan_periods` periods of
 * `plan_period_ms` (pager config, [migrate] plan_*), in blocks of
 * `plan_block_pages` pages and windows of `plan_window` periods; then the
 * sampler stops (every page mapped back, the range un-protected) and the
 * migration asks mig_plan_defer() per page: predicted-write blocks go
 * post-copy, the rest pre-copy.
 *
 * How the sampler sits in the pager (all on the loop thread):
 *  - writes: sync uffd-wp. The sampler write-protects the whole range each
 *    period; the pager's fault path hands it every WP fault on a page the
 *    pager does not hold protected itself (PM_F_WP: page-out / the
 *    migration's push), and MINOR faults (mig_plan_fault());
 *  - reads: the VMM drops its PTEs (pg_vmm_request_drop_ptes(), DROP_PTES)
 *    so that the next touch is a MINOR fault; the VMM's madvise raises
 *    UFFD_EVENT_REMOVE, which the pager skips while the drop is outstanding
 *    (pg_vmm_dropping(), uffd_loop.c): the data stays in the memfd, it is not
 *    a guest free;
 *  - one sampler per region (access_sampler_set_part()), all feeding the one
 *    planner, whose pages are the VM's pagemap indices; the plan ends each
 *    period in every part, then once in the planner;
 *  - needs: the VM registered over the VMM protocol with server requests,
 *    its regions backed by a memory file and registered MINOR + WP on a
 *    uffd with UFFD_FEATURE_MINOR_SHMEM (guestsim --uffd-modes
 *    missing,wp,minor). A region without MINOR (or a VM without server
 *    requests) is sampled for writes only; a region that is anonymous or not
 *    registered WP is not sampled: there the planner sees only the writes
 *    the pager's own WP faults and installs report (mig_plan_note_write()).
 * With `[migrate] plan_continuous = 1` the engine samples every registered,
 * not parked VM all the time (vm->plan); a planned migration takes that
 * sampler over and plans at its current period's end (the history of every
 * period since registration is in the planner), any other mode stops it first.
 * The planner's misprediction rates (planner.h: A(w|c), A(w|r), A(c|w),
 * A(r|w)) over the sampled windows go to the VM's counters (STATS: plan_*,
 * sampler_*) and the pager log ("planner of VM ...").
 */
#ifndef FERRY_MIGRATE_MIG_PLAN_H
#define FERRY_MIGRATE_MIG_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "dataplane/common/ferry_err.h"

struct pg_vm;
struct pg_fault;
struct mig_plan;

/**
 * Start sampling @p vm now (config from vm->pg->cfg): @p continuous for good
 * (until mig_plan_finish_soon()), else for `plan_periods` periods. NULL on no
 * memory (err filled).
 */
struct mig_plan *mig_plan_start(struct pg_vm *vm, bool continuous, struct ferry_err *err);
/** A continuous sampler handed to a planned migration: sampling ends at the current period's end. */
void mig_plan_finish_soon(struct mig_plan *p);
/** Stop the sampler (if running) and free. */
void mig_plan_destroy(struct mig_plan *p);
/** True while sampling: the caller sets PM_F_WP on no page for the migration meanwhile. */
bool mig_plan_has_sampler(const struct mig_plan *p);
/**
 * Advance the periods (call every loop tick). @return true once sampling is
 * over (the sampler stopped, counters and log written), false meanwhile.
 */
bool mig_plan_tick(struct mig_plan *p, uint64_t now_ns);
/** A fault of the VM: 1 the sampler took it (the faulting thread was woken), 0 not its. */
int mig_plan_fault(struct mig_plan *p, uint64_t idx, const struct pg_fault *f);
/** A write the pager saw itself (WP fault on a page it held, install) while sampling. */
void mig_plan_note_write(struct mig_plan *p, uint64_t idx);
/** True: page @p idx is predicted written in the current window (send it post-copy). */
bool mig_plan_defer(const struct mig_plan *p, uint64_t idx);
/** Periods since page @p idx's block was last written (planner_write_age()): 0 = the last one. */
uint32_t mig_plan_write_age(const struct mig_plan *p, uint64_t idx);

#endif /* FERRY_MIGRATE_MIG_PLAN_H */
