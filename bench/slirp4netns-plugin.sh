#!/usr/bin/env bash
# slirp4netns as a netbench plug-in (../shared/bench/netbench --plugin), on
# Debian's libslirp or on another libslirp.so.0 (usernet's) through
# LD_LIBRARY_PATH, so that both run through the same script. Used by
# bench/libslirp.py.
#
#   bench/slirp4netns-plugin.sh --lib system|DIR --mtu M --netns PATH --tap TAP
#       --fwd-tcp P1,P2 --fwd-udp P3 --pidfile FILE --rundir DIR
#
# Starts slirp4netns --configure on the guest namespace, writes its pid to
# FILE (netbench then measures and stops slirp4netns itself, not this
# script), adds a host->guest forward from 127.0.0.1:P to the guest's port
# P for each port through the API socket (add_hostfwd: slirp4netns has no
# forwarding option of its own), then waits for slirp4netns to exit.
set -u
lib="" mtu=1500 netns="" tap=tap0 fwd_tcp="" fwd_udp="" pidfile="" rundir=${TMPDIR:-/tmp}
while [ $# -gt 0 ]; do
	case "$1" in
	--lib) lib=$2; shift 2 ;;
	--mtu) mtu=$2; shift 2 ;;
	--netns) netns=$2; shift 2 ;;
	--tap) tap=$2; shift 2 ;;
	--fwd-tcp) fwd_tcp=$2; shift 2 ;;
	--fwd-udp) fwd_udp=$2; shift 2 ;;
	--pidfile) pidfile=$2; shift 2 ;;
	--rundir) rundir=$2; shift 2 ;;
	*) echo "slirp4netns-plugin: unknown option $1" >&2; exit 2 ;;
	esac
done
[ -n "$lib" ] && [ -n "$netns" ] || { echo "slirp4netns-plugin: --lib and --netns are required" >&2; exit 2; }
if [ "$lib" = system ]; then
	unset LD_LIBRARY_PATH
else
	[ -e "$lib/libslirp.so.0" ] || { echo "slirp4netns-plugin: no $lib/libslirp.so.0" >&2; exit 1; }
	export LD_LIBRARY_PATH=$lib
fi
sock=$rundir/slirp4netns-$$.sock
rm -f "$sock"
slirp4netns --configure --mtu="$mtu" --netns-type=path --api-socket "$sock" "$netns" "$tap" &
pid=$!
[ -n "$pidfile" ] && echo "$pid" >"$pidfile"
trap 'kill -TERM $pid 2>/dev/null' TERM INT
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
python3 - "$sock" "$fwd_tcp" "$fwd_udp" <<-'EOF' || { kill -TERM $pid; wait $pid; exit 1; }
import json, socket, sys
sock, tcp, udp = sys.argv[1:4]
for proto, ports in (("tcp", tcp), ("udp", udp)):
    for port in filter(None, ports.split(",")):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(5)
        s.connect(sock)
        s.sendall(json.dumps({"execute": "add_hostfwd", "arguments": {
            "proto": proto, "host_addr": "127.0.0.1", "host_port": int(port),
            "guest_port": int(port)}}).encode())
        r = s.recv(4096).decode()
        s.close()
        if "error" in r:
            sys.exit("slirp4netns-plugin: add_hostfwd %s %s: %s" % (proto, port, r))
EOF
# LD_LIBRARY_PATH reaches slirp4netns only: say which library it mapped
grep -m1 -o '/[^ ]*libslirp[^ ]*' "/proc/$pid/maps" | sed 's/^/slirp4netns-plugin: mapped /' >&2
while :; do # a trapped signal interrupts wait: wait again until it is gone
	wait $pid
	rc=$?
	kill -0 $pid 2>/dev/null || break
done
rm -f "$sock"
exit $rc
