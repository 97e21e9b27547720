/*
 * ferry-wake's DPDK-free core: frame classification, ARP replies, gratuitous
 * ARPs, checksum completion (the veth offload case), the VM table and the SYN
 * store with retransmit de-duplication, wake bookkeeping.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dataplane/wake/wake_pkt.h"
#include "dataplane/wake/wake_table.h"

static const uint8_t CLIENT_MAC[6] = { 0x02, 0xaa, 0, 0, 0, 0x10 };
static const uint8_t VM_MAC[6] = { 0x02, 0xfe, 0, 0, 0, 0x20 };
static const uint8_t CLIENT_IP[4] = { 10, 99, 0, 10 };
static const uint8_t VM_IP[4] = { 10, 99, 0, 20 };

/* A SYN as Linux sends it (MSS, SACK, timestamps, wscale: 40 bytes of options). */
static size_t make_syn(uint8_t *f, uint16_t sport, uint32_t isn, bool ack, bool vlan, bool good_csum)
{
	static const uint8_t opts[20] = { 2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7 };
	size_t l2 = vlan ? 18 : 14, len = l2 + 20 + 40;
	uint8_t *ip = f + l2, *tcp = ip + 20;
	struct wake_pkt p;

	memset(f, 0, len);
	memcpy(f, VM_MAC, 6);
	memcpy(f + 6, CLIENT_MAC, 6);
	if (vlan) {
		f[12] = 0x81;
		f[13] = 0x00;
		f[15] = 5;
		f[16] = 0x08;
	} else {
		f[12] = 0x08;
	}
	ip[0] = 0x45;
	ip[3] = 60;
	ip[6] = 0x40;  /* DF */
	ip[8] = 64;
	ip[9] = 6;
	memcpy(ip + 12, CLIENT_IP, 4);
	memcpy(ip + 16, VM_IP, 4);
	tcp[0] = (uint8_t)(sport >> 8);
	tcp[1] = (uint8_t)sport;
	tcp[3] = 7;
	tcp[4] = (uint8_t)(isn >> 24);
	tcp[5] = (uint8_t)(isn >> 16);
	tcp[6] = (uint8_t)(isn >> 8);
	tcp[7] = (uint8_t)isn;
	tcp[12] = 0xa0;
	tcp[13] = ack ? 0x12 : 0x02;
	tcp[14] = 0xfa;
	tcp[15] = 0xf0;
	memcpy(tcp + 20, opts, sizeof(opts));
	if (good_csum) {
		assert_int_equal(wake_pkt_classify(f, len, &p), ack ? WAKE_PKT_OTHER : WAKE_PKT_TCP_SYN);
		if (!ack)
			wake_pkt_fix_checksums(f, &p);
	} else {
		/* What a veth with TX checksum offload hands over: only the pseudo-header sum. */
		uint32_t s = wake_csum_add(0, ip + 12, 8) + 6u + 40u;
		uint16_t partial = wake_csum_fold(s);

		tcp[16] = (uint8_t)(partial >> 8);
		tcp[17] = (uint8_t)partial;
		s = wake_csum_add(0, ip, 20);
		partial = (uint16_t)~wake_csum_fold(s);
		ip[10] = (uint8_t)(partial >> 8);
		ip[11] = (uint8_t)partial;
	}
	return len;
}

static void test_classify_arp(void **state)
{
	uint8_t f[64];
	struct wake_pkt p;
	size_t len = wake_pkt_build_arp_request(f, sizeof(f), CLIENT_MAC, CLIENT_IP, VM_IP);

	(void)state;
	assert_int_equal(len, 60);
	assert_int_equal(wake_pkt_classify(f, len, &p), WAKE_PKT_ARP_REQUEST);
	assert_memory_equal(p.arp_tpa, VM_IP, 4);
	assert_memory_equal(p.arp_spa, CLIENT_IP, 4);
	assert_false(wake_pkt_arp_is_announce(&p));
	/* Every truncation is refused, never read past. */
	for (size_t cut = 0; cut < 42; cut++)
		assert_int_equal(wake_pkt_classify(f, cut, &p), WAKE_PKT_OTHER);

	wake_pkt_arp_reply_inplace(f, &p, VM_MAC);
	assert_memory_equal(f, CLIENT_MAC, 6);          /* to the requester */
	assert_memory_equal(f + 6, VM_MAC, 6);
	assert_int_equal(f[14 + 7], 2);                  /* reply */
	assert_memory_equal(f + 14 + 8, VM_MAC, 6);      /* sha */
	assert_memory_equal(f + 14 + 14, VM_IP, 4);      /* spa */
	assert_memory_equal(f + 14 + 18, CLIENT_MAC, 6); /* tha */
	assert_memory_equal(f + 14 + 24, CLIENT_IP, 4);  /* tpa */
	/* A reply is not a request. */
	assert_int_equal(wake_pkt_classify(f, len, &p), WAKE_PKT_OTHER);
}

static void test_garp(void **state)
{
	uint8_t f[64];
	struct wake_pkt p;
	size_t len;

	(void)state;
	assert_int_equal(wake_pkt_build_garp(f, 59, VM_MAC, VM_IP), 0);
	len = wake_pkt_build_garp(f, sizeof(f), VM_MAC, VM_IP);
	assert_int_equal(len, 60);
	assert_memory_equal(f + 6, VM_MAC, 6);           /* the switch learns this */
	assert_int_equal(f[0], 0xff);
	assert_int_equal(wake_pkt_classify(f, len, &p), WAKE_PKT_ARP_REQUEST);
	assert_true(wake_pkt_arp_is_announce(&p));       /* never answered by ferry-wake itself */
}

static void test_classify_syn(void **state)
{
	uint8_t f[128];
	struct wake_pkt p;
	size_t len;

	(void)state;
	len = make_syn(f, 40000, 0x11223344, false, false, true);
	assert_int_equal(wake_pkt_classify(f, len, &p), WAKE_PKT_TCP_SYN);
	assert_int_equal(p.sport, 40000);
	assert_int_equal(p.dport, 7);
	assert_int_equal(p.isn, 0x11223344);
	assert_memory_equal(p.dst_ip, VM_IP, 4);
	assert_true(wake_pkt_checksums_ok(f, &p));
	for (size_t cut = 0; cut < len; cut++)
		assert_int_equal(wake_pkt_classify(f, cut, &p), WAKE_PKT_OTHER);

	len = make_syn(f, 40000, 1, true, false, true);   /* SYN-ACK */
	assert_int_equal(wake_pkt_classify(f, len, &p), WAKE_PKT_OTHER);

	len = make_syn(f, 40001, 2, false, true, true);   /* 802.1Q tagged */
	assert_int_equal(wake_pkt_classify(f, len, &p), WAKE_PKT_TCP_SYN);
	assert_int_equal(p.l2_len, 18);
	assert_true(wake_pkt_checksums_ok(f, &p));

	len = make_syn(f, 40000, 3, false, false, true);
	f[14 + 6] = 0x20;                                 /* MF: a fragment */
	assert_int_equal(wake_pkt_classify(f, len, &p), WAKE_PKT_OTHER);
}

static void test_checksum_completion(void **state)
{
	uint8_t good[128], partial[128];
	struct wake_pkt p;
	size_t len;

	(void)state;
	len = make_syn(good, 40000, 0xdeadbeef, false, false, true);
	make_syn(partial, 40000, 0xdeadbeef, false, false, false);
	assert_int_equal(wake_pkt_classify(partial, len, &p), WAKE_PKT_TCP_SYN);
	assert_false(wake_pkt_checksums_ok(partial, &p));
	assert_int_equal(wake_pkt_fix_checksums(partial, &p), WAKE_FIX_TCP);
	assert_true(wake_pkt_checksums_ok(partial, &p));
	/* Completed, the frame is byte for byte what a NIC computing the checksum sends. */
	assert_memory_equal(partial, good, len);
	/* A correct frame is left alone. */
	assert_int_equal(wake_pkt_fix_checksums(good, &p), 0);
	/* A broken IP header checksum is completed too. */
	good[14 + 10] ^= 0x55;
	assert_int_equal(wake_pkt_fix_checksums(good, &p), WAKE_FIX_IP);
	assert_memory_equal(partial, good, len);
}

static void test_table(void **state)
{
	struct wake_table t;
	struct wake_vm *vm;
	uint8_t ip[4] = { 10, 100, 0, 0 }, mac[6] = { 0x02, 0, 0, 0, 0, 0 };
	char id[32];

	(void)state;
	assert_int_equal(wake_table_init(&t, 100), 0);
	assert_int_equal(wake_table_add(&t, "vm-20", VM_IP, VM_MAC, &vm), FERRY_WAKE_E_OK);
	assert_ptr_equal(wake_table_find_ip(&t, VM_IP), vm);
	assert_ptr_equal(wake_table_find_id(&t, "vm-20"), vm);
	/* Same triple again: fine. Same IP or id with anything else: EXISTS. */
	assert_int_equal(wake_table_add(&t, "vm-20", VM_IP, VM_MAC, NULL), FERRY_WAKE_E_OK);
	assert_int_equal(wake_table_add(&t, "vm-21", VM_IP, VM_MAC, NULL), FERRY_WAKE_E_EXISTS);
	assert_int_equal(wake_table_add(&t, "vm-20", CLIENT_IP, VM_MAC, NULL), FERRY_WAKE_E_EXISTS);
	assert_int_equal(wake_table_add(&t, "bad id", CLIENT_IP, VM_MAC, NULL), FERRY_WAKE_E_OK);
	assert_non_null(wake_table_find_id(&t, "bad id"));   /* the table trusts the codec for id syntax */
	wake_table_del(&t, wake_table_find_id(&t, "bad id"));
	assert_int_equal(wake_table_add(&t, "x", (uint8_t[4]){ 0, 0, 0, 0 }, VM_MAC, NULL), FERRY_WAKE_E_BAD_ADDR);
	/* Fill to the limit, churn through tombstones, every lookup stays right. */
	for (int round = 0; round < 5; round++) {
		for (int i = 1; i < 100; i++) {
			ip[2] = (uint8_t)round;
			ip[3] = (uint8_t)i;
			mac[5] = (uint8_t)i;
			snprintf(id, sizeof(id), "r%d-%d", round, i);
			assert_int_equal(wake_table_add(&t, id, ip, mac, NULL), FERRY_WAKE_E_OK);
		}
		assert_int_equal(t.count, 100);
		ip[3] = 200;
		assert_int_equal(wake_table_add(&t, "one-too-many", ip, mac, NULL), FERRY_WAKE_E_TABLE_FULL);
		for (int i = 1; i < 100; i++) {
			ip[3] = (uint8_t)i;
			vm = wake_table_find_ip(&t, ip);
			assert_non_null(vm);
			wake_table_del(&t, vm);
			assert_null(wake_table_find_ip(&t, ip));
		}
		assert_non_null(wake_table_find_ip(&t, VM_IP));
	}
	wake_table_free(&t);
}

static void test_syn_store(void **state)
{
	struct wake_table t;
	struct wake_vm *vm;
	uint8_t f[128];
	struct wake_pkt p;
	size_t len;

	(void)state;
	assert_int_equal(wake_table_init(&t, 4), 0);
	assert_int_equal(wake_table_add(&t, "vm-20", VM_IP, VM_MAC, &vm), FERRY_WAKE_E_OK);
	len = make_syn(f, 40000, 1000, false, false, true);
	assert_int_equal(wake_pkt_classify(f, len, &p), WAKE_PKT_TCP_SYN);
	assert_int_equal(wake_vm_store_syn(vm, f, len, &p), WAKE_STORE_NEW);
	assert_true(wake_vm_note_access(vm, &p, 5));
	assert_int_equal(vm->trigger.reason, FERRY_WAKE_REASON_SYN);
	assert_int_equal(vm->trigger.src_port, 40000);
	assert_int_equal(vm->wake_next_ns, 5);
	/* Retransmits (same 5-tuple and ISN): counted, stored once, no second wake. */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(wake_vm_store_syn(vm, f, len, &p), WAKE_STORE_DUP);
		assert_false(wake_vm_note_access(vm, &p, 6));
	}
	assert_int_equal(vm->nsyn, 1);
	assert_int_equal(vm->syn_dups, 3);
	assert_memory_equal(vm->syn[0].frame, f, len);
	/* A new connection from the same port with a new ISN is a new SYN. */
	len = make_syn(f, 40000, 2000, false, false, true);
	wake_pkt_classify(f, len, &p);
	assert_int_equal(wake_vm_store_syn(vm, f, len, &p), WAKE_STORE_NEW);
	for (uint16_t port = 1; port < 40; port++) {
		enum wake_store_result want = vm->nsyn < WAKE_SYNS_PER_VM ? WAKE_STORE_NEW : WAKE_STORE_FULL;

		len = make_syn(f, port, port, false, false, true);
		wake_pkt_classify(f, len, &p);
		assert_int_equal(wake_vm_store_syn(vm, f, len, &p), want);
	}
	assert_int_equal(vm->nsyn, WAKE_SYNS_PER_VM);
	assert_int_equal(wake_vm_store_syn(vm, f, WAKE_SYN_FRAME_MAX + 1, &p), WAKE_STORE_TOO_BIG);
	wake_table_free(&t);
}

static void test_backoff(void **state)
{
	(void)state;
	assert_int_equal(wake_backoff_ns(1), 250000000ull);
	assert_int_equal(wake_backoff_ns(2), 500000000ull);
	assert_int_equal(wake_backoff_ns(5), 4000000000ull);
	assert_int_equal(wake_backoff_ns(60000), 4000000000ull);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classify_arp),
		cmocka_unit_test(test_garp),
		cmocka_unit_test(test_classify_syn),
		cmocka_unit_test(test_checksum_completion),
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_syn_store),
		cmocka_unit_test(test_backoff),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
