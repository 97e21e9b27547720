/*
 * Topology discovery (hwconfig.h): hwloc for NUMA nodes, cores and the PCI
 * network/RDMA devices; sysfs and getifaddrs for what hwloc does not say
 * (RDMA device -> netdev binding, IPv4 addresses, free hugepages, and devices
 * that hwloc leaves out because they have no PCI parent, such as rxe0 or a
 * virtio-mmio NIC).
 */
#include "hwconfig/hwconfig.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <hwloc.h>
#include <ifaddrs.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <numa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/common/ferry_log.h"

#define SYS_NET "/sys/class/net"
#define SYS_IB "/sys/class/infiniband"

/* Copy @p src into @p dst (size @p size), truncating; @p dst is always terminated. */
static void copy_str(char *dst, size_t size, const char *src)
{
	size_t n = strnlen(src, size - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* First line of a small sysfs file, without its newline; -1 if unreadable or empty. */
static int read_line(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "re");
	int ok;

	if (!f)
		return -1;
	ok = fgets(buf, (int)size, f) != NULL;
	fclose(f);
	if (!ok)
		return -1;
	buf[strcspn(buf, "\n")] = '\0';
	return buf[0] ? 0 : -1;
}

/* Entries of a directory (dot entries included), sorted; -1 on error. Free with free_names(). */
static int list_dir(const char *path, struct dirent ***names)
{
	return scandir(path, names, NULL, alphasort);
}

static void free_names(struct dirent **names, int n)
{
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* "dddd:bb:dd.f" */
static int is_pci_addr(const char *s, size_t len)
{
	if (len != 12)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (i == 4 || i == 7) {
			if (c != ':')
				return 0;
		} else if (i == 10) {
			if (c != '.')
				return 0;
		} else if (!isxdigit(c)) {
			return 0;
		}
	}
	return 1;
}

/* PCI address of the nearest PCI function above a sysfs device path, or "". */
static void pci_addr_of_path(const char *link, char *out, size_t size)
{
	char real[PATH_MAX];
	const char *p = real;

	out[0] = '\0';
	if (!realpath(link, real))
		return;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);

		if (is_pci_addr(p, len))
			snprintf(out, size, "%.*s", (int)len, p);
		if (!slash)
			break;
		p = slash + 1;
	}
}

/* NUMA node the firmware assigned to a PCI function; -1 when it has none. */
static int pci_numa_node(const char *pci_addr)
{
	char path[128], buf[32];

	if (!pci_addr[0])
		return -1;
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/numa_node", pci_addr);
	if (read_line(path, buf, sizeof(buf)) != 0)
		return -1;
	return atoi(buf) >= 0 ? atoi(buf) : -1;
}

static int has_node(const struct hw_topology *topo, int node)
{
	for (int i = 0; i < topo->nnodes; i++)
		if (topo->nodes[i].os_index == node)
			return 1;
	return 0;
}

static size_t default_hugepage_size(void)
{
	FILE *f = fopen("/proc/meminfo", "re");
	char line[256];
	uint64_t kb = 0, v;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Hugepagesize: %" SCNu64, &v) == 1)
			kb = v;
	fclose(f);
	return (size_t)kb * 1024;
}

static void load_nodes(struct hw_topology *topo, hwloc_topology_t t)
{
	hwloc_obj_t obj = NULL;

	while ((obj = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_NUMANODE, obj)) != NULL) {
		struct hw_numa_node *n;

		if (topo->nnodes == HW_MAX_NODES) {
			LOG_WARN("hwconfig: more than %d NUMA nodes; ignoring the rest", HW_MAX_NODES);
			break;
		}
		n = &topo->nodes[topo->nnodes++];
		n->os_index = (int)obj->os_index;
		n->memory_bytes = obj->attr ? obj->attr->numanode.local_memory : 0;
		n->hugepages_2m_free = hw_hugepages_2m_free(n->os_index);
	}
	if (topo->nnodes == 0) {
		/* hwloc always reports one node; be safe if it does not. */
		long pages = sysconf(_SC_PHYS_PAGES);

		topo->nnodes = 1;
		topo->nodes[0].os_index = 0;
		topo->nodes[0].memory_bytes = pages > 0 ? (uint64_t)pages * topo->page_size : 0;
		topo->nodes[0].hugepages_2m_free = hw_hugepages_2m_free(-1);
	}
}

/* NUMA node of a CPU: the kernel's answer (libnuma), else hwloc's locality. */
static int node_of_cpu(const struct hw_topology *topo, hwloc_topology_t t, int numa_ok, unsigned cpu)
{
	hwloc_obj_t obj = NULL;

	if (numa_ok) {
		int n = numa_node_of_cpu((int)cpu);

		if (n >= 0 && has_node(topo, n))
			return n;
	}
	while ((obj = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_NUMANODE, obj)) != NULL)
		if (obj->cpuset && hwloc_bitmap_isset(obj->cpuset, cpu))
			return (int)obj->os_index;
	return topo->nodes[0].os_index;
}

static void add_core(struct hw_topology *topo, hwloc_topology_t t, int numa_ok, int core_id,
		     hwloc_const_cpuset_t cpuset)
{
	struct hw_core *c;
	int pu, dropped = 0;

	if (topo->ncores == HW_MAX_CPUS)
		return;
	c = &topo->cores[topo->ncores];
	memset(c, 0, sizeof(*c));
	c->os_index = core_id;
	hwloc_bitmap_foreach_begin(pu, cpuset) {
		if (c->npus < (int)(sizeof(c->pus) / sizeof(c->pus[0])))
			c->pus[c->npus++] = pu;
		else
			dropped++;
	}
	hwloc_bitmap_foreach_end();
	if (c->npus == 0)
		return;
	if (dropped)
		LOG_WARN("hwconfig: core %d has more than %d hardware threads; listing the first %d",
			 core_id, c->npus, c->npus);
	c->numa_node = node_of_cpu(topo, t, numa_ok, (unsigned)c->pus[0]);
	topo->ncores++;
}

static void load_cores(struct hw_topology *topo, hwloc_topology_t t)
{
	int numa_ok = numa_available() >= 0;
	hwloc_obj_t obj = NULL;
	int n = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE);

	if (n > HW_MAX_CPUS)
		LOG_WARN("hwconfig: %d cores, listing the first %d", n, HW_MAX_CPUS);
	if (n > 0) {
		while ((obj = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_CORE, obj)) != NULL)
			if (obj->cpuset)
				add_core(topo, t, numa_ok, (int)obj->os_index, obj->cpuset);
	} else {
		/* No core information (some VMs, some architectures): one core per PU. */
		while ((obj = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_PU, obj)) != NULL)
			if (obj->cpuset)
				add_core(topo, t, numa_ok, (int)obj->os_index, obj->cpuset);
	}
	topo->npus = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PU);

	for (int i = 0; i < topo->ncores; i++)
		for (int j = 0; j < topo->nnodes; j++)
			if (topo->nodes[j].os_index == topo->cores[i].numa_node) {
				topo->nodes[j].ncores++;
				topo->nodes[j].npus += topo->cores[i].npus;
			}
}

static struct hw_device *find_device(struct hw_topology *topo, enum hw_device_kind kind, const char *name)
{
	for (int i = 0; i < topo->ndevices; i++)
		if (topo->devices[i].kind == kind && strcmp(topo->devices[i].name, name) == 0)
			return &topo->devices[i];
	return NULL;
}

static struct hw_device *add_device(struct hw_topology *topo, enum hw_device_kind kind, const char *name)
{
	static int warned;
	struct hw_device *d;

	if (find_device(topo, kind, name))
		return NULL;
	if (topo->ndevices == HW_MAX_DEVICES) {
		if (!warned)
			LOG_WARN("hwconfig: more than %d network/RDMA devices; ignoring %s and the rest",
				 HW_MAX_DEVICES, name);
		warned = 1;
		return NULL;
	}
	d = &topo->devices[topo->ndevices++];
	memset(d, 0, sizeof(*d));
	d->kind = kind;
	d->numa_node = -1;
	copy_str(d->name, sizeof(d->name), name);
	return d;
}

/* Network and OpenFabrics OS devices that hwloc found, with their PCI function and node. */
static void load_hwloc_devices(struct hw_topology *topo, hwloc_topology_t t)
{
	hwloc_obj_t os = NULL;

	while ((os = hwloc_get_next_osdev(t, os)) != NULL) {
		enum hw_device_kind kind;
		struct hw_device *d;
		hwloc_obj_t p;

		if (!os->name || !os->attr)
			continue;
		if (os->attr->osdev.type == HWLOC_OBJ_OSDEV_NETWORK)
			kind = HW_DEV_NET;
		else if (os->attr->osdev.type == HWLOC_OBJ_OSDEV_OPENFABRICS)
			kind = HW_DEV_RDMA;
		else
			continue;
		d = add_device(topo, kind, os->name);
		if (!d)
			continue;
		for (p = os->parent; p && p->type != HWLOC_OBJ_PCI_DEVICE; p = p->parent)
			if (!hwloc_obj_type_is_io(p->type))
				break;
		if (p && p->type == HWLOC_OBJ_PCI_DEVICE)
			snprintf(d->pci_addr, sizeof(d->pci_addr), "%04x:%02x:%02x.%01x",
				 (unsigned)p->attr->pcidev.domain, (unsigned)p->attr->pcidev.bus,
				 (unsigned)p->attr->pcidev.dev, (unsigned)p->attr->pcidev.func);
		d->numa_node = pci_numa_node(d->pci_addr);
		if (d->numa_node < 0 && topo->nnodes > 1) {
			/* No firmware node: hwloc's locality, if it names exactly one node. */
			hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj(t, os);

			if (anc && anc->nodeset && hwloc_bitmap_weight(anc->nodeset) == 1)
				d->numa_node = hwloc_bitmap_first(anc->nodeset);
		}
		if (d->numa_node >= 0 && !has_node(topo, d->numa_node))
			d->numa_node = -1;
	}
}

/*
 * Devices hwloc did not report: RDMA devices without a PCI parent (rxe, siw)
 * and net devices backed by a non-PCI device (virtio-mmio). Net devices with
 * no device at all (lo, bridges, veth, ifb) are virtual and not listed.
 */
static void scan_sysfs_class(struct hw_topology *topo, const char *class_dir, enum hw_device_kind kind)
{
	struct dirent **names;
	int n = list_dir(class_dir, &names);

	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;
		char link[PATH_MAX];
		struct hw_device *d;

		if (name[0] == '.' || find_device(topo, kind, name))
			continue;
		snprintf(link, sizeof(link), "%s/%s/device", class_dir, name);
		if (kind == HW_DEV_NET && access(link, F_OK) != 0)
			continue;
		d = add_device(topo, kind, name);
		if (!d)
			continue;
		pci_addr_of_path(link, d->pci_addr, sizeof(d->pci_addr));
		d->numa_node = pci_numa_node(d->pci_addr);
		if (d->numa_node >= 0 && !has_node(topo, d->numa_node))
			d->numa_node = -1;
	}
	if (n >= 0)
		free_names(names, n);
}

/* First entry of a directory into @p out; -1 if none. */
static int first_entry(const char *dir, char *out, size_t size)
{
	struct dirent **names;
	int n = list_dir(dir, &names), found = -1;

	for (int i = 0; i < n && found < 0; i++)
		if (names[i]->d_name[0] != '.') {
			copy_str(out, size, names[i]->d_name);
			found = 0;
		}
	if (n >= 0)
		free_names(names, n);
	return found;
}

/* The net device an RDMA device carries traffic through, if sysfs says. */
static void rdma_netdev(const struct hw_topology *topo, const struct hw_device *d, char *out, size_t size)
{
	char path[PATH_MAX];
	struct dirent **ports;
	int n;

	out[0] = '\0';
	/* PCI RDMA NICs (mlx5, bnxt_re, ...): the net devices of the same function. */
	snprintf(path, sizeof(path), SYS_IB "/%s/device/net", d->name);
	if (first_entry(path, out, size) == 0)
		return;
	/* RoCE (including rxe): the netdev behind the port's GIDs. */
	snprintf(path, sizeof(path), SYS_IB "/%s/ports", d->name);
	n = list_dir(path, &ports);
	for (int i = 0; i < n && !out[0]; i++) {
		struct dirent **ndevs;
		char dir[PATH_MAX];
		int m;

		if (ports[i]->d_name[0] == '.')
			continue;
		snprintf(dir, sizeof(dir), SYS_IB "/%s/ports/%s/gid_attrs/ndevs", d->name, ports[i]->d_name);
		m = list_dir(dir, &ndevs);
		for (int j = 0; j < m && !out[0]; j++) {
			char file[PATH_MAX + sizeof(ndevs[j]->d_name) + 1];

			if (ndevs[j]->d_name[0] == '.')
				continue;
			snprintf(file, sizeof(file), "%s/%s", dir, ndevs[j]->d_name);
			/* Unused GID entries fail to read (EINVAL): skip them. */
			if (read_line(file, out, size) != 0)
				out[0] = '\0';
		}
		if (m >= 0)
			free_names(ndevs, m);
	}
	if (n >= 0)
		free_names(ports, n);
	if (out[0] || !d->pci_addr[0])
		return;
	/* Last resort: a net device on the same PCI function. */
	for (int i = 0; i < topo->ndevices; i++)
		if (topo->devices[i].kind == HW_DEV_NET && strcmp(topo->devices[i].pci_addr, d->pci_addr) == 0) {
			copy_str(out, size, topo->devices[i].name);
			return;
		}
}

/* Does interface label @p label (possibly "eth0:1") belong to @p name? */
static int label_is(const char *label, const char *name)
{
	size_t len = strlen(name);

	return strncmp(label, name, len) == 0 && (label[len] == '\0' || label[len] == ':');
}

static void fill_ipv4(struct hw_topology *topo)
{
	struct ifaddrs *ifs, *ifa;

	if (getifaddrs(&ifs) != 0) {
		LOG_WARN("hwconfig: getifaddrs: %s; IPv4 addresses unknown", strerror(errno));
		return;
	}
	for (int i = 0; i < topo->ndevices; i++) {
		struct hw_device *d = &topo->devices[i];

		if (d->kind != HW_DEV_NET)
			continue;
		for (ifa = ifs; ifa && !d->ipv4[0]; ifa = ifa->ifa_next) {
			const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)ifa->ifa_addr;

			if (ifa->ifa_addr && ifa->ifa_addr->sa_family == AF_INET && label_is(ifa->ifa_name, d->name))
				inet_ntop(AF_INET, &sin->sin_addr, d->ipv4, sizeof(d->ipv4));
		}
	}
	freeifaddrs(ifs);
}

static void load_devices(struct hw_topology *topo, hwloc_topology_t t)
{
	load_hwloc_devices(topo, t);
	scan_sysfs_class(topo, SYS_NET, HW_DEV_NET);
	scan_sysfs_class(topo, SYS_IB, HW_DEV_RDMA);
	for (int i = 0; i < topo->ndevices; i++) {
		struct hw_device *d = &topo->devices[i];

		if (d->kind != HW_DEV_RDMA)
			continue;
		rdma_netdev(topo, d, d->netdev, sizeof(d->netdev));
		if (d->numa_node < 0 && d->netdev[0]) {
			/* A software RDMA device lives where its net device lives. */
			struct hw_device *nd = find_device(topo, HW_DEV_NET, d->netdev);

			if (nd)
				d->numa_node = nd->numa_node;
		}
	}
	fill_ipv4(topo);
}

int hw_topology_load(struct hw_topology *topo, struct ferry_err *err)
{
	hwloc_topology_t t;
	long page;

	memset(topo, 0, sizeof(*topo));
	if (hwloc_topology_init(&t) != 0) {
		int e = errno ? errno : ENOMEM;

		return ferry_err_set(err, e, "hwloc: cannot initialize a topology: %s", strerror(e));
	}
	if (hwloc_topology_set_io_types_filter(t, HWLOC_TYPE_FILTER_KEEP_IMPORTANT) != 0 ||
	    hwloc_topology_load(t) != 0) {
		int e = errno ? errno : EIO;

		hwloc_topology_destroy(t);
		return ferry_err_set(err, e, "hwloc: cannot discover the machine topology: %s", strerror(e));
	}
	topo->hwloc = t;
	page = sysconf(_SC_PAGESIZE);
	topo->page_size = page > 0 ? (size_t)page : 4096;
	topo->hugepage_size = default_hugepage_size();
	load_nodes(topo, t);
	load_cores(topo, t);
	load_devices(topo, t);
	LOG_DEBUG("hwconfig: %d NUMA node(s), %d core(s), %d CPU(s), %d network/RDMA device(s)",
		  topo->nnodes, topo->ncores, topo->npus, topo->ndevices);
	return 0;
}

void hw_topology_free(struct hw_topology *topo)
{
	if (topo && topo->hwloc) {
		hwloc_topology_destroy((hwloc_topology_t)topo->hwloc);
		topo->hwloc = NULL;
	}
}
