/*
 * Page protocol codec: round trips at the protocol limits, every header
 * check, every body rule, and encoders refusing bad arguments and short
 * buffers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/page.h"
#include "proto/wire.h"

#define BIG (FERRY_PAGE_HDR_LEN + FERRY_PAGE_MAX_PAYLOAD)

static uint8_t buf[4096];
static struct ferry_page_msg msg;

/* ---------------------------------------------------------------- helpers */

static int is_reply(uint8_t type)
{
	return type == FERRY_PAGE_CHALLENGE || type == FERRY_PAGE_AUTH_OK || type == FERRY_PAGE_ALLOC_OK ||
	       type == FERRY_PAGE_FREE_OK || type == FERRY_PAGE_READ_DATA || type == FERRY_PAGE_WRITE_OK ||
	       type == FERRY_PAGE_STATS_OK || type == FERRY_PAGE_ERROR || type == FERRY_PAGE_SHARE_OK ||
	       type == FERRY_PAGE_ATTACH_OK || type == FERRY_PAGE_DETACH_OK || type == FERRY_PAGE_UNSHARE_OK ||
	       type == FERRY_PAGE_KEEP_OK || type == FERRY_PAGE_CLAIM_OK || type == FERRY_PAGE_DISCARD_OK;
}

/* Hand-built message: a correct header for @type around @n payload bytes. */
static size_t raw(uint8_t *out, uint8_t type, const void *payload, uint32_t n)
{
	wire_put_u32(out, FERRY_PAGE_MAGIC);
	out[4] = FERRY_PAGE_VERSION;
	out[5] = type;
	wire_put_u16(out + 6, is_reply(type) ? FERRY_PAGE_F_REPLY : 0);
	wire_put_u64(out + 8, 0x0102030405060708ull);
	wire_put_u32(out + 16, n);
	wire_put_u32(out + 20, 0);
	if (n)
		memcpy(out + FERRY_PAGE_HDR_LEN, payload, n);
	return FERRY_PAGE_HDR_LEN + n;
}

/*
 * Decode @len bytes from an exactly-sized heap copy so ASan sees over-reads.
 * The copy lives until the next call: decoded READ/WRITE point into it.
 */
static int decode_exact(const uint8_t *src, size_t len, struct ferry_page_msg *m)
{
	static uint8_t *copy;

	free(copy);
	copy = malloc(len);
	assert_true(copy != NULL || len == 0);
	if (len)
		memcpy(copy, src, len);
	return ferry_page_decode(copy, len, m);
}

/*
 * Encoders must refuse every buffer smaller than the message with
 * -FERRY_E_TOO_LARGE. @enc re-runs the encoder with a given capacity.
 */
typedef int (*enc_fn)(uint8_t *out, size_t cap);

static void check_caps(enc_fn enc, int need)
{
	uint8_t *tmp = malloc((size_t)need);

	assert_non_null(tmp);
	for (int cap = 0; cap < need; cap++)
		assert_int_equal(enc(tmp, (size_t)cap), -FERRY_E_TOO_LARGE);
	assert_int_equal(enc(tmp, (size_t)need), need);
	free(tmp);
}

/* ---------------------------------------------------------------- HELLO */

static char name64[FERRY_PAGE_NAME_MAX + 1];

static void fill_name64(void)
{
	/* Every printable character appears somewhere across the two boundary names. */
	for (unsigned int i = 0; i < FERRY_PAGE_NAME_MAX; i++)
		name64[i] = (char)(0x20 + (i * 3) % 95);
	name64[FERRY_PAGE_NAME_MAX] = '\0';
}

static void test_hello_roundtrip(void **state)
{
	static const char *names[] = { "a", " ", "~", "vm-1.host_a:42", name64 };
	char all[96];
	int n;

	(void)state;
	fill_name64();
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		n = ferry_page_encode_hello(UINT64_MAX, names[i], 1, 3, buf, sizeof(buf));
		assert_int_equal(n, FERRY_PAGE_HDR_LEN + 8 + strlen(names[i]));
		assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
		assert_int_equal(msg.hdr.type, FERRY_PAGE_HELLO);
		assert_int_equal(msg.hdr.flags, 0);
		assert_true(msg.hdr.request_id == UINT64_MAX);
		assert_int_equal(msg.u.hello.version_min, 1);
		assert_int_equal(msg.u.hello.version_max, 3);
		assert_int_equal(msg.u.hello.features, 0);
		assert_int_equal(msg.u.hello.name_len, strlen(names[i]));
		assert_string_equal(msg.u.hello.name, names[i]);
	}
	/* All 95 printable characters, in 64- and 31-byte slices. */
	for (int c = 0x20; c <= 0x7e; c++)
		all[c - 0x20] = (char)c;
	all[95] = '\0';
	n = ferry_page_encode_hello(1, all + 64, 0, 0, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
	assert_string_equal(msg.u.hello.name, all + 64);
	all[64] = '\0';
	n = ferry_page_encode_hello(1, all, 255, 255, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
	assert_string_equal(msg.u.hello.name, all);
	assert_int_equal(msg.u.hello.version_min, 255);
}

static int enc_hello64(uint8_t *out, size_t cap)
{
	return ferry_page_encode_hello(7, name64, 1, 1, out, cap);
}

static void test_hello_encode_rejects(void **state)
{
	char long_name[FERRY_PAGE_NAME_MAX + 2];

	(void)state;
	fill_name64();
	memset(long_name, 'x', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	assert_int_equal(ferry_page_encode_hello(1, NULL, 1, 1, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_hello(1, "", 1, 1, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_hello(1, long_name, 1, 1, buf, sizeof(buf)), -FERRY_E_TOO_LARGE);
	assert_int_equal(ferry_page_encode_hello(1, "tab\there", 1, 1, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_hello(1, "del\x7f", 1, 1, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_hello(1, "hi\xc3\xa9", 1, 1, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_hello(1, "a", 2, 1, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_hello(1, "a", 1, 1, NULL, 100), -FERRY_E_MALFORMED);
	check_caps(enc_hello64, FERRY_PAGE_HDR_LEN + 8 + FERRY_PAGE_NAME_MAX);
}

static void test_hello_decode_rejects(void **state)
{
	uint8_t p[8 + 80] = { 1, 1, 4, 0, 0, 0, 0, 0, 'a', 'b', 'c', 'd' };
	uint8_t q[sizeof(p)];
	size_t n;

	(void)state;
	n = raw(buf, FERRY_PAGE_HELLO, p, 12);
	assert_int_equal(decode_exact(buf, n, &msg), FERRY_E_OK);
	/* features is carried, not judged. */
	memcpy(q, p, sizeof(p));
	wire_put_u32(q + 4, 0xdeadbeef);
	n = raw(buf, FERRY_PAGE_HELLO, q, 12);
	assert_int_equal(decode_exact(buf, n, &msg), FERRY_E_OK);
	assert_int_equal(msg.u.hello.features, 0xdeadbeef);

	n = raw(buf, FERRY_PAGE_HELLO, p, 7);            /* shorter than the fixed part */
	assert_int_equal(decode_exact(buf, n, &msg), FERRY_E_MALFORMED);
	n = raw(buf, FERRY_PAGE_HELLO, p, 11);           /* name_len says more than present */
	assert_int_equal(decode_exact(buf, n, &msg), FERRY_E_MALFORMED);
	n = raw(buf, FERRY_PAGE_HELLO, p, 13);           /* ... and less */
	assert_int_equal(decode_exact(buf, n, &msg), FERRY_E_MALFORMED);

	memcpy(q, p, sizeof(p));
	q[3] = 1;                                        /* reserved */
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_HELLO, q, 12), &msg), FERRY_E_MALFORMED);
	memcpy(q, p, sizeof(p));
	q[2] = 0;                                        /* empty name */
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_HELLO, q, 8), &msg), FERRY_E_MALFORMED);
	memcpy(q, p, sizeof(p));
	q[2] = 65;
	memset(q + 8, 'n', 65);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_HELLO, q, 8 + 65), &msg), FERRY_E_TOO_LARGE);
	q[2] = 64;
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_HELLO, q, 8 + 64), &msg), FERRY_E_OK);
	for (int bad = 0; bad < 256; bad++) {
		if (bad >= 0x20 && bad <= 0x7e)
			continue;
		memcpy(q, p, sizeof(p));
		q[9] = (uint8_t)bad;
		assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_HELLO, q, 12), &msg), FERRY_E_MALFORMED);
	}
	memcpy(q, p, sizeof(p));
	q[0] = 2;                                        /* version_min > version_max */
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_HELLO, q, 12), &msg), FERRY_E_MALFORMED);
}

/* ---------------------------------------------------------------- auth */

static uint8_t nonce[FERRY_PAGE_NONCE_LEN], mac[FERRY_PAGE_MAC_LEN];

static void fill_keys(void)
{
	for (unsigned int i = 0; i < FERRY_PAGE_NONCE_LEN; i++) {
		nonce[i] = (uint8_t)(i * 7 + 1);
		mac[i] = (uint8_t)(0xff - i);
	}
}

static int enc_challenge(uint8_t *out, size_t cap)
{
	return ferry_page_encode_challenge(2, 1, nonce, out, cap);
}

static int enc_auth(uint8_t *out, size_t cap)
{
	return ferry_page_encode_auth(3, nonce, mac, out, cap);
}

static struct ferry_page_auth_ok auth_ok_in;

static int enc_auth_ok(uint8_t *out, size_t cap)
{
	return ferry_page_encode_auth_ok(4, &auth_ok_in, out, cap);
}

static void test_challenge_auth_roundtrip(void **state)
{
	int n;

	(void)state;
	fill_keys();
	n = ferry_page_encode_challenge(2, 1, nonce, buf, sizeof(buf));
	assert_int_equal(n, FERRY_PAGE_HDR_LEN + 36);
	assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
	assert_int_equal(msg.hdr.type, FERRY_PAGE_CHALLENGE);
	assert_int_equal(msg.hdr.flags, FERRY_PAGE_F_REPLY);
	assert_int_equal(msg.u.challenge.version, 1);
	assert_memory_equal(msg.u.challenge.nonce, nonce, sizeof(nonce));
	check_caps(enc_challenge, n);
	assert_int_equal(ferry_page_encode_challenge(2, 1, NULL, buf, sizeof(buf)), -FERRY_E_MALFORMED);

	n = ferry_page_encode_auth(3, nonce, mac, buf, sizeof(buf));
	assert_int_equal(n, FERRY_PAGE_HDR_LEN + 64);
	assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
	assert_int_equal(msg.hdr.flags, 0);
	assert_memory_equal(msg.u.auth.nonce, nonce, sizeof(nonce));
	assert_memory_equal(msg.u.auth.mac, mac, sizeof(mac));
	check_caps(enc_auth, n);
	assert_int_equal(ferry_page_encode_auth(3, NULL, mac, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_auth(3, nonce, NULL, buf, sizeof(buf)), -FERRY_E_MALFORMED);

	memcpy(auth_ok_in.mac, mac, sizeof(mac));
	auth_ok_in.session_id = UINT64_MAX;
	auth_ok_in.quota_bytes = UINT64_MAX - 1;
	for (uint32_t md = 1; md; md = md == 1 ? FERRY_PAGE_MAX_DATA : 0) {
		auth_ok_in.max_data = md;
		n = ferry_page_encode_auth_ok(4, &auth_ok_in, buf, sizeof(buf));
		assert_int_equal(n, FERRY_PAGE_HDR_LEN + 56);
		assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
		assert_int_equal(msg.hdr.flags, FERRY_PAGE_F_REPLY);
		assert_memory_equal(msg.u.auth_ok.mac, mac, sizeof(mac));
		assert_true(msg.u.auth_ok.session_id == UINT64_MAX);
		assert_true(msg.u.auth_ok.quota_bytes == UINT64_MAX - 1);
		assert_int_equal(msg.u.auth_ok.max_data, md);
	}
	check_caps(enc_auth_ok, n);
	auth_ok_in.max_data = 0;
	assert_int_equal(ferry_page_encode_auth_ok(4, &auth_ok_in, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	auth_ok_in.max_data = FERRY_PAGE_MAX_DATA + 1;
	assert_int_equal(ferry_page_encode_auth_ok(4, &auth_ok_in, buf, sizeof(buf)), -FERRY_E_TOO_LARGE);
	assert_int_equal(ferry_page_encode_auth_ok(4, NULL, buf, sizeof(buf)), -FERRY_E_MALFORMED);
}

static void test_auth_decode_rejects(void **state)
{
	uint8_t p[64] = { 0 };

	(void)state;
	p[0] = 1;
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_CHALLENGE, p, 36), &msg), FERRY_E_OK);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_CHALLENGE, p, 35), &msg), FERRY_E_MALFORMED);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_CHALLENGE, p, 37), &msg), FERRY_E_MALFORMED);
	for (int i = 1; i < 4; i++) {
		p[i] = 0x80;
		assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_CHALLENGE, p, 36), &msg),
				 FERRY_E_MALFORMED);
		p[i] = 0;
	}
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_AUTH, p, 64), &msg), FERRY_E_OK);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_AUTH, p, 63), &msg), FERRY_E_MALFORMED);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_AUTH, p, 0), &msg), FERRY_E_MALFORMED);

	memset(p, 0, sizeof(p));
	wire_put_u32(p + 48, 4096);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_AUTH_OK, p, 56), &msg), FERRY_E_OK);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_AUTH_OK, p, 55), &msg), FERRY_E_MALFORMED);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_AUTH_OK, p, 57), &msg), FERRY_E_MALFORMED);
	wire_put_u32(p + 52, 1);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_AUTH_OK, p, 56), &msg), FERRY_E_MALFORMED);
	wire_put_u32(p + 52, 0);
	wire_put_u32(p + 48, 0);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_AUTH_OK, p, 56), &msg), FERRY_E_MALFORMED);
	wire_put_u32(p + 48, FERRY_PAGE_MAX_DATA + 1);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_AUTH_OK, p, 56), &msg), FERRY_E_TOO_LARGE);
}

/* ---------------------------------------------------------------- extents */

static int enc_alloc(uint8_t *out, size_t cap)
{
	return ferry_page_encode_alloc(5, 4096, 0, out, cap);
}

static struct ferry_page_extent ext_in;

static int enc_alloc_ok(uint8_t *out, size_t cap)
{
	return ferry_page_encode_alloc_ok(6, &ext_in, out, cap);
}

static int enc_free(uint8_t *out, size_t cap)
{
	return ferry_page_encode_free(7, 1, out, cap);
}

static int enc_free_ok(uint8_t *out, size_t cap)
{
	return ferry_page_encode_free_ok(8, 1, out, cap);
}

static void test_extent_roundtrip(void **state)
{
	static const uint64_t lengths[] = { 4096, 1u << 21, UINT64_MAX & ~4095ull };
	int n;

	(void)state;
	for (size_t i = 0; i < 3; i++) {
		n = ferry_page_encode_alloc(5, lengths[i], 0, buf, sizeof(buf));
		assert_int_equal(n, FERRY_PAGE_HDR_LEN + 16);
		assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
		assert_int_equal(msg.hdr.type, FERRY_PAGE_ALLOC);
		assert_true(msg.u.alloc.length == lengths[i]);
		assert_int_equal(msg.u.alloc.flags, 0);
	}
	check_caps(enc_alloc, FERRY_PAGE_HDR_LEN + 16);
	assert_int_equal(ferry_page_encode_alloc(5, 0, 0, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_alloc(5, 4095, 0, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_alloc(5, 4097, 0, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_alloc(5, 4096, 1, buf, sizeof(buf)), -FERRY_E_MALFORMED);

	ext_in = (struct ferry_page_extent){ .extent_id = UINT32_MAX, .rkey = 0x12345678,
					     .length = 1u << 21 };
	ext_in.base = UINT64_MAX - ext_in.length;       /* last byte at UINT64_MAX - 1: fits */
	n = ferry_page_encode_alloc_ok(6, &ext_in, buf, sizeof(buf));
	assert_int_equal(n, FERRY_PAGE_HDR_LEN + 24);
	assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
	assert_int_equal(msg.hdr.flags, FERRY_PAGE_F_REPLY);
	assert_memory_equal(&msg.u.alloc_ok, &ext_in, sizeof(ext_in));
	check_caps(enc_alloc_ok, n);
	ext_in.base++;
	assert_int_equal(ferry_page_encode_alloc_ok(6, &ext_in, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	ext_in.base = 0;
	ext_in.length = 0;
	assert_int_equal(ferry_page_encode_alloc_ok(6, &ext_in, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	ext_in.length = 100;
	assert_int_equal(ferry_page_encode_alloc_ok(6, &ext_in, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_alloc_ok(6, NULL, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	ext_in.length = 4096;

	n = ferry_page_encode_free(7, UINT32_MAX, buf, sizeof(buf));
	assert_int_equal(n, FERRY_PAGE_HDR_LEN + 8);
	assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
	assert_int_equal(msg.hdr.type, FERRY_PAGE_FREE);
	assert_int_equal(msg.hdr.flags, 0);
	assert_int_equal(msg.u.free.extent_id, UINT32_MAX);
	n = ferry_page_encode_free_ok(8, 0, buf, sizeof(buf));
	assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
	assert_int_equal(msg.hdr.type, FERRY_PAGE_FREE_OK);
	assert_int_equal(msg.hdr.flags, FERRY_PAGE_F_REPLY);
	assert_int_equal(msg.u.free.extent_id, 0);
	check_caps(enc_free, FERRY_PAGE_HDR_LEN + 8);
	check_caps(enc_free_ok, FERRY_PAGE_HDR_LEN + 8);
}

static void test_extent_decode_rejects(void **state)
{
	uint8_t p[32] = { 0 };

	(void)state;
	wire_put_u64(p, 8192);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_ALLOC, p, 16), &msg), FERRY_E_OK);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_ALLOC, p, 15), &msg), FERRY_E_MALFORMED);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_ALLOC, p, 17), &msg), FERRY_E_MALFORMED);
	wire_put_u64(p, 8191);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_ALLOC, p, 16), &msg), FERRY_E_BAD_ALIGNMENT);
	wire_put_u64(p, 0);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_ALLOC, p, 16), &msg), FERRY_E_MALFORMED);
	wire_put_u64(p, 4096);
	wire_put_u32(p + 8, 1);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_ALLOC, p, 16), &msg), FERRY_E_BAD_FLAGS);
	wire_put_u32(p + 8, 0);
	wire_put_u32(p + 12, 1);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_ALLOC, p, 16), &msg), FERRY_E_MALFORMED);

	memset(p, 0, sizeof(p));
	wire_put_u64(p + 8, UINT64_MAX - 4095);                /* base */
	wire_put_u64(p + 16, 4096);                            /* base + length = 2^64: overflows */
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_ALLOC_OK, p, 24), &msg), FERRY_E_MALFORMED);
	wire_put_u64(p + 8, UINT64_MAX - 4096);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_ALLOC_OK, p, 24), &msg), FERRY_E_OK);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_ALLOC_OK, p, 23), &msg), FERRY_E_MALFORMED);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_ALLOC_OK, p, 25), &msg), FERRY_E_MALFORMED);
	wire_put_u64(p + 16, 0);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_ALLOC_OK, p, 24), &msg), FERRY_E_MALFORMED);
	wire_put_u64(p + 16, 12);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_ALLOC_OK, p, 24), &msg), FERRY_E_BAD_ALIGNMENT);

	memset(p, 0, sizeof(p));
	for (uint8_t t = FERRY_PAGE_FREE; t <= FERRY_PAGE_FREE_OK; t++) {
		assert_int_equal(decode_exact(buf, raw(buf, t, p, 8), &msg), FERRY_E_OK);
		assert_int_equal(decode_exact(buf, raw(buf, t, p, 4), &msg), FERRY_E_MALFORMED);
		assert_int_equal(decode_exact(buf, raw(buf, t, p, 9), &msg), FERRY_E_MALFORMED);
		p[7] = 1;
		assert_int_equal(decode_exact(buf, raw(buf, t, p, 8), &msg), FERRY_E_MALFORMED);
		p[7] = 0;
	}
}

/* ---------------------------------------------------------------- READ / WRITE */

static struct ferry_page_iov iovs[FERRY_PAGE_MAX_IOV + 1];

static void fill_iovs(uint32_t count, uint32_t length)
{
	for (uint32_t i = 0; i < count; i++) {
		iovs[i].key = 0x100 + i;
		iovs[i].length = length;
		iovs[i].offset = (uint64_t)i << 32;
	}
}

static void check_rw(const struct ferry_page_rw *rw, uint32_t count)
{
	struct ferry_page_iov e;

	assert_int_equal(rw->count, count);
	for (uint32_t i = 0; i < count; i++) {
		ferry_page_rw_entry(rw, i, &e);
		assert_int_equal(e.key, iovs[i].key);
		assert_int_equal(e.length, iovs[i].length);
		assert_true(e.offset == iovs[i].offset);
	}
}

static void test_read_roundtrip(void **state)
{
	uint8_t *big = malloc(BIG);
	int n;

	(void)state;
	assert_non_null(big);
	/* One entry at the very top of the address space. */
	iovs[0] = (struct ferry_page_iov){ .key = 9, .length = FERRY_PAGE_MAX_DATA,
					   .offset = UINT64_MAX - FERRY_PAGE_MAX_DATA };
	n = ferry_page_encode_rw_prefix(FERRY_PAGE_READ, 11, iovs, 1, 0, big, BIG);
	assert_int_equal(n, FERRY_PAGE_HDR_LEN + 8 + 16);
	assert_int_equal(decode_exact(big, (size_t)n, &msg), FERRY_E_OK);
	assert_int_equal(msg.hdr.type, FERRY_PAGE_READ);
	assert_int_equal(msg.hdr.flags, 0);
	assert_true(msg.u.rw.data_len == FERRY_PAGE_MAX_DATA);
	assert_null(msg.u.rw.data);
	check_rw(&msg.u.rw, 1);

	/* MAX_IOV entries adding up to exactly MAX_DATA. */
	fill_iovs(FERRY_PAGE_MAX_IOV, FERRY_PAGE_MAX_DATA / FERRY_PAGE_MAX_IOV);
	n = ferry_page_encode_rw_prefix(FERRY_PAGE_READ, 12, iovs, FERRY_PAGE_MAX_IOV, 0, big, BIG);
	assert_int_equal(n, FERRY_PAGE_HDR_LEN + 8 + FERRY_PAGE_MAX_IOV * 16);
	assert_int_equal(decode_exact(big, (size_t)n, &msg), FERRY_E_OK);
	assert_true(msg.u.rw.data_len == FERRY_PAGE_MAX_DATA);
	check_rw(&msg.u.rw, FERRY_PAGE_MAX_IOV);
	free(big);
}

static void test_write_roundtrip(void **state)
{
	uint8_t *big = malloc(BIG);
	int n;

	(void)state;
	assert_non_null(big);
	/* The largest message there is: MAX_IOV entries and MAX_DATA bytes. */
	fill_iovs(FERRY_PAGE_MAX_IOV, FERRY_PAGE_MAX_DATA / FERRY_PAGE_MAX_IOV);
	n = ferry_page_encode_rw_prefix(FERRY_PAGE_WRITE, 13, iovs, FERRY_PAGE_MAX_IOV, FERRY_PAGE_MAX_DATA,
					big, BIG);
	assert_int_equal(n, FERRY_PAGE_HDR_LEN + 8 + FERRY_PAGE_MAX_IOV * 16);
	for (size_t i = 0; i < FERRY_PAGE_MAX_DATA; i++)
		big[(size_t)n + i] = (uint8_t)(i * 13);
	assert_int_equal(decode_exact(big, BIG, &msg), FERRY_E_OK);
	assert_int_equal(msg.hdr.payload_len, FERRY_PAGE_MAX_PAYLOAD);
	assert_true(msg.u.rw.data_len == FERRY_PAGE_MAX_DATA);
	check_rw(&msg.u.rw, FERRY_PAGE_MAX_IOV);
	assert_memory_equal(msg.u.rw.data, big + n, FERRY_PAGE_MAX_DATA);
	/* Decoded pointers point into the buffer: zero copy. */
	assert_int_equal(ferry_page_decode(big, BIG, &msg), FERRY_E_OK);
	assert_ptr_equal(msg.u.rw.entries, big + FERRY_PAGE_HDR_LEN + 8);
	assert_ptr_equal(msg.u.rw.data, big + n);
	/* One byte missing is a truncated buffer, not a malformed message. */
	assert_int_equal(decode_exact(big, BIG - 1, &msg), FERRY_E_TRUNCATED);

	/* A one-byte write. */
	iovs[0] = (struct ferry_page_iov){ .key = 1, .length = 1, .offset = UINT64_MAX - 1 };
	n = ferry_page_encode_rw_prefix(FERRY_PAGE_WRITE, 14, iovs, 1, 1, big, BIG);
	assert_int_equal(n, FERRY_PAGE_HDR_LEN + 24);
	big[n] = 0x5a;
	assert_int_equal(decode_exact(big, (size_t)n + 1, &msg), FERRY_E_OK);
	assert_int_equal(msg.u.rw.data_len, 1);
	assert_int_equal(msg.u.rw.data[0], 0x5a);
	assert_int_equal(decode_exact(big, (size_t)n, &msg), FERRY_E_TRUNCATED);
	free(big);
}

static void test_rw_encode_rejects(void **state)
{
	(void)state;
	fill_iovs(FERRY_PAGE_MAX_IOV + 1, 4096);
	assert_int_equal(ferry_page_encode_rw_prefix(FERRY_PAGE_READ_DATA, 1, iovs, 1, 0, buf, sizeof(buf)),
			 -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_rw_prefix(0, 1, iovs, 1, 0, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_rw_prefix(FERRY_PAGE_READ, 1, iovs, 0, 0, buf, sizeof(buf)),
			 -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_rw_prefix(FERRY_PAGE_READ, 1, NULL, 1, 0, buf, sizeof(buf)),
			 -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_rw_prefix(FERRY_PAGE_READ, 1, iovs, FERRY_PAGE_MAX_IOV + 1, 0,
						     buf, sizeof(buf)), -FERRY_E_TOO_LARGE);
	/* READ carries no data; WRITE's data_len must be the sum of lengths. */
	assert_int_equal(ferry_page_encode_rw_prefix(FERRY_PAGE_READ, 1, iovs, 1, 4096, buf, sizeof(buf)),
			 -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_rw_prefix(FERRY_PAGE_WRITE, 1, iovs, 2, 4096, buf, sizeof(buf)),
			 -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_rw_prefix(FERRY_PAGE_WRITE, 1, iovs, 2, 8193, buf, sizeof(buf)),
			 -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_rw_prefix(FERRY_PAGE_WRITE, 1, iovs, 2, 8192, buf, sizeof(buf)),
			 FERRY_PAGE_HDR_LEN + 8 + 32);
	/* Sum above MAX_DATA: 1025 x 4096 would be, but count already refuses; use big entries. */
	iovs[0].length = FERRY_PAGE_MAX_DATA;
	iovs[1].length = 1;
	assert_int_equal(ferry_page_encode_rw_prefix(FERRY_PAGE_READ, 1, iovs, 2, 0, buf, sizeof(buf)),
			 -FERRY_E_TOO_LARGE);
	iovs[0].length = FERRY_PAGE_MAX_DATA + 1;
	assert_int_equal(ferry_page_encode_rw_prefix(FERRY_PAGE_READ, 1, iovs, 1, 0, buf, sizeof(buf)),
			 -FERRY_E_TOO_LARGE);
	iovs[0].length = 0;
	assert_int_equal(ferry_page_encode_rw_prefix(FERRY_PAGE_READ, 1, iovs, 1, 0, buf, sizeof(buf)),
			 -FERRY_E_MALFORMED);
	iovs[0].length = 2;
	iovs[0].offset = UINT64_MAX - 1;
	assert_int_equal(ferry_page_encode_rw_prefix(FERRY_PAGE_READ, 1, iovs, 1, 0, buf, sizeof(buf)),
			 -FERRY_E_MALFORMED);
	iovs[0].length = 1;
	assert_int_equal(ferry_page_encode_rw_prefix(FERRY_PAGE_READ, 1, iovs, 1, 0, buf, sizeof(buf)),
			 FERRY_PAGE_HDR_LEN + 24);
	/* Short buffers: every capacity below header + vector. */
	for (size_t cap = 0; cap < FERRY_PAGE_HDR_LEN + 24; cap++)
		assert_int_equal(ferry_page_encode_rw_prefix(FERRY_PAGE_READ, 1, iovs, 1, 0, buf, cap),
				 -FERRY_E_TOO_LARGE);
	assert_int_equal(ferry_page_encode_rw_prefix(FERRY_PAGE_READ, 1, iovs, 1, 0, NULL, 100),
			 -FERRY_E_MALFORMED);
}

/* Build a READ/WRITE payload by hand: count, reserved, entries. */
static uint32_t rw_payload(uint8_t *p, uint32_t count, uint32_t reserved)
{
	wire_put_u32(p, count);
	wire_put_u32(p + 4, reserved);
	for (uint32_t i = 0; i < count; i++) {
		wire_put_u32(p + 8 + 16 * i, i);
		wire_put_u32(p + 12 + 16 * i, 8);
		wire_put_u64(p + 16 + 16 * i, 4096ull * i);
	}
	return 8 + 16 * count;
}

static void test_rw_decode_rules(void **state)
{
	static uint8_t p[8 + 16 * (FERRY_PAGE_MAX_IOV + 1) + 64];
	struct ferry_page_rw rw;
	uint32_t n;

	(void)state;
	n = rw_payload(p, 2, 0);
	assert_int_equal(ferry_page_rw_decode(FERRY_PAGE_READ, n, p, n, &rw), FERRY_E_OK);
	assert_int_equal(rw.count, 2);
	assert_int_equal(rw.data_len, 16);
	assert_null(rw.data);
	assert_ptr_equal(rw.entries, p + 8);
	/* WRITE: the vector alone is enough to check the request. */
	assert_int_equal(ferry_page_rw_decode(FERRY_PAGE_WRITE, n + 16, p, n, &rw), FERRY_E_OK);
	assert_int_equal(rw.data_len, 16);
	assert_null(rw.data);
	/* Bytes beyond the vector are ignored. */
	assert_int_equal(ferry_page_rw_decode(FERRY_PAGE_WRITE, n + 16, p, n + 16, &rw), FERRY_E_OK);

	/* Lying payload_len, both ways. */
	assert_int_equal(ferry_page_rw_decode(FERRY_PAGE_READ, n + 1, p, n + 1, &rw), FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_rw_decode(FERRY_PAGE_READ, n - 1, p, n, &rw), FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_rw_decode(FERRY_PAGE_WRITE, n + 15, p, n, &rw), FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_rw_decode(FERRY_PAGE_WRITE, n + 17, p, n, &rw), FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_rw_decode(FERRY_PAGE_READ, 7, p, 7, &rw), FERRY_E_MALFORMED);
	/* Vector not all there. */
	assert_int_equal(ferry_page_rw_decode(FERRY_PAGE_READ, n, p, n - 1, &rw), FERRY_E_TRUNCATED);
	assert_int_equal(ferry_page_rw_decode(FERRY_PAGE_READ, n, p, 7, &rw), FERRY_E_TRUNCATED);
	assert_int_equal(ferry_page_rw_decode(FERRY_PAGE_READ, n, NULL, 0, &rw), FERRY_E_TRUNCATED);
	/* Types other than READ and WRITE. */
	assert_int_equal(ferry_page_rw_decode(FERRY_PAGE_READ_DATA, n, p, n, &rw), FERRY_E_UNKNOWN_TYPE);
	assert_int_equal(ferry_page_rw_decode(0, n, p, n, &rw), FERRY_E_UNKNOWN_TYPE);
	/* Counts. */
	n = rw_payload(p, 0, 0);
	assert_int_equal(ferry_page_rw_decode(FERRY_PAGE_READ, n, p, n, &rw), FERRY_E_MALFORMED);
	n = rw_payload(p, FERRY_PAGE_MAX_IOV, 0);
	assert_int_equal(ferry_page_rw_decode(FERRY_PAGE_READ, n, p, n, &rw), FERRY_E_OK);
	n = rw_payload(p, FERRY_PAGE_MAX_IOV + 1, 0);
	assert_int_equal(ferry_page_rw_decode(FERRY_PAGE_WRITE, n + 8 * 1025, p, n, &rw), FERRY_E_TOO_LARGE);
	wire_put_u32(p, UINT32_MAX);
	assert_int_equal(ferry_page_rw_decode(FERRY_PAGE_WRITE, 24, p, 24, &rw), FERRY_E_TOO_LARGE);
	/* A count larger than payload_len allows. */
	n = rw_payload(p, 4, 0);
	assert_int_equal(ferry_page_rw_decode(FERRY_PAGE_READ, n - 16, p, n, &rw), FERRY_E_MALFORMED);
	/* Reserved. */
	n = rw_payload(p, 1, 1);
	assert_int_equal(ferry_page_rw_decode(FERRY_PAGE_READ, n, p, n, &rw), FERRY_E_MALFORMED);
	/* Entries. */
	n = rw_payload(p, 2, 0);
	wire_put_u32(p + 28, 0);                              /* entry 1 length */
	assert_int_equal(ferry_page_rw_decode(FERRY_PAGE_READ, n, p, n, &rw), FERRY_E_MALFORMED);
	wire_put_u32(p + 28, FERRY_PAGE_MAX_DATA + 1);
	assert_int_equal(ferry_page_rw_decode(FERRY_PAGE_READ, n, p, n, &rw), FERRY_E_TOO_LARGE);
	wire_put_u32(p + 28, FERRY_PAGE_MAX_DATA);            /* 8 + MAX_DATA in total */
	assert_int_equal(ferry_page_rw_decode(FERRY_PAGE_READ, n, p, n, &rw), FERRY_E_TOO_LARGE);
	wire_put_u32(p + 28, FERRY_PAGE_MAX_DATA - 8);
	assert_int_equal(ferry_page_rw_decode(FERRY_PAGE_READ, n, p, n, &rw), FERRY_E_OK);
	assert_true(rw.data_len == FERRY_PAGE_MAX_DATA);
	wire_put_u32(p + 28, 8);
	wire_put_u64(p + 32, UINT64_MAX - 7);                 /* offset + 8 == 2^64 */
	assert_int_equal(ferry_page_rw_decode(FERRY_PAGE_READ, n, p, n, &rw), FERRY_E_MALFORMED);
	wire_put_u64(p + 32, UINT64_MAX - 8);
	assert_int_equal(ferry_page_rw_decode(FERRY_PAGE_READ, n, p, n, &rw), FERRY_E_OK);
	/* payload_len above what any READ/WRITE may carry. */
	assert_int_equal(ferry_page_rw_decode(FERRY_PAGE_READ, 8 + 16 * FERRY_PAGE_MAX_IOV + 1, p, n, &rw),
			 FERRY_E_TOO_LARGE);
	assert_int_equal(ferry_page_rw_decode(FERRY_PAGE_WRITE, FERRY_PAGE_MAX_PAYLOAD + 1, p, n, &rw),
			 FERRY_E_TOO_LARGE);
}

static void test_read_data(void **state)
{
	uint8_t *big = malloc(BIG);
	int n;

	(void)state;
	assert_non_null(big);
	n = ferry_page_encode_read_data_prefix(15, FERRY_PAGE_MAX_IOV, FERRY_PAGE_MAX_DATA, big, BIG);
	assert_int_equal(n, FERRY_PAGE_HDR_LEN + 8);
	memset(big + n, 0xab, FERRY_PAGE_MAX_DATA);
	assert_int_equal(decode_exact(big, (size_t)n + FERRY_PAGE_MAX_DATA, &msg), FERRY_E_OK);
	assert_int_equal(msg.hdr.type, FERRY_PAGE_READ_DATA);
	assert_int_equal(msg.hdr.flags, FERRY_PAGE_F_REPLY);
	assert_int_equal(msg.u.rw.count, FERRY_PAGE_MAX_IOV);
	assert_true(msg.u.rw.data_len == FERRY_PAGE_MAX_DATA);
	assert_null(msg.u.rw.entries);
	assert_int_equal(ferry_page_decode(big, (size_t)n + FERRY_PAGE_MAX_DATA, &msg), FERRY_E_OK);
	assert_ptr_equal(msg.u.rw.data, big + n);
	assert_int_equal(decode_exact(big, (size_t)n + FERRY_PAGE_MAX_DATA - 1, &msg), FERRY_E_TRUNCATED);

	n = ferry_page_encode_read_data_prefix(16, 1, 0, buf, sizeof(buf));
	assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
	assert_int_equal(msg.u.rw.data_len, 0);

	assert_int_equal(ferry_page_encode_read_data_prefix(1, 0, 8, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_read_data_prefix(1, FERRY_PAGE_MAX_IOV + 1, 8, buf, sizeof(buf)),
			 -FERRY_E_TOO_LARGE);
	assert_int_equal(ferry_page_encode_read_data_prefix(1, 1, FERRY_PAGE_MAX_DATA + 1ull, buf, sizeof(buf)),
			 -FERRY_E_TOO_LARGE);
	assert_int_equal(ferry_page_encode_read_data_prefix(1, 1, UINT64_MAX, buf, sizeof(buf)),
			 -FERRY_E_TOO_LARGE);
	assert_int_equal(ferry_page_encode_read_data_prefix(1, 1, 8, NULL, 100), -FERRY_E_MALFORMED);
	for (size_t cap = 0; cap < FERRY_PAGE_HDR_LEN + 8; cap++)
		assert_int_equal(ferry_page_encode_read_data_prefix(1, 1, 8, buf, cap), -FERRY_E_TOO_LARGE);

	/* Decoder rules. */
	memset(big, 0, 16);
	wire_put_u32(big, 1);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_READ_DATA, big, 12), &msg), FERRY_E_OK);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_READ_DATA, big, 7), &msg), FERRY_E_MALFORMED);
	wire_put_u32(big + 4, 1);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_READ_DATA, big, 12), &msg), FERRY_E_MALFORMED);
	wire_put_u32(big + 4, 0);
	wire_put_u32(big, 0);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_READ_DATA, big, 12), &msg), FERRY_E_MALFORMED);
	wire_put_u32(big, FERRY_PAGE_MAX_IOV + 1);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_READ_DATA, big, 12), &msg), FERRY_E_TOO_LARGE);
	free(big);
}

static int enc_write_ok(uint8_t *out, size_t cap)
{
	return ferry_page_encode_write_ok(17, 3, out, cap);
}

/* ---------------------------------------------------------------- sharing */

static int enc_share_ok(uint8_t *out, size_t cap)
{
	struct ferry_page_share_ok ok = { .extent_id = 9, .rights = FERRY_PAGE_SHARE_WRITE };

	return ferry_page_encode_share_ok(1, &ok, out, cap);
}

static int enc_attach_ok(uint8_t *out, size_t cap)
{
	struct ferry_page_attach_ok ok = { .attach_id = 2, .rkey = 3, .base = 4096, .length = 8192, .rights = 3 };

	return ferry_page_encode_attach_ok(1, &ok, out, cap);
}

static void test_share_roundtrip(void **state)
{
	struct ferry_page_share_ok sok = { .extent_id = 0xfeedf00d, .rights = FERRY_PAGE_SHARE_RIGHTS };
	struct ferry_page_attach_ok aok = { .attach_id = 77, .rkey = 0x12345678, .base = 0x7f0000001000ull,
					    .length = 1u << 21, .rights = FERRY_PAGE_SHARE_READ };
	int n;

	(void)state;
	for (unsigned i = 0; i < FERRY_PAGE_TOKEN_LEN; i++)
		sok.token[i] = (uint8_t)(0xa0 + i);
	for (uint32_t r = 1; r <= FERRY_PAGE_SHARE_RIGHTS; r++) {
		n = ferry_page_encode_share(5, 0xfeedf00d, r, buf, sizeof(buf));
		assert_int_equal(n, FERRY_PAGE_HDR_LEN + 8);
		assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
		assert_int_equal(msg.hdr.flags, 0);
		assert_int_equal(msg.u.share.extent_id, 0xfeedf00d);
		assert_int_equal(msg.u.share.rights, r);
	}
	n = ferry_page_encode_share_ok(5, &sok, buf, sizeof(buf));
	assert_int_equal(n, FERRY_PAGE_HDR_LEN + 40);
	assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
	assert_int_equal(msg.hdr.flags, FERRY_PAGE_F_REPLY);
	assert_int_equal(msg.u.share_ok.extent_id, sok.extent_id);
	assert_int_equal(msg.u.share_ok.rights, sok.rights);
	assert_memory_equal(msg.u.share_ok.token, sok.token, FERRY_PAGE_TOKEN_LEN);
	check_caps(enc_share_ok, FERRY_PAGE_HDR_LEN + 40);

	n = ferry_page_encode_attach(6, sok.token, buf, sizeof(buf));
	assert_int_equal(n, FERRY_PAGE_HDR_LEN + 32);
	assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
	assert_memory_equal(msg.u.attach.token, sok.token, FERRY_PAGE_TOKEN_LEN);
	n = ferry_page_encode_attach_ok(6, &aok, buf, sizeof(buf));
	assert_int_equal(n, FERRY_PAGE_HDR_LEN + 32);
	assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
	assert_int_equal(msg.u.attach_ok.attach_id, 77);
	assert_int_equal(msg.u.attach_ok.rkey, 0x12345678);
	assert_int_equal(msg.u.attach_ok.base, 0x7f0000001000ull);
	assert_int_equal(msg.u.attach_ok.length, 1u << 21);
	assert_int_equal(msg.u.attach_ok.rights, FERRY_PAGE_SHARE_READ);
	check_caps(enc_attach_ok, FERRY_PAGE_HDR_LEN + 32);

	n = ferry_page_encode_detach(7, 42, buf, sizeof(buf));
	assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
	assert_int_equal(msg.hdr.type, FERRY_PAGE_DETACH);
	assert_int_equal(msg.u.detach.attach_id, 42);
	n = ferry_page_encode_detach_ok(7, 42, buf, sizeof(buf));
	assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
	assert_int_equal(msg.hdr.type, FERRY_PAGE_DETACH_OK);
	assert_int_equal(msg.u.detach.attach_id, 42);
	n = ferry_page_encode_unshare(8, 9, buf, sizeof(buf));
	assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
	assert_int_equal(msg.u.unshare.extent_id, 9);
	assert_int_equal(msg.u.unshare.revoked, 0);
	n = ferry_page_encode_unshare_ok(8, 9, 3, buf, sizeof(buf));
	assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
	assert_int_equal(msg.hdr.flags, FERRY_PAGE_F_REPLY);
	assert_int_equal(msg.u.unshare.extent_id, 9);
	assert_int_equal(msg.u.unshare.revoked, 3);
}

/* ---------------------------------------------------------------- kept extents */

static int enc_keep_ok(uint8_t *out, size_t cap)
{
	static const uint8_t token[FERRY_PAGE_TOKEN_LEN] = { 1, 2, 3 };

	return ferry_page_encode_keep_ok(1, 5, token, out, cap);
}

static int enc_claim_ok(uint8_t *out, size_t cap)
{
	struct ferry_page_extent e = { .extent_id = 5, .rkey = 6, .base = 8192, .length = 4096 };

	return ferry_page_encode_claim_ok(1, &e, out, cap);
}

static int enc_discard(uint8_t *out, size_t cap)
{
	static const uint8_t token[FERRY_PAGE_TOKEN_LEN] = { 9 };

	return ferry_page_encode_discard(1, token, out, cap);
}

static void test_keep_roundtrip(void **state)
{
	struct ferry_page_extent e = { .extent_id = 0xabcdef01, .rkey = 0x7777, .base = 0x7f0000400000ull,
				       .length = 3u << 20 };
	uint8_t token[FERRY_PAGE_TOKEN_LEN];
	int n;

	(void)state;
	for (unsigned i = 0; i < FERRY_PAGE_TOKEN_LEN; i++)
		token[i] = (uint8_t)(0x30 + 7 * i);
	n = ferry_page_encode_keep(3, 0xabcdef01, buf, sizeof(buf));
	assert_int_equal(n, FERRY_PAGE_HDR_LEN + 8);
	assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
	assert_int_equal(msg.hdr.type, FERRY_PAGE_KEEP);
	assert_int_equal(msg.hdr.flags, 0);
	assert_int_equal(msg.u.keep.extent_id, 0xabcdef01);

	n = ferry_page_encode_keep_ok(3, 0xabcdef01, token, buf, sizeof(buf));
	assert_int_equal(n, FERRY_PAGE_HDR_LEN + 40);
	assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
	assert_int_equal(msg.hdr.type, FERRY_PAGE_KEEP_OK);
	assert_int_equal(msg.hdr.flags, FERRY_PAGE_F_REPLY);
	assert_int_equal(msg.u.keep.extent_id, 0xabcdef01);
	assert_memory_equal(msg.u.keep.token, token, FERRY_PAGE_TOKEN_LEN);
	check_caps(enc_keep_ok, FERRY_PAGE_HDR_LEN + 40);

	n = ferry_page_encode_claim(4, token, buf, sizeof(buf));
	assert_int_equal(n, FERRY_PAGE_HDR_LEN + 32);
	assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
	assert_int_equal(msg.hdr.type, FERRY_PAGE_CLAIM);
	assert_memory_equal(msg.u.claim.token, token, FERRY_PAGE_TOKEN_LEN);

	n = ferry_page_encode_claim_ok(4, &e, buf, sizeof(buf));
	assert_int_equal(n, FERRY_PAGE_HDR_LEN + 24);
	assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
	assert_int_equal(msg.hdr.type, FERRY_PAGE_CLAIM_OK);
	assert_int_equal(msg.hdr.flags, FERRY_PAGE_F_REPLY);
	assert_int_equal(msg.u.claim_ok.extent_id, e.extent_id);
	assert_int_equal(msg.u.claim_ok.rkey, e.rkey);
	assert_int_equal(msg.u.claim_ok.base, e.base);
	assert_int_equal(msg.u.claim_ok.length, e.length);
	check_caps(enc_claim_ok, FERRY_PAGE_HDR_LEN + 24);

	n = ferry_page_encode_discard(5, token, buf, sizeof(buf));
	assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
	assert_int_equal(msg.hdr.type, FERRY_PAGE_DISCARD);
	assert_memory_equal(msg.u.claim.token, token, FERRY_PAGE_TOKEN_LEN);
	check_caps(enc_discard, FERRY_PAGE_HDR_LEN + 32);

	n = ferry_page_encode_discard_ok(5, 3u << 20, buf, sizeof(buf));
	assert_int_equal(n, FERRY_PAGE_HDR_LEN + 8);
	assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
	assert_int_equal(msg.hdr.type, FERRY_PAGE_DISCARD_OK);
	assert_int_equal(msg.u.discard_ok.length, 3u << 20);
}

static void test_keep_rejects(void **state)
{
	struct ferry_page_extent bad = { .extent_id = 1, .length = 4095 };
	uint8_t p[40] = { 0 };

	(void)state;
	/* Encoders refuse missing tokens and impossible extents. */
	assert_int_equal(ferry_page_encode_keep_ok(1, 1, NULL, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_claim(1, NULL, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_discard(1, NULL, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_claim_ok(1, &bad, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_claim_ok(1, NULL, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_discard_ok(1, 0, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_discard_ok(1, 4097, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	/* Decoders: reserved words, exact sizes. */
	wire_put_u32(p, 7);
	wire_put_u32(p + 4, 1);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_KEEP, p, 8), &msg), FERRY_E_MALFORMED);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_KEEP_OK, p, 40), &msg), FERRY_E_MALFORMED);
	wire_put_u32(p + 4, 0);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_KEEP, p, 8), &msg), FERRY_E_OK);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_KEEP, p, 12), &msg), FERRY_E_MALFORMED);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_KEEP_OK, p, 40), &msg), FERRY_E_OK);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_CLAIM, p, 31), &msg), FERRY_E_MALFORMED);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_DISCARD, p, 33), &msg), FERRY_E_MALFORMED);
	wire_put_u64(p, 0);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_DISCARD_OK, p, 8), &msg), FERRY_E_MALFORMED);
	wire_put_u64(p, 8192);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_DISCARD_OK, p, 8), &msg), FERRY_E_OK);
	wire_put_u64(p, 8191);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_DISCARD_OK, p, 8), &msg), FERRY_E_BAD_ALIGNMENT);
}

static void test_share_rejects(void **state)
{
	struct ferry_page_share_ok sok = { .extent_id = 1, .rights = 0 };
	struct ferry_page_attach_ok aok = { .attach_id = 1, .length = 4096, .rights = 4 };
	uint8_t p[40] = { 0 };

	(void)state;
	/* Encoders refuse bad rights and extents. */
	assert_int_equal(ferry_page_encode_share(1, 1, 0, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_share(1, 1, 4, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_share_ok(1, &sok, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_share_ok(1, NULL, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_attach(1, NULL, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_attach_ok(1, &aok, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	aok.rights = 1;
	aok.length = 4095;
	assert_int_equal(ferry_page_encode_attach_ok(1, &aok, buf, sizeof(buf)), -FERRY_E_MALFORMED);

	/* Decoders: rights, sizes, reserved words. */
	wire_put_u32(p, 1);
	wire_put_u32(p + 4, 1);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_SHARE, p, 8), &msg), FERRY_E_OK);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_SHARE, p, 9), &msg), FERRY_E_MALFORMED);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_SHARE, p, 7), &msg), FERRY_E_MALFORMED);
	wire_put_u32(p + 4, 0);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_SHARE, p, 8), &msg), FERRY_E_MALFORMED);
	wire_put_u32(p + 4, 0x10);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_SHARE, p, 8), &msg), FERRY_E_BAD_FLAGS);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_SHARE_OK, p, 40), &msg), FERRY_E_BAD_FLAGS);
	wire_put_u32(p + 4, 3);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_SHARE_OK, p, 40), &msg), FERRY_E_OK);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_SHARE_OK, p, 39), &msg), FERRY_E_MALFORMED);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_ATTACH, p, 32), &msg), FERRY_E_OK);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_ATTACH, p, 31), &msg), FERRY_E_MALFORMED);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_ATTACH, p, 33), &msg), FERRY_E_MALFORMED);
	/* DETACH and UNSHARE: the second word is reserved; UNSHARE_OK's is the count. */
	wire_put_u32(p + 4, 1);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_DETACH, p, 8), &msg), FERRY_E_MALFORMED);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_DETACH_OK, p, 8), &msg), FERRY_E_MALFORMED);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_UNSHARE, p, 8), &msg), FERRY_E_MALFORMED);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_UNSHARE_OK, p, 8), &msg), FERRY_E_OK);
	assert_int_equal(msg.u.unshare.revoked, 1);
	/* ATTACH_OK: extent rules as ALLOC_OK, rights, reserved. */
	memset(p, 0, sizeof(p));
	wire_put_u64(p + 16, 4096);
	wire_put_u32(p + 24, 2);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_ATTACH_OK, p, 32), &msg), FERRY_E_OK);
	wire_put_u32(p + 28, 1);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_ATTACH_OK, p, 32), &msg), FERRY_E_MALFORMED);
	wire_put_u32(p + 28, 0);
	wire_put_u32(p + 24, 0);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_ATTACH_OK, p, 32), &msg), FERRY_E_MALFORMED);
	wire_put_u32(p + 24, 1);
	wire_put_u64(p + 16, 100);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_ATTACH_OK, p, 32), &msg), FERRY_E_BAD_ALIGNMENT);
	wire_put_u64(p + 16, 8192);
	wire_put_u64(p + 8, UINT64_MAX - 4095);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_ATTACH_OK, p, 32), &msg), FERRY_E_MALFORMED);
}

static void test_write_ok(void **state)
{
	uint8_t p[9] = { 0 };
	int n;

	(void)state;
	for (uint32_t c = 1; c; c = c == 1 ? FERRY_PAGE_MAX_IOV : 0) {
		n = ferry_page_encode_write_ok(17, c, buf, sizeof(buf));
		assert_int_equal(n, FERRY_PAGE_HDR_LEN + 8);
		assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
		assert_int_equal(msg.hdr.flags, FERRY_PAGE_F_REPLY);
		assert_int_equal(msg.u.write_ok.count, c);
	}
	check_caps(enc_write_ok, FERRY_PAGE_HDR_LEN + 8);
	assert_int_equal(ferry_page_encode_write_ok(17, 0, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_write_ok(17, FERRY_PAGE_MAX_IOV + 1, buf, sizeof(buf)),
			 -FERRY_E_TOO_LARGE);

	wire_put_u32(p, 1);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_WRITE_OK, p, 8), &msg), FERRY_E_OK);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_WRITE_OK, p, 9), &msg), FERRY_E_MALFORMED);
	p[4] = 1;
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_WRITE_OK, p, 8), &msg), FERRY_E_MALFORMED);
	p[4] = 0;
	wire_put_u32(p, 0);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_WRITE_OK, p, 8), &msg), FERRY_E_MALFORMED);
	wire_put_u32(p, FERRY_PAGE_MAX_IOV + 1);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_WRITE_OK, p, 8), &msg), FERRY_E_TOO_LARGE);
}

/* ---------------------------------------------------------------- STATS */

static struct ferry_page_stat stats_in[FERRY_PAGE_MAX_STATS + 1];

static void fill_stats(void)
{
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789_";

	for (unsigned int i = 0; i <= FERRY_PAGE_MAX_STATS; i++) {
		for (unsigned int j = 0; j < FERRY_PAGE_STAT_NAME_MAX; j++)
			stats_in[i].name[j] = alphabet[(i + j) % (sizeof(alphabet) - 1)];
		stats_in[i].name[FERRY_PAGE_STAT_NAME_MAX] = '\0';
		stats_in[i].value = UINT64_MAX - i;
	}
}

static int enc_stats(uint8_t *out, size_t cap)
{
	return ferry_page_encode_stats(18, out, cap);
}

static int enc_stats_max(uint8_t *out, size_t cap)
{
	return ferry_page_encode_stats_ok(19, stats_in, FERRY_PAGE_MAX_STATS, out, cap);
}

static void test_stats_roundtrip(void **state)
{
	int n;

	(void)state;
	n = ferry_page_encode_stats(18, buf, sizeof(buf));
	assert_int_equal(n, FERRY_PAGE_HDR_LEN);
	assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
	assert_int_equal(msg.hdr.type, FERRY_PAGE_STATS);
	assert_int_equal(msg.hdr.payload_len, 0);
	check_caps(enc_stats, FERRY_PAGE_HDR_LEN);

	/* Empty STATS_OK. */
	n = ferry_page_encode_stats_ok(19, NULL, 0, buf, sizeof(buf));
	assert_int_equal(n, FERRY_PAGE_HDR_LEN + 2);
	assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
	assert_int_equal(msg.hdr.flags, FERRY_PAGE_F_REPLY);
	assert_int_equal(msg.u.stats_ok.count, 0);

	/* The most there may be, every name at its longest; fits in CTRL_MAX. */
	fill_stats();
	n = ferry_page_encode_stats_ok(19, stats_in, FERRY_PAGE_MAX_STATS, buf, sizeof(buf));
	assert_int_equal(n, FERRY_PAGE_HDR_LEN + 2 + FERRY_PAGE_MAX_STATS * (1 + 32 + 8));
	assert_true(n <= (int)FERRY_PAGE_CTRL_MAX);
	assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
	assert_int_equal(msg.u.stats_ok.count, FERRY_PAGE_MAX_STATS);
	for (unsigned int i = 0; i < FERRY_PAGE_MAX_STATS; i++) {
		assert_string_equal(msg.u.stats_ok.stats[i].name, stats_in[i].name);
		assert_true(msg.u.stats_ok.stats[i].value == stats_in[i].value);
	}
	check_caps(enc_stats_max, n);

	/* Short names. */
	strcpy(stats_in[0].name, "a");
	strcpy(stats_in[1].name, "_");
	strcpy(stats_in[2].name, "9");
	n = ferry_page_encode_stats_ok(19, stats_in, 3, buf, sizeof(buf));
	assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
	assert_string_equal(msg.u.stats_ok.stats[2].name, "9");
}

static void test_stats_rejects(void **state)
{
	uint8_t p[64];

	(void)state;
	fill_stats();
	assert_int_equal(ferry_page_encode_stats_ok(19, stats_in, FERRY_PAGE_MAX_STATS + 1, buf, sizeof(buf)),
			 -FERRY_E_TOO_LARGE);
	assert_int_equal(ferry_page_encode_stats_ok(19, NULL, 1, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	stats_in[1].name[0] = '\0';
	assert_int_equal(ferry_page_encode_stats_ok(19, stats_in, 2, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	strcpy(stats_in[1].name, "Upper");
	assert_int_equal(ferry_page_encode_stats_ok(19, stats_in, 2, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	strcpy(stats_in[1].name, "has-dash");
	assert_int_equal(ferry_page_encode_stats_ok(19, stats_in, 2, buf, sizeof(buf)), -FERRY_E_MALFORMED);
	/* A name of 33 characters: the array's terminator overwritten. */
	memset(stats_in[1].name, 'a', sizeof(stats_in[1].name));
	assert_int_equal(ferry_page_encode_stats_ok(19, stats_in, 2, buf, sizeof(buf)), -FERRY_E_TOO_LARGE);

	/* STATS has no body. */
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_STATS, p, 1), &msg), FERRY_E_MALFORMED);

	/* STATS_OK decoder: one stat "ab" = 7. */
	memset(p, 0, sizeof(p));
	wire_put_u16(p, 1);
	p[2] = 2;
	p[3] = 'a';
	p[4] = 'b';
	wire_put_u64(p + 5, 7);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_STATS_OK, p, 13), &msg), FERRY_E_OK);
	assert_string_equal(msg.u.stats_ok.stats[0].name, "ab");
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_STATS_OK, p, 12), &msg), FERRY_E_MALFORMED);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_STATS_OK, p, 14), &msg), FERRY_E_MALFORMED);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_STATS_OK, p, 1), &msg), FERRY_E_MALFORMED);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_STATS_OK, p, 2), &msg), FERRY_E_MALFORMED);
	wire_put_u16(p, 2);                                     /* count lies */
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_STATS_OK, p, 13), &msg), FERRY_E_MALFORMED);
	wire_put_u16(p, 0);                                     /* count lies the other way */
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_STATS_OK, p, 13), &msg), FERRY_E_MALFORMED);
	wire_put_u16(p, FERRY_PAGE_MAX_STATS + 1);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_STATS_OK, p, 13), &msg), FERRY_E_TOO_LARGE);
	wire_put_u16(p, 1);
	p[2] = 3;                                        /* name_len runs into the value */
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_STATS_OK, p, 13), &msg), FERRY_E_MALFORMED);
	p[2] = 0;
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_STATS_OK, p, 13), &msg), FERRY_E_MALFORMED);
	p[2] = 33;
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_STATS_OK, p, 13), &msg), FERRY_E_TOO_LARGE);
	p[2] = 2;
	p[4] = 'B';
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_STATS_OK, p, 13), &msg), FERRY_E_MALFORMED);
}

/* ---------------------------------------------------------------- ERROR */

static void test_error_roundtrip(void **state)
{
	char longmsg[FERRY_PAGE_ERRMSG_MAX + 40];
	int n;

	(void)state;
	n = ferry_page_encode_error(20, FERRY_E_POOL_FULL, "pool full: 64 MiB requested", buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
	assert_int_equal(msg.hdr.flags, FERRY_PAGE_F_REPLY);
	assert_int_equal(msg.u.error.code, FERRY_E_POOL_FULL);
	assert_string_equal(msg.u.error.msg, "pool full: 64 MiB requested");

	/* NULL and empty messages; unknown codes are carried. */
	n = ferry_page_encode_error(20, 999, NULL, buf, sizeof(buf));
	assert_int_equal(n, FERRY_PAGE_HDR_LEN + 6);
	assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
	assert_int_equal(msg.u.error.code, 999);
	assert_int_equal(msg.u.error.msg_len, 0);
	assert_string_equal(msg.u.error.msg, "");
	n = ferry_page_encode_error(20, UINT32_MAX, "", buf, sizeof(buf));
	assert_int_equal(n, FERRY_PAGE_HDR_LEN + 6);

	/* Longest message, and a longer one cut to it. Bytes >= 0x80 are fine. */
	memset(longmsg, '\xe9', sizeof(longmsg) - 1);
	longmsg[sizeof(longmsg) - 1] = '\0';
	n = ferry_page_encode_error(20, FERRY_E_INTERNAL, longmsg, buf, sizeof(buf));
	assert_int_equal(n, FERRY_PAGE_HDR_LEN + 6 + FERRY_PAGE_ERRMSG_MAX);
	assert_int_equal(decode_exact(buf, (size_t)n, &msg), FERRY_E_OK);
	assert_int_equal(msg.u.error.msg_len, FERRY_PAGE_ERRMSG_MAX);
	assert_int_equal(strlen(msg.u.error.msg), FERRY_PAGE_ERRMSG_MAX);
	longmsg[FERRY_PAGE_ERRMSG_MAX] = '\0';
	assert_int_equal(ferry_page_encode_error(20, FERRY_E_INTERNAL, longmsg, buf, sizeof(buf)), n);
	for (size_t cap = 0; cap < (size_t)n; cap++)
		assert_int_equal(ferry_page_encode_error(20, 1, longmsg, buf, cap), -FERRY_E_TOO_LARGE);
	assert_int_equal(ferry_page_encode_error(20, 1, "x", NULL, 100), -FERRY_E_MALFORMED);
}

static void test_error_decode_rejects(void **state)
{
	uint8_t p[6 + 300];

	(void)state;
	memset(p, 'm', sizeof(p));
	wire_put_u32(p, 5);
	wire_put_u16(p + 4, 3);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_ERROR, p, 9), &msg), FERRY_E_OK);
	assert_string_equal(msg.u.error.msg, "mmm");
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_ERROR, p, 8), &msg), FERRY_E_MALFORMED);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_ERROR, p, 10), &msg), FERRY_E_MALFORMED);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_ERROR, p, 5), &msg), FERRY_E_MALFORMED);
	p[7] = '\0';
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_ERROR, p, 9), &msg), FERRY_E_MALFORMED);
	p[7] = 'm';
	wire_put_u16(p + 4, 257);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_ERROR, p, 6 + 257), &msg), FERRY_E_TOO_LARGE);
	wire_put_u16(p + 4, 256);
	assert_int_equal(decode_exact(buf, raw(buf, FERRY_PAGE_ERROR, p, 6 + 256), &msg), FERRY_E_OK);
}

/* ---------------------------------------------------------------- header */

/* A valid message of every type, for mutating its header. */
static size_t valid_msg(uint8_t type, uint8_t *out, size_t cap)
{
	static const struct ferry_page_iov one = { .key = 1, .length = 8, .offset = 0 };
	struct ferry_page_auth_ok ok = { .max_data = 4096 };
	struct ferry_page_extent ext = { .length = 4096 };
	struct ferry_page_share_ok sok = { .extent_id = 1, .rights = FERRY_PAGE_SHARE_RIGHTS };
	struct ferry_page_attach_ok aok = { .attach_id = 1, .length = 4096, .rights = FERRY_PAGE_SHARE_READ };
	int n = -1;

	fill_keys();
	switch (type) {
	case FERRY_PAGE_HELLO: n = ferry_page_encode_hello(1, "vm", 1, 1, out, cap); break;
	case FERRY_PAGE_CHALLENGE: n = ferry_page_encode_challenge(1, 1, nonce, out, cap); break;
	case FERRY_PAGE_AUTH: n = ferry_page_encode_auth(1, nonce, mac, out, cap); break;
	case FERRY_PAGE_AUTH_OK: n = ferry_page_encode_auth_ok(1, &ok, out, cap); break;
	case FERRY_PAGE_ALLOC: n = ferry_page_encode_alloc(1, 4096, 0, out, cap); break;
	case FERRY_PAGE_ALLOC_OK: n = ferry_page_encode_alloc_ok(1, &ext, out, cap); break;
	case FERRY_PAGE_FREE: n = ferry_page_encode_free(1, 1, out, cap); break;
	case FERRY_PAGE_FREE_OK: n = ferry_page_encode_free_ok(1, 1, out, cap); break;
	case FERRY_PAGE_READ: n = ferry_page_encode_rw_prefix(type, 1, &one, 1, 0, out, cap); break;
	case FERRY_PAGE_WRITE:
		n = ferry_page_encode_rw_prefix(type, 1, &one, 1, 8, out, cap);
		memset(out + n, 0x77, 8);
		n += 8;
		break;
	case FERRY_PAGE_READ_DATA:
		n = ferry_page_encode_read_data_prefix(1, 1, 8, out, cap);
		memset(out + n, 0x77, 8);
		n += 8;
		break;
	case FERRY_PAGE_WRITE_OK: n = ferry_page_encode_write_ok(1, 1, out, cap); break;
	case FERRY_PAGE_STATS: n = ferry_page_encode_stats(1, out, cap); break;
	case FERRY_PAGE_STATS_OK: n = ferry_page_encode_stats_ok(1, NULL, 0, out, cap); break;
	case FERRY_PAGE_ERROR: n = ferry_page_encode_error(1, 1, "e", out, cap); break;
	case FERRY_PAGE_SHARE: n = ferry_page_encode_share(1, 1, FERRY_PAGE_SHARE_READ, out, cap); break;
	case FERRY_PAGE_SHARE_OK: n = ferry_page_encode_share_ok(1, &sok, out, cap); break;
	case FERRY_PAGE_ATTACH: n = ferry_page_encode_attach(1, sok.token, out, cap); break;
	case FERRY_PAGE_ATTACH_OK: n = ferry_page_encode_attach_ok(1, &aok, out, cap); break;
	case FERRY_PAGE_DETACH: n = ferry_page_encode_detach(1, 1, out, cap); break;
	case FERRY_PAGE_DETACH_OK: n = ferry_page_encode_detach_ok(1, 1, out, cap); break;
	case FERRY_PAGE_UNSHARE: n = ferry_page_encode_unshare(1, 1, out, cap); break;
	case FERRY_PAGE_UNSHARE_OK: n = ferry_page_encode_unshare_ok(1, 1, 0, out, cap); break;
	case FERRY_PAGE_KEEP: n = ferry_page_encode_keep(1, 1, out, cap); break;
	case FERRY_PAGE_KEEP_OK: n = ferry_page_encode_keep_ok(1, 1, sok.token, out, cap); break;
	case FERRY_PAGE_CLAIM: n = ferry_page_encode_claim(1, sok.token, out, cap); break;
	case FERRY_PAGE_CLAIM_OK: n = ferry_page_encode_claim_ok(1, &ext, out, cap); break;
	case FERRY_PAGE_DISCARD: n = ferry_page_encode_discard(1, sok.token, out, cap); break;
	case FERRY_PAGE_DISCARD_OK: n = ferry_page_encode_discard_ok(1, 4096, out, cap); break;
	}
	assert_true(n >= (int)FERRY_PAGE_HDR_LEN);
	return (size_t)n;
}

static void test_header_checks(void **state)
{
	uint8_t m[256];
	struct ferry_page_hdr hdr;

	(void)state;
	for (uint8_t t = 1; t <= FERRY_PAGE_TYPE_MAX; t++) {
		size_t n = valid_msg(t, m, sizeof(m));

		assert_int_equal(decode_exact(m, n, &msg), FERRY_E_OK);
		assert_int_equal(msg.hdr.type, t);
		assert_int_equal(msg.hdr.payload_len, n - FERRY_PAGE_HDR_LEN);
		assert_int_equal(ferry_page_hdr_decode(m, FERRY_PAGE_HDR_LEN, &hdr), FERRY_E_OK);
		assert_int_equal(hdr.type, t);
		assert_int_equal(hdr.flags, is_reply(t) ? FERRY_PAGE_F_REPLY : 0);
		assert_int_equal(hdr.request_id, 1);
		/* Trailing bytes belong to the next message. */
		m[n] = 0xee;
		assert_int_equal(decode_exact(m, n + 1, &msg), FERRY_E_OK);
		/* Truncated anywhere: in the header, or in the payload. */
		for (size_t cut = 0; cut < n; cut++)
			assert_int_equal(decode_exact(m, cut, &msg), FERRY_E_TRUNCATED);
		for (size_t cut = 0; cut < FERRY_PAGE_HDR_LEN; cut++)
			assert_int_equal(ferry_page_hdr_decode(m, cut, &hdr), FERRY_E_TRUNCATED);

		/* Magic, every byte. */
		for (int i = 0; i < 4; i++) {
			m[i] ^= 0x20;
			assert_int_equal(decode_exact(m, n, &msg), FERRY_E_BAD_MAGIC);
			m[i] ^= 0x20;
		}
		/* Version. */
		for (int v = 0; v < 256; v++) {
			m[4] = (uint8_t)v;
			assert_int_equal(decode_exact(m, n, &msg),
					 v == FERRY_PAGE_VERSION ? FERRY_E_OK : FERRY_E_VERSION);
		}
		m[4] = FERRY_PAGE_VERSION;
		/* Unknown flag bits, one at a time. */
		for (int b = 1; b < 16; b++) {
			m[6 + b / 8] ^= (uint8_t)(1u << (b % 8));
			assert_int_equal(decode_exact(m, n, &msg), FERRY_E_BAD_FLAGS);
			m[6 + b / 8] ^= (uint8_t)(1u << (b % 8));
		}
		/* The reply flag must match the type. */
		m[6] ^= FERRY_PAGE_F_REPLY;
		assert_int_equal(decode_exact(m, n, &msg), FERRY_E_BAD_FLAGS);
		assert_int_equal(ferry_page_hdr_decode(m, n, &hdr), FERRY_E_BAD_FLAGS);
		m[6] ^= FERRY_PAGE_F_REPLY;
		/* Reserved, every byte. */
		for (int i = 20; i < 24; i++) {
			m[i] = 1;
			assert_int_equal(decode_exact(m, n, &msg), FERRY_E_MALFORMED);
			m[i] = 0;
		}
		assert_int_equal(decode_exact(m, n, &msg), FERRY_E_OK);
	}

	/* Types out of range. */
	valid_msg(FERRY_PAGE_STATS, m, sizeof(m));
	for (int t = 0; t < 256; t++) {
		if (t >= 1 && t <= FERRY_PAGE_TYPE_MAX)
			continue;
		m[5] = (uint8_t)t;
		assert_int_equal(decode_exact(m, FERRY_PAGE_HDR_LEN, &msg), FERRY_E_UNKNOWN_TYPE);
	}
}

static void test_header_payload_limits(void **state)
{
	uint8_t m[FERRY_PAGE_HDR_LEN];
	struct ferry_page_hdr hdr;
	static const struct { uint8_t type; uint32_t max; } lim[] = {
		{ FERRY_PAGE_HELLO, FERRY_PAGE_CTRL_MAX - FERRY_PAGE_HDR_LEN },
		{ FERRY_PAGE_STATS_OK, FERRY_PAGE_CTRL_MAX - FERRY_PAGE_HDR_LEN },
		{ FERRY_PAGE_ERROR, FERRY_PAGE_CTRL_MAX - FERRY_PAGE_HDR_LEN },
		{ FERRY_PAGE_READ, 8 + FERRY_PAGE_MAX_IOV * FERRY_PAGE_IOV_LEN },
		{ FERRY_PAGE_READ_DATA, 8 + FERRY_PAGE_MAX_DATA },
		{ FERRY_PAGE_WRITE, FERRY_PAGE_MAX_PAYLOAD },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(lim) / sizeof(lim[0]); i++) {
		uint16_t flags = is_reply(lim[i].type) ? FERRY_PAGE_F_REPLY : 0;

		assert_int_equal(ferry_page_encode_hdr(lim[i].type, flags, 5, lim[i].max, m, sizeof(m)),
				 FERRY_PAGE_HDR_LEN);
		assert_int_equal(ferry_page_hdr_decode(m, sizeof(m), &hdr), FERRY_E_OK);
		assert_int_equal(hdr.payload_len, lim[i].max);
		/* Header alone is fine for hdr_decode, not for the whole-message decoder. */
		assert_int_equal(decode_exact(m, sizeof(m), &msg), FERRY_E_TRUNCATED);
		assert_int_equal(ferry_page_encode_hdr(lim[i].type, flags, 5, lim[i].max + 1, m, sizeof(m)),
				 -FERRY_E_TOO_LARGE);
		wire_put_u32(m + 16, lim[i].max + 1);
		assert_int_equal(ferry_page_hdr_decode(m, sizeof(m), &hdr), FERRY_E_TOO_LARGE);
		wire_put_u32(m + 16, UINT32_MAX);
		assert_int_equal(ferry_page_hdr_decode(m, sizeof(m), &hdr), FERRY_E_TOO_LARGE);
		assert_int_equal(decode_exact(m, sizeof(m), &msg), FERRY_E_TOO_LARGE);
	}
}

static void test_encode_hdr(void **state)
{
	uint8_t m[FERRY_PAGE_HDR_LEN + 4];
	struct ferry_page_hdr hdr;

	(void)state;
	assert_int_equal(ferry_page_encode_hdr(FERRY_PAGE_WRITE, 0, UINT64_MAX, 1234, m, sizeof(m)),
			 FERRY_PAGE_HDR_LEN);
	assert_int_equal(ferry_page_hdr_decode(m, FERRY_PAGE_HDR_LEN, &hdr), FERRY_E_OK);
	assert_int_equal(hdr.type, FERRY_PAGE_WRITE);
	assert_int_equal(hdr.flags, 0);
	assert_true(hdr.request_id == UINT64_MAX);
	assert_int_equal(hdr.payload_len, 1234);
	/* Exact wire bytes of the header. */
	assert_int_equal(m[0], 'F');
	assert_int_equal(m[1], 'R');
	assert_int_equal(m[2], 'R');
	assert_int_equal(m[3], 'Y');
	assert_int_equal(m[4], FERRY_PAGE_VERSION);
	assert_int_equal(m[5], FERRY_PAGE_WRITE);
	assert_int_equal(m[16], 1234 & 0xff);
	assert_int_equal(m[17], 1234 >> 8);

	/* Reply types get the reply flag whether or not the caller passed it. */
	assert_int_equal(ferry_page_encode_hdr(FERRY_PAGE_ERROR, 0, 1, 6, m, sizeof(m)), FERRY_PAGE_HDR_LEN);
	assert_int_equal(ferry_page_hdr_decode(m, FERRY_PAGE_HDR_LEN, &hdr), FERRY_E_OK);
	assert_int_equal(hdr.flags, FERRY_PAGE_F_REPLY);
	assert_int_equal(ferry_page_encode_hdr(FERRY_PAGE_ERROR, FERRY_PAGE_F_REPLY, 1, 6, m, sizeof(m)),
			 FERRY_PAGE_HDR_LEN);
	/* Refusals. */
	assert_int_equal(ferry_page_encode_hdr(FERRY_PAGE_HELLO, FERRY_PAGE_F_REPLY, 1, 6, m, sizeof(m)),
			 -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_hdr(FERRY_PAGE_HELLO, 0x8000, 1, 6, m, sizeof(m)), -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_hdr(0, 0, 1, 6, m, sizeof(m)), -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_hdr(FERRY_PAGE_TYPE_MAX + 1, 0, 1, 6, m, sizeof(m)),
			 -FERRY_E_MALFORMED);
	assert_int_equal(ferry_page_encode_hdr(FERRY_PAGE_HELLO, 0, 1, 6, NULL, 100), -FERRY_E_MALFORMED);
	for (size_t cap = 0; cap < FERRY_PAGE_HDR_LEN; cap++)
		assert_int_equal(ferry_page_encode_hdr(FERRY_PAGE_HELLO, 0, 1, 6, m, cap), -FERRY_E_TOO_LARGE);
}

/* ---------------------------------------------------------------- names */

static void test_names(void **state)
{
	static const char *types[] = { "UNKNOWN", "HELLO", "CHALLENGE", "AUTH", "AUTH_OK", "ALLOC", "ALLOC_OK",
				       "FREE", "FREE_OK", "READ", "READ_DATA", "WRITE", "WRITE_OK", "STATS",
				       "STATS_OK", "ERROR", "SHARE", "SHARE_OK", "ATTACH", "ATTACH_OK", "DETACH",
				       "DETACH_OK", "UNSHARE", "UNSHARE_OK", "KEEP", "KEEP_OK", "CLAIM",
				       "CLAIM_OK", "DISCARD", "DISCARD_OK" };

	(void)state;
	for (int t = 0; t <= FERRY_PAGE_TYPE_MAX; t++)
		assert_string_equal(ferry_page_type_name((uint8_t)t), types[t]);
	assert_string_equal(ferry_page_type_name(FERRY_PAGE_TYPE_MAX + 1), "UNKNOWN");
	assert_string_equal(ferry_page_type_name(255), "UNKNOWN");

	for (uint32_t a = 0; a <= FERRY_E_CODE_MAX; a++) {
		const char *s = ferry_errcode_str(a);

		assert_non_null(s);
		assert_true(s[0] != '\0');
		assert_string_not_equal(s, "unknown error");
		for (uint32_t b = 0; b < a; b++)
			assert_string_not_equal(s, ferry_errcode_str(b));
	}
	assert_string_equal(ferry_errcode_str(FERRY_E_OK), "ok");
	assert_string_equal(ferry_errcode_str(FERRY_E_POOL_FULL), "pool full");
	assert_string_equal(ferry_errcode_str(FERRY_E_TRUNCATED), "truncated message");
	assert_string_equal(ferry_errcode_str(FERRY_E_CODE_MAX + 1), "unknown error");
	assert_string_equal(ferry_errcode_str(UINT32_MAX), "unknown error");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hello_roundtrip),
		cmocka_unit_test(test_hello_encode_rejects),
		cmocka_unit_test(test_hello_decode_rejects),
		cmocka_unit_test(test_challenge_auth_roundtrip),
		cmocka_unit_test(test_auth_decode_rejects),
		cmocka_unit_test(test_extent_roundtrip),
		cmocka_unit_test(test_extent_decode_rejects),
		cmocka_unit_test(test_read_roundtrip),
		cmocka_unit_test(test_write_roundtrip),
		cmocka_unit_test(test_rw_encode_rejects),
		cmocka_unit_test(test_rw_decode_rules),
		cmocka_unit_test(test_read_data),
		cmocka_unit_test(test_write_ok),
		cmocka_unit_test(test_share_roundtrip),
		cmocka_unit_test(test_share_rejects),
		cmocka_unit_test(test_keep_roundtrip),
		cmocka_unit_test(test_keep_rejects),
		cmocka_unit_test(test_stats_roundtrip),
		cmocka_unit_test(test_stats_rejects),
		cmocka_unit_test(test_error_roundtrip),
		cmocka_unit_test(test_error_decode_rejects),
		cmocka_unit_test(test_header_checks),
		cmocka_unit_test(test_header_payload_limits),
		cmocka_unit_test(test_encode_hdr),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
