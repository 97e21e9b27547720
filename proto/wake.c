/*
 * Wake protocol codec (ferryd <-> ferry-wake): pure byte (de)serialisation,
 * no I/O, no allocation. Layouts: the table in wake.h. The header, HELLO,
 * CHALLENGE, AUTH, STATS_OK and ERROR are shared with the other codecs:
 * frame.c does them, from the wake_frame descriptor below.
 *
 * Decoder codes beyond the header checks: a field above a protocol limit is
 * FERRY_WAKE_E_TOO_LARGE; a bad VM id FERRY_WAKE_E_BAD_VM_ID; an unusable MAC
 * or IPv4 address FERRY_WAKE_E_BAD_ADDR; unknown VM_TABLE flags
 * FERRY_WAKE_E_BAD_FLAGS; any other inconsistency (sizes that do not add up,
 * reserved bytes, bad reason) FERRY_WAKE_E_MALFORMED.
 */
#include "proto/wake.h"
#include "proto/frame.h"
#include "proto/wire.h"

#include <stdbool.h>
#include <string.h>

#define AUTH_OK_LEN      32u
#define REF_FIXED        4u
#define TABLE_FIXED      8u
#define ROLE_LEN         8u
#define WAKE_FIXED       24u
#define OK_LEN           8u
#define ENTRY_FIXED      FERRY_WAKE_ENTRY_FIXED

#define REPLY_TYPES ((1u << FERRY_WAKE_CHALLENGE) | (1u << FERRY_WAKE_AUTH_OK) |   \
		     (1u << FERRY_WAKE_STATS_OK) | (1u << FERRY_WAKE_OK) |          \
		     (1u << FERRY_WAKE_ERROR))

/* ---------------------------------------------------------------- rules */

static uint32_t type_max_payload(uint8_t type)
{
	return type == FERRY_WAKE_VM_TABLE ? FERRY_WAKE_MAX_PAYLOAD : FERRY_WAKE_CTRL_PAYLOAD;
}

static const struct frame_proto wake_frame = {
	.magic = FERRY_WAKE_MAGIC,
	.version = FERRY_WAKE_VERSION,
	.type_max = FERRY_WAKE_TYPE_MAX,
	.known_flags = FERRY_WAKE_F_KNOWN,
	.reply_flag = FERRY_WAKE_F_REPLY,
	.reply_types = REPLY_TYPES,
	.max_payload = type_max_payload,
	.type_stats_ok = FERRY_WAKE_STATS_OK,
	.type_error = FERRY_WAKE_ERROR,
	.stats_max = FERRY_WAKE_MAX_STATS,
	.stat_name_max = FERRY_WAKE_STAT_NAME_MAX,
	.errmsg_max = FERRY_WAKE_ERRMSG_MAX,
	.type_hello = FERRY_WAKE_HELLO,
	.type_challenge = FERRY_WAKE_CHALLENGE,
	.type_auth = FERRY_WAKE_AUTH,
	.name_max = FERRY_WAKE_NAME_MAX,
};

/* The header and the shared bodies report frame.h's codes as our own. */
_Static_assert(FERRY_WAKE_E_OK == FRAME_E_OK && FERRY_WAKE_E_TRUNCATED == FRAME_E_TRUNCATED &&
		       FERRY_WAKE_E_BAD_MAGIC == FRAME_E_BAD_MAGIC && FERRY_WAKE_E_VERSION == FRAME_E_VERSION &&
		       FERRY_WAKE_E_UNKNOWN_TYPE == FRAME_E_UNKNOWN_TYPE &&
		       FERRY_WAKE_E_BAD_FLAGS == FRAME_E_BAD_FLAGS && FERRY_WAKE_E_TOO_LARGE == FRAME_E_TOO_LARGE &&
		       FERRY_WAKE_E_MALFORMED == FRAME_E_MALFORMED,
	       "wake error codes 0..7 are frame.h's");
_Static_assert(FERRY_WAKE_HDR_LEN == FRAME_HDR_LEN, "wake header is the frame header");
_Static_assert(FERRY_WAKE_NONCE_LEN == FRAME_NONCE_LEN && FERRY_WAKE_MAC_LEN == FRAME_MAC_LEN,
	       "wake handshake is frame.h's");

static int check_printable(const uint8_t *s, size_t len, size_t max, bool allow_space, int empty_code)
{
	if (len == 0)
		return empty_code;
	if (len > max)
		return FERRY_WAKE_E_TOO_LARGE;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < (allow_space ? 0x20 : 0x21) || s[i] > 0x7e)
			return empty_code;
	}
	return FERRY_WAKE_E_OK;
}

static int check_vm_id(const uint8_t *id, size_t len)
{
	return check_printable(id, len, FERRY_WAKE_VM_ID_MAX, false, FERRY_WAKE_E_BAD_VM_ID);
}

int ferry_wake_check_mac(const uint8_t mac[6])
{
	static const uint8_t zero[6];

	if (!mac || (mac[0] & 0x01) || memcmp(mac, zero, 6) == 0)
		return FERRY_WAKE_E_BAD_ADDR;
	return FERRY_WAKE_E_OK;
}

int ferry_wake_check_ip(const uint8_t ip[4])
{
	if (!ip)
		return FERRY_WAKE_E_BAD_ADDR;
	if (ip[0] == 0 || ip[0] == 127 || ip[0] >= 224)
		return FERRY_WAKE_E_BAD_ADDR;   /* 0/8, loopback, multicast, class E, broadcast */
	return FERRY_WAKE_E_OK;
}

/* ---------------------------------------------------------------- decoding */

int ferry_wake_hdr_decode(const uint8_t *buf, size_t len, struct ferry_wake_hdr *hdr)
{
	struct frame_hdr h;
	int rc = frame_hdr_decode(&wake_frame, buf, len, &h);

	if (rc != FERRY_WAKE_E_OK)
		return rc;
	hdr->type = h.type;
	hdr->flags = h.flags;
	hdr->request_id = h.request_id;
	hdr->payload_len = h.payload_len;
	return FERRY_WAKE_E_OK;
}

static int decode_hello(const uint8_t *p, uint32_t n, struct ferry_wake_hello *m)
{
	return frame_hello_decode(&wake_frame, p, n, &m->version_min, &m->version_max, &m->features, &m->name_len,
				  m->name);
}

static int decode_challenge(const uint8_t *p, uint32_t n, struct ferry_wake_challenge *m)
{
	return frame_challenge_decode(p, n, &m->version, m->nonce);
}

static int decode_auth(const uint8_t *p, uint32_t n, struct ferry_wake_auth *m)
{
	return frame_auth_decode(p, n, m->nonce, m->mac);
}

static int decode_auth_ok(const uint8_t *p, uint32_t n, struct ferry_wake_auth_ok *m)
{
	if (n != AUTH_OK_LEN)
		return FERRY_WAKE_E_MALFORMED;
	memcpy(m->mac, p, FERRY_WAKE_MAC_LEN);
	return FERRY_WAKE_E_OK;
}

/*
 * One VM entry at p[0..avail): on success *used is its size. Shared by VM_ADD
 * (where the entry must be exactly the payload) and VM_TABLE.
 */
static int decode_entry(const uint8_t *p, uint32_t avail, struct ferry_wake_vm *vm, uint32_t *used)
{
	uint8_t id_len;
	int rc;

	if (avail < ENTRY_FIXED)
		return FERRY_WAKE_E_MALFORMED;
	id_len = p[10];
	if (p[11] != 0)
		return FERRY_WAKE_E_MALFORMED;
	if (id_len > FERRY_WAKE_VM_ID_MAX)
		return FERRY_WAKE_E_TOO_LARGE;
	if (avail - ENTRY_FIXED < id_len)
		return FERRY_WAKE_E_MALFORMED;
	rc = check_vm_id(p + ENTRY_FIXED, id_len);
	if (rc != FERRY_WAKE_E_OK)
		return rc;
	rc = ferry_wake_check_ip(p);
	if (rc != FERRY_WAKE_E_OK)
		return rc;
	rc = ferry_wake_check_mac(p + 4);
	if (rc != FERRY_WAKE_E_OK)
		return rc;
	if (vm) {
		memcpy(vm->ip, p, 4);
		memcpy(vm->mac, p + 4, 6);
		vm->id_len = id_len;
		memcpy(vm->id, p + ENTRY_FIXED, id_len);
		vm->id[id_len] = '\0';
	}
	*used = ENTRY_FIXED + id_len;
	return FERRY_WAKE_E_OK;
}

static int decode_vm_add(const uint8_t *p, uint32_t n, struct ferry_wake_vm *m)
{
	uint32_t used;
	int rc = decode_entry(p, n, m, &used);

	if (rc != FERRY_WAKE_E_OK)
		return rc;
	return used == n ? FERRY_WAKE_E_OK : FERRY_WAKE_E_MALFORMED;
}

static int decode_ref(const uint8_t *p, uint32_t n, struct ferry_wake_vm_ref *m)
{
	uint8_t id_len;
	int rc;

	if (n < REF_FIXED)
		return FERRY_WAKE_E_MALFORMED;
	id_len = p[0];
	if (p[1] || p[2] || p[3])
		return FERRY_WAKE_E_MALFORMED;
	if (id_len > FERRY_WAKE_VM_ID_MAX)
		return FERRY_WAKE_E_TOO_LARGE;
	if (n - REF_FIXED != id_len)
		return FERRY_WAKE_E_MALFORMED;
	rc = check_vm_id(p + REF_FIXED, id_len);
	if (rc != FERRY_WAKE_E_OK)
		return rc;
	m->id_len = id_len;
	memcpy(m->id, p + REF_FIXED, id_len);
	m->id[id_len] = '\0';
	return FERRY_WAKE_E_OK;
}

static int decode_table(const uint8_t *p, uint32_t n, struct ferry_wake_table *m)
{
	uint16_t count, flags;
	uint32_t off = TABLE_FIXED;
	int rc;

	if (n < TABLE_FIXED)
		return FERRY_WAKE_E_MALFORMED;
	count = wire_get_u16(p);
	flags = wire_get_u16(p + 2);
	if (wire_get_u32(p + 4) != 0)
		return FERRY_WAKE_E_MALFORMED;
	if (flags & ~FERRY_WAKE_TABLE_KNOWN)
		return FERRY_WAKE_E_BAD_FLAGS;
	if (count > FERRY_WAKE_TABLE_MAX)
		return FERRY_WAKE_E_TOO_LARGE;
	for (uint16_t i = 0; i < count; i++) {
		uint32_t used;

		/* off <= n throughout. */
		rc = decode_entry(p + off, n - off, NULL, &used);
		if (rc != FERRY_WAKE_E_OK)
			return rc;
		off += used;
	}
	if (off != n)
		return FERRY_WAKE_E_MALFORMED;
	/*
	 * Duplicate ids or addresses inside one table are refused here so
	 * that a receiver never applies half a table. O(count^2) over at
	 * most 512 entries, only on a control message.
	 */
	off = TABLE_FIXED;
	for (uint16_t i = 0; i < count; i++) {
		uint32_t used_i = ENTRY_FIXED + p[off + 10], off_j = off + used_i;

		for (uint16_t j = (uint16_t)(i + 1); j < count; j++) {
			uint32_t used_j = ENTRY_FIXED + p[off_j + 10];

			if (memcmp(p + off, p + off_j, 4) == 0 ||
			    (used_i == used_j && memcmp(p + off + ENTRY_FIXED, p + off_j + ENTRY_FIXED,
							used_i - ENTRY_FIXED) == 0))
				return FERRY_WAKE_E_EXISTS;
			off_j += used_j;
		}
		off += used_i;
	}
	m->count = count;
	m->flags = flags;
	m->entries = p + TABLE_FIXED;
	m->entries_len = n - TABLE_FIXED;
	return FERRY_WAKE_E_OK;
}

static int decode_role(const uint8_t *p, uint32_t n, struct ferry_wake_role *m)
{
	if (n != ROLE_LEN)
		return FERRY_WAKE_E_MALFORMED;
	m->epoch = wire_get_u64(p);
	return FERRY_WAKE_E_OK;
}

static int decode_wake(const uint8_t *p, uint32_t n, struct ferry_wake_request *m)
{
	uint8_t reason, id_len, proto;
	int rc;

	if (n < WAKE_FIXED)
		return FERRY_WAKE_E_MALFORMED;
	reason = p[0];
	id_len = p[1];
	proto = p[20];
	if (reason < 1 || reason > FERRY_WAKE_REASON_MAX)
		return FERRY_WAKE_E_MALFORMED;
	if (p[21] || p[22] || p[23])
		return FERRY_WAKE_E_MALFORMED;
	if (id_len > FERRY_WAKE_VM_ID_MAX)
		return FERRY_WAKE_E_TOO_LARGE;
	if (n - WAKE_FIXED != id_len)
		return FERRY_WAKE_E_MALFORMED;
	rc = check_vm_id(p + WAKE_FIXED, id_len);
	if (rc != FERRY_WAKE_E_OK)
		return rc;
	if (wire_get_u16(p + 2) == 0)
		return FERRY_WAKE_E_MALFORMED;
	/* A SYN names a TCP 5-tuple; an ARP only its sender. */
	if (reason == FERRY_WAKE_REASON_SYN && (proto != 6 || wire_get_u16(p + 12) == 0 ||
						wire_get_u16(p + 14) == 0))
		return FERRY_WAKE_E_MALFORMED;
	if (reason == FERRY_WAKE_REASON_ARP && (proto != 0 || wire_get_u16(p + 12) || wire_get_u16(p + 14) ||
						wire_get_u32(p + 16)))
		return FERRY_WAKE_E_MALFORMED;
	m->reason = reason;
	m->attempt = wire_get_u16(p + 2);
	memcpy(m->src_ip, p + 4, 4);
	memcpy(m->dst_ip, p + 8, 4);
	m->src_port = wire_get_u16(p + 12);
	m->dst_port = wire_get_u16(p + 14);
	m->isn = wire_get_u32(p + 16);
	m->l4_proto = proto;
	m->id_len = id_len;
	memcpy(m->id, p + WAKE_FIXED, id_len);
	m->id[id_len] = '\0';
	return FERRY_WAKE_E_OK;
}

static void stat_put(void *ctx, uint16_t i, const uint8_t *name, uint8_t len, uint64_t value)
{
	struct ferry_wake_stat *st = &((struct ferry_wake_stats_ok *)ctx)->stats[i];

	memcpy(st->name, name, len);
	st->name[len] = '\0';
	st->value = value;
}

static int decode_stats_ok(const uint8_t *p, uint32_t n, struct ferry_wake_stats_ok *m)
{
	return frame_stats_decode(&wake_frame, p, n, stat_put, m, &m->count);
}

static int decode_error(const uint8_t *p, uint32_t n, struct ferry_wake_error *m)
{
	return frame_error_decode(&wake_frame, p, n, &m->code, &m->msg_len, m->msg);
}

int ferry_wake_decode(const uint8_t *buf, size_t len, struct ferry_wake_msg *msg)
{
	const uint8_t *p = buf + FERRY_WAKE_HDR_LEN;
	uint32_t n;
	int rc;

	rc = ferry_wake_hdr_decode(buf, len, &msg->hdr);
	if (rc != FERRY_WAKE_E_OK)
		return rc;
	n = msg->hdr.payload_len;
	if (len - FERRY_WAKE_HDR_LEN < n)
		return FERRY_WAKE_E_TRUNCATED;

	switch (msg->hdr.type) {
	case FERRY_WAKE_HELLO:
		return decode_hello(p, n, &msg->u.hello);
	case FERRY_WAKE_CHALLENGE:
		return decode_challenge(p, n, &msg->u.challenge);
	case FERRY_WAKE_AUTH:
		return decode_auth(p, n, &msg->u.auth);
	case FERRY_WAKE_AUTH_OK:
		return decode_auth_ok(p, n, &msg->u.auth_ok);
	case FERRY_WAKE_VM_ADD:
		return decode_vm_add(p, n, &msg->u.vm);
	case FERRY_WAKE_VM_DEL:
	case FERRY_WAKE_VM_RUNNING:
		return decode_ref(p, n, &msg->u.ref);
	case FERRY_WAKE_VM_TABLE:
		return decode_table(p, n, &msg->u.table);
	case FERRY_WAKE_ROLE_TAKE:
	case FERRY_WAKE_ROLE_DROP:
		return decode_role(p, n, &msg->u.role);
	case FERRY_WAKE_WAKE_REQUEST:
		return decode_wake(p, n, &msg->u.wake);
	case FERRY_WAKE_STATS:
		return n == 0 ? FERRY_WAKE_E_OK : FERRY_WAKE_E_MALFORMED;
	case FERRY_WAKE_STATS_OK:
		return decode_stats_ok(p, n, &msg->u.stats_ok);
	case FERRY_WAKE_OK:
		if (n != OK_LEN)
			return FERRY_WAKE_E_MALFORMED;
		msg->u.ok.value = wire_get_u64(p);
		return FERRY_WAKE_E_OK;
	case FERRY_WAKE_ERROR:
		return decode_error(p, n, &msg->u.error);
	default:
		return FERRY_WAKE_E_UNKNOWN_TYPE; /* unreachable: the header check covers it */
	}
}

void ferry_wake_table_entry(const struct ferry_wake_table *table, uint16_t i, struct ferry_wake_vm *vm)
{
	const uint8_t *p = table->entries;
	uint32_t used = 0;

	/* Walk to entry i; decode_table() checked every entry on the way. */
	for (uint16_t k = 0; k <= i; k++) {
		p += used;
		used = ENTRY_FIXED + p[10];
	}
	(void)decode_entry(p, used, vm, &used);
}

/* ---------------------------------------------------------------- encoding */

static int begin(uint8_t type, uint64_t req, uint64_t payload_len, uint8_t *buf, size_t cap)
{
	return frame_begin(&wake_frame, type, req, payload_len, payload_len, buf, cap);
}

/* Length of a C-string VM id after checking it, or a negative code. */
static int id_length(const char *id)
{
	size_t len;
	int rc;

	if (!id)
		return -FERRY_WAKE_E_BAD_VM_ID;
	len = strnlen(id, FERRY_WAKE_VM_ID_MAX + 1);
	rc = check_vm_id((const uint8_t *)id, len);
	return rc == FERRY_WAKE_E_OK ? (int)len : -rc;
}

int ferry_wake_encode_hdr(uint8_t type, uint64_t req, uint32_t payload_len, uint8_t *buf, size_t cap)
{
	if (!frame_type_valid(&wake_frame, type) || !buf)
		return -FERRY_WAKE_E_MALFORMED;
	if (payload_len > type_max_payload(type) || cap < FERRY_WAKE_HDR_LEN)
		return -FERRY_WAKE_E_TOO_LARGE;
	frame_hdr_encode(&wake_frame, buf, type, req, payload_len);
	return FERRY_WAKE_HDR_LEN;
}

int ferry_wake_encode_hello(uint64_t req, const char *name, uint8_t vmin, uint8_t vmax, uint8_t *buf, size_t cap)
{
	return frame_hello_encode(&wake_frame, req, name, vmin, vmax, buf, cap);
}

int ferry_wake_encode_challenge(uint64_t req, uint8_t version, const uint8_t nonce[FERRY_WAKE_NONCE_LEN],
				uint8_t *buf, size_t cap)
{
	return frame_challenge_encode(&wake_frame, req, version, nonce, buf, cap);
}

int ferry_wake_encode_auth(uint64_t req, const uint8_t nonce[FERRY_WAKE_NONCE_LEN],
			   const uint8_t mac[FERRY_WAKE_MAC_LEN], uint8_t *buf, size_t cap)
{
	return frame_auth_encode(&wake_frame, req, nonce, mac, buf, cap);
}

int ferry_wake_encode_auth_ok(uint64_t req, const uint8_t mac[FERRY_WAKE_MAC_LEN], uint8_t *buf, size_t cap)
{
	int rc;

	if (!mac)
		return -FERRY_WAKE_E_MALFORMED;
	rc = begin(FERRY_WAKE_AUTH_OK, req, AUTH_OK_LEN, buf, cap);
	if (rc < 0)
		return rc;
	memcpy(buf + FERRY_WAKE_HDR_LEN, mac, FERRY_WAKE_MAC_LEN);
	return frame_total(AUTH_OK_LEN);
}

/* Check @vm and return its wire size, or a negative code. */
static int entry_size(const struct ferry_wake_vm *vm)
{
	int len;

	if (!vm)
		return -FERRY_WAKE_E_MALFORMED;
	len = id_length(vm->id);
	if (len < 0)
		return len;
	if (ferry_wake_check_ip(vm->ip) != FERRY_WAKE_E_OK || ferry_wake_check_mac(vm->mac) != FERRY_WAKE_E_OK)
		return -FERRY_WAKE_E_BAD_ADDR;
	return (int)ENTRY_FIXED + len;
}

static uint8_t *put_entry(uint8_t *p, const struct ferry_wake_vm *vm)
{
	size_t len = strlen(vm->id);

	memcpy(p, vm->ip, 4);
	memcpy(p + 4, vm->mac, 6);
	p[10] = (uint8_t)len;
	p[11] = 0;
	memcpy(p + ENTRY_FIXED, vm->id, len);
	return p + ENTRY_FIXED + len;
}

int ferry_wake_encode_vm_add(uint64_t req, const struct ferry_wake_vm *vm, uint8_t *buf, size_t cap)
{
	int size = entry_size(vm), rc;

	if (size < 0)
		return size;
	rc = begin(FERRY_WAKE_VM_ADD, req, (uint64_t)size, buf, cap);
	if (rc < 0)
		return rc;
	put_entry(buf + FERRY_WAKE_HDR_LEN, vm);
	return frame_total((uint64_t)size);
}

static int encode_ref(uint8_t type, uint64_t req, const char *id, uint8_t *buf, size_t cap)
{
	int len = id_length(id), rc;
	uint8_t *p;

	if (len < 0)
		return len;
	rc = begin(type, req, REF_FIXED + (uint64_t)len, buf, cap);
	if (rc < 0)
		return rc;
	p = buf + FERRY_WAKE_HDR_LEN;
	p[0] = (uint8_t)len;
	p[1] = p[2] = p[3] = 0;
	memcpy(p + REF_FIXED, id, (size_t)len);
	return frame_total(REF_FIXED + (uint64_t)len);
}

int ferry_wake_encode_vm_del(uint64_t req, const char *id, uint8_t *buf, size_t cap)
{
	return encode_ref(FERRY_WAKE_VM_DEL, req, id, buf, cap);
}

int ferry_wake_encode_vm_running(uint64_t req, const char *id, uint8_t *buf, size_t cap)
{
	return encode_ref(FERRY_WAKE_VM_RUNNING, req, id, buf, cap);
}

int ferry_wake_encode_vm_table(uint64_t req, uint16_t flags, const struct ferry_wake_vm *vms, uint16_t count,
			       uint8_t *buf, size_t cap)
{
	uint64_t payload_len = TABLE_FIXED;
	uint8_t *p;
	int rc;

	if (flags & ~FERRY_WAKE_TABLE_KNOWN)
		return -FERRY_WAKE_E_MALFORMED;
	if (count > FERRY_WAKE_TABLE_MAX)
		return -FERRY_WAKE_E_TOO_LARGE;
	if (count && !vms)
		return -FERRY_WAKE_E_MALFORMED;
	for (uint16_t i = 0; i < count; i++) {
		int size = entry_size(&vms[i]);

		if (size < 0)
			return size;
		for (uint16_t j = 0; j < i; j++)
			if (memcmp(vms[i].ip, vms[j].ip, 4) == 0 || strcmp(vms[i].id, vms[j].id) == 0)
				return -FERRY_WAKE_E_EXISTS;
		payload_len += (uint64_t)size;
	}
	rc = begin(FERRY_WAKE_VM_TABLE, req, payload_len, buf, cap);
	if (rc < 0)
		return rc;
	p = buf + FERRY_WAKE_HDR_LEN;
	wire_put_u16(p, count);
	wire_put_u16(p + 2, flags);
	wire_put_u32(p + 4, 0);
	p += TABLE_FIXED;
	for (uint16_t i = 0; i < count; i++)
		p = put_entry(p, &vms[i]);
	return frame_total(payload_len);
}

static int encode_u64(uint8_t type, uint64_t req, uint64_t v, uint8_t *buf, size_t cap)
{
	int rc = begin(type, req, 8, buf, cap);

	if (rc < 0)
		return rc;
	wire_put_u64(buf + FERRY_WAKE_HDR_LEN, v);
	return frame_total(8);
}

int ferry_wake_encode_role_take(uint64_t req, uint64_t epoch, uint8_t *buf, size_t cap)
{
	return encode_u64(FERRY_WAKE_ROLE_TAKE, req, epoch, buf, cap);
}

int ferry_wake_encode_role_drop(uint64_t req, uint64_t epoch, uint8_t *buf, size_t cap)
{
	return encode_u64(FERRY_WAKE_ROLE_DROP, req, epoch, buf, cap);
}

int ferry_wake_encode_ok(uint64_t req, uint64_t value, uint8_t *buf, size_t cap)
{
	return encode_u64(FERRY_WAKE_OK, req, value, buf, cap);
}

int ferry_wake_encode_wake_request(uint64_t req, const struct ferry_wake_request *wr, uint8_t *buf, size_t cap)
{
	int len, rc;
	uint8_t *p;

	if (!wr)
		return -FERRY_WAKE_E_MALFORMED;
	len = id_length(wr->id);
	if (len < 0)
		return len;
	if (wr->attempt == 0)
		return -FERRY_WAKE_E_MALFORMED;
	if (wr->reason == FERRY_WAKE_REASON_SYN) {
		if (wr->l4_proto != 6 || wr->src_port == 0 || wr->dst_port == 0)
			return -FERRY_WAKE_E_MALFORMED;
	} else if (wr->reason == FERRY_WAKE_REASON_ARP) {
		if (wr->l4_proto != 0 || wr->src_port || wr->dst_port || wr->isn)
			return -FERRY_WAKE_E_MALFORMED;
	} else {
		return -FERRY_WAKE_E_MALFORMED;
	}
	rc = begin(FERRY_WAKE_WAKE_REQUEST, req, WAKE_FIXED + (uint64_t)len, buf, cap);
	if (rc < 0)
		return rc;
	p = buf + FERRY_WAKE_HDR_LEN;
	p[0] = wr->reason;
	p[1] = (uint8_t)len;
	wire_put_u16(p + 2, wr->attempt);
	memcpy(p + 4, wr->src_ip, 4);
	memcpy(p + 8, wr->dst_ip, 4);
	wire_put_u16(p + 12, wr->src_port);
	wire_put_u16(p + 14, wr->dst_port);
	wire_put_u32(p + 16, wr->isn);
	p[20] = wr->l4_proto;
	p[21] = p[22] = p[23] = 0;
	memcpy(p + WAKE_FIXED, wr->id, (size_t)len);
	return frame_total(WAKE_FIXED + (uint64_t)len);
}

int ferry_wake_encode_stats(uint64_t req, uint8_t *buf, size_t cap)
{
	return frame_encode_empty(&wake_frame, FERRY_WAKE_STATS, req, buf, cap);
}

static void stat_get(const void *ctx, uint16_t i, const char **name, uint64_t *value)
{
	const struct ferry_wake_stat *st = (const struct ferry_wake_stat *)ctx + i;

	*name = st->name;
	*value = st->value;
}

int ferry_wake_encode_stats_ok(uint64_t req, const struct ferry_wake_stat *stats, uint16_t count,
			       uint8_t *buf, size_t cap)
{
	return frame_stats_encode(&wake_frame, req, stat_get, stats, count, buf, cap);
}

int ferry_wake_encode_error(uint64_t req, uint32_t code, const char *msg, uint8_t *buf, size_t cap)
{
	return frame_error_encode(&wake_frame, req, code, msg, buf, cap);
}

/* ---------------------------------------------------------------- naming */

static const char *const type_names[FERRY_WAKE_TYPE_MAX + 1] = {
	[FERRY_WAKE_HELLO] = "HELLO",
	[FERRY_WAKE_CHALLENGE] = "CHALLENGE",
	[FERRY_WAKE_AUTH] = "AUTH",
	[FERRY_WAKE_AUTH_OK] = "AUTH_OK",
	[FERRY_WAKE_VM_ADD] = "VM_ADD",
	[FERRY_WAKE_VM_DEL] = "VM_DEL",
	[FERRY_WAKE_VM_TABLE] = "VM_TABLE",
	[FERRY_WAKE_ROLE_TAKE] = "ROLE_TAKE",
	[FERRY_WAKE_ROLE_DROP] = "ROLE_DROP",
	[FERRY_WAKE_VM_RUNNING] = "VM_RUNNING",
	[FERRY_WAKE_WAKE_REQUEST] = "WAKE_REQUEST",
	[FERRY_WAKE_STATS] = "STATS",
	[FERRY_WAKE_STATS_OK] = "STATS_OK",
	[FERRY_WAKE_OK] = "OK",
	[FERRY_WAKE_ERROR] = "ERROR",
};

const char *ferry_wake_type_name(uint8_t type)
{
	return frame_type_valid(&wake_frame, type) ? type_names[type] : "UNKNOWN";
}

static const char *const errcode_texts[FERRY_WAKE_E_CODE_MAX + 1] = {
	[FERRY_WAKE_E_OK] = "ok",
	[FERRY_WAKE_E_TRUNCATED] = "truncated message",
	[FERRY_WAKE_E_BAD_MAGIC] = "bad magic",
	[FERRY_WAKE_E_VERSION] = "unsupported protocol version",
	[FERRY_WAKE_E_UNKNOWN_TYPE] = "unknown message type",
	[FERRY_WAKE_E_BAD_FLAGS] = "bad flags",
	[FERRY_WAKE_E_TOO_LARGE] = "too large",
	[FERRY_WAKE_E_MALFORMED] = "malformed message",
	[FERRY_WAKE_E_AUTH_FAILED] = "authentication failed",
	[FERRY_WAKE_E_NOT_AUTHENTICATED] = "not authenticated",
	[FERRY_WAKE_E_BAD_VM_ID] = "bad VM id",
	[FERRY_WAKE_E_BAD_ADDR] = "bad MAC or IPv4 address",
	[FERRY_WAKE_E_UNKNOWN_VM] = "unknown VM",
	[FERRY_WAKE_E_EXISTS] = "VM id or address already in the table",
	[FERRY_WAKE_E_TABLE_FULL] = "VM table full",
	[FERRY_WAKE_E_UNEXPECTED] = "unexpected message",
	[FERRY_WAKE_E_BUSY] = "busy",
	[FERRY_WAKE_E_INTERNAL] = "internal error",
	[FERRY_WAKE_E_SHUTDOWN] = "shutting down",
	[FERRY_WAKE_E_STALE_EPOCH] = "stale role epoch",
};

const char *ferry_wake_errcode_str(uint32_t code)
{
	return code <= FERRY_WAKE_E_CODE_MAX ? errcode_texts[code] : "unknown error";
}
