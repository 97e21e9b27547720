/*
 * Page-transport protocol codec: pure byte (de)serialisation, no I/O, no
 * allocation. See page.h for the header layout and the session.
 *
 * Payload layouts (little-endian, offsets from the start of the payload).
 * Every reserved field must be zero; fixed-size bodies must be exactly their
 * size.
 *
 *   HELLO      8 + n    u8 version_min, u8 version_max, u8 name_len (n),
 *                       u8 reserved, u32 features, name[n]
 *   CHALLENGE  36       u8 version, u8 reserved[3], nonce[32]
 *   AUTH       64       nonce[32], mac[32]
 *   AUTH_OK    56       mac[32], u64 session_id, u64 quota_bytes,
 *                       u32 max_data, u32 reserved
 *   ALLOC      16       u64 length, u32 flags, u32 reserved
 *   ALLOC_OK   24       u32 extent_id, u32 rkey, u64 base, u64 length
 *   FREE       8        u32 extent_id, u32 reserved         (FREE_OK alike)
 *   READ       8 + 16c  u32 count, u32 reserved, c x {u32 key, u32 length, u64 offset}
 *   WRITE      READ's layout, then sum(length) data bytes
 *   READ_DATA  8 + d    u32 count, u32 reserved, d data bytes
 *   WRITE_OK   8        u32 count, u32 reserved
 *   STATS      0
 *   STATS_OK   2 + ...  u16 count, count x {u8 name_len, name, u64 value}
 *   ERROR      6 + m    u32 code, u16 msg_len (m), msg[m]
 *   SHARE      8        u32 extent_id, u32 rights
 *   SHARE_OK   40       u32 extent_id, u32 rights, token[32]
 *   ATTACH     32       token[32]
 *   ATTACH_OK  32       u32 attach_id, u32 rkey, u64 base, u64 length,
 *                       u32 rights, u32 reserved
 *   DETACH     8        u32 attach_id, u32 reserved         (DETACH_OK alike)
 *   UNSHARE    8        u32 extent_id, u32 reserved
 *   UNSHARE_OK 8        u32 extent_id, u32 revoked
 *   KEEP       8        u32 extent_id, u32 reserved
 *   KEEP_OK    40       u32 extent_id, u32 reserved, token[32]
 *   CLAIM      32       token[32]                           (DISCARD alike)
 *   CLAIM_OK   24       ALLOC_OK's layout
 *   DISCARD_OK 8        u64 length (a multiple of 4096, > 0)
 *
 * The header, HELLO, CHALLENGE, AUTH, STATS_OK and ERROR are shared with the
 * other codecs: frame.c does them, from the page_frame descriptor below.
 *
 * Decoder codes beyond the header checks: a field above a protocol limit is
 * FERRY_E_TOO_LARGE, any other inconsistency (sizes that do not add up, zero
 * counts or lengths, bad characters, offset + length overflow, reserved
 * bits) is FERRY_E_MALFORMED; ALLOC's length not a multiple of 4096 is
 * FERRY_E_BAD_ALIGNMENT and a non-zero ALLOC flags word FERRY_E_BAD_FLAGS.
 * A rights word with bits beyond READ|WRITE is FERRY_E_BAD_FLAGS, an empty
 * one FERRY_E_MALFORMED; ATTACH_OK's (base, length) is checked like
 * ALLOC_OK's.
 */
#include "proto/page.h"
#include "proto/frame.h"
#include "proto/wire.h"

#include <stdbool.h>
#include <string.h>

#define AUTH_OK_LEN      56u
#define ALLOC_LEN        16u
#define ALLOC_OK_LEN     24u
#define FREE_LEN         8u
#define RW_FIXED         8u
#define WRITE_OK_LEN     8u
#define ALLOC_UNIT       4096u
#define SHARE_LEN        8u
#define SHARE_OK_LEN     40u
#define ATTACH_LEN       32u
#define ATTACH_OK_LEN    32u
#define ID_LEN           8u          /* DETACH(_OK), UNSHARE(_OK), KEEP */
#define KEEP_OK_LEN      40u
#define CLAIM_LEN        32u         /* CLAIM, DISCARD */
#define DISCARD_OK_LEN   8u

/* Types that travel with FERRY_PAGE_F_REPLY set: every reply, nothing else. */
#define REPLY_TYPES ((1u << FERRY_PAGE_CHALLENGE) | (1u << FERRY_PAGE_AUTH_OK) |      \
		     (1u << FERRY_PAGE_ALLOC_OK) | (1u << FERRY_PAGE_FREE_OK) |         \
		     (1u << FERRY_PAGE_READ_DATA) | (1u << FERRY_PAGE_WRITE_OK) |       \
		     (1u << FERRY_PAGE_STATS_OK) | (1u << FERRY_PAGE_ERROR) |           \
		     (1u << FERRY_PAGE_SHARE_OK) | (1u << FERRY_PAGE_ATTACH_OK) |       \
		     (1u << FERRY_PAGE_DETACH_OK) | (1u << FERRY_PAGE_UNSHARE_OK) |     \
		     (1u << FERRY_PAGE_KEEP_OK) | (1u << FERRY_PAGE_CLAIM_OK) |         \
		     (1u << FERRY_PAGE_DISCARD_OK))

/* ---------------------------------------------------------------- rules */

/*
 * Largest payload a header of @type may announce. Tighter than
 * FERRY_PAGE_MAX_PAYLOAD so that a transport that has only read the header
 * can refuse an oversized control message or READ before waiting for its
 * body.
 */
static uint32_t type_max_payload(uint8_t type)
{
	switch (type) {
	case FERRY_PAGE_READ:
		return RW_FIXED + FERRY_PAGE_MAX_IOV * FERRY_PAGE_IOV_LEN;
	case FERRY_PAGE_WRITE:
		return FERRY_PAGE_MAX_PAYLOAD;
	case FERRY_PAGE_READ_DATA:
		return RW_FIXED + FERRY_PAGE_MAX_DATA;
	default:
		return FERRY_PAGE_CTRL_MAX - FERRY_PAGE_HDR_LEN;
	}
}

static const struct frame_proto page_frame = {
	.magic = FERRY_PAGE_MAGIC,
	.version = FERRY_PAGE_VERSION,
	.type_max = FERRY_PAGE_TYPE_MAX,
	.known_flags = FERRY_PAGE_F_KNOWN,
	.reply_flag = FERRY_PAGE_F_REPLY,
	.reply_types = REPLY_TYPES,
	.max_payload = type_max_payload,
	.type_stats_ok = FERRY_PAGE_STATS_OK,
	.type_error = FERRY_PAGE_ERROR,
	.stats_max = FERRY_PAGE_MAX_STATS,
	.stat_name_max = FERRY_PAGE_STAT_NAME_MAX,
	.errmsg_max = FERRY_PAGE_ERRMSG_MAX,
	.type_hello = FERRY_PAGE_HELLO,
	.type_challenge = FERRY_PAGE_CHALLENGE,
	.type_auth = FERRY_PAGE_AUTH,
	.name_max = FERRY_PAGE_NAME_MAX,
};

/* The header and the shared bodies report frame.h's codes as our own. */
_Static_assert(FERRY_E_OK == FRAME_E_OK && FERRY_E_TRUNCATED == FRAME_E_TRUNCATED &&
		       FERRY_E_BAD_MAGIC == FRAME_E_BAD_MAGIC && FERRY_E_VERSION == FRAME_E_VERSION &&
		       FERRY_E_UNKNOWN_TYPE == FRAME_E_UNKNOWN_TYPE && FERRY_E_BAD_FLAGS == FRAME_E_BAD_FLAGS &&
		       FERRY_E_TOO_LARGE == FRAME_E_TOO_LARGE && FERRY_E_MALFORMED == FRAME_E_MALFORMED,
	       "page error codes 0..7 are frame.h's");
_Static_assert(FERRY_PAGE_HDR_LEN == FRAME_HDR_LEN, "page header is the frame header");
_Static_assert(FERRY_PAGE_NONCE_LEN == FRAME_NONCE_LEN && FERRY_PAGE_MAC_LEN == FRAME_MAC_LEN,
	       "page handshake is frame.h's");

static int check_iov(uint32_t length, uint64_t offset)
{
	if (length == 0)
		return FERRY_E_MALFORMED;
	if (length > FERRY_PAGE_MAX_DATA)
		return FERRY_E_TOO_LARGE;
	if (offset > UINT64_MAX - length)
		return FERRY_E_MALFORMED;
	return FERRY_E_OK;
}

static int check_alloc_length(uint64_t length)
{
	if (length == 0)
		return FERRY_E_MALFORMED;
	if (length % ALLOC_UNIT != 0)
		return FERRY_E_BAD_ALIGNMENT;
	return FERRY_E_OK;
}

static int check_extent(uint64_t base, uint64_t length)
{
	int rc = check_alloc_length(length);

	if (rc != FERRY_E_OK)
		return rc;
	if (base > UINT64_MAX - length)
		return FERRY_E_MALFORMED;
	return FERRY_E_OK;
}

static int check_count(uint32_t count)
{
	if (count == 0)
		return FERRY_E_MALFORMED;
	if (count > FERRY_PAGE_MAX_IOV)
		return FERRY_E_TOO_LARGE;
	return FERRY_E_OK;
}

static int check_max_data(uint32_t max_data)
{
	if (max_data == 0)
		return FERRY_E_MALFORMED;
	if (max_data > FERRY_PAGE_MAX_DATA)
		return FERRY_E_TOO_LARGE;
	return FERRY_E_OK;
}

static int check_rights(uint32_t rights)
{
	if (rights & ~FERRY_PAGE_SHARE_RIGHTS)
		return FERRY_E_BAD_FLAGS;
	if (rights == 0)
		return FERRY_E_MALFORMED;
	return FERRY_E_OK;
}

/* ---------------------------------------------------------------- decoding */

int ferry_page_hdr_decode(const uint8_t *buf, size_t len, struct ferry_page_hdr *hdr)
{
	struct frame_hdr h;
	int rc = frame_hdr_decode(&page_frame, buf, len, &h);

	if (rc != FERRY_E_OK)
		return rc;
	hdr->type = h.type;
	hdr->flags = h.flags;
	hdr->request_id = h.request_id;
	hdr->payload_len = h.payload_len;
	return FERRY_E_OK;
}

static int decode_hello(const uint8_t *p, uint32_t n, struct ferry_page_hello *m)
{
	return frame_hello_decode(&page_frame, p, n, &m->version_min, &m->version_max, &m->features, &m->name_len,
				  m->name);
}

static int decode_challenge(const uint8_t *p, uint32_t n, struct ferry_page_challenge *m)
{
	return frame_challenge_decode(p, n, &m->version, m->nonce);
}

static int decode_auth(const uint8_t *p, uint32_t n, struct ferry_page_auth *m)
{
	return frame_auth_decode(p, n, m->nonce, m->mac);
}

static int decode_auth_ok(const uint8_t *p, uint32_t n, struct ferry_page_auth_ok *m)
{
	int rc;

	if (n != AUTH_OK_LEN || wire_get_u32(p + 52) != 0)
		return FERRY_E_MALFORMED;
	rc = check_max_data(wire_get_u32(p + 48));
	if (rc != FERRY_E_OK)
		return rc;
	memcpy(m->mac, p, FERRY_PAGE_MAC_LEN);
	m->session_id = wire_get_u64(p + 32);
	m->quota_bytes = wire_get_u64(p + 40);
	m->max_data = wire_get_u32(p + 48);
	return FERRY_E_OK;
}

static int decode_alloc(const uint8_t *p, uint32_t n, struct ferry_page_alloc *m)
{
	int rc;

	if (n != ALLOC_LEN || wire_get_u32(p + 12) != 0)
		return FERRY_E_MALFORMED;
	rc = check_alloc_length(wire_get_u64(p));
	if (rc != FERRY_E_OK)
		return rc;
	if (wire_get_u32(p + 8) != 0)
		return FERRY_E_BAD_FLAGS;
	m->length = wire_get_u64(p);
	m->flags = 0;
	return FERRY_E_OK;
}

static int decode_alloc_ok(const uint8_t *p, uint32_t n, struct ferry_page_extent *m)
{
	if (n != ALLOC_OK_LEN)
		return FERRY_E_MALFORMED;
	m->extent_id = wire_get_u32(p);
	m->rkey = wire_get_u32(p + 4);
	m->base = wire_get_u64(p + 8);
	m->length = wire_get_u64(p + 16);
	return check_extent(m->base, m->length);
}

static int decode_free(const uint8_t *p, uint32_t n, struct ferry_page_free *m)
{
	if (n != FREE_LEN || wire_get_u32(p + 4) != 0)
		return FERRY_E_MALFORMED;
	m->extent_id = wire_get_u32(p);
	return FERRY_E_OK;
}

static int decode_read_data(const uint8_t *p, uint32_t n, struct ferry_page_rw *rw)
{
	int rc;

	if (n < RW_FIXED)
		return FERRY_E_MALFORMED;
	rc = check_count(wire_get_u32(p));
	if (rc != FERRY_E_OK)
		return rc;
	if (wire_get_u32(p + 4) != 0)
		return FERRY_E_MALFORMED;
	/* Also enforced by the header limit; kept so this stays safe alone. */
	if (n - RW_FIXED > FERRY_PAGE_MAX_DATA)
		return FERRY_E_TOO_LARGE;
	rw->count = wire_get_u32(p);
	rw->entries = NULL;
	rw->data_len = n - RW_FIXED;
	rw->data = p + RW_FIXED;
	return FERRY_E_OK;
}

static int decode_write_ok(const uint8_t *p, uint32_t n, struct ferry_page_write_ok *m)
{
	int rc;

	if (n != WRITE_OK_LEN || wire_get_u32(p + 4) != 0)
		return FERRY_E_MALFORMED;
	rc = check_count(wire_get_u32(p));
	if (rc != FERRY_E_OK)
		return rc;
	m->count = wire_get_u32(p);
	return FERRY_E_OK;
}

static int decode_stats(uint32_t n)
{
	return n == 0 ? FERRY_E_OK : FERRY_E_MALFORMED;
}

static void stat_put(void *ctx, uint16_t i, const uint8_t *name, uint8_t len, uint64_t value)
{
	struct ferry_page_stat *st = &((struct ferry_page_stats_ok *)ctx)->stats[i];

	memcpy(st->name, name, len);
	st->name[len] = '\0';
	st->value = value;
}

static int decode_stats_ok(const uint8_t *p, uint32_t n, struct ferry_page_stats_ok *m)
{
	return frame_stats_decode(&page_frame, p, n, stat_put, m, &m->count);
}

static int decode_error(const uint8_t *p, uint32_t n, struct ferry_page_error *m)
{
	return frame_error_decode(&page_frame, p, n, &m->code, &m->msg_len, m->msg);
}

static int decode_share(const uint8_t *p, uint32_t n, struct ferry_page_share *m)
{
	if (n != SHARE_LEN)
		return FERRY_E_MALFORMED;
	m->extent_id = wire_get_u32(p);
	m->rights = wire_get_u32(p + 4);
	return check_rights(m->rights);
}

static int decode_share_ok(const uint8_t *p, uint32_t n, struct ferry_page_share_ok *m)
{
	if (n != SHARE_OK_LEN)
		return FERRY_E_MALFORMED;
	m->extent_id = wire_get_u32(p);
	m->rights = wire_get_u32(p + 4);
	memcpy(m->token, p + 8, FERRY_PAGE_TOKEN_LEN);
	return check_rights(m->rights);
}

static int decode_attach(const uint8_t *p, uint32_t n, struct ferry_page_attach *m)
{
	if (n != ATTACH_LEN)
		return FERRY_E_MALFORMED;
	memcpy(m->token, p, FERRY_PAGE_TOKEN_LEN);
	return FERRY_E_OK;
}

static int decode_attach_ok(const uint8_t *p, uint32_t n, struct ferry_page_attach_ok *m)
{
	int rc;

	if (n != ATTACH_OK_LEN || wire_get_u32(p + 28) != 0)
		return FERRY_E_MALFORMED;
	m->attach_id = wire_get_u32(p);
	m->rkey = wire_get_u32(p + 4);
	m->base = wire_get_u64(p + 8);
	m->length = wire_get_u64(p + 16);
	m->rights = wire_get_u32(p + 24);
	rc = check_extent(m->base, m->length);
	if (rc != FERRY_E_OK)
		return rc;
	return check_rights(m->rights);
}

static int decode_detach(const uint8_t *p, uint32_t n, struct ferry_page_detach *m)
{
	if (n != ID_LEN || wire_get_u32(p + 4) != 0)
		return FERRY_E_MALFORMED;
	m->attach_id = wire_get_u32(p);
	return FERRY_E_OK;
}

static int decode_unshare(uint8_t type, const uint8_t *p, uint32_t n, struct ferry_page_unshare *m)
{
	if (n != ID_LEN)
		return FERRY_E_MALFORMED;
	m->extent_id = wire_get_u32(p);
	m->revoked = wire_get_u32(p + 4);
	/* The request's second word is reserved; the reply's is the count. */
	if (type == FERRY_PAGE_UNSHARE && m->revoked != 0)
		return FERRY_E_MALFORMED;
	return FERRY_E_OK;
}

static int decode_keep(const uint8_t *p, uint32_t n, struct ferry_page_keep *m)
{
	if (n != ID_LEN || wire_get_u32(p + 4) != 0)
		return FERRY_E_MALFORMED;
	m->extent_id = wire_get_u32(p);
	return FERRY_E_OK;
}

static int decode_keep_ok(const uint8_t *p, uint32_t n, struct ferry_page_keep *m)
{
	if (n != KEEP_OK_LEN || wire_get_u32(p + 4) != 0)
		return FERRY_E_MALFORMED;
	m->extent_id = wire_get_u32(p);
	memcpy(m->token, p + 8, FERRY_PAGE_TOKEN_LEN);
	return FERRY_E_OK;
}

static int decode_claim(const uint8_t *p, uint32_t n, struct ferry_page_claim *m)
{
	if (n != CLAIM_LEN)
		return FERRY_E_MALFORMED;
	memcpy(m->token, p, FERRY_PAGE_TOKEN_LEN);
	return FERRY_E_OK;
}

static int decode_discard_ok(const uint8_t *p, uint32_t n, struct ferry_page_discard_ok *m)
{
	if (n != DISCARD_OK_LEN)
		return FERRY_E_MALFORMED;
	m->length = wire_get_u64(p);
	return check_alloc_length(m->length);
}

static int decode_rw(uint8_t type, const uint8_t *p, uint32_t n, struct ferry_page_rw *rw)
{
	int rc = ferry_page_rw_decode(type, n, p, n, rw);

	if (rc != FERRY_E_OK)
		return rc;
	if (type == FERRY_PAGE_WRITE)
		rw->data = p + RW_FIXED + (size_t)rw->count * FERRY_PAGE_IOV_LEN;
	return FERRY_E_OK;
}

int ferry_page_decode(const uint8_t *buf, size_t len, struct ferry_page_msg *msg)
{
	const uint8_t *p = buf + FERRY_PAGE_HDR_LEN;
	uint32_t n;
	int rc;

	rc = ferry_page_hdr_decode(buf, len, &msg->hdr);
	if (rc != FERRY_E_OK)
		return rc;
	n = msg->hdr.payload_len;
	if (len - FERRY_PAGE_HDR_LEN < n)
		return FERRY_E_TRUNCATED;

	switch (msg->hdr.type) {
	case FERRY_PAGE_HELLO:
		return decode_hello(p, n, &msg->u.hello);
	case FERRY_PAGE_CHALLENGE:
		return decode_challenge(p, n, &msg->u.challenge);
	case FERRY_PAGE_AUTH:
		return decode_auth(p, n, &msg->u.auth);
	case FERRY_PAGE_AUTH_OK:
		return decode_auth_ok(p, n, &msg->u.auth_ok);
	case FERRY_PAGE_ALLOC:
		return decode_alloc(p, n, &msg->u.alloc);
	case FERRY_PAGE_ALLOC_OK:
		return decode_alloc_ok(p, n, &msg->u.alloc_ok);
	case FERRY_PAGE_FREE:
	case FERRY_PAGE_FREE_OK:
		return decode_free(p, n, &msg->u.free);
	case FERRY_PAGE_READ:
	case FERRY_PAGE_WRITE:
		return decode_rw(msg->hdr.type, p, n, &msg->u.rw);
	case FERRY_PAGE_READ_DATA:
		return decode_read_data(p, n, &msg->u.rw);
	case FERRY_PAGE_WRITE_OK:
		return decode_write_ok(p, n, &msg->u.write_ok);
	case FERRY_PAGE_STATS:
		return decode_stats(n);
	case FERRY_PAGE_STATS_OK:
		return decode_stats_ok(p, n, &msg->u.stats_ok);
	case FERRY_PAGE_ERROR:
		return decode_error(p, n, &msg->u.error);
	case FERRY_PAGE_SHARE:
		return decode_share(p, n, &msg->u.share);
	case FERRY_PAGE_SHARE_OK:
		return decode_share_ok(p, n, &msg->u.share_ok);
	case FERRY_PAGE_ATTACH:
		return decode_attach(p, n, &msg->u.attach);
	case FERRY_PAGE_ATTACH_OK:
		return decode_attach_ok(p, n, &msg->u.attach_ok);
	case FERRY_PAGE_DETACH:
	case FERRY_PAGE_DETACH_OK:
		return decode_detach(p, n, &msg->u.detach);
	case FERRY_PAGE_UNSHARE:
	case FERRY_PAGE_UNSHARE_OK:
		return decode_unshare(msg->hdr.type, p, n, &msg->u.unshare);
	case FERRY_PAGE_KEEP:
		return decode_keep(p, n, &msg->u.keep);
	case FERRY_PAGE_KEEP_OK:
		return decode_keep_ok(p, n, &msg->u.keep);
	case FERRY_PAGE_CLAIM:
	case FERRY_PAGE_DISCARD:
		return decode_claim(p, n, &msg->u.claim);
	case FERRY_PAGE_CLAIM_OK:
		return decode_alloc_ok(p, n, &msg->u.claim_ok);
	case FERRY_PAGE_DISCARD_OK:
		return decode_discard_ok(p, n, &msg->u.discard_ok);
	default:
		return FERRY_E_UNKNOWN_TYPE; /* unreachable: the header check covers it */
	}
}

int ferry_page_rw_decode(uint8_t type, uint32_t payload_len, const uint8_t *vec, size_t vec_len,
			 struct ferry_page_rw *rw)
{
	uint64_t vec_bytes, expect, sum = 0;
	uint32_t count;
	int rc;

	if (type != FERRY_PAGE_READ && type != FERRY_PAGE_WRITE)
		return FERRY_E_UNKNOWN_TYPE;
	if (payload_len > type_max_payload(type))
		return FERRY_E_TOO_LARGE;
	if (payload_len < RW_FIXED)
		return FERRY_E_MALFORMED;
	/* Bytes past the payload belong to the next message, not to us. */
	if (vec_len > payload_len)
		vec_len = payload_len;
	if (!vec || vec_len < RW_FIXED)
		return FERRY_E_TRUNCATED;

	count = wire_get_u32(vec);
	rc = check_count(count);
	if (rc != FERRY_E_OK)
		return rc;
	if (wire_get_u32(vec + 4) != 0)
		return FERRY_E_MALFORMED;
	vec_bytes = RW_FIXED + (uint64_t)count * FERRY_PAGE_IOV_LEN;
	if (payload_len < vec_bytes)
		return FERRY_E_MALFORMED;
	if (vec_len < vec_bytes)
		return FERRY_E_TRUNCATED;

	/* At most MAX_IOV entries of at most MAX_DATA each: sum cannot wrap. */
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *e = vec + RW_FIXED + (size_t)i * FERRY_PAGE_IOV_LEN;
		uint32_t length = wire_get_u32(e + 4);

		rc = check_iov(length, wire_get_u64(e + 8));
		if (rc != FERRY_E_OK)
			return rc;
		sum += length;
	}
	if (sum > FERRY_PAGE_MAX_DATA)
		return FERRY_E_TOO_LARGE;
	expect = vec_bytes + (type == FERRY_PAGE_WRITE ? sum : 0);
	if (payload_len != expect)
		return FERRY_E_MALFORMED;

	rw->count = count;
	rw->entries = vec + RW_FIXED;
	rw->data_len = sum;
	rw->data = NULL;
	return FERRY_E_OK;
}

void ferry_page_rw_entry(const struct ferry_page_rw *rw, uint32_t i, struct ferry_page_iov *iov)
{
	const uint8_t *e = rw->entries + (size_t)i * FERRY_PAGE_IOV_LEN;

	iov->key = wire_get_u32(e);
	iov->length = wire_get_u32(e + 4);
	iov->offset = wire_get_u64(e + 8);
}

/* ---------------------------------------------------------------- encoding */

/*
 * Check that a message of @payload_len fits in @cap, write its header and
 * return 0, or a negative code.
 */
static int begin(uint8_t type, uint64_t req, uint64_t payload_len, uint8_t *buf, size_t cap)
{
	return frame_begin(&page_frame, type, req, payload_len, payload_len, buf, cap);
}

int ferry_page_encode_hdr(uint8_t type, uint16_t flags, uint64_t request_id, uint32_t payload_len,
			  uint8_t *buf, size_t cap)
{
	if (!frame_type_valid(&page_frame, type) || (flags & ~FERRY_PAGE_F_KNOWN))
		return -FERRY_E_MALFORMED;
	/* The reply bit follows from the type; only a contradiction is an error. */
	if ((flags & FERRY_PAGE_F_REPLY) && !frame_type_is_reply(&page_frame, type))
		return -FERRY_E_MALFORMED;
	if (payload_len > type_max_payload(type))
		return -FERRY_E_TOO_LARGE;
	if (!buf)
		return -FERRY_E_MALFORMED;
	if (cap < FERRY_PAGE_HDR_LEN)
		return -FERRY_E_TOO_LARGE;
	frame_hdr_encode(&page_frame, buf, type, request_id, payload_len);
	return FERRY_PAGE_HDR_LEN;
}

int ferry_page_encode_hello(uint64_t req, const char *name, uint8_t vmin, uint8_t vmax, uint8_t *buf, size_t cap)
{
	return frame_hello_encode(&page_frame, req, name, vmin, vmax, buf, cap);
}

int ferry_page_encode_challenge(uint64_t req, uint8_t version, const uint8_t nonce[FERRY_PAGE_NONCE_LEN],
				uint8_t *buf, size_t cap)
{
	return frame_challenge_encode(&page_frame, req, version, nonce, buf, cap);
}

int ferry_page_encode_auth(uint64_t req, const uint8_t nonce[FERRY_PAGE_NONCE_LEN],
			   const uint8_t mac[FERRY_PAGE_MAC_LEN], uint8_t *buf, size_t cap)
{
	return frame_auth_encode(&page_frame, req, nonce, mac, buf, cap);
}

int ferry_page_encode_auth_ok(uint64_t req, const struct ferry_page_auth_ok *ok, uint8_t *buf, size_t cap)
{
	int rc;

	if (!ok)
		return -FERRY_E_MALFORMED;
	rc = check_max_data(ok->max_data);
	if (rc != FERRY_E_OK)
		return -rc;
	rc = begin(FERRY_PAGE_AUTH_OK, req, AUTH_OK_LEN, buf, cap);
	if (rc < 0)
		return rc;
	buf += FERRY_PAGE_HDR_LEN;
	memcpy(buf, ok->mac, FERRY_PAGE_MAC_LEN);
	wire_put_u64(buf + 32, ok->session_id);
	wire_put_u64(buf + 40, ok->quota_bytes);
	wire_put_u32(buf + 48, ok->max_data);
	wire_put_u32(buf + 52, 0);
	return frame_total(AUTH_OK_LEN);
}

int ferry_page_encode_alloc(uint64_t req, uint64_t length, uint32_t flags, uint8_t *buf, size_t cap)
{
	int rc;

	/* Encoders report only TOO_LARGE / MALFORMED (page.h), so alignment is MALFORMED here. */
	if (check_alloc_length(length) != FERRY_E_OK || flags != 0)
		return -FERRY_E_MALFORMED;
	rc = begin(FERRY_PAGE_ALLOC, req, ALLOC_LEN, buf, cap);
	if (rc < 0)
		return rc;
	buf += FERRY_PAGE_HDR_LEN;
	wire_put_u64(buf, length);
	wire_put_u32(buf + 8, flags);
	wire_put_u32(buf + 12, 0);
	return frame_total(ALLOC_LEN);
}

/* ALLOC_OK and CLAIM_OK: one extent. */
static int encode_extent(uint8_t type, uint64_t req, const struct ferry_page_extent *ext, uint8_t *buf, size_t cap)
{
	int rc;

	if (!ext || check_extent(ext->base, ext->length) != FERRY_E_OK)
		return -FERRY_E_MALFORMED;
	rc = begin(type, req, ALLOC_OK_LEN, buf, cap);
	if (rc < 0)
		return rc;
	buf += FERRY_PAGE_HDR_LEN;
	wire_put_u32(buf, ext->extent_id);
	wire_put_u32(buf + 4, ext->rkey);
	wire_put_u64(buf + 8, ext->base);
	wire_put_u64(buf + 16, ext->length);
	return frame_total(ALLOC_OK_LEN);
}

int ferry_page_encode_alloc_ok(uint64_t req, const struct ferry_page_extent *ext, uint8_t *buf, size_t cap)
{
	return encode_extent(FERRY_PAGE_ALLOC_OK, req, ext, buf, cap);
}

static int encode_free(uint8_t type, uint64_t req, uint32_t extent_id, uint8_t *buf, size_t cap)
{
	int rc = begin(type, req, FREE_LEN, buf, cap);

	if (rc < 0)
		return rc;
	buf += FERRY_PAGE_HDR_LEN;
	wire_put_u32(buf, extent_id);
	wire_put_u32(buf + 4, 0);
	return frame_total(FREE_LEN);
}

int ferry_page_encode_free(uint64_t req, uint32_t extent_id, uint8_t *buf, size_t cap)
{
	return encode_free(FERRY_PAGE_FREE, req, extent_id, buf, cap);
}

int ferry_page_encode_free_ok(uint64_t req, uint32_t extent_id, uint8_t *buf, size_t cap)
{
	return encode_free(FERRY_PAGE_FREE_OK, req, extent_id, buf, cap);
}

int ferry_page_encode_stats(uint64_t req, uint8_t *buf, size_t cap)
{
	return frame_encode_empty(&page_frame, FERRY_PAGE_STATS, req, buf, cap);
}

static void stat_get(const void *ctx, uint16_t i, const char **name, uint64_t *value)
{
	const struct ferry_page_stat *st = (const struct ferry_page_stat *)ctx + i;

	*name = st->name;
	*value = st->value;
}

int ferry_page_encode_stats_ok(uint64_t req, const struct ferry_page_stat *stats, uint16_t count,
			       uint8_t *buf, size_t cap)
{
	return frame_stats_encode(&page_frame, req, stat_get, stats, count, buf, cap);
}

int ferry_page_encode_error(uint64_t req, uint32_t code, const char *msg, uint8_t *buf, size_t cap)
{
	return frame_error_encode(&page_frame, req, code, msg, buf, cap);
}

int ferry_page_encode_write_ok(uint64_t req, uint32_t count, uint8_t *buf, size_t cap)
{
	int rc = check_count(count);

	if (rc != FERRY_E_OK)
		return -rc;
	rc = begin(FERRY_PAGE_WRITE_OK, req, WRITE_OK_LEN, buf, cap);
	if (rc < 0)
		return rc;
	buf += FERRY_PAGE_HDR_LEN;
	wire_put_u32(buf, count);
	wire_put_u32(buf + 4, 0);
	return frame_total(WRITE_OK_LEN);
}

/* Two u32 words: DETACH(_OK), UNSHARE(_OK) and SHARE share this layout. */
static int encode_two(uint8_t type, uint64_t req, uint32_t a, uint32_t b, uint8_t *buf, size_t cap)
{
	int rc = begin(type, req, ID_LEN, buf, cap);

	if (rc < 0)
		return rc;
	buf += FERRY_PAGE_HDR_LEN;
	wire_put_u32(buf, a);
	wire_put_u32(buf + 4, b);
	return frame_total(ID_LEN);
}

int ferry_page_encode_share(uint64_t req, uint32_t extent_id, uint32_t rights, uint8_t *buf, size_t cap)
{
	if (check_rights(rights) != FERRY_E_OK)
		return -FERRY_E_MALFORMED;
	return encode_two(FERRY_PAGE_SHARE, req, extent_id, rights, buf, cap);
}

int ferry_page_encode_share_ok(uint64_t req, const struct ferry_page_share_ok *ok, uint8_t *buf, size_t cap)
{
	int rc;

	if (!ok || check_rights(ok->rights) != FERRY_E_OK)
		return -FERRY_E_MALFORMED;
	rc = begin(FERRY_PAGE_SHARE_OK, req, SHARE_OK_LEN, buf, cap);
	if (rc < 0)
		return rc;
	buf += FERRY_PAGE_HDR_LEN;
	wire_put_u32(buf, ok->extent_id);
	wire_put_u32(buf + 4, ok->rights);
	memcpy(buf + 8, ok->token, FERRY_PAGE_TOKEN_LEN);
	return frame_total(SHARE_OK_LEN);
}

int ferry_page_encode_attach(uint64_t req, const uint8_t token[FERRY_PAGE_TOKEN_LEN], uint8_t *buf, size_t cap)
{
	int rc;

	if (!token)
		return -FERRY_E_MALFORMED;
	rc = begin(FERRY_PAGE_ATTACH, req, ATTACH_LEN, buf, cap);
	if (rc < 0)
		return rc;
	memcpy(buf + FERRY_PAGE_HDR_LEN, token, FERRY_PAGE_TOKEN_LEN);
	return frame_total(ATTACH_LEN);
}

int ferry_page_encode_attach_ok(uint64_t req, const struct ferry_page_attach_ok *ok, uint8_t *buf, size_t cap)
{
	int rc;

	if (!ok || check_extent(ok->base, ok->length) != FERRY_E_OK || check_rights(ok->rights) != FERRY_E_OK)
		return -FERRY_E_MALFORMED;
	rc = begin(FERRY_PAGE_ATTACH_OK, req, ATTACH_OK_LEN, buf, cap);
	if (rc < 0)
		return rc;
	buf += FERRY_PAGE_HDR_LEN;
	wire_put_u32(buf, ok->attach_id);
	wire_put_u32(buf + 4, ok->rkey);
	wire_put_u64(buf + 8, ok->base);
	wire_put_u64(buf + 16, ok->length);
	wire_put_u32(buf + 24, ok->rights);
	wire_put_u32(buf + 28, 0);
	return frame_total(ATTACH_OK_LEN);
}

int ferry_page_encode_detach(uint64_t req, uint32_t attach_id, uint8_t *buf, size_t cap)
{
	return encode_two(FERRY_PAGE_DETACH, req, attach_id, 0, buf, cap);
}

int ferry_page_encode_detach_ok(uint64_t req, uint32_t attach_id, uint8_t *buf, size_t cap)
{
	return encode_two(FERRY_PAGE_DETACH_OK, req, attach_id, 0, buf, cap);
}

int ferry_page_encode_unshare(uint64_t req, uint32_t extent_id, uint8_t *buf, size_t cap)
{
	return encode_two(FERRY_PAGE_UNSHARE, req, extent_id, 0, buf, cap);
}

int ferry_page_encode_unshare_ok(uint64_t req, uint32_t extent_id, uint32_t revoked, uint8_t *buf, size_t cap)
{
	return encode_two(FERRY_PAGE_UNSHARE_OK, req, extent_id, revoked, buf, cap);
}

int ferry_page_encode_keep(uint64_t req, uint32_t extent_id, uint8_t *buf, size_t cap)
{
	return encode_two(FERRY_PAGE_KEEP, req, extent_id, 0, buf, cap);
}

int ferry_page_encode_keep_ok(uint64_t req, uint32_t extent_id, const uint8_t token[FERRY_PAGE_TOKEN_LEN],
			      uint8_t *buf, size_t cap)
{
	int rc;

	if (!token)
		return -FERRY_E_MALFORMED;
	rc = begin(FERRY_PAGE_KEEP_OK, req, KEEP_OK_LEN, buf, cap);
	if (rc < 0)
		return rc;
	buf += FERRY_PAGE_HDR_LEN;
	wire_put_u32(buf, extent_id);
	wire_put_u32(buf + 4, 0);
	memcpy(buf + 8, token, FERRY_PAGE_TOKEN_LEN);
	return frame_total(KEEP_OK_LEN);
}

/* CLAIM and DISCARD: the token alone. */
static int encode_token(uint8_t type, uint64_t req, const uint8_t token[FERRY_PAGE_TOKEN_LEN], uint8_t *buf,
			size_t cap)
{
	int rc;

	if (!token)
		return -FERRY_E_MALFORMED;
	rc = begin(type, req, CLAIM_LEN, buf, cap);
	if (rc < 0)
		return rc;
	memcpy(buf + FERRY_PAGE_HDR_LEN, token, FERRY_PAGE_TOKEN_LEN);
	return frame_total(CLAIM_LEN);
}

int ferry_page_encode_claim(uint64_t req, const uint8_t token[FERRY_PAGE_TOKEN_LEN], uint8_t *buf, size_t cap)
{
	return encode_token(FERRY_PAGE_CLAIM, req, token, buf, cap);
}

int ferry_page_encode_claim_ok(uint64_t req, const struct ferry_page_extent *ext, uint8_t *buf, size_t cap)
{
	return encode_extent(FERRY_PAGE_CLAIM_OK, req, ext, buf, cap);
}

int ferry_page_encode_discard(uint64_t req, const uint8_t token[FERRY_PAGE_TOKEN_LEN], uint8_t *buf, size_t cap)
{
	return encode_token(FERRY_PAGE_DISCARD, req, token, buf, cap);
}

int ferry_page_encode_discard_ok(uint64_t req, uint64_t length, uint8_t *buf, size_t cap)
{
	int rc;

	if (check_alloc_length(length) != FERRY_E_OK)
		return -FERRY_E_MALFORMED;
	rc = begin(FERRY_PAGE_DISCARD_OK, req, DISCARD_OK_LEN, buf, cap);
	if (rc < 0)
		return rc;
	wire_put_u64(buf + FERRY_PAGE_HDR_LEN, length);
	return frame_total(DISCARD_OK_LEN);
}

int ferry_page_encode_rw_prefix(uint8_t type, uint64_t req, const struct ferry_page_iov *iov, uint32_t count,
				uint64_t data_len, uint8_t *buf, size_t cap)
{
	uint64_t vec_bytes, sum = 0;
	uint8_t *p;
	int rc;

	if (type != FERRY_PAGE_READ && type != FERRY_PAGE_WRITE)
		return -FERRY_E_MALFORMED;
	rc = check_count(count);
	if (rc != FERRY_E_OK)
		return -rc;
	if (!iov)
		return -FERRY_E_MALFORMED;
	for (uint32_t i = 0; i < count; i++) {
		rc = check_iov(iov[i].length, iov[i].offset);
		if (rc != FERRY_E_OK)
			return -rc;
		sum += iov[i].length;
	}
	if (sum > FERRY_PAGE_MAX_DATA)
		return -FERRY_E_TOO_LARGE;
	if (data_len != (type == FERRY_PAGE_WRITE ? sum : 0))
		return -FERRY_E_MALFORMED;

	vec_bytes = RW_FIXED + (uint64_t)count * FERRY_PAGE_IOV_LEN;
	if (!buf)
		return -FERRY_E_MALFORMED;
	if (cap < FERRY_PAGE_HDR_LEN || cap - FERRY_PAGE_HDR_LEN < vec_bytes)
		return -FERRY_E_TOO_LARGE;
	/* Only the vector goes into buf; the header announces the data too. */
	frame_hdr_encode(&page_frame, buf, type, req, (uint32_t)(vec_bytes + data_len));
	p = buf + FERRY_PAGE_HDR_LEN;
	wire_put_u32(p, count);
	wire_put_u32(p + 4, 0);
	p += RW_FIXED;
	for (uint32_t i = 0; i < count; i++, p += FERRY_PAGE_IOV_LEN) {
		wire_put_u32(p, iov[i].key);
		wire_put_u32(p + 4, iov[i].length);
		wire_put_u64(p + 8, iov[i].offset);
	}
	return frame_total(vec_bytes);
}

int ferry_page_encode_read_data_prefix(uint64_t req, uint32_t count, uint64_t data_len, uint8_t *buf, size_t cap)
{
	int rc = check_count(count);

	if (rc != FERRY_E_OK)
		return -rc;
	if (data_len > FERRY_PAGE_MAX_DATA)
		return -FERRY_E_TOO_LARGE;
	if (!buf)
		return -FERRY_E_MALFORMED;
	if (cap < FERRY_PAGE_HDR_LEN + RW_FIXED)
		return -FERRY_E_TOO_LARGE;
	frame_hdr_encode(&page_frame, buf, FERRY_PAGE_READ_DATA, req, (uint32_t)(RW_FIXED + data_len));
	wire_put_u32(buf + FERRY_PAGE_HDR_LEN, count);
	wire_put_u32(buf + FERRY_PAGE_HDR_LEN + 4, 0);
	return frame_total(RW_FIXED);
}

/* ---------------------------------------------------------------- naming */

static const char *const type_names[FERRY_PAGE_TYPE_MAX + 1] = {
	[FERRY_PAGE_HELLO] = "HELLO",
	[FERRY_PAGE_CHALLENGE] = "CHALLENGE",
	[FERRY_PAGE_AUTH] = "AUTH",
	[FERRY_PAGE_AUTH_OK] = "AUTH_OK",
	[FERRY_PAGE_ALLOC] = "ALLOC",
	[FERRY_PAGE_ALLOC_OK] = "ALLOC_OK",
	[FERRY_PAGE_FREE] = "FREE",
	[FERRY_PAGE_FREE_OK] = "FREE_OK",
	[FERRY_PAGE_READ] = "READ",
	[FERRY_PAGE_READ_DATA] = "READ_DATA",
	[FERRY_PAGE_WRITE] = "WRITE",
	[FERRY_PAGE_WRITE_OK] = "WRITE_OK",
	[FERRY_PAGE_STATS] = "STATS",
	[FERRY_PAGE_STATS_OK] = "STATS_OK",
	[FERRY_PAGE_ERROR] = "ERROR",
	[FERRY_PAGE_SHARE] = "SHARE",
	[FERRY_PAGE_SHARE_OK] = "SHARE_OK",
	[FERRY_PAGE_ATTACH] = "ATTACH",
	[FERRY_PAGE_ATTACH_OK] = "ATTACH_OK",
	[FERRY_PAGE_DETACH] = "DETACH",
	[FERRY_PAGE_DETACH_OK] = "DETACH_OK",
	[FERRY_PAGE_UNSHARE] = "UNSHARE",
	[FERRY_PAGE_UNSHARE_OK] = "UNSHARE_OK",
	[FERRY_PAGE_KEEP] = "KEEP",
	[FERRY_PAGE_KEEP_OK] = "KEEP_OK",
	[FERRY_PAGE_CLAIM] = "CLAIM",
	[FERRY_PAGE_CLAIM_OK] = "CLAIM_OK",
	[FERRY_PAGE_DISCARD] = "DISCARD",
	[FERRY_PAGE_DISCARD_OK] = "DISCARD_OK",
};

const char *ferry_page_type_name(uint8_t type)
{
	return frame_type_valid(&page_frame, type) ? type_names[type] : "UNKNOWN";
}

static const char *const errcode_texts[FERRY_E_CODE_MAX + 1] = {
	[FERRY_E_OK] = "ok",
	[FERRY_E_TRUNCATED] = "truncated message",
	[FERRY_E_BAD_MAGIC] = "bad magic",
	[FERRY_E_VERSION] = "unsupported protocol version",
	[FERRY_E_UNKNOWN_TYPE] = "unknown message type",
	[FERRY_E_BAD_FLAGS] = "bad flags",
	[FERRY_E_TOO_LARGE] = "too large",
	[FERRY_E_MALFORMED] = "malformed message",
	[FERRY_E_AUTH_FAILED] = "authentication failed",
	[FERRY_E_NOT_AUTHENTICATED] = "not authenticated",
	[FERRY_E_POOL_FULL] = "pool full",
	[FERRY_E_QUOTA] = "quota exceeded",
	[FERRY_E_UNKNOWN_EXTENT] = "unknown extent",
	[FERRY_E_OUT_OF_RANGE] = "out of range",
	[FERRY_E_ACCESS] = "access denied",
	[FERRY_E_BUSY] = "busy",
	[FERRY_E_INTERNAL] = "internal error",
	[FERRY_E_SHUTDOWN] = "server shutting down",
	[FERRY_E_UNEXPECTED] = "unexpected message",
	[FERRY_E_BAD_ALIGNMENT] = "bad alignment",
	[FERRY_E_BAD_TOKEN] = "unknown share token",
	[FERRY_E_UNKNOWN_ATTACH] = "unknown attachment",
	[FERRY_E_LIMIT] = "limit reached",
};

const char *ferry_errcode_str(uint32_t code)
{
	return code <= FERRY_E_CODE_MAX ? errcode_texts[code] : "unknown error";
}
