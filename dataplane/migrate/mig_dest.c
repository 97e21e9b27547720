/*
 * The destination (main host) side of a split migration (state machine in
 * migrate.h). The shell VM (a VMM started to receive, registered with the
 * same VM id) gets its memory from three places: pages the source WROTE into
 * this pager's staging ring (registered in a per-migration PD: nothing else
 * can reach it), installed into the memory file through this pager's own,
 * unregistered mapping when their PAGE_MAP entry arrives (credits go back
 * with CREDIT); sub-host extents this pager allocated and shared (the pages
 * are REMOTE in its own pool from the start); and, after the switch-over,
 * the source (FETCH: it WRITEs the pages into ring slots, installed with
 * UFFDIO_COPY or handed to the fault). No VM memory is ever registered: a
 * registration pins every page of the mapping, allocating the holes (the
 * unused memory FCtrans must not make real) and keeping punched pages
 * pinned while the file no longer holds them.
 */
#include "dataplane/migrate/mig_int.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/pager/vmm_requests.h"

extern int pg_vmm_request_resume(struct pg_vm *vm, bool load_state, pg_vmm_done_fn *done, void *ctx)
	__attribute__((weak));
extern int pg_vm_unpark(struct pg_vm *vm) __attribute__((weak));
extern bool pg_vm_parked(const struct pg_vm *vm) __attribute__((weak));

enum dst_state { D_PREPARED, D_AUTHED, D_BOUND, D_RECEIVING, D_RESUMING, D_POSTCOPY, D_OVER };

struct dst_ext {
	uint16_t server;
	uint32_t first_slot, nslots;
};

struct mig_dst {
	struct mig_dst *next;            /* first: the engine walks the list through it */
	struct mig_engine *eng;
	char id[MIGP_VM_ID_MAX + 1];
	uint8_t token[MIGP_TOKEN_LEN], bind[MIGP_TOKEN_LEN];
	enum dst_state st;
	struct mig_progress prog;
	uint64_t budget_bytes, t0, t_switch;
	uint16_t subs[MIGP_SUBS_MAX];    /* remote_store server index of each sub-host */
	struct migp_host sub_addr[MIGP_SUBS_MAX];
	unsigned nsubs;
	int fd;
	struct mig_evh sh, lh, xh;
	char src_ip[64];
	struct fx_ctx *ctx;
	struct fx_pd *pd;
	struct fx_listener *lis;
	struct fx_conn *conn;
	struct pg_vm *vm;
	uint8_t *area, *ring;            /* area: unregistered mapping of the shell; ring: staging slots */
	size_t area_len;
	uint32_t ring_slots;
	struct fx_mr *mr_ring;
	uint64_t pull_cursor, pulled, faults, state_have;
	struct dst_ext ext[MIGP_EXTENTS_MAX];
	unsigned next_ext;
	uint64_t req;
};

#define DATA_SEND_WR 128u
_Static_assert(MIG_PULL_PAGES <= MIGP_FETCH_MAX, "a pull is one FETCH");

struct mig_dst *mig_dst_find(struct mig_engine *eng, const char *id)
{
	for (struct mig_dst *d = eng->dsts; d; d = d->next)
		if (strcmp(d->id, id) == 0)
			return d;
	return NULL;
}

static bool d_active(const struct mig_dst *d)
{
	return d->st != D_OVER;
}

static void d_close(struct mig_dst *d)
{
	struct pager *pg = d->eng->pg;

	if (d->sh.tag)
		mig_evh_del(pg, &d->sh);
	if (d->lh.tag)
		mig_evh_del(pg, &d->lh);
	if (d->xh.tag)
		mig_evh_del(pg, &d->xh);
	if (d->fd >= 0)
		close(d->fd);
	d->fd = -1;
	if (d->conn)
		fx_conn_close(d->conn);
	d->conn = NULL;
	if (d->ctx) {
		struct fx_wc wc[16];

		(void)fx_poll(d->ctx, wc, 16, 0);
	}
	if (d->lis)
		fx_listener_close(d->lis);
	d->lis = NULL;
	if (d->mr_ring)
		fx_dereg_mr(d->mr_ring);
	d->mr_ring = NULL;
	if (d->pd)
		fx_pd_free(d->pd);
	d->pd = NULL;
	if (d->ctx)
		fx_ctx_destroy(d->ctx);
	d->ctx = NULL;
	if (d->area)
		munmap(d->area, d->area_len);
	d->area = NULL;
	if (d->ring)
		munmap(d->ring, (size_t)d->ring_slots * PG_PAGE);
	d->ring = NULL;
}

/*
 * Revoke the source's access to the shared extents and give the slots that
 * no page references back to the store (an extent left empty is freed). One
 * pass over the pagemap marks the referenced slots.
 */
static void release_unreferenced(struct mig_dst *d)
{
	struct remote_store *rs = d->eng->pg->rs;
	uint64_t *ref[MIGP_EXTENTS_MAX] = { NULL };

	for (unsigned x = 0; x < d->next_ext; x++)
		ref[x] = calloc((d->ext[x].nslots + 63) / 64, sizeof(uint64_t));
	if (d->vm && !d->vm->dead) {
		for (uint64_t i = pm_next(&d->vm->pm, PM_REMOTE, 0); i < d->vm->pm.npages;
		     i = pm_next(&d->vm->pm, PM_REMOTE, i + 1)) {
			const struct pm_entry *pe = pm_get(&d->vm->pm, i);

			if (!(pe->flags & PM_F_HAS_SLOT))
				continue;
			for (unsigned x = 0; x < d->next_ext; x++) {
				const struct dst_ext *e = &d->ext[x];

				if (ref[x] && pe->server == e->server && pe->slot >= e->first_slot &&
				    pe->slot - e->first_slot < e->nslots) {
					ref[x][(pe->slot - e->first_slot) / 64] |= UINT64_C(1) << ((pe->slot - e->first_slot) % 64);
					break;
				}
			}
		}
	}
	for (unsigned x = 0; x < d->next_ext; x++) {
		struct dst_ext *e = &d->ext[x];

		rs_unshare_extent(rs, e->server, e->first_slot);
		for (uint32_t k = 0; ref[x] && k < e->nslots; k++)
			if (!(ref[x][k / 64] & (UINT64_C(1) << (k % 64))) && rs_slot_used(rs, e->server, e->first_slot + k))
				rs_release(rs, e->server, e->first_slot + k);
		free(ref[x]);
	}
	d->next_ext = 0;
}

static void d_finish(struct mig_dst *d, enum mig_phase ph, uint32_t code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void d_finish(struct mig_dst *d, enum mig_phase ph, uint32_t code, const char *fmt, ...)
{
	char msg[160] = "";
	va_list ap;
	bool switched = d->st >= D_RESUMING;

	if (!d_active(d))
		return;
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
	}
	if (code && d->fd >= 0) {
		int n = migp_encode_error(++d->req, code, msg, d->eng->buf, MIGP_MAX_MSG);

		/* Best effort, briefly: the peer or the link may be what failed, and the loop
		 * (every VM's faults, the control socket) must not wait on it. */
		if (n > 0)
			(void)ferry_send_all(d->fd, d->eng->buf, (size_t)n, MIG_ERROR_SEND_MS);
	}
	d->st = D_OVER;
	d->prog.phase = ph;
	d->prog.total_ns = ferry_mono_ns() - d->t0;
	mig_set_progress_error(d->prog.error, sizeof(d->prog.error), "%s", msg);
	if (ph == MIG_PH_DONE) {
		d->eng->c.succeeded++;
		LOG_INFO("incoming migration of %s done: %llu pages received (%llu on sub-hosts), %llu post-copy "
			 "faults, %llu pulled, total %.3f s", d->id, (unsigned long long)d->prog.pages_sent,
			 (unsigned long long)d->prog.pages_to_subhosts, (unsigned long long)d->faults,
			 (unsigned long long)d->pulled, d->prog.total_ns / 1e9);
	} else {
		d->eng->c.failed++;
		LOG_WARN("incoming migration of %s %s: %s", d->id, ph == MIG_PH_ABORTED ? "aborted" : "failed", msg);
		release_unreferenced(d);   /* no-op once done (after RESUMED) */
		if (d->vm && !d->vm->dead) {
			char why[200];

			snprintf(why, sizeof(why), "incoming migration %s: %s", switched ? "lost its source" : "failed",
				 msg);
			d->vm->mig_dst = NULL;
			pg_vm_hold(d->vm, false);
			/* Before the switch-over the shell never ran: it fails. After it this is a VM
			 * whose pages are lost, like one whose memory server died: it fails, and the
			 * pages still at the source are poisoned (pg_poison_lost) when the uffd allows. */
			pg_vm_fail(d->vm, why);
		}
	}
	if (d->vm && d->vm->mig_dst == d)
		d->vm->mig_dst = NULL;
	d->vm = NULL;
	d_close(d);
}

#define DFAIL(d, code, ...) d_finish((d), MIG_PH_FAILED, (code), __VA_ARGS__)

/* ---------------------------------------------------------------- PREPARE */

int mig_dst_prepare(struct mig_engine *eng, const struct migp_prepare *p, struct migp_prepare_ok *ok,
		    struct ferry_err *err)
{
	struct pager *pg = eng->pg;
	struct mig_dst *d = mig_dst_find(eng, p->id);
	struct pg_vm *vm = pg_vm_find(pg, p->id);

	if (d && d_active(d))
		return ferry_err_set(err, EEXIST, "an incoming migration of '%s' is already prepared or under way", p->id);
	if (vm && vm->mig_src)
		return ferry_err_set(err, EBUSY, "VM '%s' is migrating away from this pager", p->id);
	if (d) {
		for (struct mig_dst **pp = &eng->dsts; *pp; pp = &(*pp)->next)
			if (*pp == d) {
				*pp = d->next;
				break;
			}
		free(d);
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return ferry_err_set(err, ENOMEM, "out of memory");
	d->eng = eng;
	d->fd = -1;
	snprintf(d->id, sizeof(d->id), "%s", p->id);
	d->budget_bytes = p->budget_bytes;
	for (unsigned i = 0; i < p->nsubs; i++) {
		int s = rs_find_server(pg->rs, p->subs[i].host, p->subs[i].port);

		if (s < 0) {
			free(d);
			return ferry_err_set(err, EINVAL,
					     "sub-host %s:%u is not one of this pager's live memory servers ([pool] servers)",
					     p->subs[i].host, p->subs[i].port);
		}
		d->subs[i] = (uint16_t)s;
		d->sub_addr[i] = p->subs[i];
	}
	d->nsubs = p->nsubs;
	ferry_auth_nonce(d->token);   /* 32 random bytes */
	d->st = D_PREPARED;
	d->prog.phase = MIG_PH_SETUP;
	d->t0 = ferry_mono_ns();
	d->prog.started_ns = ferry_wall_ns();
	d->next = eng->dsts;
	eng->dsts = d;
	eng->c.incoming++;
	snprintf(ok->ep.host, sizeof(ok->ep.host), "%s",
		 pg->cfg->mig_advertise[0] ? pg->cfg->mig_advertise : pg->cfg->mig_listen);
	ok->ep.port = eng->stream_port;
	memcpy(ok->token, d->token, MIGP_TOKEN_LEN);
	LOG_INFO("incoming migration of %s prepared: budget %llu bytes, %u sub-hosts; source connects to %s:%u", d->id,
		 (unsigned long long)d->budget_bytes, d->nsubs, ok->ep.host, ok->ep.port);
	return 0;
}

/* ---------------------------------------------------------------- stream: handshake */

static void dst_stream_event(struct mig_evh *h, uint32_t events);
static void dst_listener_event(struct mig_evh *h, uint32_t events);
static void dst_ctx_event(struct mig_evh *h, uint32_t events);

static void refuse(struct mig_engine *eng, int fd, uint64_t req, uint32_t code, const char *msg)
{
	int n = migp_encode_error(req, code, msg, eng->buf, MIGP_MAX_MSG);

	(void)mig_send_msg(fd, eng->buf, n);
	close(fd);
}

void mig_dst_stream_accept(struct mig_engine *eng)
{
	struct fx_ctx_opts co = { .op_timeout_ms = 3000, .poll_spin_us = FX_POLL_SPIN_OFF };
	uint8_t cnonce_mac[MIGP_MAC_LEN], snonce[MIGP_NONCE_LEN];
	char name[MIGP_VM_ID_MAX + 2 + 2 * MIGP_TOKEN_LEN];
	struct ferry_err err = { 0 };
	struct migp_auth_ok ao;
	struct migp_msg m;
	struct mig_dst *d;
	int fd, code, rc;

	fd = accept4(eng->stream_l.fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	mig_stream_liveness(fd);
	/* The handshake is short and bounded: done here, blocking with a timeout. */
	rc = mig_recv_msg(fd, eng->rx, &m, MIG_IO_TIMEOUT_MS, &code);
	if (rc || m.hdr.type != MIGP_HELLO) {
		eng->c.bad_messages++;
		LOG_WARN("incoming migration stream refused: %s",
			 rc == -EPROTO ? migp_errcode_str((uint32_t)code) : rc ? strerror(-rc) : "HELLO expected");
		refuse(eng, fd, 0, rc == -EPROTO ? (uint32_t)code : MIG_E_NOT_AUTHENTICATED, "HELLO expected");
		return;
	}
	d = mig_dst_find(eng, m.u.hello.name);
	if (!d || d->st != D_PREPARED) {
		eng->c.bad_messages++;
		LOG_WARN("incoming migration stream for '%s' refused: no such prepared migration", m.u.hello.name);
		refuse(eng, fd, m.hdr.request_id, MIG_E_UNKNOWN_VM, "no prepared incoming migration of this VM");
		return;
	}
	ferry_auth_nonce(snonce);
	rc = mig_send_msg(fd, eng->buf, migp_encode_challenge(m.hdr.request_id, snonce, eng->buf, MIGP_MAX_MSG));
	if (!rc)
		rc = mig_recv_msg(fd, eng->rx, &m, MIG_IO_TIMEOUT_MS, &code);
	if (rc || m.hdr.type != MIGP_AUTH) {
		eng->c.bad_messages++;
		refuse(eng, fd, 0, MIG_E_NOT_AUTHENTICATED, "AUTH expected");
		return;
	}
	mig_auth_name(d->id, d->token, name, sizeof(name));
	if (ferry_auth_verify(&eng->secret, "ferry-mig-c", snonce, m.u.auth.nonce, name, strlen(name), m.u.auth.mac)) {
		eng->c.auth_failures++;
		LOG_WARN("incoming migration stream for '%s' refused: authentication failed (secret or token)", d->id);
		refuse(eng, fd, m.hdr.request_id, MIG_E_AUTH_FAILED, "authentication failed");
		return;
	}
	memcpy(cnonce_mac, m.u.auth.nonce, sizeof(cnonce_mac));
	/* The data connection's domain and listener exist only for an authenticated source. */
	if (fx_ctx_create(eng->pg->cfg->transport, &co, &d->ctx, &err) || fx_pd_alloc(d->ctx, &d->pd, &err) ||
	    fx_listen(d->ctx, eng->pg->cfg->mig_listen, 0, &d->lis, &err)) {
		refuse(eng, fd, m.hdr.request_id, MIG_E_INTERNAL, err.msg);
		d_close(d);
		DFAIL(d, 0, "data listener: %s", err.msg);
		return;
	}
	ferry_auth_mac(&eng->secret, "ferry-mig-s", cnonce_mac, snonce, name, strlen(name), ao.mac);
	ao.data_port = fx_listener_port(d->lis);
	ferry_auth_nonce(d->bind);
	memcpy(ao.bind, d->bind, sizeof(ao.bind));
	mig_peer_ip(fd, d->src_ip, sizeof(d->src_ip));
	d->fd = fd;
	rc = mig_send_msg(fd, eng->buf, migp_encode_auth_ok(m.hdr.request_id, &ao, eng->buf, MIGP_MAX_MSG));
	if (rc || mig_evh_add(eng->pg, &d->sh, fd, dst_stream_event) ||
	    mig_evh_add(eng->pg, &d->lh, fx_listener_fd(d->lis), dst_listener_event) ||
	    mig_evh_add(eng->pg, &d->xh, fx_ctx_fd(d->ctx), dst_ctx_event)) {
		DFAIL(d, 0, "answering AUTH: %s", strerror(rc ? -rc : errno));
		return;
	}
	d->st = D_AUTHED;
	LOG_INFO("incoming migration of %s: source %s authenticated", d->id, d->src_ip);
}

static void try_accept(struct mig_dst *d)
{
	struct fx_conn_opts cn = { .max_send_wr = DATA_SEND_WR, .max_recv_wr = 4 };
	char peer[80];
	struct fx_conn *c;

	while (d->lis && fx_accept(d->lis, d->pd, &cn, &c, peer, sizeof(peer), NULL) == 0) {
		char *colon = strrchr(peer, ':');

		if (colon)
			*colon = '\0';
		/* One data connection, from the authenticated stream's address. */
		if (d->conn || strcmp(peer, d->src_ip) != 0) {
			LOG_WARN("incoming migration of %s: data connection from %s refused", d->id, peer);
			fx_conn_close(c);
			continue;
		}
		d->conn = c;
	}
}

static void dst_listener_event(struct mig_evh *h, uint32_t events)
{
	struct mig_dst *d = (struct mig_dst *)((char *)h - offsetof(struct mig_dst, lh));

	(void)events;
	try_accept(d);
}

static void dst_ctx_event(struct mig_evh *h, uint32_t events)
{
	struct mig_dst *d = (struct mig_dst *)((char *)h - offsetof(struct mig_dst, xh));
	struct fx_wc wc[16];

	(void)events;
	if (!d->ctx)
		return;
	/* The source's WRITEs into the ring are served here (TCP backend: inside fx_poll). */
	(void)fx_poll(d->ctx, wc, 16, 0);
	if (d->conn && fx_conn_state(d->conn) == FX_CONN_ERROR && d_active(d))
		DFAIL(d, 0, "data connection: %s", fx_conn_error(d->conn));
}

/* ---------------------------------------------------------------- stream: layout and pages */

static const struct pg_region *region_of_page(const struct pg_vm *vm, uint64_t idx)
{
	for (unsigned i = 0; i < vm->nregions; i++)
		if (idx >= vm->regions[i].first_page && idx < vm->regions[i].first_page + vm->regions[i].size / PG_PAGE)
			return &vm->regions[i];
	return NULL;
}

static void punch(struct pg_vm *vm, uint64_t idx)
{
	const struct pg_region *r = region_of_page(vm, idx);

	if (r && r->memfd >= 0)
		(void)fallocate(r->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				(off_t)(r->offset + (idx - r->first_page) * PG_PAGE), PG_PAGE);
}

static int on_layout(struct mig_dst *d, const struct migp_layout *l)
{
	struct pager *pg = d->eng->pg;
	struct pg_vm *vm = pg_vm_find(pg, d->id);
	struct ferry_err err = { 0 };
	struct migp_layout_ok ok;
	uint64_t dst_pages;
	int rc;

	if (!vm) {
		DFAIL(d, MIG_E_UNKNOWN_VM, "the destination VM '%s' is not registered with the pager", d->id);
		return -1;
	}
	if (vm->mig_src || vm->mig_dst || vm->failed) {
		DFAIL(d, MIG_E_BUSY, "the destination VM '%s' is busy or failed", d->id);
		return -1;
	}
	if (vm->pm.npages != l->npages || vm->nregions != l->nregions) {
		DFAIL(d, MIG_E_BAD_LAYOUT, "layout mismatch: source %llu pages in %u regions, destination %llu in %u",
		      (unsigned long long)l->npages, l->nregions, (unsigned long long)vm->pm.npages, vm->nregions);
		return -1;
	}
	for (unsigned i = 0; i < l->nregions; i++) {
		if (vm->regions[i].gpa != l->regions[i].gpa || vm->regions[i].size != l->regions[i].size) {
			DFAIL(d, MIG_E_BAD_LAYOUT, "region %u differs (gpa/size)", i);
			return -1;
		}
	}
	if (pm_count(&vm->pm, PM_UNUSED) != vm->pm.npages) {
		DFAIL(d, MIG_E_BAD_LAYOUT, "the destination VM '%s' already holds memory (not a fresh shell)", d->id);
		return -1;
	}
	d->area = mig_map_vm(vm, &d->area_len, &err);
	if (!d->area) {
		DFAIL(d, MIG_E_BAD_LAYOUT, "%s", err.msg);
		return -1;
	}
	/* The staging ring: the only memory the source can reach (bounded, pinned once). */
	d->ring_slots = (uint32_t)(pg->cfg->mig_stage_bytes / PG_PAGE);
	if (d->ring_slots < MIGP_STAGE_MIN)
		d->ring_slots = MIGP_STAGE_MIN;
	if (d->ring_slots > MIGP_STAGE_MAX)
		d->ring_slots = MIGP_STAGE_MAX;
	d->ring = mmap(NULL, (size_t)d->ring_slots * PG_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		       0);
	if (d->ring == MAP_FAILED) {
		d->ring = NULL;
		DFAIL(d, MIG_E_INTERNAL, "out of memory for a staging ring of %u pages", d->ring_slots);
		return -1;
	}
	if ((rc = fx_reg_mr(d->pd, d->ring, (size_t)d->ring_slots * PG_PAGE,
			    FX_ACCESS_LOCAL_WRITE | FX_ACCESS_REMOTE_WRITE, &d->mr_ring, &err))) {
		DFAIL(d, MIG_E_INTERNAL, "registering the staging ring: %s", err.msg);
		return -1;
	}
	d->vm = vm;
	vm->mig_dst = d;
	/* Nothing of the shell is served or paged out before the switch-over. */
	pg_vm_hold(vm, true);
	if (d->budget_bytes)
		vm->budget_pages = d->budget_bytes / PG_PAGE;
	dst_pages = vm->budget_pages && vm->budget_pages < l->npages ? vm->budget_pages : l->npages;
	d->prog.pages_total = l->npages;
	d->prog.pages_skipped_unused = l->npages - l->pages_used;
	d->prog.pages_remaining = l->pages_used;
	ok = (struct migp_layout_ok){ .dst_rkey = d->mr_ring->rkey, .stage_slots = d->ring_slots,
				      .dst_base = d->mr_ring->remote_base, .dst_pages = dst_pages };
	if ((rc = mig_send_msg(d->fd, d->eng->buf, migp_encode_layout_ok(++d->req, &ok, d->eng->buf, MIGP_MAX_MSG)))) {
		DFAIL(d, 0, "sending LAYOUT_OK: %s", strerror(-rc));
		return -1;
	}
	if (l->pages_used > dst_pages) {
		/* Cold pages go straight to the sub-hosts: extents owned by this pager, shared. */
		uint64_t want = l->pages_used - dst_pages, have = 0;
		static struct migp_extent x[MIGP_EXTENTS_MAX];
		bool full[MIGP_SUBS_MAX] = { false };
		unsigned k = 0, nfull = 0, rr = 0;

		want += want / 8 + 64;   /* room for pages first written during the migration */
		if (d->nsubs == 0) {
			DFAIL(d, MIG_E_NO_SPACE, "%llu pages do not fit the budget of %llu and no sub-host was given",
			      (unsigned long long)l->pages_used, (unsigned long long)dst_pages);
			return -1;
		}
		for (unsigned s = 0; s < d->nsubs; s++) {
			struct migp_subhost sh = { .sub = (uint8_t)s, .host = d->sub_addr[s] };

			if ((rc = mig_send_msg(d->fd, d->eng->buf,
					       migp_encode_subhost(++d->req, &sh, d->eng->buf, MIGP_MAX_MSG)))) {
				DFAIL(d, 0, "sending SUBHOST: %s", strerror(-rc));
				return -1;
			}
		}
		/* Round-robin over the sub-hosts; one that refuses an extent (its quota for this
		 * pager is used up) is left out, so the cap is what the sub-hosts grant, bounded by
		 * what the protocol names (MIGP_EXTENTS_MAX extents). */
		while (have < want && k < MIGP_EXTENTS_MAX && nfull < d->nsubs) {
			struct dst_ext *e = &d->ext[d->next_ext];
			uint64_t len;

			unsigned s = rr++ % d->nsubs;

			if (full[s])
				continue;
			if (rs_share_extent(pg->rs, d->subs[s], &e->first_slot, &e->nslots, &len, &x[k].extent_id, x[k].token,
					    &err)) {
				LOG_WARN("incoming migration of %s: sub-host %s:%u grants no more extents: %s", d->id,
					 d->sub_addr[s].host, d->sub_addr[s].port, err.msg);
				full[s] = true;
				nfull++;
				continue;
			}
			e->server = d->subs[s];
			d->next_ext++;
			x[k].sub = (uint8_t)s;
			x[k].length = len;
			have += e->nslots;
			k++;
		}
		if (have < want) {
			DFAIL(d, MIG_E_NO_SPACE,
			      "%llu cold pages do not fit: the sub-hosts granted %u extents (%llu pages)%s",
			      (unsigned long long)want, k, (unsigned long long)have,
			      k == MIGP_EXTENTS_MAX ? ", the most one migration may use" : "");
			return -1;
		}
		for (unsigned first = 0; first < k; first += MIGP_EXTENTS_MSG) {
			unsigned c = k - first < MIGP_EXTENTS_MSG ? k - first : MIGP_EXTENTS_MSG;

			if ((rc = mig_send_msg(d->fd, d->eng->buf,
					       migp_encode_extents(++d->req, x + first, (uint16_t)c, (uint16_t)first,
								   (uint16_t)k, d->eng->buf, MIGP_MAX_MSG)))) {
				DFAIL(d, 0, "sending EXTENTS: %s", strerror(-rc));
				return -1;
			}
		}
	}
	d->st = D_RECEIVING;
	d->prog.phase = MIG_PH_PRECOPY;
	LOG_INFO("incoming migration of %s: layout accepted (%llu pages, %llu used, %llu held here, %u extents shared)",
		 d->id, (unsigned long long)l->npages, (unsigned long long)l->pages_used, (unsigned long long)dst_pages,
		 d->next_ext);
	return 0;
}

static void drop_slot(struct mig_dst *d, uint64_t idx)
{
	const struct pm_entry *e = pm_get(&d->vm->pm, idx);

	if ((e->flags & PM_F_HAS_SLOT) && e->server != PG_SERVER_MIGSRC)
		pg_vm_release_slot(d->vm, idx, e);
	pm_clear_slot(&d->vm->pm, idx);
}

static int on_page_map(struct mig_dst *d, const struct migp_page_map *mp)
{
	struct pagemap *pm = &d->vm->pm;
	uint32_t credits = 0;
	int rc;

	for (uint32_t k = 0; k < mp->count; k++) {
		struct migp_map_entry e;
		const struct pm_entry *cur;

		migp_page_map_entry(mp, k, &e);
		if (e.page >= pm->npages) {
			DFAIL(d, MIG_E_MALFORMED, "page %llu beyond the VM", (unsigned long long)e.page);
			return -1;
		}
		if (e.where == MIGP_W_DEST) {
			if (e.slot >= d->ring_slots) {
				DFAIL(d, MIG_E_MALFORMED, "page %llu: staging slot %u beyond the ring of %u",
				      (unsigned long long)e.page, e.slot, d->ring_slots);
				return -1;
			}
			credits++;   /* the slot is free again once this entry is handled, stale or not */
		}
		cur = pm_get(pm, e.page);
		if (e.generation < cur->version) {
			d->eng->c.stale_entries++;   /* an older copy (another stream): the newer one stays */
			continue;
		}
		switch (e.where) {
		case MIGP_W_DEST:
			drop_slot(d, e.page);
			/* Into the memory file before the shell runs (its faults are held): through our
			 * own mapping, which the kernel may reclaim or punch like any other. */
			memcpy(d->area + e.page * PG_PAGE, d->ring + (uint64_t)e.slot * PG_PAGE, PG_PAGE);
			pm_set_local(pm, e.page);
			d->prog.pages_sent++;
			break;
		case MIGP_W_SUB: {
			const struct dst_ext *x;
			uint32_t slot;

			if (e.extent >= d->next_ext || e.slot >= d->ext[e.extent].nslots) {
				DFAIL(d, MIG_E_MALFORMED, "page %llu: slot %u of extent %u does not exist",
				      (unsigned long long)e.page, e.slot, e.extent);
				return -1;
			}
			x = &d->ext[e.extent];
			slot = x->first_slot + e.slot;
			if (!((cur->flags & PM_F_HAS_SLOT) && cur->server == x->server && cur->slot == slot))
				drop_slot(d, e.page);
			if (cur->state == PM_LOCAL)   /* data from an earlier round is in the file */
				punch(d->vm, e.page);
			pm_set_remote(pm, e.page, x->server, slot);
			d->prog.pages_sent++;
			d->prog.pages_to_subhosts++;
			break;
		}
		case MIGP_W_UNUSED:
			drop_slot(d, e.page);
			if (cur->state == PM_LOCAL)   /* data from an earlier round is in the file */
				punch(d->vm, e.page);
			pm_set_unused(pm, e.page);
			break;
		case MIGP_W_SOURCE:
			drop_slot(d, e.page);
			if (cur->state == PM_LOCAL)   /* data from an earlier round is in the file */
				punch(d->vm, e.page);
			pm_set_remote(pm, e.page, PG_SERVER_MIGSRC, 0);
			break;
		default:
			break;
		}
		pm_set_version(pm, e.page, e.generation);
		if (e.generation > d->prog.generation)
			d->prog.generation = e.generation;
	}
	d->prog.bytes_sent += (uint64_t)mp->count * MIGP_MAP_ENTRY_LEN;
	if (credits && (rc = mig_send_msg(d->fd, d->eng->buf,
					  migp_encode_credit(++d->req, credits, d->eng->buf, MIGP_MAX_MSG)))) {
		DFAIL(d, 0, "returning staging credits: %s", strerror(-rc));
		return -1;
	}
	return 0;
}

static void send_resumed(struct mig_dst *d)
{
	int rc;

	d->prog.downtime_ns = ferry_mono_ns() - d->t_switch;
	rc = mig_send_msg(d->fd, d->eng->buf, migp_encode_resumed(++d->req, d->prog.downtime_ns, d->eng->buf,
								  MIGP_MAX_MSG));
	if (rc) {
		DFAIL(d, 0, "sending RESUMED: %s", strerror(-rc));
		return;
	}
	d->st = D_POSTCOPY;
	d->prog.phase = MIG_PH_POSTCOPY;
	d->pull_cursor = 0;
	/* Out of the downtime: the source writes no more pages, its shares can go. */
	release_unreferenced(d);
}

static void resume_done(struct pg_vm *vm, int status, void *ctx)
{
	struct mig_dst *d = ctx;

	(void)vm;
	if (d->st != D_RESUMING)
		return;
	if (status) {
		DFAIL(d, MIG_E_INTERNAL, "the destination VMM did not resume: %s", strerror(-status));
		return;
	}
	send_resumed(d);
}

static void on_switchover(struct mig_dst *d, const struct migp_switchover *so)
{
	struct pg_vm *vm = d->vm;

	d->t_switch = ferry_mono_ns();
	d->prog.phase = MIG_PH_SWITCHOVER;
	d->prog.pages_remaining = so->pages_at_source;
	if (d->state_have && vm->state && d->state_have == vm->state_total)
		vm->state_valid = true;
	/* The shell runs from here: faults served (pages at the source come by READ), page-out on. */
	d->st = D_RESUMING;
	pg_vm_hold(vm, false);
	if (pg_vm_unpark && pg_vm_parked && pg_vm_parked(vm))
		(void)pg_vm_unpark(vm);
	if (pg_vmm_request_resume && vm->conn) {
		int rc = pg_vmm_request_resume(vm, vm->state_valid, resume_done, d);

		if (rc == 0)
			return;
		LOG_INFO("incoming migration of %s: the VMM takes no RESUME request (%s): it runs on its own", d->id,
			 strerror(-rc));
	}
	send_resumed(d);
}

static void on_devstate(struct mig_dst *d, const struct migp_devstate *ds)
{
	struct pg_vm *vm = d->vm;

	if (ds->offset == 0) {
		free(vm->state);
		vm->state = malloc(ds->total ? ds->total : 1);
		vm->state_total = ds->total;
		vm->state_have = 0;
		vm->state_valid = false;
		d->state_have = 0;
	}
	if (!vm->state || ds->total != vm->state_total || ds->offset != d->state_have) {
		DFAIL(d, MIG_E_MALFORMED, "device state chunks out of order");
		return;
	}
	memcpy(vm->state + ds->offset, ds->data, ds->len);
	d->state_have += ds->len;
	vm->state_have = d->state_have;
	d->prog.bytes_sent += ds->len;
}

static void dst_stream_event(struct mig_evh *h, uint32_t events)
{
	struct mig_dst *d = (struct mig_dst *)((char *)h - offsetof(struct mig_dst, sh));
	struct migp_msg m;
	int code, rc;

	(void)events;
	if (!d_active(d) || d->fd < 0 || !mig_readable(d->fd))
		return;
	rc = mig_recv_msg(d->fd, d->eng->rx, &m, MIG_IO_TIMEOUT_MS, &code);
	if (rc) {
		if (rc == -EPROTO)
			d->eng->c.bad_messages++;
		DFAIL(d, rc == -EPROTO ? (uint32_t)code : 0, "source stream: %s",
		      rc == -EPROTO ? migp_errcode_str((uint32_t)code) : rc == -ECONNRESET ? "closed" : strerror(-rc));
		return;
	}
	switch (m.hdr.type) {
	case MIGP_ERROR:
		DFAIL(d, 0, "source: %s (%s)", m.u.error.msg, migp_errcode_str(m.u.error.code));
		return;
	case MIGP_BIND:
		if (d->st != D_AUTHED)
			break;
		if (memcmp(m.u.bind.bind, d->bind, sizeof(d->bind)) != 0) {
			d->eng->c.auth_failures++;
			DFAIL(d, MIG_E_AUTH_FAILED, "BIND does not match");
			return;
		}
		for (int i = 0; i < 50 && !d->conn; i++) {
			try_accept(d);
			if (!d->conn)
				usleep(100000);
		}
		if (!d->conn) {
			DFAIL(d, MIG_E_PEER_LOST, "the source's data connection never came");
			return;
		}
		d->st = D_BOUND;
		return;
	case MIGP_LAYOUT:
		if (d->st != D_BOUND)
			break;
		(void)on_layout(d, &m.u.layout);
		return;
	case MIGP_PAGE_MAP:
		if (d->st != D_RECEIVING)
			break;
		(void)on_page_map(d, &m.u.map);
		return;
	case MIGP_ROUND_END:
		if (d->st != D_RECEIVING)
			break;
		d->prog.round = m.u.round_end.round;
		d->prog.pages_remaining = m.u.round_end.pages_dirty;
		return;
	case MIGP_DEVSTATE:
		if (d->st != D_RECEIVING)
			break;
		on_devstate(d, &m.u.devstate);
		return;
	case MIGP_SWITCHOVER:
		if (d->st != D_RECEIVING)
			break;
		d->prog.phase = MIG_PH_STOP;
		on_switchover(d, &m.u.switchover);
		return;
	default:
		break;
	}
	d->eng->c.bad_messages++;
	DFAIL(d, MIG_E_UNEXPECTED, "source sent %s in state %d", migp_type_name(m.hdr.type), (int)d->st);
}

/* ---------------------------------------------------------------- post-copy */

/*
 * Post-copy: ask the source for pages @p idx[0..n) (n <= MIGP_FETCH_MAX) into
 * ring slots 0..n-1 (the ring is idle after the switch-over: every pre-copy
 * entry was installed before SWITCHOVER was read) and wait for its PAGE_MAP.
 * While waiting the data connection is served too (the TCP backend places the
 * WRITEs inside fx_poll). @return 0 or a negative errno.
 */
static int fetch_pages(struct mig_dst *d, const uint64_t *idx, unsigned n)
{
	uint64_t deadline = ferry_mono_ns() + (uint64_t)MIG_IO_TIMEOUT_MS * 1000000u;
	struct migp_msg m;
	struct fx_wc wc[16];
	int code, rc;

	if (!d->conn || fx_conn_state(d->conn) != FX_CONN_CONNECTED || d->fd < 0)
		return -ENOTCONN;
	rc = mig_send_msg(d->fd, d->eng->buf, migp_encode_fetch(++d->req, idx, n, 0, d->eng->buf, MIGP_MAX_MSG));
	if (rc)
		return rc;
	for (;;) {
		struct pollfd p[2] = { { .fd = d->fd, .events = POLLIN },
				       { .fd = fx_ctx_fd(d->ctx), .events = POLLIN } };
		uint64_t now = ferry_mono_ns();

		if (now >= deadline)
			return -ETIMEDOUT;
		rc = poll(p, 2, (int)((deadline - now) / 1000000u) + 1);
		if (rc < 0 && errno != EINTR)
			return -errno;
		if (rc <= 0)
			continue;
		if (p[1].revents) {
			(void)fx_poll(d->ctx, wc, 16, 0);
			if (fx_conn_state(d->conn) == FX_CONN_ERROR)
				return -ECONNRESET;
		}
		if (p[0].revents)
			break;
	}
	rc = mig_recv_msg(d->fd, d->eng->rx, &m, MIG_IO_TIMEOUT_MS, &code);
	if (rc)
		return rc == -EPROTO ? -EPROTO : rc;
	if (m.hdr.type != MIGP_PAGE_MAP || m.u.map.count != n) {
		d->eng->c.bad_messages++;
		return -EPROTO;
	}
	for (unsigned k = 0; k < n; k++) {
		struct migp_map_entry e;

		migp_page_map_entry(&m.u.map, k, &e);
		if (e.page != idx[k] || e.where != MIGP_W_DEST || e.slot != k) {
			d->eng->c.bad_messages++;
			return -EPROTO;
		}
	}
	return 0;
}

int mig_dst_fetch(struct mig_dst *d, uint64_t idx, void *buf)
{
	int rc;

	if (d->st != D_POSTCOPY && d->st != D_RESUMING)
		return -EAGAIN;
	rc = fetch_pages(d, &idx, 1);
	if (rc) {
		DFAIL(d, 0, "post-copy fetch of page %llu from the source: %s", (unsigned long long)idx, strerror(-rc));
		return -EIO;
	}
	memcpy(buf, d->ring, PG_PAGE);
	d->faults++;
	d->prog.postcopy_faults++;
	if (d->prog.pages_remaining)
		d->prog.pages_remaining--;
	return 0;
}

static void pull(struct mig_dst *d)
{
	static uint64_t idx[MIG_PULL_PAGES];
	struct pg_vm *vm = d->vm;
	struct pagemap *pm = &vm->pm;
	unsigned n = 0;
	int rc;

	for (uint64_t i = pm_next(pm, PM_REMOTE, d->pull_cursor); i < pm->npages && n < MIG_PULL_PAGES;
	     i = pm_next(pm, PM_REMOTE, i + 1)) {
		if (pm_get(pm, i)->server == PG_SERVER_MIGSRC)
			idx[n++] = i;
		d->pull_cursor = i + 1;
	}
	if (n == 0) {
		/* Scanned to the end: done if nothing at the source is left (faults took the rest). */
		for (uint64_t i = pm_next(pm, PM_REMOTE, 0); i < pm->npages; i = pm_next(pm, PM_REMOTE, i + 1))
			if (pm_get(pm, i)->server == PG_SERVER_MIGSRC || pm_get(pm, i)->state == PM_IN_FLIGHT) {
				d->pull_cursor = 0;
				return;
			}
		rc = mig_send_msg(d->fd, d->eng->buf, migp_encode_postcopy_done(++d->req, d->faults, d->eng->buf,
										  MIGP_MAX_MSG));
		if (rc)
			LOG_WARN("incoming migration of %s: POSTCOPY_DONE not delivered: %s", d->id, strerror(-rc));
		d->prog.pages_remaining = 0;
		d->prog.phase = MIG_PH_DONE;
		vm->mig_dst = NULL;
		d_finish(d, MIG_PH_DONE, 0, NULL);
		return;
	}
	rc = fetch_pages(d, idx, n);
	if (rc) {
		DFAIL(d, 0, "post-copy fetch from the source: %s", strerror(-rc));
		return;
	}
	for (unsigned k = 0; k < n; k++) {
		struct uffdio_copy c = { .dst = pg_page_hva(vm, idx[k]),
					 .src = (uintptr_t)(d->ring + (uint64_t)k * PG_PAGE),
					 .len = PG_PAGE, .mode = 0 };

		if (ioctl(vm->uffd, UFFDIO_COPY, &c) == 0 || errno == EEXIST) {
			pm_clear_slot(pm, idx[k]);
			pm_set_local(pm, idx[k]);
			pm_flags_set(pm, idx[k], PM_F_ACCESSED);
			d->pulled++;
			d->prog.pages_sent++;
			if (d->prog.pages_remaining)
				d->prog.pages_remaining--;
		} else if (errno != EAGAIN) {
			LOG_WARN("incoming migration of %s: installing pulled page %llu: %s", d->id,
				 (unsigned long long)idx[k], strerror(errno));
		}
		/* EAGAIN: events pending; the page stays at the source and is pulled again. */
	}
	d->pull_cursor = idx[n - 1] + 1;
}

void mig_dst_tick(struct mig_dst *d)
{
	if (!d_active(d))
		return;
	if (d->st >= D_AUTHED && d->st <= D_RECEIVING) {
		for (unsigned x = 0; x < d->next_ext; x++) {
			if (!rs_alive(d->eng->pg->rs, d->ext[x].server)) {
				DFAIL(d, MIG_E_PEER_LOST, "sub-host %s lost during the migration",
				      rs_server_name(d->eng->pg->rs, d->ext[x].server));
				return;
			}
		}
	}
	if (d->st == D_POSTCOPY && d->vm && !d->vm->dead && !d->vm->failed)
		pull(d);
}

bool mig_dst_busy(const struct mig_dst *d)
{
	return d->st == D_POSTCOPY;
}

void mig_dst_progress(const struct mig_dst *d, struct mig_progress *p)
{
	*p = d->prog;
	if (d_active(d))
		p->total_ns = ferry_mono_ns() - d->t0;
}

int mig_dst_abort(struct mig_dst *d, struct ferry_err *err)
{
	if (!d_active(d))
		return ferry_err_set(err, ENOENT, "the incoming migration of %s is over", d->id);
	if (d->st >= D_RESUMING)
		return ferry_err_set(err, EBUSY, "the incoming migration of %s is past its switch-over", d->id);
	d_finish(d, MIG_PH_ABORTED, MIG_E_ABORTED, "aborted by request at the destination");
	return 0;
}

void mig_dst_vm_gone(struct mig_dst *d)
{
	struct pg_vm *vm = d->vm;

	if (vm)
		vm->mig_dst = NULL;
	d->vm = NULL;
	if (d_active(d))
		d_finish(d, MIG_PH_FAILED, MIG_E_ABORTED, "the destination VM was unregistered");
}

bool mig_dst_holds(const struct mig_dst *d)
{
	return d->st >= D_BOUND && d->st <= D_RECEIVING;
}

void mig_dst_destroy_all(struct mig_engine *eng)
{
	while (eng->dsts) {
		struct mig_dst *d = eng->dsts;

		eng->dsts = d->next;
		if (d_active(d))
			d_finish(d, MIG_PH_ABORTED, MIG_E_ABORTED, "destination pager shutting down");
		d_close(d);
		free(d);
	}
}
