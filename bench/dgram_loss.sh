#!/usr/bin/env bash
# Host->guest TCP over a datagram attachment, and what usernet dropped on
# the way: usernet --dgram (QEMU -netdev dgram's protocol, one frame per UDP
# datagram) with a namespace guest behind bench/tap_relay --dgram-udp --gro,
# RUNS iperf3 -R runs of SECS seconds in one usernet, then usernet's own
# counters from its exit log (--debug): frames its datagram ring dropped
# and the TCP translator's retransmissions. The tap_relay socket buffers
# are 4 MiB, so a drop here is usernet's, not the receiver's.
#
#   sudo bench/dgram_loss.sh [USERNET_BIN] [RUNS] [SECS]
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "bench: needs root (namespaces)" >&2; exit 1; }
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$here/build/usernet}
runs=${2:-5}
secs=${3:-4}
tmp=$(mktemp -d /tmp/un-dgloss.XXXXXX)
ns=usdgl$$
b="" r=""
cleanup() {
	for p in $(ip netns pids $ns 2>/dev/null); do kill "$p" 2>/dev/null || true; done
	[ -n "$r" ] && kill "$r" 2>/dev/null || true
	[ -n "$b" ] && kill "$b" 2>/dev/null || true
	wait 2>/dev/null || true
	ip netns del $ns 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
g++ -std=c++20 -O2 -o "$tmp/tap_relay" "$here/bench/tap_relay.cpp"
ip netns add $ns
port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
up=$(port) rp=$(port) ip=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" --debug --dgram "udp:127.0.0.1:$up,127.0.0.1:$rp" 2> "$tmp/usernet.log" & b=$!
sleep 0.3
"$tmp/tap_relay" --netns /run/netns/$ns --tap tap0 --mtu 1500 --addr 10.0.2.15/24 --gw 10.0.2.2 \
	--gro --dgram-udp "127.0.0.1:$rp,127.0.0.1:$up" & r=$!
sleep 0.5
echo "# $(basename "$0") $bin $runs $secs; $(date -u +%Y-%m-%dT%H:%M:%SZ); $("$bin" --version | head -1)"
for i in $(seq "$runs"); do
	iperf3 -s -p "$ip" -1 -D; sleep 0.3
	ip netns exec $ns iperf3 -c 10.0.2.2 -p "$ip" -t "$secs" -R > "$tmp/iperf.txt"
	echo "run $i: $(awk '/receiver/ {print $7, $8}' "$tmp/iperf.txt")"
done
kill "$b"; wait "$b" 2>/dev/null || true; b=""
grep -o "dgram udp [^ ]* closed: .*" "$tmp/usernet.log" | sed 's/^/usernet: /'
grep -o "retransmits RTO [0-9]* fast [0-9]*" "$tmp/usernet.log" | sed 's/^/usernet tcp: /'
