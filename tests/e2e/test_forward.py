#!/usr/bin/env python3
"""Port forwards (-t / -u, passt syntax): a connection from the host namespace
to HOSTPORT reaches a server listening on GUESTPORT in the guest."""

import os
import sys
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlab  # noqa: E402
from netlab import HOST_VETH_ADDR  # noqa: E402

netlab.require_basics()

TCP_CLIENT = r"""
import os, socket, sys, time
addr, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
deadline = time.monotonic() + float(sys.argv[4])
msg = os.urandom(size)
# Retry only while the path is not ready yet: the forward's listener refuses,
# or the guest's server is not listening, so the connection is closed or
# reset before a single byte came back.  Anything else -- a short, long or
# different echo -- is corruption and fails at once.
while True:
    got = b""
    try:
        s = socket.create_connection((addr, port), timeout=10)
        try:
            s.sendall(msg)
            s.shutdown(socket.SHUT_WR)
            while True:
                b = s.recv(65536)
                if not b: break
                got += b
        finally:
            s.close()
    except OSError as e:
        if got:
            print("FAIL after %d of %d bytes: %r" % (len(got), len(msg), e)); break
        if time.monotonic() > deadline:
            print("FAIL", e); break
        time.sleep(0.2); continue
    if got == msg:
        print("OK"); break
    if got:
        n = next((i for i, (a, b) in enumerate(zip(got, msg)) if a != b), min(len(got), len(msg)))
        print("FAIL echo mismatch: %d of %d bytes, first difference at %d" % (len(got), len(msg), n)); break
    if time.monotonic() > deadline:
        print("FAIL closed without an echo"); break
    time.sleep(0.2)
"""

UDP_CLIENT = r"""
import os, socket, sys, time
addr, port = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + float(sys.argv[3])
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.5)
ok = 0; n = 20
i = 0
sent = set()
# A datagram may be lost, or refused while the forward is not ready; then
# another is sent.  A late reply to an earlier datagram is expected then;
# any other reply (a corrupted or foreign datagram, a wrong source) fails.
while ok < n and time.monotonic() < deadline:
    msg = b"%d:" % i + os.urandom(100); i += 1
    sent.add(msg)
    try:
        s.sendto(msg, (addr, port))
        while True:
            b, peer = s.recvfrom(2048)
            if peer[:2] != (addr, port):
                print("FAIL reply from %r" % (peer,)); sys.exit(0)
            if b == msg:
                ok += 1; break
            if b not in sent:
                print("FAIL corrupted reply %r" % b[:40]); sys.exit(0)
    except (socket.timeout, ConnectionRefusedError):
        pass
print("OK" if ok == n else "FAIL %d/%d" % (ok, n))
"""


# One connection, no retry: prints CONNECTED once the host side accepted it,
# then OK if the echo comes back whole (however long the guest takes to come
# up), else what went wrong.
ONE_SHOT_CLIENT = r"""
import os, socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=90)
print("CONNECTED", flush=True)
msg = os.urandom(5000)
try:
    s.sendall(msg)
    s.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        b = s.recv(65536)
        if not b: break
        got += b
except OSError as e:
    print("FAIL", repr(e)); sys.exit(0)
print("OK" if got == msg else "FAIL %d of %d bytes" % (len(got), len(msg)))
"""

# A server that answers every connection with its own name, then closes.
NAME_SERVER = r"""
import socket, sys
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", int(sys.argv[1]))); ls.listen(8)
print("READY", int(sys.argv[1]), flush=True)
while True:
    c, _ = ls.accept(); c.sendall(sys.argv[2].encode()); c.close()
"""

# Connects to 127.0.0.1:PORT and prints what the server there says (a
# NAME_SERVER's name).
NAME_ASKER = r"""
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
b = b""
while True:
    x = s.recv(100)
    if not x: break
    b += x
print(b.decode())
"""

# A guest server on a TCP and a UDP port that answers each connection and
# datagram with "PEER <address> <port>" as it sees the client.
PEER_SERVER = r"""
import socket, sys, threading
port = int(sys.argv[1])
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", port)); ls.listen(16)
us = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); us.bind(("0.0.0.0", port))
print("READY", port, flush=True)
def udp():
    while True:
        _, peer = us.recvfrom(2048)
        us.sendto(("PEER %s %d" % peer).encode(), peer)
threading.Thread(target=udp, daemon=True).start()
def one(c, peer):
    with c:
        c.sendall(("PEER %s %d\n" % peer).encode())
        while c.recv(4096):
            pass
while True:
    c, peer = ls.accept()
    threading.Thread(target=one, args=(c, peer), daemon=True).start()
"""

# From source port SPORT to ADDR:PORT: a TCP connection held open HOLD
# seconds, and a datagram; prints the guest's two answers, "TCP PEER a p"
# and "UDP PEER a p".
SAME_PORT_CLIENT = r"""
import socket, sys, time
addr, port, sport, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("", sport)); t.settimeout(20); t.connect((addr, port))
line = b""
while not line.endswith(b"\n"):
    b = t.recv(100)
    if not b: break
    line += b
print("TCP", line.decode().strip(), flush=True)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("", sport)); u.settimeout(1)
for _ in range(10):
    u.sendto(b"?", (addr, port))
    try:
        print("UDP", u.recv(100).decode(), flush=True); break
    except socket.timeout:
        pass
time.sleep(hold)
t.close()
"""


class ForwardTest(unittest.TestCase):
    def _start(self, lab, fwd_args, dhcp=False, remote=False):
        host = lab.netns("host")
        guest = lab.netns("guest")
        r = lab.remote(host) if remote else None
        args = ["--netns", guest.path] + ([] if dhcp else ["--config-net"]) + list(fwd_args)
        un = lab.usernet(host, args, wait=[("link", guest, "tap0")])
        if dhcp:
            netlab.dhcp(lab, guest)
        else:
            netlab.wait_for(lambda: guest.addrs("tap0"), 10, what="address from --config-net")
        return host, guest, r, un

    def tcp_ok(self, ns, addr, port, size=100000):
        r = ns.py(TCP_CLIENT, addr, port, size, 15, timeout=60)
        self.assertEqual(r.stdout.strip(), "OK", "TCP forward %s:%d: %s %s" % (addr, port, r.stdout, r.stderr))

    def udp_ok(self, ns, addr, port):
        r = ns.py(UDP_CLIENT, addr, port, 15, timeout=60)
        self.assertEqual(r.stdout.strip(), "OK", "UDP forward %s:%d: %s %s" % (addr, port, r.stdout, r.stderr))

    def test_tcp_forward_same_port_reaches_guest_server(self):
        with netlab.Lab("fwd") as lab:
            p = netlab.free_port()
            host, guest, _, un = self._start(lab, ["-t", str(p)])
            guest.server("tcp-echo", "--bind", "0.0.0.0", "--port", p)
            self.tcp_ok(host, "127.0.0.1", p)
            self.tcp_ok(host, "127.0.0.1", p, size=8 * netlab.MiB)

    def test_tcp_forward_hostport_to_other_guestport(self):
        with netlab.Lab("fwd") as lab:
            hp = netlab.free_port()
            gp = netlab.free_port(exclude=(hp,))
            host, guest, _, un = self._start(lab, ["-t", "%d:%d" % (hp, gp)])
            guest.server("tcp-echo", "--bind", "0.0.0.0", "--port", gp)
            self.tcp_ok(host, "127.0.0.1", hp)

    def test_tcp_forward_range_and_list(self):
        with netlab.Lab("fwd") as lab:
            base = netlab.free_port()
            gbase = base + 1000
            extra = netlab.free_port(exclude=range(base, base + 3))
            spec = "%d-%d:%d-%d,%d" % (base, base + 2, gbase, gbase + 2, extra)
            host, guest, _, un = self._start(lab, ["-t", spec])
            for i in range(3):
                guest.server("tcp-echo", "--bind", "0.0.0.0", "--port", gbase + i)
            guest.server("tcp-echo", "--bind", "0.0.0.0", "--port", extra)
            for i in range(3):
                self.tcp_ok(host, "127.0.0.1", base + i, size=1000)
            self.tcp_ok(host, "127.0.0.1", extra, size=1000)

    def test_tcp_forward_with_bind_address(self):
        with netlab.Lab("fwd") as lab:
            hp = netlab.free_port()
            gp = netlab.free_port(exclude=(hp,))
            host, guest, _, un = self._start(lab, ["-t", "127.0.0.1/%d:%d" % (hp, gp)])
            guest.server("tcp-echo", "--bind", "0.0.0.0", "--port", gp)
            self.tcp_ok(host, "127.0.0.1", hp)

    def test_tcp_forward_reached_from_remote_namespace(self):
        # without a bind address the forward listens on all host addresses
        with netlab.Lab("fwd") as lab:
            p = netlab.free_port()
            host, guest, remote, un = self._start(lab, ["-t", str(p)], remote=True)
            guest.server("tcp-echo", "--bind", "0.0.0.0", "--port", p)
            self.tcp_ok(remote, HOST_VETH_ADDR, p)

    def test_tcp_forward_to_dhcp_configured_guest(self):
        with netlab.Lab("fwd") as lab:
            p = netlab.free_port()
            host, guest, _, un = self._start(lab, ["-t", str(p)], dhcp=True)
            guest.server("tcp-echo", "--bind", "0.0.0.0", "--port", p)
            self.tcp_ok(host, "127.0.0.1", p)

    def test_tcp_forward_to_closed_guest_port_is_reset(self):
        with netlab.Lab("fwd") as lab:
            p = netlab.free_port()
            host, guest, _, un = self._start(lab, ["-t", str(p)])
            # nothing listens in the guest: the host-side client must see the
            # connection closed or reset promptly (not hang)
            code = r"""
import socket, sys, time
t0 = time.monotonic()
deadline = t0 + 10
while True:
    try:
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
    except ConnectionRefusedError:
        if time.monotonic() > deadline: print("NO LISTENER"); sys.exit(0)
        time.sleep(0.2); continue
    except ConnectionResetError:
        # The guest's reset came back before connect() returned (on the
        # loopback, once the gateway no longer drops the first SYN).
        print("RESET"); break
    s.settimeout(5)
    try:
        s.sendall(b"x")
        b = s.recv(10)
        print("EOF" if b == b"" else "DATA %r" % b)
    except (ConnectionResetError, BrokenPipeError):
        print("RESET")
    except socket.timeout:
        print("HANG")
    break
"""
            r = host.py(code, p, timeout=30)
            self.assertIn(r.stdout.strip(), ("EOF", "RESET"), r.stdout + r.stderr)
            lab.assert_alive(un)

    def test_tcp_forward_to_a_port_the_guests_firewall_rejects_with_icmp_is_reset(self):
        # iptables' REJECT answers a SYN with an ICMP port unreachable (its
        # default), not a RST: the host client is reset at once, over IPv4
        # and IPv6, instead of waiting out the SYN retries (about a minute).
        netlab.require_tools("iptables", "ip6tables")
        with netlab.Lab("fwd") as lab:
            p = netlab.free_port()
            host, guest, _, un = self._start(lab, ["-t", str(p)])
            netlab.wait_for(lambda: "inet6 fec0::" in guest.run(["ip", "-6", "addr", "show", "dev", "tap0"]).stdout,
                            10, what="an IPv6 address from --config-net")
            for tool in ("iptables", "ip6tables"):
                guest.run([tool, "-A", "INPUT", "-p", "tcp", "--dport", str(p), "-j", "REJECT"])
            code = r"""
import socket, sys, time
t0 = time.monotonic()
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
    s.settimeout(20)
    b = s.recv(10)
    print("EOF" if b == b"" else "DATA %r" % b)
except (ConnectionResetError, ConnectionRefusedError):
    print("RESET")
except socket.timeout:
    print("HANG")
print("%.1f" % (time.monotonic() - t0))
"""
            for addr in ("127.0.0.1", "::1"):
                r = host.py(code, addr, p, timeout=40)
                out = r.stdout.split()
                self.assertEqual(out[0], "RESET", "%s: %s %s" % (addr, r.stdout, r.stderr))
                self.assertLess(float(out[1]), 10.0, "%s: reset only after %s s" % (addr, out[1]))
            lab.assert_alive(un)

    def test_tcp_forward_waits_for_a_guest_that_is_not_up_yet(self):
        # usernet(1), PORT FORWARDING: with no guest heard from yet the target
        # is the first DHCP address, and the connection is kept waiting while
        # the SYN toward it is retried -- not closed.
        with netlab.Lab("fwd") as lab:
            p = netlab.free_port()
            host = lab.netns("host")
            guest = lab.netns("guest")
            lab.usernet(host, ["--netns", guest.path, "-t", str(p)], wait=[("link", guest, "tap0")])
            client = host.popen([netlab.PY, "-c", ONE_SHOT_CLIENT, "127.0.0.1", str(p)], name="client")
            netlab.wait_for(lambda: "CONNECTED" in client.stdout() or client.poll() is not None, 20,
                            what="the host side of the forward to accept")
            self.assertIn("CONNECTED", client.stdout(), client.describe())
            # only now does the guest come up, at the first DHCP address
            for cmd in (["ip", "addr", "add", "%s/24" % netlab.GUEST, "dev", "tap0"],
                        ["ip", "link", "set", "tap0", "up"]):
                guest.run(cmd)
            guest.server("tcp-echo", "--bind", "0.0.0.0", "--port", p)
            client.wait(120)
            self.assertEqual(client.stdout().split()[-1:], ["OK"], client.describe())

    def test_forward_goes_to_the_guest_that_took_a_lease_last(self):
        # usernet(1), PORT FORWARDING: without --guest-addr or --config-net
        # the target is the guest that most recently took a DHCP lease.
        with netlab.Lab("fwd") as lab:
            p = netlab.free_port()
            host = lab.netns("host")
            g1 = lab.netns("g1")
            g2 = lab.netns("g2")
            lab.usernet(host, ["--netns", g1.path, "--netns", g2.path, "-t", str(p)],
                        wait=[("link", g1, "tap0"), ("link", g2, "tap0")])
            for g in (g1, g2):
                srv = g.popen([netlab.PY, "-c", NAME_SERVER, str(p), g.role], name="name-" + g.role)
                netlab.wait_for(lambda: "READY" in srv.stdout() or srv.poll() is not None, 20,
                                what="name server in " + g.role)
                lab.assert_alive(srv)
            l1 = netlab.dhcp(lab, g1)
            self.assertEqual(host.py(NAME_ASKER, p, timeout=60).stdout.strip(), "g1")
            l2 = netlab.dhcp(lab, g2)
            self.assertNotEqual(l1["ip"], l2["ip"])
            self.assertEqual(host.py(NAME_ASKER, p, timeout=60).stdout.strip(), "g2")

    def test_each_guest_its_own_forwards(self):
        """-t HOSTPORT:GUESTADDR:GUESTPORT and QEMU's --hostfwd send each
        forward to the guest it names, whichever took a lease last."""
        with netlab.Lab("fwd") as lab:
            p1 = netlab.free_port()
            p2 = netlab.free_port(exclude=(p1,))
            p3 = netlab.free_port(exclude=(p1, p2))
            gp = netlab.free_port(exclude=(p1, p2, p3))
            host = lab.netns("host")
            g1 = lab.netns("g1")
            g2 = lab.netns("g2")
            lab.usernet(host, ["--netns", g1.path, "--netns", g2.path, "--config-net",
                               "-t", "%d:10.0.2.15:%d,%d:10.0.2.16:%d" % (p1, gp, p2, gp),
                               "--hostfwd", "tcp:127.0.0.1:%d-10.0.2.15:%d" % (p3, gp)],
                        wait=[("link", g1, "tap0"), ("link", g2, "tap0")])
            for g in (g1, g2):
                netlab.wait_for(lambda: g.addrs("tap0"), 10, what="address from --config-net")
                srv = g.popen([netlab.PY, "-c", NAME_SERVER, str(gp), g.role], name="name-" + g.role)
                netlab.wait_for(lambda: "READY" in srv.stdout() or srv.poll() is not None, 20,
                                what="name server in " + g.role)
                lab.assert_alive(srv)
            for port, who in ((p1, "g1"), (p2, "g2"), (p3, "g1"), (p2, "g2"), (p1, "g1")):
                self.assertEqual(host.py(NAME_ASKER, port, timeout=60).stdout.strip(), who, port)

    def test_forward_source_gateway(self):
        """--forward-source gateway: a remote client appears as the gateway
        too (by default it keeps its address), and two clients with the
        same source port, one remote and one on the host's loopback, both
        at once, get distinct ports in the guest, TCP and UDP alike."""
        for mode in ("client", "gateway"):
            with netlab.Lab("fwd") as lab:
                p = netlab.free_port()
                sport = netlab.free_port(exclude=(p,))
                host, guest, remote, _ = self._start(
                    lab, ["-t", str(p), "-u", str(p), "--forward-source", mode], remote=True)
                srv = guest.popen([netlab.PY, "-c", PEER_SERVER, str(p)], name="peer-server")
                netlab.wait_for(lambda: "READY" in srv.stdout() or srv.poll() is not None, 20,
                                what="peer server")
                first = remote.popen([netlab.PY, "-c", SAME_PORT_CLIENT, HOST_VETH_ADDR, str(p),
                                      str(sport), "4"], name="remote-client")
                netlab.wait_for(lambda: "UDP" in first.stdout() or first.poll() is not None, 30,
                                what="the remote client's answers")
                second = host.py(SAME_PORT_CLIENT, "127.0.0.1", p, sport, 0, timeout=60).stdout.split("\n")
                first.wait(30)
                a = [line.split() for line in first.stdout().split("\n") if line]
                b = [line.split() for line in second if line]
                self.assertEqual([x[0] for x in a], ["TCP", "UDP"], a)
                self.assertEqual([x[0] for x in b], ["TCP", "UDP"], b)
                remote_seen = "10.0.2.2" if mode == "gateway" else netlab.REMOTE_ADDR
                for x in a:
                    self.assertEqual(x[1:3], ["PEER", remote_seen], (mode, a))
                    self.assertEqual(int(x[3]), sport, (mode, a))
                for x in b:
                    self.assertEqual(x[1:3], ["PEER", "10.0.2.2"], (mode, b))
                    if mode == "gateway":
                        # The remote client holds sport as the gateway already.
                        self.assertNotEqual(int(x[3]), sport, (mode, b))
                    else:
                        self.assertEqual(int(x[3]), sport, (mode, b))

    def test_udp_forward_same_port_and_hostport_to_guestport(self):
        with netlab.Lab("fwd") as lab:
            p = netlab.free_port(netlab.socket.SOCK_DGRAM)
            hp = netlab.free_port(netlab.socket.SOCK_DGRAM, exclude=(p,))
            gp = netlab.free_port(netlab.socket.SOCK_DGRAM, exclude=(p, hp))
            host, guest, _, un = self._start(lab, ["-u", str(p), "-u", "%d:%d" % (hp, gp)])
            guest.server("udp-echo", "--bind", "0.0.0.0", "--port", p)
            guest.server("udp-echo", "--bind", "0.0.0.0", "--port", gp)
            self.udp_ok(host, "127.0.0.1", p)
            self.udp_ok(host, "127.0.0.1", hp)

    def test_an_explicit_any_ipv6_address_is_ipv6_only(self):
        """-t ::/PORT listens on every IPv6 address and no IPv4 one, as
        passt's does, so IPv4's port can go elsewhere (it took both, and
        '-t 127.0.0.1/P -t ::/P' was refused as a port forwarded twice)."""
        with netlab.Lab("fwd") as lab:
            p = netlab.free_port()
            q = netlab.free_port(exclude=(p,))
            host, guest, _, un = self._start(lab, ["-t", "::/%d" % p, "-t", "127.0.0.1/%d" % q,
                                                   "-t", "::/%d" % q])
            guest.server("tcp-echo", "--bind", "::", "--port", p)
            guest.server("tcp-echo", "--bind", "::", "--port", q)
            self.tcp_ok(host, "::1", p)
            r = host.py("import socket, sys\ntry:\n    socket.create_connection(('127.0.0.1', %d), 5)\n"
                        "    print('CONNECTED')\nexcept ConnectionRefusedError:\n    print('REFUSED')" % p)
            self.assertEqual(r.stdout.strip(), "REFUSED")
            self.tcp_ok(host, "127.0.0.1", q)
            self.tcp_ok(host, "::1", q)
            lab.assert_alive(un)

    def test_ipv6_clients_reach_a_config_net_guest_without_ipv6(self):
        """A forward takes clients of both families to a guest with only
        one. A --config-net namespace with IPv6 turned off has no fec0::f:
        its IPv6 clients go over IPv4 (they were sent to fec0::f, and a TCP
        client hung for a minute before a reset)."""
        with netlab.Lab("fwd") as lab:
            host = lab.netns("host")
            guest = lab.netns("guest")
            guest.run(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                       "net.ipv6.conf.default.disable_ipv6=1"])
            p = netlab.free_port()
            q = netlab.free_port(netlab.socket.SOCK_DGRAM)
            un = lab.usernet(host, ["--netns", guest.path, "--config-net", "-t", str(p), "-u", str(q)],
                             wait=[("link", guest, "tap0")])
            netlab.wait_for(lambda: guest.addrs("tap0"), 10, what="address from --config-net")
            guest.server("tcp-echo", "--bind", "0.0.0.0", "--port", p)
            guest.server("udp-echo", "--bind", "0.0.0.0", "--port", q)
            for addr in ("::1", "127.0.0.1"):
                self.tcp_ok(host, addr, p)
                self.udp_ok(host, addr, q)
            lab.assert_alive(un)

    def test_udp_forward_replies_come_from_the_address_the_client_used(self):
        """A forward's socket listens on every address of the host; a
        client that sends to one that is not the route's preferred source
        (127.0.0.2, a second IPv6 address) must hear back from that one:
        replies from 127.0.0.1 were dropped by the client's own socket, as
        a connected client (DNS, WireGuard) does."""
        with netlab.Lab("fwd") as lab:
            p = netlab.free_port(netlab.socket.SOCK_DGRAM)
            host, guest, _, un = self._start(lab, ["-u", str(p)])
            host.add_addr6("fd00:5::1/128", "lo")
            guest.server("udp-echo", "--bind", "::", "--port", p)
            for addr in ("127.0.0.1", "127.0.0.2", "::1", "fd00:5::1"):
                self.udp_ok(host, addr, p)
            lab.assert_alive(un)

    def test_the_first_udp_datagram_to_a_silent_guest_is_not_lost(self):
        """A --config-net guest has never spoken when the first datagram
        of a -u forward arrives: the gateway asks for its MAC by ARP and
        holds the datagram meanwhile (as a kernel's neighbor queue does);
        the one datagram, sent once, is answered. IPv6 too (NDP)."""
        once = ("import socket, sys\n"
                "fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET\n"
                "s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(5)\n"
                "s.sendto(b'one', (sys.argv[1], int(sys.argv[2])))\n"
                "try:\n    print(s.recvfrom(100)[0].decode())\n"
                "except socket.timeout:\n    print('LOST')\n")
        with netlab.Lab("fwd") as lab:
            p = netlab.free_port(netlab.socket.SOCK_DGRAM)
            host, guest, _, un = self._start(lab, ["-u", str(p)])
            guest.server("udp-echo", "--bind", "::", "--port", p)
            for addr in ("127.0.0.1", "::1"):
                r = host.py(once, addr, p, timeout=20)
                self.assertEqual(r.stdout.strip(), "one", "%s: %s %s" % (addr, r.stdout, r.stderr))
            lab.assert_alive(un)

    def test_tcp_and_udp_forwards_together(self):
        with netlab.Lab("fwd") as lab:
            p = netlab.free_port()
            host, guest, _, un = self._start(lab, ["-t", str(p), "-u", str(p)])
            guest.server("tcp-echo", "--bind", "0.0.0.0", "--port", p)
            guest.server("udp-echo", "--bind", "0.0.0.0", "--port", p)
            self.tcp_ok(host, "127.0.0.1", p)
            self.udp_ok(host, "127.0.0.1", p)


if __name__ == "__main__":
    netlab.main()
