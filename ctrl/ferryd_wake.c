/*
 * ferryd -> the local ferry-wake (proto/wake.h), when [ferryd] wake_ctl is
 * set: ROLE_TAKE / ROLE_DROP with the coordinator's epoch when this node
 * gains or loses the accept role, VM_RUNNING once a resumed VM announced
 * itself. One short authenticated session per message (ferry-wake is local
 * and these are rare), each step bounded by 1 s; a failure is logged and
 * counted, never fatal: ferry-wake may be restarting under supervision.
 *
 * Not here yet: the persistent session on which ferry-wake sends
 * WAKE_REQUEST (an access to a hibernated VM) for ferryd to resume it.
 */
#include "ctrl/ferryd.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "dataplane/common/ferry_log.h"
#include "proto/wake.h"

#define STEP_MS 1000

static int wake_connect(const char *spec)
{
	int fd;

	if (strncmp(spec, "unix:", 5) == 0) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		if (strlen(spec + 5) >= sizeof(sa.sun_path))
			return -ENAMETOOLONG;
		strcpy(sa.sun_path, spec + 5);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			int rc = -errno;

			if (fd >= 0)
				close(fd);
			return rc;
		}
		return fd;
	} else {
		struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai = NULL;
		char host[128];
		const char *hp = spec + 4, *colon = strrchr(hp, ':');

		if (!colon || (size_t)(colon - hp) >= sizeof(host))
			return -EINVAL;
		memcpy(host, hp, (size_t)(colon - hp));
		host[colon - hp] = '\0';
		if (getaddrinfo(host, colon + 1, &hints, &ai) != 0)
			return -EINVAL;
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			int rc = -errno;

			if (fd >= 0)
				close(fd);
			freeaddrinfo(ai);
			return rc;
		}
		freeaddrinfo(ai);
		return fd;
	}
}

/* Read one whole wake message within STEP_MS. */
static int wake_read(int fd, uint8_t *buf, size_t cap, struct ferry_wake_msg *m)
{
	size_t have = 0;

	for (;;) {
		struct ferry_wake_hdr h;
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t r;

		if (have >= FERRY_WAKE_HDR_LEN) {
			int rc = ferry_wake_hdr_decode(buf, have, &h);

			if (rc != FERRY_WAKE_E_OK)
				return -EPROTO;
			if (have >= FERRY_WAKE_HDR_LEN + h.payload_len)
				return ferry_wake_decode(buf, have, m) == FERRY_WAKE_E_OK ? 0 : -EPROTO;
		}
		if (poll(&pfd, 1, STEP_MS) != 1)
			return -ETIMEDOUT;
		r = recv(fd, buf + have, cap - have, 0);
		if (r <= 0)
			return r == 0 ? -ECONNRESET : -errno;
		have += (size_t)r;
	}
}

static int wake_send(int fd, const uint8_t *buf, int n)
{
	if (n < 0)
		return -EINVAL;
	return send(fd, buf, (size_t)n, MSG_NOSIGNAL) == n ? 0 : -EIO;
}

/* One session: handshake, then the message in @req[0..n), reply into *@reply. */
static int wake_call(struct ferryd *d, const uint8_t *req, int n, uint64_t *value, char *why, size_t whylen)
{
	static uint8_t buf[FERRY_WAKE_MAX_MSG];
	static struct ferry_wake_msg m;
	uint8_t nonce_c[FERRY_WAKE_NONCE_LEN], mac[FERRY_WAKE_MAC_LEN];
	int fd, rc;

	fd = wake_connect(d->cfg.wake_ctl);
	if (fd < 0) {
		snprintf(why, whylen, "connect %s: %s", d->cfg.wake_ctl, strerror(-fd));
		return fd;
	}
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &(struct timeval){ .tv_sec = 1 }, sizeof(struct timeval));
	rc = wake_send(fd, buf, ferry_wake_encode_hello(1, d->cfg.name, 1, 1, buf, sizeof(buf)));
	if (rc == 0)
		rc = wake_read(fd, buf, sizeof(buf), &m);
	if (rc == 0 && m.hdr.type != FERRY_WAKE_CHALLENGE)
		rc = -EPROTO;
	if (rc == 0) {
		uint8_t nonce_s[FERRY_WAKE_NONCE_LEN];

		memcpy(nonce_s, m.u.challenge.nonce, sizeof(nonce_s));
		ferry_auth_nonce(nonce_c);
		ferry_auth_mac(&d->secret, "ferry-wake-c", nonce_s, nonce_c, d->cfg.name, strlen(d->cfg.name), mac);
		rc = wake_send(fd, buf, ferry_wake_encode_auth(2, nonce_c, mac, buf, sizeof(buf)));
		if (rc == 0)
			rc = wake_read(fd, buf, sizeof(buf), &m);
		if (rc == 0 && (m.hdr.type != FERRY_WAKE_AUTH_OK ||
				ferry_auth_verify(&d->secret, "ferry-wake-s", nonce_c, nonce_s, d->cfg.name,
						  strlen(d->cfg.name), m.u.auth_ok.mac) != 0))
			rc = -EACCES;
	}
	if (rc == 0)
		rc = wake_send(fd, req, n);
	if (rc == 0)
		rc = wake_read(fd, buf, sizeof(buf), &m);
	close(fd);
	if (rc < 0) {
		snprintf(why, whylen, "%s", strerror(-rc));
		return rc;
	}
	if (m.hdr.type == FERRY_WAKE_ERROR) {
		snprintf(why, whylen, "%s (%s)", ferry_wake_errcode_str(m.u.error.code), m.u.error.msg);
		return -EREMOTEIO;
	}
	if (m.hdr.type != FERRY_WAKE_OK) {
		snprintf(why, whylen, "unexpected %s", ferry_wake_type_name(m.hdr.type));
		return -EPROTO;
	}
	*value = m.u.ok.value;
	return 0;
}

static int wake_msg(struct ferryd *d, const char *what, uint8_t *req, int n)
{
	char why[FERRY_WAKE_ERRMSG_MAX + 64];
	uint64_t value = 0;
	int rc;

	if (!d->cfg.wake_ctl[0])
		return 0;
	if (n < 0)
		return n;
	rc = wake_call(d, req, n, &value, why, sizeof(why));
	d->ctr.wake_msgs++;
	if (rc < 0) {
		LOG_WARN("ferry-wake %s: %s: %s", d->cfg.wake_ctl, what, why);
		return rc;
	}
	LOG_INFO("ferry-wake: %s -> OK(%llu)", what, (unsigned long long)value);
	return 0;
}

int ferryd_wake_role(struct ferryd *d, bool take, uint64_t epoch)
{
	static uint8_t req[FERRY_WAKE_HDR_LEN + 64];
	int n = take ? ferry_wake_encode_role_take(3, epoch, req, sizeof(req))
		     : ferry_wake_encode_role_drop(3, epoch, req, sizeof(req));

	return wake_msg(d, take ? "ROLE_TAKE" : "ROLE_DROP", req, n);
}

int ferryd_wake_vm_add(struct ferryd *d, const struct ferry_ctrl_vm *v)
{
	static uint8_t req[FERRY_WAKE_HDR_LEN + 128];
	struct ferry_wake_vm wv;

	memcpy(wv.ip, v->ip, 4);
	memcpy(wv.mac, v->mac, 6);
	snprintf(wv.id, sizeof(wv.id), "%s", v->id);
	return wake_msg(d, "VM_ADD", req, ferry_wake_encode_vm_add(3, &wv, req, sizeof(req)));
}

int ferryd_wake_vm_running(struct ferryd *d, const char *id)
{
	static uint8_t req[FERRY_WAKE_HDR_LEN + 128];

	return wake_msg(d, "VM_RUNNING", req, ferry_wake_encode_vm_running(3, id, req, sizeof(req)));
}
