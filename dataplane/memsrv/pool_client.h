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
