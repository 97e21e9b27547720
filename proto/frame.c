/*
 * The frame layer shared by the protocol codecs: header, STATS_OK and ERROR.
 * Pure byte (de)serialisation, no I/O, no allocation. Contract: frame.h.
 */
#include "proto/frame.h"
#include "proto/wire.h"

#include <string.h>

#define STATS_OK_FIXED 2u
#define STAT_FIXED     9u   /* u8 name_len + u64 value */
#define ERROR_FIXED    6u
#define HELLO_FIXED    8u
#define CHALLENGE_LEN  36u
#define AUTH_LEN       64u

bool frame_type_valid(const struct frame_proto *fp, unsigned int type)
{
	return type >= 1 && type <= fp->type_max;
}

bool frame_type_is_reply(const struct frame_proto *fp, unsigned int type)
{
	return frame_type_valid(fp, type) && (fp->reply_types & (1u << type));
}

static inline bool stat_char_ok(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

static int check_stat_name(const struct frame_proto *fp, const uint8_t *name, size_t len)
{
	if (len == 0)
		return FRAME_E_MALFORMED;
	if (len > fp->stat_name_max)
		return FRAME_E_TOO_LARGE;
	for (size_t i = 0; i < len; i++)
		if (!stat_char_ok(name[i]))
			return FRAME_E_MALFORMED;
	return FRAME_E_OK;
}

/* A client name: printable ASCII, spaces included. */
static int check_name(const struct frame_proto *fp, const uint8_t *name, size_t len)
{
	if (len == 0)
		return FRAME_E_MALFORMED;
	if (len > fp->name_max)
		return FRAME_E_TOO_LARGE;
	for (size_t i = 0; i < len; i++)
		if (name[i] < 0x20 || name[i] > 0x7e)
			return FRAME_E_MALFORMED;
	return FRAME_E_OK;
}

/* ---------------------------------------------------------------- header */

int frame_hdr_decode(const struct frame_proto *fp, const uint8_t *buf, size_t len, struct frame_hdr *hdr)
{
	uint8_t type;
	uint16_t flags;
	uint32_t payload_len;

	if (!buf || len < FRAME_HDR_LEN)
		return FRAME_E_TRUNCATED;
	if (wire_get_u32(buf) != fp->magic)
		return FRAME_E_BAD_MAGIC;
	if (buf[4] != fp->version)
		return FRAME_E_VERSION;
	type = buf[5];
	if (!frame_type_valid(fp, type))
		return FRAME_E_UNKNOWN_TYPE;
	flags = wire_get_u16(buf + 6);
	if (flags & ~fp->known_flags)
		return FRAME_E_BAD_FLAGS;
	if (!!(flags & fp->reply_flag) != frame_type_is_reply(fp, type))
		return FRAME_E_BAD_FLAGS;
	if (wire_get_u32(buf + 20) != 0)
		return FRAME_E_MALFORMED;
	payload_len = wire_get_u32(buf + 16);
	if (payload_len > fp->max_payload(type))
		return FRAME_E_TOO_LARGE;

	hdr->type = type;
	hdr->flags = flags;
	hdr->request_id = wire_get_u64(buf + 8);
	hdr->payload_len = payload_len;
	return FRAME_E_OK;
}

void frame_hdr_encode(const struct frame_proto *fp, uint8_t *buf, uint8_t type, uint64_t req,
		      uint32_t payload_len)
{
	wire_put_u32(buf, fp->magic);
	buf[4] = fp->version;
	buf[5] = type;
	wire_put_u16(buf + 6, frame_type_is_reply(fp, type) ? fp->reply_flag : 0);
	wire_put_u64(buf + 8, req);
	wire_put_u32(buf + 16, payload_len);
	wire_put_u32(buf + 20, 0);
}

int frame_begin(const struct frame_proto *fp, uint8_t type, uint64_t req, uint64_t payload_len,
		uint64_t prefix_len, uint8_t *buf, size_t cap)
{
	if (!buf)
		return -FRAME_E_MALFORMED;
	if (payload_len > fp->max_payload(type))
		return -FRAME_E_TOO_LARGE;
	if (cap < FRAME_HDR_LEN || cap - FRAME_HDR_LEN < prefix_len)
		return -FRAME_E_TOO_LARGE;
	frame_hdr_encode(fp, buf, type, req, (uint32_t)payload_len);
	return 0;
}

int frame_encode_empty(const struct frame_proto *fp, uint8_t type, uint64_t req, uint8_t *buf, size_t cap)
{
	int rc = frame_begin(fp, type, req, 0, 0, buf, cap);

	return rc < 0 ? rc : frame_total(0);
}

/* ---------------------------------------------------------------- STATS_OK */

int frame_stats_decode(const struct frame_proto *fp, const uint8_t *p, uint32_t n, frame_stat_put_fn *put,
		       void *ctx, uint16_t *count)
{
	uint32_t off = STATS_OK_FIXED;
	uint16_t cnt;
	int rc;

	if (n < STATS_OK_FIXED)
		return FRAME_E_MALFORMED;
	cnt = wire_get_u16(p);
	if (cnt > fp->stats_max)
		return FRAME_E_TOO_LARGE;
	for (uint16_t i = 0; i < cnt; i++) {
		uint8_t len;

		/* off <= n holds throughout, so n - off cannot wrap. */
		if (n - off < 1)
			return FRAME_E_MALFORMED;
		len = p[off];
		if (len == 0)
			return FRAME_E_MALFORMED;
		if (len > fp->stat_name_max)
			return FRAME_E_TOO_LARGE;
		if (n - off < STAT_FIXED + (uint32_t)len)
			return FRAME_E_MALFORMED;
		rc = check_stat_name(fp, p + off + 1, len);
		if (rc != FRAME_E_OK)
			return rc;
		put(ctx, i, p + off + 1, len, wire_get_u64(p + off + 1 + len));
		off += STAT_FIXED + len;
	}
	if (off != n)
		return FRAME_E_MALFORMED;
	*count = cnt;
	return FRAME_E_OK;
}

int frame_stats_encode(const struct frame_proto *fp, uint64_t req, frame_stat_get_fn *get, const void *ctx,
		       uint16_t count, uint8_t *buf, size_t cap)
{
	uint64_t payload_len = STATS_OK_FIXED, value;
	const char *name;
	uint8_t *p;
	int rc;

	if (count > fp->stats_max)
		return -FRAME_E_TOO_LARGE;
	if (count && !ctx)
		return -FRAME_E_MALFORMED;
	for (uint16_t i = 0; i < count; i++) {
		size_t len;

		get(ctx, i, &name, &value);
		len = strnlen(name, (size_t)fp->stat_name_max + 1);
		rc = check_stat_name(fp, (const uint8_t *)name, len);
		if (rc != FRAME_E_OK)
			return -rc;
		payload_len += STAT_FIXED + len;
	}
	rc = frame_begin(fp, fp->type_stats_ok, req, payload_len, payload_len, buf, cap);
	if (rc < 0)
		return rc;
	p = buf + FRAME_HDR_LEN;
	wire_put_u16(p, count);
	p += STATS_OK_FIXED;
	for (uint16_t i = 0; i < count; i++) {
		size_t len;

		get(ctx, i, &name, &value);
		len = strlen(name);
		*p++ = (uint8_t)len;
		memcpy(p, name, len);
		p += len;
		wire_put_u64(p, value);
		p += 8;
	}
	return frame_total(payload_len);
}

/* ---------------------------------------------------------------- ERROR */

int frame_error_decode(const struct frame_proto *fp, const uint8_t *p, uint32_t n, uint32_t *code,
		       uint16_t *msg_len, char *msg)
{
	uint16_t len;

	if (n < ERROR_FIXED)
		return FRAME_E_MALFORMED;
	len = wire_get_u16(p + 4);
	if (len > fp->errmsg_max)
		return FRAME_E_TOO_LARGE;
	if (n - ERROR_FIXED != len)
		return FRAME_E_MALFORMED;
	/* A NUL would silently cut the text callers see; refuse it. */
	if (len && memchr(p + ERROR_FIXED, 0, len))
		return FRAME_E_MALFORMED;
	*code = wire_get_u32(p);
	*msg_len = len;
	if (len)
		memcpy(msg, p + ERROR_FIXED, len);
	msg[len] = '\0';
	return FRAME_E_OK;
}

int frame_error_encode(const struct frame_proto *fp, uint64_t req, uint32_t code, const char *msg, uint8_t *buf,
		       size_t cap)
{
	size_t len = msg ? strnlen(msg, fp->errmsg_max) : 0;
	int rc = frame_begin(fp, fp->type_error, req, ERROR_FIXED + len, ERROR_FIXED + len, buf, cap);

	if (rc < 0)
		return rc;
	buf += FRAME_HDR_LEN;
	wire_put_u32(buf, code);
	wire_put_u16(buf + 4, (uint16_t)len);
	if (len)
		memcpy(buf + ERROR_FIXED, msg, len);
	return frame_total(ERROR_FIXED + len);
}

/* ---------------------------------------------------------------- handshake */

int frame_hello_decode(const struct frame_proto *fp, const uint8_t *p, uint32_t n, uint8_t *version_min,
		       uint8_t *version_max, uint32_t *features, uint8_t *name_len, char *name)
{
	uint8_t len;
	int rc;

	if (n < HELLO_FIXED)
		return FRAME_E_MALFORMED;
	len = p[2];
	if (p[3] != 0 || len == 0)
		return FRAME_E_MALFORMED;
	if (len > fp->name_max)
		return FRAME_E_TOO_LARGE;
	if (n - HELLO_FIXED != len)
		return FRAME_E_MALFORMED;
	rc = check_name(fp, p + HELLO_FIXED, len);
	if (rc != FRAME_E_OK)
		return rc;
	if (p[0] > p[1])
		return FRAME_E_MALFORMED;
	*version_min = p[0];
	*version_max = p[1];
	*features = wire_get_u32(p + 4);
	*name_len = len;
	memcpy(name, p + HELLO_FIXED, len);
	name[len] = '\0';
	return FRAME_E_OK;
}

int frame_challenge_decode(const uint8_t *p, uint32_t n, uint8_t *version, uint8_t nonce[FRAME_NONCE_LEN])
{
	if (n != CHALLENGE_LEN || p[1] || p[2] || p[3])
		return FRAME_E_MALFORMED;
	*version = p[0];
	memcpy(nonce, p + 4, FRAME_NONCE_LEN);
	return FRAME_E_OK;
}

int frame_auth_decode(const uint8_t *p, uint32_t n, uint8_t nonce[FRAME_NONCE_LEN], uint8_t mac[FRAME_MAC_LEN])
{
	if (n != AUTH_LEN)
		return FRAME_E_MALFORMED;
	memcpy(nonce, p, FRAME_NONCE_LEN);
	memcpy(mac, p + FRAME_NONCE_LEN, FRAME_MAC_LEN);
	return FRAME_E_OK;
}

int frame_hello_encode(const struct frame_proto *fp, uint64_t req, const char *name, uint8_t vmin, uint8_t vmax,
		       uint8_t *buf, size_t cap)
{
	size_t len;
	int rc;

	if (!name || vmin > vmax)
		return -FRAME_E_MALFORMED;
	len = strnlen(name, (size_t)fp->name_max + 1);
	rc = check_name(fp, (const uint8_t *)name, len);
	if (rc != FRAME_E_OK)
		return -rc;
	rc = frame_begin(fp, fp->type_hello, req, HELLO_FIXED + len, HELLO_FIXED + len, buf, cap);
	if (rc < 0)
		return rc;
	buf += FRAME_HDR_LEN;
	buf[0] = vmin;
	buf[1] = vmax;
	buf[2] = (uint8_t)len;
	buf[3] = 0;
	wire_put_u32(buf + 4, 0);
	memcpy(buf + HELLO_FIXED, name, len);
	return frame_total(HELLO_FIXED + len);
}

int frame_challenge_encode(const struct frame_proto *fp, uint64_t req, uint8_t version,
			   const uint8_t nonce[FRAME_NONCE_LEN], uint8_t *buf, size_t cap)
{
	int rc;

	if (!nonce)
		return -FRAME_E_MALFORMED;
	rc = frame_begin(fp, fp->type_challenge, req, CHALLENGE_LEN, CHALLENGE_LEN, buf, cap);
	if (rc < 0)
		return rc;
	buf += FRAME_HDR_LEN;
	buf[0] = version;
	buf[1] = buf[2] = buf[3] = 0;
	memcpy(buf + 4, nonce, FRAME_NONCE_LEN);
	return frame_total(CHALLENGE_LEN);
}

int frame_auth_encode(const struct frame_proto *fp, uint64_t req, const uint8_t nonce[FRAME_NONCE_LEN],
		      const uint8_t mac[FRAME_MAC_LEN], uint8_t *buf, size_t cap)
{
	int rc;

	if (!nonce || !mac)
		return -FRAME_E_MALFORMED;
	rc = frame_begin(fp, fp->type_auth, req, AUTH_LEN, AUTH_LEN, buf, cap);
	if (rc < 0)
		return rc;
	buf += FRAME_HDR_LEN;
	memcpy(buf, nonce, FRAME_NONCE_LEN);
	memcpy(buf + FRAME_NONCE_LEN, mac, FRAME_MAC_LEN);
	return frame_total(AUTH_LEN);
}
