#!/usr/bin/env bash
# The host-to-guest fallback path (kernels without TCP SO_PEEK_OFF, such as
# Debian 12's 6.1: every peek starts at 0 and the bytes in flight land in
# a discard area) beside the main path, on a kernel that has SO_PEEK_OFF:
# usernet runs once plainly and once with USERNET_NO_PEEK_OFF=1, which
# forces the fallback (docs/tcp.md).
#
#   sudo bench/peekoff.sh [--time 3] [--mtu "65520 1500"] [--reps 2]
#
# USERNET_BIN picks the binary (default build/usernet). For each MTU and
# repetition, on a fresh guest namespace each time, the two modes in turn
# (so that drift of a shared machine hits both): iperf3 guest->host and
# host->guest (-R), --time seconds each after a 1 s warm-up (-O 1), one
# stream, to an iperf3 server on the host's 127.0.0.1 reached as
# 10.0.2.2. Prints receiver Gbit/s per run, the mean per mode and the ratio
# fallback / main. The fallback mode checks usernet's start-up log line.
# host->guest is the direction the fallback changes; guest->host carries
# only ACKs on the peeking side and is a control.
set -euo pipefail
secs=3 mtus="65520 1500" reps=2
while [ $# -gt 0 ]; do
	case "$1" in
	--time) secs=$2; shift 2 ;;
	--mtu) mtus=$2; shift 2 ;;
	--reps) reps=$2; shift 2 ;;
	*) sed -n '2,19p' "$0" >&2; exit 2 ;;
	esac
done
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"

gbits() { # receiver throughput from iperf3's summary
	awk '/receiver/ { v = $(NF-2); u = $(NF-1)
		if (u ~ /^M/) v = v / 1000; else if (u ~ /^K/) v = v / 1e6
		last = v } END { printf "%.2f", last }' "$1"
}

sp=$(free_port)
iperf3 -s -B 127.0.0.1 -p "$sp" >"$tmp/iperf-server.log" 2>&1 &
track_pid $!
wait_until 10 grep -q "listening" "$tmp/iperf-server.log" || sleep 1

declare -A sum n
echo "peek path: main (SO_PEEK_OFF) vs fallback (USERNET_NO_PEEK_OFF=1), $(date -u +%F), kernel $(uname -r), $(nproc) cores"
echo "iperf3 -t $secs -O 1, 1 stream, receiver Gbit/s"
printf '%6s %4s %-9s %-5s %7s\n' MTU rep mode dir Gbit/s
for mtu in $mtus; do
	for rep in $(seq "$reps"); do
		for mode in main fallback; do
			ns=$tag-$mode-$mtu-$rep
			make_netns "$ns"
			if [ "$mode" = fallback ]; then usernet_env=(USERNET_NO_PEEK_OFF=1); else usernet_env=(); fi
			start_usernet "$ns" "$mtu"
			if [ "$mode" = fallback ] && ! grep -q "USERNET_NO_PEEK_OFF is set" "$tmp/usernet-$ns.log"; then
				echo "bench: usernet did not report the fallback path:" >&2
				cat "$tmp/usernet-$ns.log" >&2
				exit 1
			fi
			for dir in "g->h" "h->g"; do
				args=()
				[ "$dir" = "h->g" ] && args=(-R)
				out=$tmp/iperf.out
				if ! timeout 60 ip netns exec "$ns" iperf3 -c 10.0.2.2 -p "$sp" -t "$secs" -O 1 "${args[@]}" >"$out" 2>&1; then
					echo "bench: iperf3 failed:" >&2
					cat "$out" >&2
					exit 1
				fi
				g=$(gbits "$out")
				printf '%6s %4s %-9s %-5s %7s\n' "$mtu" "$rep" "$mode" "$dir" "$g"
				k="$mtu $mode $dir"
				sum[$k]=$(awk -v a="${sum[$k]:-0}" -v b="$g" 'BEGIN { print a + b }')
				n[$k]=$((${n[$k]:-0} + 1))
			done
			stop_pid "$usernet_pid"
			drop_netns "$ns"
		done
	done
done
echo
echo "mean Gbit/s and fallback / main"
printf '%6s %-5s %8s %8s %7s\n' MTU dir main fallback ratio
for mtu in $mtus; do
	for dir in "g->h" "h->g"; do
		m=$(awk -v s="${sum[$mtu main $dir]}" -v c="${n[$mtu main $dir]}" 'BEGIN { printf "%.2f", s / c }')
		f=$(awk -v s="${sum[$mtu fallback $dir]}" -v c="${n[$mtu fallback $dir]}" 'BEGIN { printf "%.2f", s / c }')
		r=$(awk -v a="$f" -v b="$m" 'BEGIN { if (b > 0) printf "%.0f%%", 100 * a / b; else print "-" }')
		printf '%6s %-5s %8s %8s %7s\n' "$mtu" "$dir" "$m" "$f" "$r"
	done
done
