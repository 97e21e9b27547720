/**
 * @file page.h
 * The page-transport protocol: memory server <-> clients.
 *
 * Binary, little-endian, versioned. Every message is a fixed 24-byte header
 * followed by `payload_len` bytes of payload:
 *
 *     off size field
 *       0    4 magic        FERRY_PAGE_MAGIC ("FRRY" read as LE u32 0x59525246)
 *       4    1 version      FERRY_PAGE_VERSION
 *       5    1 type         enum ferry_page_type
 *       6    2 flags        FERRY_PAGE_F_*; unknown bits are rejected
 *       8    8 request_id   echoed in the reply (replies to one request share it)
 *      16    4 payload_len  bytes after the header, <= FERRY_PAGE_MAX_PAYLOAD
 *      20    4 reserved     must be zero
 *
 * Over RDMA, control messages (everything except READ/WRITE and their
 * replies) travel in SEND/RECV; READ and WRITE are one-sided verbs and never
 * appear on the wire as messages. Over TCP, the transport carries one-sided
 * READ/WRITE as the two-sided READ/WRITE messages below and serves them
 * inside the transport, so a memory server is passive after ALLOC on both.
 *
 * Fixed payload layouts (all reserved fields must be zero):
 *
 *     HELLO      8+n  u8 vmin, u8 vmax, u8 name_len, u8 reserved, u32 features, name[n]
 *     CHALLENGE   36  u8 version, u8 reserved[3], nonce[32]
 *     AUTH        64  nonce[32], mac[32]
 *     AUTH_OK     56  mac[32], u64 session_id, u64 quota_bytes, u32 max_data, u32 reserved
 *     ALLOC       16  u64 length, u32 flags, u32 reserved
 *     ALLOC_OK    24  u32 extent_id, u32 rkey, u64 base, u64 length
 *     FREE(_OK)    8  u32 extent_id, u32 reserved
 *     WRITE_OK     8  u32 count, u32 reserved
 *     STATS        0
 *     SHARE        8  u32 extent_id, u32 rights
 *     SHARE_OK    40  u32 extent_id, u32 rights, token[32]
 *     ATTACH      32  token[32]
 *     ATTACH_OK   32  u32 attach_id, u32 rkey, u64 base, u64 length, u32 rights, u32 reserved
 *     DETACH(_OK)  8  u32 attach_id, u32 reserved
 *     UNSHARE      8  u32 extent_id, u32 reserved
 *     UNSHARE_OK   8  u32 extent_id, u32 revoked (attachments revoked)
 *     KEEP         8  u32 extent_id, u32 reserved
 *     KEEP_OK     40  u32 extent_id, u32 reserved, token[32]
 *     CLAIM       32  token[32]
 *     CLAIM_OK    24  u32 extent_id, u32 rkey, u64 base, u64 length (ALLOC_OK's layout)
 *     DISCARD     32  token[32]
 *     DISCARD_OK   8  u64 length (bytes returned to the pool)
 *   rights is a non-empty subset of FERRY_PAGE_SHARE_READ|WRITE (other bits:
 *   FERRY_E_BAD_FLAGS, none: FERRY_E_MALFORMED).
 *   READ/WRITE/READ_DATA, STATS_OK and ERROR are described at their structs.
 *
 * Session:
 *   C->S HELLO(client name, version range)   S->C CHALLENGE(server nonce)
 *   C->S AUTH(client nonce, HMAC)             S->C AUTH_OK(server HMAC, quota) | ERROR
 *   then ALLOC_EXTENT / FREE_EXTENT / STATS, each answered by its *_OK or ERROR,
 *   and READ / WRITE vectors addressed by (key, offset, length).
 *
 * Extent sharing (types appended in the same version; a server that predates
 * them rejects them as FERRY_E_UNKNOWN_TYPE):
 *   owner    C->S SHARE(extent_id, rights)  S->C SHARE_OK(token) | ERROR
 *   attacher C->S ATTACH(token)             S->C ATTACH_OK(attach_id, rkey, base, length, rights) | ERROR
 *   attacher C->S DETACH(attach_id)         S->C DETACH_OK | ERROR
 *   owner    C->S UNSHARE(extent_id)        S->C UNSHARE_OK(revoked) | ERROR
 * A share is an explicit, authenticated grant: the token is 32 random bytes
 * known only to the owner and whoever it hands the token to (out of band),
 * and it is usable only by an authenticated session of the same server while
 * the share exists. ATTACH registers the extent's exact range again, in the
 * attacher's own protection domain with the granted rights only, so the
 * attachment's rkey works on the attacher's connection and nowhere else,
 * and a read-only attachment refuses one-sided WRITE with a remote access
 * error. UNSHARE, the owner's FREE of the extent and the end of the owner's
 * session revoke every attachment of the extent first (its registration is
 * gone: later one-sided ops with that rkey fail and touch nothing); the end
 * of an attacher's session drops its attachments. Attachments do not count
 * against the attacher's quota. Errors: a token that names no live share
 * (forged, revoked, another server's) is BAD_TOKEN; DETACH of an id that is
 * not one of this session's attachments is UNKNOWN_ATTACH; SHARE/UNSHARE of
 * an extent the session does not own is UNKNOWN_EXTENT; too many shares of
 * one extent or attachments of one session is LIMIT.
 *
 * Kept extents (types appended in the same version, after sharing):
 *   keeper   C->S KEEP(extent_id)   S->C KEEP_OK(extent_id, claim token) | ERROR
 *   claimer  C->S CLAIM(token)      S->C CLAIM_OK(extent_id, rkey, base, length) | ERROR
 *   anyone   C->S DISCARD(token)    S->C DISCARD_OK(length) | ERROR
 * KEEP detaches one of the sender's extents from its session so that it
 * outlives it: the extent's shares are revoked, its window on the keeper's
 * connection is unbound (the old rkey stops working at once), its bytes
 * move from the keeper's quota to the server-wide kept-bytes limit, and the
 * reply carries a claim token: 32 random bytes that are the only name of
 * the kept extent. CLAIM presents the token from any authenticated session
 * of the same server (another process, another node: whoever holds the
 * cluster secret and the token). The extent becomes the claimer's own,
 * counted against its quota, reachable through a new window bound to the
 * claimer's connection only, with its bytes untouched; the token is spent.
 * DISCARD frees a kept extent without claiming it (scrubbed, back to the
 * pool) and spends the token too. Trust model: the cluster secret admits a
 * client, the token is the capability (compared in constant time); a
 * client that leaks a token leaks the extent. Kept extents live in the
 * server's memory only: they are lost if ferry-memsrv itself stops or
 * restarts. Errors: KEEP of an extent the session does not own is
 * UNKNOWN_EXTENT; KEEP beyond the server's kept-bytes or kept-extents limit
 * is LIMIT; CLAIM/DISCARD of a token that names no kept extent (forged,
 * spent, discarded, another server's) is BAD_TOKEN; CLAIM beyond the
 * claimer's quota is QUOTA (the extent stays kept, the token stays valid).
 *
 * Authentication is a mutual challenge-response over a cluster secret
 * (HMAC-SHA-256, see dataplane/common/auth.h):
 *   client_mac = HMAC(secret, "ferry-page-c" | server_nonce | client_nonce | name)
 *   server_mac = HMAC(secret, "ferry-page-s" | client_nonce | server_nonce | name)
 *
 * This header and page.c are pure: no I/O, no allocation. Decoders check every
 * length and count against the buffer they are given and never read past it;
 * on failure they return a stable FERRY_E_* code (also the code carried by
 * ERROR messages) and leave the output unspecified.
 */
#ifndef FERRY_PROTO_PAGE_H
#define FERRY_PROTO_PAGE_H

#include <stddef.h>
#include <stdint.h>

#define FERRY_PAGE_MAGIC        0x59525246u  /* "FRRY" */
#define FERRY_PAGE_VERSION      1u
#define FERRY_PAGE_HDR_LEN      24u
/** Largest payload: a full READ reply or WRITE of FERRY_PAGE_MAX_DATA plus its vector. */
#define FERRY_PAGE_MAX_DATA     (4u << 20)
#define FERRY_PAGE_MAX_IOV      1024u
#define FERRY_PAGE_IOV_LEN      16u          /* bytes per vector entry on the wire */
#define FERRY_PAGE_MAX_PAYLOAD  (FERRY_PAGE_MAX_DATA + 8u + FERRY_PAGE_MAX_IOV * FERRY_PAGE_IOV_LEN)
#define FERRY_PAGE_NONCE_LEN    32u
#define FERRY_PAGE_MAC_LEN      32u
#define FERRY_PAGE_NAME_MAX     64u          /* client name bytes, no NUL on the wire */
#define FERRY_PAGE_ERRMSG_MAX   256u
#define FERRY_PAGE_MAX_STATS    64u
#define FERRY_PAGE_STAT_NAME_MAX 32u
#define FERRY_PAGE_TOKEN_LEN    32u          /* share token bytes */
/** Rights of a share / attachment (SHARE, SHARE_OK, ATTACH_OK). */
#define FERRY_PAGE_SHARE_READ   0x1u
#define FERRY_PAGE_SHARE_WRITE  0x2u
#define FERRY_PAGE_SHARE_RIGHTS (FERRY_PAGE_SHARE_READ | FERRY_PAGE_SHARE_WRITE)
/** Every message except READ/WRITE/READ_DATA fits in this many bytes (header included). */
#define FERRY_PAGE_CTRL_MAX     4096u

/** Header flag: this message is a reply (set on every *_OK, READ_DATA, WRITE_OK, ERROR). */
#define FERRY_PAGE_F_REPLY      0x0001u
#define FERRY_PAGE_F_KNOWN      (FERRY_PAGE_F_REPLY)

/** Message types. Values are stable on the wire. */
enum ferry_page_type {
	FERRY_PAGE_HELLO        = 1,
	FERRY_PAGE_CHALLENGE    = 2,
	FERRY_PAGE_AUTH         = 3,
	FERRY_PAGE_AUTH_OK      = 4,
	FERRY_PAGE_ALLOC        = 5,
	FERRY_PAGE_ALLOC_OK     = 6,
	FERRY_PAGE_FREE         = 7,
	FERRY_PAGE_FREE_OK      = 8,
	FERRY_PAGE_READ         = 9,
	FERRY_PAGE_READ_DATA    = 10,
	FERRY_PAGE_WRITE        = 11,
	FERRY_PAGE_WRITE_OK     = 12,
	FERRY_PAGE_STATS        = 13,
	FERRY_PAGE_STATS_OK     = 14,
	FERRY_PAGE_ERROR        = 15,
	FERRY_PAGE_SHARE        = 16,
	FERRY_PAGE_SHARE_OK     = 17,
	FERRY_PAGE_ATTACH       = 18,
	FERRY_PAGE_ATTACH_OK    = 19,
	FERRY_PAGE_DETACH       = 20,
	FERRY_PAGE_DETACH_OK    = 21,
	FERRY_PAGE_UNSHARE      = 22,
	FERRY_PAGE_UNSHARE_OK   = 23,
	FERRY_PAGE_KEEP         = 24,
	FERRY_PAGE_KEEP_OK      = 25,
	FERRY_PAGE_CLAIM        = 26,
	FERRY_PAGE_CLAIM_OK     = 27,
	FERRY_PAGE_DISCARD      = 28,
	FERRY_PAGE_DISCARD_OK   = 29,
	FERRY_PAGE_TYPE_MAX     = 29,
};

/**
 * Stable error codes: returned by decoders and carried in ERROR messages.
 * Never renumber; append only.
 */
enum ferry_errcode {
	FERRY_E_OK              = 0,
	FERRY_E_TRUNCATED       = 1,  /**< buffer shorter than the header or payload says */
	FERRY_E_BAD_MAGIC       = 2,
	FERRY_E_VERSION         = 3,  /**< unsupported protocol version */
	FERRY_E_UNKNOWN_TYPE    = 4,
	FERRY_E_BAD_FLAGS       = 5,
	FERRY_E_TOO_LARGE       = 6,  /**< payload/count/length above a protocol limit */
	FERRY_E_MALFORMED       = 7,  /**< fields inconsistent with each other or the payload length */
	FERRY_E_AUTH_FAILED     = 8,
	FERRY_E_NOT_AUTHENTICATED = 9,
	FERRY_E_POOL_FULL       = 10,
	FERRY_E_QUOTA           = 11, /**< client's quota would be exceeded */
	FERRY_E_UNKNOWN_EXTENT  = 12,
	FERRY_E_OUT_OF_RANGE    = 13, /**< offset/length outside the extent */
	FERRY_E_ACCESS          = 14, /**< key not valid on this connection (remote access error) */
	FERRY_E_BUSY            = 15, /**< try again later (server backpressure) */
	FERRY_E_INTERNAL        = 16,
	FERRY_E_SHUTDOWN        = 17, /**< server shutting down */
	FERRY_E_UNEXPECTED      = 18, /**< valid message, wrong state (e.g. AUTH before HELLO) */
	FERRY_E_BAD_ALIGNMENT   = 19, /**< length/offset not a multiple of the required unit */
	FERRY_E_BAD_TOKEN       = 20, /**< share token names no live share on this server */
	FERRY_E_UNKNOWN_ATTACH  = 21, /**< not one of this session's attachments */
	FERRY_E_LIMIT           = 22, /**< too many shares of the extent / attachments of the session */
	FERRY_E_CODE_MAX        = 22,
};

/** Decoded fixed header. */
struct ferry_page_hdr {
	uint8_t type;
	uint16_t flags;
	uint64_t request_id;
	uint32_t payload_len;
};

struct ferry_page_hello {
	uint8_t version_min, version_max; /**< range the client speaks */
	uint32_t features;                /**< reserved, 0 today */
	uint8_t name_len;                 /**< 1..FERRY_PAGE_NAME_MAX */
	char name[FERRY_PAGE_NAME_MAX + 1]; /**< NUL-terminated copy; must be printable ASCII */
};

struct ferry_page_challenge {
	uint8_t version;                  /**< version the server picked */
	uint8_t nonce[FERRY_PAGE_NONCE_LEN];
};

struct ferry_page_auth {
	uint8_t nonce[FERRY_PAGE_NONCE_LEN];
	uint8_t mac[FERRY_PAGE_MAC_LEN];
};

struct ferry_page_auth_ok {
	uint8_t mac[FERRY_PAGE_MAC_LEN];
	uint64_t session_id;
	uint64_t quota_bytes;             /**< most this client may hold at once */
	uint32_t max_data;                /**< largest READ/WRITE data per message the server takes */
};

struct ferry_page_alloc {
	uint64_t length;                  /**< bytes, > 0, multiple of 4096 */
	uint32_t flags;                   /**< reserved, 0 */
};

struct ferry_page_extent {
	uint32_t extent_id;
	uint32_t rkey;                    /**< key for one-sided access to this extent */
	uint64_t base;                    /**< remote address of the extent's first byte */
	uint64_t length;
};

struct ferry_page_free {
	uint32_t extent_id;
};

/** SHARE: grant @p rights on one of the sender's extents. */
struct ferry_page_share {
	uint32_t extent_id;
	uint32_t rights;                  /**< FERRY_PAGE_SHARE_* bits, non-empty */
};

/** SHARE_OK: the grant's bearer token. */
struct ferry_page_share_ok {
	uint32_t extent_id;
	uint32_t rights;
	uint8_t token[FERRY_PAGE_TOKEN_LEN];
};

struct ferry_page_attach {
	uint8_t token[FERRY_PAGE_TOKEN_LEN];
};

/** ATTACH_OK: a registration of the shared extent valid on the attacher's connection only. */
struct ferry_page_attach_ok {
	uint32_t attach_id;               /**< names the attachment in DETACH */
	uint32_t rkey;
	uint64_t base;
	uint64_t length;
	uint32_t rights;
};

/** DETACH and DETACH_OK. */
struct ferry_page_detach {
	uint32_t attach_id;
};

/** UNSHARE (revoked is 0 on the wire: reserved) and UNSHARE_OK. */
struct ferry_page_unshare {
	uint32_t extent_id;
	uint32_t revoked;                 /**< UNSHARE_OK: attachments revoked */
};

/** KEEP (token unused) and KEEP_OK: the kept extent's claim token. */
struct ferry_page_keep {
	uint32_t extent_id;
	uint8_t token[FERRY_PAGE_TOKEN_LEN];   /**< KEEP_OK only */
};

/** CLAIM and DISCARD: the claim token. */
struct ferry_page_claim {
	uint8_t token[FERRY_PAGE_TOKEN_LEN];
};

/** DISCARD_OK. */
struct ferry_page_discard_ok {
	uint64_t length;                  /**< bytes of the discarded extent */
};

/** One vector entry of READ/WRITE: `length` bytes at `offset` of the region keyed `key`. */
struct ferry_page_iov {
	uint32_t key;
	uint32_t length;                  /**< 1..FERRY_PAGE_MAX_DATA */
	uint64_t offset;                  /**< remote address; offset + length must not overflow */
};

/**
 * READ and WRITE payload: u32 count, u32 reserved(0), count x 16-byte entries
 * {u32 key, u32 length, u64 offset}, then for WRITE exactly sum(length) data
 * bytes. READ_DATA payload: u32 count, u32 reserved(0), then the data of every
 * entry of the request, concatenated in order.
 *
 * The decoded form points into the decoded buffer (zero-copy): read entry i
 * with ferry_page_rw_entry(). Decoding has already checked every entry.
 */
struct ferry_page_rw {
	uint32_t count;                   /**< 1..FERRY_PAGE_MAX_IOV (READ_DATA: as in the request) */
	const uint8_t *entries;           /**< count * FERRY_PAGE_IOV_LEN bytes (NULL for READ_DATA) */
	uint64_t data_len;                /**< WRITE: sum of lengths; READ_DATA: bytes present; READ: sum requested */
	const uint8_t *data;              /**< WRITE and READ_DATA only */
};

struct ferry_page_write_ok {
	uint32_t count;
};

struct ferry_page_stat {
	char name[FERRY_PAGE_STAT_NAME_MAX + 1];  /**< [a-z0-9_]+, NUL-terminated */
	uint64_t value;
};

/** STATS_OK payload: u16 count, then count x {u8 name_len, name bytes, u64 value}. */
struct ferry_page_stats_ok {
	uint16_t count;                   /**< 0..FERRY_PAGE_MAX_STATS */
	struct ferry_page_stat stats[FERRY_PAGE_MAX_STATS];
};

/** ERROR payload: u32 code, u16 msg_len, msg bytes (no NUL, <= FERRY_PAGE_ERRMSG_MAX). */
struct ferry_page_error {
	uint32_t code;                    /**< enum ferry_errcode; unknown codes are kept, not rejected */
	uint16_t msg_len;
	char msg[FERRY_PAGE_ERRMSG_MAX + 1];
};

/** A decoded message: header plus the body selected by hdr.type. */
struct ferry_page_msg {
	struct ferry_page_hdr hdr;
	union {
		struct ferry_page_hello hello;
		struct ferry_page_challenge challenge;
		struct ferry_page_auth auth;
		struct ferry_page_auth_ok auth_ok;
		struct ferry_page_alloc alloc;
		struct ferry_page_extent alloc_ok;
		struct ferry_page_free free;       /**< FREE and FREE_OK */
		struct ferry_page_rw rw;           /**< READ, READ_DATA, WRITE */
		struct ferry_page_write_ok write_ok;
		struct ferry_page_stats_ok stats_ok;
		struct ferry_page_error error;
		struct ferry_page_share share;
		struct ferry_page_share_ok share_ok;
		struct ferry_page_attach attach;
		struct ferry_page_attach_ok attach_ok;
		struct ferry_page_detach detach;   /**< DETACH and DETACH_OK */
		struct ferry_page_unshare unshare; /**< UNSHARE and UNSHARE_OK */
		struct ferry_page_keep keep;       /**< KEEP and KEEP_OK */
		struct ferry_page_claim claim;     /**< CLAIM and DISCARD */
		struct ferry_page_extent claim_ok;
		struct ferry_page_discard_ok discard_ok;
	} u;                                   /**< STATS has an empty payload */
};

/* ---------------------------------------------------------------- decoding */

/**
 * Decode and validate the 24-byte header at @p buf.
 * Checks magic, version, type in range, flags known, reserved zero and
 * payload_len <= FERRY_PAGE_MAX_PAYLOAD. Does not require the payload to be
 * present. @return FERRY_E_OK or the code of the first violation.
 */
int ferry_page_hdr_decode(const uint8_t *buf, size_t len, struct ferry_page_hdr *hdr);

/**
 * Decode one whole message (header + payload) from @p buf[0..len).
 * @p len must be at least FERRY_PAGE_HDR_LEN + payload_len; extra bytes after
 * the message are ignored (stream framing is the caller's business).
 * Validates every field of the body for its type. Pointers in @p msg
 * (rw.entries, rw.data) point into @p buf.
 * @return FERRY_E_OK or a FERRY_E_* code.
 */
int ferry_page_decode(const uint8_t *buf, size_t len, struct ferry_page_msg *msg);

/**
 * Decode the vector part of a READ or WRITE whose header said @p payload_len,
 * without needing the data: @p vec holds the first @p vec_len bytes of the
 * payload (at least 8 + count*16). Transports use this to check a request
 * before they stream a WRITE's data straight into registered memory.
 * Checks count, every entry (length > 0, <= FERRY_PAGE_MAX_DATA, offset +
 * length does not overflow), the sum of lengths <= FERRY_PAGE_MAX_DATA, and
 * that payload_len is exactly 8 + count*16 (READ) or 8 + count*16 + sum
 * (WRITE). rw->data is NULL; rw->data_len is the sum of lengths.
 */
int ferry_page_rw_decode(uint8_t type, uint32_t payload_len, const uint8_t *vec, size_t vec_len,
			 struct ferry_page_rw *rw);

/** Entry @p i (< rw->count) of a decoded READ/WRITE. */
void ferry_page_rw_entry(const struct ferry_page_rw *rw, uint32_t i, struct ferry_page_iov *iov);

/* ---------------------------------------------------------------- encoding */

/*
 * Encoders write one whole message into @p buf of @p cap bytes and return the
 * number of bytes written, or a negative -FERRY_E_TOO_LARGE when it does not
 * fit or an argument breaks a protocol limit (-FERRY_E_MALFORMED for bad
 * arguments such as an empty name). Replies set FERRY_PAGE_F_REPLY.
 */
int ferry_page_encode_hdr(uint8_t type, uint16_t flags, uint64_t request_id, uint32_t payload_len,
			  uint8_t *buf, size_t cap);
int ferry_page_encode_hello(uint64_t req, const char *name, uint8_t vmin, uint8_t vmax,
			    uint8_t *buf, size_t cap);
int ferry_page_encode_challenge(uint64_t req, uint8_t version, const uint8_t nonce[FERRY_PAGE_NONCE_LEN],
				uint8_t *buf, size_t cap);
int ferry_page_encode_auth(uint64_t req, const uint8_t nonce[FERRY_PAGE_NONCE_LEN],
			   const uint8_t mac[FERRY_PAGE_MAC_LEN], uint8_t *buf, size_t cap);
int ferry_page_encode_auth_ok(uint64_t req, const struct ferry_page_auth_ok *ok, uint8_t *buf, size_t cap);
int ferry_page_encode_alloc(uint64_t req, uint64_t length, uint32_t flags, uint8_t *buf, size_t cap);
int ferry_page_encode_alloc_ok(uint64_t req, const struct ferry_page_extent *ext, uint8_t *buf, size_t cap);
int ferry_page_encode_free(uint64_t req, uint32_t extent_id, uint8_t *buf, size_t cap);
int ferry_page_encode_free_ok(uint64_t req, uint32_t extent_id, uint8_t *buf, size_t cap);
int ferry_page_encode_stats(uint64_t req, uint8_t *buf, size_t cap);
int ferry_page_encode_stats_ok(uint64_t req, const struct ferry_page_stat *stats, uint16_t count,
			       uint8_t *buf, size_t cap);
/** @p msg may be NULL or longer than FERRY_PAGE_ERRMSG_MAX (then truncated). */
int ferry_page_encode_error(uint64_t req, uint32_t code, const char *msg, uint8_t *buf, size_t cap);
int ferry_page_encode_write_ok(uint64_t req, uint32_t count, uint8_t *buf, size_t cap);
int ferry_page_encode_share(uint64_t req, uint32_t extent_id, uint32_t rights, uint8_t *buf, size_t cap);
int ferry_page_encode_share_ok(uint64_t req, const struct ferry_page_share_ok *ok, uint8_t *buf, size_t cap);
int ferry_page_encode_attach(uint64_t req, const uint8_t token[FERRY_PAGE_TOKEN_LEN], uint8_t *buf, size_t cap);
int ferry_page_encode_attach_ok(uint64_t req, const struct ferry_page_attach_ok *ok, uint8_t *buf, size_t cap);
int ferry_page_encode_detach(uint64_t req, uint32_t attach_id, uint8_t *buf, size_t cap);
int ferry_page_encode_detach_ok(uint64_t req, uint32_t attach_id, uint8_t *buf, size_t cap);
int ferry_page_encode_unshare(uint64_t req, uint32_t extent_id, uint8_t *buf, size_t cap);
int ferry_page_encode_unshare_ok(uint64_t req, uint32_t extent_id, uint32_t revoked, uint8_t *buf, size_t cap);
int ferry_page_encode_keep(uint64_t req, uint32_t extent_id, uint8_t *buf, size_t cap);
int ferry_page_encode_keep_ok(uint64_t req, uint32_t extent_id, const uint8_t token[FERRY_PAGE_TOKEN_LEN],
			      uint8_t *buf, size_t cap);
int ferry_page_encode_claim(uint64_t req, const uint8_t token[FERRY_PAGE_TOKEN_LEN], uint8_t *buf, size_t cap);
int ferry_page_encode_claim_ok(uint64_t req, const struct ferry_page_extent *ext, uint8_t *buf, size_t cap);
int ferry_page_encode_discard(uint64_t req, const uint8_t token[FERRY_PAGE_TOKEN_LEN], uint8_t *buf, size_t cap);
int ferry_page_encode_discard_ok(uint64_t req, uint64_t length, uint8_t *buf, size_t cap);

/**
 * Encode the header and vector of a READ or WRITE (type), *without* the data:
 * payload_len is set to 8 + count*16 + data_len so the caller can send the
 * data bytes right after (writev). For READ pass data_len 0.
 */
int ferry_page_encode_rw_prefix(uint8_t type, uint64_t req, const struct ferry_page_iov *iov, uint32_t count,
				uint64_t data_len, uint8_t *buf, size_t cap);

/** Encode the header and 8-byte prefix of READ_DATA whose data (@p data_len bytes) the caller sends after. */
int ferry_page_encode_read_data_prefix(uint64_t req, uint32_t count, uint64_t data_len, uint8_t *buf, size_t cap);

/* ---------------------------------------------------------------- naming */

/** "HELLO", "READ", ...; "UNKNOWN" for out-of-range values. */
const char *ferry_page_type_name(uint8_t type);
/** Stable human text for a FERRY_E_* code ("pool full"); "unknown error" otherwise. */
const char *ferry_errcode_str(uint32_t code);

#endif /* FERRY_PROTO_PAGE_H */
