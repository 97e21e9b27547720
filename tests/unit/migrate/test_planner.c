/* The phase planner: hand-made traces whose confusion counts, rates and send
 * volumes are worked out by hand below; the online planner must agree with the
 * offline evaluator on the same periods; bad input is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "dataplane/migrate/planner.h"

enum { C = PLAN_CLEAN, R = PLAN_READ, W = PLAN_WRITE };

/* 40 pages in blocks of 16: blocks 0 and 1 have 16 pages (64 KiB), block 2 has 8 (32 KiB). */
#define NPAGES 40
#define KB 1024ull

static const uint8_t rows[4][3] = {
	{ R, C, W },   /* s0 */
	{ W, C, R },   /* s1 */
	{ R, W, W },   /* s2 */
	{ C, C, W },   /* s3 */
};

static void load(struct plan_trace *t)
{
	assert_int_equal(plan_trace_init(t, NPAGES, 16, NULL), 0);
	assert_int_equal(t->nblocks, 3);
	for (int s = 0; s < 4; s++)
		assert_int_equal(plan_trace_append(t, rows[s], NULL), 0);
	assert_int_equal(t->nsamples, 4);
	assert_int_equal(plan_trace_at(t, 2, 1), W);
}

/*
 * Window of 1 period: three windows are scored.
 *   w1: pred s0 [R C W], actual s1 [W C R] -> (R,W) (C,C) (W,R)
 *   w2: pred s1 [W C R], actual s2 [R W W] -> (W,R) (C,W) (R,W)
 *   w3: pred s2 [R W W], actual s3 [C C W] -> (R,C) (W,C) (W,W)
 * predicted clean 2, of which write 1:       A(w|c) = 1/2
 * predicted read 3 (the seed's case: read, then written), write 2: A(w|r) = 2/3
 * predicted write 4: clean 1, read 2:        A(c|w) = 1/4, A(r|w) = 2/4
 */
static void test_window1(void **state)
{
	struct plan_trace t;
	struct plan_rates r;
	struct plan_cost c;

	(void)state;
	load(&t);
	assert_int_equal(planner_eval_trace(&t, 1, &r, &c, NULL), 0);
	assert_int_equal(r.windows, 3);
	assert_int_equal(r.n_c, 2);
	assert_int_equal(r.n_r, 3);
	assert_int_equal(r.n_w, 4);
	assert_int_equal(r.confusion[R][W], 2);
	assert_int_equal(r.confusion[R][C], 1);
	assert_int_equal(r.confusion[C][W], 1);
	assert_int_equal(r.confusion[C][C], 1);
	assert_int_equal(r.confusion[W][R], 2);
	assert_int_equal(r.confusion[W][C], 1);
	assert_int_equal(r.confusion[W][W], 1);
	assert_float_equal(r.w_given_c, 0.5, 1e-12);
	assert_float_equal(r.w_given_r, 2.0 / 3.0, 1e-12);
	assert_float_equal(r.c_given_w, 0.25, 1e-12);
	assert_float_equal(r.r_given_w, 0.5, 1e-12);
	/*
	 * Bytes. Pre-copy pushes 160 KiB per window (480 KiB) and re-sends what was
	 * written: w1 block 0 (64), w2 blocks 1+2 (96), w3 block 2 (32) = 192 KiB.
	 * Planner: w1 pushes 0,1 (128) re-sends 0 (64), defers 2 (32, only read);
	 * w2 pushes 1,2 (96) re-sends both (96), defers 0 (64, only read);
	 * w3 pushes 0 (64) re-sends nothing, defers 1,2 (96; 1 stayed clean: 64).
	 */
	assert_int_equal(c.windows, 3);
	assert_int_equal(c.precopy_pushed_bytes, 480 * KB);
	assert_int_equal(c.precopy_resent_bytes, 192 * KB);
	assert_int_equal(c.planned_pushed_bytes, 288 * KB);
	assert_int_equal(c.planned_resent_bytes, 160 * KB);
	assert_int_equal(c.deferred_bytes, 192 * KB);
	assert_int_equal(c.deferred_unwritten_bytes, 160 * KB);
	plan_trace_fini(&t);
}

/*
 * Window of 2 periods: pred s0 [R C W], actual max(s1, s2) = [W W W]: one
 * window; s3 starts a window that never completes and is not scored.
 */
static void test_window2(void **state)
{
	struct plan_trace t;
	struct plan_rates r;
	struct plan_cost c;

	(void)state;
	load(&t);
	assert_int_equal(planner_eval_trace(&t, 2, &r, &c, NULL), 0);
	assert_int_equal(r.windows, 1);
	assert_int_equal(r.n_c, 1);
	assert_int_equal(r.n_r, 1);
	assert_int_equal(r.n_w, 1);
	assert_float_equal(r.w_given_c, 1.0, 1e-12);
	assert_float_equal(r.w_given_r, 1.0, 1e-12);
	assert_float_equal(r.c_given_w, 0.0, 1e-12);
	assert_float_equal(r.r_given_w, 0.0, 1e-12);
	assert_int_equal(c.precopy_resent_bytes, 160 * KB);
	assert_int_equal(c.planned_resent_bytes, 128 * KB);
	/* window 3: pred s0, actual max(s1..s3) = [W W W], one window, the same rates */
	assert_int_equal(planner_eval_trace(&t, 3, &r, NULL, NULL), 0);
	assert_int_equal(r.windows, 1);
	assert_float_equal(r.w_given_c, 1.0, 1e-12);
	/* window 4 > periods recorded - 1: nothing scored, every rate 0 with n 0 */
	assert_int_equal(planner_eval_trace(&t, 4, &r, NULL, NULL), 0);
	assert_int_equal(r.windows, 0);
	assert_int_equal(r.n_c + r.n_r + r.n_w, 0);
	assert_float_equal(r.w_given_c, 0.0, 1e-12);
	plan_trace_fini(&t);
}

/* Drive the online planner with page accesses that produce the same rows. */
static void note_row(struct planner *p, const uint8_t *row)
{
	for (int b = 0; b < 3; b++) {
		uint64_t page = (uint64_t)b * 16 + 5;

		if (row[b] == W) {
			/* a read before the write in the same period: write dominates */
			planner_note(p, page, PLAN_READ);
			planner_note(p, page + 1, PLAN_WRITE);
			planner_note(p, page + 2, PLAN_READ);
		} else if (row[b] == R) {
			planner_note(p, page, PLAN_READ);
		}
	}
	planner_sample_end(p);
}

static void test_online_matches_offline(void **state)
{
	struct plan_trace t, rec;
	struct plan_rates on, off;
	struct plan_cost con, coff;
	struct planner *p;

	(void)state;
	load(&t);
	p = planner_create(NPAGES, 16, 1, NULL);
	assert_non_null(p);
	assert_int_equal(planner_nblocks(p), 3);
	assert_int_equal(plan_trace_init(&rec, NPAGES, 16, NULL), 0);
	assert_int_equal(planner_record(p, &rec, NULL), 0);

	/* nothing seen yet: everything predicted clean, nothing deferred */
	assert_int_equal(planner_predict(p, 2), PLAN_CLEAN);
	assert_false(planner_defer(p, 39));

	note_row(p, rows[0]);
	/* window 1 predicts s0: block 2 (pages 32..39) is deferred, block 0 pushed */
	assert_int_equal(planner_predict(p, 0), PLAN_READ);
	assert_int_equal(planner_predict(p, 1), PLAN_CLEAN);
	assert_int_equal(planner_predict(p, 2), PLAN_WRITE);
	assert_true(planner_defer(p, 32));
	assert_true(planner_defer(p, 39));
	assert_false(planner_defer(p, 15));
	assert_false(planner_defer(p, 40));      /* out of range */
	assert_int_equal(planner_predict(p, 3), PLAN_CLEAN);

	planner_note(p, 1000, PLAN_WRITE);        /* out of range: ignored */
	planner_note(p, 0, (enum plan_access)7);  /* not a class: ignored */
	for (int s = 1; s < 4; s++) {
		note_row(p, rows[s]);
		if (s == 1)
			assert_int_equal(planner_current(p, 0), PLAN_CLEAN);  /* reset per period */
	}
	assert_int_equal(planner_samples(p), 4);
	assert_int_equal(planner_predict(p, 1), PLAN_CLEAN);  /* s3's block 1 */

	/* the recorded trace is the hand-made one */
	assert_false(planner_record_failed(p));
	assert_int_equal(rec.nsamples, 4);
	assert_memory_equal(rec.cls, t.cls, 4 * 3);

	planner_rates(p, &on);
	planner_cost(p, &con);
	assert_int_equal(planner_eval_trace(&t, 1, &off, &coff, NULL), 0);
	assert_memory_equal(on.confusion, off.confusion, sizeof(on.confusion));
	assert_float_equal(on.w_given_r, 2.0 / 3.0, 1e-12);
	assert_memory_equal(&con, &coff, sizeof(con));

	planner_destroy(p);
	plan_trace_fini(&rec);
	plan_trace_fini(&t);
}

/* A block read in every period but written in a window's middle periods: a
 * long window sees the write, so A(w|r) grows with the window (the seed's trend). */
static void test_trend(void **state)
{
	struct plan_trace t;
	struct plan_rates r1, r4;
	uint8_t row[1];

	(void)state;
	assert_int_equal(plan_trace_init(&t, 16, 16, NULL), 0);
	for (int s = 0; s <= 16; s++) {
		row[0] = (s % 4 == 2) ? W : R;   /* R R W R R R W R ... */
		assert_int_equal(plan_trace_append(&t, row, NULL), 0);
	}
	/* window 1: 16 windows; heads s0..s15: R at 12 of them; of those the next period
	 * is W when s % 4 == 1: 4 -> A(w|r) = 4/12; W heads (4) are followed by R: A(r|w) = 1 */
	assert_int_equal(planner_eval_trace(&t, 1, &r1, NULL, NULL), 0);
	assert_int_equal(r1.n_r, 12);
	assert_float_equal(r1.w_given_r, 4.0 / 12.0, 1e-12);
	assert_float_equal(r1.r_given_w, 1.0, 1e-12);
	/* window 4: heads s0, s4, s8, s12 (all R), every window holds a W: A(w|r) = 1 */
	assert_int_equal(planner_eval_trace(&t, 4, &r4, NULL, NULL), 0);
	assert_int_equal(r4.n_r, 4);
	assert_float_equal(r4.w_given_r, 1.0, 1e-12);
	plan_trace_fini(&t);
}

/*
 * History (the extension): one block, periods R W C W C C, window 1.
 * H = 1 (the seed): heads s0..s4 -> (R,W) (W,C) (C,W) (W,C) (C,C).
 * H = 2: head s0 sees {R} -> R; s1 {R,W} -> W; s2 {W,C} -> W; s3 {C,W} -> W; s4 {W,C} -> W:
 *        (R,W) (W,C) (W,W) (W,C) (W,C).
 * Pre-copy re-sends the 2 written windows (s1, s3); the seed planner re-sends 2
 * (it pushed both), H = 2 only 1 (it pushed s1's block, predicted read).
 */
static void test_history(void **state)
{
	static const uint8_t seq[6] = { R, W, C, W, C, C };
	struct plan_trace t;
	struct plan_rates r1, r2;
	struct plan_cost c1, c2;
	struct planner *p;

	(void)state;
	assert_int_equal(plan_trace_init(&t, 16, 16, NULL), 0);
	for (int s = 0; s < 6; s++)
		assert_int_equal(plan_trace_append(&t, &seq[s], NULL), 0);
	assert_int_equal(planner_eval_trace_history(&t, 1, 1, &r1, &c1, NULL), 0);
	assert_int_equal(r1.confusion[R][W], 1);
	assert_int_equal(r1.confusion[W][C], 2);
	assert_int_equal(r1.confusion[C][W], 1);
	assert_int_equal(r1.confusion[C][C], 1);
	assert_int_equal(c1.precopy_resent_bytes, 2 * 64 * KB);
	assert_int_equal(c1.planned_resent_bytes, 2 * 64 * KB);

	assert_int_equal(planner_eval_trace_history(&t, 1, 2, &r2, &c2, NULL), 0);
	assert_int_equal(r2.confusion[R][W], 1);
	assert_int_equal(r2.confusion[W][C], 3);
	assert_int_equal(r2.confusion[W][W], 1);
	assert_int_equal(r2.n_w, 4);
	assert_float_equal(r2.c_given_w, 0.75, 1e-12);
	assert_int_equal(c2.precopy_resent_bytes, 2 * 64 * KB);
	assert_int_equal(c2.planned_resent_bytes, 64 * KB);
	assert_int_equal(c2.deferred_unwritten_bytes, 3 * 64 * KB);

	/* the online planner with the same history agrees */
	p = planner_create(16, 16, 1, NULL);
	assert_non_null(p);
	assert_int_equal(planner_set_history(p, 0, NULL), -EINVAL);
	assert_int_equal(planner_set_history(p, 2, NULL), 0);
	for (int s = 0; s < 6; s++) {
		if (seq[s])
			planner_note(p, 3, (enum plan_access)seq[s]);
		planner_sample_end(p);
		if (s == 2)
			assert_int_equal(planner_predict(p, 0), PLAN_WRITE);   /* s1's write still counts */
	}
	planner_rates(p, &r1);
	assert_memory_equal(r1.confusion, r2.confusion, sizeof(r1.confusion));
	planner_destroy(p);
	plan_trace_fini(&t);
}

/* How long ago each block was last written, with a history and with the seed's predictor. */
static void test_write_age(void **state)
{
	struct planner *p = planner_create(NPAGES, 16, 1, NULL), *seed = planner_create(NPAGES, 16, 1, NULL);

	(void)state;
	assert_non_null(p);
	assert_non_null(seed);
	assert_int_equal(planner_set_history(p, 4, NULL), 0);
	/* block 0 written in period 0, block 2 in periods 0 and 2, block 1 only read */
	for (int s = 0; s < 3; s++) {
		if (s == 0) {
			planner_note(p, 3, PLAN_WRITE);
			planner_note(seed, 3, PLAN_WRITE);
		}
		if (s != 1) {
			planner_note(p, 33, PLAN_WRITE);
			planner_note(seed, 33, PLAN_WRITE);
		}
		planner_note(p, 17, PLAN_READ);
		planner_sample_end(p);
		planner_sample_end(seed);
	}
	assert_int_equal(planner_write_age(p, 0), 2);
	assert_int_equal(planner_write_age(p, 15), 2);
	assert_int_equal(planner_write_age(p, 16), UINT32_MAX);
	assert_int_equal(planner_write_age(p, 39), 0);
	assert_int_equal(planner_write_age(p, NPAGES), UINT32_MAX);
	/* history 1 knows only the prediction (from the last period: block 2) */
	assert_int_equal(planner_write_age(seed, 0), UINT32_MAX);
	assert_int_equal(planner_write_age(seed, 39), 0);
	planner_destroy(p);
	planner_destroy(seed);
}

static void test_bad_input(void **state)
{
	struct ferry_err err;
	struct plan_trace t, other;
	struct plan_rates r;
	uint8_t bad[3] = { R, 3, C };
	struct planner *p;

	(void)state;
	assert_null(planner_create(0, 16, 1, &err));
	assert_int_equal(err.code, -EINVAL);
	assert_null(planner_create(10, 0, 1, &err));
	assert_null(planner_create(10, 16, 0, &err));
	assert_int_equal(plan_trace_init(&t, 0, 16, &err), -EINVAL);

	load(&t);
	assert_int_equal(plan_trace_append(&t, bad, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "block 1"));
	assert_int_equal(t.nsamples, 4);
	assert_int_equal(planner_eval_trace(&t, 0, &r, NULL, &err), -EINVAL);

	p = planner_create(NPAGES + 1, 16, 1, NULL);
	assert_non_null(p);
	assert_int_equal(planner_record(p, &t, &err), -EINVAL);   /* geometry differs */
	assert_int_equal(plan_trace_init(&other, NPAGES + 1, 16, NULL), 0);
	assert_int_equal(planner_record(p, &other, &err), 0);
	planner_sample_end(p);
	assert_int_equal(other.nsamples, 1);
	assert_int_equal(planner_record(p, NULL, NULL), 0);       /* stop recording */
	planner_sample_end(p);
	assert_int_equal(other.nsamples, 1);
	planner_destroy(p);
	planner_destroy(NULL);
	plan_trace_fini(&other);
	plan_trace_fini(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_window1),
		cmocka_unit_test(test_window2),
		cmocka_unit_test(test_online_matches_offline),
		cmocka_unit_test(test_trend),
		cmocka_unit_test(test_history),
		cmocka_unit_test(test_write_age),
		cmocka_unit_test(test_bad_input),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
