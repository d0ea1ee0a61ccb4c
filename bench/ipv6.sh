#!/usr/bin/env bash
# IPv6 next to IPv4: usernet and pasta on the same namespace tests, in one
# run, over both families (netbench is IPv4 only).
#
#   sudo bench/ipv6.sh [--reps N] [--secs S] [--rr N] [--crr-secs S] [--mtu M]
#
# A private host namespace gets an interface with 198.51.100.1/24 and
# 2001:db8:100::1/64 and default routes via .254 / ::254 (pasta copies its
# addresses and routes from there). Each backend serves a fresh guest
# namespace with --config-net at MTU 65520 and forwards two TCP ports:
#   g->h  the guest connects to its gateway address, which both map to the
#         host's loopback (usernet: 10.0.2.2 / fec0::2; pasta: the copied
#         gateways 198.51.100.254 / 2001:db8:100::254);
#   h->g  the host connects to its own non-loopback address (198.51.100.1 /
#         2001:db8:100::1) on a forwarded port (pasta's tap path, not its
#         loopback splice, as netbench does).
# Tests, for each family: iperf3 TCP throughput both ways (one stream),
# request/response latency (1 byte each way on one connection, p50, from a
# Python client: its overhead is the same for every backend), and the
# connection rate (connect, 1 byte each way, close). The results go to
# bench/results/<date>/ipv6-{raw.tsv,report.txt,versions.txt}; compare
# backends only within one run.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${USERNET_BIN:-$here/build/usernet}
reps=3 secs=5 rr=5000 crr_secs=4 mtu=65520
while [ $# -gt 0 ]; do
	case "$1" in
	--reps) reps=$2; shift 2 ;;
	--secs) secs=$2; shift 2 ;;
	--rr) rr=$2; shift 2 ;;
	--crr-secs) crr_secs=$2; shift 2 ;;
	--mtu) mtu=$2; shift 2 ;;
	*) echo "usage: $0 [--reps N] [--secs S] [--rr N] [--crr-secs S] [--mtu M]" >&2; exit 2 ;;
	esac
done
[ "$(id -u)" = 0 ] || { echo "bench: needs root (namespaces)" >&2; exit 1; }
[ -x "$bin" ] || { echo "bench: no usernet binary at $bin; build first" >&2; exit 1; }
for t in iperf3 pasta python3; do
	command -v $t >/dev/null || { echo "bench: $t is missing (scripts/install-deps.sh --bench)" >&2; exit 1; }
done

tag=b6-$$ H=b6-$$-h G="" pids=()
out=$here/bench/results/$(date -u +%Y-%m-%d)
mkdir -p "$out"
raw=$out/ipv6-raw.tsv
: >"$raw"
cleanup() {
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	sleep 0.3
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	[ -n "$G" ] && ip netns del "$G" 2>/dev/null
	ip netns del "$H" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { echo "[$(date +%T)] $*" >&2; }
inh() { ip netns exec "$H" "$@"; }
ing() { ip netns exec "$G" "$@"; }

ip netns add "$H"
inh ip link set lo up
# (a veth pair with both ends in the namespace: the dummy module may be missing)
inh ip link add up0 type veth peer name up1
inh ip link set up0 up
inh ip link set up1 up
inh ip addr add 198.51.100.1/24 dev up0
inh ip -6 addr add 2001:db8:100::1/64 dev up0 nodad
inh ip route add default via 198.51.100.254 dev up0 onlink
inh ip -6 route add default via 2001:db8:100::254 dev up0 onlink
inh sysctl -qw net.ipv4.ping_group_range="0 2147483647"

P_IPERF_OUT=41000 P_RR_OUT=41001 P_IPERF_IN=42000 P_RR_IN=42001
# Servers on the host: iperf3 and an echo server, both families.
# (ip netns exec execs the command: $! is its PID, which the cleanup stops)
ip netns exec "$H" iperf3 -s -p $P_IPERF_OUT >/dev/null 2>&1 & pids+=($!)
ip netns exec "$H" python3 "$here/tests/e2e/servers.py" tcp-echo --bind :: --port $P_RR_OUT \
	>/dev/null 2>&1 & pids+=($!)

{
	echo "date: $(date -u +%FT%TZ)"
	echo "host: $(uname -r), $(nproc) cores"
	echo "usernet: $("$bin" --version 2>&1 | head -1) ($(git -C "$here" rev-parse --short HEAD))"
	echo "pasta: $(dpkg-query -W -f '${Version}' passt 2>/dev/null || echo unknown)"
	echo "iperf3: $(iperf3 --version 2>&1 | head -1)"
	echo "args: --reps $reps --secs $secs --rr $rr --crr-secs $crr_secs --mtu $mtu"
} >"$out/ipv6-versions.txt"

RR_CLIENT='
import socket, sys, time
addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection((addr, port), timeout=10)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
lat = []
for i in range(n + 100):
    t = time.perf_counter_ns()
    s.sendall(b"x")
    if not s.recv(1):
        sys.exit("closed")
    if i >= 100:
        lat.append(time.perf_counter_ns() - t)
lat.sort()
print("%.1f" % (lat[len(lat) // 2] / 1000))
'
CRR_CLIENT='
import socket, sys, time
addr, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
end = time.monotonic() + secs
n = 0
while time.monotonic() < end:
    s = socket.create_connection((addr, port), timeout=10)
    s.sendall(b"x")
    if not s.recv(1):
        sys.exit("closed")
    s.close()
    n += 1
print("%.0f" % (n / secs))
'

emit() { printf '%s\t%s\t%s\t%s\t%s\n' "$rep" "$b" "$fam" "$1" "$2" >>"$raw"; }
iperf_bps() { python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'; }

start_backend() { # name
	G=$tag-g-$rep-$1
	ip netns add "$G"
	case $1 in
	usernet)
		ip netns exec "$H" "$bin" --quiet --netns "/run/netns/$G" --config-net --mtu "$mtu" \
			-t $P_IPERF_IN,$P_RR_IN >"$out/.ipv6-$1.log" 2>&1 &
		;;
	pasta)
		ip netns exec "$H" pasta -f -q --runas 0 --config-net -m "$mtu" -I tap0 \
			-t $P_IPERF_IN,$P_RR_IN -u none -T none -U none --netns "/run/netns/$G" \
			>"$out/.ipv6-$1.log" 2>&1 &
		;;
	esac
	bpid=$!
	pids+=($bpid)
	local i
	for i in $(seq 100); do
		[ -n "$(ing ip -6 route show default 2>/dev/null)" ] && [ -n "$(ing ip -4 route show default)" ] &&
			[ -z "$(ing ip -6 addr show tentative 2>/dev/null)" ] && return 0
		sleep 0.1
	done
	log "$1: no IPv4 and IPv6 default routes in the guest"; cat "$out/.ipv6-$1.log" >&2
	return 1
}
stop_backend() {
	kill -TERM "$bpid" 2>/dev/null || true
	wait "$bpid" 2>/dev/null || true
	ip netns del "$G"
	G=""
}
target_out() { # backend family: the guest's gateway, mapped to the host's loopback
	case $1-$2 in
	usernet-4) echo 10.0.2.2 ;;
	usernet-6) echo fec0::2 ;;
	pasta-4) ing ip -4 route show default | awk '{print $3; exit}' ;;
	pasta-6) ing ip -6 route show default | awk '$3 !~ /^fe80/ {print $3; exit}' ;;
	esac
}

for rep in $(seq "$reps"); do
	for b in usernet pasta; do
		start_backend $b
		ip netns exec "$G" iperf3 -s -p $P_IPERF_IN >/dev/null 2>&1 & spid=$!
		ip netns exec "$G" python3 "$here/tests/e2e/servers.py" tcp-echo --bind :: \
			--port $P_RR_IN >/dev/null 2>&1 & epid=$!
		pids+=($spid $epid)
		sleep 1
		for fam in 4 6; do
			out_addr=$(target_out $b $fam)
			[ $fam = 4 ] && in_addr=198.51.100.1 || in_addr=2001:db8:100::1
			log "$b rep $rep IPv$fam: g->h $out_addr, h->g $in_addr"
			emit tcp_g2h_gbps "$(ing iperf3 -c "$out_addr" -p $P_IPERF_OUT -t "$secs" -J | iperf_bps)"
			emit tcp_h2g_gbps "$(inh iperf3 -c "$in_addr" -p $P_IPERF_IN -t "$secs" -J | iperf_bps)"
			emit rr_g2h_p50_us "$(ing python3 -c "$RR_CLIENT" "$out_addr" $P_RR_OUT "$rr")"
			emit rr_h2g_p50_us "$(inh python3 -c "$RR_CLIENT" "$in_addr" $P_RR_IN "$rr")"
			emit crr_g2h_per_s "$(ing python3 -c "$CRR_CLIENT" "$out_addr" $P_RR_OUT "$crr_secs")"
		done
		kill -TERM $spid $epid 2>/dev/null || true
		wait $spid $epid 2>/dev/null || true
		stop_backend
	done
done
rm -f "$out"/.ipv6-*.log

python3 - "$raw" <<'EOF' | tee "$out/ipv6-report.txt"
import collections, statistics, sys
vals = collections.defaultdict(list)
for line in open(sys.argv[1]):
    rep, b, fam, test, v = line.rstrip("\n").split("\t")
    vals[(test, fam, b)].append(float(v))
tests = [("tcp_g2h_gbps", "TCP g->h Gbit/s", True), ("tcp_h2g_gbps", "TCP h->g Gbit/s", True),
         ("rr_g2h_p50_us", "RR g->h p50 us", False), ("rr_h2g_p50_us", "RR h->g p50 us", False),
         ("crr_g2h_per_s", "CRR g->h conn/s", True)]
print("medians of %d runs; usernet/pasta > 1 is better for usernet (latency: pasta/usernet)"
      % max(len(v) for v in vals.values()))
print("%-18s %-5s %10s %10s %8s" % ("test", "IP", "usernet", "pasta", "ratio"))
for t, name, higher in tests:
    for fam in ("4", "6"):
        u = statistics.median(vals[(t, fam, "usernet")])
        p = statistics.median(vals[(t, fam, "pasta")])
        r = (u / p if higher else p / u) if u and p else float("nan")
        print("%-18s IPv%s %10.2f %10.2f %7.2fx" % (name, fam, u, p, r))
EOF
