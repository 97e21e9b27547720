/*
 * Migration adapter: ferryd's side of split migration (issue 5), over
 * ferry-pager's migration control socket (dataplane/migrate/migrate_ctl.h).
 *
 *   ferryctl migrate VM --to MAIN --sub-hosts A,B
 *     -> the source ferryd (where VM runs; ferryd_serve.c relays it there):
 *        VM MIGRATING, PROGRESS(preparing) to ferryctl at once
 *     -> PREPARE_INCOMING at MAIN's ferryd: it starts the destination VM
 *        shell from [vm ID] launch_incoming (/bin/sh -c, FERRY_VM... in the
 *        environment), resolves the sub-hosts' memory servers ([node A]
 *        memsrv) and calls mig_ctl_prepare_incoming on its pager
 *     -> ENDPOINT (host, port, token) back to the source
 *     -> the source calls mig_ctl_start on its own pager, then polls
 *        mig_ctl_status every POLL_MS and streams PROGRESS (phase, round,
 *        pages sent / skipped / remaining) to ferryctl until DONE, FAILED or
 *        ABORTED (the final one); on DONE the VM is placed on MAIN.
 *   ferryctl abort VM -> the source ferryd -> mig_ctl_abort (refused after
 *        switch-over: the VM already runs at the destination).
 *
 * The mig_ctl calls block for at most the socket timeout (5 s) on a local
 * Unix socket; the pager answers at once in practice.
 *
 * Built without dataplane/migrate (no ferry_migrate_ctl target), every
 * entry point answers ERROR(NOT_AVAILABLE) "migration engine not available"
 * after the checks that do not need the engine.
 */
#include "ctrl/ferryd.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/common/ferry_log.h"

#define NOT_BUILT "migration engine not available: this ferryd was built without dataplane/migrate"

#ifdef FERRY_HAVE_MIGRATE
#include "dataplane/migrate/migrate_ctl.h"

#define POLL_MS 200
#define SHELL_READY_MS 30000

_Static_assert(FERRY_CTRL_TOKEN_LEN == MIG_TOKEN_LEN, "ENDPOINT carries mig_endpoint's token");
_Static_assert((int)FERRY_CTRL_MODE_PRECOPY == (int)MIG_MODE_PRECOPY &&
		       (int)FERRY_CTRL_MODE_POSTCOPY == (int)MIG_MODE_POSTCOPY &&
		       (int)FERRY_CTRL_MODE_PLANNED == (int)MIG_MODE_PLANNED,
	       "modes are the engine's");

bool ferryd_mig_available(void)
{
	return true;
}

static int ctl_open(struct ferryd *d, struct mig_ctl **ctl, struct ferry_err *err)
{
	if (!d->cfg.migrate_socket[0])
		return ferry_err_set(err, ENOENT, "%s has no [ferryd] migrate_socket (its ferry-pager's migration socket)",
				     d->cfg.name);
	return mig_ctl_connect(d->cfg.migrate_socket, ctl, err);
}

static uint8_t phase_of(enum mig_phase p)
{
	switch (p) {
	case MIG_PH_IDLE:
	case MIG_PH_SETUP: return FERRY_CTRL_PHASE_PREPARING;
	case MIG_PH_PRECOPY: return FERRY_CTRL_PHASE_PRECOPY;
	case MIG_PH_STOP:
	case MIG_PH_SWITCHOVER: return FERRY_CTRL_PHASE_STOPCOPY;
	case MIG_PH_POSTCOPY: return FERRY_CTRL_PHASE_POSTCOPY;
	case MIG_PH_DONE: return FERRY_CTRL_PHASE_DONE;
	case MIG_PH_FAILED: return FERRY_CTRL_PHASE_FAILED;
	case MIG_PH_ABORTED: return FERRY_CTRL_PHASE_ABORTED;
	}
	return FERRY_CTRL_PHASE_FAILED;
}

/*
 * The source pager answers its control socket between batches of page
 * traffic, so a status call can take a second on a slow link: each
 * migration's mig_ctl session belongs to a poller thread of its own (one
 * mig_ctl per thread, as migrate_ctl.h wants), and the loop only reads what
 * it last saw, under the lock. Aborts go through the same thread.
 */
struct mig_poller {
	pthread_t thread;
	pthread_mutex_t lock;
	struct mig_ctl *ctl;                 /* the thread's own */
	char vm[FERRYD_NAME_LEN];
	/* Under lock. */
	struct mig_progress p;
	bool have, final, failed, stop;
	char why[FERRY_ERR_MSG_MAX];
	bool abort_wanted, abort_done;
	int abort_rc;
	char abort_msg[FERRY_ERR_MSG_MAX];
};

static void *poller_main(void *arg)
{
	struct mig_poller *pl = arg;

	for (;;) {
		struct ferry_err err = { 0 };
		struct mig_progress p;
		bool stop, abort_wanted;
		int rc;

		pthread_mutex_lock(&pl->lock);
		stop = pl->stop;
		abort_wanted = pl->abort_wanted && !pl->abort_done;
		pthread_mutex_unlock(&pl->lock);
		if (stop)
			return NULL;
		if (abort_wanted) {
			rc = mig_ctl_abort(pl->ctl, pl->vm, &err);
			pthread_mutex_lock(&pl->lock);
			pl->abort_done = true;
			pl->abort_rc = rc;
			snprintf(pl->abort_msg, sizeof(pl->abort_msg), "%s", err.msg);
			pthread_mutex_unlock(&pl->lock);
			continue;
		}
		rc = mig_ctl_status(pl->ctl, pl->vm, &p, &err);
		pthread_mutex_lock(&pl->lock);
		if (rc < 0) {
			pl->failed = pl->final = true;
			snprintf(pl->why, sizeof(pl->why), "%s", err.msg);
		} else {
			pl->p = p;
			pl->have = true;
			pl->final = p.phase == MIG_PH_DONE || p.phase == MIG_PH_FAILED || p.phase == MIG_PH_ABORTED;
		}
		stop = pl->final;
		pthread_mutex_unlock(&pl->lock);
		if (stop)
			return NULL;
		nanosleep(&(struct timespec){ .tv_nsec = POLL_MS * 1000000L }, NULL);
	}
}

static struct mig_poller *poller_start(struct mig_ctl *ctl, const char *vm, struct ferry_err *err)
{
	struct mig_poller *pl = calloc(1, sizeof(*pl));
	int rc;

	if (!pl) {
		ferry_err_set(err, ENOMEM, "out of memory");
		return NULL;
	}
	pl->ctl = ctl;
	snprintf(pl->vm, sizeof(pl->vm), "%s", vm);
	pthread_mutex_init(&pl->lock, NULL);
	rc = pthread_create(&pl->thread, NULL, poller_main, pl);
	if (rc) {
		pthread_mutex_destroy(&pl->lock);
		free(pl);
		ferry_err_set(err, rc, "pthread_create: %s", strerror(rc));
		return NULL;
	}
	return pl;
}

/* Stop and join the poller, close its session. */
static void poller_end(struct mig_poller *pl)
{
	pthread_mutex_lock(&pl->lock);
	pl->stop = true;
	pthread_mutex_unlock(&pl->lock);
	pthread_join(pl->thread, NULL);
	mig_ctl_close(pl->ctl);
	pthread_mutex_destroy(&pl->lock);
	free(pl);
}

static void send_progress(struct ferryd *d, struct ferryd_vm *vm, uint8_t phase, const struct mig_progress *p)
{
	struct ferryd_conn *c = ferryd_conn_find(d, vm->waiter);
	struct ferry_ctrl_progress *pr = &d->out_msg.u.progress;

	if (!c)
		return;   /* ferryctl left; the migration goes on */
	memset(&d->out_msg.hdr, 0, sizeof(d->out_msg.hdr));
	memset(pr, 0, sizeof(*pr));
	d->out_msg.hdr.type = FERRY_CTRL_PROGRESS;
	d->out_msg.hdr.request_id = vm->waiter_req;
	pr->phase = phase;
	if (phase == FERRY_CTRL_PHASE_DONE || phase == FERRY_CTRL_PHASE_FAILED || phase == FERRY_CTRL_PHASE_ABORTED)
		pr->flags = FERRY_CTRL_PROGRESS_FINAL;
	if (p) {
		pr->round = p->round;
		pr->pages_sent = p->pages_sent;
		pr->pages_skipped = p->pages_skipped_unused;
		pr->pages_remaining = p->pages_remaining;
		pr->pages_total = p->pages_total;
		pr->bytes_sent = p->bytes_sent;
	}
	pr->elapsed_ms = ferry_mono_ms() - vm->op_started_ms;
	snprintf(pr->vm, sizeof(pr->vm), "%s", vm->v.id);
	ferryd_send_msg(d, c);
}

/* The migration ended here (source side): state back or moved, coordinator told. */
static void mig_end(struct ferryd *d, struct ferryd_vm *vm, bool moved)
{
	if (vm->mig)
		poller_end(vm->mig);
	vm->mig = NULL;
	vm->abort_waiter = 0;
	vm->op = OP_NONE;
	vm->v.state = FERRY_CTRL_VM_RUNNING;
	if (moved) {
		snprintf(vm->v.node, sizeof(vm->v.node), "%s", vm->mig_main);
		d->ctr.migrations++;
	}
	vm->v.gen = ferryd_vm_stamp(d, vm);   /* 0 once handed over: the main host stamps from now on */
	if (!moved) {
		d->ctr.ops_failed++;
		/* The main host runs a shell waiting for this VM: it is not coming. */
		if (vm->mig_endpoint)
			ferryd_forward_placed(d, vm->mig_main, &vm->v);
	}
	vm->mig_endpoint = false;
	ferryd_vm_notify_placed(d, vm);
}

/* A failure before the engine reports progress: ERROR to ferryctl, the VM stays. */
static void mig_fail(struct ferryd *d, struct ferryd_vm *vm, uint32_t code, const char *msg)
{
	LOG_WARN("vm %s: migration to %s failed: %s", vm->v.id, vm->mig_main, msg);
	ferryd_reply_error_to(d, vm->waiter, vm->waiter_req, code, "migrate %s: %s", vm->v.id, msg);
	mig_end(d, vm, false);
}

static bool prepare_reply(struct ferryd *d, struct ferryd_conn *c, const struct ferry_ctrl_msg *m, const char *why)
{
	struct ferryd_vm *vm = ferryd_vm_find(d, c->vm);
	struct ferry_err err = { 0 };
	struct mig_endpoint ep;
	struct mig_ctl *ctl = NULL;
	/* Room for the peer's whole message and ours; ERROR cuts it to its limit anyway. */
	char msg[FERRY_CTRL_ERRMSG_MAX + FERRY_ERR_MSG_MAX + 96];

	if (!vm || vm->op != OP_MIGRATE || vm->mig)
		return false;   /* aborted meanwhile */
	if (!m) {
		snprintf(msg, sizeof(msg), "main host %s: %s", c->name, why ? why : "no answer");
		mig_fail(d, vm, FERRY_CTRL_E_NODE_DOWN, msg);
		return false;
	}
	if (m->hdr.type == FERRY_CTRL_ERROR) {
		snprintf(msg, sizeof(msg), "main host %s: %s", c->name, m->u.error.msg);
		mig_fail(d, vm, m->u.error.code, msg);
		return false;
	}
	if (m->hdr.type != FERRY_CTRL_ENDPOINT) {
		snprintf(msg, sizeof(msg), "main host %s answered %s", c->name, ferry_ctrl_type_name(m->hdr.type));
		mig_fail(d, vm, FERRY_CTRL_E_UNEXPECTED, msg);
		return false;
	}
	vm->mig_endpoint = true;
	memset(&ep, 0, sizeof(ep));
	if (strlen(m->u.endpoint.host) >= sizeof(ep.host)) {
		mig_fail(d, vm, FERRY_CTRL_E_BAD_ADDR, "the main host's endpoint address is too long");
		return false;
	}
	memcpy(ep.host, m->u.endpoint.host, strlen(m->u.endpoint.host) + 1);
	ep.port = m->u.endpoint.port;
	memcpy(ep.token, m->u.endpoint.token, MIG_TOKEN_LEN);
	if (ctl_open(d, &ctl, &err) < 0 || mig_ctl_start(ctl, vm->v.id, &ep, (enum mig_mode)vm->mig_mode, &err) < 0) {
		if (ctl)
			mig_ctl_close(ctl);
		snprintf(msg, sizeof(msg), "source pager: %s", err.msg);
		mig_fail(d, vm, FERRY_CTRL_E_FAILED, msg);
		return false;
	}
	vm->mig = poller_start(ctl, vm->v.id, &err);
	if (!vm->mig) {
		mig_ctl_close(ctl);
		snprintf(msg, sizeof(msg), "progress poller: %s", err.msg);
		mig_fail(d, vm, FERRY_CTRL_E_INTERNAL, msg);
		return false;
	}
	LOG_INFO("vm %s: migrating to %s (%s:%u, %s)", vm->v.id, vm->mig_main, ep.host, ep.port,
		 ferry_ctrl_mode_name(vm->mig_mode));
	return false;
}

int ferryd_mig_start(struct ferryd *d, struct ferryd_conn *c, uint64_t req, const struct ferry_ctrl_migrate *m)
{
	struct ferryd_vm *vm = ferryd_vm_find(d, m->vm);
	struct ferry_ctrl_msg msg = { .hdr = { .type = FERRY_CTRL_PREPARE_INCOMING, .request_id = ++d->next_req } };
	struct ferry_err err = { 0 };
	struct ferryd_conn *pc;

	if (m->sub_count > MIG_SUBHOSTS_MAX)
		return ferryd_send_error(d, c, req, FERRY_CTRL_E_TOO_LARGE, "at most %d sub-hosts", MIG_SUBHOSTS_MAX);
	if (!d->cfg.migrate_socket[0])
		return ferryd_send_error(d, c, req, FERRY_CTRL_E_NOT_AVAILABLE,
					 "%s has no [ferryd] migrate_socket (its ferry-pager's migration socket)",
					 d->cfg.name);
	vm->op = OP_MIGRATE;
	vm->state_before = vm->v.state;
	vm->v.state = FERRY_CTRL_VM_MIGRATING;
	vm->mig_mode = m->mode;
	snprintf(vm->mig_main, sizeof(vm->mig_main), "%s", m->main);
	vm->op_started_ms = ferry_mono_ms();
	vm->waiter = c->id;
	vm->waiter_req = req;
	send_progress(d, vm, FERRY_CTRL_PHASE_PREPARING, NULL);

	msg.u.migrate = *m;
	snprintf(msg.u.migrate.source, sizeof(msg.u.migrate.source), "%s", d->cfg.name);
	pc = ferryd_request(d, m->main, &msg, 0, prepare_reply, &err);
	if (!pc) {
		mig_fail(d, vm, FERRY_CTRL_E_NODE_DOWN, err.msg);
		return 0;
	}
	snprintf(pc->vm, sizeof(pc->vm), "%s", vm->v.id);
	LOG_INFO("vm %s: migration to %s requested (%u sub-hosts, %s)", vm->v.id, m->main, m->sub_count,
		 ferry_ctrl_mode_name(m->mode));
	return 0;
}

/* The pager part of PREPARE_INCOMING, once the shell (if any) registered: ENDPOINT or ERROR to @waiter. */
static void prepare_now(struct ferryd *d, struct ferryd_vm *vm, unsigned int waiter, uint64_t req,
			const struct ferry_ctrl_migrate *m)
{
	struct mig_subhost subs[MIG_SUBHOSTS_MAX];
	struct ferry_ctrl_endpoint *out = &d->out_msg.u.endpoint;
	struct ferry_err err = { 0 };
	struct mig_endpoint ep;
	struct mig_ctl *ctl = NULL;
	struct ferryd_conn *c;
	int rc;

	for (unsigned int i = 0; i < m->sub_count; i++) {
		const struct ferryd_node_cfg *nc = ferryd_config_node(&d->cfg, m->sub[i]);
		const char *colon = strrchr(nc->memsrv, ':');   /* checked by ferryd_mig_prepare */

		snprintf(subs[i].host, sizeof(subs[i].host), "%.*s", (int)(colon - nc->memsrv), nc->memsrv);
		subs[i].port = (uint16_t)atoi(colon + 1);
	}
	rc = ctl_open(d, &ctl, &err);
	if (rc == 0)
		rc = mig_ctl_prepare_incoming(ctl, vm->v.id, m->budget, subs, m->sub_count, &ep, &err);
	if (ctl)
		mig_ctl_close(ctl);
	if (rc < 0) {
		if (vm->shell_pid > 0)
			kill(-vm->shell_pid, SIGTERM);   /* its process group */
		ferryd_reply_error_to(d, waiter, req, FERRY_CTRL_E_FAILED, "VM %s: main host pager: %s", m->vm, err.msg);
		return;
	}
	c = ferryd_conn_find(d, waiter);
	if (!c)
		return;
	memset(&d->out_msg.hdr, 0, sizeof(d->out_msg.hdr));
	memset(out, 0, sizeof(*out));
	d->out_msg.hdr.type = FERRY_CTRL_ENDPOINT;
	d->out_msg.hdr.request_id = req;
	out->port = ep.port;
	memcpy(out->token, ep.token, FERRY_CTRL_TOKEN_LEN);
	snprintf(out->vm, sizeof(out->vm), "%s", vm->v.id);
	snprintf(out->host, sizeof(out->host), "%s", ep.host);
	LOG_INFO("vm %s: ready to receive from %s at %s:%u (%u sub-hosts)", vm->v.id, m->source, ep.host, ep.port,
		 m->sub_count);
	ferryd_send_msg(d, c);
}

/*
 * On the main host. With [vm ID] launch_incoming, the destination shell is
 * started first and must register with this host's pager before the source
 * may start (the pager pairs them by VM id when the source's layout
 * arrives): ferryd passes FERRY_READY_FILE in the shell's environment and
 * answers only once the shell (or its wrapper) created that file, within
 * SHELL_READY_MS.
 */
int ferryd_mig_prepare(struct ferryd *d, struct ferryd_conn *c, uint64_t req, const struct ferry_ctrl_migrate *m)
{
	struct ferryd_vm *vm = ferryd_vm_find(d, m->vm);

	if (!vm)
		return ferryd_send_error(d, c, req, FERRY_CTRL_E_UNKNOWN_VM, "unknown VM %s", m->vm);
	if (strcmp(m->main, d->cfg.name) != 0 || !(d->cfg.roles & FERRY_CTRL_ROLE_MAIN))
		return ferryd_send_error(d, c, req, FERRY_CTRL_E_UNEXPECTED, "%s is not a main host for %s",
					 d->cfg.name, m->vm);
	if (m->sub_count > MIG_SUBHOSTS_MAX)
		return ferryd_send_error(d, c, req, FERRY_CTRL_E_TOO_LARGE, "at most %d sub-hosts", MIG_SUBHOSTS_MAX);
	if (vm->prep)
		return ferryd_send_error(d, c, req, FERRY_CTRL_E_BUSY, "VM %s: an incoming migration is being prepared",
					 m->vm);
	for (unsigned int i = 0; i < m->sub_count; i++) {
		const struct ferryd_node_cfg *nc = ferryd_config_node(&d->cfg, m->sub[i]);

		if (!nc || !strrchr(nc->memsrv, ':'))
			return ferryd_send_error(d, c, req, FERRY_CTRL_E_UNKNOWN_NODE,
						 "sub-host %s has no memory server ([node %s] memsrv = HOST:PORT)",
						 m->sub[i], m->sub[i]);
	}
	if (!vm->cfg->launch_incoming[0]) {
		prepare_now(d, vm, c->id, req, m);
		return 0;
	}
	if (vm->shell_pid <= 0) {
		char e_vm[16 + FERRYD_NAME_LEN], e_node[16 + FERRYD_NAME_LEN], e_src[16 + FERRYD_NAME_LEN];
		char e_ready[32 + PATH_MAX];
		char *env[] = { e_vm, e_node, e_src, e_ready, NULL };

		snprintf(vm->ready_file, sizeof(vm->ready_file), "/tmp/ferryd-%s-%s-%d.ready", d->cfg.name, vm->v.id,
			 (int)getpid());
		unlink(vm->ready_file);
		snprintf(e_vm, sizeof(e_vm), "FERRY_VM=%s", vm->v.id);
		snprintf(e_node, sizeof(e_node), "FERRY_NODE=%s", d->cfg.name);
		snprintf(e_src, sizeof(e_src), "FERRY_SOURCE=%s", m->source);
		snprintf(e_ready, sizeof(e_ready), "FERRY_READY_FILE=%s", vm->ready_file);
		vm->shell_pid = ferryd_spawn(NULL, vm->cfg->launch_incoming, NULL, env);
		if (vm->shell_pid < 0) {
			vm->shell_pid = 0;
			return ferryd_send_error(d, c, req, FERRY_CTRL_E_FAILED, "VM %s: starting the incoming shell: %s",
						 m->vm, strerror(errno));
		}
		snprintf(vm->shell_source, sizeof(vm->shell_source), "%s", m->source);
		LOG_INFO("vm %s: incoming VM shell started (pid %d), waiting for %s", vm->v.id, (int)vm->shell_pid,
			 vm->ready_file);
	}
	vm->prep = malloc(sizeof(*vm->prep));
	if (!vm->prep)
		return ferryd_send_error(d, c, req, FERRY_CTRL_E_INTERNAL, "out of memory");
	*vm->prep = *m;
	vm->prep_waiter = c->id;
	vm->prep_req = req;
	vm->prep_deadline_ms = ferry_mono_ms() + SHELL_READY_MS;
	return 0;
}

/* Destination: answer the PREPARE_INCOMINGs whose shell is ready (or gave up). */
static void prepare_tick(struct ferryd *d, struct ferryd_vm *vm, uint64_t now)
{
	struct ferry_ctrl_migrate *m = vm->prep;
	bool ready = access(vm->ready_file, F_OK) == 0;

	if (!ready && vm->shell_pid > 0 && now < vm->prep_deadline_ms)
		return;
	vm->prep = NULL;
	if (ready) {
		unlink(vm->ready_file);
		prepare_now(d, vm, vm->prep_waiter, vm->prep_req, m);
	} else {
		if (vm->shell_pid > 0)
			kill(-vm->shell_pid, SIGTERM);   /* its process group */
		ferryd_reply_error_to(d, vm->prep_waiter, vm->prep_req, FERRY_CTRL_E_FAILED,
				      "VM %s: the incoming VM shell %s within %u ms", vm->v.id,
				      vm->shell_pid > 0 ? "did not create FERRY_READY_FILE" : "exited",
				      SHELL_READY_MS);
	}
	free(m);
}

int ferryd_mig_abort(struct ferryd *d, struct ferryd_conn *c, uint64_t req, const char *id)
{
	struct ferryd_vm *vm = ferryd_vm_find(d, id);
	struct ferry_ctrl_msg m = { .hdr = { .type = FERRY_CTRL_ABORT, .request_id = req } };

	if (!vm)
		return ferryd_send_error(d, c, req, FERRY_CTRL_E_UNKNOWN_VM, "unknown VM %s", id);
	if (strcmp(vm->v.node, d->cfg.name) != 0) {
		snprintf(m.u.vm_req.vm, sizeof(m.u.vm_req.vm), "%s", id);
		ferryd_relay(d, c->id, req, vm->v.node, &m, 0);
		return 0;
	}
	if (vm->op != OP_MIGRATE)
		return ferryd_send_error(d, c, req, FERRY_CTRL_E_BAD_STATE, "VM %s is not migrating", id);
	if (!vm->mig) {
		/* Still waiting for the main host: nothing moved yet. */
		send_progress(d, vm, FERRY_CTRL_PHASE_ABORTED, NULL);
		mig_end(d, vm, false);
		return ferryd_send_ok(d, c, req, 0);
	}
	if (vm->abort_waiter)
		return ferryd_send_error(d, c, req, FERRY_CTRL_E_BUSY, "VM %s: an abort is under way", id);
	/* The poller thread asks the pager; ferryd_mig_tick answers when it has. */
	pthread_mutex_lock(&vm->mig->lock);
	vm->mig->abort_wanted = true;
	pthread_mutex_unlock(&vm->mig->lock);
	vm->abort_waiter = c->id;
	vm->abort_req = req;
	LOG_INFO("vm %s: migration abort requested", id);
	return 0;
}

void ferryd_mig_tick(struct ferryd *d, uint64_t now)
{
	for (unsigned int i = 0; i < d->nvms; i++) {
		struct ferryd_vm *vm = &d->vms[i];
		struct mig_poller *pl = vm->mig;
		struct mig_progress p;
		bool have, final, failed, abort_done;
		char why[FERRY_ERR_MSG_MAX], abort_msg[FERRY_ERR_MSG_MAX];
		int abort_rc;
		uint8_t phase;

		if (vm->prep)
			prepare_tick(d, vm, now);
		if (vm->op != OP_MIGRATE || !pl || now < vm->next_poll_ms)
			continue;
		vm->next_poll_ms = now + POLL_MS;
		pthread_mutex_lock(&pl->lock);
		p = pl->p;
		have = pl->have;
		final = pl->final;
		failed = pl->failed;
		snprintf(why, sizeof(why), "%s", pl->why);
		abort_done = pl->abort_done && vm->abort_waiter;
		abort_rc = pl->abort_rc;
		snprintf(abort_msg, sizeof(abort_msg), "%s", pl->abort_msg);
		pthread_mutex_unlock(&pl->lock);

		if (abort_done) {
			unsigned int w = vm->abort_waiter;
			struct ferryd_conn *c = ferryd_conn_find(d, w);

			vm->abort_waiter = 0;
			if (abort_rc == -EBUSY)
				ferryd_reply_error_to(d, w, vm->abort_req, FERRY_CTRL_E_BUSY,
						      "VM %s: past switch-over, it runs at %s", vm->v.id, vm->mig_main);
			else if (abort_rc < 0)
				ferryd_reply_error_to(d, w, vm->abort_req, FERRY_CTRL_E_FAILED, "VM %s: abort: %s", vm->v.id,
						      abort_msg);
			else if (c)
				ferryd_send_ok(d, c, vm->abort_req, 0);   /* PROGRESS(aborted) follows on the stream */
		}
		if (failed) {
			mig_fail(d, vm, FERRY_CTRL_E_FAILED, why);
			continue;
		}
		if (!have)
			continue;
		phase = phase_of(p.phase);
		send_progress(d, vm, phase, &p);
		if (!final)
			continue;
		if (phase == FERRY_CTRL_PHASE_DONE) {
			LOG_INFO("vm %s: migrated to %s in %llu ms (%llu pages sent, %llu unused skipped, downtime %.1f ms)",
				 vm->v.id, vm->mig_main, (unsigned long long)(now - vm->op_started_ms),
				 (unsigned long long)p.pages_sent, (unsigned long long)p.pages_skipped_unused,
				 (double)p.downtime_ns / 1e6);
			mig_end(d, vm, true);
		} else {
			LOG_WARN("vm %s: migration to %s %s: %s", vm->v.id, vm->mig_main, ferry_ctrl_phase_name(phase),
				 p.error);
			mig_end(d, vm, false);
		}
	}
}

#endif /* FERRY_HAVE_MIGRATE */

void ferryd_mig_source_kept(struct ferryd *d, const char *from, const struct ferry_ctrl_vm *v)
{
	struct ferryd_vm *vm = ferryd_vm_find(d, v->id);

	if (!vm || vm->shell_pid <= 0 || strcmp(from, vm->shell_source) != 0 || strcmp(v->node, from) != 0 ||
	    v->state != FERRY_CTRL_VM_RUNNING)
		return;
	LOG_INFO("vm %s: its migration from %s failed or was aborted: stopping the incoming shell (pid %d)", v->id,
		 from, (int)vm->shell_pid);
	kill(-vm->shell_pid, SIGTERM);   /* its process group */
}

#ifndef FERRY_HAVE_MIGRATE

bool ferryd_mig_available(void)
{
	return false;
}

int ferryd_mig_start(struct ferryd *d, struct ferryd_conn *c, uint64_t req, const struct ferry_ctrl_migrate *m)
{
	LOG_WARN("migrate %s to %s refused: %s", m->vm, m->main, NOT_BUILT);
	return ferryd_send_error(d, c, req, FERRY_CTRL_E_NOT_AVAILABLE, "%s", NOT_BUILT);
}

int ferryd_mig_prepare(struct ferryd *d, struct ferryd_conn *c, uint64_t req, const struct ferry_ctrl_migrate *m)
{
	LOG_WARN("prepare incoming %s from %s refused: %s", m->vm, m->source, NOT_BUILT);
	return ferryd_send_error(d, c, req, FERRY_CTRL_E_NOT_AVAILABLE, "%s", NOT_BUILT);
}

int ferryd_mig_abort(struct ferryd *d, struct ferryd_conn *c, uint64_t req, const char *id)
{
	struct ferryd_vm *vm = ferryd_vm_find(d, id);

	if (!vm)
		return ferryd_send_error(d, c, req, FERRY_CTRL_E_UNKNOWN_VM, "unknown VM %s", id);
	if (vm->op != OP_MIGRATE)
		return ferryd_send_error(d, c, req, FERRY_CTRL_E_BAD_STATE, "VM %s is not migrating", id);
	return ferryd_send_error(d, c, req, FERRY_CTRL_E_NOT_AVAILABLE, "%s", NOT_BUILT);
}

void ferryd_mig_tick(struct ferryd *d, uint64_t now)
{
	(void)d;
	(void)now;
}

#endif /* !FERRY_HAVE_MIGRATE */
