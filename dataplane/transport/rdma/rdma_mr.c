/*
 * RDMA backend: protection domains and memory registrations.
 *
 * fx_reg_mr is ibv_reg_mr in the domain's ibv_pd with the access rights
 * mapped one to one; peers address the region by its virtual address
 * (remote_base = addr) under its rkey. An rkey works only through a QP of
 * the same PD: that is the per-client isolation of the memory server.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/transport/rdma/rdma.h"

int rdma_pd_alloc(struct fx_ctx *b, struct fx_pd **out, struct ferry_err *err)
{
	struct rdma_ctx *ctx = rdma_ctx_of(b);
	struct rdma_pd *pd = calloc(1, sizeof(*pd));

	if (!pd)
		return ferry_err_set(err, ENOMEM, "rdma: protection domain: out of memory");
	pd->pd = ibv_alloc_pd(ctx->verbs);
	if (!pd->pd) {
		int e = errno ? errno : ENOMEM;

		free(pd);
		return ferry_err_set(err, e, "rdma: ibv_alloc_pd on %s: %s", ctx->devname, strerror(e));
	}
	pd->base.ctx = b;
	*out = &pd->base;
	return 0;
}

/*
 * A closed connection keeps its QP (in this PD) until its flushes are reaped;
 * ibv_dealloc_pd refuses (EBUSY) until then, so the domain waits on
 * ctx->dead_pds and is retried after closed connections are freed.
 */
void rdma_pd_free(struct fx_pd *b)
{
	struct rdma_pd *pd = (struct rdma_pd *)(void *)b;
	struct rdma_ctx *ctx = rdma_ctx_of(b->ctx);

	if (ibv_dealloc_pd(pd->pd) == 0) {
		free(pd);
		return;
	}
	fx_list_add_tail(&ctx->dead_pds, &pd->l_dead);
}

void rdma_reap_dead_pds(struct rdma_ctx *ctx, bool force)
{
	struct fx_link *l, *nx;

	/* An SRQ keeps its domain busy: SRQs first. */
	rdma_reap_dead_srqs(ctx, force);
	for (l = ctx->dead_pds.next; l != &ctx->dead_pds; l = nx) {
		struct rdma_pd *pd = fx_container_of(l, struct rdma_pd, l_dead);

		nx = l->next;
		if (ibv_dealloc_pd(pd->pd) == 0 || force) {
			fx_list_del(&pd->l_dead);
			free(pd);
		}
	}
}

int rdma_reg_mr(struct fx_pd *b, void *addr, size_t length, int access, struct fx_mr **out,
		struct ferry_err *err)
{
	struct rdma_pd *pd = (struct rdma_pd *)(void *)b;
	struct rdma_mr *m = calloc(1, sizeof(*m));
	int acc = 0;

	if (!m)
		return ferry_err_set(err, ENOMEM, "rdma: registration: out of memory");
	if (access & FX_ACCESS_LOCAL_WRITE)
		acc |= IBV_ACCESS_LOCAL_WRITE;
	if (access & FX_ACCESS_REMOTE_READ)
		acc |= IBV_ACCESS_REMOTE_READ;
	if (access & FX_ACCESS_REMOTE_WRITE)
		acc |= IBV_ACCESS_REMOTE_WRITE;
	if (access & FX_ACCESS_MW_BIND)
		acc |= IBV_ACCESS_MW_BIND;
	m->mr = ibv_reg_mr(pd->pd, addr, length, acc);
	if (!m->mr) {
		int e = errno ? errno : ENOMEM;

		free(m);
		return ferry_err_set(err, e, "rdma: ibv_reg_mr of %zu bytes at %p: %s%s", length, addr, strerror(e),
				     e == ENOMEM || e == EPERM ? " (locked-memory limit? see ulimit -l)" : "");
	}
	m->pub.addr = addr;
	m->pub.length = length;
	m->pub.lkey = m->mr->lkey;
	m->pub.rkey = m->mr->rkey;
	m->pub.remote_base = (uint64_t)(uintptr_t)addr;
	m->pub.access = access;
	m->pub.pd = b;
	m->pub.backend = m;
	*out = &m->pub;
	return 0;
}

int rdma_dereg_mr(struct fx_mr *pub)
{
	struct rdma_mr *m = pub->backend;
	int rc = ibv_dereg_mr(m->mr);

	if (rc)
		return -(rc > 0 ? rc : (errno ? errno : EIO));
	free(m);
	return 0;
}
