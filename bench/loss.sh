#!/usr/bin/env bash
# Transfers through a lossy router inside the guest: how long a client
# behind the guest (a container or VM inside it) takes to send N MB to the
# host (--dir up, the default) or to receive them from it (--dir down)
# when the guest's router drops a share of what it forwards in that
# direction. Up, every loss leaves the segments after it out of order at
# usernet, so this measures what it does with them (since 2026-12-05:
# holds them and answers with SACK; before: dropped them). Down, usernet
# is the sender: this measures its loss recovery (the client's SACK
# blocks, or NewReno without them).
#
#   sudo bench/loss.sh [--reps N] [--mb N] [--loss "0.005 0.02"]
#                      [--backends "ours veth slirp4netns"] [--mtu 1500]
#                      [--timeout SECS] [--dir up|down]
#
# Topology per run: client --veth-- guest (router: ip_forward, MASQUERADE
# onto its uplink, iptables FORWARD -m statistic DROP on what comes from
# the client) -- uplink -- host. The uplink is usernet's TAP ("ours", and
# "old" when OLD_BIN names another build), slirp4netns's TAP, or a veth to
# a server namespace with a kernel router ("veth": the kernel's own TCP at
# the far end, the reference). The client is iperf3 -n (bytes) toward
# 10.0.2.2 (with -R for --dir down); the time is the receiver's. Each variant runs with the
# client's defaults, with net.ipv4.tcp_sack=0 and with
# net.ipv4.tcp_timestamps=0; a run without a result in --timeout seconds
# (default 120) counts as failed. Results: bench/results/<date>/loss-*
# (loss-down-* for --dir down).
set -euo pipefail
. "$(dirname "$0")/common.sh"

reps=3 mb=50 losses="0.005 0.02" backends="ours veth slirp4netns" mtu=1500 limit=120 dir=up
while [ $# -gt 0 ]; do
	case $1 in
	--reps) reps=$2; shift 2 ;;
	--mb) mb=$2; shift 2 ;;
	--loss) losses=$2; shift 2 ;;
	--backends) backends=$2; shift 2 ;;
	--mtu) mtu=$2; shift 2 ;;
	--timeout) limit=$2; shift 2 ;;
	--dir) dir=$2; shift 2 ;;
	*) echo "usage: $0 [--reps N] [--mb N] [--loss \"P ...\"] [--backends \"...\"] [--mtu M] [--timeout S] [--dir up|down]" >&2; exit 2 ;;
	esac
done
[ -n "${OLD_BIN:-}" ] && case " $backends " in *" old "*) ;; *) backends="$backends old" ;; esac
for b in $backends; do
	case $b in
	slirp4netns) command -v slirp4netns >/dev/null || { echo "bench: slirp4netns missing: apt-get install -y slirp4netns" >&2; exit 1; } ;;
	old) [ -x "${OLD_BIN:-}" ] || { echo "bench: backend old needs OLD_BIN=path/to/usernet" >&2; exit 1; } ;;
	ours | veth) ;;
	*) echo "bench: unknown backend $b" >&2; exit 2 ;;
	esac
done
case $dir in up) pre=loss ;; down) pre=loss-down ;; *) echo "bench: --dir is up or down, not $dir" >&2; exit 2 ;; esac
command -v iptables >/dev/null || { echo "bench: iptables missing: apt-get install -y iptables" >&2; exit 1; }

out=${BENCH_OUT:-$repo/bench/results/$(date +%F)}
mkdir -p "$out"
raw=$out/$pre-raw.tsv
{
	echo "date: $(date -Is)"
	echo "usernet: $("$bin" --version 2>&1 | head -1) ($bin)"
	[ -n "${OLD_BIN:-}" ] && echo "old: $("$OLD_BIN" --version 2>&1 | head -1) ($OLD_BIN)"
	echo "slirp4netns: $(slirp4netns --version 2>/dev/null | head -1 || echo -)"
	echo "kernel: $(uname -r)"
	echo "command: bench/loss.sh --reps $reps --mb $mb --loss \"$losses\" --backends \"$backends\" --mtu $mtu --timeout $limit --dir $dir"
} >"$out/$pre-versions.txt"
printf "backend\tloss\tclient\trep\tseconds\tretransmits\n" >"$raw"

link() { # NS1 IF1 ADDR1 NS2 IF2 ADDR2: a veth pair of the run's MTU, addressed and up
	ip link add "$2" netns "$1" mtu "$mtu" type veth peer name "$5" netns "$4" mtu "$mtu"
	ip -n "$1" addr add "$3" dev "$2"
	ip -n "$1" link set "$2" up
	ip -n "$4" addr add "$6" dev "$5"
	ip -n "$4" link set "$5" up
}

n=0
run_one() { # BACKEND LOSS VARIANT REP
	local b=$1 loss=$2 variant=$3 rep=$4
	n=$((n + 1))
	local g=$tag-g$n c=$tag-c$n s=$tag-s$n port uplink sp
	make_netns "$g"
	make_netns "$c"
	port=$(free_port)
	case $b in
	ours | old)
		local saved=$bin
		[ "$b" = old ] && bin=$OLD_BIN
		start_usernet "$g" "$mtu" --quiet
		bin=$saved
		uplink=tap0
		iperf3 -s -1 -B 127.0.0.1 -p "$port" >/dev/null 2>&1 &
		sp=$!
		;;
	slirp4netns)
		slirp4netns --configure --mtu="$mtu" --netns-type=path "/run/netns/$g" tap0 >"$tmp/s4-$n.log" 2>&1 &
		track_pid $!
		wait_until 10 bash -c "ip -n $g -4 addr show tap0 2>/dev/null | grep -q 'inet 10\.0\.2\.100/'" || { echo "bench: slirp4netns did not configure $g" >&2; cat "$tmp/s4-$n.log" >&2; exit 1; }
		uplink=tap0
		iperf3 -s -1 -B 127.0.0.1 -p "$port" >/dev/null 2>&1 &
		sp=$!
		;;
	veth)
		make_netns "$s"
		link "$g" up0 10.0.2.15/24 "$s" dn0 10.0.2.2/24
		ip -n "$g" route add default via 10.0.2.2
		uplink=up0
		ip netns exec "$s" iperf3 -s -1 -B 10.0.2.2 -p "$port" >/dev/null 2>&1 &
		sp=$!
		;;
	esac
	track_pid "$sp"
	link "$g" rt0 192.168.77.1/24 "$c" cl0 192.168.77.2/24
	ip -n "$c" route add default via 192.168.77.1
	ip netns exec "$g" sysctl -qw net.ipv4.ip_forward=1
	ip netns exec "$g" iptables -t nat -A POSTROUTING -o "$uplink" -j MASQUERADE
	if [ "$dir" = up ]; then
		ip netns exec "$g" iptables -A FORWARD -i rt0 -m statistic --mode random --probability "$loss" -j DROP
	else
		ip netns exec "$g" iptables -A FORWARD -o rt0 -m statistic --mode random --probability "$loss" -j DROP
	fi
	case $variant in
	nosack) ip netns exec "$c" sysctl -qw net.ipv4.tcp_sack=0 ;;
	nots) ip netns exec "$c" sysctl -qw net.ipv4.tcp_timestamps=0 ;;
	esac
	wait_until 5 bash -c "ss -Hltn 2>/dev/null | grep -q ':$port ' || ip netns exec $s ss -Hltn 2>/dev/null | grep -q ':$port '" || true
	local json secs rtx
	local rev=
	[ "$dir" = down ] && rev=-R
	json=$(ip netns exec "$c" timeout "$limit" iperf3 -c 10.0.2.2 -p "$port" -n "${mb}M" $rev -J 2>/dev/null || true)
	secs=$(printf '%s' "$json" | python3 -c 'import json,sys
try:
    d=json.load(sys.stdin); print("%.3f" % d["end"]["sum_received"]["seconds"])
except Exception: print("fail")')
	rtx=$(printf '%s' "$json" | python3 -c 'import json,sys
try:
    d=json.load(sys.stdin); print(d["end"]["sum_sent"].get("retransmits", "-"))
except Exception: print("-")')
	printf "%s\t%s\t%s\t%s\t%s\t%s\n" "$b" "$loss" "$variant" "$rep" "$secs" "$rtx" | tee -a "$raw"
	for p in "${pids[@]}"; do stop_pid "$p"; done
	pids=()
	drop_netns "$g"
	drop_netns "$c"
	[ "$b" = veth ] && drop_netns "$s"
	return 0
}

for loss in $losses; do
	for variant in default nosack nots; do
		for rep in $(seq "$reps"); do
			for b in $backends; do run_one "$b" "$loss" "$variant" "$rep"; done
		done
	done
done

python3 "$repo/bench/loss_report.py" "$raw" "$backends" "$mb" "$limit" "$dir" >"$out/$pre-report.txt"
cat "$out/$pre-report.txt"
