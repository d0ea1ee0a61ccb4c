#!/bin/sh
# Build the i386 guest v86 boots: Debian's 686 kernel (ne2k-pci and
# virtio-net as modules) and a static i386 busybox, from the .deb files
# scripts/install-deps.sh downloaded into tests/v86/debs/ (apt-get
# download; nothing is fetched here), unpacked with dpkg -x, then the same
# initramfs as the QEMU tests' (tests/qemu/build-guest.sh, told where the
# unpacked kernel, modules and busybox are).
#
# Usage: build-guest-i386.sh OUTDIR   (makes OUTDIR/vmlinuz, OUTDIR/initrd.gz)
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?usage: build-guest-i386.sh OUTDIR}
DEBS=${USERNET_I386_DEBS:-$HERE/debs}
KDEB=$(ls "$DEBS"/linux-image-*-686_*_i386.deb 2>/dev/null | sort -V | tail -n 1)
BDEB=$(ls "$DEBS"/busybox-static_*_i386.deb 2>/dev/null | sort -V | tail -n 1)
if [ -z "$KDEB" ] || [ -z "$BDEB" ]; then
    echo "build-guest-i386: no i386 kernel or busybox-static .deb in $DEBS (scripts/install-deps.sh downloads them)" >&2
    exit 2
fi
# The i386 busybox cannot run on every x86-64 kernel (no IA32 emulation):
# the host's busybox of the same Debian release lists the applets.
HOSTBB=
for b in /bin/busybox /usr/bin/busybox /usr/lib/busybox-static/busybox; do
    if [ -x "$b" ]; then HOSTBB=$b; break; fi
done
[ -n "$HOSTBB" ] || { echo "build-guest-i386: no host busybox to list applets (apt-get install busybox)" >&2; exit 2; }

ROOT=$OUT/i386-root
mkdir -p "$OUT"
want="$(basename "$KDEB") $(basename "$BDEB")"
if [ ! -f "$ROOT/.debs" ] || [ "$(cat "$ROOT/.debs")" != "$want" ]; then
    rm -rf "$ROOT"
    mkdir -p "$ROOT"
    dpkg -x "$KDEB" "$ROOT"
    dpkg -x "$BDEB" "$ROOT"
    KVER=$(ls "$ROOT/lib/modules")
    depmod -b "$ROOT" "$KVER"   # the package leaves modules.dep to its postinst
    echo "$want" > "$ROOT/.debs"
fi
KVER=$(ls "$ROOT/lib/modules")
USERNET_KERNEL=$ROOT/boot/vmlinuz-$KVER USERNET_MODROOT=$ROOT USERNET_BUSYBOX=$ROOT/bin/busybox \
USERNET_BUSYBOX_LIST="$HOSTBB --list" USERNET_MODULES="ne2k-pci virtio_pci virtio_net" \
    exec sh "$HERE/../qemu/build-guest.sh" "$OUT"
