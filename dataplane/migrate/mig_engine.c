/*
 * The migration engine's frame inside ferry-pager: the control socket
 * (PREPARE / START / STATUS / ABORT from ferryd, SO_PEERCRED allow-list like
 * the VMM socket), the incoming-stream listener, the per-iteration tick and
 * the hooks the pager calls (migrate.h).
 */
#include "dataplane/migrate/mig_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/common/unix_listen.h"
#include "dataplane/pager/vmm_requests.h"
#include "dataplane/vmm/vmm_io.h"
#include "dataplane/migrate/mig_plan.h"

/* Absent from some test links (no VMM server): continuous sampling is then off. */
extern bool pg_vm_parked(const struct pg_vm *vm) __attribute__((weak));

static void ctl_conn_event(struct mig_evh *h, uint32_t events);

static void ctl_reply_error(struct mig_ctl_conn *c, uint64_t req, uint32_t code, const char *msg)
{
	struct mig_engine *eng = c->eng;
	int n = migp_encode_error(req, code, msg, eng->buf, MIGP_MAX_MSG);

	(void)mig_send_msg(c->h.fd, eng->buf, n);
}

static uint32_t errno_code(int rc)
{
	switch (-rc) {
	case ENOENT:
		return MIG_E_UNKNOWN_VM;
	case EEXIST:
		return MIG_E_EXISTS;
	case EBUSY:
		return MIG_E_BUSY;
	case ENOSPC:
		return MIG_E_NO_SPACE;
	case EACCES:
		return MIG_E_AUTH_FAILED;
	case EHOSTUNREACH:
	case ECONNREFUSED:
	case ECONNRESET:
	case ETIMEDOUT:
		return MIG_E_PEER_LOST;
	case EINVAL:
		return MIG_E_BAD_LAYOUT;
	default:
		return MIG_E_INTERNAL;
	}
}

static void progress_reply(struct mig_ctl_conn *c, uint64_t req, const struct mig_progress *p)
{
	struct migp_status_ok so = {
		.phase = (uint8_t)p->phase, .round = p->round, .pages_total = p->pages_total,
		.pages_sent = p->pages_sent, .pages_skipped_unused = p->pages_skipped_unused,
		.pages_remaining = p->pages_remaining, .pages_resent = p->pages_resent,
		.pages_to_subhosts = p->pages_to_subhosts, .bytes_sent = p->bytes_sent,
		.postcopy_faults = p->postcopy_faults, .started_ns = p->started_ns, .downtime_ns = p->downtime_ns,
		.total_ns = p->total_ns, .generation = p->generation,
	};
	int n;

	mig_set_progress_error(so.error, sizeof(so.error), "%s", p->error);
	n = migp_encode_status_ok(req, &so, c->eng->buf, MIGP_MAX_MSG);
	(void)mig_send_msg(c->h.fd, c->eng->buf, n);
}

static void ctl_handle(struct mig_ctl_conn *c, const struct migp_msg *m)
{
	struct mig_engine *eng = c->eng;
	uint64_t req = m->hdr.request_id;
	struct ferry_err err = { 0 };
	struct mig_progress p;
	int rc, n;

	eng->c.ctl_requests++;
	switch (m->hdr.type) {
	case MIGP_PREPARE: {
		struct migp_prepare_ok ok;

		rc = mig_dst_prepare(eng, &m->u.prepare, &ok, &err);
		if (rc) {
			ctl_reply_error(c, req, errno_code(rc), err.msg);
			return;
		}
		n = migp_encode_prepare_ok(req, &ok, eng->buf, MIGP_MAX_MSG);
		(void)mig_send_msg(c->h.fd, eng->buf, n);
		return;
	}
	case MIGP_START:
		rc = mig_src_start(eng, &m->u.start, &err);
		if (rc) {
			ctl_reply_error(c, req, errno_code(rc), err.msg);
			return;
		}
		n = migp_encode_ok(req, 0, eng->buf, MIGP_MAX_MSG);
		(void)mig_send_msg(c->h.fd, eng->buf, n);
		return;
	case MIGP_STATUS: {
		struct mig_src *s = mig_src_find(eng, m->u.ref.id);
		struct mig_dst *d = s ? NULL : mig_dst_find(eng, m->u.ref.id);

		if (!s && !d) {
			ctl_reply_error(c, req, MIG_E_UNKNOWN_VM, "no migration of this VM on this pager");
			return;
		}
		memset(&p, 0, sizeof(p));
		if (s)
			mig_src_progress(s, &p);
		else
			mig_dst_progress(d, &p);
		progress_reply(c, req, &p);
		return;
	}
	case MIGP_ABORT: {
		struct mig_src *s = mig_src_find(eng, m->u.ref.id);
		struct mig_dst *d = s ? NULL : mig_dst_find(eng, m->u.ref.id);

		if (!s && !d) {
			ctl_reply_error(c, req, MIG_E_UNKNOWN_VM, "no migration of this VM on this pager");
			return;
		}
		rc = s ? mig_src_abort(s, &err) : mig_dst_abort(d, &err);
		if (rc) {
			ctl_reply_error(c, req, errno_code(rc), err.msg);
			return;
		}
		n = migp_encode_ok(req, 0, eng->buf, MIGP_MAX_MSG);
		(void)mig_send_msg(c->h.fd, eng->buf, n);
		return;
	}
	case MIGP_STATS: {
		struct migp_stat st[10];
		uint16_t k = 0;

#define PUT(f) do { snprintf(st[k].name, sizeof(st[k].name), "%s", #f); st[k].value = eng->c.f; k++; } while (0)
		PUT(started);
		PUT(succeeded);
		PUT(failed);
		PUT(aborted);
		PUT(incoming);
		PUT(ctl_requests);
		PUT(ctl_refused);
		PUT(bad_messages);
		PUT(auth_failures);
		PUT(stale_entries);
#undef PUT
		n = migp_encode_stats_ok(req, st, k, eng->buf, MIGP_MAX_MSG);
		(void)mig_send_msg(c->h.fd, eng->buf, n);
		return;
	}
	default:
		eng->c.bad_messages++;
		ctl_reply_error(c, req, MIG_E_UNEXPECTED, "not a control request");
		return;
	}
}

static void ctl_conn_close(struct mig_ctl_conn *c)
{
	if (c->dead)
		return;
	mig_evh_del(c->eng->pg, &c->h);
	close(c->h.fd);
	c->dead = true;
}

static void ctl_conn_event(struct mig_evh *h, uint32_t events)
{
	struct mig_ctl_conn *c = (struct mig_ctl_conn *)h;
	struct mig_engine *eng = c->eng;
	struct migp_msg m;
	int code = 0, rc;

	(void)events;
	if (c->dead)
		return;
	rc = mig_recv_msg(h->fd, eng->rx, &m, 1000, &code);
	if (rc == -EPROTO) {
		eng->c.bad_messages++;
		LOG_WARN("migration control: bad message from pid %d: %s", (int)c->pid, migp_errcode_str((uint32_t)code));
		ctl_reply_error(c, 0, (uint32_t)code, migp_errcode_str((uint32_t)code));
		ctl_conn_close(c);
		return;
	}
	if (rc) {
		ctl_conn_close(c);
		return;
	}
	if (c->refused) {
		eng->c.ctl_refused++;
		ctl_reply_error(c, m.hdr.request_id, MIG_E_REFUSED, "peer credentials not in the pager's allow-list");
		ctl_conn_close(c);
		return;
	}
	ctl_handle(c, &m);
}

static void ctl_accept(struct mig_evh *h, uint32_t events)
{
	struct mig_engine *eng = (struct mig_engine *)((char *)h - offsetof(struct mig_engine, ctl_l));
	uint32_t gids[64];
	size_t ngids = 0;

	(void)events;
	for (;;) {
		int fd = accept4(h->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		struct mig_ctl_conn *c;

		if (fd < 0)
			return;
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			return;
		}
		c->eng = eng;
		if (ferry_vmm_io_peer(fd, &c->uid, &c->pid, gids, 64, &ngids) < 0 ||
		    !ferry_vmmp_allow_match(&eng->pg->cfg->allow, c->uid, gids, ngids)) {
			c->refused = true;
			eng->pg->g.peers_refused++;
			LOG_WARN("migration control connection from pid %d uid %u refused: not in the allow-list (%s)",
				 (int)c->pid, c->uid, eng->pg->cfg->allow_text);
		}
		if (mig_evh_add(eng->pg, &c->h, fd, ctl_conn_event)) {
			close(fd);
			free(c);
			return;
		}
		c->next = eng->conns;
		eng->conns = c;
	}
}

static void stream_accept(struct mig_evh *h, uint32_t events)
{
	struct mig_engine *eng = (struct mig_engine *)((char *)h - offsetof(struct mig_engine, stream_l));

	(void)events;
	mig_dst_stream_accept(eng);
}

/*
 * A VMM started as a destination shell (REGISTER with INCOMING, e.g.
 * guestsim --incoming) is parked by vmm_server.c: its faults wait. The
 * engine pairs it with a prepared incoming migration by VM id when the
 * source's layout arrives (on_layout) and resumes it at the switch-over.
 */
static int incoming_shell(struct pg_vm *vm, uint64_t migration_id, void *ctx)
{
	(void)ctx;
	if (vm->mig_src || vm->mig_dst)
		return FERRY_VMMP_E_BUSY;
	LOG_INFO("vm %s: destination shell (migration %llu) registered, parked until its migration switches over",
		 vm->id, (unsigned long long)migration_id);
	return FERRY_VMMP_E_OK;
}

int mig_engine_init(struct pager *pg, struct ferry_err *err)
{
	struct mig_engine *eng;
	int fd, rc;

	if (!pg->cfg->mig_socket[0])
		return 0;
	eng = calloc(1, sizeof(*eng));
	if (!eng)
		return ferry_err_set(err, ENOMEM, "out of memory");
	eng->pg = pg;
	eng->ctl_l.fd = eng->stream_l.fd = -1;
	pg->mig = eng;
	pg_vm_incoming_hook = incoming_shell;
	pg_vm_incoming_ctx = eng;
	eng->buf = malloc(MIGP_MAX_MSG);
	eng->rx = malloc(MIGP_MAX_MSG);
	if (!eng->buf || !eng->rx)
		return ferry_err_set(err, ENOMEM, "out of memory");
	if ((rc = ferry_auth_init(err)) || (rc = ferry_secret_load(pg->cfg->secret_file, &eng->secret, err)))
		return rc;
	eng->have_secret = true;
	fd = mig_tcp_listen(pg->cfg->mig_listen, pg->cfg->mig_port, &eng->stream_port, err);
	if (fd < 0)
		return fd;
	if (mig_evh_add(pg, &eng->stream_l, fd, stream_accept)) {
		close(fd);
		return ferry_err_set(err, errno, "epoll: %s", strerror(errno));
	}
	fd = ferry_unix_listen(pg->cfg->mig_socket, 0666, 64, err);
	if (fd < 0)
		return fd;
	if (mig_evh_add(pg, &eng->ctl_l, fd, ctl_accept)) {
		close(fd);
		return ferry_err_set(err, errno, "epoll: %s", strerror(errno));
	}
	LOG_INFO("migrations: control socket %s, incoming streams on %s:%u (advertised as %s)", pg->cfg->mig_socket,
		 pg->cfg->mig_listen, eng->stream_port,
		 pg->cfg->mig_advertise[0] ? pg->cfg->mig_advertise : pg->cfg->mig_listen);
	return 0;
}

static void free_grave(struct mig_engine *eng)
{
	for (unsigned i = 0; i < eng->ngrave; i++)
		free(eng->grave[i]);
	eng->ngrave = 0;
}

void mig_engine_fini(struct pager *pg)
{
	struct mig_engine *eng = pg->mig;

	if (!eng)
		return;
	if (pg_vm_incoming_hook == incoming_shell)
		pg_vm_incoming_hook = NULL;
	mig_src_destroy_all(eng);
	mig_dst_destroy_all(eng);
	for (struct mig_ctl_conn *c = eng->conns, *n; c; c = n) {
		n = c->next;
		ctl_conn_close(c);
		free(c);
	}
	if (eng->ctl_l.fd >= 0) {
		mig_evh_del(pg, &eng->ctl_l);
		close(eng->ctl_l.fd);
		if (pg->cfg->mig_socket[0] != '@')
			unlink(pg->cfg->mig_socket);
	}
	if (eng->stream_l.fd >= 0) {
		mig_evh_del(pg, &eng->stream_l);
		close(eng->stream_l.fd);
	}
	LOG_INFO("migrations: started=%llu succeeded=%llu failed=%llu aborted=%llu incoming=%llu ctl_requests=%llu "
		 "bad_messages=%llu auth_failures=%llu refused=%llu",
		 (unsigned long long)eng->c.started, (unsigned long long)eng->c.succeeded,
		 (unsigned long long)eng->c.failed, (unsigned long long)eng->c.aborted,
		 (unsigned long long)eng->c.incoming, (unsigned long long)eng->c.ctl_requests,
		 (unsigned long long)eng->c.bad_messages, (unsigned long long)eng->c.auth_failures,
		 (unsigned long long)eng->c.ctl_refused);
	free_grave(eng);
	ferry_secret_wipe(&eng->secret);
	free(eng->buf);
	free(eng->rx);
	free(eng);
	pg->mig = NULL;
}

/* [migrate] plan_continuous: every VM that runs here and takes part in no migration is sampled. */
static void tick_continuous(struct pager *pg)
{
	uint64_t now = ferry_mono_ns();

	for (struct pg_vm *vm = pg->vms; vm; vm = vm->next) {
		struct ferry_err err = { 0 };

		if (vm->dead || vm->mig_src || vm->mig_dst || vm->kind != PG_VM_VMMP)
			continue;
		if (!vm->plan) {
			if (!pg_vm_parked || pg_vm_parked(vm))
				continue;
			vm->plan = mig_plan_start(vm, true, &err);
			if (!vm->plan) {
				LOG_WARN("vm %s: continuous access sampling: %s", vm->id, err.msg);
				continue;
			}
		}
		(void)mig_plan_tick(vm->plan, now);
	}
}

void mig_engine_tick(struct pager *pg)
{
	struct mig_engine *eng = pg->mig;
	struct mig_ctl_conn **pp;

	if (!eng)
		return;
	free_grave(eng);
	if (pg->cfg->plan_continuous)
		tick_continuous(pg);
	for (struct mig_src *s = eng->srcs; s; s = *(struct mig_src **)s)
		mig_src_tick(s);
	for (struct mig_dst *d = eng->dsts; d; d = *(struct mig_dst **)d)
		mig_dst_tick(d);
	mig_src_free_done(eng);
	for (pp = &eng->conns; *pp;) {
		struct mig_ctl_conn *c = *pp;

		if (c->dead) {
			*pp = c->next;
			free(c);
		} else {
			pp = &c->next;
		}
	}
}

bool mig_engine_busy(const struct pager *pg)
{
	const struct mig_engine *eng = pg->mig;

	if (!eng)
		return false;
	for (const struct mig_src *s = eng->srcs; s; s = *(struct mig_src *const *)s)
		if (mig_src_busy(s))
			return true;
	for (const struct mig_dst *d = eng->dsts; d; d = *(struct mig_dst *const *)d)
		if (mig_dst_busy(d))
			return true;
	return false;
}

void mig_engine_event(void *obj, uint32_t events)
{
	struct mig_evh *h = obj;

	h->fn(h, events);
}

/* ---------------------------------------------------------------- hooks */

void mig_note_write(struct pg_vm *vm, uint64_t idx)
{
	if (vm->mig_src)
		mig_src_note_write(vm->mig_src, idx);
}

int mig_sample_fault(struct pg_vm *vm, uint64_t idx, const struct pg_fault *f)
{
	if (vm->plan)
		return mig_plan_fault(vm->plan, idx, f);
	return vm->mig_src ? mig_src_sample_fault(vm->mig_src, idx, f) : 0;
}

void mig_note_unused(struct pg_vm *vm, uint64_t first, uint64_t n)
{
	if (!vm->mig_src)
		return;
	for (uint64_t i = 0; i < n && first + i < vm->pm.npages; i++)
		mig_src_note_write(vm->mig_src, first + i);
}

void mig_vm_gone(struct pg_vm *vm)
{
	mig_plan_destroy(vm->plan);
	vm->plan = NULL;
	if (vm->mig_src)
		mig_src_vm_gone(vm->mig_src);
	if (vm->mig_dst)
		mig_dst_vm_gone(vm->mig_dst);
}

bool mig_hold_faults(const struct pg_vm *vm)
{
	return (vm->mig_src && mig_src_holds(vm->mig_src)) || (vm->mig_dst && mig_dst_holds(vm->mig_dst));
}

bool mig_no_pageout(const struct pg_vm *vm)
{
	return (vm->mig_src && mig_src_no_pageout(vm->mig_src)) || (vm->mig_dst && mig_dst_holds(vm->mig_dst));
}

int mig_fetch_page(struct pg_vm *vm, uint64_t idx, void *buf)
{
	if (!vm->mig_dst)
		return -ENOENT;
	return mig_dst_fetch(vm->mig_dst, idx, buf);
}
