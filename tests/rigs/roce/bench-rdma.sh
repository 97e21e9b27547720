#!/bin/bash
# bench-rdma.sh BUILD_DIR [OUT.json]: Ferry's RDMA transport against perftest on
# the same Soft-RoCE link, in the same guest boot (one guest, client and server
# on 10.0.0.1, -smp 2):
#
#   ib_read_lat -s 4096 -n 1000      -> t_typical (us)
#   ib_read_bw  -s 4096              -> MsgRate (Mpps) and BW average (MB/s, perftest's unit)
#   ferry-memsrv --transport rdma + ferry-perf xport --transport rdma --op read
#                                    -> read p50 (us), best batched read (pages/s)
#
# and prints (and writes to OUT.json) the ratios
#   read_p50_vs_ib_read_lat  = ferry 4 KiB read p50 / ib_read_lat t_typical   (1.0 = as fast)
#   read_bw_vs_ib_read_bw    = ferry batched read pages/s / ib_read_bw messages/s (1.0 = as fast)
# Under TCG these are emulation figures: compare ratios, not absolute values, and
# run it on an otherwise idle host (the phases run one after the other, so load
# from other processes during one of them skews its ratio; repeat and compare).
# Use a Release build for meaningful ratios. Environment: FERRY_POLL (busy |
# spin | events, default busy: perftest busy-polls too), RIG_TIMEOUT (default 400),
# TWO_GUESTS=1 (servers on guest 2, clients on guest 1, over the rig's socket link),
# BENCH_VERBOSE=1 (rxe counters before/after the ferry run, one-guest mode).
set -u

here=$(cd "$(dirname "$0")" && pwd)
rig="$here/rig.sh"
if [ $# -lt 1 ] || [ ! -d "$1" ]; then
	echo "usage: $0 BUILD_DIR [OUT.json]" >&2
	exit 2
fi
build=$(cd "$1" && pwd)
out_json=${2:-}
poll=${FERRY_POLL:-busy}
memsrv="$build/dataplane/memsrv/ferry-memsrv"
perf="$build/perf/ferry-perf"
for f in "$memsrv" "$perf"; do
	[ -x "$f" ] || { echo "missing $f" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench-rdma.XXXXXX")
trap 'rm -rf "$work"' EXIT
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/secret"
chmod 600 "$work/secret"
ferry_cmd="$perf xport --transport rdma --secret $work/secret --op read --poll $poll \\
	-n 1000 --batch 1,32 --qd 1,4 -D 2 --pages 4096 --verify-pages 1024 --no-baselines -q --json /tmp/ferry.json"
if [ -z "${TWO_GUESTS:-}" ]; then
	link="Soft-RoCE rxe0, one QEMU TCG guest (client and server on 10.0.0.1)"
	cat > "$work/guest.sh" <<EOF
echo '=== BEGIN lat'
ib_read_lat -s 4096 -n 1000 > /tmp/lat-s.log 2>&1 & sleep 1
ib_read_lat -s 4096 -n 1000 \$RIG_IP; echo "=== RC \$?"; wait
echo '=== BEGIN bw'
ib_read_bw -s 4096 > /tmp/bw-s.log 2>&1 & sleep 1
ib_read_bw -s 4096 \$RIG_IP; echo "=== RC \$?"; wait
echo '=== BEGIN counters0'; rdma statistic show link rxe0/1 2>&1
echo '=== BEGIN ferry'
$memsrv --listen \$RIG_IP --port 7473 --transport rdma --secret-file $work/secret --pool-size 128M \\
	--prefault no --hugepages off --log-level warn --ready-file /tmp/ready > /tmp/memsrv.log 2>&1 &
i=0; while [ ! -s /tmp/ready ] && [ \$i -lt 100 ]; do sleep 0.1; i=\$((i + 1)); done
$ferry_cmd --server \$RIG_IP:7473
echo "=== RC \$?"
echo '=== JSON'; cat /tmp/ferry.json; echo; echo '=== END JSON'
kill %1 2>/dev/null; wait
cat /tmp/memsrv.log
echo '=== BEGIN counters1'; rdma statistic show link rxe0/1 2>&1
EOF
	"$rig" run --timeout "${RIG_TIMEOUT:-400}" --copy "$memsrv" --copy "$perf" --copy "$work/secret" \
		--copy "$work/guest.sh" -- "sh $work/guest.sh" > "$work/out" 2> "$work/err"
	rc=$?
else
	# servers on guest 2 (10.0.0.2), clients on guest 1, over the rig's UDP socket link
	link="Soft-RoCE between two QEMU TCG guests (server 10.0.0.2, client 10.0.0.1, UDP socket link)"
	cat > "$work/guest2.sh" <<EOF
ib_read_lat -s 4096 -n 1000 > /tmp/lat-s.log 2>&1
ib_read_bw -s 4096 > /tmp/bw-s.log 2>&1
exec $memsrv --listen \$RIG_IP --port 7473 --transport rdma --secret-file $work/secret --pool-size 128M \\
	--prefault no --hugepages off --log-level warn
EOF
	cat > "$work/guest1.sh" <<EOF
echo '=== BEGIN lat'
ib_read_lat -s 4096 -n 1000 \$RIG_PEER_IP; echo "=== RC \$?"
sleep 2
echo '=== BEGIN bw'
ib_read_bw -s 4096 \$RIG_PEER_IP; echo "=== RC \$?"
sleep 2
echo '=== BEGIN ferry'
for i in 1 2 3 4 5 6 7 8 9 10; do
	$ferry_cmd --server \$RIG_PEER_IP:7473 2> /tmp/ferry.err
	rc=\$?
	grep -q refused /tmp/ferry.err || break
	sleep 1
done
echo "=== RC \$rc"; cat /tmp/ferry.err
echo '=== JSON'; cat /tmp/ferry.json; echo; echo '=== END JSON'
EOF
	"$rig" run --guests 2 --timeout "${RIG_TIMEOUT:-400}" --out "$work/two" --copy "$memsrv" --copy "$perf" \
		--copy "$work/secret" --copy "$work/guest1.sh" --copy "$work/guest2.sh" --guest2 "sh $work/guest2.sh" \
		-- "sh $work/guest1.sh" > "$work/out.all" 2> "$work/err"
	rc=$?
	cp "$work/two/g1.stdout" "$work/out" 2>/dev/null || : > "$work/out"
fi
section() { awk -v n="$1" '/^=== BEGIN / { p = ($3 == n); next } p { print }' "$work/out"; }
lat=$(section lat | awk '$1 == 4096 && NF >= 7 { print $5 }' | head -1)
bw=$(section bw | awk '$1 == 4096 && NF >= 5 { print $4 }' | head -1)
mpps=$(section bw | awk '$1 == 4096 && NF >= 5 { print $5 }' | head -1)
awk '/^=== JSON$/ { p = 1; next } /^=== END JSON$/ { p = 0 } p' "$work/out" > "$work/ferry.json"
[ -n "${BENCH_VERBOSE:-}" ] && section counters0 >&2 && section counters1 >&2
if [ $rc -ne 0 ] || [ -z "$lat" ] || [ -z "$mpps" ] || [ ! -s "$work/ferry.json" ]; then
	echo "bench-rdma: failed (rig status $rc)" >&2
	cat "$work/out" "$work/err" >&2
	exit 1
fi
result=$(python3 - "$lat" "$bw" "$mpps" "$poll" "$work/ferry.json" "$link" <<'EOF'
import json, sys
lat, bw, mpps, poll = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
link = sys.argv[6]
f = json.load(open(sys.argv[5]))
p50 = f["latency"]["read"]["p50_us"]
best = f["best_batched"]["read"]
res = {
    "tool": "bench-rdma", "link": link,
    "size": 4096, "ferry_poll": poll,
    "ib_read_lat_t_typical_us": lat, "ib_read_bw_avg_MBps": bw, "ib_read_bw_msg_rate_mpps": mpps,
    "ferry_read_p50_us": p50, "ferry_read_p99_us": f["latency"]["read"]["p99_us"],
    "ferry_best_read": {"batch": best["batch"], "qd": best["qd"], "pages_per_s": best["pages_per_s"]},
    "ferry_read_points": [{"batch": t["batch"], "qd": t["qd"], "pages_per_s": round(t["pages_per_s"], 1)}
                          for t in f.get("throughput", []) if t.get("op") == "read"],
    "ratios": {
        "read_p50_vs_ib_read_lat": round(p50 / lat, 3),
        "read_bw_vs_ib_read_bw": round(best["pages_per_s"] / (mpps * 1e6), 3),
    },
    "verification": f.get("verification"),
}
print(json.dumps(res, indent=2))
EOF
)
echo "$result"
[ -n "$out_json" ] && echo "$result" > "$out_json"
exit 0
