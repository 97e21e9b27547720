/**
 * @file wake.h
 * The wake protocol: ferryd <-> ferry-wake (the accept node of paper 004, ODRS).
 *
 * ferry-wake listens (Unix or TCP stream socket); ferryd connects, both prove
 * they know the cluster secret, then ferryd drives the accept node: which VMs
 * are hibernated (VM_ADD / VM_DEL / VM_TABLE), whether this node holds the
 * accept-node role (ROLE_TAKE / ROLE_DROP) and when a woken VM runs again
 * (VM_RUNNING: replay its stored SYNs). ferry-wake sends WAKE_REQUEST on the
 * same connection when a hibernated VM is accessed; ferryd answers it with OK.
 *
 * Binary, little-endian, versioned. Every message is a 24-byte header
 * followed by `payload_len` bytes of payload (the page protocol's shape, with
 * its own magic):
 *
 *     off size field
 *       0    4 magic        FERRY_WAKE_MAGIC ("FWAK" read as LE u32 0x4B415746)
 *       4    1 version      FERRY_WAKE_VERSION
 *       5    1 type         enum ferry_wake_type
 *       6    2 flags        FERRY_WAKE_F_*; unknown bits are rejected
 *       8    8 request_id   chosen by the sender of a request, echoed in its reply
 *      16    4 payload_len  bytes after the header, <= the type's limit
 *      20    4 reserved     must be zero
 *
 * Payloads (all reserved fields must be zero; VM ids are 1..64 bytes of
 * printable ASCII without space; MACs must be unicast and non-zero; IPv4
 * addresses are in network order on the wire and must not be 0.0.0.0,
 * 255.255.255.255, multicast or 127/8):
 *
 *     HELLO        8+n  u8 vmin, u8 vmax, u8 name_len, u8 reserved, u32 features, name[n]
 *     CHALLENGE     36  u8 version, u8 reserved[3], nonce[32]                 (reply)
 *     AUTH          64  nonce[32], mac[32]
 *     AUTH_OK       32  mac[32]                                               (reply)
 *     VM_ADD       12+n ip[4], mac[6], u8 id_len, u8 reserved, id[n]       -> OK(0)
 *     VM_DEL        4+n u8 id_len, u8 reserved[3], id[n]                     -> OK(frames dropped)
 *     VM_TABLE     8+.. u16 count, u16 flags, u32 reserved, count x VM_ADD body -> OK(count)
 *     ROLE_TAKE      8  u64 epoch                                            -> OK(VMs announced)
 *     ROLE_DROP      8  u64 epoch                                            -> OK(0)
 *     VM_RUNNING    4+n u8 id_len, u8 reserved[3], id[n]                     -> OK(frames replayed)
 *     WAKE_REQUEST 24+n u8 reason, u8 id_len, u16 attempt, src_ip[4], dst_ip[4],
 *                       u16 src_port, u16 dst_port, u32 isn, u8 l4_proto,
 *                       u8 reserved[3], id[n]            (ferry-wake -> ferryd) -> OK(0)
 *     STATS          0                                                      -> STATS_OK
 *     STATS_OK     2+.. u16 count, count x {u8 name_len, name, u64 value}     (reply)
 *     OK             8  u64 value                                             (reply)
 *     ERROR        6+m  u32 code, u16 msg_len, msg[m]                         (reply)
 *
 * Session:
 *   ferryd HELLO(name, versions)       ferry-wake CHALLENGE(server nonce)
 *   ferryd AUTH(client nonce, HMAC)    ferry-wake AUTH_OK(server HMAC) | ERROR and close
 * Anything but HELLO/AUTH before AUTH_OK gets ERROR(NOT_AUTHENTICATED) and the
 * connection is closed. The MACs (dataplane/common/auth.h):
 *   client_mac = HMAC(secret, "ferry-wake-c" | server_nonce | client_nonce | name)
 *   server_mac = HMAC(secret, "ferry-wake-s" | client_nonce | server_nonce | name)
 *
 * This header and wake.c are pure: no I/O, no allocation. Decoders check
 * every length and count against the buffer they are given and never read
 * past it; on failure they return a stable FERRY_WAKE_E_* code (also the code
 * carried by ERROR) and leave the output unspecified.
 */
#ifndef FERRY_PROTO_WAKE_H
#define FERRY_PROTO_WAKE_H

#include <stddef.h>
#include <stdint.h>

#define FERRY_WAKE_MAGIC          0x4B415746u  /* "FWAK" */
#define FERRY_WAKE_VERSION        1u
#define FERRY_WAKE_HDR_LEN        24u
#define FERRY_WAKE_NONCE_LEN      32u
#define FERRY_WAKE_MAC_LEN        32u          /**< HMAC length (not an Ethernet MAC) */
#define FERRY_WAKE_NAME_MAX       64u
#define FERRY_WAKE_VM_ID_MAX      64u
#define FERRY_WAKE_ERRMSG_MAX     256u
#define FERRY_WAKE_MAX_STATS      64u
#define FERRY_WAKE_STAT_NAME_MAX  32u
#define FERRY_WAKE_TABLE_MAX      512u         /**< entries per VM_TABLE */
#define FERRY_WAKE_ENTRY_FIXED    12u          /**< VM_ADD / table entry bytes before the id */
/** Largest payload of any message: a full VM_TABLE. */
#define FERRY_WAKE_MAX_PAYLOAD    (8u + FERRY_WAKE_TABLE_MAX * (FERRY_WAKE_ENTRY_FIXED + FERRY_WAKE_VM_ID_MAX))
/** Largest payload of every type other than VM_TABLE. */
#define FERRY_WAKE_CTRL_PAYLOAD   4072u
/** Largest whole message. */
#define FERRY_WAKE_MAX_MSG        (FERRY_WAKE_HDR_LEN + FERRY_WAKE_MAX_PAYLOAD)

/** Header flag: this message is a reply (CHALLENGE, AUTH_OK, STATS_OK, OK, ERROR). */
#define FERRY_WAKE_F_REPLY        0x0001u
#define FERRY_WAKE_F_KNOWN        (FERRY_WAKE_F_REPLY)

/** VM_TABLE flag: the entries replace the whole table (else they are added). */
#define FERRY_WAKE_TABLE_REPLACE  0x0001u
#define FERRY_WAKE_TABLE_KNOWN    (FERRY_WAKE_TABLE_REPLACE)

/** WAKE_REQUEST reasons. */
enum ferry_wake_reason {
	FERRY_WAKE_REASON_SYN = 1,        /**< a TCP SYN to the VM's address */
	FERRY_WAKE_REASON_ARP = 2,        /**< an ARP request for the VM's address */
	FERRY_WAKE_REASON_MAX = 2,
};

/** Message types. Values are stable on the wire. */
enum ferry_wake_type {
	FERRY_WAKE_HELLO        = 1,
	FERRY_WAKE_CHALLENGE    = 2,
	FERRY_WAKE_AUTH         = 3,
	FERRY_WAKE_AUTH_OK      = 4,
	FERRY_WAKE_VM_ADD       = 5,
	FERRY_WAKE_VM_DEL       = 6,
	FERRY_WAKE_VM_TABLE     = 7,
	FERRY_WAKE_ROLE_TAKE    = 8,
	FERRY_WAKE_ROLE_DROP    = 9,
	FERRY_WAKE_VM_RUNNING   = 10,
	FERRY_WAKE_WAKE_REQUEST = 11,
	FERRY_WAKE_STATS        = 12,
	FERRY_WAKE_STATS_OK     = 13,
	FERRY_WAKE_OK           = 14,
	FERRY_WAKE_ERROR        = 15,
	FERRY_WAKE_TYPE_MAX     = 15,
};

/**
 * Stable error codes: returned by decoders and carried in ERROR messages.
 * Never renumber; append only. 0..7 mean the same as the page protocol's.
 */
enum ferry_wake_errcode {
	FERRY_WAKE_E_OK               = 0,
	FERRY_WAKE_E_TRUNCATED        = 1,  /**< buffer shorter than the header or payload says */
	FERRY_WAKE_E_BAD_MAGIC        = 2,
	FERRY_WAKE_E_VERSION          = 3,  /**< unsupported protocol version */
	FERRY_WAKE_E_UNKNOWN_TYPE     = 4,
	FERRY_WAKE_E_BAD_FLAGS        = 5,
	FERRY_WAKE_E_TOO_LARGE        = 6,  /**< payload/count/length above a protocol limit */
	FERRY_WAKE_E_MALFORMED        = 7,  /**< fields inconsistent with each other or the payload length */
	FERRY_WAKE_E_AUTH_FAILED      = 8,
	FERRY_WAKE_E_NOT_AUTHENTICATED = 9,
	FERRY_WAKE_E_BAD_VM_ID        = 10, /**< empty or non-printable VM id */
	FERRY_WAKE_E_BAD_ADDR         = 11, /**< MAC or IPv4 address not usable for a VM */
	FERRY_WAKE_E_UNKNOWN_VM       = 12,
	FERRY_WAKE_E_EXISTS           = 13, /**< VM id or IPv4 address already in the table */
	FERRY_WAKE_E_TABLE_FULL       = 14,
	FERRY_WAKE_E_UNEXPECTED       = 15, /**< valid message, wrong state or direction */
	FERRY_WAKE_E_BUSY             = 16,
	FERRY_WAKE_E_INTERNAL         = 17,
	FERRY_WAKE_E_SHUTDOWN         = 18,
	FERRY_WAKE_E_STALE_EPOCH      = 19, /**< ROLE_TAKE/ROLE_DROP with an epoch older than the last seen */
	FERRY_WAKE_E_CODE_MAX         = 19,
};

/** Decoded fixed header. */
struct ferry_wake_hdr {
	uint8_t type;
	uint16_t flags;
	uint64_t request_id;
	uint32_t payload_len;
};

struct ferry_wake_hello {
	uint8_t version_min, version_max;
	uint32_t features;                 /**< 0 today; kept, not rejected */
	uint8_t name_len;
	char name[FERRY_WAKE_NAME_MAX + 1]; /**< NUL-terminated, printable ASCII */
};

struct ferry_wake_challenge {
	uint8_t version;
	uint8_t nonce[FERRY_WAKE_NONCE_LEN];
};

struct ferry_wake_auth {
	uint8_t nonce[FERRY_WAKE_NONCE_LEN];
	uint8_t mac[FERRY_WAKE_MAC_LEN];
};

struct ferry_wake_auth_ok {
	uint8_t mac[FERRY_WAKE_MAC_LEN];
};

/** A hibernated VM: VM_ADD body and VM_TABLE entry. */
struct ferry_wake_vm {
	uint8_t ip[4];                       /**< IPv4, network order (ip[0] is the first octet) */
	uint8_t mac[6];                      /**< the VM's Ethernet address */
	uint8_t id_len;
	char id[FERRY_WAKE_VM_ID_MAX + 1];   /**< NUL-terminated */
};

/** VM_DEL and VM_RUNNING body. */
struct ferry_wake_vm_ref {
	uint8_t id_len;
	char id[FERRY_WAKE_VM_ID_MAX + 1];
};

/**
 * VM_TABLE, decoded zero-copy: entries point into the decoded buffer; read
 * entry i with ferry_wake_table_entry() (decoding checked every entry).
 */
struct ferry_wake_table {
	uint16_t count;                      /**< 0..FERRY_WAKE_TABLE_MAX */
	uint16_t flags;                      /**< FERRY_WAKE_TABLE_* */
	const uint8_t *entries;
	uint32_t entries_len;
};

struct ferry_wake_role {
	uint64_t epoch;                      /**< ferryd's role epoch; never goes backwards */
};

struct ferry_wake_request {
	uint8_t reason;                      /**< enum ferry_wake_reason */
	uint16_t attempt;                    /**< 1 for the first request, +1 per re-send */
	uint8_t src_ip[4], dst_ip[4];        /**< network order */
	uint16_t src_port, dst_port;         /**< host values (0 for ARP) */
	uint32_t isn;                        /**< the SYN's sequence number (0 for ARP) */
	uint8_t l4_proto;                    /**< 6 for a SYN, 0 for ARP */
	uint8_t id_len;
	char id[FERRY_WAKE_VM_ID_MAX + 1];
};

struct ferry_wake_stat {
	char name[FERRY_WAKE_STAT_NAME_MAX + 1];  /**< [a-z0-9_]+ */
	uint64_t value;
};

struct ferry_wake_stats_ok {
	uint16_t count;
	struct ferry_wake_stat stats[FERRY_WAKE_MAX_STATS];
};

struct ferry_wake_ok {
	uint64_t value;
};

struct ferry_wake_error {
	uint32_t code;                       /**< unknown codes are kept, not rejected */
	uint16_t msg_len;
	char msg[FERRY_WAKE_ERRMSG_MAX + 1];
};

struct ferry_wake_msg {
	struct ferry_wake_hdr hdr;
	union {
		struct ferry_wake_hello hello;
		struct ferry_wake_challenge challenge;
		struct ferry_wake_auth auth;
		struct ferry_wake_auth_ok auth_ok;
		struct ferry_wake_vm vm;             /**< VM_ADD */
		struct ferry_wake_vm_ref ref;        /**< VM_DEL, VM_RUNNING */
		struct ferry_wake_table table;
		struct ferry_wake_role role;         /**< ROLE_TAKE, ROLE_DROP */
		struct ferry_wake_request wake;
		struct ferry_wake_stats_ok stats_ok;
		struct ferry_wake_ok ok;
		struct ferry_wake_error error;
	} u;                                     /**< STATS has an empty payload */
};

/* ---------------------------------------------------------------- decoding */

/**
 * Decode and validate the header: magic, version, type, flags (the reply bit
 * must match the type), reserved zero, payload_len within the type's limit.
 * Does not need the payload.
 */
int ferry_wake_hdr_decode(const uint8_t *buf, size_t len, struct ferry_wake_hdr *hdr);

/**
 * Decode one whole message from @p buf[0..len) (bytes after it are ignored).
 * Pointers in @p msg (table.entries) point into @p buf.
 */
int ferry_wake_decode(const uint8_t *buf, size_t len, struct ferry_wake_msg *msg);

/** Entry @p i (< table->count) of a decoded VM_TABLE. */
void ferry_wake_table_entry(const struct ferry_wake_table *table, uint16_t i, struct ferry_wake_vm *vm);

/** Checks shared with ferry-wake: FERRY_WAKE_E_OK or BAD_ADDR. */
int ferry_wake_check_mac(const uint8_t mac[6]);
int ferry_wake_check_ip(const uint8_t ip[4]);

/* ---------------------------------------------------------------- encoding */

/*
 * Encoders write one whole message into @p buf of @p cap bytes and return the
 * number of bytes written, or -FERRY_WAKE_E_TOO_LARGE when it does not fit or a
 * count/length is above a limit, -FERRY_WAKE_E_BAD_VM_ID / -BAD_ADDR for a bad
 * id or address, -FERRY_WAKE_E_MALFORMED for other bad arguments.
 * Replies set FERRY_WAKE_F_REPLY.
 */
int ferry_wake_encode_hdr(uint8_t type, uint64_t req, uint32_t payload_len, uint8_t *buf, size_t cap);
int ferry_wake_encode_hello(uint64_t req, const char *name, uint8_t vmin, uint8_t vmax, uint8_t *buf, size_t cap);
int ferry_wake_encode_challenge(uint64_t req, uint8_t version, const uint8_t nonce[FERRY_WAKE_NONCE_LEN],
				uint8_t *buf, size_t cap);
int ferry_wake_encode_auth(uint64_t req, const uint8_t nonce[FERRY_WAKE_NONCE_LEN],
			   const uint8_t mac[FERRY_WAKE_MAC_LEN], uint8_t *buf, size_t cap);
int ferry_wake_encode_auth_ok(uint64_t req, const uint8_t mac[FERRY_WAKE_MAC_LEN], uint8_t *buf, size_t cap);
/** VM_ADD from @p vm (id taken as a C string; vm->id_len is ignored). */
int ferry_wake_encode_vm_add(uint64_t req, const struct ferry_wake_vm *vm, uint8_t *buf, size_t cap);
int ferry_wake_encode_vm_del(uint64_t req, const char *id, uint8_t *buf, size_t cap);
int ferry_wake_encode_vm_running(uint64_t req, const char *id, uint8_t *buf, size_t cap);
int ferry_wake_encode_vm_table(uint64_t req, uint16_t flags, const struct ferry_wake_vm *vms, uint16_t count,
			       uint8_t *buf, size_t cap);
int ferry_wake_encode_role_take(uint64_t req, uint64_t epoch, uint8_t *buf, size_t cap);
int ferry_wake_encode_role_drop(uint64_t req, uint64_t epoch, uint8_t *buf, size_t cap);
/** WAKE_REQUEST from @p wr (id as a C string; wr->id_len ignored). */
int ferry_wake_encode_wake_request(uint64_t req, const struct ferry_wake_request *wr, uint8_t *buf, size_t cap);
int ferry_wake_encode_stats(uint64_t req, uint8_t *buf, size_t cap);
int ferry_wake_encode_stats_ok(uint64_t req, const struct ferry_wake_stat *stats, uint16_t count,
			       uint8_t *buf, size_t cap);
int ferry_wake_encode_ok(uint64_t req, uint64_t value, uint8_t *buf, size_t cap);
/** @p msg may be NULL or longer than FERRY_WAKE_ERRMSG_MAX (then truncated). */
int ferry_wake_encode_error(uint64_t req, uint32_t code, const char *msg, uint8_t *buf, size_t cap);

/* ---------------------------------------------------------------- naming */

/** "HELLO", "VM_ADD", ...; "UNKNOWN" otherwise. */
const char *ferry_wake_type_name(uint8_t type);
/** Stable human text for a FERRY_WAKE_E_* code; "unknown error" otherwise. */
const char *ferry_wake_errcode_str(uint32_t code);

#endif /* FERRY_PROTO_WAKE_H */
