/**
 * @file migrate_ctl.h
 * Client API of ferry-pager's migration control socket (issue 5: split
 * migration). ferryd (or a test) drives a migration through it:
 *
 *   on the MAIN (destination) host's pager:
 *     mig_ctl_prepare_incoming(vm_id, budget, sub-hosts) -> endpoint
 *       The pager makes ready to receive @p vm_id: it connects to the
 *       sub-hosts' memory servers (as the owner of every extent it will
 *       allocate there), opens a migration listener and returns where the
 *       source must connect (host, port) and a fresh 32-byte token that the
 *       source must present (in addition to the cluster-secret HMAC).
 *       The destination shell VM (a VMM started with `--incoming`) registers
 *       with the pager before or after this call; the pager pairs them by
 *       vm_id.
 *   on the SOURCE host's pager:
 *     mig_ctl_start(vm_id, endpoint, mode)
 *       Starts moving the registered VM @p vm_id to @p endpoint. Returns as
 *       soon as the migration is set up (or refused); progress is polled.
 *   on either:
 *     mig_ctl_status(vm_id) -> struct mig_progress (live; phase DONE /
 *       FAILED / ABORTED is final and stays readable until the next start)
 *     mig_ctl_abort(vm_id): before switch-over the VM stays (or is resumed)
 *       at the source, intact; after switch-over abort is refused (-EBUSY):
 *       the VM already runs at the destination.
 *
 * Transport: a Unix stream socket of ferry-pager (`migrate_socket` in its
 * config, "@name" for the abstract namespace), peers checked with
 * SO_PEERCRED against the same allow-list as the VMM socket. Messages are
 * proto/migrate.h control messages (one request, one reply, in order).
 *
 * Every call blocks for at most the socket timeout (5 s) and returns 0 or a
 * negative errno with @p err filled (a refused request carries the pager's
 * own message). A call that timed out or broke off mid-message leaves the
 * connection closed; the next call opens a new one (a late reply is never
 * taken for a later call's). Not thread-safe: one mig_ctl per thread.
 */
#ifndef FERRY_MIGRATE_CTL_H
#define FERRY_MIGRATE_CTL_H

#include <stdint.h>

#include "dataplane/common/ferry_err.h"

#define MIG_HOST_MAX   64     /**< host name / address bytes incl. NUL */
#define MIG_TOKEN_LEN  32
#define MIG_SUBHOSTS_MAX 8
#define MIG_VM_ID_MAX  64     /**< VM id bytes without NUL (as FERRY_VMMP_VM_ID_MAX) */

/** Where the source connects to reach the destination (filled by PREPARE). */
struct mig_endpoint {
	char host[MIG_HOST_MAX];
	uint16_t port;
	uint8_t token[MIG_TOKEN_LEN];
};

/** A sub-host's memory server that the main host uses for the VM's cold pages. */
struct mig_subhost {
	char host[MIG_HOST_MAX];
	uint16_t port;
};

enum mig_mode {
	MIG_MODE_PRECOPY = 1,   /**< rounds of dirty pages, stop-and-copy, no post-copy */
	MIG_MODE_POSTCOPY = 2,  /**< switch over at once, pages fetched/pushed afterwards */
	MIG_MODE_PLANNED = 3,   /**< planner: predicted-write pages post-copy, the rest pre-copy once */
	MIG_MODE_FULL = 4,      /**< baseline: every page incl. unused, like conventional split migration */
};

enum mig_phase {
	MIG_PH_IDLE = 0,
	MIG_PH_SETUP,           /**< connecting, authenticating, layout */
	MIG_PH_PRECOPY,         /**< rounds while the VM runs at the source */
	MIG_PH_STOP,            /**< VM paused at the source, last dirty pages + device state */
	MIG_PH_SWITCHOVER,      /**< destination resuming the VM */
	MIG_PH_POSTCOPY,        /**< VM runs at the destination, pages still at the source */
	MIG_PH_DONE,
	MIG_PH_FAILED,
	MIG_PH_ABORTED,
};

/** Live progress of one migration, as seen by the side that is asked. */
struct mig_progress {
	enum mig_phase phase;
	uint32_t round;                /**< pre-copy round (1-based; 0 before the first) */
	uint64_t pages_total;          /**< pages of the VM */
	uint64_t pages_sent;           /**< pages whose data moved (main host or sub-host) */
	uint64_t pages_skipped_unused; /**< UNUSED pages never sent */
	uint64_t pages_remaining;      /**< pages still only at the source */
	uint64_t pages_resent;         /**< pages sent again because they were written (source: also pushed pages
	                                    written since and left for post-copy: pulled again) */
	uint64_t pages_to_subhosts;    /**< of pages_sent, written straight to sub-hosts */
	uint64_t bytes_sent;           /**< page data + maps + device state */
	uint64_t postcopy_faults;      /**< destination faults served from the source */
	uint64_t started_ns;           /**< CLOCK_REALTIME at start */
	uint64_t downtime_ns;          /**< pause at the source -> resume at the destination */
	uint64_t total_ns;             /**< start -> DONE/FAILED/ABORTED (or so far) */
	uint32_t generation;           /**< source's current page generation */
	char error[160];               /**< why FAILED/ABORTED, NUL-terminated */
};

struct mig_ctl;

/** Connect to a pager's migration socket at @p path ("@name" = abstract). */
int mig_ctl_connect(const char *path, struct mig_ctl **ctl, struct ferry_err *err);
void mig_ctl_close(struct mig_ctl *ctl);

/**
 * On the main host's pager: make ready to receive @p vm_id with at most
 * @p budget_bytes of local memory (0: no limit); cold pages go to @p subs.
 * @p ep gets the address the source must connect to and the token.
 */
int mig_ctl_prepare_incoming(struct mig_ctl *ctl, const char *vm_id, uint64_t budget_bytes,
			     const struct mig_subhost *subs, unsigned nsubs, struct mig_endpoint *ep,
			     struct ferry_err *err);

/** On the source pager: start moving @p vm_id to @p dest. */
int mig_ctl_start(struct mig_ctl *ctl, const char *vm_id, const struct mig_endpoint *dest, enum mig_mode mode,
		  struct ferry_err *err);

/** Progress of the migration of @p vm_id on this pager (-ENOENT: none). */
int mig_ctl_status(struct mig_ctl *ctl, const char *vm_id, struct mig_progress *p, struct ferry_err *err);

/** Abort the migration of @p vm_id (-EBUSY after switch-over, -ENOENT: none). */
int mig_ctl_abort(struct mig_ctl *ctl, const char *vm_id, struct ferry_err *err);

/** Printable names ("precopy", "postcopy", ...; "?" when unknown). */
const char *mig_mode_name(enum mig_mode m);
const char *mig_phase_name(enum mig_phase p);
/** Parse a mode name. @return 0 or -EINVAL. */
int mig_mode_parse(const char *s, enum mig_mode *m);

#endif /* FERRY_MIGRATE_CTL_H */
