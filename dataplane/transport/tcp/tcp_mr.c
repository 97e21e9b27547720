/*
 * TCP backend: protection domains, memory registrations and the per-context
 * key tables (lkey -> region, rkey -> region).
 *
 * Keys are random non-zero 32-bit values, unique in the context, so a peer
 * cannot walk the key space; lkeys and rkeys are drawn independently.
 * Regions are zero-based: remote_base = 0 and peers address [0, length).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/transport/tcp/tcp.h"

/* ------------------------------------------------------------------ keymap */

static uint32_t key_hash(uint32_t k)
{
	return k * 0x9E3779B1u;
}

struct tcp_mr *tcp_keymap_get(const struct tcp_keymap *m, uint32_t key)
{
	if (!m->mask || key == 0)
		return NULL;
	for (uint32_t i = key_hash(key) & m->mask;; i = (i + 1) & m->mask) {
		if (m->keys[i] == key)
			return m->vals[i];
		if (m->keys[i] == 0)
			return NULL;
	}
}

static void keymap_insert_raw(struct tcp_keymap *m, uint32_t key, struct tcp_mr *val)
{
	uint32_t i = key_hash(key) & m->mask;

	while (m->keys[i] != 0)
		i = (i + 1) & m->mask;
	m->keys[i] = key;
	m->vals[i] = val;
	m->n++;
}

static int keymap_put(struct tcp_keymap *m, uint32_t key, struct tcp_mr *val)
{
	if ((m->n + 1) * 2 > m->mask + 1 || !m->mask) {
		uint32_t cap = m->mask ? (m->mask + 1) * 2 : 16;
		struct tcp_keymap nm = { 0 };

		nm.keys = calloc(cap, sizeof(*nm.keys));
		nm.vals = calloc(cap, sizeof(*nm.vals));
		if (!nm.keys || !nm.vals) {
			free(nm.keys);
			free(nm.vals);
			return -ENOMEM;
		}
		nm.mask = cap - 1;
		for (uint32_t i = 0; m->mask && i <= m->mask; i++)
			if (m->keys[i])
				keymap_insert_raw(&nm, m->keys[i], m->vals[i]);
		free(m->keys);
		free(m->vals);
		*m = nm;
	}
	keymap_insert_raw(m, key, val);
	return 0;
}

static void keymap_del(struct tcp_keymap *m, uint32_t key)
{
	uint32_t i;

	if (!m->mask)
		return;
	for (i = key_hash(key) & m->mask;; i = (i + 1) & m->mask) {
		if (m->keys[i] == key)
			break;
		if (m->keys[i] == 0)
			return;
	}
	/* Backward-shift deletion keeps probe chains intact without tombstones. */
	uint32_t j = i;

	for (;;) {
		j = (j + 1) & m->mask;
		if (m->keys[j] == 0)
			break;
		uint32_t home = key_hash(m->keys[j]) & m->mask;

		/* Move j into the hole i unless its home lies cyclically in (i, j]. */
		if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
			m->keys[i] = m->keys[j];
			m->vals[i] = m->vals[j];
			i = j;
		}
	}
	m->keys[i] = 0;
	m->vals[i] = NULL;
	m->n--;
}

void tcp_keymap_free(struct tcp_keymap *m)
{
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof(*m));
}

static int new_key(const struct tcp_keymap *m, uint32_t *key)
{
	for (int tries = 0; tries < 64; tries++) {
		uint32_t k;

		if (getrandom(&k, sizeof(k), 0) != (ssize_t)sizeof(k))
			return errno ? -errno : -EIO;
		if (k != 0 && !tcp_keymap_get(m, k)) {
			*key = k;
			return 0;
		}
	}
	return -EAGAIN;
}

/* ------------------------------------------------------------------ domains */

int tcp_pd_alloc(struct fx_ctx *ctx, struct fx_pd **pd, struct ferry_err *err)
{
	struct tcp_pd *p = calloc(1, sizeof(*p));

	if (!p)
		return ferry_err_set(err, ENOMEM, "protection domain: out of memory");
	p->base.ctx = ctx;
	*pd = &p->base;
	return 0;
}

void tcp_pd_free(struct fx_pd *pd)
{
	free(pd);
}

/* ------------------------------------------------------------------ regions */

int tcp_reg_mr(struct fx_pd *pd, void *addr, size_t length, int access, struct fx_mr **out,
	       struct ferry_err *err)
{
	struct tcp_ctx *ctx = tcp_ctx_of(pd->ctx);
	struct tcp_mr *mr = calloc(1, sizeof(*mr));
	int rc;

	if (!mr)
		return ferry_err_set(err, ENOMEM, "register memory: out of memory");
	mr->start = addr;
	mr->pub.addr = addr;
	mr->pub.length = length;
	mr->pub.access = access;
	mr->pub.pd = pd;
	mr->pub.remote_base = 0;
	mr->pub.backend = mr;
	rc = new_key(&ctx->lkeys, &mr->pub.lkey);
	if (rc == 0)
		rc = new_key(&ctx->rkeys, &mr->pub.rkey);
	if (rc < 0) {
		free(mr);
		return ferry_err_set(err, -rc, "register memory: cannot draw a key: %s", strerror(-rc));
	}
	rc = keymap_put(&ctx->lkeys, mr->pub.lkey, mr);
	if (rc == 0) {
		rc = keymap_put(&ctx->rkeys, mr->pub.rkey, mr);
		if (rc < 0)
			keymap_del(&ctx->lkeys, mr->pub.lkey);
	}
	if (rc < 0) {
		free(mr);
		return ferry_err_set(err, ENOMEM, "register memory: out of memory");
	}
	*out = &mr->pub;
	LOG_DEBUG("registered %zu bytes at %p lkey 0x%08x rkey 0x%08x access 0x%x", length, addr,
		  mr->pub.lkey, mr->pub.rkey, access);
	return 0;
}

int tcp_dereg_mr(struct fx_mr *pub)
{
	struct tcp_mr *mr = pub->backend;
	struct tcp_ctx *ctx = tcp_ctx_of(pub->pd->ctx);
	struct fx_link *l, *nx;

	/* From now on peers naming the rkey get a remote access error. */
	keymap_del(&ctx->rkeys, pub->rkey);
	keymap_del(&ctx->lkeys, pub->lkey);
	/*
	 * Work still in flight on this memory (requests posted on it, replies
	 * being sent from it, WRITE data being received into it) cannot be
	 * completed safely once the caller may unmap the memory: those
	 * connections fail now, so nothing touches the region after we return.
	 */
	for (l = ctx->conns.next; l != &ctx->conns; l = nx) {
		struct tcp_conn *c = fx_container_of(l, struct tcp_conn, l_all);

		nx = l->next;
		if (!tcp_conn_uses_mr(c, mr))
			continue;
		if (c->linger) {
			tcp_conn_end_linger(c);
			tcp_conn_maybe_free(c);
		} else {
			tcp_conn_fail(c, FX_WC_LOC_PROT_ERR, false,
				      "memory region (lkey 0x%08x) deregistered while in use", pub->lkey);
		}
	}
	free(mr);
	return 0;
}

/* ------------------------------------------------------------------ memory windows */

struct tcp_conn tcp_mw_orphan;

int tcp_mw_bind(struct fx_conn *conn, struct fx_mr *mr, void *addr, size_t length, int access, struct fx_mw **out,
		struct ferry_err *err)
{
	struct tcp_conn *c = tcp_conn_of(conn);
	struct tcp_ctx *ctx = c->ctx;
	struct tcp_mw *w = calloc(1, sizeof(*w));
	int rc;

	if (!w)
		return ferry_err_set(err, ENOMEM, "memory window: out of memory");
	/* Zero-based like a registration: the peer addresses [0, length) under the window's key. */
	w->win.start = addr;
	w->win.pub.addr = addr;
	w->win.pub.length = length;
	w->win.pub.access = access;
	w->win.pub.pd = mr->pd;
	w->win.pub.backend = &w->win;
	w->win.bound = c;
	rc = new_key(&ctx->rkeys, &w->win.pub.rkey);
	if (rc == 0)
		rc = keymap_put(&ctx->rkeys, w->win.pub.rkey, &w->win);
	if (rc < 0) {
		free(w);
		return ferry_err_set(err, -rc, "memory window: cannot draw a key: %s", strerror(-rc));
	}
	fx_list_add_tail(&c->windows, &w->win.l_bound);
	w->pub.rkey = w->win.pub.rkey;
	w->pub.remote_base = 0;
	w->pub.length = length;
	w->pub.access = access;
	w->pub.mr = mr;
	w->pub.backend = w;
	*out = &w->pub;
	return 0;
}

int tcp_mw_unbind(struct fx_mw *pub)
{
	struct tcp_mw *w = pub->backend;
	struct tcp_ctx *ctx = tcp_ctx_of(pub->mr->pd->ctx);
	struct fx_link *l, *nx;

	keymap_del(&ctx->rkeys, pub->rkey);
	fx_list_del(&w->win.l_bound);
	/* As for a deregistration: whatever is still moving data through the window fails now. */
	for (l = ctx->conns.next; l != &ctx->conns; l = nx) {
		struct tcp_conn *c = fx_container_of(l, struct tcp_conn, l_all);

		nx = l->next;
		if (!tcp_conn_uses_mr(c, &w->win))
			continue;
		if (c->linger) {
			tcp_conn_end_linger(c);
			tcp_conn_maybe_free(c);
		} else {
			tcp_conn_fail(c, FX_WC_REM_ACCESS_ERR, false, "memory window (rkey 0x%08x) revoked while in use",
				      pub->rkey);
		}
	}
	free(w);
	return 0;
}

void tcp_mw_orphan_all(struct tcp_conn *c)
{
	while (!fx_list_empty(&c->windows)) {
		struct tcp_mr *win = fx_container_of(c->windows.next, struct tcp_mr, l_bound);

		fx_list_del(&win->l_bound);
		win->bound = &tcp_mw_orphan;
	}
}

bool tcp_sge_ok(struct tcp_ctx *ctx, struct fx_pd *pd, const struct fx_sge *sge, int need_access)
{
	const struct tcp_mr *mr = tcp_keymap_get(&ctx->lkeys, sge->lkey);

	if (!mr || mr->pub.pd != pd || (mr->pub.access & need_access) != need_access)
		return false;
	uintptr_t a = (uintptr_t)sge->addr, s = (uintptr_t)mr->start;

	return a >= s && a - s <= mr->pub.length && sge->length <= mr->pub.length - (a - s);
}
