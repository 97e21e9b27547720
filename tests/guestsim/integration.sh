#!/usr/bin/env bash
# Integration smoke test: guestsim against a real ferry-pager backed by a real
# ferry-memsrv over TCP on loopback, with a resident budget of 25% of guest RAM
# (so pages really go out to the pool and come back), every run ending with
# --check of all of memory:
#   1. memfd guest via libferry-vmm, uniform, free page reporting by FREE_HINT
#   2. memfd guest, LINPACK-like pattern, freeing by madvise(MADV_REMOVE)
#   3. memfd guest, zipf, 4 vCPUs faulting concurrently, FREE_HINTs
#   4. anonymous guest via libferry-vmm, FREE_HINTs (no page-out: no memory file)
#   5. anonymous guest through the Firecracker handshake, madvise frees
# and both daemons must exit 0 on SIGTERM afterwards.
#
#   integration.sh GUESTSIM PAGER MEMSRV [SECONDS-PER-RUN]
set -uo pipefail

gs=${1:?usage: integration.sh GUESTSIM PAGER MEMSRV [SECONDS]}
pager=${2:?}
memsrv=${3:?}
secs=${4:-2}
mem=64M
budget=16M                      # 25% of $mem

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
"$memsrv" --listen 127.0.0.1 --port 0 --transport tcp --secret-file "$dir/secret" \
	--ready-file "$dir/memsrv.port" --pool-size 256M >"$dir/memsrv.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do [ -s "$dir/memsrv.port" ] && break; sleep 0.05; done
port=$(grep -oE '[0-9]+' "$dir/memsrv.port" 2>/dev/null | head -n1)
[ -n "$port" ] || { echo "integration: ferry-memsrv not ready"; fails=1; exit 1; }

"$pager" --socket "$dir/pager.sock" --fc-socket "$dir/fc.sock" --allow "uid:$(id -u)" \
	--servers "127.0.0.1:$port" --secret-file "$dir/secret" --transport tcp \
	--vm-budget "$budget" >"$dir/pager.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do [ -S "$dir/pager.sock" ] && [ -S "$dir/fc.sock" ] && break; sleep 0.05; done
[ -S "$dir/pager.sock" ] || { echo "integration: ferry-pager not listening"; fails=1; exit 1; }

run() { # name args...
	local name=$1
	shift
	"$gs" --mem "$mem" --duration "$secs" --check --timeout 120 -q --json "$dir/$name.json" "$@" \
		>"$dir/$name.out" 2>"$dir/$name.log"
	local rc=$?
	if [ $rc -ne 0 ]; then
		echo "FAIL $name: guestsim exit $rc"
		sed 's/^/    /' "$dir/$name.log"
		fails=$((fails + 1))
		return 1
	fi
	python3 - "$dir/$name.json" "$name" "${want_remote:-0}" <<'PY' || fails=$((fails + 1))
import json, sys
d = json.load(open(sys.argv[1])); name = sys.argv[2]; want_remote = sys.argv[3] == "1"
v = d["verification"]
assert v["passed"] and v["checked_all"], "%s: verification: %s" % (name, v)
ps = d.get("pager_stats") or {}
if want_remote:
    assert ps.get("pages_paged_out", 0) > 0, "%s: nothing was paged out: %s" % (name, ps)
    assert ps.get("remote_faults", 0) > 0, "%s: no REMOTE fault: %s" % (name, ps)
    assert ps.get("fault_errors", 0) == 0, "%s: fault errors: %s" % (name, ps)
print("ok   %s: %d ops, %s" % (name, d["ops"], ", ".join("%s=%d" % (k, ps[k]) for k in
      ("zero_faults", "remote_faults", "pages_paged_out", "hint_pages", "removed_pages") if k in ps)))
PY
}

want_remote=1 run uniform-hint --pager "$dir/pager.sock" --vm-id it-uniform --pattern uniform \
	--free-report 10 --free-every 5000 --free-via hint
want_remote=1 run linpack-madvise --pager "$dir/pager.sock" --vm-id it-linpack --pattern linpack \
	--free-report 10 --free-every 5000 --free-via madvise
want_remote=1 run zipf-4vcpu --pager "$dir/pager.sock" --vm-id it-zipf --pattern zipf --vcpus 4 \
	--free-report 5 --free-every 5000 --free-via hint
want_remote=0 run anon-madvise --pager "$dir/pager.sock" --vm-id it-anon --anon --pattern uniform \
	--free-report 10 --free-every 5000 --free-via madvise
want_remote=0 run firecracker --anon --fc-socket "$dir/fc.sock" --pattern uniform \
	--free-report 10 --free-every 5000 --free-via madvise

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
