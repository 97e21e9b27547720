/**
 * @file transport_backend.h
 * Internal: what a transport backend (tcp/, later rdma/) provides and the
 * common base objects it embeds. Not for callers of transport.h.
 *
 * Every public object is a backend struct whose *first member* is the base
 * struct declared here, so transport.c can read the common fields and the
 * backend can cast back (container_of on the first member):
 *
 *     struct tcp_ctx  { struct fx_ctx base; ... };
 *     struct tcp_pd   { struct fx_pd base; ... };
 *     struct tcp_conn { struct fx_conn base; ... };
 *     struct tcp_mr   { struct fx_mr pub; ... };   (struct fx_mr is public)
 *
 * (A backend whose listener needs nothing beyond the base, like TCP, may
 * allocate struct fx_listener itself.)
 *
 * transport.c validates arguments that do not depend on the backend, applies
 * option defaults, keeps the object counts that make fx_pd_free return -EBUSY
 * and dispatches everything else through the context's ops table. The base
 * fields are written by the backend (state, error text, peer) and read by the
 * generic accessors, so accessors cost no indirect call.
 *
 * Adding a backend: implement struct fx_backend_ops, export a
 * `const struct fx_backend fx_backend_<name>` and list it in transport.c's
 * backend table (under its build option).
 */
#ifndef FERRY_TRANSPORT_BACKEND_H
#define FERRY_TRANSPORT_BACKEND_H

#include <stdint.h>

#include "dataplane/transport/transport.h"

/* Defaults applied by transport.c before the backend sees the options. */
#define FX_DEF_CQ_DEPTH          4096u
#define FX_DEF_OP_TIMEOUT_MS     5000u
#define FX_DEF_CONNECT_TIMEOUT_MS 5000u
#define FX_DEF_POLL_SPIN_US      50u
#define FX_DEF_MAX_SEND_WR       256u
#define FX_DEF_MAX_RECV_WR       64u
#define FX_DEF_MAX_INLINE        256u
/* Upper limits (requests above them fail with -EINVAL). */
#define FX_LIMIT_MAX_SEND_WR     16384u
#define FX_LIMIT_MAX_RECV_WR     16384u
#define FX_LIMIT_MAX_INLINE      4096u

#define FX_PEER_MAX  64   /* "ip:port" incl. NUL, as promised by fx_accept */
#define FX_CONN_ERR_MAX 256

struct fx_backend_ops;

/** Base of every context. */
struct fx_ctx {
	const struct fx_backend_ops *ops;
	enum fx_kind kind;
	struct fx_ctx_opts opts;      /**< defaults applied; rdma_device not owned */
	struct fx_ctx_stats stats;    /**< backends bump these directly */
	uint32_t n_pds, n_listeners, n_conns; /**< live objects (maintained by transport.c) */
};

/** Base of every protection domain. */
struct fx_pd {
	struct fx_ctx *ctx;
	uint32_t n_mrs;               /**< live registrations (transport.c) */
	uint32_t n_conns;             /**< connections not yet closed (transport.c) */
	uint32_t n_srqs;              /**< live shared receive queues (transport.c) */
	uint32_t n_mws;               /**< bound memory windows (transport.c) */
};

/** Base of every shared receive queue. */
struct fx_srq {
	struct fx_ctx *ctx;
	struct fx_pd *pd;
	uint32_t depth;
	uint32_t posted;              /**< receives posted, not yet taken (backend) */
	uint32_t n_conns;             /**< open connections using it (transport.c) */
};

/** Base of every listener. */
struct fx_listener {
	struct fx_ctx *ctx;
	int fd;                       /**< fx_listener_fd() */
	uint16_t port;                /**< fx_listener_port() */
};

/** Base of every connection. */
struct fx_conn {
	struct fx_ctx *ctx;
	const struct fx_backend_ops *ops; /**< == ctx->ops; saves a load on the post path */
	struct fx_pd *pd;
	enum fx_conn_state state;
	struct fx_conn_opts opts;     /**< defaults applied */
	void *user;
	char peer[FX_PEER_MAX];
	char error[FX_CONN_ERR_MAX];  /**< "" while fine */
};

/**
 * The backend's half of every public function. Arguments are already
 * checked for NULL and options carry their defaults. Functions that create
 * an object return it fully initialised, base included (transport.c then
 * counts it).
 */
struct fx_backend_ops {
	void (*ctx_destroy)(struct fx_ctx *ctx);
	int (*ctx_fd)(const struct fx_ctx *ctx);
	int (*poll)(struct fx_ctx *ctx, struct fx_wc *wc, int max, int timeout_ms);

	int (*pd_alloc)(struct fx_ctx *ctx, struct fx_pd **pd, struct ferry_err *err);
	void (*pd_free)(struct fx_pd *pd);
	int (*reg_mr)(struct fx_pd *pd, void *addr, size_t length, int access, struct fx_mr **mr,
		      struct ferry_err *err);
	int (*dereg_mr)(struct fx_mr *mr);

	int (*mw_bind)(struct fx_conn *conn, struct fx_mr *mr, void *addr, size_t length, int access,
		       struct fx_mw **mw, struct ferry_err *err);
	int (*mw_unbind)(struct fx_mw *mw);

	int (*srq_create)(struct fx_pd *pd, uint32_t depth, struct fx_srq **srq, struct ferry_err *err);
	void (*srq_destroy)(struct fx_srq *srq);
	int (*post_srq_recv)(struct fx_srq *srq, const struct fx_recv_wr *wr, int n, int *post_err);

	int (*listen)(struct fx_ctx *ctx, const char *host, uint16_t port, struct fx_listener **listener,
		      struct ferry_err *err);
	int (*accept)(struct fx_listener *listener, struct fx_pd *pd, const struct fx_conn_opts *opts,
		      struct fx_conn **conn, struct ferry_err *err);
	void (*listener_close)(struct fx_listener *listener);
	int (*connect)(struct fx_ctx *ctx, struct fx_pd *pd, const char *host, uint16_t port,
		       const struct fx_conn_opts *opts, struct fx_conn **conn, struct ferry_err *err);

	int (*post_send)(struct fx_conn *conn, const struct fx_send_wr *wr, int n, int *post_err);
	int (*post_recv)(struct fx_conn *conn, const struct fx_recv_wr *wr, int n, int *post_err);
	uint32_t (*conn_outstanding)(const struct fx_conn *conn);
	/** Flush and release; the backend frees the memory once completions are reaped. */
	void (*conn_close)(struct fx_conn *conn);
};

/** A backend: how to make a context of its kind. */
struct fx_backend {
	enum fx_kind kind;
	const char *name;
	int (*ctx_create)(const struct fx_ctx_opts *opts, struct fx_ctx **ctx, struct ferry_err *err);
};

extern const struct fx_backend fx_backend_tcp;
#ifdef FERRY_HAVE_RDMA
extern const struct fx_backend fx_backend_rdma;
#endif

/** Record why @p conn failed (first reason wins); used by backends. */
void fx_conn_set_error(struct fx_conn *conn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif /* FERRY_TRANSPORT_BACKEND_H */
