/*
 * Integration: kept extents (KEEP / CLAIM / DISCARD) on a real ferry-memsrv.
 * A client process writes an extent, keeps it and exits; another client
 * (another name, as another node's would be) claims it with the token and
 * reads the bytes back exactly. Spent, forged and discarded tokens are
 * refused, the keeper's old key dies at KEEP (and so do attachments of the
 * extent), DISCARD returns the memory (stats), and the server-wide
 * kept-bytes / kept-extents limits and the claimer's quota hold.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include "memsrv_harness.h"

#define EXT (1u << 20)
#define PAGE 4096u

static struct msrv srv;

struct peer {
	struct fx_ctx *ctx;
	struct pool_client *c;
	struct fx_mr *mr;
	uint8_t *buf;
};

static int peer_try_open(struct peer *p, const struct msrv *m, const char *name, struct ferry_err *err)
{
	p->ctx = msrv_ctx();
	if (msrv_connect(m, p->ctx, name, NULL, &p->c, err))
		return -1;
	p->buf = aligned_alloc(PAGE, EXT);
	if (!p->buf)
		return -1;
	memset(p->buf, 0, EXT);
	return fx_reg_mr(pool_client_pd(p->c), p->buf, EXT, FX_ACCESS_LOCAL_WRITE, &p->mr, err);
}

static void peer_open_on(struct peer *p, const struct msrv *m, const char *name)
{
	struct ferry_err err = { 0 };

	if (peer_try_open(p, m, name, &err))
		fail_msg("connect %s: %s", name, err.msg);
}

static void peer_close(struct peer *p)
{
	fx_dereg_mr(p->mr);
	pool_client_close(p->c);
	fx_ctx_destroy(p->ctx);
	free(p->buf);
}

/* One signalled READ or WRITE of @len bytes from/to the local buffer; its status (-1: no completion). */
static int one_op(struct peer *p, enum fx_opcode op, uint32_t rkey, uint64_t addr, uint32_t len)
{
	struct fx_sge sge = { p->buf, len, p->mr->lkey };
	struct fx_send_wr wr = { .wr_id = 77, .opcode = op, .flags = FX_WR_SIGNALED, .sg_list = &sge, .num_sge = 1,
				 .remote_addr = addr, .rkey = rkey };
	struct fx_wc wc;
	int perr = 0;

	if (fx_post_send(pool_client_conn(p->c), &wr, 1, &perr) != 1)
		return -1;
	if (pool_client_poll(p->c, &wc, 1, 5000) != 1)
		return -1;
	return (int)wc.status;
}

static void fill(uint8_t *b, uint32_t len, uint8_t seed)
{
	for (uint32_t i = 0; i < len; i++)
		b[i] = (uint8_t)(seed + i * 29 + (i >> 12));
}

static void wait_stat(struct peer *p, const char *name, uint64_t value)
{
	uint64_t deadline = msrv_now_ms() + 3000;

	while (msrv_client_stat(p->c, name) != value && msrv_now_ms() < deadline)
		usleep(20000);
	assert_int_equal(msrv_client_stat(p->c, name), value);
}

/*
 * The keeper, in a child process: connect as "host-a", allocate, write the
 * pattern, keep, hand the token up the pipe, exit. No cmocka in here: the
 * exit status says which step failed.
 */
static int keeper_child(int fd, uint8_t seed)
{
	uint8_t token[POOL_SHARE_TOKEN_LEN];
	struct ferry_err err = { 0 };
	struct pool_extent e;
	struct peer k;

	if (peer_try_open(&k, &srv, "host-a", &err))
		return 10;
	if (pool_client_alloc(k.c, EXT, &e, &err))
		return 11;
	fill(k.buf, EXT, seed);
	if (one_op(&k, FX_OP_WRITE, e.rkey, e.base, EXT) != FX_WC_SUCCESS)
		return 12;
	if (pool_client_keep(k.c, e.id, token, &err)) {
		fprintf(stderr, "keeper: keep: %s\n", err.msg);
		return 13;
	}
	if (write(fd, token, sizeof(token)) != (ssize_t)sizeof(token))
		return 14;
	/* Exit without a goodbye: the session ends with the process, the kept extent must not. */
	return 0;
}

static void keep_in_child(uint8_t seed, uint8_t token[POOL_SHARE_TOKEN_LEN])
{
	int fds[2], status = 0;
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		_exit(keeper_child(fds[1], seed));
	}
	close(fds[1]);
	assert_int_equal(read(fds[0], token, POOL_SHARE_TOKEN_LEN), POOL_SHARE_TOKEN_LEN);
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* Keep -> the keeping process exits -> another client claims and reads every byte back. */
static void test_keep_outlives_process(void **state)
{
	uint8_t token[POOL_SHARE_TOKEN_LEN], *expect = malloc(EXT);
	struct ferry_err err = { 0 };
	struct pool_extent e;
	struct peer b;
	uint64_t claims0;

	(void)state;
	assert_non_null(expect);
	keep_in_child(0x3c, token);
	peer_open_on(&b, &srv, "host-b");
	claims0 = msrv_client_stat(b.c, "claims");
	/* The keeper is gone (its session closed), the extent is not. */
	wait_stat(&b, "clients_connected", 1);
	assert_int_equal(msrv_client_stat(b.c, "kept_active"), 1);
	assert_int_equal(msrv_client_stat(b.c, "kept_bytes"), EXT);
	assert_int_equal(msrv_client_stat(b.c, "bytes_allocated"), EXT);

	if (pool_client_claim(b.c, token, &e, &err))
		fail_msg("claim: %s", err.msg);
	assert_int_equal(e.length, EXT);
	assert_int_equal(msrv_client_stat(b.c, "claims"), claims0 + 1);
	assert_int_equal(msrv_client_stat(b.c, "kept_active"), 0);
	assert_int_equal(msrv_client_stat(b.c, "kept_bytes"), 0);
	/* It is b's own extent now: b's quota, b's key. */
	assert_int_equal(msrv_client_stat(b.c, "client_bytes"), EXT);
	assert_int_equal(one_op(&b, FX_OP_READ, e.rkey, e.base, EXT), FX_WC_SUCCESS);
	fill(expect, EXT, 0x3c);
	assert_memory_equal(b.buf, expect, EXT);
	/* Writable too. */
	fill(b.buf, PAGE, 0x99);
	assert_int_equal(one_op(&b, FX_OP_WRITE, e.rkey, e.base + EXT - PAGE, PAGE), FX_WC_SUCCESS);

	/* The token is spent. */
	assert_int_equal(pool_client_claim(b.c, token, &e, &err), -EACCES);
	assert_int_equal(pool_client_last_code(b.c), FERRY_E_BAD_TOKEN);
	assert_int_equal(pool_client_discard(b.c, token, &err), -EACCES);
	assert_int_equal(pool_client_free(b.c, e.id, &err), 0);
	assert_int_equal(msrv_client_stat(b.c, "bytes_allocated"), 0);
	peer_close(&b);
	free(expect);
}

/* At KEEP the keeper's key and every attachment die; only the claim token reaches the bytes. */
static void test_keep_revokes_access(void **state)
{
	uint8_t token[POOL_SHARE_TOKEN_LEN], share[POOL_SHARE_TOKEN_LEN];
	struct ferry_err err = { 0 };
	struct pool_extent e, att, got;
	struct peer a, viewer, b;

	(void)state;
	peer_open_on(&a, &srv, "host-a");
	peer_open_on(&viewer, &srv, "viewer");
	assert_int_equal(pool_client_alloc(a.c, EXT, &e, &err), 0);
	fill(a.buf, EXT, 0x11);
	assert_int_equal(one_op(&a, FX_OP_WRITE, e.rkey, e.base, EXT), FX_WC_SUCCESS);
	assert_int_equal(pool_client_share(a.c, e.id, POOL_SHARE_READ, share, &err), 0);
	assert_int_equal(pool_client_attach(viewer.c, share, &att, &err), 0);
	assert_int_equal(one_op(&viewer, FX_OP_READ, att.rkey, att.base, PAGE), FX_WC_SUCCESS);

	if (pool_client_keep(a.c, e.id, token, &err))
		fail_msg("keep: %s", err.msg);
	assert_int_equal(msrv_client_stat(a.c, "client_bytes"), 0);
	assert_int_equal(msrv_client_stat(a.c, "attachments_active"), 0);
	/* Not the keeper's any more: FREE, SHARE and KEEP again name an unknown extent. */
	assert_int_equal(pool_client_free(a.c, e.id, &err), -ENOENT);
	assert_int_equal(pool_client_keep(a.c, e.id, share, &err), -ENOENT);
	assert_int_equal(pool_client_last_code(a.c), FERRY_E_UNKNOWN_EXTENT);
	/* The revoked attachment and the keeper's old key touch nothing (each kills its connection). */
	memset(viewer.buf, 0, PAGE);
	assert_int_not_equal(one_op(&viewer, FX_OP_READ, att.rkey, att.base, PAGE), FX_WC_SUCCESS);
	fill(a.buf, PAGE, 0xee);
	assert_int_not_equal(one_op(&a, FX_OP_WRITE, e.rkey, e.base, PAGE), FX_WC_SUCCESS);
	peer_close(&viewer);
	peer_close(&a);

	peer_open_on(&b, &srv, "host-b");
	assert_int_equal(pool_client_claim(b.c, token, &got, &err), 0);
	assert_int_equal(got.id, e.id);
	assert_int_equal(one_op(&b, FX_OP_READ, got.rkey, got.base, EXT), FX_WC_SUCCESS);
	uint8_t *expect = malloc(EXT);

	assert_non_null(expect);
	fill(expect, EXT, 0x11);
	assert_memory_equal(b.buf, expect, EXT);
	free(expect);
	assert_int_equal(pool_client_free(b.c, got.id, &err), 0);
	peer_close(&b);
}

/* Forged tokens and foreign extents are refused and counted; DISCARD returns the memory. */
static void test_forged_and_discard(void **state)
{
	uint8_t token[POOL_SHARE_TOKEN_LEN], forged[POOL_SHARE_TOKEN_LEN];
	struct ferry_err err = { 0 };
	struct pool_extent e, other, got;
	struct peer a, b;
	uint64_t refused0, keep_refused0, discards0, allocated0;

	(void)state;
	peer_open_on(&a, &srv, "host-a");
	peer_open_on(&b, &srv, "host-b");
	refused0 = msrv_client_stat(a.c, "claim_refused");
	keep_refused0 = msrv_client_stat(a.c, "keep_refused");
	discards0 = msrv_client_stat(a.c, "discards");
	allocated0 = msrv_client_stat(a.c, "bytes_allocated");

	randombytes_buf(forged, sizeof(forged));
	assert_int_equal(pool_client_claim(b.c, forged, &got, &err), -EACCES);
	assert_non_null(strstr(err.msg, "unknown claim token"));
	assert_int_equal(pool_client_discard(b.c, forged, &err), -EACCES);
	assert_int_equal(msrv_client_stat(a.c, "claim_refused"), refused0 + 2);
	/* b cannot keep a's extent, nor an id that does not exist. */
	assert_int_equal(pool_client_alloc(a.c, EXT, &e, &err), 0);
	assert_int_equal(pool_client_keep(b.c, e.id, token, &err), -ENOENT);
	assert_int_equal(pool_client_keep(b.c, 0xdeadbeef, token, &err), -ENOENT);
	assert_int_equal(msrv_client_stat(a.c, "keep_refused"), keep_refused0 + 2);
	/* A share token is not a claim token. */
	assert_int_equal(pool_client_share(a.c, e.id, POOL_SHARE_READ, forged, &err), 0);
	assert_int_equal(pool_client_claim(b.c, forged, &got, &err), -EACCES);

	assert_int_equal(pool_client_keep(a.c, e.id, token, &err), 0);
	assert_int_equal(msrv_client_stat(a.c, "bytes_allocated"), allocated0 + EXT);
	/* One bit off the real token is a forgery. */
	memcpy(forged, token, sizeof(forged));
	forged[31] ^= 1;
	assert_int_equal(pool_client_claim(b.c, forged, &got, &err), -EACCES);
	assert_int_equal(msrv_client_stat(a.c, "kept_active"), 1);
	/* Anyone with the token may discard: the memory goes back to the pool. */
	assert_int_equal(pool_client_discard(b.c, token, &err), 0);
	assert_int_equal(msrv_client_stat(a.c, "discards"), discards0 + 1);
	assert_int_equal(msrv_client_stat(a.c, "kept_active"), 0);
	assert_int_equal(msrv_client_stat(a.c, "kept_bytes"), 0);
	assert_int_equal(msrv_client_stat(a.c, "bytes_allocated"), allocated0);
	assert_int_equal(pool_client_claim(b.c, token, &got, &err), -EACCES);
	assert_int_equal(pool_client_discard(a.c, token, &err), -EACCES);
	/* The freed memory is scrubbed: a new extent over it reads zeros. */
	assert_int_equal(pool_client_alloc(b.c, EXT, &other, &err), 0);
	memset(b.buf, 0xff, EXT);
	assert_int_equal(one_op(&b, FX_OP_READ, other.rkey, other.base, EXT), FX_WC_SUCCESS);
	for (uint32_t i = 0; i < EXT; i += 512)
		assert_int_equal(b.buf[i], 0);
	peer_close(&b);
	peer_close(&a);
}

/* kept_bytes and kept_max are server-wide; a claim beyond the claimer's quota leaves the extent kept. */
static void test_limits(void **state)
{
	static const struct msrv_opts opts = { .pool_size = "16M", .client_quota = "2M",
					       .extra_limits = "kept_bytes = 1536K\nkept_max = 2\n" };
	uint8_t t1[POOL_SHARE_TOKEN_LEN], t2[POOL_SHARE_TOKEN_LEN], t3[POOL_SHARE_TOKEN_LEN];
	struct pool_extent e1, e2, small, tiny, full, got;
	struct ferry_err err = { 0 };
	struct msrv q;
	struct peer a, b;

	(void)state;
	msrv_start(&q, &opts);
	peer_open_on(&a, &q, "host-a");
	peer_open_on(&b, &q, "host-b");
	assert_int_equal(msrv_client_stat(a.c, "kept_bytes_limit"), 1536u << 10);
	assert_int_equal(pool_client_alloc(a.c, EXT, &e1, &err), 0);
	assert_int_equal(pool_client_alloc(a.c, EXT, &e2, &err), 0);
	assert_int_equal(pool_client_keep(a.c, e1.id, t1, &err), 0);
	/* 1 MiB more would be 2 MiB kept, over 1.5 MiB: refused, and e2 is still a's, key and all. */
	assert_int_equal(pool_client_keep(a.c, e2.id, t2, &err), -EMLINK);
	assert_int_equal(pool_client_last_code(a.c), FERRY_E_LIMIT);
	assert_non_null(strstr(err.msg, "kept-bytes limit"));
	fill(a.buf, PAGE, 0x42);
	assert_int_equal(one_op(&a, FX_OP_WRITE, e2.rkey, e2.base, PAGE), FX_WC_SUCCESS);
	assert_int_equal(pool_client_free(a.c, e2.id, &err), 0);
	assert_int_equal(pool_client_alloc(a.c, 256u << 10, &small, &err), 0);
	assert_int_equal(pool_client_alloc(a.c, PAGE, &tiny, &err), 0);
	assert_int_equal(pool_client_keep(a.c, small.id, t2, &err), 0);
	/* Two kept: kept_max. */
	assert_int_equal(pool_client_keep(a.c, tiny.id, t3, &err), -EMLINK);
	assert_int_equal(msrv_client_stat(a.c, "keep_refused"), 2);
	assert_int_equal(msrv_client_stat(a.c, "kept_active"), 2);
	assert_int_equal(msrv_client_stat(a.c, "kept_bytes"), EXT + (256u << 10));

	/* b's quota is full: the claim is refused, the extent stays kept and the token valid. */
	assert_int_equal(pool_client_alloc(b.c, 2u << 20, &full, &err), 0);
	assert_int_equal(pool_client_claim(b.c, t1, &got, &err), -EDQUOT);
	assert_int_equal(pool_client_last_code(b.c), FERRY_E_QUOTA);
	assert_int_equal(msrv_client_stat(b.c, "kept_active"), 2);
	assert_int_equal(pool_client_free(b.c, full.id, &err), 0);
	assert_int_equal(pool_client_claim(b.c, t1, &got, &err), 0);
	assert_int_equal(got.length, EXT);
	assert_int_equal(msrv_client_stat(b.c, "client_bytes"), EXT);
	/* Room again under kept_max. */
	assert_int_equal(pool_client_keep(a.c, tiny.id, t3, &err), 0);
	assert_int_equal(msrv_client_stat(a.c, "claim_refused"), 1);
	peer_close(&b);
	peer_close(&a);
	/* Kept extents left at shutdown are lost (and said so); the server still exits cleanly. */
	assert_int_equal(msrv_finish(&q), 0);
}

/* kept_bytes = 0: this server keeps nothing. */
static void test_keep_disabled(void **state)
{
	static const struct msrv_opts opts = { .pool_size = "8M", .extra_limits = "kept_bytes = 0\n" };
	uint8_t token[POOL_SHARE_TOKEN_LEN];
	struct ferry_err err = { 0 };
	struct pool_extent e;
	struct msrv q;
	struct peer a;

	(void)state;
	msrv_start(&q, &opts);
	peer_open_on(&a, &q, "host-a");
	assert_int_equal(pool_client_alloc(a.c, EXT, &e, &err), 0);
	assert_int_equal(pool_client_keep(a.c, e.id, token, &err), -EMLINK);
	assert_non_null(strstr(err.msg, "kept_bytes = 0"));
	assert_int_equal(one_op(&a, FX_OP_READ, e.rkey, e.base, PAGE), FX_WC_SUCCESS);
	peer_close(&a);
	assert_int_equal(msrv_finish(&q), 0);
}

static int setup(void **state)
{
	static const struct msrv_opts opts = { .pool_size = "16M" };

	(void)state;
	if (sodium_init() < 0)
		return -1;
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
		cmocka_unit_test(test_keep_outlives_process),
		cmocka_unit_test(test_keep_revokes_access),
		cmocka_unit_test(test_forged_and_discard),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_keep_disabled),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
