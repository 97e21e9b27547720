/*
 * ferry-perf migrate: one split migration of a running VM, driven through the
 * pagers' migration control sockets (dataplane/migrate/migrate_ctl.h), timed
 * and measured from both ends:
 *
 *   1. PREPARE on the main (destination) host's pager: budget, sub-hosts ->
 *      the endpoint and token the source must use;
 *   2. START on the source pager with the mode (precopy, postcopy, planned,
 *      full);
 *   3. STATUS of both ends every --poll-ms until the source reports a final
 *      phase (DONE, FAILED, ABORTED) and the destination is done too; every
 *      phase change is time-stamped (ms since START).
 *
 * Output: one JSON object (--json FILE, "-" = stdout) with the request, both
 * ends' final progress (pages sent, skipped as unused, re-sent, sent to
 * sub-hosts, bytes, post-copy faults, rounds, downtime, total time) and the
 * phase timeline; and/or one CSV row appended to --csv FILE (header written
 * when the file is new) for perf/migrate-cluster.sh and its gnuplot. --label
 * KEY=VALUE (repeatable) adds columns that describe the run (memory size,
 * used fraction, rate) without this tool knowing them.
 *
 * The VMs themselves (the source VM registered with the source pager, the
 * destination shell, e.g. guestsim --incoming, registered with the main
 * host's pager) are the caller's: this tool only drives and measures.
 *
 * Exit status: 0 the migration finished (DONE at both ends), 1 it failed or
 * timed out (the JSON says how), 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/common/units.h"
#include "dataplane/migrate/migrate_ctl.h"
#include "perf/migrate.h"
#include "perf/perf.h"

#define MAX_LABELS   16
#define MAX_TIMELINE 64

struct mg_opts {
	const char *src_ctl, *dst_ctl, *vm_id, *json, *csv;
	enum mig_mode mode;
	uint64_t budget;
	struct mig_subhost subs[MIG_SUBHOSTS_MAX];
	unsigned nsubs;
	double timeout_s;
	unsigned poll_ms;
	const char *labels[MAX_LABELS];
	unsigned nlabels;
	bool quiet;
};

struct mg_event {
	double t_ms;
	const char *side;
	enum mig_phase phase;
	uint32_t round;
};

struct mg_run {
	struct mig_endpoint ep;
	struct mig_progress src, dst;
	bool have_src, have_dst;
	double prepare_ms, start_ms, elapsed_ms;
	struct mg_event tl[MAX_TIMELINE];
	unsigned ntl;
	char error[512];
	bool ok;
};

void perf_migrate_usage(FILE *out)
{
	fputs(
"usage: ferry-perf migrate --src-ctl PATH --dst-ctl PATH --vm-id ID [options]\n"
"\n"
"Drive one split migration of VM ID from the pager whose migration control socket\n"
"is --src-ctl to the pager of --dst-ctl (the main host), and measure it from both\n"
"ends. The source VM and the destination shell (e.g. guestsim --incoming) must be\n"
"registered with their pagers already.\n"
"\n"
"  --mode MODE          precopy, postcopy, planned (default), full\n"
"  --budget SIZE        local memory the main host may hold for the VM (K/M/G; default\n"
"                       0 = no limit)\n"
"  --subhost HOST:PORT  a sub-host's memory server for the main host's cold pages\n"
"                       (repeatable, at most 8)\n"
"  --timeout SEC        give up after SEC seconds (default 300)\n"
"  --poll-ms MS         status poll period (default 20)\n"
"  --json FILE          the result as JSON (\"-\" = stdout)\n"
"  --csv FILE           append one CSV row (a header first when FILE is new)\n"
"  --label KEY=VALUE    an extra column (repeatable), e.g. --label used_pct=10\n"
"  -q, --quiet          no summary on stderr\n"
"\n"
"Exit status: 0 done, 1 failed or timed out, 2 usage.\n",
	      out);
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int usage_error(const char *what, const char *arg)
{
	fprintf(stderr, "ferry-perf migrate: %s%s%s (see --help)\n", what, arg ? ": " : "", arg ? arg : "");
	return -PERF_EXIT_USAGE;
}

static int parse_subhost(const char *s, struct mig_subhost *h)
{
	const char *colon = strrchr(s, ':');
	char *end;
	unsigned long port;

	if (!colon || colon == s || (size_t)(colon - s) >= sizeof(h->host))
		return -1;
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || *end || port == 0 || port > 65535)
		return -1;
	memcpy(h->host, s, (size_t)(colon - s));
	h->host[colon - s] = '\0';
	h->port = (uint16_t)port;
	return 0;
}

static int parse_opts(int argc, char **argv, struct mg_opts *o)
{
	enum { O_SRC = 256, O_DST, O_VM, O_MODE, O_BUDGET, O_SUB, O_TIMEOUT, O_POLL, O_JSON, O_CSV, O_LABEL };
	static const struct option lo[] = {
		{ "src-ctl", required_argument, NULL, O_SRC },   { "dst-ctl", required_argument, NULL, O_DST },
		{ "vm-id", required_argument, NULL, O_VM },      { "mode", required_argument, NULL, O_MODE },
		{ "budget", required_argument, NULL, O_BUDGET }, { "subhost", required_argument, NULL, O_SUB },
		{ "timeout", required_argument, NULL, O_TIMEOUT }, { "poll-ms", required_argument, NULL, O_POLL },
		{ "json", required_argument, NULL, O_JSON },     { "csv", required_argument, NULL, O_CSV },
		{ "label", required_argument, NULL, O_LABEL },   { "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },              { NULL, 0, NULL, 0 },
	};
	int c;

	memset(o, 0, sizeof(*o));
	o->mode = MIG_MODE_PLANNED;
	o->timeout_s = 300;
	o->poll_ms = 20;
	optind = 1;
	while ((c = getopt_long(argc, argv, "qh", lo, NULL)) != -1) {
		char *end;

		switch (c) {
		case O_SRC: o->src_ctl = optarg; break;
		case O_DST: o->dst_ctl = optarg; break;
		case O_VM: o->vm_id = optarg; break;
		case O_MODE:
			if (mig_mode_parse(optarg, &o->mode))
				return usage_error("--mode takes precopy, postcopy, planned or full, not", optarg);
			break;
		case O_BUDGET:
			if (ferry_size_parse(optarg, &o->budget) < 0)
				return usage_error("--budget needs a size", optarg);
			break;
		case O_SUB:
			if (o->nsubs == MIG_SUBHOSTS_MAX || parse_subhost(optarg, &o->subs[o->nsubs]) < 0)
				return usage_error("--subhost needs HOST:PORT (at most 8)", optarg);
			o->nsubs++;
			break;
		case O_TIMEOUT:
			o->timeout_s = strtod(optarg, &end);
			if (*end || !(o->timeout_s > 0))
				return usage_error("--timeout needs seconds", optarg);
			break;
		case O_POLL:
			o->poll_ms = (unsigned)strtoul(optarg, &end, 10);
			if (*end || o->poll_ms == 0 || o->poll_ms > 10000)
				return usage_error("--poll-ms needs 1..10000", optarg);
			break;
		case O_JSON: o->json = optarg; break;
		case O_CSV: o->csv = optarg; break;
		case O_LABEL:
			if (o->nlabels == MAX_LABELS || !strchr(optarg, '=') || optarg[0] == '=' || strchr(optarg, ','))
				return usage_error("--label needs KEY=VALUE without commas (at most 16)", optarg);
			o->labels[o->nlabels++] = optarg;
			break;
		case 'q': o->quiet = true; break;
		case 'h': perf_migrate_usage(stdout); return 1;
		default: return usage_error("bad arguments", NULL);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument", argv[optind]);
	if (!o->src_ctl || !o->dst_ctl || !o->vm_id)
		return usage_error("--src-ctl, --dst-ctl and --vm-id are needed", NULL);
	return 0;
}

static bool final_phase(enum mig_phase p)
{
	return p == MIG_PH_DONE || p == MIG_PH_FAILED || p == MIG_PH_ABORTED;
}

static void note_phase(struct mg_run *r, double t0, const char *side, const struct mig_progress *p,
		       enum mig_phase *last, uint32_t *last_round)
{
	if (p->phase == *last && p->round == *last_round)
		return;
	*last = p->phase;
	*last_round = p->round;
	if (r->ntl < MAX_TIMELINE)
		r->tl[r->ntl++] = (struct mg_event){ now_ms() - t0, side, p->phase, p->round };
}

static int run_migration(const struct mg_opts *o, struct mg_run *r)
{
	struct mig_ctl *src = NULL, *dst = NULL;
	struct ferry_err err = { 0 };
	enum mig_phase ls = MIG_PH_IDLE, ld = MIG_PH_IDLE;
	uint32_t lrs = 0, lrd = 0;
	double t0, t;
	int rc = -1;

	if (mig_ctl_connect(o->dst_ctl, &dst, &err) || mig_ctl_connect(o->src_ctl, &src, &err)) {
		snprintf(r->error, sizeof(r->error), "control socket: %s", err.msg);
		goto out;
	}
	t = now_ms();
	if (mig_ctl_prepare_incoming(dst, o->vm_id, o->budget, o->subs, o->nsubs, &r->ep, &err)) {
		snprintf(r->error, sizeof(r->error), "prepare at the destination: %s", err.msg);
		goto out;
	}
	r->prepare_ms = now_ms() - t;
	t0 = now_ms();
	if (mig_ctl_start(src, o->vm_id, &r->ep, o->mode, &err)) {
		snprintf(r->error, sizeof(r->error), "start at the source: %s", err.msg);
		goto out;
	}
	r->start_ms = now_ms() - t0;
	for (;;) {
		bool src_final, dst_final;

		if (mig_ctl_status(src, o->vm_id, &r->src, &err) == 0) {
			r->have_src = true;
			note_phase(r, t0, "source", &r->src, &ls, &lrs);
		}
		if (mig_ctl_status(dst, o->vm_id, &r->dst, &err) == 0) {
			r->have_dst = true;
			note_phase(r, t0, "destination", &r->dst, &ld, &lrd);
		}
		src_final = r->have_src && final_phase(r->src.phase);
		dst_final = r->have_dst && final_phase(r->dst.phase);
		/* Post-copy ends at the destination; a failed source ends it all. */
		if (src_final && (dst_final || r->src.phase != MIG_PH_DONE))
			break;
		if (now_ms() - t0 > o->timeout_s * 1e3) {
			snprintf(r->error, sizeof(r->error), "timed out after %.0f s (source %s, destination %s)",
				 o->timeout_s, r->have_src ? mig_phase_name(r->src.phase) : "?",
				 r->have_dst ? mig_phase_name(r->dst.phase) : "?");
			(void)mig_ctl_abort(src, o->vm_id, &err);
			goto out;
		}
		usleep(o->poll_ms * 1000u);
	}
	r->elapsed_ms = now_ms() - t0;
	r->ok = r->src.phase == MIG_PH_DONE && (!r->have_dst || r->dst.phase == MIG_PH_DONE);
	if (!r->ok)
		snprintf(r->error, sizeof(r->error), "source %s%s%.200s, destination %s%s%.200s", mig_phase_name(r->src.phase),
			 r->src.error[0] ? ": " : "", r->src.error, r->have_dst ? mig_phase_name(r->dst.phase) : "?",
			 r->dst.error[0] ? ": " : "", r->dst.error);
	rc = r->ok ? 0 : -1;
out:
	mig_ctl_close(src);
	mig_ctl_close(dst);
	return rc;
}

static json_t *progress_json(const struct mig_progress *p)
{
	json_t *o = json_object();

	json_object_set_new(o, "phase", json_string(mig_phase_name(p->phase)));
	json_object_set_new(o, "rounds", json_integer(p->round));
	json_object_set_new(o, "pages_total", json_integer((json_int_t)p->pages_total));
	json_object_set_new(o, "pages_sent", json_integer((json_int_t)p->pages_sent));
	json_object_set_new(o, "pages_skipped_unused", json_integer((json_int_t)p->pages_skipped_unused));
	json_object_set_new(o, "pages_remaining", json_integer((json_int_t)p->pages_remaining));
	json_object_set_new(o, "pages_resent", json_integer((json_int_t)p->pages_resent));
	json_object_set_new(o, "pages_to_subhosts", json_integer((json_int_t)p->pages_to_subhosts));
	json_object_set_new(o, "bytes_sent", json_integer((json_int_t)p->bytes_sent));
	json_object_set_new(o, "postcopy_faults", json_integer((json_int_t)p->postcopy_faults));
	json_object_set_new(o, "downtime_ms", json_real((double)p->downtime_ns / 1e6));
	json_object_set_new(o, "total_ms", json_real((double)p->total_ns / 1e6));
	json_object_set_new(o, "error", p->error[0] ? json_string(p->error) : json_null());
	return o;
}

static int write_json(const struct mg_opts *o, const struct mg_run *r)
{
	json_t *root = json_object(), *labels = json_object(), *tl = json_array();
	int rc;

	json_object_set_new(root, "tool", json_string("ferry-perf migrate"));
	json_object_set_new(root, "vm_id", json_string(o->vm_id));
	json_object_set_new(root, "mode", json_string(mig_mode_name(o->mode)));
	json_object_set_new(root, "budget_bytes", json_integer((json_int_t)o->budget));
	json_object_set_new(root, "subhosts", json_integer(o->nsubs));
	for (unsigned i = 0; i < o->nlabels; i++) {
		const char *eq = strchr(o->labels[i], '=');
		char key[64];

		snprintf(key, sizeof(key), "%.*s", (int)(eq - o->labels[i]), o->labels[i]);
		json_object_set_new(labels, key, json_string(eq + 1));
	}
	json_object_set_new(root, "labels", labels);
	json_object_set_new(root, "ok", json_boolean(r->ok));
	json_object_set_new(root, "error", r->error[0] ? json_string(r->error) : json_null());
	json_object_set_new(root, "prepare_ms", json_real(r->prepare_ms));
	json_object_set_new(root, "elapsed_ms", json_real(r->elapsed_ms));
	json_object_set_new(root, "source", r->have_src ? progress_json(&r->src) : json_null());
	json_object_set_new(root, "destination", r->have_dst ? progress_json(&r->dst) : json_null());
	for (unsigned i = 0; i < r->ntl; i++) {
		json_t *e = json_object();

		json_object_set_new(e, "t_ms", json_real(r->tl[i].t_ms));
		json_object_set_new(e, "side", json_string(r->tl[i].side));
		json_object_set_new(e, "phase", json_string(mig_phase_name(r->tl[i].phase)));
		json_object_set_new(e, "round", json_integer(r->tl[i].round));
		json_array_append_new(tl, e);
	}
	json_object_set_new(root, "timeline", tl);
	if (strcmp(o->json, "-") == 0) {
		rc = json_dumpf(root, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
		fflush(stdout);
	} else {
		rc = json_dump_file(root, o->json, JSON_INDENT(2));
	}
	json_decref(root);
	return rc;
}

static int write_csv(const struct mg_opts *o, const struct mg_run *r)
{
	struct stat st;
	bool fresh = stat(o->csv, &st) != 0 || st.st_size == 0;
	FILE *f = fopen(o->csv, "a");
	static const struct mig_progress none;
	const struct mig_progress *s = &r->src, *d = r->have_dst ? &r->dst : &none;

	if (!f)
		return -1;
	if (fresh) {
		for (unsigned i = 0; i < o->nlabels; i++)
			fprintf(f, "%.*s,", (int)(strchr(o->labels[i], '=') - o->labels[i]), o->labels[i]);
		fputs("vm_id,mode,ok,budget_bytes,subhosts,elapsed_ms,total_ms,downtime_ms,rounds,pages_total,"
		      "pages_sent,pages_skipped_unused,pages_resent,pages_to_subhosts,bytes_sent,postcopy_faults,"
		      "dst_pages_sent,dst_pages_to_subhosts,dst_bytes_sent,dst_downtime_ms,pages_moved\n",
		      f);
	}
	for (unsigned i = 0; i < o->nlabels; i++)
		fprintf(f, "%s,", strchr(o->labels[i], '=') + 1);
	/* Page data may be pushed by the source or pulled (one-sided) by the destination: count it once. */
	fprintf(f, "%s,%s,%d,%" PRIu64 ",%u,%.3f,%.3f,%.3f,%u,%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64
		   ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%.3f,%" PRIu64 "\n",
		o->vm_id, mig_mode_name(o->mode), r->ok, o->budget, o->nsubs, r->elapsed_ms, (double)s->total_ns / 1e6,
		(double)s->downtime_ns / 1e6, s->round, s->pages_total, s->pages_sent, s->pages_skipped_unused,
		s->pages_resent, s->pages_to_subhosts, s->bytes_sent,
		r->have_dst ? r->dst.postcopy_faults : s->postcopy_faults, d->pages_sent, d->pages_to_subhosts,
		d->bytes_sent, (double)d->downtime_ns / 1e6,
		s->pages_sent > d->pages_sent ? s->pages_sent : d->pages_sent);
	return fclose(f);
}

int perf_migrate_main(int argc, char **argv)
{
	struct mg_opts o;
	static struct mg_run r;
	int rc = parse_opts(argc, argv, &o);

	if (rc)
		return rc > 0 ? PERF_EXIT_OK : -rc;
	rc = run_migration(&o, &r);
	if (!o.quiet) {
		const struct mig_progress *s = &r.src;

		fprintf(stderr, "ferry-perf migrate: %s %s: %s in %.0f ms", o.vm_id, mig_mode_name(o.mode),
			r.ok ? "done" : "FAILED", r.elapsed_ms);
		if (r.have_src)
			fprintf(stderr, ", downtime %.1f ms, %u rounds, %" PRIu64 " of %" PRIu64 " pages sent (%" PRIu64
					" unused skipped, %" PRIu64 " re-sent, %" PRIu64 " to sub-hosts), %.1f MiB",
				(double)s->downtime_ns / 1e6, s->round, s->pages_sent, s->pages_total, s->pages_skipped_unused,
				s->pages_resent, s->pages_to_subhosts, (double)s->bytes_sent / 1048576.0);
		if (r.error[0])
			fprintf(stderr, "\n  %s", r.error);
		fputc('\n', stderr);
	}
	if (o.json && write_json(&o, &r) < 0)
		fprintf(stderr, "ferry-perf migrate: cannot write %s\n", o.json);
	if (o.csv && write_csv(&o, &r) < 0)
		fprintf(stderr, "ferry-perf migrate: cannot append to %s\n", o.csv);
	return rc == 0 ? PERF_EXIT_OK : PERF_EXIT_ERROR;
}
