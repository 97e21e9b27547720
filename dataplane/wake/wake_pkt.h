/**
 * @file wake_pkt.h
 * Ethernet frames ferry-wake reads and writes: ARP requests/replies, TCP SYNs,
 * gratuitous ARPs. Pure byte work on contiguous frames (no DPDK), so that it
 * is unit-tested without a NIC. Frames are Ethernet II, optionally with one
 * 802.1Q tag; IPv4 only.
 */
#ifndef FERRY_WAKE_PKT_H
#define FERRY_WAKE_PKT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WAKE_ETH_LEN      14u
#define WAKE_VLAN_LEN     4u
#define WAKE_ARP_LEN      28u
#define WAKE_MIN_FRAME    60u      /**< Ethernet minimum without FCS */

enum wake_pkt_kind {
	WAKE_PKT_OTHER = 0,
	WAKE_PKT_ARP_REQUEST,          /**< ARP request (IPv4 over Ethernet) */
	WAKE_PKT_TCP_SYN,              /**< TCP with SYN set and ACK clear, IPv4, not a fragment */
};

/** What classification found. Addresses are in network order. */
struct wake_pkt {
	enum wake_pkt_kind kind;
	uint16_t l2_len;               /**< 14 or 18 */
	uint8_t src_mac[6];
	/* ARP */
	uint8_t arp_sha[6];
	uint8_t arp_spa[4], arp_tpa[4];
	/* SYN */
	uint16_t l3_len;               /**< IPv4 header bytes */
	uint16_t ip_total;             /**< IPv4 total length */
	uint8_t src_ip[4], dst_ip[4];
	uint16_t sport, dport;         /**< host order */
	uint32_t isn;                  /**< host order */
};

/** Classify @p f[0..len). Never reads past @p len. */
enum wake_pkt_kind wake_pkt_classify(const uint8_t *f, size_t len, struct wake_pkt *out);

/** True when an ARP request is gratuitous (sender IP == target IP) or an ARP probe (sender IP 0). */
bool wake_pkt_arp_is_announce(const struct wake_pkt *p);

/**
 * Turn the ARP request @p f (classified as @p p) into the reply "tpa is at
 * @p mac", in place: Ethernet to the requester from @p mac, opcode 2,
 * sha/spa = mac/tpa, tha/tpa = the requester's.
 */
void wake_pkt_arp_reply_inplace(uint8_t *f, const struct wake_pkt *p, const uint8_t mac[6]);

/**
 * Write a gratuitous ARP request "ip is at mac" (Ethernet source @p mac,
 * broadcast) into @p f: returns its length (WAKE_MIN_FRAME) or 0 if @p cap is
 * too small. Switches learn @p mac on the port it leaves by.
 */
size_t wake_pkt_build_garp(uint8_t *f, size_t cap, const uint8_t mac[6], const uint8_t ip[4]);

/** An ARP request from @p src_mac/@p src_ip for @p target_ip (tests and the rig). */
size_t wake_pkt_build_arp_request(uint8_t *f, size_t cap, const uint8_t src_mac[6], const uint8_t src_ip[4],
				  const uint8_t target_ip[4]);

/** Internet checksum (RFC 1071) of @p len bytes folded into @p sum, not complemented. */
uint32_t wake_csum_add(uint32_t sum, const uint8_t *p, size_t len);
uint16_t wake_csum_fold(uint32_t sum);

#define WAKE_FIX_IP   0x1
#define WAKE_FIX_TCP  0x2

/**
 * Verify the IPv4 header and TCP checksums of the SYN @p f (classified as
 * @p p) and, where wrong (e.g. left partial by a NIC/veth checksum offload),
 * write the correct value. Returns a mask of WAKE_FIX_* fixed.
 */
unsigned int wake_pkt_fix_checksums(uint8_t *f, const struct wake_pkt *p);

/** True when both checksums of the SYN are correct. */
bool wake_pkt_checksums_ok(const uint8_t *f, const struct wake_pkt *p);

#endif /* FERRY_WAKE_PKT_H */
