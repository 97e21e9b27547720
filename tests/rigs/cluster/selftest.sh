#!/usr/bin/env bash
# shellcheck disable=SC2015,SC2086  # pass/fail always return 0; "set -- $x" splits on purpose
# Self-test of the cluster rig (cluster.sh): 3 hosts at 200mbit, ICMP between every
# pair, the htb rate on every link (both directions), a real ferry-memsrv in h2 and
# ferry-perf xport in h1 over the shaped link (its data must verify; its best batched
# read must not beat the shaped rate by more than 20%, which shows the link is shaped:
# a property of the rig, not a speed claim on Ferry), a clean SIGTERM exit of the
# server, then `down` leaves no namespace behind.
#
#   selftest.sh BUILD_DIR
#
# Environment: FERRY_CLUSTER_SELFTEST_RATE (default 200mbit), FERRY_CLUSTER_PREFIX
# (default "fcs-", distinct from cluster.sh's own default so a rig in use is untouched).
# Exit status: 0 all passed, 1 a check failed, 2 usage, 77 skipped (not root, no netns).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
rig=$here/cluster.sh
[ $# -eq 1 ] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
build_dir=$1
rate=${FERRY_CLUSTER_SELFTEST_RATE:-200mbit}
export FERRY_CLUSTER_PREFIX=${FERRY_CLUSTER_PREFIX:-fcs-}
P=$FERRY_CLUSTER_PREFIX
memsrv=$build_dir/dataplane/memsrv/ferry-memsrv
perf=$build_dir/perf/ferry-perf

passed=0
failed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }

out=$("$rig" check 2>&1); rc=$?
if [ $rc -eq 77 ]; then echo "$out"; exit 77; fi
[ $rc -eq 0 ] || { echo "$out"; echo "FAIL: cluster.sh check (status $rc)"; exit 1; }
for b in "$memsrv" "$perf"; do
	[ -x "$b" ] || { echo "FAIL: no executable $b (build first)"; exit 1; }
done
command -v python3 >/dev/null 2>&1 || { echo "SKIP: python3 is needed (ICMP probe, JSON)"; exit 77; }

run_dir=$(mktemp -d "${TMPDIR:-/tmp}/ferry-cluster-selftest.XXXXXX")
srv_pid=""
cleanup() {
	trap - EXIT INT TERM
	if [ -n "$srv_pid" ] && kill -0 "$srv_pid" 2>/dev/null; then
		kill -TERM "$srv_pid" 2>/dev/null; sleep 0.5; kill -KILL "$srv_pid" 2>/dev/null
		wait "$srv_pid" 2>/dev/null
	fi
	"$rig" down >/dev/null 2>&1
	rm -rf "$run_dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ICMP echo with a raw socket (this host has no ping binary): icmp_ok FROM_HOST DST.
icmp_ok() {
	"$rig" exec "$1" python3 - "$2" <<'PY'
import os, socket, struct, sys, time
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
dst = sys.argv[1]
sk = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
sk.settimeout(0.5)
ident = os.getpid() & 0xffff
for seq in range(1, 4):
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq); data = b"ferry-cluster"
    sk.sendto(struct.pack("!BBHHH", 8, 0, csum(hdr + data + b"\0"), ident, seq) + data, (dst, 0))
    end = time.time() + 0.5
    while time.time() < end:
        try:
            pkt, addr = sk.recvfrom(2048)
        except socket.timeout:
            break
        ihl = (pkt[0] & 15) * 4
        t, _, _, i, s = struct.unpack("!BBHHH", pkt[ihl:ihl + 8])
        if addr[0] == dst and t == 0 and i == ident and s == seq:
            sys.exit(0)
sys.exit(1)
PY
}

t0=$SECONDS

# 1. up (twice: the second must rebuild the same state).
if "$rig" up 3 --rate "$rate" >"$run_dir/up.log" 2>&1 && "$rig" up 3 --rate "$rate" >>"$run_dir/up.log" 2>&1; then
	pass "cluster.sh up 3 --rate $rate (twice)"
else
	fail "cluster.sh up 3 --rate $rate"; cat "$run_dir/up.log"
	echo "$passed passed, $failed failed"; exit 1
fi
n=$(ip netns list | awk '{print $1}' | grep -cE "^${P}(br|h[0-9]+)$")
[ "$n" -eq 4 ] && pass "4 namespaces (${P}br, ${P}h1..${P}h3)" || fail "expected 4 namespaces, found $n"
[ "$("$rig" addr h2)" = 10.77.0.2 ] && pass "addr h2 = 10.77.0.2" || fail "addr h2 = $("$rig" addr h2)"
"$rig" status

# 2. ICMP between every pair (both ways).
for a in 1 2 3; do
	for b in 1 2 3; do
		[ $a = $b ] && continue
		if icmp_ok "h$a" "10.77.0.$b"; then pass "ping h$a -> 10.77.0.$b"; else fail "ping h$a -> 10.77.0.$b"; fi
	done
done

# 3. The configured rate on every link, both directions.
# tc_bits RATE: tc rate syntax (200mbit, 1Gbit, 125mbps) in bits/s; -1 when it does not parse.
tc_bits() {
	python3 -c "
import re, sys
m = re.match(r'([0-9.]+)([a-z]*)$', sys.argv[1].lower())
u = {'bit': 1, 'kbit': 1e3, 'mbit': 1e6, 'gbit': 1e9, 'tbit': 1e12,
     'bps': 8, 'kbps': 8e3, 'mbps': 8e6, 'gbps': 8e9, 'tbps': 8e12}
print(int(float(m.group(1)) * u[m.group(2)]) if m and m.group(2) in u else -1)" "$1"
}
want=$(tc_bits "$rate")
for i in 1 2 3; do
	for side in "${P}h$i eth0" "${P}br p$i"; do
		set -- $side
		q=$(ip netns exec "$1" tc qdisc show dev "$2" | head -n 1)
		r=$(ip netns exec "$1" tc class show dev "$2" | awk '/class htb 1:10/ { for (k = 1; k < NF; k++) if ($k == "rate") print $(k + 1) }')
		got=$(tc_bits "${r:-x}")
		if [[ $q == "qdisc htb 1: root"* ]] && [ "$got" = "$want" ]; then
			pass "htb $r on $1/$2"
		else
			fail "link $1/$2: qdisc '$q', class rate '${r:-none}' (want $rate)"
		fi
	done
done

# 4. ferry-memsrv in h2, ferry-perf xport in h1 over the shaped link.
secret=$run_dir/secret
(umask 077 && head -c 48 /dev/urandom | base64 -w0 > "$secret")
chmod 600 "$secret"
"$rig" exec h2 "$memsrv" --listen 10.77.0.2 --port 0 --transport tcp --secret-file "$secret" \
	--ready-file "$run_dir/ready" --pool-size 64M --hugepages off --prefault no \
	>"$run_dir/memsrv.log" 2>&1 &
srv_pid=$!
port=""
for _ in $(seq 200); do
	if [ -s "$run_dir/ready" ]; then
		port=$(grep -oE '[0-9]+' "$run_dir/ready" | head -n 1)
		[ -n "$port" ] && break
	fi
	kill -0 "$srv_pid" 2>/dev/null || break
	sleep 0.05
done
if [ -n "$port" ]; then
	pass "ferry-memsrv ready in h2 on 10.77.0.2:$port"
	json=$run_dir/xport.json
	# A -n 500 point moves 2 MiB; above 500mbit the htb bucket (2 ms at the rate) is a
	# sizeable part of that and a point could ride the bucket, so time the points instead.
	long=()
	[ "$want" -gt 500000000 ] && long=(-D 1)
	"$rig" exec h1 "$perf" xport --transport tcp --server "10.77.0.2:$port" --secret "$secret" \
		--pages 1024 --no-baselines --batch 1,32 --qd 1,4 -n 500 "${long[@]}" --json "$json" \
		>"$run_dir/perf.log" 2>&1
	prc=$?
	if [ $prc -eq 0 ]; then pass "ferry-perf xport h1 -> h2 exit 0"; else fail "ferry-perf xport exit $prc"; tail -n 20 "$run_dir/perf.log"; fi
	verdict=$(python3 - "$json" "$want" <<'PY' 2>&1
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    print("nojson %s" % e); sys.exit(0)
v = d.get("verification") or {}
rd = [t for t in d.get("throughput", []) if t.get("op") == "read" and t.get("batch", 1) > 1]
best = max(rd, key=lambda t: t["gbytes_per_s"]) if rd else None
mbit = best["gbytes_per_s"] * 8e3 if best else -1
print("%s %.1f %s %s" % ("ok" if v.get("passed") is True else "bad", mbit,
      best["batch"] if best else "-", best["qd"] if best else "-"))
PY
)
	set -- $verdict
	if [ "$1" = ok ]; then pass "data verification passed (JSON)"; else fail "data verification: $verdict"; fi
	if [ "${2:-}" != "" ] && [ "$1" != nojson ]; then
		mbit=$2; cap=$(python3 -c "print('%.1f' % ($want * 1.2 / 1e6))")
		echo "best batched read: $mbit Mbit/s payload (batch $3, qd $4); link shaped to $rate; limit ${cap} Mbit/s"
		if python3 -c "import sys; sys.exit(0 if 0 < $mbit <= $cap else 1)"; then
			pass "best batched read $mbit Mbit/s <= 1.2 x $rate"
		else
			fail "best batched read $mbit Mbit/s exceeds 1.2 x $rate: the link is not shaped"
		fi
	fi
else
	fail "ferry-memsrv did not become ready"; tail -n 20 "$run_dir/memsrv.log"
fi

# 5. SIGTERM: the server exits 0.
if [ -n "$srv_pid" ]; then
	kill -TERM "$srv_pid" 2>/dev/null
	for _ in $(seq 100); do kill -0 "$srv_pid" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$srv_pid" 2>/dev/null; then
		fail "ferry-memsrv still running 10 s after SIGTERM"
	else
		wait "$srv_pid"; src=$?
		[ $src -eq 0 ] && pass "ferry-memsrv exit 0 on SIGTERM" || { fail "ferry-memsrv exit $src on SIGTERM"; tail -n 20 "$run_dir/memsrv.log"; }
	fi
	srv_pid=""
fi

# 6. down, twice (the second a no-op); nothing of the prefix is left.
if "$rig" down && "$rig" down; then pass "cluster.sh down (twice)"; else fail "cluster.sh down"; fi
left=$(ip netns list | awk '{print $1}' | grep -c "^${P}" || true)
[ "$left" -eq 0 ] && pass "no ${P}* namespace left" || fail "$left ${P}* namespaces left: $(ip netns list | grep "^${P}")"

echo "selftest took $((SECONDS - t0)) s"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
