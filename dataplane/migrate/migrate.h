/**
 * @file migrate.h
 * The split-migration engine inside ferry-pager (issue 5). This header is the
 * contract between the engine (dataplane/migrate/mig_*.c files) and the pager's
 * loop and fault path (the dataplane/pager files); ferryd uses migrate_ctl.h.
 *
 * ## Roles
 * One migration has a SOURCE pager (where the VM runs) and a DESTINATION
 * pager on the MAIN host, which holds at most `budget` bytes of the VM and
 * keeps the rest on SUB-HOSTS (memory servers) as its own pool extents.
 *
 * ## Connections
 *  - control: ferryd -> pager Unix socket (PREPARE / START / STATUS / ABORT,
 *    proto/migrate.h control messages; SO_PEERCRED allow-list);
 *  - stream: source -> destination TCP, proto/migrate.h stream messages,
 *    mutual HMAC (cluster secret + per-migration token);
 *  - data: source -> destination transport connection (TCP or RDMA,
 *    dataplane/transport) in a per-migration protection domain on the
 *    destination; bound to the stream by the BIND secret. Pages move with
 *    one-sided WRITE from the source's registered send buffer (pages copied
 *    in from its own, unregistered mapping of the VM's memfd) into the
 *    destination's STAGING RING (registered in that PD; slots named by the
 *    PAGE_MAP entries, installed into the shell's memfd by the destination,
 *    credits returned with CREDIT). After the switch-over the destination
 *    FETCHes pages: the source WRITEs them into ring slots and answers with
 *    their PAGE_MAP. No VM memory is registered anywhere (a registration
 *    pins every page: holes allocated, punched pages kept pinned). Only the
 *    page map, credits and fetches travel on the stream.
 *  - sub-hosts: the destination allocates extents on its memory servers,
 *    shares them (pool_client_share) and sends the tokens (EXTENTS); the
 *    source attaches them (pool_client_attach) and WRITEs cold pages there
 *    directly. The destination owns the extents from the start, so remote
 *    paging there simply goes on after the migration.
 *
 * ## Source state machine (struct mig_src)
 *
 *   IDLE -START-> SETUP -(auth, bind, LAYOUT/LAYOUT_OK, EXTENTS)-> PRECOPY
 *   PRECOPY: round r sends every page marked in the send set (round 1:
 *            every used page; FULL: every page; POSTCOPY: only the pages the
 *            main host's budget cannot hold, coldest (not referenced) first,
 *            which go to the sub-hosts; PLANNED: after sampling the VM's
 *            reads and writes for a few periods (the access sampler on the
 *            pager's uffd, DROP_PTES to the VMM: mig_plan.h), every page
 *            the planner does not defer, while the deferred ones (within the
 *            main host's budget) are only announced SOURCE; later rounds
 *            re-send the written pages homed at sub-hosts and announce the
 *            written pushed ones SOURCE, so the stop carries neither), each
 *            one write-protected (sync uffd-wp) just before it is copied;
 *            writes fault, the fault marks the page dirty again (and
 *            un-protects it), installs and REMOVEs mark it too. Write faults
 *            are served while a batch's WRITEs are on the wire
 *            (pg_vm_serve_writes()), so the guest runs on during the copy.
 *            ROUND_END after each round. Rounds end when few pages are dirty
 *            (PLANNED: few that post-copy cannot carry) or after max rounds
 *            -> STOP.
 *   STOP:    the VMM is paused (PAUSE + device state when the VMM supports
 *            server requests); independently of that the pager stops
 *            answering the VM's faults (held), so memory is frozen: every
 *            page is write-protected or held behind a fault. Remaining dirty
 *            pages are sent (PRECOPY/FULL) or mapped SOURCE (POSTCOPY/
 *            PLANNED; pages paged out at the source are always sent now, so
 *            that post-copy READs only see resident pages); DEVSTATE chunks;
 *            SWITCHOVER.  -> SWITCHOVER, waiting for RESUMED
 *   SWITCHOVER -RESUMED-> POSTCOPY (pages at source > 0) or DONE
 *   POSTCOPY: answers FETCHes (WRITE into the ring, PAGE_MAP); POSTCOPY_DONE -> DONE.
 *   DONE:    the VM stays frozen here (its VMM is told it migrated away);
 *            its registration ends when the VMM exits.
 *   Any error before SWITCHOVER is sent -> FAILED (or ABORTED): faults are
 *   served again, the pager's write-protection is lifted, attachments and
 *   connections closed; the VM never stopped being intact at the source.
 *   An error after SWITCHOVER was sent: if RESUMED never came the outcome
 *   is unknown to the source; it keeps the VM frozen (it must not run in
 *   two places) and reports FAILED with "after switch-over"; ferryd decides.
 *
 * ## Destination state machine (struct mig_dst)
 *
 *   PREPARED (listening, token made) -HELLO/AUTH-> AUTHED -BIND-> BOUND
 *   -LAYOUT (shell VM registered with the same layout)-> RECEIVING
 *   RECEIVING: PAGE_MAP entries applied if their generation is >= the
 *            page's (the highest generation wins: a second stream of a
 *            destination change may deliver older copies later); DEST ->
 *            LOCAL (its ring slot copied into the memfd, credit returned),
 *            SUB -> REMOTE(sub-host slot), UNUSED -> UNUSED (data
 *            punched), SOURCE -> REMOTE(PG_SERVER_MIGSRC). The shell's faults
 *            are not served (parked / not yet running) and its page-out is
 *            off. DEVSTATE into vm->state.
 *   -SWITCHOVER-> resume the shell (RESUME when the VMM supports it) -> RESUMED
 *   POSTCOPY: faults on MIGSRC pages FETCH them from the source (into ring
 *            slots), and the loop pulls the rest in the background (UFFDIO_COPY:
 *            a page the guest already faulted in is never overwritten);
 *            -> POSTCOPY_DONE to the source -> DONE. Remote paging to the
 *            sub-hosts goes on as for any VM.
 *   Errors before SWITCHOVER: the shell VM is failed (its requests get
 *   ERROR), extents freed; after it (source lost during post-copy): the VM
 *   fails like a VM whose memory server died (pages at the source are
 *   poisoned when the uffd allows).
 *
 * ## Generations
 * The source bumps a page's pagemap version every time it sends the page
 * (data or a map change) and puts it in the PAGE_MAP entry; the destination
 * keeps the highest. This is what makes the two planned extensions additive:
 *  - destination change (seed 001): a new destination opens a second stream
 *    (source re-sends the layout in bulk, the old destination forwards the
 *    map entries it holds); both streams deliver entries for one page and
 *    the highest generation wins, with no change to the entry handling;
 *  - co-migration (seed 003): a mig_group of mig_src with named barriers
 *    S1..S7 between the phases above (after SETUP, after each round, before
 *    STOP, after SWITCHOVER...): mig_src_step() already returns at every
 *    phase edge, so a barrier is a "wait until every member reached it" at
 *    those edges; the may-write bitmap is ORed into the send set at the
 *    start of each round (mig_src_note_write() is the single entry point).
 */
#ifndef FERRY_MIGRATE_H
#define FERRY_MIGRATE_H

#include <stdbool.h>
#include <stdint.h>

#include "dataplane/common/ferry_err.h"
#include "dataplane/migrate/migrate_ctl.h"

struct pager;
struct pg_vm;

/** pagemap server index: the page is still at the migration source (post-copy). */
#define PG_SERVER_MIGSRC 0xfffdu

/** Start the engine: the control socket (when configured). */
int mig_engine_init(struct pager *pg, struct ferry_err *err);
void mig_engine_fini(struct pager *pg);
/** Once per loop iteration: advances every migration a bounded step. */
void mig_engine_tick(struct pager *pg);
/** True when a migration has work queued: the loop must not sleep. */
bool mig_engine_busy(const struct pager *pg);
/** An epoll event on an engine descriptor (obj of PG_EV_MIG). */
void mig_engine_event(void *obj, uint32_t events);

/* Hooks from the pager. Each is a no-op when @p vm has no migration. */
/** Page @p idx of @p vm may have changed (WP fault, install, REMOVE). */
void mig_note_write(struct pg_vm *vm, uint64_t idx);
struct pg_fault;
/**
 * A fault of @p vm (page @p idx) before the pager handles it: a planned
 * migration's access sampler takes its MINOR faults and, while it samples,
 * the WP faults on pages the pager does not hold (mig_plan.h).
 * @return 1 taken (the faulting thread was woken), 0 the pager's.
 */
int mig_sample_fault(struct pg_vm *vm, uint64_t idx, const struct pg_fault *f);
/** Pages [first, first + n) became UNUSED. */
void mig_note_unused(struct pg_vm *vm, uint64_t first, uint64_t n);
/** @p vm is being torn down. */
void mig_vm_gone(struct pg_vm *vm);
/** Fault service must not run for @p vm now (source frozen, destination not switched over). */
bool mig_hold_faults(const struct pg_vm *vm);
/** Page-out must not touch @p vm now. */
bool mig_no_pageout(const struct pg_vm *vm);
/**
 * Destination: read page @p idx (state REMOTE(PG_SERVER_MIGSRC)) from the
 * source into @p buf (4 KiB). @return 0 or a negative errno (the source is
 * lost: the caller fails the fault).
 */
int mig_fetch_page(struct pg_vm *vm, uint64_t idx, void *buf);

#endif /* FERRY_MIGRATE_H */
