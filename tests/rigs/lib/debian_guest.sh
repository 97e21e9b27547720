# shellcheck shell=bash
# tests/rigs/lib/debian_guest.sh — shell functions shared by the QEMU guest rigs (tests/rigs/roce,
# tests/rigs/vm): host packages, Debian's own kernel taken out of its .deb (never installed on the
# host), an uncompressed PVH vmlinux cut out of the bzImage, and a set of kernel modules with
# their dependencies in load order. Sourced by bash scripts (`. "$RIG_LIB/debian_guest.sh"`).
#
# The caller may set before sourcing: RIG_LOG_PREFIX (default "rig"), RIG_DIE_STATUS (default 125).

say() { echo "${RIG_LOG_PREFIX:-rig}: $*" >&2; }
die() { echo "${RIG_LOG_PREFIX:-rig}: error: $*" >&2; exit "${RIG_DIE_STATUS:-125}"; }
now() { echo "${EPOCHREALTIME/,/.}"; }                     # seconds, microsecond resolution
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
is_elf() { [ "$(head -c 4 "$1" 2>/dev/null | od -An -c | tr -d ' ')" = '177ELF' ]; }

# ---------------------------------------------------------------------------------------------
# Host packages
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

ensure_host_packages() {	# packages...
	local missing="" p
	for p in "$@"; do pkg_installed "$p" || missing="$missing $p"; done
	[ -z "$missing" ] && return 0
	[ "$(id -u)" -eq 0 ] || die "missing Debian packages:$missing (run as root, or: apt-get install$missing)"
	say "installing host packages:$missing"
	export DEBIAN_FRONTEND=noninteractive
	# shellcheck disable=SC2086
	if ! apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1; then
		apt-get update -qq
		# shellcheck disable=SC2086
		apt-get install -y -qq --no-install-recommends $missing >/dev/null
	fi
}

# ---------------------------------------------------------------------------------------------
# Package versions (the content address of a cached image)

# The kernel package linux-image-amd64 depends on, e.g. linux-image-6.1.0-56-amd64.
resolve_kernel_pkg() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}

# "pkg=version" for each package (the candidate apt-get download will fetch).
resolve_versions() {	# packages...
	apt-cache policy "$@" 2>/dev/null | awk '
		/^[^ ]/ { p = $1; sub(/:$/, "", p); sub(/:amd64$/, "", p); next }
		$1 == "Candidate:" { print p "=" $2 }'
}

# apt-get download the exact "pkg=version"s into DIR (nothing is installed).
download_debs() {	# dir pkg=version...
	local dir=$1; shift
	(cd "$dir" && apt-get download -q -o APT::Sandbox::User=root "$@" >download.log 2>&1) ||
		die "apt-get download failed: $(tail -3 "$dir/download.log")"
}

# ---------------------------------------------------------------------------------------------
# Kernel

# Cut the xz-compressed vmlinux out of a bzImage (what the kernel's scripts/extract-vmlinux does).
extract_vmlinux() {	# bzImage out
	local off
	for off in $(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$1" | cut -d: -f1); do
		tail -c +$((off + 1)) "$1" | xz -dcq >"$2" 2>/dev/null || true	# trailing data: xz complains
		if is_elf "$2"; then return 0; fi
	done
	rm -f "$2"
	return 1
}

# QEMU boots an ELF vmlinux directly only if it carries the PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY = 18).
is_pvh() { readelf -n "$1" 2>/dev/null | grep -Eq 'Xen[[:space:]].*(0x00000012|PHYS32_ENTRY)'; }

# The kernel QEMU boots: the uncompressed vmlinux if it is PVH-bootable (~2x faster boot under
# TCG), else the bzImage. Writes OUTDIR/kernel and OUTDIR/kernel.type (vmlinux|bzImage).
install_guest_kernel() {	# unpacked-kernel-package-root kver outdir
	local bz="$1/boot/vmlinuz-$2" out=$3
	[ -f "$bz" ] || die "no /boot/vmlinuz-$2 in the kernel package"
	if extract_vmlinux "$bz" "$out/vmlinux" && is_pvh "$out/vmlinux"; then
		echo vmlinux >"$out/kernel.type"
		mv "$out/vmlinux" "$out/kernel"
	else
		say "warning: no PVH-bootable vmlinux in $bz; booting the bzImage (slower)"
		rm -f "$out/vmlinux"
		echo bzImage >"$out/kernel.type"
		cp "$bz" "$out/kernel"
	fi
}

# Copy MODULES and their dependencies (each .ko's modinfo "depends=") from the unpacked kernel
# package into ROOT/usr/lib/modules/KVER, and write ROOT/rig/modules.order (dependencies first,
# paths relative to the module directory) and ROOT/rig/kver. Sets GUEST_MODULE_ORDER (array).
install_guest_modules() {	# unpacked-kernel-package-root kver root modules...
	local kroot=$1 kver=$2 root=$3
	shift 3
	local moddir="$kroot/lib/modules/$kver" allmods
	[ -d "$moddir" ] || die "no /lib/modules/$kver in the kernel package"
	allmods=$(find "$moddir/kernel" -name '*.ko*')
	GUEST_MODULE_ORDER=()
	local -A modseen=()
	_modpath() {	# name -> path relative to $moddir
		local n=$1 alt=${1//_/-} p
		p=$(echo "$allmods" | grep -E "/($n|$alt)\.ko(\.[a-z]+)?$" | head -1)
		[ -n "$p" ] || die "kernel module $n not found in the kernel package"
		echo "${p#"$moddir"/}"
	}
	_addmod() {
		local n=$1 p deps dep
		[ -n "${modseen[$n]:-}" ] && return 0
		modseen[$n]=1
		p=$(_modpath "$n")
		case "$p" in *.ko) ;; *) die "compressed module $p: not supported (busybox insmod)" ;; esac
		deps=$(tr '\0' '\n' <"$moddir/$p" | sed -n 's/^depends=//p' | head -1 | tr ',' ' ')
		for dep in $deps; do _addmod "$dep"; done
		GUEST_MODULE_ORDER+=("$p")
	}
	local m
	for m in "$@"; do _addmod "$m"; done
	mkdir -p "$root/rig"
	for m in "${GUEST_MODULE_ORDER[@]}"; do
		mkdir -p "$root/usr/lib/modules/$kver/$(dirname "$m")"
		cp "$moddir/$m" "$root/usr/lib/modules/$kver/$m"
		echo "$m"
	done >"$root/rig/modules.order"
	echo "$kver" >"$root/rig/kver"
}
