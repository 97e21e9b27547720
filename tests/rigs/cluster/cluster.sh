#!/bin/sh
# shellcheck disable=SC2015  # die exits, so "a && b || die" is what it reads as
# A Ferry cluster on one machine: each host is a network namespace, joined to a
# bridge that lives in a namespace of its own (never the root one), every link
# shaped with tc htb in both directions (there is no netem here).
#
#   ${P}h1: eth0 10.77.0.1/24 ---+
#   ${P}h2: eth0 10.77.0.2/24 ---+--- br0 in ${P}br (ports p1, p2, ... pN)
#   ...                          |
#   ${P}hN: eth0 10.77.0.N/24 ---+
#
#   cluster.sh up N [--rate RATE] [--prefix P]   build it (a leftover rig is removed first)
#   cluster.sh down [--prefix P]                 remove it (a no-op when nothing exists)
#   cluster.sh status [--prefix P]               hosts, addresses, each link's qdisc rate
#   cluster.sh exec HOST CMD...                  run CMD in a host's namespace
#   cluster.sh addr HOST                         print a host's IPv4 address
#   cluster.sh check                             exit 77 when namespaces cannot be made here
#
# HOST is hI, I, or the full namespace name ${P}hI. RATE uses tc syntax (1gbit,
# 10gbit, 500mbit, 100kbit, 125mbps; default 1gbit). P defaults to "fcl-"
# (FERRY_CLUSTER_PREFIX). Addresses only in 10.77.0.0/24; N is 1..200.
# Exit status: 0 ok, 1 error, 2 usage, 77 not root / `ip netns add` not permitted.
set -eu

prog=cluster.sh
P=${FERRY_CLUSTER_PREFIX:-fcl-}
RATE=1gbit
SUBNET=10.77.0

die() { echo "$prog: $*" >&2; exit 1; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit 2; }

ns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$1"; }

# The namespaces of this prefix that exist now: ${P}br and ${P}h<digits>.
our_ns() {
	ip netns list 2>/dev/null | awk '{print $1}' | while read -r ns; do
		case "$ns" in
		"${P}br") echo "$ns" ;;
		"${P}h"*)
			rest=${ns#"${P}h"}
			case "$rest" in ''|*[!0-9]*) ;; *) echo "$ns" ;; esac
			;;
		esac
	done
}

# RATE in bits per second (tc units: bit/kbit/mbit/gbit/tbit, bps/kbps/... = bytes,
# the IEC forms kibit/mibit/... too). Prints nothing when RATE does not parse.
rate_bits() {
	echo "$1" | awk '
	{
		s = tolower($0)
		if (!match(s, /^[0-9]+(\.[0-9]+)?/)) exit 1
		n = substr(s, 1, RLENGTH) + 0; u = substr(s, RLENGTH + 1)
		m["bit"] = 1; m["kbit"] = 1e3; m["mbit"] = 1e6; m["gbit"] = 1e9; m["tbit"] = 1e12
		m["kibit"] = 1024; m["mibit"] = 1048576; m["gibit"] = 1073741824; m["tibit"] = 1099511627776
		m["bps"] = 8; m["kbps"] = 8e3; m["mbps"] = 8e6; m["gbps"] = 8e9; m["tbps"] = 8e12
		m["kibps"] = 8192; m["mibps"] = 8388608; m["gibps"] = 8589934592; m["tibps"] = 8796093022208
		if (!(u in m) || n <= 0) exit 1
		printf "%.0f\n", n * m[u]
	}'
}

# Bucket size for RATE: 2 ms at the rate, at least 128 KiB, so that one 64 KiB
# GSO super-packet (veths do TSO/GSO) always fits and the shaper never stalls on it.
burst_bytes() {
	awk -v b="$1" 'BEGIN { x = b / 8 * 0.002; if (x < 131072) x = 131072; printf "%.0f\n", x }'
}

check() {
	if [ "$(id -u)" -ne 0 ]; then
		echo "SKIP: the cluster rig needs root (network namespaces, tc)"
		exit 77
	fi
	command -v ip >/dev/null 2>&1 || { echo "SKIP: no 'ip' (iproute2) here"; exit 77; }
	command -v tc >/dev/null 2>&1 || { echo "SKIP: no 'tc' (iproute2) here"; exit 77; }
	if ns_exists "${P}probe"; then ip netns del "${P}probe" 2>/dev/null || true; fi
	if ! ip netns add "${P}probe" 2>/dev/null; then
		echo "SKIP: 'ip netns add' is not permitted here"
		exit 77
	fi
	ip netns del "${P}probe"
}

down() {
	for ns in $(our_ns); do
		# Processes left in a namespace (servers of a crashed test) go with it.
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
	done
	for ns in $(our_ns); do
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			[ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && break
			sleep 0.1
		done
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
		# Deleting the bridge namespace takes the bridge and every veth pair with it.
		ip netns del "$ns" 2>/dev/null || die "cannot delete namespace $ns"
	done
	if ns_exists "${P}probe"; then ip netns del "${P}probe" 2>/dev/null || true; fi
}

# shape NS DEV: htb root, one class at RATE (rate = ceil), bucket from burst_bytes.
# Its leaf is htb's default pfifo (limit = txqueuelen, 1000 on a veth); this kernel
# has htb, tbf and pfifo but no fq_codel, sfq, fq or netem.
shape() {
	ip netns exec "$1" tc qdisc replace dev "$2" root handle 1: htb default 10
	ip netns exec "$1" tc class replace dev "$2" parent 1: classid 1:10 htb \
		rate "$RATE" ceil "$RATE" burst "$BURST" cburst "$BURST" quantum 65536
}

# The EXIT trap while `up` builds: a failure removes whatever was made.
up_failed() {
	st=$?
	trap - EXIT
	if [ "$st" -ne 0 ]; then
		echo "$prog: up failed; removing the partial rig" >&2
		down
	fi
	exit "$st"
}

up() {
	n=$1
	case "$n" in ''|*[!0-9]*) die "up: N must be a number (1..200), not '$n'" ;; esac
	[ "$n" -ge 1 ] && [ "$n" -le 200 ] || die "up: N must be 1..200"
	bits=$(rate_bits "$RATE") || true
	[ -n "$bits" ] || die "up: rate '$RATE' is not tc rate syntax (e.g. 1gbit, 500mbit)"
	BURST=$(burst_bytes "$bits")
	check >/dev/null || exit $?
	down
	# Anything that fails from here leaves no half-built rig behind.
	trap up_failed EXIT
	br="${P}br"
	ip netns add "$br"
	ip -n "$br" link set lo up
	ip netns exec "$br" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
	ip -n "$br" link add br0 type bridge stp_state 0 forward_delay 0
	ip -n "$br" link set br0 up
	i=1
	while [ "$i" -le "$n" ]; do
		h="${P}h$i"
		ip netns add "$h"
		ip -n "$h" link set lo up
		ip netns exec "$h" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
		# The veth pair is made directly in the two namespaces: nothing in the root one.
		ip link add "p$i" netns "$br" type veth peer name eth0 netns "$h"
		ip -n "$br" link set "p$i" master br0
		ip -n "$br" link set "p$i" up
		ip -n "$h" link set eth0 address "$(printf '02:77:00:00:00:%02x' "$i")"
		ip -n "$h" addr add "$SUBNET.$i/24" dev eth0
		ip -n "$h" link set eth0 up
		shape "$h" eth0      # host -> bridge
		shape "$br" "p$i"    # bridge -> host
		i=$((i + 1))
	done
	trap - EXIT
	echo "$prog: $n hosts up (${P}h1..${P}h$n, $SUBNET.1..$SUBNET.$n), every link $RATE each way (htb, burst $BURST B)"
}

# host NAME -> namespace name
host_ns() {
	case "$1" in
	"${P}h"*) ns=$1 ;;
	h*) ns="${P}$1" ;;
	*) ns="${P}h$1" ;;
	esac
	i=${ns#"${P}h"}
	case "$i" in ''|*[!0-9]*) die "no such host '$1' (use hI, I or ${P}hI)" ;; esac
	ns_exists "$ns" || die "host '$1' ($ns) does not exist (is the cluster up?)"
	echo "$ns"
}

link_rate() {
	ip netns exec "$1" tc class show dev "$2" 2>/dev/null |
		awk '/class htb 1:10/ { for (k = 1; k < NF; k++) if ($k == "rate") { print $(k + 1); exit } }'
}

status() {
	list=$(our_ns | grep -v -x "${P}br" | sort -t h -k 2 -n || true)
	if ! ns_exists "${P}br" && [ -z "$list" ]; then
		echo "cluster ${P}: down"
		return 0
	fi
	echo "cluster ${P}: bridge namespace ${P}br$(ns_exists "${P}br" || echo ' (MISSING)')"
	printf '%-12s %-14s %-14s %-14s\n' HOST ADDRESS EGRESS INGRESS
	for ns in $(our_ns | grep -v -x "${P}br" | awk -v p="${P}h" '{ print substr($0, length(p) + 1) }' | sort -n); do
		h="${P}h$ns"
		a=$(ip -n "$h" -4 -o addr show dev eth0 2>/dev/null | awk '{ print $4 }')
		e=$(link_rate "$h" eth0)
		g=$(link_rate "${P}br" "p$ns")
		printf '%-12s %-14s %-14s %-14s\n' "$h" "${a:--}" "${e:-unshaped}" "${g:-unshaped}"
	done
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
up)
	n=""
	while [ $# -gt 0 ]; do
		case "$1" in
		--rate) [ $# -ge 2 ] || die "--rate needs a value"; RATE=$2; shift 2 ;;
		--rate=*) RATE=${1#*=}; shift ;;
		--prefix) [ $# -ge 2 ] || die "--prefix needs a value"; P=$2; shift 2 ;;
		--prefix=*) P=${1#*=}; shift ;;
		-*) die "up: unknown option '$1'" ;;
		*) [ -z "$n" ] || die "up: one N only"; n=$1; shift ;;
		esac
	done
	[ -n "$n" ] || usage
	up "$n"
	;;
down|status)
	while [ $# -gt 0 ]; do
		case "$1" in
		--prefix) [ $# -ge 2 ] || die "--prefix needs a value"; P=$2; shift 2 ;;
		--prefix=*) P=${1#*=}; shift ;;
		*) die "$cmd: unknown argument '$1'" ;;
		esac
	done
	if [ "$cmd" = down ]; then
		[ "$(id -u)" -eq 0 ] || { echo "SKIP: the cluster rig needs root"; exit 77; }
		down
	else
		status
	fi
	;;
exec)
	[ $# -ge 2 ] || usage
	ns=$(host_ns "$1"); shift
	exec ip netns exec "$ns" "$@"
	;;
addr)
	[ $# -eq 1 ] || usage
	ns=$(host_ns "$1")
	echo "$SUBNET.${ns#"${P}h"}"
	;;
check) check ;;
-h|--help|help) usage ;;
*) usage ;;
esac
