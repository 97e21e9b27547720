/* The cluster secret and the challenge-response MACs (dataplane/common/auth.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataplane/common/auth.h"

static char tmpdir[64];

static int setup(void **state)
{
	(void)state;
	strcpy(tmpdir, "/tmp/ferry-auth-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static void test_generate_then_load(void **state)
{
	struct ferry_secret a, b;
	struct ferry_err err = {0};
	struct stat st;
	char path[128];

	(void)state;
	snprintf(path, sizeof(path), "%s/secret", tmpdir);
	assert_int_equal(ferry_secret_generate(path, &err), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(ferry_secret_load(path, &a, &err), 0);
	assert_int_equal(ferry_secret_load(path, &b, &err), 0);
	assert_memory_equal(a.key, b.key, sizeof(a.key));
	/* Never overwrite an existing secret: that would lock every peer out. */
	assert_int_equal(ferry_secret_generate(path, &err), -EEXIST);
	assert_non_null(strstr(err.msg, path));
}

static void test_refuses_readable_by_others(void **state)
{
	struct ferry_secret s;
	struct ferry_err err = {0};
	char path[128];

	(void)state;
	snprintf(path, sizeof(path), "%s/open", tmpdir);
	write_file(path, "0123456789abcdef0123456789abcdef\n", 0644);
	assert_int_equal(ferry_secret_load(path, &s, &err), -EPERM);
	assert_non_null(strstr(err.msg, "chmod 600"));
}

static void test_refuses_short_and_missing(void **state)
{
	struct ferry_secret s;
	struct ferry_err err = {0};
	char path[128];

	(void)state;
	snprintf(path, sizeof(path), "%s/short", tmpdir);
	write_file(path, "tooshort\n", 0600);
	assert_int_equal(ferry_secret_load(path, &s, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "too short"));
	snprintf(path, sizeof(path), "%s/absent", tmpdir);
	assert_int_equal(ferry_secret_load(path, &s, &err), -ENOENT);
}

static void test_trailing_newline_ignored(void **state)
{
	struct ferry_secret a, b;
	char p1[128], p2[128];

	(void)state;
	snprintf(p1, sizeof(p1), "%s/nl", tmpdir);
	snprintf(p2, sizeof(p2), "%s/nonl", tmpdir);
	write_file(p1, "0123456789abcdef0123456789abcdef\r\n", 0600);
	write_file(p2, "0123456789abcdef0123456789abcdef", 0600);
	assert_int_equal(ferry_secret_load(p1, &a, NULL), 0);
	assert_int_equal(ferry_secret_load(p2, &b, NULL), 0);
	assert_memory_equal(a.key, b.key, sizeof(a.key));
}

static void test_mac_binds_every_input(void **state)
{
	struct ferry_secret s, other;
	uint8_t na[FERRY_AUTH_NONCE_LEN], nb[FERRY_AUTH_NONCE_LEN];
	uint8_t mac[FERRY_AUTH_MAC_LEN];
	const char *secret = "0123456789abcdef0123456789abcdef";
	const char *secret2 = "0123456789abcdef0123456789abcdeX";

	(void)state;
	assert_int_equal(ferry_secret_from_bytes(secret, strlen(secret), &s, NULL), 0);
	assert_int_equal(ferry_secret_from_bytes(secret2, strlen(secret2), &other, NULL), 0);
	ferry_auth_nonce(na);
	ferry_auth_nonce(nb);
	assert_memory_not_equal(na, nb, sizeof(na));
	ferry_auth_mac(&s, "ferry-page-c", na, nb, "client", 6, mac);
	assert_int_equal(ferry_auth_verify(&s, "ferry-page-c", na, nb, "client", 6, mac), 0);
	/* Another secret, the other direction's label, swapped nonces, another name: all refused. */
	assert_int_equal(ferry_auth_verify(&other, "ferry-page-c", na, nb, "client", 6, mac), -EACCES);
	assert_int_equal(ferry_auth_verify(&s, "ferry-page-s", na, nb, "client", 6, mac), -EACCES);
	assert_int_equal(ferry_auth_verify(&s, "ferry-page-c", nb, na, "client", 6, mac), -EACCES);
	assert_int_equal(ferry_auth_verify(&s, "ferry-page-c", na, nb, "clienT", 6, mac), -EACCES);
	mac[31] ^= 1;
	assert_int_equal(ferry_auth_verify(&s, "ferry-page-c", na, nb, "client", 6, mac), -EACCES);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_generate_then_load),
		cmocka_unit_test(test_refuses_readable_by_others),
		cmocka_unit_test(test_refuses_short_and_missing),
		cmocka_unit_test(test_trailing_newline_ignored),
		cmocka_unit_test(test_mac_binds_every_input),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
