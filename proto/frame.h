/**
 * @file frame.h
 * The frame layer shared by Ferry's binary protocol codecs (page.c, vmm.c,
 * wake.c): the common header, the STATS_OK and ERROR bodies. Pure: no I/O,
 * no allocation. Integers go through wire.h.
 *
 * Header contract (24 bytes, little-endian), identical in every protocol:
 *
 *   0   u32 magic        the protocol's magic
 *   4   u8  version      the protocol's version, exactly
 *   5   u8  type         1..type_max
 *   6   u16 flags        only known_flags; reply_flag set exactly on the
 *                        types in reply_types
 *   8   u64 request_id   echoed by the reply
 *   16  u32 payload_len  at most max_payload(type)
 *   20  u32 reserved     zero
 *
 * frame_hdr_decode() checks in that order and reports the first violation:
 * short buffer TRUNCATED, magic BAD_MAGIC, version VERSION, type
 * UNKNOWN_TYPE, unknown flags then a reply bit that contradicts the type
 * BAD_FLAGS, reserved MALFORMED, payload_len TOO_LARGE.
 *
 * Bodies shared by every protocol:
 *
 *   STATS_OK  2 + ...  u16 count (<= stats_max), count x {u8 name_len
 *                      (1..stat_name_max), name [a-z0-9_], u64 value}
 *   ERROR     6 + m    u32 code, u16 msg_len (m <= errmsg_max), msg[m]
 *                      without NUL
 *
 * The authenticated session handshake of the protocols that have one (page,
 * wake; type_hello 0 means none):
 *
 *   HELLO      8 + n   u8 version_min (<= version_max), u8 version_max,
 *                      u8 name_len (n, 1..name_max), u8 reserved,
 *                      u32 features, name[n] printable ASCII (0x20..0x7e)
 *   CHALLENGE  36      u8 version, u8 reserved[3], nonce[32]
 *   AUTH       64      nonce[32], mac[32]
 *
 * Codes: FRAME_E_* below are the values 0..7 every protocol's own error
 * enum starts with (each codec asserts this at compile time), so a code
 * from here is returned unchanged as the protocol's own. Decoders return
 * FRAME_E_OK or a positive code; encoders the message length or a negative
 * code.
 */
#ifndef FERRY_PROTO_FRAME_H
#define FERRY_PROTO_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FRAME_HDR_LEN 24u

#define FRAME_E_OK           0
#define FRAME_E_TRUNCATED    1
#define FRAME_E_BAD_MAGIC    2
#define FRAME_E_VERSION      3
#define FRAME_E_UNKNOWN_TYPE 4
#define FRAME_E_BAD_FLAGS    5
#define FRAME_E_TOO_LARGE    6
#define FRAME_E_MALFORMED    7

/** What tells one protocol's frames from another's. */
struct frame_proto {
	uint32_t magic;
	uint8_t version;
	uint8_t type_max;          /**< valid types are 1..type_max (<= 31) */
	uint16_t known_flags;
	uint16_t reply_flag;       /**< set exactly on the types in reply_types */
	uint32_t reply_types;      /**< bit t: type t is a reply */
	uint32_t (*max_payload)(uint8_t type); /**< per-type payload limit */
	uint8_t type_stats_ok;
	uint8_t type_error;
	uint16_t stats_max;        /**< STATS_OK entries */
	uint8_t stat_name_max;     /**< STATS_OK name bytes */
	uint16_t errmsg_max;       /**< ERROR message bytes */
	uint8_t type_hello;        /**< handshake types; 0: no handshake */
	uint8_t type_challenge;
	uint8_t type_auth;
	uint8_t name_max;          /**< HELLO name bytes */
};

/** A decoded header; each codec copies it into its own header struct. */
struct frame_hdr {
	uint8_t type;
	uint16_t flags;
	uint64_t request_id;
	uint32_t payload_len;
};

bool frame_type_valid(const struct frame_proto *fp, unsigned int type);
bool frame_type_is_reply(const struct frame_proto *fp, unsigned int type);

/** Check the 24-byte header at @p buf (see the contract above). */
int frame_hdr_decode(const struct frame_proto *fp, const uint8_t *buf, size_t len, struct frame_hdr *hdr);

/** Write a header; the reply flag follows from @p type. No checks. */
void frame_hdr_encode(const struct frame_proto *fp, uint8_t *buf, uint8_t type, uint64_t req,
		      uint32_t payload_len);

/**
 * Start a message whose header announces @p payload_len and of which the
 * caller writes the first @p prefix_len payload bytes into @p buf: checks
 * that @p buf is not NULL (-MALFORMED), that payload_len is within the
 * type's limit and that header + prefix fit in @p cap (-TOO_LARGE), then
 * writes the header and returns 0.
 */
int frame_begin(const struct frame_proto *fp, uint8_t type, uint64_t req, uint64_t payload_len,
		uint64_t prefix_len, uint8_t *buf, size_t cap);

/** Header length + @p payload_len, as an encoder's return value. */
static inline int frame_total(uint64_t payload_len)
{
	return (int)(FRAME_HDR_LEN + payload_len);
}

/** A message of @p type with an empty payload. */
int frame_encode_empty(const struct frame_proto *fp, uint8_t type, uint64_t req, uint8_t *buf, size_t cap);

/** STATS_OK entry @p i, decoded: @p name is @p len bytes, not NUL-terminated. */
typedef void frame_stat_put_fn(void *ctx, uint16_t i, const uint8_t *name, uint8_t len, uint64_t value);
/** STATS_OK entry @p i, to encode: @p *name is NUL-terminated. */
typedef void frame_stat_get_fn(const void *ctx, uint16_t i, const char **name, uint64_t *value);

/**
 * Decode a STATS_OK payload @p p[0..n): each entry goes to @p put as it is
 * checked; *@p count is set only on success.
 */
int frame_stats_decode(const struct frame_proto *fp, const uint8_t *p, uint32_t n, frame_stat_put_fn *put,
		       void *ctx, uint16_t *count);

/** Encode STATS_OK with @p count entries read through @p get (@p ctx NULL only if count is 0). */
int frame_stats_encode(const struct frame_proto *fp, uint64_t req, frame_stat_get_fn *get, const void *ctx,
		       uint16_t count, uint8_t *buf, size_t cap);

/**
 * Decode an ERROR payload @p p[0..n) into @p code, @p msg_len and @p msg
 * (errmsg_max + 1 bytes, NUL-terminated on success). Nothing is written on
 * failure.
 */
int frame_error_decode(const struct frame_proto *fp, const uint8_t *p, uint32_t n, uint32_t *code,
		       uint16_t *msg_len, char *msg);

/** Encode ERROR; @p msg may be NULL or longer than errmsg_max (then cut). */
int frame_error_encode(const struct frame_proto *fp, uint64_t req, uint32_t code, const char *msg, uint8_t *buf,
		       size_t cap);

#define FRAME_NONCE_LEN 32u
#define FRAME_MAC_LEN   32u

/** Decode HELLO; @p name gets name_max + 1 bytes, NUL-terminated. Nothing is written on failure. */
int frame_hello_decode(const struct frame_proto *fp, const uint8_t *p, uint32_t n, uint8_t *version_min,
		       uint8_t *version_max, uint32_t *features, uint8_t *name_len, char *name);
int frame_challenge_decode(const uint8_t *p, uint32_t n, uint8_t *version, uint8_t nonce[FRAME_NONCE_LEN]);
int frame_auth_decode(const uint8_t *p, uint32_t n, uint8_t nonce[FRAME_NONCE_LEN], uint8_t mac[FRAME_MAC_LEN]);

int frame_hello_encode(const struct frame_proto *fp, uint64_t req, const char *name, uint8_t vmin, uint8_t vmax,
		       uint8_t *buf, size_t cap);
int frame_challenge_encode(const struct frame_proto *fp, uint64_t req, uint8_t version,
			   const uint8_t nonce[FRAME_NONCE_LEN], uint8_t *buf, size_t cap);
int frame_auth_encode(const struct frame_proto *fp, uint64_t req, const uint8_t nonce[FRAME_NONCE_LEN],
		      const uint8_t mac[FRAME_MAC_LEN], uint8_t *buf, size_t cap);

#endif /* FERRY_PROTO_FRAME_H */
