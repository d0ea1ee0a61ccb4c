#!/usr/bin/env bash
# 10,000 concurrent TCP flows through one usernet: most idle, a few busy.
# Measures usernet's memory growth per idle flow, and the throughput of busy
# iperf3 flows with and without the idle ones, at MTU 65520 and 1500.
#
#   sudo bench/scale.sh [--flows 10000] [--time 5] [--mtu "65520 1500"]
#
# USERNET_BIN picks the binary (default build/usernet). usernet runs with
# --max-flows 20000 and RLIMIT_NOFILE 65536 (or the hard limit, if lower)
# (older builds without --max-flows get none). For each MTU, on a fresh guest namespace:
#   1. memory of usernet (/proc/PID/status, smaps_rollup, the [heap] mapping)
#   2. iperf3 guest->host with 1 and 4 streams, and host->guest (-R) with 1
#      stream, --time seconds each (first second omitted): the baseline
#   3. bench/scale_flows.py in the guest opens --flows connections to
#      10.0.2.2:PORT, held by its echo server on host 127.0.0.1:PORT
#   4. memory again: growth / flows held = bytes per flow
#   5. the same iperf3 runs with the idle flows held, and the guest's view
#      of the window usernet advertises (ss snd_wnd) on the 1-stream run
#   6. every idle flow echoes one byte (still alive?), then they close and
#      memory is read a third time
#   7. the iperf3 runs once more, alone again, to show the machine's drift
# Bounded: opening flows gives up after 180 s, each iperf3 run after 60 s.
set -euo pipefail
flows=10000 secs=5 mtus="65520 1500"
while [ $# -gt 0 ]; do
	case "$1" in
	--flows) flows=$2; shift 2 ;;
	--time) secs=$2; shift 2 ;;
	--mtu) mtus=$2; shift 2 ;;
	*) sed -n '2,9p' "$0" >&2; exit 2 ;;
	esac
done
. "$(dirname "$0")/common.sh"

usernet_nofile=65536
extra=()
if "$bin" --help 2>&1 | grep -q -- --max-flows; then extra=(--max-flows 20000); fi

# mem_kb PID: "rss anon private_dirty heap fds" (kB, except fds)
mem_kb() {
	local p=$1 rss anon pd heap fds
	rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status")
	anon=$(awk '/^Anonymous:/ {print $2}' "/proc/$p/smaps_rollup")
	pd=$(awk '/^Private_Dirty:/ {print $2}' "/proc/$p/smaps_rollup")
	heap=$(awk '/\[heap\]/ {h = 1; next} /^[0-9a-f]+-/ {h = 0} h && /^Rss:/ {s += $2} END {print s + 0}' "/proc/$p/smaps")
	fds=$(ls "/proc/$p/fd" | wc -l)
	echo "$rss $anon $pd $heap $fds"
}

gbits() { # receiver throughput from iperf3's summary (the SUM line with -P)
	awk '/receiver/ { v = $(NF-2); u = $(NF-1)
		if (u ~ /^M/) v = v / 1000; else if (u ~ /^K/) v = v / 1e6
		last = v } END { printf "%.2f", last }' "$1"
}

# snd_wnd of the busiest connection from the guest to host port $2, in bytes
snd_wnd() {
	ip netns exec "$1" ss -Htin "dst 10.0.2.2:$2" | awk '
		{ for (i = 1; i <= NF; i++) {
			if ($i ~ /^bytes_acked:/) { split($i, a, ":"); b = a[2] }
			if ($i ~ /^snd_wnd:/) { split($i, w, ":"); s = w[2] } } }
		/snd_wnd:/ { if (b + 0 >= best) { best = b + 0; win = s }; b = 0 }
		END { print win + 0 }'
}

# iperf NS LABEL ARGS...: one iperf3 run; prints Gbit/s and, for the
# 1-stream guest->host run, the advertised window seen halfway (else "-")
iperf() {
	local ns=$1 label=$2 out=$tmp/iperf.out w=- c
	shift 2
	timeout 60 ip netns exec "$ns" iperf3 -c 10.0.2.2 -p "$sp" -t "$secs" -O 1 "$@" >"$out" 2>&1 &
	c=$!
	track_pid "$c"
	if [ "$label" = "g->h x1" ]; then
		sleep $(((secs + 2) / 2))
		w=$(snd_wnd "$ns" "$sp")
	fi
	if ! wait "$c"; then
		echo "bench: iperf3 $label failed:" >&2
		cat "$out" >&2
		echo "0 -"
		return
	fi
	echo "$(gbits "$out") $w"
}

tests=("g->h x1:-P 1" "g->h x4:-P 4" "h->g x1:-P 1 -R")
declare -A base load after win0 win1

sp=$(free_port)
iperf3 -s -B 127.0.0.1 -p "$sp" >"$tmp/iperf-server.log" 2>&1 &
track_pid $!
hp=$(free_port)
while [ "$hp" = "$sp" ]; do hp=$(free_port); done
python3 "$repo/bench/scale_flows.py" server "$hp" >"$tmp/flows-server.log" 2>&1 &
track_pid $!
wait_until 10 grep -q READY "$tmp/flows-server.log" || { echo "bench: flow server did not start" >&2; exit 1; }

memrows=() tprows=()
for mtu in $mtus; do
	ns=$tag-g$mtu
	make_netns "$ns"
	start_usernet "$ns" "$mtu" --quiet "${extra[@]}"
	up=$usernet_pid
	nofile=$(awk '/^Max open files/ {print $4}' "/proc/$up/limits")
	sleep 0.5
	read -r r0 a0 d0 h0 f0 < <(mem_kb "$up")
	echo "MTU $mtu: usernet pid $up, before: rss ${r0} kB anon ${a0} kB fds $f0" >&2

	for t in "${tests[@]}"; do
		iperf "$ns" "${t%%:*}" ${t#*:} >"$tmp/res"
		read -r g w <"$tmp/res"
		base[$mtu/${t%%:*}]=$g win0[$mtu/${t%%:*}]=$w
		echo "  baseline ${t%%:*}: $g Gbit/s (snd_wnd $w)" >&2
	done

	coproc CL { exec ip netns exec "$ns" python3 "$repo/bench/scale_flows.py" client 10.0.2.2 "$hp" "$flows" 2>>"$tmp/flows-client.err"; }
	cl_pid=$CL_PID
	track_pid "$cl_pid"
	exec {cl_in}>&"${CL[1]}" {cl_out}<&"${CL[0]}"
	eval "exec ${CL[1]}>&- ${CL[0]}<&-" # only the copies: EOF reaches the client when they close
	read -r -t 240 open_line <&"$cl_out" || open_line="OPEN ok=0 fail=$flows (no answer)"
	echo "  $open_line" >&2
	held=$(sed -n 's/.*ok=\([0-9]*\).*/\1/p' <<<"$open_line")
	sleep 1
	read -r r1 a1 d1 h1 f1 < <(mem_kb "$up")
	echo "  with $held flows: rss ${r1} kB anon ${a1} kB fds $f1" >&2

	for t in "${tests[@]}"; do
		iperf "$ns" "${t%%:*}" ${t#*:} >"$tmp/res"
		read -r g w <"$tmp/res"
		load[$mtu/${t%%:*}]=$g win1[$mtu/${t%%:*}]=$w
		echo "  with idle flows ${t%%:*}: $g Gbit/s (snd_wnd $w)" >&2
	done

	echo check >&"$cl_in"
	read -r -t 60 alive_line <&"$cl_out" || alive_line="ALIVE ok=? (no answer)"
	echo "  $alive_line" >&2
	echo close >&"$cl_in"
	read -r -t 30 _ <&"$cl_out" || true
	exec {cl_in}>&- {cl_out}<&-
	wait "$cl_pid" 2>/dev/null || true
	sleep 1
	read -r r2 a2 d2 h2 f2 < <(mem_kb "$up")
	for t in "${tests[@]}"; do # alone again: how much the machine drifted
		iperf "$ns" "${t%%:*}" ${t#*:} >"$tmp/res"
		read -r g w <"$tmp/res"
		after[$mtu/${t%%:*}]=$g
		echo "  alone again ${t%%:*}: $g Gbit/s" >&2
	done

	per() { # kB delta / held flows, in bytes
		awk -v d="$1" -v n="$held" 'BEGIN { if (n > 0) printf "%.0f", d * 1024 / n; else print "-" }'
	}
	memrows+=("$(printf '%6s %6s %6s  %-10s %-10s %-10s %-10s %7s %7s %7s %7s  %-6s %s' "$mtu" "$held" \
		"$(sed -n 's/.*fail=\([0-9]*\).*/\1/p' <<<"$open_line")" \
		"$r0>$r1" "$a0>$a1" "$d0>$d1" "$h0>$h1" \
		"$(per $((r1 - r0)))" "$(per $((a1 - a0)))" "$(per $((d1 - d0)))" "$(per $((h1 - h0)))" \
		"$(sed -n 's/.*ALIVE ok=\([0-9?]*\).*/\1/p' <<<"$alive_line")" \
		"rss ${r2} anon ${a2} fds $f0>$f1>$f2")")
	for t in "${tests[@]}"; do
		k=$mtu/${t%%:*}
		tprows+=("$(printf '%6s %-8s %7s %7s %7s %6s %6s %9s %9s' "$mtu" "${t%%:*}" "${base[$k]}" \
			"${load[$k]}" "${after[$k]}" \
			"$(awk -v a="${base[$k]}" -v b="${load[$k]}" 'BEGIN { if (a > 0) printf "%.0f%%", 100 * b / a; else print "-" }')" \
			"$(awk -v a="${base[$k]}" -v c="${after[$k]}" -v b="${load[$k]}" 'BEGIN { if (a + c > 0) printf "%.0f%%", 200 * b / (a + c); else print "-" }')" \
			"${win0[$k]}" "${win1[$k]}")")
	done

	stop_pid "$up"
	drop_netns "$ns"
done

{
	echo "usernet with $flows idle TCP flows ($(date -u +%F), $("$bin" --version 2>&1 | head -1), $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores)"
	echo "usernet args: --netns NS --config-net --mtu MTU --quiet ${extra[*]}; its RLIMIT_NOFILE: $nofile"
	echo
	echo "Memory of usernet, kB before>after opening the flows, and growth per flow held (bytes)"
	echo "(rss = VmRSS, anon = smaps_rollup Anonymous, pdirty = Private_Dirty, heap = the [heap] mapping's Rss;"
	echo " alive = held flows that echoed a byte after the iperf3 runs; after = kB once the flows closed)"
	printf '%6s %6s %6s  %-10s %-10s %-10s %-10s %7s %7s %7s %7s  %-6s %s\n' MTU held failed \
		rss anon pdirty heap B/rss B/anon B/pdirt B/heap alive after
	printf '%s\n' "${memrows[@]}"
	echo
	echo "Busy-flow throughput, Gbit/s (iperf3 -t $secs -O 1, receiver side): alone, with the idle flows held,"
	echo "alone again after they closed; ratio = with-idle / alone, ratio2 = with-idle / mean(alone, again)"
	echo "(wnd = snd_wnd, the window usernet advertises, as the guest's ss sees it on the 1-stream guest->host run)"
	printf '%6s %-8s %7s %7s %7s %6s %6s %9s %9s\n' MTU test alone w/idle again ratio ratio2 wnd-alone wnd-idle
	printf '%s\n' "${tprows[@]}"
}
