/*
 * The committed malformed-message corpus, tests/corpus/page/NAME.E<code>.bin
 * (made by make_corpus.py there): each file must decode with exactly the
 * FERRY_E_* code in its name. Every input, and every prefix of it, is
 * decoded from a heap buffer of exactly its size (../corpus_harness.c) so
 * that ASan reports any read past the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../corpus_harness.h"
#include "proto/page.h"

#define CORPUS_DIR FERRY_SOURCE_DIR "/tests/corpus/page"
/* Fewer files than this means the corpus went missing, not that all is well. */
#define CORPUS_MIN 25

static int decode(const uint8_t *data, size_t len, unsigned int nfds, void *arg)
{
	struct ferry_page_msg msg;
	struct ferry_page_hdr hdr;
	int rc = ferry_page_decode(data, len, &msg), hrc = ferry_page_hdr_decode(data, len, &hdr);

	(void)nfds;
	(void)arg;
	/* A message that decodes has a header that decodes. */
	assert_true(rc != FERRY_E_OK || hrc == FERRY_E_OK);
	return rc;
}

/*
 * A prefix decodes to what the bytes it holds allow: TRUNCATED while the
 * header or the payload it announces is incomplete, the header's own verdict
 * if that is bad, and the whole file's result once the message is all there
 * (trailing bytes are ignored).
 */
static int prefix_want(const struct corpus_file *f, size_t cut)
{
	struct ferry_page_hdr hdr;
	int hrc = ferry_page_hdr_decode(f->data, f->len, &hdr);

	if (cut < FERRY_PAGE_HDR_LEN)
		return FERRY_E_TRUNCATED;
	if (hrc == FERRY_E_OK && cut - FERRY_PAGE_HDR_LEN < hdr.payload_len)
		return FERRY_E_TRUNCATED;
	return f->x.code;
}

static const struct corpus_codec page_codec = {
	.ext = ".bin",
	.code_max = FERRY_E_CODE_MAX,
	.decode = decode,
	.prefix_want = prefix_want,
	.errstr = ferry_errcode_str,
};

static void test_corpus(void **state)
{
	struct corpus_stats st = corpus_run(CORPUS_DIR, &page_codec);

	(void)state;
	assert_int_equal(st.failures, 0);
	assert_true(st.malformed >= CORPUS_MIN);
}

static int expected_code(const char *name)
{
	return corpus_parse_name(name, ".bin", FERRY_E_CODE_MAX).code;
}

static void test_expected_code_parser(void **state)
{
	(void)state;
	assert_int_equal(expected_code("bad-magic.E2.bin"), 2);
	assert_int_equal(expected_code("alloc.E19.bin"), 19);
	assert_int_equal(expected_code("valid.E0.bin"), 0);
	assert_int_equal(expected_code("x.E22.bin"), 22);
	assert_int_equal(expected_code("x.E23.bin"), -1);
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
