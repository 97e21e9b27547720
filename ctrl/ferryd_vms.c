/*
 * The VM table and hibernation/resume (issue #6).
 *
 * Every ferryd knows every VM of the cluster config ([vm ID]) with its
 * state and node. The coordinator is the authority on placement: nodes
 * report the VMs that run on them and send VM_PLACED when one changes
 * state; every ferryd adopts the coordinator's view for VMs that have
 * nothing in flight locally.
 *
 * HIBERNATE goes to the VM's node (relayed if it arrives elsewhere), which
 * runs the VM's hibernate hook (ferryd_hib.c). RESUME picks the node: the one
 * asked for, or the least-loaded up node with the main role (seed 004: the
 * resumed VM lands where the score is lowest), and is relayed there; that
 * node runs the resume hook, then waits for the VM to announce itself (its
 * announce_port accepts a TCP connection, i.e. the guest's network is up)
 * before it calls it RUNNING, tells the coordinator, and tells the local
 * ferry-wake VM_RUNNING (so stored SYNs are replayed only to a guest that
 * can answer them).
 */
#include "ctrl/ferryd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "dataplane/common/ferry_log.h"

#define HOOK_TIMEOUT_MS     120000
#define PROBE_EVERY_MS      200

/* ---------------------------------------------------------------- persistence */

/* What was last written to vms.json, to write again only on a change. */
static struct { uint8_t state; char node[FERRYD_NAME_LEN]; } saved[FERRYD_MAX_VMS];
static bool saved_once;

/*
 * [ferryd] state_dir/vms.json: every VM's state and node, written (atomically) whenever one
 * changes, read back at start-up, so a restarted ferryd still knows which VMs are hibernated
 * and where the others run. The library's own records (hib_state: NAME.vm.json and the
 * manifests) say the last word for its VMs: a VM it holds hibernated is hibernated, whatever
 * was in flight when ferryd stopped.
 */
void ferryd_vms_save(struct ferryd *d)
{
	char path[PATH_MAX + 16], tmp[PATH_MAX + 24];
	json_t *root, *arr;
	bool changed = !saved_once;

	if (!d->cfg.state_dir[0])
		return;
	for (unsigned int i = 0; i < d->nvms; i++)
		if (saved[i].state != d->vms[i].v.state || strcmp(saved[i].node, d->vms[i].v.node) != 0)
			changed = true;
	if (!changed)
		return;
	root = json_object();
	arr = json_array();
	for (unsigned int i = 0; i < d->nvms; i++) {
		const struct ferryd_vm *vm = &d->vms[i];

		json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s}", "id", vm->v.id, "state",
						     ferry_ctrl_vm_state_name(vm->v.state), "node", vm->v.node, "reason",
						     vm->reason));
		saved[i].state = vm->v.state;
		snprintf(saved[i].node, sizeof(saved[i].node), "%s", vm->v.node);
	}
	json_object_set_new(root, "vms", arr);
	snprintf(path, sizeof(path), "%s/vms.json", d->cfg.state_dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (json_dump_file(root, tmp, JSON_INDENT(1)) != 0 || rename(tmp, path) != 0)
		LOG_WARN("cannot write %s: %s", path, strerror(errno));
	saved_once = true;
	json_decref(root);
}

static uint8_t state_from_name(const char *s)
{
	for (uint8_t st = 1; st <= FERRY_CTRL_VM_STATE_MAX; st++)
		if (strcmp(ferry_ctrl_vm_state_name(st), s) == 0)
			return st;
	return 0;
}

static int vms_load(struct ferryd *d, struct ferry_err *err)
{
	int rc;

	char path[PATH_MAX + 16];
	json_error_t jerr;
	json_t *root = NULL, *arr, *e;
	size_t k;

	if (d->cfg.state_dir[0]) {
		snprintf(path, sizeof(path), "%s/vms.json", d->cfg.state_dir);
		root = json_load_file(path, 0, &jerr);
		if (!root && access(path, F_OK) == 0)
			LOG_WARN("%s: %s (line %d): starting from the config's VM table", path, jerr.text, jerr.line);
	}
	arr = root ? json_object_get(root, "vms") : NULL;
	json_array_foreach(arr, k, e) {
		const char *id = json_string_value(json_object_get(e, "id"));
		const char *st = json_string_value(json_object_get(e, "state"));
		const char *node = json_string_value(json_object_get(e, "node"));
		const char *why = json_string_value(json_object_get(e, "reason"));
		struct ferryd_vm *vm = id ? ferryd_vm_find(d, id) : NULL;
		uint8_t state = st ? state_from_name(st) : 0;

		if (!vm || !state || !node || strlen(node) >= sizeof(vm->v.node))
			continue;
		/* An op in flight when ferryd stopped did not finish: the library knows better. */
		if (state == FERRY_CTRL_VM_RESUMING)
			state = FERRY_CTRL_VM_HIBERNATED;
		vm->v.state = state;
		snprintf(vm->v.node, sizeof(vm->v.node), "%s", node);
		snprintf(vm->reason, sizeof(vm->reason), "%s", why ? why : "");
	}
	json_decref(root);
	rc = ferryd_hib_init(d, err);
	if (rc)
		return rc;
	if (d->hib) {
		for (unsigned int i = 0; i < d->nvms; i++) {
			struct ferryd_vm *vm = &d->vms[i];
			uint8_t lib = vm->cfg->hibernate_cmd[0] || vm->cfg->resume_cmd[0] ? 0 : ferryd_hib_state(d, vm->v.id);

			if (lib == FERRY_CTRL_VM_HIBERNATED && vm->v.state != FERRY_CTRL_VM_HIBERNATED &&
			    vm->v.state != FERRY_CTRL_VM_FAILED) {
				LOG_INFO("vm %s: the hibernation library holds it hibernated", vm->v.id);
				vm->v.state = FERRY_CTRL_VM_HIBERNATED;
			}
		}
	}
	for (unsigned int i = 0; i < d->nvms; i++)
		LOG_INFO("vm %s: %s on %s", d->vms[i].v.id, ferry_ctrl_vm_state_name(d->vms[i].v.state),
			 d->vms[i].v.node[0] ? d->vms[i].v.node : "-");
	ferryd_vms_save(d);
	return 0;
}

int ferryd_vms_init(struct ferryd *d, struct ferry_err *err)
{
	d->nvms = d->cfg.nvms;
	for (unsigned int i = 0; i < d->nvms; i++) {
		struct ferryd_vm *vm = &d->vms[i];
		const struct ferryd_vm_cfg *vc = &d->cfg.vm[i];

		memset(vm, 0, sizeof(*vm));
		vm->cfg = vc;
		memcpy(vm->v.id, vc->id, sizeof(vm->v.id));       /* same sizes, NUL-terminated */
		memcpy(vm->v.node, vc->node, sizeof(vm->v.node));
		memcpy(vm->v.ip, vc->ip, 4);
		memcpy(vm->v.mac, vc->mac, 6);
		vm->v.state = vc->state;
	}
	return vms_load(d, err);
}

struct ferryd_vm *ferryd_vm_find(struct ferryd *d, const char *id)
{
	for (unsigned int i = 0; i < d->nvms; i++)
		if (strcmp(d->vms[i].v.id, id) == 0)
			return &d->vms[i];
	return NULL;
}

void ferryd_vms_list(struct ferryd *d, struct ferry_ctrl_vms *out)
{
	out->count = 0;
	for (unsigned int i = 0; i < d->nvms && out->count < FERRY_CTRL_VMS_MAX; i++)
		out->vm[out->count++] = d->vms[i].v;
}

void ferryd_vms_report(struct ferryd *d, struct ferry_ctrl_report *rp)
{
	rp->vm_count = 0;
	rp->vms_running = 0;
	for (unsigned int i = 0; i < d->nvms; i++) {
		const struct ferryd_vm *vm = &d->vms[i];

		if (strcmp(vm->v.node, d->cfg.name) != 0)
			continue;
		if (vm->v.state == FERRY_CTRL_VM_RUNNING)
			rp->vms_running++;
		if (rp->vm_count < FERRY_CTRL_REPORT_VMS_MAX)
			rp->vm[rp->vm_count++] = vm->v;
	}
}

void ferryd_vms_placed(struct ferryd *d, const struct ferry_ctrl_vm *v)
{
	struct ferryd_vm *vm = ferryd_vm_find(d, v->id);

	if (!vm) {
		LOG_WARN("placement of unknown VM %s on %s ignored", v->id, v->node);
		return;
	}
	if (vm->op != OP_NONE && strcmp(vm->v.node, d->cfg.name) == 0 && strcmp(v->node, d->cfg.name) != 0)
		return;   /* something is in flight here: ours is newer */
	if (vm->v.state == FERRY_CTRL_VM_FAILED && v->state == FERRY_CTRL_VM_HIBERNATED)
		return;   /* FAILED is hibernated plus "every resume failed": keep saying so */
	if (v->gen && vm->v.gen && v->gen < vm->v.gen && strcmp(vm->v.node, v->node) == 0) {
		/*
		 * Older news from the same node: a report built while the VM was
		 * still resuming there, overtaken by the resume's answer.
		 */
		d->ctr.stale_placements++;
		LOG_DEBUG("vm %s: stale placement from %s (%s, stamp %llu < %llu) ignored", v->id, v->node,
			  ferry_ctrl_vm_state_name(v->state), (unsigned long long)v->gen,
			  (unsigned long long)vm->v.gen);
		return;
	}
	if (vm->v.state != v->state || strcmp(vm->v.node, v->node) != 0)
		LOG_INFO("vm %s: %s on %s -> %s on %s", v->id, ferry_ctrl_vm_state_name(vm->v.state), vm->v.node,
			 ferry_ctrl_vm_state_name(v->state), v->node[0] ? v->node : "-");
	snprintf(vm->v.node, sizeof(vm->v.node), "%s", v->node);
	ferryd_vm_set_state(d, vm, v->state);
	vm->v.gen = v->gen;   /* the placing node's stamp, not ours */
}

void ferryd_vms_adopt(struct ferryd *d, const struct ferry_ctrl_vms *vs)
{
	for (unsigned int i = 0; i < vs->count; i++) {
		struct ferryd_vm *vm = ferryd_vm_find(d, vs->vm[i].id);

		if (!vm || vm->op != OP_NONE)
			continue;
		/* This node is the authority on the VMs that run here. */
		if (strcmp(vm->v.node, d->cfg.name) == 0 && strcmp(vs->vm[i].node, d->cfg.name) == 0)
			continue;
		ferryd_vms_placed(d, &vs->vm[i]);
	}
}

/*
 * Only the node a VM is placed on stamps its changes, so that stamps of one
 * node are compared only with each other (no clock agreement needed between
 * nodes). The wall clock keeps them rising across a restart of this ferryd.
 */
uint64_t ferryd_vm_stamp(struct ferryd *d, const struct ferryd_vm *vm)
{
	uint64_t now;

	if (strcmp(vm->v.node, d->cfg.name) != 0)
		return 0;
	now = ferry_wall_ns();
	d->last_stamp = now > d->last_stamp ? now : d->last_stamp + 1;
	return d->last_stamp;
}

/*
 * Every state change goes through here: the accept node's ferry-wake must
 * know which VMs are hibernated, and hear VM_RUNNING only once a resumed VM
 * runs (a RUNNING placement is published only after the VM announced
 * itself, see op_done).
 */
void ferryd_vm_set_state(struct ferryd *d, struct ferryd_vm *vm, uint8_t state)
{
	uint8_t old = vm->v.state;

	vm->v.state = state;
	vm->v.gen = ferryd_vm_stamp(d, vm);
	if (old == state || !d->role_held)
		return;
	if (state == FERRY_CTRL_VM_HIBERNATED)
		ferryd_wake_vm_add(d, &vm->v);
	else if (state == FERRY_CTRL_VM_RUNNING && (old == FERRY_CTRL_VM_HIBERNATED || old == FERRY_CTRL_VM_RESUMING))
		ferryd_wake_vm_running(d, vm->v.id);
}

/* ---------------------------------------------------------------- replies */

static void reply_vm(struct ferryd *d, unsigned int waiter, uint64_t req, const struct ferryd_vm *vm)
{
	struct ferryd_conn *c = ferryd_conn_find(d, waiter);

	if (!c)
		return;
	memset(&d->out_msg.hdr, 0, sizeof(d->out_msg.hdr));
	d->out_msg.hdr.type = FERRY_CTRL_VMS_OK;
	d->out_msg.hdr.request_id = req;
	d->out_msg.u.vms.count = 1;
	d->out_msg.u.vms.vm[0] = vm->v;
	ferryd_send_msg(d, c);
}

static bool placed_reply(struct ferryd *d, struct ferryd_conn *c, const struct ferry_ctrl_msg *m, const char *why)
{
	(void)d;
	if (!m || m->hdr.type == FERRY_CTRL_ERROR)
		LOG_WARN("VM_PLACED to coordinator %s: %s", c->name, m ? m->u.error.msg : why);
	return false;
}

void ferryd_forward_placed(struct ferryd *d, const char *node, const struct ferry_ctrl_vm *v)
{
	struct ferry_ctrl_msg m = { .hdr = { .type = FERRY_CTRL_VM_PLACED, .request_id = ++d->next_req } };
	struct ferry_err err = { 0 };

	m.u.placed = *v;
	if (!ferryd_request(d, node, &m, 0, placed_reply, &err))
		LOG_WARN("VM_PLACED %s to %s: %s (its next report brings it)", v->id, node, err.msg);
}

/* Tell the coordinator now rather than at the next report (it tells the accept node). */
void ferryd_vm_notify_placed(struct ferryd *d, const struct ferryd_vm *vm)
{
	if (!d->is_coord) {
		ferryd_forward_placed(d, d->cfg.coordinator, &vm->v);
		return;
	}
	/* Our table is the coordinator's: the accept node is the one to tell. */
	if (d->accept[0] && strcmp(d->accept, d->cfg.name) != 0)
		ferryd_forward_placed(d, d->accept, &vm->v);
}

static void resume_next(struct ferryd *d, struct ferryd_vm *vm, unsigned int waiter, uint64_t req);
static void note_failure(struct ferryd_vm *vm, const char *node, const char *why);

static void op_done(struct ferryd *d, struct ferryd_vm *vm, bool ok, const char *why)
{
	enum ferryd_op op = vm->op;
	unsigned int waiter = vm->waiter;
	uint64_t req = vm->waiter_req, ms = ferry_mono_ms() - vm->op_started_ms;

	vm->op = OP_NONE;
	vm->op_pid = 0;
	if (!ok && (op == OP_RESUME || op == OP_ANNOUNCE || op == OP_UNRESUME) && vm->retry) {
		/* We picked this node: the next least-loaded one gets its turn. */
		d->ctr.ops_failed++;
		LOG_WARN("vm %s: resume here failed after %llu ms: %s", vm->v.id, (unsigned long long)ms, why);
		note_failure(vm, d->cfg.name, why);
		ferryd_vm_set_state(d, vm, FERRY_CTRL_VM_HIBERNATED);
		ferryd_vm_notify_placed(d, vm);
		resume_next(d, vm, waiter, req);
		return;
	}
	if (ok)
		vm->retry = false;
	if (!ok) {
		d->ctr.ops_failed++;
		snprintf(vm->reason, sizeof(vm->reason), "%s", why);
		ferryd_vm_set_state(d, vm, op == OP_RESUME || op == OP_ANNOUNCE || op == OP_UNRESUME
						   ? FERRY_CTRL_VM_HIBERNATED
						   : vm->state_before);
		LOG_WARN("vm %s: %s failed after %llu ms: %s", vm->v.id, op == OP_HIBERNATE ? "hibernate" : "resume",
			 (unsigned long long)ms, why);
		ferryd_reply_error_to(d, waiter, req, FERRY_CTRL_E_FAILED, "VM %s: %s", vm->v.id, why);
		ferryd_vm_notify_placed(d, vm);
		return;
	}
	if (op == OP_HIBERNATE) {
		d->ctr.hibernates++;
		LOG_INFO("vm %s hibernated in %llu ms", vm->v.id, (unsigned long long)ms);
		ferryd_vm_set_state(d, vm, FERRY_CTRL_VM_HIBERNATED);
	} else {
		d->ctr.resumes++;
		LOG_INFO("vm %s running on %s, %llu ms after the resume began", vm->v.id, d->cfg.name,
			 (unsigned long long)ms);
		/* Only now (the guest answers): replayed SYNs reach a live stack. */
		ferryd_vm_set_state(d, vm, FERRY_CTRL_VM_RUNNING);
	}
	ferryd_vm_notify_placed(d, vm);
	reply_vm(d, waiter, req, vm);
}

/* ---------------------------------------------------------------- hooks */

/*
 * Hibernating a VM that did not announce itself failed too: it may still run
 * here, so the resume is not tried elsewhere (two copies of one VM on the
 * network); FAILED, with both reasons.
 */
static void unresume_failed(struct ferryd *d, struct ferryd_vm *vm, const char *why)
{
	vm->op = OP_NONE;
	vm->op_pid = 0;
	vm->retry = false;
	vm->picking = false;
	d->ctr.ops_failed++;
	snprintf(vm->reason, sizeof(vm->reason), "%.100s; hibernating it again failed: %.80s (it may still run there)",
		 vm->unresume_why, why);
	ferryd_vm_set_state(d, vm, FERRY_CTRL_VM_FAILED);
	LOG_WARN("vm %s: FAILED: %s", vm->v.id, vm->reason);
	/* BAD_STATE, not FAILED: a node that picked this one passes it on instead of trying the next. */
	ferryd_reply_error_to(d, vm->waiter, vm->waiter_req, FERRY_CTRL_E_BAD_STATE, "VM %s: %s", vm->v.id,
			      vm->reason);
	ferryd_vm_notify_placed(d, vm);
}

/*
 * A resumed VM did not announce itself in time: it runs (or hangs) but does
 * not answer. Hibernate it again (hook or library) before the resume counts
 * as failed, so that a retry on another node does not start a second copy.
 */
static void unresume(struct ferryd *d, struct ferryd_vm *vm)
{
	struct ferry_err err = { 0 };

	snprintf(vm->unresume_why, sizeof(vm->unresume_why),
		 "the VM did not announce itself on port %u within %u ms", vm->cfg->announce_port,
		 vm->cfg->announce_timeout_ms);
	d->ctr.unresumes++;
	if (ferryd_hib_hibernate(d, vm, &vm->op_pid, &err) < 0) {
		vm->op = OP_UNRESUME;
		unresume_failed(d, vm, err.msg);
		return;
	}
	vm->op = OP_UNRESUME;
	vm->op_deadline_ms = ferry_mono_ms() + HOOK_TIMEOUT_MS;
	LOG_WARN("vm %s: %s: hibernating it again", vm->v.id, vm->unresume_why);
}

/* The hook or the library's job succeeded: a resumed VM still has to announce itself. */
static void op_succeeded(struct ferryd *d, struct ferryd_vm *vm)
{
	if (vm->op == OP_UNRESUME) {
		/* Hibernated again: the resume failed, its image is back (the next node may try). */
		op_done(d, vm, false, vm->unresume_why);
		return;
	}
	if (vm->op == OP_RESUME && vm->cfg->announce_port) {
		vm->op = OP_ANNOUNCE;
		vm->op_deadline_ms = ferry_mono_ms() + vm->cfg->announce_timeout_ms;
		vm->next_probe_ms = 0;
		LOG_INFO("vm %s: resumed (%s), waiting for it to announce itself on port %u", vm->v.id,
			 vm->op_lib ? "library" : "hook", vm->cfg->announce_port);
	} else {
		op_done(d, vm, true, NULL);
	}
}

bool ferryd_vms_reaped(struct ferryd *d, pid_t pid, int status)
{
	for (unsigned int i = 0; i < d->nvms; i++) {
		struct ferryd_vm *vm = &d->vms[i];
		char why[96];

		if (vm->shell_pid == pid) {
			vm->shell_pid = 0;
			LOG_WARN("vm %s: its incoming VM shell (pid %d) exited with status 0x%x", vm->v.id, (int)pid,
				 status);
			return true;
		}
		if (vm->op_pid != pid || (vm->op != OP_HIBERNATE && vm->op != OP_RESUME && vm->op != OP_UNRESUME))
			continue;
		vm->op_pid = 0;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			if (WIFEXITED(status))
				snprintf(why, sizeof(why), "%s hook exited %d",
					 vm->op == OP_RESUME ? "resume" : "hibernate", WEXITSTATUS(status));
			else
				snprintf(why, sizeof(why), "%s hook killed by signal %d",
					 vm->op == OP_RESUME ? "resume" : "hibernate",
					 WIFSIGNALED(status) ? WTERMSIG(status) : 0);
			if (vm->op == OP_UNRESUME)
				unresume_failed(d, vm, why);
			else
				op_done(d, vm, false, why);
		} else {
			op_succeeded(d, vm);
		}
		return true;
	}
	return false;
}

/* The hibernation worker finished vm's job (ferryd_hib_poll). */
void ferryd_vms_job_done(struct ferryd *d, struct ferryd_vm *vm, int rc, const char *why)
{
	if (rc && vm->op == OP_UNRESUME)
		unresume_failed(d, vm, why);
	else if (rc)
		op_done(d, vm, false, why);
	else
		op_succeeded(d, vm);
}

/* The worker found vm idle for its idle_after_ms: hibernate it, nobody waiting. */
void ferryd_vms_idle(struct ferryd *d, struct ferryd_vm *vm, const char *why)
{
	struct ferry_err err = { 0 };

	if (vm->op != OP_NONE || vm->v.state != FERRY_CTRL_VM_RUNNING || strcmp(vm->v.node, d->cfg.name) != 0)
		return;
	LOG_INFO("vm %s: %s: hibernating it", vm->v.id, why);
	if (ferryd_hib_hibernate(d, vm, &vm->op_pid, &err) < 0) {
		LOG_WARN("vm %s: idle hibernation: %s", vm->v.id, err.msg);
		return;
	}
	d->ctr.idle_hibernates++;
	vm->op = OP_HIBERNATE;
	vm->state_before = vm->v.state;
	vm->op_started_ms = ferry_mono_ms();
	vm->op_deadline_ms = vm->op_started_ms + HOOK_TIMEOUT_MS;
	vm->waiter = 0;
	vm->waiter_req = 0;
}

/* One non-blocking connect attempt to ip:port, 50 ms at most. */
static bool probe(const uint8_t ip[4], uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct pollfd pfd;
	int fd, soerr = 0;
	socklen_t sl = sizeof(soerr);
	bool ok = false;

	memcpy(&sa.sin_addr, ip, 4);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		ok = true;
	} else if (errno == EINPROGRESS) {
		pfd = (struct pollfd){ .fd = fd, .events = POLLOUT };
		if (poll(&pfd, 1, 50) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && !soerr)
			ok = true;
	}
	close(fd);
	return ok;
}

void ferryd_vms_tick(struct ferryd *d, uint64_t now)
{
	ferryd_hib_poll(d);
	ferryd_vms_save(d);
	for (unsigned int i = 0; i < d->nvms; i++) {
		struct ferryd_vm *vm = &d->vms[i];

		if (vm->op == OP_NONE || vm->op == OP_MIGRATE)
			continue;
		if (now >= vm->op_deadline_ms) {
			const char *why = vm->op_lib ? "the hibernation library did not finish in time" : "hook timed out";

			if (vm->op == OP_ANNOUNCE) {
				unresume(d, vm);
				continue;
			}
			if (vm->op_pid > 0)
				kill(-vm->op_pid, SIGKILL);   /* reaped later; its status no longer matters */
			vm->op_pid = 0;
			if (vm->op == OP_UNRESUME)
				unresume_failed(d, vm, why);
			else
				op_done(d, vm, false, why);
			continue;
		}
		if (vm->op == OP_ANNOUNCE && now >= vm->next_probe_ms) {
			vm->next_probe_ms = now + PROBE_EVERY_MS;
			if (probe(vm->v.ip, vm->cfg->announce_port))
				op_done(d, vm, true, NULL);
		}
	}
}

/* ---------------------------------------------------------------- requests */

int ferryd_vm_hibernate(struct ferryd *d, struct ferryd_conn *c, uint64_t req, const struct ferry_ctrl_vm_req *r)
{
	struct ferryd_vm *vm = ferryd_vm_find(d, r->vm);
	struct ferry_ctrl_msg m = { .hdr = { .type = FERRY_CTRL_HIBERNATE, .request_id = req } };
	struct ferry_err err = { 0 };

	if (!vm)
		return ferryd_send_error(d, c, req, FERRY_CTRL_E_UNKNOWN_VM, "unknown VM %s", r->vm);
	if (strcmp(vm->v.node, d->cfg.name) != 0) {
		m.u.vm_req = *r;
		ferryd_relay(d, c->id, req, vm->v.node, &m, HOOK_TIMEOUT_MS);
		return 0;
	}
	if (vm->op != OP_NONE)
		return ferryd_send_error(d, c, req, FERRY_CTRL_E_BUSY, "VM %s: an operation is in flight", r->vm);
	if (vm->v.state != FERRY_CTRL_VM_RUNNING)
		return ferryd_send_error(d, c, req, FERRY_CTRL_E_BAD_STATE, "VM %s is %s, not running", r->vm,
					 ferry_ctrl_vm_state_name(vm->v.state));
	if (ferryd_hib_hibernate(d, vm, &vm->op_pid, &err) < 0)
		return ferryd_send_error(d, c, req, err.code == -ENOSYS ? FERRY_CTRL_E_NOT_AVAILABLE : FERRY_CTRL_E_FAILED,
					 "VM %s: %s", r->vm, err.msg);
	vm->op = OP_HIBERNATE;
	vm->state_before = vm->v.state;
	vm->op_started_ms = ferry_mono_ms();
	vm->op_deadline_ms = vm->op_started_ms + HOOK_TIMEOUT_MS;
	vm->waiter = c->id;
	vm->waiter_req = req;
	LOG_INFO("vm %s: hibernating (hook pid %d)", vm->v.id, (int)vm->op_pid);
	return 0;
}

/* Errors of a request whose asker may be gone (waiter 0: a wake request): answer if still there. */
#define REFUSE(code, ...)                                                  \
	do {                                                               \
		LOG_WARN("resume refused: " __VA_ARGS__);                   \
		ferryd_reply_error_to(d, waiter, req, (code), __VA_ARGS__); \
		return 0;                                                  \
	} while (0)

static bool tried(const struct ferryd_vm *vm, const char *node)
{
	for (unsigned int i = 0; i < vm->ntried; i++)
		if (strcmp(vm->tried[i], node) == 0)
			return true;
	return false;
}

/*
 * Every node tried failed to resume vm: FAILED (still hibernated: its image is where it was,
 * and the next access or `ferryctl resume` tries again), with the reasons.
 */
static void resume_give_up(struct ferryd *d, struct ferryd_vm *vm, unsigned int waiter, uint64_t req)
{
	vm->retry = false;
	vm->picking = false;
	ferryd_vm_set_state(d, vm, FERRY_CTRL_VM_FAILED);
	LOG_WARN("vm %s: FAILED: %s", vm->v.id, vm->reason);
	ferryd_reply_error_to(d, waiter, req, FERRY_CTRL_E_FAILED, "VM %s failed to resume on %u node%s: %s", vm->v.id,
			      vm->ntried, vm->ntried == 1 ? "" : "s", vm->reason);
	ferryd_vm_notify_placed(d, vm);
}

static void note_failure(struct ferryd_vm *vm, const char *node, const char *why)
{
	size_t l = strlen(vm->reason);
	int n;

	/* Reasons of every node tried, cut at the buffer's end (an ERROR carries 256 bytes at most). */
	n = snprintf(vm->reason + l, sizeof(vm->reason) - l, "%s%s: ", l ? "; " : "", node);
	if (n > 0 && (size_t)n < sizeof(vm->reason) - l) {
		l += (size_t)n;
		strncat(vm->reason + l, why, sizeof(vm->reason) - l - 1);
	}
}

static int resume_on(struct ferryd *d, struct ferryd_vm *vm, unsigned int waiter, uint64_t req, const char *target);

/* The next least-loaded main node not tried yet, or give up. */
static void resume_next(struct ferryd *d, struct ferryd_vm *vm, unsigned int waiter, uint64_t req)
{
	struct ferry_ctrl_nodes *view = &d->out_msg.u.nodes;
	const struct ferry_ctrl_node *best;
	char target[FERRYD_NAME_LEN];

	ferryd_nodes_view(d, view);
	for (unsigned int i = 0; i < view->count; i++)
		if (tried(vm, view->node[i].name))
			view->node[i].state = FERRY_CTRL_NODE_DOWN;   /* out of the running */
	best = ferryd_least_loaded(view, FERRY_CTRL_ROLE_MAIN, NULL);
	if (!best || vm->ntried >= FERRYD_MAX_NODES) {
		if (vm->ntried == 0) {
			vm->picking = false;
			ferryd_reply_error_to(d, waiter, req, FERRY_CTRL_E_NODE_DOWN,
					      "VM %s: no up node with the main role to resume on", vm->v.id);
			return;
		}
		resume_give_up(d, vm, waiter, req);
		return;
	}
	snprintf(target, sizeof(target), "%s", best->name);
	if (vm->ntried) {
		d->ctr.resume_retries++;
		LOG_INFO("vm %s: retrying the resume on %s (score %u)", vm->v.id, target, best->score);
	} else {
		LOG_INFO("vm %s: resuming on %s, the least-loaded node (score %u)", vm->v.id, target, best->score);
	}
	snprintf(vm->tried[vm->ntried++], FERRYD_NAME_LEN, "%s", target);
	resume_on(d, vm, waiter, req, target);
}

/* What the node we sent a retried RESUME to answered. */
static bool resume_reply(struct ferryd *d, struct ferryd_conn *c, const struct ferry_ctrl_msg *m, const char *why)
{
	struct ferryd_vm *vm = ferryd_vm_find(d, c->vm);
	struct ferryd_conn *w = ferryd_conn_find(d, c->waiter);

	if (!vm)
		return false;
	if (m && m->hdr.type == FERRY_CTRL_VMS_OK) {
		vm->picking = false;
		vm->retry = false;
		vm->reason[0] = '\0';
		if (m->u.vms.count == 1)
			ferryd_vms_placed(d, &m->u.vms.vm[0]);
		if (w) {
			d->out_msg = *m;
			d->out_msg.hdr.request_id = c->waiter_req;
			ferryd_send_msg(d, w);
		}
		return false;
	}
	if (m && m->hdr.type == FERRY_CTRL_ERROR &&
	    (m->u.error.code == FERRY_CTRL_E_BUSY || m->u.error.code == FERRY_CTRL_E_BAD_STATE)) {
		/* Not a failure of that node: the VM is in someone else's hands. Pass it on. */
		vm->picking = false;
		ferryd_reply_error_to(d, c->waiter, c->waiter_req, m->u.error.code, "%s", m->u.error.msg);
		return false;
	}
	if (!m)
		d->ctr.peer_failures++;
	note_failure(vm, c->name, m ? (m->hdr.type == FERRY_CTRL_ERROR ? m->u.error.msg : "unexpected answer")
				    : (why ? why : "no answer"));
	LOG_WARN("vm %s: resume on %s failed: %s", vm->v.id, c->name,
		 m && m->hdr.type == FERRY_CTRL_ERROR ? m->u.error.msg : why ? why : "no answer");
	ferryd_vm_set_state(d, vm, FERRY_CTRL_VM_HIBERNATED);
	resume_next(d, vm, c->waiter, c->waiter_req);
	return false;
}

static int resume_on(struct ferryd *d, struct ferryd_vm *vm, unsigned int waiter, uint64_t req, const char *target)
{
	struct ferry_ctrl_msg m = { .hdr = { .type = FERRY_CTRL_RESUME, .request_id = ++d->next_req } };
	struct ferry_err err = { 0 };
	struct ferryd_conn *c;

	if (strcmp(target, d->cfg.name) == 0) {
		if (!(d->cfg.roles & FERRY_CTRL_ROLE_MAIN)) {
			note_failure(vm, target, "no main role: it runs no VMs");
			resume_next(d, vm, waiter, req);
			return 0;
		}
		if (ferryd_hib_resume(d, vm, &vm->op_pid, &err) < 0) {
			note_failure(vm, target, err.msg);
			if (!vm->retry) {
				ferryd_reply_error_to(d, waiter, req, err.code == -ENOSYS ? FERRY_CTRL_E_NOT_AVAILABLE
											 : FERRY_CTRL_E_FAILED,
						      "VM %s: %s", vm->v.id, err.msg);
				return 0;
			}
			resume_next(d, vm, waiter, req);
			return 0;
		}
		vm->picking = false;
		vm->op = OP_RESUME;
		vm->state_before = vm->v.state;
		snprintf(vm->v.node, sizeof(vm->v.node), "%s", d->cfg.name);
		ferryd_vm_set_state(d, vm, FERRY_CTRL_VM_RESUMING);
		vm->op_started_ms = ferry_mono_ms();
		vm->op_deadline_ms = vm->op_started_ms + HOOK_TIMEOUT_MS;
		vm->waiter = waiter;
		vm->waiter_req = req;
		LOG_INFO("vm %s: resuming here (%s)", vm->v.id, vm->op_lib ? "hibernation library" : "hook");
		ferryd_vm_notify_placed(d, vm);
		return 0;
	}
	if (!vm->retry) {
		/* --on NODE: that node and no other; its answer goes back as it is. */
		m.hdr.request_id = req;
		snprintf(m.u.vm_req.vm, sizeof(m.u.vm_req.vm), "%s", vm->v.id);
		snprintf(m.u.vm_req.node, sizeof(m.u.vm_req.node), "%s", target);
		ferryd_relay(d, waiter, req, target, &m, 2 * HOOK_TIMEOUT_MS + vm->cfg->announce_timeout_ms);
		return 0;
	}
	snprintf(m.u.vm_req.vm, sizeof(m.u.vm_req.vm), "%s", vm->v.id);
	snprintf(m.u.vm_req.node, sizeof(m.u.vm_req.node), "%s", target);
	vm->picking = true;
	/* resume, announce, and perhaps hibernating it again there */
	c = ferryd_request(d, target, &m, 2 * HOOK_TIMEOUT_MS + vm->cfg->announce_timeout_ms, resume_reply, &err);
	if (!c) {
		note_failure(vm, target, err.msg);
		resume_next(d, vm, waiter, req);
		return 0;
	}
	c->waiter = waiter;
	c->waiter_req = req;
	snprintf(c->vm, sizeof(c->vm), "%s", vm->v.id);
	LOG_INFO("RESUME of %s sent to %s for conn %u", vm->v.id, target, waiter);
	return 0;
}

int ferryd_vm_resume_for(struct ferryd *d, unsigned int waiter, uint64_t req, const struct ferry_ctrl_vm_req *r)
{
	struct ferryd_vm *vm = ferryd_vm_find(d, r->vm);

	if (!vm)
		REFUSE(FERRY_CTRL_E_UNKNOWN_VM, "unknown VM %s", r->vm);
	if (vm->op != OP_NONE || vm->picking)
		REFUSE(FERRY_CTRL_E_BUSY, "VM %s: an operation is in flight", r->vm);
	/*
	 * A node that picked us after its own attempt failed may not have told us yet that the VM is
	 * hibernated again (its VM_PLACED travels on another connection): RESUMING elsewhere, with
	 * nothing in flight here, is fine when the request names this node. The library's per-VM
	 * lock and state refuse a VM that really runs.
	 */
	if (vm->v.state != FERRY_CTRL_VM_HIBERNATED && vm->v.state != FERRY_CTRL_VM_FAILED &&
	    !(vm->v.state == FERRY_CTRL_VM_RESUMING && strcmp(r->node, d->cfg.name) == 0 &&
	      strcmp(vm->v.node, d->cfg.name) != 0))
		REFUSE(FERRY_CTRL_E_BAD_STATE, "VM %s is %s, not hibernated", r->vm, ferry_ctrl_vm_state_name(vm->v.state));
	vm->reason[0] = '\0';
	vm->ntried = 0;
	if (!r->node[0]) {
		/* Seed 004: the least-loaded node; a node that fails is followed by the next one. */
		vm->retry = true;
		resume_next(d, vm, waiter, req);
		return 0;
	}
	if (!ferryd_config_node(&d->cfg, r->node))
		REFUSE(FERRY_CTRL_E_UNKNOWN_NODE, "node %s is not in the cluster", r->node);
	vm->retry = false;
	return resume_on(d, vm, waiter, req, r->node);
}
#undef REFUSE

int ferryd_vm_resume(struct ferryd *d, struct ferryd_conn *c, uint64_t req, const struct ferry_ctrl_vm_req *r)
{
	return ferryd_vm_resume_for(d, c->id, req, r);
}
