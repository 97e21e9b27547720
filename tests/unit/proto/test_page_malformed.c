/*
 * The committed malformed-message corpus, tests/corpus/page/NAME.E<code>.bin
 * (made by make_corpus.py there): each file must decode with exactly the
 * FERRY_E_* code in its name. Every input, and every prefix of it, is
 * decoded from a heap buffer of exactly its size so that ASan reports any
 * read past the end.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/page.h"

#define CORPUS_DIR FERRY_SOURCE_DIR "/tests/corpus/page"
/* Fewer files than this means the corpus went missing, not that all is well. */
#define CORPUS_MIN 25

/* "name.E7.bin" -> 7; -1 if the name does not follow the convention. */
static int expected_code(const char *name)
{
	size_t len = strlen(name);
	const char *e, *end;
	char *stop;
	long code;

	if (len < 7 || strcmp(name + len - 4, ".bin") != 0)
		return -1;
	end = name + len - 4;
	for (e = end; e > name && e[-1] != '.'; e--)
		;
	if (e == name || e[0] != 'E' || e + 1 == end)
		return -1;
	errno = 0;
	code = strtol(e + 1, &stop, 10);
	if (errno || stop != end || code < 0 || code > FERRY_E_CODE_MAX)
		return -1;
	return (int)code;
}

/* The whole file in a heap buffer of exactly its size. */
static uint8_t *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *data;
	long size;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	size = ftell(f);
	assert_true(size >= 0);
	rewind(f);
	/* malloc(0) gives a zero-byte block on glibc: ASan flags any read of it. */
	data = malloc((size_t)size);
	assert_true(data != NULL || size == 0);
	assert_int_equal(fread(data, 1, (size_t)size, f), (size_t)size);
	fclose(f);
	*len = (size_t)size;
	return data;
}

/* Decode from an exactly-sized copy of @src[0..len). */
static int decode_copy(const uint8_t *src, size_t len)
{
	struct ferry_page_msg msg;
	struct ferry_page_hdr hdr;
	uint8_t *copy = malloc(len);
	int rc, hrc;

	assert_true(copy != NULL || len == 0);
	if (len)
		memcpy(copy, src, len);
	rc = ferry_page_decode(copy, len, &msg);
	hrc = ferry_page_hdr_decode(copy, len, &hdr);
	free(copy);
	/* A message that decodes has a header that decodes. */
	assert_true(rc != FERRY_E_OK || hrc == FERRY_E_OK);
	return rc;
}

/*
 * Every prefix of a file decodes without over-reading, and to what the
 * bytes it holds allow: TRUNCATED while the header or the payload it
 * announces is incomplete, the header's own verdict if that is bad, and the
 * whole file's result once the message is all there (trailing bytes are
 * ignored).
 */
static void check_prefixes(const char *name, const uint8_t *data, size_t len, int whole)
{
	struct ferry_page_hdr hdr;
	int hrc = ferry_page_hdr_decode(data, len, &hdr);

	for (size_t cut = 0; cut < len; cut++) {
		int want = whole, got = decode_copy(data, cut);

		if (cut < FERRY_PAGE_HDR_LEN)
			want = FERRY_E_TRUNCATED;
		else if (hrc == FERRY_E_OK && cut - FERRY_PAGE_HDR_LEN < hdr.payload_len)
			want = FERRY_E_TRUNCATED;
		if (got != want)
			fail_msg("%s cut to %zu bytes: decoded as %d, expected %d", name, cut, got, want);
	}
}

static void test_corpus(void **state)
{
	DIR *dir = opendir(CORPUS_DIR);
	struct dirent *de;
	int files = 0, malformed = 0, failures = 0;

	(void)state;
	if (!dir)
		fail_msg("cannot open %s: %s", CORPUS_DIR, strerror(errno));
	while ((de = readdir(dir)) != NULL) {
		char path[4096];
		size_t len;
		uint8_t *data;
		int want, got;

		if (!strstr(de->d_name, ".bin"))
			continue;
		want = expected_code(de->d_name);
		if (want < 0) {
			print_error("%s: name does not end in .E<code>.bin\n", de->d_name);
			failures++;
			continue;
		}
		snprintf(path, sizeof(path), "%s/%s", CORPUS_DIR, de->d_name);
		data = read_file(path, &len);

		got = decode_copy(data, len);
		if (got != want) {
			print_error("%s: decoded as %d (%s), expected %d (%s)\n", de->d_name, got,
				    ferry_errcode_str((uint32_t)got), want, ferry_errcode_str((uint32_t)want));
			failures++;
		}
		check_prefixes(de->d_name, data, len, want);
		free(data);
		files++;
		malformed += want != FERRY_E_OK;
	}
	closedir(dir);

	print_message("%d corpus files, %d malformed, %d failures\n", files, malformed, failures);
	assert_int_equal(failures, 0);
	assert_true(malformed >= CORPUS_MIN);
}

static void test_expected_code_parser(void **state)
{
	(void)state;
	assert_int_equal(expected_code("bad-magic.E2.bin"), 2);
	assert_int_equal(expected_code("alloc.E19.bin"), 19);
	assert_int_equal(expected_code("valid.E0.bin"), 0);
	assert_int_equal(expected_code("x.E20.bin"), -1);
	assert_int_equal(expected_code("x.E.bin"), -1);
	assert_int_equal(expected_code("x.E7x.bin"), -1);
	assert_int_equal(expected_code("x.7.bin"), -1);
	assert_int_equal(expected_code("E7.bin"), -1);
	assert_int_equal(expected_code("x.E7.txt"), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_expected_code_parser),
		cmocka_unit_test(test_corpus),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
