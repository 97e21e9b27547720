#!/bin/sh
# The ferry-wake topology, in network namespaces of its own (never the root ns):
#
#   ${P}client: c0 10.99.0.10/24  ---+
#   ${P}acc:    acc0 (no IP; DPDK  ---+--- br0 in ${P}br (ports pc, pa, pv)
#               net_af_packet)        |
#   ${P}vm:     vm0 (VM MAC; no IP ---+
#               while "hibernated")
#
#   rig.sh up     build it (idempotent: a half-built rig is torn down first)
#   rig.sh down   remove it (idempotent)
#   rig.sh check  exit 77 when network namespaces cannot be created here
#
# P defaults to "fw-" (FERRY_WAKE_RIG_PREFIX). Addresses only in 10.99.0.0/24.
set -eu

P=${FERRY_WAKE_RIG_PREFIX:-fw-}
CLIENT_MAC=02:99:00:00:00:10
ACC_MAC=02:99:00:00:00:0a
VM_MAC=02:99:00:00:00:20

ns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$1"; }

down() {
	for ns in "${P}client" "${P}acc" "${P}vm" "${P}br"; do
		if ns_exists "$ns"; then
			# Processes left in the namespace (ferry-wake, echo servers) go with it.
			for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
			ip netns del "$ns" 2>/dev/null || true
		fi
	done
}

check() {
	if [ "$(id -u)" -ne 0 ]; then
		echo "SKIP: the wake rig needs root (network namespaces, raw sockets)"
		exit 77
	fi
	if ! ip netns add "${P}probe" 2>/dev/null; then
		echo "SKIP: 'ip netns add' is not permitted here"
		exit 77
	fi
	ip netns del "${P}probe"
}

up() {
	check
	down
	ip netns add "${P}br"
	ip netns add "${P}client"
	ip netns add "${P}acc"
	ip netns add "${P}vm"
	for ns in "${P}br" "${P}client" "${P}acc" "${P}vm"; do
		ip -n "$ns" link set lo up
		ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
	done
	ip -n "${P}br" link add br0 type bridge stp_state 0
	ip -n "${P}br" link set br0 up
	# veth pairs: one end in the bridge namespace (port), one in the node's.
	ip link add pc netns "${P}br" type veth peer name c0 netns "${P}client"
	ip link add pa netns "${P}br" type veth peer name acc0 netns "${P}acc"
	ip link add pv netns "${P}br" type veth peer name vm0 netns "${P}vm"
	for port in pc pa pv; do
		ip -n "${P}br" link set "$port" master br0
		ip -n "${P}br" link set "$port" up
	done
	ip -n "${P}client" link set c0 address "$CLIENT_MAC"
	ip -n "${P}client" addr add 10.99.0.10/24 dev c0
	ip -n "${P}client" link set c0 up
	ip -n "${P}acc" link set acc0 address "$ACC_MAC"
	ip -n "${P}acc" link set acc0 up
	# The VM's interface is up with its MAC but no IP: a hibernated VM answers nothing.
	ip -n "${P}vm" link set vm0 address "$VM_MAC"
	ip -n "${P}vm" link set vm0 up
	# TX checksum offload stays ON on c0 (the default): the SYNs ferry-wake
	# captures carry partial checksums, which it must complete.
}

case "${1:-}" in
up) up ;;
down) down ;;
check) check ;;
*) echo "usage: $0 up|down|check" >&2; exit 2 ;;
esac
