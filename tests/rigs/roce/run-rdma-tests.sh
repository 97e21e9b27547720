#!/bin/bash
# run-rdma-tests.sh BUILD_DIR: Ferry's RDMA transport over real verbs (Soft-RoCE)
# in the QEMU rig (rig.sh, README.md beside this file).
#
#  1. one guest (client and server on 10.0.0.1): test_transport_rdma, the
#     memsrv integration tests that run over any transport and the pager
#     integration tests that page out to a memory server
#     (FERRY_TEST_TRANSPORT=rdma FERRY_TEST_HOST=10.0.0.1), the guestsim
#     integration (tests/guestsim/integration.sh: several VMs, all patterns,
#     budget 25%, --check) over RDMA, and `ferry-perf fault --transport rdma
#     --quick` against a ferry-memsrv on 10.0.0.1 (verification must pass; the
#     UNUSED and REMOTE p50 and their ratios are printed);
#  2. two guests: ferry-memsrv --transport rdma on guest 2 (10.0.0.2),
#     ferry-perf xport --transport rdma from guest 1 (reads and writes,
#     data verified by xport itself).
#
# Prints one PASS/FAIL line per check and "rdma-tests: N passed, N failed";
# exits non-zero if anything failed (125 if the rig itself failed).
# Options (environment): RIG_TIMEOUT (default 600 s per boot), KEEP=1 keeps the
# guests' outputs in the temp dir, RDMA_TESTS="name ..." limits part 1 (names:
# test_transport_rdma, hwinfo, it_memsrv_*, it_pager_pageout, it_pager_kill,
# guestsim_integration, perf_fault), RDMA_TWO_GUESTS=0 skips part 2.
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
pager="$build/dataplane/pager/ferry-pager"
guestsim="$build/tests/guestsim/guestsim"
hwinfo="$build/hwconfig/ferry-hwinfo"
gs_it="$here/../../guestsim/integration.sh"
gs_it=$(cd "$(dirname "$gs_it")" && pwd)/integration.sh
bash_bin=$(command -v bash)
# memsrv integration tests that use only the transport (no raw TCP sockets)
its="it_memsrv_isolation it_memsrv_share it_memsrv_keep it_memsrv_limits it_memsrv_concurrent it_memsrv_kill it_memsrv_auth"
# pager integration tests that talk to a memory server (the others never leave the host)
pits="it_pager_pageout it_pager_kill"
tests=${RDMA_TESTS:-"test_transport_rdma hwinfo $its $pits guestsim_integration perf_fault"}

for f in "$unit" "$memsrv" "$perf" "$pager" "$guestsim"; do
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

# fault_verdict FAULT.json: one line on ferry-perf fault's JSON; fails unless verification
# passed and the baselines, the transport read, UNUSED and REMOTE all ran.
fault_verdict() {
	python3 - "$1" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    print("no JSON from ferry-perf fault: %s" % e); sys.exit(1)
v = d["verification"]
ran = {c["name"]: c for c in d["cases"] if c["ran"]}
skipped = ["%s (%s)" % (c["name"], c.get("skipped")) for c in d["cases"] if not c["ran"]]
p50 = lambda n: ran[n]["latency"]["p50_us"] if n in ran else None
fmt = lambda x: "%.1f" % x if x else "n/a"
r = d["ratios"]
ok = v["passed"] is True and d["params"].get("transport") == "rdma" and \
    all(n in ran for n in ("uffd-zeropage", "uffd-copy", "xport-read", "pager-unused", "pager-remote", "pager-remote-full"))
print("verification %s (%d pages checked); UNUSED p50 %s us = %sx zeropage p50 %s us; "
      "REMOTE p50 %s us = %sx (copy p50 %s + transport read p50 %s = %s us); REMOTE at full budget p50 %s us%s"
      % ("passed" if v["passed"] else "FAILED: %s" % v.get("first_error"), v["pages_checked"],
         fmt(p50("pager-unused")), "%.2f" % r["unused_p50_vs_zeropage_p50"] if r["unused_p50_vs_zeropage_p50"] else "n/a",
         fmt(p50("uffd-zeropage")), fmt(p50("pager-remote")),
         "%.2f" % r["remote_p50_vs_copy_plus_xport_p50"] if r["remote_p50_vs_copy_plus_xport_p50"] else "n/a",
         fmt(p50("uffd-copy")), fmt(p50("xport-read")), fmt(r["floor_us"]), fmt(p50("pager-remote-full")),
         "; skipped: " + ", ".join(skipped) if skipped else ""))
sys.exit(0 if ok else 1)
PY
}

# ------------------------------------------------------------------ 1. one guest
copies=(--copy "$unit" --copy "$memsrv")
guest1="$work/guest1.sh"
{
	echo 'export FERRY_TEST_TRANSPORT=rdma FERRY_TEST_HOST=$RIG_IP'
	echo 'export ASAN_OPTIONS=detect_leaks=1 FERRY_LOG_LEVEL=warn'
	echo "cd /tmp"
	# what the pager needs from the guest kernel's userfaultfd (read from the headers' API answer
	# by the pager itself; here only the kernel version, for the report)
	echo "echo \"### KERNEL \$(uname -r)\""
	for t in $tests; do
		echo "echo '### BEGIN $t'"
		echo "t0=\$(date +%s)"
		case $t in
		guestsim_integration)
			copies+=(--copy "$guestsim" --copy "$pager" --copy "$gs_it" --copy "$bash_bin")
			# 32 MiB guests (budget 8 MiB), 20000 accesses per run: long enough under TCG for
			# every pattern to touch pages again after they went out (a 2 s run is not)
			echo "GUESTSIM_IT_MEM=32M GUESTSIM_IT_OPS=20000 timeout 240 $bash_bin $gs_it $guestsim $pager $memsrv > /tmp/$t.out 2>&1; rc=\$?"
			echo "cat /tmp/$t.out"
			;;
		hwinfo)
			# placement for the guest's address names the RDMA device bound to its NIC
			copies+=(--copy "$hwinfo")
			echo "$hwinfo --for \$RIG_IP > /tmp/$t.out 2>&1; rc=\$?"
			echo "cat /tmp/$t.out | tail -3"
			echo "grep -q 'rdma device rxe0' /tmp/$t.out || rc=1"
			;;
		perf_fault)
			# ferry-perf starts its own ferry-memsrv on 127.0.0.1, which has no RDMA device:
			# give it one on the guest's rxe0 address (--server), it starts the pagers itself
			copies+=(--copy "$perf" --copy "$pager")
			cat <<-GEOF
			mkdir -p /tmp/pf && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > /tmp/pf/secret && chmod 600 /tmp/pf/secret
			$memsrv --listen \$RIG_IP --port 0 --transport rdma --secret-file /tmp/pf/secret --ready-file /tmp/pf/port \\
				--pool-size 512M --prefault no --hugepages off --log-level warn > /tmp/pf/memsrv.log 2>&1 &
			mpid=\$!
			for i in \$(seq 600); do [ -s /tmp/pf/port ] && break; sleep 0.05; done
			port=\$(grep -oE '[0-9]+' /tmp/pf/port | head -n1)
			timeout 240 $perf fault --transport rdma --quick --timeout 200 --server \$RIG_IP:\$port --secret /tmp/pf/secret \\
				--json /tmp/pf/fault.json > /tmp/$t.out 2>&1; rc=\$?
			kill \$mpid; wait \$mpid; mrc=\$?
			[ \$rc -eq 0 ] && [ \$mrc -ne 0 ] && { echo "ferry-memsrv exit \$mrc after SIGTERM"; cat /tmp/pf/memsrv.log; rc=1; }
			cat /tmp/$t.out
			[ \$rc -ne 0 ] && { echo '--- memsrv log'; tail -20 /tmp/pf/memsrv.log; }
			echo '### JSON BEGIN'; cat /tmp/pf/fault.json 2>/dev/null; echo; echo '### JSON END'
			GEOF
			;;
		*)
			case $t in
			test_transport_rdma) bin="$unit" ;;
			it_pager_*) bin="$build/tests/integration/pager/$t"; copies+=(--copy "$bin" --copy "$pager") ;;
			*) bin="$build/tests/integration/$t"; copies+=(--copy "$bin") ;;
			esac
			echo "timeout 240 $bin > /tmp/$t.out 2>&1; rc=\$?"
			# failures print the whole output, successes the summary only
			echo "if [ \$rc -ne 0 ]; then cat /tmp/$t.out; else grep -E 'PASSED|SKIPPED|SKIP sub-case|peer killed|completions|paged out|uffd features' /tmp/$t.out; fi"
			;;
		esac
		echo "echo \"### END $t \$rc \$((\$(date +%s) - t0))\""
	done
} > "$guest1"
copies+=(--copy "$guest1")

# each file once (rig.sh would copy a repeated one twice)
declare -A seen=()
uniq_copies=()
for ((i = 0; i < ${#copies[@]}; i += 2)); do
	[ -n "${seen[${copies[i+1]}]:-}" ] && continue
	seen[${copies[i+1]}]=1
	uniq_copies+=(--copy "${copies[i+1]}")
done
copies=("${uniq_copies[@]}")
echo "== one guest (client and server on 10.0.0.1): $tests"
"$rig" run --mem 1024 --timeout "$timeout" --out "$work/one" "${copies[@]}" -- "sh $guest1" > "$work/one.log" 2>&1
rig_rc=$?
if [ $rig_rc -eq 125 ] || [ ! -f "$work/one/g1.stdout" ]; then
	cat "$work/one.log"
	result FAIL "rig: one-guest boot failed (status $rig_rc)"
else
	out="$work/one/g1.stdout"
	echo "   guest kernel: $(sed -n 's/^### KERNEL //p' "$out")"
	for t in $tests; do
		line=$(grep "^### END $t " "$out" | tail -1)
		if [ -z "$line" ]; then
			result FAIL "(1) $t: did not finish (rig status $rig_rc)"
			sed -n "/^### BEGIN $t\$/,\$p" "$out" | tail -40
			continue
		fi
		set -- $line
		rc=$4 secs=$5
		section=$(sed -n "/^### BEGIN $t\$/,/^### END $t /p" "$out")
		if [ "$t" = guestsim_integration ]; then
			if [ "$rc" = 0 ] && grep -q "guestsim integration: all passed" <<<"$section"; then
				result PASS "(1) guestsim integration over rdma, one guest: $(grep -c '^ok ' <<<"$section") guestsim runs verified (${secs} s)"
				grep -E '^(ok|integration:) ' <<<"$section" | sed 's/^/     /'
			else
				result FAIL "(1) guestsim integration over rdma, one guest: exit $rc"
				tail -80 <<<"$section"
			fi
			continue
		fi
		if [ "$t" = hwinfo ]; then
			placement=$(grep '^placement:' <<<"$section" | tail -1)
			if [ "$rc" = 0 ]; then
				result PASS "(1) ferry-hwinfo in the guest: $placement"
			else
				result FAIL "(1) ferry-hwinfo in the guest: exit $rc"
				tail -20 <<<"$section"
			fi
			continue
		fi
		if [ "$t" = perf_fault ]; then
			sed -n '/^### JSON BEGIN$/,/^### JSON END$/p' <<<"$section" | sed '1d;$d' > "$work/fault.json"
			if verdict=$(fault_verdict "$work/fault.json") && [ "$rc" = 0 ]; then
				result PASS "(1) ferry-perf fault --transport rdma --quick, one guest: $verdict (${secs} s)"
				[ "${KEEP:-0}" = 1 ] && echo "     JSON: $work/fault.json"
			else
				result FAIL "(1) ferry-perf fault --transport rdma --quick: exit $rc; $verdict"
				sed '/^### JSON BEGIN$/,/^### JSON END$/d' <<<"$section" | tail -60
			fi
			continue
		fi
		summary=$(sed -n "/^### BEGIN $t\$/,/^### END $t /p" "$out" | grep -E 'PASSED|SKIPPED' | tr '\n' ' ')
		subskip=$(grep -o 'SKIP sub-case: .*' <<<"$section" | sort -u | tr '\n' ' ')
		if [ "$rc" = 0 ] && ! grep -q "SKIPPED" <<<"$summary"; then
			result PASS "(1) $t over rdma, one guest: ${summary% } (${secs} s)${subskip:+; $subskip}"
			grep -o 'uffd features .*' <<<"$section" | sed 's/^/     guest kernel: /'
			grep -o 'vm-a: paged out .*' <<<"$section" | sed 's/^/     /'
		else
			result FAIL "(1) $t over rdma, one guest: exit $rc ${summary% }"
			sed -n "/^### BEGIN $t\$/,/^### END $t /p" "$out" | tail -60
		fi
	done
fi

# ------------------------------------------------------------------ 2. two guests
if [ "${RDMA_TWO_GUESTS:-1}" = 0 ]; then
	echo "== two guests: skipped (RDMA_TWO_GUESTS=0)"
	echo "rdma-tests: $pass passed, $fail failed"
	[ "$fail" -eq 0 ]
	exit
fi
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
# The guests are linked by a UDP socket between two QEMU processes under
# TCG; on a loaded 2-core host that link drops frames, and rxe gives up on
# a QP after its retries (the transport then reports "retry counter
# exceeded" / "timed out"). That is the emulated wire, not Ferry: such a
# failure gets one more boot, and says so. Any other failure does not.
for attempt in 1 2; do
	rm -rf "$work/two"
	"$rig" run --guests 2 --mem 1024 --settle 2 --timeout "$timeout" --out "$work/two" --copy "$memsrv" \
		--copy "$perf" --copy "$work/secret/secret" --copy "$work/guest1-xport.sh" --guest2 "$g2" -- "$g1" \
		> "$work/two.log" 2>&1
	rig_rc=$?
	[ $rig_rc -eq 0 ] && break
	if [ $attempt -eq 1 ] && grep -qE 'retry counter exceeded|timed out' "$work"/two/g1.stderr 2>/dev/null; then
		echo "two guests: the emulated link lost frames (retry counter exceeded); booting once more"
		continue
	fi
	break
done
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
