#!/bin/bash
# tests/rigs/vm/wake-e2e.sh BUILD_DIR CASE — issue 6 end to end with real parts: a QEMU (TCG)
# guest on the VM rig's bridge, ferryd(s) driving the hibernation library (ctrl/hib.h) from their
# worker thread, ferry-wake (DPDK net_af_packet) supervised by ferryd on a veth in the same
# bridge (checksum offload left ON), ferry-memsrv holding the images, a client namespace.
#
#   wake    one node, images in the pool (ferry-memsrv): ARP for the running VM answered by the
#           VM alone; `ferryctl hibernate`; the bridge forwards the VM's MAC to ferry-wake's port;
#           ARP answered by ferry-wake for the hibernated VM; a client's new connection gets its
#           echo with no error (and no SYN retransmission: printed, timed); a connection held
#           open across hibernate/resume survives; a SYN flood to the hibernated VM -> one wake,
#           stored SYNs bounded (16), ferry-wake's memory unchanged
#   nodes   two nodes (two ferryds in two namespaces, each with its ferry-wake), images kept in
#           the pool (KEEP/CLAIM: any node claims them): the accept role moves between them and
#           the bridge's forwarding table follows it; a resume asked of the old holder lands and
#           the new holder's ferry-wake hears VM_RUNNING; the QEMU binary broken on the
#           least-loaded node -> retried on the other, then (broken on both) FAILED with both
#           reasons; both ferryds restarted while the VM is hibernated -> the VM still wakes on access
#   idle    a VM with idle_after_ms: ferryd hibernates it by itself once quiet; an access wakes it
#   perf    measurements for `ferry-perf wake` (perf/wake.sh): ARP reply latency of ferry-wake for
#           a hibernated VM beside the kernel's for a live address (same client, same bridge,
#           WAKE_PERF_ARP requests each); access time through the real path (client SYN ->
#           ferry-wake -> ferryd -> library resume -> announce -> replay -> first echoed byte)
#           for each WAKE_PERF_SCENARIOS "guest_MiB:used_MiB" (default "128:10 512:100"), images
#           in the pool and, same run, the seed's full state file on disk; WAKE_PERF_REPS each.
#           Writes WAKE_PERF_OUT/{arp.csv,access.csv}.
#
# Exit 77 when namespaces/taps/QEMU/DPDK cannot be used here. Namespaces: wke- (rig) and
# wke-n1/wke-n2 (nodes). Ports: 30000-30199.
set -eu

BUILD=$(cd "${1:?usage: wake-e2e.sh BUILD_DIR CASE}" && pwd)
CASE=${2:?usage: wake-e2e.sh BUILD_DIR CASE}
RIG_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RIG=$RIG_DIR/rig.sh
export FERRY_VM_RIG_PREFIX=${FERRY_VM_RIG_PREFIX:-wke-}
P=$FERRY_VM_RIG_PREFIX
HIB=$BUILD/ctrl/ferry-hib
FERRYD=$BUILD/ctrl/ferryd
FERRYCTL=$BUILD/ctrl/ferryctl
WAKE=$BUILD/dataplane/wake/ferry-wake
MEMSRV=$BUILD/dataplane/memsrv/ferry-memsrv
CLIENT=$BUILD/tests/rigs/vm/vm_client
WRIG=$BUILD/tests/rigs/wake/wake_rig
BASE_PORT=${FERRY_WAKE_E2E_PORT:-30000}
VM_IP=10.97.0.20
POOL=10.97.0.2:$((BASE_PORT + 100))	# ferry-memsrv in n1's namespace, reached by every node
VM_MAC=52:54:00:97:00:20
GUEST_PORT=7000

"$RIG" check
[ -x "$WAKE" ] || { echo "SKIP: $WAKE not built (no libdpdk)"; exit 77; }
for b in "$HIB" "$FERRYD" "$FERRYCTL" "$MEMSRV" "$CLIENT" "$WRIG"; do
	[ -x "$b" ] || { echo "FAIL: missing $b (build first)"; exit 1; }
done
"$RIG" prepare

T=$(mktemp -d /tmp/ferry-wake-e2e.XXXXXX)
chmod 755 "$T"
fails=0
passes=0
declare -A FPID=()
MEMSRV_PID=""
cleanup() {
	local rc=$?
	set +e
	for n in "${!FPID[@]}"; do kill -TERM "${FPID[$n]}" 2>/dev/null; wait "${FPID[$n]}" 2>/dev/null; done
	for s in "$T"/state/*.vm.json; do
		[ -e "$s" ] && ip netns exec "${P}n1" "$HIB" --state "$T/state" --pool "$POOL" --secret "$T/secret" \
			destroy "$(basename "$s" .vm.json)" >/dev/null 2>&1
	done
	[ -n "$MEMSRV_PID" ] && kill "$MEMSRV_PID" 2>/dev/null && wait "$MEMSRV_PID" 2>/dev/null
	for n in n1 n2; do
		for pid in $(ip netns pids "${P}$n" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
		ip netns del "${P}$n" 2>/dev/null
	done
	"$RIG" down
	if [ "$rc" = 0 ] && [ "$fails" = 0 ]; then
		rm -rf "$T"
	else
		for f in "$T"/*.log; do [ -e "$f" ] && { echo "---- $f"; tail -n 30 "$f"; }; done
		echo "kept: $T"
	fi
}
trap cleanup EXIT

pass() { echo "PASS $*"; passes=$((passes + 1)); }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
wait_for() {	# seconds command...
	local t=$(($1 * 20)); shift
	while [ $t -gt 0 ]; do "$@" && return 0; sleep 0.05; t=$((t - 1)); done
	return 1
}
finish() { echo "$passes passed, $fails failed"; [ "$fails" = 0 ]; }

(umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/secret")
mkdir -p "$T/state" "$T/images"

# ---- topology: the VM rig (bridge, tap vt0, client) + node namespaces on the same bridge
"$RIG" up 1
node_up() {	# n idx: eN 10.97.0.(1+idx) for ferryd, acc0 (no IP) for ferry-wake
	local n=$1 i=$2 ns=${P}$1
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
	# Only eth0 answers ARP for eth0's address (acc0 is ferry-wake's, in the same namespace).
	ip netns exec "$ns" sysctl -qw net.ipv4.conf.all.arp_ignore=1
	ip link add "pn$i" netns "${P}br" type veth peer name eth0 netns "$ns"
	ip link add "pa$i" netns "${P}br" type veth peer name acc0 netns "$ns"
	for p in "pn$i" "pa$i"; do ip -n "${P}br" link set "$p" master br0; ip -n "${P}br" link set "$p" up; done
	ip -n "$ns" addr add "10.97.0.$((1 + i))/24" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" link set acc0 address "02:97:00:00:0$i:0a"
	ip -n "$ns" link set acc0 up
	# TX checksum offload stays ON (the default): ferry-wake completes the SYNs it stores.
}
node_addr() { echo "10.97.0.$((1 + ${1#n})):$((BASE_PORT + ${1#n}))"; }

start_memsrv() {	# in n1's namespace, on its bridge address: every node's ferryd reaches it
	ip netns exec "${P}n1" "$MEMSRV" --listen 10.97.0.2 -p "$((BASE_PORT + 100))" -s "$T/secret" -m 1G --prefault no --hugepages off \
		-r "$T/memsrv.port" --log-level warn >"$T/memsrv.log" 2>&1 &
	MEMSRV_PID=$!
	wait_for 5 test -s "$T/memsrv.port" || { echo "FAIL memory server did not start: $(tail -3 "$T/memsrv.log")"; exit 1; }
}

hib() { ip netns exec "${P}n1" "$HIB" --state "$T/state" --pool "$POOL" --secret "$T/secret" "$@"; }
boot_vm() {	# name ram
	local -a args
	mapfile -t args < <("$RIG" qemu-args 0 "$T")
	hib define "$1" --ram "$2" -- "${args[@]}"
	hib start "$1" >/dev/null
	wait_for 20 grep -q 'FERRY-VM READY' "$T/vm0.console" || { echo "FAIL guest did not boot: $(tail -3 "$T/vm0.console")"; exit 1; }
	# A fresh guest says nothing on the wire: forget where a previous one's MAC was (ferry-wake's
	# port), so the bridge floods until the guest answers.
	ip netns exec "${P}br" bridge fdb show br br0 | awk -v m="$VM_MAC" 'tolower($1) == m && $2 == "dev" && $3 != "vt0" { print $3 }' |
		while read -r port; do ip netns exec "${P}br" bridge fdb del "$VM_MAC" dev "$port" master 2>/dev/null || true; done
}

# ferryd config for the cluster: nodes "n1 [n2]", extra [ferryd] lines, [vm vm0] lines.
write_conf() {	# nodes mode vm-extra period
	local nodes=$1 mode=$2 vmx=$3 period=$4 n
	{
		echo "[ferryd]"
		echo "secret_file = $T/secret"
		echo "roles = main,accept"
		echo "log_level = info"
		echo "hib_state = $T/state"
		echo "hib_mode = $mode"
		echo "hib_image_dir = $T/images"
		echo "hib_pool = $POOL"
		echo "idle_cpu_pct = 60"
		echo "idle_check_ms = 500"
		echo "[cluster]"
		echo "coordinator = n1"
		echo "report_interval_ms = 200"
		echo "accept_period_ms = $period"
		for n in $nodes; do
			echo "[node $n]"
			echo "address = $(node_addr "$n")"
		done
		echo "[child wake]"
		echo "exec = $T/wake.sh"
		echo "[vm vm0]"
		echo "ip = $VM_IP"
		echo "mac = $VM_MAC"
		echo "node = n1"
		echo "state = running"
		echo "announce_port = ${ANNOUNCE_PORT:-$GUEST_PORT}"
		printf '%b\n' "$vmx"
	} >"$T/ferryd.conf"
	# ferry-wake: its control socket beside the node's ferryd socket (FERRY_NODE_DIR per node).
	cat >"$T/wake.sh" <<SH
#!/bin/sh
exec $WAKE --secret $T/secret --ctl unix:\$FERRY_NODE_DIR/wake.sock --log-level info -- -l 1 --no-pci --no-huge \\
	-m 32 --no-shconf --log-level=lib.eal:warning --vdev=net_af_packet0,iface=acc0
SH
	chmod +x "$T/wake.sh"
}

start_ferryd() {	# node
	local n=$1 d=$T/$1
	mkdir -p "$d/state" "$d/bin"
	# The node's own qemu-system-x86_64 wrapper (first in its PATH): broken while $T/break-NODE exists.
	cat >"$d/bin/qemu-system-x86_64" <<SH
#!/bin/sh
[ -e $T/break-$n ] && { echo "qemu-system-x86_64: broken on $n for the test" >&2; exit 1; }
exec /usr/bin/qemu-system-x86_64 "\$@"
SH
	chmod +x "$d/bin/qemu-system-x86_64"
	FERRY_NODE_DIR=$d PATH="$d/bin:$PATH" ip netns exec "${P}$n" "$FERRYD" -c "$T/ferryd.conf" --name "$n" \
		--unix-socket "$d/ferryd.sock" --state-dir "$d/state" --wake-ctl "unix:$d/wake.sock" \
		>>"$T/ferryd-$n.log" 2>&1 &
	FPID[$n]=$!
	wait_for 10 test -S "$d/ferryd.sock" || { echo "FAIL ferryd $n did not start"; tail "$T/ferryd-$n.log"; exit 1; }
	wait_for 15 grep -q "ferry-wake up" "$T/ferryd-$n.log" "$T/$n/wake.log" 2>/dev/null || true
}
stop_ferryd() { kill -TERM "${FPID[$1]}"; wait "${FPID[$1]}" 2>/dev/null || true; unset "FPID[$1]"; }
fctl() { local n=$1; shift; "$FERRYCTL" -s "$T/$n/ferryd.sock" "$@"; }
vm_state() { fctl "$1" vms --json | jq -r '.vms[] | select(.id == "vm0") | .state + "@" + .node'; }
wctl() { local n=$1; shift; "$WRIG" ctl "$T/$n/wake.sock" "$T/secret" "$@"; }
wstat() { wctl "$1" stats 2>/dev/null | awk -v k="$2" '$1 == k { print $2; exit }'; }
fdb_port() { ip netns exec "${P}br" bridge fdb show br br0 | awk -v m="$VM_MAC" 'tolower($1) == m && $2 == "dev" { print $3; exit }'; }
client() { ip netns exec "${P}client" "$CLIENT" "$@"; }
arp() { ip netns exec "${P}client" "$WRIG" arp c0 "$@"; }
accept_node() { fctl n1 nodes --json | jq -r '.accept // empty'; }
access() {	# -> prints the client's timing line; succeeds if the echo came back
	local out rc=0
	out=$(client -T -t 20 "$VM_IP" "$GUEST_PORT" "hello-$1" 2>&1) || rc=$?
	echo "  access: $(tr '\n' ' ' <<<"$out")"
	[ "$rc" = 0 ] && grep -qx "hello-$1" <<<"$out"
}
# Predicates for wait_for (evaluated on every try, not once when wait_for is called).
fdb_is() { test "$(fdb_port)" = "$1"; }
accept_is() { test "$(accept_node)" = "$1"; }
state_is() { test "$(vm_state "$1")" = "$2"; }
qemu_count() { pgrep -fc 'vm0[.]ferry-ram' || true; }   # QEMUs of vm0 (its RAM file in argv)
syn_retrans() { sed -n 's/.*syn_retrans=\([0-9]*\).*/\1/p' <<<"$1"; }

check_offload() {	# the bridge ports facing ferry-wake keep TX checksum offload on
	local p
	for p in "$@"; do
		ip netns exec "${P}br" ethtool -k "$p" 2>/dev/null | grep -q '^tx-checksumming: on' || return 1
	done
}

case "$CASE" in
wake)
	node_up n1 1
	start_memsrv
	boot_vm vm0 128M
	write_conf "n1" pool "" 600000
	start_ferryd n1
	check "ferry-wake got the accept role from ferryd" wait_for 10 sh -c "'$WRIG' ctl '$T/n1/wake.sock' '$T/secret' expect-stat role eq 1 >/dev/null 2>&1"
	command -v ethtool >/dev/null && check "TX checksum offload left ON on the veths facing ferry-wake and the client" check_offload pa1 pc
	check "vm0 running on n1" test "$(vm_state n1)" = running@n1
	out=$(arp "$VM_IP" 20 "$VM_MAC" 2>&1) || true
	echo "  arp (running): $out"
	a0=$(wstat n1 arp_replies)
	check "ARP for the running VM is answered by the VM" grep -q "20/20 answered, 0 with a wrong MAC" <<<"$out"
	check "ferry-wake does not answer ARP for a running VM (arp_replies ${a0:-?} = 0)" test "${a0:-x}" = 0
	# A connection held open across the hibernation.
	mkfifo "$T/hold.in" "$T/hold.out"
	ip netns exec "${P}client" "$CLIENT" -H -t 60 "$VM_IP" "$GUEST_PORT" <"$T/hold.in" >"$T/hold.out" 2>&1 &
	hold_pid=$!
	exec {hin}>"$T/hold.in" {hout}<"$T/hold.out"
	echo before >&"$hin"
	read -r -t 10 l1 <&"$hout" || l1=""
	check "held connection echoes before hibernation" test "$l1" = before
	t0=$(date +%s%N)
	check "ferryctl hibernate vm0" fctl n1 hibernate vm0
	echo "  hibernate: $((($(date +%s%N) - t0) / 1000000)) ms (ferryctl round trip)"
	check "vm0 hibernated on n1" test "$(vm_state n1)" = hibernated@n1
	check "the library did it (no hook): RAM file gone" test ! -e /dev/shm/vm0.ferry-ram
	check "ferry-wake holds the VM (vms 1)" wait_for 3 sh -c "'$WRIG' ctl '$T/n1/wake.sock' '$T/secret' expect-stat vms eq 1 >/dev/null 2>&1"
	check "the bridge forwards the VM's MAC to ferry-wake's port (fdb: pa1)" wait_for 3 fdb_is pa1
	out=$(arp "$VM_IP" 20 "$VM_MAC" 2>&1) || true
	echo "  arp (hibernated): $out"
	check "ARP for the hibernated VM answered by ferry-wake with the VM's MAC" grep -q "20/20 answered, 0 with a wrong MAC" <<<"$out"
	check "ferry-wake counted those replies" test "$(wstat n1 arp_replies)" -ge 20
	# The access: a new connection.
	[ -n "${WKE_DEBUG:-}" ] && { ( for i in $(seq 100); do echo "$(date +%s.%N) $(ip netns exec "${P}br" bridge fdb show br br0 | grep -v permanent | tr '\n' ';')"; sleep 0.01; done ) >"$T/tcpdump.log" 2>&1 & }
	t0=$(date +%s%N)
	out=$(client -T -t 20 "$VM_IP" "$GUEST_PORT" hello-hibernated 2>&1) || true
	echo "  access to the hibernated VM: $(tr '\n' ' ' <<<"$out") (wall $((($(date +%s%N) - t0) / 1000000)) ms)"
	check "the client's new connection gets its echo, no error" grep -qx hello-hibernated <<<"$out"
	[ -n "${WKE_DEBUG:-}" ] && { sleep 4; cat "$T/tcpdump.log"; }
	r=$(syn_retrans "$out")
	echo "  SYN retransmissions seen by the client: ${r:-?}"
	ms=$(sed -n 's/.*vm vm0 running on n1, \([0-9]*\) ms after the resume began.*/\1/p' "$T/ferryd-n1.log" | head -1)
	echo "  ferryd: running ${ms:-?} ms after the resume began"
	# Measured, not asserted (a timing on a shared machine): with ferry-wake replaying from its own
	# MAC the client normally sees no retransmission when the resume takes under its 1 s SYN
	# timeout; ferry-perf wake counts the runs that did.
	echo "  MEASURE: SYN retransmissions ${r:-?} with the VM running ${ms:-?} ms after the resume began"
	check "ferryd resumed it on the access, with the library" grep -q "resuming here (hibernation library)" "$T/ferryd-n1.log"
	check "VM_RUNNING to ferry-wake, SYN replayed once" \
		wait_for 3 sh -c "'$WRIG' ctl '$T/n1/wake.sock' '$T/secret' expect-stat syn_replayed ge 1 expect-stat vms eq 0 >/dev/null 2>&1"
	check "vm0 running on n1 again" test "$(vm_state n1)" = running@n1
	echo after >&"$hin"
	read -r -t 20 l2 <&"$hout" || l2=""
	check "held connection still echoes after hibernate/resume" test "$l2" = after
	exec {hin}>&- {hout}<&-
	wait "$hold_pid" 2>/dev/null || true
	# SYN flood to the hibernated VM: one wake, bounded.
	check "hibernate again" fctl n1 hibernate vm0
	wait_for 3 sh -c "'$WRIG' ctl '$T/n1/wake.sock' '$T/secret' expect-stat vms eq 1 >/dev/null 2>&1" || true
	rss0=$(ps -o rss= -C ferry-wake | head -1)
	resumes0=$(grep -c "resuming here" "$T/ferryd-n1.log")
	stored0=$(wstat n1 syn_stored)
	fpids=()
	for i in $(seq 200); do
		ip netns exec "${P}client" timeout 3 bash -c "exec 3<>/dev/tcp/$VM_IP/$GUEST_PORT" 2>/dev/null &
		fpids+=($!)
	done
	wait_for 20 state_is n1 running@n1 || true
	wait "${fpids[@]}" 2>/dev/null || true
	rss1=$(ps -o rss= -C ferry-wake | head -1)
	resumes1=$(grep -c "resuming here" "$T/ferryd-n1.log")
	stored1=$(wstat n1 syn_stored); dropped=$(wstat n1 syn_not_stored)
	echo "  flood: 200 connects; SYNs stored $((stored1 - stored0)), not stored ${dropped:-?}; ferry-wake RSS ${rss0} -> ${rss1} KiB"
	check "SYN flood: exactly one resume" test "$((resumes1 - resumes0))" = 1
	check "SYN flood: at most 16 SYNs stored for the VM, the rest counted and dropped" \
		bash -c "[ $((stored1 - stored0)) -le 16 ] && [ '${dropped:-0}' -gt 0 ]"
	check "SYN flood: ferry-wake's memory bounded (RSS grew < 4 MiB)" test "$((rss1 - rss0))" -lt 4096
	check "vm0 running after the flood, and answers" access flood
	finish
	;;
nodes)
	node_up n1 1
	node_up n2 2
	start_memsrv
	boot_vm vm0 128M
	write_conf "n1 n2" pool "" 5000
	start_ferryd n1
	start_ferryd n2
	check "both ferry-wakes up" wait_for 15 sh -c "grep -q 'ferry-wake up' '$T/ferryd-n1.log' '$T/n1/wake.log' 2>/dev/null; test -S '$T/n2/wake.sock'"
	check "ferryctl hibernate vm0 asked on n2 (relayed to n1)" fctl n2 hibernate vm0
	check "vm0 hibernated (image kept in the pool, claimable from any node)" test "$(vm_state n1)" = hibernated@n1
	# The role moves; the bridge follows.
	wait_for 5 test -n "$(accept_node)" || true
	a1=$(accept_node)
	check "accept role held by $a1; the VM's MAC forwarded to its ferry-wake" wait_for 4 fdb_is "pa${a1#n}"
	other=n1; [ "$a1" = n1 ] && other=n2
	check "the role moves to $other (accept_period_ms 5000)" wait_for 12 accept_is "$other"
	check "the bridge follows: the VM's MAC now goes to $other's ferry-wake (fdb pa${other#n})" wait_for 4 fdb_is "pa${other#n}"
	check "$other's ferry-wake holds the VM, $a1's dropped the role" \
		bash -c "'$WRIG' ctl '$T/$other/wake.sock' '$T/secret' expect-stat role eq 1 expect-stat vms eq 1 >/dev/null 2>&1 && '$WRIG' ctl '$T/$a1/wake.sock' '$T/secret' expect-stat role eq 0 >/dev/null 2>&1"
	# A resume asked of the old holder: it picks the node, the new holder's ferry-wake is told.
	t0=$(date +%s%N)
	check "ferryctl resume vm0 asked of the old holder $a1" fctl "$a1" resume vm0
	echo "  resume (via $a1): $((($(date +%s%N) - t0) / 1000000)) ms"
	check "the new holder's ferry-wake heard VM_RUNNING (vms 0)" \
		wait_for 5 sh -c "'$WRIG' ctl '$T/n1/wake.sock' '$T/secret' expect-stat vms eq 0 >/dev/null 2>&1 && '$WRIG' ctl '$T/n2/wake.sock' '$T/secret' expect-stat vms eq 0 >/dev/null 2>&1"
	check "vm0 answers" access nodes1
	# The QEMU binary broken on n1 (the least loaded, first by name on a tie): retried on n2.
	where=$(vm_state n1); where=${where#*@}
	check "hibernate vm0 (on $where)" fctl n1 hibernate vm0
	touch "$T/break-n1"
	out=$(fctl n1 resume vm0 --json 2>&1) || true
	echo "  resume with n1 broken: $out"
	st=$(vm_state n1)
	check "retried: vm0 running on n2 (n1 says $st)" test "$st" = running@n2
	check "n1's failure was logged, the retry counted" bash -c "grep -q 'retrying the resume on n2' '$T/ferryd-n1.log'"
	check "vm0 answers after the retry" access nodes2
	# Broken on both: FAILED with both reasons, still hibernated underneath.
	check "hibernate vm0 (on n2, asked of n1)" fctl n1 hibernate vm0
	touch "$T/break-n2"
	rc=0; out=$(fctl n1 resume vm0 2>&1) || rc=$?
	echo "  resume with both broken: rc $rc: $out"
	check "resume fails (exit 1) naming both nodes" bash -c "[ $rc = 1 ] && grep -q 'n1:' <<<'$out' && grep -q 'n2:' <<<'$out'"
	check "ferryctl vms: vm0 failed" bash -c "[ \"\$('$FERRYCTL' -s '$T/n1/ferryd.sock' vms --json | jq -r '.vms[0].state')\" = failed ]"
	check "the library still holds it hibernated" bash -c "'$HIB' --state '$T/state' status vm0 | grep -q hibernated"
	rm -f "$T/break-n1" "$T/break-n2"
	# ferryd restarted (both) while the VM is hibernated: an access still wakes it.
	stop_ferryd n2
	stop_ferryd n1
	start_ferryd n1
	start_ferryd n2
	check "after the restart: vm0 still known as failed/hibernated" \
		wait_for 5 bash -c "case \$('$FERRYCTL' -s '$T/n1/ferryd.sock' vms --json | jq -r '.vms[0].state') in failed|hibernated) true;; *) false;; esac"
	check "an accept node's ferry-wake holds the VM again" wait_for 10 bash -c "for n in n1 n2; do '$WRIG' ctl '$T/'\$n'/wake.sock' '$T/secret' expect-stat role eq 1 expect-stat vms eq 1 >/dev/null 2>&1 && exit 0; done; exit 1"
	check "after the restart, an access wakes vm0 and gets its echo" access restarted
	check "vm0 running" bash -c "case \$('$FERRYCTL' -s '$T/n1/ferryd.sock' vms --json | jq -r '.vms[0].state') in running) true;; *) false;; esac"
	finish
	;;
noannounce)
	# A resumed VM that never announces itself (announce_port where the guest does not listen):
	# each node that resumed it hibernates it again before the next one tries, so no second copy
	# of the VM ever runs; then FAILED, and the image taken back still resumes once the port is right.
	node_up n1 1
	node_up n2 2
	start_memsrv
	boot_vm vm0 128M
	ANNOUNCE_PORT=7999 write_conf "n1 n2" pool "announce_timeout_ms = 3000" 600000
	start_ferryd n1
	start_ferryd n2
	check "vm0's QEMU runs (one)" test "$(qemu_count)" = 1
	check "hibernate vm0" fctl n1 hibernate vm0
	check "no QEMU of vm0 left" test "$(qemu_count)" = 0
	rc=0; out=$(fctl n1 resume vm0 2>&1) || rc=$?
	echo "  resume that never announces: rc $rc: $out"
	check "the resume fails (exit 1); both nodes tried it and said why" \
		bash -c "[ $rc = 1 ] && grep -q 'n1: [^;]*did not announce' <<<'$out' && grep -q 'n2: [^;]*did not announce' <<<'$out'"
	check "each node hibernated its copy again: no QEMU of vm0 runs" test "$(qemu_count)" = 0
	check "both logged it" bash -c "grep -q 'hibernating it again' '$T/ferryd-n1.log' && grep -q 'hibernating it again' '$T/ferryd-n2.log'"
	st=$(vm_state n1)
	check "ferryctl vms: vm0 failed ($st)" test "${st%@*}" = failed
	check "the library holds it hibernated" bash -c "'$HIB' --state '$T/state' status vm0 | grep -q hibernated"
	# The port right again (config fixed, ferryds restarted): the image taken back resumes.
	stop_ferryd n2
	stop_ferryd n1
	write_conf "n1 n2" pool "" 600000
	start_ferryd n1
	start_ferryd n2
	check "with the port fixed, ferryctl resume vm0 works" fctl n1 resume vm0
	check "vm0 answers" access fixed
	check "one QEMU of vm0" test "$(qemu_count)" = 1
	finish
	;;
idle)
	node_up n1 1
	start_memsrv
	boot_vm vm0 128M
	write_conf "n1" pool "tap = vt0\nidle_after_ms = 2500" 600000
	start_ferryd n1
	check "ferryd hibernates the quiet VM by itself" wait_for 25 state_is n1 hibernated@n1
	check "said why" grep -q "idle for" "$T/ferryd-n1.log"
	check "an access wakes it" access idle
	check "running again" test "$(vm_state n1)" = running@n1
	finish
	;;
perf)
	out=${WAKE_PERF_OUT:-$BUILD/results/wake}
	scen=${WAKE_PERF_SCENARIOS:-128:10 512:100}
	reps=${WAKE_PERF_REPS:-3}
	narp=${WAKE_PERF_ARP:-1000}
	mkdir -p "$out"
	disk=/var/tmp/ferry-wake-e2e.$$	# the seed's state files: on disk, not tmpfs
	mkdir -p "$disk"
	node_up n1 1
	start_memsrv
	echo "mode,guest_mib,used_mib,rep,resume_to_running_ms,connect_ms,first_byte_ms,syn_retrans,stored_mib,syn_to_first_byte_ms" >"$out/access.csv"
	echo "who,requests,answered,p50_us,p99_us,max_us" >"$out/arp.csv"
	arp_row() {	# who output
		local a p50 p99 mx
		a=$(sed -n 's/.*: \([0-9]*\)\/[0-9]* answered.*/\1/p' <<<"$2")
		p50=$(sed -n 's/.*p50 \([0-9.]*\) us.*/\1/p' <<<"$2")
		p99=$(sed -n 's/.*p99 \([0-9.]*\) us.*/\1/p' <<<"$2")
		mx=$(sed -n 's/.*max \([0-9.]*\) us.*/\1/p' <<<"$2")
		echo "$1,$narp,${a:-0},${p50:-},${p99:-},${mx:-}" >>"$out/arp.csv"
		echo "  arp $1: $(tail -1 <<<"$2")"
	}
	first=1
	for mode in pool file; do
		for sc in $scen; do
			g=${sc%%:*} u=${sc##*:}
			boot_vm vm0 "${g}M"
			write_conf "n1" "$mode" "" 600000
			sed -i "s|^hib_image_dir = .*|hib_image_dir = $disk|" "$T/ferryd.conf"
			start_ferryd n1
			wait_for 10 sh -c "'$WRIG' ctl '$T/n1/wake.sock' '$T/secret' expect-stat role eq 1 >/dev/null 2>&1" || true
			client -t 60 "$VM_IP" "$GUEST_PORT" "mem $u" >/dev/null
			for rep in $(seq "$reps"); do
				fctl n1 hibernate vm0 >/dev/null
				wait_for 3 sh -c "'$WRIG' ctl '$T/n1/wake.sock' '$T/secret' expect-stat vms eq 1 >/dev/null 2>&1" || true
				stored=$(sed -n 's/.*hibernated by the library in [0-9]* ms ([0-9]* pages stored, \([0-9.]*\) MiB).*/\1/p' "$T/ferryd-n1.log" | tail -1)
				if [ -n "$first" ]; then
					first=""
					# ARP: ferry-wake for the hibernated VM, the kernel (n1's namespace) for a live address.
					arp_row ferry-wake "$(arp "$VM_IP" "$narp" "$VM_MAC" 2>&1)"
					arp_row kernel "$(arp 10.97.0.2 "$narp" "$(ip -n "${P}n1" link show eth0 | awk '/ether/ { print $2 }')" 2>&1)"
				fi
				ip netns exec "${P}client" ip neigh flush all	# the client ARPs as a first visitor would
				sleep 0.3
				o=$(client -T -t 30 "$VM_IP" "$GUEST_PORT" "x" 2>&1) || true
				ms=$(sed -n 's/.*vm vm0 running on n1, \([0-9]*\) ms after the resume began.*/\1/p' "$T/ferryd-n1.log" | tail -1)
				c=$(sed -n 's/.*connect_ms=\([0-9.]*\).*/\1/p' <<<"$o")
				f=$(sed -n 's/.*first_reply_ms=\([0-9.]*\).*/\1/p' <<<"$o")
				r=$(syn_retrans "$o")
				grep -qx x <<<"$o" || { fail "perf: no echo ($mode $sc rep $rep): $o"; continue; }
				sleep 0.2	# the log line of "running" may follow the client's first byte
				ms=$(sed -n 's/.*vm vm0 running on n1, \([0-9]*\) ms after the resume began.*/\1/p' "$T/ferryd-n1.log" | tail -1)
				# From the client's first SYN as ferry-wake saw it (its log, same clock) to the first byte.
				syn_ts=$(grep "wake INFO  vm vm0: SYN 10.97.0.10:" "$T/ferryd-n1.log" | tail -1 | cut -d' ' -f1)
				fe=$(sed -n 's/.*first_reply_epoch=\([0-9.]*\).*/\1/p' <<<"$o")
				sf=""
				[ -n "$syn_ts" ] && [ -n "$fe" ] && sf=$(awk -v a="$(date -d "$syn_ts" +%s.%N)" -v b="$fe" 'BEGIN { printf "%.1f", (b - a) * 1000 }')
				echo "$mode,$g,$u,$rep,${ms:-},${c:-},${f:-},${r:-},${stored:-},${sf:-}" >>"$out/access.csv"
				echo "  $mode ${g} MiB guest, $u MiB used, rep $rep: resume->running ${ms:-?} ms, SYN->first byte ${sf:-?} ms, client connect ${c:-?} ms, first byte ${f:-?} ms, SYN retransmits ${r:-?}"
			done
			stop_ferryd n1
			hib destroy vm0 >/dev/null 2>&1 || true
			rm -f "$disk"/*.state
			: >"$T/ferryd-n1.log.prev"; cat "$T/ferryd-n1.log" >>"$T/ferryd-n1.log.prev"; : >"$T/ferryd-n1.log"
		done
	done
	rm -rf "$disk"
	pass "perf: $out/access.csv, $out/arp.csv"
	finish
	;;
*)
	sed -n '2,/^set -eu/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
