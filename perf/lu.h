/**
 * @file lu.h
 * A real blocked LU factorisation with partial pivoting (doubles,
 * column-major with a leading dimension, like LINPACK), the workload of
 * `ferry-perf plan`: its memory behaviour is what seed 002 traced.
 *
 * Right-looking and blocked (panel width @c nb): per step the panel is
 * factored with row interchanges inside the panel, the interchanges are
 * applied to the columns right of it (never to the L columns left of it, as
 * LINPACK's dgefa does not), U12 = L11^-1 A12, and the trailing matrix is
 * updated A22 -= L21 U12. Memory-wise: the factored part left of the panel
 * is never touched again, the panel is read and written, the trailing matrix
 * is read and written each step and shrinks as the steps go on.
 * lu_solve() applies the interchanges panel by panel (as dgesl does), so the
 * pair solves A x = b.
 */
#ifndef FERRY_PERF_LU_H
#define FERRY_PERF_LU_H

#include <stddef.h>

/** Factor the n x n matrix @p a (element (i, j) at a[i + j * lda]) in place; ipiv[n]. 0, or -1 if singular. */
int lu_factor(double *a, int n, int lda, int nb, int *ipiv);
/** Solve A x = b with the factors from lu_factor(); @p b (n) becomes x. */
void lu_solve(const double *a, int n, int lda, int nb, const int *ipiv, double *b);
/**
 * HPL's scaled residual ||A x - b||_inf / (eps (||A||_inf ||x||_inf + ||b||_inf) n)
 * for the original matrix @p a0; below 16 means the solve is right.
 */
double lu_residual(const double *a0, int n, int lda, const double *x, const double *b);

#endif /* FERRY_PERF_LU_H */
