#!/usr/bin/env bash
# Build the wake-protocol fuzzer with clang and run it for a while.
#
#   proto/fuzz/run-fuzz-wake.sh BUILD_DIR [SECONDS] [SOURCE_DIR]
#
# SECONDS defaults to 60; SOURCE_DIR to this checkout. Seeds are the committed
# corpus (tests/corpus/wake: valid controls and malformed cases). What the
# fuzzer learns stays in BUILD_DIR/fuzz-corpus/fuzz_wake_msg; crash inputs land
# in BUILD_DIR/fuzz-artifacts. Exits non-zero if the fuzzer found anything.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 3 ]]; then
	echo "usage: $0 BUILD_DIR [SECONDS] [SOURCE_DIR]" >&2
	exit 2
fi
build=$1
secs=${2:-60}
src=${3:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}

if [[ ! -f "$build/CMakeCache.txt" ]]; then
	cmake -S "$src" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DFERRY_FUZZ=ON >/dev/null
fi
cmake --build "$build" --target fuzz_wake_msg -j"$(nproc)"
bin=$(find "$build" -name fuzz_wake_msg -type f -perm -u+x | head -n1)
corpus=$build/fuzz-corpus/fuzz_wake_msg
artifacts=$build/fuzz-artifacts
mkdir -p "$corpus" "$artifacts"
"$bin" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$artifacts/fuzz_wake_msg-" \
	"$corpus" "$src/tests/corpus/wake" 2>&1 | grep -E "^(stat::number_of_executed_units|SUMMARY|==)" || true
if compgen -G "$artifacts/fuzz_wake_msg-*" >/dev/null; then
	echo "fuzz_wake_msg: crash inputs in $artifacts" >&2
	exit 1
fi
echo "fuzz_wake_msg: no findings in ${secs}s"
