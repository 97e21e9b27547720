/*
 * ferry-pager configuration: INI file + flags (same scheme as ferry-memsrv:
 * flags are collected first and applied after the file, so they always win).
 */
#include "dataplane/pager/config.h"

#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/memsrv/units.h"

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
	cfg->pageout_batch = PAGER_DEFAULT_PAGEOUT_BATCH;
}

static int parse_uint(const char *value, uint64_t max, uint64_t *out)
{
	char *end;

	if (!value[0] || value[0] == '-' || value[0] == '+' || value[0] == ' ')
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(value, &end, 10);

	if (errno || *end || v > max)
		return -EINVAL;
	*out = v;
	return 0;
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
		if (parse_uint(colon + 1, 65535, &port) || port == 0 || strlen(tok) >= sizeof(cfg->servers[0].host))
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
		int lvl = ferry_log_parse_level(value);

		if (lvl < 0)
			return BAD("'%s' is not a log level (error, warn, info or debug)", value);
		cfg->log_level = lvl;
	} else {
		return ferry_err_set(err, EINVAL,
				     "%s: unknown key '%s' in section [pager] "
				     "(known: socket, fc_socket, snapshot_file, allow, log_level)", origin, key);
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
		if (copy_str(cfg->secret_file, sizeof(cfg->secret_file), value, 0))
			return BAD("path empty or too long");
	} else if (strcmp(key, "transport") == 0) {
		if (strcmp(value, "tcp") == 0)
			cfg->transport = FX_KIND_TCP;
		else if (strcmp(value, "rdma") == 0)
			cfg->transport = FX_KIND_RDMA;
		else
			return BAD("'%s' is not a transport (tcp or rdma)", value);
	} else if (strcmp(key, "extent_size") == 0) {
		if (memsrv_size_parse(value, &v) || v == 0 || v % 4096 || v > (UINT64_C(1) << 40))
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
		if (memsrv_size_parse(value, &v) || v % 4096)
			return BAD("'%s' is not a size in whole 4 KiB pages (0 = unlimited)", value);
		cfg->vm_budget = v;
	} else if (strcmp(key, "prefetch") == 0) {
		if (parse_uint(value, PAGER_MAX_PREFETCH, &v))
			return BAD("'%s' is not a page count (0..%d)", value, PAGER_MAX_PREFETCH);
		cfg->prefetch = (uint32_t)v;
	} else if (strcmp(key, "pageout_batch") == 0) {
		if (parse_uint(value, PAGER_MAX_PAGEOUT_BATCH, &v) || v == 0)
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

int pager_config_set(struct pager_config *cfg, const char *section, const char *key, const char *value,
		     const char *origin, struct ferry_err *err)
{
	if (strcmp(section, "pager") == 0)
		return set_pager(cfg, section, key, value, origin, err);
	if (strcmp(section, "pool") == 0)
		return set_pool(cfg, section, key, value, origin, err);
	if (strcmp(section, "paging") == 0)
		return set_paging(cfg, section, key, value, origin, err);
	return ferry_err_set(err, EINVAL, "%s: unknown section [%s] with key '%s' (known: pager, pool, paging)",
			     origin, section, key);
}

struct ini_state {
	struct pager_config *cfg;
	const char *path;
	FILE *file;
	int line, err_line;
	struct ferry_err first;
};

/* Counts lines so that errors can name theirs (Debian's inih lacks INI_HANDLER_LINENO). */
static char *ini_read_line(char *str, int num, void *stream)
{
	struct ini_state *st = stream;

	if (!fgets(str, num, st->file))
		return NULL;
	st->line++;
	return str;
}

static int ini_handler_cb(void *user, const char *section, const char *name, const char *value)
{
	struct ini_state *st = user;
	char origin[PATH_MAX + 16];

	if (st->err_line)
		return 1;
	snprintf(origin, sizeof(origin), "%s:%d", st->path, st->line);
	if (pager_config_set(st->cfg, section, name, value, origin, &st->first)) {
		st->err_line = st->line;
		return 0;
	}
	return 1;
}

int pager_config_load_file(struct pager_config *cfg, const char *path, struct ferry_err *err)
{
	struct ini_state st = { .cfg = cfg, .path = path };
	int rc;

	st.file = fopen(path, "re");
	if (!st.file)
		return ferry_err_set(err, errno, "config file %s: %s", path, strerror(errno));
	rc = ini_parse_stream(ini_read_line, &st, ini_handler_cb, &st);
	fclose(st.file);
	if (st.err_line) {
		*err = st.first;
		return err->code ? err->code : -EINVAL;
	}
	if (rc > 0)
		return ferry_err_set(err, EINVAL, "%s:%d: syntax error (expected '[section]' or 'key = value')", path, rc);
	if (rc < 0)
		return ferry_err_set(err, EIO, "config file %s: cannot be parsed (inih error %d)", path, rc);
	snprintf(cfg->config_file, sizeof(cfg->config_file), "%s", path);
	return 0;
}

int pager_config_validate(struct pager_config *cfg, struct ferry_err *err)
{
	const char *from = cfg->config_file[0] ? cfg->config_file : "command line";

	if (cfg->allow.count == 0)
		return ferry_err_set(err, EINVAL,
				     "%s: no allow-list: set [pager] allow or --allow (e.g. \"uid:0\"): "
				     "the uids/gids whose processes may register VMs", from);
	if (cfg->nservers && !cfg->secret_file[0])
		return ferry_err_set(err, EINVAL,
				     "%s: memory servers configured but no secret file: set [pool] secret_file "
				     "or --secret-file", from);
	return 0;
}

struct flag {
	const char *name;
	int val;
	const char *section, *key;
};

enum { OPT_HELP = 'h', OPT_VERSION = 'V', OPT_CONFIG = 'c', OPT_KEY_BASE = 1000 };

static const struct flag flags[] = {
	{ "socket",        'S',              "pager",  "socket" },
	{ "fc-socket",     'F',              "pager",  "fc_socket" },
	{ "snapshot-file", OPT_KEY_BASE + 0, "pager",  "snapshot_file" },
	{ "allow",         'a',              "pager",  "allow" },
	{ "log-level",     OPT_KEY_BASE + 1, "pager",  "log_level" },
	{ "servers",       'm',              "pool",   "servers" },
	{ "secret-file",   's',              "pool",   "secret_file" },
	{ "transport",     't',              "pool",   "transport" },
	{ "extent-size",   OPT_KEY_BASE + 2, "pool",   "extent_size" },
	{ "vm-budget",     'b',              "paging", "vm_budget" },
	{ "prefetch",      'p',              "paging", "prefetch" },
	{ "pageout-batch", OPT_KEY_BASE + 3, "paging", "pageout_batch" },
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
		"\n"
		"Page-out needs the guest RAM in a memory file (memfd/shm) and regions registered\n"
		"with MODE_WP on a uffd without UFFD_FEATURE_WP_ASYNC; otherwise it is refused\n"
		"for that VM (logged, counter pageout_refused). Per-VM counters: STATS request.\n"
		"SIGTERM or SIGINT shut the pager down cleanly (exit 0; remote pages are returned to\n"
		"their VMs first); SIGUSR1 logs the counters. Exit 1 = failure, 2 = bad config.\n",
		prog, PAGER_DEFAULT_SOCKET, PAGER_DEFAULT_PREFETCH, PAGER_MAX_PREFETCH, PAGER_DEFAULT_PAGEOUT_BATCH,
		PAGER_MAX_PAGEOUT_BATCH);
}

int pager_config_from_args(struct pager_config *cfg, int argc, char **argv, FILE *out, struct ferry_err *err)
{
	struct option longopts[NFLAGS + 4];
	char shortopts[64] = ":hVc:";
	const char *config_path = NULL;
	struct { const struct flag *f; const char *arg; } *pending;
	size_t npending = 0, n = 0;
	int rc = 0, opt;

	pager_config_defaults(cfg);
	pending = calloc((size_t)argc + 1, sizeof(*pending));
	if (!pending)
		return ferry_err_set(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < NFLAGS; i++) {
		longopts[n++] = (struct option){ flags[i].name, required_argument, NULL, flags[i].val };
		if (flags[i].val < OPT_KEY_BASE) {
			size_t l = strlen(shortopts);

			shortopts[l] = (char)flags[i].val;
			shortopts[l + 1] = ':';
			shortopts[l + 2] = '\0';
		}
	}
	longopts[n++] = (struct option){ "config", required_argument, NULL, OPT_CONFIG };
	longopts[n++] = (struct option){ "help", no_argument, NULL, OPT_HELP };
	longopts[n++] = (struct option){ "version", no_argument, NULL, OPT_VERSION };
	longopts[n] = (struct option){ 0 };

	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		const char *bad = argv[optind - 1];

		switch (opt) {
		case OPT_HELP:
			pager_config_usage(out, argv[0]);
			rc = 1;
			goto out;
		case OPT_VERSION:
			fprintf(out, "ferry-pager %s\n", FERRY_PAGER_VERSION);
			rc = 1;
			goto out;
		case OPT_CONFIG:
			config_path = optarg;
			break;
		case ':':
			rc = ferry_err_set(err, EINVAL, "option '%s' needs a value (see --help)", bad);
			goto out;
		case '?':
			rc = ferry_err_set(err, EINVAL, "unknown option '%s' (see --help)", bad);
			goto out;
		default:
			for (size_t i = 0; i < NFLAGS; i++) {
				if (flags[i].val == opt) {
					pending[npending].f = &flags[i];
					pending[npending++].arg = optarg;
					break;
				}
			}
			break;
		}
	}
	if (optind < argc) {
		rc = ferry_err_set(err, EINVAL, "unexpected argument '%s' (see --help)", argv[optind]);
		goto out;
	}
	if (config_path) {
		rc = pager_config_load_file(cfg, config_path, err);
		if (rc)
			goto out;
	}
	for (size_t i = 0; i < npending; i++) {
		char origin[64];

		snprintf(origin, sizeof(origin), "--%s", pending[i].f->name);
		rc = pager_config_set(cfg, pending[i].f->section, pending[i].f->key, pending[i].arg, origin, err);
		if (rc)
			goto out;
	}
	rc = pager_config_validate(cfg, err);
out:
	free(pending);
	return rc;
}

void pager_config_log(const struct pager_config *cfg)
{
	char budget[MEMSRV_SIZE_STR], ext[MEMSRV_SIZE_STR], servers[PAGER_MAX_SERVERS * 72] = "";
	size_t off = 0;

	for (unsigned i = 0; i < cfg->nservers && off < sizeof(servers); i++)
		off += (size_t)snprintf(servers + off, sizeof(servers) - off, "%s%s:%u", i ? "," : "",
					cfg->servers[i].host, cfg->servers[i].port);
	LOG_INFO("config: file=%s socket=%s fc_socket=%s snapshot_file=%s allow=\"%s\" servers=%s transport=%s "
		 "extent_size=%s vm_budget=%s prefetch=%u pageout_batch=%u",
		 cfg->config_file[0] ? cfg->config_file : "-", cfg->socket, cfg->fc_socket[0] ? cfg->fc_socket : "-",
		 cfg->snapshot_file[0] ? cfg->snapshot_file : "-", cfg->allow_text, servers[0] ? servers : "-",
		 cfg->transport == FX_KIND_RDMA ? "rdma" : "tcp", memsrv_size_format(cfg->extent_size, ext, sizeof(ext)),
		 cfg->vm_budget ? memsrv_size_format(cfg->vm_budget, budget, sizeof(budget)) : "unlimited",
		 cfg->prefetch, cfg->pageout_batch);
}
