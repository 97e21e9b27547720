/*
 * Blocked right-looking LU with partial pivoting, LINPACK layout (lu.h).
 * Loops keep the row index innermost: column-major, so they stream.
 */
#include "perf/lu.h"

#include <float.h>
#include <math.h>

#define A(i, j) a[(size_t)(i) + (size_t)(j) * (size_t)lda]

static void swap_rows(double *a, int lda, int r1, int r2, int c0, int c1)
{
	for (int c = c0; c < c1; c++) {
		double t = A(r1, c);

		A(r1, c) = A(r2, c);
		A(r2, c) = t;
	}
}

/* Unblocked LU of the panel: rows k0..n-1 of columns k0..k0+kb-1. */
static int panel(double *a, int n, int lda, int k0, int kb, int *ipiv)
{
	for (int j = k0; j < k0 + kb; j++) {
		int p = j;
		double best = fabs(A(j, j));

		for (int i = j + 1; i < n; i++)
			if (fabs(A(i, j)) > best) {
				best = fabs(A(i, j));
				p = i;
			}
		ipiv[j] = p;
		if (best == 0.0)
			return -1;
		if (p != j)
			swap_rows(a, lda, j, p, k0, k0 + kb);   /* the whole panel row */
		double inv = 1.0 / A(j, j);

		for (int i = j + 1; i < n; i++)
			A(i, j) *= inv;
		for (int c = j + 1; c < k0 + kb; c++) {
			double t = A(j, c);

			for (int i = j + 1; i < n; i++)
				A(i, c) -= A(i, j) * t;
		}
	}
	return 0;
}

int lu_factor(double *a, int n, int lda, int nb, int *ipiv)
{
	for (int k0 = 0; k0 < n; k0 += nb) {
		int kb = n - k0 < nb ? n - k0 : nb;
		int k1 = k0 + kb;

		if (panel(a, n, lda, k0, kb, ipiv) < 0)
			return -1;
		/* interchanges to the right of the panel only (LINPACK leaves L alone) */
		for (int j = k0; j < k1; j++)
			if (ipiv[j] != j)
				swap_rows(a, lda, j, ipiv[j], k1, n);
		for (int c = k1; c < n; c++) {
			/* U12 = L11^-1 A12 (unit lower triangular solve) */
			for (int j = k0; j < k1; j++) {
				double t = A(j, c);

				for (int i = j + 1; i < k1; i++)
					A(i, c) -= A(i, j) * t;
			}
			/* A22 -= L21 U12 */
			for (int j = k0; j < k1; j++) {
				double t = A(j, c);

				for (int i = k1; i < n; i++)
					A(i, c) -= A(i, j) * t;
			}
		}
	}
	return 0;
}

void lu_solve(const double *a, int n, int lda, int nb, const int *ipiv, double *b)
{
	/* L y = P b, panel by panel: that panel's interchanges, then its eliminations */
	for (int k0 = 0; k0 < n; k0 += nb) {
		int k1 = n - k0 < nb ? n : k0 + nb;

		for (int j = k0; j < k1; j++)
			if (ipiv[j] != j) {
				double t = b[j];

				b[j] = b[ipiv[j]];
				b[ipiv[j]] = t;
			}
		for (int j = k0; j < k1; j++)
			for (int i = j + 1; i < n; i++)
				b[i] -= A(i, j) * b[j];
	}
	/* U x = y */
	for (int j = n - 1; j >= 0; j--) {
		b[j] /= A(j, j);
		for (int i = 0; i < j; i++)
			b[i] -= A(i, j) * b[j];
	}
}

double lu_residual(const double *a, int n, int lda, const double *x, const double *b)
{
	double rmax = 0, amax = 0, xmax = 0, bmax = 0;

	for (int i = 0; i < n; i++) {
		double r = -b[i], rowsum = 0;

		for (int j = 0; j < n; j++) {
			r += A(i, j) * x[j];
			rowsum += fabs(A(i, j));
		}
		rmax = fmax(rmax, fabs(r));
		amax = fmax(amax, rowsum);
		xmax = fmax(xmax, fabs(x[i]));
		bmax = fmax(bmax, fabs(b[i]));
	}
	return rmax / (DBL_EPSILON * (amax * xmax + bmax) * n);
}
