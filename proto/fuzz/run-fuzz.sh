#!/usr/bin/env bash
# Build the page-protocol fuzzers with clang and run each for a while.
#
#   proto/fuzz/run-fuzz.sh BUILD_DIR [SECONDS] [SOURCE_DIR]
#
# SECONDS defaults to 60 per target; SOURCE_DIR to this checkout. Seeds are
# one valid message of every type (page_gen_seeds) plus the committed
# malformed corpus; what the fuzzers learn stays in BUILD_DIR/fuzz-corpus so
# a later run starts from it. Crash inputs land in BUILD_DIR/fuzz-artifacts.
# Prints each target's execution count; exits non-zero if any target failed.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 3 ]]; then
	echo "usage: $0 BUILD_DIR [SECONDS] [SOURCE_DIR]" >&2
	exit 2
fi
build=$1
secs=${2:-60}
src=${3:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
targets=(fuzz_page_hdr fuzz_page_msg fuzz_page_rw)

cmake -S "$src" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DFERRY_FUZZ=ON >/dev/null
cmake --build "$build" --target page_gen_seeds "${targets[@]}" -j"$(nproc)"

seeds=$build/fuzz-seeds
rm -rf "$seeds"
mkdir -p "$seeds" "$build/fuzz-artifacts"
"$build/proto/page_gen_seeds" "$seeds/msg"
"$build/proto/page_gen_seeds" --rw "$seeds/rw"

status=0
summary=()
for t in "${targets[@]}"; do
	corpus=$build/fuzz-corpus/$t
	log=$build/fuzz-artifacts/$t.log
	mkdir -p "$corpus"
	case $t in
	fuzz_page_rw) inputs=("$seeds/rw"); opts=(-max_len=16400) ;;  # room for 1024 entries
	*) inputs=("$seeds/msg" "$src/tests/corpus/page"); opts=() ;;
	esac
	echo "== $t for ${secs}s"
	rc=0
	"$build/proto/$t" -max_total_time="$secs" -use_value_profile=1 -print_final_stats=1 \
		-artifact_prefix="$build/fuzz-artifacts/$t-" "${opts[@]}" \
		"$corpus" "${inputs[@]}" >"$log" 2>&1 || rc=$?
	runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 runs in \2 s/p' "$log" | tail -n1)
	if [[ $rc -ne 0 ]]; then
		status=1
		summary+=("$t: FAILED (exit $rc), see $log")
		tail -n 40 "$log" >&2
	else
		summary+=("$t: ${runs:-no run count (see $log)}")
	fi
done

printf '%s\n' "${summary[@]}"
exit $status
