/*
 * Shared driver for the committed decoder corpora (tests/corpus/{page,vmm,wake,migrate,ctrl}):
 * files named NAME[.F<n>].E<code><ext> must decode with exactly <code>, given
 * <n> descriptors. Each file, and each of its prefixes, is decoded from a heap
 * buffer of exactly its size so that ASan reports any read past the end. The
 * caller supplies the decoder and keeps its own assertions on the counts.
 */
#ifndef FERRY_TESTS_CORPUS_HARNESS_H
#define FERRY_TESTS_CORPUS_HARNESS_H

#include <stddef.h>
#include <stdint.h>

/* What a file's name promises: code -1 if the name breaks the convention, fds -1 if not given. */
struct corpus_expect {
	int code;
	int fds;
};

/* One corpus file: its name, its bytes (exactly len of them), what to expect (fds defaulted). */
struct corpus_file {
	const char *name;
	const uint8_t *data;
	size_t len;
	struct corpus_expect x;
};

struct corpus_codec {
	const char *ext;      /* ".bin", ".json" */
	int code_max;         /* highest code a name may carry */
	int default_fds;      /* descriptors when the name has no .F<n> */
	/* Decode @len bytes at @data, an exact-size heap block; return the codec's code. */
	int (*decode)(const uint8_t *data, size_t len, unsigned int nfds, void *arg);
	/* What the first @cut bytes of @f must decode to, -1 for "anything, without over-reading";
	 * NULL: prefixes are not decoded. */
	int (*prefix_want)(const struct corpus_file *f, size_t cut);
	/* Optional: further checks on the whole file that decoded as @got; returns failures. */
	int (*check)(const struct corpus_file *f, int got, void *arg);
	const char *(*errstr)(uint32_t code);
	void *arg;
};

struct corpus_stats {
	int files, malformed, valid, failures;
};

/* "name.F2.E13.bin" -> {13, 2}; "name.E7.bin" -> {7, -1}; {-1, -1} off convention. */
struct corpus_expect corpus_parse_name(const char *name, const char *ext, int code_max);

/* Run every file ending in codec->ext in @dir; prints each failure and the totals. */
struct corpus_stats corpus_run(const char *dir, const struct corpus_codec *codec);

/* A corpus as a cmocka suite of one test: no failure, at least so many malformed and valid files. */
struct corpus_suite {
	const char *dir;
	const struct corpus_codec *codec;
	int min_malformed, min_valid;
};

/* Runs @suite (a test's whole main()); returns cmocka's exit status. */
int corpus_suite_main(const struct corpus_suite *suite);

#endif
