/**
 * @file gs_stamp.h
 * Verifiable page contents for guestsim and `ferry-perf fault`.
 *
 * A stamped 4 KiB page starts with a 32-byte header
 *
 *     u64 magic (GS_STAMP_MAGIC), u64 page number, u64 write generation, u64 checksum
 *
 * followed by a body derived from (seed, page, generation). The checksum is
 * computed over the whole page with the checksum field taken as zero, so any
 * flipped byte anywhere in the page is caught, and the header says which
 * page and which write the content belongs to, so a stale or misplaced copy
 * is caught too. Generation 0 means "never written (or freed)": the page
 * must read as zeros.
 *
 * Header-only (static inline) so that both tools use one definition.
 */
#ifndef FERRY_GS_STAMP_H
#define FERRY_GS_STAMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define GS_PAGE          4096u
#define GS_PAGE_WORDS    (GS_PAGE / 8u)
#define GS_STAMP_MAGIC   0x5453474d49534753ull   /* "SGSIMGST" */
#define GS_HDR_WORDS     4u

static inline uint64_t gs_mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Checksum over the page with word 3 (the checksum itself) read as zero. */
static inline uint64_t gs_page_sum(const uint64_t *w)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (unsigned i = 0; i < GS_PAGE_WORDS; i++) {
		uint64_t v = i == 3 ? 0 : w[i];

		h = (h ^ v) * 0x100000001b3ull;
		h ^= h >> 29;
	}
	return h;
}

/** Write the stamp of (@p page, @p gen) into @p dst (4 KiB, 8-byte aligned). */
static inline void gs_stamp_page(void *dst, uint64_t seed, uint64_t page, uint64_t gen)
{
	uint64_t *w = dst;
	uint64_t x = gs_mix64(seed ^ gs_mix64(page * 0x9e3779b97f4a7c15ull ^ gen));

	w[0] = GS_STAMP_MAGIC;
	w[1] = page;
	w[2] = gen;
	w[3] = 0;
	for (unsigned i = GS_HDR_WORDS; i < GS_PAGE_WORDS; i++) {
		/* xorshift64: cheap and different per word */
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		w[i] = x;
	}
	w[3] = gs_page_sum(w);
}

/** True when all 4 KiB at @p p are zero. */
static inline bool gs_page_is_zero(const void *p)
{
	const uint64_t *w = p;
	uint64_t acc = 0;

	for (unsigned i = 0; i < GS_PAGE_WORDS; i++)
		acc |= w[i];
	return acc == 0;
}

/**
 * Check page @p p against what it must hold: zeros when @p gen is 0, else
 * the stamp of (@p page, @p gen). On a mismatch a one-line description goes
 * to @p why (may be NULL) and false is returned.
 */
static inline bool gs_check_page(const void *p, uint64_t page, uint64_t gen, char *why, size_t why_len)
{
	const uint64_t *w = p;

	if (gen == 0) {
		if (gs_page_is_zero(p))
			return true;
		if (why) {
			unsigned first = 0;

			while (first < GS_PAGE_WORDS && w[first] == 0)
				first++;
			snprintf(why, why_len,
				 "page %llu: expected zeros (never written or freed), found non-zero word %u = 0x%016llx"
				 "%s (header: magic 0x%016llx page %llu gen %llu)",
				 (unsigned long long)page, first, (unsigned long long)w[first],
				 w[0] == GS_STAMP_MAGIC ? " [a stale stamped page]" : "", (unsigned long long)w[0],
				 (unsigned long long)w[1], (unsigned long long)w[2]);
		}
		return false;
	}
	if (w[0] == GS_STAMP_MAGIC && w[1] == page && w[2] == gen && w[3] == gs_page_sum(w))
		return true;
	if (why) {
		const char *what;

		if (gs_page_is_zero(p))
			what = "the page is all zeros (content lost)";
		else if (w[0] != GS_STAMP_MAGIC)
			what = "no stamp (bad magic)";
		else if (w[1] != page)
			what = "the stamp of another page (misplaced)";
		else if (w[2] != gen)
			what = w[2] < gen ? "an older generation (stale copy)" : "a newer generation than recorded";
		else
			what = "checksum mismatch (corrupted bytes)";
		snprintf(why, why_len,
			 "page %llu: expected generation %llu, found %s: magic 0x%016llx page %llu gen %llu "
			 "checksum 0x%016llx (computed 0x%016llx)",
			 (unsigned long long)page, (unsigned long long)gen, what, (unsigned long long)w[0],
			 (unsigned long long)w[1], (unsigned long long)w[2], (unsigned long long)w[3],
			 (unsigned long long)gs_page_sum(w));
	}
	return false;
}

#endif /* FERRY_GS_STAMP_H */
