/* See corpus_harness.h. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "corpus_harness.h"

/* Parse a decimal run [s, end) into *v; false unless it is all digits, 1..3 of them. */
static bool parse_num(const char *s, const char *end, int *v)
{
	int n = 0;

	if (s == end || end - s > 3)
		return false;
	for (; s < end; s++) {
		if (*s < '0' || *s > '9')
			return false;
		n = n * 10 + (*s - '0');
	}
	*v = n;
	return true;
}

struct corpus_expect corpus_parse_name(const char *name, const char *ext, int code_max)
{
	struct corpus_expect x = { -1, -1 };
	size_t len = strlen(name), elen = strlen(ext);
	const char *end, *e, *f;
	int v;

	if (len <= elen || strcmp(name + len - elen, ext) != 0)
		return x;
	end = name + len - elen;
	for (e = end; e > name && e[-1] != '.'; e--)
		;
	if (e == name || e[0] != 'E' || !parse_num(e + 1, end, &v) || v > code_max)
		return x;
	/* e[-1] is the '.' before E<code>; an optional F<n> segment precedes it. */
	for (f = e - 1; f > name && f[-1] != '.'; f--)
		;
	if (f > name && f[0] == 'F') {
		int n;

		if (!parse_num(f + 1, e - 1, &n))
			return x;
		x.fds = n;
	}
	if (e - 1 == name)
		return x;
	x.code = v;
	return x;
}

/* The whole file in a heap buffer of exactly its size (malloc(0) is a zero-byte block on glibc). */
static uint8_t *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *data;
	long size;

	if (!f)
		fail_msg("cannot open %s: %s", path, strerror(errno));
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	size = ftell(f);
	assert_true(size >= 0);
	rewind(f);
	data = malloc((size_t)size);
	assert_true(data != NULL || size == 0);
	assert_int_equal(fread(data, 1, (size_t)size, f), (size_t)size);
	fclose(f);
	*len = (size_t)size;
	return data;
}

/* Decode an exactly-sized copy of @src[0..len). */
static int decode_copy(const struct corpus_codec *c, const uint8_t *src, size_t len, unsigned int nfds)
{
	uint8_t *copy = malloc(len);
	int rc;

	assert_true(copy != NULL || len == 0);
	if (len)
		memcpy(copy, src, len);
	rc = c->decode(copy, len, nfds, c->arg);
	free(copy);
	return rc;
}

/* One file: the whole, then every strict prefix; returns the failures. */
static int run_file(const struct corpus_codec *c, const struct corpus_file *f)
{
	unsigned int nfds = (unsigned int)f->x.fds;
	int failures = 0, got = decode_copy(c, f->data, f->len, nfds);

	if (got != f->x.code) {
		print_error("%s: decoded as %d (%s), expected %d (%s)\n", f->name, got,
			    c->errstr((uint32_t)got), f->x.code, c->errstr((uint32_t)f->x.code));
		failures++;
	}
	if (c->check)
		failures += c->check(f, got, c->arg);
	for (size_t cut = 0; c->prefix_want && cut < f->len; cut++) {
		int want = c->prefix_want(f, cut), pgot = decode_copy(c, f->data, cut, nfds);

		if (want >= 0 && pgot != want) {
			print_error("%s cut to %zu bytes: decoded as %d, expected %d\n", f->name, cut, pgot, want);
			failures++;
			break;
		}
	}
	return failures;
}

struct corpus_stats corpus_run(const char *dir_path, const struct corpus_codec *c)
{
	struct corpus_stats st = { 0, 0, 0, 0 };
	DIR *dir = opendir(dir_path);
	struct dirent *de;

	if (!dir)
		fail_msg("cannot open %s: %s", dir_path, strerror(errno));
	while ((de = readdir(dir)) != NULL) {
		struct corpus_file f = { .name = de->d_name };
		char path[4096];
		uint8_t *data;

		/* Anything that mentions the extension must follow the convention. */
		if (!strstr(de->d_name, c->ext))
			continue;
		f.x = corpus_parse_name(de->d_name, c->ext, c->code_max);
		if (f.x.code < 0) {
			print_error("%s: name does not end in [.F<n>].E<code>%s\n", de->d_name, c->ext);
			st.failures++;
			continue;
		}
		if (f.x.fds < 0)
			f.x.fds = c->default_fds;
		snprintf(path, sizeof(path), "%s/%s", dir_path, de->d_name);
		data = read_file(path, &f.len);
		f.data = data;
		st.failures += run_file(c, &f);
		free(data);
		st.files++;
		if (f.x.code == 0)
			st.valid++;
		else
			st.malformed++;
	}
	closedir(dir);
	print_message("%s: %d files, %d malformed, %d failures\n", dir_path, st.files, st.malformed, st.failures);
	return st;
}

static void test_corpus_suite(void **state)
{
	const struct corpus_suite *suite = *state;
	struct corpus_stats st = corpus_run(suite->dir, suite->codec);

	assert_int_equal(st.failures, 0);
	assert_true(st.malformed >= suite->min_malformed);
	assert_true(st.valid >= suite->min_valid);
}

int corpus_suite_main(const struct corpus_suite *suite)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_prestate(test_corpus_suite, (void *)suite),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
