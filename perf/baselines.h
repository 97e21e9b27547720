/**
 * @file baselines.h
 * What the machine and the kernel allow, measured in the same run as the
 * Ferry figures so that those can be read as ratios:
 *  - a plain loopback TCP stream (one connection, 1 MiB writes, a reader
 *    thread that discards): the kernel's bulk bandwidth;
 *  - a TCP ping-pong of @c size bytes each way (blocking send/recv,
 *    TCP_NODELAY), both threads pinned to one CPU: the kernel's round trip
 *    for one page, where the kernel itself puts two threads that wake each
 *    other. Unpinned, a run lands on one CPU or on two by chance, and on a
 *    small VM a wakeup across CPUs costs several times the whole round trip
 *    on one, so an unpinned baseline is bimodal. The same ping-pong across
 *    two CPUs is measured too and reported beside it;
 *  - memcpy of @c size-byte pages at random offsets over a working set of
 *    the benchmark's size: the machine's memory bandwidth for the same
 *    access pattern.
 */
#ifndef FERRY_PERF_BASELINES_H
#define FERRY_PERF_BASELINES_H

#include <stddef.h>
#include <stdint.h>

#include "dataplane/common/ferry_err.h"
#include "perf/stats.h"

struct perf_baseline_opts {
	size_t size;                 /**< ping-pong message and memcpy page size */
	size_t working_set;          /**< memcpy source (and destination) bytes */
	double stream_seconds;       /**< TCP stream measurement time (plus a short warm-up) */
	size_t stream_write;         /**< bytes per write() of the stream (1 MiB) */
	unsigned pingpong_iters;     /**< measured round trips */
	unsigned pingpong_warmup;    /**< unmeasured round trips first */
	unsigned cross_iters;        /**< round trips of the across-CPUs ping-pong (default 2000) */
	double memcpy_seconds;       /**< memcpy measurement time */
	int skip_pingpong;           /**< the caller measures it interleaved (perf_pingpong_*) */
	uint64_t seed;               /**< page order for memcpy */
};

struct perf_baselines {
	int measured;                /**< 0 when --no-baselines */
	/* TCP stream */
	double stream_gbps;          /**< 1e9 bytes/s */
	uint64_t stream_bytes;
	double stream_seconds;
	size_t stream_write;
	/* TCP ping-pong */
	size_t pingpong_size;
	struct perf_lat pingpong;
	uint64_t *pingpong_ns;       /**< sorted samples (malloc'd; for the plot) */
	size_t pingpong_n;
	int pingpong_interleaved;    /**< measured in chunks alternating with the benchmark's own */
	int pingpong_cpu;            /**< CPU both threads ran on (-1: not pinned) */
	struct perf_lat pingpong_cross; /**< the same with echo and client on two CPUs (n = 0: one CPU) */
	/* memcpy */
	double memcpy_gbps;
	uint64_t memcpy_bytes;
	double memcpy_seconds;
	size_t memcpy_working_set;
};

/**
 * Measure all three. @p progress (may be NULL) is called with a short label
 * before each. Returns 0 or -errno with @p err set.
 */
int perf_baselines_run(const struct perf_baseline_opts *opts, struct perf_baselines *out,
		       void (*progress)(const char *what), struct ferry_err *err);

/**
 * A TCP ping-pong kept open, so that a benchmark can interleave its own
 * round trips with the baseline's in small chunks and both see the same
 * machine (on a shared host, load moves on a scale of seconds).
 */
struct perf_pingpong;

/** Echo thread pinned to @p echo_cpu, client side to @p client_cpu (-1 = not pinned). */
int perf_pingpong_open(size_t size, int echo_cpu, int client_cpu, struct perf_pingpong **pp,
		       struct ferry_err *err);
/** @p n round trips; each one's time in @p ns (may be NULL for a warm-up). */
int perf_pingpong_run(struct perf_pingpong *pp, unsigned n, uint64_t *ns, struct ferry_err *err);
/** Close; returns the echo side's error, if it had one (0 otherwise). */
int perf_pingpong_close(struct perf_pingpong *pp);
/** Summarise @p n samples (taken over by @p out, sorted) as the ping-pong baseline. */
void perf_pingpong_set(struct perf_baselines *out, size_t size, uint64_t *ns, size_t n);

/** The CPU this thread runs on, and another one it may run on (-1 if none). */
int perf_pick_cpus(int *same, int *other);

/** The measurements one by one (exported for reuse by other subcommands). */
int perf_tcp_stream(const struct perf_baseline_opts *opts, struct perf_baselines *out, struct ferry_err *err);
int perf_tcp_pingpong(const struct perf_baseline_opts *opts, struct perf_baselines *out, struct ferry_err *err);
int perf_tcp_pingpong_cross(const struct perf_baseline_opts *opts, struct perf_baselines *out,
			    struct ferry_err *err);
int perf_memcpy_bw(const struct perf_baseline_opts *opts, struct perf_baselines *out, struct ferry_err *err);

void perf_baselines_free(struct perf_baselines *b);

#endif /* FERRY_PERF_BASELINES_H */
