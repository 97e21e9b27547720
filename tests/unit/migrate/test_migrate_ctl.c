/*
 * The migration control client (migrate_ctl.h) against a fake pager on a
 * real Unix socket: a STATUS answered too late times out, and the next call
 * gets its own answer on a new connection instead of the late one (before,
 * every later reply was read one behind and refused as unexpected: a
 * `ferry-perf migrate` kept polling a finished migration until its timeout).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "dataplane/migrate/migrate_ctl.h"
#include "proto/migrate.h"

struct fake {
	int listen_fd;
	unsigned late_ms;         /* the first STATUS is answered this late */
	unsigned connections;     /* accepted so far */
	unsigned phase_of_reply;  /* what the n-th reply says: MIG_PH_SETUP + its number */
};

/* One request (whole message) from @p fd into @p m; false when the peer went away. */
static bool read_request(int fd, struct migp_msg *m)
{
	static uint8_t buf[MIGP_MAX_MSG];
	struct migp_hdr h;
	size_t have = 0, want = MIGP_HDR_LEN;

	while (have < want) {
		ssize_t n = read(fd, buf + have, want - have);

		if (n <= 0)
			return false;
		have += (size_t)n;
		if (have == MIGP_HDR_LEN && want == MIGP_HDR_LEN) {
			if (migp_hdr_decode(buf, MIGP_HDR_LEN, &h))
				return false;
			want += h.payload_len;
		}
	}
	return migp_decode(buf, have, m) == 0;
}

static void reply_status(int fd, uint64_t req, uint8_t phase)
{
	static uint8_t buf[MIGP_MAX_MSG];
	struct migp_status_ok so = { .phase = phase, .round = 1 };
	int n = migp_encode_status_ok(req, &so, buf, sizeof(buf));

	/* the first reply goes to a client that gave up: EPIPE, not SIGPIPE */
	if (n < 0 || send(fd, buf, (size_t)n, MSG_NOSIGNAL) != n)
		fprintf(stderr, "fake: reply %llu not delivered (the client gave up on it)\n", (unsigned long long)req);
}

/* Serves connections one after the other; the first STATUS ever is answered late. */
static void *fake_main(void *arg)
{
	struct fake *f = arg;
	bool first = true;
	int fd;

	while ((fd = accept(f->listen_fd, NULL, NULL)) >= 0) {
		struct migp_msg m;

		f->connections++;
		while (read_request(fd, &m)) {
			if (m.hdr.type != MIGP_STATUS)
				break;
			if (first) {
				first = false;
				usleep(f->late_ms * 1000u);
			}
			reply_status(fd, m.hdr.request_id, (uint8_t)(MIG_PH_SETUP + f->phase_of_reply++));
		}
		close(fd);
		if (f->connections == 2)
			break;
	}
	return NULL;
}

static void test_late_reply(void **state)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct fake f = { .late_ms = 6000 };
	struct ferry_err err = { 0 };
	struct mig_progress p;
	struct mig_ctl *c;
	pthread_t t;

	(void)state;
	snprintf(a.sun_path, sizeof(a.sun_path), "/tmp/ferry-test-migctl-%d.sock", (int)getpid());
	unlink(a.sun_path);
	f.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(f.listen_fd >= 0);
	assert_int_equal(bind(f.listen_fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(f.listen_fd, 4), 0);
	assert_int_equal(pthread_create(&t, NULL, fake_main, &f), 0);

	assert_int_equal(mig_ctl_connect(a.sun_path, &c, &err), 0);
	/* the first STATUS: no answer within the client's 5 s */
	assert_true(mig_ctl_status(c, "vm-1", &p, &err) < 0);
	assert_non_null(strstr(err.msg, "timed out"));
	/* the next one: a new connection and its own answer (the second reply the fake sends) */
	assert_int_equal(mig_ctl_status(c, "vm-1", &p, &err), 0);
	assert_int_equal(p.phase, MIG_PH_SETUP + 1);
	assert_int_equal(f.connections, 2);
	assert_int_equal(mig_ctl_status(c, "vm-1", &p, &err), 0);
	assert_int_equal(p.phase, MIG_PH_SETUP + 2);
	mig_ctl_close(c);
	pthread_join(t, NULL);
	close(f.listen_fd);
	unlink(a.sun_path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_late_reply),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
