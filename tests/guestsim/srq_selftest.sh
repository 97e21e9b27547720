#!/usr/bin/env bash
# Server requests over the real socket: the real pager code
# (guestsim-pager-driver = ferry_pager_core + a stdin driver of
# dataplane/pager/vmm_requests.h, standing in for the migration engine), a
# real ferry-memsrv, and guestsim processes as the VMMs.
#   1. pause -> device state in the pager -> resume (reloading the state from
#      the pager) on the same host; DROP_PTES of half of guest RAM under the
#      running guest (memfd data survives, minor faults follow); a DROP_PTES
#      outside guest RAM is refused; a second pause/resume; the run ends with
#      --check of every page and counts 2 pauses, 2 resumes, 1 DROP_PTES.
#   2. a one-host migration: guestsim --incoming 42 registers as a parked
#      shell (the driver's incoming hook takes it), the source is paused, its
#      device state and memory file are copied, the source gets the
#      migrated-away NOTICE and exits 0, the shell is unparked and resumed
#      with the state and verifies every page with --check (2 vCPUs, zipf).
#      Both guests register their RAM as 2 regions (--regions 2: the second at
#      file offset 32M, gpa 32M + 512M): a DROP_PTES in the second region is
#      served, one in the guest-physical hole between them is refused.
#   3. failures: an incoming shell without an engine is refused; a stopped
#      VMM (SIGSTOP) makes PAUSE time out (counted), its late answer is
#      counted as a bad reply and it can still be resumed; a VMM killed while
#      a PAUSE is outstanding completes it with ECONNRESET.
#
#   srq_selftest.sh GUESTSIM PAGER_DRIVER MEMSRV
set -uo pipefail

gs=${1:?usage: srq_selftest.sh GUESTSIM PAGER_DRIVER MEMSRV}
drv=${2:?}
memsrv=${3:?}
for b in "$gs" "$drv" "$memsrv"; do
	[ -x "$b" ] || { echo "srq_selftest: $b is not built"; exit 1; }
done
dir=$(mktemp -d "${TMPDIR:-/tmp}/guestsim-srq.XXXXXX")
pids=()
fails=0

cleanup() {
	exec 3>&- 2>/dev/null
	for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	if [ $fails -ne 0 ]; then
		for l in "$dir"/*.log "$dir"/drv.out; do echo "--- $l (last 20 lines)"; tail -n 20 "$l"; done
	fi
	rm -rf "$dir"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

(umask 077 && head -c 48 /dev/urandom | base64 -w0 >"$dir/secret")
"$memsrv" --listen 127.0.0.1 --port 0 --secret-file "$dir/secret" --ready-file "$dir/memsrv.port" \
	--pool-size 128M >"$dir/memsrv.log" 2>&1 &
pids+=($!)
for _ in $(seq 600); do [ -s "$dir/memsrv.port" ] && break; sleep 0.05; done
port=$(grep -oE '[0-9]+' "$dir/memsrv.port" 2>/dev/null | head -n1)
[ -n "$port" ] || { fail "ferry-memsrv not ready"; exit 1; }

mkfifo "$dir/drv.in"
"$drv" --socket "$dir/pager.sock" --allow "uid:$(id -u)" --servers "127.0.0.1:$port" \
	--secret-file "$dir/secret" <"$dir/drv.in" >"$dir/drv.out" 2>"$dir/pager.log" &
drv_pid=$!
pids+=($drv_pid)
exec 3>"$dir/drv.in"
for _ in $(seq 600); do [ -S "$dir/pager.sock" ] && break; sleep 0.05; done
[ -S "$dir/pager.sock" ] || { fail "pager driver not listening"; exit 1; }

nlines=0
# cmd LINE: send a command. expect PATTERN [SECONDS]: wait for the next output line
# matching PATTERN (an awk regex anchored at the start) and put it in $line;
# lines before it are skipped. ask LINE PATTERN: both.
cmd() { echo "$*" >&3; }
expect() {
	local pat=$1 secs=${2:-20} n
	line=""
	for _ in $(seq $((secs * 20))); do
		n=$(awk -v start=$((nlines + 1)) -v pat="^$pat" 'NR >= start && $0 ~ pat { print NR; exit }' "$dir/drv.out")
		if [ -n "$n" ]; then
			line=$(sed -n "${n}p" "$dir/drv.out")
			nlines=$n
			return 0
		fi
		sleep 0.05
	done
	line="TIMEOUT waiting for '$pat'"
	return 1
}
ask() { cmd "$1"; expect "$2" "${3:-20}"; }
# registered VM: wait until the pager knows VM
registered() {
	for _ in $(seq 200); do
		ask "parked $1" "(parked $1|error parked)" 5
		[[ $line == "parked $1 "* ]] && return 0
		sleep 0.05
	done
	return 1
}
jnum() { sed -n "s/^ *\"$2\": *\([0-9][0-9]*\).*/\1/p" "$1" | head -n1; }
jbool() { sed -n "s/^ *\"$2\": *\([a-z]*\).*/\1/p" "$1" | head -n1; }
verified() { # name: guestsim's JSON says every page was verified
	[ "$(jbool "$dir/$1.json" passed)" = true ] && [ "$(jbool "$dir/$1.json" checked_all)" = true ]
}

common=(--pager "$dir/pager.sock" --mem 64M --check --timeout 90 --json)

# ---- 1. pause / state / resume on the same host, DROP_PTES under a running guest
"$gs" "${common[@]}" "$dir/a.json" --vm-id gsA --duration 4 --pattern uniform --write-pct 50 --seed 11 \
	>"$dir/a.out" 2>"$dir/a.log" &
a_pid=$!
pids+=($a_pid)
registered gsA || fail "gsA never registered"
sleep 0.5
# 64 MiB: 16384 pages -> 8 * (6 + 24 + 16384) + 16384 bytes of device state
ask "pause gsA" "done pause gsA"
[ "$line" = "done pause gsA 0 state=147696" ] || fail "pause gsA: $line"
sleep 0.3
ask "resume gsA load" "done resume gsA"
[ "$line" = "done resume gsA 0" ] || fail "resume gsA load: $line"
sleep 0.3
ask "drop gsA 0 0x2000000" "done drop gsA"
[ "$line" = "done drop gsA 0" ] || fail "drop gsA: $line"
ask "drop gsA 0x4000000 0x1000" "done drop gsA"
[ "$line" = "done drop gsA ERANGE" ] || fail "drop beyond guest RAM: $line"
sleep 0.3
ask "pause gsA" "done pause gsA"
[ "$line" = "done pause gsA 0 state=147696" ] || fail "second pause gsA: $line"
ask "resume gsA" "done resume gsA"
[ "$line" = "done resume gsA 0" ] || fail "second resume gsA: $line"
wait $a_pid
rc=$?
if [ $rc -ne 0 ] || ! verified a; then
	fail "gsA: exit $rc, verification $(sed -n '/"verification"/,/}/p' "$dir/a.json" | tr -d '\n ')"
elif [ "$(jnum "$dir/a.json" pauses)" != 2 ] || [ "$(jnum "$dir/a.json" resumes)" != 2 ] ||
     [ "$(jnum "$dir/a.json" drop_ptes)" != 1 ] || [ "$(jnum "$dir/a.json" drop_ptes_bytes)" != 33554432 ]; then
	fail "gsA counted $(grep -E '"(pauses|resumes|drop_ptes|drop_ptes_bytes)"' "$dir/a.json" | tr -d '\n ')"
else
	echo "ok 1: pause/state/resume, DROP_PTES 32 MiB, $(jnum "$dir/a.json" ops) ops, all pages verified"
fi

# ---- 2. a one-host migration into an incoming shell
ask "incoming accept" "ok"
"$gs" "${common[@]}" "$dir/s.json" --vm-id gsS --duration 3 --pattern zipf --vcpus 2 --seed 5 --regions 2 \
	>"$dir/s.out" 2>"$dir/s.log" &
s_pid=$!
pids+=($s_pid)
registered gsS || fail "gsS never registered"
"$gs" "${common[@]}" "$dir/d.json" --vm-id gsD --duration 3 --pattern zipf --vcpus 2 --seed 5 --regions 2 --incoming 42 \
	>"$dir/d.out" 2>"$dir/d.log" &
d_pid=$!
pids+=($d_pid)
expect "incoming gsD"
[ "$line" = "incoming gsD 42" ] || fail "incoming hook: $line"
ask "parked gsD" "parked gsD"
[ "$line" = "parked gsD 1" ] || fail "gsD not parked: $line"
# gpa 0x22000000 = 32M + 512M: the second region; [32M, 32M + 512M) is the hole between them
ask "drop gsS 0x22000000 0x2000000" "done drop gsS"
[ "$line" = "done drop gsS 0" ] || fail "drop in the second region: $line"
ask "drop gsS 0x2000000 0x1000" "done drop gsS"
[ "$line" = "done drop gsS ERANGE" ] || fail "drop in the hole between the regions: $line"
sleep 1
ask "pause gsS" "done pause gsS"
[[ $line == "done pause gsS 0 state="* ]] || fail "pause gsS: $line"
ask "copy gsS gsD" "copy gsS"
[[ $line == "copy gsS gsD 0 bytes="* ]] || fail "copy: $line"
ask "notice gsS" "notice gsS"
[ "$line" = "notice gsS 0" ] || fail "notice: $line"
wait $s_pid
rc=$?
{ [ $rc -eq 0 ] && grep -q "migrated away" "$dir/s.log"; } || fail "source: exit $rc, no 'migrated away' line"
ask "unpark gsD" "unpark gsD"
[ "$line" = "unpark gsD 0" ] || fail "unpark: $line"
ask "resume gsD load" "done resume gsD"
[ "$line" = "done resume gsD 0" ] || fail "resume gsD: $line"
wait $d_pid
rc=$?
if [ $rc -ne 0 ] || ! verified d || [ "$(jbool "$dir/d.json" migrated_in)" != true ]; then
	fail "destination: exit $rc, $(grep -E '"(migrated_in|passed|checked_all|first_error)"' "$dir/d.json" | tr -d '\n')"
else
	echo "ok 2: one-host migration of a 2-region guest, $(jnum "$dir/d.json" ops) ops in total, every page verified at the destination"
fi

# ---- 3. failures
ask "incoming none" "ok"
"$gs" "${common[@]}" "$dir/n.json" --vm-id gsN --duration 1 --incoming 43 >"$dir/n.out" 2>"$dir/n.log"
rc=$?
{ [ $rc -eq 1 ] && grep -q "no migration engine" "$dir/n.log"; } || fail "incoming without engine: exit $rc"

"$gs" "${common[@]}" "$dir/t.json" --vm-id gsT --duration 3 --seed 3 >"$dir/t.out" 2>"$dir/t.log" &
t_pid=$!
pids+=($t_pid)
registered gsT || fail "gsT never registered"
ask "timeout 500" "ok"
kill -STOP $t_pid
ask "pause gsT" "done pause gsT"
[ "$line" = "done pause gsT ETIMEDOUT state=0" ] || fail "pause of a stopped VMM: $line"
kill -CONT $t_pid
sleep 1   # it answers late: the pager counts a bad reply; the guest stays paused until RESUME
ask "timeout 10000" "ok"
ask "resume gsT" "done resume gsT"
[ "$line" = "done resume gsT 0" ] || fail "resume after the timeout: $line"
wait $t_pid
rc=$?
{ [ $rc -eq 0 ] && verified t; } || fail "gsT after a timed-out pause: exit $rc"

"$gs" "${common[@]}" "$dir/k.json" --vm-id gsK --duration 20 --seed 4 >"$dir/k.out" 2>"$dir/k.log" &
k_pid=$!
pids+=($k_pid)
registered gsK || fail "gsK never registered"
kill -STOP $k_pid
cmd "pause gsK"
sleep 0.3
kill -KILL $k_pid
expect "done pause gsK"
[ "$line" = "done pause gsK ECONNRESET state=0" ] || fail "pause of a VMM that died: $line"
wait $k_pid 2>/dev/null

ask "counters" "counters"
echo "$line"
# refused: the DROP_PTES beyond guest RAM (1) and the one in the hole between the regions (2)
for want in timeouts=1 bad_replies=1 incoming=1 incoming_refused=1 refused=2; do
	[[ " $line " == *" $want "* ]] || fail "counters: want $want"
done
[ $fails -eq 0 ] && echo "ok 3: refused incoming shell, timeout, late answer, VMM death"

exec 3>&-
kill -TERM $drv_pid
wait $drv_pid
rc=$?
[ $rc -eq 0 ] || fail "pager driver exit $rc on SIGTERM"
[ $fails -eq 0 ] && echo "srq_selftest: all passed"
exit $((fails != 0))
