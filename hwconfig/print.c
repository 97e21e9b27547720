/* Topology and placement as a text table or as JSON (hwconfig.h). */
#include "hwconfig/hwconfig.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

static const char *kind_name(enum hw_device_kind kind)
{
	return kind == HW_DEV_RDMA ? "rdma" : "net";
}

static void fmt_size(uint64_t n, char *out, size_t size)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n;
	int u = 0;

	while (v >= 1024.0 && u < 4) {
		v /= 1024.0;
		u++;
	}
	if (u == 0)
		snprintf(out, size, "%llu B", (unsigned long long)n);
	else
		snprintf(out, size, "%.1f %s", v, units[u]);
}

static int max_len(int a, const char *s)
{
	int n = (int)strlen(s);

	return n > a ? n : a;
}

static int finish_file(FILE *f)
{
	if (fflush(f) != 0 || ferror(f))
		return -EIO;
	return 0;
}

int hw_print_text(const struct hw_topology *topo, const struct hw_placement *placement, void *file)
{
	FILE *f = file;
	char mem[32], page[32], huge[32];
	int wname = 4, wnet = 6, wpci = 11;

	if (!topo || !f)
		return -EINVAL;
	fmt_size(topo->page_size, page, sizeof(page));
	fmt_size(topo->hugepage_size, huge, sizeof(huge));
	fprintf(f, "%d NUMA node%s, %d core%s, %d CPU%s; page size %s, hugepage size %s\n\n", topo->nnodes,
		topo->nnodes == 1 ? "" : "s", topo->ncores, topo->ncores == 1 ? "" : "s", topo->npus,
		topo->npus == 1 ? "" : "s", page, topo->hugepage_size ? huge : "none");

	fprintf(f, "NUMA nodes\n  %-5s %-10s %-6s %-5s %s\n", "node", "memory", "cores", "cpus", "free 2M hugepages");
	for (int i = 0; i < topo->nnodes; i++) {
		const struct hw_numa_node *n = &topo->nodes[i];

		if (n->memory_bytes)
			fmt_size(n->memory_bytes, mem, sizeof(mem));
		else
			snprintf(mem, sizeof(mem), "unknown");
		fprintf(f, "  %-5d %-10s %-6d %-5d %llu\n", n->os_index, mem, n->ncores, n->npus,
			(unsigned long long)n->hugepages_2m_free);
	}

	fprintf(f, "\nCores\n  %-5s %-5s %s\n", "core", "node", "cpus (SMT siblings)");
	for (int i = 0; i < topo->ncores; i++) {
		const struct hw_core *c = &topo->cores[i];

		fprintf(f, "  %-5d %-5d ", c->os_index, c->numa_node);
		for (int j = 0; j < c->npus; j++)
			fprintf(f, "%s%d", j ? " " : "", c->pus[j]);
		fputc('\n', f);
	}

	fprintf(f, "\nDevices\n");
	if (topo->ndevices == 0)
		fprintf(f, "  none (no network or RDMA device found)\n");
	for (int i = 0; i < topo->ndevices; i++) {
		wname = max_len(wname, topo->devices[i].name);
		wnet = max_len(wnet, topo->devices[i].netdev);
		wpci = max_len(wpci, topo->devices[i].pci_addr);
	}
	if (topo->ndevices)
		fprintf(f, "  %-5s %-*s  %-*s  %-7s  %-*s  %s\n", "kind", wname, "name", wpci, "PCI address",
			"node", wnet, "netdev", "IPv4");
	for (int i = 0; i < topo->ndevices; i++) {
		const struct hw_device *d = &topo->devices[i];
		char node[16];

		if (d->numa_node >= 0)
			snprintf(node, sizeof(node), "%d", d->numa_node);
		else
			snprintf(node, sizeof(node), "unknown");
		fprintf(f, "  %-5s %-*s  %-*s  %-7s  %-*s  %s\n", kind_name(d->kind), wname, d->name, wpci,
			d->pci_addr[0] ? d->pci_addr : "-", node, wnet, d->netdev[0] ? d->netdev : "-",
			d->ipv4[0] ? d->ipv4 : "-");
	}

	if (placement)
		fprintf(f, "\nplacement: node %d, poll cpu %d, device %s, rdma device %s (%s)\n",
			placement->numa_node, placement->poll_cpu, placement->device[0] ? placement->device : "none",
			placement->rdma_device[0] ? placement->rdma_device : "none", placement->reason);
	return finish_file(f);
}

/* A JSON string of @p s with any byte that is not printable ASCII replaced (sysfs names are bytes). */
static json_t *jstr(const char *s)
{
	char buf[512];
	size_t i;

	for (i = 0; s[i] && i + 1 < sizeof(buf); i++)
		buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	buf[i] = '\0';
	return json_string(buf);
}

/* json_object_set_new that remembers failure (NULL value or no memory). */
static void put(json_t *obj, const char *key, json_t *value, int *bad)
{
	if (!obj) {
		json_decref(value);
		*bad = 1;
	} else if (!value || json_object_set_new(obj, key, value) != 0) { /* steals value even on failure */
		*bad = 1;
	}
}

static void append(json_t *array, json_t *value, int *bad)
{
	if (!array) {
		json_decref(value);
		*bad = 1;
	} else if (!value || json_array_append_new(array, value) != 0) {
		*bad = 1;
	}
}

static json_t *topology_json(const struct hw_topology *topo, const struct hw_placement *placement, int *bad)
{
	json_t *root = json_object(), *nodes = json_array(), *cores = json_array(), *devices = json_array();

	put(root, "nodes", nodes, bad);
	put(root, "cores", cores, bad);
	put(root, "devices", devices, bad);
	for (int i = 0; i < topo->nnodes; i++) {
		const struct hw_numa_node *n = &topo->nodes[i];
		json_t *o = json_object();

		put(o, "os_index", json_integer(n->os_index), bad);
		put(o, "memory_bytes", json_integer((json_int_t)n->memory_bytes), bad);
		put(o, "ncores", json_integer(n->ncores), bad);
		put(o, "npus", json_integer(n->npus), bad);
		put(o, "hugepages_2m_free", json_integer((json_int_t)n->hugepages_2m_free), bad);
		append(nodes, o, bad);
	}
	for (int i = 0; i < topo->ncores; i++) {
		const struct hw_core *c = &topo->cores[i];
		json_t *o = json_object(), *pus = json_array();

		put(o, "os_index", json_integer(c->os_index), bad);
		put(o, "numa_node", json_integer(c->numa_node), bad);
		put(o, "pus", pus, bad);
		for (int j = 0; j < c->npus; j++)
			append(pus, json_integer(c->pus[j]), bad);
		append(cores, o, bad);
	}
	for (int i = 0; i < topo->ndevices; i++) {
		const struct hw_device *d = &topo->devices[i];
		json_t *o = json_object();

		put(o, "kind", json_string(kind_name(d->kind)), bad);
		put(o, "name", jstr(d->name), bad);
		put(o, "pci_addr", jstr(d->pci_addr), bad);
		put(o, "numa_node", json_integer(d->numa_node), bad);
		put(o, "netdev", jstr(d->netdev), bad);
		put(o, "ipv4", jstr(d->ipv4), bad);
		append(devices, o, bad);
	}
	put(root, "npus", json_integer(topo->npus), bad);
	put(root, "page_size", json_integer((json_int_t)topo->page_size), bad);
	put(root, "hugepage_size", json_integer((json_int_t)topo->hugepage_size), bad);
	if (placement) {
		json_t *o = json_object();

		put(o, "device", jstr(placement->device), bad);
		put(o, "rdma_device", jstr(placement->rdma_device), bad);
		put(o, "numa_node", json_integer(placement->numa_node), bad);
		put(o, "poll_cpu", json_integer(placement->poll_cpu), bad);
		put(o, "reason", jstr(placement->reason), bad);
		put(o, "matched", json_boolean(placement->matched), bad);
		put(root, "placement", o, bad);
	} else {
		put(root, "placement", json_null(), bad);
	}
	return root;
}

int hw_print_json(const struct hw_topology *topo, const struct hw_placement *placement, void *file)
{
	FILE *f = file;
	int bad = 0, rc;
	json_t *root;

	if (!topo || !f)
		return -EINVAL;
	root = topology_json(topo, placement, &bad);
	if (bad || !root) {
		json_decref(root);
		return -ENOMEM;
	}
	rc = json_dumpf(root, f, JSON_INDENT(2));
	json_decref(root);
	if (rc != 0 || fputc('\n', f) == EOF)
		return -EIO;
	return finish_file(f);
}
