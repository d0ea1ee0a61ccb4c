#!/usr/bin/env bash
# A/B of two usernet binaries on the TAP path (--netns, offload on): one
# iperf3 TCP stream guest->host (to the gateway, 10.0.2.2) and host->guest
# (through a -t forward), 4 s each, alternating the binaries.
#
#   sudo bench/tap_ab.sh OLD_BIN NEW_BIN [ROUNDS]
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "bench: needs root (namespaces)" >&2; exit 1; }
one() {
	local bin=$1 ns=tab$$ b r1 r2
	ip netns add $ns
	"$bin" --quiet --netns /run/netns/$ns --config-net -t 5321 2>/dev/null & b=$!
	for _ in $(seq 100); do ip netns exec $ns ip route | grep -q default && break; sleep 0.05; done
	iperf3 -s -p 5322 -1 -D; sleep 0.3
	r1=$(ip netns exec $ns iperf3 -c 10.0.2.2 -p 5322 -t 4 | awk '/receiver/ {print $7}')
	ip netns exec $ns iperf3 -s -p 5321 -1 -D; sleep 0.3
	r2=$(iperf3 -c 127.0.0.1 -p 5321 -t 4 | awk '/receiver/ {print $7}')
	printf '%s\tg2h_gbit=%s\th2g_gbit=%s\n' "$bin" "$r1" "$r2"
	kill $b; wait $b 2>/dev/null || true; ip netns del $ns
}
for _ in $(seq "${3:-2}"); do one "$1"; one "$2"; done
