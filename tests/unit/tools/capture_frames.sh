#!/bin/sh
# Captures the real frames behind tests/unit/captured_frames.hpp and the
# fuzz seeds: busybox udhcpc/nslookup/ping/nc and the Linux stack in one
# network namespace, dnsmasq and the kernel in another, joined by a veth
# pair with checksum offload off (so every checksum on the wire is real).
#
# Needs root, iproute2, busybox, dnsmasq, dumpcap (wireshark-common) and
# python3. Writes OUTDIR/{all,opt,nock}.pcapng; turn them into the header
# with gen_captured_frames.py. A new capture has new ids, ports and
# sequence numbers, so the tests' expected values change with it.
set -eu
OUT=${1:-/tmp/usernet-capture}
A=usernet_cap_a B=usernet_cap_b
mkdir -p "$OUT"
cleanup() {
    [ -f "$OUT/dnsmasq.pid" ] && kill "$(cat "$OUT/dnsmasq.pid")" 2>/dev/null || true
    ip netns del $A 2>/dev/null || true
    ip netns del $B 2>/dev/null || true
}
trap cleanup EXIT
cleanup
ip netns add $A
ip netns add $B
ip link add vA type veth peer name vB
ip link set vA netns $A
ip link set vB netns $B
ip -n $A link set vA address 52:54:00:12:34:56
ip -n $B link set vB address 52:55:0a:00:02:02
for ns in $A $B; do ip -n $ns link set lo up; done
ip -n $A link set vA up
ip -n $B link set vB up
# ethtool -K IF tx off tso off gso off, without needing ethtool.
csum_off='
import array, fcntl, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for cmd in (0x1f, 0x24, 0x17):  # ETHTOOL_STSO, ETHTOOL_SGSO, ETHTOOL_STXCSUM
    ev = array.array("B", struct.pack("II", cmd, 0))
    fcntl.ioctl(s, 0x8946, struct.pack("16sQ", sys.argv[1].encode(), ev.buffer_info()[0]))
'
ip netns exec $A python3 -c "$csum_off" vA
ip netns exec $B python3 -c "$csum_off" vB
ip -n $B addr add 10.0.2.2/24 dev vB

capture() {  # name, then the commands run while capturing
    name=$1; shift
    ip netns exec $B dumpcap -q -i vB -w "$OUT/$name.pcapng" 2>/dev/null &
    cap=$!
    sleep 1.5
    "$@"
    sleep 1
    kill $cap
    wait $cap 2>/dev/null || true
}

main_capture() {
    ip netns exec $B dnsmasq --no-resolv --no-hosts --interface=vB --bind-interfaces \
        --dhcp-range=10.0.2.15,10.0.2.50,1h --dhcp-option=option:dns-server,10.0.2.2 \
        --address=/example.com/93.184.216.34 \
        --address=/example.com/2606:2800:220:1:248:1893:25c8:1946 \
        --pid-file="$OUT/dnsmasq.pid" --log-facility="$OUT/dnsmasq.log"
    sleep 0.5
    ip netns exec $A timeout 10 busybox udhcpc -i vA -n -q -f -x hostname:guest -s /bin/true
    ip -n $A addr add 10.0.2.15/24 dev vA
    ip netns exec $A busybox nslookup -type=a example.com 10.0.2.2 >/dev/null
    ip netns exec $A busybox nslookup -type=aaaa example.com 10.0.2.2 >/dev/null
    ip netns exec $A busybox ping -c1 -s 56 10.0.2.2 >/dev/null
    ip netns exec $A busybox ping -c1 -s 3000 10.0.2.2 >/dev/null
    ip netns exec $B timeout 5 busybox nc -l -p 8080 >/dev/null &
    sleep 0.3
    echo hello-usernet | ip netns exec $A timeout 3 busybox nc 10.0.2.2 8080 || true
    ip netns exec $A timeout 2 busybox nc 10.0.2.2 9 </dev/null || true
}
capture all main_capture

# A datagram whose IPv4 header carries NOP + Record Route (IHL 8).
capture opt ip netns exec $A python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, bytes([1, 7, 11, 4] + [0] * 8))
s.sendto(b"usernet-opts", ("10.0.2.2", 5353))'

# A datagram sent with SO_NO_CHECK (11): UDP checksum 0.
capture nock ip netns exec $A python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 11, 1)
s.sendto(b"nocsum", ("10.0.2.2", 7777))'

echo "captures in $OUT"
