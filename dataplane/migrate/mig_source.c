/*
 * The source side of a split migration (state machine in migrate.h).
 *
 * Data path (STAGING in proto/migrate.h): the pager maps the VM's memory
 * files itself (mig_map_vm: its own MAP_SHARED mapping, not registered with
 * the VM's uffd) but registers none of it: a registration would pin every
 * page of the mapping (holes allocated, punched pages kept). Each page is
 * copied into a registered send buffer of MIG_BATCH pages (registered in the
 * data connection's PD and in each sub-host client's PD) and WRITTEN from
 * there: into a slot of the destination's staging ring (one credit per page,
 * CREDIT gives them back) or into its sub-host extent slot. Pages paged out at
 * the source come through the pool bounce buffer into the same buffer. Only
 * LOCAL pages are ever read through the mapping (a hole read through it would
 * allocate a page in the file). Post-copy: the destination FETCHes pages, the
 * source WRITEs them into the slots it names and answers with a PAGE_MAP.
 *
 * Write tracking: sync uffd-wp, the same mechanism page-out uses (so its
 * write-protect-before-copy ordering holds): each page is write-protected
 * right before it is copied; fault.c's WP handler marks it dirty again
 * (mig_note_write) and lifts the protection; pages installed by a fault and
 * pages REMOVEd are marked too. Stop-and-copy freezes the VM by holding every
 * fault (pg_vm_hold) after everything is write-protected, independently of
 * the VMM's own PAUSE.
 */
#include "dataplane/migrate/mig_int.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <linux/userfaultfd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/memsrv/pool_client.h"
#include "dataplane/migrate/mig_plan.h"
#include "dataplane/migrate/planner.h"
#include "dataplane/pager/vmm_requests.h"

/* h/vmmside's server requests: used when linked in (weak until that branch lands). */
extern int pg_vmm_request_pause(struct pg_vm *vm, pg_vmm_done_fn *done, void *ctx) __attribute__((weak));
extern int pg_vmm_notice_migrated(struct pg_vm *vm) __attribute__((weak));
extern int pg_vmm_request_resume(struct pg_vm *vm, bool load_state, pg_vmm_done_fn *done, void *ctx)
	__attribute__((weak));

enum { W_NONE = 0, W_DEST = 1, W_SUB = 2, W_UNUSED = 3, W_SOURCE = 4 };


struct src_sub {
	char host[MIGP_HOST_MAX + 1];
	uint16_t port;
	struct fx_ctx *ctx;
	struct pool_client *pc;
	struct fx_mr *mr_stage;
};

struct src_ext {
	uint8_t sub;
	struct pool_extent pe;   /* attachment: rkey/base/length on the sub's client connection */
	uint32_t nslots, next;
};

struct mig_src {
	struct mig_src *next;            /* first: the engine walks the list through it */
	struct mig_engine *eng;
	struct pg_vm *vm;
	char id[MIGP_VM_ID_MAX + 1];
	enum mig_mode mode;
	struct mig_progress prog;
	uint64_t t0, t_stop;
	bool frozen, pause_pending, vm_paused, switchover_sent, closed;
	int fd;
	struct mig_evh sh, xh;
	struct fx_ctx *ctx;
	struct fx_pd *pd;
	struct fx_conn *conn;
	struct fx_mr *mr_stage;
	uint8_t *area, *stage;           /* area: unregistered mapping of the VM; stage: MIG_BATCH pages, registered */
	size_t area_len;
	uint32_t dst_rkey;
	uint64_t dst_base, dst_pages, dst_used;   /* dst_rkey/dst_base: the destination's staging ring */
	uint32_t ring_slots, ring_head, credits;  /* ring: next slot to write, slots free at the destination */
	uint64_t *dirty;
	uint8_t *where;
	uint32_t *subslot;               /* (extent << 20 | slot) + 1 */
	struct src_sub subs[MIGP_SUBS_MAX];
	unsigned nsubs;
	struct src_ext ext[MIGP_EXTENTS_MAX];
	unsigned next_ext, cur_ext, ext_total;
	uint64_t cursor;
	uint64_t reserve;                /* main-host pages kept for pages that stay at the source (post-copy) */
	uint64_t overflow;               /* POSTCOPY: cold pages still to push to sub-hosts before the stop */
	bool cold_pass;                  /* POSTCOPY round 1: only pages not referenced lately */
	struct mig_plan *plan;           /* PLANNED: access sampler + phase planner (mig_plan.h) */
	uint64_t *defer;                 /* PLANNED: pages kept for post-copy (predicted written, within budget) */
	bool observing;                  /* PLANNED: sampling before the push */
	uint64_t req;
	struct migp_map_entry map[MIG_BATCH];
};

static inline bool bit_get(const uint64_t *b, uint64_t i) { return b[i / 64] & (UINT64_C(1) << (i % 64)); }
static inline void bit_set(uint64_t *b, uint64_t i) { b[i / 64] |= UINT64_C(1) << (i % 64); }
static inline void bit_clear(uint64_t *b, uint64_t i) { b[i / 64] &= ~(UINT64_C(1) << (i % 64)); }

static uint64_t bits_count(const uint64_t *b, uint64_t n)
{
	uint64_t c = 0;

	for (uint64_t w = 0; w < (n + 63) / 64; w++)
		c += (uint64_t)__builtin_popcountll(b[w]);
	return c;
}

struct mig_src *mig_src_find(struct mig_engine *eng, const char *id)
{
	for (struct mig_src *s = eng->srcs; s; s = s->next)
		if (strcmp(s->id, id) == 0)
			return s;
	return NULL;
}

static bool active(const struct mig_src *s)
{
	return s->prog.phase >= MIG_PH_SETUP && s->prog.phase <= MIG_PH_POSTCOPY;
}

/* ---------------------------------------------------------------- teardown */

static void close_data(struct mig_src *s)
{
	struct pager *pg = s->eng->pg;

	if (s->sh.tag)
		mig_evh_del(pg, &s->sh);
	if (s->xh.tag)
		mig_evh_del(pg, &s->xh);
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	for (unsigned i = 0; i < s->nsubs; i++) {
		struct src_sub *u = &s->subs[i];

		if (u->mr_stage)
			fx_dereg_mr(u->mr_stage);
		if (u->pc)
			pool_client_close(u->pc);   /* ends every attachment */
		if (u->ctx)
			fx_ctx_destroy(u->ctx);
		memset(u, 0, sizeof(*u));
	}
	s->nsubs = 0;
	if (s->conn)
		fx_conn_close(s->conn);
	s->conn = NULL;
	if (s->ctx) {
		struct fx_wc wc[16];

		(void)fx_poll(s->ctx, wc, 16, 0);   /* reap the flushes so the connection is freed */
	}
	if (s->mr_stage)
		fx_dereg_mr(s->mr_stage);
	s->mr_stage = NULL;
	if (s->pd)
		fx_pd_free(s->pd);
	s->pd = NULL;
	if (s->ctx)
		fx_ctx_destroy(s->ctx);
	s->ctx = NULL;
	if (s->area)
		munmap(s->area, s->area_len);
	s->area = NULL;
	if (s->stage)
		munmap(s->stage, (size_t)(MIG_BATCH + 1) * PG_PAGE);
	s->stage = NULL;
	s->closed = true;
}

static void src_free(struct mig_src *s)
{
	close_data(s);
	if (s->vm && s->vm->mig_src == s)
		s->vm->mig_src = NULL;
	mig_plan_destroy(s->plan);
	s->plan = NULL;
	free(s->defer);
	free(s->dirty);
	free(s->where);
	free(s->subslot);
	free(s);
}

static void set_hold(struct mig_src *s, bool on)
{
	s->frozen = on;
	if (s->vm && !s->vm->dead)
		pg_vm_hold(s->vm, on);
}

static void src_finish(struct mig_src *s, enum mig_phase ph, uint32_t code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void resume_done_source(struct pg_vm *vm, int status, void *ctx)
{
	(void)ctx;
	if (status)
		LOG_ERR("vm %s: the VMM did not resume after the failed migration: %s", vm->id, strerror(-status));
	else
		LOG_INFO("vm %s: running again at the source", vm->id);
}

/*
 * End the migration. Before the switch-over was sent the VM is given back
 * intact: faults served again, the pager's write-protection lifted. After it
 * the VM stays frozen here: it may be running at the destination.
 */
static void src_finish(struct mig_src *s, enum mig_phase ph, uint32_t code, const char *fmt, ...)
{
	char msg[160] = "";
	va_list ap;

	if (!active(s))
		return;
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
	}
	if (code && s->fd >= 0) {
		int n = migp_encode_error(++s->req, code, msg, s->eng->buf, MIGP_MAX_MSG);

		/* Best effort, briefly: the peer or the link may be what failed, and the loop
		 * (every VM's faults, the control socket) must not wait on it. */
		if (n > 0)
			(void)ferry_send_all(s->fd, s->eng->buf, (size_t)n, MIG_ERROR_SEND_MS);
	}
	s->prog.phase = ph;
	s->prog.total_ns = ferry_mono_ns() - s->t0;
	mig_set_progress_error(s->prog.error, sizeof(s->prog.error), "%s", msg);
	close_data(s);
	if (ph == MIG_PH_DONE) {
		s->eng->c.succeeded++;
		LOG_INFO("migration of %s to the destination done: %llu pages sent (%llu to sub-hosts, %llu resent), "
			 "%llu unused skipped, %u rounds, downtime %.3f ms, total %.3f s",
			 s->id, (unsigned long long)s->prog.pages_sent, (unsigned long long)s->prog.pages_to_subhosts,
			 (unsigned long long)s->prog.pages_resent, (unsigned long long)s->prog.pages_skipped_unused,
			 s->prog.round, s->prog.downtime_ns / 1e6, s->prog.total_ns / 1e9);
		if (s->vm && pg_vmm_notice_migrated)
			(void)pg_vmm_notice_migrated(s->vm);
		return;   /* stays frozen */
	}
	if (ph == MIG_PH_ABORTED)
		s->eng->c.aborted++;
	else
		s->eng->c.failed++;
	if (s->switchover_sent) {
		LOG_ERR("migration of %s failed after the switch-over was sent: %s; the VM stays frozen here (it may "
			"run at the destination)", s->id, msg);
		return;
	}
	LOG_WARN("migration of %s %s: %s; the VM runs on here", s->id, ph == MIG_PH_ABORTED ? "aborted" : "failed",
		 msg);
	if (s->vm && !s->vm->dead) {
		set_hold(s, false);
		mig_plan_destroy(s->plan);   /* a sampler still sampling stops: range un-protected, PTEs back */
		s->plan = NULL;
		pg_pageout_unprotect_all(s->vm);
		/* A PAUSE answered or still under way: the VMM answers requests in order, so a
		 * RESUME sent now runs it again either way. */
		if ((s->vm_paused || s->pause_pending) && pg_vmm_request_resume &&
		    pg_vmm_request_resume(s->vm, false, resume_done_source, NULL) < 0)
			LOG_ERR("migration of %s: the VMM could not be asked to resume", s->id);
		s->vm->mig_src = NULL;
	}
	s->vm = NULL;
}

#define FAIL(s, code, ...) src_finish((s), MIG_PH_FAILED, (code), __VA_ARGS__)

static void src_stream_event(struct mig_evh *h, uint32_t events);
static void src_ctx_event(struct mig_evh *h, uint32_t events);

/* ---------------------------------------------------------------- setup */

/*
 * UFFDIO_WRITEPROTECT [start, start+len) of @p vm. EAGAIN means the range is
 * changing: a guest that frees memory fast keeps REMOVE events coming (the
 * kernel refuses while one is unread, and the guest's next MADV_REMOVE starts
 * as soon as the last one is read), and a VMM still in its MADV_DONTNEED (a
 * sampler's DROP_PTES) keeps it changing until that call returns: read the
 * events, give it a moment, up to about half a second. @return 0 or -errno.
 */
static int wp_range(struct pg_vm *vm, uint64_t start, uint64_t len)
{
	struct uffdio_writeprotect w = { .range = { .start = start, .len = len }, .mode = UFFDIO_WRITEPROTECT_MODE_WP };
	int tries = 0;

	while (ioctl(vm->uffd, UFFDIO_WRITEPROTECT, &w) < 0) {
		struct timespec pause = { 0, 100000 };

		if (errno != EAGAIN || ++tries > 4096 || vm->dead)
			return -errno;
		pg_vm_drain_events(vm);   /* an unread REMOVE makes the kernel refuse: read it first */
		if (tries > 16)
			nanosleep(&pause, NULL);
	}
	return 0;
}

/* Write-protect every region of @p vm, one call each. */
static int protect_regions(struct pg_vm *vm, struct ferry_err *err)
{
	for (unsigned i = 0; i < vm->nregions; i++) {
		int rc = wp_range(vm, vm->regions[i].hva, vm->regions[i].size);

		if (rc < 0)
			return ferry_err_set(err, -rc, "write-protecting region %u: %s", i, strerror(-rc));
	}
	return 0;
}

static int expect(struct mig_src *s, struct migp_msg *m, uint8_t type, struct ferry_err *err)
{
	int code, rc = mig_recv_msg(s->fd, s->eng->rx, m, MIG_IO_TIMEOUT_MS, &code);

	if (rc == -EPROTO)
		return ferry_err_set(err, EPROTO, "destination sent a bad message: %s", migp_errcode_str((uint32_t)code));
	if (rc)
		return ferry_err_set(err, -rc, "destination stream: %s", strerror(-rc));
	if (m->hdr.type == MIGP_ERROR)
		return ferry_err_set(err, m->u.error.code == MIG_E_AUTH_FAILED ? EACCES : EPROTO,
				     "destination refused: %s (%s)", m->u.error.msg, migp_errcode_str(m->u.error.code));
	if (m->hdr.type != type)
		return ferry_err_set(err, EPROTO, "destination sent %s, expected %s", migp_type_name(m->hdr.type),
				     migp_type_name(type));
	return 0;
}

static int handshake(struct mig_src *s, const struct migp_start *st, uint16_t *data_port, uint8_t bind[32],
		     struct ferry_err *err)
{
	struct mig_engine *eng = s->eng;
	uint8_t cnonce[MIGP_NONCE_LEN], mac[MIGP_MAC_LEN];
	char name[MIGP_VM_ID_MAX + 2 + 2 * MIGP_TOKEN_LEN];
	struct migp_msg m;
	int rc;

	if ((rc = mig_send_msg(s->fd, eng->buf, migp_encode_hello(++s->req, s->id, eng->buf, MIGP_MAX_MSG))))
		return ferry_err_set(err, -rc, "sending HELLO: %s", strerror(-rc));
	if ((rc = expect(s, &m, MIGP_CHALLENGE, err)))
		return rc;
	mig_auth_name(s->id, st->token, name, sizeof(name));
	ferry_auth_nonce(cnonce);
	ferry_auth_mac(&eng->secret, "ferry-mig-c", m.u.challenge.nonce, cnonce, name, strlen(name), mac);
	{
		uint8_t snonce[MIGP_NONCE_LEN];

		memcpy(snonce, m.u.challenge.nonce, sizeof(snonce));
		if ((rc = mig_send_msg(s->fd, eng->buf, migp_encode_auth(++s->req, cnonce, mac, eng->buf, MIGP_MAX_MSG))))
			return ferry_err_set(err, -rc, "sending AUTH: %s", strerror(-rc));
		if ((rc = expect(s, &m, MIGP_AUTH_OK, err)))
			return rc;
		if (ferry_auth_verify(&eng->secret, "ferry-mig-s", cnonce, snonce, name, strlen(name), m.u.auth_ok.mac)) {
			eng->c.auth_failures++;
			return ferry_err_set(err, EACCES, "the destination's proof is wrong (other cluster secret?)");
		}
	}
	*data_port = m.u.auth_ok.data_port;
	memcpy(bind, m.u.auth_ok.bind, 32);
	return 0;
}

static int attach_subs(struct mig_src *s, struct ferry_err *err)
{
	struct mig_engine *eng = s->eng;
	struct migp_msg m;
	int rc, code;

	for (;;) {
		rc = mig_recv_msg(s->fd, eng->rx, &m, MIG_IO_TIMEOUT_MS, &code);
		if (rc)
			return ferry_err_set(err, -rc, "waiting for the sub-host extents: %s",
					     rc == -EPROTO ? migp_errcode_str((uint32_t)code) : strerror(-rc));
		if (m.hdr.type == MIGP_ERROR)
			return ferry_err_set(err, ENOSPC, "destination: %s", m.u.error.msg);
		if (m.hdr.type == MIGP_SUBHOST) {
			struct src_sub *u = &s->subs[m.u.subhost.sub];
			struct pool_client_opts o = { .host = m.u.subhost.host.host, .port = m.u.subhost.host.port,
						      .name = "ferry-pager-migration", .secret = &eng->secret,
						      .timeout_ms = MIG_IO_TIMEOUT_MS };
			struct fx_ctx_opts co = { .op_timeout_ms = 3000, .poll_spin_us = FX_POLL_SPIN_OFF };

			if (u->pc)
				return ferry_err_set(err, EPROTO, "destination named sub-host %u twice", m.u.subhost.sub);
			snprintf(u->host, sizeof(u->host), "%s", m.u.subhost.host.host);
			u->port = m.u.subhost.host.port;
			if (m.u.subhost.sub >= s->nsubs)
				s->nsubs = m.u.subhost.sub + 1u;
			if ((rc = fx_ctx_create(eng->pg->cfg->transport, &co, &u->ctx, err)) ||
			    (rc = pool_client_connect(u->ctx, &o, &u->pc, err)))
				return ferry_err_prefix(err, "sub-host %s:%u: ", u->host, u->port);
			if ((rc = fx_reg_mr(pool_client_pd(u->pc), s->stage, (size_t)(MIG_BATCH + 1) * PG_PAGE,
					    FX_ACCESS_LOCAL_WRITE, &u->mr_stage, err)))
				return rc;
			continue;
		}
		if (m.hdr.type != MIGP_EXTENTS)
			return ferry_err_set(err, EPROTO, "destination sent %s, expected SUBHOST or EXTENTS",
					     migp_type_name(m.hdr.type));
		/* The extents come in order, MIGP_EXTENTS_MSG per message, until `total`. */
		if (m.u.extents.first != s->next_ext || (s->next_ext && m.u.extents.total != s->ext_total))
			return ferry_err_set(err, EPROTO, "EXTENTS entries %u..%u out of order (have %u of %u)",
					     m.u.extents.first, m.u.extents.first + m.u.extents.count, s->next_ext,
					     m.u.extents.total);
		s->ext_total = m.u.extents.total;
		for (uint16_t i = 0; i < m.u.extents.count && s->next_ext < MIGP_EXTENTS_MAX; i++) {
			struct migp_extent x;
			struct src_ext *e = &s->ext[s->next_ext];

			migp_extents_entry(&m.u.extents, i, &x);
			if (x.sub >= s->nsubs || !s->subs[x.sub].pc)
				return ferry_err_set(err, EPROTO, "extent on unknown sub-host %u", x.sub);
			rc = pool_client_attach(s->subs[x.sub].pc, x.token, &e->pe, err);
			if (rc)
				return ferry_err_prefix(err, "attaching extent %u on %s:%u: ", x.extent_id,
							s->subs[x.sub].host, s->subs[x.sub].port);
			e->sub = x.sub;
			e->nslots = (uint32_t)(e->pe.length / PG_PAGE);
			e->next = 0;
			s->next_ext++;
		}
		if (s->next_ext == s->ext_total)
			return 0;
	}
}

int mig_src_start(struct mig_engine *eng, const struct migp_start *st, struct ferry_err *err)
{
	struct pg_vm *vm = pg_vm_find(eng->pg, st->id);
	struct mig_src *s, *old = mig_src_find(eng, st->id);
	struct fx_ctx_opts co = { .op_timeout_ms = 3000, .poll_spin_us = FX_POLL_SPIN_OFF };
	struct fx_conn_opts cn = { .max_send_wr = 2 * MIG_BATCH, .max_recv_wr = 4 };
	uint8_t bind[32];
	uint16_t data_port = 0;
	struct migp_layout l = { .mode = st->mode };
	struct migp_msg m;
	uint64_t used = 0;
	int rc;

	if (!vm)
		return ferry_err_set(err, ENOENT, "no VM '%s' is registered with this pager", st->id);
	if (old && active(old))
		return ferry_err_set(err, EEXIST, "VM '%s' is already migrating", st->id);
	if (vm->mig_dst)
		return ferry_err_set(err, EBUSY, "VM '%s' is an incoming migration here", st->id);
	if (vm->failed)
		return ferry_err_set(err, EBUSY, "VM '%s' has failed: %s", st->id, vm->fail_reason);
	if (vm->kind != PG_VM_VMMP)
		return ferry_err_set(err, EOPNOTSUPP, "VM '%s': only VMM-protocol VMs can migrate", st->id);
	for (unsigned i = 0; i < vm->nregions; i++) {
		if (vm->regions[i].memfd < 0 || !(vm->regions[i].modes & FERRY_VMMP_MODE_WP))
			return ferry_err_set(err, EOPNOTSUPP,
					     "VM '%s' region %u: migration needs memory-file regions registered with "
					     "MODE_WP (write tracking)", st->id, i);
	}
	if (vm->nregions > MIGP_REGIONS_MAX)
		return ferry_err_set(err, EOPNOTSUPP, "VM '%s' has more than %u regions", st->id, MIGP_REGIONS_MAX);
	if (old) {
		for (struct mig_src **pp = &eng->srcs; *pp; pp = &(*pp)->next)
			if (*pp == old) {
				*pp = old->next;
				break;
			}
		src_free(old);
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return ferry_err_set(err, ENOMEM, "out of memory");
	s->eng = eng;
	s->fd = -1;
	s->mode = (enum mig_mode)st->mode;
	snprintf(s->id, sizeof(s->id), "%s", st->id);
	s->t0 = ferry_mono_ns();
	s->prog.started_ns = ferry_wall_ns();
	s->prog.phase = MIG_PH_SETUP;
	s->prog.pages_total = vm->pm.npages;
	s->dirty = calloc((vm->pm.npages + 63) / 64, sizeof(uint64_t));
	s->where = calloc(vm->pm.npages, 1);
	s->subslot = calloc(vm->pm.npages, sizeof(uint32_t));
	s->stage = mmap(NULL, (size_t)(MIG_BATCH + 1) * PG_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			-1, 0);
	s->next = eng->srcs;
	eng->srcs = s;
	eng->c.started++;
	if (!s->dirty || !s->where || !s->subslot || s->stage == MAP_FAILED) {
		s->stage = NULL;
		rc = ferry_err_set(err, ENOMEM, "out of memory");
		goto fail;
	}
	s->fd = mig_tcp_connect(st->dest.host, st->dest.port, MIG_IO_TIMEOUT_MS, err);
	if (s->fd < 0) {
		rc = s->fd;
		s->fd = -1;
		goto fail;
	}
	if ((rc = handshake(s, st, &data_port, bind, err)))
		goto fail;
	s->area = mig_map_vm(vm, &s->area_len, err);
	if (!s->area) {
		rc = err ? err->code : -EIO;
		goto fail;
	}
	if ((rc = fx_ctx_create(eng->pg->cfg->transport, &co, &s->ctx, err)) ||
	    (rc = fx_pd_alloc(s->ctx, &s->pd, err)) ||
	    (rc = fx_reg_mr(s->pd, s->stage, (size_t)(MIG_BATCH + 1) * PG_PAGE, FX_ACCESS_LOCAL_WRITE, &s->mr_stage,
			    err)) ||
	    (rc = fx_connect(s->ctx, s->pd, st->dest.host, data_port, &cn, &s->conn, err)))
		goto fail;
	if ((rc = mig_send_msg(s->fd, eng->buf, migp_encode_bind(++s->req, bind, eng->buf, MIGP_MAX_MSG)))) {
		rc = ferry_err_set(err, -rc, "sending BIND: %s", strerror(-rc));
		goto fail;
	}
	/* Layout, and the initial send set: every used page (FULL: every page). */
	for (uint64_t i = 0; i < vm->pm.npages; i++) {
		if (s->mode == MIG_MODE_FULL || pm_get(&vm->pm, i)->state != PM_UNUSED) {
			bit_set(s->dirty, i);
			used++;
		} else {
			s->prog.pages_skipped_unused++;
		}
	}
	l.npages = vm->pm.npages;
	l.pages_used = used;
	l.generation = 0;
	l.nregions = (uint8_t)vm->nregions;
	for (unsigned i = 0; i < vm->nregions; i++)
		l.regions[i] = (struct migp_region){ vm->regions[i].gpa, vm->regions[i].size, vm->regions[i].first_page };
	if ((rc = mig_send_msg(s->fd, eng->buf, migp_encode_layout(++s->req, &l, eng->buf, MIGP_MAX_MSG)))) {
		rc = ferry_err_set(err, -rc, "sending LAYOUT: %s", strerror(-rc));
		goto fail;
	}
	if ((rc = expect(s, &m, MIGP_LAYOUT_OK, err)))
		goto fail;
	s->dst_rkey = m.u.layout_ok.dst_rkey;
	s->dst_base = m.u.layout_ok.dst_base;
	s->dst_pages = m.u.layout_ok.dst_pages;
	s->ring_slots = s->credits = m.u.layout_ok.stage_slots;
	s->ring_head = 0;
	if (s->dst_pages < used && (rc = attach_subs(s, err)))
		goto fail;
	if (mig_set_nonblock(s->fd) || mig_evh_add(eng->pg, &s->sh, s->fd, src_stream_event) ||
	    mig_evh_add(eng->pg, &s->xh, fx_ctx_fd(s->ctx), src_ctx_event)) {
		rc = ferry_err_set(err, EIO, "epoll: %s", strerror(errno));
		goto fail;
	}
	s->vm = vm;
	vm->mig_src = s;
	s->prog.pages_remaining = used;
	/* Track writes from here on: every region write-protected in one call each;
	 * a write faults and marks its page dirty again. */
	if (vm->plan && s->mode == MIG_MODE_PLANNED) {
		/* continuous sampling: its history plans this migration at the current period's end */
		s->plan = vm->plan;
		vm->plan = NULL;
		mig_plan_finish_soon(s->plan);
		s->observing = true;
	} else if (vm->plan) {
		mig_plan_destroy(vm->plan);   /* the sampler must not take this migration's WP faults */
		vm->plan = NULL;
	}
	if ((rc = protect_regions(vm, err)) < 0)
		goto fail;
	if (s->mode == MIG_MODE_PLANNED && !s->plan) {
		s->plan = mig_plan_start(vm, false, err);
		if (!s->plan) {
			rc = -ENOMEM;
			goto fail;
		}
		s->observing = true;
	}
	/* With the access sampler the pager holds no page protected for the migration while it
	 * samples (the sampler protects the range each period); the push protects each page it sends. */
	if (!mig_plan_has_sampler(s->plan))
		for (uint64_t i = pm_next(&vm->pm, PM_LOCAL, 0); i < vm->pm.npages; i = pm_next(&vm->pm, PM_LOCAL, i + 1))
			pm_flags_set(&vm->pm, i, PM_F_WP);
	if (s->mode == MIG_MODE_POSTCOPY) {
		s->overflow = used > s->dst_pages ? used - s->dst_pages : 0;
		s->reserve = s->dst_pages;
		s->cold_pass = true;
	}
	s->prog.phase = MIG_PH_PRECOPY;
	LOG_INFO("migration of %s to %s:%u started (%s): %llu pages, %llu used, destination holds %llu, %u sub-hosts, "
		 "%u extents", s->id, st->dest.host, st->dest.port, mig_mode_name(s->mode),
		 (unsigned long long)vm->pm.npages, (unsigned long long)used, (unsigned long long)s->dst_pages, s->nsubs,
		 s->next_ext);
	return 0;
fail:
	s->prog.phase = MIG_PH_SETUP;
	if (!s->vm) {
		s->vm = vm;   /* so that src_finish lifts any protection */
		vm->mig_src = s;
	}
	src_finish(s, MIG_PH_FAILED, MIG_E_ABORTED, "setup: %s", err ? err->msg : "failed");
	return rc < 0 ? rc : -EIO;
}

/* ---------------------------------------------------------------- sending */

static int wp_page(struct pg_vm *vm, uint64_t idx)
{
	int rc = wp_range(vm, pg_page_hva(vm, idx), PG_PAGE);

	if (rc == 0)
		pm_flags_set(&vm->pm, idx, PM_F_WP);
	return rc;
}

/* A free slot in the sub-host extents: (extent, slot), or false when they are full. */
static bool sub_slot(struct mig_src *s, uint32_t *ext, uint32_t *slot)
{
	while (s->cur_ext < s->next_ext) {
		struct src_ext *e = &s->ext[s->cur_ext];

		if (e->next < e->nslots) {
			*ext = s->cur_ext;
			*slot = e->next++;
			return true;
		}
		s->cur_ext++;
	}
	return false;
}

/* Signalled WRITEs posted on one connection, and what is still awaited of them. */
struct wr_wait {
	struct fx_ctx *ctx;
	struct pool_client *pc;   /* a sub-host: its completions come through the pool client */
	unsigned want;
	int sub;                  /* -1: the destination, else the sub-host index (for the error) */
};

/*
 * Wait until every @p w[k].want signalled completion arrived. Meanwhile the
 * write faults of @p serve (NULL: none, its faults are held) are served
 * (pg_vm_serve_writes()): a vCPU that writes a write-protected page must not
 * wait for the copy of a whole batch, or the guest crawls through the
 * migration (and, crawling, dirties nothing: pre-copy would look better than
 * it is). @return 0, or -EIO with @p failed the index of the connection that
 * failed and @p why filled.
 */
static int wait_writes(struct pg_vm *serve, struct wr_wait *w, unsigned nw, unsigned *failed, char *why,
		       size_t why_len)
{
	uint64_t deadline = ferry_mono_ns() + (uint64_t)MIG_IO_TIMEOUT_MS * 1000000u;
	struct pollfd pfd[MIGP_SUBS_MAX + 2];

	for (;;) {
		unsigned npfd = 0, left = 0;

		for (unsigned k = 0; k < nw; k++) {
			struct fx_wc wc[16];
			int n;

			if (!w[k].want)
				continue;
			n = w[k].pc ? pool_client_poll(w[k].pc, wc, 16, 0) : fx_poll(w[k].ctx, wc, 16, 0);
			if (n < 0) {
				*failed = k;
				snprintf(why, why_len, "poll: %s", strerror(-n));
				return -EIO;
			}
			for (int i = 0; i < n; i++) {
				if (wc[i].status != FX_WC_SUCCESS) {
					*failed = k;
					snprintf(why, why_len, "%s", fx_wc_status_str(wc[i].status));
					return -EIO;
				}
				if (w[k].want)
					w[k].want--;
			}
			if (w[k].want) {
				left++;
				pfd[npfd++] = (struct pollfd){ .fd = fx_ctx_fd(w[k].ctx), .events = POLLIN };
			}
		}
		if (!left)
			return 0;
		if (ferry_mono_ns() > deadline) {
			for (*failed = 0; !w[*failed].want; (*failed)++)
				;
			snprintf(why, why_len, "no completion within %d ms", MIG_IO_TIMEOUT_MS);
			return -EIO;
		}
		bool watch = serve && !serve->dead && serve->uffd >= 0;

		if (watch)
			pfd[npfd++] = (struct pollfd){ .fd = serve->uffd, .events = POLLIN };
		/* Bounded: a transport whose descriptor misses an edge still gets polled. */
		if (poll(pfd, npfd, 5) > 0 && watch && (pfd[npfd - 1].revents & POLLIN))
			pg_vm_serve_writes(serve);
	}
}

/* Post @p n <= MIG_BATCH WRITEs on @p conn, the last one signalled. @return 0 or -EIO (why filled). */
static int post_writes(struct fx_conn *conn, struct fx_send_wr *wr, unsigned n, char *why, size_t why_len)
{
	int perr = 0, got;

	for (unsigned i = 0; i < n; i++)
		wr[i].flags = i + 1 == n ? FX_WR_SIGNALED : 0;
	got = fx_post_send(conn, wr, (int)n, &perr);
	if (got < 0 || (unsigned)got != n) {
		/* A partial post leaves its signalled request unposted: nothing would complete. */
		snprintf(why, why_len, "posting WRITEs: %s", strerror(perr ? -perr : got < 0 ? -got : EAGAIN));
		return -EIO;
	}
	return 0;
}

/* A CREDIT from the destination: @return 0, or -EIO after failing the migration (it lies). */
static int take_credit(struct mig_src *s, uint32_t slots)
{
	if (slots > s->ring_slots - s->credits) {
		s->eng->c.bad_messages++;
		FAIL(s, MIG_E_MALFORMED, "the destination returned %u staging slots, only %u are in use", slots,
		     s->ring_slots - s->credits);
		return -EIO;
	}
	s->credits += slots;
	return 0;
}

/*
 * Wait (reading the stream) until @p want staging slots are free at the
 * destination. The destination returns them after it installed the pages;
 * a ring larger than a few batches means this rarely waits.
 */
static int await_credits(struct mig_src *s, unsigned want)
{
	struct migp_msg m;
	int code, rc;

	while (s->credits < want) {
		rc = mig_recv_msg(s->fd, s->eng->rx, &m, MIG_IO_TIMEOUT_MS, &code);
		if (rc) {
			if (rc == -EPROTO)
				s->eng->c.bad_messages++;
			FAIL(s, rc == -EPROTO ? (uint32_t)code : 0, "waiting for staging credits: %s",
			     rc == -EPROTO ? migp_errcode_str((uint32_t)code)
					   : rc == -ECONNRESET ? "closed" : strerror(-rc));
			return -EIO;
		}
		if (m.hdr.type == MIGP_ERROR) {
			FAIL(s, 0, "destination: %s (%s)", m.u.error.msg, migp_errcode_str(m.u.error.code));
			return -EIO;
		}
		if (m.hdr.type != MIGP_CREDIT) {
			s->eng->c.bad_messages++;
			FAIL(s, MIG_E_UNEXPECTED, "destination sent %s while the source waited for credits",
			     migp_type_name(m.hdr.type));
			return -EIO;
		}
		if (take_credit(s, m.u.credit.slots))
			return -EIO;
	}
	return 0;
}

/*
 * Post-copy: WRITE the pages the destination asks for into the staging
 * slots it names, then answer with their PAGE_MAP (DEST entries, same
 * order). Only pages kept here for post-copy (resident, frozen) are served.
 */
static void serve_fetch(struct mig_src *s, const struct migp_fetch *f)
{
	static struct fx_sge sge[MIGP_FETCH_MAX];
	static struct fx_send_wr wr[MIGP_FETCH_MAX];
	struct pg_vm *vm = s->vm;
	char why[128] = "";
	int rc;

	if (!vm || f->first_slot + f->count > s->ring_slots) {
		s->eng->c.bad_messages++;
		FAIL(s, MIG_E_MALFORMED, "FETCH of slots %u..%u beyond the staging ring of %u", f->first_slot,
		     f->first_slot + f->count, s->ring_slots);
		return;
	}
	for (uint32_t k = 0; k < f->count; k++) {
		uint64_t i = migp_fetch_page(f, k);

		if (i >= vm->pm.npages || s->where[i] != W_SOURCE) {
			s->eng->c.bad_messages++;
			FAIL(s, MIG_E_MALFORMED, "FETCH of page %llu, which is not kept here for post-copy",
			     (unsigned long long)i);
			return;
		}
		if (pm_get(&vm->pm, i)->state == PM_LOCAL) {
			memcpy(s->stage + (uint64_t)k * PG_PAGE, s->area + i * PG_PAGE, PG_PAGE);
		} else if (pm_get(&vm->pm, i)->state == PM_UNUSED) {
			/* The VMM released it (REMOVE) after the stop: its content is zeros. */
			memset(s->stage + (uint64_t)k * PG_PAGE, 0, PG_PAGE);
		} else {
			FAIL(s, MIG_E_INTERNAL, "post-copy page %llu is no longer resident here",
			     (unsigned long long)i);
			return;
		}
		sge[k] = (struct fx_sge){ s->stage + (uint64_t)k * PG_PAGE, PG_PAGE, s->mr_stage->lkey };
		wr[k] = (struct fx_send_wr){ .wr_id = i, .opcode = FX_OP_WRITE, .sg_list = &sge[k], .num_sge = 1,
					     .remote_addr = s->dst_base + (uint64_t)(f->first_slot + k) * PG_PAGE,
					     .rkey = s->dst_rkey };
		s->map[k] = (struct migp_map_entry){ .page = i, .generation = pm_get(&vm->pm, i)->version,
						     .where = MIGP_W_DEST, .slot = f->first_slot + k };
	}
	struct wr_wait w = { .ctx = s->ctx, .want = 1, .sub = -1 };
	unsigned failed;

	/* The VM is frozen here (post-copy): its faults stay held, its uffd is not watched. */
	if (post_writes(s->conn, wr, f->count, why, sizeof(why)) || wait_writes(NULL, &w, 1, &failed, why, sizeof(why))) {
		FAIL(s, MIG_E_PEER_LOST, "writing post-copy pages to the destination: %s", why);
		return;
	}
	rc = mig_send_msg(s->fd, s->eng->buf, migp_encode_page_map(++s->req, s->map, f->count, s->eng->buf,
								    MIGP_MAX_MSG));
	if (rc) {
		FAIL(s, MIG_E_PEER_LOST, "answering FETCH: %s", strerror(-rc));
		return;
	}
	s->prog.bytes_sent += (uint64_t)f->count * PG_PAGE;
	s->prog.pages_sent += f->count;
}

#define MIG_AGE_BUCKETS 64u   /* write ages told apart when choosing deferrals; older ones share the last */

static unsigned age_bucket(const struct mig_src *s, uint64_t i)
{
	uint32_t age = mig_plan_write_age(s->plan, i);

	return age < MIG_AGE_BUCKETS - 1 ? age : MIG_AGE_BUCKETS - 1;
}

/*
 * PLANNED: mark the pages that go post-copy in s->defer, @return how many.
 * The pages predicted written, as many as the main host can hold (room is
 * kept for them); when more are predicted, the most recently written blocks
 * first (the likeliest to be written again before the stop). The rest go
 * pre-copy to the sub-hosts: possible re-sends, but no downtime.
 */
static uint64_t plan_deferrals(struct mig_src *s)
{
	uint64_t per_age[MIG_AGE_BUCKETS] = { 0 }, deferred = 0, room = s->dst_pages, npages = s->vm->pm.npages;
	unsigned cut = MIG_AGE_BUCKETS;

	s->defer = calloc((npages + 63) / 64, sizeof(uint64_t));
	if (!s->defer)
		return 0;   /* no memory: everything goes pre-copy, which is still correct */
	for (uint64_t i = 0; i < npages; i++)
		if (bit_get(s->dirty, i) && mig_plan_defer(s->plan, i))
			per_age[age_bucket(s, i)]++;
	/* The first age that does not fit whole: the younger ones go whole, it goes in part. */
	for (unsigned a = 0; a < MIG_AGE_BUCKETS; a++) {
		if (per_age[a] > room) {
			cut = a;
			break;
		}
		room -= per_age[a];
	}
	for (uint64_t i = 0; i < npages; i++) {
		unsigned a;

		if (!bit_get(s->dirty, i) || !mig_plan_defer(s->plan, i))
			continue;
		a = age_bucket(s, i);
		if (a > cut || (a == cut && room == 0))
			continue;
		if (a == cut)
			room--;
		bit_set(s->defer, i);
		deferred++;
	}
	if (cut < MIG_AGE_BUCKETS)
		LOG_INFO("migration of %s: more pages predicted written than the main host holds (%llu): the blocks "
			 "written %u or fewer periods ago first", s->id, (unsigned long long)s->dst_pages, cut);
	return deferred;
}

/*
 * PLANNED, before the stop: does page @p i (last placed @p prev) stay at the
 * source for post-copy? The pages the planner deferred, and pushed pages
 * written since (their data would cross again anyway), are announced as
 * SOURCE while the VM still runs, so the downtime carries neither their data
 * nor their map entries; the destination pulls them after the switch-over.
 */
static bool planned_post(const struct mig_src *s, uint64_t i, uint8_t prev)
{
	if (s->mode != MIG_MODE_PLANNED || !s->defer)
		return false;
	return prev == W_DEST || (prev == W_NONE && bit_get(s->defer, i));
}

/*
 * PLANNED, after its first pass: must dirty page @p i go in another round
 * before the stop? A written page whose home is a sub-host (or a page first
 * used since the pass that the main host has no room for) would otherwise be
 * re-sent in the downtime, since post-copy only pulls into the main host; and
 * a pushed page written since is announced as SOURCE (planned_post()).
 */
static bool planned_presend(const struct mig_src *s, uint64_t i)
{
	if (s->where[i] == W_SUB || s->where[i] == W_DEST)
		return true;
	if (s->where[i] != W_NONE)
		return false;
	return (s->defer && bit_get(s->defer, i)) || s->dst_used + s->reserve >= s->dst_pages;
}

/*
 * Send pages @p idx[0..n): each is write-protected (if resident) just before
 * its copy, written one-sided to its place at the destination or in a
 * sub-host extent, and its new generation goes out in one PAGE_MAP after
 * every WRITE completed. @p at_source: resident pages are only mapped SOURCE
 * (post-copy), no data moves for them.
 */
static int send_batch(struct mig_src *s, const uint64_t *idx, unsigned n, bool at_source)
{
	static struct fx_sge sge[MIG_BATCH];
	static struct fx_send_wr dwr[MIG_BATCH], swr[MIGP_SUBS_MAX][MIG_BATCH];
	static struct rs_op ops[MIG_BATCH];
	static unsigned opk[MIG_BATCH];
	unsigned nd = 0, ns[MIGP_SUBS_MAX] = { 0 }, nops = 0, nw = 0, failed = 0;
	struct wr_wait wait[MIGP_SUBS_MAX + 1];
	struct pg_vm *vm = s->vm;
	struct pagemap *pm = &vm->pm;
	char why[128] = "";
	uint64_t data = 0, resent = 0, tosub = 0;
	int rc;

	if (await_credits(s, n))
		return -EIO;
	for (unsigned k = 0; k < n; k++) {
		uint64_t i = idx[k];
		const struct pm_entry *e = pm_get(pm, i);
		struct migp_map_entry *me = &s->map[k];
		uint8_t prev = s->where[i];

		bit_clear(s->dirty, i);
		pm_bump_version(pm, i);
		*me = (struct migp_map_entry){ .page = i, .generation = pm_get(pm, i)->version };
		if (e->state == PM_UNUSED && s->mode != MIG_MODE_FULL) {
			me->where = MIGP_W_UNUSED;
			s->where[i] = W_UNUSED;
			continue;
		}
		/* Post-copy keeps a resident page at the source only if the main host will hold it
		 * (it is pulled there); a page beyond the budget goes to its sub-host slot now. Such a
		 * page needs no write-protection: its data moves only once the VM is frozen. */
		if ((at_source || planned_post(s, i, prev)) && e->state == PM_LOCAL && prev != W_SUB &&
		    (prev == W_DEST || prev == W_SOURCE || s->dst_used < s->dst_pages)) {
			if (prev != W_DEST && prev != W_SOURCE) {
				s->dst_used++;
				if (s->reserve)
					s->reserve--;
			}
			/* Pushed already and written since: the destination pulls it again post-copy,
			 * its data crosses twice like a pre-copy re-send (counted as one). */
			if (prev == W_DEST)
				s->prog.pages_resent++;
			me->where = MIGP_W_SOURCE;
			s->where[i] = W_SOURCE;
			continue;
		}
		if (e->state == PM_LOCAL && !(e->flags & PM_F_WP) && (rc = wp_page(vm, i)) < 0) {
			FAIL(s, MIG_E_INTERNAL, "write-protecting page %llu: %s", (unsigned long long)i, strerror(-rc));
			return -EIO;
		}
		/* Where the data comes from: always through the registered send buffer. */
		sge[k] = (struct fx_sge){ s->stage + (uint64_t)k * PG_PAGE, PG_PAGE, 0 };
		if (e->state == PM_LOCAL) {
			memcpy(s->stage + (uint64_t)k * PG_PAGE, s->area + i * PG_PAGE, PG_PAGE);
		} else if (e->state == PM_REMOTE && e->server != PM_SERVER_SNAPSHOT) {
			ops[nops] = (struct rs_op){ .server = e->server, .slot = e->slot, .buf = nops };
			opk[nops++] = k;
		} else {
			/* UNUSED in FULL mode: a page of zeros, like a conventional migration. */
			memset(s->stage + (uint64_t)k * PG_PAGE, 0, PG_PAGE);
		}
		/* Where it goes: where it went before, else the destination up to its budget, else a sub-host. */
		if (prev == W_SUB) {
			me->where = MIGP_W_SUB;
			me->extent = (s->subslot[i] - 1) >> 20;
			me->slot = (s->subslot[i] - 1) & 0xfffff;
		} else if (prev == W_DEST || s->dst_used + (at_source ? 0 : s->reserve) < s->dst_pages) {
			if (prev != W_DEST)
				s->dst_used++;
			me->where = MIGP_W_DEST;
		} else if (sub_slot(s, &me->extent, &me->slot)) {
			me->where = MIGP_W_SUB;
			s->subslot[i] = (me->extent << 20 | me->slot) + 1;
		} else {
			/* Budget and extents exhausted (pages written into previously unused memory
			 * during the migration): the main host takes it and pages out later. */
			s->dst_used++;
			me->where = MIGP_W_DEST;
		}
		if (me->where == MIGP_W_SUB) {
			struct src_ext *x = &s->ext[me->extent];
			struct src_sub *u = &s->subs[x->sub];
			struct fx_sge *g = &sge[k];

			me->sub = x->sub;
			g->lkey = u->mr_stage->lkey;
			swr[x->sub][ns[x->sub]++] = (struct fx_send_wr){ .wr_id = i, .opcode = FX_OP_WRITE, .sg_list = g,
									 .num_sge = 1,
									 .remote_addr = x->pe.base + (uint64_t)me->slot * PG_PAGE,
									 .rkey = x->pe.rkey };
			tosub++;
			s->where[i] = W_SUB;
		} else {
			struct fx_sge *g = &sge[k];

			g->lkey = s->mr_stage->lkey;
			/* The next slot of the destination's staging ring (credits were checked for the batch). */
			me->slot = (s->ring_head + nd) % s->ring_slots;
			dwr[nd++] = (struct fx_send_wr){ .wr_id = i, .opcode = FX_OP_WRITE, .sg_list = g, .num_sge = 1,
							 .remote_addr = s->dst_base + (uint64_t)me->slot * PG_PAGE,
							 .rkey = s->dst_rkey };
			s->where[i] = W_DEST;
		}
		if (prev == W_DEST || prev == W_SUB || prev == W_SOURCE)
			resent++;
		data++;
	}
	/* Pages paged out at the source come through the pool bounce buffer. */
	if (nops) {
		if (rs_io(s->eng->pg->rs, FX_OP_READ, ops, nops)) {
			FAIL(s, MIG_E_INTERNAL, "reading pages paged out at the source from the pool failed");
			return -EIO;
		}
		for (unsigned o = 0; o < nops; o++)
			memcpy(s->stage + (uint64_t)opk[o] * PG_PAGE, rs_bounce(s->eng->pg->rs, ops[o].buf), PG_PAGE);
	}
	/* Every connection's WRITEs go out before any is awaited: the links work in parallel. */
	if (nd) {
		if (post_writes(s->conn, dwr, nd, why, sizeof(why))) {
			FAIL(s, MIG_E_PEER_LOST, "writing pages to the destination: %s", why);
			return -EIO;
		}
		wait[nw++] = (struct wr_wait){ .ctx = s->ctx, .want = 1, .sub = -1 };
	}
	s->ring_head = (s->ring_head + nd) % s->ring_slots;
	s->credits -= nd;
	for (unsigned u = 0; u < s->nsubs; u++) {
		if (!ns[u])
			continue;
		if (post_writes(pool_client_conn(s->subs[u].pc), swr[u], ns[u], why, sizeof(why))) {
			FAIL(s, MIG_E_PEER_LOST, "writing pages to sub-host %s:%u: %s", s->subs[u].host, s->subs[u].port,
			     why);
			return -EIO;
		}
		wait[nw++] = (struct wr_wait){ .ctx = s->subs[u].ctx, .pc = s->subs[u].pc, .want = 1, .sub = (int)u };
	}
	if (nw && wait_writes(at_source ? NULL : vm, wait, nw, &failed, why, sizeof(why))) {
		if (wait[failed].sub < 0)
			FAIL(s, MIG_E_PEER_LOST, "writing pages to the destination: %s", why);
		else
			FAIL(s, MIG_E_PEER_LOST, "writing pages to sub-host %s:%u: %s", s->subs[wait[failed].sub].host,
			     s->subs[wait[failed].sub].port, why);
		return -EIO;
	}
	for (unsigned k = 0; k < n;) {
		unsigned c = n - k > MIGP_MAP_MAX ? MIGP_MAP_MAX : n - k;
		int len = migp_encode_page_map(++s->req, s->map + k, c, s->eng->buf, MIGP_MAX_MSG);

		if ((rc = mig_send_msg(s->fd, s->eng->buf, len))) {
			FAIL(s, MIG_E_PEER_LOST, "sending the page map: %s", strerror(-rc));
			return -EIO;
		}
		s->prog.bytes_sent += (uint64_t)len;
		k += c;
	}
	s->prog.pages_sent += data;
	s->prog.pages_resent += resent;
	s->prog.pages_to_subhosts += tosub;
	s->prog.bytes_sent += data * PG_PAGE;
	s->prog.generation++;
	return 0;
}

/* Up to @p max pages of the send set from the cursor (@p all: the stop's, everything left). */
static unsigned collect(struct mig_src *s, uint64_t *idx, unsigned max, bool all)
{
	uint64_t np = s->vm->pm.npages;
	unsigned n = 0;

	while (s->cursor < np && n < max) {
		uint64_t w = s->dirty[s->cursor / 64] >> (s->cursor % 64);

		if (!w) {
			s->cursor = (s->cursor / 64 + 1) * 64;
			continue;
		}
		s->cursor += (uint64_t)__builtin_ctzll(w);
		if (s->cursor >= np)
			break;
		if (all) {
			/* Already announced at the source and still resident there: nothing to tell. */
			if (s->where[s->cursor] != W_SOURCE || pm_get(&s->vm->pm, s->cursor)->state != PM_LOCAL)
				idx[n++] = s->cursor;
		} else if (s->mode == MIG_MODE_POSTCOPY) {
			/* Only the pages the main host cannot hold, coldest first: they go to the
			 * sub-hosts while the VM runs; the rest waits for post-copy. */
			if (s->overflow && s->where[s->cursor] == W_NONE &&
			    (!s->cold_pass || !(pm_get(&s->vm->pm, s->cursor)->flags & PM_F_ACCESSED))) {
				idx[n++] = s->cursor;
				s->overflow--;
			}
		} else if (s->mode == MIG_MODE_PLANNED && s->prog.round > 0) {
			if (planned_presend(s, s->cursor))
				idx[n++] = s->cursor;
		} else {
			idx[n++] = s->cursor;   /* PLANNED's first pass: deferred pages are announced (planned_post()) */
		}
		s->cursor++;
	}
	return n;
}

static void pause_done(struct pg_vm *vm, int status, void *ctx);

static void finish_stop(struct mig_src *s)
{
	static uint64_t idx[MIG_BATCH];
	struct pg_vm *vm = s->vm;
	bool post = s->mode == MIG_MODE_POSTCOPY || s->mode == MIG_MODE_PLANNED;
	uint64_t at_source = 0;
	unsigned n;
	int rc;

	s->cursor = 0;
	while ((n = collect(s, idx, MIG_BATCH, true)) > 0) {
		if (send_batch(s, idx, n, post))
			return;
	}
	for (uint64_t i = 0; i < vm->pm.npages; i++)
		if (s->where[i] == W_SOURCE)
			at_source++;
	if (vm->state_valid && vm->state) {
		for (uint64_t off = 0; off < vm->state_total;) {
			uint32_t c = vm->state_total - off > MIGP_DEVSTATE_CHUNK ? MIGP_DEVSTATE_CHUNK
										 : (uint32_t)(vm->state_total - off);
			int len = migp_encode_devstate(++s->req, vm->state_total, off, vm->state + off, c, s->eng->buf,
						       MIGP_MAX_MSG);

			if ((rc = mig_send_msg(s->fd, s->eng->buf, len))) {
				FAIL(s, MIG_E_PEER_LOST, "sending the device state: %s", strerror(-rc));
				return;
			}
			s->prog.bytes_sent += c;
			off += c;
		}
	}
	rc = mig_send_msg(s->fd, s->eng->buf,
			  migp_encode_switchover(++s->req, s->prog.generation, at_source, s->eng->buf, MIGP_MAX_MSG));
	if (rc) {
		FAIL(s, MIG_E_PEER_LOST, "sending SWITCHOVER: %s", strerror(-rc));
		return;
	}
	s->switchover_sent = true;
	s->prog.pages_remaining = at_source;
	s->prog.phase = MIG_PH_SWITCHOVER;
	LOG_INFO("migration of %s: switch-over sent after %u rounds (%llu pages stay at the source for post-copy)",
		 s->id, s->prog.round, (unsigned long long)at_source);
}

static void start_stop(struct mig_src *s)
{
	s->prog.phase = MIG_PH_STOP;
	s->t_stop = ferry_mono_ns();
	/* The VMM pauses first (its vCPUs must reach a boundary, so their faults are still
	 * served meanwhile), then the pager freezes the VM: no fault of it is answered from
	 * now on, and with every page write-protected or sent, memory cannot change behind
	 * the copy even if the VMM does not pause. */
	if (pg_vmm_request_pause && s->vm->conn) {
		int rc = pg_vmm_request_pause(s->vm, pause_done, s);

		if (rc == 0) {
			s->pause_pending = true;
			return;
		}
		LOG_INFO("migration of %s: the VMM takes no PAUSE request (%s): frozen by the pager alone, no device "
			 "state", s->id, strerror(-rc));
	}
	set_hold(s, true);
	finish_stop(s);
}

static void pause_done(struct pg_vm *vm, int status, void *ctx)
{
	struct mig_src *s = ctx;

	(void)vm;
	if (!s->pause_pending || s->prog.phase != MIG_PH_STOP)
		return;
	s->pause_pending = false;
	if (status) {
		FAIL(s, MIG_E_INTERNAL, "the VMM did not pause: %s", strerror(-status));
		return;
	}
	s->vm_paused = true;
	set_hold(s, true);
	finish_stop(s);
}

static void round_end(struct mig_src *s)
{
	uint64_t dirty = bits_count(s->dirty, s->vm->pm.npages), presend = 0;
	int rc;

	if (s->mode == MIG_MODE_PLANNED) {
		for (uint64_t i = 0; i < s->vm->pm.npages; i++)
			if (bit_get(s->dirty, i) && planned_presend(s, i))
				presend++;
	}

	s->prog.round++;
	rc = mig_send_msg(s->fd, s->eng->buf, migp_encode_round_end(++s->req, s->prog.round, dirty, s->eng->buf,
								     MIGP_MAX_MSG));
	if (rc) {
		FAIL(s, MIG_E_PEER_LOST, "sending ROUND_END: %s", strerror(-rc));
		return;
	}
	s->prog.pages_remaining = dirty;
	LOG_DEBUG("migration of %s: round %u done, %llu pages dirty", s->id, s->prog.round, (unsigned long long)dirty);
	s->cursor = 0;
	if (s->mode == MIG_MODE_POSTCOPY && s->overflow && s->cold_pass) {
		s->cold_pass = false;   /* not enough cold pages: any page not yet sent */
		return;
	}
	/* One pass only for FULL (the baseline); PLANNED goes round again only for the written pages
	 * post-copy cannot carry (planned_presend()); PRECOPY until the dirty set is small. */
	if (s->mode == MIG_MODE_PLANNED)
		dirty = presend;
	if (s->mode == MIG_MODE_FULL || s->mode == MIG_MODE_POSTCOPY || dirty <= MIG_STOP_PAGES ||
	    s->prog.round >= MIG_MAX_ROUNDS)
		start_stop(s);
}

void mig_src_tick(struct mig_src *s)
{
	static uint64_t idx[MIG_BATCH];
	unsigned budget = MIG_TICK_PAGES;

	if (s->prog.phase != MIG_PH_PRECOPY || !s->vm)
		return;
	if (s->mode == MIG_MODE_POSTCOPY && s->overflow == 0) {
		start_stop(s);
		return;
	}
	if (s->plan && s->observing) {
		uint64_t deferred = 0;

		if (!mig_plan_tick(s->plan, ferry_mono_ns()))
			return;   /* sampling the VM's accesses (mig_plan.h) */
		s->observing = false;
		/* Sampling is over: protect everything again (as the other modes do from the start),
		 * so that the deferred pages need no write-protect call each in the downtime. */
		struct ferry_err err = { 0 };

		if (protect_regions(s->vm, &err) < 0) {
			FAIL(s, MIG_E_INTERNAL, "%s", err.msg);
			return;
		}
		for (uint64_t i = pm_next(&s->vm->pm, PM_LOCAL, 0); i < s->vm->pm.npages;
		     i = pm_next(&s->vm->pm, PM_LOCAL, i + 1))
			pm_flags_set(&s->vm->pm, i, PM_F_WP);
		deferred = plan_deferrals(s);
		s->reserve = deferred;
		s->vm->c.plan_deferred_pages += deferred;
		LOG_INFO("migration of %s: the planner defers %llu pages to post-copy", s->id, (unsigned long long)deferred);
	}
	while (budget && s->prog.phase == MIG_PH_PRECOPY) {
		unsigned n = collect(s, idx, budget < MIG_BATCH ? budget : MIG_BATCH, false);

		if (n == 0) {
			round_end(s);
			return;
		}
		if (send_batch(s, idx, n, false))
			return;
		budget -= n;
	}
}

bool mig_src_busy(const struct mig_src *s)
{
	return s->prog.phase == MIG_PH_PRECOPY && !s->observing;
}

/* ---------------------------------------------------------------- events */

static void src_stream_event(struct mig_evh *h, uint32_t events)
{
	struct mig_src *s = (struct mig_src *)((char *)h - offsetof(struct mig_src, sh));
	struct migp_msg m;
	int code, rc;

	(void)events;
	if (!active(s) || s->fd < 0 || !mig_readable(s->fd))
		return;
	rc = mig_recv_msg(s->fd, s->eng->rx, &m, MIG_IO_TIMEOUT_MS, &code);
	if (rc) {
		if (rc == -EPROTO)
			s->eng->c.bad_messages++;
		FAIL(s, rc == -EPROTO ? (uint32_t)code : 0, "destination stream: %s",
		     rc == -EPROTO ? migp_errcode_str((uint32_t)code) : rc == -ECONNRESET ? "closed" : strerror(-rc));
		return;
	}
	switch (m.hdr.type) {
	case MIGP_ERROR:
		FAIL(s, 0, "destination: %s (%s)", m.u.error.msg, migp_errcode_str(m.u.error.code));
		return;
	case MIGP_RESUMED:
		if (s->prog.phase != MIG_PH_SWITCHOVER)
			break;
		s->prog.downtime_ns = ferry_mono_ns() - s->t_stop;
		s->prog.phase = MIG_PH_POSTCOPY;
		LOG_INFO("migration of %s: the VM runs at the destination (downtime %.3f ms)", s->id,
			 s->prog.downtime_ns / 1e6);
		return;
	case MIGP_CREDIT:
		(void)take_credit(s, m.u.credit.slots);   /* after the switch-over too: the last batches' */
		return;
	case MIGP_FETCH:
		if (s->prog.phase != MIG_PH_POSTCOPY && s->prog.phase != MIG_PH_SWITCHOVER)
			break;
		serve_fetch(s, &m.u.fetch);
		return;
	case MIGP_POSTCOPY_DONE:
		if (s->prog.phase != MIG_PH_POSTCOPY)
			break;
		s->prog.postcopy_faults = m.u.value.value;
		s->prog.pages_remaining = 0;
		src_finish(s, MIG_PH_DONE, 0, NULL);
		return;
	default:
		break;
	}
	s->eng->c.bad_messages++;
	FAIL(s, MIG_E_UNEXPECTED, "destination sent %s in phase %s", migp_type_name(m.hdr.type),
	     mig_phase_name(s->prog.phase));
}

static void src_ctx_event(struct mig_evh *h, uint32_t events)
{
	struct mig_src *s = (struct mig_src *)((char *)h - offsetof(struct mig_src, xh));
	struct fx_wc wc[16];

	(void)events;
	if (!s->ctx)
		return;
	/* Reaps stray completions and notices a broken data connection. */
	(void)fx_poll(s->ctx, wc, 16, 0);
	if (!s->conn || fx_conn_state(s->conn) != FX_CONN_ERROR || !active(s))
		return;
	if (s->prog.phase == MIG_PH_POSTCOPY || s->prog.phase == MIG_PH_SWITCHOVER) {
		/* The destination closes the data connection right after POSTCOPY_DONE: the
		 * stream decides (POSTCOPY_DONE -> done, end of stream -> failed). */
		mig_evh_del(s->eng->pg, &s->xh);
		return;
	}
	FAIL(s, 0, "data connection: %s", fx_conn_error(s->conn));
}

/* ---------------------------------------------------------------- control and hooks */

void mig_src_progress(const struct mig_src *s, struct mig_progress *p)
{
	*p = s->prog;
	if (active(s))
		p->total_ns = ferry_mono_ns() - s->t0;
}

int mig_src_abort(struct mig_src *s, struct ferry_err *err)
{
	if (!active(s))
		return ferry_err_set(err, ENOENT, "the migration of %s is over (%s)", s->id, mig_phase_name(s->prog.phase));
	if (s->switchover_sent)
		return ferry_err_set(err, EBUSY, "the migration of %s is past its switch-over", s->id);
	src_finish(s, MIG_PH_ABORTED, MIG_E_ABORTED, "aborted by request");
	return 0;
}

void mig_src_note_write(struct mig_src *s, uint64_t idx)
{
	if (!active(s) || !s->vm || idx >= s->vm->pm.npages)
		return;
	bit_set(s->dirty, idx);
	if (s->plan && s->observing)
		mig_plan_note_write(s->plan, idx);
}

int mig_src_sample_fault(struct mig_src *s, uint64_t idx, const struct pg_fault *f)
{
	return s->plan && s->vm ? mig_plan_fault(s->plan, idx, f) : 0;
}

void mig_src_vm_gone(struct mig_src *s)
{
	struct pg_vm *vm = s->vm;

	mig_plan_destroy(s->plan);
	s->plan = NULL;

	if (active(s)) {
		s->vm = vm;
		src_finish(s, MIG_PH_FAILED, MIG_E_ABORTED, "the VM was unregistered at the source");
	}
	if (vm && vm->mig_src == s)
		vm->mig_src = NULL;
	s->vm = NULL;
}

bool mig_src_holds(const struct mig_src *s)
{
	return s->frozen;
}

bool mig_src_no_pageout(const struct mig_src *s)
{
	/* From the stop on, pages must stay where they are: post-copy READs need them resident. */
	return s->frozen;
}

void mig_src_free_done(struct mig_engine *eng)
{
	(void)eng;   /* finished migrations stay readable (STATUS) until the next START of their VM */
}

void mig_src_destroy_all(struct mig_engine *eng)
{
	while (eng->srcs) {
		struct mig_src *s = eng->srcs;

		eng->srcs = s->next;
		if (active(s))
			src_finish(s, MIG_PH_ABORTED, MIG_E_ABORTED, "source pager shutting down");
		src_free(s);
	}
}
