/* The LU workload of `ferry-perf plan` (perf/lu.h): it must really solve
 * A x = b (its memory behaviour only means something if it is a real LU), for
 * orders that are and are not multiples of the panel width, with pivoting
 * needed (a zero on the diagonal), and refuse a singular matrix. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "perf/lu.h"

static void solve_check(int n, int nb, int lda, bool zero_diag)
{
	double *a = calloc((size_t)lda * n, sizeof(double)), *a0 = calloc((size_t)lda * n, sizeof(double));
	double *b = calloc(n, sizeof(double)), *x = calloc(n, sizeof(double));
	int *ipiv = calloc(n, sizeof(int));
	uint64_t rng = 88172645463325252ull;

	assert_non_null(a);
	assert_non_null(a0);
	assert_non_null(b);
	assert_non_null(x);
	assert_non_null(ipiv);
	for (int j = 0; j < n; j++)
		for (int i = 0; i < n; i++) {
			rng ^= rng << 13;
			rng ^= rng >> 7;
			rng ^= rng << 17;
			a[i + (size_t)j * lda] = (double)(rng >> 11) / (double)(1ull << 53) - 0.5;
		}
	if (zero_diag)
		for (int i = 0; i < n; i++)
			a[i + (size_t)i * lda] = 0;   /* no step can go without a row interchange */
	memcpy(a0, a, (size_t)lda * n * sizeof(double));
	/* x = 1..n: b = A x */
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++)
			b[i] += a[i + (size_t)j * lda] * (j + 1);
	memcpy(x, b, n * sizeof(double));
	assert_int_equal(lu_factor(a, n, lda, nb, ipiv), 0);
	lu_solve(a, n, lda, nb, ipiv, x);
	assert_true(lu_residual(a0, n, lda, x, b) < 16.0);
	for (int i = 0; i < n; i++)
		assert_true(fabs(x[i] - (i + 1)) < 1e-6 * n);
	free(a);
	free(a0);
	free(b);
	free(x);
	free(ipiv);
}

static void test_solves(void **state)
{
	(void)state;
	solve_check(1, 1, 1, false);
	solve_check(64, 16, 64, false);
	solve_check(100, 16, 108, false);     /* 100 = 6 panels of 16 + 4 */
	solve_check(75, 8, 80, true);
	solve_check(50, 64, 50, false);       /* one panel wider than the matrix */
}

static void test_singular(void **state)
{
	double a[9] = { 1, 2, 3, 2, 4, 6, 0, 1, 1 };   /* column 1 = 2 x column 0 */
	int ipiv[3];

	(void)state;
	assert_int_equal(lu_factor(a, 3, 3, 2, ipiv), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_solves),
		cmocka_unit_test(test_singular),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
