# Sourced by bench/stream_cpu.sh and bench/stream_sched.sh: starts the
# stream path they measure, usernet --socket and bench/tap_relay (a
# namespace's TAP over QEMU's stream framing, MTU 1500, the guest at
# 10.0.2.15), and removes it all on exit.
#   stream_path_start BIN PREFIX [RELAY ARGS...]
# sets tmp (a scratch directory), ns (the guest's namespace), b (usernet's
# PID) and r (the relay's). A script that starts more adds its own cleanup
# to stream_path_extra_cleanup.
stream_path_extra_cleanup=:
stream_path_cleanup() {
	for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
	[ -n "${r:-}" ] && kill "$r" 2>/dev/null || true
	[ -n "${b:-}" ] && kill "$b" 2>/dev/null || true
	$stream_path_extra_cleanup
	wait 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$tmp"
}
stream_path_start() {
	local bin=$1 prefix=$2 here
	shift 2
	here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	tmp=$(mktemp -d "/tmp/un-$prefix.XXXXXX")
	ns=us$prefix$$
	trap stream_path_cleanup EXIT
	g++ -std=c++20 -O2 -o "$tmp/tap_relay" "$here/bench/tap_relay.cpp"
	ip netns add "$ns"
	"$bin" --quiet --socket "$tmp/s.sock" 2>/dev/null & b=$!
	for _ in $(seq 100); do [ -S "$tmp/s.sock" ] && break; sleep 0.05; done
	"$tmp/tap_relay" --netns "/run/netns/$ns" --tap tap0 --mtu 1500 --addr 10.0.2.15/24 \
		--gw 10.0.2.2 --stream-unix "$tmp/s.sock" "$@" & r=$!
	sleep 0.5
}
