/**
 * @file unix_listen.h
 * A listening Unix stream socket, made the same way by every daemon
 * (ferry-pager's VMM, Firecracker and migration sockets, ferryd's local
 * socket, ferry-wake's control socket).
 *
 * A path that starts with '@' names an abstract socket (no file). Otherwise a
 * stale socket file at the path is replaced, anything else there is refused,
 * and the new socket file gets @p mode. The mode only decides who can reach
 * the socket at all; each caller's own access control (SO_PEERCRED, the
 * cluster secret) decides who is served, so a daemon that wants refused peers
 * to get a clear error rather than EACCES passes 0666.
 */
#ifndef FERRY_COMMON_UNIX_LISTEN_H
#define FERRY_COMMON_UNIX_LISTEN_H

#include <sys/types.h>

#include "dataplane/common/ferry_err.h"

/**
 * Listen on @p path with @p backlog. @return the descriptor (non-blocking,
 * close-on-exec), or a negative errno with @p err saying which path and why.
 */
int ferry_unix_listen(const char *path, mode_t mode, int backlog, struct ferry_err *err);

#endif /* FERRY_COMMON_UNIX_LISTEN_H */
