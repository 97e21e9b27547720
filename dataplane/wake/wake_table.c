/*
 * Hibernated-VM table and SYN store. See wake_table.h.
 */
#include "dataplane/wake/wake_table.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint32_t hash_ip(const uint8_t ip[4])
{
	uint32_t v = (uint32_t)ip[0] << 24 | (uint32_t)ip[1] << 16 | (uint32_t)ip[2] << 8 | ip[3];

	/* Murmur3 finaliser: addresses of one subnet differ in the low bits only. */
	v ^= v >> 16;
	v *= 0x85ebca6bu;
	v ^= v >> 13;
	v *= 0xc2b2ae35u;
	v ^= v >> 16;
	return v;
}

int wake_table_init(struct wake_table *t, uint32_t max_vms)
{
	uint32_t cap = 4;

	memset(t, 0, sizeof(*t));
	if (max_vms == 0 || max_vms > 65536)
		return -EINVAL;
	while (cap < 2 * max_vms)
		cap <<= 1;
	t->slots = calloc(cap, sizeof(*t->slots));
	if (!t->slots)
		return -ENOMEM;
	t->cap = cap;
	t->max_vms = max_vms;
	return 0;
}

void wake_table_free(struct wake_table *t)
{
	free(t->slots);
	memset(t, 0, sizeof(*t));
}

struct wake_vm *wake_table_find_ip(struct wake_table *t, const uint8_t ip[4])
{
	uint32_t mask = t->cap - 1, i = hash_ip(ip) & mask;

	for (uint32_t n = 0; n < t->cap; n++, i = (i + 1) & mask) {
		struct wake_vm *s = &t->slots[i];

		if (s->state == WAKE_SLOT_EMPTY)
			return NULL;
		if (s->state == WAKE_SLOT_USED && memcmp(s->ip, ip, 4) == 0)
			return s;
	}
	return NULL;
}

struct wake_vm *wake_table_find_id(struct wake_table *t, const char *id)
{
	/* Control path only (VM_DEL, VM_RUNNING): a scan is fine. */
	for (uint32_t i = 0; i < t->cap; i++)
		if (t->slots[i].state == WAKE_SLOT_USED && strcmp(t->slots[i].id, id) == 0)
			return &t->slots[i];
	return NULL;
}

static void rehash(struct wake_table *t)
{
	/* In place is not possible with linear probing; rebuild through a copy of the used entries. */
	struct wake_vm *old = t->slots;
	uint32_t cap = t->cap;
	struct wake_vm *fresh = calloc(cap, sizeof(*fresh));

	if (!fresh)
		return;   /* keep the tombstones; lookups stay correct */
	t->slots = fresh;
	t->count = 0;
	t->tombs = 0;
	for (uint32_t i = 0; i < cap; i++) {
		if (old[i].state == WAKE_SLOT_USED) {
			uint32_t mask = cap - 1, j = hash_ip(old[i].ip) & mask;

			while (fresh[j].state != WAKE_SLOT_EMPTY)
				j = (j + 1) & mask;
			fresh[j] = old[i];
			t->count++;
		}
	}
	free(old);
}

int wake_table_add(struct wake_table *t, const char *id, const uint8_t ip[4], const uint8_t mac[6],
		   struct wake_vm **out)
{
	struct wake_vm *by_ip, *by_id, *slot = NULL;
	size_t id_len;
	uint32_t mask, i;

	if (!id || (id_len = strnlen(id, FERRY_WAKE_VM_ID_MAX + 1)) == 0 || id_len > FERRY_WAKE_VM_ID_MAX)
		return FERRY_WAKE_E_BAD_VM_ID;
	if (ferry_wake_check_ip(ip) != FERRY_WAKE_E_OK || ferry_wake_check_mac(mac) != FERRY_WAKE_E_OK)
		return FERRY_WAKE_E_BAD_ADDR;
	by_ip = wake_table_find_ip(t, ip);
	by_id = wake_table_find_id(t, id);
	if (by_ip || by_id) {
		if (by_ip == by_id && memcmp(by_ip->mac, mac, 6) == 0) {
			if (out)
				*out = by_ip;
			return FERRY_WAKE_E_OK;
		}
		return FERRY_WAKE_E_EXISTS;
	}
	if (t->count >= t->max_vms)
		return FERRY_WAKE_E_TABLE_FULL;
	if (t->count + t->tombs + 1 > t->cap * 3 / 4)
		rehash(t);
	mask = t->cap - 1;
	i = hash_ip(ip) & mask;
	while (t->slots[i].state == WAKE_SLOT_USED)
		i = (i + 1) & mask;
	slot = &t->slots[i];
	if (slot->state == WAKE_SLOT_TOMB)
		t->tombs--;
	memset(slot, 0, sizeof(*slot));
	slot->state = WAKE_SLOT_USED;
	memcpy(slot->ip, ip, 4);
	memcpy(slot->mac, mac, 6);
	memcpy(slot->id, id, id_len);
	slot->id[id_len] = '\0';
	t->count++;
	if (out)
		*out = slot;
	return FERRY_WAKE_E_OK;
}

void wake_table_del(struct wake_table *t, struct wake_vm *vm)
{
	if (!vm || vm->state != WAKE_SLOT_USED)
		return;
	/* Keep ip for nothing: a tombstone only has to keep probe chains intact. */
	memset(vm, 0, sizeof(*vm));
	vm->state = WAKE_SLOT_TOMB;
	t->count--;
	t->tombs++;
}

void wake_table_clear(struct wake_table *t)
{
	memset(t->slots, 0, (size_t)t->cap * sizeof(*t->slots));
	t->count = 0;
	t->tombs = 0;
}

struct wake_vm *wake_table_next(struct wake_table *t, uint32_t *pos)
{
	while (*pos < t->cap) {
		struct wake_vm *s = &t->slots[(*pos)++];

		if (s->state == WAKE_SLOT_USED)
			return s;
	}
	return NULL;
}

enum wake_store_result wake_vm_store_syn(struct wake_vm *vm, const uint8_t *frame, size_t len,
					 const struct wake_pkt *p)
{
	struct wake_syn *s;

	for (uint8_t i = 0; i < vm->nsyn; i++) {
		s = &vm->syn[i];
		if (s->sport == p->sport && s->dport == p->dport && s->isn == p->isn &&
		    memcmp(s->src_ip, p->src_ip, 4) == 0) {
			vm->syn_dups++;
			return WAKE_STORE_DUP;
		}
	}
	if (len > WAKE_SYN_FRAME_MAX) {
		vm->syn_overflow++;
		return WAKE_STORE_TOO_BIG;
	}
	if (vm->nsyn >= WAKE_SYNS_PER_VM) {
		vm->syn_overflow++;
		return WAKE_STORE_FULL;
	}
	s = &vm->syn[vm->nsyn++];
	s->len = (uint16_t)len;
	s->sport = p->sport;
	s->dport = p->dport;
	s->isn = p->isn;
	memcpy(s->src_ip, p->src_ip, 4);
	memcpy(s->frame, frame, len);
	return WAKE_STORE_NEW;
}

bool wake_vm_note_access(struct wake_vm *vm, const struct wake_pkt *p, uint64_t now_ns)
{
	struct ferry_wake_request *wr = &vm->trigger;

	if (vm->wake_wanted)
		return false;
	memset(wr, 0, sizeof(*wr));
	if (p->kind == WAKE_PKT_TCP_SYN) {
		wr->reason = FERRY_WAKE_REASON_SYN;
		memcpy(wr->src_ip, p->src_ip, 4);
		memcpy(wr->dst_ip, p->dst_ip, 4);
		wr->src_port = p->sport;
		wr->dst_port = p->dport;
		wr->isn = p->isn;
		wr->l4_proto = 6;
	} else {
		wr->reason = FERRY_WAKE_REASON_ARP;
		memcpy(wr->src_ip, p->arp_spa, 4);
		memcpy(wr->dst_ip, p->arp_tpa, 4);
	}
	memcpy(wr->id, vm->id, sizeof(wr->id));
	vm->wake_wanted = true;
	vm->wake_acked = false;
	vm->wake_attempts = 0;
	vm->wake_next_ns = now_ns;
	vm->wake_first_ns = now_ns;
	return true;
}

uint64_t wake_backoff_ns(uint16_t attempt)
{
	uint64_t ns = 250000000ull;

	for (uint16_t i = 1; i < attempt && ns < 4000000000ull; i++)
		ns *= 2;
	return ns < 4000000000ull ? ns : 4000000000ull;
}
