/*
 * ferryd's sockets: the TCP listener for peers and remote ferryctl (frame.h
 * handshake with the cluster secret), the local Unix socket for ferryctl
 * (the kernel's SO_PEERCRED instead of the handshake: root, or the one
 * allowed uid), and outbound connections to other ferryds (reports,
 * relayed requests), all non-blocking in the one poll loop.
 *
 * Bad input: a header that does not decode means the stream is out of step,
 * so the peer gets ERROR and the connection is closed; a whole message whose
 * body does not decode gets ERROR and the session goes on (after
 * authentication; before it, anything wrong closes). Every case is counted.
 */
#include "ctrl/ferryd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/common/sock_io.h"
#include "dataplane/common/unix_listen.h"

#define LABEL_C "ferry-ctrl-c"
#define LABEL_S "ferry-ctrl-s"
/* A peer that has not authenticated within this long is dropped: it holds a slot. */
#define AUTH_DEADLINE_MS 5000
/* A peer gets this long to make room for a message: the loop must not wait on it for ever. */
#define SEND_TIMEOUT_MS 2000

/* ---------------------------------------------------------------- listening */

static int split_hostport(const char *hp, char *host, size_t hcap, const char **port)
{
	const char *colon = strrchr(hp, ':');
	size_t hl;

	if (!colon)
		return -1;
	hl = (size_t)(colon - hp);
	if (hl >= hcap)
		return -1;
	memcpy(host, hp, hl);
	host[hl] = '\0';
	/* [v6]:port */
	if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = '\0';
	}
	*port = colon + 1;
	return 0;
}

static int listen_tcp(struct ferryd *d, struct ferry_err *err)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *ai = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[FERRYD_ADDR_LEN], h[64], p[16];
	const char *port;
	int fd, rc, one = 1;

	if (split_hostport(d->cfg.listen, host, sizeof(host), &port))
		return ferry_err_set(err, EINVAL, "listen address %s: want HOST:PORT", d->cfg.listen);
	rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
	if (rc != 0)
		return ferry_err_set(err, EINVAL, "listen address %s: %s", d->cfg.listen, gai_strerror(rc));
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 32) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		rc = errno;
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return ferry_err_set(err, rc, "listen %s: %s", d->cfg.listen, strerror(rc));
	}
	freeaddrinfo(ai);
	getnameinfo((struct sockaddr *)&ss, sl, h, sizeof(h), p, sizeof(p), NI_NUMERICHOST | NI_NUMERICSERV);
	snprintf(d->listen_desc, sizeof(d->listen_desc), "%s:%s", h, p);
	d->listen_fd = fd;
	return 0;
}

static int listen_unix(struct ferryd *d, struct ferry_err *err)
{
	/*
	 * 0666: the kernel's SO_PEERCRED check on every connection is the
	 * access control (root or allowed_uid), so a refused user gets a
	 * clear ERROR(DENIED) instead of a bare EACCES.
	 */
	int fd = ferry_unix_listen(d->cfg.unix_path, 0666, 16, err);

	if (fd < 0)
		return fd;
	d->unix_fd = fd;
	return 0;
}

int ferryd_listen(struct ferryd *d, struct ferry_err *err)
{
	int rc = listen_tcp(d, err);

	if (rc < 0)
		return rc;
	rc = listen_unix(d, err);
	if (rc < 0) {
		close(d->listen_fd);
		d->listen_fd = -1;
	}
	return rc;
}

/* ---------------------------------------------------------------- connections */

static struct ferryd_conn *conn_new(struct ferryd *d, int fd, enum ferryd_conn_kind kind)
{
	for (int i = 0; i < FERRYD_MAX_CONNS; i++) {
		struct ferryd_conn *c;

		if (d->conns[i])
			continue;
		c = calloc(1, sizeof(*c));
		if (!c)
			return NULL;
		c->in = malloc(FERRY_CTRL_MAX_MSG);
		if (!c->in) {
			free(c);
			return NULL;
		}
		c->fd = fd;
		c->kind = kind;
		c->id = ++d->next_conn_id;
		d->conns[i] = c;
		return c;
	}
	return NULL;
}

static void conn_close(struct ferryd *d, struct ferryd_conn *c, const char *why)
{
	for (int i = 0; i < FERRYD_MAX_CONNS; i++) {
		if (d->conns[i] != c)
			continue;
		if (c->kind == CONN_OUT && c->on_reply) {
			ferryd_reply_fn *fn = c->on_reply;

			/* Tell the requester once; it must not reuse c. */
			c->on_reply = NULL;
			fn(d, c, NULL, why);
		}
		/* Peers and ferryctl come and go every second: only trouble is worth a line at info. */
		if (!strcmp(why, "peer closed") || !strcmp(why, "done") || !strcmp(why, "shutting down"))
			LOG_DEBUG("conn %u (%s) closed: %s", c->id, c->name[0] ? c->name : "-", why);
		else
			LOG_INFO("conn %u (%s) closed: %s", c->id, c->name[0] ? c->name : "-", why);
		close(c->fd);
		free(c->in);
		free(c->pending);
		free(c);
		d->conns[i] = NULL;
		return;
	}
}

struct ferryd_conn *ferryd_conn_find(struct ferryd *d, unsigned int id)
{
	for (int i = 0; id && i < FERRYD_MAX_CONNS; i++)
		if (d->conns[i] && d->conns[i]->id == id)
			return d->conns[i];
	return NULL;
}

void ferryd_conns_close(struct ferryd *d)
{
	for (int i = 0; i < FERRYD_MAX_CONNS; i++)
		if (d->conns[i])
			conn_close(d, d->conns[i], "shutting down");
	if (d->listen_fd >= 0)
		close(d->listen_fd);
	if (d->unix_fd >= 0) {
		close(d->unix_fd);
		unlink(d->cfg.unix_path);
	}
	d->listen_fd = d->unix_fd = -1;
}

int ferryd_send(struct ferryd *d, struct ferryd_conn *c, int n)
{
	(void)d;
	if (n < 0) {
		LOG_ERR("conn %u: encoding failed: %s", c->id, ferry_ctrl_errcode_str((uint32_t)-n));
		return -1;
	}
	return ferry_send_all(c->fd, d->out_buf, (size_t)n, SEND_TIMEOUT_MS);
}

int ferryd_send_msg(struct ferryd *d, struct ferryd_conn *c)
{
	return ferryd_send(d, c, ferry_ctrl_encode(&d->out_msg, d->out_buf, sizeof(d->out_buf)));
}

int ferryd_send_ok(struct ferryd *d, struct ferryd_conn *c, uint64_t req, uint64_t value)
{
	return ferryd_send(d, c, ferry_ctrl_encode_ok(req, value, d->out_buf, sizeof(d->out_buf)));
}

static int vsend_error(struct ferryd *d, struct ferryd_conn *c, uint64_t req, uint32_t code, const char *fmt,
		       va_list ap) __attribute__((format(printf, 5, 0)));

static int vsend_error(struct ferryd *d, struct ferryd_conn *c, uint64_t req, uint32_t code, const char *fmt,
		       va_list ap)
{
	char msg[FERRY_CTRL_ERRMSG_MAX + 1];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	d->ctr.errors_sent++;
	LOG_WARN("conn %u (%s): ERROR %u (%s): %s", c->id, c->name[0] ? c->name : "-", code,
		 ferry_ctrl_errcode_str(code), msg);
	return ferryd_send(d, c, ferry_ctrl_encode_error(req, code, msg, d->out_buf, sizeof(d->out_buf)));
}

int ferryd_send_error(struct ferryd *d, struct ferryd_conn *c, uint64_t req, uint32_t code, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vsend_error(d, c, req, code, fmt, ap);
	va_end(ap);
	return rc;
}

void ferryd_reply_error_to(struct ferryd *d, unsigned int id, uint64_t req, uint32_t code, const char *fmt, ...)
{
	struct ferryd_conn *c = ferryd_conn_find(d, id);
	va_list ap;

	if (!c)
		return;
	va_start(ap, fmt);
	(void)vsend_error(d, c, req, code, fmt, ap);
	va_end(ap);
}

/* ---------------------------------------------------------------- inbound */

static void accept_tcp(struct ferryd *d)
{
	for (;;) {
		int fd = accept4(d->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct ferryd_conn *c;

		if (fd < 0)
			return;
		c = conn_new(d, fd, CONN_TCP_IN);
		if (!c) {
			LOG_WARN("tcp connection refused: %d connections already", FERRYD_MAX_CONNS);
			close(fd);
			continue;
		}
		c->state = CS_NEW;
		c->deadline_ms = ferry_mono_ms() + AUTH_DEADLINE_MS;
		d->ctr.conns_tcp++;
		LOG_DEBUG("conn %u: tcp connection", c->id);
	}
}

static void accept_unix(struct ferryd *d)
{
	for (;;) {
		int fd = accept4(d->unix_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct ucred cred;
		socklen_t cl = sizeof(cred);
		struct ferryd_conn *c;

		if (fd < 0)
			return;
		c = conn_new(d, fd, CONN_UNIX_IN);
		if (!c) {
			LOG_WARN("unix connection refused: %d connections already", FERRYD_MAX_CONNS);
			close(fd);
			continue;
		}
		d->ctr.conns_unix++;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) {
			conn_close(d, c, "no peer credentials");
			continue;
		}
		c->uid = cred.uid;
		snprintf(c->name, sizeof(c->name), "uid-%u", (unsigned int)cred.uid);
		if (cred.uid != 0 && (d->cfg.allowed_uid < 0 || (int64_t)cred.uid != d->cfg.allowed_uid)) {
			d->ctr.uid_denied++;
			ferryd_send_error(d, c, 0, FERRY_CTRL_E_DENIED,
					  "uid %u may not use ferryd (root, or [ferryd] allowed_uid)",
					  (unsigned int)cred.uid);
			conn_close(d, c, "uid denied");
			continue;
		}
		/* The kernel vouched for the peer: no handshake on the local socket. */
		c->state = CS_READY;
	}
}

/* Server side of the handshake. Returns -1 to close. */
static int handshake(struct ferryd *d, struct ferryd_conn *c, const struct ferry_ctrl_msg *m)
{
	uint64_t req = m->hdr.request_id;
	uint8_t mac[FERRY_CTRL_MAC_LEN];

	if (c->state == CS_NEW && m->hdr.type == FERRY_CTRL_HELLO) {
		if (m->u.hello.version_min > FERRY_CTRL_VERSION || m->u.hello.version_max < FERRY_CTRL_VERSION) {
			ferryd_send_error(d, c, req, FERRY_CTRL_E_VERSION, "versions %u..%u not supported (want %u)",
					  m->u.hello.version_min, m->u.hello.version_max, FERRY_CTRL_VERSION);
			return -1;
		}
		snprintf(c->name, sizeof(c->name), "%s", m->u.hello.name);
		ferry_auth_nonce(c->nonce_s);
		c->state = CS_CHALLENGED;
		return ferryd_send(d, c, ferry_ctrl_encode_challenge(req, c->nonce_s, d->out_buf, sizeof(d->out_buf)));
	}
	if (c->state == CS_CHALLENGED && m->hdr.type == FERRY_CTRL_AUTH) {
		if (ferry_auth_verify(&d->secret, LABEL_C, c->nonce_s, m->u.auth.nonce, c->name, strlen(c->name),
				      m->u.auth.mac) != 0) {
			d->ctr.auth_failed++;
			ferryd_send_error(d, c, req, FERRY_CTRL_E_AUTH_FAILED, "authentication failed for %s",
					  c->name);
			return -1;
		}
		ferry_auth_mac(&d->secret, LABEL_S, m->u.auth.nonce, c->nonce_s, c->name, strlen(c->name), mac);
		c->state = CS_READY;
		d->ctr.auth_ok++;
		LOG_DEBUG("conn %u: %s authenticated", c->id, c->name);
		return ferryd_send(d, c, ferry_ctrl_encode_auth_ok(req, mac, d->out_buf, sizeof(d->out_buf)));
	}
	d->ctr.unauth_refused++;
	ferryd_send_error(d, c, req, FERRY_CTRL_E_NOT_AUTHENTICATED, "%s before authentication",
			  ferry_ctrl_type_name(m->hdr.type));
	return -1;
}

/* ---------------------------------------------------------------- outbound */

static int out_send_pending(struct ferryd *d, struct ferryd_conn *c)
{
	int rc;

	(void)d;
	rc = ferry_send_all(c->fd, c->pending, c->pending_len, SEND_TIMEOUT_MS);
	free(c->pending);
	c->pending = NULL;
	c->pending_len = 0;
	c->state = CS_READY;
	c->deadline_ms = ferry_mono_ms() + c->timeout_ms;
	return rc;
}

/* Client side: a message on an outbound connection. Returns -1 to close. */
static int out_message(struct ferryd *d, struct ferryd_conn *c, const struct ferry_ctrl_msg *m)
{
	uint8_t mac[FERRY_CTRL_MAC_LEN];
	ferryd_reply_fn *fn;

	if (m->hdr.type == FERRY_CTRL_ERROR && c->state != CS_READY) {
		char why[FERRY_CTRL_ERRMSG_MAX + 160];

		if (m->u.error.code == FERRY_CTRL_E_AUTH_FAILED)
			d->ctr.auth_failed++;
		snprintf(why, sizeof(why), "%s refused us: %s (%s)", c->name, ferry_ctrl_errcode_str(m->u.error.code),
			 m->u.error.msg);
		conn_close(d, c, why);
		return 1;
	}
	if (c->state == CS_HELLO_SENT && m->hdr.type == FERRY_CTRL_CHALLENGE) {
		memcpy(c->nonce_s, m->u.challenge.nonce, FERRY_CTRL_NONCE_LEN);
		ferry_auth_nonce(c->nonce_c);
		ferry_auth_mac(&d->secret, LABEL_C, c->nonce_s, c->nonce_c, d->cfg.name, strlen(d->cfg.name), mac);
		c->state = CS_AUTH_SENT;
		return ferryd_send(d, c, ferry_ctrl_encode_auth(++d->next_req, c->nonce_c, mac, d->out_buf,
								sizeof(d->out_buf)));
	}
	if (c->state == CS_AUTH_SENT && m->hdr.type == FERRY_CTRL_AUTH_OK) {
		if (ferry_auth_verify(&d->secret, LABEL_S, c->nonce_c, c->nonce_s, d->cfg.name, strlen(d->cfg.name),
				      m->u.auth_ok_mac) != 0) {
			d->ctr.auth_failed++;
			conn_close(d, c, "the peer does not know the cluster secret");
			return 1;
		}
		return out_send_pending(d, c);
	}
	if (c->state != CS_READY) {
		conn_close(d, c, "unexpected message during the handshake");
		return 1;
	}
	fn = c->on_reply;
	if (!fn)
		return -1;
	if (fn(d, c, m, NULL)) {
		/* Kept: a stream continues, or the callback queued another request. */
		if (c->pending)
			return out_send_pending(d, c);
		c->deadline_ms = ferry_mono_ms() + c->timeout_ms;
		return 0;
	}
	c->on_reply = NULL;
	conn_close(d, c, "done");
	return 1;
}

static int out_connect(const char *addr, struct ferry_err *err)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *ai = NULL;
	char host[FERRYD_ADDR_LEN];
	const char *port;
	int fd, rc, one = 1;

	if (split_hostport(addr, host, sizeof(host), &port))
		return ferry_err_set(err, EINVAL, "address %s: want HOST:PORT", addr);
	rc = getaddrinfo(host, port, &hints, &ai);
	if (rc != 0)
		return ferry_err_set(err, EINVAL, "address %s: %s", addr, gai_strerror(rc));
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		rc = errno;
		freeaddrinfo(ai);
		return ferry_err_set(err, rc, "socket: %s", strerror(rc));
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
		rc = errno;
		close(fd);
		freeaddrinfo(ai);
		return ferry_err_set(err, rc, "connect %s: %s", addr, strerror(rc));
	}
	freeaddrinfo(ai);
	return fd;
}

struct ferryd_conn *ferryd_request(struct ferryd *d, const char *node, const struct ferry_ctrl_msg *msg,
				   uint32_t timeout_ms, ferryd_reply_fn *on_reply, struct ferry_err *err)
{
	const struct ferryd_node_cfg *nc = ferryd_config_node(&d->cfg, node);
	struct ferryd_conn *c;
	int n, fd;

	if (!nc) {
		ferry_err_set(err, ENOENT, "no node '%s' in the cluster config", node);
		return NULL;
	}
	n = ferry_ctrl_encode(msg, d->out_buf, sizeof(d->out_buf));
	if (n < 0) {
		ferry_err_set(err, EINVAL, "encoding %s: %s", ferry_ctrl_type_name(msg->hdr.type),
			      ferry_ctrl_errcode_str((uint32_t)-n));
		return NULL;
	}
	fd = out_connect(nc->addr, err);
	if (fd < 0) {
		d->ctr.peer_failures++;
		return NULL;
	}
	c = conn_new(d, fd, CONN_OUT);
	if (!c) {
		close(fd);
		ferry_err_set(err, EMFILE, "%d connections already", FERRYD_MAX_CONNS);
		return NULL;
	}
	c->pending = malloc((size_t)n);
	if (!c->pending) {
		conn_close(d, c, "out of memory");
		ferry_err_set(err, ENOMEM, "out of memory");
		return NULL;
	}
	memcpy(c->pending, d->out_buf, (size_t)n);
	c->pending_len = (size_t)n;
	snprintf(c->name, sizeof(c->name), "%s", node);
	c->state = CS_CONNECTING;
	c->timeout_ms = timeout_ms ? timeout_ms : d->cfg.peer_timeout_ms;
	c->deadline_ms = ferry_mono_ms() + d->cfg.peer_timeout_ms;
	c->on_reply = on_reply;
	return c;
}

int ferryd_conn_request(struct ferryd *d, struct ferryd_conn *c, const struct ferry_ctrl_msg *msg)
{
	int n = ferry_ctrl_encode(msg, d->out_buf, sizeof(d->out_buf));

	if (n < 0)
		return n;
	free(c->pending);
	c->pending = malloc((size_t)n);
	if (!c->pending)
		return -ENOMEM;
	memcpy(c->pending, d->out_buf, (size_t)n);
	c->pending_len = (size_t)n;
	return 0;
}

static void out_connected(struct ferryd *d, struct ferryd_conn *c)
{
	int soerr = 0;
	socklen_t sl = sizeof(soerr);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr) {
		char why[128];

		d->ctr.peer_failures++;
		snprintf(why, sizeof(why), "connect: %s", strerror(soerr ? soerr : errno));
		conn_close(d, c, why);
		return;
	}
	c->state = CS_HELLO_SENT;
	if (ferryd_send(d, c, ferry_ctrl_encode_hello(++d->next_req, d->cfg.name, d->out_buf, sizeof(d->out_buf))) < 0)
		conn_close(d, c, "send failed");
}

/* Relay: pass the peer's replies back to the waiting connection under its request id. */
static bool relay_reply(struct ferryd *d, struct ferryd_conn *c, const struct ferry_ctrl_msg *m, const char *why)
{
	struct ferryd_conn *w = ferryd_conn_find(d, c->waiter);
	bool more;

	if (!m) {
		d->ctr.peer_failures++;
		ferryd_reply_error_to(d, c->waiter, c->waiter_req, FERRY_CTRL_E_NODE_DOWN, "node %s: %s", c->name,
				      why ? why : "no answer");
		return false;
	}
	more = m->hdr.type == FERRY_CTRL_PROGRESS && !(m->u.progress.flags & FERRY_CTRL_PROGRESS_FINAL);
	/* What the VM's node answered is newer than anything we hold. */
	if (m->hdr.type == FERRY_CTRL_VMS_OK && m->u.vms.count == 1)
		ferryd_vms_placed(d, &m->u.vms.vm[0]);
	if (!w)
		return false;   /* the requester left: stop listening too */
	d->out_msg = *m;
	d->out_msg.hdr.request_id = c->waiter_req;
	if (ferryd_send_msg(d, w) < 0)
		return false;
	return more;
}

int ferryd_relay(struct ferryd *d, unsigned int waiter, uint64_t req, const char *node,
		 const struct ferry_ctrl_msg *msg, uint32_t timeout_ms)
{
	struct ferry_err err = { 0 };
	struct ferryd_conn *w = ferryd_conn_find(d, waiter), *c;

	/*
	 * One hop only: a request a peer ferryd relayed here is not relayed
	 * again, so two nodes that disagree about where a VM is cannot pass it
	 * back and forth.
	 */
	if (w && w->kind == CONN_TCP_IN && ferryd_config_node(&d->cfg, w->name)) {
		ferryd_reply_error_to(d, waiter, req, FERRY_CTRL_E_UNEXPECTED,
				      "%s relayed by %s: %s says it belongs on %s; not relaying twice",
				      ferry_ctrl_type_name(msg->hdr.type), w->name, d->cfg.name, node);
		return -1;
	}
	c = ferryd_request(d, node, msg, timeout_ms, relay_reply, &err);
	if (!c) {
		ferryd_reply_error_to(d, waiter, req, FERRY_CTRL_E_NODE_DOWN, "node %s: %s", node, err.msg);
		return -1;
	}
	c->waiter = waiter;
	c->waiter_req = req;
	LOG_INFO("%s relayed to %s for conn %u", ferry_ctrl_type_name(msg->hdr.type), node, waiter);
	return 0;
}

/* ---------------------------------------------------------------- reading */

/* Consume whole messages from c->in. Returns -1 to close, 1 if c is gone. */
static int conn_process(struct ferryd *d, struct ferryd_conn *c)
{
	size_t off = 0;
	int rc;

	while (c->have - off >= FERRY_CTRL_HDR_LEN) {
		struct ferry_ctrl_hdr hdr;
		size_t total;

		rc = ferry_ctrl_hdr_decode(c->in + off, c->have - off, &hdr);
		if (rc != FERRY_CTRL_E_OK) {
			d->ctr.malformed++;
			if (c->kind != CONN_OUT)
				ferryd_send_error(d, c, 0, (uint32_t)rc, "bad header: %s",
						  ferry_ctrl_errcode_str((uint32_t)rc));
			return -1;
		}
		total = FERRY_CTRL_HDR_LEN + (size_t)hdr.payload_len;
		if (c->have - off < total)
			break;
		rc = ferry_ctrl_decode(c->in + off, total, &d->in_msg);
		off += total;
		if (rc != FERRY_CTRL_E_OK) {
			d->ctr.malformed++;
			if (c->kind == CONN_OUT)
				return -1;
			if (c->state != CS_READY) {
				ferryd_send_error(d, c, hdr.request_id, (uint32_t)rc,
						  "malformed %s before authentication", ferry_ctrl_type_name(hdr.type));
				return -1;
			}
			if (ferryd_send_error(d, c, hdr.request_id, (uint32_t)rc, "malformed %s: %s",
					      ferry_ctrl_type_name(hdr.type), ferry_ctrl_errcode_str((uint32_t)rc)) < 0)
				return -1;
			continue;
		}
		if (c->kind == CONN_OUT) {
			rc = out_message(d, c, &d->in_msg);
			if (rc != 0)
				return rc;
			continue;
		}
		if (c->state != CS_READY) {
			if (handshake(d, c, &d->in_msg) < 0)
				return -1;
			continue;
		}
		d->ctr.requests++;
		if (ferryd_dispatch(d, c, &d->in_msg) < 0)
			return -1;
	}
	if (off) {
		memmove(c->in, c->in + off, c->have - off);
		c->have -= off;
	}
	return 0;
}

static void conn_readable(struct ferryd *d, struct ferryd_conn *c)
{
	for (;;) {
		ssize_t r = recv(c->fd, c->in + c->have, FERRY_CTRL_MAX_MSG - c->have, 0);
		int rc;

		if (r == 0) {
			conn_close(d, c, "peer closed");
			return;
		}
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				conn_close(d, c, strerror(errno));
			return;
		}
		c->have += (size_t)r;
		rc = conn_process(d, c);
		if (rc < 0) {
			conn_close(d, c, "protocol error");
			return;
		}
		if (rc > 0)
			return;
	}
}

int ferryd_conns_pollfds(struct ferryd *d, struct pollfd *pfd, unsigned int *ids, int max)
{
	int n = 0;

	for (int i = 0; i < FERRYD_MAX_CONNS && n < max; i++) {
		struct ferryd_conn *c = d->conns[i];

		if (!c)
			continue;
		pfd[n].fd = c->fd;
		pfd[n].events = c->state == CS_CONNECTING ? POLLOUT : POLLIN;
		pfd[n].revents = 0;
		ids[n++] = c->id;
	}
	return n;
}

void ferryd_conns_event(struct ferryd *d, struct pollfd *pfd, unsigned int id)
{
	struct ferryd_conn *c;

	if (!id && pfd->fd == d->listen_fd) {
		accept_tcp(d);
		return;
	}
	if (!id && pfd->fd == d->unix_fd) {
		accept_unix(d);
		return;
	}
	c = ferryd_conn_find(d, id);
	if (!c)
		return;   /* closed by an earlier event of this round */
	if (c->state == CS_CONNECTING) {
		out_connected(d, c);
		return;
	}
	if (pfd->revents & (POLLIN | POLLHUP | POLLERR))
		conn_readable(d, c);
}

void ferryd_conns_tick(struct ferryd *d, uint64_t now)
{
	for (int i = 0; i < FERRYD_MAX_CONNS; i++) {
		struct ferryd_conn *c = d->conns[i];

		if (!c || !c->deadline_ms || now < c->deadline_ms)
			continue;
		if (c->kind == CONN_OUT) {
			conn_close(d, c, "timed out");
		} else if (c->state != CS_READY) {
			d->ctr.unauth_refused++;
			conn_close(d, c, "no authentication in time");
		}
	}
}
