#include "perf/stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

void stats_sort_ns(uint64_t *ns, size_t n)
{
	if (n > 1)
		qsort(ns, n, sizeof(*ns), cmp_u64);
}

uint64_t stats_percentile_ns(const uint64_t *ns, size_t n, double q)
{
	if (n == 0)
		return 0;
	if (q <= 0.0)
		return ns[0];
	if (q >= 1.0)
		return ns[n - 1];
	/* rank = ceil(q * n), 1-based; guard against q*n landing a hair above an integer. */
	double r = ceil(q * (double)n - 1e-9);
	size_t rank = r < 1.0 ? 1 : (size_t)r;

	if (rank > n)
		rank = n;
	return ns[rank - 1];
}

void stats_summarize_ns(uint64_t *ns, size_t n, struct perf_lat *out)
{
	memset(out, 0, sizeof(*out));
	if (n == 0)
		return;
	stats_sort_ns(ns, n);

	long double sum = 0, sq = 0;

	for (size_t i = 0; i < n; i++)
		sum += (long double)ns[i];
	long double mean = sum / (long double)n;

	for (size_t i = 0; i < n; i++) {
		long double d = (long double)ns[i] - mean;

		sq += d * d;
	}
	out->n = n;
	out->min_us = (double)ns[0] / 1e3;
	out->max_us = (double)ns[n - 1] / 1e3;
	out->mean_us = (double)mean / 1e3;
	out->stddev_us = n > 1 ? sqrt((double)(sq / (long double)(n - 1))) / 1e3 : 0.0;
	out->p50_us = (double)stats_percentile_ns(ns, n, 0.50) / 1e3;
	out->p90_us = (double)stats_percentile_ns(ns, n, 0.90) / 1e3;
	out->p99_us = (double)stats_percentile_ns(ns, n, 0.99) / 1e3;
	out->p999_us = (double)stats_percentile_ns(ns, n, 0.999) / 1e3;
}

double stats_mean(const double *v, size_t n)
{
	double s = 0;

	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		s += v[i];
	return s / (double)n;
}

uint64_t stats_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
