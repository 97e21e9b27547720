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
#include "dataplane/memsrv/config.h"
#include "dataplane/memsrv/extent_alloc.h"
#include "dataplane/memsrv/pool.h"
#include "dataplane/transport/transport.h"
#include "proto/page.h"

/*
 * Per-session control buffers. Each of the SESS_SLOTS receive slots is
 * paired with the send slot of the same index: the reply to the request that
 * landed in receive slot i is built in send slot i, and receive slot i is
 * posted again only once that reply's SEND has completed. So a client can
 * have at most SESS_SLOTS requests in flight and the server never needs more
 * send buffers than it has, whatever the client does. One extra send slot
 * (SESS_NOTICE_SLOT) carries the unsolicited shutdown notice.
 */
#define SESS_SLOTS        8u
#define SESS_NOTICE_SLOT  SESS_SLOTS
#define SESS_SEND_SLOTS   (SESS_SLOTS + 1u)
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

/** Kinds of work request, encoded in wr_id. */
enum { WR_RECV = 1, WR_SEND = 2 };

struct session;

/*
 * Extent sharing (share.c). A share is a grant by the owning session on one
 * of its extents, named by a random token; each attachment is a registration
 * of that extent's range in the attaching session's own domain. Shares live
 * in one server-wide list; a share's attachments hang off it.
 */
struct attachment {
	struct attachment *next;     /**< in share->atts */
	struct share *share;
	struct session *attacher;
	uint32_t id;                 /**< unique within the attacher's session */
	struct fx_mr *mr;            /**< in the attacher's domain, with the share's rights only */
};

struct share {
	struct share *next;          /**< in memsrv->shares */
	struct session *owner;
	uint32_t extent_id;
	uint32_t rights;             /**< FERRY_PAGE_SHARE_* */
	uint64_t offset, length;     /**< the extent, in the pool */
	uint8_t token[FERRY_PAGE_TOKEN_LEN];
	struct attachment *atts;
};

struct sess_extent {
	uint32_t id;
	struct fx_mr *mr;    /**< registered in the session's own domain only */
};

/** One client connection: its own domain, buffers, extents and state. */
struct session {
	struct memsrv *srv;
	uint32_t idx, gen;           /**< table slot and its generation: together they name the session in wr_ids */
	uint64_t sid;                /**< session number, in logs and AUTH_OK */
	enum sess_state state;
	bool counted;                /**< counted in clients_connected (not a refused connection) */

	struct fx_pd *pd;
	struct fx_conn *conn;        /**< NULL once closed */
	struct fx_mr *buf_mr;
	uint8_t *bufs;               /**< SESS_SLOTS receive then SESS_SEND_SLOTS send buffers */
	uint32_t outstanding;        /**< posted requests whose completion has not been polled */
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
};

/** The server context. */
struct memsrv {
	const struct memsrv_config *cfg;
	struct memsrv_pool pool;
	struct extent_alloc *ea;
	struct ferry_secret secret;
	struct fx_ctx *ctx;
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

	struct memsrv_counters c;
	bool stopping;
	uint64_t stop_deadline_ms;
};

/* server.c */
uint64_t memsrv_now_ms(void);
/** A session is gone for good: free its table slot (and accept again if we had stopped). */
void memsrv_session_gone(struct memsrv *srv, struct session *s);

/* session.c */
/**
 * Start a session in table slot @p idx on an accepted connection: buffers,
 * receives, state, counters, the "accepted" log line. On success the session
 * owns @p pd and @p conn (and may already have closed itself); on failure the
 * caller still owns them.
 */
int session_start(struct memsrv *srv, uint32_t idx, struct fx_pd *pd, struct fx_conn *conn, const char *peer,
		  bool refuse, struct ferry_err *err);
/** A completion for this session (wr_id already matched to it). */
void session_on_completion(struct session *s, const struct fx_wc *wc, unsigned kind, unsigned slot);
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
int share_create(struct session *owner, uint32_t extent_id, uint64_t offset, uint64_t length, uint32_t rights,
		 uint8_t token[FERRY_PAGE_TOKEN_LEN]);
/** The live share named by @p token (constant-time compare), or NULL. */
struct share *share_find(struct memsrv *srv, const uint8_t token[FERRY_PAGE_TOKEN_LEN]);
/**
 * Attach @p s to @p sh: register the extent in s's domain with the share's
 * rights. @return 0 and @p out filled, -EMLINK over SESS_MAX_ATTACH, or the
 * registration's error (in @p err).
 */
int share_attach(struct share *sh, struct session *s, struct ferry_page_attach_ok *out, struct ferry_err *err);
/** Drop @p s's attachment @p attach_id. @return 0, -ENOENT if s holds no such attachment. */
int share_detach(struct session *s, uint32_t attach_id);
/**
 * Revoke every share of (@p owner, @p extent_id): each attachment's
 * registration is dropped at once. @return attachments revoked;
 * *@p failed counts registrations that would not go away.
 */
uint32_t share_revoke_extent(struct session *owner, uint32_t extent_id, uint32_t *failed);
/** A session ends: revoke the shares it owns, drop the attachments it holds. */
void share_session_closed(struct session *s);

static inline uint64_t sess_wr_id(const struct session *s, unsigned kind, unsigned slot)
{
	return ((uint64_t)s->gen << 32) | ((uint64_t)s->idx << 16) | ((uint64_t)kind << 8) | slot;
}

#endif /* FERRY_MEMSRV_SERVER_INT_H */
