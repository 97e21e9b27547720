/* ferry-memsrv configuration (dataplane/memsrv/config.h) and size units. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/memsrv/config.h"
#include "dataplane/common/units.h"

static char tmpdir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/ferry-cfg-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static const char *write_file(const char *name, const char *text)
{
	static char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

/* Run memsrv_config_from_args on a NULL-terminated argument list. */
static int run_args(struct memsrv_config *cfg, struct ferry_err *err, FILE *out, ...)
{
	char *argv[32];
	int argc = 0;
	va_list ap;

	argv[argc++] = (char *)"ferry-memsrv";
	va_start(ap, out);
	for (char *a; (a = va_arg(ap, char *)) != NULL;)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	memset(err, 0, sizeof(*err));
	return memsrv_config_from_args(cfg, argc, argv, out ? out : stdout, err);
}

static void expect_err(int rc, const struct ferry_err *err, const char *needle)
{
	if (rc >= 0)
		fail_msg("expected an error containing \"%s\", got success", needle);
	if (!strstr(err->msg, needle))
		fail_msg("error \"%s\" does not contain \"%s\"", err->msg, needle);
}

static const char *valid_conf =
	"# a comment\n"
	"[server]\n"
	"listen = 0.0.0.0\n"
	"port = 0\n"
	"transport = tcp\n"
	"secret_file = /etc/ferry/secret\n"
	"ready_file = /run/ferry/memsrv.port\n"
	"max_clients = 8\n"
	"\n"
	"[pool]\n"
	"size = 512M ; inline comment\n"
	"numa_node = 1\n"
	"hugepages = off\n"
	"prefault = no\n"
	"[limits]\n"
	"client_quota = 64M\n"
	"log_level = debug\n";

static void test_sizes(void **state)
{
	uint64_t v;
	char buf[FERRY_SIZE_STR];

	(void)state;
	assert_int_equal(ferry_size_parse("4096", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(ferry_size_parse("4096B", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(ferry_size_parse("64k", &v), 0);
	assert_int_equal(v, 65536);
	assert_int_equal(ferry_size_parse("512M", &v), 0);
	assert_int_equal(v, 512ull << 20);
	assert_int_equal(ferry_size_parse("1G", &v), 0);
	assert_int_equal(v, 1ull << 30);
	assert_int_equal(ferry_size_parse("1GiB", &v), 0);
	assert_int_equal(ferry_size_parse("2gb", &v), 0);
	assert_int_equal(v, 2ull << 30);
	assert_int_equal(ferry_size_parse("3T", &v), 0);
	assert_int_equal(v, 3ull << 40);
	const char *bad[] = { "", "G", "-1", "+1", " 1", "1.5G", "1X", "1 G", "1GG", "1iB", "0x10", "1Gx" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (ferry_size_parse(bad[i], &v) == 0)
			fail_msg("'%s' accepted", bad[i]);
	assert_int_equal(ferry_size_parse("18446744073709551615", &v), 0);
	assert_int_equal(ferry_size_parse("18446744073709551616", &v), -ERANGE);
	assert_int_equal(ferry_size_parse("17179869184G", &v), -ERANGE);
	assert_int_equal(ferry_size_parse(NULL, &v), -EINVAL);

	assert_string_equal(ferry_size_format(0, buf, sizeof(buf)), "0 B");
	assert_string_equal(ferry_size_format(4095, buf, sizeof(buf)), "4095 B");
	assert_string_equal(ferry_size_format(64ull << 20, buf, sizeof(buf)), "64 MiB");
	assert_string_equal(ferry_size_format(3ull << 29, buf, sizeof(buf)), "1.5 GiB");
	assert_string_equal(ferry_size_format(1ull << 30, buf, sizeof(buf)), "1 GiB");
}

static void test_defaults_and_required(void **state)
{
	struct memsrv_config cfg;
	struct ferry_err err;
	int rc;

	(void)state;
	memsrv_config_defaults(&cfg);
	assert_string_equal(cfg.listen, "127.0.0.1");
	assert_int_equal(cfg.port, 7470);
	assert_int_equal(cfg.transport, FX_KIND_TCP);
	assert_int_equal(cfg.max_clients, 64);
	assert_int_equal(cfg.numa_node, MEMSRV_NUMA_AUTO);
	assert_int_equal(cfg.hugepages, MEMSRV_HUGEPAGES_AUTO);

	rc = run_args(&cfg, &err, NULL, NULL);
	expect_err(rc, &err, "no secret file");
	rc = run_args(&cfg, &err, NULL, "-s", "/x/secret", NULL);
	expect_err(rc, &err, "no pool size");
	rc = run_args(&cfg, &err, NULL, "--secret-file", "/x/secret", "--pool-size", "1G", NULL);
	assert_int_equal(rc, 0);
	assert_int_equal(cfg.pool_size, 1ull << 30);
	/* The quota and the kept-bytes limit default to the pool size. */
	assert_int_equal(cfg.client_quota, 1ull << 30);
	assert_string_equal(cfg.secret_file, "/x/secret");
	assert_int_equal(cfg.kept_bytes, 1ull << 30);
	assert_int_equal(cfg.kept_max, MEMSRV_DEFAULT_KEPT_MAX);
	/* kept_bytes 0 (no KEEP) is a value, not "unset". */
	rc = run_args(&cfg, &err, NULL, "-s", "/x", "-m", "1G", "--kept-bytes", "0", "--kept-max", "7", NULL);
	assert_int_equal(rc, 0);
	assert_int_equal(cfg.kept_bytes, 0);
	assert_int_equal(cfg.kept_max, 7);
	rc = run_args(&cfg, &err, NULL, "-s", "/x", "-m", "1G", "--kept-bytes", "256M", NULL);
	assert_int_equal(rc, 0);
	assert_int_equal(cfg.kept_bytes, 256ull << 20);
}

static void test_file_values(void **state)
{
	struct memsrv_config cfg;
	struct ferry_err err;
	const char *path = write_file("ok.conf", valid_conf);

	(void)state;
	assert_int_equal(run_args(&cfg, &err, NULL, "-c", path, NULL), 0);
	assert_string_equal(cfg.listen, "0.0.0.0");
	assert_int_equal(cfg.port, 0);
	assert_string_equal(cfg.secret_file, "/etc/ferry/secret");
	assert_string_equal(cfg.ready_file, "/run/ferry/memsrv.port");
	assert_int_equal(cfg.max_clients, 8);
	assert_int_equal(cfg.pool_size, 512ull << 20);
	assert_int_equal(cfg.numa_node, 1);
	assert_int_equal(cfg.hugepages, MEMSRV_HUGEPAGES_OFF);
	assert_false(cfg.prefault);
	assert_int_equal(cfg.client_quota, 64ull << 20);
	assert_int_equal(cfg.log_level, 3);
	assert_string_equal(cfg.config_file, path);
}

static void test_flags_override_file_in_any_order(void **state)
{
	struct memsrv_config cfg;
	struct ferry_err err;
	const char *path = write_file("ok.conf", valid_conf);

	(void)state;
	/* A flag given before -c still wins over the file. */
	assert_int_equal(run_args(&cfg, &err, NULL, "--port", "9000", "-c", path, "--pool-size", "1G",
				  "--hugepages", "on", "--numa-node", "auto", "--prefault", "yes", "--transport", "rdma",
				  "-q", "128M", "--max-clients", "2", "--log-level", "warn", "-l", "127.0.0.2", NULL),
			 0);
	assert_int_equal(cfg.port, 9000);
	assert_int_equal(cfg.pool_size, 1ull << 30);
	assert_int_equal(cfg.hugepages, MEMSRV_HUGEPAGES_ON);
	assert_int_equal(cfg.numa_node, MEMSRV_NUMA_AUTO);
	assert_true(cfg.prefault);
	assert_int_equal(cfg.transport, FX_KIND_RDMA);
	assert_int_equal(cfg.client_quota, 128ull << 20);
	assert_int_equal(cfg.max_clients, 2);
	assert_int_equal(cfg.log_level, 1);
	assert_string_equal(cfg.listen, "127.0.0.2");
	/* Untouched keys keep the file's value. */
	assert_string_equal(cfg.ready_file, "/run/ferry/memsrv.port");
}

static void test_file_errors_name_file_line_key(void **state)
{
	struct memsrv_config cfg;
	struct ferry_err err;
	char want[256];
	int rc;

	(void)state;
	const char *p = write_file("unknown.conf", "[server]\nport = 1\n\nsecert_file = /x\n");

	rc = run_args(&cfg, &err, NULL, "-c", p, NULL);
	snprintf(want, sizeof(want), "%s:4: unknown key 'secert_file' in section [server]", p);
	expect_err(rc, &err, want);

	p = write_file("section.conf", "[server]\nport = 1\n[bogus]\nx = 1\n");
	rc = run_args(&cfg, &err, NULL, "-c", p, NULL);
	snprintf(want, sizeof(want), "%s:4: unknown section [bogus] with key 'x'", p);
	expect_err(rc, &err, want);

	p = write_file("nosection.conf", "port = 1\n");
	rc = run_args(&cfg, &err, NULL, "-c", p, NULL);
	snprintf(want, sizeof(want), "%s:1: key 'port' outside of a section", p);
	expect_err(rc, &err, want);

	/* A syntax error before a bad key is the one reported. */
	p = write_file("syntax.conf", "[server]\nthis line has no equals sign\nport = x\n");
	rc = run_args(&cfg, &err, NULL, "-c", p, NULL);
	snprintf(want, sizeof(want), "%s:2: syntax error", p);
	expect_err(rc, &err, want);

	p = write_file("syntax2.conf", "[server]\nport = x\n[pool\n");
	rc = run_args(&cfg, &err, NULL, "-c", p, NULL);
	snprintf(want, sizeof(want), "%s:2: [server] port: 'x' is not a port number", p);
	expect_err(rc, &err, want);

	char longline[400];

	snprintf(longline, sizeof(longline), "[server]\nsecret_file = /%0300d\nport = 1\n", 0);
	p = write_file("long.conf", longline);
	rc = run_args(&cfg, &err, NULL, "-c", p, NULL);
	snprintf(want, sizeof(want), "%s:2: line too long", p);
	expect_err(rc, &err, want);

	rc = run_args(&cfg, &err, NULL, "-c", "/nonexistent/ferry.conf", NULL);
	expect_err(rc, &err, "config file /nonexistent/ferry.conf: No such file or directory");
}

static void test_bad_values(void **state)
{
	static const struct {
		const char *flag, *value, *needle;
	} cases[] = {
		{ "--pool-size", "12X", "--pool-size: [pool] size: '12X' is not a size" },
		{ "--pool-size", "0", "positive multiple of 4 KiB" },
		{ "--pool-size", "1000", "positive multiple of 4 KiB" },
		{ "--port", "70000", "'70000' is not a port number" },
		{ "--port", "-1", "'-1' is not a port number" },
		{ "--transport", "udp", "'udp' is not a transport (tcp or rdma)" },
		{ "--listen", "localhost", "'localhost' is not an IPv4 address" },
		{ "--max-clients", "0", "not a client count" },
		{ "--max-clients", "100000", "not a client count" },
		{ "--numa-node", "-1", "not a NUMA node" },
		{ "--hugepages", "maybe", "'maybe' is not auto, on or off" },
		{ "--prefault", "perhaps", "'perhaps' is not yes or no" },
		{ "--client-quota", "0", "quota of 0" },
		{ "--client-quota", "lots", "'lots' is not a size" },
		{ "--log-level", "loud", "'loud' is not a log level" },
		{ "--kept-bytes", "much", "'much' is not a size" },
		{ "--kept-max", "-1", "not a number of extents" },
		{ "--kept-max", "65537", "not a number of extents" },
		{ "--kept-max", "3x", "not a number of extents" },
		{ "--secret-file", "", "path empty" },
	};
	struct memsrv_config cfg;
	struct ferry_err err;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = run_args(&cfg, &err, NULL, "-s", "/x", "-m", "1G", cases[i].flag, cases[i].value, NULL);

		expect_err(rc, &err, cases[i].needle);
	}
}

static void test_command_line_errors(void **state)
{
	struct memsrv_config cfg;
	struct ferry_err err;
	int rc;

	(void)state;
	rc = run_args(&cfg, &err, NULL, "--bogus", NULL);
	expect_err(rc, &err, "unknown option '--bogus'");
	rc = run_args(&cfg, &err, NULL, "-x", NULL);
	expect_err(rc, &err, "unknown option '-x'");
	rc = run_args(&cfg, &err, NULL, "--port", NULL);
	expect_err(rc, &err, "option '--port' needs a value");
	rc = run_args(&cfg, &err, NULL, "-s", "/x", "-m", "1G", "stray", NULL);
	expect_err(rc, &err, "unexpected argument 'stray'");
	/* set() directly: origin is what the caller says. */
	memsrv_config_defaults(&cfg);
	rc = memsrv_config_set(&cfg, "pool", "colour", "blue", "here", &err);
	expect_err(rc, &err, "here: unknown key 'colour' in section [pool]");
	rc = memsrv_config_set(&cfg, "limits", "x", "1", "here", &err);
	expect_err(rc, &err, "unknown key 'x' in section [limits]");
}

static void test_help_and_version(void **state)
{
	struct memsrv_config cfg;
	struct ferry_err err;
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);

	(void)state;
	assert_non_null(out);
	assert_int_equal(run_args(&cfg, &err, out, "--pool-size", "bad", "--help", NULL), 1);
	fflush(out);
	/* Every key is documented. */
	const char *keys[] = { "listen", "port", "transport", "secret_file", "ready_file", "max_clients", "size",
			       "numa_node", "hugepages", "prefault", "client_quota", "log_level", "--config" };

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (!strstr(text, keys[i]))
			fail_msg("--help does not mention %s", keys[i]);
	fclose(out);
	free(text);

	out = open_memstream(&text, &len);
	assert_int_equal(run_args(&cfg, &err, out, "-V", NULL), 1);
	fflush(out);
	assert_non_null(strstr(text, "ferry-memsrv "));
	fclose(out);
	free(text);
}

/* The shipped example must stay valid: it is what people copy. */
static void test_example_file_parses(void **state)
{
	struct memsrv_config cfg;
	struct ferry_err err;
	const char *path = FERRY_SOURCE_DIR "/dataplane/memsrv/ferry-memsrv.conf.example";

	(void)state;
	if (run_args(&cfg, &err, NULL, "-c", path, NULL))
		fail_msg("%s", err.msg);
	assert_string_equal(cfg.listen, "127.0.0.1");
	assert_int_equal(cfg.port, 7470);
	assert_int_equal(cfg.pool_size, 1ull << 30);
	assert_string_equal(cfg.secret_file, "/etc/ferry/secret");
	assert_int_equal(cfg.client_quota, 1ull << 30);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_defaults_and_required),
		cmocka_unit_test(test_file_values),
		cmocka_unit_test(test_flags_override_file_in_any_order),
		cmocka_unit_test(test_file_errors_name_file_line_key),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_command_line_errors),
		cmocka_unit_test(test_help_and_version),
		cmocka_unit_test(test_example_file_parses),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
