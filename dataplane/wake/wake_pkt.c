/*
 * Frame parsing and building for ferry-wake. See wake_pkt.h.
 */
#include "dataplane/wake/wake_pkt.h"

#include <string.h>

#define ETHERTYPE_IPV4 0x0800u
#define ETHERTYPE_ARP  0x0806u
#define ETHERTYPE_VLAN 0x8100u
#define TCP_FIN 0x01u
#define TCP_SYN 0x02u
#define TCP_RST 0x04u
#define TCP_ACK 0x10u

static inline uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

uint32_t wake_csum_add(uint32_t sum, const uint8_t *p, size_t len)
{
	size_t i;

	for (i = 0; i + 1 < len; i += 2)
		sum += be16(p + i);
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	return sum;
}

uint16_t wake_csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffffu) + (sum >> 16);
	return (uint16_t)sum;
}

static enum wake_pkt_kind classify_arp(const uint8_t *a, size_t avail, struct wake_pkt *out)
{
	if (avail < WAKE_ARP_LEN)
		return WAKE_PKT_OTHER;
	/* htype 1 (Ethernet), ptype IPv4, hlen 6, plen 4, op 1 (request) */
	if (be16(a) != 1 || be16(a + 2) != ETHERTYPE_IPV4 || a[4] != 6 || a[5] != 4 || be16(a + 6) != 1)
		return WAKE_PKT_OTHER;
	memcpy(out->arp_sha, a + 8, 6);
	memcpy(out->arp_spa, a + 14, 4);
	memcpy(out->arp_tpa, a + 24, 4);
	return out->kind = WAKE_PKT_ARP_REQUEST;
}

static enum wake_pkt_kind classify_ipv4(const uint8_t *ip, size_t avail, struct wake_pkt *out)
{
	unsigned int ihl, doff;
	uint16_t total;
	const uint8_t *tcp;
	uint8_t flags;

	if (avail < 20 || (ip[0] >> 4) != 4)
		return WAKE_PKT_OTHER;
	ihl = (ip[0] & 0x0fu) * 4u;
	total = be16(ip + 2);
	if (ihl < 20 || total < ihl || total > avail || ip[9] != 6)
		return WAKE_PKT_OTHER;
	/* Fragments (MF set or offset non-zero) are not SYNs we can replay whole. */
	if (be16(ip + 6) & 0x3fffu)
		return WAKE_PKT_OTHER;
	if ((size_t)total - ihl < 20)
		return WAKE_PKT_OTHER;
	tcp = ip + ihl;
	doff = (tcp[12] >> 4) * 4u;
	if (doff < 20 || doff > (size_t)total - ihl)
		return WAKE_PKT_OTHER;
	flags = tcp[13];
	if ((flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN)) != TCP_SYN)
		return WAKE_PKT_OTHER;
	out->l3_len = (uint16_t)ihl;
	out->ip_total = total;
	memcpy(out->src_ip, ip + 12, 4);
	memcpy(out->dst_ip, ip + 16, 4);
	out->sport = be16(tcp);
	out->dport = be16(tcp + 2);
	out->isn = be32(tcp + 4);
	if (out->sport == 0 || out->dport == 0)
		return WAKE_PKT_OTHER;
	return out->kind = WAKE_PKT_TCP_SYN;
}

enum wake_pkt_kind wake_pkt_classify(const uint8_t *f, size_t len, struct wake_pkt *out)
{
	uint16_t type;
	size_t l2 = WAKE_ETH_LEN;

	out->kind = WAKE_PKT_OTHER;
	if (!f || len < WAKE_ETH_LEN)
		return WAKE_PKT_OTHER;
	type = be16(f + 12);
	if (type == ETHERTYPE_VLAN) {
		if (len < WAKE_ETH_LEN + WAKE_VLAN_LEN)
			return WAKE_PKT_OTHER;
		type = be16(f + 16);
		l2 += WAKE_VLAN_LEN;
	}
	out->l2_len = (uint16_t)l2;
	memcpy(out->src_mac, f + 6, 6);
	if (type == ETHERTYPE_ARP)
		return classify_arp(f + l2, len - l2, out);
	if (type == ETHERTYPE_IPV4)
		return classify_ipv4(f + l2, len - l2, out);
	return WAKE_PKT_OTHER;
}

bool wake_pkt_arp_is_announce(const struct wake_pkt *p)
{
	static const uint8_t zero[4];

	return memcmp(p->arp_spa, p->arp_tpa, 4) == 0 || memcmp(p->arp_spa, zero, 4) == 0;
}

void wake_pkt_arp_reply_inplace(uint8_t *f, const struct wake_pkt *p, const uint8_t mac[6])
{
	uint8_t *a = f + p->l2_len;

	memcpy(f, p->arp_sha, 6);          /* to the requester */
	memcpy(f + 6, mac, 6);
	put_be16(a + 6, 2);                /* reply */
	memcpy(a + 18, p->arp_sha, 6);     /* tha */
	memcpy(a + 24, p->arp_spa, 4);     /* tpa */
	memcpy(a + 8, mac, 6);             /* sha */
	memcpy(a + 14, p->arp_tpa, 4);     /* spa */
}

static size_t build_arp(uint8_t *f, size_t cap, const uint8_t dst[6], const uint8_t mac[6], const uint8_t spa[4],
			const uint8_t tpa[4])
{
	uint8_t *a = f + WAKE_ETH_LEN;

	if (!f || cap < WAKE_MIN_FRAME)
		return 0;
	memset(f, 0, WAKE_MIN_FRAME);
	memcpy(f, dst, 6);
	memcpy(f + 6, mac, 6);
	put_be16(f + 12, ETHERTYPE_ARP);
	put_be16(a, 1);
	put_be16(a + 2, ETHERTYPE_IPV4);
	a[4] = 6;
	a[5] = 4;
	put_be16(a + 6, 1);
	memcpy(a + 8, mac, 6);
	memcpy(a + 14, spa, 4);
	memcpy(a + 24, tpa, 4);           /* tha stays zero */
	return WAKE_MIN_FRAME;
}

size_t wake_pkt_build_garp(uint8_t *f, size_t cap, const uint8_t mac[6], const uint8_t ip[4])
{
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

	return build_arp(f, cap, bcast, mac, ip, ip);
}

size_t wake_pkt_build_arp_request(uint8_t *f, size_t cap, const uint8_t src_mac[6], const uint8_t src_ip[4],
				  const uint8_t target_ip[4])
{
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

	return build_arp(f, cap, bcast, src_mac, src_ip, target_ip);
}

static uint16_t ip_csum(const uint8_t *ip, unsigned int ihl)
{
	uint32_t sum = wake_csum_add(0, ip, 10);

	sum = wake_csum_add(sum, ip + 12, ihl - 12);   /* the checksum field counts as zero */
	return (uint16_t)~wake_csum_fold(sum);
}

static uint16_t tcp_csum(const uint8_t *ip, unsigned int ihl, uint16_t total)
{
	const uint8_t *tcp = ip + ihl;
	uint16_t tcp_len = (uint16_t)(total - ihl);
	uint32_t sum;

	sum = wake_csum_add(0, ip + 12, 8);             /* src, dst */
	sum += 6u + tcp_len;                           /* zero, proto, TCP length */
	sum = wake_csum_add(sum, tcp, 16);
	sum = wake_csum_add(sum, tcp + 18, (size_t)tcp_len - 18);
	return (uint16_t)~wake_csum_fold(sum);
}

/* Verification sums every byte, checksum included: correct means 0xffff (either zero form passes). */
static bool ip_ok(const uint8_t *ip, unsigned int ihl)
{
	return wake_csum_fold(wake_csum_add(0, ip, ihl)) == 0xffffu;
}

static bool tcp_ok(const uint8_t *ip, unsigned int ihl, uint16_t total)
{
	uint16_t tcp_len = (uint16_t)(total - ihl);
	uint32_t sum = wake_csum_add(0, ip + 12, 8) + 6u + tcp_len;

	return wake_csum_fold(wake_csum_add(sum, ip + ihl, tcp_len)) == 0xffffu;
}

bool wake_pkt_checksums_ok(const uint8_t *f, const struct wake_pkt *p)
{
	const uint8_t *ip = f + p->l2_len;

	return ip_ok(ip, p->l3_len) && tcp_ok(ip, p->l3_len, p->ip_total);
}

unsigned int wake_pkt_fix_checksums(uint8_t *f, const struct wake_pkt *p)
{
	uint8_t *ip = f + p->l2_len;
	unsigned int fixed = 0;

	if (!ip_ok(ip, p->l3_len)) {
		put_be16(ip + 10, ip_csum(ip, p->l3_len));
		fixed |= WAKE_FIX_IP;
	}
	if (!tcp_ok(ip, p->l3_len, p->ip_total)) {
		put_be16(ip + p->l3_len + 16, tcp_csum(ip, p->l3_len, p->ip_total));
		fixed |= WAKE_FIX_TCP;
	}
	return fixed;
}
