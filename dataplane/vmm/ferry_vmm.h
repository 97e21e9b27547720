/**
 * @file ferry_vmm.h
 * libferry-vmm: hand a VM's guest memory to Ferry from an existing VMM.
 *
 * A VMM (QEMU, Cloud Hypervisor, crosvm, a custom one) links this small
 * library to speak Ferry's VMM socket protocol (docs/vmm-protocol.md) to the
 * pager: it connects to the pager's Unix socket, registers the VM's memory
 * regions together with its userfaultfd (and the memfd/shm file the guest RAM
 * lives in, when there is one), and from then on Ferry serves the VM's page
 * faults from the memory pool. Afterwards the VMM reports the ranges the guest
 * freed (virtio-balloon free page reporting), SUSPEND/RESUME, and parks its
 * device state with Ferry for migration.
 *
 * @code
 *   struct ferry_vmm_conn *c = ferry_vmm_connect("/run/ferry/vmm.sock");
 *   if (!c) err(1, "connect");
 *   int uffd = ferry_vmm_uffd_create(O_CLOEXEC | O_NONBLOCK | FERRY_VMM_UFFD_BEST_EFFORT,
 *                                    FERRY_VMM_UFFD_F_RECOMMENDED, NULL);
 *   ferry_vmm_uffd_register_range(uffd, ram, ram_size, FERRY_VMM_MODE_MISSING, NULL);
 *   struct ferry_vmm_region r = { .gpa = 0, .size = ram_size, .hva = (uintptr_t)ram,
 *                                 .offset = 0, .page_size = 4096 };
 *   if (ferry_vmm_register(c, "vm-42", &r, 1, uffd, memfd) < 0)
 *           errx(1, "register: %s", ferry_vmm_errmsg(c));
 *   ...
 *   ferry_vmm_free_hint(c, gpa, len);          // the guest freed [gpa, gpa + len)
 *   ferry_vmm_notify(c, FERRY_VMM_SUSPEND);
 *   ferry_vmm_put_state(c, blob, blob_len);
 *   ferry_vmm_unregister(c);
 *   ferry_vmm_close(c);
 * @endcode
 *
 * Conventions: every function that can fail returns a negative errno
 * (-EINVAL, -ETIMEDOUT, ...) and records a one-line message that
 * ferry_vmm_errmsg() returns until the next call. When the pager refused a
 * request (an ERROR reply), ferry_vmm_remote_code() gives its stable protocol
 * code (FERRY_VMMP_E_* in proto/vmm.h) and the connection stays usable; after
 * a transport or protocol failure (peer gone, timeout, garbage) the
 * connection is broken and every later call fails with -ENOTCONN. Calls are
 * synchronous (one request, one reply), EINTR-safe and bounded by the
 * connection's timeout. A connection is not thread-safe: use one per thread
 * or lock around calls. No call raises SIGPIPE.
 *
 * Server requests (migration). A VMM that registers with
 * ferry_vmm_register_opts() and FERRY_VMM_REG_SERVER_REQUESTS also answers
 * requests the pager sends: PAUSE (stop the vCPUs, upload the device state),
 * RESUME (run again; at a migration destination first fetch the state),
 * DROP_PTES (drop the page-table entries of guest ranges so that the next
 * access takes a minor fault) and the NOTICE "migrated away: exit". Its
 * event loop polls ferry_vmm_fd() for POLLIN and calls
 * ferry_vmm_next_request(); server requests that arrive while the VMM waits
 * for the reply to one of its own requests are queued in the connection
 * (ferry_vmm_pending() counts them), so check that too before sleeping:
 *
 * @code
 *   struct ferry_vmm_request rq;
 *   while (ferry_vmm_next_request(c, &rq, 1000) > 0) {
 *           switch (rq.kind) {
 *           case FERRY_VMM_REQ_PAUSE:
 *                   stop_vcpus();
 *                   ferry_vmm_reply_paused(c, &rq, dev_state, dev_state_len);
 *                   break;
 *           case FERRY_VMM_REQ_RESUME:
 *                   if (rq.flags & FERRY_VMM_RESUME_LOAD_STATE)
 *                           ferry_vmm_get_state(c, &blob, &blob_len), load(blob);
 *                   start_vcpus();
 *                   ferry_vmm_reply_ok(c, &rq, 0);
 *                   break;
 *           case FERRY_VMM_REQ_DROP_PTES:
 *                   ferry_vmm_drop_ptes(c, &rq);      // madvise + reply
 *                   break;
 *           case FERRY_VMM_REQ_MIGRATED:
 *                   exit(0);                          // a notice: no reply
 *           }
 *   }
 * @endcode
 */
#ifndef FERRY_VMM_H
#define FERRY_VMM_H

#include <stddef.h>
#include <stdint.h>

#include "dataplane/common/ferry_err.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Events for ferry_vmm_notify(). Same values as on the wire. */
#define FERRY_VMM_SUSPEND            1
#define FERRY_VMM_RESUME             2

#define FERRY_VMM_DEFAULT_TIMEOUT_MS 5000
#define FERRY_VMM_VM_ID_MAX          64   /**< bytes; printable ASCII, no blanks */
#define FERRY_VMM_MAX_REGIONS        64
#define FERRY_VMM_MAX_MEMFDS         16   /**< distinct memory files per registration */
#define FERRY_VMM_STAT_NAME_MAX      32

/** Registration modes of a region (the UFFDIO_REGISTER_MODE_* it was registered with). */
#define FERRY_VMM_MODE_MISSING       0x1u
#define FERRY_VMM_MODE_WP            0x2u
#define FERRY_VMM_MODE_MINOR         0x4u /**< shmem/hugetlbfs only: needs a memory file */

/** One guest memory region. */
struct ferry_vmm_region {
	uint64_t gpa;        /**< guest-physical base */
	uint64_t size;       /**< bytes, a multiple of page_size */
	uint64_t hva;        /**< where the region is mapped in the VMM */
	uint64_t offset;     /**< offset of the region in its memory file (0 without one) */
	uint32_t page_size;  /**< 4096 or 2097152; 0 means 4096 */
	uint32_t modes;      /**< FERRY_VMM_MODE_*; 0 means FERRY_VMM_MODE_MISSING */
	int mem_fd;          /**< ferry_vmm_register_ex() only: the region's memory file, or -1 */
};

/** A guest-physical range, for ferry_vmm_free_hints(). */
struct ferry_vmm_range {
	uint64_t gpa;
	uint64_t len;
};

/** One counter from ferry_vmm_stats(). */
struct ferry_vmm_stat {
	char name[FERRY_VMM_STAT_NAME_MAX + 1];
	uint64_t value;
};

/** What the pager said when it accepted the registration. */
struct ferry_vmm_info {
	uint64_t vm_handle;        /**< the pager's id for this VM (appears in its logs) */
	uint64_t server_features;  /**< FERRY_VMMP_SF_* bits (proto/vmm.h) */
	uint32_t max_chunk;        /**< largest state chunk the pager takes */
};

/** ferry_vmm_register_opts() flags. */
#define FERRY_VMM_REG_SERVER_REQUESTS 0x1u /**< this VMM answers server requests (ferry_vmm_next_request) */
#define FERRY_VMM_REG_INCOMING        0x2u /**< destination shell of migration_id: memory empty, paused
                                                until RESUME; implies FERRY_VMM_REG_SERVER_REQUESTS */

/** Extra registration options. */
struct ferry_vmm_reg_opts {
	uint32_t flags;            /**< FERRY_VMM_REG_* */
	uint64_t migration_id;     /**< with FERRY_VMM_REG_INCOMING */
};

/** Kinds of server request. */
enum ferry_vmm_req_kind {
	FERRY_VMM_REQ_PAUSE    = 1, /**< stop the vCPUs; answer with ferry_vmm_reply_paused() */
	FERRY_VMM_REQ_RESUME   = 2, /**< run the vCPUs; answer with ferry_vmm_reply_ok(0) once running */
	FERRY_VMM_REQ_DROP_PTES = 3, /**< drop PTEs of ranges; ferry_vmm_drop_ptes() does it and answers */
	FERRY_VMM_REQ_MIGRATED = 4, /**< notice (no answer): the VM runs elsewhere now; exit */
};

/** PAUSE flag: the pager wants the device state (ferry_vmm_reply_paused() uploads it). */
#define FERRY_VMM_PAUSE_SAVE_STATE    0x1u
/** RESUME flag: fetch the device state with ferry_vmm_get_state() before running (migration destination). */
#define FERRY_VMM_RESUME_LOAD_STATE   0x1u

/** A server request, from ferry_vmm_next_request(). */
struct ferry_vmm_request {
	enum ferry_vmm_req_kind kind;
	uint64_t id;               /**< the pager's request id (the reply functions echo it) */
	uint32_t flags;            /**< FERRY_VMM_PAUSE_* / FERRY_VMM_RESUME_* */
	size_t nranges;            /**< DROP_PTES: ranges, ascending and disjoint */
	const struct ferry_vmm_range *ranges; /**< owned by the connection, valid until the next
	                                            ferry_vmm_next_request() or ferry_vmm_close() */
};

/** A connection to the pager. Opaque. */
struct ferry_vmm_conn;

/* ---------------------------------------------------------------- connection */

/**
 * Connect to the pager's socket at @p path (a filesystem path, or "@name" for
 * the abstract namespace). The connection's timeout starts at
 * FERRY_VMM_DEFAULT_TIMEOUT_MS and also bounds the connect itself.
 * @return a connection, or NULL with errno set (ENOENT, ECONNREFUSED,
 * EACCES, ETIMEDOUT, ENAMETOOLONG, ENOMEM, ...).
 */
struct ferry_vmm_conn *ferry_vmm_connect(const char *path);

/**
 * Wrap an already connected Unix stream socket (one end of a socketpair, a
 * socket handed over by a supervisor). The connection owns @p sock from now
 * on, also on failure. @return a connection, or NULL with errno set.
 */
struct ferry_vmm_conn *ferry_vmm_attach(int sock);

/**
 * Bound every later request (send plus reply) to @p timeout_ms milliseconds;
 * -1 waits forever. @return 0 or -EINVAL.
 */
int ferry_vmm_set_timeout(struct ferry_vmm_conn *conn, int timeout_ms);

/**
 * The socket, for poll()ing: POLLIN means a server request (or a hang-up)
 * is waiting, to be read with ferry_vmm_next_request(). Do not read or
 * write it yourself.
 */
int ferry_vmm_fd(const struct ferry_vmm_conn *conn);

/** Close the socket and free the connection (NULL is fine). Registered fds stay the caller's. */
void ferry_vmm_close(struct ferry_vmm_conn *conn);

/** The message of the last failure on @p conn ("" when the last call succeeded). */
const char *ferry_vmm_errmsg(const struct ferry_vmm_conn *conn);

/** The protocol code of the last ERROR reply (0 if the last failure was local). */
uint32_t ferry_vmm_remote_code(const struct ferry_vmm_conn *conn);

/* ---------------------------------------------------------------- requests */

/**
 * Register VM @p vm_id: its @p n regions, its userfaultfd @p uffd (already
 * through UFFDIO_API and with every region registered on it) and, when the
 * guest RAM is a memfd/shm/hugetlbfs file, that file @p memfd (-1 for
 * anonymous memory). With a memfd every region lives in it (at its offset);
 * use ferry_vmm_register_ex() for one file per region. Both descriptors are
 * duplicated into the pager (SCM_RIGHTS); the caller keeps its own.
 * The uffd's features are read from /proc/self/fdinfo and reported to the
 * pager. @return 0, -EINVAL (bad arguments, with the rule in the message) or
 * an error from the pager (-EEXIST: the id is taken; -EACCES: this process is
 * not on the pager's allow-list; ...).
 */
int ferry_vmm_register(struct ferry_vmm_conn *conn, const char *vm_id, const struct ferry_vmm_region *regions,
		       unsigned int n, int uffd, int memfd);

/** Like ferry_vmm_register(), with each region's own ferry_vmm_region::mem_fd (-1: anonymous). */
int ferry_vmm_register_ex(struct ferry_vmm_conn *conn, const char *vm_id, const struct ferry_vmm_region *regions,
			  unsigned int n, int uffd);

/**
 * ferry_vmm_register() (@p memfd >= 0) or ferry_vmm_register_ex() (@p memfd
 * -1: each region's mem_fd) with @p opts (NULL: none). With
 * FERRY_VMM_REG_INCOMING the VMM is the destination of migration
 * @p opts->migration_id: the pager keeps its faults unanswered until the
 * migration engine has the memory, and the VMM must not run its vCPUs before
 * a RESUME request. @return as ferry_vmm_register(); -EOPNOTSUPP from a pager
 * without server requests or (incoming) without a migration engine.
 */
int ferry_vmm_register_opts(struct ferry_vmm_conn *conn, const char *vm_id, const struct ferry_vmm_region *regions,
			    unsigned int n, int uffd, int memfd, const struct ferry_vmm_reg_opts *opts);

/** What the pager answered to the registration. @return 0, or -ENOTCONN before one. */
int ferry_vmm_server_info(const struct ferry_vmm_conn *conn, struct ferry_vmm_info *info);

/**
 * The guest freed [@p gpa, @p gpa + @p len): the pager forgets those pages
 * (a later fault on them gets a zero page) and frees their pool slots.
 * Both values must be multiples of 4096 and @p len > 0.
 */
int ferry_vmm_free_hint(struct ferry_vmm_conn *conn, uint64_t gpa, uint64_t len);

/**
 * Many free hints at once. The ranges may come in any order and may overlap
 * or touch; they are sorted and merged into as few requests as possible.
 * @return 0 or the first failure (ranges before it were delivered).
 */
int ferry_vmm_free_hints(struct ferry_vmm_conn *conn, const struct ferry_vmm_range *ranges, size_t n);

/** Tell the pager the vCPUs stopped (FERRY_VMM_SUSPEND) or run again (FERRY_VMM_RESUME). */
int ferry_vmm_notify(struct ferry_vmm_conn *conn, int event);

/**
 * Store an opaque device-state blob of @p len bytes (at most 1 GiB) with the
 * pager, replacing any earlier one; sent in chunks of at most the pager's
 * max_chunk. @p len 0 stores an empty blob.
 */
int ferry_vmm_put_state(struct ferry_vmm_conn *conn, const void *blob, size_t len);

/**
 * Fetch the stored blob into a malloc()ed buffer: *@p blob (free() it) and
 * *@p len. An empty blob gives *blob NULL and *len 0. @return 0, -ENOENT if
 * the pager holds none, or another error.
 */
int ferry_vmm_get_state(struct ferry_vmm_conn *conn, void **blob, size_t *len);

/**
 * The pager's counters for this VM: up to @p cap of them into @p stats.
 * @return how many the pager sent (may exceed @p cap: only @p cap were copied).
 */
int ferry_vmm_stats(struct ferry_vmm_conn *conn, struct ferry_vmm_stat *stats, unsigned int cap);

/**
 * Hand the VM back: the pager stops serving its faults, drops its copies of
 * the descriptors and its pool pages. The connection may register again.
 */
int ferry_vmm_unregister(struct ferry_vmm_conn *conn);

/* ---------------------------------------------------------------- server requests */

/**
 * Wait up to @p timeout_ms (-1: forever, 0: just look) for the next server
 * request: a queued one first, otherwise one read from the socket. Server
 * requests of kinds this library does not know are answered with
 * ERROR(UNSUPPORTED) here and never returned. @return 1 with *@p req filled,
 * 0 when none came in time, or a negative errno (-ECONNRESET: the pager
 * closed the connection; -EPROTO: it sent something invalid; the connection
 * is broken after either).
 */
int ferry_vmm_next_request(struct ferry_vmm_conn *conn, struct ferry_vmm_request *req, int timeout_ms);

/** Server requests read and queued while waiting for replies (returned first by ferry_vmm_next_request). */
unsigned int ferry_vmm_pending(const struct ferry_vmm_conn *conn);

/** Answer @p req with OK(@p value). Not for notices. @return 0 or a negative errno. */
int ferry_vmm_reply_ok(struct ferry_vmm_conn *conn, const struct ferry_vmm_request *req, uint64_t value);

/**
 * Answer @p req with ERROR(@p code, @p msg): @p code a FERRY_VMMP_E_* value
 * (e.g. FERRY_VMMP_E_BUSY), @p msg a one-line reason (may be NULL).
 */
int ferry_vmm_reply_error(struct ferry_vmm_conn *conn, const struct ferry_vmm_request *req, uint32_t code,
			  const char *msg);

/**
 * Answer a PAUSE once the vCPUs are stopped: when the pager asked for the
 * state (FERRY_VMM_PAUSE_SAVE_STATE) upload @p blob[0..len) first (as
 * ferry_vmm_put_state()), then reply OK(bytes uploaded). Without the flag
 * @p blob is ignored and the reply is OK(0).
 */
int ferry_vmm_reply_paused(struct ferry_vmm_conn *conn, const struct ferry_vmm_request *req, const void *blob,
			   size_t len);

/**
 * Carry out a DROP_PTES request: madvise(MADV_DONTNEED) on this VMM's
 * mapping of every range (through the regions it registered), then reply
 * OK(bytes dropped). Only ranges inside regions backed by a memory file are
 * dropped (their data stays in the file; the next access is a minor fault);
 * a range in anonymous memory or outside the regions gets
 * ERROR(UNSUPPORTED / OUT_OF_RANGE) and nothing is dropped.
 */
int ferry_vmm_drop_ptes(struct ferry_vmm_conn *conn, const struct ferry_vmm_request *req);

/* ---------------------------------------------------------------- userfaultfd */

/*
 * UFFDIO_API feature bits (the kernel's UFFD_FEATURE_* values, defined here
 * because older <linux/userfaultfd.h> lack the newer ones).
 */
#define FERRY_VMM_UFFD_F_PAGEFAULT_FLAG_WP  (1ull << 0)
#define FERRY_VMM_UFFD_F_EVENT_FORK         (1ull << 1)
#define FERRY_VMM_UFFD_F_EVENT_REMAP        (1ull << 2)
#define FERRY_VMM_UFFD_F_EVENT_REMOVE       (1ull << 3)  /**< madvise(DONTNEED/REMOVE): guest frees */
#define FERRY_VMM_UFFD_F_MISSING_HUGETLBFS  (1ull << 4)
#define FERRY_VMM_UFFD_F_MISSING_SHMEM      (1ull << 5)
#define FERRY_VMM_UFFD_F_EVENT_UNMAP        (1ull << 6)
#define FERRY_VMM_UFFD_F_SIGBUS             (1ull << 7)
#define FERRY_VMM_UFFD_F_THREAD_ID          (1ull << 8)
#define FERRY_VMM_UFFD_F_MINOR_HUGETLBFS    (1ull << 9)
#define FERRY_VMM_UFFD_F_MINOR_SHMEM        (1ull << 10) /**< read sampling on shmem */
#define FERRY_VMM_UFFD_F_EXACT_ADDRESS      (1ull << 11)
#define FERRY_VMM_UFFD_F_WP_HUGETLBFS_SHMEM (1ull << 12)
#define FERRY_VMM_UFFD_F_WP_UNPOPULATED     (1ull << 13) /**< Linux 6.4 */
#define FERRY_VMM_UFFD_F_POISON             (1ull << 14) /**< Linux 6.6 */
#define FERRY_VMM_UFFD_F_WP_ASYNC           (1ull << 15) /**< Linux 6.7: write tracking via PAGEMAP_SCAN */
#define FERRY_VMM_UFFD_F_MOVE               (1ull << 16) /**< Linux 6.8 */

/** What Ferry's pager makes use of; pass with FERRY_VMM_UFFD_BEST_EFFORT. */
#define FERRY_VMM_UFFD_F_RECOMMENDED                                                         \
	(FERRY_VMM_UFFD_F_EVENT_REMOVE | FERRY_VMM_UFFD_F_MISSING_SHMEM |                     \
	 FERRY_VMM_UFFD_F_MISSING_HUGETLBFS | FERRY_VMM_UFFD_F_MINOR_SHMEM |                  \
	 FERRY_VMM_UFFD_F_MINOR_HUGETLBFS | FERRY_VMM_UFFD_F_WP_HUGETLBFS_SHMEM |             \
	 FERRY_VMM_UFFD_F_WP_UNPOPULATED | FERRY_VMM_UFFD_F_WP_ASYNC)

/*
 * Flags for ferry_vmm_uffd_create(), ORed with O_CLOEXEC, O_NONBLOCK and
 * UFFD_USER_MODE_ONLY (1) as for userfaultfd(2).
 */
#define FERRY_VMM_UFFD_BEST_EFFORT  (1 << 28) /**< enable the supported subset of the features */
#define FERRY_VMM_UFFD_DEV_ONLY     (1 << 29) /**< only via /dev/userfaultfd */
#define FERRY_VMM_UFFD_SYSCALL_ONLY (1 << 30) /**< only via userfaultfd(2) */

/**
 * Open a userfaultfd for a VMM that has none yet and do its UFFDIO_API
 * handshake. Tries userfaultfd(2) first and, when that is not permitted
 * (vm.unprivileged_userfaultfd = 0 without CAP_SYS_PTRACE), /dev/userfaultfd
 * (access by file permissions, Linux 6.1). @p features are UFFD_FEATURE_*
 * bits (FERRY_VMM_UFFD_F_*): all required, or with FERRY_VMM_UFFD_BEST_EFFORT
 * in @p flags the subset this kernel supports (see ferry_vmm_uffd_features()
 * for what was granted). Missing faults on anonymous memory need no feature.
 * @return the uffd, or a negative errno with @p err filled (may be NULL).
 */
int ferry_vmm_uffd_create(int flags, uint64_t features, struct ferry_err *err);

/** The features enabled on @p uffd (from /proc/self/fdinfo). @return 0 or a negative errno. */
int ferry_vmm_uffd_features(int uffd, uint64_t *features);

/**
 * Register [@p addr, @p addr + @p len) on @p uffd in @p modes
 * (FERRY_VMM_MODE_*; 0 means MISSING). The range must be page aligned and
 * mapped. @return 0 or a negative errno with @p err filled (may be NULL).
 */
int ferry_vmm_uffd_register_range(int uffd, void *addr, size_t len, uint64_t modes, struct ferry_err *err);

/** Undo ferry_vmm_uffd_register_range(). */
int ferry_vmm_uffd_unregister_range(int uffd, void *addr, size_t len, struct ferry_err *err);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_VMM_H */
