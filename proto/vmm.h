/**
 * @file vmm.h
 * The VMM socket protocol: an existing VMM <-> Ferry's pager (the VMM backend).
 *
 * A Unix stream socket. The VMM connects, is identified by its peer
 * credentials (SO_PEERCRED / SO_PEERGROUPS, checked by the server against an
 * allow-list, see ferry_vmmp_allow_parse()), and hands over its guest memory:
 * REGISTER carries the VM id, the guest memory regions and, in SCM_RIGHTS, the
 * VMM's userfaultfd plus the memory files (memfd/shm/hugetlbfs) the regions
 * live in. Later requests: FREE_HINT (ranges the guest freed), NOTIFY
 * (SUSPEND/RESUME), STATE_PUT/STATE_GET (an opaque device-state blob, in
 * chunks), STATS and UNREGISTER. Every request gets exactly one reply: its
 * *_OK form or ERROR with a stable code and a message. The full specification
 * for VMM authors is docs/vmm-protocol.md.
 *
 * Binary, little-endian, versioned. Every message is a 24-byte header followed
 * by `payload_len` bytes of payload (same shape as the page protocol's, with
 * its own magic):
 *
 *     off size field
 *       0    4 magic        FERRY_VMMP_MAGIC ("FVMM" read as LE u32 0x4D4D5646)
 *       4    1 version      FERRY_VMMP_VERSION
 *       5    1 type         enum ferry_vmmp_type
 *       6    2 flags        FERRY_VMMP_F_*; unknown bits are rejected
 *       8    8 request_id   chosen by the VMM, echoed in the reply
 *      16    4 payload_len  bytes after the header (per-type limit, see below)
 *      20    4 reserved     must be zero
 *
 * Direction. The VMM sends requests (REGISTER .. UNREGISTER) and the server
 * answers each; the server may also send *server requests* (PAUSE, RESUME,
 * DROP_PTES) that the VMM answers with OK or ERROR, and one-way NOTICEs.
 * FERRY_VMMP_F_SERVER marks every message of that second direction: set on
 * a server request or NOTICE and on the VMM's reply to a server request,
 * never on anything else. So either side tells a reply to its own request
 * (F_REPLY) from a reply to the peer's request (F_REPLY | F_SERVER), and
 * request ids of the two directions are independent. The server sends
 * server requests only to a VMM that registered with
 * FERRY_VMMP_REG_F_SERVER_REQ (REGISTER_OK then carries
 * FERRY_VMMP_SF_SERVER_REQ); older VMMs never see them.
 *
 * Version: FERRY_VMMP_VERSION stays 1; everything added since is negotiated
 * by REGISTER flags and REGISTER_OK feature bits (an older server refuses
 * REGISTER flags with FERRY_VMMP_E_BAD_FLAGS, so a VMM learns at once).
 * A VMM that receives a server request of a type it does not know (a header
 * with F_SERVER, not F_REPLY, type above its FERRY_VMMP_TYPE_MAX) gets
 * FERRY_VMMP_E_UNSUPPORTED from ferry_vmmp_hdr_decode() with the header
 * filled: it skips payload_len bytes and answers ERROR(UNSUPPORTED).
 *
 * File descriptors: only REGISTER carries any (1 userfaultfd + the memory
 * files it declares); every other message must arrive with none. The
 * decoder takes the number of descriptors that arrived with the message and
 * checks it (FERRY_VMMP_E_FD_MISMATCH).
 *
 * The same module decodes the *Firecracker UFFD handshake* (one JSON array of
 * region objects plus the uffd, sent once by Firecracker when it restores a
 * snapshot with the `Uffd` memory backend): ferry_vmmp_fc_decode(). That is
 * the only part that allocates (jansson builds a tree while parsing).
 *
 * The binary codec is pure: no I/O, no allocation. Decoders check every
 * length and count against the buffer they are given and never read past it;
 * on failure they return a stable FERRY_VMMP_E_* code (also the code carried
 * by ERROR replies) and leave the output unspecified.
 */
#ifndef FERRY_PROTO_VMM_H
#define FERRY_PROTO_VMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FERRY_VMMP_MAGIC          0x4D4D5646u  /* "FVMM" */
#define FERRY_VMMP_VERSION        1u
#define FERRY_VMMP_HDR_LEN        24u

#define FERRY_VMMP_VM_ID_MAX      64u          /**< VM id bytes, printable ASCII without space */
#define FERRY_VMMP_MAX_REGIONS    64u
#define FERRY_VMMP_MAX_MEMFDS     16u          /**< memory files per REGISTER */
#define FERRY_VMMP_MAX_FDS        (1u + FERRY_VMMP_MAX_MEMFDS) /**< uffd + memory files */
#define FERRY_VMMP_REGION_LEN     40u          /**< bytes per region on the wire */
#define FERRY_VMMP_MAX_HINTS      4096u        /**< ranges per FREE_HINT */
#define FERRY_VMMP_HINT_LEN       16u          /**< bytes per range on the wire */
#define FERRY_VMMP_HINT_UNIT      4096u        /**< FREE_HINT ranges are 4 KiB aligned */
#define FERRY_VMMP_MAX_CHUNK      (1u << 20)   /**< state bytes per STATE_PUT / STATE_DATA */
#define FERRY_VMMP_STATE_MAX      (1ull << 30) /**< largest device-state blob */
#define FERRY_VMMP_ERRMSG_MAX     256u
#define FERRY_VMMP_MAX_STATS      64u
#define FERRY_VMMP_STAT_NAME_MAX  32u
/** Guest-physical addresses end at or below this (52-bit physical address space). */
#define FERRY_VMMP_GPA_LIMIT      (1ull << 52)
/** Host virtual addresses end at or below this (57-bit, 5-level paging). */
#define FERRY_VMMP_HVA_LIMIT      (1ull << 57)
#define FERRY_VMMP_PAGE_4K        4096u
#define FERRY_VMMP_PAGE_2M        (2u << 20)
#define FERRY_VMMP_MAX_DROP      4096u        /**< ranges per DROP_PTES */
/** Largest payload of any message (STATE_PUT / STATE_DATA with a full chunk). */
#define FERRY_VMMP_MAX_PAYLOAD    (16u + FERRY_VMMP_MAX_CHUNK)
/** Largest whole message. */
#define FERRY_VMMP_MAX_MSG        (FERRY_VMMP_HDR_LEN + FERRY_VMMP_MAX_PAYLOAD)

/** Header flag: this message is a reply (set on every *_OK, STATE_DATA, OK and ERROR). */
#define FERRY_VMMP_F_REPLY        0x0001u
/**
 * Header flag: server-initiated exchange (a server request or NOTICE, or the
 * VMM's reply to a server request). See "Direction" above.
 */
#define FERRY_VMMP_F_SERVER       0x0002u
#define FERRY_VMMP_F_KNOWN        (FERRY_VMMP_F_REPLY | FERRY_VMMP_F_SERVER)

/** Message types. Values are stable on the wire. */
enum ferry_vmmp_type {
	FERRY_VMMP_REGISTER     = 1,  /**< VMM -> server; carries fds */
	FERRY_VMMP_REGISTER_OK  = 2,
	FERRY_VMMP_FREE_HINT    = 3,  /**< reply: OK(bytes newly unused) */
	FERRY_VMMP_NOTIFY       = 4,  /**< reply: OK(0) */
	FERRY_VMMP_STATE_PUT    = 5,  /**< reply: OK(bytes of the blob received so far) */
	FERRY_VMMP_STATE_GET    = 6,  /**< reply: STATE_DATA */
	FERRY_VMMP_STATE_DATA   = 7,
	FERRY_VMMP_STATS        = 8,  /**< reply: STATS_OK */
	FERRY_VMMP_STATS_OK     = 9,
	FERRY_VMMP_UNREGISTER   = 10, /**< reply: OK(0) */
	FERRY_VMMP_OK           = 11,
	FERRY_VMMP_ERROR        = 12,
	/* Server -> VMM (F_SERVER set); the VMM's reply is OK or ERROR with F_REPLY | F_SERVER. */
	FERRY_VMMP_PAUSE        = 13, /**< stop the vCPUs; reply OK(device-state bytes uploaded) */
	FERRY_VMMP_RESUME       = 14, /**< run the vCPUs (here); reply OK(0) */
	FERRY_VMMP_DROP_PTES    = 15, /**< MADV_DONTNEED guest ranges of a memory file; reply OK(bytes) */
	FERRY_VMMP_NOTICE       = 16, /**< one-way, no reply */
	FERRY_VMMP_TYPE_MAX     = 16,
};

/**
 * Stable error codes: returned by decoders and carried in ERROR replies.
 * Never renumber; append only. 0..7 mean the same as the page protocol's.
 */
enum ferry_vmmp_errcode {
	FERRY_VMMP_E_OK             = 0,
	FERRY_VMMP_E_TRUNCATED      = 1,  /**< buffer shorter than the header or payload says */
	FERRY_VMMP_E_BAD_MAGIC      = 2,
	FERRY_VMMP_E_VERSION        = 3,  /**< unsupported protocol version */
	FERRY_VMMP_E_UNKNOWN_TYPE   = 4,
	FERRY_VMMP_E_BAD_FLAGS      = 5,  /**< unknown or contradictory flag/mode bits */
	FERRY_VMMP_E_TOO_LARGE      = 6,  /**< length/count/address above a protocol limit */
	FERRY_VMMP_E_MALFORMED      = 7,  /**< fields inconsistent with each other or the payload length */
	FERRY_VMMP_E_NOT_ALLOWED    = 8,  /**< peer credentials not in the server's allow-list */
	FERRY_VMMP_E_BAD_ALIGNMENT  = 9,  /**< address/size not a multiple of the page size */
	FERRY_VMMP_E_PAGE_SIZE      = 10, /**< page size other than 4 KiB or 2 MiB */
	FERRY_VMMP_E_OVERLAP        = 11, /**< regions (or hint ranges) overlap */
	FERRY_VMMP_E_BAD_VM_ID      = 12, /**< empty or non-printable VM id */
	FERRY_VMMP_E_FD_MISMATCH    = 13, /**< descriptors received != descriptors declared */
	FERRY_VMMP_E_UNEXPECTED     = 14, /**< valid message, wrong state (e.g. a hint before REGISTER) */
	FERRY_VMMP_E_EXISTS         = 15, /**< VM id already registered */
	FERRY_VMMP_E_OUT_OF_RANGE   = 16, /**< hint or state offset outside what exists */
	FERRY_VMMP_E_NO_STATE       = 17, /**< STATE_GET with no blob stored */
	FERRY_VMMP_E_STATE_SEQUENCE = 18, /**< STATE_PUT chunk out of order or total changed */
	FERRY_VMMP_E_BUSY           = 19, /**< try again later */
	FERRY_VMMP_E_INTERNAL       = 20,
	FERRY_VMMP_E_SHUTDOWN       = 21, /**< server shutting down */
	FERRY_VMMP_E_UNSUPPORTED    = 22, /**< well-formed but not supported (event, mode, feature) */
	FERRY_VMMP_E_JSON_SYNTAX    = 23, /**< Firecracker handshake: not one well-formed JSON value */
	FERRY_VMMP_E_JSON_SHAPE     = 24, /**< Firecracker handshake: not a non-empty array of objects */
	FERRY_VMMP_E_MISSING_FIELD  = 25, /**< Firecracker handshake: a required field is absent */
	FERRY_VMMP_E_WRONG_TYPE     = 26, /**< Firecracker handshake: a field has the wrong JSON type */
	FERRY_VMMP_E_BAD_NUMBER     = 27, /**< Firecracker handshake: negative or out-of-range number */
	FERRY_VMMP_E_CODE_MAX       = 27,
};

/** Region registration modes: the uffd modes the VMM registered the range with (kernel values). */
#define FERRY_VMMP_MODE_MISSING   0x01u  /**< UFFDIO_REGISTER_MODE_MISSING */
#define FERRY_VMMP_MODE_WP        0x02u  /**< UFFDIO_REGISTER_MODE_WP */
#define FERRY_VMMP_MODE_MINOR     0x04u  /**< UFFDIO_REGISTER_MODE_MINOR (needs a memory file) */
#define FERRY_VMMP_MODE_KNOWN     0x07u

/** NOTIFY events. */
#define FERRY_VMMP_EV_SUSPEND     1u     /**< the VMM paused the vCPUs */
#define FERRY_VMMP_EV_RESUME      2u     /**< the VMM resumed the vCPUs */

/** REGISTER_OK server feature bits (informational; clients ignore unknown bits). */
#define FERRY_VMMP_SF_FREE_HINTS  0x01u  /**< FREE_HINT ranges are acted on */
#define FERRY_VMMP_SF_STATE       0x02u  /**< STATE_PUT/STATE_GET are available */
#define FERRY_VMMP_SF_WRITE_TRACK 0x04u  /**< the server tracks writes (needs MODE_WP) */
#define FERRY_VMMP_SF_MINOR       0x08u  /**< the server samples reads with minor faults */
#define FERRY_VMMP_SF_SERVER_REQ  0x10u  /**< the server may send server requests (the VMM asked) */

/** REGISTER flags. */
#define FERRY_VMMP_REG_F_SERVER_REQ 0x01u /**< the VMM answers server requests (PAUSE, RESUME, ...) */
/**
 * The VMM is the destination shell of a migration: its guest memory is
 * empty (nothing may be served as a zero page), its vCPUs do not run until
 * RESUME. Needs FERRY_VMMP_REG_F_SERVER_REQ; the payload ends with the u64
 * migration id.
 */
#define FERRY_VMMP_REG_F_INCOMING   0x02u
#define FERRY_VMMP_REG_F_KNOWN      0x03u

/** PAUSE flags. */
#define FERRY_VMMP_PAUSE_F_SAVE_STATE  0x01u /**< upload the device state (STATE_PUT) before answering */
#define FERRY_VMMP_PAUSE_F_KNOWN       0x01u
/** RESUME flags. */
#define FERRY_VMMP_RESUME_F_LOAD_STATE 0x01u /**< fetch the device state (STATE_GET) before running */
#define FERRY_VMMP_RESUME_F_KNOWN      0x01u

/** NOTICE events. */
#define FERRY_VMMP_NOTICE_MIGRATED 1u /**< the VM now runs elsewhere: the (paused) source VMM exits */

/** Decoded fixed header. */
struct ferry_vmmp_hdr {
	uint8_t type;
	uint16_t flags;
	uint64_t request_id;
	uint32_t payload_len;
};

/**
 * One guest memory region. On the wire (40 bytes):
 * u64 gpa, u64 size, u64 hva, u64 offset, u32 page_size, u8 fd_slot, u8 modes, u16 reserved.
 */
struct ferry_vmmp_region {
	uint64_t gpa;        /**< guest-physical base */
	uint64_t size;       /**< bytes, > 0 */
	uint64_t hva;        /**< host virtual address of the region in the VMM */
	uint64_t offset;     /**< offset of the region in its memory file (fd_slot), or in a
	                          backing source the server knows out of band when fd_slot is 0 */
	uint32_t page_size;  /**< FERRY_VMMP_PAGE_4K or FERRY_VMMP_PAGE_2M */
	uint8_t fd_slot;     /**< 0: anonymous memory; k: the k-th SCM_RIGHTS descriptor (k >= 1) */
	uint8_t modes;       /**< FERRY_VMMP_MODE_*, non-zero */
};

/**
 * REGISTER. Payload: u16 region_count, u8 vm_id_len, u8 fd_count, u32 flags,
 * u64 uffd_features, vm_id[vm_id_len], region_count x 40-byte regions,
 * then (only with FERRY_VMMP_REG_F_INCOMING) u64 migration_id.
 * Descriptors in SCM_RIGHTS: slot 0 the userfaultfd, slots 1..fd_count-1 the
 * memory files; every memory slot is used by at least one region.
 */
struct ferry_vmmp_register {
	uint64_t uffd_features;   /**< UFFDIO_API features the uffd was opened with (informational) */
	uint32_t flags;           /**< FERRY_VMMP_REG_F_* */
	uint64_t migration_id;    /**< with FERRY_VMMP_REG_F_INCOMING: the migration this shell is for; else 0 */
	uint16_t region_count;    /**< 1..FERRY_VMMP_MAX_REGIONS */
	uint8_t fd_count;         /**< 1..FERRY_VMMP_MAX_FDS */
	uint8_t vm_id_len;        /**< 1..FERRY_VMMP_VM_ID_MAX (decoders fill it; encoders use strlen) */
	char vm_id[FERRY_VMMP_VM_ID_MAX + 1]; /**< NUL-terminated */
	struct ferry_vmmp_region regions[FERRY_VMMP_MAX_REGIONS];
};

/** REGISTER_OK. Payload (24): u64 vm_handle, u64 server_features, u32 max_chunk, u32 reserved. */
struct ferry_vmmp_register_ok {
	uint64_t vm_handle;       /**< server's id for this registration (for logs) */
	uint64_t server_features; /**< FERRY_VMMP_SF_* */
	uint32_t max_chunk;       /**< largest STATE_PUT data the server takes, 1..FERRY_VMMP_MAX_CHUNK */
};

/** One FREE_HINT range: guest-physical, 4 KiB aligned. */
struct ferry_vmmp_range {
	uint64_t gpa;
	uint64_t len;
};

/**
 * FREE_HINT. Payload: u32 count, u32 reserved, count x {u64 gpa, u64 len}.
 * Ranges are non-empty, 4 KiB aligned, strictly ascending and disjoint.
 * Zero-copy: read range i with ferry_vmmp_hint_entry().
 */
struct ferry_vmmp_hints {
	uint32_t count;           /**< 1..FERRY_VMMP_MAX_HINTS */
	uint64_t total_len;       /**< sum of the lengths */
	const uint8_t *entries;   /**< count * FERRY_VMMP_HINT_LEN bytes inside the decoded buffer */
};

/** NOTIFY. Payload (8): u32 event, u32 reserved. */
struct ferry_vmmp_notify {
	uint32_t event;           /**< FERRY_VMMP_EV_* */
};

/**
 * STATE_PUT and STATE_DATA. Payload: u64 total_len, u64 offset, data. The
 * data is bytes [offset, offset + data_len) of a blob of total_len bytes.
 * data points into the decoded buffer.
 */
struct ferry_vmmp_state {
	uint64_t total_len;       /**< <= FERRY_VMMP_STATE_MAX */
	uint64_t offset;
	uint32_t data_len;        /**< <= FERRY_VMMP_MAX_CHUNK; offset + data_len <= total_len */
	const uint8_t *data;
};

/** STATE_GET. Payload (16): u64 offset, u32 max_len, u32 reserved. */
struct ferry_vmmp_state_get {
	uint64_t offset;
	uint32_t max_len;         /**< 1..FERRY_VMMP_MAX_CHUNK */
};

/** PAUSE and RESUME. Payload (8): u32 flags, u32 reserved. */
struct ferry_vmmp_ctl {
	uint32_t flags;           /**< FERRY_VMMP_PAUSE_F_* / FERRY_VMMP_RESUME_F_* */
};

/*
 * DROP_PTES. Payload: u32 count, u32 reserved, count x {u64 gpa, u64 len}
 * with the FREE_HINT rules (non-empty, 4 KiB aligned, ascending, disjoint),
 * 1..FERRY_VMMP_MAX_DROP ranges: decoded into struct ferry_vmmp_hints, read
 * range i with ferry_vmmp_hint_entry().
 */

/** NOTICE. Payload (8): u32 event, u32 reserved. */
struct ferry_vmmp_notice {
	uint32_t event;           /**< FERRY_VMMP_NOTICE_* */
};

struct ferry_vmmp_stat {
	char name[FERRY_VMMP_STAT_NAME_MAX + 1];  /**< [a-z0-9_]+, NUL-terminated */
	uint64_t value;
};

/** STATS_OK. Payload: u16 count, count x {u8 name_len, name, u64 value}. */
struct ferry_vmmp_stats_ok {
	uint16_t count;
	struct ferry_vmmp_stat stats[FERRY_VMMP_MAX_STATS];
};

/** OK. Payload (8): u64 value (meaning per request, see enum ferry_vmmp_type). */
struct ferry_vmmp_ok {
	uint64_t value;
};

/** ERROR. Payload: u32 code, u16 msg_len, msg bytes (no NUL, <= FERRY_VMMP_ERRMSG_MAX). */
struct ferry_vmmp_error {
	uint32_t code;            /**< enum ferry_vmmp_errcode; unknown codes are kept */
	uint16_t msg_len;
	char msg[FERRY_VMMP_ERRMSG_MAX + 1];
};

/** A decoded message: header plus the body selected by hdr.type. */
struct ferry_vmmp_msg {
	struct ferry_vmmp_hdr hdr;
	union {
		struct ferry_vmmp_register reg;
		struct ferry_vmmp_register_ok reg_ok;
		struct ferry_vmmp_hints hints;        /**< FREE_HINT and DROP_PTES */
		struct ferry_vmmp_notify notify;
		struct ferry_vmmp_state state;        /**< STATE_PUT and STATE_DATA */
		struct ferry_vmmp_state_get state_get;
		struct ferry_vmmp_stats_ok stats_ok;
		struct ferry_vmmp_ok ok;
		struct ferry_vmmp_error error;
		struct ferry_vmmp_ctl ctl;            /**< PAUSE and RESUME */
		struct ferry_vmmp_notice notice;
	} u;                                       /**< STATS and UNREGISTER have empty payloads */
};

/* ---------------------------------------------------------------- decoding */

/**
 * Decode and validate the 24-byte header at @p buf: magic, version, type in
 * range, flags known and FERRY_VMMP_F_REPLY set exactly on replies,
 * FERRY_VMMP_F_SERVER on every server request/NOTICE and on no VMM request,
 * reserved zero, payload_len within the type's limit
 * (ferry_vmmp_max_payload()). Does not need the payload.
 * @return FERRY_VMMP_E_OK or the first violation; FERRY_VMMP_E_UNSUPPORTED
 * (with @p hdr filled, payload_len <= FERRY_VMMP_MAX_PAYLOAD) for a server
 * request of an unknown type: skip its payload, answer ERROR(UNSUPPORTED).
 */
int ferry_vmmp_hdr_decode(const uint8_t *buf, size_t len, struct ferry_vmmp_hdr *hdr);

/**
 * Decode one whole message from @p buf[0..len) that arrived with @p nfds file
 * descriptors. @p len must cover the header and its payload; bytes after the
 * message are ignored. Validates every field for the type, then the
 * descriptor count (REGISTER: exactly fd_count; everything else: none).
 * Pointers in @p msg (hints.entries, state.data) point into @p buf.
 */
int ferry_vmmp_decode(const uint8_t *buf, size_t len, unsigned int nfds, struct ferry_vmmp_msg *msg);

/** Largest payload_len a header of @p type may announce (0 for unknown types). */
uint32_t ferry_vmmp_max_payload(uint8_t type);

/** Range @p i (< h->count) of a decoded FREE_HINT. */
void ferry_vmmp_hint_entry(const struct ferry_vmmp_hints *h, uint32_t i, struct ferry_vmmp_range *r);

/**
 * The REGISTER rules on a filled-in struct (used by the decoder and the
 * encoder; servers may use it on registrations they build, e.g. from a
 * Firecracker handshake). vm_id_len is taken from strnlen(vm_id).
 */
int ferry_vmmp_register_check(const struct ferry_vmmp_register *reg);

/* ---------------------------------------------------------------- encoding */

/*
 * Encoders write one whole message into @p buf of @p cap bytes and return the
 * number of bytes written, or a negative code: -FERRY_VMMP_E_TOO_LARGE when it
 * does not fit, or the negated rule the arguments break (the same code the
 * decoder would return for the result). Replies set FERRY_VMMP_F_REPLY.
 */
int ferry_vmmp_encode_register(uint64_t req, const struct ferry_vmmp_register *reg, uint8_t *buf, size_t cap);
int ferry_vmmp_encode_register_ok(uint64_t req, const struct ferry_vmmp_register_ok *ok, uint8_t *buf,
				  size_t cap);
/** @p ranges must already be ascending, disjoint, 4 KiB aligned and non-empty. */
int ferry_vmmp_encode_free_hint(uint64_t req, const struct ferry_vmmp_range *ranges, uint32_t count,
				uint8_t *buf, size_t cap);
int ferry_vmmp_encode_notify(uint64_t req, uint32_t event, uint8_t *buf, size_t cap);
/**
 * Header and 16-byte prefix of a STATE_PUT (type FERRY_VMMP_STATE_PUT) or
 * STATE_DATA (FERRY_VMMP_STATE_DATA) whose @p data_len data bytes the caller
 * sends right after (writev). Returns the prefix length (40).
 */
int ferry_vmmp_encode_state_prefix(uint8_t type, uint64_t req, uint64_t total_len, uint64_t offset,
				   uint32_t data_len, uint8_t *buf, size_t cap);
int ferry_vmmp_encode_state_get(uint64_t req, uint64_t offset, uint32_t max_len, uint8_t *buf, size_t cap);
int ferry_vmmp_encode_stats(uint64_t req, uint8_t *buf, size_t cap);
int ferry_vmmp_encode_stats_ok(uint64_t req, const struct ferry_vmmp_stat *stats, uint16_t count,
			       uint8_t *buf, size_t cap);
int ferry_vmmp_encode_unregister(uint64_t req, uint8_t *buf, size_t cap);
int ferry_vmmp_encode_ok(uint64_t req, uint64_t value, uint8_t *buf, size_t cap);
/** PAUSE (@p type FERRY_VMMP_PAUSE) or RESUME (FERRY_VMMP_RESUME) with @p flags; F_SERVER set. */
int ferry_vmmp_encode_ctl(uint8_t type, uint64_t req, uint32_t flags, uint8_t *buf, size_t cap);
/** DROP_PTES; @p ranges as for FREE_HINT, at most FERRY_VMMP_MAX_DROP. F_SERVER set. */
int ferry_vmmp_encode_drop_ptes(uint64_t req, const struct ferry_vmmp_range *ranges, uint32_t count,
				uint8_t *buf, size_t cap);
/** NOTICE(@p event); F_SERVER set. */
int ferry_vmmp_encode_notice(uint64_t req, uint32_t event, uint8_t *buf, size_t cap);
/**
 * Set FERRY_VMMP_F_SERVER on an encoded reply (OK or ERROR) in @p buf, making
 * it the VMM's answer to a server request. @return 0, or
 * -FERRY_VMMP_E_BAD_FLAGS when @p buf does not hold a reply.
 */
int ferry_vmmp_mark_server_reply(uint8_t *buf, size_t len);
/** True when a header's type is one the server sends (PAUSE, RESUME, DROP_PTES, NOTICE). */
bool ferry_vmmp_is_server_type(uint8_t type);
/** @p msg may be NULL or longer than FERRY_VMMP_ERRMSG_MAX (then cut); a NUL ends it. */
int ferry_vmmp_encode_error(uint64_t req, uint32_t code, const char *msg, uint8_t *buf, size_t cap);

/* ---------------------------------------------------------------- allow-list */

#define FERRY_VMMP_ALLOW_MAX      32u

enum ferry_vmmp_allow_kind { FERRY_VMMP_ALLOW_UID = 1, FERRY_VMMP_ALLOW_GID = 2 };

/** Who may register VMs: a list of uids and gids. */
struct ferry_vmmp_allow {
	uint32_t count;
	struct {
		uint8_t kind;         /**< enum ferry_vmmp_allow_kind */
		uint32_t id;
	} e[FERRY_VMMP_ALLOW_MAX];
};

/**
 * Parse an allow-list: entries "uid:N" or "gid:N" (N decimal, < 2^32 - 1),
 * separated by commas, spaces or tabs; at least one entry. Example:
 * "uid:107, gid:994". @return FERRY_VMMP_E_OK, FERRY_VMMP_E_TOO_LARGE (more
 * than FERRY_VMMP_ALLOW_MAX entries) or FERRY_VMMP_E_MALFORMED.
 */
int ferry_vmmp_allow_parse(const char *spec, struct ferry_vmmp_allow *allow);

/**
 * True when a peer with @p uid and groups @p gids[0..ngids) (the SO_PEERCRED
 * gid first, then SO_PEERGROUPS) matches an entry: its uid a "uid:" entry or
 * any of its groups a "gid:" entry. Nothing is allowed implicitly, not root.
 */
bool ferry_vmmp_allow_match(const struct ferry_vmmp_allow *allow, uint32_t uid, const uint32_t *gids,
			    size_t ngids);

/* ---------------------------------------------------------------- Firecracker */

/** Largest Firecracker handshake accepted (bytes of JSON). */
#define FERRY_VMMP_FC_MAX_LEN     65536u

/** Where a Firecracker region's page size came from. */
enum ferry_vmmp_fc_page_src {
	FERRY_VMMP_FC_PS_DEFAULT = 0, /**< neither field (Firecracker 1.1 - 1.6): 4 KiB */
	FERRY_VMMP_FC_PS_KIB     = 1, /**< only "page_size_kib" (1.7 - 1.11): it holds bytes */
	FERRY_VMMP_FC_PS_FIELD   = 2, /**< "page_size" (1.12 and later, next to "page_size_kib") */
};

/** One region of a Firecracker handshake. */
struct ferry_vmmp_fc_region {
	uint64_t hva;             /**< "base_host_virt_addr" */
	uint64_t size;            /**< "size" */
	uint64_t offset;          /**< "offset": where the region's bytes are in the snapshot memory file */
	uint32_t page_size;       /**< 4096 or 2 MiB */
	uint8_t page_src;         /**< enum ferry_vmmp_fc_page_src */
	bool has_gpa;             /**< "gpa_start" present (unreleased Firecracker branches) */
	uint64_t gpa;
};

struct ferry_vmmp_fc_handshake {
	uint32_t count;           /**< 1..FERRY_VMMP_MAX_REGIONS */
	struct ferry_vmmp_fc_region regions[FERRY_VMMP_MAX_REGIONS];
};

/**
 * Stream framing for the handshake, which has no length prefix: find the end
 * of the first top-level JSON value in @p buf[0..len). Returns
 * FERRY_VMMP_E_OK with *@p frame_len set when an array is complete (any
 * whitespace after it is not counted), FERRY_VMMP_E_TRUNCATED when more bytes
 * are needed, FERRY_VMMP_E_JSON_SHAPE when the first non-blank byte is not
 * '[', FERRY_VMMP_E_TOO_LARGE when no array completes within
 * FERRY_VMMP_FC_MAX_LEN bytes. Strings and escapes are honoured; nothing else
 * is validated (ferry_vmmp_fc_decode does that).
 */
int ferry_vmmp_fc_frame(const uint8_t *buf, size_t len, size_t *frame_len);

/**
 * Decode and validate a Firecracker handshake: @p buf[0..len) is the JSON
 * text (nothing but whitespace may follow the array), @p nfds the number of
 * descriptors that came with it (must be 1, the uffd). Fields per region:
 * "base_host_virt_addr", "size", "offset" (required), "page_size" and/or the
 * deprecated "page_size_kib" (both hold bytes; equal when both present;
 * 4 KiB when absent); other keys are ignored, except "is_guest_memfd": true,
 * which is refused (FERRY_VMMP_E_UNSUPPORTED). Numbers must be non-negative
 * JSON integers; sizes, addresses and offsets multiples of the page size;
 * host ranges and file ranges pairwise disjoint. On failure, when @p why is
 * not NULL, a one-line reason ("region 2: missing \"size\"") is written there.
 */
int ferry_vmmp_fc_decode(const uint8_t *buf, size_t len, unsigned int nfds,
			 struct ferry_vmmp_fc_handshake *hs, char *why, size_t why_len);

/**
 * Turn a decoded handshake into the REGISTER form the pager uses: anonymous
 * regions (fd_slot 0) registered in MISSING mode, the snapshot file offset
 * kept in `offset`, gpa from "gpa_start" when present and otherwise equal to
 * the file offset (Firecracker lays guest regions out back to back in that
 * file, so it is a faithful stand-in), one descriptor (the uffd).
 * @return the result of ferry_vmmp_register_check() on the output.
 */
int ferry_vmmp_fc_to_register(const struct ferry_vmmp_fc_handshake *hs, const char *vm_id,
			      struct ferry_vmmp_register *reg);

/* ---------------------------------------------------------------- naming */

/** "REGISTER", "OK", ...; "UNKNOWN" for out-of-range values. */
const char *ferry_vmmp_type_name(uint8_t type);
/** Stable human text for a FERRY_VMMP_E_* code; "unknown error" otherwise. */
const char *ferry_vmmp_errcode_str(uint32_t code);

#endif /* FERRY_PROTO_VMM_H */
