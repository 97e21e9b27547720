/*
 * The committed VMM-protocol corpus (made by tests/corpus/vmm/make_corpus.py):
 *   tests/corpus/vmm/NAME[.F<n>].E<code>.bin               binary messages
 *   tests/corpus/vmm/firecracker/NAME[.F<n>].E<code>.json  Firecracker handshakes
 * Each file must decode with exactly the FERRY_VMMP_E_* code in its name,
 * given <n> descriptors (default 0 for .bin, 1 for .json). Every input, and
 * for binary messages every prefix of it, is decoded from a heap buffer of
 * exactly its size so that ASan reports any read past the end.
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

#include "proto/vmm.h"

#define CORPUS_DIR FERRY_SOURCE_DIR "/tests/corpus/vmm"
#define FC_DIR     CORPUS_DIR "/firecracker"
/* Fewer malformed files than this means the corpus went missing. */
#define BIN_MIN    20
#define FC_MIN     20

struct expect {
	int code;   /* -1: name does not follow the convention */
	int fds;    /* -1: not given */
};

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

/* "name.F2.E13.bin" -> {13, 2}; "name.E7.json" -> {7, -1}. */
static struct expect parse_name(const char *name, const char *ext)
{
	struct expect x = { -1, -1 };
	size_t len = strlen(name), elen = strlen(ext);
	const char *end, *e, *f;
	int v;

	if (len <= elen || strcmp(name + len - elen, ext) != 0)
		return x;
	end = name + len - elen;
	for (e = end; e > name && e[-1] != '.'; e--)
		;
	if (e == name || e[0] != 'E' || !parse_num(e + 1, end, &v) || v > FERRY_VMMP_E_CODE_MAX)
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
	data = malloc((size_t)size);
	assert_true(data != NULL || size == 0);
	assert_int_equal(fread(data, 1, (size_t)size, f), (size_t)size);
	fclose(f);
	*len = (size_t)size;
	return data;
}

static struct ferry_vmmp_msg msg;
static struct ferry_vmmp_fc_handshake hs;

static int decode_bin(const uint8_t *src, size_t len, unsigned int nfds)
{
	struct ferry_vmmp_hdr hdr;
	uint8_t *copy = malloc(len);
	int rc, hrc;

	assert_true(copy != NULL || len == 0);
	if (len)
		memcpy(copy, src, len);
	rc = ferry_vmmp_decode(copy, len, nfds, &msg);
	hrc = ferry_vmmp_hdr_decode(copy, len, &hdr);
	if (rc == FERRY_VMMP_E_OK && msg.hdr.type == FERRY_VMMP_FREE_HINT) {
		struct ferry_vmmp_range r;

		/* The zero-copy entries are inside the exact-size buffer. */
		for (uint32_t i = 0; i < msg.u.hints.count; i++)
			ferry_vmmp_hint_entry(&msg.u.hints, i, &r);
	}
	free(copy);
	assert_true(rc != FERRY_VMMP_E_OK || hrc == FERRY_VMMP_E_OK);
	return rc;
}

static int decode_fc(const uint8_t *src, size_t len, unsigned int nfds, char *why, size_t why_len)
{
	uint8_t *copy = malloc(len);
	int rc;

	assert_true(copy != NULL || len == 0);
	if (len)
		memcpy(copy, src, len);
	rc = ferry_vmmp_fc_decode(copy, len, nfds, &hs, why, why_len);
	free(copy);
	return rc;
}

static void check_prefixes(const char *name, const uint8_t *data, size_t len, unsigned int nfds, int whole)
{
	struct ferry_vmmp_hdr hdr;
	int hrc = ferry_vmmp_hdr_decode(data, len, &hdr);

	for (size_t cut = 0; cut < len; cut++) {
		int want = whole, got = decode_bin(data, cut, nfds);

		if (cut < FERRY_VMMP_HDR_LEN)
			want = FERRY_VMMP_E_TRUNCATED;
		else if (hrc == FERRY_VMMP_E_OK && cut - FERRY_VMMP_HDR_LEN < hdr.payload_len)
			want = FERRY_VMMP_E_TRUNCATED;
		if (got != want)
			fail_msg("%s cut to %zu bytes: decoded as %d, expected %d", name, cut, got, want);
	}
}

/* Run every file with extension @ext in @dir; return the number of malformed ones. */
static int run_dir(const char *dir_path, const char *ext, int default_fds, bool json)
{
	DIR *dir = opendir(dir_path);
	struct dirent *de;
	int files = 0, malformed = 0, failures = 0;

	if (!dir)
		fail_msg("cannot open %s: %s", dir_path, strerror(errno));
	while ((de = readdir(dir)) != NULL) {
		char path[4096], why[256] = "";
		struct expect x;
		size_t len;
		uint8_t *data;
		int got;

		if (!strstr(de->d_name, ext))
			continue;
		x = parse_name(de->d_name, ext);
		if (x.code < 0) {
			print_error("%s: name does not end in [.F<n>].E<code>%s\n", de->d_name, ext);
			failures++;
			continue;
		}
		if (x.fds < 0)
			x.fds = default_fds;
		snprintf(path, sizeof(path), "%s/%s", dir_path, de->d_name);
		data = read_file(path, &len);
		if (json) {
			size_t frame;
			int frc = ferry_vmmp_fc_frame(data, len, &frame);

			got = decode_fc(data, len, (unsigned int)x.fds, why, sizeof(why));
			/* Whatever decodes was framed as one complete array. */
			if (got == FERRY_VMMP_E_OK && (frc != FERRY_VMMP_E_OK || frame > len))
				fail_msg("%s decodes but frames as %d", de->d_name, frc);
			/* A failure always explains itself. */
			if (got != FERRY_VMMP_E_OK && why[0] == '\0')
				fail_msg("%s: code %d without a reason", de->d_name, got);
		} else {
			got = decode_bin(data, len, (unsigned int)x.fds);
			check_prefixes(de->d_name, data, len, (unsigned int)x.fds, x.code);
		}
		if (got != x.code) {
			print_error("%s: decoded as %d (%s), expected %d (%s) %s\n", de->d_name, got,
				    ferry_vmmp_errcode_str((uint32_t)got), x.code,
				    ferry_vmmp_errcode_str((uint32_t)x.code), why);
			failures++;
		}
		free(data);
		files++;
		malformed += x.code != FERRY_VMMP_E_OK;
	}
	closedir(dir);
	print_message("%s: %d files, %d malformed, %d failures\n", dir_path, files, malformed, failures);
	assert_int_equal(failures, 0);
	return malformed;
}

static void test_binary_corpus(void **state)
{
	(void)state;
	assert_true(run_dir(CORPUS_DIR, ".bin", 0, false) >= BIN_MIN);
}

static void test_firecracker_corpus(void **state)
{
	(void)state;
	assert_true(run_dir(FC_DIR, ".json", 1, true) >= FC_MIN);
}

static void test_name_parser(void **state)
{
	struct expect x;

	(void)state;
	x = parse_name("bad-magic.E2.bin", ".bin");
	assert_int_equal(x.code, 2);
	assert_int_equal(x.fds, -1);
	x = parse_name("register.F2.E13.bin", ".bin");
	assert_int_equal(x.code, 13);
	assert_int_equal(x.fds, 2);
	x = parse_name("fc-v1.12-both.E0.json", ".json");
	assert_int_equal(x.code, 0);
	assert_int_equal(x.fds, -1);
	x = parse_name("fc-two.F2.E13.json", ".json");
	assert_int_equal(x.fds, 2);
	assert_int_equal(parse_name("x.E28.bin", ".bin").code, -1);
	assert_int_equal(parse_name("x.E.bin", ".bin").code, -1);
	assert_int_equal(parse_name("x.E7x.bin", ".bin").code, -1);
	assert_int_equal(parse_name("E7.bin", ".bin").code, -1);
	assert_int_equal(parse_name("x.E7.json", ".bin").code, -1);
	assert_int_equal(parse_name("x.Fz.E7.bin", ".bin").code, -1);
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
