/**
 * @file planner.h
 * The phase planner (seed 002, issue #5 item 4): from a guest's recent
 * memory accesses it predicts, per block of pages, whether the block will be
 * written during the coming window, and so which migration phase should carry
 * it: read and clean blocks are pushed pre-copy (a pushed page that is only
 * read never has to be sent again), write blocks are deferred to post-copy
 * (pushing them would only earn re-sends).
 *
 * Vocabulary (the seed's, made exact):
 *  - a *block* is @c block_pages consecutive pages (default 16); the last
 *    block may be shorter;
 *  - a *sample period* is the interval between two planner_sample_end()
 *    calls (the seed samples every 500 ms); in a period a block's *class* is
 *    PLAN_WRITE if any of its pages was written, else PLAN_READ if any was
 *    read, else PLAN_CLEAN (write dominates read dominates clean);
 *  - a *window* is @c samples_per_window consecutive sample periods. The
 *    predictor is "the access seen at the start of a window continues for the
 *    window": the prediction for a window is each block's class in the sample
 *    period that closed just before the window began (its head observation);
 *    what *actually* happened is the block's class over the whole window
 *    (again write > read > clean). Windows tile time: the last period of
 *    window k is the head observation of window k+1. The very first period is
 *    observation only (no prediction is scored for it). In the seed's wording
 *    a window of size W that contains its head sample is our window W-1.
 *  - the four misprediction rates, one per (block, window) prediction:
 *      A(w|c) = #(predicted clean, actually write) / #(predicted clean)
 *      A(w|r) = #(predicted read,  actually write) / #(predicted read)
 *      A(c|w) = #(predicted write, actually clean) / #(predicted write)
 *      A(r|w) = #(predicted write, actually read)  / #(predicted write)
 *    A(w|c) and A(w|r) are pushed blocks that get dirtied (re-sends);
 *    A(c|w) and A(r|w) are deferred blocks that did not need to be (post-copy
 *    traffic that pre-copy could have carried). A rate whose denominator is
 *    zero is reported as 0 with its count n_* = 0.
 *  - an extension (not in the seed): with a *history* of H periods
 *    (planner_set_history()), the prediction is the block's class over the
 *    last H periods up to the window's start instead of the last one only
 *    (written in any of them -> write, else read in any -> read, else clean).
 *    H = 1, the default, is the seed's predictor.
 *
 * Two ways in: online, the access sampler (access_sampler.h) calls
 * planner_note() for every access it sees and planner_sample_end() every
 * period, and the migration asks planner_defer() per page; offline, a trace
 * recorded once (planner_record()) is replayed by planner_eval_trace() for any
 * window size, which is how the table over window sizes is made from ONE run.
 * Both score with the same rules, so the online rates equal the offline ones
 * for the same window size.
 *
 * Pure: no I/O, no threads, no clocks. Not thread-safe: one owner thread (the
 * sampler's fault-handling thread), or the caller locks.
 */
#ifndef FERRY_MIGRATE_PLANNER_H
#define FERRY_MIGRATE_PLANNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/common/ferry_err.h"

#define PLAN_PAGE_SIZE           4096u
#define PLAN_DEFAULT_BLOCK_PAGES 16u   /**< seed 002: 16 pages per block */
#define PLAN_DEFAULT_PERIOD_MS   500u  /**< seed 002: a sample every 500 ms */

enum plan_access { PLAN_CLEAN = 0, PLAN_READ = 1, PLAN_WRITE = 2 };
#define PLAN_NCLASSES 3

/** Misprediction rates (see the file comment) and the counts behind them. */
struct plan_rates {
	double w_given_c, w_given_r, c_given_w, r_given_w;
	uint64_t n_c, n_r, n_w;       /**< predictions of each class counted */
	uint64_t confusion[PLAN_NCLASSES][PLAN_NCLASSES];  /**< [predicted][actual], per (block, window) */
	uint64_t windows;             /**< windows scored */
};

/**
 * What a migration planned this way would send, against pre-copy alone, with
 * each window taken as one push round: pre-copy pushes every block at the
 * window's start and must re-send every block written during it; the planner
 * pushes only the blocks predicted read or clean (re-sending those then
 * written) and sends the predicted-write blocks once, post-copy. Bytes are
 * pages x 4 KiB (the last block counts only its pages).
 */
struct plan_cost {
	uint64_t windows;               /**< windows scored */
	uint64_t precopy_pushed_bytes;  /**< pre-copy: all blocks, every window */
	uint64_t precopy_resent_bytes;  /**< pre-copy: pushed then written in the window */
	uint64_t planned_pushed_bytes;  /**< planner: predicted read/clean blocks */
	uint64_t planned_resent_bytes;  /**< planner: pushed then written (A(w|c), A(w|r) cases) */
	uint64_t deferred_bytes;        /**< planner: predicted write, sent post-copy */
	uint64_t deferred_unwritten_bytes; /**< of those, not written in the window (A(c|w), A(r|w)) */
};

/**
 * A recorded access trace: for each closed sample period, one class byte
 * (enum plan_access) per block. Rows are appended by the planner
 * (planner_record()) or by hand (plan_trace_append()).
 */
struct plan_trace {
	uint64_t npages;       /**< pages covered (sizes the last block) */
	unsigned block_pages;
	uint64_t nblocks;
	uint64_t nsamples;     /**< rows recorded */
	uint64_t cap;          /**< rows allocated */
	uint8_t *cls;          /**< nsamples x nblocks, row-major */
};

struct planner;

/**
 * A planner over @p npages pages in blocks of @p block_pages, scoring windows
 * of @p samples_per_window sample periods. Every block starts predicted
 * PLAN_CLEAN (nothing seen yet). NULL on bad arguments or no memory.
 */
struct planner *planner_create(uint64_t npages, unsigned block_pages, unsigned samples_per_window,
			       struct ferry_err *err);
void planner_destroy(struct planner *p);

/** An access seen in the current sample period; WRITE dominates READ. Pages out of range are ignored. */
void planner_note(struct planner *p, uint64_t page, enum plan_access a);
/** Closes a sample period (the sampler calls it every period); may start a new window. */
void planner_sample_end(struct planner *p);
/** Prediction for the current window (PLAN_CLEAN for a block out of range). */
enum plan_access planner_predict(const struct planner *p, uint64_t block);
/** True: the page's block is predicted written in this window -> send it post-copy. */
bool planner_defer(const struct planner *p, uint64_t page);
/**
 * Sample periods closed since @p page's block was last seen written: 0 = in
 * the last one; UINT32_MAX = never (or out of range). With history 1 only the
 * current prediction is known: 0 for a block predicted written, else
 * UINT32_MAX. Orders deferrals when more pages are predicted written than
 * post-copy can take: the most recently written first.
 */
uint32_t planner_write_age(const struct planner *p, uint64_t page);
/**
 * Predict from the last @p periods periods (>= 1; 1 = the seed's predictor,
 * the default). Takes effect at the next window start. -EINVAL / -ENOMEM.
 */
int planner_set_history(struct planner *p, unsigned periods, struct ferry_err *err);
/** Misprediction rates over the windows completed so far. */
void planner_rates(const struct planner *p, struct plan_rates *out);
/** Send volumes (struct plan_cost) over the windows completed so far. */
void planner_cost(const struct planner *p, struct plan_cost *out);
/** Class of @p block in the sample period under way so far. */
enum plan_access planner_current(const struct planner *p, uint64_t block);
uint64_t planner_nblocks(const struct planner *p);
unsigned planner_block_pages(const struct planner *p);
/** Sample periods closed so far. */
uint64_t planner_samples(const struct planner *p);
/**
 * From now on append every closed period's row to @p t (initialised by the
 * caller with plan_trace_init() for the same geometry; NULL stops). An append
 * that fails for memory stops recording and sets the trace's failure flag,
 * reported by planner_record_failed().
 */
int planner_record(struct planner *p, struct plan_trace *t, struct ferry_err *err);
bool planner_record_failed(const struct planner *p);

int plan_trace_init(struct plan_trace *t, uint64_t npages, unsigned block_pages, struct ferry_err *err);
void plan_trace_fini(struct plan_trace *t);
/** Append one period's row of nblocks classes (values > PLAN_WRITE are rejected). */
int plan_trace_append(struct plan_trace *t, const uint8_t *row, struct ferry_err *err);
/** Class of @p block in recorded period @p sample. */
static inline enum plan_access plan_trace_at(const struct plan_trace *t, uint64_t sample, uint64_t block)
{
	return (enum plan_access)t->cls[sample * t->nblocks + block];
}

/**
 * Replay @p t with windows of @p samples_per_window periods: the rates (and,
 * if @p cost is not NULL, the send volumes) an online planner with that
 * window would have reported after the same periods. -EINVAL on a zero window.
 */
int planner_eval_trace(const struct plan_trace *t, unsigned samples_per_window, struct plan_rates *rates,
		       struct plan_cost *cost, struct ferry_err *err);

/** planner_eval_trace() with a history of @p history periods (planner_set_history()). */
int planner_eval_trace_history(const struct plan_trace *t, unsigned samples_per_window, unsigned history,
			       struct plan_rates *rates, struct plan_cost *cost, struct ferry_err *err);

/** Rates from a confusion matrix (fills the doubles and n_* of @p r from r->confusion). */
void plan_rates_finish(struct plan_rates *r);

#endif /* FERRY_MIGRATE_PLANNER_H */
