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
libspdlog-dev libfmt-dev libclang-rt-14-dev pkg-config libmnl-dev libwslay-dev nettle-dev libslirp-dev"

# Tests (every tool they run; tests/e2e/netlab.py's PACKAGE_OF maps each to
# its package here, and tests/e2e/test_netlab.py checks the two agree -- under
# CI=true a missing one fails the tests instead of skipping them):
#  - iproute2 (ip netns, ss), procps (sysctl), python3 (the harness; stdlib only)
#  - util-linux (setpriv: usernet without CAP_NET_RAW in test_nat_extra; unshare: a
#    mount namespace without smbd in test_guestfwd)
#  - busybox: udhcpc, ping, nslookup, wget in the guests and the QEMU initramfs.
#    busybox and busybox-static conflict; either one will do (see below).
#  - udhcpc: the standalone DHCP client package (busybox's, as /usr/sbin/udhcpc)
#  - curl, dnsutils (dig), dnsmasq-base (the upstream DNS server in test_dns)
#  - ndisc6 (rdisc6: what a router advertisement carries, RDNSS included)
#  - isc-dhcp-client (dhclient -6: a DHCPv6 client)
#  - tshark (reads --pcap output), iperf3, socat, passt and slirp4netns (comparisons;
#    test_slirp4netns also runs slirp4netns on usernet's libslirp.so.0)
#  - podman, runc, crun: podman --network slirp4netns on usernet's libslirp.so.0,
#    as root (runc: crun refuses a hybrid cgroup hierarchy) and rootless (crun)
#  - ppp, net-tools: pppd and slattach inside the serial-line QEMU guest
#  - iptables: a guest firewall that rejects with ICMP (test_forward)
#  - bootpc: a BOOTP client (test_dhcp)
#  - qemu-system-x86, linux-image-amd64, cpio, gzip, xz-utils, zstd: the QEMU guest
#  - vde2 (vde_plug2tap) and vdeplug (vde_plug with vde:// and tap:// plugs):
#    real VDE clients of --vde
#  - bochs, bochsbios, vgabios, bochs-term (the `term` display), and isolinux,
#    syslinux-common, xorriso (its boot CD-ROM): the Bochs guest
#  - nodejs, npm: the WebSocket tests' client (the ws package) and v86 itself,
#    from tests/v86/package-lock.json (npm ci, below); seabios: v86's BIOS;
#    dpkg (dpkg -x) and kmod (depmod): unpacking v86's i386 guest
TEST_PKGS="iproute2 procps python3 busybox udhcpc curl dnsutils dnsmasq-base ndisc6 isc-dhcp-client atftp tftp-hpa samba smbclient iperf3 tshark
qemu-system-x86 ipxe-qemu linux-image-amd64 cpio gzip xz-utils zstd socat passt slirp4netns podman runc crun util-linux
bochs bochsbios vgabios bochs-term isolinux syslinux-common xorriso
vde2 vdeplug ppp net-tools iptables bootpc nodejs npm seabios dpkg kmod"

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

# apt-get update, again after a pause when it fails: a mirror in the middle
# of a sync serves index files of the wrong size for a minute or so ("Mirror
# sync in progress?"). After the last try it goes on with the lists it has;
# an install or download that needs a missing one then fails and says which.
apt_update() {
    for try in 1 2 3 4; do
        $SUDO apt-get update -q && return 0
        [ "$try" = 4 ] && break
        echo "install-deps: apt-get update failed (try $try of 4); again in $((try * 20)) s" >&2
        sleep $((try * 20))
    done
    echo "install-deps: apt-get update kept failing; going on with the package lists there are" >&2
}

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing=""
for p in $PKGS; do
    # busybox-static provides everything we use from busybox, and conflicts with it
    if [ "$p" = busybox ] && installed busybox-static; then continue; fi
    # a nodejs built with its own npm (not Debian's) conflicts with Debian's npm
    if [ "$p" = npm ] && command -v npm >/dev/null 2>&1; then continue; fi
    installed "$p" || missing="$missing $p"
done

# After the packages: the npm packages of tests/v86 (ws, v86), at the
# versions package-lock.json pins, and the i386 guest v86 boots (a Debian
# 686 kernel with ne2k-pci, a static busybox), downloaded as .deb files
# into tests/v86/debs/ (tests/v86/build-guest-i386.sh unpacks them).
test_extras() {
    [ "$PKGS" = "$BUILD_PKGS" ] && return 0
    here=$(cd "$(dirname "$0")/.." && pwd)
    v86=$here/tests/v86
    if ! cmp -s "$v86/package-lock.json" "$v86/node_modules/.usernet-installed" 2>/dev/null; then
        echo "install-deps: npm ci in $v86"
        (cd "$v86" && npm ci --no-audit --no-fund --loglevel=error &&
            cp package-lock.json node_modules/.usernet-installed)
    fi
    if ! dpkg --print-foreign-architectures | grep -qx i386; then
        $SUDO dpkg --add-architecture i386
        apt_update
    fi
    if ls "$v86/debs/"linux-image-*-686_*_i386.deb >/dev/null 2>&1 &&
       ls "$v86/debs/"busybox-static_*_i386.deb >/dev/null 2>&1; then
        return 0
    fi
    kpkg=$(apt-cache depends linux-image-686 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    if [ -z "$kpkg" ]; then
        apt_update
        kpkg=$(apt-cache depends linux-image-686 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    fi
    kpkg=${kpkg%:i386}
    echo "install-deps: downloading $kpkg and busybox-static:i386 into $v86/debs"
    mkdir -p "$v86/debs"
    rm -f "$v86/debs/"*.deb
    (cd "$v86/debs" && apt-get download "$kpkg:i386" busybox-static:i386)
}

if [ -z "$missing" ]; then
    echo "install-deps: all packages already installed"
    test_extras
    exit 0
fi

echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture; answer no, without a prompt
echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
apt_update
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold $missing
test_extras
echo "install-deps: done"
