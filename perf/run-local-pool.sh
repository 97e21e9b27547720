#!/usr/bin/env bash
# Start a local pool of two ferry-memsrv processes on 127.0.0.1 and run
# `ferry-perf xport` against both; the project's main job (scripts/ferry run).
#
#   perf/run-local-pool.sh --build-dir DIR [--out DIR] [--quick] [--cpus LIST|all|auto] [--keep]
#                          [-- FERRY-PERF-ARGS...]
#
#   --build-dir DIR   CMake build directory holding dataplane/memsrv/ferry-memsrv and perf/ferry-perf
#   --out DIR         results (xport.json, xport.csv, xport.png, xport.gp); default
#                     DIR/results/xport (DIR/results/xport-quick with --quick)
#   --quick           a tiny sweep for the smoke test: checks that everything runs, the JSON
#                     parses and the data read back was right; says nothing about speed
#   --cpus LIST       pin both servers and ferry-perf to these CPUs (taskset list, e.g. 0 or 2-3);
#                     "all" leaves placement to the kernel; "auto" (default) pins to one CPU on
#                     machines with 2 CPUs or fewer, where a wakeup across CPUs (a VM's IPI) costs
#                     more than a whole loopback round trip, so that the kernel's placement of the
#                     client and the servers, which changes from run to run, would decide the
#                     latency figures; on bigger machines it pins nothing
#   --keep            keep the temporary run directory (secret, ready files, server logs)
#   -- ARGS           extra arguments for ferry-perf xport (they come last, so they win)
#
# Environment: FERRY_MEMSRV, FERRY_PERF override the binaries; FERRY_POOL_SIZE the pool of
# each server (default 128M; 32M with --quick).
# Exit status: 0 when the servers started, the benchmark ran, its JSON parses, the data
# verification passed and both servers exited 0 on SIGTERM; non-zero otherwise.
set -euo pipefail

prog=$(basename "$0")
build_dir=""
out_dir=""
quick=0
keep=0
cpus=auto
extra=()

die() { echo "$prog: $*" >&2; exit 1; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

while [ $# -gt 0 ]; do
	case "$1" in
	--build-dir) [ $# -ge 2 ] || die "--build-dir needs a directory"; build_dir=$2; shift 2 ;;
	--build-dir=*) build_dir=${1#*=}; shift ;;
	--out) [ $# -ge 2 ] || die "--out needs a directory"; out_dir=$2; shift 2 ;;
	--out=*) out_dir=${1#*=}; shift ;;
	--quick) quick=1; shift ;;
	--cpus) [ $# -ge 2 ] || die "--cpus needs a CPU list, all or auto"; cpus=$2; shift 2 ;;
	--cpus=*) cpus=${1#*=}; shift ;;
	--keep) keep=1; shift ;;
	-h|--help) usage; exit 0 ;;
	--) shift; extra=("$@"); break ;;
	*) die "unknown argument '$1' (see --help)" ;;
	esac
done
[ -n "$build_dir" ] || die "--build-dir is required (see --help)"
[ -d "$build_dir" ] || die "build directory '$build_dir' does not exist"
build_dir=$(cd "$build_dir" && pwd)

memsrv=${FERRY_MEMSRV:-$build_dir/dataplane/memsrv/ferry-memsrv}
perf=${FERRY_PERF:-$build_dir/perf/ferry-perf}
[ -x "$memsrv" ] || die "no memory server at $memsrv (build first, or set FERRY_MEMSRV)"
[ -x "$perf" ] || die "no ferry-perf at $perf (build first, or set FERRY_PERF)"

if [ -z "$out_dir" ]; then
	if [ $quick = 1 ]; then out_dir=$build_dir/results/xport-quick; else out_dir=$build_dir/results/xport; fi
fi
mkdir -p "$out_dir" || die "cannot create $out_dir"
out_dir=$(cd "$out_dir" && pwd)

if [ $quick = 1 ]; then
	pool_size=${FERRY_POOL_SIZE:-32M}
	# shellcheck disable=SC2054  # the commas belong to --batch/--qd lists
	perf_args=(-n 2000 --duration 0.15 --batch 1,32 --qd 1,4 --pages 2048 --verify-pages 2048
		   --stream-seconds 0.2)
else
	pool_size=${FERRY_POOL_SIZE:-128M}
	perf_args=()
fi

# CPU placement (see --cpus).
pin=()
case "$cpus" in
all) ;;
auto)
	if [ "$(nproc)" -le 2 ]; then
		first=$(taskset -cp $$ 2>/dev/null | sed 's/.*: *//; s/[-,].*//' || true)
		if [ -n "$first" ] && command -v taskset >/dev/null 2>&1; then
			pin=(taskset -c "$first")
			echo "$prog: $(nproc) CPUs: pinning both servers and ferry-perf to cpu $first" \
			     "(--cpus all leaves placement to the kernel)" >&2
		fi
	fi
	;;
*)
	command -v taskset >/dev/null 2>&1 || die "--cpus needs taskset (util-linux)"
	taskset -c "$cpus" true 2>/dev/null || die "--cpus '$cpus': not a usable CPU list here"
	pin=(taskset -c "$cpus")
	;;
esac

nservers=2
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/ferry-pool.XXXXXX")
pids=()
status=1

# shellcheck disable=SC2317  # called from the EXIT trap
dump_logs() {
	for i in $(seq 0 $((nservers - 1))); do
		if [ -s "$run_dir/memsrv-$i.log" ]; then
			echo "--- memsrv $i log (last 20 lines): $run_dir/memsrv-$i.log" >&2
			tail -n 20 "$run_dir/memsrv-$i.log" >&2
		fi
	done
}

# shellcheck disable=SC2317  # the EXIT trap
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	# Stop only the servers this script started, by their pids.
	for pid in "${pids[@]}"; do
		if kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid" 2>/dev/null || true
		fi
	done
	for pid in "${pids[@]}"; do
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [ "$status" -ne 0 ] || [ "$rc" -ne 0 ]; then
		dump_logs
	fi
	if [ "$keep" = 1 ]; then
		echo "$prog: run directory kept: $run_dir" >&2
	else
		rm -rf "$run_dir"
	fi
	[ "$rc" -ne 0 ] && exit "$rc"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A fresh cluster secret, readable by its owner only.
secret=$run_dir/secret
(umask 077 && head -c 48 /dev/urandom | base64 -w0 > "$secret")
chmod 600 "$secret"

for i in $(seq 0 $((nservers - 1))); do
	"${pin[@]}" "$memsrv" --listen 127.0.0.1 --port 0 --transport tcp --secret-file "$secret" \
		--ready-file "$run_dir/ready-$i" --pool-size "$pool_size" \
		>"$run_dir/memsrv-$i.log" 2>&1 &
	pids+=($!)
done

# Wait (bounded) for both ready files; a server that dies meanwhile fails the run.
ports=()
deadline=$((SECONDS + 30))
for i in $(seq 0 $((nservers - 1))); do
	port=""
	while :; do
		if [ -s "$run_dir/ready-$i" ]; then
			port=$(grep -oE '[0-9]+' "$run_dir/ready-$i" | head -n 1 || true)
			[ -n "$port" ] && [ "$port" -gt 0 ] 2>/dev/null && break
		fi
		if ! kill -0 "${pids[$i]}" 2>/dev/null; then
			wait "${pids[$i]}" && rc=0 || rc=$?
			echo "$prog: memory server $i exited (status $rc) before it was ready" >&2
			exit 1
		fi
		if [ $SECONDS -ge $deadline ]; then
			echo "$prog: memory server $i not ready after 30 s" >&2
			exit 1
		fi
		sleep 0.05
	done
	ports+=("$port")
done
servers="127.0.0.1:${ports[0]}"
for i in $(seq 1 $((nservers - 1))); do servers="$servers,127.0.0.1:${ports[$i]}"; done
echo "$prog: $nservers memory servers ready ($servers, pool $pool_size each)" >&2

json=$out_dir/xport.json
rm -f "$json" "$out_dir/xport.csv" "$out_dir/xport.png" "$out_dir/xport.gp"
perf_rc=0
"${pin[@]}" "$perf" xport --transport tcp --server "$servers" --secret "$secret" \
	--json "$json" --csv "$out_dir/xport.csv" --plot "$out_dir/xport.png" \
	"${perf_args[@]}" "${extra[@]}" || perf_rc=$?
if [ $perf_rc -ne 0 ]; then
	echo "$prog: ferry-perf xport failed (status $perf_rc)" >&2
fi

# The JSON must parse and say the data verification passed.
json_ok=0
if [ -s "$json" ]; then
	if command -v python3 >/dev/null 2>&1; then
		python3 - "$json" <<'EOF' && json_ok=1
import json, sys
with open(sys.argv[1]) as f:
    doc = json.load(f)
v = doc.get("verification") or {}
if doc.get("tool") != "ferry-perf xport":
    sys.exit("json: not a ferry-perf xport document")
if v.get("passed") is not True:
    sys.exit("json: data verification did not pass: %s" % v.get("first_error"))
if not doc.get("throughput") or not doc.get("latency"):
    sys.exit("json: no measurements")
EOF
	elif command -v jq >/dev/null 2>&1; then
		jq -e '.tool == "ferry-perf xport" and .verification.passed == true and
		       (.throughput | length) > 0 and (.latency | length) > 0' "$json" >/dev/null && json_ok=1
	else
		echo "$prog: cannot check $json: neither python3 nor jq is installed" >&2
	fi
	[ $json_ok = 1 ] || echo "$prog: $json does not parse or reports failed verification" >&2
else
	echo "$prog: no JSON written at $json" >&2
fi

# Stop the servers and check that they shut down cleanly.
srv_ok=1
for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
for i in $(seq 0 $((nservers - 1))); do
	pid=${pids[$i]}
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$pid" 2>/dev/null; then
		echo "$prog: memory server $i did not exit within 10 s of SIGTERM" >&2
		srv_ok=0
		continue
	fi
	wait "$pid" && rc=0 || rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "$prog: memory server $i exited with status $rc after SIGTERM" >&2
		srv_ok=0
	fi
done
pids=()

if [ $perf_rc -eq 0 ] && [ $json_ok = 1 ] && [ $srv_ok = 1 ]; then
	echo "$prog: results in $out_dir (xport.json, xport.csv, xport.png, xport.gp)" >&2
	status=0
else
	status=1
fi
exit $status
