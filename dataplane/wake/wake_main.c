/*
 * ferry-wake: the accept node of paper 004 (ODRS) as a DPDK application.
 *
 * One port, one RX and one TX queue, a burst loop on one lcore:
 *   - ARP requests for a hibernated VM's IPv4 are answered with the VM's MAC
 *     (only while this node holds the accept-node role);
 *   - TCP SYNs (not SYN-ACKs) to a hibernated VM are stored byte for byte
 *     (checksums completed first when an offload left them partial), once
 *     per connection, and the VM is reported to ferryd (WAKE_REQUEST);
 *   - on VM_RUNNING the stored frames are sent unchanged and the VM leaves
 *     the table; on ROLE_TAKE (and VM_ADD while holding it) every hibernated
 *     VM's MAC is announced with a gratuitous ARP so switches learn this port.
 * The control channel (proto/wake) is served by the control thread
 * (wake_ctl.c), never by the burst loop.
 */
#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_common.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include "dataplane/common/auth.h"
#include "dataplane/common/ferry_err.h"
#include "dataplane/common/ferry_log.h"
#include "dataplane/wake/wake_ctl.h"
#include "dataplane/wake/wake_pkt.h"
#include "dataplane/wake/wake_table.h"

#define BURST        32u
#define TXQ_LEN      64u
#define MAX_EAL_ARGS 64
#define SPIN_POLLS   20000u

struct wake_opts {
	char ctl[256];
	char secret[256];
	char eal[1024];
	uint32_t max_vms;
	uint32_t mbufs;
	uint16_t port;
	unsigned int idle_us;
	bool wake_on_arp;
	bool role;
	char log_level[16];
};

/* Per-lcore state of the burst loop (one lcore runs it: one queue). */
struct wake_lcore {
	struct rte_mbuf *tx[TXQ_LEN];
	uint16_t ntx;
	uint64_t empty_polls;
} __rte_cache_aligned;

struct wake_app {
	struct wake_opts opt;
	struct wake_shared sh;
	struct wake_ctl ctl;
	struct rte_mempool *pool;
	uint16_t port;
	struct wake_lcore lc[RTE_MAX_LCORE];
};

static struct wake_app app;

static void on_signal(int sig)
{
	(void)sig;
	__atomic_store_n(&app.sh.stop, 1, __ATOMIC_RELEASE);
}

/* ---------------------------------------------------------------- TX */

static void tx_flush(struct wake_lcore *lc)
{
	uint16_t sent = 0;

	for (int tries = 0; sent < lc->ntx && tries < 1000; tries++)
		sent += rte_eth_tx_burst(app.port, 0, lc->tx + sent, (uint16_t)(lc->ntx - sent));
	WAKE_INC(app.sh.dp.tx_pkts, sent);
	if (sent < lc->ntx) {
		WAKE_INC(app.sh.dp.tx_dropped, (uint64_t)(lc->ntx - sent));
		rte_pktmbuf_free_bulk(lc->tx + sent, (unsigned int)(lc->ntx - sent));
	}
	lc->ntx = 0;
}

static void tx_queue(struct wake_lcore *lc, struct rte_mbuf *m)
{
	if (lc->ntx == TXQ_LEN)
		tx_flush(lc);
	lc->tx[lc->ntx++] = m;
}

/* A new mbuf holding a copy of @p frame, or NULL. */
static struct rte_mbuf *frame_mbuf(const uint8_t *frame, size_t len)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(app.pool);
	char *p;

	if (!m) {
		WAKE_INC(app.sh.dp.mbuf_alloc_failed, 1);
		return NULL;
	}
	p = rte_pktmbuf_append(m, (uint16_t)len);
	if (!p) {
		rte_pktmbuf_free(m);
		WAKE_INC(app.sh.dp.mbuf_alloc_failed, 1);
		return NULL;
	}
	memcpy(p, frame, len);
	return m;
}

/* ---------------------------------------------------------------- RX */

static void handle_arp(struct wake_lcore *lc, struct rte_mbuf *m, uint8_t *f, const struct wake_pkt *p, bool role)
{
	struct wake_shared *sh = &app.sh;
	struct wake_vm *vm;
	uint8_t mac[6];
	bool ours = false, kick = false;

	WAKE_INC(sh->dp.arp_requests, 1);
	if (wake_pkt_arp_is_announce(p)) {
		/* Gratuitous ARPs and probes (ours looped back, or a VM announcing itself). */
		WAKE_INC(sh->dp.arp_announce_ignored, 1);
		rte_pktmbuf_free(m);
		return;
	}
	if (!role) {
		WAKE_INC(sh->dp.arp_no_role, 1);
		rte_pktmbuf_free(m);
		return;
	}
	pthread_mutex_lock(&sh->lock);
	vm = wake_table_find_ip(&sh->table, p->arp_tpa);
	if (vm && !vm->replay_pending) {
		ours = true;
		memcpy(mac, vm->mac, 6);
		if (sh->wake_on_arp)
			kick = wake_vm_note_access(vm, p, ferry_mono_ns());
	}
	pthread_mutex_unlock(&sh->lock);
	if (kick)
		wake_shared_kick(sh);
	if (!ours) {
		WAKE_INC(sh->dp.arp_not_ours, 1);
		rte_pktmbuf_free(m);
		return;
	}
	wake_pkt_arp_reply_inplace(f, p, mac);
	WAKE_INC(sh->dp.arp_replies, 1);
	tx_queue(lc, m);
}

static void handle_syn(struct rte_mbuf *m, uint8_t *f, size_t len, const struct wake_pkt *p, bool role)
{
	struct wake_shared *sh = &app.sh;
	enum wake_store_result res = WAKE_STORE_FULL;
	struct wake_vm *vm;
	unsigned int fixed = 0;
	bool ours = false, kick = false;
	char id[FERRY_WAKE_VM_ID_MAX + 1];

	WAKE_INC(sh->dp.syn_seen, 1);
	if (!role) {
		WAKE_INC(sh->dp.syn_no_role, 1);
		rte_pktmbuf_free(m);
		return;
	}
	pthread_mutex_lock(&sh->lock);
	vm = wake_table_find_ip(&sh->table, p->dst_ip);
	if (vm && !vm->replay_pending) {
		ours = true;
		/* Replayed as captured, a SYN with a partial (offloaded) checksum is dropped by the VM. */
		fixed = wake_pkt_fix_checksums(f, p);
		res = wake_vm_store_syn(vm, f, len, p);
		kick = wake_vm_note_access(vm, p, ferry_mono_ns());
		memcpy(id, vm->id, sizeof(id));
	}
	pthread_mutex_unlock(&sh->lock);
	rte_pktmbuf_free(m);
	if (!ours) {
		WAKE_INC(sh->dp.rx_other, 1);
		return;
	}
	if (fixed & WAKE_FIX_IP)
		WAKE_INC(sh->dp.cksum_fixed_ip, 1);
	if (fixed & WAKE_FIX_TCP)
		WAKE_INC(sh->dp.cksum_fixed_tcp, 1);
	if (kick)
		wake_shared_kick(sh);
	switch (res) {
	case WAKE_STORE_NEW:
		WAKE_INC(sh->dp.syn_stored, 1);
		LOG_INFO("vm %s: SYN %u.%u.%u.%u:%u -> :%u isn %u stored%s", id, p->src_ip[0], p->src_ip[1],
			 p->src_ip[2], p->src_ip[3], p->sport, p->dport, p->isn,
			 fixed ? " (checksum completed)" : "");
		break;
	case WAKE_STORE_DUP:
		WAKE_INC(sh->dp.syn_dup, 1);
		LOG_DEBUG("vm %s: SYN retransmit from port %u not stored again", id, p->sport);
		break;
	default:
		WAKE_INC(sh->dp.syn_not_stored, 1);
		LOG_WARN("vm %s: SYN from port %u not stored (%s)", id, p->sport,
			 res == WAKE_STORE_TOO_BIG ? "frame too big" : "store full");
		break;
	}
}

/* Control-thread work: announce MACs, replay the SYNs of VMs that run again. */
static void do_pending(struct wake_lcore *lc)
{
	struct wake_shared *sh = &app.sh;
	uint8_t garp[WAKE_MIN_FRAME];
	uint32_t pos = 0;
	struct wake_vm *vm;
	uint64_t announced = 0, replayed = 0;

	pthread_mutex_lock(&sh->lock);
	__atomic_store_n(&sh->pending, 0, __ATOMIC_RELAXED);
	while ((vm = wake_table_next(&sh->table, &pos)) != NULL) {
		if (vm->announce_pending) {
			struct rte_mbuf *m;

			vm->announce_pending = false;
			m = frame_mbuf(garp, wake_pkt_build_garp(garp, sizeof(garp), vm->mac, vm->ip));
			if (m) {
				tx_queue(lc, m);
				announced++;
			}
		}
		if (vm->replay_pending) {
			for (uint8_t i = 0; i < vm->nsyn; i++) {
				struct rte_mbuf *m = frame_mbuf(vm->syn[i].frame, vm->syn[i].len);

				if (m) {
					/*
					 * The Ethernet source becomes this port's MAC: sent with the
					 * client's, the frame would teach the switch that the client sits
					 * behind this port, and the VM's SYN-ACK would come here instead
					 * of reaching the client (seen on a Linux bridge: the client had
					 * to retransmit its SYN a second later). The VM answers by IP (its
					 * ARP cache), not by the frame's source; IP and TCP are unchanged.
					 */
					struct rte_ether_hdr *eh = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);

					rte_eth_macaddr_get(app.port, &eh->src_addr);
					tx_queue(lc, m);
					replayed++;
				}
			}
			LOG_INFO("vm %s: %u SYNs replayed, removed from the table", vm->id, vm->nsyn);
			wake_table_del(&sh->table, vm);
		}
	}
	pthread_mutex_unlock(&sh->lock);
	WAKE_INC(sh->dp.mac_announced, announced);
	WAKE_INC(sh->dp.syn_replayed, replayed);
	if (announced)
		LOG_INFO("announced %llu VM MACs (gratuitous ARP)", (unsigned long long)announced);
}

static int burst_loop(void *arg)
{
	struct wake_lcore *lc = &app.lc[rte_lcore_id() == LCORE_ID_ANY ? 0 : rte_lcore_id()];
	struct wake_shared *sh = &app.sh;
	struct rte_mbuf *rx[BURST];

	(void)arg;
	LOG_INFO("burst loop on lcore %u, port %u", rte_lcore_id(), app.port);
	while (!__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE)) {
		uint16_t n = rte_eth_rx_burst(app.port, 0, rx, BURST);
		bool role = __atomic_load_n(&sh->role, __ATOMIC_ACQUIRE);

		WAKE_INC(sh->dp.rx_pkts, n);
		for (uint16_t i = 0; i < n; i++) {
			struct rte_mbuf *m = rx[i];
			uint8_t *f = rte_pktmbuf_mtod(m, uint8_t *);
			size_t len = rte_pktmbuf_data_len(m);
			struct wake_pkt p;

			if (i + 1 < n)
				rte_prefetch0(rte_pktmbuf_mtod(rx[i + 1], void *));
			/* Chained mbufs are never ARP or bare SYNs of the sizes we keep. */
			switch (m->nb_segs == 1 ? wake_pkt_classify(f, len, &p) : WAKE_PKT_OTHER) {
			case WAKE_PKT_ARP_REQUEST:
				handle_arp(lc, m, f, &p, role);
				break;
			case WAKE_PKT_TCP_SYN:
				handle_syn(m, f, len, &p, role);
				break;
			default:
				WAKE_INC(sh->dp.rx_other, 1);
				rte_pktmbuf_free(m);
				break;
			}
		}
		if (__atomic_load_n(&sh->pending, __ATOMIC_ACQUIRE))
			do_pending(lc);
		if (lc->ntx)
			tx_flush(lc);
		if (n) {
			lc->empty_polls = 0;
		} else if (app.opt.idle_us && ++lc->empty_polls > SPIN_POLLS) {
			/* Idle: give the core back (CI machines have two). */
			usleep(app.opt.idle_us);
		}
	}
	return 0;
}

/* ---------------------------------------------------------------- options */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ferry-wake [options] [-- EAL arguments]\n"
		"\n"
		"The accept node for hibernated VMs (paper 004): answers ARP for them, captures\n"
		"the first SYN of each connection, asks ferryd to wake the VM and replays the\n"
		"SYN once it runs. Driven by ferryd over the control socket (proto/wake.h).\n"
		"\n"
		"  -c, --config FILE     ini file, section [wake]: ctl, secret, eal, max_vms,\n"
		"                        mbufs, port, idle_us, wake_on_arp, role, log_level\n"
		"  -l, --ctl ADDR        control socket: unix:/path or tcp:HOST:PORT\n"
		"                        (default unix:/run/ferry/wake.sock)\n"
		"  -s, --secret FILE     cluster secret (mode 0600), required\n"
		"  -e, --eal ARGS        EAL arguments as one string (or after --)\n"
		"      --max-vms N       hibernated VMs the table holds (default 1024)\n"
		"      --mbufs N         mbuf pool size (default 1023)\n"
		"      --port N          DPDK port id (default: the first available)\n"
		"      --idle-us N       sleep N us when idle after a spin (default 20; 0 = busy poll)\n"
		"      --wake-on-arp     an ARP request for a hibernated VM also wakes it\n"
		"      --role-accept     start holding the accept-node role (default: wait for ROLE_TAKE)\n"
		"      --log-level L     error|warn|info|debug\n"
		"  -h, --help            this text\n"
		"\n"
		"Production (a real NIC, hugepages):  -- -l 2-3 -a 0000:3b:00.0\n"
		"Tests (a veth, no hugepages):        -- -l 1 --no-pci --no-huge -m 32 --no-shconf \\\n"
		"                                        --vdev=net_af_packet0,iface=acc0\n");
}

static bool parse_u32(const char *s, uint32_t max, uint32_t *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v > max)
		return false;
	*out = (uint32_t)v;
	return true;
}

static bool parse_bool(const char *s)
{
	return !strcmp(s, "1") || !strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcasecmp(s, "on");
}

static int set_opt(struct wake_opts *o, const char *key, const char *val)
{
	uint32_t v;

	if (!strcmp(key, "ctl"))
		snprintf(o->ctl, sizeof(o->ctl), "%s", val);
	else if (!strcmp(key, "secret"))
		snprintf(o->secret, sizeof(o->secret), "%s", val);
	else if (!strcmp(key, "eal"))
		snprintf(o->eal, sizeof(o->eal), "%s", val);
	else if (!strcmp(key, "max_vms") && parse_u32(val, 65536, &v) && v)
		o->max_vms = v;
	else if (!strcmp(key, "mbufs") && parse_u32(val, 1u << 20, &v) && v >= 255)
		o->mbufs = v;
	else if (!strcmp(key, "port") && parse_u32(val, RTE_MAX_ETHPORTS - 1, &v))
		o->port = (uint16_t)v;
	else if (!strcmp(key, "idle_us") && parse_u32(val, 100000, &v))
		o->idle_us = v;
	else if (!strcmp(key, "wake_on_arp"))
		o->wake_on_arp = parse_bool(val);
	else if (!strcmp(key, "role"))
		o->role = !strcmp(val, "accept");
	else if (!strcmp(key, "log_level") && ferry_log_parse_level(val) >= 0)
		snprintf(o->log_level, sizeof(o->log_level), "%s", val);
	else
		return -1;
	return 0;
}

static int wake_ini_line(void *user, const char *section, const char *name, const char *value)
{
	if (strcmp(section, "wake") != 0)
		return 1;   /* other programs' sections */
	if (set_opt(user, name, value) < 0) {
		fprintf(stderr, "ferry-wake: config: bad value for %s: %s\n", name, value);
		return 0;
	}
	return 1;
}

enum { OPT_MAX_VMS = 256, OPT_MBUFS, OPT_PORT, OPT_IDLE, OPT_WAKE_ARP, OPT_ROLE, OPT_LOG };

/*
 * Returns the index of the first EAL argument in argv (argc if none), or -1 on
 * a bad flag, -2 for --help, -3 for a bad config file (already reported).
 */
static int parse_args(int argc, char **argv, struct wake_opts *o)
{
	static const struct option longs[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "ctl", required_argument, NULL, 'l' },
		{ "secret", required_argument, NULL, 's' },
		{ "eal", required_argument, NULL, 'e' },
		{ "max-vms", required_argument, NULL, OPT_MAX_VMS },
		{ "mbufs", required_argument, NULL, OPT_MBUFS },
		{ "port", required_argument, NULL, OPT_PORT },
		{ "idle-us", required_argument, NULL, OPT_IDLE },
		{ "wake-on-arp", no_argument, NULL, OPT_WAKE_ARP },
		{ "role-accept", no_argument, NULL, OPT_ROLE },
		{ "log-level", required_argument, NULL, OPT_LOG },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c, rc;

	/* The config file first, so that flags override it. */
	for (int i = 1; i + 1 < argc && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) {
			rc = ini_parse(argv[i + 1], wake_ini_line, o);
			if (rc != 0) {
				if (rc < 0)
					fprintf(stderr, "ferry-wake: config %s: cannot open\n", argv[i + 1]);
				else
					fprintf(stderr, "ferry-wake: config %s: error on line %d\n", argv[i + 1], rc);
				return -3;
			}
		}
	}
	while ((c = getopt_long(argc, argv, "+c:l:s:e:h", longs, NULL)) != -1) {
		const char *key = NULL;

		switch (c) {
		case 'c': continue;
		case 'l': key = "ctl"; break;
		case 's': key = "secret"; break;
		case 'e': key = "eal"; break;
		case OPT_MAX_VMS: key = "max_vms"; break;
		case OPT_MBUFS: key = "mbufs"; break;
		case OPT_PORT: key = "port"; break;
		case OPT_IDLE: key = "idle_us"; break;
		case OPT_WAKE_ARP: o->wake_on_arp = true; continue;
		case OPT_ROLE: o->role = true; continue;
		case OPT_LOG: key = "log_level"; break;
		case 'h': return -2;
		default: return -1;
		}
		if (set_opt(o, key, optarg) < 0) {
			fprintf(stderr, "ferry-wake: bad value for --%s: %s\n", key, optarg);
			return -1;
		}
	}
	return optind;
}

/* argv for rte_eal_init: argv[0], then either the args after -- or the eal string split on blanks. */
static int build_eal_argv(int argc, char **argv, int first, struct wake_opts *o, char **eal_argv)
{
	int n = 0;

	eal_argv[n++] = argv[0];
	if (first < argc) {
		for (int i = first; i < argc && n < MAX_EAL_ARGS; i++)
			eal_argv[n++] = argv[i];
		/* Keep a copy for messages. */
		o->eal[0] = '\0';
		for (int i = first; i < argc; i++) {
			size_t l = strlen(o->eal);

			snprintf(o->eal + l, sizeof(o->eal) - l, "%s%s", l ? " " : "", argv[i]);
		}
	} else {
		static char copy[sizeof(o->eal)];
		char *save = NULL, *tok;

		snprintf(copy, sizeof(copy), "%s", o->eal);
		for (tok = strtok_r(copy, " \t", &save); tok && n < MAX_EAL_ARGS; tok = strtok_r(NULL, " \t", &save))
			eal_argv[n++] = tok;
	}
	eal_argv[n] = NULL;
	return n;
}

/* "iface=acc0" out of the EAL arguments, for the no-port message. */
static void find_iface(const char *eal, char *out, size_t n)
{
	const char *p = strstr(eal, "iface=");
	size_t len;

	if (!p) {
		snprintf(out, n, "(none given)");
		return;
	}
	p += 6;
	len = strcspn(p, ", \t");
	snprintf(out, n, "%.*s", (int)len, p);
}

static int port_init(uint16_t port, struct ferry_err *err)
{
	struct rte_eth_conf conf;
	struct rte_eth_dev_info info;
	uint16_t nb_rxd = 512, nb_txd = 512;
	int socket = rte_eth_dev_socket_id(port), rc;

	memset(&conf, 0, sizeof(conf));
	rc = rte_eth_dev_info_get(port, &info);
	if (rc < 0)
		return ferry_err_set(err, -rc, "port %u: dev_info: %s", port, rte_strerror(-rc));
	rc = rte_eth_dev_configure(port, 1, 1, &conf);
	if (rc < 0)
		return ferry_err_set(err, -rc, "port %u (%s): configure: %s", port, info.driver_name, rte_strerror(-rc));
	rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, &nb_rxd, &nb_txd);
	if (rc < 0)
		return ferry_err_set(err, -rc, "port %u: descriptors: %s", port, rte_strerror(-rc));
	rc = rte_eth_rx_queue_setup(port, 0, nb_rxd, socket < 0 ? 0 : (unsigned int)socket, NULL, app.pool);
	if (rc < 0)
		return ferry_err_set(err, -rc, "port %u: rx queue: %s", port, rte_strerror(-rc));
	rc = rte_eth_tx_queue_setup(port, 0, nb_txd, socket < 0 ? 0 : (unsigned int)socket, NULL);
	if (rc < 0)
		return ferry_err_set(err, -rc, "port %u: tx queue: %s", port, rte_strerror(-rc));
	rc = rte_eth_dev_start(port);
	if (rc < 0)
		return ferry_err_set(err, -rc, "port %u: start: %s", port, rte_strerror(-rc));
	/* Frames for the VMs' MACs are not addressed to the port's own MAC. */
	rc = rte_eth_promiscuous_enable(port);
	if (rc < 0)
		LOG_WARN("port %u: promiscuous mode: %s (frames to VM MACs may be missed)", port, rte_strerror(-rc));
	LOG_INFO("port %u up: driver %s, %u rx / %u tx descriptors", port, info.driver_name, nb_rxd, nb_txd);
	return 0;
}

static void *ctl_thread(void *arg)
{
	(void)arg;
	wake_ctl_run(&app.ctl);
	return NULL;
}

static void log_summary(void)
{
	struct wake_shared *sh = &app.sh;

	LOG_INFO("stopped: rx %llu tx %llu arp_replies %llu syn_stored %llu syn_dup %llu syn_replayed %llu "
		 "cksum_fixed_tcp %llu mac_announced %llu wake_requests %llu ctl_errors %llu",
		 (unsigned long long)sh->dp.rx_pkts, (unsigned long long)sh->dp.tx_pkts,
		 (unsigned long long)sh->dp.arp_replies, (unsigned long long)sh->dp.syn_stored,
		 (unsigned long long)sh->dp.syn_dup, (unsigned long long)sh->dp.syn_replayed,
		 (unsigned long long)sh->dp.cksum_fixed_tcp, (unsigned long long)sh->dp.mac_announced,
		 (unsigned long long)sh->ctl.wake_requests_sent, (unsigned long long)sh->ctl.ctl_errors_sent);
}

int main(int argc, char **argv)
{
	struct wake_opts *o = &app.opt;
	struct ferry_secret secret;
	struct ferry_err err = { 0 };
	char *eal_argv[MAX_EAL_ARGS + 2];
	char iface[64];
	struct sigaction sa;
	pthread_t ctl_tid;
	bool ctl_in_thread;
	unsigned int worker = RTE_MAX_LCORE;
	int first, rc, status = 1;

	ferry_log_set_component("wake");
	o->max_vms = 1024;
	o->mbufs = 1023;
	o->port = UINT16_MAX;
	o->idle_us = 20;
	snprintf(o->ctl, sizeof(o->ctl), "unix:/run/ferry/wake.sock");
	first = parse_args(argc, argv, o);
	if (first == -2) {
		usage(stdout);
		return 0;
	}
	if (first < 0) {
		if (first == -1)
			usage(stderr);
		return 2;
	}
	if (o->log_level[0])
		ferry_log_set_level((enum ferry_log_level)ferry_log_parse_level(o->log_level));
	if (!o->secret[0]) {
		fprintf(stderr, "ferry-wake: --secret FILE is required (the cluster secret)\n");
		return 2;
	}
	if (ferry_auth_init(&err) < 0 || ferry_secret_load(o->secret, &secret, &err) < 0) {
		LOG_ERR("%s", err.msg);
		return 1;
	}
	if (wake_shared_init(&app.sh, o->max_vms, &err) < 0) {
		LOG_ERR("%s", err.msg);
		return 1;
	}
	app.sh.wake_on_arp = o->wake_on_arp;
	app.sh.role = o->role;
	if (wake_ctl_open(&app.ctl, o->ctl, &secret, &app.sh, &err) < 0) {
		LOG_ERR("%s", err.msg);
		goto out_shared;
	}

	build_eal_argv(argc, argv, first, o, eal_argv);
	find_iface(o->eal, iface, sizeof(iface));
	{
		int eal_argc = 0;

		while (eal_argv[eal_argc])
			eal_argc++;
		rc = rte_eal_init(eal_argc, eal_argv);
	}
	if (rc < 0) {
		LOG_ERR("EAL init failed: %s (EAL args: %s)", rte_strerror(rte_errno), o->eal[0] ? o->eal : "(none)");
		goto out_ctl;
	}
	/* EAL init may have taken SIGINT over; ours decides shutdown. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (rte_eth_dev_count_avail() == 0) {
		LOG_ERR("no DPDK port: is iface %s present (in this network namespace)? vdev args: %s", iface,
			o->eal[0] ? o->eal : "(none)");
		goto out_eal;
	}
	if (o->port == UINT16_MAX) {
		uint16_t pid;

		RTE_ETH_FOREACH_DEV(pid) {
			app.port = pid;
			break;
		}
	} else if (!rte_eth_dev_is_valid_port(o->port)) {
		LOG_ERR("no DPDK port %u (%u available); vdev args: %s", o->port, rte_eth_dev_count_avail(), o->eal);
		goto out_eal;
	} else {
		app.port = o->port;
	}
	app.pool = rte_pktmbuf_pool_create("wake_mbufs", o->mbufs, 32, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
					   (int)rte_socket_id());
	if (!app.pool) {
		LOG_ERR("mbuf pool of %u: %s (raise EAL -m)", o->mbufs, rte_strerror(rte_errno));
		goto out_eal;
	}
	if (port_init(app.port, &err) < 0) {
		LOG_ERR("%s", err.msg);
		goto out_eal;
	}

	/*
	 * The burst loop runs on the first worker lcore when there is one and
	 * the control server on the main lcore; with a single lcore (tests:
	 * -l 1) the burst loop keeps the main lcore and the control server
	 * gets a plain thread.
	 */
	worker = rte_get_next_lcore(-1, 1, 0);
	ctl_in_thread = worker >= RTE_MAX_LCORE;
	LOG_INFO("ferry-wake up: port %u, control %s, %u VMs max, role %s, wake on ARP %s", app.port,
		 app.ctl.listen_desc, o->max_vms, o->role ? "accept" : "standby", o->wake_on_arp ? "yes" : "no");
	if (ctl_in_thread) {
		rc = pthread_create(&ctl_tid, NULL, ctl_thread, NULL);
		if (rc != 0) {
			LOG_ERR("control thread: %s", strerror(rc));
			goto out_port;
		}
		burst_loop(NULL);
		pthread_join(ctl_tid, NULL);
	} else {
		rte_eal_remote_launch(burst_loop, NULL, worker);
		wake_ctl_run(&app.ctl);
		rte_eal_mp_wait_lcore();
	}
	status = 0;
	log_summary();
out_port:
	rte_eth_dev_stop(app.port);
	rte_eth_dev_close(app.port);
out_eal:
	rte_eal_cleanup();
out_ctl:
	wake_ctl_close(&app.ctl);
out_shared:
	ferry_secret_wipe(&secret);
	wake_shared_fini(&app.sh);
	return status;
}
