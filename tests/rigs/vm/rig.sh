#!/bin/bash
# tests/rigs/vm/rig.sh — real QEMU (TCG) guests that hibernate and resume: Debian's kernel, a
# busybox initramfs with the virtio-net modules and a static TCP echo service (echo_server.c
# beside this file), on persistent taps in a bridge inside a network namespace; a client in a
# namespace of its own.
#
#   rig.sh prepare           build (or reuse) the guest image in the cache; quiet when cached
#   rig.sh image             prepare, then print the image directory (kernel, initrd.cpio)
#   rig.sh up [N] [--acc]    namespaces, bridge, taps vt0..vt(N-1) (default N=1); with --acc also
#                            ${P}acc, whose acc0 (no IP) is a bridge port for ferry-wake; idempotent
#   rig.sh down              remove them (and everything running in them)
#   rig.sh check             exit 77 when namespaces / QEMU cannot be used here
#   rig.sh qemu-args I DIR   print guest I's QEMU command line (one argument a line), without
#                            its RAM (-m / memory backend) and QMP: ferry-hib adds those. The
#                            guest's console goes to DIR/vmI.console.
#   rig.sh guest-ip I        print guest I's address
#   rig.sh clean             remove this rig's images from the cache
#
# Topology (P = FERRY_VM_RIG_PREFIX, default "hib-"; addresses in 10.97.0.0/24):
#
#   ${P}client: c0 10.97.0.10/24 ---veth--- pc --+
#   ${P}br:     br0 (bridge) + persistent taps vt0, vt1 ... (QEMU runs in this namespace)
#   ${P}acc:    acc0, no IP (--acc) ---veth--- pa --+   (ferry-wake: net_af_packet,iface=acc0)
#                                                 guest I: eth0 10.97.0.(20+I), MAC 52:54:00:97:00:(20+I)
#
# Image: $CACHE/vm/<kver>-<hash>/{kernel,initrd.cpio,manifest}; <hash> covers the exact package
# versions (kernel, busybox-static), the functions that build it, echo_server.c and the module list, so a rerun
# with nothing changed reuses the image (a prepare then takes well under a second).
set -eu

RIG_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC2034  # read by debian_guest.sh (say, die)
RIG_LOG_PREFIX=vm-rig
# shellcheck source=../lib/debian_guest.sh
. "$RIG_DIR/../lib/debian_guest.sh"

CACHE=${FERRY_RIG_CACHE:-/var/cache/ferry-rig}
P=${FERRY_VM_RIG_PREFIX:-hib-}
NET=10.97.0
CLIENT_IP=$NET.10
ACC_MAC=02:97:00:00:00:0a
GUEST_PORT=7000
RIG_HOST_PACKAGES="qemu-system-x86 cpio xz-utils binutils gcc libc6-dev iproute2"
RIG_GUEST_PACKAGES="busybox-static"
RIG_MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net"
RIG_FORMAT=1

image_key() {	# kernel-package versions -> image name
	{
		echo "format=$RIG_FORMAT modules=$RIG_MODULES"
		echo "$2"
		# What goes into the image, not the whole script: editing the network or QEMU parts
		# of this file does not rebuild it.
		declare -f build_image write_guest_init install_guest_kernel install_guest_modules
		sha256sum "$RIG_DIR/echo_server.c" | cut -d' ' -f1
	} | sha256sum | cut -c1-12
}

# Fast path: (rig inputs, apt's package lists' size+mtime) -> image name, so a cached prepare
# needs no apt-cache call (those take seconds). When apt's lists change, versions are resolved
# again and the image is rebuilt only if a version changed.
fingerprint() {
	{
		image_key "" ""
		stat -c '%n %s %Y' /var/lib/apt/lists/*Packages* 2>/dev/null || true
	} | sha256sum | cut -c1-16
}

cmd_prepare() {
	local kpkg versions name fp
	ensure_host_packages $RIG_HOST_PACKAGES
	fp=$(fingerprint)
	name=$(cat "$CACHE/vm/index/$fp" 2>/dev/null || true)
	if [ -n "$name" ] && [ -f "$CACHE/vm/$name/.complete" ]; then
		IMAGE="$CACHE/vm/$name"
		return 0
	fi
	kpkg=$(resolve_kernel_pkg)
	if [ -z "$kpkg" ]; then
		apt-get update -qq || true
		kpkg=$(resolve_kernel_pkg)
	fi
	if [ -z "$kpkg" ]; then
		local d
		name=""
		for d in "$CACHE/vm"/*/.complete; do [ -e "$d" ] && name=$(basename "$(dirname "$d")"); done
		[ -n "$name" ] && [ -f "$CACHE/vm/$name/.complete" ] ||
			die "cannot resolve linux-image-amd64 (apt-get update failed?) and no cached image in $CACHE/vm"
		say "warning: cannot resolve package versions; reusing cached image $name"
		IMAGE="$CACHE/vm/$name"
		return 0
	fi
	# shellcheck disable=SC2086
	versions=$(resolve_versions $kpkg $RIG_GUEST_PACKAGES | sort)
	[ "$(echo "$versions" | grep -c '=.')" -eq 2 ] || die "cannot resolve package versions: $versions"
	name="${kpkg#linux-image-}-$(image_key "$kpkg" "$versions")"
	IMAGE="$CACHE/vm/$name"
	mkdir -p "$CACHE/vm" 2>/dev/null && [ -w "$CACHE" ] ||
		die "cannot write the cache $CACHE (run as root, or set FERRY_RIG_CACHE)"
	[ -e "$CACHE/.ferry-rig-cache" ] || touch "$CACHE/.ferry-rig-cache"
	exec 8>"$CACHE/vm/.lock"
	flock 8
	if [ ! -f "$IMAGE/.complete" ]; then
		build_image "$name" "$kpkg" "$versions"
		# Keep only the current image of this rig (and no index entry pointing elsewhere).
		local d
		for d in "$CACHE/vm"/*; do [ "$d" = "$IMAGE" ] || [ "$d" = "$CACHE/vm/index" ] || rm -rf "$d"; done
		rm -rf "$CACHE/vm/index"
	fi
	mkdir -p "$CACHE/vm/index"
	echo "$name" >"$CACHE/vm/index/$fp.tmp" && mv "$CACHE/vm/index/$fp.tmp" "$CACHE/vm/index/$fp"
	exec 8>&-
}

build_image() {	# name kernel-package versions
	local name=$1 kpkg=$2 versions=$3 kver=${2#linux-image-} t0 tmp out
	t0=$(now)
	tmp="$CACHE/vm/tmp.$$"
	out="$tmp/out"
	rm -rf "$tmp"
	mkdir -p "$tmp/dl" "$tmp/kernel" "$tmp/bb" "$tmp/root" "$out"
	trap 'rm -rf "$tmp"' EXIT
	say "building image $name (downloads Debian's kernel and busybox-static; nothing is installed)"
	# shellcheck disable=SC2086
	download_debs "$tmp/dl" $versions
	dpkg -x "$tmp/dl/${kpkg}_"*.deb "$tmp/kernel"
	dpkg -x "$tmp/dl/busybox-static_"*.deb "$tmp/bb"
	install_guest_kernel "$tmp/kernel" "$kver" "$out"

	local root="$tmp/root" a
	mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin" "$root/usr/lib" "$root/proc" "$root/sys" \
		"$root/dev" "$root/tmp" "$root/etc" "$root/root"
	ln -s usr/lib "$root/lib"
	cp "$tmp/bb/bin/busybox" "$root/bin/busybox"
	for a in $("$root/bin/busybox" --list-full); do
		[ -e "$root/$a" ] || ln -s /bin/busybox "$root/$a"
	done
	# shellcheck disable=SC2086
	install_guest_modules "$tmp/kernel" "$kver" "$root" $RIG_MODULES
	gcc -O2 -static -Wall -Werror -std=gnu17 -o "$root/bin/echo_server" "$RIG_DIR/echo_server.c" ||
		die "cannot build echo_server.c (gcc -static)"
	write_guest_init "$root/init"
	if [ "$(id -u)" -eq 0 ]; then
		mknod -m 600 "$root/dev/console" c 5 1
		mknod -m 666 "$root/dev/null" c 1 3
	fi
	(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$out/initrd.cpio"
	{
		echo "image $name"
		echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(elapsed "$t0") s"
		echo "kernel $kver ($(cat "$out/kernel.type"))"
		echo "modules ${GUEST_MODULE_ORDER[*]}"
		echo "packages:"
		echo "$versions" | sed 's/^/  /'
	} >"$out/manifest"
	touch "$out/.complete"
	rm -rf "$CACHE/vm/$name"
	mv "$out" "$CACHE/vm/$name"
	rm -rf "$tmp"
	trap - EXIT
	say "built $name in $(elapsed "$t0") s: kernel $(du -h "$CACHE/vm/$name/kernel" | cut -f1), initrd $(du -h "$CACHE/vm/$name/initrd.cpio" | cut -f1)"
}

# The guest's /init (busybox sh). Its parameters come on the kernel command line:
# ferry.ip=A.B.C.D/24 ferry.port=N. "FERRY-VM READY" on the console once the echo service listens.
write_guest_init() {
	cat >"$1" <<'INIT'
#!/bin/sh
PATH=/sbin:/bin:/usr/sbin:/usr/bin
export PATH
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
ip=; port=7000
for w in $(cat /proc/cmdline); do
	case "$w" in
	ferry.ip=*) ip=${w#ferry.ip=} ;;
	ferry.port=*) port=${w#ferry.port=} ;;
	esac
done
KVER=$(cat /rig/kver)
for m in $(cat /rig/modules.order); do
	insmod "/lib/modules/$KVER/$m" || echo "FERRY-VM FAILED insmod $m"
done
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
ip link set lo up
ip link set eth0 up
ip addr add "$ip" dev eth0 || echo "FERRY-VM FAILED ip addr add $ip"
echo_server "$port" &
n=0
while ! netstat -ltn 2>/dev/null | grep -q ":$port " && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
echo "FERRY-VM READY $ip port $port"
while :; do sleep 3600; done
INIT
	chmod 755 "$1"
}

# ---------------------------------------------------------------------------------------------
# Network

ns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$1"; }

cmd_down() {
	local ns pid
	for ns in "${P}client" "${P}acc" "${P}br"; do
		if ns_exists "$ns"; then
			for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
			ip netns del "$ns" 2>/dev/null || true
		fi
	done
}

cmd_check() {
	if [ "$(id -u)" -ne 0 ]; then
		echo "SKIP: the VM rig needs root (network namespaces, taps)"
		exit 77
	fi
	if ! ip netns add "${P}probe" 2>/dev/null; then
		echo "SKIP: 'ip netns add' is not permitted here"
		exit 77
	fi
	ip netns del "${P}probe"
	[ -c /dev/net/tun ] || { echo "SKIP: no /dev/net/tun"; exit 77; }
}

cmd_up() {
	local n=1 acc="" i ns
	while [ $# -gt 0 ]; do
		case "$1" in
		--acc) acc=1 ;;
		*) n=$1 ;;
		esac
		shift
	done
	cmd_check
	cmd_down
	ip netns add "${P}br"
	ip netns add "${P}client"
	[ -n "$acc" ] && ip netns add "${P}acc"
	for ns in "${P}br" "${P}client" ${acc:+"${P}acc"}; do
		ip -n "$ns" link set lo up
		ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
	done
	ip -n "${P}br" link add br0 type bridge stp_state 0 forward_delay 0
	ip -n "${P}br" link set br0 up
	ip link add pc netns "${P}br" type veth peer name c0 netns "${P}client"
	ip -n "${P}br" link set pc master br0
	ip -n "${P}br" link set pc up
	ip -n "${P}client" addr add "$CLIENT_IP/24" dev c0
	ip -n "${P}client" link set c0 up
	if [ -n "$acc" ]; then
		# The accept node's port (ferry-wake on net_af_packet, no IP), as in tests/rigs/wake.
		# TX checksum offload stays on (the default): ferry-wake must complete SYN checksums.
		ip link add pa netns "${P}br" type veth peer name acc0 netns "${P}acc"
		ip -n "${P}br" link set pa master br0
		ip -n "${P}br" link set pa up
		ip -n "${P}acc" link set acc0 address "$ACC_MAC"
		ip -n "${P}acc" link set acc0 up
	fi
	for i in $(seq 0 $((n - 1))); do
		# Persistent: it outlives the QEMU process, so a resumed guest finds its port unchanged.
		ip -n "${P}br" tuntap add dev "vt$i" mode tap
		ip -n "${P}br" link set "vt$i" master br0
		ip -n "${P}br" link set "vt$i" up
	done
}

cmd_qemu_args() {	# index dir
	local i=$1 dir=$2
	[ -n "${IMAGE:-}" ] || cmd_prepare
	printf '%s\n' ip netns exec "${P}br" qemu-system-x86_64 -accel tcg -machine pc -smp 1 \
		-nodefaults -no-user-config -display none -no-reboot -name "ferry-vm$i" \
		-kernel "$IMAGE/kernel" -initrd "$IMAGE/initrd.cpio" \
		-append "console=ttyS0 panic=-1 quiet ipv6.disable=1 ferry.ip=$(guest_ip "$i")/24 ferry.port=$GUEST_PORT" \
		-serial "file:$dir/vm$i.console" \
		-netdev "tap,id=n0,ifname=vt$i,script=no,downscript=no" \
		-device "virtio-net-pci,netdev=n0,mac=52:54:00:97:00:$((20 + i)),romfile="
}

guest_ip() { echo "$NET.$((20 + $1))"; }

cmd_clean() {
	[ -d "$CACHE/vm" ] && rm -rf "$CACHE/vm"
	say "removed $CACHE/vm"
}

case "${1:-}" in
prepare) cmd_prepare ;;
image) cmd_prepare; echo "$IMAGE" ;;
up) shift; cmd_up "$@" ;;
down) cmd_down ;;
check) cmd_check ;;
qemu-args) shift; cmd_qemu_args "$@" ;;
guest-ip) guest_ip "$2" ;;
clean) cmd_clean ;;
*)
	sed -n '2,/^set -eu/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
