/*
 * The committed control-protocol corpus (made by tests/corpus/ctrl/make_corpus.py):
 * tests/corpus/ctrl/NAME.E<code>.bin must decode with exactly that
 * FERRY_CTRL_E_* code. Every file, and every prefix of it, is decoded from a
 * heap buffer of exactly its size (../corpus_harness.c) so that ASan reports
 * any read past the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../corpus_harness.h"
#include "proto/ctrl.h"

#define CORPUS_DIR FERRY_SOURCE_DIR "/tests/corpus/ctrl"
#define CORPUS_MIN 60
#define VALID_MIN  25

static struct ferry_ctrl_msg msg;

static int decode(const uint8_t *data, size_t len, unsigned int nfds, void *arg)
{
	(void)nfds;
	(void)arg;
	return ferry_ctrl_decode(data, len, &msg);
}

/* Every strict prefix of a valid message is TRUNCATED; of a malformed one, anything but a crash. */
static int prefix_want(const struct corpus_file *f, size_t cut)
{
	(void)cut;
	return f->x.code == FERRY_CTRL_E_OK ? FERRY_CTRL_E_TRUNCATED : -1;
}

static const struct corpus_codec ctrl_codec = {
	.ext = ".bin",
	.code_max = FERRY_CTRL_E_CODE_MAX,
	.decode = decode,
	.prefix_want = prefix_want,
	.errstr = ferry_ctrl_errcode_str,
};

int main(void)
{
	static const struct corpus_suite suite = { CORPUS_DIR, &ctrl_codec, CORPUS_MIN, VALID_MIN };

	return corpus_suite_main(&suite);
}
