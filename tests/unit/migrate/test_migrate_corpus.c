/*
 * The committed migration-protocol corpus (made by tests/corpus/migrate/make_corpus.py):
 * tests/corpus/migrate/NAME.E<code>.bin must decode with exactly that
 * MIG_E_* code. Every file, and every prefix of it, is decoded from a
 * heap buffer of exactly its size (../corpus_harness.c) so that ASan reports
 * any read past the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../corpus_harness.h"
#include "proto/migrate.h"

#define CORPUS_DIR FERRY_SOURCE_DIR "/tests/corpus/migrate"
#define CORPUS_MIN 60
#define VALID_MIN  25

static struct migp_msg msg;

static int decode(const uint8_t *data, size_t len, unsigned int nfds, void *arg)
{
	int rc = migp_decode(data, len, &msg);

	(void)nfds;
	(void)arg;
	if (rc == MIG_E_OK && msg.hdr.type == MIGP_PAGE_MAP) {
		struct migp_map_entry e;

		for (uint32_t i = 0; i < msg.u.map.count; i++)
			migp_page_map_entry(&msg.u.map, i, &e);
	}
	if (rc == MIG_E_OK && msg.hdr.type == MIGP_EXTENTS) {
		struct migp_extent e;

		for (uint16_t i = 0; i < msg.u.extents.count; i++)
			migp_extents_entry(&msg.u.extents, i, &e);
	}
	return rc;
}

/* Every strict prefix of a valid message is TRUNCATED; of a malformed one, anything but a crash. */
static int prefix_want(const struct corpus_file *f, size_t cut)
{
	(void)cut;
	return f->x.code == MIG_E_OK ? MIG_E_TRUNCATED : -1;
}

static const struct corpus_codec mig_codec = {
	.ext = ".bin",
	.code_max = MIG_E_CODE_MAX,
	.decode = decode,
	.prefix_want = prefix_want,
	.errstr = migp_errcode_str,
};

int main(void)
{
	static const struct corpus_suite suite = { CORPUS_DIR, &mig_codec, CORPUS_MIN, VALID_MIN };

	return corpus_suite_main(&suite);
}
