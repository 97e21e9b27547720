/*
 * Control protocol codec: every message type round-trips through
 * ferry_ctrl_encode / ferry_ctrl_decode, encoders refuse what the decoder
 * would refuse (bad names, counts above limits, unknown enums), short
 * buffers are TOO_LARGE, and names and errors have stable texts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "proto/ctrl.h"

static uint8_t buf[FERRY_CTRL_MAX_MSG];
static struct ferry_ctrl_msg in, out;

static void reset(uint8_t type)
{
	memset(&in, 0, sizeof(in));
	memset(&out, 0, sizeof(out));
	in.hdr.type = type;
	in.hdr.request_id = 42;
}

/* Encode `in`, decode into `out`, check the header; returns the length. */
static int round_trip(void)
{
	int n = ferry_ctrl_encode(&in, buf, sizeof(buf));

	assert_true(n >= (int)FERRY_CTRL_HDR_LEN);
	assert_int_equal(ferry_ctrl_decode(buf, (size_t)n, &out), FERRY_CTRL_E_OK);
	assert_int_equal(out.hdr.type, in.hdr.type);
	assert_int_equal(out.hdr.request_id, 42);
	assert_int_equal(out.hdr.payload_len, (uint32_t)n - FERRY_CTRL_HDR_LEN);
	/* Every strict prefix is TRUNCATED (header) or TRUNCATED (payload). */
	for (int cut = 0; cut < n; cut++)
		assert_int_equal(ferry_ctrl_decode(buf, (size_t)cut, &out), FERRY_CTRL_E_TRUNCATED);
	assert_int_equal(ferry_ctrl_decode(buf, (size_t)n, &out), FERRY_CTRL_E_OK);
	return n;
}

static struct ferry_ctrl_vm vm_of(const char *id, const char *node, uint8_t state)
{
	struct ferry_ctrl_vm vm = { .state = state, .ip = { 10, 77, 0, 50 }, .mac = { 2, 0x77, 0, 0, 0, 0x50 } };

	snprintf(vm.id, sizeof(vm.id), "%s", id);
	snprintf(vm.node, sizeof(vm.node), "%s", node);
	return vm;
}

static void test_empty_and_small(void **state)
{
	static const uint8_t empties[] = { FERRY_CTRL_STATUS, FERRY_CTRL_NODES, FERRY_CTRL_VMS, FERRY_CTRL_STATS };
	int n;

	(void)state;
	for (size_t i = 0; i < sizeof(empties); i++) {
		reset(empties[i]);
		assert_int_equal(round_trip(), FERRY_CTRL_HDR_LEN);
		n = ferry_ctrl_encode_empty(empties[i], 42, buf, sizeof(buf));
		assert_int_equal(n, FERRY_CTRL_HDR_LEN);
	}
	assert_int_equal(ferry_ctrl_encode_empty(FERRY_CTRL_MIGRATE, 1, buf, sizeof(buf)), -FERRY_CTRL_E_MALFORMED);

	n = ferry_ctrl_encode_ok(42, 77, buf, sizeof(buf));
	assert_int_equal(ferry_ctrl_decode(buf, (size_t)n, &out), FERRY_CTRL_E_OK);
	assert_int_equal(out.hdr.type, FERRY_CTRL_OK);
	assert_int_equal(out.hdr.flags, FERRY_CTRL_F_REPLY);
	assert_int_equal(out.u.ok, 77);

	n = ferry_ctrl_encode_error(42, FERRY_CTRL_E_UNKNOWN_VM, "no VM vm-9", buf, sizeof(buf));
	assert_int_equal(ferry_ctrl_decode(buf, (size_t)n, &out), FERRY_CTRL_E_OK);
	assert_int_equal(out.u.error.code, FERRY_CTRL_E_UNKNOWN_VM);
	assert_string_equal(out.u.error.msg, "no VM vm-9");
}

static void test_handshake(void **state)
{
	uint8_t nonce[32], mac[32];
	int n;

	(void)state;
	for (int i = 0; i < 32; i++) {
		nonce[i] = (uint8_t)i;
		mac[i] = (uint8_t)(0xa0 + i);
	}
	n = ferry_ctrl_encode_hello(42, "ferryd-h1", buf, sizeof(buf));
	assert_int_equal(ferry_ctrl_decode(buf, (size_t)n, &out), FERRY_CTRL_E_OK);
	assert_string_equal(out.u.hello.name, "ferryd-h1");
	n = ferry_ctrl_encode_challenge(42, nonce, buf, sizeof(buf));
	assert_int_equal(ferry_ctrl_decode(buf, (size_t)n, &out), FERRY_CTRL_E_OK);
	assert_memory_equal(out.u.challenge.nonce, nonce, 32);
	n = ferry_ctrl_encode_auth(42, nonce, mac, buf, sizeof(buf));
	assert_int_equal(ferry_ctrl_decode(buf, (size_t)n, &out), FERRY_CTRL_E_OK);
	assert_memory_equal(out.u.auth.mac, mac, 32);
	n = ferry_ctrl_encode_auth_ok(42, mac, buf, sizeof(buf));
	assert_int_equal(ferry_ctrl_decode(buf, (size_t)n, &out), FERRY_CTRL_E_OK);
	assert_int_equal(out.hdr.type, FERRY_CTRL_AUTH_OK);
	assert_memory_equal(out.u.auth_ok_mac, mac, 32);
}

static void test_status(void **state)
{
	(void)state;
	reset(FERRY_CTRL_STATUS_OK);
	in.u.status.uptime_ms = 12345;
	in.u.status.epoch = 3;
	in.u.status.roles = FERRY_CTRL_ROLE_SUB | FERRY_CTRL_ROLE_COORD;
	in.u.status.coordinator = 1;
	strcpy(in.u.status.name, "h1");
	strcpy(in.u.status.coord, "h1");
	in.u.status.child_count = 2;
	in.u.status.child[0] = (struct ferry_ctrl_child){ .pid = 100, .restarts = 2, .state = FERRY_CTRL_CHILD_RUNNING };
	strcpy(in.u.status.child[0].name, "memsrv");
	in.u.status.child[1] = (struct ferry_ctrl_child){ .state = FERRY_CTRL_CHILD_BACKOFF };
	strcpy(in.u.status.child[1].name, "wake");
	round_trip();
	assert_int_equal(out.u.status.uptime_ms, 12345);
	assert_string_equal(out.u.status.accept, "");
	assert_int_equal(out.u.status.child_count, 2);
	assert_int_equal(out.u.status.child[0].restarts, 2);
	assert_string_equal(out.u.status.child[1].name, "wake");

	in.u.status.child_count = FERRY_CTRL_CHILDREN_MAX + 1;
	assert_int_equal(ferry_ctrl_encode(&in, buf, sizeof(buf)), -FERRY_CTRL_E_TOO_LARGE);
	in.u.status.child_count = 1;
	in.u.status.child[0].state = 0;
	assert_int_equal(ferry_ctrl_encode(&in, buf, sizeof(buf)), -FERRY_CTRL_E_MALFORMED);
}

static void test_nodes_full(void **state)
{
	struct ferry_ctrl_nodes *ns = &in.u.nodes;
	int n;

	(void)state;
	reset(FERRY_CTRL_NODES_OK);
	ns->epoch = 9;
	strcpy(ns->accept, "h2");
	strcpy(ns->coord, "h1");
	ns->count = FERRY_CTRL_NODES_MAX;
	for (unsigned int i = 0; i < ns->count; i++) {
		struct ferry_ctrl_node *nd = &ns->node[i];

		/* Longest names and addresses: the full list must still fit its limit. */
		snprintf(nd->name, sizeof(nd->name), "%064u", i);
		memset(nd->addr, 'a', FERRY_CTRL_ADDR_MAX);
		nd->state = FERRY_CTRL_NODE_UP;
		nd->roles = FERRY_CTRL_ROLE_KNOWN;
		nd->mem_total = 1ull << 40;
		nd->mem_free = 1ull << 39;
		nd->score = 500 + i;
	}
	n = round_trip();
	assert_true(n <= (int)FERRY_CTRL_MAX_MSG);
	assert_int_equal(out.u.nodes.count, FERRY_CTRL_NODES_MAX);
	assert_int_equal(out.u.nodes.node[63].score, 563);
	assert_string_equal(out.u.nodes.accept, "h2");

	/* Duplicates, counts and bad fields are refused on the way out too. */
	strcpy(ns->node[1].name, ns->node[0].name);
	assert_int_equal(ferry_ctrl_encode(&in, buf, sizeof(buf)), -FERRY_CTRL_E_EXISTS);
	strcpy(ns->node[1].name, "other");
	ns->count = FERRY_CTRL_NODES_MAX + 1;
	assert_int_equal(ferry_ctrl_encode(&in, buf, sizeof(buf)), -FERRY_CTRL_E_TOO_LARGE);
	ns->count = 1;
	ns->node[0].mem_free = ns->node[0].mem_total + 1;
	assert_int_equal(ferry_ctrl_encode(&in, buf, sizeof(buf)), -FERRY_CTRL_E_MALFORMED);
	ns->node[0].mem_free = 0;
	strcpy(ns->node[0].addr, "has space");
	assert_int_equal(ferry_ctrl_encode(&in, buf, sizeof(buf)), -FERRY_CTRL_E_BAD_ADDR);
	/* A buffer one byte short of the message. */
	ns->node[0].addr[0] = '\0';
	n = ferry_ctrl_encode(&in, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(ferry_ctrl_encode(&in, buf, (size_t)n - 1), -FERRY_CTRL_E_TOO_LARGE);
}

static void test_vms_full(void **state)
{
	struct ferry_ctrl_vms *vs = &in.u.vms;
	int n;

	(void)state;
	reset(FERRY_CTRL_VMS_OK);
	vs->count = FERRY_CTRL_VMS_MAX;
	for (unsigned int i = 0; i < vs->count; i++) {
		char id[80];

		snprintf(id, sizeof(id), "%064u", i);
		vs->vm[i] = vm_of(id, "", FERRY_CTRL_VM_HIBERNATED);
		memset(vs->vm[i].node, 'n', FERRY_CTRL_NAME_MAX);
	}
	n = round_trip();
	assert_true(n <= (int)FERRY_CTRL_MAX_MSG);
	assert_int_equal(out.u.vms.vm[255].state, FERRY_CTRL_VM_HIBERNATED);
	assert_memory_equal(out.u.vms.vm[7].mac, vs->vm[7].mac, 6);

	vs->count = 2;
	strcpy(vs->vm[1].id, vs->vm[0].id);
	assert_int_equal(ferry_ctrl_encode(&in, buf, sizeof(buf)), -FERRY_CTRL_E_EXISTS);
	strcpy(vs->vm[1].id, "vm/1");
	assert_int_equal(ferry_ctrl_encode(&in, buf, sizeof(buf)), -FERRY_CTRL_E_BAD_NAME);
	strcpy(vs->vm[1].id, "vm-1");
	vs->vm[1].state = FERRY_CTRL_VM_STATE_MAX + 1;
	assert_int_equal(ferry_ctrl_encode(&in, buf, sizeof(buf)), -FERRY_CTRL_E_MALFORMED);
}

static void test_migrate_and_prepare(void **state)
{
	struct ferry_ctrl_migrate *m = &in.u.migrate;

	(void)state;
	reset(FERRY_CTRL_MIGRATE);
	m->budget = 64ull << 20;
	m->mode = FERRY_CTRL_MODE_PLANNED;
	strcpy(m->vm, "vm-1");
	strcpy(m->main, "h1");
	m->sub_count = 2;
	strcpy(m->sub[0], "h2");
	strcpy(m->sub[1], "h3");
	round_trip();
	assert_int_equal(out.u.migrate.mode, FERRY_CTRL_MODE_PLANNED);
	assert_string_equal(out.u.migrate.sub[1], "h3");
	assert_string_equal(out.u.migrate.source, "");

	/* PREPARE_INCOMING carries the source too. */
	in.hdr.type = FERRY_CTRL_PREPARE_INCOMING;
	strcpy(m->source, "h3");
	round_trip();
	assert_string_equal(out.u.migrate.source, "h3");
	m->source[0] = '\0';
	assert_int_equal(ferry_ctrl_encode(&in, buf, sizeof(buf)), -FERRY_CTRL_E_BAD_NAME);

	in.hdr.type = FERRY_CTRL_MIGRATE;
	m->sub_count = 0;
	assert_int_equal(ferry_ctrl_encode(&in, buf, sizeof(buf)), -FERRY_CTRL_E_MALFORMED);
	m->sub_count = FERRY_CTRL_SUBHOSTS_MAX + 1;
	assert_int_equal(ferry_ctrl_encode(&in, buf, sizeof(buf)), -FERRY_CTRL_E_TOO_LARGE);
	m->sub_count = 1;
	m->mode = 0;
	assert_int_equal(ferry_ctrl_encode(&in, buf, sizeof(buf)), -FERRY_CTRL_E_MALFORMED);
	assert_int_equal(ferry_ctrl_mode_parse("postcopy"), FERRY_CTRL_MODE_POSTCOPY);
	assert_int_equal(ferry_ctrl_mode_parse("fast"), 0);
}

static void test_progress_endpoint_role(void **state)
{
	(void)state;
	reset(FERRY_CTRL_PROGRESS);
	in.u.progress = (struct ferry_ctrl_progress){ .phase = FERRY_CTRL_PHASE_DONE,
						      .flags = FERRY_CTRL_PROGRESS_FINAL,
						      .round = 3,
						      .pages_sent = 1000,
						      .pages_skipped = 24,
						      .pages_total = 1024,
						      .elapsed_ms = 99 };
	strcpy(in.u.progress.vm, "vm-1");
	round_trip();
	assert_int_equal(out.u.progress.pages_skipped, 24);
	assert_int_equal(out.u.progress.flags, FERRY_CTRL_PROGRESS_FINAL);
	assert_string_equal(ferry_ctrl_phase_name(out.u.progress.phase), "done");

	reset(FERRY_CTRL_ENDPOINT);
	in.u.endpoint.port = 22100;
	memset(in.u.endpoint.token, 0xab, sizeof(in.u.endpoint.token));
	strcpy(in.u.endpoint.vm, "vm-1");
	strcpy(in.u.endpoint.host, "10.77.0.1");
	round_trip();
	assert_string_equal(out.u.endpoint.host, "10.77.0.1");
	assert_int_equal(out.u.endpoint.port, 22100);
	assert_memory_equal(out.u.endpoint.token, in.u.endpoint.token, 32);
	in.u.endpoint.port = 0;
	assert_int_equal(ferry_ctrl_encode(&in, buf, sizeof(buf)), -FERRY_CTRL_E_BAD_ADDR);

	reset(FERRY_CTRL_ROLE);
	in.u.role = (struct ferry_ctrl_role){ .epoch = 5, .take = 1 };
	strcpy(in.u.role.node, "h2");
	round_trip();
	assert_int_equal(out.u.role.epoch, 5);
	in.u.role.take = 2;
	assert_int_equal(ferry_ctrl_encode(&in, buf, sizeof(buf)), -FERRY_CTRL_E_MALFORMED);
}

static void test_register_report_vm_req(void **state)
{
	(void)state;
	reset(FERRY_CTRL_NODE_REGISTER);
	in.u.reg = (struct ferry_ctrl_register){ .roles = FERRY_CTRL_ROLE_MAIN, .cpus = 2, .mem_total = 1ull << 32 };
	strcpy(in.u.reg.name, "h2");
	strcpy(in.u.reg.addr, "10.77.0.2:22001");
	round_trip();
	assert_int_equal(out.u.reg.mem_total, 1ull << 32);
	in.u.reg.addr[0] = '\0';
	assert_int_equal(ferry_ctrl_encode(&in, buf, sizeof(buf)), -FERRY_CTRL_E_BAD_ADDR);

	reset(FERRY_CTRL_NODE_REPORT);
	in.u.report = (struct ferry_ctrl_report){ .load1 = 1500, .cpus = 2, .mem_total = 100, .mem_free = 40,
						  .vm_count = 1, .vms_running = 1 };
	strcpy(in.u.report.name, "h2");
	in.u.report.vm[0] = vm_of("vm-1", "h2", FERRY_CTRL_VM_RUNNING);
	round_trip();
	assert_int_equal(out.u.report.load1, 1500);
	assert_string_equal(out.u.report.vm[0].node, "h2");
	in.u.report.vm_count = FERRY_CTRL_REPORT_VMS_MAX + 1;
	assert_int_equal(ferry_ctrl_encode(&in, buf, sizeof(buf)), -FERRY_CTRL_E_TOO_LARGE);

	reset(FERRY_CTRL_RESUME);
	strcpy(in.u.vm_req.vm, "vm-1");
	round_trip();
	assert_string_equal(out.u.vm_req.node, "");
	strcpy(in.u.vm_req.node, "h3");
	round_trip();
	assert_string_equal(out.u.vm_req.node, "h3");

	reset(FERRY_CTRL_VM_PLACED);
	in.u.placed = vm_of("vm-1", "h3", FERRY_CTRL_VM_RUNNING);
	round_trip();
	assert_string_equal(out.u.placed.node, "h3");
}

static void test_stats(void **state)
{
	(void)state;
	reset(FERRY_CTRL_STATS_OK);
	in.u.stats_ok.count = 2;
	strcpy(in.u.stats_ok.stats[0].name, "reports");
	in.u.stats_ok.stats[0].value = 5;
	strcpy(in.u.stats_ok.stats[1].name, "auth_failed");
	in.u.stats_ok.stats[1].value = 1;
	round_trip();
	assert_string_equal(out.u.stats_ok.stats[1].name, "auth_failed");
	assert_int_equal(out.u.stats_ok.stats[1].value, 1);
}

static void test_names(void **state)
{
	(void)state;
	assert_int_equal(ferry_ctrl_check_name("node-1.rack_2"), FERRY_CTRL_E_OK);
	assert_int_equal(ferry_ctrl_check_name(""), FERRY_CTRL_E_BAD_NAME);
	assert_int_equal(ferry_ctrl_check_name("a b"), FERRY_CTRL_E_BAD_NAME);
	assert_int_equal(ferry_ctrl_check_name(NULL), FERRY_CTRL_E_BAD_NAME);
	assert_int_equal(ferry_ctrl_check_addr("[::1]:22000"), FERRY_CTRL_E_OK);
	assert_string_equal(ferry_ctrl_type_name(FERRY_CTRL_PREPARE_INCOMING), "PREPARE_INCOMING");
	assert_string_equal(ferry_ctrl_type_name(0), "UNKNOWN");
	assert_string_equal(ferry_ctrl_errcode_str(FERRY_CTRL_E_NOT_AVAILABLE), "not available");
	assert_string_equal(ferry_ctrl_errcode_str(999), "unknown error");
	assert_string_equal(ferry_ctrl_vm_state_name(FERRY_CTRL_VM_HIBERNATED), "hibernated");
	reset(0);
	assert_int_equal(ferry_ctrl_encode(&in, buf, sizeof(buf)), -FERRY_CTRL_E_UNKNOWN_TYPE);
	assert_int_equal(ferry_ctrl_encode(NULL, buf, sizeof(buf)), -FERRY_CTRL_E_MALFORMED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_and_small),
		cmocka_unit_test(test_handshake),
		cmocka_unit_test(test_status),
		cmocka_unit_test(test_nodes_full),
		cmocka_unit_test(test_vms_full),
		cmocka_unit_test(test_migrate_and_prepare),
		cmocka_unit_test(test_progress_endpoint_role),
		cmocka_unit_test(test_register_report_vm_req),
		cmocka_unit_test(test_stats),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
