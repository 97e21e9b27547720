/*
 * libferry-vmm: the VMM side of the VMM socket protocol (ferry_vmm.h),
 * built on the pure codec (proto/vmm.h) and the socket plumbing (vmm_io.h).
 *
 * One request at a time: encode, send (descriptors attached to the first
 * byte), read exactly one reply, check that it answers this request, map an
 * ERROR reply to a negative errno. Any failure that may have left the stream
 * out of step (timeout, short read, bad reply) breaks the connection.
 *
 * Server requests (F_SERVER) may arrive at any time, also while we wait for
 * a reply: they are copied into a small queue and handed out by
 * ferry_vmm_next_request(); those of unknown types are answered
 * ERROR(UNSUPPORTED) on the spot.
 */
#include "dataplane/vmm/ferry_vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <poll.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <endian.h>
#include <unistd.h>

#include "dataplane/vmm/vmm_io.h"
#include "proto/vmm.h"

/* Control requests are small; FREE_HINT with 4096 ranges is the largest. */
#define TX_CAP (FERRY_VMMP_HDR_LEN + 8u + FERRY_VMMP_MAX_HINTS * FERRY_VMMP_HINT_LEN)
/* Server requests read while waiting for replies; a pager sends one or two at a time. */
#define SRQ_MAX 32u

/* What DROP_PTES needs to know about a registered region. */
struct reg_region {
	uint64_t gpa, size, hva;
	bool file;
};

struct ferry_vmm_conn {
	int fd;
	int timeout_ms;
	uint64_t next_req;
	bool broken;
	bool registered;
	uint32_t remote_code;
	struct ferry_vmm_info info;
	char msg[FERRY_ERR_MSG_MAX];
	char broken_msg[FERRY_ERR_MSG_MAX];
	uint8_t *rx;                   /* FERRY_VMMP_MAX_MSG bytes */
	uint8_t tx[TX_CAP];
	struct ferry_vmmp_msg reply;
	/* server requests */
	uint8_t *srq[SRQ_MAX];         /* queued raw messages, oldest at srq_head */
	unsigned int srq_head, srq_count;
	struct ferry_vmmp_msg req_msg; /* the last one handed out */
	struct ferry_vmm_range *req_ranges; /* FERRY_VMMP_MAX_DROP, for DROP_PTES */
	struct reg_region regions[FERRY_VMM_MAX_REGIONS];
	unsigned int nregions;
};

/* ---------------------------------------------------------------- errors */

__attribute__((format(printf, 3, 4)))
static int fail(struct ferry_vmm_conn *c, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
	va_end(ap);
	c->remote_code = 0;
	return err > 0 ? -err : err;
}

/* A failure after which the byte stream cannot be trusted. */
__attribute__((format(printf, 3, 4)))
static int broke(struct ferry_vmm_conn *c, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
	va_end(ap);
	c->remote_code = 0;
	c->broken = true;
	memcpy(c->broken_msg, c->msg, sizeof(c->msg));
	return err > 0 ? -err : err;
}

static void ok(struct ferry_vmm_conn *c)
{
	c->msg[0] = '\0';
	c->remote_code = 0;
}

/* The errno a VMM sees for each protocol code. */
static int code_errno(uint32_t code)
{
	switch (code) {
	case FERRY_VMMP_E_VERSION:
		return EPROTONOSUPPORT;
	case FERRY_VMMP_E_TOO_LARGE:
		return E2BIG;
	case FERRY_VMMP_E_NOT_ALLOWED:
		return EACCES;
	case FERRY_VMMP_E_BAD_ALIGNMENT:
	case FERRY_VMMP_E_PAGE_SIZE:
	case FERRY_VMMP_E_OVERLAP:
	case FERRY_VMMP_E_BAD_VM_ID:
	case FERRY_VMMP_E_FD_MISMATCH:
	case FERRY_VMMP_E_BAD_FLAGS:
		return EINVAL;
	case FERRY_VMMP_E_UNEXPECTED:
		return EPROTO;
	case FERRY_VMMP_E_EXISTS:
		return EEXIST;
	case FERRY_VMMP_E_OUT_OF_RANGE:
		return ERANGE;
	case FERRY_VMMP_E_NO_STATE:
		return ENOENT;
	case FERRY_VMMP_E_STATE_SEQUENCE:
		return EILSEQ;
	case FERRY_VMMP_E_BUSY:
		return EBUSY;
	case FERRY_VMMP_E_INTERNAL:
		return EIO;
	case FERRY_VMMP_E_SHUTDOWN:
		return ESHUTDOWN;
	case FERRY_VMMP_E_UNSUPPORTED:
		return EOPNOTSUPP;
	default:
		return EPROTO; /* TRUNCATED, BAD_MAGIC, MALFORMED, ...: our message was bad */
	}
}

/* ---------------------------------------------------------------- connection */

static struct ferry_vmm_conn *conn_new(int fd)
{
	struct ferry_vmm_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->rx = malloc(FERRY_VMMP_MAX_MSG);
	if (!c->rx) {
		free(c);
		return NULL;
	}
	c->fd = fd;
	c->timeout_ms = FERRY_VMM_DEFAULT_TIMEOUT_MS;
	c->next_req = 1;
	return c;
}

struct ferry_vmm_conn *ferry_vmm_attach(int sock)
{
	struct ferry_vmm_conn *c;
	int type = 0, fl;
	socklen_t len = sizeof(type);
	struct sockaddr_storage ss;
	socklen_t slen = sizeof(ss);

	if (sock < 0) {
		errno = EBADF;
		return NULL;
	}
	if (getsockopt(sock, SOL_SOCKET, SO_TYPE, &type, &len) < 0 ||
	    getsockname(sock, (struct sockaddr *)&ss, &slen) < 0)
		goto fail;
	if (type != SOCK_STREAM || ss.ss_family != AF_UNIX) {
		errno = EPROTOTYPE;
		goto fail;
	}
	fl = fcntl(sock, F_GETFL);
	if (fl < 0 || fcntl(sock, F_SETFL, fl | O_NONBLOCK) < 0)
		goto fail;
	c = conn_new(sock);
	if (!c)
		goto fail;
	return c;
fail:
	{
		int e = errno;

		close(sock);
		errno = e;
	}
	return NULL;
}

struct ferry_vmm_conn *ferry_vmm_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = FERRY_VMM_DEFAULT_TIMEOUT_MS / 1000,
			      .tv_usec = (FERRY_VMM_DEFAULT_TIMEOUT_MS % 1000) * 1000 };
	socklen_t salen;
	size_t len;
	int fd, e;

	if (!path || !path[0]) {
		errno = EINVAL;
		return NULL;
	}
	len = strlen(path);
	if (len >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		return NULL;
	}
	memcpy(sa.sun_path, path, len);
	if (path[0] == '@') /* abstract namespace: no trailing NUL in the address */
		sa.sun_path[0] = '\0';
	else
		len++;
	salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	/* A blocking connect, bounded: Unix connect honours SO_SNDTIMEO when the backlog is full. */
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		goto fail;
	while (connect(fd, (struct sockaddr *)&sa, salen) < 0) {
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EINPROGRESS)
			errno = ETIMEDOUT;
		goto fail;
	}
	return ferry_vmm_attach(fd);
fail:
	e = errno;
	close(fd);
	errno = e;
	return NULL;
}

int ferry_vmm_set_timeout(struct ferry_vmm_conn *conn, int timeout_ms)
{
	if (!conn || timeout_ms < -1)
		return -EINVAL;
	conn->timeout_ms = timeout_ms;
	return 0;
}

int ferry_vmm_fd(const struct ferry_vmm_conn *conn)
{
	return conn ? conn->fd : -1;
}

void ferry_vmm_close(struct ferry_vmm_conn *conn)
{
	if (!conn)
		return;
	if (conn->fd >= 0)
		close(conn->fd);
	for (unsigned int i = 0; i < conn->srq_count; i++)
		free(conn->srq[(conn->srq_head + i) % SRQ_MAX]);
	free(conn->req_ranges);
	free(conn->rx);
	free(conn);
}

const char *ferry_vmm_errmsg(const struct ferry_vmm_conn *conn)
{
	return conn ? conn->msg : "no connection";
}

uint32_t ferry_vmm_remote_code(const struct ferry_vmm_conn *conn)
{
	return conn ? conn->remote_code : 0;
}

int ferry_vmm_server_info(const struct ferry_vmm_conn *conn, struct ferry_vmm_info *info)
{
	if (!conn || !info)
		return -EINVAL;
	if (!conn->registered)
		return -ENOTCONN;
	*info = conn->info;
	return 0;
}

/* ---------------------------------------------------------------- one exchange */

static const char *io_what(int rc)
{
	switch (rc) {
	case -ETIMEDOUT:
		return "timed out";
	case -ENODATA:
		return "pager closed the connection";
	case -ECONNRESET:
		return "pager closed the connection mid-message";
	case -EPIPE:
		return "pager closed the connection";
	case -EMSGSIZE:
		return "pager sent file descriptors";
	default:
		return strerror(-rc);
	}
}

/* Send an already encoded answer to a server request (F_SERVER set here). */
static int send_server_reply(struct ferry_vmm_conn *c, uint8_t *buf, int len, const char *what)
{
	struct iovec iov;
	int rc;

	if (len < 0)
		return fail(c, EINVAL, "%s: encoding the answer: %s", what, ferry_vmmp_errcode_str((uint32_t)-len));
	if (ferry_vmmp_mark_server_reply(buf, (size_t)len) < 0)
		return fail(c, EINVAL, "%s: not a reply", what);
	iov.iov_base = buf;
	iov.iov_len = (size_t)len;
	rc = ferry_vmm_io_send(c->fd, &iov, 1, NULL, 0, ferry_vmm_io_deadline(c->timeout_ms));
	if (rc < 0)
		return broke(c, rc == -ECONNRESET ? EPIPE : -rc, "%s: sending the answer: %s", what, io_what(rc));
	return 0;
}

static int answer_error(struct ferry_vmm_conn *c, uint64_t id, uint32_t code, const char *msg)
{
	uint8_t b[FERRY_VMMP_HDR_LEN + 6 + FERRY_VMMP_ERRMSG_MAX];

	return send_server_reply(c, b, ferry_vmmp_encode_error(id, code, msg, b, sizeof(b)), "ERROR");
}

/*
 * A server request of @len bytes in c->rx (@code from the header check):
 * queue it, or answer it at once when it cannot be served (unknown type,
 * invalid body). A NOTICE that does not decode is dropped: notices have no
 * answer. @return 0 or a negative errno (connection broken).
 */
static int server_msg(struct ferry_vmm_conn *c, size_t len, int code)
{
	struct ferry_vmmp_msg *m = &c->req_msg; /* scratch: only the code matters here */
	uint64_t id = 0;
	uint8_t *copy;

	memcpy(&id, c->rx + 8, 8);
	id = le64toh(id);
	if (code == FERRY_VMMP_E_UNSUPPORTED)
		return answer_error(c, id, FERRY_VMMP_E_UNSUPPORTED, "server request type not supported by this VMM");
	code = ferry_vmmp_decode(c->rx, len, 0, m);
	if (code != FERRY_VMMP_E_OK) {
		if (c->rx[5] == FERRY_VMMP_NOTICE)
			return 0;
		return answer_error(c, id, (uint32_t)code, "invalid server request");
	}
	if (c->srq_count == SRQ_MAX)
		return broke(c, EPROTO, "more than %u server requests unanswered", SRQ_MAX);
	copy = malloc(len);
	if (!copy)
		return answer_error(c, id, FERRY_VMMP_E_BUSY, "VMM out of memory");
	memcpy(copy, c->rx, len);
	c->srq[(c->srq_head + c->srq_count) % SRQ_MAX] = copy;
	c->srq_count++;
	return 0;
}

/*
 * Send request @iov (its header says @type) with @fds, read the reply into
 * conn->reply and check it answers the request with @want_type or ERROR.
 * @return 0, or a negative errno (message set).
 */
static int exchange(struct ferry_vmm_conn *c, uint8_t type, const struct iovec *iov, int iovcnt, const int *fds,
		    unsigned int nfds, uint8_t want_type)
{
	const char *name = ferry_vmmp_type_name(type);
	uint64_t req = c->next_req - 1; /* the caller encoded with next_req++ */
	int64_t deadline;
	unsigned int got_fds = 0;
	int code, rc;
	ssize_t n;

	deadline = ferry_vmm_io_deadline(c->timeout_ms);
	rc = ferry_vmm_io_send(c->fd, iov, iovcnt, fds, nfds, deadline);
	if (rc < 0) {
		int e = rc == -ECONNRESET ? EPIPE : -rc;

		return broke(c, e, "%s: sending: %s", name, io_what(rc));
	}
again:
	n = ferry_vmm_io_recv_msg(c->fd, c->rx, FERRY_VMMP_MAX_MSG, NULL, &got_fds, 0, deadline, &code);
	if (n > 0 && (c->rx[6] & FERRY_VMMP_F_SERVER) && !(c->rx[6] & FERRY_VMMP_F_REPLY)) {
		rc = server_msg(c, (size_t)n, code);
		if (rc < 0)
			return rc;
		goto again;
	}
	if (n == -EBADMSG)
		return broke(c, EPROTO, "%s: bad reply header: %s", name, ferry_vmmp_errcode_str((uint32_t)code));
	if (n < 0) {
		int e = (int)-n;

		if (n == -EMSGSIZE)
			e = EPROTO;
		else if (n == -ENODATA)
			e = ECONNRESET;

		return broke(c, e, "%s: waiting for the reply: %s", name, io_what((int)n));
	}
	code = ferry_vmmp_decode(c->rx, (size_t)n, 0, &c->reply);
	if (code != FERRY_VMMP_E_OK)
		return broke(c, EPROTO, "%s: bad %s reply: %s", name, ferry_vmmp_type_name(c->rx[5]),
			     ferry_vmmp_errcode_str((uint32_t)code));
	if (c->reply.hdr.flags & FERRY_VMMP_F_SERVER)
		return broke(c, EPROTO, "%s: the pager answered a server request", name);
	if (c->reply.hdr.request_id != req)
		return broke(c, EPROTO, "%s: reply to request %llu, expected %llu", name,
			     (unsigned long long)c->reply.hdr.request_id, (unsigned long long)req);
	if (c->reply.hdr.type == FERRY_VMMP_ERROR) {
		const struct ferry_vmmp_error *e = &c->reply.u.error;
		int err = code_errno(e->code);

		snprintf(c->msg, sizeof(c->msg), "%s refused: %s%s%.180s", name, ferry_vmmp_errcode_str(e->code),
			 e->msg_len ? ": " : "", e->msg);
		c->remote_code = e->code;
		/* A server that cannot read our stream any more closes it; so do we. */
		if (e->code == FERRY_VMMP_E_NOT_ALLOWED || e->code == FERRY_VMMP_E_VERSION ||
		    e->code == FERRY_VMMP_E_SHUTDOWN) {
			c->broken = true;
			memcpy(c->broken_msg, c->msg, sizeof(c->msg));
		}
		return -err;
	}
	if (c->reply.hdr.type != want_type)
		return broke(c, EPROTO, "%s: unexpected %s reply", name, ferry_vmmp_type_name(c->reply.hdr.type));
	ok(c);
	return 0;
}

/* Common entry checks; @return 0 or a negative errno. */
static int usable(struct ferry_vmm_conn *c)
{
	if (!c)
		return -EINVAL;
	if (c->broken) {
		snprintf(c->msg, sizeof(c->msg), "connection broken: %.200s", c->broken_msg);
		c->remote_code = 0;
		return -ENOTCONN;
	}
	return 0;
}

/* Encoder result -> errno with a message. */
static int encode_failed(struct ferry_vmm_conn *c, const char *what, int rc)
{
	return fail(c, EINVAL, "%s: %s", what, ferry_vmmp_errcode_str((uint32_t)-rc));
}

static int simple(struct ferry_vmm_conn *c, uint8_t type, int len)
{
	struct iovec iov = { .iov_base = c->tx, .iov_len = (size_t)len };

	return exchange(c, type, &iov, 1, NULL, 0, FERRY_VMMP_OK);
}

/* ---------------------------------------------------------------- register */

/* Read the enabled features of a uffd from /proc/self/fdinfo: "API:\t<api>:<features>:<ioctls>". */
int ferry_vmm_uffd_features(int uffd, uint64_t *features)
{
	char path[64], line[256];
	FILE *f;
	int rc = -ENOENT;

	if (uffd < 0 || !features)
		return -EINVAL;
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", uffd);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long api, feat;

		if (sscanf(line, "API:\t%llx:%llx:", &api, &feat) == 2) {
			/* Bit 31 is the kernel's private "initialized" marker, not a feature. */
			*features = feat & 0x7fffffffull;
			rc = 0;
			break;
		}
	}
	fclose(f);
	return rc;
}

/* Say which region breaks which rule, as the pager would. */
static int explain_register(struct ferry_vmm_conn *c, const struct ferry_vmmp_register *reg, int rc)
{
	struct ferry_vmmp_register one; /* only its first region is used */

	if (rc == FERRY_VMMP_E_BAD_VM_ID)
		return fail(c, EINVAL, "REGISTER: the VM id must be printable ASCII without blanks");
	for (uint16_t i = 0; i < reg->region_count; i++) {
		const struct ferry_vmmp_region *r = &reg->regions[i];
		int r1;

		memset(&one, 0, sizeof(one));
		one.vm_id[0] = 'x';
		one.region_count = 1;
		one.regions[0] = *r;
		one.regions[0].fd_slot = r->fd_slot ? 1 : 0;
		one.fd_count = r->fd_slot ? 2 : 1;
		r1 = ferry_vmmp_register_check(&one);
		if (r1 != FERRY_VMMP_E_OK)
			return fail(c, EINVAL, "REGISTER: region %u (gpa 0x%llx, size 0x%llx, page size %u): %s", i,
				    (unsigned long long)r->gpa, (unsigned long long)r->size, r->page_size,
				    ferry_vmmp_errcode_str((uint32_t)r1));
	}
	return fail(c, EINVAL, "REGISTER: %s", ferry_vmmp_errcode_str((uint32_t)rc));
}

static int do_register(struct ferry_vmm_conn *c, const char *vm_id, const struct ferry_vmm_region *regions,
		       unsigned int n, int uffd, int memfd, bool per_region, const struct ferry_vmm_reg_opts *opts)
{
	static const char *const what = "REGISTER";
	struct ferry_vmmp_register reg;
	int fds[FERRY_VMMP_MAX_FDS];
	unsigned int nfds = 1;
	uint64_t feat = 0;
	size_t id_len;
	int len, rc;

	rc = usable(c);
	if (rc < 0)
		return rc;
	if (!vm_id || !regions || n == 0)
		return fail(c, EINVAL, "%s: need a VM id and at least one region", what);
	if (n > FERRY_VMM_MAX_REGIONS)
		return fail(c, EINVAL, "%s: %u regions, at most %d", what, n, FERRY_VMM_MAX_REGIONS);
	id_len = strnlen(vm_id, FERRY_VMM_VM_ID_MAX + 1);
	if (id_len == 0 || id_len > FERRY_VMM_VM_ID_MAX)
		return fail(c, EINVAL, "%s: VM id must be 1..%d bytes", what, FERRY_VMM_VM_ID_MAX);
	if (uffd < 0 || fcntl(uffd, F_GETFD) < 0)
		return fail(c, EBADF, "%s: userfaultfd %d is not an open descriptor", what, uffd);
	if (memfd >= 0 && fcntl(memfd, F_GETFD) < 0)
		return fail(c, EBADF, "%s: memory fd %d is not an open descriptor", what, memfd);
	/* Informational for the pager; a uffd we cannot inspect reports none. */
	(void)ferry_vmm_uffd_features(uffd, &feat);

	memset(&reg, 0, sizeof(reg));
	memcpy(reg.vm_id, vm_id, id_len);
	reg.vm_id_len = (uint8_t)id_len;
	reg.uffd_features = feat;
	reg.region_count = (uint16_t)n;
	if (opts) {
		if (opts->flags & ~(FERRY_VMM_REG_SERVER_REQUESTS | FERRY_VMM_REG_INCOMING))
			return fail(c, EINVAL, "%s: unknown option flags 0x%x", what, opts->flags);
		if (opts->flags & FERRY_VMM_REG_SERVER_REQUESTS)
			reg.flags |= FERRY_VMMP_REG_F_SERVER_REQ;
		if (opts->flags & FERRY_VMM_REG_INCOMING) {
			if (opts->migration_id == 0)
				return fail(c, EINVAL, "%s: an incoming VM needs a migration id (not 0)", what);
			reg.flags |= FERRY_VMMP_REG_F_SERVER_REQ | FERRY_VMMP_REG_F_INCOMING;
			reg.migration_id = opts->migration_id;
		}
	}
	fds[0] = uffd;
	if (!per_region && memfd >= 0)
		fds[nfds++] = memfd;
	for (unsigned int i = 0; i < n; i++) {
		const struct ferry_vmm_region *r = &regions[i];
		struct ferry_vmmp_region *g = &reg.regions[i];
		int mfd = per_region ? r->mem_fd : memfd;

		g->gpa = r->gpa;
		g->size = r->size;
		g->hva = r->hva;
		g->offset = r->offset;
		g->page_size = r->page_size ? r->page_size : FERRY_VMMP_PAGE_4K;
		if (r->modes > 0xff)
			return fail(c, EINVAL, "%s: region %u: unknown mode bits 0x%x", what, i, r->modes);
		g->modes = (uint8_t)(r->modes ? r->modes : FERRY_VMMP_MODE_MISSING);
		g->fd_slot = 0;
		if (mfd < 0)
			continue;
		if (!per_region) {
			g->fd_slot = 1;
			continue;
		}
		/* One slot per distinct descriptor, in order of first use. */
		for (unsigned int k = 1; k < nfds; k++)
			if (fds[k] == mfd)
				g->fd_slot = (uint8_t)k;
		if (g->fd_slot)
			continue;
		if (nfds == FERRY_VMMP_MAX_FDS)
			return fail(c, EINVAL, "%s: more than %d distinct memory files", what, FERRY_VMM_MAX_MEMFDS);
		if (fcntl(mfd, F_GETFD) < 0)
			return fail(c, EBADF, "%s: region %u: memory fd %d is not an open descriptor", what, i, mfd);
		g->fd_slot = (uint8_t)nfds;
		fds[nfds++] = mfd;
	}
	reg.fd_count = (uint8_t)nfds;

	rc = ferry_vmmp_register_check(&reg);
	if (rc != FERRY_VMMP_E_OK)
		return explain_register(c, &reg, rc);
	len = ferry_vmmp_encode_register(c->next_req++, &reg, c->tx, sizeof(c->tx));
	if (len < 0)
		return encode_failed(c, what, len);
	{
		struct iovec iov = { .iov_base = c->tx, .iov_len = (size_t)len };

		rc = exchange(c, FERRY_VMMP_REGISTER, &iov, 1, fds, nfds, FERRY_VMMP_REGISTER_OK);
	}
	if (rc < 0)
		return rc;
	c->registered = true;
	c->nregions = n;
	for (unsigned int i = 0; i < n; i++) {
		c->regions[i].gpa = reg.regions[i].gpa;
		c->regions[i].size = reg.regions[i].size;
		c->regions[i].hva = reg.regions[i].hva;
		c->regions[i].file = reg.regions[i].fd_slot != 0;
	}
	c->info.vm_handle = c->reply.u.reg_ok.vm_handle;
	c->info.server_features = c->reply.u.reg_ok.server_features;
	c->info.max_chunk = c->reply.u.reg_ok.max_chunk;
	return 0;
}

int ferry_vmm_register(struct ferry_vmm_conn *conn, const char *vm_id, const struct ferry_vmm_region *regions,
		       unsigned int n, int uffd, int memfd)
{
	return do_register(conn, vm_id, regions, n, uffd, memfd, false, NULL);
}

int ferry_vmm_register_ex(struct ferry_vmm_conn *conn, const char *vm_id, const struct ferry_vmm_region *regions,
			  unsigned int n, int uffd)
{
	return do_register(conn, vm_id, regions, n, uffd, -1, true, NULL);
}

int ferry_vmm_register_opts(struct ferry_vmm_conn *conn, const char *vm_id, const struct ferry_vmm_region *regions,
			    unsigned int n, int uffd, int memfd, const struct ferry_vmm_reg_opts *opts)
{
	return do_register(conn, vm_id, regions, n, uffd, memfd, memfd < 0, opts);
}

/* ---------------------------------------------------------------- hints, notices */

static int send_hints(struct ferry_vmm_conn *c, const struct ferry_vmmp_range *r, uint32_t n)
{
	int len = ferry_vmmp_encode_free_hint(c->next_req++, r, n, c->tx, sizeof(c->tx));

	if (len < 0)
		return encode_failed(c, "FREE_HINT", len);
	return simple(c, FERRY_VMMP_FREE_HINT, len);
}

static int check_range(struct ferry_vmm_conn *c, uint64_t gpa, uint64_t len)
{
	if (len == 0)
		return fail(c, EINVAL, "FREE_HINT: empty range at 0x%llx", (unsigned long long)gpa);
	if ((gpa | len) & (FERRY_VMMP_HINT_UNIT - 1))
		return fail(c, EINVAL, "FREE_HINT: [0x%llx, +0x%llx) is not 4 KiB aligned",
			    (unsigned long long)gpa, (unsigned long long)len);
	if (len > FERRY_VMMP_GPA_LIMIT || gpa > FERRY_VMMP_GPA_LIMIT - len)
		return fail(c, EINVAL, "FREE_HINT: [0x%llx, +0x%llx) beyond the guest-physical address space",
			    (unsigned long long)gpa, (unsigned long long)len);
	return 0;
}

int ferry_vmm_free_hint(struct ferry_vmm_conn *conn, uint64_t gpa, uint64_t len)
{
	struct ferry_vmmp_range r = { .gpa = gpa, .len = len };
	int rc = usable(conn);

	if (rc < 0)
		return rc;
	rc = check_range(conn, gpa, len);
	if (rc < 0)
		return rc;
	return send_hints(conn, &r, 1);
}

static int range_cmp(const void *a, const void *b)
{
	const struct ferry_vmmp_range *x = a, *y = b;

	return x->gpa < y->gpa ? -1 : x->gpa > y->gpa;
}

int ferry_vmm_free_hints(struct ferry_vmm_conn *conn, const struct ferry_vmm_range *ranges, size_t n)
{
	struct ferry_vmmp_range *v;
	size_t m = 0;
	int rc = usable(conn);

	if (rc < 0)
		return rc;
	if (n == 0)
		return 0;
	if (!ranges)
		return fail(conn, EINVAL, "FREE_HINT: no ranges");
	if (n > SIZE_MAX / sizeof(*v))
		return fail(conn, ENOMEM, "FREE_HINT: %zu ranges", n);
	v = malloc(n * sizeof(*v));
	if (!v)
		return fail(conn, ENOMEM, "FREE_HINT: no memory for %zu ranges", n);
	for (size_t i = 0; i < n; i++) {
		rc = check_range(conn, ranges[i].gpa, ranges[i].len);
		if (rc < 0)
			goto out;
		v[i].gpa = ranges[i].gpa;
		v[i].len = ranges[i].len;
	}
	qsort(v, n, sizeof(*v), range_cmp);
	/* Merge overlapping and touching ranges: the wire wants them ascending and disjoint. */
	for (size_t i = 0; i < n; i++) {
		if (m && v[i].gpa <= v[m - 1].gpa + v[m - 1].len) {
			uint64_t end = v[i].gpa + v[i].len;

			if (end > v[m - 1].gpa + v[m - 1].len)
				v[m - 1].len = end - v[m - 1].gpa;
		} else {
			v[m++] = v[i];
		}
	}
	for (size_t i = 0; i < m; i += FERRY_VMMP_MAX_HINTS) {
		size_t k = m - i < FERRY_VMMP_MAX_HINTS ? m - i : FERRY_VMMP_MAX_HINTS;

		rc = send_hints(conn, v + i, (uint32_t)k);
		if (rc < 0)
			goto out;
	}
	rc = 0;
out:
	free(v);
	return rc;
}

int ferry_vmm_notify(struct ferry_vmm_conn *conn, int event)
{
	int len, rc = usable(conn);

	if (rc < 0)
		return rc;
	if (event != FERRY_VMM_SUSPEND && event != FERRY_VMM_RESUME)
		return fail(conn, EINVAL, "NOTIFY: unknown event %d", event);
	len = ferry_vmmp_encode_notify(conn->next_req++, (uint32_t)event, conn->tx, sizeof(conn->tx));
	if (len < 0)
		return encode_failed(conn, "NOTIFY", len);
	return simple(conn, FERRY_VMMP_NOTIFY, len);
}

int ferry_vmm_unregister(struct ferry_vmm_conn *conn)
{
	int len, rc = usable(conn);

	if (rc < 0)
		return rc;
	len = ferry_vmmp_encode_unregister(conn->next_req++, conn->tx, sizeof(conn->tx));
	if (len < 0)
		return encode_failed(conn, "UNREGISTER", len);
	rc = simple(conn, FERRY_VMMP_UNREGISTER, len);
	if (rc == 0)
		conn->registered = false;
	return rc;
}

/* ---------------------------------------------------------------- device state */

static uint32_t chunk_size(const struct ferry_vmm_conn *c)
{
	uint32_t m = c->registered ? c->info.max_chunk : FERRY_VMMP_MAX_CHUNK;

	return m && m <= FERRY_VMMP_MAX_CHUNK ? m : FERRY_VMMP_MAX_CHUNK;
}

int ferry_vmm_put_state(struct ferry_vmm_conn *conn, const void *blob, size_t len)
{
	uint64_t off = 0;
	int rc = usable(conn);

	if (rc < 0)
		return rc;
	if (len && !blob)
		return fail(conn, EINVAL, "STATE_PUT: no blob");
	if (len > FERRY_VMMP_STATE_MAX)
		return fail(conn, E2BIG, "STATE_PUT: %zu bytes, at most %llu", len,
			    (unsigned long long)FERRY_VMMP_STATE_MAX);
	do {
		uint32_t n = (uint32_t)(len - off < chunk_size(conn) ? len - off : chunk_size(conn));
		int plen = ferry_vmmp_encode_state_prefix(FERRY_VMMP_STATE_PUT, conn->next_req++, len, off, n,
							  conn->tx, sizeof(conn->tx));
		struct iovec iov[2] = {
			{ .iov_base = conn->tx, .iov_len = plen > 0 ? (size_t)plen : 0 },
			{ .iov_base = n ? (void *)((const uint8_t *)blob + off) : NULL, .iov_len = n },
		};

		if (plen < 0)
			return encode_failed(conn, "STATE_PUT", plen);
		rc = exchange(conn, FERRY_VMMP_STATE_PUT, iov, n ? 2 : 1, NULL, 0, FERRY_VMMP_OK);
		if (rc < 0)
			return rc;
		off += n;
		if (conn->reply.u.ok.value != off)
			return broke(conn, EPROTO, "STATE_PUT: pager holds %llu bytes, sent %llu",
				     (unsigned long long)conn->reply.u.ok.value, (unsigned long long)off);
	} while (off < len);
	return 0;
}

int ferry_vmm_get_state(struct ferry_vmm_conn *conn, void **blob, size_t *len)
{
	uint8_t *out = NULL;
	uint64_t off = 0, total = 0;
	int rc = usable(conn);

	if (rc < 0)
		return rc;
	if (!blob || !len)
		return fail(conn, EINVAL, "STATE_GET: nowhere to put the blob");
	*blob = NULL;
	*len = 0;
	do {
		const struct ferry_vmmp_state *st = &conn->reply.u.state;
		int plen = ferry_vmmp_encode_state_get(conn->next_req++, off, chunk_size(conn), conn->tx,
						       sizeof(conn->tx));
		struct iovec iov = { .iov_base = conn->tx, .iov_len = plen > 0 ? (size_t)plen : 0 };

		if (plen < 0) {
			free(out);
			return encode_failed(conn, "STATE_GET", plen);
		}
		rc = exchange(conn, FERRY_VMMP_STATE_GET, &iov, 1, NULL, 0, FERRY_VMMP_STATE_DATA);
		if (rc < 0) {
			free(out);
			return rc;
		}
		if (st->offset != off || (off > 0 && st->total_len != total) ||
		    (st->data_len == 0 && off != st->total_len)) {
			free(out);
			return broke(conn, EPROTO, "STATE_GET: pager sent [%llu, +%u) of %llu, asked for %llu",
				     (unsigned long long)st->offset, st->data_len,
				     (unsigned long long)st->total_len, (unsigned long long)off);
		}
		if (off == 0) {
			total = st->total_len;
			if (total) {
				out = malloc(total);
				if (!out)
					return fail(conn, ENOMEM, "STATE_GET: no memory for %llu bytes",
						    (unsigned long long)total);
			}
		}
		if (st->data_len)
			memcpy(out + off, st->data, st->data_len);
		off += st->data_len;
	} while (off < total);
	*blob = out;
	*len = (size_t)total;
	return 0;
}

/* ---------------------------------------------------------------- stats */

int ferry_vmm_stats(struct ferry_vmm_conn *conn, struct ferry_vmm_stat *stats, unsigned int cap)
{
	struct iovec iov;
	int len, rc = usable(conn);

	if (rc < 0)
		return rc;
	if (cap && !stats)
		return fail(conn, EINVAL, "STATS: nowhere to put them");
	len = ferry_vmmp_encode_stats(conn->next_req++, conn->tx, sizeof(conn->tx));
	if (len < 0)
		return encode_failed(conn, "STATS", len);
	iov.iov_base = conn->tx;
	iov.iov_len = (size_t)len;
	rc = exchange(conn, FERRY_VMMP_STATS, &iov, 1, NULL, 0, FERRY_VMMP_STATS_OK);
	if (rc < 0)
		return rc;
	for (unsigned int i = 0; i < conn->reply.u.stats_ok.count && i < cap; i++) {
		memcpy(stats[i].name, conn->reply.u.stats_ok.stats[i].name, sizeof(stats[i].name));
		stats[i].value = conn->reply.u.stats_ok.stats[i].value;
	}
	return conn->reply.u.stats_ok.count;
}

/* ---------------------------------------------------------------- server requests */

unsigned int ferry_vmm_pending(const struct ferry_vmm_conn *conn)
{
	return conn ? conn->srq_count : 0;
}

/* Hand out queued request @raw (freed here) as *@req. */
static int hand_out(struct ferry_vmm_conn *c, uint8_t *raw, struct ferry_vmm_request *req)
{
	struct ferry_vmmp_msg *m = &c->req_msg;
	size_t len = FERRY_VMMP_HDR_LEN + ((size_t)raw[16] | (size_t)raw[17] << 8 | (size_t)raw[18] << 16 |
					   (size_t)raw[19] << 24);
	int code = ferry_vmmp_decode(raw, len, 0, m);

	/* It decoded when it was queued; the copy cannot have changed. */
	if (code != FERRY_VMMP_E_OK) {
		free(raw);
		return broke(c, EPROTO, "queued server request no longer decodes");
	}
	memset(req, 0, sizeof(*req));
	req->id = m->hdr.request_id;
	switch (m->hdr.type) {
	case FERRY_VMMP_PAUSE:
		req->kind = FERRY_VMM_REQ_PAUSE;
		req->flags = m->u.ctl.flags;
		break;
	case FERRY_VMMP_RESUME:
		req->kind = FERRY_VMM_REQ_RESUME;
		req->flags = m->u.ctl.flags;
		break;
	case FERRY_VMMP_NOTICE:
		req->kind = FERRY_VMM_REQ_MIGRATED;
		break;
	case FERRY_VMMP_DROP_PTES:
		if (!c->req_ranges) {
			c->req_ranges = malloc(FERRY_VMMP_MAX_DROP * sizeof(*c->req_ranges));
			if (!c->req_ranges) {
				free(raw);
				return fail(c, ENOMEM, "DROP_PTES: no memory for the ranges");
			}
		}
		for (uint32_t i = 0; i < m->u.hints.count; i++) {
			struct ferry_vmmp_range r;

			ferry_vmmp_hint_entry(&m->u.hints, i, &r);
			c->req_ranges[i].gpa = r.gpa;
			c->req_ranges[i].len = r.len;
		}
		req->kind = FERRY_VMM_REQ_DROP_PTES;
		req->nranges = m->u.hints.count;
		req->ranges = c->req_ranges;
		break;
	default:
		free(raw);
		return broke(c, EPROTO, "queued a %s as a server request", ferry_vmmp_type_name(m->hdr.type));
	}
	free(raw);
	ok(c);
	return 1;
}

static int pop_request(struct ferry_vmm_conn *c, struct ferry_vmm_request *req)
{
	uint8_t *raw = c->srq[c->srq_head];

	c->srq[c->srq_head] = NULL;
	c->srq_head = (c->srq_head + 1) % SRQ_MAX;
	c->srq_count--;
	return hand_out(c, raw, req);
}

int ferry_vmm_next_request(struct ferry_vmm_conn *conn, struct ferry_vmm_request *req, int timeout_ms)
{
	int64_t deadline = ferry_vmm_io_deadline(timeout_ms);
	int rc = usable(conn);

	if (rc < 0)
		return rc;
	if (!req || timeout_ms < -1)
		return fail(conn, EINVAL, "next request: bad arguments");
	for (;;) {
		struct pollfd pfd = { .fd = conn->fd, .events = POLLIN };
		unsigned int got_fds = 0;
		int code, wait_ms = -1;
		ssize_t n;

		if (conn->srq_count)
			return pop_request(conn, req);
		if (deadline != FERRY_VMM_IO_NO_DEADLINE) {
			int64_t left = deadline - ferry_vmm_io_deadline(0);

			wait_ms = left <= 0 ? 0 : (int)((left + 999999) / 1000000);
		}
		rc = poll(&pfd, 1, wait_ms);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return fail(conn, errno, "next request: poll: %s", strerror(errno));
		if (rc == 0) {
			ok(conn);
			return 0;
		}
		/* Something is there: read the whole message, bounded by the connection's timeout. */
		n = ferry_vmm_io_recv_msg(conn->fd, conn->rx, FERRY_VMMP_MAX_MSG, NULL, &got_fds, 0,
					  ferry_vmm_io_deadline(conn->timeout_ms), &code);
		if (n == -EBADMSG)
			return broke(conn, EPROTO, "next request: bad message header: %s",
				     ferry_vmmp_errcode_str((uint32_t)code));
		if (n < 0)
			return broke(conn, n == -ENODATA || n == -ECONNRESET ? ECONNRESET : (n == -EMSGSIZE ? EPROTO : (int)-n),
				     "next request: %s", io_what((int)n));
		if (!(conn->rx[6] & FERRY_VMMP_F_SERVER) || (conn->rx[6] & FERRY_VMMP_F_REPLY))
			return broke(conn, EPROTO, "next request: unexpected %s from the pager",
				     ferry_vmmp_type_name(conn->rx[5]));
		rc = server_msg(conn, (size_t)n, code);
		if (rc < 0)
			return rc;
	}
}

static int check_request(struct ferry_vmm_conn *c, const struct ferry_vmm_request *req, const char *what)
{
	int rc = usable(c);

	if (rc < 0)
		return rc;
	if (!req)
		return fail(c, EINVAL, "%s: no request", what);
	if (req->kind == FERRY_VMM_REQ_MIGRATED)
		return fail(c, EINVAL, "%s: notices take no answer", what);
	return 0;
}

int ferry_vmm_reply_ok(struct ferry_vmm_conn *conn, const struct ferry_vmm_request *req, uint64_t value)
{
	uint8_t b[FERRY_VMMP_HDR_LEN + 8];
	int rc = check_request(conn, req, "OK");

	if (rc < 0)
		return rc;
	rc = send_server_reply(conn, b, ferry_vmmp_encode_ok(req->id, value, b, sizeof(b)), "OK");
	if (rc == 0)
		ok(conn);
	return rc;
}

int ferry_vmm_reply_error(struct ferry_vmm_conn *conn, const struct ferry_vmm_request *req, uint32_t code,
			  const char *msg)
{
	int rc = check_request(conn, req, "ERROR");

	if (rc < 0)
		return rc;
	if (code == FERRY_VMMP_E_OK)
		return fail(conn, EINVAL, "ERROR: code 0 is not an error");
	rc = answer_error(conn, req->id, code, msg);
	if (rc == 0)
		ok(conn);
	return rc;
}

int ferry_vmm_reply_paused(struct ferry_vmm_conn *conn, const struct ferry_vmm_request *req, const void *blob,
			   size_t len)
{
	int rc = check_request(conn, req, "PAUSE");

	if (rc < 0)
		return rc;
	if (req->kind != FERRY_VMM_REQ_PAUSE)
		return fail(conn, EINVAL, "PAUSE: answering a request of kind %d", (int)req->kind);
	if (!(req->flags & FERRY_VMM_PAUSE_SAVE_STATE))
		return ferry_vmm_reply_ok(conn, req, 0);
	rc = ferry_vmm_put_state(conn, blob, len);
	if (rc < 0) {
		char why[FERRY_ERR_MSG_MAX];

		if (conn->broken)
			return rc;
		/* The pager refused the blob: tell it why the PAUSE failed, keep the first message. */
		snprintf(why, sizeof(why), "%s", conn->msg);
		(void)answer_error(conn, req->id, conn->remote_code ? conn->remote_code : FERRY_VMMP_E_INTERNAL, why);
		snprintf(conn->msg, sizeof(conn->msg), "%s", why);
		return rc;
	}
	return ferry_vmm_reply_ok(conn, req, len);
}

int ferry_vmm_drop_ptes(struct ferry_vmm_conn *conn, const struct ferry_vmm_request *req)
{
	uint64_t bytes = 0;
	char why[160];
	int rc = check_request(conn, req, "DROP_PTES");

	if (rc < 0)
		return rc;
	if (req->kind != FERRY_VMM_REQ_DROP_PTES || (req->nranges && !req->ranges))
		return fail(conn, EINVAL, "DROP_PTES: not a DROP_PTES request");
	/* Check everything first: either every range is dropped or none. */
	for (size_t i = 0; i < req->nranges; i++) {
		const struct ferry_vmm_range *r = &req->ranges[i];
		uint64_t covered = 0;

		for (unsigned int k = 0; k < conn->nregions; k++) {
			const struct reg_region *g = &conn->regions[k];
			uint64_t lo = r->gpa > g->gpa ? r->gpa : g->gpa;
			uint64_t hi = r->gpa + r->len < g->gpa + g->size ? r->gpa + r->len : g->gpa + g->size;

			if (lo >= hi)
				continue;
			if (!g->file) {
				snprintf(why, sizeof(why), "[0x%llx, +0x%llx) lies in anonymous memory: dropping would lose it",
					 (unsigned long long)r->gpa, (unsigned long long)r->len);
				(void)answer_error(conn, req->id, FERRY_VMMP_E_UNSUPPORTED, why);
				return fail(conn, EOPNOTSUPP, "DROP_PTES: %s", why);
			}
			covered += hi - lo;
		}
		if (covered != r->len) {
			snprintf(why, sizeof(why), "[0x%llx, +0x%llx) is not inside the registered regions",
				 (unsigned long long)r->gpa, (unsigned long long)r->len);
			(void)answer_error(conn, req->id, FERRY_VMMP_E_OUT_OF_RANGE, why);
			return fail(conn, ERANGE, "DROP_PTES: %s", why);
		}
	}
	for (size_t i = 0; i < req->nranges; i++) {
		const struct ferry_vmm_range *r = &req->ranges[i];

		for (unsigned int k = 0; k < conn->nregions; k++) {
			const struct reg_region *g = &conn->regions[k];
			uint64_t lo = r->gpa > g->gpa ? r->gpa : g->gpa;
			uint64_t hi = r->gpa + r->len < g->gpa + g->size ? r->gpa + r->len : g->gpa + g->size;

			if (lo >= hi)
				continue;
			/* Shared file mapping: the data stays in the file, only our PTEs go. */
			if (madvise((void *)(uintptr_t)(g->hva + (lo - g->gpa)), hi - lo, MADV_DONTNEED) < 0) {
				int e = errno;

				snprintf(why, sizeof(why), "madvise(MADV_DONTNEED) at gpa 0x%llx: %s",
					 (unsigned long long)lo, strerror(e));
				(void)answer_error(conn, req->id, FERRY_VMMP_E_INTERNAL, why);
				return fail(conn, e, "DROP_PTES: %s", why);
			}
			bytes += hi - lo;
		}
	}
	return ferry_vmm_reply_ok(conn, req, bytes);
}
