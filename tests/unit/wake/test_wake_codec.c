/*
 * Wake protocol codec: every message round-trips, encoders refuse bad
 * arguments and short buffers, the header rules hold.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "proto/wake.h"

static uint8_t buf[FERRY_WAKE_MAX_MSG];
static struct ferry_wake_msg m;

static struct ferry_wake_vm vm_of(const char *id, uint8_t last)
{
	struct ferry_wake_vm vm = { .ip = { 10, 99, 0, last }, .mac = { 0x02, 0xfe, 0, 0, 0, last } };

	snprintf(vm.id, sizeof(vm.id), "%s", id);
	return vm;
}

static void decode_ok(int n, uint8_t type)
{
	assert_true(n > 0);
	assert_int_equal(ferry_wake_decode(buf, (size_t)n, &m), FERRY_WAKE_E_OK);
	assert_int_equal(m.hdr.type, type);
	assert_int_equal(m.hdr.request_id, 42);
	assert_int_equal(m.hdr.payload_len, (uint32_t)n - FERRY_WAKE_HDR_LEN);
}

static void test_auth_round_trip(void **state)
{
	uint8_t nonce[32], mac[32];
	int n;

	(void)state;
	for (int i = 0; i < 32; i++) {
		nonce[i] = (uint8_t)i;
		mac[i] = (uint8_t)(0xa0 + i);
	}
	n = ferry_wake_encode_hello(42, "ferryd@node-1", 1, 1, buf, sizeof(buf));
	decode_ok(n, FERRY_WAKE_HELLO);
	assert_string_equal(m.u.hello.name, "ferryd@node-1");
	assert_int_equal(m.hdr.flags, 0);

	n = ferry_wake_encode_challenge(42, 1, nonce, buf, sizeof(buf));
	decode_ok(n, FERRY_WAKE_CHALLENGE);
	assert_int_equal(m.hdr.flags, FERRY_WAKE_F_REPLY);
	assert_memory_equal(m.u.challenge.nonce, nonce, 32);

	n = ferry_wake_encode_auth(42, nonce, mac, buf, sizeof(buf));
	decode_ok(n, FERRY_WAKE_AUTH);
	assert_memory_equal(m.u.auth.mac, mac, 32);

	n = ferry_wake_encode_auth_ok(42, mac, buf, sizeof(buf));
	decode_ok(n, FERRY_WAKE_AUTH_OK);
	assert_memory_equal(m.u.auth_ok.mac, mac, 32);
}

static void test_vm_round_trip(void **state)
{
	struct ferry_wake_vm vm = vm_of("vm-20", 20), vms[3], out;
	int n;

	(void)state;
	n = ferry_wake_encode_vm_add(42, &vm, buf, sizeof(buf));
	decode_ok(n, FERRY_WAKE_VM_ADD);
	assert_string_equal(m.u.vm.id, "vm-20");
	assert_int_equal(m.u.vm.id_len, 5);
	assert_memory_equal(m.u.vm.ip, vm.ip, 4);
	assert_memory_equal(m.u.vm.mac, vm.mac, 6);

	n = ferry_wake_encode_vm_del(42, "vm-20", buf, sizeof(buf));
	decode_ok(n, FERRY_WAKE_VM_DEL);
	assert_string_equal(m.u.ref.id, "vm-20");
	n = ferry_wake_encode_vm_running(42, "vm-20", buf, sizeof(buf));
	decode_ok(n, FERRY_WAKE_VM_RUNNING);
	assert_string_equal(m.u.ref.id, "vm-20");

	vms[0] = vm_of("a", 1);
	vms[1] = vm_of("bb", 2);
	vms[2] = vm_of("ccc", 3);
	n = ferry_wake_encode_vm_table(42, FERRY_WAKE_TABLE_REPLACE, vms, 3, buf, sizeof(buf));
	decode_ok(n, FERRY_WAKE_VM_TABLE);
	assert_int_equal(m.u.table.count, 3);
	assert_int_equal(m.u.table.flags, FERRY_WAKE_TABLE_REPLACE);
	for (uint16_t i = 0; i < 3; i++) {
		ferry_wake_table_entry(&m.u.table, i, &out);
		assert_string_equal(out.id, vms[i].id);
		assert_memory_equal(out.ip, vms[i].ip, 4);
		assert_memory_equal(out.mac, vms[i].mac, 6);
	}
	/* Duplicates are refused on both sides. */
	vms[2] = vm_of("a", 3);
	assert_int_equal(ferry_wake_encode_vm_table(42, 0, vms, 3, buf, sizeof(buf)), -FERRY_WAKE_E_EXISTS);
}

static void test_full_table(void **state)
{
	static struct ferry_wake_vm vms[FERRY_WAKE_TABLE_MAX];
	struct ferry_wake_vm out;
	int n;

	(void)state;
	for (unsigned int i = 0; i < FERRY_WAKE_TABLE_MAX; i++) {
		vms[i] = vm_of("", 1);
		vms[i].ip[2] = (uint8_t)(i >> 8);
		vms[i].ip[3] = (uint8_t)(i + 1);
		/* 64-byte ids: the largest table there is. */
		snprintf(vms[i].id, sizeof(vms[i].id), "vm-%061u", i);
	}
	n = ferry_wake_encode_vm_table(42, 0, vms, FERRY_WAKE_TABLE_MAX, buf, sizeof(buf));
	assert_int_equal(n, (int)FERRY_WAKE_MAX_MSG);
	decode_ok(n, FERRY_WAKE_VM_TABLE);
	ferry_wake_table_entry(&m.u.table, FERRY_WAKE_TABLE_MAX - 1, &out);
	assert_string_equal(out.id, vms[FERRY_WAKE_TABLE_MAX - 1].id);
	assert_int_equal(ferry_wake_encode_vm_table(42, 0, vms, FERRY_WAKE_TABLE_MAX + 1, buf, sizeof(buf)),
			 -FERRY_WAKE_E_TOO_LARGE);
	assert_int_equal(ferry_wake_encode_vm_table(42, 0, vms, 10, buf, 100), -FERRY_WAKE_E_TOO_LARGE);
}

static void test_other_round_trips(void **state)
{
	struct ferry_wake_request wr = {
		.reason = FERRY_WAKE_REASON_SYN, .attempt = 3,
		.src_ip = { 10, 99, 0, 10 }, .dst_ip = { 10, 99, 0, 20 },
		.src_port = 40000, .dst_port = 7, .isn = 0xdeadbeef, .l4_proto = 6,
	};
	struct ferry_wake_stat st[2] = { { "arp_reply", 5 }, { "syn_captured", 7 } };
	int n;

	(void)state;
	strcpy(wr.id, "vm-20");
	n = ferry_wake_encode_wake_request(42, &wr, buf, sizeof(buf));
	decode_ok(n, FERRY_WAKE_WAKE_REQUEST);
	assert_int_equal(m.u.wake.isn, 0xdeadbeef);
	assert_int_equal(m.u.wake.src_port, 40000);
	assert_int_equal(m.u.wake.dst_port, 7);
	assert_int_equal(m.u.wake.attempt, 3);
	assert_string_equal(m.u.wake.id, "vm-20");
	wr.l4_proto = 17;
	assert_int_equal(ferry_wake_encode_wake_request(42, &wr, buf, sizeof(buf)), -FERRY_WAKE_E_MALFORMED);

	n = ferry_wake_encode_role_take(42, 9, buf, sizeof(buf));
	decode_ok(n, FERRY_WAKE_ROLE_TAKE);
	assert_int_equal(m.u.role.epoch, 9);
	n = ferry_wake_encode_role_drop(42, 10, buf, sizeof(buf));
	decode_ok(n, FERRY_WAKE_ROLE_DROP);

	n = ferry_wake_encode_stats(42, buf, sizeof(buf));
	decode_ok(n, FERRY_WAKE_STATS);
	n = ferry_wake_encode_stats_ok(42, st, 2, buf, sizeof(buf));
	decode_ok(n, FERRY_WAKE_STATS_OK);
	assert_int_equal(m.u.stats_ok.count, 2);
	assert_string_equal(m.u.stats_ok.stats[1].name, "syn_captured");
	assert_int_equal(m.u.stats_ok.stats[1].value, 7);

	n = ferry_wake_encode_ok(42, 77, buf, sizeof(buf));
	decode_ok(n, FERRY_WAKE_OK);
	assert_int_equal(m.u.ok.value, 77);
	n = ferry_wake_encode_error(42, FERRY_WAKE_E_UNKNOWN_VM, "unknown VM vm-9", buf, sizeof(buf));
	decode_ok(n, FERRY_WAKE_ERROR);
	assert_int_equal(m.u.error.code, FERRY_WAKE_E_UNKNOWN_VM);
	assert_string_equal(m.u.error.msg, "unknown VM vm-9");
}

static void test_encoder_refusals(void **state)
{
	struct ferry_wake_vm vm = vm_of("vm-1", 1);
	char longid[80];

	(void)state;
	memset(longid, 'x', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = '\0';
	assert_int_equal(ferry_wake_encode_vm_del(1, "", buf, sizeof(buf)), -FERRY_WAKE_E_BAD_VM_ID);
	assert_int_equal(ferry_wake_encode_vm_del(1, "a b", buf, sizeof(buf)), -FERRY_WAKE_E_BAD_VM_ID);
	assert_int_equal(ferry_wake_encode_vm_del(1, longid, buf, sizeof(buf)), -FERRY_WAKE_E_TOO_LARGE);
	assert_int_equal(ferry_wake_encode_vm_del(1, NULL, buf, sizeof(buf)), -FERRY_WAKE_E_BAD_VM_ID);
	vm.mac[0] = 0x01;
	assert_int_equal(ferry_wake_encode_vm_add(1, &vm, buf, sizeof(buf)), -FERRY_WAKE_E_BAD_ADDR);
	vm = vm_of("vm-1", 1);
	vm.ip[0] = 0;
	assert_int_equal(ferry_wake_encode_vm_add(1, &vm, buf, sizeof(buf)), -FERRY_WAKE_E_BAD_ADDR);
	vm = vm_of("vm-1", 1);
	/* Every capacity short of the message is refused without writing past it. */
	for (size_t cap = 0; cap < FERRY_WAKE_HDR_LEN + 16; cap++)
		assert_int_equal(ferry_wake_encode_vm_add(1, &vm, buf, cap), -FERRY_WAKE_E_TOO_LARGE);
	assert_int_equal(ferry_wake_encode_vm_add(1, &vm, buf, FERRY_WAKE_HDR_LEN + 16), FERRY_WAKE_HDR_LEN + 16);
	assert_int_equal(ferry_wake_encode_hello(1, "", 1, 1, buf, sizeof(buf)), -FERRY_WAKE_E_MALFORMED);
	assert_int_equal(ferry_wake_encode_hello(1, "x", 2, 1, buf, sizeof(buf)), -FERRY_WAKE_E_MALFORMED);
	assert_int_equal(ferry_wake_encode_hdr(0, 1, 0, buf, sizeof(buf)), -FERRY_WAKE_E_MALFORMED);
	assert_int_equal(ferry_wake_encode_hdr(FERRY_WAKE_VM_ADD, 1, FERRY_WAKE_CTRL_PAYLOAD + 1, buf, sizeof(buf)),
			 -FERRY_WAKE_E_TOO_LARGE);
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(ferry_wake_type_name(FERRY_WAKE_VM_RUNNING), "VM_RUNNING");
	assert_string_equal(ferry_wake_type_name(0), "UNKNOWN");
	assert_string_equal(ferry_wake_type_name(200), "UNKNOWN");
	for (uint32_t c = 0; c <= FERRY_WAKE_E_CODE_MAX; c++)
		assert_non_null(ferry_wake_errcode_str(c));
	assert_string_equal(ferry_wake_errcode_str(1000), "unknown error");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_auth_round_trip),
		cmocka_unit_test(test_vm_round_trip),
		cmocka_unit_test(test_full_table),
		cmocka_unit_test(test_other_round_trips),
		cmocka_unit_test(test_encoder_refusals),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
