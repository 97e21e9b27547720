/* ferry-pager configuration: flags, file, validation and error wording. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/pager/config.h"

static int run(struct pager_config *cfg, struct ferry_err *err, int argc, const char **argv)
{
	FILE *out = fopen("/dev/null", "w");
	int rc = pager_config_from_args(cfg, argc, (char **)argv, out, err);

	fclose(out);
	return rc;
}

static void test_flags(void **state)
{
	static struct pager_config cfg;
	struct ferry_err err = { 0 };
	const char *argv[] = { "ferry-pager", "-S", "/tmp/p.sock", "--allow", "uid:0, gid:5", "-m",
			       "127.0.0.1:7470,10.0.0.2:7471", "-s", "/tmp/secret", "-b", "64M", "-p", "16",
			       "--extent-size", "4M", NULL };

	(void)state;
	assert_int_equal(run(&cfg, &err, 15, argv), 0);
	assert_string_equal(cfg.socket, "/tmp/p.sock");
	assert_int_equal(cfg.allow.count, 2);
	assert_int_equal(cfg.nservers, 2);
	assert_string_equal(cfg.servers[1].host, "10.0.0.2");
	assert_int_equal(cfg.servers[1].port, 7471);
	assert_int_equal(cfg.vm_budget, 64u << 20);
	assert_int_equal(cfg.prefetch, 16);
	assert_int_equal(cfg.extent_size, 4u << 20);
}

static void test_errors(void **state)
{
	static struct pager_config cfg;
	struct ferry_err err = { 0 };
	const char *noallow[] = { "ferry-pager", NULL };
	const char *nosecret[] = { "ferry-pager", "-a", "uid:0", "-m", "h:1", NULL };
	const char *badbudget[] = { "ferry-pager", "-a", "uid:0", "-b", "123", NULL };
	const char *badallow[] = { "ferry-pager", "-a", "root", NULL };
	const char *help[] = { "ferry-pager", "--help", NULL };

	(void)state;
	assert_true(run(&cfg, &err, 1, noallow) < 0);
	assert_non_null(strstr(err.msg, "allow"));
	assert_true(run(&cfg, &err, 5, nosecret) < 0);
	assert_non_null(strstr(err.msg, "secret"));
	assert_true(run(&cfg, &err, 5, badbudget) < 0);
	assert_non_null(strstr(err.msg, "--vm-budget"));
	assert_true(run(&cfg, &err, 3, badallow) < 0);
	assert_int_equal(run(&cfg, &err, 2, help), 1);
}

static void test_file(void **state)
{
	static struct pager_config cfg;
	struct ferry_err err = { 0 };
	char path[] = "/tmp/pager-conf-XXXXXX";
	int fd = mkstemp(path);
	const char *text = "[pager]\nsocket = /tmp/a.sock\nallow = uid:1000\n[paging]\nvm_budget = 1M\nprefetch = 0\n"
			   "[pool]\nbogus = 1\n";
	const char *argv[] = { "ferry-pager", "-c", path, "-b", "2M", NULL };

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	assert_true(run(&cfg, &err, 5, argv) < 0);
	assert_non_null(strstr(err.msg, ":8:"));   /* names the line */
	assert_non_null(strstr(err.msg, "bogus"));
	fd = open(path, O_WRONLY | O_TRUNC);
	text = "[pager]\nsocket = /tmp/a.sock\nallow = uid:1000\n[paging]\nvm_budget = 1M\nprefetch = 0\n";
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	assert_int_equal(run(&cfg, &err, 5, argv), 0);
	assert_int_equal(cfg.vm_budget, 2u << 20);   /* the flag wins */
	assert_int_equal(cfg.prefetch, 0);
	assert_string_equal(cfg.config_file, path);
	/* A bad value is reported even after an earlier syntax error (the pager's order). */
	fd = open(path, O_WRONLY | O_TRUNC);
	text = "[pager]\nnot a key\nallow = uid:1000\nlog_level = loud\n";
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	assert_true(run(&cfg, &err, 5, argv) < 0);
	assert_non_null(strstr(err.msg, ":4: [pager] log_level: 'loud' is not a log level"));
	unlink(path);
}

/* The planned migration's sampler settings ([migrate] plan_*): defaults, flags, file, bad values. */
static void test_plan(void **state)
{
	static struct pager_config cfg;
	struct ferry_err err = { 0 };
	const char *defaults[] = { "ferry-pager", "-a", "uid:0", NULL };
	const char *flags[] = { "ferry-pager", "-a", "uid:0", "--plan-period-ms", "100", "--plan-block-pages", "8",
				"--plan-window", "2", "--plan-periods", "10", "--plan-history", "2", NULL };
	const char *zero[] = { "ferry-pager", "-a", "uid:0", "--plan-periods", "0", NULL };
	const char *big[] = { "ferry-pager", "-a", "uid:0", "--plan-window", "65", NULL };

	(void)state;
	assert_int_equal(run(&cfg, &err, 3, defaults), 0);
	assert_int_equal(cfg.plan_period_ms, 500);
	assert_int_equal(cfg.plan_block_pages, 16);
	assert_int_equal(cfg.plan_window, 1);
	assert_int_equal(cfg.plan_periods, 4);
	assert_int_equal(cfg.plan_history, 4);
	assert_int_equal(run(&cfg, &err, 13, flags), 0);
	assert_int_equal(cfg.plan_period_ms, 100);
	assert_int_equal(cfg.plan_block_pages, 8);
	assert_int_equal(cfg.plan_window, 2);
	assert_int_equal(cfg.plan_periods, 10);
	assert_int_equal(cfg.plan_history, 2);
	assert_true(run(&cfg, &err, 5, zero) < 0);
	assert_non_null(strstr(err.msg, "plan_periods"));
	assert_true(run(&cfg, &err, 5, big) < 0);
	assert_non_null(strstr(err.msg, "1..64"));
	pager_config_defaults(&cfg);
	assert_false(cfg.plan_continuous);
	assert_int_equal(pager_config_set(&cfg, "migrate", "plan_continuous", "1", "test", &err), 0);
	assert_true(cfg.plan_continuous);
	assert_true(pager_config_set(&cfg, "migrate", "plan_continuous", "yes", "test", &err) < 0);
	assert_true(pager_config_set(&cfg, "migrate", "plan_bogus", "1", "test", &err) < 0);
	assert_non_null(strstr(err.msg, "plan_bogus"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flags),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_file),
		cmocka_unit_test(test_plan),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
