/*
 * Integration: authentication. Nothing that names pool memory may reach a
 * peer that has not proven it knows the secret, and a client must not trust
 * a server that cannot prove it either.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "memsrv_harness.h"

static struct msrv srv;

static int group_setup(void **state)
{
	(void)state;
	msrv_start(&srv, NULL);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	return msrv_finish(&srv);
}

/* ------------------------------------------------------------ raw peer */

/* A transport connection that speaks the page protocol by hand. */
struct raw {
	struct fx_ctx *ctx;
	struct fx_pd *pd;
	struct fx_mr *mr;
	struct fx_conn *conn;
	uint8_t buf[4][FERRY_PAGE_CTRL_MAX];   /* 0..2 receive, 3 send */
};

static void raw_open(struct raw *r, uint16_t port)
{
	struct ferry_err err = { 0 };

	memset(r, 0, sizeof(*r));
	r->ctx = msrv_ctx();
	assert_int_equal(fx_pd_alloc(r->ctx, &r->pd, &err), 0);
	assert_int_equal(fx_reg_mr(r->pd, r->buf, sizeof(r->buf), FX_ACCESS_LOCAL_WRITE, &r->mr, &err), 0);
	if (fx_connect(r->ctx, r->pd, msrv_host(), port, NULL, &r->conn, &err))
		fail_msg("connect: %s", err.msg);
	for (uint64_t i = 0; i < 3; i++) {
		struct fx_sge sge = { r->buf[i], FERRY_PAGE_CTRL_MAX, r->mr->lkey };
		struct fx_recv_wr wr = { i, &sge, 1 };

		assert_int_equal(fx_post_recv(r->conn, &wr, 1, NULL), 1);
	}
}

static void raw_send(struct raw *r, int len)
{
	struct fx_sge sge = { r->buf[3], (uint32_t)len, r->mr->lkey };
	struct fx_send_wr wr = { .wr_id = 99, .opcode = FX_OP_SEND, .flags = FX_WR_SIGNALED, .sg_list = &sge, .num_sge = 1 };

	assert_true(len > 0);
	assert_int_equal(fx_post_send(r->conn, &wr, 1, NULL), 1);
}

/*
 * Wait for the next received message (decoded into @m). Returns false if the
 * connection failed first. SEND completions are skipped.
 */
static bool raw_recv(struct raw *r, struct ferry_page_msg *m)
{
	uint64_t deadline = msrv_now_ms() + 5000;

	while (msrv_now_ms() < deadline) {
		struct fx_wc wc;
		int n = fx_poll(r->ctx, &wc, 1, 100);

		assert_true(n >= 0);
		if (n == 0 || wc.opcode == FX_WC_SEND)
			continue;
		if (wc.status != FX_WC_SUCCESS)
			return false;
		assert_int_equal(ferry_page_decode(r->buf[wc.wr_id], wc.byte_len, m), FERRY_E_OK);
		return true;
	}
	msrv_dump_log(&srv);
	fail_msg("no message and no failure within 5 s");
	return false;
}

/* Poll for a failed receive for up to @ms; true if the connection failed. */
static bool raw_failed_within(struct raw *r, unsigned ms)
{
	uint64_t deadline = msrv_now_ms() + ms;

	while (msrv_now_ms() < deadline) {
		struct fx_wc wc;
		int n = fx_poll(r->ctx, &wc, 1, 20);

		assert_true(n >= 0);
		if (n == 1 && wc.opcode == FX_WC_RECV && wc.status == FX_WC_SUCCESS)
			fail_msg("connection still open: another message arrived");
		if (n == 1 && wc.status != FX_WC_SUCCESS)
			return true;
	}
	return false;
}

/*
 * The server must close the connection: a receive fails within 3 s. The
 * close usually arrives together with the server's ERROR reply, which is
 * exactly the case an edge-triggered poller can miss: no probing here.
 */
static void raw_expect_closed(struct raw *r)
{
	uint64_t t0 = msrv_now_ms();

	if (!raw_failed_within(r, 3000))
		fail_msg("the server did not close the connection within 3 s");
	assert_true(msrv_now_ms() - t0 < 3000);
	assert_int_equal(fx_conn_state(r->conn), FX_CONN_ERROR);
}

static void raw_close(struct raw *r)
{
	fx_conn_close(r->conn);
	for (int i = 0; i < 5; i++) {
		struct fx_wc wc[8];

		if (fx_poll(r->ctx, wc, 8, 0) <= 0)
			break;
	}
	fx_dereg_mr(r->mr);
	assert_int_equal(fx_pd_free(r->pd), 0);
	fx_ctx_destroy(r->ctx);
}

static uint64_t stat_now(const char *name)
{
	struct fx_ctx *ctx = msrv_ctx();
	struct pool_client *c;
	struct ferry_err err = { 0 };
	uint64_t v;

	if (msrv_connect(&srv, ctx, "auditor", NULL, &c, &err))
		fail_msg("connect: %s", err.msg);
	v = msrv_client_stat(c, name);
	pool_client_close(c);
	fx_ctx_destroy(ctx);
	return v;
}

/* ------------------------------------------------------------ tests */

static void test_wrong_secret_is_refused(void **state)
{
	struct fx_ctx *ctx = msrv_ctx();
	struct pool_client *c = NULL;
	struct ferry_secret wrong;
	struct ferry_err err = { 0 };
	uint64_t failures = stat_now("auth_failures");

	(void)state;
	assert_int_equal(ferry_secret_from_bytes("this is not the secret the server has!!", 39, &wrong, NULL), 0);
	int rc = msrv_connect(&srv, ctx, "intruder", &wrong, &c, &err);

	assert_int_equal(rc, -EACCES);
	assert_null(c);
	if (!strstr(err.msg, "authentication failed"))
		fail_msg("unexpected error: %s", err.msg);
	fx_ctx_destroy(ctx);

	assert_int_equal(stat_now("auth_failures"), failures + 1);
	assert_int_equal(stat_now("bytes_allocated"), 0);
	assert_int_equal(stat_now("extents"), 0);
	assert_true(msrv_log_contains(&srv, "refused"));
	assert_true(msrv_log_contains(&srv, "name intruder"));
}

static void test_alloc_before_auth_gets_no_extent(void **state)
{
	struct raw r;
	struct ferry_page_msg m;

	(void)state;
	raw_open(&r, srv.port);
	raw_send(&r, ferry_page_encode_alloc(7, 1 << 20, 0, r.buf[3], FERRY_PAGE_CTRL_MAX));
	assert_true(raw_recv(&r, &m));
	assert_int_equal(m.hdr.type, FERRY_PAGE_ERROR);
	assert_int_equal(m.hdr.request_id, 7);
	assert_true(m.u.error.code == FERRY_E_NOT_AUTHENTICATED || m.u.error.code == FERRY_E_UNEXPECTED);
	raw_expect_closed(&r);
	raw_close(&r);
	assert_int_equal(stat_now("extents"), 0);
	assert_int_equal(stat_now("allocs"), 0);

	/* STATS and FREE before authentication are refused the same way. */
	raw_open(&r, srv.port);
	raw_send(&r, ferry_page_encode_stats(8, r.buf[3], FERRY_PAGE_CTRL_MAX));
	assert_true(raw_recv(&r, &m));
	assert_int_equal(m.hdr.type, FERRY_PAGE_ERROR);
	assert_int_equal(m.u.error.code, FERRY_E_NOT_AUTHENTICATED);
	raw_expect_closed(&r);
	raw_close(&r);
}

static void test_alloc_after_hello_but_before_auth(void **state)
{
	struct raw r;
	struct ferry_page_msg m;

	(void)state;
	raw_open(&r, srv.port);
	raw_send(&r, ferry_page_encode_hello(1, "sneaky", 1, 1, r.buf[3], FERRY_PAGE_CTRL_MAX));
	assert_true(raw_recv(&r, &m));
	assert_int_equal(m.hdr.type, FERRY_PAGE_CHALLENGE);
	raw_send(&r, ferry_page_encode_alloc(2, 4096, 0, r.buf[3], FERRY_PAGE_CTRL_MAX));
	assert_true(raw_recv(&r, &m));
	assert_int_equal(m.hdr.type, FERRY_PAGE_ERROR);
	assert_int_equal(m.u.error.code, FERRY_E_NOT_AUTHENTICATED);
	raw_expect_closed(&r);
	raw_close(&r);
}

static void test_auth_before_hello_is_unexpected(void **state)
{
	uint8_t nonce[FERRY_PAGE_NONCE_LEN] = { 1 }, mac[FERRY_PAGE_MAC_LEN] = { 2 };
	struct raw r;
	struct ferry_page_msg m;

	(void)state;
	raw_open(&r, srv.port);
	raw_send(&r, ferry_page_encode_auth(3, nonce, mac, r.buf[3], FERRY_PAGE_CTRL_MAX));
	assert_true(raw_recv(&r, &m));
	assert_int_equal(m.hdr.type, FERRY_PAGE_ERROR);
	assert_int_equal(m.u.error.code, FERRY_E_UNEXPECTED);
	raw_expect_closed(&r);
	raw_close(&r);
}

static void test_unsupported_version_is_refused(void **state)
{
	struct raw r;
	struct ferry_page_msg m;

	(void)state;
	raw_open(&r, srv.port);
	raw_send(&r, ferry_page_encode_hello(4, "future", 2, 3, r.buf[3], FERRY_PAGE_CTRL_MAX));
	assert_true(raw_recv(&r, &m));
	assert_int_equal(m.hdr.type, FERRY_PAGE_ERROR);
	assert_int_equal(m.u.error.code, FERRY_E_VERSION);
	raw_expect_closed(&r);
	raw_close(&r);
}

static void test_busy_beyond_max_clients(void **state)
{
	static const struct msrv_opts opts = { .max_clients = 1 };
	struct msrv one;
	struct fx_ctx *ctx = msrv_ctx();
	struct pool_client *a = NULL, *b = NULL;
	struct ferry_err err = { 0 };

	(void)state;
	msrv_start(&one, &opts);
	if (msrv_connect(&one, ctx, "first", NULL, &a, &err))
		fail_msg("first client: %s", err.msg);
	assert_int_equal(msrv_connect(&one, ctx, "second", NULL, &b, &err), -EBUSY);
	assert_null(b);
	if (!strstr(err.msg, "busy"))
		fail_msg("unexpected error: %s", err.msg);
	assert_int_equal(msrv_client_stat(a, "clients_refused"), 1);
	assert_int_equal(msrv_client_stat(a, "clients_connected"), 1);
	pool_client_close(a);
	/* The slot is free again once the first client is gone (the server notices within a moment). */
	uint64_t deadline = msrv_now_ms() + 3000;
	int rc;

	while ((rc = msrv_connect(&one, ctx, "second", NULL, &b, &err)) == -EBUSY && msrv_now_ms() < deadline)
		usleep(20000);
	if (rc)
		fail_msg("second client after the first left: %s", err.msg);
	pool_client_close(b);
	fx_ctx_destroy(ctx);
	assert_int_equal(msrv_stop(&one, 5000), 0);
	msrv_cleanup(&one);
}

/* A connection that never authenticates must not hold a client slot for ever. */
static void test_silent_connection_is_dropped(void **state)
{
	static const struct msrv_opts opts = { .max_clients = 1 };
	struct msrv one;
	struct fx_ctx *ctx = msrv_ctx();
	struct pool_client *c = NULL;
	struct ferry_err err = { 0 };
	struct sockaddr_in a = { .sin_family = AF_INET };
	int fd;

	(void)state;
	msrv_start(&one, &opts);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	a.sin_port = htons(one.port);
	inet_pton(AF_INET, msrv_host(), &a.sin_addr);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	/* Wait until the server has accepted it, then the one slot is taken. */
	uint64_t t0 = msrv_now_ms();

	while (!msrv_log_contains(&one, "client 1 accepted") && msrv_now_ms() - t0 < 3000)
		usleep(5000);
	assert_int_equal(msrv_connect(&one, ctx, "patient", NULL, &c, &err), -EBUSY);

	/* The server hangs up on the silent one after its authentication timeout (10 s). */
	struct pollfd p = { fd, POLLIN, 0 };
	char byte;

	assert_int_equal(poll(&p, 1, 13000), 1);
	assert_true(recv(fd, &byte, 1, 0) <= 0);
	print_message("silent connection dropped after %llu ms\n", (unsigned long long)(msrv_now_ms() - t0));
	close(fd);
	assert_true(msrv_log_contains(&one, "no authentication within 10 s"));

	uint64_t deadline = msrv_now_ms() + 3000;
	int rc;

	while ((rc = msrv_connect(&one, ctx, "patient", NULL, &c, &err)) == -EBUSY && msrv_now_ms() < deadline)
		usleep(20000);
	if (rc)
		fail_msg("connect after the silent client was dropped: %s", err.msg);
	pool_client_close(c);
	fx_ctx_destroy(ctx);
	assert_int_equal(msrv_stop(&one, 5000), 0);
	msrv_cleanup(&one);
}

/* ------------------------------------------------------------ a server that cannot prove itself */

struct fake {
	_Atomic int port;
	_Atomic int done;
	int saw_auth;
};

static void *fake_server(void *arg)
{
	struct fake *f = arg;
	struct fx_ctx *ctx = NULL;
	struct fx_listener *l = NULL;
	struct fx_pd *pd = NULL;
	struct fx_mr *mr = NULL;
	struct fx_conn *conn = NULL;
	static uint8_t buf[3][FERRY_PAGE_CTRL_MAX];
	uint64_t deadline = msrv_now_ms() + 5000;

	if (fx_ctx_create(msrv_transport(), NULL, &ctx, NULL) || fx_listen(ctx, msrv_host(), 0, &l, NULL) ||
	    fx_pd_alloc(ctx, &pd, NULL) || fx_reg_mr(pd, buf, sizeof(buf), FX_ACCESS_LOCAL_WRITE, &mr, NULL)) {
		f->port = -1;
		goto out;
	}
	f->port = fx_listener_port(l);
	while (msrv_now_ms() < deadline && fx_accept(l, pd, NULL, &conn, NULL, 0, NULL) != 0) {
		struct fx_wc wc;

		fx_poll(ctx, &wc, 1, 5);
	}
	if (!conn)
		goto out;
	for (uint64_t i = 0; i < 2; i++) {
		struct fx_sge sge = { buf[i], FERRY_PAGE_CTRL_MAX, mr->lkey };
		struct fx_recv_wr wr = { i, &sge, 1 };

		fx_post_recv(conn, &wr, 1, NULL);
	}
	while (msrv_now_ms() < deadline && !f->done) {
		struct ferry_page_msg m;
		struct fx_wc wc;
		int len = -1;

		if (fx_poll(ctx, &wc, 1, 10) <= 0 || wc.opcode != FX_WC_RECV)
			continue;
		if (wc.status != FX_WC_SUCCESS)
			break;   /* the client hung up */
		if (ferry_page_decode(buf[wc.wr_id], wc.byte_len, &m) != FERRY_E_OK)
			break;
		if (m.hdr.type == FERRY_PAGE_HELLO) {
			uint8_t nonce[FERRY_PAGE_NONCE_LEN];

			ferry_auth_nonce(nonce);
			len = ferry_page_encode_challenge(m.hdr.request_id, 1, nonce, buf[2], sizeof(buf[2]));
		} else if (m.hdr.type == FERRY_PAGE_AUTH) {
			/* Accept anything and answer with a proof made without the secret. */
			struct ferry_page_auth_ok ok = { .session_id = 1, .quota_bytes = 1 << 30, .max_data = 1 << 20 };

			f->saw_auth = 1;
			ferry_auth_nonce(ok.mac);
			len = ferry_page_encode_auth_ok(m.hdr.request_id, &ok, buf[2], sizeof(buf[2]));
		}
		if (len > 0) {
			struct fx_sge sge = { buf[2], (uint32_t)len, mr->lkey };
			struct fx_send_wr wr = { .wr_id = 9, .opcode = FX_OP_SEND, .sg_list = &sge, .num_sge = 1 };

			fx_post_send(conn, &wr, 1, NULL);
		}
		struct fx_sge sge = { buf[wc.wr_id], FERRY_PAGE_CTRL_MAX, mr->lkey };
		struct fx_recv_wr rwr = { wc.wr_id, &sge, 1 };

		fx_post_recv(conn, &rwr, 1, NULL);
	}
out:
	if (conn) {
		struct fx_wc wc[8];

		fx_conn_close(conn);
		fx_poll(ctx, wc, 8, 0);
	}
	fx_dereg_mr(mr);
	fx_pd_free(pd);
	fx_listener_close(l);
	fx_ctx_destroy(ctx);
	return NULL;
}

static void test_server_proof_is_checked(void **state)
{
	struct fake f = { 0 };
	pthread_t th;
	struct fx_ctx *ctx = msrv_ctx();
	struct pool_client *c = NULL;
	struct ferry_err err = { 0 };
	struct pool_client_opts o = { .host = msrv_host(), .name = "trusting", .secret = &srv.key, .timeout_ms = 3000 };

	(void)state;
	assert_int_equal(pthread_create(&th, NULL, fake_server, &f), 0);
	while (f.port == 0)
		usleep(1000);
	assert_true(f.port > 0);
	o.port = (uint16_t)f.port;
	int rc = pool_client_connect(ctx, &o, &c, &err);

	f.done = 1;
	pthread_join(th, NULL);
	fx_ctx_destroy(ctx);
	assert_int_equal(rc, -EACCES);
	assert_null(c);
	assert_true(f.saw_auth);
	if (!strstr(err.msg, "authentication failed: server proof invalid"))
		fail_msg("unexpected error: %s", err.msg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wrong_secret_is_refused),
		cmocka_unit_test(test_alloc_before_auth_gets_no_extent),
		cmocka_unit_test(test_alloc_after_hello_but_before_auth),
		cmocka_unit_test(test_auth_before_hello_is_unexpected),
		cmocka_unit_test(test_unsupported_version_is_refused),
		cmocka_unit_test(test_busy_beyond_max_clients),
		cmocka_unit_test(test_server_proof_is_checked),
		/* Last: a plain TCP socket is the silent peer, so it runs over TCP only. */
		cmocka_unit_test(test_silent_connection_is_dropped),
	};
	size_t n = sizeof(tests) / sizeof(tests[0]);

	if (msrv_transport() != FX_KIND_TCP)
		n--;
	return _cmocka_run_group_tests("it_memsrv_auth", tests, n, group_setup, group_teardown);
}
