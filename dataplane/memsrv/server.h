/**
 * @file server.h
 * ferry-memsrv: a memory server. It allocates one NUMA-local pool, listens
 * for clients on the configured transport, authenticates them (mutual
 * challenge-response over the cluster secret, proto/page.h), hands out
 * extents as memory windows bound to each client's own connection (so a
 * key is worthless on any other), lets owners share extents with other
 * clients (SHARE/ATTACH), and otherwise stays passive: clients READ and
 * WRITE their extents with one-sided operations that the transport serves
 * without the server's code. Control messages of every client arrive
 * through one shared receive queue, with a per-client credit
 * (server_int.h).
 *
 * One thread, one epoll loop over the listener, the transport context's
 * descriptor, a signalfd (SIGTERM/SIGINT: clean shutdown) and a timerfd
 * (deadlines). Extents live as long as the session that allocated them.
 */
#ifndef FERRY_MEMSRV_SERVER_H
#define FERRY_MEMSRV_SERVER_H

#include <stdint.h>

#include "dataplane/common/ferry_err.h"
#include "dataplane/memsrv/config.h"

struct memsrv;

/**
 * Load the secret, allocate the pool, create the transport context, listen,
 * and write the ready file. Blocks SIGTERM and SIGINT in the calling thread
 * (they are read from a signalfd). @p cfg must outlive the server.
 */
int memsrv_create(const struct memsrv_config *cfg, struct memsrv **srv, struct ferry_err *err);

/** Serve until SIGTERM/SIGINT. @return 0 after a clean shutdown, < 0 on a fatal error. */
int memsrv_run(struct memsrv *srv, struct ferry_err *err);

/** Close every client (releasing its extents), free the pool, remove the ready file. */
void memsrv_destroy(struct memsrv *srv);

/** The port actually bound (useful with port 0). */
uint16_t memsrv_port(const struct memsrv *srv);

#endif /* FERRY_MEMSRV_SERVER_H */
