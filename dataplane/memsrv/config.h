/**
 * @file config.h
 * ferry-memsrv configuration: an INI file (inih) whose every key can be
 * overridden by a command-line flag. Both go through one setter, so a value
 * is validated the same way wherever it comes from, and every error names
 * its origin ("memsrv.conf:12: [pool] size: ..." or "--pool-size: ...").
 *
 * Keys (see memsrv_config_usage() and ferry-memsrv.conf.example):
 *   [server] listen, port, transport, secret_file, ready_file, max_clients
 *   [pool]   size, numa_node, hugepages, prefault
 *   [limits] client_quota, kept_bytes, kept_max, log_level
 */
#ifndef FERRY_MEMSRV_CONFIG_H
#define FERRY_MEMSRV_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "dataplane/common/ferry_err.h"
#include "dataplane/transport/transport.h"

#define MEMSRV_DEFAULT_PORT 7470
#define MEMSRV_DEFAULT_MAX_CLIENTS 64
/** Bound on max_clients: the session table is sized from it up front. */
#define MEMSRV_MAX_CLIENTS_LIMIT 4096
#define MEMSRV_NUMA_AUTO (-1)
/** Kept extents (KEEP) the server holds at most, by default and at most. */
#define MEMSRV_DEFAULT_KEPT_MAX 1024
#define MEMSRV_KEPT_MAX_LIMIT 65536
/** kept_bytes not set: the pool size. */
#define MEMSRV_KEPT_BYTES_UNSET UINT64_MAX

enum memsrv_hugepages {
	MEMSRV_HUGEPAGES_AUTO = 0,   /**< 2 MiB pages if reserved, else THP, else 4 KiB (logged) */
	MEMSRV_HUGEPAGES_ON,         /**< 2 MiB hugetlb pages or fail */
	MEMSRV_HUGEPAGES_OFF,        /**< never hugetlb pages */
};

struct memsrv_config {
	/* [server] */
	char listen[64];             /**< IPv4 address to listen on */
	uint16_t port;               /**< 0 = let the kernel pick (see ready_file) */
	enum fx_kind transport;
	char secret_file[PATH_MAX];  /**< required */
	char ready_file[PATH_MAX];   /**< "" = none */
	uint32_t max_clients;
	/* [pool] */
	uint64_t pool_size;          /**< bytes, required, multiple of 4 KiB */
	int numa_node;               /**< MEMSRV_NUMA_AUTO or a node number */
	enum memsrv_hugepages hugepages;
	bool prefault;
	/* [limits] */
	uint64_t client_quota;       /**< bytes; 0 until validated, then the pool size if unset */
	uint64_t kept_bytes;         /**< bytes of kept extents, server-wide; 0 = KEEP refused; default pool size */
	uint32_t kept_max;           /**< kept extents, server-wide */
	int log_level;               /**< enum ferry_log_level, or -1 = FERRY_LOG_LEVEL / info */

	char config_file[PATH_MAX];  /**< file the values came from, "" if none */
};

/** Fill @p cfg with the defaults (no pool size, no secret file). */
void memsrv_config_defaults(struct memsrv_config *cfg);

/**
 * Set one key. @p origin prefixes error messages ("file:line" or "--flag").
 * Unknown section or key -> -EINVAL naming both.
 */
int memsrv_config_set(struct memsrv_config *cfg, const char *section, const char *key, const char *value,
		      const char *origin, struct ferry_err *err);

/** Read an INI file into @p cfg (keys it sets override what @p cfg holds). */
int memsrv_config_load_file(struct memsrv_config *cfg, const char *path, struct ferry_err *err);

/** Check required keys and cross-key rules; fills in derived defaults (client_quota). */
int memsrv_config_validate(struct memsrv_config *cfg, struct ferry_err *err);

/**
 * Full command-line processing: defaults, then the file named by
 * -c/--config (if any), then every other flag on top, then validation.
 * --help / --version print to @p out.
 * @return 0 = run, 1 = help or version printed (exit 0), < 0 = error in @p err.
 */
int memsrv_config_from_args(struct memsrv_config *cfg, int argc, char **argv, FILE *out,
			    struct ferry_err *err);

void memsrv_config_usage(FILE *out, const char *prog);

/** Log the effective configuration, one line. */
void memsrv_config_log(const struct memsrv_config *cfg);

const char *memsrv_hugepages_name(enum memsrv_hugepages mode);

#endif /* FERRY_MEMSRV_CONFIG_H */
