#!/usr/bin/env bash
# Integration smoke test: guestsim against a real ferry-pager backed by a real
# ferry-memsrv (over TCP on loopback by default), with a resident budget of 25%
# of guest RAM (so pages really go out to the pool and come back), every run
# ending with --check of all of memory:
#   1. memfd guest via libferry-vmm, uniform, free page reporting by FREE_HINT
#   2. memfd guest, LINPACK-like pattern, freeing by madvise(MADV_REMOVE)
#   3. memfd guest, zipf, 4 vCPUs faulting concurrently, FREE_HINTs
#   3b. memfd guest registered as 2 regions (gpa != file offset), FREE_HINTs
#   4. anonymous guest via libferry-vmm, FREE_HINTs (no page-out: no memory file)
#   5. anonymous guest through the Firecracker handshake, madvise frees
#   6. three memfd guests at once (sequential, boot-like, uniform with 2 vCPUs)
# and both daemons must exit 0 on SIGTERM afterwards.
#
#   integration.sh GUESTSIM PAGER MEMSRV [SECONDS-PER-RUN]
#
# GUESTSIM_IT_OPS=N: each run stops after N page accesses instead of after
# SECONDS (for slow machines, e.g. the RoCE rig's TCG guest, where a 2 s run
# may never touch a page again after it went out); GUESTSIM_IT_MEM=SIZE (default
# 64M) is each guest's RAM, the budget stays 25% of it.
#
# Environment, as for the memsrv integration tests: FERRY_TEST_TRANSPORT (tcp |
# rdma, default tcp) is ferry-memsrv's and ferry-pager's --transport;
# FERRY_TEST_HOST (default 127.0.0.1; RDMA needs an RDMA interface's address,
# e.g. $RIG_IP in the RoCE rig) is ferry-memsrv's --listen and the host of the
# pager's --servers. Needs bash and POSIX tools only (no python: it runs in the
# rig's guest too).
set -uo pipefail

gs=${1:?usage: integration.sh GUESTSIM PAGER MEMSRV [SECONDS]}
pager=${2:?}
memsrv=${3:?}
secs=${4:-2}
transport=${FERRY_TEST_TRANSPORT:-tcp}
host=${FERRY_TEST_HOST:-127.0.0.1}
case $transport in tcp|rdma) ;; *) echo "integration: FERRY_TEST_TRANSPORT=$transport: not tcp or rdma"; exit 2;; esac
mem=${GUESTSIM_IT_MEM:-64M}
case $mem in
*[0-9]M) budget=$((${mem%M} / 4))M ;;  # 25% of $mem
*) echo "integration: GUESTSIM_IT_MEM=$mem: give it in M"; exit 2 ;;
esac
if [ -n "${GUESTSIM_IT_OPS:-}" ]; then
	length=(--ops "$GUESTSIM_IT_OPS")
else
	length=(--duration "$secs")
fi

for b in "$gs" "$pager" "$memsrv"; do
	[ -x "$b" ] || { echo "integration: $b is not built"; exit 1; }
done
dir=$(mktemp -d "${TMPDIR:-/tmp}/guestsim-it.XXXXXX")
pids=()
fails=0

cleanup() {
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	if [ $fails -ne 0 ]; then
		for l in "$dir"/*.log; do echo "--- $l (last 15 lines)"; tail -n 15 "$l"; done
	fi
	rm -rf "$dir"
}
trap cleanup EXIT

(umask 077 && head -c 48 /dev/urandom | base64 -w0 >"$dir/secret")
"$memsrv" --listen "$host" --port 0 --transport "$transport" --secret-file "$dir/secret" \
	--ready-file "$dir/memsrv.port" --pool-size 384M >"$dir/memsrv.log" 2>&1 &
pids+=($!)
for _ in $(seq 600); do [ -s "$dir/memsrv.port" ] && break; sleep 0.05; done
port=$(grep -oE '[0-9]+' "$dir/memsrv.port" 2>/dev/null | head -n1)
[ -n "$port" ] || { echo "integration: ferry-memsrv not ready"; fails=1; exit 1; }

"$pager" --socket "$dir/pager.sock" --fc-socket "$dir/fc.sock" --allow "uid:$(id -u)" \
	--servers "$host:$port" --secret-file "$dir/secret" --transport "$transport" \
	--vm-budget "$budget" >"$dir/pager.log" 2>&1 &
pids+=($!)
for _ in $(seq 600); do [ -S "$dir/pager.sock" ] && [ -S "$dir/fc.sock" ] && break; sleep 0.05; done
[ -S "$dir/pager.sock" ] || { echo "integration: ferry-pager not listening"; fails=1; exit 1; }

# jnum FILE KEY / jbool FILE KEY: the first "KEY": value in guestsim's JSON
# (JSON_INDENT(2): one key per line; the pager_stats keys are unique in it).
jnum() { sed -n "s/^ *\"$2\": *\([0-9][0-9]*\).*/\1/p" "$1" | head -n1; }
jbool() { sed -n "s/^ *\"$2\": *\([a-z]*\).*/\1/p" "$1" | head -n1; }

run() { # name args...: one guestsim; returns non-zero on failure (callers count it)
	local name=$1 f k v stats=""
	shift
	f=$dir/$name.json
	"$gs" --mem "$mem" "${length[@]}" --check --timeout 120 -q --json "$f" "$@" \
		>"$dir/$name.out" 2>"$dir/$name.log"
	local rc=$?
	if [ $rc -ne 0 ]; then
		echo "FAIL $name: guestsim exit $rc"
		sed 's/^/    /' "$dir/$name.log"
		return 1
	fi
	if [ "$(jbool "$f" passed)" != true ] || [ "$(jbool "$f" checked_all)" != true ]; then
		echo "FAIL $name: verification: $(sed -n '/"verification"/,/}/p' "$f" | tr -d '\n ')"
		return 1
	fi
	if [ "${want_remote:-0}" = 1 ]; then
		# pages went out to the pool and came back: by REMOTE faults or by prefetch
		# (a slow guest's sequential --check can prefetch every REMOTE page before it faults)
		for k in pages_paged_out pages_paged_in; do
			v=$(jnum "$f" $k)
			if [ "${v:-0}" -le 0 ]; then
				echo "FAIL $name: $k=${v:-absent}: nothing went through the pool"
				return 1
			fi
		done
		v=$(jnum "$f" fault_errors)
		if [ "${v:-0}" -ne 0 ]; then
			echo "FAIL $name: fault_errors=$v"
			return 1
		fi
	fi
	for k in zero_faults remote_faults pages_paged_out pages_paged_in pages_prefetched hint_pages removed_pages; do
		v=$(jnum "$f" $k)
		[ -n "$v" ] && stats="$stats${stats:+, }$k=$v"
	done
	echo "ok   $name: $(jnum "$f" ops) ops, $stats"
}

echo "integration: transport $transport, memory server $host:$port, $mem guests, budget $budget, runs of ${length[*]}"
want_remote=1 run uniform-hint --pager "$dir/pager.sock" --vm-id it-uniform --pattern uniform \
	--free-report 10 --free-every 5000 --free-via hint || fails=$((fails + 1))
want_remote=1 run linpack-madvise --pager "$dir/pager.sock" --vm-id it-linpack --pattern linpack \
	--free-report 10 --free-every 5000 --free-via madvise || fails=$((fails + 1))
want_remote=1 run zipf-4vcpu --pager "$dir/pager.sock" --vm-id it-zipf --pattern zipf --vcpus 4 \
	--free-report 5 --free-every 5000 --free-via hint || fails=$((fails + 1))
# Two regions of one memfd (--regions 2): the second at file offset 32M but gpa 32M + 512M, so
# page-out, page-in and FREE_HINTs (gpa ranges) only work if the pager keeps gpa and offset apart.
want_remote=1 run regions-hint --pager "$dir/pager.sock" --vm-id it-regions --regions 2 --pattern uniform \
	--free-report 10 --free-every 5000 --free-via hint || fails=$((fails + 1))
want_remote=0 run anon-madvise --pager "$dir/pager.sock" --vm-id it-anon --anon --pattern uniform \
	--free-report 10 --free-every 5000 --free-via madvise || fails=$((fails + 1))
want_remote=0 run firecracker --anon --fc-socket "$dir/fc.sock" --pattern uniform \
	--free-report 10 --free-every 5000 --free-via madvise || fails=$((fails + 1))

# Several VMs at once on the same pager and pool (each with its own 25% budget).
together=()
want_remote=1 run multi-sequential --pager "$dir/pager.sock" --vm-id it-multi-seq --pattern sequential &
together+=($!)
want_remote=0 run multi-boot --pager "$dir/pager.sock" --vm-id it-multi-boot --pattern boot &
together+=($!)
want_remote=1 run multi-uniform --pager "$dir/pager.sock" --vm-id it-multi-uni --pattern uniform --vcpus 2 \
	--free-report 10 --free-every 5000 --free-via hint &
together+=($!)
for p in "${together[@]}"; do wait "$p" || fails=$((fails + 1)); done

# Clean shutdown of both daemons.
for i in 1 0; do
	kill -TERM "${pids[$i]}" 2>/dev/null
	rc=124
	for _ in $(seq 100); do
		if ! kill -0 "${pids[$i]}" 2>/dev/null; then wait "${pids[$i]}"; rc=$?; break; fi
		sleep 0.1
	done
	if [ $rc -ne 0 ]; then
		echo "FAIL: $([ $i = 1 ] && echo ferry-pager || echo ferry-memsrv) exit $rc after SIGTERM"
		fails=$((fails + 1))
	fi
done
pids=()

if [ $fails -ne 0 ]; then
	echo "guestsim integration: $fails failure(s)"
	exit 1
fi
echo "guestsim integration: all passed"
