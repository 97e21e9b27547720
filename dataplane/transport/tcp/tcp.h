/**
 * @file tcp.h
 * Internal: the TCP backend of the transport (see transport.h for the model).
 *
 * Wire: the stream is a sequence of page-protocol messages (proto/page.h).
 * SEND carries one complete control message verbatim; one-sided READ/WRITE
 * travel as READ/WRITE request messages that the peer's transport serves
 * inside its fx_poll and answers with READ_DATA/WRITE_OK, or ERROR followed
 * by the end of the connection (a remote access error is fatal, as for an RC
 * queue pair). Consecutive READs (or WRITEs) of one fx_post_send call are
 * coalesced into one message, one vector entry per work request.
 *
 * Request ids of the transport's own READ/WRITE messages have bit 63 set
 * (TCP_REQID_TAG); an ERROR message with that bit is a reply to one of them,
 * an ERROR without it is a control message for the application. SEND of an
 * ERROR with bit 63 set is therefore refused (-EINVAL).
 *
 * Memory regions are zero-based: remote_base is 0 and a peer addresses
 * [0, length) under the region's rkey; the target's virtual addresses never
 * leave the process. rkeys and lkeys are random non-zero 32-bit values,
 * unique in the context; a key of another domain is answered exactly like an
 * unknown key.
 *
 * Completion statuses when a connection fails (the first unfinished send
 * request gets the "failing" status, everything else FX_WC_FLUSH_ERR, every
 * posted receive FX_WC_FLUSH_ERR):
 *  - peer gone (EOF, reset, TCP_USER_TIMEOUT) or op_timeout_ms: RETRY_EXC_ERR;
 *  - ERROR reply to a READ/WRITE: the request the target names ("entry N: ...")
 *    gets REM_ACCESS_ERR (ACCESS, OUT_OF_RANGE), REM_INV_REQ_ERR (MALFORMED,
 *    TOO_LARGE, ...) or REM_OP_ERR (other codes); the other requests of that
 *    message did not run and flush;
 *  - malformed input from the peer: REM_OP_ERR (counted in malformed_frames);
 *  - local checks: LOC_PROT_ERR (sge outside a registration of the domain, or
 *    a region deregistered while in use), LOC_LEN_ERR (message larger than the
 *    receive);
 *  - fx_conn_close: everything FLUSH_ERR.
 *
 * Counters: ops_* count send requests and receives alike (unsignalled
 * successes included); backpressure_events counts posts refused with -EAGAIN
 * and every stall of a connection's input (no receive posted, or the output
 * towards that peer above the TCP_GATE_* bounds).
 *
 * Threading: a context and everything created from it is used by one thread
 * at a time; nothing here locks.
 *
 * Shared receive queues: tcp_srq.c (receives taken into the connection's
 * own ring when a message needs one; RNR = stop reading and wait, FIFO).
 *
 * Files: tcp_ctx.c (context, epoll, fx_poll, timeouts, completion reaping),
 * tcp_mr.c (domains, registrations, key tables), tcp_conn.c (sockets,
 * listen/accept/connect, failure and close), tcp_io.c (output queue and input
 * state machine), tcp_initiator.c (posting, replies), tcp_target.c (serving
 * one-sided requests).
 */
#ifndef FERRY_TRANSPORT_TCP_H
#define FERRY_TRANSPORT_TCP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

#include "dataplane/common/mono_time.h"
#include "dataplane/transport/fx_list.h"
#include "dataplane/transport/transport.h"
#include "dataplane/transport/transport_backend.h"
#include "proto/page.h"

#define TCP_REQID_TAG        (1ULL << 63)

/* Target-side bounds: stop reading requests on a connection while its
 * pending output is above any of these (its peer is not reading). */
#define TCP_GATE_OUT_BYTES   (8u << 20)
#define TCP_GATE_OUT_ENTRIES 4096u
#define TCP_REP_SLOTS        256u     /* queued READ_DATA/WRITE_OK headers */
#define TCP_REP_SLOT_LEN     32u
#define TCP_ERRMSG_LEN       (FERRY_PAGE_HDR_LEN + 6u + FERRY_PAGE_ERRMSG_MAX)

/* Input staging buffer: holds any whole READ vector (24 + 8 + 1024*16). */
#define TCP_IBUF_LEN         (32u << 10)
/* Bytes read into the staging buffer per receive while waiting for a header
 * (a 4 KiB page reply plus a few small messages). */
#ifndef TCP_STAGE_LEN
#define TCP_STAGE_LEN        (32u << 10)
#endif
/* Fixed SO_SNDBUF/SO_RCVBUF; 0 leaves the kernel's autotuning alone (measured
 * equal or better on loopback, and not capped by net.core.*mem_max). */
#ifndef TCP_SOCKBUF
#define TCP_SOCKBUF          0
#endif
/* Work per connection per progress round, for fairness. */
#define TCP_READ_BUDGET_MSGS 64u
#define TCP_READ_BUDGET_BYTES (4u << 20)
#define TCP_OUT_BATCH        512      /* iovecs per sendmsg (<= IOV_MAX) */
#define TCP_SINK_BATCH       64       /* destination iovecs per readv */

/* ---------------------------------------------------------------- keys */

struct tcp_mr;

/** uint32 key -> region, open addressing, key 0 = empty. */
struct tcp_keymap {
	uint32_t *keys;
	struct tcp_mr **vals;
	uint32_t mask;           /* capacity - 1 (power of two), 0 when empty */
	uint32_t n;
};

/* ---------------------------------------------------------------- objects */

struct tcp_ctx {
	struct fx_ctx base;
	int epfd;
	int evfd;                /* eventfd: "fx_poll has work" for event-mode callers */
	bool kicked;             /* evfd has a pending count */
	bool in_poll;
	uint64_t op_timeout_ns;
	uint64_t next_check_ns;  /* next timeout scan; UINT64_MAX = none needed */
	struct tcp_keymap lkeys, rkeys;
	struct fx_link conns;   /* every connection not yet freed */
	struct fx_link work;    /* connections with I/O to make progress on */
	struct fx_link ready;   /* connections with completions to reap */
	struct fx_link zombies; /* closed and drained; freed at the next fx_poll so that
				    wc.conn of their last completions stays valid until then */
};

struct tcp_pd {
	struct fx_pd base;
};

struct tcp_rwr;

struct tcp_srq {
	struct fx_srq base;
	struct tcp_rwr *slots;   /* ring of posted receives */
	uint32_t mask;
	uint64_t head, tail;     /* posted / taken */
	struct fx_link waiters;  /* connections stopped for lack of a receive (l_srq), FIFO */
};

struct tcp_conn;

struct tcp_mr {
	struct fx_mr pub;
	uint8_t *start;
	/* Memory window: usable only through this connection (NULL: a registration,
	 * any connection of its domain; tcp_mw_orphan: its connection is gone). */
	struct tcp_conn *bound;
	struct fx_link l_bound;  /* on bound->windows */
};

/* A memory window: its own rkey over part of a registration, for one connection. */
struct tcp_mw {
	struct fx_mw pub;
	struct tcp_mr win;       /* what the rkey table maps the window's key to */
};

/** The connection a window points at once its own is gone: matches none. */
extern struct tcp_conn tcp_mw_orphan;

/* A send-queue slot. */
struct tcp_swr {
	uint64_t wr_id;
	uint64_t post_ns;
	uint32_t byte_len;
	uint8_t opcode;          /* enum fx_opcode */
	uint8_t signaled;
	uint8_t done;
	uint8_t status;          /* enum fx_wc_status, valid when done */
	uint8_t num_sge;
	uint8_t inl;             /* data copied to the inline area */
	struct fx_sge sge[FX_MAX_SGE];
};

/* A receive-queue slot. */
struct tcp_rwr {
	uint64_t wr_id;
	uint32_t cap;            /* sum of sge lengths */
	uint32_t byte_len;
	uint8_t done;
	uint8_t status;
	uint8_t num_sge;
	struct fx_sge sge[FX_MAX_SGE];
};

/* An outstanding READ/WRITE message (initiator side). */
struct tcp_req {
	uint64_t req_id;
	uint64_t sq_first;       /* sequence number of its first send slot */
	uint32_t nwr;            /* work requests (= vector entries) */
	uint32_t data_len;
	uint32_t arena_len;      /* arena bytes to release (incl. wrap waste) */
	uint8_t type;            /* FERRY_PAGE_READ / FERRY_PAGE_WRITE */
};

enum tcp_out_act {
	OUT_ACT_NONE = 0,
	OUT_ACT_SEND_DONE,       /* last piece of a SEND: complete slot `arg` */
	OUT_ACT_REPLY_DONE,      /* a reply header: release the oldest reply slot */
	OUT_ACT_ERR_SENT,        /* the ERROR reply went out */
};

/* One piece of pending output. */
struct tcp_out {
	const uint8_t *base;
	uint32_t len;
	uint8_t act;             /* enum tcp_out_act */
	uint8_t appmem;          /* points into a posted work request's buffer */
	uint64_t arg;
	struct tcp_mr *mr;       /* target side: region the data comes from */
};

enum tcp_in_state {
	IN_HDR = 0,              /* waiting for a header */
	IN_MSG,                  /* waiting until `need` bytes are buffered, then `on_msg` */
	IN_SINK,                 /* streaming `sink_left` bytes into destinations */
};

enum tcp_in_block {
	BLK_NONE = 0,
	BLK_RECV,                /* a SEND arrived, no receive posted (RNR) */
	BLK_GATE,                /* a request arrived, our output to the peer is full */
};

enum tcp_sink_kind {
	SINK_RECV = 0,           /* a control message into a posted receive */
	SINK_READ_DATA,          /* READ_DATA into the sges of the head request */
	SINK_WRITE_DATA,         /* WRITE data into target regions */
};

struct tcp_conn;
/* Input handlers return IN_CONT (state advanced, go on), IN_STOP (blocked or
 * out of input) or IN_DEAD (the connection failed). */
enum { IN_CONT = 0, IN_STOP = 1, IN_DEAD = -1 };
typedef int (*tcp_msg_fn)(struct tcp_conn *c);

/* Where the sink stands: segment (a, b) and the offset into it. */
struct tcp_cursor {
	uint32_t a, b;
	uint32_t off;
};

struct tcp_in {
	uint8_t *buf;
	uint32_t rpos, wpos;
	uint8_t state;           /* enum tcp_in_state */
	uint8_t blocked;         /* enum tcp_in_block */
	uint8_t sink_kind;       /* enum tcp_sink_kind */
	bool eof;                /* peer closed its side (read returned 0) */
	struct ferry_page_hdr hdr;
	uint32_t need;
	tcp_msg_fn on_msg;
	uint64_t sink_left;
	struct tcp_cursor cur;
	/* target WRITE destinations (FERRY_PAGE_MAX_IOV, allocated on first WRITE) */
	struct iovec *wdst;
	struct tcp_mr **wmr;
	uint32_t wdst_n;
	uint32_t wcount;         /* entries of the WRITE being received */
	uint64_t wreq;           /* its request id */
	uint64_t wlen;           /* its data bytes */
};

struct tcp_conn {
	struct fx_conn base;
	struct tcp_ctx *ctx;
	int fd;
	struct fx_link l_all, l_work, l_ready;
	struct fx_link l_srq;    /* on its SRQ's waiter list (self-linked when not) */
	struct fx_link windows;  /* memory windows bound to it (tcp_mr.l_bound) */
	bool on_work, on_ready;
	bool rd_ready, wr_ready;
	/* The peer hung up (EPOLLRDHUP/HUP/ERR seen). Edge-triggered epoll reports
	 * that once, often with the last data: keep reading until EOF even after a
	 * short read, or the close is never noticed. */
	bool peer_hup;
	bool closed;             /* fx_conn_close was called */
	bool zombie;             /* on ctx->zombies (linked by l_ready) */
	bool linger;             /* failed, still sending an ERROR reply before closing */
	bool shut_wr;
	uint64_t linger_deadline;

	/* send queue: sequence numbers, slot = seq & sq_mask */
	struct tcp_swr *sq;
	uint32_t sq_mask;
	uint64_t sq_head, sq_tail;    /* posted / retired */
	uint8_t *inl;                 /* inline area, max_inline per slot, allocated on first use */

	/* outstanding READ/WRITE messages, FIFO; same capacity as sq */
	struct tcp_req *rq;
	uint64_t rq_head, rq_tail;
	uint64_t next_req;

	/* arena for request headers + vectors (FIFO with rq) */
	uint8_t *arena;
	uint32_t arena_cap, arena_head, arena_used;

	/* receive queue */
	struct tcp_rwr *rcv;
	uint32_t rcv_mask;
	uint64_t rcv_head, rcv_next, rcv_tail;   /* posted / next to fill / next to reap */

	/* output queue (ring, grows by doubling) */
	struct tcp_out *out;
	uint32_t out_cap, out_head, out_n;
	uint32_t out_off;             /* bytes of the head entry already sent */
	uint64_t out_bytes;
	uint32_t out_appmem;          /* entries with appmem set */

	/* target replies */
	uint8_t (*rep)[TCP_REP_SLOT_LEN];
	uint32_t rep_head, rep_tail;
	uint8_t errmsg[TCP_ERRMSG_LEN];

	struct tcp_in in;
};

static inline struct tcp_ctx *tcp_ctx_of(struct fx_ctx *b)
{
	return (struct tcp_ctx *)(void *)b;
}

static inline struct tcp_conn *tcp_conn_of(struct fx_conn *b)
{
	return (struct tcp_conn *)(void *)b;
}

static inline struct tcp_srq *tcp_srq_of(struct fx_srq *b)
{
	return (struct tcp_srq *)(void *)b;
}

/* ---------------------------------------------------------------- tcp_ctx.c */

/** Connection has I/O to make progress on (read or write). */
void tcp_mark_work(struct tcp_conn *c);
/** Connection has completions to reap (if its queue heads say so). */
void tcp_mark_ready(struct tcp_conn *c);
/** A new operation with deadline @p deadline_ns is outstanding. */
void tcp_arm_timer(struct tcp_ctx *ctx, uint64_t deadline_ns);
/** Make ctx_fd readable (work pending outside fx_poll). */
void tcp_kick(struct tcp_ctx *ctx);

/* ---------------------------------------------------------------- tcp_mr.c */

int tcp_pd_alloc(struct fx_ctx *ctx, struct fx_pd **pd, struct ferry_err *err);
void tcp_pd_free(struct fx_pd *pd);
int tcp_reg_mr(struct fx_pd *pd, void *addr, size_t length, int access, struct fx_mr **mr,
	       struct ferry_err *err);
int tcp_dereg_mr(struct fx_mr *mr);
int tcp_mw_bind(struct fx_conn *conn, struct fx_mr *mr, void *addr, size_t length, int access, struct fx_mw **mw,
		struct ferry_err *err);
int tcp_mw_unbind(struct fx_mw *mw);
/** @p c is going away: its windows stop matching any connection. */
void tcp_mw_orphan_all(struct tcp_conn *c);
void tcp_keymap_free(struct tcp_keymap *m);
struct tcp_mr *tcp_keymap_get(const struct tcp_keymap *m, uint32_t key);
/**
 * Check a local sge: inside a region of @p pd registered under its lkey, with
 * @p need_access. Returns true when fine.
 */
bool tcp_sge_ok(struct tcp_ctx *ctx, struct fx_pd *pd, const struct fx_sge *sge, int need_access);

/* ---------------------------------------------------------------- tcp_conn.c */

int tcp_listen(struct fx_ctx *ctx, const char *host, uint16_t port, struct fx_listener **listener,
	       struct ferry_err *err);
int tcp_accept(struct fx_listener *listener, struct fx_pd *pd, const struct fx_conn_opts *opts,
	       struct fx_conn **conn, struct ferry_err *err);
void tcp_listener_close(struct fx_listener *listener);
int tcp_connect(struct fx_ctx *ctx, struct fx_pd *pd, const char *host, uint16_t port,
		const struct fx_conn_opts *opts, struct fx_conn **conn, struct ferry_err *err);
void tcp_conn_close(struct fx_conn *conn);
uint32_t tcp_conn_outstanding(const struct fx_conn *conn);
/**
 * Move @p c to FX_CONN_ERROR: the oldest unfinished send request completes
 * with @p oldest_status (FX_WC_FLUSH_ERR if the caller already failed the
 * guilty one), everything else with FX_WC_FLUSH_ERR. @p linger keeps the
 * socket open until the queued output (an ERROR reply) is sent.
 */
void tcp_conn_fail(struct tcp_conn *c, enum fx_wc_status oldest_status, bool linger, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/** A peer-side failure: reason from errno (0 = orderly close). */
void tcp_conn_fail_io(struct tcp_conn *c, int err, const char *what);
/** End a linger: close the socket. */
void tcp_conn_end_linger(struct tcp_conn *c);
/** Retire @p c (freed at the next fx_poll) if it is closed and has nothing left to deliver. */
void tcp_conn_maybe_free(struct tcp_conn *c);
/** Free the retired connections. */
void tcp_free_zombies(struct tcp_ctx *ctx);
void tcp_conn_free(struct tcp_conn *c);
/** True if @p c has pending work that touches @p mr's memory. */
bool tcp_conn_uses_mr(const struct tcp_conn *c, const struct tcp_mr *mr);

/* ---------------------------------------------------------------- tcp_io.c */

/** Append one output piece; -ENOMEM if the ring cannot grow. */
int tcp_out_push(struct tcp_conn *c, const void *base, uint32_t len, uint8_t act, uint64_t arg,
		 struct tcp_mr *mr, bool appmem);
/** Make room for @p k more pieces (so a message is never half queued). */
int tcp_out_reserve(struct tcp_conn *c, uint32_t k);
/** Write as much pending output as the socket takes. 0 or -errno (connection failed). */
int tcp_out_flush(struct tcp_conn *c);
/** Drop all pending output (connection failed). */
void tcp_out_drop(struct tcp_conn *c);
/** Read and dispatch input until blocked, drained or out of budget; true if more is pending. */
bool tcp_in_progress(struct tcp_conn *c);
/** Reset the input machine (connection failed). */
void tcp_in_reset(struct tcp_conn *c);
/** Start streaming @p len bytes into the destinations of @p kind (cursor reset). */
void tcp_in_start_sink(struct tcp_conn *c, enum tcp_sink_kind kind, uint64_t len);
/** Wait until @p need bytes (from the header) are buffered, then call @p fn. */
void tcp_in_expect(struct tcp_conn *c, uint32_t need, tcp_msg_fn fn);
/** Consume @p n bytes of buffered input. */
void tcp_in_consume(struct tcp_conn *c, uint32_t n);
/** Pointer to the buffered message (its header first). */
static inline const uint8_t *tcp_in_msg(const struct tcp_conn *c)
{
	return c->in.buf + c->in.rpos;
}
/** Little-endian u32 at @p p (wire fields the codec leaves to the transport). */
static inline uint32_t tcp_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
/** Count malformed input and fail the connection. */
void tcp_malformed(struct tcp_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---------------------------------------------------------------- tcp_initiator.c */

int tcp_post_send(struct fx_conn *conn, const struct fx_send_wr *wr, int n, int *post_err);
int tcp_post_recv(struct fx_conn *conn, const struct fx_recv_wr *wr, int n, int *post_err);
/** Dispatch a header of a reply (READ_DATA, WRITE_OK, tagged ERROR). */
int tcp_init_on_reply_hdr(struct tcp_conn *c);
/** Dispatch a control message header to the next posted receive. */
int tcp_init_on_control_hdr(struct tcp_conn *c);
/** A sink of kind SINK_RECV / SINK_READ_DATA finished. */
void tcp_init_recv_done(struct tcp_conn *c);
void tcp_init_read_data_done(struct tcp_conn *c);
/** Send queue bookkeeping: complete slot @p seq. */
void tcp_sq_complete(struct tcp_conn *c, uint64_t seq, enum fx_wc_status st);
/** Retire finished unsignalled requests at the tail; mark ready if a completion waits. */
void tcp_sq_advance(struct tcp_conn *c);
static inline struct tcp_swr *tcp_sq_slot(const struct tcp_conn *c, uint64_t seq)
{
	return &c->sq[seq & c->sq_mask];
}
/* A receive slot (a connection's own queue or an SRQ's) takes up posted WR @p w, @p cap bytes, not filled yet. */
static inline void tcp_rwr_post(struct tcp_rwr *r, const struct fx_recv_wr *w, uint32_t cap)
{
	r->wr_id = w->wr_id;
	r->cap = cap;
	r->byte_len = 0;
	r->done = 0;
	r->status = FX_WC_SUCCESS;
	r->num_sge = (uint8_t)w->num_sge;
	memcpy(r->sge, w->sg_list, (size_t)w->num_sge * sizeof(r->sge[0]));
}

static inline struct tcp_rwr *tcp_rcv_slot(const struct tcp_conn *c, uint64_t seq)
{
	return &c->rcv[seq & c->rcv_mask];
}
static inline struct tcp_req *tcp_rq_slot(const struct tcp_conn *c, uint64_t seq)
{
	return &c->rq[seq & c->sq_mask];
}

/* ---------------------------------------------------------------- tcp_srq.c */

int tcp_srq_create(struct fx_pd *pd, uint32_t depth, struct fx_srq **srq, struct ferry_err *err);
void tcp_srq_destroy(struct fx_srq *srq);
int tcp_post_srq_recv(struct fx_srq *srq, const struct fx_recv_wr *wr, int n, int *post_err);
/**
 * A message needs a receive and @p c (which uses an SRQ) has none in hand:
 * move the SRQ's oldest into c's ring. @return 1 taken, 0 none for us now
 * (c waits; woken by a post or a reap), -1 the taken receive was unusable
 * and c failed.
 */
int tcp_srq_take(struct tcp_conn *c);
/** Leave the SRQ's waiter list (connection failed or closed). */
void tcp_srq_forget(struct tcp_conn *c);

/* ---------------------------------------------------------------- tcp_target.c */

/** Dispatch a header of a READ or WRITE request. */
int tcp_target_on_req_hdr(struct tcp_conn *c);
/** A sink of kind SINK_WRITE_DATA finished. */
void tcp_target_write_done(struct tcp_conn *c);
/** Output drained: may lift a BLK_GATE block. */
bool tcp_target_gate_open(const struct tcp_conn *c);

#endif /* FERRY_TRANSPORT_TCP_H */
