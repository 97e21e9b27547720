#!/bin/sh
# ferry-wake rig tests: ferry-wake on a veth (DPDK net_af_packet, no
# hugepages) in its own network namespace, a client and a "VM" on a Linux
# bridge in another, all built by rig.sh. Needs root; exits 77 (skip) when
# network namespaces are not permitted.
#
#   run-tests.sh BUILD_DIR CASE      CASE: arp wake dup role ctl noport arpwake perf all
#
# arp     ARP for a hibernated VM's IP is answered with the VM's MAC
# wake    connect() to a hibernated VM: SYN captured, WAKE_REQUEST to a test
#         ferryd, which resumes the VM and sends VM_RUNNING; the SYN is
#         replayed and the client's connect() succeeds in < 1 s with no SYN
#         retransmit; 4 KiB echo back equal
# dup     the VM is resumed only after 2.5 s: the client's SYN retransmits are
#         counted but stored once, one SYN is replayed, the connection works
# role    ROLE_TAKE moves the VM MAC's bridge fdb entry to ferry-wake's port;
#         ROLE_DROP stops ARP answers
# ctl     malformed and unauthenticated control traffic gets ERROR, counters
#         move, ferry-wake keeps running
# noport  a missing interface gives the clear "no DPDK port" error (options
#         from a config file)
# arpwake with --wake-on-arp, an ARP request alone wakes the VM
# perf    ARP reply latency: ferry-wake vs the kernel answering for its own
#         address, 1000 requests each, same run
set -eu

BUILD=${1:?usage: run-tests.sh BUILD_DIR CASE}
CASE=${2:-all}
HERE=$(cd "$(dirname "$0")" && pwd)
RIG="$BUILD/tests/rigs/wake/wake_rig"
WAKE="$BUILD/dataplane/wake/ferry-wake"
P=${FERRY_WAKE_RIG_PREFIX:-fw-}
export FERRY_WAKE_RIG_PREFIX="$P"
VM_IP=10.99.0.20
VM_MAC=02:99:00:00:00:20
WAKE_PID=""
FAILED=0

"$HERE/rig.sh" check || exit $?
[ -x "$WAKE" ] || { echo "SKIP: $WAKE not built (no libdpdk)"; exit 77; }
WORK=$(mktemp -d /tmp/ferry-wake-rig.XXXXXX)
SOCK="$WORK/wake.sock"
SECRET="$WORK/secret"

cleanup() {
	rc=$?
	if [ -n "$WAKE_PID" ] && kill -0 "$WAKE_PID" 2>/dev/null; then
		kill -TERM "$WAKE_PID" 2>/dev/null || true
		wait "$WAKE_PID" 2>/dev/null || true
	fi
	"$HERE/rig.sh" down
	if [ "$rc" -ne 0 ] || [ "$FAILED" -ne 0 ]; then
		echo "---- ferry-wake log ($WORK/wake.log)"
		cat "$WORK/wake.log" 2>/dev/null || true
	fi
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

umask 077
head -c 48 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$SECRET"

ctl() { "$RIG" ctl "$SOCK" "$SECRET" "$@"; }
fail() { echo "FAIL: $*"; FAILED=1; }
pass() { echo "PASS: $*"; }

start_wake() {
	rm -f "$SOCK"
	ip netns exec "${P}acc" "$WAKE" --secret "$SECRET" --ctl "unix:$SOCK" --log-level info "$@" -- \
		-l 1 --no-pci --no-huge -m 32 --no-shconf --log-level=lib.eal:warning \
		--vdev=net_af_packet0,iface=acc0 >> "$WORK/wake.log" 2>&1 &
	WAKE_PID=$!
	for _ in $(seq 100); do
		grep -q "ferry-wake up" "$WORK/wake.log" 2>/dev/null && [ -S "$SOCK" ] && return 0
		kill -0 "$WAKE_PID" 2>/dev/null || { fail "ferry-wake exited at start"; exit 1; }
		sleep 0.1
	done
	fail "ferry-wake did not come up in 10 s"
	exit 1
}

stop_wake() {
	kill -TERM "$WAKE_PID"
	if wait "$WAKE_PID"; then pass "ferry-wake stopped cleanly on SIGTERM"; else fail "ferry-wake exit status $?"; fi
	WAKE_PID=""
}

# The "resume" a test ferryd runs: the VM gets its IP, its echo server
# starts, and it announces itself (as QEMU does after a resume) so the
# bridge forwards its MAC to it again.
cat > "$WORK/resume.sh" <<EOS
#!/bin/sh
set -e
ip -n ${P}vm addr add $VM_IP/24 dev vm0
ip netns exec ${P}vm "$RIG" echo-server $VM_IP 7 > "$WORK/echo.log" 2>&1 &
for i in \$(seq 200); do
	ip netns exec ${P}vm ss -Hltn 'sport = :7' | grep -q LISTEN && break
	sleep 0.01
done
ip netns exec ${P}vm "$RIG" garp vm0 $VM_IP
# ferryd's side of the contract: VM_RUNNING only once the VM has announced
# itself, i.e. the switch forwards its MAC to it again (else the replayed SYN,
# sent from the accept node's port, is dropped as addressed to that same port).
for i in \$(seq 100); do
	ip netns exec ${P}br bridge fdb show br br0 | grep -i "^$VM_MAC dev pv " >/dev/null && exit 0
	sleep 0.01
done
echo "resume: the bridge never learned $VM_MAC on pv" >&2
exit 1
EOS
chmod +x "$WORK/resume.sh"

setup_vm() {
	"$HERE/rig.sh" up
	start_wake "$@"
	ctl add vm-20 "$VM_IP" "$VM_MAC" take 1
}

case_arp() {
	echo "== arp: ARP for a hibernated VM is answered with its MAC"
	setup_vm
	if ip netns exec "${P}client" "$RIG" arp c0 "$VM_IP" 20 "$VM_MAC"; then pass "arp"; else fail "arp"; fi
	# The client's kernel resolves it too (ip neigh).
	ip netns exec "${P}client" "$RIG" udp "$VM_IP" 9
	sleep 0.2
	if ip -n "${P}client" neigh show "$VM_IP" | grep -qi "$VM_MAC"; then
		pass "client neighbour table: $(ip -n "${P}client" neigh show "$VM_IP")"
	else
		fail "client neighbour table: $(ip -n "${P}client" neigh show "$VM_IP")"
	fi
	ctl expect-stat arp_replies ge 20 || fail "arp_replies counter"
	stop_wake
}

case_wake() {
	echo "== wake: connect() to a hibernated VM succeeds without a SYN retransmit"
	setup_vm
	"$RIG" ferryd "$SOCK" "$SECRET" vm-20 "$WORK/resume.sh" > "$WORK/ferryd.log" 2>&1 &
	fpid=$!
	sleep 0.2
	if ip netns exec "${P}client" "$RIG" connect "$VM_IP" 7 1000; then pass "connect without a SYN retransmit, echo equal"; else fail "connect"; fi
	if wait "$fpid"; then pass "ferryd woke the VM"; else fail "ferryd"; fi
	cat "$WORK/ferryd.log"
	[ "$FAILED" -eq 0 ] || ctl stats
	ctl expect-stat syn_stored eq 1 expect-stat syn_replayed eq 1 expect-stat wake_requests_sent ge 1 \
		expect-stat vms eq 0 || fail "counters after the wake"
	# c0 keeps TX checksum offload on: the captured SYN had a partial checksum.
	ctl expect-stat cksum_fixed_tcp ge 1 || fail "the partial checksum was not completed"
	stop_wake
}

case_dup() {
	echo "== dup: SYN retransmits are stored once"
	setup_vm
	"$RIG" ferryd "$SOCK" "$SECRET" vm-20 "$WORK/resume.sh" 2500 > "$WORK/ferryd.log" 2>&1 &
	fpid=$!
	sleep 0.2
	if ip netns exec "${P}client" "$RIG" connect "$VM_IP" 7 0; then pass "connect after retransmits"; else fail "connect"; fi
	wait "$fpid" || fail "ferryd"
	cat "$WORK/ferryd.log"
	if ctl expect-stat syn_stored eq 1 expect-stat syn_dup ge 2 expect-stat syn_replayed eq 1; then
		pass "retransmits stored once"
	else
		fail "dedup counters"
	fi
	stop_wake
}

fdb_port() { ip netns exec "${P}br" bridge fdb show br br0 | awk -v m="$VM_MAC" 'tolower($1) == m { print $3; exit }'; }

case_role() {
	echo "== role: ROLE_TAKE moves the VM MAC to ferry-wake's port; ROLE_DROP stops answers"
	"$HERE/rig.sh" up
	# The VM ran on its own port before it hibernated: the bridge learned it there.
	ip netns exec "${P}vm" "$RIG" garp vm0 "$VM_IP"
	sleep 0.1
	before=$(fdb_port)
	[ "$before" = pv ] && pass "before: VM MAC on pv (the VM's port)" || fail "before: VM MAC on '$before'"
	start_wake
	ctl add vm-20 "$VM_IP" "$VM_MAC"
	sleep 0.2
	[ "$(fdb_port)" = pv ] && pass "standby announces nothing" || fail "standby moved the MAC to '$(fdb_port)'"
	ip netns exec "${P}client" "$RIG" arp c0 "$VM_IP" 3 none && pass "standby: no ARP answers" || fail "standby answered ARP"
	ctl take 5
	sleep 0.2
	after=$(fdb_port)
	[ "$after" = pa ] && pass "after ROLE_TAKE: VM MAC on pa (ferry-wake's port)" || fail "after ROLE_TAKE: VM MAC on '$after'"
	ip netns exec "${P}br" bridge fdb show br br0 | grep -i "$VM_MAC" || true
	ip netns exec "${P}client" "$RIG" arp c0 "$VM_IP" 5 "$VM_MAC" && pass "accept node answers ARP" || fail "no ARP answer"
	if ctl take 4 2>/dev/null | grep -q "ERROR 19"; then pass "stale epoch refused"; else fail "stale epoch accepted"; fi
	ctl drop 6
	ip netns exec "${P}client" "$RIG" arp c0 "$VM_IP" 5 none && pass "ROLE_DROP: no ARP answers" || fail "answered after ROLE_DROP"
	ctl expect-stat mac_announced ge 1 expect-stat arp_no_role ge 5 || fail "role counters"
	stop_wake
}

case_ctl() {
	echo "== ctl: malformed and unauthenticated control traffic"
	"$HERE/rig.sh" up
	start_wake
	if "$RIG" badctl "$SOCK" "$SECRET"; then pass "every bad message got its ERROR"; else fail "badctl"; fi
	kill -0 "$WAKE_PID" && pass "ferry-wake still running" || fail "ferry-wake died"
	ctl expect-stat ctl_malformed ge 3 expect-stat ctl_auth_failed eq 1 expect-stat ctl_unauth_refused eq 1 \
		expect-stat ctl_errors_sent ge 6 || fail "control counters"
	stop_wake
}

case_noport() {
	echo "== noport: a missing interface gives a clear error (options from a config file)"
	"$HERE/rig.sh" up
	rm -f "$SOCK"
	cat > "$WORK/wake.ini" <<EOC
[wake]
ctl = unix:$SOCK
secret = $SECRET
eal = -l 1 --no-pci --no-huge -m 32 --no-shconf --vdev=net_af_packet0,iface=nosuch0
EOC
	if ip netns exec "${P}acc" "$WAKE" --config "$WORK/wake.ini" > "$WORK/noport.log" 2>&1; then
		fail "ferry-wake started without a port"
	elif grep -q "no DPDK port: is iface nosuch0 present" "$WORK/noport.log"; then
		pass "$(grep 'no DPDK port' "$WORK/noport.log" | sed 's/^.*ERROR *//')"
	else
		cat "$WORK/noport.log"
		fail "no clear message"
	fi
	[ ! -e "$SOCK" ] && pass "control socket removed on exit" || fail "control socket left behind"
}

case_arpwake() {
	echo "== arpwake: with --wake-on-arp an ARP request alone wakes the VM"
	setup_vm --wake-on-arp
	"$RIG" ferryd "$SOCK" "$SECRET" vm-20 "$WORK/resume.sh" > "$WORK/ferryd.log" 2>&1 &
	fpid=$!
	sleep 0.2
	ip netns exec "${P}client" "$RIG" arp c0 "$VM_IP" 1 "$VM_MAC" || fail "arp"
	if wait "$fpid" && grep -q "reason ARP, 10.99.0.10:0 -> 10.99.0.20:0" "$WORK/ferryd.log"; then
		pass "WAKE_REQUEST with reason ARP"
	else
		fail "no ARP wake"
	fi
	cat "$WORK/ferryd.log"
	ctl expect-stat vms eq 0 || fail "VM still in the table"
	stop_wake
}

case_perf() {
	echo "== perf: ARP reply latency, ferry-wake vs kernel, 1000 requests each"
	setup_vm --idle-us 0
	ip -n "${P}vm" addr add 10.99.0.30/24 dev vm0
	ip netns exec "${P}client" "$RIG" arp c0 "$VM_IP" 1000 "$VM_MAC" | sed 's/^/ferry-wake: /'
	ip netns exec "${P}client" "$RIG" arp c0 10.99.0.30 1000 "$VM_MAC" | sed 's/^/kernel:     /'
	ctl stats | grep -E " (rx_pkts|tx_pkts|tx_dropped|arp_requests|arp_replies|mbuf_alloc_failed) "
	stop_wake
}

case "$CASE" in
all) for c in arp wake dup role ctl noport arpwake perf; do "case_$c"; done ;;
arp | wake | dup | role | ctl | noport | arpwake | perf) "case_$CASE" ;;
*) echo "unknown case $CASE" >&2; exit 2 ;;
esac
[ "$FAILED" -eq 0 ] && echo "ALL PASSED ($CASE)" || echo "FAILED ($CASE)"
exit "$FAILED"
