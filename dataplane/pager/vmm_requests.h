/**
 * @file vmm_requests.h
 * Server-initiated requests from the pager to a VMM (docs/vmm-protocol.md,
 * "Server requests"), for the migration engine that runs inside the pager.
 *
 * The pager is one epoll loop, so every request is asynchronous: the call
 * sends it and returns; the completion @p done runs later, from the loop,
 * exactly once per accepted request, with
 *   - status 0: the VMM answered OK (PAUSE: it stopped its vCPUs and, when
 *     asked, its device-state blob is complete in vm->state /
 *     vm->state_total, vm->state_valid true; DROP_PTES: the PTEs are gone);
 *   - a negative errno: -ETIMEDOUT (no answer within the timeout, counted in
 *     timeouts), -ECONNRESET (the VMM's connection closed or its VM was torn
 *     down meanwhile), -ECANCELED (the VMM unregistered, or the pager is
 *     shutting down), -EPROTO (an invalid answer, e.g. PAUSE OK whose state
 *     length does not match the stored blob), or the errno of the VMM's
 *     ERROR code (-EOPNOTSUPP for UNSUPPORTED, -EBUSY, ...; the code itself
 *     is in pg_vmm_last_error()).
 * @p done may issue the next request for the same VM. A call that fails
 * (negative return) never calls @p done.
 *
 * Only VMs registered over the VMM protocol with FERRY_VMMP_REG_F_SERVER_REQ
 * can be asked (-EOPNOTSUPP otherwise). Several requests may be outstanding
 * for one VM; the VMM answers them in order.
 *
 * Incoming VMs: a REGISTER with FERRY_VMMP_REG_F_INCOMING (the destination
 * shell of a migration) is parked: its uffd stays registered but the pager
 * does not read its faults (nothing is served as a zero page) until
 * pg_vm_unpark(). vmm_server.c then calls pg_vm_incoming_hook; without a
 * hook, or when the hook returns non-zero, the registration is refused
 * (ERROR UNSUPPORTED / the hook's code) and the VM torn down.
 */
#ifndef FERRY_PAGER_VMM_REQUESTS_H
#define FERRY_PAGER_VMM_REQUESTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/vmm.h"

struct pg_vm;
struct pager;

/** Completion of a server request (see the file comment for @p status). */
typedef void pg_vmm_done_fn(struct pg_vm *vm, int status, void *ctx);

/** Default answer timeout of a server request (ms). */
#define PG_VMM_REQ_TIMEOUT_MS 10000u

/**
 * Ask the VMM to stop its vCPUs and upload its device state (STATE_PUT into
 * vm->state); done() once both happened. The previous blob is dropped when
 * the request is sent. @return 0 (done() will run) or -EOPNOTSUPP, -ENOTCONN
 * (no live connection), -ENOMEM, -EIO (send failed; the connection closes).
 */
int pg_vmm_request_pause(struct pg_vm *vm, pg_vmm_done_fn *done, void *ctx);

/**
 * Ask the VMM to run its vCPUs here. @p load_state: the VMM first fetches
 * vm->state with STATE_GET (a migration destination; the blob must be in
 * place, vm->state_valid, else -ENOENT). done() once it runs.
 */
int pg_vmm_request_resume(struct pg_vm *vm, bool load_state, pg_vmm_done_fn *done, void *ctx);

/**
 * Ask the VMM to madvise(MADV_DONTNEED) its mapping of the guest ranges
 * @p r[0..n) (gpa, len; 4 KiB aligned; any order, merged and split into
 * FERRY_VMMP_MAX_DROP-range messages as needed — done() runs once, after the
 * last). Only memory-file regions: the data stays in the memfd and the next
 * access is a minor fault (with the region registered MINOR: a uffd minor
 * fault the pager sees). @return 0, -EINVAL (empty, misaligned) or as above.
 */
int pg_vmm_request_drop_ptes(struct pg_vm *vm, const struct ferry_vmmp_range *r, size_t n, pg_vmm_done_fn *done,
			     void *ctx);

/**
 * True when host range [@p start, @p end) of @p vm lies inside the guest
 * ranges of a DROP_PTES still outstanding for it. The VMM's
 * madvise(MADV_DONTNEED) raises UFFD_EVENT_REMOVE on its uffd, which would
 * otherwise read as "the guest freed these pages" (UNUSED, hole punched):
 * the uffd event path skips REMOVE events for which this is true, since the
 * data stays in the memory file.
 */
bool pg_vmm_dropping(const struct pg_vm *vm, uint64_t start, uint64_t end);

/**
 * Tell the (paused) source VMM that its VM now runs elsewhere: it exits.
 * One-way. @return 0 or a negative errno as above.
 */
int pg_vmm_notice_migrated(struct pg_vm *vm);

/** Answer timeout for requests sent from now on (ms, >= 1); default PG_VMM_REQ_TIMEOUT_MS. */
void pg_vmm_set_request_timeout(struct pager *pg, unsigned timeout_ms);

/** The FERRY_VMMP_E_* code of the last ERROR a VMM answered a server request with (0: none). */
uint32_t pg_vmm_last_error(const struct pager *pg);

/** Server-request counters of a pager. */
struct pg_vmm_req_counters {
	uint64_t sent;            /**< requests and notices sent */
	uint64_t ok;              /**< answered OK */
	uint64_t refused;         /**< answered ERROR */
	uint64_t timeouts;        /**< no answer in time */
	uint64_t aborted;         /**< connection closed / VM gone / unregistered / shutdown */
	uint64_t bad_replies;     /**< invalid or unmatched replies from VMMs */
	uint64_t incoming;        /**< incoming registrations handed to the hook */
	uint64_t incoming_refused;/**< incoming registrations refused (no hook, hook failed) */
};
void pg_vmm_request_counters(const struct pager *pg, struct pg_vmm_req_counters *out);

/* ---------------------------------------------------------------- incoming VMs */

/**
 * Called (from the loop) when VM @p vm registered as the destination shell of
 * migration @p migration_id. @p vm is parked. Return 0 to take it (the REGISTER
 * is answered REGISTER_OK), or a FERRY_VMMP_E_* code to refuse it (the VM is
 * torn down, the VMM gets ERROR with that code). Set by the migration engine;
 * NULL: incoming registrations are refused with FERRY_VMMP_E_UNSUPPORTED.
 */
typedef int pg_vm_incoming_fn(struct pg_vm *vm, uint64_t migration_id, void *ctx);
extern pg_vm_incoming_fn *pg_vm_incoming_hook;
extern void *pg_vm_incoming_ctx;

/** True while @p vm's faults are not being read (an incoming VM, or pg_vm_park()). */
bool pg_vm_parked(const struct pg_vm *vm);

/** Stop reading @p vm's uffd: faults wait in the kernel. @return 0 or -errno. */
int pg_vm_park(struct pg_vm *vm);

/** Serve @p vm's faults again (pending ones are read at once). @return 0 or -errno. */
int pg_vm_unpark(struct pg_vm *vm);

/** The migration id an incoming VM registered with (0 for other VMs). */
uint64_t pg_vm_migration_id(const struct pg_vm *vm);

/* ---------------------------------------------------------------- extra descriptors in the loop */

/** Called from the pager's loop when a watched descriptor is ready. */
typedef void pg_loop_fd_fn(struct pager *pg, int fd, uint32_t events, void *arg);

/**
 * Watch @p fd (EPOLLIN, level-triggered) in @p pg's loop and call @p fn
 * from the loop when it is ready: a way for code that runs beside the pager
 * (a migration engine's own sockets or timers, a test driver) to get control
 * inside the single-threaded loop, where pg_vmm_request_*() may be called.
 * The caller keeps @p fd. @return 0 or a negative errno.
 */
int pg_loop_watch(struct pager *pg, int fd, pg_loop_fd_fn *fn, void *arg);

/** Stop watching @p fd (safe from inside its own callback). */
void pg_loop_unwatch(struct pager *pg, int fd);

#endif /* FERRY_PAGER_VMM_REQUESTS_H */
