#!/usr/bin/env bash
# Where the CPU goes on the stream path: usernet --socket, bench/tap_relay
# (a namespace's TAP over QEMU's stream framing) and the guest's iperf3,
# during one TCP stream host->guest (-R) and guest->host at MTU 1500.
# Prints each process's CPU share (utime+stime from /proc over the middle
# 4 s of an 8 s iperf3 run) beside the throughput.
#
#   sudo bench/stream_cpu.sh [USERNET_BIN]
# RELAY_ARGS adds options to the relay (e.g. RELAY_ARGS=--gro).
# DIRS picks the runs, iperf3's options for each, "g2h" for none (default
# "-R g2h"; "-RP4": four streams host->guest).
# PERF=FILE also records usernet's profile (perf record -g) over the same
# 4 s, to FILE-<n> for the n-th run.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "bench: needs root (namespaces)" >&2; exit 1; }
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$here/build/usernet}
. "$here/bench/stream_path.sh"
# shellcheck disable=SC2086  # RELAY_ARGS: words
stream_path_start "$bin" cpu ${RELAY_ARGS:-}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
n=0
for run in ${DIRS:--R g2h}; do
	n=$((n + 1))
	dir=$run; [ "$run" = g2h ] && dir=""
	iperf3 -s -p 5499 -1 -D; sleep 0.3
	ip netns exec $ns iperf3 -c 10.0.2.2 -p 5499 -t 8 $dir > "$tmp/iperf.txt" & c=$!
	sleep 2
	gp=$(pgrep -n -f "iperf3 -c 10.0.2.2 -p 5499")
	hp=$(pgrep -n -f "iperf3 -s -p 5499")
	declare -A t0
	for p in $b $r $gp $hp; do t0[$p]=$(ticks $p); done
	if [ -n "${PERF:-}" ]; then
		perf record -F 2000 -g -p $b -o "$PERF-$n" -- sleep 4 >/dev/null 2>&1
	else
		sleep 4
	fi
	line="$([ -n "$dir" ] && echo "host->guest ($dir)" || echo "guest->host")"
	for p in $b $r $gp $hp; do
		name=$p; [ $p = $b ] && name=usernet; [ $p = $r ] && name=tap_relay
		[ $p = $gp ] && name=iperf3-guest; [ $p = $hp ] && name=iperf3-host
		line+="$(printf '\t%s=%d%%' $name $(( ($(ticks $p) - ${t0[$p]}) * 100 / (4 * hz) )))"
	done
	wait $c
	printf '%s\tGbit/s=%s\n' "$line" "$(awk '/receiver/ {v=$(NF-2)} END {print v}' "$tmp/iperf.txt")"
	unset t0
done
