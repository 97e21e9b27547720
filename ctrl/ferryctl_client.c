/*
 * Blocking control-protocol client (see ferryctl_client.h).
 */
#include "ctrl/ferryctl_client.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int client_init(struct ctl_client *c, int timeout_ms, struct ferry_err *err)
{
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->timeout_ms = timeout_ms > 0 ? timeout_ms : 10000;
	c->buf = malloc(FERRY_CTRL_MAX_MSG);
	if (!c->buf)
		return ferry_err_set(err, ENOMEM, "out of memory");
	return 0;
}

void ctl_client_close(struct ctl_client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
}

int ctl_client_open_unix(struct ctl_client *c, const char *path, int timeout_ms, struct ferry_err *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int rc = client_init(c, timeout_ms, err);

	if (rc < 0)
		return rc;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		ctl_client_close(c);
		return ferry_err_set(err, ENAMETOOLONG, "socket path too long: %s", path);
	}
	strcpy(sa.sun_path, path);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = errno;
		ctl_client_close(c);
		return ferry_err_set(err, rc, "connect %s: %s (is ferryd running?)", path, strerror(rc));
	}
	return 0;
}

static int send_all(struct ctl_client *c, const uint8_t *p, size_t n, struct ferry_err *err)
{
	while (n > 0) {
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return ferry_err_set(err, w < 0 ? errno : EIO, "send: %s", strerror(w < 0 ? errno : EIO));
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int ctl_client_send(struct ctl_client *c, struct ferry_ctrl_msg *m, struct ferry_err *err)
{
	static uint8_t out[FERRY_CTRL_MAX_MSG];
	int n;

	m->hdr.request_id = ++c->next_req;
	n = ferry_ctrl_encode(m, out, sizeof(out));
	if (n < 0)
		return ferry_err_set(err, EINVAL, "%s: %s", ferry_ctrl_type_name(m->hdr.type),
				     ferry_ctrl_errcode_str((uint32_t)-n));
	return send_all(c, out, (size_t)n, err);
}

int ctl_client_recv(struct ctl_client *c, struct ferry_ctrl_msg *m, struct ferry_err *err)
{
	for (;;) {
		struct ferry_ctrl_hdr h;
		struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
		ssize_t r;
		int rc;

		if (c->have >= FERRY_CTRL_HDR_LEN) {
			size_t total;

			rc = ferry_ctrl_hdr_decode(c->buf, c->have, &h);
			if (rc != FERRY_CTRL_E_OK)
				return ferry_err_set(err, EPROTO, "bad reply header: %s", ferry_ctrl_errcode_str((uint32_t)rc));
			total = FERRY_CTRL_HDR_LEN + h.payload_len;
			if (c->have >= total) {
				rc = ferry_ctrl_decode(c->buf, total, m);
				memmove(c->buf, c->buf + total, c->have - total);
				c->have -= total;
				if (rc != FERRY_CTRL_E_OK)
					return ferry_err_set(err, EPROTO, "bad %s reply: %s", ferry_ctrl_type_name(h.type),
							     ferry_ctrl_errcode_str((uint32_t)rc));
				return 0;
			}
		}
		rc = poll(&pfd, 1, c->timeout_ms);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc == 0)
			return ferry_err_set(err, ETIMEDOUT, "no reply within %d ms", c->timeout_ms);
		r = recv(c->fd, c->buf + c->have, FERRY_CTRL_MAX_MSG - c->have, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return ferry_err_set(err, r < 0 ? errno : ECONNRESET, "connection closed by ferryd%s%s",
					     r < 0 ? ": " : "", r < 0 ? strerror(errno) : "");
		c->have += (size_t)r;
	}
}

int ctl_client_call(struct ctl_client *c, struct ferry_ctrl_msg *req, struct ferry_ctrl_msg *reply,
		    struct ferry_err *err)
{
	struct ferry_err rerr = { 0 };
	int rc = ctl_client_send(c, req, err);

	/*
	 * A refused peer (wrong uid, bad request) gets ERROR and a close,
	 * possibly before our request is through: the ERROR says more than
	 * the broken pipe, so read it if it is there.
	 */
	if (rc < 0) {
		if (ctl_client_recv(c, reply, &rerr) == 0 && reply->hdr.type == FERRY_CTRL_ERROR)
			return ferry_err_set(err, EREMOTEIO, "%s: %s", ferry_ctrl_errcode_str(reply->u.error.code),
					     reply->u.error.msg);
		return rc;
	}
	rc = ctl_client_recv(c, reply, err);
	if (rc < 0)
		return rc;
	if (reply->hdr.type == FERRY_CTRL_ERROR)
		return ferry_err_set(err, EREMOTEIO, "%s: %s", ferry_ctrl_errcode_str(reply->u.error.code),
				     reply->u.error.msg);
	return 0;
}

int ctl_client_open_tcp(struct ctl_client *c, const char *hostport, const struct ferry_secret *secret,
			const char *name, int timeout_ms, struct ferry_err *err)
{
	static struct ferry_ctrl_msg m, r;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai = NULL;
	uint8_t nonce_s[FERRY_CTRL_NONCE_LEN], nonce_c[FERRY_CTRL_NONCE_LEN];
	char host[128];
	const char *colon = strrchr(hostport, ':');
	int rc = client_init(c, timeout_ms, err), one = 1;

	if (rc < 0)
		return rc;
	if (!colon || (size_t)(colon - hostport) >= sizeof(host)) {
		ctl_client_close(c);
		return ferry_err_set(err, EINVAL, "%s: want HOST:PORT", hostport);
	}
	memcpy(host, hostport, (size_t)(colon - hostport));
	host[colon - hostport] = '\0';
	rc = getaddrinfo(host, colon + 1, &hints, &ai);
	if (rc != 0) {
		ctl_client_close(c);
		return ferry_err_set(err, EINVAL, "%s: %s", hostport, gai_strerror(rc));
	}
	c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		rc = errno;
		freeaddrinfo(ai);
		ctl_client_close(c);
		return ferry_err_set(err, rc, "connect %s: %s", hostport, strerror(rc));
	}
	freeaddrinfo(ai);
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

	memset(&m, 0, sizeof(m));
	m.hdr.type = FERRY_CTRL_HELLO;
	m.u.hello.version_min = m.u.hello.version_max = FERRY_CTRL_VERSION;
	snprintf(m.u.hello.name, sizeof(m.u.hello.name), "%s", name);
	rc = ctl_client_call(c, &m, &r, err);
	if (rc == 0 && r.hdr.type != FERRY_CTRL_CHALLENGE)
		rc = ferry_err_set(err, EPROTO, "expected CHALLENGE, got %s", ferry_ctrl_type_name(r.hdr.type));
	if (rc == 0) {
		memcpy(nonce_s, r.u.challenge.nonce, sizeof(nonce_s));
		ferry_auth_nonce(nonce_c);
		m.hdr.type = FERRY_CTRL_AUTH;
		memcpy(m.u.auth.nonce, nonce_c, sizeof(nonce_c));
		ferry_auth_mac(secret, "ferry-ctrl-c", nonce_s, nonce_c, name, strlen(name), m.u.auth.mac);
		rc = ctl_client_call(c, &m, &r, err);
	}
	if (rc == 0 && (r.hdr.type != FERRY_CTRL_AUTH_OK ||
			ferry_auth_verify(secret, "ferry-ctrl-s", nonce_c, nonce_s, name, strlen(name),
					  r.u.auth_ok_mac) != 0))
		rc = ferry_err_set(err, EACCES, "%s does not prove it knows the cluster secret", hostport);
	if (rc < 0) {
		ferry_err_prefix(err, "%s: ", hostport);
		ctl_client_close(c);
	}
	return rc;
}
