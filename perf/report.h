/**
 * @file report.h
 * Results of `ferry-perf xport` and their renderings: JSON (jansson), CSV
 * (one row per measurement), a gnuplot script (throughput vs batch per queue
 * depth with the baselines as horizontal lines; latency by percentile next to
 * the TCP ping-pong) rendered to PNG/SVG, and the short human summary.
 */
#ifndef FERRY_PERF_REPORT_H
#define FERRY_PERF_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "dataplane/common/ferry_err.h"
#include "perf/baselines.h"
#include "perf/stats.h"

enum perf_op { PERF_READ = 0, PERF_WRITE = 1, PERF_NOPS = 2 };

const char *perf_op_name(enum perf_op op);

/** One throughput measurement: @c batch WRs per post, @c qd batches in flight. */
struct perf_tput {
	enum perf_op op;
	unsigned batch, qd;
	uint64_t ops;                /**< pages moved in the timed part */
	double seconds;
	double pages_per_s;
	double gbytes_per_s;         /**< 1e9 bytes/s */
	double ratio_to_tcp_stream;  /**< 0 when there is no baseline */
	double ratio_to_memcpy;
	uint64_t eagain;             /**< posts the transport refused with -EAGAIN (backpressure) */
};

struct perf_verify {
	uint64_t fill_pages;         /**< pages stamped before measuring */
	uint64_t read_checks;        /**< reads whose stamp was checked as they completed (all of them) */
	uint64_t pages_checked;      /**< whole pages compared: every latency read, one throughput
					  read in 64, and the final read-back pass */
	uint64_t errors;
	int passed;
	char first_error[256];
};

struct perf_host {
	char hostname[128];
	char kernel[256];
	char cpu_model[128];
	long cpus_online;
	char cpus_allowed[128];      /**< this process's CPU affinity ("0-1", "0"): pinned runs say so */
	uint64_t mem_total_bytes;
	char time_utc[32];
	char version[32];
	char build_type[32];
	char compiler[96];
};

struct perf_xport_result {
	const char *transport;       /**< "tcp" / "rdma" */
	char **servers;              /**< "host:port" */
	size_t nservers;
	size_t size;                 /**< bytes per work request (a page) */
	uint64_t pages;              /**< working set in pages */
	uint64_t iters;              /**< latency samples per op */
	double duration;             /**< seconds per throughput point (0 = iteration-bound) */
	uint64_t tput_ops;           /**< ops per throughput point when iteration-bound */
	const char *poll_mode;       /**< "busy" / "events" */

	struct perf_baselines base;

	int have_lat[PERF_NOPS];
	struct perf_lat lat[PERF_NOPS];
	uint64_t *lat_ns[PERF_NOPS]; /**< sorted samples (for the plot) */
	size_t lat_n[PERF_NOPS];

	struct perf_tput *tput;
	size_t ntput;

	struct perf_verify verify;
	struct perf_host host;
	double total_seconds;
};

/** Derived figures. A ratio is 0 (JSON null) when one side is missing. */
struct perf_ratios {
	double read_p50_vs_pingpong;
	double write_p50_vs_pingpong;
	const struct perf_tput *best[PERF_NOPS];         /**< best point per op (any batch) */
	const struct perf_tput *best_batched[PERF_NOPS]; /**< best with batch > 1 (else best) */
	double best_batched_read_vs_tcp_stream;
	double best_batched_read_vs_memcpy;
	double best_batched_write_vs_tcp_stream;
	double best_batched_write_vs_memcpy;
	/* Done-when checks; -1 = not applicable (missing measurement). */
	int verdict_read_bw;          /**< best batched read >= 0.5x tcp stream */
	int verdict_read_lat;         /**< read p50 <= 1.5x ping-pong p50 */
};

#define PERF_VERDICT_BW_MIN   0.5
#define PERF_VERDICT_LAT_MAX  1.5

void perf_ratios_compute(const struct perf_xport_result *r, struct perf_ratios *q);

/** Fill hostname, kernel, CPU, memory, time, version. */
void perf_host_fill(struct perf_host *h);

/**
 * Output plumbing shared by every ferry-perf subcommand: @p path "-" means
 * stdout. report_json_dump() writes @p root (not consumed) indented, in key
 * order; report_out_open()/report_out_close() bracket a text file (CSV, plot
 * script) and turn any write error into one message naming @p what and
 * @p path.
 */
int report_json_dump(json_t *root, const char *path, const char *what, struct ferry_err *err);
FILE *report_out_open(const char *path, const char *what, struct ferry_err *err);
int report_out_close(FILE *f, const char *path, const char *what, struct ferry_err *err);

/** Write the JSON document to @p path ("-" = stdout). */
int report_json_write(const struct perf_xport_result *r, const char *path, struct ferry_err *err);
/** Write CSV, one row per measurement, to @p path ("-" = stdout). */
int report_csv_write(const struct perf_xport_result *r, const char *path, struct ferry_err *err);
/**
 * Write the gnuplot script next to @p path (same name, ".gp") and run
 * gnuplot to render @p path (.png or .svg). When gnuplot is not installed
 * the script is still written and *@p rendered is 0; the message says so.
 * Returns < 0 only on a real failure (cannot write, gnuplot failed).
 */
int report_plot(const struct perf_xport_result *r, const char *path, int *rendered, char *script_path,
		size_t script_path_len, struct ferry_err *err);
/** The short aligned human summary. */
void report_summary(const struct perf_xport_result *r, FILE *out);

#endif /* FERRY_PERF_REPORT_H */
