#!/bin/bash
# run-rdma-tests.sh BUILD_DIR: Ferry's RDMA transport over real verbs (Soft-RoCE)
# in the QEMU rig (rig.sh, README.md beside this file).
#
#  1. one guest (client and server on 10.0.0.1): test_transport_rdma and the
#     memsrv integration tests that run over any transport
#     (FERRY_TEST_TRANSPORT=rdma FERRY_TEST_HOST=10.0.0.1);
#  2. two guests: ferry-memsrv --transport rdma on guest 2 (10.0.0.2),
#     ferry-perf xport --transport rdma from guest 1 (reads and writes,
#     data verified by xport itself).
#
# Prints one PASS/FAIL line per check and "rdma-tests: N passed, N failed";
# exits non-zero if anything failed (125 if the rig itself failed).
# Options (environment): RIG_TIMEOUT (default 600 s per boot), KEEP=1 keeps the
# guests' outputs in the temp dir, RDMA_TESTS="name ..." limits part 1.
set -u

here=$(cd "$(dirname "$0")" && pwd)
rig="$here/rig.sh"
if [ $# -ne 1 ] || [ ! -d "$1" ]; then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi
build=$(cd "$1" && pwd)
timeout=${RIG_TIMEOUT:-600}

unit="$build/tests/unit/transport/test_transport_rdma"
memsrv="$build/dataplane/memsrv/ferry-memsrv"
perf="$build/perf/ferry-perf"
# memsrv integration tests that use only the transport (no raw TCP sockets)
its="it_memsrv_isolation it_memsrv_limits it_memsrv_concurrent it_memsrv_kill"
tests=${RDMA_TESTS:-"test_transport_rdma $its"}

for f in "$unit" "$memsrv" "$perf"; do
	if [ ! -x "$f" ]; then
		echo "missing $f: build the tree first (FERRY_HAVE_RDMA needs libibverbs-dev librdmacm-dev)" >&2
		exit 2
	fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/ferry-rdma-tests.XXXXXX")
trap '[ "${KEEP:-0}" = 1 ] && echo "outputs kept in $work" || rm -rf "$work"' EXIT
pass=0
fail=0
result() {   # result PASS|FAIL text
	echo "$1 $2"
	if [ "$1" = PASS ]; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
}

# ------------------------------------------------------------------ 1. one guest
copies=(--copy "$unit" --copy "$memsrv")
guest1="$work/guest1.sh"
{
	echo 'export FERRY_TEST_TRANSPORT=rdma FERRY_TEST_HOST=$RIG_IP'
	echo 'export ASAN_OPTIONS=detect_leaks=1 FERRY_LOG_LEVEL=warn'
	echo "cd /tmp"
	for t in $tests; do
		if [ "$t" = test_transport_rdma ]; then
			bin="$unit"
		else
			bin="$build/tests/integration/$t"
			copies+=(--copy "$bin")
		fi
		echo "echo '### BEGIN $t'"
		echo "t0=\$(date +%s)"
		echo "timeout 240 $bin > /tmp/$t.out 2>&1; rc=\$?"
		# failures print the whole output, successes the summary only
		echo "if [ \$rc -ne 0 ]; then cat /tmp/$t.out; else grep -E 'PASSED|SKIPPED|peer killed|completions' /tmp/$t.out; fi"
		echo "echo \"### END $t \$rc \$((\$(date +%s) - t0))\""
	done
} > "$guest1"
copies+=(--copy "$guest1")

echo "== one guest (client and server on 10.0.0.1): $tests"
"$rig" run --mem 1024 --timeout "$timeout" --out "$work/one" "${copies[@]}" -- "sh $guest1" > "$work/one.log" 2>&1
rig_rc=$?
if [ $rig_rc -eq 125 ] || [ ! -f "$work/one/g1.stdout" ]; then
	cat "$work/one.log"
	result FAIL "rig: one-guest boot failed (status $rig_rc)"
else
	out="$work/one/g1.stdout"
	for t in $tests; do
		line=$(grep "^### END $t " "$out" | tail -1)
		if [ -z "$line" ]; then
			result FAIL "(1) $t: did not finish (rig status $rig_rc)"
			sed -n "/^### BEGIN $t\$/,\$p" "$out" | tail -40
			continue
		fi
		set -- $line
		rc=$4 secs=$5
		summary=$(sed -n "/^### BEGIN $t\$/,/^### END $t /p" "$out" | grep -E 'PASSED|SKIPPED' | tr '\n' ' ')
		if [ "$rc" = 0 ] && ! grep -q "SKIPPED" <<<"$summary"; then
			result PASS "(1) $t over rdma, one guest: ${summary% } (${secs} s)"
		else
			result FAIL "(1) $t over rdma, one guest: exit $rc ${summary% }"
			sed -n "/^### BEGIN $t\$/,/^### END $t /p" "$out" | tail -60
		fi
	done
fi

# ------------------------------------------------------------------ 2. two guests
port=7471
mkdir -p "$work/secret"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/secret/secret"
chmod 600 "$work/secret/secret"
g2="$memsrv --listen 10.0.0.2 --port $port --transport rdma --secret-file $work/secret/secret --pool-size 128M --prefault no --hugepages off --log-level info"
# guest 1 retries while the server is still starting (connection refused), up to ~10 s
cat > "$work/guest1-xport.sh" <<XEOF
for i in 1 2 3 4 5 6 7 8 9 10; do
	$perf xport --transport rdma --server 10.0.0.2:$port --secret $work/secret/secret --pages 2048 -n 2000 \\
		--batch 1,32 --qd 1,4 -D 1 --verify-pages 2048 --no-baselines --json - > /tmp/xport.json 2> /tmp/xport.err
	rc=\$?
	grep -q 'refused' /tmp/xport.err || break
	sleep 1
done
cat /tmp/xport.json; cat /tmp/xport.err >&2
exit \$rc
XEOF
g1="sh $work/guest1-xport.sh"
echo "== two guests: ferry-memsrv on 10.0.0.2, ferry-perf xport on 10.0.0.1"
"$rig" run --guests 2 --mem 1024 --settle 2 --timeout "$timeout" --out "$work/two" --copy "$memsrv" --copy "$perf" \
	--copy "$work/secret/secret" --copy "$work/guest1-xport.sh" --guest2 "$g2" -- "$g1" > "$work/two.log" 2>&1
rig_rc=$?
if [ $rig_rc -eq 0 ] && grep -q '"transport": *"rdma"' "$work/two/g1.stdout" 2>/dev/null; then
	p50=$(grep -o '"p50_us": *[0-9.]*' "$work/two/g1.stdout" | head -1 | grep -o '[0-9.]*$')
	result PASS "(2) ferry-perf xport --transport rdma, guest 1 -> ferry-memsrv guest 2: verified, first read p50 ${p50:-?} us"
else
	result FAIL "(2) ferry-perf xport --transport rdma two guests: status $rig_rc"
	tail -40 "$work/two.log"
	for f in "$work"/two/g*.stdout "$work"/two/g*.stderr; do
		[ -f "$f" ] && { echo "--- $f"; tail -30 "$f"; }
	done
fi

echo "rdma-tests: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
