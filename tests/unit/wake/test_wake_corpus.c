/*
 * The committed wake-protocol corpus (made by tests/corpus/wake/make_corpus.py):
 * tests/corpus/wake/NAME.E<code>.bin must decode with exactly that
 * FERRY_WAKE_E_* code. Every file, and every prefix of it, is decoded from a
 * heap buffer of exactly its size (../corpus_harness.c) so that ASan reports
 * any read past the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../corpus_harness.h"
#include "proto/wake.h"

#define CORPUS_DIR FERRY_SOURCE_DIR "/tests/corpus/wake"
#define CORPUS_MIN 15
#define VALID_MIN  10

static struct ferry_wake_msg msg;

static int decode(const uint8_t *data, size_t len, unsigned int nfds, void *arg)
{
	int rc = ferry_wake_decode(data, len, &msg);

	(void)nfds;
	(void)arg;
	if (rc == FERRY_WAKE_E_OK && msg.hdr.type == FERRY_WAKE_VM_TABLE) {
		struct ferry_wake_vm vm;

		for (uint16_t i = 0; i < msg.u.table.count; i++)
			ferry_wake_table_entry(&msg.u.table, i, &vm);
	}
	return rc;
}

/* Every strict prefix of a valid message is TRUNCATED; of a malformed one, anything but a crash. */
static int prefix_want(const struct corpus_file *f, size_t cut)
{
	(void)cut;
	return f->x.code == FERRY_WAKE_E_OK ? FERRY_WAKE_E_TRUNCATED : -1;
}

static const struct corpus_codec wake_codec = {
	.ext = ".bin",
	.code_max = FERRY_WAKE_E_CODE_MAX,
	.decode = decode,
	.prefix_want = prefix_want,
	.errstr = ferry_wake_errcode_str,
};

int main(void)
{
	static const struct corpus_suite suite = { CORPUS_DIR, &wake_codec, CORPUS_MIN, VALID_MIN };

	return corpus_suite_main(&suite);
}
