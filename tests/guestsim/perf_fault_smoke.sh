#!/usr/bin/env bash
# Smoke test of `ferry-perf fault --quick`: it runs, writes JSON that parses,
# every case that ran verified its pages, and the baselines were measured.
# Cases that need ferry-pager are skipped (not failed) when it is not built.
#
#   perf_fault_smoke.sh PATH-TO-ferry-perf
set -uo pipefail
perf=${1:?usage: perf_fault_smoke.sh PATH-TO-ferry-perf}
out=$(mktemp -d "${TMPDIR:-/tmp}/perf-fault-smoke.XXXXXX")
trap 'rm -rf "$out"' EXIT

"$perf" fault --quick --timeout 240 --json "$out/fault.json" --csv "$out/fault.csv" --plot "$out/fault.png"
rc=$?
if [ $rc -ne 0 ]; then
	echo "perf_fault_smoke: ferry-perf fault exited $rc"
	exit 1
fi
# When ferry-pager and ferry-memsrv are built next to ferry-perf, their cases must run too.
bin_dir=$(dirname "$perf")/..
need_pager=0
[ -x "$bin_dir/dataplane/pager/ferry-pager" ] && [ -x "$bin_dir/dataplane/memsrv/ferry-memsrv" ] && need_pager=1
python3 - "$out/fault.json" "$need_pager" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
need_pager = sys.argv[2] == "1"
assert d["tool"] == "ferry-perf fault", "not a ferry-perf fault document"
v = d["verification"]
assert v["passed"] is True, "verification failed: %s" % v.get("first_error")
ran = {c["name"]: c for c in d["cases"] if c["ran"]}
for base in ("kernel-anon", "uffd-zeropage", "uffd-copy"):
    assert base in ran, "baseline %s did not run" % base
    assert ran[base]["latency"]["p50_us"], "baseline %s has no p50" % base
if need_pager:
    for c in ("xport-read", "pager-unused", "pager-remote", "pager-remote-full"):
        assert c in ran, "%s did not run although ferry-pager is built: %s" % (
            c, [x.get("skipped") for x in d["cases"] if x["name"] == c])
for c in d["cases"]:
    if not c["ran"]:
        print("perf_fault_smoke: %s skipped: %s" % (c["name"], c.get("skipped")))
print("perf_fault_smoke: ok (%d cases ran, %d pages verified)" % (len(ran), v["pages_checked"]))
PY
