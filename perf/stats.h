/**
 * @file stats.h
 * Exact latency statistics from a sample array (no histogram): sort the
 * samples, read percentiles by nearest rank, so every figure reported is a
 * latency that was actually observed.
 */
#ifndef FERRY_PERF_STATS_H
#define FERRY_PERF_STATS_H

#include <stddef.h>
#include <stdint.h>

/** Summary of a set of latency samples, in microseconds. */
struct perf_lat {
	size_t n;                 /**< samples; 0 = nothing measured (all fields 0) */
	double min_us, mean_us, max_us, stddev_us;
	double p50_us, p90_us, p99_us, p999_us;
};

/** Sort @p ns[0..n) ascending (nanoseconds). */
void stats_sort_ns(uint64_t *ns, size_t n);

/**
 * Nearest-rank percentile of sorted @p ns: the smallest sample such that at
 * least @p q (0..1] of all samples are <= it. Returns 0 for n == 0.
 */
uint64_t stats_percentile_ns(const uint64_t *ns, size_t n, double q);

/** Sort @p ns in place and summarise it into @p out (microseconds). */
void stats_summarize_ns(uint64_t *ns, size_t n, struct perf_lat *out);

/** Arithmetic mean of @p v[0..n) (0 for n == 0). */
double stats_mean(const double *v, size_t n);

/** Monotonic clock in nanoseconds (CLOCK_MONOTONIC). */
uint64_t stats_now_ns(void);

#endif /* FERRY_PERF_STATS_H */
