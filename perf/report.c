#include "perf/report.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <sched.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef FERRY_VERSION
#define FERRY_VERSION "0.0.0"
#endif
#ifndef FERRY_BUILD_TYPE
#define FERRY_BUILD_TYPE "unknown"
#endif

extern char **environ;

const char *perf_op_name(enum perf_op op)
{
	return op == PERF_READ ? "read" : op == PERF_WRITE ? "write" : "?";
}

/* ------------------------------------------------------------------ ratios */

static double ratio(double a, double b)
{
	return (a > 0 && b > 0 && isfinite(a) && isfinite(b)) ? a / b : 0.0;
}

void perf_ratios_compute(const struct perf_xport_result *r, struct perf_ratios *q)
{
	memset(q, 0, sizeof(*q));
	for (size_t i = 0; i < r->ntput; i++) {
		const struct perf_tput *t = &r->tput[i];

		if (!q->best[t->op] || t->gbytes_per_s > q->best[t->op]->gbytes_per_s)
			q->best[t->op] = t;
		if (t->batch > 1 && (!q->best_batched[t->op] ||
				     t->gbytes_per_s > q->best_batched[t->op]->gbytes_per_s))
			q->best_batched[t->op] = t;
	}
	for (int op = 0; op < PERF_NOPS; op++)
		if (!q->best_batched[op])
			q->best_batched[op] = q->best[op];

	const struct perf_baselines *b = &r->base;
	double pp = b->measured ? b->pingpong.p50_us : 0;
	double st = b->measured ? b->stream_gbps : 0;
	double mc = b->measured ? b->memcpy_gbps : 0;

	if (r->have_lat[PERF_READ])
		q->read_p50_vs_pingpong = ratio(r->lat[PERF_READ].p50_us, pp);
	if (r->have_lat[PERF_WRITE])
		q->write_p50_vs_pingpong = ratio(r->lat[PERF_WRITE].p50_us, pp);
	if (q->best_batched[PERF_READ]) {
		q->best_batched_read_vs_tcp_stream = ratio(q->best_batched[PERF_READ]->gbytes_per_s, st);
		q->best_batched_read_vs_memcpy = ratio(q->best_batched[PERF_READ]->gbytes_per_s, mc);
	}
	if (q->best_batched[PERF_WRITE]) {
		q->best_batched_write_vs_tcp_stream = ratio(q->best_batched[PERF_WRITE]->gbytes_per_s, st);
		q->best_batched_write_vs_memcpy = ratio(q->best_batched[PERF_WRITE]->gbytes_per_s, mc);
	}
	q->verdict_read_bw = q->best_batched_read_vs_tcp_stream > 0
		? q->best_batched_read_vs_tcp_stream >= PERF_VERDICT_BW_MIN : -1;
	q->verdict_read_lat = q->read_p50_vs_pingpong > 0
		? q->read_p50_vs_pingpong <= PERF_VERDICT_LAT_MAX : -1;
}

/* ------------------------------------------------------------------ host */

static void read_first_match(const char *path, const char *key, char *out, size_t outlen)
{
	FILE *f = fopen(path, "r");
	char line[512];
	size_t klen = strlen(key);

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, klen) != 0)
			continue;
		char *v = strchr(line + klen, ':');

		if (!v)
			continue;
		v++;
		while (*v == ' ' || *v == '\t')
			v++;
		v[strcspn(v, "\n")] = '\0';
		snprintf(out, outlen, "%s", v);
		break;
	}
	fclose(f);
}

/* The affinity mask as a list: "0-3,6". */
static void cpuset_str(char *out, size_t len)
{
	cpu_set_t set;
	size_t off = 0;

	out[0] = '\0';
	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return;
	for (int c = 0; c < CPU_SETSIZE && off + 16 < len; c++) {
		if (!CPU_ISSET(c, &set))
			continue;
		int e = c;

		while (e + 1 < CPU_SETSIZE && CPU_ISSET(e + 1, &set))
			e++;
		off += (size_t)snprintf(out + off, len - off, off ? ",%d" : "%d", c);
		if (e > c)
			off += (size_t)snprintf(out + off, len - off, "-%d", e);
		c = e;
	}
}

void perf_host_fill(struct perf_host *h)
{
	struct utsname u;
	char mem[64] = "";
	time_t now = time(NULL);
	struct tm tm;

	memset(h, 0, sizeof(*h));
	if (gethostname(h->hostname, sizeof(h->hostname) - 1) != 0)
		snprintf(h->hostname, sizeof(h->hostname), "unknown");
	if (uname(&u) == 0)
		snprintf(h->kernel, sizeof(h->kernel), "%s %s %s", u.sysname, u.release, u.machine);
	read_first_match("/proc/cpuinfo", "model name", h->cpu_model, sizeof(h->cpu_model));
	read_first_match("/proc/meminfo", "MemTotal", mem, sizeof(mem));
	h->mem_total_bytes = strtoull(mem, NULL, 10) * 1024ull;
	h->cpus_online = sysconf(_SC_NPROCESSORS_ONLN);
	cpuset_str(h->cpus_allowed, sizeof(h->cpus_allowed));
	gmtime_r(&now, &tm);
	strftime(h->time_utc, sizeof(h->time_utc), "%Y-%m-%dT%H:%M:%SZ", &tm);
	snprintf(h->version, sizeof(h->version), "%s", FERRY_VERSION);
	snprintf(h->build_type, sizeof(h->build_type), "%s", FERRY_BUILD_TYPE);
#ifdef __VERSION__
	snprintf(h->compiler, sizeof(h->compiler), "%s", __VERSION__);
#endif
}

/* ------------------------------------------------------------------ JSON */

/* A positive finite number, or null. */
static json_t *jnum(double v)
{
	return (v > 0 && isfinite(v)) ? json_real(v) : json_null();
}

static json_t *jlat(const struct perf_lat *l)
{
	return json_pack("{s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
			 "samples", (json_int_t)l->n,
			 "min_us", jnum(l->min_us), "mean_us", jnum(l->mean_us),
			 "p50_us", jnum(l->p50_us), "p90_us", jnum(l->p90_us),
			 "p99_us", jnum(l->p99_us), "p999_us", jnum(l->p999_us),
			 "max_us", jnum(l->max_us), "stddev_us", json_real(l->stddev_us));
}

static json_t *jverdict(int v, double value, double threshold, const char *cmp)
{
	return json_pack("{s:o, s:f, s:s, s:o}", "value", jnum(value), "threshold", threshold,
			 "compare", cmp, "pass", v < 0 ? json_null() : json_boolean(v));
}

static json_t *build_json(const struct perf_xport_result *r)
{
	struct perf_ratios q;
	json_t *root = json_object();
	json_t *servers = json_array();

	perf_ratios_compute(r, &q);
	for (size_t i = 0; i < r->nservers; i++)
		json_array_append_new(servers, json_string(r->servers[i]));

	json_object_set_new(root, "tool", json_string("ferry-perf xport"));
	json_object_set_new(root, "version", json_string(r->host.version));
	json_object_set_new(root, "transport", json_string(r->transport));
	json_object_set_new(root, "servers", servers);
	json_object_set_new(root, "size", json_integer((json_int_t)r->size));
	json_object_set_new(root, "pages", json_integer((json_int_t)r->pages));
	json_object_set_new(root, "working_set_bytes", json_integer((json_int_t)(r->pages * r->size)));
	json_object_set_new(root, "iters", json_integer((json_int_t)r->iters));
	json_object_set_new(root, "duration_s", r->duration > 0 ? json_real(r->duration) : json_null());
	json_object_set_new(root, "ops_per_point", r->duration > 0 ? json_null()
			    : json_integer((json_int_t)r->tput_ops));
	json_object_set_new(root, "poll", json_string(r->poll_mode));

	const struct perf_baselines *b = &r->base;

	if (b->measured) {
		json_object_set_new(root, "baselines", json_pack(
			"{s:{s:o, s:I, s:f, s:I}, s:o, s:{s:o, s:I, s:I, s:f}}",
			"tcp_stream", "gbytes_per_s", jnum(b->stream_gbps), "bytes", (json_int_t)b->stream_bytes,
			"seconds", b->stream_seconds, "write_size", (json_int_t)b->stream_write,
			"tcp_pingpong", jlat(&b->pingpong),
			"memcpy", "gbytes_per_s", jnum(b->memcpy_gbps),
			"working_set_bytes", (json_int_t)b->memcpy_working_set,
			"page_size", (json_int_t)r->size, "seconds", b->memcpy_seconds));
		json_t *jpp = json_object_get(json_object_get(root, "baselines"), "tcp_pingpong");

		json_object_set_new(jpp, "size", json_integer((json_int_t)b->pingpong_size));
		json_object_set_new(jpp, "interleaved_with_latency", json_boolean(b->pingpong_interleaved));
		json_object_set_new(jpp, "cpu", b->pingpong_cpu >= 0 ? json_integer(b->pingpong_cpu) : json_null());
		json_object_set_new(json_object_get(root, "baselines"), "tcp_pingpong_cross_cpu",
				    b->pingpong_cross.n ? jlat(&b->pingpong_cross) : json_null());
	} else {
		json_object_set_new(root, "baselines", json_null());
	}

	json_t *lat = json_object();

	for (int op = 0; op < PERF_NOPS; op++)
		if (r->have_lat[op]) {
			json_t *l = jlat(&r->lat[op]);

			json_object_set_new(l, "ratio_p50_to_pingpong",
					    jnum(op == PERF_READ ? q.read_p50_vs_pingpong : q.write_p50_vs_pingpong));
			json_object_set_new(lat, perf_op_name(op), l);
		}
	json_object_set_new(root, "latency", lat);

	json_t *tp = json_array();

	for (size_t i = 0; i < r->ntput; i++) {
		const struct perf_tput *t = &r->tput[i];

		json_array_append_new(tp, json_pack(
			"{s:s, s:i, s:i, s:I, s:f, s:o, s:o, s:o, s:o, s:I}",
			"op", perf_op_name(t->op), "batch", (int)t->batch, "qd", (int)t->qd,
			"pages", (json_int_t)t->ops, "seconds", t->seconds,
			"pages_per_s", jnum(t->pages_per_s), "gbytes_per_s", jnum(t->gbytes_per_s),
			"ratio_to_tcp_stream", jnum(t->ratio_to_tcp_stream),
			"ratio_to_memcpy", jnum(t->ratio_to_memcpy), "eagain", (json_int_t)t->eagain));
	}
	json_object_set_new(root, "throughput", tp);

	json_t *best = json_object();

	for (int op = 0; op < PERF_NOPS; op++) {
		const struct perf_tput *t = q.best_batched[op];

		if (t)
			json_object_set_new(best, perf_op_name(op), json_pack(
				"{s:i, s:i, s:o, s:o}", "batch", (int)t->batch, "qd", (int)t->qd,
				"gbytes_per_s", jnum(t->gbytes_per_s), "pages_per_s", jnum(t->pages_per_s)));
	}
	json_object_set_new(root, "best_batched", best);

	json_object_set_new(root, "ratios", json_pack(
		"{s:o, s:o, s:o, s:o, s:o, s:o}",
		"read_p50_vs_pingpong", jnum(q.read_p50_vs_pingpong),
		"write_p50_vs_pingpong", jnum(q.write_p50_vs_pingpong),
		"best_batched_read_vs_tcp_stream", jnum(q.best_batched_read_vs_tcp_stream),
		"best_batched_read_vs_memcpy", jnum(q.best_batched_read_vs_memcpy),
		"best_batched_write_vs_tcp_stream", jnum(q.best_batched_write_vs_tcp_stream),
		"best_batched_write_vs_memcpy", jnum(q.best_batched_write_vs_memcpy)));

	int all = (q.verdict_read_bw == 1 && q.verdict_read_lat == 1) ? 1
		: (q.verdict_read_bw == 0 || q.verdict_read_lat == 0) ? 0 : -1;

	json_object_set_new(root, "verdict", json_pack(
		"{s:o, s:o, s:o}",
		"batched_read_vs_tcp_stream",
		jverdict(q.verdict_read_bw, q.best_batched_read_vs_tcp_stream, PERF_VERDICT_BW_MIN, ">="),
		"read_p50_vs_pingpong",
		jverdict(q.verdict_read_lat, q.read_p50_vs_pingpong, PERF_VERDICT_LAT_MAX, "<="),
		"pass", all < 0 ? json_null() : json_boolean(all)));

	const struct perf_verify *v = &r->verify;

	json_object_set_new(root, "verification", json_pack(
		"{s:I, s:I, s:I, s:I, s:b, s:s?}",
		"fill_pages", (json_int_t)v->fill_pages, "read_checks", (json_int_t)v->read_checks,
		"pages_checked", (json_int_t)v->pages_checked, "errors", (json_int_t)v->errors,
		"passed", v->passed, "first_error", v->first_error[0] ? v->first_error : NULL));

	const struct perf_host *h = &r->host;

	json_object_set_new(root, "host", json_pack(
		"{s:s, s:s, s:s, s:I, s:s, s:I, s:s, s:s, s:s}",
		"hostname", h->hostname, "kernel", h->kernel, "cpu_model", h->cpu_model,
		"cpus_online", (json_int_t)h->cpus_online, "cpus_allowed", h->cpus_allowed,
		"mem_total_bytes", (json_int_t)h->mem_total_bytes,
		"time_utc", h->time_utc, "build_type", h->build_type, "compiler", h->compiler));
	json_object_set_new(root, "total_seconds", json_real(r->total_seconds));
	return root;
}

int report_json_dump(json_t *root, const char *path, const char *what, struct ferry_err *err)
{
	size_t flags = JSON_INDENT(2) | JSON_PRESERVE_ORDER;
	int rc;

	if (strcmp(path, "-") == 0) {
		rc = json_dumpf(root, stdout, flags);
		fputc('\n', stdout);
		fflush(stdout);
	} else {
		rc = json_dump_file(root, path, flags);
	}
	if (rc != 0)
		return ferry_err_set(err, EIO, "%s: cannot write %s: %s", what, path, strerror(errno));
	return 0;
}

int report_json_write(const struct perf_xport_result *r, const char *path, struct ferry_err *err)
{
	json_t *root = build_json(r);
	int rc;

	if (!root)
		return ferry_err_set(err, ENOMEM, "json: out of memory");
	rc = report_json_dump(root, path, "json", err);
	json_decref(root);
	return rc;
}

/* ------------------------------------------------------------------ CSV */

FILE *report_out_open(const char *path, const char *what, struct ferry_err *err)
{
	FILE *f = strcmp(path, "-") == 0 ? stdout : fopen(path, "w");

	if (!f)
		ferry_err_set(err, errno, "%s: cannot write %s: %s", what, path, strerror(errno));
	return f;
}

int report_out_close(FILE *f, const char *path, const char *what, struct ferry_err *err)
{
	int bad = ferror(f);

	if (f == stdout)
		bad |= fflush(f);
	else
		bad |= fclose(f);
	if (bad)
		return ferry_err_set(err, EIO, "%s: error writing %s", what, path);
	return 0;
}

/* "%.6g" or empty when not positive/finite. */
static void csv_num(FILE *f, double v)
{
	if (v > 0 && isfinite(v))
		fprintf(f, ",%.6g", v);
	else
		fputs(",", f);
}

static void csv_lat(FILE *f, const struct perf_lat *l)
{
	csv_num(f, l->min_us);
	csv_num(f, l->mean_us);
	csv_num(f, l->p50_us);
	csv_num(f, l->p90_us);
	csv_num(f, l->p99_us);
	csv_num(f, l->p999_us);
	csv_num(f, l->max_us);
}

int report_csv_write(const struct perf_xport_result *r, const char *path, struct ferry_err *err)
{
	FILE *f = report_out_open(path, "csv", err);
	struct perf_ratios q;
	const struct perf_baselines *b = &r->base;

	if (!f)
		return -errno;
	perf_ratios_compute(r, &q);
	fputs("kind,op,transport,servers,size,batch,qd,count,seconds,pages_per_s,gbytes_per_s,"
	      "min_us,mean_us,p50_us,p90_us,p99_us,p999_us,max_us,"
	      "ratio_to_tcp_stream,ratio_to_memcpy,ratio_p50_to_pingpong\n", f);
#define PREFIX(kind, op) fprintf(f, "%s,%s,%s,%zu,%zu", kind, op, r->transport, r->nservers, r->size)
	if (b->measured) {
		PREFIX("baseline_tcp_stream", "");
		fprintf(f, ",,,%llu", (unsigned long long)(b->stream_bytes / (r->size ? r->size : 1)));
		csv_num(f, b->stream_seconds);
		csv_num(f, b->stream_seconds > 0 ? (double)b->stream_bytes / (double)r->size / b->stream_seconds : 0);
		csv_num(f, b->stream_gbps);
		fputs(",,,,,,,,,,\n", f);

		PREFIX("baseline_tcp_pingpong", "");
		fprintf(f, ",1,1,%zu,,,", b->pingpong.n);
		csv_lat(f, &b->pingpong);
		fputs(",,,\n", f);

		if (b->pingpong_cross.n) {
			PREFIX("baseline_tcp_pingpong_cross_cpu", "");
			fprintf(f, ",1,1,%zu,,,", b->pingpong_cross.n);
			csv_lat(f, &b->pingpong_cross);
			fputs(",,,\n", f);
		}

		PREFIX("baseline_memcpy", "");
		fprintf(f, ",,,%llu", (unsigned long long)(b->memcpy_bytes / (r->size ? r->size : 1)));
		csv_num(f, b->memcpy_seconds);
		csv_num(f, b->memcpy_seconds > 0 ? (double)b->memcpy_bytes / (double)r->size / b->memcpy_seconds : 0);
		csv_num(f, b->memcpy_gbps);
		fputs(",,,,,,,,,,\n", f);
	}
	for (int op = 0; op < PERF_NOPS; op++) {
		if (!r->have_lat[op])
			continue;
		PREFIX("latency", perf_op_name(op));
		fprintf(f, ",1,1,%zu,,,", r->lat[op].n);
		csv_lat(f, &r->lat[op]);
		fputs(",,", f);
		csv_num(f, op == PERF_READ ? q.read_p50_vs_pingpong : q.write_p50_vs_pingpong);
		fputs("\n", f);
	}
	for (size_t i = 0; i < r->ntput; i++) {
		const struct perf_tput *t = &r->tput[i];

		PREFIX("throughput", perf_op_name(t->op));
		fprintf(f, ",%u,%u,%llu", t->batch, t->qd, (unsigned long long)t->ops);
		csv_num(f, t->seconds);
		csv_num(f, t->pages_per_s);
		csv_num(f, t->gbytes_per_s);
		fputs(",,,,,,,", f);
		csv_num(f, t->ratio_to_tcp_stream);
		csv_num(f, t->ratio_to_memcpy);
		fputs(",\n", f);
	}
#undef PREFIX
	return report_out_close(f, path, "csv", err);
}

/* ------------------------------------------------------------------ plot */

/* Find an executable in PATH. */
static int have_program(const char *name)
{
	const char *path = getenv("PATH");
	char buf[4096];

	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path) {
		size_t n = strcspn(path, ":");

		if (n > 0 && n + strlen(name) + 2 < sizeof(buf)) {
			snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, path, name);
			if (access(buf, X_OK) == 0)
				return 1;
		}
		path += n;
		if (*path == ':')
			path++;
	}
	return 0;
}

/* Gnuplot string literal contents: keep printable ASCII, drop quotes and backslashes. */
static void gp_str(FILE *f, const char *s)
{
	for (; *s; s++)
		if (*s >= 0x20 && *s < 0x7f && *s != '"' && *s != '\\')
			fputc(*s, f);
}

/*
 * Sorted samples as "x latency_us" where x = 1/(1-q) (q = the sample's
 * quantile), thinned to points at least 0.5% apart on the log axis.
 */
static void gp_percentile_block(FILE *f, const char *name, const uint64_t *ns, size_t n)
{
	double last = -1;

	fprintf(f, "$%s << EOD\n", name);
	for (size_t i = 0; i < n; i++) {
		double qv = ((double)i + 0.5) / (double)n;
		double x = 1.0 / (1.0 - qv);
		double lx = log10(x);

		if (i + 1 < n && i > 0 && lx - last < 0.005)
			continue;
		last = lx;
		fprintf(f, "%.6g %.6g\n", x, (double)ns[i] / 1e3);
	}
	fputs("EOD\n", f);
}

static int write_gp(const struct perf_xport_result *r, const char *out_path, const char *gp_path, int svg,
		    struct ferry_err *err)
{
	FILE *f = fopen(gp_path, "w");
	const struct perf_baselines *b = &r->base;
	unsigned qds[64];
	size_t nqd = 0;

	if (!f)
		return ferry_err_set(err, errno, "plot: cannot write %s: %s", gp_path, strerror(errno));

	for (size_t i = 0; i < r->ntput; i++) {
		size_t k;

		for (k = 0; k < nqd && qds[k] != r->tput[i].qd; k++)
			;
		if (k == nqd && nqd < 64)
			qds[nqd++] = r->tput[i].qd;
	}

	fprintf(f, "# ferry-perf xport plot (generated; render with: gnuplot %s)\n", gp_path);
	if (svg) {
		fputs("set terminal svg size 1400,600 dynamic noenhanced font 'Sans,12'\n", f);
	} else {
		fputs("if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
		      "  set terminal pngcairo size 1400,600 noenhanced font 'Sans,10'\n"
		      "} else {\n"
		      "  set terminal png size 1400,600 noenhanced\n"
		      "}\n", f);
	}
	fputs("set output \"", f);
	gp_str(f, out_path);
	fputs("\"\n\n", f);

	/* Data: throughput per (op, qd), x = batch. */
	for (int op = 0; op < PERF_NOPS; op++)
		for (size_t k = 0; k < nqd; k++) {
			int any = 0;

			for (size_t i = 0; i < r->ntput; i++)
				any |= r->tput[i].op == (enum perf_op)op && r->tput[i].qd == qds[k];
			if (!any)
				continue;
			fprintf(f, "$tput_%s_qd%u << EOD\n", perf_op_name((enum perf_op)op), qds[k]);
			for (size_t i = 0; i < r->ntput; i++)
				if (r->tput[i].op == (enum perf_op)op && r->tput[i].qd == qds[k])
					fprintf(f, "%u %.6g\n", r->tput[i].batch, r->tput[i].gbytes_per_s);
			fputs("EOD\n", f);
		}
	for (int op = 0; op < PERF_NOPS; op++)
		if (r->have_lat[op] && r->lat_ns[op]) {
			char name[32];

			snprintf(name, sizeof(name), "lat_%s", perf_op_name((enum perf_op)op));
			gp_percentile_block(f, name, r->lat_ns[op], r->lat_n[op]);
		}
	if (b->measured && b->pingpong_ns)
		gp_percentile_block(f, "lat_pingpong", b->pingpong_ns, b->pingpong_n);

	fputs("\nset multiplot layout 1,2 title \"", f);
	fprintf(f, "ferry-perf xport   transport=%s  servers=%zu  size=%zu  pages=%llu  poll=%s  cpus=", r->transport,
		r->nservers, r->size, (unsigned long long)r->pages, r->poll_mode);
	gp_str(f, r->host.cpus_allowed);
	fputs("   ", f);
	gp_str(f, r->host.hostname);
	fprintf(f, "  %s\" font ',13'\n", r->host.time_utc);

	/* Left: throughput vs batch. */
	fputs("set title 'Throughput vs batch size (one line per queue depth; solid = read, dashed = write)'\n"
	      "set logscale x 2\nset xlabel 'batch (work requests per post, one signalled)'\n"
	      "set ylabel 'GB/s (1e9 bytes/s)'\nset yrange [0:*]\nset grid\n"
	      "set key top left box opaque\n", f);
	{
		unsigned bmin = 0, bmax = 0;

		for (size_t i = 0; i < r->ntput; i++) {
			if (!bmin || r->tput[i].batch < bmin)
				bmin = r->tput[i].batch;
			if (r->tput[i].batch > bmax)
				bmax = r->tput[i].batch;
		}
		if (bmin) {
			fprintf(f, "set xrange [%g:%g]\n", bmin / 1.4, bmax * 1.4);
			fputs("set xtics (", f);
			int first = 1;

			for (unsigned x = 1; x <= bmax * 2 && x > 0; x *= 2) {
				fprintf(f, "%s'%u' %u", first ? "" : ", ", x, x);
				first = 0;
			}
			fputs(")\n", f);
		}
	}
	fputs("plot ", f);
	int first = 1;

	for (int op = 0; op < PERF_NOPS; op++)
		for (size_t k = 0; k < nqd; k++) {
			int any = 0;

			for (size_t i = 0; i < r->ntput; i++)
				any |= r->tput[i].op == (enum perf_op)op && r->tput[i].qd == qds[k];
			if (!any)
				continue;
			fprintf(f, "%s$tput_%s_qd%u using 1:2 with linespoints lc %zu dt %d lw 2 pt 7 title '%s qd %u'",
				first ? "" : ", \\\n     ", perf_op_name((enum perf_op)op), qds[k], k + 1,
				op == PERF_READ ? 1 : 2, perf_op_name((enum perf_op)op), qds[k]);
			first = 0;
		}
	if (b->measured) {
		fprintf(f, "%s%.6g with lines lc rgb 'black' dt 3 lw 2 title 'tcp stream %.2f GB/s', \\\n"
			"     %.6g with lines lc rgb 'gray40' dt 4 lw 2 title 'memcpy %.2f GB/s'",
			first ? "" : ", \\\n     ", b->stream_gbps, b->stream_gbps, b->memcpy_gbps, b->memcpy_gbps);
		first = 0;
	}
	if (first)
		fputs("NaN notitle", f);
	fputs("\n\n", f);

	/* Right: latency by percentile. */
	fputs("set title 'Unbatched latency (batch 1, qd 1) by percentile'\n"
	      "unset logscale\nset logscale x 10\nset logscale y 10\nset xrange [1:*]\nset yrange [*:*]\n"
	      "set xlabel 'percentile'\nset ylabel 'round trip (us)'\n"
	      "set xtics ('0%%' 1, '50%%' 2, '90%%' 10, '99%%' 100, '99.9%%' 1000, '99.99%%' 10000, "
	      "'99.999%%' 100000)\n"
	      "set mxtics 10\nset key top left box opaque\n", f);
	fputs("plot ", f);
	first = 1;
	for (int op = 0; op < PERF_NOPS; op++)
		if (r->have_lat[op] && r->lat_ns[op]) {
			fprintf(f, "%s$lat_%s using 1:2 with lines lw 2 lc %d title 'ferry %s (p50 %.1f us)'",
				first ? "" : ", \\\n     ", perf_op_name((enum perf_op)op), op == PERF_READ ? 1 : 2,
				perf_op_name((enum perf_op)op), r->lat[op].p50_us);
			first = 0;
		}
	if (b->measured && b->pingpong_ns) {
		fprintf(f, "%s$lat_pingpong using 1:2 with lines lw 2 lc rgb 'black' dt 3 "
			"title 'tcp ping-pong %zu B (p50 %.1f us)'",
			first ? "" : ", \\\n     ", b->pingpong_size, b->pingpong.p50_us);
		first = 0;
	}
	if (first)
		fputs("NaN notitle", f);
	fputs("\n\nunset multiplot\n", f);
	return report_out_close(f, gp_path, "plot", err);
}

int report_plot(const struct perf_xport_result *r, const char *path, int *rendered, char *script_path,
		size_t script_path_len, struct ferry_err *err)
{
	const char *dot = strrchr(path, '.');
	const char *slash = strrchr(path, '/');
	int svg;
	char gp[4096];

	*rendered = 0;
	if (dot && (!slash || dot > slash) && strcasecmp(dot, ".svg") == 0)
		svg = 1;
	else if (dot && (!slash || dot > slash) && strcasecmp(dot, ".png") == 0)
		svg = 0;
	else
		return ferry_err_set(err, EINVAL, "plot: %s: the file name must end in .png or .svg", path);
	snprintf(gp, sizeof(gp), "%.*s.gp", (int)(dot - path), path);
	if (script_path)
		snprintf(script_path, script_path_len, "%s", gp);

	int rc = write_gp(r, path, gp, svg, err);

	if (rc < 0)
		return rc;
	if (!have_program("gnuplot")) {
		ferry_err_set(err, ENOENT, "plot: gnuplot is not installed (apt-get install gnuplot-nox); "
			      "wrote %s, render it with: gnuplot %s", gp, gp);
		return 0;
	}

	char *argv[] = { "gnuplot", gp, NULL };
	pid_t pid;
	int st;

	rc = posix_spawnp(&pid, "gnuplot", NULL, NULL, argv, environ);
	if (rc != 0)
		return ferry_err_set(err, rc, "plot: cannot run gnuplot: %s", strerror(rc));
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return ferry_err_set(err, errno, "plot: waitpid: %s", strerror(errno));
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return ferry_err_set(err, EIO, "plot: gnuplot %s failed (status %d)", gp,
				     WIFEXITED(st) ? WEXITSTATUS(st) : -1);

	struct stat sb;

	if (stat(path, &sb) != 0 || sb.st_size == 0)
		return ferry_err_set(err, EIO, "plot: gnuplot did not produce %s", path);
	*rendered = 1;
	return 0;
}

/* ------------------------------------------------------------------ summary */

static const char *pf(int v)
{
	return v < 0 ? "n/a" : v ? "PASS" : "FAIL";
}

void report_summary(const struct perf_xport_result *r, FILE *out)
{
	const struct perf_baselines *b = &r->base;
	struct perf_ratios q;

	perf_ratios_compute(r, &q);
	fprintf(out, "ferry-perf xport  transport=%s  servers=%zu  size=%zu  pages=%llu  poll=%s  cpus=%s\n",
		r->transport, r->nservers, r->size, (unsigned long long)r->pages, r->poll_mode,
		r->host.cpus_allowed[0] ? r->host.cpus_allowed : "?");
	if (b->measured) {
		char cross[48] = "";

		if (b->pingpong_cross.n)
			snprintf(cross, sizeof(cross), " (%.1f us across cpus)", b->pingpong_cross.p50_us);
		fprintf(out, "  baselines: tcp stream %.2f GB/s | tcp ping-pong p50 %.1f us%s | memcpy %.2f GB/s\n",
			b->stream_gbps, b->pingpong.p50_us, cross, b->memcpy_gbps);
	}
	else
		fprintf(out, "  baselines: not measured (--no-baselines)\n");
	for (int op = 0; op < PERF_NOPS; op++) {
		if (!r->have_lat[op])
			continue;
		const struct perf_lat *l = &r->lat[op];
		double rr = op == PERF_READ ? q.read_p50_vs_pingpong : q.write_p50_vs_pingpong;

		fprintf(out, "  %-5s latency  p50 %6.1f us  p99 %6.1f us  p99.9 %6.1f us", perf_op_name((enum perf_op)op),
			l->p50_us, l->p99_us, l->p999_us);
		if (rr > 0)
			fprintf(out, "   (%.2fx ping-pong)", rr);
		fputc('\n', out);
	}
	for (int op = 0; op < PERF_NOPS; op++) {
		const struct perf_tput *t = q.best[op];

		if (!t)
			continue;
		char where[48];

		snprintf(where, sizeof(where), "(batch %u, qd %u)", t->batch, t->qd);
		fprintf(out, "  %-5s best     %6.2f GB/s %-19s %9.0f pages/s", perf_op_name((enum perf_op)op),
			t->gbytes_per_s, where, t->pages_per_s);
		if (t->ratio_to_tcp_stream > 0)
			fprintf(out, "   %.2fx tcp stream  %.2fx memcpy", t->ratio_to_tcp_stream, t->ratio_to_memcpy);
		fputc('\n', out);
	}
	const struct perf_verify *v = &r->verify;

	fprintf(out, "  verify: %llu pages stamped, %llu reads checked, %llu pages compared: %s\n",
		(unsigned long long)v->fill_pages, (unsigned long long)v->read_checks,
		(unsigned long long)v->pages_checked, v->passed ? "OK" : "FAILED");
	if (!v->passed && v->first_error[0])
		fprintf(out, "          first error: %s\n", v->first_error);
	if (r->have_lat[PERF_READ] || q.best[PERF_READ]) {
		char bw[64] = "", lat[64] = "";

		if (q.best_batched_read_vs_tcp_stream > 0)
			snprintf(bw, sizeof(bw), " (%.2fx)", q.best_batched_read_vs_tcp_stream);
		if (q.read_p50_vs_pingpong > 0)
			snprintf(lat, sizeof(lat), " (%.2fx)", q.read_p50_vs_pingpong);
		fprintf(out, "  verdict: batched read >= %.1fx stream%s: %s; read p50 <= %.1fx ping-pong%s: %s\n",
			PERF_VERDICT_BW_MIN, bw, pf(q.verdict_read_bw), PERF_VERDICT_LAT_MAX, lat,
			pf(q.verdict_read_lat));
	}
	fflush(out);
}
