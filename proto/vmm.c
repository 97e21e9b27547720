/*
 * VMM socket protocol codec: pure byte (de)serialisation, no I/O, no
 * allocation (except inside jansson for the Firecracker handshake). See vmm.h
 * for the header layout and docs/vmm-protocol.md for the session. The header,
 * STATS_OK and ERROR are shared with the other codecs: frame.c does them,
 * from the vmm_frame descriptor below.
 *
 * Payload layouts (little-endian, offsets from the start of the payload).
 * Every reserved field must be zero; a payload longer than its type allows
 * is refused by the header check (FERRY_VMMP_E_TOO_LARGE).
 *
 *   REGISTER     16 + n + 40c  u16 region_count (c), u8 vm_id_len (n), u8 fd_count,
 *                [+ 8]         u32 flags, u64 uffd_features, vm_id[n],
 *                              c x {u64 gpa, u64 size, u64 hva, u64 offset,
 *                                   u32 page_size, u8 fd_slot, u8 modes, u16 reserved},
 *                              u64 migration_id only with REG_F_INCOMING
 *   REGISTER_OK  24            u64 vm_handle, u64 server_features, u32 max_chunk, u32 reserved
 *   FREE_HINT    8 + 16c       u32 count, u32 reserved, c x {u64 gpa, u64 len}
 *   NOTIFY       8             u32 event, u32 reserved
 *   STATE_PUT    16 + d        u64 total_len, u64 offset, data[d]
 *   STATE_GET    16            u64 offset, u32 max_len, u32 reserved
 *   STATE_DATA   16 + d        u64 total_len, u64 offset, data[d]
 *   STATS        0
 *   STATS_OK     2 + ...       u16 count, count x {u8 name_len, name, u64 value}
 *   UNREGISTER   0
 *   OK           8             u64 value
 *   ERROR        6 + m         u32 code, u16 msg_len (m), msg[m]
 *   PAUSE        8             u32 flags, u32 reserved              (server -> VMM)
 *   RESUME       8             u32 flags, u32 reserved              (server -> VMM)
 *   DROP_PTES    8 + 16c       u32 count, u32 reserved, c x {u64 gpa, u64 len} (server -> VMM)
 *   NOTICE       8             u32 event, u32 reserved              (server -> VMM, no reply)
 *
 * REGISTER checks, in this order (the first violation is reported):
 * payload shorter than 16 -> MALFORMED; unknown flags, or INCOMING without
 * SERVER_REQ -> BAD_FLAGS; vm_id_len 0 ->
 * BAD_VM_ID, > 64 -> TOO_LARGE; region_count 0 -> MALFORMED, > 64 -> TOO_LARGE;
 * fd_count 0 -> FD_MISMATCH, > 17 -> TOO_LARGE; payload length != 16 + n +
 * 40c (+ 8 with INCOMING) -> MALFORMED; INCOMING with migration id 0 -> MALFORMED; a VM id byte outside 0x21..0x7e -> BAD_VM_ID; a region's
 * reserved field -> MALFORMED; then per region: page size -> PAGE_SIZE, size 0
 * -> MALFORMED, modes 0 or unknown -> BAD_FLAGS, alignment -> BAD_ALIGNMENT,
 * an end beyond the GPA/HVA limit or a wrapping file range -> TOO_LARGE,
 * fd_slot >= fd_count -> FD_MISMATCH, MINOR without a memory file ->
 * UNSUPPORTED; then pairwise overlap (guest-physical, host-virtual, same
 * file) -> OVERLAP; then a memory slot no region uses -> FD_MISMATCH; last,
 * descriptors received != fd_count -> FD_MISMATCH.
 */
#include "proto/vmm.h"
#include "proto/frame.h"
#include "proto/wire.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define REG_FIXED        16u
#define REG_OK_LEN       24u
#define HINT_FIXED       8u
#define NOTIFY_LEN       8u
#define STATE_FIXED      16u
#define STATE_GET_LEN    16u
#define STATS_OK_FIXED   2u
#define STAT_FIXED       9u
#define OK_LEN           8u
#define ERROR_FIXED      6u
#define CTL_LEN          8u
#define NOTICE_LEN       8u
#define MIGID_LEN        8u

#define SERVER_TYPES ((1u << FERRY_VMMP_PAUSE) | (1u << FERRY_VMMP_RESUME) | (1u << FERRY_VMMP_DROP_PTES) | \
		      (1u << FERRY_VMMP_NOTICE))

#define REPLY_TYPES ((1u << FERRY_VMMP_REGISTER_OK) | (1u << FERRY_VMMP_STATE_DATA) |  \
		     (1u << FERRY_VMMP_STATS_OK) | (1u << FERRY_VMMP_OK) |              \
		     (1u << FERRY_VMMP_ERROR))

/* ---------------------------------------------------------------- rules */

uint32_t ferry_vmmp_max_payload(uint8_t type)
{
	switch (type) {
	case FERRY_VMMP_REGISTER:
		return REG_FIXED + FERRY_VMMP_VM_ID_MAX + FERRY_VMMP_MAX_REGIONS * FERRY_VMMP_REGION_LEN + MIGID_LEN;
	case FERRY_VMMP_REGISTER_OK:
		return REG_OK_LEN;
	case FERRY_VMMP_FREE_HINT:
		return HINT_FIXED + FERRY_VMMP_MAX_HINTS * FERRY_VMMP_HINT_LEN;
	case FERRY_VMMP_NOTIFY:
		return NOTIFY_LEN;
	case FERRY_VMMP_STATE_PUT:
	case FERRY_VMMP_STATE_DATA:
		return STATE_FIXED + FERRY_VMMP_MAX_CHUNK;
	case FERRY_VMMP_STATE_GET:
		return STATE_GET_LEN;
	case FERRY_VMMP_STATS_OK:
		return STATS_OK_FIXED + FERRY_VMMP_MAX_STATS * (STAT_FIXED + FERRY_VMMP_STAT_NAME_MAX);
	case FERRY_VMMP_OK:
		return OK_LEN;
	case FERRY_VMMP_ERROR:
		return ERROR_FIXED + FERRY_VMMP_ERRMSG_MAX;
	case FERRY_VMMP_PAUSE:
	case FERRY_VMMP_RESUME:
		return CTL_LEN;
	case FERRY_VMMP_DROP_PTES:
		return HINT_FIXED + FERRY_VMMP_MAX_DROP * FERRY_VMMP_HINT_LEN;
	case FERRY_VMMP_NOTICE:
		return NOTICE_LEN;
	case FERRY_VMMP_STATS:
	case FERRY_VMMP_UNREGISTER:
	default:
		return 0;
	}
}

static const struct frame_proto vmm_frame = {
	.magic = FERRY_VMMP_MAGIC,
	.version = FERRY_VMMP_VERSION,
	.type_max = FERRY_VMMP_TYPE_MAX,
	.known_flags = FERRY_VMMP_F_KNOWN,
	.reply_flag = FERRY_VMMP_F_REPLY,
	.reply_types = REPLY_TYPES,
	.max_payload = ferry_vmmp_max_payload,
	.type_stats_ok = FERRY_VMMP_STATS_OK,
	.type_error = FERRY_VMMP_ERROR,
	.stats_max = FERRY_VMMP_MAX_STATS,
	.stat_name_max = FERRY_VMMP_STAT_NAME_MAX,
	.errmsg_max = FERRY_VMMP_ERRMSG_MAX,
};

/* The header and the shared bodies report frame.h's codes as our own. */
_Static_assert(FERRY_VMMP_E_OK == FRAME_E_OK && FERRY_VMMP_E_TRUNCATED == FRAME_E_TRUNCATED &&
		       FERRY_VMMP_E_BAD_MAGIC == FRAME_E_BAD_MAGIC && FERRY_VMMP_E_VERSION == FRAME_E_VERSION &&
		       FERRY_VMMP_E_UNKNOWN_TYPE == FRAME_E_UNKNOWN_TYPE &&
		       FERRY_VMMP_E_BAD_FLAGS == FRAME_E_BAD_FLAGS && FERRY_VMMP_E_TOO_LARGE == FRAME_E_TOO_LARGE &&
		       FERRY_VMMP_E_MALFORMED == FRAME_E_MALFORMED,
	       "vmm error codes 0..7 are frame.h's");
_Static_assert(FERRY_VMMP_HDR_LEN == FRAME_HDR_LEN, "vmm header is the frame header");
_Static_assert(FERRY_VMMP_TYPE_MAX < 32, "type bit sets are u32");

bool ferry_vmmp_is_server_type(uint8_t type)
{
	return type < 32 && (SERVER_TYPES & (1u << type));
}

static int check_reg_flags(uint32_t flags, uint64_t migration_id)
{
	if (flags & ~FERRY_VMMP_REG_F_KNOWN)
		return FERRY_VMMP_E_BAD_FLAGS;
	if ((flags & FERRY_VMMP_REG_F_INCOMING) && !(flags & FERRY_VMMP_REG_F_SERVER_REQ))
		return FERRY_VMMP_E_BAD_FLAGS;
	/* 0 names no migration: an incoming shell always belongs to one. */
	if (((flags & FERRY_VMMP_REG_F_INCOMING) != 0) != (migration_id != 0))
		return FERRY_VMMP_E_MALFORMED;
	return FERRY_VMMP_E_OK;
}

/* VM ids end up in logs, file names and metrics labels: no blanks, no controls. */
static inline bool id_char_ok(uint8_t c)
{
	return c >= 0x21 && c <= 0x7e;
}

static int check_vm_id_bytes(const uint8_t *id, size_t len)
{
	if (len == 0)
		return FERRY_VMMP_E_BAD_VM_ID;
	if (len > FERRY_VMMP_VM_ID_MAX)
		return FERRY_VMMP_E_TOO_LARGE;
	for (size_t i = 0; i < len; i++)
		if (!id_char_ok(id[i]))
			return FERRY_VMMP_E_BAD_VM_ID;
	return FERRY_VMMP_E_OK;
}

static inline bool page_size_ok(uint64_t ps)
{
	return ps == FERRY_VMMP_PAGE_4K || ps == FERRY_VMMP_PAGE_2M;
}

/* [a, a + alen) and [b, b + blen) intersect; neither wraps (checked before). */
static inline bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

static int check_region(const struct ferry_vmmp_region *r, uint8_t fd_count)
{
	uint64_t ps = r->page_size;

	if (!page_size_ok(ps))
		return FERRY_VMMP_E_PAGE_SIZE;
	if (r->size == 0)
		return FERRY_VMMP_E_MALFORMED;
	if (r->modes == 0 || (r->modes & ~FERRY_VMMP_MODE_KNOWN))
		return FERRY_VMMP_E_BAD_FLAGS;
	if ((r->gpa | r->size | r->hva | r->offset) & (ps - 1))
		return FERRY_VMMP_E_BAD_ALIGNMENT;
	if (r->size > FERRY_VMMP_GPA_LIMIT || r->gpa > FERRY_VMMP_GPA_LIMIT - r->size)
		return FERRY_VMMP_E_TOO_LARGE;
	if (r->hva > FERRY_VMMP_HVA_LIMIT - r->size)
		return FERRY_VMMP_E_TOO_LARGE;
	if (r->offset > UINT64_MAX - r->size)
		return FERRY_VMMP_E_TOO_LARGE;
	if (r->fd_slot >= fd_count)
		return FERRY_VMMP_E_FD_MISMATCH;
	if ((r->modes & FERRY_VMMP_MODE_MINOR) && r->fd_slot == 0)
		return FERRY_VMMP_E_UNSUPPORTED;
	return FERRY_VMMP_E_OK;
}

int ferry_vmmp_register_check(const struct ferry_vmmp_register *reg)
{
	uint32_t used = 0; /* bit k: memory slot k is used (k <= 16) */
	size_t id_len;
	int rc;

	if (!reg)
		return FERRY_VMMP_E_MALFORMED;
	rc = check_reg_flags(reg->flags, reg->migration_id);
	if (rc != FERRY_VMMP_E_OK)
		return rc;
	id_len = strnlen(reg->vm_id, sizeof(reg->vm_id));
	rc = check_vm_id_bytes((const uint8_t *)reg->vm_id, id_len);
	if (rc != FERRY_VMMP_E_OK)
		return rc;
	if (reg->region_count == 0)
		return FERRY_VMMP_E_MALFORMED;
	if (reg->region_count > FERRY_VMMP_MAX_REGIONS)
		return FERRY_VMMP_E_TOO_LARGE;
	if (reg->fd_count == 0)
		return FERRY_VMMP_E_FD_MISMATCH;
	if (reg->fd_count > FERRY_VMMP_MAX_FDS)
		return FERRY_VMMP_E_TOO_LARGE;

	for (uint16_t i = 0; i < reg->region_count; i++) {
		rc = check_region(&reg->regions[i], reg->fd_count);
		if (rc != FERRY_VMMP_E_OK)
			return rc;
		used |= 1u << reg->regions[i].fd_slot;
	}
	/* At most 64 regions: the pairwise check costs at most 2016 comparisons. */
	for (uint16_t i = 0; i < reg->region_count; i++) {
		const struct ferry_vmmp_region *a = &reg->regions[i];

		for (uint16_t j = (uint16_t)(i + 1); j < reg->region_count; j++) {
			const struct ferry_vmmp_region *b = &reg->regions[j];

			if (overlaps(a->gpa, a->size, b->gpa, b->size) ||
			    overlaps(a->hva, a->size, b->hva, b->size) ||
			    (a->fd_slot != 0 && a->fd_slot == b->fd_slot &&
			     overlaps(a->offset, a->size, b->offset, b->size)))
				return FERRY_VMMP_E_OVERLAP;
		}
	}
	for (uint8_t k = 1; k < reg->fd_count; k++)
		if (!(used & (1u << k)))
			return FERRY_VMMP_E_FD_MISMATCH;
	return FERRY_VMMP_E_OK;
}

/* Range @i of a FREE_HINT, given the end of the previous one. */
static int check_hint(uint64_t gpa, uint64_t len, uint32_t i, uint64_t prev_end)
{
	if (len == 0)
		return FERRY_VMMP_E_MALFORMED;
	if ((gpa | len) & (FERRY_VMMP_HINT_UNIT - 1))
		return FERRY_VMMP_E_BAD_ALIGNMENT;
	if (len > FERRY_VMMP_GPA_LIMIT || gpa > FERRY_VMMP_GPA_LIMIT - len)
		return FERRY_VMMP_E_TOO_LARGE;
	if (i > 0 && gpa < prev_end)
		return FERRY_VMMP_E_OVERLAP;
	return FERRY_VMMP_E_OK;
}

/* Shared by STATE_PUT and STATE_DATA. */
static int check_state(uint8_t type, uint64_t total, uint64_t offset, uint64_t data_len)
{
	if (total > FERRY_VMMP_STATE_MAX || data_len > FERRY_VMMP_MAX_CHUNK)
		return FERRY_VMMP_E_TOO_LARGE;
	if (offset > total || data_len > total - offset)
		return FERRY_VMMP_E_MALFORMED;
	/* An empty chunk only describes an empty blob (PUT) or the end of one (DATA). */
	if (data_len == 0 && (type == FERRY_VMMP_STATE_PUT ? total != 0 : offset != total))
		return FERRY_VMMP_E_MALFORMED;
	return FERRY_VMMP_E_OK;
}

static int check_state_get(uint64_t offset, uint32_t max_len)
{
	if (max_len == 0)
		return FERRY_VMMP_E_MALFORMED;
	if (max_len > FERRY_VMMP_MAX_CHUNK || offset > FERRY_VMMP_STATE_MAX)
		return FERRY_VMMP_E_TOO_LARGE;
	return FERRY_VMMP_E_OK;
}

static int check_max_chunk(uint32_t max_chunk)
{
	if (max_chunk == 0)
		return FERRY_VMMP_E_MALFORMED;
	if (max_chunk > FERRY_VMMP_MAX_CHUNK)
		return FERRY_VMMP_E_TOO_LARGE;
	return FERRY_VMMP_E_OK;
}

static int check_ctl(uint8_t type, uint32_t flags)
{
	uint32_t known = type == FERRY_VMMP_PAUSE ? FERRY_VMMP_PAUSE_F_KNOWN : FERRY_VMMP_RESUME_F_KNOWN;

	return flags & ~known ? FERRY_VMMP_E_BAD_FLAGS : FERRY_VMMP_E_OK;
}

static int check_notice(uint32_t event)
{
	return event == FERRY_VMMP_NOTICE_MIGRATED ? FERRY_VMMP_E_OK : FERRY_VMMP_E_UNSUPPORTED;
}

static int check_event(uint32_t event)
{
	return event == FERRY_VMMP_EV_SUSPEND || event == FERRY_VMMP_EV_RESUME ? FERRY_VMMP_E_OK
									  : FERRY_VMMP_E_UNSUPPORTED;
}

/* ---------------------------------------------------------------- decoding */

/*
 * A server request of a type newer than this codec: well framed (our magic
 * and version, known flags with F_SERVER and without F_REPLY, reserved zero,
 * a payload a message may have), so the receiver can skip it and answer
 * ERROR(UNSUPPORTED) instead of losing the stream.
 */
static bool unknown_server_request(const uint8_t *buf, size_t len, struct ferry_vmmp_hdr *hdr)
{
	uint16_t flags;

	if (!buf || len < FERRY_VMMP_HDR_LEN || wire_get_u32(buf) != FERRY_VMMP_MAGIC ||
	    buf[4] != FERRY_VMMP_VERSION || buf[5] <= FERRY_VMMP_TYPE_MAX)
		return false;
	flags = wire_get_u16(buf + 6);
	if (flags != FERRY_VMMP_F_SERVER || wire_get_u32(buf + 20) != 0 ||
	    wire_get_u32(buf + 16) > FERRY_VMMP_MAX_PAYLOAD)
		return false;
	hdr->type = buf[5];
	hdr->flags = flags;
	hdr->request_id = wire_get_u64(buf + 8);
	hdr->payload_len = wire_get_u32(buf + 16);
	return true;
}

int ferry_vmmp_hdr_decode(const uint8_t *buf, size_t len, struct ferry_vmmp_hdr *hdr)
{
	struct frame_hdr h;
	int rc = frame_hdr_decode(&vmm_frame, buf, len, &h);

	if (rc == FERRY_VMMP_E_UNKNOWN_TYPE && unknown_server_request(buf, len, hdr))
		return FERRY_VMMP_E_UNSUPPORTED;
	if (rc != FERRY_VMMP_E_OK)
		return rc;
	/* Direction: F_SERVER exactly on server requests, and on replies only OK/ERROR answer them. */
	if (h.flags & FERRY_VMMP_F_REPLY) {
		if ((h.flags & FERRY_VMMP_F_SERVER) && h.type != FERRY_VMMP_OK && h.type != FERRY_VMMP_ERROR)
			return FERRY_VMMP_E_BAD_FLAGS;
	} else if (((h.flags & FERRY_VMMP_F_SERVER) != 0) != ferry_vmmp_is_server_type(h.type)) {
		return FERRY_VMMP_E_BAD_FLAGS;
	}
	hdr->type = h.type;
	hdr->flags = h.flags;
	hdr->request_id = h.request_id;
	hdr->payload_len = h.payload_len;
	return FERRY_VMMP_E_OK;
}

static int decode_register(const uint8_t *p, uint32_t n, struct ferry_vmmp_register *m)
{
	uint32_t flags, extra;
	uint16_t count;
	uint8_t id_len, fd_count;
	const uint8_t *r;
	int rc;

	if (n < REG_FIXED)
		return FERRY_VMMP_E_MALFORMED;
	count = wire_get_u16(p);
	id_len = p[2];
	fd_count = p[3];
	flags = wire_get_u32(p + 4);
	if ((flags & ~FERRY_VMMP_REG_F_KNOWN) ||
	    ((flags & FERRY_VMMP_REG_F_INCOMING) && !(flags & FERRY_VMMP_REG_F_SERVER_REQ)))
		return FERRY_VMMP_E_BAD_FLAGS;
	extra = flags & FERRY_VMMP_REG_F_INCOMING ? MIGID_LEN : 0;
	if (id_len == 0)
		return FERRY_VMMP_E_BAD_VM_ID;
	if (id_len > FERRY_VMMP_VM_ID_MAX)
		return FERRY_VMMP_E_TOO_LARGE;
	if (count == 0)
		return FERRY_VMMP_E_MALFORMED;
	if (count > FERRY_VMMP_MAX_REGIONS)
		return FERRY_VMMP_E_TOO_LARGE;
	if (fd_count == 0)
		return FERRY_VMMP_E_FD_MISMATCH;
	if (fd_count > FERRY_VMMP_MAX_FDS)
		return FERRY_VMMP_E_TOO_LARGE;
	if (n != REG_FIXED + id_len + (uint32_t)count * FERRY_VMMP_REGION_LEN + extra)
		return FERRY_VMMP_E_MALFORMED;
	rc = check_vm_id_bytes(p + REG_FIXED, id_len);
	if (rc != FERRY_VMMP_E_OK)
		return rc;

	m->flags = flags;
	m->migration_id = extra ? wire_get_u64(p + n - MIGID_LEN) : 0;
	m->uffd_features = wire_get_u64(p + 8);
	m->region_count = count;
	m->fd_count = fd_count;
	m->vm_id_len = id_len;
	memcpy(m->vm_id, p + REG_FIXED, id_len);
	m->vm_id[id_len] = '\0';
	r = p + REG_FIXED + id_len;
	for (uint16_t i = 0; i < count; i++, r += FERRY_VMMP_REGION_LEN) {
		struct ferry_vmmp_region *g = &m->regions[i];

		if (wire_get_u16(r + 38) != 0)
			return FERRY_VMMP_E_MALFORMED;
		g->gpa = wire_get_u64(r);
		g->size = wire_get_u64(r + 8);
		g->hva = wire_get_u64(r + 16);
		g->offset = wire_get_u64(r + 24);
		g->page_size = wire_get_u32(r + 32);
		g->fd_slot = r[36];
		g->modes = r[37];
	}
	return ferry_vmmp_register_check(m);
}

static int decode_register_ok(const uint8_t *p, uint32_t n, struct ferry_vmmp_register_ok *m)
{
	int rc;

	if (n != REG_OK_LEN || wire_get_u32(p + 20) != 0)
		return FERRY_VMMP_E_MALFORMED;
	rc = check_max_chunk(wire_get_u32(p + 16));
	if (rc != FERRY_VMMP_E_OK)
		return rc;
	m->vm_handle = wire_get_u64(p);
	m->server_features = wire_get_u64(p + 8);
	m->max_chunk = wire_get_u32(p + 16);
	return FERRY_VMMP_E_OK;
}

static int decode_ranges(const uint8_t *p, uint32_t n, uint32_t max, struct ferry_vmmp_hints *m)
{
	uint64_t prev_end = 0, total = 0;
	uint32_t count;
	int rc;

	if (n < HINT_FIXED)
		return FERRY_VMMP_E_MALFORMED;
	count = wire_get_u32(p);
	if (count == 0)
		return FERRY_VMMP_E_MALFORMED;
	if (count > max)
		return FERRY_VMMP_E_TOO_LARGE;
	if (wire_get_u32(p + 4) != 0)
		return FERRY_VMMP_E_MALFORMED;
	if (n != HINT_FIXED + (uint64_t)count * FERRY_VMMP_HINT_LEN)
		return FERRY_VMMP_E_MALFORMED;
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *e = p + HINT_FIXED + (size_t)i * FERRY_VMMP_HINT_LEN;
		uint64_t gpa = wire_get_u64(e), len = wire_get_u64(e + 8);

		rc = check_hint(gpa, len, i, prev_end);
		if (rc != FERRY_VMMP_E_OK)
			return rc;
		prev_end = gpa + len;
		total += len; /* disjoint ranges below 2^52: cannot wrap */
	}
	m->count = count;
	m->total_len = total;
	m->entries = p + HINT_FIXED;
	return FERRY_VMMP_E_OK;
}

static int decode_ctl(uint8_t type, const uint8_t *p, uint32_t n, struct ferry_vmmp_ctl *m)
{
	int rc;

	if (n != CTL_LEN || wire_get_u32(p + 4) != 0)
		return FERRY_VMMP_E_MALFORMED;
	rc = check_ctl(type, wire_get_u32(p));
	if (rc != FERRY_VMMP_E_OK)
		return rc;
	m->flags = wire_get_u32(p);
	return FERRY_VMMP_E_OK;
}

static int decode_notice(const uint8_t *p, uint32_t n, struct ferry_vmmp_notice *m)
{
	int rc;

	if (n != NOTICE_LEN || wire_get_u32(p + 4) != 0)
		return FERRY_VMMP_E_MALFORMED;
	rc = check_notice(wire_get_u32(p));
	if (rc != FERRY_VMMP_E_OK)
		return rc;
	m->event = wire_get_u32(p);
	return FERRY_VMMP_E_OK;
}

static int decode_notify(const uint8_t *p, uint32_t n, struct ferry_vmmp_notify *m)
{
	int rc;

	if (n != NOTIFY_LEN || wire_get_u32(p + 4) != 0)
		return FERRY_VMMP_E_MALFORMED;
	rc = check_event(wire_get_u32(p));
	if (rc != FERRY_VMMP_E_OK)
		return rc;
	m->event = wire_get_u32(p);
	return FERRY_VMMP_E_OK;
}

static int decode_state(uint8_t type, const uint8_t *p, uint32_t n, struct ferry_vmmp_state *m)
{
	int rc;

	if (n < STATE_FIXED)
		return FERRY_VMMP_E_MALFORMED;
	rc = check_state(type, wire_get_u64(p), wire_get_u64(p + 8), n - STATE_FIXED);
	if (rc != FERRY_VMMP_E_OK)
		return rc;
	m->total_len = wire_get_u64(p);
	m->offset = wire_get_u64(p + 8);
	m->data_len = n - STATE_FIXED;
	m->data = p + STATE_FIXED;
	return FERRY_VMMP_E_OK;
}

static int decode_state_get(const uint8_t *p, uint32_t n, struct ferry_vmmp_state_get *m)
{
	int rc;

	if (n != STATE_GET_LEN || wire_get_u32(p + 12) != 0)
		return FERRY_VMMP_E_MALFORMED;
	rc = check_state_get(wire_get_u64(p), wire_get_u32(p + 8));
	if (rc != FERRY_VMMP_E_OK)
		return rc;
	m->offset = wire_get_u64(p);
	m->max_len = wire_get_u32(p + 8);
	return FERRY_VMMP_E_OK;
}

static void stat_put(void *ctx, uint16_t i, const uint8_t *name, uint8_t len, uint64_t value)
{
	struct ferry_vmmp_stat *st = &((struct ferry_vmmp_stats_ok *)ctx)->stats[i];

	memcpy(st->name, name, len);
	st->name[len] = '\0';
	st->value = value;
}

static int decode_stats_ok(const uint8_t *p, uint32_t n, struct ferry_vmmp_stats_ok *m)
{
	return frame_stats_decode(&vmm_frame, p, n, stat_put, m, &m->count);
}

static int decode_ok(const uint8_t *p, uint32_t n, struct ferry_vmmp_ok *m)
{
	if (n != OK_LEN)
		return FERRY_VMMP_E_MALFORMED;
	m->value = wire_get_u64(p);
	return FERRY_VMMP_E_OK;
}

static int decode_error(const uint8_t *p, uint32_t n, struct ferry_vmmp_error *m)
{
	return frame_error_decode(&vmm_frame, p, n, &m->code, &m->msg_len, m->msg);
}

static int decode_body(const uint8_t *p, uint32_t n, struct ferry_vmmp_msg *msg)
{
	switch (msg->hdr.type) {
	case FERRY_VMMP_REGISTER:
		return decode_register(p, n, &msg->u.reg);
	case FERRY_VMMP_REGISTER_OK:
		return decode_register_ok(p, n, &msg->u.reg_ok);
	case FERRY_VMMP_FREE_HINT:
		return decode_ranges(p, n, FERRY_VMMP_MAX_HINTS, &msg->u.hints);
	case FERRY_VMMP_DROP_PTES:
		return decode_ranges(p, n, FERRY_VMMP_MAX_DROP, &msg->u.hints);
	case FERRY_VMMP_PAUSE:
	case FERRY_VMMP_RESUME:
		return decode_ctl(msg->hdr.type, p, n, &msg->u.ctl);
	case FERRY_VMMP_NOTICE:
		return decode_notice(p, n, &msg->u.notice);
	case FERRY_VMMP_NOTIFY:
		return decode_notify(p, n, &msg->u.notify);
	case FERRY_VMMP_STATE_PUT:
	case FERRY_VMMP_STATE_DATA:
		return decode_state(msg->hdr.type, p, n, &msg->u.state);
	case FERRY_VMMP_STATE_GET:
		return decode_state_get(p, n, &msg->u.state_get);
	case FERRY_VMMP_STATS_OK:
		return decode_stats_ok(p, n, &msg->u.stats_ok);
	case FERRY_VMMP_OK:
		return decode_ok(p, n, &msg->u.ok);
	case FERRY_VMMP_ERROR:
		return decode_error(p, n, &msg->u.error);
	case FERRY_VMMP_STATS:
	case FERRY_VMMP_UNREGISTER:
		return n == 0 ? FERRY_VMMP_E_OK : FERRY_VMMP_E_MALFORMED;
	default:
		return FERRY_VMMP_E_UNKNOWN_TYPE; /* unreachable: the header check covers it */
	}
}

int ferry_vmmp_decode(const uint8_t *buf, size_t len, unsigned int nfds, struct ferry_vmmp_msg *msg)
{
	unsigned int want;
	int rc;

	rc = ferry_vmmp_hdr_decode(buf, len, &msg->hdr);
	if (rc != FERRY_VMMP_E_OK)
		return rc;
	if (len - FERRY_VMMP_HDR_LEN < msg->hdr.payload_len)
		return FERRY_VMMP_E_TRUNCATED;
	rc = decode_body(buf + FERRY_VMMP_HDR_LEN, msg->hdr.payload_len, msg);
	if (rc != FERRY_VMMP_E_OK)
		return rc;
	want = msg->hdr.type == FERRY_VMMP_REGISTER ? msg->u.reg.fd_count : 0;
	return nfds == want ? FERRY_VMMP_E_OK : FERRY_VMMP_E_FD_MISMATCH;
}

void ferry_vmmp_hint_entry(const struct ferry_vmmp_hints *h, uint32_t i, struct ferry_vmmp_range *r)
{
	const uint8_t *e = h->entries + (size_t)i * FERRY_VMMP_HINT_LEN;

	r->gpa = wire_get_u64(e);
	r->len = wire_get_u64(e + 8);
}

/* ---------------------------------------------------------------- encoding */

/*
 * Check that @prefix_len bytes fit in @cap, write a header announcing
 * @payload_len and return 0, or a negative code.
 */
static int begin(uint8_t type, uint64_t req, uint64_t payload_len, uint64_t prefix_len, uint8_t *buf,
		 size_t cap)
{
	return frame_begin(&vmm_frame, type, req, payload_len, prefix_len, buf, cap);
}

int ferry_vmmp_encode_register(uint64_t req, const struct ferry_vmmp_register *reg, uint8_t *buf, size_t cap)
{
	uint64_t payload_len;
	size_t id_len;
	uint8_t *p;
	int rc = ferry_vmmp_register_check(reg);

	if (rc != FERRY_VMMP_E_OK)
		return -rc;
	id_len = strlen(reg->vm_id);
	payload_len = REG_FIXED + id_len + (uint64_t)reg->region_count * FERRY_VMMP_REGION_LEN +
		      (reg->flags & FERRY_VMMP_REG_F_INCOMING ? MIGID_LEN : 0);
	rc = begin(FERRY_VMMP_REGISTER, req, payload_len, payload_len, buf, cap);
	if (rc < 0)
		return rc;
	p = buf + FERRY_VMMP_HDR_LEN;
	wire_put_u16(p, reg->region_count);
	p[2] = (uint8_t)id_len;
	p[3] = reg->fd_count;
	wire_put_u32(p + 4, reg->flags);
	wire_put_u64(p + 8, reg->uffd_features);
	memcpy(p + REG_FIXED, reg->vm_id, id_len);
	p += REG_FIXED + id_len;
	for (uint16_t i = 0; i < reg->region_count; i++, p += FERRY_VMMP_REGION_LEN) {
		const struct ferry_vmmp_region *g = &reg->regions[i];

		wire_put_u64(p, g->gpa);
		wire_put_u64(p + 8, g->size);
		wire_put_u64(p + 16, g->hva);
		wire_put_u64(p + 24, g->offset);
		wire_put_u32(p + 32, g->page_size);
		p[36] = g->fd_slot;
		p[37] = g->modes;
		wire_put_u16(p + 38, 0);
	}
	if (reg->flags & FERRY_VMMP_REG_F_INCOMING)
		wire_put_u64(p, reg->migration_id);
	return frame_total(payload_len);
}

int ferry_vmmp_encode_register_ok(uint64_t req, const struct ferry_vmmp_register_ok *ok, uint8_t *buf,
				  size_t cap)
{
	uint8_t *p;
	int rc;

	if (!ok)
		return -FERRY_VMMP_E_MALFORMED;
	rc = check_max_chunk(ok->max_chunk);
	if (rc != FERRY_VMMP_E_OK)
		return -rc;
	rc = begin(FERRY_VMMP_REGISTER_OK, req, REG_OK_LEN, REG_OK_LEN, buf, cap);
	if (rc < 0)
		return rc;
	p = buf + FERRY_VMMP_HDR_LEN;
	wire_put_u64(p, ok->vm_handle);
	wire_put_u64(p + 8, ok->server_features);
	wire_put_u32(p + 16, ok->max_chunk);
	wire_put_u32(p + 20, 0);
	return frame_total(REG_OK_LEN);
}

static int encode_ranges(uint8_t type, uint32_t max, uint64_t req, const struct ferry_vmmp_range *ranges,
			 uint32_t count, uint8_t *buf, size_t cap)
{
	uint64_t payload_len, prev_end = 0;
	uint8_t *p;
	int rc;

	if (count == 0 || !ranges)
		return -FERRY_VMMP_E_MALFORMED;
	if (count > max)
		return -FERRY_VMMP_E_TOO_LARGE;
	for (uint32_t i = 0; i < count; i++) {
		rc = check_hint(ranges[i].gpa, ranges[i].len, i, prev_end);
		if (rc != FERRY_VMMP_E_OK)
			return -rc;
		prev_end = ranges[i].gpa + ranges[i].len;
	}
	payload_len = HINT_FIXED + (uint64_t)count * FERRY_VMMP_HINT_LEN;
	rc = begin(type, req, payload_len, payload_len, buf, cap);
	if (rc < 0)
		return rc;
	p = buf + FERRY_VMMP_HDR_LEN;
	wire_put_u32(p, count);
	wire_put_u32(p + 4, 0);
	p += HINT_FIXED;
	for (uint32_t i = 0; i < count; i++, p += FERRY_VMMP_HINT_LEN) {
		wire_put_u64(p, ranges[i].gpa);
		wire_put_u64(p + 8, ranges[i].len);
	}
	if (ferry_vmmp_is_server_type(type))
		wire_put_u16(buf + 6, FERRY_VMMP_F_SERVER);
	return frame_total(payload_len);
}

int ferry_vmmp_encode_free_hint(uint64_t req, const struct ferry_vmmp_range *ranges, uint32_t count,
				uint8_t *buf, size_t cap)
{
	return encode_ranges(FERRY_VMMP_FREE_HINT, FERRY_VMMP_MAX_HINTS, req, ranges, count, buf, cap);
}

int ferry_vmmp_encode_drop_ptes(uint64_t req, const struct ferry_vmmp_range *ranges, uint32_t count,
				uint8_t *buf, size_t cap)
{
	return encode_ranges(FERRY_VMMP_DROP_PTES, FERRY_VMMP_MAX_DROP, req, ranges, count, buf, cap);
}

int ferry_vmmp_encode_ctl(uint8_t type, uint64_t req, uint32_t flags, uint8_t *buf, size_t cap)
{
	int rc;

	if (type != FERRY_VMMP_PAUSE && type != FERRY_VMMP_RESUME)
		return -FERRY_VMMP_E_UNKNOWN_TYPE;
	rc = check_ctl(type, flags);
	if (rc != FERRY_VMMP_E_OK)
		return -rc;
	rc = begin(type, req, CTL_LEN, CTL_LEN, buf, cap);
	if (rc < 0)
		return rc;
	wire_put_u16(buf + 6, FERRY_VMMP_F_SERVER);
	wire_put_u32(buf + FERRY_VMMP_HDR_LEN, flags);
	wire_put_u32(buf + FERRY_VMMP_HDR_LEN + 4, 0);
	return frame_total(CTL_LEN);
}

int ferry_vmmp_encode_notice(uint64_t req, uint32_t event, uint8_t *buf, size_t cap)
{
	int rc = check_notice(event);

	if (rc != FERRY_VMMP_E_OK)
		return -rc;
	rc = begin(FERRY_VMMP_NOTICE, req, NOTICE_LEN, NOTICE_LEN, buf, cap);
	if (rc < 0)
		return rc;
	wire_put_u16(buf + 6, FERRY_VMMP_F_SERVER);
	wire_put_u32(buf + FERRY_VMMP_HDR_LEN, event);
	wire_put_u32(buf + FERRY_VMMP_HDR_LEN + 4, 0);
	return frame_total(NOTICE_LEN);
}

int ferry_vmmp_mark_server_reply(uint8_t *buf, size_t len)
{
	if (!buf || len < FERRY_VMMP_HDR_LEN || (buf[5] != FERRY_VMMP_OK && buf[5] != FERRY_VMMP_ERROR) ||
	    wire_get_u16(buf + 6) != FERRY_VMMP_F_REPLY)
		return -FERRY_VMMP_E_BAD_FLAGS;
	wire_put_u16(buf + 6, FERRY_VMMP_F_REPLY | FERRY_VMMP_F_SERVER);
	return 0;
}

int ferry_vmmp_encode_notify(uint64_t req, uint32_t event, uint8_t *buf, size_t cap)
{
	int rc = check_event(event);

	if (rc != FERRY_VMMP_E_OK)
		return -rc;
	rc = begin(FERRY_VMMP_NOTIFY, req, NOTIFY_LEN, NOTIFY_LEN, buf, cap);
	if (rc < 0)
		return rc;
	wire_put_u32(buf + FERRY_VMMP_HDR_LEN, event);
	wire_put_u32(buf + FERRY_VMMP_HDR_LEN + 4, 0);
	return frame_total(NOTIFY_LEN);
}

int ferry_vmmp_encode_state_prefix(uint8_t type, uint64_t req, uint64_t total_len, uint64_t offset,
				   uint32_t data_len, uint8_t *buf, size_t cap)
{
	int rc;

	if (type != FERRY_VMMP_STATE_PUT && type != FERRY_VMMP_STATE_DATA)
		return -FERRY_VMMP_E_MALFORMED;
	rc = check_state(type, total_len, offset, data_len);
	if (rc != FERRY_VMMP_E_OK)
		return -rc;
	rc = begin(type, req, STATE_FIXED + (uint64_t)data_len, STATE_FIXED, buf, cap);
	if (rc < 0)
		return rc;
	wire_put_u64(buf + FERRY_VMMP_HDR_LEN, total_len);
	wire_put_u64(buf + FERRY_VMMP_HDR_LEN + 8, offset);
	return frame_total(STATE_FIXED);
}

int ferry_vmmp_encode_state_get(uint64_t req, uint64_t offset, uint32_t max_len, uint8_t *buf, size_t cap)
{
	int rc = check_state_get(offset, max_len);

	if (rc != FERRY_VMMP_E_OK)
		return -rc;
	rc = begin(FERRY_VMMP_STATE_GET, req, STATE_GET_LEN, STATE_GET_LEN, buf, cap);
	if (rc < 0)
		return rc;
	wire_put_u64(buf + FERRY_VMMP_HDR_LEN, offset);
	wire_put_u32(buf + FERRY_VMMP_HDR_LEN + 8, max_len);
	wire_put_u32(buf + FERRY_VMMP_HDR_LEN + 12, 0);
	return frame_total(STATE_GET_LEN);
}

int ferry_vmmp_encode_stats(uint64_t req, uint8_t *buf, size_t cap)
{
	return frame_encode_empty(&vmm_frame, FERRY_VMMP_STATS, req, buf, cap);
}

int ferry_vmmp_encode_unregister(uint64_t req, uint8_t *buf, size_t cap)
{
	return frame_encode_empty(&vmm_frame, FERRY_VMMP_UNREGISTER, req, buf, cap);
}

static void stat_get(const void *ctx, uint16_t i, const char **name, uint64_t *value)
{
	const struct ferry_vmmp_stat *st = (const struct ferry_vmmp_stat *)ctx + i;

	*name = st->name;
	*value = st->value;
}

int ferry_vmmp_encode_stats_ok(uint64_t req, const struct ferry_vmmp_stat *stats, uint16_t count,
			       uint8_t *buf, size_t cap)
{
	return frame_stats_encode(&vmm_frame, req, stat_get, stats, count, buf, cap);
}

int ferry_vmmp_encode_ok(uint64_t req, uint64_t value, uint8_t *buf, size_t cap)
{
	int rc = begin(FERRY_VMMP_OK, req, OK_LEN, OK_LEN, buf, cap);

	if (rc < 0)
		return rc;
	wire_put_u64(buf + FERRY_VMMP_HDR_LEN, value);
	return frame_total(OK_LEN);
}

int ferry_vmmp_encode_error(uint64_t req, uint32_t code, const char *msg, uint8_t *buf, size_t cap)
{
	return frame_error_encode(&vmm_frame, req, code, msg, buf, cap);
}

/* ---------------------------------------------------------------- allow-list */

static inline bool allow_sep(char c)
{
	return c == ',' || c == ' ' || c == '\t' || c == '\n';
}

int ferry_vmmp_allow_parse(const char *spec, struct ferry_vmmp_allow *allow)
{
	const char *s = spec;

	if (!spec || !allow)
		return FERRY_VMMP_E_MALFORMED;
	allow->count = 0;
	for (;;) {
		uint8_t kind;
		uint64_t id = 0;
		int digits = 0;

		while (allow_sep(*s))
			s++;
		if (*s == '\0')
			break;
		if (strncmp(s, "uid:", 4) == 0)
			kind = FERRY_VMMP_ALLOW_UID;
		else if (strncmp(s, "gid:", 4) == 0)
			kind = FERRY_VMMP_ALLOW_GID;
		else
			return FERRY_VMMP_E_MALFORMED;
		s += 4;
		for (; *s >= '0' && *s <= '9'; s++, digits++) {
			if (digits == 10)
				return FERRY_VMMP_E_MALFORMED;
			id = id * 10 + (uint64_t)(*s - '0');
		}
		/* (uid_t)-1 means "no id" to the kernel: never a real peer. */
		if (digits == 0 || id >= UINT32_MAX || (*s != '\0' && !allow_sep(*s)))
			return FERRY_VMMP_E_MALFORMED;
		if (allow->count == FERRY_VMMP_ALLOW_MAX)
			return FERRY_VMMP_E_TOO_LARGE;
		allow->e[allow->count].kind = kind;
		allow->e[allow->count].id = (uint32_t)id;
		allow->count++;
	}
	return allow->count ? FERRY_VMMP_E_OK : FERRY_VMMP_E_MALFORMED;
}

bool ferry_vmmp_allow_match(const struct ferry_vmmp_allow *allow, uint32_t uid, const uint32_t *gids,
			    size_t ngids)
{
	if (!allow)
		return false;
	for (uint32_t i = 0; i < allow->count && i < FERRY_VMMP_ALLOW_MAX; i++) {
		if (allow->e[i].kind == FERRY_VMMP_ALLOW_UID && allow->e[i].id == uid)
			return true;
		if (allow->e[i].kind != FERRY_VMMP_ALLOW_GID || !gids)
			continue;
		for (size_t g = 0; g < ngids; g++)
			if (gids[g] == allow->e[i].id)
				return true;
	}
	return false;
}

/* ---------------------------------------------------------------- Firecracker */

static inline bool json_blank(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int ferry_vmmp_fc_frame(const uint8_t *buf, size_t len, size_t *frame_len)
{
	size_t i = 0, depth = 0;
	bool in_str = false, esc = false;

	if (!buf && len)
		return FERRY_VMMP_E_MALFORMED;
	while (i < len && json_blank(buf[i]))
		i++;
	if (i == len)
		return len > FERRY_VMMP_FC_MAX_LEN ? FERRY_VMMP_E_TOO_LARGE : FERRY_VMMP_E_TRUNCATED;
	if (buf[i] != '[')
		return FERRY_VMMP_E_JSON_SHAPE;
	for (; i < len && i < FERRY_VMMP_FC_MAX_LEN; i++) {
		uint8_t c = buf[i];

		if (in_str) {
			if (esc)
				esc = false;
			else if (c == '\\')
				esc = true;
			else if (c == '"')
				in_str = false;
			continue;
		}
		if (c == '"') {
			in_str = true;
		} else if (c == '[' || c == '{') {
			depth++;
		} else if (c == ']' || c == '}') {
			if (--depth == 0) {
				if (frame_len)
					*frame_len = i + 1;
				return FERRY_VMMP_E_OK;
			}
		}
	}
	return i >= FERRY_VMMP_FC_MAX_LEN ? FERRY_VMMP_E_TOO_LARGE : FERRY_VMMP_E_TRUNCATED;
}

__attribute__((format(printf, 4, 5)))
static int fc_fail(int code, char *why, size_t why_len, const char *fmt, ...)
{
	if (why && why_len) {
		va_list ap;

		va_start(ap, fmt);
		vsnprintf(why, why_len, fmt, ap);
		va_end(ap);
	}
	return code;
}

/*
 * Read the non-negative integer field @key of region @idx. @required: absent
 * is an error; otherwise *present says whether it was there.
 */
static int fc_uint(json_t *obj, const char *key, uint32_t idx, bool required, bool *present, uint64_t *out,
		   char *why, size_t why_len)
{
	json_t *v = json_object_get(obj, key);
	json_int_t n;

	if (present)
		*present = v != NULL;
	if (!v) {
		if (required)
			return fc_fail(FERRY_VMMP_E_MISSING_FIELD, why, why_len, "region %u: missing \"%s\"",
				       idx, key);
		return FERRY_VMMP_E_OK;
	}
	if (!json_is_integer(v))
		return fc_fail(FERRY_VMMP_E_WRONG_TYPE, why, why_len, "region %u: \"%s\" is not an integer", idx,
			       key);
	n = json_integer_value(v);
	if (n < 0)
		return fc_fail(FERRY_VMMP_E_BAD_NUMBER, why, why_len, "region %u: \"%s\" is negative", idx, key);
	*out = (uint64_t)n;
	return FERRY_VMMP_E_OK;
}

static int fc_region(json_t *obj, uint32_t idx, struct ferry_vmmp_fc_region *r, char *why, size_t why_len)
{
	uint64_t ps = 0, ps_kib = 0;
	bool has_ps, has_kib;
	json_t *gm;
	int rc;

	if (!json_is_object(obj))
		return fc_fail(FERRY_VMMP_E_JSON_SHAPE, why, why_len, "region %u is not an object", idx);
	if ((rc = fc_uint(obj, "base_host_virt_addr", idx, true, NULL, &r->hva, why, why_len)) ||
	    (rc = fc_uint(obj, "size", idx, true, NULL, &r->size, why, why_len)) ||
	    (rc = fc_uint(obj, "offset", idx, true, NULL, &r->offset, why, why_len)) ||
	    (rc = fc_uint(obj, "page_size", idx, false, &has_ps, &ps, why, why_len)) ||
	    (rc = fc_uint(obj, "page_size_kib", idx, false, &has_kib, &ps_kib, why, why_len)) ||
	    (rc = fc_uint(obj, "gpa_start", idx, false, &r->has_gpa, &r->gpa, why, why_len)))
		return rc;
	gm = json_object_get(obj, "is_guest_memfd");
	if (gm && !json_is_boolean(gm))
		return fc_fail(FERRY_VMMP_E_WRONG_TYPE, why, why_len, "region %u: \"is_guest_memfd\" is not a boolean",
			       idx);
	if (gm && json_is_true(gm))
		return fc_fail(FERRY_VMMP_E_UNSUPPORTED, why, why_len,
			       "region %u: guest_memfd-backed memory is not supported", idx);

	/* "page_size_kib" has always carried bytes, despite its name. */
	if (has_ps && has_kib && ps != ps_kib)
		return fc_fail(FERRY_VMMP_E_MALFORMED, why, why_len,
			       "region %u: \"page_size\" %llu and \"page_size_kib\" %llu disagree", idx,
			       (unsigned long long)ps, (unsigned long long)ps_kib);
	if (has_ps) {
		r->page_src = FERRY_VMMP_FC_PS_FIELD;
	} else if (has_kib) {
		ps = ps_kib;
		r->page_src = FERRY_VMMP_FC_PS_KIB;
	} else {
		ps = FERRY_VMMP_PAGE_4K;
		r->page_src = FERRY_VMMP_FC_PS_DEFAULT;
	}
	if (!page_size_ok(ps))
		return fc_fail(FERRY_VMMP_E_PAGE_SIZE, why, why_len,
			       "region %u: page size %llu is neither 4096 nor 2097152", idx, (unsigned long long)ps);
	r->page_size = (uint32_t)ps;

	if (r->size == 0)
		return fc_fail(FERRY_VMMP_E_MALFORMED, why, why_len, "region %u: size is 0", idx);
	if ((r->hva | r->size | r->offset | (r->has_gpa ? r->gpa : 0)) & (ps - 1))
		return fc_fail(FERRY_VMMP_E_BAD_ALIGNMENT, why, why_len,
			       "region %u: address, size or offset not a multiple of the page size %llu", idx,
			       (unsigned long long)ps);
	/* Each value is below 2^63 (jansson's integers), so the sums below cannot wrap. */
	if (r->hva + r->size > FERRY_VMMP_HVA_LIMIT)
		return fc_fail(FERRY_VMMP_E_BAD_NUMBER, why, why_len, "region %u: ends beyond the host address space",
			       idx);
	if (r->offset + r->size > (uint64_t)INT64_MAX)
		return fc_fail(FERRY_VMMP_E_BAD_NUMBER, why, why_len, "region %u: file range beyond 2^63", idx);
	if (r->has_gpa && r->gpa + r->size > FERRY_VMMP_GPA_LIMIT)
		return fc_fail(FERRY_VMMP_E_BAD_NUMBER, why, why_len,
			       "region %u: ends beyond the guest-physical address space", idx);
	return FERRY_VMMP_E_OK;
}

static int fc_json_error(const json_error_t *jerr, char *why, size_t why_len)
{
	switch (json_error_code(jerr)) {
	case json_error_numeric_overflow:
		return fc_fail(FERRY_VMMP_E_BAD_NUMBER, why, why_len, "number out of range at byte %d: %s",
			       jerr->position, jerr->text);
	case json_error_duplicate_key:
		return fc_fail(FERRY_VMMP_E_MALFORMED, why, why_len, "duplicate key at byte %d: %s",
			       jerr->position, jerr->text);
	case json_error_out_of_memory:
		return fc_fail(FERRY_VMMP_E_INTERNAL, why, why_len, "out of memory parsing JSON");
	default:
		return fc_fail(FERRY_VMMP_E_JSON_SYNTAX, why, why_len, "invalid JSON at byte %d: %s",
			       jerr->position, jerr->text);
	}
}

int ferry_vmmp_fc_decode(const uint8_t *buf, size_t len, unsigned int nfds,
			 struct ferry_vmmp_fc_handshake *hs, char *why, size_t why_len)
{
	json_error_t jerr;
	json_t *root;
	size_t count;
	int rc = FERRY_VMMP_E_OK;

	if (why && why_len)
		why[0] = '\0';
	if (!hs || (!buf && len))
		return fc_fail(FERRY_VMMP_E_MALFORMED, why, why_len, "no input");
	if (len > FERRY_VMMP_FC_MAX_LEN)
		return fc_fail(FERRY_VMMP_E_TOO_LARGE, why, why_len, "handshake of %zu bytes exceeds %u", len,
			       FERRY_VMMP_FC_MAX_LEN);
	if (len == 0)
		return fc_fail(FERRY_VMMP_E_JSON_SYNTAX, why, why_len, "empty handshake");
	root = json_loadb((const char *)buf, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return fc_json_error(&jerr, why, why_len);

	if (!json_is_array(root)) {
		rc = fc_fail(FERRY_VMMP_E_JSON_SHAPE, why, why_len, "handshake is not a JSON array");
		goto out;
	}
	count = json_array_size(root);
	if (count == 0) {
		rc = fc_fail(FERRY_VMMP_E_JSON_SHAPE, why, why_len, "handshake has no regions");
		goto out;
	}
	if (count > FERRY_VMMP_MAX_REGIONS) {
		rc = fc_fail(FERRY_VMMP_E_TOO_LARGE, why, why_len, "%zu regions, at most %u", count,
			     FERRY_VMMP_MAX_REGIONS);
		goto out;
	}
	for (size_t i = 0; i < count; i++) {
		memset(&hs->regions[i], 0, sizeof(hs->regions[i]));
		rc = fc_region(json_array_get(root, i), (uint32_t)i, &hs->regions[i], why, why_len);
		if (rc != FERRY_VMMP_E_OK)
			goto out;
	}
	for (size_t i = 0; i < count; i++) {
		const struct ferry_vmmp_fc_region *a = &hs->regions[i];

		for (size_t j = i + 1; j < count; j++) {
			const struct ferry_vmmp_fc_region *b = &hs->regions[j];
			const char *what = NULL;

			if (overlaps(a->hva, a->size, b->hva, b->size))
				what = "host addresses";
			else if (overlaps(a->offset, a->size, b->offset, b->size))
				what = "file ranges";
			else if (a->has_gpa && b->has_gpa && overlaps(a->gpa, a->size, b->gpa, b->size))
				what = "guest-physical ranges";
			if (what) {
				rc = fc_fail(FERRY_VMMP_E_OVERLAP, why, why_len, "regions %zu and %zu: %s overlap",
					     i, j, what);
				goto out;
			}
		}
	}
	if (nfds != 1) {
		rc = fc_fail(FERRY_VMMP_E_FD_MISMATCH, why, why_len,
			     "%u descriptors came with the handshake, expected 1 (the uffd)", nfds);
		goto out;
	}
	hs->count = (uint32_t)count;
out:
	json_decref(root);
	return rc;
}

int ferry_vmmp_fc_to_register(const struct ferry_vmmp_fc_handshake *hs, const char *vm_id,
			      struct ferry_vmmp_register *reg)
{
	size_t id_len;

	if (!hs || !vm_id || !reg)
		return FERRY_VMMP_E_MALFORMED;
	if (hs->count == 0 || hs->count > FERRY_VMMP_MAX_REGIONS)
		return FERRY_VMMP_E_MALFORMED;
	id_len = strnlen(vm_id, FERRY_VMMP_VM_ID_MAX + 1);
	if (id_len > FERRY_VMMP_VM_ID_MAX)
		return FERRY_VMMP_E_TOO_LARGE;
	memset(reg, 0, sizeof(*reg));
	memcpy(reg->vm_id, vm_id, id_len);
	reg->vm_id_len = (uint8_t)id_len;
	reg->region_count = (uint16_t)hs->count;
	reg->fd_count = 1;
	for (uint32_t i = 0; i < hs->count; i++) {
		const struct ferry_vmmp_fc_region *f = &hs->regions[i];
		struct ferry_vmmp_region *g = &reg->regions[i];

		g->gpa = f->has_gpa ? f->gpa : f->offset;
		g->size = f->size;
		g->hva = f->hva;
		g->offset = f->offset;
		g->page_size = f->page_size;
		g->fd_slot = 0;
		g->modes = FERRY_VMMP_MODE_MISSING;
	}
	return ferry_vmmp_register_check(reg);
}

/* ---------------------------------------------------------------- naming */

static const char *const type_names[FERRY_VMMP_TYPE_MAX + 1] = {
	[FERRY_VMMP_REGISTER] = "REGISTER",
	[FERRY_VMMP_REGISTER_OK] = "REGISTER_OK",
	[FERRY_VMMP_FREE_HINT] = "FREE_HINT",
	[FERRY_VMMP_NOTIFY] = "NOTIFY",
	[FERRY_VMMP_STATE_PUT] = "STATE_PUT",
	[FERRY_VMMP_STATE_GET] = "STATE_GET",
	[FERRY_VMMP_STATE_DATA] = "STATE_DATA",
	[FERRY_VMMP_STATS] = "STATS",
	[FERRY_VMMP_STATS_OK] = "STATS_OK",
	[FERRY_VMMP_UNREGISTER] = "UNREGISTER",
	[FERRY_VMMP_OK] = "OK",
	[FERRY_VMMP_ERROR] = "ERROR",
	[FERRY_VMMP_PAUSE] = "PAUSE",
	[FERRY_VMMP_RESUME] = "RESUME",
	[FERRY_VMMP_DROP_PTES] = "DROP_PTES",
	[FERRY_VMMP_NOTICE] = "NOTICE",
};

const char *ferry_vmmp_type_name(uint8_t type)
{
	return frame_type_valid(&vmm_frame, type) ? type_names[type] : "UNKNOWN";
}

static const char *const errcode_texts[FERRY_VMMP_E_CODE_MAX + 1] = {
	[FERRY_VMMP_E_OK] = "ok",
	[FERRY_VMMP_E_TRUNCATED] = "truncated message",
	[FERRY_VMMP_E_BAD_MAGIC] = "bad magic",
	[FERRY_VMMP_E_VERSION] = "unsupported protocol version",
	[FERRY_VMMP_E_UNKNOWN_TYPE] = "unknown message type",
	[FERRY_VMMP_E_BAD_FLAGS] = "bad flags",
	[FERRY_VMMP_E_TOO_LARGE] = "too large",
	[FERRY_VMMP_E_MALFORMED] = "malformed message",
	[FERRY_VMMP_E_NOT_ALLOWED] = "peer not allowed",
	[FERRY_VMMP_E_BAD_ALIGNMENT] = "bad alignment",
	[FERRY_VMMP_E_PAGE_SIZE] = "unsupported page size",
	[FERRY_VMMP_E_OVERLAP] = "overlapping ranges",
	[FERRY_VMMP_E_BAD_VM_ID] = "bad VM id",
	[FERRY_VMMP_E_FD_MISMATCH] = "file descriptor count mismatch",
	[FERRY_VMMP_E_UNEXPECTED] = "unexpected message",
	[FERRY_VMMP_E_EXISTS] = "VM already registered",
	[FERRY_VMMP_E_OUT_OF_RANGE] = "out of range",
	[FERRY_VMMP_E_NO_STATE] = "no device state stored",
	[FERRY_VMMP_E_STATE_SEQUENCE] = "state chunk out of sequence",
	[FERRY_VMMP_E_BUSY] = "busy",
	[FERRY_VMMP_E_INTERNAL] = "internal error",
	[FERRY_VMMP_E_SHUTDOWN] = "server shutting down",
	[FERRY_VMMP_E_UNSUPPORTED] = "not supported",
	[FERRY_VMMP_E_JSON_SYNTAX] = "invalid JSON",
	[FERRY_VMMP_E_JSON_SHAPE] = "JSON is not an array of region objects",
	[FERRY_VMMP_E_MISSING_FIELD] = "missing field",
	[FERRY_VMMP_E_WRONG_TYPE] = "field of the wrong type",
	[FERRY_VMMP_E_BAD_NUMBER] = "number out of range",
};

const char *ferry_vmmp_errcode_str(uint32_t code)
{
	return code <= FERRY_VMMP_E_CODE_MAX ? errcode_texts[code] : "unknown error";
}
