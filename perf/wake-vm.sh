#!/bin/bash
# perf/wake-vm.sh — the QEMU part of `ferry-perf wake`: how fast a hibernated VM answers again,
# Ferry's way beside the seed's, on real QEMU (TCG) guests of tests/rigs/vm; and how much
# memory hibernating idle VMs frees on their node.
#
#   perf/wake-vm.sh --build-dir DIR [--out DIR] [--reps N] [--quick] [--scenarios "G:U ..."] [--no-verify]
#     --scenarios  guest:used MiB pairs (default "128:10 128:40 512:10 512:50 512:100")
#     --no-verify  resume without checksumming the pages read back (ferry-hib --no-verify)
#
# For each guest (128 MiB with 10/40 MiB used, 512 MiB with 10/50/100 MiB used by the guest's
# echo service, on top of what its kernel uses) and each repetition:
#   pool:     ferry-hib hibernate (device state + used pages into a ferry-memsrv on this host),
#             then resume; "resume" = the resume call, "access" = from the moment the resume
#             starts until a NEW client connection in another namespace got its first echoed
#             byte (connect right after the resume returns: ferry-wake's SYN replay is not in
#             this measurement; ferryd brings it)
#   baseline: the seed's approach in the same run: the whole machine state, RAM included, into
#             one file on local disk (fsynced, dropped from the page cache), resumed from it
# Both check that the guest's filled memory comes back intact ('sum' before = after).
# Then: N idle VMs of 256 MiB (20 MiB used) hibernated at once: node memory before/after.
#
# Output in --out (default DIR/results/wake): wake-vm.csv, wake-vm.json, memory.csv, wake-vm.gp
# and wake-vm.png (gnuplot, if installed), and a summary on stdout.
# Needs root (namespaces, taps). Namespaces hib-perf-*, memory server port 25200.
set -eu

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RIG=$ROOT/tests/rigs/vm/rig.sh
build_dir="" out="" reps=3 quick="" scen_arg="" noverify=""
while [ $# -gt 0 ]; do
	case "$1" in
	--build-dir) build_dir=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--reps) reps=$2; shift 2 ;;
	--quick) quick=1; shift ;;
	--scenarios) scen_arg=$2; shift 2 ;;
	--no-verify) noverify=--no-verify; shift ;;
	-h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "wake-vm: unknown argument $1" >&2; exit 2 ;;
	esac
done
[ -n "$build_dir" ] || { echo "wake-vm: --build-dir is required" >&2; exit 2; }
build_dir=$(cd "$build_dir" && pwd)
out=${out:-$build_dir/results/wake}
HIB=$build_dir/ctrl/ferry-hib
MEMSRV=$build_dir/dataplane/memsrv/ferry-memsrv
CLIENT=$build_dir/tests/rigs/vm/vm_client
for b in "$HIB" "$MEMSRV" "$CLIENT"; do [ -x "$b" ] || { echo "wake-vm: missing $b (build first)" >&2; exit 1; }; done

export FERRY_VM_RIG_PREFIX=hib-perf-
P=$FERRY_VM_RIG_PREFIX
PORT=25200
GUEST_PORT=7000
"$RIG" check >/dev/null
"$RIG" prepare
mkdir -p "$out"
T=$(mktemp -d /tmp/ferry-wake-vm.XXXXXX)
DISK=/var/tmp/ferry-wake-vm.$$
mkdir -p "$DISK"
MEMSRV_PID="" SHELL_PID=""
cleanup() {
	set +e
	[ -n "$SHELL_PID" ] && { echo quit >&"${SH[1]}"; wait "$SHELL_PID"; } 2>/dev/null
	for s in "$T"/state/*.vm.json; do
		[ -e "$s" ] && "$HIB" --state "$T/state" --pool "127.0.0.1:$PORT" --secret "$T/secret" destroy "$(basename "$s" .vm.json)" 2>/dev/null
	done
	[ -n "$MEMSRV_PID" ] && kill "$MEMSRV_PID" 2>/dev/null && wait "$MEMSRV_PID" 2>/dev/null
	"$RIG" down
	rm -rf "$T" "$DISK"
}
trap cleanup EXIT

(umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/secret")
"$MEMSRV" -p "$PORT" -s "$T/secret" -m 2G --prefault no --hugepages off -r "$T/memsrv.port" --log-level warn \
	>"$T/memsrv.log" 2>&1 &
MEMSRV_PID=$!
for _ in $(seq 100); do [ -s "$T/memsrv.port" ] && break; sleep 0.05; done
[ -s "$T/memsrv.port" ] || { echo "wake-vm: memory server did not start: $(tail -2 "$T/memsrv.log")" >&2; exit 1; }

hib() { "$HIB" --state "$T/state" --pool "127.0.0.1:$PORT" --secret "$T/secret" $noverify "$@"; }
coproc SH { hib shell 2>>"$T/shell.err"; }
SHELL_PID=$SH_PID
sh_cmd() { echo "$1" >&"${SH[1]}"; REPLY=""; read -r -t 120 REPLY <&"${SH[0]}" || REPLY="error: no reply"; }
jget() { sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$2"; }
now() { echo "${EPOCHREALTIME/,/.}"; }
client() { ip netns exec "${P}client" "$CLIENT" "$@"; }
guest_ip() { "$RIG" guest-ip "$1"; }

boot() {	# name index ram-MiB
	local -a args
	mapfile -t args < <("$RIG" qemu-args "$2" "$T")
	hib define "$1" --ram "$3M" -- "${args[@]}"
	hib start "$1" >/dev/null
	for _ in $(seq 300); do grep -q 'FERRY-VM READY' "$T/vm$2.console" 2>/dev/null && return 0; sleep 0.05; done
	echo "wake-vm: guest $1 did not boot: $(tail -2 "$T/vm$2.console")" >&2
	exit 1
}

# A new connection's first echo: prints "epoch-of-first-reply connect-ms".
first_echo() {	# ip
	local e
	e=$(client -T -t 10 "$1" "$GUEST_PORT" wake 2>&1 >/dev/null) || { echo "wake-vm: no echo: $e" >&2; echo "nan nan"; return; }
	echo "$(sed -n 's/.*first_reply_epoch=\([0-9.]*\).*/\1/p' <<<"$e") $(sed -n 's/.*connect_ms=\([0-9.]*\).*/\1/p' <<<"$e")"
}
ms_since() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) * 1000 }'; }

if [ -n "$quick" ]; then
	scenarios="128:10"
	reps=1
else
	scenarios="128:10 128:40 512:10 512:50 512:100"
fi
[ -n "$scen_arg" ] && scenarios=$scen_arg
"$RIG" up 4
csv=$out/wake-vm.csv
echo "mode,guest_mib,used_mib,rep,stored_bytes,resume_ms,access_ms,connect_ms,data_ok,ram_ms,qemu_up_ms,incoming_ms" >"$csv"
for sc in $scenarios; do
	g=${sc%:*}; u=${sc#*:}
	name=g${g}u${u}
	ip=$(guest_ip 0)
	boot "$name" 0 "$g"
	client -t 20 "$ip" "$GUEST_PORT" "mem $u" >/dev/null
	sum0=$(client "$ip" "$GUEST_PORT" sum)
	for r in $(seq 1 "$reps"); do
		# Ferry: the memory pool.
		sleep 0.3
		sh_cmd "hibernate $name"
		case "$REPLY" in ok*) ;; *) echo "wake-vm: $name: $REPLY" >&2; exit 1 ;; esac
		stored=$(jget stored_bytes "$REPLY")
		t0=$(now)
		sh_cmd "resume $name"
		case "$REPLY" in ok*) ;; *) echo "wake-vm: $name: $REPLY" >&2; exit 1 ;; esac
		read -r t1 cms < <(first_echo "$ip")
		res=$(jget t_total "$REPLY")
		ok=0; [ "$(client "$ip" "$GUEST_PORT" sum)" = "$sum0" ] && ok=1
		echo "pool,$g,$u,$r,$stored,$res,$(ms_since "$t0" "$t1"),$cms,$ok,$(jget t_ram "$REPLY"),$(jget t_qemu_up "$REPLY"),$(jget t_incoming "$REPLY")" >>"$csv"
		# The seed's way: the whole state file on disk.
		sleep 0.3
		rep=$(hib hibernate-file "$name" "$DISK/$name.img") || { echo "wake-vm: $name: baseline hibernate failed" >&2; exit 1; }
		stored=$(jget stored_bytes "$rep")
		t0=$(now)
		rep=$(hib resume-file "$name" "$DISK/$name.img") || { echo "wake-vm: $name: baseline resume failed" >&2; exit 1; }
		read -r t1 cms < <(first_echo "$ip")
		res=$(jget t_total "$rep")
		ok=0; [ "$(client "$ip" "$GUEST_PORT" sum)" = "$sum0" ] && ok=1
		rm -f "$DISK/$name.img"
		echo "baseline,$g,$u,$r,$stored,$res,$(ms_since "$t0" "$t1"),$cms,$ok,0,$(jget t_qemu_up "$rep"),$(jget t_incoming "$rep")" >>"$csv"
	done
	hib destroy "$name"
done

# Memory freed on a node with several idle VMs.
nvm=4; [ -n "$quick" ] && nvm=2
# KiB from the kernel, bytes in bash arithmetic (mawk's printf %d stops at 2^31).
mem_avail() { echo $(( $(awk '$1 == "MemAvailable:" { print $2 }' /proc/meminfo) * 1024 )); }
rss_of() { local k; k=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status" 2>/dev/null); echo $(( ${k:-0} * 1024 )); }
for i in $(seq 0 $((nvm - 1))); do boot idle$i "$i" 256; done
for i in $(seq 0 $((nvm - 1))); do client -t 20 "$(guest_ip "$i")" "$GUEST_PORT" "mem 20" >/dev/null; done
sleep 1
rss_before=0
for i in $(seq 0 $((nvm - 1))); do
	pid=$(hib status idle$i | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
	rss_before=$((rss_before + $(rss_of "$pid")))
done
shm_alloc_before=$(( $(for i in $(seq 0 $((nvm - 1))); do stat -c '%b*%B+' /dev/shm/idle$i.ferry-ram; done | tr -d '\n')0 ))
avail_before=$(mem_avail)
pool_bytes=0
for i in $(seq 0 $((nvm - 1))); do
	sh_cmd "hibernate idle$i"
	pool_bytes=$((pool_bytes + $(jget stored_bytes "$REPLY")))
done
sleep 0.5
avail_after=$(mem_avail)
left=0
for i in $(seq 0 $((nvm - 1))); do [ -e /dev/shm/idle$i.ferry-ram ] && left=$((left + 1)); done
{
	echo "vms,guest_mib_each,used_mib_each,qemu_rss_before,ram_files_allocated_before,ram_files_left_after,memavailable_gain,pool_bytes"
	echo "$nvm,256,20,$rss_before,$shm_alloc_before,$left,$((avail_after - avail_before)),$pool_bytes"
} >"$out/memory.csv"
for i in $(seq 0 $((nvm - 1))); do sh_cmd "resume idle$i"; hib destroy idle$i; done

# Summary: medians per (mode, guest, used).
awk -F, -v mem="$out/memory.csv" '
	NR == 1 { next }
	{ k = $1 "," $2 "," $3; n[k]++; res[k, n[k]] = $6; acc[k, n[k]] = $7; st[k] = $5; ok[k] += $9; keys[k] = 1 }
	function med(a, k, m,   i, j, t, v) { for (i = 1; i <= m; i++) v[i] = a[k, i]
		for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
		return m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2 }
	END {
		printf "{\n \"bench\": \"wake-vm\",\n \"results\": [\n"
		sep = ""
		for (k in keys) {
			split(k, f, ",")
			printf "%s  {\"mode\": \"%s\", \"guest_mib\": %s, \"used_mib\": %s, \"reps\": %d, \"stored_bytes\": %s, \"resume_ms_p50\": %.1f, \"access_ms_p50\": %.1f, \"data_intact\": %s}", sep, f[1], f[2], f[3], n[k], st[k], med(res, k, n[k]), med(acc, k, n[k]), ok[k] == n[k] ? "true" : "false"
			sep = ",\n"
		}
		getline hdr < mem; getline row < mem; split(row, m, ",")
		printf "\n ],\n \"memory\": {\"vms\": %s, \"guest_mib_each\": %s, \"used_mib_each\": %s, \"qemu_rss_before\": %s, \"ram_files_allocated_before\": %s, \"ram_files_left_after\": %s, \"memavailable_gain\": %s, \"pool_bytes\": %s}\n}\n", m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8]
	}' "$csv" >"$out/wake-vm.json"

echo "ferry-perf wake (QEMU TCG guests; access = resume start -> new connection's first echoed byte)"
printf '%-9s %6s %5s %4s %12s %10s %10s %5s\n' mode guest used reps stored_MiB resume_ms access_ms data
sort -t, -k2,2n -k3,3n -k1,1r "$csv" | awk -F, '$1 != "mode" { k = $1 FS $2 FS $3; print k }' | uniq | while IFS=, read -r m g u; do
	awk -F, -v m="$m" -v g="$g" -v u="$u" '$1 == m && $2 == g && $3 == u { n++; r[n] = $6; a[n] = $7; s = $5; ok += $9 }
		END { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) { if (r[j] < r[i]) { t = r[i]; r[i] = r[j]; r[j] = t } if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t } }
		      mr = n % 2 ? r[(n + 1) / 2] : (r[n / 2] + r[n / 2 + 1]) / 2; ma = n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
		      printf "%-9s %6s %5s %4d %12.1f %10.1f %10.1f %5s\n", m, g "M", u "M", n, s / 1048576, mr, ma, ok == n ? "ok" : "BAD" }' "$csv"
done
awk -F, 'NR == 2 { printf "memory: %d idle VMs of %d MiB (%d MiB used each): their QEMUs held %.0f MiB (RSS, of which RAM files %.0f MiB), all freed (%d RAM files left); the pool holds %.0f MiB for them (MemAvailable %+.0f MiB: whole machine, noisy)\n", $1, $2, $3, $4 / 1048576, $5 / 1048576, $6, $8 / 1048576, $7 / 1048576 }' "$out/memory.csv"

cat >"$out/wake-vm.gp" <<EOF
set terminal pngcairo size 900,500
set output '$out/wake-vm.png'
set datafile separator ','
set title 'Hibernated QEMU (TCG) guest: resume start to first echoed byte of a new connection'
set ylabel 'access time (ms), median'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key top left
set yrange [0:*]
plot '$out/wake-vm.plot.csv' using 2:xtic(1) title 'Ferry (memory pool, used pages only)', '' using 3 title "seed (full state file on disk)"
EOF
awk -F, 'NR > 1 { k = $2 "M/" $3 "M"; if (!(k in seen)) { seen[k] = 1; order[++n] = k } v[$1, k, ++c[$1, k]] = $7 }
	function med(m, k,   i, j, t, a, cnt) { cnt = c[m, k]; for (i = 1; i <= cnt; i++) a[i] = v[m, k, i]
		for (i = 1; i <= cnt; i++) for (j = i + 1; j <= cnt; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		return cnt % 2 ? a[(cnt + 1) / 2] : (a[cnt / 2] + a[cnt / 2 + 1]) / 2 }
	END { for (i = 1; i <= n; i++) { k = order[i]; printf "%s,%.1f,%.1f\n", k, med("pool", k), med("baseline", k) } }' \
	"$csv" >"$out/wake-vm.plot.csv"
if command -v gnuplot >/dev/null; then gnuplot "$out/wake-vm.gp" 2>/dev/null || echo "wake-vm: gnuplot failed (see $out/wake-vm.gp)"; fi
echo "results: $out/wake-vm.csv $out/wake-vm.json $out/memory.csv $out/wake-vm.png"
if awk -F, 'NR > 1 && $9 != 1 { bad = 1 } END { exit !bad }' "$csv"; then echo "wake-vm: a guest came back with different memory contents" >&2; exit 1; fi
