#!/bin/bash
# tests/rigs/roce/rig.sh — run commands over real RDMA verbs (Soft-RoCE, rdma_rxe) inside QEMU
# guests, on a machine that has no RDMA hardware and whose own kernel has no rxe.
#
#   rig.sh prepare                 build (or reuse) the guest image in the cache
#   rig.sh run [options] -- CMD... boot guest(s), run CMD over rxe0, print its output, exit with its status
#   rig.sh selftest                prove the rig: devinfo, rping, perftest (1 and 2 guests), a host-built program
#   rig.sh clean                   remove the cache
#
# How it works (details in README.md beside this file):
#   * prepare: `apt-get download`s Debian's own kernel (the package linux-image-amd64 depends on) and a
#     few userspace packages (rdma-core, perftest, iproute2, busybox, dash and their library
#     dependencies), unpacks them with `dpkg -x` into the cache (nothing is installed on the host),
#     cuts the uncompressed, PVH-bootable vmlinux out of the bzImage, keeps only the kernel modules
#     the rig loads, and writes one uncompressed "base" initramfs (newc cpio). The cache directory is
#     keyed by kernel version + the exact versions of all those packages; a second prepare is a no-op.
#   * run: appends a small per-run cpio (the guest's /init, the command, the --copy files and their
#     shared libraries) to the base, boots QEMU (TCG: this host's /dev/kvm cannot boot a stock
#     kernel), and the guest /init loads the modules, configures eth0, creates rxe0 on it, waits
#     until the port is ACTIVE, runs the command, and sends stdout/stderr (base64) and the exit
#     status back over a second serial port, then powers off. A third serial port carries the
#     host's few control words (go / stop / timeout / abort) into the guest.
#   * two guests: two QEMU processes joined by a QEMU `socket` netdev on 127.0.0.1 (default UDP:
#     each binds a free port and sends to the other's; --link tcp: guest 2 listens, guest 1
#     connects, but QEMU's TCP stream adds ~40 ms per multi-frame burst: Nagle + delayed ACK),
#     distinct MACs, 10.0.0.2 and 10.0.0.1. Guest 2's command (a server) starts first; guest 1's
#     command starts once guest 2 reports its command started (+ --settle).
#
# Exit status of `run`: the command's (guest 1's; guest 2's if guest 1's was 0 and guest 2's failed);
# 124 if the command or the guest timed out; 125 if the rig itself failed (boot, rxe, QEMU).
set -eu

# ---------------------------------------------------------------------------------------------
# Debian packages. Host packages are installed (apt-get, only if missing); guest packages are only
# downloaded and unpacked into the cache. The lead can add RIG_HOST_PACKAGES (+ RIG_SELFTEST_PACKAGES)
# to scripts/deps.sh. Everything else the rig uses is Essential in Debian (bash, coreutils, dpkg,
# apt, grep, sed, gawk/mawk, util-linux for flock, libc-bin for ldd).
RIG_HOST_PACKAGES="qemu-system-x86 cpio xz-utils binutils"
RIG_SELFTEST_PACKAGES="gcc libc6-dev libibverbs-dev"
RIG_GUEST_PACKAGES="libibverbs1 ibverbs-providers ibverbs-utils librdmacm1 perftest rdmacm-utils iproute2 busybox-static dash"
# Kernel modules the guest loads (their dependencies are added, and everything is loaded in
# dependency order). crc32_generic is not a declared dependency of rdma_rxe, but rxe fails with
# "failed to init crc32 algorithm err:-2" without it.
RIG_MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover
net_failover virtio_net crc32_generic crc32c_generic ib_core ib_uverbs rdma_ucm rdma_cm ib_cm iw_cm
udp_tunnel ip6_udp_tunnel configfs rdma_rxe"
# Bump when the image layout changes, so old caches are not reused.
RIG_FORMAT=2

RIG_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${FERRY_RIG_CACHE:-/var/cache/ferry-rig}
ARCH_LIBDIR=x86_64-linux-gnu

# say, die, now, elapsed, is_elf, ensure_host_packages, resolve_kernel_pkg, resolve_versions,
# download_debs, install_guest_kernel, install_guest_modules: shared with tests/rigs/vm.
# shellcheck source=../lib/debian_guest.sh
. "$RIG_DIR/../lib/debian_guest.sh"

# ---------------------------------------------------------------------------------------------
# prepare: the cached guest image
#
# $CACHE/.ferry-rig-cache         marker (clean refuses to remove a directory without it)
# $CACHE/.lock                    flock for concurrent prepares
# $CACHE/index/<fingerprint>      fast path: fingerprint of (rig format, package lists, apt lists'
#                                 size+mtime) -> image name; lets a cached prepare skip apt-cache
# $CACHE/images/<KVER>-<hash>/    one image: kernel (vmlinux or bzImage), base.cpio, base.list,
#                                 manifest, .complete. <hash> covers every package's exact version.

fingerprint() {
	{
		echo "format=$RIG_FORMAT"
		echo "guest=$RIG_GUEST_PACKAGES"
		echo "modules=$(echo $RIG_MODULES)"
		# apt's package lists: when they change (apt-get update), candidate versions may change.
		stat -c '%n %s %Y' /var/lib/apt/lists/*Packages* 2>/dev/null || true
	} | sha256sum | cut -c1-16
}

image_ok() { [ -n "$1" ] && [ -f "$CACHE/images/$1/.complete" ]; }

# Library packages the guest packages need: the Depends closure of RIG_GUEST_PACKAGES, following
# only library packages (lib*, zlib1g) — not adduser, debconf, dpkg, passwd and the like.
resolve_lib_closure() {
	# shellcheck disable=SC2086
	apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
		--no-replaces --no-enhances $RIG_GUEST_PACKAGES 2>/dev/null |
	awk -v roots="$RIG_GUEST_PACKAGES" '
		/^[^ ]/ { cur = $1; sub(/:amd64$/, "", cur); next }
		$1 ~ /Depends:$/ { d = $2; sub(/:amd64$/, "", d); if (d !~ /^</) edge[cur] = edge[cur] " " d }
		END {
			n = split(roots, q, " "); for (i = 1; i <= n; i++) seen[q[i]] = 1
			for (i = 1; i <= n; i++) {
				m = split(edge[q[i]], ds, " ")
				for (j = 1; j <= m; j++) {
					d = ds[j]
					if ((d ~ /^lib/ || d == "zlib1g") && !(d in seen)) { seen[d] = 1; q[++n] = d; print d }
				}
			}
		}' | sort -u
}

cmd_prepare() {
	local quiet=${1:-}
	ensure_host_packages $RIG_HOST_PACKAGES
	local fp name
	fp=$(fingerprint)
	name=$(cat "$CACHE/index/$fp" 2>/dev/null || true)
	if image_ok "$name"; then	# fast path: read-only, no apt-cache call
		IMAGE="$CACHE/images/$name"
		[ -n "$quiet" ] || say "image up to date: $IMAGE"
		return 0
	fi
	# Slow path, under a lock (another prepare may be building the same image).
	mkdir -p "$CACHE/index" "$CACHE/images" 2>/dev/null && [ -w "$CACHE" ] ||
		die "cannot write the cache $CACHE (run as root, or set FERRY_RIG_CACHE to a writable directory)"
	[ -e "$CACHE/.ferry-rig-cache" ] || touch "$CACHE/.ferry-rig-cache"
	exec 9>"$CACHE/.lock"
	flock 9
	name=$(cat "$CACHE/index/$fp" 2>/dev/null || true)
	if image_ok "$name"; then IMAGE="$CACHE/images/$name"; exec 9>&-; return 0; fi

	local kpkg libs versions
	kpkg=$(resolve_kernel_pkg)
	if [ -z "$kpkg" ]; then
		say "apt-cache knows no linux-image-amd64: running apt-get update"
		apt-get update -qq || true
		kpkg=$(resolve_kernel_pkg)
		fp=$(fingerprint)
	fi
	if [ -z "$kpkg" ]; then
		# Offline and no package lists: reuse whatever image we have.
		name=$(ls -t "$CACHE/images" 2>/dev/null | head -1)
		image_ok "$name" || die "cannot resolve linux-image-amd64 (apt-get update failed?) and no cached image in $CACHE"
		say "warning: cannot resolve package versions; reusing cached image $name"
		IMAGE="$CACHE/images/$name"; exec 9>&-; return 0
	fi
	libs=$(resolve_lib_closure)
	# shellcheck disable=SC2086
	versions=$(resolve_versions $kpkg $RIG_GUEST_PACKAGES $libs | sort)
	local kver=${kpkg#linux-image-}
	local want
	want=$(for p in $kpkg $RIG_GUEST_PACKAGES $libs; do echo "$p"; done | sort -u | wc -l)
	[ "$(echo "$versions" | grep -c '=.')" -eq "$want" ] ||
		die "could not resolve candidate versions of all packages:
$versions"
	name="$kver-$(printf '%s\n' "format=$RIG_FORMAT" "$(echo $RIG_MODULES)" "$versions" | sha256sum | cut -c1-12)"
	if ! image_ok "$name"; then
		build_image "$name" "$kpkg" "$kver" "$versions"
	fi
	echo "$name" >"$CACHE/index/$fp.tmp" && mv "$CACHE/index/$fp.tmp" "$CACHE/index/$fp"
	# Keep the cache small: only the current image, only index entries pointing at it.
	local d f
	for d in "$CACHE/images"/*; do
		[ "$(basename "$d")" = "$name" ] || rm -rf "$d"
	done
	for f in "$CACHE/index"/*; do
		[ "$(cat "$f" 2>/dev/null)" = "$name" ] || rm -f "$f"
	done
	IMAGE="$CACHE/images/$name"
	exec 9>&-
	say "image ready: $IMAGE ($(du -sh "$IMAGE" | cut -f1))"
}

build_image() {	# name kernel-package kernel-version versions
	local name=$1 kpkg=$2 kver=$3 versions=$4
	local t0 tmp img
	t0=$(now)
	tmp="$CACHE/tmp.$$"
	img="$CACHE/images/$name"
	rm -rf "$tmp" "$img"
	mkdir -p "$tmp/dl" "$tmp/kernel" "$tmp/raw" "$tmp/root" "$img.tmp"
	trap 'rm -rf "$tmp" "$img.tmp"' EXIT
	say "building image $name (downloads ~75 MB of .debs, nothing is installed)"

	# 1. Download the exact versions resolved above (the key), unpack without installing.
	# shellcheck disable=SC2086
	download_debs "$tmp/dl" $versions
	dpkg -x "$tmp/dl/${kpkg}_"*.deb "$tmp/kernel"
	local deb
	for deb in "$tmp/dl"/*.deb; do
		case "$(basename "$deb")" in "${kpkg}_"*) continue ;; esac
		dpkg -x "$deb" "$tmp/raw"
	done

	# 2. Kernel: the uncompressed vmlinux if it is PVH-bootable (~2x faster boot under TCG), else bzImage.
	install_guest_kernel "$tmp/kernel" "$kver" "$img.tmp"

	# 3. Root: merged-/usr layout like Debian 12 (bin -> usr/bin ...), docs and locales pruned.
	local root="$tmp/root" raw="$tmp/raw" d
	mkdir -p "$root/usr/bin" "$root/usr/sbin" "$root/usr/lib" "$root/usr/lib64" "$root/etc"
	for d in bin sbin lib lib64; do ln -s "usr/$d" "$root/$d"; done
	for d in bin sbin lib lib64; do
		[ -d "$raw/$d" ] && cp -a "$raw/$d/." "$root/usr/$d/"
	done
	for d in bin sbin lib lib64 include; do
		[ -d "$raw/usr/$d" ] && cp -a "$raw/usr/$d/." "$root/usr/$d/"
	done
	[ -d "$raw/etc" ] && cp -a "$raw/etc/." "$root/etc/"
	[ -d "$raw/usr/share/iproute2" ] && mkdir -p "$root/usr/share" && cp -a "$raw/usr/share/iproute2" "$root/usr/share/"
	# Not needed by the rig: iconv modules (8 MB), tc's ATM qdisc (would need libatm1), udev/systemd bits.
	rm -rf "$root/usr/lib/udev" "$root/usr/lib/systemd" "$root/usr/lib/tmpfiles.d" "$root/usr/include" \
		"$root/usr/lib/$ARCH_LIBDIR/gconv" "$root/usr/lib/$ARCH_LIBDIR/tc/q_atm.so" \
		"$root/etc/init.d" "$root/etc/cron.daily" "$root/etc/logrotate.d"
	ln -sf dash "$root/usr/bin/sh"	# busybox sh prefers its applets over $PATH (hides iproute2's ip)

	# busybox applets, except where a real program exists (ip, tc, sh ...)
	local a
	for a in $("$root/usr/bin/busybox" --list); do
		[ -e "$root/usr/bin/$a" ] || [ -e "$root/usr/sbin/$a" ] || [ -L "$root/usr/bin/$a" ] ||
			ln -s busybox "$root/usr/bin/$a"
	done

	# 4. Shared libraries: every ELF must resolve inside the root; what resolves to the host only
	#    (should be nothing) is copied from the host.
	local missing lib libs
	for _ in 1 2 3; do
		missing=""
		libs=$(find "$root/usr" -type f \( -perm -u+x -o -name '*.so*' \) -print0 |
			xargs -0 -r sh -c 'for f; do [ "$(head -c 4 "$f" | od -An -c | tr -d " ")" = 177ELF ] && echo "$f"; done' sh |
			LD_LIBRARY_PATH="$root/usr/lib/$ARCH_LIBDIR:$root/usr/lib" xargs -r -n 1 ldd 2>/dev/null |
			awk '/=> not found/ { print "NOTFOUND:" $1; next } $2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u)
		for lib in $libs; do
			case "$lib" in
			NOTFOUND:*) missing="$missing ${lib#NOTFOUND:}" ;;
			"$root"/*) ;;
			*)
				local dst
				dst="$root$(realpath "$(dirname "$lib")")/$(basename "$lib")"
				[ -e "$dst" ] && continue
				say "note: library $lib not in the guest packages; copying the host's"
				mkdir -p "$(dirname "$dst")"; cp -L "$lib" "$dst"
				;;
			esac
		done
		[ -z "$missing" ] && break
	done
	[ -z "$missing" ] || die "guest libraries not found:$missing"

	# 5. Kernel modules: RIG_MODULES and their dependencies (from each .ko's modinfo "depends="),
	#    in load order (dependencies first).
	# shellcheck disable=SC2086
	install_guest_modules "$tmp/kernel" "$kver" "$root" $RIG_MODULES
	local order=("${GUEST_MODULE_ORDER[@]}")

	# 6. The rest of a minimal system.
	mkdir -p "$root/proc" "$root/sys" "$root/dev" "$root/tmp" "$root/run" "$root/root" "$root/mnt" "$root/var/tmp"
	ln -s ../run "$root/var/run"
	chmod 1777 "$root/tmp" "$root/var/tmp"
	# The kernel opens /dev/console for /init before devtmpfs is mounted (needs root; without it
	# /init reopens its stdio on the console after mounting devtmpfs).
	if [ "$(id -u)" -eq 0 ]; then
		mknod -m 600 "$root/dev/console" c 5 1
		mknod -m 666 "$root/dev/null" c 1 3
	fi
	printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
	printf 'root:x:0:\n' >"$root/etc/group"
	printf '127.0.0.1 localhost\n10.0.0.1 guest1\n10.0.0.2 guest2\n' >"$root/etc/hosts"
	echo ferry-rig >"$root/etc/hostname"

	# 7. The base initramfs (uncompressed: the kernel unpacks it faster than gzip under TCG),
	#    its file list (run skips host libraries the base already has) and a manifest.
	(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$img.tmp/base.cpio"
	(cd "$root" && find . -mindepth 1 ! -type d | sed 's|^\.||') >"$img.tmp/base.list"
	{
		echo "image $name"
		echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(elapsed "$t0") s"
		echo "kernel $kver ($(cat "$img.tmp/kernel.type"))"
		echo "modules ${order[*]}"
		echo "packages:"
		echo "$versions" | sed 's/^/  /'
	} >"$img.tmp/manifest"
	touch "$img.tmp/.complete"
	mv "$img.tmp" "$img"
	rm -rf "$tmp"
	trap - EXIT
	say "built $name in $(elapsed "$t0") s: kernel $(du -h "$img/kernel" | cut -f1), base.cpio $(du -h "$img/base.cpio" | cut -f1)"
}

# ---------------------------------------------------------------------------------------------
# The guest's /init (dash). Configuration comes from /rig/guest.conf; the command is /rig/cmd.sh.
# Serial ports: ttyS0 = kernel console (host: log file), ttyS1 = report to the host,
# ttyS2 = control words from the host (go, stop, timeout, abort).
write_guest_init() {	# path
	cat >"$1" <<'INIT'
#!/bin/sh
# Ferry RoCE rig: guest init (generated by tests/rigs/roce/rig.sh).
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
HOME=/root
export PATH HOME
. /rig/guest.conf
export RIG_GUEST RIG_GUESTS RIG_IP RIG_PEER_IP
[ -n "${RIG_LD_LIBRARY_PATH:-}" ] && export LD_LIBRARY_PATH="$RIG_LD_LIBRARY_PATH"

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
[ -t 1 ] || exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
# / is already a writable tmpfs (the initramfs); /tmp stays on it, so --copy files under /tmp are seen.
mkdir -p /tmp/rig

log() { echo "rig-init[guest $RIG_GUEST]: $*" >/dev/console; }
uptime_s() { read -r up _ </proc/uptime; echo "$up"; }

# Keep both ports open for the whole run (raw: no CR/LF translation, no echo).
exec 4>/dev/ttyS1 3</dev/ttyS2
stty -F /dev/ttyS1 raw -echo 2>/dev/null
stty -F /dev/ttyS2 raw -echo 2>/dev/null
mark() { echo "FERRY-RIG $*" >&4; }
# Control words from the host, appended to /tmp/rig/ctl by a background reader.
: >/tmp/rig/ctl
( while read -r w; do echo "$w" >>/tmp/rig/ctl; done ) <&3 &
ctl() { grep -qx "$1" /tmp/rig/ctl; }

finish() {
	mark DONE
	exec 4>&-		# last close of the tty waits until the UART has sent everything
	sync
	poweroff -f
	sleep 10
	reboot -f
}
fail() {	# setup failed: report why, dump the kernel log to the console, power off
	log "FAILED: $*"
	dmesg >/dev/console 2>&1
	mark "SETUP-FAILED $*"
	finish
}
# wait_for SECONDS WHAT COMMAND...: poll COMMAND every 0.1 s; host's timeout/abort end the wait
wait_for() {
	n=$(( $1 * 10 )); what=$2; shift 2
	while ! "$@" >/dev/null 2>&1; do
		ctl timeout && fail "rig timeout while waiting for $what"
		ctl abort && fail "aborted by the host while waiting for $what (the other guest failed)"
		n=$((n - 1))
		[ "$n" -gt 0 ] || return 1
		sleep 0.1
	done
}

mark "BOOTED $(uptime_s)"
log "booted at $(uptime_s) s"

KVER=$(cat /rig/kver)
for m in $(cat /rig/modules.order); do
	out=$(insmod "/lib/modules/$KVER/$m" 2>&1) || case "$out" in
		*"File exists"*) ;;
		*) fail "insmod $m: $out" ;;
	esac
done
mkdir -p /sys/kernel/config
mount -t configfs configfs /sys/kernel/config 2>/dev/null
log "modules loaded at $(uptime_s) s"

wait_for 10 "eth0 to appear" test -e /sys/class/net/eth0 || fail "eth0 did not appear within 10 s (virtio_net)"
ip link set lo up
ip link set eth0 mtu "$RIG_MTU" || fail "ip link set eth0 mtu $RIG_MTU failed"
ip link set eth0 up || fail "ip link set eth0 up failed"
ip addr add "$RIG_IP/24" dev eth0 || fail "ip addr add $RIG_IP failed"
out=$(rdma link add rxe0 type rxe netdev eth0 2>&1) || fail "rdma link add rxe0 type rxe netdev eth0: $out"
port_active() { rdma link show rxe0/1 2>/dev/null | grep -q 'state ACTIVE'; }
wait_for "$RIG_ACTIVE_TIMEOUT" "rxe0 to become ACTIVE" port_active ||
	fail "rxe0 did not become ACTIVE within $RIG_ACTIVE_TIMEOUT s: $(rdma link show 2>&1 | tr '\n' ' ')"
mark "ACTIVE $(uptime_s)"
log "rxe0 ACTIVE at $(uptime_s) s"

if [ "$RIG_ROLE" = client ] && [ -n "$RIG_PEER_IP" ]; then
	wait_for 15 "a ping answer from $RIG_PEER_IP" ping -c 1 -W 1 "$RIG_PEER_IP" ||
		fail "guest $RIG_GUEST cannot ping $RIG_PEER_IP over the QEMU socket link"
	mark WAITING
	log "waiting for the host's go (guest 2's command started)"
	wait_for 100000 "the host's go" ctl go || fail "no go from the host"
fi

# Run the command in its own session (so a timeout can kill its whole process group),
# stdout/stderr into files, status into a file when it ends.
cd /root || cd /
setsid sh -c 'sh /rig/cmd.sh >/tmp/rig/stdout 2>/tmp/rig/stderr </dev/null; echo $? >/tmp/rig/status.tmp; mv /tmp/rig/status.tmp /tmp/rig/status' &
cmdpid=$!
t0=$(uptime_s)
[ "$RIG_ROLE" = server ] && sleep "$RIG_SETTLE"
mark "STARTED $t0"
log "command started at $t0 s"
why=exited
while [ ! -e /tmp/rig/status ]; do
	if ctl timeout; then why=timeout; break; fi
	if ctl stop; then why=stopped; break; fi
	sleep 0.1
done
if [ "$why" != exited ]; then
	kill -s TERM -- -"$cmdpid" 2>/dev/null || kill -s TERM "$cmdpid" 2>/dev/null
	sleep 1
	kill -s KILL -- -"$cmdpid" 2>/dev/null
	status=124
else
	status=$(cat /tmp/rig/status)
	if [ "$RIG_ROLE" = server ]; then
		# Guest 2 stays up (its network too) until guest 1 is done: the host says stop.
		mark "EXITED $status"
		log "command exited with status $status; waiting for the host's stop"
		while ! ctl stop && ! ctl timeout; do sleep 0.1; done
	fi
fi
t1=$(uptime_s)
log "command $why with status $status at $t1 s"
for f in stdout stderr; do
	mark "BEGIN $f"
	base64 </tmp/rig/$f >&4
	mark "END $f"
done
mark "STATUS $status $why $t0 $t1"
finish
INIT
	chmod 755 "$1"
}

# ---------------------------------------------------------------------------------------------
# run

sq() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }	# single-quote for sh

usage_run() {
	cat >&2 <<'EOF'
usage: rig.sh run [options] -- COMMAND...
  --guests 1|2        one guest (10.0.0.1), or two joined by a QEMU socket link (10.0.0.1, 10.0.0.2)
  --guest2 'CMD'      command for guest 2 (started first, e.g. a server); required with --guests 2
  --mem MB            guest RAM (default 512)
  --smp N             guest vCPUs (default 2 with one guest, 1 each with two)
  --timeout S         kill everything after S seconds (default 300)
  --copy HOST_PATH[:GUEST_DIR]
                      copy a file or directory into the guests (at the same absolute path, or into
                      GUEST_DIR), with the shared libraries of every ELF file in it (host ldd)
  --link udp|tcp      two guests: QEMU socket netdev over UDP on 127.0.0.1 (default), or TCP listen/
                      connect (lossless but ~40 ms per multi-packet burst: Nagle + delayed ACK)
  --mtu N             eth0 MTU (default 1500: rxe active_mtu 1024; 9000 gives active_mtu 4096)
  --settle S          guest 2: seconds between starting its command and letting guest 1 start (default 1)
  --guest2-grace S    after guest 1's command ends, guest 2's command may run S more seconds before it
                      is stopped (default 5); being stopped is not a failure
  --out DIR           also write gN.stdout, gN.stderr, gN.status there
  --keep              keep the run directory (logs, initrds) even on success
  -v, --verbose       print timings
COMMAND runs in the guest under /bin/sh (dash) as `sh -c "COMMAND..."`: words are joined with spaces
(like ssh), so pipes and && work. Environment: RIG_GUEST, RIG_GUESTS, RIG_IP, RIG_PEER_IP.
Exit: the command's status; 124 timeout; 125 rig failure.
EOF
	exit 125
}

cmd_run() {
	local mtu=1500 link=udp
	local guests=1 mem=512 smp="" timeout=300 guest2="" settle=1 grace=5 out="" keep="" verbose=""
	local copies=()
	while [ $# -gt 0 ]; do
		case "$1" in
		--guests) guests=$2; shift 2 ;;
		--guest2) guest2=$2; shift 2 ;;
		--mem) mem=$2; shift 2 ;;
		--smp) smp=$2; shift 2 ;;
		--timeout) timeout=$2; shift 2 ;;
		--copy) copies+=("$2"); shift 2 ;;
		--settle) settle=$2; shift 2 ;;
		--mtu) mtu=$2; shift 2 ;;
		--link) link=$2; shift 2 ;;
		--guest2-grace) grace=$2; shift 2 ;;
		--out) out=$2; shift 2 ;;
		--keep) keep=1; shift ;;
		-v | --verbose) verbose=1; shift ;;
		--) shift; break ;;
		-h | --help) usage_run ;;
		*) say "unknown option $1"; usage_run ;;
		esac
	done
	[ $# -gt 0 ] || { say "no COMMAND"; usage_run; }
	case "$guests" in 1 | 2) ;; *) die "--guests must be 1 or 2" ;; esac
	[ "$guests" = 2 ] && [ -z "$guest2" ] && die "--guests 2 needs --guest2 'CMD' (guest 2's command)"
	[ "$guests" = 1 ] && [ -n "$guest2" ] && die "--guest2 needs --guests 2"
	case "$link" in udp | tcp) ;; *) die "--link must be udp or tcp" ;; esac
	[ -n "$smp" ] || { [ "$guests" = 1 ] && smp=2 || smp=1; }
	local t_start
	t_start=$(now)

	cmd_prepare quiet
	local kernel="$IMAGE/kernel"

	# Globals (the EXIT trap runs after cmd_run's locals are gone).
	RUN=$(mktemp -d "${TMPDIR:-/tmp}/ferry-rig.XXXXXX")
	RUN_KEEP=$keep
	RUN_OK=""
	RUN_BOOTED=""
	pids=()
	trap run_cleanup EXIT

	# -- per-run cpio with the --copy files and their libraries (shared by both guests)
	local stage="$RUN/copy"
	mkdir -p "$stage"
	declare -A inbase=()
	local f
	while IFS= read -r f; do inbase[$f]=1; done <"$IMAGE/base.list"
	local extra_libdirs="" spec src gdir cdest elf lib ldir dest
	for spec in "${copies[@]}"; do
		src=${spec%%:*}; gdir=""
		[ "$src" != "$spec" ] && gdir=${spec#*:}
		[ -e "$src" ] || die "--copy $src: no such file or directory"
		src=$(realpath "$src")
		if [ -n "$gdir" ]; then cdest="$gdir/$(basename "$src")"; else cdest="$src"; fi
		mkdir -p "$stage$(dirname "$cdest")"
		cp -aL "$src" "$stage$cdest"
		# Shared libraries of every ELF file copied (ldd on the host file, so $ORIGIN/RUNPATH
		# resolve as on the host); each goes to its canonical path unless the base has it.
		while IFS= read -r -d '' elf; do
			is_elf "$elf" || continue
			ldd "$elf" >"$RUN/ldd.out" 2>&1 || continue	# static, or not a dynamic object
			if grep -q 'not found' "$RUN/ldd.out"; then
				die "--copy $spec: $elf needs libraries not found on the host: $(awk '/not found/ {print $1}' "$RUN/ldd.out" | tr '\n' ' ')"
			fi
			for lib in $(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' "$RUN/ldd.out"); do
				ldir=$(realpath "$(dirname "$lib")")
				dest="$ldir/$(basename "$lib")"
				[ -n "${inbase[$dest]:-}" ] && continue	# the guest has it (same Debian release)
				[ -e "$stage$dest" ] && continue
				mkdir -p "$stage$ldir"
				cp -L "$lib" "$stage$dest"
				case "$ldir" in
				"/usr/lib/$ARCH_LIBDIR" | /usr/lib) ;;
				*) case ":$extra_libdirs:" in *":$ldir:"*) ;; *) extra_libdirs="${extra_libdirs:+$extra_libdirs:}$ldir" ;; esac ;;
				esac
			done
		done < <(find -L "$src" -type f -print0)
	done
	write_guest_init "$stage/init"
	(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$RUN/copy.cpio"

	# -- per-guest cpio: guest.conf and cmd.sh; then initrd = base + copies + guest
	local g ip peer role cmd fd
	local -a ctlfd=()
	for g in $(seq 1 "$guests"); do
		ip=10.0.0.$g
		peer=""; [ "$guests" = 2 ] && peer=10.0.0.$((3 - g))
		if [ "$guests" = 1 ]; then role=single; elif [ "$g" = 1 ]; then role=client; else role=server; fi
		if [ "$g" = 1 ]; then cmd="$*"; else cmd=$guest2; fi
		mkdir -p "$RUN/g$g/rig"
		{
			echo "RIG_GUEST=$g"
			echo "RIG_GUESTS=$guests"
			echo "RIG_IP=$ip"
			echo "RIG_PEER_IP=$peer"
			echo "RIG_ROLE=$role"
			echo "RIG_ACTIVE_TIMEOUT=20"
			echo "RIG_MTU=$mtu"
			echo "RIG_SETTLE=$(sq "$settle")"
			echo "RIG_LD_LIBRARY_PATH=$(sq "$extra_libdirs")"
		} >"$RUN/g$g/rig/guest.conf"
		printf '%s\n' "$cmd" >"$RUN/g$g/rig/cmd.sh"
		(cd "$RUN/g$g" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$RUN/g$g.cpio"
		cat "$IMAGE/base.cpio" "$RUN/copy.cpio" "$RUN/g$g.cpio" >"$RUN/g$g.initrd"
		# Control channel (QEMU pipe chardev = the fifos path.in, path.out). The host holds .in
		# open read-write so that writing a control word never blocks, even if QEMU is gone.
		mkfifo "$RUN/g$g.ctl.in" "$RUN/g$g.ctl.out"
		exec {fd}<>"$RUN/g$g.ctl.in"
		ctlfd[$g]=$fd
		: >"$RUN/g$g.report"
	done

	# -- QEMU
	local append="console=ttyS0 panic=-1 rdinit=/init tsc=reliable no_timer_check mitigations=off"
	start_guest() {	# guest netdev-spec
		local g=$1
		local -a q=(
			-accel tcg -machine pc -m "$mem" -smp "$smp"
			-nodefaults -no-user-config -display none -no-reboot -name "ferry-rig-g$g"
			-kernel "$kernel" -initrd "$RUN/g$g.initrd" -append "$append"
			-serial "file:$RUN/g$g.console"				# ttyS0: kernel console
			-serial "file:$RUN/g$g.report"				# ttyS1: report to the host
			-chardev "pipe,id=ctl,path=$RUN/g$g.ctl" -serial chardev:ctl	# ttyS2: control words
			-netdev "$2" -device "virtio-net-pci,netdev=n0,mac=52:54:00:fe:00:0$g,host_mtu=$mtu,romfile="
		)
		echo "qemu-system-x86_64 ${q[*]}" >"$RUN/g$g.qemu.cmd"
		qemu-system-x86_64 "${q[@]}" >"$RUN/g$g.qemu.log" 2>&1 &
		pids[$g]=$!
		T_LAUNCH[$g]=$(now)
	}
	# QEMU's -serial file: and -chardev path= cannot contain commas.
	case "$RUN" in *,*) die "run directory $RUN contains a comma; set TMPDIR" ;; esac

	declare -A T_LAUNCH=() T_ACTIVE=() T_STARTED=() T_DONE=()
	RUN_BOOTED=1
	if [ "$guests" = 1 ]; then
		start_guest 1 "hubport,id=n0,hubid=0"
	else
		if [ "$link" = udp ]; then
			# Each QEMU binds its own UDP port and sends frames to the other's: one datagram per
			# frame, no connection, no Nagle (see README: the TCP link adds ~40 ms per burst).
			local p1 p2 up=""
			for _ in 1 2 3 4 5; do
				p1=$(pick_port); p2=$(pick_port)
				[ "$p1" = "$p2" ] && continue
				start_guest 2 "socket,id=n0,udp=127.0.0.1:$p1,localaddr=127.0.0.1:$p2"
				start_guest 1 "socket,id=n0,udp=127.0.0.1:$p2,localaddr=127.0.0.1:$p1"
				if wait_bound "$p1" udp "${pids[1]}" && wait_bound "$p2" udp "${pids[2]}"; then up=1; break; fi
				kill -KILL "${pids[1]}" "${pids[2]}" 2>/dev/null || true
				wait "${pids[1]}" "${pids[2]}" 2>/dev/null || true
				say "QEMU could not bind UDP ports $p1/$p2 ($(tail -1 "$RUN/g1.qemu.log") $(tail -1 "$RUN/g2.qemu.log")); retrying"
			done
			[ -n "$up" ] || die "could not start the two guests on local UDP ports; see $RUN/g1.qemu.log $RUN/g2.qemu.log"
		else
			# TCP: guest 2 listens, guest 1 connects (QEMU's connect fails if nobody listens yet).
			local port up=""
			for _ in 1 2 3 4 5; do
				port=$(pick_port)
				start_guest 2 "socket,id=n0,listen=127.0.0.1:$port"
				if wait_bound "$port" tcp "${pids[2]}"; then up=1; break; fi
				kill -KILL "${pids[2]}" 2>/dev/null || true
				wait "${pids[2]}" 2>/dev/null || true
				say "guest 2 could not listen on 127.0.0.1:$port ($(tail -1 "$RUN/g2.qemu.log")); retrying"
			done
			[ -n "$up" ] || die "could not start guest 2 listening on a local port; see $RUN/g2.qemu.log"
			start_guest 1 "socket,id=n0,connect=127.0.0.1:$port"
		fi
	fi

	# -- watch the guests
	local deadline_soft deadline t g2_done_at="" sent_go="" sent_stop="" sent_abort=""
	local -A done_=() dead_=() sent_timeout=()
	deadline=$(awk -v a="$t_start" -v s="$timeout" 'BEGIN { printf "%.3f", a + s }')
	# At the soft deadline the guests are told to stop their commands and report what they have.
	deadline_soft=$(awk -v d="$deadline" -v s="$timeout" 'BEGIN { g = s / 4; if (g > 10) g = 10; printf "%.3f", d - g }')
	local timed_out="" rep
	while :; do
		t=$(now)
		for g in $(seq 1 "$guests"); do
			[ -n "${done_[$g]:-}" ] || [ -n "${dead_[$g]:-}" ] && continue
			rep="$RUN/g$g.report"
			[ -z "${T_ACTIVE[$g]:-}" ] && grep -q '^FERRY-RIG ACTIVE' "$rep" && T_ACTIVE[$g]=$t
			[ -z "${T_STARTED[$g]:-}" ] && grep -q '^FERRY-RIG STARTED' "$rep" && T_STARTED[$g]=$t
			if grep -q '^FERRY-RIG DONE' "$rep"; then
				done_[$g]=1; T_DONE[$g]=$t
			elif ! kill -0 "${pids[$g]}" 2>/dev/null; then
				dead_[$g]=1; T_DONE[$g]=$t
			fi
		done
		if [ "$guests" = 2 ]; then
			# guest 1 starts its command once guest 2's command has started
			if [ -z "$sent_go" ] && [ -n "${T_STARTED[2]:-}" ] && grep -q '^FERRY-RIG WAITING' "$RUN/g1.report"; then
				echo go >&"${ctlfd[1]}"; sent_go=1
			fi
			# guest 2 failed before starting its command: guest 1 must not wait for it
			if [ -z "$sent_abort" ] && [ -z "${T_STARTED[2]:-}" ] && { [ -n "${done_[2]:-}" ] || [ -n "${dead_[2]:-}" ]; }; then
				echo abort >&"${ctlfd[1]}"; sent_abort=1
			fi
			# guest 1 finished: guest 2 is told to stop (its command gets --guest2-grace seconds
			# to end by itself, then is stopped: that is not a failure)
			if [ -z "$sent_stop" ] && [ -z "${done_[2]:-}${dead_[2]:-}" ] && [ -n "${done_[1]:-}${dead_[1]:-}" ]; then
				[ -n "$g2_done_at" ] || g2_done_at=$t
				if grep -q '^FERRY-RIG EXITED' "$RUN/g2.report" ||
					awk -v a="$g2_done_at" -v b="$t" -v s="$grace" 'BEGIN { exit !(b - a >= s) }'; then
					echo stop >&"${ctlfd[2]}"; sent_stop=1
				fi
			fi
		fi
		local all=1
		for g in $(seq 1 "$guests"); do [ -n "${done_[$g]:-}${dead_[$g]:-}" ] || all=""; done
		[ -n "$all" ] && break
		if awk -v a="$t" -v d="$deadline_soft" 'BEGIN { exit !(a >= d) }'; then
			for g in $(seq 1 "$guests"); do
				if [ -z "${sent_timeout[$g]:-}" ] && [ -z "${done_[$g]:-}${dead_[$g]:-}" ]; then
					echo timeout >&"${ctlfd[$g]}"; sent_timeout[$g]=1
				fi
			done
		fi
		if awk -v a="$t" -v d="$deadline" 'BEGIN { exit !(a >= d) }'; then timed_out=1; break; fi
		sleep 0.05
	done
	# Let QEMU exit by itself (the guest powers off; not after a timeout), then make sure.
	local p
	[ -n "$timed_out" ] && say "timeout: --timeout $timeout s reached; killing QEMU"
	for _ in $(seq 1 60); do
		[ -n "$timed_out" ] && break
		all=1
		for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && all=""; done
		[ -n "$all" ] && break
		sleep 0.05
	done
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done

	# -- results
	local rc=0 g1rc="" g2rc="" status why failed="" label
	[ -n "$out" ] && mkdir -p "$out"
	for g in $(seq 2 -1 1); do
		[ "$g" -le "$guests" ] || continue
		rep="$RUN/g$g.report"
		label=""; [ "$guests" = 2 ] && label="guest $g (10.0.0.$g) "
		for f in stdout stderr; do
			awk -v b="FERRY-RIG BEGIN $f" -v e="FERRY-RIG END $f" '$0 == e { p = 0 } p { print } $0 == b { p = 1 }' "$rep" |
				base64 -d -i >"$RUN/g$g.$f" 2>/dev/null || true
		done
		status=$(awk '$1 == "FERRY-RIG" && $2 == "STATUS" { print $3 }' "$rep" | tail -1)
		why=$(awk '$1 == "FERRY-RIG" && $2 == "STATUS" { print $4 }' "$rep" | tail -1)
		if [ "$guests" = 2 ]; then
			echo "==> ${label}stdout <=="
			cat "$RUN/g$g.stdout"
			if [ -s "$RUN/g$g.stderr" ]; then echo "==> ${label}stderr <==" >&2; cat "$RUN/g$g.stderr" >&2; fi
		else
			cat "$RUN/g$g.stdout"
			cat "$RUN/g$g.stderr" >&2
		fi
		if [ -n "$out" ]; then
			cp "$RUN/g$g.stdout" "$RUN/g$g.stderr" "$out/"
			echo "${status:-none} ${why:-}" >"$out/g$g.status"
		fi
		local setup
		setup=$(sed -n 's/^FERRY-RIG SETUP-FAILED //p' "$rep" | tail -1)
		if [ -n "$setup" ]; then
			say "guest $g: $setup"
			say "guest $g log: $RUN/g$g.console"
			failed=125
		elif [ -z "$status" ]; then
			if [ -n "$timed_out" ]; then
				say "timeout: guest $g did not finish within $timeout s ($(stage_of "$rep")); killed. guest log: $RUN/g$g.console"
				tail -n 3 "$RUN/g$g.console" 2>/dev/null | sed 's/^/rig:   console: /' >&2
				failed=124
			else
				say "guest $g stopped without reporting a result ($(stage_of "$rep")). guest log: $RUN/g$g.console, QEMU: $RUN/g$g.qemu.log"
				tail -3 "$RUN/g$g.qemu.log" | sed 's/^/rig:   qemu: /' >&2
				failed=125
			fi
		else
			case "$why" in
			timeout)
				say "timeout: guest $g's command was still running at ${timeout} s (--timeout); it was killed, partial output above. guest log: $RUN/g$g.console"
				failed=124 ;;
			stopped)
				[ -n "$verbose" ] && say "guest $g's command was still running ${grace} s after guest 1's ended: stopped (not a failure)"
				status=0 ;;
			esac
			[ "$guests" = 2 ] && [ "$why" != stopped ] && say "guest $g command exited $status"
			[ "$g" = 1 ] && g1rc=$status || g2rc=$status
		fi
		if [ -n "$verbose" ]; then
			say "guest $g timings: rxe0 ACTIVE $(rel "${T_ACTIVE[$g]:-}" "${T_LAUNCH[$g]}") s after QEMU start, command started $(rel "${T_STARTED[$g]:-}" "${T_LAUNCH[$g]}") s, done $(rel "${T_DONE[$g]:-}" "${T_LAUNCH[$g]}") s; in-guest uptime at command start/end: $(awk '$1 == "FERRY-RIG" && $2 == "STATUS" { print $5 "/" $6 }' "$rep")"
		fi
	done
	[ -n "$verbose" ] && say "total $(elapsed "$t_start") s"
	if [ -n "$failed" ]; then
		rc=$failed
	else
		rc=${g1rc:-125}
		if [ "$rc" = 0 ] && [ -n "$g2rc" ] && [ "$g2rc" != 0 ]; then
			say "guest 1's command succeeded but guest 2's failed (status $g2rc)"
			rc=$g2rc
		fi
	fi
	if [ "$rc" = 0 ]; then RUN_OK=1; else RUN_OK=""; fi
	if [ -z "$RUN_OK" ] || [ -n "$keep" ]; then say "run directory kept: $RUN"; fi
	return "$rc"
}

run_cleanup() {	# kill our QEMUs (by pid), remove the run directory after a success
	local p
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	# Keep the run directory after a failed boot or run (its logs say why) or with --keep.
	if [ -z "${RUN_KEEP:-}" ] && { [ -n "${RUN_OK:-}" ] || [ -z "${RUN_BOOTED:-}" ]; }; then rm -rf "$RUN"; fi
}

rel() { [ -n "$1" ] && awk -v a="$2" -v b="$1" 'BEGIN { printf "%.1f", b - a }' || echo "-"; }

stage_of() {	# report -> where the guest got to
	local r=$1
	if grep -q '^FERRY-RIG STARTED' "$r"; then echo "its command was running"
	elif grep -q '^FERRY-RIG WAITING' "$r"; then echo "it was waiting for guest 2"
	elif grep -q '^FERRY-RIG ACTIVE' "$r"; then echo "rxe0 was ACTIVE, command not started"
	elif grep -q '^FERRY-RIG BOOTED' "$r"; then echo "booted, rxe0 not ACTIVE yet"
	else echo "it never reached /init"
	fi
}

pick_port() {	# a port no TCP or UDP socket uses on this host (checked in /proc/net/*)
	local p hex
	while :; do
		p=$((20000 + RANDOM % 40000))
		hex=$(printf '%04X' "$p")
		grep -qi ":$hex " /proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6 2>/dev/null || { echo "$p"; return; }
	done
}
wait_bound() {	# port tcp|udp qemu-pid: wait (5 s) until 127.0.0.1:port is bound (tcp: listening)
	local hex
	hex=$(printf '%04X' "$1")
	for _ in $(seq 1 100); do
		if [ "$2" = udp ]; then
			awk -v h="0100007F:$hex" '$2 == h { f = 1 } END { exit !f }' /proc/net/udp && return 0
		else
			awk -v h="0100007F:$hex" '$2 == h && $4 == "0A" { f = 1 } END { exit !f }' /proc/net/tcp && return 0
		fi
		kill -0 "$3" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

# ---------------------------------------------------------------------------------------------
# selftest

cmd_selftest() {
	local t0 fails=0 passes=0 tmp
	t0=$(now)
	ensure_host_packages $RIG_HOST_PACKAGES $RIG_SELFTEST_PACKAGES
	cmd_prepare
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/ferry-rig-selftest.XXXXXX")
	# shellcheck disable=SC2064
	trap "rm -rf '$tmp'" EXIT
	pass() { echo "PASS $*"; passes=$((passes + 1)); }
	fail() { echo "FAIL $*"; fails=$((fails + 1)); }

	# (c) a host-compiled verbs program
	if ! cc -O2 -Wall -Werror -std=c17 -o "$tmp/verbs_probe" "$RIG_DIR/verbs_probe.c" -libverbs 2>"$tmp/cc.log"; then
		fail "verbs_probe: host build failed: $(head -3 "$tmp/cc.log")"
	fi

	# (a) + (c): one guest, one boot, each check delimited by markers.
	cat >"$tmp/one.sh" <<'EOF'
check() { echo "=== BEGIN $1"; shift; sh -c "$*" 2>&1; echo "=== RC $?"; }
check devinfo 'ibv_devinfo -d rxe0'
check rping 'rping -s -a $RIG_IP -C 10 -v > /tmp/rping-s.log 2>&1 & sleep 1; rping -c -a $RIG_IP -C 10 -v; rc=$?; wait $! || rc=$?; sed "s/^/server: /" /tmp/rping-s.log | tail -2; exit $rc'
check lat 'ib_read_lat -s 4096 -n 1000 > /tmp/lat-s.log 2>&1 & sleep 1; ib_read_lat -s 4096 -n 1000 $RIG_IP; rc=$?; wait $! || rc=$?; exit $rc'
check bw 'ib_read_bw -s 4096 > /tmp/bw-s.log 2>&1 & sleep 1; ib_read_bw -s 4096 $RIG_IP; rc=$?; wait $! || rc=$?; exit $rc'
check probe 'VERBS_PROBE'
EOF
	sed -i "s|VERBS_PROBE|$tmp/verbs_probe|" "$tmp/one.sh"
	local rc=0 t1
	t1=$(now)
	cmd_run_sub --timeout 180 --copy "$tmp/one.sh" --copy "$tmp/verbs_probe" -v -- sh "$tmp/one.sh" \
		>"$tmp/one.out" 2>"$tmp/one.err" || rc=$?
	local one_time
	one_time=$(elapsed "$t1")
	section() { awk -v n="$1" '/^=== BEGIN / { p = ($3 == n) ; next } /^=== RC / { if (p) { print; p = 0 } next } p { print }' "$tmp/one.out"; }
	section_rc() { section "$1" | sed -n 's/^=== RC //p'; }
	if [ "$rc" != 0 ]; then
		fail "one-guest run: rig exit $rc: $(grep '^rig:' "$tmp/one.err" | head -5 | tr '\n' ' ')"
	fi
	if section devinfo | grep -q 'hca_id:[[:space:]]*rxe0' && section devinfo | grep -q 'state:[[:space:]]*PORT_ACTIVE'; then
		pass "(a) ibv_devinfo: rxe0, port state PORT_ACTIVE ($(section devinfo | awk '/link_layer/ { print "link_layer " $2 }'))"
	else
		fail "(a) ibv_devinfo: no rxe0 with PORT_ACTIVE: $(section devinfo | head -5 | tr '\n' ' ')"
	fi
	if [ "$(section_rc rping)" = 0 ] && [ "$(section rping | grep -c '^ping data')" -ge 10 ]; then
		pass "(a) rping -s / rping -c -C 10 to the guest's own IP: $(section rping | grep -c '^ping data') pings"
	else
		fail "(a) rping: rc $(section_rc rping): $(section rping | tail -3 | tr '\n' ' ')"
	fi
	local lat bw
	lat=$(section lat | awk '$1 == 4096 && NF >= 7 { print $5 }' | head -1)
	if [ "$(section_rc lat)" = 0 ] && [ -n "$lat" ]; then
		pass "(a) ib_read_lat -s 4096 -n 1000, one guest: t_typical $lat us"
	else
		fail "(a) ib_read_lat one guest: rc $(section_rc lat): $(section lat | tail -4 | tr '\n' ' ')"
	fi
	bw=$(section bw | awk '$1 == 4096 && NF >= 5 { print $4 }' | head -1)
	if [ "$(section_rc bw)" = 0 ] && [ -n "$bw" ]; then
		pass "(a) ib_read_bw -s 4096, one guest: BW average $bw MB/s"
	else
		fail "(a) ib_read_bw one guest: rc $(section_rc bw): $(section bw | tail -4 | tr '\n' ' ')"
	fi
	if [ "$(section_rc probe)" = 0 ] && section probe | grep -q "port_state=PORT_ACTIVE"; then
		pass "(c) host-compiled verbs_probe: $(section probe | grep port_state | head -1)"
	else
		fail "(c) host-compiled verbs_probe: rc $(section_rc probe): $(section probe | tail -3 | tr '\n' ' ')"
	fi
	echo "     one-guest boot + all (a)/(c) checks: $one_time s; $(grep 'guest 1 timings' "$tmp/one.err" | sed 's/^rig: guest 1 timings: //')"

	# (b) two guests: ib_read_lat server on guest 2, client on guest 1, over the socket link
	t1=$(now)
	rc=0
	cmd_run_sub --guests 2 --timeout 240 -v --guest2 'ib_read_lat -s 4096 -n 1000' \
		-- 'ib_read_lat -s 4096 -n 1000 $RIG_PEER_IP' >"$tmp/two.out" 2>"$tmp/two.err" || rc=$?
	local two_time
	two_time=$(elapsed "$t1")
	lat=$(awk '/^==> guest 1/ { p = 1 } /^==> guest 2/ { p = 0 } p && $1 == 4096 && NF >= 7 { print $5 }' "$tmp/two.out" | head -1)
	if [ "$rc" = 0 ] && [ -n "$lat" ]; then
		pass "(b) ib_read_lat -s 4096 -n 1000, server guest 2 / client guest 1 over the socket link: t_typical $lat us"
	else
		fail "(b) two-guest ib_read_lat: rig exit $rc: $(grep '^rig:' "$tmp/two.err" | head -4 | tr '\n' ' ') $(tail -4 "$tmp/two.out" | tr '\n' ' ')"
	fi

	echo "     two-guest run: $two_time s; $(grep 'guest 1 timings' "$tmp/two.err" | sed 's/^rig: guest 1 timings: //')"

	# (b') the TCP listen/connect link works too (rping: one frame per RDMA op, so no Nagle stall)
	rc=0
	t1=$(now)
	cmd_run_sub --guests 2 --link tcp --timeout 120 --guest2 'rping -s -a $RIG_IP -C 3 -v' \
		-- 'rping -c -a $RIG_PEER_IP -C 3 -v' >"$tmp/tcp.out" 2>"$tmp/tcp.err" || rc=$?
	if [ "$rc" = 0 ] && [ "$(awk '/^==> guest 1/ { p = 1 } p && /^ping data/' "$tmp/tcp.out" | wc -l)" -ge 3 ]; then
		pass "(b) --link tcp (guest 2 listens, guest 1 connects): rping -C 3 guest 1 -> guest 2 ($(elapsed "$t1") s)"
	else
		fail "(b) --link tcp rping: rig exit $rc: $(grep '^rig:' "$tmp/tcp.err" | head -4 | tr '\n' ' ') $(tail -4 "$tmp/tcp.out" | tr '\n' ' ')"
	fi

	# (d) the rig itself: stdout/stderr/exit status come back; a hung command times out with its output
	rc=0
	cmd_run_sub -- 'echo out-line; echo err-line >&2; exit 3' >"$tmp/st.out" 2>"$tmp/st.err" || rc=$?
	if [ "$rc" = 3 ] && grep -qx out-line "$tmp/st.out" && grep -qx err-line "$tmp/st.err"; then
		pass "(d) rig: stdout, stderr and exit status 3 returned"
	else
		fail "(d) rig: status/output: exit $rc, stdout '$(head -2 "$tmp/st.out" | tr '\n' ' ')' stderr '$(head -3 "$tmp/st.err" | tr '\n' ' ')'"
	fi
	rc=0
	t1=$(now)
	cmd_run_sub --timeout 16 -- 'echo before-hang; sleep 1000' >"$tmp/to.out" 2>"$tmp/to.err" || rc=$?
	if [ "$rc" = 124 ] && grep -qx before-hang "$tmp/to.out" && grep -q timeout "$tmp/to.err"; then
		pass "(d) rig: --timeout 16 stops a hung command, exit 124, partial output kept ($(elapsed "$t1") s)"
	else
		fail "(d) rig: timeout: exit $rc, stdout '$(head -2 "$tmp/to.out" | tr '\n' ' ')' stderr '$(head -3 "$tmp/to.err" | tr '\n' ' ')'"
	fi

	echo "selftest: total $(elapsed "$t0") s; image $IMAGE"
	echo "selftest: $passes passed, $fails failed"
	[ "$fails" -eq 0 ]
}

# Run `rig.sh run` in a subshell (its traps and exit status stay there).
cmd_run_sub() { bash "$RIG_DIR/rig.sh" run "$@"; }

cmd_clean() {
	if [ -d "$CACHE" ]; then
		[ -f "$CACHE/.ferry-rig-cache" ] || die "$CACHE does not look like a rig cache (no .ferry-rig-cache); not removing"
		rm -rf "$CACHE"
		say "removed $CACHE"
	fi
}

case "${1:-}" in
prepare) shift; cmd_prepare "$@" ;;
run) shift; cmd_run "$@" ;;
selftest) shift; cmd_selftest "$@" ;;
clean) shift; cmd_clean ;;
*)
	sed -n '2,/^set -eu/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
