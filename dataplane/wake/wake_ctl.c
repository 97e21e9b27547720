/*
 * ferry-wake's control server: proto/wake over a stream socket, served by the
 * control thread (never the burst loop). See wake_ctl.h and proto/wake.h.
 */
#include "dataplane/wake/wake_ctl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/common/sock_io.h"
#include "dataplane/common/unix_listen.h"

#define LABEL_C "ferry-wake-c"
/* A peer that has not authenticated within this long is dropped (it holds a slot). */
#define AUTH_DEADLINE_NS 5000000000ull
#define LABEL_S "ferry-wake-s"
/* A peer gets this long to make room for a message: the loop must not wait on it for ever. */
#define SEND_TIMEOUT_MS 2000

enum conn_state { CONN_NEW, CONN_CHALLENGED, CONN_AUTHED };

struct wake_conn {
	int fd;
	enum conn_state state;
	unsigned int id;
	uint64_t auth_deadline_ns;
	char name[FERRY_WAKE_NAME_MAX + 1];
	uint8_t server_nonce[FERRY_WAKE_NONCE_LEN];
	size_t have;
	uint8_t in[FERRY_WAKE_MAX_MSG];
};

/* Scratch for one outgoing message and one decoded message: the control thread is single. */
static uint8_t out_buf[FERRY_WAKE_MAX_MSG];
static struct ferry_wake_msg in_msg;

int wake_shared_init(struct wake_shared *sh, uint32_t max_vms, struct ferry_err *err)
{
	int rc;

	memset(sh, 0, sizeof(*sh));
	sh->wake_evfd = -1;
	rc = wake_table_init(&sh->table, max_vms);
	if (rc < 0)
		return ferry_err_set(err, -rc, "VM table of %u entries: %s", max_vms, strerror(-rc));
	sh->wake_evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (sh->wake_evfd < 0) {
		rc = errno;
		wake_table_free(&sh->table);
		return ferry_err_set(err, rc, "eventfd: %s", strerror(rc));
	}
	pthread_mutex_init(&sh->lock, NULL);
	return 0;
}

void wake_shared_fini(struct wake_shared *sh)
{
	if (sh->wake_evfd >= 0)
		close(sh->wake_evfd);
	sh->wake_evfd = -1;
	wake_table_free(&sh->table);
	pthread_mutex_destroy(&sh->lock);
}

void wake_shared_kick(struct wake_shared *sh)
{
	uint64_t one = 1;

	if (write(sh->wake_evfd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is already non-zero, the control thread will look. */
	}
}

static void fmt_ip(const uint8_t ip[4], char *s, size_t n)
{
	snprintf(s, n, "%u.%u.%u.%u", ip[0], ip[1], ip[2], ip[3]);
}

/* ---------------------------------------------------------------- sockets */

static int listen_unix(struct wake_ctl *ctl, const char *path, struct ferry_err *err)
{
	/* 0600: only root's ferryd drives the accept node; it also proves the cluster secret. */
	int fd = ferry_unix_listen(path, 0600, 16, err);

	if (fd < 0)
		return fd;
	ctl->listen_fd = fd;
	snprintf(ctl->unix_path, sizeof(ctl->unix_path), "%s", path);
	snprintf(ctl->listen_desc, sizeof(ctl->listen_desc), "unix:%s", path);
	return 0;
}

static int listen_tcp(struct wake_ctl *ctl, const char *hostport, struct ferry_err *err)
{
	char host[128];
	const char *colon = strrchr(hostport, ':');
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *ai = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char h[64], p[16];
	int fd = -1, rc, one = 1;

	if (!colon || (size_t)(colon - hostport) >= sizeof(host))
		return ferry_err_set(err, EINVAL, "control address %s: want tcp:HOST:PORT", hostport);
	memcpy(host, hostport, (size_t)(colon - hostport));
	host[colon - hostport] = '\0';
	rc = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &ai);
	if (rc != 0)
		return ferry_err_set(err, EINVAL, "control address %s: %s", hostport, gai_strerror(rc));
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 16) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		rc = errno;
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return ferry_err_set(err, rc, "control address %s: %s", hostport, strerror(rc));
	}
	freeaddrinfo(ai);
	getnameinfo((struct sockaddr *)&ss, sl, h, sizeof(h), p, sizeof(p), NI_NUMERICHOST | NI_NUMERICSERV);
	ctl->listen_fd = fd;
	snprintf(ctl->listen_desc, sizeof(ctl->listen_desc), "tcp:%s:%s", h, p);
	return 0;
}

int wake_ctl_open(struct wake_ctl *ctl, const char *spec, const struct ferry_secret *secret,
		  struct wake_shared *sh, struct ferry_err *err)
{
	memset(ctl, 0, sizeof(*ctl));
	ctl->listen_fd = -1;
	ctl->sh = sh;
	ctl->secret = secret;
	if (!spec)
		return ferry_err_set(err, EINVAL, "no control address");
	if (strncmp(spec, "unix:", 5) == 0)
		return listen_unix(ctl, spec + 5, err);
	if (strncmp(spec, "tcp:", 4) == 0)
		return listen_tcp(ctl, spec + 4, err);
	return ferry_err_set(err, EINVAL, "control address %s: want unix:/path or tcp:HOST:PORT", spec);
}

static void conn_close(struct wake_ctl *ctl, int slot, const char *why)
{
	struct wake_conn *c = ctl->conns[slot];

	LOG_INFO("control %u (%s) closed: %s", c->id, c->name[0] ? c->name : "-", why);
	close(c->fd);
	free(c);
	ctl->conns[slot] = NULL;
}

void wake_ctl_close(struct wake_ctl *ctl)
{
	for (int i = 0; i < WAKE_CTL_MAX_CONNS; i++)
		if (ctl->conns[i])
			conn_close(ctl, i, "shutting down");
	if (ctl->listen_fd >= 0)
		close(ctl->listen_fd);
	ctl->listen_fd = -1;
	if (ctl->unix_path[0])
		unlink(ctl->unix_path);
}

static int reply(struct wake_conn *c, int n)
{
	if (n < 0) {
		LOG_ERR("control %u: encoding a reply failed (%d)", c->id, n);
		return -1;
	}
	return ferry_send_all(c->fd, out_buf, (size_t)n, SEND_TIMEOUT_MS);
}

static int reply_error(struct wake_ctl *ctl, struct wake_conn *c, uint64_t req, uint32_t code, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static int reply_error(struct wake_ctl *ctl, struct wake_conn *c, uint64_t req, uint32_t code, const char *fmt, ...)
{
	char msg[FERRY_WAKE_ERRMSG_MAX + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	WAKE_INC(ctl->sh->ctl.ctl_errors_sent, 1);
	LOG_WARN("control %u: ERROR %u (%s): %s", c->id, code, ferry_wake_errcode_str(code), msg);
	return reply(c, ferry_wake_encode_error(req, code, msg, out_buf, sizeof(out_buf)));
}

/* ---------------------------------------------------------------- requests */

static void announce_all_locked(struct wake_shared *sh, uint64_t *count)
{
	uint32_t pos = 0;
	struct wake_vm *vm;

	*count = 0;
	while ((vm = wake_table_next(&sh->table, &pos)) != NULL) {
		vm->announce_pending = true;
		(*count)++;
	}
	__atomic_store_n(&sh->pending, 1, __ATOMIC_RELEASE);
}

static int do_vm_add(struct wake_ctl *ctl, struct wake_conn *c, uint64_t req, const struct ferry_wake_vm *v)
{
	struct wake_shared *sh = ctl->sh;
	struct wake_vm *vm;
	char ip[16];
	int rc;

	pthread_mutex_lock(&sh->lock);
	rc = wake_table_add(&sh->table, v->id, v->ip, v->mac, &vm);
	if (rc == FERRY_WAKE_E_OK && sh->role) {
		/* A VM that just hibernated: the switches still point at its old port. */
		vm->announce_pending = true;
		__atomic_store_n(&sh->pending, 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&sh->lock);
	fmt_ip(v->ip, ip, sizeof(ip));
	if (rc != FERRY_WAKE_E_OK)
		return reply_error(ctl, c, req, (uint32_t)rc, "VM_ADD %s %s: %s", v->id, ip, ferry_wake_errcode_str((uint32_t)rc));
	WAKE_INC(sh->ctl.vm_added, 1);
	LOG_INFO("vm %s added: %s at %02x:%02x:%02x:%02x:%02x:%02x (hibernated)", v->id, ip, v->mac[0], v->mac[1],
		 v->mac[2], v->mac[3], v->mac[4], v->mac[5]);
	return reply(c, ferry_wake_encode_ok(req, 0, out_buf, sizeof(out_buf)));
}

static int do_vm_table(struct wake_ctl *ctl, struct wake_conn *c, uint64_t req, const struct ferry_wake_table *tab)
{
	struct wake_shared *sh = ctl->sh;
	struct ferry_wake_vm v;
	uint64_t added = 0;
	int rc = FERRY_WAKE_E_OK;
	uint16_t i;

	pthread_mutex_lock(&sh->lock);
	if ((tab->flags & FERRY_WAKE_TABLE_REPLACE) && tab->count > sh->table.max_vms)
		rc = FERRY_WAKE_E_TABLE_FULL;
	if (rc == FERRY_WAKE_E_OK && (tab->flags & FERRY_WAKE_TABLE_REPLACE))
		wake_table_clear(&sh->table);
	for (i = 0; rc == FERRY_WAKE_E_OK && i < tab->count; i++) {
		struct wake_vm *vm;

		ferry_wake_table_entry(tab, i, &v);
		rc = wake_table_add(&sh->table, v.id, v.ip, v.mac, &vm);
		if (rc == FERRY_WAKE_E_OK) {
			added++;
			if (sh->role) {
				vm->announce_pending = true;
				__atomic_store_n(&sh->pending, 1, __ATOMIC_RELEASE);
			}
		}
	}
	pthread_mutex_unlock(&sh->lock);
	WAKE_INC(sh->ctl.vm_added, added);
	if (rc != FERRY_WAKE_E_OK)
		return reply_error(ctl, c, req, (uint32_t)rc, "VM_TABLE entry %u (%s): %s; %llu entries applied",
				   (unsigned int)(i ? i - 1 : 0), i ? v.id : "-", ferry_wake_errcode_str((uint32_t)rc),
				   (unsigned long long)added);
	LOG_INFO("vm table %s: %llu VMs from %s", (tab->flags & FERRY_WAKE_TABLE_REPLACE) ? "replaced" : "extended",
		 (unsigned long long)added, c->name);
	return reply(c, ferry_wake_encode_ok(req, added, out_buf, sizeof(out_buf)));
}

static int do_vm_ref(struct wake_ctl *ctl, struct wake_conn *c, const struct ferry_wake_msg *m)
{
	struct wake_shared *sh = ctl->sh;
	uint64_t req = m->hdr.request_id, value = 0;
	struct wake_vm *vm;
	bool running = m->hdr.type == FERRY_WAKE_VM_RUNNING;
	double wake_ms = 0;

	pthread_mutex_lock(&sh->lock);
	vm = wake_table_find_id(&sh->table, m->u.ref.id);
	if (vm && running) {
		value = vm->nsyn;
		if (vm->wake_wanted)
			wake_ms = (double)(ferry_mono_ns() - vm->wake_first_ns) / 1e6;
		if (vm->nsyn) {
			/* The burst loop sends the frames, then removes the VM. */
			vm->replay_pending = true;
			__atomic_store_n(&sh->pending, 1, __ATOMIC_RELEASE);
		} else {
			wake_table_del(&sh->table, vm);
		}
	} else if (vm) {
		value = vm->nsyn;
		wake_table_del(&sh->table, vm);
	}
	pthread_mutex_unlock(&sh->lock);
	if (!vm)
		return reply_error(ctl, c, req, FERRY_WAKE_E_UNKNOWN_VM, "%s: unknown VM %s",
				   ferry_wake_type_name(m->hdr.type), m->u.ref.id);
	if (running) {
		WAKE_INC(sh->ctl.vm_running, 1);
		LOG_INFO("vm %s running: replaying %llu stored SYNs (%.1f ms after the first access)", m->u.ref.id,
			 (unsigned long long)value, wake_ms);
	} else {
		WAKE_INC(sh->ctl.vm_deleted, 1);
		LOG_INFO("vm %s deleted (%llu stored SYNs dropped)", m->u.ref.id, (unsigned long long)value);
	}
	return reply(c, ferry_wake_encode_ok(req, value, out_buf, sizeof(out_buf)));
}

static int do_role(struct wake_ctl *ctl, struct wake_conn *c, const struct ferry_wake_msg *m)
{
	struct wake_shared *sh = ctl->sh;
	bool take = m->hdr.type == FERRY_WAKE_ROLE_TAKE;
	uint64_t count = 0, last;

	pthread_mutex_lock(&sh->lock);
	last = sh->epoch;
	if (m->u.role.epoch < last) {
		pthread_mutex_unlock(&sh->lock);
		return reply_error(ctl, c, m->hdr.request_id, FERRY_WAKE_E_STALE_EPOCH, "%s epoch %llu < %llu",
				   ferry_wake_type_name(m->hdr.type), (unsigned long long)m->u.role.epoch,
				   (unsigned long long)last);
	}
	sh->epoch = m->u.role.epoch;
	__atomic_store_n(&sh->role, take, __ATOMIC_RELEASE);
	if (take)
		announce_all_locked(sh, &count);
	pthread_mutex_unlock(&sh->lock);
	if (take) {
		WAKE_INC(sh->ctl.role_takes, 1);
		LOG_INFO("role taken (epoch %llu): answering for %llu hibernated VMs, announcing their MACs",
			 (unsigned long long)m->u.role.epoch, (unsigned long long)count);
	} else {
		WAKE_INC(sh->ctl.role_drops, 1);
		LOG_INFO("role dropped (epoch %llu): no longer answering", (unsigned long long)m->u.role.epoch);
	}
	return reply(c, ferry_wake_encode_ok(m->hdr.request_id, count, out_buf, sizeof(out_buf)));
}

static int do_stats(struct wake_ctl *ctl, struct wake_conn *c, uint64_t req)
{
	struct ferry_wake_stat st[FERRY_WAKE_MAX_STATS];
	struct wake_shared *sh = ctl->sh;
	uint16_t n = 0;

#define WAKE_STAT_DP(f) snprintf(st[n].name, sizeof(st[n].name), "%s", #f); st[n++].value = WAKE_READ(sh->dp.f);
#define WAKE_STAT_CTL(f) snprintf(st[n].name, sizeof(st[n].name), "%s", #f); st[n++].value = WAKE_READ(sh->ctl.f);
	WAKE_DP_COUNTERS(WAKE_STAT_DP)
	WAKE_CTL_COUNTERS(WAKE_STAT_CTL)
#undef WAKE_STAT_DP
#undef WAKE_STAT_CTL
	pthread_mutex_lock(&sh->lock);
	snprintf(st[n].name, sizeof(st[n].name), "vms");
	st[n++].value = sh->table.count;
	snprintf(st[n].name, sizeof(st[n].name), "role");
	st[n++].value = sh->role;
	snprintf(st[n].name, sizeof(st[n].name), "epoch");
	st[n++].value = sh->epoch;
	{
		uint32_t pos = 0;
		uint64_t stored = 0;
		struct wake_vm *vm;

		while ((vm = wake_table_next(&sh->table, &pos)) != NULL)
			stored += vm->nsyn;
		snprintf(st[n].name, sizeof(st[n].name), "syn_held");
		st[n++].value = stored;
	}
	pthread_mutex_unlock(&sh->lock);
	return reply(c, ferry_wake_encode_stats_ok(req, st, n, out_buf, sizeof(out_buf)));
}

static void do_wake_answer(struct wake_ctl *ctl, struct wake_conn *c, const struct ferry_wake_msg *m)
{
	struct wake_shared *sh = ctl->sh;
	uint32_t pos = 0;
	struct wake_vm *vm;
	char id[FERRY_WAKE_VM_ID_MAX + 1] = "";

	pthread_mutex_lock(&sh->lock);
	while ((vm = wake_table_next(&sh->table, &pos)) != NULL) {
		if (vm->wake_wanted && !vm->wake_acked && vm->wake_req_id == m->hdr.request_id) {
			vm->wake_acked = true;
			snprintf(id, sizeof(id), "%s", vm->id);
			break;
		}
	}
	pthread_mutex_unlock(&sh->lock);
	if (!id[0]) {
		LOG_DEBUG("control %u: %s for request %llu matches no pending wake", c->id,
			  ferry_wake_type_name(m->hdr.type), (unsigned long long)m->hdr.request_id);
		return;
	}
	WAKE_INC(sh->ctl.wake_requests_acked, 1);
	if (m->hdr.type == FERRY_WAKE_OK)
		LOG_INFO("vm %s: ferryd %s acknowledged the wake request", id, c->name);
	else
		LOG_WARN("vm %s: ferryd %s refused the wake request: %s (%s)", id, c->name,
			 ferry_wake_errcode_str(m->u.error.code), m->u.error.msg);
}

/* One decoded message from an authenticated peer. Returns -1 to close. */
static int dispatch(struct wake_ctl *ctl, struct wake_conn *c, const struct ferry_wake_msg *m)
{
	uint64_t req = m->hdr.request_id;

	switch (m->hdr.type) {
	case FERRY_WAKE_VM_ADD:
		return do_vm_add(ctl, c, req, &m->u.vm);
	case FERRY_WAKE_VM_DEL:
	case FERRY_WAKE_VM_RUNNING:
		return do_vm_ref(ctl, c, m);
	case FERRY_WAKE_VM_TABLE:
		return do_vm_table(ctl, c, req, &m->u.table);
	case FERRY_WAKE_ROLE_TAKE:
	case FERRY_WAKE_ROLE_DROP:
		return do_role(ctl, c, m);
	case FERRY_WAKE_STATS:
		return do_stats(ctl, c, req);
	case FERRY_WAKE_OK:
	case FERRY_WAKE_ERROR:
		do_wake_answer(ctl, c, m);
		return 0;
	default:
		return reply_error(ctl, c, req, FERRY_WAKE_E_UNEXPECTED, "%s is not a request ferry-wake serves",
				   ferry_wake_type_name(m->hdr.type));
	}
}

/* The handshake. Returns -1 to close. */
static int handshake(struct wake_ctl *ctl, struct wake_conn *c, const struct ferry_wake_msg *m)
{
	struct wake_shared *sh = ctl->sh;
	uint64_t req = m->hdr.request_id;
	uint8_t mac[FERRY_WAKE_MAC_LEN];

	if (c->state == CONN_NEW && m->hdr.type == FERRY_WAKE_HELLO) {
		if (m->u.hello.version_min > FERRY_WAKE_VERSION || m->u.hello.version_max < FERRY_WAKE_VERSION) {
			reply_error(ctl, c, req, FERRY_WAKE_E_VERSION, "versions %u..%u not supported (want %u)",
				    m->u.hello.version_min, m->u.hello.version_max, FERRY_WAKE_VERSION);
			return -1;
		}
		snprintf(c->name, sizeof(c->name), "%s", m->u.hello.name);
		ferry_auth_nonce(c->server_nonce);
		c->state = CONN_CHALLENGED;
		return reply(c, ferry_wake_encode_challenge(req, FERRY_WAKE_VERSION, c->server_nonce, out_buf,
							    sizeof(out_buf)));
	}
	if (c->state == CONN_CHALLENGED && m->hdr.type == FERRY_WAKE_AUTH) {
		if (ferry_auth_verify(ctl->secret, LABEL_C, c->server_nonce, m->u.auth.nonce, c->name, strlen(c->name),
				      m->u.auth.mac) != 0) {
			WAKE_INC(sh->ctl.ctl_auth_failed, 1);
			reply_error(ctl, c, req, FERRY_WAKE_E_AUTH_FAILED, "authentication failed for %s", c->name);
			return -1;
		}
		ferry_auth_mac(ctl->secret, LABEL_S, m->u.auth.nonce, c->server_nonce, c->name, strlen(c->name), mac);
		c->state = CONN_AUTHED;
		WAKE_INC(sh->ctl.ctl_auth_ok, 1);
		ctl->warned_no_ferryd = false;
		LOG_INFO("control %u: %s authenticated", c->id, c->name);
		/* Wakes that waited for a ferryd are due now. */
		wake_shared_kick(sh);
		return reply(c, ferry_wake_encode_auth_ok(req, mac, out_buf, sizeof(out_buf)));
	}
	WAKE_INC(sh->ctl.ctl_unauth_refused, 1);
	reply_error(ctl, c, req, FERRY_WAKE_E_NOT_AUTHENTICATED, "%s before authentication",
		    ferry_wake_type_name(m->hdr.type));
	return -1;
}

/* Consume whole messages from c->in. Returns -1 to close. */
static int conn_process(struct wake_ctl *ctl, struct wake_conn *c)
{
	struct wake_shared *sh = ctl->sh;
	size_t off = 0;
	int rc = 0;

	while (c->have - off >= FERRY_WAKE_HDR_LEN) {
		struct ferry_wake_hdr hdr;
		size_t total;

		rc = ferry_wake_hdr_decode(c->in + off, c->have - off, &hdr);
		if (rc != FERRY_WAKE_E_OK) {
			/* The framing cannot be trusted any more: answer and close. */
			WAKE_INC(sh->ctl.ctl_malformed, 1);
			reply_error(ctl, c, 0, (uint32_t)rc, "bad header: %s", ferry_wake_errcode_str((uint32_t)rc));
			return -1;
		}
		total = FERRY_WAKE_HDR_LEN + (size_t)hdr.payload_len;
		if (c->have - off < total)
			break;
		WAKE_INC(sh->ctl.ctl_messages, 1);
		rc = ferry_wake_decode(c->in + off, total, &in_msg);
		off += total;
		if (rc != FERRY_WAKE_E_OK) {
			/* Whole but malformed: the stream is still in step. */
			WAKE_INC(sh->ctl.ctl_malformed, 1);
			if (c->state != CONN_AUTHED) {
				reply_error(ctl, c, hdr.request_id, (uint32_t)rc, "malformed %s before authentication",
					    ferry_wake_type_name(hdr.type));
				return -1;
			}
			if (reply_error(ctl, c, hdr.request_id, (uint32_t)rc, "malformed %s: %s",
					ferry_wake_type_name(hdr.type), ferry_wake_errcode_str((uint32_t)rc)) < 0)
				return -1;
			continue;
		}
		if (c->state != CONN_AUTHED)
			rc = handshake(ctl, c, &in_msg);
		else
			rc = dispatch(ctl, c, &in_msg);
		if (rc < 0)
			return -1;
	}
	if (off) {
		memmove(c->in, c->in + off, c->have - off);
		c->have -= off;
	}
	return 0;
}

static void conn_readable(struct wake_ctl *ctl, int slot)
{
	struct wake_conn *c = ctl->conns[slot];

	for (;;) {
		ssize_t r = recv(c->fd, c->in + c->have, sizeof(c->in) - c->have, 0);

		if (r == 0) {
			conn_close(ctl, slot, "peer closed");
			return;
		}
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				conn_close(ctl, slot, strerror(errno));
			return;
		}
		c->have += (size_t)r;
		if (conn_process(ctl, c) < 0) {
			conn_close(ctl, slot, "protocol error");
			return;
		}
	}
}

static void accept_conns(struct wake_ctl *ctl)
{
	static unsigned int next_id;

	for (;;) {
		int fd = accept4(ctl->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		int slot = -1;

		if (fd < 0)
			return;
		for (int i = 0; i < WAKE_CTL_MAX_CONNS; i++)
			if (!ctl->conns[i]) {
				slot = i;
				break;
			}
		if (slot < 0 || !(ctl->conns[slot] = calloc(1, sizeof(struct wake_conn)))) {
			LOG_WARN("control: connection refused: %d connections already", WAKE_CTL_MAX_CONNS);
			close(fd);
			continue;
		}
		ctl->conns[slot]->fd = fd;
		ctl->conns[slot]->id = ++next_id;
		ctl->conns[slot]->auth_deadline_ns = ferry_mono_ns() + AUTH_DEADLINE_NS;
		WAKE_INC(ctl->sh->ctl.ctl_connections, 1);
		LOG_INFO("control %u: connected", next_id);
	}
}

/* ---------------------------------------------------------------- wake requests */

struct due_wake {
	struct ferry_wake_request wr;
	uint64_t req;
};

/* Send every WAKE_REQUEST that is due; returns ms until the next is due (or -1). */
static int send_due_wakes(struct wake_ctl *ctl)
{
	static struct due_wake due[64];
	struct wake_shared *sh = ctl->sh;
	uint64_t now = ferry_mono_ns(), next = UINT64_MAX;
	int ndue = 0, nauthed = 0;
	uint32_t pos = 0;
	struct wake_vm *vm;

	for (int i = 0; i < WAKE_CTL_MAX_CONNS; i++)
		nauthed += ctl->conns[i] && ctl->conns[i]->state == CONN_AUTHED;

	pthread_mutex_lock(&sh->lock);
	while ((vm = wake_table_next(&sh->table, &pos)) != NULL) {
		if (!vm->wake_wanted || vm->wake_acked || vm->replay_pending)
			continue;
		if (vm->wake_next_ns > now) {
			if (vm->wake_next_ns < next)
				next = vm->wake_next_ns;
			continue;
		}
		if (!nauthed || ndue == (int)(sizeof(due) / sizeof(due[0]))) {
			next = now + 250000000ull;
			continue;
		}
		vm->wake_attempts++;
		vm->wake_req_id = ++ctl->next_req;
		vm->wake_next_ns = now + wake_backoff_ns(vm->wake_attempts);
		if (vm->wake_next_ns < next)
			next = vm->wake_next_ns;
		due[ndue].wr = vm->trigger;
		due[ndue].wr.attempt = vm->wake_attempts;
		due[ndue].req = vm->wake_req_id;
		ndue++;
	}
	pthread_mutex_unlock(&sh->lock);

	if (!nauthed && next != UINT64_MAX && !ctl->warned_no_ferryd) {
		LOG_WARN("a hibernated VM was accessed but no ferryd is connected: wake requests wait");
		ctl->warned_no_ferryd = true;
	}
	for (int k = 0; k < ndue; k++) {
		char src[16], dst[16];
		int n = ferry_wake_encode_wake_request(due[k].req, &due[k].wr, out_buf, sizeof(out_buf));

		fmt_ip(due[k].wr.src_ip, src, sizeof(src));
		fmt_ip(due[k].wr.dst_ip, dst, sizeof(dst));
		if (n < 0) {
			LOG_ERR("vm %s: cannot encode WAKE_REQUEST (%d)", due[k].wr.id, n);
			continue;
		}
		for (int i = 0; i < WAKE_CTL_MAX_CONNS; i++) {
			struct wake_conn *c = ctl->conns[i];

			if (c && c->state == CONN_AUTHED && ferry_send_all(c->fd, out_buf, (size_t)n, SEND_TIMEOUT_MS) < 0)
				conn_close(ctl, i, "send failed");
		}
		WAKE_INC(sh->ctl.wake_requests_sent, 1);
		if (due[k].wr.reason == FERRY_WAKE_REASON_SYN)
			LOG_INFO("vm %s: WAKE_REQUEST #%u (SYN %s:%u -> %s:%u isn %u)", due[k].wr.id, due[k].wr.attempt,
				 src, due[k].wr.src_port, dst, due[k].wr.dst_port, due[k].wr.isn);
		else
			LOG_INFO("vm %s: WAKE_REQUEST #%u (ARP from %s for %s)", due[k].wr.id, due[k].wr.attempt, src, dst);
	}
	if (next == UINT64_MAX)
		return -1;
	now = ferry_mono_ns();
	return next <= now ? 0 : (int)((next - now) / 1000000u) + 1;
}

void wake_ctl_run(struct wake_ctl *ctl)
{
	struct wake_shared *sh = ctl->sh;

	LOG_INFO("control listening on %s", ctl->listen_desc);
	while (!__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE)) {
		struct pollfd pfd[2 + WAKE_CTL_MAX_CONNS];
		int slot_of[2 + WAKE_CTL_MAX_CONNS];
		int nfds = 0, timeout, t;
		uint64_t v;

		timeout = 100;   /* also the bound on noticing sh->stop and auth deadlines */
		for (int i = 0; i < WAKE_CTL_MAX_CONNS; i++) {
			if (ctl->conns[i] && ctl->conns[i]->state != CONN_AUTHED &&
			    ferry_mono_ns() > ctl->conns[i]->auth_deadline_ns) {
				WAKE_INC(sh->ctl.ctl_unauth_refused, 1);
				conn_close(ctl, i, "not authenticated within 5 s");
			}
		}
		t = send_due_wakes(ctl);
		if (t >= 0 && t < timeout)
			timeout = t;
		pfd[nfds].fd = ctl->listen_fd;
		pfd[nfds++].events = POLLIN;
		pfd[nfds].fd = sh->wake_evfd;
		pfd[nfds++].events = POLLIN;
		for (int i = 0; i < WAKE_CTL_MAX_CONNS; i++) {
			if (!ctl->conns[i])
				continue;
			slot_of[nfds] = i;
			pfd[nfds].fd = ctl->conns[i]->fd;
			pfd[nfds++].events = POLLIN;
		}
		if (poll(pfd, (nfds_t)nfds, timeout) <= 0)
			continue;
		if (pfd[1].revents & POLLIN) {
			if (read(sh->wake_evfd, &v, sizeof(v)) < 0) {
				/* EAGAIN: another reader was first; nothing to do */
			}
		}
		for (int k = 2; k < nfds; k++)
			if (pfd[k].revents && ctl->conns[slot_of[k]])
				conn_readable(ctl, slot_of[k]);
		if (pfd[0].revents & POLLIN)
			accept_conns(ctl);
	}
	LOG_INFO("control stopping");
}
