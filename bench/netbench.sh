#!/usr/bin/env bash
# Runs ../shared/bench/netbench (or NETBENCH=path) with usernet next to
# pasta, slirp4netns and the kernel's own veth pair, at MTU 65520 and 1500,
# in one run each, and keeps the raw results and the report under
# bench/results/<date>/.
#
#   sudo bench/netbench.sh [--reps N] [--quick] [--mtu 65520|1500|both]
#                          [--iperf-secs S] [--rr-n N] [--crr-secs S]
#
# netbench builds its own private host namespace: nothing leaves the
# machine. usernet is started as netbench's plug-in contract asks:
#   usernet --netns {NETNS} --config-net --mtu {MTU} -t {FWD_TCP} -u {FWD_UDP}
# twice: with its defaults ("ours"), and with --busy-poll 0 ("ours-nobp"),
# which turns off the polling that trades CPU time for request/response
# latency.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
netbench=${NETBENCH:-$here/../shared/bench/netbench}
bin=${USERNET_BIN:-$here/build/usernet}
reps=3 quick=() mtus="65520 1500" extra=()
while [ $# -gt 0 ]; do
	case "$1" in
	--reps) reps=$2; shift 2 ;;
	--quick) quick=(--quick); shift ;;
	--mtu) [ "$2" = both ] && mtus="65520 1500" || mtus=$2; shift 2 ;;
	--iperf-secs|--rr-n|--crr-secs) extra+=("$1" "$2"); shift 2 ;;
	*) echo "usage: $0 [--reps N] [--quick] [--mtu 65520|1500|both] [--iperf-secs S] [--rr-n N] [--crr-secs S]" >&2; exit 2 ;;
	esac
done
[ "$(id -u)" = 0 ] || { echo "bench: netbench needs root (namespaces)" >&2; exit 1; }
[ -x "$netbench" ] || { echo "bench: netbench not found at $netbench (set NETBENCH=)" >&2; exit 1; }
[ -x "$bin" ] || { echo "bench: no usernet binary at $bin; build first (cmake --build build)" >&2; exit 1; }

out=${BENCH_OUT:-$here/bench/results/$(date -u +%Y-%m-%d)}  # BENCH_OUT: another directory
mkdir -p "$out"
{
	echo "date: $(date -u +%FT%TZ)"
	echo "host: $(uname -r), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
	echo "usernet: $("$bin" --version 2>&1 | head -1) ($(git -C "$here" rev-parse --short HEAD))"
	echo "pasta: $(pasta --version 2>&1 | head -1)"
	echo "slirp4netns: $(slirp4netns --version 2>&1 | head -1)"
} >"$out/versions.txt"

ours="exec $bin --quiet --netns {NETNS} --config-net --mtu {MTU} -t {FWD_TCP} -u {FWD_UDP}"
for mtu in $mtus; do
	if [ "$mtu" = 1500 ]; then
		backends="veth slirp4netns pasta-1500 ours ours-nobp"
	else
		backends="veth slirp4netns-65520 pasta ours ours-nobp"
	fi
	echo "== MTU $mtu: $backends" >&2
	"$netbench" --reps "$reps" "${quick[@]}" --backends "$backends" \
		--ours "$ours" --plugin "ours-nobp=$ours --busy-poll 0" --ours-mtu "$mtu" \
		"${extra[@]}" --raw "$out/raw-$mtu.tsv" | tee "$out/report-$mtu.txt"
done
echo "results in $out" >&2
