/*
 * The phase planner (planner.h): per-block classes per sample period, the
 * "head of the window continues" predictor, and the confusion counts behind
 * the seed's four misprediction rates. The online planner and the offline
 * evaluator share close_period(), so they cannot score differently.
 */
#include "dataplane/migrate/planner.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct planner {
	uint64_t npages;
	uint64_t nblocks;
	unsigned block_pages;
	unsigned window;        /* sample periods per window */
	unsigned in_window;     /* periods closed in the current window */
	bool have_pred;         /* the head observation has been made */
	uint64_t samples;
	uint8_t *cur;           /* class per block, period under way */
	uint8_t *pred;          /* prediction per block, current window */
	uint8_t *actual;        /* class per block over the current window so far */
	unsigned history;       /* periods the prediction looks back (1 = the seed's) */
	uint32_t *last_w;       /* history > 1: per block, 1 + index of the last period written
				   (32 bits: 68 years of 500 ms periods) */
	uint32_t *last_r;       /*              ... and read */
	struct plan_rates rates;
	struct plan_cost cost;
	struct plan_trace *rec;
	bool rec_failed;
};

static uint64_t block_bytes(uint64_t npages, unsigned block_pages, uint64_t block)
{
	uint64_t first = block * block_pages;
	uint64_t n = npages - first < block_pages ? npages - first : block_pages;

	return n * PLAN_PAGE_SIZE;
}

static uint64_t nblocks_of(uint64_t npages, unsigned block_pages)
{
	return (npages + block_pages - 1) / block_pages;
}

struct planner *planner_create(uint64_t npages, unsigned block_pages, unsigned samples_per_window,
			       struct ferry_err *err)
{
	struct planner *p;

	if (npages == 0 || npages > (UINT64_C(1) << 40) || block_pages == 0 || samples_per_window == 0) {
		ferry_err_set(err, EINVAL, "planner: bad geometry (%llu pages, %u pages/block, %u periods/window)",
			      (unsigned long long)npages, block_pages, samples_per_window);
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		goto fail;
	p->npages = npages;
	p->block_pages = block_pages;
	p->window = samples_per_window;
	p->nblocks = nblocks_of(npages, block_pages);
	p->history = 1;
	p->cur = calloc(p->nblocks, 1);
	if (!p->cur)
		goto fail_p;
	p->pred = calloc(p->nblocks, 1);
	if (!p->pred)
		goto fail_cur;
	p->actual = calloc(p->nblocks, 1);
	if (!p->actual)
		goto fail_pred;
	return p;

fail_pred:
	free(p->pred);
fail_cur:
	free(p->cur);
fail_p:
	free(p);
fail:
	ferry_err_set(err, ENOMEM, "planner: no memory for %llu blocks", (unsigned long long)nblocks_of(npages, block_pages));
	return NULL;
}

void planner_destroy(struct planner *p)
{
	if (!p)
		return;
	free(p->last_r);
	free(p->last_w);
	free(p->actual);
	free(p->pred);
	free(p->cur);
	free(p);
}

int planner_set_history(struct planner *p, unsigned periods, struct ferry_err *err)
{
	if (periods == 0)
		return ferry_err_set(err, EINVAL, "planner: a history needs at least one period");
	if (periods > 1 && !p->last_w) {
		p->last_w = calloc(p->nblocks, sizeof(*p->last_w));
		p->last_r = calloc(p->nblocks, sizeof(*p->last_r));
		if (!p->last_w || !p->last_r) {
			free(p->last_w);
			free(p->last_r);
			p->last_w = p->last_r = NULL;
			return ferry_err_set(err, ENOMEM, "planner: no memory for the history of %llu blocks",
					     (unsigned long long)p->nblocks);
		}
		/* What the periods closed so far did is not known in detail: start from now. */
	}
	p->history = periods;
	return 0;
}

void planner_note(struct planner *p, uint64_t page, enum plan_access a)
{
	uint64_t b;

	if (page >= p->npages || a > PLAN_WRITE)
		return;
	b = page / p->block_pages;
	if (p->cur[b] < a)
		p->cur[b] = (uint8_t)a;
}

/* Score the window just completed: one prediction per block. */
static void score_window(struct planner *p)
{
	for (uint64_t b = 0; b < p->nblocks; b++) {
		unsigned pr = p->pred[b], ac = p->actual[b];
		uint64_t bytes = block_bytes(p->npages, p->block_pages, b);

		p->rates.confusion[pr][ac]++;
		p->cost.precopy_pushed_bytes += bytes;
		if (ac == PLAN_WRITE)
			p->cost.precopy_resent_bytes += bytes;
		if (pr != PLAN_WRITE) {
			p->cost.planned_pushed_bytes += bytes;
			if (ac == PLAN_WRITE)
				p->cost.planned_resent_bytes += bytes;
		} else {
			p->cost.deferred_bytes += bytes;
			if (ac != PLAN_WRITE)
				p->cost.deferred_unwritten_bytes += bytes;
		}
	}
	p->rates.windows++;
	p->cost.windows++;
}

/* The prediction at a window's start, @p row being the period just closed. */
static void predict(struct planner *p, const uint8_t *row)
{
	uint32_t now = (uint32_t)p->samples;

	if (p->history == 1 || !p->last_w) {
		memcpy(p->pred, row, p->nblocks);
		return;
	}
	for (uint64_t b = 0; b < p->nblocks; b++) {
		/* last_* hold 1 + period index, so "within the last H" is last + H > now */
		if (p->last_w[b] && p->last_w[b] + p->history > now)
			p->pred[b] = PLAN_WRITE;
		else if (p->last_r[b] && p->last_r[b] + p->history > now)
			p->pred[b] = PLAN_READ;
		else
			p->pred[b] = PLAN_CLEAN;
	}
}

/* Close one period whose classes are @p row (p->cur online, a trace row offline). */
static void close_period(struct planner *p, const uint8_t *row)
{
	p->samples++;
	if (p->last_w)
		for (uint64_t b = 0; b < p->nblocks; b++) {
			if (row[b] == PLAN_WRITE)
				p->last_w[b] = (uint32_t)p->samples;
			else if (row[b] == PLAN_READ)
				p->last_r[b] = (uint32_t)p->samples;
		}
	if (!p->have_pred) {
		/* The first period only observes: it is the head of window 0. */
		predict(p, row);
		p->have_pred = true;
		return;
	}
	for (uint64_t b = 0; b < p->nblocks; b++)
		if (p->actual[b] < row[b])
			p->actual[b] = row[b];
	if (++p->in_window < p->window)
		return;
	score_window(p);
	/* This window's last period is the next window's head observation. */
	predict(p, row);
	memset(p->actual, 0, p->nblocks);
	p->in_window = 0;
}

void planner_sample_end(struct planner *p)
{
	if (p->rec && !p->rec_failed && plan_trace_append(p->rec, p->cur, NULL) < 0) {
		p->rec_failed = true;
		p->rec = NULL;
	}
	close_period(p, p->cur);
	memset(p->cur, 0, p->nblocks);
}

enum plan_access planner_predict(const struct planner *p, uint64_t block)
{
	return block < p->nblocks ? (enum plan_access)p->pred[block] : PLAN_CLEAN;
}

bool planner_defer(const struct planner *p, uint64_t page)
{
	return page < p->npages && p->pred[page / p->block_pages] == PLAN_WRITE;
}

uint32_t planner_write_age(const struct planner *p, uint64_t page)
{
	uint64_t b = page / p->block_pages;

	if (page >= p->npages)
		return UINT32_MAX;
	if (!p->last_w)
		return p->pred[b] == PLAN_WRITE ? 0 : UINT32_MAX;
	return p->last_w[b] ? (uint32_t)p->samples - p->last_w[b] : UINT32_MAX;
}

enum plan_access planner_current(const struct planner *p, uint64_t block)
{
	return block < p->nblocks ? (enum plan_access)p->cur[block] : PLAN_CLEAN;
}

uint64_t planner_nblocks(const struct planner *p)
{
	return p->nblocks;
}

unsigned planner_block_pages(const struct planner *p)
{
	return p->block_pages;
}

uint64_t planner_samples(const struct planner *p)
{
	return p->samples;
}

static double ratio(uint64_t num, uint64_t den)
{
	return den ? (double)num / (double)den : 0.0;
}

void plan_rates_finish(struct plan_rates *r)
{
	const uint64_t (*c)[PLAN_NCLASSES] = r->confusion;

	r->n_c = c[PLAN_CLEAN][0] + c[PLAN_CLEAN][1] + c[PLAN_CLEAN][2];
	r->n_r = c[PLAN_READ][0] + c[PLAN_READ][1] + c[PLAN_READ][2];
	r->n_w = c[PLAN_WRITE][0] + c[PLAN_WRITE][1] + c[PLAN_WRITE][2];
	r->w_given_c = ratio(c[PLAN_CLEAN][PLAN_WRITE], r->n_c);
	r->w_given_r = ratio(c[PLAN_READ][PLAN_WRITE], r->n_r);
	r->c_given_w = ratio(c[PLAN_WRITE][PLAN_CLEAN], r->n_w);
	r->r_given_w = ratio(c[PLAN_WRITE][PLAN_READ], r->n_w);
}

void planner_rates(const struct planner *p, struct plan_rates *out)
{
	*out = p->rates;
	plan_rates_finish(out);
}

void planner_cost(const struct planner *p, struct plan_cost *out)
{
	*out = p->cost;
}

int planner_record(struct planner *p, struct plan_trace *t, struct ferry_err *err)
{
	if (t && (t->nblocks != p->nblocks || t->block_pages != p->block_pages || t->npages != p->npages))
		return ferry_err_set(err, EINVAL, "planner: trace geometry differs from the planner's");
	p->rec = t;
	p->rec_failed = false;
	return 0;
}

bool planner_record_failed(const struct planner *p)
{
	return p->rec_failed;
}

int plan_trace_init(struct plan_trace *t, uint64_t npages, unsigned block_pages, struct ferry_err *err)
{
	memset(t, 0, sizeof(*t));
	if (npages == 0 || npages > (UINT64_C(1) << 40) || block_pages == 0)
		return ferry_err_set(err, EINVAL, "plan trace: bad geometry (%llu pages, %u pages/block)",
				     (unsigned long long)npages, block_pages);
	t->npages = npages;
	t->block_pages = block_pages;
	t->nblocks = nblocks_of(npages, block_pages);
	return 0;
}

void plan_trace_fini(struct plan_trace *t)
{
	free(t->cls);
	memset(t, 0, sizeof(*t));
}

int plan_trace_append(struct plan_trace *t, const uint8_t *row, struct ferry_err *err)
{
	for (uint64_t b = 0; b < t->nblocks; b++)
		if (row[b] > PLAN_WRITE)
			return ferry_err_set(err, EINVAL, "plan trace: block %llu has class %u (max %u)",
					     (unsigned long long)b, row[b], PLAN_WRITE);
	if (t->nsamples == t->cap) {
		uint64_t cap = t->cap ? t->cap * 2 : 64;
		uint8_t *cls;

		if (cap > SIZE_MAX / t->nblocks)
			return ferry_err_set(err, ENOMEM, "plan trace: %llu rows of %llu blocks do not fit in memory",
					     (unsigned long long)cap, (unsigned long long)t->nblocks);
		cls = realloc(t->cls, cap * t->nblocks);
		if (!cls)
			return ferry_err_set(err, ENOMEM, "plan trace: no memory for %llu rows of %llu blocks",
					     (unsigned long long)cap, (unsigned long long)t->nblocks);
		t->cls = cls;
		t->cap = cap;
	}
	memcpy(t->cls + t->nsamples * t->nblocks, row, t->nblocks);
	t->nsamples++;
	return 0;
}

int planner_eval_trace(const struct plan_trace *t, unsigned samples_per_window, struct plan_rates *rates,
		       struct plan_cost *cost, struct ferry_err *err)
{
	return planner_eval_trace_history(t, samples_per_window, 1, rates, cost, err);
}

int planner_eval_trace_history(const struct plan_trace *t, unsigned samples_per_window, unsigned history,
			       struct plan_rates *rates, struct plan_cost *cost, struct ferry_err *err)
{
	struct ferry_err e;
	struct planner *p;

	if (samples_per_window == 0)
		return ferry_err_set(err, EINVAL, "planner: a window needs at least one sample period");
	p = planner_create(t->npages, t->block_pages, samples_per_window, &e);
	if (!p || planner_set_history(p, history, &e) < 0) {
		planner_destroy(p);
		if (err)
			*err = e;
		return e.code;
	}
	for (uint64_t s = 0; s < t->nsamples; s++)
		close_period(p, t->cls + s * t->nblocks);
	planner_rates(p, rates);
	if (cost)
		planner_cost(p, cost);
	planner_destroy(p);
	return 0;
}
