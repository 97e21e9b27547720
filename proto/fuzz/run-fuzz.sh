#!/usr/bin/env bash
# Build the protocol fuzzers with clang and run each for a while.
#
#   proto/fuzz/run-fuzz.sh BUILD_DIR [SECONDS] [page|vmm|wake|ctrl|all] [SOURCE_DIR]
#
# SECONDS defaults to 60 per target; the protocol to all; SOURCE_DIR to this
# checkout. Seeds:
#   page  one valid message of every type (page_gen_seeds) plus the committed
#         malformed corpus (tests/corpus/page); fuzz_page_rw gets READ/WRITE seeds.
#   vmm   the committed corpus (tests/corpus/vmm): binary messages prefixed with
#         the descriptor-count byte fuzz_vmm_msg expects (the .F<n> in their
#         names), a few allow-list specs, and the Firecracker handshakes with a
#         dictionary of their JSON tokens.
#   wake  the committed corpus (tests/corpus/wake: valid controls and malformed cases).
#   ctrl  the committed corpus (tests/corpus/ctrl: valid controls and malformed cases).
# What the fuzzers learn stays in BUILD_DIR/fuzz-corpus/TARGET so a later run
# starts from it; crash inputs land in BUILD_DIR/fuzz-artifacts. Prints each
# target's execution count; exits non-zero if any target failed.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 4 ]]; then
	echo "usage: $0 BUILD_DIR [SECONDS] [page|vmm|wake|ctrl|all] [SOURCE_DIR]" >&2
	exit 2
fi
build=$1
secs=${2:-60}
which=${3:-all}
src=${4:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
case $which in
page) targets=(fuzz_page_hdr fuzz_page_msg fuzz_page_rw) ;;
vmm) targets=(fuzz_vmm_msg fuzz_vmm_firecracker) ;;
wake) targets=(fuzz_wake_msg) ;;
ctrl) targets=(fuzz_ctrl_msg) ;;
all) targets=(fuzz_page_hdr fuzz_page_msg fuzz_page_rw fuzz_vmm_msg fuzz_vmm_firecracker fuzz_wake_msg fuzz_ctrl_msg) ;;
*)
	echo "$0: unknown protocol '$which' (page, vmm, wake, ctrl or all)" >&2
	exit 2
	;;
esac

cmake -S "$src" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DFERRY_FUZZ=ON >/dev/null
build_targets=("${targets[@]}")
[[ $which == page || $which == all ]] && build_targets+=(page_gen_seeds)
cmake --build "$build" --target "${build_targets[@]}" -j"$(nproc)"

seeds=$build/fuzz-seeds
rm -rf "$seeds"
mkdir -p "$seeds" "$build/fuzz-artifacts"

if [[ $which == page || $which == all ]]; then
	"$build/proto/page_gen_seeds" "$seeds/msg"
	"$build/proto/page_gen_seeds" --rw "$seeds/rw"
fi

if [[ $which == vmm || $which == all ]]; then
	mkdir -p "$seeds/fc"
	"$src/proto/fuzz/vmm_seeds.sh" "$src" "$seeds/vmm"
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
fi

status=0
summary=()
for t in "${targets[@]}"; do
	corpus=$build/fuzz-corpus/$t
	log=$build/fuzz-artifacts/$t.log
	bin=$(find "$build" -name "$t" -type f -perm -u+x | head -n1)
	mkdir -p "$corpus"
	profile=(-use_value_profile=1)
	case $t in
	fuzz_page_rw) inputs=("$seeds/rw"); opts=(-max_len=16400) ;;                # room for 1024 entries
	fuzz_page_*) inputs=("$seeds/msg" "$src/tests/corpus/page"); opts=() ;;
	fuzz_vmm_msg) inputs=("$seeds/vmm"); opts=(-max_len=70000) ;;                # room for 4096 hints
	fuzz_vmm_firecracker) inputs=("$seeds/fc"); opts=(-max_len=8192 -dict="$seeds/fc.dict") ;;
	fuzz_wake_msg) inputs=("$src/tests/corpus/wake"); opts=(); profile=() ;;
	fuzz_ctrl_msg) inputs=("$src/tests/corpus/ctrl"); opts=(-max_len=70000) ;;
	esac
	echo "== $t for ${secs}s"
	rc=0
	"$bin" -max_total_time="$secs" "${profile[@]}" -print_final_stats=1 \
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
