/**
 * @file wake_table.h
 * The accept node's table of hibernated VMs: IPv4 -> {VM id, MAC}, an
 * open-addressing hash (linear probing, tombstones) sized at start, plus per
 * VM the first SYN of each connection, byte for byte, in a bounded store
 * (retransmits of a stored SYN - same 5-tuple and ISN - are counted, not
 * stored), and the VM's wake state (request sent? acknowledged? when to
 * re-send).
 *
 * No locking here: ferry-wake guards the table with one mutex shared by the
 * burst loop and the control thread (wake_shared in wake_ctl.h). The slot
 * array is allocated by wake_table_init(); only wake_table_add() allocates
 * again, on the control thread, when tombstones pile up (a rebuild: entry
 * pointers do not survive an add).
 */
#ifndef FERRY_WAKE_TABLE_H
#define FERRY_WAKE_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/wake.h"
#include "dataplane/wake/wake_pkt.h"

#define WAKE_SYNS_PER_VM   16u     /**< stored SYN frames per VM */
#define WAKE_SYN_FRAME_MAX 256u    /**< a SYN with VLAN tag, IP and TCP options fits in 18+60+60 */

struct wake_syn {
	uint16_t len;
	uint16_t sport, dport;
	uint8_t src_ip[4];
	uint32_t isn;
	uint8_t frame[WAKE_SYN_FRAME_MAX];
};

enum wake_slot_state { WAKE_SLOT_EMPTY = 0, WAKE_SLOT_USED, WAKE_SLOT_TOMB };

struct wake_vm {
	uint8_t state;                 /**< enum wake_slot_state */
	uint8_t ip[4];
	uint8_t mac[6];
	char id[FERRY_WAKE_VM_ID_MAX + 1];
	/* SYN store */
	uint8_t nsyn;
	struct wake_syn syn[WAKE_SYNS_PER_VM];
	uint64_t syn_dups;             /**< retransmits of stored SYNs */
	uint64_t syn_overflow;         /**< SYNs not stored: store full */
	/* wake state */
	bool wake_wanted;              /**< an access was seen: ferryd must wake this VM */
	bool wake_acked;               /**< ferryd answered a WAKE_REQUEST */
	uint16_t wake_attempts;        /**< WAKE_REQUESTs sent so far */
	uint64_t wake_next_ns;         /**< CLOCK_MONOTONIC time of the next (re-)send */
	uint64_t wake_req_id;          /**< request id of the last WAKE_REQUEST */
	uint64_t wake_first_ns;        /**< when the first access was seen */
	struct ferry_wake_request trigger; /**< what woke it (first SYN's 5-tuple, or the ARP) */
	/* work for the burst loop */
	bool replay_pending;           /**< VM_RUNNING arrived: send the stored SYNs, then remove */
	bool announce_pending;         /**< send a frame with the VM's MAC as source */
};

struct wake_table {
	uint32_t cap;                  /**< power of two */
	uint32_t count;                /**< USED slots */
	uint32_t tombs;
	uint32_t max_vms;              /**< count never exceeds this (cap / 2) */
	struct wake_vm *slots;
};

/** Allocate room for @p max_vms VMs (1..65536). 0 or -ENOMEM. */
int wake_table_init(struct wake_table *t, uint32_t max_vms);
void wake_table_free(struct wake_table *t);

/**
 * Add a hibernated VM. FERRY_WAKE_E_OK, _EXISTS (id or IPv4 already present:
 * the same triple again is OK and changes nothing), _TABLE_FULL, _BAD_ADDR,
 * _BAD_VM_ID. @p out (may be NULL) gets the entry.
 */
int wake_table_add(struct wake_table *t, const char *id, const uint8_t ip[4], const uint8_t mac[6],
		   struct wake_vm **out);
struct wake_vm *wake_table_find_ip(struct wake_table *t, const uint8_t ip[4]);
struct wake_vm *wake_table_find_id(struct wake_table *t, const char *id);
/** Remove @p vm (its stored SYNs are dropped). */
void wake_table_del(struct wake_table *t, struct wake_vm *vm);
/** Remove every VM. */
void wake_table_clear(struct wake_table *t);

/** Iterate: first call with *@p pos = 0; NULL at the end. */
struct wake_vm *wake_table_next(struct wake_table *t, uint32_t *pos);

enum wake_store_result {
	WAKE_STORE_NEW = 0,            /**< stored: first SYN of this connection */
	WAKE_STORE_DUP,                /**< same 5-tuple and ISN already stored */
	WAKE_STORE_FULL,               /**< store full: not stored */
	WAKE_STORE_TOO_BIG,            /**< frame above WAKE_SYN_FRAME_MAX: not stored */
};

/**
 * Store the SYN @p frame (classified as @p p, checksums already complete)
 * for @p vm unless it is a retransmit of one already stored.
 */
enum wake_store_result wake_vm_store_syn(struct wake_vm *vm, const uint8_t *frame, size_t len,
					 const struct wake_pkt *p);

/**
 * Record an access that must wake @p vm (SYN or ARP); the first one fills
 * the trigger and makes the request due at once. Returns true for the first.
 */
bool wake_vm_note_access(struct wake_vm *vm, const struct wake_pkt *p, uint64_t now_ns);

/** Back-off before re-sending WAKE_REQUEST attempt @p attempt (1-based): 250 ms doubling, at most 4 s. */
uint64_t wake_backoff_ns(uint16_t attempt);

#endif /* FERRY_WAKE_TABLE_H */
