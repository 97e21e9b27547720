/*
 * VM registrations: create from a checked REGISTER (or a Firecracker
 * handshake), tear down, fail, and their counters.
 */
#include "dataplane/pager/pager.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/migrate/migrate.h"
#include "dataplane/vmm/ferry_vmm.h"

struct pg_vm *pg_vm_find(struct pager *pg, const char *id)
{
	for (struct pg_vm *vm = pg->vms; vm; vm = vm->next)
		if (!vm->dead && strcmp(vm->id, id) == 0)
			return vm;
	return NULL;
}

static int why_set(char *why, size_t len, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int why_set(char *why, size_t len, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
	return code;
}

/* Is @p fd a userfaultfd? Its /proc link names the anon inode. */
static bool is_uffd(int fd)
{
	char path[64], link[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return false;
	link[n] = '\0';
	return strcmp(link, "anon_inode:[userfaultfd]") == 0;
}

struct pg_region *pg_vm_region_by_hva(struct pg_vm *vm, uint64_t hva)
{
	for (unsigned i = 0; i < vm->nregions; i++) {
		struct pg_region *r = &vm->regions[i];

		if (hva >= r->hva && hva - r->hva < r->size)
			return r;
	}
	return NULL;
}

int pg_vm_create(struct pager *pg, enum pg_vm_kind kind, const struct ferry_vmmp_register *reg, int *fds,
		 unsigned nfds, pid_t pid, struct pg_conn *conn, struct pg_vm **out, char *why, size_t why_len)
{
	struct pg_vm *vm = NULL;
	uint64_t npages = 0;
	int code;

	if (pg_vm_find(pg, reg->vm_id)) {
		code = why_set(why, why_len, FERRY_VMMP_E_EXISTS, "VM id '%s' is already registered", reg->vm_id);
		goto fail;
	}
	if (nfds < 1 || !is_uffd(fds[0])) {
		code = why_set(why, why_len, FERRY_VMMP_E_FD_MISMATCH, "descriptor 0 is not a userfaultfd");
		goto fail;
	}
	{
		struct stat mine, other;

		/* Two registrations on one uffd would split its events between them. */
		if (fstat(fds[0], &mine) == 0) {
			for (struct pg_vm *v = pg->vms; v; v = v->next) {
				if (!v->dead && v->uffd >= 0 && fstat(v->uffd, &other) == 0 && other.st_ino == mine.st_ino &&
				    other.st_dev == mine.st_dev) {
					code = why_set(why, why_len, FERRY_VMMP_E_EXISTS,
						       "this userfaultfd is already registered (VM '%s')", v->id);
					goto fail;
				}
			}
		}
	}
	for (unsigned i = 1; i < nfds; i++) {
		struct stat st;

		if (fstat(fds[i], &st) < 0 || !S_ISREG(st.st_mode)) {
			code = why_set(why, why_len, FERRY_VMMP_E_FD_MISMATCH,
				       "descriptor %u is not a memory file (memfd/shm/hugetlbfs)", i);
			goto fail;
		}
	}
	for (unsigned i = 0; i < reg->region_count; i++) {
		const struct ferry_vmmp_region *r = &reg->regions[i];

		if (r->page_size != PG_PAGE) {
			code = why_set(why, why_len, FERRY_VMMP_E_UNSUPPORTED,
				       "region %u: page size %u: this pager serves 4 KiB pages only", i, r->page_size);
			goto fail;
		}
		if (r->fd_slot >= nfds) {
			code = why_set(why, why_len, FERRY_VMMP_E_FD_MISMATCH, "region %u: no descriptor %u", i,
				       r->fd_slot);
			goto fail;
		}
		if (r->fd_slot) {
			struct stat st;

			if (fstat(fds[r->fd_slot], &st) < 0 || (uint64_t)st.st_size < r->offset + r->size) {
				code = why_set(why, why_len, FERRY_VMMP_E_OUT_OF_RANGE,
					       "region %u: [offset, offset + size) lies beyond the end of its memory file",
					       i);
				goto fail;
			}
		}
		npages += r->size / PG_PAGE;
	}
	/* The codec refuses overlaps within one descriptor slot; two slots may still name
	 * one file (dup). Aliased pages would have two pagemap entries: refuse. */
	for (unsigned i = 0; i < reg->region_count; i++) {
		for (unsigned j = i + 1; j < reg->region_count; j++) {
			const struct ferry_vmmp_region *a = &reg->regions[i], *b = &reg->regions[j];
			struct stat sa, sb;

			if (!a->fd_slot || !b->fd_slot || a->fd_slot == b->fd_slot)
				continue;
			if (fstat(fds[a->fd_slot], &sa) < 0 || fstat(fds[b->fd_slot], &sb) < 0 ||
			    sa.st_ino != sb.st_ino || sa.st_dev != sb.st_dev)
				continue;
			if (a->offset < b->offset + b->size && b->offset < a->offset + a->size) {
				code = why_set(why, why_len, FERRY_VMMP_E_OVERLAP,
					       "regions %u and %u map the same bytes of one memory file", i, j);
				goto fail;
			}
		}
	}

	vm = calloc(1, sizeof(*vm));
	if (!vm) {
		code = why_set(why, why_len, FERRY_VMMP_E_INTERNAL, "out of memory");
		goto fail;
	}
	if (pm_init(&vm->pm, npages)) {
		free(vm);
		vm = NULL;
		code = why_set(why, why_len, FERRY_VMMP_E_INTERNAL, "out of memory for the page table");
		goto fail;
	}
	vm->pg = pg;
	vm->kind = kind;
	vm->handle = ++pg->next_handle;
	snprintf(vm->id, sizeof(vm->id), "%s", reg->vm_id);
	vm->conn = conn;
	vm->pid = pid;
	vm->uffd = fds[0];
	vm->pidfd = -1;
	for (unsigned i = 1; i < nfds; i++)
		vm->memfds[vm->nmemfds++] = fds[i];
	vm->nregions = reg->region_count;
	npages = 0;
	for (unsigned i = 0; i < reg->region_count; i++) {
		const struct ferry_vmmp_region *r = &reg->regions[i];
		struct pg_region *g = &vm->regions[i];

		g->gpa = r->gpa;
		g->size = r->size;
		g->hva = r->hva;
		g->offset = r->offset;
		g->modes = r->modes;
		g->memfd = r->fd_slot ? fds[r->fd_slot] : -1;
		g->first_page = npages;
		npages += r->size / PG_PAGE;
	}
	if (ferry_vmm_uffd_features(vm->uffd, &vm->uffd_features) < 0)
		vm->uffd_features = reg->uffd_features;
	vm->budget_pages = pg->cfg->vm_budget / PG_PAGE;
	vm->last_fault = UINT64_MAX;
	if (kind == PG_VM_FC) {
		vm->snap = pg->snap;
		vm->snap_len = pg->snap_len;
	}
	code = pg_unused_scan(vm, why, why_len);
	if (code) {
		pm_destroy(&vm->pm);
		free(vm);
		vm = NULL;
		goto fail;
	}
	pg_pageout_setup(vm);
	if (pg_epoll_add(pg, vm->uffd, PG_EV_UFFD, vm, 0, &vm->ev_tag)) {
		pm_destroy(&vm->pm);
		free(vm);
		vm = NULL;
		code = why_set(why, why_len, FERRY_VMMP_E_INTERNAL, "epoll: %s", strerror(errno));
		goto fail;
	}
	vm->next = pg->vms;
	pg->vms = vm;
	pg->g.vms_registered++;
	LOG_INFO("vm %s (handle %llu, pid %d) registered: %u regions, %llu pages: %llu unused, %llu local, "
		 "%llu remote; uffd features 0x%llx; budget %llu pages; page-out %s%s",
		 vm->id, (unsigned long long)vm->handle, (int)pid, vm->nregions, (unsigned long long)vm->pm.npages,
		 (unsigned long long)pm_count(&vm->pm, PM_UNUSED), (unsigned long long)pm_count(&vm->pm, PM_LOCAL),
		 (unsigned long long)pm_count(&vm->pm, PM_REMOTE), (unsigned long long)vm->uffd_features,
		 (unsigned long long)vm->budget_pages, vm->can_pageout ? "on" : "off: ",
		 vm->can_pageout ? "" : vm->no_pageout);
	*out = vm;
	return FERRY_VMMP_E_OK;
fail:
	for (unsigned i = 0; i < nfds; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return code;
}

void pg_vm_release_slot(void *arg, uint64_t idx, const struct pm_entry *e)
{
	struct pg_vm *vm = arg;

	(void)idx;
	if (e->server == PM_SERVER_SNAPSHOT || e->server == PM_SERVER_NONE || e->server == PG_SERVER_MIGSRC)
		return;
	rs_release(vm->pg->rs, e->server, e->slot);
	vm->c.slots_released++;
}

/* Stop serving: the uffd leaves epoll and every descriptor is closed. */
static void stop_serving(struct pg_vm *vm)
{
	if (vm->pidfd >= 0) {
		pg_epoll_del(vm->pg, vm->pidfd, vm->pid_tag);
		close(vm->pidfd);
		vm->pidfd = -1;
	}
	if (vm->uffd < 0)
		return;
	pg_epoll_del(vm->pg, vm->uffd, vm->ev_tag);
	close(vm->uffd);
	vm->uffd = -1;
	for (unsigned i = 0; i < vm->nmemfds; i++)
		close(vm->memfds[i]);
	vm->nmemfds = 0;
	for (unsigned i = 0; i < vm->nregions; i++)
		vm->regions[i].memfd = -1;
}

static void release_all(struct pg_vm *vm)
{
	for (uint64_t i = 0; i < vm->pm.npages; i++) {
		const struct pm_entry *e = pm_get(&vm->pm, i);

		if (e->flags & PM_F_HAS_SLOT) {
			pg_vm_release_slot(vm, i, e);
			pm_clear_slot(&vm->pm, i);
		}
	}
}

static void add_totals(struct pg_counters *t, const struct pg_counters *c)
{
#define X(n) t->n += c->n;
	PG_VM_COUNTERS(X)
#undef X
}

void pg_vm_teardown(struct pg_vm *vm, bool bring_back, const char *why)
{
	if (vm->dead)
		return;
	mig_vm_gone(vm);
	if (bring_back && !vm->failed && vm->uffd >= 0) {
		int rc = pg_fault_bring_back(vm);

		pg_pageout_unprotect_all(vm);
		if (rc)
			LOG_WARN("vm %s: bringing pages back failed (%s); remote pages are lost to the VMM", vm->id,
				 strerror(-rc));
	}
	release_all(vm);
	stop_serving(vm);
	vm->dead = true;
	if (vm->conn)
		vm->conn->vm = NULL;
	vm->conn = NULL;
	add_totals(&vm->pg->totals, &vm->c);
	vm->pg->g.vms_torn_down++;
	LOG_INFO("vm %s (handle %llu) torn down: %s; faults zero=%llu remote=%llu snapshot=%llu, paged in=%llu "
		 "out=%llu, slots released=%llu, bytes not transferred=%llu",
		 vm->id, (unsigned long long)vm->handle, why, (unsigned long long)vm->c.zero_faults,
		 (unsigned long long)vm->c.remote_faults, (unsigned long long)vm->c.snapshot_faults,
		 (unsigned long long)vm->c.pages_paged_in, (unsigned long long)vm->c.pages_paged_out,
		 (unsigned long long)vm->c.slots_released, (unsigned long long)vm->c.bytes_not_transferred);
}

void pg_vm_hold(struct pg_vm *vm, bool on)
{
	struct epoll_event ev = { .events = on ? 0 : EPOLLIN, .data.ptr = vm->ev_tag };

	if (vm->uffd < 0 || !vm->ev_tag)
		return;
	if (epoll_ctl(vm->pg->epfd, EPOLL_CTL_MOD, vm->uffd, &ev) < 0)
		LOG_WARN("vm %s: %s its faults: %s", vm->id, on ? "holding" : "releasing", strerror(errno));
}

void pg_vm_fail(struct pg_vm *vm, const char *why)
{
	if (vm->failed || vm->dead)
		return;
	vm->failed = true;
	snprintf(vm->fail_reason, sizeof(vm->fail_reason), "%s", why);
	vm->pg->g.vms_failed++;
	LOG_ERR("vm %s (handle %llu): registration failed: %s; the pager stops serving it", vm->id,
		(unsigned long long)vm->handle, why);
	/* Never leave a write held back by a protection nobody will lift. */
	pg_pageout_unprotect_all(vm);
	pg_poison_lost(vm);
	release_all(vm);
	stop_serving(vm);
	/* A Firecracker VM has no request channel to report on: drop it now. */
	if (vm->kind == PG_VM_FC)
		pg_vm_teardown(vm, false, why);
}

void pg_server_lost(struct pager *pg, uint16_t server)
{
	char why[160];

	pg->g.servers_lost++;
	snprintf(why, sizeof(why), "memory server %s lost with pages of this VM", rs_server_name(pg->rs, server));
	for (struct pg_vm *vm = pg->vms; vm; vm = vm->next) {
		if (vm->dead || vm->failed)
			continue;
		for (uint64_t i = 0; i < vm->pm.npages; i++) {
			const struct pm_entry *e = pm_get(&vm->pm, i);

			if ((e->flags & PM_F_HAS_SLOT) && e->server == server) {
				pg_vm_fail(vm, why);
				break;
			}
		}
	}
}

void pg_vm_free_dead(struct pager *pg)
{
	struct pg_vm **pp = &pg->vms;

	while (*pp) {
		struct pg_vm *vm = *pp;

		if (!vm->dead) {
			pp = &vm->next;
			continue;
		}
		*pp = vm->next;
		pm_destroy(&vm->pm);
		free(vm->state);
		free(vm->ev_tag);
		free(vm->pid_tag);
		free(vm);
	}
}

unsigned pg_stats_fill(struct pager *pg, struct pg_vm *vm, struct ferry_vmmp_stat *st, unsigned cap)
{
	unsigned n = 0;
	struct pg_counters sum;

#define PUT(key, val)                                                                                    \
	do {                                                                                              \
		if (n < cap) {                                                                            \
			snprintf(st[n].name, sizeof(st[n].name), "%s", key);                             \
			st[n].value = (val);                                                              \
			n++;                                                                              \
		}                                                                                         \
	} while (0)
	if (vm) {
		sum = vm->c;
	} else {
		sum = pg->totals;
		for (struct pg_vm *v = pg->vms; v; v = v->next)
			if (!v->dead)
				add_totals(&sum, &v->c);
	}
#define X(nm) PUT(#nm, sum.nm);
	PG_VM_COUNTERS(X)
#undef X
	if (vm) {
		PUT("pages_total", vm->pm.npages);
		PUT("pages_unused", pm_count(&vm->pm, PM_UNUSED));
		PUT("pages_local", pm_count(&vm->pm, PM_LOCAL));
		PUT("pages_remote", pm_count(&vm->pm, PM_REMOTE));
		PUT("pages_in_flight", pm_count(&vm->pm, PM_IN_FLIGHT));
		PUT("budget_pages", vm->budget_pages);
		PUT("pageout_enabled", vm->can_pageout ? 1 : 0);
	} else {
		struct rs_stats rst;

		rs_get_stats(pg->rs, &rst);
		PUT("vms_registered", pg->g.vms_registered);
		PUT("vms_torn_down", pg->g.vms_torn_down);
		PUT("vms_failed", pg->g.vms_failed);
		PUT("peers_refused", pg->g.peers_refused);
		PUT("bad_messages", pg->g.bad_messages);
		PUT("servers_lost", pg->g.servers_lost);
		PUT("pool_slots_used", rst.slots_used);
		PUT("pool_extents", rst.extents);
	}
#undef PUT
	return n;
}
