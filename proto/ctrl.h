/**
 * @file ctrl.h
 * The control protocol: ferryctl <-> ferryd, ferryd <-> the coordinator's
 * ferryd, ferryd <-> ferryd (ctrl/).
 *
 * Binary, little-endian, versioned; every message is the 24-byte frame.h
 * header (magic FERRY_CTRL_MAGIC "FCTL") followed by `payload_len` bytes.
 * Strings are a u8 length then the bytes, no NUL ("str" below). A *name*
 * (node name, VM id) is 1..64 bytes of [A-Za-z0-9._-]; an *addr* is 1..64
 * bytes of printable ASCII without space ("10.77.0.2:22001"); "name?" and
 * "addr?" may also be empty (length 0: none). Every reserved field must be
 * zero; every enum value must be known.
 *
 *     HELLO            8+n  u8 vmin, u8 vmax, u8 name_len, u8 reserved, u32 features, name[n]
 *     CHALLENGE         36  u8 version, u8 reserved[3], nonce[32]                   (reply)
 *     AUTH              64  nonce[32], mac[32]
 *     AUTH_OK           32  mac[32]                                                 (reply)
 *     STATUS             0                                      -> STATUS_OK
 *     STATUS_OK        24+  u64 uptime_ms, u64 epoch, u32 roles, u8 coordinator(0/1),
 *                           u8 child_count (<= 8), u16 reserved, str name, str coordinator,
 *                           str accept?, child_count x {u32 pid, u32 restarts, u8 state,
 *                           u8 reserved[3], str name}                               (reply)
 *     NODES              0                                      -> NODES_OK
 *     NODES_OK         16+  u64 epoch, u16 count (<= 64), u16 reserved, u32 reserved,
 *                           str accept?, str coordinator?, count x node             (reply)
 *         node         56+  u32 roles, u8 state, u8 reserved, u16 cpus, u32 load1, u32 load5,
 *                           u32 load15 (load averages x 1000), u64 mem_total, u64 mem_free,
 *                           u32 vms_running, u32 load_score, u32 mem_score, u32 score
 *                           (per mille), u32 age_ms, str name, str addr?
 *     VMS                0                                      -> VMS_OK
 *     VMS_OK            8+  u16 count (<= 256), u16 reserved, u32 reserved, count x vm (reply)
 *         vm           20+  u8 state, u8 reserved, ip[4], mac[6], u64 gen, str id, str node?
 *     MIGRATE          16+  u64 budget (bytes, 0 none), u8 mode, u8 sub_count (1..16),
 *                           u16 reserved, u32 reserved, str vm, str main, sub_count x str
 *                                                     -> PROGRESS ... PROGRESS(final) | ERROR
 *     PROGRESS         56+  u8 phase, u8 flags, u16 reserved, u32 round, u64 pages_sent,
 *                           u64 pages_skipped, u64 pages_remaining, u64 pages_total,
 *                           u64 bytes_sent, u64 elapsed_ms, str vm                  (reply)
 *     HIBERNATE         4+  u32 reserved, str vm, str node?     -> VMS_OK(1 VM)
 *     RESUME            4+  (same; node: where, empty = least loaded) -> VMS_OK(1 VM)
 *     ABORT             4+  (same; node empty)                  -> OK
 *     NODE_REGISTER    16+  u32 roles, u16 cpus, u16 reserved, u64 mem_total, str name, str addr
 *                                                               -> NODES_OK
 *     NODE_REPORT      40+  u32 load1, u32 load5, u32 load15, u16 cpus, u16 vm_count (<= 64),
 *                           u64 mem_total, u64 mem_free (<= mem_total), u32 vms_running,
 *                           u32 reserved, str name, vm_count x vm                -> NODES_OK
 *     PREPARE_INCOMING 16+  MIGRATE's body with str source after str main     -> ENDPOINT
 *     ENDPOINT         40+  u16 port (1..65535), u16 reserved, u32 reserved, token[32],
 *                           str vm, str host                                        (reply)
 *     VM_PLACED        12+  one vm                                              -> OK
 *     ROLE             16+  u64 epoch, u8 take (0/1), u8 reserved[7], str node  -> OK
 *     STATS              0                                      -> STATS_OK
 *     STATS_OK         2+.. u16 count, count x {u8 name_len, name, u64 value}      (reply)
 *     OK                 8  u64 value                                              (reply)
 *     ERROR            6+m  u32 code, u16 msg_len, msg[m]                          (reply)
 *
 * Sessions over TCP start with the frame.h handshake:
 *   client HELLO(name)  server CHALLENGE(server nonce)
 *   client AUTH(client nonce, HMAC)  server AUTH_OK(server HMAC) | ERROR and close
 *   client_mac = HMAC(secret, "ferry-ctrl-c" | server_nonce | client_nonce | name)
 *   server_mac = HMAC(secret, "ferry-ctrl-s" | client_nonce | server_nonce | name)
 * Anything else before AUTH_OK gets ERROR(NOT_AUTHENTICATED) and a close. On
 * ferryd's local Unix socket the kernel vouches for the peer (SO_PEERCRED),
 * so requests may come without the handshake there.
 *
 * Pure: no I/O, no allocation. Decoders check every length, count and string
 * against the buffer they are given and never read past it; on failure they
 * return a stable FERRY_CTRL_E_* code (also the code ERROR carries).
 */
#ifndef FERRY_PROTO_CTRL_H
#define FERRY_PROTO_CTRL_H

#include <stddef.h>
#include <stdint.h>

#define FERRY_CTRL_MAGIC          0x4C544346u  /* "FCTL" */
#define FERRY_CTRL_VERSION        2u
#define FERRY_CTRL_HDR_LEN        24u
#define FERRY_CTRL_NONCE_LEN      32u
#define FERRY_CTRL_MAC_LEN        32u
#define FERRY_CTRL_TOKEN_LEN      32u          /**< migration endpoint token */
#define FERRY_CTRL_NAME_MAX       64u          /**< node names, VM ids, child names */
#define FERRY_CTRL_ADDR_MAX       64u
#define FERRY_CTRL_ERRMSG_MAX     256u
#define FERRY_CTRL_MAX_STATS      64u
#define FERRY_CTRL_STAT_NAME_MAX  32u
#define FERRY_CTRL_NODES_MAX      64u
#define FERRY_CTRL_VMS_MAX        256u
#define FERRY_CTRL_REPORT_VMS_MAX 64u
#define FERRY_CTRL_SUBHOSTS_MAX   16u
#define FERRY_CTRL_CHILDREN_MAX   8u
/** Payload limit of every type but the lists (NODES_OK, VMS_OK, NODE_REPORT). */
#define FERRY_CTRL_SMALL_PAYLOAD  4096u
/** Payload limit of the lists: a full VMS_OK fits. */
#define FERRY_CTRL_MAX_PAYLOAD    65536u
#define FERRY_CTRL_MAX_MSG        (FERRY_CTRL_HDR_LEN + FERRY_CTRL_MAX_PAYLOAD)

#define FERRY_CTRL_F_REPLY        0x0001u
#define FERRY_CTRL_F_KNOWN        (FERRY_CTRL_F_REPLY)

/** Roles of a node (bit set). */
#define FERRY_CTRL_ROLE_SUB       0x1u   /**< runs ferry-memsrv: lends memory */
#define FERRY_CTRL_ROLE_MAIN      0x2u   /**< runs ferry-pager: hosts VMs */
#define FERRY_CTRL_ROLE_ACCEPT    0x4u   /**< runs ferry-wake: can be the accept node */
#define FERRY_CTRL_ROLE_COORD     0x8u   /**< the coordinator */
#define FERRY_CTRL_ROLE_KNOWN     0xfu

/** PROGRESS flag: the last message of the stream. */
#define FERRY_CTRL_PROGRESS_FINAL 0x01u
#define FERRY_CTRL_PROGRESS_KNOWN (FERRY_CTRL_PROGRESS_FINAL)

enum ferry_ctrl_type {
	FERRY_CTRL_HELLO            = 1,
	FERRY_CTRL_CHALLENGE        = 2,
	FERRY_CTRL_AUTH             = 3,
	FERRY_CTRL_AUTH_OK          = 4,
	FERRY_CTRL_STATUS           = 5,
	FERRY_CTRL_STATUS_OK        = 6,
	FERRY_CTRL_NODES            = 7,
	FERRY_CTRL_NODES_OK         = 8,
	FERRY_CTRL_VMS              = 9,
	FERRY_CTRL_VMS_OK           = 10,
	FERRY_CTRL_MIGRATE          = 11,
	FERRY_CTRL_PROGRESS         = 12,
	FERRY_CTRL_HIBERNATE        = 13,
	FERRY_CTRL_RESUME           = 14,
	FERRY_CTRL_ABORT            = 15,
	FERRY_CTRL_NODE_REGISTER    = 16,
	FERRY_CTRL_NODE_REPORT      = 17,
	FERRY_CTRL_PREPARE_INCOMING = 18,
	FERRY_CTRL_ENDPOINT         = 19,
	FERRY_CTRL_VM_PLACED        = 20,
	FERRY_CTRL_ROLE             = 21,
	FERRY_CTRL_STATS            = 22,
	FERRY_CTRL_STATS_OK         = 23,
	FERRY_CTRL_OK               = 24,
	FERRY_CTRL_ERROR            = 25,
	FERRY_CTRL_TYPE_MAX         = 25,
};

/** Stable error codes (decoders and ERROR). Append only. 0..7 are frame.h's. */
enum ferry_ctrl_errcode {
	FERRY_CTRL_E_OK                = 0,
	FERRY_CTRL_E_TRUNCATED         = 1,
	FERRY_CTRL_E_BAD_MAGIC         = 2,
	FERRY_CTRL_E_VERSION           = 3,
	FERRY_CTRL_E_UNKNOWN_TYPE      = 4,
	FERRY_CTRL_E_BAD_FLAGS         = 5,
	FERRY_CTRL_E_TOO_LARGE         = 6,
	FERRY_CTRL_E_MALFORMED         = 7,
	FERRY_CTRL_E_AUTH_FAILED       = 8,
	FERRY_CTRL_E_NOT_AUTHENTICATED = 9,
	FERRY_CTRL_E_BAD_NAME          = 10, /**< empty or bad node name / VM id */
	FERRY_CTRL_E_BAD_ADDR          = 11, /**< bad address string, MAC or IPv4 */
	FERRY_CTRL_E_UNKNOWN_VM        = 12,
	FERRY_CTRL_E_UNKNOWN_NODE      = 13,
	FERRY_CTRL_E_EXISTS            = 14,
	FERRY_CTRL_E_UNEXPECTED        = 15, /**< valid message, wrong state or direction */
	FERRY_CTRL_E_BUSY              = 16,
	FERRY_CTRL_E_INTERNAL          = 17,
	FERRY_CTRL_E_SHUTDOWN          = 18,
	FERRY_CTRL_E_STALE_EPOCH       = 19,
	FERRY_CTRL_E_NOT_AVAILABLE     = 20, /**< the engine/library behind a request is not built in */
	FERRY_CTRL_E_BAD_STATE         = 21, /**< the VM is not in a state that allows it */
	FERRY_CTRL_E_DENIED            = 22, /**< local peer's uid not allowed */
	FERRY_CTRL_E_NODE_DOWN         = 23,
	FERRY_CTRL_E_FAILED            = 24, /**< the operation was tried and failed */
	FERRY_CTRL_E_CODE_MAX          = 24,
};

enum ferry_ctrl_node_state { FERRY_CTRL_NODE_UP = 1, FERRY_CTRL_NODE_DOWN = 2, FERRY_CTRL_NODE_STATE_MAX = 2 };

enum ferry_ctrl_vm_state {
	FERRY_CTRL_VM_RUNNING    = 1,
	FERRY_CTRL_VM_HIBERNATED = 2,
	FERRY_CTRL_VM_RESUMING   = 3,
	FERRY_CTRL_VM_MIGRATING  = 4,
	FERRY_CTRL_VM_STOPPED    = 5,
	FERRY_CTRL_VM_FAILED     = 6,   /**< a resume failed on every node tried; still hibernated */
	FERRY_CTRL_VM_STATE_MAX  = 6,
};

enum ferry_ctrl_child_state {
	FERRY_CTRL_CHILD_RUNNING = 1,
	FERRY_CTRL_CHILD_BACKOFF = 2,   /**< exited; restarts after a delay */
	FERRY_CTRL_CHILD_STOPPED = 3,
	FERRY_CTRL_CHILD_FAILED  = 4,   /**< gave up restarting */
	FERRY_CTRL_CHILD_STATE_MAX = 4,
};

enum ferry_ctrl_mode {
	FERRY_CTRL_MODE_PRECOPY  = 1,
	FERRY_CTRL_MODE_POSTCOPY = 2,
	FERRY_CTRL_MODE_PLANNED  = 3,
	FERRY_CTRL_MODE_MAX      = 3,
};

enum ferry_ctrl_phase {
	FERRY_CTRL_PHASE_PREPARING = 1,
	FERRY_CTRL_PHASE_PRECOPY   = 2,
	FERRY_CTRL_PHASE_STOPCOPY  = 3,
	FERRY_CTRL_PHASE_POSTCOPY  = 4,
	FERRY_CTRL_PHASE_DONE      = 5,
	FERRY_CTRL_PHASE_FAILED    = 6,
	FERRY_CTRL_PHASE_ABORTED   = 7,
	FERRY_CTRL_PHASE_MAX       = 7,
};

struct ferry_ctrl_hdr {
	uint8_t type;
	uint16_t flags;
	uint64_t request_id;
	uint32_t payload_len;
};

struct ferry_ctrl_hello {
	uint8_t version_min, version_max;
	uint32_t features;                       /**< kept, not refused; encoders write 0 */
	uint8_t name_len;
	char name[FERRY_CTRL_NAME_MAX + 1];
};

struct ferry_ctrl_challenge {
	uint8_t version;
	uint8_t nonce[FERRY_CTRL_NONCE_LEN];
};

struct ferry_ctrl_auth {
	uint8_t nonce[FERRY_CTRL_NONCE_LEN];
	uint8_t mac[FERRY_CTRL_MAC_LEN];
};

struct ferry_ctrl_child {
	uint32_t pid, restarts;
	uint8_t state;                           /**< enum ferry_ctrl_child_state */
	char name[FERRY_CTRL_NAME_MAX + 1];
};

struct ferry_ctrl_status {
	uint64_t uptime_ms, epoch;
	uint32_t roles;
	uint8_t coordinator;                     /**< 1: this ferryd is the coordinator */
	uint8_t child_count;
	char name[FERRY_CTRL_NAME_MAX + 1];
	char coord[FERRY_CTRL_NAME_MAX + 1];
	char accept[FERRY_CTRL_NAME_MAX + 1];    /**< "" when no node holds it */
	struct ferry_ctrl_child child[FERRY_CTRL_CHILDREN_MAX];
};

struct ferry_ctrl_node {
	uint32_t roles;
	uint8_t state;                           /**< enum ferry_ctrl_node_state */
	uint16_t cpus;
	uint32_t load1, load5, load15;           /**< load average x 1000 */
	uint64_t mem_total, mem_free;            /**< bytes */
	uint32_t vms_running;
	uint32_t load_score, mem_score, score;   /**< per mille; score = max of the two */
	uint32_t age_ms;                         /**< since its last report */
	char name[FERRY_CTRL_NAME_MAX + 1];
	char addr[FERRY_CTRL_ADDR_MAX + 1];
};

struct ferry_ctrl_nodes {
	uint64_t epoch;                          /**< accept-role epoch */
	uint16_t count;
	char accept[FERRY_CTRL_NAME_MAX + 1];
	char coord[FERRY_CTRL_NAME_MAX + 1];
	struct ferry_ctrl_node node[FERRY_CTRL_NODES_MAX];
};

struct ferry_ctrl_vm {
	uint8_t state;                           /**< enum ferry_ctrl_vm_state */
	uint8_t ip[4];                           /**< network order; all zero: unknown */
	uint8_t mac[6];                          /**< all zero: unknown */
	char id[FERRY_CTRL_NAME_MAX + 1];
	char node[FERRY_CTRL_NAME_MAX + 1];      /**< "" when unknown */
	/**
	 * Stamp of the node the VM is placed on (`node`), raised at each change
	 * it makes; 0 when the change was made elsewhere (the coordinator's
	 * FAILED, a migration's source handing the VM over) or is unknown.
	 * Placements from one node can arrive out of order (every request is
	 * its own connection): a receiver drops one whose non-zero stamp is
	 * below the non-zero stamp it holds for the same node.
	 */
	uint64_t gen;
};

struct ferry_ctrl_vms {
	uint16_t count;
	struct ferry_ctrl_vm vm[FERRY_CTRL_VMS_MAX];
};

/** MIGRATE and PREPARE_INCOMING (source is "" in MIGRATE and not encoded). */
struct ferry_ctrl_migrate {
	uint64_t budget;
	uint8_t mode;                            /**< enum ferry_ctrl_mode */
	uint8_t sub_count;
	char vm[FERRY_CTRL_NAME_MAX + 1];
	char main[FERRY_CTRL_NAME_MAX + 1];
	char source[FERRY_CTRL_NAME_MAX + 1];
	char sub[FERRY_CTRL_SUBHOSTS_MAX][FERRY_CTRL_NAME_MAX + 1];
};

struct ferry_ctrl_progress {
	uint8_t phase;                           /**< enum ferry_ctrl_phase */
	uint8_t flags;                           /**< FERRY_CTRL_PROGRESS_* */
	uint32_t round;
	uint64_t pages_sent, pages_skipped, pages_remaining, pages_total, bytes_sent, elapsed_ms;
	char vm[FERRY_CTRL_NAME_MAX + 1];
};

/** HIBERNATE, RESUME, ABORT. */
struct ferry_ctrl_vm_req {
	char vm[FERRY_CTRL_NAME_MAX + 1];
	char node[FERRY_CTRL_NAME_MAX + 1];      /**< "" = let the cluster choose */
};

struct ferry_ctrl_register {
	uint32_t roles;
	uint16_t cpus;
	uint64_t mem_total;
	char name[FERRY_CTRL_NAME_MAX + 1];
	char addr[FERRY_CTRL_ADDR_MAX + 1];
};

struct ferry_ctrl_report {
	uint32_t load1, load5, load15;
	uint16_t cpus;
	uint16_t vm_count;
	uint64_t mem_total, mem_free;
	uint32_t vms_running;
	char name[FERRY_CTRL_NAME_MAX + 1];
	struct ferry_ctrl_vm vm[FERRY_CTRL_REPORT_VMS_MAX];
};

/** Where a migration source connects: the destination pager's listener and its one-time token. */
struct ferry_ctrl_endpoint {
	uint16_t port;
	uint8_t token[FERRY_CTRL_TOKEN_LEN];
	char vm[FERRY_CTRL_NAME_MAX + 1];
	char host[FERRY_CTRL_ADDR_MAX + 1];     /**< an addr (no port) */
};

struct ferry_ctrl_role {
	uint64_t epoch;
	uint8_t take;
	char node[FERRY_CTRL_NAME_MAX + 1];
};

struct ferry_ctrl_stat {
	char name[FERRY_CTRL_STAT_NAME_MAX + 1];
	uint64_t value;
};

struct ferry_ctrl_stats_ok {
	uint16_t count;
	struct ferry_ctrl_stat stats[FERRY_CTRL_MAX_STATS];
};

struct ferry_ctrl_error {
	uint32_t code;                           /**< unknown codes are kept */
	uint16_t msg_len;
	char msg[FERRY_CTRL_ERRMSG_MAX + 1];
};

/** A whole message, decoded or to encode. Large (about 60 KiB): keep one per connection or static. */
struct ferry_ctrl_msg {
	struct ferry_ctrl_hdr hdr;
	union {
		struct ferry_ctrl_hello hello;
		struct ferry_ctrl_challenge challenge;
		struct ferry_ctrl_auth auth;
		uint8_t auth_ok_mac[FERRY_CTRL_MAC_LEN];
		struct ferry_ctrl_status status;
		struct ferry_ctrl_nodes nodes;
		struct ferry_ctrl_vms vms;
		struct ferry_ctrl_migrate migrate;       /**< MIGRATE, PREPARE_INCOMING */
		struct ferry_ctrl_progress progress;
		struct ferry_ctrl_vm_req vm_req;         /**< HIBERNATE, RESUME, ABORT */
		struct ferry_ctrl_register reg;
		struct ferry_ctrl_report report;
		struct ferry_ctrl_endpoint endpoint;
		struct ferry_ctrl_vm placed;             /**< VM_PLACED */
		struct ferry_ctrl_role role;
		struct ferry_ctrl_stats_ok stats_ok;
		uint64_t ok;
		struct ferry_ctrl_error error;
	} u;                                         /**< STATUS, NODES, VMS, STATS: empty */
};

/** Check the 24-byte header only (see frame.h for the order of checks). */
int ferry_ctrl_hdr_decode(const uint8_t *buf, size_t len, struct ferry_ctrl_hdr *hdr);

/** Decode one whole message from @p buf[0..len) (bytes after it are ignored). */
int ferry_ctrl_decode(const uint8_t *buf, size_t len, struct ferry_ctrl_msg *msg);

/**
 * Encode @p msg (type and request_id from msg->hdr; flags follow from the
 * type) into @p buf of @p cap bytes. Strings are read as C strings.
 * @return the message length, or -FERRY_CTRL_E_TOO_LARGE (does not fit, or a
 * count/string above a limit), -BAD_NAME, -BAD_ADDR, -MALFORMED (anything
 * else the decoder would refuse), -UNKNOWN_TYPE.
 */
int ferry_ctrl_encode(const struct ferry_ctrl_msg *msg, uint8_t *buf, size_t cap);

/* Shortcuts for the small messages (same return values). */
int ferry_ctrl_encode_empty(uint8_t type, uint64_t req, uint8_t *buf, size_t cap);
int ferry_ctrl_encode_ok(uint64_t req, uint64_t value, uint8_t *buf, size_t cap);
/** @p msg may be NULL or longer than FERRY_CTRL_ERRMSG_MAX (then cut). */
int ferry_ctrl_encode_error(uint64_t req, uint32_t code, const char *msg, uint8_t *buf, size_t cap);
int ferry_ctrl_encode_hello(uint64_t req, const char *name, uint8_t *buf, size_t cap);
int ferry_ctrl_encode_challenge(uint64_t req, const uint8_t nonce[FERRY_CTRL_NONCE_LEN], uint8_t *buf, size_t cap);
int ferry_ctrl_encode_auth(uint64_t req, const uint8_t nonce[FERRY_CTRL_NONCE_LEN],
			   const uint8_t mac[FERRY_CTRL_MAC_LEN], uint8_t *buf, size_t cap);
int ferry_ctrl_encode_auth_ok(uint64_t req, const uint8_t mac[FERRY_CTRL_MAC_LEN], uint8_t *buf, size_t cap);

/** FERRY_CTRL_E_OK when @p s is a valid name ([A-Za-z0-9._-], 1..64), else BAD_NAME/TOO_LARGE. */
int ferry_ctrl_check_name(const char *s);
/** FERRY_CTRL_E_OK when @p s is a valid addr (printable, no space, 1..64). */
int ferry_ctrl_check_addr(const char *s);

/** "HELLO", "NODES_OK", ...; "UNKNOWN" otherwise. */
const char *ferry_ctrl_type_name(uint8_t type);
const char *ferry_ctrl_errcode_str(uint32_t code);
const char *ferry_ctrl_vm_state_name(uint8_t state);
const char *ferry_ctrl_node_state_name(uint8_t state);
const char *ferry_ctrl_child_state_name(uint8_t state);
const char *ferry_ctrl_mode_name(uint8_t mode);
const char *ferry_ctrl_phase_name(uint8_t phase);
/** "precopy" -> FERRY_CTRL_MODE_PRECOPY; 0 when unknown. */
uint8_t ferry_ctrl_mode_parse(const char *s);

#endif /* FERRY_PROTO_CTRL_H */
