/**
 * @file wake_ctl.h
 * State shared by ferry-wake's burst loop and its control thread, and the
 * control server (proto/wake over a Unix or TCP stream socket).
 *
 * Threads: the burst loop (an lcore) owns the port; the control thread owns
 * the sockets. Both touch the VM table under `lock`: the burst loop only when
 * a burst holds an ARP request or a SYN, or when `pending` says the control
 * thread left it work (replay a woken VM's SYNs, announce MACs). The burst
 * loop writes an eventfd when a VM needs waking so that the control thread
 * sends WAKE_REQUEST at once. Counters are written by one thread each and
 * read with relaxed atomic loads.
 *
 * No DPDK here: unit tests drive the control server with a simulated burst
 * loop.
 */
#ifndef FERRY_WAKE_CTL_H
#define FERRY_WAKE_CTL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "dataplane/common/auth.h"
#include "dataplane/common/ferry_err.h"
#include "dataplane/common/mono_time.h"
#include "dataplane/wake/wake_table.h"

/* Counters of the burst loop (one writer). Order = STATS_OK order. */
#define WAKE_DP_COUNTERS(X)                                                   \
	X(rx_pkts) X(tx_pkts) X(tx_dropped) X(arp_requests) X(arp_replies)     \
	X(arp_not_ours) X(arp_no_role) X(arp_announce_ignored)                 \
	X(syn_seen) X(syn_stored) X(syn_dup) X(syn_not_stored) X(syn_no_role)  \
	X(cksum_fixed_ip) X(cksum_fixed_tcp) X(syn_replayed) X(mac_announced)  \
	X(mbuf_alloc_failed) X(rx_other)

/* Counters of the control thread (one writer). */
#define WAKE_CTL_COUNTERS(X)                                                  \
	X(ctl_connections) X(ctl_auth_ok) X(ctl_auth_failed) X(ctl_unauth_refused) \
	X(ctl_messages) X(ctl_errors_sent) X(ctl_malformed) X(wake_requests_sent)  \
	X(wake_requests_acked) X(vm_added) X(vm_deleted) X(vm_running)             \
	X(role_takes) X(role_drops)

#define WAKE_FIELD(name) uint64_t name;
struct wake_dp_counters { WAKE_DP_COUNTERS(WAKE_FIELD) };
struct wake_ctl_counters { WAKE_CTL_COUNTERS(WAKE_FIELD) };
#undef WAKE_FIELD

/** Add to a counter that only this thread writes (readers use relaxed loads). */
#define WAKE_INC(field, n) __atomic_store_n(&(field), (field) + (n), __ATOMIC_RELAXED)
#define WAKE_READ(field)   __atomic_load_n(&(field), __ATOMIC_RELAXED)

struct wake_shared {
	pthread_mutex_t lock;
	struct wake_table table;       /**< under lock */
	bool role;                     /**< holds the accept-node role (under lock; loop reads relaxed) */
	uint64_t epoch;                /**< last role epoch seen (under lock) */
	int pending;                   /**< atomic: the burst loop has replay/announce work */
	int wake_evfd;                 /**< burst loop -> control thread: a wake is due */
	int stop;                      /**< atomic: shut down */
	bool wake_on_arp;              /**< an ARP request for a hibernated VM also wakes it */
	struct wake_dp_counters dp;
	struct wake_ctl_counters ctl;
};

/** Initialise @p sh with a table of @p max_vms. */
int wake_shared_init(struct wake_shared *sh, uint32_t max_vms, struct ferry_err *err);
void wake_shared_fini(struct wake_shared *sh);
/** Burst loop: a VM became due for waking; wake the control thread. */
void wake_shared_kick(struct wake_shared *sh);


#define WAKE_CTL_MAX_CONNS 16

struct wake_conn;

struct wake_ctl {
	struct wake_shared *sh;
	const struct ferry_secret *secret;
	int listen_fd;
	char listen_desc[160];
	char unix_path[108];           /**< unlinked at close when non-empty */
	struct wake_conn *conns[WAKE_CTL_MAX_CONNS];
	uint64_t next_req;
	bool warned_no_ferryd;
};

/**
 * Listen on @p spec: "unix:/path" (a stale socket file is replaced) or
 * "tcp:HOST:PORT" (port 0 picks one; see listen_desc).
 */
int wake_ctl_open(struct wake_ctl *ctl, const char *spec, const struct ferry_secret *secret,
		  struct wake_shared *sh, struct ferry_err *err);
/** Serve until sh->stop is set. */
void wake_ctl_run(struct wake_ctl *ctl);
void wake_ctl_close(struct wake_ctl *ctl);

#endif /* FERRY_WAKE_CTL_H */
