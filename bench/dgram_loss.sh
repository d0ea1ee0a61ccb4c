#!/usr/bin/env bash
# Host->guest TCP over a datagram attachment, and what usernet dropped on
# the way: usernet --dgram (QEMU -netdev dgram's protocol, one frame per UDP
# datagram) with a namespace guest behind bench/tap_relay --dgram-udp --gro,
# RUNS iperf3 -R runs of SECS seconds in one usernet, then usernet's own
# counters from its exit log (--debug): frames its datagram ring dropped
# and the TCP translator's retransmissions. The tap_relay socket buffers
# are 4 MiB, so a drop here is usernet's, not the receiver's.
#
#   sudo [USERNET_BIN=build/usernet] bench/dgram_loss.sh [RUNS] [SECS]
set -euo pipefail
. "$(dirname "$0")/common.sh"
runs=${1:-5}
secs=${2:-4}
g++ -std=c++20 -O2 -o "$tmp/tap_relay" "$repo/bench/tap_relay.cpp"
ns=$tag-dgl
make_netns "$ns"
udp_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
up=$(udp_port) rp=$(udp_port) ip=$(free_port)
"$bin" --debug --dgram "udp:127.0.0.1:$up,127.0.0.1:$rp" 2> "$tmp/usernet.log" &
un=$!
track_pid $un
sleep 0.3
"$tmp/tap_relay" --netns "/run/netns/$ns" --tap tap0 --mtu 1500 --addr 10.0.2.15/24 --gw 10.0.2.2 \
	--gro --dgram-udp "127.0.0.1:$rp,127.0.0.1:$up" &
track_pid $!
sleep 0.5
echo "# $(basename "$0") $runs $secs, $bin; $(date -u +%Y-%m-%dT%H:%M:%SZ); $("$bin" --version | head -1)"
for i in $(seq "$runs"); do
	iperf3 -s -p "$ip" -1 -D
	sleep 0.3
	ip netns exec "$ns" iperf3 -c 10.0.2.2 -p "$ip" -t "$secs" -R > "$tmp/iperf.txt"
	echo "run $i: $(awk '/receiver/ {print $7, $8}' "$tmp/iperf.txt")"
done
stop_pid $un
grep -o "dgram udp [^ ]* closed: .*" "$tmp/usernet.log" | sed 's/^/usernet: /'
grep -o "retransmits RTO [0-9]* fast [0-9]*" "$tmp/usernet.log" | sed 's/^/usernet tcp: /'
