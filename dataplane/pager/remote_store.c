/*
 * Pool slots (remote_store.h). Each memory server gets its own transport
 * context, so a server that dies takes nothing else with it and its
 * completions never mix with another's.
 */
#include "dataplane/pager/remote_store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/memsrv/pool_client.h"

#define PAGE 4096u
#define RS_POST_CHUNK 64u

struct rs_extent {
	struct pool_extent pe;
	uint64_t *bitmap;            /* 1 = used */
	uint32_t used;
	bool present;                /* allocated on the server */
};

struct rs_server {
	char name[80];
	struct fx_ctx *ctx;
	struct pool_client *pc;
	struct fx_mr *mr;            /* the bounce buffer in this server's PD */
	bool alive, reported;
	struct rs_extent *ext;
	uint32_t next;               /* extents in use (array length) */
	uint32_t cap;
	uint64_t used;
};

struct remote_store {
	struct rs_server s[PAGER_MAX_SERVERS];
	unsigned n;
	uint64_t slots_per_extent;
	uint8_t *bounce;
	struct rs_stats st;
};

static void server_lost(struct remote_store *rs, uint16_t i, const char *why)
{
	struct rs_server *s = &rs->s[i];

	if (!s->alive)
		return;
	s->alive = false;
	LOG_ERR("memory server %s lost: %s; its %llu pages are gone", s->name, why, (unsigned long long)s->used);
	rs->st.slots_used -= s->used;
	for (uint32_t e = 0; e < s->next; e++) {
		if (s->ext[e].present)
			rs->st.slots_total -= rs->slots_per_extent;
		if (s->ext[e].present)
			rs->st.extents--;
		free(s->ext[e].bitmap);
		s->ext[e].bitmap = NULL;
		s->ext[e].present = false;
	}
	s->used = 0;
	s->next = 0;
	if (s->mr)
		fx_dereg_mr(s->mr);
	s->mr = NULL;
	if (s->pc)
		pool_client_close(s->pc);
	s->pc = NULL;
}

static int server_connect(struct remote_store *rs, const struct pager_config *cfg, const struct ferry_secret *secret,
			  uint16_t i, struct ferry_err *err)
{
	struct rs_server *s = &rs->s[i];
	struct pool_client_opts o = {
		.host = cfg->servers[i].host,
		.port = cfg->servers[i].port,
		.name = "ferry-pager",
		.secret = secret,
		.timeout_ms = 5000,
	};
	struct fx_ctx_opts co = { .op_timeout_ms = 3000, .poll_spin_us = FX_POLL_SPIN_OFF };
	int rc;

	snprintf(s->name, sizeof(s->name), "%s:%u", cfg->servers[i].host, cfg->servers[i].port);
	rc = fx_ctx_create(cfg->transport, &co, &s->ctx, err);
	if (rc)
		return rc;
	rc = pool_client_connect(s->ctx, &o, &s->pc, err);
	if (rc)
		return rc;
	rc = fx_reg_mr(pool_client_pd(s->pc), rs->bounce, (size_t)RS_BOUNCE_PAGES * PAGE, FX_ACCESS_LOCAL_WRITE,
		       &s->mr, err);
	if (rc)
		return rc;
	s->alive = true;
	return 0;
}

int rs_create(const struct pager_config *cfg, const struct ferry_secret *secret, struct remote_store **out,
	      struct ferry_err *err)
{
	struct remote_store *rs = calloc(1, sizeof(*rs));

	if (!rs)
		return ferry_err_set(err, ENOMEM, "out of memory");
	rs->n = cfg->nservers;
	rs->slots_per_extent = cfg->extent_size / PAGE;
	rs->bounce = mmap(NULL, (size_t)RS_BOUNCE_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			  -1, 0);
	if (rs->bounce == MAP_FAILED) {
		free(rs);
		return ferry_err_set(err, errno, "bounce buffer: %s", strerror(errno));
	}
	for (uint16_t i = 0; i < rs->n; i++) {
		struct ferry_err e = { 0 };

		if (server_connect(rs, cfg, secret, i, &e)) {
			LOG_ERR("memory server %s:%u unavailable: %s", cfg->servers[i].host, cfg->servers[i].port, e.msg);
			rs->s[i].alive = true;   /* so that server_lost() cleans up and logs it */
			server_lost(rs, i, "cannot connect");
			rs->s[i].reported = true; /* no VM can have pages there */
		} else {
			LOG_INFO("memory server %s connected (quota %llu bytes)", rs->s[i].name,
				 (unsigned long long)pool_client_quota(rs->s[i].pc));
		}
	}
	*out = rs;
	return 0;
}

void rs_destroy(struct remote_store *rs)
{
	if (!rs)
		return;
	for (uint16_t i = 0; i < rs->n; i++) {
		struct rs_server *s = &rs->s[i];

		if (s->alive) {
			for (uint32_t e = 0; e < s->next; e++)
				if (s->ext[e].present)
					pool_client_free(s->pc, s->ext[e].pe.id, NULL);
		}
		s->reported = true;
		server_lost(rs, i, "shutting down");
		free(s->ext);
		if (s->ctx)
			fx_ctx_destroy(s->ctx);
	}
	munmap(rs->bounce, (size_t)RS_BOUNCE_PAGES * PAGE);
	free(rs);
}

unsigned rs_nservers(const struct remote_store *rs) { return rs->n; }
bool rs_alive(const struct remote_store *rs, uint16_t i) { return i < rs->n && rs->s[i].alive; }

bool rs_any_alive(const struct remote_store *rs)
{
	for (uint16_t i = 0; i < rs->n; i++)
		if (rs->s[i].alive)
			return true;
	return false;
}
const char *rs_server_name(const struct remote_store *rs, uint16_t i) { return i < rs->n ? rs->s[i].name : "?"; }
void *rs_bounce(struct remote_store *rs, uint32_t i) { return rs->bounce + (size_t)i * PAGE; }

int rs_server_fd(const struct remote_store *rs, uint16_t i)
{
	return rs_alive(rs, i) ? fx_ctx_fd(rs->s[i].ctx) : -1;
}

void rs_service(struct remote_store *rs, uint16_t i)
{
	struct fx_wc wc[16];
	struct rs_server *s;

	if (!rs_alive(rs, i))
		return;
	s = &rs->s[i];
	/* Nothing of ours is outstanding here: any completion is a flush or a notice. */
	(void)pool_client_poll(s->pc, wc, 16, 0);
	if (fx_conn_state(pool_client_conn(s->pc)) == FX_CONN_ERROR)
		server_lost(rs, i, fx_conn_error(pool_client_conn(s->pc)));
}

int rs_take_lost(struct remote_store *rs)
{
	for (uint16_t i = 0; i < rs->n; i++) {
		if (!rs->s[i].alive && !rs->s[i].reported) {
			rs->s[i].reported = true;
			return i;
		}
	}
	return -1;
}

static int extent_add(struct remote_store *rs, uint16_t i, struct ferry_err *err)
{
	struct rs_server *s = &rs->s[i];
	uint32_t slot_idx = s->next;
	int rc;

	/* Reuse an extent index whose extent was freed. */
	for (uint32_t e = 0; e < s->next; e++) {
		if (!s->ext[e].present) {
			slot_idx = e;
			break;
		}
	}
	if (slot_idx == s->next) {
		if (s->next == s->cap) {
			uint32_t cap = s->cap ? s->cap * 2 : 8;
			struct rs_extent *n = realloc(s->ext, cap * sizeof(*n));

			if (!n)
				return ferry_err_set(err, ENOMEM, "out of memory");
			s->ext = n;
			s->cap = cap;
		}
		memset(&s->ext[s->next], 0, sizeof(s->ext[0]));
		s->next++;
	}
	struct rs_extent *x = &s->ext[slot_idx];

	x->bitmap = calloc((rs->slots_per_extent + 63) / 64, sizeof(uint64_t));
	if (!x->bitmap)
		return ferry_err_set(err, ENOMEM, "out of memory");
	rc = pool_client_alloc(s->pc, rs->slots_per_extent * PAGE, &x->pe, err);
	if (rc) {
		free(x->bitmap);
		x->bitmap = NULL;
		if (fx_conn_state(pool_client_conn(s->pc)) == FX_CONN_ERROR)
			server_lost(rs, i, "ALLOC failed on a broken connection");
		return rc;
	}
	x->present = true;
	x->used = 0;
	rs->st.slots_total += rs->slots_per_extent;
	rs->st.extents++;
	LOG_INFO("memory server %s: extent %u allocated (%llu bytes)", s->name, x->pe.id,
		 (unsigned long long)x->pe.length);
	return 0;
}

static bool take_slot(struct remote_store *rs, uint16_t i, uint32_t *slot)
{
	struct rs_server *s = &rs->s[i];

	for (uint32_t e = 0; e < s->next; e++) {
		struct rs_extent *x = &s->ext[e];

		if (!x->present || x->used == rs->slots_per_extent)
			continue;
		for (uint64_t w = 0; w < (rs->slots_per_extent + 63) / 64; w++) {
			if (x->bitmap[w] == UINT64_MAX)
				continue;
			unsigned b = (unsigned)__builtin_ctzll(~x->bitmap[w]);
			uint64_t k = w * 64 + b;

			if (k >= rs->slots_per_extent)
				break;
			x->bitmap[w] |= UINT64_C(1) << b;
			x->used++;
			s->used++;
			rs->st.slots_used++;
			*slot = (uint32_t)(e * rs->slots_per_extent + k);
			return true;
		}
	}
	return false;
}

int rs_alloc(struct remote_store *rs, uint16_t *server, uint32_t *slot, struct ferry_err *err)
{
	bool tried[PAGER_MAX_SERVERS] = { false };

	for (;;) {
		int best = -1;

		for (uint16_t i = 0; i < rs->n; i++)
			if (rs->s[i].alive && !tried[i] && (best < 0 || rs->s[i].used < rs->s[best].used))
				best = i;
		if (best < 0)
			return ferry_err_set(err, ENOSPC, "no memory server can take the page");
		if (take_slot(rs, (uint16_t)best, slot) ||
		    (extent_add(rs, (uint16_t)best, NULL) == 0 && take_slot(rs, (uint16_t)best, slot))) {
			*server = (uint16_t)best;
			return 0;
		}
		tried[best] = true;
	}
}

void rs_release(struct remote_store *rs, uint16_t i, uint32_t slot)
{
	struct rs_server *s;
	uint64_t e, k;

	if (!rs_alive(rs, i))
		return;
	s = &rs->s[i];
	e = slot / rs->slots_per_extent;
	k = slot % rs->slots_per_extent;
	if (e >= s->next || !s->ext[e].present || !(s->ext[e].bitmap[k / 64] & (UINT64_C(1) << (k % 64)))) {
		LOG_WARN("memory server %s: release of slot %u that is not in use", s->name, slot);
		return;
	}
	struct rs_extent *x = &s->ext[e];

	x->bitmap[k / 64] &= ~(UINT64_C(1) << (k % 64));
	x->used--;
	s->used--;
	rs->st.slots_used--;
	if (x->used == 0) {
		struct ferry_err err = { 0 };

		if (pool_client_free(s->pc, x->pe.id, &err))
			LOG_WARN("memory server %s: FREE of extent %u failed: %s", s->name, x->pe.id, err.msg);
		else
			LOG_INFO("memory server %s: extent %u empty, freed", s->name, x->pe.id);
		free(x->bitmap);
		x->bitmap = NULL;
		x->present = false;
		rs->st.slots_total -= rs->slots_per_extent;
		rs->st.extents--;
		if (fx_conn_state(pool_client_conn(s->pc)) == FX_CONN_ERROR)
			server_lost(rs, i, "FREE failed on a broken connection");
	}
}

int rs_find_server(const struct remote_store *rs, const char *host, uint16_t port)
{
	char name[80];

	snprintf(name, sizeof(name), "%s:%u", host, port);
	for (uint16_t i = 0; i < rs->n; i++)
		if (rs->s[i].alive && strcmp(rs->s[i].name, name) == 0)
			return i;
	return -1;
}

int rs_share_extent(struct remote_store *rs, uint16_t i, uint32_t *first_slot, uint32_t *nslots, uint64_t *length,
		    uint32_t *extent_id, uint8_t token[32], struct ferry_err *err)
{
	struct rs_server *s;
	uint32_t e;
	int rc;

	if (!rs_alive(rs, i))
		return ferry_err_set(err, ENOTCONN, "memory server %u is not reachable", i);
	s = &rs->s[i];
	rc = extent_add(rs, i, err);
	if (rc)
		return rc;
	/* extent_add reuses the first free index, else appends: find the fresh one (used == 0, present). */
	for (e = 0; e < s->next; e++)
		if (s->ext[e].present && s->ext[e].used == 0)
			break;
	struct rs_extent *x = &s->ext[e];

	rc = pool_client_share(s->pc, x->pe.id, POOL_SHARE_WRITE, token, err);
	if (rc) {
		struct ferry_err fe = { 0 };

		pool_client_free(s->pc, x->pe.id, &fe);
		free(x->bitmap);
		x->bitmap = NULL;
		x->present = false;
		rs->st.slots_total -= rs->slots_per_extent;
		rs->st.extents--;
		return ferry_err_prefix(err, "memory server %s: share: ", s->name);
	}
	memset(x->bitmap, 0xff, (rs->slots_per_extent + 63) / 64 * sizeof(uint64_t));
	x->used = (uint32_t)rs->slots_per_extent;
	s->used += rs->slots_per_extent;
	rs->st.slots_used += rs->slots_per_extent;
	*first_slot = (uint32_t)(e * rs->slots_per_extent);
	*nslots = (uint32_t)rs->slots_per_extent;
	*length = x->pe.length;
	*extent_id = x->pe.id;
	return 0;
}

void rs_unshare_extent(struct remote_store *rs, uint16_t i, uint32_t first_slot)
{
	uint64_t e = first_slot / rs->slots_per_extent;
	struct ferry_err err = { 0 };

	if (!rs_alive(rs, i) || e >= rs->s[i].next || !rs->s[i].ext[e].present)
		return;
	if (pool_client_unshare(rs->s[i].pc, rs->s[i].ext[e].pe.id, &err))
		LOG_WARN("memory server %s: unshare of extent %u: %s", rs->s[i].name, rs->s[i].ext[e].pe.id, err.msg);
}

bool rs_slot_used(const struct remote_store *rs, uint16_t i, uint32_t slot)
{
	uint64_t e, k;

	if (!rs_alive(rs, i))
		return false;
	e = slot / rs->slots_per_extent;
	k = slot % rs->slots_per_extent;
	return e < rs->s[i].next && rs->s[i].ext[e].present &&
	       (rs->s[i].ext[e].bitmap[k / 64] & (UINT64_C(1) << (k % 64)));
}

/* Post and complete ops[idx[0..n)] on server @p i. */
static int server_io(struct remote_store *rs, uint16_t i, enum fx_opcode op, struct rs_op *ops, const uint32_t *idx,
		     unsigned n)
{
	struct rs_server *s = &rs->s[i];
	struct fx_sge sge[RS_POST_CHUNK];
	struct fx_send_wr wr[RS_POST_CHUNK];
	struct fx_wc wc[RS_POST_CHUNK];
	int first_err = 0;

	for (unsigned done = 0; done < n;) {
		unsigned chunk = n - done < RS_POST_CHUNK ? n - done : RS_POST_CHUNK;
		unsigned completed = 0;
		int posted, perr = 0;

		if (!s->alive) {
			for (unsigned k = done; k < n; k++)
				ops[idx[k]].status = -ENOTCONN;
			return -ENOTCONN;
		}
		for (unsigned k = 0; k < chunk; k++) {
			struct rs_op *o = &ops[idx[done + k]];
			uint64_t e = o->slot / rs->slots_per_extent, off = o->slot % rs->slots_per_extent;

			o->status = -EIO;
			sge[k] = (struct fx_sge){ rs_bounce(rs, o->buf), PAGE, s->mr->lkey };
			wr[k] = (struct fx_send_wr){
				.wr_id = done + k,
				.opcode = op,
				.flags = FX_WR_SIGNALED,
				.sg_list = &sge[k],
				.num_sge = 1,
				.remote_addr = s->ext[e].pe.base + off * PAGE,
				.rkey = s->ext[e].pe.rkey,
			};
		}
		posted = fx_post_send(pool_client_conn(s->pc), wr, (int)chunk, &perr);
		if (posted < 0)
			posted = 0;
		for (unsigned k = (unsigned)posted; k < chunk; k++)
			ops[idx[done + k]].status = perr ? perr : -EIO;
		while (completed < (unsigned)posted) {
			int got = pool_client_poll(s->pc, wc, RS_POST_CHUNK, 4000);

			if (got <= 0) {
				server_lost(rs, i, got == 0 ? "operation timed out" : "poll failed");
				break;
			}
			for (int k = 0; k < got; k++) {
				uint64_t id = wc[k].wr_id;

				if (id < done || id >= done + chunk)
					continue;
				struct rs_op *o = &ops[idx[id]];

				o->status = wc[k].status == FX_WC_SUCCESS ? 0 : -EIO;
				if (wc[k].status == FX_WC_SUCCESS) {
					if (op == FX_OP_READ)
						rs->st.bytes_read += PAGE;
					else
						rs->st.bytes_written += PAGE;
				} else {
					rs->st.io_errors++;
					LOG_ERR("memory server %s: %s of slot %u failed: %s", s->name,
						op == FX_OP_READ ? "READ" : "WRITE", o->slot, fx_wc_status_str(wc[k].status));
				}
				completed++;
			}
		}
		for (unsigned k = 0; k < chunk; k++)
			if (ops[idx[done + k]].status && !first_err)
				first_err = ops[idx[done + k]].status;
		if (s->alive && fx_conn_state(pool_client_conn(s->pc)) == FX_CONN_ERROR)
			server_lost(rs, i, fx_conn_error(pool_client_conn(s->pc)));
		done += chunk;
	}
	return first_err;
}

int rs_io(struct remote_store *rs, enum fx_opcode op, struct rs_op *ops, unsigned n)
{
	uint32_t idx[RS_BOUNCE_PAGES];
	int first_err = 0;

	if (n > RS_BOUNCE_PAGES)
		return -EINVAL;
	for (uint16_t i = 0; i < rs->n; i++) {
		unsigned m = 0;

		for (unsigned k = 0; k < n; k++)
			if (ops[k].server == i)
				idx[m++] = k;
		if (m) {
			int rc = server_io(rs, i, op, ops, idx, m);

			if (rc && !first_err)
				first_err = rc;
		}
	}
	for (unsigned k = 0; k < n; k++) {
		if (ops[k].server >= rs->n) {
			ops[k].status = -EINVAL;
			if (!first_err)
				first_err = -EINVAL;
		}
	}
	return first_err;
}

void rs_get_stats(const struct remote_store *rs, struct rs_stats *st)
{
	*st = rs->st;
}
