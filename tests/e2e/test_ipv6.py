#!/usr/bin/env python3
"""IPv6: a namespace guest configures itself from usernet's router
advertisements (SLAAC, default route, RDNSS), pings the gateway's addresses,
and reaches the host's ::1 through fec0::2 and a routed remote namespace
over TCP and UDP; refused and unreachable destinations fail at once; port
forwards reach the guest over IPv6 from the host's ::1 and from a remote
IPv6 client, whose address the guest sees; the
source guard keeps a guest's router advertisements and spoofed neighbor
advertisements off the LAN; --no-ipv6 turns it all off."""

import json
import os
import re
import socket
import sys
import time
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlab  # noqa: E402
from netlab import (DNS6, GATEWAY6, GATEWAY6_LL, HOST_VETH_ADDR, HOST_VETH_ADDR6,  # noqa: E402
                    MiB, REMOTE_ADDR, REMOTE_ADDR6)

netlab.require_basics()
netlab.require_tools("curl", "rdisc6", "dhclient")

BIG = 64 * MiB

UDP_CLIENT = r"""
import socket, sys
addr, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
data = bytes(range(256)) * (size // 256) + bytes(size % 256)
for attempt in range(5):
    s.sendto(data, (addr, port))
    try:
        got, peer = s.recvfrom(65535)
    except socket.timeout:
        continue
    print("ECHO", len(got), got == data, peer[0])
    break
else:
    print("NO ANSWER")
"""


UDP_REFUSED = r"""
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.settimeout(2)
# getaddrinfo keeps a %scope (a bare tuple would lose it)
s.connect(socket.getaddrinfo(sys.argv[1], int(sys.argv[2]), socket.AF_INET6)[0][4])
for attempt in range(5):
    try:
        s.send(b"anyone?")
        s.recv(100)
        print("ANSWERED")
        break
    except ConnectionRefusedError:
        print("REFUSED")
        break
    except socket.timeout:
        continue
else:
    print("NO ANSWER")
"""


# dhclient's script (-sf): records what each run was told and, when it is
# bound, puts the address on the interface as dhclient-script would, without
# touching /etc/resolv.conf.
DHCLIENT_SCRIPT = r"""#!/bin/sh
{
  echo "reason=$reason"
  echo "address=$new_ip6_address/$new_ip6_prefixlen"
  echo "dns=$new_dhcp6_name_servers"
  echo "search=$new_dhcp6_domain_search"
  echo "bootfile=$new_dhcp6_bootfile_url"
} >> "$(dirname "$0")/dhclient.out"
case "$reason" in
BOUND6|RENEW6|REBIND6)
  [ -n "$new_ip6_address" ] && ip -6 addr replace "$new_ip6_address/$new_ip6_prefixlen" dev "$interface" \
      valid_lft "$new_max_life" preferred_lft "$new_preferred_life" ;;
esac
exit 0
"""


# Asks a whoami server (servers.py) who it sees, over TCP ("tcp") or UDP,
# retrying while the forward's path is not ready.
WHO_SEES_ME = r"""
import socket, sys, time
proto, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
deadline = time.monotonic() + 15
while True:
    try:
        if proto == "tcp":
            s = socket.create_connection((addr, port), timeout=3)
            got = s.recv(200)
        else:
            s = socket.socket(fam, socket.SOCK_DGRAM)
            s.settimeout(1)
            s.sendto(b"who?", (addr, port))
            got, peer = s.recvfrom(200)
            if peer[0] != addr or peer[1] != port:
                print("FAIL reply from", peer); break
        s.close()
        if got:
            print(got.decode().strip()); break
    except OSError as e:
        if time.monotonic() > deadline:
            print("FAIL", e); break
        time.sleep(0.3)
"""


# Counts the UDP datagrams that reach [::1]:PORT on the host; prints the
# count on SIGTERM.
V6_WATCHER = r"""
import signal, socket, sys
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u.bind(("::1", int(sys.argv[1])))
got = []
def done(*_):
    print("GOT", len(got), flush=True); sys.exit(0)
signal.signal(signal.SIGTERM, done)
print("ready", flush=True)
while True:
    got.append(u.recvfrom(2048)[1][0])
"""

# Sends SIZE bytes to [ADDR]:PORT and prints how much of them the ICMPv6
# error that comes back quotes (the kernel hands the quoted payload to
# MSG_ERRQUEUE).
ERRQUEUE_QUOTE = r"""
import select, socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, 25, 1)  # IPV6_RECVERR
s.connect((sys.argv[1], int(sys.argv[2])))
s.send(bytes(int(sys.argv[3])))
for _ in range(50):
    select.select([s], [], [], 0.2)
    try:
        data, anc, flags, addr = s.recvmsg(65536, 512, socket.MSG_ERRQUEUE)
    except BlockingIOError:
        continue
    print("QUOTED", len(data), flush=True)
    break
else:
    print("NO ERROR", flush=True)
"""

RAW = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rawframes.py")


def raw(ns, spec, timeout=60):
    """Runs rawframes.py in ns (a hostile guest's frames); returns its report."""
    r = ns.run([netlab.PY, RAW, json.dumps(spec)], timeout=timeout)
    return json.loads(r.stdout.strip().splitlines()[-1])


def start_dnsmasq6(host, port, records):
    """dnsmasq on the host's ::1:PORT answering records (its --address= and
    --host-record= arguments); returns once it listens."""
    argv = ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--bind-interfaces", "--listen-address=::1", "--port=%d" % port, "--pid-file=",
            "--user=root"] + list(records)
    p = host.popen(argv, name="dnsmasq")

    def up():
        if p.poll() is not None:
            raise AssertionError("dnsmasq died:\n" + p.describe())
        return "::1" in host.run(["ss", "-lunH", "sport = :%d" % port], check=False).stdout
    netlab.wait_for(up, 10, what="dnsmasq listening")
    return p


def link_local(ns, ifname="tap0"):
    out = ns.run(["ip", "-6", "addr", "show", "dev", ifname]).stdout
    return re.search(r"inet6 (fe80:[0-9a-f:]+)/64", out).group(1)


def global_addrs(ns, ifname="tap0"):
    """The guest's usable (not tentative) addresses in fec0::/64 from SLAAC
    (not the one --config-net gives)."""
    out = ns.run(["ip", "-6", "addr", "show", "dev", ifname]).stdout
    return [m.group(1) for m in re.finditer(
        r"inet6 (fec0:[0-9a-f:]+)/64 scope site dynamic(?![^\n]*tentative)", out)]


class V6Lab:
    def __init__(self, lab, extra=(), remote=True, before=None, config_net=True, mtu=None):
        self.lab = lab
        self.host = lab.netns("host")
        self.guest = lab.netns("guest")
        self.remote = lab.remote(self.host) if remote else None
        if before:
            before(self.host)
        netns = self.guest.path + (",mtu=%d" % mtu if mtu else "")
        args = ["--netns", netns] + (["--config-net"] if config_net else []) + list(extra)
        self.un = lab.usernet(self.host, args, wait=[("link", self.guest, "tap0")])

    def wait_slaac(self):
        netlab.wait_for(lambda: global_addrs(self.guest), 15, what="an address from SLAAC")
        netlab.wait_for(lambda: "default via " + GATEWAY6_LL in
                        self.guest.run(["ip", "-6", "route"]).stdout, 10,
                        what="a default route from the router advertisement")
        return global_addrs(self.guest)[0]


class Ipv6Test(unittest.TestCase):
    def _ping_through_the_nat(self, ping_sockets):
        with netlab.Lab("ipv6") as lab:
            def set_ping_group_range(host):
                # New namespaces start with "1 0", which forbids ICMP echo
                # sockets (IPv6's too) even to root: usernet falls back to
                # raw sockets unless they are allowed.
                if ping_sockets:
                    host.run(["sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"])
                else:
                    self.assertIn("1\t0", host.run(["sysctl", "-n", "net.ipv4.ping_group_range"]).stdout)
            t = V6Lab(lab, before=set_ping_group_range)
            t.wait_slaac()
            for a in (REMOTE_ADDR6, GATEWAY6):
                r = netlab.ping(t.guest, a, count=3)
                self.assertIn("3 packets received", r.stdout, a)
            # An address the host has no route to: an ICMPv6 error at once.
            r = netlab.ping(t.guest, "2001:db8:99::1", count=1, check=False)
            self.assertNotIn("1 packets received", r.stdout)
            self._icmp6_trace(lab, t)
            lab.assert_alive(t.un)

    def _icmp6_trace(self, lab, t):
        """Echo requests with hop limits 1, 2 and 3 toward a namespace two
        routers away: time exceeded from the gateway, then from the remote
        router (an ICMPv6 error the host's socket got, quoting our request),
        then the reply."""
        far = lab.netns("far")
        rn, fn = lab.veth(t.remote, far)
        t.remote.run(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
        for ns, dev, addr in ((t.remote, rn, "2001:db8:2::1/64"), (far, fn, "2001:db8:2::2/64")):
            ns.add_addr6(addr, dev)
        far.run(["ip", "-6", "route", "add", "default", "via", "2001:db8:2::1"])
        t.host.run(["ip", "-6", "route", "add", "2001:db8:2::/64", "via", REMOTE_ADDR6])
        code = r"""
import socket, struct, select, time
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
for hl in (1, 2, 3):
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, hl)
    s.sendto(struct.pack("!BBHHH", 128, 0, 0, 0x4242, hl) + b"hello!", ("2001:db8:2::2", 0))
    end = time.time() + 3
    got = "nothing"
    while time.time() < end:
        if not select.select([s], [], [], 0.2)[0]: continue
        p, a = s.recvfrom(2000)
        t, c = p[0], p[1]
        if t == 129:
            qid, qseq = struct.unpack("!HH", p[4:8])
        elif t in (1, 3) and len(p) >= 56 and p[48] == 128:
            qid, qseq = struct.unpack("!HH", p[52:56])
        else:
            continue
        got = "type %d code %d from %s id %x seq %d" % (t, c, a[0], qid, qseq); break
    print("hl", hl, got, flush=True)
"""
        r = t.guest.py(code, check=False, timeout=30)
        self.assertIn("hl 1 type 3 code 0 from %s id 4242 seq 1" % GATEWAY6, r.stdout, r.stderr)
        self.assertIn("hl 2 type 3 code 0 from %s id 4242 seq 2" % REMOTE_ADDR6, r.stdout, r.stderr)
        self.assertIn("hl 3 type 129 code 0 from 2001:db8:2::2 id 4242 seq 3", r.stdout, r.stderr)

    def test_ping_through_the_nat_with_ping_sockets(self):
        self._ping_through_the_nat(ping_sockets=True)

    def test_ping_through_the_nat_with_the_raw_socket_fallback(self):
        self._ping_through_the_nat(ping_sockets=False)

    def test_slaac_router_advertisement_and_ping(self):
        with netlab.Lab("ipv6") as lab:
            t = V6Lab(lab, remote=False)
            addr = t.wait_slaac()
            self.assertTrue(addr.startswith("fec0::"), addr)
            # --config-net's address and route, next to SLAAC's.
            self.assertIn("inet6 fec0::f/64", t.guest.run(["ip", "-6", "addr"]).stdout)
            self.assertIn("default via fec0::2", t.guest.run(["ip", "-6", "route"]).stdout)
            r = t.guest.run(["busybox", "ping", "-c", "2", "-W", "3", "-I", "fec0::f", GATEWAY6],
                            timeout=20)
            self.assertIn("2 packets received", r.stdout)
            # What the advertisement carries, as rdisc6 reads it.
            r = t.guest.run(["rdisc6", "-1", "-w", "2000", "tap0"], timeout=15)
            self.assertIn("fec0::/64", r.stdout)
            self.assertRegex(r.stdout, r"Recursive DNS server\s*:\s*fec0::3")
            self.assertRegex(r.stdout, r"MTU\s*:\s*65520")
            self.assertIn("52:55:0A:00:02:02", r.stdout.upper())
            for a in (GATEWAY6, DNS6, GATEWAY6_LL + "%tap0"):
                r = netlab.ping(t.guest, a, count=2)
                self.assertIn("2 packets received", r.stdout, a)
            lab.assert_alive(t.un)

    def _both_ways(self, lab, t, server_ns, bind, addr):
        """64 MiB down and up with sha256, between the guest and a server at bind."""
        path, sha = lab.make_file(BIG, "big.bin")
        srv = server_ns.server("http", "--bind", bind, "--dir", lab.dir)
        base = "http://[%s]:%d/" % (addr, srv.port)
        out = lab.path("got.bin")
        netlab.curl(t.guest, ["-g", "--max-time", "100", "-o", out, base + "big.bin"], timeout=120)
        self.assertEqual(netlab.sha256_file(out), sha)
        r = netlab.curl(t.guest, ["-g", "--max-time", "100", "-T", path, base + "upload"], timeout=120)
        self.assertEqual(r.stdout.split(), [sha, str(BIG)])
        lab.assert_alive(t.un)

    def test_tcp_both_ways_to_the_hosts_loopback_through_the_gateway(self):
        with netlab.Lab("ipv6") as lab:
            t = V6Lab(lab, remote=False)
            t.wait_slaac()
            self._both_ways(lab, t, t.host, "::1", GATEWAY6)

    def test_the_gateways_link_local_address_reaches_the_hosts_loopback_too(self):
        # The guest's default router is the gateway's link-local address
        # (from the router advertisement); as in libslirp and passt it is
        # the gateway, TCP and UDP included, not a black hole.
        with netlab.Lab("ipv6") as lab:
            t = V6Lab(lab, remote=False)
            t.wait_slaac()
            ll = GATEWAY6_LL + "%tap0"
            web = t.host.server("http", "--bind", "::1", "--dir", lab.dir)
            with open(os.path.join(lab.dir, "hello.txt"), "w") as f:
                f.write("hello over link-local\n")
            r = netlab.curl(t.guest, ["-g", "--max-time", "20", "http://[%s]:%d/hello.txt"
                                      % (GATEWAY6_LL + "%25tap0", web.port)], timeout=30)
            self.assertEqual(r.stdout, "hello over link-local\n")
            echo = t.host.server("udp-echo", "--bind", "::1", "--port", "0")
            r = t.guest.py(UDP_CLIENT, ll, echo.port, 100, timeout=30)
            self.assertIn("ECHO 100 True " + GATEWAY6_LL, r.stdout)
            # Closed ports: a reset and a port unreachable, at once.
            r = netlab.curl(t.guest, ["-v", "-g", "--max-time", "20", "http://[%s]:%d/"
                                      % (GATEWAY6_LL + "%25tap0", netlab.free_port())],
                            timeout=30, check=False)
            self.assertIn("Connection refused", r.stderr)
            r = t.guest.py(UDP_REFUSED, ll, netlab.free_port(socket.SOCK_DGRAM), timeout=30)
            self.assertIn("REFUSED", r.stdout)
            lab.assert_alive(t.un)

    def test_tcp_both_ways_to_a_routed_remote_address(self):
        with netlab.Lab("ipv6") as lab:
            t = V6Lab(lab)
            t.wait_slaac()
            self._both_ways(lab, t, t.remote, REMOTE_ADDR6, REMOTE_ADDR6)

    def test_udp_echo_to_the_host_and_to_the_remote(self):
        with netlab.Lab("ipv6") as lab:
            t = V6Lab(lab)
            me = t.wait_slaac()
            local = t.host.server("udp-echo", "--bind", "::1", "--port", "0")
            far = t.remote.server("udp-echo", "--bind", REMOTE_ADDR6, "--port", "0")
            for addr, port in ((GATEWAY6, local.port), (REMOTE_ADDR6, far.port)):
                for size in (10, 1200):
                    r = t.guest.py(UDP_CLIENT, addr, port, size, timeout=30)
                    self.assertIn("ECHO %d True %s" % (size, addr), r.stdout, (addr, size))
            self.assertTrue(me.startswith("fec0::"))
            # A closed port: ICMPv6 port unreachable, which a connected
            # socket reports as ECONNREFUSED.
            r = t.guest.py(UDP_REFUSED, GATEWAY6, netlab.free_port(socket.SOCK_DGRAM), timeout=30)
            self.assertIn("REFUSED", r.stdout)
            lab.assert_alive(t.un)

    def test_datagrams_larger_than_the_mtu_go_as_fragments_both_ways(self):
        # MTU 1500: the guest fragments what it sends, usernet reassembles
        # it; the echo comes back as large, and usernet fragments it.
        with netlab.Lab("ipv6") as lab:
            t = V6Lab(lab, mtu=1500)
            t.wait_slaac()
            local6 = t.host.server("udp-echo", "--bind", "::1", "--port", "0")
            local4 = t.host.server("udp-echo", "--bind", "127.0.0.1", "--port", "0")
            far6 = t.remote.server("udp-echo", "--bind", REMOTE_ADDR6, "--port", "0")
            for addr, port in ((GATEWAY6, local6.port), (REMOTE_ADDR6, far6.port),
                               ("10.0.2.2", local4.port)):
                for size in (4000, 30000):
                    r = t.guest.py(UDP_CLIENT, addr, port, size, timeout=30)
                    self.assertIn("ECHO %d True %s" % (size, addr), r.stdout, (addr, size))
            # ping with 3000 bytes of data: echo requests and replies in fragments.
            for a in (GATEWAY6, "10.0.2.2"):
                r = t.guest.run(["busybox", "ping", "-c", "2", "-W", "3", "-s", "3000", a],
                                timeout=20)
                self.assertIn("2 packets received", r.stdout, a)
            lab.assert_alive(t.un)

    def test_a_hostile_guest_gets_nothing_over_ipv6(self):
        """g2 (raw frames) advertises itself as a router, claims g1's address
        by neighbor advertisement, sends from g1's address, floods
        fragments and overlapping ones, and sends extension header chains
        too long or cut short: g1 keeps its configuration and its traffic,
        its own fragmented datagrams included, and nothing spoofed reaches
        the host."""
        with netlab.Lab("ipv6") as lab:
            host = lab.netns("host")
            g1 = lab.netns("g1")
            g2 = lab.netns("g2")
            un = lab.usernet(host, ["--netns", g1.path + ",mtu=1500", "--netns", g2.path,
                                    "--config-net"],
                             wait=[("link", g1, "tap0"), ("link", g2, "tap0")])
            netlab.wait_for(lambda: global_addrs(g1), 15, what="g1's address from SLAAC")
            netlab.wait_for(lambda: global_addrs(g2), 15, what="g2's address from SLAAC")
            victim = global_addrs(g1)[0]
            mine = link_local(g2)
            port = netlab.free_port(socket.SOCK_DGRAM)
            watcher = host.popen([netlab.PY, "-c", V6_WATCHER, str(port)], name="watcher")
            netlab.wait_for(lambda: "ready" in watcher.stdout(), 10, what="the watcher")
            echo = host.server("udp-echo", "--bind", "::1", "--port", "0")
            flood = [{"kind": "frag6", "src": global_addrs(g2)[0], "dst": GATEWAY6, "dport": port,
                      "size": 3000, "id": i, "pieces": [[0, 1448, 1]]} for i in range(1, 41)]
            frames = [
                {"kind": "ra6", "src": mine, "prefix": "2001:db8:bad::"},
                {"kind": "na6", "src": mine, "target": victim},
                {"kind": "udp6", "src": victim, "dst": GATEWAY6, "sport": 4000, "dport": port},
                {"kind": "chain6", "src": global_addrs(g2)[0], "dst": GATEWAY6, "dport": port, "n": 9},
                {"kind": "chain6", "src": global_addrs(g2)[0], "dst": GATEWAY6, "dport": port, "n": 3,
                 "cut": 21},
                {"kind": "frag6", "src": global_addrs(g2)[0], "dst": GATEWAY6, "dport": port,
                 "size": 3000, "id": 99, "pieces": [[0, 1448, 1], [1440, 1568, 0]]},
            ] + flood
            raw(g2, {"ifname": "tap0", "frames": frames, "repeat": 3, "gap": 0.2})
            time.sleep(1)
            addrs = g1.run(["ip", "-6", "addr"]).stdout + g1.run(["ip", "-6", "route"]).stdout
            self.assertNotIn("2001:db8:bad", addrs, "g1 took g2's router advertisement")
            self.assertNotIn(mine, addrs, "g1 routes through g2")
            # g1's traffic, fragmented datagrams included, goes on.
            for size in (100, 4000):
                r = g1.py(UDP_CLIENT, GATEWAY6, echo.port, size, timeout=30)
                self.assertIn("ECHO %d True %s" % (size, GATEWAY6), r.stdout, size)
            self.assertIn("2 packets received", netlab.ping(g1, GATEWAY6, count=2).stdout)
            watcher.stop()
            self.assertIn("GOT 0", watcher.stdout(), "spoofed or malformed datagrams reached the host")
            lab.assert_alive(un)

    def test_routing_header_type_0_gets_a_parameter_problem(self):
        """RFC 5095: a guest's echo request behind a type 0 routing header
        with a segment left, to the gateway or to be routed, comes back as
        an ICMPv6 Parameter Problem (code 0, pointing at the routing type,
        quoting the request); with no segment left the header is ignored and
        the gateway answers the echo."""
        with netlab.Lab("ipv6") as lab:
            host = lab.netns("host")
            g = lab.netns("g")
            un = lab.usernet(host, ["--netns", g.path, "--config-net"], wait=[("link", g, "tap0")])
            netlab.wait_for(lambda: global_addrs(g), 15, what="the address from SLAAC")
            mine = global_addrs(g)[0]
            for dst in (GATEWAY6, "2001:db8::1"):
                got = raw(g, {"ifname": "tap0", "listen": 2,
                              "frames": [{"kind": "echo6", "src": mine, "dst": dst, "rh0_left": 1}]})
                pp = [d for d in got["got"] if d.get("type") == 4]
                self.assertEqual(len(pp), 1, (dst, got))
                self.assertEqual((pp[0]["code"], pp[0]["param"], pp[0]["quoted_nh"]), (0, 42, 43), dst)
                self.assertEqual(pp[0]["dst6"], mine)
            got = raw(g, {"ifname": "tap0", "listen": 2,
                          "frames": [{"kind": "echo6", "src": mine, "dst": GATEWAY6, "rh0_left": 0}]})
            self.assertTrue([d for d in got["got"] if d.get("type") == 129], got)
            lab.assert_alive(un)

    def test_refused_and_unreachable_fail_at_once(self):
        with netlab.Lab("ipv6") as lab:
            t = V6Lab(lab)
            t.wait_slaac()
            closed = netlab.free_port()
            for url, why in (("http://[%s]:%d/" % (GATEWAY6, closed), "Connection refused"),
                             ("http://[%s]:%d/" % (REMOTE_ADDR6, closed), "Connection refused"),
                             # no route on the host: ICMPv6 destination unreachable
                             ("http://[2001:db8:99::1]:80/", "Network is unreachable")):
                t0 = time.monotonic()
                r = netlab.curl(t.guest, ["-v", "-g", "--max-time", "20", "-o", "/dev/null", url],
                                timeout=30, check=False)
                dt = time.monotonic() - t0
                self.assertNotEqual(r.returncode, 0, url)
                self.assertNotEqual(r.returncode, 28, "%s timed out instead of failing" % url)
                self.assertIn(why, r.stderr, url)
                self.assertLess(dt, 10, url)
            lab.assert_alive(t.un)

    def test_a_port_unreachable_quotes_as_much_as_fits_in_1280_bytes(self):
        """RFC 4443 2.4 (c): the error about a 3000-byte datagram to a closed
        port on the host quotes 1184 bytes of its payload (1280 less two
        IPv6, one ICMPv6 and one UDP header), not IPv4's 576-byte share."""
        with netlab.Lab("ipv6") as lab:
            t = V6Lab(lab)
            t.wait_slaac()
            closed = netlab.free_port(socket.SOCK_DGRAM)
            r = t.guest.py(ERRQUEUE_QUOTE, GATEWAY6, closed, 3000, timeout=30)
            self.assertIn("QUOTED 1184", r.stdout, r.stdout + r.stderr)
            lab.assert_alive(t.un)

    def test_forwards_reach_the_guest_over_ipv6(self):
        with netlab.Lab("ipv6") as lab:
            p = netlab.free_port()
            q = netlab.free_port(exclude=(p,))
            r = netlab.free_port(exclude=(p, q))
            # Without an address (both families), bracketed, and passt's
            # unbracketed form; TCP and UDP alike.
            fwd = ["-t", str(p), "-u", str(p), "-t", "[::1]/%d:%d" % (q, p),
                   "-u", "::1/%d:%d" % (r, p)]
            t = V6Lab(lab, extra=fwd)
            me = t.wait_slaac()
            t.guest.server("whoami", "--bind", "::", "--port", p)
            for proto in ("tcp", "udp"):
                # The host's ::1 appears as the IPv6 gateway, a remote IPv6
                # client as itself; IPv4 clients reach the guest's IPv4
                # address, the same way.
                for ns, addr, port, want in ((t.host, "::1", p, GATEWAY6),
                                             (t.remote, HOST_VETH_ADDR6, p, REMOTE_ADDR6),
                                             (t.host, "127.0.0.1", p, "10.0.2.2"),
                                             (t.remote, HOST_VETH_ADDR, p, REMOTE_ADDR),
                                             (t.host, "::1", q if proto == "tcp" else r, GATEWAY6)):
                    got = ns.py(WHO_SEES_ME, proto, addr, port, timeout=30).stdout.strip()
                    self.assertEqual(got, "PEER " + want, (proto, addr, port))
            # The guest's server saw them on its SLAAC address.
            self.assertTrue(me.startswith("fec0::"))
            lab.assert_alive(t.un)

    def _dhclient(self, lab, t, *args):
        """Runs dhclient -6 once (args: more options); returns what its
        script was told, as a dict of the last run."""
        script = lab.path("dhclient-script")
        with open(script, "w") as f:
            f.write(DHCLIENT_SCRIPT)
        os.chmod(script, 0o755)
        out = lab.path("dhclient.out")
        if os.path.exists(out):
            os.remove(out)
        pid = lab.path("dhclient.pid")
        try:
            conf = lab.path("dhclient.conf")
            with open(conf, "w") as f:
                f.write("also request dhcp6.bootfile-url;\n")
            r = t.guest.run(["dhclient", "-6", "-1", "-v", "-lf", lab.path("dhclient.leases"),
                             "-cf", conf, "-pf", pid, "-sf", script] + list(args) + ["tap0"],
                            timeout=40, check=False)
            self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        finally:
            # -1 stays in the background once bound, to renew: stop it.
            t.guest.run(["dhclient", "-6", "-x", "-pf", pid, "-sf", script, "tap0"],
                        timeout=20, check=False)
        with open(out) as f:
            runs = f.read().split("reason=")[1:]
        self.assertTrue(runs, "dhclient's script never ran")
        return dict(line.split("=", 1) for line in ("reason=" + runs[-1]).splitlines() if "=" in line)

    def test_dhcpv6_address_dns_and_search_list(self):
        with netlab.Lab("ipv6") as lab:
            os.mkdir(lab.path("tftp"))
            t = V6Lab(lab, extra=["--domain", "example.test", "--tftp", lab.path("tftp"),
                                  "--bootfile", "boot.efi"], remote=False)
            t.wait_slaac()
            # A dual-stack guest: its IPv4 address is known once it used it.
            netlab.ping(t.guest, "10.0.2.2", count=1)
            got = self._dhclient(lab, t)
            self.assertEqual(got["reason"], "BOUND6", got)
            # The address that goes with 10.0.2.15, the DNS server, the domain.
            self.assertEqual(got["address"], "fec0::f/128", got)
            self.assertEqual(got["dns"].split(), [DNS6], got)
            self.assertEqual(got["search"].split(), ["example.test."], got)
            # Asked for (the ORO), the boot file as a URL on our TFTP server.
            self.assertEqual(got["bootfile"], "tftp://[%s]/boot.efi" % GATEWAY6, got)
            # Stateless (Information-Request): the options without an address.
            got = self._dhclient(lab, t, "-S")
            self.assertEqual(got["dns"].split(), [DNS6], got)
            self.assertEqual(got["address"], "/", got)
            lab.assert_alive(t.un)

    def test_dhcpv6_address_for_a_guest_without_ipv4(self):
        with netlab.Lab("ipv6") as lab:
            t = V6Lab(lab, remote=False, config_net=False)
            t.guest.run(["ip", "link", "set", "tap0", "up"])
            t.wait_slaac()
            got = self._dhclient(lab, t)
            self.assertEqual(got["reason"], "BOUND6", got)
            addr = got["address"].split("/")[0]
            self.assertTrue(addr.startswith("fec0::1:0:"), got)
            # The address works once the kernel's duplicate address detection is done.
            netlab.wait_for(lambda: re.search(r"inet6 %s/128 scope site(?![^\n]*tentative)" % addr,
                                              t.guest.run(["ip", "-6", "addr"]).stdout), 10,
                            what="the DHCPv6 address to leave DAD")
            r = t.guest.run(["busybox", "ping", "-c", "2", "-W", "3", "-I", addr, GATEWAY6],
                            timeout=20)
            self.assertIn("2 packets received", r.stdout)
            lab.assert_alive(t.un)

    def test_dns_over_ipv6(self):
        """fec0::3 is the DNS forwarder's, as 10.0.2.3 is: the first upstream
        (nothing listens there) fails over to the second at once, and an
        answer too large for UDP comes back truncated, then over TCP."""
        with netlab.Lab("ipv6") as lab:
            port = netlab.free_port()
            dead = netlab.free_port(socket.SOCK_DGRAM, exclude=(port,))

            def resolver(host):
                # The upstream: dnsmasq on the host's ::1, answering for two names.
                start_dnsmasq6(host, port, ["--address=/v6.test/2001:db8::42", "--address=/v6.test/192.0.2.42"] +
                               ["--host-record=big.v6.test,2001:db8::%x" % i for i in range(1, 60)])

            t = V6Lab(lab, extra=["--dns-upstream", "[::1]:%d" % dead,
                                  "--dns-upstream", "[::1]:%d" % port], remote=False, before=resolver)
            t.wait_slaac()
            for qtype, want in (("AAAA", "2001:db8::42"), ("A", "192.0.2.42")):
                # One try of 2 s: the dead first upstream must not cost a retry.
                r = t.guest.run(["dig", "+short", "+time=2", "+tries=1", "@" + DNS6, qtype, "v6.test"],
                                timeout=20)
                self.assertEqual(r.stdout.split(), [want], qtype)
            # 59 AAAA records (~1.8 KB) do not fit 512 bytes without EDNS:
            # the UDP answer has TC set, and dig asks again over TCP.
            r = t.guest.run(["dig", "+time=3", "+tries=2", "+noedns", "@" + DNS6, "AAAA", "big.v6.test"],
                            timeout=30)
            self.assertIn("Truncated, retrying in TCP mode", r.stdout)
            self.assertEqual(len(re.findall(r"\sAAAA\s+2001:db8::", r.stdout)), 59, r.stdout)
            lab.assert_alive(t.un)

    def test_happy_eyeballs_through_both_families(self):
        """A dual-stack guest resolving through fec0::3 names with an A and
        an AAAA record: curl gets through whichever family works, without
        waiting for the other to time out (an unroutable address of the
        other family fails at once). With both working, glibc orders the
        answers by RFC 6724: a site-local fec0:: source does not match a
        global IPv6 destination's label and an IPv4 one does, so IPv4 comes
        first, as it would for a QEMU guest."""
        with netlab.Lab("ipv6") as lab:
            port = netlab.free_port()

            def resolver(host):
                # 203.0.113.9 and 2001:db8:99::1: the host has no route there.
                start_dnsmasq6(host, port, [
                    "--address=/v6works.test/%s" % REMOTE_ADDR6, "--address=/v6works.test/203.0.113.9",
                    "--address=/v4works.test/%s" % REMOTE_ADDR, "--address=/v4works.test/2001:db8:99::1",
                    "--address=/both.test/%s" % REMOTE_ADDR6, "--address=/both.test/%s" % REMOTE_ADDR])

            t = V6Lab(lab, extra=["--dns-upstream", "[::1]:%d" % port], before=resolver)
            t.guest.resolv_conf("nameserver %s\n" % DNS6)
            t.wait_slaac()
            lab.make_file(4096, "f.bin")
            srv = t.remote.server("http", "--bind", "::", "--dir", lab.dir)
            for name, want in (("v6works.test", REMOTE_ADDR6), ("v4works.test", REMOTE_ADDR),
                               ("both.test", REMOTE_ADDR)):
                r = netlab.curl(t.guest, ["--max-time", "20", "-o", "/dev/null", "-w",
                                          "%{remote_ip} %{time_total}",
                                          "http://%s:%d/f.bin" % (name, srv.port)], timeout=30)
                got, seconds = r.stdout.split()
                self.assertEqual(got, want, name)
                # Not by a timeout: a SYN retry alone would take a second.
                self.assertLess(float(seconds), 1.0, name)
            lab.assert_alive(t.un)

    def test_config_net_skips_ipv6_where_the_namespace_has_none(self):
        # A container with IPv6 turned off, or a link MTU below IPv6's 1280:
        # --config-net sets up IPv4, warns, and runs (it used to stop with
        # 'cannot add address fec0::f/64 ... run usernet as root').
        with netlab.Lab("ipv6") as lab:
            host = lab.netns("host")
            off = lab.netns("off")
            off.run(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                     "net.ipv6.conf.default.disable_ipv6=1"])
            small = lab.netns("small")
            un = lab.usernet(host, ["--netns", off.path, "--netns", small.path + ",mtu=1279",
                                    "--config-net"],
                             wait=[("link", off, "tap0"), ("link", small, "tap0")])
            for ns in (off, small):
                self.assertIn("1 packets received", netlab.ping(ns, netlab.GATEWAY, count=1).stdout)
            lab.assert_alive(un)
            un.stop()
            self.assertIn("IPv6 is disabled there", un.stderr())
            self.assertIn("its MTU 1279 is below IPv6's 1280", un.stderr())

    def test_no_ipv6_turns_it_off(self):
        with netlab.Lab("ipv6") as lab:
            t = V6Lab(lab, extra=["--no-ipv6"], remote=False)
            time.sleep(3)  # the router advertisement would have come by now
            self.assertEqual(global_addrs(t.guest), [])
            r = netlab.ping(t.guest, GATEWAY6_LL + "%tap0", count=1, check=False)
            self.assertNotEqual(r.returncode, 0)
            lab.assert_alive(t.un)


if __name__ == "__main__":
    netlab.main()
