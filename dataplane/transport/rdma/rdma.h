/**
 * @file rdma.h
 * Internal: the RDMA verbs backend of the transport (libibverbs + librdmacm;
 * see transport.h for the model, which is verbs' own).
 *
 * Objects:
 *  - context: one device (opts.rdma_device, or the first device librdmacm
 *    knows), one completion channel, one CQ shared by the send and receive
 *    queues of all its connections, one CM event channel for its connections,
 *    an eventfd ("completions are waiting"), and an epoll fd holding those
 *    plus the device's async-event fd: that epoll fd is fx_ctx_fd().
 *  - domain: an ibv_pd; registration: an ibv_mr (remote_base = the VA).
 *  - listener: an rdma_cm_id listening on its own CM event channel (that
 *    channel's fd is fx_listener_fd()); fx_accept takes one CONNECT_REQUEST,
 *    moves the new id to the context's channel, creates its RC QP in the
 *    caller's domain (so only that domain's rkeys work through it) and
 *    accepts. A connection has its own receive queue, or takes its
 *    receives from a shared receive queue of the same domain (rdma_srq.c).
 *  - connection: an rdma_cm_id + RC QP. The backend keeps a send ring and a
 *    receive ring (one slot per posted work request, wr_id = slot pointer),
 *    so completions are delivered per connection in posting order, unsignalled
 *    successes are retired silently when a later work request completes, and
 *    fx_conn_outstanding / backpressure are exact.
 *
 * Signalling: a work request is signalled on the wire when the caller asked
 * for it, when it is the last of an fx_post_send batch, or every
 * sq_cap/2 requests; so the send queue never fills up with unsignalled
 * requests that no completion would ever retire. Internally signalled
 * completions are consumed silently.
 *
 * Inline: FX_WR_INLINE up to the QP's max_inline_data uses IBV_SEND_INLINE;
 * longer (up to the connection's max_inline) is copied into a registered
 * per-slot bounce buffer, so the caller's buffer is free at once either way.
 *
 * Failures (verbs RC semantics): the failing work request gets the mapped
 * status (rdma_poll.c map_status: IBV_WC_REM_ACCESS_ERR -> REM_ACCESS_ERR,
 * REM_INV_REQ_ERR -> REM_INV_REQ_ERR, REM_OP_ERR / BAD_RESP_ERR -> REM_OP_ERR,
 * RETRY_EXC_ERR / RNR_RETRY_EXC_ERR -> RETRY_EXC_ERR, LOC_PROT_ERR /
 * LOC_ACCESS_ERR -> LOC_PROT_ERR, LOC_LEN_ERR (and rxe's LOC_QP_OP_ERR on a
 * receive) -> LOC_LEN_ERR, WR_FLUSH_ERR -> FLUSH_ERR, anything else
 * GENERAL_ERR), the rest flush, and the connection goes to FX_CONN_ERROR
 * (rdma_disconnect, so the peer hears of it). When the backend itself fails a
 * connection it moves the QP to the error state and the first flushed send
 * request reports: FX_WC_RETRY_EXC_ERR for peer gone (DISCONNECTED, REJECTED,
 * UNREACHABLE, CONNECT_ERROR), device removal and op_timeout_ms exceeded (a
 * software deadline on the oldest outstanding request, so a SEND stuck in RNR
 * retries, which are unlimited, ends too); FX_WC_REM_OP_ERR for an async QP
 * error; FX_WC_GENERAL_ERR for a CQ / device fatal error. The rest flush.
 * The wire's own limits: ack timeout 4.096 us * 2^14 (67 ms), retry count 7.
 *
 * Not available over verbs (the NIC does it): the target-side counters
 * bytes_served_*, remote_access_errors and malformed_frames stay 0.
 *
 * Threading: one thread per context, as for TCP. Contexts on one device
 * share librdmacm's ibv_context and hence its async-event fd; an async event
 * for another context's QP is recorded on that connection (atomically) and
 * handled by its own context's next fx_poll.
 *
 * Files: rdma_ctx.c (context: device, CQ, channels, epoll), rdma_poll.c
 * (fx_poll, CQ processing, reaping, timeouts), rdma_async.c (async events),
 * rdma_cm.c (listen/accept/connect, CM events), rdma_qp.c (connection: QP,
 * rings, failure, close), rdma_mr.c (domains, registrations), rdma_post.c
 * (posting).
 */
#ifndef FERRY_TRANSPORT_RDMA_H
#define FERRY_TRANSPORT_RDMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "dataplane/common/mono_time.h"
#include "dataplane/transport/fx_list.h"
#include "dataplane/transport/transport.h"
#include "dataplane/transport/transport_backend.h"

#define RDMA_CQ_BATCH 64
/* While spinning, look at the CM / async / completion-channel fds this often. */
#define RDMA_EVCHECK_NS 100000ull
/* QP ack timeout exponent (4.096 us * 2^14 = 67 ms per try), retries. */
#define RDMA_ACK_TIMEOUT 14
#define RDMA_RETRY_CNT 7
#define RDMA_RNR_RETRY 7          /* 7 = retry forever: a full receiver is backpressure */

struct rdma_conn;

struct rdma_ctx {
	struct fx_ctx base;
	struct ibv_context *verbs;        /* librdmacm's, shared per device */
	struct ibv_context **devices;     /* rdma_get_devices() list (freed at destroy) */
	struct ibv_comp_channel *cch;
	struct ibv_cq *cq;
	int cq_size;                      /* current CQE capacity */
	int cq_reserved;                  /* sum over live QPs of send + receive depth */
	int max_cqe;
	struct rdma_event_channel *cm_ch; /* events of this context's connections */
	int epfd, evfd;
	bool kicked, in_poll, armed;
	bool event_mode;                  /* fx_ctx_fd() was asked for: keep the CQ armed */
	uint64_t next_evcheck_ns;
	uint64_t op_timeout_ns;
	uint64_t next_check_ns;
	struct fx_link conns;           /* every connection not yet freed */
	struct fx_link ready;           /* connections with completions to reap */
	struct fx_link zombies;         /* closed, drained: freed at the next fx_poll */
	struct fx_link dead_pds;        /* fx_pd_free'd domains whose ibv_dealloc_pd must wait */
	struct fx_link dead_srqs;       /* fx_srq_destroy'ed SRQs whose ibv_destroy_srq must wait */
	/* post scratch (single thread per context) */
	struct ibv_send_wr *swr;
	struct ibv_sge *ssge;
	uint32_t scratch_cap;             /* work requests */
	uint32_t max_qp_rd_atom, max_qp_init_rd_atom;
	char devname[64];
};

struct rdma_pd {
	struct fx_pd base;
	struct ibv_pd *pd;
	struct fx_link l_dead;          /* on ctx->dead_pds: freed, QPs of closed connections still in it */
};

struct rdma_mr {
	struct fx_mr pub;
	struct ibv_mr *mr;
};

struct rdma_srq;

/* Internal send-queue opcode (beside enum fx_opcode): a window bind, never reported. */
#define RDMA_OP_BIND 7

struct rdma_mw {
	struct fx_mw pub;
	struct ibv_mw *mw;                /* NULL once its connection's QP is gone */
	struct fx_link l_conn;            /* on conn->windows */
};

/* A posted shared receive (wr_id = slot address | 2). */
struct rdma_srq_slot {
	struct rdma_srq *srq;
	struct rdma_srq_slot *next_free;
	uint64_t wr_id;                   /* the caller's */
};

struct rdma_srq {
	struct fx_srq base;
	struct rdma_ctx *ctx;
	struct ibv_srq *srq;
	struct rdma_srq_slot *slots;      /* depth of them */
	struct rdma_srq_slot *free;
	struct fx_link l_dead;            /* on ctx->dead_srqs: destroyed, QPs of closed connections still on it */
};

struct rdma_swr {
	struct rdma_conn *conn;
	uint64_t seq;
	uint64_t wr_id;
	uint64_t post_ns;
	uint32_t byte_len;
	uint8_t opcode;                   /* enum fx_opcode */
	uint8_t signaled;                 /* the caller asked for a completion */
	uint8_t done;
	uint8_t status;                   /* enum fx_wc_status */
};

struct rdma_rwr {
	struct rdma_conn *conn;
	uint64_t wr_id;
	uint32_t byte_len;
	uint8_t done;
	uint8_t status;
};

struct rdma_conn {
	struct fx_conn base;
	struct rdma_ctx *ctx;
	struct rdma_cm_id *id;
	struct ibv_qp *qp;
	struct fx_link l_all, l_ready;
	/* Type-2 windows bound to the QP hold a reference on it: rxe's destroy_qp
	 * waits for them, so they are deallocated before the QP goes. */
	struct fx_link windows;
	bool on_ready, closed, zombie, qp_err;
	int cq_share;                     /* CQEs reserved in ctx->cq_reserved */
	uint8_t override;                 /* status for the first flushed send request (0 = none) */
	int async_pending;                /* an async QP event seen by another context (atomic) */
	uint32_t hw_inline;               /* the QP's max_inline_data */
	uint32_t sig_every;

	struct rdma_swr *sq;
	uint32_t sq_mask;
	uint64_t sq_head, sq_tail;        /* posted / retired */
	uint64_t sq_hw;                   /* first request the hardware has not reported done */
	uint64_t last_hw_sig;             /* seq of the last signalled request + 1 */
	uint8_t *bounce;                  /* inline bounce area: max_inline per slot */
	struct ibv_mr *bounce_mr;

	struct rdma_rwr *rcv;
	uint32_t rcv_mask;
	uint64_t rcv_head, rcv_tail;      /* posted / reaped */
};

static inline struct rdma_ctx *rdma_ctx_of(struct fx_ctx *b)
{
	return (struct rdma_ctx *)(void *)b;
}

static inline struct rdma_conn *rdma_conn_of(struct fx_conn *b)
{
	return (struct rdma_conn *)(void *)b;
}

static inline struct rdma_srq *rdma_srq_of(struct fx_srq *b)
{
	return (struct rdma_srq *)(void *)b;
}

static inline struct rdma_swr *rdma_sq_slot(const struct rdma_conn *c, uint64_t seq)
{
	return &c->sq[seq & c->sq_mask];
}

static inline struct rdma_rwr *rdma_rcv_slot(const struct rdma_conn *c, uint64_t seq)
{
	return &c->rcv[seq & c->rcv_mask];
}

/* Epoll tags of the context's descriptors. */
enum { RDMA_EV_COMP = 1, RDMA_EV_CM = 2, RDMA_EV_ASYNC = 3, RDMA_EV_KICK = 4 };

/* rdma_ctx.c */
bool rdma_conn_has_completion(const struct rdma_conn *c);
void rdma_kick(struct rdma_ctx *ctx);
void rdma_mark_ready(struct rdma_conn *c);
void rdma_arm_timer(struct rdma_ctx *ctx, uint64_t deadline_ns);
/** Make room in the CQ for @p n more CQEs (resize if needed). */
int rdma_cq_reserve(struct rdma_ctx *ctx, int n, struct ferry_err *err);
/** Grow the post scratch to @p n work requests. */
int rdma_scratch_reserve(struct rdma_ctx *ctx, uint32_t n);

/* rdma_poll.c */
int rdma_poll(struct fx_ctx *ctx, struct fx_wc *wc, int max, int timeout_ms);
int rdma_ctx_fd(const struct fx_ctx *ctx);
/** Consume (and ack) the completion channel's events. */
void rdma_drain_comp_channel(struct rdma_ctx *ctx);

/* rdma_async.c */
void rdma_handle_async(struct rdma_ctx *ctx);

/* rdma_mr.c */
int rdma_pd_alloc(struct fx_ctx *ctx, struct fx_pd **pd, struct ferry_err *err);
void rdma_pd_free(struct fx_pd *pd);
/** Retry deallocating the domains that still had QPs; @p force frees the wrappers regardless. */
void rdma_reap_dead_pds(struct rdma_ctx *ctx, bool force);
int rdma_reg_mr(struct fx_pd *pd, void *addr, size_t length, int access, struct fx_mr **mr,
		struct ferry_err *err);
int rdma_dereg_mr(struct fx_mr *mr);

/* rdma_post.c */
int rdma_mw_bind(struct fx_conn *conn, struct fx_mr *mr, void *addr, size_t length, int access,
		 struct fx_mw **mw, struct ferry_err *err);
int rdma_mw_unbind(struct fx_mw *mw);

/* rdma_srq.c */
int rdma_srq_create(struct fx_pd *pd, uint32_t depth, struct fx_srq **srq, struct ferry_err *err);
void rdma_srq_destroy(struct fx_srq *srq);
int rdma_post_srq_recv(struct fx_srq *srq, const struct fx_recv_wr *wr, int n, int *post_err);
/** Retry destroying SRQs that still had QPs; @p force frees the wrappers regardless. */
void rdma_reap_dead_srqs(struct rdma_ctx *ctx, bool force);
/** A completion of a shared receive: recycle its slot, append it to its connection's ring (returned; NULL if none). */
struct rdma_conn *rdma_srq_on_cqe(struct rdma_ctx *ctx, const struct ibv_wc *wc, enum fx_wc_status st);

/* rdma_cm.c */
/** Handle the pending events of the context's CM channel (DISCONNECTED, ...). */
void rdma_handle_cm_events(struct rdma_ctx *ctx);
int rdma_listen_(struct fx_ctx *ctx, const char *host, uint16_t port, struct fx_listener **listener,
		 struct ferry_err *err);
int rdma_accept_(struct fx_listener *listener, struct fx_pd *pd, const struct fx_conn_opts *opts,
		 struct fx_conn **conn, struct ferry_err *err);
void rdma_listener_close(struct fx_listener *listener);
int rdma_connect_(struct fx_ctx *ctx, struct fx_pd *pd, const char *host, uint16_t port,
		  const struct fx_conn_opts *opts, struct fx_conn **conn, struct ferry_err *err);

/* rdma_qp.c */
void rdma_format_addr(const struct sockaddr *sa, char *buf, size_t len);
/** Make a connection of @p id with its QP in @p pd; on failure the id stays the caller's. */
int rdma_conn_new(struct rdma_ctx *ctx, struct fx_pd *pd, struct rdma_cm_id *id, const struct fx_conn_opts *opts,
		  struct rdma_conn **out, struct ferry_err *err);
void rdma_conn_close(struct fx_conn *conn);
uint32_t rdma_conn_outstanding(const struct fx_conn *conn);
/**
 * Fail @p c: state FX_CONN_ERROR, QP to the error state (so everything
 * flushes), the first flushed send request reports @p status (0 = plain flush).
 */
void rdma_conn_fail(struct rdma_conn *c, enum fx_wc_status status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
bool rdma_conn_drained(const struct rdma_conn *c);
/** Retire @p c (freed at the next fx_poll) if closed and drained. */
void rdma_conn_maybe_free(struct rdma_conn *c);
void rdma_free_zombies(struct rdma_ctx *ctx);
void rdma_conn_free(struct rdma_conn *c);

/* rdma_post.c */
int rdma_post_send(struct fx_conn *conn, const struct fx_send_wr *wr, int n, int *post_err);
int rdma_post_recv(struct fx_conn *conn, const struct fx_recv_wr *wr, int n, int *post_err);

#endif /* FERRY_TRANSPORT_RDMA_H */
