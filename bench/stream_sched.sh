#!/usr/bin/env bash
# Where the stream path waits: one TCP stream host->guest (iperf3 -R) at MTU
# 1500 through usernet --socket and bench/tap_relay --gro (a namespace's TAP
# over QEMU's stream framing), as bench/stream_cpu.sh runs it. Over the
# middle 2 s of an 8 s run it prints, per process (usernet, the relay, the
# two iperf3s), the share of that time it ran and the share it waited
# runnable for a CPU (/proc/PID/task/*/schedstat), its context switches,
# the machine's user/system/softirq/idle shares (/proc/stat, % of one CPU),
# and `ss -tmi` of the host side of the stream (the sender's rwnd_limited,
# usernet's socket queue and drops).
#
#   sudo bench/stream_sched.sh [USERNET_BIN] > result.txt
# RUNS=N repeats it (default 1).
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "bench: needs root (namespaces)" >&2; exit 1; }
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$here/build/usernet}
port=$((20000 + $$ % 20000))
. "$here/bench/stream_path.sh"
stop_server() { pkill -f "iperf3 -s -p $port" 2>/dev/null || true; }
stream_path_extra_cleanup=stop_server
stream_path_start "$bin" sched --gro
echo "usernet: $("$bin" --version 2>&1 | head -1) ($bin); kernel $(uname -r); $(nproc) CPUs"
for run in $(seq "${RUNS:-1}"); do
	iperf3 -s -p $port -1 -D; sleep 0.3
	ip netns exec $ns iperf3 -c 10.0.2.2 -p $port -t 8 -R > "$tmp/iperf.txt" & c=$!
	sleep 3
	gp=$(pgrep -n -f "iperf3 -c 10.0.2.2 -p $port")
	hp=$(pgrep -n -f "iperf3 -s -p $port")
	snap() {
		for p in $b $r $gp $hp; do
			for t in /proc/$p/task/*; do echo "$p $(cat "$t/schedstat")"; done
		done
		grep -E "^cpu " /proc/stat
	}
	snap > "$tmp/a"; sleep 2; snap > "$tmp/b"
	ss -tmi "( sport = :$port or dport = :$port )" > "$tmp/ss.txt"
	wait $c
	echo "== run $run: $(awk '/receiver/ {print $(NF-2), $(NF-1)}' "$tmp/iperf.txt")"
	hz=$(getconf CLK_TCK)
	paste "$tmp/a" "$tmp/b" | awk -v b=$b -v r=$r -v g=$gp -v hz="$hz" '
		$1 != "cpu" {
			n = ($1 == b ? "usernet" : $1 == r ? "tap_relay" : $1 == g ? "iperf3-guest" : "iperf3-host")
			run[n] += ($6 - $2) / 2e7; wait[n] += ($7 - $3) / 2e7; sw[n] += ($8 - $4) / 2
		}
		$1 == "cpu" {
			t = 2 * hz / 100
			printf "machine (%% of one CPU): user %.0f system %.0f softirq %.0f idle %.0f\n",
				($13 - $2) / t, ($15 - $4) / t, ($19 - $8) / t, ($16 - $5) / t
		}
		END { for (n in run) printf "%-13s ran %3.0f%%  waited for a CPU %3.0f%%  switches/s %d\n", n, run[n], wait[n], sw[n] }'
	echo "ss -tmi (host side):"
	grep -v "^State" "$tmp/ss.txt" | sed 's/^/  /'
done
