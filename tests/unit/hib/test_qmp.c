/*
 * ctrl/qmp.c against a fake QEMU: a thread that listens on a Unix socket and plays a script
 * (greeting, replies that echo the request's id, events in between, errors, garbage, silence,
 * a closed socket). Every failure must come back as an error with a message, within the
 * caller's time limit, never a hang or a crash.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "ctrl/qmp.h"

enum script { S_GOOD, S_ERROR, S_GARBAGE, S_CLOSE, S_SILENT, S_NO_GREETING, S_WRONG_ID, S_BIG_EVENTS };

static char dir[48], path[80];
static int lfd = -1;
static pthread_t tid;
static enum script script;

static const char greeting[] =
	"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}}, \"capabilities\": []}}\r\n";

static void say(int fd, const char *s) { (void)!write(fd, s, strlen(s)); }

/* Read one request line; return its id (or -1). */
static long long request(int fd, char *cmd, size_t cap)
{
	char line[4096];
	size_t n = 0;
	json_t *j;
	long long id = -1;

	while (n + 1 < sizeof(line)) {
		if (read(fd, line + n, 1) != 1)
			return -1;
		if (line[n++] == '\n')
			break;
	}
	line[n] = '\0';
	j = json_loads(line, 0, NULL);
	if (!j)
		return -1;
	id = json_integer_value(json_object_get(j, "id"));
	snprintf(cmd, cap, "%s", json_string_value(json_object_get(j, "execute")) ?: "");
	json_decref(j);
	return id;
}

static void reply(int fd, long long id, const char *ret)
{
	char s[512];

	snprintf(s, sizeof(s), "{\"return\": %s, \"id\": %lld}\r\n", ret, id);
	say(fd, s);
}

static void *fake_qemu(void *arg)
{
	int fd = accept(lfd, NULL, NULL);
	char cmd[64];
	long long id;

	(void)arg;
	if (fd < 0)
		return NULL;
	if (script == S_NO_GREETING) {
		sleep(1);
		close(fd);
		return NULL;
	}
	say(fd, greeting);
	id = request(fd, cmd, sizeof(cmd));
	reply(fd, id, "{}");	/* qmp_capabilities */
	id = request(fd, cmd, sizeof(cmd));
	switch (script) {
	case S_GOOD:
		say(fd, "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"STOP\"}\r\n");
		reply(fd, id, "{\"status\": \"paused\", \"running\": false}");
		id = request(fd, cmd, sizeof(cmd));
		say(fd, "{\"event\": \"RESUME\"}\r\n");
		reply(fd, id, "{}");
		break;
	case S_ERROR:
		say(fd, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no such thing\"}, \"id\": ");
		dprintf(fd, "%lld}\r\n", id);
		break;
	case S_GARBAGE:
		say(fd, "this is not json\r\n");
		break;
	case S_CLOSE:
		break;
	case S_SILENT:
		sleep(1);
		break;
	case S_WRONG_ID:
		reply(fd, id + 1000, "{}");
		break;
	case S_BIG_EVENTS:	/* more events than the queue keeps, then the reply */
		for (int i = 0; i < 300; i++)
			dprintf(fd, "{\"event\": \"E%d\"}\r\n", i);
		reply(fd, id, "{\"status\": \"running\"}");
		break;
	default:
		break;
	}
	usleep(200000);
	close(fd);
	return NULL;
}

static int setup(void **state)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/ferry-qmp-test.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/qmp.sock", dir);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(lfd, 4), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	close(lfd);
	unlink(path);
	rmdir(dir);
	return 0;
}

static void run(enum script s)
{
	script = s;
	assert_int_equal(pthread_create(&tid, NULL, fake_qemu, NULL), 0);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_good_session(void **state)
{
	struct qmp *q = NULL;
	struct ferry_err err = { 0 };
	json_t *ev = NULL;
	char status[32];

	(void)state;
	run(S_GOOD);
	assert_int_equal(qmp_connect(path, 2000, &q, &err), 0);
	assert_int_equal(qmp_status(q, status, sizeof(status), 2000, &err), 0);
	assert_string_equal(status, "paused");
	assert_int_equal(qmp_executef(q, "cont", 2000, NULL, &err, "{s:b}", "x", 1), 0);
	/* Both events arrived while commands were pending: queued, in order, by name. */
	assert_int_equal(qmp_wait_event(q, "RESUME", 500, &ev, &err), 0);
	assert_string_equal(json_string_value(json_object_get(ev, "event")), "RESUME");
	json_decref(ev);
	/* STOP was passed over (dropped) on the way to RESUME: nothing else comes. */
	assert_int_equal(qmp_wait_event(q, NULL, 300, NULL, &err), -ECONNRESET);
	qmp_close(q);
	pthread_join(tid, NULL);
}

static void test_error_reply(void **state)
{
	struct qmp *q = NULL;
	struct ferry_err err = { 0 };

	(void)state;
	run(S_ERROR);
	assert_int_equal(qmp_connect(path, 2000, &q, &err), 0);
	assert_int_equal(qmp_execute(q, "frobnicate", NULL, 2000, NULL, &err), -EREMOTEIO);
	assert_non_null(strstr(err.msg, "qmp frobnicate: GenericError: no such thing"));
	qmp_close(q);
	pthread_join(tid, NULL);
}

static void test_garbage(void **state)
{
	struct qmp *q = NULL;
	struct ferry_err err = { 0 };

	(void)state;
	run(S_GARBAGE);
	assert_int_equal(qmp_connect(path, 2000, &q, &err), 0);
	assert_int_equal(qmp_execute(q, "query-status", NULL, 2000, NULL, &err), -EPROTO);
	assert_non_null(strstr(err.msg, "not a JSON object"));
	qmp_close(q);
	pthread_join(tid, NULL);
}

static void test_closed(void **state)
{
	struct qmp *q = NULL;
	struct ferry_err err = { 0 };

	(void)state;
	run(S_CLOSE);
	assert_int_equal(qmp_connect(path, 2000, &q, &err), 0);
	assert_int_equal(qmp_execute(q, "query-status", NULL, 2000, NULL, &err), -ECONNRESET);
	assert_non_null(strstr(err.msg, "closed the QMP socket"));
	qmp_close(q);
	pthread_join(tid, NULL);
}

static void test_silent(void **state)
{
	struct qmp *q = NULL;
	struct ferry_err err = { 0 };
	double t0;

	(void)state;
	run(S_SILENT);
	assert_int_equal(qmp_connect(path, 2000, &q, &err), 0);
	t0 = now_s();
	assert_int_equal(qmp_execute(q, "query-status", NULL, 300, NULL, &err), -ETIMEDOUT);
	assert_true(now_s() - t0 < 0.9);	/* bounded by the caller's limit, not the peer's silence */
	assert_non_null(strstr(err.msg, "no answer"));
	qmp_close(q);
	pthread_join(tid, NULL);
}

static void test_no_greeting(void **state)
{
	struct qmp *q = NULL;
	struct ferry_err err = { 0 };

	(void)state;
	run(S_NO_GREETING);
	assert_int_equal(qmp_connect(path, 300, &q, &err), -ETIMEDOUT);
	assert_null(q);
	assert_non_null(strstr(err.msg, "greeting"));
	pthread_join(tid, NULL);
}

static void test_wrong_id(void **state)
{
	struct qmp *q = NULL;
	struct ferry_err err = { 0 };

	(void)state;
	run(S_WRONG_ID);
	assert_int_equal(qmp_connect(path, 2000, &q, &err), 0);
	assert_int_equal(qmp_execute(q, "query-status", NULL, 2000, NULL, &err), -EPROTO);
	assert_non_null(strstr(err.msg, "did not send"));
	qmp_close(q);
	pthread_join(tid, NULL);
}

static void test_event_flood(void **state)
{
	struct qmp *q = NULL;
	struct ferry_err err = { 0 };
	json_t *ev = NULL;
	char status[32];

	(void)state;
	run(S_BIG_EVENTS);
	assert_int_equal(qmp_connect(path, 2000, &q, &err), 0);
	assert_int_equal(qmp_status(q, status, sizeof(status), 2000, &err), 0);
	assert_string_equal(status, "running");
	/* The queue is bounded: the oldest went, the newest is still there. */
	assert_int_equal(qmp_wait_event(q, "E0", 2000, NULL, &err), -ECONNRESET);
	qmp_close(q);
	pthread_join(tid, NULL);
	run(S_BIG_EVENTS);
	assert_int_equal(qmp_connect(path, 2000, &q, &err), 0);
	assert_int_equal(qmp_status(q, status, sizeof(status), 2000, &err), 0);
	assert_int_equal(qmp_wait_event(q, "E299", 100, &ev, &err), 0);
	json_decref(ev);
	qmp_close(q);
	pthread_join(tid, NULL);
}

static void test_no_socket(void **state)
{
	struct qmp *q = NULL;
	struct ferry_err err = { 0 };

	(void)state;
	assert_true(qmp_connect("/nonexistent/qmp.sock", 100, &q, &err) < 0);
	assert_non_null(strstr(err.msg, "cannot connect to /nonexistent/qmp.sock"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_session), cmocka_unit_test(test_error_reply),
		cmocka_unit_test(test_garbage),      cmocka_unit_test(test_closed),
		cmocka_unit_test(test_silent),       cmocka_unit_test(test_no_greeting),
		cmocka_unit_test(test_wrong_id),     cmocka_unit_test(test_event_flood),
		cmocka_unit_test(test_no_socket),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
