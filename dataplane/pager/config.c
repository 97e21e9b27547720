/*
 * ferry-pager configuration: INI file + flags (same scheme as ferry-memsrv,
 * dataplane/common/daemon_opts.c: flags are applied after the file, so they
 * always win).
 */
#include "dataplane/pager/config.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/common/daemon_opts.h"
#include "dataplane/common/ferry_log.h"
#include "dataplane/common/units.h"

#ifndef FERRY_PAGER_VERSION
#define FERRY_PAGER_VERSION "dev"
#endif

void pager_config_defaults(struct pager_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->socket, sizeof(cfg->socket), "%s", PAGER_DEFAULT_SOCKET);
	cfg->log_level = -1;
	cfg->transport = FX_KIND_TCP;
	cfg->extent_size = PAGER_DEFAULT_EXTENT;
	cfg->prefetch = PAGER_DEFAULT_PREFETCH;
	cfg->poll_us = PAGER_DEFAULT_POLL_US;
	cfg->pageout_batch = PAGER_DEFAULT_PAGEOUT_BATCH;
	snprintf(cfg->mig_listen, sizeof(cfg->mig_listen), "0.0.0.0");
	cfg->plan_period_ms = 500;
	cfg->plan_block_pages = 16;
	cfg->plan_window = 1;
	cfg->plan_periods = 4;
	cfg->plan_history = 4;
	cfg->mig_stage_bytes = UINT64_C(64) << 20;
}

static int copy_str(char *dst, size_t cap, const char *value, int allow_empty)
{
	size_t len = strlen(value);

	if ((!allow_empty && len == 0) || len >= cap)
		return -EINVAL;
	memcpy(dst, value, len + 1);
	return 0;
}

/* "host:port[, host:port ...]" */
static int parse_servers(struct pager_config *cfg, const char *value)
{
	char buf[1024], *save = NULL, *tok;
	unsigned n = 0;

	if (strlen(value) >= sizeof(buf))
		return -EINVAL;
	snprintf(buf, sizeof(buf), "%s", value);
	for (tok = strtok_r(buf, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
		char *colon = strrchr(tok, ':');
		uint64_t port;

		if (!colon || colon == tok || n >= PAGER_MAX_SERVERS)
			return -EINVAL;
		*colon = '\0';
		if (daemon_parse_uint(colon + 1, 65535, &port) || port == 0 || strlen(tok) >= sizeof(cfg->servers[0].host))
			return -EINVAL;
		snprintf(cfg->servers[n].host, sizeof(cfg->servers[n].host), "%s", tok);
		cfg->servers[n].port = (uint16_t)port;
		n++;
	}
	cfg->nservers = n;
	return 0;
}

#define BAD(fmt, ...) ferry_err_set(err, EINVAL, "%s: [%s] %s: " fmt, origin, section, key, ##__VA_ARGS__)

static int set_pager(struct pager_config *cfg, const char *section, const char *key, const char *value,
		     const char *origin, struct ferry_err *err)
{
	if (strcmp(key, "socket") == 0) {
		if (copy_str(cfg->socket, sizeof(cfg->socket), value, 0))
			return BAD("path empty or longer than %zu bytes", sizeof(cfg->socket) - 1);
	} else if (strcmp(key, "fc_socket") == 0) {
		if (copy_str(cfg->fc_socket, sizeof(cfg->fc_socket), value, 1))
			return BAD("path longer than %zu bytes", sizeof(cfg->fc_socket) - 1);
	} else if (strcmp(key, "snapshot_file") == 0) {
		if (copy_str(cfg->snapshot_file, sizeof(cfg->snapshot_file), value, 1))
			return BAD("path too long");
	} else if (strcmp(key, "allow") == 0) {
		struct ferry_vmmp_allow a;

		if (ferry_vmmp_allow_parse(value, &a) != FERRY_VMMP_E_OK || strlen(value) >= sizeof(cfg->allow_text))
			return BAD("'%s' is not an allow-list (e.g. \"uid:0, gid:994\", at most %u entries)", value,
				   FERRY_VMMP_ALLOW_MAX);
		cfg->allow = a;
		snprintf(cfg->allow_text, sizeof(cfg->allow_text), "%s", value);
	} else if (strcmp(key, "log_level") == 0) {
		return daemon_set_log_level(&cfg->log_level, value, origin, section, key, err);
	} else if (strcmp(key, "poll_us") == 0) {
		uint64_t v;

		if (daemon_parse_uint(value, PAGER_MAX_POLL_US, &v))
			return BAD("'%s' is not a time in microseconds (0..%d)", value, PAGER_MAX_POLL_US);
		cfg->poll_us = (uint32_t)v;
	} else {
		return ferry_err_set(err, EINVAL,
				     "%s: unknown key '%s' in section [pager] "
				     "(known: socket, fc_socket, snapshot_file, allow, log_level, poll_us)", origin, key);
	}
	return 0;
}

static int set_pool(struct pager_config *cfg, const char *section, const char *key, const char *value,
		    const char *origin, struct ferry_err *err)
{
	uint64_t v;

	if (strcmp(key, "servers") == 0) {
		if (parse_servers(cfg, value))
			return BAD("'%s' is not a list of host:port (at most %d, comma separated)", value,
				   PAGER_MAX_SERVERS);
	} else if (strcmp(key, "secret_file") == 0) {
		return daemon_set_path(cfg->secret_file, sizeof(cfg->secret_file), value, origin, section, key, err);
	} else if (strcmp(key, "transport") == 0) {
		return daemon_set_transport(&cfg->transport, value, origin, section, key, err);
	} else if (strcmp(key, "extent_size") == 0) {
		if (ferry_size_parse(value, &v) || v == 0 || v % 4096 || v > (UINT64_C(1) << 40))
			return BAD("'%s' is not a size in whole 4 KiB pages (e.g. 16M)", value);
		cfg->extent_size = v;
	} else {
		return ferry_err_set(err, EINVAL,
				     "%s: unknown key '%s' in section [pool] "
				     "(known: servers, secret_file, transport, extent_size)", origin, key);
	}
	return 0;
}

static int set_paging(struct pager_config *cfg, const char *section, const char *key, const char *value,
		      const char *origin, struct ferry_err *err)
{
	uint64_t v;

	if (strcmp(key, "vm_budget") == 0) {
		if (ferry_size_parse(value, &v) || v % 4096)
			return BAD("'%s' is not a size in whole 4 KiB pages (0 = unlimited)", value);
		cfg->vm_budget = v;
	} else if (strcmp(key, "prefetch") == 0) {
		if (daemon_parse_uint(value, PAGER_MAX_PREFETCH, &v))
			return BAD("'%s' is not a page count (0..%d)", value, PAGER_MAX_PREFETCH);
		cfg->prefetch = (uint32_t)v;
	} else if (strcmp(key, "pageout_batch") == 0) {
		if (daemon_parse_uint(value, PAGER_MAX_PAGEOUT_BATCH, &v) || v == 0)
			return BAD("'%s' is not a page count (1..%d)", value, PAGER_MAX_PAGEOUT_BATCH);
		cfg->pageout_batch = (uint32_t)v;
	} else {
		return ferry_err_set(err, EINVAL,
				     "%s: unknown key '%s' in section [paging] (known: vm_budget, prefetch, pageout_batch)",
				     origin, key);
	}
	return 0;
}
#undef BAD

static int set_migrate(struct pager_config *cfg, const char *key, const char *value, const char *origin,
		       struct ferry_err *err)
{
	if (strcmp(key, "socket") == 0) {
		if (strlen(value) >= sizeof(cfg->mig_socket))
			return ferry_err_set(err, EINVAL, "%s: [migrate] socket: path longer than %zu bytes", origin,
					     sizeof(cfg->mig_socket) - 1);
		snprintf(cfg->mig_socket, sizeof(cfg->mig_socket), "%s", value);
	} else if (strcmp(key, "listen") == 0 || strcmp(key, "advertise") == 0) {
		char *dst = key[0] == 'l' ? cfg->mig_listen : cfg->mig_advertise;

		if (!value[0] || strlen(value) >= sizeof(cfg->mig_listen) || strpbrk(value, " \t/"))
			return ferry_err_set(err, EINVAL, "%s: [migrate] %s: \"%s\" is not a host address", origin, key,
					     value);
		snprintf(dst, sizeof(cfg->mig_listen), "%s", value);
	} else if (strcmp(key, "port") == 0) {
		char *end;
		unsigned long v = strtoul(value, &end, 10);

		if (!value[0] || *end || v > 65535)
			return ferry_err_set(err, EINVAL, "%s: [migrate] port: \"%s\" is not a port (0..65535)", origin,
					     value);
		cfg->mig_port = (uint16_t)v;
	} else if (strcmp(key, "plan_continuous") == 0) {
		if (strcmp(value, "0") != 0 && strcmp(value, "1") != 0)
			return ferry_err_set(err, EINVAL, "%s: [migrate] plan_continuous: \"%s\" is not 0 or 1", origin,
					     value);
		cfg->plan_continuous = value[0] == '1';
	} else if (strncmp(key, "plan_", 5) == 0) {
		static const struct { const char *key; uint64_t max; size_t off; } plan_keys[] = {
			{ "plan_period_ms", 60000, offsetof(struct pager_config, plan_period_ms) },
			{ "plan_block_pages", 4096, offsetof(struct pager_config, plan_block_pages) },
			{ "plan_window", 64, offsetof(struct pager_config, plan_window) },
			{ "plan_periods", 1000, offsetof(struct pager_config, plan_periods) },
			{ "plan_history", 64, offsetof(struct pager_config, plan_history) },
		};
		uint64_t v;

		for (size_t i = 0; i < sizeof(plan_keys) / sizeof(plan_keys[0]); i++) {
			if (strcmp(key, plan_keys[i].key) != 0)
				continue;
			if (daemon_parse_uint(value, plan_keys[i].max, &v) || v == 0)
				return ferry_err_set(err, EINVAL, "%s: [migrate] %s: \"%s\" is not a number 1..%llu", origin,
						     key, value, (unsigned long long)plan_keys[i].max);
			*(uint32_t *)((char *)cfg + plan_keys[i].off) = (uint32_t)v;
			return 0;
		}
		return ferry_err_set(err, EINVAL, "%s: [migrate] %s: unknown key (known: plan_period_ms, plan_block_pages, "
				     "plan_window, plan_periods, plan_history, plan_continuous)", origin, key);
	} else if (strcmp(key, "stage_size") == 0) {
		uint64_t v;

		/* One batch of pages at least; at most what the protocol can name (MIGP_STAGE_MAX slots). */
		if (ferry_size_parse(value, &v) || v % 4096 || v < (UINT64_C(1) << 20) || v > (UINT64_C(1) << 30))
			return ferry_err_set(err, EINVAL,
					     "%s: [migrate] stage_size: '%s' is not a size in whole 4 KiB pages "
					     "from 1M to 1G", origin, value);
		cfg->mig_stage_bytes = v;
	} else {
		return ferry_err_set(err, EINVAL,
				     "%s: [migrate] %s: unknown key (known: socket, listen, advertise, port, stage_size, "
				     "plan_*)",
				     origin, key);
	}
	return 0;
}

int pager_config_set(struct pager_config *cfg, const char *section, const char *key, const char *value,
		     const char *origin, struct ferry_err *err)
{
	if (strcmp(section, "pager") == 0)
		return set_pager(cfg, section, key, value, origin, err);
	if (strcmp(section, "pool") == 0)
		return set_pool(cfg, section, key, value, origin, err);
	if (strcmp(section, "migrate") == 0)
		return set_migrate(cfg, key, value, origin, err);
	if (strcmp(section, "paging") == 0)
		return set_paging(cfg, section, key, value, origin, err);
	return ferry_err_set(err, EINVAL, "%s: unknown section [%s] with key '%s' (known: pager, pool, paging)",
			     origin, section, key);
}

static int set_cb(void *cfg, const char *section, const char *key, const char *value, const char *origin,
		  struct ferry_err *err)
{
	return pager_config_set(cfg, section, key, value, origin, err);
}

int pager_config_load_file(struct pager_config *cfg, const char *path, struct ferry_err *err)
{
	const struct daemon_ini ini = {
		.set = set_cb, .cfg = cfg, .key_errors_first = true,
		.loaded_path = cfg->config_file, .loaded_path_cap = sizeof(cfg->config_file),
	};

	return daemon_ini_load(&ini, path, err);
}

int pager_config_validate(struct pager_config *cfg, struct ferry_err *err)
{
	const char *from = cfg->config_file[0] ? cfg->config_file : "command line";

	if (cfg->allow.count == 0)
		return ferry_err_set(err, EINVAL,
				     "%s: no allow-list: set [pager] allow or --allow (e.g. \"uid:0\"): "
				     "the uids/gids whose processes may register VMs", from);
	if (cfg->mig_socket[0] && !cfg->secret_file[0])
		return ferry_err_set(err, EINVAL,
				     "%s: migrations configured ([migrate] socket) but no secret file: set [pool] "
				     "secret_file or --secret-file", from);
	if (cfg->nservers && !cfg->secret_file[0])
		return ferry_err_set(err, EINVAL,
				     "%s: memory servers configured but no secret file: set [pool] secret_file "
				     "or --secret-file", from);
	return 0;
}

static const struct daemon_flag flags[] = {
	{ "socket",        'S',              "pager",  "socket" },
	{ "fc-socket",     'F',              "pager",  "fc_socket" },
	{ "snapshot-file", DAEMON_OPTS_LONG_ONLY + 0, "pager",  "snapshot_file" },
	{ "allow",         'a',              "pager",  "allow" },
	{ "log-level",     DAEMON_OPTS_LONG_ONLY + 1, "pager",  "log_level" },
	{ "poll-us",       DAEMON_OPTS_LONG_ONLY + 15, "pager",  "poll_us" },
	{ "servers",       'm',              "pool",   "servers" },
	{ "secret-file",   's',              "pool",   "secret_file" },
	{ "transport",     't',              "pool",   "transport" },
	{ "extent-size",   DAEMON_OPTS_LONG_ONLY + 2, "pool",   "extent_size" },
	{ "vm-budget",     'b',              "paging", "vm_budget" },
	{ "prefetch",      'p',              "paging", "prefetch" },
	{ "pageout-batch", DAEMON_OPTS_LONG_ONLY + 3, "paging", "pageout_batch" },
	{ "migrate-socket", DAEMON_OPTS_LONG_ONLY + 4, "migrate", "socket" },
	{ "migrate-listen", DAEMON_OPTS_LONG_ONLY + 5, "migrate", "listen" },
	{ "migrate-advertise", DAEMON_OPTS_LONG_ONLY + 6, "migrate", "advertise" },
	{ "migrate-port",  DAEMON_OPTS_LONG_ONLY + 7, "migrate", "port" },
	{ "plan-period-ms", DAEMON_OPTS_LONG_ONLY + 8, "migrate", "plan_period_ms" },
	{ "plan-block-pages", DAEMON_OPTS_LONG_ONLY + 9, "migrate", "plan_block_pages" },
	{ "plan-window",   DAEMON_OPTS_LONG_ONLY + 10, "migrate", "plan_window" },
	{ "plan-periods",  DAEMON_OPTS_LONG_ONLY + 11, "migrate", "plan_periods" },
	{ "plan-history",  DAEMON_OPTS_LONG_ONLY + 12, "migrate", "plan_history" },
	{ "migrate-stage-size", DAEMON_OPTS_LONG_ONLY + 13, "migrate", "stage_size" },
	{ "plan-continuous", DAEMON_OPTS_LONG_ONLY + 14, "migrate", "plan_continuous" },
};
#define NFLAGS (sizeof(flags) / sizeof(flags[0]))

void pager_config_usage(FILE *out, const char *prog)
{
	fprintf(out,
		"Usage: %s [-c FILE] [OPTIONS]\n"
		"Ferry pager: the VMM backend. VMMs hand it their userfaultfd and guest memory over\n"
		"a Unix socket (docs/vmm-protocol.md, libferry-vmm); it answers faults on unused\n"
		"pages with zero pages, fetches paged-out pages from the memory pool, and pages\n"
		"cold pages out to the pool under a per-VM budget. A second socket speaks the\n"
		"Firecracker UFFD handshake and serves a snapshot memory file.\n"
		"\n"
		"  -c, --config FILE          INI file; flags override it\n"
		"  -h, --help                 this text\n"
		"  -V, --version              print the version\n"
		"\n"
		"Every key below can be set in the file or by its flag:\n"
		"[pager]\n"
		"  socket        -S, --socket PATH         VMM protocol socket (default %s;\n"
		"                                          \"@name\" = abstract namespace)\n"
		"  fc_socket     -F, --fc-socket PATH      Firecracker UFFD socket (default: none)\n"
		"  snapshot_file     --snapshot-file PATH  Firecracker snapshot memory file served\n"
		"                                          read-only (default: none = zero pages)\n"
		"  allow         -a, --allow LIST          who may connect: \"uid:N, gid:M, ...\" checked\n"
		"                                          against SO_PEERCRED (required; root is not implied)\n"
		"  log_level         --log-level LEVEL     error, warn, info or debug (default info)\n"
		"  poll_us           --poll-us N           keep polling this long after an event before\n"
		"                                          sleeping: a vCPU waits on every fault, and a\n"
		"                                          sleeping loop is slow to wake (default %d, 0 = off)\n"
		"[pool]\n"
		"  servers       -m, --servers LIST        memory servers \"host:port,host:port\" (default:\n"
		"                                          none = no page-out)\n"
		"  secret_file   -s, --secret-file PATH    cluster secret (required with servers)\n"
		"  transport     -t, --transport KIND      tcp or rdma (default tcp)\n"
		"  extent_size       --extent-size SIZE    bytes per pool allocation (default 16M)\n"
		"[paging]\n"
		"  vm_budget     -b, --vm-budget SIZE      resident bytes per VM before page-out\n"
		"                                          (default 0 = unlimited)\n"
		"  prefetch      -p, --prefetch N          pages fetched ahead of a sequential fault\n"
		"                                          (default %d, 0 = off, at most %d)\n"
		"  pageout_batch     --pageout-batch N     pages per page-out batch (default %d, 1..%d)\n"
		"[migrate]\n"
		"  socket            --migrate-socket PATH control socket for migrations (ferryd; same\n"
		"                                          allow-list; default: none = no migrations)\n"
		"  listen            --migrate-listen IP   address incoming migrations are accepted on\n"
		"                                          (default 0.0.0.0)\n"
		"  advertise         --migrate-advertise H host sources are told to connect to\n"
		"                                          (default: the listen address)\n"
		"  port              --migrate-port N      incoming stream port (default 0 = any)\n"
		"  plan_period_ms    --plan-period-ms N    planned migrations: access-sampler period (500)\n"
		"  plan_block_pages  --plan-block-pages N  pages per planner block (16)\n"
		"  plan_window       --plan-window N       sample periods per prediction window (1)\n"
		"  plan_periods      --plan-periods N      periods sampled before the push (4)\n"
		"  plan_history      --plan-history N      periods the predictor looks back (4: every\n"
		"                                          sampled one; 1 = the seed's predictor)\n"
		"  plan_continuous   --plan-continuous 0|1 sample every VM all the time; a planned\n"
		"                                          migration then plans at its next period end (0)\n"
		"  stage_size        --migrate-stage-size S staging ring an incoming migration registers\n"
		"                                          for the pages in flight (default 64M, 1M..1G;\n"
		"                                          VM memory itself is never registered)\n"
		"\n"
		"Page-out needs the guest RAM in a memory file (memfd/shm) and regions registered\n"
		"with MODE_WP on a uffd without UFFD_FEATURE_WP_ASYNC; otherwise it is refused\n"
		"for that VM (logged, counter pageout_refused). Per-VM counters: STATS request.\n"
		"SIGTERM or SIGINT shut the pager down cleanly (exit 0; remote pages are returned to\n"
		"their VMs first); SIGUSR1 logs the counters. Exit 1 = failure, 2 = bad config.\n",
		prog, PAGER_DEFAULT_SOCKET, PAGER_DEFAULT_POLL_US, PAGER_DEFAULT_PREFETCH, PAGER_MAX_PREFETCH, PAGER_DEFAULT_PAGEOUT_BATCH,
		PAGER_MAX_PAGEOUT_BATCH);
}

static int load_cb(void *cfg, const char *path, struct ferry_err *err)
{
	return pager_config_load_file(cfg, path, err);
}

int pager_config_from_args(struct pager_config *cfg, int argc, char **argv, FILE *out, struct ferry_err *err)
{
	static const struct daemon_cli cli = {
		.prog = "ferry-pager", .version = FERRY_PAGER_VERSION, .flags = flags, .nflags = NFLAGS,
		.usage = pager_config_usage, .load_file = load_cb, .set = set_cb,
	};
	int rc;

	pager_config_defaults(cfg);
	rc = daemon_opts_parse(&cli, cfg, argc, argv, out, err);
	return rc ? rc : pager_config_validate(cfg, err);
}

void pager_config_log(const struct pager_config *cfg)
{
	char budget[FERRY_SIZE_STR], ext[FERRY_SIZE_STR], servers[PAGER_MAX_SERVERS * 72] = "";
	size_t off = 0;

	for (unsigned i = 0; i < cfg->nservers && off < sizeof(servers); i++)
		off += (size_t)snprintf(servers + off, sizeof(servers) - off, "%s%s:%u", i ? "," : "",
					cfg->servers[i].host, cfg->servers[i].port);
	LOG_INFO("config: file=%s socket=%s fc_socket=%s snapshot_file=%s allow=\"%s\" servers=%s transport=%s "
		 "extent_size=%s vm_budget=%s prefetch=%u pageout_batch=%u poll_us=%u",
		 cfg->config_file[0] ? cfg->config_file : "-", cfg->socket, cfg->fc_socket[0] ? cfg->fc_socket : "-",
		 cfg->snapshot_file[0] ? cfg->snapshot_file : "-", cfg->allow_text, servers[0] ? servers : "-",
		 cfg->transport == FX_KIND_RDMA ? "rdma" : "tcp", ferry_size_format(cfg->extent_size, ext, sizeof(ext)),
		 cfg->vm_budget ? ferry_size_format(cfg->vm_budget, budget, sizeof(budget)) : "unlimited",
		 cfg->prefetch, cfg->pageout_batch, cfg->poll_us);
}
