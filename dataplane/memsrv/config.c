/*
 * ferry-memsrv configuration: INI file + command-line flags.
 *
 * The mechanics (getopt, -c/--help/--version, reading the file) are in
 * dataplane/common/daemon_opts.c: flags are applied after the file, so
 * "flags override the file" holds whatever order they are given in, and
 * both are checked by the same memsrv_config_set().
 */
#include "dataplane/memsrv/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dataplane/common/daemon_opts.h"
#include "dataplane/common/ferry_log.h"
#include "dataplane/common/units.h"

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
	cfg->kept_bytes = MEMSRV_KEPT_BYTES_UNSET;
	cfg->kept_max = MEMSRV_DEFAULT_KEPT_MAX;
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
		if (daemon_parse_uint(value, 65535, &v))
			return BAD("'%s' is not a port number (0..65535, 0 = pick one)", value);
		cfg->port = (uint16_t)v;
	} else if (strcmp(key, "transport") == 0) {
		return daemon_set_transport(&cfg->transport, value, origin, section, key, err);
	} else if (strcmp(key, "secret_file") == 0) {
		return daemon_set_path(cfg->secret_file, sizeof(cfg->secret_file), value, origin, section, key, err);
	} else if (strcmp(key, "ready_file") == 0) {
		return daemon_set_path(cfg->ready_file, sizeof(cfg->ready_file), value, origin, section, key, err);
	} else if (strcmp(key, "max_clients") == 0) {
		if (daemon_parse_uint(value, MEMSRV_MAX_CLIENTS_LIMIT, &v) || v == 0)
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
		if (ferry_size_parse(value, &v))
			return BAD("'%s' is not a size (a number with an optional K, M, G or T suffix)", value);
		if (v == 0 || v % 4096)
			return BAD("%s: the pool size must be a positive multiple of 4 KiB", value);
		cfg->pool_size = v;
	} else if (strcmp(key, "numa_node") == 0) {
		if (strcmp(value, "auto") == 0)
			cfg->numa_node = MEMSRV_NUMA_AUTO;
		else if (daemon_parse_uint(value, 1023, &v) == 0)
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
		if (ferry_size_parse(value, &v))
			return BAD("'%s' is not a size (a number with an optional K, M, G or T suffix)", value);
		if (v == 0)
			return BAD("a quota of 0 would refuse every allocation");
		cfg->client_quota = v;
	} else if (strcmp(key, "kept_bytes") == 0) {
		/* 0 is allowed: it turns KEEP off. */
		if (ferry_size_parse(value, &v))
			return BAD("'%s' is not a size (a number with an optional K, M, G or T suffix)", value);
		if (v == MEMSRV_KEPT_BYTES_UNSET)
			return BAD("'%s' is too large", value);
		cfg->kept_bytes = v;
	} else if (strcmp(key, "kept_max") == 0) {
		char *end;
		unsigned long n;

		errno = 0;
		n = strtoul(value, &end, 10);
		if (errno || end == value || *end || value[0] == '-' || n > MEMSRV_KEPT_MAX_LIMIT)
			return BAD("'%s' is not a number of extents 0..%u", value, MEMSRV_KEPT_MAX_LIMIT);
		cfg->kept_max = (uint32_t)n;
	} else if (strcmp(key, "log_level") == 0) {
		return daemon_set_log_level(&cfg->log_level, value, origin, section, key, err);
	} else {
		return ferry_err_set(err, EINVAL, "%s: unknown key '%s' in section [limits] (known: client_quota, kept_bytes, kept_max, log_level)",
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

static int set_cb(void *cfg, const char *section, const char *key, const char *value, const char *origin,
		  struct ferry_err *err)
{
	return memsrv_config_set(cfg, section, key, value, origin, err);
}

int memsrv_config_load_file(struct memsrv_config *cfg, const char *path, struct ferry_err *err)
{
	const struct daemon_ini ini = {
		.set = set_cb, .cfg = cfg, .reject_long_lines = true,
		.loaded_path = cfg->config_file, .loaded_path_cap = sizeof(cfg->config_file),
	};

	return daemon_ini_load(&ini, path, err);
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
	if (cfg->kept_bytes == MEMSRV_KEPT_BYTES_UNSET)
		cfg->kept_bytes = cfg->pool_size;
	return 0;
}

/* ------------------------------------------------------------ command line */

static const struct daemon_flag flags[] = {
	{ "listen",       'l',              "server", "listen" },
	{ "port",         'p',              "server", "port" },
	{ "transport",    't',              "server", "transport" },
	{ "secret-file",  's',              "server", "secret_file" },
	{ "ready-file",   'r',              "server", "ready_file" },
	{ "max-clients",  DAEMON_OPTS_LONG_ONLY + 0, "server", "max_clients" },
	{ "pool-size",    'm',              "pool",   "size" },
	{ "numa-node",    DAEMON_OPTS_LONG_ONLY + 1, "pool",   "numa_node" },
	{ "hugepages",    DAEMON_OPTS_LONG_ONLY + 2, "pool",   "hugepages" },
	{ "prefault",     DAEMON_OPTS_LONG_ONLY + 3, "pool",   "prefault" },
	{ "client-quota", 'q',              "limits", "client_quota" },
	{ "log-level",    DAEMON_OPTS_LONG_ONLY + 4, "limits", "log_level" },
	{ "kept-bytes",   DAEMON_OPTS_LONG_ONLY + 5, "limits", "kept_bytes" },
	{ "kept-max",     DAEMON_OPTS_LONG_ONLY + 6, "limits", "kept_max" },
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
		"  kept_bytes       --kept-bytes SIZE   most bytes of kept extents (KEEP), all clients\n"
		"                                       together (default: the pool size; 0 = no KEEP)\n"
		"  kept_max         --kept-max N        most kept extents (default %d)\n"
		"  log_level        --log-level LEVEL   error, warn, info or debug (default info,\n"
		"                                       or FERRY_LOG_LEVEL from the environment)\n"
		"\n"
		"Extents live as long as the client session that allocated them: when a client\n"
		"disconnects, its extents are deregistered and returned to the pool. A kept\n"
		"extent (KEEP) outlives its session until a client claims it with its token or\n"
		"discards it; kept extents are lost when this server stops.\n"
		"SIGTERM or SIGINT shut the server down cleanly (exit status 0).\n",
		prog, MEMSRV_DEFAULT_PORT, MEMSRV_DEFAULT_MAX_CLIENTS, MEMSRV_MAX_CLIENTS_LIMIT, MEMSRV_DEFAULT_KEPT_MAX);
}

static int load_cb(void *cfg, const char *path, struct ferry_err *err)
{
	return memsrv_config_load_file(cfg, path, err);
}

int memsrv_config_from_args(struct memsrv_config *cfg, int argc, char **argv, FILE *out,
			    struct ferry_err *err)
{
	static const struct daemon_cli cli = {
		.prog = "ferry-memsrv", .version = FERRY_MEMSRV_VERSION, .flags = flags, .nflags = NFLAGS,
		.usage = memsrv_config_usage, .load_file = load_cb, .set = set_cb,
	};
	int rc;

	memsrv_config_defaults(cfg);
	rc = daemon_opts_parse(&cli, cfg, argc, argv, out, err);
	return rc ? rc : memsrv_config_validate(cfg, err);
}

void memsrv_config_log(const struct memsrv_config *cfg)
{
	char pool[FERRY_SIZE_STR], quota[FERRY_SIZE_STR], kept[FERRY_SIZE_STR], node[16];

	if (cfg->numa_node == MEMSRV_NUMA_AUTO)
		snprintf(node, sizeof(node), "auto");
	else
		snprintf(node, sizeof(node), "%d", cfg->numa_node);
	LOG_INFO("config: file=%s listen=%s port=%u transport=%s max_clients=%u pool=%s numa_node=%s "
		 "hugepages=%s prefault=%s client_quota=%s kept_bytes=%s kept_max=%u ready_file=%s",
		 cfg->config_file[0] ? cfg->config_file : "-", cfg->listen, cfg->port,
		 cfg->transport == FX_KIND_RDMA ? "rdma" : "tcp", cfg->max_clients,
		 ferry_size_format(cfg->pool_size, pool, sizeof(pool)), node, memsrv_hugepages_name(cfg->hugepages),
		 cfg->prefault ? "yes" : "no", ferry_size_format(cfg->client_quota, quota, sizeof(quota)),
		 ferry_size_format(cfg->kept_bytes, kept, sizeof(kept)), cfg->kept_max,
		 cfg->ready_file[0] ? cfg->ready_file : "-");
}
