/*
 * libFuzzer target: ferry_page_rw_decode, the check transports run on a
 * READ/WRITE vector before streaming data into registered memory.
 *
 * Input: u8 selector (odd: WRITE, even: READ), u32 payload_len (LE), then
 * the vector bytes. Whatever decodes must satisfy every documented
 * invariant and re-encode to the same vector.
 */
#include "proto/page.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ferry_page_iov iov[FERRY_PAGE_MAX_IOV];
static uint8_t out[FERRY_PAGE_HDR_LEN + 8 + FERRY_PAGE_MAX_IOV * FERRY_PAGE_IOV_LEN];

static void check(int ok)
{
	if (!ok)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ferry_page_rw rw;
	const uint8_t *vec;
	uint32_t payload_len;
	uint64_t sum = 0, vec_bytes;
	uint8_t type;
	int rc, n;

	if (size < 5)
		return 0;
	type = (data[0] & 1) ? FERRY_PAGE_WRITE : FERRY_PAGE_READ;
	payload_len = (uint32_t)data[1] | (uint32_t)data[2] << 8 | (uint32_t)data[3] << 16 |
		      (uint32_t)data[4] << 24;
	vec = data + 5;

	rc = ferry_page_rw_decode(type, payload_len, vec, size - 5, &rw);
	check(rc >= FERRY_E_OK && rc <= FERRY_E_CODE_MAX);
	if (rc != FERRY_E_OK)
		return 0;

	check(rw.count >= 1 && rw.count <= FERRY_PAGE_MAX_IOV);
	check(rw.entries == vec + 8 && rw.data == NULL);
	vec_bytes = 8 + (uint64_t)rw.count * FERRY_PAGE_IOV_LEN;
	check(vec_bytes <= size - 5);
	for (uint32_t i = 0; i < rw.count; i++) {
		ferry_page_rw_entry(&rw, i, &iov[i]);
		check(iov[i].length >= 1 && iov[i].length <= FERRY_PAGE_MAX_DATA);
		check(iov[i].offset <= UINT64_MAX - iov[i].length);
		sum += iov[i].length;
	}
	check(sum == rw.data_len && sum <= FERRY_PAGE_MAX_DATA);
	check(payload_len == vec_bytes + (type == FERRY_PAGE_WRITE ? sum : 0));

	n = ferry_page_encode_rw_prefix(type, 0, iov, rw.count, type == FERRY_PAGE_WRITE ? sum : 0,
					out, sizeof(out));
	check(n > 0 && (uint64_t)n == FERRY_PAGE_HDR_LEN + vec_bytes);
	check(memcmp(out + FERRY_PAGE_HDR_LEN, vec, vec_bytes) == 0);
	check(out[16] == data[1] && out[17] == data[2] && out[18] == data[3] && out[19] == data[4]);
	return 0;
}
