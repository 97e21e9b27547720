/**
 * @file config.h
 * ferry-pager configuration: an INI file (inih) whose every key can be
 * overridden by a flag; both go through pager_config_set(), so a value is
 * checked the same way wherever it comes from ("pager.conf:3: [pager] ..."
 * or "--vm-budget: ...").
 *
 * Keys (pager_config_usage() is the reference; the CLI is stable):
 *   [pager]  socket, fc_socket, snapshot_file, allow, log_level, poll_us
 *   [pool]   servers, secret_file, transport, extent_size
 *   [paging] vm_budget, prefetch, pageout_batch
 *   [migrate] socket, listen, advertise, port (split migration, issue 5),
 *             plan_period_ms, plan_block_pages, plan_window, plan_periods, plan_history,
 *             plan_continuous
 */
#ifndef FERRY_PAGER_CONFIG_H
#define FERRY_PAGER_CONFIG_H

#include <limits.h>
#include <stdint.h>
#include <stdio.h>

#include "dataplane/common/ferry_err.h"
#include "dataplane/transport/transport.h"
#include "proto/vmm.h"

#define PAGER_MAX_SERVERS 16
#define PAGER_DEFAULT_SOCKET "/run/ferry/pager.sock"
#define PAGER_DEFAULT_PREFETCH 8
#define PAGER_DEFAULT_POLL_US 100
#define PAGER_MAX_POLL_US 100000
#define PAGER_MAX_PREFETCH 256
#define PAGER_DEFAULT_PAGEOUT_BATCH 64
#define PAGER_MAX_PAGEOUT_BATCH 256
#define PAGER_DEFAULT_EXTENT (16u << 20)

struct pager_server_addr {
	char host[64];
	uint16_t port;
};

struct pager_config {
	/* [pager] */
	char socket[108];            /**< VMM protocol socket (sun_path; "@name" = abstract) */
	char fc_socket[108];         /**< Firecracker UFFD socket, "" = none */
	char snapshot_file[PATH_MAX];/**< Firecracker snapshot memory file, "" = zero pages */
	struct ferry_vmmp_allow allow;
	char allow_text[256];
	int log_level;               /**< -1 = FERRY_LOG_LEVEL / info */
	uint32_t poll_us;            /**< busy-poll this long after an event before sleeping, 0 = never */
	/* [pool] */
	struct pager_server_addr servers[PAGER_MAX_SERVERS];
	unsigned nservers;
	char secret_file[PATH_MAX];  /**< required when servers are configured */
	enum fx_kind transport;
	uint64_t extent_size;        /**< bytes per ALLOC (multiple of 4 KiB) */
	/* [paging] */
	uint64_t vm_budget;          /**< resident bytes per VM, 0 = unlimited */
	uint32_t prefetch;           /**< pages after a sequential fault, 0 = off */
	uint32_t pageout_batch;      /**< pages per page-out batch */
	/* [migrate] */
	char mig_socket[108];        /**< migration control socket, "" = no migrations */
	char mig_listen[64];         /**< address the incoming-migration listeners bind (default 0.0.0.0) */
	char mig_advertise[64];      /**< host a source must connect to (PREPARE_OK; default: listen) */
	uint16_t mig_port;           /**< incoming-migration stream port, 0 = any */
	/* [migrate] the access sampler of planned migrations (dataplane/migrate/access_sampler.h) */
	uint32_t plan_period_ms;     /**< sample period (default 500) */
	uint32_t plan_block_pages;   /**< pages per planner block (default 16) */
	uint32_t plan_window;        /**< sample periods per window (default 1) */
	uint32_t plan_periods;       /**< periods sampled at a planned migration's start (default 4) */
	uint32_t plan_history;       /**< periods the predictor looks back (default 4 = every sampled one; 1 = the seed's) */
	bool plan_continuous;        /**< sample every VM all the time, not only at a planned migration's start */
	uint64_t mig_stage_bytes;    /**< staging ring an incoming migration registers (default 64M) */

	char config_file[PATH_MAX];
};

void pager_config_defaults(struct pager_config *cfg);
int pager_config_set(struct pager_config *cfg, const char *section, const char *key, const char *value,
		     const char *origin, struct ferry_err *err);
int pager_config_load_file(struct pager_config *cfg, const char *path, struct ferry_err *err);
int pager_config_validate(struct pager_config *cfg, struct ferry_err *err);
/** @return 0 = run, 1 = --help/--version printed, < 0 = error in @p err. */
int pager_config_from_args(struct pager_config *cfg, int argc, char **argv, FILE *out, struct ferry_err *err);
void pager_config_usage(FILE *out, const char *prog);
void pager_config_log(const struct pager_config *cfg);

#endif /* FERRY_PAGER_CONFIG_H */
