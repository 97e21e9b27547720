/*
 * The pager's event loop and userfaultfd event reading.
 *
 * Reading a uffd: all pending messages are read (poll 0 + read, so a uffd
 * the VMM opened without O_NONBLOCK never blocks us; we do not change its
 * shared file flags) BEFORE any ioctl: while a non-cooperative event
 * (REMOVE, UNMAP, REMAP, FORK) is unread, the kernel fails UFFDIO_COPY and
 * friends with EAGAIN. Non-fault events are applied in arrival order, then
 * the faults of the round are resolved as one batch; faults that still got
 * EAGAIN are kept and retried after the next read.
 *
 * Events:
 *   REMOVE (madvise DONTNEED/REMOVE): the range becomes UNUSED, slots
 *          released, memory-file range punched (unused.c);
 *   UNMAP  (munmap/mremap shrink): the pages cannot fault any more; they are
 *          made UNUSED and their slots released; the region stays known (a
 *          new mapping at the same address would have to re-register);
 *   REMAP  (mremap move): regions wholly inside the old range move with it;
 *          partial moves are logged and the moved part is no longer served;
 *   FORK   (the VMM forked with the uffd's FORK feature): the child's new
 *          uffd is closed at once - Ferry serves the VMM, not its children
 *          (their faults then behave as if unregistered).
 */
#include "dataplane/pager/pager.h"
#include "dataplane/pager/vmm_requests.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataplane/common/auth.h"
#include "dataplane/common/ferry_log.h"
#include "dataplane/migrate/migrate.h"

#define MAX_MSGS 64u

int pg_epoll_add(struct pager *pg, int fd, enum pg_ev_kind kind, void *obj, uint16_t server, void **tag)
{
	struct pg_ev *t = calloc(1, sizeof(*t));
	struct epoll_event ev = { .events = EPOLLIN };

	if (!t)
		return -ENOMEM;
	t->kind = kind;
	t->obj = obj;
	t->server = server;
	ev.data.ptr = t;
	if (epoll_ctl(pg->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int e = errno;

		free(t);
		errno = e;
		return -e;
	}
	*tag = t;
	return 0;
}

/* The tag stays allocated (events of this round may still name it); its owner frees it. */
void pg_epoll_del(struct pager *pg, int fd, void *tag)
{
	struct pg_ev *t = tag;

	if (fd >= 0)
		epoll_ctl(pg->epfd, EPOLL_CTL_DEL, fd, NULL);
	if (t)
		t->obj = NULL;
}

static void apply_event(struct pg_vm *vm, const struct uffd_msg *m)
{
	switch (m->event) {
	case UFFD_EVENT_REMOVE:
		/* A DROP_PTES we asked for (vmm_requests.h): only PTEs went, the file keeps the data. */
		if (pg_vmm_dropping(vm, m->arg.remove.start, m->arg.remove.end))
			break;
		pg_unused_remove_event(vm, m->arg.remove.start, m->arg.remove.end);
		break;
	case UFFD_EVENT_UNMAP:
		vm->c.unmap_events++;
		vm->c.remove_events--;   /* counted by the helper as a REMOVE */
		pg_unused_remove_event(vm, m->arg.remove.start, m->arg.remove.end);
		break;
	case UFFD_EVENT_REMAP: {
		uint64_t from = m->arg.remap.from, to = m->arg.remap.to, len = m->arg.remap.len;

		vm->c.remap_events++;
		for (unsigned i = 0; i < vm->nregions; i++) {
			struct pg_region *r = &vm->regions[i];

			if (r->hva >= from && r->hva + r->size <= from + len) {
				r->hva = r->hva - from + to;
			} else if (r->hva < from + len && from < r->hva + r->size) {
				LOG_WARN("vm %s: mremap moved part of region %u (0x%llx +0x%llx); the moved part is no "
					 "longer served", vm->id, i, (unsigned long long)r->hva, (unsigned long long)r->size);
			}
		}
		LOG_INFO("vm %s: REMAP 0x%llx -> 0x%llx (+0x%llx)", vm->id, (unsigned long long)from,
			 (unsigned long long)to, (unsigned long long)len);
		break;
	}
	case UFFD_EVENT_FORK:
		vm->c.fork_events++;
		close((int)m->arg.fork.ufd);
		LOG_INFO("vm %s: the VMM forked; the child's uffd is closed (children are not served)", vm->id);
		break;
	default:
		LOG_WARN("vm %s: unknown uffd event %u ignored", vm->id, m->event);
		break;
	}
}

/* Read every message available now; events applied, faults appended. @return false on a dead uffd. */
static bool read_events(struct pg_vm *vm, struct pg_fault *faults, unsigned *nf, unsigned cap)
{
	static struct uffd_msg msgs[MAX_MSGS];

	while (*nf < cap && vm->uffd >= 0 && !vm->dead) {
		struct pollfd p = { .fd = vm->uffd, .events = POLLIN };
		ssize_t got;
		unsigned room = cap - *nf;

		if (poll(&p, 1, 0) <= 0 || !(p.revents & POLLIN))
			break;
		if (room > MAX_MSGS)
			room = MAX_MSGS;
		got = read(vm->uffd, msgs, room * sizeof(msgs[0]));
		if (got < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			LOG_ERR("vm %s: reading its uffd: %s", vm->id, strerror(errno));
			return false;
		}
		for (size_t k = 0; k < (size_t)got / sizeof(msgs[0]); k++) {
			if (msgs[k].event == UFFD_EVENT_PAGEFAULT)
				faults[(*nf)++] = (struct pg_fault){ msgs[k].arg.pagefault.address,
								     msgs[k].arg.pagefault.flags };
			else
				apply_event(vm, &msgs[k]);
		}
	}
	return true;
}

/* Keep faults for the loop's retry; a thread blocked on a page faults once, so a second copy is a re-read. */
static void queue_pending(struct pg_vm *vm, const struct pg_fault *f, unsigned n)
{
	for (unsigned k = 0; k < n && vm->npending < MAX_MSGS; k++) {
		bool known = false;

		for (unsigned j = 0; j < vm->npending && !known; j++)
			known = vm->pending[j].addr == f[k].addr;
		if (!known)
			vm->pending[vm->npending++] = f[k];
	}
}

void pg_vm_drain_events(struct pg_vm *vm)
{
	static struct pg_fault faults[MAX_MSGS];
	unsigned nf = 0, room = MAX_MSGS - vm->npending;

	/* Faults read here wait in vm->pending (retried by the loop). With no room
	 * left, an event behind them would stay unread and the caller's ioctl would
	 * keep failing with EAGAIN: serve the pending faults first, unless a
	 * migration holds them (then they wait in the kernel and room comes back
	 * when the hold ends). */
	if (room == 0) {
		static bool serving;   /* never re-entered from the fault path it calls */

		if (!mig_hold_faults(vm) && !serving) {
			serving = true;
			pg_vm_uffd_ready(vm);
			serving = false;
		}
		return;
	}
	if (!read_events(vm, faults, &nf, room)) {
		pg_vm_teardown(vm, false, "its userfaultfd failed");
		return;
	}
	queue_pending(vm, faults, nf);
}

void pg_vm_serve_writes(struct pg_vm *vm)
{
	static struct pg_fault faults[MAX_MSGS], writes[MAX_MSGS], retry[MAX_MSGS];
	unsigned nf = 0, nw = 0, nr;

	if (vm->dead || vm->uffd < 0 || vm->npending >= MAX_MSGS || mig_hold_faults(vm))
		return;
	/* A dead uffd is left for the loop's next read, which tears the VM down: not from here. */
	if (!read_events(vm, faults, &nf, MAX_MSGS - vm->npending))
		return;
	for (unsigned k = 0; k < nf; k++) {
		if ((faults[k].flags & UFFD_PAGEFAULT_FLAG_WP) && !(faults[k].flags & UFFD_PAGEFAULT_FLAG_MINOR))
			writes[nw++] = faults[k];
		else
			queue_pending(vm, &faults[k], 1);
	}
	if (nw == 0)
		return;
	vm->c.writes_served_in_copy += nw;
	/* Write faults do no I/O in the fault path (handle_wp: note, un-protect, wake). */
	nr = pg_fault_batch(vm, writes, nw, retry);
	queue_pending(vm, retry, nr);
}

void pg_vm_uffd_ready(struct pg_vm *vm)
{
	static struct pg_fault faults[MAX_MSGS], retry[MAX_MSGS];

	if (mig_hold_faults(vm))
		return;   /* frozen by a migration: the faults wait in the kernel */
	for (unsigned round = 0; round < 32 && !vm->dead && vm->uffd >= 0; round++) {
		unsigned nf = 0, nr, retried;

		/* Retries first (they are older), then whatever is queued now. */
		for (unsigned k = 0; k < vm->npending; k++)
			faults[nf++] = vm->pending[k];
		retried = nf;
		vm->npending = 0;
		if (!read_events(vm, faults, &nf, MAX_MSGS)) {
			pg_vm_teardown(vm, false, "its userfaultfd failed");
			return;
		}
		if (nf == 0)
			return;
		nr = pg_fault_batch(vm, faults, nf, retry);
		if (vm->dead)
			return;
		for (unsigned k = 0; k < nr && vm->npending < MAX_MSGS; k++)
			vm->pending[vm->npending++] = retry[k];
		if (nf == retried && nr)
			return;   /* nothing new arrived: the retries wait for the next event or tick */
	}
}

static int setup_signals(struct pager *pg, struct ferry_err *err)
{
	sigset_t mask;

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGUSR1);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
		return ferry_err_set(err, errno, "sigprocmask: %s", strerror(errno));
	signal(SIGPIPE, SIG_IGN);
	pg->sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (pg->sigfd < 0)
		return ferry_err_set(err, errno, "signalfd: %s", strerror(errno));
	return 0;
}

static int open_snapshot(struct pager *pg, struct ferry_err *err)
{
	struct stat st;
	void *p;

	pg->snap_fd = -1;
	if (!pg->cfg->snapshot_file[0])
		return 0;
	pg->snap_fd = open(pg->cfg->snapshot_file, O_RDONLY | O_CLOEXEC);
	if (pg->snap_fd < 0)
		return ferry_err_set(err, errno, "snapshot file %s: %s", pg->cfg->snapshot_file, strerror(errno));
	if (fstat(pg->snap_fd, &st) < 0 || !S_ISREG(st.st_mode))
		return ferry_err_set(err, EINVAL, "snapshot file %s: not a regular file", pg->cfg->snapshot_file);
	if (st.st_size == 0)
		return 0;
	/* Read-only, shared: the source of UFFDIO_COPY; pages come in as the kernel reads them. */
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, pg->snap_fd, 0);
	if (p == MAP_FAILED)
		return ferry_err_set(err, errno, "snapshot file %s: mmap: %s", pg->cfg->snapshot_file, strerror(errno));
	pg->snap = p;
	pg->snap_len = (uint64_t)st.st_size;
	LOG_INFO("snapshot file %s mapped read-only (%llu bytes)", pg->cfg->snapshot_file,
		 (unsigned long long)pg->snap_len);
	return 0;
}

int pg_create(struct pager_config *cfg, struct pager **out, struct ferry_err *err)
{
	struct pager *pg = calloc(1, sizeof(*pg));
	struct ferry_secret secret;
	int rc;

	if (!pg)
		return ferry_err_set(err, ENOMEM, "out of memory");
	pg->cfg = cfg;
	pg->epfd = pg->sigfd = pg->vmm_lfd = pg->fc_lfd = pg->snap_fd = -1;
	*out = pg;
	pg->txbuf = malloc(FERRY_VMMP_MAX_MSG);
	if (!pg->txbuf)
		return ferry_err_set(err, ENOMEM, "out of memory");
	if ((rc = setup_signals(pg, err)))
		return rc;
	pg->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (pg->epfd < 0)
		return ferry_err_set(err, errno, "epoll_create1: %s", strerror(errno));
	if ((rc = open_snapshot(pg, err)))
		return rc;
	memset(&secret, 0, sizeof(secret));
	if (cfg->nservers) {
		if ((rc = ferry_auth_init(err)) || (rc = ferry_secret_load(cfg->secret_file, &secret, err)))
			return rc;
	}
	rc = rs_create(cfg, &secret, &pg->rs, err);
	ferry_secret_wipe(&secret);
	if (rc)
		return rc;
	for (uint16_t i = 0; i < rs_nservers(pg->rs); i++) {
		int fd = rs_server_fd(pg->rs, i);

		if (fd >= 0 && pg_epoll_add(pg, fd, PG_EV_SERVER, pg, i, &pg->srv_tag[i]))
			return ferry_err_set(err, errno, "epoll_ctl: %s", strerror(errno));
	}
	if (pg_epoll_add(pg, pg->sigfd, PG_EV_SIGNAL, pg, 0, &pg->sig_tag))
		return ferry_err_set(err, errno, "epoll_ctl: %s", strerror(errno));
	/* The VMM socket last: once it accepts, everything else is ready too (tests and
	 * supervisors wait for it). */
	if ((rc = mig_engine_init(pg, err)))
		return ferry_err_prefix(err, "migrations: ");
	if (cfg->fc_socket[0] && (rc = pg_fc_listen(pg, err)))
		return rc;
	if ((rc = pg_vmm_listen(pg, err)))
		return rc;
	return 0;
}

/* One line with every pager-wide counter (SIGUSR1 and shutdown). */
static void log_counters(struct pager *pg)
{
	struct ferry_vmmp_stat st[FERRY_VMMP_MAX_STATS];
	unsigned n = pg_stats_fill(pg, NULL, st, FERRY_VMMP_MAX_STATS);
	char line[2048];
	size_t off = 0;

	for (unsigned i = 0; i < n && off < sizeof(line); i++)
		off += (size_t)snprintf(line + off, sizeof(line) - off, "%s%s=%llu", i ? " " : "", st[i].name,
					(unsigned long long)st[i].value);
	LOG_INFO("counters: %s", line);
}

static void on_signal(struct pager *pg)
{
	struct signalfd_siginfo si;

	if (read(pg->sigfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
		return;
	if (si.ssi_signo == SIGUSR1) {
		log_counters(pg);
		return;
	}
	LOG_INFO("%s: shutting down", si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
	pg->stop = true;
}

static void periodic(struct pager *pg)
{
	int lost;

	while ((lost = rs_take_lost(pg->rs)) >= 0) {
		struct pg_ev *t = pg->srv_tag[lost];

		if (t) {
			/* The context (and its fd) live until shutdown; just stop watching it. */
			t->obj = NULL;
		}
		pg_server_lost(pg, (uint16_t)lost);
	}
	for (struct pg_vm *vm = pg->vms; vm; vm = vm->next) {
		if (vm->dead || vm->failed)
			continue;
		if (vm->nrecheck || vm->recheck_all)
			pg_unused_recheck(vm);
		if (vm->npending)
			pg_vm_uffd_ready(vm);
		if (!vm->dead)
			pg_pageout_background(vm);
	}
	mig_engine_tick(pg);
}

int pg_run(struct pager *pg, struct ferry_err *err)
{
	struct epoll_event ev[32];

	LOG_INFO("ready: VMM socket %s%s%s", pg->cfg->socket, pg->cfg->fc_socket[0] ? ", Firecracker socket " : "",
		 pg->cfg->fc_socket);
	uint64_t last_event = 0;

	while (!pg->stop) {
		/* Poll mode while events come fast: a vCPU waits on every fault, and waking
		 * a sleeping loop costs more than the fault's whole service. */
		bool spin = pg->cfg->poll_us && ferry_mono_ns() - last_event < (uint64_t)pg->cfg->poll_us * 1000u;
		int n = epoll_wait(pg->epfd, ev, 32, spin || mig_engine_busy(pg) ? 0 : 50);

		if (n > 0)
			last_event = ferry_mono_ns();

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return ferry_err_set(err, errno, "epoll_wait: %s", strerror(errno));
		}
		for (int i = 0; i < n && !pg->stop; i++) {
			struct pg_ev *t = ev[i].data.ptr;

			if (!t->obj)
				continue;
			switch (t->kind) {
			case PG_EV_SIGNAL:
				on_signal(pg);
				break;
			case PG_EV_VMM_LISTEN:
				pg_vmm_accept(pg);
				break;
			case PG_EV_FC_LISTEN:
				pg_fc_accept(pg);
				break;
			case PG_EV_CONN:
				pg_conn_event(t->obj, ev[i].events);
				break;
			case PG_EV_UFFD:
				pg_vm_uffd_ready(t->obj);
				break;
			case PG_EV_SERVER:
				rs_service(pg->rs, t->server);
				if (!rs_alive(pg->rs, t->server)) {
					epoll_ctl(pg->epfd, EPOLL_CTL_DEL, rs_server_fd(pg->rs, t->server), NULL);
				}
				break;
			case PG_EV_MIG:
				mig_engine_event(t->obj, ev[i].events);
				break;
			case PG_EV_PIDFD: {
				struct pg_vm *vm = t->obj;

				pg_vm_teardown(vm, false, "the VMM process exited");
				break;
			}
			}
		}
		periodic(pg);
		pg_conn_free_dead(pg);
		pg_vm_free_dead(pg);
	}
	return 0;
}

void pg_destroy(struct pager *pg)
{
	if (!pg)
		return;
	mig_engine_fini(pg);
	pg_conn_close_all(pg);
	for (struct pg_vm *vm = pg->vms; vm; vm = vm->next)
		pg_vm_teardown(vm, true, "pager shutting down (remote pages returned to the VM)");
	if (pg->rs)
		log_counters(pg);
	pg_conn_free_dead(pg);
	pg_vm_free_dead(pg);
	rs_destroy(pg->rs);
	for (unsigned i = 0; i < PAGER_MAX_SERVERS; i++)
		free(pg->srv_tag[i]);
	free(pg->vmm_ltag);
	free(pg->fc_ltag);
	free(pg->sig_tag);
	if (pg->vmm_lfd >= 0) {
		close(pg->vmm_lfd);
		if (pg->cfg->socket[0] != '@')
			unlink(pg->cfg->socket);
	}
	if (pg->fc_lfd >= 0) {
		close(pg->fc_lfd);
		if (pg->cfg->fc_socket[0] != '@')
			unlink(pg->cfg->fc_socket);
	}
	if (pg->snap)
		munmap((void *)pg->snap, pg->snap_len);
	if (pg->snap_fd >= 0)
		close(pg->snap_fd);
	if (pg->sigfd >= 0)
		close(pg->sigfd);
	if (pg->epfd >= 0)
		close(pg->epfd);
	free(pg->txbuf);
	free(pg);
}
