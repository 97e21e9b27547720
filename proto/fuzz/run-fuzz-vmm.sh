#!/usr/bin/env bash
# Build the VMM-protocol fuzzers with clang and run each for a while.
#
#   proto/fuzz/run-fuzz-vmm.sh BUILD_DIR [SECONDS] [SOURCE_DIR]
#
# SECONDS defaults to 60 per target; SOURCE_DIR to this checkout. Seeds are
# the committed corpus (tests/corpus/vmm): binary messages prefixed with the
# descriptor-count byte fuzz_vmm_msg expects (the .F<n> in their names), a
# few allow-list specs, and the Firecracker handshakes. What the fuzzers
# learn stays in BUILD_DIR/fuzz-corpus; crash inputs land in
# BUILD_DIR/fuzz-artifacts. Prints each target's execution count; exits
# non-zero if any target failed.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 3 ]]; then
	echo "usage: $0 BUILD_DIR [SECONDS] [SOURCE_DIR]" >&2
	exit 2
fi
build=$1
secs=${2:-60}
src=${3:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
targets=(fuzz_vmm_msg fuzz_vmm_firecracker)

if [[ ! -f "$build/CMakeCache.txt" ]]; then
	cmake -S "$src" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DFERRY_FUZZ=ON >/dev/null
fi
cmake --build "$build" --target "${targets[@]}" -j"$(nproc)"
bin=$(dirname "$(find "$build" -name fuzz_vmm_msg -type f -perm -u+x | head -n1)")

seeds=$build/fuzz-seeds-vmm
rm -rf "$seeds"
mkdir -p "$seeds/msg" "$seeds/fc" "$build/fuzz-artifacts"
for f in "$src"/tests/corpus/vmm/*.bin; do
	name=$(basename "$f")
	fds=0
	if [[ $name =~ \.F([0-9]+)\.E[0-9]+\.bin$ ]]; then
		fds=${BASH_REMATCH[1]}
	fi
	{ printf "\\x$(printf %02x "$fds")"; cat "$f"; } >"$seeds/msg/$name"
done
printf '\xa5uid:107, gid:994' >"$seeds/msg/allow-1"
printf '\xa5uid:0\tgid:4294967294' >"$seeds/msg/allow-2"
cp "$src"/tests/corpus/vmm/firecracker/*.json "$seeds/fc/"
# JSON tokens of the handshake, so the fuzzer mutates structure, not just bytes.
cat >"$seeds/fc.dict" <<'DICT'
"\"base_host_virt_addr\""
"\"size\""
"\"offset\""
"\"page_size\""
"\"page_size_kib\""
"\"gpa_start\""
"\"is_guest_memfd\""
"4096"
"2097152"
"true"
"false"
"null"
"-1"
"1e3"
"9223372036854775807"
"18446744073709551616"
"{"
"}"
"["
"]"
":"
","
DICT

status=0
summary=()
for t in "${targets[@]}"; do
	corpus=$build/fuzz-corpus/$t
	log=$build/fuzz-artifacts/$t.log
	mkdir -p "$corpus"
	case $t in
	fuzz_vmm_msg) inputs=("$seeds/msg"); opts=(-max_len=70000) ;;        # room for 4096 hints
	fuzz_vmm_firecracker) inputs=("$seeds/fc"); opts=(-max_len=8192 -dict="$seeds/fc.dict") ;;
	esac
	echo "== $t for ${secs}s"
	rc=0
	"$bin/$t" -max_total_time="$secs" -use_value_profile=1 -print_final_stats=1 \
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
