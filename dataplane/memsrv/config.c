/*
 * ferry-memsrv configuration: INI file + command-line flags.
 *
 * Flags are collected in a first getopt pass and applied after the file, so
 * "flags override the file" holds whatever order they are given in, and
 * both are checked by the same memsrv_config_set().
 */
#include "dataplane/memsrv/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/memsrv/units.h"

void memsrv_config_defaults(struct memsrv_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->listen, sizeof(cfg->listen), "127.0.0.1");
	cfg->port = MEMSRV_DEFAULT_PORT;
	cfg->transport = FX_KIND_TCP;
	cfg->max_clients = MEMSRV_DEFAULT_MAX_CLIENTS;
	cfg->numa_node = MEMSRV_NUMA_AUTO;
	cfg->hugepages = MEMSRV_HUGEPAGES_AUTO;
	cfg->prefault = true;
	cfg->log_level = -1;
}

const char *memsrv_hugepages_name(enum memsrv_hugepages mode)
{
	switch (mode) {
	case MEMSRV_HUGEPAGES_AUTO: return "auto";
	case MEMSRV_HUGEPAGES_ON: return "on";
	case MEMSRV_HUGEPAGES_OFF: return "off";
	}
	return "?";
}

/* ------------------------------------------------------------ value parsers */

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

static int parse_bool(const char *value, bool *out)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(value, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(value, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

static int copy_path(char *dst, size_t cap, const char *value)
{
	size_t len = strlen(value);

	if (len == 0 || len >= cap)
		return -EINVAL;
	memcpy(dst, value, len + 1);
	return 0;
}

/* ------------------------------------------------------------ keys */

#define BAD(fmt, ...) ferry_err_set(err, EINVAL, "%s: [%s] %s: " fmt, origin, section, key, ##__VA_ARGS__)

static int set_server(struct memsrv_config *cfg, const char *section, const char *key, const char *value,
		      const char *origin, struct ferry_err *err)
{
	uint64_t v;

	if (strcmp(key, "listen") == 0) {
		struct in_addr a;

		if (strlen(value) >= sizeof(cfg->listen) || inet_pton(AF_INET, value, &a) != 1)
			return BAD("'%s' is not an IPv4 address (e.g. 127.0.0.1 or 0.0.0.0)", value);
		snprintf(cfg->listen, sizeof(cfg->listen), "%s", value);
	} else if (strcmp(key, "port") == 0) {
		if (parse_uint(value, 65535, &v))
			return BAD("'%s' is not a port number (0..65535, 0 = pick one)", value);
		cfg->port = (uint16_t)v;
	} else if (strcmp(key, "transport") == 0) {
		/* Parsed here rather than with fx_kind_parse so that the config
		 * module does not need the transport library to be linked. */
		if (strcmp(value, "tcp") == 0)
			cfg->transport = FX_KIND_TCP;
		else if (strcmp(value, "rdma") == 0)
			cfg->transport = FX_KIND_RDMA;
		else
			return BAD("'%s' is not a transport (tcp or rdma)", value);
	} else if (strcmp(key, "secret_file") == 0) {
		if (copy_path(cfg->secret_file, sizeof(cfg->secret_file), value))
			return BAD("path empty or too long");
	} else if (strcmp(key, "ready_file") == 0) {
		if (copy_path(cfg->ready_file, sizeof(cfg->ready_file), value))
			return BAD("path empty or too long");
	} else if (strcmp(key, "max_clients") == 0) {
		if (parse_uint(value, MEMSRV_MAX_CLIENTS_LIMIT, &v) || v == 0)
			return BAD("'%s' is not a client count (1..%d)", value, MEMSRV_MAX_CLIENTS_LIMIT);
		cfg->max_clients = (uint32_t)v;
	} else {
		return ferry_err_set(err, EINVAL,
				     "%s: unknown key '%s' in section [server] "
				     "(known: listen, port, transport, secret_file, ready_file, max_clients)",
				     origin, key);
	}
	return 0;
}

static int set_pool(struct memsrv_config *cfg, const char *section, const char *key, const char *value,
		    const char *origin, struct ferry_err *err)
{
	uint64_t v;

	if (strcmp(key, "size") == 0) {
		if (memsrv_size_parse(value, &v))
			return BAD("'%s' is not a size (a number with an optional K, M, G or T suffix)", value);
		if (v == 0 || v % 4096)
			return BAD("%s: the pool size must be a positive multiple of 4 KiB", value);
		cfg->pool_size = v;
	} else if (strcmp(key, "numa_node") == 0) {
		if (strcmp(value, "auto") == 0)
			cfg->numa_node = MEMSRV_NUMA_AUTO;
		else if (parse_uint(value, 1023, &v) == 0)
			cfg->numa_node = (int)v;
		else
			return BAD("'%s' is not a NUMA node (auto or a node number)", value);
	} else if (strcmp(key, "hugepages") == 0) {
		if (strcmp(value, "auto") == 0)
			cfg->hugepages = MEMSRV_HUGEPAGES_AUTO;
		else if (strcmp(value, "on") == 0)
			cfg->hugepages = MEMSRV_HUGEPAGES_ON;
		else if (strcmp(value, "off") == 0)
			cfg->hugepages = MEMSRV_HUGEPAGES_OFF;
		else
			return BAD("'%s' is not auto, on or off", value);
	} else if (strcmp(key, "prefault") == 0) {
		if (parse_bool(value, &cfg->prefault))
			return BAD("'%s' is not yes or no", value);
	} else {
		return ferry_err_set(err, EINVAL,
				     "%s: unknown key '%s' in section [pool] (known: size, numa_node, hugepages, prefault)",
				     origin, key);
	}
	return 0;
}

static int set_limits(struct memsrv_config *cfg, const char *section, const char *key, const char *value,
		      const char *origin, struct ferry_err *err)
{
	uint64_t v;

	if (strcmp(key, "client_quota") == 0) {
		if (memsrv_size_parse(value, &v))
			return BAD("'%s' is not a size (a number with an optional K, M, G or T suffix)", value);
		if (v == 0)
			return BAD("a quota of 0 would refuse every allocation");
		cfg->client_quota = v;
	} else if (strcmp(key, "log_level") == 0) {
		int lvl = ferry_log_parse_level(value);

		if (lvl < 0)
			return BAD("'%s' is not a log level (error, warn, info or debug)", value);
		cfg->log_level = lvl;
	} else {
		return ferry_err_set(err, EINVAL, "%s: unknown key '%s' in section [limits] (known: client_quota, log_level)",
				     origin, key);
	}
	return 0;
}
#undef BAD

int memsrv_config_set(struct memsrv_config *cfg, const char *section, const char *key, const char *value,
		      const char *origin, struct ferry_err *err)
{
	if (strcmp(section, "server") == 0)
		return set_server(cfg, section, key, value, origin, err);
	if (strcmp(section, "pool") == 0)
		return set_pool(cfg, section, key, value, origin, err);
	if (strcmp(section, "limits") == 0)
		return set_limits(cfg, section, key, value, origin, err);
	if (section[0] == '\0')
		return ferry_err_set(err, EINVAL, "%s: key '%s' outside of a section ([server], [pool] or [limits])",
				     origin, key);
	return ferry_err_set(err, EINVAL, "%s: unknown section [%s] with key '%s' (known: server, pool, limits)",
			     origin, section, key);
}

/* ------------------------------------------------------------ file */

struct ini_state {
	struct memsrv_config *cfg;
	const char *path;
	FILE *file;
	int line;                 /* lines read so far = line of the handler call */
	int long_line;            /* first line longer than inih's buffer, 0 if none */
	int err_line;             /* line of the first handler error, 0 if none */
	struct ferry_err first;
};

/*
 * fgets wrapper that counts lines, so handler errors can name their line
 * (Debian's inih is built without INI_HANDLER_LINENO), and that notices lines
 * too long for inih's buffer instead of letting it parse the tail as a line.
 */
static char *ini_read_line(char *str, int num, void *stream)
{
	struct ini_state *st = stream;

	if (!fgets(str, num, st->file))
		return NULL;
	st->line++;
	size_t len = strlen(str);

	if (len > 0 && str[len - 1] != '\n' && !feof(st->file)) {
		int c;

		if (!st->long_line)
			st->long_line = st->line;
		while ((c = fgetc(st->file)) != EOF && c != '\n')
			;
		str[0] = '\0';   /* hand inih an empty line instead of a fragment */
	}
	return str;
}

static int ini_handler_cb(void *user, const char *section, const char *name, const char *value)
{
	struct ini_state *st = user;
	char origin[PATH_MAX + 16];

	if (st->err_line)
		return 1;   /* report only the first problem */
	snprintf(origin, sizeof(origin), "%s:%d", st->path, st->line);
	if (memsrv_config_set(st->cfg, section, name, value, origin, &st->first)) {
		st->err_line = st->line;
		return 0;
	}
	return 1;
}

int memsrv_config_load_file(struct memsrv_config *cfg, const char *path, struct ferry_err *err)
{
	struct ini_state st = { .cfg = cfg, .path = path };
	int rc;

	st.file = fopen(path, "re");
	if (!st.file)
		return ferry_err_set(err, errno, "config file %s: %s", path, strerror(errno));
	rc = ini_parse_stream(ini_read_line, &st, ini_handler_cb, &st);
	fclose(st.file);

	/* Report whichever problem comes first in the file. */
	int syntax_line = rc > 0 && rc != st.err_line ? rc : 0;
	int first = 0;

	if (st.long_line)
		first = st.long_line;
	if (st.err_line && (!first || st.err_line < first))
		first = st.err_line;
	if (syntax_line && (!first || syntax_line < first))
		first = syntax_line;

	if (!first && rc == 0)
		goto ok;
	if (first == st.err_line && st.err_line) {
		*err = st.first;
		return err->code ? err->code : -EINVAL;
	}
	if (first == st.long_line && st.long_line)
		return ferry_err_set(err, EINVAL, "%s:%d: line too long (at most %d characters)", path, first,
				     INI_MAX_LINE - 2);
	if (first)
		return ferry_err_set(err, EINVAL, "%s:%d: syntax error (expected '[section]' or 'key = value')",
				     path, first);
	return ferry_err_set(err, EIO, "config file %s: cannot be parsed (inih error %d)", path, rc);
ok:
	snprintf(cfg->config_file, sizeof(cfg->config_file), "%s", path);
	return 0;
}

int memsrv_config_validate(struct memsrv_config *cfg, struct ferry_err *err)
{
	const char *from = cfg->config_file[0] ? cfg->config_file : "command line";

	if (!cfg->secret_file[0])
		return ferry_err_set(err, EINVAL,
				     "%s: no secret file: set [server] secret_file or --secret-file "
				     "(the cluster secret clients authenticate with)", from);
	if (!cfg->pool_size)
		return ferry_err_set(err, EINVAL, "%s: no pool size: set [pool] size or --pool-size (e.g. 1G)",
				     from);
	if (!cfg->client_quota)
		cfg->client_quota = cfg->pool_size;
	return 0;
}

/* ------------------------------------------------------------ command line */

struct flag {
	const char *name;
	int has_arg;
	int val;
	const char *section, *key;
};

enum { OPT_HELP = 'h', OPT_VERSION = 'V', OPT_CONFIG = 'c', OPT_KEY_BASE = 1000 };

static const struct flag flags[] = {
	{ "listen",       required_argument, 'l',              "server", "listen" },
	{ "port",         required_argument, 'p',              "server", "port" },
	{ "transport",    required_argument, 't',              "server", "transport" },
	{ "secret-file",  required_argument, 's',              "server", "secret_file" },
	{ "ready-file",   required_argument, 'r',              "server", "ready_file" },
	{ "max-clients",  required_argument, OPT_KEY_BASE + 0, "server", "max_clients" },
	{ "pool-size",    required_argument, 'm',              "pool",   "size" },
	{ "numa-node",    required_argument, OPT_KEY_BASE + 1, "pool",   "numa_node" },
	{ "hugepages",    required_argument, OPT_KEY_BASE + 2, "pool",   "hugepages" },
	{ "prefault",     required_argument, OPT_KEY_BASE + 3, "pool",   "prefault" },
	{ "client-quota", required_argument, 'q',              "limits", "client_quota" },
	{ "log-level",    required_argument, OPT_KEY_BASE + 4, "limits", "log_level" },
};
#define NFLAGS (sizeof(flags) / sizeof(flags[0]))

void memsrv_config_usage(FILE *out, const char *prog)
{
	fprintf(out,
		"Usage: %s [-c FILE] [OPTIONS]\n"
		"Ferry memory server: serves a NUMA-local memory pool to authenticated clients,\n"
		"which read and write their extents with one-sided operations.\n"
		"\n"
		"  -c, --config FILE        INI file (see ferry-memsrv.conf.example); flags override it\n"
		"  -h, --help               this text\n"
		"  -V, --version            print the version\n"
		"\n"
		"Every key below can be set in the file or by its flag:\n"
		"[server]\n"
		"  listen       -l, --listen ADDR       IPv4 address to listen on (default 127.0.0.1)\n"
		"  port         -p, --port N            TCP port (default %d; 0 = let the kernel pick)\n"
		"  transport    -t, --transport KIND    tcp or rdma (default tcp)\n"
		"  secret_file  -s, --secret-file PATH  cluster secret, mode 0600, >= 32 bytes (required)\n"
		"  ready_file   -r, --ready-file PATH   written with the bound port once listening\n"
		"  max_clients      --max-clients N     concurrent clients (default %d, at most %d)\n"
		"[pool]\n"
		"  size         -m, --pool-size SIZE    pool bytes, e.g. 512M, 1G (required; K/M/G/T suffixes)\n"
		"  numa_node        --numa-node N|auto  node of the pool (default auto: nearest the\n"
		"                                       NIC that carries the listen address)\n"
		"  hugepages        --hugepages MODE    auto (2 MiB pages if reserved, else THP, else\n"
		"                                       4 KiB), on (fail without 2 MiB pages), off\n"
		"  prefault         --prefault yes|no   touch the whole pool at start (default yes)\n"
		"[limits]\n"
		"  client_quota -q, --client-quota SIZE most one client may hold (default: the pool size)\n"
		"  log_level        --log-level LEVEL   error, warn, info or debug (default info,\n"
		"                                       or FERRY_LOG_LEVEL from the environment)\n"
		"\n"
		"Extents live as long as the client session that allocated them: when a client\n"
		"disconnects, its extents are deregistered and returned to the pool.\n"
		"SIGTERM or SIGINT shut the server down cleanly (exit status 0).\n",
		prog, MEMSRV_DEFAULT_PORT, MEMSRV_DEFAULT_MAX_CLIENTS, MEMSRV_MAX_CLIENTS_LIMIT);
}

int memsrv_config_from_args(struct memsrv_config *cfg, int argc, char **argv, FILE *out,
			    struct ferry_err *err)
{
	struct option longopts[NFLAGS + 4];
	char shortopts[64] = ":hVc:";
	const char *config_path = NULL;
	struct { const struct flag *f; const char *arg; } *pending;
	size_t npending = 0, n = 0;
	int rc = 0, opt;

	memsrv_config_defaults(cfg);
	pending = calloc((size_t)argc + 1, sizeof(*pending));
	if (!pending)
		return ferry_err_set(err, ENOMEM, "out of memory");

	for (size_t i = 0; i < NFLAGS; i++) {
		longopts[n++] = (struct option){ flags[i].name, flags[i].has_arg, NULL, flags[i].val };
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

	optind = 0;   /* full getopt reset: callable more than once (unit tests) */
	opterr = 0;   /* we word the errors ourselves */
	while ((opt = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		const char *bad = argv[optind - 1];

		switch (opt) {
		case OPT_HELP:
			memsrv_config_usage(out, argv[0]);
			rc = 1;
			goto out;
		case OPT_VERSION:
			fprintf(out, "ferry-memsrv %s\n", FERRY_MEMSRV_VERSION);
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
		rc = memsrv_config_load_file(cfg, config_path, err);
		if (rc)
			goto out;
	}
	for (size_t i = 0; i < npending; i++) {
		char origin[64];

		snprintf(origin, sizeof(origin), "--%s", pending[i].f->name);
		rc = memsrv_config_set(cfg, pending[i].f->section, pending[i].f->key, pending[i].arg, origin, err);
		if (rc)
			goto out;
	}
	rc = memsrv_config_validate(cfg, err);
out:
	free(pending);
	return rc;
}

void memsrv_config_log(const struct memsrv_config *cfg)
{
	char pool[MEMSRV_SIZE_STR], quota[MEMSRV_SIZE_STR], node[16];

	if (cfg->numa_node == MEMSRV_NUMA_AUTO)
		snprintf(node, sizeof(node), "auto");
	else
		snprintf(node, sizeof(node), "%d", cfg->numa_node);
	LOG_INFO("config: file=%s listen=%s port=%u transport=%s max_clients=%u pool=%s numa_node=%s "
		 "hugepages=%s prefault=%s client_quota=%s ready_file=%s",
		 cfg->config_file[0] ? cfg->config_file : "-", cfg->listen, cfg->port,
		 cfg->transport == FX_KIND_RDMA ? "rdma" : "tcp", cfg->max_clients,
		 memsrv_size_format(cfg->pool_size, pool, sizeof(pool)), node, memsrv_hugepages_name(cfg->hugepages),
		 cfg->prefault ? "yes" : "no", memsrv_size_format(cfg->client_quota, quota, sizeof(quota)),
		 cfg->ready_file[0] ? cfg->ready_file : "-");
}
