/**
 * @file ferryctl_client.h
 * A blocking client of the control protocol (proto/ctrl.h), for ferryctl and
 * tests: the local Unix socket (no handshake: the kernel vouches for the
 * uid), or a TCP address with the cluster secret (frame.h handshake, both
 * sides proven). Every wait is bounded by the client's timeout; a peer that
 * sends garbage or nothing is an error with a message, never a hang.
 */
#ifndef FERRY_CTRL_FERRYCTL_CLIENT_H
#define FERRY_CTRL_FERRYCTL_CLIENT_H

#include <stdint.h>

#include "dataplane/common/auth.h"
#include "dataplane/common/ferry_err.h"
#include "proto/ctrl.h"

struct ctl_client {
	int fd;
	int timeout_ms;            /**< per reply */
	uint64_t next_req;
	size_t have;
	uint8_t *buf;              /**< FERRY_CTRL_MAX_MSG bytes */
};

int ctl_client_open_unix(struct ctl_client *c, const char *path, int timeout_ms, struct ferry_err *err);
/** Connect and authenticate as @p name with @p secret. */
int ctl_client_open_tcp(struct ctl_client *c, const char *hostport, const struct ferry_secret *secret,
			const char *name, int timeout_ms, struct ferry_err *err);
void ctl_client_close(struct ctl_client *c);

/** Send @p m; its request id is set here. */
int ctl_client_send(struct ctl_client *c, struct ferry_ctrl_msg *m, struct ferry_err *err);
/** The next whole message (any type) within the timeout. */
int ctl_client_recv(struct ctl_client *c, struct ferry_ctrl_msg *m, struct ferry_err *err);
/**
 * Send @p req and wait for its reply into @p reply. An ERROR reply returns
 * -EREMOTEIO with "<code text>: <message>" in @p err and the reply kept.
 */
int ctl_client_call(struct ctl_client *c, struct ferry_ctrl_msg *req, struct ferry_ctrl_msg *reply,
		    struct ferry_err *err);

#endif /* FERRY_CTRL_FERRYCTL_CLIENT_H */
