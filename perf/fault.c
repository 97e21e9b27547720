/*
 * ferry-perf fault: how long a page fault takes to be served, and how many
 * can be served per second, by Ferry's pager and by the baselines that set
 * its floor, all measured in the same run:
 *
 *   kernel-anon    first touch of fresh anonymous memory: the kernel's own fault
 *   uffd-zeropage  a minimal in-process userfaultfd handler thread, UFFDIO_ZEROPAGE
 *   uffd-copy      the same handler copying from local memory with UFFDIO_COPY:
 *                  the floor for any userfaultfd design
 *   xport-read     one 4 KiB READ from a memory server over the transport
 *                  (pool_client, one at a time): the network part of a page-in
 *   pager-unused   ferry-pager serving a page the VM never used (a zero page)
 *   pager-remote   ferry-pager fetching a paged-out page from ferry-memsrv
 *
 * Method: one faulting thread touches one page at a time (random order over
 * a fresh region) and times each access with clock_gettime; the access
 * blocks until the handler resolves the fault. For pager-remote, pages are
 * first written with stamps and paged out by the pager (a small --budget),
 * and only pages that mincore() says are not resident are timed. Every page
 * faulted in is verified afterwards: zeros, or its stamp (tests/guestsim/
 * gs_stamp.h). The cases run interleaved in --rounds rounds so that load
 * that comes and goes on a shared machine hits all of them alike.
 *
 * Ratios (done-when targets): pager-unused p50 / uffd-zeropage p50 <= 1.5,
 * pager-remote p50 / (uffd-copy p50 + xport-read p50) <= 1.3.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <linux/userfaultfd.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/common/units.h"
#include "dataplane/common/auth.h"
#include "dataplane/common/ferry_err.h"
#include "dataplane/memsrv/pool_client.h"
#include "dataplane/transport/transport.h"
#include "dataplane/vmm/ferry_vmm.h"
#include "perf/fault.h"
#include "perf/perf.h"
#include "perf/report.h"
#include "perf/stats.h"
#include "tests/guestsim/gs_stamp.h"

extern char **environ;

#define PG GS_PAGE
#define FT_XPORT_PAGES 256u              /* extent for the transport READ loop (1 MiB) */
#define FT_RATIO_UNUSED_MAX 1.5
#define FT_RATIO_REMOTE_MAX 1.3

enum ft_case { FT_ANON, FT_ZEROPAGE, FT_COPY, FT_XPORT, FT_UNUSED, FT_REMOTE, FT_REMOTE_FULL, FT_NCASES };

static const char *const case_names[FT_NCASES] = {
	"kernel-anon", "uffd-zeropage", "uffd-copy", "xport-read", "pager-unused", "pager-remote",
	"pager-remote-full",
};
static const char *const case_desc[FT_NCASES] = {
	"first touch of fresh anonymous memory (kernel fault)",
	"in-process uffd handler, UFFDIO_ZEROPAGE (memfd)",
	"in-process uffd handler, UFFDIO_COPY from local memory (memfd)",
	"4 KiB READ from ferry-memsrv over the transport",
	"ferry-pager, UNUSED page (zero page)",
	"ferry-pager, REMOTE page (page-in from ferry-memsrv, resident set below the budget)",
	"ferry-pager, REMOTE page at a full budget (each page-in first pages one page out)",
};

struct ft_opts {
	uint64_t pages;
	unsigned rounds;
	bool write_access;
	bool quick;
	uint64_t budget;
	const char *pager_sock;          /* use a running pager */
	const char *server;              /* use a running memory server "host:port" */
	const char *secret_file;
	enum fx_kind kind;
	const char *pager_bin, *memsrv_bin;
	bool want[FT_NCASES];
	const char *json, *csv, *plot;
	bool strict, quiet, keep;
	uint64_t seed;
	unsigned timeout;                /* watchdog, seconds (0 = none) */
	unsigned threads;                /* faulting threads */
	int pin;                         /* CPU for everything, -1 = no pinning */
};

struct ft_result {
	bool ran;
	char skip[400];                  /* why it did not run (empty when it ran) */
	char note[256];                  /* pager-remote*: how the pages were made remote */
	struct ferry_vmm_stat stats[64]; /* pager cases: the pager's counters for the VM at the end */
	int nstats;
	uint64_t *ns;                    /* samples */
	size_t n, cap;
	uint64_t busy_ns;                /* wall time of the timed loops */
	uint64_t not_faulting;           /* pager-remote: pages found resident, not timed */
	struct perf_lat lat;
	double faults_per_s;
};

/* A child process we started. */
struct ft_proc {
	pid_t pid;
	char name[32];
	char log[PATH_MAX];
};

struct ft {
	struct ft_opts o;
	struct ft_result res[FT_NCASES];
	uint64_t rng;
	char run_dir[256];
	char secret_path[PATH_MAX];
	char mem_host[64];
	uint16_t mem_port;
	char sock_unused[PATH_MAX], sock_remote[PATH_MAX];
	struct ft_proc procs[4];
	unsigned nprocs;
	/* verification */
	uint64_t verified, verify_errors;
	char first_error[400];
	struct perf_host host;
	double total_seconds;
};

/*
 * Children we started, for the signal handler: on SIGINT/SIGTERM, or when
 * the watchdog (SIGALRM: a fault never served) fires, they are stopped
 * before we exit, so nothing is left behind.
 */
static volatile pid_t g_children[4];

static void on_fatal_signal(int sig)
{
	static const char msg_alarm[] = "ferry-perf fault: watchdog: the run took too long (a fault never served?); "
					"stopping\n";
	static const char msg_sig[] = "ferry-perf fault: interrupted; stopping the processes it started\n";

	if (sig == SIGALRM)
		(void)!write(2, msg_alarm, sizeof(msg_alarm) - 1);
	else
		(void)!write(2, msg_sig, sizeof(msg_sig) - 1);
	for (size_t i = 0; i < sizeof(g_children) / sizeof(g_children[0]); i++)
		if (g_children[i] > 0)
			kill(g_children[i], SIGKILL);
	_exit(sig == SIGALRM ? PERF_EXIT_ERROR : 128 + sig);
}

/* ------------------------------------------------------------------ small helpers */

static uint64_t ft_rand(uint64_t *s)
{
	*s += 0x9e3779b97f4a7c15ull;
	return gs_mix64(*s);
}

static void shuffle(uint64_t *v, uint64_t n, uint64_t *rng)
{
	for (uint64_t i = 0; i + 1 < n; i++) {
		uint64_t j = i + ft_rand(rng) % (n - i), t = v[i];

		v[i] = v[j];
		v[j] = t;
	}
}

static void progress(const struct ft *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void progress(const struct ft *f, const char *fmt, ...)
{
	va_list ap;

	if (f->o.quiet)
		return;
	fputs("ferry-perf fault: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void verify_fail(struct ft *f, const char *why)
{
	if (f->verify_errors++ == 0)
		snprintf(f->first_error, sizeof(f->first_error), "%s", why);
}

static void verify_page(struct ft *f, enum ft_case c, const void *p, uint64_t page, uint64_t gen, uint64_t seed)
{
	char why[380], msg[400];

	f->verified++;
	if (gen == 0) {
		if (gs_page_is_zero(p))
			return;
		snprintf(msg, sizeof(msg), "%s: page %" PRIu64 " not zero", case_names[c], page);
		verify_fail(f, msg);
		return;
	}
	if (gs_check_page(p, page, gen, why, sizeof(why)))
		return;
	(void)seed;
	snprintf(msg, sizeof(msg), "%s: %s", case_names[c], why);
	verify_fail(f, msg);
}

static int add_sample(struct ft_result *r, uint64_t ns)
{
	if (r->n == r->cap) {
		size_t ncap = r->cap ? r->cap * 2 : 1024;
		uint64_t *v = realloc(r->ns, ncap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		r->ns = v;
		r->cap = ncap;
	}
	r->ns[r->n++] = ns;
	return 0;
}

/* The timed access: blocks until the fault is served. */
static inline uint64_t touch(void *p, bool write)
{
	struct timespec a, b;

	clock_gettime(CLOCK_MONOTONIC, &a);
	if (write)
		(void)__atomic_fetch_or((uint64_t *)p, 0, __ATOMIC_RELAXED);
	else
		(void)*(volatile uint64_t *)p;
	clock_gettime(CLOCK_MONOTONIC, &b);
	return (uint64_t)(b.tv_sec - a.tv_sec) * 1000000000ull + (uint64_t)b.tv_nsec - (uint64_t)a.tv_nsec;
}

static bool resident(void *p)
{
	unsigned char v = 0;

	return mincore(p, PG, &v) == 0 && (v & 1);
}

/* ------------------------------------------------------------------ options */

void perf_fault_usage(FILE *out)
{
	fputs(
"usage: ferry-perf fault [options]\n"
"\n"
"Page-fault service latency (p50/p99/p99.9) and throughput (faults/s) of ferry-pager\n"
"for UNUSED pages (zero page) and REMOTE pages (page-in from ferry-memsrv), with the\n"
"baselines measured in the same run: the kernel's own anonymous fault, a minimal\n"
"in-process userfaultfd handler answering UFFDIO_ZEROPAGE and one answering\n"
"UFFDIO_COPY from local memory, and one 4 KiB transport READ from a memory server.\n"
"Unless --pager/--server are given, it starts ferry-memsrv and two ferry-pagers\n"
"(one plain, one with memory servers and a small --budget) itself, on loopback.\n"
"\n"
"  -n, --pages N        faults timed per case (default 5000; --quick 300)\n"
"      --rounds R       the cases take turns R times (default 20; --quick 2)\n"
"      --access MODE    read (default) or write: how the faulting thread touches a page\n"
"      --pin CPU        run everything on one CPU: this process, its handler threads and\n"
"                       the processes it starts (they inherit it). Wake-ups then stay on one\n"
"                       CPU; without it, which CPU a handler sleeps on decides whether its\n"
"                       wake-up costs an IPI (tens of us in a VM), and p50s jump between runs\n"
"      --threads N      faulting threads (default 1: unloaded latency; N > 1 measures\n"
"                       throughput under N concurrent faults and loaded latency; the\n"
"                       in-process handlers stay one thread, xport-read stays serial)\n"
"      --cases LIST     subset of: anon,zeropage,copy,xport,unused,remote,remote-full\n"
"                       (default all). remote keeps the VM's resident set below its budget\n"
"                       (resident pages are given back with FREE_HINTs between faults, not\n"
"                       timed): the page-in path alone. remote-full runs at the budget, so\n"
"                       every page-in first pages a page out: the steady state of a full VM\n"
"      --budget SIZE    resident budget of the REMOTE pager (default 1M = 256 pages)\n"
"      --pager SOCKET   use this running ferry-pager for unused and remote\n"
"      --server H:P     use this running ferry-memsrv (needs --secret)\n"
"      --secret FILE    cluster secret of --server\n"
"      --transport KIND tcp (default) or rdma\n"
"      --pager-bin PATH ferry-pager to start (default: next to ferry-perf in the build\n"
"                       tree, or $FERRY_PAGER)\n"
"      --memsrv-bin PATH ferry-memsrv to start (default likewise, or $FERRY_MEMSRV)\n"
"      --quick          a short run for the smoke test (checks it runs and verifies)\n"
"      --json FILE      write JSON (\"-\" = stdout; the summary then goes to stderr)\n"
"      --csv FILE       write CSV, one row per case\n"
"      --plot FILE      latency CDF per case rendered to FILE.png/.svg by gnuplot\n"
"                       (script kept as FILE.gp, written even without gnuplot)\n"
"      --seed N         page order (default from the clock)\n"
"      --strict         exit 4 when a done-when ratio fails\n"
"      --keep           keep the run directory (logs of the processes started)\n"
"      --timeout SEC    watchdog: give up after SEC seconds, stopping the processes it\n"
"                       started (default 600, 0 = none)\n"
"  -q, --quiet          no progress lines\n"
"  -h, --help\n"
"\n"
"Exit status: 0 ok, 1 error, 2 usage, 3 verification failed, 4 --strict verdict failed.\n",
	      out);
}

enum {
	O_ROUNDS = 256, O_ACCESS, O_CASES, O_BUDGET, O_PAGER, O_SERVER, O_SECRET, O_TRANSPORT, O_PAGER_BIN,
	O_MEMSRV_BIN, O_QUICK, O_JSON, O_CSV, O_PLOT, O_SEED, O_STRICT, O_KEEP, O_TIMEOUT, O_THREADS, O_PIN,
};

static const struct option ft_long[] = {
	{ "pages", required_argument, NULL, 'n' },
	{ "rounds", required_argument, NULL, O_ROUNDS },
	{ "access", required_argument, NULL, O_ACCESS },
	{ "cases", required_argument, NULL, O_CASES },
	{ "budget", required_argument, NULL, O_BUDGET },
	{ "pager", required_argument, NULL, O_PAGER },
	{ "server", required_argument, NULL, O_SERVER },
	{ "secret", required_argument, NULL, O_SECRET },
	{ "transport", required_argument, NULL, O_TRANSPORT },
	{ "pager-bin", required_argument, NULL, O_PAGER_BIN },
	{ "memsrv-bin", required_argument, NULL, O_MEMSRV_BIN },
	{ "quick", no_argument, NULL, O_QUICK },
	{ "json", required_argument, NULL, O_JSON },
	{ "csv", required_argument, NULL, O_CSV },
	{ "plot", required_argument, NULL, O_PLOT },
	{ "seed", required_argument, NULL, O_SEED },
	{ "strict", no_argument, NULL, O_STRICT },
	{ "keep", no_argument, NULL, O_KEEP },
	{ "timeout", required_argument, NULL, O_TIMEOUT },
	{ "threads", required_argument, NULL, O_THREADS },
	{ "pin", required_argument, NULL, O_PIN },
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static int usage_err(const char *what, const char *arg)
{
	fprintf(stderr, "ferry-perf fault: %s%s%s%s (see --help)\n", what, arg ? " '" : "", arg ? arg : "",
		arg ? "'" : "");
	return -PERF_EXIT_USAGE;
}

static int parse_cases(const char *s, bool *want)
{
	static const char *const short_names[FT_NCASES] = { "anon", "zeropage", "copy", "xport", "unused", "remote",
								     "remote-full" };
	char buf[256], *save = NULL;

	if (strlen(s) >= sizeof(buf))
		return -1;
	strcpy(buf, s);
	memset(want, 0, FT_NCASES * sizeof(*want));
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int k;

		for (k = 0; k < FT_NCASES; k++)
			if (strcmp(t, short_names[k]) == 0 || strcmp(t, case_names[k]) == 0)
				break;
		if (k == FT_NCASES)
			return -1;
		want[k] = true;
	}
	return 0;
}

/* 0 run, 1 help printed, <0 usage error. */
static int parse_opts(int argc, char **argv, struct ft_opts *o)
{
	bool pages_set = false, rounds_set = false;
	uint64_t v;
	int c;

	memset(o, 0, sizeof(*o));
	o->pages = 5000;
	o->rounds = 20;
	o->budget = 1 << 20;
	o->kind = FX_KIND_TCP;
	o->seed = stats_now_ns();
	o->timeout = 600;
	o->threads = 1;
	o->pin = -1;
	for (int k = 0; k < FT_NCASES; k++)
		o->want[k] = true;
	optind = 1;
	while ((c = getopt_long(argc, argv, "n:qh", ft_long, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (ferry_size_parse(optarg, &v) < 0 || v < 10 || v > (1u << 22))
				return usage_err("--pages needs a count in 10..4M, not", optarg);
			o->pages = v;
			pages_set = true;
			break;
		case O_ROUNDS:
			if (ferry_size_parse(optarg, &v) < 0 || v < 1 || v > 1000)
				return usage_err("--rounds needs 1..1000, not", optarg);
			o->rounds = (unsigned)v;
			rounds_set = true;
			break;
		case O_ACCESS:
			if (strcmp(optarg, "read") == 0)
				o->write_access = false;
			else if (strcmp(optarg, "write") == 0)
				o->write_access = true;
			else
				return usage_err("--access takes read or write, not", optarg);
			break;
		case O_CASES:
			if (parse_cases(optarg, o->want) < 0)
				return usage_err("--cases takes anon,zeropage,copy,xport,unused,remote,remote-full, not", optarg);
			break;
		case O_BUDGET:
			if (ferry_size_parse(optarg, &o->budget) < 0 || o->budget < PG || o->budget % PG)
				return usage_err("--budget needs a multiple of 4K, not", optarg);
			break;
		case O_PAGER: o->pager_sock = optarg; break;
		case O_SERVER: o->server = optarg; break;
		case O_SECRET: o->secret_file = optarg; break;
		case O_TRANSPORT:
			if (fx_kind_parse(optarg, &o->kind) < 0)
				return usage_err("--transport takes tcp or rdma, not", optarg);
			break;
		case O_PAGER_BIN: o->pager_bin = optarg; break;
		case O_MEMSRV_BIN: o->memsrv_bin = optarg; break;
		case O_QUICK: o->quick = true; break;
		case O_JSON: o->json = optarg; break;
		case O_CSV: o->csv = optarg; break;
		case O_PLOT: o->plot = optarg; break;
		case O_SEED:
			if (ferry_size_parse(optarg, &o->seed) < 0)
				return usage_err("--seed needs a number, not", optarg);
			break;
		case O_STRICT: o->strict = true; break;
		case O_KEEP: o->keep = true; break;
		case O_PIN:
			if (ferry_size_parse(optarg, &v) < 0 || v >= CPU_SETSIZE)
				return usage_err("--pin needs a CPU number, not", optarg);
			o->pin = (int)v;
			break;
		case O_THREADS:
			if (ferry_size_parse(optarg, &v) < 0 || v < 1 || v > 64)
				return usage_err("--threads needs 1..64, not", optarg);
			o->threads = (unsigned)v;
			break;
		case O_TIMEOUT:
			if (ferry_size_parse(optarg, &v) < 0 || v > 86400)
				return usage_err("--timeout needs seconds (0 = none), not", optarg);
			o->timeout = (unsigned)v;
			break;
		case 'q': o->quiet = true; break;
		case 'h': perf_fault_usage(stdout); return 1;
		default: return usage_err("bad arguments", NULL);
		}
	}
	if (optind < argc)
		return usage_err("unexpected argument", argv[optind]);
	if (o->server && !o->secret_file)
		return usage_err("--server needs --secret", NULL);
	/* The memory server started here listens on loopback, which has no RDMA device. */
	if (o->kind == FX_KIND_RDMA && !o->server)
		return usage_err("--transport rdma needs --server HOST:PORT (a ferry-memsrv on an RDMA "
				 "device's address) and --secret", NULL);
	if (o->quick) {
		if (!pages_set)
			o->pages = 300;
		if (!rounds_set)
			o->rounds = 2;
	}
	if (o->rounds > o->pages)
		o->rounds = (unsigned)o->pages;
	return 0;
}

/* ------------------------------------------------------------------ processes */

static void default_bin(char *out, size_t len, const char *env, const char *rel)
{
	char exe[PATH_MAX];
	const char *e = getenv(env);
	ssize_t n;

	if (e && *e) {
		snprintf(out, len, "%s", e);
		return;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0) {
		snprintf(out, len, "%s", rel);
		return;
	}
	exe[n] = 0;
	snprintf(out, len, "%s/../%s", dirname(exe), rel);
}

static int spawn(struct ft *f, const char *name, char *const argv[], struct ferry_err *err)
{
	struct ft_proc *p = &f->procs[f->nprocs];
	posix_spawn_file_actions_t fa;
	int rc;

	if (f->nprocs == sizeof(f->procs) / sizeof(f->procs[0]))
		return ferry_err_set(err, EMFILE, "too many processes");
	snprintf(p->name, sizeof(p->name), "%s", name);
	snprintf(p->log, sizeof(p->log), "%s/%s.log", f->run_dir, name);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, p->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	rc = posix_spawn(&p->pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0)
		return ferry_err_set(err, rc, "start %s (%s): %s", name, argv[0], strerror(rc));
	g_children[f->nprocs] = p->pid;
	f->nprocs++;
	return 0;
}

static bool proc_alive(struct ft_proc *p, int *status)
{
	if (p->pid <= 0)
		return false;
	if (waitpid(p->pid, status, WNOHANG) == p->pid) {
		p->pid = 0;
		return false;
	}
	return true;
}

static void dump_log(const struct ft_proc *p)
{
	char line[512];
	FILE *fp = fopen(p->log, "r");
	unsigned n = 0;

	if (!fp)
		return;
	fprintf(stderr, "--- %s log (%s):\n", p->name, p->log);
	while (fgets(line, sizeof(line), fp) && n++ < 30)
		fprintf(stderr, "    %s", line);
	fclose(fp);
}

/* Stop the processes we started, by their pids: SIGTERM, then SIGKILL after 5 s. */
static void stop_procs(struct ft *f)
{
	for (unsigned i = 0; i < f->nprocs; i++)
		if (f->procs[i].pid > 0)
			kill(f->procs[i].pid, SIGTERM);
	for (unsigned i = 0; i < f->nprocs; i++) {
		struct ft_proc *p = &f->procs[i];
		int status = 0;

		for (int k = 0; k < 100 && p->pid > 0; k++) {
			if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
				if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0) && !f->o.quiet)
					fprintf(stderr, "ferry-perf fault: %s exited with status 0x%x after SIGTERM\n",
						p->name, (unsigned)status);
				p->pid = 0;
				g_children[i] = 0;
				break;
			}
			usleep(50000);
		}
		if (p->pid > 0) {
			fprintf(stderr, "ferry-perf fault: %s did not stop within 5 s of SIGTERM; killed\n", p->name);
			kill(p->pid, SIGKILL);
			waitpid(p->pid, &status, 0);
			p->pid = 0;
			g_children[i] = 0;
		}
	}
}

static int wait_ready_file(struct ft *f, struct ft_proc *p, const char *path, uint16_t *port, struct ferry_err *err)
{
	for (int i = 0; i < 600; i++) {
		FILE *fp = fopen(path, "r");
		unsigned v = 0;
		int status;

		if (fp) {
			int k = fscanf(fp, "%u", &v);

			fclose(fp);
			if (k == 1 && v > 0 && v < 65536) {
				*port = (uint16_t)v;
				return 0;
			}
		}
		if (!proc_alive(p, &status)) {
			dump_log(p);
			return ferry_err_set(err, ECHILD, "%s exited (status 0x%x) before it was ready", p->name,
					     (unsigned)status);
		}
		usleep(50000);
	}
	(void)f;
	dump_log(p);
	return ferry_err_set(err, ETIMEDOUT, "%s not ready after 30 s", p->name);
}

static int wait_socket(struct ft_proc *p, const char *path, struct ferry_err *err)
{
	for (int i = 0; i < 600; i++) {
		struct ferry_vmm_conn *c = ferry_vmm_connect(path);
		int status;

		if (c) {
			ferry_vmm_close(c);
			return 0;
		}
		if (!proc_alive(p, &status)) {
			dump_log(p);
			return ferry_err_set(err, ECHILD, "%s exited (status 0x%x) before it listened on %s", p->name,
					     (unsigned)status, path);
		}
		usleep(50000);
	}
	dump_log(p);
	return ferry_err_set(err, ETIMEDOUT, "%s did not listen on %s within 30 s", p->name, path);
}

static int start_memsrv(struct ft *f, struct ferry_err *err)
{
	char bin[PATH_MAX], ready[PATH_MAX + 16], pool[32];
	/*
	 * The pool holds both REMOTE VMs' pages (n + budget each) and the
	 * transport loop's extent, plus room for the pager's extent-sized
	 * allocations (16 MiB each): a full pool would make page-out fail.
	 */
	uint64_t pool_mib = (2 * (f->o.pages * PG + f->o.budget) >> 20) + 2 * 16 + 16 + 1;
	int rc;

	if (f->o.server) {
		const char *colon = strrchr(f->o.server, ':');
		unsigned long port;

		if (!colon || colon == f->o.server || (size_t)(colon - f->o.server) >= sizeof(f->mem_host))
			return ferry_err_set(err, EINVAL, "--server: expected HOST:PORT, got '%s'", f->o.server);
		port = strtoul(colon + 1, NULL, 10);
		if (port == 0 || port > 65535)
			return ferry_err_set(err, EINVAL, "--server: bad port in '%s'", f->o.server);
		memcpy(f->mem_host, f->o.server, (size_t)(colon - f->o.server));
		f->mem_host[colon - f->o.server] = 0;
		f->mem_port = (uint16_t)port;
		snprintf(f->secret_path, sizeof(f->secret_path), "%s", f->o.secret_file);
		return 0;
	}
	if (f->o.memsrv_bin)
		snprintf(bin, sizeof(bin), "%s", f->o.memsrv_bin);
	else
		default_bin(bin, sizeof(bin), "FERRY_MEMSRV", "dataplane/memsrv/ferry-memsrv");
	if (access(bin, X_OK) != 0)
		return ferry_err_set(err, ENOENT, "no ferry-memsrv at %s (build it, or --memsrv-bin / --server)", bin);
	snprintf(f->secret_path, sizeof(f->secret_path), "%s/secret", f->run_dir);
	rc = ferry_secret_generate(f->secret_path, err);
	if (rc < 0)
		return rc;
	snprintf(ready, sizeof(ready), "%s/memsrv.port", f->run_dir);
	snprintf(pool, sizeof(pool), "%" PRIu64 "M", pool_mib);

	char *const argv[] = { bin, (char *)"--listen", (char *)"127.0.0.1", (char *)"--port", (char *)"0",
			       (char *)"--transport", (char *)fx_kind_name(f->o.kind), (char *)"--secret-file",
			       f->secret_path, (char *)"--ready-file", ready, (char *)"--pool-size",
			       pool, NULL };

	rc = spawn(f, "memsrv", argv, err);
	if (rc < 0)
		return rc;
	snprintf(f->mem_host, sizeof(f->mem_host), "127.0.0.1");
	return wait_ready_file(f, &f->procs[f->nprocs - 1], ready, &f->mem_port, err);
}

static int start_pager(struct ft *f, bool with_pool, char *sock, size_t sock_len, struct ferry_err *err)
{
	char bin[PATH_MAX], allow[32], servers[96], budget[32];
	int rc;

	if (f->o.pager_bin)
		snprintf(bin, sizeof(bin), "%s", f->o.pager_bin);
	else
		default_bin(bin, sizeof(bin), "FERRY_PAGER", "dataplane/pager/ferry-pager");
	if (access(bin, X_OK) != 0)
		return ferry_err_set(err, ENOENT, "no ferry-pager at %s (build it, or --pager-bin / --pager)", bin);
	snprintf(sock, sock_len, "%s/pager-%s.sock", f->run_dir, with_pool ? "remote" : "unused");
	snprintf(allow, sizeof(allow), "uid:%u", (unsigned)getuid());
	snprintf(servers, sizeof(servers), "%s:%u", f->mem_host, (unsigned)f->mem_port);
	snprintf(budget, sizeof(budget), "%" PRIu64, f->o.budget);

	char *argv[24];
	int n = 0;

	argv[n++] = bin;
	argv[n++] = (char *)"--socket";
	argv[n++] = sock;
	argv[n++] = (char *)"--allow";
	argv[n++] = allow;
	argv[n++] = (char *)"--prefetch";
	argv[n++] = (char *)"0";
	argv[n++] = (char *)"--log-level";
	argv[n++] = (char *)"warn";
	if (with_pool) {
		argv[n++] = (char *)"--servers";
		argv[n++] = servers;
		argv[n++] = (char *)"--secret-file";
		argv[n++] = f->secret_path;
		argv[n++] = (char *)"--transport";
		argv[n++] = (char *)fx_kind_name(f->o.kind);
		argv[n++] = (char *)"--vm-budget";
		argv[n++] = budget;
	}
	argv[n] = NULL;
	rc = spawn(f, with_pool ? "pager-remote" : "pager-unused", argv, err);
	if (rc < 0)
		return rc;
	return wait_socket(&f->procs[f->nprocs - 1], sock, err);
}

/* ------------------------------------------------------------------ guest regions */

/* A memfd region registered on a fresh uffd in @p modes. */
struct ft_region {
	uint8_t *mem;
	size_t len;
	int memfd;
	int uffd;
	struct ferry_vmm_conn *conn;
	/* in-process handler */
	pthread_t thr;
	bool thr_started;
	int stopfd;
	bool copy;
	const uint8_t *src;
	uint64_t handled, handle_errors;
	int handler_errno;
};

static void region_free(struct ft_region *r)
{
	if (r->thr_started) {
		uint64_t one = 1;

		(void)!write(r->stopfd, &one, sizeof(one));
		pthread_join(r->thr, NULL);
	}
	if (r->stopfd > 0)
		close(r->stopfd);
	if (r->conn) {
		(void)ferry_vmm_unregister(r->conn);
		ferry_vmm_close(r->conn);
	}
	if (r->mem)
		munmap(r->mem, r->len);
	if (r->uffd >= 0)
		close(r->uffd);
	if (r->memfd >= 0)
		close(r->memfd);
	memset(r, 0, sizeof(*r));
	r->memfd = r->uffd = -1;
}

static int region_new(struct ft_region *r, uint64_t pages, uint64_t modes, bool for_pager, struct ferry_err *err)
{
	uint64_t feats = FERRY_VMM_UFFD_F_RECOMMENDED;
	int rc;

	memset(r, 0, sizeof(*r));
	r->memfd = r->uffd = -1;
	r->len = pages * PG;
	r->memfd = memfd_create("ferry-perf-fault", MFD_CLOEXEC);
	if (r->memfd < 0 || ftruncate(r->memfd, (off_t)r->len) < 0)
		return ferry_err_set(err, errno, "memfd of %zu bytes: %s", r->len, strerror(errno));
	r->mem = mmap(NULL, r->len, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd, 0);
	if (r->mem == MAP_FAILED) {
		r->mem = NULL;
		return ferry_err_set(err, errno, "mmap memfd: %s", strerror(errno));
	}
	(void)madvise(r->mem, r->len, MADV_NOHUGEPAGE);
	/*
	 * The pager pages out only regions registered with MODE_WP on a uffd
	 * without WP_ASYNC (ferry-pager --help), which FERRY_VMM_UFFD_F_RECOMMENDED
	 * includes: leave it out.
	 */
	if (for_pager)
		feats &= ~FERRY_VMM_UFFD_F_WP_ASYNC;
	else
		feats = FERRY_VMM_UFFD_F_MISSING_SHMEM;
	r->uffd = ferry_vmm_uffd_create(O_CLOEXEC | O_NONBLOCK | FERRY_VMM_UFFD_BEST_EFFORT, feats,
					err);
	if (r->uffd < 0)
		return r->uffd;
	rc = ferry_vmm_uffd_register_range(r->uffd, r->mem, r->len, modes, err);
	return rc < 0 ? rc : 0;
}

static void *handler_main(void *arg)
{
	struct ft_region *r = arg;
	struct pollfd pfd[2] = { { .fd = r->uffd, .events = POLLIN }, { .fd = r->stopfd, .events = POLLIN } };

	for (;;) {
		struct uffd_msg msg;

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			r->handler_errno = errno;
			return NULL;
		}
		if (pfd[1].revents)
			return NULL;
		if (pfd[0].revents & (POLLERR | POLLHUP | POLLNVAL)) {
			/* e.g. a blocking uffd: poll() reports POLLERR on those, never POLLIN */
			r->handler_errno = EBADFD;
			return NULL;
		}
		if (!(pfd[0].revents & POLLIN))
			continue;
		ssize_t n = read(r->uffd, &msg, sizeof(msg));

		if (n != (ssize_t)sizeof(msg)) {
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			r->handler_errno = n < 0 ? errno : EIO;
			return NULL;
		}
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		uint64_t addr = msg.arg.pagefault.address & ~(uint64_t)(PG - 1);
		int rc;

		if (r->copy) {
			struct uffdio_copy cp = {
				.dst = addr, .src = (uintptr_t)(r->src + (addr - (uintptr_t)r->mem)), .len = PG,
			};

			rc = ioctl(r->uffd, UFFDIO_COPY, &cp);
		} else {
			struct uffdio_zeropage zp = { .range = { .start = addr, .len = PG } };

			rc = ioctl(r->uffd, UFFDIO_ZEROPAGE, &zp);
		}
		if (rc < 0 && errno != EEXIST)
			r->handle_errors++;
		else
			r->handled++;
	}
}

static int region_start_handler(struct ft_region *r, bool copy, const uint8_t *src, struct ferry_err *err)
{
	int rc;

	r->copy = copy;
	r->src = src;
	r->stopfd = eventfd(0, EFD_CLOEXEC);
	if (r->stopfd < 0)
		return ferry_err_set(err, errno, "eventfd: %s", strerror(errno));
	rc = pthread_create(&r->thr, NULL, handler_main, r);
	if (rc != 0)
		return ferry_err_set(err, rc, "pthread_create: %s", strerror(rc));
	r->thr_started = true;
	return 0;
}

static int region_register(struct ft_region *r, const char *sock, const char *vm_id, uint64_t modes,
			   struct ferry_err *err)
{
	struct ferry_vmm_region reg = {
		.gpa = 0, .size = r->len, .hva = (uintptr_t)r->mem, .offset = 0, .page_size = PG,
		.modes = (uint32_t)modes, .mem_fd = r->memfd,
	};
	int rc;

	r->conn = ferry_vmm_connect(sock);
	if (!r->conn)
		return ferry_err_set(err, errno, "connect to pager %s: %s", sock, strerror(errno));
	rc = ferry_vmm_register(r->conn, vm_id, &reg, 1, r->uffd, r->memfd);
	if (rc < 0)
		return ferry_err_set(err, rc, "register %s with %s: %s", vm_id, sock, ferry_vmm_errmsg(r->conn));
	return 0;
}

/* ------------------------------------------------------------------ cases */

/*
 * A case: a setup (region, handler, stamped pages), then R chunks of timed
 * faults taking turns with the other cases, then teardown.
 */
struct ft_state {
	bool active;
	enum ft_case c;
	uint64_t npages;
	uint64_t *order;                 /* pages in the order they are touched */
	uint64_t pos;
	/* anon */
	uint8_t *anon;
	/* uffd / pager */
	struct ft_region reg;
	uint8_t *src;                    /* uffd-copy: stamped source */
	uint64_t gen;                    /* expected generation of every page (0 = zeros) */
	uint64_t seed;
	/* pager-remote: pages given back by FREE_HINT (never timed), pages faulted in since */
	uint8_t *freed;
	uint64_t *since;
	uint64_t nsince, since_cap;
	/* xport */
	struct fx_ctx *ctx;
	struct pool_client *pc;
	struct pool_extent ext;
	struct fx_mr *mr;
	uint8_t *buf;
};

static void state_free(struct ft_state *s)
{
	if (s->pc && s->ext.length && fx_conn_state(pool_client_conn(s->pc)) == FX_CONN_CONNECTED)
		(void)pool_client_free(s->pc, s->ext.id, NULL);
	if (s->mr)
		fx_dereg_mr(s->mr);
	if (s->pc)
		pool_client_close(s->pc);
	if (s->ctx)
		fx_ctx_destroy(s->ctx);
	if (s->buf)
		munmap(s->buf, 2 * PG);
	region_free(&s->reg);
	if (s->anon)
		munmap(s->anon, s->npages * PG);
	if (s->src)
		munmap(s->src, s->npages * PG);
	free(s->order);
	free(s->freed);
	free(s->since);
	memset(s, 0, sizeof(*s));
	s->reg.memfd = s->reg.uffd = -1;
}

/* One READ or WRITE of page @p idx of the extent; returns the time it took. */
static int xport_op(struct ft_state *s, enum fx_opcode op, uint64_t idx, uint8_t *local, uint64_t *ns,
		    struct ferry_err *err)
{
	struct fx_sge sge = { .addr = local, .length = PG, .lkey = s->mr->lkey };
	struct fx_send_wr wr = {
		.wr_id = idx, .opcode = op, .flags = FX_WR_SIGNALED, .sg_list = &sge, .num_sge = 1,
		.remote_addr = s->ext.base + idx * PG, .rkey = s->ext.rkey,
	};
	struct fx_wc wc;
	int perr = 0, n;
	uint64_t t0 = stats_now_ns();

	if (fx_post_send(pool_client_conn(s->pc), &wr, 1, &perr) < 0)
		return ferry_err_set(err, perr ? perr : EIO, "post %s: %s", op == FX_OP_READ ? "READ" : "WRITE",
				     fx_conn_error(pool_client_conn(s->pc)));
	do {
		n = pool_client_poll(s->pc, &wc, 1, 1000);
		if (n < 0)
			return ferry_err_set(err, -n, "poll: %s", strerror(-n));
		if (n == 0 && stats_now_ns() - t0 > 10000000000ull)
			return ferry_err_set(err, ETIMEDOUT, "transport op not completed in 10 s");
	} while (n == 0);
	if (ns)
		*ns = stats_now_ns() - t0;
	if (wc.status != FX_WC_SUCCESS)
		return ferry_err_set(err, EIO, "%s completed with %s", op == FX_OP_READ ? "READ" : "WRITE",
				     fx_wc_status_str(wc.status));
	return 0;
}

static int setup_xport(struct ft *f, struct ft_state *s, struct ferry_err *err)
{
	struct ferry_secret secret;
	struct fx_ctx_opts copts = { 0 };
	struct pool_client_opts popts = { 0 };
	char name[48];
	int rc;

	rc = ferry_auth_init(err);
	if (rc < 0)
		return rc;
	rc = ferry_secret_load(f->secret_path, &secret, err);
	if (rc < 0)
		return rc;
	rc = fx_ctx_create(f->o.kind, &copts, &s->ctx, err);
	if (rc < 0) {
		ferry_secret_wipe(&secret);
		return rc;
	}
	snprintf(name, sizeof(name), "ferry-perf-fault-%d", (int)getpid());
	popts.host = f->mem_host;
	popts.port = f->mem_port;
	popts.name = name;
	popts.secret = &secret;
	rc = pool_client_connect(s->ctx, &popts, &s->pc, err);
	ferry_secret_wipe(&secret);
	if (rc < 0)
		return rc;
	rc = pool_client_alloc(s->pc, (uint64_t)FT_XPORT_PAGES * PG, &s->ext, err);
	if (rc < 0)
		return rc;
	s->buf = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s->buf == MAP_FAILED) {
		s->buf = NULL;
		return ferry_err_set(err, ENOMEM, "mmap");
	}
	rc = fx_reg_mr(pool_client_pd(s->pc), s->buf, 2 * PG, FX_ACCESS_LOCAL_WRITE, &s->mr, err);
	if (rc < 0)
		return rc;
	/* Stamp every page of the extent (generation 1), then read them back at random. */
	for (uint64_t i = 0; i < FT_XPORT_PAGES; i++) {
		gs_stamp_page(s->buf + PG, s->seed, i, 1);
		rc = xport_op(s, FX_OP_WRITE, i, s->buf + PG, NULL, err);
		if (rc < 0)
			return rc;
	}
	for (uint64_t i = 0; i < 64; i++) {       /* warm-up */
		rc = xport_op(s, FX_OP_READ, ft_rand(&f->rng) % FT_XPORT_PAGES, s->buf, NULL, err);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/*
 * pager-remote: hand the pages faulted in since the last call back to the
 * pager with FREE_HINTs (they become UNUSED and are never touched again), so
 * the VM stays below its budget and the next page-ins need no page-out.
 */
static int remote_give_back(struct ft_state *s, struct ferry_err *err)
{
	struct ferry_vmm_range *r;
	int rc;

	if (!s->nsince)
		return 0;
	r = malloc(s->nsince * sizeof(*r));
	if (!r)
		return ferry_err_set(err, ENOMEM, "out of memory");
	for (uint64_t i = 0; i < s->nsince; i++) {
		r[i].gpa = s->since[i] * PG;
		r[i].len = PG;
		s->freed[s->since[i]] = 1;
	}
	rc = ferry_vmm_free_hints(s->reg.conn, r, s->nsince);
	free(r);
	if (rc < 0)
		return ferry_err_set(err, rc, "FREE_HINT: %s", ferry_vmm_errmsg(s->reg.conn));
	s->nsince = 0;
	return 0;
}

static int setup_case(struct ft *f, struct ft_state *s, enum ft_case c, struct ferry_err *err)
{
	uint64_t n = f->o.pages;
	char vm_id[64];
	int rc = 0;

	memset(s, 0, sizeof(*s));
	s->reg.memfd = s->reg.uffd = -1;
	s->c = c;
	s->seed = f->o.seed ^ (0x1234567ull * (c + 1));
	if (c == FT_REMOTE || c == FT_REMOTE_FULL)
		n += f->o.budget / PG;           /* the budget's worth stays resident */
	s->npages = n;
	s->order = malloc(n * sizeof(*s->order));
	if (!s->order)
		return ferry_err_set(err, ENOMEM, "out of memory");
	for (uint64_t i = 0; i < n; i++)
		s->order[i] = i;
	shuffle(s->order, n, &f->rng);

	switch (c) {
	case FT_ANON:
		s->anon = mmap(NULL, n * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (s->anon == MAP_FAILED) {
			s->anon = NULL;
			return ferry_err_set(err, ENOMEM, "mmap %" PRIu64 " pages", n);
		}
		(void)madvise(s->anon, n * PG, MADV_NOHUGEPAGE);
		break;
	case FT_ZEROPAGE:
	case FT_COPY:
		if (c == FT_COPY) {
			s->src = mmap(NULL, n * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (s->src == MAP_FAILED) {
				s->src = NULL;
				return ferry_err_set(err, ENOMEM, "mmap %" PRIu64 " pages", n);
			}
			for (uint64_t i = 0; i < n; i++)
				gs_stamp_page(s->src + i * PG, s->seed, i, 1);
			s->gen = 1;
		}
		rc = region_new(&s->reg, n, FERRY_VMM_MODE_MISSING, false, err);
		if (rc == 0)
			rc = region_start_handler(&s->reg, c == FT_COPY, s->src, err);
		break;
	case FT_XPORT:
		rc = setup_xport(f, s, err);
		break;
	case FT_UNUSED:
		rc = region_new(&s->reg, n, FERRY_VMM_MODE_MISSING | FERRY_VMM_MODE_WP, true, err);
		snprintf(vm_id, sizeof(vm_id), "perf-fault-unused-%d", (int)getpid());
		if (rc == 0)
			rc = region_register(&s->reg, f->sock_unused, vm_id, FERRY_VMM_MODE_MISSING | FERRY_VMM_MODE_WP,
					     err);
		break;
	case FT_REMOTE:
	case FT_REMOTE_FULL: {
		uint64_t t0, nonres = 0;

		rc = region_new(&s->reg, n, FERRY_VMM_MODE_MISSING | FERRY_VMM_MODE_WP, true, err);
		snprintf(vm_id, sizeof(vm_id), "perf-fault-%s-%d", c == FT_REMOTE ? "remote" : "full", (int)getpid());
		if (rc == 0)
			rc = region_register(&s->reg, f->sock_remote, vm_id, FERRY_VMM_MODE_MISSING | FERRY_VMM_MODE_WP,
					     err);
		if (rc < 0)
			break;
		/* Write every page (stamped); the budget makes the pager page most of them out. */
		s->gen = 1;
		for (uint64_t i = 0; i < n; i++)
			gs_stamp_page(s->reg.mem + i * PG, s->seed, i, 1);
		/* Page-out may run behind: wait (bounded) until no more than the budget is resident. */
		t0 = stats_now_ns();
		for (;;) {
			nonres = 0;
			for (uint64_t i = 0; i < n; i++)
				nonres += !resident(s->reg.mem + i * PG);
			if (n - nonres <= f->o.budget / PG + 8 || stats_now_ns() - t0 > 10000000000ull)
				break;
			usleep(20000);
		}
		snprintf(f->res[c].note, sizeof(f->res[c].note),
			 "%" PRIu64 " of %" PRIu64 " written pages paged out after %.2f s (budget %" PRIu64 " pages)",
			 nonres, n, (double)(stats_now_ns() - t0) / 1e9, f->o.budget / PG);
		progress(f, "%s: %s", case_names[c], f->res[c].note);
		if (nonres == 0) {
			rc = ferry_err_set(err, EAGAIN, "the pager paged nothing out (budget %" PRIu64 " bytes): "
					   "no REMOTE page to fault on", f->o.budget);
			break;
		}
		if (c == FT_REMOTE) {
			/* Headroom: give the resident pages back, so page-ins need no page-out. */
			s->freed = calloc(n, 1);
			s->since_cap = f->o.budget / PG;
			s->since = malloc(s->since_cap * sizeof(*s->since));
			if (!s->freed || !s->since)
				return ferry_err_set(err, ENOMEM, "out of memory");
			for (uint64_t i = 0; i < n && s->nsince < s->since_cap; i++)
				if (resident(s->reg.mem + i * PG))
					s->since[s->nsince++] = i;
			rc = remote_give_back(s, err);
		}
		break;
	}
	default:
		break;
	}
	return rc;
}

/* A faulting thread: touches pages[first], pages[first + stride], ... and times each touch. */
struct ft_worker {
	pthread_t thr;
	uint8_t *base;
	const uint64_t *pages;
	uint64_t *ns;
	size_t n, first, stride;
	bool write;
	uint64_t t_start, t_end;
};

static void *worker_main(void *arg)
{
	struct ft_worker *w = arg;

	w->t_start = stats_now_ns();
	for (size_t j = w->first; j < w->n; j += w->stride)
		w->ns[j] = touch(w->base + w->pages[j] * PG, w->write);
	w->t_end = stats_now_ns();
	return NULL;
}

/*
 * Touch @p pages[0..m) with --threads faulting threads. *@p wall: from the
 * first thread's first touch to the last thread's last (thread start-up is
 * not counted).
 */
static int touch_all(struct ft *f, uint8_t *base, const uint64_t *pages, uint64_t *ns, size_t m, uint64_t *wall,
		     struct ferry_err *err)
{
	unsigned t = f->o.threads;
	struct ft_worker w[64];
	unsigned started = 0;
	uint64_t t0, t1;
	int rc = 0;

	if (t > m)
		t = (unsigned)m;
	if (t < 1)
		t = 1;
	t0 = stats_now_ns();
	t1 = t0;
	if (t == 1) {
		w[0] = (struct ft_worker){ .base = base, .pages = pages, .ns = ns, .n = m, .first = 0, .stride = 1,
					   .write = f->o.write_access };
		worker_main(&w[0]);
		t0 = w[0].t_start;
		t1 = w[0].t_end;
	} else {
		for (unsigned i = 0; i < t; i++) {
			w[i] = (struct ft_worker){ .base = base, .pages = pages, .ns = ns, .n = m, .first = i, .stride = t,
						   .write = f->o.write_access };
			int e = pthread_create(&w[i].thr, NULL, worker_main, &w[i]);

			if (e != 0) {
				rc = ferry_err_set(err, e, "pthread_create: %s", strerror(e));
				/* the pages of the missing threads are touched here, so none is left out */
				for (size_t j = i; j < m; j += t)
					ns[j] = touch(base + pages[j] * PG, f->o.write_access);
				for (unsigned i2 = i + 1; i2 < t; i2++)
					for (size_t j = i2; j < m; j += t)
						ns[j] = touch(base + pages[j] * PG, f->o.write_access);
				break;
			}
			started++;
		}
		for (unsigned i = 0; i < started; i++)
			pthread_join(w[i].thr, NULL);
		t0 = UINT64_MAX;
		for (unsigned i = 0; i < started; i++) {
			if (w[i].t_start < t0)
				t0 = w[i].t_start;
			if (w[i].t_end > t1)
				t1 = w[i].t_end;
		}
		if (started < t || t0 > t1) {
			t0 = t1;
			t1 = stats_now_ns();
		}
	}
	*wall = t1 - t0;
	return rc;
}

static int check_handler(const struct ft_state *s, struct ferry_err *err)
{
	if (s->reg.handle_errors)
		return ferry_err_set(err, EIO, "%s: the in-process handler failed %" PRIu64 " times",
				     case_names[s->c], s->reg.handle_errors);
	if (s->reg.handler_errno)
		return ferry_err_set(err, s->reg.handler_errno, "%s: handler: %s", case_names[s->c],
				     strerror(s->reg.handler_errno));
	return 0;
}

/*
 * Time the next @p k faults of case @p s: pick the pages (skipping, for the
 * REMOTE cases, pages that are resident and so would not fault), touch them
 * with --threads faulting threads, then verify every page and keep the
 * samples. Only the touching counts towards faults/s. pager-remote works in
 * batches that fit in the budget's headroom and gives the pages back between
 * them.
 */
static int run_chunk(struct ft *f, struct ft_state *s, uint64_t k, struct ferry_err *err)
{
	struct ft_result *r = &f->res[s->c];
	uint64_t *list = NULL, *ns = NULL, done = 0, wall;
	uint8_t *base;
	int rc = 0;

	if (s->c == FT_XPORT) {
		for (uint64_t i = 0; i < k; i++) {
			uint64_t page = s->order[s->pos++ % s->npages] % FT_XPORT_PAGES, t;

			rc = xport_op(s, FX_OP_READ, page, s->buf, &t, err);
			if (rc < 0)
				return rc;
			r->busy_ns += t;
			verify_page(f, s->c, s->buf, page, 1, s->seed);
			if (add_sample(r, t) < 0)
				return ferry_err_set(err, ENOMEM, "out of memory");
		}
		return 0;
	}
	base = s->c == FT_ANON ? s->anon : s->reg.mem;
	list = malloc(k * sizeof(*list));
	ns = malloc(k * sizeof(*ns));
	if (!list || !ns) {
		rc = ferry_err_set(err, ENOMEM, "out of memory");
		goto out;
	}
	while (done < k && s->pos < s->npages) {
		uint64_t want = k - done;
		size_t m = 0;

		if (s->c == FT_REMOTE) {
			if (s->nsince + 16 >= s->since_cap) {
				rc = remote_give_back(s, err);       /* not timed */
				if (rc < 0)
					goto out;
			}
			if (want > s->since_cap - 16 - s->nsince)
				want = s->since_cap - 16 - s->nsince;
		}
		/*
		 * At a full budget the pager pages out what was faulted in a moment
		 * ago: verify a batch while it is still (mostly) resident, or the
		 * verification would fault it in again.
		 */
		if (s->c == FT_REMOTE_FULL && want > f->o.budget / PG / 2)
			want = f->o.budget / PG / 2 ? f->o.budget / PG / 2 : 1;
		while (m < want && s->pos < s->npages) {
			uint64_t page = s->order[s->pos++];

			if (s->freed && s->freed[page])
				continue;
			if ((s->c == FT_REMOTE || s->c == FT_REMOTE_FULL) && resident(base + page * PG)) {
				r->not_faulting++;
				continue;
			}
			list[m++] = page;
		}
		if (!m)
			break;
		rc = touch_all(f, base, list, ns, m, &wall, err);
		r->busy_ns += wall;
		if (rc == 0)
			rc = check_handler(s, err);
		if (rc < 0)
			goto out;
		for (size_t j = 0; j < m; j++) {
			verify_page(f, s->c, base + list[j] * PG, list[j], s->gen, s->seed);
			if (add_sample(r, ns[j]) < 0) {
				rc = ferry_err_set(err, ENOMEM, "out of memory");
				goto out;
			}
			if (s->c == FT_REMOTE)
				s->since[s->nsince++] = list[j];
		}
		done += m;
	}
out:
	free(list);
	free(ns);
	return rc;
}

/* ------------------------------------------------------------------ reporting */

static double ratio(double a, double b)
{
	return a > 0 && b > 0 ? a / b : 0;
}

struct ft_ratios {
	double unused_vs_zeropage;       /* target <= 1.5 */
	double remote_vs_floor;          /* target <= 1.3 */
	double floor_us;                 /* uffd-copy p50 + xport-read p50 */
	int verdict_unused, verdict_remote; /* 1 pass, 0 fail, -1 n/a */
};

static void compute_ratios(const struct ft *f, struct ft_ratios *q)
{
	const struct ft_result *r = f->res;

	memset(q, 0, sizeof(*q));
	q->unused_vs_zeropage = ratio(r[FT_UNUSED].lat.p50_us, r[FT_ZEROPAGE].lat.p50_us);
	if (r[FT_COPY].ran && r[FT_XPORT].ran)
		q->floor_us = r[FT_COPY].lat.p50_us + r[FT_XPORT].lat.p50_us;
	q->remote_vs_floor = ratio(r[FT_REMOTE].lat.p50_us, q->floor_us);
	q->verdict_unused = q->unused_vs_zeropage > 0 ? q->unused_vs_zeropage <= FT_RATIO_UNUSED_MAX : -1;
	q->verdict_remote = q->remote_vs_floor > 0 ? q->remote_vs_floor <= FT_RATIO_REMOTE_MAX : -1;
}

static void summary(const struct ft *f, const struct ft_ratios *q, FILE *out)
{
	fprintf(out, "\nferry-perf fault: %" PRIu64 " faults per case, %s access, %u faulting thread%s, %u rounds, "
		     "transport %s\n",
		f->o.pages, f->o.write_access ? "write" : "read", f->o.threads, f->o.threads > 1 ? "s" : "", f->o.rounds,
		fx_kind_name(f->o.kind));
	if (f->o.pin >= 0)
		fprintf(out, "  (everything pinned to CPU %d)\n", f->o.pin);
	fprintf(out, "  %-18s %9s %9s %9s %9s %11s\n", "case", "p50 us", "p99 us", "p99.9 us", "max us", "faults/s");
	for (int c = 0; c < FT_NCASES; c++) {
		const struct ft_result *r = &f->res[c];

		if (!r->ran) {
			if (f->o.want[c])
				fprintf(out, "  %-18s skipped: %s\n", case_names[c], r->skip);
			continue;
		}
		fprintf(out, "  %-18s %9.2f %9.2f %9.2f %9.2f %11.0f\n", case_names[c], r->lat.p50_us, r->lat.p99_us,
			r->lat.p999_us, r->lat.max_us, r->faults_per_s);
	}
	for (int c = FT_UNUSED; c <= FT_REMOTE_FULL; c++) {
		static const char *const keys[] = { "zero_faults", "remote_faults", "pages_paged_out",
						     "pages_prefetched", "wp_faults", "fault_errors" };
		const struct ft_result *r = &f->res[c];

		if (r->not_faulting)
			fprintf(out, "  (%s: %" PRIu64 " pages were resident and not timed)\n", case_names[c],
				r->not_faulting);
		if (!r->nstats)
			continue;
		fprintf(out, "  %s pager counters:", case_names[c]);
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
			for (int i = 0; i < r->nstats; i++)
				if (strcmp(r->stats[i].name, keys[k]) == 0)
					fprintf(out, " %s=%" PRIu64, keys[k], r->stats[i].value);
		fputc('\n', out);
	}
	if (q->unused_vs_zeropage > 0)
		fprintf(out, "  UNUSED p50 / in-process zeropage p50 = %.2fx (target <= %.1fx: %s)\n",
			q->unused_vs_zeropage, FT_RATIO_UNUSED_MAX, q->verdict_unused ? "ok" : "MISSED");
	else
		fprintf(out, "  UNUSED ratio: n/a (a side was not measured)\n");
	if (q->remote_vs_floor > 0)
		fprintf(out, "  REMOTE p50 / (in-process copy p50 + transport read p50 = %.2f us) = %.2fx "
			     "(target <= %.1fx: %s)\n",
			q->floor_us, q->remote_vs_floor, FT_RATIO_REMOTE_MAX, q->verdict_remote ? "ok" : "MISSED");
	else
		fprintf(out, "  REMOTE ratio: n/a (a side was not measured)\n");
	if (f->o.threads > 1)
		fprintf(out, "  (with %u faulting threads the latencies are loaded latencies and xport-read stays "
			     "serial: the targets are defined for --threads 1)\n", f->o.threads);
	fprintf(out, "  verification: %s (%" PRIu64 " pages checked)%s%s\n", f->verify_errors ? "FAILED" : "passed",
		f->verified, f->verify_errors ? ": " : "", f->verify_errors ? f->first_error : "");
}

static json_t *jnum(double v)
{
	return v > 0 && isfinite(v) ? json_real(v) : json_null();
}

static int write_json(const struct ft *f, const struct ft_ratios *q, const char *path)
{
	json_t *root = json_object(), *cases = json_array(), *host, *ratios, *ver;
	struct ferry_err err = { 0 };
	int rc;

	json_object_set_new(root, "tool", json_string("ferry-perf fault"));
	host = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:s}", "hostname", f->host.hostname, "kernel",
			 f->host.kernel, "cpu", f->host.cpu_model, "cpus", (json_int_t)f->host.cpus_online,
			 "mem_total_bytes", (json_int_t)f->host.mem_total_bytes, "time_utc", f->host.time_utc,
			 "version", f->host.version, "build_type", f->host.build_type, "compiler", f->host.compiler);
	json_object_set_new(root, "host", host);
	json_object_set_new(root, "params",
			    json_pack("{s:I, s:i, s:i, s:i, s:s, s:s, s:I, s:I, s:b}", "pages", (json_int_t)f->o.pages,
				      "threads", (int)f->o.threads, "pin_cpu", f->o.pin, "rounds",
				      (int)f->o.rounds, "access", f->o.write_access ? "write" : "read", "transport",
				      fx_kind_name(f->o.kind), "budget_bytes", (json_int_t)f->o.budget, "seed",
				      (json_int_t)f->o.seed, "quick", f->o.quick));
	for (int c = 0; c < FT_NCASES; c++) {
		const struct ft_result *r = &f->res[c];
		json_t *jc;

		if (!f->o.want[c])
			continue;
		jc = json_pack("{s:s, s:s, s:b}", "name", case_names[c], "what", case_desc[c], "ran", r->ran);
		if (r->ran) {
			json_object_set_new(jc, "latency",
					    json_pack("{s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "samples",
						      (json_int_t)r->lat.n, "min_us", jnum(r->lat.min_us), "mean_us",
						      jnum(r->lat.mean_us), "p50_us", jnum(r->lat.p50_us), "p90_us",
						      jnum(r->lat.p90_us), "p99_us", jnum(r->lat.p99_us), "p999_us",
						      jnum(r->lat.p999_us), "max_us", jnum(r->lat.max_us), "stddev_us",
						      json_real(r->lat.stddev_us)));
			json_object_set_new(jc, "faults_per_s", jnum(r->faults_per_s));
			if (c == FT_REMOTE || c == FT_REMOTE_FULL) {
				json_object_set_new(jc, "resident_not_timed", json_integer((json_int_t)r->not_faulting));
				json_object_set_new(jc, "pageout", json_string(r->note));
			}
			if (r->nstats) {
				json_t *ps = json_object();

				for (int i = 0; i < r->nstats; i++)
					json_object_set_new(ps, r->stats[i].name, json_integer((json_int_t)r->stats[i].value));
				json_object_set_new(jc, "pager_stats", ps);
			}
		} else {
			json_object_set_new(jc, "skipped", json_string(r->skip));
		}
		json_array_append_new(cases, jc);
	}
	json_object_set_new(root, "cases", cases);
	ratios = json_pack("{s:o, s:f, s:o, s:o, s:f, s:o}", "unused_p50_vs_zeropage_p50", jnum(q->unused_vs_zeropage),
			   "unused_target_max", FT_RATIO_UNUSED_MAX, "remote_p50_vs_copy_plus_xport_p50",
			   jnum(q->remote_vs_floor), "floor_us", jnum(q->floor_us), "remote_target_max",
			   FT_RATIO_REMOTE_MAX, "verdicts",
			   json_pack("{s:o, s:o}", "unused",
				     q->verdict_unused < 0 ? json_null() : json_boolean(q->verdict_unused),
				     "remote", q->verdict_remote < 0 ? json_null() : json_boolean(q->verdict_remote)));
	json_object_set_new(root, "ratios", ratios);
	ver = json_pack("{s:b, s:I, s:I, s:o}", "passed", f->verify_errors == 0, "pages_checked",
			(json_int_t)f->verified, "errors", (json_int_t)f->verify_errors, "first_error",
			f->verify_errors ? json_string(f->first_error) : json_null());
	json_object_set_new(root, "verification", ver);
	json_object_set_new(root, "total_seconds", json_real(f->total_seconds));
	rc = report_json_dump(root, path, "ferry-perf fault", &err);
	json_decref(root);
	if (rc < 0)
		fprintf(stderr, "%s\n", err.msg);
	return rc;
}

static int write_csv(const struct ft *f, const char *path)
{
	struct ferry_err err = { 0 };
	FILE *fp = report_out_open(path, "ferry-perf fault", &err);

	if (!fp) {
		fprintf(stderr, "%s\n", err.msg);
		return -1;
	}
	fprintf(fp, "case,samples,min_us,mean_us,p50_us,p90_us,p99_us,p999_us,max_us,faults_per_s\n");
	for (int c = 0; c < FT_NCASES; c++) {
		const struct ft_result *r = &f->res[c];

		if (r->ran)
			fprintf(fp, "%s,%zu,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.0f\n", case_names[c], r->lat.n,
				r->lat.min_us, r->lat.mean_us, r->lat.p50_us, r->lat.p90_us, r->lat.p99_us,
				r->lat.p999_us, r->lat.max_us, r->faults_per_s);
	}
	if (report_out_close(fp, path, "ferry-perf fault", &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		return -1;
	}
	return 0;
}

/* Latency CDF per case (log x), data inline; rendered when gnuplot is there. */
static int write_plot(const struct ft *f, const char *path)
{
	char gp[PATH_MAX];
	const char *dot = strrchr(path, '.');
	bool svg = dot && strcmp(dot, ".svg") == 0;
	size_t base = dot ? (size_t)(dot - path) : strlen(path);
	FILE *fp;

	snprintf(gp, sizeof(gp), "%.*s.gp", (int)base, path);
	fp = fopen(gp, "w");
	if (!fp) {
		fprintf(stderr, "ferry-perf fault: cannot write %s: %s\n", gp, strerror(errno));
		return -1;
	}
	fprintf(fp, "# ferry-perf fault: latency CDF per case (written by ferry-perf; gnuplot %s)\n", gp);
	fprintf(fp, "set terminal %s size 1000,600\nset output '%s'\n", svg ? "svg" : "pngcairo", path);
	fprintf(fp, "set title 'Page-fault service latency (%s access, %s host)'\n",
		f->o.write_access ? "write" : "read", f->host.hostname);
	fprintf(fp, "set logscale x\nset xlabel 'latency (us)'\nset ylabel 'fraction of faults <= x'\n"
		    "set yrange [0:1]\nset key bottom right\nset grid\n");
	for (int c = 0; c < FT_NCASES; c++) {
		const struct ft_result *r = &f->res[c];

		if (!r->ran || !r->n)
			continue;
		fprintf(fp, "$d%d << EOD\n", c);
		size_t step = r->n > 2000 ? r->n / 2000 : 1;

		for (size_t i = 0; i < r->n; i += step)
			fprintf(fp, "%.3f %.5f\n", (double)r->ns[i] / 1000.0, (double)(i + 1) / (double)r->n);
		fprintf(fp, "%.3f 1.0\nEOD\n", (double)r->ns[r->n - 1] / 1000.0);
	}
	fprintf(fp, "plot ");
	bool first = true;

	for (int c = 0; c < FT_NCASES; c++) {
		if (!f->res[c].ran || !f->res[c].n)
			continue;
		fprintf(fp, "%s$d%d using 1:2 with lines lw 2 title '%s (p50 %.1f us)'", first ? "" : ", \\\n     ", c,
			case_names[c], f->res[c].lat.p50_us);
		first = false;
	}
	fprintf(fp, "\n");
	fclose(fp);
	if (first)
		return 0;
	if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
		fprintf(stderr, "ferry-perf fault: gnuplot not installed; script written to %s\n", gp);
		return 0;
	}

	char cmd[PATH_MAX + 32];

	snprintf(cmd, sizeof(cmd), "gnuplot '%s'", gp);
	if (system(cmd) != 0) {
		fprintf(stderr, "ferry-perf fault: gnuplot %s failed\n", gp);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ main */

static void rm_run_dir(struct ft *f)
{
	char p[PATH_MAX + 64];
	static const char *const files[] = {
		"secret", "memsrv.port", "memsrv.log", "pager-unused.log", "pager-remote.log",
		"pager-unused.sock", "pager-remote.sock",
	};

	if (!f->run_dir[0])
		return;
	if (f->o.keep) {
		fprintf(stderr, "ferry-perf fault: run directory kept: %s\n", f->run_dir);
		return;
	}
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", f->run_dir, files[i]);
		(void)unlink(p);
	}
	if (rmdir(f->run_dir) < 0 && errno != ENOENT)
		fprintf(stderr, "ferry-perf fault: could not remove %s: %s\n", f->run_dir, strerror(errno));
}

int perf_fault_main(int argc, char **argv)
{
	struct ft *f = calloc(1, sizeof(*f));
	struct ft_state st[FT_NCASES];
	struct ferry_err err = { 0 };
	struct ft_ratios q;
	int rc, status = PERF_EXIT_OK;
	uint64_t t_start = stats_now_ns();

	if (!f)
		return PERF_EXIT_ERROR;
	rc = parse_opts(argc, argv, &f->o);
	if (rc) {
		free(f);
		return rc > 0 ? PERF_EXIT_OK : PERF_EXIT_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_fatal_signal);
	signal(SIGTERM, on_fatal_signal);
	signal(SIGALRM, on_fatal_signal);
	if (f->o.timeout)
		alarm(f->o.timeout);
	if (f->o.pin >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(f->o.pin, &set);
		if (sched_setaffinity(0, sizeof(set), &set) < 0) {
			fprintf(stderr, "ferry-perf fault: --pin %d: %s\n", f->o.pin, strerror(errno));
			free(f);
			return PERF_EXIT_ERROR;
		}
	}
	perf_host_fill(&f->host);
	f->rng = f->o.seed;
	for (int c = 0; c < FT_NCASES; c++) {
		memset(&st[c], 0, sizeof(st[c]));
		st[c].reg.memfd = st[c].reg.uffd = -1;
	}

	snprintf(f->run_dir, sizeof(f->run_dir), "%s/ferry-perf-fault.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(f->run_dir)) {
		fprintf(stderr, "ferry-perf fault: mkdtemp %s: %s\n", f->run_dir, strerror(errno));
		free(f);
		return PERF_EXIT_ERROR;
	}

	/* Processes: a memory server (for xport and remote), the pagers. */
	bool want_remote = f->o.want[FT_REMOTE] || f->o.want[FT_REMOTE_FULL];
	bool need_mem = f->o.want[FT_XPORT] || (want_remote && !f->o.pager_sock);
	bool mem_ok = false;

	if (need_mem) {
		progress(f, "%s", f->o.server ? "using the memory server given" : "starting ferry-memsrv");
		if (start_memsrv(f, &err) < 0) {
			fprintf(stderr, "ferry-perf fault: memory server: %s\n", err.msg);
			snprintf(f->res[FT_XPORT].skip, sizeof(f->res[FT_XPORT].skip), "no memory server: %s", err.msg);
			for (int c = FT_REMOTE; !f->o.pager_sock && c <= FT_REMOTE_FULL; c++)
				snprintf(f->res[c].skip, sizeof(f->res[c].skip), "no memory server: %s", err.msg);
		} else {
			mem_ok = true;
		}
		ferry_err_clear(&err);
	}
	if (f->o.pager_sock) {
		snprintf(f->sock_unused, sizeof(f->sock_unused), "%s", f->o.pager_sock);
		snprintf(f->sock_remote, sizeof(f->sock_remote), "%s", f->o.pager_sock);
	} else {
		if (f->o.want[FT_UNUSED]) {
			progress(f, "starting ferry-pager (no pool) for UNUSED pages");
			if (start_pager(f, false, f->sock_unused, sizeof(f->sock_unused), &err) < 0) {
				fprintf(stderr, "ferry-perf fault: %s\n", err.msg);
				snprintf(f->res[FT_UNUSED].skip, sizeof(f->res[FT_UNUSED].skip), "%s", err.msg);
				f->sock_unused[0] = 0;
			}
			ferry_err_clear(&err);
		}
		if (want_remote && mem_ok) {
			progress(f, "starting ferry-pager (pool %s:%u, budget %" PRIu64 " KiB) for REMOTE pages",
				 f->mem_host, (unsigned)f->mem_port, f->o.budget >> 10);
			if (start_pager(f, true, f->sock_remote, sizeof(f->sock_remote), &err) < 0) {
				fprintf(stderr, "ferry-perf fault: %s\n", err.msg);
				for (int c = FT_REMOTE; c <= FT_REMOTE_FULL; c++)
					snprintf(f->res[c].skip, sizeof(f->res[c].skip), "%s", err.msg);
				f->sock_remote[0] = 0;
			}
			ferry_err_clear(&err);
		}
	}

	/* Set up every case that can run. */
	for (int c = 0; c < FT_NCASES; c++) {
		if (!f->o.want[c] || f->res[c].skip[0])
			continue;
		if ((c == FT_UNUSED && !f->sock_unused[0]) ||
		    ((c == FT_REMOTE || c == FT_REMOTE_FULL) && !f->sock_remote[0]) ||
		    (c == FT_XPORT && !mem_ok)) {
			if (!f->res[c].skip[0])
				snprintf(f->res[c].skip, sizeof(f->res[c].skip), "not available");
			continue;
		}
		progress(f, "%s: setting up (%s)", case_names[c], case_desc[c]);
		if (setup_case(f, &st[c], (enum ft_case)c, &err) < 0) {
			fprintf(stderr, "ferry-perf fault: %s: %s\n", case_names[c], err.msg);
			snprintf(f->res[c].skip, sizeof(f->res[c].skip), "setup failed: %s", err.msg);
			ferry_err_clear(&err);
			state_free(&st[c]);
			if (c == FT_UNUSED || c == FT_REMOTE || c == FT_REMOTE_FULL || c == FT_XPORT)
				status = PERF_EXIT_ERROR;
			continue;
		}
		st[c].active = true;
	}

	/* The cases take turns, round by round. */
	for (unsigned round = 0; round < f->o.rounds && status == PERF_EXIT_OK; round++) {
		for (int c = 0; c < FT_NCASES; c++) {
			if (!st[c].active)
				continue;
			uint64_t k = f->o.pages / f->o.rounds + (round < f->o.pages % f->o.rounds ? 1 : 0);

			if (run_chunk(f, &st[c], k, &err) < 0) {
				fprintf(stderr, "ferry-perf fault: %s: %s\n", case_names[c], err.msg);
				snprintf(f->res[c].skip, sizeof(f->res[c].skip), "failed: %s", err.msg);
				ferry_err_clear(&err);
				st[c].active = false;
				status = PERF_EXIT_ERROR;
			}
		}
		progress(f, "round %u/%u done", round + 1, f->o.rounds);
	}
	for (int c = 0; c < FT_NCASES; c++) {
		struct ft_result *r = &f->res[c];

		if (st[c].active && st[c].reg.conn) {
			int n = ferry_vmm_stats(st[c].reg.conn, r->stats, 64);

			r->nstats = n < 0 ? 0 : n > 64 ? 64 : n;
		}
		if (st[c].active && r->n) {
			r->ran = true;
			r->faults_per_s = r->busy_ns ? (double)r->n * 1e9 / (double)r->busy_ns : 0;
			stats_summarize_ns(r->ns, r->n, &r->lat);
		} else if (st[c].active && !r->skip[0]) {
			snprintf(r->skip, sizeof(r->skip), "no fault was timed");
		}
		state_free(&st[c]);
	}
	stop_procs(f);
	f->total_seconds = (double)(stats_now_ns() - t_start) / 1e9;

	compute_ratios(f, &q);
	summary(f, &q, f->o.json && strcmp(f->o.json, "-") == 0 ? stderr : stdout);
	if (f->o.json && write_json(f, &q, f->o.json) < 0 && status == PERF_EXIT_OK)
		status = PERF_EXIT_ERROR;
	if (f->o.csv && write_csv(f, f->o.csv) < 0 && status == PERF_EXIT_OK)
		status = PERF_EXIT_ERROR;
	if (f->o.plot && write_plot(f, f->o.plot) < 0 && status == PERF_EXIT_OK)
		status = PERF_EXIT_ERROR;
	if (f->verify_errors)
		status = PERF_EXIT_VERIFY;
	else if (status == PERF_EXIT_OK && f->o.strict && (q.verdict_unused == 0 || q.verdict_remote == 0))
		status = PERF_EXIT_VERDICT;
	rm_run_dir(f);
	for (int c = 0; c < FT_NCASES; c++)
		free(f->res[c].ns);
	free(f);
	return status;
}
