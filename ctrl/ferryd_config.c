/*
 * ferryd configuration: an INI file (one file can serve the whole cluster:
 * each host picks itself with [ferryd] name / --name) plus flags, both
 * through ferryd_config_set() via dataplane/common/daemon_opts.
 *
 *   [ferryd]   name, listen, unix_socket, secret_file, ready_file, roles,
 *              allowed_uid, wake_ctl, log_level, stop_timeout_ms
 *   [cluster]  coordinator, report_interval_ms, down_after_ms,
 *              accept_period_ms, peer_timeout_ms
 *   [node N]   address = HOST:PORT          (one per host of the cluster)
 *   [child N]  exec = PROGRAM ARGS..., log, restart_min_ms, restart_max_ms
 *   [vm ID]    ip, mac, node, state, hibernate_cmd, resume_cmd,
 *              launch_incoming, announce_port
 */
#include "ctrl/ferryd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/common/daemon_opts.h"
#include "dataplane/common/ferry_log.h"

void ferryd_config_defaults(struct ferryd_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->unix_path, sizeof(cfg->unix_path), "%s", FERRYD_DEFAULT_UNIX);
	cfg->allowed_uid = -1;
	cfg->log_level = -1;
	cfg->report_ms = 1000;
	cfg->down_after_ms = 0;            /* 3 report intervals unless set */
	cfg->accept_period_ms = 60000;
	cfg->stop_timeout_ms = 5000;
	cfg->peer_timeout_ms = 5000;
	cfg->idle_cpu_pct = 5;
	cfg->idle_check_ms = 1000;
}

static const char *const role_names[] = { "sub", "main", "accept" };

int ferryd_parse_roles(const char *s, uint32_t *roles)
{
	char buf[128], *save = NULL, *tok;

	if (strlen(s) >= sizeof(buf))
		return -1;
	snprintf(buf, sizeof(buf), "%s", s);
	*roles = 0;
	for (tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		unsigned int i;

		for (i = 0; i < 3; i++)
			if (strcmp(tok, role_names[i]) == 0)
				break;
		if (i == 3)
			return -1;
		*roles |= 1u << i;
	}
	return 0;
}

const char *ferryd_roles_str(uint32_t roles, char *buf, size_t len)
{
	static const char *const all[] = { "sub", "main", "accept", "coord" };
	size_t off = 0;

	buf[0] = '\0';
	for (unsigned int i = 0; i < 4; i++)
		if (roles & (1u << i))
			off += (size_t)snprintf(buf + off, off < len ? len - off : 0, "%s%s", off ? "," : "", all[i]);
	if (!buf[0])
		snprintf(buf, len, "-");
	return buf;
}

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned int b[6];
	char end;

	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &end) != 6)
		return -1;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)b[i];
	return 0;
}

#define BAD(fmt, ...) ferry_err_set(err, EINVAL, "%s: [%s] %s: " fmt, origin, section, key, ##__VA_ARGS__)

static int set_name(char *dst, const char *value, const char *origin, const char *section, const char *key,
		    struct ferry_err *err)
{
	if (ferry_ctrl_check_name(value) != FERRY_CTRL_E_OK)
		return BAD("'%s' is not a name (1..64 of A-Z a-z 0-9 . _ -)", value);
	snprintf(dst, FERRYD_NAME_LEN, "%s", value);
	return 0;
}

static int set_addr(char *dst, const char *value, const char *origin, const char *section, const char *key,
		    struct ferry_err *err)
{
	const char *colon = strrchr(value, ':');
	uint64_t port;

	if (ferry_ctrl_check_addr(value) != FERRY_CTRL_E_OK || !colon || colon == value ||
	    daemon_parse_uint(colon + 1, 65535, &port))
		return BAD("'%s' is not HOST:PORT", value);
	snprintf(dst, FERRYD_ADDR_LEN, "%s", value);
	return 0;
}

static int set_ms(uint32_t *dst, const char *value, const char *origin, const char *section, const char *key,
		  struct ferry_err *err)
{
	uint64_t v;

	if (daemon_parse_uint(value, 86400000, &v) || v == 0)
		return BAD("'%s' is not a time in ms (1..86400000)", value);
	*dst = (uint32_t)v;
	return 0;
}

static int set_cmd(char *dst, const char *value, const char *origin, const char *section, const char *key,
		   struct ferry_err *err)
{
	if (!value[0] || strlen(value) >= FERRYD_CMD_MAX)
		return BAD("empty or longer than %d bytes", FERRYD_CMD_MAX - 1);
	snprintf(dst, FERRYD_CMD_MAX, "%s", value);
	return 0;
}

static int set_ferryd(struct ferryd_cfg *cfg, const char *section, const char *key, const char *value,
		      const char *origin, struct ferry_err *err)
{
	uint64_t v;

	if (strcmp(key, "name") == 0)
		return set_name(cfg->name, value, origin, section, key, err);
	if (strcmp(key, "listen") == 0)
		return set_addr(cfg->listen, value, origin, section, key, err);
	if (strcmp(key, "unix_socket") == 0) {
		if (!value[0] || strlen(value) >= sizeof(cfg->unix_path))
			return BAD("empty or longer than %zu bytes", sizeof(cfg->unix_path) - 1);
		snprintf(cfg->unix_path, sizeof(cfg->unix_path), "%s", value);
		return 0;
	}
	if (strcmp(key, "secret_file") == 0)
		return daemon_set_path(cfg->secret_file, sizeof(cfg->secret_file), value, origin, section, key, err);
	if (strcmp(key, "ready_file") == 0)
		return daemon_set_path(cfg->ready_file, sizeof(cfg->ready_file), value, origin, section, key, err);
	if (strcmp(key, "wake_ctl") == 0) {
		if (strlen(value) >= sizeof(cfg->wake_ctl) ||
		    (strncmp(value, "unix:", 5) != 0 && strncmp(value, "tcp:", 4) != 0))
			return BAD("'%s' is not unix:/path or tcp:HOST:PORT", value);
		snprintf(cfg->wake_ctl, sizeof(cfg->wake_ctl), "%s", value);
		return 0;
	}
	if (strcmp(key, "migrate_socket") == 0) {
		if (!value[0] || strlen(value) >= sizeof(cfg->migrate_socket))
			return BAD("empty or longer than %zu bytes", sizeof(cfg->migrate_socket) - 1);
		snprintf(cfg->migrate_socket, sizeof(cfg->migrate_socket), "%s", value);
		return 0;
	}
	if (strcmp(key, "roles") == 0) {
		if (ferryd_parse_roles(value, &cfg->roles))
			return BAD("'%s' is not a list of sub, main, accept", value);
		return 0;
	}
	if (strcmp(key, "allowed_uid") == 0) {
		if (strcmp(value, "none") == 0) {
			cfg->allowed_uid = -1;
			return 0;
		}
		if (daemon_parse_uint(value, 0xfffffffe, &v))
			return BAD("'%s' is not a uid (or none)", value);
		cfg->allowed_uid = (int64_t)v;
		return 0;
	}
	if (strcmp(key, "state_dir") == 0)
		return daemon_set_path(cfg->state_dir, sizeof(cfg->state_dir), value, origin, section, key, err);
	if (strcmp(key, "hib_state") == 0)
		return daemon_set_path(cfg->hib_state, sizeof(cfg->hib_state), value, origin, section, key, err);
	if (strcmp(key, "hib_ram_dir") == 0)
		return daemon_set_path(cfg->hib_ram_dir, sizeof(cfg->hib_ram_dir), value, origin, section, key, err);
	if (strcmp(key, "hib_image_dir") == 0)
		return daemon_set_path(cfg->hib_image_dir, sizeof(cfg->hib_image_dir), value, origin, section, key, err);
	if (strcmp(key, "hib_pool") == 0)
		return set_addr(cfg->hib_pool, value, origin, section, key, err);
	if (strcmp(key, "hib_mode") == 0) {
		if (strcmp(value, "pool") == 0)
			cfg->hib_mode = FERRYD_HIB_POOL;
		else if (strcmp(value, "file") == 0)
			cfg->hib_mode = FERRYD_HIB_FILE;
		else
			return BAD("'%s' is not pool or file", value);
		return 0;
	}
	if (strcmp(key, "idle_cpu_pct") == 0) {
		if (daemon_parse_uint(value, 100, &v))
			return BAD("'%s' is not a percentage (0..100)", value);
		cfg->idle_cpu_pct = (uint32_t)v;
		return 0;
	}
	if (strcmp(key, "idle_check_ms") == 0)
		return set_ms(&cfg->idle_check_ms, value, origin, section, key, err);
	if (strcmp(key, "log_level") == 0)
		return daemon_set_log_level(&cfg->log_level, value, origin, section, key, err);
	if (strcmp(key, "stop_timeout_ms") == 0)
		return set_ms(&cfg->stop_timeout_ms, value, origin, section, key, err);
	return ferry_err_set(err, EINVAL,
			     "%s: unknown key '%s' in section [ferryd] (known: name, listen, unix_socket, "
			     "secret_file, ready_file, wake_ctl, migrate_socket, roles, allowed_uid, log_level, stop_timeout_ms, "
			     "state_dir, hib_state, hib_pool, hib_mode, hib_ram_dir, hib_image_dir, idle_cpu_pct, idle_check_ms)",
			     origin, key);
}

static int set_cluster(struct ferryd_cfg *cfg, const char *section, const char *key, const char *value,
		       const char *origin, struct ferry_err *err)
{
	if (strcmp(key, "coordinator") == 0)
		return set_name(cfg->coordinator, value, origin, section, key, err);
	if (strcmp(key, "report_interval_ms") == 0)
		return set_ms(&cfg->report_ms, value, origin, section, key, err);
	if (strcmp(key, "down_after_ms") == 0)
		return set_ms(&cfg->down_after_ms, value, origin, section, key, err);
	if (strcmp(key, "accept_period_ms") == 0)
		return set_ms(&cfg->accept_period_ms, value, origin, section, key, err);
	if (strcmp(key, "peer_timeout_ms") == 0)
		return set_ms(&cfg->peer_timeout_ms, value, origin, section, key, err);
	return ferry_err_set(err, EINVAL,
			     "%s: unknown key '%s' in section [cluster] (known: coordinator, report_interval_ms, "
			     "down_after_ms, accept_period_ms, peer_timeout_ms)",
			     origin, key);
}

/* The entry of [kind NAME] for @name, added on first sight. */
#define FIND_OR_ADD(arr, n, max, field, what)                                                                \
	do {                                                                                                 \
		for (i = 0; i < (n); i++)                                                                    \
			if (strcmp((arr)[i].field, name) == 0)                                               \
				break;                                                                       \
		if (i == (n)) {                                                                              \
			if ((n) == (max))                                                                    \
				return ferry_err_set(err, E2BIG, "%s: more than %d " what " sections", origin, \
						     (int)(max));                                            \
			if (ferry_ctrl_check_name(name) != FERRY_CTRL_E_OK)                                  \
				return ferry_err_set(err, EINVAL, "%s: [%s]: '%s' is not a name", origin,    \
						     section, name);                                         \
			snprintf((arr)[i].field, FERRYD_NAME_LEN, "%s", name);                               \
			(n)++;                                                                               \
		}                                                                                            \
	} while (0)

static int set_node(struct ferryd_cfg *cfg, const char *section, const char *name, const char *key,
		    const char *value, const char *origin, struct ferry_err *err)
{
	unsigned int i;

	FIND_OR_ADD(cfg->node, cfg->nnodes, FERRYD_MAX_NODES, name, "[node]");
	if (strcmp(key, "address") == 0)
		return set_addr(cfg->node[i].addr, value, origin, section, key, err);
	if (strcmp(key, "memsrv") == 0)
		return set_addr(cfg->node[i].memsrv, value, origin, section, key, err);
	return ferry_err_set(err, EINVAL, "%s: unknown key '%s' in section [%s] (known: address, memsrv)", origin,
			     key, section);
}

static int set_child(struct ferryd_cfg *cfg, const char *section, const char *name, const char *key,
		     const char *value, const char *origin, struct ferry_err *err)
{
	struct ferryd_child_cfg *c;
	unsigned int i;

	FIND_OR_ADD(cfg->child, cfg->nchildren, FERRYD_MAX_CHILDREN, name, "[child]");
	c = &cfg->child[i];
	if (strcmp(key, "exec") == 0)
		return set_cmd(c->exec, value, origin, section, key, err);
	if (strcmp(key, "log") == 0)
		return daemon_set_path(c->log, sizeof(c->log), value, origin, section, key, err);
	if (strcmp(key, "nodes") == 0) {
		if (strlen(value) >= sizeof(c->nodes))
			return ferry_err_set(err, EINVAL, "%s: [%s] nodes: longer than %zu bytes", origin, section,
					     sizeof(c->nodes) - 1);
		snprintf(c->nodes, sizeof(c->nodes), "%s", value);
		return 0;
	}
	if (strcmp(key, "restart_min_ms") == 0)
		return set_ms(&c->restart_min_ms, value, origin, section, key, err);
	if (strcmp(key, "restart_max_ms") == 0)
		return set_ms(&c->restart_max_ms, value, origin, section, key, err);
	return ferry_err_set(err, EINVAL,
			     "%s: unknown key '%s' in section [%s] (known: exec, nodes, log, restart_min_ms, restart_max_ms)",
			     origin, key, section);
}

static int set_vm(struct ferryd_cfg *cfg, const char *section, const char *name, const char *key,
		  const char *value, const char *origin, struct ferry_err *err)
{
	struct ferryd_vm_cfg *vm;
	unsigned int i;
	uint64_t v;

	FIND_OR_ADD(cfg->vm, cfg->nvms, FERRYD_MAX_VMS, id, "[vm]");
	vm = &cfg->vm[i];
	if (strcmp(key, "ip") == 0) {
		struct in_addr a;

		if (inet_pton(AF_INET, value, &a) != 1)
			return BAD("'%s' is not an IPv4 address", value);
		memcpy(vm->ip, &a, 4);
	} else if (strcmp(key, "mac") == 0) {
		if (parse_mac(value, vm->mac))
			return BAD("'%s' is not a MAC address (xx:xx:xx:xx:xx:xx)", value);
	} else if (strcmp(key, "node") == 0) {
		return set_name(vm->node, value, origin, section, key, err);
	} else if (strcmp(key, "state") == 0) {
		if (strcmp(value, "running") == 0)
			vm->state = FERRY_CTRL_VM_RUNNING;
		else if (strcmp(value, "hibernated") == 0)
			vm->state = FERRY_CTRL_VM_HIBERNATED;
		else
			return BAD("'%s' is not running or hibernated", value);
	} else if (strcmp(key, "hibernate_cmd") == 0) {
		return set_cmd(vm->hibernate_cmd, value, origin, section, key, err);
	} else if (strcmp(key, "resume_cmd") == 0) {
		return set_cmd(vm->resume_cmd, value, origin, section, key, err);
	} else if (strcmp(key, "launch_incoming") == 0) {
		return set_cmd(vm->launch_incoming, value, origin, section, key, err);
	} else if (strcmp(key, "announce_port") == 0) {
		if (daemon_parse_uint(value, 65535, &v) || v == 0)
			return BAD("'%s' is not a port (1..65535)", value);
		vm->announce_port = (uint16_t)v;
	} else if (strcmp(key, "announce_timeout_ms") == 0) {
		return set_ms(&vm->announce_timeout_ms, value, origin, section, key, err);
	} else if (strcmp(key, "tap") == 0) {
		if (!value[0] || strlen(value) >= sizeof(vm->tap))
			return BAD("'%s' is not an interface name", value);
		snprintf(vm->tap, sizeof(vm->tap), "%s", value);
	} else if (strcmp(key, "idle_after_ms") == 0) {
		return set_ms(&vm->idle_after_ms, value, origin, section, key, err);
	} else if (strcmp(key, "qga_socket") == 0) {
		if (value[0] != '/' || strlen(value) >= sizeof(vm->qga_socket))
			return BAD("'%s' is not an absolute socket path (< %zu bytes)", value, sizeof(vm->qga_socket));
		snprintf(vm->qga_socket, sizeof(vm->qga_socket), "%s", value);
	} else if (strcmp(key, "forbid_procs") == 0) {
		unsigned int n = 1;

		for (const char *c = value; *c; c++)
			n += *c == ',';
		if (!value[0] || strlen(value) >= sizeof(vm->forbid_procs) || n > FERRYD_FORBID_MAX)
			return BAD("'%s' is not a list of at most %d process names", value, FERRYD_FORBID_MAX);
		snprintf(vm->forbid_procs, sizeof(vm->forbid_procs), "%s", value);
	} else {
		return ferry_err_set(err, EINVAL,
				     "%s: unknown key '%s' in section [%s] (known: ip, mac, node, state, "
				     "hibernate_cmd, resume_cmd, launch_incoming, announce_port, announce_timeout_ms, tap, idle_after_ms, "
				     "qga_socket, forbid_procs)",
				     origin, key, section);
	}
	return 0;
}
#undef BAD

static int ferryd_config_set(void *vcfg, const char *section, const char *key, const char *value,
			     const char *origin, struct ferry_err *err)
{
	struct ferryd_cfg *cfg = vcfg;
	static const char *const kinds[] = { "node ", "child ", "vm " };

	if (strcmp(section, "ferryd") == 0)
		return set_ferryd(cfg, section, key, value, origin, err);
	if (strcmp(section, "cluster") == 0)
		return set_cluster(cfg, section, key, value, origin, err);
	for (unsigned int k = 0; k < 3; k++) {
		size_t l = strlen(kinds[k]);
		const char *name = section + l;

		if (strncmp(section, kinds[k], l) != 0)
			continue;
		while (*name == ' ')
			name++;
		if (k == 0)
			return set_node(cfg, section, name, key, value, origin, err);
		if (k == 1)
			return set_child(cfg, section, name, key, value, origin, err);
		return set_vm(cfg, section, name, key, value, origin, err);
	}
	if (section[0] == '\0')
		return ferry_err_set(err, EINVAL, "%s: key '%s' outside of a section", origin, key);
	return ferry_err_set(err, EINVAL,
			     "%s: unknown section [%s] (known: ferryd, cluster, node NAME, child NAME, vm ID)", origin,
			     section);
}

static int load_cb(void *cfg, const char *path, struct ferry_err *err)
{
	struct ferryd_cfg *c = cfg;
	const struct daemon_ini ini = {
		.set = ferryd_config_set, .cfg = cfg, .reject_long_lines = true,
		.loaded_path = c->config_file, .loaded_path_cap = sizeof(c->config_file),
	};

	return daemon_ini_load(&ini, path, err);
}

static const struct daemon_flag flags[] = {
	{ "name",               'n',                       "ferryd",  "name" },
	{ "listen",             'l',                       "ferryd",  "listen" },
	{ "unix-socket",        'u',                       "ferryd",  "unix_socket" },
	{ "secret-file",        's',                       "ferryd",  "secret_file" },
	{ "ready-file",         'r',                       "ferryd",  "ready_file" },
	{ "roles",              DAEMON_OPTS_LONG_ONLY + 0, "ferryd",  "roles" },
	{ "allowed-uid",        DAEMON_OPTS_LONG_ONLY + 1, "ferryd",  "allowed_uid" },
	{ "wake-ctl",           DAEMON_OPTS_LONG_ONLY + 2, "ferryd",  "wake_ctl" },
	{ "migrate-socket",     DAEMON_OPTS_LONG_ONLY + 8, "ferryd",  "migrate_socket" },
	{ "log-level",          DAEMON_OPTS_LONG_ONLY + 3, "ferryd",  "log_level" },
	{ "state-dir",          DAEMON_OPTS_LONG_ONLY + 9, "ferryd",  "state_dir" },
	{ "hib-state",          DAEMON_OPTS_LONG_ONLY + 10, "ferryd", "hib_state" },
	{ "hib-pool",           DAEMON_OPTS_LONG_ONLY + 11, "ferryd", "hib_pool" },
	{ "hib-mode",           DAEMON_OPTS_LONG_ONLY + 12, "ferryd", "hib_mode" },
	{ "coordinator",        DAEMON_OPTS_LONG_ONLY + 4, "cluster", "coordinator" },
	{ "report-interval-ms", DAEMON_OPTS_LONG_ONLY + 5, "cluster", "report_interval_ms" },
	{ "down-after-ms",      DAEMON_OPTS_LONG_ONLY + 6, "cluster", "down_after_ms" },
	{ "accept-period-ms",   DAEMON_OPTS_LONG_ONLY + 7, "cluster", "accept_period_ms" },
};

static void usage(FILE *out, const char *prog)
{
	fprintf(out,
		"Usage: %s -c FILE [OPTIONS]\n"
		"Ferry control daemon (one per host): registers with the cluster's coordinator,\n"
		"reports load and memory, supervises the local data-plane processes, and serves\n"
		"ferryctl on a local Unix socket and peers on TCP (cluster secret).\n"
		"\n"
		"  -c, --config FILE               INI file (see ctrl/ferryd.conf.example); flags override it\n"
		"  -h, --help                      this text\n"
		"  -V, --version                   print the version\n"
		"[ferryd]\n"
		"  name         -n, --name NODE          this host, one of the [node NAME] sections (required)\n"
		"  listen       -l, --listen HOST:PORT   TCP for peers (default: this node's address)\n"
		"  unix_socket  -u, --unix-socket PATH   for ferryctl (default %s)\n"
		"  secret_file  -s, --secret-file PATH   cluster secret, mode 0600 (required)\n"
		"  ready_file   -r, --ready-file PATH    written with the TCP port once serving\n"
		"  roles            --roles LIST         sub,main,accept (what this host may do)\n"
		"  allowed_uid      --allowed-uid UID    a non-root uid allowed on the Unix socket\n"
		"  wake_ctl         --wake-ctl ADDR      ferry-wake's control socket (unix:/p, tcp:H:P)\n"
		"  state_dir        --state-dir DIR      ferryd's own state (the VM table, vms.json)\n"
		"  hib_state        --hib-state DIR      the hibernation library's state dir (QEMU guests)\n"
		"  hib_pool         --hib-pool H:P       the ferry-memsrv that keeps hibernation images\n"
		"  hib_mode         --hib-mode pool|file images in the pool, or the seed's state file on disk\n"
		"  migrate_socket   --migrate-socket P   ferry-pager's migration control socket\n"
		"  log_level        --log-level LEVEL    error, warn, info, debug\n"
		"[cluster]\n"
		"  coordinator      --coordinator NODE   the node that keeps the cluster view (required)\n"
		"  report_interval_ms --report-interval-ms N  (default 1000)\n"
		"  down_after_ms    --down-after-ms N    a node is down after this long without a\n"
		"                                        report (default 3 report intervals)\n"
		"  accept_period_ms --accept-period-ms N  the accept-node role moves this often (60000)\n"
		"[node NAME] address=HOST:PORT memsrv=HOST:PORT   [child NAME] exec=PROGRAM ARGS  [vm ID] ip, mac, node, ...\n",
		prog, FERRYD_DEFAULT_UNIX);
}

int ferryd_config_parse(struct ferryd_cfg *cfg, int argc, char **argv, struct ferry_err *err)
{
	static const struct daemon_cli cli = {
		.prog = "ferryd", .version = FERRYD_VERSION, .flags = flags,
		.nflags = sizeof(flags) / sizeof(flags[0]), .usage = usage, .load_file = load_cb,
		.set = ferryd_config_set,
	};

	return daemon_opts_parse(&cli, cfg, argc, argv, stdout, err);
}

const struct ferryd_node_cfg *ferryd_config_node(const struct ferryd_cfg *cfg, const char *name)
{
	for (unsigned int i = 0; i < cfg->nnodes; i++)
		if (strcmp(cfg->node[i].name, name) == 0)
			return &cfg->node[i];
	return NULL;
}

int ferryd_config_validate(struct ferryd_cfg *cfg, struct ferry_err *err)
{
	const char *from = cfg->config_file[0] ? cfg->config_file : "command line";
	const struct ferryd_node_cfg *me;

	if (!cfg->name[0])
		return ferry_err_set(err, EINVAL, "%s: no node name: set [ferryd] name or --name", from);
	if (!cfg->secret_file[0])
		return ferry_err_set(err, EINVAL, "%s: no secret file: set [ferryd] secret_file or --secret-file",
				     from);
	if (!cfg->coordinator[0])
		return ferry_err_set(err, EINVAL, "%s: no coordinator: set [cluster] coordinator or --coordinator",
				     from);
	for (unsigned int i = 0; i < cfg->nnodes; i++)
		if (!cfg->node[i].addr[0])
			return ferry_err_set(err, EINVAL, "%s: [node %s] has no address", from, cfg->node[i].name);
	me = ferryd_config_node(cfg, cfg->name);
	if (!me)
		return ferry_err_set(err, EINVAL, "%s: this node '%s' has no [node %s] section", from, cfg->name,
				     cfg->name);
	if (!ferryd_config_node(cfg, cfg->coordinator))
		return ferry_err_set(err, EINVAL, "%s: coordinator '%s' has no [node %s] section", from,
				     cfg->coordinator, cfg->coordinator);
	if (!cfg->listen[0])
		snprintf(cfg->listen, sizeof(cfg->listen), "%s", me->addr);
	if (!cfg->down_after_ms)
		cfg->down_after_ms = 3 * cfg->report_ms;
	for (unsigned int i = 0; i < cfg->nchildren; i++) {
		struct ferryd_child_cfg *c = &cfg->child[i];

		if (!c->exec[0])
			return ferry_err_set(err, EINVAL, "%s: [child %s] has no exec", from, c->name);
		if (!c->restart_min_ms)
			c->restart_min_ms = 200;
		if (!c->restart_max_ms)
			c->restart_max_ms = 10000;
		if (c->restart_max_ms < c->restart_min_ms)
			c->restart_max_ms = c->restart_min_ms;
	}
	for (unsigned int i = 0; i < cfg->nvms; i++) {
		struct ferryd_vm_cfg *vm = &cfg->vm[i];

		if (!vm->node[0])
			return ferry_err_set(err, EINVAL, "%s: [vm %s] has no node", from, vm->id);
		if (!ferryd_config_node(cfg, vm->node))
			return ferry_err_set(err, EINVAL, "%s: [vm %s] node '%s' is not a [node]", from, vm->id,
					     vm->node);
		if (!vm->state)
			vm->state = FERRY_CTRL_VM_RUNNING;
		if (!vm->announce_timeout_ms)
			vm->announce_timeout_ms = 60000;
	}
	return 0;
}
