/**
 * @file transport.h
 * Ferry's page transport: one interface, several backends (TCP today, RDMA
 * verbs next). The model is RDMA's, so that the verbs backend maps onto it
 * one to one and callers never change:
 *
 *  - A **context** (struct fx_ctx) owns a completion queue and the progress
 *    engine. It is used by one thread at a time (like a per-lcore context);
 *    threads that need parallelism create one context each.
 *  - A **protection domain** (struct fx_pd) groups memory registrations and
 *    connections. A registration can be accessed remotely only through a
 *    connection of the same domain. Keys for *one* connection inside a
 *    shared domain are memory windows (below); ferry-memsrv puts all its
 *    clients in one domain (for its shared receive queue) and hands each
 *    a window bound to its own connection, so a key handed to one client is
 *    worthless to another.
 *  - A **memory region** (struct fx_mr) is registered memory with a local key
 *    (for scatter/gather lists) and a remote key (for peers' one-sided ops).
 *    Peers address it as [remote_base, remote_base + length).
 *  - A **connection** (struct fx_conn) is a reliable, ordered queue pair.
 *    Work requests are posted in batches (fx_post_send / fx_post_recv) and
 *    complete on the context's completion queue (fx_poll).
 *
 * Operations:
 *  - FX_OP_READ / FX_OP_WRITE: one-sided. The peer's application is not
 *    involved; its transport checks the key, the domain and the range.
 *  - FX_OP_SEND: two-sided; consumes one receive the peer posted with
 *    fx_post_recv. Used for control messages (proto/page.h messages).
 *    TCP carries the gathered bytes verbatim on the page-protocol stream, so
 *    they must be exactly one whole message of a control type (not
 *    READ/WRITE/READ_DATA/WRITE_OK), and an ERROR message's request_id must
 *    be < 2^63 (ids with bit 63 set are the transport's own); anything else
 *    is refused with -EINVAL at post time. The receive gets header+payload.
 *
 * Semantics every backend guarantees (verbs RC semantics):
 *  - Work requests on one connection execute in order; completions of
 *    signalled requests arrive in posting order.
 *  - Only requests posted with FX_WR_SIGNALED produce a completion on
 *    success; a failed request always produces one.
 *  - Buffers named in a request belong to the transport until its completion
 *    (or a later signalled request's completion) is polled.
 *  - Backpressure: at most `max_send_wr` requests outstanding per connection
 *    and `max_recv_wr` receives posted; posting beyond that fails with
 *    -EAGAIN and reports how many were taken. Nothing queues without bound.
 *  - Any fatal condition (remote access error, peer gone, operation timeout)
 *    moves the connection to FX_CONN_ERROR: the failing request completes with
 *    its status, every other outstanding request and posted receive completes
 *    with FX_WC_FLUSH_ERR, and later posts fail with -ENOTCONN. A dead peer is
 *    detected within ctx op_timeout_ms at most; nothing hangs.
 *
 * Shared receive queues (struct fx_srq): receives posted once to a queue
 * that any number of connections draw from, so a server with many clients
 * keeps one pool of control buffers instead of one per connection.
 *  - A connection opened with fx_conn_opts.srq takes its receives from that
 *    queue; fx_post_recv on it fails with -EINVAL. It holds at most
 *    max_recv_wr receives the application has not reaped (TCP: further
 *    messages wait in the socket; RDMA: the ring grows instead). Buffers are
 *    checked at post time on TCP (-EINVAL), by the NIC when a message lands
 *    on RDMA (LOC_PROT_ERR on the connection that took it). Each message consumes the
 *    oldest posted receive (FIFO), whichever connection it arrived on, and
 *    its completion (FX_WC_RECV) names that connection in fx_wc.conn.
 *    Completions of one connection still arrive in its message order.
 *  - **Domains**: a connection may use an SRQ only if both are in the same
 *    protection domain (-EINVAL otherwise). ibv_create_qp accepts a QP and
 *    an SRQ of different domains, but verbs do not pin down which domain
 *    then checks the lkeys of the SRQ's receive buffers: an SRQ is created
 *    in a domain of its own (ibv_create_srq(pd, ...)), while Soft-RoCE (rxe,
 *    kernel 6.1: rxe_resp.c send_data_in copies with qp->pd) checks them
 *    against the QP's domain, so buffers registered in the SRQ's domain fail
 *    there with a local protection error. The only arrangement every
 *    provider accepts is one domain for both: that is the rule here, and on
 *    TCP too so code tested there behaves the same over RDMA.
 *    Consequence for isolation: clients that share an SRQ share a domain,
 *    so per-client domains can no longer keep their rkeys apart. Memory
 *    windows (below) give per-connection keys inside the shared domain.
 *  - **RNR, honestly**: a message that arrives while the SRQ is empty is
 *    never dropped. Over RDMA the responder NAKs with RNR and the sender
 *    retries (rnr_retry 7 = forever), so the sender's SEND stays outstanding
 *    until a receive is posted, and its op_timeout_ms may end the connection
 *    if nobody posts. Over TCP the connection stops reading (its later
 *    messages, and one-sided replies behind them, wait in the socket) until
 *    fx_post_srq_recv supplies a receive; the sender's SEND completed when its
 *    bytes were written, as always over TCP. Connections waiting for the SRQ
 *    are served in the order they started waiting. Starvation among
 *    connections is the application's business (credits: see ferry-memsrv).
 *  - A connection's failure completes only the receives it had consumed;
 *    receives still in the SRQ stay there for the others. So a connection
 *    with nothing outstanding completes nothing when it fails (peer gone,
 *    RDMA_CM_EVENT_DEVICE_REMOVAL, ...): an SRQ user watches fx_conn_state
 *    after fx_poll (ferry-memsrv does, after every round). fx_srq_destroy
 *    fails with -EBUSY while an open connection uses the SRQ; receives still
 *    posted then are dropped without completions (their buffers are the
 *    caller's again).
 *
 * Memory windows (struct fx_mw): a remote key for part of a registration,
 * bound to *one connection*: peers can use it through that connection only
 * (verbs type-2 windows: ibv_alloc_mw(IBV_MW_TYPE_2) bound with
 * IBV_WR_BIND_MW on the connection's QP). The registration needs
 * FX_ACCESS_MW_BIND; the window's rights (remote read/write) are its own.
 * fx_mw_bind is immediate for the caller: the bind is queued on the
 * connection's send queue ahead of anything posted after it (so a SEND
 * that tells the peer the key goes out after the bind took effect) and
 * produces no completion of its own (a failed bind fails the connection).
 * fx_mw_unbind revokes at once: later operations with the key fail with a
 * remote access error and touch nothing. When the connection ends its
 * windows stop working; they are still the caller's to unbind (free).
 * A registration with bound windows cannot be deregistered (-EBUSY).
 * Known provider gap: Soft-RoCE (rxe, kernel 6.1 rxe_resp.c check_rkey)
 * checks an access through a window against its *registration's* range,
 * not the window's, so a window over part of a registration reaches all of
 * it there. Where the range matters, bind windows over whole registrations
 * (ferry-memsrv registers every extent on its own). TCP checks the window.
 *
 * RDMA device removal (RDMA_CM_EVENT_DEVICE_REMOVAL, IBV_EVENT_DEVICE_FATAL):
 * the connections on the device fail (FX_WC_RETRY_EXC_ERR / GENERAL_ERR) and
 * their users see it through completions or fx_conn_state. The context keeps
 * its own verbs objects (CQ, domains, registrations, SRQs, listener) until
 * fx_ctx_destroy, and the kernel's unregistration waits for them: in the
 * RoCE rig `rdma link delete rxe0` blocks while a ferry-memsrv (or any
 * client) holds its context. Not done yet: a context-wide "device lost"
 * report so that a daemon tears its context down and re-creates it.
 *
 * Progress: completions and one-sided service for peers happen inside
 * fx_poll (TCP) or in the NIC (RDMA). A SEND completes once its bytes are
 * handed to the transport's wire (TCP: written to the socket); READ and WRITE
 * complete when the peer's data/acknowledgement is back (a completed WRITE is
 * in remote memory). A passive side (memory server) must keep
 * calling fx_poll; fx_ctx_fd() gives a descriptor that becomes readable when
 * fx_poll has work, for use with epoll/poll in event-driven mode.
 *
 * Errors: functions return 0 (or a count) on success and a negative errno on
 * failure, and fill the optional struct ferry_err with a printable message.
 */
#ifndef FERRY_TRANSPORT_H
#define FERRY_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "dataplane/common/ferry_err.h"

/** Backends. */
enum fx_kind {
	FX_KIND_TCP = 0,
	FX_KIND_RDMA = 1,
};

/** Parse "tcp"/"rdma" into @p kind; -EINVAL otherwise. */
int fx_kind_parse(const char *name, enum fx_kind *kind);
const char *fx_kind_name(enum fx_kind kind);

/** Most scatter/gather entries per work request. */
#define FX_MAX_SGE 16

/** Context options; zero fields take the defaults noted. */
struct fx_ctx_opts {
	uint32_t cq_depth;        /**< completion queue entries (default 4096) */
	uint32_t op_timeout_ms;   /**< outstanding op / dead peer limit (default 5000) */
	uint32_t connect_timeout_ms; /**< fx_connect limit (default 5000) */
	const char *rdma_device;  /**< RDMA: device name; NULL = the one routing to the peer */
	uint32_t poll_spin_us;    /**< fx_poll busy-polls this long before sleeping (default 50;
				       FX_POLL_SPIN_OFF = never spin). Spinning helps only when
				       the peer has CPUs of its own: on a small host shared with
				       the peer (loopback) it steals the peer's CPU, use OFF. */
};

/** fx_ctx_opts.poll_spin_us value that disables busy polling. */
#define FX_POLL_SPIN_OFF UINT32_MAX

/** Connection options; zero fields take the defaults noted. */
struct fx_conn_opts {
	uint32_t max_send_wr;     /**< outstanding send-queue requests (default 256) */
	uint32_t max_recv_wr;     /**< posted receives (default 64) */
	uint32_t max_inline;      /**< bytes that may be sent with FX_WR_INLINE (default 256) */
	struct fx_srq *srq;       /**< take receives from this shared receive queue (same domain);
				       NULL = the connection's own receive queue (max_recv_wr) */
};

struct fx_ctx;
struct fx_pd;
struct fx_listener;
struct fx_conn;
struct fx_srq;

/** Registered memory. Fields are read-only for callers. */
struct fx_mr {
	void *addr;
	size_t length;
	uint32_t lkey;            /**< for local scatter/gather entries */
	uint32_t rkey;            /**< for a peer's one-sided ops */
	uint64_t remote_base;     /**< what a peer uses as remote_addr for addr[0] */
	int access;               /**< FX_ACCESS_* */
	struct fx_pd *pd;
	void *backend;            /**< backend-private */
	uint32_t n_mws;           /**< memory windows bound to it */
};

/** Access rights of a registration (local read is always allowed). */
enum {
	FX_ACCESS_LOCAL_WRITE  = 1 << 0,
	FX_ACCESS_REMOTE_READ  = 1 << 1,
	FX_ACCESS_REMOTE_WRITE = 1 << 2,
	FX_ACCESS_MW_BIND      = 1 << 3,  /**< memory windows may be bound to the registration */
};

/** A memory window: see "Memory windows" above. Fields are read-only for callers. */
struct fx_mw {
	uint32_t rkey;            /**< valid on `conn` only */
	uint64_t remote_base;     /**< what the peer uses as remote_addr for the window's first byte */
	size_t length;
	int access;               /**< FX_ACCESS_REMOTE_* */
	struct fx_mr *mr;
	void *backend;
};

/** A local buffer: part of a registered region. */
struct fx_sge {
	void *addr;
	uint32_t length;
	uint32_t lkey;
};

enum fx_opcode {
	FX_OP_READ = 0,
	FX_OP_WRITE = 1,
	FX_OP_SEND = 2,
};

/** Work request flags. */
enum {
	FX_WR_SIGNALED = 1 << 0,  /**< produce a completion on success */
	FX_WR_INLINE   = 1 << 1,  /**< copy the data at post time (<= max_inline); buffer reusable at once */
};

/** A send-queue work request (READ, WRITE or SEND). */
struct fx_send_wr {
	uint64_t wr_id;
	enum fx_opcode opcode;
	unsigned flags;           /**< FX_WR_* */
	const struct fx_sge *sg_list;
	int num_sge;              /**< 1..FX_MAX_SGE (SEND: 0 allowed for an empty message) */
	uint64_t remote_addr;     /**< READ/WRITE: peer address, remote_base-relative as in fx_mr */
	uint32_t rkey;            /**< READ/WRITE: peer key */
};

/** A receive: one message lands in the scatter list. */
struct fx_recv_wr {
	uint64_t wr_id;
	const struct fx_sge *sg_list;
	int num_sge;
};

enum fx_wc_opcode {
	FX_WC_READ = 0,
	FX_WC_WRITE = 1,
	FX_WC_SEND = 2,
	FX_WC_RECV = 3,
};

enum fx_wc_status {
	FX_WC_SUCCESS = 0,
	FX_WC_LOC_LEN_ERR,        /**< received message larger than the posted receive */
	FX_WC_LOC_PROT_ERR,       /**< a local sge does not lie in a registration with lkey */
	FX_WC_REM_ACCESS_ERR,     /**< bad rkey, wrong domain, out of range, or access denied */
	FX_WC_REM_INV_REQ_ERR,    /**< peer rejected the request as malformed */
	FX_WC_REM_OP_ERR,         /**< peer failed the operation */
	FX_WC_RETRY_EXC_ERR,      /**< peer unreachable / timed out (op_timeout_ms) */
	FX_WC_FLUSH_ERR,          /**< connection failed before this request ran */
	FX_WC_GENERAL_ERR,
};

/** Printable name of a completion status ("remote access error"). */
const char *fx_wc_status_str(enum fx_wc_status status);

/** A completion. */
struct fx_wc {
	uint64_t wr_id;
	struct fx_conn *conn;
	enum fx_wc_opcode opcode;
	enum fx_wc_status status;
	uint32_t byte_len;        /**< RECV: bytes received; READ/WRITE/SEND: bytes moved */
};

enum fx_conn_state {
	FX_CONN_CONNECTING = 0,
	FX_CONN_CONNECTED,
	FX_CONN_ERROR,            /**< failed; requests flush; call fx_conn_close */
	FX_CONN_CLOSED,
};

/* -------------------------------------------------------------- contexts */

/** Create a context of backend @p kind. -ENODEV with a hint when the backend has no device. */
int fx_ctx_create(enum fx_kind kind, const struct fx_ctx_opts *opts, struct fx_ctx **ctx,
		  struct ferry_err *err);
/** Destroy a context. All connections, listeners, domains must be gone. */
void fx_ctx_destroy(struct fx_ctx *ctx);
enum fx_kind fx_ctx_kind(const struct fx_ctx *ctx);
/** Descriptor that becomes readable when fx_poll has something to do (event mode). */
int fx_ctx_fd(const struct fx_ctx *ctx);

/**
 * Make progress and reap up to @p max completions into @p wc.
 * @p timeout_ms: 0 = do not wait, -1 = wait until at least one completion,
 * >0 = wait at most that long. @p max 0 (wc may be NULL) makes progress
 * only and returns 0 without waiting. Waiting never outlasts the next
 * operation deadline (op_timeout_ms is enforced even with -1).
 * @return number of completions (>= 0) or -errno.
 */
int fx_poll(struct fx_ctx *ctx, struct fx_wc *wc, int max, int timeout_ms);

/* -------------------------------------------------------------- domains and registration */

int fx_pd_alloc(struct fx_ctx *ctx, struct fx_pd **pd, struct ferry_err *err);
/** -EBUSY if registrations or connections still use it. */
int fx_pd_free(struct fx_pd *pd);

/** Register [addr, addr+length) with @p access rights in @p pd. */
int fx_reg_mr(struct fx_pd *pd, void *addr, size_t length, int access, struct fx_mr **mr,
	      struct ferry_err *err);
/**
 * Deregister. Later remote operations naming its rkey fail with a remote
 * access error and touch nothing.
 */
int fx_dereg_mr(struct fx_mr *mr);

/* -------------------------------------------------------------- memory windows */

/**
 * Bind a window over [@p addr, @p addr + @p length) of @p mr (registered
 * with FX_ACCESS_MW_BIND in @p conn's domain) with @p access (non-empty
 * subset of FX_ACCESS_REMOTE_READ | FX_ACCESS_REMOTE_WRITE; remote write
 * needs the registration's local write) to connected @p conn.
 */
int fx_mw_bind(struct fx_conn *conn, struct fx_mr *mr, void *addr, size_t length, int access, struct fx_mw **mw,
	       struct ferry_err *err);
/** Revoke and free the window (also after its connection ended). */
int fx_mw_unbind(struct fx_mw *mw);

/* -------------------------------------------------------------- shared receive queues */

/** Most receives an SRQ holds. */
#define FX_SRQ_MAX_DEPTH 16384u

/**
 * Create a shared receive queue in @p pd holding up to @p depth posted
 * receives (1..FX_SRQ_MAX_DEPTH). Connections of @p pd opened with
 * fx_conn_opts.srq set to it draw their receives from it.
 */
int fx_srq_create(struct fx_pd *pd, uint32_t depth, struct fx_srq **srq, struct ferry_err *err);
/**
 * Post @p n receives to the SRQ: buffers must lie in locally writable
 * registrations of its domain (-EINVAL otherwise, nothing posted from that
 * one on). Same return convention as fx_post_send (-EAGAIN: SRQ full).
 */
int fx_post_srq_recv(struct fx_srq *srq, const struct fx_recv_wr *wr, int n, int *post_err);
/** Receives posted to the SRQ and not yet taken by a message. */
uint32_t fx_srq_posted(const struct fx_srq *srq);
/** Destroy. -EBUSY while an open connection uses it; posted receives are dropped silently. */
int fx_srq_destroy(struct fx_srq *srq);

/* -------------------------------------------------------------- connections */

/** Listen on @p host:@p port ("0.0.0.0", port 0 = pick one, see fx_listener_port). */
int fx_listen(struct fx_ctx *ctx, const char *host, uint16_t port, struct fx_listener **listener,
	      struct ferry_err *err);
uint16_t fx_listener_port(const struct fx_listener *listener);
/** Descriptor readable when a connection request is pending. */
int fx_listener_fd(const struct fx_listener *listener);
/**
 * Accept one pending request into domain @p pd. -EAGAIN when none is pending.
 * @p peer (optional, >= 64 bytes) receives "ip:port" of the peer.
 */
int fx_accept(struct fx_listener *listener, struct fx_pd *pd, const struct fx_conn_opts *opts,
	      struct fx_conn **conn, char *peer, size_t peer_len, struct ferry_err *err);
void fx_listener_close(struct fx_listener *listener);

/** Connect to @p host:@p port in domain @p pd; blocks up to connect_timeout_ms. */
int fx_connect(struct fx_ctx *ctx, struct fx_pd *pd, const char *host, uint16_t port,
	       const struct fx_conn_opts *opts, struct fx_conn **conn, struct ferry_err *err);

/**
 * Post @p n send-queue requests. @return number posted; if fewer than @p n,
 * the return is still >= 0 and the first unposted one failed with the errno
 * in *@p post_err (-EAGAIN: queue full, poll and retry; -ENOTCONN: connection
 * failed; -EINVAL: bad request). @p post_err may be NULL.
 */
int fx_post_send(struct fx_conn *conn, const struct fx_send_wr *wr, int n, int *post_err);
/** Post @p n receives. Same return convention as fx_post_send; -EINVAL on a connection with an SRQ. */
int fx_post_recv(struct fx_conn *conn, const struct fx_recv_wr *wr, int n, int *post_err);

enum fx_conn_state fx_conn_state(const struct fx_conn *conn);
/** Why the connection failed, or "" while it is fine. */
const char *fx_conn_error(const struct fx_conn *conn);
/** "ip:port" of the peer. */
const char *fx_conn_peer(const struct fx_conn *conn);
/** Opaque pointer for the application. */
void fx_conn_set_user(struct fx_conn *conn, void *user);
void *fx_conn_get_user(const struct fx_conn *conn);
struct fx_pd *fx_conn_pd(const struct fx_conn *conn);
/** Requests posted and not yet completed (signalled or not). */
uint32_t fx_conn_outstanding(const struct fx_conn *conn);

/**
 * Close a connection. Outstanding requests complete with FX_WC_FLUSH_ERR on
 * the next fx_poll, after which the connection memory is freed; do not use
 * @p conn after this call, except that wc.conn of any completion of it
 * (polled before the close, or those flushes) may be passed to
 * fx_conn_get_user until the fx_poll after the one that returned it: the
 * memory is never freed inside fx_conn_close itself.
 */
void fx_conn_close(struct fx_conn *conn);

/* -------------------------------------------------------------- counters */

/** Per-context counters (monotonic). */
struct fx_ctx_stats {
	uint64_t ops_posted, ops_completed, ops_failed;
	uint64_t bytes_read, bytes_written;       /**< one-sided, as initiator */
	uint64_t bytes_served_read, bytes_served_written; /**< one-sided, as target */
	uint64_t remote_access_errors;            /**< as target: requests refused */
	uint64_t malformed_frames;                /**< as target/initiator: bad wire input */
	uint64_t backpressure_events;             /**< posts refused with -EAGAIN */
	uint64_t conns_opened, conns_failed;
};
void fx_ctx_get_stats(const struct fx_ctx *ctx, struct fx_ctx_stats *stats);

#endif /* FERRY_TRANSPORT_H */
