/**
 * @file pagemap.h
 * The per-VM page state table: one 16-byte entry per 4 KiB guest page, the
 * one truth every mechanism updates (fault handling, page-out, free hints,
 * later split migration, destination change, co-migration, hibernation).
 *
 * Per page:
 * server/slot are meaningful only while PM_F_HAS_SLOT is set (a fresh entry
 * is all zeros).
 *  - a state:
 *      PM_UNUSED    never populated or freed by the guest: a fault gets a zero
 *                   page at once; never paged in, paged out or sent (FCtrans);
 *      PM_LOCAL     resident in the VM's memory (its memfd or anonymous memory);
 *      PM_REMOTE    not resident; the bytes are in slot `slot` of source
 *                   `server` (a memory-server index, or PM_SERVER_SNAPSHOT
 *                   for a snapshot file, where `slot` is the page's file page);
 *      PM_IN_FLIGHT a transfer is under way (page-in or page-out); `server` and
 *                   `slot` still name the remote copy if there is one;
 *  - a version (migration generation; pm_bump_version() increments it, the
 *    table never interprets it);
 *  - flag bits (PM_F_*), free for the mechanisms that own them;
 *  - `aux`, 32 bits for the owner of an IN_FLIGHT page (e.g. a waiter count).
 *
 * Guarantees: O(1) lookup and update by page index; per-state counters are
 * exact at every return (pm_count()); per-server REMOTE/IN_FLIGHT-with-slot
 * counts are not kept (iterate). The table is not thread-safe: one owner
 * thread, or the caller locks.
 *
 * Layout (struct pm_entry, 16 bytes): u32 slot, u16 server, u8 state,
 * u8 flags, u32 version, u32 aux. A 1 TiB VM needs 4 GiB of table; the
 * entries are one calloc()ed array (untouched pages of it are never faulted
 * in by the kernel, so sparse use of a large VM costs little).
 */
#ifndef FERRY_PAGEMAP_H
#define FERRY_PAGEMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PM_PAGE_SHIFT 12
#define PM_PAGE_SIZE  4096u

enum pm_state {
	PM_UNUSED = 0,
	PM_LOCAL = 1,
	PM_REMOTE = 2,
	PM_IN_FLIGHT = 3,
	PM_NSTATES = 4,
};

/** Flag bits (8). The table only stores them. */
enum {
	PM_F_ACCESSED  = 1u << 0,  /**< referenced since the CLOCK hand last passed */
	PM_F_DIRTY     = 1u << 1,  /**< written since the last copy to the remote slot */
	PM_F_WP        = 1u << 2,  /**< write-protected by Ferry (uffd-wp) */
	PM_F_MAY_WRITE = 1u << 3,  /**< a partner maps it writable (co-migration, D-MORE) */
	PM_F_HAS_SLOT  = 1u << 4,  /**< server/slot name a valid remote copy */
	PM_F_PREFETCH  = 1u << 5,  /**< brought in by prefetch, not yet touched */
	PM_F_DROPPED   = 1u << 6,  /**< made unused while IN_FLIGHT: the transfer's owner must
				        finish it as UNUSED (release the slot) */
	PM_F_ZEROFILL  = 1u << 7,  /**< installed as a zero page and not re-examined since:
				        page-out tries it first, as it is probably still unused */
};

/** Source index meaning "the snapshot memory file"; slot = page index in that file. */
#define PM_SERVER_SNAPSHOT 0xffffu
#define PM_SERVER_NONE     0xfffeu

struct pm_entry {
	uint32_t slot;
	uint16_t server;
	uint8_t state;     /**< enum pm_state */
	uint8_t flags;     /**< PM_F_* */
	uint32_t version;
	uint32_t aux;
};

_Static_assert(sizeof(struct pm_entry) == 16, "pagemap entries are 16 bytes");

struct pagemap {
	struct pm_entry *e;
	uint64_t npages;
	uint64_t count[PM_NSTATES];
};

/** Make a table of @p npages pages, all PM_UNUSED, version 0, no flags. @return 0 or -ENOMEM/-EINVAL. */
int pm_init(struct pagemap *pm, uint64_t npages);
void pm_destroy(struct pagemap *pm);

/** Entry of page @p idx (< npages). Read-only: change state through the setters. */
static inline const struct pm_entry *pm_get(const struct pagemap *pm, uint64_t idx)
{
	return &pm->e[idx];
}

/** Pages in @p state right now (exact). */
static inline uint64_t pm_count(const struct pagemap *pm, enum pm_state state)
{
	return pm->count[state];
}

/** Set page @p idx to UNUSED: server/slot cleared, PM_F_HAS_SLOT dropped, other flags cleared. */
void pm_set_unused(struct pagemap *pm, uint64_t idx);
/** Set page @p idx LOCAL. Keeps flags; server/slot kept only if PM_F_HAS_SLOT is set. */
void pm_set_local(struct pagemap *pm, uint64_t idx);
/** Set page @p idx REMOTE in (@p server, @p slot); sets PM_F_HAS_SLOT. */
void pm_set_remote(struct pagemap *pm, uint64_t idx, uint16_t server, uint32_t slot);
/** Set page @p idx IN_FLIGHT (server/slot/flags unchanged); aux = 0. */
void pm_set_in_flight(struct pagemap *pm, uint64_t idx);
/** Drop the remote copy of page @p idx (server NONE, PM_F_HAS_SLOT cleared). State unchanged. */
void pm_clear_slot(struct pagemap *pm, uint64_t idx);

static inline void pm_flags_set(struct pagemap *pm, uint64_t idx, uint8_t f) { pm->e[idx].flags |= f; }
static inline void pm_flags_clear(struct pagemap *pm, uint64_t idx, uint8_t f) { pm->e[idx].flags &= (uint8_t)~f; }
static inline void pm_set_aux(struct pagemap *pm, uint64_t idx, uint32_t aux) { pm->e[idx].aux = aux; }
static inline void pm_set_version(struct pagemap *pm, uint64_t idx, uint32_t v) { pm->e[idx].version = v; }
static inline void pm_bump_version(struct pagemap *pm, uint64_t idx) { pm->e[idx].version++; }

/**
 * Called by pm_set_range_unused() for every page of the range that held a
 * remote copy (PM_F_HAS_SLOT), before the entry is cleared, so the caller can
 * release the slot. @p e is the entry as it was.
 */
typedef void (*pm_slot_fn)(void *arg, uint64_t idx, const struct pm_entry *e);

/**
 * Pages [@p first, @p first + @p n) (clipped to the table) become UNUSED,
 * except IN_FLIGHT pages, which are left for their owner: they get
 * PM_F_DROPPED, and the owner must make them UNUSED (releasing any slot) when
 * its transfer completes. @p fn (may be NULL) sees every dropped slot.
 * @return the number of pages that changed to UNUSED (were LOCAL or REMOTE).
 */
uint64_t pm_set_range_unused(struct pagemap *pm, uint64_t first, uint64_t n, pm_slot_fn fn, void *arg);

/**
 * First page >= @p from in @p state, or pm->npages if none. Iterate with
 * `for (i = pm_next(pm, s, 0); i < pm->npages; i = pm_next(pm, s, i + 1))`.
 * O(distance); entries are scanned 16 bytes at a time.
 */
uint64_t pm_next(const struct pagemap *pm, enum pm_state state, uint64_t from);

/** Recount states from the entries and compare with the counters (tests, debugging). */
bool pm_check(const struct pagemap *pm);

const char *pm_state_name(enum pm_state state);

#endif /* FERRY_PAGEMAP_H */
