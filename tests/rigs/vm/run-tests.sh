#!/bin/bash
# tests/rigs/vm/run-tests.sh BUILD_DIR CASE — hibernation of real QEMU (TCG) guests into a real
# memory server (ferry-memsrv), driven by ferry-hib, checked by a client in its own namespace.
#
#   boot     a guest boots; its echo service answers a client in another namespace; idle
#            detection: quiet -> idle, traffic -> busy, no guest agent -> said so
#   cycle    512 MiB guest: a TCP connection held open across hibernate/resume still echoes; a
#            new connection after resume echoes; the RAM file is gone while hibernated; only
#            used pages are in the pool (stored << guest size); 'mem N' data survives ('sum')
#   restart  nothing lost when the process that hibernated ends (as a ferryd restart would end
#            it): the manifest (0600: it holds the claim tokens of the kept extents) is
#            persisted, a new process sees the VM hibernated and resumes it, memory intact
#            ('sum'); then a lone 'ferry-hib hibernate' and a resume by another process under
#            another client name, configured with another pool ("another node": the manifest
#            names the memory server): memory intact again, the image freed after;
#            a spent manifest (an old copy) is refused with a clear error, nothing half-done
#   bad      pool too small -> hibernate fails, VM runs on; a busy VM refuses a second operation;
#            memory server dead during resume -> clear error, VM still hibernated; QEMU missing
#            -> clear error, retry works; corrupt manifest -> refused, restored -> resumes
#
# Exit 77 when namespaces/taps/QEMU cannot be used here. Namespaces: FERRY_VM_RIG_PREFIX (hib-).
# Memory server port: FERRY_VM_RIG_PORT (default 25100).
set -eu

BUILD=$(cd "${1:?usage: run-tests.sh BUILD_DIR CASE}" && pwd)
CASE=${2:?usage: run-tests.sh BUILD_DIR CASE}
RIG_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RIG=$RIG_DIR/rig.sh
HIB=$BUILD/ctrl/ferry-hib
MEMSRV=$BUILD/dataplane/memsrv/ferry-memsrv
CLIENT=$BUILD/tests/rigs/vm/vm_client
PORT=${FERRY_VM_RIG_PORT:-25100}
P=${FERRY_VM_RIG_PREFIX:-hib-}
GUEST_IP=10.97.0.20
GUEST_PORT=7000

"$RIG" check
for b in "$HIB" "$MEMSRV" "$CLIENT"; do [ -x "$b" ] || { echo "FAIL: missing $b (build first)"; exit 1; }; done
"$RIG" prepare

T=$(mktemp -d /tmp/ferry-vmrig.XXXXXX)
# Guest RAM files in a tmpfs directory of this run: several suites may run the rig at once, and
# a VM's RAM file is named after the VM (vm0).
RAMD=$(mktemp -d /dev/shm/ferry-vmrig.XXXXXX)
fails=0
MEMSRV_PID=""
SHELL_PID=""
cleanup() {
	local rc=$?
	set +e
	[ -n "$SHELL_PID" ] && { echo quit >&"${SH[1]}"; wait "$SHELL_PID"; } 2>/dev/null
	for s in "$T"/state/*.vm.json; do
		[ -e "$s" ] && "$HIB" --state "$T/state" --ram-dir "$RAMD" --pool "127.0.0.1:$PORT" --secret "$T/secret" destroy "$(basename "$s" .vm.json)" 2>/dev/null
	done
	[ -n "$MEMSRV_PID" ] && kill "$MEMSRV_PID" 2>/dev/null && wait "$MEMSRV_PID" 2>/dev/null
	"$RIG" down
	rm -rf "$RAMD"
	if [ "$rc" = 0 ] && [ "$fails" = 0 ]; then rm -rf "$T"; else echo "kept: $T"; fi
}
trap cleanup EXIT

pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
jget() { sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$2"; }

(umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/secret")
start_memsrv() {
	rm -f "$T/memsrv.port"
	"$MEMSRV" -p "$PORT" -s "$T/secret" -m 1G --prefault no --hugepages off -r "$T/memsrv.port" \
		>>"$T/memsrv.log" 2>&1 &
	MEMSRV_PID=$!
	for _ in $(seq 100); do [ -s "$T/memsrv.port" ] && return 0; sleep 0.05; done
	echo "FAIL memory server did not start: $(tail -3 "$T/memsrv.log")"; exit 1
}
hib() { "$HIB" --state "$T/state" --ram-dir "$RAMD" --pool "127.0.0.1:$PORT" --secret "$T/secret" "$@"; }

# One ferry-hib session (as ferryd holds one): commands in, one reply line out.
shell_start() { coproc SH { hib shell 2>>"$T/shell.err"; }; SHELL_PID=$SH_PID; }
shell_stop() { echo quit >&"${SH[1]}"; wait "$SHELL_PID" 2>/dev/null || true; SHELL_PID=""; }
sh_cmd() {	# command -> REPLY (one line)
	echo "$1" >&"${SH[1]}"
	REPLY=""
	read -r -t 120 REPLY <&"${SH[0]}" || REPLY="error: no reply from ferry-hib shell"
	echo "  ferry-hib: $1 -> ${REPLY:0:300}"
}

vm_define_start() {	# name index ram
	local -a args
	mapfile -t args < <("$RIG" qemu-args "$2" "$T")
	hib define "$1" --ram "$3" -- "${args[@]}"
	hib start "$1" >/dev/null
	for _ in $(seq 200); do grep -q 'FERRY-VM READY' "$T/vm$2.console" 2>/dev/null && return 0; sleep 0.05; done
	echo "FAIL guest $1 did not come up: $(tail -3 "$T/vm$2.console" 2>/dev/null)"; exit 1
}
client() { ip netns exec "${P}client" "$CLIENT" "$@"; }
qemu_pid() { hib status "$1" | sed -n 's/.*"pid":\([0-9]*\).*/\1/p'; }
ram_file() { echo "$RAMD/$1.ferry-ram"; }
# Alive = exists and is not a zombie (a QEMU whose starter exited is reparented; a zombie holds
# no memory and waits for its new parent to reap it).
qemu_alive() { [ -r "/proc/$1/stat" ] && ! awk '{ s = $0; sub(/.*\) /, "", s); exit !(substr(s, 1, 1) == "Z") }' "/proc/$1/stat"; }
export -f qemu_alive

case "$CASE" in
boot)
	"$RIG" up 1
	start_memsrv
	vm_define_start vm0 0 128M
	out=$(client -t 10 "$GUEST_IP" "$GUEST_PORT" hello-from-the-client "mem 4" sum 2>&1) || true
	check "echo service in the guest answers a client in another namespace" grep -qx hello-from-the-client <<<"$out"
	check "'mem 4' fills 4 MiB and 'sum' checksums it" grep -q '^sum [0-9a-f]\{16\} 4$' <<<"$out"
	check "status: running with a pid" test -n "$(qemu_pid vm0)"
	# Quiet for the window: idle (QEMU under TCG keeps some CPU for its timers: threshold 60%).
	rc=0; out=$(hib idle vm0 --tap vt0 --window 1.5 --cpu-max 60 --qga "$T/no-such-agent.sock") || rc=$?
	echo "  idle (quiet): $out"
	check "idle: no packets on the tap -> idle (exit 0)" test "$rc" = 0
	check "idle: absent guest agent reported, does not forbid" \
		bash -c "grep -q '\"agent\":false' <<<'$out' && grep -q 'no guest agent' <<<'$out'"
	# Traffic during the window: busy.
	( for i in $(seq 20); do client -t 5 "$GUEST_IP" "$GUEST_PORT" "ping$i" >/dev/null 2>&1; sleep 0.05; done ) &
	tp=$!
	rc=0; out=$(hib idle vm0 --tap vt0 --window 1 --cpu-max 60) || rc=$?
	wait "$tp" || true
	echo "  idle (traffic): $out"
	check "idle: packets on the tap -> busy (exit 1, net_idle false)" \
		bash -c "[ $rc = 1 ] && grep -q '\"net_idle\":false' <<<'$out'"
	# A guest busy computing (checksumming 30 MiB, 60 times): its QEMU's CPU is over 2%.
	mapfile -t sums < <(for _ in $(seq 60); do echo sum; done)
	( client -t 30 "$GUEST_IP" "$GUEST_PORT" "mem 30" "${sums[@]}" >/dev/null 2>&1 ) &
	tp=$!
	sleep 0.2
	rc=0; out=$(hib idle vm0 --tap vt0 --window 1 --cpu-max 2) || rc=$?
	wait "$tp" || true
	echo "  idle (guest computing): $out"
	check "idle: QEMU's CPU above the threshold -> busy (cpu_idle false)" \
		bash -c "[ $rc = 1 ] && grep -q '\"cpu_idle\":false' <<<'$out'"
	;;
cycle)
	"$RIG" up 1
	start_memsrv
	vm_define_start vm0 0 512M
	shell_start
	out=$(client "$GUEST_IP" "$GUEST_PORT" "mem 20" 2>&1) || true
	sum_before=$(client "$GUEST_IP" "$GUEST_PORT" sum 2>&1) || true
	check "guest filled 20 MiB ($sum_before)" grep -q '^sum [0-9a-f]\{16\} 20$' <<<"$sum_before"
	# A connection held open across the hibernation.
	mkfifo "$T/hold.in" "$T/hold.out"
	ip netns exec "${P}client" "$CLIENT" -H -t 30 "$GUEST_IP" "$GUEST_PORT" <"$T/hold.in" >"$T/hold.out" 2>&1 &
	hold_pid=$!
	exec {hin}>"$T/hold.in" {hout}<"$T/hold.out"
	echo before-hibernation >&"$hin"
	read -r -t 10 l1 <&"$hout" || l1=""
	check "held connection echoes before hibernation" test "$l1" = before-hibernation
	pid=$(qemu_pid vm0)
	sh_cmd "hibernate vm0"
	check "hibernate succeeds" grep -q '^ok ' <<<"$REPLY"
	stored=$(jget stored_bytes "$REPLY"); ram=$(jget ram_bytes "$REPLY"); pages=$(jget stored_pages "$REPLY")
	zero=$(jget zero_pages "$REPLY"); data=$(jget data_pages "$REPLY")
	echo "  pool holds $stored bytes ($pages pages) of a $ram-byte guest; data pages $data, of which zero $zero"
	check "RAM file gone after hibernate" test ! -e "$(ram_file vm0)"
	check "QEMU gone after hibernate" bash -c "! qemu_alive $pid"
	check "state: hibernated" bash -c "hib() { \"$HIB\" --state '$T/state' \"\$@\"; }; hib status vm0 | grep -q hibernated"
	check "only used pages in the pool: stored bytes < 1/4 of the guest" test "$stored" -lt $((ram / 4))
	check "the 20 MiB filled are in the pool (stored pages >= 5120)" test "$pages" -ge 5120
	check "holes and zero pages not stored: stored pages = data pages - zero pages" \
		test "$pages" -eq $((data - zero))
	sh_cmd "resume vm0"
	check "resume succeeds" grep -q '^ok ' <<<"$REPLY"
	echo after-resume >&"$hin"
	read -r -t 20 l2 <&"$hout" || l2=""
	check "held connection still echoes after resume" test "$l2" = after-resume
	exec {hin}>&- {hout}<&-
	wait "$hold_pid" 2>/dev/null || true
	out=$(client -t 10 "$GUEST_IP" "$GUEST_PORT" new-connection-after-resume 2>&1) || true
	check "a new connection after resume gets its echo" grep -qx new-connection-after-resume <<<"$out"
	sum_after=$(client "$GUEST_IP" "$GUEST_PORT" sum 2>&1) || true
	check "guest data survived ($sum_after = $sum_before)" test "$sum_after" = "$sum_before"
	alloc=$(( $(stat -c %b "$(ram_file vm0)") * $(stat -c %B "$(ram_file vm0)") ))
	echo "  resumed RAM file: $alloc bytes allocated of $ram"
	check "resumed RAM file keeps unused pages as holes (allocated <= stored + 16 MiB of guest activity)" \
		test "$alloc" -le $((stored + (16 << 20)))
	# And again: a second hibernate/resume of the same VM.
	sh_cmd "hibernate vm0"; r1=$REPLY
	sh_cmd "resume vm0"; r2=$REPLY
	out=$(client -t 10 "$GUEST_IP" "$GUEST_PORT" second-cycle sum 2>&1) || true
	check "second cycle: echo and data intact" \
		bash -c "grep -q '^ok ' <<<'$r1' && grep -q '^ok ' <<<'$r2' && grep -qx second-cycle <<<'$out' && grep -qx '$sum_before' <<<'$out'"
	shell_stop
	;;
restart)
	"$RIG" up 1
	start_memsrv
	vm_define_start vm0 0 128M
	client "$GUEST_IP" "$GUEST_PORT" "mem 2" >/dev/null
	sum0=$(client "$GUEST_IP" "$GUEST_PORT" sum 2>&1) || true
	check "guest filled 2 MiB ($sum0)" grep -q '^sum [0-9a-f]\{16\} 2$' <<<"$sum0"
	shell_start
	sh_cmd "hibernate vm0"
	check "hibernate (session A)" grep -q '^ok ' <<<"$REPLY"
	shell_stop	# session A ends, as a ferryd restart would end it
	out=$(hib status vm0)
	check "a new process reads the persisted state: hibernated" grep -q '"state":"hibernated"' <<<"$out"
	check "the manifest (claim tokens) is private: mode 600" \
		test "$(stat -c %a "$T/state/vm0.manifest.json")" = 600
	rc=0; out=$(hib resume vm0 2>&1) || rc=$?
	echo "  new process: resume -> rc $rc: ${out:0:300}"
	check "resume from a new process after the first one ended: succeeds" test "$rc" = 0
	out=$(client -t 10 "$GUEST_IP" "$GUEST_PORT" after-restart sum 2>&1) || true
	check "nothing lost: echo answers and memory is intact ($sum0)" \
		bash -c "grep -qx after-restart <<<'$out' && grep -qx '$sum0' <<<'$out'"
	# "Another node": a lone hibernate (its process exits at once), then a resume by another
	# process with another client name at the memory server.
	rc=0; out=$(hib --client-name node-a hibernate vm0 2>&1) || rc=$?
	check "a lone 'ferry-hib hibernate' (process ends right after) succeeds" test "$rc" = 0
	cp "$T/state/vm0.manifest.json" "$T/manifest.spent"
	# node-b is configured with another memory server (nobody there): the manifest names the one
	# that holds the image, and the resume goes there.
	rc=0; out=$(hib --client-name node-b --pool "127.0.0.1:$((PORT + 7))" resume vm0 2>&1) || rc=$?
	echo "  node-b: resume -> rc $rc: ${out:0:300}"
	check "resume by another client (node-b, configured with another pool): succeeds" test "$rc" = 0
	check "the memory server handed node-a's kept image to node-b" \
		bash -c "grep -q '(node-a): extent .* kept' '$T/memsrv.log' && grep -q '(node-b): claimed extent' '$T/memsrv.log'"
	out=$(client -t 10 "$GUEST_IP" "$GUEST_PORT" on-node-b sum 2>&1) || true
	check "node-b: echo answers and memory is intact ($sum0)" \
		bash -c "grep -qx on-node-b <<<'$out' && grep -qx '$sum0' <<<'$out'"
	# Dropping a hibernated VM discards its image on the server the manifest names, too.
	rc=0; out=$(hib hibernate vm0 2>&1) || rc=$?
	n0=$(grep -c 'discarded' "$T/memsrv.log" || true)
	rc2=0; hib --pool "127.0.0.1:$((PORT + 7))" destroy vm0 || rc2=$?
	n1=$(grep -c 'discarded' "$T/memsrv.log" || true)
	check "destroy of a hibernated VM (configured with another pool) discards its kept image ($n0 -> $n1)" \
		bash -c "[ $rc = 0 ] && [ $rc2 = 0 ] && [ $n1 -gt $n0 ] && [ ! -e '$T/state/vm0.manifest.json' ]"
	# The resume freed the image; its old manifest's tokens are spent.
	cp "$T/state/vm0.vm.json" "$T/vm0.vm.json.stopped"
	sed -i 's/"state": *"stopped"/"state": "hibernated"/' "$T/state/vm0.vm.json"
	cp "$T/manifest.spent" "$T/state/vm0.manifest.json"
	rc=0; err=$(hib resume vm0 2>&1) || rc=$?
	echo "  spent manifest: resume -> rc $rc: $err"
	check "a spent manifest (image resumed already): clear error" \
		bash -c "[ $rc = 1 ] && grep -q 'no longer holds this image' <<<'$err'"
	check "after the refused resume: still hibernated, no RAM file, no QEMU" \
		bash -c "[ ! -e '$(ram_file vm0)' ] && ! pgrep -f '$T/state/vm0[.]qmp' >/dev/null && \"$HIB\" --state '$T/state' status vm0 | grep -q hibernated"
	# The memory server says at shutdown how many kept extents it loses: none may be left over.
	kill "$MEMSRV_PID"; wait "$MEMSRV_PID" 2>/dev/null || true; MEMSRV_PID=""
	check "no kept extent left behind in the pool" bash -c "! grep -q 'kept extents lost' '$T/memsrv.log'"
	;;
bad)
	"$RIG" up 1
	start_memsrv
	vm_define_start vm0 0 128M
	# 0. a pool too small for the image: hibernate fails, the VM runs on untouched
	"$MEMSRV" -p $((PORT + 1)) -s "$T/secret" -m 16M --prefault no --hugepages off -r "$T/small.port" \
		>"$T/small.log" 2>&1 &
	small=$!
	for _ in $(seq 100); do [ -s "$T/small.port" ] && break; sleep 0.05; done
	rc=0; err=$(hib --pool "127.0.0.1:$((PORT + 1))" hibernate vm0 2>&1) || rc=$?
	kill "$small"; wait "$small" 2>/dev/null || true
	echo "  small pool: rc $rc: $err"
	check "pool too small: hibernate fails naming the memory server" \
		bash -c "[ $rc = 1 ] && grep -q 'memory server 127.0.0.1:$((PORT + 1)): storing' <<<'$err'"
	out=$(client -t 10 "$GUEST_IP" "$GUEST_PORT" still-running 2>&1) || true
	check "pool too small: the VM runs on (echo, RAM file, state running)" \
		bash -c "grep -qx still-running <<<'$out' && [ -e '$(ram_file vm0)' ] && \"$HIB\" --state '$T/state' status vm0 | grep -q running"
	# 0b. one operation on a VM at a time
	flock "$T/state/vm0.lock" sleep 2 &
	lk=$!
	sleep 0.3
	rc=0; err=$(hib hibernate vm0 2>&1) || rc=$?
	wait "$lk" || true
	check "a second operation on a busy VM is refused (EBUSY), not run" \
		bash -c "[ $rc = 1 ] && grep -q 'busy' <<<'$err' && \"$HIB\" --state '$T/state' status vm0 | grep -q running"
	shell_start
	# 1. memory server dead during resume
	sh_cmd "hibernate vm0"
	kill -9 "$MEMSRV_PID"; wait "$MEMSRV_PID" 2>/dev/null || true; MEMSRV_PID=""
	sh_cmd "resume vm0"
	check "memory server dead: resume fails with an error naming it" \
		bash -c "grep -q '^error .*memory server 127.0.0.1:$PORT' <<<'$REPLY'"
	check "memory server dead: VM still hibernated, no RAM file, no QEMU" \
		bash -c "[ ! -e '$(ram_file vm0)' ] && ! pgrep -f '$T/state/vm0[.]qmp' >/dev/null && \"$HIB\" --state '$T/state' status vm0 | grep -q hibernated"
	shell_stop
	# The image went with that server: start over.
	start_memsrv
	hib destroy vm0
	rm -f "$T/vm0.console"
	hib start vm0 >/dev/null
	for _ in $(seq 200); do grep -q 'FERRY-VM READY' "$T/vm0.console" 2>/dev/null && break; sleep 0.05; done
	client -t 10 "$GUEST_IP" "$GUEST_PORT" "mem 3" >/dev/null || true
	sum0=$(client "$GUEST_IP" "$GUEST_PORT" sum 2>&1) || true
	shell_start
	sh_cmd "hibernate vm0"
	check "hibernate (fresh server)" grep -q '^ok ' <<<"$REPLY"
	# 2. QEMU missing: the VM's command line names a binary that does not exist.
	cp "$T/state/vm0.vm.json" "$T/vm0.vm.json.good"
	sed -i 's|"qemu-system-x86_64"|"/nonexistent/qemu-system-x86_64"|' "$T/state/vm0.vm.json"
	sh_cmd "resume vm0"
	check "QEMU missing: clear error" bash -c "grep -Eq '^error .*exited before its QMP socket came up: .*(cannot run|exec of).*nonexistent' <<<'$REPLY'"
	check "QEMU missing: still hibernated, no RAM file" \
		bash -c "[ ! -e '$(ram_file vm0)' ] && \"$HIB\" --state '$T/state' status vm0 | grep -q hibernated"
	# QEMU that fails: an option it refuses.
	sed 's|"-nodefaults"|"-no-such-qemu-option"|' "$T/vm0.vm.json.good" >"$T/state/vm0.vm.json"
	sh_cmd "resume vm0"
	check "QEMU failing: clear error with QEMU's own words" \
		bash -c "grep -q '^error .*exited before its QMP socket came up: .*no-such-qemu-option: invalid option' <<<'$REPLY'"
	cp "$T/vm0.vm.json.good" "$T/state/vm0.vm.json"
	# 3. corrupt manifest: refused; restored: resumes.
	cp "$T/state/vm0.manifest.json" "$T/manifest.good"
	sed -i 's/"stored_pages": \([0-9]*\)/"stored_pages": 1\1/' "$T/state/vm0.manifest.json"
	sh_cmd "resume vm0"
	check "corrupt manifest: refused (checksum mismatch)" grep -q '^error .*refused: checksum mismatch' <<<"$REPLY"
	head -c 200 "$T/manifest.good" >"$T/state/vm0.manifest.json"
	sh_cmd "resume vm0"
	check "truncated manifest: refused" grep -q '^error .*manifest .* refused' <<<"$REPLY"
	cp "$T/manifest.good" "$T/state/vm0.manifest.json"
	sh_cmd "resume vm0"
	check "after the failures, the intact image resumes" grep -q '^ok ' <<<"$REPLY"
	out=$(client -t 10 "$GUEST_IP" "$GUEST_PORT" still-here sum 2>&1) || true
	check "resumed guest echoes, data intact" bash -c "grep -qx still-here <<<'$out' && grep -qx '$sum0' <<<'$out'"
	shell_stop
	;;
*)
	echo "unknown case $CASE" >&2
	exit 2
	;;
esac
echo "vmrig $CASE: $fails failed"
[ "$fails" = 0 ]
