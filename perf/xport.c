/*
 * ferry-perf xport: page read/write latency and throughput against one or
 * more memory servers, next to the baselines that say what the figures mean.
 *
 * Working set: --pages pages of --size bytes, striped over the servers (page
 * p lives on server p % S at index p / S of one extent per server). Every
 * page holds a stamp {magic, run id, page number, check} followed by a body
 * pattern derived from the run id; the run first writes every page (fill),
 * every read checks the stamp of the page it brought back, and a final pass
 * reads a sample of pages and compares them whole. Wrong data fails the run.
 *
 * Engine: "slots" are batches in flight (the queue depth). A slot holds up
 * to `batch` work requests to one server, posted with one fx_post_send, the
 * last one signalled; in-order completion means its completion completes
 * the whole batch. Slots go to the servers round-robin. Latency is the same
 * engine at batch 1, qd 1 with one clock_gettime per op on each side.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dataplane/common/auth.h"
#include "dataplane/common/ferry_err.h"
#include "dataplane/common/ferry_log.h"
#include "dataplane/memsrv/pool_client.h"
#include "dataplane/transport/transport.h"
#include "perf/baselines.h"
#include "perf/perf.h"
#include "perf/report.h"
#include "perf/stats.h"
#include "proto/page.h"

#define XP_MAX_LIST      32
#define XP_MAX_BATCH     1024u          /* FERRY_PAGE_MAX_IOV: one TCP message can carry a whole batch */
#define XP_MAX_QD        1024u
#define XP_MAX_INFLIGHT  65536u         /* batch x qd */
#define XP_FILL_BATCH    32u
#define XP_FILL_QD       4u
#define XP_STALL_NS      (30ull * 1000000000ull)  /* no completion for this long = broken */
#define XP_STAMP_MAGIC   0x4652525950455246ull    /* "FERPYRRF" */
#define XP_STAMP_LEN     32u
#define XP_MIN_SIZE      64u

/* ------------------------------------------------------------------ options */

struct xp_server {
	char host[256];
	uint16_t port;
	char label[280];                      /* "host:port" as given */
};

struct xp_opts {
	size_t size;
	uint64_t iters;
	bool iters_set;
	double duration;
	bool duration_set;
	uint64_t warmup;
	bool warmup_set;
	unsigned batches[XP_MAX_LIST];
	size_t nbatch;
	unsigned qds[XP_MAX_LIST];
	size_t nqd;
	bool do_read, do_write;
	enum fx_kind kind;
	struct xp_server *servers;
	size_t nservers;
	const char *secret_file;
	uint64_t pages;
	uint64_t verify_pages;
	bool verify_set;
	const char *json, *csv, *plot;
	bool no_baselines, quiet, strict;
	enum xp_poll_mode { POLL_BUSY, POLL_SPIN, POLL_EVENTS } poll;
	double stream_seconds;
	uint64_t seed;
};

void perf_xport_usage(FILE *out)
{
	fputs(
"usage: ferry-perf xport --server HOST:PORT[,HOST:PORT...] --secret FILE [options]\n"
"\n"
"Page read/write latency and throughput against memory servers, with the baselines\n"
"that say what the figures mean, measured in the same run: a plain loopback TCP\n"
"stream, a TCP ping-pong of one page each way, and memcpy of the same pages.\n"
"Options follow perftest (ib_read_lat / ib_read_bw / ib_write_bw) where they overlap.\n"
"\n"
"  --server LIST        memory servers, comma-separated or repeated ([v6addr]:port ok);\n"
"                       the working set is striped over all, one pool client each, one fx context\n"
"  --secret FILE        cluster secret (mode 0600)\n"
"  --transport KIND     tcp (default) or rdma\n"
"  -s, --size BYTES     bytes per work request (default 4096, >= 64)\n"
"  -n, --iters N        latency samples per op (default 10000); without --duration it also\n"
"                       bounds each throughput point to max(N, 4 x batch x qd) pages\n"
"  -D, --duration SEC   seconds per throughput point (default 1; overrides -n for throughput)\n"
"      --warmup N       unmeasured ops before latency (default n/10, at least 100); throughput\n"
"                       points warm up for a tenth of their length\n"
"      --batch LIST     work requests per fx_post_send, one signalled (default 1,8,32,128)\n"
"      --qd LIST        batches in flight (default 1,4,16)\n"
"      --op OP          read, write or both (default both)\n"
"      --pages N        working set in pages, spread over the servers (default 16384 = 64 MiB)\n"
"      --verify-pages N pages read back and compared whole after the run (default 4096)\n"
"      --poll MODE      how to wait for completions: events (default: fx_poll sleeps at\n"
"                       once, as the blocking ping-pong does), spin (fx_poll spins the\n"
"                       transport's poll_spin_us, then sleeps) or busy (fx_poll never\n"
"                       waits, the caller loops: perftest's way). With few cores and a\n"
"                       local server, a client that spins keeps its CPU, the server is\n"
"                       woken on another, and that wakeup can cost more than the op\n"
"  -e, --events         --poll events\n"
"      --json FILE      write JSON (\"-\" or no FILE = stdout; the summary then goes to stderr)\n"
"      --csv FILE       write CSV, one row per measurement\n"
"      --plot FILE      render FILE.png or FILE.svg with gnuplot (script kept as FILE.gp;\n"
"                       written even when gnuplot is missing)\n"
"      --no-baselines   skip the TCP and memcpy baselines (no ratios)\n"
"      --stream-seconds S  TCP stream baseline length (default 1)\n"
"      --seed N         PRNG seed for page offsets (default: from the clock)\n"
"      --strict         exit 4 when a done-when ratio fails (batched read >= 0.5x stream,\n"
"                       read p50 <= 1.5x ping-pong)\n"
"  -q, --quiet          no progress lines on stderr\n"
"  -h, --help\n"
"\n"
"Exit status: 0 ok, 1 error, 2 usage, 3 data verification failed, 4 --strict verdict failed.\n",
	      out);
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		return -EINVAL;
	/* Accept k/K, m/M, g/G binary suffixes for convenience (--pages 64k). */
	if (*end == 'k' || *end == 'K')
		v <<= 10, end++;
	else if (*end == 'm' || *end == 'M')
		v <<= 20, end++;
	else if (*end == 'g' || *end == 'G')
		v <<= 30, end++;
	if (*end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_list(const char *s, unsigned max, unsigned *out, size_t *n)
{
	char buf[512];
	char *save = NULL;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	snprintf(buf, sizeof(buf), "%s", s);
	*n = 0;
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		uint64_t v;

		if (*n >= XP_MAX_LIST || parse_u64(t, 1, max, &v) < 0)
			return -EINVAL;
		/* Keep the list sorted and unique: it is an axis of the plot. */
		size_t i = *n;

		while (i > 0 && out[i - 1] > v)
			i--;
		if (i > 0 && out[i - 1] == v)
			continue;
		memmove(&out[i + 1], &out[i], (*n - i) * sizeof(*out));
		out[i] = (unsigned)v;
		(*n)++;
	}
	return *n > 0 ? 0 : -EINVAL;
}

static int add_servers(struct xp_opts *o, const char *arg)
{
	char buf[1024];
	char *save = NULL;

	if (strlen(arg) >= sizeof(buf))
		return -EINVAL;
	snprintf(buf, sizeof(buf), "%s", arg);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		struct xp_server sv = { 0 };
		const char *hs, *ps;
		size_t hl;
		uint64_t port;

		if (t[0] == '[') {
			char *rb = strchr(t, ']');

			if (!rb || rb[1] != ':')
				return -EINVAL;
			hs = t + 1;
			hl = (size_t)(rb - hs);
			ps = rb + 2;
		} else {
			char *c = strrchr(t, ':');

			if (!c)
				return -EINVAL;
			hs = t;
			hl = (size_t)(c - t);
			ps = c + 1;
		}
		if (hl == 0 || hl >= sizeof(sv.host) || parse_u64(ps, 1, 65535, &port) < 0)
			return -EINVAL;
		memcpy(sv.host, hs, hl);
		sv.port = (uint16_t)port;
		snprintf(sv.label, sizeof(sv.label), "%s", t);

		struct xp_server *ns = realloc(o->servers, (o->nservers + 1) * sizeof(*ns));

		if (!ns)
			return -ENOMEM;
		o->servers = ns;
		o->servers[o->nservers++] = sv;
	}
	return 0;
}

enum {
	OPT_BATCH = 256, OPT_QD, OPT_OP, OPT_TRANSPORT, OPT_SERVER, OPT_SECRET, OPT_PAGES, OPT_JSON,
	OPT_CSV, OPT_PLOT, OPT_NO_BASELINES, OPT_WARMUP, OPT_VERIFY, OPT_STREAM_S, OPT_SEED, OPT_STRICT,
	OPT_POLL,
};

static const struct option xp_long_opts[] = {
	{ "size", required_argument, NULL, 's' },
	{ "iters", required_argument, NULL, 'n' },
	{ "duration", required_argument, NULL, 'D' },
	{ "events", no_argument, NULL, 'e' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ "batch", required_argument, NULL, OPT_BATCH },
	{ "qd", required_argument, NULL, OPT_QD },
	{ "op", required_argument, NULL, OPT_OP },
	{ "transport", required_argument, NULL, OPT_TRANSPORT },
	{ "server", required_argument, NULL, OPT_SERVER },
	{ "secret", required_argument, NULL, OPT_SECRET },
	{ "pages", required_argument, NULL, OPT_PAGES },
	{ "json", required_argument, NULL, OPT_JSON },
	{ "csv", required_argument, NULL, OPT_CSV },
	{ "plot", required_argument, NULL, OPT_PLOT },
	{ "no-baselines", no_argument, NULL, OPT_NO_BASELINES },
	{ "warmup", required_argument, NULL, OPT_WARMUP },
	{ "verify-pages", required_argument, NULL, OPT_VERIFY },
	{ "stream-seconds", required_argument, NULL, OPT_STREAM_S },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "strict", no_argument, NULL, OPT_STRICT },
	{ "poll", required_argument, NULL, OPT_POLL },
	{ NULL, 0, NULL, 0 },
};

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "ferry-perf xport: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(try ferry-perf xport --help)\n");
	return -EINVAL;
}

static int parse_double(const char *s, double min, double max, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v) || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/*
 * `--json` may stand alone (JSON to stdout, as in "ferry-perf xport --json"):
 * getopt_long cannot make a separate argument optional, so rewrite a bare
 * --json (last, or followed by another option) into --json=- first.
 */
static char **normalize_json_flag(int argc, char **argv)
{
	char **nv = calloc((size_t)argc + 1, sizeof(*nv));

	if (!nv)
		return NULL;
	for (int i = 0; i < argc; i++) {
		nv[i] = argv[i];
		if (i > 0 && strcmp(argv[i], "--json") == 0 &&
		    (i + 1 >= argc || (argv[i + 1][0] == '-' && argv[i + 1][1] != '\0')))
			nv[i] = "--json=-";
	}
	return nv;
}

static int parse_opts(int argc, char **argv, struct xp_opts *o)
{
	uint64_t v;
	int c;

	memset(o, 0, sizeof(*o));
	o->size = 4096;
	o->iters = 10000;
	o->duration = 1.0;
	o->pages = 16384;
	o->verify_pages = 4096;
	o->do_read = o->do_write = true;
	o->kind = FX_KIND_TCP;
	o->poll = POLL_EVENTS;
	o->stream_seconds = 1.0;
	o->batches[0] = 1, o->batches[1] = 8, o->batches[2] = 32, o->batches[3] = 128, o->nbatch = 4;
	o->qds[0] = 1, o->qds[1] = 4, o->qds[2] = 16, o->nqd = 3;

	optind = 1;
	while ((c = getopt_long(argc, argv, "s:n:D:eqh", xp_long_opts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (parse_u64(optarg, XP_MIN_SIZE, FERRY_PAGE_MAX_DATA, &v) < 0)
				return usage_error("bad --size '%s' (64 .. 4194304 bytes)", optarg);
			o->size = (size_t)v;
			break;
		case 'n':
			if (parse_u64(optarg, 1, 100000000, &o->iters) < 0)
				return usage_error("bad --iters '%s'", optarg);
			o->iters_set = true;
			break;
		case 'D':
			if (parse_double(optarg, 0.01, 3600, &o->duration) < 0)
				return usage_error("bad --duration '%s' (seconds, 0.01 .. 3600)", optarg);
			o->duration_set = true;
			break;
		case 'e':
			o->poll = POLL_EVENTS;
			break;
		case OPT_POLL:
			if (strcmp(optarg, "busy") == 0)
				o->poll = POLL_BUSY;
			else if (strcmp(optarg, "spin") == 0)
				o->poll = POLL_SPIN;
			else if (strcmp(optarg, "events") == 0)
				o->poll = POLL_EVENTS;
			else
				return usage_error("bad --poll '%s' (busy, spin or events)", optarg);
			break;
		case 'q':
			o->quiet = true;
			break;
		case 'h':
			perf_xport_usage(stdout);
			exit(PERF_EXIT_OK);
		case OPT_BATCH:
			if (parse_list(optarg, XP_MAX_BATCH, o->batches, &o->nbatch) < 0)
				return usage_error("bad --batch '%s' (comma-separated, 1 .. 1024)", optarg);
			break;
		case OPT_QD:
			if (parse_list(optarg, XP_MAX_QD, o->qds, &o->nqd) < 0)
				return usage_error("bad --qd '%s' (comma-separated, 1 .. 1024)", optarg);
			break;
		case OPT_OP:
			if (strcmp(optarg, "read") == 0)
				o->do_read = true, o->do_write = false;
			else if (strcmp(optarg, "write") == 0)
				o->do_read = false, o->do_write = true;
			else if (strcmp(optarg, "both") == 0)
				o->do_read = o->do_write = true;
			else
				return usage_error("bad --op '%s' (read, write or both)", optarg);
			break;
		case OPT_TRANSPORT:
			if (fx_kind_parse(optarg, &o->kind) < 0)
				return usage_error("bad --transport '%s' (tcp or rdma)", optarg);
			break;
		case OPT_SERVER:
			if (add_servers(o, optarg) < 0)
				return usage_error("bad --server '%s' (HOST:PORT[,HOST:PORT...])", optarg);
			break;
		case OPT_SECRET:
			o->secret_file = optarg;
			break;
		case OPT_PAGES:
			if (parse_u64(optarg, 1, 1ull << 32, &o->pages) < 0)
				return usage_error("bad --pages '%s'", optarg);
			break;
		case OPT_JSON:
			o->json = optarg;
			break;
		case OPT_CSV:
			o->csv = optarg;
			break;
		case OPT_PLOT:
			o->plot = optarg;
			break;
		case OPT_NO_BASELINES:
			o->no_baselines = true;
			break;
		case OPT_WARMUP:
			if (parse_u64(optarg, 0, 100000000, &o->warmup) < 0)
				return usage_error("bad --warmup '%s'", optarg);
			o->warmup_set = true;
			break;
		case OPT_VERIFY:
			if (parse_u64(optarg, 0, 1ull << 32, &o->verify_pages) < 0)
				return usage_error("bad --verify-pages '%s'", optarg);
			break;
		case OPT_STREAM_S:
			if (parse_double(optarg, 0.05, 600, &o->stream_seconds) < 0)
				return usage_error("bad --stream-seconds '%s'", optarg);
			break;
		case OPT_SEED:
			if (parse_u64(optarg, 1, UINT64_MAX, &o->seed) < 0)
				return usage_error("bad --seed '%s' (non-zero)", optarg);
			break;
		case OPT_STRICT:
			o->strict = true;
			break;
		default:
			return usage_error("%s", "bad option");
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (o->nservers == 0)
		return usage_error("%s", "--server is required");
	if (!o->secret_file)
		return usage_error("%s", "--secret is required");
	if (o->pages < o->nservers)
		return usage_error("%s", "--pages must be at least the number of servers");
	if (o->plot) {
		const char *dot = strrchr(o->plot, '.');

		if (!dot || (strcasecmp(dot, ".png") != 0 && strcasecmp(dot, ".svg") != 0))
			return usage_error("--plot '%s': the file name must end in .png or .svg", o->plot);
	}
	for (size_t i = 0; i < o->nbatch; i++)
		for (size_t k = 0; k < o->nqd; k++)
			if ((uint64_t)o->batches[i] * o->qds[k] > XP_MAX_INFLIGHT)
				return usage_error("%s", "batch x qd above 65536 work requests in flight");
	if (!o->warmup_set)
		o->warmup = o->iters / 10 < 100 ? 100 : o->iters / 10;
	if (!o->seed)
		o->seed = stats_now_ns() ^ ((uint64_t)getpid() << 32) ^ 0x2545f4914f6cdd1dull;
	return 0;
}

/* ------------------------------------------------------------------ PRNG, stamps */

static inline uint64_t xorshift64(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static inline uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Uniform in [0, n) without modulo bias worth caring about (n << 2^64). */
static inline uint64_t rand_below(uint64_t *s, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)xorshift64(s) * n) >> 64);
}

struct xp_stamp {
	uint64_t magic;
	uint64_t run_id;
	uint64_t page;
	uint64_t check;
};

static inline uint64_t stamp_check(uint64_t run_id, uint64_t page)
{
	return splitmix64(run_id ^ splitmix64(page) ^ XP_STAMP_MAGIC);
}

/* ------------------------------------------------------------------ engine state */

struct xp_srv {
	const struct xp_server *cfg;
	struct pool_client *pc;
	struct fx_conn *conn;
	struct pool_extent ext;
	uint64_t npages;                       /* pages of the working set on this server */
	char *buf;                             /* local buffers: slot_cap x batch_cap pages */
	size_t buf_len;
	struct fx_mr *mr;
};

struct xp {
	const struct xp_opts *o;
	struct fx_ctx *ctx;
	struct xp_srv *srv;
	size_t ns;
	size_t size, stride;
	unsigned batch_cap, qd_cap;
	uint64_t run_id;
	uint64_t rng;
	uint8_t *tmpl;                         /* the expected page, stamp area zero */
	struct fx_send_wr *wrs;                /* qd_cap x batch_cap */
	struct fx_sge *sges;
	uint64_t *slot_pages;                  /* index on the slot's server, per WR */
	struct xp_slot {
		unsigned srv, n, posted;
		bool busy;
		uint64_t t_post;
	} *slots;
	struct perf_verify *ver;
	uint64_t nreads;                       /* reads completed (picks the sampled whole-page checks) */
	bool tty, quiet;
};

enum xp_gen { GEN_RANDOM, GEN_SEQ };
enum xp_check { CHECK_NONE, CHECK_STAMP, CHECK_FULL };

struct xp_run {
	enum perf_op op;
	unsigned batch, qd;
	enum xp_gen gen;
	const uint64_t *const *list;           /* GEN_SEQ: per-server index lists (NULL = 0..count-1) */
	const uint64_t *count;                 /* GEN_SEQ: per-server lengths */
	uint64_t *pos;                         /* GEN_SEQ: per-server progress */
	uint64_t max_ops;                      /* 0 = no limit */
	uint64_t duration_ns;                  /* 0 = no limit */
	enum xp_check check;
	uint64_t *samples;                     /* per-batch round trip, if not NULL */
	size_t nsamples, cap;
	/* out */
	uint64_t ops, eagain;
	uint64_t t_start, t_end;
	unsigned rr;
};

static inline uint64_t global_page(const struct xp *x, unsigned srv, uint64_t idx)
{
	return idx * x->ns + srv;
}

static inline char *slot_buf(const struct xp *x, unsigned srv, unsigned slot, unsigned i)
{
	return x->srv[srv].buf + ((size_t)slot * x->batch_cap + i) * x->stride;
}

static void verify_fail(struct xp *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void verify_fail(struct xp *x, const char *fmt, ...)
{
	va_list ap;

	x->ver->errors++;
	if (x->ver->first_error[0])
		return;
	va_start(ap, fmt);
	vsnprintf(x->ver->first_error, sizeof(x->ver->first_error), fmt, ap);
	va_end(ap);
	LOG_ERR("DATA VERIFICATION FAILED: %s", x->ver->first_error);
}

/* Check a page read back into @p buf: the stamp, and with @p full the body too. */
static void check_page(struct xp *x, unsigned srv, uint64_t idx, const char *buf, bool full)
{
	struct xp_stamp st;
	uint64_t page = global_page(x, srv, idx);

	memcpy(&st, buf, sizeof(st));
	x->ver->read_checks++;
	if (st.magic != XP_STAMP_MAGIC || st.run_id != x->run_id || st.page != page ||
	    st.check != stamp_check(x->run_id, page)) {
		verify_fail(x, "page %llu (server %s, remote 0x%llx): bad stamp: magic %016llx run %016llx "
			    "page %llu (expected run %016llx page %llu)",
			    (unsigned long long)page, x->srv[srv].cfg->label,
			    (unsigned long long)(x->srv[srv].ext.base + idx * x->stride),
			    (unsigned long long)st.magic, (unsigned long long)st.run_id,
			    (unsigned long long)st.page, (unsigned long long)x->run_id, (unsigned long long)page);
		return;
	}
	if (full) {
		x->ver->pages_checked++;
		if (memcmp(buf + XP_STAMP_LEN, x->tmpl + XP_STAMP_LEN, x->size - XP_STAMP_LEN) != 0) {
			size_t off = XP_STAMP_LEN;

			while (off < x->size && buf[off] == (char)x->tmpl[off])
				off++;
			verify_fail(x, "page %llu (server %s, remote 0x%llx): body differs at byte %zu",
				    (unsigned long long)page, x->srv[srv].cfg->label,
				    (unsigned long long)(x->srv[srv].ext.base + idx * x->stride), off);
		}
	}
}

/* Choose the next batch for @p slot. Returns the number of WRs (0 = generator exhausted). */
static unsigned prepare_slot(struct xp *x, struct xp_run *r, unsigned slot)
{
	struct xp_slot *sl = &x->slots[slot];
	unsigned srv = 0, n = 0;

	if (r->gen == GEN_RANDOM) {
		srv = r->rr++ % (unsigned)x->ns;
		n = r->batch;
		for (unsigned i = 0; i < n; i++)
			x->slot_pages[(size_t)slot * x->batch_cap + i] = rand_below(&x->rng, x->srv[srv].npages);
	} else {
		unsigned k;

		for (k = 0; k < x->ns; k++) {
			srv = r->rr++ % (unsigned)x->ns;
			if (r->pos[srv] < r->count[srv])
				break;
		}
		if (k == x->ns)
			return 0;
		uint64_t left = r->count[srv] - r->pos[srv];

		n = left < r->batch ? (unsigned)left : r->batch;
		for (unsigned i = 0; i < n; i++) {
			uint64_t p = r->pos[srv]++;

			x->slot_pages[(size_t)slot * x->batch_cap + i] = r->list && r->list[srv] ? r->list[srv][p] : p;
		}
	}
	if (n == 0)
		return 0;

	struct xp_srv *s = &x->srv[srv];
	enum fx_opcode opc = r->op == PERF_READ ? FX_OP_READ : FX_OP_WRITE;

	for (unsigned i = 0; i < n; i++) {
		size_t w = (size_t)slot * x->batch_cap + i;
		uint64_t idx = x->slot_pages[w];
		char *b = slot_buf(x, srv, slot, i);

		if (r->op == PERF_WRITE) {
			struct xp_stamp st = {
				.magic = XP_STAMP_MAGIC, .run_id = x->run_id,
				.page = global_page(x, srv, idx),
			};

			st.check = stamp_check(x->run_id, st.page);
			memcpy(b, &st, sizeof(st));
		} else if (r->check != CHECK_NONE) {
			/* Poison the stamp so a read that moves no data cannot pass. */
			memset(b, 0xee, XP_STAMP_LEN);
		}
		x->sges[w] = (struct fx_sge){ .addr = b, .length = (uint32_t)x->size, .lkey = s->mr->lkey };
		x->wrs[w] = (struct fx_send_wr){
			.wr_id = ((uint64_t)slot << 32) | i,
			.opcode = opc,
			.flags = i + 1 == n ? FX_WR_SIGNALED : 0,
			.sg_list = &x->sges[w],
			.num_sge = 1,
			.remote_addr = s->ext.base + idx * x->stride,
			.rkey = s->ext.rkey,
		};
	}
	sl->srv = srv;
	sl->n = n;
	sl->posted = 0;
	sl->busy = true;
	return n;
}

/* Post what is left of @p slot. 1 = fully posted, 0 = backpressure (retry later), <0 = error. */
static int post_slot(struct xp *x, struct xp_run *r, unsigned slot, struct ferry_err *err)
{
	struct xp_slot *sl = &x->slots[slot];
	struct xp_srv *s = &x->srv[sl->srv];
	int perr = 0;

	if (sl->posted == 0)
		sl->t_post = stats_now_ns();
	int k = fx_post_send(s->conn, &x->wrs[(size_t)slot * x->batch_cap + sl->posted], (int)(sl->n - sl->posted),
			     &perr);

	if (k < 0)
		return ferry_err_set(err, k, "server %s: fx_post_send: %s", s->cfg->label, strerror(-k));
	sl->posted += (unsigned)k;
	if (sl->posted == sl->n)
		return 1;
	if (perr == -EAGAIN) {
		r->eagain++;
		return 0;
	}
	return ferry_err_set(err, perr ? perr : -EIO, "server %s: fx_post_send: %s%s%s", s->cfg->label,
			     strerror(perr ? -perr : EIO), fx_conn_error(s->conn)[0] ? ": " : "",
			     fx_conn_error(s->conn));
}

/*
 * Completions of every pool client's one-sided requests. All clients share
 * one context, and pool_client_poll hands out the one-sided completions of
 * every connection on it (set-aside ones first), so asking one client is
 * enough and costs one fx_poll.
 */
static int xp_poll(struct xp *x, struct fx_wc *wc, int max, int timeout_ms)
{
	return pool_client_poll(x->srv[0].pc, wc, max, timeout_ms);
}

static int run_ops(struct xp *x, struct xp_run *r, struct ferry_err *err)
{
	struct fx_wc wc[64];
	unsigned inflight = 0, pending = 0;
	bool stop = false;
	uint64_t issued = 0, last_progress;
	int rc;

	r->ops = r->eagain = 0;
	r->nsamples = 0;
	r->rr = 0;
	for (unsigned i = 0; i < r->qd; i++)
		x->slots[i].busy = false;
	if (r->op == PERF_WRITE) {
		/* Fresh bodies: a read into these buffers may have left anything. */
		for (size_t s = 0; s < x->ns; s++)
			for (unsigned i = 0; i < r->qd; i++)
				for (unsigned j = 0; j < r->batch; j++)
					memcpy(slot_buf(x, (unsigned)s, i, j), x->tmpl, x->size);
	}
	r->t_start = last_progress = stats_now_ns();
	for (unsigned i = 0; i < r->qd; i++) {
		if (r->max_ops && issued >= r->max_ops)
			break;
		unsigned n = prepare_slot(x, r, i);

		if (n == 0)
			break;
		issued += n;
		inflight++;
		rc = post_slot(x, r, i, err);
		if (rc < 0)
			return rc;
		pending += rc == 0;
	}
	int timeout = x->o->poll == POLL_BUSY ? 0 : 100;

	while (inflight > 0) {
		int n = xp_poll(x, wc, 64, pending ? 0 : timeout);
		uint64_t now = stats_now_ns();

		if (n < 0)
			return ferry_err_set(err, n, "fx_poll: %s", strerror(-n));
		if (n == 0 && now - last_progress > XP_STALL_NS)
			return ferry_err_set(err, ETIMEDOUT, "no completion for %llu s with %u batches in flight",
					     (unsigned long long)(XP_STALL_NS / 1000000000ull), inflight);
		for (int i = 0; i < n; i++) {
			unsigned slot = (unsigned)(wc[i].wr_id >> 32);
			unsigned idx = (unsigned)(wc[i].wr_id & 0xffffffffu);

			if (wc[i].status != FX_WC_SUCCESS) {
				const char *who = "?", *why = "";

				if (slot < r->qd) {
					who = x->srv[x->slots[slot].srv].cfg->label;
					why = fx_conn_error(x->srv[x->slots[slot].srv].conn);
				}
				return ferry_err_set(err, EIO, "server %s: %s of %zu bytes failed: %s%s%s", who,
						     perf_op_name(r->op), x->size, fx_wc_status_str(wc[i].status),
						     why && why[0] ? ": " : "", why ? why : "");
			}
			if (slot >= r->qd || !x->slots[slot].busy || idx + 1 != x->slots[slot].n)
				return ferry_err_set(err, EPROTO, "unexpected completion wr_id %016llx",
						     (unsigned long long)wc[i].wr_id);

			struct xp_slot *sl = &x->slots[slot];

			if (r->samples && r->nsamples < r->cap)
				r->samples[r->nsamples++] = now - sl->t_post;
			/* Every read's stamp; whole pages always for CHECK_FULL, else one read in 64. */
			if (r->op == PERF_READ && r->check != CHECK_NONE)
				for (unsigned j = 0; j < sl->n; j++)
					check_page(x, sl->srv, x->slot_pages[(size_t)slot * x->batch_cap + j],
						   slot_buf(x, sl->srv, slot, j),
						   r->check == CHECK_FULL || (x->nreads++ & 63) == 0);
			r->ops += sl->n;
			sl->busy = false;
			inflight--;
			last_progress = now;
			if (!stop && ((r->max_ops && issued >= r->max_ops) ||
				      (r->duration_ns && now - r->t_start >= r->duration_ns)))
				stop = true;
			if (stop)
				continue;
			unsigned m = prepare_slot(x, r, slot);

			if (m == 0) {
				stop = true;
				continue;
			}
			issued += m;
			inflight++;
			rc = post_slot(x, r, slot, err);
			if (rc < 0)
				return rc;
			pending += rc == 0;
		}
		if (pending) {
			pending = 0;
			for (unsigned i = 0; i < r->qd; i++) {
				struct xp_slot *sl = &x->slots[i];

				if (!sl->busy || sl->posted == sl->n)
					continue;
				rc = post_slot(x, r, i, err);
				if (rc < 0)
					return rc;
				pending += rc == 0;
			}
		}
	}
	r->t_end = stats_now_ns();
	return 0;
}

/* ------------------------------------------------------------------ setup */

static void progress(const struct xp *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void progress(const struct xp *x, const char *fmt, ...)
{
	char line[256];
	va_list ap;

	if (x->quiet)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (x->tty)
		fprintf(stderr, "\r\033[K%s", line);
	else
		fprintf(stderr, "%s\n", line);
}

/* A transient status line: shown only where it can be overwritten (a tty). */
static void progress_tmp(const struct xp *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void progress_tmp(const struct xp *x, const char *fmt, ...)
{
	char line[256];
	va_list ap;

	if (x->quiet || !x->tty)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "\r\033[K%s", line);
}

static void progress_done(const struct xp *x)
{
	if (!x->quiet && x->tty)
		fputs("\r\033[K", stderr);
}

static const struct xp *g_progress_x;

static void baseline_progress(const char *what)
{
	if (g_progress_x)
		progress_tmp(g_progress_x, "%s ...", what);
}

static int xp_setup(struct xp *x, struct ferry_err *err)
{
	const struct xp_opts *o = x->o;
	struct ferry_secret secret;
	struct fx_ctx_opts copts = { 0 };
	struct pool_client_opts popts = { 0 };
	char name[64];
	int rc;

	x->size = o->size;
	x->stride = (o->size + 63) & ~(size_t)63;
	x->batch_cap = XP_FILL_BATCH;
	x->qd_cap = XP_FILL_QD;
	for (size_t i = 0; i < o->nbatch; i++)
		if (o->batches[i] > x->batch_cap)
			x->batch_cap = o->batches[i];
	for (size_t i = 0; i < o->nqd; i++)
		if (o->qds[i] > x->qd_cap)
			x->qd_cap = o->qds[i];

	size_t nwr = (size_t)x->batch_cap * x->qd_cap;

	x->wrs = calloc(nwr, sizeof(*x->wrs));
	x->sges = calloc(nwr, sizeof(*x->sges));
	x->slot_pages = calloc(nwr, sizeof(*x->slot_pages));
	x->slots = calloc(x->qd_cap, sizeof(*x->slots));
	x->tmpl = malloc(x->stride);
	x->ns = o->nservers;
	x->srv = calloc(x->ns, sizeof(*x->srv));
	if (!x->wrs || !x->sges || !x->slot_pages || !x->slots || !x->tmpl || !x->srv)
		return ferry_err_set(err, ENOMEM, "out of memory");

	x->rng = o->seed;
	x->run_id = splitmix64(o->seed ^ stats_now_ns());
	memset(x->tmpl, 0, x->stride);
	for (size_t off = XP_STAMP_LEN; off < x->size; off += 8) {
		uint64_t w = splitmix64(x->run_id + off);
		size_t k = x->size - off < 8 ? x->size - off : 8;

		memcpy(x->tmpl + off, &w, k);
	}

	rc = ferry_auth_init(err);
	if (rc < 0)
		return rc;
	rc = ferry_secret_load(o->secret_file, &secret, err);
	if (rc < 0)
		return rc;

	copts.cq_depth = (uint32_t)(2 * nwr > 4096 ? 2 * nwr : 4096);
	if (o->poll == POLL_EVENTS)
		copts.poll_spin_us = FX_POLL_SPIN_OFF;
	rc = fx_ctx_create(o->kind, &copts, &x->ctx, err);
	if (rc < 0) {
		ferry_secret_wipe(&secret);
		return rc;
	}

	snprintf(name, sizeof(name), "ferry-perf-%d", (int)getpid());
	popts.name = name;
	popts.secret = &secret;
	popts.conn.max_send_wr = (uint32_t)(nwr > 256 ? nwr : 256);

	for (size_t s = 0; s < x->ns; s++) {
		struct xp_srv *sv = &x->srv[s];

		sv->cfg = &o->servers[s];
		sv->npages = (o->pages - s + x->ns - 1) / x->ns;
		popts.host = sv->cfg->host;
		popts.port = sv->cfg->port;
		rc = pool_client_connect(x->ctx, &popts, &sv->pc, err);
		if (rc < 0) {
			ferry_err_prefix(err, "server %s: ", sv->cfg->label);
			break;
		}
		sv->conn = pool_client_conn(sv->pc);

		uint32_t max_data = pool_client_max_data(sv->pc);

		if (max_data && x->size > max_data) {
			rc = ferry_err_set(err, EINVAL, "server %s takes at most %u bytes per request; --size is %zu",
					   sv->cfg->label, max_data, x->size);
			break;
		}

		uint64_t len = (sv->npages * x->stride + 4095) & ~(uint64_t)4095;
		uint64_t quota = pool_client_quota(sv->pc);

		if (quota && len > quota) {
			rc = ferry_err_set(err, ENOSPC, "server %s: the working set needs %llu MiB there but the "
					   "client quota is %llu MiB (use fewer --pages or more servers)",
					   sv->cfg->label, (unsigned long long)(len >> 20),
					   (unsigned long long)(quota >> 20));
			break;
		}
		rc = pool_client_alloc(sv->pc, len, &sv->ext, err);
		if (rc < 0) {
			ferry_err_prefix(err, "server %s: alloc %llu MiB: ", sv->cfg->label,
					 (unsigned long long)(len >> 20));
			break;
		}

		sv->buf_len = (nwr * x->stride + 4095) & ~(size_t)4095;
		sv->buf = mmap(NULL, sv->buf_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (sv->buf == MAP_FAILED) {
			sv->buf = NULL;
			rc = ferry_err_set(err, ENOMEM, "cannot map %zu bytes of local buffers", sv->buf_len);
			break;
		}
		for (size_t i = 0; i < nwr; i++)
			memcpy(sv->buf + i * x->stride, x->tmpl, x->size);
		rc = fx_reg_mr(pool_client_pd(sv->pc), sv->buf, sv->buf_len, FX_ACCESS_LOCAL_WRITE, &sv->mr, err);
		if (rc < 0) {
			ferry_err_prefix(err, "register local buffers: ");
			break;
		}
	}
	ferry_secret_wipe(&secret);
	return rc < 0 ? rc : 0;
}

static void xp_teardown(struct xp *x)
{
	/*
	 * Extents back first (control calls), then registrations, then the
	 * clients; local buffers are unmapped only once the context is gone, so
	 * nothing the transport might still flush points at freed memory.
	 */
	for (size_t s = 0; x->srv && s < x->ns; s++)
		if (x->srv[s].pc && x->srv[s].ext.length &&
		    fx_conn_state(x->srv[s].conn) == FX_CONN_CONNECTED)
			(void)pool_client_free(x->srv[s].pc, x->srv[s].ext.id, NULL);
	for (size_t s = 0; x->srv && s < x->ns; s++)
		if (x->srv[s].mr)
			fx_dereg_mr(x->srv[s].mr);
	for (size_t s = 0; x->srv && s < x->ns; s++)
		if (x->srv[s].pc)
			pool_client_close(x->srv[s].pc);
	if (x->ctx)
		fx_ctx_destroy(x->ctx);
	for (size_t s = 0; x->srv && s < x->ns; s++)
		if (x->srv[s].buf)
			munmap(x->srv[s].buf, x->srv[s].buf_len);
	free(x->srv);
	free(x->wrs);
	free(x->sges);
	free(x->slot_pages);
	free(x->slots);
	free(x->tmpl);
}

/* ------------------------------------------------------------------ phases */

static int phase_fill(struct xp *x, struct ferry_err *err)
{
	uint64_t *count = calloc(x->ns, sizeof(*count));
	uint64_t *pos = calloc(x->ns, sizeof(*pos));
	struct xp_run r = { .op = PERF_WRITE, .batch = XP_FILL_BATCH, .qd = XP_FILL_QD, .gen = GEN_SEQ };
	int rc;

	if (!count || !pos) {
		free(count);
		free(pos);
		return ferry_err_set(err, ENOMEM, "out of memory");
	}
	for (size_t s = 0; s < x->ns; s++)
		count[s] = x->srv[s].npages;
	r.count = count;
	r.pos = pos;
	progress_tmp(x, "fill: stamping %llu pages", (unsigned long long)x->o->pages);
	rc = run_ops(x, &r, err);
	if (rc == 0) {
		x->ver->fill_pages = r.ops;
		double el = (double)(r.t_end - r.t_start) / 1e9;

		progress(x, "fill: %llu pages in %.2f s (%.2f GB/s)", (unsigned long long)r.ops, el,
			 el > 0 ? (double)r.ops * (double)x->size / el / 1e9 : 0);
	}
	free(count);
	free(pos);
	return rc;
}

static int phase_verify(struct xp *x, struct ferry_err *err)
{
	uint64_t want = x->o->verify_pages;
	uint64_t *count = calloc(x->ns, sizeof(*count));
	uint64_t *pos = calloc(x->ns, sizeof(*pos));
	uint64_t **lists = calloc(x->ns, sizeof(*lists));
	struct xp_run r = { .op = PERF_READ, .batch = XP_FILL_BATCH, .qd = XP_FILL_QD, .gen = GEN_SEQ,
			    .check = CHECK_FULL };
	int rc = 0;

	if (!count || !pos || !lists) {
		rc = ferry_err_set(err, ENOMEM, "out of memory");
		goto out;
	}
	for (size_t s = 0; s < x->ns; s++) {
		uint64_t np = x->srv[s].npages;
		uint64_t k = want >= x->o->pages ? np : (want + x->ns - 1) / x->ns;

		if (k > np)
			k = np;
		if (k == np) {
			count[s] = np;           /* everything, in order */
			continue;
		}
		lists[s] = malloc(k * sizeof(**lists));
		if (!lists[s]) {
			rc = ferry_err_set(err, ENOMEM, "out of memory");
			goto out;
		}
		/* First and last page of the extent, then random ones. */
		lists[s][0] = 0;
		if (k > 1)
			lists[s][1] = np - 1;
		for (uint64_t i = 2; i < k; i++)
			lists[s][i] = rand_below(&x->rng, np);
		count[s] = k;
	}
	r.count = count;
	r.pos = pos;
	r.list = (const uint64_t *const *)lists;
	progress_tmp(x, "verify: reading back pages");
	rc = run_ops(x, &r, err);
out:
	for (size_t s = 0; lists && s < x->ns; s++)
		free(lists[s]);
	free(lists);
	free(count);
	free(pos);
	return rc;
}

/*
 * The ping-pong baseline, when measured, is interleaved with Ferry's
 * unbatched ops in chunks of XP_LAT_CHUNK round trips each, so the ratio of
 * the two is not skewed by load that comes and goes on a shared machine.
 */
#define XP_LAT_CHUNK 500u

struct xp_pingpong {
	struct perf_pingpong *pp;
	uint64_t *ns;
	size_t n, cap;
};

static int phase_latency(struct xp *x, enum perf_op op, struct perf_xport_result *res, struct xp_pingpong *pp,
			 struct ferry_err *err)
{
	const struct xp_opts *o = x->o;
	struct xp_run r = { .op = op, .batch = 1, .qd = 1, .gen = GEN_RANDOM, .check = CHECK_FULL };
	uint64_t *samples;
	size_t done = 0;
	int rc = 0;

	if (o->warmup) {
		progress_tmp(x, "%s latency: warm-up (%llu ops)", perf_op_name(op), (unsigned long long)o->warmup);
		r.max_ops = o->warmup;
		rc = run_ops(x, &r, err);
		if (rc == 0 && pp && pp->pp)
			rc = perf_pingpong_run(pp->pp, (unsigned)(o->warmup < 1000 ? o->warmup : 1000), NULL, err);
		if (rc < 0)
			return rc;
	}
	samples = calloc(o->iters, sizeof(*samples));
	if (!samples)
		return ferry_err_set(err, ENOMEM, "out of memory");
	progress_tmp(x, "%s latency: %llu ops (batch 1, qd 1)%s", perf_op_name(op), (unsigned long long)o->iters,
		     pp && pp->pp ? ", interleaved with the tcp ping-pong" : "");
	while (done < o->iters) {
		size_t k = o->iters - done < XP_LAT_CHUNK ? o->iters - done : XP_LAT_CHUNK;

		if (pp && pp->pp && pp->n + k <= pp->cap) {
			rc = perf_pingpong_run(pp->pp, (unsigned)k, pp->ns + pp->n, err);
			if (rc < 0)
				break;
			pp->n += k;
		}
		r.max_ops = k;
		r.samples = samples + done;
		r.cap = k;
		rc = run_ops(x, &r, err);
		if (rc < 0)
			break;
		if (r.nsamples != k) {
			rc = ferry_err_set(err, EPROTO, "latency: %zu samples for %zu ops", r.nsamples, k);
			break;
		}
		done += k;
	}
	if (rc < 0) {
		free(samples);
		return rc;
	}
	stats_summarize_ns(samples, done, &res->lat[op]);
	res->lat_ns[op] = samples;
	res->lat_n[op] = done;
	res->have_lat[op] = 1;
	progress(x, "%s latency: p50 %.1f us  p99 %.1f us  p99.9 %.1f us", perf_op_name(op),
		 res->lat[op].p50_us, res->lat[op].p99_us, res->lat[op].p999_us);
	return 0;
}

static int phase_throughput(struct xp *x, enum perf_op op, struct perf_xport_result *res, size_t *done,
			    size_t total, struct ferry_err *err)
{
	const struct xp_opts *o = x->o;
	bool timed = o->duration_set || !o->iters_set;

	for (size_t bi = 0; bi < o->nbatch; bi++)
		for (size_t qi = 0; qi < o->nqd; qi++) {
			unsigned b = o->batches[bi], q = o->qds[qi];
			uint64_t ops = o->iters;
			struct xp_run r = { .op = op, .batch = b, .qd = q, .gen = GEN_RANDOM, .check = CHECK_STAMP };
			int rc;

			if (ops < 4ull * b * q)
				ops = 4ull * b * q;
			(*done)++;
			progress_tmp(x, "[%2zu/%zu] %-5s batch %4u qd %3u ...", *done, total, perf_op_name(op), b, q);
			/* Warm-up: a tenth of the point. */
			if (timed) {
				r.duration_ns = (uint64_t)(o->duration * 1e8);
				r.max_ops = 0;
			} else {
				r.max_ops = ops / 10 > 2ull * b * q ? ops / 10 : 2ull * b * q;
			}
			rc = run_ops(x, &r, err);
			if (rc < 0)
				return rc;
			if (timed)
				r.duration_ns = (uint64_t)(o->duration * 1e9);
			else
				r.max_ops = ops;
			rc = run_ops(x, &r, err);
			if (rc < 0)
				return rc;

			struct perf_tput *t = &res->tput[res->ntput++];
			double el = (double)(r.t_end - r.t_start) / 1e9;

			t->op = op;
			t->batch = b;
			t->qd = q;
			t->ops = r.ops;
			t->seconds = el;
			t->pages_per_s = el > 0 ? (double)r.ops / el : 0;
			t->gbytes_per_s = t->pages_per_s * (double)x->size / 1e9;
			t->eagain = r.eagain;
			if (res->base.measured) {
				t->ratio_to_tcp_stream = res->base.stream_gbps > 0 ? t->gbytes_per_s / res->base.stream_gbps : 0;
				t->ratio_to_memcpy = res->base.memcpy_gbps > 0 ? t->gbytes_per_s / res->base.memcpy_gbps : 0;
			}
			progress(x, "[%2zu/%zu] %-5s batch %4u qd %3u  %8.2f GB/s  %9.0f pages/s%s", *done, total,
				 perf_op_name(op), b, q, t->gbytes_per_s, t->pages_per_s,
				 t->eagain ? "  (backpressure)" : "");
		}
	return 0;
}

/* ------------------------------------------------------------------ main */

int perf_xport_main(int argc, char **argv)
{
	struct xp_opts o;
	struct xp x = { 0 };
	struct perf_xport_result res = { 0 };
	struct ferry_err err = { 0 };
	struct xp_pingpong pp = { 0 };
	char **nargv = normalize_json_flag(argc, argv);
	int rc, status = PERF_EXIT_OK;
	uint64_t t_begin = stats_now_ns();

	if (!nargv) {
		fprintf(stderr, "ferry-perf xport: out of memory\n");
		return PERF_EXIT_ERROR;
	}
	rc = parse_opts(argc, nargv, &o);
	free(nargv);
	if (rc < 0) {
		free(o.servers);
		return PERF_EXIT_USAGE;
	}
	ferry_log_set_component("perf");
	/* The progress lines say what the library's INFO lines would; FERRY_LOG_LEVEL still wins. */
	if (!getenv("FERRY_LOG_LEVEL"))
		ferry_log_set_level(FERRY_LOG_WARN);
	signal(SIGPIPE, SIG_IGN);

	/* JSON on stdout means the human summary goes to stderr. */
	bool json_stdout = o.json && strcmp(o.json, "-") == 0;
	bool csv_stdout = o.csv && strcmp(o.csv, "-") == 0;
	FILE *summary_out = (json_stdout || csv_stdout) ? stderr : stdout;

	x.o = &o;
	x.quiet = o.quiet;
	x.tty = isatty(STDERR_FILENO);
	x.ver = &res.verify;
	g_progress_x = &x;

	res.transport = fx_kind_name(o.kind);
	res.nservers = o.nservers;
	res.servers = calloc(o.nservers, sizeof(*res.servers));
	res.size = o.size;
	res.pages = o.pages;
	res.iters = o.iters;
	res.duration = (o.duration_set || !o.iters_set) ? o.duration : 0;
	res.poll_mode = o.poll == POLL_BUSY ? "busy" : o.poll == POLL_SPIN ? "spin" : "events";
	if (!res.servers) {
		fprintf(stderr, "ferry-perf xport: out of memory\n");
		free(o.servers);
		return PERF_EXIT_ERROR;
	}
	for (size_t i = 0; i < o.nservers; i++)
		res.servers[i] = o.servers[i].label;
	perf_host_fill(&res.host);

	size_t npoints = o.nbatch * o.nqd * ((size_t)o.do_read + (size_t)o.do_write);

	res.tput = calloc(npoints ? npoints : 1, sizeof(*res.tput));
	if (!res.tput) {
		fprintf(stderr, "ferry-perf xport: out of memory\n");
		status = PERF_EXIT_ERROR;
		goto out;
	}

	progress(&x, "connecting to %zu server%s", o.nservers, o.nservers == 1 ? "" : "s");
	rc = xp_setup(&x, &err);
	if (rc < 0)
		goto fail;

	if (!o.no_baselines) {
		struct perf_baseline_opts bo = {
			.size = o.size,
			.working_set = (size_t)(o.pages * o.size),
			.stream_seconds = o.stream_seconds,
			.stream_write = 1u << 20,
			.memcpy_seconds = 0.5,
			.seed = o.seed,
			.skip_pingpong = 1,     /* measured interleaved with the latency phases */
		};

		rc = perf_baselines_run(&bo, &res.base, baseline_progress, &err);
		if (rc < 0)
			goto fail;
		progress(&x, "baselines: tcp stream %.2f GB/s, memcpy %.2f GB/s", res.base.stream_gbps,
			 res.base.memcpy_gbps);
	}

	rc = phase_fill(&x, &err);
	if (rc < 0)
		goto fail;
	if (!o.no_baselines) {
		pp.cap = (size_t)o.iters * ((size_t)o.do_read + (size_t)o.do_write);
		pp.ns = calloc(pp.cap, sizeof(*pp.ns));
		if (!pp.ns) {
			rc = ferry_err_set(&err, ENOMEM, "out of memory");
			goto fail;
		}
		int same, other;

		/* Both ping-pong threads on one CPU: see baselines.h. */
		(void)perf_pick_cpus(&same, &other);
		rc = perf_pingpong_open(o.size, same, same, &pp.pp, &err);
		if (rc < 0)
			goto fail;
		res.base.pingpong_cpu = same;
	}
	if (o.do_read && (rc = phase_latency(&x, PERF_READ, &res, &pp, &err)) < 0)
		goto fail;
	if (o.do_write && (rc = phase_latency(&x, PERF_WRITE, &res, &pp, &err)) < 0)
		goto fail;
	if (pp.pp) {
		rc = perf_pingpong_close(pp.pp);
		pp.pp = NULL;
		if (rc < 0) {
			ferry_err_set(&err, rc, "baseline: tcp ping-pong: echo side: %s", strerror(-rc));
			goto fail;
		}
		int cpu = res.base.pingpong_cpu;

		perf_pingpong_set(&res.base, o.size, pp.ns, pp.n);
		res.base.pingpong_interleaved = 1;
		res.base.pingpong_cpu = cpu;
		pp.ns = NULL;
		progress(&x, "baseline: tcp ping-pong p50 %.1f us  p99 %.1f us  p99.9 %.1f us (%zu round trips)",
			 res.base.pingpong.p50_us, res.base.pingpong.p99_us, res.base.pingpong.p999_us,
			 res.base.pingpong_n);
	}

	size_t done = 0;

	res.tput_ops = o.iters;
	if (o.do_read && (rc = phase_throughput(&x, PERF_READ, &res, &done, npoints, &err)) < 0)
		goto fail;
	if (o.do_write && (rc = phase_throughput(&x, PERF_WRITE, &res, &done, npoints, &err)) < 0)
		goto fail;
	rc = phase_verify(&x, &err);
	if (rc < 0)
		goto fail;
	progress_done(&x);

	res.verify.passed = res.verify.errors == 0 && res.verify.fill_pages == o.pages &&
			    res.verify.pages_checked > 0;
	if (res.verify.errors == 0 && !res.verify.passed)
		snprintf(res.verify.first_error, sizeof(res.verify.first_error),
			 "incomplete: %llu of %llu pages stamped, %llu compared",
			 (unsigned long long)res.verify.fill_pages, (unsigned long long)o.pages,
			 (unsigned long long)res.verify.pages_checked);
	goto report;

fail:
	progress_done(&x);
	fprintf(stderr, "ferry-perf xport: %s\n", err.msg[0] ? err.msg : strerror(-rc));
	status = PERF_EXIT_ERROR;
	if (!res.verify.first_error[0])
		snprintf(res.verify.first_error, sizeof(res.verify.first_error), "run aborted: %.200s", err.msg);
	res.verify.passed = 0;

report:
	res.total_seconds = (double)(stats_now_ns() - t_begin) / 1e9;
	/* Even a failed run writes what it has: a partial JSON says where it stopped. */
	if (o.json) {
		ferry_err_clear(&err);
		if (report_json_write(&res, o.json, &err) < 0) {
			fprintf(stderr, "ferry-perf xport: %s\n", err.msg);
			status = status ? status : PERF_EXIT_ERROR;
		}
	}
	if (o.csv) {
		ferry_err_clear(&err);
		if (report_csv_write(&res, o.csv, &err) < 0) {
			fprintf(stderr, "ferry-perf xport: %s\n", err.msg);
			status = status ? status : PERF_EXIT_ERROR;
		}
	}
	if (o.plot && status == PERF_EXIT_OK) {
		char gp[4096];
		int rendered = 0;

		ferry_err_clear(&err);
		rc = report_plot(&res, o.plot, &rendered, gp, sizeof(gp), &err);
		if (rc < 0) {
			fprintf(stderr, "ferry-perf xport: %s\n", err.msg);
			status = PERF_EXIT_ERROR;
		} else if (!rendered) {
			fprintf(stderr, "ferry-perf xport: %s\n", err.msg);
		} else if (!o.quiet) {
			fprintf(stderr, "plot: %s (script %s)\n", o.plot, gp);
		}
	}
	if (status == PERF_EXIT_OK || res.ntput || res.have_lat[PERF_READ] || res.have_lat[PERF_WRITE])
		report_summary(&res, summary_out);
	if (status == PERF_EXIT_OK && !res.verify.passed) {
		fprintf(stderr, "ferry-perf xport: DATA VERIFICATION FAILED: %llu error%s; first: %s\n",
			(unsigned long long)res.verify.errors, res.verify.errors == 1 ? "" : "s",
			res.verify.first_error);
		status = PERF_EXIT_VERIFY;
	}
	if (status == PERF_EXIT_OK && o.strict) {
		struct perf_ratios q;

		perf_ratios_compute(&res, &q);
		if (q.verdict_read_bw == 0 || q.verdict_read_lat == 0)
			status = PERF_EXIT_VERDICT;
	}
out:
	perf_pingpong_close(pp.pp);
	free(pp.ns);
	xp_teardown(&x);
	perf_baselines_free(&res.base);
	for (int op = 0; op < PERF_NOPS; op++)
		free(res.lat_ns[op]);
	free(res.tput);
	free(res.servers);
	free(o.servers);
	return status;
}
