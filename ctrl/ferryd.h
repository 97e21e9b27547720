/**
 * @file ferryd.h
 * ferryd, Ferry's control daemon (one per host): what its files share.
 *
 * One poll loop (ferryd_main.c). Everything that waits (peers' replies, hook
 * commands, supervised children, announce probes, incoming shells) is a state
 * in a table that the loop advances; nothing blocks for longer than one send
 * to a slow peer (2 s at most, see ferryd_conn.c), one step with the local
 * ferry-wake (1 s) or one call to the local pager's migration socket when a
 * migration starts. A running migration's progress is polled by a thread of
 * its own (ferryd_migrate.c), which the loop reads under a lock.
 *
 *   ferryd_config.c   INI file + flags (daemon_opts), the static cluster
 *   ferryd_conn.c     sockets: TCP (HMAC handshake) and the local Unix socket
 *                     (SO_PEERCRED), framing, outbound requests to peers
 *   ferryd_serve.c    what each request does (dispatch)
 *   ferryd_cluster.c  node reports, the coordinator's node table, down
 *                     detection, the accept-node role and its epoch
 *   ferryd_score.c    seed-004 scores and the least-loaded node (pure)
 *   ferryd_super.c    supervised data-plane processes (fork/exec, backoff)
 *   ferryd_vms.c      the VM table, hibernate/resume through ferryd_hib.c
 *   ferryd_hib.c      hibernation adapter (hook commands per VM)
 *   ferryd_migrate.c  migration adapter over dataplane/migrate's control API
 *   ferryd_wake.c     proto/wake client to the local ferry-wake
 *
 * Roles: every ferryd reports to the coordinator named in the cluster
 * config; the coordinator (a ferryd like the others) keeps the node table,
 * computes the scores of paper 004 and hands the accept-node role around.
 */
#ifndef FERRY_CTRL_FERRYD_H
#define FERRY_CTRL_FERRYD_H

#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "dataplane/common/auth.h"
#include "dataplane/common/ferry_err.h"
#include "dataplane/common/mono_time.h"
#include "proto/ctrl.h"

#define FERRYD_VERSION         "0.1.0"
#define FERRYD_NAME_LEN        (FERRY_CTRL_NAME_MAX + 1)
#define FERRYD_ADDR_LEN        (FERRY_CTRL_ADDR_MAX + 1)
#define FERRYD_MAX_NODES       FERRY_CTRL_NODES_MAX
#define FERRYD_MAX_CHILDREN    FERRY_CTRL_CHILDREN_MAX
#define FERRYD_MAX_VMS         64
#define FERRYD_MAX_CONNS       64
#define FERRYD_CMD_MAX         1024
#define FERRYD_ARGV_MAX        32
#define FERRYD_DEFAULT_UNIX    "/run/ferry/ferryd.sock"

/* [ferryd] hib_mode: images in the memory pool (hib_hibernate), or the seed's full state file on
 * disk (hib_hibernate_file) that any node sharing the directory can read back. */
#define FERRYD_HIB_POOL 0
#define FERRYD_HIB_FILE 1

/* ---------------------------------------------------------------- config */

struct ferryd_node_cfg {
	char name[FERRYD_NAME_LEN];
	char addr[FERRYD_ADDR_LEN];        /**< HOST:PORT of its ferryd */
	char memsrv[FERRYD_ADDR_LEN];      /**< HOST:PORT of its ferry-memsrv (sub-host role); "" none */
};

struct ferryd_child_cfg {
	char name[FERRYD_NAME_LEN];        /**< [child NAME]: memsrv, pager, wake, ... */
	char exec[FERRYD_CMD_MAX];         /**< program and arguments, split on blanks (no shell) */
	char log[PATH_MAX];                /**< stdout+stderr appended here; "" = ferryd's own */
	char nodes[256];                   /**< comma-separated nodes that run it; "" = every node */
	uint32_t restart_min_ms, restart_max_ms;
};

struct ferryd_vm_cfg {
	char id[FERRYD_NAME_LEN];
	uint8_t ip[4], mac[6];
	char node[FERRYD_NAME_LEN];        /**< where it runs at start */
	uint8_t state;                     /**< RUNNING or HIBERNATED at start */
	char hibernate_cmd[FERRYD_CMD_MAX];/**< /bin/sh -c; FERRY_VM* in the environment */
	char resume_cmd[FERRYD_CMD_MAX];
	char launch_incoming[FERRYD_CMD_MAX]; /**< destination VM shell for a migration */
	uint16_t announce_port;            /**< a resumed VM is running once ip:port accepts */
	uint32_t announce_timeout_ms;      /**< ... within this long, else it is hibernated again (60 s) */
	/* Hibernation library (ferryd_hib.c), used when the VM has no hook commands and [ferryd]
	 * hib_state is set: the VM is the library's VM of the same name in that state dir. */
	char tap[32];                      /**< idle detection: the VM's tap */
	uint32_t idle_after_ms;            /**< hibernate after this long idle; 0 = never by itself */
	char qga_socket[108];              /**< the VM's QEMU guest agent socket ("" = none) */
	/** Guest processes that forbid hibernation, comma-separated (read through qga_socket;
	 *  a VM whose agent does not answer is judged on its tap and CPU alone). */
	char forbid_procs[256];
};

/** Max names in a [vm] forbid_procs list. */
#define FERRYD_FORBID_MAX 16

struct ferryd_cfg {
	char config_file[PATH_MAX];
	char name[FERRYD_NAME_LEN];        /**< this node */
	char listen[FERRYD_ADDR_LEN];      /**< HOST:PORT; default: this node's [node] address */
	char unix_path[108];
	char secret_file[PATH_MAX];
	char ready_file[PATH_MAX];
	char wake_ctl[128];                /**< unix:/path or tcp:HOST:PORT of ferry-wake; "" none */
	char migrate_socket[108];          /**< this node's ferry-pager migration control socket */
	char state_dir[PATH_MAX];          /**< ferryd's own: the VM table (vms.json); "" none */
	char hib_state[PATH_MAX];          /**< the hibernation library's state dir; "" = hooks only */
	char hib_pool[FERRYD_ADDR_LEN];    /**< HOST:PORT of the ferry-memsrv that keeps images */
	char hib_ram_dir[PATH_MAX];        /**< guests' RAM files (default /dev/shm) */
	char hib_image_dir[PATH_MAX];      /**< hib_mode file: where the state files live */
	uint8_t hib_mode;                  /**< FERRYD_HIB_POOL or FERRYD_HIB_FILE */
	uint32_t idle_cpu_pct;             /**< idle only below this share of one CPU (5) */
	uint32_t idle_check_ms;            /**< how often idle VMs are sampled (1000) */
	uint32_t roles;                    /**< FERRY_CTRL_ROLE_SUB | MAIN | ACCEPT */
	int64_t allowed_uid;               /**< besides root, on the Unix socket; -1 none */
	int log_level;
	char coordinator[FERRYD_NAME_LEN];
	uint32_t report_ms, down_after_ms, accept_period_ms, stop_timeout_ms, peer_timeout_ms;
	struct ferryd_node_cfg node[FERRYD_MAX_NODES];
	unsigned int nnodes;
	struct ferryd_child_cfg child[FERRYD_MAX_CHILDREN];
	unsigned int nchildren;
	struct ferryd_vm_cfg vm[FERRYD_MAX_VMS];
	unsigned int nvms;
};

void ferryd_config_defaults(struct ferryd_cfg *cfg);
/** @return 0 = run, 1 = help/version printed, < 0 = error in @p err. */
int ferryd_config_parse(struct ferryd_cfg *cfg, int argc, char **argv, struct ferry_err *err);
/** Checks across keys (this node in the cluster, coordinator known, ...); fills defaults. */
int ferryd_config_validate(struct ferryd_cfg *cfg, struct ferry_err *err);
const struct ferryd_node_cfg *ferryd_config_node(const struct ferryd_cfg *cfg, const char *name);
/** "sub,main" -> bits; -1 on an unknown word. */
int ferryd_parse_roles(const char *s, uint32_t *roles);
/** bits -> "sub,main,accept" */
const char *ferryd_roles_str(uint32_t roles, char *buf, size_t len);

/* ---------------------------------------------------------------- counters */

#define FERRYD_COUNTERS(X)                                                                        \
	X(conns_tcp) X(conns_unix) X(auth_ok) X(auth_failed) X(unauth_refused) X(uid_denied)       \
	X(malformed) X(errors_sent) X(requests) X(registers) X(reports) X(nodes_down)               \
	X(role_changes) X(reports_sent) X(report_failures) X(peer_failures) X(child_starts)         \
	X(child_exits) X(hibernates) X(resumes) X(migrations) X(ops_failed) X(wake_msgs)    \
	X(idle_hibernates) X(resume_retries) X(stale_placements) X(unresumes)

#define FERRYD_FIELD(n) uint64_t n;
struct ferryd_counters { FERRYD_COUNTERS(FERRYD_FIELD) };
#undef FERRYD_FIELD

/* ---------------------------------------------------------------- runtime */

struct ferryd;
struct ferryd_conn;
struct mig_poller;

/**
 * Outbound request finished: @p m is the reply (PROGRESS, OK, ERROR, ...) or
 * NULL when the peer could not be reached or did not answer (@p why says
 * why). Return true to keep the connection for more replies (a PROGRESS
 * stream; or after queueing the next request with ferryd_conn_request).
 */
typedef bool ferryd_reply_fn(struct ferryd *d, struct ferryd_conn *c, const struct ferry_ctrl_msg *m,
			     const char *why);

enum ferryd_conn_kind { CONN_TCP_IN, CONN_UNIX_IN, CONN_OUT };
enum ferryd_conn_state {
	CS_NEW,              /* in: before HELLO */
	CS_CHALLENGED,       /* in: CHALLENGE sent */
	CS_READY,            /* in: authenticated (or Unix); out: authenticated, request sent */
	CS_CONNECTING,       /* out: connect() in progress */
	CS_HELLO_SENT,       /* out */
	CS_AUTH_SENT,        /* out */
};

struct ferryd_conn {
	int fd;
	unsigned int id;
	enum ferryd_conn_kind kind;
	enum ferryd_conn_state state;
	char name[FERRYD_NAME_LEN];        /**< peer: HELLO name, "uid N", or the node we called */
	uid_t uid;                         /**< Unix peers */
	uint8_t nonce_s[FERRY_CTRL_NONCE_LEN], nonce_c[FERRY_CTRL_NONCE_LEN];
	uint64_t deadline_ms;              /**< auth deadline (in) or reply deadline (out) */
	uint32_t timeout_ms;               /**< out: per reply */
	size_t have;
	uint8_t *in;                       /**< FERRY_CTRL_MAX_MSG bytes */
	/* Outbound only. */
	uint8_t *pending;                  /**< request to send once authenticated */
	size_t pending_len;
	ferryd_reply_fn *on_reply;
	unsigned int waiter;               /**< conn id waiting for our result (0 none) */
	uint64_t waiter_req;
	char vm[FERRYD_NAME_LEN];          /**< the VM a relayed request is about */
};

struct ferryd_child {
	const struct ferryd_child_cfg *cfg;
	pid_t pid;
	uint8_t state;                     /**< enum ferry_ctrl_child_state */
	uint32_t restarts;
	uint64_t started_ms, next_start_ms, backoff_ms;
};

/*
 * OP_UNRESUME: a resumed VM that did not announce itself in time is being
 * hibernated again, so that no copy of it keeps running where nobody counts it
 * while the resume is retried elsewhere.
 */
enum ferryd_op { OP_NONE, OP_HIBERNATE, OP_RESUME, OP_ANNOUNCE, OP_UNRESUME, OP_MIGRATE };

struct ferryd_vm {
	struct ferry_ctrl_vm v;            /**< id, state, node, ip, mac */
	const struct ferryd_vm_cfg *cfg;
	enum ferryd_op op;                 /**< what is in flight for it here */
	pid_t op_pid;
	bool op_lib;                       /**< the op runs on the hibernation worker, not a hook */
	char reason[FERRY_CTRL_ERRMSG_MAX];   /**< why the VM is FAILED (or the last failure) */
	char unresume_why[128];            /**< OP_UNRESUME: why the resume is being taken back */
	/* Resume with retries (the node that picked the target): nodes tried so far. */
	bool retry;
	bool picking;                      /**< a resume we relayed is in flight (we pick the next node) */
	char tried[FERRYD_MAX_NODES][FERRYD_NAME_LEN];
	unsigned int ntried;
	uint8_t state_before;
	uint64_t op_deadline_ms, op_started_ms, next_probe_ms;
	unsigned int waiter;               /**< conn id to answer when the op ends */
	uint64_t waiter_req;
	/* Migration (ferryd_migrate.c). */
	struct mig_poller *mig;            /**< source: the poller thread and its migrate_ctl session */
	unsigned int abort_waiter;         /**< source: conn waiting for its ABORT's answer */
	uint64_t abort_req;
	uint8_t mig_mode;
	char mig_main[FERRYD_NAME_LEN];
	uint64_t next_poll_ms;
	bool mig_endpoint;                 /**< source: the main host prepared (it runs a shell) */
	pid_t shell_pid;                   /**< destination: the incoming VM shell we started */
	char shell_source[FERRYD_NAME_LEN];/**< destination: the source of that migration */
	struct ferry_ctrl_migrate *prep;   /**< destination: PREPARE_INCOMING waiting for the shell */
	unsigned int prep_waiter;
	uint64_t prep_req, prep_deadline_ms;
	char ready_file[PATH_MAX];         /**< the shell creates it once registered with the pager */
};

struct ferryd_node {
	struct ferry_ctrl_node info;       /**< name, addr, roles, state, loads, scores */
	bool registered;
	uint64_t last_report_ms;
};

struct ferryd {
	struct ferryd_cfg cfg;
	struct ferry_secret secret;
	int listen_fd, unix_fd, sig_fd;
	char listen_desc[96];
	struct ferryd_conn *conns[FERRYD_MAX_CONNS];
	unsigned int next_conn_id;
	uint64_t next_req;
	uint64_t start_ms;
	uint64_t last_stamp;               /**< the last ferry_ctrl_vm.gen this node gave (ferryd_vm_stamp) */
	bool stopping;
	struct ferryd_counters ctr;

	/* Coordinator only: the node table and the accept role. */
	bool is_coord;
	struct ferryd_node nodes[FERRYD_MAX_NODES];
	unsigned int nnodes;
	uint64_t epoch;
	char accept[FERRYD_NAME_LEN];
	uint64_t next_rotate_ms;

	/* Every node: reporting, and the coordinator's last answer. */
	bool registered;
	uint64_t next_report_ms;
	unsigned int report_conn;          /**< outbound conn of the report in flight (0 none) */
	struct ferry_ctrl_nodes view;      /**< last NODES_OK (the coordinator's own table on it) */
	bool have_view;
	struct ferry_ctrl_vms vm_view;     /**< last VMS_OK from the coordinator */
	bool have_vm_view;

	/* This node's share of the accept role (from ROLE messages). */
	uint64_t role_epoch;
	bool role_held;
	/* The session on which the local ferry-wake sends WAKE_REQUEST (ferryd_wake.c). */
	int wake_fd;
	uint64_t wake_retry_ms;
	size_t wake_have;
	uint8_t *wake_in;

	struct ferryd_child child[FERRYD_MAX_CHILDREN];
	unsigned int nchildren;

	struct ferryd_vm vms[FERRYD_MAX_VMS];
	unsigned int nvms;
	struct ferryd_hib *hib;            /**< the hibernation worker (ferryd_hib.c); NULL none */

	/* Scratch: the loop is single-threaded. */
	struct ferry_ctrl_msg in_msg, out_msg;
	uint8_t out_buf[FERRY_CTRL_MAX_MSG];
};

/* ferryd_conn.c */
int ferryd_listen(struct ferryd *d, struct ferry_err *err);
void ferryd_conns_close(struct ferryd *d);
/**
 * poll() entries for every connection, with the connection's id in @p ids
 * (ids, not pointers: an earlier event of the same round may close one and
 * a new one may take its memory); returns how many.
 */
int ferryd_conns_pollfds(struct ferryd *d, struct pollfd *pfd, unsigned int *ids, int max);
/** An event on a listener (@p id 0) or on connection @p id (ignored if it is gone). */
void ferryd_conns_event(struct ferryd *d, struct pollfd *pfd, unsigned int id);
void ferryd_conns_tick(struct ferryd *d, uint64_t now);
struct ferryd_conn *ferryd_conn_find(struct ferryd *d, unsigned int id);
/** Send @p n bytes of d->out_buf (an encoded message) on @p c; closes it on failure. */
int ferryd_send(struct ferryd *d, struct ferryd_conn *c, int n);
/** Encode d->out_msg and send it. */
int ferryd_send_msg(struct ferryd *d, struct ferryd_conn *c);
int ferryd_send_ok(struct ferryd *d, struct ferryd_conn *c, uint64_t req, uint64_t value);
int ferryd_send_error(struct ferryd *d, struct ferryd_conn *c, uint64_t req, uint32_t code, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
/**
 * Answer conn @p id (if still open) with ERROR; for ops that finish later. Never closes it
 * (callers may still hold it): a peer that is gone is noticed by the next read.
 */
void ferryd_reply_error_to(struct ferryd *d, unsigned int id, uint64_t req, uint32_t code, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
/**
 * Send @p msg to node @p node's ferryd over a new authenticated connection;
 * @p on_reply gets the answer(s). @return the connection, or NULL (then
 * on_reply is not called; @p err says why).
 */
struct ferryd_conn *ferryd_request(struct ferryd *d, const char *node, const struct ferry_ctrl_msg *msg,
				   uint32_t timeout_ms, ferryd_reply_fn *on_reply, struct ferry_err *err);
/** Queue another request on an outbound connection that is READY (from inside on_reply). */
int ferryd_conn_request(struct ferryd *d, struct ferryd_conn *c, const struct ferry_ctrl_msg *msg);
/** Forward @p msg to @p node and pass every reply back to conn @p waiter under @p req. */
int ferryd_relay(struct ferryd *d, unsigned int waiter, uint64_t req, const char *node,
		 const struct ferry_ctrl_msg *msg, uint32_t timeout_ms);

/* ferryd_serve.c */
/** One decoded request from an authenticated (or local) peer; -1 closes the connection. */
int ferryd_dispatch(struct ferryd *d, struct ferryd_conn *c, const struct ferry_ctrl_msg *m);

/* ferryd_cluster.c */
void ferryd_cluster_init(struct ferryd *d);
void ferryd_cluster_tick(struct ferryd *d, uint64_t now);
/** The local node's figures (/proc/loadavg, /proc/meminfo, CPUs). */
int ferryd_local_report(struct ferryd *d, struct ferry_ctrl_report *rp);

/* ferryd_score.c. Seed 004: load score, memory score, score = the higher (per mille, lower = less loaded). */
void ferryd_scores(struct ferry_ctrl_node *nd);
/** Least-loaded up node with all of @p roles, skipping @p skip ("" none); NULL if none. */
const struct ferry_ctrl_node *ferryd_least_loaded(const struct ferry_ctrl_nodes *view, uint32_t roles,
						  const char *skip);
/** Coordinator: apply REGISTER/REPORT from node @p peer; fills d->out_msg with NODES_OK. */
int ferryd_coord_register(struct ferryd *d, const char *peer, const struct ferry_ctrl_register *r,
			  uint32_t *code, char *why, size_t whylen);
int ferryd_coord_report(struct ferryd *d, const char *peer, const struct ferry_ctrl_report *r, uint32_t *code,
			char *why, size_t whylen);
/** NODES_OK of the table (coordinator) or of the cached view into @p out. */
void ferryd_nodes_view(struct ferryd *d, struct ferry_ctrl_nodes *out);
/** A ROLE message for this node. */
int ferryd_role_apply(struct ferryd *d, const struct ferry_ctrl_role *r, uint32_t *code, char *why, size_t whylen);

/* ferryd_super.c */
void ferryd_super_init(struct ferryd *d);
void ferryd_super_tick(struct ferryd *d, uint64_t now);
/** A child exited (from the SIGCHLD reaper); true if it was one of ours. */
bool ferryd_super_reaped(struct ferryd *d, pid_t pid, int status);
/** SIGTERM every child, wait up to stop_timeout_ms, then SIGKILL. */
void ferryd_super_stop(struct ferryd *d);
/**
 * fork/exec helper shared with hook commands: @p argv, or /bin/sh -c @p shell_cmd (then in a
 * process group of its own: signal it with kill(-pid, ...)).
 */
pid_t ferryd_spawn(char *const argv[], const char *shell_cmd, const char *log, char *const extra_env[]);

/* ferryd_vms.c */
/** The VM table from the config, then vms.json and the hibernation library (its worker starts here). */
int ferryd_vms_init(struct ferryd *d, struct ferry_err *err);
struct ferryd_vm *ferryd_vm_find(struct ferryd *d, const char *id);
void ferryd_vms_tick(struct ferryd *d, uint64_t now);
bool ferryd_vms_reaped(struct ferryd *d, pid_t pid, int status);
/** VMS_OK for ferryctl: the coordinator's view merged with local state. */
void ferryd_vms_list(struct ferryd *d, struct ferry_ctrl_vms *out);
/** The VMs that run here, for NODE_REPORT. */
void ferryd_vms_report(struct ferryd *d, struct ferry_ctrl_report *rp);
/** The coordinator's VMS_OK arrived: adopt placements of VMs with nothing in flight here. */
void ferryd_vms_adopt(struct ferryd *d, const struct ferry_ctrl_vms *vs);
/** Coordinator: a VM's placement as a node reported it (REPORT, VM_PLACED). */
void ferryd_vms_placed(struct ferryd *d, const struct ferry_ctrl_vm *v);
/** Tell the coordinator about @p vm's state and node now (not at the next report). */
void ferryd_vm_notify_placed(struct ferryd *d, const struct ferryd_vm *vm);
/** Send VM_PLACED for @p v to @p node (fire and forget: failures are logged). */
void ferryd_forward_placed(struct ferryd *d, const char *node, const struct ferry_ctrl_vm *v);
int ferryd_vm_hibernate(struct ferryd *d, struct ferryd_conn *c, uint64_t req, const struct ferry_ctrl_vm_req *r);
int ferryd_vm_resume(struct ferryd *d, struct ferryd_conn *c, uint64_t req, const struct ferry_ctrl_vm_req *r);
/** RESUME on behalf of conn @p waiter (0: nobody waits, e.g. ferry-wake's WAKE_REQUEST). */
int ferryd_vm_resume_for(struct ferryd *d, unsigned int waiter, uint64_t req, const struct ferry_ctrl_vm_req *r);
/**
 * Change @p vm's state and stamp it (ferryd_vm_stamp); tells the local ferry-wake what it must know when this
 * node holds the accept role.
 */
void ferryd_vm_set_state(struct ferryd *d, struct ferryd_vm *vm, uint8_t state);
/**
 * The stamp (ferry_ctrl_vm.gen) of a change to @p vm made here: rising, from the wall clock, when @p vm is
 * placed on this node; 0 otherwise (only a VM's own node stamps, so stamps of different clocks are never
 * compared).
 */
uint64_t ferryd_vm_stamp(struct ferryd *d, const struct ferryd_vm *vm);

/*
 * ferryd_hib.c: hibernation adapter. A VM with hook commands runs them (0 and *pid of the hook);
 * otherwise, with [ferryd] hib_state, the job goes to the hibernation worker thread (0, *pid 0,
 * vm->op_lib set) and its end is read by ferryd_hib_poll. < 0 with @p err otherwise.
 */
int ferryd_hib_init(struct ferryd *d, struct ferry_err *err);
void ferryd_hib_close(struct ferryd *d);
int ferryd_hib_hibernate(struct ferryd *d, struct ferryd_vm *vm, pid_t *pid, struct ferry_err *err);
int ferryd_hib_resume(struct ferryd *d, struct ferryd_vm *vm, pid_t *pid, struct ferry_err *err);
/** The worker's eventfd (readable when a job ended or a VM went idle); -1 without a worker. */
int ferryd_hib_fd(const struct ferryd *d);
/** Finished jobs: calls ferryd_vms_job_done for each; VMs found idle: ferryd_vms_idle. */
void ferryd_hib_poll(struct ferryd *d);
/** The library's view of VM @p id at start-up: FERRY_CTRL_VM_* or 0 when it does not know it. */
uint8_t ferryd_hib_state(struct ferryd *d, const char *id);
/* ferryd_vms.c, called from ferryd_hib_poll. */
void ferryd_vms_job_done(struct ferryd *d, struct ferryd_vm *vm, int rc, const char *why);
void ferryd_vms_idle(struct ferryd *d, struct ferryd_vm *vm, const char *why);
/* ferryd_vms.c: the VM table in [ferryd] state_dir (vms.json). */
void ferryd_vms_save(struct ferryd *d);

/* ferryd_migrate.c: migration adapter. */
bool ferryd_mig_available(void);
int ferryd_mig_start(struct ferryd *d, struct ferryd_conn *c, uint64_t req, const struct ferry_ctrl_migrate *m);
int ferryd_mig_prepare(struct ferryd *d, struct ferryd_conn *c, uint64_t req, const struct ferry_ctrl_migrate *m);
int ferryd_mig_abort(struct ferryd *d, struct ferryd_conn *c, uint64_t req, const char *vm);
/** Destination: the source @p from says the VM runs there after all: stop the incoming shell. */
void ferryd_mig_source_kept(struct ferryd *d, const char *from, const struct ferry_ctrl_vm *v);
void ferryd_mig_tick(struct ferryd *d, uint64_t now);

/* ferryd_wake.c: the local ferry-wake (proto/wake.h). Best effort: failures are logged and counted. */
/** ROLE_TAKE (after pushing the table of hibernated VMs) or ROLE_DROP. */
int ferryd_wake_role(struct ferryd *d, bool take, uint64_t epoch);
/** Keep the session on which ferry-wake sends WAKE_REQUEST: (re)connect when due. */
void ferryd_wake_tick(struct ferryd *d, uint64_t now);
/** Its fd for poll (-1 when none), and what to do when it is readable. */
int ferryd_wake_fd(const struct ferryd *d);
void ferryd_wake_readable(struct ferryd *d);
void ferryd_wake_close(struct ferryd *d);
int ferryd_wake_vm_add(struct ferryd *d, const struct ferry_ctrl_vm *v);
int ferryd_wake_vm_running(struct ferryd *d, const char *id);

#endif /* FERRY_CTRL_FERRYD_H */
