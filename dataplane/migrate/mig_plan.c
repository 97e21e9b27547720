/*
 * The access sampler and phase planner of a planned migration (mig_plan.h).
 */
#include "dataplane/migrate/mig_plan.h"

#include <errno.h>
#include <linux/userfaultfd.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <string.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/migrate/access_sampler.h"
#include "dataplane/migrate/mig_int.h"
#include "dataplane/migrate/planner.h"
#include "dataplane/pager/pager.h"
#include "dataplane/pager/vmm_requests.h"

/* The VMM side is absent from some test links: planned mode then samples writes only. */
extern int pg_vmm_request_drop_ptes(struct pg_vm *vm, const struct ferry_vmmp_range *r, size_t n,
				    pg_vmm_done_fn *done, void *ctx) __attribute__((weak));

/* The sampler of one memory region: regions' pages follow each other in the planner as in the pagemap. */
struct plan_part {
	struct mig_plan *p;
	const struct pg_region *r;
	struct access_sampler *as;
};

struct mig_plan {
	struct pg_vm *vm;
	struct planner *pl;
	struct plan_part part[FERRY_VMMP_MAX_REGIONS];
	unsigned nparts;             /* 0: writes seen by the pager only (mig_plan_note_write) */
	bool period_open;            /* the parts are armed: the planner's period runs */
	uint64_t period_ns, next_ns;
	unsigned periods_left;
	bool continuous;             /* periods_left does not count down */
	bool sampling, started;
	uint64_t drops_sent;
	/* This period's drops, one per part, gathered into one DROP_PTES (drop_flush). */
	struct ferry_vmmp_range drops[FERRY_VMMP_MAX_REGIONS];
	unsigned ndrops;
	struct access_sampler_stats last;   /* counters (summed over the parts) already added to vm->c */
};

static void drop_done(struct pg_vm *vm, int status, void *ctx)
{
	(void)ctx;
	if (status < 0)
		LOG_DEBUG("vm %s: sampler DROP_PTES: %s", vm->id, strerror(-status));
}

/*
 * access_sampler_drop_fn: the VMM owns the mapping. Each part's range is
 * gathered and drop_flush() asks the VMM once for all of them: one
 * madvise pass per period, not one per region (while the VMM's madvise
 * runs, the kernel refuses UFFDIO_CONTINUE with EAGAIN, so back-to-back
 * drops make the read faults of the other regions spin).
 */
static int drop_via_vmm(void *ctx, void *addr, size_t len, struct ferry_err *err)
{
	struct plan_part *part = ctx;
	struct mig_plan *p = part->p;

	if (p->ndrops == FERRY_VMMP_MAX_REGIONS)
		return ferry_err_set(err, ENOSPC, "DROP_PTES: more than %u ranges", FERRY_VMMP_MAX_REGIONS);
	p->drops[p->ndrops].gpa = part->r->gpa + ((uint64_t)(uintptr_t)addr - part->r->hva);
	p->drops[p->ndrops].len = len;
	p->ndrops++;
	return 0;
}

/* Ask the VMM for this period's drops (asynchronously: the loop must keep reading the uffd, the
 * VMM's madvise waits until its REMOVE events are read). A refusal leaves the period writes only. */
static void drop_flush(struct mig_plan *p)
{
	int rc;

	if (!p->ndrops)
		return;
	rc = pg_vmm_request_drop_ptes(p->vm, p->drops, p->ndrops, drop_done, NULL);
	if (rc < 0) {
		LOG_WARN("vm %s: sampler DROP_PTES of %u ranges: %s (this period sees writes only)", p->vm->id,
			 p->ndrops, strerror(-rc));
	} else {
		p->drops_sent++;
		p->vm->c.sampler_drops++;
	}
	p->ndrops = 0;
}

static bool held_by_pager(void *ctx, uint64_t page)
{
	struct plan_part *part = ctx;
	struct pg_vm *vm = part->p->vm;

	page += part->r->first_page;
	return page < vm->pm.npages && (pm_get(&vm->pm, page)->flags & PM_F_WP);
}

/* A sampler for region @p r, or a warning why it has none (its pages are then seen clean). */
static void add_part(struct mig_plan *p, const struct pg_region *r, bool reads)
{
	struct plan_part *part = &p->part[p->nparts];
	struct ferry_err why = { 0 };
	struct pg_vm *vm = p->vm;

	if (r->memfd < 0 || !(r->modes & FERRY_VMMP_MODE_WP)) {
		LOG_WARN("vm %s: region at gpa 0x%llx not sampled (%s): the planner sees only the writes the pager "
			 "handles itself there", vm->id, (unsigned long long)r->gpa,
			 r->memfd < 0 ? "anonymous memory" : "not registered WP");
		return;
	}
	part->p = p;
	part->r = r;
	part->as = access_sampler_create(vm->uffd, (void *)(uintptr_t)r->hva, r->size, p->pl,
					 reads ? drop_via_vmm : NULL, part, &why);
	if (part->as && access_sampler_set_part(part->as, r->first_page, &why) < 0) {
		access_sampler_destroy(part->as);
		part->as = NULL;
	}
	if (!part->as) {
		LOG_WARN("vm %s: region at gpa 0x%llx not sampled: %s", vm->id, (unsigned long long)r->gpa, why.msg);
		return;
	}
	access_sampler_set_hold(part->as, held_by_pager, part);
	p->nparts++;
}

/* Close the period under way (if any) in every part and then once in the planner. */
static void parts_period_end(struct mig_plan *p)
{
	if (!p->period_open)
		return;
	for (unsigned i = 0; i < p->nparts; i++)
		access_sampler_period_end(p->part[i].as);
	planner_sample_end(p->pl);
	p->period_open = false;
}

/* Close the period under way and open the next: every part protected and dropped again. */
static void parts_arm(struct mig_plan *p)
{
	struct ferry_err err = { 0 };

	parts_period_end(p);
	pg_vm_drain_events(p->vm);   /* an unread REMOVE makes UFFDIO_WRITEPROTECT fail */
	for (unsigned i = 0; i < p->nparts; i++)
		if (access_sampler_arm(p->part[i].as, &err) < 0)
			LOG_WARN("vm %s: %s", p->vm->id, err.msg);
	drop_flush(p);
	p->period_open = true;
}

struct mig_plan *mig_plan_start(struct pg_vm *vm, bool continuous, struct ferry_err *err)
{
	const struct pager_config *cfg = vm->pg->cfg;
	struct mig_plan *p = calloc(1, sizeof(*p));
	uint64_t sampled = 0;
	bool reads, with_reads = false;

	if (!p) {
		ferry_err_set(err, ENOMEM, "planner: no memory");
		return NULL;
	}
	p->vm = vm;
	p->pl = planner_create(vm->pm.npages, cfg->plan_block_pages, cfg->plan_window, err);
	if (!p->pl)
		goto fail;
	if (cfg->plan_history > 1 && planner_set_history(p->pl, cfg->plan_history, err) < 0)
		goto fail;
	p->period_ns = (uint64_t)cfg->plan_period_ms * 1000000u;
	p->periods_left = cfg->plan_periods;
	p->continuous = continuous;
	p->sampling = true;
	/*
	 * A sampler per region in a memory file registered WP (and MINOR for the reads): a VMM
	 * such as QEMU registers RAM below and above the PCI hole as two regions.
	 */
	reads = pg_vmm_request_drop_ptes && vm->kind == PG_VM_VMMP;
	for (unsigned i = 0; i < vm->nregions; i++) {
		bool minor = reads && (vm->regions[i].modes & FERRY_VMMP_MODE_MINOR);
		unsigned had = p->nparts;

		add_part(p, &vm->regions[i], minor);
		if (p->nparts > had) {
			sampled += vm->regions[i].size / PG_PAGE;
			with_reads |= minor;
		}
	}
	if (p->nparts == 0) {
		LOG_WARN("vm %s: planned migration without the access sampler (no region is a WP-registered memory "
			 "file): the planner sees only the writes the pager handles itself", vm->id);
		return p;
	}
	LOG_INFO("vm %s: access sampler on %u of %u regions (%llu of %llu pages): %s, %u periods of %u ms, blocks "
		 "of %u pages, windows of %u periods, history %u", vm->id, p->nparts, vm->nregions,
		 (unsigned long long)sampled, (unsigned long long)vm->pm.npages,
		 with_reads ? "reads (DROP_PTES + MINOR faults) and writes (uffd-wp)"
			 : "writes only (uffd-wp; no MINOR registration or no VMM server requests)",
		 continuous ? 0 : cfg->plan_periods, cfg->plan_period_ms, cfg->plan_block_pages, cfg->plan_window,
		 cfg->plan_history);
	return p;

fail:
	planner_destroy(p->pl);
	free(p);
	return NULL;
}

static void sync_counters(struct mig_plan *p)
{
	struct access_sampler_stats st = { 0 }, one;
	struct pg_counters *c = &p->vm->c;

	if (!p->nparts)
		return;
	for (unsigned i = 0; i < p->nparts; i++) {
		access_sampler_stats(p->part[i].as, &one);
		st.minor_faults += one.minor_faults;
		st.minor_write_faults += one.minor_write_faults;
		st.wp_faults += one.wp_faults;
	}
	st.periods = planner_samples(p->pl);
	c->sampler_periods += st.periods - p->last.periods;
	c->sampler_read_faults += (st.minor_faults - st.minor_write_faults) -
				  (p->last.minor_faults - p->last.minor_write_faults);
	c->sampler_write_faults += (st.wp_faults + st.minor_write_faults) - (p->last.wp_faults + p->last.minor_write_faults);
	p->last = st;
}

static void finish_sampling(struct mig_plan *p)
{
	struct ferry_err err = { 0 };
	struct plan_rates rt;
	struct pg_vm *vm = p->vm;

	p->sampling = false;
	if (p->nparts) {
		parts_period_end(p);
		for (unsigned i = 0; i < p->nparts; i++)
			if (access_sampler_stop(p->part[i].as, &err) < 0)
				LOG_WARN("vm %s: stopping the access sampler: %s", vm->id, err.msg);
		/* stop un-protected the whole range: protect again what the pager holds */
		for (uint64_t i = 0; i < vm->pm.npages; i++) {
			if (pm_get(&vm->pm, i)->flags & PM_F_WP) {
				struct uffdio_writeprotect w = { .range = { .start = pg_page_hva(vm, i), .len = PG_PAGE },
								 .mode = UFFDIO_WRITEPROTECT_MODE_WP };

				if (ioctl(vm->uffd, UFFDIO_WRITEPROTECT, &w) < 0)
					pm_flags_clear(&vm->pm, i, PM_F_WP);
			}
		}
		sync_counters(p);
	} else {
		planner_sample_end(p->pl);
		vm->c.sampler_periods++;
	}
	planner_rates(p->pl, &rt);
	vm->c.plan_windows += rt.windows;
	vm->c.plan_pred_clean += rt.n_c;
	vm->c.plan_pred_read += rt.n_r;
	vm->c.plan_pred_write += rt.n_w;
	vm->c.plan_w_given_c += rt.confusion[PLAN_CLEAN][PLAN_WRITE];
	vm->c.plan_w_given_r += rt.confusion[PLAN_READ][PLAN_WRITE];
	vm->c.plan_c_given_w += rt.confusion[PLAN_WRITE][PLAN_CLEAN];
	vm->c.plan_r_given_w += rt.confusion[PLAN_WRITE][PLAN_READ];
	LOG_INFO("planner of VM %s: periods=%llu read_faults=%llu write_faults=%llu drops=%llu windows=%llu "
		 "pred_clean=%llu pred_read=%llu pred_write=%llu A(w|c)=%.4f A(w|r)=%.4f A(c|w)=%.4f A(r|w)=%.4f",
		 vm->id, (unsigned long long)planner_samples(p->pl), (unsigned long long)vm->c.sampler_read_faults,
		 (unsigned long long)vm->c.sampler_write_faults, (unsigned long long)p->drops_sent,
		 (unsigned long long)rt.windows, (unsigned long long)rt.n_c, (unsigned long long)rt.n_r,
		 (unsigned long long)rt.n_w, rt.w_given_c, rt.w_given_r, rt.c_given_w, rt.r_given_w);
}

bool mig_plan_tick(struct mig_plan *p, uint64_t now_ns)
{
	if (!p->sampling)
		return true;
	if (!p->started) {
		p->started = true;
		p->next_ns = now_ns + p->period_ns;
		if (p->nparts)
			parts_arm(p);
		return false;
	}
	if (now_ns < p->next_ns)
		return false;
	if (!p->continuous && --p->periods_left == 0) {
		finish_sampling(p);
		return true;
	}
	p->next_ns += p->period_ns;
	if (p->next_ns < now_ns)
		p->next_ns = now_ns + p->period_ns;
	if (p->nparts) {
		parts_arm(p);
		sync_counters(p);
	} else {
		planner_sample_end(p->pl);
		p->vm->c.sampler_periods++;
	}
	return false;
}

void mig_plan_finish_soon(struct mig_plan *p)
{
	if (p->continuous && p->sampling) {
		p->continuous = false;
		p->periods_left = 1;
		if (!p->started)
			p->periods_left = 2;   /* never armed: one whole period first */
	}
}

bool mig_plan_has_sampler(const struct mig_plan *p)
{
	return p && p->nparts && p->sampling;
}

int mig_plan_fault(struct mig_plan *p, uint64_t idx, const struct pg_fault *f)
{
	struct uffd_msg m = { .event = UFFD_EVENT_PAGEFAULT };
	int rc;

	if (!p->nparts)
		return 0;
	/* MINOR faults are only ever the sampler's (also after it stopped: a fault queued before the
	 * stop maps its page back); WP faults while it samples, unless the pager holds the page. */
	if (!(f->flags & UFFD_PAGEFAULT_FLAG_MINOR)) {
		if (!p->sampling || !(f->flags & UFFD_PAGEFAULT_FLAG_WP) || (pm_get(&p->vm->pm, idx)->flags & PM_F_WP))
			return 0;
	}
	m.arg.pagefault.address = f->addr;
	m.arg.pagefault.flags = f->flags;
	for (unsigned i = 0; i < p->nparts; i++) {
		const struct pg_region *r = p->part[i].r;

		if (f->addr < r->hva || f->addr - r->hva >= r->size)
			continue;
		rc = access_sampler_handle(p->part[i].as, &m);
		if (rc < 0)
			p->vm->c.fault_errors++;   /* the sampler woke the thread; it faults again */
		return rc != 0;
	}
	return 0;
}

void mig_plan_note_write(struct mig_plan *p, uint64_t idx)
{
	if (p->sampling)
		planner_note(p->pl, idx, PLAN_WRITE);
}

bool mig_plan_defer(const struct mig_plan *p, uint64_t idx)
{
	return planner_defer(p->pl, idx);
}

uint32_t mig_plan_write_age(const struct mig_plan *p, uint64_t idx)
{
	return planner_write_age(p->pl, idx);
}

void mig_plan_destroy(struct mig_plan *p)
{
	if (!p)
		return;
	for (unsigned i = 0; i < p->nparts; i++)
		access_sampler_destroy(p->part[i].as);
	planner_destroy(p->pl);
	free(p);
}
