/*
 * Integration: malformed input from a raw TCP socket. Each kind of bad input
 * ends that connection; the server survives, serves a normal client
 * afterwards, and counts what it saw.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "memsrv_harness.h"
#include "proto/wire.h"

static struct msrv srv;

static int tcp_connect(uint16_t port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

static void send_all(int fd, const void *p, size_t len)
{
	/* The server may already have closed on an earlier part: EPIPE/ECONNRESET are fine. */
	(void)!send(fd, p, len, MSG_NOSIGNAL);
}

/*
 * Wait (at most 3 s) until the server closes the connection; return what it
 * sent before closing in @out (at most @cap bytes).
 */
static size_t expect_closed(int fd, uint8_t *out, size_t cap)
{
	uint64_t deadline = msrv_now_ms() + 3000;
	size_t got = 0;

	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };
		uint64_t now = msrv_now_ms();

		if (now >= deadline)
			fail_msg("server did not close the connection within 3 s");
		if (poll(&p, 1, (int)(deadline - now)) <= 0)
			continue;
		uint8_t tmp[512];
		ssize_t n = recv(fd, tmp, sizeof(tmp), 0);

		if (n == 0 || (n < 0 && errno == ECONNRESET))
			break;
		assert_true(n > 0);
		if (got < cap) {
			size_t k = (size_t)n < cap - got ? (size_t)n : cap - got;

			memcpy(out + got, tmp, k);
			got += k;
		}
	}
	close(fd);
	return got;
}

static uint64_t malformed_now(void)
{
	struct fx_ctx *ctx = msrv_ctx();
	struct pool_client *c;
	struct ferry_err err = { 0 };
	uint64_t v;

	if (msrv_connect(&srv, ctx, "auditor", NULL, &c, &err))
		fail_msg("connect: %s", err.msg);
	v = msrv_client_stat(c, "malformed");
	pool_client_close(c);
	fx_ctx_destroy(ctx);
	return v;
}

static void test_malformed_inputs_close_the_connection(void **state)
{
	uint8_t msg[256], reply[512];
	uint64_t before = malformed_now();
	int fd, len;

	(void)state;
	/* 1. Garbage. */
	fd = tcp_connect(srv.port);
	for (size_t i = 0; i < 200; i++)
		msg[i] = (uint8_t)(i * 37 + 11);
	send_all(fd, msg, 200);
	expect_closed(fd, reply, sizeof(reply));

	/* 2. A header whose payload length is beyond any protocol limit. */
	fd = tcp_connect(srv.port);
	len = ferry_page_encode_stats(1, msg, sizeof(msg));
	wire_put_u32(msg + 16, FERRY_PAGE_MAX_PAYLOAD + 1);
	send_all(fd, msg, (size_t)len);
	expect_closed(fd, reply, sizeof(reply));

	/* 3. A wrong protocol version. */
	fd = tcp_connect(srv.port);
	len = ferry_page_encode_hello(1, "oldtimer", 1, 1, msg, sizeof(msg));
	msg[4] = 9;
	send_all(fd, msg, (size_t)len);
	expect_closed(fd, reply, sizeof(reply));

	/*
	 * 4. A frame whose length is right for the stream but lies about its body:
	 * HELLO's payload is 3 bytes longer than its name says. The transport
	 * delivers it; the server rejects it, says why, and closes.
	 */
	fd = tcp_connect(srv.port);
	len = ferry_page_encode_hello(5, "liar", 1, 1, msg, sizeof(msg));
	memcpy(msg + len, "xyz", 3);
	wire_put_u32(msg + 16, (uint32_t)(len + 3 - FERRY_PAGE_HDR_LEN));
	send_all(fd, msg, (size_t)len + 3);
	size_t n = expect_closed(fd, reply, sizeof(reply));
	struct ferry_page_msg m;

	if (n == 0)
		fail_msg("no ERROR before the close");
	assert_int_equal(ferry_page_decode(reply, n, &m), FERRY_E_OK);
	assert_int_equal(m.hdr.type, FERRY_PAGE_ERROR);
	assert_int_equal(m.hdr.request_id, 5);
	assert_int_equal(m.u.error.code, FERRY_E_MALFORMED);
	printf("server said: %s\n", m.u.error.msg);

	/* 5. A header promising more payload than ever comes: our side ends mid-message. */
	fd = tcp_connect(srv.port);
	len = ferry_page_encode_hello(6, "quitter", 1, 1, msg, sizeof(msg));
	wire_put_u32(msg + 16, 60);
	send_all(fd, msg, (size_t)len);
	/* The FIN follows at once, often in the same segment as the data. */
	shutdown(fd, SHUT_WR);
	expect_closed(fd, reply, sizeof(reply));

	/* 6. A reserved header field that is not zero. */
	fd = tcp_connect(srv.port);
	len = ferry_page_encode_stats(1, msg, sizeof(msg));
	msg[20] = 1;
	send_all(fd, msg, (size_t)len);
	expect_closed(fd, reply, sizeof(reply));

	/* The server is alive, serves a normal client, and counted the bad input. */
	struct fx_ctx *ctx = msrv_ctx();
	struct pool_client *c;
	struct pool_extent e;
	struct ferry_err err = { 0 };

	if (msrv_connect(&srv, ctx, "normal", NULL, &c, &err))
		fail_msg("connect after the malformed input: %s", err.msg);
	assert_int_equal(pool_client_alloc(c, 1 << 20, &e, &err), 0);
	assert_int_equal(pool_client_free(c, e.id, &err), 0);
	uint64_t after = msrv_client_stat(c, "malformed");

	pool_client_close(c);
	fx_ctx_destroy(ctx);
	print_message("malformed counter %llu -> %llu\n", (unsigned long long)before, (unsigned long long)after);
	assert_true(after >= before + 5);
}

/* Read one whole message from a blocking socket into @out (cap >= FERRY_PAGE_CTRL_MAX). */
static size_t read_msg(int fd, uint8_t *out)
{
	size_t got = 0, need = FERRY_PAGE_HDR_LEN;

	while (got < need) {
		ssize_t n = recv(fd, out + got, need - got, 0);

		assert_true(n > 0);
		got += (size_t)n;
		if (got == FERRY_PAGE_HDR_LEN) {
			need += wire_get_u32(out + 16);
			assert_true(need <= FERRY_PAGE_CTRL_MAX);
		}
	}
	return got;
}

/*
 * A raw client that authenticates, then sends STATS after STATS without
 * waiting for replies. Its credit is SESS_SLOTS (8) requests in flight: the
 * server answers those, the next request gets ERROR BUSY and the one after
 * that closes the session. Another client is served meanwhile, and every
 * shared receive buffer is back in the SRQ afterwards.
 */
static void test_flooding_client_is_refused_then_closed(void **state)
{
	uint8_t msg[FERRY_PAGE_CTRL_MAX], cn[FERRY_PAGE_NONCE_LEN], mac[FERRY_PAGE_MAC_LEN];
	struct ferry_page_msg m;
	int fd, len;

	(void)state;
	fd = tcp_connect(srv.port);
	len = ferry_page_encode_hello(1, "flooder", 1, 1, msg, sizeof(msg));
	send_all(fd, msg, (size_t)len);
	assert_int_equal(ferry_page_decode(msg, read_msg(fd, msg), &m), FERRY_E_OK);
	assert_int_equal(m.hdr.type, FERRY_PAGE_CHALLENGE);
	ferry_auth_nonce(cn);
	ferry_auth_mac(&srv.key, "ferry-page-c", m.u.challenge.nonce, cn, "flooder", 7, mac);
	len = ferry_page_encode_auth(2, cn, mac, msg, sizeof(msg));
	send_all(fd, msg, (size_t)len);
	assert_int_equal(ferry_page_decode(msg, read_msg(fd, msg), &m), FERRY_E_OK);
	assert_int_equal(m.hdr.type, FERRY_PAGE_AUTH_OK);

	/*
	 * 64 requests in one write: they arrive together, so the server sees them
	 * in one round, before any of its replies has completed.
	 */
	static uint8_t flood[64 * FERRY_PAGE_HDR_LEN];

	for (int i = 0; i < 64; i++)
		assert_int_equal(ferry_page_encode_stats(3u + (uint64_t)i, flood + i * FERRY_PAGE_HDR_LEN,
							 FERRY_PAGE_HDR_LEN), FERRY_PAGE_HDR_LEN);
	assert_int_equal(send(fd, flood, sizeof(flood), MSG_NOSIGNAL), (ssize_t)sizeof(flood));
	/* Meanwhile another client is served. */
	(void)malformed_now();

	/* In what it was sent before the close: STATS_OK replies, then one ERROR BUSY. */
	uint64_t ok = 0, busy = 0;

	for (;;) {
		size_t got = 0, need = FERRY_PAGE_HDR_LEN;
		ssize_t n = 1;

		while (got < need && (n = recv(fd, msg + got, need - got, 0)) > 0) {
			got += (size_t)n;
			if (got == FERRY_PAGE_HDR_LEN)
				need += wire_get_u32(msg + 16);
		}
		if (got < need)
			break;   /* the server closed */
		assert_int_equal(ferry_page_decode(msg, got, &m), FERRY_E_OK);
		if (m.hdr.type == FERRY_PAGE_STATS_OK)
			ok++;
		else if (m.hdr.type == FERRY_PAGE_ERROR && m.u.error.code == FERRY_E_BUSY)
			busy++;
	}
	close(fd);
	print_message("flooder got %llu replies and %llu BUSY before the close\n", (unsigned long long)ok,
		      (unsigned long long)busy);
	assert_int_equal(ok, 8);
	assert_int_equal(busy, 1);

	struct fx_ctx *ctx = msrv_ctx();
	struct pool_client *c;
	struct ferry_err err = { 0 };

	if (msrv_connect(&srv, ctx, "after-flood", NULL, &c, &err))
		fail_msg("connect after the flood: %s", err.msg);
	assert_true(msrv_client_stat(c, "flood_refused") >= 1);
	assert_true(msrv_client_stat(c, "flood_closed") >= 1);
	/* Every shared receive buffer went back but the one our STATS is in while it is answered. */
	assert_int_equal(msrv_client_stat(c, "srq_posted"), msrv_client_stat(c, "srq_depth") - 1);
	pool_client_close(c);
	fx_ctx_destroy(ctx);
	assert_true(msrv_log_contains(&srv, "closed: more than 9 requests in flight"));
}

static int setup(void **state)
{
	(void)state;
	msrv_start(&srv, NULL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return msrv_finish(&srv);
}

int main(void)
{
	/* Raw TCP sockets / 127.0.0.1 expectations: TCP only, whatever FERRY_TEST_TRANSPORT says. */
	setenv("FERRY_TEST_TRANSPORT", "tcp", 1);
	setenv("FERRY_TEST_HOST", "127.0.0.1", 1);

	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_malformed_inputs_close_the_connection),
		cmocka_unit_test(test_flooding_client_is_refused_then_closed),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
