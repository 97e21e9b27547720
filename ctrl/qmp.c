/*
 * QMP client (qmp.h): a Unix stream socket carrying one JSON object a line.
 */
#include "ctrl/qmp.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define QMP_BUF_MAX (4u << 20)     /* one reply line may be large (query-migrate is small) */
#define QMP_EVENTS_MAX 256

struct qmp {
	int fd;
	char *buf;
	size_t len, cap;
	uint64_t next_id;
	json_t *events;              /* queued events (array) */
	char path[108];
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Next message (a line of JSON) before @p deadline. */
static int read_msg(struct qmp *q, int64_t deadline, json_t **out, const char *what, struct ferry_err *err)
{
	for (;;) {
		char *nl = memchr(q->buf, '\n', q->len);

		if (nl) {
			size_t n = (size_t)(nl - q->buf) + 1;
			json_error_t je;
			json_t *m = json_loadb(q->buf, n, 0, &je);

			memmove(q->buf, q->buf + n, q->len - n);
			q->len -= n;
			if (!m || !json_is_object(m)) {
				json_decref(m);
				return ferry_err_set(err, EPROTO, "qmp %s: QEMU sent a line that is not a JSON object: %s",
						     what, je.text);
			}
			*out = m;
			return 0;
		}
		if (q->len == q->cap) {
			size_t cap = q->cap * 2;
			char *b;

			if (cap > QMP_BUF_MAX)
				return ferry_err_set(err, EPROTO, "qmp %s: a message longer than %u bytes", what,
						     QMP_BUF_MAX);
			b = realloc(q->buf, cap);
			if (!b)
				return ferry_err_set(err, ENOMEM, "out of memory");
			q->buf = b;
			q->cap = cap;
		}
		int64_t left = deadline - now_ms();
		struct pollfd p = { .fd = q->fd, .events = POLLIN };
		int r;

		if (left <= 0)
			return ferry_err_set(err, ETIMEDOUT, "qmp %s: no answer from QEMU (%s) in time", what, q->path);
		r = poll(&p, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return ferry_err_set(err, errno, "qmp %s: poll: %s", what, strerror(errno));
		if (r == 0)
			continue;
		ssize_t got = recv(q->fd, q->buf + q->len, q->cap - q->len, 0);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return ferry_err_set(err, got == 0 ? ECONNRESET : errno, "qmp %s: QEMU closed the QMP socket%s%s",
					     what, got == 0 ? "" : ": ", got == 0 ? "" : strerror(errno));
		q->len += (size_t)got;
	}
}

static int queue_event(struct qmp *q, json_t *m)
{
	if (json_array_size(q->events) >= QMP_EVENTS_MAX)
		json_array_remove(q->events, 0);   /* bounded: the oldest goes */
	return json_array_append_new(q->events, m);
}

static int send_json(struct qmp *q, json_t *msg, const char *what, struct ferry_err *err)
{
	char *s = json_dumps(msg, JSON_COMPACT);
	size_t n, off = 0;

	if (!s)
		return ferry_err_set(err, ENOMEM, "qmp %s: cannot encode the command", what);
	n = strlen(s);
	while (off < n) {
		ssize_t w = send(q->fd, s + off, n - off, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			int e = errno;

			free(s);
			return ferry_err_set(err, e, "qmp %s: send: %s", what, strerror(e));
		}
		off += (size_t)w;
	}
	free(s);
	if (send(q->fd, "\n", 1, MSG_NOSIGNAL) != 1)
		return ferry_err_set(err, errno, "qmp %s: send: %s", what, strerror(errno));
	return 0;
}

int qmp_execute(struct qmp *q, const char *cmd, json_t *args, int timeout_ms, json_t **ret, struct ferry_err *err)
{
	int64_t deadline = now_ms() + timeout_ms;
	uint64_t id = ++q->next_id;
	json_t *msg = json_pack("{s:s, s:I}", "execute", cmd, "id", (json_int_t)id);
	int rc;

	if (!msg)
		return ferry_err_set(err, ENOMEM, "out of memory");
	if (args)
		json_object_set(msg, "arguments", args);
	rc = send_json(q, msg, cmd, err);
	json_decref(msg);
	if (rc)
		return rc;
	for (;;) {
		json_t *m = NULL, *jid;

		rc = read_msg(q, deadline, &m, cmd, err);
		if (rc)
			return rc;
		if (json_object_get(m, "event")) {
			queue_event(q, m);
			continue;
		}
		jid = json_object_get(m, "id");
		if (!json_is_integer(jid) || (uint64_t)json_integer_value(jid) != id) {
			json_decref(m);
			return ferry_err_set(err, EPROTO, "qmp %s: a reply to a command we did not send", cmd);
		}
		json_t *e = json_object_get(m, "error");

		if (e) {
			rc = ferry_err_set(err, EREMOTEIO, "qmp %s: %s: %s", cmd,
					   json_string_value(json_object_get(e, "class")) ?: "error",
					   json_string_value(json_object_get(e, "desc")) ?: "(no description)");
			json_decref(m);
			return rc;
		}
		json_t *r = json_object_get(m, "return");

		if (!r) {
			json_decref(m);
			return ferry_err_set(err, EPROTO, "qmp %s: a reply with neither return nor error", cmd);
		}
		if (ret)
			*ret = json_incref(r);
		json_decref(m);
		return 0;
	}
}

int qmp_executef(struct qmp *q, const char *cmd, int timeout_ms, json_t **ret, struct ferry_err *err,
		 const char *fmt, ...)
{
	va_list ap;
	json_error_t je;
	json_t *args;
	int rc;

	va_start(ap, fmt);
	args = json_vpack_ex(&je, 0, fmt, ap);
	va_end(ap);
	if (!args)
		return ferry_err_set(err, EINVAL, "qmp %s: bad arguments: %s", cmd, je.text);
	rc = qmp_execute(q, cmd, args, timeout_ms, ret, err);
	json_decref(args);
	return rc;
}

int qmp_wait_event(struct qmp *q, const char *name, int timeout_ms, json_t **event, struct ferry_err *err)
{
	int64_t deadline = now_ms() + timeout_ms;

	for (;;) {
		json_t *m;

		if (json_array_size(q->events) > 0) {
			m = json_incref(json_array_get(q->events, 0));
			json_array_remove(q->events, 0);
		} else {
			int rc = read_msg(q, deadline, &m, name ? name : "event", err);

			if (rc)
				return rc == -ETIMEDOUT ? ferry_err_set(err, ETIMEDOUT, "qmp: no %s event within %d ms",
									 name ? name : "", timeout_ms)
							: rc;
			if (!json_object_get(m, "event")) {
				json_decref(m);
				return ferry_err_set(err, EPROTO, "qmp: a reply while no command was pending");
			}
		}
		const char *ev = json_string_value(json_object_get(m, "event"));

		if (!name || (ev && strcmp(ev, name) == 0)) {
			if (event)
				*event = m;
			else
				json_decref(m);
			return 0;
		}
		json_decref(m);
	}
}

int qmp_status(struct qmp *q, char *buf, size_t len, int timeout_ms, struct ferry_err *err)
{
	json_t *r = NULL;
	int rc = qmp_execute(q, "query-status", NULL, timeout_ms, &r, err);
	const char *s;

	if (rc)
		return rc;
	s = json_string_value(json_object_get(r, "status"));
	if (!s) {
		json_decref(r);
		return ferry_err_set(err, EPROTO, "qmp query-status: no status in the reply");
	}
	snprintf(buf, len, "%s", s);
	json_decref(r);
	return 0;
}

int qmp_connect(const char *path, int timeout_ms, struct qmp **out, struct ferry_err *err)
{
	int64_t deadline = now_ms() + timeout_ms;
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct qmp *q;
	json_t *greeting = NULL;
	int rc, last = 0;

	if (strlen(path) >= sizeof(a.sun_path))
		return ferry_err_set(err, ENAMETOOLONG, "qmp socket path too long: %s", path);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	q = calloc(1, sizeof(*q));
	if (!q)
		return ferry_err_set(err, ENOMEM, "out of memory");
	q->fd = -1;
	q->cap = 8192;
	q->buf = malloc(q->cap);
	q->events = json_array();
	snprintf(q->path, sizeof(q->path), "%s", path);
	if (!q->buf || !q->events) {
		rc = ferry_err_set(err, ENOMEM, "out of memory");
		goto err_free;
	}
	for (;;) {
		q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (q->fd < 0) {
			rc = ferry_err_set(err, errno, "qmp: socket: %s", strerror(errno));
			goto err_free;
		}
		if (connect(q->fd, (struct sockaddr *)&a, sizeof(a)) == 0)
			break;
		last = errno;
		close(q->fd);
		q->fd = -1;
		if (now_ms() >= deadline) {
			rc = ferry_err_set(err, last, "qmp: cannot connect to %s within %d ms: %s", path, timeout_ms,
					   strerror(last));
			goto err_free;
		}
		usleep(20000);
	}
	rc = read_msg(q, deadline, &greeting, "greeting", err);
	if (rc)
		goto err_free;
	if (!json_object_get(greeting, "QMP")) {
		json_decref(greeting);
		rc = ferry_err_set(err, EPROTO, "qmp: %s did not greet with a QMP banner", path);
		goto err_free;
	}
	json_decref(greeting);
	rc = qmp_execute(q, "qmp_capabilities", NULL, (int)(deadline - now_ms()) + 1, NULL, err);
	if (rc)
		goto err_free;
	*out = q;
	return 0;

err_free:
	qmp_close(q);
	return rc;
}

void qmp_close(struct qmp *q)
{
	if (!q)
		return;
	if (q->fd >= 0)
		close(q->fd);
	json_decref(q->events);
	free(q->buf);
	free(q);
}
