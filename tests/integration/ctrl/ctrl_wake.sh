#!/usr/bin/env bash
# Hibernated VM woken by an access, end to end (issue 6), on the ferry-wake rig
# topology (tests/rigs/wake/rig.sh: client, accept node, VM namespaces on a
# bridge): ferryd runs on the accept node, supervises ferry-wake (DPDK
# net_af_packet on acc0) and holds the accept role; vm-20 is hibernated in its
# config. On taking the role ferryd pushes the hibernated VMs (VM_TABLE) and
# ROLE_TAKE; ferry-wake announces the VM's MAC. A client connect()s to the VM:
# ferry-wake answers ARP, keeps the SYN, sends WAKE_REQUEST; ferryd resumes the
# VM (its resume hook gives the VM its address, starts its echo service and
# returns once the VM announced itself), then sends VM_RUNNING and ferry-wake
# replays the SYN: the client's connection succeeds without a SYN retransmit.
#
#   ctrl_wake.sh BUILD_DIR        exit 0 passed, 1 failed, 77 skipped
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../../.." && pwd)
[ $# -eq 1 ] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
build=$1
export FERRY_WAKE_RIG_PREFIX=${FERRY_WAKE_RIG_PREFIX:-ctrl-w}
P=$FERRY_WAKE_RIG_PREFIX
rigsh=$src/tests/rigs/wake/rig.sh
ferryd=$build/ctrl/ferryd
ferryctl=$build/ctrl/ferryctl
wake=$build/dataplane/wake/ferry-wake
rig=$build/tests/rigs/wake/wake_rig
VM_IP=10.99.0.20
VM_MAC=02:99:00:00:00:20

. "$here/checks.sh"
wait_for() {
	local t=$(($1 * 10)); shift
	while [ $t -gt 0 ]; do "$@" && return 0; sleep 0.1; t=$((t - 1)); done
	return 1
}

"$rigsh" check || exit $?
[ -x "$wake" ] || { echo "SKIP: $wake not built (no libdpdk)"; exit 77; }
for b in "$ferryd" "$ferryctl" "$rig"; do [ -x "$b" ] || { echo "FAIL: no $b"; exit 1; }; done

run=$(mktemp -d /tmp/ferry-ctrl-wake.XXXXXX)
chmod 755 "$run"
fpid=""
cleanup() {
	trap - EXIT INT TERM
	[ -n "$fpid" ] && kill -KILL "$fpid" 2>/dev/null
	"$rigsh" down
	if [ "$failed" -ne 0 ]; then
		for f in "$run"/*.log; do echo "---- $f"; tail -n 40 "$f"; done
	fi
	rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$rigsh" up
(umask 077; head -c 48 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$run/secret")
cat >"$run/wake.sh" <<SH
#!/bin/sh
exec $wake --secret $run/secret --ctl unix:$run/wake.sock --log-level info -- -l 1 --no-pci --no-huge \\
	-m 32 --no-shconf --log-level=lib.eal:warning --vdev=net_af_packet0,iface=acc0
SH
# The VM's resume: its address, its echo service, and its announcement (a
# gratuitous ARP); the hook returns once the bridge forwards the VM's MAC to
# the VM again, i.e. the VM announced itself.
cat >"$run/resume.sh" <<SH
#!/bin/sh
set -e
echo "\$FERRY_VM \$FERRY_NODE" >$run/resumed
ip -n ${P}vm addr add $VM_IP/24 dev vm0
ip netns exec ${P}vm $rig echo-server $VM_IP 7 >$run/echo.log 2>&1 &
for i in \$(seq 200); do
	ip netns exec ${P}vm ss -Hltn 'sport = :7' | grep -q LISTEN && break
	sleep 0.01
done
ip netns exec ${P}vm $rig garp vm0 $VM_IP
for i in \$(seq 100); do
	ip netns exec ${P}br bridge fdb show br br0 | grep -i "^$VM_MAC dev pv " >/dev/null && exit 0
	sleep 0.01
done
echo "resume: the bridge never learned $VM_MAC on pv" >&2
exit 1
SH
chmod +x "$run"/*.sh
cat >"$run/ferryd.conf" <<CONF
[ferryd]
name = acc
secret_file = $run/secret
roles = main,accept
wake_ctl = unix:$run/wake.sock
unix_socket = $run/ferryd.sock
[cluster]
coordinator = acc
report_interval_ms = 200
[node acc]
address = 127.0.0.1:22001
[child wake]
exec = $run/wake.sh
log = $run/wake.log
[vm vm-20]
ip = $VM_IP
mac = $VM_MAC
node = acc
state = hibernated
resume_cmd = $run/resume.sh
CONF

ip netns exec "${P}acc" "$ferryd" -c "$run/ferryd.conf" >"$run/ferryd.log" 2>&1 &
fpid=$!
wctl() { "$rig" ctl "$run/wake.sock" "$run/secret" "$@"; }
fdb_port() { ip netns exec "${P}br" bridge fdb show br br0 | awk -v m="$VM_MAC" 'tolower($1) == m { print $3; exit }'; }

require "ferryd supervises ferry-wake" wait_for 15 grep -q "ferry-wake up" "$run/wake.log"
require "ferry-wake got the hibernated VM and the accept role from ferryd" \
	wait_for 10 sh -c "'$rig' ctl '$run/wake.sock' '$run/secret' expect-stat role eq 1 expect-stat vms eq 1 >/dev/null 2>&1"
check "ferry-wake announced the VM's MAC: the bridge sends it to the accept node" wait_for 3 test "$(fdb_port)" = pa
check "ferryctl vms: vm-20 hibernated" test "$("$ferryctl" -s "$run/ferryd.sock" vms --json | jq -r '.vms[0].state')" = hibernated

t0=$(date +%s%N)
if ip netns exec "${P}client" "$rig" connect "$VM_IP" 7 1000 >"$run/connect.log" 2>&1; then
	pass "the client's connect() to the hibernated VM succeeds, no SYN retransmit ($(cat "$run/connect.log" | tr '\n' ' '))"
else
	fail "connect: $(cat "$run/connect.log")"
fi
t1=$(date +%s%N)
echo "  connect + wake + resume: $(((t1 - t0) / 1000000)) ms"
check "ferryd resumed the VM because it was accessed" grep -q "vm-20 accessed (SYN" "$run/ferryd.log"
check "the resume hook ran on the accept node" grep -qx "vm-20 acc" "$run/resumed"
check "VM_RUNNING went out after the resume hook (the VM had announced itself)" \
	sh -c "grep -n 'running on acc' '$run/ferryd.log' | head -1 | cut -d: -f1 | xargs -I{} awk 'NR > {} && /VM_RUNNING -> OK/ { f = 1 } END { exit !f }' '$run/ferryd.log'"
check "ferry-wake replayed the stored SYN once and forgot the VM" \
	sh -c "'$rig' ctl '$run/wake.sock' '$run/secret' expect-stat syn_replayed eq 1 expect-stat vms eq 0 expect-stat vm_running eq 1 >/dev/null"
check "ferryctl vms: vm-20 running on acc" \
	test "$("$ferryctl" -s "$run/ferryd.sock" vms --json | jq -r '.vms[0].state + "@" + .vms[0].node')" = running@acc

kill -TERM "$fpid"; wait "$fpid"; st=$?; fpid=""
check "ferryd exits 0 on SIGTERM" test "$st" = 0
check "ferry-wake was stopped with it" grep -q "child wake stopped" "$run/ferryd.log"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
