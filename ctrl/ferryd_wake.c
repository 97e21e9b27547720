/*
 * ferryd <-> the local ferry-wake (proto/wake.h), when [ferryd] wake_ctl is
 * set. Two kinds of session, both authenticated with the cluster secret
 * (labels ferry-wake-c / ferry-wake-s):
 *
 *  - one short session per command: VM_TABLE(replace) + ROLE_TAKE when this
 *    node gains the accept role (the new holder learns every hibernated VM
 *    of the cluster from its own table, which follows the coordinator's
 *    view: paper 004's hand-over of the VM list), ROLE_DROP when it loses
 *    it, VM_ADD when a VM hibernates and VM_RUNNING when a resumed VM runs
 *    (announced) while it holds the role. Each step is bounded by 1 s.
 *  - one long session, kept open and re-opened every second when lost, on
 *    which ferry-wake sends WAKE_REQUEST (a hibernated VM was accessed):
 *    ferryd answers OK and resumes the VM on the least-loaded node, as
 *    `ferryctl resume` would; later requests for a VM already resuming are
 *    acknowledged and otherwise ignored.
 *
 * Failures are logged and counted, never fatal: ferry-wake may be
 * restarting under supervision.
 */
#include "ctrl/ferryd.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "dataplane/common/ferry_log.h"
#include "proto/wake.h"

#define STEP_MS  1000
#define RETRY_MS 1000

struct wsess {
	int fd;
	size_t have;
	uint8_t *buf;       /* FERRY_WAKE_MAX_MSG */
};

static uint8_t out[FERRY_WAKE_MAX_MSG];
static struct ferry_wake_msg wmsg;

static int wake_connect(const char *spec)
{
	int fd, rc;

	if (strncmp(spec, "unix:", 5) == 0) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		if (strlen(spec + 5) >= sizeof(sa.sun_path))
			return -ENAMETOOLONG;
		strcpy(sa.sun_path, spec + 5);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			rc = -errno;
			if (fd >= 0)
				close(fd);
			return rc;
		}
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
			rc = -errno;
			if (fd >= 0)
				close(fd);
			freeaddrinfo(ai);
			return rc;
		}
		freeaddrinfo(ai);
	}
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &(struct timeval){ .tv_sec = 1 }, sizeof(struct timeval));
	return fd;
}

/* A whole message already in s->buf? Decode it into wmsg and consume it: 1; 0 if not yet; < 0 bad. */
static int take_msg(struct wsess *s)
{
	struct ferry_wake_hdr h;
	size_t total;
	int rc;

	if (s->have < FERRY_WAKE_HDR_LEN)
		return 0;
	if (ferry_wake_hdr_decode(s->buf, s->have, &h) != FERRY_WAKE_E_OK)
		return -EPROTO;
	total = FERRY_WAKE_HDR_LEN + h.payload_len;
	if (s->have < total)
		return 0;
	rc = ferry_wake_decode(s->buf, total, &wmsg);
	memmove(s->buf, s->buf + total, s->have - total);
	s->have -= total;
	return rc == FERRY_WAKE_E_OK ? 1 : -EPROTO;
}

/* The next message within STEP_MS, into wmsg. */
static int wake_read(struct wsess *s)
{
	for (;;) {
		struct pollfd pfd = { .fd = s->fd, .events = POLLIN };
		int rc = take_msg(s);
		ssize_t r;

		if (rc != 0)
			return rc < 0 ? rc : 0;
		if (poll(&pfd, 1, STEP_MS) != 1)
			return -ETIMEDOUT;
		r = recv(s->fd, s->buf + s->have, FERRY_WAKE_MAX_MSG - s->have, 0);
		if (r <= 0)
			return r == 0 ? -ECONNRESET : -errno;
		s->have += (size_t)r;
	}
}

static int wake_send(struct wsess *s, int n)
{
	if (n < 0)
		return -EINVAL;
	return send(s->fd, out, (size_t)n, MSG_NOSIGNAL) == n ? 0 : -EIO;
}

/* Connect and authenticate; s->buf must be allocated. */
static int wake_open(struct ferryd *d, struct wsess *s, char *why, size_t whylen)
{
	uint8_t nonce_c[FERRY_WAKE_NONCE_LEN], nonce_s[FERRY_WAKE_NONCE_LEN], mac[FERRY_WAKE_MAC_LEN];
	const char *name = d->cfg.name;
	int rc;

	s->have = 0;
	s->fd = wake_connect(d->cfg.wake_ctl);
	if (s->fd < 0) {
		snprintf(why, whylen, "connect %s: %s", d->cfg.wake_ctl, strerror(-s->fd));
		return s->fd;
	}
	rc = wake_send(s, ferry_wake_encode_hello(1, name, FERRY_WAKE_VERSION, FERRY_WAKE_VERSION, out, sizeof(out)));
	if (rc == 0)
		rc = wake_read(s);
	if (rc == 0 && wmsg.hdr.type != FERRY_WAKE_CHALLENGE)
		rc = -EPROTO;
	if (rc == 0) {
		memcpy(nonce_s, wmsg.u.challenge.nonce, sizeof(nonce_s));
		ferry_auth_nonce(nonce_c);
		ferry_auth_mac(&d->secret, "ferry-wake-c", nonce_s, nonce_c, name, strlen(name), mac);
		rc = wake_send(s, ferry_wake_encode_auth(2, nonce_c, mac, out, sizeof(out)));
	}
	if (rc == 0)
		rc = wake_read(s);
	if (rc == 0 && (wmsg.hdr.type != FERRY_WAKE_AUTH_OK ||
			ferry_auth_verify(&d->secret, "ferry-wake-s", nonce_c, nonce_s, name, strlen(name),
					  wmsg.u.auth_ok.mac) != 0))
		rc = -EACCES;
	if (rc < 0) {
		snprintf(why, whylen, "handshake: %s", rc == -EACCES ? "ferry-wake refused us or does not know the secret"
								     : strerror(-rc));
		close(s->fd);
		s->fd = -1;
	}
	return rc;
}

/* One short session: each of @n messages in @reqs must get OK. */
static int wake_cmds(struct ferryd *d, const char *what, const uint8_t *const reqs[], const int lens[], int n)
{
	static uint8_t buf[FERRY_WAKE_MAX_MSG];
	struct wsess s = { .fd = -1, .buf = buf };
	char why[FERRY_WAKE_ERRMSG_MAX + 96];
	uint64_t value = 0;
	int rc, i;

	if (!d->cfg.wake_ctl[0])
		return 0;
	d->ctr.wake_msgs++;
	rc = wake_open(d, &s, why, sizeof(why));
	for (i = 0; rc == 0 && i < n; i++) {
		if (lens[i] < 0 || send(s.fd, reqs[i], (size_t)lens[i], MSG_NOSIGNAL) != lens[i]) {
			rc = -EIO;
			snprintf(why, sizeof(why), "send failed");
			break;
		}
		/* WAKE_REQUESTs go to every session: the long one answers them, this one skips them. */
		do
			rc = wake_read(&s);
		while (rc == 0 && wmsg.hdr.type == FERRY_WAKE_WAKE_REQUEST);
		if (rc < 0) {
			snprintf(why, sizeof(why), "%s", strerror(-rc));
		} else if (wmsg.hdr.type == FERRY_WAKE_ERROR) {
			snprintf(why, sizeof(why), "%s (%s)", ferry_wake_errcode_str(wmsg.u.error.code), wmsg.u.error.msg);
			rc = -EREMOTEIO;
		} else if (wmsg.hdr.type != FERRY_WAKE_OK) {
			snprintf(why, sizeof(why), "unexpected %s", ferry_wake_type_name(wmsg.hdr.type));
			rc = -EPROTO;
		} else {
			value = wmsg.u.ok.value;
		}
	}
	if (s.fd >= 0)
		close(s.fd);
	if (rc < 0) {
		LOG_WARN("ferry-wake %s: %s: %s", d->cfg.wake_ctl, what, why);
		return rc;
	}
	LOG_INFO("ferry-wake: %s -> OK(%llu)", what, (unsigned long long)value);
	return 0;
}

/* One command already encoded in `out`: copied first, since the handshake reuses `out`. */
static int wake_cmd(struct ferryd *d, const char *what, int n)
{
	static uint8_t req[FERRY_WAKE_HDR_LEN + 128];
	const uint8_t *reqs[] = { req };
	int lens[] = { n };

	if (n > (int)sizeof(req))
		return -EINVAL;
	if (n > 0)
		memcpy(req, out, (size_t)n);
	return wake_cmds(d, what, reqs, lens, 1);
}

int ferryd_wake_role(struct ferryd *d, bool take, uint64_t epoch)
{
	static struct ferry_wake_vm vms[FERRYD_MAX_VMS];
	static uint8_t table[FERRY_WAKE_MAX_MSG], role[FERRY_WAKE_HDR_LEN + 16];
	const uint8_t *reqs[2] = { table, role };
	int lens[2];
	uint16_t n = 0;
	char what[64];

	if (!d->cfg.wake_ctl[0])
		return 0;
	if (!take)
		return wake_cmd(d, "ROLE_DROP", ferry_wake_encode_role_drop(3, epoch, out, sizeof(out)));
	/* Every hibernated VM the cluster knows, then the role: ferry-wake announces their MACs. */
	for (unsigned int i = 0; i < d->nvms; i++) {
		const struct ferry_ctrl_vm *v = &d->vms[i].v;

		/* FAILED: hibernated, every resume so far failed; an access still tries again. */
		if ((v->state != FERRY_CTRL_VM_HIBERNATED && v->state != FERRY_CTRL_VM_FAILED) ||
		    ferry_wake_check_ip(v->ip) || ferry_wake_check_mac(v->mac))
			continue;
		memcpy(vms[n].ip, v->ip, 4);
		memcpy(vms[n].mac, v->mac, 6);
		snprintf(vms[n].id, sizeof(vms[n].id), "%s", v->id);
		n++;
	}
	lens[0] = ferry_wake_encode_vm_table(2, FERRY_WAKE_TABLE_REPLACE, vms, n, table, sizeof(table));
	lens[1] = ferry_wake_encode_role_take(3, epoch, role, sizeof(role));
	snprintf(what, sizeof(what), "VM_TABLE(%u) + ROLE_TAKE(%llu)", n, (unsigned long long)epoch);
	return wake_cmds(d, what, reqs, lens, 2);
}

int ferryd_wake_vm_add(struct ferryd *d, const struct ferry_ctrl_vm *v)
{
	struct ferry_wake_vm wv;

	if (ferry_wake_check_ip(v->ip) || ferry_wake_check_mac(v->mac))
		return 0;   /* no address to answer for */
	memcpy(wv.ip, v->ip, 4);
	memcpy(wv.mac, v->mac, 6);
	snprintf(wv.id, sizeof(wv.id), "%s", v->id);
	return wake_cmd(d, "VM_ADD", ferry_wake_encode_vm_add(3, &wv, out, sizeof(out)));
}

int ferryd_wake_vm_running(struct ferryd *d, const char *id)
{
	return wake_cmd(d, "VM_RUNNING", ferry_wake_encode_vm_running(3, id, out, sizeof(out)));
}

/* ---------------------------------------------------------------- the long session */

int ferryd_wake_fd(const struct ferryd *d)
{
	return d->wake_fd;
}

void ferryd_wake_close(struct ferryd *d)
{
	if (d->wake_fd >= 0)
		close(d->wake_fd);
	d->wake_fd = -1;
	free(d->wake_in);
	d->wake_in = NULL;
}

void ferryd_wake_tick(struct ferryd *d, uint64_t now)
{
	struct wsess s = { .fd = -1 };
	char why[160];

	if (!d->cfg.wake_ctl[0] || d->wake_fd >= 0 || now < d->wake_retry_ms)
		return;
	d->wake_retry_ms = now + RETRY_MS;
	if (!d->wake_in && !(d->wake_in = malloc(FERRY_WAKE_MAX_MSG)))
		return;
	s.buf = d->wake_in;
	if (wake_open(d, &s, why, sizeof(why)) < 0) {
		LOG_DEBUG("ferry-wake %s: %s (retrying)", d->cfg.wake_ctl, why);
		return;
	}
	d->wake_fd = s.fd;
	d->wake_have = s.have;
	LOG_INFO("ferry-wake %s: listening for wake requests", d->cfg.wake_ctl);
	/* A ferry-wake that (re)started knows nothing: give it the table and the role again. */
	if (d->role_held)
		ferryd_wake_role(d, true, d->role_epoch);
}

static void on_wake_request(struct ferryd *d, const struct ferry_wake_request *wr, uint64_t req)
{
	struct ferryd_vm *vm = ferryd_vm_find(d, wr->id);
	struct ferry_ctrl_vm_req r;
	struct wsess s = { .fd = d->wake_fd, .buf = d->wake_in };

	/* Acknowledge first: ferry-wake re-sends until it hears from us. */
	if (wake_send(&s, ferry_wake_encode_ok(req, 0, out, sizeof(out))) < 0)
		LOG_WARN("ferry-wake: acknowledging the wake of %s failed", wr->id);
	if (!vm) {
		LOG_WARN("ferry-wake asks to wake %s, which is not in the cluster config", wr->id);
		return;
	}
	if ((vm->v.state != FERRY_CTRL_VM_HIBERNATED && vm->v.state != FERRY_CTRL_VM_FAILED) || vm->op != OP_NONE ||
	    vm->picking) {
		LOG_DEBUG("wake request #%u for %s: already %s", wr->attempt, wr->id,
			  ferry_ctrl_vm_state_name(vm->v.state));
		return;
	}
	LOG_INFO("vm %s accessed (%s, attempt %u): resuming it", wr->id,
		 wr->reason == FERRY_WAKE_REASON_SYN ? "SYN" : "ARP", wr->attempt);
	memset(&r, 0, sizeof(r));
	snprintf(r.vm, sizeof(r.vm), "%s", wr->id);
	ferryd_vm_resume_for(d, 0, 0, &r);
}

void ferryd_wake_readable(struct ferryd *d)
{
	struct wsess s = { .fd = d->wake_fd, .have = d->wake_have, .buf = d->wake_in };
	ssize_t r = recv(s.fd, s.buf + s.have, FERRY_WAKE_MAX_MSG - s.have, MSG_DONTWAIT);
	int rc;

	if (r <= 0) {
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		LOG_WARN("ferry-wake %s: session lost (%s); reconnecting", d->cfg.wake_ctl, r ? strerror(errno) : "closed");
		close(d->wake_fd);
		d->wake_fd = -1;
		return;
	}
	s.have += (size_t)r;
	while ((rc = take_msg(&s)) > 0) {
		if (wmsg.hdr.type == FERRY_WAKE_WAKE_REQUEST)
			on_wake_request(d, &wmsg.u.wake, wmsg.hdr.request_id);
	}
	d->wake_have = s.have;
	if (rc < 0) {
		LOG_WARN("ferry-wake %s: bad message on the wake session; reconnecting", d->cfg.wake_ctl);
		close(d->wake_fd);
		d->wake_fd = -1;
	}
}
