/*
 * Placement (hwconfig.h): which NUMA node and polling CPU serve traffic
 * through a device. Works from the loaded topology; getifaddrs and
 * /sys/class/net only to follow an address or a virtual interface (VLAN,
 * bond, bridge) down to the device that carries it.
 */
#include "hwconfig/hwconfig.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/common/ferry_log.h"

#define LOWER_DEPTH 4

/* Copy @p src into @p dst (size @p size), truncating; @p dst is always terminated. */
static void copy_str(char *dst, size_t size, const char *src)
{
	size_t n = strnlen(src, size - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* @p s made printable for a reason string (user input may hold any bytes). */
static void printable(const char *s, char *out, size_t size)
{
	size_t i;

	for (i = 0; s[i] && i + 1 < size; i++)
		out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	out[i] = '\0';
}

static const struct hw_device *find_name(const struct hw_topology *topo, const char *name)
{
	/* Net devices first: a name that is both means the netdev. */
	for (int kind = HW_DEV_NET; kind <= HW_DEV_RDMA; kind++)
		for (int i = 0; i < topo->ndevices; i++)
			if ((int)topo->devices[i].kind == kind && strcmp(topo->devices[i].name, name) == 0)
				return &topo->devices[i];
	return NULL;
}

static const struct hw_device *find_ipv4(const struct hw_topology *topo, struct in_addr ip)
{
	for (int i = 0; i < topo->ndevices; i++) {
		struct in_addr a;

		if (topo->devices[i].kind == HW_DEV_NET && inet_pton(AF_INET, topo->devices[i].ipv4, &a) == 1 &&
		    a.s_addr == ip.s_addr)
			return &topo->devices[i];
	}
	return NULL;
}

/* The interface holding IPv4 address @p ip (secondary addresses included); 0 if none. */
static int iface_of_ipv4(struct in_addr ip, char *out, size_t size)
{
	struct ifaddrs *ifs, *ifa;
	int found = 0;

	if (getifaddrs(&ifs) != 0)
		return 0;
	for (ifa = ifs; ifa && !found; ifa = ifa->ifa_next) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)ifa->ifa_addr;

		if (ifa->ifa_addr && ifa->ifa_addr->sa_family == AF_INET && sin->sin_addr.s_addr == ip.s_addr) {
			printable(ifa->ifa_name, out, size);
			out[strcspn(out, ":")] = '\0'; /* "eth0:1" is a label of eth0 */
			found = 1;
		}
	}
	freeifaddrs(ifs);
	return found;
}

/* First "lower_<dev>" link of a stacked interface (VLAN, bond, bridge, macvlan). */
static int lower_of(const char *ifname, char *out, size_t size)
{
	char path[128];
	struct dirent **names;
	int n, found = 0;

	snprintf(path, sizeof(path), "/sys/class/net/%s", ifname);
	n = scandir(path, &names, NULL, alphasort);
	for (int i = 0; i < n; i++) {
		if (!found && strncmp(names[i]->d_name, "lower_", 6) == 0) {
			copy_str(out, size, names[i]->d_name + 6);
			found = 1;
		}
		free(names[i]);
	}
	if (n >= 0)
		free(names);
	return found;
}

/* The listed device under interface @p ifname, following lower links; NULL if none. */
static const struct hw_device *resolve_iface(const struct hw_topology *topo, const char *ifname)
{
	char cur[IF_NAMESIZE + 1], next[IF_NAMESIZE + 1];

	copy_str(cur, sizeof(cur), ifname);
	for (int depth = 0; depth <= LOWER_DEPTH; depth++) {
		const struct hw_device *d = find_name(topo, cur);

		if (d)
			return d;
		if (!lower_of(cur, next, sizeof(next)))
			return NULL;
		memcpy(cur, next, sizeof(cur));
	}
	return NULL;
}

/* Without a name: the first NIC with an IPv4 address, else the first NIC, else an RDMA device. */
static const struct hw_device *first_nic(const struct hw_topology *topo)
{
	const struct hw_device *net = NULL, *rdma = NULL;

	for (int i = 0; i < topo->ndevices; i++) {
		const struct hw_device *d = &topo->devices[i];

		if (d->kind == HW_DEV_NET && d->ipv4[0])
			return d;
		if (d->kind == HW_DEV_NET && !net)
			net = d;
		if (d->kind == HW_DEV_RDMA && !rdma)
			rdma = d;
	}
	return net ? net : rdma;
}

static int has_node(const struct hw_topology *topo, int node)
{
	for (int i = 0; i < topo->nnodes; i++)
		if (topo->nodes[i].os_index == node)
			return 1;
	return 0;
}

static int core_has_cpu0(const struct hw_core *c)
{
	for (int i = 0; i < c->npus; i++)
		if (c->pus[i] == 0)
			return 1;
	return 0;
}

/*
 * First PU of a core on @p node, avoiding the core of CPU 0 (interrupts and
 * housekeeping land there) when the node has another. *on_node is 0 when the
 * node has no CPUs and the CPU comes from elsewhere.
 */
static int pick_cpu(const struct hw_topology *topo, int node, int *on_node)
{
	const struct hw_core *first = NULL, *best = NULL;

	for (int pass = 0; pass < 2 && !first; pass++) {
		for (int i = 0; i < topo->ncores; i++) {
			const struct hw_core *c = &topo->cores[i];

			if (c->npus <= 0 || (pass == 0 && c->numa_node != node))
				continue;
			if (!first)
				first = c;
			if (!best && !core_has_cpu0(c))
				best = c;
		}
		*on_node = pass == 0;
	}
	if (best)
		return best->pus[0];
	return first ? first->pus[0] : 0;
}

/* Node, CPU and reason for @p dev (NULL: none); @p via says how the input led to it. */
static void finish(const struct hw_topology *topo, const struct hw_device *dev, const char *via,
		   const char *lead, struct hw_placement *pl)
{
	char text[512];
	size_t off = 0;
	int node = -1, on_node;

#define ADD(...) \
	do { \
		if (off < sizeof(text)) \
			off += (size_t)snprintf(text + off, sizeof(text) - off, __VA_ARGS__); \
	} while (0)

	ADD("%s", via);
	if (dev) {
		copy_str(pl->device, sizeof(pl->device), dev->name);
		/* RDMA traffic to an address on this NIC goes through the RDMA device bound to it. */
		if (dev->kind == HW_DEV_RDMA) {
			copy_str(pl->rdma_device, sizeof(pl->rdma_device), dev->name);
		} else {
			for (int i = 0; i < topo->ndevices; i++) {
				const struct hw_device *r = &topo->devices[i];

				if (r->kind == HW_DEV_RDMA && strcmp(r->netdev, dev->name) == 0) {
					copy_str(pl->rdma_device, sizeof(pl->rdma_device), r->name);
					break;
				}
			}
		}
		ADD("%s%s%s", via[0] ? "; " : "", lead, dev->name);
		if (dev->pci_addr[0])
			ADD(" (PCI %s)", dev->pci_addr);
		if (dev->numa_node >= 0 && has_node(topo, dev->numa_node)) {
			node = dev->numa_node;
			ADD(" is on NUMA node %d", node);
		} else if (dev->pci_addr[0]) {
			ADD(" reports no NUMA node");
		} else {
			ADD(" has no PCI device, so no NUMA node");
		}
	}
	if (node < 0) {
		node = has_node(topo, 0) || topo->nnodes == 0 ? 0 : topo->nodes[0].os_index;
		ADD("; using node %d%s", node, topo->nnodes == 1 ? ", the only node" : "");
	}
	pl->numa_node = node;
	pl->poll_cpu = pick_cpu(topo, node, &on_node);
	if (!on_node)
		ADD("; node %d has no CPUs, polling on CPU %d", node, pl->poll_cpu);
#undef ADD
	copy_str(pl->reason, sizeof(pl->reason), text); /* long names: truncated */
	LOG_DEBUG("hwconfig: placement node %d, poll cpu %d, device %s (%s)", pl->numa_node, pl->poll_cpu,
		  pl->device[0] ? pl->device : "none", pl->reason);
}

void hw_place(const struct hw_topology *topo, const char *what, struct hw_placement *pl)
{
	char shown[48], via[160], ifname[IF_NAMESIZE + 1];
	const struct hw_device *dev = NULL;
	struct in_addr ip;

	memset(pl, 0, sizeof(*pl));
	pl->matched = 1;
	via[0] = '\0';
	if (!what || !what[0]) {
		dev = first_nic(topo);
		if (!dev)
			snprintf(via, sizeof(via), "no network or RDMA device found");
		finish(topo, dev, via, "first NIC ", pl);
		return;
	}
	printable(what, shown, sizeof(shown));
	dev = find_name(topo, what);
	if (dev) {
		/* the device itself: nothing to explain */
	} else if (inet_pton(AF_INET, what, &ip) == 1) {
		dev = find_ipv4(topo, ip);
		if (dev) {
			snprintf(via, sizeof(via), "%s is on %s", shown, dev->name);
		} else if (iface_of_ipv4(ip, ifname, sizeof(ifname))) {
			dev = resolve_iface(topo, ifname);
			if (!dev)
				snprintf(via, sizeof(via), "%s is on %s, a virtual interface", shown, ifname);
			else if (strcmp(dev->name, ifname) != 0)
				snprintf(via, sizeof(via), "%s is on %s, over %s", shown, ifname, dev->name);
			else
				snprintf(via, sizeof(via), "%s is on %s", shown, ifname);
		} else {
			pl->matched = 0;
			snprintf(via, sizeof(via), "%s is not an IPv4 address of this host", shown);
		}
	} else if (strlen(what) <= IF_NAMESIZE - 1 && if_nametoindex(what) != 0) {
		dev = resolve_iface(topo, what);
		if (dev)
			snprintf(via, sizeof(via), "%s runs over %s", shown, dev->name);
		else
			snprintf(via, sizeof(via), "%s is a virtual interface", shown);
	} else {
		pl->matched = 0;
		snprintf(via, sizeof(via), "no device, interface or IPv4 address '%s' on this host", shown);
	}
	finish(topo, dev, via, "", pl);
}
