#!/usr/bin/env bash
# Host-to-guest TCP through a port forward, two usernet builds alternately:
# the netbench row that varies most on this VM, checked against the build
# before without the rest of netbench around it.
#
#   sudo bench/fwd_ab.sh BIN_A BIN_B [MTU] [REPS]
#
# Each run: a fresh namespace, usernet --netns --config-net --mtu MTU with
# a forward to an iperf3 server in the guest, iperf3 -t 4 from the host's
# loopback; prints Gbit/s and the TCP translator's retransmission counters
# (get_stats). Results on stdout (tee them into bench/results/).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 BIN_A BIN_B [MTU] [REPS]" >&2; exit 2; }
a=$1 b=$2 mtu=${3:-65520} reps=${4:-3}
tmp=$(mktemp -d)
ns=
cleanup() {
	jobs -p | xargs -r kill 2>/dev/null || true
	wait 2>/dev/null || true
	[ -n "$ns" ] && ip netns del "$ns" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
run() { # BIN
	ns=fwdab-$$-$RANDOM
	ip netns add "$ns"
	local port=$((30000 + RANDOM % 20000)) un sp
	"$1" --netns "$ns" --config-net --mtu "$mtu" --quiet -t "$port:5201" --api-socket "$tmp/api" >"$tmp/log" 2>&1 &
	un=$!
	for _ in $(seq 100); do ip -n "$ns" -4 addr show tap0 2>/dev/null | grep -q "inet 10.0.2" && break; sleep 0.1; done
	ip netns exec "$ns" iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
	sp=$!
	sleep 0.5
	local gbps stats
	gbps=$(iperf3 -c 127.0.0.1 -p "$port" -t 4 -J 2>/dev/null | python3 -c 'import json,sys
try: print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))
except Exception: print("fail")')
	stats=$(echo '{"execute": "get_stats"}' | socat -t 2 "UNIX-CONNECT:$tmp/api" - | python3 -c 'import json,sys
n = json.load(sys.stdin)["return"]["lans"][0]["nat"]
print(" ".join("%s=%s" % (k, v) for k, v in n.items() if k.startswith("tcp_retransmits") or k == "tcp_tail_loss_probes"))')
	kill "$un" "$sp" 2>/dev/null || true
	wait "$un" "$sp" 2>/dev/null || true
	ip netns del "$ns"
	ns=
	rm -f "$tmp/api"
	echo "$gbps Gbit/s $stats"
}
echo "# bench/fwd_ab.sh $a $b $mtu $reps; $(date -Is); $(uname -r)"
for i in $(seq "$reps"); do
	echo "A rep $i: $(run "$a")"
	echo "B rep $i: $(run "$b")"
done
