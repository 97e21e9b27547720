/*
 * The per-VM page state table (pagemap.h): a flat array of 16-byte entries
 * plus exact per-state counters, updated only through the setters so that
 * the counters can never drift.
 */
#include "dataplane/pagemap/pagemap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int pm_init(struct pagemap *pm, uint64_t npages)
{
	memset(pm, 0, sizeof(*pm));
	if (npages == 0 || npages > (UINT64_C(1) << 40))
		return -EINVAL;
	pm->e = calloc(npages, sizeof(*pm->e));
	if (!pm->e)
		return -ENOMEM;
	pm->npages = npages;
	pm->count[PM_UNUSED] = npages;
	/* No per-entry initialisation: zero is a valid fresh entry (server/slot are
	 * meaningful only with PM_F_HAS_SLOT), so untouched table pages stay unbacked. */
	return 0;
}

void pm_destroy(struct pagemap *pm)
{
	free(pm->e);
	memset(pm, 0, sizeof(*pm));
}

static inline void move(struct pagemap *pm, struct pm_entry *e, enum pm_state to)
{
	pm->count[e->state]--;
	pm->count[to]++;
	e->state = (uint8_t)to;
}

void pm_set_unused(struct pagemap *pm, uint64_t idx)
{
	struct pm_entry *e = &pm->e[idx];

	move(pm, e, PM_UNUSED);
	e->server = PM_SERVER_NONE;
	e->slot = 0;
	e->flags = 0;
	e->aux = 0;
}

void pm_set_local(struct pagemap *pm, uint64_t idx)
{
	struct pm_entry *e = &pm->e[idx];

	move(pm, e, PM_LOCAL);
	if (!(e->flags & PM_F_HAS_SLOT)) {
		e->server = PM_SERVER_NONE;
		e->slot = 0;
	}
	e->aux = 0;
}

void pm_set_remote(struct pagemap *pm, uint64_t idx, uint16_t server, uint32_t slot)
{
	struct pm_entry *e = &pm->e[idx];

	move(pm, e, PM_REMOTE);
	e->server = server;
	e->slot = slot;
	e->flags |= PM_F_HAS_SLOT;
	e->aux = 0;
}

void pm_set_in_flight(struct pagemap *pm, uint64_t idx)
{
	struct pm_entry *e = &pm->e[idx];

	move(pm, e, PM_IN_FLIGHT);
	e->aux = 0;
}

void pm_clear_slot(struct pagemap *pm, uint64_t idx)
{
	struct pm_entry *e = &pm->e[idx];

	e->flags &= (uint8_t)~PM_F_HAS_SLOT;
	e->server = PM_SERVER_NONE;
	e->slot = 0;
}

uint64_t pm_set_range_unused(struct pagemap *pm, uint64_t first, uint64_t n, pm_slot_fn fn, void *arg)
{
	uint64_t changed = 0, end;

	if (first >= pm->npages)
		return 0;
	end = n > pm->npages - first ? pm->npages : first + n;
	for (uint64_t i = first; i < end; i++) {
		struct pm_entry *e = &pm->e[i];

		if (e->state == PM_IN_FLIGHT) {
			e->flags |= PM_F_DROPPED;
			continue;
		}
		if (e->state == PM_UNUSED)
			continue;
		if ((e->flags & PM_F_HAS_SLOT) && fn)
			fn(arg, i, e);
		pm_set_unused(pm, i);
		changed++;
	}
	return changed;
}

uint64_t pm_next(const struct pagemap *pm, enum pm_state state, uint64_t from)
{
	for (uint64_t i = from; i < pm->npages; i++)
		if (pm->e[i].state == state)
			return i;
	return pm->npages;
}

bool pm_check(const struct pagemap *pm)
{
	uint64_t c[PM_NSTATES] = { 0 };

	for (uint64_t i = 0; i < pm->npages; i++) {
		if (pm->e[i].state >= PM_NSTATES)
			return false;
		c[pm->e[i].state]++;
	}
	return memcmp(c, pm->count, sizeof(c)) == 0;
}

const char *pm_state_name(enum pm_state state)
{
	switch (state) {
	case PM_UNUSED: return "unused";
	case PM_LOCAL: return "local";
	case PM_REMOTE: return "remote";
	case PM_IN_FLIGHT: return "in-flight";
	default: return "?";
	}
}
