/*
 * Integration: the ferry-memsrv process itself. --help, configuration errors
 * that name the problem, start-up failures with a reason, and a clean
 * shutdown on SIGTERM (exit 0 within 2 s, logged, clients told).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "memsrv_harness.h"

static char dir[64];

struct run {
	int status;
	char out[8192];
	char err[8192];
};

static void slurp(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "re");
	size_t n = 0;

	if (f) {
		n = fread(buf, 1, cap - 1, f);
		fclose(f);
	}
	buf[n] = '\0';
}

/* Run ferry-memsrv with @argv (NULL-terminated, argv[0] included) and collect its output. */
static void run_memsrv(struct run *r, char *const argv[])
{
	char out[128], err[128];
	pid_t pid;

	snprintf(out, sizeof(out), "%s/out", dir);
	snprintf(err, sizeof(err), "%s/err", dir);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644), e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		dup2(o, STDOUT_FILENO);
		dup2(e, STDERR_FILENO);
		execv(MSRV_BIN, argv);
		_exit(127);
	}
	uint64_t deadline = msrv_now_ms() + 20000;

	while (waitpid(pid, &r->status, WNOHANG) == 0) {
		if (msrv_now_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &r->status, 0);
			fail_msg("ferry-memsrv did not exit within 20 s");
		}
		usleep(2000);
	}
	slurp(out, r->out, sizeof(r->out));
	slurp(err, r->err, sizeof(r->err));
}

static const char *write_file(const char *name, const char *text, mode_t mode)
{
	static char path[8][128];
	static int next;
	char *p = path[next++ % 8];
	int fd;

	snprintf(p, 128, "%s/%s", dir, name);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	fchmod(fd, mode);
	close(fd);
	return p;
}

static void expect_exit(const struct run *r, int code, const char *needle)
{
	if (!WIFEXITED(r->status) || WEXITSTATUS(r->status) != code)
		fail_msg("expected exit %d, got status 0x%x; stderr:\n%s", code, r->status, r->err);
	if (needle && !strstr(r->err, needle) && !strstr(r->out, needle))
		fail_msg("output lacks \"%s\"; stderr:\n%s", needle, r->err);
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/ferry-it-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_help(void **state)
{
	struct run r;

	(void)state;
	run_memsrv(&r, (char *const[]){ "ferry-memsrv", "--help", NULL });
	expect_exit(&r, 0, NULL);
	assert_non_null(strstr(r.out, "Usage: ferry-memsrv"));
	assert_non_null(strstr(r.out, "secret_file"));
	assert_non_null(strstr(r.out, "client_quota"));
	run_memsrv(&r, (char *const[]){ "ferry-memsrv", "--version", NULL });
	expect_exit(&r, 0, NULL);
	assert_non_null(strstr(r.out, "ferry-memsrv "));
}

static void test_config_errors_name_the_problem(void **state)
{
	const char *secret = write_file("secret", "0123456789abcdef0123456789abcdef0123\n", 0600);
	char text[512], want[256];
	const char *conf;
	struct run r;

	(void)state;
	snprintf(text, sizeof(text), "[server]\nsecret_file = %s\n[pool]\nsize = 8M\ncolour = blue\n", secret);
	conf = write_file("typo.conf", text, 0644);
	run_memsrv(&r, (char *const[]){ "ferry-memsrv", "-c", (char *)conf, NULL });
	snprintf(want, sizeof(want), "%s:5: unknown key 'colour' in section [pool]", conf);
	expect_exit(&r, 2, want);

	snprintf(text, sizeof(text), "[server]\nsecret_file = %s\n[pool]\nsize = 8M\n", secret);
	conf = write_file("ok.conf", text, 0644);
	run_memsrv(&r, (char *const[]){ "ferry-memsrv", "-c", (char *)conf, "--pool-size", "12X", NULL });
	expect_exit(&r, 2, "--pool-size: [pool] size: '12X' is not a size");

	run_memsrv(&r, (char *const[]){ "ferry-memsrv", "--pool-size", "8M", NULL });
	expect_exit(&r, 2, "no secret file");

	run_memsrv(&r, (char *const[]){ "ferry-memsrv", "--bogus", NULL });
	expect_exit(&r, 2, "unknown option '--bogus'");

	run_memsrv(&r, (char *const[]){ "ferry-memsrv", "-c", "/nonexistent/memsrv.conf", NULL });
	expect_exit(&r, 2, "/nonexistent/memsrv.conf");
}

static void test_startup_failures_say_why(void **state)
{
	const char *secret = write_file("secret", "0123456789abcdef0123456789abcdef0123\n", 0600);
	const char *open_secret = write_file("open-secret", "0123456789abcdef0123456789abcdef0123\n", 0644);
	struct run r;

	(void)state;
	run_memsrv(&r, (char *const[]){ "ferry-memsrv", "-s", "/nonexistent/secret", "-m", "8M", "-p", "0", NULL });
	expect_exit(&r, 1, "secret file /nonexistent/secret");

	run_memsrv(&r, (char *const[]){ "ferry-memsrv", "-s", (char *)open_secret, "-m", "8M", "-p", "0", NULL });
	expect_exit(&r, 1, "chmod 600");

	run_memsrv(&r, (char *const[]){ "ferry-memsrv", "-s", (char *)secret, "-m", "8M", "-p", "0", "-t", "rdma", NULL });
	expect_exit(&r, 1, "tcp");
	printf("rdma: %s", strstr(r.err, "cannot start"));

	/* The port of a running server is taken. */
	struct msrv busy;
	char port[16];

	msrv_start(&busy, NULL);
	snprintf(port, sizeof(port), "%u", busy.port);
	run_memsrv(&r, (char *const[]){ "ferry-memsrv", "-s", (char *)secret, "-m", "8M", "-p", port, NULL });
	assert_int_equal(msrv_stop(&busy, 5000), 0);
	msrv_cleanup(&busy);
	expect_exit(&r, 1, "listen on 127.0.0.1:");
}

static void test_sigterm_shuts_down_cleanly(void **state)
{
	struct msrv srv;
	struct fx_ctx *ctx = msrv_ctx();
	struct pool_client *c;
	struct pool_extent e;
	struct ferry_err err = { 0 };
	struct stat st;

	(void)state;
	msrv_start(&srv, NULL);
	assert_int_equal(msrv_connect(&srv, ctx, "bystander", NULL, &c, &err), 0);
	assert_int_equal(pool_client_alloc(c, 1 << 20, &e, &err), 0);

	uint64_t t0 = msrv_now_ms();

	assert_int_equal(kill(srv.pid, SIGTERM), 0);
	if (!msrv_wait_exit(&srv, 2000)) {
		msrv_dump_log(&srv);
		msrv_cleanup(&srv);
		fail_msg("no exit within 2 s of SIGTERM");
	}
	print_message("exited %llu ms after SIGTERM\n", (unsigned long long)(msrv_now_ms() - t0));
	if (!WIFEXITED(srv.status) || WEXITSTATUS(srv.status) != 0) {
		msrv_dump_log(&srv);
		fail_msg("exit status 0x%x, expected 0", srv.status);
	}
	assert_true(msrv_log_contains(&srv, "shutting down on SIGTERM"));
	assert_true(msrv_log_contains(&srv, "closed (127.0.0.1:"));
	assert_true(msrv_log_contains(&srv, "server shutting down; released 1 extents (1 MiB)"));
	assert_true(msrv_log_contains(&srv, "shutdown complete"));
	assert_int_equal(stat(srv.ready, &st), -1);   /* the ready file is gone */

	/* The client learns it, and fails clearly rather than hanging. */
	t0 = msrv_now_ms();
	assert_true(pool_client_alloc(c, 4096, &e, &err) < 0);
	assert_true(msrv_now_ms() - t0 < 1000);
	printf("after shutdown: %s (code %u)\n", err.msg, pool_client_last_code(c));
	assert_true(strstr(err.msg, "shutting down") || strstr(err.msg, "connection to memory server"));
	pool_client_close(c);
	fx_ctx_destroy(ctx);
	msrv_cleanup(&srv);
}

static uint64_t free_hugepages_2m(void)
{
	FILE *f = fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "re");
	unsigned long long n = 0;

	if (f) {
		if (fscanf(f, "%llu", &n) != 1)
			n = 0;
		fclose(f);
	}
	return n;
}

/* One page written and read back: the pool memory of this mode really serves. */
static void write_read_one_page(const struct msrv *srv)
{
	struct fx_ctx *ctx = msrv_ctx();
	struct pool_client *c;
	struct pool_extent e;
	struct fx_mr *mr;
	struct ferry_err err = { 0 };
	static uint8_t buf[2][4096] __attribute__((aligned(4096)));
	struct fx_wc wc;

	assert_int_equal(msrv_connect(srv, ctx, "pager", NULL, &c, &err), 0);
	assert_int_equal(pool_client_alloc(c, 4096, &e, &err), 0);
	assert_int_equal(fx_reg_mr(pool_client_pd(c), buf, sizeof(buf), FX_ACCESS_LOCAL_WRITE, &mr, &err), 0);
	memset(buf[0], 0x5a, 4096);
	memset(buf[1], 0, 4096);
	struct fx_sge w = { buf[0], 4096, mr->lkey }, r = { buf[1], 4096, mr->lkey };
	struct fx_send_wr wr[2] = {
		{ .wr_id = 1, .opcode = FX_OP_WRITE, .sg_list = &w, .num_sge = 1, .remote_addr = e.base, .rkey = e.rkey },
		{ .wr_id = 2, .opcode = FX_OP_READ, .flags = FX_WR_SIGNALED, .sg_list = &r, .num_sge = 1,
		  .remote_addr = e.base, .rkey = e.rkey },
	};
	/* Unsignalled WRITE then signalled READ: in order, so the READ sees the WRITE. */
	assert_int_equal(fx_post_send(pool_client_conn(c), &wr[0], 1, NULL), 1);
	assert_int_equal(fx_post_send(pool_client_conn(c), &wr[1], 1, NULL), 1);
	assert_int_equal(pool_client_poll(c, &wc, 1, 5000), 1);
	assert_int_equal(wc.wr_id, 2);
	assert_int_equal(wc.status, FX_WC_SUCCESS);
	assert_memory_equal(buf[0], buf[1], 4096);
	fx_dereg_mr(mr);
	pool_client_close(c);
	fx_ctx_destroy(ctx);
}

static void test_pool_memory_modes(void **state)
{
	const char *secret = write_file("secret", "0123456789abcdef0123456789abcdef0123\n", 0600);
	struct msrv srv;
	struct run r;

	(void)state;
	/* off: plain 4 KiB pages. */
	msrv_start(&srv, &(struct msrv_opts){ .pool_size = "8M", .hugepages = "off" });
	write_read_one_page(&srv);
	assert_int_equal(msrv_stop(&srv, 5000), 0);
	assert_true(msrv_log_contains(&srv, "memory 4k pages"));
	msrv_cleanup(&srv);

	/* on: refuses to start without enough reserved 2 MiB pages, and says how to get them. */
	if (free_hugepages_2m() < 4) {
		run_memsrv(&r, (char *const[]){ "ferry-memsrv", "-s", (char *)secret, "-m", "8M", "-p", "0",
						"--hugepages", "on", NULL });
		expect_exit(&r, 1, "2 MiB hugepages required, but only");
		assert_non_null(strstr(r.err, "vm.nr_hugepages"));
	} else {
		msrv_start(&srv, &(struct msrv_opts){ .pool_size = "8M", .hugepages = "on" });
		write_read_one_page(&srv);
		assert_int_equal(msrv_stop(&srv, 5000), 0);
		assert_true(msrv_log_contains(&srv, "memory hugetlb-2M pages"));
		msrv_cleanup(&srv);
	}

	/* A node that does not exist is an error, not a silent fallback. */
	run_memsrv(&r, (char *const[]){ "ferry-memsrv", "-s", (char *)secret, "-m", "8M", "-p", "0", "--numa-node",
					"1000", NULL });
	expect_exit(&r, 1, "NUMA node 1000 does not exist");
}

int main(void)
{
	/* Raw TCP sockets / 127.0.0.1 expectations: TCP only, whatever FERRY_TEST_TRANSPORT says. */
	setenv("FERRY_TEST_TRANSPORT", "tcp", 1);
	setenv("FERRY_TEST_HOST", "127.0.0.1", 1);

	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_help),
		cmocka_unit_test(test_config_errors_name_the_problem),
		cmocka_unit_test(test_startup_failures_say_why),
		cmocka_unit_test(test_sigterm_shuts_down_cleanly),
		cmocka_unit_test(test_pool_memory_modes),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
