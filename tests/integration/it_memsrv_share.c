/*
 * Integration: extent sharing (SHARE / ATTACH / DETACH / UNSHARE) on a real
 * ferry-memsrv. The owner shares an extent, another authenticated client
 * attaches it and moves pages with one-sided ops on its own connection, the
 * owner sees them byte-exact. Rights, forged and foreign tokens, revocation
 * by UNSHARE, FREE and the owner's end, keys used on a third connection and
 * the limits are checked against real memory contents.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memsrv_harness.h"

#define EXT (1u << 20)
#define PAGE 4096u
#define POOL (16u << 20)

static struct msrv srv;

struct peer {
	struct fx_ctx *ctx;
	struct pool_client *c;
	struct fx_mr *mr;
	uint8_t *buf;
};

static void peer_open_on(struct peer *p, const struct msrv *m, const char *name)
{
	struct ferry_err err = { 0 };

	p->ctx = msrv_ctx();
	if (msrv_connect(m, p->ctx, name, NULL, &p->c, &err))
		fail_msg("connect %s: %s", name, err.msg);
	p->buf = aligned_alloc(PAGE, EXT);
	assert_non_null(p->buf);
	memset(p->buf, 0, EXT);
	assert_int_equal(fx_reg_mr(pool_client_pd(p->c), p->buf, EXT, FX_ACCESS_LOCAL_WRITE, &p->mr, &err), 0);
}

static void peer_open(struct peer *p, const char *name)
{
	peer_open_on(p, &srv, name);
}

static void peer_close(struct peer *p)
{
	fx_dereg_mr(p->mr);
	pool_client_close(p->c);
	fx_ctx_destroy(p->ctx);
	free(p->buf);
}

/* One signalled READ or WRITE of @len bytes from/to the start of the local buffer; returns its status. */
static enum fx_wc_status one_op(struct peer *p, enum fx_opcode op, uint32_t rkey, uint64_t addr, uint32_t len)
{
	struct fx_sge sge = { p->buf, len, p->mr->lkey };
	struct fx_send_wr wr = { .wr_id = 77, .opcode = op, .flags = FX_WR_SIGNALED, .sg_list = &sge, .num_sge = 1,
				 .remote_addr = addr, .rkey = rkey };
	struct fx_wc wc;
	int perr = 0;

	if (fx_post_send(pool_client_conn(p->c), &wr, 1, &perr) != 1)
		fail_msg("post: %s", strerror(-perr));
	int n = pool_client_poll(p->c, &wc, 1, 5000);

	if (n != 1)
		fail_msg("no completion within 5 s (%d)", n);
	assert_int_equal(wc.wr_id, 77);
	return wc.status;
}

static void fill(uint8_t *b, uint32_t len, uint8_t seed)
{
	for (uint32_t i = 0; i < len; i++)
		b[i] = (uint8_t)(seed + i * 13 + (i >> 12));
}

/* The owner reads its whole extent back and compares it with @expect. */
static void expect_extent(struct peer *owner, const struct pool_extent *e, const uint8_t *expect)
{
	memset(owner->buf, 0, EXT);
	assert_int_equal(one_op(owner, FX_OP_READ, e->rkey, e->base, EXT), FX_WC_SUCCESS);
	assert_memory_equal(owner->buf, expect, EXT);
}

/* Wait (bounded) until the server's counter @name reads @value, as seen through @p. */
static void wait_stat(struct peer *p, const char *name, uint64_t value)
{
	uint64_t deadline = msrv_now_ms() + 3000;

	while (msrv_client_stat(p->c, name) != value && msrv_now_ms() < deadline)
		usleep(20000);
	assert_int_equal(msrv_client_stat(p->c, name), value);
}

/* Owner shares read-write; the attacher WRITEs pages straight into it; the owner reads them back. */
static void test_attacher_writes_owner_reads(void **state)
{
	struct peer owner, mig;
	struct pool_extent e, att;
	struct ferry_err err = { 0 };
	uint8_t token[POOL_SHARE_TOKEN_LEN];
	uint8_t *expect = malloc(EXT);
	uint64_t attaches0;

	(void)state;
	assert_non_null(expect);
	peer_open(&owner, "main-host");
	peer_open(&mig, "migration-source");
	attaches0 = msrv_client_stat(owner.c, "attaches");
	assert_int_equal(pool_client_alloc(owner.c, EXT, &e, &err), 0);
	if (pool_client_share(owner.c, e.id, POOL_SHARE_READ | POOL_SHARE_WRITE, token, &err))
		fail_msg("share: %s", err.msg);
	if (pool_client_attach(mig.c, token, &att, &err))
		fail_msg("attach: %s", err.msg);
	assert_int_equal(att.length, EXT);
	assert_int_equal(pool_client_last_attach_rights(mig.c), POOL_SHARE_READ | POOL_SHARE_WRITE);

	/* The migration source writes the pages (in 4 chunks, as a pager would batch them). */
	fill(mig.buf, EXT, 0x5a);
	memcpy(expect, mig.buf, EXT);
	for (uint32_t off = 0; off < EXT; off += EXT / 4) {
		struct fx_sge sge = { mig.buf + off, EXT / 4, mig.mr->lkey };
		struct fx_send_wr wr = { .wr_id = off, .opcode = FX_OP_WRITE, .flags = FX_WR_SIGNALED, .sg_list = &sge,
					 .num_sge = 1, .remote_addr = att.base + off, .rkey = att.rkey };
		struct fx_wc wc;

		assert_int_equal(fx_post_send(pool_client_conn(mig.c), &wr, 1, NULL), 1);
		assert_int_equal(pool_client_poll(mig.c, &wc, 1, 5000), 1);
		assert_int_equal(wc.status, FX_WC_SUCCESS);
	}
	/* The main host keeps them: byte-exact through its own key. */
	expect_extent(&owner, &e, expect);
	/* ...and the attacher can read what it wrote. */
	memset(mig.buf, 0, EXT);
	assert_int_equal(one_op(&mig, FX_OP_READ, att.rkey, att.base, EXT), FX_WC_SUCCESS);
	assert_memory_equal(mig.buf, expect, EXT);

	assert_int_equal(msrv_client_stat(owner.c, "attaches"), attaches0 + 1);
	assert_int_equal(msrv_client_stat(owner.c, "attachments_active"), 1);
	/* An attachment is not the attacher's memory: its quota use stays 0. */
	assert_int_equal(msrv_client_stat(mig.c, "client_bytes"), 0);

	/* Detach: the key dies with it; a second detach is refused. */
	assert_int_equal(pool_client_detach(mig.c, att.id, &err), 0);
	assert_int_equal(pool_client_detach(mig.c, att.id, &err), -ENOENT);
	assert_int_equal(pool_client_last_code(mig.c), FERRY_E_UNKNOWN_ATTACH);
	assert_int_equal(msrv_client_stat(owner.c, "attachments_active"), 0);
	fill(mig.buf, PAGE, 0x01);
	assert_int_equal(one_op(&mig, FX_OP_WRITE, att.rkey, att.base, PAGE), FX_WC_REM_ACCESS_ERR);
	expect_extent(&owner, &e, expect);

	/* The share itself is still there: a new attacher gets in. */
	struct peer again;

	peer_open(&again, "migration-source-2");
	assert_int_equal(pool_client_attach(again.c, token, &att, &err), 0);
	memset(again.buf, 0, EXT);
	assert_int_equal(one_op(&again, FX_OP_READ, att.rkey, att.base, EXT), FX_WC_SUCCESS);
	assert_memory_equal(again.buf, expect, EXT);
	peer_close(&again);

	/* The attacher's end dropped its attachment; the owner's extent is intact and still its own. */
	wait_stat(&owner, "attachments_active", 0);
	expect_extent(&owner, &e, expect);
	assert_int_equal(pool_client_free(owner.c, e.id, &err), 0);
	peer_close(&mig);
	peer_close(&owner);
	free(expect);
}

/* A read-only share: READ works, WRITE is a remote access error and leaves memory untouched. */
static void test_read_only_share(void **state)
{
	struct peer owner, reader;
	struct pool_extent e, att;
	struct ferry_err err = { 0 };
	uint8_t token[POOL_SHARE_TOKEN_LEN];
	uint8_t *expect = malloc(EXT);

	(void)state;
	assert_non_null(expect);
	peer_open(&owner, "owner-ro");
	peer_open(&reader, "reader-ro");
	assert_int_equal(pool_client_alloc(owner.c, EXT, &e, &err), 0);
	fill(owner.buf, EXT, 0x33);
	memcpy(expect, owner.buf, EXT);
	assert_int_equal(one_op(&owner, FX_OP_WRITE, e.rkey, e.base, EXT), FX_WC_SUCCESS);

	assert_int_equal(pool_client_share(owner.c, e.id, POOL_SHARE_READ, token, &err), 0);
	assert_int_equal(pool_client_attach(reader.c, token, &att, &err), 0);
	assert_int_equal(pool_client_last_attach_rights(reader.c), POOL_SHARE_READ);
	assert_int_equal(one_op(&reader, FX_OP_READ, att.rkey, att.base, EXT), FX_WC_SUCCESS);
	assert_memory_equal(reader.buf, expect, EXT);

	fill(reader.buf, EXT, 0xc4);
	assert_int_equal(one_op(&reader, FX_OP_WRITE, att.rkey, att.base, PAGE), FX_WC_REM_ACCESS_ERR);
	assert_int_equal(fx_conn_state(pool_client_conn(reader.c)), FX_CONN_ERROR);
	peer_close(&reader);
	expect_extent(&owner, &e, expect);

	/* A write-only share refuses READ: nothing of the owner's lands in the reader's buffer. */
	assert_int_equal(pool_client_share(owner.c, e.id, POOL_SHARE_WRITE, token, &err), 0);
	peer_open(&reader, "reader-wo");
	assert_int_equal(pool_client_attach(reader.c, token, &att, &err), 0);
	memset(reader.buf, 0, PAGE);
	assert_int_equal(one_op(&reader, FX_OP_READ, att.rkey, att.base, PAGE), FX_WC_REM_ACCESS_ERR);
	for (uint32_t i = 0; i < PAGE; i++)
		if (reader.buf[i])
			fail_msg("byte %u leaked through a write-only attachment", i);
	peer_close(&reader);

	assert_int_equal(pool_client_free(owner.c, e.id, &err), 0);
	peer_close(&owner);
	free(expect);
}

/* Forged and foreign tokens, requests on what is not yours, bad rights: clear errors, counters. */
static void test_refusals(void **state)
{
	struct peer owner, other, stranger;
	struct pool_extent e, att;
	struct ferry_err err = { 0 };
	uint8_t token[POOL_SHARE_TOKEN_LEN], forged[POOL_SHARE_TOKEN_LEN];
	uint64_t refused0, share_refused0;
	struct msrv srv2;
	static const struct msrv_opts opts2 = { .pool_size = "4M" };

	(void)state;
	peer_open(&owner, "owner-ref");
	peer_open(&other, "other-ref");
	refused0 = msrv_client_stat(owner.c, "attach_refused");
	share_refused0 = msrv_client_stat(owner.c, "share_refused");
	assert_int_equal(pool_client_alloc(owner.c, EXT, &e, &err), 0);
	assert_int_equal(pool_client_share(owner.c, e.id, POOL_SHARE_WRITE, token, &err), 0);

	/* Forged: the real token with one bit flipped, and all zeros. */
	memcpy(forged, token, sizeof(forged));
	forged[17] ^= 0x40;
	assert_int_equal(pool_client_attach(other.c, forged, &att, &err), -EACCES);
	assert_int_equal(pool_client_last_code(other.c), FERRY_E_BAD_TOKEN);
	assert_non_null(strstr(err.msg, "unknown share token"));
	memset(forged, 0, sizeof(forged));
	assert_int_equal(pool_client_attach(other.c, forged, &att, &err), -EACCES);

	/* A token of another server's share means nothing here (and vice versa). */
	msrv_start(&srv2, &opts2);
	peer_open_on(&stranger, &srv2, "owner-elsewhere");
	struct pool_extent e2;
	uint8_t token2[POOL_SHARE_TOKEN_LEN];

	assert_int_equal(pool_client_alloc(stranger.c, EXT, &e2, &err), 0);
	assert_int_equal(pool_client_share(stranger.c, e2.id, POOL_SHARE_READ | POOL_SHARE_WRITE, token2, &err), 0);
	assert_int_equal(pool_client_attach(other.c, token2, &att, &err), -EACCES);
	assert_int_equal(pool_client_last_code(other.c), FERRY_E_BAD_TOKEN);
	assert_int_equal(pool_client_attach(stranger.c, token, &att, &err), -EACCES);
	assert_int_equal(msrv_client_stat(stranger.c, "attach_refused"), 1);
	peer_close(&stranger);
	assert_int_equal(msrv_finish(&srv2), 0);

	/* SHARE / UNSHARE of another client's extent; DETACH of nothing. */
	assert_int_equal(pool_client_share(other.c, e.id, POOL_SHARE_READ, token2, &err), -ENOENT);
	assert_int_equal(pool_client_last_code(other.c), FERRY_E_UNKNOWN_EXTENT);
	assert_int_equal(pool_client_unshare(other.c, e.id, &err), -ENOENT);
	assert_int_equal(pool_client_last_code(other.c), FERRY_E_UNKNOWN_EXTENT);
	assert_int_equal(pool_client_detach(other.c, 1, &err), -ENOENT);
	assert_int_equal(pool_client_last_code(other.c), FERRY_E_UNKNOWN_ATTACH);
	/* Bad rights never leave the client. */
	assert_int_equal(pool_client_share(owner.c, e.id, 0, token2, &err), -EINVAL);
	assert_int_equal(pool_client_share(owner.c, e.id, 4, token2, &err), -EINVAL);

	/* The owner's own DETACH of an attachment it does not hold is refused too. */
	assert_int_equal(pool_client_attach(other.c, token, &att, &err), 0);
	assert_int_equal(pool_client_detach(owner.c, att.id, &err), -ENOENT);

	assert_int_equal(msrv_client_stat(owner.c, "attach_refused"), refused0 + 3);
	assert_int_equal(msrv_client_stat(owner.c, "share_refused"), share_refused0 + 4);
	/* All of it left both sessions working. */
	fill(other.buf, PAGE, 0x77);
	assert_int_equal(one_op(&other, FX_OP_WRITE, att.rkey, att.base, PAGE), FX_WC_SUCCESS);
	assert_int_equal(one_op(&owner, FX_OP_READ, e.rkey, e.base, PAGE), FX_WC_SUCCESS);
	assert_memory_equal(owner.buf, other.buf, PAGE);
	peer_close(&other);
	peer_close(&owner);
}

/* UNSHARE revokes: the attacher's key fails at once, memory untouched, the token is dead. */
static void test_unshare_revokes(void **state)
{
	struct peer owner, mig, late;
	struct pool_extent e, att, att2;
	struct ferry_err err = { 0 };
	uint8_t token[POOL_SHARE_TOKEN_LEN];
	uint8_t *expect = malloc(EXT);
	uint64_t rev0;

	(void)state;
	assert_non_null(expect);
	peer_open(&owner, "owner-unshare");
	peer_open(&mig, "mig-unshare");
	rev0 = msrv_client_stat(owner.c, "revocations");
	assert_int_equal(pool_client_alloc(owner.c, EXT, &e, &err), 0);
	assert_int_equal(pool_client_share(owner.c, e.id, POOL_SHARE_READ | POOL_SHARE_WRITE, token, &err), 0);
	assert_int_equal(pool_client_attach(mig.c, token, &att, &err), 0);
	assert_int_equal(pool_client_attach(mig.c, token, &att2, &err), 0);
	assert_true(att.id != att2.id);
	fill(mig.buf, EXT, 0x21);
	memcpy(expect, mig.buf, EXT);
	assert_int_equal(one_op(&mig, FX_OP_WRITE, att.rkey, att.base, EXT), FX_WC_SUCCESS);

	assert_int_equal(pool_client_unshare(owner.c, e.id, &err), 0);
	assert_int_equal(msrv_client_stat(owner.c, "revocations"), rev0 + 2);
	/* Unsharing again is harmless: nothing left to revoke. */
	assert_int_equal(pool_client_unshare(owner.c, e.id, &err), 0);

	fill(mig.buf, EXT, 0x99);
	assert_int_equal(one_op(&mig, FX_OP_WRITE, att2.rkey, att2.base, EXT), FX_WC_REM_ACCESS_ERR);
	peer_close(&mig);
	expect_extent(&owner, &e, expect);

	peer_open(&late, "late-unshare");
	assert_int_equal(pool_client_attach(late.c, token, &att, &err), -EACCES);
	assert_int_equal(pool_client_last_code(late.c), FERRY_E_BAD_TOKEN);
	peer_close(&late);
	assert_int_equal(pool_client_free(owner.c, e.id, &err), 0);
	peer_close(&owner);
	free(expect);
}

/* The owner's FREE and the owner's end revoke too; freed memory comes back zeroed, untouched. */
static void test_free_and_owner_end_revoke(void **state)
{
	struct peer owner, mig;
	struct pool_extent e, att;
	struct ferry_err err = { 0 };
	uint8_t token[POOL_SHARE_TOKEN_LEN];
	uint64_t rev0;

	(void)state;
	peer_open(&owner, "owner-free");
	peer_open(&mig, "mig-free");
	wait_stat(&owner, "bytes_allocated", 0);
	rev0 = msrv_client_stat(owner.c, "revocations");
	/* The whole pool, so that the memory after FREE can be inspected in full. */
	assert_int_equal(pool_client_alloc(owner.c, POOL, &e, &err), 0);
	assert_int_equal(pool_client_share(owner.c, e.id, POOL_SHARE_WRITE, token, &err), 0);
	assert_int_equal(pool_client_attach(mig.c, token, &att, &err), 0);
	fill(mig.buf, EXT, 0x42);
	assert_int_equal(one_op(&mig, FX_OP_WRITE, att.rkey, att.base + 3 * EXT, EXT), FX_WC_SUCCESS);

	assert_int_equal(pool_client_free(owner.c, e.id, &err), 0);
	assert_int_equal(msrv_client_stat(owner.c, "revocations"), rev0 + 1);
	assert_int_equal(one_op(&mig, FX_OP_WRITE, att.rkey, att.base + 3 * EXT, EXT), FX_WC_REM_ACCESS_ERR);
	peer_close(&mig);

	assert_int_equal(pool_client_alloc(owner.c, POOL, &e, &err), 0);
	for (uint32_t off = 0; off < POOL; off += EXT) {
		memset(owner.buf, 0xff, EXT);
		assert_int_equal(one_op(&owner, FX_OP_READ, e.rkey, e.base + off, EXT), FX_WC_SUCCESS);
		for (uint32_t i = 0; i < EXT; i++)
			if (owner.buf[i])
				fail_msg("byte %u at offset %u not zero after FREE and a revoked WRITE", i, off);
	}

	/* Owner's end: its shares go with it. */
	assert_int_equal(pool_client_share(owner.c, e.id, POOL_SHARE_WRITE, token, &err), 0);
	peer_open(&mig, "mig-owner-end");
	assert_int_equal(pool_client_attach(mig.c, token, &att, &err), 0);
	peer_close(&owner);
	wait_stat(&mig, "shares_active", 0);
	assert_int_equal(msrv_client_stat(mig.c, "attachments_active"), 0);
	assert_int_equal(pool_client_attach(mig.c, token, &att, &(struct ferry_err){ 0 }), -EACCES);
	fill(mig.buf, EXT, 0x43);
	assert_int_equal(one_op(&mig, FX_OP_WRITE, att.rkey, att.base, EXT), FX_WC_REM_ACCESS_ERR);
	peer_close(&mig);
}

/* An attachment's key works on the attacher's connection only. */
static void test_attach_key_is_per_connection(void **state)
{
	struct peer owner, mig, third;
	struct pool_extent e, att, own3;
	struct ferry_err err = { 0 };
	uint8_t token[POOL_SHARE_TOKEN_LEN];
	uint8_t *expect = malloc(EXT);

	(void)state;
	assert_non_null(expect);
	peer_open(&owner, "owner-conn");
	peer_open(&mig, "mig-conn");
	peer_open(&third, "third-conn");
	assert_int_equal(pool_client_alloc(owner.c, EXT, &e, &err), 0);
	fill(owner.buf, EXT, 0x66);
	memcpy(expect, owner.buf, EXT);
	assert_int_equal(one_op(&owner, FX_OP_WRITE, e.rkey, e.base, EXT), FX_WC_SUCCESS);
	assert_int_equal(pool_client_share(owner.c, e.id, POOL_SHARE_READ | POOL_SHARE_WRITE, token, &err), 0);
	assert_int_equal(pool_client_attach(mig.c, token, &att, &err), 0);
	/* The third client holds memory of its own, so its domain is not empty. */
	assert_int_equal(pool_client_alloc(third.c, EXT, &own3, &err), 0);

	fill(third.buf, EXT, 0x0f);
	assert_int_equal(one_op(&third, FX_OP_WRITE, att.rkey, att.base, PAGE), FX_WC_REM_ACCESS_ERR);
	peer_close(&third);
	peer_open(&third, "third-conn-2");
	memset(third.buf, 0, PAGE);
	assert_int_equal(one_op(&third, FX_OP_READ, att.rkey, att.base, PAGE), FX_WC_REM_ACCESS_ERR);
	for (uint32_t i = 0; i < PAGE; i++)
		if (third.buf[i])
			fail_msg("byte %u leaked to a third client", i);
	peer_close(&third);
	/* The owner's own key on the attacher's connection is refused as well. */
	assert_int_equal(one_op(&mig, FX_OP_WRITE, e.rkey, e.base, PAGE), FX_WC_REM_ACCESS_ERR);
	peer_close(&mig);
	expect_extent(&owner, &e, expect);
	peer_close(&owner);
	free(expect);
}

/* Limits: shares per extent, attachments per session; attachments ignore the attacher's quota. */
static void test_limits(void **state)
{
	struct peer owner, mig;
	struct pool_extent e, mine, att;
	struct ferry_err err = { 0 };
	uint8_t token[POOL_SHARE_TOKEN_LEN];
	struct msrv q;
	static const struct msrv_opts qopts = { .pool_size = "16M", .client_quota = "8M" };

	(void)state;
	msrv_start(&q, &qopts);
	peer_open_on(&owner, &q, "owner-limits");
	peer_open_on(&mig, &q, "mig-limits");
	assert_int_equal(pool_client_alloc(owner.c, 1u << 20, &e, &err), 0);
	for (int i = 0; i < 8; i++)
		assert_int_equal(pool_client_share(owner.c, e.id, POOL_SHARE_READ, token, &err), 0);
	assert_int_equal(pool_client_share(owner.c, e.id, POOL_SHARE_READ, token, &err), -EMLINK);
	assert_int_equal(pool_client_last_code(owner.c), FERRY_E_LIMIT);
	assert_non_null(strstr(err.msg, "limit"));

	/* The attacher uses its whole quota itself, then still attaches 1 GiB more (1024 x 1 MiB:
	 * the limit, SESS_MAX_ATTACH, sized for one migration's extents). */
	assert_int_equal(pool_client_alloc(mig.c, 8u << 20, &mine, &err), 0);
	for (int i = 0; i < 1024; i++)
		if (pool_client_attach(mig.c, token, &att, &err))
			fail_msg("attach %d: %s", i, err.msg);
	assert_int_equal(pool_client_attach(mig.c, token, &att, &err), -EMLINK);
	assert_int_equal(pool_client_last_code(mig.c), FERRY_E_LIMIT);
	assert_int_equal(msrv_client_stat(mig.c, "attach_refused"), 1);
	assert_int_equal(msrv_client_stat(mig.c, "client_bytes"), 8u << 20);
	/* Detaching one makes room again. */
	assert_int_equal(pool_client_detach(mig.c, 5000, &err), -ENOENT);
	assert_int_equal(pool_client_detach(mig.c, 1024, &err), 0);
	assert_int_equal(pool_client_attach(mig.c, token, &att, &err), 0);
	assert_int_equal(one_op(&mig, FX_OP_READ, att.rkey, att.base + (1u << 20) - PAGE, PAGE), FX_WC_SUCCESS);
	peer_close(&mig);
	peer_close(&owner);
	assert_int_equal(msrv_finish(&q), 0);
}

static int setup(void **state)
{
	static const struct msrv_opts opts = { .pool_size = "16M" };

	(void)state;
	msrv_start(&srv, &opts);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return msrv_finish(&srv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_attacher_writes_owner_reads),
		cmocka_unit_test(test_read_only_share),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_unshare_revokes),
		cmocka_unit_test(test_free_and_owner_end_revoke),
		cmocka_unit_test(test_attach_key_is_per_connection),
		cmocka_unit_test(test_limits),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
