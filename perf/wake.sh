#!/bin/bash
# perf/wake.sh — `ferry-perf wake` (issue 6): what a client sees of a hibernated VM, on real parts.
#
#   perf/wake.sh --build-dir DIR [--out DIR] [--reps N] [--arp N] [--scenarios "G:U ..."] [--quick]
#                [--report-only]   (summary, JSON and plot again from the CSVs in --out)
#
# (a) ARP reply latency: ferry-wake (DPDK net_af_packet) answering for a hibernated VM beside the
#     kernel answering for a live address in a namespace, same client, same bridge; p50/p99 over
#     --arp requests (default 1000).                                   -> arp.csv
# (b) access time through the real path: client SYN -> ferry-wake captures it -> WAKE_REQUEST ->
#     ferryd's hibernation worker resumes the guest (ctrl/hib.h) -> the guest announces itself ->
#     VM_RUNNING -> ferry-wake replays the SYN -> first echoed byte; guests of G MiB with U MiB
#     used (default "128:10 512:100"), images in the memory pool beside the seed's approach in the
#     same run (the whole state file read back from disk, no pool).   -> access.csv
#     (both by tests/rigs/vm/wake-e2e.sh's perf case: the same topology as the end-to-end tests)
# (c) the library's own figures, pool vs state file without the network path, and the memory
#     freed on a node with several idle VMs: perf/wake-vm.sh.       -> wake-vm.*, memory.csv
# Then wake.json (medians, targets) and wake.png (gnuplot, if installed), and a summary.
# Issue targets: a 512 MiB guest with 100 MiB used answers the first byte within 1.0 s of the
# client's SYN with no SYN retransmission; ferry-wake's ARP p50 within 2x the kernel's.
set -eu

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir="" out="" reps=3 narp=1000 scen="128:10 512:100" quick="" report_only=""
while [ $# -gt 0 ]; do
	case "$1" in
	--build-dir) build_dir=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--reps) reps=$2; shift 2 ;;
	--arp) narp=$2; shift 2 ;;
	--scenarios) scen=$2; shift 2 ;;
	--quick) quick=1; shift ;;
	--report-only) report_only=1; shift ;;
	-h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "wake: unknown argument $1" >&2; exit 2 ;;
	esac
done
[ -n "$build_dir" ] || { echo "wake: --build-dir is required" >&2; exit 2; }
build_dir=$(cd "$build_dir" && pwd)
out=${out:-$build_dir/results/wake}
[ -n "$quick" ] && { reps=1; narp=200; scen="128:10"; }
mkdir -p "$out"

rc=0
[ -n "$report_only" ] || {
WAKE_PERF_OUT=$out WAKE_PERF_REPS=$reps WAKE_PERF_ARP=$narp WAKE_PERF_SCENARIOS=$scen \
	"$ROOT/tests/rigs/vm/wake-e2e.sh" "$build_dir" perf || rc=$?
[ "$rc" = 77 ] && exit 77
[ "$rc" = 0 ] || { echo "wake: the real-path measurement failed (exit $rc)" >&2; exit 1; }
if [ -z "$quick" ]; then
	"$ROOT/perf/wake-vm.sh" --build-dir "$build_dir" --out "$out" --reps "$reps" || rc=$?
	[ "$rc" = 0 ] || echo "wake: perf/wake-vm.sh failed (exit $rc); continuing with the rest" >&2
fi
}

# Medians per (mode, guest, used) and the targets.
awk -F, -v arp="$out/arp.csv" '
	function med(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
	NR == 1 { next }
	{ k = $1 "," $2 "," $3; if (!(k in n)) order[++nk] = k; n[k]++; i = n[k]
	  R[k, i] = $5; C[k, i] = $6; F[k, i] = $7; S[k, i] = $10; if ($8 + 0 > 0) retr[k]++; st[k] = $9 }
	END {
		while ((getline line < arp) > 0) { split(line, a, ","); if (a[1] == "ferry-wake") { wp50 = a[4]; wp99 = a[5] } if (a[1] == "kernel") { kp50 = a[4]; kp99 = a[5] } }
		printf "{\n \"bench\": \"wake\",\n \"arp\": {\"ferry_wake_p50_us\": %s, \"ferry_wake_p99_us\": %s, \"kernel_p50_us\": %s, \"kernel_p99_us\": %s, \"ratio_p50\": %.2f, \"target_ratio_p50\": 2.0},\n \"access\": [\n", wp50 + 0, wp99 + 0, kp50 + 0, kp99 + 0, kp50 > 0 ? wp50 / kp50 : 0
		for (x = 1; x <= nk; x++) { k = order[x]; split(k, f, ",")
			for (i = 1; i <= n[k]; i++) { r[i] = R[k, i]; c[i] = C[k, i]; fb[i] = F[k, i]; sf[i] = S[k, i] }
			printf "%s  {\"mode\": \"%s\", \"guest_mib\": %s, \"used_mib\": %s, \"reps\": %d, \"stored_mib\": %s, \"resume_to_running_ms_p50\": %.1f, \"syn_to_first_byte_ms_p50\": %.1f, \"client_connect_ms_p50\": %.1f, \"client_first_byte_ms_p50\": %.1f, \"runs_with_syn_retransmission\": %d}", (x > 1 ? ",\n" : ""), f[1], f[2], f[3], n[k], st[k] == "" ? "null" : st[k], med(r, n[k]), med(sf, n[k]), med(c, n[k]), med(fb, n[k]), retr[k] + 0 }
		printf "\n ],\n \"target\": \"512 MiB guest, 100 MiB used: first byte <= 1000 ms after the SYN, no SYN retransmission\"\n}\n"
	}' "$out/access.csv" >"$out/wake.json"

echo
echo "ferry-perf wake: ARP (reply latency at the client, $narp requests each)"
column -s, -t <"$out/arp.csv"
echo
echo "ferry-perf wake: access to a hibernated VM through ferry-wake + ferryd (client SYN -> first echoed byte)"
printf '%-5s %6s %5s %4s %10s %14s %16s %12s %9s\n' mode guest used reps stored_MiB 'resume->run_ms' 'SYN->1st_byte_ms' connect_ms retrans
awk -F, 'NR > 1 { k = $1 FS $2 FS $3; if (!(k in n)) o[++m] = k; n[k]++; f[k, n[k]] = $10; c[k, n[k]] = $6; r[k, n[k]] = $5; if ($8 > 0) x[k]++; s[k] = $9 }
	function med(a, k, m,   i, j, t, v) { for (i = 1; i <= m; i++) v[i] = a[k, i]
		for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
		return m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2 }
	END { for (i = 1; i <= m; i++) { k = o[i]; split(k, q, FS)
		printf "%-5s %6s %5s %4d %10s %14.1f %16.1f %12.1f %9d\n", q[1], q[2] "M", q[3] "M", n[k], s[k], med(r, k, n[k]), med(f, k, n[k]), med(c, k, n[k]), x[k] + 0 } }' "$out/access.csv"

awk -F, 'NR > 1 { k = $2 "M/" $3 "M"; if (!(k in seen)) { seen[k] = 1; o[++n] = k } v[$1, k, ++c[$1, k]] = $10 }
	function med(m, k,   i, j, t, a, cnt) { cnt = c[m, k]; if (!cnt) return 0; for (i = 1; i <= cnt; i++) a[i] = v[m, k, i]
		for (i = 1; i <= cnt; i++) for (j = i + 1; j <= cnt; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		return cnt % 2 ? a[(cnt + 1) / 2] : (a[cnt / 2] + a[cnt / 2 + 1]) / 2 }
	END { for (i = 1; i <= n; i++) printf "%s,%.1f,%.1f\n", o[i], med("pool", o[i]), med("file", o[i]) }' "$out/access.csv" >"$out/wake.plot.csv"
cat >"$out/wake.gp" <<EOF
set terminal pngcairo size 900,500
set output '$out/wake.png'
set datafile separator ','
set title 'Hibernated QEMU (TCG) guest through ferry-wake + ferryd: client SYN to first echoed byte'
set ylabel 'client SYN to first echoed byte, ms (median)'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key top left
set yrange [0:*]
plot '$out/wake.plot.csv' using 2:xtic(1) title 'Ferry (memory pool)', '' using 3 title "seed (full state file on disk)"
EOF
if command -v gnuplot >/dev/null; then gnuplot "$out/wake.gp" 2>/dev/null || echo "wake: gnuplot failed (see $out/wake.gp)"; fi
echo "results: $out/arp.csv $out/access.csv $out/wake.json ${quick:+(quick: no wake-vm.sh)}"
