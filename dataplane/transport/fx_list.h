/**
 * @file fx_list.h
 * Internal: the intrusive doubly linked list the transport backends use for
 * their ready, work and zombie queues. A head is a struct fx_link whose
 * prev/next point at itself when empty; an element embeds a struct fx_link
 * and is found again with fx_container_of. Not for callers of transport.h.
 */
#ifndef FERRY_FX_LIST_H
#define FERRY_FX_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct fx_link {
	struct fx_link *prev, *next;
};

static inline void fx_list_init(struct fx_link *h)
{
	h->prev = h->next = h;
}

static inline bool fx_list_empty(const struct fx_link *h)
{
	return h->next == h;
}

static inline void fx_list_add_tail(struct fx_link *h, struct fx_link *n)
{
	n->prev = h->prev;
	n->next = h;
	h->prev->next = n;
	h->prev = n;
}

/** Unlink @p n; it is left pointing at itself, so a second del is harmless. */
static inline void fx_list_del(struct fx_link *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = n;
}

#define fx_container_of(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

#endif /* FERRY_FX_LIST_H */
