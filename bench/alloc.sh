#!/usr/bin/env bash
# Counts usernet's heap allocations during bulk TCP transfers, to show that
# the steady state allocates nothing per packet: the count must not grow
# with the bytes moved (1 GiB vs 4 GiB), in each direction, at MTU 65520
# and 1500.
#
#   sudo bench/alloc.sh [--sizes "1G 4G"] [--mtu "65520 1500"]
#
# USERNET_BIN picks the binary (default build/usernet). bench/alloc_counter.c
# is compiled into a temp dir and LD_PRELOADed into usernet only; it
# rewrites a file with the running counts every 20 ms. For each run the
# count is read before iperf3 starts (S0), at iperf3's first 0.1 s interval
# report, when the connections are set up (S1), and after iperf3 has exited
# (S2): "setup" is S1-S0, "transfer" is S2-S1 (the data phase plus the
# teardown of both connections). Paths:
#   guest->host  iperf3 -c 10.0.2.2 in the guest, iperf3 -s on host 127.0.0.1
#   host->guest  the same with -R (the host end sends)
#   fwd h->g     iperf3 -c 127.0.0.1:PORT on the host, through usernet's
#                -t PORT forward to iperf3 -s in the guest
# Needs root, iperf3, cc. Bounded: each iperf3 run is killed after 300 s.
set -euo pipefail
sizes="1G 4G" mtus="65520 1500"
while [ $# -gt 0 ]; do
	case "$1" in
	--sizes) sizes=$2; shift 2 ;;
	--mtu) mtus=$2; shift 2 ;;
	*) sed -n '2,9p' "$0" >&2; exit 2 ;;
	esac
done
. "$(dirname "$0")/common.sh"

cc -O2 -shared -fPIC -o "$tmp/alloc_counter.so" "$repo/bench/alloc_counter.c" -ldl -lpthread
counts=$tmp/counts

allocs_now() { # the allocs= of a line written after this call began
	sleep 0.1
	sed -n 's/.* allocs=\([0-9]*\) .*/\1/p' "$counts"
}

to_bytes() { # 1G -> 1073741824 (iperf3's -n suffixes are binary)
	local n=${1%[KMGkmg]}
	case $1 in
	*[Kk]) echo $((n << 10)) ;; *[Mm]) echo $((n << 20)) ;; *[Gg]) echo $((n << 30)) ;; *) echo "$1" ;;
	esac
}

gbits() { # receiver throughput from iperf3's summary, in Gbit/s
	awk '/receiver/ { v = $(NF-2); u = $(NF-1)
		if (u ~ /^G/) v = v; else if (u ~ /^M/) v = v / 1000; else if (u ~ /^K/) v = v / 1e6
		printf "%.2f", v; exit }' "$1"
}

guest_listening() { ip netns exec "$1" ss -Hltn "sport = :$2" | grep -q .; }

rows=()
# run_case PATH MTU SIZE CMD...: one iperf3 client run, counted.
run_case() {
	local path=$1 mtu=$2 size=$3
	shift 3
	local out=$tmp/iperf.out s0 s1 s2 c i
	s0=$(allocs_now)
	timeout 300 "$@" -n "$size" -i 0.1 --forceflush >"$out" 2>&1 &
	c=$!
	s1=
	for i in $(seq 3000); do
		if grep -qE '^\[ *[0-9]+\] +0\.00-0\.10 ' "$out"; then s1=$(allocs_now); break; fi
		kill -0 "$c" 2>/dev/null || break
		sleep 0.01
	done
	if ! wait "$c"; then
		echo "bench: iperf3 failed ($path, MTU $mtu, $size):" >&2
		cat "$out" >&2
		exit 1
	fi
	s2=$(allocs_now)
	[ -n "$s1" ] || s1=$s0 # finished before its first report: all counted as transfer
	local bytes gib per
	bytes=$(to_bytes "$size")
	per=$(awk -v a=$((s2 - s1)) -v b="$bytes" 'BEGIN { printf "%.1f", a / (b / 2^30) }')
	rows+=("$(printf '%-12s %6s %6s %7d %9d %8s %7s %7s' "$path" "$mtu" "$size" $((s1 - s0)) \
		$((s2 - s1)) "$per" $((s2 - s0)) "$(gbits "$out")")")
	echo "${rows[-1]}" >&2
}

sp=$(free_port)
iperf3 -s -B 127.0.0.1 -p "$sp" >"$tmp/iperf-server.log" 2>&1 &
track_pid $!
fp=$(free_port)
while [ "$fp" = "$sp" ]; do fp=$(free_port); done

header=$(printf '%-12s %6s %6s %7s %9s %8s %7s %7s' path MTU bytes setup transfer per-GiB total Gbit/s)
echo "$header" >&2
for mtu in $mtus; do
	ns=$tag-g$mtu
	make_netns "$ns"
	usernet_env=(LD_PRELOAD="$tmp/alloc_counter.so" ALLOC_COUNTER_FILE="$counts" ALLOC_COUNTER_INTERVAL_MS=20)
	start_usernet "$ns" "$mtu" --quiet -t "$fp"
	ip netns exec "$ns" iperf3 -s -p "$fp" >"$tmp/iperf-guest.log" 2>&1 &
	gs=$!
	track_pid "$gs"
	wait_until 5 guest_listening "$ns" "$fp" || { echo "bench: guest iperf3 -s did not start" >&2; exit 1; }
	for size in $sizes; do
		run_case "guest->host" "$mtu" "$size" ip netns exec "$ns" iperf3 -c 10.0.2.2 -p "$sp"
	done
	for size in $sizes; do
		run_case "host->guest" "$mtu" "$size" ip netns exec "$ns" iperf3 -c 10.0.2.2 -p "$sp" -R
	done
	for size in $sizes; do
		run_case "fwd h->g" "$mtu" "$size" iperf3 -c 127.0.0.1 -p "$fp"
	done
	stop_pid "$gs"
	stop_pid "$usernet_pid"
	drop_netns "$ns"
done

{
	echo "usernet heap allocations per iperf3 transfer ($(date -u +%F), $("$bin" --version 2>&1 | head -1), $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?'))"
	echo "setup = from before iperf3 starts to its first 0.1 s report; transfer = from there to after"
	echo "iperf3 exited (data phase and teardown); per-GiB = transfer / GiB; total = setup + transfer"
	echo
	echo "$header"
	printf '%s\n' "${rows[@]}"
}
