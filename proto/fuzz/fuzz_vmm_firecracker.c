/*
 * libFuzzer target: the Firecracker UFFD handshake (JSON) - framing, decoding
 * and conversion to a REGISTER.
 *
 * Whatever decodes must satisfy every rule the decoder promises (count,
 * page sizes, alignment, disjoint host and file ranges), must have been
 * framed as one complete array, must be refused without exactly one
 * descriptor, and, when it converts to a REGISTER, must encode and decode as
 * one. Failures must always come with a reason. Leaks (jansson trees) are
 * caught by the fuzzer's leak checker.
 */
#include "proto/vmm.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ferry_vmmp_fc_handshake hs, hs2;
static struct ferry_vmmp_register reg;
static struct ferry_vmmp_msg msg;
static uint8_t out[FERRY_VMMP_HDR_LEN + 4096];

static void check(bool ok)
{
	if (!ok)
		abort();
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[256];
	size_t frame = 0;
	int rc, frc, n;

	frc = ferry_vmmp_fc_frame(data, size, &frame);
	check(frc == FERRY_VMMP_E_OK || frc == FERRY_VMMP_E_TRUNCATED || frc == FERRY_VMMP_E_JSON_SHAPE ||
	      frc == FERRY_VMMP_E_TOO_LARGE);
	if (frc == FERRY_VMMP_E_OK)
		check(frame >= 2 && frame <= size && frame <= FERRY_VMMP_FC_MAX_LEN &&
		      (data[frame - 1] == ']' || data[frame - 1] == '}'));

	rc = ferry_vmmp_fc_decode(data, size, 1, &hs, why, sizeof(why));
	check(rc >= FERRY_VMMP_E_OK && rc <= FERRY_VMMP_E_CODE_MAX);
	if (rc != FERRY_VMMP_E_OK) {
		check(why[0] != '\0');
		return 0;
	}
	check(frc == FERRY_VMMP_E_OK);
	check(hs.count >= 1 && hs.count <= FERRY_VMMP_MAX_REGIONS);
	for (uint32_t i = 0; i < hs.count; i++) {
		const struct ferry_vmmp_fc_region *r = &hs.regions[i];

		check(r->page_size == FERRY_VMMP_PAGE_4K || r->page_size == FERRY_VMMP_PAGE_2M);
		check(r->size > 0 && ((r->hva | r->size | r->offset) & (r->page_size - 1)) == 0);
		check(r->hva + r->size <= FERRY_VMMP_HVA_LIMIT);
		for (uint32_t j = 0; j < i; j++) {
			check(!overlaps(r->hva, r->size, hs.regions[j].hva, hs.regions[j].size));
			check(!overlaps(r->offset, r->size, hs.regions[j].offset, hs.regions[j].size));
		}
	}
	check(ferry_vmmp_fc_decode(data, size, 0, &hs2, NULL, 0) == FERRY_VMMP_E_FD_MISMATCH);
	check(ferry_vmmp_fc_decode(data, size, 2, &hs2, why, 4) == FERRY_VMMP_E_FD_MISMATCH);

	rc = ferry_vmmp_fc_to_register(&hs, "fc-fuzz", &reg);
	check(rc >= FERRY_VMMP_E_OK && rc <= FERRY_VMMP_E_CODE_MAX);
	if (rc != FERRY_VMMP_E_OK)
		return 0;
	n = ferry_vmmp_encode_register(1, &reg, out, sizeof(out));
	check(n > 0);
	check(ferry_vmmp_decode(out, (size_t)n, 1, &msg) == FERRY_VMMP_E_OK);
	check(msg.u.reg.region_count == hs.count);
	return 0;
}
