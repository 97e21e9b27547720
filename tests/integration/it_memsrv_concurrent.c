/*
 * Integration: four clients, each on its own thread with its own transport
 * context, write, rewrite and read back their pages on one real ferry-memsrv
 * and check every byte; afterwards the server's STATS must show every byte
 * returned to the pool.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memsrv_harness.h"

#define NCLIENTS 4
#define NEXT 3                       /* extents per client */
#define EXT_BYTES (4u << 20)
#define PAGE 4096u
#define PAGES_PER_EXT (EXT_BYTES / PAGE)
#define NPAGES (NEXT * PAGES_PER_EXT)
#define WORDS (PAGE / 8)

struct worker {
	int id;
	const struct msrv *srv;
	int ok;
	char msg[512];
	uint64_t written, read;
};

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Content of (client, page, version): distinct in every word, so shifted or mixed-up data shows. */
static void fill_page(uint8_t *dst, int client, uint32_t page, uint32_t version)
{
	uint64_t stamp = mix(((uint64_t)client << 48) ^ ((uint64_t)page << 16) ^ version);
	uint64_t *w = (uint64_t *)(void *)dst;

	for (unsigned i = 0; i < WORDS; i++)
		w[i] = stamp ^ (i * 0x9e3779b97f4a7c15ull);
}

static int check_page(const uint8_t *got, int client, uint32_t page, uint32_t version)
{
	uint64_t want[WORDS];

	fill_page((uint8_t *)want, client, page, version);
	return memcmp(got, want, PAGE);
}

#define FAIL(...) do { snprintf(w->msg, sizeof(w->msg), __VA_ARGS__); goto out; } while (0)

/*
 * Post @n requests keeping at most @window in flight, and reap them all with
 * pool_client_poll (in posting order, all successful). With @stats_at >= 0 a
 * STATS call is made once that many are posted: completions that arrive
 * during it must be kept for pool_client_poll, not lost.
 */
static int run_wrs(struct pool_client *c, const struct fx_send_wr *wrs, int n, int window, int stats_at,
		   char *msg, size_t msg_len)
{
	struct fx_conn *conn = pool_client_conn(c);
	int posted = 0, done = 0;

	while (done < n) {
		while (posted < n && posted - done < window) {
			int perr = 0;

			if (fx_post_send(conn, &wrs[posted], 1, &perr) != 1) {
				if (perr == -EAGAIN)
					break;
				snprintf(msg, msg_len, "post %d: %s", posted, strerror(-perr));
				return -1;
			}
			posted++;
			if (posted == stats_at) {
				struct ferry_page_stats_ok st;
				struct ferry_err err = { 0 };

				if (pool_client_stats(c, &st, &err)) {
					snprintf(msg, msg_len, "STATS with requests in flight: %s", err.msg);
					return -1;
				}
			}
		}
		struct fx_wc wc[16];
		int got = pool_client_poll(c, wc, 16, 5000);

		if (got <= 0) {
			snprintf(msg, msg_len, "poll: %s after %d of %d completions",
				 got < 0 ? strerror(-got) : "timeout", done, n);
			return -1;
		}
		for (int i = 0; i < got; i++, done++) {
			if (wc[i].status != FX_WC_SUCCESS) {
				snprintf(msg, msg_len, "request %llu failed: %s (%s)", (unsigned long long)wc[i].wr_id,
					 fx_wc_status_str(wc[i].status), fx_conn_error(conn));
				return -1;
			}
			if (wc[i].wr_id != wrs[done].wr_id) {
				snprintf(msg, msg_len, "completion %d is for request %llu: out of order or lost", done,
					 (unsigned long long)wc[i].wr_id);
				return -1;
			}
		}
	}
	return 0;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct fx_ctx *ctx = NULL;
	struct pool_client *c = NULL;
	struct pool_extent ext[NEXT];
	int next = 0;
	struct fx_mr *mr = NULL;
	uint8_t *buf = NULL;
	struct fx_send_wr *wrs = NULL;
	struct fx_sge *sges = NULL;
	uint32_t version[NPAGES];
	struct ferry_err err = { 0 };
	uint64_t rng = 0x1234567ull + (uint64_t)w->id;
	char name[32];
	int n;

	snprintf(name, sizeof(name), "client-%d", w->id);
	if (fx_ctx_create(msrv_transport(), NULL, &ctx, &err))
		FAIL("fx_ctx_create: %s", err.msg);
	if (msrv_connect(w->srv, ctx, name, NULL, &c, &err))
		FAIL("connect: %s", err.msg);
	for (next = 0; next < NEXT; next++)
		if (pool_client_alloc(c, EXT_BYTES, &ext[next], &err))
			FAIL("alloc %d: %s", next, err.msg);
	buf = aligned_alloc(PAGE, (size_t)NPAGES * PAGE);
	wrs = calloc(NPAGES, sizeof(*wrs));
	sges = calloc(NPAGES, sizeof(*sges));
	if (!buf || !wrs || !sges)
		FAIL("out of memory");
	if (fx_reg_mr(pool_client_pd(c), buf, (size_t)NPAGES * PAGE, FX_ACCESS_LOCAL_WRITE, &mr, &err))
		FAIL("register the local buffer: %s", err.msg);

	/* 1. Every page at version 1, 16 pages per WRITE. */
	for (uint32_t p = 0; p < NPAGES; p++) {
		version[p] = 1;
		fill_page(buf + (size_t)p * PAGE, w->id, p, 1);
	}
	n = 0;
	for (uint32_t p = 0; p < NPAGES; p += 16, n++) {
		const struct pool_extent *e = &ext[p / PAGES_PER_EXT];

		sges[n] = (struct fx_sge){ buf + (size_t)p * PAGE, 16 * PAGE, mr->lkey };
		wrs[n] = (struct fx_send_wr){ .wr_id = (uint64_t)n, .opcode = FX_OP_WRITE, .flags = FX_WR_SIGNALED,
					      .sg_list = &sges[n], .num_sge = 1,
					      .remote_addr = e->base + (uint64_t)(p % PAGES_PER_EXT) * PAGE,
					      .rkey = e->rkey };
	}
	if (run_wrs(c, wrs, n, 32, -1, w->msg, sizeof(w->msg)))
		goto out;
	w->written += (uint64_t)NPAGES * PAGE;

	/* 2. Rewrite a random quarter at version 2, one page per WRITE, with a STATS call in the middle. */
	n = 0;
	for (uint32_t p = 0; p < NPAGES; p++) {
		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		if ((rng >> 33) % 4)
			continue;
		const struct pool_extent *e = &ext[p / PAGES_PER_EXT];

		version[p] = 2;
		fill_page(buf + (size_t)p * PAGE, w->id, p, 2);
		sges[n] = (struct fx_sge){ buf + (size_t)p * PAGE, PAGE, mr->lkey };
		wrs[n] = (struct fx_send_wr){ .wr_id = 100000 + (uint64_t)n, .opcode = FX_OP_WRITE,
					      .flags = FX_WR_SIGNALED, .sg_list = &sges[n], .num_sge = 1,
					      .remote_addr = e->base + (uint64_t)(p % PAGES_PER_EXT) * PAGE,
					      .rkey = e->rkey };
		n++;
	}
	if (n < 64)
		FAIL("only %d pages chosen for rewriting", n);
	if (run_wrs(c, wrs, n, 48, 40, w->msg, sizeof(w->msg)))
		goto out;
	w->written += (uint64_t)n * PAGE;

	/* 3. Forget everything locally, read it all back (32 pages per READ), check every byte. */
	memset(buf, 0xa5, (size_t)NPAGES * PAGE);
	n = 0;
	for (uint32_t p = 0; p < NPAGES; p += 32, n++) {
		const struct pool_extent *e = &ext[p / PAGES_PER_EXT];

		sges[n] = (struct fx_sge){ buf + (size_t)p * PAGE, 32 * PAGE, mr->lkey };
		wrs[n] = (struct fx_send_wr){ .wr_id = 200000 + (uint64_t)n, .opcode = FX_OP_READ,
					      .flags = FX_WR_SIGNALED, .sg_list = &sges[n], .num_sge = 1,
					      .remote_addr = e->base + (uint64_t)(p % PAGES_PER_EXT) * PAGE,
					      .rkey = e->rkey };
	}
	if (run_wrs(c, wrs, n, 16, 8, w->msg, sizeof(w->msg)))
		goto out;
	w->read += (uint64_t)NPAGES * PAGE;
	for (uint32_t p = 0; p < NPAGES; p++)
		if (check_page(buf + (size_t)p * PAGE, w->id, p, version[p]))
			FAIL("page %u (version %u) read back wrong", p, version[p]);

	/*
	 * 4. Scatter: one READ of two adjacent remote pages (second extent, pages
	 * 500 and 501) into two separate local pages, after a plain one-page READ.
	 */
	memset(buf, 0, 4 * PAGE);
	{
		struct fx_sge sg[3] = {
			{ buf, PAGE, mr->lkey },
			{ buf + 3 * PAGE, PAGE, mr->lkey },   /* 501 lands after a gap... */
			{ buf + 2 * PAGE, PAGE, mr->lkey },   /* ...and before it: order is the list's */
		};
		struct fx_send_wr r[2] = {
			{ .wr_id = 300000, .opcode = FX_OP_READ, .flags = FX_WR_SIGNALED, .sg_list = &sg[0],
			  .num_sge = 1, .remote_addr = ext[1].base + 3ull * PAGE, .rkey = ext[1].rkey },
			{ .wr_id = 300001, .opcode = FX_OP_READ, .flags = FX_WR_SIGNALED, .sg_list = &sg[1],
			  .num_sge = 2, .remote_addr = ext[1].base + 500ull * PAGE, .rkey = ext[1].rkey },
		};
		if (run_wrs(c, r, 2, 2, -1, w->msg, sizeof(w->msg)))
			goto out;
		if (check_page(buf, w->id, PAGES_PER_EXT + 3, version[PAGES_PER_EXT + 3]) ||
		    check_page(buf + 3 * PAGE, w->id, PAGES_PER_EXT + 500, version[PAGES_PER_EXT + 500]) ||
		    check_page(buf + 2 * PAGE, w->id, PAGES_PER_EXT + 501, version[PAGES_PER_EXT + 501]))
			FAIL("scattered READ returned wrong data");
	}

	/* 5. Give everything back. */
	while (next > 0) {
		next--;
		if (pool_client_free(c, ext[next].id, &err))
			FAIL("free extent %u: %s", ext[next].id, err.msg);
	}
	w->ok = 1;
out:
	if (mr)
		fx_dereg_mr(mr);
	pool_client_close(c);
	fx_ctx_destroy(ctx);
	free(buf);
	free(wrs);
	free(sges);
	return NULL;
}

static int setup(void **state)
{
	static struct msrv srv;
	static const struct msrv_opts opts = { .pool_size = "64M" };

	msrv_start(&srv, &opts);
	*state = &srv;
	return 0;
}

static int teardown(void **state)
{
	struct msrv *srv = *state;
	int status = msrv_stop(srv, 5000);

	if (status != 0) {
		msrv_dump_log(srv);
		msrv_cleanup(srv);
		fail_msg("ferry-memsrv did not exit cleanly on SIGTERM (status %d)", status);
	}
	msrv_cleanup(srv);
	return 0;
}

static void test_concurrent_clients_verify_every_byte(void **state)
{
	struct msrv *srv = *state;
	struct worker w[NCLIENTS];
	pthread_t th[NCLIENTS];
	uint64_t written = 0, read = 0;

	for (int i = 0; i < NCLIENTS; i++) {
		w[i] = (struct worker){ .id = i + 1, .srv = srv };
		assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < NCLIENTS; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < NCLIENTS; i++) {
		if (!w[i].ok) {
			msrv_dump_log(srv);
			fail_msg("client %d: %s", w[i].id, w[i].msg);
		}
		written += w[i].written;
		read += w[i].read;
	}

	struct fx_ctx *ctx = msrv_ctx();
	struct pool_client *c;
	struct ferry_page_stats_ok st;
	struct ferry_err err = { 0 };

	if (msrv_connect(srv, ctx, "auditor", NULL, &c, &err))
		fail_msg("connect: %s", err.msg);
	assert_int_equal(pool_client_stats(c, &st, &err), 0);
	assert_int_equal(msrv_stat(&st, "bytes_allocated"), 0);
	assert_int_equal(msrv_stat(&st, "extents"), 0);
	assert_int_equal(msrv_stat(&st, "pool_bytes"), 64u << 20);
	assert_int_equal(msrv_stat(&st, "bytes_free"), 64u << 20);
	assert_int_equal(msrv_stat(&st, "allocs"), NCLIENTS * NEXT);
	assert_int_equal(msrv_stat(&st, "frees"), NCLIENTS * NEXT);
	assert_int_equal(msrv_stat(&st, "clients_connected"), 1);
	assert_int_equal(msrv_stat(&st, "clients_total"), NCLIENTS + 1);
	if (msrv_transport() == FX_KIND_TCP) {   /* over RDMA the NIC serves them, uncounted */
		assert_true(msrv_stat(&st, "bytes_served_written") >= written);
		assert_true(msrv_stat(&st, "bytes_served_read") >= read);
	}
	assert_int_equal(msrv_stat(&st, "remote_access_errors"), 0);
	assert_int_equal(msrv_stat(&st, "auth_failures"), 0);
	pool_client_close(c);
	fx_ctx_destroy(ctx);
	assert_true(msrv_log_contains(srv, "authenticated"));
	assert_true(msrv_log_contains(srv, "name client-3"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_concurrent_clients_verify_every_byte, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
