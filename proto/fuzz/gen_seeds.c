/*
 * Seed-corpus generator for the page-protocol fuzzers.
 *
 *   page_gen_seeds DIR        one valid encoded message of every type
 *                             (seeds for fuzz_page_msg and fuzz_page_hdr)
 *   page_gen_seeds --rw DIR   READ and WRITE vectors in fuzz_page_rw's input
 *                             format: u8 type, u32 payload_len (LE), payload
 *
 * Seeds come from the encoders, so they track the codec instead of a second
 * hand-written copy of the layouts.
 */
#include "proto/page.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SEED_MAX 4096

static const char *out_dir;

static void die_enc(const char *what, int rc)
{
	fprintf(stderr, "page_gen_seeds: encoding %s failed: %d (%s)\n", what, rc,
		ferry_errcode_str((uint32_t)-rc));
	exit(1);
}

static void write_seed(const char *name, const uint8_t *buf, size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", out_dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
		fprintf(stderr, "page_gen_seeds: %s: %s\n", path, strerror(errno));
		exit(1);
	}
}

/* Check an encoder's result, that it decodes, and write the message it produced. */
static void emit(const char *name, const uint8_t *buf, int rc)
{
	static struct ferry_page_msg msg;
	int drc;

	if (rc < 0)
		die_enc(name, rc);
	drc = ferry_page_decode(buf, (size_t)rc, &msg);
	if (drc != FERRY_E_OK) {
		fprintf(stderr, "page_gen_seeds: %s does not decode: %s\n", name,
			ferry_errcode_str((uint32_t)drc));
		exit(1);
	}
	write_seed(name, buf, (size_t)rc);
}

/* Append @n bytes of a recognisable pattern after an encoded prefix. */
static int add_data(uint8_t *buf, int rc, size_t n)
{
	if (rc < 0 || (size_t)rc + n > SEED_MAX)
		return rc < 0 ? rc : -FERRY_E_TOO_LARGE;
	for (size_t i = 0; i < n; i++)
		buf[(size_t)rc + i] = (uint8_t)(0xa0 + i);
	return rc + (int)n;
}

static const struct ferry_page_iov seed_iov[] = {
	{ .key = 0x1001, .length = 16, .offset = 0x10000 },
	{ .key = 0x1001, .length = 8, .offset = 0x20000 },
	{ .key = 0x2002, .length = 4, .offset = 0 },
};
#define SEED_IOV_COUNT ((uint32_t)(sizeof(seed_iov) / sizeof(seed_iov[0])))
#define SEED_IOV_SUM 28u

static void gen_messages(void)
{
	static uint8_t buf[SEED_MAX];
	uint8_t nonce[FERRY_PAGE_NONCE_LEN], mac[FERRY_PAGE_MAC_LEN];
	struct ferry_page_auth_ok ok = {
		.session_id = 0x1122334455667788ull, .quota_bytes = 1ull << 30,
		.max_data = FERRY_PAGE_MAX_DATA,
	};
	struct ferry_page_extent ext = { .extent_id = 7, .rkey = 0xabcd, .base = 0x7f0000000000ull,
					 .length = 1u << 21 };
	struct ferry_page_stat stats[3] = {
		{ "extents", 3 }, { "bytes_used", 6ull << 20 }, { "reads_total", 123456789 },
	};
	int rc;

	for (unsigned int i = 0; i < sizeof(nonce); i++) {
		nonce[i] = (uint8_t)i;
		mac[i] = (uint8_t)(0xff - i);
	}
	memcpy(ok.mac, mac, sizeof(mac));

	emit("01-hello.bin", buf, ferry_page_encode_hello(1, "vm-42.host-a", 1, 1, buf, sizeof(buf)));
	emit("02-challenge.bin", buf, ferry_page_encode_challenge(1, 1, nonce, buf, sizeof(buf)));
	emit("03-auth.bin", buf, ferry_page_encode_auth(2, nonce, mac, buf, sizeof(buf)));
	emit("04-auth_ok.bin", buf, ferry_page_encode_auth_ok(2, &ok, buf, sizeof(buf)));
	emit("05-alloc.bin", buf, ferry_page_encode_alloc(3, 1u << 21, 0, buf, sizeof(buf)));
	emit("06-alloc_ok.bin", buf, ferry_page_encode_alloc_ok(3, &ext, buf, sizeof(buf)));
	emit("07-free.bin", buf, ferry_page_encode_free(4, 7, buf, sizeof(buf)));
	emit("08-free_ok.bin", buf, ferry_page_encode_free_ok(4, 7, buf, sizeof(buf)));

	rc = ferry_page_encode_rw_prefix(FERRY_PAGE_READ, 5, seed_iov, SEED_IOV_COUNT, 0, buf, sizeof(buf));
	emit("09-read.bin", buf, rc);
	rc = ferry_page_encode_read_data_prefix(5, SEED_IOV_COUNT, SEED_IOV_SUM, buf, sizeof(buf));
	emit("10-read_data.bin", buf, add_data(buf, rc, SEED_IOV_SUM));
	rc = ferry_page_encode_rw_prefix(FERRY_PAGE_WRITE, 6, seed_iov, SEED_IOV_COUNT, SEED_IOV_SUM,
					 buf, sizeof(buf));
	emit("11-write.bin", buf, add_data(buf, rc, SEED_IOV_SUM));
	emit("12-write_ok.bin", buf, ferry_page_encode_write_ok(6, SEED_IOV_COUNT, buf, sizeof(buf)));
	emit("13-stats.bin", buf, ferry_page_encode_stats(8, buf, sizeof(buf)));
	emit("14-stats_ok.bin", buf, ferry_page_encode_stats_ok(8, stats, 3, buf, sizeof(buf)));
	emit("15-error.bin", buf, ferry_page_encode_error(9, FERRY_E_QUOTA, "quota exceeded: 2 MiB left",
							   buf, sizeof(buf)));

	struct ferry_page_share_ok sok = { .extent_id = 7, .rights = FERRY_PAGE_SHARE_RIGHTS };
	struct ferry_page_attach_ok aok = { .attach_id = 3, .rkey = 0xbeef, .base = 0x7f0000200000ull,
					    .length = 1u << 21, .rights = FERRY_PAGE_SHARE_WRITE };

	memcpy(sok.token, nonce, sizeof(sok.token));
	emit("16-share.bin", buf, ferry_page_encode_share(10, 7, FERRY_PAGE_SHARE_READ, buf, sizeof(buf)));
	emit("17-share_ok.bin", buf, ferry_page_encode_share_ok(10, &sok, buf, sizeof(buf)));
	emit("18-attach.bin", buf, ferry_page_encode_attach(11, nonce, buf, sizeof(buf)));
	emit("19-attach_ok.bin", buf, ferry_page_encode_attach_ok(11, &aok, buf, sizeof(buf)));
	emit("20-detach.bin", buf, ferry_page_encode_detach(12, 3, buf, sizeof(buf)));
	emit("21-detach_ok.bin", buf, ferry_page_encode_detach_ok(12, 3, buf, sizeof(buf)));
	emit("22-unshare.bin", buf, ferry_page_encode_unshare(13, 7, buf, sizeof(buf)));
	emit("23-unshare_ok.bin", buf, ferry_page_encode_unshare_ok(13, 7, 2, buf, sizeof(buf)));

	struct ferry_page_extent cok = { .extent_id = 7, .rkey = 0xcafe, .base = 0x7f0000400000ull,
					 .length = 1u << 21 };

	emit("24-keep.bin", buf, ferry_page_encode_keep(14, 7, buf, sizeof(buf)));
	emit("25-keep_ok.bin", buf, ferry_page_encode_keep_ok(14, 7, nonce, buf, sizeof(buf)));
	emit("26-claim.bin", buf, ferry_page_encode_claim(15, nonce, buf, sizeof(buf)));
	emit("27-claim_ok.bin", buf, ferry_page_encode_claim_ok(15, &cok, buf, sizeof(buf)));
	emit("28-discard.bin", buf, ferry_page_encode_discard(16, nonce, buf, sizeof(buf)));
	emit("29-discard_ok.bin", buf, ferry_page_encode_discard_ok(16, 1u << 21, buf, sizeof(buf)));
}

/* fuzz_page_rw input: u8 type, u32 payload_len, then the payload's vector. */
static void emit_rw(const char *name, uint8_t type, uint32_t count, uint64_t data_len)
{
	static uint8_t buf[SEED_MAX], seed[SEED_MAX];
	int rc = ferry_page_encode_rw_prefix(type, 1, seed_iov, count, data_len, buf, sizeof(buf));
	uint32_t payload_len;

	if (rc < 0)
		die_enc(name, rc);
	payload_len = (uint32_t)((size_t)rc - FERRY_PAGE_HDR_LEN + data_len);
	seed[0] = type;
	for (int i = 0; i < 4; i++)
		seed[1 + i] = (uint8_t)(payload_len >> (8 * i));
	memcpy(seed + 5, buf + FERRY_PAGE_HDR_LEN, (size_t)rc - FERRY_PAGE_HDR_LEN);
	write_seed(name, seed, 5 + (size_t)rc - FERRY_PAGE_HDR_LEN);
}

static void gen_rw(void)
{
	emit_rw("rw-read-1.bin", FERRY_PAGE_READ, 1, 0);
	emit_rw("rw-read-3.bin", FERRY_PAGE_READ, SEED_IOV_COUNT, 0);
	emit_rw("rw-write-1.bin", FERRY_PAGE_WRITE, 1, 16);
	emit_rw("rw-write-3.bin", FERRY_PAGE_WRITE, SEED_IOV_COUNT, SEED_IOV_SUM);
}

int main(int argc, char **argv)
{
	int rw = argc == 3 && strcmp(argv[1], "--rw") == 0;

	if (argc != 2 + rw || argv[1 + rw][0] == '-') {
		fprintf(stderr, "usage: %s [--rw] OUTPUT_DIR\n", argv[0]);
		return 2;
	}
	out_dir = argv[1 + rw];
	if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) {
		fprintf(stderr, "page_gen_seeds: %s: %s\n", out_dir, strerror(errno));
		return 1;
	}
	if (rw)
		gen_rw();
	else
		gen_messages();
	return 0;
}
