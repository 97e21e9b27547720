/*
 * Idle detection (ctrl/hib_idle.c): the judgement of two activity samples (packets, CPU), and
 * the guest-agent path against a scripted fake QEMU guest agent on a Unix socket: a process
 * list that forbids hibernation, one that does not, an agent that is absent or silent.
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
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "ctrl/hib.h"

static char dir[48], path[80];
static int lfd = -1;
static pthread_t tid;
static const char *ps_output;	/* NULL: a silent agent */

static int read_req(int fd, char *cmd, size_t cap)
{
	char line[1024];
	size_t n = 0;
	json_t *j;

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
	snprintf(cmd, cap, "%s", json_string_value(json_object_get(j, "execute")) ?: "");
	json_decref(j);
	return 0;
}

static void *fake_agent(void *arg)
{
	int fd = accept(lfd, NULL, NULL);
	char cmd[64], b64[1024];
	int polls = 0;

	(void)arg;
	if (fd < 0)
		return NULL;
	while (read_req(fd, cmd, sizeof(cmd)) == 0) {
		if (!ps_output)
			continue;	/* silent */
		if (strcmp(cmd, "guest-sync") == 0) {
			dprintf(fd, "{\"return\": 4242}\n");
		} else if (strcmp(cmd, "guest-exec") == 0) {
			dprintf(fd, "{\"return\": {\"pid\": 77}}\n");
		} else if (strcmp(cmd, "guest-exec-status") == 0) {
			if (polls++ == 0) {	/* still running the first time */
				dprintf(fd, "{\"return\": {\"exited\": false}}\n");
				continue;
			}
			sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)ps_output, strlen(ps_output),
					  sodium_base64_VARIANT_ORIGINAL);
			dprintf(fd, "{\"return\": {\"exited\": true, \"exitcode\": 0, \"out-data\": \"%s\"}}\n", b64);
		}
	}
	close(fd);
	return NULL;
}

static int setup(void **state)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/ferry-qga-test.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/qga.sock", dir);
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

static const struct hib_idle_sample s0 = { .t = 100.0, .rx_packets = 10, .tx_packets = 20, .cpu_ticks = 500 };

static void test_judge(void **state)
{
	struct hib_idle_opts o = { .tap = "vt0", .cpu_max_pct = 5 };
	struct hib_idle_sample s1 = s0;
	struct hib_idle_result r;
	struct ferry_err err = { 0 };
	long hz = sysconf(_SC_CLK_TCK);

	(void)state;
	s1.t = 110.0;	/* 10 s, no packets, 1% of a CPU */
	s1.cpu_ticks = s0.cpu_ticks + (uint64_t)(hz / 10);
	assert_int_equal(hib_idle_judge(&s0, &s1, &o, &r, &err), 0);
	assert_true(r.idle && r.net_idle && r.cpu_idle && r.procs_allow);
	assert_int_equal(r.packets, 0);
	assert_true(r.cpu_pct > 0.9 && r.cpu_pct < 1.1);
	s1.rx_packets += 3;	/* packets: busy */
	assert_int_equal(hib_idle_judge(&s0, &s1, &o, &r, &err), 0);
	assert_false(r.idle);
	assert_false(r.net_idle);
	assert_int_equal(r.packets, 3);
	assert_non_null(strstr(r.reason, "3 packets"));
	s1.rx_packets = s0.rx_packets;
	s1.cpu_ticks = s0.cpu_ticks + (uint64_t)hz * 5;	/* 50% of a CPU: busy */
	assert_int_equal(hib_idle_judge(&s0, &s1, &o, &r, &err), 0);
	assert_false(r.idle);
	assert_false(r.cpu_idle);
	assert_non_null(strstr(r.reason, "CPU"));
	assert_int_equal(hib_idle_judge(&s1, &s0, &o, &r, &err), -EINVAL);	/* out of order */
}

static void judge_with_agent(const char *ps, const char *const *forbid, struct hib_idle_result *r)
{
	struct hib_idle_opts o = { .tap = "vt0", .cpu_max_pct = 5, .qga_path = path, .forbid = forbid };
	struct hib_idle_sample s1 = s0;
	struct ferry_err err = { 0 };

	s1.t = 110.0;
	ps_output = ps;
	assert_int_equal(pthread_create(&tid, NULL, fake_agent, NULL), 0);
	assert_int_equal(hib_idle_judge(&s0, &s1, &o, r, &err), 0);
	pthread_join(tid, NULL);
}

static void test_agent_forbids(void **state)
{
	const char *const forbid[] = { "backup", "pg_dump", NULL };
	struct hib_idle_result r;

	(void)state;
	judge_with_agent("init\nsshd\nbackup\nsh\n", forbid, &r);
	assert_true(r.agent);
	assert_false(r.procs_allow);
	assert_false(r.idle);
	assert_non_null(strstr(r.reason, "guest process backup forbids hibernation"));
	judge_with_agent("init\nsshd\nbackupd\n", forbid, &r);	/* whole names only */
	assert_true(r.agent);
	assert_true(r.procs_allow);
	assert_true(r.idle);
}

static void test_agent_processes(void **state)
{
	char **names = NULL;
	size_t n = 0;
	struct ferry_err err = { 0 };

	(void)state;
	ps_output = "init\necho_server\n";
	assert_int_equal(pthread_create(&tid, NULL, fake_agent, NULL), 0);
	assert_int_equal(hib_qga_processes(path, 2000, &names, &n, &err), 0);
	pthread_join(tid, NULL);
	assert_int_equal(n, 2);
	assert_string_equal(names[1], "echo_server");
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static void test_agent_absent_or_silent(void **state)
{
	const char *const forbid[] = { "backup", NULL };
	struct hib_idle_opts o = { .tap = "vt0", .qga_path = "/nonexistent/qga.sock", .forbid = forbid };
	struct hib_idle_sample s1 = s0;
	struct hib_idle_result r;
	struct ferry_err err = { 0 };
	char **names = NULL;
	size_t n = 0;

	(void)state;
	s1.t = 110.0;
	assert_int_equal(hib_idle_judge(&s0, &s1, &o, &r, &err), 0);
	assert_false(r.agent);
	assert_true(r.idle);	/* no agent does not forbid */
	assert_non_null(strstr(r.reason, "no guest agent"));
	assert_int_equal(hib_qga_processes("/nonexistent/qga.sock", 200, &names, &n, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "no guest agent"));
	/* A socket nobody answers on: the same, after the time limit. */
	ps_output = NULL;
	assert_int_equal(pthread_create(&tid, NULL, fake_agent, NULL), 0);
	assert_int_equal(hib_qga_processes(path, 300, &names, &n, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "no guest agent"));
	/* the fake agent's thread ends when our side has closed the connection */
	pthread_join(tid, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_judge),
		cmocka_unit_test(test_agent_forbids),
		cmocka_unit_test(test_agent_processes),
		cmocka_unit_test(test_agent_absent_or_silent),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
