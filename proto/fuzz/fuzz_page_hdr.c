/*
 * libFuzzer target: ferry_page_hdr_decode on arbitrary bytes.
 * A header that decodes must re-encode to the very same 24 bytes: the
 * header has no field the decoder lets vary without reporting it.
 */
#include "proto/page.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ferry_page_hdr hdr;
	uint8_t out[FERRY_PAGE_HDR_LEN];
	int rc, n;

	rc = ferry_page_hdr_decode(data, size, &hdr);
	if (rc < FERRY_E_OK || rc > FERRY_E_CODE_MAX)
		abort();
	if (ferry_errcode_str((uint32_t)rc) == NULL)
		abort();
	if (rc != FERRY_E_OK)
		return 0;

	if (size < FERRY_PAGE_HDR_LEN || hdr.payload_len > FERRY_PAGE_MAX_PAYLOAD ||
	    strcmp(ferry_page_type_name(hdr.type), "UNKNOWN") == 0)
		abort();
	n = ferry_page_encode_hdr(hdr.type, hdr.flags, hdr.request_id, hdr.payload_len, out, sizeof(out));
	if (n != FERRY_PAGE_HDR_LEN || memcmp(out, data, FERRY_PAGE_HDR_LEN) != 0)
		abort();
	return 0;
}
