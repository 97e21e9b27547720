/*
 * Control protocol codec (ferryctl/ferryd): pure byte (de)serialisation, no
 * I/O, no allocation. Layouts: the table in ctrl.h. Header, HELLO,
 * CHALLENGE, AUTH, STATS_OK and ERROR come from frame.c.
 *
 * The bodies are read and written through two small cursors (struct rd,
 * struct wr) so that every field access is bounds-checked in one place: a
 * read past the payload is MALFORMED (the sizes do not add up), a write past
 * the buffer TOO_LARGE. The first error sticks; later accesses do nothing.
 * Encoders produce exactly the bytes the decoder accepts (canonical form),
 * which the fuzzer checks by re-encoding every message it decodes.
 */
#include "proto/ctrl.h"
#include "proto/frame.h"
#include "proto/wire.h"

#include <stdbool.h>
#include <string.h>

#define REPLY_TYPES ((1u << FERRY_CTRL_CHALLENGE) | (1u << FERRY_CTRL_AUTH_OK) | (1u << FERRY_CTRL_STATUS_OK) | \
		     (1u << FERRY_CTRL_NODES_OK) | (1u << FERRY_CTRL_VMS_OK) | (1u << FERRY_CTRL_PROGRESS) |     \
		     (1u << FERRY_CTRL_ENDPOINT) | (1u << FERRY_CTRL_STATS_OK) | (1u << FERRY_CTRL_OK) |         \
		     (1u << FERRY_CTRL_ERROR))

static uint32_t type_max_payload(uint8_t type)
{
	switch (type) {
	case FERRY_CTRL_NODES_OK:
	case FERRY_CTRL_VMS_OK:
	case FERRY_CTRL_NODE_REPORT:
		return FERRY_CTRL_MAX_PAYLOAD;
	default:
		return FERRY_CTRL_SMALL_PAYLOAD;
	}
}

static const struct frame_proto ctrl_frame = {
	.magic = FERRY_CTRL_MAGIC,
	.version = FERRY_CTRL_VERSION,
	.type_max = FERRY_CTRL_TYPE_MAX,
	.known_flags = FERRY_CTRL_F_KNOWN,
	.reply_flag = FERRY_CTRL_F_REPLY,
	.reply_types = REPLY_TYPES,
	.max_payload = type_max_payload,
	.type_stats_ok = FERRY_CTRL_STATS_OK,
	.type_error = FERRY_CTRL_ERROR,
	.stats_max = FERRY_CTRL_MAX_STATS,
	.stat_name_max = FERRY_CTRL_STAT_NAME_MAX,
	.errmsg_max = FERRY_CTRL_ERRMSG_MAX,
	.type_hello = FERRY_CTRL_HELLO,
	.type_challenge = FERRY_CTRL_CHALLENGE,
	.type_auth = FERRY_CTRL_AUTH,
	.name_max = FERRY_CTRL_NAME_MAX,
};

_Static_assert(FERRY_CTRL_E_OK == FRAME_E_OK && FERRY_CTRL_E_TRUNCATED == FRAME_E_TRUNCATED &&
		       FERRY_CTRL_E_BAD_MAGIC == FRAME_E_BAD_MAGIC && FERRY_CTRL_E_VERSION == FRAME_E_VERSION &&
		       FERRY_CTRL_E_UNKNOWN_TYPE == FRAME_E_UNKNOWN_TYPE &&
		       FERRY_CTRL_E_BAD_FLAGS == FRAME_E_BAD_FLAGS && FERRY_CTRL_E_TOO_LARGE == FRAME_E_TOO_LARGE &&
		       FERRY_CTRL_E_MALFORMED == FRAME_E_MALFORMED,
	       "ctrl error codes 0..7 are frame.h's");
_Static_assert(FERRY_CTRL_HDR_LEN == FRAME_HDR_LEN, "ctrl header is the frame header");
_Static_assert(FERRY_CTRL_NONCE_LEN == FRAME_NONCE_LEN && FERRY_CTRL_MAC_LEN == FRAME_MAC_LEN,
	       "ctrl handshake is frame.h's");
_Static_assert(FERRY_CTRL_TYPE_MAX <= 31, "reply_types is a u32 bit set");
/* The largest list must fit its limit: 256 VMs of 12 + 2 x 65 bytes, 64 nodes of 56 + 65 + 65. */
_Static_assert(8 + FERRY_CTRL_VMS_MAX * (12 + 2 * (1 + FERRY_CTRL_NAME_MAX)) <= FERRY_CTRL_MAX_PAYLOAD,
	       "a full VMS_OK fits");
_Static_assert(16 + 2 * 65 + FERRY_CTRL_NODES_MAX * (56 + 2 * 65) <= FERRY_CTRL_MAX_PAYLOAD, "a full NODES_OK fits");

/* ---------------------------------------------------------------- checks */

enum str_kind { STR_NAME, STR_ADDR };

static bool name_char(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
	       c == '-';
}

static int check_str(const uint8_t *s, size_t len, enum str_kind kind, bool optional)
{
	size_t max = kind == STR_NAME ? FERRY_CTRL_NAME_MAX : FERRY_CTRL_ADDR_MAX;
	int bad = kind == STR_NAME ? FERRY_CTRL_E_BAD_NAME : FERRY_CTRL_E_BAD_ADDR;

	if (len == 0)
		return optional ? FERRY_CTRL_E_OK : bad;
	if (len > max)
		return FERRY_CTRL_E_TOO_LARGE;
	for (size_t i = 0; i < len; i++) {
		if (kind == STR_NAME ? !name_char(s[i]) : (s[i] < 0x21 || s[i] > 0x7e))
			return bad;
	}
	return FERRY_CTRL_E_OK;
}

int ferry_ctrl_check_name(const char *s)
{
	return s ? check_str((const uint8_t *)s, strnlen(s, FERRY_CTRL_NAME_MAX + 1), STR_NAME, false)
		 : FERRY_CTRL_E_BAD_NAME;
}

int ferry_ctrl_check_addr(const char *s)
{
	return s ? check_str((const uint8_t *)s, strnlen(s, FERRY_CTRL_ADDR_MAX + 1), STR_ADDR, false)
		 : FERRY_CTRL_E_BAD_ADDR;
}

/* ---------------------------------------------------------------- reader */

struct rd {
	const uint8_t *p;
	uint32_t n, off;
	int err;
};

/* Pointer to the next @k bytes, or NULL (and MALFORMED) when the payload is shorter. */
static const uint8_t *rd_take(struct rd *r, uint32_t k)
{
	const uint8_t *q;

	if (r->err)
		return NULL;
	if (r->n - r->off < k) {
		r->err = FERRY_CTRL_E_MALFORMED;
		return NULL;
	}
	q = r->p + r->off;
	r->off += k;
	return q;
}

static uint8_t rd_u8(struct rd *r)
{
	const uint8_t *q = rd_take(r, 1);

	return q ? q[0] : 0;
}

static uint16_t rd_u16(struct rd *r)
{
	const uint8_t *q = rd_take(r, 2);

	return q ? wire_get_u16(q) : 0;
}

static uint32_t rd_u32(struct rd *r)
{
	const uint8_t *q = rd_take(r, 4);

	return q ? wire_get_u32(q) : 0;
}

static uint64_t rd_u64(struct rd *r)
{
	const uint8_t *q = rd_take(r, 8);

	return q ? wire_get_u64(q) : 0;
}

static void rd_fail(struct rd *r, int code)
{
	if (!r->err)
		r->err = code;
}

/* A reserved field of @k bytes (<= 8): must be zero. */
static void rd_zero(struct rd *r, uint32_t k)
{
	const uint8_t *q = rd_take(r, k);

	for (uint32_t i = 0; q && i < k; i++)
		if (q[i])
			rd_fail(r, FERRY_CTRL_E_MALFORMED);
}

/* An enum byte in 1..max. */
static uint8_t rd_enum(struct rd *r, uint8_t max)
{
	uint8_t v = rd_u8(r);

	if (v < 1 || v > max)
		rd_fail(r, FERRY_CTRL_E_MALFORMED);
	return v;
}

/* A str into @out (NAME_MAX/ADDR_MAX + 1 bytes), checked as @kind. */
static void rd_str(struct rd *r, char *out, enum str_kind kind, bool optional)
{
	uint8_t len = rd_u8(r);
	const uint8_t *s;
	int rc;

	if (r->err)
		return;
	if (len > (kind == STR_NAME ? FERRY_CTRL_NAME_MAX : FERRY_CTRL_ADDR_MAX)) {
		rd_fail(r, FERRY_CTRL_E_TOO_LARGE);
		return;
	}
	s = rd_take(r, len);
	if (!s)
		return;
	rc = check_str(s, len, kind, optional);
	if (rc != FERRY_CTRL_E_OK) {
		rd_fail(r, rc);
		return;
	}
	memcpy(out, s, len);
	out[len] = '\0';
}

static int rd_end(struct rd *r)
{
	if (!r->err && r->off != r->n)
		r->err = FERRY_CTRL_E_MALFORMED;
	return r->err;
}

/* ---------------------------------------------------------------- writer */

struct wr {
	uint8_t *p;
	size_t cap, off;
	int err;
};

static uint8_t *wr_take(struct wr *w, size_t k)
{
	uint8_t *q;

	if (w->err)
		return NULL;
	if (w->cap - w->off < k) {
		w->err = FERRY_CTRL_E_TOO_LARGE;
		return NULL;
	}
	q = w->p + w->off;
	w->off += k;
	return q;
}

static void wr_u8(struct wr *w, uint8_t v)
{
	uint8_t *q = wr_take(w, 1);

	if (q)
		q[0] = v;
}

static void wr_u16(struct wr *w, uint16_t v)
{
	uint8_t *q = wr_take(w, 2);

	if (q)
		wire_put_u16(q, v);
}

static void wr_u32(struct wr *w, uint32_t v)
{
	uint8_t *q = wr_take(w, 4);

	if (q)
		wire_put_u32(q, v);
}

static void wr_u64(struct wr *w, uint64_t v)
{
	uint8_t *q = wr_take(w, 8);

	if (q)
		wire_put_u64(q, v);
}

static void wr_fail(struct wr *w, int code)
{
	if (!w->err)
		w->err = code;
}

static void wr_zero(struct wr *w, size_t k)
{
	uint8_t *q = wr_take(w, k);

	if (q)
		memset(q, 0, k);
}

static void wr_enum(struct wr *w, uint8_t v, uint8_t max)
{
	if (v < 1 || v > max)
		wr_fail(w, FERRY_CTRL_E_MALFORMED);
	wr_u8(w, v);
}

static void wr_str(struct wr *w, const char *s, enum str_kind kind, bool optional)
{
	size_t max = kind == STR_NAME ? FERRY_CTRL_NAME_MAX : FERRY_CTRL_ADDR_MAX;
	size_t len;
	uint8_t *q;
	int rc;

	if (w->err)
		return;
	len = s ? strnlen(s, max + 1) : 0;
	rc = check_str((const uint8_t *)(s ? s : ""), len, kind, optional);
	if (rc != FERRY_CTRL_E_OK) {
		wr_fail(w, rc);
		return;
	}
	wr_u8(w, (uint8_t)len);
	q = wr_take(w, len);
	if (q)
		memcpy(q, s, len);
}

/* ---------------------------------------------------------------- bodies */

/*
 * Each body has one function that walks it in both directions would be
 * neat, but the two directions check different things (the decoder the
 * bytes, the encoder the caller's structs); they are kept side by side
 * instead, body by body, so that a layout change touches adjacent lines.
 */

static void rd_vm(struct rd *r, struct ferry_ctrl_vm *vm)
{
	const uint8_t *q;

	vm->state = rd_enum(r, FERRY_CTRL_VM_STATE_MAX);
	rd_zero(r, 1);
	q = rd_take(r, 10);
	if (q) {
		memcpy(vm->ip, q, 4);
		memcpy(vm->mac, q + 4, 6);
	}
	vm->gen = rd_u64(r);
	rd_str(r, vm->id, STR_NAME, false);
	rd_str(r, vm->node, STR_NAME, true);
}

static void wr_vm(struct wr *w, const struct ferry_ctrl_vm *vm)
{
	uint8_t *q;

	wr_enum(w, vm->state, FERRY_CTRL_VM_STATE_MAX);
	wr_zero(w, 1);
	q = wr_take(w, 10);
	if (q) {
		memcpy(q, vm->ip, 4);
		memcpy(q + 4, vm->mac, 6);
	}
	wr_u64(w, vm->gen);
	wr_str(w, vm->id, STR_NAME, false);
	wr_str(w, vm->node, STR_NAME, true);
}

static void rd_node(struct rd *r, struct ferry_ctrl_node *nd)
{
	nd->roles = rd_u32(r);
	if (nd->roles & ~FERRY_CTRL_ROLE_KNOWN)
		rd_fail(r, FERRY_CTRL_E_MALFORMED);
	nd->state = rd_enum(r, FERRY_CTRL_NODE_STATE_MAX);
	rd_zero(r, 1);
	nd->cpus = rd_u16(r);
	nd->load1 = rd_u32(r);
	nd->load5 = rd_u32(r);
	nd->load15 = rd_u32(r);
	nd->mem_total = rd_u64(r);
	nd->mem_free = rd_u64(r);
	nd->vms_running = rd_u32(r);
	nd->load_score = rd_u32(r);
	nd->mem_score = rd_u32(r);
	nd->score = rd_u32(r);
	nd->age_ms = rd_u32(r);
	rd_str(r, nd->name, STR_NAME, false);
	rd_str(r, nd->addr, STR_ADDR, true);
	if (!r->err && nd->mem_free > nd->mem_total)
		rd_fail(r, FERRY_CTRL_E_MALFORMED);
}

static void wr_node(struct wr *w, const struct ferry_ctrl_node *nd)
{
	if ((nd->roles & ~FERRY_CTRL_ROLE_KNOWN) || nd->mem_free > nd->mem_total)
		wr_fail(w, FERRY_CTRL_E_MALFORMED);
	wr_u32(w, nd->roles);
	wr_enum(w, nd->state, FERRY_CTRL_NODE_STATE_MAX);
	wr_zero(w, 1);
	wr_u16(w, nd->cpus);
	wr_u32(w, nd->load1);
	wr_u32(w, nd->load5);
	wr_u32(w, nd->load15);
	wr_u64(w, nd->mem_total);
	wr_u64(w, nd->mem_free);
	wr_u32(w, nd->vms_running);
	wr_u32(w, nd->load_score);
	wr_u32(w, nd->mem_score);
	wr_u32(w, nd->score);
	wr_u32(w, nd->age_ms);
	wr_str(w, nd->name, STR_NAME, false);
	wr_str(w, nd->addr, STR_ADDR, true);
}

static void rd_status(struct rd *r, struct ferry_ctrl_status *s)
{
	s->uptime_ms = rd_u64(r);
	s->epoch = rd_u64(r);
	s->roles = rd_u32(r);
	if (s->roles & ~FERRY_CTRL_ROLE_KNOWN)
		rd_fail(r, FERRY_CTRL_E_MALFORMED);
	s->coordinator = rd_u8(r);
	if (s->coordinator > 1)
		rd_fail(r, FERRY_CTRL_E_MALFORMED);
	s->child_count = rd_u8(r);
	if (s->child_count > FERRY_CTRL_CHILDREN_MAX)
		rd_fail(r, FERRY_CTRL_E_TOO_LARGE);
	rd_zero(r, 2);
	rd_str(r, s->name, STR_NAME, false);
	rd_str(r, s->coord, STR_NAME, false);
	rd_str(r, s->accept, STR_NAME, true);
	for (unsigned int i = 0; !r->err && i < s->child_count; i++) {
		struct ferry_ctrl_child *c = &s->child[i];

		c->pid = rd_u32(r);
		c->restarts = rd_u32(r);
		c->state = rd_enum(r, FERRY_CTRL_CHILD_STATE_MAX);
		rd_zero(r, 3);
		rd_str(r, c->name, STR_NAME, false);
	}
}

static void wr_status(struct wr *w, const struct ferry_ctrl_status *s)
{
	if ((s->roles & ~FERRY_CTRL_ROLE_KNOWN) || s->coordinator > 1)
		wr_fail(w, FERRY_CTRL_E_MALFORMED);
	if (s->child_count > FERRY_CTRL_CHILDREN_MAX)
		wr_fail(w, FERRY_CTRL_E_TOO_LARGE);
	wr_u64(w, s->uptime_ms);
	wr_u64(w, s->epoch);
	wr_u32(w, s->roles);
	wr_u8(w, s->coordinator);
	wr_u8(w, s->child_count);
	wr_zero(w, 2);
	wr_str(w, s->name, STR_NAME, false);
	wr_str(w, s->coord, STR_NAME, false);
	wr_str(w, s->accept, STR_NAME, true);
	for (unsigned int i = 0; !w->err && i < s->child_count; i++) {
		const struct ferry_ctrl_child *c = &s->child[i];

		wr_u32(w, c->pid);
		wr_u32(w, c->restarts);
		wr_enum(w, c->state, FERRY_CTRL_CHILD_STATE_MAX);
		wr_zero(w, 3);
		wr_str(w, c->name, STR_NAME, false);
	}
}

static void rd_nodes(struct rd *r, struct ferry_ctrl_nodes *ns)
{
	ns->epoch = rd_u64(r);
	ns->count = rd_u16(r);
	if (ns->count > FERRY_CTRL_NODES_MAX)
		rd_fail(r, FERRY_CTRL_E_TOO_LARGE);
	rd_zero(r, 6);
	rd_str(r, ns->accept, STR_NAME, true);
	rd_str(r, ns->coord, STR_NAME, true);
	for (unsigned int i = 0; !r->err && i < ns->count; i++)
		rd_node(r, &ns->node[i]);
	/* A node listed twice would make "the" node ambiguous to every reader. */
	for (unsigned int i = 0; !r->err && i < ns->count; i++)
		for (unsigned int j = i + 1; j < ns->count; j++)
			if (strcmp(ns->node[i].name, ns->node[j].name) == 0)
				rd_fail(r, FERRY_CTRL_E_EXISTS);
}

static void wr_nodes(struct wr *w, const struct ferry_ctrl_nodes *ns)
{
	if (ns->count > FERRY_CTRL_NODES_MAX) {
		wr_fail(w, FERRY_CTRL_E_TOO_LARGE);
		return;
	}
	for (unsigned int i = 0; i < ns->count; i++)
		for (unsigned int j = i + 1; j < ns->count; j++)
			if (strcmp(ns->node[i].name, ns->node[j].name) == 0)
				wr_fail(w, FERRY_CTRL_E_EXISTS);
	wr_u64(w, ns->epoch);
	wr_u16(w, ns->count);
	wr_zero(w, 6);
	wr_str(w, ns->accept, STR_NAME, true);
	wr_str(w, ns->coord, STR_NAME, true);
	for (unsigned int i = 0; !w->err && i < ns->count; i++)
		wr_node(w, &ns->node[i]);
}

static void rd_vm_list(struct rd *r, struct ferry_ctrl_vm *vm, uint16_t count)
{
	for (unsigned int i = 0; !r->err && i < count; i++)
		rd_vm(r, &vm[i]);
	for (unsigned int i = 0; !r->err && i < count; i++)
		for (unsigned int j = i + 1; j < count; j++)
			if (strcmp(vm[i].id, vm[j].id) == 0)
				rd_fail(r, FERRY_CTRL_E_EXISTS);
}

static void wr_vm_list(struct wr *w, const struct ferry_ctrl_vm *vm, uint16_t count)
{
	for (unsigned int i = 0; i < count; i++)
		for (unsigned int j = i + 1; j < count; j++)
			if (strcmp(vm[i].id, vm[j].id) == 0)
				wr_fail(w, FERRY_CTRL_E_EXISTS);
	for (unsigned int i = 0; !w->err && i < count; i++)
		wr_vm(w, &vm[i]);
}

static void rd_vms(struct rd *r, struct ferry_ctrl_vms *vs)
{
	vs->count = rd_u16(r);
	if (vs->count > FERRY_CTRL_VMS_MAX)
		rd_fail(r, FERRY_CTRL_E_TOO_LARGE);
	rd_zero(r, 6);
	rd_vm_list(r, vs->vm, vs->count);
}

static void wr_vms(struct wr *w, const struct ferry_ctrl_vms *vs)
{
	if (vs->count > FERRY_CTRL_VMS_MAX) {
		wr_fail(w, FERRY_CTRL_E_TOO_LARGE);
		return;
	}
	wr_u16(w, vs->count);
	wr_zero(w, 6);
	wr_vm_list(w, vs->vm, vs->count);
}

static void rd_migrate(struct rd *r, struct ferry_ctrl_migrate *m, bool prepare)
{
	m->budget = rd_u64(r);
	m->mode = rd_enum(r, FERRY_CTRL_MODE_MAX);
	m->sub_count = rd_u8(r);
	if (!r->err && m->sub_count == 0)
		rd_fail(r, FERRY_CTRL_E_MALFORMED);
	if (m->sub_count > FERRY_CTRL_SUBHOSTS_MAX)
		rd_fail(r, FERRY_CTRL_E_TOO_LARGE);
	rd_zero(r, 6);
	rd_str(r, m->vm, STR_NAME, false);
	rd_str(r, m->main, STR_NAME, false);
	if (prepare)
		rd_str(r, m->source, STR_NAME, false);
	else
		m->source[0] = '\0';
	for (unsigned int i = 0; !r->err && i < m->sub_count; i++)
		rd_str(r, m->sub[i], STR_NAME, false);
}

static void wr_migrate(struct wr *w, const struct ferry_ctrl_migrate *m, bool prepare)
{
	if (m->sub_count == 0)
		wr_fail(w, FERRY_CTRL_E_MALFORMED);
	if (m->sub_count > FERRY_CTRL_SUBHOSTS_MAX)
		wr_fail(w, FERRY_CTRL_E_TOO_LARGE);
	wr_u64(w, m->budget);
	wr_enum(w, m->mode, FERRY_CTRL_MODE_MAX);
	wr_u8(w, m->sub_count);
	wr_zero(w, 6);
	wr_str(w, m->vm, STR_NAME, false);
	wr_str(w, m->main, STR_NAME, false);
	if (prepare)
		wr_str(w, m->source, STR_NAME, false);
	for (unsigned int i = 0; !w->err && i < m->sub_count; i++)
		wr_str(w, m->sub[i], STR_NAME, false);
}

static void rd_progress(struct rd *r, struct ferry_ctrl_progress *p)
{
	p->phase = rd_enum(r, FERRY_CTRL_PHASE_MAX);
	p->flags = rd_u8(r);
	if (p->flags & ~FERRY_CTRL_PROGRESS_KNOWN)
		rd_fail(r, FERRY_CTRL_E_BAD_FLAGS);
	rd_zero(r, 2);
	p->round = rd_u32(r);
	p->pages_sent = rd_u64(r);
	p->pages_skipped = rd_u64(r);
	p->pages_remaining = rd_u64(r);
	p->pages_total = rd_u64(r);
	p->bytes_sent = rd_u64(r);
	p->elapsed_ms = rd_u64(r);
	rd_str(r, p->vm, STR_NAME, false);
}

static void wr_progress(struct wr *w, const struct ferry_ctrl_progress *p)
{
	if (p->flags & ~FERRY_CTRL_PROGRESS_KNOWN)
		wr_fail(w, FERRY_CTRL_E_MALFORMED);
	wr_enum(w, p->phase, FERRY_CTRL_PHASE_MAX);
	wr_u8(w, p->flags);
	wr_zero(w, 2);
	wr_u32(w, p->round);
	wr_u64(w, p->pages_sent);
	wr_u64(w, p->pages_skipped);
	wr_u64(w, p->pages_remaining);
	wr_u64(w, p->pages_total);
	wr_u64(w, p->bytes_sent);
	wr_u64(w, p->elapsed_ms);
	wr_str(w, p->vm, STR_NAME, false);
}

static void rd_report(struct rd *r, struct ferry_ctrl_report *rp)
{
	rp->load1 = rd_u32(r);
	rp->load5 = rd_u32(r);
	rp->load15 = rd_u32(r);
	rp->cpus = rd_u16(r);
	rp->vm_count = rd_u16(r);
	if (rp->vm_count > FERRY_CTRL_REPORT_VMS_MAX)
		rd_fail(r, FERRY_CTRL_E_TOO_LARGE);
	rp->mem_total = rd_u64(r);
	rp->mem_free = rd_u64(r);
	if (rp->mem_free > rp->mem_total)
		rd_fail(r, FERRY_CTRL_E_MALFORMED);
	rp->vms_running = rd_u32(r);
	rd_zero(r, 4);
	rd_str(r, rp->name, STR_NAME, false);
	rd_vm_list(r, rp->vm, rp->vm_count);
}

static void wr_report(struct wr *w, const struct ferry_ctrl_report *rp)
{
	if (rp->vm_count > FERRY_CTRL_REPORT_VMS_MAX) {
		wr_fail(w, FERRY_CTRL_E_TOO_LARGE);
		return;
	}
	if (rp->mem_free > rp->mem_total)
		wr_fail(w, FERRY_CTRL_E_MALFORMED);
	wr_u32(w, rp->load1);
	wr_u32(w, rp->load5);
	wr_u32(w, rp->load15);
	wr_u16(w, rp->cpus);
	wr_u16(w, rp->vm_count);
	wr_u64(w, rp->mem_total);
	wr_u64(w, rp->mem_free);
	wr_u32(w, rp->vms_running);
	wr_zero(w, 4);
	wr_str(w, rp->name, STR_NAME, false);
	wr_vm_list(w, rp->vm, rp->vm_count);
}

/* ---------------------------------------------------------------- decoding */

int ferry_ctrl_hdr_decode(const uint8_t *buf, size_t len, struct ferry_ctrl_hdr *hdr)
{
	struct frame_hdr h;
	int rc = frame_hdr_decode(&ctrl_frame, buf, len, &h);

	if (rc != FERRY_CTRL_E_OK)
		return rc;
	hdr->type = h.type;
	hdr->flags = h.flags;
	hdr->request_id = h.request_id;
	hdr->payload_len = h.payload_len;
	return FERRY_CTRL_E_OK;
}

static void stat_put(void *ctx, uint16_t i, const uint8_t *name, uint8_t len, uint64_t value)
{
	struct ferry_ctrl_stat *st = &((struct ferry_ctrl_stats_ok *)ctx)->stats[i];

	memcpy(st->name, name, len);
	st->name[len] = '\0';
	st->value = value;
}

static int decode_body(struct ferry_ctrl_msg *msg, const uint8_t *p, uint32_t n)
{
	struct rd r = { .p = p, .n = n };

	switch (msg->hdr.type) {
	case FERRY_CTRL_HELLO:
		return frame_hello_decode(&ctrl_frame, p, n, &msg->u.hello.version_min, &msg->u.hello.version_max,
					  &msg->u.hello.features, &msg->u.hello.name_len, msg->u.hello.name);
	case FERRY_CTRL_CHALLENGE:
		return frame_challenge_decode(p, n, &msg->u.challenge.version, msg->u.challenge.nonce);
	case FERRY_CTRL_AUTH:
		return frame_auth_decode(p, n, msg->u.auth.nonce, msg->u.auth.mac);
	case FERRY_CTRL_AUTH_OK: {
		const uint8_t *q = rd_take(&r, FERRY_CTRL_MAC_LEN);

		if (q)
			memcpy(msg->u.auth_ok_mac, q, FERRY_CTRL_MAC_LEN);
		break;
	}
	case FERRY_CTRL_STATUS:
	case FERRY_CTRL_NODES:
	case FERRY_CTRL_VMS:
	case FERRY_CTRL_STATS:
		break;
	case FERRY_CTRL_STATUS_OK:
		rd_status(&r, &msg->u.status);
		break;
	case FERRY_CTRL_NODES_OK:
		rd_nodes(&r, &msg->u.nodes);
		break;
	case FERRY_CTRL_VMS_OK:
		rd_vms(&r, &msg->u.vms);
		break;
	case FERRY_CTRL_MIGRATE:
	case FERRY_CTRL_PREPARE_INCOMING:
		rd_migrate(&r, &msg->u.migrate, msg->hdr.type == FERRY_CTRL_PREPARE_INCOMING);
		break;
	case FERRY_CTRL_PROGRESS:
		rd_progress(&r, &msg->u.progress);
		break;
	case FERRY_CTRL_HIBERNATE:
	case FERRY_CTRL_RESUME:
	case FERRY_CTRL_ABORT:
		rd_zero(&r, 4);
		rd_str(&r, msg->u.vm_req.vm, STR_NAME, false);
		rd_str(&r, msg->u.vm_req.node, STR_NAME, true);
		break;
	case FERRY_CTRL_NODE_REGISTER:
		msg->u.reg.roles = rd_u32(&r);
		if (msg->u.reg.roles & ~FERRY_CTRL_ROLE_KNOWN)
			rd_fail(&r, FERRY_CTRL_E_MALFORMED);
		msg->u.reg.cpus = rd_u16(&r);
		rd_zero(&r, 2);
		msg->u.reg.mem_total = rd_u64(&r);
		rd_str(&r, msg->u.reg.name, STR_NAME, false);
		rd_str(&r, msg->u.reg.addr, STR_ADDR, false);
		break;
	case FERRY_CTRL_NODE_REPORT:
		rd_report(&r, &msg->u.report);
		break;
	case FERRY_CTRL_ENDPOINT: {
		const uint8_t *q;

		msg->u.endpoint.port = rd_u16(&r);
		if (!r.err && msg->u.endpoint.port == 0)
			rd_fail(&r, FERRY_CTRL_E_BAD_ADDR);
		rd_zero(&r, 6);
		q = rd_take(&r, FERRY_CTRL_TOKEN_LEN);
		if (q)
			memcpy(msg->u.endpoint.token, q, FERRY_CTRL_TOKEN_LEN);
		rd_str(&r, msg->u.endpoint.vm, STR_NAME, false);
		rd_str(&r, msg->u.endpoint.host, STR_ADDR, false);
		break;
	}
	case FERRY_CTRL_VM_PLACED:
		rd_vm(&r, &msg->u.placed);
		break;
	case FERRY_CTRL_ROLE:
		msg->u.role.epoch = rd_u64(&r);
		msg->u.role.take = rd_u8(&r);
		if (msg->u.role.take > 1)
			rd_fail(&r, FERRY_CTRL_E_MALFORMED);
		rd_zero(&r, 7);
		rd_str(&r, msg->u.role.node, STR_NAME, false);
		break;
	case FERRY_CTRL_STATS_OK:
		return frame_stats_decode(&ctrl_frame, p, n, stat_put, &msg->u.stats_ok, &msg->u.stats_ok.count);
	case FERRY_CTRL_OK:
		msg->u.ok = rd_u64(&r);
		break;
	case FERRY_CTRL_ERROR:
		return frame_error_decode(&ctrl_frame, p, n, &msg->u.error.code, &msg->u.error.msg_len,
					  msg->u.error.msg);
	default:
		return FERRY_CTRL_E_UNKNOWN_TYPE; /* unreachable: the header check covers it */
	}
	return rd_end(&r);
}

int ferry_ctrl_decode(const uint8_t *buf, size_t len, struct ferry_ctrl_msg *msg)
{
	int rc = ferry_ctrl_hdr_decode(buf, len, &msg->hdr);

	if (rc != FERRY_CTRL_E_OK)
		return rc;
	if (len - FERRY_CTRL_HDR_LEN < msg->hdr.payload_len)
		return FERRY_CTRL_E_TRUNCATED;
	return decode_body(msg, buf + FERRY_CTRL_HDR_LEN, msg->hdr.payload_len);
}

/* ---------------------------------------------------------------- encoding */

static void stat_get(const void *ctx, uint16_t i, const char **name, uint64_t *value)
{
	const struct ferry_ctrl_stat *st = (const struct ferry_ctrl_stat *)ctx + i;

	*name = st->name;
	*value = st->value;
}

int ferry_ctrl_encode(const struct ferry_ctrl_msg *msg, uint8_t *buf, size_t cap)
{
	uint8_t type, *q;
	uint64_t req;
	struct wr w;
	int rc;

	if (!msg || !buf)
		return -FERRY_CTRL_E_MALFORMED;
	type = msg->hdr.type;
	req = msg->hdr.request_id;
	if (!frame_type_valid(&ctrl_frame, type))
		return -FERRY_CTRL_E_UNKNOWN_TYPE;
	if (cap < FERRY_CTRL_HDR_LEN)
		return -FERRY_CTRL_E_TOO_LARGE;

	switch (type) {
	case FERRY_CTRL_HELLO:
		return frame_hello_encode(&ctrl_frame, req, msg->u.hello.name, msg->u.hello.version_min,
					  msg->u.hello.version_max, buf, cap);
	case FERRY_CTRL_CHALLENGE:
		return frame_challenge_encode(&ctrl_frame, req, msg->u.challenge.version, msg->u.challenge.nonce, buf,
					      cap);
	case FERRY_CTRL_AUTH:
		return frame_auth_encode(&ctrl_frame, req, msg->u.auth.nonce, msg->u.auth.mac, buf, cap);
	case FERRY_CTRL_STATS_OK:
		return frame_stats_encode(&ctrl_frame, req, stat_get, msg->u.stats_ok.stats, msg->u.stats_ok.count,
					  buf, cap);
	case FERRY_CTRL_ERROR:
		return frame_error_encode(&ctrl_frame, req, msg->u.error.code, msg->u.error.msg, buf, cap);
	default:
		break;
	}

	/* The body first, straight after the header's room; then the header, now that its length is known. */
	w = (struct wr){ .p = buf + FERRY_CTRL_HDR_LEN, .cap = cap - FERRY_CTRL_HDR_LEN };
	switch (type) {
	case FERRY_CTRL_AUTH_OK:
		q = wr_take(&w, FERRY_CTRL_MAC_LEN);
		if (q)
			memcpy(q, msg->u.auth_ok_mac, FERRY_CTRL_MAC_LEN);
		break;
	case FERRY_CTRL_STATUS:
	case FERRY_CTRL_NODES:
	case FERRY_CTRL_VMS:
	case FERRY_CTRL_STATS:
		break;
	case FERRY_CTRL_STATUS_OK:
		wr_status(&w, &msg->u.status);
		break;
	case FERRY_CTRL_NODES_OK:
		wr_nodes(&w, &msg->u.nodes);
		break;
	case FERRY_CTRL_VMS_OK:
		wr_vms(&w, &msg->u.vms);
		break;
	case FERRY_CTRL_MIGRATE:
	case FERRY_CTRL_PREPARE_INCOMING:
		wr_migrate(&w, &msg->u.migrate, type == FERRY_CTRL_PREPARE_INCOMING);
		break;
	case FERRY_CTRL_PROGRESS:
		wr_progress(&w, &msg->u.progress);
		break;
	case FERRY_CTRL_HIBERNATE:
	case FERRY_CTRL_RESUME:
	case FERRY_CTRL_ABORT:
		wr_zero(&w, 4);
		wr_str(&w, msg->u.vm_req.vm, STR_NAME, false);
		wr_str(&w, msg->u.vm_req.node, STR_NAME, true);
		break;
	case FERRY_CTRL_NODE_REGISTER:
		if (msg->u.reg.roles & ~FERRY_CTRL_ROLE_KNOWN)
			wr_fail(&w, FERRY_CTRL_E_MALFORMED);
		wr_u32(&w, msg->u.reg.roles);
		wr_u16(&w, msg->u.reg.cpus);
		wr_zero(&w, 2);
		wr_u64(&w, msg->u.reg.mem_total);
		wr_str(&w, msg->u.reg.name, STR_NAME, false);
		wr_str(&w, msg->u.reg.addr, STR_ADDR, false);
		break;
	case FERRY_CTRL_NODE_REPORT:
		wr_report(&w, &msg->u.report);
		break;
	case FERRY_CTRL_ENDPOINT:
		if (msg->u.endpoint.port == 0)
			wr_fail(&w, FERRY_CTRL_E_BAD_ADDR);
		wr_u16(&w, msg->u.endpoint.port);
		wr_zero(&w, 6);
		q = wr_take(&w, FERRY_CTRL_TOKEN_LEN);
		if (q)
			memcpy(q, msg->u.endpoint.token, FERRY_CTRL_TOKEN_LEN);
		wr_str(&w, msg->u.endpoint.vm, STR_NAME, false);
		wr_str(&w, msg->u.endpoint.host, STR_ADDR, false);
		break;
	case FERRY_CTRL_VM_PLACED:
		wr_vm(&w, &msg->u.placed);
		break;
	case FERRY_CTRL_ROLE:
		if (msg->u.role.take > 1)
			wr_fail(&w, FERRY_CTRL_E_MALFORMED);
		wr_u64(&w, msg->u.role.epoch);
		wr_u8(&w, msg->u.role.take);
		wr_zero(&w, 7);
		wr_str(&w, msg->u.role.node, STR_NAME, false);
		break;
	case FERRY_CTRL_OK:
		wr_u64(&w, msg->u.ok);
		break;
	default:
		return -FERRY_CTRL_E_UNKNOWN_TYPE;
	}
	if (w.err)
		return -w.err;
	rc = frame_begin(&ctrl_frame, type, req, w.off, 0, buf, cap);
	if (rc < 0)
		return rc;
	return frame_total(w.off);
}

int ferry_ctrl_encode_empty(uint8_t type, uint64_t req, uint8_t *buf, size_t cap)
{
	if (type != FERRY_CTRL_STATUS && type != FERRY_CTRL_NODES && type != FERRY_CTRL_VMS &&
	    type != FERRY_CTRL_STATS)
		return -FERRY_CTRL_E_MALFORMED;
	return frame_encode_empty(&ctrl_frame, type, req, buf, cap);
}

int ferry_ctrl_encode_ok(uint64_t req, uint64_t value, uint8_t *buf, size_t cap)
{
	int rc = frame_begin(&ctrl_frame, FERRY_CTRL_OK, req, 8, 8, buf, cap);

	if (rc < 0)
		return rc;
	wire_put_u64(buf + FERRY_CTRL_HDR_LEN, value);
	return frame_total(8);
}

int ferry_ctrl_encode_error(uint64_t req, uint32_t code, const char *msg, uint8_t *buf, size_t cap)
{
	return frame_error_encode(&ctrl_frame, req, code, msg, buf, cap);
}

int ferry_ctrl_encode_hello(uint64_t req, const char *name, uint8_t *buf, size_t cap)
{
	return frame_hello_encode(&ctrl_frame, req, name, FERRY_CTRL_VERSION, FERRY_CTRL_VERSION, buf, cap);
}

int ferry_ctrl_encode_challenge(uint64_t req, const uint8_t nonce[FERRY_CTRL_NONCE_LEN], uint8_t *buf, size_t cap)
{
	return frame_challenge_encode(&ctrl_frame, req, FERRY_CTRL_VERSION, nonce, buf, cap);
}

int ferry_ctrl_encode_auth(uint64_t req, const uint8_t nonce[FERRY_CTRL_NONCE_LEN],
			   const uint8_t mac[FERRY_CTRL_MAC_LEN], uint8_t *buf, size_t cap)
{
	return frame_auth_encode(&ctrl_frame, req, nonce, mac, buf, cap);
}

int ferry_ctrl_encode_auth_ok(uint64_t req, const uint8_t mac[FERRY_CTRL_MAC_LEN], uint8_t *buf, size_t cap)
{
	int rc;

	if (!mac)
		return -FERRY_CTRL_E_MALFORMED;
	rc = frame_begin(&ctrl_frame, FERRY_CTRL_AUTH_OK, req, FERRY_CTRL_MAC_LEN, FERRY_CTRL_MAC_LEN, buf, cap);
	if (rc < 0)
		return rc;
	memcpy(buf + FERRY_CTRL_HDR_LEN, mac, FERRY_CTRL_MAC_LEN);
	return frame_total(FERRY_CTRL_MAC_LEN);
}

/* ---------------------------------------------------------------- naming */

static const char *const type_names[FERRY_CTRL_TYPE_MAX + 1] = {
	[FERRY_CTRL_HELLO] = "HELLO",
	[FERRY_CTRL_CHALLENGE] = "CHALLENGE",
	[FERRY_CTRL_AUTH] = "AUTH",
	[FERRY_CTRL_AUTH_OK] = "AUTH_OK",
	[FERRY_CTRL_STATUS] = "STATUS",
	[FERRY_CTRL_STATUS_OK] = "STATUS_OK",
	[FERRY_CTRL_NODES] = "NODES",
	[FERRY_CTRL_NODES_OK] = "NODES_OK",
	[FERRY_CTRL_VMS] = "VMS",
	[FERRY_CTRL_VMS_OK] = "VMS_OK",
	[FERRY_CTRL_MIGRATE] = "MIGRATE",
	[FERRY_CTRL_PROGRESS] = "PROGRESS",
	[FERRY_CTRL_HIBERNATE] = "HIBERNATE",
	[FERRY_CTRL_RESUME] = "RESUME",
	[FERRY_CTRL_ABORT] = "ABORT",
	[FERRY_CTRL_NODE_REGISTER] = "NODE_REGISTER",
	[FERRY_CTRL_NODE_REPORT] = "NODE_REPORT",
	[FERRY_CTRL_PREPARE_INCOMING] = "PREPARE_INCOMING",
	[FERRY_CTRL_ENDPOINT] = "ENDPOINT",
	[FERRY_CTRL_VM_PLACED] = "VM_PLACED",
	[FERRY_CTRL_ROLE] = "ROLE",
	[FERRY_CTRL_STATS] = "STATS",
	[FERRY_CTRL_STATS_OK] = "STATS_OK",
	[FERRY_CTRL_OK] = "OK",
	[FERRY_CTRL_ERROR] = "ERROR",
};

const char *ferry_ctrl_type_name(uint8_t type)
{
	return frame_type_valid(&ctrl_frame, type) ? type_names[type] : "UNKNOWN";
}

static const char *const errcode_texts[FERRY_CTRL_E_CODE_MAX + 1] = {
	[FERRY_CTRL_E_OK] = "ok",
	[FERRY_CTRL_E_TRUNCATED] = "truncated message",
	[FERRY_CTRL_E_BAD_MAGIC] = "bad magic",
	[FERRY_CTRL_E_VERSION] = "unsupported protocol version",
	[FERRY_CTRL_E_UNKNOWN_TYPE] = "unknown message type",
	[FERRY_CTRL_E_BAD_FLAGS] = "bad flags",
	[FERRY_CTRL_E_TOO_LARGE] = "too large",
	[FERRY_CTRL_E_MALFORMED] = "malformed message",
	[FERRY_CTRL_E_AUTH_FAILED] = "authentication failed",
	[FERRY_CTRL_E_NOT_AUTHENTICATED] = "not authenticated",
	[FERRY_CTRL_E_BAD_NAME] = "bad node name or VM id",
	[FERRY_CTRL_E_BAD_ADDR] = "bad address",
	[FERRY_CTRL_E_UNKNOWN_VM] = "unknown VM",
	[FERRY_CTRL_E_UNKNOWN_NODE] = "unknown node",
	[FERRY_CTRL_E_EXISTS] = "listed twice or already exists",
	[FERRY_CTRL_E_UNEXPECTED] = "unexpected message",
	[FERRY_CTRL_E_BUSY] = "busy",
	[FERRY_CTRL_E_INTERNAL] = "internal error",
	[FERRY_CTRL_E_SHUTDOWN] = "shutting down",
	[FERRY_CTRL_E_STALE_EPOCH] = "stale role epoch",
	[FERRY_CTRL_E_NOT_AVAILABLE] = "not available",
	[FERRY_CTRL_E_BAD_STATE] = "VM not in a state that allows this",
	[FERRY_CTRL_E_DENIED] = "permission denied",
	[FERRY_CTRL_E_NODE_DOWN] = "node down",
	[FERRY_CTRL_E_FAILED] = "operation failed",
};

const char *ferry_ctrl_errcode_str(uint32_t code)
{
	return code <= FERRY_CTRL_E_CODE_MAX ? errcode_texts[code] : "unknown error";
}

const char *ferry_ctrl_vm_state_name(uint8_t state)
{
	static const char *const n[] = { "?", "running", "hibernated", "resuming", "migrating", "stopped", "failed" };

	return state <= FERRY_CTRL_VM_STATE_MAX ? n[state] : "?";
}

const char *ferry_ctrl_node_state_name(uint8_t state)
{
	static const char *const n[] = { "?", "up", "down" };

	return state <= FERRY_CTRL_NODE_STATE_MAX ? n[state] : "?";
}

const char *ferry_ctrl_child_state_name(uint8_t state)
{
	static const char *const n[] = { "?", "running", "backoff", "stopped", "failed" };

	return state <= FERRY_CTRL_CHILD_STATE_MAX ? n[state] : "?";
}

static const char *const mode_names[] = { "?", "precopy", "postcopy", "planned" };

const char *ferry_ctrl_mode_name(uint8_t mode)
{
	return mode <= FERRY_CTRL_MODE_MAX ? mode_names[mode] : "?";
}

uint8_t ferry_ctrl_mode_parse(const char *s)
{
	for (uint8_t m = 1; s && m <= FERRY_CTRL_MODE_MAX; m++)
		if (strcmp(s, mode_names[m]) == 0)
			return m;
	return 0;
}

const char *ferry_ctrl_phase_name(uint8_t phase)
{
	static const char *const n[] = { "?",	    "preparing", "precopy", "stop-and-copy",
					 "postcopy", "done",	     "failed",	"aborted" };

	return phase <= FERRY_CTRL_PHASE_MAX ? n[phase] : "?";
}
