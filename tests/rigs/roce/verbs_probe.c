/* verbs_probe: the smallest host-compiled verbs program the RoCE rig runs in its guest.
 *
 * Opens the first RDMA device, queries port 1, allocates a protection domain, registers a
 * 1 MiB buffer for local write and remote read/write, and prints what it got. Exits 0 only
 * if every step succeeded and the port is ACTIVE.
 *
 * Build: cc -O2 -Wall -std=c17 -o verbs_probe verbs_probe.c -libverbs
 */
#include <infiniband/verbs.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *port_state(enum ibv_port_state s)
{
	switch (s) {
	case IBV_PORT_NOP: return "PORT_NOP";
	case IBV_PORT_DOWN: return "PORT_DOWN";
	case IBV_PORT_INIT: return "PORT_INIT";
	case IBV_PORT_ARMED: return "PORT_ARMED";
	case IBV_PORT_ACTIVE: return "PORT_ACTIVE";
	case IBV_PORT_ACTIVE_DEFER: return "PORT_ACTIVE_DEFER";
	}
	return "PORT_UNKNOWN";
}

int main(void)
{
	int num = 0, rc = 1;
	struct ibv_device **list = ibv_get_device_list(&num);
	struct ibv_context *ctx = NULL;
	struct ibv_pd *pd = NULL;
	struct ibv_mr *mr = NULL;
	void *buf = NULL;
	const size_t len = 1 << 20;

	if (!list || num == 0) {
		fprintf(stderr, "verbs_probe: no RDMA device (%s)\n", list ? "none listed" : strerror(errno));
		goto out;
	}
	ctx = ibv_open_device(list[0]);
	if (!ctx) {
		fprintf(stderr, "verbs_probe: ibv_open_device(%s): %s\n", ibv_get_device_name(list[0]),
			strerror(errno));
		goto out;
	}
	struct ibv_port_attr port;
	int err = ibv_query_port(ctx, 1, &port);
	if (err) {
		fprintf(stderr, "verbs_probe: ibv_query_port: %s\n", strerror(err));
		goto out;
	}
	pd = ibv_alloc_pd(ctx);
	if (!pd) {
		fprintf(stderr, "verbs_probe: ibv_alloc_pd: %s\n", strerror(errno));
		goto out;
	}
	buf = calloc(1, len);
	if (!buf) {
		fprintf(stderr, "verbs_probe: calloc: out of memory\n");
		goto out;
	}
	mr = ibv_reg_mr(pd, buf, len,
			IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE);
	if (!mr) {
		fprintf(stderr, "verbs_probe: ibv_reg_mr: %s\n", strerror(errno));
		goto out;
	}
	printf("device=%s devices=%d port=1 port_state=%s link_layer=%s active_mtu=%d lkey=0x%x rkey=0x%x mr_len=%zu\n",
	       ibv_get_device_name(list[0]), num, port_state(port.state),
	       port.link_layer == IBV_LINK_LAYER_ETHERNET ? "Ethernet" : "InfiniBand",
	       128 << port.active_mtu, mr->lkey, mr->rkey, len);
	rc = port.state == IBV_PORT_ACTIVE ? 0 : 2;
	if (rc)
		fprintf(stderr, "verbs_probe: port 1 is not ACTIVE\n");
out:
	if (mr)
		ibv_dereg_mr(mr);
	free(buf);
	if (pd)
		ibv_dealloc_pd(pd);
	if (ctx)
		ibv_close_device(ctx);
	if (list)
		ibv_free_device_list(list);
	return rc;
}
