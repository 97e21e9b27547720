/*
 * The committed wake-protocol corpus (made by tests/corpus/wake/make_corpus.py):
 * tests/corpus/wake/NAME.E<code>.bin must decode with exactly that
 * FERRY_WAKE_E_* code. Every file, and every prefix of it, is decoded from a
 * heap buffer of exactly its size so that ASan reports any read past the end.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/wake.h"

#define CORPUS_DIR FERRY_SOURCE_DIR "/tests/corpus/wake"
#define CORPUS_MIN 15

static struct ferry_wake_msg msg;

/* "name.E13.bin" -> 13; -1 when the name does not follow the convention. */
static int expected_code(const char *name)
{
	size_t len = strlen(name);
	const char *e;
	int v = 0;

	if (len < 7 || strcmp(name + len - 4, ".bin") != 0)
		return -1;
	for (e = name + len - 4; e > name && e[-1] != '.'; e--)
		;
	if (e == name || e[0] != 'E' || e + 1 == name + len - 4)
		return -1;
	for (const char *d = e + 1; d < name + len - 4; d++) {
		if (*d < '0' || *d > '9')
			return -1;
		v = v * 10 + (*d - '0');
	}
	return v <= FERRY_WAKE_E_CODE_MAX ? v : -1;
}

static uint8_t *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *data;
	long size;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	size = ftell(f);
	assert_true(size >= 0);
	rewind(f);
	data = malloc(size ? (size_t)size : 1);
	assert_non_null(data);
	assert_int_equal(fread(data, 1, (size_t)size, f), (size_t)size);
	fclose(f);
	*len = (size_t)size;
	return data;
}

static int decode_exact(const uint8_t *src, size_t len)
{
	uint8_t *copy = malloc(len ? len : 1);
	int rc;

	assert_non_null(copy);
	if (len)
		memcpy(copy, src, len);
	rc = ferry_wake_decode(copy, len, &msg);
	if (rc == FERRY_WAKE_E_OK && msg.hdr.type == FERRY_WAKE_VM_TABLE) {
		struct ferry_wake_vm vm;

		for (uint16_t i = 0; i < msg.u.table.count; i++)
			ferry_wake_table_entry(&msg.u.table, i, &vm);
	}
	free(copy);
	return rc;
}

static void test_corpus(void **state)
{
	DIR *d = opendir(CORPUS_DIR);
	struct dirent *de;
	int files = 0, bad = 0, valid = 0;

	(void)state;
	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		char path[1024];
		uint8_t *data;
		size_t len;
		int want, got;

		if (strlen(de->d_name) < 5 || strcmp(de->d_name + strlen(de->d_name) - 4, ".bin") != 0)
			continue;
		want = expected_code(de->d_name);
		if (want < 0) {
			print_error("corpus file %s does not follow NAME.E<code>.bin\n", de->d_name);
			bad++;
			continue;
		}
		snprintf(path, sizeof(path), "%s/%s", CORPUS_DIR, de->d_name);
		data = read_all(path, &len);
		got = decode_exact(data, len);
		if (got != want) {
			print_error("%s: decoded as %d (%s), expected %d (%s)\n", de->d_name, got,
				    ferry_wake_errcode_str((uint32_t)got), want, ferry_wake_errcode_str((uint32_t)want));
			bad++;
		}
		/* Every strict prefix of a valid message is TRUNCATED, never a crash. */
		for (size_t cut = 0; cut < len; cut++) {
			got = decode_exact(data, cut);
			if (want == FERRY_WAKE_E_OK && got != FERRY_WAKE_E_TRUNCATED) {
				print_error("%s: prefix %zu decoded as %d\n", de->d_name, cut, got);
				bad++;
				break;
			}
		}
		files++;
		valid += want == FERRY_WAKE_E_OK;
		free(data);
	}
	closedir(d);
	assert_int_equal(bad, 0);
	assert_true(files - valid >= CORPUS_MIN);
	assert_true(valid >= 10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_corpus),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
