/* hwconfig on the real machine: topology, placement, pools, pinning, output, ferry-hwinfo. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <jansson.h>
#include <netinet/in.h>
#include <numa.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hwconfig/hwconfig.h"

#define MIB ((size_t)1 << 20)
#define NR_HUGEPAGES "/proc/sys/vm/nr_hugepages"

static struct hw_topology *topo;

static int load_topology(void **state)
{
	struct ferry_err err = { 0 };

	(void)state;
	topo = calloc(1, sizeof(*topo));
	if (!topo)
		return -1;
	if (hw_topology_load(topo, &err) != 0) {
		fprintf(stderr, "hw_topology_load: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static int free_topology(void **state)
{
	(void)state;
	hw_topology_free(topo);
	free(topo);
	topo = NULL;
	return 0;
}

static int allowed_cpu_count(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return -1;
	return CPU_COUNT(&set);
}

static int node_listed(int node)
{
	for (int i = 0; i < topo->nnodes; i++)
		if (topo->nodes[i].os_index == node)
			return 1;
	return 0;
}

static int cpu_listed(int cpu)
{
	for (int i = 0; i < topo->ncores; i++)
		for (int j = 0; j < topo->cores[i].npus; j++)
			if (topo->cores[i].pus[j] == cpu)
				return 1;
	return 0;
}

/* First non-loopback IPv4 address of this host into @p out, and its interface; 0 if none. */
static int first_ipv4(char *out, size_t size, char *ifname, size_t ifsize)
{
	struct ifaddrs *ifs, *ifa;
	int found = 0;

	if (getifaddrs(&ifs) != 0)
		return 0;
	for (ifa = ifs; ifa && !found; ifa = ifa->ifa_next) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)ifa->ifa_addr;

		if (!ifa->ifa_addr || ifa->ifa_addr->sa_family != AF_INET)
			continue;
		if (ntohl(sin->sin_addr.s_addr) >> 24 == 127)
			continue;
		inet_ntop(AF_INET, &sin->sin_addr, out, (socklen_t)size);
		snprintf(ifname, ifsize, "%s", ifa->ifa_name);
		found = 1;
	}
	freeifaddrs(ifs);
	return found;
}

static void test_topology(void **state)
{
	long online = sysconf(_SC_NPROCESSORS_ONLN), conf = sysconf(_SC_NPROCESSORS_CONF);
	int seen[HW_MAX_CPUS] = { 0 }, sum_pus = 0, node_cores = 0;

	(void)state;
	assert_true(topo->nnodes >= 1);
	assert_true(topo->ncores >= 1);
	assert_true(topo->npus == online || topo->npus == allowed_cpu_count());
	assert_int_equal(topo->page_size, (size_t)sysconf(_SC_PAGESIZE));
	assert_non_null(topo->hwloc);
	for (int i = 0; i < topo->ncores; i++) {
		const struct hw_core *c = &topo->cores[i];

		assert_true(c->npus >= 1 && c->npus <= 8);
		assert_true(node_listed(c->numa_node));
		for (int j = 0; j < c->npus; j++) {
			assert_true(c->pus[j] >= 0 && c->pus[j] < conf && c->pus[j] < HW_MAX_CPUS);
			assert_int_equal(seen[c->pus[j]], 0); /* distinct across all cores */
			seen[c->pus[j]] = 1;
		}
		sum_pus += c->npus;
	}
	assert_int_equal(sum_pus, topo->npus);
	for (int i = 0; i < topo->nnodes; i++)
		node_cores += topo->nodes[i].ncores;
	assert_int_equal(node_cores, topo->ncores);
	for (int i = 0; i < topo->ndevices; i++) {
		const struct hw_device *d = &topo->devices[i];

		assert_true(d->name[0]);
		assert_true(d->numa_node == -1 || node_listed(d->numa_node));
		assert_true(d->kind == HW_DEV_NET || d->kind == HW_DEV_RDMA);
		assert_true(d->pci_addr[0] == '\0' || strlen(d->pci_addr) == 12);
	}
}

/* Every net device with a hardware device behind it is listed, loopback is not. */
static void test_topology_lists_nics(void **state)
{
	struct ifaddrs *ifs, *ifa;

	(void)state;
	assert_int_equal(getifaddrs(&ifs), 0);
	for (ifa = ifs; ifa; ifa = ifa->ifa_next) {
		char path[512];
		int listed = 0;

		snprintf(path, sizeof(path), "/sys/class/net/%s/device", ifa->ifa_name);
		for (int i = 0; i < topo->ndevices; i++)
			if (strcmp(topo->devices[i].name, ifa->ifa_name) == 0)
				listed = 1;
		if (strcmp(ifa->ifa_name, "lo") == 0)
			assert_false(listed);
		else if (access(path, F_OK) == 0)
			assert_true(listed);
	}
	freeifaddrs(ifs);
}

static void check_placement(const struct hw_placement *pl)
{
	assert_true(node_listed(pl->numa_node));
	assert_true(cpu_listed(pl->poll_cpu));
	assert_true(pl->reason[0]);
	assert_non_null(memchr(pl->reason, '\0', sizeof(pl->reason)));
}

static void test_place(void **state)
{
	struct hw_placement pl;
	char ip[64], ifname[64];

	(void)state;
	hw_place(topo, NULL, &pl);
	check_placement(&pl);
	assert_int_equal(pl.matched, 1);
	hw_place(topo, "", &pl);
	check_placement(&pl);

	hw_place(topo, "nosuchdev0", &pl);
	check_placement(&pl);
	assert_int_equal(pl.matched, 0);
	assert_string_equal(pl.device, "");
	assert_non_null(strstr(pl.reason, "nosuchdev0"));

	hw_place(topo, "lo", &pl);
	check_placement(&pl);
	assert_int_equal(pl.matched, 1);

	hw_place(topo, "127.0.0.1", &pl);
	check_placement(&pl);
	assert_int_equal(pl.matched, 1);

	hw_place(topo, "203.0.113.77", &pl); /* TEST-NET-3: not ours */
	check_placement(&pl);
	assert_int_equal(pl.matched, 0);

	if (first_ipv4(ip, sizeof(ip), ifname, sizeof(ifname))) {
		hw_place(topo, ip, &pl);
		check_placement(&pl);
		assert_int_equal(pl.matched, 1);
		assert_non_null(strstr(pl.reason, ip));
	}

	for (int i = 0; i < topo->ndevices; i++) {
		hw_place(topo, topo->devices[i].name, &pl);
		check_placement(&pl);
		assert_int_equal(pl.matched, 1);
		assert_string_equal(pl.device, topo->devices[i].name);
		if (topo->devices[i].numa_node >= 0)
			assert_int_equal(pl.numa_node, topo->devices[i].numa_node);
	}
}

/* With more than one core on the chosen node the poll CPU is not CPU 0. */
static void test_place_avoids_cpu0(void **state)
{
	struct hw_placement pl;
	int cores_on_node = 0;

	(void)state;
	hw_place(topo, NULL, &pl);
	for (int i = 0; i < topo->ncores; i++)
		if (topo->cores[i].numa_node == pl.numa_node)
			cores_on_node++;
	if (cores_on_node < 2)
		skip();
	assert_int_not_equal(pl.poll_cpu, 0);
}

static void fill_and_check(const struct hw_region *r)
{
	uint64_t *w = r->addr;
	size_t n = r->length / sizeof(*w);

	for (size_t i = 0; i < n; i++)
		w[i] = (uint64_t)i * 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < n; i++)
		if (w[i] != (uint64_t)i * 0x9e3779b97f4a7c15ull)
			fail_msg("word %zu differs", i);
}

static void test_region(void **state)
{
	struct ferry_err err = { 0 };
	struct hw_region r;
	int node = topo->nodes[0].os_index;

	(void)state;
	assert_int_equal(hw_region_alloc(8 * MIB, node, 1, &r, &err), 0);
	assert_non_null(r.addr);
	assert_true(r.length >= 8 * MIB);
	assert_true(r.kind == HW_MEM_HUGETLB_2M || r.kind == HW_MEM_THP || r.kind == HW_MEM_4K);
	assert_string_not_equal(hw_mem_kind_name(r.kind), "unknown");
	if (numa_available() >= 0)
		assert_int_equal(r.numa_node, node);
	if (r.kind != HW_MEM_4K)
		assert_int_equal((uintptr_t)r.addr % (2 * MIB), 0);
	fill_and_check(&r);
	hw_region_free(&r);
	assert_null(r.addr);

	/* Unbound, not pre-faulted, odd size. */
	assert_int_equal(hw_region_alloc(3 * MIB + 5, -1, 0, &r, &err), 0);
	assert_int_equal(r.numa_node, -1);
	assert_true(r.length >= 3 * MIB + 5);
	assert_int_equal(r.length % topo->page_size, 0);
	fill_and_check(&r);
	hw_region_free(&r);

	/* Small: never THP. */
	assert_int_equal(hw_region_alloc(10000, node, 1, &r, &err), 0);
	assert_true(r.kind == HW_MEM_4K || r.kind == HW_MEM_HUGETLB_2M);
	assert_true(r.length >= 10000);
	fill_and_check(&r);
	hw_region_free(&r);
}

static void test_region_errors(void **state)
{
	struct ferry_err err = { 0 };
	struct hw_region r;

	(void)state;
	assert_int_equal(hw_region_alloc(0, -1, 0, &r, &err), -EINVAL);
	assert_true(err.msg[0]);
	ferry_err_clear(&err);
	assert_int_equal(hw_region_alloc(MIB, -7, 0, &r, &err), -EINVAL);
	assert_true(err.msg[0]);
	if (numa_available() >= 0) {
		ferry_err_clear(&err);
		assert_int_equal(hw_region_alloc(MIB, HW_MAX_NODES - 1, 0, &r, &err), -EINVAL);
		assert_non_null(strstr(err.msg, "node"));
	}
	ferry_err_clear(&err);
	assert_true(hw_region_alloc(SIZE_MAX - 4096, -1, 0, &r, &err) < 0);
	assert_true(err.msg[0]);
	assert_null(r.addr);
	hw_region_free(&r); /* harmless on an empty region */
	hw_region_free(NULL);
}

static long saved_nr_hugepages = -1;

static long read_nr_hugepages(void)
{
	FILE *f = fopen(NR_HUGEPAGES, "r");
	long n = -1;

	if (f) {
		if (fscanf(f, "%ld", &n) != 1)
			n = -1;
		fclose(f);
	}
	return n;
}

static int write_nr_hugepages(long n)
{
	FILE *f = fopen(NR_HUGEPAGES, "w");
	int ok;

	if (!f)
		return -1;
	ok = fprintf(f, "%ld\n", n) > 0;
	ok = (fclose(f) == 0) && ok;
	return ok ? 0 : -1;
}

static int restore_hugepages(void **state)
{
	(void)state;
	if (saved_nr_hugepages >= 0 && write_nr_hugepages(saved_nr_hugepages) != 0)
		fprintf(stderr, "could not restore %s to %ld\n", NR_HUGEPAGES, saved_nr_hugepages);
	saved_nr_hugepages = -1;
	return 0;
}

static void test_region_hugetlb(void **state)
{
	struct ferry_err err = { 0 };
	struct hw_region r;
	int node = topo->nodes[0].os_index;
	uint64_t before, after, free_now;
	long old = read_nr_hugepages();

	(void)state;
	if (old < 0 || write_nr_hugepages(old + 4) != 0) {
		print_message("cannot reserve hugepages via %s (%s); skipping\n", NR_HUGEPAGES, strerror(errno));
		skip();
	}
	saved_nr_hugepages = old;
	before = hw_hugepages_2m_free(node);
	if (before < 2) {
		print_message("only %llu free 2 MiB hugepages after reserving; skipping\n",
			      (unsigned long long)before);
		skip();
	}
	assert_int_equal(hw_region_alloc(4 * MIB, node, 1, &r, &err), 0);
	assert_int_equal(r.kind, HW_MEM_HUGETLB_2M);
	assert_int_equal(r.length, 4 * MIB);
	assert_int_equal((uintptr_t)r.addr % (2 * MIB), 0);
	after = hw_hugepages_2m_free(node);
	assert_true(after + 2 <= before); /* pre-faulted: two pages taken */
	fill_and_check(&r);
	hw_region_free(&r);

	/* Unbound works too. */
	assert_int_equal(hw_region_alloc(2 * MIB, -1, 1, &r, &err), 0);
	assert_int_equal(r.kind, HW_MEM_HUGETLB_2M);
	fill_and_check(&r);
	hw_region_free(&r);

	/* More than is free: falls back instead of failing. */
	free_now = hw_hugepages_2m_free(node);
	if (free_now > 64)
		return; /* a host with many reserved pages: not worth mapping them all */
	assert_int_equal(hw_region_alloc((size_t)(free_now + 1) * 2 * MIB, node, 1, &r, &err), 0);
	assert_int_not_equal(r.kind, HW_MEM_HUGETLB_2M);
	fill_and_check(&r);
	hw_region_free(&r);
}

static void test_pin(void **state)
{
	struct ferry_err err = { 0 };
	cpu_set_t saved;
	int pinned = 0;

	(void)state;
	assert_int_equal(sched_getaffinity(0, sizeof(saved), &saved), 0);
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (!CPU_ISSET(cpu, &saved))
			continue;
		assert_int_equal(hw_pin_thread(cpu, &err), 0);
		assert_int_equal(sched_getcpu(), cpu);
		pinned++;
	}
	assert_true(pinned >= 1);

	assert_int_equal(hw_pin_thread(-1, &err), -EINVAL);
	assert_true(err.msg[0]);
	ferry_err_clear(&err);
	assert_true(hw_pin_thread(HW_MAX_CPUS - 1, &err) < 0 || CPU_ISSET(HW_MAX_CPUS - 1, &saved));
	ferry_err_clear(&err);
	assert_true(hw_pin_thread(60000, &err) < 0);
	assert_non_null(strstr(err.msg, "60000"));
	assert_non_null(strstr(err.msg, "allowed cpus"));
	assert_int_equal(sched_setaffinity(0, sizeof(saved), &saved), 0);
}

/* Node placement keeps within the allowed CPUs: narrowed to one CPU, it stays there. */
static void test_pin_to_node(void **state)
{
	struct ferry_err err = { 0 };
	cpu_set_t saved, one, now;
	int first = -1;

	(void)state;
	assert_int_equal(sched_getaffinity(0, sizeof(saved), &saved), 0);
	for (int cpu = 0; cpu < CPU_SETSIZE && first < 0; cpu++)
		if (CPU_ISSET(cpu, &saved) && numa_node_of_cpu(cpu) >= 0)
			first = cpu;
	assert_true(first >= 0);
	CPU_ZERO(&one);
	CPU_SET(first, &one);
	assert_int_equal(sched_setaffinity(0, sizeof(one), &one), 0);
	assert_int_equal(hw_pin_thread_to_node(numa_node_of_cpu(first), &err), 0);
	assert_int_equal(sched_getaffinity(0, sizeof(now), &now), 0);
	assert_true(CPU_EQUAL(&now, &one));
	/* Back to everything allowed: the thread gets every allowed CPU of the node. */
	assert_int_equal(sched_setaffinity(0, sizeof(saved), &saved), 0);
	assert_int_equal(hw_pin_thread_to_node(numa_node_of_cpu(first), &err), 0);
	assert_int_equal(sched_getaffinity(0, sizeof(now), &now), 0);
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
		assert_int_equal(CPU_ISSET(cpu, &now) != 0,
				 CPU_ISSET(cpu, &saved) && numa_node_of_cpu(cpu) == numa_node_of_cpu(first));
	assert_true(hw_pin_thread_to_node(numa_max_node() + 1, &err) < 0);
	assert_non_null(strstr(err.msg, "no such node"));
	assert_int_equal(sched_setaffinity(0, sizeof(saved), &saved), 0);
}

static void test_bind_memory(void **state)
{
	struct ferry_err err = { 0 };

	(void)state;
	if (numa_available() < 0) {
		assert_true(hw_bind_memory(0, &err) < 0);
		assert_true(err.msg[0]);
		return;
	}
	assert_int_equal(hw_bind_memory(topo->nodes[0].os_index, &err), 0);
	assert_int_equal(numa_preferred(), topo->nodes[0].os_index);
	assert_int_equal(hw_bind_memory(4000, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "4000"));
	assert_int_equal(hw_bind_memory(-1, &err), 0);
}

static char *print_to_string(int json, const struct hw_placement *pl)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	assert_int_equal(json ? hw_print_json(topo, pl, f) : hw_print_text(topo, pl, f), 0);
	assert_int_equal(fclose(f), 0);
	return buf;
}

static void check_json(json_t *root, int with_placement)
{
	json_t *nodes = json_object_get(root, "nodes"), *cores = json_object_get(root, "cores");
	json_t *devices = json_object_get(root, "devices"), *placement = json_object_get(root, "placement");

	assert_true(json_is_object(root));
	assert_true(json_is_array(nodes) && json_array_size(nodes) >= 1);
	assert_true(json_is_array(cores) && json_array_size(cores) >= 1);
	assert_true(json_is_array(devices));
	assert_true(json_is_integer(json_object_get(json_array_get(nodes, 0), "os_index")));
	assert_true(json_is_array(json_object_get(json_array_get(cores, 0), "pus")));
	if (with_placement) {
		assert_true(json_is_object(placement));
		assert_true(json_is_integer(json_object_get(placement, "numa_node")));
		assert_true(json_is_integer(json_object_get(placement, "poll_cpu")));
		assert_true(json_is_string(json_object_get(placement, "reason")));
		assert_true(json_is_string(json_object_get(placement, "device")));
	} else {
		assert_true(json_is_null(placement));
	}
}

static void test_json(void **state)
{
	struct hw_placement pl;
	json_error_t jerr;
	json_t *root;
	char *out;

	(void)state;
	hw_place(topo, NULL, &pl);
	out = print_to_string(1, &pl);
	root = json_loads(out, 0, &jerr);
	if (!root)
		fail_msg("JSON does not parse: %s (line %d): %s", jerr.text, jerr.line, out);
	check_json(root, 1);
	assert_int_equal(json_array_size(json_object_get(root, "nodes")), (size_t)topo->nnodes);
	assert_int_equal(json_array_size(json_object_get(root, "cores")), (size_t)topo->ncores);
	assert_int_equal(json_array_size(json_object_get(root, "devices")), (size_t)topo->ndevices);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(root, "placement"), "poll_cpu")),
			 pl.poll_cpu);
	json_decref(root);
	free(out);

	out = print_to_string(1, NULL);
	root = json_loads(out, 0, &jerr);
	assert_non_null(root);
	check_json(root, 0);
	json_decref(root);
	free(out);
}

static void test_text(void **state)
{
	struct hw_placement pl;
	char *out, line[256];

	(void)state;
	hw_place(topo, NULL, &pl);
	out = print_to_string(0, &pl);
	assert_non_null(strstr(out, "NUMA nodes"));
	assert_non_null(strstr(out, "Cores"));
	assert_non_null(strstr(out, "Devices"));
	snprintf(line, sizeof(line), "placement: node %d, poll cpu %d, device ", pl.numa_node, pl.poll_cpu);
	assert_non_null(strstr(out, line));
	for (int i = 0; i < topo->ndevices; i++)
		assert_non_null(strstr(out, topo->devices[i].name));
	free(out);
	out = print_to_string(0, NULL);
	assert_null(strstr(out, "placement:"));
	free(out);
}

/* Exit status of ferry-hwinfo with @p args, its stdout discarded. */
static int run_hwinfo(const char *args)
{
	char cmd[1024];
	int status;

	snprintf(cmd, sizeof(cmd), "'%s' %s >/dev/null 2>&1", FERRY_HWINFO_PATH, args);
	status = system(cmd);
	assert_true(status != -1 && WIFEXITED(status));
	return WEXITSTATUS(status);
}

static void test_hwinfo_binary(void **state)
{
	char cmd[1024];
	json_error_t jerr;
	json_t *root;
	FILE *p;

	(void)state;
	snprintf(cmd, sizeof(cmd), "'%s' --json", FERRY_HWINFO_PATH);
	p = popen(cmd, "r");
	assert_non_null(p);
	root = json_loadf(p, 0, &jerr);
	assert_int_equal(pclose(p), 0);
	if (!root)
		fail_msg("ferry-hwinfo --json output does not parse: %s (line %d)", jerr.text, jerr.line);
	check_json(root, 1);
	assert_int_equal(json_array_size(json_object_get(root, "cores")), (size_t)topo->ncores);
	json_decref(root);

	assert_int_equal(run_hwinfo(""), 0);
	assert_int_equal(run_hwinfo("--help"), 0);
	assert_int_equal(run_hwinfo("--for lo"), 0);
	assert_int_equal(run_hwinfo("--json --for=127.0.0.1"), 0);
	assert_int_equal(run_hwinfo("--for nosuchdev0"), 1);
	assert_int_equal(run_hwinfo("--bogus"), 2);
	assert_int_equal(run_hwinfo("--for"), 2);
	assert_int_equal(run_hwinfo("extra"), 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_topology),
		cmocka_unit_test(test_topology_lists_nics),
		cmocka_unit_test(test_place),
		cmocka_unit_test(test_place_avoids_cpu0),
		cmocka_unit_test(test_region),
		cmocka_unit_test(test_region_errors),
		cmocka_unit_test_teardown(test_region_hugetlb, restore_hugepages),
		cmocka_unit_test(test_pin),
		cmocka_unit_test(test_pin_to_node),
		cmocka_unit_test(test_bind_memory),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_text),
		cmocka_unit_test(test_hwinfo_binary),
	};

	return cmocka_run_group_tests(tests, load_topology, free_topology);
}
