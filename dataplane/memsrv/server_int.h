/**
 * @file server_int.h
 * Internal to ferry-memsrv: the server context and the per-client session
 * context shared by server.c (event loop, accept, completion dispatch) and
 * session.c (the per-client state machine and request handlers).
 */
#ifndef FERRY_MEMSRV_SERVER_INT_H
#define FERRY_MEMSRV_SERVER_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "dataplane/common/auth.h"
#include "dataplane/common/mono_time.h"
#include "dataplane/memsrv/config.h"
#include "dataplane/memsrv/extent_alloc.h"
#include "dataplane/memsrv/pool.h"
#include "dataplane/transport/transport.h"
#include "proto/page.h"

/*
 * Control messages arrive through one shared receive queue (SRQ) for every
 * client: the server posts SRV_SRQ_DEPTH buffers once, any connection's
 * message takes the oldest, and the buffer goes back to the SRQ as soon as
 * its message is handled (before the next completion is looked at), so no
 * client can hold receive buffers. Over RDMA an empty SRQ means RNR retries
 * for the sender (never a drop); over TCP the connection waits its turn.
 *
 * Replies come from per-session send buffers, which are the per-client
 * credit: a session has SESS_SLOTS reply slots, one taken per request
 * received and freed when its reply's SEND completes, so a client may have
 * SESS_SLOTS requests in flight. A request beyond that is answered from the
 * reserve slot (SESS_BUSY_SLOT) with ERROR BUSY (counter flood_refused); a
 * client that floods even past that is closed (counter flood_closed). A
 * well-behaved client (pool_client: one call at a time) never sees either.
 * One more send slot (SESS_NOTICE_SLOT) carries the unsolicited shutdown
 * notice.
 */
#define SESS_SLOTS        8u
#define SESS_BUSY_SLOT    SESS_SLOTS
#define SESS_NOTICE_SLOT  (SESS_SLOTS + 1u)
#define SESS_SEND_SLOTS   (SESS_SLOTS + 2u)
#define SESS_BUF_LEN      FERRY_PAGE_CTRL_MAX

/** An unauthenticated connection is dropped after this long (it holds a client slot). */
#define SESS_AUTH_TIMEOUT_MS   10000u
/** A session waiting for its last message (ERROR, shutdown notice) to go out waits this long. */
#define SESS_LINGER_MS          1000u
/** A closed session whose flushed requests never came back is freed anyway after this long. */
#define SESS_ZOMBIE_MAX_MS      2000u
/** Connections accepted beyond max_clients, only to be told "busy". */
#define SESS_REFUSE_SLACK       16u
/** Room for a close reason (the transport's error text or ours). */
#define SESS_REASON_MAX 288
/** Shutdown waits this long for notices to go out before closing everything. */
#define SRV_SHUTDOWN_LINGER_MS   500u
/** Live shares (tokens) of one extent; SHARE beyond is refused with LIMIT. */
#define SHARE_MAX_PER_EXTENT     8u
/**
 * Attachments one session may hold; ATTACH beyond is refused with LIMIT.
 * A migration source attaches every extent the main host shares on this
 * sub-host in one session: up to MIGP_EXTENTS_MAX (1024, proto/migrate.h),
 * e.g. 16 GiB of cold pages in 16 MiB extents. Each is one registration of
 * memory the owner already holds (no quota is charged).
 */
#define SESS_MAX_ATTACH         1024u

enum sess_state {
	SESS_NEW = 0,        /**< accepted, waiting for HELLO */
	SESS_CHALLENGED,     /**< CHALLENGE sent, waiting for AUTH */
	SESS_READY,          /**< authenticated: ALLOC / FREE / STATS */
	SESS_REFUSING,       /**< over max_clients: the first message is answered with ERROR BUSY */
	SESS_CLOSING,        /**< a final message is in flight; closed when its SEND completes */
	SESS_ZOMBIE,         /**< connection closed; waiting for its flushed requests */
};

/** Kinds of work request, encoded in wr_id (SRQ receives are marked by SRV_WR_SRQ instead). */
enum { WR_RECV = 1, WR_SEND = 2 };
/** wr_id of an SRQ receive: this bit plus the buffer index. */
#define SRV_WR_SRQ (1ull << 63)
/** SRQ buffers: twice the session table, within these bounds. */
#define SRV_SRQ_MIN   64u
#define SRV_SRQ_MAX 4096u

struct session;

/*
 * Extent sharing (share.c). A share is a grant by the owning session on one
 * of its extents, named by a random token; each attachment is a memory
 * window over that extent's range bound to the attaching session's
 * connection. Shares live in one server-wide list; a share's attachments
 * hang off it.
 */
struct attachment {
	struct attachment *next;     /**< in share->atts */
	struct share *share;
	struct session *attacher;
	uint32_t id;                 /**< unique within the attacher's session */
	struct fx_mw *mw;            /**< bound to the attacher's connection, with the share's rights only */
};

struct share {
	struct share *next;          /**< in memsrv->shares */
	struct session *owner;
	uint32_t extent_id;
	uint32_t rights;             /**< FERRY_PAGE_SHARE_* */
	uint64_t offset, length;     /**< the extent, in the pool */
	struct fx_mr *mr;            /**< the extent's registration (outlives the share) */
	uint8_t token[FERRY_PAGE_TOKEN_LEN];
	struct attachment *atts;
};

/* A kept extent (kept.c): out of every session, named by its claim token. */
struct kept {
	struct kept *next;           /**< in memsrv->kept */
	uint32_t extent_id;          /**< the allocator's id, in the server's kept account */
	uint64_t offset, length;     /**< in the pool */
	struct fx_mr *mr;            /**< the extent's registration, no remote rights, no window */
	uint64_t from_sid;           /**< the session that kept it (logs) */
	uint8_t token[FERRY_PAGE_TOKEN_LEN];
};

struct sess_extent {
	uint32_t id;
	struct fx_mr *mr;    /**< exactly the extent, no remote rights, windows only */
	struct fx_mw *mw;    /**< window over all of mr, bound to the session's connection only */
};

/** One client connection: its send buffers, extents and state. */
struct session {
	struct memsrv *srv;
	uint32_t idx, gen;           /**< table slot and its generation: together they name the session in wr_ids */
	uint64_t sid;                /**< session number, in logs and AUTH_OK */
	enum sess_state state;
	bool counted;                /**< counted in clients_connected (not a refused connection) */

	struct fx_conn *conn;        /**< NULL once closed */
	struct fx_mr *buf_mr;
	uint8_t *bufs;               /**< SESS_SEND_SLOTS send buffers */
	uint32_t outstanding;        /**< posted SENDs whose completion has not been polled */
	bool send_busy[SESS_SEND_SLOTS];
	int final_slot;              /**< CLOSING: the send slot whose completion ends the session */

	char peer[64];
	char name[FERRY_PAGE_NAME_MAX + 1];
	uint8_t server_nonce[FERRY_PAGE_NONCE_LEN];
	uint64_t deadline_ms;        /**< auth or linger deadline, by state */
	char close_reason[FERRY_PAGE_ERRMSG_MAX + 1]; /**< CLOSING: what the closed line will say */

	struct ea_client *acct;      /**< allocator account, from authentication on */
	struct sess_extent *ext;
	uint32_t next, ext_cap;

	uint32_t nattach;            /**< attachments held (share.c) */
	uint32_t next_attach_id;
};

struct memsrv_counters {
	uint64_t clients_total;      /**< connections accepted as clients (not refused) */
	uint64_t clients_refused;    /**< turned away: busy */
	uint64_t auth_failures;
	uint64_t allocs, frees;
	uint64_t alloc_failures_full, alloc_failures_quota;
	uint64_t errors_sent;
	uint64_t malformed;          /**< undecodable messages seen here (the transport counts its own) */
	uint64_t shares;             /**< SHARE granted */
	uint64_t share_refused;      /**< SHARE / UNSHARE / DETACH refused (not yours, limit) */
	uint64_t attaches;           /**< ATTACH granted */
	uint64_t attach_refused;     /**< ATTACH refused (bad token, limit, registration failed) */
	uint64_t detaches;
	uint64_t revocations;        /**< attachments revoked by UNSHARE, FREE or the owner's end */
	uint64_t shares_active, attachments_active;
	uint64_t kept;               /**< KEEP granted */
	uint64_t keep_refused;       /**< KEEP refused (not yours, limits) */
	uint64_t claims;             /**< CLAIM granted */
	uint64_t claim_refused;      /**< CLAIM / DISCARD refused (bad or spent token, quota) */
	uint64_t discards;           /**< kept extents discarded */
	uint64_t flood_refused;      /**< requests beyond a client's credit answered with BUSY */
	uint64_t flood_closed;       /**< clients closed for flooding past that */
};

/** The server context. */
struct memsrv {
	const struct memsrv_config *cfg;
	struct memsrv_pool pool;
	struct extent_alloc *ea;
	struct ferry_secret secret;
	struct fx_ctx *ctx;
	/*
	 * One domain for every client, so that they can share the SRQ (transport.h:
	 * a connection and its SRQ share a domain). Isolation comes from memory
	 * windows instead: every extent is registered without remote rights, and
	 * its owner and each attacher reach it through a window over the whole
	 * registration bound to their own connection. (Whole registration: rxe
	 * checks a window's accesses against its registration's range, so a
	 * window over part of a bigger registration would reach all of it.)
	 */
	struct fx_pd *pd;
	struct fx_srq *srq;
	uint8_t *rbufs;              /**< srq_depth receive buffers of SESS_BUF_LEN */
	struct fx_mr *rbuf_mr;
	uint32_t srq_depth;
	struct fx_listener *listener;
	uint16_t port;
	int epfd, sigfd, timerfd;
	bool listener_armed;
	bool ready_written;

	struct session **sessions;   /**< table of sess_cap entries, NULL = free */
	uint32_t *gens;              /**< generation of each table slot */
	uint32_t sess_cap, nsessions;
	uint32_t nclients;           /**< clients_connected */
	uint64_t next_sid;

	struct share *shares;        /**< every live share (share.c) */
	struct kept *kept;           /**< every kept extent (kept.c) */
	uint32_t nkept;
	struct ea_client *kept_acct; /**< allocator account of kept extents: quota = kept_bytes */

	struct memsrv_counters c;
	bool stopping;
	uint64_t stop_deadline_ms;
};

/* server.c */
/** A session is gone for good: free its table slot (and accept again if we had stopped). */
void memsrv_session_gone(struct memsrv *srv, struct session *s);

/* session.c */
/**
 * Start a session in table slot @p idx on an accepted connection (in the
 * server's domain, on its SRQ): send buffers, state, counters, the
 * "accepted" log line. On success the session owns @p conn; on failure the
 * caller still does.
 */
int session_start(struct memsrv *srv, uint32_t idx, struct fx_conn *conn, const char *peer, bool refuse,
		  struct ferry_err *err);
/** A completion of one of this session's SENDs (wr_id already matched to it). */
void session_on_completion(struct session *s, const struct fx_wc *wc, unsigned kind, unsigned slot);
/** A message (or a failed receive) from the SRQ for this session; @p buf goes back to the SRQ after. */
void session_on_message(struct session *s, const struct fx_wc *wc, const uint8_t *buf);
/** Close: release extents, close the connection, become a zombie until flushes are reaped. */
void session_close(struct session *s, const char *reason);
/** Free a closed session now, whether or not its flushed requests came back (teardown). */
void session_destroy(struct session *s);
/** Periodic check of deadlines. */
void session_tick(struct session *s, uint64_t now);
/** Server shutdown: tell a ready client and close after the notice went out. */
void session_shutdown(struct session *s);

/* share.c */
/** Number of live shares of (@p owner, @p extent_id). */
uint32_t share_count(const struct session *owner, uint32_t extent_id);
/**
 * Grant @p rights on the owner's extent [@p offset, +@p length) of the pool:
 * a new share with a fresh random token (copied to @p token).
 * @return 0, -EMLINK over SHARE_MAX_PER_EXTENT, -ENOMEM.
 */
int share_create(struct session *owner, uint32_t extent_id, uint64_t offset, uint64_t length, struct fx_mr *mr,
		 uint32_t rights, uint8_t token[FERRY_PAGE_TOKEN_LEN]);
/** The live share named by @p token (constant-time compare), or NULL. */
struct share *share_find(struct memsrv *srv, const uint8_t token[FERRY_PAGE_TOKEN_LEN]);
/**
 * Attach @p s to @p sh: bind a window over the extent to s's connection
 * with the share's rights. @return 0 and @p out filled, -EMLINK over
 * SESS_MAX_ATTACH, or the bind's error (in @p err).
 */
int share_attach(struct share *sh, struct session *s, struct ferry_page_attach_ok *out, struct ferry_err *err);
/** Drop @p s's attachment @p attach_id. @return 0, -ENOENT if s holds no such attachment. */
int share_detach(struct session *s, uint32_t attach_id);
/**
 * Revoke every share of (@p owner, @p extent_id): each attachment's
 * window is unbound at once. @return attachments revoked;
 * *@p failed counts windows that would not go away.
 */
uint32_t share_revoke_extent(struct session *owner, uint32_t extent_id, uint32_t *failed);
/** A session ends: revoke the shares it owns, drop the attachments it holds. */
void share_session_closed(struct session *s);

/* kept.c */
/** Open the server's kept account (at create). */
int kept_open(struct memsrv *srv, struct ferry_err *err);
/**
 * Keep @p s's extent @p extent_id whose window is already unbound and
 * shares revoked: move it to the kept account, new random token in @p token.
 * @return 0; -ENOENT not s's extent; -EMLINK kept_bytes/kept_max limit;
 * -EPERM keeping disabled; -ENOMEM. Nothing changes on failure.
 */
int kept_add(struct memsrv *srv, struct session *s, uint32_t extent_id, struct fx_mr *mr,
	     uint8_t token[FERRY_PAGE_TOKEN_LEN], struct ferry_err *err);
/** The kept extent named by @p token (constant-time compare), or NULL; *@p link its list link. */
struct kept *kept_find(struct memsrv *srv, const uint8_t token[FERRY_PAGE_TOKEN_LEN], struct kept ***link);
/** Forget a kept extent whose memory changed hands (claimed): wipe its token, free the record. */
void kept_unlink(struct memsrv *srv, struct kept **link);
/** Deregister, scrub and free a kept extent. @return 0 (*@p length its bytes) or the deregistration error. */
int kept_discard(struct memsrv *srv, struct kept **link, uint64_t *length);
/** Server teardown: every kept extent is lost. */
void kept_destroy_all(struct memsrv *srv);

static inline uint64_t sess_wr_id(const struct session *s, unsigned kind, unsigned slot)
{
	return ((uint64_t)s->gen << 32) | ((uint64_t)s->idx << 16) | ((uint64_t)kind << 8) | slot;
}

#endif /* FERRY_MEMSRV_SERVER_INT_H */
