/**
 * @file pager.h
 * ferry-pager internals shared by its files. One thread runs everything: an
 * epoll loop over the VMM socket, the Firecracker socket, every VM's
 * userfaultfd, every memory server's transport descriptor and a signalfd.
 * Page transfers are batched and waited for inside the loop (bounded by the
 * transport's op timeout), which keeps the state machine simple: a page is
 * IN_FLIGHT only inside one batch, and events are never handled half-way.
 *
 * Files: vmm_server.c (VMM protocol), fc_server.c (Firecracker handshake),
 * vm.c (registration, teardown, stats), unused.c (FCtrans: unused-page
 * detection, REMOVE, FREE_HINT), uffd_loop.c (epoll loop, uffd event
 * reading), fault.c (fault resolution, prefetch), pageout.c (budget, CLOCK,
 * page-out), remote_store.c (pool slots), config.c, main.c.
 */
#ifndef FERRY_PAGER_H
#define FERRY_PAGER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "dataplane/common/ferry_err.h"
#include "dataplane/common/mono_time.h"
#include "dataplane/pagemap/pagemap.h"
#include "dataplane/pager/config.h"
#include "dataplane/pager/remote_store.h"
#include "proto/vmm.h"

#define PG_PAGE 4096u
/** Recently zero-filled pages remembered per VM for page-out (see pageout.c). */
#define PG_ZERO_RING 4096u
/** REMOVEd ranges remembered for the re-check before falling back to the whole VM. */
#define PG_RECHECK_MAX 32u
#define PG_RECHECK_DELAY_NS (20u * 1000000u)

/* Per-VM counters; also summed into the pager's totals. X(name) keeps names and fields in one place. */
#define PG_VM_COUNTERS(X)                                                                                   \
	X(zero_faults)            /* MISSING faults on UNUSED pages, answered with a zero page */           \
	X(remote_faults)          /* MISSING faults that fetched from the pool */                          \
	X(snapshot_faults)        /* MISSING faults served from the snapshot file */                       \
	X(local_missing_faults)   /* MISSING on a LOCAL page: the VMM dropped it itself -> zero page */    \
	X(wp_faults)              /* write-protect faults (page-out race, migration write tracking) */      \
	X(writes_served_in_copy)  /* of those, served while the migration waited for its copy to land */    \
	X(minor_faults)           /* MINOR faults no sampler took: mapped back from the memory file */     \
	X(coalesced_faults)       /* faults on a page already being resolved in the same batch */          \
	X(eexist)                 /* UFFDIO_COPY/ZEROPAGE found the page present: woken */                 \
	X(eagain_retries)         /* ioctls refused while events were pending: retried */                  \
	X(pages_paged_in)                                                                                  \
	X(pages_prefetched)                                                                                \
	X(pages_paged_out)                                                                                 \
	X(zero_pages_dropped)     /* page-out found an all-zero page: UNUSED, nothing sent */              \
	X(pageout_aborted)        /* page-out of a page abandoned (pool error, full) */                   \
	X(pageout_refused)        /* page-out needed but impossible (no memfd / no WP / no pool) */        \
	X(bytes_not_transferred)  /* zero-page answers, dropped zero pages, hinted pages not sent */       \
	X(slots_released)                                                                                  \
	X(remove_events)                                                                                   \
	X(removed_pages)          /* pages made UNUSED by REMOVE events */                                 \
	X(hint_pages)             /* pages made UNUSED by FREE_HINT */                                     \
	X(unmap_events)                                                                                    \
	X(remap_events)                                                                                    \
	X(fork_events)                                                                                     \
	X(fault_errors)           /* faults that could not be resolved */                                 \
	X(sampler_periods)        /* access-sampler periods closed (planned migration, mig_plan.h) */      \
	X(sampler_read_faults)    /* sampler MINOR read faults (a block read in a period) */               \
	X(sampler_write_faults)   /* sampler WP + MINOR write faults (a block written in a period) */      \
	X(sampler_drops)          /* DROP_PTES requests the sampler had the VMM do */                       \
	X(plan_windows)           /* planner windows scored */                                             \
	X(plan_pred_clean)        /* (block, window) predictions: clean / read / write */                  \
	X(plan_pred_read)                                                                                  \
	X(plan_pred_write)                                                                                 \
	X(plan_w_given_c)         /* predicted clean, written: A(w|c) = this / plan_pred_clean */          \
	X(plan_w_given_r)         /* predicted read, written: A(w|r) = this / plan_pred_read */            \
	X(plan_c_given_w)         /* predicted write, clean: A(c|w) = this / plan_pred_write */            \
	X(plan_r_given_w)         /* predicted write, only read: A(r|w) = this / plan_pred_write */        \
	X(plan_deferred_pages)    /* pages a planned migration kept for post-copy */

struct pg_counters {
#define X(n) uint64_t n;
	PG_VM_COUNTERS(X)
#undef X
};

struct pg_fault {
	uint64_t addr;           /* faulting hva */
	uint64_t flags;          /* UFFD_PAGEFAULT_FLAG_* */
};

struct pg_region {
	uint64_t gpa, size, hva, offset;
	uint64_t first_page;     /* index of the region's first page in the VM's pagemap */
	int memfd;               /* -1: anonymous */
	uint8_t modes;
};

enum pg_vm_kind { PG_VM_VMMP = 1, PG_VM_FC = 2 };

struct pg_vm;
struct pager;
struct mig_src;
struct mig_dst;
struct mig_engine;
struct mig_plan;

enum pg_conn_kind { PG_CONN_VMMP = 1, PG_CONN_FC = 2 };

/** A client connection (VMM protocol or Firecracker). */
struct pg_conn {
	struct pager *pg;
	struct pg_conn *next;
	enum pg_conn_kind kind;
	int fd;
	uint32_t uid;
	pid_t pid;
	bool refused;            /* peer not in the allow-list: every request gets ERROR */
	bool dead;
	struct pg_vm *vm;        /* the VM it registered, if any */
	void *ev_tag;
	/* VMM protocol message being received */
	uint8_t *rx;
	size_t rx_have, rx_need, rx_cap;
	int rx_fds[FERRY_VMMP_MAX_FDS];
	unsigned rx_nfds;
	bool rx_fd_overflow;
	/* Firecracker handshake being received */
	uint8_t *fcbuf;
	size_t fclen;
	int fc_fds[4];
	unsigned fc_nfds;
};

struct pg_vm {
	struct pager *pg;
	struct pg_vm *next;
	enum pg_vm_kind kind;
	uint64_t handle;
	char id[FERRY_VMMP_VM_ID_MAX + 1];
	struct pg_conn *conn;    /* owning connection (VMM protocol or Firecracker) */
	pid_t pid;               /* VMM pid (SO_PEERCRED) */
	int uffd;
	uint64_t uffd_features;
	struct pg_region regions[FERRY_VMMP_MAX_REGIONS];
	unsigned nregions;
	int memfds[FERRY_VMMP_MAX_MEMFDS];
	unsigned nmemfds;
	struct pagemap pm;
	uint64_t budget_pages;   /* 0 = unlimited */
	bool can_pageout;
	char no_pageout[160];    /* why page-out is refused */
	bool pageout_refusal_logged;
	uint64_t clock_hand;
	/* Pages recently installed as zero pages (PM_F_ZEROFILL), oldest first:
	 * page-out drops those that are still zero before CLOCK evicts data. */
	uint64_t zero_ring[PG_ZERO_RING];
	uint32_t zero_head, zero_count;
	uint64_t last_fault;     /* page index of the previous fault, for prefetch */
	bool suspended;
	bool failed;             /* registration failed (e.g. memory server lost) */
	char fail_reason[160];
	bool dead;               /* torn down; freed at the end of the loop iteration */
	const uint8_t *snap;     /* Firecracker: snapshot file mapping (shared, not owned) */
	uint64_t snap_len;
	/* device state blob (STATE_PUT / STATE_GET) */
	uint8_t *state;
	uint64_t state_total, state_have;
	bool state_valid;
	struct pg_counters c;
	void *ev_tag;            /* epoll tag of the uffd */
	int pidfd;               /* Firecracker VMs: the VMM process, to notice its exit (-1: none) */
	void *pid_tag;
	struct pg_fault pending[64]; /* faults refused with EAGAIN, retried after the events */
	unsigned npending;
	/* REMOVE events on memory files, re-checked against the file on the next tick (unused.c) */
	struct { uint64_t first, n; } recheck[PG_RECHECK_MAX];
	unsigned nrecheck;
	bool recheck_all;
	uint64_t recheck_after;      /* CLOCK_MONOTONIC ns */
	/* split migration (dataplane/migrate): this VM's outgoing or incoming migration */
	struct mig_src *mig_src;
	struct mig_dst *mig_dst;
	struct mig_plan *plan;   /* [migrate] plan_continuous: its access sampler while no migration runs */
};

struct pg_global {
	uint64_t vms_registered, vms_unregistered, vms_torn_down, vms_failed, peers_refused, bad_messages,
		requests, servers_lost, fc_handshakes, fc_rejected;
};

struct pager {
	struct pager_config *cfg;
	int epfd, sigfd, vmm_lfd, fc_lfd;
	struct remote_store *rs;
	struct pg_vm *vms;
	struct pg_conn *conns;
	uint64_t next_handle;
	struct pg_global g;
	struct pg_counters totals;  /* of VMs already gone */
	const uint8_t *snap;        /* snapshot memory file, mapped read-only, or NULL */
	uint64_t snap_len;
	int snap_fd;
	bool stop;
	uint8_t *txbuf;             /* FERRY_VMMP_MAX_MSG, for replies */
	void *srv_tag[PAGER_MAX_SERVERS];
	void *vmm_ltag, *fc_ltag, *sig_tag;
	struct mig_engine *mig;     /* split migration engine (dataplane/migrate/migrate.h) */
};

/* epoll tags */
enum pg_ev_kind { PG_EV_SIGNAL = 1, PG_EV_VMM_LISTEN, PG_EV_FC_LISTEN, PG_EV_CONN, PG_EV_UFFD, PG_EV_SERVER, PG_EV_PIDFD,
		  PG_EV_MIG /* obj: a migration-engine object (mig_engine_event) */ };
struct pg_ev {
	enum pg_ev_kind kind;
	void *obj;
	uint16_t server;
};

/* uffd_loop.c */
int pg_create(struct pager_config *cfg, struct pager **pg, struct ferry_err *err);
int pg_run(struct pager *pg, struct ferry_err *err);
void pg_destroy(struct pager *pg);
int pg_epoll_add(struct pager *pg, int fd, enum pg_ev_kind kind, void *obj, uint16_t server, void **tag);
void pg_epoll_del(struct pager *pg, int fd, void *tag);
void pg_vm_uffd_ready(struct pg_vm *vm);
/**
 * Read the VM's pending uffd messages now and apply its events (REMOVE...),
 * keeping the faults for the loop: while an event is unread the kernel
 * refuses UFFDIO_* with EAGAIN. For callers outside the fault path (the
 * migration engine's write-protection), also while the VM's faults are held.
 */
void pg_vm_drain_events(struct pg_vm *vm);
/**
 * Serve the VM's write faults now, from inside a long wait of the migration
 * engine (its copy to the destination): a write fault needs no I/O (note the
 * write, un-protect, wake), and a vCPU that waited for the copy would stall
 * the guest for the whole transfer. Every other fault and event is queued for
 * the loop as pg_vm_drain_events() does. Nothing here tears the VM down.
 */
void pg_vm_serve_writes(struct pg_vm *vm);

/* vm.c */
struct pg_vm *pg_vm_find(struct pager *pg, const char *id);
/**
 * Build a VM from a checked registration. Takes ownership of @p fds[0..nfds)
 * (slot 0 the uffd) in every case. @return 0, or a FERRY_VMMP_E_* code with
 * @p why filled.
 */
int pg_vm_create(struct pager *pg, enum pg_vm_kind kind, const struct ferry_vmmp_register *reg, int *fds,
		 unsigned nfds, pid_t pid, struct pg_conn *conn, struct pg_vm **out, char *why, size_t why_len);
/** Tear down: stop serving, release slots, close fds. @p bring_back: page REMOTE pages back in first. */
void pg_vm_teardown(struct pg_vm *vm, bool bring_back, const char *why);
/** Mark the registration failed (e.g. pool lost) and stop serving it; requests get ERROR from now on. */
void pg_vm_fail(struct pg_vm *vm, const char *why);
void pg_vm_free_dead(struct pager *pg);
/**
 * Hold (@p on) or serve again the VM's faults: while held its uffd is not
 * read at all (faults and events wait in the kernel; the VM's threads block).
 * The migration engine freezes a source VM with it, and keeps a destination
 * shell quiet until its switch-over.
 */
void pg_vm_hold(struct pg_vm *vm, bool on);
struct pg_region *pg_vm_region_by_hva(struct pg_vm *vm, uint64_t hva);
/** Fill @p st with the VM's counters (or the pager's totals for @p vm NULL). @return count. */
unsigned pg_stats_fill(struct pager *pg, struct pg_vm *vm, struct ferry_vmmp_stat *st, unsigned cap);
/** Release a slot named by a pagemap entry (pm_slot_fn). @p arg is the VM. */
void pg_vm_release_slot(void *arg, uint64_t idx, const struct pm_entry *e);
void pg_server_lost(struct pager *pg, uint16_t server);
/**
 * The VM failed: every REMOTE page on a lost server is poisoned with
 * UFFDIO_POISON when the uffd has UFFD_FEATURE_POISON (an access then raises
 * SIGBUS in the VMM instead of hanging; waiting faults are woken into it).
 */
void pg_poison_lost(struct pg_vm *vm);

/* unused.c */
/** Initial states at REGISTER (holes / pagemap / snapshot). */
int pg_unused_scan(struct pg_vm *vm, char *why, size_t why_len);
/** UFFD_EVENT_REMOVE or FREE_HINT on [hva, hva+len) / page range: UNUSED + slots released. */
uint64_t pg_unused_range(struct pg_vm *vm, uint64_t first_page, uint64_t npages, bool punch);
void pg_unused_remove_event(struct pg_vm *vm, uint64_t start, uint64_t end);
/** The queued REMOVE re-checks: resident pages that became holes in their file are UNUSED now. */
void pg_unused_recheck(struct pg_vm *vm);
/** FREE_HINT ranges: @return FERRY_VMMP_E_OK or E_OUT_OF_RANGE; *bytes = bytes newly unused. */
int pg_unused_hints(struct pg_vm *vm, const struct ferry_vmmp_hints *h, uint64_t *bytes);

/* fault.c */
/** Resolve @p n faults (deduplicated inside). Faults that hit EAGAIN are left in @p retry (count returned). */
unsigned pg_fault_batch(struct pg_vm *vm, const struct pg_fault *f, unsigned n, struct pg_fault *retry);
/** Page every REMOTE page back in (UNREGISTER). @return 0 or -errno. */
int pg_fault_bring_back(struct pg_vm *vm);
/** UFFDIO_WAKE one page. */
void pg_wake(struct pg_vm *vm, uint64_t addr);
uint64_t pg_page_hva(const struct pg_vm *vm, uint64_t idx);

/* pageout.c */
/** Page out until resident + @p incoming <= budget (at most a few batches). */
void pg_pageout_make_room(struct pg_vm *vm, uint64_t incoming);
/** On the tick: page out early (low watermark), so that faults rarely have to. */
void pg_pageout_background(struct pg_vm *vm);
/** Page @p idx was just installed as a zero page: offer it to page-out first. */
void pg_pageout_note_zero(struct pg_vm *vm, uint64_t idx);
/** Decide whether this VM can be paged out (sets can_pageout / no_pageout). */
void pg_pageout_setup(struct pg_vm *vm);
uint64_t pg_resident(const struct pg_vm *vm);
/** Drop every write-protection Ferry set (before handing the VM back). */
void pg_pageout_unprotect_all(struct pg_vm *vm);

/* vmm_server.c / fc_server.c */
int pg_vmm_listen(struct pager *pg, struct ferry_err *err);
void pg_vmm_accept(struct pager *pg);
int pg_fc_listen(struct pager *pg, struct ferry_err *err);
void pg_fc_accept(struct pager *pg);
void pg_conn_event(struct pg_conn *c, uint32_t events);
void pg_fc_readable(struct pg_conn *c);
struct pg_conn *pg_conn_new(struct pager *pg, int fd, enum pg_conn_kind kind);
void pg_conn_close(struct pg_conn *c, const char *why);
void pg_conn_free_dead(struct pager *pg);
void pg_conn_close_all(struct pager *pg);

#endif /* FERRY_PAGER_H */
