/*
 * VMM protocol codec: round trips at the protocol limits and one step past
 * them, every header rule, encoders refusing bad arguments and short
 * buffers, the allow-list, the Firecracker framing and conversion, names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/vmm.h"

#define G1 (1ull << 30)

static uint8_t buf[FERRY_VMMP_MAX_MSG];

static void wire_put_u32_le(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static struct ferry_vmmp_msg msg;

/*
 * Decode @len bytes from an exactly-sized heap copy so ASan sees over-reads.
 * The copy lives until the next call: decoded hints/state point into it.
 */
static int decode_exact(const uint8_t *src, size_t len, unsigned int nfds)
{
	static uint8_t *copy;

	free(copy);
	copy = malloc(len);
	assert_true(copy != NULL || len == 0);
	if (len)
		memcpy(copy, src, len);
	return ferry_vmmp_decode(copy, len, nfds, &msg);
}

/* Every shorter buffer is refused with -TOO_LARGE, a NULL one with -MALFORMED. */
#define CHECK_SHORT_CAPS(call_with_cap, full)                                          \
	do {                                                                            \
		for (size_t cap_ = 0; cap_ < (size_t)(full); cap_++) {                  \
			size_t cap = cap_;                                              \
			assert_int_equal((call_with_cap), -FERRY_VMMP_E_TOO_LARGE);     \
		}                                                                       \
	} while (0)

/* ---------------------------------------------------------------- register */

/* 64 regions over 16 memory files + anonymous ones, 2 MiB and 4 KiB pages. */
static void fill_max_register(struct ferry_vmmp_register *r)
{
	memset(r, 0, sizeof(*r));
	memset(r->vm_id, 'a', FERRY_VMMP_VM_ID_MAX);
	r->vm_id[0] = '!';
	r->vm_id[FERRY_VMMP_VM_ID_MAX - 1] = '~';
	r->uffd_features = 0x1234567890abcdefull;
	r->region_count = FERRY_VMMP_MAX_REGIONS;
	r->fd_count = FERRY_VMMP_MAX_FDS;
	for (unsigned int i = 0; i < FERRY_VMMP_MAX_REGIONS; i++) {
		struct ferry_vmmp_region *g = &r->regions[i];

		g->gpa = i * 2 * G1;
		g->size = G1;
		g->hva = 0x7f0000000000ull + i * G1;
		g->page_size = i % 2 ? FERRY_VMMP_PAGE_2M : FERRY_VMMP_PAGE_4K;
		g->fd_slot = (uint8_t)(i % (FERRY_VMMP_MAX_FDS));     /* 0 = anonymous */
		g->offset = g->fd_slot ? (uint64_t)i * G1 : 0;
		g->modes = g->fd_slot ? FERRY_VMMP_MODE_MISSING | FERRY_VMMP_MODE_WP | FERRY_VMMP_MODE_MINOR
				      : FERRY_VMMP_MODE_MISSING | FERRY_VMMP_MODE_WP;
	}
}

static void test_register_round_trip_max(void **state)
{
	static struct ferry_vmmp_register r;
	const size_t want = FERRY_VMMP_HDR_LEN + 16 + FERRY_VMMP_VM_ID_MAX +
			    FERRY_VMMP_MAX_REGIONS * FERRY_VMMP_REGION_LEN + 8;
	int n;

	(void)state;
	fill_max_register(&r);
	/* The largest REGISTER is an incoming one: it ends with the migration id. */
	r.flags = FERRY_VMMP_REG_F_SERVER_REQ | FERRY_VMMP_REG_F_INCOMING;
	r.migration_id = 0x1122334455667788ull;
	assert_int_equal(ferry_vmmp_register_check(&r), FERRY_VMMP_E_OK);
	n = ferry_vmmp_encode_register(42, &r, buf, sizeof(buf));
	assert_int_equal(n, (int)want);
	assert_int_equal(want - FERRY_VMMP_HDR_LEN, ferry_vmmp_max_payload(FERRY_VMMP_REGISTER));
	assert_int_equal(decode_exact(buf, (size_t)n, FERRY_VMMP_MAX_FDS), FERRY_VMMP_E_OK);
	assert_int_equal(msg.hdr.type, FERRY_VMMP_REGISTER);
	assert_int_equal(msg.hdr.flags, 0);
	assert_int_equal(msg.hdr.request_id, 42);
	assert_string_equal(msg.u.reg.vm_id, r.vm_id);
	assert_int_equal(msg.u.reg.vm_id_len, FERRY_VMMP_VM_ID_MAX);
	assert_int_equal(msg.u.reg.uffd_features, r.uffd_features);
	assert_int_equal(msg.u.reg.flags, r.flags);
	assert_int_equal(msg.u.reg.migration_id, r.migration_id);
	assert_int_equal(msg.u.reg.fd_count, FERRY_VMMP_MAX_FDS);
	assert_int_equal(msg.u.reg.region_count, FERRY_VMMP_MAX_REGIONS);
	assert_memory_equal(msg.u.reg.regions, r.regions, sizeof(r.regions));
	/* Any other number of descriptors is refused, only after the body passed. */
	assert_int_equal(decode_exact(buf, (size_t)n, FERRY_VMMP_MAX_FDS - 1), FERRY_VMMP_E_FD_MISMATCH);
	assert_int_equal(decode_exact(buf, (size_t)n, 0), FERRY_VMMP_E_FD_MISMATCH);

	CHECK_SHORT_CAPS(ferry_vmmp_encode_register(42, &r, buf, cap), want);
	assert_int_equal(ferry_vmmp_encode_register(42, &r, NULL, sizeof(buf)), -FERRY_VMMP_E_MALFORMED);
	assert_int_equal(ferry_vmmp_encode_register(42, NULL, buf, sizeof(buf)), -FERRY_VMMP_E_MALFORMED);
}

static struct ferry_vmmp_register one_region(uint64_t gpa, uint64_t size, uint64_t hva, uint32_t ps)
{
	struct ferry_vmmp_register r;

	memset(&r, 0, sizeof(r));
	strcpy(r.vm_id, "vm-1");
	r.region_count = 1;
	r.fd_count = 1;
	r.regions[0] = (struct ferry_vmmp_region){ .gpa = gpa, .size = size, .hva = hva, .page_size = ps,
						   .modes = FERRY_VMMP_MODE_MISSING };
	return r;
}

/* Encode must refuse exactly what decode refuses: encode a valid @r, patch it, or check both ways. */
static void expect_register(const struct ferry_vmmp_register *r, int code)
{
	int n = ferry_vmmp_encode_register(1, r, buf, sizeof(buf));

	assert_int_equal(ferry_vmmp_register_check(r), code);
	if (code == FERRY_VMMP_E_OK) {
		assert_true(n > 0);
		assert_int_equal(decode_exact(buf, (size_t)n, r->fd_count), FERRY_VMMP_E_OK);
	} else {
		assert_int_equal(n, -code);
	}
}

static void test_register_boundaries(void **state)
{
	struct ferry_vmmp_register r;

	(void)state;
	/* GPA end exactly at the limit, then one page past it. */
	r = one_region(FERRY_VMMP_GPA_LIMIT - G1, G1, 0x1000, FERRY_VMMP_PAGE_4K);
	expect_register(&r, FERRY_VMMP_E_OK);
	r.regions[0].gpa += 4096;
	expect_register(&r, FERRY_VMMP_E_TOO_LARGE);
	/* HVA end exactly at the limit, then past it; a size alone above the GPA space. */
	r = one_region(0, G1, FERRY_VMMP_HVA_LIMIT - G1, FERRY_VMMP_PAGE_2M);
	expect_register(&r, FERRY_VMMP_E_OK);
	r.regions[0].hva += FERRY_VMMP_PAGE_2M;
	expect_register(&r, FERRY_VMMP_E_TOO_LARGE);
	r = one_region(0, FERRY_VMMP_GPA_LIMIT + 4096, 0x1000, FERRY_VMMP_PAGE_4K);
	expect_register(&r, FERRY_VMMP_E_TOO_LARGE);
	/* Page sizes: only 4 KiB and 2 MiB; alignment to the region's own page size. */
	r = one_region(0, G1, 0x1000, 8192);
	expect_register(&r, FERRY_VMMP_E_PAGE_SIZE);
	r = one_region(0, G1, 0x1000, FERRY_VMMP_PAGE_2M);
	expect_register(&r, FERRY_VMMP_E_BAD_ALIGNMENT);
	r = one_region(FERRY_VMMP_PAGE_2M, 4096, FERRY_VMMP_PAGE_2M, FERRY_VMMP_PAGE_2M);
	expect_register(&r, FERRY_VMMP_E_BAD_ALIGNMENT);
	/* VM id: empty, blank, too long, exactly 64. */
	r = one_region(0, G1, 0x1000, FERRY_VMMP_PAGE_4K);
	r.vm_id[0] = '\0';
	expect_register(&r, FERRY_VMMP_E_BAD_VM_ID);
	strcpy(r.vm_id, "a b");
	expect_register(&r, FERRY_VMMP_E_BAD_VM_ID);
	strcpy(r.vm_id, "tab\there");
	expect_register(&r, FERRY_VMMP_E_BAD_VM_ID);
	memset(r.vm_id, 'x', sizeof(r.vm_id)); /* no NUL within 65 bytes */
	expect_register(&r, FERRY_VMMP_E_TOO_LARGE);
	r.vm_id[FERRY_VMMP_VM_ID_MAX] = '\0';
	expect_register(&r, FERRY_VMMP_E_OK);
	/* Counts. */
	r = one_region(0, G1, 0x1000, FERRY_VMMP_PAGE_4K);
	r.region_count = 0;
	expect_register(&r, FERRY_VMMP_E_MALFORMED);
	r.region_count = FERRY_VMMP_MAX_REGIONS + 1;
	expect_register(&r, FERRY_VMMP_E_TOO_LARGE);
	r.region_count = 1;
	r.fd_count = 0;
	expect_register(&r, FERRY_VMMP_E_FD_MISMATCH);
	r.fd_count = FERRY_VMMP_MAX_FDS + 1;
	expect_register(&r, FERRY_VMMP_E_TOO_LARGE);
	r.fd_count = 1;
	r.flags = 4;
	expect_register(&r, FERRY_VMMP_E_BAD_FLAGS);
	/* INCOMING needs SERVER_REQ and a migration id; a migration id needs INCOMING. */
	r.flags = FERRY_VMMP_REG_F_INCOMING;
	r.migration_id = 9;
	expect_register(&r, FERRY_VMMP_E_BAD_FLAGS);
	r.flags = FERRY_VMMP_REG_F_INCOMING | FERRY_VMMP_REG_F_SERVER_REQ;
	r.migration_id = 0;
	expect_register(&r, FERRY_VMMP_E_MALFORMED);
	r.flags = FERRY_VMMP_REG_F_SERVER_REQ;
	r.migration_id = 9;
	expect_register(&r, FERRY_VMMP_E_MALFORMED);
	r.migration_id = 0;
	expect_register(&r, FERRY_VMMP_E_OK);
	assert_int_equal(msg.u.reg.flags, FERRY_VMMP_REG_F_SERVER_REQ);
	r.flags = FERRY_VMMP_REG_F_INCOMING | FERRY_VMMP_REG_F_SERVER_REQ;
	r.migration_id = 77;
	expect_register(&r, FERRY_VMMP_E_OK);
	assert_int_equal(msg.u.reg.migration_id, 77);
}

static void test_register_overlap_rules(void **state)
{
	struct ferry_vmmp_register r = one_region(0, G1, 0x7f0000000000ull, FERRY_VMMP_PAGE_4K);

	(void)state;
	r.region_count = 2;
	/* Touching in both spaces: fine. */
	r.regions[1] = r.regions[0];
	r.regions[1].gpa = G1;
	r.regions[1].hva = 0x7f0000000000ull + G1;
	expect_register(&r, FERRY_VMMP_E_OK);
	/* One page of guest-physical overlap. */
	r.regions[1].gpa = G1 - 4096;
	expect_register(&r, FERRY_VMMP_E_OVERLAP);
	r.regions[1].gpa = G1;
	r.regions[1].hva -= 4096;
	expect_register(&r, FERRY_VMMP_E_OVERLAP);
	r.regions[1].hva += 4096;
	/* Same file offsets: fine in different files or anonymous, not in one file. */
	r.fd_count = 3;
	r.regions[0].fd_slot = 1;
	r.regions[1].fd_slot = 2;
	expect_register(&r, FERRY_VMMP_E_OK);
	r.regions[1].fd_slot = 1;
	r.fd_count = 2;
	expect_register(&r, FERRY_VMMP_E_OVERLAP);
	r.regions[1].offset = G1;
	expect_register(&r, FERRY_VMMP_E_OK);
	/* A declared memory file no region uses; a slot beyond the declared ones. */
	r.fd_count = 3;
	expect_register(&r, FERRY_VMMP_E_FD_MISMATCH);
	r.fd_count = 2;
	r.regions[1].fd_slot = 2;
	expect_register(&r, FERRY_VMMP_E_FD_MISMATCH);
	/* MINOR needs a memory file; WP alone is fine on anonymous memory. */
	r.regions[1].fd_slot = 0;
	r.regions[1].modes = FERRY_VMMP_MODE_MINOR;
	expect_register(&r, FERRY_VMMP_E_UNSUPPORTED);
	r.regions[1].modes = FERRY_VMMP_MODE_WP;
	expect_register(&r, FERRY_VMMP_E_OK);
	r.regions[1].modes = 0x08;
	expect_register(&r, FERRY_VMMP_E_BAD_FLAGS);
}

/* ---------------------------------------------------------------- other requests */

static void test_free_hint_limits(void **state)
{
	static struct ferry_vmmp_range r[FERRY_VMMP_MAX_HINTS + 1];
	struct ferry_vmmp_range got;
	const size_t want = FERRY_VMMP_HDR_LEN + 8 + FERRY_VMMP_MAX_HINTS * FERRY_VMMP_HINT_LEN;
	int n;

	(void)state;
	for (uint32_t i = 0; i <= FERRY_VMMP_MAX_HINTS; i++) {
		r[i].gpa = (uint64_t)i * 3 * 4096;
		r[i].len = (i % 2 + 1) * 4096ull; /* every other range touches the next */
	}
	n = ferry_vmmp_encode_free_hint(9, r, FERRY_VMMP_MAX_HINTS, buf, sizeof(buf));
	assert_int_equal(n, (int)want);
	assert_int_equal(decode_exact(buf, (size_t)n, 0), FERRY_VMMP_E_OK);
	assert_int_equal(msg.u.hints.count, FERRY_VMMP_MAX_HINTS);
	assert_int_equal(msg.u.hints.total_len, FERRY_VMMP_MAX_HINTS / 2 * 3 * 4096ull);
	for (uint32_t i = 0; i < FERRY_VMMP_MAX_HINTS; i++) {
		ferry_vmmp_hint_entry(&msg.u.hints, i, &got);
		assert_int_equal(got.gpa, r[i].gpa);
		assert_int_equal(got.len, r[i].len);
	}
	assert_int_equal(ferry_vmmp_encode_free_hint(9, r, FERRY_VMMP_MAX_HINTS + 1, buf, sizeof(buf)),
			 -FERRY_VMMP_E_TOO_LARGE);
	assert_int_equal(ferry_vmmp_encode_free_hint(9, r, 0, buf, sizeof(buf)), -FERRY_VMMP_E_MALFORMED);
	assert_int_equal(decode_exact(buf, (size_t)n, 1), FERRY_VMMP_E_FD_MISMATCH);
	CHECK_SHORT_CAPS(ferry_vmmp_encode_free_hint(9, r, 3, buf, cap), FERRY_VMMP_HDR_LEN + 8 + 3 * 16);

	/* The last range may end exactly at the guest-physical limit. */
	r[0] = (struct ferry_vmmp_range){ FERRY_VMMP_GPA_LIMIT - 4096, 4096 };
	assert_true(ferry_vmmp_encode_free_hint(1, r, 1, buf, sizeof(buf)) > 0);
	r[0].gpa += 4096;
	assert_int_equal(ferry_vmmp_encode_free_hint(1, r, 1, buf, sizeof(buf)), -FERRY_VMMP_E_TOO_LARGE);
	r[0] = (struct ferry_vmmp_range){ 8192, 4096 };
	r[1] = (struct ferry_vmmp_range){ 4096, 4096 };
	assert_int_equal(ferry_vmmp_encode_free_hint(1, r, 2, buf, sizeof(buf)), -FERRY_VMMP_E_OVERLAP);
	r[1] = (struct ferry_vmmp_range){ 12288, 100 };
	assert_int_equal(ferry_vmmp_encode_free_hint(1, r, 2, buf, sizeof(buf)), -FERRY_VMMP_E_BAD_ALIGNMENT);
}

static void test_notify_ok_register_ok(void **state)
{
	struct ferry_vmmp_register_ok ok = { .vm_handle = 77, .server_features = ~0ull,
					     .max_chunk = FERRY_VMMP_MAX_CHUNK };
	int n;

	(void)state;
	for (uint32_t ev = FERRY_VMMP_EV_SUSPEND; ev <= FERRY_VMMP_EV_RESUME; ev++) {
		n = ferry_vmmp_encode_notify(ev, ev, buf, sizeof(buf));
		assert_int_equal(n, FERRY_VMMP_HDR_LEN + 8);
		assert_int_equal(decode_exact(buf, (size_t)n, 0), FERRY_VMMP_E_OK);
		assert_int_equal(msg.u.notify.event, ev);
	}
	assert_int_equal(ferry_vmmp_encode_notify(1, 0, buf, sizeof(buf)), -FERRY_VMMP_E_UNSUPPORTED);
	assert_int_equal(ferry_vmmp_encode_notify(1, 3, buf, sizeof(buf)), -FERRY_VMMP_E_UNSUPPORTED);

	n = ferry_vmmp_encode_register_ok(5, &ok, buf, sizeof(buf));
	assert_int_equal(n, FERRY_VMMP_HDR_LEN + 24);
	assert_int_equal(decode_exact(buf, (size_t)n, 0), FERRY_VMMP_E_OK);
	assert_int_equal(msg.hdr.flags, FERRY_VMMP_F_REPLY);
	assert_int_equal(msg.u.reg_ok.vm_handle, 77);
	assert_int_equal(msg.u.reg_ok.server_features, ~0ull);
	assert_int_equal(msg.u.reg_ok.max_chunk, FERRY_VMMP_MAX_CHUNK);
	ok.max_chunk = 0;
	assert_int_equal(ferry_vmmp_encode_register_ok(5, &ok, buf, sizeof(buf)), -FERRY_VMMP_E_MALFORMED);
	ok.max_chunk = FERRY_VMMP_MAX_CHUNK + 1;
	assert_int_equal(ferry_vmmp_encode_register_ok(5, &ok, buf, sizeof(buf)), -FERRY_VMMP_E_TOO_LARGE);

	n = ferry_vmmp_encode_ok(6, UINT64_MAX, buf, sizeof(buf));
	assert_int_equal(decode_exact(buf, (size_t)n, 0), FERRY_VMMP_E_OK);
	assert_int_equal(msg.u.ok.value, UINT64_MAX);
	n = ferry_vmmp_encode_unregister(7, buf, sizeof(buf));
	assert_int_equal(n, FERRY_VMMP_HDR_LEN);
	assert_int_equal(decode_exact(buf, (size_t)n, 0), FERRY_VMMP_E_OK);
	assert_int_equal(msg.hdr.type, FERRY_VMMP_UNREGISTER);
	n = ferry_vmmp_encode_stats(8, buf, sizeof(buf));
	assert_int_equal(decode_exact(buf, (size_t)n, 0), FERRY_VMMP_E_OK);
	assert_int_equal(msg.hdr.type, FERRY_VMMP_STATS);
	CHECK_SHORT_CAPS(ferry_vmmp_encode_stats(8, buf, cap), FERRY_VMMP_HDR_LEN);
}

static void test_state_limits(void **state)
{
	static uint8_t data[FERRY_VMMP_MAX_CHUNK];
	int n;

	(void)state;
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + 3);
	/* A full chunk at the very end of the largest blob. */
	n = ferry_vmmp_encode_state_prefix(FERRY_VMMP_STATE_PUT, 3, FERRY_VMMP_STATE_MAX,
					   FERRY_VMMP_STATE_MAX - FERRY_VMMP_MAX_CHUNK, FERRY_VMMP_MAX_CHUNK,
					   buf, sizeof(buf));
	assert_int_equal(n, FERRY_VMMP_HDR_LEN + 16);
	memcpy(buf + n, data, sizeof(data));
	assert_int_equal(decode_exact(buf, (size_t)n + sizeof(data), 0), FERRY_VMMP_E_OK);
	assert_int_equal(msg.u.state.total_len, FERRY_VMMP_STATE_MAX);
	assert_int_equal(msg.u.state.data_len, FERRY_VMMP_MAX_CHUNK);
	assert_memory_equal(msg.u.state.data, data, sizeof(data));
	assert_int_equal(msg.hdr.payload_len, ferry_vmmp_max_payload(FERRY_VMMP_STATE_PUT));
	/* The prefix alone announces the data: decoding it without the data is TRUNCATED. */
	assert_int_equal(decode_exact(buf, (size_t)n, 0), FERRY_VMMP_E_TRUNCATED);

	assert_int_equal(ferry_vmmp_encode_state_prefix(FERRY_VMMP_STATE_PUT, 3, FERRY_VMMP_STATE_MAX + 1, 0, 1,
							buf, sizeof(buf)), -FERRY_VMMP_E_TOO_LARGE);
	assert_int_equal(ferry_vmmp_encode_state_prefix(FERRY_VMMP_STATE_PUT, 3, 10, 0, FERRY_VMMP_MAX_CHUNK + 1,
							buf, sizeof(buf)), -FERRY_VMMP_E_TOO_LARGE);
	assert_int_equal(ferry_vmmp_encode_state_prefix(FERRY_VMMP_STATE_PUT, 3, 10, 5, 6, buf, sizeof(buf)),
			 -FERRY_VMMP_E_MALFORMED);
	assert_int_equal(ferry_vmmp_encode_state_prefix(FERRY_VMMP_STATE_PUT, 3, 10, 0, 0, buf, sizeof(buf)),
			 -FERRY_VMMP_E_MALFORMED);
	assert_int_equal(ferry_vmmp_encode_state_prefix(FERRY_VMMP_STATS, 3, 10, 0, 1, buf, sizeof(buf)),
			 -FERRY_VMMP_E_MALFORMED);
	/* Empty blob (PUT) and the end of one (DATA). */
	n = ferry_vmmp_encode_state_prefix(FERRY_VMMP_STATE_PUT, 3, 0, 0, 0, buf, sizeof(buf));
	assert_int_equal(decode_exact(buf, (size_t)n, 0), FERRY_VMMP_E_OK);
	n = ferry_vmmp_encode_state_prefix(FERRY_VMMP_STATE_DATA, 3, 99, 99, 0, buf, sizeof(buf));
	assert_int_equal(decode_exact(buf, (size_t)n, 0), FERRY_VMMP_E_OK);
	assert_int_equal(msg.hdr.flags, FERRY_VMMP_F_REPLY);
	CHECK_SHORT_CAPS(ferry_vmmp_encode_state_prefix(FERRY_VMMP_STATE_DATA, 3, 99, 0, 9, buf, cap),
			 FERRY_VMMP_HDR_LEN + 16);

	n = ferry_vmmp_encode_state_get(4, FERRY_VMMP_STATE_MAX, FERRY_VMMP_MAX_CHUNK, buf, sizeof(buf));
	assert_int_equal(decode_exact(buf, (size_t)n, 0), FERRY_VMMP_E_OK);
	assert_int_equal(msg.u.state_get.offset, FERRY_VMMP_STATE_MAX);
	assert_int_equal(msg.u.state_get.max_len, FERRY_VMMP_MAX_CHUNK);
	assert_int_equal(ferry_vmmp_encode_state_get(4, 0, 0, buf, sizeof(buf)), -FERRY_VMMP_E_MALFORMED);
	assert_int_equal(ferry_vmmp_encode_state_get(4, 0, FERRY_VMMP_MAX_CHUNK + 1, buf, sizeof(buf)),
			 -FERRY_VMMP_E_TOO_LARGE);
	assert_int_equal(ferry_vmmp_encode_state_get(4, FERRY_VMMP_STATE_MAX + 1, 1, buf, sizeof(buf)),
			 -FERRY_VMMP_E_TOO_LARGE);
}

static void test_stats_and_error(void **state)
{
	static struct ferry_vmmp_stat st[FERRY_VMMP_MAX_STATS + 1];
	char long_msg[400];
	int n;

	(void)state;
	for (unsigned int i = 0; i <= FERRY_VMMP_MAX_STATS; i++) {
		memset(st[i].name, 'a' + (char)(i % 26), FERRY_VMMP_STAT_NAME_MAX);
		snprintf(st[i].name + FERRY_VMMP_STAT_NAME_MAX - 3, 4, "_%02u", i);
		st[i].value = ~(uint64_t)i;
	}
	n = ferry_vmmp_encode_stats_ok(1, st, FERRY_VMMP_MAX_STATS, buf, sizeof(buf));
	assert_int_equal(n, (int)(FERRY_VMMP_HDR_LEN + ferry_vmmp_max_payload(FERRY_VMMP_STATS_OK)));
	assert_int_equal(decode_exact(buf, (size_t)n, 0), FERRY_VMMP_E_OK);
	assert_int_equal(msg.u.stats_ok.count, FERRY_VMMP_MAX_STATS);
	for (unsigned int i = 0; i < FERRY_VMMP_MAX_STATS; i++) {
		assert_string_equal(msg.u.stats_ok.stats[i].name, st[i].name);
		assert_int_equal(msg.u.stats_ok.stats[i].value, st[i].value);
	}
	assert_int_equal(ferry_vmmp_encode_stats_ok(1, st, FERRY_VMMP_MAX_STATS + 1, buf, sizeof(buf)),
			 -FERRY_VMMP_E_TOO_LARGE);
	strcpy(st[0].name, "Bad");
	assert_int_equal(ferry_vmmp_encode_stats_ok(1, st, 1, buf, sizeof(buf)), -FERRY_VMMP_E_MALFORMED);
	n = ferry_vmmp_encode_stats_ok(1, NULL, 0, buf, sizeof(buf));
	assert_int_equal(decode_exact(buf, (size_t)n, 0), FERRY_VMMP_E_OK);
	assert_int_equal(msg.u.stats_ok.count, 0);

	/* ERROR: longest message kept, a longer one cut, NULL is empty, unknown codes kept. */
	memset(long_msg, 'm', sizeof(long_msg) - 1);
	long_msg[sizeof(long_msg) - 1] = '\0';
	n = ferry_vmmp_encode_error(2, 999, long_msg, buf, sizeof(buf));
	assert_int_equal(n, (int)(FERRY_VMMP_HDR_LEN + 6 + FERRY_VMMP_ERRMSG_MAX));
	assert_int_equal(decode_exact(buf, (size_t)n, 0), FERRY_VMMP_E_OK);
	assert_int_equal(msg.u.error.code, 999);
	assert_int_equal(msg.u.error.msg_len, FERRY_VMMP_ERRMSG_MAX);
	assert_int_equal(strlen(msg.u.error.msg), FERRY_VMMP_ERRMSG_MAX);
	n = ferry_vmmp_encode_error(2, FERRY_VMMP_E_EXISTS, NULL, buf, sizeof(buf));
	assert_int_equal(decode_exact(buf, (size_t)n, 0), FERRY_VMMP_E_OK);
	assert_int_equal(msg.u.error.msg_len, 0);
	assert_string_equal(msg.u.error.msg, "");
}

static void test_header_rules(void **state)
{
	struct ferry_vmmp_hdr h;
	int n;

	(void)state;
	n = ferry_vmmp_encode_notify(0xfedcba9876543210ull, 1, buf, sizeof(buf));
	assert_int_equal(ferry_vmmp_hdr_decode(buf, FERRY_VMMP_HDR_LEN, &h), FERRY_VMMP_E_OK);
	assert_int_equal(h.request_id, 0xfedcba9876543210ull);
	assert_int_equal(h.payload_len, 8);
	assert_int_equal(ferry_vmmp_hdr_decode(NULL, 100, &h), FERRY_VMMP_E_TRUNCATED);
	assert_int_equal(ferry_vmmp_hdr_decode(buf, FERRY_VMMP_HDR_LEN - 1, &h), FERRY_VMMP_E_TRUNCATED);
	/* Magic is "FVMM" in byte order. */
	assert_memory_equal(buf, "FVMM", 4);
	buf[4] = 2;
	assert_int_equal(ferry_vmmp_hdr_decode(buf, (size_t)n, &h), FERRY_VMMP_E_VERSION);
	buf[4] = FERRY_VMMP_VERSION;
	for (unsigned int t = 0; t < 256; t++) {
		uint32_t max = ferry_vmmp_max_payload((uint8_t)t);

		buf[5] = (uint8_t)t;
		buf[6] = (t >= 1 && t <= FERRY_VMMP_TYPE_MAX &&
			  (t == FERRY_VMMP_REGISTER_OK || t == FERRY_VMMP_STATE_DATA || t == FERRY_VMMP_STATS_OK ||
			   t == FERRY_VMMP_OK || t == FERRY_VMMP_ERROR)) ? 1 : 0;
		if (ferry_vmmp_is_server_type((uint8_t)t))
			buf[6] = FERRY_VMMP_F_SERVER;
		buf[16] = (uint8_t)max;
		buf[17] = (uint8_t)(max >> 8);
		buf[18] = (uint8_t)(max >> 16);
		buf[19] = (uint8_t)(max >> 24);
		if (t == 0 || t > FERRY_VMMP_TYPE_MAX) {
			assert_int_equal(ferry_vmmp_hdr_decode(buf, FERRY_VMMP_HDR_LEN, &h),
					 FERRY_VMMP_E_UNKNOWN_TYPE);
			assert_string_equal(ferry_vmmp_type_name((uint8_t)t), "UNKNOWN");
			continue;
		}
		/* Exactly the type's limit passes; one more byte does not. */
		assert_int_equal(ferry_vmmp_hdr_decode(buf, FERRY_VMMP_HDR_LEN, &h), FERRY_VMMP_E_OK);
		max++;
		buf[16] = (uint8_t)max;
		buf[17] = (uint8_t)(max >> 8);
		buf[18] = (uint8_t)(max >> 16);
		buf[19] = (uint8_t)(max >> 24);
		assert_int_equal(ferry_vmmp_hdr_decode(buf, FERRY_VMMP_HDR_LEN, &h), FERRY_VMMP_E_TOO_LARGE);
		/* The reply flag must match the type. */
		buf[16] = buf[17] = buf[18] = buf[19] = 0;
		buf[6] ^= 1;
		assert_int_equal(ferry_vmmp_hdr_decode(buf, FERRY_VMMP_HDR_LEN, &h), FERRY_VMMP_E_BAD_FLAGS);
		assert_string_not_equal(ferry_vmmp_type_name((uint8_t)t), "UNKNOWN");
	}
}

/* ---------------------------------------------------------------- server requests */

static void test_server_requests(void **state)
{
	struct ferry_vmmp_range r[3] = { { 0, 4096 }, { 8192, 8192 }, { 1ull << 30, 2u << 20 } };
	struct ferry_vmmp_range got;
	struct ferry_vmmp_hdr h;
	int n;

	(void)state;
	/* PAUSE / RESUME: flags round-trip, F_SERVER set, unknown flags refused both ways. */
	n = ferry_vmmp_encode_ctl(FERRY_VMMP_PAUSE, 5, FERRY_VMMP_PAUSE_F_SAVE_STATE, buf, sizeof(buf));
	assert_int_equal(n, FERRY_VMMP_HDR_LEN + 8);
	assert_int_equal(decode_exact(buf, (size_t)n, 0), FERRY_VMMP_E_OK);
	assert_int_equal(msg.hdr.type, FERRY_VMMP_PAUSE);
	assert_int_equal(msg.hdr.flags, FERRY_VMMP_F_SERVER);
	assert_int_equal(msg.u.ctl.flags, FERRY_VMMP_PAUSE_F_SAVE_STATE);
	assert_int_equal(decode_exact(buf, (size_t)n, 1), FERRY_VMMP_E_FD_MISMATCH);
	buf[FERRY_VMMP_HDR_LEN] = 2;
	assert_int_equal(decode_exact(buf, (size_t)n, 0), FERRY_VMMP_E_BAD_FLAGS);
	buf[FERRY_VMMP_HDR_LEN] = 1;
	buf[FERRY_VMMP_HDR_LEN + 4] = 1;
	assert_int_equal(decode_exact(buf, (size_t)n, 0), FERRY_VMMP_E_MALFORMED);
	assert_int_equal(ferry_vmmp_encode_ctl(FERRY_VMMP_PAUSE, 5, 2, buf, sizeof(buf)), -FERRY_VMMP_E_BAD_FLAGS);
	assert_int_equal(ferry_vmmp_encode_ctl(FERRY_VMMP_NOTIFY, 5, 0, buf, sizeof(buf)), -FERRY_VMMP_E_UNKNOWN_TYPE);
	n = ferry_vmmp_encode_ctl(FERRY_VMMP_RESUME, 6, FERRY_VMMP_RESUME_F_LOAD_STATE, buf, sizeof(buf));
	assert_int_equal(decode_exact(buf, (size_t)n, 0), FERRY_VMMP_E_OK);
	assert_int_equal(msg.hdr.type, FERRY_VMMP_RESUME);
	assert_int_equal(msg.u.ctl.flags, FERRY_VMMP_RESUME_F_LOAD_STATE);
	CHECK_SHORT_CAPS(ferry_vmmp_encode_ctl(FERRY_VMMP_RESUME, 6, 0, buf, cap), FERRY_VMMP_HDR_LEN + 8);
	/* Direction: a server request without F_SERVER, or a VMM request with it, is refused. */
	buf[6] = 0;
	assert_int_equal(ferry_vmmp_hdr_decode(buf, FERRY_VMMP_HDR_LEN, &h), FERRY_VMMP_E_BAD_FLAGS);
	n = ferry_vmmp_encode_notify(1, FERRY_VMMP_EV_SUSPEND, buf, sizeof(buf));
	buf[6] = FERRY_VMMP_F_SERVER;
	assert_int_equal(ferry_vmmp_hdr_decode(buf, FERRY_VMMP_HDR_LEN, &h), FERRY_VMMP_E_BAD_FLAGS);

	/* DROP_PTES: the FREE_HINT rules, its own count limit. */
	n = ferry_vmmp_encode_drop_ptes(7, r, 3, buf, sizeof(buf));
	assert_int_equal(n, FERRY_VMMP_HDR_LEN + 8 + 3 * 16);
	assert_int_equal(decode_exact(buf, (size_t)n, 0), FERRY_VMMP_E_OK);
	assert_int_equal(msg.hdr.type, FERRY_VMMP_DROP_PTES);
	assert_int_equal(msg.u.hints.count, 3);
	assert_int_equal(msg.u.hints.total_len, 4096 + 8192 + (2u << 20));
	ferry_vmmp_hint_entry(&msg.u.hints, 2, &got);
	assert_int_equal(got.gpa, 1ull << 30);
	assert_int_equal(got.len, 2u << 20);
	r[1].gpa = 0;
	assert_int_equal(ferry_vmmp_encode_drop_ptes(7, r, 3, buf, sizeof(buf)), -FERRY_VMMP_E_OVERLAP);
	r[1].gpa = 8192 + 1;
	assert_int_equal(ferry_vmmp_encode_drop_ptes(7, r, 3, buf, sizeof(buf)), -FERRY_VMMP_E_BAD_ALIGNMENT);
	assert_int_equal(ferry_vmmp_encode_drop_ptes(7, r, 0, buf, sizeof(buf)), -FERRY_VMMP_E_MALFORMED);
	assert_int_equal(ferry_vmmp_encode_drop_ptes(7, r, FERRY_VMMP_MAX_DROP + 1, buf, sizeof(buf)),
			 -FERRY_VMMP_E_TOO_LARGE);
	assert_int_equal(ferry_vmmp_max_payload(FERRY_VMMP_DROP_PTES), 8 + FERRY_VMMP_MAX_DROP * 16);

	/* NOTICE: only MIGRATED. */
	n = ferry_vmmp_encode_notice(8, FERRY_VMMP_NOTICE_MIGRATED, buf, sizeof(buf));
	assert_int_equal(decode_exact(buf, (size_t)n, 0), FERRY_VMMP_E_OK);
	assert_int_equal(msg.hdr.type, FERRY_VMMP_NOTICE);
	assert_int_equal(msg.u.notice.event, FERRY_VMMP_NOTICE_MIGRATED);
	buf[FERRY_VMMP_HDR_LEN] = 2;
	assert_int_equal(decode_exact(buf, (size_t)n, 0), FERRY_VMMP_E_UNSUPPORTED);
	assert_int_equal(ferry_vmmp_encode_notice(8, 0, buf, sizeof(buf)), -FERRY_VMMP_E_UNSUPPORTED);

	/* Replies to server requests: OK / ERROR with F_REPLY | F_SERVER, nothing else. */
	n = ferry_vmmp_encode_ok(5, 4096, buf, sizeof(buf));
	assert_int_equal(ferry_vmmp_mark_server_reply(buf, (size_t)n), 0);
	assert_int_equal(decode_exact(buf, (size_t)n, 0), FERRY_VMMP_E_OK);
	assert_int_equal(msg.hdr.flags, FERRY_VMMP_F_REPLY | FERRY_VMMP_F_SERVER);
	assert_int_equal(msg.u.ok.value, 4096);
	assert_int_equal(ferry_vmmp_mark_server_reply(buf, (size_t)n), -FERRY_VMMP_E_BAD_FLAGS); /* twice */
	n = ferry_vmmp_encode_error(5, FERRY_VMMP_E_UNSUPPORTED, "no", buf, sizeof(buf));
	assert_int_equal(ferry_vmmp_mark_server_reply(buf, (size_t)n), 0);
	assert_int_equal(decode_exact(buf, (size_t)n, 0), FERRY_VMMP_E_OK);
	assert_int_equal(msg.u.error.code, FERRY_VMMP_E_UNSUPPORTED);
	n = ferry_vmmp_encode_stats(5, buf, sizeof(buf));
	assert_int_equal(ferry_vmmp_mark_server_reply(buf, (size_t)n), -FERRY_VMMP_E_BAD_FLAGS);
	n = ferry_vmmp_encode_register_ok(5, &(struct ferry_vmmp_register_ok){ .max_chunk = 4096 }, buf,
					  sizeof(buf));
	buf[6] |= FERRY_VMMP_F_SERVER;
	assert_int_equal(ferry_vmmp_hdr_decode(buf, FERRY_VMMP_HDR_LEN, &h), FERRY_VMMP_E_BAD_FLAGS);
	assert_int_equal(ferry_vmmp_mark_server_reply(NULL, 24), -FERRY_VMMP_E_BAD_FLAGS);

	/* A server request newer than this codec: UNSUPPORTED with the header filled, so it can be skipped. */
	n = ferry_vmmp_encode_ctl(FERRY_VMMP_PAUSE, 0x55, 0, buf, sizeof(buf));
	buf[5] = 200;
	buf[16] = 100;
	memset(&h, 0, sizeof(h));
	assert_int_equal(ferry_vmmp_hdr_decode(buf, FERRY_VMMP_HDR_LEN, &h), FERRY_VMMP_E_UNSUPPORTED);
	assert_int_equal(h.type, 200);
	assert_int_equal(h.request_id, 0x55);
	assert_int_equal(h.payload_len, 100);
	buf[6] = 0;                      /* without F_SERVER it is just an unknown type */
	assert_int_equal(ferry_vmmp_hdr_decode(buf, FERRY_VMMP_HDR_LEN, &h), FERRY_VMMP_E_UNKNOWN_TYPE);
	buf[6] = FERRY_VMMP_F_SERVER | FERRY_VMMP_F_REPLY;
	assert_int_equal(ferry_vmmp_hdr_decode(buf, FERRY_VMMP_HDR_LEN, &h), FERRY_VMMP_E_UNKNOWN_TYPE);
	buf[6] = FERRY_VMMP_F_SERVER;
	wire_put_u32_le(buf + 16, FERRY_VMMP_MAX_PAYLOAD + 1);   /* cannot be skipped safely */
	assert_int_equal(ferry_vmmp_hdr_decode(buf, FERRY_VMMP_HDR_LEN, &h), FERRY_VMMP_E_UNKNOWN_TYPE);
	assert_true(ferry_vmmp_is_server_type(FERRY_VMMP_DROP_PTES));
	assert_false(ferry_vmmp_is_server_type(FERRY_VMMP_NOTIFY));
	assert_false(ferry_vmmp_is_server_type(255));
	assert_string_equal(ferry_vmmp_type_name(FERRY_VMMP_DROP_PTES), "DROP_PTES");
}

/* ---------------------------------------------------------------- allow-list */

static void test_allow_list(void **state)
{
	struct ferry_vmmp_allow a;
	uint32_t gids[3] = { 100, 994, 5 };
	char spec[1024];
	size_t off = 0;

	(void)state;
	assert_int_equal(ferry_vmmp_allow_parse("uid:107, gid:994", &a), FERRY_VMMP_E_OK);
	assert_int_equal(a.count, 2);
	assert_true(ferry_vmmp_allow_match(&a, 107, NULL, 0));
	assert_true(ferry_vmmp_allow_match(&a, 1000, gids, 3));      /* supplementary group */
	assert_false(ferry_vmmp_allow_match(&a, 1000, gids, 1));
	assert_false(ferry_vmmp_allow_match(&a, 0, NULL, 0));       /* root is not implicit */
	assert_false(ferry_vmmp_allow_match(NULL, 107, NULL, 0));
	assert_int_equal(ferry_vmmp_allow_parse("  uid:0\tgid:4294967294,,\n", &a), FERRY_VMMP_E_OK);
	assert_int_equal(a.count, 2);
	assert_int_equal(a.e[1].id, 4294967294u);
	assert_true(ferry_vmmp_allow_match(&a, 0, NULL, 0));

	for (unsigned int i = 0; i < FERRY_VMMP_ALLOW_MAX; i++)
		off += (size_t)snprintf(spec + off, sizeof(spec) - off, "uid:%u,", i);
	assert_int_equal(ferry_vmmp_allow_parse(spec, &a), FERRY_VMMP_E_OK);
	assert_int_equal(a.count, FERRY_VMMP_ALLOW_MAX);
	snprintf(spec + off, sizeof(spec) - off, "gid:1");
	assert_int_equal(ferry_vmmp_allow_parse(spec, &a), FERRY_VMMP_E_TOO_LARGE);

	static const char *const bad[] = {
		"", " , ", "uid:", "uid:abc", "user:1", "uid:4294967295", "uid:12345678901", "uid:1;gid:2",
		"uid:-1", "uid: 1", "UID:1", "uid:1x", "gid",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (ferry_vmmp_allow_parse(bad[i], &a) != FERRY_VMMP_E_MALFORMED)
			fail_msg("allow-list \"%s\" accepted", bad[i]);
	assert_int_equal(ferry_vmmp_allow_parse(NULL, &a), FERRY_VMMP_E_MALFORMED);
}

/* ---------------------------------------------------------------- Firecracker */

static const char FC_V112[] =
	"[{\"base_host_virt_addr\":139888372088832,\"size\":3221225472,\"offset\":0,"
	"\"page_size\":4096,\"page_size_kib\":4096},"
	"{\"base_host_virt_addr\":139891593314304,\"size\":1073741824,\"offset\":3221225472,"
	"\"page_size\":4096,\"page_size_kib\":4096}]";

static void test_fc_frame(void **state)
{
	static const char tricky[] = " \n[{\"a\":\"]}\\\"[\",\"b\":[1,{\"c\":[]}]}]  trailing";
	uint8_t big[FERRY_VMMP_FC_MAX_LEN + 10];
	size_t len = strlen(FC_V112), frame = 0;

	(void)state;
	/* Every strict prefix needs more; the whole array frames exactly. */
	for (size_t cut = 0; cut < len; cut++)
		assert_int_equal(ferry_vmmp_fc_frame((const uint8_t *)FC_V112, cut, &frame), FERRY_VMMP_E_TRUNCATED);
	assert_int_equal(ferry_vmmp_fc_frame((const uint8_t *)FC_V112, len, &frame), FERRY_VMMP_E_OK);
	assert_int_equal(frame, len);
	/* Brackets inside strings and escaped quotes do not count; leading blanks do. */
	assert_int_equal(ferry_vmmp_fc_frame((const uint8_t *)tricky, strlen(tricky), &frame), FERRY_VMMP_E_OK);
	assert_int_equal(frame, strlen(tricky) - strlen("  trailing"));
	assert_int_equal(ferry_vmmp_fc_frame((const uint8_t *)"{\"a\":1}", 7, &frame), FERRY_VMMP_E_JSON_SHAPE);
	assert_int_equal(ferry_vmmp_fc_frame((const uint8_t *)"  x", 3, &frame), FERRY_VMMP_E_JSON_SHAPE);
	assert_int_equal(ferry_vmmp_fc_frame((const uint8_t *)"   ", 3, &frame), FERRY_VMMP_E_TRUNCATED);
	/* An array that never closes within the limit is refused, not waited for forever. */
	memset(big, '[', sizeof(big));
	assert_int_equal(ferry_vmmp_fc_frame(big, FERRY_VMMP_FC_MAX_LEN - 1, &frame), FERRY_VMMP_E_TRUNCATED);
	assert_int_equal(ferry_vmmp_fc_frame(big, sizeof(big), &frame), FERRY_VMMP_E_TOO_LARGE);
	memset(big, ' ', sizeof(big));
	assert_int_equal(ferry_vmmp_fc_frame(big, sizeof(big), &frame), FERRY_VMMP_E_TOO_LARGE);
}

static void test_fc_decode_and_convert(void **state)
{
	static struct ferry_vmmp_fc_handshake hs;
	static struct ferry_vmmp_register reg;
	char why[256];
	int n;

	(void)state;
	assert_int_equal(ferry_vmmp_fc_decode((const uint8_t *)FC_V112, strlen(FC_V112), 1, &hs, why, sizeof(why)),
			 FERRY_VMMP_E_OK);
	assert_int_equal(hs.count, 2);
	assert_int_equal(hs.regions[0].hva, 139888372088832ull);
	assert_int_equal(hs.regions[0].size, 3 * G1);
	assert_int_equal(hs.regions[1].offset, 3 * G1);
	assert_int_equal(hs.regions[1].page_size, 4096);
	assert_int_equal(hs.regions[1].page_src, FERRY_VMMP_FC_PS_FIELD);
	assert_false(hs.regions[0].has_gpa);

	assert_int_equal(ferry_vmmp_fc_to_register(&hs, "fc-vm-1", &reg), FERRY_VMMP_E_OK);
	assert_int_equal(reg.fd_count, 1);
	assert_int_equal(reg.region_count, 2);
	assert_int_equal(reg.regions[1].gpa, 3 * G1); /* the file offset stands in */
	assert_int_equal(reg.regions[1].hva, 139891593314304ull);
	assert_int_equal(reg.regions[1].modes, FERRY_VMMP_MODE_MISSING);
	assert_int_equal(reg.regions[1].fd_slot, 0);
	n = ferry_vmmp_encode_register(1, &reg, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(decode_exact(buf, (size_t)n, 1), FERRY_VMMP_E_OK);
	assert_int_equal(ferry_vmmp_fc_to_register(&hs, "bad id", &reg), FERRY_VMMP_E_BAD_VM_ID);

	/* With gpa_start (unreleased Firecracker), the real guest-physical base is used. */
	static const char gpa[] = "[{\"base_host_virt_addr\":1073741824,\"size\":1073741824,\"offset\":0,"
				  "\"gpa_start\":4294967296}]";
	assert_int_equal(ferry_vmmp_fc_decode((const uint8_t *)gpa, strlen(gpa), 1, &hs, why, sizeof(why)),
			 FERRY_VMMP_E_OK);
	assert_int_equal(hs.regions[0].page_src, FERRY_VMMP_FC_PS_DEFAULT);
	assert_int_equal(ferry_vmmp_fc_to_register(&hs, "fc", &reg), FERRY_VMMP_E_OK);
	assert_int_equal(reg.regions[0].gpa, 4 * G1);

	/* A reason is always given, and why may be NULL. */
	assert_int_equal(ferry_vmmp_fc_decode((const uint8_t *)"[]", 2, 1, &hs, NULL, 0), FERRY_VMMP_E_JSON_SHAPE);
	assert_int_equal(ferry_vmmp_fc_decode((const uint8_t *)"[]", 2, 1, &hs, why, 8), FERRY_VMMP_E_JSON_SHAPE);
	assert_int_equal(strlen(why), 7);
	assert_int_equal(ferry_vmmp_fc_decode(NULL, 0, 1, &hs, why, sizeof(why)), FERRY_VMMP_E_JSON_SYNTAX);
}

static void test_names(void **state)
{
	(void)state;
	for (uint32_t a = 0; a <= FERRY_VMMP_E_CODE_MAX; a++) {
		assert_non_null(ferry_vmmp_errcode_str(a));
		assert_string_not_equal(ferry_vmmp_errcode_str(a), "unknown error");
		for (uint32_t b = 0; b < a; b++)
			assert_string_not_equal(ferry_vmmp_errcode_str(a), ferry_vmmp_errcode_str(b));
	}
	assert_string_equal(ferry_vmmp_errcode_str(FERRY_VMMP_E_CODE_MAX + 1), "unknown error");
	assert_string_equal(ferry_vmmp_type_name(FERRY_VMMP_REGISTER), "REGISTER");
	assert_string_equal(ferry_vmmp_type_name(FERRY_VMMP_ERROR), "ERROR");
	/* Codes 0..7 mean what they mean in the page protocol. */
	assert_int_equal(FERRY_VMMP_E_TRUNCATED, 1);
	assert_int_equal(FERRY_VMMP_E_MALFORMED, 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_register_round_trip_max),
		cmocka_unit_test(test_register_boundaries),
		cmocka_unit_test(test_register_overlap_rules),
		cmocka_unit_test(test_free_hint_limits),
		cmocka_unit_test(test_notify_ok_register_ok),
		cmocka_unit_test(test_state_limits),
		cmocka_unit_test(test_stats_and_error),
		cmocka_unit_test(test_header_rules),
		cmocka_unit_test(test_server_requests),
		cmocka_unit_test(test_allow_list),
		cmocka_unit_test(test_fc_frame),
		cmocka_unit_test(test_fc_decode_and_convert),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
