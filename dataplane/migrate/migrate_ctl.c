/*
 * Client of ferry-pager's migration control socket (migrate_ctl.h): one
 * request, one reply, proto/migrate.h control messages over a Unix stream
 * socket, each call bounded by MIG_CTL_TIMEOUT_MS. A call that times out or
 * breaks off mid-message drops the connection and the next call makes a new
 * one: the late reply would otherwise be read as the next call's and every
 * reply after it would be one behind.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/migrate/migrate_ctl.h"
#include "proto/migrate.h"

#define MIG_CTL_TIMEOUT_MS 5000

struct mig_ctl {
	int fd;                 /* -1 after a broken call: reconnect at the next */
	struct sockaddr_un addr;
	socklen_t addr_len;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	uint64_t req;
	uint8_t buf[MIGP_MAX_MSG];
	struct migp_msg m;
};

_Static_assert(MIG_TOKEN_LEN == MIGP_TOKEN_LEN, "token sizes agree");
_Static_assert(MIG_SUBHOSTS_MAX == MIGP_SUBS_MAX, "sub-host limits agree");
_Static_assert(MIG_VM_ID_MAX == MIGP_VM_ID_MAX, "VM id limits agree");

static int ctl_open(struct mig_ctl *c, struct ferry_err *err)
{
	int e;

	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd >= 0 && connect(c->fd, (struct sockaddr *)&c->addr, c->addr_len) == 0)
		return 0;
	e = errno;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	return ferry_err_set(err, e, "migration socket %s: %s", c->path, strerror(e));
}

int mig_ctl_connect(const char *path, struct mig_ctl **out, struct ferry_err *err)
{
	struct mig_ctl *c;
	size_t pl = strlen(path);

	*out = NULL;
	if (pl == 0 || pl >= sizeof(c->addr.sun_path))
		return ferry_err_set(err, EINVAL, "migration socket path \"%s\": empty or too long", path);
	c = calloc(1, sizeof(*c));
	if (!c)
		return ferry_err_set(err, ENOMEM, "out of memory");
	c->addr.sun_family = AF_UNIX;
	memcpy(c->addr.sun_path, path, pl);
	memcpy(c->path, path, pl);
	if (path[0] == '@')
		c->addr.sun_path[0] = '\0';
	c->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + pl + (path[0] == '@' ? 0 : 1));
	if (ctl_open(c, err) < 0) {
		free(c);
		return -1;
	}
	*out = c;
	return 0;
}

void mig_ctl_close(struct mig_ctl *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

static int io(int fd, uint8_t *p, size_t len, bool wr, int64_t deadline_ms)
{
	while (len) {
		struct timespec ts;
		struct pollfd pf = { .fd = fd, .events = wr ? POLLOUT : POLLIN };
		int64_t now;
		ssize_t n;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		now = ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
		if (now >= deadline_ms)
			return -ETIMEDOUT;
		if (poll(&pf, 1, (int)(deadline_ms - now)) <= 0)
			continue;
		n = wr ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int errcode_errno(uint32_t code)
{
	switch (code) {
	case MIG_E_UNKNOWN_VM:
		return ENOENT;
	case MIG_E_EXISTS:
		return EEXIST;
	case MIG_E_BUSY:
		return EBUSY;
	case MIG_E_NO_SPACE:
		return ENOSPC;
	case MIG_E_REFUSED:
	case MIG_E_AUTH_FAILED:
		return EACCES;
	case MIG_E_PEER_LOST:
		return EHOSTUNREACH;
	case MIG_E_BAD_LAYOUT:
	case MIG_E_BAD_VM_ID:
	case MIG_E_BAD_HOST:
		return EINVAL;
	default:
		return EPROTO;
	}
}

/* A call that failed mid-message: the stream is out of step, start a new one at the next call. */
static int broken(struct mig_ctl *c, struct ferry_err *err, int code, const char *what, const char *why)
{
	close(c->fd);
	c->fd = -1;
	return ferry_err_set(err, code, "%s: %s (reconnecting at the next call)", what, why);
}

/* Send the request in c->buf (@p n bytes from an encoder) and decode the reply into c->m. */
static int call(struct mig_ctl *c, int n, uint8_t want, const char *what, struct ferry_err *err)
{
	struct timespec ts;
	int64_t deadline;
	struct migp_hdr h;
	int rc;

	if (n < 0)
		return ferry_err_set(err, EINVAL, "%s: bad arguments (%s)", what, migp_errcode_str((uint32_t)-n));
	if (c->fd < 0 && ctl_open(c, err) < 0)
		return ferry_err_prefix(err, "%s: ", what);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	deadline = ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + MIG_CTL_TIMEOUT_MS;
	if ((rc = io(c->fd, c->buf, (size_t)n, true, deadline)) || (rc = io(c->fd, c->buf, MIGP_HDR_LEN, false, deadline)))
		return broken(c, err, -rc, what, strerror(-rc));
	rc = migp_hdr_decode(c->buf, MIGP_HDR_LEN, &h);
	if (rc)
		return broken(c, err, EPROTO, what, migp_errcode_str((uint32_t)rc));
	if ((rc = io(c->fd, c->buf + MIGP_HDR_LEN, h.payload_len, false, deadline)))
		return broken(c, err, -rc, what, strerror(-rc));
	rc = migp_decode(c->buf, MIGP_HDR_LEN + h.payload_len, &c->m);
	if (rc)
		return ferry_err_set(err, EPROTO, "%s: bad reply: %s", what, migp_errcode_str((uint32_t)rc));
	if (c->m.hdr.type == MIGP_ERROR)
		return ferry_err_set(err, errcode_errno(c->m.u.error.code), "%s: %s", what, c->m.u.error.msg);
	if (c->m.hdr.type != want || c->m.hdr.request_id != c->req)
		return ferry_err_set(err, EPROTO, "%s: unexpected reply %s", what, migp_type_name(c->m.hdr.type));
	return 0;
}

int mig_ctl_prepare_incoming(struct mig_ctl *c, const char *vm_id, uint64_t budget_bytes,
			     const struct mig_subhost *subs, unsigned nsubs, struct mig_endpoint *ep,
			     struct ferry_err *err)
{
	struct migp_prepare p = { .budget_bytes = budget_bytes };
	int rc;

	if (nsubs > MIGP_SUBS_MAX)
		return ferry_err_set(err, EINVAL, "at most %u sub-hosts", MIGP_SUBS_MAX);
	snprintf(p.id, sizeof(p.id), "%s", vm_id);
	p.nsubs = (uint8_t)nsubs;
	for (unsigned i = 0; i < nsubs; i++) {
		snprintf(p.subs[i].host, sizeof(p.subs[i].host), "%s", subs[i].host);
		p.subs[i].port = subs[i].port;
	}
	rc = call(c, migp_encode_prepare(++c->req, &p, c->buf, sizeof(c->buf)), MIGP_PREPARE_OK, "PREPARE", err);
	if (rc)
		return rc;
	memset(ep, 0, sizeof(*ep));
	snprintf(ep->host, sizeof(ep->host), "%s", c->m.u.prepare_ok.ep.host);
	ep->port = c->m.u.prepare_ok.ep.port;
	memcpy(ep->token, c->m.u.prepare_ok.token, MIG_TOKEN_LEN);
	return 0;
}

int mig_ctl_start(struct mig_ctl *c, const char *vm_id, const struct mig_endpoint *dest, enum mig_mode mode,
		  struct ferry_err *err)
{
	struct migp_start s = { .mode = (uint8_t)mode };

	snprintf(s.id, sizeof(s.id), "%s", vm_id);
	snprintf(s.dest.host, sizeof(s.dest.host), "%s", dest->host);
	s.dest.port = dest->port;
	memcpy(s.token, dest->token, MIG_TOKEN_LEN);
	return call(c, migp_encode_start(++c->req, &s, c->buf, sizeof(c->buf)), MIGP_OK, "START", err);
}

int mig_ctl_status(struct mig_ctl *c, const char *vm_id, struct mig_progress *p, struct ferry_err *err)
{
	const struct migp_status_ok *so;
	int rc;

	memset(p, 0, sizeof(*p));
	rc = call(c, migp_encode_status(++c->req, vm_id, c->buf, sizeof(c->buf)), MIGP_STATUS_OK, "STATUS", err);
	if (rc)
		return rc;
	so = &c->m.u.status_ok;
	p->phase = (enum mig_phase)so->phase;
	p->round = so->round;
	p->pages_total = so->pages_total;
	p->pages_sent = so->pages_sent;
	p->pages_skipped_unused = so->pages_skipped_unused;
	p->pages_remaining = so->pages_remaining;
	p->pages_resent = so->pages_resent;
	p->pages_to_subhosts = so->pages_to_subhosts;
	p->bytes_sent = so->bytes_sent;
	p->postcopy_faults = so->postcopy_faults;
	p->started_ns = so->started_ns;
	p->downtime_ns = so->downtime_ns;
	p->total_ns = so->total_ns;
	p->generation = so->generation;
	snprintf(p->error, sizeof(p->error), "%s", so->error);
	return 0;
}

int mig_ctl_abort(struct mig_ctl *c, const char *vm_id, struct ferry_err *err)
{
	return call(c, migp_encode_abort(++c->req, vm_id, c->buf, sizeof(c->buf)), MIGP_OK, "ABORT", err);
}

static const char *const mode_names[] = {
	[MIG_MODE_PRECOPY] = "precopy", [MIG_MODE_POSTCOPY] = "postcopy",
	[MIG_MODE_PLANNED] = "planned", [MIG_MODE_FULL] = "full",
};
static const char *const phase_names[] = {
	[MIG_PH_IDLE] = "idle",       [MIG_PH_SETUP] = "setup",   [MIG_PH_PRECOPY] = "precopy",
	[MIG_PH_STOP] = "stop",       [MIG_PH_SWITCHOVER] = "switchover", [MIG_PH_POSTCOPY] = "postcopy",
	[MIG_PH_DONE] = "done",       [MIG_PH_FAILED] = "failed", [MIG_PH_ABORTED] = "aborted",
};

const char *mig_mode_name(enum mig_mode m)
{
	return (unsigned)m < sizeof(mode_names) / sizeof(mode_names[0]) && mode_names[m] ? mode_names[m] : "?";
}

const char *mig_phase_name(enum mig_phase p)
{
	return (unsigned)p < sizeof(phase_names) / sizeof(phase_names[0]) ? phase_names[p] : "?";
}

int mig_mode_parse(const char *s, enum mig_mode *m)
{
	for (unsigned i = 1; i < sizeof(mode_names) / sizeof(mode_names[0]); i++)
		if (mode_names[i] && strcmp(s, mode_names[i]) == 0) {
			*m = (enum mig_mode)i;
			return 0;
		}
	return -EINVAL;
}
