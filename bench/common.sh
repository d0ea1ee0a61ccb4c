# Shared by bench/alloc.sh, bench/scale.sh and bench/dgram_loss.sh (sourced,
# not run).
#
# Gives: $repo, $bin (USERNET_BIN, default build/usernet), $tag (ubench-PID),
# $tmp (a private temp dir), a cleanup trap that stops every process started
# with track_pid and deletes every namespace made with make_netns, and
# start_usernet, which starts usernet on a fresh guest namespace and waits
# until --config-net has given the guest 10.0.2.15.

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${USERNET_BIN:-$repo/build/usernet}
case $bin in /*) ;; *) bin=$repo/$bin ;; esac
tag=ubench-$$
tmp=$(mktemp -d "/tmp/$tag.XXXXXX")
pids=() namespaces=()

[ "$(id -u)" = 0 ] || { echo "bench: needs root (network namespaces)" >&2; exit 1; }
[ -x "$bin" ] || { echo "bench: no usernet binary at $bin; build it or set USERNET_BIN" >&2; exit 1; }
command -v iperf3 >/dev/null || {
	echo "bench: iperf3 is missing: apt-get install -y iperf3" >&2
	exit 1
}

track_pid() { pids+=("$1"); }

running() { # PID: alive and not a zombie
	local st
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
	[ "${st%% *}" != Z ]
}

stop_pid() { # PID (a child of this shell): TERM, then KILL after 3 s; reaps it
	local p=$1 i
	if running "$p"; then
		kill -TERM "$p" 2>/dev/null || true
		for i in $(seq 30); do running "$p" || break; sleep 0.1; done
		! running "$p" || kill -KILL "$p" 2>/dev/null || true
	fi
	wait "$p" 2>/dev/null || true
}

cleanup() {
	set +e
	local p n
	for p in "${pids[@]}"; do stop_pid "$p"; done
	for n in "${namespaces[@]}"; do ip netns del "$n" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

make_netns() { # NAME
	ip netns add "$1"
	namespaces+=("$1")
	ip -n "$1" link set lo up
}

drop_netns() { # NAME
	local n=$1 keep=() x
	ip netns del "$n" 2>/dev/null || true
	for x in "${namespaces[@]}"; do [ "$x" = "$n" ] || keep+=("$x"); done
	namespaces=("${keep[@]}")
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until COND (a command) succeeds, at most SECS seconds.
wait_until() { # SECS CMD...
	local secs=$1 i
	shift
	for i in $(seq $((secs * 20))); do
		"$@" 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}

guest_ready() { # NS
	ip -n "$1" -4 addr show 2>/dev/null | grep -q 'inet 10\.0\.2\.15/' &&
		ip -n "$1" route show default 2>/dev/null | grep -q 10.0.2.2
}

# start_usernet NS MTU [ARGS...]: usernet --netns NS --config-net --mtu MTU
# ARGS, in the background, with $usernet_env (an array of VAR=value) in its
# environment and $usernet_nofile (if set) as its RLIMIT_NOFILE. Sets
# $usernet_pid. Output goes to $tmp/usernet-NS.log.
usernet_env=() usernet_nofile=
start_usernet() {
	local ns=$1 mtu=$2
	shift 2
	(
		if [ -n "$usernet_nofile" ]; then # at most the hard limit without CAP_SYS_RESOURCE
			ulimit -Hn "$usernet_nofile" 2>/dev/null || true
			ulimit -n "$(ulimit -Hn)"
		fi
		exec env "${usernet_env[@]}" "$bin" --netns "$ns" --config-net --mtu "$mtu" "$@"
	) >"$tmp/usernet-$ns.log" 2>&1 &
	usernet_pid=$!
	track_pid "$usernet_pid"
	if ! wait_until 10 guest_ready "$ns"; then
		echo "bench: usernet did not configure $ns:" >&2
		cat "$tmp/usernet-$ns.log" >&2
		exit 1
	fi
}
