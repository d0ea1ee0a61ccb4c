#!/bin/sh
# Build a bootable test guest for usernet's QEMU tests from what Debian's
# packages installed on this machine -- no downloads:
#   OUTDIR/vmlinuz    the Debian kernel (linux-image-amd64), copied from /boot
#   OUTDIR/initrd.gz  initramfs (cpio newc, gzip): busybox, the NIC drivers'
#                     modules (virtio_net, ne2k-pci, pcnet32, e100, with their dependencies
#                     from modules.dep, decompressed) and /init
#   OUTDIR/stamp      inputs' fingerprint: the build is skipped when unchanged
#
# /init mounts proc/sys/dev, loads the modules, runs udhcpc on eth0, fetches
# http://10.0.2.2:<un.port>/<un.file> with wget, prints markers on the serial
# console (console=ttyS0) and powers off:
#   UN-INIT <uptime>                     /init started
#   UN-LEASE ip=.. mask=.. router=.. dns=..
#   UN-SHA256 <hex> <bytes>              of the downloaded file
#   UN-UPLOAD <hex> <bytes>              the server's sha256 and length of the
#                                        download's base64 (76-column lines),
#                                        posted back (un.upload)
#   UN-PEER-OK|UN-PEER-FAIL <ip>         for each address in un.ping=A,B
#   UN-DONE rc=<n> t=<uptime>            last line before poweroff
# Kernel command-line knobs: un.port=P un.file=F (the download),
# un.dltime=S (give each download and upload S seconds, default 100, for a
# slow line's long download), un.ping=A,B
# (ping peers on the LAN after the lease, retrying for a minute),
# un.linger=S (stay up S seconds before poweroff, for peers to reach it),
# un.upload (POST the downloaded file back, base64-encoded since busybox
# wget posts a file as a C string, to the same server, which answers its
# sha256: tests/e2e/servers.py http),
# un.shell (instead of powering off, print UN-SHELL and run a shell on the
# console, for a test to drive).
#
# Usage: build-guest.sh OUTDIR
# Environment: USERNET_KERNEL=/boot/vmlinuz-X to choose a kernel (default:
# the newest /boot/vmlinuz-* that has /lib/modules/<version>/modules.dep).
# USERNET_GUEST_SERIAL=1 builds the serial-line variant (give it its own
# OUTDIR): it adds pppd (apt's ppp) and slattach (net-tools) with their
# libraries and the ppp_async, ppp_generic, slhc and slip modules; with
# un.ppp on the command line /init runs pppd on ttyS1 (address, route and
# DNS by IPCP), with un.slip=ADDR it attaches SLIP on ttyS1 with that
# address (peer 10.0.2.2, DNS 10.0.2.3), instead of DHCP on eth0. Then:
#   UN-LINK ppp|slip ip=.. peer=.. dns=..   the link is up
#   UN-RESOLVE <name> <address>            un.host=NAME resolved by DNS
# and the download goes to http://<un.host>:<un.port>/<un.file>.
# With un.host6=ADDR the guest then waits for an IPv6 address from SLAAC
# (the kernel's own, from the router advertisements) and fetches the file
# again from http://[ADDR]:<un.port>/<un.file>:
#   UN-SLAAC <address> route=<default route>
#   UN-SHA256-6 <hex> <bytes>
# For a guest of another architecture (tests/v86/build-guest-i386.sh, from
# packages unpacked with dpkg -x): USERNET_MODROOT=DIR (modules under
# DIR/lib/modules), USERNET_BUSYBOX=PATH, USERNET_BUSYBOX_LIST=CMD (prints
# its applets, when that busybox cannot run here), USERNET_MODULES="..."
# (the drivers to load).
set -eu
SERIAL=${USERNET_GUEST_SERIAL:-}

OUT=${1:?usage: build-guest.sh OUTDIR}
SELF=$(readlink -f "$0")

# --- the kernel -----------------------------------------------------------
KERNEL=${USERNET_KERNEL:-}
if [ -z "$KERNEL" ]; then
    for k in $(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V -r); do
        v=${k#/boot/vmlinuz-}
        if [ -f "/lib/modules/$v/modules.dep" ]; then KERNEL=$k; break; fi
    done
fi
if [ -z "$KERNEL" ] || [ ! -r "$KERNEL" ]; then
    echo "build-guest: no readable /boot/vmlinuz-* with modules (apt-get install linux-image-amd64)" >&2
    exit 2
fi
KVER=$(basename "$KERNEL")
KVER=${KVER#vmlinuz-}
MODDIR=${USERNET_MODROOT:-}/lib/modules/$KVER
[ -f "$MODDIR/modules.dep" ] || { echo "build-guest: $MODDIR/modules.dep missing (apt-get install linux-image-amd64)" >&2; exit 2; }

# --- busybox --------------------------------------------------------------
BUSYBOX=${USERNET_BUSYBOX:-}
if [ -z "$BUSYBOX" ]; then
    for b in /bin/busybox /usr/bin/busybox /usr/lib/busybox-static/busybox; do
        if [ -x "$b" ]; then BUSYBOX=$b; break; fi
    done
fi
[ -n "$BUSYBOX" ] || { echo "build-guest: busybox not found (apt-get install busybox)" >&2; exit 2; }
BUSYBOX=$(readlink -f "$BUSYBOX")
bb_list() { if [ -n "${USERNET_BUSYBOX_LIST:-}" ]; then $USERNET_BUSYBOX_LIST; else "$BUSYBOX" --list; fi; }
for applet in sh mount insmod udhcpc wget sha256sum ip poweroff; do
    bb_list | grep -qx "$applet" || { echo "build-guest: $BUSYBOX lacks $applet (apt-get install busybox)" >&2; exit 2; }
done

# --- modules: wanted drivers and their dependencies, dependencies first --------
WANT=${USERNET_MODULES:-"virtio_pci virtio_net ne2k-pci pcnet32 e100"}
[ -n "$SERIAL" ] && WANT="$WANT ppp_async slip"
SERIAL_BINS=""
if [ -n "$SERIAL" ]; then
    for b in /usr/sbin/pppd /usr/sbin/slattach; do
        [ -x "$b" ] || { echo "build-guest: $b missing (apt-get install ppp net-tools)" >&2; exit 2; }
    done
    SERIAL_BINS="/usr/sbin/pppd /usr/sbin/slattach"
fi
dep_of() {  # module path relative to MODDIR for a module name
    awk -F: -v n="$1" '{ p=$1; b=p; sub(/.*\//, "", b); sub(/\.ko(\.(xz|zst|gz))?$/, "", b);
        gsub(/-/, "_", b); m=n; gsub(/-/, "_", m); if (b == m) { print p; exit } }' "$MODDIR/modules.dep"
}
ORDER=""
add_module() {  # $1: path relative to MODDIR; appends its deps then itself to ORDER
    case " $ORDER " in *" $1 "*) return 0;; esac
    deps=$(awk -F: -v p="$1" '$1 == p { print $2; exit }' "$MODDIR/modules.dep")
    for d in $deps; do add_module "$d"; done
    case " $ORDER " in *" $1 "*) return 0;; esac
    ORDER="$ORDER $1"
}
for m in $WANT; do
    p=$(dep_of "$m")
    if [ -z "$p" ]; then
        # built into the kernel? then there is nothing to load
        if grep -q "/$(echo "$m" | tr - _)\.ko\|/$m\.ko" "$MODDIR/modules.builtin" 2>/dev/null; then continue; fi
        echo "build-guest: module $m not found in $MODDIR" >&2; exit 2
    fi
    add_module "$p"
done

# --- cache ------------------------------------------------------------------
FP=$( {
    cat "$SELF"
    echo "serial=$SERIAL"
    ls -l --time-style=+%s "$KERNEL" "$BUSYBOX" $SERIAL_BINS
    for p in $ORDER; do ls -l --time-style=+%s "$MODDIR/$p"; done
    for f in "$BUSYBOX" $SERIAL_BINS; do ldd "$f" 2>/dev/null; done | grep -o '/[^ ]*' | sort -u |
        while read -r l; do ls -lL --time-style=+%s "$l"; done
} | sha256sum | cut -d' ' -f1)
if [ -f "$OUT/stamp" ] && [ "$(cat "$OUT/stamp")" = "$FP" ] && [ -f "$OUT/vmlinuz" ] && [ -f "$OUT/initrd.gz" ]; then
    echo "build-guest: $OUT is up to date"
    exit 0
fi

mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/un-guest-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM
R=$WORK/root
mkdir -p "$R/bin" "$R/sbin" "$R/etc" "$R/proc" "$R/sys" "$R/dev" "$R/tmp" "$R/run" "$R/lib/modules"

cp "$BUSYBOX" "$R/bin/busybox"
# a dynamically linked busybox (Debian's "busybox") needs its libraries
for l in $(ldd "$BUSYBOX" 2>/dev/null | grep -o '/[^ ]*'); do
    mkdir -p "$R$(dirname "$l")"
    cp -L "$l" "$R$l"
done
for b in $SERIAL_BINS; do
    cp "$b" "$R/sbin/"
    for l in $(ldd "$b" 2>/dev/null | grep -o '/[^ ]*'); do
        mkdir -p "$R$(dirname "$l")"
        [ -e "$R$l" ] || cp -L "$l" "$R$l"
    done
done
if [ -n "$SERIAL" ]; then
    mkdir -p "$R/etc/ppp" "$R/var/lock" "$R/var/log"
    : > "$R/etc/ppp/options"
    ln -s /run "$R/var/run"
fi
for applet in $(bb_list); do
    [ "$applet" = busybox ] && continue
    ln -sf busybox "$R/bin/$applet"
done

: > "$R/modules.order"
for p in $ORDER; do
    name=$(basename "$p")
    case "$name" in
        *.ko.xz)  xz -dc "$MODDIR/$p" > "$R/lib/modules/${name%.xz}";  name=${name%.xz} ;;
        *.ko.zst) zstd -qdc "$MODDIR/$p" > "$R/lib/modules/${name%.zst}"; name=${name%.zst} ;;
        *.ko.gz)  gzip -dc "$MODDIR/$p" > "$R/lib/modules/${name%.gz}"; name=${name%.gz} ;;
        *.ko)     cp "$MODDIR/$p" "$R/lib/modules/$name" ;;
        *) echo "build-guest: unknown module format $p" >&2; exit 2 ;;
    esac
    echo "$name" >> "$R/modules.order"
done

cat > "$R/udhcpc.sh" <<'EOF'
#!/bin/sh
case "$1" in
  deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
    if [ -n "$dns" ]; then
        mkdir -p /etc
        for d in $dns; do echo "nameserver $d"; done > /etc/resolv.conf
    fi
    echo "UN-LEASE ip=$ip mask=$mask router=$router dns=$dns serverid=$serverid" ;;
esac
exit 0
EOF
chmod 755 "$R/udhcpc.sh"

cat > "$R/init" <<'EOF'
#!/bin/sh
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
up() { cut -d' ' -f1 /proc/uptime; }
echo; echo "UN-INIT $(up)"
for m in $(cat /modules.order); do
    insmod "/lib/modules/$m" || echo "UN-WARN insmod $m failed"
done
PORT=; FILE=file; DLTIME=100; SIZE=; PINGS=; LINGER=0; SHELL_AFTER=; LINK=; SLIP_ADDR=; HOST=10.0.2.2; UPLOAD=
HOST6=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        un.ppp) LINK=ppp ;;
        un.slip=*) LINK=slip; SLIP_ADDR=${arg#un.slip=} ;;
        un.host=*) HOST=${arg#un.host=} ;;
        un.port=*) PORT=${arg#un.port=} ;;
        un.file=*) FILE=${arg#un.file=} ;;
        un.dltime=*) DLTIME=${arg#un.dltime=} ;;
        un.ping=*) PINGS=$(echo "${arg#un.ping=}" | tr , ' ') ;;
        un.linger=*) LINGER=${arg#un.linger=} ;;
        un.shell) SHELL_AFTER=1 ;;
        un.upload) UPLOAD=1 ;;
        un.host6=*) HOST6=${arg#un.host6=} ;;
    esac
done
ip link set lo up
# after the link is up: ping the gateway and peers, resolve, download
after_link() {
    if ping -c 1 -W 5 10.0.2.2 >/dev/null 2>&1; then echo "UN-PING-OK"; else echo "UN-PING-FAIL"; fi
    for p in $PINGS; do
        # a peer may still be booting: try for up to a minute
        k=0; ok=
        while [ $k -lt 30 ]; do
            if ping -c 1 -W 2 "$p" >/dev/null 2>&1; then ok=1; break; fi
            k=$((k + 1))
        done
        if [ -n "$ok" ]; then echo "UN-PEER-OK $p"; else echo "UN-PEER-FAIL $p"; rc=4; fi
    done
    if [ "$HOST" != 10.0.2.2 ]; then
        a=$(nslookup "$HOST" 2>/dev/null | sed -n '/^Name:/,$ s/^Address[^0-9]*\([0-9.]*\).*/\1/p' | head -n 1)
        echo "UN-RESOLVE $HOST ${a:-none}"
    fi
    if [ -n "$PORT" ]; then
        t0=$(up)
        # (no wget -T: it segfaults in Debian's busybox 1.35; use timeout instead)
        if timeout "$DLTIME" wget -O /tmp/dl "http://$HOST:$PORT/$FILE" 2>/tmp/wget.err; then
            echo "UN-SHA256 $(sha256sum /tmp/dl | cut -d' ' -f1) $(wc -c < /tmp/dl) t0=$t0 t1=$(up)"
            if [ -n "$UPLOAD" ]; then
                t0=$(up)
                base64 /tmp/dl > /tmp/dl.b64
                if timeout "$DLTIME" wget -O /tmp/up --post-file=/tmp/dl.b64 "http://10.0.2.2:$PORT/upload" 2>/tmp/wget.err; then
                    echo "UN-UPLOAD $(cat /tmp/up) t0=$t0 t1=$(up)"
                else
                    rc=5; echo "UN-ERROR upload failed: $(tr "\n" " " < /tmp/wget.err)"
                fi
            fi
        else
            rc=3; echo "UN-ERROR wget failed: $(tr "\n" " " < /tmp/wget.err)"
        fi
    fi
    if [ -n "$HOST6" ] && [ -n "$PORT" ]; then
        k=0; a6=
        while [ $k -lt 100 ] && [ -z "$a6" ]; do
            a6=$(ip -6 addr show dev eth0 scope site 2>/dev/null | grep -v tentative | sed -n 's/.*inet6 \([0-9a-f:]*\)\/.*/\1/p' | head -n 1)
            [ -z "$a6" ] && a6=$(ip -6 addr show dev eth0 scope global 2>/dev/null | grep -v tentative | sed -n 's/.*inet6 \([0-9a-f:]*\)\/.*/\1/p' | head -n 1)
            [ -z "$a6" ] && { sleep 0.1; k=$((k + 1)); }
        done
        echo "UN-SLAAC ${a6:-none} route=$(ip -6 route | sed -n 's/^default //p' | head -n 1 | tr ' ' _)"
        if timeout "$DLTIME" wget -O /tmp/dl6 "http://[$HOST6]:$PORT/$FILE" 2>/tmp/wget.err; then
            echo "UN-SHA256-6 $(sha256sum /tmp/dl6 | cut -d' ' -f1) $(wc -c < /tmp/dl6)"
        else
            rc=6; echo "UN-ERROR wget over IPv6 failed: $(tr "\n" " " < /tmp/wget.err)"
        fi
    fi
}
rc=0
if [ "$LINK" = ppp ]; then
    # the far end hands out address, route and DNS (IPCP, RFC 1877)
    if pppd /dev/ttyS1 115200 noauth local nocrtscts noipdefault usepeerdns defaultroute \
            updetach maxfail 1 logfd 2 lcp-echo-interval 0 2>&1; then
        [ -f /etc/ppp/resolv.conf ] && cp /etc/ppp/resolv.conf /etc/resolv.conf
        a=$(ip -4 addr show dev ppp0 | sed -n 's/.*inet \([0-9.]*\) peer \([0-9.]*\).*/\1 \2/p')
        echo "UN-LINK ppp ip=${a% *} peer=${a#* } dns=$(sed -n 's/^nameserver //p' /etc/resolv.conf | tr '\n' ',') route=$(ip route | sed -n 's/^default //p' | head -n 1 | tr ' ' _)"
        after_link
    else
        rc=2; echo "UN-ERROR pppd failed"
    fi
elif [ "$LINK" = slip ]; then
    slattach -p slip -s 115200 /dev/ttyS1 &
    n=0
    while [ ! -e /sys/class/net/sl0 ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
    if [ -e /sys/class/net/sl0 ]; then
        ip addr add "$SLIP_ADDR" peer 10.0.2.2 dev sl0
        ip link set sl0 mtu 1500 up
        ip route add default dev sl0
        echo "nameserver 10.0.2.3" > /etc/resolv.conf
        echo "UN-LINK slip ip=$SLIP_ADDR peer=10.0.2.2 dns=10.0.2.3"
        after_link
    else
        rc=2; echo "UN-ERROR slattach made no sl0"
    fi
else
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
if [ ! -e /sys/class/net/eth0 ]; then
    echo "UN-ERROR no eth0"; ls /sys/class/net
    echo "UN-DONE rc=10 t=$(up)"; poweroff -f
fi
echo "UN-NIC $(basename "$(readlink /sys/class/net/eth0/device/driver)") $(cat /sys/class/net/eth0/address)"
if udhcpc -i eth0 -s /udhcpc.sh -f -q -n -t 10 -T 2; then
    echo "UN-DHCP-OK t=$(up)"
    after_link
else
    rc=2; echo "UN-ERROR udhcpc failed"
fi
fi
if [ -n "$SHELL_AFTER" ]; then
    # The test drives the guest: commands on the console, one per line;
    # each ends with a marker line the test waits for.
    echo "UN-SHELL rc=$rc t=$(up)"
    exec setsid cttyhack sh
fi
[ "$LINGER" -gt 0 ] 2>/dev/null && { echo "UN-LINGER $LINGER"; sleep "$LINGER"; }
echo "UN-DONE rc=$rc t=$(up)"
sync
poweroff -f
EOF
chmod 755 "$R/init"

(cd "$R" && find . | sort | cpio -o -H newc --quiet) | gzip -9 > "$WORK/initrd.gz"
cp "$KERNEL" "$WORK/vmlinuz"
mv "$WORK/initrd.gz" "$OUT/initrd.gz"
mv "$WORK/vmlinuz" "$OUT/vmlinuz"
echo "kernel=$KVER" > "$OUT/info"
echo "busybox=$BUSYBOX" >> "$OUT/info"
echo "modules=$(tr '\n' ' ' < "$R/modules.order")" >> "$OUT/info"
echo "$FP" > "$OUT/stamp"
echo "build-guest: built $OUT (kernel $KVER; modules: $(tr '\n' ' ' < "$R/modules.order"))"
