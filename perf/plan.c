/*
 * ferry-perf plan: the phase planner's prediction table on a LINPACK-like
 * workload (issue #5 items 4 and 5, seed 002).
 *
 * What runs: a real blocked LU factorisation with partial pivoting (lu.h) of
 * an n x n matrix of doubles (column-major, leading dimension n + 8 like the
 * seed's 18000/18008) that lives in a memfd mapped shared and registered on a
 * userfaultfd (MINOR + sync WP). A fault-handling thread runs the access
 * sampler (access_sampler.h): every sample period it write-protects the
 * matrix and drops its PTEs, then classifies each 16-page block as
 * read/write/clean from the faults it takes. The planner records one row per
 * period; after the run the same trace is scored for every window size asked
 * for, so the rows of the table come from ONE run.
 *
 * What is reported, per window size (in sample periods):
 *  - the seed's four misprediction rates A(w|c), A(w|r), A(c|w), A(r|w)
 *    (planner.h has the exact definitions) and how many predictions of each
 *    class they stand on;
 *  - what a migration planned this way would re-send against pre-copy alone
 *    (struct plan_cost: each window is one push round; pre-copy re-sends the
 *    blocks written during it, the planner only the ones it pushed and then
 *    saw written) and the ratio, with issue #5's target: <= 0.5.
 * Beside it: the LU's time without sampling (baseline) and with, the
 * sampler's fault counts, and the LU's scaled residual (HPL's check: the
 * factorisation that ran under the sampler must still be right, < 16).
 *
 * The sample period: the seed sampled every 500 ms an order-18000 LU, i.e.
 * about two periods per panel step. An order-3072 LU takes seconds, not
 * minutes, so the default period (40 ms) keeps that proportion, not the
 * absolute figure; --period 500ms with a larger --n reproduces it literally.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <linux/userfaultfd.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/common/ferry_err.h"
#include "dataplane/common/units.h"
#include "dataplane/migrate/access_sampler.h"
#include "dataplane/migrate/planner.h"
#include "dataplane/vmm/ferry_vmm.h"
#include "perf/lu.h"
#include "perf/perf.h"
#include "perf/plan.h"
#include "perf/report.h"
#include "perf/stats.h"

#define PG 4096u
#define MAX_WINDOWS 16
#define MAX_HISTORY 8
#define RESENT_TARGET_MAX 0.5   /* issue #5: at most half the bytes pre-copy re-sends */
#define RESIDUAL_MAX 16.0       /* HPL's threshold */

struct pl_opts {
	int n, nb, lda;
	unsigned block_pages;
	uint64_t period_ns;
	unsigned windows[MAX_WINDOWS];
	unsigned nwindows;
	unsigned history[MAX_HISTORY];   /* predictor look-back in periods; 1 = the seed's */
	unsigned nhistory;
	uint64_t seed;
	unsigned min_periods;     /* repeat the LU until this many periods were recorded */
	bool baseline, quick, quiet, strict;
	unsigned timeout;
	const char *json, *csv, *plot;
};

struct pl_window {
	unsigned h;               /* history */
	unsigned w;
	struct plan_rates r;
	struct plan_cost c;
	double resent_ratio;      /* planned / pre-copy re-sent bytes; < 0 when pre-copy re-sent nothing */
};

struct pl {
	struct pl_opts o;
	struct perf_host host;
	/* memory */
	size_t len;               /* memfd bytes (page-rounded) */
	int memfd, uffd;
	double *mem;              /* the matrix, in the memfd */
	double *a0;               /* pristine copy (not sampled) */
	double *b, *x;
	int *ipiv;
	/* sampling */
	struct planner *pl;
	struct plan_trace trace;
	struct access_sampler *s;
	pthread_t thread;
	bool thread_started;
	int stop_efd, ready_efd;
	atomic_uint_fast64_t periods;     /* written by the fault thread */
	/* fault-thread results (read after join) */
	int thread_rc;                    /* read after the join */
	atomic_bool thread_failed;        /* the LU loop's early exit */
	char thread_err[FERRY_ERR_MSG_MAX];
	uint64_t overruns, arm_ns, handle_ns, unexpected, handle_errors, drop_errors_logged;
	struct plan_rates online;
	struct access_sampler_stats st;
	/* results */
	double lu_s, baseline_s, residual;
	unsigned reps;
	bool lu_failed;
	uint64_t class_count[PLAN_NCLASSES];
	struct pl_window win[MAX_HISTORY][MAX_WINDOWS];
	bool online_matches;
	double total_s;
};

static void progress(const struct pl *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void progress(const struct pl *p, const char *fmt, ...)
{
	va_list ap;

	if (p->o.quiet)
		return;
	va_start(ap, fmt);
	fprintf(stderr, "ferry-perf plan: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

void perf_plan_usage(FILE *out)
{
	fputs(
"usage: ferry-perf plan [options]\n"
"\n"
"The phase planner's misprediction table (seed 002) on a LINPACK-like workload: a real\n"
"blocked LU factorisation runs in a memfd registered on a userfaultfd while the access\n"
"sampler classifies every block (16 pages) as read/write/clean per sample period (MINOR\n"
"faults after dropping PTEs for reads, sync write-protect faults for writes). From that\n"
"one trace, for each window size: A(w|c), A(w|r), A(c|w), A(r|w) (predicted class ->\n"
"actual class over the window, the predictor being the block's class in the period\n"
"before the window), and the bytes a planned migration re-sends against pre-copy alone.\n"
"\n"
"  -n, --n N            matrix order (default 3072: 72 MiB; --quick 384)\n"
"      --nb NB          LU panel width (default 64; --quick 16)\n"
"      --lda LDA        leading dimension (default n + 8, as the seed's 18000/18008)\n"
"      --period TIME    sample period: 40ms (default; --quick 4ms), 0.5s, 500ms, 800us\n"
"      --block-pages N  pages per block (default 16, the seed's)\n"
"      --windows LIST   window sizes in sample periods (default 1,2,4,8,16; --quick 1,2,4)\n"
"      --history LIST   predictors to score: H = predict a block's class over the last H\n"
"                       periods before the window (default 1, the seed's predictor; e.g.\n"
"                       1,2,4 adds a table per H: an extension, not in the seed)\n"
"      --min-periods K  repeat the LU (reloading the matrix, as LINPACK regenerates it)\n"
"                       until K periods were recorded (default 0; --quick 12)\n"
"      --no-baseline    skip the unsampled LU run that measures the sampler's cost\n"
"      --seed N         matrix contents (default 1)\n"
"      --quick          tiny sizes for the smoke test\n"
"      --json FILE      write JSON (\"-\" = stdout; the summary then goes to stderr)\n"
"      --csv FILE       write CSV, one row per window size\n"
"      --plot FILE      rates and re-sent bytes vs window size rendered to FILE by gnuplot\n"
"                       (SVG if it ends in .svg, else PNG; the script is kept as FILE with .gp\n"
"                       for its extension, written even without gnuplot)\n"
"      --strict         exit 4 when the planner (the first --history) re-sends more than\n"
"                       half of what pre-copy re-sends at any window size\n"
"      --timeout SEC    watchdog (default 600, 0 = none)\n"
"  -q, --quiet          no progress lines\n"
"  -h, --help\n"
"\n"
"Exit status: 0 ok, 1 error, 2 usage, 3 the LU's residual failed, 4 --strict verdict failed.\n",
	      out);
}

enum { O_NB = 256, O_LDA, O_PERIOD, O_BLOCK_PAGES, O_WINDOWS, O_HISTORY, O_MIN_PERIODS, O_NO_BASELINE, O_SEED, O_QUICK,
       O_JSON, O_CSV, O_PLOT, O_STRICT, O_TIMEOUT };

static const struct option pl_long[] = {
	{ "n", required_argument, NULL, 'n' },
	{ "nb", required_argument, NULL, O_NB },
	{ "lda", required_argument, NULL, O_LDA },
	{ "period", required_argument, NULL, O_PERIOD },
	{ "block-pages", required_argument, NULL, O_BLOCK_PAGES },
	{ "windows", required_argument, NULL, O_WINDOWS },
	{ "history", required_argument, NULL, O_HISTORY },
	{ "min-periods", required_argument, NULL, O_MIN_PERIODS },
	{ "no-baseline", no_argument, NULL, O_NO_BASELINE },
	{ "seed", required_argument, NULL, O_SEED },
	{ "quick", no_argument, NULL, O_QUICK },
	{ "json", required_argument, NULL, O_JSON },
	{ "csv", required_argument, NULL, O_CSV },
	{ "plot", required_argument, NULL, O_PLOT },
	{ "strict", no_argument, NULL, O_STRICT },
	{ "timeout", required_argument, NULL, O_TIMEOUT },
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static int usage_err(const char *what, const char *arg)
{
	fprintf(stderr, "ferry-perf plan: %s%s%s\n", what, arg ? " " : "", arg ? arg : "");
	perf_plan_usage(stderr);
	return -1;
}

/* "40ms", "0.5s", "800us", "40" (ms) -> nanoseconds; 0 on a bad value. */
static uint64_t parse_period(const char *s)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || !(v > 0) || !isfinite(v))
		return 0;
	if (*end == 0 || strcmp(end, "ms") == 0)
		v *= 1e6;
	else if (strcmp(end, "s") == 0)
		v *= 1e9;
	else if (strcmp(end, "us") == 0)
		v *= 1e3;
	else
		return 0;
	if (v < 1e5 || v > 600e9)   /* 100 us .. 10 min */
		return 0;
	return (uint64_t)v;
}

/* "1,2,4" -> list[], at most @p max entries in 1..100000. */
static int parse_list(const char *s, unsigned *list, unsigned *n, unsigned max)
{
	char buf[256], *save = NULL, *tok;

	snprintf(buf, sizeof(buf), "%s", s);
	*n = 0;
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		uint64_t v;

		if (*n == max || ferry_size_parse(tok, &v) < 0 || v < 1 || v > 100000)
			return -1;
		list[(*n)++] = (unsigned)v;
	}
	return *n ? 0 : -1;
}

static int parse_windows(const char *s, struct pl_opts *o)
{
	return parse_list(s, o->windows, &o->nwindows, MAX_WINDOWS);
}

static int parse_int(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	return ferry_size_parse(s, out) < 0 || *out < min || *out > max ? -1 : 0;
}

static int parse_opts(int argc, char **argv, struct pl_opts *o)
{
	bool n_set = false, nb_set = false, period_set = false, windows_set = false, minp_set = false;
	uint64_t v;
	int c;

	memset(o, 0, sizeof(*o));
	o->n = 3072;
	o->nb = 64;
	o->block_pages = PLAN_DEFAULT_BLOCK_PAGES;
	o->period_ns = 40 * 1000000ull;
	(void)parse_windows("1,2,4,8,16", o);
	o->history[0] = 1;
	o->nhistory = 1;
	o->seed = 1;
	o->baseline = true;
	o->timeout = 600;
	optind = 1;
	while ((c = getopt_long(argc, argv, "n:qh", pl_long, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (parse_int(optarg, 16, 20000, &v) < 0)
				return usage_err("--n needs an order in 16..20000, not", optarg);
			o->n = (int)v;
			n_set = true;
			break;
		case O_NB:
			if (parse_int(optarg, 1, 1024, &v) < 0)
				return usage_err("--nb needs 1..1024, not", optarg);
			o->nb = (int)v;
			nb_set = true;
			break;
		case O_LDA:
			if (parse_int(optarg, 16, 30000, &v) < 0)
				return usage_err("--lda needs 16..30000, not", optarg);
			o->lda = (int)v;
			break;
		case O_PERIOD:
			o->period_ns = parse_period(optarg);
			if (!o->period_ns)
				return usage_err("--period needs a time in 100us..10min (40ms, 0.5s, 800us), not", optarg);
			period_set = true;
			break;
		case O_BLOCK_PAGES:
			if (parse_int(optarg, 1, 1u << 20, &v) < 0)
				return usage_err("--block-pages needs 1..1M, not", optarg);
			o->block_pages = (unsigned)v;
			break;
		case O_WINDOWS:
			if (parse_windows(optarg, o) < 0)
				return usage_err("--windows needs up to 16 sizes in 1..100000 (1,2,4,8,16), not", optarg);
			windows_set = true;
			break;
		case O_HISTORY:
			if (parse_list(optarg, o->history, &o->nhistory, MAX_HISTORY) < 0)
				return usage_err("--history needs up to 8 look-backs in 1..100000 (1,2,4), not", optarg);
			break;
		case O_MIN_PERIODS:
			if (parse_int(optarg, 0, 1000000, &v) < 0)
				return usage_err("--min-periods needs 0..1000000, not", optarg);
			o->min_periods = (unsigned)v;
			minp_set = true;
			break;
		case O_NO_BASELINE: o->baseline = false; break;
		case O_SEED:
			if (ferry_size_parse(optarg, &o->seed) < 0)
				return usage_err("--seed needs a number, not", optarg);
			break;
		case O_QUICK: o->quick = true; break;
		case O_JSON: o->json = optarg; break;
		case O_CSV: o->csv = optarg; break;
		case O_PLOT: o->plot = optarg; break;
		case O_STRICT: o->strict = true; break;
		case O_TIMEOUT:
			if (parse_int(optarg, 0, 86400, &v) < 0)
				return usage_err("--timeout needs seconds (0 = none), not", optarg);
			o->timeout = (unsigned)v;
			break;
		case 'q': o->quiet = true; break;
		case 'h': perf_plan_usage(stdout); return 1;
		default: return usage_err("bad arguments", NULL);
		}
	}
	if (optind < argc)
		return usage_err("unexpected argument", argv[optind]);
	if (o->quick) {
		if (!n_set)
			o->n = 384;
		if (!nb_set)
			o->nb = 16;
		if (!period_set)
			o->period_ns = 4 * 1000000ull;
		if (!windows_set)
			(void)parse_windows("1,2,4", o);
		if (!minp_set)
			o->min_periods = 12;
	}
	if (!o->lda)
		o->lda = o->n + 8;
	if (o->lda < o->n)
		return usage_err("--lda must be at least --n", NULL);
	return 0;
}

/* ------------------------------------------------------------------ the fault thread */

static uint64_t now_ns(void)
{
	return stats_now_ns();
}

static void thread_fail(struct pl *p, int rc, const char *msg)
{
	if (!p->thread_rc) {
		p->thread_rc = rc ? rc : -EIO;
		snprintf(p->thread_err, sizeof(p->thread_err), "%s", msg);
		atomic_store(&p->thread_failed, true);
	}
}

static void arm(struct pl *p)
{
	struct ferry_err err = { 0 };
	struct access_sampler_stats before, after;
	uint64_t t0 = now_ns();

	access_sampler_stats(p->s, &before);
	if (access_sampler_arm(p->s, &err) < 0) {
		access_sampler_stats(p->s, &after);
		if (after.drop_errors == before.drop_errors)
			thread_fail(p, err.code, err.msg);   /* write-protect failed: the period sees nothing */
		else if (p->drop_errors_logged++ == 0)
			fprintf(stderr, "ferry-perf plan: %s\n", err.msg);
	}
	p->arm_ns += now_ns() - t0;
}

static void signal_efd(int fd)
{
	uint64_t one = 1;

	if (write(fd, &one, sizeof(one)) != sizeof(one))
		abort();   /* an eventfd write cannot fail short of a bug */
}

static void *fault_main(void *arg)
{
	struct pl *p = arg;
	struct pollfd fds[2] = { { .fd = p->uffd, .events = POLLIN }, { .fd = p->stop_efd, .events = POLLIN } };
	struct ferry_err err = { 0 };
	uint64_t next;

	arm(p);
	next = now_ns() + p->o.period_ns;
	signal_efd(p->ready_efd);
	for (;;) {
		uint64_t now = now_ns();
		struct timespec ts;

		if (now >= next) {
			access_sampler_period_end(p->s);
			atomic_store(&p->periods, planner_samples(p->pl));
			arm(p);
			next += p->o.period_ns;
			if (next <= now) {   /* the machine fell behind: restart the clock, count it */
				p->overruns++;
				next = now + p->o.period_ns;
			}
			continue;
		}
		ts.tv_sec = (time_t)((next - now) / 1000000000u);
		ts.tv_nsec = (long)((next - now) % 1000000000u);
		if (ppoll(fds, 2, &ts, NULL) < 0) {
			if (errno == EINTR)
				continue;
			thread_fail(p, -errno, "ppoll on the userfaultfd failed");
			break;
		}
		if (fds[0].revents & POLLIN) {
			struct uffd_msg msg[32];
			uint64_t t0 = now_ns();
			ssize_t n;

			while ((n = read(p->uffd, msg, sizeof(msg))) > 0) {
				for (size_t i = 0; i < (size_t)n / sizeof(msg[0]); i++) {
					int rc = access_sampler_handle(p->s, &msg[i]);

					if (rc < 0)
						p->handle_errors++;
					else if (rc == 0)
						p->unexpected++;
				}
			}
			p->handle_ns += now_ns() - t0;
		}
		if (fds[1].revents & POLLIN)
			break;
	}
	/* The period under way is cut short by the end of the LU: not recorded, not scored. */
	(void)planner_record(p->pl, NULL, NULL);
	planner_rates(p->pl, &p->online);
	if (access_sampler_stop(p->s, &err) < 0)
		thread_fail(p, err.code, err.msg);
	access_sampler_stats(p->s, &p->st);
	return NULL;
}

/* ------------------------------------------------------------------ setup and run */

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static int setup_memory(struct pl *p, struct ferry_err *err)
{
	size_t elems = (size_t)p->o.lda * (size_t)p->o.n;
	uint64_t rng = p->o.seed * 0x9e3779b97f4a7c15ull + 1;

	p->len = (elems * sizeof(double) + PG - 1) / PG * PG;
	p->memfd = memfd_create("ferry-perf-plan", MFD_CLOEXEC);
	if (p->memfd < 0)
		return ferry_err_set(err, errno, "memfd_create: %s", strerror(errno));
	if (ftruncate(p->memfd, (off_t)p->len) < 0)
		return ferry_err_set(err, errno, "ftruncate memfd to %zu: %s", p->len, strerror(errno));
	p->mem = mmap(NULL, p->len, PROT_READ | PROT_WRITE, MAP_SHARED, p->memfd, 0);
	if (p->mem == MAP_FAILED) {
		p->mem = NULL;
		return ferry_err_set(err, errno, "mmap memfd (%zu bytes): %s", p->len, strerror(errno));
	}
	p->a0 = malloc(elems * sizeof(double));
	p->b = malloc((size_t)p->o.n * sizeof(double));
	p->x = malloc((size_t)p->o.n * sizeof(double));
	p->ipiv = malloc((size_t)p->o.n * sizeof(int));
	if (!p->a0 || !p->b || !p->x || !p->ipiv)
		return ferry_err_set(err, ENOMEM, "no memory for the matrix copy");
	for (size_t i = 0; i < elems; i++)
		p->a0[i] = (double)(xorshift(&rng) >> 11) / (double)(1ull << 53) - 0.5;
	/* b = A * ones: the solution is all ones */
	for (int i = 0; i < p->o.n; i++)
		p->b[i] = 0;
	for (int j = 0; j < p->o.n; j++)
		for (int i = 0; i < p->o.n; i++)
			p->b[i] += p->a0[(size_t)i + (size_t)j * (size_t)p->o.lda];
	memcpy(p->mem, p->a0, elems * sizeof(double));   /* every page of the memfd now exists */
	return 0;
}

static int setup_sampler(struct pl *p, struct ferry_err *err)
{
	/* No UFFD_FEATURE_EVENT_REMOVE: the sampler's own MADV_DONTNEED, made on the fault
	 * thread, would wait for that thread to read the event (see access_sampler.h). */
	uint64_t features = FERRY_VMM_UFFD_F_MINOR_SHMEM | FERRY_VMM_UFFD_F_WP_HUGETLBFS_SHMEM;
	uint64_t npages = p->len / PG;
	int rc;

	p->uffd = ferry_vmm_uffd_create(O_CLOEXEC | O_NONBLOCK, features, err);
	if (p->uffd < 0)
		return p->uffd;
	rc = ferry_vmm_uffd_register_range(p->uffd, p->mem, p->len, FERRY_VMM_MODE_MINOR | FERRY_VMM_MODE_WP, err);
	if (rc < 0)
		return rc;
	p->pl = planner_create(npages, p->o.block_pages, p->o.windows[0], err);
	if (!p->pl)
		return err->code;
	rc = planner_set_history(p->pl, p->o.history[0], err);
	if (rc < 0)
		return rc;
	rc = plan_trace_init(&p->trace, npages, p->o.block_pages, err);
	if (rc < 0)
		return rc;
	rc = planner_record(p->pl, &p->trace, err);
	if (rc < 0)
		return rc;
	p->s = access_sampler_create(p->uffd, p->mem, p->len, p->pl, access_sampler_drop_madvise, NULL, err);
	if (!p->s)
		return err->code;
	p->stop_efd = eventfd(0, EFD_CLOEXEC);
	p->ready_efd = eventfd(0, EFD_CLOEXEC);
	if (p->stop_efd < 0 || p->ready_efd < 0)
		return ferry_err_set(err, errno, "eventfd: %s", strerror(errno));
	return 0;
}

static double seconds_since(uint64_t t0)
{
	return (double)(now_ns() - t0) / 1e9;
}

static int run(struct pl *p, struct ferry_err *err)
{
	size_t bytes = (size_t)p->o.lda * (size_t)p->o.n * sizeof(double);
	uint64_t t0, ready;
	int rc;

	if (p->o.baseline) {
		progress(p, "baseline: LU of order %d without sampling", p->o.n);
		t0 = now_ns();
		if (lu_factor(p->mem, p->o.n, p->o.lda, p->o.nb, p->ipiv) < 0)
			p->lu_failed = true;
		p->baseline_s = seconds_since(t0);
		memcpy(p->mem, p->a0, bytes);
	}
	rc = setup_sampler(p, err);
	if (rc < 0)
		return rc;
	rc = pthread_create(&p->thread, NULL, fault_main, p);
	if (rc)
		return ferry_err_set(err, rc, "pthread_create: %s", strerror(rc));
	p->thread_started = true;
	if (read(p->ready_efd, &ready, sizeof(ready)) != sizeof(ready))
		return ferry_err_set(err, errno, "eventfd read: %s", strerror(errno));
	progress(p, "sampled: LU of order %d, %s periods of %.3g ms, blocks of %u pages", p->o.n,
		 p->o.min_periods ? "at least some" : "its", (double)p->o.period_ns / 1e6, p->o.block_pages);
	t0 = now_ns();
	for (;;) {
		p->reps++;
		if (lu_factor(p->mem, p->o.n, p->o.lda, p->o.nb, p->ipiv) < 0)
			p->lu_failed = true;
		if (atomic_load(&p->periods) >= p->o.min_periods || atomic_load(&p->thread_failed))
			break;
		memcpy(p->mem, p->a0, bytes);   /* LINPACK regenerates its matrix each run */
	}
	p->lu_s = seconds_since(t0) / p->reps;
	signal_efd(p->stop_efd);
	pthread_join(p->thread, NULL);
	p->thread_started = false;
	if (p->thread_rc)
		return ferry_err_set(err, p->thread_rc, "fault thread: %s", p->thread_err);
	/* The factors computed under the sampler must be right. */
	memcpy(p->x, p->b, (size_t)p->o.n * sizeof(double));
	lu_solve(p->mem, p->o.n, p->o.lda, p->o.nb, p->ipiv, p->x);
	p->residual = p->lu_failed ? INFINITY : lu_residual(p->a0, p->o.n, p->o.lda, p->x, p->b);
	return 0;
}

static int evaluate(struct pl *p, struct ferry_err *err)
{
	for (uint64_t i = 0; i < p->trace.nsamples * p->trace.nblocks; i++)
		p->class_count[p->trace.cls[i]]++;
	for (unsigned h = 0; h < p->o.nhistory; h++)
		for (unsigned k = 0; k < p->o.nwindows; k++) {
			struct pl_window *w = &p->win[h][k];
			int rc;

			w->h = p->o.history[h];
			w->w = p->o.windows[k];
			rc = planner_eval_trace_history(&p->trace, w->w, w->h, &w->r, &w->c, err);
			if (rc < 0)
				return rc;
			w->resent_ratio = w->c.precopy_resent_bytes
						  ? (double)w->c.planned_resent_bytes / (double)w->c.precopy_resent_bytes
						  : -1;
		}
	/* The online planner (windows[0], history[0]) scored the same periods the same way. */
	p->online_matches = memcmp(p->online.confusion, p->win[0][0].r.confusion, sizeof(p->online.confusion)) == 0;
	return 0;
}

/* ------------------------------------------------------------------ output */

static double mib(uint64_t b)
{
	return (double)b / (1024.0 * 1024.0);
}

/* Issue #5's target at every window size, for history index @p h. */
static bool verdict_ok(const struct pl *p, unsigned h)
{
	for (unsigned k = 0; k < p->o.nwindows; k++)
		if (p->win[h][k].r.windows && p->win[h][k].resent_ratio > RESENT_TARGET_MAX)
			return false;
	return true;
}

static void summary(const struct pl *p, FILE *out)
{
	uint64_t cells = p->class_count[0] + p->class_count[1] + p->class_count[2];
	double period_ms = (double)p->o.period_ns / 1e6;
	double gflop = 2.0 / 3.0 * (double)p->o.n * (double)p->o.n * (double)p->o.n / 1e9;

	fprintf(out, "ferry-perf plan: LU of order %d (lda %d, panel %d) in a %.1f MiB memfd: %" PRIu64
		     " blocks of %u pages\n", p->o.n, p->o.lda, p->o.nb, mib(p->len), p->trace.nblocks, p->o.block_pages);
	fprintf(out, "  LU: %.3f s per run sampled (%.2f GFLOP/s, %u run%s)", p->lu_s, gflop / p->lu_s, p->reps,
		p->reps == 1 ? "" : "s");
	if (p->o.baseline && p->baseline_s > 0)
		fprintf(out, ", %.3f s unsampled (%.2f GFLOP/s): sampling costs %.2fx", p->baseline_s,
			gflop / p->baseline_s, p->lu_s / p->baseline_s);
	fprintf(out, "\n  LU residual %.4g (%s, HPL threshold %.0f)\n", p->residual,
		p->residual < RESIDUAL_MAX ? "passed" : "FAILED", RESIDUAL_MAX);
	fprintf(out, "  sampler: %" PRIu64 " periods of %.3g ms (%" PRIu64 " overran), %" PRIu64 " MINOR faults (%" PRIu64
		     " writes), %" PRIu64 " WP faults, CONTINUE_MODE_WP %s; arming %.3f s, faults %.3f s\n",
		p->trace.nsamples, period_ms, p->overruns, p->st.minor_faults, p->st.minor_write_faults, p->st.wp_faults,
		p->st.continue_wp ? "yes" : "no (fallback)", (double)p->arm_ns / 1e9, (double)p->handle_ns / 1e9);
	if (cells)
		fprintf(out, "  block-periods: %.1f%% clean, %.1f%% read, %.1f%% write\n",
			100.0 * (double)p->class_count[PLAN_CLEAN] / (double)cells,
			100.0 * (double)p->class_count[PLAN_READ] / (double)cells,
			100.0 * (double)p->class_count[PLAN_WRITE] / (double)cells);
	for (unsigned h = 0; h < p->o.nhistory; h++) {
		if (p->o.history[h] == 1)
			fprintf(out, "\n  predictor: a block's class in the period before the window (the seed's)\n");
		else
			fprintf(out, "\n  predictor: a block's class over the %u periods before the window (extension)\n",
				p->o.history[h]);
		fprintf(out, "  %6s %9s %7s | %7s %7s %7s %7s | %8s %8s %8s | %10s %10s %6s | %10s\n", "window",
			"length", "scored", "A(w|c)", "A(w|r)", "A(c|w)", "A(r|w)", "pred c", "pred r", "pred w",
			"precopy", "planned", "ratio", "deferred");
		fprintf(out, "  %6s %9s %7s | %7s %7s %7s %7s | %8s %8s %8s | %10s %10s %6s | %10s\n", "periods", "",
			"windows", "", "", "", "", "", "", "", "re-sent", "re-sent", "", "");
		for (unsigned k = 0; k < p->o.nwindows; k++) {
			const struct pl_window *w = &p->win[h][k];
			char ratio[16];

			if (w->resent_ratio < 0)
				snprintf(ratio, sizeof(ratio), "-");
			else
				snprintf(ratio, sizeof(ratio), "%.3f", w->resent_ratio);
			fprintf(out, "  %6u %6.0f ms %7" PRIu64 " | %7.4f %7.4f %7.4f %7.4f | %8" PRIu64 " %8" PRIu64
				     " %8" PRIu64 " | %6.1f MiB %6.1f MiB %6s | %6.1f MiB\n",
				w->w, w->w * period_ms, w->r.windows, w->r.w_given_c, w->r.w_given_r, w->r.c_given_w,
				w->r.r_given_w, w->r.n_c, w->r.n_r, w->r.n_w, mib(w->c.precopy_resent_bytes),
				mib(w->c.planned_resent_bytes), ratio, mib(w->c.deferred_bytes));
		}
		fprintf(out, "  issue #5 target, planned re-sent <= %.1f x pre-copy re-sent: %s\n", RESENT_TARGET_MAX,
			verdict_ok(p, h) ? "met at every window size" : "NOT met at every window size");
	}
	fprintf(out, "\n  A(x|y): share of the blocks predicted y whose class over the window was x.\n"
		     "  re-sent: bytes pushed at a window's start and written during it (pre-copy pushes\n"
		     "  every block; the planner defers the blocks it predicts written).\n");
	if (!p->online_matches)
		fprintf(out, "  WARNING: the online planner's counts differ from the offline replay\n");
}

static json_t *jrate(double v, uint64_t n)
{
	return n ? json_real(v) : json_null();
}

static int write_json(const struct pl *p, const char *path)
{
	json_t *root = json_object(), *wins = json_array(), *jw, *jh, *conf;
	struct ferry_err err = { 0 };
	int rc;

	json_object_set_new(root, "tool", json_string("ferry-perf plan"));
	json_object_set_new(root, "host",
			    json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:s}", "hostname", p->host.hostname,
				      "kernel", p->host.kernel, "cpu", p->host.cpu_model, "cpus",
				      (json_int_t)p->host.cpus_online, "mem_total_bytes",
				      (json_int_t)p->host.mem_total_bytes, "time_utc", p->host.time_utc, "version",
				      p->host.version, "build_type", p->host.build_type, "compiler", p->host.compiler));
	jw = json_array();
	for (unsigned k = 0; k < p->o.nwindows; k++)
		json_array_append_new(jw, json_integer(p->o.windows[k]));
	jh = json_array();
	for (unsigned h = 0; h < p->o.nhistory; h++)
		json_array_append_new(jh, json_integer(p->o.history[h]));
	json_object_set_new(root, "params",
			    json_pack("{s:i, s:i, s:i, s:i, s:f, s:o, s:o, s:I, s:i, s:b}", "n", p->o.n, "lda", p->o.lda,
				      "nb", p->o.nb, "block_pages", (int)p->o.block_pages, "period_ms",
				      (double)p->o.period_ns / 1e6, "windows", jw, "history", jh, "seed", (json_int_t)p->o.seed,
				      "min_periods", (int)p->o.min_periods, "quick", p->o.quick));
	json_object_set_new(root, "workload",
			    json_pack("{s:I, s:I, s:I, s:i, s:f, s:o, s:f, s:b}", "matrix_bytes", (json_int_t)p->len,
				      "pages", (json_int_t)(p->len / PG), "blocks", (json_int_t)p->trace.nblocks, "runs",
				      (int)p->reps, "lu_seconds_sampled", p->lu_s, "lu_seconds_baseline",
				      p->o.baseline ? json_real(p->baseline_s) : json_null(), "residual",
				      isfinite(p->residual) ? p->residual : 1e300, "residual_passed",
				      p->residual < RESIDUAL_MAX));
	json_object_set_new(root, "sampler",
			    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:f, s:f}", "periods",
				      (json_int_t)p->trace.nsamples, "overruns", (json_int_t)p->overruns, "minor_faults",
				      (json_int_t)p->st.minor_faults, "minor_write_faults",
				      (json_int_t)p->st.minor_write_faults, "wp_faults", (json_int_t)p->st.wp_faults,
				      "eexist", (json_int_t)p->st.eexist, "ioctl_errors", (json_int_t)p->st.ioctl_errors,
				      "drop_errors", (json_int_t)p->st.drop_errors, "continue_mode_wp", p->st.continue_wp,
				      "arm_seconds", (double)p->arm_ns / 1e9, "fault_seconds", (double)p->handle_ns / 1e9));
	json_object_set_new(root, "trace",
			    json_pack("{s:I, s:I, s:{s:I, s:I, s:I}}", "periods", (json_int_t)p->trace.nsamples, "blocks",
				      (json_int_t)p->trace.nblocks, "block_periods", "clean",
				      (json_int_t)p->class_count[PLAN_CLEAN], "read", (json_int_t)p->class_count[PLAN_READ],
				      "write", (json_int_t)p->class_count[PLAN_WRITE]));
	for (unsigned i = 0; i < p->o.nhistory * p->o.nwindows; i++) {
		const struct pl_window *w = &p->win[i / p->o.nwindows][i % p->o.nwindows];
		json_t *o;

		conf = json_array();
		for (int a = 0; a < PLAN_NCLASSES; a++)
			json_array_append_new(conf, json_pack("[I, I, I]", (json_int_t)w->r.confusion[a][0],
							      (json_int_t)w->r.confusion[a][1],
							      (json_int_t)w->r.confusion[a][2]));
		o = json_pack("{s:i, s:i, s:f, s:I, s:o, s:o, s:o, s:o, s:I, s:I, s:I, s:o}", "history", (int)w->h,
			      "periods", (int)w->w, "ms", w->w * (double)p->o.period_ns / 1e6, "windows_scored", (json_int_t)w->r.windows,
			      "A_w_given_c", jrate(w->r.w_given_c, w->r.n_c), "A_w_given_r", jrate(w->r.w_given_r, w->r.n_r),
			      "A_c_given_w", jrate(w->r.c_given_w, w->r.n_w), "A_r_given_w", jrate(w->r.r_given_w, w->r.n_w),
			      "n_c", (json_int_t)w->r.n_c, "n_r", (json_int_t)w->r.n_r, "n_w", (json_int_t)w->r.n_w,
			      "confusion_pred_actual", conf);
		json_object_set_new(o, "precopy_pushed_bytes", json_integer((json_int_t)w->c.precopy_pushed_bytes));
		json_object_set_new(o, "precopy_resent_bytes", json_integer((json_int_t)w->c.precopy_resent_bytes));
		json_object_set_new(o, "planned_pushed_bytes", json_integer((json_int_t)w->c.planned_pushed_bytes));
		json_object_set_new(o, "planned_resent_bytes", json_integer((json_int_t)w->c.planned_resent_bytes));
		json_object_set_new(o, "deferred_bytes", json_integer((json_int_t)w->c.deferred_bytes));
		json_object_set_new(o, "deferred_unwritten_bytes", json_integer((json_int_t)w->c.deferred_unwritten_bytes));
		json_object_set_new(o, "resent_ratio", w->resent_ratio < 0 ? json_null() : json_real(w->resent_ratio));
		json_array_append_new(wins, o);
	}
	json_object_set_new(root, "windows", wins);
	json_object_set_new(root, "online_matches_offline", json_boolean(p->online_matches));
	jw = json_object();
	for (unsigned h = 0; h < p->o.nhistory; h++) {
		char key[16];

		snprintf(key, sizeof(key), "%u", p->o.history[h]);
		json_object_set_new(jw, key, json_boolean(verdict_ok(p, h)));
	}
	json_object_set_new(root, "verdict",
			    json_pack("{s:f, s:b, s:o}", "resent_ratio_max", RESENT_TARGET_MAX, "met", verdict_ok(p, 0),
				      "met_by_history", jw));
	json_object_set_new(root, "total_seconds", json_real(p->total_s));
	rc = report_json_dump(root, path, "ferry-perf plan", &err);
	json_decref(root);
	if (rc < 0)
		fprintf(stderr, "%s\n", err.msg);
	return rc;
}

static int write_csv(const struct pl *p, const char *path)
{
	struct ferry_err err = { 0 };
	FILE *fp = report_out_open(path, "ferry-perf plan", &err);

	if (!fp) {
		fprintf(stderr, "%s\n", err.msg);
		return -1;
	}
	fprintf(fp, "history,window_periods,window_ms,windows_scored,A_w_given_c,A_w_given_r,A_c_given_w,A_r_given_w,n_c,n_r,"
		    "n_w,precopy_pushed_bytes,precopy_resent_bytes,planned_pushed_bytes,planned_resent_bytes,resent_ratio,"
		    "deferred_bytes,deferred_unwritten_bytes\n");
	for (unsigned i = 0; i < p->o.nhistory * p->o.nwindows; i++) {
		const struct pl_window *w = &p->win[i / p->o.nwindows][i % p->o.nwindows];

		fprintf(fp, "%u,%u,%.3f,%" PRIu64 ",%.6f,%.6f,%.6f,%.6f,%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64
			    ",%" PRIu64 ",%" PRIu64 ",%.6f,%" PRIu64 ",%" PRIu64 "\n",
			w->h, w->w, w->w * (double)p->o.period_ns / 1e6, w->r.windows, w->r.w_given_c, w->r.w_given_r,
			w->r.c_given_w, w->r.r_given_w, w->r.n_c, w->r.n_r, w->r.n_w, w->c.precopy_pushed_bytes,
			w->c.precopy_resent_bytes, w->c.planned_pushed_bytes, w->c.planned_resent_bytes,
			w->resent_ratio < 0 ? 0.0 : w->resent_ratio, w->c.deferred_bytes, w->c.deferred_unwritten_bytes);
	}
	if (report_out_close(fp, path, "ferry-perf plan", &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		return -1;
	}
	return 0;
}

/* Left: the four rates vs window size (the seed's figure 1). Right: re-sent MiB, pre-copy vs planned. */
static int write_plot(const struct pl *p, const char *path)
{
	char gp[PATH_MAX], cmd[PATH_MAX + 32];
	const char *dot = strrchr(path, '.');
	bool svg = dot && strcmp(dot, ".svg") == 0;
	size_t base = dot ? (size_t)(dot - path) : strlen(path);
	double period_ms = (double)p->o.period_ns / 1e6;
	FILE *fp;

	snprintf(gp, sizeof(gp), "%.*s.gp", (int)base, path);
	fp = fopen(gp, "w");
	if (!fp) {
		fprintf(stderr, "ferry-perf plan: cannot write %s: %s\n", gp, strerror(errno));
		return -1;
	}
	fprintf(fp, "# ferry-perf plan: misprediction rates and re-sent bytes vs window size (gnuplot %s)\n", gp);
	fprintf(fp, "set terminal %s size 1200,500\nset output '%s'\n", svg ? "svg" : "pngcairo", path);
	for (unsigned h = 0; h < p->o.nhistory; h++) {
		fprintf(fp, "$d%u << EOD\n# periods A(w|c) A(w|r) A(c|w) A(r|w) precopy_resent_MiB planned_resent_MiB\n", h);
		for (unsigned k = 0; k < p->o.nwindows; k++) {
			const struct pl_window *w = &p->win[h][k];

			if (!w->r.windows)
				continue;
			fprintf(fp, "%u %.6f %.6f %.6f %.6f %.3f %.3f\n", w->w, w->r.w_given_c, w->r.w_given_r,
				w->r.c_given_w, w->r.r_given_w, mib(w->c.precopy_resent_bytes),
				mib(w->c.planned_resent_bytes));
		}
		fprintf(fp, "EOD\n");
	}
	fprintf(fp, "set multiplot layout 1,2 title 'LU of order %d, %u-page blocks, sample period %.3g ms (%s)'\n",
		p->o.n, p->o.block_pages, period_ms, p->host.hostname);
	fprintf(fp, "set logscale x 2\nset grid\nset key top left\n"
		    "set xlabel 'window (sample periods of %.3g ms)'\n", period_ms);
	fprintf(fp, "set title 'misprediction rates (history %u)'\nset ylabel 'rate'\nset yrange [0:1]\n"
		    "plot $d0 using 1:2 with linespoints lw 2 title 'A(w|c)', \\\n"
		    "     $d0 using 1:3 with linespoints lw 2 title 'A(w|r)', \\\n"
		    "     $d0 using 1:4 with linespoints lw 2 title 'A(c|w)', \\\n"
		    "     $d0 using 1:5 with linespoints lw 2 title 'A(r|w)'\n", p->o.history[0]);
	fprintf(fp, "set title 're-sent bytes (each window one push round)'\nset ylabel 'MiB re-sent'\n"
		    "set yrange [0:*]\nset key top right\n"
		    "plot $d0 using 1:6 with linespoints lw 2 title 'pre-copy'");
	for (unsigned h = 0; h < p->o.nhistory; h++)
		fprintf(fp, ", \\\n     $d%u using 1:7 with linespoints lw 2 title 'planned, history %u%s'", h,
			p->o.history[h], p->o.history[h] == 1 ? " (seed)" : "");
	fprintf(fp, "\nunset multiplot\n");
	fclose(fp);
	if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
		fprintf(stderr, "ferry-perf plan: gnuplot not installed; script written to %s\n", gp);
		return 0;
	}
	snprintf(cmd, sizeof(cmd), "gnuplot '%s'", gp);
	if (system(cmd) != 0) {
		fprintf(stderr, "ferry-perf plan: gnuplot %s failed\n", gp);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ main */

static void teardown(struct pl *p)
{
	if (p->thread_started) {
		signal_efd(p->stop_efd);
		pthread_join(p->thread, NULL);
	}
	access_sampler_destroy(p->s);
	planner_destroy(p->pl);
	plan_trace_fini(&p->trace);
	if (p->uffd >= 0)
		close(p->uffd);
	if (p->mem)
		munmap(p->mem, p->len);
	if (p->memfd >= 0)
		close(p->memfd);
	if (p->stop_efd >= 0)
		close(p->stop_efd);
	if (p->ready_efd >= 0)
		close(p->ready_efd);
	free(p->a0);
	free(p->b);
	free(p->x);
	free(p->ipiv);
}

int perf_plan_main(int argc, char **argv)
{
	struct pl *p = calloc(1, sizeof(*p));
	struct ferry_err err = { 0 };
	FILE *sum_out = stdout;
	uint64_t t_start = now_ns();
	int rc, status = PERF_EXIT_OK;

	if (!p)
		return PERF_EXIT_ERROR;
	p->memfd = p->uffd = p->stop_efd = p->ready_efd = -1;
	rc = parse_opts(argc, argv, &p->o);
	if (rc) {
		free(p);
		return rc > 0 ? PERF_EXIT_OK : PERF_EXIT_USAGE;
	}
	if (p->o.timeout) {
		signal(SIGALRM, SIG_DFL);   /* the watchdog kills the process: nothing to clean up outside it */
		alarm(p->o.timeout);
	}
	perf_host_fill(&p->host);
	rc = setup_memory(p, &err);
	if (rc == 0)
		rc = run(p, &err);
	if (rc == 0)
		rc = evaluate(p, &err);
	if (rc < 0) {
		fprintf(stderr, "ferry-perf plan: %s\n", err.msg);
		teardown(p);
		free(p);
		return PERF_EXIT_ERROR;
	}
	p->total_s = seconds_since(t_start);
	if (p->o.json && strcmp(p->o.json, "-") == 0)
		sum_out = stderr;
	summary(p, sum_out);
	if (p->o.json && write_json(p, p->o.json) < 0)
		status = PERF_EXIT_ERROR;
	if (p->o.csv && write_csv(p, p->o.csv) < 0)
		status = PERF_EXIT_ERROR;
	if (p->o.plot && write_plot(p, p->o.plot) < 0)
		status = PERF_EXIT_ERROR;
	if (status == PERF_EXIT_OK && !(p->residual < RESIDUAL_MAX))
		status = PERF_EXIT_VERIFY;
	if (status == PERF_EXIT_OK && !p->online_matches)
		status = PERF_EXIT_ERROR;
	if (status == PERF_EXIT_OK && p->o.strict && !verdict_ok(p, 0))
		status = PERF_EXIT_VERDICT;
	teardown(p);
	free(p);
	return status;
}
