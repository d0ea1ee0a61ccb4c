#!/usr/bin/env bash
# Where slirp4netns's CPU goes during a host->guest TCP transfer: the share
# of its time inside write() to its TAP (one per frame, in which the
# guest's kernel receives the segment), which bounds what any libslirp can
# gain host to guest at MTU 1500 through slirp4netns.
#
#   sudo bench/s4_write_share.sh --lib system|DIR [--mtu 1500] [--secs 6]
#
# A fresh namespace behind slirp4netns (bench/slirp4netns-plugin.sh), an
# iperf3 server on the host's loopback, `iperf3 -R` in the namespace
# through 10.0.2.2; `perf record -g` of slirp4netns for 3 s in the middle.
# Prints the rate and perf's children share of libc's write().
set -eu
lib="" mtu=1500 secs=6
while [ $# -gt 0 ]; do
	case "$1" in
	--lib) lib=$2; shift 2 ;;
	--mtu) mtu=$2; shift 2 ;;
	--secs) secs=$2; shift 2 ;;
	*) echo "usage: $0 --lib system|DIR [--mtu M] [--secs S]" >&2; exit 2 ;;
	esac
done
[ -n "$lib" ] || { echo "$0: --lib is required" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "$0: needs root (namespaces, perf)" >&2; exit 1; }
for t in perf iperf3 slirp4netns; do
	command -v $t >/dev/null || { echo "$0: no $t (apt install linux-perf iperf3 slirp4netns)" >&2; exit 1; }
done
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/s4ws.XXXXXX)
ns=s4ws$$
port=$((47200 + $$ % 500))
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
"$here/slirp4netns-plugin.sh" --lib "$lib" --mtu "$mtu" --netns "/run/netns/$ns" --tap tap0 \
	--pidfile "$work/pid" --rundir "$work" 2>/dev/null &
pids+=($!)
iperf3 -s -p "$port" -B 127.0.0.1 >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -s "$work/pid" ] && ip netns exec "$ns" ip route | grep -q default && break; sleep 0.1; done
s4=$(cat "$work/pid")
ip netns exec "$ns" iperf3 -c 10.0.2.2 -p "$port" -t "$secs" -R -J >"$work/ipf.json" &
client=$!
sleep $(( secs / 2 - 1 ))
perf record -g -p "$s4" -o "$work/perf.data" -- sleep 3 >/dev/null 2>&1
wait $client
gbit=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('%.2f' % (d['end']['sum_received']['bits_per_second']/1e9))" "$work/ipf.json")
share=$(perf report -i "$work/perf.data" --children --sort sym -g none 2>/dev/null |
	awk '$NF ~ /^(__GI___libc_write|__libc_write|write)$/ {print $1; exit}')
echo "lib=$lib mtu=$mtu iperf3 -R: $gbit Gbit/s; slirp4netns CPU in write(): ${share:-?}"
