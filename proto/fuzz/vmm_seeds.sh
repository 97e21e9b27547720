#!/usr/bin/env bash
# Seeds for fuzz_vmm_msg from the committed corpus: every tests/corpus/vmm/*.bin
# prefixed with the descriptor-count byte the target expects (the .F<n> in
# its name, else 0), plus two allow-list specs. Used by run-fuzz.sh and by the
# ctest smoke run (fuzz_vmm_msg_smoke).
#
#   proto/fuzz/vmm_seeds.sh SOURCE_DIR OUT_DIR
set -euo pipefail
[[ $# -eq 2 ]] || { echo "usage: $0 SOURCE_DIR OUT_DIR" >&2; exit 2; }
src=$1
out=$2
mkdir -p "$out"
for f in "$src"/tests/corpus/vmm/*.bin; do
	name=$(basename "$f")
	fds=0
	if [[ $name =~ \.F([0-9]+)\.E[0-9]+\.bin$ ]]; then
		fds=${BASH_REMATCH[1]}
	fi
	{ printf "\\x$(printf %02x "$fds")"; cat "$f"; } >"$out/$name"
done
printf '\xa5uid:107, gid:994' >"$out/allow-1"
printf '\xa5uid:0\tgid:4294967294' >"$out/allow-2"
