#!/usr/bin/env bash
# Throughput and latency of a kernel guest behind each attachment protocol,
# usernet beside the tools that speak the same protocol, in one netbench run.
#
#   sudo bench/attach.sh [--reps N] [--quick] [--backends "..."] [--iperf-secs S] [--tag T] [--no-gro]
#                        [--mtu N]
#
# The guest is a network namespace whose TAP is relayed over the transport
# by bench/tap_relay (the same relay for every backend of a transport, one
# that batches: a 4-byte-length stream over a unix or TCP socket, one frame
# per UDP datagram, one masked binary message per frame) or, on the VDE
# path, by vde2's own vde_plug2tap. MTU 1500, as an emulated NIC has
# (--mtu N: another, for every backend and the relay). The relay
# coalesces what one read brings into the TAP as a virtio-net guest's GRO
# does (tap_relay --gro); --no-gro writes
# each frame as it came, which makes every host->guest row the relay's.
# Backends:
#   stream-unix     usernet --socket            (QEMU -netdev stream, unix)
#   passt           passt --socket              (the same framing)
#   stream-tcp      usernet --listen            (QEMU -netdev stream inet / socket,connect=)
#   dgram-udp       usernet --dgram             (QEMU -netdev dgram / socket,udp=)
#   websocket       usernet --websocket         (v86 network_relay_url)
#   vde             usernet --vde               (vde_plug2tap)
#   vde_switch+slirpvde                         (vde2's switch and its slirp)
#   tap             usernet --netns, for scale  (no relay: the TAP is usernet's)
# A backend whose usernet option this build lacks is left out.
# Results: bench/results/<date>/attach[-T]-{raw.tsv,report.txt,versions.txt}.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
netbench=${NETBENCH:-$here/../shared/bench/netbench}
bin=${USERNET_BIN:-$here/build/usernet}
reps=3 quick=() extra=() only="" tag="" gro=--gro mtu=1500
while [ $# -gt 0 ]; do
	case "$1" in
	--reps) reps=$2; shift 2 ;;
	--quick) quick=(--quick); shift ;;
	--backends) only=$2; shift 2 ;;
	--tag) tag=-$2; shift 2 ;;
	--no-gro) gro=""; shift ;;
	--mtu) mtu=$2; shift 2 ;;
	--iperf-secs|--rr-n|--crr-secs) extra+=("$1" "$2"); shift 2 ;;
	*) echo "usage: $0 [--reps N] [--quick] [--backends \"...\"] [--iperf-secs S] [--tag T] [--no-gro] [--mtu N]" >&2; exit 2 ;;
	esac
done
[ "$(id -u)" = 0 ] || { echo "bench: needs root (namespaces)" >&2; exit 1; }
[ -x "$bin" ] || { echo "bench: no usernet binary at $bin; build first" >&2; exit 1; }

tmp=$(mktemp -d /tmp/un-attach.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
g++ -std=c++20 -O2 -Wall -Wextra -o "$tmp/tap_relay" "$here/bench/tap_relay.cpp"
relay="$tmp/tap_relay $gro"

has() { "$bin" --help | grep -q -- "$1"; }

# Each plug-in runs the backend and the relay under one bash whose SIGTERM
# stops both; the guest gets 10.0.2.15/24 via 10.0.2.2 (passt: the host's
# own address and gateway, which it maps to the host's loopback).
wrap() {  # $1: backend command, $2: wait-for test, $3: relay command
	echo "$1 & b=\$!; trap 'kill \$b \$r 2>/dev/null; wait' TERM EXIT; " \
		"for i in \$(seq 100); do $2 && break; sleep 0.05; done; " \
		"$3 & r=\$!; wait \$r"
}
guest="--netns {NETNS} --tap {TAP} --mtu {MTU} --addr 10.0.2.15/24 --gw 10.0.2.2"
un="$bin --quiet --mtu {MTU} --guest-addr 10.0.2.15 -t {FWD_TCP} -u {FWD_UDP}"
plugins=() names=()
add() { names+=("$1"); plugins+=(--plugin "$1=$2"); }

# A socket left by the previous repetition would pass the wait below
# before the backend listens: each removes it first.
add stream-unix "$(wrap "rm -f {RUNDIR}/u.sock; $un --socket {RUNDIR}/u.sock" "[ -S {RUNDIR}/u.sock ]" \
	"$relay $guest --stream-unix {RUNDIR}/u.sock")"
if command -v passt >/dev/null; then
	add passt "$(wrap "rm -f {RUNDIR}/p.sock; passt -f -q --runas 0 --mtu {MTU} -t {FWD_TCP} -u {FWD_UDP} --socket {RUNDIR}/p.sock" \
		"[ -S {RUNDIR}/p.sock ]" \
		"$relay --netns {NETNS} --tap {TAP} --mtu {MTU} --addr {HOST_ADDR}/24 --gw 198.51.100.254 --stream-unix {RUNDIR}/p.sock")"
fi
if has -- "--listen"; then
	add stream-tcp "$(wrap "$un --listen 127.0.0.1:41990" "(exec 3<>/dev/tcp/127.0.0.1/41990) 2>/dev/null" \
		"$relay $guest --stream-tcp 127.0.0.1:41990")"
fi
if has -- "--dgram"; then
	add dgram-udp "$(wrap "$un --dgram udp:127.0.0.1:41991,127.0.0.1:41992" "sleep 0.3" \
		"$relay $guest --dgram-udp 127.0.0.1:41992,127.0.0.1:41991")"
fi
if has -- "--websocket"; then
	add websocket "$(wrap "$un --websocket 127.0.0.1:41993" "(exec 3<>/dev/tcp/127.0.0.1/41993) 2>/dev/null" \
		"$relay $guest --websocket 127.0.0.1:41993")"
fi
vdeguest="ip netns exec {NETNS_NAME} vde_plug2tap -s {RUNDIR}/vde {TAP} & v=\$!; for i in \$(seq 100); do ip -n {NETNS_NAME} link show {TAP} >/dev/null 2>&1 && break; sleep 0.05; done; ip -n {NETNS_NAME} link set {TAP} mtu {MTU} up; ip -n {NETNS_NAME} addr add 10.0.2.15/24 dev {TAP}; ip -n {NETNS_NAME} route add default via 10.0.2.2; wait \$v"
if has -- "--vde" && command -v vde_plug2tap >/dev/null; then
	add vde "$(wrap "rm -rf {RUNDIR}/vde; $un --vde {RUNDIR}/vde" "[ -S {RUNDIR}/vde/ctl ]" "bash -c '$vdeguest'")"
fi
if command -v vde_switch >/dev/null && command -v slirpvde >/dev/null && command -v vde_plug2tap >/dev/null; then
	# vde_switch leaves on EOF of its console (stdin): a FIFO that this
	# shell holds open for writing keeps it running. slirpvde does not
	# ignore SIGPIPE (QEMU does, for its libslirp) and dies of the first
	# write to a socket the host closed (iperf3 does that): it runs with
	# SIGPIPE ignored. It forwards TCP only (-L), so its host->guest UDP
	# rows are n/a.
	sv="rm -rf {RUNDIR}/vde {RUNDIR}/sw.in; mkfifo {RUNDIR}/sw.in; vde_switch -s {RUNDIR}/vde <{RUNDIR}/sw.in >/dev/null & s=\$!; exec 4<>{RUNDIR}/sw.in; cleanup() { kill \$s \$l 2>/dev/null; }; trap cleanup TERM EXIT; for i in \$(seq 100); do [ -S {RUNDIR}/vde/ctl ] && break; sleep 0.05; done; fw=; for p in \$(echo {FWD_TCP} | tr , \" \"); do fw=\"\$fw -L \$p:10.0.2.15:\$p\"; done; trap \"\" PIPE; slirpvde -s {RUNDIR}/vde \$fw >/dev/null & l=\$!; wait \$l"
	add vde_switch+slirpvde "$(wrap "bash -c '$sv'" "[ -S {RUNDIR}/vde/ctl ]" "bash -c '$vdeguest'")"
fi

sel=()
for i in "${!names[@]}"; do
	if [ -z "$only" ] || [[ " $only " == *" ${names[$i]} "* ]]; then sel+=("${names[$i]}"); fi
done
out=$here/bench/results/$(date -u +%Y-%m-%d)
mkdir -p "$out"
{
	echo "date: $(date -u +%FT%TZ)"
	echo "host: $(uname -r), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
	echo "usernet: $("$bin" --version 2>&1 | head -1) ($(git -C "$here" rev-parse --short HEAD))"
	echo "passt: $(dpkg-query -W -f '${Version}' passt 2>/dev/null || echo none)"
	echo "vde2: $(dpkg-query -W -f '${Version}' vde2 2>/dev/null || echo none)"
	echo "backends: ${sel[*]}"
	echo "relay: tap_relay ${gro:-(no --gro)}"
	echo "mtu: $mtu"
} >"$out/attach$tag-versions.txt"
echo "== attachments: ${sel[*]}" >&2
"$netbench" --reps "$reps" "${quick[@]}" --backends "${sel[*]} ours" \
	--ours "exec $bin --quiet --netns {NETNS} --config-net --mtu {MTU} -t {FWD_TCP} -u {FWD_UDP}" \
	"${plugins[@]}" --ours-mtu "$mtu" "${extra[@]}" --raw "$out/attach$tag-raw.tsv" |
	tee "$out/attach$tag-report.txt"
echo "results in $out" >&2
