#!/usr/bin/env bash
# `ferryctl migrate` end to end on a 4-host netns cluster (tests/rigs/cluster):
# ferryd on every host, each supervising what the host needs (h1: the source
# ferry-pager, h2: the main host's ferry-pager, h3/h4: ferry-memsrv sub-hosts);
# guestsim, a real VM process, runs on h1 and writes while it moves. ferryctl
# asks h3's ferryd (not the source's: it relays), the source ferryd gets an
# ENDPOINT from h2's ferryd (which starts the destination shell from the VM's
# launch_incoming and prepares its pager), drives its pager and streams
# PROGRESS. The destination shell is guestsim --incoming with the same
# workload: resumed there with the source's device state, it checks every
# page (--check) and runs on.
#
#   ctrl_migrate.sh BUILD_DIR [MODE]      MODE: precopy (default), postcopy, planned, or
#                                         abort (a pre-copy over 100 Mbit/s links, aborted
#                                         by `ferryctl abort` from another node while it runs)
#
# Environment: FERRY_CLUSTER_PREFIX (default "ctrl-"). Ports 22001 (ferryd),
# 22101 (ferry-memsrv), 22201/22202 (pagers' migration listeners).
# Exit status: 0 passed, 1 failed, 2 usage, 77 skipped.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../../.." && pwd)
rig=$src/tests/rigs/cluster/cluster.sh
[ $# -ge 1 ] || { echo "usage: $0 BUILD_DIR [MODE]" >&2; exit 2; }
build=$1
mode=${2:-precopy}
export FERRY_CLUSTER_PREFIX=${FERRY_CLUSTER_PREFIX:-ctrl-}
ferryd=$build/ctrl/ferryd
ferryctl=$build/ctrl/ferryctl
memsrv=$build/dataplane/memsrv/ferry-memsrv
pager=$build/dataplane/pager/ferry-pager
guestsim=$build/tests/guestsim/guestsim
migtool=$build/tests/integration/migrate/migtool
MEM=128
VM=ctrlvm-1

. "$here/checks.sh"

out=$("$rig" check 2>&1); rc=$?
if [ $rc -eq 77 ]; then echo "$out"; exit 77; fi
[ $rc -eq 0 ] || { echo "$out"; exit 1; }
for b in "$ferryd" "$ferryctl" "$memsrv" "$pager" "$guestsim"; do
	[ -x "$b" ] || { echo "FAIL: no executable $b (build first)"; exit 1; }
done
[ -x "$migtool" ] || { echo "SKIP: no $migtool (dataplane/migrate not built)"; exit 77; }
command -v jq >/dev/null 2>&1 || { echo "SKIP: jq is needed"; exit 77; }

run=$(mktemp -d "${TMPDIR:-/tmp}/ferry-ctrl-mig.XXXXXX")
chmod 755 "$run"
declare -A pid
cleanup() {
	trap - EXIT INT TERM
	for h in "${!pid[@]}"; do kill -KILL "${pid[$h]}" 2>/dev/null; done
	pkill -KILL -f -- "--vm-id $VM " 2>/dev/null
	"$rig" down >/dev/null 2>&1
	if [ "$failed" -ne 0 ]; then
		for f in "$run"/*.log; do echo "---- $f"; tail -n 30 "$f"; done
	fi
	rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rate=2gbit
[ "$mode" = abort ] && rate=100mbit   # ~10 s of page data: time to abort before the switch-over
"$rig" up 4 --rate $rate >/dev/null || { echo "FAIL: cluster up"; exit 1; }
(umask 077; head -c 48 /dev/urandom | base64 -w0 >"$run/secret")

# What each host runs, as ferryd children (short exec lines: inih reads 198 characters).
cat >"$run/memsrv.conf" <<CONF
[server]
listen = 0.0.0.0
port = 22101
secret_file = $run/secret
[pool]
size = 128M
hugepages = off
prefault = no
CONF
cat >"$run/pager-src.sh" <<SH
#!/bin/sh
exec $pager --socket $run/src.sock --allow uid:0 --secret-file $run/secret \\
	--migrate-socket $run/src-mig.sock --migrate-listen 10.77.0.1 --migrate-port 22201 --log-level info
SH
# The main host's pager needs its memory servers up when it starts (it does not retry them).
cat >"$run/pager-main.sh" <<SH
#!/bin/bash
for i in \$(seq 100); do
	(: </dev/tcp/10.77.0.3/22101) 2>/dev/null && (: </dev/tcp/10.77.0.4/22101) 2>/dev/null && break
	sleep 0.1
done
exec $pager --socket $run/main.sock --allow uid:0 --secret-file $run/secret \\
	--servers 10.77.0.3:22101,10.77.0.4:22101 --migrate-socket $run/main-mig.sock \\
	--migrate-listen 10.77.0.2 --migrate-port 22202 --log-level info
SH
# The destination VM shell ferryd starts on the main host (launch_incoming): the
# same workload, started empty, resumed by the pager, every page checked. It
# tells ferryd it registered with the pager by creating FERRY_READY_FILE (here:
# once the main pager logged the registration).
# MIG_EXTRA: more guestsim workload flags, e.g. "--free-report 5 --free-via madvise --free-every 10000".
WORKLOAD="--mem ${MEM}M --pattern boot --touched 70 --write-pct 30 --seed 7 ${MIG_EXTRA:-}"
cat >"$run/shell.sh" <<SH
#!/bin/sh
$guestsim --pager $run/main.sock --vm-id \$FERRY_VM $WORKLOAD --incoming 1 --duration 2 --check \\
	--timeout 60 >$run/dest.log 2>&1 &
shell=\$!
for i in \$(seq 300); do
	grep -q "vm \$FERRY_VM (handle" $run/pager-main.log && { touch "\$FERRY_READY_FILE"; break; }
	kill -0 \$shell 2>/dev/null || break
	sleep 0.02
done
wait \$shell
echo \$? >$run/dest.rc
SH
chmod +x "$run"/*.sh

cat >"$run/cluster.conf" <<CONF
[ferryd]
secret_file = $run/secret
roles = sub,main,accept
[cluster]
coordinator = h1
report_interval_ms = 200
# Down after 3 s without a report: a loaded test machine may starve a ferryd for a second; a
# loop blocked on a busy pager (what the poller thread prevents) stalls for longer.
down_after_ms = 3000
[node h1]
address = 10.77.0.1:22001
[node h2]
address = 10.77.0.2:22001
[node h3]
address = 10.77.0.3:22001
memsrv = 10.77.0.3:22101
[node h4]
address = 10.77.0.4:22001
memsrv = 10.77.0.4:22101
[child memsrv]
nodes = h3,h4
exec = $memsrv -c $run/memsrv.conf
log = $run/memsrv.log
[child pager-src]
nodes = h1
exec = $run/pager-src.sh
log = $run/pager-src.log
[child pager-main]
nodes = h2
exec = $run/pager-main.sh
log = $run/pager-main.log
[vm $VM]
ip = 10.77.0.60
mac = 02:77:00:00:00:60
node = h1
launch_incoming = $run/shell.sh
CONF

ctl() { local h=$1; shift; "$ferryctl" -s "$run/$h.sock" "$@"; }
wait_for() {
	local t=$(($1 * 10)); shift
	while [ $t -gt 0 ]; do "$@" && return 0; sleep 0.1; t=$((t - 1)); done
	return 1
}
nodes_up() { [ "$(ctl h1 nodes --json 2>/dev/null | jq '[.nodes[] | select(.state == "up")] | length')" = 4 ]; }

for i in 1 2 3 4; do
	mig=""
	[ $i = 1 ] && mig="--migrate-socket $run/src-mig.sock"
	[ $i = 2 ] && mig="--migrate-socket $run/main-mig.sock"
	# shellcheck disable=SC2086
	"$rig" exec h$i "$ferryd" -c "$run/cluster.conf" --name h$i --unix-socket "$run/h$i.sock" $mig \
		>>"$run/ferryd-h$i.log" 2>&1 &
	pid[h$i]=$!
done
require "four ferryds registered" wait_for 10 nodes_up
require "the pagers' migration sockets are up" wait_for 10 test -S "$run/src-mig.sock" -a -S "$run/main-mig.sock"
require "both memory servers run under supervision" wait_for 10 sh -c \
	"[ \$('$ferryctl' -s '$run/h3.sock' status --json | jq -r '.children[0].state') = running ] && [ \$('$ferryctl' -s '$run/h4.sock' status --json | jq -r '.children[0].state') = running ]"

# The VM: guestsim on the source pager, writing while it runs.
# shellcheck disable=SC2086
"$rig" exec h1 "$guestsim" --pager "$run/src.sock" --vm-id "$VM" $WORKLOAD --duration 600 >"$run/guest.log" 2>&1 &
pid[guest]=$!
gpid=""
for _ in $(seq 100); do
	gpid=$(pgrep -f -- "--vm-id $VM " | head -n 1)
	[ -n "$gpid" ] && break
	sleep 0.05
done
require "guestsim runs on h1" test -n "$gpid"
echo "$gpid" >"$run/gpid"
sleep 1.5

check "vm $VM runs on h1" test "$(ctl h3 vms --json | jq -r '.vms[0].state + "@" + .vms[0].node')" = running@h1
if [ "$mode" = abort ]; then
	"$ferryctl" -s "$run/h3.sock" migrate "$VM" --to h2 --sub-hosts h3,h4 --budget 40M --mode precopy \
		>"$run/progress.txt" 2>"$run/ferryctl.err" &
	mpid=$!
	check "the migration runs (pre-copy phase streamed)" wait_for 20 grep -q ' precopy ' "$run/progress.txt"
	check "ferryctl abort from h4 (relayed to the source h1) is accepted" \
		sh -c "'$ferryctl' -s '$run/h4.sock' abort $VM | grep -qx ok"
	wait "$mpid"; mrc=$?
	echo "  ferryctl migrate: exit $mrc; last: $(tail -n 1 "$run/progress.txt")"
	check "ferryctl migrate ends with exit 1 and a final 'aborted'" \
		sh -c "[ $mrc = 1 ] && tail -n 1 '$run/progress.txt' | grep -q ' aborted '"
	check "the VM is still placed on h1, running, in every view" wait_for 5 sh -c \
		"[ \$('$ferryctl' -s '$run/h4.sock' vms --json | jq -r '.vms[0].state + \"@\" + .vms[0].node') = running@h1 ]"
	check "the VM itself runs on at the source" kill -0 "$gpid"
	check "the main host stops the incoming shell that waited for the VM" \
		wait_for 5 grep -q "stopping the incoming shell" "$run/ferryd-h2.log"
	no_dest() { ! pgrep -f -- "[-]-vm-id $VM .*--incoming" >/dev/null; }
	check "the destination guestsim is gone" wait_for 5 no_dest
	check "no migration counted, one operation failed" \
		test "$(ctl h1 stats --json | jq '[.migrations, .ops_failed] | tostring')" = '"[0,1]"'
else
# The three ways ferryctl shows a migration: plain lines (precopy), the bar on a TTY
	# (postcopy, through script(1)), JSON lines (planned).
	mig=("$ferryctl" -s "$run/h3.sock" migrate "$VM" --to h2 --sub-hosts h3,h4 --budget 40M --mode "$mode")
	t0=$(date +%s%N)
	case $mode in
	postcopy) script -qefc "${mig[*]}" /dev/null >"$run/progress.tty" 2>"$run/ferryctl.err"; mrc=$?
		  tr '\r' '\n' <"$run/progress.tty" | sed 's/\x1b\[K//g' | grep . >"$run/progress.txt" ;;
	planned)  "${mig[@]}" --json >"$run/progress.json" 2>"$run/ferryctl.err"; mrc=$?
		  jq -r '"\(.vm) \(.phase) round=\(.round) sent=\(.pages_sent) skipped=\(.pages_skipped) percent=\(.percent)"' \
			"$run/progress.json" >"$run/progress.txt" ;;
	*)        "${mig[@]}" >"$run/progress.txt" 2>"$run/ferryctl.err"; mrc=$? ;;
	esac
	t1=$(date +%s%N)
	echo "  ferryctl: exit $mrc in $(((t1 - t0) / 1000000)) ms; last: $(tail -n 1 "$run/progress.txt")"
	cat "$run/ferryctl.err"
	check "ferryctl migrate exits 0" test "$mrc" = 0
	check "PROGRESS streamed: preparing first, done last" \
		sh -c "head -n 1 '$run/progress.txt' | grep -q ' preparing ' && tail -n 1 '$run/progress.txt' | grep -q ' done '"
	tty_bar() { grep -q $'\r' "$run/progress.tty" && tail -n 1 "$run/progress.txt" | grep -q '\[#\{30\}\] 100%'; }
	[ "$mode" = postcopy ] && check "on a TTY: a bar redrawn in place, full at the end" tty_bar
	[ "$mode" = planned ] && check "--json: one JSON line per PROGRESS, the last one final" \
		test "$(jq -s 'last.final and (map(.final) | map(select(.)) | length) == 1' "$run/progress.json")" = true
	sent=$(tail -n 1 "$run/progress.txt" | grep -oE 'sent [0-9]+|sent=[0-9]+' | grep -oE '[0-9]+')
	skipped=$(tail -n 1 "$run/progress.txt" | grep -oE 'skipped [0-9]+|skipped=[0-9]+' | grep -oE '[0-9]+')
	check "unused pages were never sent ($skipped skipped)" test "${skipped:-0}" -gt 0
	# Pre-copy moves the data before the switch-over, as the source counts it; post-copy and planned
	# move (some of) it afterwards, which the source's final progress does not count.
	[ "$mode" = precopy ] && check "pages were sent before the switch-over ($sent)" test "${sent:-0}" -gt 0
	check "the destination shell was started by h2's ferryd" grep -q "incoming VM shell started" "$run/ferryd-h2.log"
	check "the destination VM checked every page and ran there (guestsim --incoming --check exit 0)" \
		wait_for 60 sh -c "[ \"\$(cat '$run/dest.rc' 2>/dev/null)\" = 0 ]"
	check "the VM is placed on h2 in every view" wait_for 5 sh -c \
		"[ \$('$ferryctl' -s '$run/h4.sock' vms --json | jq -r '.vms[0].state + \"@\" + .vms[0].node') = running@h2 ]"
	check "the source counted the migration" test "$(ctl h1 stats --json | jq .migrations)" = 1
	check "abort of a VM that is not migrating: BAD_STATE, relayed to its node" \
		sh -c "'$ferryctl' -s '$run/h1.sock' abort $VM 2>&1 | grep -q 'is not migrating'"
	
fi

check "no node was marked down meanwhile (the coordinator's loop never stalled)" \
	test "$(ctl h1 stats --json | jq .nodes_down)" = 0

for h in h1 h2 h3 h4; do
	kill -TERM "${pid[$h]}"; wait "${pid[$h]}"; st=$?; unset "pid[$h]"
	check "ferryd $h exits 0 on SIGTERM" test "$st" = 0
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
