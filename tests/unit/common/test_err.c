/* Error records (dataplane/common/ferry_err.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "dataplane/common/ferry_err.h"

static void test_set_returns_negative(void **state)
{
	struct ferry_err err = {0};

	(void)state;
	assert_int_equal(ferry_err_set(&err, ENOMEM, "pool full: %d MiB", 64), -ENOMEM);
	assert_int_equal(ferry_err_set(&err, -EINVAL, "x"), -EINVAL);
	assert_int_equal(err.code, -EINVAL);
	assert_int_equal(ferry_err_set(NULL, EIO, "ignored"), -EIO);
	/* 0 is not an error code: callers must still see a failure. */
	assert_true(ferry_err_set(&err, 0, "odd") < 0);
}

static void test_prefix_and_truncation(void **state)
{
	struct ferry_err err = {0};
	char big[600];

	(void)state;
	ferry_err_set(&err, ECONNREFUSED, "connection refused");
	assert_int_equal(ferry_err_prefix(&err, "connect %s: ", "127.0.0.1:7470"), -ECONNREFUSED);
	assert_string_equal(err.msg, "connect 127.0.0.1:7470: connection refused");
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ferry_err_set(&err, EINVAL, "%s", big);
	assert_int_equal(strlen(err.msg), FERRY_ERR_MSG_MAX - 1);
	ferry_err_clear(&err);
	assert_int_equal(err.code, 0);
	assert_string_equal(err.msg, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_set_returns_negative),
		cmocka_unit_test(test_prefix_and_truncation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
