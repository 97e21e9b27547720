/**
 * @file migrate.h
 * The migration protocol (issue 5, split migration): two uses of one codec.
 *
 *  1. The CONTROL socket of ferry-pager (Unix stream, peers checked with
 *     SO_PEERCRED; no handshake): ferryd / ferryctl / tests send PREPARE,
 *     START, STATUS, ABORT and get PREPARE_OK, OK, STATUS_OK or ERROR.
 *  2. The migration STREAM, source pager -> destination (main host) pager,
 *     a TCP connection carrying control and page maps, next to a transport
 *     connection (TCP or RDMA, dataplane/transport) that carries the pages
 *     themselves with one-sided WRITE/READ. Mutual authentication: HELLO
 *     (name = VM id) / CHALLENGE / AUTH / AUTH_OK, with
 *       name'      = VM id | "/" | hex(token from PREPARE_OK)
 *       client_mac = HMAC(secret, "ferry-mig-c" | server_nonce | client_nonce | name')
 *       server_mac = HMAC(secret, "ferry-mig-s" | client_nonce | server_nonce | name')
 *     so a peer needs both the cluster secret and the per-migration token.
 *
 * Every message: the 24-byte frame header of proto/frame.h with magic "FMIG"
 * (LE u32 0x47494D46) and version 1, then the payload (little-endian; every
 * reserved byte must be zero; VM ids are 1..64 printable ASCII bytes without
 * space; host names 1..63 bytes [A-Za-z0-9.:_-]):
 *
 *   type            payload
 *   PREPARE       16+n+..  u64 budget_bytes, u8 id_len, u8 nsubs (<= 8), u8 reserved[6],
 *                          id[n], nsubs x {u16 port (!= 0), u8 host_len, host[h]}
 *   PREPARE_OK    36+h     u16 port (!= 0), u8 host_len, u8 reserved, token[32], host[h]   (reply)
 *   START         40+n+h   u8 mode (1..4), u8 id_len, u8 host_len, u8 reserved, u16 port (!= 0),
 *                          u16 reserved, token[32], id[n], host[h]
 *   STATUS        4+n      u8 id_len, u8 reserved[3], id[n]
 *   STATUS_OK     112+m    u8 phase (0..8), u8 reserved[3], u32 round, u64 pages_total, pages_sent,
 *                          pages_skipped_unused, pages_remaining, pages_resent, pages_to_subhosts,
 *                          bytes_sent, postcopy_faults, started_ns, downtime_ns, total_ns,
 *                          u32 generation, u16 err_len (m <= 159), u16 reserved, err[m]       (reply)
 *   ABORT         4+n      as STATUS
 *   OK            8        u64 value                                                          (reply)
 *   ERROR         6+m      u32 code, u16 msg_len, msg[m]                                      (reply)
 *   HELLO         8+n      frame.h handshake (name = VM id)
 *   CHALLENGE     36       frame.h handshake                                                  (reply)
 *   AUTH          64       frame.h handshake
 *   AUTH_OK       40+32    mac[32], u16 data_port (!= 0), u16 reserved[3], bind[32]           (reply)
 *                          the source connects its transport connection to data_port and
 *                          proves it is the same peer by sending BIND on the stream
 *   LAYOUT        40+24r   u64 npages, u64 pages_used, u32 generation, u8 mode, u8 nregions
 *                          (1..16), u8 reserved[18],
 *                          nregions x {u64 gpa, u64 size, u64 first_page}: regions ordered,
 *                          contiguous in page index, sizes multiple of 4096, sum = npages
 *                          (no VM memory is registered anywhere: see STAGING below)
 *   LAYOUT_OK     24       u32 dst_rkey, u32 stage_slots (256..262144), u64 dst_base,
 *                          u64 dst_pages                                                      (reply)
 *                          the destination's STAGING RING (slot s at dst_base + s*4096,
 *                          stage_slots slots, registered in the per-migration PD) and how many
 *                          pages the budget lets it hold
 *   EXTENTS       8+48c    u16 count (1..64), u16 first, u16 total (1..1024), u16 reserved,
 *                          count x {u8 sub, u8 reserved[3], u32 extent_id, u64 length (4096
 *                          multiple, != 0), token[32]}; first + count <= total
 *                          (destination -> source: sub-host extents shared for the cold pages,
 *                          entries [first, first+count) of `total`, in as many messages as it
 *                          takes; the source attaches each with the token)
 *   PAGE_MAP      8+24c    u32 count (1..2048), u32 reserved, count x {u64 page, u32 generation,
 *                          u8 where (1..4), u8 sub, u16 reserved, u32 extent, u32 slot}
 *                          where: DEST (the data is in staging slot `slot` (< 262144) of the
 *                          destination's ring, which installs it into the VM's memory), SUB
 *                          (page is in slot `slot` of EXTENTS entry `extent` (< 1024); sub =
 *                          its sub-host), UNUSED (no data: zero page), SOURCE (still at the
 *                          source: post-copy); extent/sub are 0 unless SUB
 *   ROUND_END     16       u32 round, u32 reserved, u64 pages_dirty
 *   DEVSTATE      16+d     u64 total (<= 64 MiB), u64 offset, data[d] (offset + d <= total)
 *   SWITCHOVER    16       u32 generation, u32 reserved, u64 pages_at_source
 *   RESUMED       8        u64 downtime_ns (destination -> source, VM runs there)     (reply)
 *   POSTCOPY_DONE 8        u64 pages_pushed
 *   STATS         0
 *   STATS_OK      2+..     frame.h stats body                                                 (reply)
 *   BIND          32       bind[32] (the AUTH_OK value, after the data connection is up)
 *   SUBHOST       4+h      u16 port (!= 0), u8 sub (< 8), u8 host_len, host[h]
 *                          (destination -> source, before EXTENTS: where sub-host `sub` is)
 *   CREDIT        8        u32 slots (1..262144), u32 reserved
 *                          (destination -> source: that many staging slots were installed
 *                          and may be written again)
 *   FETCH         8+8c     u32 count (1..64), u32 first_slot, count x u64 page;
 *                          first_slot + count <= 262144
 *                          (destination -> source, after the switch-over: WRITE page k into
 *                          staging slot first_slot + k, then answer with one PAGE_MAP of
 *                          DEST entries in the same order)
 *
 * STAGING: pages never move straight between VM memory and the wire (a
 * registration pins every page of a mapping: holes would be allocated and a
 * page punched later would stay pinned while the file lost it). The source
 * copies each page into its own registered send buffer and WRITEs it into a
 * slot of the destination's staging ring; the ring is used in order, the
 * source holds `stage_slots` credits at first and spends one per DEST page;
 * the destination installs a slot's page when it applies the PAGE_MAP entry
 * naming it (into the memory file before the switch-over, with UFFDIO_COPY
 * after it) and returns the credits with CREDIT. Post-copy: FETCH.
 *
 * Sequence (source S, destination D):
 *   S HELLO -> D CHALLENGE -> S AUTH -> D AUTH_OK -> S connects data, BIND -> S LAYOUT ->
 *   D LAYOUT_OK [+ SUBHOST* EXTENTS] -> S {PAGE_MAP}* ROUND_END ... (pre-copy rounds) ->
 *   S {PAGE_MAP}* DEVSTATE* SWITCHOVER -> D RESUMED -> [post-copy: D FETCH -> S PAGE_MAP]
 *   -> D POSTCOPY_DONE (every page arrived). D CREDIT at any time before the switch-over.
 *   ERROR from either side ends the migration.
 *
 * This header and migrate.c are pure: no I/O, no allocation. Decoders check
 * every length and count and never read past the buffer; they return a stable
 * MIG_E_* code and leave the output unspecified on failure.
 */
#ifndef FERRY_PROTO_MIGRATE_H
#define FERRY_PROTO_MIGRATE_H

#include <stddef.h>
#include <stdint.h>

#define MIGP_MAGIC          0x47494D46u  /* "FMIG" */
#define MIGP_VERSION        1u
#define MIGP_HDR_LEN        24u
#define MIGP_NONCE_LEN      32u
#define MIGP_MAC_LEN        32u
#define MIGP_TOKEN_LEN      32u
#define MIGP_NAME_MAX       64u
#define MIGP_VM_ID_MAX      64u
#define MIGP_HOST_MAX       63u
#define MIGP_SUBS_MAX       8u
#define MIGP_REGIONS_MAX    16u
#define MIGP_EXTENTS_MAX    1024u   /**< sub-host extents of one migration */
#define MIGP_EXTENTS_MSG    64u     /**< entries per EXTENTS message */
#define MIGP_STAGE_MIN      256u    /**< staging ring slots: at least one batch */
#define MIGP_STAGE_MAX      262144u /**< 1 GiB of 4 KiB slots */
#define MIGP_FETCH_MAX      64u
#define MIGP_MAP_MAX        2048u
#define MIGP_ERRMSG_MAX     256u
#define MIGP_STATUS_ERR_MAX 159u
#define MIGP_MAX_STATS      64u
#define MIGP_STAT_NAME_MAX  32u
#define MIGP_DEVSTATE_MAX   (64u << 20)     /**< device-state blob bytes */
#define MIGP_DEVSTATE_CHUNK (MIGP_MAX_PAYLOAD - 16u) /**< data bytes per DEVSTATE (49144) */
#define MIGP_MAP_ENTRY_LEN  24u
/** Largest payload: a full PAGE_MAP. */
#define MIGP_MAX_PAYLOAD    (8u + MIGP_MAP_MAX * MIGP_MAP_ENTRY_LEN)
#define MIGP_CTRL_PAYLOAD   4072u
#define MIGP_MAX_MSG        (MIGP_HDR_LEN + MIGP_MAX_PAYLOAD)

#define MIGP_F_REPLY        0x0001u
#define MIGP_F_KNOWN        MIGP_F_REPLY

enum migp_type {
	MIGP_PREPARE = 1,
	MIGP_PREPARE_OK = 2,
	MIGP_START = 3,
	MIGP_STATUS = 4,
	MIGP_STATUS_OK = 5,
	MIGP_ABORT = 6,
	MIGP_OK = 7,
	MIGP_ERROR = 8,
	MIGP_HELLO = 9,
	MIGP_CHALLENGE = 10,
	MIGP_AUTH = 11,
	MIGP_AUTH_OK = 12,
	MIGP_LAYOUT = 13,
	MIGP_LAYOUT_OK = 14,
	MIGP_EXTENTS = 15,
	MIGP_PAGE_MAP = 16,
	MIGP_ROUND_END = 17,
	MIGP_DEVSTATE = 18,
	MIGP_SWITCHOVER = 19,
	MIGP_RESUMED = 20,
	MIGP_POSTCOPY_DONE = 21,
	MIGP_STATS = 22,
	MIGP_STATS_OK = 23,
	MIGP_BIND = 24,
	MIGP_SUBHOST = 25,
	MIGP_CREDIT = 26,
	MIGP_FETCH = 27,
	MIGP_TYPE_MAX = 27,
};

/** Stable codes: returned by decoders and carried by ERROR. Append only. 0..7 are frame.h's. */
enum migp_errcode {
	MIG_E_OK = 0,
	MIG_E_TRUNCATED = 1,
	MIG_E_BAD_MAGIC = 2,
	MIG_E_VERSION = 3,
	MIG_E_UNKNOWN_TYPE = 4,
	MIG_E_BAD_FLAGS = 5,
	MIG_E_TOO_LARGE = 6,
	MIG_E_MALFORMED = 7,
	MIG_E_AUTH_FAILED = 8,
	MIG_E_NOT_AUTHENTICATED = 9,
	MIG_E_BAD_VM_ID = 10,
	MIG_E_BAD_HOST = 11,
	MIG_E_UNKNOWN_VM = 12,      /**< no such VM / migration */
	MIG_E_EXISTS = 13,          /**< a migration of this VM is already under way */
	MIG_E_UNEXPECTED = 14,      /**< valid message, wrong state */
	MIG_E_BAD_LAYOUT = 15,      /**< layout does not match the destination shell */
	MIG_E_NO_SPACE = 16,        /**< budget + sub-hosts cannot hold the VM */
	MIG_E_BUSY = 17,            /**< refused in this phase (abort after switch-over) */
	MIG_E_ABORTED = 18,
	MIG_E_PEER_LOST = 19,       /**< the other side, a sub-host or the link is gone */
	MIG_E_INTERNAL = 20,
	MIG_E_REFUSED = 21,         /**< peer not allowed */
	MIG_E_CODE_MAX = 21,
};

enum migp_where { MIGP_W_DEST = 1, MIGP_W_SUB = 2, MIGP_W_UNUSED = 3, MIGP_W_SOURCE = 4 };

struct migp_hdr {
	uint8_t type;
	uint16_t flags;
	uint64_t request_id;
	uint32_t payload_len;
};

struct migp_host {
	char host[MIGP_HOST_MAX + 1];
	uint16_t port;
};

struct migp_prepare {
	uint64_t budget_bytes;
	char id[MIGP_VM_ID_MAX + 1];
	uint8_t nsubs;
	struct migp_host subs[MIGP_SUBS_MAX];
};

struct migp_prepare_ok {
	struct migp_host ep;
	uint8_t token[MIGP_TOKEN_LEN];
};

struct migp_start {
	uint8_t mode;
	char id[MIGP_VM_ID_MAX + 1];
	struct migp_host dest;
	uint8_t token[MIGP_TOKEN_LEN];
};

struct migp_vm_ref {
	char id[MIGP_VM_ID_MAX + 1];
};

struct migp_status_ok {
	uint8_t phase;
	uint32_t round;
	uint64_t pages_total, pages_sent, pages_skipped_unused, pages_remaining, pages_resent, pages_to_subhosts,
		bytes_sent, postcopy_faults, started_ns, downtime_ns, total_ns;
	uint32_t generation;
	char error[MIGP_STATUS_ERR_MAX + 1];
};

struct migp_hello {
	uint8_t version_min, version_max;
	uint32_t features;
	uint8_t name_len;
	char name[MIGP_NAME_MAX + 1];
};

struct migp_challenge {
	uint8_t version;
	uint8_t nonce[MIGP_NONCE_LEN];
};

struct migp_auth {
	uint8_t nonce[MIGP_NONCE_LEN];
	uint8_t mac[MIGP_MAC_LEN];
};

struct migp_auth_ok {
	uint8_t mac[MIGP_MAC_LEN];
	uint16_t data_port;
	uint8_t bind[MIGP_TOKEN_LEN];
};

struct migp_region {
	uint64_t gpa, size, first_page;
};

struct migp_layout {
	uint64_t npages, pages_used;
	uint32_t generation;
	uint8_t mode;
	uint8_t nregions;
	struct migp_region regions[MIGP_REGIONS_MAX];
};

struct migp_layout_ok {
	uint32_t dst_rkey, stage_slots;
	uint64_t dst_base, dst_pages;
};

struct migp_extent {
	uint8_t sub;
	uint32_t extent_id;
	uint64_t length;
	uint8_t token[MIGP_TOKEN_LEN];
};

struct migp_extents {
	uint16_t count, first, total;
	const uint8_t *entries;       /**< into the decoded buffer; read with migp_extents_entry() */
};

struct migp_map_entry {
	uint64_t page;
	uint32_t generation;
	uint8_t where;                /**< enum migp_where */
	uint8_t sub;
	uint32_t extent, slot;
};

/** PAGE_MAP, zero-copy: read entry i with migp_page_map_entry() (all were checked). */
struct migp_page_map {
	uint32_t count;
	const uint8_t *entries;
};

struct migp_round_end {
	uint32_t round;
	uint64_t pages_dirty;
};

struct migp_devstate {
	uint64_t total, offset;
	uint32_t len;
	const uint8_t *data;          /**< into the decoded buffer */
};

struct migp_switchover {
	uint32_t generation;
	uint64_t pages_at_source;
};

struct migp_value {
	uint64_t value;               /**< OK, RESUMED (downtime_ns), POSTCOPY_DONE (pages pushed) */
};

struct migp_bind {
	uint8_t bind[MIGP_TOKEN_LEN];
};

struct migp_subhost {
	uint8_t sub;
	struct migp_host host;
};

struct migp_credit {
	uint32_t slots;
};

struct migp_fetch {
	uint32_t count, first_slot;
	const uint8_t *pages;         /**< count LE u64 into the decoded buffer; read with migp_fetch_page() */
};

struct migp_stat {
	char name[MIGP_STAT_NAME_MAX + 1];
	uint64_t value;
};

struct migp_stats_ok {
	uint16_t count;
	struct migp_stat stats[MIGP_MAX_STATS];
};

struct migp_error {
	uint32_t code;
	uint16_t msg_len;
	char msg[MIGP_ERRMSG_MAX + 1];
};

struct migp_msg {
	struct migp_hdr hdr;
	union {
		struct migp_prepare prepare;
		struct migp_prepare_ok prepare_ok;
		struct migp_start start;
		struct migp_vm_ref ref;           /**< STATUS, ABORT */
		struct migp_status_ok status_ok;
		struct migp_value value;          /**< OK, RESUMED, POSTCOPY_DONE */
		struct migp_error error;
		struct migp_hello hello;
		struct migp_challenge challenge;
		struct migp_auth auth;
		struct migp_auth_ok auth_ok;
		struct migp_layout layout;
		struct migp_layout_ok layout_ok;
		struct migp_extents extents;
		struct migp_page_map map;
		struct migp_round_end round_end;
		struct migp_devstate devstate;
		struct migp_switchover switchover;
		struct migp_bind bind;
		struct migp_stats_ok stats_ok;
		struct migp_subhost subhost;
		struct migp_credit credit;
		struct migp_fetch fetch;
	} u;                                      /**< STATS has an empty payload */
};

/* ---------------------------------------------------------------- decoding */

/** Header checks (frame.h contract); does not need the payload. */
int migp_hdr_decode(const uint8_t *buf, size_t len, struct migp_hdr *hdr);
/** One whole message from @p buf[0..len). Zero-copy fields point into @p buf. */
int migp_decode(const uint8_t *buf, size_t len, struct migp_msg *msg);
void migp_extents_entry(const struct migp_extents *x, uint16_t i, struct migp_extent *e);
void migp_page_map_entry(const struct migp_page_map *m, uint32_t i, struct migp_map_entry *e);
uint64_t migp_fetch_page(const struct migp_fetch *f, uint32_t i);

/* ---------------------------------------------------------------- encoding */

/*
 * Encoders write one whole message into @p buf[0..cap) and return its length
 * or a negative MIG_E_* code (TOO_LARGE: does not fit or above a limit;
 * BAD_VM_ID / BAD_HOST; MALFORMED: other bad arguments).
 */
int migp_encode_prepare(uint64_t req, const struct migp_prepare *m, uint8_t *buf, size_t cap);
int migp_encode_prepare_ok(uint64_t req, const struct migp_prepare_ok *m, uint8_t *buf, size_t cap);
int migp_encode_start(uint64_t req, const struct migp_start *m, uint8_t *buf, size_t cap);
int migp_encode_status(uint64_t req, const char *id, uint8_t *buf, size_t cap);
int migp_encode_status_ok(uint64_t req, const struct migp_status_ok *m, uint8_t *buf, size_t cap);
int migp_encode_abort(uint64_t req, const char *id, uint8_t *buf, size_t cap);
int migp_encode_ok(uint64_t req, uint64_t value, uint8_t *buf, size_t cap);
int migp_encode_error(uint64_t req, uint32_t code, const char *msg, uint8_t *buf, size_t cap);
int migp_encode_hello(uint64_t req, const char *name, uint8_t *buf, size_t cap);
int migp_encode_challenge(uint64_t req, const uint8_t nonce[MIGP_NONCE_LEN], uint8_t *buf, size_t cap);
int migp_encode_auth(uint64_t req, const uint8_t nonce[MIGP_NONCE_LEN], const uint8_t mac[MIGP_MAC_LEN],
		     uint8_t *buf, size_t cap);
int migp_encode_auth_ok(uint64_t req, const struct migp_auth_ok *m, uint8_t *buf, size_t cap);
int migp_encode_layout(uint64_t req, const struct migp_layout *m, uint8_t *buf, size_t cap);
int migp_encode_layout_ok(uint64_t req, const struct migp_layout_ok *m, uint8_t *buf, size_t cap);
/** Entries [first, first + count) of @p total extents; @p e points at entry `first`. */
int migp_encode_extents(uint64_t req, const struct migp_extent *e, uint16_t count, uint16_t first, uint16_t total,
			uint8_t *buf, size_t cap);
int migp_encode_page_map(uint64_t req, const struct migp_map_entry *e, uint32_t count, uint8_t *buf, size_t cap);
int migp_encode_round_end(uint64_t req, uint32_t round, uint64_t pages_dirty, uint8_t *buf, size_t cap);
int migp_encode_devstate(uint64_t req, uint64_t total, uint64_t offset, const void *data, uint32_t len,
			 uint8_t *buf, size_t cap);
int migp_encode_switchover(uint64_t req, uint32_t generation, uint64_t pages_at_source, uint8_t *buf, size_t cap);
int migp_encode_resumed(uint64_t req, uint64_t downtime_ns, uint8_t *buf, size_t cap);
int migp_encode_postcopy_done(uint64_t req, uint64_t pages_pushed, uint8_t *buf, size_t cap);
int migp_encode_stats(uint64_t req, uint8_t *buf, size_t cap);
int migp_encode_stats_ok(uint64_t req, const struct migp_stat *stats, uint16_t count, uint8_t *buf, size_t cap);
int migp_encode_subhost(uint64_t req, const struct migp_subhost *m, uint8_t *buf, size_t cap);
int migp_encode_bind(uint64_t req, const uint8_t bind[MIGP_TOKEN_LEN], uint8_t *buf, size_t cap);
int migp_encode_credit(uint64_t req, uint32_t slots, uint8_t *buf, size_t cap);
int migp_encode_fetch(uint64_t req, const uint64_t *pages, uint32_t count, uint32_t first_slot, uint8_t *buf,
		      size_t cap);

/** Payload bytes of a PAGE_MAP with @p count entries (for batching). */
static inline uint32_t migp_page_map_len(uint32_t count)
{
	return 8u + count * MIGP_MAP_ENTRY_LEN;
}

const char *migp_type_name(uint8_t type);
const char *migp_errcode_str(uint32_t code);

#endif /* FERRY_PROTO_MIGRATE_H */
