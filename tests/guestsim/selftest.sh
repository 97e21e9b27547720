#!/usr/bin/env bash
# guestsim self-test (no pager): every access pattern runs and verifies, on a
# memfd and on anonymous memory; free page reporting via madvise reads back
# zeros; an injected corruption is caught (so the check can fail); boot-like
# with 5% touched really makes ~5% of the memfd resident (mincore).
#
#   selftest.sh PATH-TO-guestsim
set -uo pipefail

gs=${1:?usage: selftest.sh PATH-TO-guestsim}
fails=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/guestsim-selftest.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

ok()   { echo "ok   $*"; }
bad()  { echo "FAIL $*"; fails=$((fails + 1)); }

# jfield FILE EXPR: one value out of the JSON (jq, else python3)
jfield() {
	if command -v jq >/dev/null 2>&1; then
		jq -r "$2" "$1"
	else
		python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {"d": d}))' \
			"$1" "$3"
	fi
}

run() { # name expected-status args...
	local name=$1 want=$2
	shift 2
	"$gs" --timeout 120 -q "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
	local rc=$?
	if [ "$rc" -eq "$want" ]; then
		ok "$name (exit $rc)"
		return 0
	fi
	bad "$name: exit $rc, expected $want"
	sed 's/^/    /' "$tmp/$name.err"
	return 1
}

for p in sequential uniform zipf linpack boot; do
	if run "memfd-$p" 0 --standalone --mem 32M --pattern "$p" --ops 150000 --seed 7 --check \
		--json "$tmp/memfd-$p.json"; then
		[ "$(jfield "$tmp/memfd-$p.json" .verification.passed 'd["verification"]["passed"]')" = true ] ||
			bad "memfd-$p: JSON does not say passed"
	fi
	run "anon-$p" 0 --standalone --anon --mem 16M --pattern "$p" --ops 60000 --seed 8 --check
done
run zipf-steep 0 --standalone --mem 16M --pattern zipf --zipf-s 1.4 --ops 50000 --write-pct 80 --check
run read-only 0 --standalone --mem 16M --pattern uniform --ops 50000 --write-pct 0 --check
run write-only 0 --standalone --mem 16M --pattern sequential --ops 50000 --write-pct 100 --check
run duration 0 --standalone --mem 16M --duration 0.3 --check
for p in uniform linpack boot; do
	run "vcpus-$p" 0 --standalone --mem 32M --vcpus 3 --pattern "$p" --ops 90000 --check \
		--free-report 10 --free-every 5000 --free-via madvise
done
run vcpus-inject 3 --standalone --mem 16M --vcpus 4 --ops 20000 --check --inject-corruption

# Free page reporting: freed ranges must read back as zeros, by reads during the run and the check.
if run free-memfd 0 --standalone --mem 32M --ops 200000 --free-report 25 --free-every 5000 --free-via madvise \
	--check --json "$tmp/free.json"; then
	[ "$(jfield "$tmp/free.json" .free_rounds 'd["free_rounds"]')" -gt 0 ] || bad "free-memfd: no free rounds"
fi
run free-anon 0 --standalone --anon --mem 16M --ops 100000 --free-report 25 --free-every 5000 --check

# The check must be able to fail.
if run inject-written 3 --standalone --mem 16M --ops 20000 --check --inject-corruption=written; then
	grep -q "CORRUPTION: page" "$tmp/inject-written.err" || bad "inject-written: no mismatch printed"
fi
if run inject-unwritten 3 --standalone --mem 16M --ops 20000 --check --inject-corruption=unwritten; then
	grep -q "expected zeros" "$tmp/inject-unwritten.err" || bad "inject-unwritten: no mismatch printed"
fi

# Usage errors.
run usage-nomode 2 --mem 16M
run usage-hint 2 --standalone --free-report 10 --free-via hint
run usage-anon-hint 2 --anon --pager /nonexistent.sock --free-report 10 --free-via hint
run usage-regions-anon 2 --anon --pager /nonexistent.sock --regions 2
run usage-regions-small 2 --standalone --mem 8M --regions 8
run usage-regions-range 2 --standalone --regions 9
# --regions only changes the registration and the gpa of hints: standalone runs and verifies as before
run regions-3 0 --standalone --mem 32M --regions 3 --vcpus 2 --ops 60000 --free-report 25 --free-every 5000 \
	--free-via madvise --check

# Boot-like, 5% touched: ~5% of the memfd resident afterwards (mincore), and only that.
run boot5 0 --standalone --mem 64M --pattern boot --touched 5 --ops 200000 --json "$tmp/boot.json"
pages=$(jfield "$tmp/boot.json" .pages 'd["pages"]')
res=$(jfield "$tmp/boot.json" .resident_pages 'd["resident_pages"]')
touched=$(jfield "$tmp/boot.json" .pages_touched 'd["pages_touched"]')
if [ -n "$res" ] && [ "$res" != null ] && [ $((res * 1000 / pages)) -ge 45 ] && [ $((res * 1000 / pages)) -le 55 ] &&
   [ $((touched * 1000 / pages)) -ge 45 ] && [ $((touched * 1000 / pages)) -le 55 ]; then
	ok "boot5: $res of $pages pages resident, $touched touched (~5%)"
else
	bad "boot5: resident $res, touched $touched of $pages pages: not ~5%"
fi

if [ $fails -ne 0 ]; then
	echo "guestsim self-test: $fails failure(s)"
	exit 1
fi
echo "guestsim self-test: all passed"
