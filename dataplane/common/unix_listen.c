#include "dataplane/common/unix_listen.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int ferry_unix_listen(const char *path, mode_t mode, int backlog, struct ferry_err *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = strlen(path);
	bool abstract = path[0] == '@';
	socklen_t alen;
	struct stat st;
	int fd, e;

	if (len == 0 || len >= sizeof(sa.sun_path))
		return ferry_err_set(err, ENAMETOOLONG, "unix socket path '%s' empty or too long", path);
	memcpy(sa.sun_path, path, len);
	if (abstract)
		sa.sun_path[0] = '\0';
	alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (abstract ? 0 : 1));
	/* Replace a stale socket file from an earlier run, never anything else. */
	if (!abstract && lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return ferry_err_set(err, EEXIST, "unix socket %s: exists and is not a socket", path);
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return ferry_err_set(err, errno, "socket: %s", strerror(errno));
	if (bind(fd, (struct sockaddr *)&sa, alen) < 0 || (!abstract && chmod(path, mode) < 0) ||
	    listen(fd, backlog) < 0) {
		e = errno;
		close(fd);
		return ferry_err_set(err, e, "unix socket %s: %s", path, strerror(e));
	}
	return fd;
}
