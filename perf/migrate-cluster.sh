#!/bin/bash
# ferry-perf migrate over a netns cluster (issue 5): how long a split
# migration takes and how many bytes it moves, per mode, against the share of
# guest memory the VM uses; every migrated guest verifies every page at the
# destination.
#
#   h1 source : ferry-pager (migration socket) + guestsim, the running VM (memfd RAM)
#   h2 main   : ferry-pager (migration socket, a budget below the VM's use) +
#               guestsim --incoming, the destination shell
#   h3, h4    : ferry-memsrv sub-hosts, the main host's pool
# Links shaped with tc htb (tests/rigs/cluster/cluster.sh up 4 --rate RATE).
#
# For each used share U and mode M: guestsim (boot pattern: only U% of RAM is
# ever touched, 30% writes) runs on h1 for --warm seconds, the destination
# shell registers on h2, `ferry-perf migrate` drives the migration (CSV row,
# JSON), the source guestsim must exit 0 on the migrated-away notice, the
# shell must load the device state, run --after seconds more and verify ALL
# of memory (--check: latest generation, right content, zeros elsewhere).
#
#   perf/migrate-cluster.sh [options]
#     --build DIR       build tree (default build/release)
#     --out DIR         results: migrate.csv, verify.csv, one JSON per run, plots (default
#                       perf-results/migrate-<date>)
#     --mem SIZE        guest RAM (default 4G)
#     --used "U..."     used shares in % (default "10")
#     --modes "M..."    full fctrans planned postcopy (default all four). fctrans is the
#                       engine's precopy mode: pre-copy rounds that skip unused pages
#                       (FCtrans; also the pre-copy-only mode: this engine never sends
#                       unused pages except in full); "precopy" is accepted as its alias.
#                       full: every page once, unused too (conventional split migration).
#                       postcopy: switch over at once (post-copy only).
#                       planned: the access sampler + phase planner (mig_plan.h)
#     --pattern P       the VM's workload: boot (default: only the used share is ever
#                       touched, 30% writes) or linpack (guestsim's blocked LU pattern
#                       over all of guest RAM; give --used 100)
#     --plan "OPTS"     extra ferry-pager flags for the source, e.g. "--plan-periods 6
#                       --plan-window 2" (see ferry-pager --help, [migrate] plan_*)
#     --rate RATE       link rate (default 1gbit)
#     --budget SIZE     main host budget (default: half the used memory)
#     --extent-size S   the main host pager's pool extent size (default: the pager's, 16M); a
#                       migration carries at most 64 sub-host extents, so full mode at 4G needs
#                       --extent-size 128M
#     --warm SEC        source run time before the migration (default 4)
#     --after SEC       destination run time after the switch-over (default 3)
#     --quick           --mem 256M --used 10 --modes planned --warm 2 --after 1 (a smoke run)
# Needs root (network namespaces); exits 77 when they cannot be made. Exit 0
# when every migration finished and every destination verified, else 1.
# Prefix FERRY_CLUSTER_PREFIX (default vmmside-; the ctest smoke run uses one per run) and ports
# 26000-26999 inside the namespaces keep it apart from other clusters.
set -u
src_dir=$(cd "$(dirname "$0")/.." && pwd)
build=$src_dir/build/release
out=""
MEM=4G
USED="10"
MODES="full fctrans planned postcopy"
PATTERN=boot
EXTENT=""
PLAN_OPTS=""
RATE=1gbit
BUDGET=""
WARM=4
AFTER=3
while [ $# -gt 0 ]; do
	case $1 in
	--build) build=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--mem) MEM=$2; shift 2 ;;
	--used) USED=$2; shift 2 ;;
	--modes) MODES=$2; shift 2 ;;
	--pattern) PATTERN=$2; shift 2 ;;
	--extent-size) EXTENT=$2; shift 2 ;;
	--plan) PLAN_OPTS=$2; shift 2 ;;
	--rate) RATE=$2; shift 2 ;;
	--budget) BUDGET=$2; shift 2 ;;
	--warm) WARM=$2; shift 2 ;;
	--after) AFTER=$2; shift 2 ;;
	--quick) MEM=256M; USED=10; MODES=planned; WARM=2; AFTER=1; shift ;;
	-h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
	*) echo "migrate-cluster: unknown option $1" >&2; exit 2 ;;
	esac
done
build=$(cd "$build" 2>/dev/null && pwd) || { echo "migrate-cluster: no build tree $build" >&2; exit 1; }
rig=$src_dir/tests/rigs/cluster/cluster.sh
export FERRY_CLUSTER_PREFIX=${FERRY_CLUSTER_PREFIX:-vmmside-}
pager=$build/dataplane/pager/ferry-pager
memsrv=$build/dataplane/memsrv/ferry-memsrv
guestsim=$build/tests/guestsim/guestsim
perf=$build/perf/ferry-perf
for b in "$pager" "$memsrv" "$guestsim" "$perf"; do
	[ -x "$b" ] || { echo "migrate-cluster: $b is not built" >&2; exit 1; }
done
"$rig" check >/dev/null 2>&1 || { echo "SKIP: network namespaces unavailable"; exit 77; }

mib() {   # SIZE -> MiB
	case $1 in
	*G) echo $((${1%G} * 1024)) ;;
	*M) echo "${1%M}" ;;
	*) echo "migrate-cluster: give sizes in M or G, not $1" >&2; exit 2 ;;
	esac
}
mem_mib=$(mib "$MEM")
[ -n "$out" ] || out=$src_dir/perf-results/migrate-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
out=$(cd "$out" && pwd)
run=$(mktemp -d /tmp/vmmside-migrate-XXXXXX)
pids=()
fails=0
cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	"$rig" down >/dev/null 2>&1
	if [ $fails -eq 0 ]; then rm -rf "$run"; else echo "logs kept in $run"; fi
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

"$rig" up 4 --rate "$RATE" >/dev/null || { echo "cluster up failed"; exit 1; }
(umask 077 && head -c 48 /dev/urandom | base64 -w0 >"$run/secret")
pool=$((mem_mib + 256))M
for h in 3 4; do
	"$rig" exec "h$h" "$memsrv" --listen "10.77.0.$h" --port 26100 --transport tcp --secret-file "$run/secret" \
		--pool-size "$pool" --hugepages off --prefault no --ready-file "$run/memsrv$h.ready" >"$run/memsrv$h.log" 2>&1 &
	pids+=($!)
done
for h in 3 4; do
	for _ in $(seq 600); do [ -s "$run/memsrv$h.ready" ] && break; sleep 0.05; done
	[ -s "$run/memsrv$h.ready" ] || { echo "ferry-memsrv on h$h not ready"; tail "$run/memsrv$h.log"; exit 1; }
done
wait_sock() {   # path pid
	for _ in $(seq 400); do
		[ -S "$1" ] && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}
"$rig" exec h2 "$pager" --socket "$run/main.sock" --allow uid:0 --secret-file "$run/secret" \
	--servers 10.77.0.3:26100,10.77.0.4:26100 --migrate-socket "$run/main-mig.sock" \
	--migrate-listen 10.77.0.2 --migrate-port 26001 ${EXTENT:+--extent-size "$EXTENT"} >"$run/main.log" 2>&1 &
main_pid=$!
pids+=($!)
wait_sock "$run/main-mig.sock" $main_pid || { echo "main pager did not start"; tail "$run/main.log"; exit 1; }
"$rig" exec h1 "$pager" --socket "$run/src.sock" --allow uid:0 --secret-file "$run/secret" \
	--migrate-socket "$run/src-mig.sock" --migrate-listen 10.77.0.1 --migrate-port 26002 $PLAN_OPTS \
	>"$run/src.log" 2>&1 &
src_pid=$!
pids+=($!)
wait_sock "$run/src-mig.sock" $src_pid || { echo "source pager did not start"; tail "$run/src.log"; exit 1; }

jbool() { sed -n "s/^ *\"$2\": *\([a-z]*\).*/\1/p" "$1" | head -n1; }
jnum() { sed -n "s/^ *\"$2\": *\([0-9][0-9]*\).*/\1/p" "$1" | head -n1; }
[ -s "$out/verify.csv" ] || echo "mem_mib,used_pct,mode,vm_id,migrate_ok,source_exit,dest_exit,verified,check_pages,dest_ops" \
	>"$out/verify.csv"
[ -s "$out/planner.csv" ] || echo "mem_mib,used_pct,pattern,vm_id,periods,read_faults,write_faults,drops,windows,pred_clean,pred_read,pred_write,A_w_c,A_w_r,A_c_w,A_r_w" \
	>"$out/planner.csv"

n=0
for used in $USED; do
	used_mib=$((mem_mib * used / 100))
	budget=${BUDGET:-$((used_mib / 2 > 0 ? used_mib / 2 : 1))M}
	for mode in $MODES; do
		n=$((n + 1))
		id=vm$n-$mode-u$used
		seed=$((1000 + n))
		case $mode in
		fctrans|precopy) emode=precopy; mode=fctrans ;;
		*) emode=$mode ;;
		esac
		if [ "$PATTERN" = linpack ]; then
			# guestsim's blocked LU over all of guest RAM (--used only sizes the budget)
			load=(--pattern linpack)
		else
			load=(--pattern boot --touched "$used" --write-pct 30)
		fi
		common=(--mem "$MEM" "${load[@]}" --seed "$seed" --duration 600 --timeout 900 -q)
		# MINOR registration on the source: the planner's access sampler sees reads through it
		"$rig" exec h1 "$guestsim" --pager "$run/src.sock" --vm-id "$id" "${common[@]}" --uffd-modes missing,wp,minor \
			>"$run/$id.src.out" 2>"$run/$id.src.log" &
		gs_src=$!
		pids+=($!)
		sleep "$WARM"
		"$rig" exec h2 "$guestsim" --pager "$run/main.sock" --vm-id "$id" "${common[@]}" --incoming "$n" \
			--run-after "$AFTER" --check --json "$out/$id.dest.json" >"$run/$id.dst.out" 2>"$run/$id.dst.log" &
		gs_dst=$!
		pids+=($!)
		sleep 0.5
		"$perf" migrate --src-ctl "$run/src-mig.sock" --dst-ctl "$run/main-mig.sock" --vm-id "$id" \
			--mode "$emode" --budget "$budget" --subhost 10.77.0.3:26100 --subhost 10.77.0.4:26100 \
			--timeout 600 --json "$out/$id.json" --csv "$out/migrate.csv" \
			--label mem_mib="$mem_mib" --label used_pct="$used" --label rate="$RATE" --label pattern="$PATTERN" \
			--label mode_name="$mode" 2>&1 | tee -a "$out/summary.txt"
		mig_ok=${PIPESTATUS[0]}
		[ "$mig_ok" -eq 0 ] && mig_ok=1 || mig_ok=0
		if [ $mig_ok -eq 0 ]; then
			# the VM stays at the source (or nowhere): stop both guests
			kill -9 $gs_src $gs_dst 2>/dev/null
		fi
		wait $gs_src
		src_rc=$?
		wait $gs_dst
		dst_rc=$?
		verified=false
		[ -s "$out/$id.dest.json" ] && [ "$(jbool "$out/$id.dest.json" passed)" = true ] &&
			[ "$(jbool "$out/$id.dest.json" checked_all)" = true ] && verified=true
		echo "$mem_mib,$used,$mode,$id,$mig_ok,$src_rc,$dst_rc,$verified,$(jnum "$out/$id.dest.json" check_pages),$(jnum "$out/$id.dest.json" ops)" \
			>>"$out/verify.csv"
		if [ "$emode" = planned ]; then
			# the source pager's planner line for this VM (mig_plan.c): sampled periods, faults, rates
			line=$(grep "planner of VM $id:" "$run/src.log" | tail -n1)
			kv() { echo "$line" | sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }
			echo "$mem_mib,$used,$PATTERN,$id,$(kv periods),$(kv read_faults),$(kv write_faults),$(kv drops),$(kv windows),$(kv pred_clean),$(kv pred_read),$(kv pred_write),$(kv 'A(w|c)'),$(kv 'A(w|r)'),$(kv 'A(c|w)'),$(kv 'A(r|w)')" \
				>>"$out/planner.csv"
			echo "planner: ${line#*planner of VM }"
		fi
		if [ $mig_ok -ne 1 ]; then
			fail "$id: migration failed"
		elif [ $src_rc -ne 0 ] || ! grep -q "migrated away" "$run/$id.src.log"; then
			fail "$id: the source guestsim exited $src_rc without the migrated-away line"
		elif [ $dst_rc -ne 0 ] || [ $verified != true ]; then
			fail "$id: the destination exited $dst_rc, verified=$verified"
			tail -n 3 "$run/$id.dst.log"
		else
			echo "ok: $id: every page verified at the destination ($(jnum "$out/$id.dest.json" check_pages) pages)"
		fi
	done
done
cp "$run"/*.log "$out/" 2>/dev/null

# Plots: migration time and downtime against used memory per mode (finished migrations only,
# one data file per mode so the lines join), page data moved per run.
for m in full fctrans planned postcopy; do
	awk -F, -v m=$m 'NR > 1 && $5 == m && $8 == 1' "$out/migrate.csv" | sort -t, -k2,2n >"$out/mode-$m.dat"
done
cat >"$out/migrate.gp" <<'GP'
set datafile separator ","
set terminal pngcairo size 900,600
set key top left
# migrate.csv columns: 1 mem_mib, 2 used_pct, 3 rate, 4 pattern, 5 mode_name (full fctrans planned
#   postcopy), 6 vm_id, 7 engine mode, 8 ok, 9 budget_bytes, 10 subhosts, 11 elapsed_ms, 12 total_ms,
#   13 downtime_ms, 14 rounds, 15 pages_total, 16 pages_sent, 17 pages_skipped_unused, 18 pages_resent,
#   19 pages_to_subhosts, 20 bytes_sent, 21 postcopy_faults, 22 dst_pages_sent, 23 dst_pages_to_subhosts,
#   24 dst_bytes_sent, 25 dst_downtime_ms, 26 pages_moved
# mode-MODE.dat: the finished rows of one mode, by used share.
modes = "full fctrans planned postcopy"
set output "migrate-time.png"
set title "split migration: time vs used memory (finished migrations)"
# x: the --used share the boot pattern touches; at the migration's start the guest may not have
# touched all of it yet (pages_total - pages_skipped_unused in the CSV is what was in use)
set xlabel "used memory (--used, % of guest RAM)"
set ylabel "migration time, start to done (s)"
plot for [m in modes] "mode-".m.".dat" using 2:($11/1000) with linespoints title m
set output "migrate-downtime.png"
set title "split migration: downtime vs used memory"
set ylabel "downtime (ms)"
plot for [m in modes] "mode-".m.".dat" using 2:13 with linespoints title m
set output "migrate-bytes.png"
set title "page data moved (pages moved x 4 KiB), finished migrations"
set ylabel "MiB"
plot for [m in modes] "mode-".m.".dat" using 2:($26*4096/1048576) with linespoints title m
set output "migrate-bytes-bars.png"
set title "bytes per mode (every run): page data moved and re-sent"
set key top right
set xlabel "mode / used share"
set style data histograms
set style histogram clustered
set style fill solid 0.8
set xtics rotate by -30
set ylabel "MiB"
plot "migrate.csv" using ($26*4096/1048576):xtic(stringcolumn(5)."/".stringcolumn(2)."%") every ::1 title "moved", \
     "" using ($18*4096/1048576) every ::1 title "re-sent", \
     "" using ($20/1048576) every ::1 title "bytes sent by the source"
GP
if command -v gnuplot >/dev/null 2>&1; then
	(cd "$out" && gnuplot migrate.gp 2>&1 | grep -v "^Warning: empty\|no valid points\|^$") || true
else
	echo "gnuplot not installed: $out/migrate.gp is ready for it"
fi
echo "results in $out (migrate.csv, verify.csv, per-run JSON, plots)"
[ $fails -eq 0 ] && echo "migrate-cluster: all $n migrations verified" && exit 0
exit 1
