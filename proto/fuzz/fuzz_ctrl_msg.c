/*
 * libFuzzer target: ferry_ctrl_decode on arbitrary bytes.
 *
 * Every message that decodes is re-encoded with ferry_ctrl_encode and must
 * reproduce the input's message bytes exactly (the wire form is canonical:
 * reserved fields zero, the request id kept; HELLO's features word, which
 * the encoder always writes as 0, is copied over) and decode again to the
 * same type. The header decoder must agree with the full decoder.
 */
#include "proto/ctrl.h"
#include "proto/wire.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t out[FERRY_CTRL_MAX_MSG];
static struct ferry_ctrl_msg m1, m2;

static void check(bool ok)
{
	if (!ok)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ferry_ctrl_hdr hdr;
	uint8_t *copy;
	int rc, hrc, n;

	/* An exact-size heap copy so that ASan sees any read past the end. */
	copy = malloc(size ? size : 1);
	check(copy != NULL);
	if (size)
		memcpy(copy, data, size);
	rc = ferry_ctrl_decode(copy, size, &m1);
	hrc = ferry_ctrl_hdr_decode(copy, size, &hdr);
	check(rc >= 0 && rc <= FERRY_CTRL_E_CODE_MAX);
	if (hrc != FERRY_CTRL_E_OK)
		check(rc == hrc);
	if (rc == FERRY_CTRL_E_OK) {
		check(hrc == FERRY_CTRL_E_OK && hdr.type == m1.hdr.type && hdr.payload_len == m1.hdr.payload_len);
		n = ferry_ctrl_encode(&m1, out, sizeof(out));
		check(n == (int)(FERRY_CTRL_HDR_LEN + m1.hdr.payload_len));
		if (m1.hdr.type == FERRY_CTRL_HELLO)
			wire_put_u32(out + FERRY_CTRL_HDR_LEN + 4, m1.u.hello.features);
		check(memcmp(out, copy, (size_t)n) == 0);
		check(ferry_ctrl_decode(out, (size_t)n, &m2) == FERRY_CTRL_E_OK);
		check(m2.hdr.type == m1.hdr.type && m2.hdr.request_id == m1.hdr.request_id);
	}
	free(copy);
	return 0;
}
