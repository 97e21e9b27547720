#!/bin/bash
# run-rdma-migrate.sh BUILD_DIR: one split migration (issue 5) over real verbs
# (Soft-RoCE) between the two QEMU guests of the RoCE rig (rig.sh, README.md).
#
#   guest 1 (10.0.0.1) source:    ferry-pager --transport rdma + guestsim (the running VM)
#   guest 2 (10.0.0.2) main host: ferry-memsrv --transport rdma (the sub-host) +
#                                 ferry-pager --transport rdma (budget below the VM) +
#                                 guestsim --incoming --check (the destination VM)
#
# The VM migrates in pre-copy mode: its pages go from the source's registered
# send buffer into the main host's staging ring (RDMA WRITE) and, beyond the
# budget, into the sub-host's extents (RDMA WRITE from guest 1 to guest 2's
# memory server); the destination guestsim resumes with the source's device
# state and verifies EVERY page (--check). The endpoint (host, port, token of
# PREPARE) and the destination's verdict cross between the guests with
# busybox nc: guest 2 serves each as a one-shot listener, guest 1 fetches it.
#
# Prints PASS/FAIL lines; exit 0 when the migration finished and every page
# verified at the destination, 1 otherwise, 125 when the rig itself failed.
# RIG_TIMEOUT (default 900 s) bounds the run; KEEP=1 keeps the outputs.
set -u

here=$(cd "$(dirname "$0")" && pwd)
rig="$here/rig.sh"
if [ $# -ne 1 ] || [ ! -d "$1" ]; then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi
build=$(cd "$1" && pwd)
timeout=${RIG_TIMEOUT:-900}
pager="$build/dataplane/pager/ferry-pager"
memsrv="$build/dataplane/memsrv/ferry-memsrv"
guestsim="$build/tests/guestsim/guestsim"
migtool="$build/tests/integration/migrate/migtool"
for f in "$pager" "$memsrv" "$guestsim" "$migtool"; do
	[ -x "$f" ] || { echo "missing $f: build the tree first" >&2; exit 2; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/ferry-rdma-migrate.XXXXXX")
trap '[ "${KEEP:-0}" = 1 ] && echo "outputs kept in $work" || rm -rf "$work"' EXIT
head -c 48 /dev/urandom | base64 -w0 > "$work/secret"
chmod 600 "$work/secret"

# The same workload at both ends (guestsim --incoming must be given the source's options).
WORKLOAD="--mem 64M --pattern boot --touched 70 --write-pct 30 --seed 7"
BUDGET=8    # MiB the main host may hold: the rest goes to the sub-host
MODE=${RDMA_MIGRATE_MODE:-precopy}

cat > "$work/g2.sh" <<EOF
# guest 2: the main host
S=$work/secret
$memsrv --listen 10.0.0.2 --port 27100 --transport rdma --secret-file \$S --pool-size 128M --hugepages off \\
	--prefault no --ready-file /tmp/ms.ready > /tmp/memsrv.log 2>&1 &
for i in \$(seq 200); do [ -s /tmp/ms.ready ] && break; sleep 0.1; done
$pager --socket /tmp/main.sock --allow uid:0 --secret-file \$S --servers 10.0.0.2:27100 --transport rdma \\
	--migrate-socket /tmp/main-mig.sock --migrate-listen 10.0.0.2 --migrate-port 27001 \\
	--migrate-stage-size 8M --log-level info > /tmp/main.log 2>&1 &
for i in \$(seq 200); do [ -S /tmp/main-mig.sock ] && break; sleep 0.1; done
$guestsim --pager /tmp/main.sock --vm-id vm-rdma $WORKLOAD --incoming 1 --duration 2 --check --timeout 400 \\
	> /tmp/dest.log 2>&1 &
dest=\$!
sleep 1
$migtool prepare /tmp/main-mig.sock vm-rdma $BUDGET 10.0.0.2:27100 > /tmp/ep 2>/tmp/prepare.err
echo "prepare: \$(cat /tmp/ep /tmp/prepare.err)"
nc -l -p 27500 < /tmp/ep
wait \$dest
drc=\$?
st=\$($migtool status /tmp/main-mig.sock vm-rdma 2>&1)
{ echo "DEST rc=\$drc"; echo "dest: \$st"; tail -n 4 /tmp/dest.log; } > /tmp/result
cat /tmp/result
nc -l -p 27501 < /tmp/result
echo "== main pager log"; grep -E "migration|staging|WARN|ERROR" /tmp/main.log | tail -n 20
EOF

cat > "$work/g1.sh" <<EOF
# guest 1: the source
S=$work/secret
$pager --socket /tmp/src.sock --allow uid:0 --secret-file \$S --transport rdma \\
	--migrate-socket /tmp/src-mig.sock --migrate-listen 10.0.0.1 --migrate-port 27002 --log-level info \\
	> /tmp/src.log 2>&1 &
for i in \$(seq 200); do [ -S /tmp/src-mig.sock ] && break; sleep 0.1; done
$guestsim --pager /tmp/src.sock --vm-id vm-rdma $WORKLOAD --duration 900 > /tmp/guest.log 2>&1 &
guest=\$!
sleep 5   # let the VM touch memory (TCG is slow): more than the main host's budget
ep=""
for i in \$(seq 300); do
	ep=\$(nc 10.0.0.2 27500 < /dev/null 2>/dev/null)
	[ -n "\$ep" ] && break
	sleep 0.2
done
echo "endpoint: \$ep"
set -- \$ep
$migtool start /tmp/src-mig.sock vm-rdma "\$1" "\$2" "\$3" $MODE || echo "START failed"
$migtool wait /tmp/src-mig.sock vm-rdma 400 > /tmp/progress
mrc=\$?
cat /tmp/progress
echo "MIGRATION rc=\$mrc \$(grep -o 'transport=[a-z]*' /tmp/src.log | head -n 1)"
# the VM is larger than the budget: pages must have gone to the sub-host (RDMA WRITE from here)
grep -qE 'to_subhosts=[1-9]' /tmp/progress || { echo "no page went to the sub-host"; mrc=1; }
for i in \$(seq 300); do kill -0 \$guest 2>/dev/null || break; sleep 0.2; done
kill -0 \$guest 2>/dev/null && { kill -9 \$guest; echo "source guestsim still running"; }
wait \$guest
grc=\$?
echo "SOURCE GUEST rc=\$grc"
res=""
for i in \$(seq 1500); do
	res=\$(nc 10.0.0.2 27501 < /dev/null 2>/dev/null)
	[ -n "\$res" ] && break
	sleep 0.2
done
echo "\$res"
echo "== source pager log"; grep -E "migration|WARN|ERROR" /tmp/src.log | tail -n 20
[ \$mrc -eq 0 ] && [ \$grc -eq 0 ] && echo "\$res" | grep -q "^DEST rc=0\$"
EOF

echo "== two guests: split migration ($MODE) over rdma, source 10.0.0.1 -> main host 10.0.0.2 (+ sub-host)"
t0=$(date +%s)
"$rig" run --guests 2 --mem 1024 --settle 2 --timeout "$timeout" --out "$work/out" \
	--copy "$pager" --copy "$memsrv" --copy "$guestsim" --copy "$migtool" --copy "$work/secret" \
	--copy "$work/g1.sh" --copy "$work/g2.sh" --guest2 "sh $work/g2.sh" -- "sh $work/g1.sh" > "$work/run.log" 2>&1
rc=$?
secs=$(($(date +%s) - t0))
if [ $rc -eq 125 ] || [ ! -f "$work/out/g1.stdout" ]; then
	cat "$work/run.log"
	echo "FAIL rig: boot failed (status $rc)"
	exit 125
fi
src=$(grep -E '^  source|^vm=' "$work/out/g1.stdout" | head -n 1)
if [ $rc -eq 0 ]; then
	echo "PASS split migration over rdma (two guests, $MODE): the VM runs at the destination and every page verifies there (${secs} s)"
	grep -E '^vm=|^dest: |check:|verification|^MIGRATION' "$work/out/g1.stdout" | sed 's/^/     /'
	exit 0
fi
echo "FAIL split migration over rdma (two guests, $MODE): status $rc ${src}"
echo "---- guest 1"; cat "$work/out/g1.stdout"; tail -n 20 "$work/out/g1.stderr" 2>/dev/null
echo "---- guest 2"; cat "$work/out/g2.stdout" 2>/dev/null; tail -n 20 "$work/out/g2.stderr" 2>/dev/null
exit 1
