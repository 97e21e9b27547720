/**
 * @file memsrv_harness.h
 * Integration-test harness: runs a real ferry-memsrv process (fork/exec) with
 * a config and a 0600 secret in a fresh temporary directory, on port 0, and
 * learns the port from its ready file. Teardown always stops and reaps it.
 *
 * Call from the test's main thread only (it uses cmocka assertions).
 */
#ifndef FERRY_TESTS_MEMSRV_HARNESS_H
#define FERRY_TESTS_MEMSRV_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "dataplane/memsrv/pool_client.h"

#define MSRV_BIN FERRY_BUILD_DIR "/dataplane/memsrv/ferry-memsrv"

struct msrv_opts {
	const char *pool_size;       /**< default "64M" */
	const char *client_quota;    /**< NULL = default (pool size) */
	unsigned max_clients;        /**< 0 = default */
	const char *log_level;       /**< NULL = info */
	const char *hugepages;       /**< NULL = auto */
	const char *extra_limits;    /**< more "key = value\n" lines for [limits], or NULL */
};

struct msrv {
	char dir[64];
	char conf[128], secret_path[128], ready[128], log[128];
	char secret_hex[65];
	struct ferry_secret key;     /**< what a client with the right secret uses */
	pid_t pid;                   /**< 0 once reaped */
	int status;                  /**< wait status once reaped */
	uint16_t port;
};

/** Make the temp dir, secret and config, start the server and wait (bounded) until it listens. */
void msrv_start(struct msrv *m, const struct msrv_opts *opts);

/**
 * Stop the server: SIGTERM, wait up to @p timeout_ms, then SIGKILL; reap it.
 * @return the wait status (also in m->status); -1 if it had to be killed.
 */
int msrv_stop(struct msrv *m, int timeout_ms);

/** Reap without signalling, waiting up to @p timeout_ms. @return true if it exited. */
bool msrv_wait_exit(struct msrv *m, int timeout_ms);

/** Kill (if still running), reap and remove the temp dir. Safe to call twice. */
void msrv_cleanup(struct msrv *m);

/**
 * End of a test group: stop the server (SIGTERM, 5 s), print its log if it
 * did not exit 0, clean up. @return 0 if it exited 0, else -1 (fails the group).
 */
int msrv_finish(struct msrv *m);

/** Did the server's log (stderr) say @p needle? */
bool msrv_log_contains(const struct msrv *m, const char *needle);
/** Print the server's log (for a failing test). */
void msrv_dump_log(const struct msrv *m);

/** pool_client_connect to @p m as @p name with @p secret (NULL = the right one). */
int msrv_connect(const struct msrv *m, struct fx_ctx *ctx, const char *name, const struct ferry_secret *secret,
		 struct pool_client **client, struct ferry_err *err);

/** A counter from STATS_OK; fails the test if it is missing. */
uint64_t msrv_stat(const struct ferry_page_stats_ok *st, const char *name);

/** Fetch STATS over @p c and return counter @p name. */
uint64_t msrv_client_stat(struct pool_client *c, const char *name);

/**
 * Transport and address of the tests: FERRY_TEST_TRANSPORT (tcp | rdma,
 * default tcp) and FERRY_TEST_HOST (default 127.0.0.1; RDMA needs the address
 * of an RDMA interface, e.g. 10.0.0.1 in the RoCE rig). The server listens
 * there and clients connect there.
 */
enum fx_kind msrv_transport(void);
const char *msrv_host(void);

/** Create a transport context of msrv_transport() (fails the test otherwise). */
struct fx_ctx *msrv_ctx(void);

uint64_t msrv_now_ms(void);

#endif /* FERRY_TESTS_MEMSRV_HARNESS_H */
