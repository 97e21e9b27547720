/*
 * Scaffolding shared by the TCP and RDMA transport tests: a connected pair of
 * contexts (both ends in one process) with registered target and initiator
 * memory, polling helpers with deadlines, pattern fill. Everything here is the
 * same for both backends; what each test expects of its backend (remote_base,
 * target-side counters, RNR, inline...) stays in the test file.
 *
 * Helpers fail the running cmocka test on an unexpected error.
 */
#ifndef FERRY_TESTS_XPORT_TEST_UTIL_H
#define FERRY_TESTS_XPORT_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "dataplane/transport/transport.h"

#define PAGE 4096u
#define TGT_PAGES 256u
#define TGT_LEN ((size_t)TGT_PAGES * PAGE)   /* target memory; the initiator has twice that */

struct xt_pair {
	enum fx_kind kind;
	const char *host;                 /* address listened on and connected to */
	struct fx_ctx *ci, *ct;           /* initiator, target */
	struct fx_pd *pi, *pt;
	struct fx_listener *l;
	struct fx_conn *c_i, *c_t;        /* initiator's and target's end */
	uint8_t *tbuf;                    /* target memory (pattern seed 1), remote read/write */
	struct fx_mr *tmr;
	uint8_t *ibuf;                    /* initiator memory (zeroed), local write */
	struct fx_mr *imr;
};

uint64_t xt_now_ms(void);
void xt_fill_pattern(uint8_t *p, size_t len, uint32_t seed);
struct fx_sge xt_sge(struct fx_mr *mr, void *addr, uint32_t len);

/*
 * TCP: accept the connection that fx_connect (non-blocking) just made; polls
 * up to 2 s and checks the peer string.
 */
struct fx_conn *xt_accept_one(struct fx_listener *l, struct fx_pd *pd, const struct fx_conn_opts *o);

/*
 * Connect @p ci / @p ipd to listener @p l of @p host and accept into @p tpd.
 * RDMA: fx_connect blocks until the passive side accepts, so it runs on a
 * helper thread while this one accepts (up to 10 s). TCP: fx_connect, then
 * xt_accept_one.
 */
void xt_connect_accept(enum fx_kind kind, const char *host, struct fx_ctx *ci, struct fx_pd *ipd,
		       struct fx_listener *l, struct fx_pd *tpd, const struct fx_conn_opts *io,
		       const struct fx_conn_opts *to, struct fx_conn **c_i, struct fx_conn **c_t);

/* Contexts, domains, listener on @p host port 0, a connection, both MRs. */
void xt_pair_open(struct xt_pair *p, enum fx_kind kind, const char *host, const struct fx_ctx_opts *co,
		  const struct fx_conn_opts *io, const struct fx_conn_opts *to);
/* Close both ends, poll for @p spin_ms (flushes/teardown), free everything. */
void xt_pair_close(struct xt_pair *p, int spin_ms);

/*
 * Poll both contexts until @p want initiator completions arrived (or timeout);
 * the target must produce none (its completions stay for xt_drain_target).
 */
int xt_drain(struct xt_pair *p, struct fx_wc *wc, int want, int timeout_ms);
/* Poll only the target until it has @p want completions; the initiator must produce none. */
int xt_drain_target(struct xt_pair *p, struct fx_wc *wc, int want, int timeout_ms);
/* Poll both sides for @p ms, discarding completions (lets teardown happen). */
void xt_spin(struct xt_pair *p, int ms);

/*
 * Backpressure on a pair opened with max_send_wr XT_BP_SEND_WR and max_recv_wr
 * XT_BP_RECV_WR: 80 page READs, of which 32 post and the rest get -EAGAIN
 * (backpressure_events 2); reposting as completions arrive (within
 * @p deadline_ms) keeps <= 32 outstanding, every page arrives in order and
 * intact; 6 receives post 4.
 */
#define XT_BP_SEND_WR 32
#define XT_BP_RECV_WR 4
void xt_check_backpressure(struct xt_pair *p, int deadline_ms);

/*
 * Initiator SENDs three page-protocol messages: HELLO ("vm-test", one sge, wr_id 1),
 * ALLOC (1 MiB, split over three sges, wr_id 2), STATS (inline from a stack
 * buffer clobbered right after posting, wr_id 3). Checks the three SEND
 * completions (in order, within @p timeout_ms) and returns the encoded lengths
 * in @p len; the target's receives are the caller's to check.
 */
void xt_send_control_msgs(struct xt_pair *p, int timeout_ms, int len[3]);

/*
 * Shared receive queue: three connections on one SRQ (depth 8) of the
 * target's domain. All three SEND while the SRQ is empty (nothing arrives,
 * nothing is lost, connections stay up), 2 posted receives take 2 messages,
 * 1 more the third; each completion names its connection and holds exactly
 * that client's bytes. An SRQ of another domain is refused, fx_post_recv on
 * an SRQ connection is -EINVAL, destroy/pd_free are -EBUSY while in use, a
 * closed connection consumes no receive.
 */
void xt_check_srq(enum fx_kind kind, const char *host);

/*
 * Memory windows: a registration without remote rights, a read-write window
 * bound to connection A and a read-only one to B: A writes and B reads
 * through them, B's WRITE and C's use of A's key are remote access errors
 * that change nothing, A's key dies on unbind; argument rules; a
 * registration with windows cannot be deregistered.
 */
void xt_check_mw(enum fx_kind kind, const char *host);

/* A test that runs @p fn(@p arg, READ) then @p fn(@p arg, WRITE) after @p guard (may skip). */
#define XT_READ_WRITE_TEST(name, guard, fn, arg)         \
	static void name(void **state)                   \
	{                                                \
		(void)state;                             \
		guard;                                   \
		fn(arg, FX_OP_READ);                     \
		fn(arg, FX_OP_WRITE);                    \
	}

#endif
