/*
 * hw_place and the printers on made-up machines: two sockets with SMT, a
 * memory-only node, PCI and virtual NICs, RDMA devices bound to netdevs.
 * The test host has one node and a virtio NIC, so this is where NUMA-aware
 * placement is actually exercised.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hwconfig/hwconfig.h"

static void add_node(struct hw_topology *t, int id)
{
	struct hw_numa_node *n = &t->nodes[t->nnodes++];

	n->os_index = id;
	n->memory_bytes = (uint64_t)16 << 30;
}

static void add_core(struct hw_topology *t, int id, int node, int pu0, int pu1)
{
	struct hw_core *c = &t->cores[t->ncores++];

	c->os_index = id;
	c->numa_node = node;
	c->pus[c->npus++] = pu0;
	if (pu1 >= 0)
		c->pus[c->npus++] = pu1;
	t->npus += c->npus;
	for (int i = 0; i < t->nnodes; i++)
		if (t->nodes[i].os_index == node) {
			t->nodes[i].ncores++;
			t->nodes[i].npus += c->npus;
		}
}

static void add_dev(struct hw_topology *t, enum hw_device_kind kind, const char *name, const char *pci, int node,
		    const char *netdev, const char *ipv4)
{
	struct hw_device *d = &t->devices[t->ndevices++];

	d->kind = kind;
	snprintf(d->name, sizeof(d->name), "%s", name);
	snprintf(d->pci_addr, sizeof(d->pci_addr), "%s", pci);
	d->numa_node = node;
	snprintf(d->netdev, sizeof(d->netdev), "%s", netdev);
	snprintf(d->ipv4, sizeof(d->ipv4), "%s", ipv4);
}

/* Node 0: cores {0,4} {1,5}; node 1: cores {2,6} {3,7}; node 2: memory only. */
static int two_sockets(void **state)
{
	struct hw_topology *t = calloc(1, sizeof(*t));

	if (!t)
		return -1;
	add_node(t, 0);
	add_node(t, 1);
	add_node(t, 2);
	add_core(t, 0, 0, 0, 4);
	add_core(t, 1, 0, 1, 5);
	add_core(t, 0, 1, 2, 6);
	add_core(t, 1, 1, 3, 7);
	t->page_size = 4096;
	t->hugepage_size = 2 << 20;
	add_dev(t, HW_DEV_NET, "virt0", "", -1, "", "");
	add_dev(t, HW_DEV_NET, "eth0", "0000:3b:00.0", 1, "", "10.1.2.3");
	add_dev(t, HW_DEV_RDMA, "mlx5_0", "0000:3b:00.0", 1, "eth0", "");
	add_dev(t, HW_DEV_NET, "eth1", "0000:00:03.0", -1, "", "10.9.9.9");
	add_dev(t, HW_DEV_RDMA, "rxe0", "", -1, "eth1", "");
	add_dev(t, HW_DEV_NET, "cxlnic0", "0000:80:00.0", 2, "", "");
	*state = t;
	return 0;
}

static int free_topo(void **state)
{
	free(*state);
	return 0;
}

static void check(const struct hw_placement *pl, const char *device, int node, int cpu, const char *needle)
{
	assert_string_equal(pl->device, device);
	assert_int_equal(pl->numa_node, node);
	assert_int_equal(pl->poll_cpu, cpu);
	assert_true(pl->reason[0]);
	if (needle && !strstr(pl->reason, needle))
		fail_msg("reason \"%s\" lacks \"%s\"", pl->reason, needle);
}

static void test_by_name(void **state)
{
	struct hw_topology *t = *state;
	struct hw_placement pl;

	hw_place(t, "eth0", &pl);
	check(&pl, "eth0", 1, 2, "NUMA node 1");
	assert_int_equal(pl.matched, 1);
	assert_non_null(strstr(pl.reason, "0000:3b:00.0"));
	hw_place(t, "mlx5_0", &pl);
	check(&pl, "mlx5_0", 1, 2, "NUMA node 1");
	/* No firmware node: node 0, and not CPU 0's core. */
	hw_place(t, "eth1", &pl);
	check(&pl, "eth1", 0, 1, "reports no NUMA node");
	hw_place(t, "rxe0", &pl);
	check(&pl, "rxe0", 0, 1, "no PCI device");
	assert_string_equal(pl.rdma_device, "rxe0");
	hw_place(t, "virt0", &pl);
	check(&pl, "virt0", 0, 1, "using node 0");
	assert_string_equal(pl.rdma_device, "");
	/* A node without CPUs: memory there, polling elsewhere, said so. */
	hw_place(t, "cxlnic0", &pl);
	check(&pl, "cxlnic0", 2, 1, "no CPUs");
}

static void test_by_address(void **state)
{
	struct hw_topology *t = *state;
	struct hw_placement pl;

	hw_place(t, "10.1.2.3", &pl);
	check(&pl, "eth0", 1, 2, "10.1.2.3 is on eth0");
	assert_int_equal(pl.matched, 1);
	/* The RDMA device for an address is the one bound to its NIC. */
	assert_string_equal(pl.rdma_device, "mlx5_0");
	hw_place(t, "10.9.9.9", &pl);
	check(&pl, "eth1", 0, 1, NULL);
	assert_string_equal(pl.rdma_device, "rxe0");
	hw_place(t, "203.0.113.9", &pl);
	check(&pl, "", 0, 1, "not an IPv4 address of this host");
	assert_int_equal(pl.matched, 0);
}

static void test_default_and_unknown(void **state)
{
	struct hw_topology *t = *state;
	struct hw_placement pl;

	/* First NIC with an address, not the first listed. */
	hw_place(t, NULL, &pl);
	check(&pl, "eth0", 1, 2, "first NIC eth0");
	assert_int_equal(pl.matched, 1);
	hw_place(t, "", &pl);
	check(&pl, "eth0", 1, 2, NULL);

	hw_place(t, "nosuchdev0", &pl);
	check(&pl, "", 0, 1, "nosuchdev0");
	assert_int_equal(pl.matched, 0);

	/* lo exists on every Linux host but is no NIC. */
	hw_place(t, "lo", &pl);
	check(&pl, "", 0, 1, "virtual interface");
	assert_int_equal(pl.matched, 1);
}

static void test_hostile_input(void **state)
{
	struct hw_topology *t = *state;
	struct hw_placement pl;
	char big[400];
	json_t *root;
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	hw_place(t, big, &pl);
	assert_int_equal(pl.matched, 0);
	assert_true(strlen(pl.reason) < sizeof(pl.reason));

	/* Bytes that are not UTF-8 must not break the JSON. */
	hw_place(t, "\xff\xfe\x01" "bad", &pl);
	assert_int_equal(pl.matched, 0);
	f = open_memstream(&buf, &len);
	assert_non_null(f);
	assert_int_equal(hw_print_json(t, &pl, f), 0);
	fclose(f);
	root = json_loads(buf, 0, NULL);
	assert_non_null(root);
	assert_non_null(strstr(json_string_value(json_object_get(json_object_get(root, "placement"), "reason")),
			       "bad"));
	json_decref(root);
	free(buf);
}

static void test_single_core(void **state)
{
	struct hw_topology *t = calloc(1, sizeof(*t));
	struct hw_placement pl;

	(void)state;
	assert_non_null(t);
	add_node(t, 0);
	add_core(t, 0, 0, 0, -1);
	hw_place(t, NULL, &pl);
	check(&pl, "", 0, 0, "no network or RDMA device");
	assert_non_null(strstr(pl.reason, "the only node"));
	hw_topology_free(t); /* no hwloc handle: harmless */
	free(t);
}

static void test_print_synthetic(void **state)
{
	struct hw_topology *t = *state;
	struct hw_placement pl;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	json_t *root, *devices;

	assert_non_null(f);
	hw_place(t, "eth0", &pl);
	assert_int_equal(hw_print_text(t, &pl, f), 0);
	fclose(f);
	assert_non_null(strstr(buf, "0000:3b:00.0"));
	assert_non_null(strstr(buf, "2 6\n")); /* core {2,6}: SMT siblings on one line */
	assert_non_null(strstr(buf, "placement: node 1, poll cpu 2, device eth0, rdma device mlx5_0 ("));
	free(buf);

	buf = NULL;
	f = open_memstream(&buf, &len);
	assert_non_null(f);
	assert_int_equal(hw_print_json(t, &pl, f), 0);
	fclose(f);
	root = json_loads(buf, 0, NULL);
	assert_non_null(root);
	devices = json_object_get(root, "devices");
	assert_int_equal(json_array_size(devices), 6);
	assert_string_equal(json_string_value(json_object_get(json_array_get(devices, 2), "kind")), "rdma");
	assert_string_equal(json_string_value(json_object_get(json_array_get(devices, 2), "netdev")), "eth0");
	assert_int_equal(json_integer_value(json_object_get(json_array_get(devices, 3), "numa_node")), -1);
	assert_int_equal(json_array_size(json_object_get(json_array_get(json_object_get(root, "cores"), 2), "pus")), 2);
	assert_true(json_is_true(json_object_get(json_object_get(root, "placement"), "matched")));
	json_decref(root);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_by_name, two_sockets, free_topo),
		cmocka_unit_test_setup_teardown(test_by_address, two_sockets, free_topo),
		cmocka_unit_test_setup_teardown(test_default_and_unknown, two_sockets, free_topo),
		cmocka_unit_test_setup_teardown(test_hostile_input, two_sockets, free_topo),
		cmocka_unit_test(test_single_core),
		cmocka_unit_test_setup_teardown(test_print_synthetic, two_sockets, free_topo),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
