/*
 * Migration protocol codec: every message type round-trips through its
 * encoder and migp_decode; encoders refuse bad arguments with the documented
 * codes; limits are enforced at exactly their boundary.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proto/migrate.h"

static uint8_t buf[MIGP_MAX_MSG];
static struct migp_msg m;

static void decode_ok(int n, uint8_t type)
{
	assert_true(n > 0);
	assert_int_equal(migp_decode(buf, (size_t)n, &m), MIG_E_OK);
	assert_int_equal(m.hdr.type, type);
	assert_int_equal(m.hdr.request_id, 42);
	/* every strict prefix is TRUNCATED */
	assert_int_equal(migp_decode(buf, (size_t)n - 1, &m), MIG_E_TRUNCATED);
	assert_int_equal(migp_decode(buf, (size_t)n, &m), MIG_E_OK);
}

static void test_control(void **state)
{
	struct migp_prepare p = { .budget_bytes = 1 << 30, .id = "vm-7", .nsubs = 2 };
	struct migp_prepare_ok po = { .ep = { "10.0.0.2", 23001 } };
	struct migp_start st = { .mode = 3, .id = "vm-7", .dest = { "main", 23001 } };
	struct migp_status_ok so = { .phase = 4, .round = 3, .pages_total = 100, .pages_sent = 60,
				     .downtime_ns = 5, .generation = 9, .error = "sub-host lost" };

	(void)state;
	strcpy(p.subs[0].host, "10.0.0.3");
	p.subs[0].port = 23100;
	strcpy(p.subs[1].host, "sub-2");
	p.subs[1].port = 23101;
	decode_ok(migp_encode_prepare(42, &p, buf, sizeof(buf)), MIGP_PREPARE);
	assert_int_equal(m.u.prepare.budget_bytes, 1 << 30);
	assert_string_equal(m.u.prepare.id, "vm-7");
	assert_int_equal(m.u.prepare.nsubs, 2);
	assert_string_equal(m.u.prepare.subs[1].host, "sub-2");
	assert_int_equal(m.u.prepare.subs[1].port, 23101);

	memset(po.token, 0xab, sizeof(po.token));
	decode_ok(migp_encode_prepare_ok(42, &po, buf, sizeof(buf)), MIGP_PREPARE_OK);
	assert_string_equal(m.u.prepare_ok.ep.host, "10.0.0.2");
	assert_int_equal(m.u.prepare_ok.token[31], 0xab);
	assert_true(m.hdr.flags & MIGP_F_REPLY);

	memset(st.token, 0x11, sizeof(st.token));
	decode_ok(migp_encode_start(42, &st, buf, sizeof(buf)), MIGP_START);
	assert_int_equal(m.u.start.mode, 3);
	assert_string_equal(m.u.start.dest.host, "main");
	assert_memory_equal(m.u.start.token, st.token, 32);

	decode_ok(migp_encode_status(42, "vm-7", buf, sizeof(buf)), MIGP_STATUS);
	assert_string_equal(m.u.ref.id, "vm-7");
	decode_ok(migp_encode_abort(42, "vm-7", buf, sizeof(buf)), MIGP_ABORT);

	decode_ok(migp_encode_status_ok(42, &so, buf, sizeof(buf)), MIGP_STATUS_OK);
	assert_int_equal(m.u.status_ok.phase, 4);
	assert_int_equal(m.u.status_ok.pages_sent, 60);
	assert_int_equal(m.u.status_ok.generation, 9);
	assert_string_equal(m.u.status_ok.error, "sub-host lost");

	decode_ok(migp_encode_ok(42, 7, buf, sizeof(buf)), MIGP_OK);
	assert_int_equal(m.u.value.value, 7);
	decode_ok(migp_encode_error(42, MIG_E_UNKNOWN_VM, "no vm-8", buf, sizeof(buf)), MIGP_ERROR);
	assert_int_equal(m.u.error.code, MIG_E_UNKNOWN_VM);
	assert_string_equal(m.u.error.msg, "no vm-8");

	/* bad arguments */
	assert_int_equal(migp_encode_status(42, "vm 7", buf, sizeof(buf)), -MIG_E_BAD_VM_ID);
	assert_int_equal(migp_encode_status(42, "", buf, sizeof(buf)), -MIG_E_BAD_VM_ID);
	st.mode = 5;
	assert_int_equal(migp_encode_start(42, &st, buf, sizeof(buf)), -MIG_E_MALFORMED);
	st.mode = 1;
	strcpy(st.dest.host, "a/b");
	assert_int_equal(migp_encode_start(42, &st, buf, sizeof(buf)), -MIG_E_BAD_HOST);
	p.nsubs = MIGP_SUBS_MAX + 1;
	assert_int_equal(migp_encode_prepare(42, &p, buf, sizeof(buf)), -MIG_E_TOO_LARGE);
	assert_true(migp_encode_ok(42, 1, buf, 20) < 0);
}

static void test_stream(void **state)
{
	uint8_t nonce[32], mac[32];
	struct migp_auth_ok ao = { .data_port = 23002 };
	struct migp_layout l = { .npages = 3, .pages_used = 2, .generation = 4, .mode = 1, .nregions = 2,
				 .regions = { { 0, 4096, 0 }, { 1ull << 32, 8192, 1 } } };
	struct migp_layout_ok lo = { .dst_rkey = 5, .stage_slots = 16384, .dst_base = 0,
				     .dst_pages = 100 };
	uint64_t fp[3] = { 7, 1ull << 40, 0 };
	struct migp_extent x[2] = { { .sub = 0, .extent_id = 3, .length = 1 << 24 },
				    { .sub = 1, .extent_id = 4, .length = 4096 } };
	struct migp_map_entry e[3] = { { .page = 1, .generation = 2, .where = MIGP_W_DEST },
				       { .page = 2, .generation = 2, .where = MIGP_W_SUB, .sub = 1, .extent = 1,
					 .slot = 0 },
				       { .page = 0, .generation = 3, .where = MIGP_W_UNUSED } };
	struct migp_map_entry got;
	struct migp_extent xe;
	static uint8_t blob[MIGP_DEVSTATE_CHUNK];

	(void)state;
	memset(nonce, 1, sizeof(nonce));
	memset(mac, 2, sizeof(mac));
	decode_ok(migp_encode_hello(42, "vm-7", buf, sizeof(buf)), MIGP_HELLO);
	assert_string_equal(m.u.hello.name, "vm-7");
	decode_ok(migp_encode_challenge(42, nonce, buf, sizeof(buf)), MIGP_CHALLENGE);
	decode_ok(migp_encode_auth(42, nonce, mac, buf, sizeof(buf)), MIGP_AUTH);
	assert_memory_equal(m.u.auth.mac, mac, 32);
	memset(ao.bind, 9, sizeof(ao.bind));
	decode_ok(migp_encode_auth_ok(42, &ao, buf, sizeof(buf)), MIGP_AUTH_OK);
	assert_int_equal(m.u.auth_ok.data_port, 23002);
	decode_ok(migp_encode_bind(42, ao.bind, buf, sizeof(buf)), MIGP_BIND);
	assert_memory_equal(m.u.bind.bind, ao.bind, 32);

	decode_ok(migp_encode_layout(42, &l, buf, sizeof(buf)), MIGP_LAYOUT);
	assert_int_equal(m.u.layout.nregions, 2);
	assert_int_equal(m.u.layout.regions[1].gpa, 1ull << 32);
	l.regions[1].first_page = 2;
	assert_int_equal(migp_encode_layout(42, &l, buf, sizeof(buf)), -MIG_E_MALFORMED);

	decode_ok(migp_encode_layout_ok(42, &lo, buf, sizeof(buf)), MIGP_LAYOUT_OK);
	assert_int_equal(m.u.layout_ok.dst_pages, 100);
	assert_int_equal(m.u.layout_ok.stage_slots, 16384);
	lo.stage_slots = MIGP_STAGE_MIN - 1;
	assert_int_equal(migp_encode_layout_ok(42, &lo, buf, sizeof(buf)), -MIG_E_MALFORMED);
	lo.stage_slots = MIGP_STAGE_MAX + 1;
	assert_int_equal(migp_encode_layout_ok(42, &lo, buf, sizeof(buf)), -MIG_E_TOO_LARGE);

	decode_ok(migp_encode_extents(42, x, 2, 100, 102, buf, sizeof(buf)), MIGP_EXTENTS);
	assert_int_equal(m.u.extents.first, 100);
	assert_int_equal(m.u.extents.total, 102);
	assert_int_equal(migp_encode_extents(42, x, 2, 101, 102, buf, sizeof(buf)), -MIG_E_MALFORMED);
	assert_int_equal(migp_encode_extents(42, x, 2, 0, MIGP_EXTENTS_MAX + 1, buf, sizeof(buf)), -MIG_E_TOO_LARGE);
	migp_extents_entry(&m.u.extents, 1, &xe);
	assert_int_equal(xe.sub, 1);
	assert_int_equal(xe.extent_id, 4);

	decode_ok(migp_encode_page_map(42, e, 3, buf, sizeof(buf)), MIGP_PAGE_MAP);
	assert_int_equal(m.u.map.count, 3);
	migp_page_map_entry(&m.u.map, 1, &got);
	assert_int_equal(got.where, MIGP_W_SUB);
	assert_int_equal(got.sub, 1);
	assert_int_equal(got.extent, 1);
	e[0].slot = 5; /* DEST names its staging slot */
	decode_ok(migp_encode_page_map(42, e, 3, buf, sizeof(buf)), MIGP_PAGE_MAP);
	migp_page_map_entry(&m.u.map, 0, &got);
	assert_int_equal(got.slot, 5);
	e[0].slot = MIGP_STAGE_MAX; /* beyond any ring */
	assert_int_equal(migp_encode_page_map(42, e, 3, buf, sizeof(buf)), -MIG_E_MALFORMED);
	e[0].slot = 5;
	e[0].extent = 1; /* DEST with an extent */
	assert_int_equal(migp_encode_page_map(42, e, 3, buf, sizeof(buf)), -MIG_E_MALFORMED);
	e[0].extent = 0;
	assert_int_equal(migp_encode_page_map(42, e, MIGP_MAP_MAX + 1, buf, sizeof(buf)), -MIG_E_TOO_LARGE);

	decode_ok(migp_encode_credit(42, 256, buf, sizeof(buf)), MIGP_CREDIT);
	assert_int_equal(m.u.credit.slots, 256);
	assert_int_equal(migp_encode_credit(42, 0, buf, sizeof(buf)), -MIG_E_MALFORMED);
	assert_int_equal(migp_encode_credit(42, MIGP_STAGE_MAX + 1, buf, sizeof(buf)), -MIG_E_TOO_LARGE);
	decode_ok(migp_encode_fetch(42, fp, 3, 10, buf, sizeof(buf)), MIGP_FETCH);
	assert_int_equal(m.u.fetch.count, 3);
	assert_int_equal(m.u.fetch.first_slot, 10);
	assert_true(migp_fetch_page(&m.u.fetch, 1) == (1ull << 40));
	assert_int_equal(migp_encode_fetch(42, fp, MIGP_FETCH_MAX + 1, 0, buf, sizeof(buf)), -MIG_E_TOO_LARGE);
	assert_int_equal(migp_encode_fetch(42, fp, 3, MIGP_STAGE_MAX - 2, buf, sizeof(buf)), -MIG_E_MALFORMED);

	decode_ok(migp_encode_round_end(42, 2, 55, buf, sizeof(buf)), MIGP_ROUND_END);
	assert_int_equal(m.u.round_end.pages_dirty, 55);
	memset(blob, 0x5a, sizeof(blob));
	decode_ok(migp_encode_devstate(42, 100000, 4096, blob, sizeof(blob), buf, sizeof(buf)), MIGP_DEVSTATE);
	assert_int_equal(m.u.devstate.len, sizeof(blob));
	assert_int_equal(m.u.devstate.data[100], 0x5a);
	assert_int_equal(migp_encode_devstate(42, 10, 5, blob, 6, buf, sizeof(buf)), -MIG_E_MALFORMED);
	assert_int_equal(migp_encode_devstate(42, 1, 0, blob, MIGP_DEVSTATE_CHUNK + 1, buf, sizeof(buf)),
			 -MIG_E_TOO_LARGE);
	decode_ok(migp_encode_switchover(42, 9, 12, buf, sizeof(buf)), MIGP_SWITCHOVER);
	assert_int_equal(m.u.switchover.pages_at_source, 12);
	decode_ok(migp_encode_resumed(42, 1234, buf, sizeof(buf)), MIGP_RESUMED);
	assert_int_equal(m.u.value.value, 1234);
	decode_ok(migp_encode_postcopy_done(42, 3, buf, sizeof(buf)), MIGP_POSTCOPY_DONE);
	decode_ok(migp_encode_stats(42, buf, sizeof(buf)), MIGP_STATS);
	{
		struct migp_subhost sh = { .sub = 2, .host = { "10.0.0.9", 23100 } };

		decode_ok(migp_encode_subhost(42, &sh, buf, sizeof(buf)), MIGP_SUBHOST);
		assert_int_equal(m.u.subhost.sub, 2);
		assert_string_equal(m.u.subhost.host.host, "10.0.0.9");
		sh.sub = 8;
		assert_int_equal(migp_encode_subhost(42, &sh, buf, sizeof(buf)), -MIG_E_MALFORMED);
	}
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(migp_type_name(MIGP_PAGE_MAP), "PAGE_MAP");
	assert_string_equal(migp_type_name(0), "UNKNOWN");
	assert_string_equal(migp_type_name(MIGP_TYPE_MAX + 1), "UNKNOWN");
	assert_string_equal(migp_errcode_str(MIG_E_PEER_LOST), "peer lost");
	assert_string_equal(migp_errcode_str(MIG_E_CODE_MAX + 1), "unknown error");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_control),
		cmocka_unit_test(test_stream),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
