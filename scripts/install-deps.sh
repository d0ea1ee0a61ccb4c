#!/bin/sh
# Install (idempotently) everything usernet's build and tests need, from
# Debian's packages.  Fast when everything is already there: it checks with
# dpkg first and runs apt-get (update once, then install) only for what is
# missing.  Needs root (or sudo).
#
#   scripts/install-deps.sh            build + test dependencies
#   scripts/install-deps.sh --build    build dependencies only
set -eu

BUILD_PKGS="cmake ninja-build g++ clang libgtest-dev libgmock-dev libcli11-dev nlohmann-json3-dev
libspdlog-dev libfmt-dev libclang-rt-14-dev pkg-config libmnl-dev"

# Tests (every tool they run; tests/e2e/netlab.py's PACKAGE_OF maps each to
# its package here, and tests/e2e/test_netlab.py checks the two agree -- under
# CI=true a missing one fails the tests instead of skipping them):
#  - iproute2 (ip netns, ss), procps (sysctl), python3 (the harness; stdlib only)
#  - util-linux (setpriv: usernet without CAP_NET_RAW in test_nat_extra)
#  - busybox: udhcpc, ping, nslookup, wget in the guests and the QEMU initramfs.
#    busybox and busybox-static conflict; either one will do (see below).
#  - udhcpc: the standalone DHCP client package (busybox's, as /usr/sbin/udhcpc)
#  - curl, dnsutils (dig), dnsmasq-base (the upstream DNS server in test_dns)
#  - tshark (reads --pcap output), iperf3, socat, passt and slirp4netns (comparisons)
#  - ppp, net-tools: pppd and slattach inside the serial-line QEMU guest
#  - qemu-system-x86, linux-image-amd64, cpio, gzip, xz-utils, zstd: the QEMU guest
#  - vde2 (vde_plug2tap) and vdeplug (vde_plug with vde:// and tap:// plugs):
#    real VDE clients of --vde
#  - bochs, bochsbios, vgabios, bochs-term (the `term` display), and isolinux,
#    syslinux-common, xorriso (its boot CD-ROM): the Bochs guest
TEST_PKGS="iproute2 procps python3 busybox udhcpc curl dnsutils dnsmasq-base iperf3 tshark
qemu-system-x86 linux-image-amd64 cpio gzip xz-utils zstd socat passt slirp4netns util-linux
bochs bochsbios vgabios bochs-term isolinux syslinux-common xorriso
vde2 vdeplug ppp net-tools"

PKGS="$BUILD_PKGS"
case "${1:-}" in
    --build) ;;
    ""|--all) PKGS="$BUILD_PKGS $TEST_PKGS" ;;
    *) echo "usage: $0 [--build|--all]" >&2; exit 2 ;;
esac

SUDO=
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "install-deps: needs root" >&2; exit 1
    fi
fi

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing=""
for p in $PKGS; do
    # busybox-static provides everything we use from busybox, and conflicts with it
    if [ "$p" = busybox ] && installed busybox-static; then continue; fi
    installed "$p" || missing="$missing $p"
done

if [ -z "$missing" ]; then
    echo "install-deps: all packages already installed"
    exit 0
fi

echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture; answer no, without a prompt
echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold $missing
echo "install-deps: done"
