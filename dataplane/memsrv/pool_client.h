/**
 * @file pool_client.h
 * Client side of a memory server: connect and authenticate, allocate and
 * free extents, read counters; then move pages with one-sided READ/WRITE on
 * the connection (pool_client_conn) using each extent's (base, rkey).
 *
 * A pool client uses its transport context from the calling thread only. The
 * control calls below are synchronous: they post a SEND, then fx_poll the
 * context until the reply arrives or op_timeout_ms passes; completions of
 * the caller's own one-sided requests that arrive meanwhile are kept and
 * handed back by pool_client_poll, never lost.
 */
#ifndef FERRY_POOL_CLIENT_H
#define FERRY_POOL_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "dataplane/common/auth.h"
#include "dataplane/common/ferry_err.h"
#include "dataplane/transport/transport.h"
#include "proto/page.h"

struct pool_client;

/** An extent the server gave this client. */
struct pool_extent {
	uint32_t id;
	uint32_t rkey;
	uint64_t base;       /**< remote address of byte 0 */
	uint64_t length;
};

struct pool_client_opts {
	const char *host;
	uint16_t port;
	const char *name;                 /**< client name sent in HELLO (1..64 printable chars) */
	const struct ferry_secret *secret;
	struct fx_conn_opts conn;         /**< zero = defaults */
	uint32_t timeout_ms;              /**< control call limit (default 5000) */
};

/**
 * Connect over @p ctx (its backend decides TCP/RDMA), authenticate (mutual:
 * the server's proof is checked too), and return a ready client. On a refused
 * authentication the error says so ("authentication failed: ...").
 * The client owns its own protection domain in @p ctx.
 */
int pool_client_connect(struct fx_ctx *ctx, const struct pool_client_opts *opts, struct pool_client **client,
			struct ferry_err *err);
void pool_client_close(struct pool_client *client);

/** Allocate @p length bytes (multiple of 4096). Errors carry the server's code and message. */
int pool_client_alloc(struct pool_client *client, uint64_t length, struct pool_extent *extent,
		      struct ferry_err *err);
int pool_client_free(struct pool_client *client, uint32_t extent_id, struct ferry_err *err);
/** Server counters (name/value pairs). */
int pool_client_stats(struct pool_client *client, struct ferry_page_stats_ok *stats, struct ferry_err *err);

/* ------------------------------------------------------------ extent sharing */

#define POOL_SHARE_TOKEN_LEN 32
#define POOL_SHARE_READ 1u
#define POOL_SHARE_WRITE 2u

/**
 * Share one of this client's extents: the server returns a fresh random
 * @p token that lets any other authenticated client of the same server
 * attach the extent with @p rights (POOL_SHARE_READ | POOL_SHARE_WRITE,
 * non-empty). Hand the token over out of band; it stays valid until
 * pool_client_unshare, pool_client_free of the extent, or this client's
 * close, each of which revokes every attachment made with it.
 * @return 0, -ENOENT not our extent, -EMLINK too many shares of it, -EINVAL bad rights.
 */
int pool_client_share(struct pool_client *c, uint32_t extent_id, unsigned rights,
		      uint8_t token[POOL_SHARE_TOKEN_LEN], struct ferry_err *err);
/** Revoke every share (and so every attachment) of our extent. -ENOENT: not our extent. */
int pool_client_unshare(struct pool_client *c, uint32_t extent_id, struct ferry_err *err);
/**
 * Attach a shared extent: @p ext gets id = the attachment id, and the
 * (rkey, base, length) to use with one-sided READ/WRITE on *this* client's
 * connection only, within the rights of the share (a WRITE through a
 * read-only attachment fails with a remote access error). Attachments do not
 * count against this client's quota and end with its session.
 * @return 0, -EACCES unknown/revoked/forged token, -EMLINK too many attachments.
 */
int pool_client_attach(struct pool_client *c, const uint8_t token[POOL_SHARE_TOKEN_LEN],
		       struct pool_extent *ext, struct ferry_err *err);
/** Drop one of our attachments. -ENOENT: no such attachment in this session. */
int pool_client_detach(struct pool_client *c, uint32_t attach_id, struct ferry_err *err);
/** Rights of the last successful pool_client_attach (POOL_SHARE_*). */
unsigned pool_client_last_attach_rights(const struct pool_client *c);

/* ------------------------------------------------------------ kept extents */

/**
 * Keep one of this client's extents beyond this client's session: the
 * extent leaves the session (its (rkey, base) stop working here at once,
 * its shares are revoked, it no longer counts against this client's quota
 * but against the server's kept-bytes limit) and survives this client's
 * close, with its bytes, until someone claims or discards it with the
 * claim @p token. The token is the capability: whoever holds it and the
 * cluster secret can take the extent, so store it like a key (0600).
 * Kept extents are lost if the memory server itself restarts.
 * @return 0, -ENOENT not our extent, -EMLINK the server's kept limits.
 */
int pool_client_keep(struct pool_client *c, uint32_t extent_id, uint8_t token[POOL_SHARE_TOKEN_LEN],
		     struct ferry_err *err);
/**
 * Claim a kept extent (from any client of the same server, e.g. another
 * process or node): it becomes this client's extent, counted against our
 * quota, with @p ext's (id, rkey, base, length) usable on this client's
 * connection only and its bytes as they were kept. The token is spent.
 * @return 0, -EACCES unknown/spent/forged token, -EDQUOT over our quota
 * (the extent stays kept, the token still valid).
 */
int pool_client_claim(struct pool_client *c, const uint8_t token[POOL_SHARE_TOKEN_LEN], struct pool_extent *ext,
		      struct ferry_err *err);
/** Free a kept extent without claiming it (the token is spent). -EACCES: unknown token. */
int pool_client_discard(struct pool_client *c, const uint8_t token[POOL_SHARE_TOKEN_LEN], struct ferry_err *err);

/** Server's ERROR code of the last failed control call (FERRY_E_*), 0 if none. */
uint32_t pool_client_last_code(const struct pool_client *client);
/** Quota and data limit the server announced in AUTH_OK. */
uint64_t pool_client_quota(const struct pool_client *client);
uint32_t pool_client_max_data(const struct pool_client *client);

/** The connection, for posting one-sided READ/WRITE with fx_post_send. */
struct fx_conn *pool_client_conn(struct pool_client *client);
/** The client's protection domain, for registering local buffers. */
struct fx_pd *pool_client_pd(struct pool_client *client);

/**
 * Poll the context for completions of the caller's one-sided requests,
 * including any that were set aside during a control call. Same convention
 * as fx_poll. Receives of control replies never appear here.
 */
int pool_client_poll(struct pool_client *client, struct fx_wc *wc, int max, int timeout_ms);

#endif /* FERRY_POOL_CLIENT_H */
