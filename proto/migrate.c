/*
 * Migration protocol codec (control socket + source -> destination stream):
 * pure byte (de)serialisation, no I/O, no allocation. Layouts: migrate.h.
 * The header, HELLO, CHALLENGE, AUTH, STATS_OK and ERROR are frame.c's.
 *
 * Decoder codes beyond the header: a count or length above a protocol limit
 * is MIG_E_TOO_LARGE, a bad VM id MIG_E_BAD_VM_ID, a bad host MIG_E_BAD_HOST,
 * anything else inconsistent (sizes that do not add up, reserved bytes,
 * values out of range) MIG_E_MALFORMED.
 */
#include "proto/migrate.h"
#include "proto/frame.h"
#include "proto/wire.h"

#include <stdbool.h>
#include <string.h>

#define PREPARE_FIXED    16u
#define SUB_FIXED        3u
#define PREPARE_OK_FIXED 36u
#define START_FIXED      40u
#define REF_FIXED        4u
#define STATUS_OK_FIXED  112u
#define VALUE_LEN        8u
#define AUTH_OK_LEN      72u
#define LAYOUT_FIXED     40u
#define REGION_LEN       24u
#define LAYOUT_OK_LEN    24u
#define EXTENTS_FIXED    8u
#define EXTENT_LEN       48u
#define MAP_FIXED        8u
#define ROUND_END_LEN    16u
#define DEVSTATE_FIXED   16u
#define SWITCHOVER_LEN   16u
#define BIND_LEN         32u
#define SUBHOST_FIXED    4u
#define CREDIT_LEN       8u
#define FETCH_FIXED      8u

#define REPLY_TYPES ((1u << MIGP_PREPARE_OK) | (1u << MIGP_STATUS_OK) | (1u << MIGP_OK) | (1u << MIGP_ERROR) | \
		     (1u << MIGP_CHALLENGE) | (1u << MIGP_AUTH_OK) | (1u << MIGP_LAYOUT_OK) |                 \
		     (1u << MIGP_RESUMED) | (1u << MIGP_STATS_OK))

static uint32_t type_max_payload(uint8_t type)
{
	switch (type) {
	case MIGP_PAGE_MAP:
		return MIGP_MAX_PAYLOAD;
	case MIGP_DEVSTATE:
		return DEVSTATE_FIXED + MIGP_DEVSTATE_CHUNK;
	default:
		return MIGP_CTRL_PAYLOAD;
	}
}

static const struct frame_proto mig_frame = {
	.magic = MIGP_MAGIC,
	.version = MIGP_VERSION,
	.type_max = MIGP_TYPE_MAX,
	.known_flags = MIGP_F_KNOWN,
	.reply_flag = MIGP_F_REPLY,
	.reply_types = REPLY_TYPES,
	.max_payload = type_max_payload,
	.type_stats_ok = MIGP_STATS_OK,
	.type_error = MIGP_ERROR,
	.stats_max = MIGP_MAX_STATS,
	.stat_name_max = MIGP_STAT_NAME_MAX,
	.errmsg_max = MIGP_ERRMSG_MAX,
	.type_hello = MIGP_HELLO,
	.type_challenge = MIGP_CHALLENGE,
	.type_auth = MIGP_AUTH,
	.name_max = MIGP_NAME_MAX,
};

_Static_assert(MIG_E_OK == FRAME_E_OK && MIG_E_TRUNCATED == FRAME_E_TRUNCATED &&
		       MIG_E_BAD_MAGIC == FRAME_E_BAD_MAGIC && MIG_E_VERSION == FRAME_E_VERSION &&
		       MIG_E_UNKNOWN_TYPE == FRAME_E_UNKNOWN_TYPE && MIG_E_BAD_FLAGS == FRAME_E_BAD_FLAGS &&
		       MIG_E_TOO_LARGE == FRAME_E_TOO_LARGE && MIG_E_MALFORMED == FRAME_E_MALFORMED,
	       "migration error codes 0..7 are frame.h's");
_Static_assert(MIGP_HDR_LEN == FRAME_HDR_LEN, "migration header is the frame header");
_Static_assert(MIGP_TYPE_MAX <= 31, "frame.h types fit a 32-bit mask");

/* ---------------------------------------------------------------- checks */

static bool zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static int check_vm_id(const uint8_t *s, size_t len)
{
	if (len == 0)
		return MIG_E_BAD_VM_ID;
	if (len > MIGP_VM_ID_MAX)
		return MIG_E_TOO_LARGE;
	for (size_t i = 0; i < len; i++)
		if (s[i] < 0x21 || s[i] > 0x7e)
			return MIG_E_BAD_VM_ID;
	return MIG_E_OK;
}

static bool host_char(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
	       c == ':' || c == '_' || c == '-';
}

static int check_host(const uint8_t *s, size_t len)
{
	if (len == 0)
		return MIG_E_BAD_HOST;
	if (len > MIGP_HOST_MAX)
		return MIG_E_TOO_LARGE;
	for (size_t i = 0; i < len; i++)
		if (!host_char(s[i]))
			return MIG_E_BAD_HOST;
	return MIG_E_OK;
}

/* Length of a C-string VM id / host for the encoders, or a negative code. */
static int id_length(const char *id)
{
	size_t n;

	if (!id)
		return -MIG_E_BAD_VM_ID;
	n = strnlen(id, MIGP_VM_ID_MAX + 1);
	if (n > MIGP_VM_ID_MAX)
		return -MIG_E_TOO_LARGE;
	return check_vm_id((const uint8_t *)id, n) == MIG_E_OK ? (int)n : -MIG_E_BAD_VM_ID;
}

static int host_length(const char *host)
{
	size_t n;

	if (!host)
		return -MIG_E_BAD_HOST;
	n = strnlen(host, MIGP_HOST_MAX + 1);
	if (n > MIGP_HOST_MAX)
		return -MIG_E_TOO_LARGE;
	return check_host((const uint8_t *)host, n) == MIG_E_OK ? (int)n : -MIG_E_BAD_HOST;
}

static void copy_str(char *dst, const uint8_t *src, size_t n)
{
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* ---------------------------------------------------------------- decoding */

int migp_hdr_decode(const uint8_t *buf, size_t len, struct migp_hdr *hdr)
{
	struct frame_hdr h;
	int rc = frame_hdr_decode(&mig_frame, buf, len, &h);

	if (rc != MIG_E_OK)
		return rc;
	hdr->type = h.type;
	hdr->flags = h.flags;
	hdr->request_id = h.request_id;
	hdr->payload_len = h.payload_len;
	return MIG_E_OK;
}

static int decode_prepare(const uint8_t *p, uint32_t n, struct migp_prepare *m)
{
	uint8_t id_len, nsubs;
	uint32_t off;
	int rc;

	if (n < PREPARE_FIXED)
		return MIG_E_MALFORMED;
	id_len = p[8];
	nsubs = p[9];
	if (!zero(p + 10, 6))
		return MIG_E_MALFORMED;
	if (id_len > MIGP_VM_ID_MAX || nsubs > MIGP_SUBS_MAX)
		return MIG_E_TOO_LARGE;
	if (n - PREPARE_FIXED < id_len)
		return MIG_E_MALFORMED;
	rc = check_vm_id(p + PREPARE_FIXED, id_len);
	if (rc)
		return rc;
	off = PREPARE_FIXED + id_len;
	for (uint8_t i = 0; i < nsubs; i++) {
		uint8_t hl;

		if (n - off < SUB_FIXED)
			return MIG_E_MALFORMED;
		hl = p[off + 2];
		if (hl > MIGP_HOST_MAX)
			return MIG_E_TOO_LARGE;
		if (n - off - SUB_FIXED < hl)
			return MIG_E_MALFORMED;
		if (wire_get_u16(p + off) == 0)
			return MIG_E_MALFORMED;
		rc = check_host(p + off + SUB_FIXED, hl);
		if (rc)
			return rc;
		m->subs[i].port = wire_get_u16(p + off);
		copy_str(m->subs[i].host, p + off + SUB_FIXED, hl);
		off += SUB_FIXED + hl;
	}
	if (off != n)
		return MIG_E_MALFORMED;
	m->budget_bytes = wire_get_u64(p);
	m->nsubs = nsubs;
	copy_str(m->id, p + PREPARE_FIXED, id_len);
	return MIG_E_OK;
}

static int decode_prepare_ok(const uint8_t *p, uint32_t n, struct migp_prepare_ok *m)
{
	uint8_t hl;
	int rc;

	if (n < PREPARE_OK_FIXED)
		return MIG_E_MALFORMED;
	hl = p[2];
	if (p[3])
		return MIG_E_MALFORMED;
	if (hl > MIGP_HOST_MAX)
		return MIG_E_TOO_LARGE;
	if (n - PREPARE_OK_FIXED != hl || wire_get_u16(p) == 0)
		return MIG_E_MALFORMED;
	rc = check_host(p + PREPARE_OK_FIXED, hl);
	if (rc)
		return rc;
	m->ep.port = wire_get_u16(p);
	memcpy(m->token, p + 4, MIGP_TOKEN_LEN);
	copy_str(m->ep.host, p + PREPARE_OK_FIXED, hl);
	return MIG_E_OK;
}

static int decode_start(const uint8_t *p, uint32_t n, struct migp_start *m)
{
	uint8_t mode, id_len, hl;
	int rc;

	if (n < START_FIXED)
		return MIG_E_MALFORMED;
	mode = p[0];
	id_len = p[1];
	hl = p[2];
	if (p[3] || wire_get_u16(p + 6))
		return MIG_E_MALFORMED;
	if (mode < 1 || mode > 4)
		return MIG_E_MALFORMED;
	if (id_len > MIGP_VM_ID_MAX || hl > MIGP_HOST_MAX)
		return MIG_E_TOO_LARGE;
	if (n - START_FIXED != (uint32_t)id_len + hl || wire_get_u16(p + 4) == 0)
		return MIG_E_MALFORMED;
	rc = check_vm_id(p + START_FIXED, id_len);
	if (rc)
		return rc;
	rc = check_host(p + START_FIXED + id_len, hl);
	if (rc)
		return rc;
	m->mode = mode;
	m->dest.port = wire_get_u16(p + 4);
	memcpy(m->token, p + 8, MIGP_TOKEN_LEN);
	copy_str(m->id, p + START_FIXED, id_len);
	copy_str(m->dest.host, p + START_FIXED + id_len, hl);
	return MIG_E_OK;
}

static int decode_ref(const uint8_t *p, uint32_t n, struct migp_vm_ref *m)
{
	uint8_t id_len;
	int rc;

	if (n < REF_FIXED)
		return MIG_E_MALFORMED;
	id_len = p[0];
	if (!zero(p + 1, 3))
		return MIG_E_MALFORMED;
	if (id_len > MIGP_VM_ID_MAX)
		return MIG_E_TOO_LARGE;
	if (n - REF_FIXED != id_len)
		return MIG_E_MALFORMED;
	rc = check_vm_id(p + REF_FIXED, id_len);
	if (rc)
		return rc;
	copy_str(m->id, p + REF_FIXED, id_len);
	return MIG_E_OK;
}

static int decode_status_ok(const uint8_t *p, uint32_t n, struct migp_status_ok *m)
{
	uint16_t el;

	if (n < STATUS_OK_FIXED)
		return MIG_E_MALFORMED;
	if (p[0] > 8 || !zero(p + 1, 3) || wire_get_u16(p + 110))
		return MIG_E_MALFORMED;
	el = wire_get_u16(p + 108);
	if (el > MIGP_STATUS_ERR_MAX)
		return MIG_E_TOO_LARGE;
	if (n - STATUS_OK_FIXED != el)
		return MIG_E_MALFORMED;
	for (uint16_t i = 0; i < el; i++)
		if (p[STATUS_OK_FIXED + i] < 0x20 || p[STATUS_OK_FIXED + i] > 0x7e)
			return MIG_E_MALFORMED;
	m->phase = p[0];
	m->round = wire_get_u32(p + 4);
	m->pages_total = wire_get_u64(p + 8);
	m->pages_sent = wire_get_u64(p + 16);
	m->pages_skipped_unused = wire_get_u64(p + 24);
	m->pages_remaining = wire_get_u64(p + 32);
	m->pages_resent = wire_get_u64(p + 40);
	m->pages_to_subhosts = wire_get_u64(p + 48);
	m->bytes_sent = wire_get_u64(p + 56);
	m->postcopy_faults = wire_get_u64(p + 64);
	m->started_ns = wire_get_u64(p + 72);
	m->downtime_ns = wire_get_u64(p + 80);
	m->total_ns = wire_get_u64(p + 88);
	m->generation = wire_get_u32(p + 96);
	if (!zero(p + 100, 8))
		return MIG_E_MALFORMED;
	copy_str(m->error, p + STATUS_OK_FIXED, el);
	return MIG_E_OK;
}

static int decode_value(const uint8_t *p, uint32_t n, struct migp_value *m)
{
	if (n != VALUE_LEN)
		return MIG_E_MALFORMED;
	m->value = wire_get_u64(p);
	return MIG_E_OK;
}

static int decode_auth_ok(const uint8_t *p, uint32_t n, struct migp_auth_ok *m)
{
	if (n != AUTH_OK_LEN)
		return MIG_E_MALFORMED;
	if (wire_get_u16(p + 32) == 0 || !zero(p + 34, 6))
		return MIG_E_MALFORMED;
	memcpy(m->mac, p, MIGP_MAC_LEN);
	m->data_port = wire_get_u16(p + 32);
	memcpy(m->bind, p + 40, MIGP_TOKEN_LEN);
	return MIG_E_OK;
}

static int decode_layout(const uint8_t *p, uint32_t n, struct migp_layout *m)
{
	uint8_t nr;
	uint64_t npages, next = 0;

	if (n < LAYOUT_FIXED)
		return MIG_E_MALFORMED;
	nr = p[21];
	if (!zero(p + 22, 18))
		return MIG_E_MALFORMED;
	if (p[20] < 1 || p[20] > 4)
		return MIG_E_MALFORMED;
	if (nr > MIGP_REGIONS_MAX)
		return MIG_E_TOO_LARGE;
	if (nr == 0 || n - LAYOUT_FIXED != (uint32_t)nr * REGION_LEN)
		return MIG_E_MALFORMED;
	npages = wire_get_u64(p);
	if (npages == 0 || wire_get_u64(p + 8) > npages)
		return MIG_E_MALFORMED;
	for (uint8_t i = 0; i < nr; i++) {
		const uint8_t *r = p + LAYOUT_FIXED + (uint32_t)i * REGION_LEN;
		uint64_t size = wire_get_u64(r + 8), first = wire_get_u64(r + 16);

		if (size == 0 || size % 4096 || first != next || size / 4096 > npages - next)
			return MIG_E_MALFORMED;
		m->regions[i].gpa = wire_get_u64(r);
		m->regions[i].size = size;
		m->regions[i].first_page = first;
		next += size / 4096;
	}
	if (next != npages)
		return MIG_E_MALFORMED;
	m->npages = npages;
	m->pages_used = wire_get_u64(p + 8);
	m->generation = wire_get_u32(p + 16);
	m->mode = p[20];
	m->nregions = nr;
	return MIG_E_OK;
}

static int decode_layout_ok(const uint8_t *p, uint32_t n, struct migp_layout_ok *m)
{
	if (n != LAYOUT_OK_LEN)
		return MIG_E_MALFORMED;
	if (wire_get_u32(p + 4) > MIGP_STAGE_MAX)
		return MIG_E_TOO_LARGE;
	if (wire_get_u32(p + 4) < MIGP_STAGE_MIN)
		return MIG_E_MALFORMED;
	m->dst_rkey = wire_get_u32(p);
	m->stage_slots = wire_get_u32(p + 4);
	m->dst_base = wire_get_u64(p + 8);
	m->dst_pages = wire_get_u64(p + 16);
	return MIG_E_OK;
}

static int decode_extents(const uint8_t *p, uint32_t n, struct migp_extents *m)
{
	uint16_t count, first, total;

	if (n < EXTENTS_FIXED || !zero(p + 6, 2))
		return MIG_E_MALFORMED;
	count = wire_get_u16(p);
	first = wire_get_u16(p + 2);
	total = wire_get_u16(p + 4);
	if (count > MIGP_EXTENTS_MSG || total > MIGP_EXTENTS_MAX)
		return MIG_E_TOO_LARGE;
	if (count == 0 || n - EXTENTS_FIXED != (uint32_t)count * EXTENT_LEN || (uint32_t)first + count > total)
		return MIG_E_MALFORMED;
	for (uint16_t i = 0; i < count; i++) {
		const uint8_t *e = p + EXTENTS_FIXED + (uint32_t)i * EXTENT_LEN;
		uint64_t len = wire_get_u64(e + 8);

		if (e[0] >= MIGP_SUBS_MAX || !zero(e + 1, 3) || len == 0 || len % 4096)
			return MIG_E_MALFORMED;
	}
	m->count = count;
	m->first = first;
	m->total = total;
	m->entries = p + EXTENTS_FIXED;
	return MIG_E_OK;
}

void migp_extents_entry(const struct migp_extents *x, uint16_t i, struct migp_extent *e)
{
	const uint8_t *p = x->entries + (uint32_t)i * EXTENT_LEN;

	e->sub = p[0];
	e->extent_id = wire_get_u32(p + 4);
	e->length = wire_get_u64(p + 8);
	memcpy(e->token, p + 16, MIGP_TOKEN_LEN);
}

static int check_map_entry(const uint8_t *e)
{
	uint8_t where = e[12], sub = e[13];

	if (where < MIGP_W_DEST || where > MIGP_W_SOURCE || wire_get_u16(e + 14))
		return MIG_E_MALFORMED;
	if (where == MIGP_W_SUB) {
		if (sub >= MIGP_SUBS_MAX || wire_get_u32(e + 16) >= MIGP_EXTENTS_MAX)
			return MIG_E_MALFORMED;
	} else if (where == MIGP_W_DEST) {
		if (sub || wire_get_u32(e + 16) || wire_get_u32(e + 20) >= MIGP_STAGE_MAX)
			return MIG_E_MALFORMED;
	} else if (sub || wire_get_u32(e + 16) || wire_get_u32(e + 20)) {
		return MIG_E_MALFORMED;
	}
	return MIG_E_OK;
}

static int decode_page_map(const uint8_t *p, uint32_t n, struct migp_page_map *m)
{
	uint32_t count;

	if (n < MAP_FIXED || wire_get_u32(p + 4))
		return MIG_E_MALFORMED;
	count = wire_get_u32(p);
	if (count > MIGP_MAP_MAX)
		return MIG_E_TOO_LARGE;
	if (count == 0 || n - MAP_FIXED != count * MIGP_MAP_ENTRY_LEN)
		return MIG_E_MALFORMED;
	for (uint32_t i = 0; i < count; i++) {
		int rc = check_map_entry(p + MAP_FIXED + i * MIGP_MAP_ENTRY_LEN);

		if (rc)
			return rc;
	}
	m->count = count;
	m->entries = p + MAP_FIXED;
	return MIG_E_OK;
}

void migp_page_map_entry(const struct migp_page_map *m, uint32_t i, struct migp_map_entry *e)
{
	const uint8_t *p = m->entries + i * MIGP_MAP_ENTRY_LEN;

	e->page = wire_get_u64(p);
	e->generation = wire_get_u32(p + 8);
	e->where = p[12];
	e->sub = p[13];
	e->extent = wire_get_u32(p + 16);
	e->slot = wire_get_u32(p + 20);
}

static int decode_round_end(const uint8_t *p, uint32_t n, struct migp_round_end *m)
{
	if (n != ROUND_END_LEN || wire_get_u32(p + 4))
		return MIG_E_MALFORMED;
	m->round = wire_get_u32(p);
	m->pages_dirty = wire_get_u64(p + 8);
	return MIG_E_OK;
}

static int decode_devstate(const uint8_t *p, uint32_t n, struct migp_devstate *m)
{
	uint64_t total, off;

	if (n < DEVSTATE_FIXED)
		return MIG_E_MALFORMED;
	total = wire_get_u64(p);
	off = wire_get_u64(p + 8);
	if (total > MIGP_DEVSTATE_MAX)
		return MIG_E_TOO_LARGE;
	if (off > total || n - DEVSTATE_FIXED > total - off)
		return MIG_E_MALFORMED;
	m->total = total;
	m->offset = off;
	m->len = n - DEVSTATE_FIXED;
	m->data = p + DEVSTATE_FIXED;
	return MIG_E_OK;
}

static int decode_switchover(const uint8_t *p, uint32_t n, struct migp_switchover *m)
{
	if (n != SWITCHOVER_LEN || wire_get_u32(p + 4))
		return MIG_E_MALFORMED;
	m->generation = wire_get_u32(p);
	m->pages_at_source = wire_get_u64(p + 8);
	return MIG_E_OK;
}

static int decode_subhost(const uint8_t *p, uint32_t n, struct migp_subhost *m)
{
	uint8_t hl;
	int rc;

	if (n < SUBHOST_FIXED)
		return MIG_E_MALFORMED;
	hl = p[3];
	if (hl > MIGP_HOST_MAX)
		return MIG_E_TOO_LARGE;
	if (n - SUBHOST_FIXED != hl || wire_get_u16(p) == 0 || p[2] >= MIGP_SUBS_MAX)
		return MIG_E_MALFORMED;
	rc = check_host(p + SUBHOST_FIXED, hl);
	if (rc)
		return rc;
	m->host.port = wire_get_u16(p);
	m->sub = p[2];
	copy_str(m->host.host, p + SUBHOST_FIXED, hl);
	return MIG_E_OK;
}

static int decode_credit(const uint8_t *p, uint32_t n, struct migp_credit *m)
{
	if (n != CREDIT_LEN || wire_get_u32(p + 4))
		return MIG_E_MALFORMED;
	m->slots = wire_get_u32(p);
	if (m->slots > MIGP_STAGE_MAX)
		return MIG_E_TOO_LARGE;
	return m->slots ? MIG_E_OK : MIG_E_MALFORMED;
}

static int decode_fetch(const uint8_t *p, uint32_t n, struct migp_fetch *m)
{
	uint32_t count, first;

	if (n < FETCH_FIXED)
		return MIG_E_MALFORMED;
	count = wire_get_u32(p);
	first = wire_get_u32(p + 4);
	if (count > MIGP_FETCH_MAX)
		return MIG_E_TOO_LARGE;
	if (count == 0 || n - FETCH_FIXED != count * 8u || first > MIGP_STAGE_MAX - count)
		return MIG_E_MALFORMED;
	m->count = count;
	m->first_slot = first;
	m->pages = p + FETCH_FIXED;
	return MIG_E_OK;
}

uint64_t migp_fetch_page(const struct migp_fetch *f, uint32_t i)
{
	return wire_get_u64(f->pages + (size_t)i * 8u);
}

static void stat_put(void *ctx, uint16_t i, const uint8_t *name, uint8_t len, uint64_t value)
{
	struct migp_stat *st = &((struct migp_stats_ok *)ctx)->stats[i];

	copy_str(st->name, name, len);
	st->value = value;
}

static int decode_payload(const struct migp_hdr *h, const uint8_t *p, struct migp_msg *m)
{
	uint32_t n = h->payload_len;

	switch (h->type) {
	case MIGP_PREPARE:
		return decode_prepare(p, n, &m->u.prepare);
	case MIGP_PREPARE_OK:
		return decode_prepare_ok(p, n, &m->u.prepare_ok);
	case MIGP_START:
		return decode_start(p, n, &m->u.start);
	case MIGP_STATUS:
	case MIGP_ABORT:
		return decode_ref(p, n, &m->u.ref);
	case MIGP_STATUS_OK:
		return decode_status_ok(p, n, &m->u.status_ok);
	case MIGP_OK:
	case MIGP_RESUMED:
	case MIGP_POSTCOPY_DONE:
		return decode_value(p, n, &m->u.value);
	case MIGP_ERROR:
		return frame_error_decode(&mig_frame, p, n, &m->u.error.code, &m->u.error.msg_len, m->u.error.msg);
	case MIGP_HELLO:
		return frame_hello_decode(&mig_frame, p, n, &m->u.hello.version_min, &m->u.hello.version_max,
					  &m->u.hello.features, &m->u.hello.name_len, m->u.hello.name);
	case MIGP_CHALLENGE:
		return frame_challenge_decode(p, n, &m->u.challenge.version, m->u.challenge.nonce);
	case MIGP_AUTH:
		return frame_auth_decode(p, n, m->u.auth.nonce, m->u.auth.mac);
	case MIGP_AUTH_OK:
		return decode_auth_ok(p, n, &m->u.auth_ok);
	case MIGP_LAYOUT:
		return decode_layout(p, n, &m->u.layout);
	case MIGP_LAYOUT_OK:
		return decode_layout_ok(p, n, &m->u.layout_ok);
	case MIGP_EXTENTS:
		return decode_extents(p, n, &m->u.extents);
	case MIGP_PAGE_MAP:
		return decode_page_map(p, n, &m->u.map);
	case MIGP_ROUND_END:
		return decode_round_end(p, n, &m->u.round_end);
	case MIGP_DEVSTATE:
		return decode_devstate(p, n, &m->u.devstate);
	case MIGP_SWITCHOVER:
		return decode_switchover(p, n, &m->u.switchover);
	case MIGP_STATS:
		return n == 0 ? MIG_E_OK : MIG_E_MALFORMED;
	case MIGP_STATS_OK:
		return frame_stats_decode(&mig_frame, p, n, stat_put, &m->u.stats_ok, &m->u.stats_ok.count);
	case MIGP_SUBHOST:
		return decode_subhost(p, n, &m->u.subhost);
	case MIGP_BIND:
		if (n != BIND_LEN)
			return MIG_E_MALFORMED;
		memcpy(m->u.bind.bind, p, BIND_LEN);
		return MIG_E_OK;
	case MIGP_CREDIT:
		return decode_credit(p, n, &m->u.credit);
	case MIGP_FETCH:
		return decode_fetch(p, n, &m->u.fetch);
	default:
		return MIG_E_UNKNOWN_TYPE;
	}
}

int migp_decode(const uint8_t *buf, size_t len, struct migp_msg *msg)
{
	int rc = migp_hdr_decode(buf, len, &msg->hdr);

	if (rc != MIG_E_OK)
		return rc;
	if (len - MIGP_HDR_LEN < msg->hdr.payload_len)
		return MIG_E_TRUNCATED;
	return decode_payload(&msg->hdr, buf + MIGP_HDR_LEN, msg);
}

/* ---------------------------------------------------------------- encoding */

static int begin(uint8_t type, uint64_t req, uint64_t payload_len, uint8_t *buf, size_t cap, uint8_t **p)
{
	int rc = frame_begin(&mig_frame, type, req, payload_len, payload_len, buf, cap);

	if (rc < 0)
		return rc;
	*p = buf + MIGP_HDR_LEN;
	memset(*p, 0, payload_len);
	return 0;
}

int migp_encode_prepare(uint64_t req, const struct migp_prepare *m, uint8_t *buf, size_t cap)
{
	int idl, hl[MIGP_SUBS_MAX], rc;
	uint64_t len;
	uint8_t *p;

	if (!m)
		return -MIG_E_MALFORMED;
	if (m->nsubs > MIGP_SUBS_MAX)
		return -MIG_E_TOO_LARGE;
	idl = id_length(m->id);
	if (idl < 0)
		return idl;
	len = PREPARE_FIXED + (uint64_t)idl;
	for (unsigned i = 0; i < m->nsubs; i++) {
		hl[i] = host_length(m->subs[i].host);
		if (hl[i] < 0)
			return hl[i];
		if (m->subs[i].port == 0)
			return -MIG_E_MALFORMED;
		len += SUB_FIXED + (uint64_t)hl[i];
	}
	rc = begin(MIGP_PREPARE, req, len, buf, cap, &p);
	if (rc)
		return rc;
	wire_put_u64(p, m->budget_bytes);
	p[8] = (uint8_t)idl;
	p[9] = m->nsubs;
	memcpy(p + PREPARE_FIXED, m->id, (size_t)idl);
	p += PREPARE_FIXED + idl;
	for (unsigned i = 0; i < m->nsubs; i++) {
		wire_put_u16(p, m->subs[i].port);
		p[2] = (uint8_t)hl[i];
		memcpy(p + SUB_FIXED, m->subs[i].host, (size_t)hl[i]);
		p += SUB_FIXED + hl[i];
	}
	return frame_total(len);
}

int migp_encode_prepare_ok(uint64_t req, const struct migp_prepare_ok *m, uint8_t *buf, size_t cap)
{
	int hl, rc;
	uint8_t *p;

	if (!m || m->ep.port == 0)
		return -MIG_E_MALFORMED;
	hl = host_length(m->ep.host);
	if (hl < 0)
		return hl;
	rc = begin(MIGP_PREPARE_OK, req, PREPARE_OK_FIXED + (uint64_t)hl, buf, cap, &p);
	if (rc)
		return rc;
	wire_put_u16(p, m->ep.port);
	p[2] = (uint8_t)hl;
	memcpy(p + 4, m->token, MIGP_TOKEN_LEN);
	memcpy(p + PREPARE_OK_FIXED, m->ep.host, (size_t)hl);
	return frame_total(PREPARE_OK_FIXED + (uint64_t)hl);
}

int migp_encode_start(uint64_t req, const struct migp_start *m, uint8_t *buf, size_t cap)
{
	int idl, hl, rc;
	uint8_t *p;

	if (!m || m->mode < 1 || m->mode > 4 || m->dest.port == 0)
		return -MIG_E_MALFORMED;
	idl = id_length(m->id);
	if (idl < 0)
		return idl;
	hl = host_length(m->dest.host);
	if (hl < 0)
		return hl;
	rc = begin(MIGP_START, req, START_FIXED + (uint64_t)idl + (uint64_t)hl, buf, cap, &p);
	if (rc)
		return rc;
	p[0] = m->mode;
	p[1] = (uint8_t)idl;
	p[2] = (uint8_t)hl;
	wire_put_u16(p + 4, m->dest.port);
	memcpy(p + 8, m->token, MIGP_TOKEN_LEN);
	memcpy(p + START_FIXED, m->id, (size_t)idl);
	memcpy(p + START_FIXED + idl, m->dest.host, (size_t)hl);
	return frame_total(START_FIXED + (uint64_t)idl + (uint64_t)hl);
}

static int encode_ref(uint8_t type, uint64_t req, const char *id, uint8_t *buf, size_t cap)
{
	int idl = id_length(id), rc;
	uint8_t *p;

	if (idl < 0)
		return idl;
	rc = begin(type, req, REF_FIXED + (uint64_t)idl, buf, cap, &p);
	if (rc)
		return rc;
	p[0] = (uint8_t)idl;
	memcpy(p + REF_FIXED, id, (size_t)idl);
	return frame_total(REF_FIXED + (uint64_t)idl);
}

int migp_encode_status(uint64_t req, const char *id, uint8_t *buf, size_t cap)
{
	return encode_ref(MIGP_STATUS, req, id, buf, cap);
}

int migp_encode_abort(uint64_t req, const char *id, uint8_t *buf, size_t cap)
{
	return encode_ref(MIGP_ABORT, req, id, buf, cap);
}

int migp_encode_status_ok(uint64_t req, const struct migp_status_ok *m, uint8_t *buf, size_t cap)
{
	size_t el;
	uint8_t *p;
	int rc;

	if (!m || m->phase > 8)
		return -MIG_E_MALFORMED;
	el = strnlen(m->error, MIGP_STATUS_ERR_MAX);
	for (size_t i = 0; i < el; i++)
		if ((uint8_t)m->error[i] < 0x20 || (uint8_t)m->error[i] > 0x7e)
			return -MIG_E_MALFORMED;
	rc = begin(MIGP_STATUS_OK, req, STATUS_OK_FIXED + el, buf, cap, &p);
	if (rc)
		return rc;
	p[0] = m->phase;
	wire_put_u32(p + 4, m->round);
	wire_put_u64(p + 8, m->pages_total);
	wire_put_u64(p + 16, m->pages_sent);
	wire_put_u64(p + 24, m->pages_skipped_unused);
	wire_put_u64(p + 32, m->pages_remaining);
	wire_put_u64(p + 40, m->pages_resent);
	wire_put_u64(p + 48, m->pages_to_subhosts);
	wire_put_u64(p + 56, m->bytes_sent);
	wire_put_u64(p + 64, m->postcopy_faults);
	wire_put_u64(p + 72, m->started_ns);
	wire_put_u64(p + 80, m->downtime_ns);
	wire_put_u64(p + 88, m->total_ns);
	wire_put_u32(p + 96, m->generation);
	wire_put_u16(p + 108, (uint16_t)el);
	memcpy(p + STATUS_OK_FIXED, m->error, el);
	return frame_total(STATUS_OK_FIXED + el);
}

static int encode_u64(uint8_t type, uint64_t req, uint64_t v, uint8_t *buf, size_t cap)
{
	uint8_t *p;
	int rc = begin(type, req, VALUE_LEN, buf, cap, &p);

	if (rc)
		return rc;
	wire_put_u64(p, v);
	return frame_total(VALUE_LEN);
}

int migp_encode_ok(uint64_t req, uint64_t value, uint8_t *buf, size_t cap)
{
	return encode_u64(MIGP_OK, req, value, buf, cap);
}

int migp_encode_resumed(uint64_t req, uint64_t downtime_ns, uint8_t *buf, size_t cap)
{
	return encode_u64(MIGP_RESUMED, req, downtime_ns, buf, cap);
}

int migp_encode_postcopy_done(uint64_t req, uint64_t pages_pushed, uint8_t *buf, size_t cap)
{
	return encode_u64(MIGP_POSTCOPY_DONE, req, pages_pushed, buf, cap);
}

int migp_encode_error(uint64_t req, uint32_t code, const char *msg, uint8_t *buf, size_t cap)
{
	return frame_error_encode(&mig_frame, req, code, msg, buf, cap);
}

int migp_encode_hello(uint64_t req, const char *name, uint8_t *buf, size_t cap)
{
	return frame_hello_encode(&mig_frame, req, name, MIGP_VERSION, MIGP_VERSION, buf, cap);
}

int migp_encode_challenge(uint64_t req, const uint8_t nonce[MIGP_NONCE_LEN], uint8_t *buf, size_t cap)
{
	return frame_challenge_encode(&mig_frame, req, MIGP_VERSION, nonce, buf, cap);
}

int migp_encode_auth(uint64_t req, const uint8_t nonce[MIGP_NONCE_LEN], const uint8_t mac[MIGP_MAC_LEN],
		     uint8_t *buf, size_t cap)
{
	return frame_auth_encode(&mig_frame, req, nonce, mac, buf, cap);
}

int migp_encode_auth_ok(uint64_t req, const struct migp_auth_ok *m, uint8_t *buf, size_t cap)
{
	uint8_t *p;
	int rc;

	if (!m || m->data_port == 0)
		return -MIG_E_MALFORMED;
	rc = begin(MIGP_AUTH_OK, req, AUTH_OK_LEN, buf, cap, &p);
	if (rc)
		return rc;
	memcpy(p, m->mac, MIGP_MAC_LEN);
	wire_put_u16(p + 32, m->data_port);
	memcpy(p + 40, m->bind, MIGP_TOKEN_LEN);
	return frame_total(AUTH_OK_LEN);
}

int migp_encode_layout(uint64_t req, const struct migp_layout *m, uint8_t *buf, size_t cap)
{
	uint64_t next = 0, len;
	uint8_t *p;
	int rc;

	if (!m || m->mode < 1 || m->mode > 4 || m->npages == 0 || m->pages_used > m->npages)
		return -MIG_E_MALFORMED;
	if (m->nregions > MIGP_REGIONS_MAX)
		return -MIG_E_TOO_LARGE;
	if (m->nregions == 0)
		return -MIG_E_MALFORMED;
	for (unsigned i = 0; i < m->nregions; i++) {
		const struct migp_region *r = &m->regions[i];

		if (r->size == 0 || r->size % 4096 || r->first_page != next || r->size / 4096 > m->npages - next)
			return -MIG_E_MALFORMED;
		next += r->size / 4096;
	}
	if (next != m->npages)
		return -MIG_E_MALFORMED;
	len = LAYOUT_FIXED + (uint64_t)m->nregions * REGION_LEN;
	rc = begin(MIGP_LAYOUT, req, len, buf, cap, &p);
	if (rc)
		return rc;
	wire_put_u64(p, m->npages);
	wire_put_u64(p + 8, m->pages_used);
	wire_put_u32(p + 16, m->generation);
	p[20] = m->mode;
	p[21] = m->nregions;
	for (unsigned i = 0; i < m->nregions; i++) {
		uint8_t *r = p + LAYOUT_FIXED + i * REGION_LEN;

		wire_put_u64(r, m->regions[i].gpa);
		wire_put_u64(r + 8, m->regions[i].size);
		wire_put_u64(r + 16, m->regions[i].first_page);
	}
	return frame_total(len);
}

int migp_encode_layout_ok(uint64_t req, const struct migp_layout_ok *m, uint8_t *buf, size_t cap)
{
	uint8_t *p;
	int rc;

	if (!m)
		return -MIG_E_MALFORMED;
	if (m->stage_slots > MIGP_STAGE_MAX)
		return -MIG_E_TOO_LARGE;
	if (m->stage_slots < MIGP_STAGE_MIN)
		return -MIG_E_MALFORMED;
	rc = begin(MIGP_LAYOUT_OK, req, LAYOUT_OK_LEN, buf, cap, &p);
	if (rc)
		return rc;
	wire_put_u32(p, m->dst_rkey);
	wire_put_u32(p + 4, m->stage_slots);
	wire_put_u64(p + 8, m->dst_base);
	wire_put_u64(p + 16, m->dst_pages);
	return frame_total(LAYOUT_OK_LEN);
}

int migp_encode_extents(uint64_t req, const struct migp_extent *e, uint16_t count, uint16_t first, uint16_t total,
			uint8_t *buf, size_t cap)
{
	uint64_t len;
	uint8_t *p;
	int rc;

	if (count > MIGP_EXTENTS_MSG || total > MIGP_EXTENTS_MAX)
		return -MIG_E_TOO_LARGE;
	if (count == 0 || !e || (uint32_t)first + count > total)
		return -MIG_E_MALFORMED;
	for (uint16_t i = 0; i < count; i++)
		if (e[i].sub >= MIGP_SUBS_MAX || e[i].length == 0 || e[i].length % 4096)
			return -MIG_E_MALFORMED;
	len = EXTENTS_FIXED + (uint64_t)count * EXTENT_LEN;
	rc = begin(MIGP_EXTENTS, req, len, buf, cap, &p);
	if (rc)
		return rc;
	wire_put_u16(p, count);
	wire_put_u16(p + 2, first);
	wire_put_u16(p + 4, total);
	for (uint16_t i = 0; i < count; i++) {
		uint8_t *q = p + EXTENTS_FIXED + (uint32_t)i * EXTENT_LEN;

		q[0] = e[i].sub;
		wire_put_u32(q + 4, e[i].extent_id);
		wire_put_u64(q + 8, e[i].length);
		memcpy(q + 16, e[i].token, MIGP_TOKEN_LEN);
	}
	return frame_total(len);
}

int migp_encode_page_map(uint64_t req, const struct migp_map_entry *e, uint32_t count, uint8_t *buf, size_t cap)
{
	uint64_t len;
	uint8_t *p;
	int rc;

	if (count > MIGP_MAP_MAX)
		return -MIG_E_TOO_LARGE;
	if (count == 0 || !e)
		return -MIG_E_MALFORMED;
	len = migp_page_map_len(count);
	rc = begin(MIGP_PAGE_MAP, req, len, buf, cap, &p);
	if (rc)
		return rc;
	wire_put_u32(p, count);
	for (uint32_t i = 0; i < count; i++) {
		uint8_t *q = p + MAP_FIXED + i * MIGP_MAP_ENTRY_LEN;

		wire_put_u64(q, e[i].page);
		wire_put_u32(q + 8, e[i].generation);
		q[12] = e[i].where;
		q[13] = e[i].sub;
		wire_put_u32(q + 16, e[i].extent);
		wire_put_u32(q + 20, e[i].slot);
		if (check_map_entry(q) != MIG_E_OK)
			return -MIG_E_MALFORMED;
	}
	return frame_total(len);
}

int migp_encode_round_end(uint64_t req, uint32_t round, uint64_t pages_dirty, uint8_t *buf, size_t cap)
{
	uint8_t *p;
	int rc = begin(MIGP_ROUND_END, req, ROUND_END_LEN, buf, cap, &p);

	if (rc)
		return rc;
	wire_put_u32(p, round);
	wire_put_u64(p + 8, pages_dirty);
	return frame_total(ROUND_END_LEN);
}

int migp_encode_devstate(uint64_t req, uint64_t total, uint64_t offset, const void *data, uint32_t len,
			 uint8_t *buf, size_t cap)
{
	uint8_t *p;
	int rc;

	if (total > MIGP_DEVSTATE_MAX || len > MIGP_DEVSTATE_CHUNK)
		return -MIG_E_TOO_LARGE;
	if (offset > total || len > total - offset || (len && !data))
		return -MIG_E_MALFORMED;
	rc = begin(MIGP_DEVSTATE, req, DEVSTATE_FIXED + (uint64_t)len, buf, cap, &p);
	if (rc)
		return rc;
	wire_put_u64(p, total);
	wire_put_u64(p + 8, offset);
	if (len)
		memcpy(p + DEVSTATE_FIXED, data, len);
	return frame_total(DEVSTATE_FIXED + (uint64_t)len);
}

int migp_encode_switchover(uint64_t req, uint32_t generation, uint64_t pages_at_source, uint8_t *buf, size_t cap)
{
	uint8_t *p;
	int rc = begin(MIGP_SWITCHOVER, req, SWITCHOVER_LEN, buf, cap, &p);

	if (rc)
		return rc;
	wire_put_u32(p, generation);
	wire_put_u64(p + 8, pages_at_source);
	return frame_total(SWITCHOVER_LEN);
}

int migp_encode_stats(uint64_t req, uint8_t *buf, size_t cap)
{
	return frame_encode_empty(&mig_frame, MIGP_STATS, req, buf, cap);
}

static void stat_get(const void *ctx, uint16_t i, const char **name, uint64_t *value)
{
	const struct migp_stat *st = &((const struct migp_stat *)ctx)[i];

	*name = st->name;
	*value = st->value;
}

int migp_encode_stats_ok(uint64_t req, const struct migp_stat *stats, uint16_t count, uint8_t *buf, size_t cap)
{
	return frame_stats_encode(&mig_frame, req, stat_get, stats, count, buf, cap);
}

int migp_encode_subhost(uint64_t req, const struct migp_subhost *m, uint8_t *buf, size_t cap)
{
	uint8_t *p;
	int hl, rc;

	if (!m || m->host.port == 0 || m->sub >= MIGP_SUBS_MAX)
		return -MIG_E_MALFORMED;
	hl = host_length(m->host.host);
	if (hl < 0)
		return hl;
	rc = begin(MIGP_SUBHOST, req, SUBHOST_FIXED + (uint64_t)hl, buf, cap, &p);
	if (rc)
		return rc;
	wire_put_u16(p, m->host.port);
	p[2] = m->sub;
	p[3] = (uint8_t)hl;
	memcpy(p + SUBHOST_FIXED, m->host.host, (size_t)hl);
	return frame_total(SUBHOST_FIXED + (uint64_t)hl);
}

int migp_encode_bind(uint64_t req, const uint8_t bind[MIGP_TOKEN_LEN], uint8_t *buf, size_t cap)
{
	uint8_t *p;
	int rc;

	if (!bind)
		return -MIG_E_MALFORMED;
	rc = begin(MIGP_BIND, req, BIND_LEN, buf, cap, &p);
	if (rc)
		return rc;
	memcpy(p, bind, BIND_LEN);
	return frame_total(BIND_LEN);
}

int migp_encode_credit(uint64_t req, uint32_t slots, uint8_t *buf, size_t cap)
{
	uint8_t *p;
	int rc;

	if (slots > MIGP_STAGE_MAX)
		return -MIG_E_TOO_LARGE;
	if (slots == 0)
		return -MIG_E_MALFORMED;
	rc = begin(MIGP_CREDIT, req, CREDIT_LEN, buf, cap, &p);
	if (rc)
		return rc;
	wire_put_u32(p, slots);
	return frame_total(CREDIT_LEN);
}

int migp_encode_fetch(uint64_t req, const uint64_t *pages, uint32_t count, uint32_t first_slot, uint8_t *buf,
		      size_t cap)
{
	uint8_t *p;
	int rc;

	if (count > MIGP_FETCH_MAX)
		return -MIG_E_TOO_LARGE;
	if (count == 0 || !pages || first_slot > MIGP_STAGE_MAX - count)
		return -MIG_E_MALFORMED;
	rc = begin(MIGP_FETCH, req, FETCH_FIXED + count * 8u, buf, cap, &p);
	if (rc)
		return rc;
	wire_put_u32(p, count);
	wire_put_u32(p + 4, first_slot);
	for (uint32_t i = 0; i < count; i++)
		wire_put_u64(p + FETCH_FIXED + i * 8u, pages[i]);
	return frame_total(FETCH_FIXED + count * 8u);
}

/* ---------------------------------------------------------------- naming */

static const char *const type_names[MIGP_TYPE_MAX + 1] = {
	[MIGP_PREPARE] = "PREPARE",       [MIGP_PREPARE_OK] = "PREPARE_OK", [MIGP_START] = "START",
	[MIGP_STATUS] = "STATUS",         [MIGP_STATUS_OK] = "STATUS_OK",   [MIGP_ABORT] = "ABORT",
	[MIGP_OK] = "OK",                 [MIGP_ERROR] = "ERROR",           [MIGP_HELLO] = "HELLO",
	[MIGP_CHALLENGE] = "CHALLENGE",   [MIGP_AUTH] = "AUTH",             [MIGP_AUTH_OK] = "AUTH_OK",
	[MIGP_LAYOUT] = "LAYOUT",         [MIGP_LAYOUT_OK] = "LAYOUT_OK",   [MIGP_EXTENTS] = "EXTENTS",
	[MIGP_PAGE_MAP] = "PAGE_MAP",     [MIGP_ROUND_END] = "ROUND_END",   [MIGP_DEVSTATE] = "DEVSTATE",
	[MIGP_SWITCHOVER] = "SWITCHOVER", [MIGP_RESUMED] = "RESUMED",       [MIGP_POSTCOPY_DONE] = "POSTCOPY_DONE",
	[MIGP_STATS] = "STATS",           [MIGP_STATS_OK] = "STATS_OK",     [MIGP_BIND] = "BIND",
	[MIGP_SUBHOST] = "SUBHOST",       [MIGP_CREDIT] = "CREDIT",         [MIGP_FETCH] = "FETCH",
};

const char *migp_type_name(uint8_t type)
{
	return type <= MIGP_TYPE_MAX && type_names[type] ? type_names[type] : "UNKNOWN";
}

static const char *const err_names[MIG_E_CODE_MAX + 1] = {
	[MIG_E_OK] = "ok",
	[MIG_E_TRUNCATED] = "truncated message",
	[MIG_E_BAD_MAGIC] = "bad magic (not the migration protocol)",
	[MIG_E_VERSION] = "unsupported protocol version",
	[MIG_E_UNKNOWN_TYPE] = "unknown message type",
	[MIG_E_BAD_FLAGS] = "bad header flags",
	[MIG_E_TOO_LARGE] = "length or count above the protocol limit",
	[MIG_E_MALFORMED] = "malformed message",
	[MIG_E_AUTH_FAILED] = "authentication failed",
	[MIG_E_NOT_AUTHENTICATED] = "not authenticated",
	[MIG_E_BAD_VM_ID] = "bad VM id",
	[MIG_E_BAD_HOST] = "bad host name",
	[MIG_E_UNKNOWN_VM] = "no such VM or migration",
	[MIG_E_EXISTS] = "a migration of this VM is already under way",
	[MIG_E_UNEXPECTED] = "unexpected message in this state",
	[MIG_E_BAD_LAYOUT] = "layout does not match the destination VM",
	[MIG_E_NO_SPACE] = "not enough memory at the destination and its sub-hosts",
	[MIG_E_BUSY] = "refused in this phase",
	[MIG_E_ABORTED] = "migration aborted",
	[MIG_E_PEER_LOST] = "peer lost",
	[MIG_E_INTERNAL] = "internal error",
	[MIG_E_REFUSED] = "peer not allowed",
};

const char *migp_errcode_str(uint32_t code)
{
	return code <= MIG_E_CODE_MAX ? err_names[code] : "unknown error";
}
