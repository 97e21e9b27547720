/**
 * @file qmp.h
 * A small client of QEMU's machine protocol (QMP) over a Unix socket.
 *
 * Contract:
 *  - qmp_connect() retries the connect until @p timeout_ms (QEMU may still be starting), reads
 *    the greeting and negotiates with qmp_capabilities; on return the session is in command mode.
 *  - qmp_execute() sends one command (with an "id" of its own) and waits for the matching
 *    return/error; asynchronous events that arrive meanwhile are queued, never lost, and
 *    handed out by qmp_wait_event().
 *  - Every call is bounded by its timeout; a dead QEMU, a closed socket, a line that is not
 *    JSON or a reply to an unknown id is an error with a message ("qmp query-status: timed out
 *    after 5000 ms"), never a hang. QEMU's own errors carry their class and description
 *    ("qmp migrate: GenericError: ...").
 *  - One thread at a time per session. JSON values are jansson's; returned values belong to
 *    the caller (json_decref).
 */
#ifndef FERRY_CTRL_QMP_H
#define FERRY_CTRL_QMP_H

#include <jansson.h>

#include "dataplane/common/ferry_err.h"

struct qmp;

/** Connect to the QMP socket at @p path, greeting + qmp_capabilities. */
int qmp_connect(const char *path, int timeout_ms, struct qmp **out, struct ferry_err *err);
void qmp_close(struct qmp *q);

/**
 * Execute @p cmd with @p args (a JSON object or NULL; borrowed). On success *@p ret (if not
 * NULL) gets the "return" value (a new reference). A QMP error reply returns -EREMOTEIO.
 */
int qmp_execute(struct qmp *q, const char *cmd, json_t *args, int timeout_ms, json_t **ret, struct ferry_err *err);

/** As qmp_execute, with the arguments given as a jansson json_pack format ("{s:s, s:b}"). */
int qmp_executef(struct qmp *q, const char *cmd, int timeout_ms, json_t **ret, struct ferry_err *err,
		 const char *fmt, ...);

/**
 * Wait for the event named @p name (or any event if NULL), taking queued ones first. Events
 * of other names that are passed over are dropped. *@p event (if not NULL) gets the whole
 * event object. -ETIMEDOUT when none comes in time.
 */
int qmp_wait_event(struct qmp *q, const char *name, int timeout_ms, json_t **event, struct ferry_err *err);

/** "running", "paused", "inmigrate", "postmigrate" ... from query-status, into @p buf. */
int qmp_status(struct qmp *q, char *buf, size_t len, int timeout_ms, struct ferry_err *err);

#endif /* FERRY_CTRL_QMP_H */
