/*
 * Hibernation adapter: how ferryd hibernates and resumes one VM.
 *
 * Two back ends, per VM:
 *
 * - Hook commands ([vm ID] hibernate_cmd, resume_cmd), run with /bin/sh -c as children of
 *   ferryd (the loop never waits on them; ferryd_vms.c reaps them), with the VM in the
 *   environment: FERRY_VM=ID FERRY_VM_IP=A.B.C.D FERRY_VM_MAC=xx:.. FERRY_NODE=this node.
 *
 * - The hibernation library (ctrl/hib.h) for real QEMU guests, when [ferryd] hib_state is set
 *   and the VM has no hook: the VM is the library's VM of the same name in that state dir
 *   (defined once with `ferry-hib define`). Every library call blocks for the whole operation
 *   (0.1-2 s), so one worker thread owns the struct hib (one memory-server session, client name
 *   "ferryd-NODE") for ferryd's lifetime. Images are kept extents (hib.h): any node configured
 *   with the same memory server resumes them, and they outlive a ferryd restart. The loop hands it
 *   jobs (one per VM at most: a VM has one op in flight) and reads their end through an eventfd
 *   (ferryd_hib_poll). hib_mode file stores the seed's full state file in hib_image_dir instead
 *   of the pool: any node that shares that directory and hib_state can resume it.
 *
 *   Between jobs the worker samples the VMs that have idle_after_ms and run here (packets on
 *   their tap, the QEMU process's CPU: hib_idle_sample / hib_idle_judge) every idle_check_ms;
 *   a VM idle for idle_after_ms is reported to the loop, which hibernates it like a ferryctl
 *   hibernate would (ferryd_vms_idle).
 */
#include "ctrl/ferryd.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "ctrl/hib.h"
#include "dataplane/common/ferry_log.h"

enum job_kind { JOB_NONE, JOB_HIBERNATE, JOB_RESUME };

/* One VM's share of the worker; the loop and the worker meet under mu. */
struct hib_slot {
	enum job_kind queued;              /* loop -> worker */
	enum job_kind done;                /* worker -> loop: finished */
	int rc;
	char why[FERRY_CTRL_ERRMSG_MAX];
	struct hib_stats st;
	/* Idle detection (worker only, but for the flags). */
	bool watch;                        /* loop: running here, nothing in flight, idle_after_ms */
	bool have_sample, sample_failed;
	struct hib_idle_sample last;
	double busy_at;                    /* last time it was not idle (monotonic s) */
	bool idle;                         /* worker -> loop: idle long enough */
	char idle_why[192];
};

struct ferryd_hib {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop, started;
	int efd;
	struct hib *h;
	uint8_t mode;
	char image_dir[PATH_MAX];
	double idle_cpu_pct;
	uint32_t check_ms;
	unsigned int nvms;
	char names[FERRYD_MAX_VMS][FERRYD_NAME_LEN];
	char taps[FERRYD_MAX_VMS][32];
	uint32_t idle_after_ms[FERRYD_MAX_VMS];
	char qga[FERRYD_MAX_VMS][108];
	char forbid_buf[FERRYD_MAX_VMS][256];          /* forbid_procs, cut at the commas */
	const char *forbid[FERRYD_MAX_VMS][FERRYD_FORBID_MAX + 1];
	struct hib_slot slot[FERRYD_MAX_VMS];
};

/* "a, b,c" -> {"a", "b", "c", NULL} in @p buf (the config checked the count and length). */
static void split_forbid(const char *list, char buf[256], const char *out[FERRYD_FORBID_MAX + 1])
{
	unsigned int n = 0;
	char *save = NULL;

	snprintf(buf, 256, "%s", list);
	for (char *tok = strtok_r(buf, ",", &save); tok && n < FERRYD_FORBID_MAX; tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ')
			tok++;
		for (char *end = tok + strlen(tok); end > tok && end[-1] == ' '; end--)
			end[-1] = '\0';
		if (*tok)
			out[n++] = tok;
	}
	out[n] = NULL;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void kick(struct ferryd_hib *w)
{
	uint64_t one = 1;

	if (write(w->efd, &one, sizeof(one)) < 0)
		LOG_WARN("hib worker: eventfd write: %s", strerror(errno));
}

static void run_job(struct ferryd_hib *w, unsigned int i, enum job_kind kind)
{
	struct ferry_err err = { 0 };
	struct hib_stats st = { 0 };
	char image[PATH_MAX + 2 * FERRYD_NAME_LEN];
	int rc;

	snprintf(image, sizeof(image), "%s/%s.state", w->image_dir, w->names[i]);
	if (kind == JOB_HIBERNATE)
		rc = w->mode == FERRYD_HIB_FILE ? hib_hibernate_file(w->h, w->names[i], image, &st, &err)
						: hib_hibernate(w->h, w->names[i], &st, &err);
	else
		rc = w->mode == FERRYD_HIB_FILE ? hib_resume_file(w->h, w->names[i], image, &st, &err)
						: hib_resume(w->h, w->names[i], &st, &err);
	pthread_mutex_lock(&w->mu);
	w->slot[i].done = kind;
	w->slot[i].rc = rc;
	w->slot[i].st = st;
	snprintf(w->slot[i].why, sizeof(w->slot[i].why), "%s", rc ? err.msg : "");
	w->slot[i].have_sample = false;
	pthread_mutex_unlock(&w->mu);
	kick(w);
}

/* Sample one watched VM; true when it has been idle for its idle_after_ms. */
static void idle_step(struct ferryd_hib *w, unsigned int i)
{
	struct hib_slot *s = &w->slot[i];
	struct hib_idle_opts o = { .tap = w->taps[i], .cpu_max_pct = w->idle_cpu_pct,
				   .qga_path = w->qga[i][0] ? w->qga[i] : NULL, .forbid = w->forbid[i] };
	struct hib_idle_result r;
	struct hib_idle_sample cur;
	struct ferry_err err = { 0 };
	double t = now_s();

	if (hib_idle_sample(w->h, w->names[i], w->taps[i], &cur, &err)) {
		if (!s->sample_failed)   /* said once per failing spell, not every idle_check_ms */
			LOG_WARN("vm %s: idle sample: %s", w->names[i], err.msg);
		s->sample_failed = true;
		s->have_sample = false;
		return;
	}
	s->sample_failed = false;
	if (!s->have_sample) {
		s->have_sample = true;
		s->last = cur;
		s->busy_at = t;
		return;
	}
	if (hib_idle_judge(&s->last, &cur, &o, &r, &err) == 0 && !r.idle)
		s->busy_at = t;
	s->last = cur;
	if ((t - s->busy_at) * 1000.0 >= (double)w->idle_after_ms[i]) {
		pthread_mutex_lock(&w->mu);
		if (s->watch && !s->idle) {
			s->idle = true;
			snprintf(s->idle_why, sizeof(s->idle_why), "idle for %.1f s (%llu packets, %.1f%% CPU in the last sample)",
				 t - s->busy_at, (unsigned long long)r.packets, r.cpu_pct);
		}
		pthread_mutex_unlock(&w->mu);
		kick(w);
	}
}

static void *worker_main(void *arg)
{
	struct ferryd_hib *w = arg;
	double next_idle = 0;

	pthread_mutex_lock(&w->mu);
	while (!w->stop) {
		unsigned int i;
		bool any_watch = false;

		for (i = 0; i < w->nvms; i++)
			if (w->slot[i].queued != JOB_NONE)
				break;
		if (i < w->nvms) {
			enum job_kind kind = w->slot[i].queued;

			w->slot[i].queued = JOB_NONE;
			pthread_mutex_unlock(&w->mu);
			run_job(w, i, kind);
			pthread_mutex_lock(&w->mu);
			continue;
		}
		for (i = 0; i < w->nvms; i++)
			any_watch |= w->slot[i].watch;
		if (any_watch && now_s() >= next_idle) {
			bool watch[FERRYD_MAX_VMS];

			for (i = 0; i < w->nvms; i++)
				watch[i] = w->slot[i].watch && !w->slot[i].idle;
			pthread_mutex_unlock(&w->mu);
			for (i = 0; i < w->nvms; i++)
				if (watch[i])
					idle_step(w, i);
			next_idle = now_s() + w->check_ms / 1000.0;
			pthread_mutex_lock(&w->mu);
			continue;
		}
		if (any_watch) {
			struct timespec ts;
			double wake = next_idle - now_s();

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += (time_t)wake;
			ts.tv_nsec += (long)((wake - (double)(time_t)wake) * 1e9);
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&w->cv, &w->mu, &ts);
		} else {
			pthread_cond_wait(&w->cv, &w->mu);
		}
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

static bool uses_lib(const struct ferryd *d, const struct ferryd_vm *vm)
{
	return d->hib && !vm->cfg->hibernate_cmd[0] && !vm->cfg->resume_cmd[0];
}

int ferryd_hib_init(struct ferryd *d, struct ferry_err *err)
{
	struct ferryd_hib *w;
	struct hib_opts o = { 0 };
	char host[FERRYD_ADDR_LEN], client[16 + FERRYD_NAME_LEN], *colon;
	int rc;

	if (!d->cfg.hib_state[0])
		return 0;
	w = calloc(1, sizeof(*w));
	if (!w)
		return ferry_err_set(err, ENOMEM, "out of memory");
	w->efd = -1;
	snprintf(host, sizeof(host), "%s", d->cfg.hib_pool[0] ? d->cfg.hib_pool : "127.0.0.1:0");
	colon = strrchr(host, ':');
	if (colon)
		*colon = '\0';
	o.state_dir = d->cfg.hib_state;
	o.ram_dir = d->cfg.hib_ram_dir[0] ? d->cfg.hib_ram_dir : NULL;
	o.pool_host = host;
	o.pool_port = colon ? (uint16_t)atoi(colon + 1) : 0;
	o.secret_path = d->cfg.secret_file;
	o.transport = FX_KIND_TCP;
	snprintf(client, sizeof(client), "ferryd-%s", d->cfg.name);
	o.client_name = client;
	if (d->cfg.hib_mode == FERRYD_HIB_POOL && !o.pool_port) {
		rc = ferry_err_set(err, EINVAL, "[ferryd] hib_pool (HOST:PORT of a ferry-memsrv) is needed with hib_mode pool");
		goto fail;
	}
	rc = hib_open(&o, &w->h, err);
	if (rc)
		goto fail;
	w->mode = d->cfg.hib_mode;
	snprintf(w->image_dir, sizeof(w->image_dir), "%s", d->cfg.hib_image_dir[0] ? d->cfg.hib_image_dir
										     : d->cfg.hib_state);
	w->idle_cpu_pct = d->cfg.idle_cpu_pct;
	w->check_ms = d->cfg.idle_check_ms;
	w->nvms = d->nvms;
	for (unsigned int i = 0; i < d->nvms; i++) {
		snprintf(w->names[i], sizeof(w->names[i]), "%s", d->vms[i].v.id);
		snprintf(w->taps[i], sizeof(w->taps[i]), "%s", d->vms[i].cfg->tap);
		w->idle_after_ms[i] = d->vms[i].cfg->idle_after_ms;
		snprintf(w->qga[i], sizeof(w->qga[i]), "%s", d->vms[i].cfg->qga_socket);
		split_forbid(d->vms[i].cfg->forbid_procs, w->forbid_buf[i], w->forbid[i]);
	}
	w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->efd < 0) {
		rc = ferry_err_set(err, errno, "eventfd: %s", strerror(errno));
		goto fail_hib;
	}
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	rc = pthread_create(&w->thread, NULL, worker_main, w);
	if (rc) {
		rc = ferry_err_set(err, rc, "hibernation worker thread: %s", strerror(rc));
		goto fail_sync;
	}
	w->started = true;
	d->hib = w;
	LOG_INFO("hibernation library: state %s, images in %s", d->cfg.hib_state,
		 w->mode == FERRYD_HIB_FILE ? w->image_dir : d->cfg.hib_pool);
	return 0;

fail_sync:
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	close(w->efd);
fail_hib:
	hib_close(w->h);
fail:
	free(w);
	return rc < 0 ? rc : -rc;
}

void ferryd_hib_close(struct ferryd *d)
{
	struct ferryd_hib *w = d->hib;

	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);   /* a job in flight ends first (it is bounded by hib's timeouts) */
	hib_close(w->h);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	close(w->efd);
	free(w);
	d->hib = NULL;
}

int ferryd_hib_fd(const struct ferryd *d)
{
	return d->hib ? d->hib->efd : -1;
}

uint8_t ferryd_hib_state(struct ferryd *d, const char *id)
{
	enum hib_vm_state st;
	struct ferry_err err = { 0 };
	pid_t pid = 0;

	/* Before the worker takes jobs (start-up): reading the state files needs no lock. */
	if (!d->hib || hib_query(d->hib->h, id, &st, &pid, &err))
		return 0;
	switch (st) {
	case HIB_HIBERNATED: return FERRY_CTRL_VM_HIBERNATED;
	case HIB_RUNNING: return FERRY_CTRL_VM_RUNNING;
	default: return FERRY_CTRL_VM_STOPPED;
	}
}

static int queue(struct ferryd *d, struct ferryd_vm *vm, enum job_kind kind, struct ferry_err *err)
{
	struct ferryd_hib *w = d->hib;
	unsigned int i = (unsigned int)(vm - d->vms);

	pthread_mutex_lock(&w->mu);
	if (w->slot[i].queued != JOB_NONE || w->slot[i].done != JOB_NONE) {
		pthread_mutex_unlock(&w->mu);
		return ferry_err_set(err, EBUSY, "a hibernation job for %s is still queued", vm->v.id);
	}
	w->slot[i].queued = kind;
	w->slot[i].watch = false;
	w->slot[i].idle = false;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	vm->op_lib = true;
	return 0;
}

void ferryd_hib_poll(struct ferryd *d)
{
	struct ferryd_hib *w = d->hib;
	uint64_t n;

	if (!w)
		return;
	if (read(w->efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		LOG_WARN("hib worker: eventfd read: %s", strerror(errno));
	for (unsigned int i = 0; i < w->nvms && i < d->nvms; i++) {
		struct ferryd_vm *vm = &d->vms[i];
		struct hib_slot *s = &w->slot[i];
		enum job_kind done;
		int rc;
		char why[FERRY_CTRL_ERRMSG_MAX], idle_why[192];
		struct hib_stats st;
		bool idle, watch;

		pthread_mutex_lock(&w->mu);
		done = s->done;
		rc = s->rc;
		st = s->st;
		memcpy(why, s->why, sizeof(why));
		s->done = JOB_NONE;
		idle = s->idle;
		memcpy(idle_why, s->idle_why, sizeof(idle_why));
		s->idle = false;
		/* Watch the VMs that run here with nothing in flight. */
		watch = vm->cfg->idle_after_ms && vm->op == OP_NONE && done == JOB_NONE &&
			vm->v.state == FERRY_CTRL_VM_RUNNING && strcmp(vm->v.node, d->cfg.name) == 0 && uses_lib(d, vm);
		if (watch && !s->watch)
			pthread_cond_signal(&w->cv);   /* the worker may be waiting with nothing to watch */
		s->watch = watch;
		pthread_mutex_unlock(&w->mu);
		if (done != JOB_NONE) {
			if (!rc)
				LOG_INFO("vm %s: %s by the library in %.0f ms (%llu pages stored, %.1f MiB)", vm->v.id,
					 done == JOB_HIBERNATE ? "hibernated" : "resumed", st.t_total,
					 (unsigned long long)st.stored_pages, (double)st.stored_bytes / 1048576.0);
			if (vm->op_lib && (vm->op == OP_HIBERNATE || vm->op == OP_RESUME || vm->op == OP_UNRESUME))
				ferryd_vms_job_done(d, vm, rc, why);
			else
				LOG_WARN("vm %s: a library job ended with nobody waiting (%s)", vm->v.id, rc ? why : "ok");
		}
		if (idle && watch)
			ferryd_vms_idle(d, vm, idle_why);
	}
}

static int run_hook(struct ferryd *d, struct ferryd_vm *vm, const char *cmd, const char *what, pid_t *pid,
		    struct ferry_err *err)
{
	char e_vm[16 + FERRYD_NAME_LEN], e_ip[32], e_mac[40], e_node[16 + FERRYD_NAME_LEN];
	char *env[] = { e_vm, e_ip, e_mac, e_node, NULL };
	const uint8_t *ip = vm->v.ip, *mac = vm->v.mac;

	if (!cmd[0])
		return ferry_err_set(err, ENOSYS, "no %s backend: set [vm %s] %s_cmd, or [ferryd] hib_state", what,
				     vm->v.id, what);
	snprintf(e_vm, sizeof(e_vm), "FERRY_VM=%s", vm->v.id);
	snprintf(e_ip, sizeof(e_ip), "FERRY_VM_IP=%u.%u.%u.%u", ip[0], ip[1], ip[2], ip[3]);
	snprintf(e_mac, sizeof(e_mac), "FERRY_VM_MAC=%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
		 mac[4], mac[5]);
	snprintf(e_node, sizeof(e_node), "FERRY_NODE=%s", d->cfg.name);
	*pid = ferryd_spawn(NULL, cmd, NULL, env);
	if (*pid < 0)
		return ferry_err_set(err, errno, "%s hook: fork: %s", what, strerror(errno));
	return 0;
}

int ferryd_hib_hibernate(struct ferryd *d, struct ferryd_vm *vm, pid_t *pid, struct ferry_err *err)
{
	vm->op_lib = false;
	if (uses_lib(d, vm)) {
		*pid = 0;
		return queue(d, vm, JOB_HIBERNATE, err);
	}
	return run_hook(d, vm, vm->cfg->hibernate_cmd, "hibernate", pid, err);
}

int ferryd_hib_resume(struct ferryd *d, struct ferryd_vm *vm, pid_t *pid, struct ferry_err *err)
{
	vm->op_lib = false;
	if (uses_lib(d, vm)) {
		*pid = 0;
		return queue(d, vm, JOB_RESUME, err);
	}
	return run_hook(d, vm, vm->cfg->resume_cmd, "resume", pid, err);
}
