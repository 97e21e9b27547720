#!/bin/sh
# Install the Debian 12 packages Ferry needs, skipping those already present.
# Run as root (or with sudo). Safe to run again: it installs only what is missing.
set -eu

PACKAGES="
build-essential cmake pkg-config git python3
clang libclang-rt-14-dev
libibverbs-dev librdmacm-dev ibverbs-providers rdma-core
libnuma-dev libhwloc-dev
libjansson-dev libcmocka-dev libsodium-dev libinih-dev libmicrohttpd-dev
gnuplot-nox iproute2 procps util-linux
qemu-system-x86 cpio xz-utils binutils
dpdk-dev libdpdk-dev
"

missing=""
for p in $PACKAGES; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$status" in
	*"install ok installed"*) ;;
	*) missing="$missing $p" ;;
	esac
done

if [ -z "$missing" ]; then
	echo "deps: all $(echo $PACKAGES | wc -w) packages present"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing packages:$missing" >&2
	echo "deps: run as root (sudo $0) to install them" >&2
	exit 1
fi

echo "deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
