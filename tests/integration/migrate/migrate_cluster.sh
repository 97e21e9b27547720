#!/bin/bash
# Split migration in a netns cluster (issue 5), real processes end to end:
#   h1 source  : ferry-pager + guestsim (the running VM, memfd RAM)
#   h2 main    : ferry-pager with a budget below the VM's size + migtool shell (destination VM)
#   h3, h4     : ferry-memsrv sub-hosts (the main host's pool)
# For each mode (precopy, postcopy, planned, full): guestsim runs on the source,
# the VM is migrated while it writes, and the shell at the destination reads
# EVERY page (pages held by the main host, pages on the sub-hosts, pages still
# at the source for post-copy) and compares it with the frozen source memory,
# then keeps running a checked workload there with remote paging.
# Failures: a sub-host killed mid-migration, and the main host's pager killed
# mid-migration: the migration FAILS and the VM keeps running at the source
# (guestsim --check passes).
#
# usage: migrate_cluster.sh BUILD_DIR [MODE...]   exit 0 pass, 1 fail, 77 skip
set -u
build=${1:?build dir}
shift
modes=${*:-precopy postcopy planned full}
src_dir=$(cd "$(dirname "$0")/../../.." && pwd)
rig=$src_dir/tests/rigs/cluster/cluster.sh
export FERRY_CLUSTER_PREFIX=${FERRY_CLUSTER_PREFIX:-migrate-}
pager=$build/dataplane/pager/ferry-pager
memsrv=$build/dataplane/memsrv/ferry-memsrv
guestsim=$build/tests/guestsim/guestsim
migtool=$build/tests/integration/migrate/migtool
MEM=${MIG_TEST_MEM:-128}        # MiB of guest RAM
BUDGET=${MIG_TEST_BUDGET:-40}  # MiB the main host may hold
fails=0
pids=()

"$rig" check >/dev/null 2>&1 || { echo "SKIP: network namespaces unavailable"; exit 77; }
for b in "$pager" "$memsrv" "$guestsim" "$migtool"; do
	[ -x "$b" ] || { echo "missing $b"; exit 1; }
done
run=$(mktemp -d /tmp/ferry-migrate-XXXXXX)
cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	"$rig" down >/dev/null 2>&1
	if [ "$fails" -eq 0 ]; then rm -rf "$run"; else echo "logs kept in $run"; fi
}
trap cleanup EXIT
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

"$rig" up 4 --rate "${MIG_TEST_RATE:-2gbit}" >/dev/null || { echo "cluster up failed"; exit 1; }
(umask 077 && head -c 48 /dev/urandom | base64 -w0 > "$run/secret")

start_memsrv() {   # host
	"$rig" exec "h$1" "$memsrv" --listen "10.77.0.$1" --port 23100 --transport tcp --secret-file "$run/secret" \
		--pool-size 256M --hugepages off --prefault no >"$run/memsrv$1.log" 2>&1 &
	eval "memsrv$1=$!"
	pids+=($!)
}
wait_sock() {   # path pid
	for _ in $(seq 200); do
		[ -S "$1" ] && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}
start_main() {
	rm -f "$run/main.sock" "$run/main-mig.sock"
	"$rig" exec h2 "$pager" --socket "$run/main.sock" --allow uid:0 --secret-file "$run/secret" \
		--servers 10.77.0.3:23100,10.77.0.4:23100 --migrate-socket "$run/main-mig.sock" \
		--migrate-listen 10.77.0.2 --migrate-port 23001 --log-level info >>"$run/main.log" 2>&1 &
	main_pid=$!
	pids+=($!)
	wait_sock "$run/main-mig.sock" "$main_pid"
}
start_memsrv 3
start_memsrv 4
sleep 0.3
start_main || { echo "main pager did not start"; cat "$run/main.log"; exit 1; }
rm -f "$run/src.sock" "$run/src-mig.sock"
"$rig" exec h1 "$pager" --socket "$run/src.sock" --allow uid:0 --secret-file "$run/secret" \
	--migrate-socket "$run/src-mig.sock" --migrate-listen 10.77.0.1 --migrate-port 23002 \
	--log-level info >"$run/src.log" 2>&1 &
src_pid=$!
pids+=($!)
wait_sock "$run/src-mig.sock" "$src_pid" || { echo "source pager did not start"; cat "$run/src.log"; exit 1; }

# guestsim on the source; $1 = VM id, $2... extra flags
start_guest() {
	local id=$1
	shift
	"$rig" exec h1 "$guestsim" --pager "$run/src.sock" --vm-id "$id" --mem "${MEM}M" --pattern boot --touched 70 \
		--write-pct 30 "$@" >"$run/$id.guest.log" 2>&1 &
	guest_pid=$!
	pids+=($!)
	# guestsim runs in the netns through `ip netns exec`: its own pid is the child's
	for _ in $(seq 100); do
		gpid=$(pgrep -f -- "--vm-id $id " | head -n 1)
		[ -n "$gpid" ] && break
		sleep 0.05
	done
}

migrate_ok() {   # mode
	local mode=$1 id=vm-$1 ep host port token
	start_guest "$id" --duration 600
	sleep 1.5
	"$rig" exec h2 "$migtool" shell "$run/main.sock" "$id" "$MEM" "$run/main-mig.sock" "$gpid" 2 \
		>"$run/$id.shell.log" 2>&1 &
	local shell=$!
	pids+=($!)
	sleep 0.3
	ep=$("$migtool" prepare "$run/main-mig.sock" "$id" "$BUDGET" 10.77.0.3:23100,10.77.0.4:23100) ||
		{ fail "$mode: prepare"; return; }
	read -r host port token <<<"$ep"
	if ! "$migtool" start "$run/src-mig.sock" "$id" "$host" "$port" "$token" "$mode"; then
		fail "$mode: start"
		return
	fi
	"$migtool" wait "$run/src-mig.sock" "$id" 60 >"$run/$id.src.progress" 2>&1
	local rc=$?
	wait "$shell"
	local shrc=$?
	"$migtool" status "$run/main-mig.sock" "$id" >"$run/$id.dst.progress" 2>&1
	kill -9 "$guest_pid" "$gpid" 2>/dev/null
	echo "  source: $(cat "$run/$id.src.progress")"
	echo "  dest:   $(cat "$run/$id.dst.progress")"
	echo "  shell:  $(grep -E '^(verify|workload)' "$run/$id.shell.log" | tr '\n' ' ')"
	if [ $rc -eq 0 ] && [ $shrc -eq 0 ] && grep -q 'mismatches=0' "$run/$id.shell.log"; then
		local sent sub
		sent=$(grep -oE ' sent=[0-9]+' "$run/$id.src.progress" | grep -oE '[0-9]+')
		sub=$(grep -oE 'to_subhosts=[0-9]+' "$run/$id.src.progress" | grep -oE '[0-9]+')
		if [ "$mode" != postcopy ] && [ "${sub:-0}" -eq 0 ]; then
			fail "$mode: no page went to a sub-host although the VM is larger than the budget"
		else
			pass "$mode: every page equal at the destination, workload ran there (sent $sent, $sub to sub-hosts)"
		fi
	else
		fail "$mode: migration rc=$rc shell rc=$shrc"
		tail -n 5 "$run/$id.shell.log" "$run/$id.guest.log"
	fi
}

# A failure mid-migration: $1 = name, $2 = function that breaks something
migrate_broken() {
	local name=$1 breaker=$2 id=vm-$1 ep host port token
	start_guest "$id" --duration 6 --check
	sleep 1
	"$rig" exec h2 "$migtool" shell "$run/main.sock" "$id" "$MEM" "$run/main-mig.sock" "$gpid" 0 \
		>"$run/$id.shell.log" 2>&1 &
	pids+=($!)
	sleep 0.3
	ep=$("$migtool" prepare "$run/main-mig.sock" "$id" "$BUDGET" 10.77.0.3:23100,10.77.0.4:23100) ||
		{ fail "$name: prepare"; return; }
	read -r host port token <<<"$ep"
	"$migtool" start "$run/src-mig.sock" "$id" "$host" "$port" "$token" precopy || { fail "$name: start"; return; }
	$breaker
	"$migtool" wait "$run/src-mig.sock" "$id" 30 failed >"$run/$id.src.progress" 2>&1
	local rc=$?
	wait "$guest_pid"
	local grc=$?
	echo "  source: $(cat "$run/$id.src.progress")"
	if [ $rc -eq 0 ] && [ $grc -eq 0 ]; then
		pass "$name: migration failed cleanly, the VM ran on at the source and verified (guestsim --check)"
	else
		fail "$name: wait rc=$rc guestsim rc=$grc"
		tail -n 5 "$run/$id.guest.log"
	fi
}
kill_subhost() { sleep 0.15; kill -9 "$memsrv4"; }
kill_main() { sleep 0.15; kill -9 "$main_pid"; }

for m in $modes; do
	case $m in
	precopy|postcopy|planned|full) migrate_ok "$m" ;;
	subhost-lost) migrate_broken subhost-lost kill_subhost; start_memsrv 4 ;;
	main-lost) migrate_broken main-lost kill_main; start_main ;;
	*) echo "unknown mode $m"; exit 2 ;;
	esac
done
grep -hE "ERROR|AddressSanitizer|runtime error" "$run"/*.log | head -n 5
[ "$fails" -eq 0 ] && echo "all passed" && exit 0
exit 1
