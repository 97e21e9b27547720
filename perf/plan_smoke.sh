#!/usr/bin/env bash
# Smoke test of `ferry-perf plan --quick`: a tiny LU runs under the access
# sampler; the JSON, CSV and plot script exist, the LU's residual passed, the
# trace recorded periods and writes, every rate is in [0, 1], the online
# planner agreed with the offline replay. Never speed.
#
#   plan_smoke.sh PATH-TO-ferry-perf
set -uo pipefail
perf=${1:?usage: plan_smoke.sh PATH-TO-ferry-perf}
out=$(mktemp -d "${TMPDIR:-/tmp}/perf-plan-smoke.XXXXXX")
trap 'rm -rf "$out"' EXIT

"$perf" plan --quick --history 1,2 --timeout 120 --json "$out/plan.json" --csv "$out/plan.csv" --plot "$out/plan.png"
rc=$?
if [ $rc -ne 0 ]; then
	echo "plan_smoke: ferry-perf plan exited $rc"
	exit 1
fi
for f in plan.json plan.csv plan.gp; do
	[ -s "$out/$f" ] || { echo "plan_smoke: $f missing or empty"; exit 1; }
done
if command -v gnuplot >/dev/null 2>&1 && [ ! -s "$out/plan.png" ]; then
	echo "plan_smoke: gnuplot is installed but plan.png was not rendered"
	exit 1
fi
python3 - "$out/plan.json" "$out/plan.csv" <<'PY'
import csv, json, sys
d = json.load(open(sys.argv[1]))
assert d["tool"] == "ferry-perf plan", "not a ferry-perf plan document"
assert d["workload"]["residual_passed"] is True, "LU residual failed: %s" % d["workload"]["residual"]
t = d["trace"]
assert t["periods"] >= 2, "trace recorded %d periods" % t["periods"]
assert t["block_periods"]["write"] > 0, "trace recorded no writes"
assert t["block_periods"]["clean"] + t["block_periods"]["read"] + t["block_periods"]["write"] == t["periods"] * t["blocks"]
s = d["sampler"]
assert s["wp_faults"] + s["minor_write_faults"] > 0, "no write faults"
assert s["ioctl_errors"] == 0, "sampler ioctl errors: %d" % s["ioctl_errors"]
assert d["online_matches_offline"] is True
assert set(d["verdict"]["met_by_history"]) == {"1", "2"}
assert len(d["windows"]) == len(d["params"]["windows"]) * len(d["params"]["history"]) == 6
scored = 0
for w in d["windows"]:
    n = w["n_c"] + w["n_r"] + w["n_w"]
    assert n == w["windows_scored"] * t["blocks"], "window %d: %d predictions" % (w["periods"], n)
    scored += w["windows_scored"]
    for k in ("A_w_given_c", "A_w_given_r", "A_c_given_w", "A_r_given_w"):
        v = w[k]
        assert v is None or 0.0 <= v <= 1.0, "window %d: %s = %s" % (w["periods"], k, v)
    assert w["planned_resent_bytes"] <= w["precopy_resent_bytes"]
    assert w["history"] in (1, 2)
assert scored > 0, "no window was scored"
rows = list(csv.DictReader(open(sys.argv[2])))
assert len(rows) == len(d["windows"]), "CSV has %d rows" % len(rows)
for r in rows:
    for k in ("A_w_given_c", "A_w_given_r", "A_c_given_w", "A_r_given_w"):
        assert 0.0 <= float(r[k]) <= 1.0
print("plan_smoke: ok (%d periods, %d blocks, %d write block-periods)" % (t["periods"], t["blocks"], t["block_periods"]["write"]))
PY
