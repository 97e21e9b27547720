/*
 * The committed VMM-protocol corpus (made by tests/corpus/vmm/make_corpus.py):
 *   tests/corpus/vmm/NAME[.F<n>].E<code>.bin               binary messages
 *   tests/corpus/vmm/firecracker/NAME[.F<n>].E<code>.json  Firecracker handshakes
 * Each file must decode with exactly the FERRY_VMMP_E_* code in its name,
 * given <n> descriptors (default 0 for .bin, 1 for .json). Every input, and
 * for binary messages every prefix of it, is decoded from a heap buffer of
 * exactly its size (../corpus_harness.c) so that ASan reports any read past
 * the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../corpus_harness.h"
#include "proto/vmm.h"

#define CORPUS_DIR FERRY_SOURCE_DIR "/tests/corpus/vmm"
#define FC_DIR     CORPUS_DIR "/firecracker"
/* Fewer malformed files than this means the corpus went missing. */
#define BIN_MIN    20
#define FC_MIN     20

static struct ferry_vmmp_msg msg;
static struct ferry_vmmp_fc_handshake hs;
static char why[256];

static int decode_bin(const uint8_t *data, size_t len, unsigned int nfds, void *arg)
{
	struct ferry_vmmp_hdr hdr;
	int rc = ferry_vmmp_decode(data, len, nfds, &msg), hrc = ferry_vmmp_hdr_decode(data, len, &hdr);

	(void)arg;
	if (rc == FERRY_VMMP_E_OK && msg.hdr.type == FERRY_VMMP_FREE_HINT) {
		struct ferry_vmmp_range r;

		/* The zero-copy entries are inside the exact-size buffer. */
		for (uint32_t i = 0; i < msg.u.hints.count; i++)
			ferry_vmmp_hint_entry(&msg.u.hints, i, &r);
	}
	assert_true(rc != FERRY_VMMP_E_OK || hrc == FERRY_VMMP_E_OK);
	return rc;
}

static int prefix_want(const struct corpus_file *f, size_t cut)
{
	struct ferry_vmmp_hdr hdr;
	int hrc = ferry_vmmp_hdr_decode(f->data, f->len, &hdr);

	if (cut < FERRY_VMMP_HDR_LEN)
		return FERRY_VMMP_E_TRUNCATED;
	if (hrc == FERRY_VMMP_E_OK && cut - FERRY_VMMP_HDR_LEN < hdr.payload_len)
		return FERRY_VMMP_E_TRUNCATED;
	return f->x.code;
}

static int decode_fc(const uint8_t *data, size_t len, unsigned int nfds, void *arg)
{
	(void)arg;
	why[0] = '\0';
	return ferry_vmmp_fc_decode(data, len, nfds, &hs, why, sizeof(why));
}

static int check_fc(const struct corpus_file *f, int got, void *arg)
{
	size_t frame;
	int frc = ferry_vmmp_fc_frame(f->data, f->len, &frame);

	(void)arg;
	/* Whatever decodes was framed as one complete array. */
	if (got == FERRY_VMMP_E_OK && (frc != FERRY_VMMP_E_OK || frame > f->len))
		fail_msg("%s decodes but frames as %d", f->name, frc);
	/* A failure always explains itself. */
	if (got != FERRY_VMMP_E_OK && why[0] == '\0')
		fail_msg("%s: code %d without a reason", f->name, got);
	if (got != f->x.code)
		print_error("%s: reason: %s\n", f->name, why);
	return 0;
}

static void test_binary_corpus(void **state)
{
	const struct corpus_codec codec = {
		.ext = ".bin",
		.code_max = FERRY_VMMP_E_CODE_MAX,
		.default_fds = 0,
		.decode = decode_bin,
		.prefix_want = prefix_want,
		.errstr = ferry_vmmp_errcode_str,
	};
	struct corpus_stats st = corpus_run(CORPUS_DIR, &codec);

	(void)state;
	assert_int_equal(st.failures, 0);
	assert_true(st.malformed >= BIN_MIN);
}

static void test_firecracker_corpus(void **state)
{
	const struct corpus_codec codec = {
		.ext = ".json",
		.code_max = FERRY_VMMP_E_CODE_MAX,
		.default_fds = 1,
		.decode = decode_fc,
		.check = check_fc,
		.errstr = ferry_vmmp_errcode_str,
	};
	struct corpus_stats st = corpus_run(FC_DIR, &codec);

	(void)state;
	assert_int_equal(st.failures, 0);
	assert_true(st.malformed >= FC_MIN);
}

static void test_name_parser(void **state)
{
	struct corpus_expect x;
	const int max = FERRY_VMMP_E_CODE_MAX;

	(void)state;
	x = corpus_parse_name("bad-magic.E2.bin", ".bin", max);
	assert_int_equal(x.code, 2);
	assert_int_equal(x.fds, -1);
	x = corpus_parse_name("register.F2.E13.bin", ".bin", max);
	assert_int_equal(x.code, 13);
	assert_int_equal(x.fds, 2);
	x = corpus_parse_name("fc-v1.12-both.E0.json", ".json", max);
	assert_int_equal(x.code, 0);
	assert_int_equal(x.fds, -1);
	x = corpus_parse_name("fc-two.F2.E13.json", ".json", max);
	assert_int_equal(x.fds, 2);
	assert_int_equal(corpus_parse_name("x.E28.bin", ".bin", max).code, -1);
	assert_int_equal(corpus_parse_name("x.E.bin", ".bin", max).code, -1);
	assert_int_equal(corpus_parse_name("x.E7x.bin", ".bin", max).code, -1);
	assert_int_equal(corpus_parse_name("E7.bin", ".bin", max).code, -1);
	assert_int_equal(corpus_parse_name("x.E7.json", ".bin", max).code, -1);
	assert_int_equal(corpus_parse_name("x.Fz.E7.bin", ".bin", max).code, -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_name_parser),
		cmocka_unit_test(test_binary_corpus),
		cmocka_unit_test(test_firecracker_corpus),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
