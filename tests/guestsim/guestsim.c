/*
 * guestsim: a test and benchmark "VM" for Ferry's pager.
 *
 * Guest RAM is a memfd mapped MAP_SHARED (or, with --anon, anonymous
 * memory), registered on a userfaultfd and handed to a ferry-pager, either
 * through libferry-vmm (--pager SOCKET --vm-id ID) or through the Firecracker
 * UFFD handshake (--anon --fc-socket PATH). With --standalone there is no
 * pager: plain memory, for baselines and self-tests.
 *
 * One thread then plays the guest: it reads and writes pages following an
 * access pattern (sequential, uniform, zipf, a blocked LINPACK/LU-like
 * pattern, or boot-like with most memory never touched). Every written page
 * is stamped (gs_stamp.h) and the expected write generation of each page is
 * kept in private memory that is not registered with anybody, so every read
 * is verified: the stamp of the last write, or zeros for pages never written
 * or freed. --free-report frees written ranges the way a guest with free
 * page reporting does (FREE_HINT through libferry-vmm, or madvise) and
 * expects zeros afterwards. --check reads all of memory at the end.
 *
 * With --regions N the one memfd mapping is registered as N regions, the way
 * QEMU registers RAM below and above 4 GiB: region k is slice k of the
 * mapping (hva mem + k*slice, file offset k*slice) at guest-physical address
 * k*slice + k*GS_REGION_GAP, so that there is a hole in guest-physical space
 * between regions and a gpa is never the file offset (past region 0). Pages
 * are numbered 0..npages-1 in mapping order (stamps, vCPU slices, device
 * state); page_gpa() turns a page number into its gpa for FREE_HINTs, and
 * libferry-vmm maps DROP_PTES gpa ranges back through the registered regions.
 *
 * Exit status: 0 ok, 1 error, 2 usage, 3 verification failed (first mismatch
 * printed), 4 --timeout expired (a fault was never served).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/common/units.h"
#include "dataplane/common/ferry_err.h"
#include "dataplane/vmm/ferry_vmm.h"
#include "proto/vmm.h"
#include "tests/guestsim/gs_stamp.h"

#define EXIT_OK      0
#define EXIT_ERR     1
#define EXIT_USAGE   2
#define EXIT_VERIFY  3
#define EXIT_TIMEOUT 4

#define LP_BLOCK     16u          /* pages per LINPACK block (paper 002's 16-page blocks) */
#define FREE_RANGE   16u          /* pages per freed range (64 KiB, aligned) */
#define BOOT_RUN     16u          /* boot-like: touched memory comes in runs of this many pages */

#define GS_MAX_REGIONS   8u
#define GS_REGION_GAP    (512ull << 20)  /* guest-physical hole after each region (like QEMU's PCI hole) */
#define GS_REGION_MIN    (2ull << 20)    /* smallest region --regions accepts */

enum pattern { PAT_SEQ, PAT_UNIFORM, PAT_ZIPF, PAT_LINPACK, PAT_BOOT };
static const char *const pattern_names[] = { "sequential", "uniform", "zipf", "linpack", "boot" };

enum mode { MODE_STANDALONE, MODE_PAGER, MODE_FC };
static const char *const mode_names[] = { "standalone", "pager", "firecracker" };

struct opts {
	uint64_t mem;
	enum mode mode;
	bool anon;
	const char *pager, *vm_id, *fc_socket;
	enum pattern pattern;
	double zipf_s;
	double touched_pct;
	double write_pct;
	uint64_t ops;
	double duration;
	uint64_t seed;
	bool check;
	double free_pct;
	bool free_hint;
	uint64_t free_every;
	const char *json;
	bool quiet;
	int inject;            /* 0 none, 1 a written page, 2 a never-written page */
	unsigned timeout;
	uint64_t modes;        /* --uffd-modes; 0 = default */
	unsigned vcpus;
	uint64_t incoming;     /* --incoming MIGID: destination shell of that migration */
	double run_after;      /* --run-after SEC: at the destination, run SEC more after the switch-over */
	unsigned regions;      /* --regions N: guest RAM registered as N regions */
};

/* One registered region of guest RAM: pages first_page.. of the mapping at gpa. */
struct gs_region {
	uint64_t first_page, npages;
	uint64_t gpa;
};

/*
 * With a pager, the vCPUs run in threads and the main thread serves the
 * pager's requests (PAUSE, RESUME, DROP_PTES, the migrated-away NOTICE).
 * PAUSE parks every vCPU at an access boundary: a consistent point where
 * the expected generations, RNG and pattern state all describe memory
 * exactly.
 */
struct gs_ctl {
	pthread_mutex_t m;
	pthread_cond_t cv;
	_Atomic bool pause;     /* vCPUs park at the next access boundary */
	bool quit;              /* parked vCPUs return instead of resuming */
	unsigned parked, running;
	_Atomic uint64_t paused_ns;  /* time spent paused: not part of --duration */
};

struct lp_state {
	uint64_t nb, k, i, j, p;
	uint64_t generated;    /* pages of the matrix written by the generation pass so far */
	int phase;             /* 0 panel, 1 update */
	int sub;               /* update: 0 read L, 1 read U, 2 write A */
};

/*
 * The guest, or with --vcpus N one vCPU's view of it: vCPU k owns a slice of
 * guest RAM (a multiple of 64 KiB) and sees it as pages 0..npages-1, which
 * are pages base_page.. of guest RAM (stamps and hints use the latter).
 */
struct gs {
	struct opts o;
	uint8_t *mem;          /* guest RAM (this vCPU's slice) */
	uint64_t npages;
	uint64_t base_page;    /* first page of the slice in guest RAM */
	uint64_t ops_limit;    /* this vCPU's share of --ops (0 = by time) */
	unsigned vcpu;
	pthread_mutex_t *conn_lock; /* the libferry-vmm connection is not thread-safe */
	struct gs_ctl *ctl;    /* with a pager: pause/resume of the vCPU threads */
	uint64_t t0;           /* start of the run (ns; shifted back by the time run before a migration) */
	pthread_t thr;
	int status;
	int memfd;             /* -1 with --anon */
	int uffd;
	struct ferry_vmm_conn *conn;
	int fc_sock;
	uint64_t modes;        /* uffd registration modes */
	struct gs_region regions[GS_MAX_REGIONS];  /* the layout (--regions), in page order */
	unsigned nregions;

	uint64_t *gen;         /* expected generation per page (private) */
	uint8_t *touched;      /* 1 once accessed */
	uint64_t next_gen;
	uint64_t nwritten;     /* pages with gen != 0 */
	uint64_t rng;

	/* pattern state */
	uint64_t seq_pos;
	double *zipf_cdf;
	uint64_t zipf_mult;
	uint64_t *boot_set;
	uint64_t boot_n;
	struct lp_state lp;

	/* counters */
	uint64_t ops, reads, writes, zero_reads, stamped_reads;
	uint64_t pages_touched;
	uint64_t free_rounds, free_ranges, free_pages;
	uint64_t check_pages;
	uint64_t pauses, resumes, drops, drop_bytes;
	bool migrated_in;
	uint64_t resident_pages;   /* after the workload, before --check */
	bool resident_known;
	double seconds;
	struct rusage ru0, ru1;

	bool failed;
	char first_error[512];
};

static volatile sig_atomic_t g_cur_page_valid;
static volatile uint64_t g_cur_page;

/* ------------------------------------------------------------------ helpers */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t rnd(uint64_t *s)
{
	*s += 0x9e3779b97f4a7c15ull;
	return gs_mix64(*s);
}

static uint64_t rnd_below(uint64_t *s, uint64_t n)
{
	return n ? rnd(s) % n : 0;
}

static double rnd_unit(uint64_t *s)
{
	return (double)(rnd(s) >> 11) * (1.0 / 9007199254740992.0);
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);

	if (errno || end == s || *end || s[0] == '-')
		return -1;
	*out = v;
	return 0;
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);

	if (errno || end == s || *end || !(v >= lo && v <= hi))
		return -1;
	*out = v;
	return 0;
}

static void usage(FILE *out)
{
	fputs(
"usage: guestsim (--standalone | --pager SOCKET --vm-id ID | --anon --fc-socket PATH) [options]\n"
"\n"
"A test and benchmark \"VM\": guest RAM in a memfd (MAP_SHARED) or, with --anon,\n"
"anonymous memory, registered on a userfaultfd and handed to a ferry-pager; one\n"
"thread reads and writes it following an access pattern and verifies every page.\n"
"\n"
"Where the memory goes:\n"
"  --standalone         no pager, no userfaultfd: plain memory (baselines, self-tests)\n"
"  --pager SOCKET       register with the ferry-pager at SOCKET through libferry-vmm\n"
"                       (\"@name\" = abstract socket); needs --vm-id\n"
"  --vm-id ID           the VM's id at the pager (default guestsim-PID)\n"
"  --anon               anonymous guest RAM (MAP_PRIVATE) instead of a memfd\n"
"  --fc-socket PATH     with --anon: send the Firecracker UFFD handshake (one JSON array of\n"
"                       regions + the uffd in SCM_RIGHTS) to PATH instead of libferry-vmm\n"
"  --mem SIZE           guest RAM (K/M/G suffixes; default 64M)\n"
"  --uffd-modes LIST    registration modes: missing,wp,minor (default missing,wp on a memfd:\n"
"                       the pager pages out only WP-registered memory; missing with --anon)\n"
"  --regions N          register the memfd as N regions (1..8, default 1) of equal size (the last\n"
"                       takes the remainder; each at least 2 MiB), like QEMU's RAM below and above\n"
"                       4 GiB: region k is at file offset k*slice and gpa k*slice + k*512M (a\n"
"                       guest-physical hole between regions). Not with --anon / --fc-socket. A\n"
"                       migration destination (--incoming) needs the source's --regions\n"
"\n"
"What the guest does:\n"
"  --pattern P          sequential, uniform (default), zipf, linpack, boot\n"
"  --zipf-s S           zipf exponent (default 0.99)\n"
"  --touched PCT        boot: share of memory ever touched (default 5)\n"
"  --write-pct PCT      share of accesses that write (default 30; linpack has its own mix)\n"
"  --vcpus N            N guest threads (vCPUs), each on its own slice of RAM with its own copy of\n"
"                       the pattern, faulting concurrently (default 1)\n"
"  --ops N              stop after N page accesses\n"
"  --duration SEC       stop after SEC seconds (default 5 when --ops is not given)\n"
"  --seed N             PRNG seed (default from the clock; printed)\n"
"  --free-report PCT    every --free-every accesses, free written 64 KiB ranges holding PCT%\n"
"                       of the written pages, like a guest with free page reporting\n"
"  --free-via HOW       hint (FREE_HINT through libferry-vmm; default with --pager) or\n"
"                       madvise (MADV_REMOVE on the memfd, MADV_DONTNEED on --anon; the\n"
"                       default with --anon, whose pages a hint cannot free). Freed pages\n"
"                       must read as zeros\n"
"  --free-every N       accesses between free rounds (default 20000)\n"
"  --check              read and verify all of memory at the end (wherever the VM runs then)\n"
"  --incoming MIGID     with --pager: start as the destination shell of migration MIGID: register\n"
"                       with empty memory, wait for the pager's RESUME, load the device state\n"
"                       (STATE_GET) and continue the workload; the other options must be the\n"
"                       source's (mem, pattern, vcpus, seed, ...)\n"
"  --run-after SEC      with --incoming and --duration: run SEC seconds after the switch-over\n"
"                       (default: what is left of --duration)\n"
"  --timeout SEC        give up (exit 4) when the run takes longer: a fault never served\n"
"  --json [FILE]        write the statistics as JSON (\"-\" or no FILE = stdout)\n"
"  -q, --quiet          no summary on stderr\n"
"  -h, --help\n"
"\n"
"Every written page carries (page, generation, checksum); reads expect the last write's\n"
"stamp, or zeros for pages never written or freed.\n"
"With --pager the pager may pause the guest (its state - RNG, pattern, expected generations,\n"
"counters - goes to the pager as the device state), resume it, drop its page-table entries,\n"
"or tell it that it migrated away: it then prints a line and exits 0.\n"
"Exit status: 0 ok, 1 error, 2 usage, 3 verification failed (first mismatch printed),\n"
"4 --timeout expired.\n",
	      out);
}

static int usage_error(const char *msg, const char *arg)
{
	fprintf(stderr, "guestsim: %s%s%s%s (see --help)\n", msg, arg ? " '" : "", arg ? arg : "", arg ? "'" : "");
	return -EXIT_USAGE;
}

enum {
	OPT_STANDALONE = 256, OPT_PAGER, OPT_VM_ID, OPT_ANON, OPT_FC, OPT_MEM, OPT_PATTERN, OPT_ZIPF_S,
	OPT_TOUCHED, OPT_WRITE_PCT, OPT_OPS, OPT_DURATION, OPT_SEED, OPT_CHECK, OPT_FREE, OPT_FREE_VIA,
	OPT_FREE_EVERY, OPT_JSON, OPT_INJECT, OPT_TIMEOUT, OPT_MODES, OPT_VCPUS, OPT_INCOMING, OPT_RUN_AFTER,
	OPT_REGIONS,
};

static const struct option long_opts[] = {
	{ "standalone", no_argument, NULL, OPT_STANDALONE },
	{ "pager", required_argument, NULL, OPT_PAGER },
	{ "vm-id", required_argument, NULL, OPT_VM_ID },
	{ "anon", no_argument, NULL, OPT_ANON },
	{ "fc-socket", required_argument, NULL, OPT_FC },
	{ "mem", required_argument, NULL, OPT_MEM },
	{ "pattern", required_argument, NULL, OPT_PATTERN },
	{ "zipf-s", required_argument, NULL, OPT_ZIPF_S },
	{ "touched", required_argument, NULL, OPT_TOUCHED },
	{ "write-pct", required_argument, NULL, OPT_WRITE_PCT },
	{ "ops", required_argument, NULL, OPT_OPS },
	{ "duration", required_argument, NULL, OPT_DURATION },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "check", no_argument, NULL, OPT_CHECK },
	{ "free-report", required_argument, NULL, OPT_FREE },
	{ "free-via", required_argument, NULL, OPT_FREE_VIA },
	{ "free-every", required_argument, NULL, OPT_FREE_EVERY },
	{ "json", required_argument, NULL, OPT_JSON },
	{ "inject-corruption", optional_argument, NULL, OPT_INJECT },   /* hidden: self-test */
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "uffd-modes", required_argument, NULL, OPT_MODES },
	{ "vcpus", required_argument, NULL, OPT_VCPUS },
	{ "incoming", required_argument, NULL, OPT_INCOMING },
	{ "run-after", required_argument, NULL, OPT_RUN_AFTER },
	{ "regions", required_argument, NULL, OPT_REGIONS },
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/*
 * "--json" alone (last, or followed by another option) means stdout: give it
 * the explicit "-" so getopt can treat it as a required argument.
 */
static char **normalize_json(int argc, char **argv, int *nargc)
{
	char **v = calloc((size_t)argc * 2 + 1, sizeof(*v));
	int n = 0;

	if (!v)
		return NULL;
	for (int i = 0; i < argc; i++) {
		v[n++] = argv[i];
		if (strcmp(argv[i], "--json") == 0 &&
		    (i + 1 == argc || (argv[i + 1][0] == '-' && argv[i + 1][1] != 0)))
			v[n++] = (char *)"-";
	}
	*nargc = n;
	return v;
}

/* Returns 0, 1 (help printed) or -EXIT_USAGE. */
static int parse_opts(int argc, char **argv, struct opts *o)
{
	bool have_mode = false, free_via_set = false;
	int c, nmodes = 0;

	memset(o, 0, sizeof(*o));
	o->mem = 64ull << 20;
	o->pattern = PAT_UNIFORM;
	o->zipf_s = 0.99;
	o->touched_pct = 5;
	o->write_pct = 30;
	o->free_every = 20000;
	o->vcpus = 1;
	o->regions = 1;
	o->seed = now_ns() ^ ((uint64_t)getpid() << 32);

	while ((c = getopt_long(argc, argv, "qh", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_STANDALONE: o->mode = MODE_STANDALONE; nmodes++; have_mode = true; break;
		case OPT_PAGER: o->mode = MODE_PAGER; o->pager = optarg; nmodes++; have_mode = true; break;
		case OPT_FC: o->mode = MODE_FC; o->fc_socket = optarg; nmodes++; have_mode = true; break;
		case OPT_VM_ID: o->vm_id = optarg; break;
		case OPT_ANON: o->anon = true; break;
		case OPT_MEM:
			if (ferry_size_parse(optarg, &o->mem) < 0 || o->mem < GS_PAGE * 64 || o->mem % GS_PAGE)
				return usage_error("--mem needs a size of at least 256K, a multiple of 4K, not", optarg);
			break;
		case OPT_PATTERN: {
			size_t i;

			for (i = 0; i < sizeof(pattern_names) / sizeof(pattern_names[0]); i++)
				if (strcmp(optarg, pattern_names[i]) == 0 ||
				    (i == PAT_SEQ && strcmp(optarg, "seq") == 0) ||
				    (i == PAT_UNIFORM && strcmp(optarg, "random") == 0) ||
				    (i == PAT_BOOT && strcmp(optarg, "boot-like") == 0))
					break;
			if (i == sizeof(pattern_names) / sizeof(pattern_names[0]))
				return usage_error("unknown --pattern", optarg);
			o->pattern = (enum pattern)i;
			break;
		}
		case OPT_ZIPF_S:
			if (parse_double(optarg, 0.01, 10, &o->zipf_s) < 0)
				return usage_error("--zipf-s needs a number in [0.01, 10], not", optarg);
			break;
		case OPT_TOUCHED:
			if (parse_double(optarg, 0.01, 100, &o->touched_pct) < 0)
				return usage_error("--touched needs a percentage in (0, 100], not", optarg);
			break;
		case OPT_WRITE_PCT:
			if (parse_double(optarg, 0, 100, &o->write_pct) < 0)
				return usage_error("--write-pct needs a percentage in [0, 100], not", optarg);
			break;
		case OPT_OPS:
			if (parse_u64(optarg, &o->ops) < 0 || o->ops == 0)
				return usage_error("--ops needs a positive count, not", optarg);
			break;
		case OPT_DURATION:
			if (parse_double(optarg, 0.001, 1e6, &o->duration) < 0)
				return usage_error("--duration needs seconds, not", optarg);
			break;
		case OPT_SEED:
			if (parse_u64(optarg, &o->seed) < 0)
				return usage_error("--seed needs a number, not", optarg);
			break;
		case OPT_CHECK: o->check = true; break;
		case OPT_FREE:
			if (parse_double(optarg, 0, 100, &o->free_pct) < 0)
				return usage_error("--free-report needs a percentage in [0, 100], not", optarg);
			break;
		case OPT_FREE_VIA:
			if (strcmp(optarg, "hint") == 0)
				o->free_hint = true;
			else if (strcmp(optarg, "madvise") == 0)
				o->free_hint = false;
			else
				return usage_error("--free-via takes hint or madvise, not", optarg);
			free_via_set = true;
			break;
		case OPT_FREE_EVERY:
			if (parse_u64(optarg, &o->free_every) < 0 || o->free_every == 0)
				return usage_error("--free-every needs a positive count, not", optarg);
			break;
		case OPT_JSON: o->json = optarg; break;
		case OPT_INJECT:
			if (!optarg || strcmp(optarg, "written") == 0)
				o->inject = 1;
			else if (strcmp(optarg, "unwritten") == 0)
				o->inject = 2;
			else
				return usage_error("--inject-corruption takes written or unwritten, not", optarg);
			break;
		case OPT_TIMEOUT: {
			uint64_t t;

			if (parse_u64(optarg, &t) < 0 || t > 86400)
				return usage_error("--timeout needs seconds (<= 86400), not", optarg);
			o->timeout = (unsigned)t;
			break;
		}
		case OPT_VCPUS: {
			uint64_t v;

			if (parse_u64(optarg, &v) < 0 || v < 1 || v > 64)
				return usage_error("--vcpus needs 1..64, not", optarg);
			o->vcpus = (unsigned)v;
			break;
		}
		case OPT_MODES: {
			char buf[64], *save = NULL;

			if (strlen(optarg) >= sizeof(buf))
				return usage_error("bad --uffd-modes", optarg);
			strcpy(buf, optarg);
			o->modes = 0;
			for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
				if (strcmp(t, "missing") == 0)
					o->modes |= FERRY_VMM_MODE_MISSING;
				else if (strcmp(t, "wp") == 0)
					o->modes |= FERRY_VMM_MODE_WP;
				else if (strcmp(t, "minor") == 0)
					o->modes |= FERRY_VMM_MODE_MINOR;
				else
					return usage_error("--uffd-modes takes missing,wp,minor, not", optarg);
			}
			if (!o->modes)
				return usage_error("empty --uffd-modes", optarg);
			break;
		}
		case OPT_REGIONS: {
			uint64_t v;

			if (parse_u64(optarg, &v) < 0 || v < 1 || v > GS_MAX_REGIONS)
				return usage_error("--regions needs 1..8, not", optarg);
			o->regions = (unsigned)v;
			break;
		}
		case OPT_RUN_AFTER:
			if (parse_double(optarg, 0.001, 1e6, &o->run_after) < 0)
				return usage_error("--run-after needs seconds, not", optarg);
			break;
		case OPT_INCOMING:
			if (parse_u64(optarg, &o->incoming) < 0 || o->incoming == 0)
				return usage_error("--incoming needs a migration id (a positive number), not", optarg);
			break;
		case 'q': o->quiet = true; break;
		case 'h': usage(stdout); return 1;
		default: return usage_error("bad arguments", NULL);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument", argv[optind]);
	if (!have_mode)
		return usage_error("say where the memory goes: --standalone, --pager SOCKET or --anon --fc-socket PATH",
				   NULL);
	if (nmodes > 1)
		return usage_error("--standalone, --pager and --fc-socket exclude each other", NULL);
	if (o->mode == MODE_FC && !o->anon)
		return usage_error("--fc-socket needs --anon (Firecracker guest memory is anonymous)", NULL);
	if (o->incoming && (o->mode != MODE_PAGER || o->anon))
		return usage_error("--incoming needs --pager and a memfd (not --anon)", NULL);
	if (o->run_after > 0 && !o->incoming)
		return usage_error("--run-after is for an --incoming destination", NULL);
	if (o->incoming && o->inject)
		return usage_error("--incoming and --inject-corruption exclude each other", NULL);
	if (o->regions > 1 && o->anon)
		return usage_error("--regions needs a memfd (regions are slices of one memory file at their offsets): "
				   "not with --anon or --fc-socket", NULL);
	if (o->regions > 1 && (o->mem / GS_PAGE / o->regions) * GS_PAGE < GS_REGION_MIN) {
		char m[96];

		snprintf(m, sizeof(m), "--regions %u with --mem %" PRIu64 "K makes regions smaller than 2 MiB",
			 o->regions, o->mem >> 10);
		return usage_error(m, NULL);
	}
	if (!free_via_set)
		o->free_hint = o->mode == MODE_PAGER && !o->anon;
	if (o->free_pct > 0 && o->free_hint && o->anon)
		return usage_error("--free-via hint cannot free anonymous memory (the pager refuses it): "
				   "use --free-via madvise", NULL);
	if (o->free_pct > 0 && o->free_hint && o->mode != MODE_PAGER)
		return usage_error("--free-via hint needs --pager (there is nobody else to hint)", NULL);
	if (!o->ops && o->duration == 0)
		o->duration = 5;
	return 0;
}

/* ------------------------------------------------------------------ watchdog */

static void on_alarm(int sig)
{
	char buf[160];
	int n;

	(void)sig;
	if (g_cur_page_valid)
		n = snprintf(buf, sizeof(buf), "guestsim: timeout: still waiting on page %llu (a fault not served?)\n",
			     (unsigned long long)g_cur_page);
	else
		n = snprintf(buf, sizeof(buf), "guestsim: timeout\n");
	if (n > 0)
		(void)!write(2, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
	_exit(EXIT_TIMEOUT);
}

/* ------------------------------------------------------------------ memory setup */

static int fc_handshake(struct gs *g)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char json[512];
	int n, s;

	if (strlen(g->o.fc_socket) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "guestsim: --fc-socket path too long\n");
		return -1;
	}
	strcpy(sa.sun_path, g->o.fc_socket);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = 0;
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "guestsim: connect %s: %s\n", g->o.fc_socket, strerror(errno));
		if (s >= 0)
			close(s);
		return -1;
	}
	/* Exactly what Firecracker (1.12+) sends: both page size fields, in bytes. */
	n = snprintf(json, sizeof(json),
		     "[{\"base_host_virt_addr\":%" PRIu64 ",\"size\":%" PRIu64 ",\"offset\":0,"
		     "\"page_size\":4096,\"page_size_kib\":4096}]",
		     (uint64_t)(uintptr_t)g->mem, g->npages * GS_PAGE);

	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cm;
	struct iovec iov = { .iov_base = json, .iov_len = (size_t)n };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
			      .msg_controllen = sizeof(cm.buf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);

	memset(cm.buf, 0, sizeof(cm.buf));
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &g->uffd, sizeof(int));

	ssize_t w = sendmsg(s, &msg, MSG_NOSIGNAL);

	if (w != n) {
		fprintf(stderr, "guestsim: send Firecracker handshake to %s: %s\n", g->o.fc_socket,
			w < 0 ? strerror(errno) : "short write");
		close(s);
		return -1;
	}
	g->fc_sock = s;
	return 0;
}

/*
 * --regions: N slices of the mapping, page aligned, the last taking the
 * remainder; region k starts at gpa first_page*4K + k*GS_REGION_GAP.
 */
static void layout_regions(struct gs *g)
{
	unsigned n = g->o.regions ? g->o.regions : 1;
	uint64_t slice = g->npages / n;

	g->nregions = n;
	for (unsigned k = 0; k < n; k++) {
		struct gs_region *r = &g->regions[k];

		r->first_page = k * slice;
		r->npages = k + 1 == n ? g->npages - r->first_page : slice;
		r->gpa = r->first_page * GS_PAGE + k * GS_REGION_GAP;
	}
}

/* The region holding page @page (a page number of guest RAM, 0..npages-1). */
static const struct gs_region *page_region(const struct gs *g, uint64_t page)
{
	unsigned k = g->nregions - 1;

	while (k > 0 && page < g->regions[k].first_page)
		k--;
	return &g->regions[k];
}

/* Guest-physical address of page @page of guest RAM. */
static uint64_t page_gpa(const struct gs *g, uint64_t page)
{
	const struct gs_region *r = page_region(g, page);

	return r->gpa + (page - r->first_page) * GS_PAGE;
}

static int setup_memory(struct gs *g)
{
	const struct opts *o = &g->o;
	struct ferry_err err = { 0 };

	g->npages = o->mem / GS_PAGE;
	layout_regions(g);
	g->memfd = -1;
	g->uffd = -1;
	g->fc_sock = -1;
	if (o->anon) {
		g->mem = mmap(NULL, o->mem, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	} else {
		g->memfd = memfd_create("guestsim-ram", MFD_CLOEXEC);
		if (g->memfd < 0) {
			fprintf(stderr, "guestsim: memfd_create: %s\n", strerror(errno));
			return -1;
		}
		if (ftruncate(g->memfd, (off_t)o->mem) < 0) {
			fprintf(stderr, "guestsim: ftruncate memfd to %" PRIu64 " bytes: %s\n", o->mem, strerror(errno));
			return -1;
		}
		g->mem = mmap(NULL, o->mem, PROT_READ | PROT_WRITE, MAP_SHARED, g->memfd, 0);
	}
	if (g->mem == MAP_FAILED) {
		g->mem = NULL;
		fprintf(stderr, "guestsim: mmap %" PRIu64 " bytes of guest RAM: %s\n", o->mem, strerror(errno));
		return -1;
	}
	/* Guest RAM is 4 KiB pages: keep THP out of the way of per-page faults. */
	(void)madvise(g->mem, o->mem, MADV_NOHUGEPAGE);

	if (o->mode == MODE_STANDALONE)
		return 0;

	/*
	 * ferry-pager pages out only memory in a file registered with MODE_WP on a
	 * uffd without WP_ASYNC (its --help), so leave that feature out of the
	 * recommended set. Anonymous memory (Firecracker) is MISSING only.
	 */
	g->modes = o->modes ? o->modes
			    : (o->anon ? FERRY_VMM_MODE_MISSING : FERRY_VMM_MODE_MISSING | FERRY_VMM_MODE_WP);
	g->uffd = ferry_vmm_uffd_create(O_CLOEXEC | O_NONBLOCK | FERRY_VMM_UFFD_BEST_EFFORT,
					FERRY_VMM_UFFD_F_RECOMMENDED & ~FERRY_VMM_UFFD_F_WP_ASYNC, &err);
	if (g->uffd < 0) {
		fprintf(stderr, "guestsim: userfaultfd: %s\n", err.msg);
		return -1;
	}
	if (ferry_vmm_uffd_register_range(g->uffd, g->mem, o->mem, g->modes, &err) < 0) {
		fprintf(stderr, "guestsim: %s\n", err.msg);
		return -1;
	}
	if (o->mode == MODE_FC)
		return fc_handshake(g);

	char idbuf[64];
	const char *id = o->vm_id;

	if (!id) {
		snprintf(idbuf, sizeof(idbuf), "guestsim-%d", (int)getpid());
		id = idbuf;
	}
	g->conn = ferry_vmm_connect(o->pager);
	if (!g->conn) {
		fprintf(stderr, "guestsim: connect to pager %s: %s\n", o->pager, strerror(errno));
		return -1;
	}
	/* One mapping, one memory file, nregions regions at their own gpa and file offset. */
	struct ferry_vmm_region r[GS_MAX_REGIONS];

	for (unsigned k = 0; k < g->nregions; k++) {
		const struct gs_region *gr = &g->regions[k];

		r[k] = (struct ferry_vmm_region){
			.gpa = gr->gpa, .size = gr->npages * GS_PAGE,
			.hva = (uintptr_t)(g->mem + gr->first_page * GS_PAGE), .offset = gr->first_page * GS_PAGE,
			.page_size = GS_PAGE, .modes = (uint32_t)g->modes, .mem_fd = g->memfd,
		};
	}
	/* Always offer to serve the pager's requests: pause, resume, migration. */
	struct ferry_vmm_reg_opts ro = {
		.flags = FERRY_VMM_REG_SERVER_REQUESTS | (o->incoming ? FERRY_VMM_REG_INCOMING : 0),
		.migration_id = o->incoming,
	};
	int rc = ferry_vmm_register_opts(g->conn, id, r, g->nregions, g->uffd, g->memfd, &ro);

	if (rc < 0) {
		fprintf(stderr, "guestsim: register %s with the pager: %s\n", id, ferry_vmm_errmsg(g->conn));
		return -1;
	}
	return 0;
}

static void teardown(struct gs *g)
{
	if (g->conn) {
		int rc = ferry_vmm_unregister(g->conn);

		if (rc < 0)
			fprintf(stderr, "guestsim: unregister: %s\n", ferry_vmm_errmsg(g->conn));
		ferry_vmm_close(g->conn);
	}
	if (g->fc_sock >= 0)
		close(g->fc_sock);
	if (g->uffd >= 0)
		close(g->uffd);
	if (g->mem)
		munmap(g->mem, g->npages * GS_PAGE);
	if (g->memfd >= 0)
		close(g->memfd);
	free(g->gen);
	free(g->touched);
	free(g->zipf_cdf);
	free(g->boot_set);
}

/* ------------------------------------------------------------------ patterns */

static uint64_t gcd64(uint64_t a, uint64_t b)
{
	while (b) {
		uint64_t t = a % b;

		a = b;
		b = t;
	}
	return a;
}

static int setup_pattern(struct gs *g)
{
	const struct opts *o = &g->o;

	switch (o->pattern) {
	case PAT_ZIPF: {
		double h = 0;

		g->zipf_cdf = malloc(g->npages * sizeof(double));
		if (!g->zipf_cdf)
			return -1;
		for (uint64_t r = 0; r < g->npages; r++) {
			h += 1.0 / pow((double)(r + 1), o->zipf_s);
			g->zipf_cdf[r] = h;
		}
		for (uint64_t r = 0; r < g->npages; r++)
			g->zipf_cdf[r] /= h;
		/* Rank -> page through a multiplicative permutation: hot pages are scattered. */
		g->zipf_mult = (0x9e3779b97f4a7c15ull ^ o->seed) % g->npages;
		if (g->zipf_mult < 2)
			g->zipf_mult = 2;
		while (gcd64(g->zipf_mult, g->npages) != 1)
			g->zipf_mult++;
		break;
	}
	case PAT_BOOT: {
		uint64_t want = (uint64_t)((double)g->npages * o->touched_pct / 100.0 + 0.5);
		uint64_t nruns = g->npages / BOOT_RUN;
		uint8_t *used = calloc(nruns ? nruns : 1, 1);
		uint64_t s = o->seed ^ 0xb007ull ^ gs_mix64(g->vcpu);

		if (want == 0)
			want = 1;
		g->boot_set = malloc(want * sizeof(uint64_t));
		if (!g->boot_set || !used) {
			free(used);
			return -1;
		}
		/* Runs of BOOT_RUN pages at random places (the kernel, page tables, a few processes). */
		while (g->boot_n < want) {
			uint64_t run = rnd_below(&s, nruns);

			if (used[run])
				continue;
			used[run] = 1;
			for (uint64_t k = 0; k < BOOT_RUN && g->boot_n < want; k++)
				g->boot_set[g->boot_n++] = run * BOOT_RUN + k;
		}
		free(used);
		break;
	}
	case PAT_LINPACK: {
		uint64_t nblocks = g->npages / LP_BLOCK;

		g->lp.nb = (uint64_t)sqrt((double)nblocks);
		while ((g->lp.nb + 1) * (g->lp.nb + 1) <= nblocks)
			g->lp.nb++;
		while (g->lp.nb * g->lp.nb > nblocks)
			g->lp.nb--;
		if (g->lp.nb < 2) {
			fprintf(stderr, "guestsim: --mem too small for the linpack pattern\n");
			return -1;
		}
		break;
	}
	default:
		break;
	}
	return 0;
}

static inline uint64_t lp_page(const struct gs *g, uint64_t bi, uint64_t bj, uint64_t p)
{
	return (bj * g->lp.nb + bi) * LP_BLOCK + p;  /* column-major blocks of 16 pages */
}

/*
 * Blocked right-looking LU factorisation, as LINPACK runs it: first the
 * matrix is generated (every page written once, in memory order, as HPL's
 * matgen fills A); then for step k, the panel (column k, rows k..nb-1) is
 * read-mostly (10% writes: pivoting and scaling); then every block of the
 * trailing matrix A(i,j), i,j > k, is updated from L(i,k) and U(k,j): read,
 * read, write, page by page. The active region shrinks toward the end of
 * memory as k grows; after the last step it starts over (a new solve on the
 * same matrix memory, not generated again).
 */
static void lp_next(struct gs *g, uint64_t *page, bool *write)
{
	struct lp_state *l = &g->lp;

	if (l->generated < l->nb * l->nb * LP_BLOCK) {
		*page = l->generated++;
		*write = true;
		return;
	}
	for (;;) {
		if (l->phase == 0) {
			if (l->i < l->nb) {
				*page = lp_page(g, l->i, l->k, l->p);
				*write = rnd_below(&g->rng, 10) == 0;
				if (++l->p == LP_BLOCK) {
					l->p = 0;
					l->i++;
				}
				return;
			}
			l->phase = 1;
			l->i = l->k + 1;
			l->j = l->k + 1;
			l->p = 0;
			l->sub = 0;
		}
		if (l->j < l->nb && l->i < l->nb) {
			switch (l->sub) {
			case 0: *page = lp_page(g, l->i, l->k, l->p); *write = false; break;
			case 1: *page = lp_page(g, l->k, l->j, l->p); *write = false; break;
			default: *page = lp_page(g, l->i, l->j, l->p); *write = true; break;
			}
			if (++l->sub == 3) {
				l->sub = 0;
				if (++l->p == LP_BLOCK) {
					l->p = 0;
					if (++l->i == l->nb) {
						l->i = l->k + 1;
						l->j++;
					}
				}
			}
			return;
		}
		/* next step */
		l->k++;
		if (l->k + 1 >= l->nb)
			l->k = 0;
		l->phase = 0;
		l->i = l->k;
		l->p = 0;
	}
}

static void next_access(struct gs *g, uint64_t *page, bool *write)
{
	const struct opts *o = &g->o;

	switch (o->pattern) {
	case PAT_SEQ:
		*page = g->seq_pos;
		if (++g->seq_pos == g->npages)
			g->seq_pos = 0;
		break;
	case PAT_UNIFORM:
		*page = rnd_below(&g->rng, g->npages);
		break;
	case PAT_ZIPF: {
		double u = rnd_unit(&g->rng);
		uint64_t lo = 0, hi = g->npages - 1;

		while (lo < hi) {
			uint64_t mid = lo + (hi - lo) / 2;

			if (g->zipf_cdf[mid] < u)
				lo = mid + 1;
			else
				hi = mid;
		}
		*page = (unsigned __int128)lo * g->zipf_mult % g->npages;
		break;
	}
	case PAT_BOOT:
		*page = g->boot_set[rnd_below(&g->rng, g->boot_n)];
		break;
	case PAT_LINPACK:
		lp_next(g, page, write);
		return;
	}
	*write = rnd_unit(&g->rng) * 100.0 < o->write_pct;
}

/* ------------------------------------------------------------------ the guest */

static void fail(struct gs *g, const char *why)
{
	if (!g->failed) {
		g->failed = true;
		snprintf(g->first_error, sizeof(g->first_error), "%s", why);
	}
}

static void do_write(struct gs *g, uint64_t page)
{
	uint64_t gen = ++g->next_gen;

	if (g->gen[page] == 0)
		g->nwritten++;
	g->gen[page] = gen;
	gs_stamp_page(g->mem + page * GS_PAGE, g->o.seed, g->base_page + page, gen);
	g->writes++;
}

static bool do_read(struct gs *g, uint64_t page)
{
	char why[400];

	g->reads++;
	if (g->gen[page] == 0)
		g->zero_reads++;
	else
		g->stamped_reads++;
	if (gs_check_page(g->mem + page * GS_PAGE, g->base_page + page, g->gen[page], why, sizeof(why)))
		return true;
	fail(g, why);
	return false;
}

/*
 * Append the FREE_HINT ranges of pages [first, first+n) of guest RAM: one per
 * region the pages lie in, each at that region's gpa (regions are page
 * aligned, so a 64 KiB free range may straddle two, with a gpa hole between).
 */
static int add_hints(const struct gs *g, uint64_t first, uint64_t n, struct ferry_vmm_range **hints, size_t *nh,
		     size_t *cap)
{
	while (n > 0) {
		const struct gs_region *r = page_region(g, first);
		uint64_t here = r->first_page + r->npages - first;

		if (here > n)
			here = n;
		if (*nh == *cap) {
			size_t ncap = *cap ? *cap * 2 : 64;
			struct ferry_vmm_range *v = realloc(*hints, ncap * sizeof(*v));

			if (!v)
				return -1;
			*hints = v;
			*cap = ncap;
		}
		(*hints)[*nh].gpa = page_gpa(g, first);
		(*hints)[*nh].len = here * GS_PAGE;
		(*nh)++;
		first += here;
		n -= here;
	}
	return 0;
}

/* Forget whole 64 KiB ranges holding about free_pct% of the written pages. */
static int free_round(struct gs *g)
{
	uint64_t target = (uint64_t)((double)g->nwritten * g->o.free_pct / 100.0);
	uint64_t nranges = g->npages / FREE_RANGE, freed = 0, tries = 0;
	struct ferry_vmm_range *hints = NULL;
	size_t nh = 0, cap = 0;
	int rc = 0;

	if (target == 0 || nranges == 0)
		return 0;
	g->free_rounds++;
	while (freed < target && tries++ < 4 * nranges + 1024) {
		uint64_t r = rnd_below(&g->rng, nranges), first = r * FREE_RANGE, had = 0;

		for (uint64_t p = first; p < first + FREE_RANGE; p++)
			if (g->gen[p])
				had++;
		if (!had)
			continue;
		for (uint64_t p = first; p < first + FREE_RANGE; p++)
			g->gen[p] = 0;
		g->nwritten -= had;
		freed += had;
		g->free_ranges++;
		g->free_pages += FREE_RANGE;
		if (g->o.free_hint) {
			if (add_hints(g, g->base_page + first, FREE_RANGE, &hints, &nh, &cap) < 0) {
				free(hints);
				fprintf(stderr, "guestsim: out of memory\n");
				return -1;
			}
		} else {
			int adv = g->o.anon ? MADV_DONTNEED : MADV_REMOVE;

			if (madvise(g->mem + first * GS_PAGE, FREE_RANGE * GS_PAGE, adv) < 0) {
				fprintf(stderr, "guestsim: madvise(%s) page %" PRIu64 ": %s\n",
					g->o.anon ? "MADV_DONTNEED" : "MADV_REMOVE", first, strerror(errno));
				rc = -1;
				break;
			}
		}
	}
	if (rc == 0 && nh) {
		if (g->conn_lock)
			pthread_mutex_lock(g->conn_lock);
		rc = ferry_vmm_free_hints(g->conn, hints, nh);
		if (rc < 0)
			fprintf(stderr, "guestsim: FREE_HINT (%zu ranges): %s\n", nh, ferry_vmm_errmsg(g->conn));
		if (g->conn_lock)
			pthread_mutex_unlock(g->conn_lock);
	}
	free(hints);
	return rc < 0 ? -1 : 0;
}

/* Run time: wall time minus the time spent paused. */
static uint64_t run_ns(const struct gs *g)
{
	return now_ns() - (g->ctl ? atomic_load(&g->ctl->paused_ns) : 0);
}

/* PAUSE: wait at this access boundary until RESUME (false) or the VM migrated away (true). */
static bool vcpu_park(struct gs *g)
{
	struct gs_ctl *c = g->ctl;
	bool quit;

	pthread_mutex_lock(&c->m);
	c->parked++;
	pthread_cond_broadcast(&c->cv);
	while (atomic_load(&c->pause) && !c->quit)
		pthread_cond_wait(&c->cv, &c->m);
	c->parked--;
	quit = c->quit;
	pthread_mutex_unlock(&c->m);
	return quit;
}

static int run_workload(struct gs *g)
{
	const struct opts *o = &g->o;
	uint64_t t0 = g->t0 ? g->t0 : run_ns(g);
	uint64_t deadline = o->duration > 0 ? t0 + (uint64_t)(o->duration * 1e9) : UINT64_MAX;

	for (;;) {
		uint64_t page = 0;
		bool write = false;

		if (g->ctl && atomic_load_explicit(&g->ctl->pause, memory_order_acquire) && vcpu_park(g))
			break;
		if (g->ops_limit && g->ops >= g->ops_limit)
			break;
		if ((g->ops & 1023) == 0 && run_ns(g) >= deadline)
			break;
		next_access(g, &page, &write);
		g_cur_page = g->base_page + page;
		g_cur_page_valid = 1;
		if (!g->touched[page]) {
			g->touched[page] = 1;
			g->pages_touched++;
		}
		if (write)
			do_write(g, page);
		else if (!do_read(g, page))
			return EXIT_VERIFY;
		g->ops++;
		if (o->free_pct > 0 && g->ops % o->free_every == 0 && free_round(g) < 0)
			return EXIT_ERR;
	}
	g_cur_page_valid = 0;
	g->seconds = (double)(run_ns(g) - t0) / 1e9;
	return EXIT_OK;
}

static void count_resident(struct gs *g)
{
	size_t n = g->npages;
	unsigned char *vec = malloc(n);

	if (!vec)
		return;
	if (mincore(g->mem, n * GS_PAGE, vec) == 0) {
		uint64_t r = 0;

		for (size_t i = 0; i < n; i++)
			r += vec[i] & 1;
		g->resident_pages = r;
		g->resident_known = true;
	}
	free(vec);
}

static void inject(struct gs *g)
{
	uint64_t page = UINT64_MAX;

	for (uint64_t p = 0; p < g->npages; p++)
		if ((g->o.inject == 1) == (g->gen[p] != 0)) {
			page = p;
			break;
		}
	if (page == UINT64_MAX) {
		/* nothing of the kind: make one */
		page = g->npages / 2;
		if (g->o.inject == 1)
			do_write(g, page);
		else
			g->gen[page] = 0;
	}
	/* Flip one byte in the body, behind the guest's back: only verification can notice. */
	g->mem[page * GS_PAGE + 1000] ^= 0x5a;
	if (!g->o.quiet)
		fprintf(stderr, "guestsim: injected corruption into %s page %" PRIu64 "\n",
			g->o.inject == 1 ? "written" : "never-written", page);
}

static int check_all(struct gs *g)
{
	for (uint64_t p = 0; p < g->npages; p++) {
		g_cur_page = p;
		g_cur_page_valid = 1;
		g->check_pages++;
		if (!do_read(g, p)) {
			g_cur_page_valid = 0;
			return EXIT_VERIFY;
		}
		g->reads--;            /* the check is not part of the workload's counts */
		if (g->gen[p])
			g->stamped_reads--;
		else
			g->zero_reads--;
	}
	g_cur_page_valid = 0;
	return EXIT_OK;
}

static void *vcpu_main(void *arg)
{
	struct gs *v = arg;

	v->status = run_workload(v);
	if (v->ctl) {
		pthread_mutex_lock(&v->ctl->m);
		v->ctl->running--;
		pthread_cond_broadcast(&v->ctl->cv);
		pthread_mutex_unlock(&v->ctl->m);
	}
	return NULL;
}

/*
 * The vCPUs: N threads, each on its own slice of guest RAM (whole 64 KiB
 * free ranges), with its own pattern state, generation counter and
 * counters; the shared expected-generation array is written by each thread
 * only within its slice. Afterwards the counters are summed into the guest.
 */
struct vcpus {
	struct gs *g;          /* the whole guest */
	struct gs *v;          /* n per-vCPU views */
	unsigned n, started;
	pthread_mutex_t lock;  /* the libferry-vmm connection */
	struct gs_ctl ctl;
	uint64_t pause_t0;
};

static int vcpus_prepare(struct vcpus *vs, struct gs *g)
{
	unsigned n = g->o.vcpus;
	uint64_t slice = (g->npages / n) & ~(uint64_t)(FREE_RANGE - 1);

	memset(vs, 0, sizeof(*vs));
	vs->g = g;
	vs->n = n;
	pthread_mutex_init(&vs->lock, NULL);
	pthread_mutex_init(&vs->ctl.m, NULL);
	pthread_cond_init(&vs->ctl.cv, NULL);
	vs->v = calloc(n, sizeof(*vs->v));
	if (!vs->v)
		return -1;
	if (n > 1 && slice < 4 * FREE_RANGE) {
		fprintf(stderr, "guestsim: --mem too small for %u vCPUs\n", n);
		return -1;
	}
	for (unsigned k = 0; k < n; k++) {
		struct gs *c = &vs->v[k];

		*c = *g;
		c->vcpu = k;
		c->base_page = k * slice;
		c->npages = k + 1 == n ? g->npages - c->base_page : slice;
		c->mem = g->mem + c->base_page * GS_PAGE;
		c->gen = g->gen + c->base_page;
		c->touched = g->touched + c->base_page;
		c->zipf_cdf = NULL;
		c->boot_set = NULL;
		c->boot_n = 0;
		c->nwritten = 0;
		memset(&c->lp, 0, sizeof(c->lp));
		/* One vCPU replays exactly what the single-threaded guest did with the same seed. */
		c->rng = n == 1 ? g->o.seed : g->o.seed ^ gs_mix64(0x7c0ull + k);
		c->ops_limit = g->o.ops ? (g->o.ops + n - 1 - k) / n : 0;
		c->conn_lock = &vs->lock;
		c->ctl = g->conn ? &vs->ctl : NULL;
		if (setup_pattern(c) < 0)
			return -1;
	}
	return 0;
}

static int vcpus_start(struct vcpus *vs)
{
	uint64_t t0 = now_ns();

	for (unsigned k = 0; k < vs->n; k++) {
		if (!vs->v[k].t0)
			vs->v[k].t0 = t0;
		pthread_mutex_lock(&vs->ctl.m);
		vs->ctl.running++;
		pthread_mutex_unlock(&vs->ctl.m);
		if (pthread_create(&vs->v[k].thr, NULL, vcpu_main, &vs->v[k]) != 0) {
			fprintf(stderr, "guestsim: cannot start vCPU thread %u\n", k);
			pthread_mutex_lock(&vs->ctl.m);
			vs->ctl.running--;
			pthread_mutex_unlock(&vs->ctl.m);
			return EXIT_ERR;
		}
		vs->started++;
	}
	return EXIT_OK;
}

/* Join the vCPUs and sum their counters into the guest. @return the first failure. */
static int vcpus_finish(struct vcpus *vs, int status)
{
	struct gs *g = vs->g;

	for (unsigned k = 0; k < vs->started; k++)
		pthread_join(vs->v[k].thr, NULL);
	for (unsigned k = 0; k < vs->n && vs->v; k++) {
		struct gs *c = &vs->v[k];

		if (k < vs->started) {
			g->ops += c->ops;
			g->reads += c->reads;
			g->writes += c->writes;
			g->zero_reads += c->zero_reads;
			g->stamped_reads += c->stamped_reads;
			g->pages_touched += c->pages_touched;
			g->free_rounds += c->free_rounds;
			g->free_ranges += c->free_ranges;
			g->free_pages += c->free_pages;
			g->nwritten += c->nwritten;
			if (c->seconds > g->seconds)
				g->seconds = c->seconds;
			if (c->next_gen > g->next_gen)
				g->next_gen = c->next_gen;
			if (c->failed && !g->failed) {
				g->failed = true;
				snprintf(g->first_error, sizeof(g->first_error), "vCPU %u: %.480s", k, c->first_error);
			}
			if (c->status != EXIT_OK && status == EXIT_OK)
				status = c->status;
		}
		free(c->zipf_cdf);
		free(c->boot_set);
	}
	free(vs->v);
	vs->v = NULL;
	return status;
}

static int run_vcpus(struct gs *g)
{
	struct vcpus vs;
	int status = vcpus_prepare(&vs, g) < 0 ? EXIT_ERR : EXIT_OK;

	if (status == EXIT_OK)
		status = vcpus_start(&vs);
	return vcpus_finish(&vs, status);
}

/* ------------------------------------------------------------------ device state */

/*
 * The device-state blob a PAUSE uploads and a migration destination loads:
 * everything needed to continue the guest and keep verifying it. Little
 * endian u64 words:
 *   magic "GSSTATE1", npages, vcpus, pattern, seed, ops option
 *   per vCPU: GS_VCPU_WORDS words (see vcpu_words)
 *   npages expected generations, then npages touched bytes (padded to 8).
 */
#define GS_STATE_MAGIC 0x3145544154535347ull /* "GSSTATE1" */
#define GS_STATE_HDR   6u
#define GS_VCPU_WORDS  24u

static void vcpu_words(struct gs *c, uint64_t **w)
{
	uint64_t *const f[GS_VCPU_WORDS] = {
		&c->base_page, &c->npages, &c->ops_limit, &c->rng, &c->seq_pos, &c->next_gen, &c->nwritten,
		&c->ops, &c->reads, &c->writes, &c->zero_reads, &c->stamped_reads, &c->pages_touched,
		&c->free_rounds, &c->free_ranges, &c->free_pages, &c->lp.nb, &c->lp.k, &c->lp.i, &c->lp.j,
		&c->lp.p, NULL, NULL, &c->t0,
	};

	memcpy(w, f, sizeof(f));
}

static size_t state_len(const struct gs *g)
{
	return 8 * (GS_STATE_HDR + (size_t)g->o.vcpus * GS_VCPU_WORDS + g->npages) + ((g->npages + 7) & ~7ull);
}

static void put64(uint8_t **p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		(*p)[i] = (uint8_t)(v >> (8 * i));
	*p += 8;
}

static uint64_t get64(const uint8_t **p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v |= (uint64_t)(*p)[i] << (8 * i);
	*p += 8;
	return v;
}

/* Serialise the parked guest. The run time so far replaces t0 (restored as now - run time). */
static uint8_t *state_save(struct vcpus *vs, size_t *len)
{
	struct gs *g = vs->g;
	uint8_t *b = calloc(1, state_len(g)), *p = b;
	uint64_t now = now_ns() - atomic_load(&vs->ctl.paused_ns);

	if (!b)
		return NULL;
	put64(&p, GS_STATE_MAGIC);
	put64(&p, g->npages);
	put64(&p, vs->n);
	put64(&p, (uint64_t)g->o.pattern);
	put64(&p, g->o.seed);
	put64(&p, g->o.ops);
	for (unsigned k = 0; k < vs->n; k++) {
		struct gs *c = &vs->v[k];
		uint64_t *w[GS_VCPU_WORDS];

		vcpu_words(c, w);
		for (unsigned i = 0; i < GS_VCPU_WORDS; i++) {
			if (i == 21)
				put64(&p, (uint64_t)(uint32_t)c->lp.phase);
			else if (i == 22)
				put64(&p, (uint64_t)(uint32_t)c->lp.sub);
			else if (i == 23)
				put64(&p, c->t0 ? now - c->t0 : 0);   /* run time so far */
			else
				put64(&p, *w[i]);
		}
	}
	for (uint64_t i = 0; i < g->npages; i++)
		put64(&p, g->gen[i]);
	memcpy(p, g->touched, g->npages);
	*len = state_len(g);
	return b;
}

/* Load a blob into the (not running) vCPUs. @return 0, or -1 with the reason printed. */
static int state_load(struct vcpus *vs, const uint8_t *b, size_t len)
{
	struct gs *g = vs->g;
	const uint8_t *p = b;
	uint64_t now = now_ns() - atomic_load(&vs->ctl.paused_ns);

	if (len != state_len(g) || get64(&p) != GS_STATE_MAGIC) {
		fprintf(stderr, "guestsim: device state: %zu bytes, not a guestsim state of this size (%zu)\n", len,
			state_len(g));
		return -1;
	}
	if (get64(&p) != g->npages || get64(&p) != vs->n || get64(&p) != (uint64_t)g->o.pattern ||
	    get64(&p) != g->o.seed || get64(&p) != g->o.ops) {
		fprintf(stderr, "guestsim: device state from a guest with other options (mem, vcpus, pattern, seed, "
				"ops must match the source's)\n");
		return -1;
	}
	for (unsigned k = 0; k < vs->n; k++) {
		struct gs *c = &vs->v[k];
		uint64_t *w[GS_VCPU_WORDS];
		uint64_t base = c->base_page, np = c->npages;

		vcpu_words(c, w);
		for (unsigned i = 0; i < GS_VCPU_WORDS; i++) {
			uint64_t v = get64(&p);

			if (i == 21)
				c->lp.phase = (int)v;
			else if (i == 22)
				c->lp.sub = (int)v;
			else if (i == 23)
				c->t0 = now - v;   /* the run time so far counts towards --duration */
			else
				*w[i] = v;
		}
		if (c->base_page != base || c->npages != np) {
			fprintf(stderr, "guestsim: device state: vCPU %u slice differs\n", k);
			return -1;
		}
		/* --run-after: the rest of the run is this long, whatever the source ran. */
		if (g->o.run_after > 0 && g->o.run_after < g->o.duration)
			c->t0 = now + (uint64_t)(g->o.run_after * 1e9) - (uint64_t)(g->o.duration * 1e9);
	}
	for (uint64_t i = 0; i < g->npages; i++)
		g->gen[i] = get64(&p);
	memcpy(g->touched, p, g->npages);
	return 0;
}

/* ------------------------------------------------------------------ serving the pager */

/* Ask every vCPU to park at its next access boundary and wait until all have (or finished). */
static void pause_vcpus(struct vcpus *vs)
{
	struct gs_ctl *c = &vs->ctl;

	pthread_mutex_lock(&c->m);
	if (!atomic_load(&c->pause)) {
		atomic_store(&c->pause, true);
		vs->pause_t0 = now_ns();
	}
	while (c->parked < c->running)
		pthread_cond_wait(&c->cv, &c->m);
	pthread_mutex_unlock(&c->m);
}

static void resume_vcpus(struct vcpus *vs)
{
	struct gs_ctl *c = &vs->ctl;

	pthread_mutex_lock(&c->m);
	if (atomic_load(&c->pause)) {
		atomic_fetch_add(&c->paused_ns, now_ns() - vs->pause_t0);
		atomic_store(&c->pause, false);
	}
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->m);
}

enum serve_state { SRV_INCOMING, SRV_RUNNING, SRV_MIGRATED, SRV_DONE, SRV_FAILED };

/* RESUME: (load the state and) start or continue the vCPUs. */
static int on_resume(struct vcpus *vs, const struct ferry_vmm_request *rq, enum serve_state *st)
{
	struct gs *g = vs->g;
	void *blob = NULL;
	size_t len = 0;
	int rc;

	if (*st == SRV_INCOMING && !(rq->flags & FERRY_VMM_RESUME_LOAD_STATE))
		return ferry_vmm_reply_error(g->conn, rq, FERRY_VMMP_E_NO_STATE,
					     "an incoming guestsim needs its device state (RESUME with LOAD_STATE)");
	if (rq->flags & FERRY_VMM_RESUME_LOAD_STATE) {
		/* At the source this is a reload of what PAUSE stored: the vCPUs are parked. */
		if (*st == SRV_RUNNING)
			pause_vcpus(vs);
		rc = ferry_vmm_get_state(g->conn, &blob, &len);
		if (rc < 0) {
			fprintf(stderr, "guestsim: RESUME: fetching the device state: %s\n", ferry_vmm_errmsg(g->conn));
			return ferry_vmm_reply_error(g->conn, rq, FERRY_VMMP_E_NO_STATE, "cannot fetch the device state");
		}
		rc = state_load(vs, blob, len);
		free(blob);
		if (rc < 0)
			return ferry_vmm_reply_error(g->conn, rq, FERRY_VMMP_E_MALFORMED,
						     "the device state does not fit this guestsim");
	}
	if (*st == SRV_INCOMING) {
		g->migrated_in = true;
		if (vcpus_start(vs) != EXIT_OK) {
			*st = SRV_FAILED;
			return ferry_vmm_reply_error(g->conn, rq, FERRY_VMMP_E_INTERNAL, "cannot start the vCPUs");
		}
		*st = SRV_RUNNING;
		if (!g->o.quiet)
			fprintf(stderr, "guestsim: migration %" PRIu64 ": device state loaded (%zu bytes), running\n",
				g->o.incoming, len);
	} else {
		resume_vcpus(vs);
	}
	g->resumes++;
	return ferry_vmm_reply_ok(g->conn, rq, 0);
}

/* One request from the pager. The connection lock is held except while the vCPUs are waited for. */
static int serve_one(struct vcpus *vs, const struct ferry_vmm_request *rq, enum serve_state *st)
{
	struct gs *g = vs->g;
	uint8_t *blob;
	size_t len = 0;
	int rc;

	switch (rq->kind) {
	case FERRY_VMM_REQ_PAUSE:
		if (*st == SRV_INCOMING)
			return ferry_vmm_reply_error(g->conn, rq, FERRY_VMMP_E_UNEXPECTED,
						     "an incoming guestsim has no state to save before RESUME");
		pthread_mutex_unlock(&vs->lock);     /* a vCPU may be in the middle of a FREE_HINT */
		pause_vcpus(vs);
		pthread_mutex_lock(&vs->lock);
		blob = state_save(vs, &len);
		if (!blob)
			return ferry_vmm_reply_error(g->conn, rq, FERRY_VMMP_E_INTERNAL, "out of memory");
		rc = ferry_vmm_reply_paused(g->conn, rq, blob, len);
		free(blob);
		g->pauses++;
		if (!g->o.quiet)
			fprintf(stderr, "guestsim: paused, device state %zu bytes\n", len);
		return rc;
	case FERRY_VMM_REQ_RESUME:
		if (*st == SRV_RUNNING && (rq->flags & FERRY_VMM_RESUME_LOAD_STATE)) {
			pthread_mutex_unlock(&vs->lock);
			pause_vcpus(vs);
			pthread_mutex_lock(&vs->lock);
		}
		return on_resume(vs, rq, st);
	case FERRY_VMM_REQ_DROP_PTES:
		rc = ferry_vmm_drop_ptes(g->conn, rq);
		if (rc == 0) {
			g->drops++;
			for (size_t i = 0; i < rq->nranges; i++)
				g->drop_bytes += rq->ranges[i].len;
		}
		return rc;
	case FERRY_VMM_REQ_MIGRATED:
		*st = SRV_MIGRATED;
		return 0;
	}
	return ferry_vmm_reply_error(g->conn, rq, FERRY_VMMP_E_UNSUPPORTED, "unknown request");
}

/*
 * With a pager: the vCPUs run in threads while this thread answers the
 * pager, until the workload ends (SRV_DONE) or the VM migrated away.
 */
static int serve(struct gs *g, bool *migrated_away)
{
	struct vcpus vs;
	enum serve_state st = g->o.incoming ? SRV_INCOMING : SRV_RUNNING;
	int status = vcpus_prepare(&vs, g) < 0 ? EXIT_ERR : EXIT_OK;

	*migrated_away = false;
	if (status == EXIT_OK && st == SRV_RUNNING)
		status = vcpus_start(&vs);
	if (status != EXIT_OK)
		st = SRV_FAILED;
	while (st == SRV_INCOMING || st == SRV_RUNNING) {
		struct pollfd pfd = { .fd = ferry_vmm_fd(g->conn), .events = POLLIN };
		struct ferry_vmm_request rq;
		bool all_done;
		int rc;

		pthread_mutex_lock(&vs.ctl.m);
		all_done = st == SRV_RUNNING && vs.ctl.running == 0;
		pthread_mutex_unlock(&vs.ctl.m);
		if (all_done) {
			st = SRV_DONE;
			break;
		}
		/* Wait unlocked (vCPUs send FREE_HINTs meanwhile); read under the lock. */
		if (ferry_vmm_pending(g->conn) == 0)
			(void)poll(&pfd, 1, 50);
		pthread_mutex_lock(&vs.lock);
		rc = ferry_vmm_next_request(g->conn, &rq, 0);
		if (rc > 0)
			rc = serve_one(&vs, &rq, &st);
		pthread_mutex_unlock(&vs.lock);
		if (rc < 0) {
			fprintf(stderr, "guestsim: serving the pager: %s\n", ferry_vmm_errmsg(g->conn));
			if (ferry_vmm_fd(g->conn) < 0 || rc == -ECONNRESET || rc == -ENOTCONN || rc == -EPIPE) {
				status = EXIT_ERR;
				st = SRV_FAILED;
			}
		}
	}
	if (st == SRV_MIGRATED || st == SRV_FAILED) {
		/* Parked vCPUs return instead of resuming; running ones stop at their next access. */
		pthread_mutex_lock(&vs.ctl.m);
		vs.ctl.quit = true;
		atomic_store(&vs.ctl.pause, true);
		pthread_cond_broadcast(&vs.ctl.cv);
		pthread_mutex_unlock(&vs.ctl.m);
		*migrated_away = st == SRV_MIGRATED;
	}
	status = vcpus_finish(&vs, status);
	return *migrated_away ? EXIT_OK : status;
}

/* ------------------------------------------------------------------ reporting */

static void summary(const struct gs *g, int status)
{
	const struct opts *o = &g->o;
	long minflt = g->ru1.ru_minflt - g->ru0.ru_minflt, majflt = g->ru1.ru_majflt - g->ru0.ru_majflt;

	fprintf(stderr,
		"guestsim: %s, %s RAM %" PRIu64 " MiB, %u vCPU%s, pattern %s, seed %" PRIu64 "\n"
		"  ops %" PRIu64 " (%" PRIu64 " reads: %" PRIu64 " stamped + %" PRIu64 " zero; %" PRIu64
		" writes) in %.2f s = %.0f ops/s\n"
		"  pages touched %" PRIu64 " of %" PRIu64 " (%.1f%%), written now %" PRIu64 "\n",
		mode_names[o->mode], o->anon ? "anonymous" : "memfd", o->mem >> 20, o->vcpus, o->vcpus > 1 ? "s" : "",
		pattern_names[o->pattern], o->seed,
		g->ops, g->reads, g->stamped_reads, g->zero_reads, g->writes, g->seconds,
		g->seconds > 0 ? (double)g->ops / g->seconds : 0, g->pages_touched, g->npages,
		100.0 * (double)g->pages_touched / (double)g->npages, g->nwritten);
	if (g->nregions > 1) {
		fprintf(stderr, "  %u regions (gpa/size MiB):", g->nregions);
		for (unsigned k = 0; k < g->nregions; k++)
			fprintf(stderr, " 0x%" PRIx64 "/%" PRIu64, g->regions[k].gpa, (g->regions[k].npages * GS_PAGE) >> 20);
		fputc('\n', stderr);
	}
	if (g->resident_known)
		fprintf(stderr, "  resident after the run %" PRIu64 " pages (%.1f%%)\n", g->resident_pages,
			100.0 * (double)g->resident_pages / (double)g->npages);
	if (g->free_rounds)
		fprintf(stderr, "  freed %" PRIu64 " ranges (%" PRIu64 " pages) in %" PRIu64 " rounds via %s\n",
			g->free_ranges, g->free_pages, g->free_rounds, o->free_hint ? "FREE_HINT" : "madvise");
	fprintf(stderr, "  page faults (getrusage) minor %ld major %ld\n", minflt, majflt);
	if (g->pauses || g->resumes || g->drops || g->migrated_in)
		fprintf(stderr, "  pager requests: %" PRIu64 " pauses, %" PRIu64 " resumes, %" PRIu64
				" DROP_PTES (%" PRIu64 " bytes)%s\n",
			g->pauses, g->resumes, g->drops, g->drop_bytes, g->migrated_in ? ", migrated in" : "");
	if (o->check)
		fprintf(stderr, "  check: %" PRIu64 " pages verified\n", g->check_pages);
	if (status == EXIT_OK)
		fprintf(stderr, "  verification: passed\n");
	else if (g->failed)
		fprintf(stderr, "  verification: FAILED: %s\n", g->first_error);
}

static int write_json(const struct gs *g, int status, const struct ferry_vmm_stat *ps, int nps)
{
	const struct opts *o = &g->o;
	json_t *root = json_object(), *pst = json_object(), *ver = json_object();
	int rc;

	json_object_set_new(root, "tool", json_string("guestsim"));
	json_object_set_new(root, "mode", json_string(mode_names[o->mode]));
	json_object_set_new(root, "memory", json_string(o->anon ? "anonymous" : "memfd"));
	json_object_set_new(root, "mem_bytes", json_integer((json_int_t)o->mem));
	json_object_set_new(root, "pages", json_integer((json_int_t)g->npages));
	json_object_set_new(root, "pattern", json_string(pattern_names[o->pattern]));
	json_object_set_new(root, "vcpus", json_integer(o->vcpus));
	json_object_set_new(root, "regions", json_integer(g->nregions));
	if (o->pattern == PAT_ZIPF)
		json_object_set_new(root, "zipf_s", json_real(o->zipf_s));
	if (o->pattern == PAT_BOOT)
		json_object_set_new(root, "touched_pct", json_real(o->touched_pct));
	if (o->pattern != PAT_LINPACK)
		json_object_set_new(root, "write_pct", json_real(o->write_pct));
	json_object_set_new(root, "seed", json_integer((json_int_t)o->seed));
	json_object_set_new(root, "seconds", json_real(g->seconds));
	json_object_set_new(root, "ops", json_integer((json_int_t)g->ops));
	json_object_set_new(root, "ops_per_s", json_real(g->seconds > 0 ? (double)g->ops / g->seconds : 0));
	json_object_set_new(root, "reads", json_integer((json_int_t)g->reads));
	json_object_set_new(root, "stamped_reads", json_integer((json_int_t)g->stamped_reads));
	json_object_set_new(root, "zero_reads", json_integer((json_int_t)g->zero_reads));
	json_object_set_new(root, "writes", json_integer((json_int_t)g->writes));
	json_object_set_new(root, "pages_touched", json_integer((json_int_t)g->pages_touched));
	json_object_set_new(root, "pages_written_now", json_integer((json_int_t)g->nwritten));
	json_object_set_new(root, "resident_pages",
			    g->resident_known ? json_integer((json_int_t)g->resident_pages) : json_null());
	json_object_set_new(root, "free_rounds", json_integer((json_int_t)g->free_rounds));
	json_object_set_new(root, "free_ranges", json_integer((json_int_t)g->free_ranges));
	json_object_set_new(root, "free_pages", json_integer((json_int_t)g->free_pages));
	json_object_set_new(root, "free_via", json_string(o->free_pct > 0 ? (o->free_hint ? "hint" : "madvise") : "none"));
	json_object_set_new(root, "pauses", json_integer((json_int_t)g->pauses));
	json_object_set_new(root, "resumes", json_integer((json_int_t)g->resumes));
	json_object_set_new(root, "drop_ptes", json_integer((json_int_t)g->drops));
	json_object_set_new(root, "drop_ptes_bytes", json_integer((json_int_t)g->drop_bytes));
	json_object_set_new(root, "migrated_in", json_boolean(g->migrated_in));
	json_object_set_new(root, "minor_faults", json_integer(g->ru1.ru_minflt - g->ru0.ru_minflt));
	json_object_set_new(root, "major_faults", json_integer(g->ru1.ru_majflt - g->ru0.ru_majflt));
	for (int i = 0; i < nps; i++)
		json_object_set_new(pst, ps[i].name, json_integer((json_int_t)ps[i].value));
	json_object_set_new(root, "pager_stats", nps > 0 ? pst : (json_decref(pst), json_null()));
	json_object_set_new(ver, "passed", json_boolean(status == EXIT_OK));
	json_object_set_new(ver, "checked_all", json_boolean(o->check && status == EXIT_OK));
	json_object_set_new(ver, "check_pages", json_integer((json_int_t)g->check_pages));
	json_object_set_new(ver, "first_error", g->failed ? json_string(g->first_error) : json_null());
	json_object_set_new(root, "verification", ver);
	json_object_set_new(root, "exit_status", json_integer(status));

	if (strcmp(o->json, "-") == 0) {
		rc = json_dumpf(root, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
		fflush(stdout);
	} else {
		rc = json_dump_file(root, o->json, JSON_INDENT(2));
	}
	json_decref(root);
	if (rc < 0)
		fprintf(stderr, "guestsim: cannot write JSON to %s\n", o->json);
	return rc;
}

int main(int argc, char **argv)
{
	struct gs g = { 0 };
	struct ferry_vmm_stat ps[FERRY_VMM_MAX_REGIONS];
	int nps = 0, status, rc;

	int nargc;
	char **nargv = normalize_json(argc, argv, &nargc);

	if (!nargv)
		return EXIT_ERR;
	rc = parse_opts(nargc, nargv, &g.o);
	free(nargv);
	if (rc)
		return rc > 0 ? EXIT_OK : EXIT_USAGE;
	if (sysconf(_SC_PAGESIZE) != GS_PAGE) {
		fprintf(stderr, "guestsim: needs 4 KiB pages\n");
		return EXIT_ERR;
	}
	g.rng = g.o.seed;
	if (g.o.timeout) {
		signal(SIGALRM, on_alarm);
		alarm(g.o.timeout);
	}
	if (setup_memory(&g) < 0) {
		teardown(&g);
		return EXIT_ERR;
	}
	g.gen = calloc(g.npages, sizeof(*g.gen));
	g.touched = calloc(g.npages, 1);
	if (!g.gen || !g.touched || setup_pattern(&g) < 0) {
		fprintf(stderr, "guestsim: out of memory or bad pattern setup\n");
		teardown(&g);
		return EXIT_ERR;
	}
	getrusage(RUSAGE_SELF, &g.ru0);
	g.ops_limit = g.o.ops;
	if (g.conn) {
		bool away = false;

		status = serve(&g, &away);
		if (away) {
			/* The VM runs elsewhere now: nothing here is ours to check or hand back. */
			fprintf(stderr, "guestsim: migrated away (pager NOTICE): exiting after %" PRIu64 " ops, "
					"%" PRIu64 " pauses\n", g.ops, g.pauses);
			ferry_vmm_close(g.conn);
			g.conn = NULL;
			teardown(&g);
			return EXIT_OK;
		}
	} else if (g.o.vcpus > 1) {
		status = run_vcpus(&g);
	} else {
		status = run_workload(&g);
	}
	getrusage(RUSAGE_SELF, &g.ru1);
	count_resident(&g);
	if (status == EXIT_OK && g.o.inject)
		inject(&g);
	if (status == EXIT_OK && g.o.check)
		status = check_all(&g);
	if (g.conn) {
		nps = ferry_vmm_stats(g.conn, ps, sizeof(ps) / sizeof(ps[0]));
		if (nps < 0)
			nps = 0;
		if (nps > (int)(sizeof(ps) / sizeof(ps[0])))
			nps = (int)(sizeof(ps) / sizeof(ps[0]));
	}
	if (status == EXIT_VERIFY)
		fprintf(stderr, "guestsim: CORRUPTION: %s\n", g.first_error);
	if (!g.o.quiet)
		summary(&g, status);
	if (g.o.json && write_json(&g, status, ps, nps) < 0 && status == EXIT_OK)
		status = EXIT_ERR;
	teardown(&g);
	return status;
}
